// The download cache in IMAGE_STORAGE. One entry per URL, named by the URL's SHA-256, so
// that no other file there is ever taken for an entry. Entries appear only by rename()
// after a complete download; a lock file per entry serialises downloads of one URL
// (exclusive) and protects entries in use (shared) from expiry.
import { createHash } from 'node:crypto'
import { lstat, mkdir, readdir, rename, stat, unlink, chmod, open, type FileHandle } from 'node:fs/promises'
import { defer } from './cleanup.js'
import { join } from 'node:path'
import { Failure, errorMessage } from './errors.js'
import { acquireLock, type Lock } from './lock.js'
import { debug, info, redact } from './log.js'

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

/** Creates IMAGE_STORAGE (0700) or checks that an existing one cannot be tampered with:
 *  the default lives in world-writable /tmp, where anyone could have made it first. */
export async function prepareStorage(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const st = await lstat(dir)
  const uid = process.getuid?.() ?? 0
  if (!st.isDirectory()) throw new Failure(`IMAGE_STORAGE ${dir} is not a directory (a symlink?)`, 'remove it or set IMAGE_STORAGE to another directory in the variant config')
  if (st.uid !== uid) throw new Failure(`IMAGE_STORAGE ${dir} is owned by uid ${st.uid}, not by us`, 'remove it (someone else may have planted files there) or set another IMAGE_STORAGE')
  if ((st.mode & 0o022) !== 0) {
    await chmod(dir, st.mode & 0o755)
    info(`IMAGE_STORAGE ${dir} was writable by others; removed that permission`)
  }
}

/** Removes expired entries and leftovers of interrupted downloads, skipping any in use. */
export async function expireEntries(dir: string, maxDays: number, now = Date.now()): Promise<void> {
  const names = await readdir(dir)
  const byKey = new Map<string, { entry?: string; temps: string[] }>()
  for (const name of names) {
    const c = classifyName(name)
    if (!c || c.kind === 'lock') continue
    const item = byKey.get(c.key) ?? { temps: [] }
    if (c.kind === 'entry') item.entry = name
    else item.temps.push(name)
    byKey.set(c.key, item)
  }
  for (const [key, item] of byKey) {
    const expired = item.entry ? isExpired((await stat(join(dir, item.entry))).mtimeMs, now, maxDays) : false
    if (!expired && item.temps.length === 0) continue
    const lock = await acquireLock(join(dir, lockName(key)), 'exclusive', false)
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
      await lock.release()
    }
  }
}

export interface CacheHit {
  path: string
  hit: boolean
  /** Releases the shared lock that keeps the entry from being expired while we read it. */
  release(): Promise<void>
}

async function usableEntry(path: string, maxDays: number, ownIno: number | undefined): Promise<boolean> {
  const st = await stat(path).catch(() => null)
  if (st === null || !st.isFile()) return false
  // the entry we have just downloaded ourselves is used even when maxDays is 0
  return st.ino === ownIno || !isExpired(st.mtimeMs, Date.now(), maxDays)
}

/** Returns a fresh cache entry for url, calling download() to fill a temporary file when
 *  there is none. Parallel callers for one URL wait for the first one's download. */
export async function cachedDownload(dir: string, url: URL, maxDays: number, download: (fh: FileHandle) => Promise<void>): Promise<CacheHit> {
  const key = cacheKey(url)
  const path = join(dir, entryName(key))
  const lockPath = join(dir, lockName(key))
  let ownIno: number | undefined
  for (let round = 0; round < 3; round++) {
    const shared = (await acquireLock(lockPath, 'shared', true)) as Lock
    if (await usableEntry(path, maxDays, ownIno)) return { path, hit: ownIno === undefined, release: () => shared.release() }
    await shared.release()
    const exclusive = (await acquireLock(lockPath, 'exclusive', true)) as Lock
    try {
      if (await usableEntry(path, maxDays, ownIno)) continue // someone else downloaded it meanwhile
      await unlink(path).catch(() => undefined)
      const temp = join(dir, tempName(key, `${process.pid}-${Date.now().toString(36)}`))
      const fh = await open(temp, 'wx', 0o600)
      const forget = defer(`temporary download ${temp}`, () => unlink(temp).catch(() => undefined))
      try {
        await download(fh)
        await fh.datasync().catch((err: unknown) => {
          throw cacheWriteFailure(failedWith(err))
        })
        ownIno = (await fh.stat()).ino
        await fh.close()
      } catch (err) {
        await fh.close().catch(() => undefined)
        await forget.run()
        throw err
      }
      await rename(temp, path)
      forget.cancel()
      const dirHandle = await open(dir, 'r')
      await dirHandle.sync().finally(() => dirHandle.close())
      info(`cache: stored ${redact(url.href)} as ${path}`)
    } finally {
      await exclusive.release()
    }
  }
  throw new Failure(`the cache entry for ${redact(url.href)} kept disappearing`, 'check other processes that use IMAGE_STORAGE')
}
