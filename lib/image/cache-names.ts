// The download cache's file names and the rules for trusting what is found there. Pure.
// One entry per URL, named by the URL's SHA-256, so that no other file in IMAGE_STORAGE is
// ever taken for an entry: <key>.image, its <key>.meta, its <key>.lock, and <key>.part-*
// while a download (or a .meta) is being written.
import { createHash } from 'node:crypto'
import type { Stats } from 'node:fs'

const DAY_MS = 24 * 3600 * 1000

export function cacheKey(url: URL): string {
  return createHash('sha256').update(url.href).digest('hex')
}

export const entryName = (key: string) => `${key}.image`
export const lockName = (key: string) => `${key}.lock`
export const tempName = (key: string, unique: string) => `${key}.part-${unique}`
/** The temporary file of a download that is only ever appended to (never starts over), which
 *  parallel creates may read as it grows (./follow.ts): tempName(key, SHAREABLE_TAG + ...). */
export const SHAREABLE_TAG = 's-'
export const shareablePrefix = (key: string) => `${key}.part-${SHAREABLE_TAG}`

export type CacheFileKind = 'entry' | 'meta' | 'lock' | 'temp'

/** Parses a file name of the cache; anything else in the directory is not ours. */
export function classifyName(name: string): { key: string; kind: CacheFileKind } | null {
  const m = /^([0-9a-f]{64})\.(image|meta|lock|part-[0-9a-z-]+)$/.exec(name)
  if (!m) return null
  const kinds: Record<string, CacheFileKind> = { image: 'entry', meta: 'meta', lock: 'lock' }
  return { key: m[1], kind: kinds[m[2]] ?? 'temp' }
}

export function isExpired(mtimeMs: number, nowMs: number, maxDays: number): boolean {
  return nowMs - mtimeMs >= maxDays * DAY_MS
}

/** Why a cache file cannot be trusted, or null: only a plain file of root's with no other
 *  name (a hard link someone made) and not writable by others is ever written to a disk. */
export function entryDistrust(st: Pick<Stats, 'uid' | 'mode' | 'nlink'> & { isFile(): boolean }, uid: number): string | null {
  if (!st.isFile()) return 'it is not a regular file'
  if (st.uid !== uid) return `it is owned by uid ${st.uid}, not by root`
  if (st.nlink !== 1) return 'it has other names (hard links)'
  if ((st.mode & 0o022) !== 0) return 'it is writable by others'
  return null
}
