// HTTP(S) for image downloads and for verify's reachability check: node-fetch with our
// agents (PROXY for http and https, TLS verified unless -k, curl's timeouts), following
// redirects ourselves so that each one is checked (http and https only; credentials in
// a Location are used, as curl does, and never logged; ours, and credential headers of
// CUSTOM_CURL_OPTS, go only to the same origin).
import http from 'node:http'
import https from 'node:https'
import tls from 'node:tls'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import fetch, { type Response } from 'node-fetch'
import { HttpProxyAgent } from 'http-proxy-agent'
import { HttpsProxyAgent } from 'https-proxy-agent'
import { Failure } from '../errors.js'
import { credentialsOf } from '../ganeti/params.js'
import type { HttpOptions } from './curl-opts.js'
import { debug, redact } from '../log.js'

export interface Endpoint {
  proxy?: string
  opts: HttpOptions
}

const USER_AGENT = 'ganeti-instance-simpleimage'
const MAX_REDIRECTS = 20
const REDIRECTS = new Set([301, 302, 303, 307, 308])
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization'])

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

/** The proxy's answer to CONNECT was not 200: it refused the tunnel (lib/image/http-failure.ts). */
export class ProxyRefusal extends Error {
  readonly code = 'EPROXYREFUSED'
  constructor(readonly status: number, readonly statusText: string) {
    super(`the proxy answered CONNECT with ${status} ${statusText}`)
  }
}

// https-proxy-agent builds the TLS connection to the target from the request's options
// only, so the CA and the verify switch are added there. When the proxy refuses the
// tunnel, it would hand the proxy's answer over as if the image server had sent it: that
// is made an error that names the proxy instead.
class TlsHttpsProxyAgent extends HttpsProxyAgent<string> {
  constructor(proxy: string, private readonly tlsOptions: https.AgentOptions) {
    super(proxy)
  }
  override async connect(req: http.ClientRequest, opts: Parameters<HttpsProxyAgent<string>['connect']>[1]) {
    let answer: { statusCode: number; statusText: string } | undefined
    req.once('proxyConnect', (connect: { statusCode: number; statusText: string }) => (answer = connect))
    const socket = await super.connect(req, { ...opts, ...this.tlsOptions } as typeof opts)
    if (answer && answer.statusCode !== 200 && !(socket instanceof tls.TLSSocket)) {
      socket.destroy()
      throw new ProxyRefusal(answer.statusCode, answer.statusText)
    }
    return socket
  }
}

export type AgentFor = (url: URL) => http.Agent

export async function makeAgents(endpoint: Endpoint): Promise<AgentFor> {
  const tlsOptions: https.AgentOptions = { rejectUnauthorized: !endpoint.opts.insecure, ca: await loadCa(endpoint.opts) }
  if (endpoint.proxy) {
    let proxyUrl: URL
    try {
      proxyUrl = new URL(endpoint.proxy)
    } catch {
      throw new Failure(`PROXY '${redact(endpoint.proxy)}' is not a URL`, 'set PROXY=http://host:port in the variant config')
    }
    if (proxyUrl.protocol !== 'http:' && proxyUrl.protocol !== 'https:') throw new Failure(`PROXY '${redact(endpoint.proxy)}' is not an http:// proxy URL`, 'set PROXY=http://host:port in the variant config')
    credentialsOf(proxyUrl, 'PROXY') // the agents decode them for every request
    const viaHttp = new HttpProxyAgent(endpoint.proxy)
    const viaHttps = new TlsHttpsProxyAgent(endpoint.proxy, tlsOptions)
    // chosen per request, so that a redirect from http to https keeps using the proxy
    return (url) => (url.protocol === 'http:' ? viaHttp : viaHttps)
  }
  const plain = new http.Agent()
  const secure = new https.Agent(tlsOptions)
  return (url) => (url.protocol === 'http:' ? plain : secure)
}

/** Closes an answer whose body we do not want (its connection goes with it). */
export function discardBody(response: Response): void {
  ;(response.body as unknown as { destroy?: () => void } | null)?.destroy?.()
}

const basic = (user: string) => 'Basic ' + Buffer.from(user).toString('base64')

export interface Exchange {
  response: Response
  /** Clears the timers of this request; call when the body has been read. */
  done(): void
}

/** The next URL of a redirect, or a Failure saying why it is not followed. */
export function redirectTarget(from: URL, location: string | null, hops: number): URL {
  if (!location) throw new Failure(`${redact(from.href)} answered with a redirect that names no Location`, 'check the image URL and the server')
  if (hops >= MAX_REDIRECTS) throw new Failure(`${redact(from.href)} redirected more than ${MAX_REDIRECTS} times`, 'check the image URL and the server (a redirect loop?)')
  let next: URL
  try {
    next = new URL(location, from)
  } catch {
    throw new Failure(`${redact(from.href)} redirected to '${redact(location)}', which is not a URL`, 'check the image URL and the server')
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new Failure(`${redact(from.href)} redirected to a ${next.protocol} URL (${redact(next.href)}), which is refused`, 'only http:// and https:// redirects are followed: check the image URL and the server')
  }
  return next
}

/** One HTTP request with curl's --connect-timeout (until the answer's headers) and
 *  --max-time, following redirects. */
export async function request(target: URL, endpoint: Endpoint, agentFor: AgentFor, init: { method: string; headers?: Record<string, string>; timeoutMs?: number }): Promise<Exchange> {
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
  const given = credentialsOf(target, `the image URL ${redact(target.href)}`) ?? endpoint.opts.user
  let url = target
  let user = given
  try {
    for (let hops = 0; ; hops++) {
      const clean = new URL(url.href)
      clean.username = ''
      clean.password = '' // node-fetch refuses URLs with credentials: they go in a header
      const headers: Record<string, string> = { 'User-Agent': USER_AGENT, 'Accept-Encoding': 'identity', ...init.headers }
      if (user) headers.Authorization = basic(user)
      // -H headers go along, but credentials among them only to our own origin (as curl)
      const foreign = url.origin !== target.origin
      for (const [name, value] of endpoint.opts.headers) if (!(foreign && CREDENTIAL_HEADERS.has(name.toLowerCase()))) headers[name] = value
      debug(`${init.method} ${clean.href}${endpoint.proxy ? ' via proxy ' + redact(endpoint.proxy) : ''}`)
      const response = await fetch(clean.href, { method: init.method, headers, agent: agentFor, compress: false, redirect: 'manual', signal: controller.signal })
      if (!REDIRECTS.has(response.status)) {
        clearTimeout(connectTimer)
        return { response, done }
      }
      discardBody(response)
      const next = redirectTarget(url, response.headers.get('location'), hops)
      // credentials in the Location are used; ours only as long as the origin stays ours
      user = credentialsOf(next, `the redirect from ${redact(url.href)}`) ?? (next.origin === target.origin ? given : undefined)
      debug(`redirected (HTTP ${response.status}) to ${redact(next.href)}`)
      url = next
    }
  } catch (err) {
    done()
    throw err
  }
}
