// CUSTOM_CURL_OPTS: the supported curl options in all the spellings curl accepts.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { parseCurlOpts, parseRate, shellWords } from '../../lib/image/curl-opts.js'

test('shellWords: quotes and backslashes as in sh, no expansion', () => {
  assert.equal(shellWords(`-H "X-A: b c" -u 'u:p w' a\\ b $HOME`), ['-H', 'X-A: b c', '-u', 'u:p w', 'a b', '$HOME'])
  assert.equal(shellWords('  '), [])
  assert.throws(() => shellWords('-H "open'), /unterminated double quote/)
})

test('every supported option, long and short, separate and attached values', () => {
  const o = parseCurlOpts(`-k --cacert /etc/ca.pem --capath /etc/ssl/certs --connect-timeout 2.5 -m 60 --retry 3 -u bob:pw -H 'X-Token: abc' --header "Accept: */*" --limit-rate 10M`)
  assert.equal(o, {
    insecure: true, cacert: '/etc/ca.pem', capath: '/etc/ssl/certs', connectTimeoutMs: 2500, maxTimeMs: 60000, retries: 3,
    user: 'bob:pw', headers: [['X-Token', 'abc'], ['Accept', '*/*']], limitRate: 10 * 1024 * 1024,
  })
  const p = parseCurlOpts('--insecure --max-time 5 --user a:b -uc:d -HX-A:1 -kL -sS')
  assert.ok(p.insecure)
  assert.is(p.maxTimeMs, 5000)
  assert.is(p.user, 'c:d')
  assert.equal(p.headers, [['X-A', '1']])
})

test('defaults: TLS verified, no retries', () => {
  assert.equal(parseCurlOpts(''), { insecure: false, retries: 0, headers: [] })
})

test('unsupported options are refused by name, never ignored', () => {
  assert.throws(() => parseCurlOpts('--retry 2 --proxy-insecure'), /--proxy-insecure/)
  assert.throws(() => parseCurlOpts('-x http://p:3128'), /the option -x/)
  assert.throws(() => parseCurlOpts('-kz'), /the option -z/)
  assert.throws(() => parseCurlOpts('stray'), /'stray', which is not an option/)
})

test('values are checked', () => {
  assert.throws(() => parseCurlOpts('--retry many'), /whole number/)
  assert.throws(() => parseCurlOpts('-m soon'), /number of seconds/)
  assert.throws(() => parseCurlOpts('-u bob'), /user:password/)
  assert.throws(() => parseCurlOpts('-H NoColon'), /Name: value/)
  assert.throws(() => parseCurlOpts('--cacert'), /needs a value/)
})

test('--limit-rate units are powers of 1024, as in curl', () => {
  assert.is(parseRate('1000'), 1000)
  assert.is(parseRate('500k'), 512000)
  assert.is(parseRate('2G'), 2 * 1024 ** 3)
  assert.throws(() => parseRate('fast'), /rate such as/)
})

test.run()
