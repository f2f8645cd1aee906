#!/bin/bash
# The quick-start demo: installs what is needed, builds the provider, makes a small sample
# disk image (partition table + ext4 holding /etc/hostname, made without root privileges),
# serves it xz-compressed on 127.0.0.1 and runs the installed `create` the way Ganeti
# does onto sparse disk files twice its size: from the URL (cache miss), then again (cache
# hit), with the example hooks installed as an operator does (the root grown to the disk,
# the hostname set). Everything lives in a temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

bash test/setup-deps.sh
npm run --silent build >/dev/null

DEMO=$(mktemp -d /tmp/simpleimage-demo.XXXXXX)
SERVER_PID=""
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  for f in "$DEMO"/disk-*.img; do for d in $(losetup -j "$f" -O NAME -n 2>/dev/null); do losetup -d "$d"; done; done
  rm -rf "$DEMO"
}
trap cleanup EXIT

say "making a 64 MiB sample image (sfdisk + mke2fs -d, as user nobody)"
mkdir -p "$DEMO/www" "$DEMO/rootfs/etc"
echo "sample" > "$DEMO/rootfs/etc/hostname"
printf 'PRETTY_NAME="a sample image"\nID=debian\n' > "$DEMO/rootfs/etc/os-release"
chmod -R a+rX "$DEMO"; chown nobody "$DEMO/www"
setpriv --reuid=nobody --regid=nogroup --clear-groups bash -c '
  set -e; img=$1/www/sample.img
  truncate -s 64M "$img"
  printf "label: dos\nstart=2048, type=83\n" | sfdisk -q "$img"
  mke2fs -q -F -t ext4 -U 6d656d6f-2d73-6169-6d70-6c652d726f6f -d "$1/rootfs" -E offset=1048576 "$img" 63M
  xz -T0 -k "$img"' _ "$DEMO"
ls -l "$DEMO/www"

say "serving it on 127.0.0.1"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$DEMO/www" "$PORT" >"$DEMO/http.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT/sample.img.xz"

say "installing the OS provider into $DEMO/os/simpleimage (config in $DEMO/etc)"
npm run --silent install-os -- --os-dir "$DEMO/os/simpleimage" --config-dir "$DEMO/etc"
echo "IMAGE_STORAGE=$DEMO/cache" >> "$DEMO/etc/default/config"
cp -a example-hooks/. "$DEMO/etc/default/hooks/"   # the helper common.sh goes along

create() { # instance name, disk file: runs create as Ganeti 3.0 would (clean env, its PATH, cwd)
  truncate -s 128M "$2"
  (cd "$DEMO/os/simpleimage" && env -i PATH=/sbin:/bin:/usr/sbin:/usr/bin \
    OS_API_VERSION=20 OS_NAME=simpleimage OS_VARIANT=default INSTANCE_NAME="$1" DEBUG_LEVEL=0 \
    DISK_COUNT=1 DISK_0_PATH="$2" DISK_0_SIZE=128 DISK_0_BACKEND_TYPE=file:loop NIC_COUNT=0 \
    OSP_IMAGE="$URL" OSP_IMAGE_TYPE=raw+xz SIMPLEIMAGE_CONFIG_DIR="$DEMO/etc" ./create)
}
check() { # instance name, disk file
  # the image's filesystem, grown by 10-grow-root with its partition to the end of the disk
  sfdisk -d "$2" | grep -q 'start=        2048, size=      260096, type=83' || { echo "demo: FAILED: partition 1 of $2 does not span the disk: $(sfdisk -d "$2" | tail -n 1)"; exit 1; }
  debugfs -R stats "$2?offset=1048576" 2>/dev/null | grep -q 'Filesystem UUID: *6d656d6f-2d73-6169-6d70-6c652d726f6f' || { echo "demo: FAILED: $2 does not hold the image's filesystem"; exit 1; }
  local stats fs; stats=$(debugfs -R stats "$2?offset=1048576" 2>/dev/null)
  fs=$(( $(sed -n 's/^Block count: *//p' <<<"$stats") * $(sed -n 's/^Block size: *//p' <<<"$stats") ))
  [ "$fs" -gt $((120 << 20)) ] || { echo "demo: FAILED: the filesystem on $2 was not grown ($fs bytes)"; exit 1; }
  local host; host=$(debugfs -R 'cat /etc/hostname' "$2?offset=1048576" 2>/dev/null)
  [ "$host" = "${1%%.*}" ] || { echo "demo: FAILED: /etc/hostname is '$host', not '${1%%.*}'"; exit 1; }
  say "$2 holds the image's filesystem, grown with its partition to the disk's end ($((fs >> 20)) MiB), and /etc/hostname is '$host'"
}

say "create #1: web1.example.org from $URL (expect a cache miss)"
create web1.example.org "$DEMO/disk-web1.img"; check web1.example.org "$DEMO/disk-web1.img"
say "create #2: web2.example.org from the same URL (expect a cache hit)"
create web2.example.org "$DEMO/disk-web2.img" 2>&1 | tee "$DEMO/create2.log"; check web2.example.org "$DEMO/disk-web2.img"
grep -q "cache hit" "$DEMO/create2.log" || { echo "demo: FAILED: no cache hit on the second create"; exit 1; }
# the second create asked whether the image changed (If-Modified-Since) and got a 304
served=$(grep -c '"GET /sample.img.xz HTTP/1.1" 200' "$DEMO/http.log" || true)
unchanged=$(grep -c '"GET /sample.img.xz HTTP/1.1" 304' "$DEMO/http.log" || true)
[ "$served" = 1 ] || { echo "demo: FAILED: the image was downloaded $served times, not once"; exit 1; }
say "downloads served: $served; revalidations answered 304 Not Modified: $unchanged (two creates, one download)"
say "all good: this is what Ganeti does on 'gnt-instance add -o simpleimage+default -O image=$URL,image_type=raw+xz'"
