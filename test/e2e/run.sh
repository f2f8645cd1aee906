#!/bin/bash
# test/e2e/run.sh - the end-to-end suite: this OS provider under a real Ganeti 3.0 cluster.
#
# As root on a Debian 12 machine (apt-get update done), it
#   1. installs the Debian package "ganeti" (--no-install-recommends) unless present,
#   2. sets up a throw-away single-node cluster (cluster-setup.sh: fake hypervisor, file
#      and ext templates, plain too where the kernel has device-mapper),
#   3. builds the .deb (npm run deb), runs lintian on it where installed, and installs it
#      with apt-get as an operator would,
#   4. checks with Ganeti: gnt-os diagnose/info; gnt-instance add for every image_type,
#      from a local path and from a URL on 127.0.0.1, on every template, disk 0 compared
#      with the image; a second variant with the example hook; reinstall with another
#      image; rename; gnt-backup export + import; rejected parameters; failing creates;
#      any WARNING printed by Ganeti is a failure,
#   5. removes the package (dpkg -r, dpkg --purge) and checks what is left,
# and on exit, also on failure or interruption, removes everything it created: instances,
# exports, the cluster, the daemons, the packages it installed, /etc/hosts lines, the
# bridge, loop devices and files; then checks the machine is as it found it.
# Prints PASS:/FAIL: lines and ends with "N passed, N failed"; exit 1 on any failure.
# Logs: test/.tmp/e2e/ (Ganeti command output, OS logs, setup/teardown).
#
#   SIMPLEIMAGE_E2E_KEEP_PACKAGES=1  do not purge the packages the run installed
#                                    (ganeti and its dependencies: faster reruns)
#   SIMPLEIMAGE_E2E_TEMPLATES=file   only these templates (comma-separated)
set -uo pipefail
umask 022
HERE=$(cd "$(dirname "$0")" && pwd)
E2E_REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
E2E_T0=$SECONDS
E2E_PHASE=e2e
export E2E_KEEP_PACKAGES=${SIMPLEIMAGE_E2E_KEEP_PACKAGES:-0}
GNT_TIMEOUT=${GNT_TIMEOUT:-300}
DISK_MIB=32
PASSED=0
FAILED=0

pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
phase() { E2E_PHASE=$1; shift; echo "== $* [$((SECONDS - E2E_T0))s]"; }
summary() { echo "$PASSED passed, $FAILED failed"; }
# the last non-empty lines of a file, indented, for a FAIL message's context
tail_of() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n "${2:-3}" | sed 's/^/    | /'; }

# ---------------------------------------------------------------- Ganeti commands
# g NAME CMD...: runs a Ganeti command with a clean environment and a time limit.
# Its stdout and stderr go to $E2E_LOGS/cmd/NAME.{out,err}; $OUT and $ERR name them.
# Every WARNING line Ganeti prints is a failure of its own (a failing import or rename
# script is only a warning, and the command still exits 0).
G_SEQ=0
g() {
  G_SEQ=$((G_SEQ + 1))
  local name; name=$(printf '%03d-%s' "$G_SEQ" "$1"); shift
  OUT=$E2E_LOGS/cmd/$name.out ERR=$E2E_LOGS/cmd/$name.err
  printf '$ %s\n' "$*" >"$E2E_LOGS/cmd/$name.cmd"
  local t=$SECONDS
  timeout "$GNT_TIMEOUT" env -i PATH=$CLEAN_PATH LANG=C.UTF-8 HOME=/root "$@" >"$OUT" 2>"$ERR"
  local rc=$?
  printf '# rc=%s, %ss\n' "$rc" "$((SECONDS - t))" >>"$E2E_LOGS/cmd/$name.cmd"
  [ "$rc" != 124 ] || fail "$name: timed out after ${GNT_TIMEOUT}s: $*"
  local w
  w=$(cat "$OUT" "$ERR" | grep -m 3 'WARNING')
  [ -z "$w" ] || fail "$name: Ganeti printed a WARNING: ${w//$'\n'/ | }"
  return "$rc"
}
# the last non-empty line of the command's error output (what the user reads last)
last_err_line() { grep -v '^[[:space:]]*$' "$ERR" | tail -n 1; }

# (not "list | grep -q": with pipefail, grep quitting early can fail the pipeline)
instance_exists() { local names; names=$(gclean gnt-instance list --no-headers -o name 2>/dev/null); grep -qxF "$1" <<<"$names"; }

# disk0 INSTANCE: activates its disks and sets DISK0 to disk 0's path on this node
disk0() {
  DISK0=
  g "activate-disks-${1%%.*}" gnt-instance activate-disks "$1" || return 1
  DISK0=$(awk -F: '$2 == "disk/0" { print $3 }' "$OUT" | tail -n 1)
  [ -n "$DISK0" ] && [ -e "$DISK0" ]
}
deactivate() { g "deactivate-disks-${1%%.*}" gnt-instance deactivate-disks "$1" >/dev/null; }

# same_as_image IMAGE_RAW DEVICE: the device starts with the image, byte for byte
same_as_image() { cmp -n "$(stat -c %s "$1")" "$1" "$2" >/dev/null 2>&1; }

remove_instance() {
  instance_exists "$1" || return 0
  g "remove-${1%%.*}" gnt-instance remove -f --shutdown-timeout=0 "$1" || fail "gnt-instance remove $1: $(last_err_line)"
}

disk_opts() {
  case $1 in
    ext) echo "--disk 0:size=${DISK_MIB}M,provider=$ES_NAME" ;;
    *) echo "--disk 0:size=${DISK_MIB}M" ;;
  esac
}

# ---------------------------------------------------------------- finish (trap)
# stop_workers PID...: the workers (checked to be ours), then the command each one was
# running (timeout passes the signal on to the Ganeti client)
stop_workers() {
  local pid kids=""
  for pid in "$@"; do is_run "$pid" && kids+=" $(pgrep -P "$pid" | tr '\n' ' ')"; done
  for pid in "$@"; do is_run "$pid" && kill "$pid" 2>/dev/null; done
  for pid in $kids; do kill "$pid" 2>/dev/null; done
  return 0
}

HTTP_PID=
WORKER_PIDS=()
finish() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  phase teardown "teardown (exit status so far: $rc)"
  if [ ${#WORKER_PIDS[@]} -gt 0 ]; then stop_workers "${WORKER_PIDS[@]}"; wait "${WORKER_PIDS[@]}" 2>/dev/null; fi
  if [ -n "$HTTP_PID" ] && kill -0 "$HTTP_PID" 2>/dev/null; then kill "$HTTP_PID"; wait "$HTTP_PID" 2>/dev/null; fi
  E2E_T0=$E2E_T0 E2E_PHASE=teardown bash "$HERE/cluster-teardown.sh" 2>&1 | tee -a "$E2E_LOGS/teardown.log" | grep -v '^\s*$' | sed 's/^/  /'
  cleanup_cache
  [ "$E2E_KEEP_PACKAGES" = 1 ] || cleanup_apt_archives
  check_machine_restored
  rm -rf "$E2E_WORK"
  [ -e "$E2E_WORK" ] && fail "could not remove $E2E_WORK"
  rm -f "$E2E_LOCK"
  echo "== done in $((SECONDS - E2E_T0))s; logs in ${E2E_LOGS#$E2E_REPO/}/"
  [ "$FAILED" -gt 0 ] || [ "$rc" = 0 ] || fail "the suite stopped early (exit status $rc)"
  summary
  [ "$FAILED" -eq 0 ] && exit 0
  exit 1
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
    rm -f "$CACHE_DIR/$key.image" "$CACHE_DIR/$key.lock" "$CACHE_DIR/$key".part-*
  done <"$E2E_STATE/urls" 2>/dev/null
}

# ---------------------------------------------------------------- as found / as left
SNAPSHOT_PATHS=(/srv /srv/ganeti /srv/ganeti/os /srv/ganeti/file-storage /etc/ganeti /etc/ganeti/file-storage-paths
  /etc/ganeti/instance-simpleimage /usr/share/ganeti/os/simpleimage /var/lib/ganeti /var/log/ganeti /run/ganeti
  /run/lock/ganeti-ssconf.lock /run/lock/lvm "$CACHE_DIR" "$E2E_WORK")
snapshot() { # DIR: what the checks after teardown compare with
  local d=$1 p
  installed_packages >"$d/packages"
  cp /etc/hosts "$d/hosts"
  ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | sort >"$d/links"
  # loop devices of the suite only (other tests on this machine may come and go meanwhile)
  losetup -n --raw -O NAME,BACK-FILE 2>/dev/null | grep -E " (/srv/ganeti|/var/lib/ganeti|/dev/|$E2E_WORK|$CACHE_DIR)" | sort >"$d/loops"
  awk '{ print $2 }' /proc/self/mounts | sort >"$d/mounts"
  getent passwd | cut -d: -f1 | sort >"$d/users"
  getent group | cut -d: -f1 | sort >"$d/groups"
  ps -eo comm= | grep -E '^ganeti-|^socat$' | sort >"$d/processes"
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
  for what in packages hosts links loops mounts users groups processes paths apt-archives; do
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
    pass "machine left as found (packages, apt's downloads, /etc/hosts, links, loop devices, mounts, users, daemons, paths)"
  else
    fail "machine not left as found (< before, > after):"$'\n'"$diffs"
  fi
}

# ================================================================ start
[ "$(id -u)" = 0 ] || { echo "FAIL: test/e2e/run.sh must run as root"; echo "0 passed, 1 failed"; exit 1; }
# one run at a time: $E2E_LOCK holds the pid of the run in progress (a pid file rather than
# flock: the lock must end with this shell, not live on in a daemon or worker it started)
is_run() { [ -n "$1" ] && grep -q 'run\.sh' "/proc/$1/cmdline" 2>/dev/null; }
mkdir -p "$(dirname "$E2E_LOCK")"
if ! (set -o noclobber; echo $$ >"$E2E_LOCK") 2>/dev/null; then
  other=$(cat "$E2E_LOCK" 2>/dev/null)
  if [ "$other" != $$ ] && is_run "$other"; then
    echo "FAIL: another run of the end-to-end suite is in progress (pid $other, $E2E_LOCK)"; echo "0 passed, 1 failed"; exit 1
  fi
  echo $$ >"$E2E_LOCK"
fi
rm -rf "$E2E_LOGS"; mkdir -p "$E2E_LOGS/cmd"

phase preflight "preflight"
# a run that was killed before its teardown left its records: finish its cleanup first
if [ -f "$E2E_STATE/active" ]; then
  echo "  an earlier run did not finish: cleaning up after it"
  # its workers and HTTP server, if they still run (checked by their command line)
  # shellcheck disable=SC2046
  stop_workers $(cat "$E2E_STATE/worker.pids" 2>/dev/null)
  pid=$(cat "$E2E_STATE/http.pid" 2>/dev/null)
  [ -n "$pid" ] && grep -q 'http\.server' "/proc/$pid/cmdline" 2>/dev/null && kill "$pid"
  sleep 1
  bash "$HERE/cluster-teardown.sh" >>"$E2E_LOGS/teardown-earlier-run.log" 2>&1
  cleanup_cache
  cleanup_apt_archives
fi
rm -rf "$E2E_WORK"
refuse() { echo "FAIL: $*"; echo "0 passed, 1 failed"; rm -f "$E2E_LOCK"; exit 1; }
[ ! -f /var/lib/ganeti/config.data ] || refuse "a Ganeti cluster is already configured on this machine (/var/lib/ganeti/config.data): the suite builds and destroys its own cluster and will not touch this one"
[[ $(pkg_status ganeti-instance-simpleimage) != [ir]? ]] \
  || refuse "ganeti-instance-simpleimage is installed already: the suite installs its own build (dpkg --purge ganeti-instance-simpleimage first)"
for d in /srv/ganeti/os /usr/local/lib/ganeti/os /usr/lib/ganeti/os; do
  [ ! -e "$d/simpleimage" ] || refuse "$d/simpleimage exists and would hide the packaged provider in /usr/share/ganeti/os: remove it first"
done
! ip link show "$NET_IF" >/dev/null 2>&1 || refuse "network interface $NET_IF exists already (set NET_IF=... to use another name)"
command -v node >/dev/null && command -v npm >/dev/null || refuse "node and npm are needed (to build the package)"
[ -d "$E2E_REPO/node_modules/esbuild" ] || refuse "node_modules is missing: run npm ci first"

mkdir -p "$E2E_STATE"
snapshot "$E2E_STATE"
for f in packages hosts links loops mounts users groups processes paths apt-archives; do mv "$E2E_STATE/$f" "$E2E_STATE/$f.before"; done
touch "$E2E_STATE/active" "$E2E_STATE/apt-installed.list" "$E2E_STATE/urls"
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- Ganeti
phase ganeti "Ganeti and the cluster"
# what the suite itself uses, where a minimal Debian lacks it (purged again afterwards);
# the provider's own tools come with its package's Depends and Recommends
declare -A TOOL_PKG=([sfdisk]=fdisk [mke2fs]=e2fsprogs [debugfs]=e2fsprogs [ip]=iproute2 [cmp]=diffutils [python3]=python3)
missing=()
for tool in "${!TOOL_PKG[@]}"; do
  [ -x "/usr/sbin/$tool" ] || [ -x "/usr/bin/$tool" ] || [ -x "/sbin/$tool" ] || [ -x "/bin/$tool" ] || missing+=("${TOOL_PKG[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if apt_install "$E2E_LOGS/apt-tools.log" --no-install-recommends "${missing[@]}"; then
    echo "  installed for the suite: ${missing[*]}"
  else
    fail "apt-get install ${missing[*]} failed:"$'\n'"$(tail_of "$E2E_LOGS/apt-tools.log" 5)"; exit 1
  fi
fi
if [ "$(pkg_status ganeti)" != ii ]; then
  t=$SECONDS
  if apt_install "$E2E_LOGS/apt-ganeti.log" --no-install-recommends ganeti; then
    pass "apt-get install ganeti ($(dpkg-query -W -f='${Version}' ganeti), $((SECONDS - t))s)"
  else
    fail "apt-get install ganeti failed (was apt-get update run?):"$'\n'"$(tail_of "$E2E_LOGS/apt-ganeti.log" 5)"
    exit 1
  fi
else
  echo "  ganeti $(dpkg-query -W -f='${Version}' ganeti) is installed already"
fi
t=$SECONDS
if TEMPLATES=$(E2E_T0=$E2E_T0 bash "$HERE/cluster-setup.sh" 2>"$E2E_LOGS/cluster-setup.err" | tee "$E2E_LOGS/cluster-setup.log" | tail -n 1) && [ -n "$TEMPLATES" ]; then
  pass "single-node cluster up in $((SECONDS - t))s, templates $TEMPLATES$(have_dm || echo ' (no device-mapper: no plain)')"
else
  fail "cluster setup failed:"$'\n'"$(tail_of "$E2E_LOGS/cluster-setup.err" 8)"
  exit 1
fi
[ -z "${SIMPLEIMAGE_E2E_TEMPLATES:-}" ] || TEMPLATES=$SIMPLEIMAGE_E2E_TEMPLATES
IFS=, read -r -a TEMPLATE_LIST <<<"$TEMPLATES"
NODE=$(gclean gnt-cluster getmaster)

# ---------------------------------------------------------------- the package
phase package "the Debian package"
cd "$E2E_REPO" || exit 1
VERSION=$(node -p 'require("./package.json").version')
DEB=$E2E_REPO/ganeti-instance-simpleimage_${VERSION}_all.deb
rm -f "$DEB"
if grep -q '"deb"' package.json; then DEB_CMD=(npm run --silent deb); else DEB_CMD=(node scripts/build-deb.mjs); fi
if "${DEB_CMD[@]}" >"$E2E_LOGS/deb-build.log" 2>&1 && [ -f "$DEB" ]; then
  pass "${DEB_CMD[*]}: built ${DEB#$E2E_REPO/}"
else
  fail "${DEB_CMD[*]} failed:"$'\n'"$(tail_of "$E2E_LOGS/deb-build.log" 5)"
  exit 1
fi
if command -v lintian >/dev/null; then
  mkdir -p "$E2E_WORK/tmp"   # (lintian leaves a temporary file behind in $TMPDIR)
  if TMPDIR=$E2E_WORK/tmp lintian --fail-on error,warning --display-info "$DEB" >"$E2E_LOGS/lintian.log" 2>&1; then
    tags=$(grep -c '^[EWIP]:' "$E2E_LOGS/lintian.log")
    pass "lintian: no errors or warnings ($tags info tags)"
  else
    fail "lintian:"$'\n'"$(grep '^[EW]:' "$E2E_LOGS/lintian.log" | head -n 10 | sed 's/^/    | /')"
  fi
else
  echo "  SKIP: lintian is not installed (apt-get install lintian)"
fi
t=$SECONDS
if apt_install "$E2E_LOGS/apt-deb.log" "$DEB"; then
  pass "apt-get install ./${DEB##*/} ($((SECONDS - t))s)"
else
  fail "apt-get install of the .deb failed:"$'\n'"$(tail_of "$E2E_LOGS/apt-deb.log" 5)"
  exit 1
fi
OS_DIR=/usr/share/ganeti/os/simpleimage
CONF=/etc/ganeti/instance-simpleimage
bad=""
for a in create export import rename verify; do
  [ -x "$OS_DIR/$a" ] && [ "$(head -n 1 "$OS_DIR/$a")" = "#!/usr/bin/node" ] || bad+=" $a"
done
[ -f "$CONF/default/config" ] && [ -d "$CONF/default/hooks" ] || bad+=" default/config+hooks"
[ "$(readlink -f "$OS_DIR/variants.list")" = "$CONF/variants.list" ] || bad+=" variants.list"
[[ $(dpkg-query -W -f='${Conffiles}\n' ganeti-instance-simpleimage) == *"$CONF/default/config "* ]] || bad+=" conffiles"
[ -z "$bad" ] && pass "installed layout: $OS_DIR (#!/usr/bin/node), $CONF/{variants.list,default/config,default/hooks} as conffiles" \
  || fail "installed layout wrong:$bad"

# ---------------------------------------------------------------- images and HTTP
phase images "test images and the HTTP server"
RUN_ID=r$(date +%s)$$
WWW=$E2E_WORK/www
IMG=$WWW/$RUN_ID
t=$SECONDS
if bash "$HERE/make-images.sh" "$IMG" >"$E2E_LOGS/make-images.log" 2>&1; then
  echo "  images in $IMG ($((SECONDS - t))s)"
else
  fail "making the test images failed:"$'\n'"$(tail_of "$E2E_LOGS/make-images.log" 5)"; exit 1
fi
"$PYTHON" -u -m http.server --bind 127.0.0.1 --directory "$WWW" 0 >"$E2E_LOGS/http.log" 2>&1 &
HTTP_PID=$!
echo "$HTTP_PID" >"$E2E_STATE/http.pid"
PORT=
for _ in $(seq 1 50); do
  PORT=$(sed -n 's/^Serving HTTP on 127\.0\.0\.1 port \([0-9]*\).*/\1/p' "$E2E_LOGS/http.log")
  [ -n "$PORT" ] && break; sleep 0.1
done
[ -n "$PORT" ] || { fail "the HTTP server did not start: $(tail_of "$E2E_LOGS/http.log" 3)"; exit 1; }
BASE=http://127.0.0.1:$PORT/$RUN_ID
CLOSED_PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
echo "  HTTP server on 127.0.0.1:$PORT (pid $HTTP_PID)"
url() { echo "$BASE/$1" >>"$E2E_STATE/urls"; echo "$BASE/$1"; }

# ---------------------------------------------------------------- OS
phase os "gnt-os"
if g os-diagnose gnt-os diagnose && grep -q '^OS: simpleimage \[global status: valid\]' "$OUT" \
  && grep -q "status: valid (path: $OS_DIR)" "$OUT"; then
  pass "gnt-os diagnose: simpleimage valid, from $OS_DIR"
else
  fail "gnt-os diagnose: simpleimage not valid:"$'\n'"$(grep -A3 simpleimage "$OUT" "$ERR" | head -n 6 | sed 's/^/    | /')"
fi
if g os-info gnt-os info simpleimage && grep -q -- '- image: .' "$OUT" && grep -q -- '- image_type: .*raw+xz' "$OUT"; then
  pass "gnt-os info: parameters image and image_type with descriptions"
else
  fail "gnt-os info does not list the parameters:"$'\n'"$(tail_of "$OUT" 6)"
fi

ADD=(gnt-instance add --no-start --no-ip-check --no-name-check -n "$NODE")

# add_check ID TEMPLATE IMAGE TYPE RAW [OS] [DESC]: gnt-instance add, then disk 0 compared
# with RAW (the uncompressed image). Leaves the instance in place; sets INST.
add_check() {
  local id=$1 t=$2 image=$3 type=$4 raw=$5 os=${6:-simpleimage+default} desc=${7:-}
  INST=$id.$DOMAIN
  desc=${desc:-"$t, image_type=$type, $( [[ $image == http* ]] && echo URL || echo path )"}
  # shellcheck disable=SC2046
  if ! g "add-$id" "${ADD[@]}" -o "$os" -t "$t" $(disk_opts "$t") -O "image=$image,image_type=$type" "$INST"; then
    fail "add ($desc):"$'\n'"$(tail_of "$ERR" 3)"
    return 1
  fi
  pass "add ($desc)"
  if [ -z "$raw" ]; then return 0; fi
  if disk0 "$INST" && same_as_image "$raw" "$DISK0"; then
    pass "  disk 0 = image over its $(($(stat -c %s "$raw") >> 20)) MiB ($desc)"
  else
    fail "  disk 0 ($DISK0) differs from ${raw##*/} ($desc): $(cmp "$raw" "$DISK0" 2>&1 | head -n 1)"
  fi
  # the disks stay active: gnt-instance remove deactivates them, others call deactivate
}

# ---------------------------------------------------------------- a second variant
# As an operator would: a line in variants.list, a config and the example hook in hooks/.
EXAMPLE_HOOK=/usr/share/doc/ganeti-instance-simpleimage/examples/hooks/hostname
HOOK_VARIANT=0
if [ -f "$EXAMPLE_HOOK" ]; then
  cp -p "$CONF/variants.list" "$E2E_STATE/variants.list.orig"
  echo hook >>"$CONF/variants.list"
  mkdir -p "$CONF/hook/hooks"
  cp "$CONF/default/config" "$CONF/hook/config"
  install -m 755 "$EXAMPLE_HOOK" "$CONF/hook/hooks/hostname"
  if g os-list-hook gnt-os list && grep -qx 'simpleimage+hook' "$OUT"; then
    pass "gnt-os list shows simpleimage+hook after adding 'hook' to $CONF/variants.list"
    HOOK_VARIANT=1
  else
    fail "simpleimage+hook is not listed by gnt-os list:"$'\n'"$(tail_of "$OUT" 4)"
  fi
else
  fail "the example hook $EXAMPLE_HOOK is not in the package (example-hooks/hostname)"
fi

# ---------------------------------------------------------------- per template
# The checks run in parallel workers (Ganeti runs several creates on one node at once, and
# so do operators); each worker's PASS/FAIL lines are printed when all are done.
IMAGE_TYPES=(raw raw+gz raw+bzip2 raw+bz2 raw+xz raw+zst qcow2 auto)
declare -A FILE_OF=([raw]=a.raw [raw+gz]=a.raw.gz [raw+bzip2]=a.raw.bz2 [raw+bz2]=a.raw.bz2 [raw+xz]=a.raw.xz [raw+zst]=a.raw.zst [qcow2]=a.qcow2)
declare -A AUTO_OF=([path]=a.qcow2 [url]=a.raw.xz)   # image_type=auto: told apart by magic bytes

# matrix T SRC: gnt-instance add for every image_type from SRC (path or url) on template T
matrix() {
  local t=$1 src=$2 type f image id
  echo "-- gnt-instance add: every image_type, image from a $src ($t)"
  for type in "${IMAGE_TYPES[@]}"; do
    if [ "$type" = auto ]; then f=${AUTO_OF[$src]}; else f=${FILE_OF[$type]}; fi
    if [ "$src" = path ]; then image=$IMG/$f; else image=$(url "$f"); fi
    id=e2e-$t-$src-${type//+/-}
    add_check "$id" "$t" "$image" "$type" "$IMG/a.raw" simpleimage+default "$t, image_type=$type, $src ${f}"
    remove_instance "$INST"   # (removing also deactivates the disks)
  done
}

# hook T: the example hook in the second variant, on template T
hook() {
  local t=$1 log want got left
  if [ "$HOOK_VARIANT" = 1 ]; then
    echo "-- the example hook in variant simpleimage+hook ($t)"
    if add_check "e2e-$t-hook" "$t" "$IMG/a.raw.xz" raw+xz "" simpleimage+hook "$t, simpleimage+hook, raw+xz"; then
      want=e2e-$t-hook
      log=$(ls -t /var/log/ganeti/os/add-simpleimage+hook-"$INST"-*.log 2>/dev/null | head -n 1)
      if grep -q 'running hook hostname' "$log" 2>/dev/null && grep -q "hostname hook: /etc/hostname is now $want" "$log"; then
        pass "  the hook ran under Ganeti ($t), its output is in the OS log ${log##*/}"
      else
        fail "  the hook's output is not in the OS log ($t):"$'\n'"$(tail_of "$log" 3)"
      fi
      if disk0 "$INST"; then
        got=$(debugfs -R 'cat /etc/hostname' "$DISK0?offset=1048576" 2>/dev/null)
        [ "$got" = "$want" ] && pass "  /etc/hostname on partition 1 of disk 0 is '$want' ($t)" \
          || fail "  /etc/hostname on partition 1 of disk 0 is '$got', not '$want' ($t)"
        # neither create nor the hook may leave a loop device on disk 0 (or on a loop device of it)
        left=$(losetup -n -O NAME -j "$DISK0" 2>/dev/null; for l in $(losetup -n -O NAME -j "$DISK0" 2>/dev/null); do losetup -n -O NAME -j "$l"; done)
        [ -z "$left" ] && pass "  no loop device left on disk 0 by create and the hook ($t)" \
          || fail "  loop devices left on disk 0 ($DISK0) after create ($t): $(echo $left)"
      else
        fail "  cannot activate the disks of $INST"
      fi
    fi
    remove_instance "$INST"
  fi
}

# lifecycle T: reinstall, rename, export and import on template T
lifecycle() {
  local t=$1 inst new imp dump src_disk log
  echo "-- reinstall, rename, gnt-backup export and import ($t)"
  add_check "e2e-$t-life" "$t" "$IMG/a.raw" raw "$IMG/a.raw" simpleimage+default "$t, lifecycle instance, raw path" || { remove_instance "$INST"; return; }
  inst=$INST
  deactivate "$inst"
  # onto a disk that holds the old instance: image b is mostly zeros where image a has
  # random data, so any byte of a left in place shows
  if g "reinstall-$t-gz" gnt-instance reinstall -f -O "image=$(url b.raw.gz),image_type=raw+gz" "$inst"; then
    log=$(ls -t /var/log/ganeti/os/add-simpleimage+default-"$inst"-*.log | head -n 1)
    grep -q 'INSTANCE_REINSTALL=1' "$log" && pass "reinstall ($t, a -> b, raw+gz URL): create ran with INSTANCE_REINSTALL=1" \
      || fail "reinstall ($t): the OS log does not show INSTANCE_REINSTALL=1:"$'\n'"$(tail_of "$log" 2)"
    if disk0 "$inst" && same_as_image "$IMG/b.raw" "$DISK0"; then pass "  disk 0 = the new image b exactly, over its 24 MiB ($t)"
    else fail "  disk 0 after reinstall differs from b.raw ($t): $(cmp "$IMG/b.raw" "$DISK0" 2>&1 | head -n 1)"; fi
    deactivate "$inst"
  else
    fail "reinstall ($t, raw+gz URL):"$'\n'"$(tail_of "$ERR" 3)"
  fi
  if g "reinstall-$t-qcow2" gnt-instance reinstall -f -O "image=$IMG/a.qcow2,image_type=qcow2" "$inst"; then
    if disk0 "$inst" && same_as_image "$IMG/a.raw" "$DISK0"; then pass "reinstall ($t, b -> a, qcow2 path): disk 0 = image a exactly"
    else fail "reinstall ($t, b -> a, qcow2): disk 0 differs from a.raw: $(cmp "$IMG/a.raw" "$DISK0" 2>&1 | head -n 1)"; fi
    deactivate "$inst"
  else
    fail "reinstall ($t, qcow2 path):"$'\n'"$(tail_of "$ERR" 3)"
  fi

  new=e2e-$t-renamed.$DOMAIN
  if g "rename-$t" gnt-instance rename -f --no-ip-check --no-name-check "$inst" "$new"; then
    log=$(ls -t /var/log/ganeti/os/rename-simpleimage+default-"$inst"-"$new"-*.log 2>/dev/null | head -n 1)
    [ -n "$log" ] && pass "rename ($t): the rename script ran: $(tail -n 1 "$log")" || fail "rename ($t): no OS rename log"
    inst=$new
  else
    fail "rename ($t):"$'\n'"$(tail_of "$ERR" 3)"
  fi

  if g "export-$t" gnt-backup export -n "$NODE" "$inst"; then
    dump=$(sed -n 's/^disk0_dump = //p' "/var/lib/ganeti/export/$inst/config.ini" 2>/dev/null)
    if [ -n "$dump" ] && disk0 "$inst" && cmp -s "/var/lib/ganeti/export/$inst/$dump" "$DISK0"; then
      pass "gnt-backup export ($t): the export holds disk 0 byte for byte ($DISK_MIB MiB)"
    else
      fail "gnt-backup export ($t): the export (${dump:-no disk0_dump}) differs from disk 0"
    fi
    deactivate "$inst"
    imp=e2e-$t-imported.$DOMAIN
    # shellcheck disable=SC2046
    if g "import-$t" gnt-backup import -n "$NODE" --src-node "$NODE" --src-dir "/var/lib/ganeti/export/$inst" \
      --no-ip-check --no-name-check --net 0:mac=generate -t "$t" $(disk_opts "$t") "$imp"; then
      pass "gnt-backup import ($t)"
      if disk0 "$inst" && src_disk=$DISK0 && disk0 "$imp" && cmp -s "$src_disk" "$DISK0"; then
        pass "  imported disk 0 = exported disk 0, byte for byte ($t)"
      else
        fail "  imported disk 0 differs from the exported one ($t): $(cmp "$src_disk" "$DISK0" 2>&1 | head -n 1)"
      fi
    else
      fail "gnt-backup import ($t):"$'\n'"$(tail_of "$ERR" 3)"
    fi
    remove_instance "$imp"
    g "export-remove-$t" gnt-backup remove "$inst" || fail "gnt-backup remove $inst: $(last_err_line)"
  else
    fail "gnt-backup export ($t):"$'\n'"$(tail_of "$ERR" 3)"
  fi
  remove_instance "$inst"
}

# ---------------------------------------------------------------- rejected by verify
T0=${TEMPLATE_LIST[0]}
# rejected ID IMAGE TYPE EXPECTED_TEXT DESC: add must fail before anything is created,
# with EXPECTED_TEXT (a fixed string) in what the user sees
rejected() {
  local id=$1 image=$2 type=$3 want=$4 desc=$5 inst=$1.$DOMAIN
  # shellcheck disable=SC2046
  if g "$id" "${ADD[@]}" -o simpleimage+default -t "$T0" $(disk_opts "$T0") -O "image=$image,image_type=$type" "$inst"; then
    fail "$desc: accepted"
  elif grep -qF -- "$want" "$ERR" && grep -q 'OS Parameters validation failed' "$ERR"; then
    pass "$desc: rejected by verify: $(grep -o 'verify failed: .*' "$ERR" | head -n 1 | cut -c1-150)"
  else
    fail "$desc: rejected, but the message lacks '$want':"$'\n'"$(tail_of "$ERR" 3)"
  fi
  if instance_exists "$inst"; then fail "$desc: the instance was created anyway"; remove_instance "$inst"; fi
}
# create_fails ID IMAGE TYPE PATTERN DESC: add must fail in create, and the last line of
# Ganeti's error output must be our "create failed: <what>; <what to do>" matching PATTERN
create_fails() {
  local id=$1 image=$2 type=$3 pattern=$4 desc=$5 inst=$1.$DOMAIN last
  # shellcheck disable=SC2046
  if g "$id" "${ADD[@]}" -o simpleimage+default -t "$T0" $(disk_opts "$T0") -O "image=$image,image_type=$type" "$inst"; then
    fail "$desc: create succeeded"
  else
    last=$(last_err_line)
    if [[ $last =~ ^create\ failed:\ .+\;\ .+ ]] && grep -qiE -- "$pattern" <<<"$last"; then
      pass "$desc: $last"
    else
      fail "$desc: the last line of Ganeti's error is not our one-line cause:"$'\n'"$(tail_of "$ERR" 4)"
    fi
  fi
  remove_instance "$inst"
}

# failures: what must be refused or fail, and how the user learns why (on template T0)
failures() {
  echo "-- bad parameters: rejected by verify, the cause shown to the user ($T0)"
  rejected e2e-bad-type "$IMG/a.raw" zip "unknown image_type 'zip'" "image_type=zip"
  rejected e2e-missing "$IMG/missing.raw" raw "$IMG/missing.raw does not exist" "missing image file"
  rejected e2e-device /dev/zero raw "refused because it lies under /dev" "image=/dev/zero"
  rejected e2e-unreachable "http://127.0.0.1:$CLOSED_PORT/a.raw" raw "127.0.0.1:$CLOSED_PORT" "unreachable URL (closed port)"
  rejected e2e-http404 "$(url missing.raw)" raw "404" "URL answering 404"
  # shellcheck disable=SC2046
  if g e2e-bad-param "${ADD[@]}" -o simpleimage+default -t "$T0" $(disk_opts "$T0") -O "image=$IMG/a.raw,image_type=raw,colour=blue" e2e-bad-param.$DOMAIN; then
    fail "an unknown OS parameter was accepted"
  else
    pass "an unknown OS parameter is rejected by Ganeti: $(last_err_line | cut -c1-120)"
  fi
  remove_instance e2e-bad-param.$DOMAIN

  echo "-- failing creates: the one-line cause is the last line the user sees ($T0)"
  create_fails e2e-trunc-xz "$IMG/a-trunc.raw.xz" raw+xz 'xz|corrupt|truncated' "truncated .xz"
  create_fails e2e-trunc-xz-url "$(url a-trunc.raw.xz)" raw+xz 'xz|corrupt|truncated' "truncated .xz from a URL"
  create_fails e2e-trunc-gz "$IMG/a-trunc.raw.gz" raw+gz 'gzip|corrupt|truncated|unexpected end' "truncated .gz"
  create_fails e2e-trunc-bz2 "$IMG/a-trunc.raw.bz2" raw+bzip2 'bzip2|corrupt|truncated' "truncated .bz2"
  create_fails e2e-trunc-zst "$IMG/a-trunc.raw.zst" raw+zst 'zstd|corrupt|truncated' "truncated .zst"
  create_fails e2e-trunc-qcow2 "$IMG/a-trunc.qcow2" qcow2 'qcow2|qemu-img|corrupt|truncated' "truncated qcow2"
  create_fails e2e-too-big "$IMG/big.raw" raw 'larger than disk 0' "image larger than disk 0"
  create_fails e2e-wrong-type "$IMG/a.raw" raw+xz 'xz|format|corrupt' "raw image declared raw+xz"
}

# ---------------------------------------------------------------- run the workers
WORKERS=()
for t in "${TEMPLATE_LIST[@]}"; do
  WORKERS+=("matrix $t path" "matrix $t url; hook $t; lifecycle $t")
done
WORKERS+=("failures")
phase checks "the checks, in ${#WORKERS[@]} parallel workers (their output follows when all are done)"
for i in "${!WORKERS[@]}"; do
  eval "${WORKERS[$i]}" >"$E2E_LOGS/worker-$i.out" 2>&1 &
  WORKER_PIDS+=($!)
done
echo "${WORKER_PIDS[*]}" >"$E2E_STATE/worker.pids"
wait "${WORKER_PIDS[@]}"
WORKER_PIDS=()
for i in "${!WORKERS[@]}"; do
  cat "$E2E_LOGS/worker-$i.out"
  PASSED=$((PASSED + $(grep -c '^PASS:' "$E2E_LOGS/worker-$i.out")))
  FAILED=$((FAILED + $(grep -c '^FAIL:' "$E2E_LOGS/worker-$i.out")))
done

# ---------------------------------------------------------------- removing the package
phase remove "dpkg -r and dpkg --purge"
# undo the operator's changes of the hook test first: the config is untouched again
if [ -f "$E2E_STATE/variants.list.orig" ]; then cp -p "$E2E_STATE/variants.list.orig" "$CONF/variants.list"; fi
rm -rf "$CONF/hook"
if dpkg -r ganeti-instance-simpleimage >"$E2E_LOGS/dpkg-r.log" 2>&1; then
  status=$(pkg_status ganeti-instance-simpleimage)
  if [ ! -e "$OS_DIR" ] && [ ! -e /usr/share/doc/ganeti-instance-simpleimage ] && [ -f "$CONF/default/config" ] \
    && [ -f "$CONF/variants.list" ] && [ "$status" = rc ]; then
    pass "dpkg -r: $OS_DIR and the docs removed, the conffiles in $CONF kept (status rc)"
  else
    fail "dpkg -r left the wrong files (status '$status'): $(find "$OS_DIR" "$CONF" 2>/dev/null | tr '\n' ' ')"
  fi
  if g os-diagnose-removed gnt-os diagnose && ! grep -q '^OS: simpleimage' "$OUT"; then
    pass "gnt-os diagnose no longer lists simpleimage"
  else
    fail "gnt-os diagnose still lists simpleimage after dpkg -r"
  fi
else
  fail "dpkg -r failed: $(tail_of "$E2E_LOGS/dpkg-r.log" 3)"
fi
if dpkg --purge ganeti-instance-simpleimage >"$E2E_LOGS/dpkg-purge.log" 2>&1; then
  if [ ! -e "$CONF" ] && ! dpkg-query -W ganeti-instance-simpleimage >/dev/null 2>&1; then
    pass "dpkg --purge: the untouched config and $CONF removed, the package forgotten"
  else
    fail "dpkg --purge left: $(find "$CONF" 2>/dev/null | tr '\n' ' ')"
  fi
else
  fail "dpkg --purge failed: $(tail_of "$E2E_LOGS/dpkg-purge.log" 3)"
fi
exit 0
