#!/usr/bin/env node
// Installs the provider the way Ganeti looks for it: the five bundled scripts and the
// three text files in the OS directory, and the variant's config and hooks directory.
// Usage: npm run install-os -- [--os-dir DIR] [--config-dir DIR] [--node PATH] [--variant NAME]
import { chmod, copyFile, mkdir, readFile, writeFile, access, realpath } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ACTIONS, buildAll } from '../build.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
export const TEXT_FILES = ['ganeti_api_version', 'variants.list', 'parameters.list']

function parseArgs(argv) {
  const opts = { osDir: '/usr/share/ganeti/os/simpleimage', configDir: '/etc/ganeti/instance-simpleimage', node: undefined, variant: 'default' }
  for (let i = 0; i < argv.length; i++) {
    const [name, value] = [argv[i], argv[i + 1]]
    if (name === '--os-dir') opts.osDir = value
    else if (name === '--config-dir') opts.configDir = value
    else if (name === '--node') opts.node = value
    else if (name === '--variant') opts.variant = value
    else throw new Error(`unknown argument ${name}; usage: install-os [--os-dir DIR] [--config-dir DIR] [--node PATH] [--variant NAME]`)
    if (value === undefined) throw new Error(`${name} needs a value`)
    i++
  }
  return opts
}

const exists = (p) => access(p).then(() => true, () => false)

/** Ganeti starts scripts with PATH=/sbin:/bin:/usr/sbin:/usr/bin, so the #! line names
 *  node by absolute path: the one running this installer unless --node says otherwise. */
export async function installOsDir(osDir, node) {
  await mkdir(osDir, { recursive: true, mode: 0o755 })
  for (const action of ACTIONS) {
    const code = await readFile(join(root, 'dist', action), 'utf8')
    await writeFile(join(osDir, action), code.replace(/^#!.*\n/, `#!${node}\n`), { mode: 0o755 })
    await chmod(join(osDir, action), 0o755)
  }
  for (const file of TEXT_FILES) {
    await copyFile(join(root, file), join(osDir, file))
    await chmod(join(osDir, file), 0o644)
  }
}

export async function installVariant(configDir, variant) {
  const dir = join(configDir, variant)
  await mkdir(join(dir, 'hooks'), { recursive: true, mode: 0o755 })
  const config = join(dir, 'config')
  if (await exists(config)) return `${config} kept as it is`
  await writeFile(config, await readFile(join(root, 'packaging', 'variant-config.template')), { mode: 0o644, flag: 'wx' })
  return `${config} created`
}

async function main() {
  try {
    const opts = parseArgs(process.argv.slice(2))
    const node = opts.node ?? (await realpath(process.execPath))
    await buildAll({ quiet: true })
    await installOsDir(opts.osDir, node)
    const note = await installVariant(opts.configDir, opts.variant)
    console.log(`installed the OS provider in ${opts.osDir} (scripts run ${node}); ${note}; hooks go in ${join(opts.configDir, opts.variant, 'hooks')}`)
  } catch (err) {
    console.error(`install-os failed: ${err.message}`)
    process.exit(1)
  }
}

if (import.meta.url === `file://${process.argv[1]}`) void main()
