// Everything a script must undo on every path (loop devices, temporary files, locks,
// child processes) registers here; lib/main.ts runs the list on success, on failure and
// on SIGTERM/SIGINT/SIGHUP.
import type { ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { debug, info } from './log.js'
import { errorMessage } from './errors.js'

type CleanupFn = () => Promise<void> | void
const cleanups: { label: string; fn: CleanupFn }[] = []
/** Running children, and whether each leads a process group of its own. */
const children = new Map<ChildProcess, boolean>()

export interface Deferred {
  /** Runs the undo action now and unregisters it. */
  run(): Promise<void>
  /** Unregisters it: the thing no longer needs undoing. */
  cancel(): void
}

/** Registers an undo action to run at exit, on failure and on signals alike. */
export function defer(label: string, fn: CleanupFn): Deferred {
  const entry = { label, fn }
  cleanups.push(entry)
  const cancel = () => {
    const i = cleanups.indexOf(entry)
    if (i >= 0) cleanups.splice(i, 1)
  }
  return {
    cancel,
    run: async () => {
      if (!cleanups.includes(entry)) return
      cancel()
      await fn()
    },
  }
}

/** Runs all pending undo actions, newest first; a failing one is logged, the rest still run. */
export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const { label, fn } = cleanups.pop()!
    try {
      debug(`cleanup: ${label}`)
      await fn()
    } catch (err) {
      info(`cleanup of ${label} failed: ${errorMessage(err)}`)
    }
  }
}

/** Child processes to stop if the script is interrupted; `group`: the child leads a
 *  process group of its own (lib/child.ts), which is stopped with it. */
export function track(child: ChildProcess, group = false): ChildProcess {
  children.set(child, group)
  child.once('exit', () => children.delete(child))
  return child
}

/** Sends `signal` to the child, or to its whole process group; false when none was left. */
export function signalChild(child: ChildProcess, signal: NodeJS.Signals, group = children.get(child) ?? false): boolean {
  try {
    if (group && child.pid !== undefined) process.kill(-child.pid, signal)
    else return child.kill(signal)
    return true
  } catch {
    return false // ESRCH: nothing left in it
  }
}

/** The processes of process group `pgid` that still run (zombies, which only wait for a
 *  parent to reap them, are not counted: not every init reaps them at once). */
export function groupMembers(pgid: number): number[] {
  const members: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = readProcStat(name)
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
    const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields && fields[0] !== 'Z' && Number(fields[2]) === pgid) members.push(Number(name))
  }
  return members
}

function readProcStat(pid: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined // gone meanwhile
  }
}

/** After a group's leader has exited: stops what is left of its group (SIGTERM, SIGKILL
 *  after a second). Resolves to whether anything was left. */
export async function stopGroup(child: ChildProcess): Promise<boolean> {
  const pgid = child.pid
  if (pgid === undefined || groupMembers(pgid).length === 0) return false
  signalChild(child, 'SIGTERM', true)
  for (let i = 0; i < 10 && groupMembers(pgid).length > 0; i++) await new Promise((r) => setTimeout(r, 100))
  signalChild(child, 'SIGKILL', true)
  return true
}

let stoppingNow = false

/** Whether the script is being stopped: a writer must not write disk 0 any more (the
 *  cleanups are about to release its lock). */
export function stopping(): boolean {
  return stoppingNow
}

/** Stops every child (SIGTERM, SIGKILL after 10 s), and whatever is left of their
 *  process groups once their leaders are gone. */
export function stopChildren(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  stoppingNow = true
  const waits = [...children].map(
    ([child, group]) =>
      new Promise<void>((resolve) => {
        const finish = () => {
          clearTimeout(timer)
          if (group) signalChild(child, 'SIGKILL', true)
          resolve()
        }
        const timer = setTimeout(() => signalChild(child, 'SIGKILL', group), 10_000)
        if (child.exitCode !== null || child.signalCode !== null) return finish()
        child.once('exit', finish)
        signalChild(child, signal, group)
      }),
  )
  return Promise.all(waits).then(() => undefined)
}
