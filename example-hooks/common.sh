# shellcheck shell=bash
# common.sh - what the example hooks share. Sourced, never run: its name has a dot, so
# run-parts rules (and the provider) pass over it. Copy it along with the hooks:
#   cp -a example-hooks/. /etc/ganeti/instance-simpleimage/<variant>/hooks/
#
# A hook sources it first:   . "$(dirname "$0")/common.sh"
# and then has:
#   si_log MSG          a line in the OS log, "<hook>: MSG"
#   si_skip MSG         log MSG and exit 0: an image this hook does not understand
#   si_fail MSG         exit 1 with MSG as the last line: the create fails, this hook named
#   si_partitions       "NR START SECTORS TYPE" of each partition of disk 0 (none: no table)
#   si_map NR           maps partition NR of disk 0 on a loop device, named in $SI_MAPPED
#                       (released at the end)
#   si_find_root        mounts the Linux root filesystem of disk 0 on $SI_ROOT (nosuid,
#                       nodev, noexec), sets SI_ROOT_PART (0: the whole disk), SI_ROOT_DEV
#                       and SI_ROOT_FS; skips the hook if there is none
#   si_umount_root      unmounts it again
#   si_has_cloud_init   whether the image has cloud-init
#   si_write PATH MODE  stdin into PATH inside the guest, atomically
#   si_mkdir PATH MODE  a directory inside the guest
#   si_remove PATH...   files inside the guest (never directories)
#   si_read PATH        a file of the guest (nothing if missing or a symlink)
#   si_keys             the ssh_authorized_keys OS parameter, a key a line
#   si_words VALUE      a list parameter (dns_nameservers, dns_search), an item a line
#   si_nics             the NICs: index, MAC, addresses and gateways (see below)
#   si_network_v2 IND   the NICs as network config version 2 (netplan, cloud-init)
# Paths inside the guest are given from its root (/etc/hostname). They are never followed
# through a symlink: the image is someone else's, and /etc -> / on it would otherwise be
# this node's /etc. On exit (also on failure and SIGTERM) the root is unmounted before
# anything else, loop devices are released, and nothing is ever deleted recursively, so a
# filesystem that failed to unmount keeps every file.
set -euo pipefail
export LC_ALL=C

SI_HOOK=${0##*/}
SI_DEV=${TARGET_DISK_DEVICE:?TARGET_DISK_DEVICE is not set: hooks are run by the provider}
SI_ROOT=
SI_ROOT_PART=
SI_ROOT_DEV=
SI_ROOT_FS=
SI_LOOPS=()
SI_MAPPED=
SI_WORK=$(mktemp -d "${TMPDIR:-/tmp}/simpleimage-$SI_HOOK.XXXXXX")

si_log() { echo "$SI_HOOK: $*" >&2; }
si_skip() { si_log "$*"; exit 0; }
si_fail() { echo "$SI_HOOK failed: $*" >&2; exit 1; }

si_cleanup() {
  local rc=$? i
  trap - EXIT
  set +e
  if [ -n "$SI_ROOT" ] && mountpoint -q "$SI_ROOT"; then
    if ! umount "$SI_ROOT"; then
      echo "$SI_HOOK failed: could not unmount $SI_ROOT (left as it is, nothing deleted)" >&2
      exit 1
    fi
  fi
  for ((i = ${#SI_LOOPS[@]} - 1; i >= 0; i--)); do losetup -d "${SI_LOOPS[i]}" 2>/dev/null; done
  [ -z "$SI_ROOT" ] || rmdir "$SI_ROOT" 2>/dev/null
  rmdir "$SI_WORK" 2>/dev/null
  exit "$rc"
}
trap si_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# The partition table is read from disk 0 itself: a block device (LVM, DRBD) often has no
# partition devices, and this kernel may have no device-mapper to make them.
si_partitions() { partx -g -o NR,START,SECTORS,TYPE "$SI_DEV" 2>/dev/null || true; }

si_map() {
  local nr=$1 start= sectors=
  read -r start sectors < <(si_partitions | awk -v n="$nr" '$1 == n { print $2, $3 }') || true
  [ -n "$start" ] || si_fail "disk 0 has no partition $nr"
  SI_MAPPED=$(losetup -f --show -o $((start * 512)) --sizelimit $((sectors * 512)) "$SI_DEV") || si_fail "could not map partition $nr of disk 0"
  SI_LOOPS+=("$SI_MAPPED")
}

# mounts DEV on $SI_ROOT if it holds a Linux root filesystem; returns 1 (unmounted) if not.
# A filesystem that should mount but does not is remembered: if no root is found, that is
# the reason given, not "an image this hook does not know".
SI_MOUNT_ERROR=
si_try_root() {
  local dev=$1 fs opts=nosuid,nodev,noexec
  fs=$(blkid -p -o value -s TYPE "$dev" 2>/dev/null || true)
  case $fs in ext2|ext3|ext4|btrfs) ;; xfs) opts=$opts,nouuid ;; *) return 1 ;; esac
  [ -n "$SI_ROOT" ] || SI_ROOT=$(mktemp -d "$SI_WORK/root.XXXXXX")
  if ! mount -t "$fs" -o "$opts" "$dev" "$SI_ROOT" 2>"$SI_WORK/mount.err"; then
    SI_MOUNT_ERROR="a $fs filesystem on disk 0 could not be mounted: $(tail -n 1 "$SI_WORK/mount.err")"
    rm -f "$SI_WORK/mount.err"
    return 1
  fi
  rm -f "$SI_WORK/mount.err"
  if [ -f "$SI_ROOT/etc/os-release" ] || [ -f "$SI_ROOT/usr/lib/os-release" ]; then
    SI_ROOT_FS=$fs
    SI_ROOT_DEV=$dev
    return 0
  fi
  umount "$SI_ROOT"
  return 1
}

si_find_root() {
  local nr
  for nr in $(si_partitions | awk '{ print $1 }'); do
    si_map "$nr"
    if si_try_root "$SI_MAPPED"; then SI_ROOT_PART=$nr; return 0; fi
  done
  if [ -z "$(si_partitions)" ] && si_try_root "$SI_DEV"; then SI_ROOT_PART=0; return 0; fi
  [ -z "$SI_MOUNT_ERROR" ] || si_fail "$SI_MOUNT_ERROR"
  si_skip "no Linux root filesystem found on disk 0 (an image this hook does not know): left as it is"
}

si_umount_root() { umount "$SI_ROOT" || si_fail "could not unmount the root filesystem"; }

# Whether cloud-init will configure the image from a NoCloud seed at first boot: it is
# installed, not disabled, and its datasource_list (the last one set) has NoCloud.
si_has_cloud_init() {
  local cfg list
  [ -e "$SI_ROOT/usr/bin/cloud-init" ] && [ ! -e "$SI_ROOT/etc/cloud/cloud-init.disabled" ] || return 1
  cfg=$(cat "$SI_ROOT"/etc/cloud/cloud.cfg "$SI_ROOT"/etc/cloud/cloud.cfg.d/*.cfg 2>/dev/null || true)
  list=$(grep -E '^datasource_list:' <<<"$cfg" | tail -n 1)
  [ -z "$list" ] || grep -q NoCloud <<<"$list"
}
# ... and whether it will configure the network too (not "network: {config: disabled}")
si_cloud_init_networks() { ! cat "$SI_ROOT"/etc/cloud/cloud.cfg "$SI_ROOT"/etc/cloud/cloud.cfg.d/*.cfg 2>/dev/null | grep -Eq 'config:[[:space:]]*disabled'; }

# The host path of guest path P, every directory on the way checked to be one, not a link.
si_path() {
  local p=$1 dir=$SI_ROOT part
  local - IFS=/
  set -f
  # shellcheck disable=SC2086
  set -- ${p#/}
  while [ $# -gt 1 ]; do
    part=$1; shift
    dir=$dir/$part
    [ ! -L "$dir" ] || si_fail "${dir#"$SI_ROOT"} in the image is a symlink: refusing to write through it"
  done
  echo "$dir/$1"
}

si_mkdir() {
  local p=$1 mode=$2 sub="" part host
  local - IFS=/
  set -f
  for part in ${p#/}; do
    sub=$sub/$part
    host=$SI_ROOT$sub
    [ ! -L "$host" ] || si_fail "$sub in the image is a symlink: refusing to write through it"
    [ -d "$host" ] || mkdir -m "$mode" "$host" 2>/dev/null || si_fail "could not make the directory $sub in the image"
  done
}

# The contents of guest file P (nothing if it is missing, or a symlink: never the node's)
si_read() {
  local target
  target=$(si_path "$1")
  [ -f "$target" ] && [ ! -L "$target" ] && cat "$target" || true
}

si_write() {
  local target tmp
  target=$(si_path "$1")
  [ ! -d "$target" ] || si_fail "$1 in the image is a directory"
  tmp=$(mktemp "$(dirname "$target")/.simpleimage.XXXXXX")
  if ! cat > "$tmp" || ! chmod "$2" "$tmp" || ! mv -fT "$tmp" "$target"; then
    rm -f "$tmp"
    si_fail "could not write $1 in the image"
  fi
}

si_remove() {
  local p target
  for p in "$@"; do
    target=$(si_path "$p")
    [ ! -d "$target" ] || [ -L "$target" ] || continue
    rm -f "$target"
  done
}

# OS parameter lists: -O cannot carry commas, so items are separated by ';' (keys) and by
# ';' or blanks (names and addresses). The provider's verify checked them.
si_keys() { printf '%s\n' "${OSP_SSH_AUTHORIZED_KEYS:-}" | tr ';' '\n' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' | grep -v '^$' || true; }
si_words() { printf '%s\n' "$1" | tr '; \t\r' '\n\n\n\n' | grep -v '^$' || true; }

# si_nics: a line per NIC of the instance, from Ganeti's NIC_* variables:
#   INDEX MAC ADDRESS4/PREFIX|dhcp GATEWAY4|- ADDRESS6/64|- GATEWAY6|-
# A static IPv4 where NIC_N_IP is set and the NIC is on a Ganeti network (its prefix and
# gateway), DHCP otherwise (an IP without a network says neither: logged); IPv6 where the
# network has a /64: the EUI-64 address of the MAC, as SLAAC would choose it, and the
# network's gateway6. python3 is where Ganeti is. Fails the hook on bad values.
si_nics() {
  python3 - > "$SI_WORK/nics" 2> "$SI_WORK/nics.err" <<'PY' || si_fail "the NIC parameters cannot be read: $(tail -n 1 "$SI_WORK/nics.err")"
import ipaddress, os, sys
import ipaddress, os
for i in range(int(os.environ.get('NIC_COUNT') or 0)):
    get = lambda key: os.environ.get(f'NIC_{i}_{key}', '').strip()
    mac, ip = get('MAC').lower(), get('IP')
    net, gw, net6, gw6 = get('NETWORK_SUBNET'), get('NETWORK_GATEWAY'), get('NETWORK_SUBNET6'), get('NETWORK_GATEWAY6')
    if not mac:
        sys.exit(f'NIC {i} has no MAC')
    if ip and not net:
        print(f'NIC {i}: its IP {ip} is on no Ganeti network (no prefix, no gateway): DHCP', file=sys.stderr)
        ip = ''
    v4 = f'{ipaddress.ip_interface(ip + "/" + str(ipaddress.ip_network(net, strict=False).prefixlen))}' if ip else 'dhcp'
    v6 = '-'
    if net6 and ipaddress.ip_network(net6, strict=False).prefixlen == 64:
        b = bytes.fromhex(mac.replace(':', ''))
        iid = int.from_bytes(bytes([b[0] ^ 2]) + b[1:3] + b'\xff\xfe' + b[3:6], 'big')
        v6 = f'{ipaddress.IPv6Address(int(ipaddress.ip_network(net6, strict=False).network_address) | iid)}/64'
    print(i, mac, v4, gw if ip and gw else '-', v6, gw6 if v6 != '-' and gw6 else '-')
PY
  grep -v '^$' "$SI_WORK/nics.err" | while IFS= read -r line; do si_log "$line"; done
  cat "$SI_WORK/nics"
  rm -f "$SI_WORK/nics" "$SI_WORK/nics.err"
}

# a YAML flow list of its arguments, each "quoted" (verify checked them: no quotes inside)
si_yaml_list() { local out="" x; for x in "$@"; do out+="${out:+, }\"$x\""; done; echo "[$out]"; }

# si_network_v2 INDENT [ID_PREFIX] [cloud-init]: the NICs as network config version 2, each
# matched by its MAC; DNS from dns_nameservers and dns_search on each. Default routes as
# netplan writes them (routes: to: default), or, for cloud-init (22.4 cannot render
# "to: default" itself where the image has no netplan), as gateway4 / gateway6.
si_network_v2() {
  local ind=$1 id=${2:-ganeti} style=${3:-netplan} nics i mac v4 gw v6 gw6 addrs routes dns search
  mapfile -t dns < <(si_words "${OSP_DNS_NAMESERVERS:-}")
  mapfile -t search < <(si_words "${OSP_DNS_SEARCH:-}")
  nics=$(si_nics)
  echo "${ind}version: 2"
  [ -n "$nics" ] || { echo "${ind}ethernets: {}"; return; }
  echo "${ind}ethernets:"
  while read -r i mac v4 gw v6 gw6; do
    addrs=() routes=()
    echo "$ind  $id$i:"
    echo "$ind    match: {macaddress: \"$mac\"}"
    if [ "$v4" = dhcp ]; then echo "$ind    dhcp4: true"; else addrs+=("$v4"); fi
    [ "$v6" = - ] || addrs+=("$v6")
    [ ${#addrs[@]} -eq 0 ] || echo "$ind    addresses: $(si_yaml_list "${addrs[@]}")"
    if [ "$style" = cloud-init ]; then
      [ "$gw" = - ] || echo "$ind    gateway4: \"$gw\""
      [ "$gw6" = - ] || echo "$ind    gateway6: \"$gw6\""
    else
      [ "$gw" = - ] || routes+=("{to: default, via: \"$gw\"}")
      [ "$gw6" = - ] || routes+=("{to: default, via: \"$gw6\"}")
      if [ ${#routes[@]} -gt 0 ]; then echo "$ind    routes: [$(printf '%s, ' "${routes[@]}" | sed 's/, $//')]"; fi
    fi
    if [ ${#dns[@]} -gt 0 ] || [ ${#search[@]} -gt 0 ]; then
      echo "$ind    nameservers: {addresses: $(si_yaml_list "${dns[@]}"), search: $(si_yaml_list "${search[@]}")}"
    fi
  done <<<"$nics"
}
