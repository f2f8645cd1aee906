// The per-variant config file is a shell file that the original provider sourced with
// bash, so operators wrote shell: quotes, `export`, comments, $VAR references. We let bash
// read it the same way (`set -a; . FILE`) and take back every variable it set.
import type { Readable } from 'node:stream'
import { spawnChild } from '../child.js'
import { stopGroup } from '../cleanup.js'
import { info } from '../log.js'
import { readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Failure } from '../errors.js'
import { requireTrusted } from './trust.js'

export const DEFAULT_CONFIG_DIR = '/etc/ganeti/instance-simpleimage'
/** Lets tests and packagers point the scripts at another config directory. */
export const CONFIG_DIR_VARIABLE = 'SIMPLEIMAGE_CONFIG_DIR'
export const DEFAULT_IMAGE_STORAGE = '/tmp/ganeti-instance-simpleimage'
export const DEFAULT_CACHE_MAX_DAYS = 7

export interface VariantConfig {
  file: string
  hooksDir: string
  proxy?: string
  curlOpts: string
  imageStorage: string
  cacheMaxDays: number
  /** DOWNLOAD_CACHE_REVALIDATE: ask the server whether a young cache entry is still current. */
  revalidate: boolean
  /** Every variable the config file set, with the effective settings above: hooks get these. */
  vars: Record<string, string>
}

export function variantDir(env: NodeJS.ProcessEnv, variant: string): string {
  return join(env[CONFIG_DIR_VARIABLE] || DEFAULT_CONFIG_DIR, variant)
}

/** The variants an operator's command covers: default, those in <config-dir>/variants.list,
 *  and every directory of <config-dir> that holds a config. */
export async function knownVariants(env: NodeJS.ProcessEnv): Promise<string[]> {
  const dir = env[CONFIG_DIR_VARIABLE] || DEFAULT_CONFIG_DIR
  const listed = (await readFile(join(dir, 'variants.list'), 'utf8').catch(() => '')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  const dirs: string[] = []
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (await stat(join(dir, name, 'config')).then((st) => st.isFile(), () => false)) dirs.push(name)
  }
  return [...new Set(['default', ...listed, ...dirs.sort()])]
}

/** Splits `env -0` output into variables. */
export function parseEnvDump(dump: string): Record<string, string> {
  const vars: Record<string, string> = {}
  for (const item of dump.split('\0')) {
    const eq = item.indexOf('=')
    if (eq > 0) vars[item.slice(0, eq)] = item.slice(eq + 1)
  }
  return vars
}

const SHELL_NOISE = new Set(['_', 'SHLVL', 'PWD', 'OLDPWD', 'BASH_EXECUTION_STRING'])

/** The variables a config set or changed: what bash saw after sourcing, minus what it was given. */
export function configVars(before: Record<string, string | undefined>, after: Record<string, string>): Record<string, string> {
  const vars: Record<string, string> = {}
  for (const [key, value] of Object.entries(after)) {
    if (!SHELL_NOISE.has(key) && before[key] !== value) vars[key] = value
  }
  return vars
}

/** Applies defaults and checks the values of the settings the provider itself uses. */
export function settingsFrom(file: string, hooksDir: string, vars: Record<string, string>): VariantConfig {
  const daysText = (vars.DOWNLOAD_CACHE_MAX_DAYS ?? '').trim()
  let cacheMaxDays = DEFAULT_CACHE_MAX_DAYS
  if (daysText !== '') {
    if (!/^\d+(\.\d+)?$/.test(daysText)) {
      throw new Failure(`DOWNLOAD_CACHE_MAX_DAYS='${daysText}' in ${file} is not a number of days`, 'set it to a number such as 7 (0 disables reuse of downloads)')
    }
    cacheMaxDays = Number(daysText)
  }
  const imageStorage = (vars.IMAGE_STORAGE ?? '').trim() || DEFAULT_IMAGE_STORAGE
  if (!imageStorage.startsWith('/')) {
    throw new Failure(`IMAGE_STORAGE='${imageStorage}' in ${file} is not an absolute path`, 'set it to a directory such as /var/cache/ganeti-instance-simpleimage')
  }
  const proxy = (vars.PROXY ?? '').trim() || undefined
  const curlOpts = (vars.CUSTOM_CURL_OPTS ?? '').trim()
  const revalidate = parseYesNo(vars.DOWNLOAD_CACHE_REVALIDATE, true, `DOWNLOAD_CACHE_REVALIDATE in ${file}`)
  return {
    file,
    hooksDir,
    proxy,
    curlOpts,
    imageStorage,
    cacheMaxDays,
    revalidate,
    vars: { ...vars, IMAGE_STORAGE: imageStorage, DOWNLOAD_CACHE_MAX_DAYS: String(cacheMaxDays), DOWNLOAD_CACHE_REVALIDATE: revalidate ? 'yes' : 'no', CUSTOM_CURL_OPTS: curlOpts, PROXY: proxy ?? '' },
  }
}

/** yes/no as shell configs write it (yes, no, true, false, 1, 0, on, off); unset: the default. */
export function parseYesNo(value: string | undefined, byDefault: boolean, what: string): boolean {
  const text = (value ?? '').trim().toLowerCase()
  if (text === '') return byDefault
  if (['yes', 'true', '1', 'on'].includes(text)) return true
  if (['no', 'false', '0', 'off'].includes(text)) return false
  throw new Failure(`${what} is '${value}', not yes or no`, 'set it to yes or no')
}

// Sourced with `set -a`, so that plain assignments reach the hooks too. The variables are
// written from an EXIT trap to fd 3, so that a config ending in `exit 0` (a habit from
// scripts) keeps what it set before; its own output, stdout included, goes to our log.
const SOURCE_CONFIG = 'trap \'[ $? = 0 ] && env -0 >&3\' EXIT; set -a; . "$1"'

async function sourceWithBash(file: string, env: NodeJS.ProcessEnv): Promise<Record<string, string>> {
  // its own process group: stopping create stops whatever the config started, too
  const child = spawnChild('bash', ['-c', SOURCE_CONFIG, 'simpleimage-config', file], { env, stdio: ['ignore', 'pipe', 'pipe'], group: true, extraFds: ['pipe'] })
  const out: Buffer[] = []
  const log: Buffer[] = []
  ;(child.stdio[3] as Readable).on('data', (b: Buffer) => out.push(b))
  child.stdout!.on('data', (b: Buffer) => log.push(b))
  child.stderr!.on('data', (b: Buffer) => log.push(b))
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', resolve)
  })
  // what it left running (`cmd &`) would keep our pipes open: it is stopped, then the pipes
  // are read to their end (or given up after 2 s, should something outside the group hold them)
  if (await stopGroup(child)) info(`the variant config ${file} left processes running: stopped them`)
  let timer: NodeJS.Timeout | undefined
  await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)))])
  clearTimeout(timer)
  for (const stream of child.stdio) stream?.destroy()
  const said = Buffer.concat(log).toString().trim()
  if (said) process.stderr.write(said + '\n')
  if (code !== 0) {
    throw new Failure(`the variant config ${file} could not be read by bash (${code === null ? 'killed' : `exit ${code}`}${said ? ': ' + said.split('\n').pop() : ''})`, 'fix it: it must set variables and end with status 0')
  }
  const vars = parseEnvDump(Buffer.concat(out).toString())
  if (Object.keys(vars).length === 0) {
    throw new Failure(`the variant config ${file} ended without handing back its settings`, 'do not set an EXIT trap or close descriptor 3 in it')
  }
  return vars
}

/** Reads $SIMPLEIMAGE_CONFIG_DIR/<variant>/config; a missing file means the defaults. */
export async function readVariantConfig(env: NodeJS.ProcessEnv, variant: string): Promise<VariantConfig> {
  const dir = variantDir(env, variant)
  const file = join(dir, 'config')
  const hooksDir = join(dir, 'hooks')
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null
    throw err
  })
  if (!st) return settingsFrom(file, hooksDir, {})
  // The file is run as root: refuse one that someone else could have written.
  await requireTrusted(file, `the variant config ${file}`, 'file')
  const after = await sourceWithBash(file, env)
  return settingsFrom(file, hooksDir, configVars(env, after))
}
