// qcow2 images go through qemu-img with the input format named (never guessed). A qcow2
// file can point at other files (a backing file, an external data file); from an image
// someone else made that would let them read any file on the node, so both are refused:
// first from the header, before qemu-img opens anything, then from qemu-img info.
import { access, constants, open } from 'node:fs/promises'
import { join } from 'node:path'
import { $ } from 'zx/core'
import { Failure, ImageError } from '../errors.js'
import { spawnChild } from '../child.js'
import { lastMessage } from './decode.js'
import { debug } from '../log.js'
import type { TargetDisk } from './target.js'
import type { Progress } from './write.js'

export interface Qcow2Header {
  version: number
  backingFile: boolean
  externalDataFile: boolean
}

const HINT = 'flatten it first (qemu-img convert -O qcow2 IN OUT) or use a raw image'

/** Parses the fixed part of a qcow2 header (docs/interop/qcow2.txt in QEMU). */
export function parseQcow2Header(buf: Buffer): Qcow2Header | null {
  if (buf.length < 72 || buf.readUInt32BE(0) !== 0x514649fb) return null
  const version = buf.readUInt32BE(4)
  const backingFile = buf.readBigUInt64BE(8) !== 0n
  // incompatible feature bit 2: external data file (version 3 headers only)
  const externalDataFile = version >= 3 && buf.length >= 80 && (buf.readBigUInt64BE(72) & 4n) !== 0n
  return { version, backingFile, externalDataFile }
}

export async function checkQemuImg(): Promise<void> {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean)
  const found = await Promise.any(dirs.map((d) => access(join(d, 'qemu-img'), constants.X_OK))).then(() => true, () => false)
  if (!found) throw new Failure('qemu-img is not installed on this node, and image_type qcow2 needs it', 'install it with apt-get install qemu-utils')
}

/** Checks a qcow2 file and returns its virtual (disk) size. */
export async function inspectQcow2(path: string): Promise<number> {
  const fh = await open(path, 'r')
  const buf = Buffer.alloc(104)
  try {
    await fh.read(buf, 0, buf.length, 0)
  } finally {
    await fh.close()
  }
  const header = parseQcow2Header(buf)
  if (!header) throw new Failure('the image is not a qcow2 file (no QFI header)', 'check image_type, or the image file itself')
  if (header.backingFile) throw new Failure('the qcow2 image has a backing file, which is refused', HINT)
  if (header.externalDataFile) throw new Failure('the qcow2 image uses an external data file, which is refused', HINT)
  await checkQemuImg()
  const out = await $`qemu-img info -f qcow2 --output=json ${path}`.quiet().nothrow()
  if (out.exitCode !== 0) throw new ImageError(`qemu-img cannot read the image (${lastMessage(out.stderr) ?? `exit ${out.exitCode}`})`, 'the image file is corrupt or truncated: download or copy it again')
  const info = JSON.parse(out.stdout) as { 'virtual-size': number; 'backing-filename'?: string; 'format-specific'?: { data?: { 'data-file'?: string } } }
  if (info['backing-filename']) throw new Failure('the qcow2 image has a backing file, which is refused', HINT)
  if (info['format-specific']?.data?.['data-file']) throw new Failure('the qcow2 image uses an external data file, which is refused', HINT)
  // qemu-img convert reads clusters past the end of a truncated file as zeros and succeeds:
  // its metadata check is what finds the damage (exit 2 corrupt, 1 unreadable; 3 means
  // only leaked clusters, which lose nothing).
  const check = await $`qemu-img check -f qcow2 ${path}`.quiet().nothrow()
  if (check.exitCode !== 0 && check.exitCode !== 3) {
    const text = (check.stdout + check.stderr).trim().split('\n')
    debug(text.slice(0, 5).join(' | '))
    const summary = text.find((l) => /errors were found|Could not|invalid/i.test(l)) ?? `exit ${check.exitCode}`
    throw new ImageError(`qemu-img check found the qcow2 image damaged (${summary.trim()})`, 'the image file is corrupt or truncated: download or copy it again')
  }
  return info['virtual-size']
}

/** Writes the image onto the target: qemu-img writes only what the image holds and zeroes
 *  the rest of its range itself, so a reused disk holds exactly the image afterwards. */
export async function convertQcow2(path: string, target: TargetDisk, progress: Progress, size: number): Promise<void> {
  // O_DIRECT (-t none) on block devices; files go through the page cache and get our fdatasync.
  // On a disk known to read as zero, qemu-img need not write the image's zero clusters.
  const args = ['convert', '-p', '-f', 'qcow2', '-O', 'raw', '-n', '-W', ...(target.kind === 'block' ? ['-t', 'none'] : []), ...(target.knownZero ? ['--target-is-zero'] : []), path, target.path]
  debug(`running qemu-img ${args.join(' ')}`)
  // it writes disk 0: it holds the disk's lock while it runs, and dies with us
  const child = spawnChild('qemu-img', args, { stdio: ['ignore', 'pipe', 'pipe'], extraFds: target.lockFd !== undefined ? [target.lockFd] : [] })
  // -p prints "(12.34/100%)" updates on stdout: turned into our progress lines
  child.stdout!.on('data', (b: Buffer) => {
    const m = /\((\d+(?:\.\d+)?)\/100%\)[^(]*$/.exec(b.toString())
    if (m) progress.tick(Math.round((Number(m[1]) / 100) * size))
  })
  const errText: string[] = []
  child.stderr!.on('data', (b: Buffer) => {
    process.stderr.write(b)
    errText.push(b.toString())
  })
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => {
      if (code === 0) return resolve()
      const last = lastMessage(errText.join('')) ?? (signal ? `killed by ${signal}` : `exit ${code}`)
      reject(new Failure(`qemu-img convert failed (${last})`, 'the image file is corrupt or truncated, or disk 0 failed: see the messages above'))
    })
  })
}
