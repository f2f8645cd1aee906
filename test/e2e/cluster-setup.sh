#!/bin/bash
# cluster-setup.sh - a throw-away single-node Ganeti 3.0 cluster for the end-to-end suite
# (Debian 12, package "ganeti" 3.0.2, which run.sh installs first):
#  * hypervisor "fake": no VM is ever started
#  * disk templates: file; ext through the "loopdev" ExtStorage provider of this folder
#    (a sparse file per volume attached as /dev/loopN, so OS scripts get a real block
#    device); plain (LVM on a sparse loop file) only where the kernel has device-mapper
#  * network: an isolated bridge without ports ($NET_IF) with an RFC 5737 address;
#    no systemd needed (daemon-util starts the daemons)
#  * ssh as on a real cluster (for gnt-cluster command): Ganeti sets up
#    root's key at init; a private sshd listens on $NODE_IP only, on a free port that the
#    cluster's ssh_port node parameter names (a system sshd on port 22 is left alone)
# Everything it changes is undone by cluster-teardown.sh. Must run as root.
# Prints the enabled disk templates (comma-separated) as its last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
E2E_REPO=${E2E_REPO:-$(cd "$HERE/../.." && pwd)}
. "$HERE/lib.sh"
E2E_PHASE=${E2E_PHASE:-setup}
E2E_T0=${E2E_T0:-$SECONDS}
die() { e2e_log "ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
command -v gnt-cluster >/dev/null || die "gnt-cluster not found: install the ganeti package first"
mkdir -p "$E2E_STATE"

# ---------------------------------------------------------------- network
# A bridge without ports works where the "dummy" driver is missing, and Ganeti accepts it
# as the link of bridged NICs.
if ! ip link show "$NET_IF" >/dev/null 2>&1; then
  ip link add "$NET_IF" type bridge
fi
ip addr replace "$NODE_IP/24" dev "$NET_IF"
ip link set "$NET_IF" up

# ---------------------------------------------------------------- names
# Ganeti needs socket.getfqdn() of this host -> FQDN -> a non-loopback address we own.
# A "127.0.1.1 <hostname>" line wins over later lines, so such lines are hidden (tagged,
# restored by teardown). /etc/hosts is rewritten in place: it may be a bind mount.
HOST=$(hostname)
case "$HOST" in *.*) NODE_FQDN=$HOST; NODE_SHORT=${HOST%%.*} ;; *) NODE_FQDN=$HOST.$DOMAIN; NODE_SHORT=$HOST ;; esac
NODE_FQDN=$(echo "$NODE_FQDN" | tr 'A-Z' 'a-z')
[ -f "$E2E_STATE/hosts.orig" ] || cp -p /etc/hosts "$E2E_STATE/hosts.orig"
"$PYTHON" - "$HOST" "$NODE_SHORT" "$NODE_FQDN" "$NODE_IP" "$CLUSTER_NAME" "$CLUSTER_IP" "$HOSTS_BEGIN" "$HOSTS_END" "$HOSTS_TAG" <<'PY'
import sys
host, short, fqdn, node_ip, cname, cip, begin, end, tag = sys.argv[1:]
names = {host.lower(), short.lower(), fqdn.lower()}
out, skip = [], False
for l in open("/etc/hosts").read().splitlines():   # drop what an earlier run added
    if l.startswith(begin): skip = True; continue
    if l.startswith(end): skip = False; continue
    if skip or l.endswith(" " + tag + "added"): continue
    if l.startswith(tag + " "): l = l[len(tag) + 1:]
    out.append(l)
res = []
for l in out:                                       # hide loopback entries for our own name
    f = l.split("#")[0].split()
    if f and (f[0].startswith("127.") or f[0] == "::1") and names & {x.lower() for x in f[1:]}:
        res.append(tag + " " + l)
        rest = [x for x in f[1:] if x.lower() not in names]
        if rest:
            res.append(" ".join([f[0]] + rest) + " " + tag + "added")
    else:
        res.append(l)
block = [begin + " (test/e2e of ganeti-instance-simpleimage; removed by cluster-teardown.sh)",
         "%s %s %s" % (node_ip, fqdn, short) if short != fqdn else "%s %s" % (node_ip, fqdn),
         "%s %s %s" % (cip, cname, cname.split(".")[0]),
         end]
with open("/etc/hosts", "r+") as fh:
    fh.seek(0); fh.write("\n".join(block + res) + "\n"); fh.truncate()
PY
got=$("$PYTHON" -c 'import socket; n=socket.getfqdn(); print(n, socket.getaddrinfo(n, None, socket.AF_INET)[0][4][0])')
[ "$got" = "$NODE_FQDN $NODE_IP" ] || die "name resolution: getfqdn/getaddrinfo gave '$got', want '$NODE_FQDN $NODE_IP'"

# ---------------------------------------------------------------- storage
mkdir -p "$FILE_STORAGE_DIR"
touch /etc/ganeti/file-storage-paths
grep -qxF "$FILE_STORAGE_DIR" /etc/ganeti/file-storage-paths || echo "$FILE_STORAGE_DIR" >>/etc/ganeti/file-storage-paths
# Debian's package lacks this log directory; ext disks cannot be created without it
install -d -m 750 -o root -g gnt-daemons /var/log/ganeti/extstorage
# the ExtStorage provider, copied from this folder (the cluster must not depend on the repo)
rm -rf "$ES_DIR"; mkdir -p "$ES_DIR" "$ES_STORE"
cp "$HERE/loopdev/"{common.sh,create,attach,detach,remove,grow,setinfo,verify,parameters.list} "$ES_DIR/"
chmod 755 "$ES_DIR"/{create,attach,detach,remove,grow,setinfo,verify}
chmod 644 "$ES_DIR"/common.sh "$ES_DIR"/parameters.list
TEMPLATES=file,ext

VG_OPT=()
if [ "$WITH_LVM" = yes ] || { [ "$WITH_LVM" = auto ] && have_dm; }; then
  command -v vgcreate >/dev/null || die "LVM wanted but vgcreate is missing (apt-get install lvm2)"
  export LVM_SUPPRESS_FD_WARNINGS=1
  img=$E2E_STATE/$VG.img
  [ -e "$img" ] || truncate -s "$VG_SIZE" "$img"
  loop=$(losetup -j "$img" -O NAME -n | head -1)
  [ -n "$loop" ] || loop=$(losetup -f --show "$img")
  if ! vgs "$VG" >/dev/null 2>&1; then
    pvcreate -qq -y "$loop"; vgcreate -qq "$VG" "$loop"
  fi
  TEMPLATES=file,ext,plain
  VG_OPT=(--vg-name="$VG")
fi

# ---------------------------------------------------------------- ssh
# gnt-cluster command reaches every node, this one too, with ssh as root: the key Ganeti
# makes at init (it backs up and replaces root's id_rsa), checked against the host key in
# Ganeti's known_hosts. Root's ~/.ssh is kept as found: teardown puts this copy back.
ROOT_SSH=$(getent passwd root | cut -d: -f6)/.ssh
if [ ! -e "$E2E_STATE/root-ssh.saved" ]; then
  if [ -e "$ROOT_SSH" ]; then rm -rf "$E2E_STATE/root-ssh"; cp -a "$ROOT_SSH" "$E2E_STATE/root-ssh"; fi
  echo "$ROOT_SSH" >"$E2E_STATE/root-ssh.saved"
fi
[ -d /run/sshd ] || { mkdir -m 755 /run/sshd; touch "$E2E_STATE/created-run-sshd"; }   # sshd's privilege separation dir
if ! { [ -f "$E2E_STATE/sshd.pid" ] && kill -0 "$(cat "$E2E_STATE/sshd.pid")" 2>/dev/null; }; then
  SSH_PORT=$("$PYTHON" -c 'import socket, sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1]); s.close()' "$NODE_IP")
  # (the pid file's path names the suite on sshd's command line: the machine check finds it)
  /usr/sbin/sshd -o ListenAddress="$NODE_IP:$SSH_PORT" -o PidFile="$E2E_STATE/sshd.pid" -o PermitRootLogin=prohibit-password \
    -E "$E2E_LOGS/sshd.log" || die "sshd did not start on $NODE_IP:$SSH_PORT: $(tail -n 2 "$E2E_LOGS/sshd.log" 2>/dev/null)"
  echo "$SSH_PORT" >"$E2E_STATE/sshd.port"
fi
SSH_PORT=$(cat "$E2E_STATE/sshd.port")

# ---------------------------------------------------------------- cluster
if [ ! -f /var/lib/ganeti/config.data ]; then
  touch "$E2E_STATE/cluster-initialised"
  # ipolicy: the default one refuses disks under 1 GiB; the suite uses 32 MiB disks
  gclean gnt-cluster init \
    --enabled-hypervisors=fake \
    --enabled-disk-templates="$TEMPLATES" \
    --file-storage-dir="$FILE_STORAGE_DIR" \
    "${VG_OPT[@]}" \
    --master-netdev="$NET_IF" --master-netmask=32 \
    --nic-parameters=mode=bridged,link="$NET_IF" \
    --no-etc-hosts --node-parameters=ssh_port="$SSH_PORT" \
    --ipolicy-bounds-specs "min:cpu-count=1,disk-count=1,disk-size=4,memory-size=32,nic-count=0,spindle-use=1/max:cpu-count=8,disk-count=16,disk-size=1048576,memory-size=32768,nic-count=8,spindle-use=12" \
    --ipolicy-std-specs "cpu-count=1,disk-count=1,disk-size=64,memory-size=128,nic-count=1,spindle-use=1" \
    "$CLUSTER_NAME"
elif ! ganeti_daemons_ok; then
  # "daemon-util start-all" exits 2 if any daemon already runs: restart them all instead
  gclean /usr/lib/ganeti/daemon-util stop-all || true
  gclean /usr/lib/ganeti/daemon-util start-all
fi
for _ in $(seq 1 60); do timeout 20 gnt-cluster info >/dev/null 2>&1 && break; sleep 1; done
timeout 20 gnt-cluster info >/dev/null || die "the master daemon does not answer"
echo "$TEMPLATES"
