// The decompressor writes a file disk itself. Through a pipe into this process every byte
// would be copied twice more and every block compared with zero again, on a machine
// where the decompressor wants every core; xz and zstd skip runs of zeros on their own
// (sparse output). Measured with the bench's 1 GiB image: xz
// -T0 3.3 s into /dev/null, 3.3 s writing the file itself, 4.4 s through this process;
// zstd 0.4 / 0.5 / 1.2 s. A local image file is written so only where the uncompressed size
// is known first (xz's index, zstd's frame header), so that an image larger than the disk
// is refused before anything is written; a download, whose size is not known before its
// end, is fed to the decompressor as it arrives, and the kernel stops the decompressor at
// the disk's end (RLIMIT_FSIZE: SIGXFSZ), so that it never writes past it.
import { open, readFile, type FileHandle } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { Failure, ImageError } from '../errors.js'
import { closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import type { ChildProcess } from 'node:child_process'
import { spawnChild } from '../child.js'
import { openChildPipe } from './pipe-size.js'
import { defer, type Deferred } from '../cleanup.js'
import { decompressorFor, findTool, startDecompressor } from './decode.js'
import { debug, info } from '../log.js'
import { openForWrite, zeroCheaply, type TargetDisk } from './target.js'
import { diskWriteback, Progress, tooLarge, type WriteResult } from './write.js'
import type { Codec } from '../ganeti/params.js'

// how often the writer's position is read: the early writeback (lib/writeback.ts) is due
// every 256 MiB, a second at these speeds; polled once a second, most of the image was
// still dirty at the final flush (measured: a gz download onto a file 2.16 s, link 1.42 s)
const POLL_MS = 100

// gzip is not among them: zstd decodes it too, but with the system's zlib, which took
// 1.39 s for the bench's image on one machine and 3.88 s on another, where Node's own
// (Chromium's) zlib took 1.18 s and 1.74 s; in this process it also skips zero blocks
type DirectCodec = 'xz' | 'zstd' | 'bzip2'

export function canDecompressOnto(codec: Codec, target: TargetDisk): codec is 'xz' | 'zstd' {
  return target.kind === 'file' && (codec === 'xz' || codec === 'zstd')
}

/** A download that a decompressor can write onto disk 0 itself as it arrives. */
export function canStreamOnto(codec: Codec, target: TargetDisk): codec is DirectCodec {
  if (target.kind !== 'file') return false
  if (codec === 'xz') return findTool(['xz']).startsWith('/')
  if (codec === 'zstd') return findTool(['zstd']).startsWith('/')
  return codec === 'bzip2' && findTool(['dd']).startsWith('/')
}

/** The file offset of our descriptor, which the child shares (or of the child's own):
 *  how far it has written. */
async function offsetOf(fd: number, pid?: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid ?? 'self'}/fdinfo/${fd}`, 'utf8').catch(() => '')
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
    let extra: string[] = []
    let sparse = true
    if (codec === 'xz') {
      // xz writes sparse output only at the end of a file, so it gets an empty one: that
      // reads as zero everywhere, the old data beyond the image included
      await fh.truncate(0)
    } else {
      // without a known size the whole disk is zeroed: the image may fill it
      sparse = await zeroCheaply(target, size ?? target.size)
      if (codec !== 'bzip2') extra = [sparse ? '--sparse' : '--no-sparse']
    }
    const tool = codec === 'bzip2' ? `${decompressorFor('bzip2')[0].split('/').pop()} | dd` : codec
    info(`${tool} writes the image into the disk file itself${codec === 'xz' ? ' (emptied first)' : ''}${'stream' in input ? ' as it is downloaded' : ''}${sparse ? ', skipping its zero blocks' : ''}`)
    const progress = new Progress(size)
    const writeback = diskWriteback(fh, target)
    const lockFds = target.lockFd !== undefined ? [target.lockFd] : []
    const source = 'stream' in input ? input.stream : input.fd
    // bzip2's tools write no sparse output: dd conv=sparse takes theirs through a pipe
    const pipe = codec === 'bzip2' ? openChildPipe() : undefined
    if (codec === 'bzip2' && !pipe) throw new Failure('no pipe could be made between lbzip2 and dd', `check ${tmpdir()} (mkfifo)`)
    const dd = pipe ? startDd(target, pipe.readFd, sparse, lockFds) : undefined
    let decompressor
    try {
      decompressor = startDecompressor(codec, source, pipe ? pipe.writeFd : fh.fd, input.what, extra, lockFds, target.size)
    } finally {
      if (pipe) closeSync(pipe.writeFd) // theirs now: dd sees the end when the decompressor exits
    }
    const position = dd ? () => offsetOf(1, dd.child.pid) : () => offsetOf(fh.fd)
    // a failed early flush is reported by writeback.finish(), once the decompressor is done
    const timer = setInterval(() => void position().then((at) => {
      if (at === undefined) return
      progress.tick(at)
      writeback.reached(at)
    }).catch(() => undefined), POLL_MS)
    let ddBytes: number | undefined
    try {
      const [decoded, copied] = await Promise.allSettled([decompressor.finished, dd?.finished])
      // dd's failure is the cause: the decompressor then only lost its reader
      if (copied.status === 'rejected') throw copied.reason
      ddBytes = copied.value
      if (decoded.status === 'rejected') {
        // the kernel stopped it at the disk's end (RLIMIT_FSIZE)
        throw decompressor.child.signalCode === 'SIGXFSZ' ? tooLarge(target, target.size + 1, false) : decoded.reason
      }
    } finally {
      clearInterval(timer)
    }
    // xz leaves the file exactly as long as the image; zstd's offset ends at its end
    const written = codec === 'xz' ? (await fh.stat()).size : dd ? ddBytes : await offsetOf(fh.fd)
    debug(`${tool} wrote ${written} bytes${size !== undefined ? `, ${size} expected` : ''}`)
    if (written !== undefined && size !== undefined && written !== size) {
      throw new ImageError(`the image gave ${written} bytes where its header announced ${size}`, 'the image file is corrupt: download or copy it again')
    }
    // RLIMIT_FSIZE stops a tool at the disk's end; should prlimit be missing, a larger image
    // would be cut by the size restored below, and must not pass for a whole one
    if (written !== undefined && written > target.size) throw tooLarge(target, written, false)
    if (written === 0) throw new ImageError('the image holds no data (0 bytes after decoding)', 'an empty image would leave disk 0 as it was: check the image file or URL')
    await restore.run()
    await writeback.finish()
    return progress.done(written ?? size ?? 0)
  } finally {
    await restore?.run()
    await fh.close()
  }
}

/** dd writing disk 0 from descriptor `input` (a pipe, closed here once dd has it), in 4 MiB
 *  blocks, seeking over the all-zero ones when the disk reads as zero; stopped by the
 *  kernel at the disk's end. Resolves to the bytes it copied. */
function startDd(target: TargetDisk, input: number, sparse: boolean, lockFds: number[]): { child: ChildProcess; finished: Promise<number> } {
  const args = [`--fsize=${target.size}`, '--', findTool(['dd']), `of=${target.path}`, 'bs=4M', 'iflag=fullblock', `conv=notrunc${sparse ? ',sparse' : ''}`]
  debug(`running dd ${args.slice(3).join(' ')} (files limited to ${target.size} bytes)`)
  let child: ChildProcess
  try {
    child = spawnChild('/usr/bin/prlimit', args, { stdio: [input, 'ignore', 'pipe'], extraFds: lockFds })
  } finally {
    closeSync(input)
  }
  const errText: string[] = []
  child.stderr!.on('data', (b: Buffer) => errText.push(b.toString()))
  const finished = new Promise<number>((resolve, reject) => {
    child.once('error', (err) => reject(new Failure(`dd could not be started (${err.message})`, 'check coreutils and util-linux (prlimit) on the node')))
    child.once('close', (code, signal) => {
      const text = errText.join('')
      if (signal === 'SIGXFSZ') return reject(tooLarge(target, target.size + 1, false))
      const bytes = /^(\d+) bytes/m.exec(text)
      if (code === 0 && bytes) return resolve(Number(bytes[1]))
      const last = text.trim().split('\n').filter((l) => !/records (in|out)$/.test(l)).pop() ?? (signal ? `killed by ${signal}` : `exit ${code}`)
      reject(signal ? new Failure(`dd was stopped (${signal})`, 'see the messages above') : new Failure(`dd could not write disk 0 (${last})`, 'check the disk and the free space of the node\'s file storage'))
    })
  })
  finished.catch(() => undefined)
  return { child, finished }
}
