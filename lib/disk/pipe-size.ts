// Pipes that carry a decompressed image into this process. Two costs, both measured with
// the bench's 1 GiB raw+xz image (xz -dc alone 5.6 s, 0.05 s of it in the kernel):
// - Node connects a child's stdout through a socketpair, not a pipe: xz spends 0.95 s in
//   the kernel writing into it, 0.7 s into a pipe. A named pipe in a private directory,
//   unlinked at once, gives the child a real one.
// - Linux pipes hold 64 KiB by default: writer and reader then take turns every 64 KiB
//   (cat of a cached 1 GiB file into Node: 1.1-1.6 s; with a 1 MiB pipe 0.5-0.9 s).
//   Node has no fcntl, so perl (perl-base is Essential in Debian: it is on every node)
//   sets F_SETPIPE_SZ on the descriptor it inherits from us.
// xz into Node, to the end: 6.8-7.0 s through the socketpair, 6.3-6.4 s through a 1 MiB pipe.
// Where any of this fails the transfer merely stays as slow as it was.
import { spawnSync } from 'node:child_process'
import { closeSync, constants, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { debug } from '../log.js'

const F_SETPIPE_SZ = 1031
/** The most an unprivileged process may ask for by default (/proc/sys/fs/pipe-max-size). */
const PIPE_SIZE = 1 << 20

/** Enlarges the pipe behind descriptor `fd` (of this process); false where it is no pipe. */
export function enlargePipe(fd: number): boolean {
  if (!fstatSync(fd).isFIFO()) {
    debug(`descriptor ${fd}: pipe size left as it is (not a pipe)`)
    return false
  }
  const r = spawnSync('perl', ['-e', `fcntl(STDIN, ${F_SETPIPE_SZ}, ${PIPE_SIZE}) or exit 1`], { stdio: [fd, 'ignore', 'ignore'] })
  const ok = r.status === 0
  debug(ok ? `pipe on descriptor ${fd} enlarged to ${PIPE_SIZE} bytes` : `descriptor ${fd}: pipe size left as it is (${r.error?.message ?? 'perl could not set it'})`)
  return ok
}

export interface PipeEnds {
  /** Ours, non-blocking: wrap it in a net.Socket to read it. */
  readFd: number
  /** The child's: pass it as its stdout, then close it here. */
  writeFd: number
}

/** A real pipe of 1 MiB for a child's stdout, or undefined where one cannot be made (the
 *  caller then lets Node connect the child). All synchronous: no signal can come between
 *  making the named pipe and removing it. */
export function openPipe(): PipeEnds | undefined {
  let dir: string | undefined
  let readFd: number | undefined
  try {
    dir = mkdtempSync(join(tmpdir(), 'simpleimage-pipe-'))
    const path = join(dir, 'pipe')
    const made = spawnSync('mkfifo', ['-m', '600', path], { stdio: 'ignore' })
    if (made.status !== 0) throw new Error(made.error?.message ?? 'mkfifo failed')
    // non-blocking, the read end opens before there is a writer; then the write end finds it
    readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
    const writeFd = openSync(path, constants.O_WRONLY)
    enlargePipe(readFd)
    return { readFd, writeFd }
  } catch (err) {
    debug(`no pipe of our own (${(err as Error).message}): the child's output comes through Node's`)
    if (readFd !== undefined) closeSync(readFd)
    return undefined
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true })
  }
}

/** A pipe between two children (a decompressor and dd): both ends blocking, as a tool
 *  expects its stdin and stdout; undefined where one cannot be made. */
export function openChildPipe(): PipeEnds | undefined {
  const pipe = openPipe()
  if (!pipe) return undefined
  // O_NONBLOCK is the open file's, shared with every descriptor of it: cleared for the child too
  const r = spawnSync('perl', ['-e', 'use Fcntl; my $f = fcntl(STDIN, F_GETFL, 0) or exit 1; fcntl(STDIN, F_SETFL, $f & ~O_NONBLOCK) or exit 1'], { stdio: [pipe.readFd, 'ignore', 'ignore'] })
  if (r.status === 0) return pipe
  debug(`the pipe's read end stays non-blocking (${r.error?.message ?? 'perl could not change it'})`)
  closeSync(pipe.readFd)
  closeSync(pipe.writeFd)
  return undefined
}
