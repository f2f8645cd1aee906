// Child processes that never outlive the script that started them. Every child that can
// write disk 0 or run an operator's shell (decompressors, qemu-img, the config's bash,
// hooks, flock) is started through here:
// - setpriv(1) (util-linux, Essential) asks the kernel to SIGKILL it when we die, even by
//   SIGKILL, when no cleanup of ours can run: an orphaned xz would go on writing an old
//   image into a disk that the next create is writing. The shell between setpriv and the
//   command closes the race of our dying before setpriv set that: its parent must still
//   be us, or it runs nothing.
// - `group` starts it in a process group of its own (bash and hooks start children of
//   their own), so that stopping it stops all of them (lib/cleanup.ts).
// - `extraFds` gives it fds 3, 4, ...: descriptors of ours (a disk lock held by a
//   decompressor that writes disk 0 stays held until that process is gone too), or pipes.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { track } from './cleanup.js'
import { debug } from './log.js'

const SETPRIV = '/usr/bin/setpriv'
const GUARD = 'case $PPID in "$0") exec "$@";; esac; exit 125'

export type Stdio = 'ignore' | 'pipe' | 'inherit' | number

export interface ChildOptions {
  env?: NodeJS.ProcessEnv
  /** stdin, stdout and stderr, as for spawn() */
  stdio: [Stdio, Stdio, Stdio]
  group?: boolean
  extraFds?: ('pipe' | number)[]
}

const executable = (path: string) => {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The argv that runs `command` bound to the life of process `parentPid` (see above). */
export function boundArgv(command: string, args: string[], parentPid: number): string[] {
  return [SETPRIV, '--pdeathsig', 'KILL', '--', '/bin/sh', '-c', GUARD, String(parentPid), command, ...args]
}

/** Whether `command` would be found (a path, or a name on PATH). */
function found(command: string, env: NodeJS.ProcessEnv): boolean {
  if (command.includes('/')) return executable(command)
  return (env.PATH ?? '').split(':').some((dir) => dir !== '' && executable(`${dir}/${command}`))
}

export function spawnChild(command: string, args: string[], opts: ChildOptions): ChildProcess {
  const env = opts.env ?? process.env
  const stdio = [...opts.stdio, ...(opts.extraFds ?? [])] as StdioOptions
  // a missing command is spawned as it is, so that it fails as spawn() reports it (ENOENT)
  const bound = found(command, env) && executable(SETPRIV)
  if (!bound) debug(`${command} is started without setpriv (${executable(SETPRIV) ? `${command} not found` : `${SETPRIV} missing`}): it would outlive a SIGKILL of ours`)
  const argv = bound ? boundArgv(command, args, process.pid) : [command, ...args]
  const child = spawn(argv[0], argv.slice(1), { env, stdio, detached: opts.group === true })
  return track(child, opts.group === true)
}

export interface Finished {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs a short command bound to our life (as spawnChild), to its end; rejects only where it
 *  cannot be started. For commands that write disk 0 (zeroing it), which get its lock. */
export function runBound(command: string, args: string[], extraFds: number[] = []): Promise<Finished> {
  const child = spawnChild(command, args, { stdio: ['ignore', 'pipe', 'pipe'], extraFds })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (b: Buffer) => (stdout += b))
  child.stderr!.on('data', (b: Buffer) => (stderr += b))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}
