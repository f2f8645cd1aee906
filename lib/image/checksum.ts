// The OS parameter image_checksum: a digest given outright (sha256:HEX, sha512:HEX), or a
// SUMS file in coreutils format (as Debian publishes SHA512SUMS beside every image) that
// must list the image's file name. Parsing is pure; fetching the SUMS file is not.
import { basename } from 'node:path'
import { Failure, ImageError } from '../errors.js'
import { parseImage, type ImageRef } from '../ganeti/params.js'
import { redact } from '../log.js'

export type DigestAlgo = 'sha256' | 'sha512'
export const DIGEST_HEX_LENGTH: Record<DigestAlgo, number> = { sha256: 64, sha512: 128 }

export type ChecksumSpec =
  | { kind: 'digest'; algo: DigestAlgo; hex: string }
  /** source undefined: SHA256SUMS / SHA512SUMS in the image's own directory */
  | { kind: 'sums'; algo: DigestAlgo; source?: string }

/** The digest an image must have, and where it was read (for the log). */
export interface ExpectedDigest {
  algo: DigestAlgo
  hex: string
  from: string
}

const FORMS = 'sha256:HEX, sha512:HEX, sha256sums, sha512sums, or sha256sums:/sha512sums: followed by the URL or path of a SUMS file'

export function parseChecksum(value: string | undefined): ChecksumSpec | undefined {
  const text = value?.trim() ?? ''
  if (text === '') return undefined
  const m = /^(sha256|sha512)(sums)?(?::(.*))?$/i.exec(text)
  if (!m) throw new Failure(`image_checksum '${redact(text)}' is not a checksum this provider knows`, `give one of ${FORMS}`)
  const algo = m[1].toLowerCase() as DigestAlgo
  const rest = m[3]?.trim()
  if (m[2]) {
    if (rest === undefined) return { kind: 'sums', algo }
    if (rest === '') throw new Failure(`image_checksum '${text}' names no SUMS file after the colon`, `give one of ${FORMS}`)
    const ref = parseImage(rest) // the same rules as an image: an absolute path or an http(s) URL
    return { kind: 'sums', algo, source: ref.kind === 'url' ? ref.url.href : ref.path }
  }
  const hex = (rest ?? '').toLowerCase()
  if (!new RegExp(`^[0-9a-f]{${DIGEST_HEX_LENGTH[algo]}}$`).test(hex)) {
    throw new Failure(`image_checksum '${text}' is not a ${algo} digest (${DIGEST_HEX_LENGTH[algo]} hex digits after '${algo}:')`, `give one of ${FORMS}`)
  }
  return { kind: 'digest', algo, hex }
}

/** The image's file name, as a SUMS file lists it: the last segment of the URL's path
 *  (%-escapes decoded) or of the local path. */
export function imageFileName(image: ImageRef): string {
  if (image.kind === 'path') return basename(image.path)
  const last = image.url.pathname.split('/').pop() ?? ''
  try {
    return decodeURIComponent(last)
  } catch {
    return last
  }
}

/** Where the SUMS file of `spec` is: the one named, or SHA256SUMS/SHA512SUMS beside the image. */
export function sumsLocation(spec: Extract<ChecksumSpec, { kind: 'sums' }>, image: ImageRef): ImageRef {
  if (spec.source !== undefined) return parseImage(spec.source)
  const name = `${spec.algo.toUpperCase()}SUMS`
  if (image.kind === 'path') return { kind: 'path', path: image.path.replace(/[^/]*$/, name) }
  const url = new URL(name, image.url)
  url.search = ''
  return { kind: 'url', url }
}

/** Finds `name` in a SUMS file (coreutils: "HEX  name", "HEX *name" for binary mode). A name
 *  listed twice with different digests is refused: which one was published is unknown. */
export function findInSums(text: string, name: string, algo: DigestAlgo): string | undefined {
  const found = new Set<string>()
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '')
    const m = /^\\?([0-9a-fA-F]+) [ *](.+)$/.exec(line)
    if (!m || m[1].length !== DIGEST_HEX_LENGTH[algo]) continue
    const listed = m[2].replace(/^\.\//, '')
    if (listed === name) found.add(m[1].toLowerCase())
  }
  if (found.size > 1) throw new Failure(`the SUMS file lists ${name} ${found.size} times with different digests`, 'fix the SUMS file: each file must be listed once')
  return [...found][0]
}

/** The SUMS file's text. Kept small: a SUMS file is a few lines per published file. */
const SUMS_MAX_BYTES = 4 << 20

export type FetchText = (url: URL, maxBytes: number) => Promise<string>

/** Resolves the checksum parameter to the digest the image must have, reading the SUMS
 *  file (a URL through fetchText, which honours the variant's proxy and curl options). */
export async function expectedDigest(spec: ChecksumSpec, image: ImageRef, fetchText: FetchText, readLocal: (path: string, maxBytes: number) => Promise<string>): Promise<ExpectedDigest> {
  if (spec.kind === 'digest') return { algo: spec.algo, hex: spec.hex, from: 'image_checksum' }
  const where = sumsLocation(spec, image)
  const label = where.kind === 'url' ? redact(where.url.href) : where.path
  const text = where.kind === 'url' ? await fetchText(where.url, SUMS_MAX_BYTES) : await readLocal(where.path, SUMS_MAX_BYTES)
  const name = imageFileName(image)
  const hex = findInSums(text, name, spec.algo)
  if (!hex) {
    throw new Failure(`the ${spec.algo} SUMS file ${label} does not list ${name}`, `check image_checksum and the image's name: the SUMS file must have a line "<${spec.algo} digest>  ${name}"`)
  }
  return { algo: spec.algo, hex, from: label }
}

/** The digest that was computed differs from the one expected: the image is not the one
 *  that was published (or the SUMS file is not the image's). */
export class ChecksumMismatch extends ImageError {
  constructor(readonly expected: ExpectedDigest, readonly actual: string) {
    super(`the image's ${expected.algo} is ${actual}, but ${expected.from} says ${expected.hex}`, 'the image is not the one published: nothing was cached; check the URL, the SUMS file and the server, then create again')
  }
}

export function checkDigest(expected: ExpectedDigest, actual: string | undefined): void {
  if (actual === undefined) throw new Error(`no ${expected.algo} digest was computed`)
  if (actual.toLowerCase() !== expected.hex) throw new ChecksumMismatch(expected, actual.toLowerCase())
}
