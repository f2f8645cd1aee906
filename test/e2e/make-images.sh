#!/bin/bash
# make-images.sh DIR - the test images of the end-to-end suite, small so that it stays fast:
#   a.raw  16 MiB: DOS partition table, one ext4 partition from 1 MiB holding
#          /etc/hostname "image-a", /marker and 6 MiB of random data (so that most of
#          the disk is non-zero)
#   b.raw  24 MiB: the same layout, /etc/hostname "image-b", almost empty (mostly zeros:
#          written over a disk holding a.raw, any byte left from a.raw shows)
# each also as .raw.gz, .raw.bz2, .raw.xz, .raw.zst and .qcow2; corrupt ones: a-trunc.* (the
# first half of a.raw.{gz,bz2,xz,zst} and a.qcow2) and big.raw (48 MiB, larger than the 32 MiB disks).
set -euo pipefail
out=${1:?usage: make-images.sh DIR}
mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# make_image NAME SIZE_MIB HOSTNAME RANDOM_MIB
make_image() {
  local name=$1 size=$2 host=$3 random=$4 tree=$tmp/$1.tree
  mkdir -p "$tree/etc"
  printf '%s\n' "$host" >"$tree/etc/hostname"
  printf 'ID=debian\n' >"$tree/etc/os-release"   # a Linux root, to the example hooks
  printf 'simpleimage e2e test image %s\n' "$name" >"$tree/marker"
  [ "$random" -eq 0 ] || head -c "$((random << 20))" /dev/urandom >"$tree/data.bin"
  truncate -s "$((size - 1))M" "$tmp/$name.part"
  mke2fs -q -F -t ext4 -L "$name" -d "$tree" "$tmp/$name.part"
  truncate -s "${size}M" "$out/$name.raw"
  printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$out/$name.raw"
  dd if="$tmp/$name.part" of="$out/$name.raw" bs=1M seek=1 conv=notrunc,sparse status=none
}
make_image a 16 image-a 6
make_image b 24 image-b 0

for n in a b; do
  gzip -n -c "$out/$n.raw" >"$out/$n.raw.gz"
  bzip2 -c "$out/$n.raw" >"$out/$n.raw.bz2"
  xz -T1 -c "$out/$n.raw" >"$out/$n.raw.xz"
  zstd -q -c "$out/$n.raw" >"$out/$n.raw.zst"
  qemu-img convert -q -f raw -O qcow2 "$out/$n.raw" "$out/$n.qcow2"
done
for ext in raw.gz raw.bz2 raw.xz raw.zst qcow2; do
  size=$(stat -c %s "$out/a.$ext")
  head -c "$((size / 2))" "$out/a.$ext" >"$out/a-trunc.$ext"
done
truncate -s 48M "$out/big.raw"
printf 'not a disk image, just big\n' | dd of="$out/big.raw" conv=notrunc status=none
