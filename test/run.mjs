#!/usr/bin/env node
// npm test: type-check, build, then every suite; each suite's result is summed into the
// closing line "N passed, N failed" that CI reads.
//   SIMPLEIMAGE_SKIP_INTEGRATION=1  skip the suites that need root and loop devices
//   SIMPLEIMAGE_SKIP_GANETI=1       skip the end-to-end suite on a real Ganeti cluster
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'

const env = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }
const isRoot = process.getuid?.() === 0
const results = []

function run(cmd, args) {
  return new Promise((resolve) => {
    let out = ''
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    const take = (stream, sink) => stream.on('data', (b) => { out += b; sink.write(b) })
    take(child.stdout, process.stdout)
    take(child.stderr, process.stderr)
    child.on('close', (code) => resolve({ code, out }))
  })
}

/** uvu prints Total/Passed/Skipped; anything else ends with "N passed, N failed". */
function count(out, code) {
  const num = (label) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(out)?.[1] ?? NaN)
  const [total, passed, skipped] = [num('Total'), num('Passed'), num('Skipped') || 0]
  if (Number.isFinite(total) && Number.isFinite(passed)) return { passed, failed: total - passed - skipped + (code !== 0 && total === passed + skipped ? 1 : 0) }
  const m = [...out.matchAll(/^(\d+) passed, (\d+) failed/gm)].pop()
  if (m) return { passed: Number(m[1]), failed: Number(m[2]) + (code !== 0 && m[2] === '0' ? 1 : 0) }
  return code === 0 ? { passed: 1, failed: 0 } : { passed: 0, failed: 1 }
}

async function suite(name, cmd, args) {
  console.log(`\n=== ${name}`)
  const { code, out } = await run(cmd, args)
  const r = count(out, code)
  results.push({ name, ...r })
  console.log(`=== ${name}: ${r.passed} passed, ${r.failed} failed`)
}

function skip(name, why) {
  console.log(`\n=== ${name}: skipped (${why})`)
  results.push({ name, passed: 0, failed: 0, skipped: why })
}

await suite('typecheck (tsc)', 'npx', ['tsc', '--noEmit', '-p', '.'])
await suite('build', 'node', ['build.mjs'])
await suite('unit', 'npx', ['uvu', '-r', 'tsx', 'test/unit', '.test.ts$'])
if (process.env.SIMPLEIMAGE_SKIP_INTEGRATION === '1') skip('integration', 'SIMPLEIMAGE_SKIP_INTEGRATION=1')
else if (!isRoot) skip('integration', 'needs root for loop devices')
else await suite('integration', 'npx', ['uvu', '-r', 'tsx', 'test/integration', '.test.ts$'])
if (process.env.SIMPLEIMAGE_SKIP_GANETI === '1') skip('ganeti end-to-end', 'SIMPLEIMAGE_SKIP_GANETI=1')
else if (!isRoot) skip('ganeti end-to-end', 'needs root')
else if (!existsSync('test/e2e/run.sh')) skip('ganeti end-to-end', 'test/e2e/run.sh not present')
else await suite('ganeti end-to-end', 'bash', ['test/e2e/run.sh'])

console.log('\n=== summary')
for (const r of results) console.log(`${r.name}: ${r.skipped ? `skipped (${r.skipped})` : `${r.passed} passed, ${r.failed} failed`}`)
const passed = results.reduce((n, r) => n + r.passed, 0)
const failed = results.reduce((n, r) => n + r.failed, 0)
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
