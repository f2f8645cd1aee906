# shellcheck shell=bash
# The machine before and after the end-to-end suite (sourced by run.sh): the workers and
# the download cache to clean up, and the snapshot that shows the run left the machine
# as it found it.

# one run at a time: $E2E_LOCK holds the pid of the run in progress (a pid file rather than
# flock: the lock must end with this shell, not live on in a daemon or worker it started)
is_run() { [ -n "$1" ] && grep -q 'run\.sh' "/proc/$1/cmdline" 2>/dev/null; }

# stop_workers PID...: the workers (checked to be ours), then the command each one was
# running (timeout passes the signal on to the Ganeti client)
stop_workers() {
  local pid kids=""
  for pid in "$@"; do is_run "$pid" && kids+=" $(pgrep -P "$pid" | tr '\n' ' ')"; done
  for pid in "$@"; do is_run "$pid" && kill "$pid" 2>/dev/null; done
  for pid in $kids; do kill "$pid" 2>/dev/null; done
  return 0
}

# The download cache of the provider (IMAGE_STORAGE, default /tmp/ganeti-instance-simpleimage):
# entries are named by the SHA-256 of the URL. Removed whole if the run created it.
CACHE_DIR=/tmp/ganeti-instance-simpleimage
cleanup_cache() {
  [ -d "$CACHE_DIR" ] || return 0
  if ! grep -qxF "$CACHE_DIR" "$E2E_STATE/paths.before" 2>/dev/null; then rm -rf "$CACHE_DIR"; return 0; fi
  local url key
  while read -r url; do
    key=$(printf '%s' "$url" | sha256sum | cut -d' ' -f1)
    rm -f "$CACHE_DIR/$key.image" "$CACHE_DIR/$key.meta" "$CACHE_DIR/$key.lock" "$CACHE_DIR/$key".part-*
  done <"$E2E_STATE/urls" 2>/dev/null
}

# ---------------------------------------------------------------- as found / as left
SNAPSHOT_PATHS=(/srv /srv/ganeti /srv/ganeti/os /srv/ganeti/file-storage /etc/ganeti /etc/ganeti/file-storage-paths
  /etc/ganeti/instance-simpleimage /usr/share/ganeti/os/simpleimage /var/lib/ganeti /var/log/ganeti /run/ganeti
  /run/lock/ganeti-ssconf.lock /run/lock/lvm /run/sshd "$CACHE_DIR" "$E2E_WORK")
ROOT_HOME=$(getent passwd root | cut -d: -f6)
snapshot() { # DIR: what the checks after teardown compare with
  local d=$1 p
  installed_packages >"$d/packages"
  cp /etc/hosts "$d/hosts"
  ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | sort >"$d/links"
  # loop devices of the suite only (other tests on this machine may come and go meanwhile)
  losetup -n --raw -O NAME,BACK-FILE 2>/dev/null | grep -E " (/srv/ganeti|/var/lib/ganeti|/dev/|$E2E_WORK|$CACHE_DIR)" | sort >"$d/loops"
  # (not network namespaces: the suite makes none, other tests on this machine do)
  awk '$2 !~ /^\/run\/netns(\/|$)/ { print $2 }' /proc/self/mounts | sort >"$d/mounts"
  getent passwd | cut -d: -f1 | sort >"$d/users"
  getent group | cut -d: -f1 | sort >"$d/groups"
  # (and the suite's sshd, told from a system one by its pid file in the suite's state dir)
  { ps -eo comm= | grep -E '^ganeti-|^socat$'; pgrep -f "sshd.*$E2E_STATE" >/dev/null && echo "sshd ($E2E_STATE)"; } | sort >"$d/processes"
  # root's ~/.ssh, where Ganeti puts its key: names and digests (never the keys themselves)
  [ ! -d "$ROOT_HOME/.ssh" ] || (cd "$ROOT_HOME/.ssh" && find . -type f -exec sha256sum {} + | sort -k 2) >"$d/root-ssh"
  [ -d "$ROOT_HOME/.ssh" ] || echo "(no $ROOT_HOME/.ssh)" >"$d/root-ssh"
  for p in "${SNAPSHOT_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done >"$d/paths"
  find /var/cache/apt/archives -maxdepth 1 -name '*.deb' 2>/dev/null | sort >"$d/apt-archives"
}
# the .deb files apt downloaded for the run
cleanup_apt_archives() {
  [ -f "$E2E_STATE/apt-archives.before" ] || return 0
  find /var/cache/apt/archives -maxdepth 1 -name '*.deb' 2>/dev/null | sort | comm -13 "$E2E_STATE/apt-archives.before" - | xargs -r rm -f
}
check_machine_restored() {
  local before=$E2E_STATE after diffs="" what
  [ -f "$before/paths.before" ] || return 0
  after=$(mktemp -d)
  snapshot "$after"
  for what in packages hosts links loops mounts users groups processes paths apt-archives root-ssh; do
    if [ "$E2E_KEEP_PACKAGES" = 1 ]; then
      case $what in packages|users|groups|paths|apt-archives) continue ;; esac
    fi
    local d
    # the work dir is still there (removed right after): it is not part of the comparison
    d=$(diff <(grep -vxF "$E2E_WORK" "$before/$what.before") <(grep -vxF "$E2E_WORK" "$after/$what") | grep '^[<>]' | head -n 5)
    [ -z "$d" ] || diffs+="  $what: ${d//$'\n'/; }"$'\n'
  done
  rm -rf "$after"
  if [ -z "$diffs" ]; then
    pass "machine left as found (packages, apt's downloads, /etc/hosts, links, loop devices, mounts, users, daemons, paths, root's ~/.ssh)"
  else
    fail "machine not left as found (< before, > after):"$'\n'"$diffs"
  fi
}
