// A shared caching proxy for the fleet (README "A shared caching proxy for the fleet"): two
// nodes, each with its own IMAGE_STORAGE, whose variant's PROXY points at one real squid on
// 127.0.0.1, install the same http image; the origin sends it once. The control: the same
// two creates through a squid that caches nothing reach the origin twice, so the single
// request is squid's cache at work and not something of the provider's. And a rollout:
// four nodes asking at the same moment (gnt-cluster command runs a prefetch on every node
// at once) through a squid with collapsed_forwarding: one request to the origin as well.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { workspace, variant, ganetiEnv, runAction, sparseDisk, readHead, waitFor, MiB, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'
import { startSquid, type TestSquid } from '../support/squid.js'

const test = suite('a shared caching proxy (squid)')
let ws: Workspace
let web: TestServer
let squidDir: string
let caching: TestSquid
let uncached: TestSquid
let image: Buffer

test.before(async () => {
  ws = await workspace()
  // 4 MiB and a bit: data at both ends, zeros between, gzipped to about 1.5 MiB
  image = Buffer.alloc(4 * MiB + 3 * 512)
  randomBytes(MiB).copy(image, 0)
  randomBytes(512 * 1024).copy(image, image.length - 512 * 1024)
  for (const name of ['fleet.raw.gz', 'control.raw.gz', 'rollout.raw.gz']) {
    const file = join(ws.dir, name)
    writeFileSync(file, gzipSync(image))
    // Published ten days ago, as a distribution's image is: squid's Last-Modified heuristic
    // (refresh_pattern . 0 20% 4320) then keeps it fresh for two days.
    const published = new Date(Date.now() - 10 * 86400_000)
    utimesSync(file, published, published)
  }
  web = await startHttpServer({ root: ws.dir })
  // squid runs as the user proxy, which cannot enter the workspace (0700): a dir of its own
  squidDir = mkdtempSync(join(tmpdir(), 'simpleimage-squid-'))
  chmodSync(squidDir, 0o711)
  // both start at once; after() stops whichever did start, so none is left behind
  const [a, b] = await Promise.allSettled([startSquid(join(squidDir, 'caching'), { extra: ['collapsed_forwarding on'] }), startSquid(join(squidDir, 'uncached'), { extra: ['cache deny all'] })])
  if (a.status === 'fulfilled') caching = a.value
  if (b.status === 'fulfilled') uncached = b.value
  for (const s of [a, b]) if (s.status === 'rejected') throw s.reason
})
test.after(async () => {
  await Promise.all([web?.close(), caching?.close(), uncached?.close()])
  if (squidDir) rmSync(squidDir, { recursive: true, force: true })
  ws?.cleanup()
})

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const entries = (node: string) => readdirSync(join(ws.dir, 'cache-' + node)).filter((f) => f.endsWith('.image'))

/** Creates an instance from `url` on each node in turn (the second once the first is done,
 *  as two rollouts an hour apart would) and checks disk and cache of each. */
async function createOnNodes(nodes: string[], url: string): Promise<void> {
  for (const node of nodes) {
    const disk = sparseDisk(ws.dir, `${node}.img`, 8 * MiB)
    const r = await runAction(ws, 'create', ganetiEnv(ws, { OS_VARIANT: node, INSTANCE_NAME: `${node}-inst.example.org`, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: disk }), { timeoutMs: 30_000 })
    assert.is(r.code, 0, r.output)
    assert.match(r.output, /cache miss: /, `${node}: its own IMAGE_STORAGE was empty`)
    assert.is(sha(readHead(disk, image.length)), sha(image), `${node}: disk 0 differs from the image`)
    const own = entries(node)
    assert.is(own.length, 1, `${node}: one entry in its own IMAGE_STORAGE`)
    assert.ok(readFileSync(join(ws.dir, 'cache-' + node, own[0])).equals(readFileSync(join(ws.dir, new URL(url).pathname))), `${node}: the cache entry is not the download`)
  }
}

test('two nodes behind one caching squid: each gets the image and its own cache entry, the origin sends it once', async () => {
  const nodes = ['node1', 'node2'].map((n) => variant(ws, n, `PROXY=${caching.url}\n`))
  const url = web.url('/fleet.raw.gz')
  await createOnNodes(nodes, url)
  assert.is(web.hits('/fleet.raw.gz'), 1, 'the origin was asked for the image more than once')
  // ...and it was squid's cache that answered the second node, not a way around the proxy
  assert.ok(await waitFor(() => caching.results(url).length >= 2, 5000), caching.accessLog())
  const [first, second] = caching.results(url)
  assert.is(first, 'TCP_MISS/200', caching.accessLog())
  assert.match(second, /^TCP_(MEM_)?HIT\/200$/, caching.accessLog())
})

test('control: through a squid that caches nothing, the two nodes make two requests to the origin', async () => {
  const nodes = ['node3', 'node4'].map((n) => variant(ws, n, `PROXY=${uncached.url}\n`))
  const url = web.url('/control.raw.gz')
  await createOnNodes(nodes, url)
  assert.is(web.hits('/control.raw.gz'), 2)
  assert.ok(await waitFor(() => uncached.results(url).length >= 2, 5000), uncached.accessLog())
  assert.equal(uncached.results(url), ['TCP_MISS/200', 'TCP_MISS/200'])
})

test('a rollout: four nodes at once (as gnt-cluster command prefetch does) through squid with collapsed_forwarding, one request to the origin', async () => {
  const nodes = ['node5', 'node6', 'node7', 'node8'].map((n) => variant(ws, n, `PROXY=${caching.url}\n`))
  // ~1 MiB/s from the origin: all four are asking while the first answer is still coming in
  const url = web.url('/slow/rollout.raw.gz')
  const runs = await Promise.all(nodes.map((node) => runAction(ws, 'create', ganetiEnv(ws, { OS_VARIANT: node, OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: sparseDisk(ws.dir, `${node}.img`, 8 * MiB) }), { timeoutMs: 30_000 })))
  for (const r of runs) assert.is(r.code, 0, r.output)
  for (const node of nodes) {
    assert.is(sha(readHead(join(ws.dir, `${node}.img`), image.length)), sha(image), `${node}: disk 0 differs from the image`)
    assert.is(entries(node).length, 1)
  }
  // all four went through squid; without collapsed_forwarding those asking before the
  // origin's headers arrive each go to the origin (2 or 3 of 4 here, when tried)
  assert.ok(await waitFor(() => caching.results(url).length === 4, 5000), caching.accessLog())
  assert.is(web.hits('/rollout.raw.gz'), 1, caching.accessLog())
})

test.run()
