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
#      an image catalog with a SHA512SUMS file, put in the cache with gnt-cluster command
#      simpleimage-cache prefetch (ssh to the node) and added by name;
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

. "$HERE/gnt.sh"
. "$HERE/machine.sh"
. "$HERE/checks.sh"
. "$HERE/catalog.sh"
. "$HERE/boot.sh"

# ---------------------------------------------------------------- finish (trap)
HTTP_PID=
WORKER_PIDS=()
finish() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  phase teardown "teardown (exit status so far: $rc)"
  if [ ${#WORKER_PIDS[@]} -gt 0 ]; then stop_workers "${WORKER_PIDS[@]}"; wait "${WORKER_PIDS[@]}" 2>/dev/null; fi
  if [ -n "$HTTP_PID" ] && kill -0 "$HTTP_PID" 2>/dev/null; then kill "$HTTP_PID"; wait "$HTTP_PID" 2>/dev/null; fi
  if [ -n "$BOOT_IMAGES_PID" ] && kill -0 "$BOOT_IMAGES_PID" 2>/dev/null; then kill -- "-$BOOT_IMAGES_PID" 2>/dev/null; wait "$BOOT_IMAGES_PID" 2>/dev/null; fi
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

# ================================================================ start
[ "$(id -u)" = 0 ] || { echo "FAIL: test/e2e/run.sh must run as root"; echo "0 passed, 1 failed"; exit 1; }
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
  pid=$(cat "$E2E_STATE/guest-images.pid" 2>/dev/null)
  [ -n "$pid" ] && grep -q 'build-images' "/proc/$pid/cmdline" 2>/dev/null && kill -- "-$pid"
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
! ip link show "$VM_NET_IF" >/dev/null 2>&1 || refuse "network interface $VM_NET_IF exists already (set VM_NET_IF=... to use another name)"
command -v node >/dev/null && command -v npm >/dev/null || refuse "node and npm are needed (to build the package)"
[ -d "$E2E_REPO/node_modules/esbuild" ] || refuse "node_modules is missing: run npm ci first"

mkdir -p "$E2E_STATE"
snapshot "$E2E_STATE"
for f in packages hosts links loops mounts users groups processes paths apt-archives root-ssh; do mv "$E2E_STATE/$f" "$E2E_STATE/$f.before"; done
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
if grep -q '"deb"' package.json; then DEB_CMD=(npm run --silent deb); else DEB_CMD=(node packaging/build-deb.mjs); fi
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
# the boot checks' guest images, built (or found in the cache) while the other checks run
boot_images_start

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


# ---------------------------------------------------------------- a second variant
# As an operator would: a line in variants.list, a config and the example hooks in hooks/.
EXAMPLES=/usr/share/doc/ganeti-instance-simpleimage/examples/hooks
HOOK_VARIANT=0
if [ -f "$EXAMPLES/30-hostname" ] && [ -f "$EXAMPLES/common.sh" ]; then
  cp -p "$CONF/variants.list" "$E2E_STATE/variants.list.orig"
  echo hook >>"$CONF/variants.list"
  mkdir -p "$CONF/hook/hooks"
  cp "$CONF/default/config" "$CONF/hook/config"
  cp -a "$EXAMPLES/." "$CONF/hook/hooks/"
  if g os-list-hook gnt-os list && grep -qx 'simpleimage+hook' "$OUT"; then
    pass "gnt-os list shows simpleimage+hook after adding 'hook' to $CONF/variants.list"
    HOOK_VARIANT=1
  else
    fail "simpleimage+hook is not listed by gnt-os list:"$'\n'"$(tail_of "$OUT" 4)"
  fi
else
  fail "the example hooks are not in the package ($EXAMPLES: $(ls "$EXAMPLES" 2>/dev/null | tr '\n' ' '))"
fi

T0=${TEMPLATE_LIST[0]}

# ---------------------------------------------------------------- run the workers
WORKERS=()
for t in "${TEMPLATE_LIST[@]}"; do
  WORKERS+=("matrix $t path" "matrix $t url; hook $t; lifecycle $t")
done
WORKERS+=("failures; catalog")
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

# ---------------------------------------------------------------- booted instances
phase boot "instances booted under Ganeti's KVM hypervisor from real Debian 12 images, checked on their serial consoles"
boot_checks

# ---------------------------------------------------------------- removing the package
phase remove "dpkg -r and dpkg --purge"
# undo the operator's changes of the hook test first: the config is untouched again
if [ -f "$E2E_STATE/variants.list.orig" ]; then cp -p "$E2E_STATE/variants.list.orig" "$CONF/variants.list"; fi
rm -rf "$CONF/hook" "$CONF/boot" "$CONF/default/images.ini"
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
