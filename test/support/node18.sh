#!/bin/bash
# Make Debian 12's own Node.js 18 available as $NODE18_DIR/node (default /opt/node18/node)
# WITHOUT touching the system node (NodeSource 20): the nodejs/libnode108 .debs are only
# unpacked with `dpkg -x`, never installed. Used to prove the built bundle runs on the
# oldest node we support (package.json engines: >=18.20).
# Usage (as root, after apt-get update):  bash test/support/node18.sh
# Prints the node version on success; idempotent.
set -euo pipefail

DIR=${NODE18_DIR:-/opt/node18}
die() { echo "node18.sh: $*" >&2; exit 1; }

if v=$("$DIR/node" -v 2>/dev/null) && [[ $v == v18.* ]]; then echo "$v"; exit 0; fi
[[ $(id -u) == 0 ]] || die "must run as root (needs apt-get install)"

# Runtime needs of Debian's libnode108, all verified necessary:
#  - libc-ares2: shared library dependency (libcares.so.2).
#  - node-acorn, node-cjs-module-lexer, node-undici: Debian "externalizes" these builtins
#    to /usr/share/nodejs/...; libnode aborts at startup ("Cannot load externalized
#    builtin") if any is missing, even for `node -e 1`.
# node-acorn depends on "nodejs:any", which the installed NodeSource nodejs satisfies.
# If apt would nevertheless install/replace/remove nodejs, stop rather than change the system node.
PKGS=(libc-ares2 node-acorn node-cjs-module-lexer node-undici)
sim=$(apt-get install -s --no-install-recommends "${PKGS[@]}" 2>&1) || die "apt-get cannot install ${PKGS[*]}: $sim"
if grep -Eq '^(Inst|Remv) (nodejs|libnode)' <<<"$sim"; then
  die "installing ${PKGS[*]} would install/replace the system nodejs (install NodeSource nodejs first); refusing:
$(grep -E '^(Inst|Remv)' <<<"$sim")"
fi
log=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PKGS[@]}" 2>&1) \
  || die "apt-get install ${PKGS[*]} failed:
$log"

# Highest nodejs version that comes from a debian.org archive (not NodeSource).
# (madison lists newest first; awk reads all input so pipefail never sees a SIGPIPE.)
ver=$(apt-cache madison nodejs | awk -F'|' '!v && $3 ~ /debian\.org/ { v = $2; gsub(/ /, "", v) } END { print v }')
[[ $ver == 18.* ]] || die "no Debian nodejs 18 in apt sources (apt-cache madison nodejs gave '${ver:-nothing}'); run apt-get update?"

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
log=$(cd "$tmp" && apt-get download -q "nodejs=$ver" "libnode108=$ver" 2>&1) \
  || die "apt-get download nodejs=$ver libnode108=$ver failed:
$log"
mkdir -p "$DIR" || die "cannot create $DIR"
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$DIR" || die "dpkg -x $deb failed"; done

lib=$(dirname "$(find "$DIR/usr/lib" -name 'libnode.so.108' -print -quit)")
[[ -f $lib/libnode.so.108 ]] || die "libnode.so.108 not found under $DIR/usr/lib"
# Wrapper written last, so a half-done run is not mistaken for success by the check above.
cat >"$DIR/node.tmp" <<WRAP
#!/bin/sh
# Debian nodejs $ver unpacked by test/support/node18.sh; libnode.so.108 is not on the default library path.
LD_LIBRARY_PATH="$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$DIR/usr/bin/node" "\$@"
WRAP
chmod 755 "$DIR/node.tmp"
mv "$DIR/node.tmp" "$DIR/node"

v=$("$DIR/node" -v 2>&1) && [[ $v == v18.* ]] || die "$DIR/node does not run: $v"
echo "$v"
