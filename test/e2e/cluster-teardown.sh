#!/bin/bash
# cluster-teardown.sh - undo what run.sh and cluster-setup.sh changed, from the records in
# $E2E_STATE: remove instances and exports, destroy the cluster, stop the daemons and the
# private sshd, put root's ~/.ssh back, remove the bridge, /etc/hosts lines, storage, loop
# devices and files, purge the packages the run installed (ganeti-instance-simpleimage,
# ganeti and their dependencies) and the directories they leave. Idempotent; does nothing
# to a cluster it did not create.
#   E2E_KEEP_PACKAGES=1  keep the installed packages (faster reruns on a dev machine)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
E2E_REPO=${E2E_REPO:-$(cd "$HERE/../.." && pwd)}
. "$HERE/lib.sh"
E2E_PHASE=${E2E_PHASE:-teardown}
E2E_T0=${E2E_T0:-$SECONDS}
[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
export LVM_SUPPRESS_FD_WARNINGS=1
existed_before() { grep -qxF "$1" "$E2E_STATE/paths.before" 2>/dev/null; }
mkdir -p "$E2E_LOGS"

# ---------------------------------------------------------------- cluster
if [ -f "$E2E_STATE/cluster-initialised" ] && [ -f /var/lib/ganeti/config.data ] && command -v gnt-cluster >/dev/null; then
  ganeti_daemons_ok || { gclean /usr/lib/ganeti/daemon-util stop-all; gclean /usr/lib/ganeti/daemon-util start-all; } >/dev/null 2>&1
  for _ in $(seq 1 30); do timeout 10 gnt-cluster info >/dev/null 2>&1 && break; sleep 1; done
  # jobs of an interrupted run may still be going: let them end first
  for job in $(timeout 60 gnt-job list --no-headers -o id,status 2>/dev/null | awk '$2 ~ /^(queued|waiting|running|canceling)$/ { print $1 }'); do
    e2e_log "waiting for job $job"
    timeout 300 gnt-job wait "$job" >/dev/null 2>&1 || timeout 300 gnt-job watch "$job" >/dev/null 2>&1
  done
  for inst in $(timeout 60 gnt-instance list --no-headers -o name 2>/dev/null); do
    e2e_log "removing instance $inst"
    timeout 120 gnt-instance remove -f --ignore-failures --shutdown-timeout=0 "$inst" >/dev/null 2>&1 || e2e_log "  (removal of $inst failed)"
  done
  for exp in $(timeout 60 gnt-backup list --no-headers 2>/dev/null | awk '{print $2}'); do
    timeout 60 gnt-backup remove "$exp" >/dev/null 2>&1 || true
  done
  e2e_log "destroying the cluster"
  timeout 120 env -i PATH=$CLEAN_PATH LANG=C.UTF-8 HOME=/root gnt-cluster destroy --yes-do-it >/dev/null 2>&1 || e2e_log "  (gnt-cluster destroy failed; cleaning up by hand)"
fi
if [ -f "$E2E_STATE/cluster-initialised" ]; then
  [ -x /usr/lib/ganeti/daemon-util ] && gclean /usr/lib/ganeti/daemon-util stop-all >/dev/null 2>&1
  # leftovers that would make the next "gnt-cluster init" refuse to run
  for d in /var/lib/ganeti /var/lib/ganeti/queue /var/lib/ganeti/queue/archive; do
    [ -d "$d" ] && find "$d" -maxdepth 1 -mindepth 1 ! -type d -delete
  done
  rm -rf /var/lib/ganeti/queue/archive/* /var/lib/ganeti/export/* "${FILE_STORAGE_DIR:?}"/* /var/run/ganeti/import-export/* 2>/dev/null
  rm -f "$E2E_STATE/cluster-initialised"
fi

# ---------------------------------------------------------------- ssh
# the private sshd (checked by its command line, which names the suite's pid file), and
# root's ~/.ssh as it was before Ganeti put its key there
pid=$(cat "$E2E_STATE/sshd.pid" 2>/dev/null)
if [ -n "$pid" ] && grep -q 'simpleimage-e2e' "/proc/$pid/cmdline" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$E2E_STATE/sshd.pid" "$E2E_STATE/sshd.port"
if [ -f "$E2E_STATE/root-ssh.saved" ]; then
  root_ssh=$(cat "$E2E_STATE/root-ssh.saved")
  if [ -n "$root_ssh" ] && [ "${root_ssh##*/}" = .ssh ]; then
    rm -rf "$root_ssh"
    [ ! -e "$E2E_STATE/root-ssh" ] || cp -a "$E2E_STATE/root-ssh" "$root_ssh"
  fi
  rm -rf "$E2E_STATE/root-ssh" "$E2E_STATE/root-ssh.saved"
fi
if [ -f "$E2E_STATE/created-run-sshd" ]; then rmdir /run/sshd 2>/dev/null; rm -f "$E2E_STATE/created-run-sshd"; fi

# ---------------------------------------------------------------- storage
if command -v vgs >/dev/null && vgs "$VG" >/dev/null 2>&1; then vgremove -qq -f "$VG" >/dev/null 2>&1; fi
if [ -e "$E2E_STATE/$VG.img" ]; then
  for d in $(losetup -j "$E2E_STATE/$VG.img" -O NAME -n 2>/dev/null); do pvremove -qq -y "$d" >/dev/null 2>&1; losetup -d "$d"; done
  rm -f "$E2E_STATE/$VG.img"
fi
if [ -d "$ES_STORE" ]; then
  for f in "$ES_STORE"/*.img; do
    [ -e "$f" ] || continue
    for d in $(losetup -j "$f" -O NAME -n 2>/dev/null); do losetup -d "$d"; done
  done
  rm -rf "$ES_STORE"
fi
rm -rf "$ES_DIR"
rmdir /srv/ganeti/extstorage 2>/dev/null
if [ -f /etc/ganeti/file-storage-paths ]; then
  sed -i "\\#^$FILE_STORAGE_DIR\$#d" /etc/ganeti/file-storage-paths
  if [ ! -s /etc/ganeti/file-storage-paths ] && ! existed_before /etc/ganeti/file-storage-paths; then rm -f /etc/ganeti/file-storage-paths; fi
fi
rm -rf /var/log/ganeti/extstorage
existed_before "$FILE_STORAGE_DIR" || rmdir "$FILE_STORAGE_DIR" 2>/dev/null
existed_before /srv/ganeti || rmdir /srv/ganeti 2>/dev/null
existed_before /srv || rmdir /srv 2>/dev/null

# ---------------------------------------------------------------- network, names
if ip link show "$NET_IF" >/dev/null 2>&1; then ip link del "$NET_IF"; fi
if ip link show "$VM_NET_IF" >/dev/null 2>&1; then ip link del "$VM_NET_IF"; fi
"$PYTHON" - "$HOSTS_BEGIN" "$HOSTS_END" "$HOSTS_TAG" <<'PY'
import sys
begin, end, tag = sys.argv[1:]
text = open("/etc/hosts").read()
out, skip = [], False
for l in text.splitlines():
    if l.startswith(begin): skip = True; continue
    if l.startswith(end): skip = False; continue
    if skip or l.endswith(" " + tag + "added"): continue
    if l.startswith(tag + " "): l = l[len(tag) + 1:]
    out.append(l)
new = "\n".join(out) + "\n"
if new != text:
    with open("/etc/hosts", "r+") as fh:
        fh.seek(0); fh.write(new); fh.truncate()
PY

# ---------------------------------------------------------------- logs
if [ -d /var/log/ganeti ]; then
  rm -rf "$E2E_LOGS/var-log-ganeti"; cp -a /var/log/ganeti "$E2E_LOGS/var-log-ganeti" 2>/dev/null
fi

# ---------------------------------------------------------------- packages
# our own package first, whatever happens to the others
if [[ $(pkg_status ganeti-instance-simpleimage) == [ir]? ]]; then
  e2e_log "purging ganeti-instance-simpleimage"
  dpkg --purge ganeti-instance-simpleimage >>"$E2E_LOGS/teardown-apt.log" 2>&1 || e2e_log "  (dpkg --purge failed, see $E2E_LOGS/teardown-apt.log)"
fi
# the operator-made variants and catalog of the suite, if a run stopped before removing them
rm -rf /etc/ganeti/instance-simpleimage/hook /etc/ganeti/instance-simpleimage/boot /etc/ganeti/instance-simpleimage/default/images.ini
existed_before /etc/ganeti/instance-simpleimage || rmdir /etc/ganeti/instance-simpleimage/default/hooks /etc/ganeti/instance-simpleimage/default /etc/ganeti/instance-simpleimage 2>/dev/null
if [ -s "$E2E_STATE/apt-installed.list" ] && [ "${E2E_KEEP_PACKAGES:-0}" != 1 ]; then
  mapfile -t pkgs < <(sort -u "$E2E_STATE/apt-installed.list" | comm -12 - <(installed_packages))
  if [ ${#pkgs[@]} -gt 0 ]; then
    e2e_log "purging the ${#pkgs[@]} packages the run installed"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o Dpkg::Use-Pty=0 "${pkgs[@]}" >>"$E2E_LOGS/teardown-apt.log" 2>&1 \
      || e2e_log "  (apt-get purge failed, see $E2E_LOGS/teardown-apt.log)"
  fi
  : >"$E2E_STATE/apt-installed.list"
fi
# what the ganeti packages leave behind after a purge (owned by their deleted users)
if [[ $(pkg_status ganeti) != [ir]? ]]; then
  for d in /var/lib/ganeti /var/log/ganeti /var/run/ganeti /run/ganeti /etc/ganeti /run/lock/ganeti-ssconf.lock; do
    existed_before "$d" || rm -rf "$d"
  done
fi
# lvm2 (a dependency of ganeti) leaves its lock directory
if [[ $(pkg_status lvm2) != [ir]? ]] && ! existed_before /run/lock/lvm; then rmdir /run/lock/lvm 2>/dev/null; fi
exit 0
