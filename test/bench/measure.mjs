// Running one measured command: cold page cache, wall time, peak RSS, and the targets a
// command writes to (a fresh sparse file, a loop device holding old data).
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs'
import { MiB, q, sh, trySh } from './util.mjs'

/** Children still running, killed (whole process group) when the bench is interrupted. */
export const running = new Set()

/** Every side starts with the image file out of the page cache and nothing dirty left
 *  over from the previous run. */
export function dropCaches() {
  sh('sync; echo 3 > /proc/sys/vm/drop_caches')
  settleReporting()
}

const REPORTED = '/sys/module/page_reporting/parameters/reported_kib'
const sleepMs = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/** On a virtual machine whose balloon reports freed pages to the host, the kernel hands
 *  the dropped page cache back about 2 s after the drop, in bursts that take a CPU and
 *  the host's attention from whatever runs then. Wait for the bursts to end, so that no
 *  run meets them: by hand, a raw+gz create onto a file took 1.81-1.92 s started right
 *  after the drop and 1.68-1.78 s started 3 s later. Waits at most 8 s; no-op elsewhere. */
function settleReporting() {
  if (!existsSync(REPORTED)) return
  const read = () => readFileSync(REPORTED, 'utf8').trim()
  const start = Date.now()
  let last = read()
  let changed = start
  while (Date.now() - start < 8000) {
    sleepMs(100)
    const now = read()
    if (now !== last) [last, changed] = [now, Date.now()]
    if (Date.now() - start >= 2500 && Date.now() - changed >= 700) return
  }
}

/** Runs `cmd` (bash, pipefail) under GNU time, after `prefix` (such as `ip netns exec NS`)
 *  if given. Returns wall seconds, the peak RSS of the largest process in the tree (GNU
 *  time's %M: max over the process and the children it waited for) in MiB, the CPU seconds
 *  of the whole tree (user + system), the exit code and the tail of stderr. */
export function timed(cmd, { env = process.env, cwd, timeFile, prefix = [] }) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint()
    // a process group of its own, so that an interrupt can stop a whole pipeline
    const child = spawn('/usr/bin/time', ['-f', '%M %U %S', '-o', timeFile, ...prefix, '/bin/bash', '-o', 'pipefail', '-c', cmd], { env, cwd, stdio: ['ignore', 'ignore', 'pipe'], detached: true })
    running.add(child)
    let stderr = ''
    child.stderr.on('data', (b) => {
      stderr = (stderr + b).slice(-20000)
    })
    child.once('error', reject)
    child.once('close', (code, signal) => {
      running.delete(child)
      const seconds = Number(process.hrtime.bigint() - start) / 1e9
      const [rssKiB, user, sys] = (trySh(`tail -n 1 ${q(timeFile)}`) ?? '').trim().split(' ').map((x) => Number(x))
      rmSync(timeFile, { force: true })
      resolve({ code: signal ? 128 : code, seconds, rssMiB: (rssKiB || NaN) / 1024, cpuSeconds: user + sys, stderr: stderr.replace(/^Command exited with non-zero status \d+\n?/m, '') })
    })
  })
}

export function killRunning() {
  for (const child of running) {
    try {
      process.kill(-child.pid, 'SIGTERM')
    } catch {
      // already gone
    }
  }
}

/** A disk for the `file` disk template: a sparse file created anew before every run. */
export class FileTarget {
  constructor(path, size) {
    Object.assign(this, { kind: 'file', path, size })
  }

  prepare() {
    rmSync(this.path, { force: true })
    sh(`truncate -s ${this.size} ${q(this.path)}`)
  }

  release() {
    rmSync(this.path, { force: true })
  }
}

/** A reused disk: a loop device over a file, refilled with old non-zero data (0x5a) before
 *  every run, so that a writer that skips zero blocks without zeroing shows up in the check. */
export class LoopTarget {
  constructor(backing, size) {
    Object.assign(this, { kind: 'loop', backing, size })
    sh(`truncate -s ${size} ${q(backing)}`)
    this.path = sh(`losetup --find --show ${q(backing)}`).trim()
  }

  prepare() {
    const block = Buffer.alloc(4 * MiB, 0x5a)
    const fd = openSync(this.path, 'r+')
    try {
      for (let off = 0; off < this.size; off += block.length) {
        const len = Math.min(block.length, this.size - off)
        for (let done = 0; done < len; ) done += writeSync(fd, block, done, len - done, off + done)
      }
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
  }

  release() {
    if (this.path) trySh(`losetup --detach ${q(this.path)}`)
    this.path = undefined
    rmSync(this.backing, { force: true })
  }
}

/** The written disk must equal the raw image over the image's length. The image is held in
 *  memory (up to 2 GiB) because the page cache is dropped before every run: cmp would read
 *  it from disk again every time (3-4 s per 1 GiB here). same() returns null when the disk
 *  matches, else where it first differs. */
export class ImageRef {
  constructor(raw, length) {
    Object.assign(this, { raw, length, bytes: length <= 2 ** 31 ? readFileSync(raw) : null })
  }

  same(disk) {
    if (!this.bytes) {
      const r = spawnSync('cmp', ['-n', String(this.length), this.raw, disk], { encoding: 'utf8' })
      return r.status === 0 ? null : `${r.stdout}${r.stderr}`.trim() || `cmp exited ${r.status}`
    }
    const fd = openSync(disk, 'r')
    const buf = Buffer.allocUnsafe(16 * MiB)
    try {
      for (let off = 0; off < this.length; ) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, this.length - off), off)
        if (n === 0) return `the disk ends at byte ${off}, the image at ${this.length}`
        const want = this.bytes.subarray(off, off + n)
        if (!buf.subarray(0, n).equals(want)) {
          let i = 0
          while (buf[i] === want[i]) i++
          return `first difference at byte ${off + i} (${(off + i) / MiB | 0} MiB): disk has 0x${buf[i].toString(16)}, image 0x${want[i].toString(16)}`
        }
        off += n
      }
      return null
    } finally {
      closeSync(fd)
    }
  }
}
