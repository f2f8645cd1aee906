// The download cache in IMAGE_STORAGE (file names: ./cache-names.ts). Entries appear only
// by rename() after a complete download, with their metadata (./cache-meta.ts); a lock file
// per entry serialises downloads of one URL (exclusive) and protects entries in use
// (shared) from expiry and replacement. An entry is used only if nobody but root could have
// put it there. A young entry is revalidated with the server (a conditional GET, through
// the caller's revalidate()) before it is used.
import { lstat, mkdir, readdir, rename, unlink, chmod, open, type FileHandle } from 'node:fs/promises'
import { defer } from '../cleanup.js'
import { dirname, join } from 'node:path'
import { Failure, errorMessage } from '../errors.js'
import { acquireLock, describeFsError, type Lock, type LockOptions } from '../lock.js'
import { debug, info, redact } from '../log.js'
import { cacheKey, classifyName, entryDistrust, entryName, isExpired, lockName, SHAREABLE_TAG, tempName } from './cache-names.js'
import { metaName, readMeta, removeMeta, writeMeta, type EntryMeta } from './cache-meta.js'
import type { DigestAlgo } from './checksum.js'
import { findLiveDownload, type FollowOutcome } from './follow.js'

export { cacheKey, classifyName, entryDistrust, entryName, isExpired, lockName, tempName } from './cache-names.js'

/** A write or sync of a download into the cache went wrong (`how`): a full filesystem,
 *  most often. It is the cache's failure, not the network's, and so never retried. */
export function cacheWriteFailure(how: string): Failure {
  return new Failure(`writing the download into the image cache ${how}`, "free space where the variant's IMAGE_STORAGE points, or point it elsewhere")
}

export const failedWith = (err: unknown) => `failed (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`

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

/** How a download ended for the cache: complete, complete and already written to disk 0
 *  while it arrived, or stopped early because the consumer had all it needed. */
export type DownloadOutcome = 'complete' | 'streamed' | 'partial'

export type Digests = Partial<Record<DigestAlgo, string>>

export interface Validators {
  etag?: string
  lastModified?: string
}

/** What a download into the cache gives back: how it ended, the server's validators and
 *  the digests of the bytes (computed as they were written). */
export interface Fetched {
  outcome: DownloadOutcome
  validators: Validators
  digests: Digests
}

/** The server's answer to a conditional GET of an entry's URL. */
export type Verdict = 'fresh' | 'changed' | { unreachable: string }

export interface CacheRequest {
  dir: string
  url: URL
  maxDays: number
  download(fh: FileHandle): Promise<Fetched>
  /** Asks the server whether a young entry is still current; absent: it is used as it is. */
  revalidate?(validators: Validators): Promise<Verdict>
  /** Checks a finished download's digests before it is stored; throws to refuse it. */
  accept?(digests: Digests): void
  /** Our download never starts over (no --retry): parallel creates may follow it (./follow.ts). */
  shareable?: boolean
  /** Writes disk 0 from another create's download in progress, instead of waiting for it. */
  follow?(path: string): Promise<FollowOutcome>
}

export interface CacheResult {
  /** The entry to read the image from (undefined when the download was written while it arrived). */
  path?: string
  hit: boolean
  /** Where the image was written while it downloaded: the entry is not read. */
  streamed: boolean
  /** Written from another create's download as it arrived (./follow.ts). */
  shared?: boolean
  /** The entry's metadata (digests known without reading it), when it has any. */
  meta?: EntryMeta
  /** Releases the shared lock that keeps the entry from being expired or replaced while we read it. */
  release(): Promise<void>
  /** Drops the entry: its bytes failed to decode, so the next create downloads again. */
  discard(): Promise<void>
  /** Adds digests computed while reading the entry to its metadata. */
  remember(digests: Digests): Promise<void>
}

type EntryState = { usable: true; ino: number; size: number; mtimeMs: number } | { usable: false; why?: string }

async function entryState(path: string, maxDays: number, since: number): Promise<EntryState> {
  const st = await lstat(path).catch(() => null)
  if (st === null) return { usable: false }
  const why = entryDistrust(st, ourUid())
  if (why) return { usable: false, why }
  // completed after this create began (another one that arrived with us downloaded it),
  // it is used even with maxDays 0
  const fresh = st.mtimeMs >= since || !isExpired(st.mtimeMs, Date.now(), maxDays)
  return fresh ? { usable: true, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs } : { usable: false }
}

const noop = async () => undefined
const age = (ms: number) => (ms < 3600_000 ? `${Math.round(ms / 60_000)} min` : ms < 2 * 86400_000 ? `${(ms / 3600_000).toFixed(1)} h` : `${(ms / 86400_000).toFixed(1)} days`)

/** Returns a fresh cache entry for the URL, calling download() to fill a temporary file when
 *  there is none or the server has a newer one. Parallel callers for one URL wait for the
 *  first one's download. */
export async function cachedDownload(req: CacheRequest): Promise<CacheResult> {
  const { dir, url, maxDays } = req
  const key = cacheKey(url)
  const path = join(dir, entryName(key))
  const label = redact(url.href)
  const lockOpts: LockOptions = { wait: true, where: `IMAGE_STORAGE ${dir}`, hint: STORAGE_HINT }
  const started = Date.now()
  const since = started - CLOCK_SLACK_MS
  let downloaded = false
  let stale: number | undefined // the inode of an entry the server said has changed
  for (let round = 0; round < 4; round++) {
    let shared = await acquireLock(join(dir, lockName(key)), 'shared', { ...lockOpts, wait: round > 0 || !req.follow ? true : false })
    if (!shared) {
      // busy: most likely another create downloading this URL, whose download we may share
      const live = await findLiveDownload(dir, key)
      if (live && (await req.follow!(live)) === 'followed') return { hit: false, streamed: true, shared: true, release: noop, discard: noop, remember: noop }
      shared = (await acquireLock(join(dir, lockName(key)), 'shared', lockOpts)) as Lock
    }
    const state = await entryState(path, maxDays, since)
    if (state.usable && state.ino !== stale) {
      let meta = await readMeta(dir, key, state)
      const verdict = downloaded ? undefined : await revalidated(req, meta, started)
      if (verdict === 'changed') {
        info(`cache: the server has a newer ${label} than the entry of ${age(Date.now() - state.mtimeMs)} ago: downloading it`)
        stale = state.ino
      } else {
        if (verdict === 'fresh' && meta) {
          meta = { ...meta, checkedAt: Date.now() }
          await writeMeta(dir, key, meta).catch((err) => info(`cache: could not note the revalidation in ${metaName(key)} (${errorMessage(err)})`))
          info(`cache: the server says ${label} is unchanged (HTTP 304): using the entry`)
        } else if (typeof verdict === 'object') {
          info(`cache: could not ask the server whether ${label} changed (${verdict.unreachable}): using the entry of ${age(Date.now() - state.mtimeMs)} ago`)
        }
        return entryResult(dir, key, path, state, meta, !downloaded, shared)
      }
    }
    await shared.release()
    const exclusive = (await acquireLock(join(dir, lockName(key)), 'exclusive', lockOpts)) as Lock
    try {
      const now = await entryState(path, maxDays, since)
      if (now.usable && now.ino !== stale) continue // someone else downloaded it meanwhile
      if (!now.usable && now.why) {
        info(`cache: ${path} is not used because ${now.why}: downloading again`)
        await unlink(path).catch(() => undefined)
        await removeMeta(dir, key)
      }
      const outcome = await downloadToTemp(req, key)
      downloaded = true
      if (outcome === 'partial') return { hit: false, streamed: true, release: noop, discard: noop, remember: noop }
      info(`cache: stored ${label} as ${path}`)
      // written to disk 0 already: nothing more to read, nor to wait for
      if (outcome === 'streamed') return { path, hit: false, streamed: true, release: noop, discard: noop, remember: noop }
    } finally {
      await exclusive.release()
    }
  }
  throw new Failure(`the cache entry for ${label} kept disappearing`, 'check other processes that use IMAGE_STORAGE')
}

/** Whether to ask the server about a young entry, and its answer: not for an entry this
 *  create has seen confirmed or stored, nor for one without validators. */
async function revalidated(req: CacheRequest, meta: EntryMeta | undefined, started: number): Promise<Verdict | undefined> {
  if (!req.revalidate) return undefined
  if (!meta || (!meta.etag && !meta.lastModified)) {
    debug(`cache: the entry has no ETag or Last-Modified to revalidate with: used until it expires`)
    return undefined
  }
  // confirmed by another create since this one began (checkedAt is our clock, not the filesystem's)
  if (meta.checkedAt >= started) return undefined
  return req.revalidate({ etag: meta.etag, lastModified: meta.lastModified })
}

function entryResult(dir: string, key: string, path: string, state: Extract<EntryState, { usable: true }>, meta: EntryMeta | undefined, hit: boolean, shared: Lock): CacheResult {
  const discard = async () => {
    const now = await lstat(path).catch(() => null)
    if (now?.ino === state.ino && (await unlink(path).then(() => true, () => false))) {
      await removeMeta(dir, key)
      info(`cache: removed the entry ${path}, which failed to decode: the next create downloads it again`)
    }
  }
  const remember = async (digests: Digests) => {
    const base: EntryMeta = meta ?? { url: '', size: state.size, ino: state.ino, storedAt: state.mtimeMs, checkedAt: state.mtimeMs }
    await writeMeta(dir, key, { ...base, ...digests }).catch((err) => info(`cache: could not keep the digest in ${metaName(key)} (${errorMessage(err)})`))
  }
  return { path, hit, streamed: false, meta, release: () => shared.release(), discard, remember }
}

/** Downloads into a temporary file, renamed to the entry (over an older one: a reader of it
 *  keeps what it opened) only when complete, synced and accepted, its metadata first. */
async function downloadToTemp(req: CacheRequest, key: string): Promise<DownloadOutcome> {
  const { dir } = req
  const temp = join(dir, tempName(key, `${req.shareable ? SHAREABLE_TAG : ''}${process.pid}-${Date.now().toString(36)}`))
  const fh = await open(temp, 'wx', 0o600).catch((err: unknown) => {
    throw cacheWriteFailure(failedWith(err))
  })
  const forget = defer(`temporary download ${temp}`, () => unlink(temp).catch(() => undefined))
  let fetched: Fetched
  let meta: EntryMeta | undefined
  try {
    fetched = await req.download(fh)
    if (fetched.outcome !== 'partial') {
      req.accept?.(fetched.digests)
      await fh.datasync().catch((err: unknown) => {
        throw cacheWriteFailure(failedWith(err))
      })
      // complete now, not at its last write: creates that came during the sync use it
      const now = new Date()
      await fh.utimes(now, now)
      const st = await fh.stat()
      meta = { url: redact(req.url.href), ...fetched.validators, size: st.size, ino: st.ino, ...fetched.digests, storedAt: now.getTime(), checkedAt: now.getTime() }
    }
    await fh.close()
  } catch (err) {
    await fh.close().catch(() => undefined)
    await forget.run()
    throw err
  }
  if (!meta) {
    await forget.run()
    return fetched.outcome
  }
  await writeMeta(dir, key, meta).catch((err: unknown) => {
    throw cacheWriteFailure(`(its metadata) ${failedWith(err)}`)
  })
  await rename(temp, join(dir, entryName(key)))
  forget.cancel()
  const dirHandle = await open(dir, 'r')
  await dirHandle.sync().finally(() => dirHandle.close())
  return fetched.outcome
}
