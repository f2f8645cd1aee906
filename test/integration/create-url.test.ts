// create from http(s) URLs: a real HTTP(S) server and a real proxy (tinyproxy) on
// 127.0.0.1, the download cache and its lock, curl options, and download failures.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { mkdirSync, readdirSync, utimesSync, writeFileSync, existsSync, statSync } from 'node:fs'
import { spawn, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closedPort, workspace, variant, ganetiEnv, runAction, makeImage, sparseDisk, dirtyLoop, readHead, MiB, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'
import { makeCerts, type TestCerts } from '../support/certs.js'
import { startProxy, type TestProxy } from '../support/proxy.js'

const test = suite('create from a URL')
let ws: Workspace
let img: ReturnType<typeof makeImage>
let web: TestServer
let tls: TestServer
let certs: TestCerts
let proxy: TestProxy

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
  writeFileSync(join(ws.dir, 'small.raw'), randomBytes(3 * MiB))
  web = await startHttpServer({ root: ws.dir })
  mkdirSync(join(ws.dir, 'certs'))
  certs = await makeCerts(join(ws.dir, 'certs'))
  tls = await startHttpServer({ root: ws.dir, tls: { key: certs.keyFile, cert: certs.certFile } })
  mkdirSync(join(ws.dir, 'proxy'))
  proxy = await startProxy(join(ws.dir, 'proxy'))
})
test.after(async () => {
  await Promise.all([web?.close(), tls?.close(), proxy?.close()])
  ws.cleanup()
})

const create = (vars: Record<string, string | undefined>, opts = {}) => runAction(ws, 'create', ganetiEnv(ws, vars), opts)
const cacheFiles = (v: string) => (existsSync(join(ws.dir, 'cache-' + v)) ? readdirSync(join(ws.dir, 'cache-' + v)) : [])

for (const type of ['raw', 'raw+gz', 'raw+bzip2', 'raw+bz2', 'raw+xz', 'raw+zst', 'qcow2']) {
  test(`${type} from a URL onto a sparse file (cache miss) and a dirty loop device (cache hit)`, async () => {
    const v = variant(ws, `web-${type.replace('+', '-')}`)
    const url = web.url('/' + img.files[type as 'raw'])
    for (const [target, cache] of [['file', 'miss'], ['loop', 'hit']]) {
      const disk = target === 'file' ? sparseDisk(ws.dir, 'disk.img') : dirtyLoop(ws.dir, `dirty-url-${type}.img`)
      const r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: type, DISK_0_PATH: disk })
      assert.is(r.code, 0, r.output)
      assert.match(r.output, new RegExp(`cache ${cache}: ${url}`))
      assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), `${target}: disk differs from the image`)
    }
    assert.is(web.hits('/' + img.files[type as 'raw']), type === 'raw+bz2' ? 2 : 1) // raw+bz2 and raw+bzip2 share a file
    const entries = cacheFiles(v).filter((f) => f.endsWith('.image'))
    assert.is(entries.length, 1)
    assert.is(statSync(join(ws.dir, 'cache-' + v, entries[0])).mode & 0o777, 0o600, 'cache entries are for root only')
    assert.is(statSync(join(ws.dir, 'cache-' + v)).mode & 0o077, 0, 'the cache directory is for root only')
  })
}

test('image_type auto streams too: the format is told from the first bytes of the body; qcow2 is written once whole', async () => {
  const v = variant(ws, 'auto-stream')
  for (const type of ['raw', 'raw+gz', 'raw+bzip2', 'raw+xz', 'raw+zst', 'qcow2']) {
    const disk = sparseDisk(ws.dir, 'auto.img')
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/' + img.files[type as 'raw']), DISK_0_PATH: disk })
    assert.is(r.code, 0, r.output)
    assert.match(r.output, new RegExp(`image_type auto: the image is ${type.replace('+', '\\+')}`))
    if (type === 'qcow2') {
      assert.match(r.output, /written once it is downloaded whole/)
      assert.not.match(r.output, /while downloading/)
    } else assert.match(r.output, /written to disk 0 while downloading\)/, type)
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), type)
  }
  assert.is(cacheFiles(v).filter((f) => f.endsWith('.image')).length, 6, 'every download is cached')
})

test('onto a file disk, xz, zstd and lbzip2 | dd write the download into it themselves as it arrives, stopped at its end; gzip goes through our zlib', async () => {
  const v = variant(ws, 'stream-direct')
  for (const [type, tool] of [['raw+xz', 'xz'], ['raw+zst', 'zstd'], ['raw+bzip2', 'lbzip2 \\| dd']]) {
    const disk = sparseDisk(ws.dir, 'sd.img')
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/' + img.files[type as 'raw']), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk })
    assert.is(r.code, 0, r.output)
    assert.match(r.output, new RegExp(`${tool} writes the image into the disk file itself.* as it is downloaded`), type)
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), type)
    assert.is(statSync(disk).size, 32 * MiB, `${type}: the file disk changed size`)
  }
  // larger than the disk: the kernel stops the tool at the disk's end (RLIMIT_FSIZE)
  execFileSync('bash', ['-c', 'head -c 40M /dev/urandom > big.raw && gzip -1 -k big.raw && xz -0 -T1 -k big.raw && zstd -q -1 big.raw -o big.raw.zst && bzip2 -1 -k big.raw'], { cwd: ws.dir })
  for (const [type, file] of [['raw+gz', 'big.raw.gz'], ['raw+xz', 'big.raw.xz'], ['raw+zst', 'big.raw.zst'], ['raw+bzip2', 'big.raw.bz2']]) {
    const disk = sparseDisk(ws.dir, 'sd-small.img', 16 * MiB)
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/' + file), OSP_IMAGE_TYPE: type, DISK_0_PATH: disk })
    assert.is(r.code, 1, r.output)
    assert.match(r.lastLine, /^create failed: the image is at least .* larger than disk 0 \(16\.0 MiB\); give the instance a larger disk/, type)
    assert.is(statSync(disk).size, 16 * MiB, `${type}: the file disk changed size`)
  }
  // gzip goes through Node's zlib, faster than the system's that zstd would use: two members
  // are one image, zero padding after them is ignored, anything else fails (zlib refuses it)
  execFileSync('bash', ['-c', `(cat ${img.files['raw+gz']}; head -c 5000 /dev/zero) > padded.gz && (cat ${img.files['raw+gz']}; printf 'x'; head -c 5000 /dev/urandom) > trail.gz && head -c 1M ${img.files.raw} | gzip -1 > two.gz && tail -c +1048577 ${img.files.raw} | gzip -1 >> two.gz`], { cwd: ws.dir })
  for (const file of ['padded.gz', 'two.gz', 'trail.gz']) {
    const disk = sparseDisk(ws.dir, 'sd.img')
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/' + file), OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: disk })
    assert.not.match(r.output, /writes the image into the disk file itself/)
    if (file === 'trail.gz') {
      assert.is(r.code, 1, r.output)
      assert.match(r.lastLine, /^create failed: gzip decoding failed \(incorrect header check\)/)
      continue
    }
    assert.is(r.code, 0, r.output)
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), file)
    assert.ok(readHead(disk, 32 * MiB).subarray(img.bytes.length).equals(Buffer.alloc(32 * MiB - img.bytes.length)), `${file}: nothing after the image`)
  }
  // an xz file given as raw+gz is refused as not gzip
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/' + img.files['raw+xz']), OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: sparseDisk(ws.dir, 'sd.img') })
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, /^create failed: gzip decoding failed \(incorrect header check\)/)
  assert.not.match(r.output, /writes the image into the disk file itself/)
})

test('the download cache leaves the image\'s zero runs as holes, and reads back the same', async () => {
  // 3 MiB of data around 20 MiB of zeros, and zeros at the end (the file is extended there)
  const data = Buffer.concat([randomBytes(MiB), Buffer.alloc(20 * MiB), randomBytes(2 * MiB), Buffer.alloc(5 * MiB)])
  writeFileSync(join(ws.dir, 'holes.raw'), data)
  for (const retry of ['', 'CUSTOM_CURL_OPTS="--retry 2"\n']) {
    const v = variant(ws, `holes${retry ? '-retry' : ''}`, retry)
    const disk = sparseDisk(ws.dir, 'holes.img')
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/holes.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk })
    assert.is(r.code, 0, r.output)
    const [entry] = cacheFiles(v).filter((f) => f.endsWith('.image'))
    const path = join(ws.dir, 'cache-' + v, entry)
    const st = statSync(path)
    assert.is(st.size, data.length, 'the entry keeps the image\'s length')
    assert.ok(st.blocks * 512 < 6 * MiB, `${st.blocks * 512} bytes allocated for 3 MiB of data`)
    assert.ok(readHead(path, data.length).equals(data), 'the entry reads back as the image')
    assert.ok(readHead(disk, data.length).equals(data), 'disk 0 holds the image')
    // and a warm create from it
    const again = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/holes.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'holes2.img') })
    assert.is(again.code, 0, again.output)
    assert.match(again.output, /cache hit/)
    assert.ok(readHead(join(ws.dir, 'holes2.img'), data.length).equals(data))
  }
})

test('a cache miss is written to disk 0 while it downloads; with --retry it downloads first', async () => {
  let r = await create({ OS_VARIANT: variant(ws, 'stream'), OSP_IMAGE: web.url('/image.raw.bz2'), OSP_IMAGE_TYPE: 'raw+bzip2', DISK_0_PATH: sparseDisk(ws.dir, 'st.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /cache miss: .* \(written to disk 0 while downloading\)/)
  assert.ok(readHead(join(ws.dir, 'st.img'), img.bytes.length).equals(img.bytes))
  r = await create({ OS_VARIANT: variant(ws, 'stream-retry', 'CUSTOM_CURL_OPTS="--retry 2"\n'), OSP_IMAGE: web.url('/image.raw.bz2'), OSP_IMAGE_TYPE: 'raw+bzip2', DISK_0_PATH: sparseDisk(ws.dir, 'st.img') })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /cache miss: /)
  assert.not.match(r.output, /while downloading/)
  assert.ok(readHead(join(ws.dir, 'st.img'), img.bytes.length).equals(img.bytes))
})

test('streamed downloads: a corrupt image and a cut-off download fail with their own cause, nothing cached', async () => {
  const v = variant(ws, 'stream-bad')
  const { writeFileSync: write, readFileSync: read } = await import('node:fs')
  const xz = read(join(ws.dir, 'image.raw.xz'))
  const bad = Buffer.from(xz)
  bad.fill(0x33, 1000, 5000)
  write(join(ws.dir, 'corrupt.raw.xz'), bad)
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/corrupt.raw.xz'), OSP_IMAGE_TYPE: 'raw+xz', DISK_0_PATH: sparseDisk(ws.dir, 'sb.img') })
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, /^create failed: xz failed to decompress the image .*corrupt or truncated/)
  r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/truncate/image.raw.gz'), OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: sparseDisk(ws.dir, 'sb.img') })
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, /^create failed: (the download of .* ended after|downloading .* failed)/)
  assert.equal(cacheFiles(v).filter((f) => !f.endsWith('.lock')), [])
})

test('HTTP 404 and a refused connection fail with the cause', async () => {
  const v = variant(ws, 'errors')
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/status/404'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'd.img') })
  assert.is(r.code, 1)
  assert.match(r.lastLine, /^create failed: the server answered HTTP 404 Not Found for http:\/\/127\.0\.0\.1:\d+\/status\/404; check the image URL/)
  r = await create({ OS_VARIANT: v, OSP_IMAGE: `http://127.0.0.1:${await closedPort()}/x.img`, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'd.img') })
  assert.is(r.code, 1)
  assert.match(r.lastLine, /the connection to 127\.0\.0\.1:\d+ was refused/)
  assert.equal(cacheFiles(v).filter((f) => !f.endsWith('.lock')), [])
})

test('eight parallel creates of one URL: one download, shared as it arrives, eight correct disks', async () => {
  const v = variant(ws, 'parallel')
  const before = web.hits('/image.raw.gz')
  const disks = Array.from({ length: 8 }, (_, i) => sparseDisk(ws.dir, `par-${i}.img`))
  const runs = await Promise.all(disks.map((disk) => create({ OS_VARIANT: v, OSP_IMAGE: web.url('/slow/image.raw.gz'), OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: disk })))
  for (const r of runs) assert.is(r.code, 0, r.output)
  assert.is(web.hits('/image.raw.gz') - before, 1, 'downloaded more than once')
  assert.is(runs.filter((r) => /cache miss: .*\(written to disk 0 while downloading\)/.test(r.output)).length, 1)
  // the others wrote their disks from that download while it arrived, not from the entry after it
  assert.is(runs.filter((r) => /written from the download of another create as it arrived/.test(r.output)).length, 7)
  for (const disk of disks) assert.ok(readHead(disk, img.bytes.length).equals(img.bytes))
})

test('an expired entry is fetched again; files that are not entries are never removed', async () => {
  const v = variant(ws, 'expiry', 'DOWNLOAD_CACHE_MAX_DAYS=2\n')
  const url = web.url('/small.raw')
  const first = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'e.img') })
  assert.is(first.code, 0, first.output)
  const dir = join(ws.dir, 'cache-expiry')
  const old = new Date(Date.now() - 3 * 86400_000)
  const entry = readdirSync(dir).find((f) => f.endsWith('.image'))!
  writeFileSync(join(dir, 'operator-notes.txt'), 'keep me')
  writeFileSync(join(dir, 'debian.image'), 'not ours')
  for (const f of [entry, 'operator-notes.txt', 'debian.image']) utimesSync(join(dir, f), old, old)
  const hits = web.hits('/small.raw')
  const second = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'e.img') })
  assert.is(second.code, 0, second.output)
  assert.match(second.output, /removed expired entry/)
  assert.match(second.output, /cache miss/)
  assert.is(web.hits('/small.raw'), hits + 1)
  assert.ok(existsSync(join(dir, 'operator-notes.txt')) && existsSync(join(dir, 'debian.image')))
})

test('expiry never removes an entry in use', async () => {
  const v = variant(ws, 'inuse', 'DOWNLOAD_CACHE_MAX_DAYS=1\n')
  const dir = join(ws.dir, 'cache-inuse')
  const first = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'u.img') })
  assert.is(first.code, 0, first.output)
  const entry = readdirSync(dir).find((f) => f.endsWith('.image'))!
  const old = new Date(Date.now() - 2 * 86400_000)
  utimesSync(join(dir, entry), old, old)
  // another create is writing from this entry: it holds the entry's lock shared
  const holder = spawn('flock', ['-s', join(dir, entry.replace('.image', '.lock')), 'sleep', '30'], { stdio: 'ignore' })
  await new Promise((r) => setTimeout(r, 300))
  try {
    const other = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/image.raw.gz'), OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: sparseDisk(ws.dir, 'u.img') })
    assert.is(other.code, 0, other.output)
    assert.ok(existsSync(join(dir, entry)), 'an entry in use was expired')
  } finally {
    holder.kill()
  }
})

test('an interrupted download fails and leaves nothing in the cache', async () => {
  const v = variant(ws, 'truncated')
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/truncate/image.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 't.img') })
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, /^create failed: /)
  assert.match(r.lastLine, /ended after \d+ of 20975104 bytes|socket hang up|aborted|ECONNRESET|Premature close/i)
  assert.equal(cacheFiles(v).filter((f) => !f.endsWith('.lock')), [])
})

test('a full cache filesystem fails the create as the cache\'s, and leaves nothing in it', async () => {
  const dir = join(ws.dir, 'full-cache')
  mkdirSync(dir, { mode: 0o700 })
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', dir])
  try {
    // most types are written to disk 0 while they download; qcow2 is downloaded first.
    // The cache fills up before the first MiB reaches the decoder
    for (const type of ['raw', 'raw+gz', 'raw+bzip2', 'raw+xz', 'raw+zst', 'qcow2']) {
      const url = web.url('/' + img.files[type as 'raw'])
      const r = await create({ OS_VARIANT: variant(ws, `full-${type.replace('+', '-')}`, `IMAGE_STORAGE=${dir}\n`), OSP_IMAGE: url, OSP_IMAGE_TYPE: type, DISK_0_PATH: sparseDisk(ws.dir, 'full.img') })
      assert.is(r.code, 1, r.output)
      assert.match(r.lastLine, /^create failed: writing the download into the image cache (failed \(ENOSPC\)|stopped after \d+ bytes)/, `${type}: ${r.lastLine}`)
      assert.match(r.lastLine, /free space where the variant's IMAGE_STORAGE points/)
      assert.not.match(r.output, /retrying/)
      assert.not.match(r.output, /Unhandled 'error' event|Node\.js v\d/, `${type}: crashed`)
      assert.equal(readdirSync(dir).filter((f) => !f.endsWith('.lock')), [], `${type}: something was left in the cache`)
    }
  } finally {
    execFileSync('umount', [dir])
  }
})

test('SIGTERM during a download: exit 143, no partial file, the lock is free again', async () => {
  const v = variant(ws, 'sigterm')
  let pid = 0
  const running = create({ OS_VARIANT: v, OSP_IMAGE: web.url('/slow/image.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 's.img') }, { onStart: (p: number) => (pid = p) })
  for (let i = 0; i < 50 && !cacheFiles(v).some((f) => f.includes('.part-')); i++) await new Promise((r) => setTimeout(r, 100))
  process.kill(pid, 'SIGTERM')
  const r = await running
  assert.is(r.code, 143, r.output)
  assert.equal(cacheFiles(v).filter((f) => !f.endsWith('.lock')), [])
  const again = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 's.img') })
  assert.is(again.code, 0, again.output)
})

test('http and https through a real proxy (config with export, quotes and comments)', async () => {
  const v = variant(ws, 'proxied', `# proxy for everything\nexport PROXY="${proxy.url}"  # tinyproxy\nCUSTOM_CURL_OPTS='--cacert ${certs.caFile}'\n`)
  for (const url of [web.url('/small.raw'), tls.url('/image.raw.xz')]) {
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: url.endsWith('.xz') ? 'raw+xz' : 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'p.img') })
    assert.is(r.code, 0, r.output)
  }
  assert.ok(readHead(join(ws.dir, 'p.img'), img.bytes.length).equals(img.bytes))
  const log = proxy.log()
  assert.match(log, new RegExp(`GET ${web.origin}/small.raw`.replace(/\./g, '\\.')))
  assert.match(log, new RegExp(`CONNECT ${tls.origin.replace('https://', '')}`.replace(/\./g, '\\.')))
})

test('TLS is verified: an unknown CA fails; --cacert, --capath and -k work (direct and via proxy)', async () => {
  const url = tls.url('/small.raw')
  const run = (name: string, config: string) => create({ OS_VARIANT: variant(ws, name, config), OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'tls.img') })
  let r = await run('tls-default', '')
  assert.is(r.code, 1)
  assert.match(r.lastLine, /TLS certificate of 127\.0\.0\.1:\d+ is not trusted/)
  r = await run('tls-proxy-default', `PROXY=${proxy.url}\n`)
  assert.is(r.code, 1)
  assert.match(r.lastLine, /not trusted/)
  for (const [name, config] of [['tls-cacert', `CUSTOM_CURL_OPTS="--cacert ${certs.caFile}"`], ['tls-capath', `CUSTOM_CURL_OPTS="--capath ${certs.caDir}"`], ['tls-k', 'CUSTOM_CURL_OPTS=-k'], ['tls-k-proxy', `CUSTOM_CURL_OPTS=--insecure\nPROXY=${proxy.url}`]]) {
    r = await run(name, config + '\n')
    assert.is(r.code, 0, `${name}: ${r.output}`)
  }
})

test('credentials: from the URL or -u, sent as Basic auth, never logged; -H adds headers', async () => {
  const v = variant(ws, 'creds', 'DEBUG_LEVEL=1\n')
  const url = web.url('/auth/small.raw').replace('http://', 'http://u:p%40ss@')
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'c.img'), DEBUG_LEVEL: '1' })
  assert.is(r.code, 0, r.output)
  assert.not.match(r.output, /p%40ss|p@ss/)
  assert.match(r.output, /http:\/\/\*\*\*@127\.0\.0\.1/)
  r = await create({ OS_VARIANT: variant(ws, 'creds-u', `CUSTOM_CURL_OPTS="-u 'u:p@ss' -H 'X-Token: t0k'"\n`), OSP_IMAGE: web.url('/auth/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'c.img'), DEBUG_LEVEL: '1' })
  assert.is(r.code, 0, r.output)
  assert.not.match(r.output, /p@ss/)
  r = await create({ OS_VARIANT: variant(ws, 'header', `CUSTOM_CURL_OPTS="-H 'X-Token: t0k'"\n`), OSP_IMAGE: web.url('/needheader/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'c.img') })
  assert.is(r.code, 0, r.output)
})

test('redirects are followed', async () => {
  const r = await create({ OS_VARIANT: variant(ws, 'redirect'), OSP_IMAGE: web.url('/redirect/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'r.img') })
  assert.is(r.code, 0, r.output)
})

test('curl options: --retry on 503, --max-time, --connect-timeout, --limit-rate, unknown option refused', async () => {
  const run = (name: string, config: string, path: string) => create({ OS_VARIANT: variant(ws, name, config), OSP_IMAGE: web.url(path), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'o.img') })
  const before503 = web.requests.filter((q) => q.path === '/status/503').length
  let r = await run('retry', 'CUSTOM_CURL_OPTS="--retry 2"\n', '/status/503')
  assert.is(r.code, 1)
  assert.is(web.requests.filter((q) => q.path === '/status/503').length - before503, 3)
  assert.match(r.output, /retrying in 1 s \(1 of 2\)/)
  assert.match(r.lastLine, /HTTP 503/)
  r = await run('maxtime', 'CUSTOM_CURL_OPTS="-m 1"\n', '/slow/image.raw')
  assert.is(r.code, 1)
  assert.match(r.lastLine, /timed out/)
  r = await run('connect-timeout', 'CUSTOM_CURL_OPTS="--connect-timeout 1"\n', '/hang/small.raw')
  assert.is(r.code, 1)
  assert.match(r.lastLine, /timed out/)
  const start = Date.now()
  r = await run('limit-rate', 'CUSTOM_CURL_OPTS="--limit-rate 2M"\n', '/small.raw')
  assert.is(r.code, 0, r.output)
  assert.ok(Date.now() - start >= 1000, '3 MiB at 2 MiB/s took less than a second')
  r = await run('unknown-opt', 'CUSTOM_CURL_OPTS="--retry 1 --compressed"\n', '/small.raw')
  assert.is(r.code, 1)
  assert.match(r.lastLine, /CUSTOM_CURL_OPTS contains the option --compressed, which this provider does not support/)
})

test.run()
