// Opens an image file as a stream of its uncompressed bytes. gzip is decoded in-process by
// Node's zlib; bzip2, xz and zstd by their command-line tools (the parallel ones where
// installed), reading the file directly and handing us their output through a pipe,
// so that memory stays bounded by the pipe and our two write buffers.
import type { ChildProcess } from 'node:child_process'
import { closeSync, createReadStream, existsSync } from 'node:fs'
import { Socket } from 'node:net'
import { pipeline, type Readable } from 'node:stream'
import { open } from 'node:fs/promises'
import { createGunzip } from 'node:zlib'
import { $ } from 'zx/core'
import { Failure, ImageError } from '../errors.js'
import { spawnChild } from '../child.js'
import { chunkSource, type ByteSource } from './write.js'
import { debug } from '../log.js'
import { openPipe } from './pipe-size.js'
import { detectCodec, type Codec } from '../ganeti/params.js'

export interface Decoded {
  source: ByteSource
  /** Resolves when the decoder has finished cleanly; rejects with the reason otherwise. */
  finished: Promise<void>
  /** Stops the decoder early (the writer failed). */
  stop(): void
}

// zlib hands each output chunk to the main thread and waits for it to be taken: with
// 128 KiB chunks that ping-pong kept both threads half idle (1 GiB: 2.2-2.8 s); with
// 1 MiB chunks the same create takes 1.5-1.6 s (measured with the bench's image). A
// download holds buffers of its own: 512 KiB chunks there keep its peak RSS 5 MiB lower
// (134 MiB, of 150) for 2.2-2.3 s instead of 2.7-3.3 s with 128 KiB
const GZIP_CHUNK = 1 << 20
const GZIP_STREAM_CHUNK = 512 << 10
/** What xz, zstd, bzip2, lbzip2 and pbzip2 say of input they cannot decode. */
const DECODE_ERROR = /corrupt|unexpected end|ends unexpectedly|premature end|truncat|format|magic|integrity|crc|checksum|header|data error|decod|trailing garbage|not compressed|unsupported|invalid/i

export const CORRUPT_HINT = 'the image file is corrupt or truncated: download or copy it again, and check image_type'

/** A decompressor's own last words: zstd's -v banner ("*** Zstandard CLI ...") and blank
 *  lines are not the cause. */
export function lastMessage(text: string): string | undefined {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('***')).pop()
}

export function findTool(names: string[]): string {
  for (const name of names) {
    for (const dir of ['/usr/bin', '/bin', '/usr/local/bin']) {
      if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`
    }
  }
  return names[names.length - 1]
}

/** Decompressor command per codec: a parallel one where installed, the classic one otherwise. */
export function decompressorFor(codec: 'bzip2' | 'xz' | 'zstd'): string[] {
  if (codec === 'xz') return [findTool(['xz']), '-dc', '-T0']
  if (codec === 'zstd') return [findTool(['zstd']), '-dcq']
  return [findTool(['lbzip2', 'pbzip2', 'bzip2']), '-dc']
}

const PRLIMIT = '/usr/bin/prlimit'

const PACKAGE = { xz: 'xz-utils', bzip2: 'bzip2', zstd: 'zstd' } as const

/** A tool that is not there, or will not start, is the node's failure, never the image's:
 *  a good cache entry must not be dropped for it. */
function notStarted(tool: string, codec: keyof typeof PACKAGE, why: string): Failure {
  return new Failure(`${tool} could not be started (${why})`, `install it (apt-get install ${PACKAGE[codec]})`)
}

/** Runs a tool that reads the image's header; its failure to read it is the image's. */
async function readHeader(codec: 'xz' | 'zstd', args: string[]): Promise<{ stdout: string }> {
  const tool = findTool([codec])
  if (!tool.startsWith('/')) throw notStarted(codec, codec, 'not installed')
  const out = await $`${tool} ${args}`.quiet().nothrow()
  if (out.exitCode === 126 || out.exitCode === 127) throw notStarted(tool, codec, `exit ${out.exitCode}`)
  // zstd says some errors on stdout ("not compressed by zstd"), others on stderr
  if (out.exitCode !== 0) throw new ImageError(`${codec} cannot read the image (${lastMessage(out.stderr) ?? lastMessage(out.stdout) ?? `exit ${out.exitCode}`})`, CORRUPT_HINT)
  return out
}

/** The uncompressed size where the format records it (raw, xz); undefined otherwise. */
export async function decodedSize(path: string, codec: Codec, fileSize: number): Promise<number | undefined> {
  if (codec === 'raw') return fileSize
  if (codec === 'xz') {
    const out = await readHeader('xz', ['--robot', '--list', path])
    const totals = out.stdout.split('\n').find((l) => l.startsWith('totals\t'))
    const size = totals ? Number(totals.split('\t')[4]) : NaN
    return Number.isFinite(size) ? size : undefined
  }
  if (codec === 'zstd') {
    // recorded in the frame header when zstd compressed a file (not a pipe)
    const out = await readHeader('zstd', ['-lv', path])
    const m = /Decompressed Size:.*\((\d+) B\)/.exec(out.stdout)
    return m ? Number(m[1]) : undefined
  }
  return undefined
}

export async function decode(path: string, codec: Exclude<Codec, 'qcow2'>): Promise<Decoded> {
  if (codec === 'raw') {
    // positional reads straight into the writer's buffers
    const fh = await open(path, 'r')
    let position = 0
    let done!: () => void
    const finished = new Promise<void>((resolve) => (done = resolve)).finally(() => fh.close())
    const source: ByteSource = {
      async read(buf, offset, length) {
        const { bytesRead } = await fh.read(buf, offset, length, position)
        position += bytesRead
        if (bytesRead === 0) done()
        return bytesRead
      },
    }
    return { source, finished, stop: () => done() }
  }
  if (codec === 'gzip') return gunzipFrom(createReadStream(path, { highWaterMark: GZIP_CHUNK }), GZIP_CHUNK)

  const input = await open(path, 'r')
  return runDecompressor(codec, input.fd, path, () => void input.close())
}

function gunzipFrom(input: Readable, chunkSize: number): Decoded {
  const gunzip = createGunzip({ chunkSize })
  // the verdict is zlib's end or error, not pipeline()'s: that reports success once zlib
  // has taken all input, before a truncated stream's error appears at the end of its
  // output. pipeline() passes a failed (or already failed) download on to zlib, and stops
  // the input when zlib ends before it (trailing data)
  const finished = new Promise<void>((resolve, reject) => {
    gunzip.once('error', (err) => reject(new ImageError(`gzip decoding failed (${err.message})`, CORRUPT_HINT)))
    gunzip.once('end', resolve)
  })
  finished.catch(() => undefined)
  pipeline(input, gunzip, () => undefined)
  return { source: chunkSource(gunzip), finished, stop: () => { input.destroy(); gunzip.destroy(new Error('stopped')) } }
}

/** Decodes an image arriving as a stream (a download in progress). */
export function decodeStream(body: ImageBody, codec: Exclude<Codec, 'qcow2'>): Decoded {
  // raw: the writer reads the download straight into its blocks; a failed download fails
  // that read
  if (codec === 'raw') return { source: body, finished: Promise.resolve(), stop: () => undefined }
  if (codec === 'gzip') return gunzipFrom(body.stream(), GZIP_STREAM_CHUNK)
  return runDecompressor(codec, body.stream(), 'the download', () => undefined)
}

function runDecompressor(codec: 'bzip2' | 'xz' | 'zstd', input: number | Readable, what: string, closeInput: () => void): Decoded {
  const { child, stdout, finished } = startDecompressor(codec, input, 'pipe', what)
  const closed = finished.finally(closeInput)
  closed.catch(() => undefined)
  const stop = () => {
    child.kill('SIGTERM')
    // unread output would keep its pipe open, and 'close' (finished) would never come
    stdout!.destroy()
  }
  return { source: chunkSource(stdout!), finished: closed, stop }
}

export interface Decompressor {
  child: ChildProcess
  /** Its output, where that comes to us (output 'pipe'). */
  stdout?: Readable
  /** Resolves on a clean exit; rejects with a Failure that names the cause. */
  finished: Promise<void>
}

/** Starts the decompressor for `codec` on `input` (a file descriptor, or a stream fed
 *  through its stdin). Its output goes to a pipe to us, or to `output`, a descriptor of
 *  disk 0 itself. Its messages are passed on to our log; the last one names the cause. */
export function startDecompressor(codec: 'bzip2' | 'xz' | 'zstd', input: number | Readable, output: 'pipe' | number, what: string, extraArgs: string[] = [], extraFds: number[] = [], maxFileSize?: number): Decompressor {
  const [tool, ...args] = [...decompressorFor(codec), ...extraArgs]
  debug(`running ${tool} ${args.join(' ')} < ${what}${output === 'pipe' ? '' : ' > disk 0'}${maxFileSize !== undefined ? `, files limited to ${maxFileSize} bytes` : ''}`)
  // prlimit (util-linux, Essential) sets RLIMIT_FSIZE and execs the tool: a write past
  // that size fails and the kernel stops the tool with SIGXFSZ
  const argv = maxFileSize !== undefined && existsSync(PRLIMIT) ? [PRLIMIT, `--fsize=${maxFileSize}`, '--', tool, ...args] : [tool, ...args]
  const pipe = output === 'pipe' ? openPipe() : undefined
  let child: ChildProcess
  try {
    child = spawnChild(argv[0], argv.slice(1), { stdio: [typeof input === 'number' ? input : 'pipe', pipe?.writeFd ?? output, 'pipe'], extraFds })
  } finally {
    if (pipe) closeSync(pipe.writeFd) // the child has its own: its exit ends our reading
  }
  const stdout = pipe ? new Socket({ fd: pipe.readFd, readable: true, writable: false }) : child.stdout ?? undefined
  if (typeof input !== 'number') {
    // A failed download (even one that failed before we got it) must fail the decoder
    // too, not look like a short image. EPIPE means the decompressor quit reading, done
    // or failed (its exit says which); pipeline() then stops the download.
    pipeline(input, child.stdin!, (err) => {
      if (err && (err as NodeJS.ErrnoException).code !== 'EPIPE') child.kill('SIGTERM')
    })
  }
  const errText: string[] = []
  child.stderr!.on('data', (b: Buffer) => {
    process.stderr.write(b)
    errText.push(b.toString())
  })
  const name = tool.split('/').pop()
  const finished = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(notStarted(tool, codec, err.message)))
    child.once('close', (code, signal) => {
      if (code === 0) return resolve()
      const last = lastMessage(errText.join('')) ?? (signal ? `killed by ${signal}` : `exit ${code}`)
      if (signal) reject(new Failure(`${name} was stopped (${signal})`, 'see the messages above'))
      else if (code === 126 || code === 127) reject(notStarted(tool, codec, last))
      // only what the decompressor says of its input is the image's fault (and drops a
      // cache entry); writing disk 0 itself, anything else is the disk's
      else if (DECODE_ERROR.test(last)) reject(new ImageError(`${name} failed to decompress the image (${last})`, CORRUPT_HINT))
      else if (output !== 'pipe') reject(new Failure(`${name} could not write disk 0 (${last})`, 'check the disk and the free space of the node\'s file storage'))
      else reject(new Failure(`${name} failed (${last})`, CORRUPT_HINT))
    })
  })
  finished.catch(() => undefined)
  return { child, stdout, finished }
}

/** image_type=auto: the format of a local image file, from its first bytes. */
export async function detectFileCodec(path: string): Promise<Codec> {
  const fh = await open(path, 'r')
  try {
    const head = Buffer.alloc(16)
    const { bytesRead } = await fh.read(head, 0, head.length, 0)
    return detectCodec(head.subarray(0, bytesRead))
  } finally {
    await fh.close()
  }
}

/** A download being written (lib/image/growing-file.ts) as disk 0's writer sees it: read
 *  straight into the writer's own buffers (raw), or as a stream (a decoder's input), after
 *  a look at its first bytes. */
export interface ImageBody extends ByteSource {
  /** The next n bytes, left to be read again. */
  peek(n: number): Promise<Buffer>
  stream(): Readable
}

/** The format of a download from its first bytes (image_type=auto while downloading). */
export async function detectBodyCodec(body: ImageBody): Promise<Codec> {
  return detectCodec(await body.peek(16))
}
