#!/bin/bash
# Turns a root tree (tar) into a bootable raw disk image, without loop devices or mounts:
#   gpt:   shaped like Debian's genericcloud image: p14 BIOS boot (sectors 2048-8191),
#          p15 ESP vfat (8192-262143), p1 ext4 root (262144 to the end)
#   msdos: p1 ext4 root from sector 2048, p2 swap (256 MiB) after it, at the end: the root
#          is not the last partition
# GRUB for BIOS, console on ttyS0. Root and swap by UUID in fstab, no x-systemd.growfs:
# growing the root is the hooks' job, and the checks must see that they did it.
# usage: make-disk.sh gpt|msdos ROOT.tar OUT.raw SIZE_MIB
set -euo pipefail
LAYOUT=$1 SRC=$2 OUT=$3 SIZE_MIB=$4
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/simpleimage-mkdisk.XXXXXX")
trap 'rm -rf "$T"' EXIT
ROOT=$T/root
mkdir "$ROOT"
tar -C "$ROOT" --numeric-owner --xattrs --xattrs-include='*' -xf "$SRC"

UUID=$(cat /proc/sys/kernel/random/uuid)
SWAP_UUID=$(cat /proc/sys/kernel/random/uuid)
KVER=$(basename "$(readlink -f "$ROOT/vmlinuz")" | sed 's/^vmlinuz-//')
SECTORS=$((SIZE_MIB * 2048))
rm -f "$OUT"
truncate -s "${SIZE_MIB}M" "$OUT"
if [ "$LAYOUT" = gpt ]; then
  ROOT_START=262144
  ROOT_SECTORS=$((SECTORS - ROOT_START - 34))
  sfdisk -q "$OUT" <<PT
label: gpt
${OUT}14 : start=2048, size=6144, type=21686148-6449-6E6F-744E-656564454649, name="bios"
${OUT}15 : start=8192, size=253952, type=C12A7328-F81F-11D2-BA4B-00A0C93EC3B8, name="efi"
${OUT}1 : start=$ROOT_START, size=$ROOT_SECTORS, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
PT
  mkfs.vfat -F 16 -h 8192 -n UEFI --offset 8192 "$OUT" $(( (262144 - 8192) / 2 )) >/dev/null
  GRUB_AT=(2048 6144) PART_MOD=part_gpt
  FSTAB_SWAP=
else
  ROOT_START=2048
  SWAP_SECTORS=$((256 * 2048))
  ROOT_SECTORS=$((SECTORS - ROOT_START - SWAP_SECTORS))
  sfdisk -q "$OUT" <<PT
label: dos
${OUT}1 : start=$ROOT_START, size=$ROOT_SECTORS, type=83
${OUT}2 : start=$((ROOT_START + ROOT_SECTORS)), size=$SWAP_SECTORS, type=82
PT
  truncate -s $((SWAP_SECTORS * 512)) "$T/swap"
  mkswap -q -U "$SWAP_UUID" "$T/swap"
  dd if="$T/swap" of="$OUT" bs=4096 count=1 seek=$(( (ROOT_START + ROOT_SECTORS) / 8 )) conv=notrunc status=none
  GRUB_AT=(1 2047) PART_MOD=part_msdos
  FSTAB_SWAP="UUID=$SWAP_UUID none swap sw 0 0"
fi

printf 'UUID=%s / ext4 rw,discard,errors=remount-ro 0 1\n%s\n' "$UUID" "$FSTAB_SWAP" > "$ROOT/etc/fstab"
mkdir -p "$ROOT/boot/grub/i386-pc" "$ROOT/boot/efi"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$ROOT/boot/grub/i386-pc/"
cat > "$ROOT/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
insmod $PART_MOD
insmod ext2
search --no-floppy --fs-uuid --set=root $UUID
menuentry 'Debian GNU/Linux ($KVER)' {
  linux /boot/vmlinuz-$KVER root=UUID=$UUID ro console=tty0 console=ttyS0,115200 consoleblank=0 quiet
  initrd /boot/initrd.img-$KVER
}
CFG
mke2fs -q -F -t ext4 -b 4096 -L root -U "$UUID" -d "$ROOT" -E offset=$((ROOT_START * 512)) "$OUT" $((ROOT_SECTORS / 8))

printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\n' "$UUID" > "$T/early.cfg"
grub-mkimage -O i386-pc -o "$T/core.img" -c "$T/early.cfg" -p /boot/grub biosdisk $PART_MOD ext2 search_fs_uuid
node "$HERE/grub-embed.mjs" "$OUT" /usr/lib/grub/i386-pc/boot.img "$T/core.img" "${GRUB_AT[@]}" >/dev/null
echo "$OUT: $LAYOUT, root UUID $UUID, kernel $KVER"
