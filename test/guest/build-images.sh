#!/bin/bash
# Builds the guest images of the boot checks from Debian 12's packages, with mmdebstrap
# against the mirror this machine's apt uses, and keeps them in CACHE_DIR/<key>, where
# <key> is the hash of this recipe (the files in test/guest): a changed recipe builds anew,
# an unchanged one costs nothing. Never committed (test/.tmp is git-ignored).
#   cloud.raw   shaped like debian-12-genericcloud: GPT p14 BIOS boot, p15 ESP, p1 ext4
#               root; GRUB, cloud-init (NoCloud), netplan + systemd-networkd, openssh-server
#   plain.raw   the same layout without cloud-init: openssh-server, systemd-networkd
#   msdos.raw   another layout: msdos table, p1 ext4 root, p2 swap after it; ifupdown
# All carry the test fixture simpleimage-report (files/), which prints the guest's state
# to its serial console; /etc/hostname and /etc/machine-id ship empty, as Debian's do, and
# every image holds the SSH host keys of the one build: what the hooks must take care of.
# usage: build-images.sh CACHE_DIR       (prints the directory that holds the images)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=$1
SIZE_MIB=${GUEST_IMAGE_MIB:-1536}
KEY=$( (cd "$HERE" && cat build-images.sh make-disk.sh grub-embed.mjs files/*; echo "$SIZE_MIB") | sha256sum | cut -c1-16)
OUT=$CACHE/$KEY
if [ -f "$OUT/done" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$CACHE"
# older recipes' images go: only directories named like a key
find "$CACHE" -mindepth 1 -maxdepth 1 -regextype egrep -regex '.*/[0-9a-f]{16}(\.tmp)?' -exec rm -rf {} +
W=$OUT.tmp
mkdir -p "$W"
log() { echo "build-images: $*" >&2; }

# the mirrors this machine's apt uses (deb822 or one-line sources)
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mapfile -t URIS < <(awk '/^URIs:/ { print $2 }' /etc/apt/sources.list.d/debian.sources)
else
  mapfile -t URIS < <(awk '$1 == "deb" { print $2 }' /etc/apt/sources.list | sort -u)
fi
MIRROR=${URIS[0]} SECURITY=${URIS[${#URIS[@]}-1]}
log "mirror $MIRROR, security $SECURITY"

BASE=linux-image-cloud-amd64,systemd-sysv,udev,openssh-server,iproute2,dbus,libpam-systemd,netbase,procps,e2fsprogs,kmod
# the tree as it is at that point, without what mmdebstrap mounted into it (exit 1 of tar
# means only that a file changed while it was read: /sys, say), and with an empty
# resolv.conf, as Debian's images have (the build's own is put back for the next apt run)
tarball() {
  echo "cp -a \"\$1/etc/resolv.conf\" '$W/resolv.conf' && : > \"\$1/etc/resolv.conf\" &&" \
    "{ tar -C \"\$1\" --one-file-system --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* --warning=no-file-changed --numeric-owner --xattrs --xattrs-include='*' -cf '$W/$1.tar' . || [ \$? = 1 ]; } &&" \
    "cp '$W/resolv.conf' \"\$1/etc/resolv.conf\""
}
in_chroot() { echo "DEBIAN_FRONTEND=noninteractive chroot \"\$1\" $*"; }
T0=$SECONDS
# one run, three trees: the plain one, then cloud-init added, then that taken out and
# ifupdown in its place
unshare --mount --propagation private \
  mmdebstrap --mode=root --variant=minbase --include="$BASE" \
    --aptopt='Apt::Install-Recommends "false"' \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
    --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service' \
    --customize-hook=': > "$1"/etc/hostname; : > "$1"/etc/machine-id; rm -f "$1"/var/lib/dbus/machine-id' \
    --customize-hook='chroot "$1" systemctl mask serial-getty@ttyS0.service' \
    --customize-hook="install -m 0755 '$HERE/files/simpleimage-report' \"\$1\"/usr/local/sbin/" \
    --customize-hook="install -m 0644 '$HERE/files/simpleimage-report.service' \"\$1\"/etc/systemd/system/" \
    --customize-hook='chroot "$1" systemctl enable simpleimage-report.service' \
    --customize-hook="$(tarball plain)" \
    --customize-hook="$(in_chroot apt-get install -y -q cloud-init netplan.io)" \
    --customize-hook='printf "datasource_list: [ NoCloud, None ]\nlocale: false\n" > "$1"/etc/cloud/cloud.cfg.d/90-simpleimage-test.cfg' \
    --customize-hook="$(tarball cloud)" \
    --customize-hook="$(in_chroot apt-get purge -y -q --autoremove cloud-init netplan.io)" \
    --customize-hook='rm -rf "$1"/etc/cloud "$1"/var/lib/cloud "$1"/etc/netplan' \
    --customize-hook="$(in_chroot apt-get install -y -q ifupdown)" \
    --customize-hook='chroot "$1" systemctl disable systemd-networkd.service' \
    --customize-hook="$(tarball msdos)" \
    bookworm "$W/rootfs.tar" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main" \
    > "$W/mmdebstrap.log" 2>&1 || { tail -n 30 "$W/mmdebstrap.log" >&2; log "mmdebstrap failed"; exit 1; }
log "root trees built in $((SECONDS - T0)) s"
bash "$HERE/make-disk.sh" gpt "$W/plain.tar" "$W/plain.raw" "$SIZE_MIB" >&2
bash "$HERE/make-disk.sh" gpt "$W/cloud.tar" "$W/cloud.raw" "$SIZE_MIB" >&2
bash "$HERE/make-disk.sh" msdos "$W/msdos.tar" "$W/msdos.raw" "$SIZE_MIB" >&2
rm -f "$W"/*.tar "$W/resolv.conf"
touch "$W/done"
mv "$W" "$OUT"
log "images ready in $((SECONDS - T0)) s: $OUT"
echo "$OUT"
