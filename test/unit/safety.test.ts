// The pure rules behind the provider's safety checks: which formats are recognised,
// which redirects and credentials are taken, which headers make a body no image, which
// files and cache entries root may trust, how a disk's lock file is named, and which of a
// decompressor's lines is its message.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Headers } from 'node-fetch'
import { credentialsOf, detectCodec } from '../../lib/ganeti/params.js'
import { redirectTarget } from '../../lib/image/http.js'
import { checkImageHeaders } from '../../lib/image/http-failure.js'
import { entryDistrust } from '../../lib/image/cache.js'
import { untrustedBecause } from '../../lib/ganeti/trust.js'
import { diskLockName } from '../../lib/disk/disk-lock.js'
import { lastMessage } from '../../lib/disk/decode.js'
import { boundArgv } from '../../lib/child.js'
import { failsWith as fails } from '../support/fails.js'


test('zstd skippable frames (pzstd) are zstd; other magic stays what it was', () => {
  for (let m = 0x50; m <= 0x5f; m++) assert.is(detectCodec(Buffer.from([m, 0x2a, 0x4d, 0x18, 4, 0, 0, 0])), 'zstd')
  assert.is(detectCodec(Buffer.from([0x60, 0x2a, 0x4d, 0x18])), 'raw')
  assert.is(detectCodec(Buffer.from([0x50, 0x2a, 0x4d])), 'raw')
  assert.is(detectCodec(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd')
  assert.is(detectCodec(Buffer.alloc(0)), 'raw')
})

test('URL credentials: %-escapes decoded, a bad one is a Failure that hides them', () => {
  assert.is(credentialsOf(new URL('http://u:p%40ss@h/x'), 'x'), 'u:p@ss')
  assert.is(credentialsOf(new URL('http://h/x'), 'x'), undefined)
  fails(() => credentialsOf(new URL('http://u:p%zz@h/x'), 'the image URL'), /the credentials in the image URL have a bad %-escape/)
})

test('redirects: relative and absolute http(s) followed, anything else refused with the reason', () => {
  const from = new URL('https://a.example/dir/img.raw')
  assert.is(redirectTarget(from, '/other.raw', 0).href, 'https://a.example/other.raw')
  assert.is(redirectTarget(from, 'http://b.example/x', 0).href, 'http://b.example/x')
  fails(() => redirectTarget(from, 'file:///etc/passwd', 0), /redirected to a file: URL \(file:\/\/\/etc\/passwd\), which is refused/)
  fails(() => redirectTarget(from, 'ftp://b.example/x', 0), /ftp: URL/)
  fails(() => redirectTarget(from, null, 0), /names no Location/)
  fails(() => redirectTarget(from, '/x', 20), /redirected more than 20 times/)
  fails(() => redirectTarget(new URL('http://u:pw@a.example/'), 'gopher://u:pw@b/', 0), /http:\/\/\*\*\*@a\.example\/ redirected to a gopher: URL \(gopher:\/\/\*\*\*@b\/\)/)
})

test('headers that make a body no image: HTML, an encoding, an empty length', () => {
  const url = new URL('http://h/img.raw')
  assert.is(checkImageHeaders(url, new Headers({ 'Content-Length': '42', 'Content-Type': 'application/octet-stream' })), 42)
  assert.is(checkImageHeaders(url, new Headers({ 'Content-Encoding': 'identity' })), undefined)
  fails(() => checkImageHeaders(url, new Headers({ 'Content-Type': 'text/html; charset=utf-8' })), /answered with an HTML page \(Content-Type: text\/html\)/)
  fails(() => checkImageHeaders(url, new Headers({ 'Content-Encoding': 'gzip' })), /Content-Encoding: gzip/)
  fails(() => checkImageHeaders(url, new Headers({ 'Content-Encoding': 'br' })), /Content-Encoding: br/)
  fails(() => checkImageHeaders(url, new Headers({ 'Content-Length': '0' })), /is empty \(Content-Length: 0\)/)
})

test('cache entries: only a plain file of root\'s, with one name, writable by root alone', () => {
  const st = (over: Partial<{ uid: number; mode: number; nlink: number; file: boolean }>) => {
    const o = { uid: 0, mode: 0o100600, nlink: 1, file: true, ...over }
    return { uid: o.uid, mode: o.mode, nlink: o.nlink, isFile: () => o.file }
  }
  assert.is(entryDistrust(st({}), 0), null)
  assert.match(entryDistrust(st({ uid: 65534 }), 0)!, /owned by uid 65534/)
  assert.match(entryDistrust(st({ nlink: 2 }), 0)!, /hard links/)
  assert.match(entryDistrust(st({ mode: 0o100622 }), 0)!, /writable by others/)
  assert.match(entryDistrust(st({ file: false }), 0)!, /not a regular file/)
})

test('files root runs: owned by root and not writable by others; sticky directories above are fine', () => {
  assert.is(untrustedBecause({ uid: 0, mode: 0o100755 }, 'file'), null)
  assert.match(untrustedBecause({ uid: 0, mode: 0o100757 }, 'file')!, /writable by everyone/)
  assert.match(untrustedBecause({ uid: 0, mode: 0o40775 }, 'dir')!, /writable by its group/)
  assert.match(untrustedBecause({ uid: 1000, mode: 0o100755 }, 'file')!, /owned by uid 1000/)
  assert.is(untrustedBecause({ uid: 0, mode: 0o41777 }, 'ancestor'), null) // /tmp
  assert.match(untrustedBecause({ uid: 0, mode: 0o41777 }, 'dir')!, /writable by everyone/)
  assert.match(untrustedBecause({ uid: 0, mode: 0o40777 }, 'ancestor')!, /writable by everyone/)
})

test('a disk\'s lock is named by its identity: device number, or file system and inode', () => {
  const block = { rdev: (8 << 8) | 16, dev: 5, ino: 9, isBlockDevice: () => true }
  assert.is(diskLockName(block), 'block-8-16.lock')
  assert.is(diskLockName({ ...block, isBlockDevice: () => false }), 'file-5-9.lock')
})

test('a decompressor\'s message is its last line, never zstd\'s banner', () => {
  assert.is(lastMessage('*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***\nError while reading block header \nError while parsing "x" \n'), 'Error while parsing "x"')
  assert.is(lastMessage('*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***\n'), undefined)
  assert.is(lastMessage(''), undefined)
})

test('children are bound to our life: setpriv kills them when we die, a shell checks we are still there', () => {
  const argv = boundArgv('xz', ['-dc'], 1234)
  assert.equal(argv.slice(0, 4), ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--'])
  assert.equal(argv.slice(-3), ['1234', 'xz', '-dc'])
})

test.run()
