// xz and zstd write a file disk themselves (lib/disk/direct.ts): the disk still equals the
// image, keeps its size on every path (xz empties it first), and a write error or a
// SIGTERM is reported as such.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { mkdirSync, statSync } from 'node:fs'
import { workspace, ganetiEnv, runAction, makeImage, sparseDisk, dirtyFile, dirtyLoop, readHead, childrenOf, alive, comm, cmdline, MiB, type Workspace } from './harness.js'

const test = suite('decompressors writing a file disk themselves')
let ws: Workspace
let img: ReturnType<typeof makeImage>

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
})
test.after(() => ws.cleanup())

const env = (vars: Record<string, string | undefined>) => ganetiEnv(ws, vars)
const DIRECT = /(xz|zstd) writes the image into the disk file itself/
const allocated = (path: string) => statSync(path).blocks * 512

for (const [type, file] of [['raw+xz', 'image.raw.xz'], ['raw+zst', 'image.raw.zst']]) {
  test(`${type} onto a sparse file: written by the decompressor, sparse, same size`, async () => {
    const disk = sparseDisk(ws.dir, 'direct.img')
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, file), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk }))
    assert.is(r.code, 0, r.output)
    assert.match(r.output, DIRECT)
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), 'disk differs from the image')
    assert.is(statSync(disk).size, 32 * MiB, 'the disk file changed size')
    // the image holds 6 MiB of data in 20 MiB: its zero blocks were not written
    assert.ok(allocated(disk) <= 7 * MiB, `${allocated(disk)} bytes allocated`)
  })

  test(`${type} onto a file holding an old instance: nothing of it is left in the image's range`, async () => {
    const disk = dirtyFile(ws.dir, 'direct-dirty.img')
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, file), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk, INSTANCE_REINSTALL: '1' }))
    assert.is(r.code, 0, r.output)
    assert.match(r.output, DIRECT)
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), 'disk differs from the image')
    assert.is(statSync(disk).size, 32 * MiB, 'the disk file changed size')
    // xz got an emptied file: the old data past the image is gone too
    if (type === 'raw+xz') assert.is(readHead(disk, 1, 32 * MiB - 1)[0], 0)
  })

  test(`${type} onto a block device goes through the writer (it zeroes or writes every block)`, async () => {
    const disk = dirtyLoop(ws.dir, `direct-loop-${type}.img`)
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, file), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk }))
    assert.is(r.code, 0, r.output)
    assert.not.match(r.output, DIRECT)
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), 'disk differs from the image')
  })
}

test('a full filesystem under the disk file: the write error names disk 0, and the file keeps its size', async () => {
  const mnt = join(ws.dir, 'small-fs')
  mkdirSync(mnt)
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt])
  try {
    for (const [type, file] of [['raw+xz', 'image.raw.xz'], ['raw+zst', 'image.raw.zst']]) {
      const disk = sparseDisk(mnt, 'disk.img')
      const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, file), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk }))
      assert.is(r.code, 1, r.output)
      assert.match(r.lastLine, /^create failed: (xz|zstd) could not write disk 0 .*[Nn]o space left.*check the disk/)
      assert.is(statSync(disk).size, 32 * MiB, `${type}: the disk file changed size`)
    }
  } finally {
    execFileSync('umount', [mnt])
  }
})

test('SIGTERM while xz writes disk 0: xz is stopped, the file gets its size back, exit 143', async () => {
  // text-like data decodes slowly enough (about a second) to be interrupted
  execFileSync('bash', ['-c', 'head -c 24M /dev/urandom | base64 -w0 | xz -0 -T0 > slow.xz'], { cwd: ws.dir })
  const disk = dirtyFile(ws.dir, 'slow.img', 40 * MiB)
  let pid = 0
  const running = runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, 'slow.xz'), OSP_IMAGE_TYPE: 'raw+xz', DISK_0_PATH: disk }), { onStart: (p) => (pid = p) })
  let xz: number | undefined
  for (let i = 0; i < 400 && xz === undefined; i++) {
    await new Promise((r) => setTimeout(r, 5))
    if (pid) xz = childrenOf(pid).find((c) => comm(c) === 'xz' && cmdline(c).includes('-dc'))
  }
  assert.ok(xz, 'xz never started')
  await new Promise((r) => setTimeout(r, 200))
  process.kill(pid, 'SIGTERM')
  const r = await running
  assert.is(r.code, 143, r.output)
  assert.match(r.lastLine, /interrupted by SIGTERM/)
  assert.not.ok(alive(xz!), 'xz still runs')
  assert.is(statSync(disk).size, 40 * MiB, 'the disk file did not get its size back')
})

test.run()
