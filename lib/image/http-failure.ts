// What went wrong with an HTTP exchange, said so that the user knows whom to blame: the
// image server, the network, or the proxy (every connection goes to the proxy when PROXY
// is set, so a refused or unresolvable connection is the proxy's), and curl's --retry
// rules for which failures are worth another attempt.
import type { Headers } from 'node-fetch'
import { Failure, errorMessage } from '../errors.js'
import { info, redact } from '../log.js'
import type { Endpoint } from './http.js'

const HINT = 'check the image URL, the network and PROXY/CUSTOM_CURL_OPTS in the variant config'
const PROXY_HINT = 'check PROXY in the variant config: that the proxy runs there and lets this node reach the image server'
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])

function hostPort(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`
}

/** The proxy as the log may show it: host and port, no credentials. */
function proxyName(endpoint?: Endpoint): string | undefined {
  if (!endpoint?.proxy) return undefined
  try {
    return `the proxy ${hostPort(new URL(endpoint.proxy))} (PROXY in the variant config)`
  } catch {
    return 'the proxy (PROXY in the variant config)'
  }
}

/** node-fetch says "request to URL failed, reason: X": X is the news. */
function reason(err: unknown): string {
  return errorMessage(err).replace(/^request to \S+ failed, reason: /, '')
}

export interface Described {
  text: string
  hint: string
}

export function describeNetworkError(err: unknown, url: URL, endpoint?: Endpoint): Described {
  const e = err as { code?: string; name?: string; status?: number; statusText?: string; cause?: { code?: string } }
  const code = e.code ?? e.cause?.code ?? ''
  const where = hostPort(url)
  const proxy = proxyName(endpoint)
  if (e.code === 'EPROXYREFUSED') return { text: `${proxy ?? 'the proxy'} refused to connect to ${where} (${reason(err)})`, hint: PROXY_HINT }
  if (proxy && CONNECT_ERRORS.has(code)) return { text: `${proxy} cannot be reached (${code === 'ECONNREFUSED' ? 'the connection was refused' : code})`, hint: PROXY_HINT }
  if (code === 'ECONNREFUSED') return { text: `the connection to ${where} was refused`, hint: HINT }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { text: `the host ${url.hostname} was not found`, hint: HINT }
  if (code === 'ECONNRESET') return { text: `the connection to ${where}${proxy ? ` through ${proxy}` : ''} was cut off (ECONNRESET)`, hint: 'the server or the network ended it early: try again (CUSTOM_CURL_OPTS="--retry 3" resumes such downloads), or check the server' }
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) return { text: `the TLS certificate of ${where} is not trusted (${code})`, hint: 'give its CA with --cacert in CUSTOM_CURL_OPTS' }
  if (e.name === 'AbortError') return { text: `the request to ${where}${proxy ? ` through ${proxy}` : ''} timed out`, hint: HINT }
  return { text: `the request to ${where}${proxy ? ` through ${proxy}` : ''} failed (${code || reason(err)})`, hint: HINT }
}

const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504])

/** Runs attempt() with curl's --retry rules: timeouts and 408/429/5xx answers are retried
 *  after 1 s, 2 s, 4 s ... (at most 10 min), other failures are final. */
export async function withRetries<T>(retries: number, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt()
    } catch (err) {
      const transient = err instanceof TransientError
      if (!transient || n >= retries) throw transient ? err.final : err
      const wait = Math.min(1000 * 2 ** n, 600_000)
      info(`${what}: ${err.final.what}; retrying in ${wait / 1000} s (${n + 1} of ${retries})`)
      await new Promise((resolve) => setTimeout(resolve, wait))
    }
  }
}

export class TransientError extends Error {
  constructor(readonly final: Failure) {
    super(final.message)
  }
}

/** Turns a failed HTTP exchange into a Failure, marked transient where curl would retry. */
export function httpFailure(url: URL, status: number, statusText: string, endpoint?: Endpoint): Failure | TransientError {
  const proxy = proxyName(endpoint)
  const failure = new Failure(`the server answered HTTP ${status} ${statusText} for ${redact(url.href)}${proxy ? ` (through ${proxy})` : ''}`, HINT)
  return TRANSIENT_STATUS.has(status) ? new TransientError(failure) : failure
}

export function networkFailure(url: URL, err: unknown, endpoint?: Endpoint): Failure | TransientError {
  if (err instanceof Failure || err instanceof TransientError) return err
  const { text, hint } = describeNetworkError(err, url, endpoint)
  const failure = new Failure(`downloading ${redact(url.href)} failed: ${text}`, hint)
  const e = err as { name?: string; code?: string }
  return e.name === 'AbortError' || e.code === 'ETIMEDOUT' || e.code === 'EAI_AGAIN' ? new TransientError(failure) : failure
}

/** Checks an answer's headers before any of its body is taken for an image: an HTML page
 *  (an error or login page served with 200), a body the server encoded although we asked
 *  for it as it is (its bytes are not the file's), or an empty one. Returns the length. */
export function checkImageHeaders(url: URL, headers: Headers): number | undefined {
  const type = headers.get('content-type')?.split(';')[0].trim().toLowerCase()
  if (type === 'text/html' || type === 'application/xhtml+xml') {
    throw new Failure(`${redact(url.href)} answered with an HTML page (Content-Type: ${type}), not a disk image`, 'check the URL: an error page, a login page or a directory listing is not an image')
  }
  const encoding = headers.get('content-encoding')?.trim().toLowerCase()
  if (encoding && encoding !== 'identity') {
    throw new Failure(`${redact(url.href)} was sent with Content-Encoding: ${encoding} although the file was asked for as it is`, 'the bytes would not be the file\'s: configure the server to send it unencoded (Apache: no AddEncoding for its suffix), or use another server')
  }
  const text = headers.get('content-length')
  const length = text !== null && /^\d+$/.test(text) ? Number(text) : undefined
  if (length === 0) throw new Failure(`${redact(url.href)} is empty (Content-Length: 0)`, 'check the URL: an empty image installs nothing')
  return length
}
