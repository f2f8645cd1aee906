// verify parameters: checks the OS parameters before Ganeti creates anything. Ganeti
// passes only OS_*, DEBUG_LEVEL, OSP_* and PATH here, and when cluster-wide defaults
// change it passes a partial set: what is present is checked, what is absent is not.
import { readGanetiEnv } from '../lib/ganeti/ganeti-env.js'
import { CODEC_NAMES, detectCodec, parseImage, parseImageType, type Codec } from '../lib/ganeti/params.js'
import { parseAuthorizedKeys, parseNameservers, parseSearchDomains, parseUserData } from '../lib/ganeti/hook-params.js'
import { readVariantConfig } from '../lib/ganeti/variant-config.js'
import { imageParams } from '../lib/ganeti/catalog.js'
import { checkLocalImage, remoteOf, resolveChecksum, type Remote } from '../lib/image/source.js'
import { imageFileName, parseChecksum } from '../lib/image/checksum.js'
import { checkQemuImg } from '../lib/disk/qcow2.js'
import { fetchHead, probeUrl } from '../lib/image/probe.js'
import { detectFileCodec } from '../lib/disk/decode.js'
import { formatBytes, info, redact } from '../lib/log.js'
import { runScript } from '../lib/main.js'

const URL_TIMEOUT_MS = 8000

async function reportDetected(codec: Codec): Promise<void> {
  info(`image_type auto: the image is ${CODEC_NAMES[codec]}`)
  if (codec === 'qcow2') await checkQemuImg()
}

/** The parameters of the example hooks (example-hooks/): values are not logged, counts are. */
async function checkHookParams(params: Record<string, string>): Promise<void> {
  if (params.ssh_authorized_keys !== undefined) info(`ssh_authorized_keys: ${parseAuthorizedKeys(params.ssh_authorized_keys).length} key(s): ok`)
  if (params.dns_nameservers !== undefined) info(`dns_nameservers: ${parseNameservers(params.dns_nameservers).join(' ') || '(none)'}: ok`)
  if (params.dns_search !== undefined) info(`dns_search: ${parseSearchDomains(params.dns_search).join(' ') || '(none)'}: ok`)
  if (params.user_data !== undefined && params.user_data.trim() !== '') {
    const ref = parseUserData(params.user_data)
    // a URL is fetched by the hook at create time, through the variant's proxy
    if (ref.kind === 'path') info(`user_data: readable file of ${formatBytes((await checkLocalImage(ref.path, 'user_data')).size)}: ok`)
    else info(`user_data: URL ${redact(ref.url.href)}: ok (fetched when the instance is created)`)
  }
}

runScript({
  name: 'verify',
  usage: `usage: verify parameters
Run by Ganeti (OS API 20) to check the OS parameters before an instance is created or
reinstalled: image= (a readable local image file, an image URL that answers within
${URL_TIMEOUT_MS / 1000} seconds, or a name in the variant's images.ini), image_type= (a known type,
qemu-img for qcow2), image_checksum= (a known form; a SUMS file that lists the image), and
the example hooks' ssh_authorized_keys=, user_data=, dns_nameservers= and dns_search=.`,
  argv: [['parameters']],
  async run() {
    const ganeti = readGanetiEnv(process.env)
    const params = await imageParams(process.env, ganeti.variant, ganeti.params)
    if (params.from) info(`image ${ganeti.params.image}: ${params.from}`)
    const { image: imageText, image_type: typeText } = params
    const imageType = parseImageType(typeText)
    const checksum = parseChecksum(params.image_checksum)
    if (checksum?.kind === 'digest') info(`image_checksum ${checksum.algo}: ok`)
    if (imageType === 'qcow2') await checkQemuImg()
    if (imageType !== 'auto') info(`image_type ${typeText}: ok`)
    await checkHookParams(ganeti.params)
    if (imageText === undefined) {
      info(`image is not set: nothing more to check (a partial parameter set, such as cluster-wide defaults; create needs image=)`)
      return
    }
    const config = await readVariantConfig(process.env, ganeti.variant)
    const image = parseImage(imageText)
    let remote: Promise<Remote> | undefined
    const remoteOnce = () => (remote ??= remoteOf(config)) // once: it reads the CA files
    if (checksum?.kind === 'sums') {
      const expected = await resolveChecksum(checksum, image, remoteOnce)
      info(`image_checksum: ${expected.from} lists ${imageFileName(image)} (${expected.algo} ${expected.hex.slice(0, 16)}...): ok`)
    }
    if (image.kind === 'path') {
      const local = await checkLocalImage(image.path)
      info(`image ${image.path}: readable file of ${formatBytes(local.size)}`)
      if (imageType === 'auto') await reportDetected(await detectFileCodec(local.path))
    } else {
      const { endpoint, agentFor } = await remoteOnce()
      const answer = await probeUrl(image.url, endpoint, agentFor, URL_TIMEOUT_MS)
      info(`image ${image.url.href}: HTTP ${answer.status}${answer.length !== undefined ? `, ${formatBytes(answer.length)}` : ''}`)
      if (imageType === 'auto') await reportDetected(detectCodec(await fetchHead(image.url, endpoint, agentFor, URL_TIMEOUT_MS)))
    }
  },
})
