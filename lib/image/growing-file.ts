// A file that a download is still being written into (the cache's temporary file), read
// from its start as it grows: by disk 0's writer in the create that downloads it (tap.ts)
// and in the creates that share that download (follow.ts). Reading the file, never the
// socket, lets the download go on at the link's rate while a decoder pauses, and keeps
// memory bounded: what the writer has not read yet is in the page cache, not in Buffers.
import type { FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { chunksAllocated } from '../memory.js'

/** How the reader learns that the file grew. */
export interface Growth {
  /** How far the file may be read now: the bytes the downloader says it holds, or
   *  Infinity where only a read tells (another process's download). */
  readable(): number
  /** Resolves when there may be more: true once the download is complete (what the file
   *  holds is all of it). Rejects when the download failed. */
  more(): Promise<boolean>
}

// stream chunks of 256 KiB: with 1 MiB ones a raw create on loopback peaked at 140 MiB
// RSS, with 256 KiB at 97 (the bench's 1 GiB image), and took no longer
const CHUNK = 256 << 10

export class GrowingFile {
  /** Bytes read from the file so far. */
  position = 0
  private complete = false
  private head: Buffer | undefined // peeked, not consumed yet
  private queue: Promise<unknown> = Promise.resolve()
  private readable: Readable | undefined

  constructor(
    private readonly fh: FileHandle,
    private readonly growth: Growth,
    /** Sees every byte once, in order, as it is read (a digest, the downloader's lead). */
    private readonly onRead?: (chunk: Buffer) => void,
  ) {}

  /** Reads up to `length` bytes into buf at offset, waiting for the download to bring
   *  them; 0 only at the end of a complete download. A ByteSource (disk/write.ts): the raw
   *  writer reads straight into its own blocks, with no Buffer per chunk. */
  read(buf: Buffer, offset: number, length: number): Promise<number> {
    if (this.head) {
      const n = this.head.copy(buf, offset, 0, Math.min(length, this.head.length))
      this.head = n === this.head.length ? undefined : this.head.subarray(n)
      return Promise.resolve(n)
    }
    return this.serialised(() => this.readFile(buf, offset, length))
  }

  /** The next `n` bytes (fewer only at the end), left to be read again. */
  async peek(n: number): Promise<Buffer> {
    const head = Buffer.alloc(n)
    let got = this.head ? this.head.copy(head) : 0
    while (got < n) {
      const more = await this.serialised(() => this.readFile(head, got, n - got))
      if (more === 0) break
      got += more
    }
    this.head = got > 0 ? head.subarray(0, got) : undefined
    return head.subarray(0, got)
  }

  /** The rest of the file as a stream of Buffers (a decoder's input), made once. */
  stream(): Readable {
    if (this.readable) return this.readable
    let pumping = false
    const stream = new Readable({ highWaterMark: CHUNK, read: () => void pump() })
    // a failed download destroys the stream, and so does a decoder that stops reading:
    // both are reported through promises (the download's, the consumer's), never as an
    // 'error' event that nobody listens to yet
    stream.on('error', () => undefined)
    const pump = async () => {
      if (pumping) return
      pumping = true
      try {
        while (!stream.destroyed) {
          const buf = Buffer.allocUnsafe(CHUNK)
          const n = await this.read(buf, 0, CHUNK)
          if (n === 0) {
            stream.push(null)
            return
          }
          chunksAllocated(n)
          if (!stream.push(n === CHUNK ? buf : buf.subarray(0, n))) return
        }
      } catch (err) {
        stream.destroy(err as Error)
      } finally {
        pumping = false
      }
    }
    return (this.readable = stream)
  }

  /** The reader is done with the file (its stream, if any, is released). */
  close(): void {
    this.readable?.destroy()
  }

  // one read of the file at a time: the position is shared
  private serialised(read: () => Promise<number>): Promise<number> {
    const result = this.queue.then(read)
    this.queue = result.catch(() => undefined)
    return result
  }

  private async readFile(buf: Buffer, offset: number, length: number): Promise<number> {
    for (;;) {
      const limit = this.growth.readable()
      const room = Math.min(length, limit - this.position)
      if (room > 0) {
        const { bytesRead } = await this.fh.read(buf, offset, room, this.position)
        if (bytesRead > 0) {
          this.position += bytesRead
          this.onRead?.(buf.subarray(offset, offset + bytesRead))
          return bytesRead
        }
        if (limit !== Infinity) throw new Error(`the cache file ended at ${this.position} bytes, ${limit} were written`)
      }
      if (this.complete) return 0
      this.complete = await this.growth.more()
    }
  }
}
