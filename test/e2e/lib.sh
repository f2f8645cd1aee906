# shellcheck shell=bash disable=SC2034
# Shared settings and helpers of the end-to-end suite (sourced by run.sh,
# cluster-setup.sh and cluster-teardown.sh). Every setting can be overridden from the
# environment; the defaults suit a throw-away Debian 12 machine or CI runner.

E2E_WORK=${E2E_WORK:-/var/tmp/simpleimage-e2e}      # images, HTTP root, state of the run
E2E_STATE=$E2E_WORK/state                             # what the run changed: read by teardown
E2E_LOGS=${E2E_LOGS:-$E2E_REPO/test/.tmp/e2e}         # logs (kept after the run, git-ignored)
E2E_LOCK=${E2E_LOCK:-/run/lock/simpleimage-e2e.pid}   # the pid of the run in progress

# the throw-away cluster: an isolated, port-less bridge with a documentation-range
# (RFC 5737) address; nothing is routed off the host
NET_IF=${NET_IF:-sie2e0}
NET_PREFIX=${NET_PREFIX:-192.0.2}
NODE_IP=${NODE_IP:-$NET_PREFIX.10}
CLUSTER_IP=${CLUSTER_IP:-$NET_PREFIX.100}
DOMAIN=${DOMAIN:-simpleimage-e2e.test}
VM_NET_IF=${VM_NET_IF:-sie2evm0}                       # the booted guests' bridge: no address, no uplink
CLUSTER_NAME=${CLUSTER_NAME:-cluster.$DOMAIN}
VG=${VG:-sie2evg}
VG_SIZE=${VG_SIZE:-24G}                               # sparse; Ganeti wants >= 20 GiB
WITH_LVM=${WITH_LVM:-auto}                            # auto: only with device-mapper

FILE_STORAGE_DIR=/srv/ganeti/file-storage
ES_NAME=loopdev
ES_DIR=/srv/ganeti/extstorage/$ES_NAME
ES_STORE=/srv/ganeti/loopdev-store
HOSTS_BEGIN="# BEGIN simpleimage-e2e"
HOSTS_END="# END simpleimage-e2e"
HOSTS_TAG="#simpleimage-e2e#"
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PYTHON=/usr/bin/python3                               # Debian's, whatever PATH says

# The Ganeti daemons inherit the environment of whoever starts them, and the OS import
# and export scripts inherit the daemons' environment: start everything Ganeti clean.
gclean() { env -i PATH=$CLEAN_PATH LANG=C.UTF-8 HOME=/root "$@"; }

e2e_log() { printf '[%s %4ds] %s\n' "${E2E_PHASE:-e2e}" "$((SECONDS - ${E2E_T0:-0}))" "$*"; }

have_dm() { grep -qw device-mapper /proc/misc 2>/dev/null || grep -qw device-mapper /proc/devices 2>/dev/null; }

# dpkg's two-letter status of a package ("ii" installed, "rc" config files left), or nothing
pkg_status() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | cut -c1-2; }

# Installed packages, one name a line (the set apt changes are measured against).
installed_packages() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1 == "ii" { print $2 }' | sort; }

# apt_install LOG ARGS...: apt-get install, recording every package it newly installed in
# $E2E_STATE/apt-installed.list so that teardown can purge exactly those.
apt_install() {
  local log=$1; shift
  local before; before=$(installed_packages)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 "$@" >>"$log" 2>&1
  local rc=$?
  comm -13 <(printf '%s\n' "$before") <(installed_packages) >>"$E2E_STATE/apt-installed.list"
  return $rc
}

# The daemons that must answer before Ganeti commands work.
ganeti_daemons_ok() {
  local d
  for d in ganeti-noded ganeti-confd ganeti-wconfd ganeti-luxid; do
    /usr/lib/ganeti/daemon-util check "$d" >/dev/null 2>&1 || return 1
  done
}
