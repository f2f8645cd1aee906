// Is node-fetch a limit of cold downloads? `node fetch.mjs CLIENT URL DEST` downloads URL
// with CLIENT and writes it to DEST (/dev/null, or a file that is then fsync'ed):
//   node-fetch  node-fetch 3 as lib/image/http.ts calls it (an http.Agent, compress: false,
//               redirect: 'manual', an AbortSignal), its body read with `for await` as
//               lib/image/download.ts does
//   http        Node's own http.get, the response (an IncomingMessage) read with `for await`
// Into a file both write as download.ts does: chunks gathered to 1 MiB, one writev each at
// its position. Prints one JSON line on stderr: bytes, chunks, mean chunk size, seconds.
import http from 'node:http'
import { open } from 'node:fs/promises'
import fetch from 'node-fetch'

const [client, url, dest] = process.argv.slice(2)
if (!['node-fetch', 'http'].includes(client) || !url || !dest) {
  console.error('usage: node fetch.mjs node-fetch|http URL DEST')
  process.exit(2)
}

const BATCH = 1 << 20
const agent = new http.Agent()
const headers = { 'User-Agent': 'ganeti-instance-simpleimage', 'Accept-Encoding': 'identity' }

async function body() {
  if (client === 'node-fetch') {
    const controller = new AbortController()
    const response = await fetch(url, { method: 'GET', headers, agent: () => agent, compress: false, redirect: 'manual', signal: controller.signal })
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    return response.body
  }
  return new Promise((resolve, reject) => {
    http.get(url, { agent, headers }, (res) => (res.statusCode === 200 ? resolve(res) : reject(new Error(`HTTP ${res.statusCode}`)))).on('error', reject)
  })
}

const start = process.hrtime.bigint()
const toNull = dest === '/dev/null'
const fh = toNull ? null : await open(dest, 'w')
let bytes = 0
let chunks = 0
let pending = []
let pendingBytes = 0
const flush = async () => {
  if (pendingBytes === 0) return
  const { bytesWritten } = await fh.writev(pending, bytes - pendingBytes)
  if (bytesWritten !== pendingBytes) throw new Error('short write')
  pending = []
  pendingBytes = 0
}
for await (const chunk of await body()) {
  bytes += chunk.length
  chunks++
  if (toNull) continue
  pending.push(chunk)
  pendingBytes += chunk.length
  if (pendingBytes >= BATCH) await flush()
}
if (fh) {
  await flush()
  await fh.sync()
  await fh.close()
}
agent.destroy()
const seconds = Number(process.hrtime.bigint() - start) / 1e9
console.error(JSON.stringify({ client, bytes, chunks, meanChunkKiB: +(bytes / chunks / 1024).toFixed(1), seconds: +seconds.toFixed(3) }))
