// Command line and environment of npm run bench: see HELP.
import { join, resolve } from 'node:path'
import { FORMATS } from './image.mjs'
import { COLD_FORMATS } from './cold.mjs'
import { parseLinks } from './netns.mjs'

const slug = (f) => (f.key === 'raw' ? 'raw' : f.key.replace('raw+', '').replace(' ', '-'))
const SLUGS = [...new Set([...FORMATS, ...COLD_FORMATS].map(slug))]
export const DEFAULT_LINKS = '800mbit:0,200mbit:20'

export const HELP = `usage: node test/bench/run.mjs [options]      (or: npm run bench -- [options])

Benchmarks the installed create (and export, import) against the original provider's
pipelines ("xz -dc IMG | dd of=DISK bs=2M conv=fsync", ...) and the limits (dd of the raw
image; the decompressor alone), from a local path and a loopback HTTP server (cold and warm
download cache), onto a fresh sparse file and a loop device holding old data. Every written
disk is compared with the image; a difference or a failed run makes the exit status 1.
Needs root (loop devices, drop_caches) and: time qemu-utils xz-utils bzip2 gzip zstd curl
e2fsprogs fdisk (optional, used when present: lbzip2 or pbzip2).

After it, the cold path of issue 15 (cold.mjs, report in RESULTS-cold.md and results-cold.json):
cold creates (download cache empty) of raw, raw+gz, raw+bzip2, raw+xz multi-block, raw+zst,
qcow2 and auto (image_type unset, on the raw+gz file) onto a fresh sparse file, on the host's
loopback and over shaped links (a network namespace per link, its loopback rate-limited with
tbf, the server waiting a delay before each answer; server, create and curl inside it; deleted
at the end, also on Ctrl-C), against curl -o /dev/null alone on the same link, the decoder
alone on the local file, the disk alone, curl -o FILE + sync (loopback) and the original
provider's curl -o FILE then decompress | dd (qemu-img dd for qcow2); then N parallel cold
creates of one URL (the server's GET count, the time against one cold create); then
node-fetch (as lib/image uses it) against Node's http.get and curl, to /dev/null and a file.
The full bench (RESULTS.md) also rates its loopback cold creates against issue 15's limit.

Options (environment variable in brackets):
  --focus cold       only the cold path: the shaped links, the parallel creates, the loopback
                     cold creates and their limits, node-fetch; RESULTS.md is left alone.
                     Its report is RESULTS-cold.md (results-cold.json). At the default size
                     and repeats (--cold-repeat 2, --link-repeat 1) it took 12.6 min on this
                     2-core machine, quiet (2026-12-02); the full bench is about 95 min with
                     the cold path's default 3 repeats (77 without it: --no-cold; estimated)
  --size MIB         test image size [BENCH_SIZE_MIB], default 1024
  --repeat N         runs per measurement, the median is reported [BENCH_REPEAT], default 3
  --slow-repeat N    runs for the slow formats [BENCH_SLOW_REPEAT], default 3 (never more
                     than --repeat): 1 saves ~8 min of the ~75 of a full run on 2 cores
  --slow-formats L   which formats are slow, comma-separated, default bzip2
  --fast-repeat N    runs for the fast formats [BENCH_FAST_REPEAT], default 5 (at least
                     --repeat): their runs take about a second, where one slow run of a
                     shared virtual disk would otherwise decide a ratio
  --fast-formats L   which formats are fast, default raw,qcow2,zst
  --io-repeat N      runs for export and import [BENCH_IO_REPEAT], default 5 (at least
                     --repeat), for the same reason
  --quick            --size 128 --repeat 1, results into the work dir (unless --out)
  --formats LIST     comma-separated subset of ${SLUGS.join(',')}
                     (auto is the cold path's only, xz-single the full bench's only)
  --targets LIST     subset of file,loop
  --sources LIST     subset of path,url-cold,url-warm
  --no-export        skip export and import
  --no-cold          the full bench without the cold path
  --links LIST       shaped links, RATE:DELAY_MS each [BENCH_LINKS], default ${DEFAULT_LINKS}
                     (tbf on a namespace's loopback; the delay is the server's, before each
                     answer); "none" for the host's loopback only
  --cold-repeat N    runs of each cold-path measurement on loopback, the local limits and
                     node-fetch [BENCH_COLD_REPEAT], default 3 (2 with --focus cold)
  --link-repeat N    runs of each measurement on a shaped link [BENCH_LINK_REPEAT], default
                     1: a shaped link's times vary little, and its raw runs take a minute
  --cold-targets L   subset of file,loop for the cold path, default file
  --parallel N       parallel cold creates of one URL [BENCH_PARALLEL], default 4
  --parallel-format F  their format, default raw (the network is its limit)
  --parallel-links L   where: loopback and/or link names (such as 800mbit-0ms), default
                     loopback and the first shaped link
  --no-fetch         skip node-fetch vs http vs curl
  --work DIR         images cache and scratch space [BENCH_WORK_DIR], default /var/tmp/simpleimage-bench
  --out DIR          where RESULTS.md and results.json go, default test/bench
  --no-build         use dist/ as it is (default: npm run build first)
  --clean            remove the work dir, cached images included, at the end
  --report-only FILE render RESULTS.md (and results.json) into --out again from a
                     results.json, measuring nothing; RESULTS-cold.md from a results-cold.json
  -h, --help         this text

Generated images are kept in <work>/images-<size>M and reused while the generator version
matches. Example quick run: BENCH_SIZE_MIB=128 npm run bench -- --quick`

export function options(argv, here) {
  const env = process.env
  const o = { size: env.BENCH_SIZE_MIB, repeat: env.BENCH_REPEAT, slowRepeat: env.BENCH_SLOW_REPEAT, fastRepeat: env.BENCH_FAST_REPEAT, ioRepeat: env.BENCH_IO_REPEAT, work: env.BENCH_WORK_DIR || '/var/tmp/simpleimage-bench', build: true, exportImport: true, clean: false,
    cold: true, fetch: true, links: env.BENCH_LINKS, coldRepeat: env.BENCH_COLD_REPEAT, linkRepeat: env.BENCH_LINK_REPEAT, parallel: env.BENCH_PARALLEL }
  const list = (v, all) => {
    const xs = String(v).split(',').map((s) => s.trim()).filter(Boolean)
    const bad = xs.filter((x) => !all.includes(x))
    if (bad.length) throw new Error(`unknown ${bad.join(', ')}; choose from ${all.join(',')}`)
    return xs
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (argv[i + 1] === undefined) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '-h' || a === '--help') o.help = true
    else if (a === '--size') o.size = val()
    else if (a === '--repeat') o.repeat = val()
    else if (a === '--slow-repeat') o.slowRepeat = val()
    else if (a === '--io-repeat') o.ioRepeat = val()
    else if (a === '--fast-repeat') o.fastRepeat = val()
    else if (a === '--fast-formats') o.fastFormats = list(val(), FORMATS.map(slug))
    else if (a === '--slow-formats') o.slowFormats = list(val(), FORMATS.map(slug))
    else if (a === '--quick') o.quick = true
    else if (a === '--formats') o.formats = list(val(), SLUGS)
    else if (a === '--targets') o.targets = list(val(), ['file', 'loop'])
    else if (a === '--sources') o.sources = list(val(), ['path', 'url-cold', 'url-warm'])
    else if (a === '--no-export') o.exportImport = false
    else if (a === '--focus') o.focus = list(val(), ['cold'])[0]
    else if (a === '--no-cold') o.cold = false
    else if (a === '--links') o.links = val()
    else if (a === '--cold-repeat') o.coldRepeat = val()
    else if (a === '--link-repeat') o.linkRepeat = val()
    else if (a === '--cold-targets') o.coldTargets = list(val(), ['file', 'loop'])
    else if (a === '--parallel') o.parallel = val()
    else if (a === '--parallel-format') o.parallelFormat = list(val(), COLD_FORMATS.map(slug))[0]
    else if (a === '--parallel-links') o.parallelLinks = val().split(',').map((x) => x.trim()).filter(Boolean)
    else if (a === '--no-fetch') o.fetch = false
    else if (a === '--work') o.work = val()
    else if (a === '--out') o.out = val()
    else if (a === '--no-build') o.build = false
    else if (a === '--clean') o.clean = true
    else if (a === '--report-only') o.reportOnly = val()
    else throw new Error(`unknown option ${a} (see --help)`)
  }
  const int = (v, dflt, name) => {
    const n = v === undefined || v === '' ? dflt : Number(v)
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${v}`)
    return n
  }
  o.size = int(o.size, o.quick ? 128 : 1024, 'size')
  if (o.size < 64) throw new Error('size must be at least 64 MiB (the image needs its partitions)')
  o.repeat = int(o.repeat, o.quick ? 1 : 3, 'repeat')
  o.slowRepeat = Math.min(o.repeat, int(o.slowRepeat, 3, 'slow-repeat'))
  o.fastRepeat = Math.max(o.repeat, int(o.fastRepeat, o.quick ? 1 : 5, 'fast-repeat'))
  o.ioRepeat = Math.max(o.repeat, int(o.ioRepeat, o.quick ? 1 : 5, 'io-repeat'))
  o.coldFormats = COLD_FORMATS.filter((f) => !o.formats || o.formats.includes(slug(f))).map((f) => f.key)
  o.formats = FORMATS.filter((f) => !o.formats || o.formats.includes(slug(f)))
  o.coldRepeat = int(o.coldRepeat, o.quick ? 1 : o.focus === 'cold' ? 2 : 3, 'cold-repeat')
  o.linkRepeat = int(o.linkRepeat, 1, 'link-repeat')
  o.parallel = int(o.parallel, 4, 'parallel')
  o.parallelFormat = COLD_FORMATS.find((f) => slug(f) === (o.parallelFormat ?? 'raw')).key
  o.links = o.links === 'none' ? [] : parseLinks(o.links ?? DEFAULT_LINKS)
  o.parallelLinks ??= ['loopback', ...o.links.slice(0, 1).map((l) => l.name)]
  o.coldTargets ??= ['file']
  if (o.focus === 'cold') o.cold = true
  o.slowFormats = FORMATS.filter((f) => (o.slowFormats ?? ['bzip2']).includes(slug(f))).map((f) => f.key)
  o.fastFormats = FORMATS.filter((f) => (o.fastFormats ?? ['raw', 'qcow2', 'zst']).includes(slug(f)) && !o.slowFormats.includes(f.key)).map((f) => f.key)
  o.targets ??= ['file', 'loop']
  o.sources ??= ['path', 'url-cold', 'url-warm']
  o.out = resolve(o.out ?? (o.quick ? join(o.work, 'results-quick') : here))
  return o
}
