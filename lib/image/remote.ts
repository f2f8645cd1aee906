// The two small requests of a create besides the image itself: the SUMS file named by
// image_checksum, and the conditional GET that asks whether a cache entry is still the
// server's image. Both go through the variant's proxy and curl options, as downloads do.
import { Failure } from '../errors.js'
import { redact } from '../log.js'
import type { Validators, Verdict } from './cache.js'
import { discardBody, request, type AgentFor, type Endpoint } from './http.js'
import { describeNetworkError, httpFailure, networkFailure, TransientError, withRetries } from './http-failure.js'
import { conditionalHeaders, validatorsOf } from './resume.js'

/** A revalidation that takes longer than this is given up: the entry is used. */
const REVALIDATE_TIMEOUT_MS = 20_000
const TEXT_TIMEOUT_MS = 60_000

/** A small text file (a SUMS file), at most maxBytes, with the download's retry rules. */
export async function fetchText(url: URL, endpoint: Endpoint, agentFor: AgentFor, maxBytes: number): Promise<string> {
  return withRetries(endpoint.opts.retries, `downloading ${redact(url.href)}`, async () => {
    const exchange = await request(url, endpoint, agentFor, { method: 'GET', timeoutMs: TEXT_TIMEOUT_MS }).catch((err) => {
      throw networkFailure(url, err, endpoint)
    })
    try {
      const { response } = exchange
      if (!response.ok) {
        const failure = httpFailure(url, response.status, response.statusText, endpoint)
        const final = failure instanceof TransientError ? failure.final : failure
        const wrapped = new Failure(`the SUMS file could not be read: ${final.what}`, 'check image_checksum: the SUMS file must be published at that URL')
        throw failure instanceof TransientError ? new TransientError(wrapped) : wrapped
      }
      const chunks: Buffer[] = []
      let got = 0
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        chunks.push(chunk)
        got += chunk.length
        if (got > maxBytes) throw new Failure(`the SUMS file ${redact(url.href)} is larger than ${maxBytes >> 20} MiB`, 'check image_checksum: it must name the SUMS file itself')
      }
      return Buffer.concat(chunks).toString('utf8')
    } catch (err) {
      throw networkFailure(url, err, endpoint)
    } finally {
      discardBody(exchange.response)
      exchange.done()
    }
  })
}

/** Asks the server whether the image is still the one with these validators: 304 says so,
 *  200 with other validators says it changed. A server that ignores the condition and
 *  answers 200 with the same validators has not changed it either. Anything else (no
 *  answer, an error status) is reported, and the caller keeps the entry. */
export async function revalidate(url: URL, known: Validators, endpoint: Endpoint, agentFor: AgentFor): Promise<Verdict> {
  try {
    const exchange = await request(url, endpoint, agentFor, { method: 'GET', headers: conditionalHeaders(known), timeoutMs: REVALIDATE_TIMEOUT_MS })
    discardBody(exchange.response) // only the status and validators matter: close the connection
    exchange.done()
    const { status, headers } = exchange.response
    if (status === 304) return 'fresh'
    if (status >= 200 && status < 300) {
      const now = validatorsOf(headers)
      const same = now.etag !== undefined ? now.etag === known.etag : now.lastModified !== undefined && now.lastModified === known.lastModified
      return same ? 'fresh' : 'changed'
    }
    return { unreachable: `the server answered HTTP ${status} ${exchange.response.statusText}`.trim() }
  } catch (err) {
    if (err instanceof Failure) return { unreachable: err.what }
    return { unreachable: describeNetworkError(err, url, endpoint).text }
  }
}
