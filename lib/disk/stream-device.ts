// export: a whole-disk copy from a device (block or file) to a pipe, in 4 MiB blocks with
// two buffers, so that the next read runs while the last write does. Ganeti runs it in a
// shell pipeline with socat: stdout is a pipe.
import { write } from 'node:fs'
import { open } from 'node:fs/promises'
import { promisify } from 'node:util'
import { Failure } from '../errors.js'

const BLOCK = 4 << 20
const writeFd = promisify(write)
const pause = () => new Promise((resolve) => setTimeout(resolve, 1))

async function writeAll(fd: number, buf: Buffer, length: number): Promise<void> {
  let done = 0
  while (done < length) {
    try {
      done += (await writeFd(fd, buf, done, length - done)).bytesWritten
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
      await pause()
    }
  }
}

/** Copies `size` bytes of the device to fd `out` (stdout). */
export async function copyDeviceTo(path: string, size: number, out: number): Promise<number> {
  const fh = await open(path, 'r')
  const buffers = [Buffer.allocUnsafe(BLOCK), Buffer.allocUnsafe(BLOCK)]
  let position = 0
  let writing: Promise<void> = Promise.resolve()
  try {
    for (let i = 0; position < size; i ^= 1) {
      const { bytesRead: n } = await fh.read(buffers[i], 0, Math.min(BLOCK, size - position), position)
      if (n === 0) throw new Failure(`${path} ended after ${position} of ${size} bytes`, 'check the disk')
      await writing
      writing = writeAll(out, buffers[i], n)
      writing.catch(() => undefined) // awaited below or before the next write
      position += n
    }
    await writing
  } finally {
    await fh.close()
  }
  return position
}
