// Pure parts of issue 14: image_checksum and SUMS files, cache metadata and names, resuming,
// DOWNLOAD_CACHE_REVALIDATE, simpleimage-cache's command line.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { findInSums, imageFileName, parseChecksum, sumsLocation, checkDigest, ChecksumMismatch } from '../../lib/image/checksum.js'
import { parseMeta } from '../../lib/image/cache-meta.js'
import { classifyName } from '../../lib/image/cache-names.js'
import { conditionalHeaders, resumeFrom, validatorsOf } from '../../lib/image/resume.js'
import { parseYesNo } from '../../lib/ganeti/variant-config.js'
import { parseCacheArgs, UsageError } from '../../lib/image/cache-args.js'
import { Failure } from '../../lib/errors.js'

const H256 = 'ab'.repeat(32)
const H512 = 'cd'.repeat(64)
const url = (u: string) => ({ kind: 'url' as const, url: new URL(u) })

test('image_checksum forms', () => {
  assert.equal(parseChecksum(`sha256:${H256.toUpperCase()}`), { kind: 'digest', algo: 'sha256', hex: H256 })
  assert.equal(parseChecksum(`SHA512:${H512}`), { kind: 'digest', algo: 'sha512', hex: H512 })
  assert.equal(parseChecksum('sha512sums'), { kind: 'sums', algo: 'sha512' })
  assert.equal(parseChecksum('sha256sums:https://h/x/SHA256SUMS'), { kind: 'sums', algo: 'sha256', source: 'https://h/x/SHA256SUMS' })
  assert.equal(parseChecksum('sha256sums:/srv/SUMS'), { kind: 'sums', algo: 'sha256', source: '/srv/SUMS' })
  assert.is(parseChecksum(''), undefined)
  assert.is(parseChecksum(undefined), undefined)
  for (const bad of [`sha256:${H512}`, `sha512:${H256}`, 'sha256:xyz', 'md5:abc', 'sha256sums:', 'sha256sums:relative/SUMS', 'sha256sums:ftp://h/SUMS', 'sha1sums']) {
    assert.throws(() => parseChecksum(bad), (e: unknown) => e instanceof Failure, bad)
  }
})

test('SUMS files: coreutils text and binary mode, ./ names, wrong lengths ignored, conflicting lines refused', () => {
  const text = `${H256}  other.img\n${'11'.repeat(32)} *debian-12.qcow2\r\n${H512}  debian-12.qcow2\n`
  assert.is(findInSums(text, 'debian-12.qcow2', 'sha256'), '11'.repeat(32))
  assert.is(findInSums(text, 'debian-12.qcow2', 'sha512'), H512)
  assert.is(findInSums(`${H256}  ./a.img\n`, 'a.img', 'sha256'), H256)
  assert.is(findInSums(`${H256}  sub/a.img\n`, 'a.img', 'sha256'), undefined)
  assert.is(findInSums(text, 'missing.img', 'sha256'), undefined)
  assert.throws(() => findInSums(`${H256}  a.img\n${'00'.repeat(32)}  a.img\n`, 'a.img', 'sha256'), /2 times/)
  assert.is(findInSums(`${H256}  a.img\n${H256}  a.img\n`, 'a.img', 'sha256'), H256)
})

test('the image file name and the SUMS file beside it', () => {
  assert.is(imageFileName(url('https://h/d/latest/debian%2012.raw?x=1')), 'debian 12.raw')
  assert.is(imageFileName({ kind: 'path', path: '/srv/images/a.img' }), 'a.img')
  assert.equal(sumsLocation({ kind: 'sums', algo: 'sha512' }, url('https://h/d/latest/a.qcow2?t=1')), url('https://h/d/latest/SHA512SUMS'))
  assert.equal(sumsLocation({ kind: 'sums', algo: 'sha256' }, { kind: 'path', path: '/srv/i/a.img' }), { kind: 'path', path: '/srv/i/SHA256SUMS' })
  assert.equal(sumsLocation({ kind: 'sums', algo: 'sha256', source: '/etc/S' }, url('https://h/a')), { kind: 'path', path: '/etc/S' })
})

test('a digest check names both digests', () => {
  checkDigest({ algo: 'sha256', hex: H256, from: 'x' }, H256.toUpperCase())
  assert.throws(() => checkDigest({ algo: 'sha256', hex: H256, from: 'SUMS' }, '00'.repeat(32)), (e: unknown) => e instanceof ChecksumMismatch && e.message.includes(H256) && e.message.includes('00'.repeat(32)))
})

test('cache metadata: parsed only when whole', () => {
  const good = { url: 'http://h/a', size: 5, ino: 7, storedAt: 1, checkedAt: 2, etag: '"e"', sha256: H256, sha512: 'zz' }
  assert.equal(parseMeta(JSON.stringify(good)), { url: 'http://h/a', size: 5, ino: 7, storedAt: 1, checkedAt: 2, etag: '"e"', lastModified: undefined, sha256: H256, sha512: undefined })
  for (const bad of ['', 'null', '[]', '{"url":"x"}', JSON.stringify({ ...good, size: '5' })]) assert.is(parseMeta(bad), null, bad)
  assert.equal(classifyName(`${'a'.repeat(64)}.meta`), { key: 'a'.repeat(64), kind: 'meta' })
  assert.equal(classifyName(`${'a'.repeat(64)}.part-meta-12-x`), { key: 'a'.repeat(64), kind: 'temp' })
})

test('resuming: Range + If-Range with a strong validator only; an answer must continue the file', () => {
  assert.is(resumeFrom(0, { etag: '"e"' }), undefined)
  assert.is(resumeFrom(10, {}), undefined)
  assert.is(resumeFrom(10, undefined), undefined)
  const r = resumeFrom(10, { etag: '"e"', lastModified: 'Tue, 01 Dec 2026 00:00:00 GMT' })!
  assert.equal(r.headers, { Range: 'bytes=10-', 'If-Range': '"e"' })
  assert.ok(r.accepts(206, 'bytes 10-99/100'))
  assert.not.ok(r.accepts(206, 'bytes 0-99/100'))
  assert.not.ok(r.accepts(200, null))
  assert.not.ok(r.accepts(206, null))
  assert.equal(resumeFrom(10, { etag: 'W/"e"', lastModified: 'LM' })!.headers['If-Range'], 'LM')
  assert.is(resumeFrom(10, { etag: 'W/"e"' }), undefined)
  assert.equal(conditionalHeaders({ etag: '"e"', lastModified: 'LM' }), { 'If-None-Match': '"e"', 'If-Modified-Since': 'LM' })
  assert.equal(validatorsOf(new Map([['etag', '"x"']]) as unknown as Headers), { etag: '"x"' })
})

test('DOWNLOAD_CACHE_REVALIDATE: yes/no as shell configs write it', () => {
  assert.is(parseYesNo(undefined, true, 'x'), true)
  assert.is(parseYesNo(' NO ', true, 'x'), false)
  assert.is(parseYesNo('1', false, 'x'), true)
  assert.throws(() => parseYesNo('sometimes', true, 'X'), /X is 'sometimes', not yes or no/)
})

test('simpleimage-cache command line', () => {
  assert.equal(parseCacheArgs(['list']), { command: 'list', variant: undefined })
  assert.equal(parseCacheArgs(['prefetch', 'debian-12']), { command: 'prefetch', variant: 'default', checksum: undefined, image: 'debian-12' })
  assert.equal(parseCacheArgs(['prefetch', '--variant=v', '--checksum', 'sha256sums', 'https://h/a']), { command: 'prefetch', variant: 'v', checksum: 'sha256sums', image: 'https://h/a' })
  assert.equal(parseCacheArgs(['purge', '--expired', '--variant', 'v']), { command: 'purge', variant: 'v', expired: true })
  for (const bad of [[], ['x'], ['list', 'a'], ['prefetch'], ['prefetch', 'a', 'b'], ['purge', '--checksum', 'x'], ['list', '--expired'], ['prefetch', '--variant'], ['list', '--variant', '../x']]) {
    assert.throws(() => parseCacheArgs(bad), (e: unknown) => e instanceof UsageError, bad.join(' '))
  }
})

test.run()
