// The download cache in IMAGE_STORAGE. One entry per URL, named by the URL's SHA-256, so
// that no other file there is ever taken for an entry. Entries appear only by rename()
// after a complete download; a lock file per entry serialises downloads of one URL
// (exclusive) and protects entries in use (shared) from expiry. An entry is used only if
// nobody but root could have put it there.
import { createHash } from 'node:crypto'
import { lstat, mkdir, readdir, rename, unlink, chmod, open, type FileHandle } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { defer } from '../cleanup.js'
import { dirname, join } from 'node:path'
import { Failure, errorMessage } from '../errors.js'
import { acquireLock, describeFsError, type Lock, type LockOptions } from '../lock.js'
import { debug, info, redact } from '../log.js'

const DAY_MS = 24 * 3600 * 1000

export function cacheKey(url: URL): string {
  return createHash('sha256').update(url.href).digest('hex')
}

export const entryName = (key: string) => `${key}.image`
export const lockName = (key: string) => `${key}.lock`
export const tempName = (key: string, unique: string) => `${key}.part-${unique}`

/** Parses a file name of the cache; anything else in the directory is not ours. */
export function classifyName(name: string): { key: string; kind: 'entry' | 'lock' | 'temp' } | null {
  const m = /^([0-9a-f]{64})\.(image|lock|part-[0-9a-z-]+)$/.exec(name)
  if (!m) return null
  return { key: m[1], kind: m[2] === 'image' ? 'entry' : m[2] === 'lock' ? 'lock' : 'temp' }
}

/** A write or sync of a download into the cache went wrong (`how`): a full filesystem,
 *  most often. It is the cache's failure, not the network's, and so never retried. */
export function cacheWriteFailure(how: string): Failure {
  return new Failure(`writing the download into the image cache ${how}`, "free space where the variant's IMAGE_STORAGE points, or point it elsewhere")
}

export const failedWith = (err: unknown) => `failed (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`

export function isExpired(mtimeMs: number, nowMs: number, maxDays: number): boolean {
  return nowMs - mtimeMs >= maxDays * DAY_MS
}

const STORAGE_HINT = "point the variant's IMAGE_STORAGE at a directory of root's on a writable filesystem"
/** Filesystem timestamps come from a clock that may lag Date.now() by a tick. */
const CLOCK_SLACK_MS = 1000

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

/** Why a cache entry cannot be trusted, or null: only a plain file of root's with no other
 *  name (a hard link someone made) and not writable by others is ever written to a disk. */
export function entryDistrust(st: Pick<Stats, 'uid' | 'mode' | 'nlink'> & { isFile(): boolean }, uid: number): string | null {
  if (!st.isFile()) return 'it is not a regular file'
  if (st.uid !== uid) return `it is owned by uid ${st.uid}, not by root`
  if (st.nlink !== 1) return 'it has other names (hard links)'
  if ((st.mode & 0o022) !== 0) return 'it is writable by others'
  return null
}

/** Removes expired entries, leftovers of interrupted downloads and lock files left alone,
 *  skipping any in use. */
export async function expireEntries(dir: string, maxDays: number, now = Date.now()): Promise<void> {
  const names = await readdir(dir)
  const byKey = new Map<string, { entry?: string; lock: boolean; temps: string[] }>()
  for (const name of names) {
    const c = classifyName(name)
    if (!c) continue
    const item = byKey.get(c.key) ?? { lock: false, temps: [] }
    if (c.kind === 'entry') item.entry = name
    else if (c.kind === 'lock') item.lock = true
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
      for (const temp of item.temps) await unlink(join(dir, temp)).catch(() => undefined)
    } finally {
      // an entry's lock file goes with it; one left without an entry goes too
      if (!item.entry || expired) await lock.remove()
      else await lock.release()
    }
  }
}

/** How a download ended for the cache: complete, complete and already written to disk 0
 *  while it arrived, or stopped early because the consumer had all it needed. */
export type DownloadOutcome = 'complete' | 'streamed' | 'partial'

export interface CacheResult {
  /** The entry to read the image from (undefined when the download was written while it arrived). */
  path?: string
  hit: boolean
  /** Where the image was written while it downloaded: the entry is not read. */
  streamed: boolean
  /** Releases the shared lock that keeps the entry from being expired while we read it. */
  release(): Promise<void>
  /** Drops the entry: its bytes failed to decode, so the next create downloads again. */
  discard(): Promise<void>
}

type EntryState = { usable: true; ino: number } | { usable: false; why?: string }

async function entryState(path: string, maxDays: number, since: number): Promise<EntryState> {
  const st = await lstat(path).catch(() => null)
  if (st === null) return { usable: false }
  const why = entryDistrust(st, ourUid())
  if (why) return { usable: false, why }
  // completed after this create began (another one that arrived with us downloaded it),
  // it is used even with maxDays 0
  const fresh = st.mtimeMs >= since || !isExpired(st.mtimeMs, Date.now(), maxDays)
  return fresh ? { usable: true, ino: st.ino } : { usable: false }
}

const noop = async () => undefined

/** Returns a fresh cache entry for url, calling download() to fill a temporary file when
 *  there is none. Parallel callers for one URL wait for the first one's download. */
export async function cachedDownload(dir: string, url: URL, maxDays: number, download: (fh: FileHandle) => Promise<DownloadOutcome>): Promise<CacheResult> {
  const key = cacheKey(url)
  const path = join(dir, entryName(key))
  const lockPath = join(dir, lockName(key))
  const lockOpts: LockOptions = { wait: true, where: `IMAGE_STORAGE ${dir}`, hint: STORAGE_HINT }
  const since = Date.now() - CLOCK_SLACK_MS
  let downloaded = false
  for (let round = 0; round < 3; round++) {
    const shared = (await acquireLock(lockPath, 'shared', lockOpts)) as Lock
    const state = await entryState(path, maxDays, since)
    if (state.usable) {
      const discard = async () => {
        const now = await lstat(path).catch(() => null)
        if (now?.ino === state.ino && (await unlink(path).then(() => true, () => false))) info(`cache: removed the entry ${path}, which failed to decode: the next create downloads it again`)
      }
      return { path, hit: !downloaded, streamed: false, release: () => shared.release(), discard }
    }
    await shared.release()
    const exclusive = (await acquireLock(lockPath, 'exclusive', lockOpts)) as Lock
    try {
      const now = await entryState(path, maxDays, since)
      if (now.usable) continue // someone else downloaded it meanwhile
      if (now.why) info(`cache: ${path} is not used because ${now.why}: downloading again`)
      await unlink(path).catch(() => undefined)
      const outcome = await downloadToTemp(dir, key, download)
      downloaded = true
      if (outcome === 'partial') return { hit: false, streamed: true, release: noop, discard: noop }
      info(`cache: stored ${redact(url.href)} as ${path}`)
      // written to disk 0 already: nothing more to read, nor to wait for
      if (outcome === 'streamed') return { path, hit: false, streamed: true, release: noop, discard: noop }
    } finally {
      await exclusive.release()
    }
  }
  throw new Failure(`the cache entry for ${redact(url.href)} kept disappearing`, 'check other processes that use IMAGE_STORAGE')
}

/** Downloads into a temporary file, renamed to the entry only when complete and synced. */
async function downloadToTemp(dir: string, key: string, download: (fh: FileHandle) => Promise<DownloadOutcome>): Promise<DownloadOutcome> {
  const temp = join(dir, tempName(key, `${process.pid}-${Date.now().toString(36)}`))
  const fh = await open(temp, 'wx', 0o600).catch((err: unknown) => {
    throw cacheWriteFailure(failedWith(err))
  })
  const forget = defer(`temporary download ${temp}`, () => unlink(temp).catch(() => undefined))
  let outcome: DownloadOutcome
  try {
    outcome = await download(fh)
    if (outcome !== 'partial') {
      await fh.datasync().catch((err: unknown) => {
        throw cacheWriteFailure(failedWith(err))
      })
      // complete now, not at its last write: creates that came during the sync use it
      const now = new Date()
      await fh.utimes(now, now)
    }
    await fh.close()
  } catch (err) {
    await fh.close().catch(() => undefined)
    await forget.run()
    throw err
  }
  if (outcome === 'partial') {
    await forget.run()
    return outcome
  }
  await rename(temp, join(dir, entryName(key)))
  forget.cancel()
  const dirHandle = await open(dir, 'r')
  await dirHandle.sync().finally(() => dirHandle.close())
  return outcome
}
