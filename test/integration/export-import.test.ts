// export, import and rename as Ganeti runs them, on file and block disks; and the OS
// directory layout Ganeti checks.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { readFileSync, readdirSync, statSync, existsSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { workspace, ganetiEnv, runAction, sparseDisk, dirtyLoop, readHead, MiB, type Workspace } from './harness.js'

const test = suite('export, import, rename and layout')
let ws: Workspace

test.before(async () => {
  ws = await workspace()
})
test.after(() => ws.cleanup())

function filled(path: string, data: Buffer): string {
  writeFileSync(path, data)
  return path
}

for (const kind of ['file', 'block'] as const) {
  test(`export streams a ${kind} disk to stdout (nothing else) and its size to EXP_SIZE_FD`, async () => {
    const data = randomBytes(9 * MiB + 4096)
    let device = filled(join(ws.dir, `exp-${kind}.img`), data)
    if (kind === 'block') {
      const { execFileSync } = await import('node:child_process')
      device = execFileSync('losetup', ['--find', '--show', device]).toString().trim()
    }
    const r = await runAction(ws, 'export', ganetiEnv(ws, { EXPORT_DEVICE: device, EXPORT_DISK_PATH: device, EXPORT_INDEX: '0', DISK_0_PATH: device }), { sizeFd: true })
    if (kind === 'block') (await import('./harness.js')).detachLoop(device)
    assert.is(r.code, 0, r.output)
    assert.is(r.sizeFd, `${data.length}\n`)
    assert.ok(r.stdout.equals(data), 'stdout is not exactly the disk')
    assert.match(r.output, /exported 9\.0 MiB/)
  })

  test(`import writes stdin onto an existing ${kind} disk without truncating it, then syncs`, async () => {
    const data = randomBytes(5 * MiB + 512)
    const device = kind === 'file' ? sparseDisk(ws.dir, 'imp.img', 16 * MiB) : dirtyLoop(ws.dir, 'imp-block.img', 16 * MiB)
    const r = await runAction(ws, 'import', ganetiEnv(ws, { IMPORT_DEVICE: device, IMPORT_DISK_PATH: device, IMPORT_INDEX: '0' }), { stdin: data })
    assert.is(r.code, 0, r.output)
    assert.ok(readHead(device, data.length).equals(data))
    if (kind === 'file') assert.is(statSync(device).size, 16 * MiB, 'import changed the file size')
    else assert.ok([0, 0x5a].includes(readHead(device, 1, 16 * MiB - 1)[0]), 'past the stream: untouched or zeroed')
    assert.match(r.output, /imported 5\.0 MiB .*synced/)
  })
}

test('export then import round-trips a disk byte for byte', async () => {
  const data = randomBytes(6 * MiB)
  const source = filled(join(ws.dir, 'round-src.img'), data)
  const exp = await runAction(ws, 'export', ganetiEnv(ws, { EXPORT_DEVICE: source, EXPORT_INDEX: '0' }))
  const dest = dirtyLoop(ws.dir, 'round-dst.img', 6 * MiB)
  const imp = await runAction(ws, 'import', ganetiEnv(ws, { IMPORT_DEVICE: dest, IMPORT_INDEX: '0' }), { stdin: exp.stdout })
  assert.is(imp.code, 0, imp.output)
  assert.ok(readHead(dest, data.length).equals(data))
})

test('import enlarges the pipe it reads (as Ganeti gives it one); other stdin is left alone', async () => {
  const { spawnSync } = await import('node:child_process')
  const data = filled(join(ws.dir, 'pipe-src.img'), randomBytes(3 * MiB))
  for (const [how, want] of [['cat "$SRC" | ./import', /pipe on descriptor 0 enlarged to 1048576 bytes/], ['./import < "$SRC"', /descriptor 0: pipe size left as it is/]] as const) {
    const device = sparseDisk(ws.dir, 'pipe-dst.img', 4 * MiB)
    const env = { ...ganetiEnv(ws, { IMPORT_DEVICE: device, IMPORT_INDEX: '0', DEBUG_LEVEL: '1' }), SRC: data }
    const r = spawnSync('bash', ['-c', how], { cwd: ws.osDir, env, encoding: 'utf8' })
    assert.is(r.status, 0, r.stderr)
    assert.match(r.stderr, want)
    assert.ok(readHead(device, 3 * MiB).equals(readFileSync(data)), `${how}: disk differs`)
  }
})

test('import refuses a missing device and a stream larger than the disk', async () => {
  let r = await runAction(ws, 'import', ganetiEnv(ws, { IMPORT_DEVICE: join(ws.dir, 'absent.img'), IMPORT_INDEX: '0' }), { stdin: Buffer.alloc(10) })
  assert.is(r.code, 1)
  assert.match(r.lastLine, /^import failed: disk 0 .*absent\.img.* cannot be opened/)
  assert.not.ok(existsSync(join(ws.dir, 'absent.img')), 'import created the target')
  r = await runAction(ws, 'import', ganetiEnv(ws, { IMPORT_DEVICE: sparseDisk(ws.dir, 'tiny.img', MiB), IMPORT_INDEX: '0' }), { stdin: Buffer.alloc(2 * MiB, 1) })
  assert.is(r.code, 1)
  assert.match(r.lastLine, /larger than/)
  r = await runAction(ws, 'export', ganetiEnv(ws, { EXPORT_DEVICE: undefined }))
  assert.is(r.code, 1)
  assert.match(r.lastLine, /EXPORT_DEVICE is not set/)
  assert.is(r.stdout.length, 0)
})

test('rename succeeds and changes nothing', async () => {
  const r = await runAction(ws, 'rename', ganetiEnv(ws, { OLD_INSTANCE_NAME: 'old.example.org', INSTANCE_NAME: 'new.example.org' }))
  assert.is(r.code, 0)
  assert.match(r.output, /renamed from old\.example\.org to new\.example\.org/)
})

test('OS directory layout: what Ganeti 3.0 checks', () => {
  const names = readdirSync(ws.osDir).sort()
  assert.equal(names, ['create', 'export', 'ganeti_api_version', 'import', 'parameters.list', 'rename', 'variants.list', 'verify'])
  for (const action of ['create', 'export', 'import', 'rename', 'verify']) {
    const st = statSync(join(ws.osDir, action))
    assert.ok(st.isFile())
    assert.is(st.mode & 0o777, 0o755, `${action} mode`)
    assert.match(readFileSync(join(ws.osDir, action), 'utf8').split('\n')[0], /^#!\/\S*node$/, `${action} names node by absolute path`)
  }
  assert.is(readFileSync(join(ws.osDir, 'ganeti_api_version'), 'utf8'), '20\n')
  const variants = readFileSync(join(ws.osDir, 'variants.list'), 'utf8')
  assert.match(variants, /^default\n/)
  const params = readFileSync(join(ws.osDir, 'parameters.list'), 'utf8')
  assert.ok(params.endsWith('\n'))
  const lines = params.slice(0, -1).split('\n')
  assert.equal(lines.map((l) => l.split(' ')[0]), ['image', 'image_type', 'image_checksum', 'ssh_authorized_keys', 'user_data', 'dns_nameservers', 'dns_search'])
  for (const line of lines) {
    assert.match(line, /^[a-z_]+ \S.*$/, 'parameters.list: "name description", no blank lines or comments')
    assert.not.match(line, /^#/)
  }
  assert.not.ok(existsSync(join(ws.osDir, 'create_untrusted')), 'create_untrusted would make Ganeti use a helper VM')
  for (const f of ['ganeti_api_version', 'variants.list', 'parameters.list']) assert.is(statSync(join(ws.osDir, f)).mode & 0o777, 0o644)
  assert.not.ok(existsSync(join(ws.osDir, 'node_modules')) || existsSync(join(ws.osDir, 'package.json')))
})

test.run()
