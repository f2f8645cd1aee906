// simpleimage-cache, the operator's command, built like the OS scripts and run with Ganeti's
// PATH as `gnt-cluster command` would: prefetch (URL or catalog name, checksum), list, purge.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { GANETI_PATH, workspace, variant, ganetiEnv, runAction, sparseDisk, readHead, sleep, MiB, lastLine, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'

const test = suite('simpleimage-cache')
let ws: Workspace
let web: TestServer
let tool: string
let image: Buffer
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex')

test.before(async () => {
  ws = await workspace()
  mkdirSync(join(ws.dir, 'sbin'))
  tool = join(ws.dir, 'sbin', 'simpleimage-cache')
  // installed as the .deb installs it: the bundle, its #! naming node by absolute path
  writeFileSync(tool, readFileSync('dist/simpleimage-cache', 'utf8').replace(/^#!.*\n/, `#!${process.execPath}\n`))
  chmodSync(tool, 0o755)
  mkdirSync(join(ws.dir, 'pub'))
  image = randomBytes(3 * MiB)
  writeFileSync(join(ws.dir, 'pub', 'debian-12.raw'), image)
  writeFileSync(join(ws.dir, 'pub', 'SHA512SUMS'), `${sha512(image)}  debian-12.raw\n${sha512(Buffer.from('x'))}  bad.raw\n`)
  writeFileSync(join(ws.dir, 'pub', 'bad.raw'), randomBytes(MiB))
  web = await startHttpServer({ root: ws.dir })
  variant(ws, 'default')
  writeFileSync(join(ws.configDir, 'default', 'images.ini'), `[debian-12]\nimage = ${web.url('/pub/debian-12.raw')}\nimage_type = raw\nimage_checksum = sha512sums\n\n[bad]\nimage = ${web.url('/pub/bad.raw')}\nimage_checksum = sha512sums\n`)
})
test.after(async () => {
  await web?.close()
  ws.cleanup()
})

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(tool, args, { env: { PATH: GANETI_PATH, SIMPLEIMAGE_CONFIG_DIR: ws.configDir }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b) => (stdout += b))
    child.stderr.on('data', (b) => (stderr += b))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}
const cache = (v: string) => join(ws.dir, 'cache-' + v)
const entries = (v: string) => (existsSync(cache(v)) ? readdirSync(cache(v)).filter((f) => f.endsWith('.image')) : [])

test('wrong arguments: exit 2 with the usage on stderr, nothing on stdout', async () => {
  for (const args of [[], ['frobnicate'], ['prefetch'], ['list', 'x'], ['purge', '--checksum', 'sha256sums'], ['prefetch', '--variant', '../etc', 'x']]) {
    const r = await run(args)
    assert.is(r.code, 2, args.join(' '))
    assert.match(r.stderr, /usage: simpleimage-cache list/)
    assert.is(r.stdout, '')
  }
  const r = await run(['--help'])
  assert.is(r.code, 0)
  assert.match(r.stdout, /usage: simpleimage-cache/)
})

test('prefetch a catalog name: downloaded and checked against the SUMS file; a create then downloads nothing', async () => {
  let r = await run(['prefetch', 'debian-12'])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stderr, /image_checksum: sha512 /)
  assert.match(lastLine(r.stderr), /debian-12\.raw is cached in .*\.image \(3\.0 MiB, sha512 checked\)/)
  assert.is(entries('default').length, 1)
  assert.is(web.hits('/pub/debian-12.raw'), 1)
  // a second prefetch revalidates instead of downloading again
  r = await run(['prefetch', 'debian-12'])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stderr, /HTTP 304/)
  assert.is(web.hits('/pub/debian-12.raw'), 1)
  const disk = sparseDisk(ws.dir, 'p.img')
  const c = await runAction(ws, 'create', ganetiEnv(ws, { OS_VARIANT: 'default', OSP_IMAGE: 'debian-12', DISK_0_PATH: disk }))
  assert.is(c.code, 0, c.output)
  assert.match(c.output, /cache hit/)
  assert.match(c.output, /the cached download's sha512 matches/)
  assert.ok(readHead(disk, image.length).equals(image))
  assert.is(web.hits('/pub/debian-12.raw'), 1)
})

test('prefetch of an image that fails its checksum: exit 1, both digests in the last line, nothing cached', async () => {
  const r = await run(['prefetch', 'bad'])
  assert.is(r.code, 1, r.stderr)
  assert.match(lastLine(r.stderr), /^simpleimage-cache failed: the image's sha512 is [0-9a-f]{128}, but .*SHA512SUMS says [0-9a-f]{128}/)
  assert.is(entries('default').length, 1) // debian-12's only
})

test('prefetch into another variant with --checksum; an unknown name lists the known ones', async () => {
  variant(ws, 'other')
  let r = await run(['prefetch', '--variant', 'other', '--checksum', `sha512:${sha512(image)}`, web.url('/pub/debian-12.raw')])
  assert.is(r.code, 0, r.stderr)
  assert.is(entries('other').length, 1)
  r = await run(['prefetch', 'debian-13'])
  assert.is(r.code, 1)
  assert.match(lastLine(r.stderr), /debian-12/)
})

test('list: every variant\'s cache, with URL, size, age and digests, on stdout', async () => {
  const r = await run(['list'])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, new RegExp(`${cache('default')} \\(variant default\\): 1 image\\(s\\)`))
  assert.match(r.stdout, new RegExp(`${cache('other')} \\(variant other\\): 1 image\\(s\\)`))
  assert.match(r.stdout, new RegExp(web.url('/pub/debian-12.raw').replace(/[.]/g, '\\.')))
  assert.match(r.stdout, /  3\.0 MiB  downloaded 0 min ago  /)
  assert.match(r.stdout, new RegExp(`sha512:${sha512(image)}`))
  const one = await run(['list', '--variant', 'other'])
  assert.not.match(one.stdout, new RegExp(cache('default')))
})

test('purge --expired keeps young entries; purge keeps one in use and removes the rest', async () => {
  let r = await run(['purge', '--expired'])
  assert.is(r.code, 0, r.stderr)
  assert.match(lastLine(r.stderr), /removed 0 cached image\(s\)/)
  const old = new Date(Date.now() - 30 * 86400_000)
  const otherEntry = join(cache('other'), entries('other')[0])
  utimesSync(otherEntry, old, old)
  r = await run(['purge', '--expired'])
  assert.match(lastLine(r.stderr), /removed 1 cached image\(s\) \(3\.0 MiB\)/)
  assert.is(entries('other').length, 0)
  assert.is(readdirSync(cache('other')).length, 0, 'its metadata and lock go too')
  // a create or prefetch holds the entry's lock while it reads it
  const lock = join(cache('default'), entries('default')[0].replace(/\.image$/, '.lock'))
  const holder = spawn('flock', ['-s', lock, 'sleep', '5'], { stdio: 'ignore', detached: true })
  await sleep(300)
  r = await run(['purge'])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stderr, /kept .*\.image: in use/)
  assert.is(entries('default').length, 1)
  const listed = await run(['list'])
  assert.match(listed.stdout, /  in use  /)
  process.kill(-holder.pid!) // flock and its sleep, which holds the lock too
  await sleep(200)
  r = await run(['purge'])
  assert.match(lastLine(r.stderr), /removed 1 cached image\(s\)/)
  assert.is(entries('default').length, 0)
})

test.run()
