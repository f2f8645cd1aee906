#!/usr/bin/env node
// npm run deb: builds ganeti-instance-simpleimage_<version>_all.deb in the repository root
// with dpkg-deb, the way Ganeti OS providers ship on Debian:
//   /usr/share/ganeti/os/simpleimage/         the five bundled scripts (#!/usr/bin/node),
//                                             ganeti_api_version, parameters.list and
//                                             variants.list -> /etc/ganeti/instance-simpleimage/variants.list
//   /etc/ganeti/instance-simpleimage/         variants.list and default/config (conffiles),
//                                             default/hooks/
//   /usr/sbin/simpleimage-cache               the operator's command (bundled as the scripts)
//   /usr/share/man/man7/, man8/               the pages in packaging/man/ (gzipped)
//   /usr/share/doc/ganeti-instance-simpleimage/   copyright, changelog.gz, README,
//                                             examples/hooks/ (from example-hooks/)
// Static packaging files live in packaging/debian/, the man pages in packaging/man/. Options:
//   --out DIR       where the .deb goes (default: the repository root)
//   --lintian       run lintian on the result and fail on errors and warnings
//   --keep-staging  leave the staging tree in place and print its path
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, lutimes, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { copyrightText } from './copyright.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const debianDir = join(root, 'packaging', 'debian')
const manDir = join(root, 'packaging', 'man')

export const PACKAGE = 'ganeti-instance-simpleimage'
export const OS_NAME = 'simpleimage'
export const OS_DIR = `/usr/share/ganeti/os/${OS_NAME}`
export const CONFIG_DIR = '/etc/ganeti/instance-simpleimage'
export const DOC_DIR = `/usr/share/doc/${PACKAGE}`
export const SBIN_DIR = '/usr/sbin'
export const MAN_DIR = '/usr/share/man'
export const NODE = '/usr/bin/node'
export const ACTIONS = ['create', 'import', 'export', 'rename', 'verify']
/** The operator's commands: installed in SBIN_DIR, each with a page in packaging/man/. */
export const COMMANDS = ['simpleimage-cache']

/** The newest changelog entry: its version, its maintainer (the package's Maintainer) and
 *  its date (the time stamp of every file in the package). */
function parseChangelog(text) {
  const head = /^(\S+) \(([^)]+)\) [^;]+; urgency=\S+$/m.exec(text)
  const trailer = /^ -- (.+ <[^>]+>) {2}(.+)$/m.exec(text)
  if (!head || !trailer) throw new Error('packaging/debian/changelog: cannot read its newest entry (Debian changelog format)')
  const date = Date.parse(trailer[2])
  if (!Number.isFinite(date)) throw new Error(`packaging/debian/changelog: bad date '${trailer[2]}'`)
  return { source: head[1], version: head[2], maintainer: trailer[1], epoch: Math.floor(date / 1000) }
}

function parseArgs(argv) {
  const opts = { out: root, lintian: false, keepStaging: false }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && argv[i + 1]) opts.out = argv[++i]
    else if (argv[i] === '--lintian') opts.lintian = true
    else if (argv[i] === '--keep-staging') opts.keepStaging = true
    else throw new Error(`unknown argument ${argv[i]}; usage: build-deb.mjs [--out DIR] [--lintian] [--keep-staging]`)
  }
  return opts
}

// ----------------------------------------------------------------- third-party notices

/** Where each bundle is installed: the OS scripts and the operator's commands. */
const BUNDLES = [...ACTIONS.map((name) => ({ name, where: OS_DIR })), ...COMMANDS.map((name) => ({ name, where: `${SBIN_DIR}/${name}` }))]

// ----------------------------------------------------------------- staging

async function put(stage, path, content, mode) {
  const full = join(stage, path)
  await mkdir(dirname(full), { recursive: true })
  await writeFile(full, content)
  await chmod(full, mode)
}

async function walk(dir) {
  const out = []
  for (const name of (await readdir(dir)).sort()) {
    const full = join(dir, name)
    const st = await lstat(full)
    out.push({ full, st })
    if (st.isDirectory()) out.push(...(await walk(full)))
  }
  return out
}

/** A bundle as installed: its #! line names Debian's node, which the package depends on,
 *  not whichever node comes first in the PATH of Ganeti or of the operator. */
async function nodeScript(name) {
  const code = await readFile(join(root, 'dist', name), 'utf8')
  if (!code.startsWith('#!')) throw new Error(`dist/${name} has no #! line`)
  return code.replace(/^#!.*\n/, `#!${NODE}\n`)
}

/** packaging/man/<name>.<section> with @VERSION@ and @DATE@ (the changelog's, so that the
 *  pages are reproducible) filled in, gzipped as dh_installman does (-9n: no name, no time). */
async function manPages(changelog, version) {
  const date = new Date(changelog.epoch * 1000).toISOString().slice(0, 10)
  const pages = []
  for (const file of (await readdir(manDir)).filter((f) => /^[a-z0-9][a-z0-9.+-]*\.[1-9]$/.test(f)).sort()) {
    const text = (await readFile(join(manDir, file), 'utf8')).replaceAll('@VERSION@', version).replaceAll('@DATE@', date)
    const left = /@[A-Z_]+@/.exec(text)
    if (left) throw new Error(`packaging/man/${file}: unreplaced ${left[0]}`)
    pages.push({ path: `${MAN_DIR}/man${file.slice(-1)}/${file}.gz`, content: gzipSync(Buffer.from(text), { level: 9 }) })
  }
  // as lintian's no-manual-page asks: every command in /usr/sbin has its page
  for (const command of COMMANDS) {
    if (!pages.some((p) => /\/man8\/(.+)\.8\.gz$/.exec(p.path)?.[1] === command)) throw new Error(`packaging/man/${command}.8 is missing: every command in ${SBIN_DIR} needs a man page`)
  }
  return pages
}

async function stageTree(stage, changelog, version) {
  // the OS directory
  for (const action of ACTIONS) await put(stage, `${OS_DIR}/${action}`, await nodeScript(action), 0o755)
  for (const file of ['ganeti_api_version', 'parameters.list']) {
    await put(stage, `${OS_DIR}/${file}`, await readFile(join(root, file)), 0o644)
  }
  // variants.list is the operator's to edit (one line per variant they configure), so it is
  // a conffile in /etc and the OS directory links to it, as ganeti-instance-debootstrap does.
  await put(stage, `${CONFIG_DIR}/variants.list`, await readFile(join(root, 'variants.list')), 0o644)
  await symlink(`${CONFIG_DIR}/variants.list`, join(stage, OS_DIR, 'variants.list'))

  // the default variant's configuration and (empty) hooks directory
  await put(stage, `${CONFIG_DIR}/default/config`, await readFile(join(root, 'packaging', 'variant-config.template')), 0o644)
  await mkdir(join(stage, CONFIG_DIR, 'default', 'hooks'), { recursive: true })

  // the operator's commands
  for (const command of COMMANDS) await put(stage, `${SBIN_DIR}/${command}`, await nodeScript(command), 0o755)

  // documentation
  for (const page of await manPages(changelog, version)) await put(stage, page.path, page.content, 0o644)
  await put(stage, `${DOC_DIR}/copyright`, await copyrightText(root, debianDir, BUNDLES, OS_DIR), 0o644)
  await put(stage, `${DOC_DIR}/changelog.gz`, gzipSync(await readFile(join(debianDir, 'changelog')), { level: 9 }), 0o644)
  if (existsSync(join(root, 'README.md'))) {
    const readme = await readFile(join(root, 'README.md'))
    // as dh_compress does: documentation over 4 KiB is compressed
    if (readme.length > 4096) await put(stage, `${DOC_DIR}/README.md.gz`, gzipSync(readme, { level: 9 }), 0o644)
    else await put(stage, `${DOC_DIR}/README.md`, readme, 0o644)
  }
  const hooksSrc = join(root, 'example-hooks')
  const hooks = existsSync(hooksSrc) ? (await readdir(hooksSrc)).filter((n) => !n.startsWith('.')).sort() : []
  for (const name of hooks) {
    const src = join(hooksSrc, name)
    const st = await stat(src)
    if (!st.isFile()) continue
    await put(stage, `${DOC_DIR}/examples/hooks/${name}`, await readFile(src), st.mode & 0o111 ? 0o755 : 0o644)
  }
  if (existsSync(join(debianDir, 'lintian-overrides'))) {
    await put(stage, `/usr/share/lintian/overrides/${PACKAGE}`, await readFile(join(debianDir, 'lintian-overrides')), 0o644)
  }

  // control area
  const files = await walk(stage)
  for (const { full, st } of files) if (st.isDirectory()) await chmod(full, 0o755)
  const conffiles = files
    .filter(({ full, st }) => st.isFile() && full.startsWith(join(stage, 'etc') + '/'))
    .map(({ full }) => '/' + relative(stage, full))
  let md5 = ''
  let kib = 0
  for (const { full, st } of files) {
    const rel = relative(stage, full)
    if (st.isFile()) {
      kib += Math.ceil(st.size / 1024)
      // as dh_md5sums does: conffiles are tracked by dpkg itself, not listed here
      if (!conffiles.includes('/' + rel)) md5 += `${createHash('md5').update(await readFile(full)).digest('hex')}  ${rel}\n`
    } else {
      kib += 1 // directories and symlinks, as dpkg-gencontrol counts them
    }
  }
  const control = (await readFile(join(debianDir, 'control.in'), 'utf8'))
    .replace('@VERSION@', version)
    .replace('@MAINTAINER@', changelog.maintainer)
    .replace('@INSTALLED_SIZE@', String(kib))
  if (/@[A-Z_]+@/.test(control)) throw new Error(`packaging/debian/control.in: unreplaced ${/@[A-Z_]+@/.exec(control)[0]}`)
  await put(stage, 'DEBIAN/control', control, 0o644)
  await put(stage, 'DEBIAN/conffiles', conffiles.join('\n') + '\n', 0o644)
  await put(stage, 'DEBIAN/md5sums', md5, 0o644)
  await put(stage, 'DEBIAN/postrm', await readFile(join(debianDir, 'postrm')), 0o755)
  await chmod(join(stage, 'DEBIAN'), 0o755)

  // reproducible: every mtime is the newest changelog entry's date (dpkg-deb clamps to it)
  const when = new Date(changelog.epoch * 1000)
  for (const { full } of [...(await walk(stage)), { full: stage }].reverse()) await lutimes(full, when, when).catch(() => utimes(full, when, when))
  return { conffiles, kib }
}

export async function buildDeb(opts = {}) {
  const { out = root, lintian = false, keepStaging = false, quiet = false } = opts
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  const version = pkg.version
  if (!/^[0-9][A-Za-z0-9.+~]*$/.test(version)) throw new Error(`package.json version '${version}' is not a valid native Debian version`)
  const changelog = parseChangelog(await readFile(join(debianDir, 'changelog'), 'utf8'))
  if (changelog.source !== PACKAGE || changelog.version !== version) {
    throw new Error(`packaging/debian/changelog starts with ${changelog.source} (${changelog.version}) but package.json says ${version}: add an entry for ${PACKAGE} (${version}) at its top`)
  }

  // esbuild names each bundled module in a comment by its path relative to the working
  // directory it saw when it was loaded: load it (through build.mjs) from the repository
  // root, so that the bundles and the .deb are the same wherever this runs, and
  // bundledPackages() finds the node_modules paths
  const cwd = process.cwd()
  process.chdir(root)
  try {
    const { ACTIONS: built, COMMANDS: builtCommands = [], buildAll } = await import('../build.mjs')
    if (built.join() !== ACTIONS.join()) throw new Error(`build.mjs builds ${built.join(', ')}, build-deb.mjs packages ${ACTIONS.join(', ')}: update ACTIONS here`)
    if (builtCommands.join() !== COMMANDS.join()) throw new Error(`build.mjs builds the commands ${builtCommands.join(', ') || '(none)'}, build-deb.mjs packages ${COMMANDS.join(', ')}: update COMMANDS here`)
    await buildAll({ quiet: true })
  } finally {
    process.chdir(cwd)
  }
  const stage = await mkdtemp(join(tmpdir(), `${PACKAGE}-deb-`))
  try {
    await chmod(stage, 0o755)
    const { conffiles, kib } = await stageTree(stage, changelog, version)
    await mkdir(out, { recursive: true })
    const deb = join(out, `${PACKAGE}_${version}_all.deb`)
    const env = { ...process.env, SOURCE_DATE_EPOCH: String(changelog.epoch) }
    const r = spawnSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { env, encoding: 'utf8' })
    if (r.error) throw new Error(`dpkg-deb could not be run (${r.error.message}); install dpkg`)
    if (r.status !== 0) throw new Error(`dpkg-deb failed: ${(r.stderr || r.stdout).trim()}`)
    if (!quiet) console.log(`built ${relative(process.cwd(), deb) || deb} (${kib} KiB installed; conffiles: ${conffiles.join(', ')})`)
    if (lintian) {
      // (lintian leaves a temporary file behind in TMPDIR: give it one that is removed)
      const l = spawnSync('lintian', ['--info', '--display-info', '--fail-on', 'error,warning', deb], { stdio: 'inherit', env: { ...process.env, TMPDIR: stage } })
      if (l.error) throw new Error(`lintian could not be run (${l.error.message}); apt-get install lintian`)
      if (l.status !== 0) throw new Error(`lintian found problems in ${deb} (exit ${l.status})`)
      if (!quiet) console.log('lintian: no errors or warnings')
    }
    return deb
  } finally {
    if (keepStaging) console.log(`staging tree kept in ${stage}`)
    else await rm(stage, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    await buildDeb(parseArgs(process.argv.slice(2)))
  } catch (err) {
    console.error(`build-deb failed: ${err.message}`)
    process.exit(1)
  }
}
