// Resuming a download cut off mid-body (RFC 9110 14.2, 13.1.5): ask for the rest with Range,
// under If-Range with the validator of the first answer, so that a server whose image has
// changed since sends the whole new one (200) instead of the rest of another file. Pure.
import type { Headers } from 'node-fetch'
import type { Validators } from './cache.js'

export function validatorsOf(headers: Pick<Headers, 'get'>): Validators {
  const etag = headers.get('etag')?.trim() || undefined
  const lastModified = headers.get('last-modified')?.trim() || undefined
  return { ...(etag ? { etag } : {}), ...(lastModified ? { lastModified } : {}) }
}

export interface Resume {
  headers: Record<string, string>
  /** Whether an answer continues the file where it ends: 206 starting at that byte. */
  accepts(status: number, contentRange: string | null): boolean
}

/** How to ask for the rest of a file that holds `have` bytes, or undefined when it must
 *  start over: nothing yet, or no validator that If-Range may carry (a weak ETag may not). */
export function resumeFrom(have: number, first: Validators | undefined): Resume | undefined {
  if (have === 0 || !first) return undefined
  const strongEtag = first.etag && !first.etag.startsWith('W/') ? first.etag : undefined
  const validator = strongEtag ?? first.lastModified
  if (!validator) return undefined
  return {
    headers: { Range: `bytes=${have}-`, 'If-Range': validator },
    accepts(status, contentRange) {
      if (status !== 206 || !contentRange) return false
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange.trim())
      return m !== null && Number(m[1]) === have
    },
  }
}

/** The conditional GET that revalidates a cache entry: If-None-Match with its ETag, and
 *  If-Modified-Since with its Last-Modified (a server uses the first it knows). */
export function conditionalHeaders(v: Validators): Record<string, string> {
  return { ...(v.etag ? { 'If-None-Match': v.etag } : {}), ...(v.lastModified ? { 'If-Modified-Since': v.lastModified } : {}) }
}
