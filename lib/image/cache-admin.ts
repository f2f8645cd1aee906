// What simpleimage-cache does with a cache directory: list its entries with what their
// metadata says, and purge them, never one in use (its lock is taken without waiting: a
// create or prefetch holding it keeps it).
import { lstat, readdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { acquireLock } from '../lock.js'
import { classifyName, entryName, isExpired, lockName } from './cache-names.js'
import { readMeta, removeMeta, type EntryMeta } from './cache-meta.js'

export interface ListedEntry {
  key: string
  path: string
  size: number
  mtimeMs: number
  meta?: EntryMeta
  inUse: boolean
}

async function keysOf(dir: string): Promise<{ entries: string[]; all: string[] }> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[]
    throw err
  })
  const entries = new Set<string>()
  const all = new Set<string>()
  for (const name of names) {
    const c = classifyName(name)
    if (!c) continue
    all.add(c.key)
    if (c.kind === 'entry') entries.add(c.key)
  }
  return { entries: [...entries].sort(), all: [...all].sort() }
}

const lockOpts = (dir: string) => ({ wait: false, where: `IMAGE_STORAGE ${dir}`, hint: "check the variant's IMAGE_STORAGE" })

export async function listEntries(dir: string): Promise<ListedEntry[]> {
  const out: ListedEntry[] = []
  for (const key of (await keysOf(dir)).entries) {
    const path = join(dir, entryName(key))
    const st = await lstat(path).catch(() => null)
    if (!st?.isFile()) continue
    const lock = await acquireLock(join(dir, lockName(key)), 'exclusive', lockOpts(dir))
    await lock?.release()
    out.push({ key, path, size: st.size, mtimeMs: st.mtimeMs, meta: await readMeta(dir, key, st), inUse: lock === null })
  }
  return out
}

export interface Purged {
  removed: number
  bytes: number
  inUse: string[]
}

/** Removes the entries of dir (with `maxDays`, only those older than that), their metadata,
 *  locks and leftovers of interrupted downloads; entries in use are kept and named. */
export async function purgeEntries(dir: string, maxDays?: number, now = Date.now()): Promise<Purged> {
  const result: Purged = { removed: 0, bytes: 0, inUse: [] }
  const { entries, all } = await keysOf(dir)
  const names = await readdir(dir).catch(() => [] as string[])
  for (const key of all) {
    const path = join(dir, entryName(key))
    const st = entries.includes(key) ? await lstat(path).catch(() => null) : null
    if (st && maxDays !== undefined && !isExpired(st.mtimeMs, now, maxDays)) continue
    const lock = await acquireLock(join(dir, lockName(key)), 'exclusive', lockOpts(dir))
    if (!lock) {
      if (st) result.inUse.push(path)
      continue
    }
    try {
      if (st && (await unlink(path).then(() => true, () => false))) {
        result.removed++
        result.bytes += st.size
      }
      await removeMeta(dir, key)
      for (const name of names) if (name.startsWith(`${key}.part-`)) await unlink(join(dir, name)).catch(() => undefined)
    } finally {
      await lock.remove()
    }
  }
  return result
}
