// verify's look at an image URL, within a few seconds: does it answer (HEAD, or a
// one-byte ranged GET where HEAD is refused), how large is it, and, for image_type=auto,
// what are its first bytes. A body is never read further than that: a server that
// ignores Range would send the whole image, one that stalls would keep verify waiting.
import { Failure } from '../errors.js'
import { debug, redact } from '../log.js'
import { discardBody, request, type AgentFor, type Endpoint, type Exchange } from './http.js'
import { checkImageHeaders, describeNetworkError } from './http-failure.js'
import type { Response } from 'node-fetch'

/** One request of verify's: a failure to connect or an error status is a Failure naming the URL. */
async function verifyRequest(url: URL, endpoint: Endpoint, agentFor: AgentFor, method: string, headers: Record<string, string> | undefined, timeoutMs: number): Promise<Exchange> {
  return request(url, endpoint, agentFor, { method, headers, timeoutMs }).catch((err) => {
    if (err instanceof Failure) throw err
    const { text, hint } = describeNetworkError(err, url, endpoint)
    throw new Failure(`the image URL ${redact(url.href)} cannot be reached: ${text}`, hint)
  })
}

function statusFailure(url: URL, response: Response): Failure {
  return new Failure(`the image URL ${redact(url.href)} answered HTTP ${response.status} ${response.statusText}`, 'check the URL and that the server offers the file')
}

/** verify's reachability check: HEAD, or a one-byte ranged GET where HEAD is refused. */
export async function probeUrl(url: URL, endpoint: Endpoint, agentFor: AgentFor, timeoutMs: number): Promise<{ status: number; length?: number }> {
  const attempt = async (method: string, headers?: Record<string, string>) => {
    const exchange = await verifyRequest(url, endpoint, agentFor, method, headers, timeoutMs)
    discardBody(exchange.response) // the headers are all we wanted: close the connection
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
  const total = range ? /\/(\d+)$/.exec(range)?.[1] : undefined
  // a ranged answer's Content-Length is the range's: 1, never 0
  const length = checkImageHeaders(url, response.headers)
  return { status: response.status, length: total ? Number(total) : length }
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
  } catch (err) {
    if (err instanceof Failure) throw err
    const { text, hint } = describeNetworkError(err, url, endpoint)
    throw new Failure(`the first bytes of the image URL ${redact(url.href)} could not be read: ${text}`, hint)
  } finally {
    discardBody(exchange.response)
    exchange.done()
  }
  return Buffer.concat(chunks).subarray(0, length)
}
