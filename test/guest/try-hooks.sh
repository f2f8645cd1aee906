#!/bin/bash
# try-hooks.sh - for hook authors: installs IMAGE (a raw test image of build-images.sh, or
# any raw image) with the hooks of HOOKS_DIR (default: example-hooks/) exactly as Ganeti
# runs create, onto a 3 GiB sparse disk with two NICs (a static address, and DHCP), then
# boots the result with QEMU (TCG; user-mode NICs that reach nothing) and prints what the
# guest reports on its serial console. As root, after npm run build.
#   bash test/guest/try-hooks.sh test/.tmp/guest-images/*/plain.raw [my-hooks/]
# Environment: SSH_KEYS (default: a test key), USER_DATA, INSTANCE_NAME, KEEP=1 (keep the
# work directory), BOOT=0 (install only).
set -euo pipefail
IMAGE=$(readlink -f "${1:?usage: try-hooks.sh IMAGE.raw [HOOKS_DIR]}")
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HOOKS=$(readlink -f "${2:-$REPO/example-hooks}")
W=$(mktemp -d /tmp/simpleimage-try.XXXXXX)
cleanup() { [ -n "${QPID:-}" ] && kill "$QPID" 2>/dev/null; [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"; }
trap cleanup EXIT
node -e "import('$REPO/packaging/install-os.mjs').then((m) => m.installOsDir('$W/os', process.execPath))"
mkdir -p "$W/etc/try/hooks"
cp -a "$HOOKS/." "$W/etc/try/hooks/"
echo "IMAGE_STORAGE=$W/cache" > "$W/etc/try/config"
truncate -s 3G "$W/disk0"
(cd "$W/os" && env -i PATH=/sbin:/bin:/usr/sbin:/usr/bin OS_API_VERSION=20 OS_NAME=simpleimage OS_VARIANT=try \
  INSTANCE_NAME="${INSTANCE_NAME:-try1.example.org}" INSTANCE_UUID="$(cat /proc/sys/kernel/random/uuid)" DEBUG_LEVEL=0 \
  DISK_COUNT=1 DISK_0_PATH="$W/disk0" DISK_0_SIZE=3072 DISK_0_BACKEND_TYPE=file:loop \
  NIC_COUNT=2 NIC_0_MAC=aa:00:00:00:00:01 NIC_0_IP=203.0.113.10 NIC_0_NETWORK_SUBNET=203.0.113.0/24 NIC_0_NETWORK_GATEWAY=203.0.113.1 \
  NIC_1_MAC=aa:00:00:00:00:02 \
  OSP_IMAGE="$IMAGE" OSP_IMAGE_TYPE=auto OSP_SSH_AUTHORIZED_KEYS="${SSH_KEYS:-ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk1ZDXeu1x9Gp3z1N0h3m0G5cqxvR5PV5w6PZ7sY5GK try@simpleimage}" \
  ${USER_DATA:+OSP_USER_DATA=$USER_DATA} OSP_DNS_NAMESERVERS=192.0.2.53 SIMPLEIMAGE_CONFIG_DIR="$W/etc" ./create)
[ "${BOOT:-1}" = 1 ] || exit 0
echo "== booting it (QEMU, TCG): the guest's serial console goes to $W/serial.log"
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 768 -smp 2 -display none -nodefaults -serial "file:$W/serial.log" \
  -drive "file=$W/disk0,format=raw,if=virtio" \
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,mac=aa:00:00:00:00:01 \
  -netdev user,id=n1,restrict=on -device virtio-net-pci,netdev=n1,mac=aa:00:00:00:00:02 &
QPID=$!
for _ in $(seq 1 150); do
  grep -q 'SIMPLEIMAGE-REPORT END' "$W/serial.log" 2>/dev/null && break
  kill -0 "$QPID" 2>/dev/null || { echo "QEMU stopped"; break; }
  sleep 2
done
if grep -q 'SIMPLEIMAGE-REPORT END' "$W/serial.log"; then
  awk '/REPORT BEGIN/ { r = ""; on = 1; next } /REPORT END/ { last = r; on = 0 } on { r = r $0 "\n" } END { printf "%s", last }' "$W/serial.log"
else
  echo "no report (an image without the test images' report service?); the console's end:"; tail -n 20 "$W/serial.log"
fi
