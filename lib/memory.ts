// Bounded memory whatever the image size. A stream of chunks (zlib's output, the socket's
// reads, a followed download) allocates a new Buffer for each one; V8 frees their memory
// only when it collects the small objects that hold them, and with 1 MiB chunks there are
// too few of those to make it collect: up to ~64 MiB of dead chunks (V8's external-memory
// allowance) stayed allocated, measured as 125 MiB peak RSS for a local raw+gz create
// against 63 MiB for raw. A minor collection (a scavenge of the young generation, well
// under a millisecond here) every few MiB of chunks frees them as they die.
import v8 from 'node:v8'
import vm from 'node:vm'

const EVERY = 4 << 20
/** Chunks still queued at a scavenge (a download's batch, a pipe's buffer) survive it and
 *  end up in the old generation, which only a full collection frees. gc({ type: 'major' })
 *  freed none of them (Node 20: a raw+gz download peaked at 105 MiB RSS, its dead chunks
 *  at 80 MiB), and gc() itself takes a few ms: done every 32 MiB of chunks it cost that
 *  create 0.3 s. So the Buffers' total is looked at every CHECK_EVERY, and gc() runs only
 *  when they hold more than FULL_ABOVE (the live ones are ~21 MiB: the writer's blocks, a
 *  batch, a chunk or two): 90 MiB, at no cost in time. */
const CHECK_EVERY = 16 << 20
const FULL_ABOVE = 32 << 20

type Gc = (options?: { type?: 'minor' }) => void

let gc: Gc | null | undefined
let since = 0
let sinceCheck = 0

function collector(): Gc | null {
  if (gc !== undefined) return gc
  try {
    v8.setFlagsFromString('--expose-gc')
    gc = vm.runInNewContext('gc') as Gc
  } catch {
    gc = null // without it memory is only higher, nothing is wrong
  }
  return gc
}

/** Counts bytes of chunks that were allocated and handed on; collects the dead ones now and then. */
export function chunksAllocated(bytes: number): void {
  since += bytes
  sinceCheck += bytes
  if (since < EVERY) return
  since = 0
  const collect = collector()
  if (!collect) return
  if (sinceCheck >= CHECK_EVERY) {
    sinceCheck = 0
    if (process.memoryUsage().arrayBuffers > FULL_ABOVE) return collect()
  }
  collect({ type: 'minor' })
}
