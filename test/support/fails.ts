// Asserts that fn throws a Failure (the provider's expected-failure type) whose message
// matches: for the unit tests of pure checks.
import * as assert from 'uvu/assert'
import { Failure } from '../../lib/errors.js'

export function failsWith(fn: () => unknown, pattern: RegExp): void {
  try {
    fn()
  } catch (err) {
    assert.instance(err, Failure)
    assert.match((err as Error).message, pattern)
    return
  }
  assert.unreachable(`expected a failure matching ${pattern}`)
}
