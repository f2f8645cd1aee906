// Writing disk 0 starts writeback early (every 256 MiB) so that the final flush has only
// the tail left; a failed flush still fails the create, whichever flush met the error.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { workspace, ganetiEnv, runAction, sparseDisk, readHead, detachLoop, MiB, type Workspace } from './harness.js'

const test = suite('early writeback of disk 0')
let ws: Workspace

test.before(async () => {
  ws = await workspace()
})
test.after(() => ws.cleanup())

const env = (vars: Record<string, string | undefined>) => ganetiEnv(ws, vars)

/** A raw image of `size` bytes: `data` at the given offsets, zeros (holes) between. */
function rawImage(name: string, size: number, data: [number, Buffer][]): string {
  const path = sparseDisk(ws.dir, name, size)
  const fd = openSync(path, 'r+')
  try {
    for (const [at, bytes] of data) writeSync(fd, bytes, 0, bytes.length, at)
  } finally {
    closeSync(fd)
  }
  return path
}

test('an image over 256 MiB is written back early, then flushed once more; the disk equals it', async () => {
  const parts: [number, Buffer][] = [[0, randomBytes(MiB)], [200 * MiB, randomBytes(MiB)], [299 * MiB, randomBytes(MiB)]]
  const image = rawImage('big.raw', 300 * MiB, parts)
  const disk = sparseDisk(ws.dir, 'big-disk.img', 320 * MiB)
  const r = await runAction(ws, 'create', env({ OSP_IMAGE: image, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk, DEBUG_LEVEL: '1' }))
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /\[debug\] disk 0 written back early in \d+\.\d\d s\n(.*\n)*.*\[debug\] disk 0 flushed in \d+\.\d\d s/)
  for (const [at, bytes] of parts) assert.ok(readHead(disk, bytes.length, at).equals(bytes), `disk differs at ${at}`)
  assert.ok(readHead(disk, MiB, 100 * MiB).equals(Buffer.alloc(MiB)), 'zeros of the image are not zero on disk')
})

test('a flush that fails fails the create, also when the early writeback met the error first', async () => {
  // disk 0 is a loop device over a 256 MiB file on a 16 MiB tmpfs: writing it succeeds
  // (into the page cache), writing it back fails. The image is exactly 256 MiB, so the
  // early writeback starts after the last write and meets the error first
  const mnt = join(ws.dir, 'tiny-fs')
  mkdirSync(mnt)
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt])
  let dev = ''
  try {
    const backing = sparseDisk(mnt, 'backing.img', 256 * MiB)
    dev = execFileSync('losetup', ['--find', '--show', backing]).toString().trim()
    const image = join(ws.dir, 'full.raw')
    execFileSync('bash', ['-c', `yes simpleimage | head -c ${256 * MiB} > ${image}`])
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: image, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: dev, DEBUG_LEVEL: '1' }))
    assert.is(r.code, 1, r.output)
    assert.not.match(r.output, /\bdone: |disk 0 flushed in/)
    assert.match(r.lastLine, /^create failed: flushing disk 0 \(\/dev\/loop\d+\) failed \((EIO|ENOSPC)\); check the disk/)
  } finally {
    if (dev) detachLoop(dev)
    execFileSync('umount', [mnt])
  }
})

test.run()
