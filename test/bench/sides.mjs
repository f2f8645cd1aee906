// The commands compared: this provider's installed scripts, the original bash provider's
// pipelines, and the limits (the disk's speed with dd, the decompressor alone).
import { have, q } from './util.mjs'

const GANETI_PATH = '/sbin:/bin:/usr/sbin:/usr/bin'

/** The environment Ganeti gives OS scripts (clean, its PATH, its variables). */
export function ganetiEnv(ctx, vars) {
  return {
    PATH: GANETI_PATH, OS_API_VERSION: '20', OS_NAME: 'simpleimage', OS_VARIANT: ctx.variant, INSTANCE_OS: `simpleimage+${ctx.variant}`,
    INSTANCE_NAME: 'bench.example.org', DEBUG_LEVEL: '0', HYPERVISOR: 'fake', DISK_COUNT: '1', NIC_COUNT: '0',
    SIMPLEIMAGE_CONFIG_DIR: ctx.configDir, ...vars,
  }
}

/** ours: the installed create onto disk 0, from a path or a URL. A format without a type
 *  (auto) leaves image_type unset, as an instance added without it. */
export function oursCreate(ctx, fmt, image, disk) {
  return {
    cmd: q(`${ctx.osDir}/create`),
    cwd: ctx.osDir, // Ganeti runs OS scripts in the OS directory
    env: ganetiEnv(ctx, { OSP_IMAGE: image, ...(fmt.type ? { OSP_IMAGE_TYPE: fmt.type } : {}), DISK_0_PATH: disk.path, DISK_0_SIZE: String(Math.floor(disk.size / 1048576)) }),
  }
}

/** The original provider: single-threaded decompressor | dd bs=2M, then an fsync of the
 *  target so that this side too is timed to durable data. For URLs it downloaded first. */
export function pipeline(fmt, image, disk) {
  const d = q(disk.path)
  const i = q(image)
  switch (fmt.type) {
    case 'raw': return `dd if=${i} of=${d} bs=2M conv=fsync status=none`
    case 'qcow2': return `qemu-img dd -f qcow2 -O raw bs=2M if=${i} of=${d} && sync ${d}`
    default: return `${DECOMPRESS_1[fmt.type]} ${i} | dd of=${d} bs=2M conv=fsync status=none`
  }
}

export const pipelineFromUrl = (fmt, url, tmp, disk) => `curl -s -f -o ${q(tmp)} ${q(url)} && ${pipeline(fmt, tmp, disk)}`

/** The single-threaded decompressors the original used. */
const DECOMPRESS_1 = { 'raw+gz': 'gzip -dc', 'raw+bzip2': 'bzip2 -dc', 'raw+xz': 'xz -dc', 'raw+zst': 'zstd -q -dc' }

/** The fastest decompressor installed: what a writer could at best be fed with. */
export function bestDecompressor(fmt) {
  switch (fmt.type) {
    // create decodes gzip in-process, faster than pigz: its own decoder is the limit
    case 'raw+gz': return `${q(process.execPath)} ${q(new URL('./gunzip.mjs', import.meta.url).pathname)}`
    case 'raw+bzip2': return have('lbzip2') ? 'lbzip2 -dc' : have('pbzip2') ? 'pbzip2 -dc' : 'bzip2 -dc'
    case 'raw+xz': return 'xz -T0 -dc'
    case 'raw+zst': return 'zstd -q -dc'
    default: return null
  }
}

export const parallelBzip2 = () => have('lbzip2') || have('pbzip2')

/** Limit cells for one format: the decompressor alone into /dev/null (the best one, and
 *  the original's one where it differs), qemu-img convert to a fresh sparse file for qcow2,
 *  reading the file for raw, and the download alone for URL runs. With all=false only the
 *  best decoder (alone, and into a pipe): it is measured again with every target's runs,
 *  under the same load. Onto a file disk, xz and zstd also write a file themselves, as
 *  create has them do there (lib/disk/direct.ts). */
export function decoderLimits(fmt, image, url, scratch, all = true, target = undefined) {
  const cells = []
  const best = bestDecompressor(fmt)
  if (fmt.type === 'raw') {
    cells.push({ side: 'decode', label: 'cat > /dev/null (reading the image)', cmd: `cat ${q(image)} > /dev/null` })
  } else if (fmt.type === 'qcow2') {
    cells.push({ side: 'decode', label: 'qemu-img convert → sparse file', cmd: `qemu-img convert -f qcow2 -O raw ${q(image)} ${q(scratch)} && sync ${q(scratch)}`, output: scratch })
  } else if (best) {
    const label = fmt.type === 'raw+gz' ? "Node's zlib (create's gzip decoder), output discarded" : `${best} > /dev/null`
    cells.push({ side: 'decode', label, cmd: `${best} ${q(image)} > /dev/null` })
    // what a writer other than the decompressor itself is fed at best: its output through a
    // pipe (only a regular file takes a decompressor's own sparse output); gzip is in-process
    if (fmt.type !== 'raw+gz') cells.push({ side: 'decode-pipe', label: `${best} | cat > /dev/null`, cmd: `${best} ${q(image)} | cat > /dev/null` })
    // xz makes a regular file sparse by itself; zstd only when told to, on stdout
    const sparse = fmt.type === 'raw+zst' ? ' --sparse' : ''
    if (target === 'file' && ['raw+xz', 'raw+zst'].includes(fmt.type)) cells.push({ side: 'decode-file', label: `${best}${sparse} > FILE, sync FILE`, cmd: `${best}${sparse} ${q(image)} > ${q(scratch)} && sync ${q(scratch)}`, output: scratch })
    const single = DECOMPRESS_1[fmt.type]
    // xz -T0 can only split multi-block files: for a single block it is the original's xz
    if (all && (fmt.type === 'raw+xz' ? fmt.key === 'raw+xz multi' : single !== best)) cells.push({ side: 'decode1', label: `${single} > /dev/null`, cmd: `${single} ${q(image)} > /dev/null` })
  }
  if (all) {
    cells.push({ side: 'download', label: 'curl -o /dev/null', cmd: `curl -s -f -o /dev/null ${q(url)}` })
    // issue 15's limit of a cold create on loopback: the download into a file, durable
    cells.push(downloadToFile(url, scratch))
  }
  return cells
}

/** The download into a file and its sync: what a cold create must at least do to keep the
 *  image in its cache. */
export const downloadToFile = (url, file) => ({ side: 'download-file', label: 'curl -o FILE, sync FILE', cmd: `curl -s -f -o ${q(file)} ${q(url)} && sync ${q(file)}` })

/** The provider's fixed cost: starting a script that does nothing but print its usage. */
export const startup = (ctx) => ({ side: 'startup', label: 'create --help', cmd: `${q(ctx.osDir + '/create')} --help > /dev/null`, cwd: ctx.osDir, env: ganetiEnv(ctx, {}) })

/** The disk's limits. "write" is the issue's: dd of the raw image, read cold, synced; it
 *  also pays for reading 1 GiB that a compressed image does not need, so the disk alone is
 *  measured with the image already in the page cache ("cached": run.mjs reads it after the
 *  cache drop), and with zero blocks skipped (conv=sparse), which is what a zero-skipping
 *  writer can reach: correct on the fresh sparse file as it is, on the loop device after
 *  zeroing it with blkdiscard -z (which the loop driver does without writing zeros). */
export function writeLimits(raw, disk) {
  const dd = (conv) => `dd if=${q(raw)} of=${q(disk.path)} bs=4M conv=${conv} status=none`
  return [
    { side: 'write', label: 'dd bs=4M conv=fsync', cmd: dd('fsync') },
    { side: 'write-cached', label: 'the same, image in page cache', cmd: dd('fsync'), cached: true },
    disk.kind === 'file'
      ? { side: 'write-sparse', label: 'conv=sparse,fsync, image in page cache', cmd: dd('sparse,fsync'), cached: true }
      : { side: 'write-sparse', label: 'blkdiscard -z, then conv=sparse,fsync, image in page cache', cmd: `blkdiscard -z ${q(disk.path)} && ${dd('sparse,fsync')}`, cached: true },
  ]
}

/** export to a pipe (its size to fd 3), and the same with dd; import from a pipe. */
export function exportCells(ctx, disk) {
  return [
    { side: 'ours', cmd: `${q(ctx.osDir + '/export')} 3>/dev/null | cat > /dev/null`, cwd: ctx.osDir, env: ganetiEnv(ctx, { EXPORT_DEVICE: disk.path, EXPORT_DISK_PATH: disk.path, EXPORT_INDEX: '0', EXP_SIZE_FD: '3' }) },
    { side: 'dd', cmd: `dd if=${q(disk.path)} bs=4M status=none | cat > /dev/null` },
  ]
}

export function importCells(ctx, raw, disk) {
  return [
    { side: 'ours', cmd: `cat ${q(raw)} | ${q(ctx.osDir + '/import')}`, cwd: ctx.osDir, env: ganetiEnv(ctx, { IMPORT_DEVICE: disk.path, IMPORT_DISK_PATH: disk.path, IMPORT_INDEX: '0' }) },
    { side: 'dd', cmd: `cat ${q(raw)} | dd of=${q(disk.path)} bs=4M conv=fsync status=none` },
  ]
}

/** export's own check: the whole stream equals the disk, and fd 3 got the disk's size. */
export const exportCheck = (ctx, disk, sizeFile) => ({
  cmd: `${q(ctx.osDir + '/export')} 3>${q(sizeFile)} | cmp - ${q(disk.path)}`,
  env: ganetiEnv(ctx, { EXPORT_DEVICE: disk.path, EXPORT_DISK_PATH: disk.path, EXPORT_INDEX: '0', EXP_SIZE_FD: '3' }),
})
