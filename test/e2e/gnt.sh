# shellcheck shell=bash
# Results and Ganeti commands of the end-to-end suite (sourced by run.sh): PASS/FAIL
# lines, running a gnt-* command with its output logged and its WARNINGs counted, and
# reaching an instance's disk 0 on this node.

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
