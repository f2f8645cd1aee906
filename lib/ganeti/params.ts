// The OS parameters `image` and `image_type`: parsing and the policy on what a local image
// path may be. Pure: the file-system checks live in lib/image/source.ts.
import { Failure } from '../errors.js'
import { redact } from '../log.js'

export type Codec = 'raw' | 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'qcow2'

const IMAGE_TYPES: Record<string, Codec | 'auto'> = {
  raw: 'raw',
  'raw+gz': 'gzip',
  'raw+bzip2': 'bzip2',
  'raw+bz2': 'bzip2',
  'raw+xz': 'xz',
  'raw+zst': 'zstd',
  qcow2: 'qcow2',
  auto: 'auto',
}

/** The image_type name of each format, as logs and verify report it. */
export const CODEC_NAMES: Record<Codec, string> = { raw: 'raw', gzip: 'raw+gz', bzip2: 'raw+bzip2', xz: 'raw+xz', zstd: 'raw+zst', qcow2: 'qcow2' }

/** Tells the formats apart by their magic bytes; anything else is a raw disk image. */
export function detectCodec(head: Buffer): Codec {
  const starts = (...bytes: number[]) => bytes.every((b, i) => head[i] === b)
  if (starts(0x1f, 0x8b)) return 'gzip'
  if (starts(0x42, 0x5a, 0x68) && head[3] >= 0x31 && head[3] <= 0x39) return 'bzip2' // BZh1..9
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz'
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd'
  // a zstd skippable frame (magic 0x184D2A50-5F, little-endian): pzstd starts its files
  // with one, and zstd reads past it
  if (head.length >= 4 && (head[0] & 0xf0) === 0x50 && starts(head[0], 0x2a, 0x4d, 0x18)) return 'zstd'
  if (starts(0x51, 0x46, 0x49, 0xfb)) return 'qcow2' // QFI\xfb
  return 'raw'
}
export const IMAGE_TYPE_NAMES = Object.keys(IMAGE_TYPES)

export type ImageRef = { kind: 'path'; path: string } | { kind: 'url'; url: URL }

/** The image_type parameter; without one the format is detected (auto). */
export function parseImageType(value: string | undefined): Codec | 'auto' {
  if (value === undefined || value.trim() === '') return 'auto'
  const codec = IMAGE_TYPES[value.trim().toLowerCase()]
  if (!codec) throw new Failure(`unknown image_type '${value}'`, `use one of ${IMAGE_TYPE_NAMES.join(', ')}`)
  return codec
}

/** user:password of a URL, %-escapes decoded; a bad escape is the parameter's fault. */
export function credentialsOf(url: URL, what: string): string | undefined {
  if (!url.username && !url.password) return undefined
  try {
    return `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`
  } catch {
    throw new Failure(`the credentials in ${what} have a bad %-escape`, 'write special characters in them %-encoded, such as @ as %40 and % as %25')
  }
}

export function parseImage(value: string | undefined): ImageRef {
  const text = value?.trim() ?? ''
  if (text === '') {
    throw new Failure('the OS parameter image is not set', 'add -O image=PATH or -O image=https://... to the instance')
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)
  if (scheme && text.slice(scheme[0].length).startsWith('//')) {
    const name = scheme[1].toLowerCase()
    if (name !== 'http' && name !== 'https') {
      throw new Failure(`image URLs with the scheme '${name}:' are not supported`, 'use an http:// or https:// URL, or a local path')
    }
    let url: URL
    try {
      url = new URL(text)
    } catch {
      throw new Failure(`the image URL '${redact(text)}' is not a valid URL`, 'check the image parameter')
    }
    if (!url.hostname) throw new Failure(`the image URL '${redact(text)}' has no host`, 'check the image parameter')
    credentialsOf(url, `the image URL ${redact(url.href)}`)
    return { kind: 'url', url }
  }
  if (!text.startsWith('/')) {
    throw new Failure(`the image '${text}' is neither an absolute path nor an http(s) URL`, 'give a full path such as /srv/images/debian.img or an https:// URL')
  }
  return { kind: 'path', path: text }
}

/** Where an image may never come from, even through a symlink: devices, kernel files,
 *  Ganeti's own state and other instances' disks. */
export const FORBIDDEN_IMAGE_DIRS = ['/dev', '/proc', '/sys', '/run', '/var/run', '/var/lib/ganeti', '/srv/ganeti/file-storage', '/srv/ganeti/shared-file-storage']

/** Checks a resolved (realpath) image path against the forbidden directories, to which
 *  Ganeti's configured file-storage directories are added. Returns the reason or null. */
export function forbiddenImagePath(realPath: string, extraDirs: string[] = []): string | null {
  for (const dir of [...FORBIDDEN_IMAGE_DIRS, ...extraDirs]) {
    const d = dir.replace(/\/+$/, '')
    if (d && (realPath === d || realPath.startsWith(d + '/'))) return `it lies under ${d}`
  }
  return null
}
