// HTTP server for the benchmark's URL runs: `node serve.mjs ROOT [--delay MS]` serves the
// files in ROOT on 127.0.0.1 (GET and HEAD, Content-Length, single byte ranges), prints the
// port on stdout, and exits when its stdin closes, so it can never outlive the bench. It runs
// in its own process so that serving does not compete with the bench's own event loop, and
// reads in 1 MiB chunks so the server is not what limits a download.
// --delay MS waits that long before each answer (its headers): a WAN's round trip, on a
// shaped link (the bench runs the server inside a network namespace, netns.mjs). After the
// port, every request is one line on stdout, `{"method","path","status","range"}` as JSON,
// when its headers are sent: the bench counts the requests an image got (server.mjs).
import { createReadStream, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { join, normalize } from 'node:path'

const root = process.argv[2]
const at = process.argv.indexOf('--delay')
const delayMs = at > 0 ? Number(process.argv[at + 1]) : 0
if (!root || !Number.isFinite(delayMs) || delayMs < 0) {
  console.error('usage: node serve.mjs ROOT [--delay MS]')
  process.exit(2)
}

const note = (req, status) => process.stdout.write(`${JSON.stringify({ method: req.method, path: req.url, status, range: req.headers.range ?? null })}\n`)

function answer(req, res) {
  const rel = normalize(decodeURIComponent((req.url ?? '/').split('?')[0]))
  let size
  try {
    const st = statSync(join(root, rel))
    if (rel.includes('..') || !st.isFile()) throw new Error('not a file')
    size = st.size
  } catch {
    note(req, 404)
    res.writeHead(404).end()
    return
  }
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
  const start = range ? Number(range[1]) : 0
  const end = range && range[2] ? Math.min(Number(range[2]), size - 1) : size - 1
  const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': end - start + 1, 'Accept-Ranges': 'bytes' }
  if (range) headers['Content-Range'] = `bytes ${start}-${end}/${size}`
  note(req, range ? 206 : 200)
  res.writeHead(range ? 206 : 200, headers)
  if (req.method === 'HEAD') {
    res.end()
    return
  }
  const stream = createReadStream(join(root, rel), { start, end, highWaterMark: 1 << 20 })
  stream.on('error', () => res.destroy())
  stream.pipe(res)
}

const server = createServer((req, res) => (delayMs > 0 ? setTimeout(() => answer(req, res), delayMs) : answer(req, res)))
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`))
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
