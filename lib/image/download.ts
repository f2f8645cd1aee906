// Fetches an image URL into a (temporary) cache file, with curl's --retry and
// --limit-rate, checking the length against Content-Length; optionally handing every
// byte to a consumer as well, which writes disk 0 from the download as it arrives.
import type { FileHandle } from 'node:fs/promises'
import { PassThrough, type Readable } from 'node:stream'
import { Failure } from '../errors.js'
import { cacheWriteFailure, failedWith, type DownloadOutcome } from './cache.js'
import { discardBody, request, type AgentFor, type Endpoint } from './http.js'
import { checkImageHeaders, networkFailure, httpFailure, withRetries } from './http-failure.js'
import { formatBytes, info, redact } from '../log.js'

type Consumer = (body: Readable, length: number | undefined) => Promise<void>

const BATCH = 1 << 20

export async function downloadInto(fh: FileHandle, url: URL, endpoint: Endpoint, agentFor: AgentFor, consumer?: Consumer): Promise<DownloadOutcome> {
  return withRetries(endpoint.opts.retries, `downloading ${redact(url.href)}`, async () => {
    await fh.truncate(0)
    let tap: Tap | undefined
    const exchange = await request(url, endpoint, agentFor, { method: 'GET' }).catch((err) => {
      throw networkFailure(url, err, endpoint)
    })
    try {
      const { response } = exchange
      if (!response.ok) throw httpFailure(url, response.status, response.statusText, endpoint)
      const length = checkImageHeaders(url, response.headers)
      info(`downloading ${redact(url.href)}${length !== undefined ? ` (${formatBytes(length)})` : ''}`)
      const start = Date.now()
      let lastReport = start
      let written = 0
      let pending: Buffer[] = []
      let pendingBytes = 0
      let stopped = false
      tap = consumer ? startConsumer(consumer, length) : undefined
      // the batch goes to the cache in one writev and to the consumer chunk by chunk:
      // concatenating it first would cost a copy and 1 MiB more memory per batch
      const flush = async () => {
        if (pendingBytes === 0) return
        const [, wanted] = await Promise.all([writeCache(fh, pending, pendingBytes, written), tap?.push(pending)])
        if (wanted === false) stopped = true
        written += pendingBytes
        pending = []
        pendingBytes = 0
      }
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        pending.push(chunk)
        pendingBytes += chunk.length
        if (pendingBytes >= BATCH) await flush()
        if (stopped) break // closes the connection
        const rate = endpoint.opts.limitRate
        if (rate) {
          const ahead = ((written + pendingBytes) / rate) * 1000 - (Date.now() - start)
          if (ahead > 0) await new Promise((r) => setTimeout(r, ahead))
        }
        if (Date.now() - lastReport >= 5000) {
          lastReport = Date.now()
          const pct = length ? ` (${Math.floor(((written + pendingBytes) * 100) / length)}%)` : ''
          info(`downloaded ${formatBytes(written + pendingBytes)}${pct}`)
        }
      }
      if (!stopped) await flush()
      if (stopped && written !== length) {
        // the decoder is done: what follows in the download is not part of the image
        await tap!.end()
        info(`the image ended after ${formatBytes(written)}${length !== undefined ? ` of the ${formatBytes(length)}` : ''} downloaded: the rest is not part of it, so the download was stopped and is not cached`)
        return 'partial'
      }
      if (written === 0) throw new Failure(`the server sent an empty body for ${redact(url.href)}`, 'check the URL: an empty image installs nothing')
      if (length !== undefined && written !== length) {
        throw new Failure(`the download of ${redact(url.href)} ended after ${written} of ${length} bytes`, 'the server or the network cut it off: try again, or check the server')
      }
      const secs = Math.max((Date.now() - start) / 1000, 0.001)
      info(`downloaded ${formatBytes(written)} in ${secs.toFixed(1)} s (${(written / secs / 1e6).toFixed(1)} MB/s)`)
      await tap?.end()
      return tap ? 'streamed' : 'complete'
    } catch (err) {
      if (err instanceof ConsumerError) throw err.cause
      throw networkFailure(url, err, endpoint)
    } finally {
      exchange.done()
      discardBody(exchange.response) // an error answer's connection is closed too
      await tap?.abort()
    }
  })
}

/** Writes a batch at position. libuv itself continues a partial writev, so a short count
 *  means the filesystem filled up. */
async function writeCache(fh: FileHandle, bufs: Buffer[], total: number, position: number): Promise<void> {
  const { bytesWritten } = await fh.writev(bufs, position).catch((err: unknown) => {
    throw cacheWriteFailure(failedWith(err))
  })
  if (bytesWritten < total) throw cacheWriteFailure(`stopped after ${position + bytesWritten} bytes (filesystem full?)`)
}

/** A failure of the consumer (decoding, writing disk 0), reported as itself. */
class ConsumerError extends Error {
  constructor(override readonly cause: unknown) {
    super('consumer failed')
  }
}

interface Tap {
  /** Hands a batch to the consumer; false once it needs no more (it has the whole image). */
  push(bufs: Buffer[]): Promise<boolean>
  end(): Promise<void>
  abort(): Promise<void>
}

function startConsumer(consumer: Consumer, length: number | undefined): Tap {
  const stream = new PassThrough({ highWaterMark: 4 << 20 })
  // A failed download destroys the stream, and so does a decoder that stops reading: both
  // are reported through the promises (download, consumer), never as an 'error' event
  // that nobody listens to yet (the consumer may still be preparing disk 0)
  stream.on('error', () => undefined)
  let failed: ConsumerError | undefined
  let settled = false
  const done = consumer(stream, length).then(
    () => {
      settled = true
      stream.destroy() // its end: nothing waits for 'drain' any more
    },
    (err: unknown) => {
      settled = true
      failed = new ConsumerError(err)
      stream.destroy()
    },
  )
  const check = () => {
    if (failed) throw failed
  }
  const wanted = async () => {
    if (!settled && !stream.destroyed) return true
    await done // the decoder has stopped reading: wait for its verdict
    check()
    return false
  }
  return {
    async push(bufs) {
      if (!(await wanted())) return false
      for (const buf of bufs) stream.write(buf)
      // bounded memory: wait while the consumer is behind, unless it has stopped
      if (stream.writableNeedDrain && !stream.destroyed) {
        await new Promise<void>((resolve) => {
          const go = () => {
            stream.off('drain', go)
            stream.off('close', go)
            resolve()
          }
          stream.on('drain', go)
          stream.on('close', go)
        })
      }
      return wanted()
    },
    async end() {
      stream.end()
      await done
      check()
    },
    async abort() {
      if (!stream.writableEnded) stream.destroy(new Error('the download failed'))
      await done
    },
  }
}
