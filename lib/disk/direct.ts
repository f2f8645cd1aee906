// The decompressor writes a file disk itself. Through a pipe into this process every byte
// would be copied twice more and every block compared with zero again, on a machine
// where the decompressor wants every core; xz and zstd skip runs of zeros on their own
// (sparse output). Measured with the bench's 1 GiB image: xz -T0 3.3 s into /dev/null,
// 3.3 s writing the file itself, 4.4 s through this process; zstd 0.4 / 0.5 / 1.2 s.
// Only where the uncompressed size is known first (xz's index, zstd's frame header), so
// that an image larger than the disk is refused before anything is written.
import { open, readFile, type FileHandle } from 'node:fs/promises'
import { ImageError } from '../errors.js'
import { defer, type Deferred } from '../cleanup.js'
import { startDecompressor } from './decode.js'
import { debug, info } from '../log.js'
import { openForWrite, zeroCheaply, type TargetDisk } from './target.js'
import { diskWriteback, Progress, type WriteResult } from './write.js'
import type { Codec } from '../ganeti/params.js'

const POLL_MS = 1000

export function canDecompressOnto(codec: Codec, target: TargetDisk): codec is 'xz' | 'zstd' {
  return target.kind === 'file' && (codec === 'xz' || codec === 'zstd')
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
  const fh = await openForWrite(target.path)
  let input: FileHandle | undefined
  let restore: Deferred | undefined
  try {
    input = await open(path, 'r')
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
      extra = [(await zeroCheaply(target, size)) ? '--sparse' : '--no-sparse']
    }
    info(`${codec} writes the image into the disk file itself${codec === 'xz' ? ' (emptied first)' : ''}, skipping its zero blocks`)
    const progress = new Progress(size)
    const writeback = diskWriteback(fh, target)
    const decompressor = startDecompressor(codec, input.fd, fh.fd, path, extra, target.lockFd !== undefined ? [target.lockFd] : [])
    // a failed early flush is reported by writeback.finish(), once the decompressor is done
    const timer = setInterval(() => void offsetOf(fh.fd).then((at) => {
      if (at === undefined) return
      progress.tick(at)
      writeback.reached(at)
    }).catch(() => undefined), POLL_MS)
    try {
      await decompressor.finished
    } finally {
      clearInterval(timer)
    }
    // xz leaves the file exactly as long as the image; zstd's offset ends at its end
    const written = codec === 'xz' ? (await fh.stat()).size : await offsetOf(fh.fd)
    debug(`${codec} wrote ${written} bytes, ${size} expected`)
    if (written !== undefined && written !== size) {
      throw new ImageError(`the image gave ${written} bytes where its header announced ${size}`, 'the image file is corrupt: download or copy it again')
    }
    await restore.run()
    await writeback.finish()
    return progress.done(size)
  } finally {
    await restore?.run()
    await input?.close()
    await fh.close()
  }
}
