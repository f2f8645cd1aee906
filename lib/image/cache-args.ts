// simpleimage-cache's command line. Pure.
export type CacheCommand =
  | { command: 'list'; variant?: string }
  | { command: 'prefetch'; variant: string; checksum?: string; image: string }
  | { command: 'purge'; variant?: string; expired: boolean }

export class UsageError extends Error {}

const VARIANT = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/

export function parseCacheArgs(argv: string[]): CacheCommand {
  const [command, ...rest] = argv
  let variant: string | undefined
  let checksum: string | undefined
  let expired = false
  const positional: string[] = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]
    const value = (name: string) => {
      const eq = arg.indexOf('=')
      const v = eq >= 0 ? arg.slice(eq + 1) : rest[++i]
      if (v === undefined || v === '') throw new UsageError(`${name} needs a value`)
      return v
    }
    if (arg === '--variant' || arg.startsWith('--variant=')) {
      variant = value('--variant')
      if (!VARIANT.test(variant)) throw new UsageError(`'${variant}' is not a variant name`)
    } else if ((arg === '--checksum' || arg.startsWith('--checksum=')) && command === 'prefetch') checksum = value('--checksum')
    else if (arg === '--expired' && command === 'purge') expired = true
    else if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg} for ${command ?? 'no command'}`)
    else positional.push(arg)
  }
  if (command === 'list' && positional.length === 0) return { command, variant }
  if (command === 'purge' && positional.length === 0) return { command, variant, expired }
  if (command === 'prefetch' && positional.length === 1) return { command, variant: variant ?? 'default', checksum, image: positional[0] }
  if (command === 'prefetch') throw new UsageError('prefetch takes one IMAGE: a URL or a name in the variant\'s images.ini')
  if (command === 'list' || command === 'purge') throw new UsageError(`${command} takes no arguments besides its options`)
  throw new UsageError(command ? `unknown command ${command}` : 'no command given')
}
