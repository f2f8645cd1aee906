// HTTP(S) for image downloads and for verify's reachability check: node-fetch with our
// agents (PROXY for http and https, TLS verified unless -k, curl's timeouts and retries).
import http from 'node:http'
import https from 'node:https'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import fetch, { type Response } from 'node-fetch'
import { HttpProxyAgent } from 'http-proxy-agent'
import { HttpsProxyAgent } from 'https-proxy-agent'
import { Failure, errorMessage } from './errors.js'
import type { HttpOptions } from './curl-opts.js'
import { debug, info, redact } from './log.js'

export interface Endpoint {
  proxy?: string
  opts: HttpOptions
}

const USER_AGENT = 'ganeti-instance-simpleimage'
const HINT = 'check the image URL, the network and PROXY/CUSTOM_CURL_OPTS in the variant config'

async function loadCa(opts: HttpOptions): Promise<string[] | undefined> {
  const pems: string[] = []
  if (opts.cacert) pems.push(await readFile(opts.cacert, 'utf8').catch(() => { throw new Failure(`the CA file ${opts.cacert} (--cacert) cannot be read`, 'fix CUSTOM_CURL_OPTS in the variant config') }))
  if (opts.capath) {
    const names = await readdir(opts.capath).catch(() => { throw new Failure(`the CA directory ${opts.capath} (--capath) cannot be read`, 'fix CUSTOM_CURL_OPTS in the variant config') })
    for (const name of names.sort()) {
      const text = await readFile(join(opts.capath, name), 'utf8').catch(() => '')
      if (text.includes('-----BEGIN CERTIFICATE-----')) pems.push(text)
    }
  }
  return pems.length > 0 ? pems : undefined
}

// https-proxy-agent builds the TLS connection to the target from the request's options
// only, so the CA and the verify switch are added there.
class TlsHttpsProxyAgent extends HttpsProxyAgent<string> {
  constructor(proxy: string, private readonly tlsOptions: https.AgentOptions) {
    super(proxy)
  }
  override connect(req: http.ClientRequest, opts: Parameters<HttpsProxyAgent<string>['connect']>[1]) {
    return super.connect(req, { ...opts, ...this.tlsOptions } as typeof opts)
  }
}

export type AgentFor = (url: URL) => http.Agent

export async function makeAgents(endpoint: Endpoint): Promise<AgentFor> {
  const tls: https.AgentOptions = { rejectUnauthorized: !endpoint.opts.insecure, ca: await loadCa(endpoint.opts) }
  if (endpoint.proxy) {
    let proxyUrl: URL
    try {
      proxyUrl = new URL(endpoint.proxy)
    } catch {
      throw new Failure(`PROXY '${redact(endpoint.proxy)}' is not a URL`, 'set PROXY=http://host:port in the variant config')
    }
    if (proxyUrl.protocol !== 'http:' && proxyUrl.protocol !== 'https:') throw new Failure(`PROXY '${redact(endpoint.proxy)}' is not an http:// proxy URL`, 'set PROXY=http://host:port in the variant config')
    const viaHttp = new HttpProxyAgent(endpoint.proxy)
    const viaHttps = new TlsHttpsProxyAgent(endpoint.proxy, tls)
    // chosen per request, so that a redirect from http to https keeps using the proxy
    return (url) => (url.protocol === 'http:' ? viaHttp : viaHttps)
  }
  const plain = new http.Agent()
  const secure = new https.Agent(tls)
  return (url) => (url.protocol === 'http:' ? plain : secure)
}

/** Moves user:password out of the URL (node-fetch refuses them) into Basic authentication. */
function splitCredentials(url: URL, opts: HttpOptions): { url: URL; auth?: string } {
  const clean = new URL(url.href)
  let user = opts.user
  if (url.username || url.password) {
    user = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`
    clean.username = ''
    clean.password = ''
  }
  return { url: clean, auth: user ? 'Basic ' + Buffer.from(user).toString('base64') : undefined }
}

export function describeNetworkError(err: unknown, url: URL): string {
  const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string } }
  const code = e.code ?? e.cause?.code ?? ''
  const where = `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`
  if (code === 'ECONNREFUSED') return `the connection to ${where} was refused`
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `the host ${url.hostname} was not found`
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) return `the TLS certificate of ${where} is not trusted (${code}); give its CA with --cacert in CUSTOM_CURL_OPTS`
  if (e.name === 'AbortError') return `the request to ${where} timed out`
  return `the request to ${where} failed (${code || errorMessage(err)})`
}

export interface Exchange {
  response: Response
  /** Clears the timers of this request; call when the body has been read. */
  done(): void
}

/** One HTTP request with curl's --connect-timeout (until the answer's headers) and --max-time. */
export async function request(target: URL, endpoint: Endpoint, agentFor: AgentFor, init: { method: string; headers?: Record<string, string>; timeoutMs?: number }): Promise<Exchange> {
  const { url, auth } = splitCredentials(target, endpoint.opts)
  const headers: Record<string, string> = { 'User-Agent': USER_AGENT, 'Accept-Encoding': 'identity', ...init.headers }
  if (auth) headers.Authorization = auth
  for (const [name, value] of endpoint.opts.headers) headers[name] = value
  const controller = new AbortController()
  const timers: NodeJS.Timeout[] = []
  const arm = (ms: number | undefined) => ms !== undefined && timers.push(setTimeout(() => controller.abort(), ms))
  arm(endpoint.opts.maxTimeMs)
  arm(init.timeoutMs)
  const connectTimer = endpoint.opts.connectTimeoutMs !== undefined ? setTimeout(() => controller.abort(), endpoint.opts.connectTimeoutMs) : undefined
  const done = () => {
    timers.forEach(clearTimeout)
    clearTimeout(connectTimer)
  }
  debug(`${init.method} ${url.href}${endpoint.proxy ? ' via proxy ' + endpoint.proxy : ''}`)
  try {
    const response = await fetch(url.href, { method: init.method, headers, agent: agentFor, compress: false, redirect: 'follow', follow: 20, signal: controller.signal })
    clearTimeout(connectTimer)
    return { response, done }
  } catch (err) {
    done()
    throw err
  }
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
export function httpFailure(url: URL, status: number, statusText: string): Failure | TransientError {
  const failure = new Failure(`the server answered HTTP ${status} ${statusText} for ${redact(url.href)}`, HINT)
  return TRANSIENT_STATUS.has(status) ? new TransientError(failure) : failure
}

export function networkFailure(url: URL, err: unknown): Failure | TransientError {
  if (err instanceof Failure || err instanceof TransientError) return err
  const failure = new Failure(`downloading ${redact(url.href)} failed: ${describeNetworkError(err, url)}`, HINT)
  const e = err as { name?: string; code?: string }
  return e.name === 'AbortError' || e.code === 'ETIMEDOUT' || e.code === 'EAI_AGAIN' ? new TransientError(failure) : failure
}

/** One request of verify's: a failure to connect or an error status is a Failure naming the URL. */
async function verifyRequest(url: URL, endpoint: Endpoint, agentFor: AgentFor, method: string, headers: Record<string, string> | undefined, timeoutMs: number): Promise<Exchange> {
  return request(url, endpoint, agentFor, { method, headers, timeoutMs }).catch((err) => {
    throw new Failure(`the image URL ${redact(url.href)} cannot be reached: ${describeNetworkError(err, url)}`, HINT)
  })
}

function statusFailure(url: URL, response: Response): Failure {
  return new Failure(`the image URL ${redact(url.href)} answered HTTP ${response.status} ${response.statusText}`, 'check the URL and that the server offers the file')
}

/** verify's reachability check: HEAD, or a one-byte ranged GET where HEAD is refused. */
export async function probeUrl(url: URL, endpoint: Endpoint, agentFor: AgentFor, timeoutMs: number): Promise<{ status: number; length?: number }> {
  const attempt = async (method: string, headers?: Record<string, string>) => {
    const exchange = await verifyRequest(url, endpoint, agentFor, method, headers, timeoutMs)
    exchange.response.body?.resume?.()
    exchange.done()
    return exchange.response
  }
  let response = await attempt('HEAD')
  if ([403, 405, 501].includes(response.status)) {
    debug(`HEAD answered ${response.status}, trying a ranged GET`)
    response = await attempt('GET', { Range: 'bytes=0-0' })
  }
  if (!response.ok) throw statusFailure(url, response)
  const range = response.headers.get('content-range')
  const total = range ? /\/(\d+)$/.exec(range)?.[1] : response.headers.get('content-length')
  return { status: response.status, length: total ? Number(total) : undefined }
}

/** The first bytes of the image at url (a ranged GET), for image_type=auto in verify. */
export async function fetchHead(url: URL, endpoint: Endpoint, agentFor: AgentFor, timeoutMs: number, length = 16): Promise<Buffer> {
  const exchange = await verifyRequest(url, endpoint, agentFor, 'GET', { Range: `bytes=0-${length - 1}` }, timeoutMs)
  const chunks: Buffer[] = []
  let got = 0
  try {
    if (!exchange.response.ok) throw statusFailure(url, exchange.response)
    // a server that ignores Range sends the whole image: stop reading after the head
    for await (const chunk of exchange.response.body as AsyncIterable<Buffer>) {
      chunks.push(chunk)
      got += chunk.length
      if (got >= length) break
    }
  } finally {
    exchange.done()
  }
  return Buffer.concat(chunks).subarray(0, length)
}
