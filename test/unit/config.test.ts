// The variant config is shell: bash reads it exactly as the original provider's `. config`.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, mkdir, rm, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configVars, parseEnvDump, readVariantConfig, settingsFrom } from '../../lib/ganeti/variant-config.js'
import { Failure } from '../../lib/errors.js'

let dir = ''
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'simpleimage-config-'))
})
test.after(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function configWith(text: string, variant = 'v') {
  await mkdir(join(dir, variant), { recursive: true })
  const file = join(dir, variant, 'config')
  await writeFile(file, text, { mode: 0o644 })
  await chmod(file, 0o644)
  return readVariantConfig({ PATH: '/usr/bin:/bin', SIMPLEIMAGE_CONFIG_DIR: dir, INSTANCE_NAME: 'inst1.example.org' }, variant)
}

test('parseEnvDump and configVars: only what the config set or changed', () => {
  const after = parseEnvDump('A=1\0B=x=y\0PATH=/bin\0_=/usr/bin/env\0SHLVL=1\0')
  assert.equal(after, { A: '1', B: 'x=y', PATH: '/bin', _: '/usr/bin/env', SHLVL: '1' })
  assert.equal(configVars({ PATH: '/bin' }, after), { A: '1', B: 'x=y' })
})

test('defaults when there is no config file', async () => {
  const c = await readVariantConfig({ SIMPLEIMAGE_CONFIG_DIR: dir }, 'missing')
  assert.is(c.imageStorage, '/tmp/ganeti-instance-simpleimage')
  assert.is(c.cacheMaxDays, 7)
  assert.is(c.proxy, undefined)
  assert.is(c.curlOpts, '')
  assert.is(c.hooksDir, join(dir, 'missing', 'hooks'))
})

test('shell syntax: quotes, export, comments, $VAR references, spaces', async () => {
  const c = await configWith(`# a comment
export PROXY="http://proxy.example.org:3128"   # trailing comment
CUSTOM_CURL_OPTS='--retry 3 -H "X-A: b c"'
BASE=/var/cache
IMAGE_STORAGE="$BASE/simpleimage images"
DOWNLOAD_CACHE_MAX_DAYS=3
GREETING='it'\\''s'
HOST_HINT="for $INSTANCE_NAME"
echo "configs may print; this goes to stderr"
`)
  assert.is(c.proxy, 'http://proxy.example.org:3128')
  assert.is(c.curlOpts, '--retry 3 -H "X-A: b c"')
  assert.is(c.imageStorage, '/var/cache/simpleimage images')
  assert.is(c.cacheMaxDays, 3)
  assert.is(c.vars.GREETING, "it's")
  assert.is(c.vars.HOST_HINT, 'for inst1.example.org')
  assert.is(c.vars.BASE, '/var/cache')
  assert.not.ok('PATH' in c.vars)
})

test('a config bash cannot read is a clear failure', async () => {
  try {
    await configWith('PROXY="unterminated\n', 'bad')
    assert.unreachable()
  } catch (err) {
    assert.instance(err, Failure)
    assert.match((err as Error).message, /could not be read by bash/)
  }
})

test('a world-writable config is refused', async () => {
  await mkdir(join(dir, 'ww'), { recursive: true })
  await writeFile(join(dir, 'ww', 'config'), 'PROXY=x\n')
  await chmod(join(dir, 'ww', 'config'), 0o666)
  try {
    await readVariantConfig({ SIMPLEIMAGE_CONFIG_DIR: dir }, 'ww')
    assert.unreachable()
  } catch (err) {
    assert.match((err as Error).message, /the variant config .*ww\/config is refused: .* could have been written by someone else \(it is writable by everyone\)/)
  }
})

test('settings are checked: days must be a number, IMAGE_STORAGE absolute', () => {
  assert.throws(() => settingsFrom('f', 'h', { DOWNLOAD_CACHE_MAX_DAYS: 'seven' }), /not a number of days/)
  assert.throws(() => settingsFrom('f', 'h', { IMAGE_STORAGE: 'relative/dir' }), /not an absolute path/)
  assert.is(settingsFrom('f', 'h', { DOWNLOAD_CACHE_MAX_DAYS: '0' }).cacheMaxDays, 0)
})

test.run()
