// The consumer of a download in progress (the writer of disk 0) reads it from the cache
// file as it grows (growing-file.ts), never from the socket: the download goes on at the
// link's rate while the decoder is busy, and the decoder catches up from the page cache.
// Fed through a 1 MiB in-memory pipe instead, each pause of the decoder held the download
// back, and on a rate-limited link that time is lost for good (measured at 800 Mbit/s,
// raw+gz: 2.14 s, curl alone 1.42 s, the decoder alone 1.39 s).
import type { FileHandle } from 'node:fs/promises'
import { GrowingFile } from './growing-file.js'

/** Writes the image from the download as it arrives; 'declined' when it cannot (a qcow2
 *  found by image_type=auto must be seen whole): the download then just completes. */
export type Consumer = (body: GrowingFile, length: number | undefined) => Promise<void | 'declined'>

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

/** How far the download may run ahead of the consumer. Unbounded, a download from a fast
 *  server outran a raw writer by hundreds of MiB and the create's peak RSS rose from 76 to
 *  137 MiB (node-fetch at full speed holds more chunks); 64 MiB absorbs a decoder's pauses
 *  on a slow link. */
const AHEAD = 64 << 20

/** Starts `consumer` on the download being written into `fh` from offset 0. */
export function startTap(consumer: Consumer, length: number | undefined, fh: FileHandle): Tap {
  let available = 0
  let complete = false
  let failure: Error | undefined
  let wake: { resolve: (complete: boolean) => void; reject: (err: Error) => void } | undefined
  let caughtUp: (() => void) | undefined
  const poke = () => {
    const w = wake
    wake = undefined
    if (failure) w?.reject(failure)
    else w?.resolve(complete)
  }
  const release = () => {
    caughtUp?.()
    caughtUp = undefined
  }
  const file = new GrowingFile(
    fh,
    {
      readable: () => available,
      more: () => (failure ? Promise.reject(failure) : complete ? Promise.resolve(true) : new Promise((resolve, reject) => (wake = { resolve, reject }))),
    },
    () => {
      if (caughtUp && available - file.position < AHEAD / 2) release()
    },
  )

  let failed: ConsumerError | undefined
  let settled = false
  let declined = false
  const done = consumer(file, length).then(
    (verdict) => {
      declined = verdict === 'declined'
    },
    (err: unknown) => {
      failed = new ConsumerError(err)
    },
  ).finally(() => {
    settled = true
    file.close()
    release()
  })
  const check = () => {
    if (failed) throw failed
  }
  return {
    declined: () => declined,
    async grew(bytes) {
      available = bytes
      poke()
      // bounded lead; a file not read yet (the consumer prepares disk 0) counts as behind
      if (!settled && available - file.position > AHEAD) await new Promise<void>((resolve) => (caughtUp = resolve))
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
      failure ??= new Error('the download failed')
      poke()
      file.close()
      await done
    },
  }
}
