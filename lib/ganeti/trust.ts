// Files that root sources or runs (the variant config, hooks) must not be writable by
// anyone else, and neither may the directories that lead to them: whoever can replace a
// directory on the way can put any file there. As sshd's StrictModes does, a directory on
// the way may be world-writable if it is sticky (/tmp), where others cannot replace what
// is root's; the file's own directory may not.
import { realpath, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Failure } from '../errors.js'

interface Owned {
  uid: number
  mode: number
}

const ours = (uid: number) => uid === 0 || uid === process.getuid?.()
const STICKY = 0o1000

/** Why `st` may have been written by someone else, or null. Pure. */
export function untrustedBecause(st: Owned, kind: 'file' | 'dir' | 'ancestor'): string | null {
  if (!ours(st.uid)) return `it is owned by uid ${st.uid}, not by root`
  if ((st.mode & 0o022) === 0) return null
  if (kind === 'ancestor' && (st.mode & STICKY) !== 0) return null
  return `it is writable by ${(st.mode & 0o002) !== 0 ? 'everyone' : 'its group'}`
}

/** Refuses `given` (a file or directory, symlinks followed) when it or a directory above
 *  it could have been written by someone other than root, naming `what` ("hook 10-resize"). */
export async function requireTrusted(given: string, what: string, kind: 'file' | 'dir'): Promise<void> {
  const path = await realpath(given)
  const check = async (p: string, k: 'file' | 'dir' | 'ancestor') => {
    const why = untrustedBecause(await stat(p), k)
    if (why) {
      const fix = k === 'file' ? `chown root: ${p} && chmod go-w ${p}` : `chown root: ${p} && chmod go-w ${p}, or move the variant's files elsewhere`
      throw new Failure(`${what} is refused: ${p === path ? p : `${p}, a directory above ${path},`} could have been written by someone else (${why})`, `root runs it: ${fix}`)
    }
  }
  await check(path, kind)
  let dir = dirname(path)
  await check(dir, kind === 'file' ? 'dir' : 'ancestor')
  while (dir !== '/') {
    dir = dirname(dir)
    await check(dir, 'ancestor')
  }
}
