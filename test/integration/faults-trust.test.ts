// What root trusts: a cache directory others could write (planted entries), entries not
// owned by root, a read-only IMAGE_STORAGE, a variant config that ends in `exit`, and
// hooks (or their directories) that someone else could have written.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { workspace, variant, ganetiEnv, runAction, makeImage, sparseDisk, dirtyLoop, readHead, MiB, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { cacheKey } from '../../lib/image/cache.js'

const test = suite('what root trusts')
let ws: Workspace
let img: ReturnType<typeof makeImage>
let web: TestServer
let proxy: TestProxy
const NOBODY = 65534

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
  web = await startHttpServer({ root: ws.dir })
  proxy = await startProxy(join(ws.dir, 'proxy'))
})
test.after(async () => {
  await Promise.all([web?.close(), proxy?.close()])
  ws.cleanup()
})

const create = (vars: Record<string, string | undefined>) => runAction(ws, 'create', ganetiEnv(ws, vars), { timeoutMs: 60_000 })
const OLD = Buffer.alloc(16 * MiB, 0x5a)

/** An entry someone put into IMAGE_STORAGE for url: other bytes than the image's. */
function plant(dir: string, url: string, owner = 0): string {
  const path = join(dir, `${cacheKey(new URL(url))}.image`)
  writeFileSync(path, randomBytes(2 * MiB), { mode: 0o600 })
  chownSync(path, owner, owner)
  return path
}

test('IMAGE_STORAGE that others could write (1777): nothing found in it is used', async () => {
  const dir = join(ws.dir, 'open-cache')
  mkdirSync(dir)
  chmodSync(dir, 0o1777)
  const url = web.url('/' + img.files.raw)
  plant(dir, url) // root's own file name, but anyone could have made it while the directory was open
  const disk = sparseDisk(ws.dir, 'open.img')
  const r = await create({ OS_VARIANT: variant(ws, 'open-cache', `IMAGE_STORAGE=${dir}\n`), OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /was writable by others: removed that permission, and 1 cache file\(s\) that anyone could have put there/)
  assert.match(r.output, /cache miss/)
  assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), 'the planted entry was written to disk 0')
  assert.is(statSync(dir).mode & 0o7777, 0o755)
})

test('entries not owned by root, or with a second name, are never used', async () => {
  for (const how of ['owned by nobody', 'hard-linked']) {
    const v = variant(ws, `planted-${how.split(' ')[0]}`)
    const dir = join(ws.dir, 'cache-' + v)
    mkdirSync(dir, { mode: 0o700 })
    const url = web.url('/' + img.files['raw+gz'])
    const entry = plant(dir, url, how === 'owned by nobody' ? NOBODY : 0)
    if (how === 'hard-linked') linkSync(entry, join(ws.dir, 'someone-elses-name'))
    const disk = sparseDisk(ws.dir, 'planted.img')
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: disk })
    assert.is(r.code, 0, r.output)
    assert.match(r.output, how === 'owned by nobody' ? /is not used because it is owned by uid 65534, not by root: downloading again/ : /is not used because it has other names \(hard links\): downloading again/)
    assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), `${how}: the planted entry was written to disk 0`)
  }
})

test('a read-only IMAGE_STORAGE, existing or not: the last line says read-only', async () => {
  const dir = join(ws.dir, 'ro-cache')
  mkdirSync(dir, { mode: 0o700 })
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m,mode=0700', 'tmpfs', dir])
  try {
    for (const storage of [dir, join(dir, 'missing')]) {
      const r = await create({ OS_VARIANT: variant(ws, 'ro', `IMAGE_STORAGE=${storage}\n`), OSP_IMAGE: web.url('/' + img.files.raw), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'ro.img') })
      assert.is(r.code, 1, r.output)
      assert.match(r.lastLine, new RegExp(`^create failed: IMAGE_STORAGE ${storage}.* \\(EROFS: a read-only filesystem\\); point the variant's IMAGE_STORAGE at a directory of root's on a writable filesystem`))
    }
  } finally {
    execFileSync('umount', [dir])
  }
})

test('a variant config that ends in `exit 0` keeps its settings; another exit status fails, naming the file', async () => {
  const storage = join(ws.dir, 'exit-cache')
  const v = variant(ws, 'exits', `IMAGE_STORAGE=${storage}\nPROXY=${proxy.url}\nexit 0\nPROXY=http://never.invalid:1\n`)
  const r = await create({ OS_VARIANT: v, OSP_IMAGE: web.url('/' + img.files.raw), OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'exit.img') })
  assert.is(r.code, 0, r.output)
  assert.ok(existsSync(storage) && readdirSync(storage).some((f) => f.endsWith('.image')), 'IMAGE_STORAGE was not used')
  assert.match(proxy.log(), new RegExp(`GET ${web.url('/' + img.files.raw).replace(/\./g, '\\.')}`), 'PROXY was not used')
  const bad = variant(ws, 'exit3', 'PROXY=http://127.0.0.1:1\nexit 3\n')
  const f = await create({ OS_VARIANT: bad, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'exit.img') })
  assert.is(f.code, 1, f.output)
  assert.match(f.lastLine, /^create failed: the variant config .*\/exit3\/config could not be read by bash \(exit 3\)/)
})

test('hooks, or their directories, that someone else could have written are refused before disk 0 is touched', async () => {
  const cases: [string, (dir: string) => void, RegExp][] = [
    ['world-writable hook', (dir) => chmodSync(join(dir, 'hooks', '10-x'), 0o757), /hook 10-x is refused: .*\/hooks\/10-x could have been written by someone else \(it is writable by everyone\)/],
    ['hook of another user', (dir) => chownSync(join(dir, 'hooks', '10-x'), NOBODY, NOBODY), /hook 10-x is refused: .*\/hooks\/10-x could have been written by someone else \(it is owned by uid 65534, not by root\)/],
    ['world-writable hooks directory', (dir) => chmodSync(join(dir, 'hooks'), 0o777), /the hooks directory .*\/hooks is refused: .*\/hooks could have been written by someone else \(it is writable by everyone\)/],
    ['group-writable variant directory', (dir) => chmodSync(dir, 0o775), /is refused: .*\/hook-\d, a directory above .*, could have been written by someone else \(it is writable by its group\)/],
  ]
  let n = 0
  for (const [what, spoil, why] of cases) {
    const v = variant(ws, `hook-${n++}`, '', { '10-x': '#!/bin/sh\necho ran\n' })
    spoil(join(ws.configDir, v))
    const disk = dirtyLoop(ws.dir, `hook-${n}.img`, 16 * MiB)
    const r = await create({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk })
    assert.is(r.code, 1, `${what}: ${r.output}`)
    assert.match(r.lastLine, /^create failed: /)
    assert.match(r.lastLine, why, what)
    assert.not.match(r.output, /\bran\n/, `${what}: the hook ran`)
    assert.ok(readHead(disk, 16 * MiB).equals(OLD), `${what}: disk 0 was written`)
  }
})

test.run()
