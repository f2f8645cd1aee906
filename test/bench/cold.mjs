// The cold path of issue 15, run by `npm run bench` after the full bench, or alone with
// `--focus cold`: cold creates (cache empty) of every format over shaped links (netns.mjs)
// and on the host's loopback, against curl alone on the same link, the decoder alone, the
// disk alone and the original provider's `curl -o FILE` then `decompress | dd`; N parallel
// cold creates of one URL (requests the server saw, time against one cold create); and
// node-fetch against Node's http and curl (fetch.mjs). Its report is RESULTS-cold.md
// (report-cold.mjs).
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FORMATS } from './image.mjs'
import { FileTarget, LoopTarget, timed } from './measure.mjs'
import { Netns, removeStale } from './netns.mjs'
import { makeRunner } from './runner.mjs'
import { startServer } from './server.mjs'
import { bestDecompressor, downloadToFile, oursCreate, pipelineFromUrl } from './sides.mjs'
import { log, q } from './util.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))

/** The formats of issue 15's targets; auto is create with image_type unset, on the raw+gz file. */
export const COLD_FORMATS = [
  ...FORMATS.filter((f) => ['raw', 'raw+gz', 'raw+bzip2', 'raw+xz multi', 'raw+zst', 'qcow2'].includes(f.key)),
  { key: 'auto', type: undefined, file: 'image.raw.gz', as: 'raw+gz' },
]

/** The format whose file, decoder, curl and original pipeline a format shares (auto: raw+gz's). */
export const basis = (f) => f.as ?? f.key

const FETCH_CLIENTS = [
  { client: 'node-fetch', label: 'node-fetch 3, body by for await (as lib/image)' },
  { client: 'http', label: "Node's http.get, the response by for await" },
  { client: 'curl', label: 'curl' },
]

/** env: { o (options), images, ctx (installed provider), ref (ImageRef), run (scratch dir),
 *  cleanups, clean (environment) }. Returns the results object for report-cold.mjs. */
export async function runCold({ o, images, ctx, ref, run, cleanups, clean }) {
  const began = Date.now()
  const cells = []
  const failures = []
  const unsupported = new Set()
  const raw = images.path(FORMATS[0])
  const timeFile = join(run, 'time-cold.out')
  const { cell, rounds } = makeRunner({ cells, failures, unsupported, raw, run, timeFile, env: clean })
  const formats = COLD_FORMATS.filter((f) => o.coldFormats.includes(f.key))
  const own = formats.filter((f) => !f.as) // the formats with a file of their own
  const diskSize = images.meta.bytes + 16 * 1048576
  const disks = {}
  if (o.coldTargets.includes('file')) disks.file = new FileTarget(join(run, 'cold-disk.img'), diskSize)
  if (o.coldTargets.includes('loop')) disks.loop = new LoopTarget(join(run, 'cold-loop-backing.img'), diskSize)
  const par = Array.from({ length: o.parallel }, (_, i) => new FileTarget(join(run, `par-disk-${i}.img`), diskSize))
  for (const d of [...Object.values(disks), ...par]) cleanups.push(() => d.release())
  const dl = join(run, 'cold-download.tmp')
  const scratch = join(run, 'cold-decoded.raw')
  const emptyCache = () => rmSync(ctx.cache, { recursive: true, force: true })
  const entries = () => (existsSync(ctx.cache) ? readdirSync(ctx.cache).filter((f) => f.endsWith('.image')) : [])

  // the links: the host's loopback, then the shaped ones, each with its own server
  removeStale()
  const links = [{ name: 'loopback', server: await startServer(images.dir, { cleanups }), prefix: [], loopback: true }]
  for (const link of o.links) {
    const ns = new Netns(link)
    cleanups.push(() => ns.delete())
    const server = await startServer(images.dir, { netns: ns, delayMs: link.delayMs, cleanups })
    links.push({ ...link, server, prefix: ns.exec, qdisc: ns.qdisc(), ns })
    log(`link ${link.name}: ${ns.name}, ${ns.qdisc()}, server delay ${link.delayMs} ms`)
  }

  // the local limits, link-independent: the decoder alone on the local file, page cache
  // dropped as in the full bench (with the file in the page cache instead, a 1 GiB run had
  // gz, bzip2, xz and zstd 0.05-0.25 s faster: within the noise of these runs), and the
  // disk alone
  const local = []
  for (const fmt of own) {
    if (fmt.type === 'raw') continue // nothing to decode
    const image = images.path(fmt)
    const best = bestDecompressor(fmt)
    const cmd = fmt.type === 'qcow2' ? `qemu-img convert -f qcow2 -O raw ${q(image)} ${q(scratch)} && sync ${q(scratch)}` : `${best} ${q(image)} > /dev/null`
    const label = fmt.type === 'qcow2' ? 'qemu-img convert → sparse file, sync' : fmt.type === 'raw+gz' ? "Node's zlib (create's gzip decoder) > /dev/null" : `${best} > /dev/null`
    const rm = () => rmSync(scratch, { force: true })
    const verify = fmt.type === 'qcow2' ? () => ref.same(scratch) : undefined
    local.push(cell({ format: fmt.key, side: 'decode', label, cmd, prepare: rm, after: rm, verify }))
  }
  for (const [tname, disk] of Object.entries(disks)) {
    const dd = `dd if=${q(raw)} of=${q(disk.path)} bs=4M conv=sparse,fsync status=none`
    local.push(disk.kind === 'file'
      ? cell({ format: 'raw', target: tname, side: 'write-sparse', label: 'dd conv=sparse,fsync, image in page cache', cmd: dd, cached: true, prepare: () => disk.prepare(), verify: () => ref.same(disk.path) })
      : cell({ format: 'raw', target: tname, side: 'write-sparse', label: 'blkdiscard -z, then dd conv=sparse,fsync, image in page cache', cmd: `blkdiscard -z ${q(disk.path)} && ${dd}`, cached: true, prepare: () => disk.prepare(), verify: () => ref.same(disk.path) }))
  }
  log(`cold: local limits (${local.length} cells × ${o.coldRepeat})`)
  await rounds(local, o.coldRepeat)

  for (const link of links) {
    const group = []
    const onLink = { link: link.name, prefix: link.prefix, ...(link.loopback ? {} : { drop: false }) }
    const gets = (file, since) => link.server.requests(file, since).filter((r) => r.method === 'GET').length
    for (const fmt of formats) {
      const file = fmt.file
      const u = link.server.url(file)
      for (const [tname, disk] of Object.entries(disks)) {
        const ours = oursCreate(ctx, fmt, u, disk)
        let mark = 0
        group.push(cell({
          ...onLink, format: fmt.key, source: 'url-cold', target: tname, side: 'ours', ...ours, expect: /cache miss/i,
          prepare: () => (emptyCache(), disk.prepare(), (mark = link.server.mark())),
          verify: () => ref.same(disk.path),
          after: () => ({ requests: gets(file, mark) }),
        }))
        // the original on loopback is the full bench's (RESULTS.md): not measured again here
        if (!fmt.as && !link.loopback) group.push(cell({ ...onLink, format: fmt.key, source: 'url-cold', target: tname, side: 'pipeline', label: 'curl -o FILE, then the original pipeline', cmd: pipelineFromUrl(fmt, u, dl, disk), prepare: () => disk.prepare(), verify: () => ref.same(disk.path), after: () => rmSync(dl, { force: true }) }))
        // qcow2's limit adds a warm create (the download is in the cache) on the same link:
        // the qcow2 is converted from the cache entry once it is complete
        if (fmt.type === 'qcow2' && !link.loopback) {
          const fill = async () => {
            if (entries().length !== 1) {
              emptyCache()
              disk.prepare()
              await timed(ours.cmd, { ...ours, timeFile, prefix: link.prefix })
            }
            disk.prepare()
          }
          group.push(cell({ ...onLink, format: fmt.key, source: 'url-warm', target: tname, side: 'ours', ...ours, expect: /cache hit/i, prepare: fill, verify: () => ref.same(disk.path) }))
        }
      }
      // curl alone on this link; on loopback the download into a file (issue 15's limit
      // there), and curl alone of the raw image only (what parallel creates share)
      if (!fmt.as && (!link.loopback || fmt.type === 'raw')) group.push(cell({ ...onLink, format: fmt.key, side: 'download', label: 'curl -o /dev/null', cmd: `curl -s -f -o /dev/null ${q(u)}` }))
      if (!fmt.as && link.loopback) group.push(cell({ ...onLink, format: fmt.key, ...downloadToFile(u, dl), prepare: () => rmSync(dl, { force: true }), after: () => rmSync(dl, { force: true }) }))
      if (fmt.key === o.parallelFormat && o.parallelLinks.includes(link.loopback ? 'loopback' : link.name)) {
        group.push(parallelCell(link, fmt, onLink))
        // what N creates sharing one download must do at least, all at once: the download
        // into one file (the cache entry) and N disks written (raw: the image itself)
        if (link.loopback && fmt.type === 'raw') group.push(parallelLimit(link, fmt, onLink))
      }
    }
    const reps = link.loopback ? o.coldRepeat : o.linkRepeat
    log(`cold: ${link.name} (${group.length} cells × ${reps})`)
    await rounds(group, reps)
  }

  // node-fetch against Node's http and curl, on the host's loopback, the raw image in the
  // page cache (the client's own speed: the server reads from memory)
  if (o.fetch) {
    const lo = links[0]
    const u = lo.server.url(FORMATS[0].file)
    const group = []
    for (const into of ['/dev/null', 'file']) {
      for (const { client, label } of FETCH_CLIENTS) {
        const dest = into === 'file' ? dl : '/dev/null'
        const sync = into === 'file' ? ` && sync ${q(dl)}` : ''
        const cmd = client === 'curl' ? `curl -s -f -o ${q(dest)} ${q(u)}${sync}` : `${q(process.execPath)} ${q(join(HERE, 'fetch.mjs'))} ${client} ${q(u)} ${q(dest)}`
        const rm = () => rmSync(dl, { force: true })
        group.push(cell({
          link: 'loopback', format: 'raw', side: 'fetch', client, into, label: `${label} → ${into === 'file' ? 'FILE, fsync' : '/dev/null'}`, cmd, drop: false, warm: raw,
          prepare: rm,
          after: (r) => {
            rm()
            const line = r?.stderr.trim().split('\n').pop() ?? ''
            try {
              const j = JSON.parse(line)
              return { chunks: j.chunks, meanChunkKiB: j.meanChunkKiB }
            } catch {
              return {}
            }
          },
        }))
      }
    }
    log(`cold: node-fetch vs http vs curl (${group.length} cells × ${o.coldRepeat})`)
    await rounds(group, o.coldRepeat)
  }

  for (const l of links) l.server.stop()
  for (const l of links) l.ns?.delete()

  return {
    date: new Date().toISOString(),
    options: { sizeMiB: o.size, coldRepeat: o.coldRepeat, linkRepeat: o.linkRepeat, formats: formats.map((f) => f.key), basis: Object.fromEntries(formats.map((f) => [f.key, basis(f)])), targets: Object.keys(disks), parallel: o.parallel, parallelFormat: o.parallelFormat, parallelLinks: o.parallelLinks, focus: o.focus ?? null },
    links: links.map(({ name, rate, mbit, delayMs, qdisc, loopback }) => ({ name, rate, mbit, delayMs, qdisc, loopback: !!loopback })),
    durationSeconds: Math.round((Date.now() - began) / 1000),
    unsupported: [...unsupported], failures,
    cells: cells.map(({ env, prepare, verify, after, expect, cached, warm, exec, prefix, ...c }) => c),
    sizes: Object.fromEntries(own.map((f) => [f.key, images.meta.sizes[f.key]])),
  }

  /** The download into a file (+ sync) and N × dd conv=sparse,fsync of the raw image onto
   *  the N disks, all at once, the page cache dropped: the server and the dd read the same
   *  file, so it is read from the disk once, as by the server for N creates. */
  function parallelLimit(link, fmt, onLink) {
    const dds = par.map((d) => `dd if=${q(raw)} of=${q(d.path)} bs=4M conv=sparse,fsync status=none & p="$p $!"`).join('; ')
    const cmd = `p=''; (curl -s -f -o ${q(dl)} ${q(link.server.url(fmt.file))} && sync ${q(dl)}) & p="$p $!"; ${dds}; for x in $p; do wait $x || exit 1; done`
    return cell({
      ...onLink, format: fmt.key, target: 'file', side: 'parallel-limit', label: `curl -o FILE + sync and ${o.parallel}× dd conv=sparse,fsync of the image, all at once`, cmd,
      prepare: () => (rmSync(dl, { force: true }), par.forEach((d) => d.prepare())),
      verify: () => par.map((d) => ref.same(d.path)).find(Boolean) ?? null,
      after: () => rmSync(dl, { force: true }),
    })
  }

  /** N creates of one URL at once, each onto its own disk, the cache empty: the wall time
   *  until the last is done, and the GETs the server saw for the image. */
  function parallelCell(link, fmt, onLink) {
    let mark = 0
    return cell({
      ...onLink, format: fmt.key, source: 'url-cold', target: 'file', side: 'parallel', label: `${o.parallel} creates at once, one disk each`,
      prepare: () => {
        emptyCache()
        for (const d of par) d.prepare()
        mark = link.server.mark()
      },
      exec: async () => {
        const t0 = process.hrtime.bigint()
        const rs = await Promise.all(par.map((d, i) => {
          const c = oursCreate(ctx, fmt, link.server.url(fmt.file), d)
          return timed(c.cmd, { env: c.env, cwd: c.cwd, timeFile: join(run, `time-par-${i}.out`), prefix: link.prefix })
        }))
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9
        const bad = rs.find((r) => r.code !== 0)
        const how = rs.map((r) => (/cache hit/i.test(r.stderr) ? 'hit' : /another create|follow/i.test(r.stderr) ? 'followed' : /cache miss/i.test(r.stderr) ? 'miss' : '?'))
        return {
          code: bad ? bad.code : 0, seconds, rssMiB: Math.max(...rs.map((r) => r.rssMiB)), cpuSeconds: rs.reduce((a, r) => a + r.cpuSeconds, 0), stderr: bad ? bad.stderr : '',
          extra: { each: rs.map((r) => +r.seconds.toFixed(3)), how },
          note: `each ${rs.map((r) => r.seconds.toFixed(2)).join(', ')} s (${how.join(', ')})`,
        }
      },
      verify: () => par.map((d) => ref.same(d.path)).find(Boolean) ?? null,
      after: () => ({ requests: link.server.requests(fmt.file, mark).filter((r) => r.method === 'GET').length }),
    })
  }
}
