// Drives the installed OS scripts the way Ganeti does: an OS directory made by the
// installer, a clean environment with Ganeti's variables and PATH, cwd = the OS directory.
// Also makes the fixtures: a test image in every format, sparse file disks and loop
// devices holding old data.
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, openSync, readSync, closeSync, rmSync, writeFileSync, chmodSync, readFileSync, existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
// @ts-expect-error: a plain .mjs module without type declarations
import { installOsDir } from '../../packaging/install-os.mjs'

export const GANETI_PATH = '/sbin:/bin:/usr/sbin:/usr/bin'
export const MiB = 1 << 20

export interface Workspace {
  dir: string
  osDir: string
  configDir: string
  cleanup(): void
}

const loops: string[] = []

export async function workspace(node = process.execPath): Promise<Workspace> {
  const dir = mkdtempSync(join(tmpdir(), 'simpleimage-it-'))
  const osDir = join(dir, 'os', 'simpleimage')
  const configDir = join(dir, 'etc')
  mkdirSync(configDir, { recursive: true })
  await installOsDir(osDir, node)
  return {
    dir,
    osDir,
    configDir,
    cleanup() {
      while (loops.length) detachLoop(loops.pop()!)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A variant with its own config text, hooks and (unless the config sets one) cache dir. */
export function variant(ws: Workspace, name: string, config = '', hooks: Record<string, string> = {}): string {
  const dir = join(ws.configDir, name)
  mkdirSync(join(dir, 'hooks'), { recursive: true })
  const storage = /IMAGE_STORAGE=/.test(config) ? '' : `IMAGE_STORAGE=${join(ws.dir, 'cache-' + name)}\n`
  writeFileSync(join(dir, 'config'), storage + config, { mode: 0o644 })
  for (const [hook, text] of Object.entries(hooks)) {
    writeFileSync(join(dir, 'hooks', hook), text)
    chmodSync(join(dir, 'hooks', hook), 0o755)
  }
  return name
}

export function ganetiEnv(ws: Workspace, vars: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {
    PATH: GANETI_PATH, OS_API_VERSION: '20', OS_NAME: 'simpleimage', OS_VARIANT: 'default', INSTANCE_OS: 'simpleimage+default',
    INSTANCE_NAME: 'inst1.example.org', DEBUG_LEVEL: '0', HYPERVISOR: 'fake', DISK_COUNT: '1', NIC_COUNT: '0',
    SIMPLEIMAGE_CONFIG_DIR: ws.configDir,
  }
  for (const [k, v] of Object.entries(vars)) if (v === undefined) delete env[k]; else env[k] = v
  return env
}

export interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  output: string
  lastLine: string
  sizeFd?: string
  timedOut?: boolean
}

/** Runs an installed script as Ganeti does. `timeoutMs`: SIGKILLed after that (a hang
 *  must fail the test, not stall the suite); such a run has signal SIGKILL and timedOut. */
export function runAction(ws: Workspace, action: string, env: Record<string, string>, opts: { args?: string[]; stdin?: Buffer; sizeFd?: boolean; onStart?: (pid: number) => void; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const stdio: ('pipe' | 'ignore')[] = [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe']
    if (opts.sizeFd) stdio.push('pipe')
    const child = spawn(join(ws.osDir, action), opts.args ?? (action === 'verify' ? ['parameters'] : []), { cwd: ws.osDir, env: opts.sizeFd ? { ...env, EXP_SIZE_FD: '3' } : env, stdio })
    const out: Buffer[] = []
    let output = ''
    let sizeFd = ''
    child.stdout!.on('data', (b: Buffer) => out.push(b))
    child.stderr!.on('data', (b: Buffer) => (output += b))
    if (opts.sizeFd) (child.stdio[3] as NodeJS.ReadableStream).on('data', (b: Buffer) => (sizeFd += b))
    if (opts.stdin) child.stdin!.end(opts.stdin)
    child.once('error', reject)
    child.once('spawn', () => opts.onStart?.(child.pid!))
    let timedOut = false
    const timer = opts.timeoutMs ? setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, opts.timeoutMs) : undefined
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      const stdout = Buffer.concat(out)
      const all = action === 'export' ? output : output + stdout.toString()
      const lines = output.trimEnd().split('\n')
      resolve({ code, signal, stdout, output: all, lastLine: lines[lines.length - 1], sizeFd, timedOut })
    })
  })
}

/** verify parameters with exactly what Ganeti 3.0 gives it: OS_*, DEBUG_LEVEL, OSP_* and
 *  PATH, nothing about the instance or its disks. */
export function runVerify(ws: Workspace, osp: Record<string, string>, osVariant = 'default'): Promise<Run> {
  const env: Record<string, string> = { PATH: GANETI_PATH, OS_API_VERSION: '20', OS_NAME: 'simpleimage', OS_VARIANT: osVariant, DEBUG_LEVEL: '0', SIMPLEIMAGE_CONFIG_DIR: ws.configDir }
  for (const [k, v] of Object.entries(osp)) env[`OSP_${k.toUpperCase()}`] = v
  return runAction(ws, 'verify', env, { timeoutMs: 30_000 })
}

/** The test image: data at the places a disk image has it, zeros between, and a length
 *  that is no multiple of the 4 MiB write block. */
export function makeImage(dir: string): { raw: string; bytes: Buffer; files: Record<string, string> } {
  const bytes = Buffer.alloc(20 * MiB + 7 * 512)
  randomBytes(MiB).copy(bytes, 0)
  randomBytes(3 * MiB).copy(bytes, 6 * MiB)
  randomBytes(2 * MiB + 7 * 512).copy(bytes, 18 * MiB)
  const raw = join(dir, 'image.raw')
  writeFileSync(raw, bytes)
  const sh = (cmd: string) => execFileSync('bash', ['-c', cmd], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] })
  sh('gzip -kc image.raw > image.raw.gz && bzip2 -kc image.raw > image.raw.bz2 && xz -kc image.raw > image.raw.xz && zstd -qk image.raw')
  sh('qemu-img convert -f raw -O qcow2 image.raw image.qcow2')
  const files = { raw: 'image.raw', 'raw+gz': 'image.raw.gz', 'raw+bzip2': 'image.raw.bz2', 'raw+bz2': 'image.raw.bz2', 'raw+xz': 'image.raw.xz', 'raw+zst': 'image.raw.zst', qcow2: 'image.qcow2' }
  return { raw, bytes, files }
}

export function sparseDisk(dir: string, name: string, size = 32 * MiB): string {
  const path = join(dir, name)
  rmSync(path, { force: true })
  execFileSync('truncate', ['-s', String(size), path])
  return path
}

/** A file disk holding an old instance: every byte 0x5a, every block allocated. */
export function dirtyFile(dir: string, name: string, size = 32 * MiB): string {
  const path = join(dir, name)
  writeFileSync(path, Buffer.alloc(size, 0x5a))
  return path
}

/** A loop device over a file full of 0x5a: a reused disk holding an old instance. */
export function dirtyLoop(dir: string, name: string, size = 32 * MiB): string {
  const backing = dirtyFile(dir, name, size)
  const dev = execFileSync('losetup', ['--find', '--show', backing]).toString().trim()
  loops.push(dev)
  return dev
}

export function detachLoop(dev: string): void {
  try {
    execFileSync('losetup', ['--detach', dev], { stdio: 'ignore' })
  } catch {
    // already gone
  }
}

export function readHead(path: string, length: number, offset = 0): Buffer {
  const fd = openSync(path, 'r')
  const buf = Buffer.alloc(length)
  let got = 0
  try {
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, offset + got)
      if (n === 0) break
      got += n
    }
  } finally {
    closeSync(fd)
  }
  return buf.subarray(0, got)
}

/** Loop devices still attached to a file: none may be left behind. */
export function loopsOf(file: string): string {
  return execFileSync('losetup', ['-j', file, '-O', 'NAME', '-n']).toString().trim()
}

export function corrupt(src: string, dest: string, how: 'truncate' | 'flip'): string {
  const data = readFileSync(src)
  if (how === 'truncate') writeFileSync(dest, data.subarray(0, Math.floor(data.length / 2)))
  else {
    const copy = Buffer.from(data)
    for (let i = Math.floor(copy.length / 3); i < Math.floor(copy.length / 3) + 4096; i++) copy[i] ^= 0xff
    writeFileSync(dest, copy)
  }
  return dest
}

export const exists = existsSync

/** A port on 127.0.0.1 where nothing listens: connections to it are refused. */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  await new Promise((r) => server.close(r))
  return port
}

/** Live processes (zombies left out) whose command line contains `needle`. */
export function liveProcesses(needle: string): number[] {
  const found: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ').includes(needle)) found.push(Number(name))
    } catch {
      // gone meanwhile
    }
  }
  return found
}

/** The pids of a process's children. */
export function childrenOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number))
  } catch {
    return []
  }
}

/** A process's command name, '' once it is gone. */
export function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return ''
  }
}

/** The file a process runs, with its arguments ('' once it is gone). */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ')
  } catch {
    return ''
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z')
  } catch {
    return false
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Waits until `check` holds (polling), at most `ms`; returns whether it did. */
export async function waitFor(check: () => boolean, ms = 10_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) if (check()) return true
  return check()
}

/** The last line of a script's output: the one Ganeti's user reads on a failure. */
export const lastLine = (out: string) => out.trim().split('\n').pop() ?? ''
