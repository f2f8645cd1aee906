// The .deb as it ships: built with packaging/build-deb.mjs (lintian clean, errors and
// warnings), holding the OS scripts and the operator's command with #!/usr/bin/node, and
// the man pages for the command and the provider. Needs dpkg-deb and lintian (CI installs
// both: test/setup-deps.sh).
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const test = suite('the .deb')
let dir: string
let deb: string
/** path -> mode string and size, from dpkg-deb -c */
const listing = new Map<string, { mode: string; size: number }>()

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'si-deb-'))
  // --lintian makes build-deb fail on any lintian error or warning (no-manual-page included)
  const r = spawnSync('node', [join(root, 'packaging', 'build-deb.mjs'), '--out', dir, '--lintian'], { encoding: 'utf8' })
  assert.is(r.status, 0, `build-deb failed:\n${r.stdout}${r.stderr}`)
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version
  deb = join(dir, `ganeti-instance-simpleimage_${version}_all.deb`)
  for (const line of execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8' }).trim().split('\n')) {
    const [mode, , size, , , path] = line.split(/\s+/)
    listing.set(path.replace(/^\./, ''), { mode, size: Number(size) })
  }
  execFileSync('dpkg-deb', ['-x', deb, join(dir, 'root')])
})
test.after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

test('/usr/sbin/simpleimage-cache is installed 0755, run by /usr/bin/node', () => {
  assert.equal(listing.get('/usr/sbin/simpleimage-cache')?.mode, '-rwxr-xr-x', 'in dpkg-deb -c')
  const code = readFileSync(join(dir, 'root', 'usr', 'sbin', 'simpleimage-cache'), 'utf8')
  assert.is(code.split('\n')[0], '#!/usr/bin/node')
  // the bundle itself (node_modules inside), not a wrapper that needs the source tree
  assert.match(code, /^\/\/ node_modules\//m)
})

test('the OS scripts are still installed as before', () => {
  for (const action of ['create', 'import', 'export', 'rename', 'verify']) {
    assert.equal(listing.get(`/usr/share/ganeti/os/simpleimage/${action}`)?.mode, '-rwxr-xr-x', action)
    assert.is(readFileSync(join(dir, 'root', 'usr', 'share', 'ganeti', 'os', 'simpleimage', action), 'utf8').split('\n')[0], '#!/usr/bin/node', action)
  }
})

test('both man pages are shipped gzipped, filled in, and format without warnings', () => {
  for (const [page, title] of [['/usr/share/man/man8/simpleimage-cache.8.gz', 'SIMPLEIMAGE-CACHE 8'], ['/usr/share/man/man7/ganeti-instance-simpleimage.7.gz', 'GANETI-INSTANCE-SIMPLEIMAGE 7']]) {
    assert.equal(listing.get(page)?.mode, '-rw-r--r--', page)
    const text = gunzipSync(readFileSync(join(dir, 'root', page))).toString()
    assert.match(text, new RegExp(`^\\.TH ${title} "\\d{4}-\\d{2}-\\d{2}" "ganeti-instance-simpleimage \\d`, 'm'), page)
    assert.not.match(text, /@[A-Z_]+@/, `${page}: a placeholder is left`)
    const man = spawnSync('man', ['--warnings', '-l', join(dir, 'root', page)], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80', LC_ALL: 'C.UTF-8' } })
    assert.is(man.status, 0, man.stderr)
    assert.is(man.stderr, '', `${page}: groff warnings`)
  }
})

test('the copyright file covers the modules bundled into the command too', () => {
  const copyright = readFileSync(join(dir, 'root', 'usr', 'share', 'doc', 'ganeti-instance-simpleimage', 'copyright'), 'utf8')
  const bundled = new Set([...readFileSync(join(dir, 'root', 'usr', 'sbin', 'simpleimage-cache'), 'utf8').matchAll(/^\/\/ node_modules\/((?:@[^/\s]+\/)?[^/\s]+)\//gm)].map((m) => m[1]))
  for (const name of bundled) assert.ok(copyright.includes(`Files: node_modules/${name}/*`), `${name} is bundled into simpleimage-cache but not in copyright`)
})

test.run()
