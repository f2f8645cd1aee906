// import: writes the stream of a gnt-backup export (stdin) onto IMPORT_DEVICE, which must
// exist already: it is neither created nor truncated. One fdatasync at the end.
import { requireVar } from '../lib/ganeti-env.js'
import { inspectTarget } from '../lib/target.js'
import { copyToDevice } from '../lib/stream-device.js'
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
    const disk = await inspectTarget(device)
    info(`importing disk ${process.env.IMPORT_INDEX ?? '?'} onto ${device} (${disk.kind}, ${formatBytes(disk.size)})`)
    const { bytes, firstByteAt } = copyToDevice(0, device, disk.size)
    // timed from the first byte: before it, import only waits for the exporting node
    const secs = Math.max((Date.now() - firstByteAt) / 1000, 0.001)
    info(`imported ${formatBytes(bytes)} in ${secs.toFixed(1)} s (${(bytes / secs / 1e6).toFixed(1)} MB/s), synced`)
  },
})
