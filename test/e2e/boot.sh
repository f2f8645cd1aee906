# shellcheck shell=bash
# The boot checks of the end-to-end suite (sourced by run.sh): instances installed by
# Ganeti from real Debian 12 images (test/guest/build-images.sh) with the packaged example
# hooks, started under Ganeti's KVM hypervisor (QEMU with TCG: KVM does not work on these
# machines), and checked from inside the running guest through its serial console, where
# the test images' report service prints their state. No traffic goes to a guest: its NICs
# are on a bridge with no address and no uplink.
#   boot_images_start   (early, in the background) builds or finds the images
#   boot_checks         the rest, one guest at a time (two cores)

GUEST_CACHE=$E2E_REPO/test/.tmp/guest-images
VM_NET=sie2e-vms
VM_SUBNET=203.0.113.0/24 VM_GATEWAY=203.0.113.1 VM_SUBNET6=2001:db8:5e2e::/64 VM_GATEWAY6=2001:db8:5e2e::1
VM_DNS="192.0.2.53 2001:db8::53" VM_SEARCH=simpleimage-e2e.test
BOOT_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk1ZDXeu1x9Gp3z1N0h3m0G5cqxvR5PV5w6PZ7sY5GK e2e@simpleimage'
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
SERIAL_DIR=/var/run/ganeti/kvm-hypervisor/ctrl
declare -A BOOT_TOOL_PKG=([qemu-system-x86_64]=qemu-system-x86 [mmdebstrap]=mmdebstrap [grub-mkimage]=grub2-common
  [mkfs.vfat]=dosfstools [socat]=socat [openssl]=openssl [xz]=xz-utils)
BOOT_IMAGES_PID=

boot_tools_missing() {
  local tool
  for tool in "${!BOOT_TOOL_PKG[@]}"; do command -v "$tool" >/dev/null || echo "${BOOT_TOOL_PKG[$tool]}"; done
  [ -f /usr/lib/grub/i386-pc/boot.img ] || echo grub-pc-bin
}

# The guest images (cached by their recipe), and from them what the checks install: the
# cloud image as multi-block raw+xz for the URL, the plain one as qcow2 for a path.
boot_images_start() {
  local missing
  mapfile -t missing < <(boot_tools_missing | sort -u)
  if [ ${#missing[@]} -gt 0 ] && ! apt_install "$E2E_LOGS/apt-boot.log" --no-install-recommends "${missing[@]}"; then
    echo "apt-get install ${missing[*]} failed" >"$E2E_WORK/guest-images.failed"; return
  fi
  # a process group of its own, so that finish() can stop mmdebstrap and all with it
  GUEST_CACHE=$GUEST_CACHE E2E_REPO=$E2E_REPO OUT=$E2E_WORK/guest-images.dir setsid bash -c '
    set -e
    dir=$(bash "$E2E_REPO/test/guest/build-images.sh" "$GUEST_CACHE")
    [ -f "$dir/cloud.raw.xz" ] || { xz -T2 -0 -c "$dir/cloud.raw" >"$dir/cloud.raw.xz.part"; mv "$dir/cloud.raw.xz.part" "$dir/cloud.raw.xz"; }
    [ -f "$dir/plain.qcow2" ] || { qemu-img convert -f raw -O qcow2 "$dir/plain.raw" "$dir/plain.qcow2.part"; mv "$dir/plain.qcow2.part" "$dir/plain.qcow2"; }
    echo "$dir" >"$OUT"' >"$E2E_LOGS/guest-images.log" 2>&1 &
  BOOT_IMAGES_PID=$!
  echo "$BOOT_IMAGES_PID" >"$E2E_STATE/guest-images.pid"
}

# the last whole report of a guest's serial log, a KEY=VALUE a line
last_report() {
  awk '/=== SIMPLEIMAGE-REPORT BEGIN/ { r = ""; on = 1; next }
       /=== SIMPLEIMAGE-REPORT END/ { if (on) last = r; on = 0; next }
       on { r = r $0 "\n" }
       END { printf "%s", last }' "$1" | tr -d '\r'
}
rv() { grep -o "$1=.*" <<<"$REPORT" | head -n 1 | cut -d= -f2-; }
rv_all() { grep -o "$1=.*" <<<"$REPORT" | cut -d= -f2-; }

# boot_add NAME IMAGE TYPE ADDRESS [NICS]: the instance, its disk larger than the image, NIC 0
# static on the suite's network, NIC 1 (unless NICS is 1) on DHCP, the hooks' parameters.
# (Nothing answers DHCP there: networkd and cloud-init go on asking in the background,
# ifupdown's DHCP would fail its unit, so the ifupdown image gets the static NIC only.)
boot_add() {
  local name=$1 image=$2 type=$3 addr=$4 nics=(--net "0:network=$VM_NET,ip=$4")
  [ "${5:-2}" = 1 ] || nics+=(--net "1:link=$VM_NET_IF")
  g "boot-add-${name%%.*}" "${ADD[@]}" -o simpleimage+boot -t file --disk 0:size=3g -H kvm -B memory=768M,vcpus=2 "${nics[@]}" \
    -O "image=$image,image_type=$type,ssh_authorized_keys=$BOOT_KEY,dns_nameservers=$VM_DNS,dns_search=$VM_SEARCH" "$name"
}

# boot_start NAME: starts it and waits for its report on the serial console: REPORT
boot_start() {
  local name=$1 log=$E2E_LOGS/serial-${1%%.*}.log t=$SECONDS pid
  REPORT=
  : >"$log"
  g "boot-start-${name%%.*}" gnt-instance start "$name" || { fail "gnt-instance start $name:"$'\n'"$(tail_of "$ERR" 3)"; return 1; }
  # the console socket takes its reader from the start on; QEMU drops what nobody reads
  for _ in $(seq 1 50); do [ -S "$SERIAL_DIR/$name.serial" ] && break; sleep 0.1; done
  socat -u "UNIX-CONNECT:$SERIAL_DIR/$name.serial" "OPEN:$log,append" 2>>"$E2E_LOGS/socat.err" &
  pid=$!
  while [ $((SECONDS - t)) -lt "$BOOT_TIMEOUT" ]; do
    REPORT=$(last_report "$log")
    [ -z "$REPORT" ] || break
    kill -0 "$pid" 2>/dev/null || { socat -u "UNIX-CONNECT:$SERIAL_DIR/$name.serial" "OPEN:$log,append" 2>>"$E2E_LOGS/socat.err" & pid=$!; }
    sleep 2
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if [ -z "$REPORT" ]; then
    fail "$name gave no report on its serial console within ${BOOT_TIMEOUT}s:"$'\n'"$(tail_of "$log" 5)"
    return 1
  fi
  pass "$name booted under Ganeti's KVM (QEMU, TCG): its report after $((SECONDS - t))s"
}

fingerprint() { awk '{ print $2 }' <<<"$1" | base64 -d | openssl dgst -sha256 -binary | base64 | tr -d '=\n' | sed 's/^/SHA256:/'; }

# guest_checks NAME IP KIND(cloud|plain|msdos): what the hooks promised, seen from inside
guest_checks() {
  local name=$1 ip=$2 kind=$3 short=${1%%.*} mac disk end part fs keyfp
  local got; got=$(rv hostname)
  [ "$got" = "$short" ] && pass "  $short: hostname is $got" || fail "  $short: hostname is '$got', not '$short'"
  got=$(rv hosts-127.0.1.1)
  [ "$got" = "127.0.1.1 $name $short" ] && pass "  $short: /etc/hosts has '$got'" || fail "  $short: the 127.0.1.1 line of /etc/hosts is '$got'"
  disk=$(rv disk-sectors) end=$(rv root-part-end) part=$(rv root-part-bytes) fs=$(rv root-fs-bytes)
  if [ "$kind" = msdos ]; then
    [ "$((disk - end))" -gt 1000000 ] && pass "  $short: the root partition keeps its size (swap follows it)" || fail "  $short: the root partition ends at $end of $disk sectors"
  elif [ -n "$disk" ] && [ "$((disk - end))" -le 2048 ] && [ "$((fs * 100 / part))" -ge 95 ]; then
    pass "  $short: the root partition ends at sector $end of $disk, its filesystem fills it ($((fs >> 20)) of $((part >> 20)) MiB): it spans disk 0"
  else
    fail "  $short: the root does not span disk 0 (partition end $end of $disk sectors, filesystem $fs of $part bytes)"
  fi
  mac=$(gclean gnt-instance list --no-headers -o nic.mac/0 "$name")
  got=$(rv_all nic | grep -i "$mac" || true)
  [[ " $got " == *" $ip/24 "* ]] && pass "  $short: $ip/24 is on the NIC with MAC $mac" || fail "  $short: the NIC with MAC $mac has '$got', not $ip/24"
  keyfp=$(fingerprint "$BOOT_KEY")
  got=$(rv_all authorized-keys)
  [[ $got == *"$keyfp"* ]] && pass "  $short: the key of ssh_authorized_keys is authorized ($(awk '{print $1}' <<<"$got" | head -n 1 | tr '\n' ' '))" \
    || fail "  $short: the key $keyfp is not authorized: '$got'"
  got=$(rv sshd)
  [ "$got" = active ] && pass "  $short: sshd runs" || fail "  $short: sshd is '$got'"
  got=$(rv_all host-key | wc -l)
  [ "$got" -ge 1 ] && pass "  $short: it has $got SSH host key(s) of its own making" || fail "  $short: it has no SSH host keys"
  if [ "$kind" = cloud ]; then
    got=$(rv cloud-init)
    [[ $got == *"status: done"* ]] && pass "  $short: cloud-init reports done" || fail "  $short: cloud-init says '$got'"
  else
    got=$(rv resolv)
    [[ $got == *"nameserver 192.0.2.53"* && $got == *"search $VM_SEARCH"* ]] && pass "  $short: resolv.conf from dns_nameservers and dns_search" || fail "  $short: resolv.conf is '$got'"
  fi
  got=$(rv failed-units)
  [ -z "${got// /}" ] && pass "  $short: no failed systemd units" || fail "  $short: failed units: $got"
}

boot_remove() { g "boot-remove-${1%%.*}" gnt-instance remove -f --shutdown-timeout=5 "$1" || fail "gnt-instance remove $1: $(last_err_line)"; }

boot_checks() {
  local dir a1=boot-a1.$DOMAIN b1=boot-b1.$DOMAIN b2=boot-b2.$DOMAIN c1=boot-c1.$DOMAIN id1 id2 keys1 keys2 url log inst addr t=$SECONDS
  wait "$BOOT_IMAGES_PID" 2>/dev/null
  dir=$(cat "$E2E_WORK/guest-images.dir" 2>/dev/null)
  if [ -z "$dir" ]; then fail "the guest images could not be built:"$'\n'"$(tail_of "$E2E_LOGS/guest-images.log" 8)$(cat "$E2E_WORK/guest-images.failed" 2>/dev/null)"; return; fi
  pass "guest images from Debian's packages: $(cd "$dir" && ls cloud.raw plain.raw msdos.raw | tr '\n' ' ')(recipe ${dir##*/})"

  # the cluster gets the KVM hypervisor, pointed at qemu-system-x86_64 (TCG: /usr/bin/kvm
  # would ask for KVM), a bridge for the guests' NICs and a network for their static IPs
  g boot-kvm gnt-cluster modify --enabled-hypervisors=fake,kvm \
    -H kvm:kvm_path=/usr/bin/qemu-system-x86_64,kernel_path=,initrd_path=,serial_console=true,vnc_bind_address=,boot_order=disk,disk_type=paravirtual,nic_type=paravirtual,cpu_type=max \
    || { fail "enabling the KVM hypervisor:"$'\n'"$(tail_of "$ERR" 3)"; return; }
  ip link add "$VM_NET_IF" type bridge && ip link set "$VM_NET_IF" up
  g boot-net gnt-network add --network="$VM_SUBNET" --gateway="$VM_GATEWAY" --network6="$VM_SUBNET6" --gateway6="$VM_GATEWAY6" "$VM_NET" \
    && g boot-net-connect gnt-network connect --nic-parameters="mode=bridged,link=$VM_NET_IF" "$VM_NET" default \
    || { fail "the guests' network:"$'\n'"$(tail_of "$ERR" 3)"; return; }
  # as an operator installs the hooks: one copy of the examples into a variant's hooks
  [ -f "$E2E_STATE/variants.list.orig" ] || cp -p "$CONF/variants.list" "$E2E_STATE/variants.list.orig"
  echo boot >>"$CONF/variants.list"
  mkdir -p "$CONF/boot/hooks"
  cp "$CONF/default/config" "$CONF/boot/config"
  cp -a /usr/share/doc/ganeti-instance-simpleimage/examples/hooks/. "$CONF/boot/hooks/"
  pass "variant simpleimage+boot with the packaged example hooks: $(cd "$CONF/boot/hooks" && ls | tr '\n' ' ')"
  ln -s "$dir/cloud.raw.xz" "$IMG/guest-cloud.raw.xz"
  url=$(url guest-cloud.raw.xz)

  echo "-- image a (cloud-init) as raw+xz from a URL"
  if boot_add "$a1" "$url" raw+xz 203.0.113.10; then
    pass "add $a1 from $url (raw+xz, $(($(stat -c %s "$dir/cloud.raw") >> 20)) MiB image onto 3 GiB)"
    log=$(ls -t /var/log/ganeti/os/add-simpleimage+boot-"$a1"-*.log | head -n 1)
    grep -q '60-cloud-init-seed: NoCloud seed written' "$log" && grep -q '50-network: the image has cloud-init' "$log" \
      && pass "  the hooks wrote a NoCloud seed, and stepped aside where cloud-init does their job" || fail "  the hooks' log lines are not in ${log##*/}:"$'\n'"$(tail_of "$log" 4)"
    boot_start "$a1" && guest_checks "$a1" 203.0.113.10 cloud
  else fail "add $a1:"$'\n'"$(tail_of "$ERR" 4)"; fi

  echo "-- image b (no cloud-init) as qcow2 from a path, twice: two identities"
  for inst in "$b1" "$b2"; do
    addr=203.0.113.$([ "$inst" = "$b1" ] && echo 11 || echo 12)
    if boot_add "$inst" "$dir/plain.qcow2" qcow2 "$addr"; then
      pass "add $inst from $dir/plain.qcow2 (qcow2 path)"
      boot_start "$inst" && guest_checks "$inst" "$addr" plain
      if [ "$inst" = "$b1" ]; then id1=$(rv machine-id); keys1=$(rv_all host-key | sort | tr '\n' ' '); else id2=$(rv machine-id); keys2=$(rv_all host-key | sort | tr '\n' ' '); fi
      boot_remove "$inst"
    else fail "add $inst:"$'\n'"$(tail_of "$ERR" 4)"; fi
  done
  if [ -n "${id1:-}" ] && [ -n "${id2:-}" ] && [ "$id1" != "$id2" ] && [ -n "${keys1// /}" ] && [ -n "${keys2// /}" ] && [ "$keys1" != "$keys2" ]; then
    pass "two instances of image b: machine-ids differ ($id1, $id2), and so do their SSH host keys"
  else
    fail "two instances of image b share their identity: machine-id '${id1:-}' / '${id2:-}', host keys '${keys1:-}' / '${keys2:-}'"
  fi

  echo "-- $a1 reinstalled with image b, started again"
  if instance_exists "$a1"; then
    g "boot-stop-a1" gnt-instance shutdown --timeout=5 "$a1" || fail "gnt-instance shutdown $a1: $(last_err_line)"
    if g "boot-reinstall-a1" gnt-instance reinstall -f \
      -O "image=$dir/plain.qcow2,image_type=qcow2,ssh_authorized_keys=$BOOT_KEY,dns_nameservers=$VM_DNS,dns_search=$VM_SEARCH" "$a1"; then
      pass "reinstall $a1 with image b (qcow2 path)"
      boot_start "$a1" && guest_checks "$a1" 203.0.113.10 plain
    else fail "reinstall $a1:"$'\n'"$(tail_of "$ERR" 4)"; fi
    boot_remove "$a1"
  fi

  echo "-- image c (msdos, swap after the root, ifupdown) from a path"
  if boot_add "$c1" "$dir/msdos.raw" raw 203.0.113.13 1; then
    log=$(ls -t /var/log/ganeti/os/add-simpleimage+boot-"$c1"-*.log | head -n 1)
    grep -q '10-grow-root: the root (partition 1) is not the last partition (partition 2 follows it): left as it is' "$log" \
      && pass "add $c1: 10-grow-root says why it left the root alone" || fail "add $c1: no word from 10-grow-root in ${log##*/}:"$'\n'"$(tail_of "$log" 4)"
    boot_start "$c1" && guest_checks "$c1" 203.0.113.13 msdos
    boot_remove "$c1"
  else fail "add $c1:"$'\n'"$(tail_of "$ERR" 4)"; fi
  echo "  (boot checks: $((SECONDS - t))s)"
}
