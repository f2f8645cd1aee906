// File locks with util-linux flock(1), since Node has no flock(2). We open the lock file
// ourselves and let flock lock that open file (passed to it as its fd 3): the lock belongs
// to the open file, so it stays ours when flock has exited, goes when we close it or die,
// and can be shared with a child that must hold it as long as it runs (lib/child.ts).
// A lock file may be removed by whoever holds it exclusively: a lock taken on a file that
// was removed meanwhile is dropped and taken again on the path's new file.
import { constants } from 'node:fs'
import { lstat, open, stat, unlink, type FileHandle } from 'node:fs/promises'
import { basename } from 'node:path'
import { spawnChild } from './child.js'
import { Failure } from './errors.js'
import { debug } from './log.js'

export interface Lock {
  /** Our descriptor of the locked file (to pass to a child that must hold the lock too). */
  fd: number
  /** Writes who holds it into the lock file, for the message of whoever finds it busy. */
  label(text: string): Promise<void>
  /** Removes the lock file (only while holding it exclusively), then releases the lock. */
  remove(): Promise<void>
  release(): Promise<void>
}

export interface LockOptions {
  /** wait for it (true), give up at once (false), or wait at most this many seconds */
  wait: boolean | number
  /** how a failure names the file's directory: "IMAGE_STORAGE /x" */
  where: string
  hint: string
}

const OPEN_FLAGS = constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK

/** Opens the lock file: a regular file of ours, never a link, FIFO or device someone put
 *  there (such a file is removed, if the path still names it, and made anew). */
async function openLockFile(path: string, opts: LockOptions): Promise<FileHandle> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const fh = await open(path, OPEN_FLAGS, 0o600).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ELOOP') return null // a symlink
      throw new Failure(`${opts.where}: the lock file ${basename(path)} cannot be created (${describeFsError(err)})`, opts.hint)
    })
    const st = fh ? await fh.stat() : null
    if (fh && st) {
      if (st.nlink === 0) {
        await fh.close() // removed by its holder meanwhile: the path's new file is the lock
        continue
      }
      if (st.isFile() && st.uid === (process.getuid?.() ?? 0) && st.nlink === 1) return fh
      await fh.close()
    }
    const now = await lstat(path).catch(() => null)
    if (now && (st ? now.ino === st.ino && now.dev === st.dev : now.isSymbolicLink())) {
      debug(`${path} is not a lock file of ours: removed`)
      await unlink(path).catch(() => undefined)
    }
  }
  throw new Failure(`${opts.where}: the lock file ${basename(path)} is not a file of ours and keeps coming back`, opts.hint)
}

/** The error's code with what it means where that is not obvious. */
export function describeFsError(err: NodeJS.ErrnoException): string {
  const meaning: Record<string, string> = { EROFS: 'a read-only filesystem', ENOSPC: 'no space left', EACCES: 'permission denied', EPERM: 'not permitted', ENOTDIR: 'a path component is not a directory' }
  const code = err.code ?? err.message
  return meaning[code] ? `${code}: ${meaning[code]}` : code
}

async function runFlock(fh: FileHandle, mode: 'shared' | 'exclusive', wait: boolean | number): Promise<boolean> {
  const args = [mode === 'shared' ? '-s' : '-x', ...(wait === false ? ['-n'] : typeof wait === 'number' ? ['-w', String(wait)] : []), '3']
  const child = spawnChild('flock', args, { stdio: ['ignore', 'ignore', 'pipe'], extraFds: [fh.fd] })
  let err = ''
  child.stderr!.on('data', (b: Buffer) => (err += b))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  if (code === 0) return true
  if (code === 1 && wait !== true) return false // busy (-n), or still busy after -w
  throw new Error(`flock failed (${err.trim() || `exit ${code}`})`)
}

/** Takes the lock on `path`; null when `wait` did not let us wait for a busy one. */
export async function acquireLock(path: string, mode: 'shared' | 'exclusive', opts: LockOptions): Promise<Lock | null> {
  for (;;) {
    const fh = await openLockFile(path, opts)
    let locked = false
    try {
      locked = await runFlock(fh, mode, opts.wait)
    } finally {
      if (!locked) await fh.close()
    }
    if (!locked) return null
    // removed (or replaced) by its last holder while we waited: lock the path's file instead
    const now = await stat(path).catch(() => null)
    const mine = await fh.stat()
    if (now === null || now.ino !== mine.ino || now.dev !== mine.dev) {
      await fh.close()
      continue
    }
    debug(`locked ${path} (${mode})`)
    let released = false
    const release = async () => {
      if (released) return
      released = true
      await fh.close()
      debug(`unlocked ${path}`)
    }
    return {
      fd: fh.fd,
      label: async (text) => {
        await fh.truncate(0)
        await fh.write(text + '\n', 0)
      },
      remove: async () => {
        await unlink(path).catch(() => undefined)
        await release()
      },
      release,
    }
  }
}

/** What the holder of a busy lock wrote into it (Lock.label), if anything. */
export async function lockHolder(path: string): Promise<string> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => null)
  if (!fh) return ''
  try {
    return (await fh.readFile('utf8')).trim().slice(0, 200)
  } finally {
    await fh.close()
  }
}
