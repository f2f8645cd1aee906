// create from a local image path: every image type onto a fresh sparse file and onto a
// loop device holding old data, byte for byte; and the ways a create must fail.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync, readFileSync, statSync } from 'node:fs'
import { workspace, variant, ganetiEnv, runAction, makeImage, sparseDisk, dirtyFile, dirtyLoop, readHead, loopsOf, corrupt, MiB, type Workspace } from './harness.js'

const test = suite('create from a local path')
let ws: Workspace
let img: ReturnType<typeof makeImage>

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
})
test.after(() => ws.cleanup())

const env = (vars: Record<string, string | undefined>) => ganetiEnv(ws, vars)

for (const type of ['raw', 'raw+gz', 'raw+bzip2', 'raw+bz2', 'raw+xz', 'raw+zst', 'qcow2']) {
  for (const target of ['sparse file', 'file holding old data', 'dirty loop device']) {
    test(`${type} onto a ${target}: disk equals the image`, async () => {
      const disk = target === 'sparse file' ? sparseDisk(ws.dir, 'disk.img') : target === 'dirty loop device' ? dirtyLoop(ws.dir, `dirty-${type}.img`) : dirtyFile(ws.dir, 'dirty.img')
      const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, img.files[type as keyof typeof img.files]), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk, DISK_0_SIZE: '32' }))
      assert.is(r.code, 0, r.output)
      assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), 'disk differs from the image')
      assert.match(r.output, /wrote 20\.0 MiB to disk 0 in .* MB\/s/)
      // past the image: untouched, or zeroed where the image's size was not known up front
      assert.ok([0, 0x5a].includes(readHead(disk, 1, 32 * MiB - 1)[0]), 'bytes past the image hold something else')
      if (target !== 'dirty loop device') assert.is(statSync(disk).size, 32 * MiB, 'the disk file changed size')
    })
  }
}

for (const [type, file] of [['raw+gz', 'image.raw.gz'], ['raw+bzip2', 'image.raw.bz2'], ['raw+xz', 'image.raw.xz'], ['raw+zst', 'image.raw.zst'], ['qcow2', 'image.qcow2']]) {
  for (const how of ['truncate', 'flip'] as const) {
    if (type === 'qcow2' && how === 'flip') continue // qcow2 data clusters carry no checksum
    test(`${how === 'truncate' ? 'truncated' : 'corrupt'} ${type} fails the create with a one-line cause`, async () => {
      const bad = corrupt(join(ws.dir, file), join(ws.dir, `${how}-${file}`), how)
      const disk = sparseDisk(ws.dir, 'disk.img')
      const r = await runAction(ws, 'create', env({ OSP_IMAGE: bad, OSP_IMAGE_TYPE: type, DISK_0_PATH: disk }))
      assert.is.not(r.code, 0, r.output)
      assert.match(r.lastLine, /^create failed: .*corrupt or truncated/)
      assert.is(statSync(disk).size, 32 * MiB, 'the disk file changed size')
    })
  }
}

test('image_type=auto (or none) tells every format apart by its magic bytes', async () => {
  for (const [type, file] of Object.entries(img.files)) {
    if (type === 'raw+bz2') continue
    const disk = dirtyLoop(ws.dir, `auto-${type}.img`)
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, file), OSP_IMAGE_TYPE: type === 'raw+xz' ? undefined : 'auto', DISK_0_PATH: disk }))
    assert.is(r.code, 0, r.output)
    assert.match(r.output, new RegExp(`image_type auto: the image is ${type.replace('+', '\\+')}\n`))
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), `${type}: disk differs`)
  }
})

test('a flipped qcow2 header is refused', async () => {
  const data = Buffer.from(readFileSync(join(ws.dir, 'image.qcow2')))
  data.fill(0xff, 0x30, 0x38) // refcount table offset
  writeFileSync(join(ws.dir, 'flipped.qcow2'), data)
  const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, 'flipped.qcow2'), OSP_IMAGE_TYPE: 'qcow2', DISK_0_PATH: sparseDisk(ws.dir, 'disk.img') }))
  assert.is.not(r.code, 0)
  assert.match(r.lastLine, /^create failed: qemu-img/)
})

test('a qcow2 with a backing file is refused before qemu-img opens it', async () => {
  const { execFileSync } = await import('node:child_process')
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', img.raw, join(ws.dir, 'overlay.qcow2')])
  const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, 'overlay.qcow2'), OSP_IMAGE_TYPE: 'qcow2', DISK_0_PATH: sparseDisk(ws.dir, 'disk.img') }))
  assert.is.not(r.code, 0)
  assert.match(r.lastLine, /backing file, which is refused/)
})

test('an image larger than the disk is refused before the first write (known size)', async () => {
  for (const type of ['raw', 'raw+xz', 'raw+zst', 'qcow2']) {
    const disk = dirtyLoop(ws.dir, `small-${type}.img`, 16 * MiB)
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, img.files[type as 'raw']), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk, DISK_0_SIZE: '16' }))
    assert.is.not(r.code, 0)
    assert.match(r.lastLine, /larger than disk 0 \(16\.0 MiB\); give the instance a larger disk/)
    assert.ok(readHead(disk, 16 * MiB).equals(Buffer.alloc(16 * MiB, 0x5a)), `${type}: the disk was written to`)
  }
})

test('an image larger than the disk is refused before the first write onto a file disk too (xz, zstd)', async () => {
  for (const type of ['raw+xz', 'raw+zst']) {
    const disk = sparseDisk(ws.dir, `small-${type}.img`, 16 * MiB)
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, img.files[type as 'raw']), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk }))
    assert.is.not(r.code, 0)
    assert.match(r.lastLine, /larger than disk 0 \(16\.0 MiB\); give the instance a larger disk/)
    assert.is(statSync(disk).size, 16 * MiB, 'the file disk changed size')
    assert.is(statSync(disk).blocks, 0, `${type}: the disk was written to`)
  }
})

test('an image larger than the disk stops at the disk end (size unknown before)', async () => {
  // 128 MiB of output: far more than the pipe and the stream buffers hold when the writer
  // stops, so that the decompressor must be stopped, its output discarded, to finish
  execFileSync('bash', ['-c', 'head -c 128M /dev/zero | tee >(gzip -1 > big.gz) | bzip2 -1 > big.bz2'], { cwd: ws.dir })
  for (const [type, file] of [['raw+gz', img.files['raw+gz']], ['raw+bzip2', img.files['raw+bzip2']], ['raw+gz', 'big.gz'], ['raw+bzip2', 'big.bz2']]) {
    const disk = sparseDisk(ws.dir, 'small.img', 16 * MiB)
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, file), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk }))
    assert.is.not(r.code, 0)
    assert.match(r.lastLine, /at least .* larger than disk 0/, r.output)
    assert.is(statSync(disk).size, 16 * MiB, 'the file disk grew')
  }
})

test('unknown type, missing parameters and missing image: clear failures', async () => {
  const disk = sparseDisk(ws.dir, 'disk.img')
  const cases: [Record<string, string | undefined>, RegExp][] = [
    [{ OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'zip' }, /unknown image_type 'zip'; use one of raw, raw\+gz/],
    [{ OSP_IMAGE_TYPE: 'raw' }, /the OS parameter image is not set/],
    [{ OSP_IMAGE: join(ws.dir, 'nope.img'), OSP_IMAGE_TYPE: 'raw' }, /does not exist on this node/],
    [{ OSP_IMAGE: 'ftp://127.0.0.1/x.img', OSP_IMAGE_TYPE: 'raw' }, /scheme 'ftp:' are not supported/],
    [{ OSP_IMAGE: disk, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: undefined, DISK_COUNT: '0' }, /no local disk 0/],
  ]
  for (const [vars, pattern] of cases) {
    const r = await runAction(ws, 'create', env({ DISK_0_PATH: disk, ...vars }))
    assert.is(r.code, 1, r.output)
    assert.match(r.lastLine, /^create failed: /)
    assert.match(r.lastLine, pattern)
  }
})

test('device paths and other instances\' disks are refused as images', async () => {
  const disk = sparseDisk(ws.dir, 'disk.img')
  const dev = dirtyLoop(ws.dir, 'other-instance.img', 4 * MiB)
  const { symlinkSync } = await import('node:fs')
  symlinkSync(dev, join(ws.dir, 'innocent.img'))
  for (const image of [dev, join(ws.dir, 'innocent.img'), '/proc/self/environ']) {
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: image, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk }))
    assert.is(r.code, 1)
    assert.match(r.lastLine, /is refused because it lies under \/(dev|proc)/)
  }
})

test('hooks: run in order with Ganeti env, config vars and TARGET_DISK_DEVICE; loop device released', async () => {
  const out = join(ws.dir, 'hook-env.txt')
  const v = variant(ws, 'hooked', `export GREETING='hello world' # comment\n`, {
    '10-first': `#!/bin/sh\necho "first $TARGET_DISK_DEVICE $INSTANCE_NAME $GREETING $OSP_IMAGE_TYPE $DISK_0_PATH" > ${out}\n`,
    '20-second': `#!/bin/sh\necho "second $(head -c 4 $TARGET_DISK_DEVICE | od -An -tx1 | tr -d ' ')" >> ${out}\n`,
    'README.txt': 'not a hook\n',
  })
  const disk = sparseDisk(ws.dir, 'hooked.img')
  const r = await runAction(ws, 'create', env({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk }))
  assert.is(r.code, 0, r.output)
  const lines = readFileSync(out, 'utf8').trim().split('\n')
  assert.match(lines[0], new RegExp(`^first /dev/loop\\d+ inst1.example.org hello world raw ${disk}$`))
  assert.is(lines[1], 'second ' + img.bytes.subarray(0, 4).toString('hex'))
  assert.match(r.output, /hook README\.txt skipped: its name has characters/)
  assert.is(loopsOf(disk), '', 'loop device left attached')
})

test('a failing hook fails the create, is named, and the loop device is released', async () => {
  const v = variant(ws, 'badhook', '', { '50-broken': '#!/bin/sh\necho "hook says no" >&2\nexit 3\n' })
  const disk = sparseDisk(ws.dir, 'badhook.img')
  const r = await runAction(ws, 'create', env({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk }))
  assert.is(r.code, 1)
  assert.match(r.output, /hook says no/)
  assert.match(r.lastLine, /^create failed: hook 50-broken failed \(exit code 3\); see its output above/)
  assert.is(loopsOf(disk), '')
})

test('a hook without a #! line is not run as a shell script: it fails the create, named', async () => {
  const marker = join(ws.dir, 'no-shebang-ran')
  const v = variant(ws, 'noshebang', '', { '10-plain': `touch ${marker}\n` })
  const r = await runAction(ws, 'create', env({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'noshebang.img') }))
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, /^create failed: hook 10-plain could not be started \(it has no #! line and is no program\)/)
  assert.not.ok(existsSync(marker), 'it ran')
})

test('SIGTERM during a hook: the hook is stopped, the loop device released, exit 143', async () => {
  const v = variant(ws, 'slowhook', '', { '10-sleep': '#!/bin/sh\necho sleeping\nexec sleep 30\n' })
  const disk = sparseDisk(ws.dir, 'slowhook.img')
  let pid = 0
  const running = runAction(ws, 'create', env({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk }), { onStart: (p) => (pid = p) })
  for (let i = 0; i < 100 && !/loop\d+/.test(loopsOf(disk)); i++) await new Promise((r) => setTimeout(r, 100))
  await new Promise((r) => setTimeout(r, 300))
  process.kill(pid, 'SIGTERM')
  const r = await running
  assert.is(r.code, 143, r.output)
  assert.match(r.lastLine, /interrupted by SIGTERM/)
  assert.is(loopsOf(disk), '')
})

test('DEBUG_LEVEL=1 logs the steps and commands; INSTANCE_REINSTALL=1 is noted', async () => {
  const disk = dirtyLoop(ws.dir, 'reinstall.img')
  const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, 'image.raw.xz'), OSP_IMAGE_TYPE: 'raw+xz', DISK_0_PATH: disk, DEBUG_LEVEL: '1', INSTANCE_REINSTALL: '1' }))
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /reinstalling inst1\.example\.org .*INSTANCE_REINSTALL=1/)
  assert.match(r.output, /\[debug\] running \/usr\/bin\/xz -dc -T0/)
  assert.match(r.output, /\[debug\] disk 0: \/dev\/loop\d+ block/)
  assert.match(r.output, /\[debug\] running \/usr\/bin\/xz --robot --list /)
  assert.match(r.output, /\[debug\] pipe on descriptor \d+ enlarged to 1048576 bytes/)
  assert.match(r.output, /\[debug\] disk 0 flushed in \d+\.\d\d s/)
})

test('a decompressor\'s output comes through Node\'s own connection where no pipe can be made', async () => {
  const disk = dirtyLoop(ws.dir, 'no-fifo.img')
  const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, 'image.raw.bz2'), OSP_IMAGE_TYPE: 'raw+bzip2', DISK_0_PATH: disk, DEBUG_LEVEL: '1', TMPDIR: join(ws.dir, 'absent') }))
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /\[debug\] no pipe of our own \(.*\): the child's output comes through Node's/)
  assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), 'disk differs from the image')
})

test('the commands create runs do not source root\'s ~/.bashrc', async () => {
  // bash sources ~/.bashrc when its stdin is a socket, as Node's default stdio gives it
  const home = join(ws.dir, 'home')
  mkdirSync(home, { recursive: true })
  const marker = join(home, 'bashrc-ran')
  writeFileSync(join(home, '.bashrc'), `touch ${marker}\n`)
  for (const [type, disk] of [['raw', sparseDisk(ws.dir, 'home.img')], ['raw+xz', dirtyLoop(ws.dir, 'home-loop.img')]]) {
    const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, img.files[type as keyof typeof img.files]), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk, HOME: home }))
    assert.is(r.code, 0, r.output)
    assert.not.ok(existsSync(marker), `${type}: ~/.bashrc ran`)
  }
})

test('-h and --help print the usage on stdout (exit 0); wrong arguments on stderr (exit 2), for every script', async () => {
  for (const action of ['create', 'import', 'export', 'rename', 'verify']) {
    for (const args of [['-h'], ['--help']]) {
      const r = await runAction(ws, action, env({}), { args })
      assert.is(r.code, 0)
      assert.match(r.stdout.toString(), new RegExp(`^usage: ${action}`))
      assert.is(r.output.replace(r.stdout.toString(), ''), '', 'something went to stderr')
    }
    const r = await runAction(ws, action, env({}), { args: ['bogus', 'args'] })
    assert.is(r.code, 2)
    assert.is(r.stdout.length, 0)
    assert.match(r.output, /usage:/)
    assert.match(r.lastLine, /wrong arguments/)
  }
})

test.run()
