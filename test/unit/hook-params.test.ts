// The example hooks' OS parameters as verify checks them: OpenSSH keys, DNS servers and
// search domains, user_data.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { parseAuthorizedKeys, parseNameservers, parseSearchDomains, parseUserData, splitKeys } from '../../lib/ganeti/hook-params.js'
import { failsWith } from '../support/fails.js'

const ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk1ZDXeu1x9Gp3z1N0h3m0G5cqxvR5PV5w6PZ7sY5GK one@example.org'
const RSA_BLOB = Buffer.concat([Buffer.from([0, 0, 0, 7]), Buffer.from('ssh-rsa'), Buffer.from([0, 0, 0, 1, 3])]).toString('base64')

test('keys: separated by ; or newlines, each a key type with base64 data naming that type', () => {
  assert.equal(parseAuthorizedKeys(`${ED}; ssh-rsa ${RSA_BLOB}\n`), [ED, `ssh-rsa ${RSA_BLOB}`])
  assert.equal(splitKeys(' ; ;'), [])
  failsWith(() => parseAuthorizedKeys(''), /ssh_authorized_keys is empty/)
  failsWith(() => parseAuthorizedKeys('AAAAC3NzaC1lZDI1NTE5 me'), /is not an OpenSSH public key \(it starts with 'AAAAC3NzaC1lZDI1NTE5'/)
  failsWith(() => parseAuthorizedKeys(`ssh-rsa ${ED.split(' ')[1]}`), /is not a valid ssh-rsa key/)
  failsWith(() => parseAuthorizedKeys('ssh-ed25519 not*base64'), /not a valid ssh-ed25519 key/)
  failsWith(() => parseAuthorizedKeys(`${ED};ssh-ed25519`), /key 2 of ssh_authorized_keys is not a valid/)
  failsWith(() => parseAuthorizedKeys(`${ED} 'quoted'`), /quotes, backslashes or control characters/)
})

test('DNS servers are IPv4 or IPv6 addresses, search domains are domain names', () => {
  assert.equal(parseNameservers('192.0.2.53;2001:db8::53  198.51.100.1'), ['192.0.2.53', '2001:db8::53', '198.51.100.1'])
  failsWith(() => parseNameservers('192.0.2.300'), /'192\.0\.2\.300' is not an IPv4 or IPv6 address/)
  failsWith(() => parseNameservers('dns.example.org'), /not an IPv4 or IPv6 address/)
  assert.equal(parseSearchDomains('example.org corp.example.org.'), ['example.org', 'corp.example.org.'])
  failsWith(() => parseSearchDomains('exa_mple.org'), /'exa_mple\.org' is not a domain name/)
  failsWith(() => parseSearchDomains('-bad.example'), /not a domain name/)
  failsWith(() => parseSearchDomains(`${'a'.repeat(64)}.org`), /not a domain name/)
})

test('user_data: an absolute path or an http(s) URL, credentials never shown', () => {
  assert.equal(parseUserData('/srv/cloud/user-data'), { kind: 'path', path: '/srv/cloud/user-data' })
  assert.is(parseUserData('https://h.example/ud').kind, 'url')
  failsWith(() => parseUserData('user-data'), /neither an absolute path nor an http\(s\) URL/)
  failsWith(() => parseUserData('ftp://u:secret@h/ud'), /^user_data 'ftp:\/\/\*\*\*@h\/ud' is neither/)
})

test.run()
