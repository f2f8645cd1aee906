// Logging for the OS scripts. Ganeti sends create's stdout and stderr to one log file and
// shows the user its last 20 lines; export's stdout is the data stream. So every message
// goes to stderr, written synchronously so that it interleaves in order with the output
// of the commands we run, and every line passes through redact() first.
import { writeSync } from 'node:fs'

let scriptName = 'simpleimage'
let debugEnabled = false

export function setupLog(script: string, debug: boolean): void {
  scriptName = script
  debugEnabled = debug
}

export function isDebug(): boolean {
  return debugEnabled
}

/** Hides the user:password part of every URL in a text (image URLs, PROXY). */
export function redact(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/\s@]*@/gi, '$1***@')
}

function emit(line: string): void {
  const text = redact(line).replace(/\n/g, ' ') + '\n'
  try {
    writeSync(2, text)
  } catch {
    // stderr closed: nothing useful left to do with a log line
  }
}

export function info(message: string): void {
  emit(`${scriptName}: ${message}`)
}

export function debug(message: string): void {
  if (debugEnabled) emit(`${scriptName}: [debug] ${message}`)
}

/** The one line Ganeti's user reads: what failed and what to do. */
export function finalFailure(message: string): void {
  emit(`${scriptName} failed: ${message}`)
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}
