// Disk 0 as the node sees it: a block device (plain, drbd, ext, ...) or, with the file
// template, a regular sparse file. We write either one directly; a loop device is only
// attached for the hooks, which expect a block device in TARGET_DISK_DEVICE.
import { open, readFile, stat, type FileHandle } from 'node:fs/promises'
import { $ } from 'zx/core'
import { Failure } from '../errors.js'
import { defer } from '../cleanup.js'
import { runBound } from '../child.js'
import { debug, formatBytes, info } from '../log.js'

export interface TargetDisk {
  path: string
  kind: 'block' | 'file'
  /** Bytes we may write: the device's size, or DISK_0_SIZE when Ganeti says less. */
  size: number
  /** True when every byte already reads as zero (a file with no blocks allocated). */
  knownZero: boolean
  ino: number
  dev: number
  rdev: number
  /** The descriptor holding the disk's lock (lib/disk/disk-lock.ts), for the children that write it. */
  lockFd?: number
}

/** Linux's encoding of dev_t, as stat() returns it in st_rdev. */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  const big = BigInt(rdev)
  const major = Number(((big >> 8n) & 0xfffn) | ((big >> 32n) & ~0xfffn))
  const minor = Number((big & 0xffn) | ((big >> 12n) & ~0xffn))
  return { major, minor }
}

async function blockDeviceSize(rdev: number): Promise<number> {
  const { major, minor } = deviceNumbers(rdev)
  const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')
  return Number(sectors.trim()) * 512
}

export async function inspectTarget(path: string, declaredSize?: number): Promise<TargetDisk> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new Failure(`disk 0 (${path}) cannot be opened (${err.code})`, 'check that the instance disks are activated on this node')
  })
  let kind: TargetDisk['kind']
  let size: number
  if (st.isBlockDevice()) {
    kind = 'block'
    size = await blockDeviceSize(st.rdev)
  } else if (st.isFile()) {
    kind = 'file'
    size = st.size
  } else {
    throw new Failure(`disk 0 (${path}) is neither a block device nor a regular file`, 'check the disk template of the instance')
  }
  if (declaredSize !== undefined && declaredSize > 0 && declaredSize < size) size = declaredSize
  const knownZero = kind === 'file' && st.blocks === 0
  debug(`disk 0: ${path} ${kind}, ${formatBytes(size)}${knownZero ? ', all zero (nothing allocated)' : ''}`)
  return { path, kind, size, knownZero, ino: st.ino, dev: st.dev, rdev: st.rdev }
}

/** A file disk shorter than DISK_0_SIZE gets its full size back before anything else: a
 *  create killed while a decompressor wrote the emptied file (lib/disk/direct.ts) leaves it
 *  short, and every later create would then size disk 0 by the file. */
export async function restoreFileSize(path: string, declaredSize: number | undefined): Promise<void> {
  if (declaredSize === undefined || declaredSize <= 0) return
  const st = await stat(path)
  if (!st.isFile() || st.size >= declaredSize) return
  const fh = await open(path, 'r+')
  try {
    await fh.truncate(declaredSize)
  } finally {
    await fh.close()
  }
  info(`disk 0 (${path}) was ${formatBytes(st.size)}, shorter than DISK_0_SIZE: given its ${formatBytes(declaredSize)} back (an earlier create was killed while writing it?)`)
}

async function writeZeroesSupported(rdev: number): Promise<boolean> {
  const { major, minor } = deviceNumbers(rdev)
  for (const queue of [`/sys/dev/block/${major}:${minor}/queue`, `/sys/dev/block/${major}:${minor}/../queue`]) {
    const text = await readFile(`${queue}/write_zeroes_max_bytes`, 'utf8').catch(() => null)
    if (text !== null) return Number(text.trim()) > 0
  }
  return false
}

/** Makes the first `length` bytes of the target read as zero where that is cheap: a hole
 *  punched into a file disk, or BLKZEROOUT on a device that offloads it (no data is
 *  written). Then the writer may skip the image's zero blocks and still leave nothing of
 *  the disk's old content in the image's range. Returns whether it did; where it failed,
 *  the writer writes every block, which is slower but as correct. */
export async function zeroCheaply(target: TargetDisk, length: number): Promise<boolean> {
  if (target.knownZero) return true
  const len = Math.min(target.size, Math.ceil(length / 4096) * 4096)
  // they write disk 0: bound to our life and holding its lock, as every writer of it
  const range = ['--offset', '0', '--length', String(len), target.path]
  let argv: [string, string[]]
  if (target.kind === 'file') argv = ['fallocate', ['--punch-hole', '--keep-size', ...range]]
  else if (await writeZeroesSupported(target.rdev)) argv = ['blkdiscard', ['--zeroout', ...range]]
  else {
    debug('disk 0 cannot zero ranges cheaply: every block is written')
    return false
  }
  debug(`running ${argv[0]} ${argv[1].join(' ')}`)
  const done = await runBound(argv[0], argv[1], target.lockFd !== undefined ? [target.lockFd] : []).catch((err: Error) => ({ code: null, signal: null, stderr: err.message }))
  if (done.signal) throw new Failure(`zeroing disk 0 was stopped (${done.signal})`, 'see the messages above')
  if (done.code !== 0) {
    info(`zeroing disk 0 first failed (${done.stderr.trim().split('\n')[0] || (done.signal ?? `exit ${done.code}`)}): every block is written`)
    return false
  }
  info(`zeroed ${formatBytes(len)} of disk 0 (${target.kind === 'file' ? 'hole punched' : 'BLKZEROOUT'}): zero blocks of the image need no writing`)
  target.knownZero = true
  return true
}

/** Whether path is the target itself (say, through a symlink). */
export async function sameFile(path: string, target: TargetDisk): Promise<boolean> {
  const st = await stat(path)
  return st.ino === target.ino && st.dev === target.dev
}

/** Opens the target for writing without creating or truncating it. */
export async function openForWrite(path: string): Promise<FileHandle> {
  return open(path, 'r+')
}

/** A block device for the hooks: the disk itself, or a loop device over a file disk that
 *  stays attached until the script ends, on every path. */
export async function blockDeviceFor(target: TargetDisk): Promise<string> {
  if (target.kind === 'block') return target.path
  const device = (await $`losetup --find --show --partscan ${target.path}`.quiet()).stdout.trim()
  defer(`loop device ${device}`, async () => {
    await $`losetup --detach ${device}`.quiet()
    debug(`detached ${device}`)
  })
  info(`attached ${target.path} as ${device} for the hooks`)
  // loop devices do not always scan their partitions by themselves here
  await $`partx --update ${device}`.quiet().nothrow()
  return device
}

const SPOIL_BYTES = 1 << 20

/** Zeroes disk 0's first and last MiB (boot sector, partition tables, GPT's backup, the
 *  start of the first filesystem) and syncs: an image found wrong after it was written must
 *  leave nothing that boots or mounts as if it were a valid install. */
export async function spoilDisk(target: TargetDisk): Promise<void> {
  const fh = await openForWrite(target.path)
  try {
    const zeros = Buffer.alloc(Math.min(SPOIL_BYTES, target.size))
    await fh.write(zeros, 0, zeros.length, 0)
    if (target.size > zeros.length) await fh.write(zeros, 0, zeros.length, target.size - zeros.length)
    await fh.sync()
  } finally {
    await fh.close()
  }
  target.knownZero = false
}
