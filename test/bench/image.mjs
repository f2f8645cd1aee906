// The benchmark's test image, shaped like a Debian cloud image: a GPT with a BIOS boot
// partition, an EFI system partition and an ext4 root made by mke2fs from a tree of
// synthetic files (so metadata and file data sit where a real filesystem puts them), about
// 75 % zeros. Built once per size, made fully allocated (a downloaded image is not sparse)
// and kept with its compressed forms under <work>/images-<size>M, reused while its
// GENERATOR stamp matches.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, utimesSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { Content } from './content.mjs'
import { MiB, q, sh, log } from './util.mjs'

/** Bump when the image or its formats change: cached images of another version are rebuilt. */
export const GENERATOR = 'simpleimage-bench-image/1'

/** Every format the bench measures: how it is made and which image_type create gets. */
export const FORMATS = [
  { key: 'raw', type: 'raw', file: 'image.raw' },
  { key: 'raw+gz', type: 'raw+gz', file: 'image.raw.gz', make: 'gzip -6 -c image.raw > image.raw.gz' },
  { key: 'raw+bzip2', type: 'raw+bzip2', file: 'image.raw.bz2', make: 'bzip2 -9 -c image.raw > image.raw.bz2' },
  { key: 'raw+xz single', type: 'raw+xz', file: 'image.raw.xz', make: 'xz -6 -T1 -c image.raw > image.raw.xz' },
  { key: 'raw+xz multi', type: 'raw+xz', file: 'image-mb.raw.xz', make: 'xz -6 -T0 --block-size=16MiB -c image.raw > image-mb.raw.xz' },
  { key: 'qcow2', type: 'qcow2', file: 'image.qcow2', make: 'qemu-img convert -f raw -O qcow2 image.raw image.qcow2' },
  { key: 'raw+zst', type: 'raw+zst', file: 'image.raw.zst', make: 'zstd -q -T0 -3 -c image.raw > image.raw.zst' },
]

const SEED = 20240611
const FIXED_TIME = 1700000000 // mtimes and mke2fs's clock, so that rebuilds differ as little as possible
const GPT_TYPES = {
  bios: '21686148-6449-6E6F-744E-656564454649',
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  linux: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
}

/** Partition layout in MiB: BIOS boot 1-4, ESP (124 MiB as Debian's, less on small
 *  images), root up to the last MiB (which holds the backup GPT). */
export function layout(sizeMiB) {
  const esp = Math.max(8, Math.min(124, Math.floor(sizeMiB / 8)))
  return { bios: { start: 1, size: 3 }, esp: { start: 4, size: esp }, root: { start: 4 + esp, size: sizeMiB - 5 - esp } }
}

/** The root filesystem's files: kernel and initrd (compressed), then executables and
 *  libraries, text and gzip'ed docs by byte share, sizes log-normal as on a real system. */
function planTree(budget, rng) {
  const files = [
    { path: 'boot/vmlinuz-6.1.0-18-amd64', kind: 'compressed', size: Math.round(budget * 0.03) },
    { path: 'boot/initrd.img-6.1.0-18-amd64', kind: 'compressed', size: Math.round(budget * 0.12) },
    { path: 'boot/System.map-6.1.0-18-amd64', kind: 'text', size: Math.round(budget * 0.018) },
  ]
  const used = files.reduce((a, f) => a + f.size, 0)
  const left = { binary: (budget - used) * 0.58, text: (budget - used) * 0.26, compressed: (budget - used) * 0.16 }
  const shape = {
    binary: { median: 24 << 10, sigma: 1.6, max: 8 * MiB, dirs: ['usr/bin', 'usr/lib/x86_64-linux-gnu', 'usr/lib/modules/6.1.0-18-amd64/kernel'], ext: ['', '.so.1', '.ko'] },
    text: { median: 6 << 10, sigma: 1.5, max: 4 * MiB, dirs: ['usr/share/perl5', 'usr/lib/python3/dist-packages', 'var/lib/dpkg/info', 'var/lib/apt/lists'], ext: ['.pm', '.py', '.list', '_Packages'] },
    compressed: { median: 3 << 10, sigma: 1.3, max: 1 * MiB, dirs: ['usr/share/doc', 'usr/share/man/man1'], ext: ['.changelog.gz', '.1.gz'] },
  }
  const count = { binary: 0, text: 0, compressed: 0 }
  for (;;) {
    const kinds = Object.keys(left).filter((k) => left[k] > 0)
    if (kinds.length === 0) break
    const total = kinds.reduce((a, k) => a + left[k], 0)
    let pick = rng.u32() / 4294967296 * total
    const kind = kinds.find((k) => (pick -= left[k]) < 0) ?? kinds[0]
    const s = shape[kind]
    const size = Math.max(64, Math.min(s.max, Math.ceil(left[kind]), rng.logNormal(s.median, s.sigma)))
    const d = rng.int(s.dirs.length)
    const n = count[kind]++
    files.push({ path: `${s.dirs[d]}/${String(Math.floor(n / 200)).padStart(3, '0')}/f${n}${s.ext[d]}`, kind, size })
    left[kind] -= size
  }
  return files
}

function writeAt(fd, buf, offset) {
  for (let done = 0; done < buf.length; ) done += writeSync(fd, buf, done, buf.length - done, offset + done)
}

/** Builds image.raw in dir (sparse while building, fully allocated at the end). */
function buildRaw(dir, sizeMiB) {
  const content = new Content(SEED)
  const L = layout(sizeMiB)
  const tmp = join(dir, 'build.tmp')
  rmSync(tmp, { force: true })
  sh(`truncate -s ${sizeMiB}M ${q(tmp)}`)
  const p = (part, type, name, uuidTail) => `start=${part.start * 2048}, size=${part.size * 2048}, type=${type}, name="${name}", uuid=6C3F0A5E-1B2D-4C8E-9F00-0000000000${uuidTail}`
  sh(`sfdisk --no-reread --no-tell-kernel -q ${q(tmp)}`, {
    input: ['label: gpt', 'label-id: 6C3F0A5E-1B2D-4C8E-9F00-000000000000', p(L.bios, GPT_TYPES.bios, 'BIOS', '14'), p(L.esp, GPT_TYPES.esp, 'EFI', '15'), p(L.root, GPT_TYPES.linux, 'root', '01'), ''].join('\n'),
  })
  const fd = openSync(tmp, 'r+')
  try {
    writeAt(fd, content.binary(440), 0) // boot code in the protective MBR
    writeAt(fd, content.binary(96 << 10), L.bios.start * MiB) // GRUB's core image
    // ESP: a boot sector, two FAT copies, then shim/GRUB/MOK manager; BOOTX64.EFI is shim again
    const esp = L.esp.start * MiB
    const scale = Math.min(1, (L.esp.size * MiB) / 4 / (5.4 * MiB))
    const bins = [0.95, 2.6, 0.85, 0.08].map((m) => content.binary(Math.round(m * MiB * scale)))
    bins.push(bins[0])
    const data = Buffer.concat(bins)
    const fat = Buffer.alloc(Math.ceil(data.length / 4096) * 4)
    for (let i = 0; i < fat.length / 4; i++) fat.writeUInt32LE(i + 3, i * 4)
    writeAt(fd, content.binary(512), esp)
    writeAt(fd, fat, esp + 32 * 1024)
    writeAt(fd, fat, esp + 32 * 1024 + 512 * 1024)
    writeAt(fd, data, esp + 2 * MiB)
  } finally {
    closeSync(fd)
  }
  // root: about 23.5 % of the image in files, which with metadata gives ~75 % zeros overall
  const tree = join(dir, 'tree.tmp')
  rmSync(tree, { recursive: true, force: true })
  const files = planTree(Math.round(sizeMiB * MiB * 0.235), content.rng)
  const dirs = new Set()
  for (const f of files) {
    const path = join(tree, f.path)
    const parent = path.slice(0, path.lastIndexOf('/'))
    if (!dirs.has(parent)) mkdirSync(parent, { recursive: true }), dirs.add(parent)
    writeFileSync(path, content.make(f.kind, f.size))
    utimesSync(path, FIXED_TIME, FIXED_TIME)
  }
  sh(`find ${q(tree)} -type d -exec touch -h -d @${FIXED_TIME} {} +`)
  const uuid = '3a1c9e0b-5d2f-4e6a-8b7c-1d2e3f405162'
  sh(`E2FSPROGS_FAKE_TIME=${FIXED_TIME} mke2fs -t ext4 -F -q -U ${uuid} -L root ` +
    `-E offset=${L.root.start * MiB},nodiscard,root_owner=0:0,hash_seed=${uuid} -d ${q(tree)} ${q(tmp)} ${L.root.size * 1024}k`)
  rmSync(tree, { recursive: true, force: true })
  sh(`cp --sparse=never ${q(tmp)} ${q(join(dir, 'image.raw'))} && rm -f ${q(tmp)}`)
  const bytes = files.reduce((a, f) => a + f.size, 0)
  const by = (k) => files.filter((f) => f.kind === k).reduce((a, f) => a + f.size, 0)
  return { files: files.length, bytes, binary: by('binary'), text: by('text'), compressed: by('compressed'), layout: L }
}

/** Share of non-zero bytes and of all-zero blocks: what zero skipping can gain. */
function zeroStats(path) {
  const fd = openSync(path, 'r')
  const buf = Buffer.alloc(4 * MiB)
  let nonzeroBytes = 0, blocks4k = 0, zero4k = 0, blocks4m = 0, zero4m = 0
  try {
    for (let off = 0, n; (n = readSync(fd, buf, 0, buf.length, off)) > 0; off += n) {
      let bigZero = true
      for (let b = 0; b < n; b += 4096) {
        let zero = true
        for (let i = b; i < Math.min(b + 4096, n); i++) if (buf[i] !== 0) { nonzeroBytes++; zero = false }
        blocks4k++
        if (zero) zero4k++
        else bigZero = false
      }
      blocks4m++
      if (bigZero) zero4m++
    }
  } finally {
    closeSync(fd)
  }
  return { nonzeroBytes, zero4kPct: (100 * zero4k) / blocks4k, zero4mPct: (100 * zero4m) / blocks4m }
}

/** The images for sizeMiB, built if absent or stale. Returns their paths and the shape. */
export async function ensureImages(workDir, sizeMiB) {
  const dir = join(workDir, `images-${sizeMiB}M`)
  const metaFile = join(dir, 'meta.json')
  let meta = existsSync(metaFile) ? JSON.parse(readFileSync(metaFile, 'utf8')) : null
  const complete = meta && meta.generator === GENERATOR && FORMATS.every((f) => existsSync(join(dir, f.file)))
  if (!complete) {
    log(`building the ${sizeMiB} MiB test image and its formats in ${dir} (once; takes a while)`)
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    const t0 = Date.now()
    const tree = buildRaw(dir, sizeMiB)
    log(`image.raw built in ${((Date.now() - t0) / 1000).toFixed(0)} s; compressing`)
    // two at a time on two cores; the slow single-threaded ones first
    const jobs = FORMATS.filter((f) => f.make).sort((a, b) => (b.key.includes('single') || b.key.includes('bzip2')) - (a.key.includes('single') || a.key.includes('bzip2')))
    const { exec } = await import('node:child_process')
    const run = (cmd) => new Promise((res, rej) => exec(`set -o pipefail; ${cmd}`, { cwd: dir, shell: '/bin/bash' }, (e, _o, err) => (e ? rej(new Error(`${cmd}: ${err}`)) : res())))
    const worker = async () => { for (let f; (f = jobs.shift()); ) { const t = Date.now(); await run(f.make); log(`  ${f.file} in ${((Date.now() - t) / 1000).toFixed(0)} s`) } }
    await Promise.all([worker(), worker()])
    const sizes = Object.fromEntries(FORMATS.map((f) => [f.key, Number(sh(`stat -c %s ${q(join(dir, f.file))}`).trim())]))
    meta = { generator: GENERATOR, sizeMiB, bytes: sizeMiB * MiB, tree, zeros: zeroStats(join(dir, 'image.raw')), sizes, builtSeconds: Math.round((Date.now() - t0) / 1000) }
    writeFileSync(metaFile, JSON.stringify(meta, null, 2) + '\n')
  }
  return { dir, meta, path: (f) => join(dir, f.file) }
}

/** One line describing the image for the results file. */
export function describe(meta) {
  const L = meta.tree.layout
  const m = (b) => (b / MiB).toFixed(0)
  const t = meta.tree
  return `${meta.sizeMiB} MiB, GPT: BIOS boot ${L.bios.size} MiB, EFI ${L.esp.size} MiB (FAT-like, shim/GRUB binaries), ` +
    `ext4 root ${L.root.size} MiB made by mke2fs -d from ${t.files} files (${m(t.bytes)} MiB: ${m(t.binary)} binary, ${m(t.text)} text, ${m(t.compressed)} already compressed); ` +
    `non-zero bytes ${((100 * meta.zeros.nonzeroBytes) / meta.bytes).toFixed(1)} %, all-zero 4 KiB blocks ${meta.zeros.zero4kPct.toFixed(1)} %, all-zero 4 MiB blocks ${meta.zeros.zero4mPct.toFixed(1)} %`
}
