// Turns the measured cells into the comparison table, the issue's targets with pass/miss and
// what limited each one, and writes RESULTS.md and results.json.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parallelBzip2 } from './sides.mjs'
import { f2, mdTable, median, stats, trySh } from './util.mjs'
import { coldLoopbackRows, coldLoopbackTable, GOALS } from './report-cold.mjs'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const first = (cmd) => (trySh(cmd) ?? '').split('\n')[0].trim() || 'not installed'

export function machine(provider) {
  return {
    nproc: Number(first('nproc')),
    cpu: cpus()[0]?.model ?? first("grep -m1 'model name' /proc/cpuinfo"),
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    kernel: first('uname -r'),
    os: first('. /etc/os-release && echo "$PRETTY_NAME"'),
    node: process.version,
    provider,
    // a VM's balloon handing freed pages back to the host: see the note in RESULTS.md
    freePageReporting: existsSync('/sys/module/page_reporting'),
    tools: {
      xz: first('xz --version'), gzip: first('gzip --version'),
      bzip2: first('bzip2 --help 2>&1 | grep -i version'), lbzip2: first('lbzip2 --version 2>&1'), pbzip2: first('command -v pbzip2 >/dev/null && pbzip2 --version 2>&1 | head -1'),
      zstd: first('zstd --version'), 'qemu-img': first('qemu-img --version'), curl: first('curl --version'), dd: first('dd --version'),
    },
  }
}

/** Which provider is measured: the commit, and whether lib/ or scripts/ differ from it.
 *  Taken when the bench starts: a commit made while it runs was not measured. */
export const providerVersion = () =>
  `commit ${first(`git -C '${REPO}' rev-parse --short HEAD`)}` + (trySh(`git -C '${REPO}' status --porcelain -- lib scripts build.mjs`) ? ' + uncommitted changes in lib/ or scripts/' : '')


/** Whether create reads this format through a pipe from its decompressor: always from a
 *  download, and onto a block device; onto a file xz and zstd write the disk themselves. */
const throughPipe = (format, source, target) => format !== 'raw+gz' && (source === 'url-cold' || target === 'loop' || format === 'raw+bzip2')

/** Rows of the create table with their limit: the slowest of what any writer must do
 *  (write the raw image with dd, decode the image, download it for a cold URL run). */
export function rows(results) {
  const find = (p) => results.cells.find((c) => Object.entries(p).every(([k, v]) => c[k] === v))
  const out = []
  for (const format of results.options.formats) {
    for (const source of results.options.sources) {
      for (const target of results.options.targets) {
        const ours = find({ format, source, target, side: 'ours' })
        // a cache hit of the original provider is its pipeline on the cached file: the path run
        const pipe = find({ format, source: source === 'url-warm' ? 'path' : source, target, side: 'pipeline' })
        // the disk alone (the faster of writing everything and, on a sparse file, skipping
        // zero blocks), the source alone (decompressor, or reading the raw file), the download
        const disk = [stats(find({ format: 'raw', target, side: 'write-cached' })), stats(find({ format: 'raw', target, side: 'write-sparse' }))].filter(Boolean)
        const decoded = stats(find({ format, side: 'decode', target }) ?? find({ format, side: 'decode' }))
        const parts = { disk: disk.length ? disk.reduce((a, b) => (b.s < a.s ? b : a)) : null, source: decoded }
        if (throughPipe(format, source, target)) parts.pipe = stats(find({ format, side: 'decode-pipe', target }))
        // xz and zstd write a file disk themselves: their own writing and sync is the limit
        if (target === 'file' && source !== 'url-cold') parts.file = stats(find({ format, side: 'decode-file', target }))
        // a raw cache hit reads the cache entry, not the image file
        if (source === 'url-warm' && format === 'raw') parts.source = stats(find({ format, side: 'read-cache', target })) ?? parts.source
        if (source === 'url-cold') parts.download = stats(find({ format, side: 'download' }))
        const known = Object.entries(parts).filter(([, v]) => v)
        const [bound, lim] = known.length ? known.reduce((a, b) => (b[1].s > a[1].s ? b : a)) : ['', { s: NaN }]
        const o = stats(ours), p = stats(pipe)
        const status = results.unsupported.includes(format) ? 'unsupported' : ours?.error ? 'failed' : o ? 'ok' : 'not run'
        out.push({ format, source, target, status, ours: o?.s, pipeline: p?.s, oursRange: o && [o.min, o.max], fastest: o && p ? o.min / p.min : null, limit: lim.s, bound, limitParts: Object.fromEntries(known.map(([k, v]) => [k, v.s])), oursPipeline: o && p ? o.s / p.s : null, oursLimit: o ? o.s / lim.s : null, rssMiB: o?.rss, runs: o?.n })
      }
    }
  }
  return out
}

/** What stood in the way: is the goal reachable at all, and is ours at the limit? */
function why(row, goal, start) {
  if (!row || row.ours == null) return row?.status ?? 'not measured'
  const parts = Object.entries(row.limitParts).map(([k, v]) => `${k} ${f2(v)} s`).join(', ')
  let text
  if (row.ours < row.limit * 0.85) text = `below the limit measured alone (${parts}): ours does less than that command (zero blocks not written) or met less load`
  else if (row.limit / row.pipeline > goal) text = row.oursPipeline > goal
    ? `unreachable here: the limit (${row.bound}-bound; ${parts}) is already ${f2(row.limit / row.pipeline)}× the pipeline; ours ${f2(row.ours)} s`
    : `met, though the limit measured alone (${row.bound}-bound; ${parts}) is ${f2(row.limit / row.pipeline)}× the pipeline: ours ${f2(row.ours)} s came in under it`
  else if (row.ours <= row.limit * 1.15) text = `at the limit: ${row.bound}-bound (${parts}; ours ${f2(row.ours)} s)`
  else text = `ours ${f2(row.ours)} s is ${f2(row.oursLimit)}× the limit (${parts})${gap(row.ours - row.limit, start)}`
  // a miss on a shared machine: do the fastest runs of each side meet the goal?
  if (row.oursPipeline > goal && row.fastest != null && row.runs > 1) text += `; fastest runs ${f2(row.fastest)}× (ours ${f2(row.oursRange[0])}-${f2(row.oursRange[1])} s over ${row.runs} runs)`
  return text
}

/** Whether the provider's start-up (node, bundle) explains a gap, or the copy itself does. */
function gap(seconds, start) {
  if (start == null) return ': overhead in the provider'
  return seconds <= start * 1.5 ? `: the gap (${f2(seconds)} s) is about the provider's start-up (${f2(start)} s)` : `: overhead in the provider beyond its start-up (${f2(start)} s)`
}

/** Path and warm-cache creates ran as a pair, path first in rounds 0, 2, ... and warm first
 *  in 1, 3, ... (run.mjs): run i of a cell is round i. A run's place in the pair changes its
 *  time (see RESULTS.md), and an odd number of rounds puts path first once more often than
 *  warm, so the two are compared place by place: warm going first against path going first,
 *  and going second against going second. The ratio is the geometric mean of the two, which
 *  cancels a place effect that scales both alike; the plain ratio of medians without pairs. */
function warmRatio(results, row, path) {
  const plain = { v: row.ours / path.ours, text: '' }
  if (!results.options.pairs) return plain
  const cell = (source) => results.cells.find((c) => c.format === row.format && c.target === row.target && c.source === source && c.side === 'ours')
  const place = (c, firstWhenEven) => {
    const [first, second] = [[], []]
    c.runs.forEach((r, i) => ((i % 2 === 0) === firstWhenEven ? first : second).push(r.seconds))
    return first.length && second.length ? { first: median(first), second: median(second) } : null
  }
  const p = place(cell('path'), true), w = place(cell('url-warm'), false)
  if (!p || !w) return plain
  const v = Math.sqrt((w.first / p.first) * (w.second / p.second))
  return { v, text: `place by place: going first, warm ${f2(w.first)} s and path ${f2(p.first)} s (${f2(w.first / p.first)}×); going second, warm ${f2(w.second)} s and path ${f2(p.second)} s (${f2(w.second / p.second)}×); ${f2(v)}× their geometric mean, where the medians alone give ${f2(plain.v)}× (warm ${f2(row.ours)} s, path ${f2(path.ours)} s)` }
}

export function targets(results, rs) {
  const start = stats(results.cells.find((c) => c.side === 'startup'))?.s
  const get = (format, target, source = 'path') => rs.find((r) => r.format === format && r.target === target && r.source === source)
  const out = []
  const ratioGoal = (name, format, goal, note) => {
    for (const target of results.options.targets) {
      const r = get(format, target)
      if (!r) continue
      const v = r.oursPipeline
      out.push({ name: `${name} (${target})`, goal: `≤ ${goal}× pipeline`, value: v == null ? r.status : `${f2(v)}× (${f2(r.ours)} s vs ${f2(r.pipeline)} s)`, pass: note ? null : v != null && v <= goal, why: note ?? why(r, goal, start) })
    }
  }
  ratioGoal('raw+gz', 'raw+gz', 0.35)
  ratioGoal('raw+xz multi-block', 'raw+xz multi', 0.5)
  ratioGoal('raw+xz single-block', 'raw+xz single', 0.8)
  ratioGoal('raw+bzip2', 'raw+bzip2', 0.6, parallelBzip2() ? undefined : 'n/a: no lbzip2 or pbzip2 installed')
  ratioGoal('qcow2 vs qemu-img dd', 'qcow2', 0.4)
  ratioGoal('raw vs dd bs=2M', 'raw', 0.8)
  // warm cache against local path: worst case over formats and targets
  const warm = rs.filter((r) => r.source === 'url-warm' && r.ours != null).map((r) => ({ r, p: get(r.format, r.target) })).filter(({ p }) => p?.ours != null)
    .map(({ r, p }) => ({ r, p, ...warmRatio(results, r, p) }))
  if (warm.length) {
    const worst = warm.reduce((a, b) => (b.v > a.v ? b : a))
    const { r, p, v } = worst
    const reading = r.format === 'raw' ? `; reading alone: the cache entry ${f2(r.limitParts.source)} s, the image file ${f2(p.limitParts.source)} s` : ''
    const fastest = v > 1.1 ? `; fastest runs ${f2(r.oursRange[0] / p.oursRange[0])}× (warm ${f2(r.oursRange[0])}-${f2(r.oursRange[1])} s, path ${f2(p.oursRange[0])}-${f2(p.oursRange[1])} s)` : ''
    out.push({ name: 'warm-cache URL vs local path', goal: '≤ 1.1× (every format, target)', value: `worst ${f2(v)}× (${r.format} → ${r.target})`, pass: v <= 1.1, why: `${worst.text || `warm ${f2(r.ours)} s, path ${f2(p.ours)} s`}${reading}; median over formats and targets ${f2(median(warm.map((w) => w.v)))}×${fastest}` })
  }
  const ours = results.cells.filter((c) => c.side === 'ours' && c.runs.length)
  if (ours.length) {
    const top = ours.reduce((a, b) => (stats(b).rss > stats(a).rss ? b : a))
    const v = stats(top).rss
    out.push({ name: 'peak RSS', goal: '≤ 150 MiB everywhere', value: `max ${v.toFixed(0)} MiB (${top.format} ${top.source ?? ''} → ${top.target})`, pass: v <= 150, why: v <= 150 ? '' : 'the largest process in the tree (GNU time %M)' })
  }
  for (const op of ['export', 'import']) {
    for (const target of results.options.targets) {
      const o = stats(results.cells.find((c) => c.format === op && c.target === target && c.side === 'ours'))
      const d = stats(results.cells.find((c) => c.format === op && c.target === target && c.side === 'dd'))
      if (!o || !d) continue
      const v = d.s / o.s
      const rate = (x) => `${(results.options.sizeMiB * 1.048576 / x).toFixed(0)} MB/s`
      out.push({ name: `${op} (${target})`, goal: '≥ 0.9× dd throughput', value: `${f2(v)}× (${f2(o.s)} s vs dd ${f2(d.s)} s)`, pass: v >= 0.9, why: `dd ${rate(d.s)}, ours ${rate(o.s)}${v >= 0.9 ? '' : gap(o.s - d.s, start)}` })
    }
  }
  return out
}

/** Other work competed: load before the bench started, or more load than CPUs while it ran
 *  (the bench itself keeps one to two CPUs busy). */
const one = (l) => Number(l.split(' ')[0])
const busy = (m) => one(m.loadBefore) > m.nproc / 2 || Math.max(one(m.loadAfter), ...(m.loadDuring ?? [])) > m.nproc

/** Issue 15's loopback target on the full bench's cells: a cold create against the
 *  slowest of the download into a file, the decoder alone and the disk alone. */
export function coldRows(results) {
  if (!results.options.sources.includes('url-cold')) return []
  const find = (p) => results.cells.find((c) => Object.entries(p).every(([k, v]) => c[k] === v))
  const get = (part, format, target) => {
    if (part === 'ours' || part === 'pipeline') return find({ format, source: 'url-cold', target, side: part === 'ours' ? 'ours' : 'pipeline' })
    if (part === 'decode') return find({ format, side: 'decode', target }) ?? find({ format, side: 'decode' })
    if (part === 'disk') return ['write-cached', 'write-sparse'].map((side) => find({ format: 'raw', target, side })).filter((c) => stats(c)).reduce((a, b) => (!a || stats(b).s < stats(a).s ? b : a), null)
    return find({ format, side: part })
  }
  return coldLoopbackRows(results.options.formats, results.options.targets, get, undefined, results.machine?.nproc ?? 2)
}

export function report(results, outDir) {
  const rs = rows(results)
  const ts = targets(results, rs)
  const cold = coldRows(results)
  for (const target of results.options.targets) {
    const mine = cold.filter((r) => r.target === target && r.ratio != null && !Number.isNaN(r.ratio))
    if (!mine.length) continue
    const worst = mine.reduce((a, b) => (b.ratio > a.ratio ? b : a))
    const misses = mine.filter((r) => !r.pass)
    ts.push({ name: `cold URL create, loopback (${target}; issue 15)`, goal: `≤ ${GOALS.loopback}× max(download to file, decoder, disk)`, value: `worst ${f2(worst.ratio)}× (${worst.format})`, pass: misses.length === 0, why: misses.length ? `missed by ${misses.map((r) => `${r.format} ${f2(r.ratio)}× (${r.bound} ${f2(r.limit)} s, ours ${f2(r.ours)} s)`).join('; ')}` : '' })
  }
  const m = results.machine
  const mark = (p) => (p === null ? 'n/a' : p ? 'pass' : '**MISS**')
  const table = mdTable
  const createTable = table(['format', 'source', 'target', 'ours s', 'pipeline s', 'limit s (bound)', 'ours/pipeline', 'ours/limit', 'ours peak RSS MiB'],
    rs.map((r) => [r.format, r.source, r.target, r.status === 'ok' ? f2(r.ours) : r.status, f2(r.pipeline), `${f2(r.limit)} (${r.bound || '—'})`, f2(r.oursPipeline), f2(r.oursLimit), r.rssMiB == null ? '—' : r.rssMiB.toFixed(0)]))
  const lim = (format, side) => {
    const cs = results.cells.filter((c) => c.format === format && c.side === side)
    if (!cs.length) return '—'
    return `${cs.map((c) => `${f2(stats(c)?.s)} s${c.target ? ` (${c.target} rounds)` : ''}`).join(', ')}: \`${cs[0].label}\``
  }
  const limitTable = table(['format', 'compressed MiB', 'best decoder alone', 'best decoder into a pipe', 'best decoder writing a file', "original's decoder alone", 'download alone (loopback)', 'download to a file (loopback)'],
    results.options.formats.map((f) => [f, (results.image.sizes[f] / 2 ** 20).toFixed(1), lim(f, 'decode'), lim(f, 'decode-pipe'), lim(f, 'decode-file'), lim(f, 'decode1'), lim(f, 'download'), lim(f, 'download-file')]))
  const writes = results.cells.filter((c) => c.side.startsWith('write')).map((c) => `${c.target}, ${c.label}: ${f2(stats(c)?.s)} s`).join('; ')
  const start = stats(results.cells.find((c) => c.side === 'startup'))?.s
  const xi = []
  for (const op of ['export', 'import']) for (const target of results.options.targets) {
    const o = stats(results.cells.find((c) => c.format === op && c.target === target && c.side === 'ours'))
    const d = stats(results.cells.find((c) => c.format === op && c.target === target && c.side === 'dd'))
    if (o && d) xi.push([op, target, f2(o.s), f2(d.s), f2(d.s / o.s), o.rss.toFixed(0)])
  }
  const warnings = results.cells.filter((c) => c.warning).map((c) => `- ${c.format} ${c.source} → ${c.target}: ${c.warning}`)
  const opts = results.options
  const md = `# Benchmark results

Made by \`npm run bench\` (test/bench/run.mjs) on ${results.date.slice(0, 16).replace('T', ' ')} UTC in ${Math.round(results.durationSeconds / 60)} min:
image ${opts.sizeMiB} MiB, every measurement repeated ${opts.repeat}× (median${opts.slowRepeat !== opts.repeat ? `; ${opts.slowFormats.join(', ')}, the slowest, ${opts.slowRepeat}× only, to keep the run short` : ''}${opts.fastRepeat && opts.fastRepeat !== opts.repeat && opts.fastFormats?.length ? `; ${opts.fastFormats.join(', ')}, the fastest, ${opts.fastRepeat}×` : ''}${opts.ioRepeat && opts.ioRepeat !== opts.repeat ? `; export and import ${opts.ioRepeat}×` : ''}),
page cache dropped before every run, every side timed to durable data (fsync), every written disk compared with the image (cmp).

## Machine
- ${m.nproc} CPUs: ${m.cpu}; ${m.memoryGiB} GiB memory; ${m.os}, kernel ${m.kernel}; node ${m.node}
- load average before / after: ${m.loadBefore} / ${m.loadAfter}${m.loadDuring?.length ? `; 1-min load at the start of each format's rounds: ${Math.min(...m.loadDuring).toFixed(1)} to ${Math.max(...m.loadDuring).toFixed(1)}` : ''}${busy(m) ? `
- **the machine was shared**: the load shows other work competing for its ${m.nproc} CPUs. The sides of each
  comparison are interleaved round by round, so ratios suffer less than absolute times; a limit measured
  at another moment than the runs it bounds can be off (a run below its limit is the sign)` : ''}
- provider: ${m.provider}${m.freePageReporting ? `
- memory: a virtual machine whose balloon hands freed pages back to its host (free page reporting).
  The page cache dropped before every run is such memory, and faulting it in again is slow: measured
  by hand on this machine, \`cat\` of the 1 GiB raw image took 0.57-0.64 s when the freed pages were
  still backed and 1.6-2.2 s once reported. The reporting comes in bursts about 2 s after the drop,
  taking a CPU; the bench waits for them to end before each run, so that every run starts in the
  same state: the slow one, all pages reported. Absolute times are therefore higher than on bare
  metal (dd of the raw image onto a file: 4.6-5.9 s, against 1.3-2.8 s in a run without the wait), for
  every side alike. The image files themselves, written hours before, also read slower than a
  cache entry written minutes before (the host's own cache): see "reading the cache entry"` : ''}
- tools: ${Object.entries(m.tools).map(([k, v]) => `${k}: ${v}`).join('; ')}

## Image
${results.image.shape}.
Files: ${Object.entries(results.image.sizes).map(([k, v]) => `${k} ${(v / 2 ** 20).toFixed(1)} MiB`).join(', ')}.

## Targets (issue 4; the last rows issue 15's)
${table(['target', 'goal', 'measured', 'result', 'what limited it'], ts.map((t) => [t.name, t.goal, t.value, mark(t.pass), t.why]))}

## create
ours = the installed \`create\` (Ganeti's environment); pipeline = the original provider
(\`<gzip|bzip2|xz|zstd> -dc IMG | dd of=DISK bs=2M conv=fsync\`, \`dd bs=2M conv=fsync\` for raw,
\`qemu-img dd -f qcow2 -O raw bs=2M\` + \`sync DISK\` for qcow2, \`curl -s -f -o TMP URL\` first for
a cold URL; a warm URL is the path pipeline, as the original read its cached file); limit = the
slowest of what any writer must do, each measured alone: **disk** = the fastest dd of the raw
image already in the page cache listed under Limits (writing every block, or skipping zero blocks
with \`conv=sparse\` where that is correct), **source** = the best decompressor alone into
/dev/null (\`cat\` of the file for raw; \`qemu-img convert -O raw\` to a sparse file for qcow2),
**pipe** = the same decompressor into \`cat\` through a pipe, where create reads its output (onto a
loop device, from a download, and bzip2: only a regular file takes a decompressor's own sparse
output), **file** = xz or zstd writing a file themselves and \`sync\` (onto a file disk, where create has
them write the disk file), **download** = \`curl\` alone (cold URL only); for a raw warm URL the
source is reading the cache entry (\`cat\`). Ours from the path and from a warm URL run back to
back, taking turns at going first: a run's time depends on what ran just before it (on the 2-core
virtual machine this bench was written on, 2026-11-30, with the warm run always after the cold
pipeline: raw from the path took 2.15-2.70 s onto a file and from the warm cache 1.42-1.81 s; onto
the loop device the other way round, 1.17-1.30 s against 1.55-1.77 s, for the same reads and
writes); the warm-cache target compares them place by place. The issue's plain
\`dd bs=4M conv=fsync\` from a cold cache is listed under Limits; it also pays for reading the
whole raw image.

${createTable}

## Limits
dd of the raw image, bs=4M (onto each target): ${writes || '—'}.${lim('raw', 'read-cache') !== '—' ? ` Reading the raw image's cache entry: ${lim('raw', 'read-cache')}.` : ''} The provider's start-up (\`create --help\`): ${f2(start)} s.

${limitTable}

${cold.length ? `## Cold URL create on loopback (issue 15)
A cold URL create (the table above) against issue 15's limit: the slowest of the download into a file
(\`curl -o FILE\` + \`sync FILE\`), the decoder alone (as under Limits; raw has none) and the disk alone (the
faster dd of the raw image from the page cache). Shaped links and parallel creates: RESULTS-cold.md.

${coldLoopbackTable(cold)}

` : ''}## export and import
export: \`export | cat >/dev/null\` vs \`dd if=DISK bs=4M | cat >/dev/null\` (the disk as create wrote
it); import: \`cat RAW | import\` vs \`cat RAW | dd of=DISK bs=4M conv=fsync\`.

${xi.length ? table(['op', 'target', 'ours s', 'dd s', 'throughput ours/dd', 'ours peak RSS MiB'], xi) : 'not run'}

## Failures and notes
${[...results.failures.map((f) => `- FAILED ${f}`), ...results.unsupported.map((u) => `- ${u}: create refused it at the time of this run (unsupported)`), ...warnings].join('\n') || '- none: every run exited 0 and every written disk equals the image'}
`
  mkdirSync(outDir, { recursive: true })
  writeFileSync(join(outDir, 'RESULTS.md'), md)
  writeFileSync(join(outDir, 'results.json'), JSON.stringify({ ...results, rows: rs, targets: ts }, null, 2) + '\n')
  console.log(`\n${createTable}\n\n${table(['target', 'goal', 'measured', 'result'], ts.map((t) => [t.name, t.goal, t.value, mark(t.pass)]))}\n${xi.length ? '\n' + table(['op', 'target', 'ours s', 'dd s', 'ours/dd throughput', 'RSS MiB'], xi) : ''}`)
}
