// Deterministic synthetic file contents for the benchmark image. Real cloud images hold
// executables and libraries, text (scripts, configs, package lists) and data that is already
// compressed (gzip'ed docs and man pages, the kernel, the initrd). Compression ratios drive
// every number in the benchmark, so each kind imitates the real thing's ratio (measured on
// Debian 12's /usr/bin: gzip -6 2.7x, xz -6 4.0x) rather than being random or constant.
// Everything comes from a seeded PRNG so that every machine benchmarks the same contents
// (where mke2fs places each file can still vary with the host's directory order).

/** xorshift128 seeded through splitmix32: fast, and the same sequence everywhere. */
export class Rng {
  constructor(seed) {
    let s = seed >>> 0
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.s = new Uint32Array([next(), next(), next(), next() | 1])
  }

  u32() {
    const s = this.s
    let t = s[3]
    const x = s[0]
    s[3] = s[2]
    s[2] = s[1]
    s[1] = x
    t ^= t << 11
    t ^= t >>> 8
    s[0] = t ^ x ^ (x >>> 19)
    return s[0]
  }

  int(n) {
    return this.u32() % n
  }

  chance(p) {
    return this.u32() < p * 4294967296
  }

  /** a log-normal size: most files small, a few large, as on a real root filesystem */
  logNormal(median, sigma) {
    const u = (this.u32() + 1) / 4294967297
    const v = (this.u32() + 1) / 4294967297
    return Math.round(median * Math.exp(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)))
  }

  /** incompressible bytes, standing in for data that is already compressed */
  fill(buf) {
    const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2)
    for (let i = 0; i < words.length; i++) words[i] = this.u32()
    for (let i = words.length * 4; i < buf.length; i++) buf[i] = this.u32() & 0xff
    return buf
  }
}

/** 65536 slots mapping a uniform 16-bit number to a rank with Zipf weights 1/(r+1)^s:
 *  natural text and machine code both reuse a few tokens very often and most rarely. */
function zipfTable(count, s) {
  const weights = Array.from({ length: count }, (_, r) => 1 / (r + 1) ** s)
  const total = weights.reduce((a, b) => a + b, 0)
  const table = new Uint16Array(65536)
  let rank = 0
  let cum = weights[0] / total
  for (let j = 0; j < 65536; j++) {
    while ((j + 0.5) / 65536 > cum && rank < count - 1) cum += weights[++rank] / total
    table[j] = rank
  }
  return table
}

const LETTERS = 'eeeeeeeeeeeetttttttttaaaaaaaaoooooooiiiiiiinnnnnnnsssssshhhhhhrrrrrrddddlllluuucccmmmwwffggyyppbbvkjxqz'
const SEPARATORS = [' ', ' ', ' ', ' ', ' ', ' ', ', ', '. ', '_', '=', '(', ') ', '; ', '/', ': ', ' = ', '"', '-']

/** Generators share one vocabulary and one set of "instructions", built from the seed. */
export class Content {
  constructor(seed) {
    const rng = (this.rng = new Rng(seed))
    this.words = Array.from({ length: 6000 }, () => {
      const len = 2 + Math.min(rng.int(5) + rng.int(6), 12)
      let w = ''
      for (let i = 0; i < len; i++) w += LETTERS[rng.int(LETTERS.length)]
      return Buffer.from(w, 'latin1')
    })
    this.wordRank = zipfTable(this.words.length, 1.05)
    this.separators = SEPARATORS.map((s) => Buffer.from(s, 'latin1'))
    // x86 code is made of a few hundred frequent byte patterns (prologues, mov/lea/call
    // encodings) with addresses and immediates between them
    const common = [0x48, 0x89, 0x8b, 0xe8, 0x0f, 0x85, 0x84, 0x83, 0xc7, 0x44, 0x24, 0x4c, 0x8d, 0x74, 0x75, 0xeb, 0x31, 0xc0, 0x5d, 0xc3, 0x41, 0x55, 0x54, 0x53, 0xff, 0x00, 0x01, 0x45, 0x10, 0x08, 0x18, 0x20]
    this.snippets = Array.from({ length: 3000 }, () => {
      const len = 1 + rng.int(4) + rng.int(4)
      const b = Buffer.alloc(len)
      for (let i = 0; i < len; i++) b[i] = rng.chance(0.6) ? common[rng.int(common.length)] : rng.int(256)
      return b
    })
    this.snippetRank = zipfTable(this.snippets.length, 0.9)
  }

  /** Text: lines of Zipf-distributed words, indented, with some lines repeated (configs,
   *  scripts and package lists repeat themselves). gzip -6 ~2.8x, xz ~3.9x. */
  text(size) {
    const { rng, words, wordRank, separators } = this
    const out = Buffer.alloc(size)
    const recent = []
    let pos = 0
    while (pos < size) {
      let line
      if (recent.length > 8 && rng.chance(0.12)) line = recent[rng.int(recent.length)]
      else {
        const parts = [Buffer.alloc([0, 0, 0, 2, 4, 8][rng.int(6)], 0x20)]
        const target = 20 + rng.int(70)
        let len = 0
        while (len < target) {
          const w = words[wordRank[rng.u32() & 0xffff]]
          const sep = separators[rng.int(separators.length)]
          parts.push(w, sep)
          len += w.length + sep.length
        }
        parts.push(Buffer.from('\n'))
        line = Buffer.concat(parts)
        recent.push(line)
        if (recent.length > 200) recent.splice(rng.int(200), 1)
      }
      pos += line.copy(out, pos)
    }
    return out
  }

  /** Executable code and data: frequent patterns, 32-bit displacements (mostly small),
   *  alignment padding, string tables and pointer tables, and repeats within a window. gzip -6 ~2.8x, xz ~3.7x. */
  binary(size) {
    const { rng, snippets, snippetRank } = this
    const out = Buffer.alloc(size)
    let pos = 0
    while (pos < size - 16) {
      const roll = rng.u32() / 4294967296
      if (roll < 0.004) {
        // string table: symbol names separated by NULs
        const text = this.text(64 + rng.int(400))
        for (let i = 0; i < text.length; i++) if (text[i] === 0x20 || text[i] === 0x0a) text[i] = 0
        pos += text.copy(out, pos)
      } else if (roll < 0.006) {
        // pointer table: ascending 64-bit addresses
        let addr = 0x400000 + rng.int(0x100000)
        for (let n = 32 + rng.int(200); n > 0 && pos + 8 <= size; n--, pos += 8) {
          out.writeUInt32LE((addr += 8 + 8 * rng.int(4)), pos)
        }
      } else if (roll < 0.02) {
        pos = Math.min(size, (pos + 16) & ~15) // alignment padding (zeros)
      } else if (roll < 0.14 && pos > 4096) {
        // code repeats itself (inlined helpers, PLT stubs, similar functions) within a window
        const len = 8 + rng.int(56)
        const from = pos - 64 - rng.int(Math.min(pos - 64, 32768))
        pos += out.copy(out, pos, from, Math.min(from + len, pos))
      } else {
        pos += snippets[snippetRank[rng.u32() & 0xffff]].copy(out, pos)
        if (rng.chance(0.12)) {
          const kind = rng.int(10)
          const v = kind < 5 ? rng.int(0x10000) : kind < 8 ? rng.int(0x100) : rng.u32()
          out.writeUInt32LE(rng.chance(0.3) ? ~v >>> 0 : v, pos)
          pos += 4
        }
      }
    }
    return out
  }

  /** Already compressed data: the compressors cannot shrink it (~1.0x). */
  compressed(size) {
    return this.rng.fill(Buffer.allocUnsafe(size))
  }

  make(kind, size) {
    return kind === 'text' ? this.text(size) : kind === 'binary' ? this.binary(size) : this.compressed(size)
  }
}
