// create: writes the image named by the OS parameters onto disk 0, then runs the
// variant's hooks (ganeti-os-interface(7); Ganeti 3.0 behaviour in FIELD-NOTES §1).
import { readDisk, readGanetiEnv } from '../lib/ganeti/ganeti-env.js'
import { CODEC_NAMES, parseImage, parseImageType } from '../lib/ganeti/params.js'
import { readVariantConfig } from '../lib/ganeti/variant-config.js'
import { imageParams } from '../lib/ganeti/catalog.js'
import { openImage } from '../lib/image/source.js'
import { parseChecksum } from '../lib/image/checksum.js'
import { startFileCheck } from '../lib/image/hash-file.js'
import { spoilIfWrong } from '../lib/disk/verified.js'
import { lockDisk } from '../lib/disk/disk-lock.js'
import { blockDeviceFor, inspectTarget, restoreFileSize, sameFile } from '../lib/disk/target.js'
import { writeImage, writeImageStream } from '../lib/disk/deploy.js'
import type { WriteResult } from '../lib/disk/write.js'
import { detectBodyCodec, detectFileCodec, type ImageBody } from '../lib/disk/decode.js'
import { planHooks, runHooks } from '../lib/ganeti/hooks.js'
import { defer } from '../lib/cleanup.js'
import { Failure, ImageError } from '../lib/errors.js'
import { formatBytes, info } from '../lib/log.js'
import { runScript } from '../lib/main.js'

runScript({
  name: 'create',
  usage: `usage: create
Run by Ganeti (OS API 20) to install an instance: writes the image given by the OS
parameters image= and image_type= onto disk 0 (DISK_0_PATH), then runs the hooks in
/etc/ganeti/instance-simpleimage/$OS_VARIANT/hooks with TARGET_DISK_DEVICE set.
Environment: OSP_IMAGE, OSP_IMAGE_TYPE, OS_VARIANT, DISK_0_PATH, DISK_0_SIZE,
INSTANCE_NAME, INSTANCE_REINSTALL, DEBUG_LEVEL (and everything Ganeti passes).`,
  argv: [[]],
  async run() {
    const ganeti = readGanetiEnv(process.env)
    info(`${ganeti.reinstall ? 'reinstalling' : 'installing'} ${ganeti.instanceName || '(no INSTANCE_NAME)'} with variant ${ganeti.variant}${ganeti.reinstall ? ' (INSTANCE_REINSTALL=1: disk 0 is overwritten)' : ''}`)
    const params = await imageParams(process.env, ganeti.variant, ganeti.params)
    if (params.from) info(`image ${params.image} from ${params.from}`)
    const image = parseImage(params.image)
    const imageType = parseImageType(params.image_type)
    const checksum = parseChecksum(params.image_checksum)
    const config = await readVariantConfig(process.env, ganeti.variant)
    const hooks = await planHooks(config.hooksDir) // a refused hook must fail before disk 0 is touched
    const disk = readDisk(process.env, 0)
    const lock = await lockDisk(disk.path, 'create') // one writer per disk, to the end
    await restoreFileSize(disk.path, disk.size)
    const target = { ...(await inspectTarget(disk.path, disk.size)), lockFd: lock.fd }
    let label = ''
    info(`image ${image.kind === 'url' ? 'URL' : 'file'} ${image.kind === 'url' ? image.url.href : image.path}, type ${params.image_type || 'auto (not set)'}, onto ${target.path} (${target.kind}, ${formatBytes(target.size)})`)

    // a download is written while it arrives, unless the format must be seen whole first
    let result: WriteResult | undefined
    let touched = false // whether disk 0 may hold some of the image: a wrong one is spoilt
    const streamTo = imageType === 'qcow2' ? undefined : async (body: ImageBody, length?: number) => {
      const codec = imageType === 'auto' ? await detectBodyCodec(body) : imageType
      if (imageType === 'auto') info(`image_type auto: the image is ${CODEC_NAMES[codec]}${codec === 'qcow2' ? ', which is written once it is downloaded whole' : ''}`)
      if (codec === 'qcow2') return 'declined'
      touched = true
      result = await writeImageStream(body, length, codec, target)
    }
    await spoilIfWrong(target, () => touched, async () => {
      const file = await openImage(image, config, streamTo, checksum)
      defer('image source', () => file.release())
      if (!file.streamed) {
        if (await sameFile(file.path, target)) throw new Failure('the image is disk 0 itself', 'give another image path')
        const codec = imageType === 'auto' ? await detectFileCodec(file.path) : imageType
        if (imageType === 'auto') info(`image_type auto: the image is ${CODEC_NAMES[codec]}`)
        // a digest not known yet is taken by another process, reading the file beside the writer
        const checkFile = startFileCheck(file)
        touched = true
        result = await writeImage(file.path, file.size, codec, target).catch(async (err: unknown) => {
          // bytes that do not decode are not kept for the next create
          if (!(err instanceof ImageError)) throw err
          await file.discard()
          throw image.kind === 'url' ? new ImageError(err.what, 'the cached download was removed, so the next create downloads it again; if that fails the same way, the image on the server is damaged') : err
        })
        await checkFile?.()
      }
      label = file.label
      await file.release() // the entry may be replaced by a newer download now
    })
    const wrote = result as WriteResult | undefined // set inside the closures above
    if (!wrote) throw new Error('the image was not written')
    info(`wrote ${formatBytes(wrote.bytes)} to disk 0 in ${wrote.seconds.toFixed(1)} s (${(wrote.bytes / wrote.seconds / 1e6).toFixed(1)} MB/s), synced`)

    const ran = await runHooks(hooks, { ...process.env, ...config.vars }, () => blockDeviceFor(target), lock.fd)
    info(`done: ${ganeti.instanceName} installed from ${label}${ran ? `, ${ran} hook(s) run` : ''}`)
  },
})
