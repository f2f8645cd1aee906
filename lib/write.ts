// Copies a byte stream onto disk 0: large positional writes, one write in flight while the
// next block is read, never past the disk's end, all-zero blocks skipped only when the
// target already reads as zero, one fdatasync at the end.
import type { FileHandle } from 'node:fs/promises'
import { Failure } from './errors.js'
import { formatBytes, info } from './log.js'
import type { TargetDisk } from './target.js'

export const BLOCK = 4 << 20
const ZERO = Buffer.alloc(BLOCK)
const REPORT_EVERY_MS = 5000

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

export async function writeStream(source: AsyncIterable<Buffer>, target: TargetDisk, fh: FileHandle, expected?: number): Promise<WriteResult> {
  const progress = new Progress(expected)
  const spare = [Buffer.allocUnsafe(BLOCK), Buffer.allocUnsafe(BLOCK)]
  let current = 0
  let fill = 0
  let position = 0
  let inFlight: Promise<unknown> = Promise.resolve()

  const submit = async (length: number) => {
    if (position + length > target.size) throw tooLarge(target, position + length, false)
    const buf = spare[current]
    await inFlight // the other buffer's write: it must finish before that buffer is reused
    if (!(target.knownZero && buf.compare(ZERO, 0, length, 0, length) === 0)) {
      const at = position
      inFlight = fh.write(buf, 0, length, at).catch((err: NodeJS.ErrnoException) => {
        throw new Failure(`writing disk 0 (${target.path}) failed at byte ${at} (${err.code ?? err.message})`, 'check the disk and the node\'s kernel log')
      })
      inFlight.catch(() => undefined) // awaited before the next submit; keeps Node from calling it unhandled
    } else {
      inFlight = Promise.resolve()
    }
    position += length
    current ^= 1
    fill = 0
    progress.tick(position)
  }

  for await (const chunk of source) {
    let offset = 0
    while (offset < chunk.length) {
      const n = Math.min(chunk.length - offset, BLOCK - fill)
      chunk.copy(spare[current], fill, offset, offset + n)
      fill += n
      offset += n
      if (fill === BLOCK) await submit(BLOCK)
    }
  }
  if (fill > 0) await submit(fill)
  await inFlight
  await fh.datasync().catch((err: NodeJS.ErrnoException) => {
    throw new Failure(`flushing disk 0 (${target.path}) failed (${err.code ?? err.message})`, 'check the disk and the node\'s kernel log')
  })
  return progress.done(position)
}
