// import: writes the stream of a gnt-backup export (stdin) onto IMPORT_DEVICE, which must
// exist already: it is neither created nor truncated. Synced at the end (writeback starts
// early, lib/disk/write.ts). stdin is read as a stream (event-driven reads of a pipe), not
// with fs.read, which would make a thread-pool round trip of every 64 KiB the pipe holds;
// the pipe is enlarged first.
import { requireVar } from '../lib/ganeti/ganeti-env.js'
import { inspectTarget, openForWrite, zeroCheaply } from '../lib/disk/target.js'
import { lockDisk } from '../lib/disk/disk-lock.js'
import { chunkSource, writeStream } from '../lib/disk/write.js'
import { enlargePipe } from '../lib/disk/pipe-size.js'
import { formatBytes, info } from '../lib/log.js'
import { runScript } from '../lib/main.js'

runScript({
  name: 'import',
  usage: `usage: import
Run by Ganeti (OS API 20) during gnt-backup import: writes stdin onto IMPORT_DEVICE
(a block device or an existing file, never created or truncated), then syncs it once.`,
  argv: [[]],
  async run() {
    const device = requireVar(process.env, 'IMPORT_DEVICE')
    await lockDisk(device, 'import', `disk ${process.env.IMPORT_INDEX ?? '?'}`) // never two writers on one disk (lib/disk/disk-lock.ts)
    const disk = await inspectTarget(device)
    info(`importing disk ${process.env.IMPORT_INDEX ?? '?'} onto ${device} (${disk.kind}, ${formatBytes(disk.size)})`)
    // the stream is the whole exported disk: where zeroing is cheap, its zero blocks need no writing
    await zeroCheaply(disk, disk.size)
    const fh = await openForWrite(device)
    enlargePipe(0)
    try {
      const result = await writeStream(chunkSource(process.stdin), disk, fh)
      info(`imported ${formatBytes(result.bytes)} in ${result.seconds.toFixed(1)} s (${(result.bytes / result.seconds / 1e6).toFixed(1)} MB/s), synced`)
    } finally {
      await fh.close()
    }
  },
})
