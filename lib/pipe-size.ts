// Linux pipes hold 64 KiB by default: writer and reader then take turns every 64 KiB,
// which on this 2-core machine about halves what a pipe carries (cat of a cached 1 GiB
// file into Node: 1.1-1.6 s; with a 1 MiB pipe 0.5-0.9 s). Node has no fcntl, so perl
// (perl-base is Essential in Debian: it is on every node) sets F_SETPIPE_SZ on the
// descriptor it inherits from us. Where that fails, the pipe merely stays as it was.
import { spawnSync } from 'node:child_process'
import { fstatSync } from 'node:fs'
import { debug } from './log.js'

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
