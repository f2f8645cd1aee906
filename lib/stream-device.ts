// export and import: whole-disk copies between a device (block or file) and a pipe, with
// large blocks and synchronous syscalls. Ganeti runs these in a shell pipeline with socat,
// so stdout/stdin are pipes: writeSync/readSync on them block like dd does.
import { closeSync, fdatasyncSync, openSync, readSync, writeSync } from 'node:fs'
import { Failure } from './errors.js'

const BLOCK = 4 << 20

/** Copies `size` bytes of the device to fd `out` (stdout). */
export function copyDeviceTo(path: string, size: number, out: number): number {
  const fd = openSync(path, 'r')
  const buf = Buffer.allocUnsafe(BLOCK)
  let position = 0
  try {
    while (position < size) {
      const n = readSync(fd, buf, 0, Math.min(BLOCK, size - position), position)
      if (n === 0) throw new Failure(`${path} ended after ${position} of ${size} bytes`, 'check the disk')
      writeAll(out, buf, n)
      position += n
    }
  } finally {
    closeSync(fd)
  }
  return position
}

function writeAll(fd: number, buf: Buffer, length: number): void {
  let done = 0
  while (done < length) {
    try {
      done += writeSync(fd, buf, done, length - done)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue
      throw err
    }
  }
}

function readFull(fd: number, buf: Buffer): number {
  let filled = 0
  while (filled < buf.length) {
    let n: number
    try {
      n = readSync(fd, buf, filled, buf.length - filled, null)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue
      throw err
    }
    if (n === 0) break
    filled += n
  }
  return filled
}

/** Copies fd `input` (stdin) onto the device, never past `size`; one fdatasync at the end.
 *  The device is opened without O_CREAT or O_TRUNC: it must exist, and keeps its size. */
export function copyToDevice(input: number, path: string, size: number): { bytes: number; firstByteAt: number } {
  const fd = openSync(path, 'r+')
  const buf = Buffer.allocUnsafe(BLOCK)
  let position = 0
  let firstByteAt = 0
  try {
    for (;;) {
      const n = readFull(input, buf)
      if (n === 0) break
      if (firstByteAt === 0) firstByteAt = Date.now()
      if (position + n > size) throw new Failure(`the import stream is larger than ${path} (${size} bytes)`, 'import onto a disk at least as large as the exported one')
      let done = 0
      while (done < n) done += writeSync(fd, buf, done, n - done, position + done)
      position += n
    }
    fdatasyncSync(fd)
  } finally {
    closeSync(fd)
  }
  return { bytes: position, firstByteAt: firstByteAt || Date.now() }
}
