// The copyright file's third-party part: the npm modules esbuild bundled into the scripts,
// found in the bundles themselves, with their holders and licence texts (a module of a
// licence not known here stops the build). Used by build-deb.mjs.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'


const EXPAT = `Permission is hereby granted, free of charge, to any person obtaining a
copy of this software and associated documentation files (the "Software"),
to deal in the Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, sublicense,
and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included
in all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY
CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE
SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.`

const APACHE = `Licensed under the Apache License, Version 2.0 (the "License"); you may not
use this file except in compliance with the License. You may obtain a copy
of the License at http://www.apache.org/licenses/LICENSE-2.0
.
Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
License for the specific language governing permissions and limitations
under the License.
.
On Debian systems, the complete text of the Apache License, Version 2.0
can be found in "/usr/share/common-licenses/Apache-2.0".`

const ISC = `Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above
copyright notice and this permission notice appear in all copies.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR
IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.`

/** SPDX name in package.json -> [DEP-5 short name, license text]. */
const LICENSES = {
  MIT: ['Expat', EXPAT],
  'Apache-2.0': ['Apache-2.0', APACHE],
  ISC: ['ISC', ISC], // ini (the image catalog)
}

/** A DEP-5 field body: continuation lines start with a space, empty lines are ' .'. */
const field = (text) => text.split('\n').map((l, i) => (i === 0 ? l : ` ${l.trim() === '' || l.trim() === '.' ? '.' : l}`)).join('\n')

/** The npm packages esbuild put into the bundles (it marks each module with a
 *  "// node_modules/<package>/<file>" comment), each with where its bundles are installed. */
async function bundledPackages(root, bundles) {
  const found = new Map()
  for (const { name, where } of bundles) {
    const code = await readFile(join(root, 'dist', name), 'utf8')
    for (const m of code.matchAll(/^\/\/ node_modules\/((?:@[^/\s]+\/)?[^/\s]+)\//gm)) {
      if (!found.has(m[1])) found.set(m[1], new Set())
      found.get(m[1]).add(where)
    }
  }
  if (found.size === 0) throw new Error('found no "// node_modules/..." module comments in dist/: cannot list the bundled modules for the copyright file')
  return [...found.keys()].sort().map((name) => ({ name, where: [...found.get(name)] }))
}

async function noticeFor(root, { name, where }) {
  const dir = join(root, 'node_modules', name)
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8'))
  const spdx = typeof pkg.license === 'string' ? pkg.license : pkg.license?.type
  if (!LICENSES[spdx]) throw new Error(`bundled module ${name} has license '${spdx}', which build-deb.mjs does not know: add its text to LICENSES`)
  const licenseFile = (await readdir(dir)).find((f) => /^licen[cs]e(\.md|\.txt)?$/i.test(f))
  const text = licenseFile ? await readFile(join(dir, licenseFile), 'utf8') : ''
  let holders = text
    .split('\n')
    .map((l) => l.trim())
    // a notice has a year or a (c) ("Copyright (c) Isaac Z. Schlueter and Contributors", ini's);
    // the licence's own "copyright notice and this permission notice" has neither
    .filter((l) => /^copyright\b/i.test(l) && (/\d{4}/.test(l) || /^copyright\s*(\(c\)|©)/i.test(l)) && !/\[yyyy\]/.test(l))
    .map((l) => l.replace(/^copyright\s*(\(c\)|©)?\s*/i, ''))
  if (holders.length === 0) {
    const author = typeof pkg.author === 'string' ? pkg.author : pkg.author?.name ? `${pkg.author.name}${pkg.author.email ? ` <${pkg.author.email}>` : ''}` : undefined
    holders = [author ? author.replace(/\s*\(https?:[^)]*\)/, '') : `the ${name} authors`]
  }
  return { name, where, version: pkg.version, license: LICENSES[spdx][0], holders }
}

/** "the scripts in /usr/share/ganeti/os/simpleimage and /usr/sbin/simpleimage-cache" */
function bundledInto(where, osDir) {
  const places = where.map((w) => (w === osDir ? `the scripts in ${osDir}` : w))
  return places.length > 1 ? `${places.slice(0, -1).join(', ')} and ${places.at(-1)}` : places[0]
}

/** packaging/debian/copyright with a DEP-5 paragraph for every npm module in the bundles
 *  ({ name, where } each: dist/<name>, installed in `where`), and the licences they use. */
export async function copyrightText(root, debianDir, bundles, osDir) {
  let text = (await readFile(join(debianDir, 'copyright'), 'utf8')).trimEnd() + '\n'
  const notices = await Promise.all((await bundledPackages(root, bundles)).map((b) => noticeFor(root, b)))
  const used = new Set()
  for (const n of notices) {
    text += `\nFiles: node_modules/${n.name}/*\nCopyright: ${field(n.holders.join('\n'))}\nLicense: ${n.license}\nComment: npm package ${n.name} ${n.version}, bundled into ${bundledInto(n.where, osDir)}\n`
    used.add(n.license)
  }
  for (const [short, body] of Object.values(LICENSES)) {
    if (used.has(short)) text += `\nLicense: ${short}\n ${field(body)}\n`
  }
  return text
}
