// Shaped links for the cold-download runs (issue 15): a network namespace of the bench's own
// whose loopback is rate-limited with tbf (this kernel has tbf and htb, not netem). The HTTP
// server (serve.mjs, with its --delay for a WAN's round trip), the provider and curl all run
// inside it (`ip netns exec`), so nothing leaves the machine and nothing outside the
// namespace is slowed. Namespaces are named simpleimage-bench-<pid>-<link>: one left by a
// bench that was killed (its pid gone) is removed when the next one starts.
import { q, sh, trySh, log } from './util.mjs'

const PREFIX = 'simpleimage-bench-'

/** A link: `800mbit:0` = 800 Mbit/s, no delay; `200mbit:20` = 200 Mbit/s, 20 ms before each answer. */
export function parseLinks(text) {
  return String(text).split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^(\d+(?:\.\d+)?)(kbit|mbit|gbit):(\d+)$/i.exec(s)
    if (!m) throw new Error(`a link is RATE:DELAY_MS such as 800mbit:0 or 200mbit:20, not ${s}`)
    const mbit = Number(m[1]) * { kbit: 1e-3, mbit: 1, gbit: 1e3 }[m[2].toLowerCase()]
    return { name: `${m[1]}${m[2].toLowerCase()}-${m[3]}ms`, rate: `${m[1]}${m[2].toLowerCase()}`, mbit, delayMs: Number(m[3]) }
  })
}

/** Removes namespaces of benches that are no longer running. */
export function removeStale() {
  for (const line of (trySh('ip netns list') ?? '').split('\n')) {
    const name = line.split(' ')[0]
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)
    if (!m) continue
    let alive = false
    try {
      alive = (process.kill(Number(m[1]), 0), true)
    } catch {
      // gone
    }
    if (!alive) {
      log(`removing the network namespace ${name} left by bench pid ${m[1]}`)
      trySh(`ip netns delete ${q(name)}`)
    }
  }
}

export class Netns {
  /** Makes the namespace, its loopback up and shaped: tbf at `rate`, a burst of 1 MB (at
   *  least 1 ms of the rate), and a queue of 50 ms. */
  constructor(link) {
    this.link = link
    this.name = `${PREFIX}${process.pid}-${link.name}`
    trySh(`ip netns delete ${q(this.name)}`)
    sh(`ip netns add ${q(this.name)}`)
    this.up = true
    sh(`ip netns exec ${q(this.name)} ip link set lo up`)
    const burst = Math.max(1e6, Math.ceil((link.mbit * 1e6) / 8 / 1000))
    sh(`ip netns exec ${q(this.name)} tc qdisc add dev lo root tbf rate ${link.rate} burst ${burst} latency 50ms`)
  }

  /** The prefix that runs a command inside. */
  get exec() {
    return ['ip', 'netns', 'exec', this.name]
  }

  qdisc() {
    return (trySh(`ip netns exec ${q(this.name)} tc qdisc show dev lo`) ?? '').trim()
  }

  delete() {
    if (!this.up) return
    this.up = false
    sh(`ip netns delete ${q(this.name)}`)
  }
}
