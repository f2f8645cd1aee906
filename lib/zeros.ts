// Telling all-zero bytes apart, for the two places that leave them unwritten: disk 0 known
// to read as zero (disk/write.ts) and the download cache's holes (image/download.ts).
const ZERO = Buffer.alloc(4 << 20)

/** Whether buf[start, end) holds only zero bytes (a compare stops at the first that is not). */
export function allZero(buf: Buffer, start = 0, end = buf.length): boolean {
  for (let at = start; at < end; at += ZERO.length) {
    const len = Math.min(ZERO.length, end - at)
    if (buf.compare(ZERO, 0, len, at, at + len) !== 0) return false
  }
  return true
}
