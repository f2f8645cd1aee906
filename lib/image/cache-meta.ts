// What the cache knows of an entry beyond its bytes, in <key>.meta beside <key>.image: the
// URL, the server's validators (ETag, Last-Modified) for revalidation and resumption, and
// the digests computed while it downloaded, so that a later create with image_checksum
// compares without reading the entry again. Written to a temporary file and renamed, under
// the entry's exclusive lock; it names the entry's inode and size, so a .meta that does not
// belong to the entry beside it (a crash between the two renames) is never believed.
import { lstat, open, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { entryDistrust } from './cache-names.js'
import type { DigestAlgo } from './checksum.js'

export interface EntryMeta {
  /** The URL, credentials removed. */
  url: string
  etag?: string
  lastModified?: string
  size: number
  ino: number
  sha256?: string
  sha512?: string
  /** When the download was stored, and when the server last confirmed it (ms since 1970). */
  storedAt: number
  checkedAt: number
}

export const metaName = (key: string) => `${key}.meta`
const metaTempName = (key: string) => `${key}.part-meta-${process.pid}-${Date.now().toString(36)}`

const HEX: Record<DigestAlgo, RegExp> = { sha256: /^[0-9a-f]{64}$/, sha512: /^[0-9a-f]{128}$/ }

/** Parses a .meta file; anything malformed is no metadata at all. */
export function parseMeta(text: string): EntryMeta | null {
  let v: Record<string, unknown>
  try {
    v = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof v !== 'object' || v === null) return null
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined)
  const num = (k: string) => (typeof v[k] === 'number' && Number.isFinite(v[k]) ? (v[k] as number) : undefined)
  const [url, size, ino, storedAt, checkedAt] = [str('url'), num('size'), num('ino'), num('storedAt'), num('checkedAt')]
  if (url === undefined || size === undefined || ino === undefined || storedAt === undefined || checkedAt === undefined) return null
  const digest = (algo: DigestAlgo) => {
    const d = str(algo)
    return d !== undefined && HEX[algo].test(d) ? d : undefined
  }
  return { url, size, ino, storedAt, checkedAt, etag: str('etag'), lastModified: str('lastModified'), sha256: digest('sha256'), sha512: digest('sha512') }
}

/** The entry's metadata, if it has trustworthy metadata that belongs to it. */
export async function readMeta(dir: string, key: string, entry: { ino: number; size: number }): Promise<EntryMeta | undefined> {
  const path = join(dir, metaName(key))
  const st = await lstat(path).catch(() => null)
  if (!st || entryDistrust(st, process.getuid?.() ?? 0)) return undefined
  const meta = parseMeta(await readFile(path, 'utf8').catch(() => ''))
  return meta && meta.ino === entry.ino && meta.size === entry.size ? meta : undefined
}

/** Writes the metadata atomically (temporary file, fsync, rename). */
export async function writeMeta(dir: string, key: string, meta: EntryMeta): Promise<void> {
  const temp = join(dir, metaTempName(key))
  const fh = await open(temp, 'wx', 0o600)
  try {
    await fh.writeFile(JSON.stringify(meta) + '\n')
    await fh.datasync()
  } catch (err) {
    await fh.close().catch(() => undefined)
    await unlink(temp).catch(() => undefined)
    throw err
  }
  await fh.close()
  await rename(temp, join(dir, metaName(key))).catch(async (err) => {
    await unlink(temp).catch(() => undefined)
    throw err
  })
}

export async function removeMeta(dir: string, key: string): Promise<void> {
  await unlink(join(dir, metaName(key))).catch(() => undefined)
}
