// Runs the bench's cells: one measured command each (or a custom exec), repeated in
// interleaved rounds, with its runs (seconds, peak RSS) kept on the cell. Shared by the full
// bench and the cold part (cold.mjs).
import { dropCaches, timed } from './measure.mjs'
import { log, q, sh } from './util.mjs'

/** state: { cells, failures, unsupported (Set), raw (the raw image, read for `cached`),
 *  run (scratch dir, the default cwd), timeFile, env (the default environment) }.
 *  A cell: { cmd, env, cwd, prefix (argv before bash, such as ip netns exec NS), prepare(),
 *  verify() → null | difference, after(r), expect (RegExp on stderr), cached (the raw image
 *  read into the page cache after the drop), drop (false: only sync, the page cache kept),
 *  warm (a file to read into the page cache before the run), exec() (instead of cmd: returns
 *  what timed() does, plus anything to keep with the run) }. */
export function makeRunner(state) {
  const cell = (props) => {
    const c = { runs: [], env: state.env, ...props }
    state.cells.push(c)
    return c
  }

  const name = (c, rep) => `${c.link ? '[' + c.link + '] ' : ''}${c.format ?? ''} ${c.source ?? ''}${c.target ? ' → ' + c.target : ''} ${c.side}${c.label ? ' (' + c.label + ')' : ''} #${rep + 1}`.replace(/\s+/g, ' ').trim()

  async function runOnce(c, rep) {
    if (c.error || (c.side === 'ours' && state.unsupported.has(c.format))) return
    await c.prepare?.()
    if (c.drop === false) sh('sync')
    else dropCaches()
    if (c.cached) sh(`cat ${q(state.raw)} > /dev/null`)
    if (c.warm) sh(`cat ${q(c.warm)} > /dev/null`)
    const r = c.exec ? await c.exec() : await timed(c.cmd, { env: c.env, cwd: c.cwd ?? state.run, timeFile: state.timeFile, prefix: c.prefix })
    const what = name(c, rep)
    if (r.code !== 0) {
      if (c.side === 'ours' && c.format === 'raw+zst' && /zst|image_type/i.test(r.stderr)) {
        state.unsupported.add(c.format)
        log(`${what}: create refuses raw+zst: recorded as unsupported (${r.stderr.trim().split('\n').pop()})`)
        return
      }
      c.error = `exit ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`
      state.failures.push(`${what}: ${c.error}`)
      log(`FAILED ${what}: ${c.error}`)
      return c.after?.()
    }
    const diff = c.verify?.()
    const extra = await c.after?.(r)
    if (diff) {
      c.error = `written data differs from the image: ${diff}`
      state.failures.push(`${what}: ${c.error}`)
      log(`FAILED ${what}: ${c.error}`)
      return
    }
    if (c.expect && !c.expect.test(r.stderr)) c.warning = `stderr lacks ${c.expect} (${r.stderr.trim().split('\n').slice(-1)[0]})`
    const run = { seconds: +r.seconds.toFixed(3), rssMiB: +r.rssMiB.toFixed(1), ...(Number.isFinite(r.cpuSeconds) ? { cpuSeconds: +r.cpuSeconds.toFixed(2) } : {}), ...(r.extra ?? {}), ...(extra && typeof extra === 'object' ? extra : {}) }
    c.runs.push(run)
    log(`${what}: ${r.seconds.toFixed(2)} s, peak RSS ${r.rssMiB.toFixed(0)} MiB${r.note ? ', ' + r.note : ''}`)
  }

  /** Runs every cell once per round, `reps` rounds: the sides of one comparison are
   *  interleaved, so that load from elsewhere on the machine hits them alike. A pair of
   *  cells ([a, b] in the group) runs back to back, a-b in even rounds and b-a in odd ones,
   *  so that neither always follows the same other run. A cell with its own `repeat` runs
   *  in the first that many rounds only. */
  async function rounds(group, reps) {
    const inOrder = (item, rep) => (!Array.isArray(item) ? [item] : rep % 2 ? [...item].reverse() : item)
    for (let rep = 0; rep < reps; rep++) {
      for (const c of group.flatMap((item) => inOrder(item, rep))) if (c.repeat === undefined || rep < c.repeat) await runOnce(c, rep)
    }
  }

  return { cell, runOnce, rounds }
}
