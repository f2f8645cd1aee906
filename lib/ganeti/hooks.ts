// The variant's hooks, run after the image is written, the way Debian's run-parts(8) picks
// and orders them: executable regular files whose names consist of ASCII letters, digits,
// underscores and hyphens, in C-locale lexical order. Unlike the original provider, every
// file that is passed over is named in the log.
import { constants } from 'node:fs'
import { access, open, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Failure } from '../errors.js'
import { stopGroup } from '../cleanup.js'
import { spawnChild } from '../child.js'
import { requireTrusted } from './trust.js'
import { info } from '../log.js'

export const RUN_PARTS_NAME = /^[A-Za-z0-9_-]+$/

export interface HookCandidate {
  name: string
  regularFile: boolean
  executable: boolean
}

export interface HookSelection {
  run: string[]
  skipped: { name: string; why: string }[]
}

/** Which files run-parts would run, in its order, and why the others are skipped. */
export function selectHooks(candidates: HookCandidate[]): HookSelection {
  const selection: HookSelection = { run: [], skipped: [] }
  const sorted = [...candidates].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  for (const c of sorted) {
    if (!RUN_PARTS_NAME.test(c.name)) selection.skipped.push({ name: c.name, why: 'its name has characters other than letters, digits, _ and - (run-parts rules)' })
    else if (!c.regularFile) selection.skipped.push({ name: c.name, why: 'it is not a regular file' })
    else if (!c.executable) selection.skipped.push({ name: c.name, why: 'it is not executable' })
    else selection.run.push(c.name)
  }
  return selection
}

async function listHooks(dir: string): Promise<HookCandidate[] | null> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null
    throw err
  })
  if (names === null) return null
  return Promise.all(
    names.map(async (name) => {
      const path = join(dir, name)
      const st = await stat(path).catch(() => null) // follows symlinks, as run-parts does
      const executable = await access(path, constants.X_OK).then(() => true, () => false)
      return { name, regularFile: st?.isFile() ?? false, executable }
    }),
  )
}

export interface HookPlan {
  dir: string
  run: string[]
}

/** Chooses the hooks to run and checks that nobody but root could have written them (or
 *  their directory): done before disk 0 is written, so a refused hook costs no install. */
export async function planHooks(dir: string): Promise<HookPlan> {
  const candidates = await listHooks(dir)
  if (candidates === null) {
    info(`no hooks directory ${dir}: no hooks to run`)
    return { dir, run: [] }
  }
  const { run, skipped } = selectHooks(candidates)
  for (const s of skipped) info(`hook ${s.name} skipped: ${s.why}`)
  if (run.length > 0) await requireTrusted(dir, `the hooks directory ${dir}`, 'dir')
  for (const name of run) await requireTrusted(join(dir, name), `hook ${name}`, 'file')
  return { dir, run }
}

/** Whether a hook can be run as it is: a #! line or a program (dash, through which hooks
 *  start, would run anything else as a shell script; run-parts would refuse it). */
async function startable(path: string): Promise<boolean> {
  const fh = await open(path, 'r')
  try {
    const head = Buffer.alloc(4)
    const { bytesRead } = await fh.read(head, 0, 4, 0)
    return (bytesRead >= 2 && head[0] === 0x23 && head[1] === 0x21) || (bytesRead === 4 && head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])))
  } finally {
    await fh.close()
  }
}

/** Runs the planned hooks; `device` gives TARGET_DISK_DEVICE, asked only if a hook will run.
 *  Each runs in a process group of its own, and what it leaves running is stopped. They
 *  get disk 0's lock as fd 3 (`lockFd`): should create be killed, whatever a hook started
 *  keeps the disk locked until it is gone. */
export async function runHooks(plan: HookPlan, env: NodeJS.ProcessEnv, device: () => Promise<string>, lockFd?: number): Promise<number> {
  const { dir, run } = plan
  if (run.length === 0) return 0
  const hookEnv = { ...env, TARGET_DISK_DEVICE: await device() }
  for (const name of run) {
    const path = join(dir, name)
    info(`running hook ${name}`)
    const start = Date.now()
    if (!(await startable(path))) throw new Failure(`hook ${name} could not be started (it has no #! line and is no program)`, `add a #! line such as #!/bin/sh to ${path}`)
    const child = spawnChild(path, [], { env: hookEnv, stdio: ['ignore', 'inherit', 'inherit'], group: true, extraFds: lockFd !== undefined ? [lockFd] : [] })
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', (err) => reject(new Failure(`hook ${name} could not be started (${err.message})`, `check its #! line and permissions in ${dir}`)))
      child.once('close', (code, signal) => resolve({ code, signal }))
    })
    if (await stopGroup(child)) info(`hook ${name} left processes running: stopped them`)
    if (code === 126 || code === 127) {
      throw new Failure(`hook ${name} could not be started (exit code ${code})`, `check its #! line and permissions in ${dir}`)
    }
    if (code !== 0) {
      throw new Failure(`hook ${name} failed (${signal ? `killed by ${signal}` : `exit code ${code}`})`, `see its output above and fix ${path}`)
    }
    info(`hook ${name} finished in ${((Date.now() - start) / 1000).toFixed(1)} s`)
  }
  return run.length
}
