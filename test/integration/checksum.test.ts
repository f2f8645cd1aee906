// image_checksum: digests given outright and SUMS files (beside the image or named), checked
// on the bytes as they stream; a wrong image leaves nothing cached and nothing that passes
// for an install on disk 0. Real HTTP server on 127.0.0.1, the built create as Ganeti runs it.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { workspace, variant, ganetiEnv, runAction, makeImage, sparseDisk, dirtyFile, readHead, MiB, lastLine, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'

const test = suite('image_checksum')
let ws: Workspace
let img: ReturnType<typeof makeImage>
let web: TestServer
const digest = (algo: string, file: string) => createHash(algo).update(readFileSync(join(ws.dir, file))).digest('hex')
const wrong = (algo: string) => createHash(algo).update('not the image').digest('hex')

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
  // as Debian publishes them: one SUMS file per directory, coreutils format
  mkdirSync(join(ws.dir, 'pub'))
  for (const f of ['image.raw.gz', 'image.qcow2', 'image.raw.xz']) writeFileSync(join(ws.dir, 'pub', f), readFileSync(join(ws.dir, f)))
  writeFileSync(join(ws.dir, 'pub', 'SHA512SUMS'), ['image.raw.gz', 'image.qcow2'].map((f) => `${digest('sha512', f)}  ${f}\n`).join(''))
  writeFileSync(join(ws.dir, 'pub', 'SHA256SUMS'), `${digest('sha256', 'image.raw.xz')} *image.raw.xz\n${wrong('sha256')}  image.raw.gz\n`)
  writeFileSync(join(ws.dir, 'other.sums'), `${digest('sha256', 'image.raw')}  something-else.raw\n`)
  web = await startHttpServer({ root: ws.dir })
})
test.after(async () => {
  await web?.close()
  ws.cleanup()
})

const create = (vars: Record<string, string>) => runAction(ws, 'create', ganetiEnv(ws, vars))
const cacheDir = (v: string) => join(ws.dir, 'cache-' + v)
const cacheFiles = (v: string) => (existsSync(cacheDir(v)) ? readdirSync(cacheDir(v)) : [])
const meta = (v: string) => JSON.parse(readFileSync(join(cacheDir(v), cacheFiles(v).find((f) => f.endsWith('.meta'))!), 'utf8'))
const isZero = (b: Buffer) => b.every((x) => x === 0)

test('sha256:HEX on a streamed download: installed, and the entry keeps its digest', async () => {
  const v = variant(ws, 'digest')
  const disk = sparseDisk(ws.dir, 'd1.img')
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/image.raw.gz'), OSP_IMAGE_TYPE: 'raw+gz', OSP_IMAGE_CHECKSUM: `sha256:${digest('sha256', 'image.raw.gz').toUpperCase()}`, DISK_0_PATH: disk })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /written to disk 0 while downloading/)
  assert.ok(readHead(disk, img.bytes.length).equals(img.bytes))
  assert.is(meta(v).sha256, digest('sha256', 'image.raw.gz'))
})

test('sha512sums beside the image (Debian style): URL, qcow2 and raw+gz from one SUMS file', async () => {
  const v = variant(ws, 'sums-beside')
  for (const [file, type] of [['image.qcow2', 'qcow2'], ['image.raw.gz', 'raw+gz']]) {
    const disk = sparseDisk(ws.dir, 'd2.img')
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url(`/pub/${file}`), OSP_IMAGE_TYPE: type, OSP_IMAGE_CHECKSUM: 'sha512sums', DISK_0_PATH: disk })
    assert.is(r.code, 0, r.output)
    assert.match(r.output, new RegExp(`image_checksum: sha512 ${digest('sha512', file)} \\(from ${web.url('/pub/SHA512SUMS')}\\)`))
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), file)
  }
  assert.is(web.hits('/pub/SHA512SUMS'), 2)
})

test('sha256sums:URL in binary-mode format, and a local image against a local SUMS file', async () => {
  const v = variant(ws, 'sums-named')
  let disk = sparseDisk(ws.dir, 'd3.img')
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/pub/image.raw.xz'), OSP_IMAGE_TYPE: 'raw+xz', OSP_IMAGE_CHECKSUM: `sha256sums:${web.url('/pub/SHA256SUMS')}`, DISK_0_PATH: disk })
  assert.is(r.code, 0, r.output)
  assert.ok(readHead(disk, img.bytes.length).equals(img.bytes))
  writeFileSync(join(ws.dir, 'local.sums'), `${digest('sha256', 'image.raw')}  image.raw\n`)
  disk = sparseDisk(ws.dir, 'd3.img')
  r = await create({ OS_VARIANT: v, OSP_IMAGE: join(ws.dir, 'image.raw'), OSP_IMAGE_TYPE: 'raw', OSP_IMAGE_CHECKSUM: `sha256sums:${join(ws.dir, 'local.sums')}`, DISK_0_PATH: disk })
  assert.is(r.code, 0, r.output)
  assert.ok(readHead(disk, img.bytes.length).equals(img.bytes))
})

test('a SUMS file that does not list the image fails before disk 0 is touched', async () => {
  const disk = dirtyFile(ws.dir, 'd4.img')
  const before = readHead(disk, 2 * MiB)
  const r = await create({ OS_VARIANT: variant(ws, 'unlisted'), OSP_IMAGE: join(ws.dir, 'image.raw'), OSP_IMAGE_TYPE: 'raw', OSP_IMAGE_CHECKSUM: `sha256sums:${join(ws.dir, 'other.sums')}`, DISK_0_PATH: disk })
  assert.is(r.code, 1, r.output)
  assert.match(lastLine(r.output), new RegExp(`the sha256 SUMS file ${join(ws.dir, 'other.sums')} does not list image.raw`))
  assert.ok(readHead(disk, 2 * MiB).equals(before), 'disk 0 was written')
})

test('a wrong digest on a streamed download: both digests in the last line, nothing cached, disk 0 spoilt', async () => {
  const v = variant(ws, 'wrong-stream')
  const disk = dirtyFile(ws.dir, 'd5.img')
  const want = wrong('sha256')
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/pub/image.raw.gz'), OSP_IMAGE_TYPE: 'raw+gz', OSP_IMAGE_CHECKSUM: `sha256sums:${web.url('/pub/SHA256SUMS')}`, DISK_0_PATH: disk })
  assert.is(r.code, 1, r.output)
  const last = lastLine(r.output)
  assert.ok(last.includes(want) && last.includes(digest('sha256', 'image.raw.gz')), last)
  assert.match(last, /disk 0 holds no valid install/)
  assert.ok(isZero(readHead(disk, MiB)), 'the start of disk 0 still holds data')
  assert.ok(isZero(readHead(disk, MiB, 31 * MiB)), 'the end of disk 0 still holds data')
  assert.equal(cacheFiles(v).filter((f) => !f.endsWith('.lock')), [], 'something was kept in the cache')
})

test('a wrong digest found before writing (--retry downloads first): disk 0 left as it was', async () => {
  const v = variant(ws, 'wrong-retry', 'CUSTOM_CURL_OPTS="--retry 1"\n')
  const disk = dirtyFile(ws.dir, 'd6.img')
  const before = readHead(disk, 2 * MiB)
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/image.raw.gz'), OSP_IMAGE_TYPE: 'raw+gz', OSP_IMAGE_CHECKSUM: `sha512:${wrong('sha512')}`, DISK_0_PATH: disk })
  assert.is(r.code, 1, r.output)
  assert.match(lastLine(r.output), /disk 0 was not written/)
  assert.ok(lastLine(r.output).includes(digest('sha512', 'image.raw.gz')))
  assert.ok(readHead(disk, 2 * MiB).equals(before))
  assert.equal(cacheFiles(v).filter((f) => !f.endsWith('.lock')), [])
})

test('a local image with a wrong digest is hashed beside the write, and disk 0 spoilt', async () => {
  const disk = dirtyFile(ws.dir, 'd7.img')
  const r = await create({ OS_VARIANT: variant(ws, 'wrong-local'), OSP_IMAGE: join(ws.dir, 'image.raw.xz'), OSP_IMAGE_TYPE: 'raw+xz', OSP_IMAGE_CHECKSUM: `sha256:${wrong('sha256')}`, DISK_0_PATH: disk })
  assert.is(r.code, 1, r.output)
  assert.ok(lastLine(r.output).includes(digest('sha256', 'image.raw.xz')))
  assert.ok(isZero(readHead(disk, MiB)) && isZero(readHead(disk, MiB, 31 * MiB)))
})

test('a cache hit compares with the digest taken at download; one of unknown digest is hashed once and remembered', async () => {
  const v = variant(ws, 'hit', 'DOWNLOAD_CACHE_REVALIDATE=no\n')
  const url = web.url('/image.qcow2')
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'qcow2', DISK_0_PATH: sparseDisk(ws.dir, 'd8.img') })
  assert.is(r.code, 0, r.output)
  assert.is(meta(v).sha512, undefined) // only sha256 is always taken
  // sha512 asked for later: the entry is hashed beside the write, and the digest kept
  r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'qcow2', OSP_IMAGE_CHECKSUM: `sha512:${digest('sha512', 'image.qcow2')}`, DISK_0_PATH: sparseDisk(ws.dir, 'd8.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /cache hit/)
  assert.is(meta(v).sha512, digest('sha512', 'image.qcow2'))
  // now known: the entry is not read for it. An entry changed in place (same inode and
  // size) still passes, which shows the comparison is with the recorded digest
  const entry = join(cacheDir(v), cacheFiles(v).find((f) => f.endsWith('.image'))!)
  const bytes = readFileSync(entry)
  writeFileSync(entry, Buffer.concat([bytes.subarray(0, bytes.length - 1), Buffer.from([bytes[bytes.length - 1] ^ 0xff])]))
  r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'qcow2', OSP_IMAGE_CHECKSUM: `sha256:${digest('sha256', 'image.qcow2')}`, DISK_0_PATH: sparseDisk(ws.dir, 'd8.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /image_checksum: the cached download's sha256 matches/)
  writeFileSync(entry, bytes)
  // a recorded digest that is not the one asked for: the entry is dropped and downloaded again
  const hits = web.hits('/image.qcow2')
  r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'qcow2', OSP_IMAGE_CHECKSUM: `sha256:${wrong('sha256')}`, DISK_0_PATH: sparseDisk(ws.dir, 'd8.img') })
  assert.is(r.code, 1, r.output)
  assert.match(r.output, /removing it and downloading again/)
  assert.is(web.hits('/image.qcow2'), hits + 1)
  assert.equal(cacheFiles(v).filter((f) => !f.endsWith('.lock')), [])
})

test('verify: checks the form of image_checksum and that the SUMS file lists the image', async () => {
  const { runVerify } = await import('./harness.js')
  let r = await runVerify(ws, { image: web.url('/pub/image.qcow2'), image_checksum: 'sha512sums' })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /image_checksum: .*SHA512SUMS lists image.qcow2/)
  r = await runVerify(ws, { image: web.url('/pub/image.raw.xz'), image_checksum: 'sha512sums' })
  assert.is(r.code, 1, r.output)
  assert.match(lastLine(r.output), /does not list image.raw.xz/)
  r = await runVerify(ws, { image: web.url('/pub/image.raw.xz'), image_checksum: 'sha256:abc' })
  assert.is(r.code, 1, r.output)
  assert.match(lastLine(r.output), /not a sha256 digest \(64 hex digits/)
  r = await runVerify(ws, { image: web.url('/pub/image.raw.xz'), image_checksum: 'md5:abc' })
  assert.is(r.code, 1, r.output)
  assert.match(lastLine(r.output), /not a checksum this provider knows/)
})

test.run()
