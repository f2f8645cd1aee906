// Fetches an image URL into a (temporary) cache file, with curl's --retry and
// --limit-rate, checking the length against Content-Length; optionally handing every
// byte to a consumer as well, which writes disk 0 from the download as it arrives.
import { once } from 'node:events'
import type { FileHandle } from 'node:fs/promises'
import { PassThrough, type Readable } from 'node:stream'
import { Failure } from './errors.js'
import { cacheWriteFailure, failedWith } from './cache.js'
import { networkFailure, httpFailure, request, withRetries, type AgentFor, type Endpoint } from './http.js'
import { formatBytes, info, redact } from './log.js'

type Consumer = (body: Readable, length: number | undefined) => Promise<void>

const BATCH = 1 << 20

export async function downloadInto(fh: FileHandle, url: URL, endpoint: Endpoint, agentFor: AgentFor, consumer?: Consumer): Promise<void> {
  await withRetries(endpoint.opts.retries, `downloading ${redact(url.href)}`, async () => {
    await fh.truncate(0)
    let tap: Tap | undefined
    const exchange = await request(url, endpoint, agentFor, { method: 'GET' }).catch((err) => {
      throw networkFailure(url, err)
    })
    try {
      const { response } = exchange
      if (!response.ok) throw httpFailure(url, response.status, response.statusText)
      const lengthHeader = response.headers.get('content-length')
      const length = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined
      info(`downloading ${redact(url.href)}${length !== undefined ? ` (${formatBytes(length)})` : ''}`)
      const start = Date.now()
      let lastReport = start
      let written = 0
      let pending: Buffer[] = []
      let pendingBytes = 0
      tap = consumer ? startConsumer(consumer, length) : undefined
      // the batch goes to the cache in one writev and to the consumer chunk by chunk:
      // concatenating it first would cost a copy and 1 MiB more memory per batch
      const flush = async () => {
        if (pendingBytes === 0) return
        await Promise.all([writeCache(fh, pending, pendingBytes, written), tap?.push(pending)])
        written += pendingBytes
        pending = []
        pendingBytes = 0
      }
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        pending.push(chunk)
        pendingBytes += chunk.length
        if (pendingBytes >= BATCH) await flush()
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
      await flush()
      if (length !== undefined && written !== length) {
        throw new Failure(`the download of ${redact(url.href)} ended after ${written} of ${length} bytes`, 'the server or the network cut it off: try again, or check the server')
      }
      const secs = Math.max((Date.now() - start) / 1000, 0.001)
      info(`downloaded ${formatBytes(written)} in ${secs.toFixed(1)} s (${(written / secs / 1e6).toFixed(1)} MB/s)`)
      await tap?.end()
    } catch (err) {
      if (err instanceof ConsumerError) throw err.cause
      throw networkFailure(url, err)
    } finally {
      exchange.done()
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
  push(bufs: Buffer[]): Promise<void>
  end(): Promise<void>
  abort(): Promise<void>
}

function startConsumer(consumer: Consumer, length: number | undefined): Tap {
  const stream = new PassThrough({ highWaterMark: 4 << 20 })
  let failed: ConsumerError | undefined
  const done = consumer(stream, length).catch((err: unknown) => {
    failed = new ConsumerError(err)
    stream.destroy()
  })
  const check = () => {
    if (failed) throw failed
  }
  return {
    async push(bufs) {
      check()
      for (const buf of bufs) stream.write(buf)
      // bounded memory: wait while the consumer is behind, unless it has given up
      if (stream.writableNeedDrain) await Promise.race([once(stream, 'drain'), done])
      check()
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
