// The download cache's directory, IMAGE_STORAGE: made private (or checked), and kept clean
// of expired entries and of what interrupted downloads left, never touching an entry in use
// (its lock is tried without waiting) or a file not named like the cache's.
import { lstat, mkdir, readdir, unlink, chmod } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Failure } from '../errors.js'
import { acquireLock, describeFsError } from '../lock.js'
import { debug, info } from '../log.js'
import { classifyName, isExpired, lockName } from './cache-names.js'
import { removeMeta } from './cache-meta.js'

export const STORAGE_HINT = "point the variant's IMAGE_STORAGE at a directory of root's on a writable filesystem"

/** Expiry leaves entries this young alone, whatever DOWNLOAD_CACHE_MAX_DAYS says: the create
 *  that stored one lets go of its lock for a moment before it reads it. */
const EXPIRY_GRACE_MS = 10 * 60 * 1000

const ourUid = () => process.getuid?.() ?? 0

/** mkdir -p that reports the real cause: Node's recursive mkdir says ENOENT where a
 *  directory cannot be made on a read-only filesystem. */
async function makeDirs(dir: string): Promise<void> {
  const st = await lstat(dir).catch(() => null)
  if (st) return
  const parent = dirname(dir)
  if (parent !== dir) await makeDirs(parent)
  await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err
  })
}

/** Creates IMAGE_STORAGE (0700) or checks that an existing one cannot be tampered with:
 *  the default lives in world-writable /tmp, where anyone could have made it first. One
 *  that was writable by others may hold files anyone put there: they are all removed. */
export async function prepareStorage(dir: string): Promise<void> {
  await makeDirs(dir).catch((err: NodeJS.ErrnoException) => {
    throw new Failure(`IMAGE_STORAGE ${dir} cannot be created (${describeFsError(err)})`, STORAGE_HINT)
  })
  const st = await lstat(dir)
  if (!st.isDirectory()) throw new Failure(`IMAGE_STORAGE ${dir} is not a directory (a symlink?)`, 'remove it or set IMAGE_STORAGE to another directory in the variant config')
  if (st.uid !== ourUid()) throw new Failure(`IMAGE_STORAGE ${dir} is owned by uid ${st.uid}, not by us`, 'remove it (someone else may have planted files there) or set another IMAGE_STORAGE')
  if ((st.mode & 0o022) !== 0) {
    await chmod(dir, st.mode & 0o755).catch((err: NodeJS.ErrnoException) => {
      throw new Failure(`IMAGE_STORAGE ${dir} is writable by others and cannot be made private (${describeFsError(err)})`, STORAGE_HINT)
    })
    let removed = 0
    for (const name of await readdir(dir)) {
      const c = classifyName(name)
      if (c && c.kind !== 'lock' && (await unlink(join(dir, name)).then(() => true, () => false))) removed++
    }
    info(`IMAGE_STORAGE ${dir} was writable by others: removed that permission, and ${removed} cache file(s) that anyone could have put there`)
  }
}

/** Removes expired entries (and their metadata), leftovers of interrupted downloads and
 *  lock or metadata files left alone, skipping any in use. */
export async function expireEntries(dir: string, maxDays: number, now = Date.now()): Promise<void> {
  const names = await readdir(dir)
  const byKey = new Map<string, { entry?: string; meta: boolean; lock: boolean; temps: string[] }>()
  for (const name of names) {
    const c = classifyName(name)
    if (!c) continue
    const item = byKey.get(c.key) ?? { meta: false, lock: false, temps: [] }
    if (c.kind === 'entry') item.entry = name
    else if (c.kind === 'lock') item.lock = true
    else if (c.kind === 'meta') item.meta = true
    else item.temps.push(name)
    byKey.set(c.key, item)
  }
  for (const [key, item] of byKey) {
    const st = item.entry ? await lstat(join(dir, item.entry)).catch(() => null) : null
    // an entry that another create has just stored is about to be read by it
    const expired = st !== null && isExpired(st.mtimeMs, now, maxDays) && now - st.mtimeMs >= EXPIRY_GRACE_MS
    if (item.entry && !expired && item.temps.length === 0) continue
    const lock = await acquireLock(join(dir, lockName(key)), 'exclusive', { wait: false, where: `IMAGE_STORAGE ${dir}`, hint: STORAGE_HINT })
    if (!lock) {
      debug(`cache entry ${key} is in use, not expired now`)
      continue
    }
    try {
      if (expired && item.entry) {
        await unlink(join(dir, item.entry)).catch(() => undefined)
        info(`cache: removed expired entry ${item.entry}`)
      }
      if (!item.entry || expired) await removeMeta(dir, key)
      for (const temp of item.temps) await unlink(join(dir, temp)).catch(() => undefined)
    } finally {
      // an entry's lock file goes with it; one left without an entry goes too
      if (!item.entry || expired) await lock.remove()
      else await lock.release()
    }
  }
}
