// export: streams disk EXPORT_DEVICE to stdout for gnt-backup export, and its size in
// bytes to the descriptor EXP_SIZE_FD. stdout is the data: every message goes to stderr.
import { writeSync } from 'node:fs'
import { requireVar } from '../lib/ganeti/ganeti-env.js'
import { inspectTarget } from '../lib/disk/target.js'
import { copyDeviceTo } from '../lib/disk/stream-device.js'
import { formatBytes, info } from '../lib/log.js'
import { runScript } from '../lib/main.js'

runScript({
  name: 'export',
  usage: `usage: export
Run by Ganeti (OS API 20) during gnt-backup export: writes the whole disk EXPORT_DEVICE
(a block device or a file) to stdout and its size in bytes to the descriptor EXP_SIZE_FD.`,
  argv: [[]],
  async run() {
    const device = requireVar(process.env, 'EXPORT_DEVICE')
    const disk = await inspectTarget(device)
    const sizeFd = process.env.EXP_SIZE_FD
    if (sizeFd && /^\d+$/.test(sizeFd)) writeSync(Number(sizeFd), `${disk.size}\n`)
    info(`exporting disk ${process.env.EXPORT_INDEX ?? '?'} (${device}, ${disk.kind}, ${formatBytes(disk.size)})`)
    const start = Date.now()
    const bytes = await copyDeviceTo(device, disk.size, 1)
    const secs = Math.max((Date.now() - start) / 1000, 0.001)
    info(`exported ${formatBytes(bytes)} in ${secs.toFixed(1)} s (${(bytes / secs / 1e6).toFixed(1)} MB/s)`)
  },
})
