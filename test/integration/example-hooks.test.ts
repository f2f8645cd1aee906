// The example hooks (example-hooks/), installed as an operator does (one copy of the
// folder into a variant's hooks directory) and run by create onto file disks larger than
// the image, against small images made here in seconds: GPT with systemd-networkd, GPT
// with cloud-init and netplan, msdos with ifupdown and swap after the root, one with no
// Linux root at all, and one whose files are symlinks out of the guest. What they wrote is
// read back from the disk with debugfs. Booting real images is the end-to-end suite's part.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { workspace, variant, ganetiEnv, runAction, sparseDisk, MiB, type Workspace } from './harness.js'

const test = suite('the example hooks')
let ws: Workspace
const REPO = new URL('../..', import.meta.url).pathname
const KEY1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk1ZDXeu1x9Gp3z1N0h3m0G5cqxvR5PV5w6PZ7sY5GK one@example.org'
const KEY2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDu4gJW8K4o9tYb1cKQm2h3qv0dQ1Yk0xX0Q9aKZ2lJm two@example.org'
const OLD_ID = '0123456789abcdef0123456789abcdef'

test.before(async () => {
  ws = await workspace()
})
test.after(() => ws.cleanup())

type Kind = 'networkd' | 'cloud' | 'ifupdown' | 'not-linux' | 'hostile' | 'bare'
const sh = (cmd: string, cwd = ws.dir) => execFileSync('bash', ['-c', cmd], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString()

/** A small disk image shaped like the kind's: the root tree made here, then put into a
 *  partition table with mke2fs -d (no mounts). Returns the image and its root's offset. */
function guestImage(kind: Kind): { path: string; rootOffset: number } {
  const tree = join(ws.dir, `tree-${kind}`)
  rmSync(tree, { recursive: true, force: true })
  const file = (p: string, text: string, mode = 0o644) => {
    mkdirSync(join(tree, p, '..'), { recursive: true })
    writeFileSync(join(tree, p), text, { mode })
  }
  if (kind !== 'not-linux') file('etc/os-release', 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
  file('etc/hosts', '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\t\tlocalhost ip6-localhost\n')
  file('etc/hostname', '')
  file('etc/machine-id', OLD_ID + '\n', 0o444)
  file('var/lib/dbus/machine-id', OLD_ID + '\n')
  file('etc/ssh/ssh_host_ed25519_key', 'not a real key\n', 0o600)
  file('etc/ssh/ssh_host_ed25519_key.pub', 'ssh-ed25519 AAAA shared@build\n')
  mkdirSync(join(tree, 'etc/systemd/system/multi-user.target.wants'), { recursive: true })
  mkdirSync(join(tree, 'root'), { recursive: true, mode: 0o700 })
  if (kind === 'networkd' || kind === 'hostile') symlinkSync('/lib/systemd/system/systemd-networkd.service', join(tree, 'etc/systemd/system/multi-user.target.wants/systemd-networkd.service'))
  if (kind === 'cloud') {
    file('usr/bin/cloud-init', '#!/bin/sh\n', 0o755)
    file('usr/sbin/netplan', '#!/bin/sh\n', 0o755)
  }
  if (kind === 'ifupdown') file('sbin/ifup', '#!/bin/sh\n', 0o755)
  if (kind === 'hostile') {
    // files of the guest that point out of it: writing them must never touch the node's
    rmSync(join(tree, 'etc/hostname'))
    symlinkSync(join(ws.dir, 'victim-hostname'), join(tree, 'etc/hostname'))
    rmSync(join(tree, 'root'), { recursive: true })
    symlinkSync(join(ws.dir, 'victim-root'), join(tree, 'root'))
    rmSync(join(tree, 'etc/hosts'))
    symlinkSync(join(ws.dir, 'victim-secret'), join(tree, 'etc/hosts'))
  }
  const img = join(ws.dir, `guest-${kind}.raw`)
  rmSync(img, { force: true })
  sh(`truncate -s 48M ${img}`)
  if (kind === 'bare') {
    // a filesystem on the whole disk, without a partition table
    sh(`mke2fs -q -F -t ext4 -b 4096 -d ${tree} ${img}`)
    return { path: img, rootOffset: 0 }
  }
  const table = kind === 'ifupdown'
    ? 'label: dos\nstart=2048, size=77824, type=83\nstart=79872, size=18432, type=82\n'
    : 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"\n'
  execFileSync('sfdisk', ['-q', img], { input: table })
  const sectors = Number(sh(`partx -g -o SECTORS -n 1 ${img}`).trim())
  sh(`mke2fs -q -F -t ext4 -b 4096 -U 5b0c1f2e-6a3d-4e4f-8a9b-0c1d2e3f4a5b -d ${tree} -E offset=${2048 * 512} ${img} ${Math.floor(sectors / 8)}`)
  return { path: img, rootOffset: 2048 * 512 }
}

/** A file of the guest's root on disk, read with debugfs (null when there is none). */
function guestFile(disk: string, offset: number, path: string): string | null {
  const r = spawnSync('debugfs', ['-R', `cat ${path}`, `${disk}?offset=${offset}`], { encoding: 'utf8' })
  return /not found|Cannot/.test(r.stderr) ? null : r.stdout
}
function guestExists(disk: string, offset: number, path: string): boolean {
  const r = spawnSync('debugfs', ['-R', `stat ${path}`, `${disk}?offset=${offset}`], { encoding: 'utf8' })
  return r.stdout.includes('Inode:') && !/not found/.test(r.stderr)
}
const fsStat = (disk: string, offset: number) => execFileSync('bash', ['-c', `debugfs -R stats '${disk}?offset=${offset}' 2>/dev/null`]).toString()
const partLine = (disk: string, n: number) => sh(`sfdisk -d ${disk}`).split('\n').find((l) => new RegExp(`^\\S+${n} :`).test(l)) ?? ''

function hooksVariant(name: string, extra: Record<string, string> = {}): string {
  const v = variant(ws, name)
  const hooks = join(ws.configDir, v, 'hooks')
  cpSync(join(REPO, 'example-hooks'), hooks, { recursive: true, preserveTimestamps: true })
  for (const [file, text] of Object.entries(extra)) writeFileSync(join(ws.configDir, v, file), text)
  chmodSync(hooks, 0o755)
  return v
}

const NICS = {
  NIC_COUNT: '2',
  NIC_0_MAC: 'aa:00:00:12:34:56', NIC_0_IP: '203.0.113.10', NIC_0_NETWORK_SUBNET: '203.0.113.0/24', NIC_0_NETWORK_GATEWAY: '203.0.113.1',
  NIC_0_NETWORK_SUBNET6: '2001:db8:5::/64', NIC_0_NETWORK_GATEWAY6: '2001:db8:5::1',
  NIC_1_MAC: 'aa:00:00:65:43:21',
}

function install(kind: Kind, v: string, vars: Record<string, string> = {}) {
  const image = guestImage(kind)
  const disk = sparseDisk(ws.dir, `disk-${kind}.img`, 96 * MiB)
  return runAction(ws, 'create', ganetiEnv(ws, {
    OS_VARIANT: v, OSP_IMAGE: image.path, OSP_IMAGE_TYPE: 'raw', DISK_0_PATH: disk, DISK_0_SIZE: '96',
    INSTANCE_NAME: 'web1.example.org', INSTANCE_UUID: '8c0e3c1c-5f38-4a51-9b1e-2d4c6a8e0f11',
    ...NICS, OSP_SSH_AUTHORIZED_KEYS: `${KEY1};${KEY2}`, OSP_DNS_NAMESERVERS: '192.0.2.53 2001:db8::53', OSP_DNS_SEARCH: 'example.org', ...vars,
  })).then((r) => ({ r, disk, offset: image.rootOffset, image: image.path }))
}

/** Runs the installed hooks once more, the way create does, on the disk as it is now. */
function rerunHooks(v: string, disk: string, vars: Record<string, string> = {}): string {
  const dev = execFileSync('losetup', ['--find', '--show', disk]).toString().trim()
  try {
    const env = { ...ganetiEnv(ws, { OS_VARIANT: v, INSTANCE_NAME: 'web1.example.org', INSTANCE_UUID: '8c0e3c1c-5f38-4a51-9b1e-2d4c6a8e0f11', ...NICS, OSP_SSH_AUTHORIZED_KEYS: `${KEY1};${KEY2}`, OSP_DNS_NAMESERVERS: '192.0.2.53 2001:db8::53', OSP_DNS_SEARCH: 'example.org', ...vars }), TARGET_DISK_DEVICE: dev }
    const hooks = join(ws.configDir, v, 'hooks')
    return ['10-grow-root', '20-fresh-identity', '30-hostname', '40-ssh-keys', '50-network', '60-cloud-init-seed'].map((hook) => {
      const run = spawnSync(join(hooks, hook), [], { env, encoding: 'utf8' })
      assert.is(run.status, 0, `${hook} run again: ${run.stderr}`)
      return run.stdout + run.stderr
    }).join('')
  } finally {
    execFileSync('losetup', ['--detach', dev])
  }
}

test('a systemd-networkd image: grown, named, keyed, networked and given a fresh identity', async () => {
  const v = hooksVariant('hooks-networkd')
  const { r, disk, offset, image } = await install('networkd', v)
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /hook common\.sh skipped/)
  // grown to the end of disk 0, GUID, name, start and filesystem UUID kept
  const before = partLine(image, 1)
  const after = partLine(disk, 1)
  assert.is(/uuid=(\S+),/.exec(after)?.[1], /uuid=(\S+),/.exec(before)?.[1], 'the partition GUID changed')
  assert.match(after, /start=\s*2048, size=\s*194527,/) // 96 MiB less the GPT's 34 sectors at the end
  assert.match(after, /name="root"/)
  assert.match(fsStat(disk, offset), /Filesystem UUID:\s+5b0c1f2e-6a3d-4e4f-8a9b-0c1d2e3f4a5b/)
  assert.match(fsStat(disk, offset), /Block count:\s+24315\b/)
  assert.match(r.output, /10-grow-root: partition 1 grown from 46 MiB to 94 MiB/)
  assert.is(guestFile(disk, offset, '/etc/hostname'), 'web1\n')
  assert.match(guestFile(disk, offset, '/etc/hosts')!, /^127\.0\.0\.1\tlocalhost\n127\.0\.1\.1\tweb1\.example\.org web1\n::1/)
  assert.is(guestFile(disk, offset, '/root/.ssh/authorized_keys'), `${KEY1}\n${KEY2}\n`)
  assert.is(guestFile(disk, offset, '/etc/machine-id'), '')
  assert.is(guestFile(disk, offset, '/var/lib/dbus/machine-id'), null)
  assert.is(guestFile(disk, offset, '/etc/ssh/ssh_host_ed25519_key'), null)
  assert.match(guestFile(disk, offset, '/etc/systemd/system/simpleimage-ssh-hostkeys.service')!, /ExecStart=\/usr\/bin\/ssh-keygen -A/)
  assert.ok(guestExists(disk, offset, '/etc/systemd/system/ssh.service.wants/simpleimage-ssh-hostkeys.service'), 'the keygen unit is not wanted by ssh.service')
  assert.is(guestFile(disk, offset, '/etc/systemd/network/00-ganeti-nic0.network'), [
    "# written by instance-simpleimage's 50-network hook from Ganeti's NIC 0", '[Match]', 'MACAddress=aa:00:00:12:34:56', '', '[Network]',
    'Address=203.0.113.10/24', 'Gateway=203.0.113.1', 'Address=2001:db8:5:0:a800:ff:fe12:3456/64', 'Gateway=2001:db8:5::1',
    'DNS=192.0.2.53', 'DNS=2001:db8::53', 'Domains=example.org', ''].join('\n'))
  assert.match(guestFile(disk, offset, '/etc/systemd/network/00-ganeti-nic1.network')!, /MACAddress=aa:00:00:65:43:21\n\n\[Network\]\nDHCP=ipv4\n/)
  assert.is(guestFile(disk, offset, '/etc/resolv.conf'), 'nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.org\n')
  assert.match(r.output, /60-cloud-init-seed: the image has no cloud-init that reads a NoCloud seed: nothing to seed/)

  // a second run changes nothing that matters and duplicates nothing
  const again = rerunHooks(v, disk)
  assert.match(again, /partition 1 already reaches the end of disk 0/)
  assert.match(again, /0 key\(s\) added, 2 given/)
  assert.is(guestFile(disk, offset, '/root/.ssh/authorized_keys'), `${KEY1}\n${KEY2}\n`)
  assert.is((guestFile(disk, offset, '/etc/hosts')!.match(/^127\.0\.1\.1/gm) ?? []).length, 1)
  assert.is(guestFile(disk, offset, '/etc/hostname'), 'web1\n')
})

test('a cloud-init image: a NoCloud seed, and the hooks that cloud-init replaces step aside', async () => {
  const v = hooksVariant('hooks-cloud', { 'user-data': '#cloud-config\npackages: [htop]\n' })
  const { r, disk, offset } = await install('cloud', v)
  assert.is(r.code, 0, r.output)
  for (const h of ['30-hostname', '40-ssh-keys', '50-network']) assert.match(r.output, new RegExp(`${h}: the image has cloud-init, which`))
  const seed = '/var/lib/cloud/seed/nocloud'
  assert.is(guestFile(disk, offset, `${seed}/meta-data`), `instance-id: '8c0e3c1c-5f38-4a51-9b1e-2d4c6a8e0f11'\nlocal-hostname: 'web1.example.org'\npublic-keys:\n  - '${KEY1}'\n  - '${KEY2}'\n`)
  assert.is(guestFile(disk, offset, `${seed}/user-data`), '#cloud-config\npackages: [htop]\n')
  assert.match(guestFile(disk, offset, `${seed}/vendor-data`)!, /^#cloud-config\n.*\nmanage_etc_hosts: localhost\n$/)
  assert.is(guestFile(disk, offset, `${seed}/network-config`), [
    "# written by instance-simpleimage's 60-cloud-init-seed hook from Ganeti's NIC parameters", 'version: 2', 'ethernets:',
    '  ganeti0:', '    match: {macaddress: "aa:00:00:12:34:56"}', '    addresses: ["203.0.113.10/24", "2001:db8:5:0:a800:ff:fe12:3456/64"]',
    '    gateway4: "203.0.113.1"', '    gateway6: "2001:db8:5::1"',
    '    nameservers: {addresses: ["192.0.2.53", "2001:db8::53"], search: ["example.org"]}',
    '  ganeti1:', '    match: {macaddress: "aa:00:00:65:43:21"}', '    dhcp4: true',
    '    nameservers: {addresses: ["192.0.2.53", "2001:db8::53"], search: ["example.org"]}', ''].join('\n'))
  assert.is(guestFile(disk, offset, '/etc/machine-id'), '')
  assert.match(r.output, /SSH host keys removed \(1\); cloud-init makes new ones at first boot/)
  assert.is(guestFile(disk, offset, '/etc/systemd/system/simpleimage-ssh-hostkeys.service'), null)
  // user_data from the parameter wins over the variant's file
  const mine = join(ws.dir, 'my-user-data')
  writeFileSync(mine, '#cloud-config\nruncmd: [true]\n')
  rerunHooks(v, disk, { OSP_USER_DATA: mine })
  assert.is(guestFile(disk, offset, `${seed}/user-data`), '#cloud-config\nruncmd: [true]\n')
})

test('an msdos image with swap after the root, with ifupdown: the root is left its size, the NICs named by MAC', async () => {
  const { r, disk, offset, image } = await install('ifupdown', hooksVariant('hooks-ifupdown'))
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /10-grow-root: the root \(partition 1\) is not the last partition \(partition 2 follows it\): left as it is/)
  assert.is(partLine(disk, 1).replace(/^\S+/, ''), partLine(image, 1).replace(/^\S+/, ''))
  assert.match(guestFile(disk, offset, '/etc/systemd/network/00-ganeti-nic0.link')!, /\[Match\]\nMACAddress=aa:00:00:12:34:56\n\n\[Link\]\nName=gnt0\n/)
  assert.match(guestFile(disk, offset, '/etc/network/interfaces.d/ganeti')!, /auto gnt0\niface gnt0 inet static\n    address 203\.0\.113\.10\/24\n    gateway 203\.0\.113\.1\niface gnt0 inet6 static\n    address 2001:db8:5:0:a800:ff:fe12:3456\/64\n    gateway 2001:db8:5::1\n\nallow-hotplug gnt1\niface gnt1 inet dhcp\n/)
  assert.is(guestFile(disk, offset, '/etc/hostname'), 'web1\n')
  assert.match(guestFile(disk, offset, '/etc/network/interfaces')!, /\nsource \/etc\/network\/interfaces\.d\/\*\n$/)
})

test('a NIC with an IP but no Ganeti network gets DHCP, and says why', async () => {
  const v = hooksVariant('hooks-nonet')
  const { r, disk, offset } = await install('networkd', v, { NIC_COUNT: '1', NIC_0_NETWORK_SUBNET: '', NIC_0_NETWORK_GATEWAY: '', NIC_0_NETWORK_SUBNET6: '', NIC_0_NETWORK_GATEWAY6: '' })
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /50-network: NIC 0: its IP 203\.0\.113\.10 is on no Ganeti network \(no prefix, no gateway\): DHCP/)
  assert.match(guestFile(disk, offset, '/etc/systemd/network/00-ganeti-nic0.network')!, /\[Network\]\nDHCP=ipv4\n/)
  assert.is(guestFile(disk, offset, '/etc/systemd/network/00-ganeti-nic1.network'), null)
})

test('a filesystem on the whole disk (no partition table) is grown to the disk', async () => {
  const { r, disk, offset } = await install('bare', hooksVariant('hooks-bare'))
  assert.is(r.code, 0, r.output)
  assert.match(r.output, /10-grow-root: disk 0 has no partition table: its filesystem is the whole disk/)
  assert.match(fsStat(disk, offset), /Block count:\s+24576\b/) // 96 MiB of 4 KiB blocks
  assert.is(guestFile(disk, offset, '/etc/hostname'), 'web1\n')
})

test('an image without a Linux root: every hook says so in one line and the create succeeds', async () => {
  const { r } = await install('not-linux', hooksVariant('hooks-notlinux'))
  assert.is(r.code, 0, r.output)
  for (const h of ['10-grow-root', '20-fresh-identity', '30-hostname', '40-ssh-keys', '50-network', '60-cloud-init-seed']) {
    assert.match(r.output, new RegExp(`${h}: no Linux root filesystem found on disk 0 \\(an image this hook does not know\\): left as it is`))
  }
})

test('files of the guest that are symlinks out of it are never written through', async () => {
  const victim = join(ws.dir, 'victim-hostname')
  writeFileSync(victim, 'the node\'s own file\n')
  writeFileSync(join(ws.dir, 'victim-secret'), 'a secret of the node\n')
  mkdirSync(join(ws.dir, 'victim-root'), { recursive: true })
  const { r, disk, offset } = await install('hostile', hooksVariant('hooks-hostile'))
  assert.is(readFileSync(victim, 'utf8'), 'the node\'s own file\n', 'a file of the node was written')
  assert.is(guestFile(disk, offset, '/etc/hostname'), 'web1\n', 'the symlink itself is replaced by the file')
  assert.not.match(guestFile(disk, offset, '/etc/hosts')!, /secret/, 'a file of the node was read into the guest')
  assert.is(readFileSync(join(ws.dir, 'victim-secret'), 'utf8'), 'a secret of the node\n')
  assert.is(r.code, 1, r.output)
  assert.match(r.lastLine, /^create failed: hook 40-ssh-keys failed/)
  assert.match(r.output, /40-ssh-keys failed: \/root in the image is a symlink: refusing to write through it/)
  assert.not.ok(existsSync(join(ws.dir, 'victim-root', '.ssh')), 'a directory of the node was written')
})

test.run()
