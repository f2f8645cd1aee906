// The decompressor writes a file disk itself. Through a pipe into this process every byte
// would be copied twice more and every block compared with zero again, on a machine
// where the decompressor wants every core; xz and zstd skip runs of zeros on their own
// (sparse output), and zstd also decodes gzip. Measured with the bench's 1 GiB image: xz
// -T0 3.3 s into /dev/null, 3.3 s writing the file itself, 4.4 s through this process;
// zstd 0.4 / 0.5 / 1.2 s. A local image file is written so only where the uncompressed size
// is known first (xz's index, zstd's frame header), so that an image larger than the disk
// is refused before anything is written; a download, whose size is not known before its
// end, is fed to the decompressor as it arrives, and the kernel stops the decompressor at
// the disk's end (RLIMIT_FSIZE: SIGXFSZ), so that it never writes past it.
import { spawnSync } from 'node:child_process'
import { open, readFile, type FileHandle } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { ImageError } from '../errors.js'
import { defer, type Deferred } from '../cleanup.js'
import { findTool, startDecompressor } from './decode.js'
import { debug, info } from '../log.js'
import { openForWrite, zeroCheaply, type TargetDisk } from './target.js'
import { diskWriteback, Progress, tooLarge, type WriteResult } from './write.js'
import type { Codec } from '../ganeti/params.js'

const POLL_MS = 1000

type DirectCodec = 'xz' | 'zstd' | 'gzip'

export function canDecompressOnto(codec: Codec, target: TargetDisk): codec is 'xz' | 'zstd' {
  return target.kind === 'file' && (codec === 'xz' || codec === 'zstd')
}

let zstdReadsGzip: boolean | undefined

/** Whether the installed zstd was built with zlib (Debian's is: "supports: zstd, ..., gzip"). */
function zstdDecodesGzip(): boolean {
  if (zstdReadsGzip !== undefined) return zstdReadsGzip
  const tool = findTool(['zstd'])
  const out = tool.startsWith('/') ? spawnSync(tool, ['-vV'], { encoding: 'utf8', timeout: 5000 }) : undefined
  zstdReadsGzip = out?.status === 0 && /supports:.*\bgzip\b/.test(`${out.stdout}${out.stderr}`)
  debug(`zstd ${zstdReadsGzip ? 'decodes' : 'does not decode'} gzip`)
  return zstdReadsGzip
}

/** A download that a decompressor can write onto disk 0 itself as it arrives. */
export function canStreamOnto(codec: Codec, target: TargetDisk): codec is DirectCodec {
  if (target.kind !== 'file') return false
  if (codec === 'xz') return findTool(['xz']).startsWith('/')
  if (codec === 'zstd') return findTool(['zstd']).startsWith('/')
  return codec === 'gzip' && zstdDecodesGzip()
}

/** The file offset of our descriptor, which the child shares: how far it has written. */
async function offsetOf(fd: number): Promise<number | undefined> {
  const text = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '')
  const m = /^pos:\s*(\d+)/m.exec(text)
  return m ? Number(m[1]) : undefined
}

/** Decompresses the image file at `path` (`size` bytes uncompressed, checked to fit)
 *  onto the file disk `target`, then syncs it once. */
export async function decompressOntoFile(path: string, codec: 'xz' | 'zstd', size: number, target: TargetDisk): Promise<WriteResult> {
  const input = await open(path, 'r')
  try {
    return await decompressOnto({ fd: input.fd, what: path }, codec, size, target)
  } finally {
    await input.close()
  }
}

/** Decompresses a download as it arrives onto the file disk `target` (canStreamOnto). */
export async function decompressStreamOntoFile(body: Readable, codec: DirectCodec, target: TargetDisk): Promise<WriteResult> {
  return decompressOnto({ stream: body, what: 'the download' }, codec, undefined, target)
}

type Input = { fd: number; what: string } | { stream: Readable; what: string }

async function decompressOnto(input: Input, codec: DirectCodec, size: number | undefined, target: TargetDisk): Promise<WriteResult> {
  const fh = await openForWrite(target.path)
  let restore: Deferred | undefined
  try {
    const { size: fileSize } = await fh.stat()
    // the disk file keeps its size on every path: xz grows an emptied one, and a corrupt
    // image could write past the size it announced
    restore = defer(`size of ${target.path}`, () => fh.truncate(fileSize))
    let extra: string[]
    if (codec === 'xz') {
      // xz writes sparse output only at the end of a file, so it gets an empty one: that
      // reads as zero everywhere, the old data beyond the image included
      await fh.truncate(0)
      extra = []
    } else {
      // without a known size the whole disk is zeroed: the image may fill it
      extra = [(await zeroCheaply(target, size ?? target.size)) ? '--sparse' : '--no-sparse']
    }
    const tool = codec === 'gzip' ? 'zstd' : codec
    info(`${tool} writes the image into the disk file itself${codec === 'xz' ? ' (emptied first)' : ''}${'stream' in input ? ' as it is downloaded' : ''}, skipping its zero blocks`)
    const progress = new Progress(size)
    const writeback = diskWriteback(fh, target)
    const decompressor = startDecompressor(codec === 'gzip' ? 'zstd' : codec, 'stream' in input ? input.stream : input.fd, fh.fd, input.what, extra, target.lockFd !== undefined ? [target.lockFd] : [], target.size)
    // a failed early flush is reported by writeback.finish(), once the decompressor is done
    const timer = setInterval(() => void offsetOf(fh.fd).then((at) => {
      if (at === undefined) return
      progress.tick(at)
      writeback.reached(at)
    }).catch(() => undefined), POLL_MS)
    try {
      await decompressor.finished.catch((err: unknown) => {
        // the kernel stopped it at the disk's end (RLIMIT_FSIZE)
        if (decompressor.child.signalCode === 'SIGXFSZ') throw tooLarge(target, target.size + 1, false)
        throw err
      })
    } finally {
      clearInterval(timer)
    }
    // xz leaves the file exactly as long as the image; zstd's offset ends at its end
    const written = codec === 'xz' ? (await fh.stat()).size : await offsetOf(fh.fd)
    debug(`${tool} wrote ${written} bytes${size !== undefined ? `, ${size} expected` : ''}`)
    if (written !== undefined && size !== undefined && written !== size) {
      throw new ImageError(`the image gave ${written} bytes where its header announced ${size}`, 'the image file is corrupt: download or copy it again')
    }
    if (written === 0) throw new ImageError('the image holds no data (0 bytes after decoding)', 'an empty image would leave disk 0 as it was: check the image file or URL')
    await restore.run()
    await writeback.finish()
    return progress.done(written ?? size ?? 0)
  } finally {
    await restore?.run()
    await fh.close()
  }
}
