// Bundles each OS script (scripts/<action>.ts) with esbuild into one self-contained,
// executable CommonJS file dist/<action>: Ganeti runs them directly, with no node_modules
// beside them, on Debian 12's node 18 as well as on Node 20+ (FIELD-NOTES §5).
import { build } from 'esbuild'
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = dirname(fileURLToPath(import.meta.url))

export const ACTIONS = ['create', 'import', 'export', 'rename', 'verify']

export async function buildAll({ outdir = join(root, 'dist'), quiet = false } = {}) {
  await rm(outdir, { recursive: true, force: true })
  await mkdir(outdir, { recursive: true })
  for (const action of ACTIONS) {
    const outfile = `${outdir}/${action}`
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
  }
  // Only for running dist/ inside this repository, whose package.json says "type": "module":
  // an installed OS directory has no package.json and the bundles need none.
  await writeFile(`${outdir}/package.json`, '{ "type": "commonjs" }\n')
  if (!quiet) console.log(`built ${ACTIONS.map((a) => `${outdir}/${a}`).join(' ')}`)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  buildAll().catch((err) => {
    console.error(`build failed: ${err.message}`)
    process.exit(1)
  })
}
