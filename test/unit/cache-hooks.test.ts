// Cache naming and expiry arithmetic, and run-parts' choice and order of hooks.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cacheKey, classifyName, entryName, isExpired, lockName, tempName } from '../../lib/image/cache.js'
import { selectHooks } from '../../lib/ganeti/hooks.js'

test('one cache entry per URL, named by its SHA-256', () => {
  const a = cacheKey(new URL('https://example.org/a.img'))
  assert.match(a, /^[0-9a-f]{64}$/)
  assert.is.not(a, cacheKey(new URL('https://example.org/b.img')))
  assert.is(a, cacheKey(new URL('https://EXAMPLE.org/a.img'))) // URL normalisation
})

test('only our own names are taken for cache files', () => {
  const key = 'a'.repeat(64)
  assert.equal(classifyName(entryName(key)), { key, kind: 'entry' })
  assert.equal(classifyName(lockName(key)), { key, kind: 'lock' })
  assert.equal(classifyName(tempName(key, '123-abc')), { key, kind: 'temp' })
  assert.is(classifyName('debian.img'), null)
  assert.is(classifyName(`${key}.image.bak`), null)
  assert.is(classifyName(`${'A'.repeat(64)}.image`), null)
})

test('expiry by age in days; 0 days expires at once', () => {
  const day = 86400000
  assert.not.ok(isExpired(0, 6 * day, 7))
  assert.ok(isExpired(0, 7 * day, 7))
  assert.ok(isExpired(1000, 1000, 0))
})

test('hooks: run-parts names, executables only, C-locale order, skipped ones named', () => {
  const file = (name: string, executable = true, regularFile = true) => ({ name, executable, regularFile })
  const s = selectHooks([file('50-b'), file('10_a'), file('Z9'), file('20-x.sh'), file('30-noexec', false), file('40-dir', true, false), file('.hidden'), file('60-c~')])
  assert.equal(s.run, ['10_a', '50-b', 'Z9'].sort())
  assert.equal(s.run, ['10_a', '50-b', 'Z9'])
  assert.equal(s.skipped.map((x) => x.name).sort(), ['.hidden', '20-x.sh', '30-noexec', '40-dir', '60-c~'])
  assert.match(s.skipped.find((x) => x.name === '20-x.sh')!.why, /name/)
  assert.match(s.skipped.find((x) => x.name === '30-noexec')!.why, /not executable/)
})

test.run()
