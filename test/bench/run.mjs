#!/usr/bin/env node
// npm run bench: this provider's create/export/import against the original provider's
// shell pipelines and against the limits (dd of the raw image, the decompressor alone), on
// one machine in one run, for the targets of issue 4; then the cold path of issue 15 (cold.mjs:
// shaped links, parallel creates; --focus cold runs it alone). See HELP, RESULTS.md and
// RESULTS-cold.md for output.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FORMATS, describe, ensureImages } from './image.mjs'
import { FileTarget, ImageRef, LoopTarget, killRunning, timed } from './measure.mjs'
import { makeRunner } from './runner.mjs'
import { startServer } from './server.mjs'
import { writeLimits, decoderLimits, exportCells, exportCheck, importCells, oursCreate, pipeline, pipelineFromUrl, startup } from './sides.mjs'
import { machine, providerVersion, report } from './report.mjs'
import { reportCold } from './report-cold.mjs'
import { runCold } from './cold.mjs'
import { HELP, options } from './options.mjs'
import { have, log, q, sh } from './util.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
const REPO = resolve(HERE, '../..')

function preflight(o) {
  if (process.getuid?.() !== 0) throw new Error('run as root: loop devices and /proc/sys/vm/drop_caches need it')
  const needs = { ...(o.cold && o.links.length ? { ip: 'iproute2', tc: 'iproute2' } : {}), '/usr/bin/time': 'time', 'qemu-img': 'qemu-utils', xz: 'xz-utils', bzip2: 'bzip2', gzip: 'gzip', zstd: 'zstd', curl: 'curl', mke2fs: 'e2fsprogs', sfdisk: 'fdisk', losetup: 'mount', blkdiscard: 'util-linux', cmp: 'diffutils' }
  const missing = Object.entries(needs).filter(([tool]) => !have(tool))
  if (missing.length) throw new Error(`missing ${missing.map(([t]) => t).join(', ')}: apt-get install ${[...new Set(missing.map(([, p]) => p))].join(' ')}`)
}

/** Everything that must go away at the end, also on Ctrl-C and SIGTERM. */
const cleanups = []
function cleanupAll() {
  killRunning()
  while (cleanups.length) {
    try {
      cleanups.pop()()
    } catch (err) {
      log(`cleanup: ${err.message}`)
    }
  }
}

/** One bench at a time per work dir: two would share the images (one rebuilding what the
 *  other reads) and disturb each other's timings. A lock left by a dead run is taken over. */
function lock(dir) {
  try {
    mkdirSync(dir)
  } catch (err) {
    if (err.code !== 'EEXIST') throw err
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8').trim() || 0)
    let alive = false
    try {
      alive = pid > 0 && (process.kill(pid, 0), true)
    } catch {
      // no such process: the lock is stale
    }
    if (alive) throw new Error(`another bench (pid ${pid}) is running with work dir ${dirname(dir)}`)
  }
  writeFileSync(join(dir, 'pid'), `${process.pid}\n`)
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
}

async function main() {
  const o = options(process.argv.slice(2), HERE)
  if (o.help) return void console.log(HELP)
  if (o.reportOnly) {
    const results = JSON.parse(readFileSync(o.reportOnly, 'utf8'))
    return void (results.links ? reportCold(results, o.out) : report(results, o.out))
  }
  preflight(o)
  const began = Date.now()
  const provider = providerVersion()
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => (log(`${sig}: cleaning up`), cleanupAll(), process.exit(sig === 'SIGINT' ? 130 : 143)))
  if (o.build) sh('node build.mjs', { cwd: REPO })
  mkdirSync(o.work, { recursive: true })
  lock(join(o.work, 'lock'))
  // --clean removes only what the bench made (never a whole --work directory given by hand)
  if (o.clean) cleanups.unshift(() => {
    rmSync(join(o.work, `images-${o.size}M`), { recursive: true, force: true })
    rmSync(join(o.work, 'results-quick'), { recursive: true, force: true })
    if (readdirSync(o.work).length === 0) rmSync(o.work, { recursive: true })
  })
  const images = await ensureImages(o.work, o.size)
  const run = mkdtempSync(join(o.work, 'run-'))
  cleanups.push(() => rmSync(run, { recursive: true, force: true }))

  // the provider, installed as Ganeti finds it, with a variant whose cache we control
  const { installOsDir } = await import(join(REPO, 'packaging/install-os.mjs'))
  const ctx = { osDir: join(run, 'os', 'simpleimage'), configDir: join(run, 'etc'), variant: 'bench', cache: join(run, 'cache') }
  await installOsDir(ctx.osDir, realpathSync(process.execPath))
  mkdirSync(join(ctx.configDir, ctx.variant, 'hooks'), { recursive: true })
  writeFileSync(join(ctx.configDir, ctx.variant, 'config'), `IMAGE_STORAGE=${ctx.cache}\n`, { mode: 0o644 })
  const raw = images.path(FORMATS[0])
  const bytes = images.meta.bytes
  const ref = new ImageRef(raw, bytes)
  const clean = { PATH: '/sbin:/bin:/usr/sbin:/usr/bin', LC_ALL: 'C' }
  const setup = { o, images, ctx, ref, run, raw, bytes, clean, provider }
  let failed = 0
  if (o.focus !== 'cold') failed += await classic({ ...setup, load0, began })
  if (o.cold) {
    const cold = await runCold({ ...setup, cleanups })
    cold.machine = { ...machine(provider), loadBefore: load0, loadAfter: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') }
    cold.image = { shape: describe(images.meta), sizes: images.meta.sizes }
    cold.totalSeconds = Math.round((Date.now() - began) / 1000)
    mkdirSync(o.out, { recursive: true })
    writeFileSync(join(o.out, 'results-cold.json'), JSON.stringify(cold, null, 2) + '\n')
    reportCold(cold, o.out)
    log(`cold path done in ${cold.durationSeconds} s; ${cold.failures.length ? cold.failures.length + ' FAILURES' : 'every written disk equals the image'}; results in ${join(o.out, 'RESULTS-cold.md')}`)
    failed += cold.failures.length
  }
  log(`bench done in ${Math.round((Date.now() - began) / 1000)} s`)
  return failed ? 1 : 0
}

/** The full bench of issue 4: create from a path and from a URL (cold, warm) onto each
 *  target, export and import; RESULTS.md and results.json. Returns the failures' count. */
async function classic({ o, images, ctx, ref, run, raw, bytes, clean, provider, load0, began }) {
  const url = (await startServer(images.dir, { cleanups })).url
  const diskSize = bytes + 16 * 1048576 // disks are a little larger than the image, as in real use
  const targets = {}
  if (o.targets.includes('file')) targets.file = new FileTarget(join(run, 'disk.img'), diskSize)
  if (o.targets.includes('loop')) targets.loop = new LoopTarget(join(run, 'loop-backing.img'), diskSize)
  for (const t of Object.values(targets)) cleanups.push(() => t.release())
  const cells = []
  const loadSamples = [] // 1-min load average at the start of each group: other work shows here
  const failures = []
  const unsupported = new Set()
  const timeFile = join(run, 'time.out')
  const dl = join(run, 'download.tmp')
  const scratch = join(run, 'decoded.raw')
  const cacheEntries = () => (existsSync(ctx.cache) ? readdirSync(ctx.cache).filter((f) => f.endsWith('.image')) : [])

  const { cell, rounds } = makeRunner({ cells, failures, unsupported, raw, run, timeFile, env: clean })

  const targetNames = Object.keys(targets)
  for (const [ti, tname] of targetNames.entries()) {
    const disk = targets[tname]
    const onDisk = () => ref.same(disk.path)
    for (const fmt of o.formats) {
      const image = images.path(fmt)
      const u = url(fmt.file)
      const base = { format: fmt.key, target: tname, prepare: () => disk.prepare(), verify: onDisk }
      const group = []
      // ours from the path and from a warm cache run as a pair (see rounds()): on this kind of
      // virtual machine a run's time depends on what ran just before it, by more than the
      // 1.1x the warm cache is allowed, and both read the same way from a local file
      const local = []
      if (o.sources.includes('path')) local.push(cell({ ...base, source: 'path', side: 'ours', ...oursCreate(ctx, fmt, image, disk) }))
      if (o.sources.includes('url-warm')) {
        const ours = oursCreate(ctx, fmt, u, disk)
        // the entry is left by the previous round's cold run; fill it if that did not run
        const fill = async () => {
          if (cacheEntries().length !== 1) {
            rmSync(ctx.cache, { recursive: true, force: true })
            disk.prepare()
            await timed(ours.cmd, { ...ours, timeFile })
          }
          disk.prepare()
        }
        local.push(cell({ ...base, source: 'url-warm', side: 'ours', ...ours, prepare: fill, expect: /cache hit/i }))
      }
      if (local.length) group.push(local)
      // reading the cache entry, against reading the image file (raw's source limit): a
      // raw cache hit reads 1 GiB from another file than the path run does
      if (o.sources.includes('url-warm') && fmt.type === 'raw') group.push(cell({ format: 'raw', target: tname, side: 'read-cache', label: 'cat ENTRY > /dev/null (reading the cache entry)', cmd: `cat ${q(ctx.cache)}/*.image > /dev/null` }))
      if (o.sources.includes('path')) group.push(cell({ ...base, source: 'path', side: 'pipeline', cmd: pipeline(fmt, image, disk) }))
      if (o.sources.includes('url-cold')) {
        const emptyCache = () => (rmSync(ctx.cache, { recursive: true, force: true }), disk.prepare())
        group.push(cell({ ...base, source: 'url-cold', side: 'ours', ...oursCreate(ctx, fmt, u, disk), prepare: emptyCache, expect: /cache miss/i }))
        group.push(cell({ ...base, source: 'url-cold', side: 'pipeline', cmd: pipelineFromUrl(fmt, u, dl, disk), after: () => rmSync(dl, { force: true }) }))
      }
      // the limits: dd of the raw image onto this target, once per target (with raw)
      if (fmt.type === 'raw' || (fmt === o.formats[0] && !o.formats.some((f) => f.type === 'raw'))) {
        for (const w of writeLimits(raw, disk)) group.push(cell({ format: 'raw', target: tname, ...w, prepare: () => disk.prepare(), verify: onDisk }))
      }
      // decompressor alone, in every target's rounds: a machine shared with other work has
      // another load each minute, and a limit should meet the load of the runs it bounds.
      // The original's decompressor, the download and the start-up: once.
      if (ti === 0 && fmt === o.formats[0]) group.push(cell({ format: 'provider', ...startup(ctx) }))
      for (const d of decoderLimits(fmt, image, u, scratch, ti === 0, tname)) {
        const out = d.output
        group.push(cell({ format: fmt.key, target: ['decode', 'decode-pipe', 'decode-file'].includes(d.side) ? tname : undefined, ...d, prepare: () => rmSync(scratch, { force: true }), verify: out ? () => ref.same(out) : undefined, after: () => rmSync(scratch, { force: true }) }))
      }
      loadSamples.push(Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]))
      rmSync(ctx.cache, { recursive: true, force: true }) // the entry left is another format's
      await rounds(group, o.slowFormats.includes(fmt.key) ? o.slowRepeat : o.fastFormats.includes(fmt.key) ? o.fastRepeat : o.repeat)
    }
    if (o.exportImport) {
      // export: the disk as create wrote it (raw image from the path), read whole
      disk.prepare()
      const writeRaw = oursCreate(ctx, FORMATS[0], raw, disk)
      const setup = await timed(writeRaw.cmd, { ...writeRaw, timeFile })
      const sizeFile = join(run, 'export.size')
      const chk = exportCheck(ctx, disk, sizeFile)
      const ok = setup.code === 0 && !onDisk() && (await timed(chk.cmd, { ...chk, timeFile })).code === 0
      const sizeSaid = ok ? readFileSync(sizeFile, 'utf8').trim() : ''
      if (!ok || sizeSaid !== String(disk.size)) failures.push(`export on ${tname}: create, or export's stream (vs the disk), or its size fd ("${sizeSaid}" for ${disk.size}) went wrong`)
      // all export rounds first: import's dd truncates a file disk, which would change what export reads
      await rounds(exportCells(ctx, disk).map((c) => cell({ ...c, format: 'export', target: tname })), o.ioRepeat)
      await rounds(importCells(ctx, raw, disk).map((c) => cell({ ...c, format: 'import', target: tname, prepare: () => disk.prepare(), verify: onDisk })), o.ioRepeat)
    }
  }

  const results = {
    date: new Date().toISOString(), options: { sizeMiB: o.size, repeat: o.repeat, slowRepeat: o.slowRepeat, fastRepeat: o.fastRepeat, ioRepeat: o.ioRepeat, slowFormats: o.slowFormats, fastFormats: o.fastFormats, formats: o.formats.map((f) => f.key), targets: targetNames, sources: o.sources, ...(o.sources.includes('path') && o.sources.includes('url-warm') ? { pairs: 'ours from path and url-warm ran back to back, path first in rounds 0, 2, ...' } : {}) },
    machine: { ...machine(provider), loadBefore: load0, loadAfter: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), loadDuring: loadSamples },
    image: { shape: describe(images.meta), sizes: images.meta.sizes, meta: images.meta },
    durationSeconds: Math.round((Date.now() - began) / 1000),
    unsupported: [...unsupported], failures,
    cells: cells.map(({ env, prepare, verify, after, expect, cached, ...c }) => ({ ...c, ...(cached ? { imageInPageCache: true } : {}) })),
  }
  // the measurements first, so that nothing measured is lost if rendering the report fails
  mkdirSync(o.out, { recursive: true })
  writeFileSync(join(o.out, 'results.json'), JSON.stringify(results, null, 2) + '\n')
  report(results, o.out)
  log(`done in ${results.durationSeconds} s; ${failures.length ? failures.length + ' FAILURES' : 'every written disk equals the image'}; results in ${o.out}`)
  return failures.length
}

main().then(
  (code) => {
    cleanupAll()
    process.exitCode = code ?? 0
  },
  (err) => {
    cleanupAll()
    console.error(`bench failed: ${err.message}`)
    process.exitCode = 2
  },
)
