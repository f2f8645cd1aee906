// Fetches an image URL into a (temporary) cache file, with curl's --retry and
// --limit-rate, checking the length against Content-Length and hashing the bytes as they
// are written; optionally handing every byte to a consumer as well, which writes disk 0
// from the download as it arrives. A retried download cut off mid-body resumes where the
// file ends (Range + If-Range), unless the server ignores Range or has another image now.
import { createHash, type Hash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { ConsumerError, startTap, type Consumer, type Tap } from './tap.js'
import { Failure } from '../errors.js'
import { cacheWriteFailure, failedWith, type Digests, type Fetched, type Validators } from './cache.js'
import type { DigestAlgo } from './checksum.js'
import { discardBody, request, type AgentFor, type Endpoint } from './http.js'
import { checkImageHeaders, networkFailure, httpFailure, withRetries, TransientError } from './http-failure.js'
import { formatBytes, info, redact } from '../log.js'
import { resumeFrom, validatorsOf } from './resume.js'
import { chunksAllocated } from '../memory.js'
import { allZero } from '../zeros.js'
import { Writeback } from '../writeback.js'

export type { Consumer } from './tap.js'

const BATCH = 1 << 20

export interface DownloadOptions {
  /** Digests to compute besides sha256 (always kept, so that any later check needs no read). */
  algos?: DigestAlgo[]
}

export async function downloadInto(fh: FileHandle, url: URL, endpoint: Endpoint, agentFor: AgentFor, consumer?: Consumer, options: DownloadOptions = {}): Promise<Fetched> {
  const algos = [...new Set<DigestAlgo>(['sha256', ...(options.algos ?? [])])]
  // what the file holds so far, kept across attempts so that a retry can resume
  let written = 0
  let hashes: Map<DigestAlgo, Hash> = new Map()
  let first: Validators | undefined
  const startOver = async () => {
    await fh.truncate(0)
    written = 0
    hashes = new Map(algos.map((a) => [a, createHash(a)]))
  }
  return withRetries(endpoint.opts.retries, `downloading ${redact(url.href)}`, async () => {
    const resume = resumeFrom(written, first)
    if (!resume) await startOver()
    let tap: Tap | undefined
    const exchange = await request(url, endpoint, agentFor, { method: 'GET', headers: resume?.headers }).catch((err) => {
      throw networkFailure(url, err, endpoint)
    })
    let inBody = false
    try {
      const { response } = exchange
      if (resume && (response.status === 416 || response.status === 206) && !resume.accepts(response.status, response.headers.get('content-range'))) {
        // not the rest of our file: the next attempt asks for all of it
        await startOver()
        throw new TransientError(new Failure(`the server answered the resumption of ${redact(url.href)} with HTTP ${response.status} ${response.headers.get('content-range') ?? ''}`.trim(), 'check the server: it sent another part of the file than the one asked for'))
      }
      if (!response.ok) throw httpFailure(url, response.status, response.statusText, endpoint)
      if (resume && response.status !== 206) {
        info(`the server sent the image from its start again (${response.status === 200 ? 'it ignores Range, or the image changed since' : `HTTP ${response.status}`}): starting over`)
        await startOver()
      } else if (resume) info(`resuming the download at ${formatBytes(written)}`)
      const body = checkImageHeaders(url, response.headers)
      const length = body === undefined ? undefined : written + body
      if (written === 0) first = validatorsOf(response.headers)
      info(`downloading ${redact(url.href)}${length !== undefined ? ` (${formatBytes(length)})` : ''}`)
      const start = Date.now()
      const startBytes = written
      let lastReport = start
      let pending: Buffer[] = []
      let pendingBytes = 0
      let stopped = false
      // the whole file is read to its end when its digest is wanted, even when the
      // decoder is done before it
      const readAll = options.algos !== undefined && options.algos.length > 0
      tap = consumer ? startTap(consumer, length, fh) : undefined
      const writeback = cacheWriteback(fh)
      // the batch goes to the cache in one writev (no copy to concatenate it first)
      const flush = async () => {
        if (pendingBytes === 0) return
        const writing = writeCache(fh, pending, pendingBytes, written)
        // hashed while the write is in flight (a failed write fails the download anyway)
        for (const hash of hashes.values()) for (const buf of pending) hash.update(buf)
        await writing
        written += pendingBytes
        // the consumer reads it from the file (lib/image/growing-file.ts)
        if (tap && !stopped && !(await tap.grew(written))) stopped = true
        pending = []
        pendingBytes = 0
        writeback.reached(written)
      }
      inBody = true
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        pending.push(chunk)
        pendingBytes += chunk.length
        chunksAllocated(chunk.length)
        if (pendingBytes >= BATCH) await flush()
        if (stopped && !readAll) break // closes the connection
        const rate = endpoint.opts.limitRate
        if (rate) {
          const ahead = ((written - startBytes + pendingBytes) / rate) * 1000 - (Date.now() - start)
          if (ahead > 0) await new Promise((r) => setTimeout(r, ahead))
        }
        if (Date.now() - lastReport >= 5000) {
          lastReport = Date.now()
          const pct = length ? ` (${Math.floor(((written + pendingBytes) * 100) / length)}%)` : ''
          info(`downloaded ${formatBytes(written + pendingBytes)}${pct}`)
        }
      }
      if (!stopped || readAll) await flush()
      if (stopped && !readAll && written !== length) {
        // the decoder is done: what follows in the download is not part of the image
        await tap!.end()
        info(`the image ended after ${formatBytes(written)}${length !== undefined ? ` of the ${formatBytes(length)}` : ''} downloaded: the rest is not part of it, so the download was stopped and is not cached`)
        return { outcome: 'partial', validators: {}, digests: {} }
      }
      if (written === 0) throw new Failure(`the server sent an empty body for ${redact(url.href)}`, 'check the URL: an empty image installs nothing')
      if (length !== undefined && written !== length) {
        // worth another attempt (with --retry): it resumes where the file ends
        throw new TransientError(new Failure(`the download of ${redact(url.href)} ended after ${written} of ${length} bytes`, 'the server or the network cut it off: try again (CUSTOM_CURL_OPTS="--retry 3" resumes such downloads), or check the server'))
      }
      const secs = Math.max((Date.now() - start) / 1000, 0.001)
      info(`downloaded ${formatBytes(written - startBytes)} in ${secs.toFixed(1)} s (${((written - startBytes) / secs / 1e6).toFixed(1)} MB/s)`)
      // the cache file's last flush runs beside disk 0's, not after it
      const synced = writeback.finish()
      synced.catch(() => undefined) // awaited below, after the consumer's end
      await tap?.end()
      await synced
      const digests: Digests = {}
      for (const [algo, hash] of hashes) digests[algo] = hash.digest('hex')
      return { outcome: tap && !tap.declined() ? 'streamed' : 'complete', validators: first ?? {}, digests }
    } catch (err) {
      if (err instanceof ConsumerError) throw err.cause
      const failure = networkFailure(url, err, endpoint)
      // a connection cut off mid-body is worth another attempt, as curl's --retry
      // treats a partial transfer; our own failures (the cache filled up) are not
      throw inBody && !(err instanceof Failure) && !(failure instanceof TransientError) ? new TransientError(failure) : failure
    } finally {
      exchange.done()
      discardBody(exchange.response) // an error answer's connection is closed too
      await tap?.abort()
    }
  })
}

/** Writes a batch at position, leaving its all-zero chunks as holes: a raw image is mostly
 *  zeros (the bench's 71 %), which the cache then neither stores nor writes back, and
 *  which read back as zeros all the same. The file is extended to the batch's end, so its
 *  size is always what was downloaded. The runs are written one after the other: a
 *  follower (follow.ts) reads up to the file's end, and must never find a hole there that
 *  a write still in flight is to fill. libuv itself continues a partial writev, so a short
 *  count means the filesystem filled up. */
async function writeCache(fh: FileHandle, bufs: Buffer[], total: number, position: number): Promise<void> {
  let run: Buffer[] = []
  let runStart = position
  let runBytes = 0
  const writeRun = async () => {
    if (runBytes === 0) return
    const { bytesWritten } = await fh.writev(run, runStart).catch((err: unknown) => {
      throw cacheWriteFailure(failedWith(err))
    })
    if (bytesWritten < runBytes) throw cacheWriteFailure(`stopped after ${runStart + bytesWritten} bytes (filesystem full?)`)
  }
  let at = position
  for (const buf of bufs) {
    if (allZero(buf)) {
      await writeRun()
      run = []
      runBytes = 0
      runStart = at + buf.length
    } else {
      run.push(buf)
      runBytes += buf.length
    }
    at += buf.length
  }
  if (runBytes > 0) return writeRun() // it ends the batch: the file is as long as the download
  await fh.truncate(position + total).catch((err: unknown) => {
    throw cacheWriteFailure(failedWith(err))
  })
}

/** The cache file is written back every CACHE_WRITEBACK_EVERY bytes of download, as disk 0
 *  is (lib/writeback.ts): its last flush then has only the tail left. */
const CACHE_WRITEBACK_EVERY = 64 << 20

function cacheWriteback(fh: FileHandle): Writeback {
  return new Writeback(() => fh.datasync().catch((err: unknown) => {
    throw cacheWriteFailure(failedWith(err))
  }), CACHE_WRITEBACK_EVERY)
}
