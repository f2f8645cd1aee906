// The pure parts of the writer: zero-run detection and the chunk-to-buffer adapter.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { chunkSource, dataRuns } from '../../lib/disk/write.js'

const K64 = 64 << 10

test('dataRuns: non-zero 64 KiB segments, merged when adjacent', () => {
  const buf = Buffer.alloc(8 * K64)
  assert.equal(dataRuns(buf, buf.length), [])
  buf[0] = 1
  buf[K64 + 5] = 1
  buf[4 * K64 + K64 - 1] = 1
  assert.equal(dataRuns(buf, buf.length), [[0, 2 * K64], [4 * K64, 5 * K64]])
  // a length that ends inside a segment
  buf[7 * K64] = 1
  assert.equal(dataRuns(buf, 7 * K64 + 100), [[0, 2 * K64], [4 * K64, 5 * K64], [7 * K64, 7 * K64 + 100]])
})

test('chunkSource: fills caller buffers from chunks of any size, then 0 at the end', async () => {
  async function* chunks() {
    yield Buffer.from('abc')
    yield Buffer.from('defghij')
    yield Buffer.from('k')
  }
  const source = chunkSource(chunks())
  const buf = Buffer.alloc(4)
  const got: string[] = []
  for (;;) {
    const n = await source.read(buf, 0, 4)
    if (n === 0) break
    got.push(buf.subarray(0, n).toString())
  }
  assert.is(got.join(''), 'abcdefghijk')
  assert.ok(got.every((s) => s.length <= 4))
})

test.run()
