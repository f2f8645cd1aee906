// image_checksum's last word on disk 0: an image whose digest is wrong may already be on it
// (a download written while it arrived, a local file hashed beside the writer). Then its
// first and last MiB are zeroed, and the failure says so: nothing on disk 0 passes for an
// install. Found before any write, disk 0 is left as it was, and the failure says that.
import { Failure } from '../errors.js'
import { ChecksumMismatch } from '../image/checksum.js'
import { spoilDisk, type TargetDisk } from './target.js'
import { info } from '../log.js'

export async function spoilIfWrong(target: TargetDisk, touched: () => boolean, work: () => Promise<void>): Promise<void> {
  try {
    await work()
  } catch (err) {
    if (!(err instanceof ChecksumMismatch)) throw err
    if (!touched()) throw new Failure(err.what, `disk 0 was not written. ${err.hint}`)
    await spoilDisk(target)
    info('disk 0 held the wrong image: its first and last MiB were zeroed, so that it boots and mounts nothing')
    throw new Failure(err.what, `disk 0 holds no valid install (its first and last MiB were zeroed). ${err.hint}`)
  }
}
