// The OS parameters that only the example hooks use (example-hooks/): ssh_authorized_keys,
// user_data, dns_nameservers, dns_search. verify checks them so that a typo fails before
// anything is installed; the hooks trust what verify let through. Lists are separated by
// ';' (Ganeti's -O takes no commas in a value), names and addresses also by blanks.
// Pure: what verify does with a user_data path or URL is in scripts/verify.ts.
import { isIP } from 'node:net'
import { Failure } from '../errors.js'
import { redact } from '../log.js'

const KEY_TYPES = new Set([
  'ssh-ed25519', 'ssh-rsa', 'ssh-dss', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com',
])
const HINT_KEYS = "give OpenSSH public keys ('ssh-ed25519 AAAA... comment'), separated by ';'"

export function splitKeys(text: string): string[] {
  return text.split(/[;\n]/).map((k) => k.trim()).filter((k) => k !== '')
}

/** Items separated by ';' or blanks, as the hooks split them (common.sh, si_words). */
export function splitWords(text: string): string[] {
  return text.split(/[; \t\r\n]+/).filter((w) => w !== '')
}

/** The keys of ssh_authorized_keys, each checked to be an OpenSSH public key: its type, and
 *  base64 data that names the same type (what ssh-keygen -l checks first). */
export function parseAuthorizedKeys(text: string): string[] {
  const keys = splitKeys(text)
  if (keys.length === 0) throw new Failure('ssh_authorized_keys is empty', HINT_KEYS)
  keys.forEach((key, i) => {
    const [type, data] = key.split(/\s+/)
    const which = keys.length > 1 ? `key ${i + 1} of ssh_authorized_keys` : 'ssh_authorized_keys'
    if (!KEY_TYPES.has(type)) throw new Failure(`${which} is not an OpenSSH public key (it starts with '${type.slice(0, 24)}', not a key type such as ssh-ed25519)`, HINT_KEYS)
    if (/[\x00-\x1f"'\\]/.test(key)) throw new Failure(`${which} holds quotes, backslashes or control characters`, HINT_KEYS)
    const blob = data && /^[A-Za-z0-9+/]+={0,2}$/.test(data) ? Buffer.from(data, 'base64') : Buffer.alloc(0)
    const named = blob.length > 4 ? blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('latin1') : ''
    if (named !== type) throw new Failure(`${which} is not a valid ${type} key (its base64 data is damaged or of another type)`, HINT_KEYS)
  })
  return keys
}

export function parseNameservers(text: string): string[] {
  const servers = splitWords(text)
  for (const s of servers) {
    if (isIP(s) === 0) throw new Failure(`dns_nameservers: '${s}' is not an IPv4 or IPv6 address`, "give addresses such as 192.0.2.53 or 2001:db8::53, separated by ';' or blanks")
  }
  return servers
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i

export function parseSearchDomains(text: string): string[] {
  const domains = splitWords(text)
  for (const d of domains) {
    const name = d.replace(/\.$/, '')
    if (name.length > 253 || !name.split('.').every((l) => LABEL.test(l))) {
      throw new Failure(`dns_search: '${d.slice(0, 64)}' is not a domain name`, "give names such as example.org, separated by ';' or blanks")
    }
  }
  return domains
}

export type UserDataRef = { kind: 'path'; path: string } | { kind: 'url'; url: URL }

/** user_data: an absolute path on every node, or an http(s) URL the hook fetches. */
export function parseUserData(text: string): UserDataRef {
  const value = text.trim()
  if (/^https?:\/\//i.test(value)) {
    try {
      return { kind: 'url', url: new URL(value) }
    } catch {
      throw new Failure(`user_data '${redact(value)}' is not a valid URL`, 'give an http(s) URL or an absolute path on every node')
    }
  }
  if (value.startsWith('/')) return { kind: 'path', path: value }
  throw new Failure(`user_data '${redact(value).slice(0, 64)}' is neither an absolute path nor an http(s) URL`, 'give the path of a cloud-init user-data file on every node, or an http(s) URL')
}
