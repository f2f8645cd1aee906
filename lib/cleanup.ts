// Everything a script must undo on every path (loop devices, temporary files, locks,
// child processes) registers here; lib/main.ts runs the list on success, on failure and
// on SIGTERM/SIGINT/SIGHUP.
import type { ChildProcess } from 'node:child_process'
import { debug, info } from './log.js'
import { errorMessage } from './errors.js'

type CleanupFn = () => Promise<void> | void
const cleanups: { label: string; fn: CleanupFn }[] = []
const children = new Set<ChildProcess>()

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

/** Child processes to stop if the script is interrupted. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export function stopChildren(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const waits = [...children].map(
    (child) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        const timer = setTimeout(() => {
          child.kill('SIGKILL')
        }, 10_000)
        child.once('exit', () => {
          clearTimeout(timer)
          resolve()
        })
        child.kill(signal)
      }),
  )
  return Promise.all(waits).then(() => undefined)
}
