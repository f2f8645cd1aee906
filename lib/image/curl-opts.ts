// CUSTOM_CURL_OPTS: the original passed it to curl. We download with node-fetch, so we
// understand the curl options operators actually use and refuse every other one by name,
// rather than silently dropping an option someone relies on.
import { Failure } from '../errors.js'

export interface HttpOptions {
  insecure: boolean
  cacert?: string
  capath?: string
  connectTimeoutMs?: number
  maxTimeMs?: number
  retries: number
  /** user:password for Basic authentication (curl -u). */
  user?: string
  headers: [string, string][]
  /** Bytes per second (curl --limit-rate). */
  limitRate?: number
}

export const DEFAULT_HTTP_OPTIONS: HttpOptions = { insecure: false, retries: 0, headers: [] }

/** Splits a string into words like a POSIX shell would (quotes and backslashes), without expansions. */
export function shellWords(text: string): string[] {
  const words: string[] = []
  let word = ''
  let inWord = false
  let i = 0
  while (i < text.length) {
    const c = text[i]
    if (c === "'") {
      const end = text.indexOf("'", i + 1)
      if (end < 0) throw new Failure('CUSTOM_CURL_OPTS has an unterminated single quote', 'close the quote in the variant config')
      word += text.slice(i + 1, end)
      inWord = true
      i = end + 1
    } else if (c === '"') {
      i++
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < text.length && '"\\$`\n'.includes(text[i + 1])) i++
        word += text[i++]
      }
      if (i >= text.length) throw new Failure('CUSTOM_CURL_OPTS has an unterminated double quote', 'close the quote in the variant config')
      inWord = true
      i++
    } else if (c === '\\' && i + 1 < text.length) {
      word += text[i + 1]
      inWord = true
      i += 2
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word)
      word = ''
      inWord = false
      i++
    } else {
      word += c
      inWord = true
      i++
    }
  }
  if (inWord) words.push(word)
  return words
}

function seconds(option: string, value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value)) throw new Failure(`curl option ${option} needs a number of seconds, not '${value}'`, 'fix CUSTOM_CURL_OPTS in the variant config')
  return Math.round(Number(value) * 1000)
}

/** curl's --limit-rate: a number with an optional k/m/g suffix (powers of 1024). */
export function parseRate(value: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(value)
  if (!m) throw new Failure(`curl option --limit-rate needs a rate such as 500k or 10M, not '${value}'`, 'fix CUSTOM_CURL_OPTS in the variant config')
  const scale = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g']
  return Math.max(1, Math.round(Number(m[1]) * scale))
}

// Options that take a value, by every name curl accepts for them.
const VALUE_OPTIONS: Record<string, string> = {
  '--cacert': 'cacert', '--capath': 'capath', '--connect-timeout': 'connect-timeout',
  '-m': 'max-time', '--max-time': 'max-time', '--retry': 'retry', '-u': 'user', '--user': 'user',
  '-H': 'header', '--header': 'header', '--limit-rate': 'limit-rate',
}
// Flags whose behaviour is always ours anyway (we always follow redirects, fail on HTTP
// errors and write no progress meter), accepted so existing configs keep working.
const ALWAYS_ON = new Set(['-L', '--location', '-f', '--fail', '-s', '--silent', '-S', '--show-error'])

function apply(opts: HttpOptions, name: string, option: string, value: string): void {
  switch (name) {
    case 'cacert': opts.cacert = value; break
    case 'capath': opts.capath = value; break
    case 'connect-timeout': opts.connectTimeoutMs = seconds(option, value); break
    case 'max-time': opts.maxTimeMs = seconds(option, value); break
    case 'retry':
      if (!/^\d+$/.test(value)) throw new Failure(`curl option ${option} needs a whole number, not '${value}'`, 'fix CUSTOM_CURL_OPTS in the variant config')
      opts.retries = Number(value)
      break
    case 'user':
      if (!value.includes(':')) throw new Failure(`curl option ${option} needs user:password (there is nobody to type a password)`, 'fix CUSTOM_CURL_OPTS in the variant config')
      opts.user = value
      break
    case 'header': {
      const colon = value.indexOf(':')
      if (colon <= 0) throw new Failure(`curl option ${option} needs 'Name: value', not '${value.slice(0, 40)}'`, 'fix CUSTOM_CURL_OPTS in the variant config')
      opts.headers.push([value.slice(0, colon).trim(), value.slice(colon + 1).trim()])
      break
    }
    case 'limit-rate': opts.limitRate = parseRate(value); break
  }
}

export function parseCurlOpts(text: string): HttpOptions {
  const opts: HttpOptions = { ...DEFAULT_HTTP_OPTIONS, headers: [] }
  const words = shellWords(text)
  for (let i = 0; i < words.length; i++) {
    const word = words[i]
    const refuse = (what: string) =>
      new Failure(`CUSTOM_CURL_OPTS contains ${what}, which this provider does not support`, 'remove it from the variant config (supported: -k, --cacert, --capath, --connect-timeout, -m, --retry, -u, -H, --limit-rate)')
    if (word === '-k' || word === '--insecure') {
      opts.insecure = true
    } else if (ALWAYS_ON.has(word)) {
      // nothing to do: see ALWAYS_ON
    } else if (VALUE_OPTIONS[word]) {
      if (i + 1 >= words.length) throw new Failure(`curl option ${word} needs a value`, 'fix CUSTOM_CURL_OPTS in the variant config')
      apply(opts, VALUE_OPTIONS[word], word, words[++i])
    } else if (/^-[a-zA-Z]/.test(word) && word.length > 2) {
      // short options bundled (-kL) or with an attached value (-uuser:pw, -HX-A:b)
      for (let j = 1; j < word.length; j++) {
        const flag = '-' + word[j]
        if (flag === '-k') opts.insecure = true
        else if (ALWAYS_ON.has(flag)) continue
        else if (VALUE_OPTIONS[flag]) {
          const rest = word.slice(j + 1)
          const value = rest !== '' ? rest : words[++i]
          if (value === undefined) throw new Failure(`curl option ${flag} needs a value`, 'fix CUSTOM_CURL_OPTS in the variant config')
          apply(opts, VALUE_OPTIONS[flag], flag, value)
          break
        } else throw refuse(`the option ${flag}`)
      }
    } else if (word.startsWith('-')) {
      throw refuse(`the option ${word}`)
    } else {
      throw refuse(`the word '${word}', which is not an option`)
    }
  }
  return opts
}
