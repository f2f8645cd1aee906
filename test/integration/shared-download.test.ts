// Parallel creates of one cold URL share its download as it arrives: one request, every disk
// written while the bytes come in; and when that download fails, every create that shared it
// fails with a last line that says so. Real HTTP server on 127.0.0.1.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, writeFileSync, existsSync } from 'node:fs'
import { workspace, variant, ganetiEnv, runAction, sparseDisk, readHead, makeImage, waitFor, MiB, lastLine, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'

const test = suite('shared downloads')
let ws: Workspace
let web: TestServer
let img: ReturnType<typeof makeImage>

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
  web = await startHttpServer({ root: ws.dir })
})
test.after(async () => {
  await web?.close()
  ws.cleanup()
})

const create = (vars: Record<string, string>) => runAction(ws, 'create', ganetiEnv(ws, vars))
const SHARED = /sharing the download of another create/

test('four creates of one cold URL, raw, with image_checksum each: one request, four disks written as it arrived', async () => {
  const bytes = randomBytes(6 * MiB)
  writeFileSync(join(ws.dir, 'four.raw'), bytes)
  const sha = createHash('sha256').update(bytes).digest('hex')
  const v = variant(ws, 'four')
  const disks = [0, 1, 2, 3].map((i) => sparseDisk(ws.dir, `four-${i}.img`))
  const runs = await Promise.all(disks.map((disk) => create({ OS_VARIANT: v, OSP_IMAGE: web.url('/slow/four.raw'), OSP_IMAGE_TYPE: 'raw', OSP_IMAGE_CHECKSUM: `sha256:${sha}`, DISK_0_PATH: disk })))
  for (const r of runs) assert.is(r.code, 0, r.output)
  assert.is(web.hits('/four.raw'), 1)
  assert.is(runs.filter((r) => SHARED.test(r.output)).length, 3)
  for (const disk of disks) assert.ok(readHead(disk, bytes.length).equals(bytes))
})

test('a follower checks its own image_checksum: a wrong one fails it alone and spoils its disk', async () => {
  const v = variant(ws, 'own-sum')
  const url = web.url('/slow/image.raw.gz')
  const good = create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: sparseDisk(ws.dir, 'own-0.img') })
  await new Promise((r) => setTimeout(r, 400)) // the first one is downloading by now
  const bad = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw+gz', OSP_IMAGE_CHECKSUM: `sha256:${'0'.repeat(64)}`, DISK_0_PATH: sparseDisk(ws.dir, 'own-1.img') })
  const first = await good
  assert.is(first.code, 0, first.output)
  assert.ok(readHead(join(ws.dir, 'own-0.img'), img.bytes.length).equals(img.bytes))
  assert.is(bad.code, 1, bad.output)
  assert.match(bad.output, SHARED)
  assert.match(lastLine(bad.output), /disk 0 holds no valid install/)
  assert.ok(readHead(join(ws.dir, 'own-1.img'), MiB).every((b) => b === 0))
})

test('when the shared download is cut off, every create that shared it fails and says so; nothing is cached', async () => {
  const v = variant(ws, 'cut')
  const url = web.url('/slowcut/image.raw.gz')
  const runs = await Promise.all([0, 1, 2].map(async (i) => {
    await new Promise((r) => setTimeout(r, i * 300))
    return create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: sparseDisk(ws.dir, `cut-${i}.img`) })
  }))
  for (const r of runs) assert.is(r.code, 1, r.output)
  assert.match(lastLine(runs[0].output), /cut off|ended after/)
  for (const r of runs.slice(1)) assert.match(lastLine(r.output), /the download this create was sharing with another create failed/)
  const dir = join(ws.dir, 'cache-cut')
  assert.equal(existsSync(dir) ? readdirSync(dir).filter((f) => !f.endsWith('.lock')) : [], [])
})

test('a downloader killed outright (SIGKILL) fails the create that shared it, instead of leaving it waiting', async () => {
  writeFileSync(join(ws.dir, 'killed.raw'), randomBytes(8 * MiB))
  const v = variant(ws, 'killed')
  const url = web.url('/slow/killed.raw')
  let pid = 0
  const first = runAction(ws, 'create', ganetiEnv(ws, { OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'killed-0.img') }), { onStart: (p) => (pid = p) })
  const dir = join(ws.dir, 'cache-killed')
  assert.ok(await waitFor(() => existsSync(dir) && readdirSync(dir).some((f) => f.includes('.part-s-'))), 'no shareable download appeared')
  const second = create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'killed-1.img') })
  await new Promise((r) => setTimeout(r, 1500)) // the second is sharing by now
  process.kill(pid, 'SIGKILL')
  const started = Date.now()
  const r = await second
  assert.is(r.code, 1, r.output)
  assert.match(r.output, SHARED)
  assert.match(lastLine(r.output), /the download this create was sharing with another create failed/)
  assert.ok(Date.now() - started < 5000, 'the follower waited on a dead download')
  assert.is((await first).code, null) // killed
})

test('qcow2 found by image_type auto is not followed: the others wait and read the entry', async () => {
  const v = variant(ws, 'auto-qcow2')
  const url = web.url('/slow/image.qcow2')
  const runs = await Promise.all([0, 1].map(async (i) => {
    await new Promise((r) => setTimeout(r, i * 300))
    return create({ OS_VARIANT: v, OSP_IMAGE: url, DISK_0_PATH: sparseDisk(ws.dir, `aq-${i}.img`) })
  }))
  for (const r of runs) assert.is(r.code, 0, r.output)
  assert.is(web.hits('/image.qcow2'), 1)
  assert.match(runs[1].output, /cache hit/)
  for (const i of [0, 1]) assert.ok(readHead(join(ws.dir, `aq-${i}.img`), img.bytes.length).equals(img.bytes))
})

test.run()
