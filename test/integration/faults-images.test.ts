// What may be taken for an image, and what stays in the cache: an empty file or body,
// an HTML page served with 200, a body the server encoded, pzstd's files (a skippable
// frame first), a download or cache entry whose bytes do not decode, and zstd's own
// message when it fails.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { workspace, variant, ganetiEnv, runAction, makeImage, sparseDisk, dirtyLoop, readHead, runVerify, MiB, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'

const test = suite('what is taken for an image')
let ws: Workspace
let img: ReturnType<typeof makeImage>
let web: TestServer

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
  const sh = (cmd: string) => execFileSync('bash', ['-c', cmd], { cwd: ws.dir })
  sh(': > empty.raw && gzip -c < /dev/null > empty.gz && pzstd -q image.raw -o image.pzst')
  // bad bytes with a correct Content-Length: the server sends all of them
  const half = (name: string) => writeFileSync(join(ws.dir, `half-${name}`), readFileSync(join(ws.dir, name)).subarray(0, 300_000))
  half('image.raw.xz')
  half('image.qcow2')
  web = await startHttpServer({ root: ws.dir })
})
test.after(async () => {
  await web?.close()
  ws.cleanup()
})

const create = (vars: Record<string, string | undefined>) => runAction(ws, 'create', ganetiEnv(ws, vars), { timeoutMs: 60_000 })
const verify = (osp: Record<string, string>, osVariant = 'default') => runVerify(ws, osp, osVariant)
const cacheOf = (v: string) => join(ws.dir, 'cache-' + v)
const cached = (v: string) => (existsSync(cacheOf(v)) ? readdirSync(cacheOf(v)).filter((f) => !f.endsWith('.lock')) : [])
const OLD = Buffer.alloc(16 * MiB, 0x5a)

test('an empty image file, or one that decodes to nothing, fails create and verify; disk 0 is left alone', async () => {
  for (const [file, type, why] of [['empty.raw', 'raw', /is empty \(0 bytes\)/], ['empty.raw', 'auto', /is empty \(0 bytes\)/], ['empty.gz', 'raw+gz', /holds no data \(0 bytes after decoding\)/]] as const) {
    const disk = dirtyLoop(ws.dir, `empty-${type}.img`, 16 * MiB)
    const r = await create({ OSP_IMAGE: join(ws.dir, file), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk })
    assert.is(r.code, 1, r.output)
    assert.match(r.lastLine, /^create failed: /)
    assert.match(r.lastLine, why)
    if (file === 'empty.raw') assert.ok(readHead(disk, 16 * MiB).equals(OLD), 'disk 0 was written')
  }
  const v = await verify({ image: join(ws.dir, 'empty.raw'), image_type: 'raw' })
  assert.is(v.code, 1, v.output)
  assert.match(v.lastLine, /^verify failed: the image .*empty\.raw is empty \(0 bytes\)/)
})

test('a URL answering 200 with an empty body, or with an HTML page, is refused, named, and never cached', async () => {
  for (const type of ['raw', 'auto']) {
    for (const [path, why] of [['/empty/image.raw', /\/empty\/image\.raw is empty \(Content-Length: 0\)/], ['/html/image.raw', /\/html\/image\.raw answered with an HTML page \(Content-Type: text\/html\), not a disk image/]] as const) {
      const v = variant(ws, `page-${type}-${path.split('/')[1]}`)
      const disk = dirtyLoop(ws.dir, `page-${type}.img`, 32 * MiB)
      const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url(path), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk })
      assert.is(r.code, 1, r.output)
      assert.match(r.lastLine, /^create failed: /)
      assert.match(r.lastLine, why)
      assert.equal(cached(v), [], 'something was cached')
      assert.ok(readHead(disk, 16 * MiB).equals(OLD), 'disk 0 was written')
      const check = await verify({ image: web.url(path), image_type: type })
      assert.is(check.code, 1, check.output)
      assert.match(check.lastLine, why)
    }
  }
})

test('a body sent with Content-Encoding: gzip (asked for as it is) is never written', async () => {
  for (const [file, type] of [['image.raw.gz', 'raw+gz'], ['image.raw', 'raw'], ['image.raw', 'auto']]) {
    const v = variant(ws, `encoded-${type.replace('+', '-')}`)
    const disk = dirtyLoop(ws.dir, `encoded-${type}.img`, 32 * MiB)
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url(`/gzipped/${file}`), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk })
    assert.is(r.code, 1, r.output)
    assert.match(r.lastLine, /^create failed: .*\/gzipped\/.* was sent with Content-Encoding: gzip although the file was asked for as it is/)
    assert.ok(readHead(disk, 16 * MiB).equals(OLD), `${type}: disk 0 was written`)
    assert.equal(cached(v), [])
  }
  const check = await verify({ image: web.url('/gzipped/image.raw.gz'), image_type: 'raw+gz' })
  assert.is(check.code, 1, check.output)
  assert.match(check.lastLine, /Content-Encoding: gzip/)
})

test('pzstd images (a skippable frame first) are zstd for auto, from a path and from a URL', async () => {
  const head = readFileSync(join(ws.dir, 'image.pzst')).subarray(0, 4)
  assert.equal([...head], [0x50, 0x2a, 0x4d, 0x18], 'pzstd wrote no skippable frame')
  for (const [image, type] of [[join(ws.dir, 'image.pzst'), 'auto'], [join(ws.dir, 'image.pzst'), undefined], [web.url('/image.pzst'), 'auto'], [web.url('/image.pzst'), 'raw+zst']]) {
    const disk = dirtyLoop(ws.dir, 'pzstd.img')
    const r = await create({ OS_VARIANT: variant(ws, 'pzstd'), OSP_IMAGE: image, OSP_IMAGE_TYPE: type, DISK_0_PATH: disk })
    assert.is(r.code, 0, r.output)
    if (type !== 'raw+zst') assert.match(r.output, /image_type auto: the image is raw\+zst\n/)
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), `${image} ${type}: disk differs from the image`)
  }
  for (const image of [join(ws.dir, 'image.pzst'), web.url('/image.pzst')]) {
    const v = await verify({ image, image_type: 'auto' })
    assert.is(v.code, 0, v.output)
    assert.match(v.output, /image_type auto: the image is raw\+zst\n/)
  }
})

test('a download that fails to decode is not kept: the next create downloads it again', async () => {
  for (const [file, type, config] of [['half-image.raw.xz', 'raw+xz', 'CUSTOM_CURL_OPTS="--retry 1"\n'], ['half-image.qcow2', 'qcow2', '']]) {
    const v = variant(ws, `undecodable-${type.replace('+', '-')}`, config)
    for (const round of [1, 2]) {
      const before = web.hits('/' + file)
      const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/' + file), OSP_IMAGE_TYPE: type, DISK_0_PATH: sparseDisk(ws.dir, 'undecodable.img') })
      assert.is(r.code, 1, r.output)
      assert.not.match(r.output, /cache hit/, `${type} round ${round}: a bad entry was used again`)
      assert.is(web.hits('/' + file) - before, 1, `${type} round ${round}: not downloaded`)
      assert.match(r.lastLine, /^create failed: .*; the cached download was removed, so the next create downloads it again/)
      assert.equal(cached(v), [], `${type}: the bad download stayed cached`)
    }
  }
})

test('a cache entry that no longer decodes is dropped: the next create downloads a good one', async () => {
  const v = variant(ws, 'rotten')
  const url = web.url('/' + img.files['raw+xz'])
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'auto', DISK_0_PATH: sparseDisk(ws.dir, 'rot.img') })
  assert.is(r.code, 0, r.output)
  const [entry] = cached(v)
  const bytes = readFileSync(join(cacheOf(v), entry))
  bytes.fill(0x33, 1000, 50_000) // the disk under the cache went bad
  writeFileSync(join(cacheOf(v), entry), bytes)
  r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'auto', DISK_0_PATH: sparseDisk(ws.dir, 'rot.img') })
  assert.is(r.code, 1, r.output)
  assert.match(r.output, /cache hit/)
  assert.match(r.lastLine, /the cached download was removed, so the next create downloads it again/)
  const before = web.hits('/' + img.files['raw+xz'])
  r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'auto', DISK_0_PATH: sparseDisk(ws.dir, 'rot.img') })
  assert.is(r.code, 0, r.output)
  assert.is(web.hits('/' + img.files['raw+xz']), before + 1)
  assert.ok(readHead(join(ws.dir, 'rot.img'), img.bytes.length).equals(img.bytes))
})

test('a zstd failure ends with zstd\'s own error, not its banner', async () => {
  writeFileSync(join(ws.dir, 'notzstd.zst'), 'this is no zstd frame at all')
  const zst = readFileSync(join(ws.dir, 'image.raw.zst'))
  writeFileSync(join(ws.dir, 'cut.zst'), zst.subarray(0, 5000))
  for (const [file, why] of [['notzstd.zst', /unsupported format|not compressed by zstd|unknown header/i], ['cut.zst', /premature end|Error while|truncated|corrupted/i]] as const) {
    const r = await create({ OSP_IMAGE: join(ws.dir, file), OSP_IMAGE_TYPE: 'raw+zst', DISK_0_PATH: sparseDisk(ws.dir, 'zst.img') })
    assert.is(r.code, 1, r.output)
    assert.match(r.lastLine, /^create failed: zstd /)
    assert.not.match(r.lastLine, /\*\*\*|Zstandard CLI/)
    assert.match(r.lastLine, why)
  }
})

test.run()
