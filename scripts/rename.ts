// rename: the image is opaque to this provider (it does not know the guest's OS), so there
// is nothing to change inside it. Ganeti only warns if this fails; it does not.
import { info } from '../lib/log.js'
import { runScript } from '../lib/main.js'

runScript({
  name: 'rename',
  usage: `usage: rename
Run by Ganeti (OS API 20) after gnt-instance rename (OLD_INSTANCE_NAME -> INSTANCE_NAME).
This provider does not change anything inside the image, so it only logs the rename.`,
  argv: [[]],
  async run() {
    info(`instance renamed from ${process.env.OLD_INSTANCE_NAME ?? '?'} to ${process.env.INSTANCE_NAME ?? '?'}: nothing to change on disk`)
  },
})
