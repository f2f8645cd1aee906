// Where the image comes from: a local file, checked against the path policy, or an
// http(s) URL fetched into the download cache. Either way the rest of create reads a
// local file of known size.
import { access, constants, readFile, realpath, stat, type FileHandle } from 'node:fs/promises'
import { Failure } from './errors.js'
import { forbiddenImagePath, type ImageRef } from './params.js'
import { parseCurlOpts } from './curl-opts.js'
import type { VariantConfig } from './variant-config.js'
import { cachedDownload, expireEntries, prepareStorage } from './cache.js'
import { makeAgents, networkFailure, httpFailure, request, withRetries, type AgentFor, type Endpoint } from './http.js'
import { formatBytes, info, redact } from './log.js'

export interface ImageFile {
  path: string
  size: number
  /** How the log names the image (credentials removed). */
  label: string
  fromCache?: { hit: boolean }
  release(): Promise<void>
}

const GANETI_FILE_STORAGE_PATHS = '/etc/ganeti/file-storage-paths'

/** Ganeti's own file-storage directories: other instances' disks live there. */
async function ganetiStorageDirs(): Promise<string[]> {
  const text = await readFile(GANETI_FILE_STORAGE_PATHS, 'utf8').catch(() => '')
  return text.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('/'))
}

/** Checks a local image path: it must resolve to a readable regular file outside the
 *  directories where devices, Ganeti state and instance disks live. */
export async function checkLocalImage(path: string): Promise<{ path: string; size: number }> {
  const real = await realpath(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new Failure(`the image ${path} does not exist on this node`, 'copy it to the same path on every node, or use an http(s) URL')
    throw new Failure(`the image ${path} cannot be resolved (${err.code})`, 'check the path and its permissions')
  })
  const why = forbiddenImagePath(real, await ganetiStorageDirs())
  if (why) throw new Failure(`the image ${path} is refused because ${why}${real !== path ? ` (it resolves to ${real})` : ''}`, 'keep images in a directory of their own, such as /srv/images')
  const st = await stat(real)
  if (!st.isFile()) throw new Failure(`the image ${path} is not a regular file`, 'give the path of an image file (devices and directories are refused)')
  await access(real, constants.R_OK).catch(() => {
    throw new Failure(`the image ${path} is not readable`, 'check its permissions')
  })
  return { path: real, size: st.size }
}

const BATCH = 1 << 20

async function downloadInto(fh: FileHandle, url: URL, endpoint: Endpoint, agentFor: AgentFor): Promise<void> {
  await withRetries(endpoint.opts.retries, `downloading ${redact(url.href)}`, async () => {
    await fh.truncate(0)
    const exchange = await request(url, endpoint, agentFor, { method: 'GET' }).catch((err) => {
      throw networkFailure(url, err)
    })
    try {
      const { response } = exchange
      if (!response.ok) throw httpFailure(url, response.status, response.statusText)
      const lengthHeader = response.headers.get('content-length')
      const length = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined
      info(`downloading ${redact(url.href)}${length !== undefined ? ` (${formatBytes(length)})` : ''}`)
      const start = Date.now()
      let lastReport = start
      let written = 0
      let pending: Buffer[] = []
      let pendingBytes = 0
      const flush = async () => {
        if (pendingBytes === 0) return
        const buf = Buffer.concat(pending, pendingBytes)
        await fh.write(buf, 0, buf.length, written)
        written += buf.length
        pending = []
        pendingBytes = 0
      }
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        pending.push(chunk)
        pendingBytes += chunk.length
        if (pendingBytes >= BATCH) await flush()
        const rate = endpoint.opts.limitRate
        if (rate) {
          const ahead = ((written + pendingBytes) / rate) * 1000 - (Date.now() - start)
          if (ahead > 0) await new Promise((r) => setTimeout(r, ahead))
        }
        if (Date.now() - lastReport >= 5000) {
          lastReport = Date.now()
          const pct = length ? ` (${Math.floor(((written + pendingBytes) * 100) / length)}%)` : ''
          info(`downloaded ${formatBytes(written + pendingBytes)}${pct}`)
        }
      }
      await flush()
      if (length !== undefined && written !== length) {
        throw new Failure(`the download of ${redact(url.href)} ended after ${written} of ${length} bytes`, 'the server or the network cut it off: try again, or check the server')
      }
      const secs = Math.max((Date.now() - start) / 1000, 0.001)
      info(`downloaded ${formatBytes(written)} in ${secs.toFixed(1)} s (${(written / secs / 1e6).toFixed(1)} MB/s)`)
    } catch (err) {
      throw networkFailure(url, err)
    } finally {
      exchange.done()
    }
  })
}

export async function openImage(ref: ImageRef, config: VariantConfig): Promise<ImageFile> {
  if (ref.kind === 'path') {
    const local = await checkLocalImage(ref.path)
    return { ...local, label: ref.path, release: async () => undefined }
  }
  const endpoint: Endpoint = { proxy: config.proxy, opts: parseCurlOpts(config.curlOpts) }
  const agentFor = await makeAgents(endpoint)
  await prepareStorage(config.imageStorage)
  await expireEntries(config.imageStorage, config.cacheMaxDays).catch((err) => info(`cache expiry skipped: ${err.message}`))
  const entry = await cachedDownload(config.imageStorage, ref.url, config.cacheMaxDays, (fh) => downloadInto(fh, ref.url, endpoint, agentFor))
  const label = redact(ref.url.href)
  info(`cache ${entry.hit ? 'hit' : 'miss'}: ${label} is ${entry.path}`)
  const st = await stat(entry.path)
  return { path: entry.path, size: st.size, label, fromCache: { hit: entry.hit }, release: entry.release }
}
