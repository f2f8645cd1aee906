// The digest of a local file, for image_checksum where the bytes do not stream through us
// (a local image, a cache entry whose digest was never taken): coreutils' sha256sum or
// sha512sum reads it in a process of its own while the decoder reads it for disk 0, so the
// check costs no time of ours and mostly hits the page cache.
import { runBound } from '../child.js'
import { Failure } from '../errors.js'
import { ChecksumMismatch, checkDigest, type DigestAlgo } from './checksum.js'
import type { ImageFile } from './source.js'

export async function hashFile(path: string, algo: DigestAlgo): Promise<string> {
  const tool = `/usr/bin/${algo}sum`
  const done = await runBound(tool, ['-b', '--', path]).catch((err: Error) => {
    throw new Failure(`${tool} could not be started (${err.message})`, 'install coreutils')
  })
  const hex = /^\\?([0-9a-f]+) /.exec(done.stdout)?.[1]
  if (done.code !== 0 || !hex) throw new Failure(`${tool} could not read ${path} (${done.stderr.trim().split('\n').pop() || (done.signal ?? `exit ${done.code}`)})`, 'check the image file')
  return hex
}

/** Starts hashing an image file whose digest image_checksum still needs (`unverified`: a
 *  local file, a cache entry whose digest was never taken), to run beside the writer. The
 *  returned check waits for it, keeps the digest with the entry, and fails for a file that
 *  is not the published image (a cache entry is dropped then). Undefined: nothing to check. */
export function startFileCheck(file: ImageFile): (() => Promise<void>) | undefined {
  const expected = file.unverified
  if (!expected) return undefined
  const digest = hashFile(file.path, expected.algo)
  digest.catch(() => undefined) // awaited by the check; the writer may fail first
  return async () => {
    const hex = await digest
    await file.remember({ [expected.algo]: hex })
    try {
      checkDigest(expected, hex)
    } catch (err) {
      if (err instanceof ChecksumMismatch) await file.discard()
      throw err
    }
  }
}
