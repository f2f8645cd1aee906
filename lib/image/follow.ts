// Parallel creates of one cold URL share its download as it arrives (Ganeti runs creates
// on a node at once): the first one downloads into <key>.part-s-*, a temporary file that
// never starts over (no --retry), and the others read that file as it grows, writing their
// own disk 0 from it, instead of waiting for the download to finish and then reading the
// entry. A follower knows the download is over when the temporary file's name is gone:
// renamed to the entry (same inode: complete, synced and accepted) or removed (failed).
import { constants, readFileSync } from 'node:fs'
import { open, readdir, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { Failure } from '../errors.js'
import { debug, info } from '../log.js'
import { entryDistrust, entryName, shareablePrefix } from './cache-names.js'
import type { Consumer } from './tap.js'
import { checkDigest, type ExpectedDigest } from './checksum.js'
import { GrowingFile } from './growing-file.js'

const POLL_MS = 15
/** How long a follower looks for the download's temporary file while its lock is busy. */
const FIND_MS = 1000

export type FollowOutcome = 'followed' | 'not-found'

/** The shareable download of `key` in progress in dir, if one is (looked for a moment: the
 *  downloader makes its file just after taking the lock). */
export async function findLiveDownload(dir: string, key: string): Promise<string | undefined> {
  const until = Date.now() + FIND_MS
  for (;;) {
    const names = await readdir(dir).catch(() => [] as string[])
    const live = names.find((n) => n.startsWith(shareablePrefix(key)))
    if (live || Date.now() >= until) return live && join(dir, live)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Feeds the growing file at `path` to the consumer until the download is over. */
export async function followDownload(dir: string, key: string, path: string, consumer: Consumer, expected?: ExpectedDigest): Promise<FollowOutcome> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => null)
  if (!fh) return 'not-found' // renamed or removed meanwhile: the entry path says which
  try {
    const st = await fh.stat()
    const why = entryDistrust(st, process.getuid?.() ?? 0)
    if (why || (st.mode & 0o077) !== 0) {
      debug(`not following ${path}: ${why ?? 'readable by others'}`)
      return 'not-found'
    }
    info('cache miss: another create is downloading this image: sharing the download of another create, writing disk 0 as it arrives')
    const fed = await feed(fh, st.ino, dir, key, path, consumer, expected)
    if (fed === 'declined') return 'not-found' // a qcow2 (image_type auto): read once it is whole
    info(`cache miss: disk 0 was written from the download of another create as it arrived`)
    return 'followed'
  } finally {
    await fh.close()
  }
}

async function feed(fh: FileHandle, ino: number, dir: string, key: string, path: string, consumer: Consumer, expected?: ExpectedDigest): Promise<'done' | 'declined'> {
  const hash = expected ? createHash(expected.algo) : undefined
  let failure: Failure | undefined // the shared download's, said as ours
  const file = new GrowingFile(
    fh,
    {
      readable: () => Infinity, // another process writes it: only a read tells how far
      async more() {
        const over = await downloadOver(dir, key, path, ino)
        if (over === 'failed') throw (failure = new Failure('the download this create was sharing with another create failed (see that create\'s log)', 'create the instance again: it downloads the image itself then'))
        if (!over) await sleep(POLL_MS)
        return over === 'complete' // read to the end once more after the download was over
      },
    },
    (chunk) => hash?.update(chunk),
  )
  try {
    const verdict = await consumer(file, undefined)
    if (verdict === 'declined') return 'declined'
    if (hash && expected) {
      // the digest is of the whole file: past the end of the image too
      file.close()
      const rest = Buffer.allocUnsafe(1 << 20)
      while ((await file.read(rest, 0, rest.length)) > 0);
      checkDigest(expected, hash.digest('hex'))
    }
    return 'done'
  } catch (err) {
    // a writer stopped by our failure fails too, with less to say
    throw failure ?? err
  } finally {
    file.close()
  }
}

/** Whether the download is over, and how: its temporary name is gone, and the entry is the
 *  same file (renamed: complete) or not (removed: failed). */
async function downloadOver(dir: string, key: string, path: string, ino: number): Promise<'complete' | 'failed' | undefined> {
  // a downloader killed outright (SIGKILL) leaves its file behind: the pid in its name says
  if (await stat(path).then(() => true, () => false)) return downloaderAlive(path) ? undefined : 'failed'
  const entry = await stat(join(dir, entryName(key))).catch(() => null)
  return entry?.ino === ino ? 'complete' : 'failed'
}

/** Whether the process that makes <key>.part-s-<pid>-<time> still runs. */
export function downloaderAlive(path: string): boolean {
  const pid = Number(/\.part-s-(\d+)-[0-9a-z]+$/.exec(path)?.[1])
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    // a zombie (killed, not yet reaped by its parent) is no downloader either
    return !/^\d+ \(.*\) Z /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false // no such process
  }
}
