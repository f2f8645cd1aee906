// The consumer of a download in progress (the writer of disk 0) reads it from the cache
// file as the file grows, never from the socket: the download goes on at the link's rate
// while the decoder is busy, and the decoder catches up from the page cache. Fed through a
// 1 MiB in-memory pipe instead, each pause of the decoder held the download back, and on a
// rate-limited link that time is lost for good (measured at 800 Mbit/s, raw+gz: 2.14 s,
// curl alone 1.42 s, the decoder alone 1.39 s). Memory stays bounded: what the decoder has
// not read yet is in the file.
import type { FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { chunksAllocated } from '../memory.js'

/** Writes the image from the download as it arrives; 'declined' when it cannot (a qcow2
 *  found by image_type=auto must be seen whole): the download then just completes. */
export type Consumer = (body: Readable, length: number | undefined) => Promise<void | 'declined'>

/** A failure of the consumer (decoding, writing disk 0), reported as itself. */
export class ConsumerError extends Error {
  constructor(override readonly cause: unknown) {
    super('consumer failed')
  }
}

export interface Tap {
  /** The file holds `bytes` of the download now; false once the consumer needs no more
   *  (it has the whole image). */
  grew(bytes: number): Promise<boolean>
  /** Whether the consumer declined the stream: the download goes on into the cache alone. */
  declined(): boolean
  /** The download is complete: waits for the consumer to read the rest and finish. */
  end(): Promise<void>
  abort(): Promise<void>
}

// reads of 256 KiB: with 1 MiB ones a raw create on loopback peaked at 140 MiB RSS, with
// 256 KiB at 97 (the bench's 1 GiB image), and took no longer
const READ = 256 << 10
/** How far the download may run ahead of the consumer. Unbounded, a download from a fast
 *  server outran a raw writer by hundreds of MiB and the create's peak RSS rose from 76 to
 *  137 MiB (node-fetch at full speed holds more chunks); 64 MiB absorbs a decoder's pauses
 *  on a slow link. */
const AHEAD = 64 << 20

/** Starts `consumer` on the download being written into `fh` from offset 0. */
export function startTap(consumer: Consumer, length: number | undefined, fh: FileHandle): Tap {
  let available = 0
  let complete = false
  let position = 0
  let pumping = false
  let wake: (() => void) | undefined
  let caughtUp: (() => void) | undefined
  const stream = new Readable({ highWaterMark: READ, read: () => void pump() })
  // A failed download destroys the stream, and so does a decoder that stops reading: both
  // are reported through the promises (download, consumer), never as an 'error' event
  // that nobody listens to yet (the consumer may still be preparing disk 0)
  stream.on('error', () => undefined)
  async function pump(): Promise<void> {
    if (pumping) return
    pumping = true
    try {
      while (!stream.destroyed) {
        if (position < available) {
          const buf = Buffer.allocUnsafe(Math.min(READ, available - position))
          const { bytesRead } = await fh.read(buf, 0, buf.length, position)
          if (bytesRead === 0) throw new Error(`the cache file ended at ${position} bytes, ${available} were written`)
          position += bytesRead
          chunksAllocated(bytesRead)
          if (caughtUp && available - position < AHEAD / 2) {
            caughtUp()
            caughtUp = undefined
          }
          if (!stream.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead))) return
        } else if (complete) {
          stream.push(null)
          return
        } else {
          await new Promise<void>((resolve) => (wake = resolve))
        }
      }
    } catch (err) {
      stream.destroy(err as Error)
    } finally {
      pumping = false
    }
  }
  const poke = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const release = () => {
    caughtUp?.()
    caughtUp = undefined
  }

  let failed: ConsumerError | undefined
  let settled = false
  let declined = false
  const done = consumer(stream, length).then(
    (verdict) => {
      settled = true
      declined = verdict === 'declined'
      stream.destroy()
      poke()
      release()
    },
    (err: unknown) => {
      settled = true
      failed = new ConsumerError(err)
      stream.destroy()
      poke()
      release()
    },
  )
  const check = () => {
    if (failed) throw failed
  }
  return {
    declined: () => declined,
    async grew(bytes) {
      available = bytes
      poke()
      // bounded lead; a stream not read yet (the consumer prepares disk 0) counts as behind
      if (!settled && available - position > AHEAD) await new Promise<void>((resolve) => (caughtUp = resolve))
      if (declined || !settled) return true // a declined stream: the cache still wants every byte
      await done // the decoder has stopped reading: its verdict
      check()
      return false
    },
    async end() {
      complete = true
      poke()
      await done
      check()
    },
    async abort() {
      if (!settled) stream.destroy(new Error('the download failed'))
      poke()
      await done
    },
  }
}
