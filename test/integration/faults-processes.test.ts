// Nothing create starts outlives it, and no two writers share a disk: a create killed with
// SIGKILL while xz writes the disk file, SIGTERM while the variant config or a hook runs
// (and the children they started), a hook that leaves processes behind, two creates of
// one disk at once, and a file disk left shorter than DISK_0_SIZE.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { workspace, variant, ganetiEnv, runAction, makeImage, sparseDisk, dirtyFile, readHead, childrenOf, alive, comm, liveProcesses, waitFor, sleep, MiB, type Workspace } from './harness.js'

const test = suite('no child outlives create, one writer per disk')
let ws: Workspace
let img: ReturnType<typeof makeImage>

test.before(async () => {
  ws = await workspace()
  img = makeImage(ws.dir)
  // text-like data decodes slowly enough (about a second) for xz to be caught writing
  execFileSync('bash', ['-c', 'head -c 24M /dev/urandom | base64 -w0 | xz -0 -T0 > slow.xz'], { cwd: ws.dir })
})
test.after(() => ws.cleanup())

const env = (vars: Record<string, string | undefined>) => ganetiEnv(ws, vars)
// the background children are `tail -s N -f /dev/null`: they end only when killed, and N
// names them (a sleep here has been seen to return early); `run` makes the names of this
// run's processes its own, apart from any a failed earlier run left behind
const run = String(process.pid).padStart(7, '0')
const mark = (n: number) => `${n}.${run}`

test('SIGKILL while xz writes a file disk: xz dies with create; the reinstall right after gets the whole disk, alone', async () => {
  const disk = dirtyFile(ws.dir, 'killed.img', 40 * MiB)
  let pid = 0
  const running = runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, 'slow.xz'), OSP_IMAGE_TYPE: 'raw+xz', DISK_0_PATH: disk, DISK_0_SIZE: '40' }), { onStart: (p) => (pid = p) })
  let xz: number | undefined
  assert.ok(await waitFor(() => (xz = childrenOf(pid).find((c) => comm(c) === 'xz')) !== undefined), 'xz never started')
  await waitFor(() => statSync(disk).size > 2 * MiB) // xz is writing the emptied file
  process.kill(pid, 'SIGKILL')
  const killed = await running
  assert.is(killed.signal, 'SIGKILL')
  await sleep(100)
  const left = statSync(disk).size // short, unless xz had just finished
  // the reinstall, at once
  const r = await runAction(ws, 'create', env({ OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk, DISK_0_SIZE: '40', INSTANCE_REINSTALL: '1' }))
  assert.is(r.code, 0, r.output)
  assert.not.ok(alive(xz!), 'the killed create\'s xz still runs')
  if (left < 40 * MiB) assert.match(r.output, /was .*, shorter than DISK_0_SIZE: given its 40\.0 MiB back/)
  await sleep(500) // an orphaned xz would go on writing meanwhile
  assert.is(statSync(disk).size, 40 * MiB, 'the disk file is not its full size')
  assert.ok(readHead(disk, img.bytes.length).equals(img.bytes), 'disk 0 does not hold the reinstalled image')
})

test('a file disk shorter than DISK_0_SIZE gets its size back before anything else', async () => {
  const disk = sparseDisk(ws.dir, 'short.img', 32 * MiB)
  truncateSync(disk, 5 * MiB)
  const r = await runAction(ws, 'create', env({ OSP_IMAGE: join(ws.dir, img.files['raw+gz']), OSP_IMAGE_TYPE: 'raw+gz', DISK_0_PATH: disk, DISK_0_SIZE: '32' }))
  assert.is(r.code, 0, r.output)
  assert.is(statSync(disk).size, 32 * MiB)
  assert.ok(readHead(disk, img.bytes.length).equals(img.bytes))
})

test('two creates of one disk: the second waits for the first, which keeps its disk to itself', async () => {
  const seen = join(ws.dir, 'first-saw.txt')
  const head = img.bytes.subarray(0, 16).toString('hex')
  // the first create's hook looks at disk 0 twice, a second apart: nobody may write it meanwhile
  const v = variant(ws, 'slow-hook', '', {
    '10-look': `#!/bin/bash\nhead -c 16 "$DISK_0_PATH" | od -An -tx1 | tr -d ' \\n' > ${seen}\nsleep 1.5\necho >> ${seen}\nhead -c 16 "$DISK_0_PATH" | od -An -tx1 | tr -d ' \\n' >> ${seen}\n`,
  })
  const disk = sparseDisk(ws.dir, 'shared.img')
  const other = join(ws.dir, 'other.raw')
  writeFileSync(other, randomBytes(3 * MiB))
  const first = runAction(ws, 'create', env({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk }))
  assert.ok(await waitFor(() => liveProcesses(join(ws.configDir, v, 'hooks', '10-look')).length > 0), 'the first create\'s hook never ran')
  const second = await runAction(ws, 'create', env({ OSP_IMAGE: other, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk }))
  const a = await first
  assert.is(a.code, 0, a.output)
  assert.is(second.code, 0, second.output)
  assert.match(second.output, /disk 0 \(.*shared\.img\) is being written by create \(pid \d+\): waiting up to \d+ s/)
  assert.equal(readFileSync(seen, 'utf8').split('\n'), [head, head], 'disk 0 changed under the first create\'s hook')
  assert.ok(readHead(disk, 3 * MiB).equals(readFileSync(other)), 'the second create did not write its image')
})

const stoppedWhile: [string, () => string, number][] = [
  ['the variant config runs: bash and what it started', () => variant(ws, 'slow-config', `tail -s ${mark(91)} -f /dev/null > /dev/null 2>&1 &\nsleep ${mark(92)}\n`), 92],
  ['a hook runs: the hook and its background children', () => variant(ws, 'bg-hook', '', { '10-bg': `#!/bin/sh\ntail -s ${mark(93)} -f /dev/null > /dev/null 2>&1 &\nexec sleep ${mark(94)}\n` }), 94],
]
for (const [what, makeVariant, running] of stoppedWhile) {
  test(`SIGTERM while ${what} are stopped`, async () => {
    const v = makeVariant()
    let pid = 0
    const create = runAction(ws, 'create', env({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'stopped.img') }), { onStart: (p) => (pid = p) })
    assert.ok(await waitFor(() => pid !== 0 && liveProcesses(`sleep ${mark(running)}`).length > 0), 'it never ran')
    process.kill(pid, 'SIGTERM')
    const r = await create
    assert.is(r.code, 143, r.output)
    assert.match(r.lastLine, /interrupted by SIGTERM/)
    assert.ok(await waitFor(() => liveProcesses(`.${run}`).length === 0, 2000), `left running: ${liveProcesses(`.${run}`)}`)
  })
}

test('a variant config that leaves a process running (holding its output): it is stopped, create goes on', async () => {
  const v = variant(ws, 'leaky-config', `tail -s ${mark(96)} -f /dev/null &\n`)
  const r = await runAction(ws, 'create', env({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'leak-cfg.img') }), { timeoutMs: 30_000 })
  assert.not.ok(r.timedOut, 'create hung on the config\'s leftover')
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /the variant config .*leaky-config\/config left processes running: stopped them/)
  assert.equal(liveProcesses(mark(96)), [])
})

test('a hook that succeeds but leaves processes running: they are stopped, and the log says so', async () => {
  const v = variant(ws, 'leaky-hook', '', { '10-leak': `#!/bin/sh\ntail -s ${mark(95)} -f /dev/null > /dev/null 2>&1 &\nexit 0\n` })
  const r = await runAction(ws, 'create', env({ OS_VARIANT: v, OSP_IMAGE: img.raw, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: sparseDisk(ws.dir, 'leak.img') }))
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /hook 10-leak left processes running: stopped them/)
  assert.equal(liveProcesses(mark(95)), [])
})

test.run()
