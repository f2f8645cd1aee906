// Waiting on a stream we write to, for bounded memory.
import type { Writable } from 'node:stream'

/** Resolves when the stream has room again ('drain'), or is gone ('close': a reader that
 *  stopped must not keep the writer waiting). */
export function drained(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const go = () => {
      stream.off('drain', go)
      stream.off('close', go)
      resolve()
    }
    stream.on('drain', go)
    stream.on('close', go)
  })
}
