// Starts serve.mjs (on the host's loopback, or inside a shaped link's namespace) and keeps
// the requests it reports, so that a run can say how many times an image was fetched.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))

/** Returns { url(file), requests(file?), stop() }; `cleanups` gets the stop. */
export async function startServer(root, { netns, delayMs = 0, cleanups } = {}) {
  const argv = [process.execPath, join(HERE, 'serve.mjs'), root, ...(delayMs ? ['--delay', String(delayMs)] : [])]
  const cmd = netns ? [...netns.exec, ...argv] : argv
  const child = spawn(cmd[0], cmd.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
  const stop = () => child.exitCode === null && child.signalCode === null && child.kill()
  cleanups?.push(stop)
  const seen = []
  const lines = createInterface({ input: child.stdout })
  const port = await new Promise((res, rej) => {
    lines.once('line', (l) => res(Number(l.trim())))
    child.once('exit', () => rej(new Error(`the HTTP server did not start${netns ? ' in ' + netns.name : ''}`)))
  })
  lines.on('line', (l) => {
    try {
      seen.push(JSON.parse(l))
    } catch {
      // not a request line
    }
  })
  const base = `http://127.0.0.1:${port}/`
  return {
    port,
    url: (file) => base + file,
    /** Requests since the start (or the given mark), for one file if given. */
    requests: (file, since = 0) => seen.slice(since).filter((r) => !file || r.path === `/${file}`),
    mark: () => seen.length,
    stop,
  }
}
