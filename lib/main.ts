// The frame every OS script runs in: usage and -h, DEBUG_LEVEL, signals, cleanup, and the
// rule that a failure ends with a non-zero exit and one last line saying what to do.
import { $ } from 'zx/core'
import { debug, finalFailure, info, setupLog } from './log.js'
import { Failure, errorMessage } from './errors.js'
import { runCleanups, stopChildren } from './cleanup.js'

export interface Script {
  name: string
  /** Usage text shown for -h/--help and for wrong arguments. */
  usage: string
  /** Accepted argument lists, e.g. [[]] or [['parameters']], or a check of its own (a command
   *  with options). */
  argv: string[][] | ((args: string[]) => boolean)
  run(args: string[]): Promise<void>
}

export function runScript(script: Script): void {
  const args = process.argv.slice(2)
  setupLog(script.name, process.env.DEBUG_LEVEL !== undefined && process.env.DEBUG_LEVEL !== '0' && process.env.DEBUG_LEVEL !== '')
  // commands run through zx appear in the log with DEBUG_LEVEL=1, and nothing else of zx's
  $.log = (entry) => {
    if (entry.kind === 'cmd') debug(`running ${entry.cmd}`)
  }
  // no command reads stdin: with zx's default, a socket, bash takes itself for a remote
  // shell and runs root's ~/.bashrc before every command, whose output then mixes with
  // the command's (seen: "pyenv: command not found" as blkdiscard's error)
  $.stdio = ['ignore', 'pipe', 'pipe']
  if (args.length === 1 && (args[0] === '-h' || args[0] === '--help')) {
    // asked for: the usage is the output (GNU convention); wrong arguments get it on stderr
    process.stdout.write(script.usage.trimEnd() + '\n')
    return
  }
  const accepted = typeof script.argv === 'function' ? script.argv(args) : script.argv.some((want) => want.length === args.length && want.every((a, i) => a === args[i]))
  if (!accepted) {
    process.stderr.write(script.usage.trimEnd() + '\n')
    finalFailure(`wrong arguments (${args.join(' ') || 'none'}); see the usage above`)
    process.exitCode = 2
    return
  }

  let finished = false
  const fail = async (message: string, code: number) => {
    if (finished) return
    finished = true
    await stopChildren()
    await runCleanups()
    finalFailure(message)
    process.exit(code)
  }
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130], ['SIGHUP', 129]] as const) {
    process.on(signal, () => {
      info(`received ${signal}, stopping and cleaning up`)
      void fail(`${script.name} was interrupted by ${signal}; nothing was left attached or half-cached, run it again`, code)
    })
  }

  // Node exits when nothing is left to wait for, even with run() still pending: that must
  // never pass for success.
  process.on('exit', (code) => {
    if (!finished && code === 0) {
      finalFailure(`${script.name} stopped before finishing (internal error); run it again with DEBUG_LEVEL=1 and report the log`)
      process.exitCode = 70
    }
  })

  script.run(args).then(
    async () => {
      if (finished) return
      finished = true
      await runCleanups()
      // done: nothing left over (a socket a server keeps open, say) may keep us waiting
      process.exit(0)
    },
    (err: unknown) => {
      const message = err instanceof Failure ? err.message : `${errorMessage(err)}; see the messages above`
      if (!(err instanceof Failure) && process.env.DEBUG_LEVEL === '1' && err instanceof Error) info(err.stack ?? '')
      void fail(message, 1)
    },
  )
}
