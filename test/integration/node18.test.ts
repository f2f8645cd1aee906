// The bundles run on Debian 12's own nodejs 18 (test/support/node18.sh unpacks it beside
// the system node): create, verify, export and import, through an OS directory installed
// with --node pointing at it.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { workspace, variant, ganetiEnv, runAction, sparseDisk, readHead, MiB, type Workspace } from './harness.js'
import { startHttpServer, type TestServer } from '../support/http-server.js'

const NODE18 = process.env.NODE18 ?? '/opt/node18/node'
const test = suite('Debian 12 node 18')
let ws: Workspace
let web: TestServer

test.before(async () => {
  if (!existsSync(NODE18)) throw new Error(`${NODE18} is missing: run bash test/support/node18.sh (CI does)`)
  assert.match(execFileSync(NODE18, ['-v']).toString(), /^v18\./)
  ws = await workspace(NODE18)
  web = await startHttpServer({ root: ws.dir })
})
test.after(async () => {
  await web?.close()
  ws?.cleanup()
})

test('the installed scripts start with node 18', () => {
  assert.is(readFileSync(join(ws.osDir, 'create'), 'utf8').split('\n')[0], `#!${NODE18}`)
})

test('create from a URL (raw+xz), verify, export and import run on node 18', async () => {
  const data = Buffer.concat([randomBytes(2 * MiB), Buffer.alloc(3 * MiB)])
  writeFileSync(join(ws.dir, 'n18.raw'), data)
  execFileSync('xz', ['-k', join(ws.dir, 'n18.raw')])
  const url = web.url('/n18.raw.xz')
  const disk = sparseDisk(ws.dir, 'n18-disk.img', 8 * MiB)
  const v = await runAction(ws, 'verify', ganetiEnv(ws, { OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw+xz' }))
  assert.is(v.code, 0, v.output)
  const c = await runAction(ws, 'create', ganetiEnv(ws, { OSP_IMAGE: url, OSP_IMAGE_TYPE: 'raw+xz', DISK_0_PATH: disk, OS_VARIANT: variant(ws, 'n18') }))
  assert.is(c.code, 0, c.output)
  assert.ok(readHead(disk, data.length).equals(data))
  const e = await runAction(ws, 'export', ganetiEnv(ws, { EXPORT_DEVICE: disk, EXPORT_INDEX: '0' }), { sizeFd: true })
  assert.is(e.code, 0, e.output)
  assert.is(e.sizeFd, `${8 * MiB}\n`)
  const target = sparseDisk(ws.dir, 'n18-import.img', 8 * MiB)
  const i = await runAction(ws, 'import', ganetiEnv(ws, { IMPORT_DEVICE: target, IMPORT_INDEX: '0' }), { stdin: e.stdout })
  assert.is(i.code, 0, i.output)
  assert.ok(readHead(target, 8 * MiB).equals(readHead(disk, 8 * MiB)))
})

test.run()
