// The cold path's report (issue 15): RESULTS-cold.md and results-cold.json from what
// cold.mjs measured, and the loopback cold-create table that the full bench's RESULTS.md
// shows as well (coldLoopbackRows).
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { f2, mdTable, median, stats } from './util.mjs'

export const GOALS = { link: 1.1, loopback: 1.3, parallel: 1.5, rssMiB: 100 }
const mark = (pass) => (pass == null ? 'n/a' : pass ? 'pass' : '**MISS**')
const maxOf = (c, key) => (c && c.runs.length && c.runs.some((r) => r[key] !== undefined) ? Math.max(...c.runs.map((r) => r[key] ?? 0)) : null)
const mbps = (mib, s) => (s ? (mib * 1.048576) / s : NaN)
const num = (x, d = 0) => (x == null || Number.isNaN(x) ? '—' : x.toFixed(d))

/** A ratio meets its goal as the report shows it: to two decimals. */
const meets = (ratio, goal) => (ratio == null || Number.isNaN(ratio) ? null : Math.round(ratio * 100) / 100 <= goal)
const cpuOf = (c) => (c && c.runs.length && c.runs.every((r) => r.cpuSeconds !== undefined) ? median(c.runs.map((r) => r.cpuSeconds)) : null)

/** What the CPU time says about a create that missed: both CPUs busy (the machine is the
 *  limit, the create's own work beyond the decoder's takes from it), or one CPU busy all
 *  along (serial work on one thread), with the decoder's CPU time alone for comparison. */
export function cpuNote(wall, cpu, decoderCpu, nproc = 2) {
  if (cpu == null || !wall) return ''
  const busy = cpu / wall
  const own = decoderCpu != null ? `; the decoder alone ${f2(decoderCpu)} CPU s, so ${f2(cpu - decoderCpu)} CPU s are the create's own` : ''
  const head = `create ${f2(cpu)} CPU s in ${f2(wall)} s (${busy.toFixed(1)} of ${nproc} CPUs busy${own})`
  if (busy >= 0.85 * nproc) return `CPU-bound: ${head}`
  if (busy >= 0.85 && busy <= 1.15) return `one CPU busy throughout, serial work: ${head}`
  return head
}

/** The slowest of the parts given (name → stats or null): [bound, seconds]. */
function slowest(parts) {
  const known = Object.entries(parts).filter(([, v]) => v != null && !Number.isNaN(v))
  return known.length ? known.reduce((a, b) => (b[1] > a[1] ? b : a)) : ['', NaN]
}

/** Loopback cold creates against issue 15's limit: the slowest of the download into a file
 *  (curl -o FILE + sync), the decoder alone and the disk alone. `get(part, format, target)`
 *  finds a cell: part is ours, download-file, download (curl -o /dev/null), decode, disk
 *  (the fastest disk-alone cell of the target), pipeline (the original provider). */
export function coldLoopbackRows(formats, targets, get, basis = (f) => f, nproc = 2) {
  const out = []
  for (const format of formats) {
    for (const target of targets) {
      const b = basis(format)
      const ours = stats(get('ours', format, target))
      if (!ours && !get('ours', format, target)) continue
      const parts = { 'download to file': stats(get('download-file', b))?.s, decoder: b === 'raw' ? null : stats(get('decode', b, target))?.s, disk: stats(get('disk', 'raw', target))?.s }
      const [bound, limit] = slowest(parts)
      const ratio = ours ? ours.s / limit : null
      const original = stats(get('pipeline', b, target))?.s
      const oc = get('ours', format, target)
      const cpu = cpuOf(oc)
      const decoderCpu = b === 'raw' ? null : cpuOf(get('decode', b, target))
      const pass = meets(ratio, GOALS.loopback)
      const why = pass === false ? [`${f2(ours.s - limit)} s beyond the ${bound} (${f2(limit)} s); runs ${f2(ours.min)}-${f2(ours.max)} s`, cpuNote(ours.s, cpu, decoderCpu, nproc)].filter(Boolean).join('; ') : ''
      out.push({ why, cpu, decoderCpu, format, target, ours: ours?.s, range: ours && [ours.min, ours.max], parts, bound, limit, ratio, pass, curl: stats(get('download', b))?.s, original, rss: ours?.rss, requests: maxOf(oc, 'requests'), error: oc?.error })
    }
  }
  return out
}

export function coldLoopbackTable(rows) {
  // the original provider and curl alone where they were measured (the full bench)
  const orig = rows.some((r) => r.original != null)
  const curl = rows.some((r) => r.curl != null && r.format !== 'raw')
  return mdTable(['format', 'target', 'cold create s', 'create CPU s', 'download to file s', 'decoder alone s', 'disk alone s', 'limit s (bound)', `create ÷ limit (≤ ${GOALS.loopback})`, ...(curl ? ['curl -o /dev/null s'] : []), ...(orig ? ['original s', 'create ÷ original'] : []), 'peak RSS MiB', 'what limited it'],
    rows.map((r) => [r.format, r.target, r.error ? `failed: ${r.error.slice(0, 80)}` : f2(r.ours), f2(r.cpu), f2(r.parts['download to file']), f2(r.parts.decoder), f2(r.parts.disk), `${f2(r.limit)} (${r.bound})`, `${f2(r.ratio)} ${mark(r.pass)}`, ...(curl ? [f2(r.curl)] : []), ...(orig ? [f2(r.original), f2(r.original ? r.ours / r.original : null)] : []), num(r.rss), r.why]))
}

/** Rows of one shaped link: create ÷ the slower of curl alone and the decoder alone (raw:
 *  curl alone; qcow2: curl alone + a warm create on that link); create ÷ the original. */
export function linkRows(results, link) {
  const nproc = results.machine?.nproc ?? 2
  const basis = (f) => results.options.basis?.[f] ?? f
  const find = (p) => results.cells.find((c) => Object.entries(p).every(([k, v]) => c[k] === v))
  const out = []
  for (const format of results.options.formats) {
    for (const target of results.options.targets) {
      const b = basis(format)
      const oc = find({ link, format, source: 'url-cold', target, side: 'ours' })
      if (!oc) continue
      const ours = stats(oc)
      const curl = stats(find({ link, format: b, side: 'download' }))?.s
      const decoder = b === 'raw' ? null : stats(find({ format: b, side: 'decode-warm' }) ?? find({ format: b, side: 'decode' }))?.s
      const warm = b === 'qcow2' ? stats(find({ link, format: b, source: 'url-warm', target, side: 'ours' }))?.s : null
      const parts = b === 'raw' ? { curl } : b === 'qcow2' ? { 'curl + warm create': curl != null && warm != null ? curl + warm : null } : { curl, decoder }
      const [bound, limit] = slowest(parts)
      const ratio = ours ? ours.s / limit : null
      const pass = meets(ratio, GOALS.link)
      const original = stats(find({ link, format: b, target, side: 'pipeline' }))?.s
      const cpu = cpuOf(oc)
      const decoderCpu = b === 'raw' ? null : cpuOf(find({ format: b, side: 'decode-warm' }) ?? find({ format: b, side: 'decode' }))
      let why = ''
      if (ours && pass === false) {
        why = `${f2(ours.s - limit)} s more than the ${bound} (${f2(limit)} s)`
        const busy = cpuNote(ours.s, cpu, b === 'qcow2' ? null : decoderCpu, nproc)
        if (busy) why += `; ${busy}`
        if (decoder != null && curl != null && b !== 'qcow2' && !busy.startsWith('CPU-bound')) {
          const serial = curl + decoder
          why += ours.s >= 0.9 * serial ? `; as long as curl then the decoder, one after the other (${f2(serial)} s): the download and the decoding hardly overlap` : `; curl then the decoder, one after the other: ${f2(serial)} s`
        }
        if (b === 'raw') why += `; curl alone ${num(mbps(results.options.sizeMiB, curl))} MB/s, the create ${num(mbps(results.options.sizeMiB, ours.s))} MB/s`
      }
      out.push({ link, format, target, cpu, decoderCpu, ours: ours?.s, range: ours && [ours.min, ours.max], runs: ours?.n, curl, decoder, warm, bound, limit, ratio, pass, original, vsOriginal: ours && original ? ours.s / original : null, rss: ours?.rss, requests: maxOf(oc, 'requests'), error: oc.error, why })
    }
  }
  return out
}

function linkTable(rows) {
  return mdTable(['format', 'target', 'cold create s', 'create CPU s', 'curl -o /dev/null s', 'decoder alone s', 'decoder CPU s', 'warm create s', 'limit s (bound)', `create ÷ limit (≤ ${GOALS.link})`, 'original s', 'create ÷ original', 'peak RSS MiB', 'GETs', 'what limited it'],
    rows.map((r) => [r.format, r.target, r.error ? `failed: ${r.error.slice(0, 80)}` : f2(r.ours), f2(r.cpu), f2(r.curl), f2(r.decoder), f2(r.decoderCpu), f2(r.warm), `${f2(r.limit)} (${r.bound})`, `${f2(r.ratio)} ${mark(r.pass)}`, f2(r.original), f2(r.vsOriginal), num(r.rss), r.requests ?? '—', r.why || (r.pass ? (r.ratio >= 0.9 ? 'at the limit' : 'under the limit measured alone') : '')]))
}

export function parallelRows(results) {
  const find = (p) => results.cells.find((c) => Object.entries(p).every(([k, v]) => c[k] === v))
  return results.cells.filter((c) => c.side === 'parallel').map((c) => {
    const p = stats(c)
    const one = stats(find({ link: c.link, format: c.format, source: 'url-cold', target: 'file', side: 'ours' }))
    const curl = stats(find({ link: c.link, format: results.options.basis?.[c.format] ?? c.format, side: 'download' }))?.s
    const ratio = p && one ? p.s / one.s : null
    const limit = stats(find({ link: c.link, format: c.format, side: 'parallel-limit' }))?.s
    const cpu = cpuOf(c)
    // the run whose time is the median: what each create took and how it got the image
    const mid = p ? c.runs.reduce((a, r) => (Math.abs(r.seconds - p.s) < Math.abs(a.seconds - p.s) ? r : a)) : null
    const gets = c.runs.map((r) => r.requests)
    const whys = []
    if (gets.some((g) => g > 1)) whys.push(`${Math.max(...gets)} GETs: ${gets.every((g) => g === results.options.parallel) ? 'every create downloaded the image itself' : 'not every create shared one download'}`)
    const pass = meets(ratio, GOALS.parallel)
    if (pass === false) {
      whys.push(`${f2(p.s - one.s)} s more than one cold create; curl alone of one copy ${f2(curl)} s`)
      if (limit != null) whys.push(`one download into a file and the ${results.options.parallel} disks written by dd, all at once, ${f2(limit)} s: the ${results.options.parallel} creates take ${f2(p.s / limit)}× that`)
      if (cpu != null) whys.push(`the ${results.options.parallel} creates ${f2(cpu)} CPU s in all (${(cpu / p.s).toFixed(1)} CPUs busy)`)
    }
    return { link: c.link, format: c.format, n: results.options.parallel, one: one?.s, all: p?.s, limit, cpu, ratio, pass, gets, getsPass: gets.length ? gets.every((g) => g === 1) : null, each: mid?.each, how: mid?.how, rss: p?.rss, curl, error: c.error, why: whys.join('; ') }
  })
}

function parallelTable(rows) {
  return mdTable(['link', 'format', 'one cold create s', 'N at once s', `÷ one (≤ ${GOALS.parallel})`, 'their least work at once s', 'each create s (median run)', 'how each got it', 'GETs of the image (target 1)', 'peak RSS MiB', 'what limited it'],
    rows.map((r) => [r.link, r.format, f2(r.one), r.error ? `failed: ${r.error.slice(0, 80)}` : `${r.n}: ${f2(r.all)}`, `${f2(r.ratio)} ${mark(r.pass)}`, f2(r.limit), r.each?.map((x) => x.toFixed(2)).join(', ') ?? '—', r.how?.join(', ') ?? '—', `${r.gets.join(', ')} ${mark(r.getsPass)}`, num(r.rss), r.why]))
}

export function fetchRows(results) {
  return results.cells.filter((c) => c.side === 'fetch').map((c) => {
    const s = stats(c)
    return { client: c.client, into: c.into, label: c.label, s: s?.s, range: s && [s.min, s.max], mbps: s ? mbps(results.options.sizeMiB, s.s) : null, cpu: c.runs.length ? median(c.runs.map((r) => r.cpuSeconds)) : null, chunkKiB: c.runs.length && c.runs[0].meanChunkKiB !== undefined ? median(c.runs.map((r) => r.meanChunkKiB)) : null, rss: s?.rss, error: c.error }
  })
}

/** Whether node-fetch is a limit: its throughput against Node's http on the same bytes. */
export function fetchVerdict(rows, results) {
  const get = (client, into) => rows.find((r) => r.client === client && r.into === into)
  const nf = get('node-fetch', '/dev/null'), h = get('http', '/dev/null'), c = get('curl', '/dev/null')
  if (!nf?.mbps || !h?.mbps) return { limit: null, heading: 'node-fetch against Node\'s http: not measured', text: '' }
  const nff = get('node-fetch', 'file'), hf = get('http', 'file'), cf = get('curl', 'file')
  const limit = nf.mbps < 0.9 * h.mbps
  const rawCold = results.cells.find((x) => x.link === 'loopback' && x.format === 'raw' && x.side === 'ours' && x.source === 'url-cold' && x.target === 'file')
  const rc = stats(rawCold)
  const lines = [
    `Into /dev/null node-fetch reads ${num(nf.mbps)} MB/s (${f2(nf.cpu)} CPU s), Node's http.get ${num(h.mbps)} MB/s (${f2(h.cpu)} CPU s)${c?.mbps ? `, curl ${num(c.mbps)} MB/s (${f2(c.cpu)} CPU s)` : ''}: node-fetch ${limit ? `is ${f2(h.mbps / nf.mbps)}× slower than Node's own http on the same loopback` : `is within 10 % of Node's own http (${f2(nf.mbps / h.mbps)}×)`}.`,
    nff?.mbps && hf?.mbps ? `Into a file (1 MiB writev batches, as lib/image/download.ts, then fsync): node-fetch ${num(nff.mbps)} MB/s, http ${num(hf.mbps)} MB/s${cf?.mbps ? `, curl -o FILE + sync ${num(cf.mbps)} MB/s` : ''}.` : '',
    rc ? `A raw cold create on loopback (download, cache, disk) took ${f2(rc.s)} s: ${num(mbps(results.options.sizeMiB, rc.s))} MB/s, ${nff?.s ? `${f2(rc.s / nff.s)}× node-fetch's download into a file` : ''}.` : '',
  ].filter(Boolean)
  return { limit, heading: limit ? "node-fetch is a limit: Node's http reads loopback faster" : 'node-fetch is not the limit', text: lines.join(' ') }
}

function fetchTable(rows) {
  return mdTable(['client', 'into', 's (min-max)', 'MB/s', 'CPU s (user+sys)', 'mean chunk KiB', 'peak RSS MiB'],
    rows.map((r) => [r.label.replace(/ → .*/, ''), r.into === 'file' ? 'FILE, fsync' : '/dev/null', r.error ? 'failed' : `${f2(r.s)} (${f2(r.range?.[0])}-${f2(r.range?.[1])})`, num(r.mbps), f2(r.cpu), r.chunkKiB == null ? '—' : r.chunkKiB.toFixed(1), num(r.rss)]))
}

export function coldTargets(results, { links, loop, par, fetch }) {
  const out = []
  for (const [name, rows] of links) {
    const ok = rows.filter((r) => r.ratio != null && !Number.isNaN(r.ratio))
    if (!ok.length) continue
    const worst = ok.reduce((a, b) => (b.ratio > a.ratio ? b : a))
    const misses = ok.filter((r) => !r.pass)
    out.push({ name: `shaped link ${name}: cold create`, goal: `≤ ${GOALS.link}× max(curl alone, decoder alone)`, value: `worst ${f2(worst.ratio)}× (${worst.format} → ${worst.target})`, pass: misses.length === 0 && !rows.some((r) => r.error), why: misses.length ? `missed by ${misses.map((r) => `${r.format} ${f2(r.ratio)}×`).join(', ')}` : '' })
  }
  const lok = loop.filter((r) => r.ratio != null && !Number.isNaN(r.ratio))
  if (lok.length) {
    const worst = lok.reduce((a, b) => (b.ratio > a.ratio ? b : a))
    const misses = lok.filter((r) => !r.pass)
    out.push({ name: 'loopback: cold create', goal: `≤ ${GOALS.loopback}× max(download to file, decoder, disk)`, value: `worst ${f2(worst.ratio)}× (${worst.format} → ${worst.target})`, pass: misses.length === 0 && !loop.some((r) => r.error), why: misses.length ? `missed by ${misses.map((r) => `${r.format} ${f2(r.ratio)}× (${r.bound}-bound)`).join(', ')}` : '' })
  }
  for (const r of par) {
    out.push({ name: `${r.n} parallel cold creates (${r.link}, ${r.format}): requests`, goal: 'one GET of the image', value: r.gets.join(', '), pass: r.getsPass, why: r.getsPass ? '' : r.why })
    out.push({ name: `${r.n} parallel cold creates (${r.link}, ${r.format}): time`, goal: `≤ ${GOALS.parallel}× one cold create`, value: `${f2(r.ratio)}× (${f2(r.all)} s vs ${f2(r.one)} s)`, pass: r.pass, why: r.pass ? '' : r.why })
  }
  const creates = results.cells.filter((c) => (c.side === 'ours' || c.side === 'parallel') && c.runs.length)
  if (creates.length) {
    const top = creates.reduce((a, b) => (stats(b).rss > stats(a).rss ? b : a))
    const v = stats(top).rss
    const over = creates.filter((c) => stats(c).rss > GOALS.rssMiB)
    // a decompressor of the create's is a process of its tree: its own peak, measured alone
    const decoders = results.cells.filter((c) => c.side === 'decode' && c.runs.length).map((c) => `${c.format} ${stats(c).rss.toFixed(0)}`)
    out.push({ name: 'peak RSS of every create', goal: `≤ ${GOALS.rssMiB} MiB`, value: `max ${v.toFixed(0)} MiB (${top.link} ${top.format} ${top.side === 'parallel' ? 'parallel' : top.source})`, pass: v <= GOALS.rssMiB, why: over.length ? `over in ${over.length} of ${creates.length} cells: ${over.slice(0, 8).map((c) => `${c.link} ${c.format}${c.side === 'parallel' ? ' parallel' : c.source === 'url-warm' ? ' warm' : ''} ${stats(c).rss.toFixed(0)}`).join(', ')}${over.length > 8 ? ', …' : ''}; the largest process of the tree (GNU time %M); the decoders alone, MiB: ${decoders.join(', ')}` : '' })
  }
  if (fetch.limit !== null) out.push({ name: 'node-fetch vs Node\'s http (loopback, /dev/null)', goal: 'measured (≥ 0.9× http: not a limit)', value: fetch.heading, pass: null, why: '' })
  return out
}

export function reportCold(results, outDir) {
  const m = results.machine ?? {}
  const shaped = results.links.filter((l) => !l.loopback)
  const linkSets = shaped.map((l) => [l.name, linkRows(results, l.name)])
  const basis = (f) => results.options.basis?.[f] ?? f
  const find = (p) => results.cells.find((c) => Object.entries(p).every(([k, v]) => c[k] === v))
  const get = (part, format, target) => {
    if (part === 'ours') return find({ link: 'loopback', format, source: 'url-cold', target, side: 'ours' })
    if (part === 'disk') return find({ side: 'write-sparse', target })
    if (part === 'decode') return find({ format, side: 'decode' })
    if (part === 'pipeline') return find({ link: 'loopback', format, target, side: 'pipeline' })
    return find({ link: 'loopback', format, side: part })
  }
  const loop = coldLoopbackRows(results.options.formats, results.options.targets, get, basis, m.nproc ?? 2)
  const par = parallelRows(results)
  const fr = fetchRows(results)
  const fv = fetchVerdict(fr, results)
  const ts = coldTargets(results, { links: linkSets, loop, par, fetch: fv })
  const opts = results.options
  const linkText = (l) => `${l.name}: tbf ${l.rate} on the namespace's loopback, the server waits ${l.delayMs} ms before each answer (\`${l.qdisc}\`)`
  const localLimits = results.cells.filter((c) => ['decode', 'decode-warm', 'write-sparse'].includes(c.side)).map((c) => `${c.format}${c.target ? ' → ' + c.target : ''}, \`${c.label}\`: ${f2(stats(c)?.s)} s`)
  const curlRates = results.links.map((l) => {
    const c = stats(find({ link: l.name, format: 'raw', side: 'download' }))
    return c ? `${l.name} ${num(mbps(opts.sizeMiB, c.s))} MB/s` : null
  }).filter(Boolean)
  const md = `# Cold creates: shaped links, parallel creates, loopback (issue 15)

Made by \`npm run bench${opts.focus ? ' -- --focus ' + opts.focus : ''}\` (test/bench/run.mjs, cold.mjs) on ${results.date.slice(0, 16).replace('T', ' ')} UTC; the cold path took
${Math.round(results.durationSeconds / 60)} min${results.totalSeconds ? ` (${Math.round(results.totalSeconds / 60)} min for the whole run, image set-up included)` : ''}: image ${opts.sizeMiB} MiB (the full bench's, see RESULTS.md), each measurement
on a shaped link run ${opts.linkRepeat}×, on loopback and the local limits ${opts.coldRepeat}× (median), every written disk compared with the image.
A cold create is the installed \`create\` from a URL with the download cache (IMAGE_STORAGE) empty, onto a fresh sparse file
(${opts.targets.join(', ')}); auto is the same with image_type unset, on the raw+gz file.

## Machine
- ${m.nproc} CPUs: ${m.cpu}; ${m.memoryGiB} GiB memory; ${m.os}, kernel ${m.kernel}; node ${m.node}
- load average before / after: ${m.loadBefore} / ${m.loadAfter}
- provider: ${m.provider}
- image: ${results.image?.shape ?? ''}

## Links
${results.links.filter((l) => !l.loopback).map((l) => `- ${linkText(l)}`).join('\n') || '- no shaped link'}
- loopback: the host's own, unshaped, the server answering at once (as in RESULTS.md)

Each shaped link is a network namespace made by the bench (\`ip netns add simpleimage-bench-PID-LINK\`), its loopback up and
rate-limited with tbf (this kernel has tbf and htb, not netem); the server (serve.mjs \`--delay\`), \`create\` and curl all run
inside it with \`ip netns exec\`, so nothing leaves the machine; the namespaces are deleted at the end, also on Ctrl-C. The
delay is the server's, before each answer's headers: a WAN's round trip for every request, not a slower TCP ramp.
On a shaped link the page cache is not dropped (only \`sync\`): the server reads the image from memory, and the rate is
the link's. curl -o /dev/null of the raw image: ${curlRates.join(', ') || '—'}.

## Targets (issue 15)
${mdTable(['target', 'goal', 'measured', 'result', 'what limited it'], ts.map((t) => [t.name, t.goal, t.value, mark(t.pass), t.why]))}

${linkSets.map(([name, rows]) => `## Shaped link ${name}
limit: the slower of \`curl -o /dev/null\` on this link and the decoder alone on the local file (Local limits);
raw: curl alone; qcow2: curl alone + a warm create (the image in the cache) on this link. original = the original
provider on this link: \`curl -o FILE URL\`, then \`<decompressor> -dc FILE | dd of=DISK bs=2M conv=fsync\` (qcow2:
\`qemu-img dd\` + sync). GETs: requests for the image the server saw during a cold create.

${linkTable(rows)}
`).join('\n')}
## Loopback: cold create against download to file, decoder and disk
The host's loopback, page cache dropped before every run, as in RESULTS.md. limit: the slowest of the download into a
file (\`curl -o FILE\` + \`sync FILE\`), the decoder alone on the local file (page cache dropped; raw has none) and the
disk alone (\`dd conv=sparse,fsync\` of the raw image from the page cache, the fastest way to write the disk correctly).

${coldLoopbackTable(loop)}

## ${opts.parallel} parallel cold creates of one URL
${opts.parallel} creates of the ${opts.parallelFormat} URL started at once, the cache empty, the same variant (one IMAGE_STORAGE), each
onto its own sparse file; the time until the last is done, against one cold create on the same link (the table above).
GETs: requests for the image the server saw, per run. how: what each create's log says (miss: it downloaded;
followed: it wrote its disk from another create's download; hit: it read the cache entry).

${par.length ? parallelTable(par) : 'not run'}

## ${fv.heading}
node-fetch 3 as lib/image/http.ts calls it (\`response.body\` read with \`for await\`), Node's \`http.get\` (the response read
with \`for await\`) and curl, downloading the raw image (${opts.sizeMiB} MiB) from the loopback server, the image in the page
cache; into a file both Node clients gather 1 MiB and writev it, as lib/image/download.ts, then fsync (test/bench/fetch.mjs).

${fr.length ? fetchTable(fr) : 'not run'}

${fv.text}

## Local limits
${localLimits.map((l) => `- ${l}`).join('\n') || '- none'}

## Failures and notes
${[...results.failures.map((f) => `- FAILED ${f}`), ...results.unsupported.map((u) => `- ${u}: create refused it (unsupported)`), ...results.cells.filter((c) => c.warning).map((c) => `- ${c.link ?? ''} ${c.format} ${c.source ?? ''} ${c.side}: ${c.warning}`)].join('\n') || '- none: every run exited 0 and every written disk equals the image'}
`
  mkdirSync(outDir, { recursive: true })
  writeFileSync(join(outDir, 'RESULTS-cold.md'), md)
  writeFileSync(join(outDir, 'results-cold.json'), JSON.stringify({ ...results, linkRows: Object.fromEntries(linkSets), loopbackRows: loop, parallelRows: par, fetchRows: fr, fetchVerdict: fv, targets: ts }, null, 2) + '\n')
  console.log(`\n${mdTable(['target', 'goal', 'measured', 'result'], ts.map((t) => [t.name, t.goal, t.value, mark(t.pass)]))}`)
}
