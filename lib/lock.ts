// File locks with util-linux flock(1): Node has no flock(2). The lock is held by a small
// child process for as long as its stdin stays open, so it is released when we release
// it, when we exit, and even when we are killed with SIGKILL (the pipe closes).
import { spawn } from 'node:child_process'
import { debug } from './log.js'

export interface Lock {
  release(): Promise<void>
}

export async function acquireLock(path: string, mode: 'shared' | 'exclusive', wait: boolean): Promise<Lock | null> {
  const args = [mode === 'shared' ? '-s' : '-x', ...(wait ? [] : ['-n']), path, 'sh', '-c', 'echo locked; exec cat >/dev/null']
  const child = spawn('flock', args, { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
  const locked = await new Promise<boolean>((resolve, reject) => {
    child.once('error', reject)
    child.stdout.once('data', () => resolve(true))
    void exited.then(() => resolve(false))
  })
  if (!locked) {
    const code = await exited
    if (!wait && code === 1) return null
    throw new Error(`flock ${path} failed (exit ${code})`)
  }
  debug(`locked ${path} (${mode})`)
  return {
    release: async () => {
      child.stdin.end()
      await exited
      debug(`unlocked ${path}`)
    },
  }
}
