// simpleimage-cache: the operator's command for the provider's download cache. prefetch
// downloads an image exactly as create would (the variant's proxy, curl options, catalog
// and image_checksum), so that `gnt-cluster command simpleimage-cache prefetch NAME` puts
// it on every node before a rollout; list and purge show and empty the cache.
import { readVariantConfig, knownVariants, type VariantConfig } from '../lib/ganeti/variant-config.js'
import { imageParams } from '../lib/ganeti/catalog.js'
import { parseImage } from '../lib/ganeti/params.js'
import { parseCacheArgs, UsageError, type CacheCommand } from '../lib/image/cache-args.js'
import { listEntries, purgeEntries } from '../lib/image/cache-admin.js'
import { parseChecksum } from '../lib/image/checksum.js'
import { startFileCheck } from '../lib/image/hash-file.js'
import { openImage } from '../lib/image/source.js'
import { formatBytes, info } from '../lib/log.js'
import { runScript } from '../lib/main.js'

const USAGE = `usage: simpleimage-cache list [--variant V]
       simpleimage-cache prefetch [--variant V] [--checksum SPEC] IMAGE
       simpleimage-cache purge [--variant V] [--expired]
The download cache of ganeti-instance-simpleimage, in each variant's IMAGE_STORAGE.
  list      the cached images: URL, size, age, digests, whether in use (on stdout)
  prefetch  downloads IMAGE (a URL, or a name in the variant's images.ini) into the
            variant's cache as create would: PROXY, CUSTOM_CURL_OPTS, image_checksum
            (--checksum, else the catalog's), revalidating an entry it already has
  purge     removes cached images (--expired: only those older than
            DOWNLOAD_CACHE_MAX_DAYS); images in use are kept
Without --variant, list and purge cover every variant; prefetch uses "default".
See simpleimage-cache(8).`

const accepts = (argv: string[]) => {
  try {
    parseCacheArgs(argv)
    return true
  } catch (err) {
    if (err instanceof UsageError) process.stderr.write(`simpleimage-cache: ${err.message}\n`)
    return false
  }
}

/** Each IMAGE_STORAGE once, with the variants that use it. */
async function storages(variant: string | undefined): Promise<{ dir: string; variants: string[]; configs: VariantConfig[] }[]> {
  const byDir = new Map<string, { dir: string; variants: string[]; configs: VariantConfig[] }>()
  for (const name of variant ? [variant] : await knownVariants(process.env)) {
    const config = await readVariantConfig(process.env, name)
    const item = byDir.get(config.imageStorage) ?? { dir: config.imageStorage, variants: [], configs: [] }
    item.variants.push(name)
    item.configs.push(config)
    byDir.set(config.imageStorage, item)
  }
  return [...byDir.values()]
}

const ago = (ms: number) => (ms < 3600_000 ? `${Math.max(0, Math.round(ms / 60_000))} min` : ms < 172_800_000 ? `${(ms / 3600_000).toFixed(1)} h` : `${(ms / 86_400_000).toFixed(1)} days`)

async function list(cmd: Extract<CacheCommand, { command: 'list' }>): Promise<void> {
  let count = 0
  for (const { dir, variants } of await storages(cmd.variant)) {
    const entries = await listEntries(dir)
    process.stdout.write(`${dir} (variant${variants.length > 1 ? 's' : ''} ${variants.join(', ')}): ${entries.length} image(s)\n`)
    for (const e of entries) {
      const m = e.meta
      const digests = [m?.sha256 && `sha256:${m.sha256}`, m?.sha512 && `sha512:${m.sha512}`].filter(Boolean).join(' ') || 'digest unknown'
      const checked = m && m.checkedAt > m.storedAt ? `, confirmed by the server ${ago(Date.now() - m.checkedAt)} ago` : ''
      // one line per entry, so that it can be grepped and cut
      process.stdout.write(`  ${m?.url || '(URL unknown: stored by an older version)'}  ${formatBytes(e.size)}  downloaded ${ago(Date.now() - e.mtimeMs)} ago${checked}  ${digests}${e.inUse ? '  in use' : ''}  ${e.path}\n`)
      count++
    }
  }
  info(`${count} cached image(s)`)
}

async function purge(cmd: Extract<CacheCommand, { command: 'purge' }>): Promise<void> {
  let removed = 0
  let bytes = 0
  const inUse: string[] = []
  for (const { dir, configs } of await storages(cmd.variant)) {
    // shared by variants of different DOWNLOAD_CACHE_MAX_DAYS: the shortest wins
    const maxDays = cmd.expired ? Math.min(...configs.map((c) => c.cacheMaxDays)) : undefined
    const done = await purgeEntries(dir, maxDays)
    removed += done.removed
    bytes += done.bytes
    inUse.push(...done.inUse)
  }
  for (const path of inUse) info(`kept ${path}: in use by a create or prefetch`)
  info(`removed ${removed} cached image(s) (${formatBytes(bytes)})${inUse.length ? `; ${inUse.length} in use kept` : ''}`)
}

async function prefetch(cmd: Extract<CacheCommand, { command: 'prefetch' }>): Promise<void> {
  const params = await imageParams(process.env, cmd.variant, { image: cmd.image, image_checksum: cmd.checksum })
  if (params.from) info(`image ${cmd.image} from ${params.from}`)
  const image = parseImage(params.image)
  const config = await readVariantConfig(process.env, cmd.variant)
  const spec = parseChecksum(params.image_checksum)
  const file = await openImage(image, config, undefined, spec)
  try {
    if (file.streamed) throw new Error('a prefetch was written while it downloaded')
    await startFileCheck(file)?.()
    const what = image.kind === 'path' ? `${image.path} is a local file on this node: nothing to download` : `${file.label} is cached in ${file.path}`
    info(`${what} (${formatBytes(file.size)}${spec ? `, ${spec.algo} checked` : ''})`)
  } finally {
    await file.release()
  }
}

runScript({
  name: 'simpleimage-cache',
  usage: USAGE,
  argv: accepts,
  async run(argv) {
    const cmd = parseCacheArgs(argv)
    if (cmd.command === 'list') return list(cmd)
    if (cmd.command === 'purge') return purge(cmd)
    return prefetch(cmd)
  },
})
