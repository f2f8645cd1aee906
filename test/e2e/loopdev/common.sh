# ExtStorage provider "loopdev" for the end-to-end suite: every volume is a sparse file in
# $STORE, attached as a loop device, so that the OS scripts get a real block device
# (a stand-in for LVM where the kernel has no device-mapper). Sourced by each script.
STORE=/srv/ganeti/loopdev-store
IMG="$STORE/${VOL_NAME:?VOL_NAME is not set}.img"
find_dev() { losetup -j "$IMG" -O NAME -n 2>/dev/null | head -1; }
