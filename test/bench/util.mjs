// Small helpers shared by the benchmark modules.
import { execFileSync, spawnSync } from 'node:child_process'

export const MiB = 1 << 20

/** Quote a word for bash: every command the bench runs is printed and can be re-run by hand. */
export const q = (s) => (/^[\w@%+=:,./-]+$/.test(String(s)) ? String(s) : `'${String(s).replace(/'/g, `'\\''`)}'`)

/** Run a bash command with pipefail, failing loudly with its stderr. */
export function sh(cmd, opts = {}) {
  try {
    return execFileSync('bash', ['-o', 'pipefail', '-c', cmd], { encoding: 'utf8', stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], maxBuffer: 64 * MiB, ...opts })
  } catch (err) {
    throw new Error(`command failed: ${cmd}\n${err.stderr || err.message}`)
  }
}

/** The same, returning null instead of throwing (for optional tools and probes). */
export function trySh(cmd) {
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', cmd], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout : null
}

export const have = (tool) => trySh(`command -v ${q(tool)}`) !== null

export function log(...args) {
  const t = new Date().toISOString().slice(11, 19)
  console.error(`[bench ${t}]`, ...args)
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** Median, extremes, peak RSS and count of a cell's runs (null without runs). */
export const stats = (c) => (c && c.runs.length ? { s: median(c.runs.map((r) => r.seconds)), min: Math.min(...c.runs.map((r) => r.seconds)), max: Math.max(...c.runs.map((r) => r.seconds)), rss: Math.max(...c.runs.map((r) => r.rssMiB)), n: c.runs.length } : null)

export const f2 = (x) => (x == null || Number.isNaN(x) ? '—' : x.toFixed(2))

export const mdTable = (head, lines) => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...lines.map((l) => `| ${l.join(' | ')} |`)].join('\n')
