// Pure parsing: Ganeti's environment, the OS parameters and the image path policy.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readDisk, readGanetiEnv } from '../../lib/ganeti/ganeti-env.js'
import { detectCodec, forbiddenImagePath, parseImage, parseImageType } from '../../lib/ganeti/params.js'
import { Failure } from '../../lib/errors.js'
import { redact } from '../../lib/log.js'
import { deviceNumbers } from '../../lib/disk/target.js'
import { parseQcow2Header } from '../../lib/disk/qcow2.js'
import { failsWith } from '../support/fails.js'


test('Ganeti environment: OSP_* become lower-case parameters, variant defaults to "default"', () => {
  const g = readGanetiEnv({ OSP_IMAGE: '/x.img', OSP_IMAGE_TYPE: 'raw', OS_VARIANT: '', DEBUG_LEVEL: '1', INSTANCE_REINSTALL: '1', INSTANCE_NAME: 'a.b' })
  assert.equal(g.params, { image: '/x.img', image_type: 'raw' })
  assert.is(g.variant, 'default')
  assert.ok(g.debug)
  assert.ok(g.reinstall)
  assert.not.ok(readGanetiEnv({ DEBUG_LEVEL: '0' }).debug)
})

test('disk 0: path and size in bytes; a URI-only disk is a clear failure', () => {
  assert.equal(readDisk({ DISK_COUNT: '1', DISK_0_PATH: '/dev/loop1', DISK_0_SIZE: '64' }, 0), { path: '/dev/loop1', size: 64 << 20 })
  failsWith(() => readDisk({ DISK_COUNT: '1', DISK_0_URI: 'rbd:x' }, 0), /DISK_0_PATH is not set/)
  failsWith(() => readDisk({ DISK_COUNT: '0' }, 0), /has 0 disk/)
})

test('image_type: every documented spelling, case-insensitive; unset means auto; unknown ones refused', () => {
  assert.is(parseImageType('raw'), 'raw')
  assert.is(parseImageType('raw+gz'), 'gzip')
  assert.is(parseImageType('raw+bzip2'), 'bzip2')
  assert.is(parseImageType('raw+bz2'), 'bzip2')
  assert.is(parseImageType('RAW+XZ'), 'xz')
  assert.is(parseImageType('qcow2'), 'qcow2')
  assert.is(parseImageType('raw+zst'), 'zstd')
  assert.is(parseImageType('auto'), 'auto')
  failsWith(() => parseImageType('zip'), /unknown image_type 'zip'.*raw\+gz/)
  assert.is(parseImageType(undefined), 'auto')
  assert.is(parseImageType(' '), 'auto')
})

test('detectCodec: magic bytes of gzip, bzip2, xz, zstd and qcow2; anything else is raw', () => {
  const b = (...x: number[]) => Buffer.from(x)
  assert.is(detectCodec(b(0x1f, 0x8b, 8, 0)), 'gzip')
  assert.is(detectCodec(Buffer.from('BZh91AY&SY')), 'bzip2')
  assert.is(detectCodec(Buffer.from('BZh0')), 'raw')
  assert.is(detectCodec(b(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0)), 'xz')
  assert.is(detectCodec(b(0x28, 0xb5, 0x2f, 0xfd, 0x24)), 'zstd')
  assert.is(detectCodec(b(0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3)), 'qcow2')
  assert.is(detectCodec(Buffer.alloc(512)), 'raw')
  assert.is(detectCodec(Buffer.alloc(0)), 'raw')
})

test('image: absolute paths and http(s) URLs; other schemes and relative paths refused', () => {
  assert.equal(parseImage('/srv/img/a.raw'), { kind: 'path', path: '/srv/img/a.raw' })
  const u = parseImage('https://user:pw@example.org/a.img')
  assert.is(u.kind, 'url')
  failsWith(() => parseImage('ftp://example.org/a.img'), /scheme 'ftp:'/)
  failsWith(() => parseImage('file:///etc/passwd'), /scheme 'file:'/)
  failsWith(() => parseImage('images/a.img'), /absolute path/)
  failsWith(() => parseImage(''), /image is not set/)
})

test('image path policy: devices, Ganeti state and instance disks are refused', () => {
  assert.match(forbiddenImagePath('/dev/sda') ?? '', /\/dev/)
  assert.match(forbiddenImagePath('/srv/ganeti/file-storage/inst1/disk0') ?? '', /file-storage/)
  assert.match(forbiddenImagePath('/data/disks/x', ['/data/disks/']) ?? '', /\/data\/disks/)
  assert.is(forbiddenImagePath('/srv/images/debian.raw'), null)
  assert.is(forbiddenImagePath('/devices/x.img'), null)
})

test('redact: URL credentials never reach the log', () => {
  assert.is(redact('GET https://bob:s3cret@example.org/x and http://p:q@proxy:3128'), 'GET https://***@example.org/x and http://***@proxy:3128')
  assert.is(redact('/plain/path'), '/plain/path')
})

test('dev_t decoding matches Linux (8:1 and a large minor)', () => {
  assert.equal(deviceNumbers(0x801), { major: 8, minor: 1 })
  assert.equal(deviceNumbers(259 * 256 + 3), { major: 259, minor: 3 })
  assert.equal(deviceNumbers(0x100107), { major: 1, minor: 0x107 })
})

test('qcow2 header: backing file and external data file are detected', () => {
  const h = Buffer.alloc(104)
  h.writeUInt32BE(0x514649fb, 0)
  h.writeUInt32BE(3, 4)
  assert.equal(parseQcow2Header(h), { version: 3, backingFile: false, externalDataFile: false })
  h.writeBigUInt64BE(0x1000n, 8)
  assert.ok(parseQcow2Header(h)!.backingFile)
  h.writeBigUInt64BE(0n, 8)
  h.writeBigUInt64BE(4n, 72)
  assert.ok(parseQcow2Header(h)!.externalDataFile)
  assert.is(parseQcow2Header(Buffer.from('not a qcow2 header at all, really not one, no no no no no no no no no')), null)
})

test.run()
