// The cache asks the server before it trusts a young entry (ETag / Last-Modified), and a
// download cut mid-body resumes under --retry (Range + If-Range) or starts over cleanly.
// Real HTTP server on 127.0.0.1, the built create as Ganeti runs it.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, statSync, writeFileSync, existsSync, utimesSync } from 'node:fs'
import { workspace, variant, ganetiEnv, runAction, sparseDisk, readHead, sleep, MiB, lastLine, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'

const test = suite('cache freshness and resumed downloads')
let ws: Workspace
let web: TestServer

test.before(async () => {
  ws = await workspace()
  web = await startHttpServer({ root: ws.dir })
})
test.after(async () => {
  await web?.close()
  ws.cleanup()
})

const create = (vars: Record<string, string>) => runAction(ws, 'create', ganetiEnv(ws, vars))
const cacheDir = (v: string) => join(ws.dir, 'cache-' + v)
const entryOf = (v: string) => join(cacheDir(v), readdirSync(cacheDir(v)).find((f) => f.endsWith('.image'))!)
const metaOf = (v: string) => JSON.parse(readFileSync(entryOf(v).replace(/\.image$/, '.meta'), 'utf8'))
/** A new version of a published file: other bytes, a later mtime (so a new ETag). */
function publish(name: string, size = 4 * MiB, ageS = 0): Buffer {
  const bytes = randomBytes(size)
  writeFileSync(join(ws.dir, name), bytes)
  const t = new Date(Date.now() - ageS * 1000)
  utimesSync(join(ws.dir, name), t, t)
  return bytes
}

test('a young entry is revalidated: 304 uses it, a new version replaces it, DOWNLOAD_CACHE_REVALIDATE=no does not ask', async () => {
  const v = variant(ws, 'reval')
  const url = web.url('/v.raw')
  const v1 = publish('v.raw', 4 * MiB, 60)
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'r.img') })
  assert.is(r.code, 0, r.output)
  assert.ok(metaOf(v).etag && metaOf(v).lastModified, 'the validators are kept beside the entry')
  r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'r.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /unchanged \(HTTP 304\): using the entry/)
  assert.match(r.output, /cache hit/)
  assert.is(web.hits('/v.raw'), 1, 'a 304 must not download again')
  assert.is(web.revalidations('/v.raw'), 1)
  const old = statSync(entryOf(v)).ino
  const v2 = publish('v.raw')
  r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'r.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /the server has a newer .* downloading it/)
  assert.ok(readHead(join(ws.dir, 'r.img'), v2.length).equals(v2), 'disk 0 holds the old version')
  assert.is.not(statSync(entryOf(v)).ino, old, 'the entry was not replaced')
  assert.ok(readFileSync(entryOf(v)).equals(v2))
  assert.is(readdirSync(cacheDir(v)).filter((f) => f.endsWith('.image')).length, 1)
  // with revalidation off, a young entry is used as it is, new version or not
  const off = variant(ws, 'reval-off', 'DOWNLOAD_CACHE_REVALIDATE=no\n')
  publish('w.raw', MiB, 60)
  r = await create({ OS_VARIANT: off, OSP_IMAGE: web.url('/w.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'r.img') })
  assert.is(r.code, 0, r.output)
  publish('w.raw', MiB)
  r = await create({ OS_VARIANT: off, OSP_IMAGE: web.url('/w.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'r.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /cache hit/)
  assert.is(web.revalidations('/w.raw'), 0)
  assert.ok(v1.length > 0)
})

test('an ETag that changes with every request downloads every time; no validators means used until it expires', async () => {
  const v = variant(ws, 'flip')
  const bytes = publish('f.raw', MiB, 60)
  for (let i = 0; i < 2; i++) {
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/etagflip/f.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'f.img') })
    assert.is(r.code, 0, r.output)
    assert.ok(readHead(join(ws.dir, 'f.img'), bytes.length).equals(bytes))
  }
  assert.is(web.hits('/f.raw'), 2)
  const nv = variant(ws, 'noval')
  for (let i = 0; i < 2; i++) {
    const r = await create({ OS_VARIANT: nv, OSP_IMAGE: web.url('/noval/f.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'f.img') })
    assert.is(r.code, 0, r.output)
  }
  assert.is(web.hits('/f.raw'), 3)
  assert.is(web.revalidations('/f.raw'), 1) // the etagflip one
})

test('a server that cannot be reached at revalidation: the entry is used, with a log line', async () => {
  const other = await startHttpServer({ root: ws.dir })
  const v = variant(ws, 'unreach')
  publish('u.raw', MiB, 60)
  const url = other.url('/u.raw')
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'u.img') })
  assert.is(r.code, 0, r.output)
  await other.close()
  r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'u.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /could not ask the server whether .* changed \(the connection to 127\.0\.0\.1:\d+ was refused\): using the entry/)
  assert.match(r.output, /cache hit/)
})

test('a create still reading the old entry is not disturbed: the new version waits for it', async () => {
  const v = variant(ws, 'readers')
  publish('k.raw', MiB, 60)
  const url = web.url('/k.raw')
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'k.img') })
  assert.is(r.code, 0, r.output)
  const entry = entryOf(v)
  const old = readFileSync(entry)
  // a reader of the entry holds its shared lock, as a create does while it writes disk 0
  const reader = spawn('flock', ['-s', entry.replace(/\.image$/, '.lock'), 'sleep', '3'], { stdio: 'ignore' })
  await sleep(300)
  const v2 = publish('k.raw', MiB)
  const replacing = create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'k2.img') })
  await sleep(1500)
  assert.ok(readFileSync(entry).equals(old), 'the entry changed under a reader')
  r = await replacing
  reader.kill()
  assert.is(r.code, 0, r.output)
  assert.ok(readFileSync(entryOf(v)).equals(v2))
  assert.ok(readHead(join(ws.dir, 'k2.img'), v2.length).equals(v2))
})

test('--retry resumes a download cut at half its body with Range + If-Range; the digest is of the whole file', async () => {
  const v = variant(ws, 'resume', 'CUSTOM_CURL_OPTS="--retry 2"\n')
  const bytes = publish('c.raw', 8 * MiB, 60)
  const { createHash } = await import('node:crypto')
  const sha = createHash('sha256').update(bytes).digest('hex')
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/droponce/c.raw'), OSP_IMAGE_TYPE: 'raw', OSP_IMAGE_CHECKSUM: `sha256:${sha}`, DISK_0_PATH: sparseDisk(ws.dir, 'c.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /retrying in 1 s/)
  const at = /resuming the download at ([\d.]+) MiB/.exec(r.output)
  assert.ok(at && Number(at[1]) > 0 && Number(at[1]) <= 4, r.output) // what had reached the cache of the half sent
  const gets = web.requests.filter((q) => q.path === '/droponce/c.raw')
  assert.is(gets.length, 2)
  const from = Number(/^bytes=(\d+)-$/.exec(String(gets[1].headers.range))?.[1])
  assert.ok(from > 0 && from <= 4 * MiB, String(gets[1].headers.range))
  assert.is(gets[1].headers['if-range'], metaOf(v).etag)
  assert.ok(readHead(join(ws.dir, 'c.img'), bytes.length).equals(bytes))
  assert.is(metaOf(v).sha256, sha)
})

test('a server that ignores Range, or whose image changed, makes the retry start over cleanly', async () => {
  for (const prefix of ['dropnorange', 'dropchange']) {
    const v = variant(ws, `over-${prefix}`, 'CUSTOM_CURL_OPTS="--retry 2"\n')
    const bytes = publish(`${prefix}.raw`, 6 * MiB, 60)
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url(`/${prefix}/${prefix}.raw`), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'o.img') })
    assert.is(r.code, 0, r.output)
    assert.match(r.output, /sent the image from its start again .*: starting over/, prefix)
    assert.ok(readHead(join(ws.dir, 'o.img'), bytes.length).equals(bytes), prefix)
    assert.ok(readFileSync(entryOf(v)).equals(bytes), `${prefix}: the entry holds other bytes`)
  }
})

test('without --retry a download cut mid-body fails, names the cut, and leaves no entry or partial file', async () => {
  const v = variant(ws, 'cut')
  publish('x.raw', 4 * MiB, 60)
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/droponce/x.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'x.img') })
  assert.is(r.code, 1, r.output)
  assert.match(lastLine(r.output), /(ended after \d+ of 4194304 bytes|cut off).*--retry 3/)
  const left = existsSync(cacheDir(v)) ? readdirSync(cacheDir(v)).filter((f) => !f.endsWith('.lock')) : []
  assert.equal(left, [])
})

test.run()
