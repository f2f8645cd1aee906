// One writer per disk at a time. Two creates (or a create and an import) writing one disk
// 0 at once would interleave two images; the lock is taken before anything touches the
// disk and held to the end, also by a decompressor that writes the disk itself (it gets
// the locked descriptor, lib/child.ts), so a create killed with SIGKILL keeps the disk
// locked until its last writer is really gone. The lock files live in a directory of
// root's under /run, named by the disk's identity (device number, or file system and
// inode), so that every path to one disk finds the same lock.
import { lstat, mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { defer } from '../cleanup.js'
import { Failure } from '../errors.js'
import { acquireLock, describeFsError, lockHolder, type Lock } from '../lock.js'
import { deviceNumbers } from './target.js'
import { info } from '../log.js'

export const DISK_LOCK_DIR = '/run/ganeti-instance-simpleimage'
/** How long a create waits for another writer of its disk before it gives up. */
export const DISK_LOCK_WAIT_S = 30

/** The lock file's name for a disk: by device number for a block device, else by inode. */
export function diskLockName(st: { rdev: number; dev: number; ino: number; isBlockDevice(): boolean }): string {
  if (st.isBlockDevice()) {
    const { major, minor } = deviceNumbers(st.rdev)
    return `block-${major}-${minor}.lock`
  }
  return `file-${st.dev}-${st.ino}.lock`
}

async function lockDir(): Promise<string> {
  const hint = `make ${DISK_LOCK_DIR} a directory of root's with mode 0700, or remove it`
  await mkdir(DISK_LOCK_DIR, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw new Failure(`the lock directory ${DISK_LOCK_DIR} cannot be created (${describeFsError(err)})`, hint)
  })
  const st = await lstat(DISK_LOCK_DIR)
  if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? 0) || (st.mode & 0o022) !== 0) {
    throw new Failure(`the lock directory ${DISK_LOCK_DIR} is not a directory that only root can write`, hint)
  }
  return DISK_LOCK_DIR
}

/** Locks the disk at `path` ("disk 0") for `who` ("create", "import") until the script ends. */
export async function lockDisk(path: string, who: string, disk = 'disk 0'): Promise<Lock> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new Failure(`${disk} (${path}) cannot be opened (${err.code})`, 'check that the instance disks are activated on this node')
  })
  const file = join(await lockDir(), diskLockName(st))
  const opts = { where: DISK_LOCK_DIR, hint: `check ${DISK_LOCK_DIR}` }
  let lock = await acquireLock(file, 'exclusive', { ...opts, wait: false })
  if (!lock) {
    const holder = (await lockHolder(file)) || 'another process'
    info(`${disk} (${path}) is being written by ${holder}: waiting up to ${DISK_LOCK_WAIT_S} s for it`)
    lock = await acquireLock(file, 'exclusive', { ...opts, wait: DISK_LOCK_WAIT_S })
    if (!lock) {
      throw new Failure(`${disk} (${path}) is still being written by ${holder} after ${DISK_LOCK_WAIT_S} s`, 'two writers would mix two images: let that one finish (or stop it), then run this again')
    }
  }
  await lock.label(`${who} (pid ${process.pid})`)
  const held = lock
  defer(`lock of ${disk}`, () => held.remove())
  return lock
}
