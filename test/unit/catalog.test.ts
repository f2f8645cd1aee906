// The image catalog <config-dir>/<variant>/images.ini: every line checked with its number
// before `ini` reads it, names looked up without reaching Object.prototype, -O winning.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { applyEntry, findEntry, imageParams, isCatalogName, parseCatalog } from '../../lib/ganeti/catalog.js'
import { Failure } from '../../lib/errors.js'
import { failsWith } from '../support/fails.js'

const F = '/etc/ganeti/instance-simpleimage/default/images.ini'
const parse = (text: string) => parseCatalog(text, F)
/** The failure of a catalog that is wrong on `line`. */
const badAt = (text: string, line: number, pattern: RegExp) => {
  failsWith(() => parse(text), new RegExp(`^the image catalog ${F.replace(/\./g, '\\.')}:${line} `))
  failsWith(() => parse(text), pattern)
}

const DEBIAN = `; images for the default variant
# both comment characters work

[debian-12]
image = https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
image_type = qcow2
image_checksum = sha512sums
description = Debian 12 genericcloud, for KVM

[debian-12-nocloud]
image = https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-nocloud-amd64.raw
image_type = raw
`

test('sections in file order, with their keys and the line of their header', () => {
  const entries = parse(DEBIAN)
  assert.equal(entries.map((e) => [e.name, e.line]), [['debian-12', 4], ['debian-12-nocloud', 10]])
  assert.equal(entries[0], {
    name: 'debian-12',
    line: 4,
    image: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2',
    image_type: 'qcow2',
    image_checksum: 'sha512sums',
    description: 'Debian 12 genericcloud, for KVM',
  })
  assert.equal(entries[1], { name: 'debian-12-nocloud', line: 10, image: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-nocloud-amd64.raw', image_type: 'raw' })
  assert.equal(parse(''), [])
  assert.equal(parse('; nothing yet\n'), [])
})

test('layout: indentation, comments after a blank, header comments, CRLF, a BOM', () => {
  const text = '\uFEFF[a]   ; first\r\n  image = /srv/a.img ; the local copy\r\n\timage_type=raw   # type\r\n  [b] # second\n image = /srv/b.img\n'
  assert.equal(parse(text), [
    { name: 'a', line: 1, image: '/srv/a.img', image_type: 'raw' },
    { name: 'b', line: 4, image: '/srv/b.img' },
  ])
})

test('values: spaces kept inside, quotes removed, \\; and \\# kept, true/false stay text', () => {
  const [e] = parse(`[a]
image = "/srv/my images/a;b.img"
description = a \\; b \\# c
image_checksum = 'sha256sums:/srv/SHA256 SUMS'
`)
  assert.is(e.image, '/srv/my images/a;b.img')
  assert.is(e.description, 'a ; b # c')
  assert.is(e.image_checksum, 'sha256sums:/srv/SHA256 SUMS')
  assert.is(parse('[a]\nimage=/a\ndescription = true\n')[0].description, 'true')
  assert.is(parse('[a]\nimage=/a\ndescription = null\n')[0].description, 'null')
})

test('a dot in a name is part of it: [debian-12.5] does not nest inside [debian-12]', () => {
  const entries = parse('[debian-12]\nimage=/srv/12.img\n[debian-12.5]\nimage=/srv/12.5.img\n[a.b.c]\nimage=/srv/abc.img\n')
  assert.equal(entries.map((e) => [e.name, e.image]), [['debian-12', '/srv/12.img'], ['debian-12.5', '/srv/12.5.img'], ['a.b.c', '/srv/abc.img']])
})

test('names of Object.prototype: usable as sections, never found when absent; __proto__ refused', () => {
  const entries = parse('[constructor]\nimage=/srv/c.img\n[toString]\nimage=/srv/t.img\n')
  assert.is(findEntry(entries, 'constructor')?.image, '/srv/c.img')
  assert.is(findEntry(entries, 'toString')?.image, '/srv/t.img')
  const none = parse('[a]\nimage=/a\n')
  for (const name of ['constructor', 'hasOwnProperty', 'toString', '__proto__', 'prototype']) assert.is(findEntry(none, name), undefined)
  badAt('[__proto__]\nimage=/a\n', 1, /names the section \[__proto__\], which is no image name/)
  badAt('[a]\nimage=/a\n__proto__ = /b\n', 3, /unknown key '__proto__'/)
  assert.is(({} as Record<string, unknown>).image, undefined)
})

test('malformed lines: each error names the file and the line', () => {
  badAt('image = /srv/a.img\n[a]\nimage=/a\n', 1, /sets image before any \[section\]/)
  badAt('[a]\nimage=/a\nsize = 4G\n', 3, /has the unknown key 'size'; a section may hold image, image_type, image_checksum, description/)
  badAt('[a]\nimage=/a\nImage = /b\n', 3, /unknown key 'Image'.*lower case/)
  badAt('[a]\nimage=/a\n\n[b]\nimage=/b\n[a]\nimage=/c\n', 6, /repeats the section \[a\] of line 1/)
  badAt('[a]\nimage=/a\nimage_type=raw\nimage_type=qcow2\n', 4, /sets image_type of \[a\] again \(first on line 3\)/)
  badAt('[a]\nimage=/a\n[b]\ndescription = none yet\n[c]\nimage=/c\n', 3, /has no image = line in the section \[b\]/)
  badAt('[a]\nimage=/a\n[debian 12]\nimage=/b\n', 3, /names the section \[debian 12\], which is no image name; name it with letters, digits/)
  badAt('[a]\nimage=/a\n[-a]\nimage=/b\n', 3, /no image name/)
  badAt('[a]\nimage=/a\n[a/b]\nimage=/b\n', 3, /no image name/)
  badAt('[a]\nimage=/a\n[]\nimage=/b\n', 3, /no image name/)
  badAt('[a\nimage=/a\n', 1, /is not a section header/)
  badAt('[a] [b]\nimage=/a\n', 1, /is not a section header/)
  badAt('[a]\nimage=/a\njust words\n', 3, /is neither a \[section\], a key = value line, a comment nor blank/)
  badAt('[a]\nimage=/a\nimage_type\n', 3, /is neither a \[section\]/)
  badAt('[a]\nimage=/a\n= raw\n', 3, /is neither a \[section\]/)
  badAt('[a]\nimage =\n', 2, /gives image of \[a\] no value/)
  badAt('[a]\nimage = ; to do\n', 2, /gives image of \[a\] no value/)
  badAt('[a]\nimage=/a\nimage_type = ""\n', 3, /gives image_type of \[a\] no value/)
})

test('INI pitfalls are refused rather than read differently than meant', () => {
  // ini would end these values at the ; or # and install /srv/a
  badAt('[a]\nimage = /srv/a;v2.img\n', 2, /has a ';' inside the value of image, where INI ends the value.*write it as \\;/)
  badAt('[a]\nimage = https://h.example/a.img#frag\n', 2, /has a '#' inside the value of image/)
  // ini keeps the quotes of a quoted value followed by a comment
  badAt('[a]\nimage = "/srv/a.img" ; local\n', 2, /starts with a quote but does not end with it/)
  badAt("[a]\nimage = '/srv/a.img\n", 2, /starts with a quote but does not end with it/)
  badAt('[a]\nimage = "/srv/a.img\'\n', 2, /starts with a quote but does not end with it/)
  // inside double quotes ini reads JSON, and keeps the quotes of what is not
  badAt('[a]\nimage = "/srv/a\\q.img"\n', 2, /in double quotes that is no valid JSON string/)
  // inside single quotes it tries JSON too: '123' would be a number
  badAt("[a]\nimage=/a\ndescription = '[1, 2]'\n", 3, /INI reads as JSON, not as text/)
})

test('the values are checked as the OS parameters are, with their line', () => {
  badAt('[a]\nimage = debian-12\n', 2, /gives \[a\] the image 'debian-12', a catalog name: an entry must give a path or a URL, not another entry/)
  badAt('[a]\nimage = srv/a.img\n', 2, /in \[a\]: the image 'srv\/a\.img' is neither an absolute path nor an http\(s\) URL/)
  badAt('[a]\nimage = ftp://h.example/a.img\n', 2, /in \[a\]: image URLs with the scheme 'ftp:' are not supported/)
  badAt('[a]\nimage = /a\nimage_type = zip\n', 3, /in \[a\]: unknown image_type 'zip'/)
  badAt('[a]\nimage = /a\nimage_checksum = md5:00\n', 3, /in \[a\]: image_checksum 'md5:00'/)
})

test('what image= values are catalog names: never a path or a URL', () => {
  for (const v of ['debian-12', 'debian-12.5', 'Ubuntu_24.04+hwe', '9', ' debian-12 ', 'constructor']) assert.ok(isCatalogName(v), v)
  for (const v of [undefined, '', ' ', '/srv/a.img', 'https://h.example/a.img', 'ftp://h/a', 'srv/a.img', '-x', '_x', '__proto__', 'a b', 'c:x', './a']) assert.not.ok(isCatalogName(v), String(v))
})

test('-O image_type and image_checksum win over the catalog; empty ones do not', () => {
  const [e] = parse(DEBIAN)
  assert.equal(applyEntry(e, F, { image: 'debian-12' }), { image: e.image, image_type: 'qcow2', image_checksum: 'sha512sums', from: `[debian-12] of ${F}` })
  const over = applyEntry(e, F, { image: 'debian-12', image_type: 'raw', image_checksum: 'sha256:' + 'a'.repeat(64) })
  assert.is(over.image, e.image)
  assert.is(over.image_type, 'raw')
  assert.is(over.image_checksum, 'sha256:' + 'a'.repeat(64))
  assert.is(over.from, `[debian-12] of ${F} (image_type and image_checksum as given with -O)`)
  const empty = applyEntry(e, F, { image: 'debian-12', image_type: '', image_checksum: ' ' })
  assert.is(empty.image_type, 'qcow2')
  assert.is(empty.image_checksum, 'sha512sums')
  // the catalog's image is used even if the entry lacks a type: -O's or none
  const [n] = parse('[n]\nimage=/srv/n.img\n')
  assert.is(applyEntry(n, F, { image: 'n', image_type: 'raw+xz' }).image_type, 'raw+xz')
  assert.is(applyEntry(n, F, { image: 'n' }).image_type, undefined)
})

// ---- reading the file: imageParams with a config directory of its own

let dir = ''
const env = () => ({ SIMPLEIMAGE_CONFIG_DIR: dir })
async function catalog(variant: string, text: string, mode = 0o644): Promise<string> {
  await mkdir(join(dir, variant), { recursive: true, mode: 0o755 })
  const file = join(dir, variant, 'images.ini')
  await writeFile(file, text)
  await chmod(file, mode)
  return file
}
async function rejectsWith(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p
  } catch (err) {
    assert.instance(err, Failure)
    assert.match((err as Error).message, pattern)
    return
  }
  assert.unreachable(`expected a failure matching ${pattern}`)
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'simpleimage-catalog-'))
})
test.after(async () => {
  await rm(dir, { recursive: true, force: true })
})

test('imageParams: a name is looked up in the variant\'s images.ini', async () => {
  const file = await catalog('v', DEBIAN)
  const p = await imageParams(env(), 'v', { image: 'debian-12-nocloud', image_checksum: 'sha512sums' })
  assert.equal(p, { image: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-nocloud-amd64.raw', image_type: 'raw', image_checksum: 'sha512sums', from: `[debian-12-nocloud] of ${file} (image_checksum as given with -O)` })
})

test('imageParams: paths, URLs and an unset image are returned as given, the catalog unread', async () => {
  await catalog('broken', 'this is not INI\n')
  for (const image of ['/srv/a.img', 'https://h.example/a.img', 'ftp://h.example/a.img', 'srv/a.img', undefined]) {
    assert.equal(await imageParams(env(), 'broken', { image, image_type: 'raw' }), { image, image_type: 'raw', image_checksum: undefined })
  }
  await rejectsWith(imageParams(env(), 'broken', { image: 'debian-12' }), /images\.ini:1 is neither a \[section\]/)
})

test('imageParams: no catalog, an unknown name, an empty catalog', async () => {
  const missing = join(dir, 'none', 'images.ini')
  await rejectsWith(imageParams(env(), 'none', { image: 'debian-12' }), new RegExp(`the image 'debian-12' is neither an absolute path nor an http\\(s\\) URL, and variant none has no image catalog ${missing} to look it up in; .*define \\[debian-12\\] in ${missing}`))
  const file = await catalog('v2', DEBIAN)
  await rejectsWith(imageParams(env(), 'v2', { image: 'debian-13' }), new RegExp(`the image 'debian-13' is not in the image catalog ${file}, which has: debian-12, debian-12-nocloud; use one of those names`))
  await rejectsWith(imageParams(env(), 'v2', { image: 'constructor' }), /the image 'constructor' is not in the image catalog .*which has: debian-12, debian-12-nocloud/)
  await catalog('empty', '; to be filled\n')
  await rejectsWith(imageParams(env(), 'empty', { image: 'debian-12' }), /is not in the image catalog .*, which has no images/)
})

test('imageParams: a catalog others could have written is refused, as the variant config is', async () => {
  const file = await catalog('open', DEBIAN, 0o666)
  await rejectsWith(imageParams(env(), 'open', { image: 'debian-12' }), new RegExp(`the image catalog ${file} is refused: ${file} could have been written by someone else \\(it is writable by everyone\\); root runs it: chown root: ${file} && chmod go-w ${file}`))
  await chmod(file, 0o644)
  if (process.getuid?.() === 0) {
    // giving a file away needs root; the unit suite also runs without it
    await chown(file, 65534, 65534)
    await rejectsWith(imageParams(env(), 'open', { image: 'debian-12' }), /is refused: .* \(it is owned by uid 65534, not by root\)/)
    await chown(file, 0, 0)
  }
  await chmod(join(dir, 'open'), 0o777)
  await rejectsWith(imageParams(env(), 'open', { image: 'debian-12' }), /is refused: .*\/open, a directory above .*images\.ini, could have been written by someone else \(it is writable by everyone\)/)
  await chmod(join(dir, 'open'), 0o755)
  assert.is((await imageParams(env(), 'open', { image: 'debian-12' })).image_type, 'qcow2')
  await mkdir(join(dir, 'isdir', 'images.ini'), { recursive: true })
  await rejectsWith(imageParams(env(), 'isdir', { image: 'debian-12' }), /images\.ini is not a regular file/)
})

test.run()
