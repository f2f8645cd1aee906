// Puts an image file onto disk 0 in one streaming pass, after checking that it fits.
import { Failure, ImageError } from '../errors.js'
import { decode, decodedSize, decodeStream, detectBodyCodec, type Decoded, type ImageBody } from './decode.js'
import { canDecompressOnto, canStreamOnto, decompressOntoFile, decompressStreamOntoFile } from './direct.js'
import { convertQcow2, inspectQcow2 } from './qcow2.js'
import { openForWrite, zeroCheaply, type TargetDisk } from './target.js'
import { Progress, syncDisk, tooLarge, writeStream, type WriteResult } from './write.js'
import { formatBytes, info } from '../log.js'
import type { Codec } from '../ganeti/params.js'

const EMPTY_HINT = 'an empty image would leave disk 0 as it was: check the image file or URL'

export async function writeImage(path: string, fileSize: number, codec: Codec, target: TargetDisk): Promise<WriteResult> {
  if (fileSize === 0) throw new ImageError('the image is empty (0 bytes)', EMPTY_HINT)
  if (codec === 'qcow2') {
    const size = await inspectQcow2(path)
    if (size === 0) throw new ImageError('the qcow2 image has a virtual size of 0 bytes', EMPTY_HINT)
    if (size > target.size) throw tooLarge(target, size, true)
    info(`qcow2 image: ${formatBytes(size)} virtual size`)
    await zeroCheaply(target, size)
    const progress = new Progress(size)
    await convertQcow2(path, target, progress, size)
    const fh = await openForWrite(target.path)
    await syncDisk(fh, target).finally(() => fh.close())
    return progress.done(size)
  }
  const size = await decodedSize(path, codec, fileSize)
  if (size === 0) throw new ImageError('the image decompresses to 0 bytes', EMPTY_HINT)
  if (size !== undefined) checkFits(size, target)
  if (size !== undefined && canDecompressOnto(codec, target)) return decompressOntoFile(path, codec, size, target)
  return writeDecoded(() => decode(path, codec), size, target)
}

/** Writes an image that is still being downloaded: the size is known only for raw. */
export async function writeImageStream(body: ImageBody, length: number | undefined, codec: Exclude<Codec, 'qcow2'>, target: TargetDisk): Promise<WriteResult> {
  const size = codec === 'raw' ? length : undefined
  if (size !== undefined) checkFits(size, target)
  // the tool reads formats besides its own (zstd: gzip and xz too): an image that is not of
  // its type is left to our own decoder, which says so
  if (canStreamOnto(codec, target) && (await detectBodyCodec(body)) === codec) return decompressStreamOntoFile(body.stream(), codec, target)
  return writeDecoded(async () => decodeStream(body, codec), size, target)
}

/** An image of known size is refused before the first write when it does not fit. */
function checkFits(size: number, target: TargetDisk): void {
  if (size > target.size) throw tooLarge(target, size, true)
  info(`image: ${formatBytes(size)} uncompressed`)
}

async function writeDecoded(open: () => Promise<Decoded>, size: number | undefined, target: TargetDisk): Promise<WriteResult> {
  // without a known size the whole disk is zeroed: the image may fill it
  await zeroCheaply(target, size ?? target.size)
  const decoded = await open()
  const fh = await openForWrite(target.path)
  try {
    const result = await writeStream(decoded.source, target, fh, size)
    await decoded.finished
    if (result.bytes === 0) throw new ImageError('the image holds no data (0 bytes after decoding)', EMPTY_HINT)
    if (size !== undefined && result.bytes !== size) {
      throw new ImageError(`the image gave ${result.bytes} bytes where ${size} were expected`, 'the image file is corrupt or truncated: download or copy it again')
    }
    return result
  } catch (err) {
    // a writer failure is already a Failure; a decoder failure says more than the broken stream
    decoded.stop()
    const decodeError = await decoded.finished.then(() => undefined, (e: unknown) => e)
    throw err instanceof Failure || decodeError === undefined ? err : decodeError
  } finally {
    await fh.close()
  }
}
