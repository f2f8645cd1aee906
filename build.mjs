// Bundles each OS script (scripts/<action>.ts) with esbuild into one self-contained,
// executable CommonJS file dist/<action>: Ganeti runs them directly, with no node_modules
// beside them, on Debian 12's node 18 as well as on Node 20+ (FIELD-NOTES §5).
import { build } from 'esbuild'
import { chmod, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = dirname(fileURLToPath(import.meta.url))

export const ACTIONS = ['create', 'import', 'export', 'rename', 'verify']
/** The operator's commands, built the same way (the .deb puts them in /usr/sbin). */
export const COMMANDS = ['simpleimage-cache']

export async function buildAll({ outdir = join(root, 'dist'), quiet = false } = {}) {
  await mkdir(outdir, { recursive: true })
  const wanted = [...ACTIONS, ...COMMANDS]
  // each bundle replaces the old one by rename: a test running meanwhile never finds dist/
  // without it or half-written
  for (const name of await readdir(outdir)) if (!wanted.includes(name) && name !== 'package.json' && !name.startsWith('.')) await rm(join(outdir, name), { recursive: true, force: true })
  for (const action of wanted) {
    const outfile = `${outdir}/.${action}.${process.pid}`
    await build({
      entryPoints: [join(root, 'scripts', `${action}.ts`)],
      outfile,
      absWorkingDir: root, // module paths in the bundle's comments must not depend on the cwd
      bundle: true,
      platform: 'node',
      format: 'cjs', // extensionless ESM needs Node >= 20.19; CJS runs on 18 too
      target: 'node18',
      banner: { js: '#!/usr/bin/env node' },
      legalComments: 'none',
      logLevel: quiet ? 'error' : 'warning',
    })
    await chmod(outfile, 0o755)
    await rename(outfile, `${outdir}/${action}`)
  }
  // Only for running dist/ inside this repository, whose package.json says "type": "module":
  // an installed OS directory has no package.json and the bundles need none.
  await writeFile(`${outdir}/package.json`, '{ "type": "commonjs" }\n')
  if (!quiet) console.log(`built ${[...ACTIONS, ...COMMANDS].map((a) => `${outdir}/${a}`).join(' ')}`)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  buildAll().catch((err) => {
    console.error(`build failed: ${err.message}`)
    process.exit(1)
  })
}
