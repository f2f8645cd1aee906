// verify parameters, with exactly the variables Ganeti gives it (OS_*, DEBUG_LEVEL, OSP_*, PATH).
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { writeFileSync, chmodSync, mkdirSync } from 'node:fs'
import { closedPort, workspace, variant, runAction, runVerify, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'
import { startProxy, type TestProxy } from '../support/proxy.js'

const test = suite('verify parameters')
let ws: Workspace
let web: TestServer
let proxy: TestProxy

test.before(async () => {
  ws = await workspace()
  writeFileSync(join(ws.dir, 'a.img'), Buffer.alloc(1 << 20, 1))
  writeFileSync(join(ws.dir, 'secret.img'), 'x')
  chmodSync(join(ws.dir, 'secret.img'), 0o000)
  web = await startHttpServer({ root: ws.dir })
  mkdirSync(join(ws.dir, 'proxy'))
  proxy = await startProxy(join(ws.dir, 'proxy'))
})
test.after(async () => {
  await Promise.all([web.close(), proxy.close()])
  ws.cleanup()
})

const verify = (osp: Record<string, string>, osVariant = 'default') => runVerify(ws, osp, osVariant)

test('a readable local image and a known type pass', async () => {
  for (const type of ['raw', 'raw+gz', 'raw+bzip2', 'raw+bz2', 'raw+xz', 'raw+zst', 'qcow2', 'auto']) {
    const r = await verify({ image: join(ws.dir, 'a.img'), image_type: type })
    assert.is(r.code, 0, r.output)
  }
})

test('bad values fail with a message the user understands', async () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ image: join(ws.dir, 'a.img'), image_type: 'zip' }, /unknown image_type 'zip'; use one of raw, raw\+gz, raw\+bzip2, raw\+bz2, raw\+xz, raw\+zst, qcow2, auto/],
    [{ image: join(ws.dir, 'missing.img'), image_type: 'raw' }, /the image .*missing\.img does not exist on this node/],
    [{ image: ws.dir, image_type: 'raw' }, /is not a regular file/],
    [{ image: '/dev/null', image_type: 'raw' }, /refused because it lies under \/dev/],
    [{ image: 'relative.img', image_type: 'raw' }, /neither an absolute path nor an http\(s\) URL/],
    [{ image: 'ftp://127.0.0.1/a.img', image_type: 'raw' }, /scheme 'ftp:' are not supported/],
    [{ image: web.url('/status/404'), image_type: 'raw' }, /answered HTTP 404/],
  ]
  for (const [osp, pattern] of cases) {
    const r = await verify(osp)
    assert.is(r.code, 1, `${JSON.stringify(osp)}: ${r.output}`)
    assert.match(r.lastLine, /^verify failed: /)
    assert.match(r.lastLine, pattern)
  }
})

test('an unreachable URL fails within seconds', async () => {
  const start = Date.now()
  const r = await verify({ image: `http://127.0.0.1:${await closedPort()}/a.img`, image_type: 'raw' })
  assert.is(r.code, 1)
  assert.match(r.lastLine, /cannot be reached: the connection to 127\.0\.0\.1:\d+ was refused/)
  const hang = await verify({ image: web.url('/hang/a.img'), image_type: 'raw' })
  assert.is(hang.code, 1)
  assert.match(hang.lastLine, /timed out/)
  assert.ok(Date.now() - start < 20_000)
})

test('URLs: HEAD answers; where HEAD is refused a one-byte ranged GET is used', async () => {
  let r = await verify({ image: web.url('/a.img'), image_type: 'raw' })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /HTTP 200, 1\.0 MiB/)
  const before = web.requests.length
  r = await verify({ image: web.url('/nohead/a.img'), image_type: 'raw' })
  assert.is(r.code, 0, r.output)
  const sent = web.requests.slice(before)
  assert.equal(sent.map((q) => q.method), ['HEAD', 'GET'])
  assert.is(sent[1].headers.range, 'bytes=0-0')
  assert.match(r.output, /HTTP 206, 1\.0 MiB/)
})

test('URLs are checked through the variant\'s PROXY', async () => {
  variant(ws, 'viaproxy', `PROXY=${proxy.url}\n`)
  const r = await verify({ image: web.url('/a.img'), image_type: 'raw' }, 'viaproxy')
  assert.is(r.code, 0, r.output)
  assert.match(proxy.log(), /HEAD http:\/\/127\.0\.0\.1:\d+\/a\.img/)
})

test('image_type=auto: verify reports what it detected, for a path and for a URL', async () => {
  const { execFileSync } = await import('node:child_process')
  execFileSync('xz', ['-kf', join(ws.dir, 'a.img')])
  let r = await verify({ image: join(ws.dir, 'a.img.xz'), image_type: 'auto' })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /image_type auto: the image is raw\+xz/)
  r = await verify({ image: web.url('/a.img'), image_type: 'auto' })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /image_type auto: the image is raw\n/)
  r = await verify({ image: join(ws.dir, 'a.img.xz') }) // no image_type: auto
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /image_type auto: the image is raw\+xz/)
})

test('a partial parameter set (cluster-wide defaults) checks what it has and passes', async () => {
  let r = await verify({})
  assert.is(r.code, 0, r.output)
  r = await verify({ image_type: 'raw+xz' })
  assert.is(r.code, 0, r.output)
  r = await verify({ image_type: 'nope' })
  assert.is(r.code, 1)
})

test('the example hooks\' parameters: checked, refused with a message, their values (keys) not logged', async () => {
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk1ZDXeu1x9Gp3z1N0h3m0G5cqxvR5PV5w6PZ7sY5GK me@example.org'
  writeFileSync(join(ws.dir, 'user-data'), '#cloud-config\n{}\n')
  const good = await verify({ image: join(ws.dir, 'a.img'), image_type: 'raw', ssh_authorized_keys: `${key};${key.replace('me@', 'you@')}`, dns_nameservers: '192.0.2.53 2001:db8::53', dns_search: 'example.org', user_data: join(ws.dir, 'user-data') })
  assert.is(good.code, 0, good.output)
  assert.match(good.output, /ssh_authorized_keys: 2 key\(s\): ok/)
  assert.not.match(good.output, /AAAAC3Nza/)
  assert.match(good.output, /user_data: readable file of 17 B: ok/)
  const cases: [Record<string, string>, RegExp][] = [
    [{ ssh_authorized_keys: 'AAAA me@host' }, /ssh_authorized_keys is not an OpenSSH public key/],
    [{ dns_nameservers: '192.0.2.999' }, /dns_nameservers: '192\.0\.2\.999' is not an IPv4 or IPv6 address/],
    [{ dns_search: 'bad_name' }, /dns_search: 'bad_name' is not a domain name/],
    [{ user_data: 'relative/user-data' }, /user_data 'relative\/user-data' is neither an absolute path nor an http\(s\) URL/],
    [{ user_data: join(ws.dir, 'missing-user-data') }, /user_data .*missing-user-data does not exist on this node/],
    [{ user_data: '/proc/self/environ' }, /user_data \/proc\/self\/environ is refused because it lies under \/proc/],
  ]
  for (const [osp, pattern] of cases) {
    const r = await verify({ image_type: 'raw', ...osp })
    assert.is(r.code, 1, `${JSON.stringify(osp)}: ${r.output}`)
    assert.match(r.lastLine, /^verify failed: /)
    assert.match(r.lastLine, pattern)
  }
})

test('qcow2 needs qemu-img: reported when PATH has none', async () => {
  const env = { PATH: '/nonexistent', OS_API_VERSION: '20', OS_VARIANT: 'default', SIMPLEIMAGE_CONFIG_DIR: ws.configDir, OSP_IMAGE_TYPE: 'qcow2' }
  const r = await runAction(ws, 'verify', env)
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, /qemu-img is not installed .*apt-get install qemu-utils/)
})

test.run()
