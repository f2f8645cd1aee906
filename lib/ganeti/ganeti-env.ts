// What Ganeti passes to an OS script (OS API 20), read from an environment object so the
// parsing is pure. See ganeti-os-interface(7) and FIELD-NOTES §1 for the variables.
import { Failure } from '../errors.js'

export interface GanetiEnv {
  variant: string
  osName: string
  instanceName: string
  debug: boolean
  reinstall: boolean
  /** OS parameters: OSP_IMAGE_TYPE becomes image_type. */
  params: Record<string, string>
}

export interface Disk {
  path: string
  /** Size in bytes from DISK_N_SIZE (MiB), if Ganeti gave it. */
  size?: number
}

export function readGanetiEnv(env: NodeJS.ProcessEnv): GanetiEnv {
  const params: Record<string, string> = {}
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith('OSP_') && value !== undefined) params[key.slice(4).toLowerCase()] = value
  }
  return {
    variant: env.OS_VARIANT || 'default',
    osName: env.OS_NAME ?? '',
    instanceName: env.INSTANCE_NAME ?? '',
    debug: env.DEBUG_LEVEL !== undefined && env.DEBUG_LEVEL !== '' && env.DEBUG_LEVEL !== '0',
    reinstall: env.INSTANCE_REINSTALL === '1',
    params,
  }
}

/** Disk N as create and the hooks see it; Ganeti omits DISK_N_PATH for URI-only disks. */
export function readDisk(env: NodeJS.ProcessEnv, index: number): Disk {
  const path = env[`DISK_${index}_PATH`]
  const count = Number(env.DISK_COUNT ?? '0')
  if (!path) {
    const why = count <= index ? `the instance has ${count} disk(s)` : `DISK_${index}_PATH is not set (a disk reachable only by URI)`
    throw new Failure(`there is no local disk ${index} to write the image to: ${why}`, 'give the instance a disk 0 on a template with a local path (plain, file, ext, drbd, ...)')
  }
  const sizeText = env[`DISK_${index}_SIZE`]
  const mib = sizeText !== undefined && /^\d+$/.test(sizeText) ? Number(sizeText) : undefined
  return { path, size: mib === undefined ? undefined : mib * 1024 * 1024 }
}

/** The variable names export and import get, with a check that Ganeti set them. */
export function requireVar(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name]
  if (!value) throw new Failure(`${name} is not set`, 'this script is meant to be run by Ganeti (see ganeti-os-interface(7))')
  return value
}
