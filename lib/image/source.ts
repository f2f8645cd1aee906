// Where the image comes from: a local file, checked against the path policy, or an
// http(s) URL fetched into the download cache (or written onto disk 0 as it arrives).
// Either way the rest of create reads a local file of known size, or nothing.
import { access, constants, readFile, realpath, stat } from 'node:fs/promises'
import { Failure, ImageError } from '../errors.js'
import { forbiddenImagePath, type ImageRef } from '../ganeti/params.js'
import { parseCurlOpts } from './curl-opts.js'
import type { VariantConfig } from '../ganeti/variant-config.js'
import { cacheKey, cachedDownload, expireEntries, prepareStorage, type Digests } from './cache.js'
import { followDownload } from './follow.js'
import { makeAgents, type AgentFor, type Endpoint } from './http.js'
import { downloadInto } from './download.js'
import type { Consumer } from './tap.js'
import { checkDigest, expectedDigest, type ChecksumSpec, type ExpectedDigest } from './checksum.js'
import { fetchText, revalidate } from './remote.js'
import { formatBytes, info, redact } from '../log.js'

export interface ImageFile {
  streamed: false
  path: string
  size: number
  /** How the log names the image (credentials removed). */
  label: string
  /** Whether it came from the download cache without a download. */
  cacheHit?: boolean
  release(): Promise<void>
  /** The bytes failed to decode: a cache entry is dropped, so the next create downloads
   *  again (a no-op for a local file). */
  discard(): Promise<void>
  /** The digest image_checksum asks for, where it is still to be computed from the file. */
  unverified?: ExpectedDigest
  /** Keeps digests computed from the file with its cache entry (a no-op for a local file). */
  remember(digests: Digests): Promise<void>
}

/** A download that was written onto disk 0 while it arrived: there is nothing left to read. */
export interface StreamedImage {
  streamed: true
  label: string
  release(): Promise<void>
}

const GANETI_FILE_STORAGE_PATHS = '/etc/ganeti/file-storage-paths'

/** Ganeti's own file-storage directories: other instances' disks live there. */
async function ganetiStorageDirs(): Promise<string[]> {
  const text = await readFile(GANETI_FILE_STORAGE_PATHS, 'utf8').catch(() => '')
  return text.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('/'))
}

/** Checks a local image path (or another file root reads for the instance, `what`): it
 *  must resolve to a readable regular file outside the directories where devices, Ganeti
 *  state and instance disks live. */
export async function checkLocalImage(path: string, what = 'the image'): Promise<{ path: string; size: number }> {
  const real = await realpath(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new Failure(`${what} ${path} does not exist on this node`, 'copy it to the same path on every node, or use an http(s) URL')
    throw new Failure(`${what} ${path} cannot be resolved (${err.code})`, 'check the path and its permissions')
  })
  const why = forbiddenImagePath(real, await ganetiStorageDirs())
  if (why) throw new Failure(`${what} ${path} is refused because ${why}${real !== path ? ` (it resolves to ${real})` : ''}`, 'keep images in a directory of their own, such as /srv/images')
  const st = await stat(real)
  if (!st.isFile()) throw new Failure(`${what} ${path} is not a regular file`, 'give the path of a file (devices and directories are refused)')
  if (st.size === 0) throw new ImageError(`${what} ${path} is empty (0 bytes)`, what === 'the image' ? 'an empty image would leave disk 0 as it was: give the path of the image itself' : 'give the path of the file itself')
  await access(real, constants.R_OK).catch(() => {
    throw new Failure(`${what} ${path} is not readable`, 'check its permissions')
  })
  return { path: real, size: st.size }
}

/** Receives the image's bytes while they are downloaded (a cache miss), with the
 *  announced length if any; resolves when they are on disk 0. */
export type StreamConsumer = Consumer

/** The image as a local file: the path itself, or the cache entry for a URL, downloaded
 *  first on a miss (or when the server has a newer one). With `consumer`, a miss feeds the
 *  download to it as it arrives (the result is then a StreamedImage): no waiting for the
 *  whole download before writing. With `expected`, a download is checked before it is
 *  stored, and an entry against its recorded digest; what could not be checked yet (a local
 *  file, an entry of unknown digest) says so in `unverified`. */
export async function openImage(ref: ImageRef, config: VariantConfig, consumer?: StreamConsumer, checksum?: ChecksumSpec): Promise<ImageFile | StreamedImage> {
  const none = async () => undefined
  // the proxy agents (they read the CA files) once, and only where something is fetched
  let remote: Promise<Remote> | undefined
  const remoteOnce = () => (remote ??= remoteOf(config))
  const expected = checksum ? await resolveChecksum(checksum, ref, remoteOnce) : undefined
  if (expected) info(`image_checksum: ${expected.algo} ${expected.hex} (from ${expected.from})`)
  if (ref.kind === 'path') {
    const local = await checkLocalImage(ref.path)
    return { ...local, streamed: false, label: ref.path, release: none, discard: none, remember: none, unverified: expected }
  }
  const { endpoint, agentFor } = await remoteOnce()
  await prepareStorage(config.imageStorage)
  await expireEntries(config.imageStorage, config.cacheMaxDays).catch((err) => info(`cache expiry skipped: ${err.message}`))
  // a retried transfer may start over, which a disk being written from it cannot: with
  // --retry the download completes before writing starts
  const tee = endpoint.opts.retries === 0 ? consumer : undefined
  const label = redact(ref.url.href)
  for (let attempt = 0; ; attempt++) {
    const entry = await cachedDownload({
      dir: config.imageStorage,
      url: ref.url,
      maxDays: config.cacheMaxDays,
      download: (fh) => downloadInto(fh, ref.url, endpoint, agentFor, tee, { algos: expected ? [expected.algo] : [] }),
      revalidate: config.revalidate ? (v) => revalidate(ref.url, v, endpoint, agentFor) : undefined,
      accept: expected ? (d) => checkDigest(expected, d[expected.algo]) : undefined,
      shareable: tee !== undefined,
      follow: tee ? (path) => followDownload(config.imageStorage, cacheKey(ref.url), path, tee, expected) : undefined,
    })
    if (entry.shared) return { streamed: true, label, release: entry.release }
    if (entry.streamed || entry.path === undefined) {
      info(`cache miss: ${label}${entry.path ? ` is ${entry.path}` : ''} (written to disk 0 while downloading${entry.path ? '' : '; not cached'})`)
      return { streamed: true, label, release: entry.release }
    }
    info(`cache ${entry.hit ? 'hit' : 'miss'}: ${label} is ${entry.path}`)
    const known = expected ? entry.meta?.[expected.algo] : undefined
    if (expected && known !== undefined && entry.hit) {
      // compared with the digest taken when it was downloaded: no read of the entry
      if (known !== expected.hex && attempt === 0) {
        info(`cache: the entry's ${expected.algo} ${known} is not the one ${expected.from} gives: removing it and downloading again`)
        await entry.discard()
        await entry.release()
        continue
      }
      checkDigest(expected, known)
      info(`image_checksum: the cached download's ${expected.algo} matches ${expected.from}`)
    }
    const st = await stat(entry.path)
    return { streamed: false, path: entry.path, size: st.size, label, cacheHit: entry.hit, release: entry.release, discard: entry.discard, remember: entry.remember, unverified: expected && known === undefined ? expected : undefined }
  }
}

/** The variant's proxy and curl options, with the agents that carry them. */
export interface Remote {
  endpoint: Endpoint
  agentFor: AgentFor
}

export async function remoteOf(config: VariantConfig): Promise<Remote> {
  const endpoint: Endpoint = { proxy: config.proxy, opts: parseCurlOpts(config.curlOpts) }
  return { endpoint, agentFor: await makeAgents(endpoint) }
}

/** The digest image_checksum asks for, its SUMS file read through the variant's proxy
 *  (`remote` is asked for only when the SUMS file is a URL). */
export async function resolveChecksum(spec: ChecksumSpec, image: ImageRef, remote: () => Promise<Remote>): Promise<ExpectedDigest> {
  const readLocal = async (path: string, maxBytes: number) => {
    const local = await checkLocalImage(path, 'the SUMS file')
    if (local.size > maxBytes) throw new Failure(`the SUMS file ${path} is larger than ${maxBytes >> 20} MiB`, 'check image_checksum: it must name the SUMS file itself')
    return readFile(local.path, 'utf8')
  }
  const fetchSums = async (url: URL, maxBytes: number) => {
    const { endpoint, agentFor } = await remote()
    return fetchText(url, endpoint, agentFor, maxBytes)
  }
  return expectedDigest(spec, image, fetchSums, readLocal)
}
