// The variant's image catalog, <config-dir>/<variant>/images.ini (read with `ini`): each
// section names an image with the keys of the OS parameters, so that `-O image=debian-12`
// installs the section [debian-12]; parameters given with -O win over the catalog's.
//
// `ini` reads anything without complaint (a stray line is a key set to true, a repeated
// section is merged, a repeated key overwrites, `[a.b]` nests b inside a, an unquoted `;`
// or `#` ends a value), and its result has no line numbers. So every line is checked here
// first, with its number, and ini is handed only what it reads the way the operator meant.
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { parse as parseIni } from 'ini'
import { Failure } from '../errors.js'
import { parseImage, parseImageType } from './params.js'
import { parseChecksum } from '../image/checksum.js'
import { requireTrusted } from './trust.js'
import { variantDir } from './variant-config.js'

/** The OS parameters that say which image to install, after the catalog. */
export interface ImageParams {
  image?: string
  image_type?: string
  image_checksum?: string
  /** Where they came from, for the log: "[debian-12] of /etc/.../images.ini". */
  from?: string
}

export const CATALOG_FILE = 'images.ini'

/** The keys of a section: the OS parameters, and `description` for the humans reading it. */
export const CATALOG_KEYS = ['image', 'image_type', 'image_checksum', 'description'] as const
type CatalogKey = (typeof CATALOG_KEYS)[number]

export interface CatalogEntry {
  name: string
  /** The line of its [name]. */
  line: number
  image: string
  image_type?: string
  image_checksum?: string
  description?: string
}

/** A catalog name: what `-O image=` may give instead of a path or URL. It cannot start
 *  with `_` (so no `__proto__`) and holds neither `/` nor `:`, so no path or URL is one. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/
const NAME_RULE = "letters, digits, '.', '_', '-' and '+', starting with a letter or digit"

/** image= values that are looked up in the catalog; paths and URLs never are. */
export function isCatalogName(value: string | undefined): value is string {
  const text = value?.trim() ?? ''
  return !text.startsWith('/') && !text.includes('://') && NAME_PATTERN.test(text)
}

export function catalogFile(env: NodeJS.ProcessEnv, variant: string): string {
  return join(variantDir(env, variant), CATALOG_FILE)
}

const malformed = (file: string, line: number, what: string, hint = `fix line ${line} of ${file}`) => new Failure(`the image catalog ${file}:${line} ${what}`, hint)

const isQuoted = (v: string) => v.length > 1 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))

/** Where an unescaped `;` or `#` stands in an unquoted value (ini ends the value there), or -1. */
function commentStart(value: string): number {
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\') i++
    else if (value[i] === ';' || value[i] === '#') return i
  }
  return -1
}

/** Checks one `key = value` value as ini will read it; returns nothing, throws with the line. */
function checkValue(file: string, n: number, key: string, raw: string): void {
  if (raw.startsWith('"') || raw.startsWith("'")) {
    // ini takes a value as quoted only when the quotes end the line: a comment after one
    // would leave the quotes in the value
    if (!isQuoted(raw) || raw[0] !== raw[raw.length - 1]) throw malformed(file, n, `has a value for ${key} that starts with a quote but does not end with it`, 'end the value with the same quote, and put a comment on a line of its own')
    if (raw[0] === '"') {
      try {
        JSON.parse(raw)
      } catch {
        throw malformed(file, n, `has a value for ${key} in double quotes that is no valid JSON string`, 'write \\ as \\\\ and " as \\" inside double quotes, or leave the quotes out')
      }
    }
    return
  }
  const at = commentStart(raw)
  // `value ; comment` is a comment; `a;b` would silently become `a`
  if (at > 0 && !/\s/.test(raw[at - 1])) {
    throw malformed(file, n, `has a '${raw[at]}' inside the value of ${key}, where INI ends the value (';' and '#' start a comment)`, `write it as \\${raw[at]} or put the value in double quotes; a comment needs a blank before it`)
  }
}

/** Parses and checks a catalog's text: the sections in file order, with their keys.
 *  Pure; `file` only names the file in messages. */
export function parseCatalog(text: string, file: string): CatalogEntry[] {
  const lines = text.replace(/^\uFEFF/, '').split('\n').map((l) => l.replace(/\r$/, ''))
  const sections: { name: string; line: number; keys: Map<string, number> }[] = []
  const forIni: string[] = []
  lines.forEach((line, i) => {
    const n = i + 1
    if (/^\s*$/.test(line) || /^\s*[;#]/.test(line)) return
    if (/^\s*\[/.test(line)) {
      const m = /^\s*\[([^\]]*)\]\s*(?:[;#].*)?$/.exec(line)
      if (!m) throw malformed(file, n, `is not a section header: write it as [name] alone on its line (a comment may follow after ';' or '#')`)
      const name = m[1].trim()
      if (!NAME_PATTERN.test(name)) throw malformed(file, n, `names the section [${name}], which is no image name`, `name it with ${NAME_RULE}`)
      const first = sections.find((s) => s.name === name)
      if (first) throw malformed(file, n, `repeats the section [${name}] of line ${first.line}`, 'give each image one section, with a name of its own')
      sections.push({ name, line: n, keys: new Map() })
      // ini would nest [debian-12.5] as "5" inside [debian-12]: an escaped dot stays a dot
      forIni.push(`[${name.replace(/\./g, '\\.')}]`)
      return
    }
    const m = /^\s*([^=]*?)\s*=\s*(.*?)\s*$/.exec(line)
    if (!m || m[1] === '') throw malformed(file, n, 'is neither a [section], a key = value line, a comment nor blank')
    const [, key, raw] = m
    if (!(CATALOG_KEYS as readonly string[]).includes(key)) throw malformed(file, n, `has the unknown key '${key}'`, `a section may hold ${CATALOG_KEYS.join(', ')} (lower case)`)
    const section = sections[sections.length - 1]
    if (!section) throw malformed(file, n, `sets ${key} before any [section]`, 'put it under the [name] of the image it belongs to')
    const seen = section.keys.get(key)
    if (seen !== undefined) throw malformed(file, n, `sets ${key} of [${section.name}] again (first on line ${seen})`, 'keep one of the two lines')
    checkValue(file, n, key, raw)
    section.keys.set(key, n)
    forIni.push(`${key} = ${raw}`)
  })

  const read = parseIni(forIni.join('\n')) as Record<string, Record<string, unknown>>
  return sections.map((s) => {
    const values = read[s.name]
    if (!values || typeof values !== 'object') throw new Error(`ini did not read the section [${s.name}] of ${file}`)
    const entry: Partial<Record<CatalogKey, string>> = {}
    for (const [key, n] of s.keys) {
      let value = values[key]
      // unquoted true/false/null come back as JSON values, '...' holding JSON too
      if (typeof value === 'boolean' || value === null) value = String(value)
      if (typeof value !== 'string') throw malformed(file, n, `has a value for ${key} that INI reads as JSON, not as text`, 'leave the quotes out')
      if (value.trim() === '') throw malformed(file, n, `gives ${key} of [${s.name}] no value`, `give one, or remove the line`)
      entry[key as CatalogKey] = value.trim()
    }
    return checkEntry(file, s.name, s.line, s.keys, entry)
  })
}

/** The values of a section, checked as the OS parameters are, with the line to blame. */
function checkEntry(file: string, name: string, line: number, lineOf: Map<string, number>, e: Partial<Record<CatalogKey, string>>): CatalogEntry {
  if (e.image === undefined) throw malformed(file, line, `has no image = line in the section [${name}]`, `add image = /path/to/image or image = https://... under [${name}]`)
  const at = (key: string) => lineOf.get(key)!
  if (isCatalogName(e.image)) throw malformed(file, at('image'), `gives [${name}] the image '${e.image}', a catalog name: an entry must give a path or a URL, not another entry`, `write the absolute path or the http(s) URL of the image there`)
  const again = (key: string, err: unknown): never => {
    if (err instanceof Failure) throw malformed(file, at(key), `in [${name}]: ${err.what}`, err.hint)
    throw err
  }
  try {
    parseImage(e.image)
  } catch (err) {
    again('image', err)
  }
  try {
    parseImageType(e.image_type)
  } catch (err) {
    again('image_type', err)
  }
  try {
    parseChecksum(e.image_checksum)
  } catch (err) {
    again('image_checksum', err)
  }
  return { name, line, ...e } as CatalogEntry
}

/** The entry named `name`; lookups never reach Object.prototype (`constructor`, ...). */
export function findEntry(entries: CatalogEntry[], name: string): CatalogEntry | undefined {
  return entries.find((e) => e.name === name)
}

/** The parameters to install with: the catalog's entry, with what -O gave winning.
 *  An empty -O value counts as not given (Ganeti passes `-O image_type=` as ''). Pure. */
export function applyEntry(entry: CatalogEntry, file: string, params: Record<string, string | undefined>): ImageParams {
  const given = (key: 'image_type' | 'image_checksum') => (params[key]?.trim() ? params[key] : undefined)
  const overridden = (['image_type', 'image_checksum'] as const).filter((k) => given(k) !== undefined)
  return {
    image: entry.image,
    image_type: given('image_type') ?? entry.image_type,
    image_checksum: given('image_checksum') ?? entry.image_checksum,
    from: `[${entry.name}] of ${file}${overridden.length ? ` (${overridden.join(' and ')} as given with -O)` : ''}`,
  }
}

/** The catalog's text, or null when there is none; refused unless only root could have written it. */
export async function readCatalogText(file: string): Promise<string | null> {
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null
    throw err
  })
  if (!st) return null
  if (!st.isFile()) throw new Failure(`the image catalog ${file} is not a regular file`, 'make it a file, or remove it')
  // create runs as root and installs what the catalog names: refused as the variant config is
  await requireTrusted(file, `the image catalog ${file}`, 'file')
  return readFile(file, 'utf8')
}

/** The variant's catalog, read and checked; null when the variant has none. */
export async function readCatalog(env: NodeJS.ProcessEnv, variant: string): Promise<{ file: string; entries: CatalogEntry[] } | null> {
  const file = catalogFile(env, variant)
  const text = await readCatalogText(file)
  return text === null ? null : { file, entries: parseCatalog(text, file) }
}

/** Resolves a catalog name given as image= into the catalog's parameters; any other value
 *  (a path, a URL, unset) is returned as it is, and the catalog is not read. */
export async function imageParams(env: NodeJS.ProcessEnv, variant: string, params: Record<string, string | undefined>): Promise<ImageParams> {
  const asGiven = { image: params.image, image_type: params.image_type, image_checksum: params.image_checksum }
  if (!isCatalogName(params.image)) return asGiven
  const name = params.image.trim()
  const catalog = await readCatalog(env, variant)
  if (!catalog) {
    const file = catalogFile(env, variant)
    throw new Failure(`the image '${name}' is neither an absolute path nor an http(s) URL, and variant ${variant} has no image catalog ${file} to look it up in`, `give a full path such as /srv/images/debian.img, an https:// URL, or define [${name}] in ${file}`)
  }
  const entry = findEntry(catalog.entries, name)
  if (!entry) {
    const known = catalog.entries.map((e) => e.name)
    throw new Failure(`the image '${name}' is not in the image catalog ${catalog.file}, ${known.length ? `which has: ${known.join(', ')}` : 'which has no images'}`, `use one of those names, add a [${name}] section to ${catalog.file}, or give a full path or an http(s) URL`)
  }
  return applyEntry(entry, catalog.file, params)
}
