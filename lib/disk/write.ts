// Copies a byte stream onto disk 0: large positional writes, one write in flight while the
// next block is read, never past the disk's end, all-zero blocks skipped only when the
// target already reads as zero, writeback started early and one fdatasync at the end.
import { chunksAllocated } from '../memory.js'
import { allZero } from '../zeros.js'
import { Writeback } from '../writeback.js'
import type { FileHandle } from 'node:fs/promises'
import { Failure } from '../errors.js'
import { debug, formatBytes, info } from '../log.js'
import { stopping } from '../cleanup.js'
import type { TargetDisk } from './target.js'

export const BLOCK = 4 << 20
const REPORT_EVERY_MS = 5000
const DISK_WRITEBACK_EVERY = 256 << 20

export interface WriteResult {
  bytes: number
  seconds: number
}

export class Progress {
  private readonly start = Date.now()
  private last = this.start
  constructor(private readonly expected?: number) {}

  tick(bytes: number): void {
    const now = Date.now()
    if (now - this.last < REPORT_EVERY_MS) return
    this.last = now
    const secs = (now - this.start) / 1000
    const rate = bytes / secs
    let text = `written ${formatBytes(bytes)}`
    if (this.expected) {
      const eta = rate > 0 ? Math.round((this.expected - bytes) / rate) : 0
      text += ` of ${formatBytes(this.expected)} (${Math.floor((bytes * 100) / this.expected)}%), ETA ${eta} s`
    }
    info(`${text}, ${(rate / 1e6).toFixed(1)} MB/s`)
  }

  done(bytes: number): WriteResult {
    const seconds = Math.max((Date.now() - this.start) / 1000, 0.001)
    return { bytes, seconds }
  }
}

export function tooLarge(target: TargetDisk, bytes: number, known: boolean): Failure {
  return new Failure(
    `the image is ${known ? '' : 'at least '}${formatBytes(bytes)} (${bytes} bytes), larger than disk 0 (${formatBytes(target.size)})`,
    'give the instance a larger disk 0 (gnt-instance add --disk 0:size=...) or use a smaller image',
  )
}

/** Where the image's bytes come from: read() fills buf from offset with up to length
 *  bytes and resolves to the count, 0 at the end. Reading straight into the writer's own
 *  buffers spares a copy and, above all, an allocation per chunk. */
export interface ByteSource {
  read(buf: Buffer, offset: number, length: number): Promise<number>
}

/** A ByteSource over a stream of chunks (a decompressor's stdout, zlib). */
export function chunkSource(stream: AsyncIterable<Buffer>): ByteSource {
  const it = stream[Symbol.asyncIterator]()
  let chunk: Buffer | undefined
  let used = 0
  return {
    async read(buf, offset, length) {
      if (!chunk || used === chunk.length) {
        const next = await it.next()
        if (next.done) return 0
        chunk = next.value
        used = 0
        chunksAllocated(chunk.length)
      }
      const n = chunk.copy(buf, offset, used, Math.min(chunk.length, used + length))
      used += n
      return n
    },
  }
}

const SEGMENT = 64 << 10

/** The parts of buf[0, length) that are not all zero, in SEGMENT steps, as [start, end) runs. */
export function dataRuns(buf: Buffer, length: number): [number, number][] {
  const runs: [number, number][] = []
  for (let at = 0; at < length; at += SEGMENT) {
    const end = Math.min(at + SEGMENT, length)
    if (allZero(buf, at, end)) continue
    const last = runs[runs.length - 1]
    if (last && last[1] === at) last[1] = end
    else runs.push([at, end])
  }
  return runs
}

export async function writeStream(source: ByteSource, target: TargetDisk, fh: FileHandle, expected?: number): Promise<WriteResult> {
  let progress: Progress | undefined // timed from the first byte, not from waiting for a peer
  const buffers = [Buffer.allocUnsafe(BLOCK), Buffer.allocUnsafe(BLOCK)]
  let current = 0
  let position = 0
  let inFlight: Promise<unknown> = Promise.resolve()
  const writeback = diskWriteback(fh, target)

  const write = async (buf: Buffer, start: number, end: number, at: number) => {
    if (stopping()) throw new Failure('writing disk 0 was stopped', 'see the messages above')
    return fh.write(buf, start, end - start, at).catch((err: NodeJS.ErrnoException) => {
      throw new Failure(`writing disk 0 (${target.path}) failed at byte ${at} (${err.code ?? err.message})`, 'check the disk and the node\'s kernel log')
    })
  }

  for (;;) {
    const buf = buffers[current]
    let fill = 0
    while (fill < BLOCK) {
      const n = await source.read(buf, fill, BLOCK - fill)
      if (n === 0) break
      fill += n
    }
    if (fill === 0) break
    progress ??= new Progress(expected)
    if (position + fill > target.size) throw tooLarge(target, position + fill, false)
    await inFlight // the other buffer's write must finish before the next read reuses it
    const at = position
    // on a disk known to read as zero, the zero parts need no writing
    const runs: [number, number][] = target.knownZero ? dataRuns(buf, fill) : [[0, fill]]
    inFlight = Promise.all(runs.map(([start, end]) => write(buf, start, end, at + start)))
    inFlight.catch(() => undefined) // awaited before the next write; keeps Node from calling it unhandled
    position += fill
    writeback.reached(position)
    current ^= 1
    progress.tick(position)
    if (fill < BLOCK) break
  }
  await inFlight
  await writeback.finish()
  return (progress ?? new Progress(expected)).done(position)
}

/** An fdatasync of disk 0, its failure said as the disk's. */
export async function syncDisk(fh: FileHandle, target: TargetDisk, what = 'flushed'): Promise<void> {
  const start = Date.now()
  await fh.datasync().catch((err: NodeJS.ErrnoException) => {
    throw new Failure(`flushing disk 0 (${target.path}) failed (${err.code ?? err.message})`, 'check the disk and the node\'s kernel log')
  })
  debug(`disk 0 ${what} in ${((Date.now() - start) / 1000).toFixed(2)} s`)
}

/** disk 0's early writeback (lib/writeback.ts): the failure of a flush is the disk's. */
export function diskWriteback(fh: FileHandle, target: TargetDisk): Writeback {
  return new Writeback((early) => syncDisk(fh, target, early ? 'written back early' : 'flushed'), DISK_WRITEBACK_EVERY)
}
