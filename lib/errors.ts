// A Failure is an expected failure with a cause the user can act on: the script ends with
// one line "<what>; <what to do>" (see lib/main.ts). Anything else is a bug or an I/O error
// and is reported with its own message.
export class Failure extends Error {
  constructor(
    readonly what: string,
    readonly hint: string,
  ) {
    super(`${what}; ${hint}`)
    this.name = 'Failure'
  }
}

/** The image's own bytes are bad (corrupt, truncated, empty, not the format it claims): a
 *  cache entry they came from must not be used again (scripts/create.ts). */
export class ImageError extends Failure {
  constructor(what: string, hint: string) {
    super(what, hint)
    this.name = 'ImageError'
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}
