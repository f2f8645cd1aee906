// The variant's image catalog (images.ini), through the built scripts run as Ganeti runs
// them: `-O image=NAME` is verified and installed from the catalog's section, -O wins.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { workspace, variant, ganetiEnv, runAction, runVerify, sparseDisk, readHead, MiB, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'

const test = suite('image catalog')
let ws: Workspace
let web: TestServer
let bytes: Buffer
let file = ''

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')

test.before(async () => {
  ws = await workspace()
  // a small image, plain and xz-compressed: enough to tell a right install from a wrong one
  bytes = Buffer.concat([randomBytes(MiB), Buffer.alloc(MiB), randomBytes(MiB / 2)])
  writeFileSync(join(ws.dir, 'small.raw'), bytes)
  execFileSync('xz', ['-k0', join(ws.dir, 'small.raw')])
  web = await startHttpServer({ root: ws.dir })
  variant(ws, 'cat')
  file = join(ws.configDir, 'cat', 'images.ini')
  writeFileSync(file, `; the images of variant cat
[small]
image = ${join(ws.dir, 'small.raw')}
image_type = raw
description = the test image

[small-xz] # the type is wrong on purpose: -O must be able to correct it
image = ${join(ws.dir, 'small.raw.xz')}
image_type = raw

[small-web]
image = ${web.url('/small.raw')}
`)
  chmodSync(file, 0o644)
})
test.after(async () => {
  await web.close()
  ws.cleanup()
})

test('verify: a known name passes and says where it was found', async () => {
  const r = await runVerify(ws, { image: 'small' }, 'cat')
  assert.is(r.code, 0, r.output)
  assert.match(r.output, new RegExp(`verify: image small: \\[small\\] of ${esc(file)}\n`))
  assert.match(r.output, new RegExp(`image ${esc(join(ws.dir, 'small.raw'))}: readable file of 2\\.5 MiB`))
  const url = await runVerify(ws, { image: 'small-web' }, 'cat')
  assert.is(url.code, 0, url.output)
  assert.match(url.output, /verify: image small-web: \[small-web\] of /)
  assert.match(url.output, /HTTP 200, 2\.5 MiB/)
})

test('verify: an unknown name fails, listing the known ones', async () => {
  const r = await runVerify(ws, { image: 'debian-13' }, 'cat')
  assert.is(r.code, 1, r.output)
  assert.is(r.lastLine, `verify failed: the image 'debian-13' is not in the image catalog ${file}, which has: small, small-xz, small-web; use one of those names, add a [debian-13] section to ${file}, or give a full path or an http(s) URL`)
})

test('verify: a name in a variant without a catalog names the file that would hold it', async () => {
  variant(ws, 'nocat')
  const r = await runVerify(ws, { image: 'small' }, 'nocat')
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, new RegExp(`^verify failed: the image 'small' is neither an absolute path nor an http\\(s\\) URL, and variant nocat has no image catalog ${esc(join(ws.configDir, 'nocat', 'images.ini'))}`))
})

test('verify: a malformed catalog fails naming its file and line; paths do not read it', async () => {
  variant(ws, 'bad')
  const bad = join(ws.configDir, 'bad', 'images.ini')
  writeFileSync(bad, '[small]\nimage = /srv/a.img\n\n[small.v2]\nimage = /srv/b.img\nimagetype = raw\n')
  const r = await runVerify(ws, { image: 'small' }, 'bad')
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, new RegExp(`^verify failed: the image catalog ${esc(bad)}:6 has the unknown key 'imagetype'`))
  const path = await runVerify(ws, { image: join(ws.dir, 'small.raw') }, 'bad')
  assert.is(path.code, 0, path.output)
})

test('verify: a catalog others may write is refused', async () => {
  variant(ws, 'open')
  const open = join(ws.configDir, 'open', 'images.ini')
  writeFileSync(open, `[small]\nimage = ${join(ws.dir, 'small.raw')}\n`)
  chmodSync(open, 0o646)
  const r = await runVerify(ws, { image: 'small' }, 'open')
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, new RegExp(`^verify failed: the image catalog ${esc(open)} is refused: .*\\(it is writable by everyone\\)`))
})

const create = (osp: Record<string, string>, disk: string) =>
  runAction(ws, 'create', ganetiEnv(ws, { OS_VARIANT: 'cat', INSTANCE_OS: 'simpleimage+cat', DISK_0_PATH: disk, DISK_0_SIZE: '8', ...osp }), { timeoutMs: 60_000 })

test('create -O image=NAME installs the catalog\'s image onto disk 0', async () => {
  const disk = sparseDisk(ws.dir, 'disk-small.img', 8 * MiB)
  const r = await create({ OSP_IMAGE: 'small' }, disk)
  assert.is(r.code, 0, r.output)
  assert.match(r.output, new RegExp(`image ${esc(join(ws.dir, 'small.raw'))} from \\[small\\] of ${esc(file)}\n`))
  assert.ok(readHead(disk, bytes.length).equals(bytes), 'disk 0 differs from the catalog\'s image')
})

test('create: -O image_type wins over the catalog\'s', async () => {
  // with the catalog's raw the xz file itself would be written: the disk shows which won
  const disk = sparseDisk(ws.dir, 'disk-xz.img', 8 * MiB)
  const r = await create({ OSP_IMAGE: 'small-xz', OSP_IMAGE_TYPE: 'raw+xz' }, disk)
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /from \[small-xz\] of .* \(image_type as given with -O\)/)
  assert.match(r.output, /, type raw\+xz, onto /)
  assert.ok(readHead(disk, bytes.length).equals(bytes), 'disk 0 is not the decompressed image')
})

test.run()
