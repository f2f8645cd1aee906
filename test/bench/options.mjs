// Command line and environment of npm run bench: see HELP.
import { join, resolve } from 'node:path'
import { FORMATS } from './image.mjs'

const slug = (f) => (f.key === 'raw' ? 'raw' : f.key.replace('raw+', '').replace(' ', '-'))

export const HELP = `usage: node test/bench/run.mjs [options]      (or: npm run bench -- [options])

Benchmarks the installed create (and export, import) against the original provider's
pipelines ("xz -dc IMG | dd of=DISK bs=2M conv=fsync", ...) and the limits (dd of the raw
image; the decompressor alone), from a local path and a loopback HTTP server (cold and warm
download cache), onto a fresh sparse file and a loop device holding old data. Every written
disk is compared with the image; a difference or a failed run makes the exit status 1.
Needs root (loop devices, drop_caches) and: time qemu-utils xz-utils bzip2 gzip zstd curl
e2fsprogs fdisk (optional, used when present: lbzip2 or pbzip2).

Options (environment variable in brackets):
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
  --formats LIST     comma-separated subset of ${FORMATS.map(slug).join(',')}
  --targets LIST     subset of file,loop
  --sources LIST     subset of path,url-cold,url-warm
  --no-export        skip export and import
  --work DIR         images cache and scratch space [BENCH_WORK_DIR], default /var/tmp/simpleimage-bench
  --out DIR          where RESULTS.md and results.json go, default test/bench
  --no-build         use dist/ as it is (default: npm run build first)
  --clean            remove the work dir, cached images included, at the end
  --report-only FILE render RESULTS.md (and results.json) into --out again from a
                     results.json, measuring nothing
  -h, --help         this text

Generated images are kept in <work>/images-<size>M and reused while the generator version
matches. Example quick run: BENCH_SIZE_MIB=128 npm run bench -- --quick`

export function options(argv, here) {
  const env = process.env
  const o = { size: env.BENCH_SIZE_MIB, repeat: env.BENCH_REPEAT, slowRepeat: env.BENCH_SLOW_REPEAT, fastRepeat: env.BENCH_FAST_REPEAT, ioRepeat: env.BENCH_IO_REPEAT, work: env.BENCH_WORK_DIR || '/var/tmp/simpleimage-bench', build: true, exportImport: true, clean: false }
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
    else if (a === '--formats') o.formats = list(val(), FORMATS.map(slug))
    else if (a === '--targets') o.targets = list(val(), ['file', 'loop'])
    else if (a === '--sources') o.sources = list(val(), ['path', 'url-cold', 'url-warm'])
    else if (a === '--no-export') o.exportImport = false
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
  o.formats = FORMATS.filter((f) => !o.formats || o.formats.includes(slug(f)))
  o.slowFormats = FORMATS.filter((f) => (o.slowFormats ?? ['bzip2']).includes(slug(f))).map((f) => f.key)
  o.fastFormats = FORMATS.filter((f) => (o.fastFormats ?? ['raw', 'qcow2', 'zst']).includes(slug(f)) && !o.slowFormats.includes(f.key)).map((f) => f.key)
  o.targets ??= ['file', 'loop']
  o.sources ??= ['path', 'url-cold', 'url-warm']
  o.out = resolve(o.out ?? (o.quick ? join(o.work, 'results-quick') : here))
  return o
}
