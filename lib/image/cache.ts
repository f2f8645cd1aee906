// The download cache in IMAGE_STORAGE (file names: ./cache-names.ts). Entries appear only
// by rename() after a complete download, with their metadata (./cache-meta.ts); a lock file
// per entry serialises downloads of one URL (exclusive) and protects entries in use
// (shared) from expiry and replacement. An entry is used only if nobody but root could have
// put it there. A young entry is revalidated with the server (a conditional GET, through
// the caller's revalidate()) before it is used.
import { lstat, rename, unlink, open, type FileHandle } from 'node:fs/promises'
import { defer } from '../cleanup.js'
import { join } from 'node:path'
import { Failure, errorMessage } from '../errors.js'
import { acquireLock, type Lock, type LockOptions } from '../lock.js'
import { debug, info, redact } from '../log.js'
import { cacheKey, entryDistrust, entryName, isExpired, lockName, SHAREABLE_TAG, tempName } from './cache-names.js'
import { STORAGE_HINT } from './cache-dir.js'
import { metaName, readMeta, removeMeta, writeMeta, type EntryMeta } from './cache-meta.js'
import type { DigestAlgo } from './checksum.js'
import { findLiveDownload, type FollowOutcome } from './follow.js'

export { cacheKey, classifyName, entryDistrust, entryName, isExpired, lockName, tempName } from './cache-names.js'
export { expireEntries, prepareStorage } from './cache-dir.js'

/** A write or sync of a download into the cache went wrong (`how`): a full filesystem,
 *  most often. It is the cache's failure, not the network's, and so never retried. */
export function cacheWriteFailure(how: string): Failure {
  return new Failure(`writing the download into the image cache ${how}`, "free space where the variant's IMAGE_STORAGE points, or point it elsewhere")
}

export const failedWith = (err: unknown) => `failed (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`

/** Filesystem timestamps come from a clock that may lag Date.now() by a tick. */
const CLOCK_SLACK_MS = 1000


const ourUid = () => process.getuid?.() ?? 0

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
  /** Fills the temporary file; a complete (or streamed) download returns with it flushed
   *  (lib/image/download.ts writes it back as it goes, its last flush beside disk 0's). */
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
  // a lock that is busy most likely means another create downloading this URL: while
  // nothing is on disk 0 yet, its download may be shared instead of waited for
  const lockOrFollow = async (mode: 'shared' | 'exclusive'): Promise<Lock | null> => {
    const lockPath = join(dir, lockName(key))
    if (req.follow && !downloaded) {
      const now = await acquireLock(lockPath, mode, { ...lockOpts, wait: false })
      if (now) return now
      const live = await findLiveDownload(dir, key)
      if (live && (await req.follow(live)) === 'followed') return null
    }
    return (await acquireLock(lockPath, mode, lockOpts)) as Lock
  }
  const sharedResult: CacheResult = { hit: false, streamed: true, shared: true, release: noop, discard: noop, remember: noop }
  for (let round = 0; round < 4; round++) {
    const shared = await lockOrFollow('shared')
    if (!shared) return sharedResult
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
        return entryResult(dir, key, path, label, state, meta, !downloaded, shared)
      }
    }
    await shared.release()
    const exclusive = await lockOrFollow('exclusive')
    if (!exclusive) return sharedResult
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

function entryResult(dir: string, key: string, path: string, label: string, state: Extract<EntryState, { usable: true }>, meta: EntryMeta | undefined, hit: boolean, shared: Lock): CacheResult {
  const discard = async () => {
    const now = await lstat(path).catch(() => null)
    if (now?.ino === state.ino && (await unlink(path).then(() => true, () => false))) {
      await removeMeta(dir, key)
      info(`cache: removed the entry ${path}, which failed to decode: the next create downloads it again`)
    }
  }
  const remember = async (digests: Digests) => {
    const base: EntryMeta = meta ?? { url: label, size: state.size, ino: state.ino, storedAt: state.mtimeMs, checkedAt: state.mtimeMs }
    await writeMeta(dir, key, { ...base, ...digests }).catch((err) => info(`cache: could not keep the digest in ${metaName(key)} (${errorMessage(err)})`))
  }
  return { path, hit, streamed: false, meta, release: () => shared.release(), discard, remember }
}

/** Downloads into a temporary file, renamed to the entry (over an older one: a reader of it
 *  keeps what it opened) only when complete, synced and accepted, its metadata first. */
async function downloadToTemp(req: CacheRequest, key: string): Promise<DownloadOutcome> {
  const { dir } = req
  const temp = join(dir, tempName(key, `${req.shareable ? SHAREABLE_TAG : ''}${process.pid}-${Date.now().toString(36)}`))
  const fh = await open(temp, 'wx+', 0o600).catch((err: unknown) => {
    throw cacheWriteFailure(failedWith(err))
  })
  const forget = defer(`temporary download ${temp}`, () => unlink(temp).catch(() => undefined))
  let fetched: Fetched
  let meta: EntryMeta | undefined
  try {
    fetched = await req.download(fh)
    if (fetched.outcome !== 'partial') {
      req.accept?.(fetched.digests)
      // complete now, not at its last write: creates that came during the download's last
      // flush use it
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
