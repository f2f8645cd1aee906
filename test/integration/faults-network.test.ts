// Downloads that go wrong, said the way the rules say (one last line with the cause,
// nothing half-cached, no credentials shown, no hang): a server that closes early, a
// redirect with credentials or to file://, bad %-escapes, proxies that refuse, verify
// against a server that stalls, trailing data after a bzip2 image, parallel creates of
// one URL with DOWNLOAD_CACHE_MAX_DAYS=0, and lock files that outlive their entries.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { closedPort, workspace, variant, ganetiEnv, runAction, makeImage, sparseDisk, readHead, sleep, runVerify, MiB, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { makeCerts, type TestCerts } from '../support/certs.js'

const test = suite('downloads that go wrong')
let ws: Workspace
let img: ReturnType<typeof makeImage>
let web: TestServer
let tls: TestServer
let certs: TestCerts
let strict: TestProxy

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
  writeFileSync(join(ws.dir, 'small.raw'), randomBytes(3 * MiB))
  // a bzip2 image followed by data that is not bzip2: lbzip2 stops reading after the image
  execFileSync('bash', ['-c', 'cat image.raw.bz2 > trailing.bz2 && head -c 64M /dev/urandom >> trailing.bz2'], { cwd: ws.dir })
  web = await startHttpServer({ root: ws.dir })
  mkdirSync(join(ws.dir, 'certs'))
  certs = await makeCerts(join(ws.dir, 'certs'))
  tls = await startHttpServer({ root: ws.dir, tls: { key: certs.keyFile, cert: certs.certFile } })
  // a proxy that allows CONNECT to port 443 only: our https server's port gets 403
  strict = await startProxy(join(ws.dir, 'strict-proxy'), ['ConnectPort 443'])
})
test.after(async () => {
  await Promise.all([web?.close(), tls?.close(), strict?.close()])
  ws.cleanup()
})

const create = (vars: Record<string, string | undefined>) => runAction(ws, 'create', ganetiEnv(ws, vars), { timeoutMs: 60_000 })
const verify = (osp: Record<string, string>, osVariant = 'default') => runVerify(ws, osp, osVariant)
const cacheOf = (v: string) => join(ws.dir, 'cache-' + v)
const leftovers = (v: string) => (existsSync(cacheOf(v)) ? readdirSync(cacheOf(v)).filter((f) => !f.endsWith('.lock')) : [])
/** A failure said by the rules: one line naming the cause, no crash of Node's own. */
function saidProperly(r: { code: number | null; output: string; lastLine: string; timedOut?: boolean }, what: string) {
  assert.not.ok(r.timedOut, `${what}: hung`)
  assert.is(r.code, 1, `${what}: ${r.output}`)
  assert.match(r.lastLine, /^create failed: /, what)
  assert.not.match(r.output, /Unhandled 'error' event|Node\.js v\d|^\s+at /m, `${what}: crashed`)
}

test('a server that closes before the first MiB: every type fails with the cause, nothing half-cached', async () => {
  for (const [type, file] of Object.entries(img.files)) {
    const v = variant(ws, `short-${type.replace('+', '-')}`)
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url(`/short/${file}`), OSP_IMAGE_TYPE: type, DISK_0_PATH: sparseDisk(ws.dir, 'short.img') })
    saidProperly(r, type)
    assert.match(r.lastLine, /cut off|ended after \d+ of \d+ bytes/, `${type}: ${r.lastLine}`)
    assert.equal(leftovers(v), [], `${type}: left in the cache`)
  }
})

test('a redirect to a URL with credentials: they are used, and shown nowhere', async () => {
  const r = await create({ OS_VARIANT: variant(ws, 'redirect-creds'), OSP_IMAGE: web.url('/authredirect/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'rc.img'), DEBUG_LEVEL: '1' })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /redirected \(HTTP 302\) to http:\/\/\*\*\*@127\.0\.0\.1/)
  assert.not.match(r.output, /p@ss|p%40ss/)
  const auth = web.requests.filter((q) => q.path === '/auth/small.raw').pop()
  assert.is(auth?.headers.authorization, 'Basic ' + Buffer.from('u:p@ss').toString('base64'))
})

test('a redirect to another origin: -H headers go along, but not credentials (Authorization, Cookie)', async () => {
  const other = await startHttpServer({ root: ws.dir })
  try {
    const v = variant(ws, 'foreign-redirect', `CUSTOM_CURL_OPTS="-H 'Authorization: Bearer s3cret' -H 'Cookie: id=s3cret' -H 'X-Token: t0k'"\n`)
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/to/' + encodeURIComponent(other.url('/small.raw'))), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'fr.img') })
    assert.is(r.code, 0, r.output)
    const first = web.requests.filter((q) => q.path.startsWith('/to/')).pop()!
    const second = other.requests.find((q) => q.path === '/small.raw')!
    assert.is(first.headers.authorization, 'Bearer s3cret')
    assert.is(second.headers['x-token'], 't0k')
    assert.is(second.headers.authorization, undefined, 'the credentials went to another origin')
    assert.is(second.headers.cookie, undefined, 'the cookie went to another origin')
  } finally {
    await other.close()
  }
})

test('a redirect to file://, and a bad %-escape in URL credentials, are refused with a one-line cause', async () => {
  const r = await create({ OS_VARIANT: variant(ws, 'to-file'), OSP_IMAGE: web.url('/to/' + encodeURIComponent('file:///etc/passwd')), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'tf.img') })
  saidProperly(r, 'file://')
  assert.match(r.lastLine, /redirected to a file: URL \(file:\/\/\/etc\/passwd\), which is refused/)
  const bad = web.url('/auth/small.raw').replace('http://', 'http://u:p%zz@')
  const c = await create({ OS_VARIANT: variant(ws, 'bad-escape'), OSP_IMAGE: bad, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'be.img') })
  saidProperly(c, 'bad escape')
  assert.match(c.lastLine, /the credentials in the image URL http:\/\/\*\*\*@127\.0\.0\.1:\d+\/auth\/small\.raw have a bad %-escape/)
  assert.not.match(c.output, /p%zz/)
  const v = await verify({ image: bad, image_type: 'raw' })
  assert.is(v.code, 1)
  assert.match(v.lastLine, /have a bad %-escape/)
})

test('a proxy that cannot be reached, or that refuses CONNECT, is named as the cause', async () => {
  const port = await closedPort()
  const closed = variant(ws, 'proxy-closed', `PROXY=http://127.0.0.1:${port}\n`)
  for (const url of [web.url('/small.raw'), tls.url('/small.raw')]) {
    const r = await create({ OS_VARIANT: closed, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'px.img') })
    saidProperly(r, url)
    assert.match(r.lastLine, new RegExp(`the proxy 127\\.0\\.0\\.1:${port} \\(PROXY in the variant config\\) cannot be reached \\(the connection was refused\\); check PROXY`))
    const v = await verify({ image: url, image_type: 'raw' }, closed)
    assert.match(v.lastLine, new RegExp(`the proxy 127\\.0\\.0\\.1:${port} .*cannot be reached`))
  }
  const refusing = variant(ws, 'proxy-403', `PROXY=${strict.url}\nCUSTOM_CURL_OPTS="--cacert ${certs.caFile}"\n`)
  const r = await create({ OS_VARIANT: refusing, OSP_IMAGE: tls.url('/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'px.img') })
  saidProperly(r, 'CONNECT 403')
  assert.match(r.lastLine, /the proxy 127\.0\.0\.1:\d+ \(PROXY in the variant config\) refused to connect to 127\.0\.0\.1:\d+ \(the proxy answered CONNECT with 403 /)
  assert.match(strict.log(), /CONNECT/)
  const v = await verify({ image: tls.url('/small.raw'), image_type: 'raw' }, refusing)
  assert.match(v.lastLine, /refused to connect to/)
})

test('verify against a server that refuses HEAD, ignores Range and stalls: it answers in seconds and exits', async () => {
  const start = Date.now()
  const r = await verify({ image: web.url('/stallget/image.raw'), image_type: 'raw' })
  assert.not.ok(r.timedOut, `verify hung: ${r.output}`)
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /HTTP 200, 20\.0 MiB/)
  assert.ok(Date.now() - start < 15_000)
  const auto = await verify({ image: web.url('/stallget/image.raw'), image_type: 'auto' })
  assert.not.ok(auto.timedOut, `verify (auto) hung: ${auto.output}`)
  assert.is(auto.code, 0, auto.output)
})

test('lbzip2 done before the download (trailing data): the download is stopped, not cached, memory stays bounded', async () => {
  assert.ok(existsSync('/usr/bin/lbzip2'), 'lbzip2 is not installed (test/setup-deps.sh installs it)')
  const v = variant(ws, 'trailing')
  // slowly (1 MiB/s), so that lbzip2 is done before the download: from the host's loopback the
  // download would outrun it, be complete, and be kept (it is the server's file, after all)
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/slow/trailing.bz2'), OSP_IMAGE_TYPE: 'raw+bzip2', DISK_0_PATH: sparseDisk(ws.dir, 'trail.img') })
  assert.is(r.code, 0, r.output)
  assert.not.match(r.output, /MaxListenersExceeded/)
  assert.match(r.output, /the rest is not part of it, so the download was stopped and is not cached/)
  assert.ok(readHead(join(ws.dir, 'trail.img'), img.bytes.length).equals(img.bytes))
  const q = web.requests.filter((x) => x.path === '/slow/trailing.bz2').pop()
  assert.is(q?.completed, false, 'the whole download was read')
  assert.equal(leftovers(v), [])
})

test('DOWNLOAD_CACHE_MAX_DAYS=0: creates that arrive together download once', async () => {
  const v = variant(ws, 'days0', 'DOWNLOAD_CACHE_MAX_DAYS=0\n')
  const before = web.hits('/small.raw')
  const first = create({ OS_VARIANT: v, OSP_IMAGE: web.url('/slow/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'd0-a.img') })
  await sleep(700) // the first is downloading (3 MiB at 1 MiB/s)
  const others = [1, 2].map((i) => create({ OS_VARIANT: v, OSP_IMAGE: web.url('/slow/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, `d0-${i}.img`) }))
  for (const r of await Promise.all([first, ...others])) assert.is(r.code, 0, r.output)
  assert.is(web.hits('/small.raw') - before, 1, 'downloaded more than once')
  // a create that comes later fetches it again: 0 days means no reuse
  const later = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'd0-later.img') })
  assert.is(later.code, 0, later.output)
  assert.is(web.hits('/small.raw') - before, 2)
})

test('lock files go with their expired entries, and alone ones go too', async () => {
  const v = variant(ws, 'locks', 'DOWNLOAD_CACHE_MAX_DAYS=1\n')
  const dir = cacheOf(v)
  let r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/small.raw'), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'lk.img') })
  assert.is(r.code, 0, r.output)
  const entry = readdirSync(dir).find((f) => f.endsWith('.image'))!
  const key = entry.replace('.image', '')
  const old = new Date(Date.now() - 2 * 86400_000)
  utimesSync(join(dir, entry), old, old)
  const alone = 'b'.repeat(64) + '.lock'
  writeFileSync(join(dir, alone), '')
  r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/' + img.files.raw), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'lk.img') })
  assert.is(r.code, 0, r.output)
  const names = readdirSync(dir)
  assert.not.ok(names.includes(entry), 'the expired entry stayed')
  assert.not.ok(names.includes(`${key}.lock`), 'its lock file stayed')
  assert.not.ok(names.includes(alone), 'a lock file without an entry stayed')
})

test.run()
