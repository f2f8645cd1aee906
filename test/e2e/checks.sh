# shellcheck shell=bash
# The checks of the end-to-end suite (sourced by run.sh), each run by a worker: every
# image_type on a template, the example hook, the instance lifecycle, and the failures
# the user must see explained. They use run.sh's settings (ADD, IMG, T0, url, ...).

# add_check ID TEMPLATE IMAGE TYPE RAW [OS] [DESC]: gnt-instance add, then disk 0 compared
# with RAW (the uncompressed image). Leaves the instance in place; sets INST.
add_check() {
  local id=$1 t=$2 image=$3 type=$4 raw=$5 os=${6:-simpleimage+default} desc=${7:-}
  INST=$id.$DOMAIN
  desc=${desc:-"$t, image_type=$type, $( [[ $image == http* ]] && echo URL || echo path )"}
  # shellcheck disable=SC2046
  if ! g "add-$id" "${ADD[@]}" -o "$os" -t "$t" $(disk_opts "$t") -O "image=$image,image_type=$type" "$INST"; then
    fail "add ($desc):"$'\n'"$(tail_of "$ERR" 3)"
    return 1
  fi
  pass "add ($desc)"
  if [ -z "$raw" ]; then return 0; fi
  if disk0 "$INST" && same_as_image "$raw" "$DISK0"; then
    pass "  disk 0 = image over its $(($(stat -c %s "$raw") >> 20)) MiB ($desc)"
  else
    fail "  disk 0 ($DISK0) differs from ${raw##*/} ($desc): $(cmp "$raw" "$DISK0" 2>&1 | head -n 1)"
  fi
  # the disks stay active: gnt-instance remove deactivates them, others call deactivate
}

# ---------------------------------------------------------------- per template
# The checks run in parallel workers (Ganeti runs several creates on one node at once, and
# so do operators); each worker's PASS/FAIL lines are printed when all are done.
IMAGE_TYPES=(raw raw+gz raw+bzip2 raw+bz2 raw+xz raw+zst qcow2 auto)
declare -A FILE_OF=([raw]=a.raw [raw+gz]=a.raw.gz [raw+bzip2]=a.raw.bz2 [raw+bz2]=a.raw.bz2 [raw+xz]=a.raw.xz [raw+zst]=a.raw.zst [qcow2]=a.qcow2)
declare -A AUTO_OF=([path]=a.qcow2 [url]=a.raw.xz)   # image_type=auto: told apart by magic bytes

# matrix T SRC: gnt-instance add for every image_type from SRC (path or url) on template T
matrix() {
  local t=$1 src=$2 type f image id
  echo "-- gnt-instance add: every image_type, image from a $src ($t)"
  for type in "${IMAGE_TYPES[@]}"; do
    if [ "$type" = auto ]; then f=${AUTO_OF[$src]}; else f=${FILE_OF[$type]}; fi
    if [ "$src" = path ]; then image=$IMG/$f; else image=$(url "$f"); fi
    id=e2e-$t-$src-${type//+/-}
    add_check "$id" "$t" "$image" "$type" "$IMG/a.raw" simpleimage+default "$t, image_type=$type, $src ${f}"
    remove_instance "$INST"   # (removing also deactivates the disks)
  done
}

# hook T: the example hook in the second variant, on template T
hook() {
  local t=$1 log want got left
  if [ "$HOOK_VARIANT" = 1 ]; then
    echo "-- the example hooks in variant simpleimage+hook ($t)"
    if add_check "e2e-$t-hook" "$t" "$IMG/a.raw.xz" raw+xz "" simpleimage+hook "$t, simpleimage+hook, raw+xz"; then
      want=e2e-$t-hook
      log=$(ls -t /var/log/ganeti/os/add-simpleimage+hook-"$INST"-*.log 2>/dev/null | head -n 1)
      if grep -q 'running hook 30-hostname' "$log" 2>/dev/null && grep -q "30-hostname: hostname $want," "$log"; then
        pass "  the hook ran under Ganeti ($t), its output is in the OS log ${log##*/}"
      else
        fail "  the hook's output is not in the OS log ($t):"$'\n'"$(tail_of "$log" 3)"
      fi
      if disk0 "$INST"; then
        got=$(debugfs -R 'cat /etc/hostname' "$DISK0?offset=1048576" 2>/dev/null)
        [ "$got" = "$want" ] && pass "  /etc/hostname on partition 1 of disk 0 is '$want' ($t)" \
          || fail "  /etc/hostname on partition 1 of disk 0 is '$got', not '$want' ($t)"
        # neither create nor the hook may leave a loop device on disk 0 (or on a loop device of it)
        left=$(losetup -n -O NAME -j "$DISK0" 2>/dev/null; for l in $(losetup -n -O NAME -j "$DISK0" 2>/dev/null); do losetup -n -O NAME -j "$l"; done)
        [ -z "$left" ] && pass "  no loop device left on disk 0 by create and the hook ($t)" \
          || fail "  loop devices left on disk 0 ($DISK0) after create ($t): $(echo $left)"
      else
        fail "  cannot activate the disks of $INST"
      fi
    fi
    remove_instance "$INST"
  fi
}

# lifecycle T: reinstall, rename, export and import on template T
lifecycle() {
  local t=$1 inst new imp dump src_disk log
  echo "-- reinstall, rename, gnt-backup export and import ($t)"
  add_check "e2e-$t-life" "$t" "$IMG/a.raw" raw "$IMG/a.raw" simpleimage+default "$t, lifecycle instance, raw path" || { remove_instance "$INST"; return; }
  inst=$INST
  deactivate "$inst"
  # onto a disk that holds the old instance: image b is mostly zeros where image a has
  # random data, so any byte of a left in place shows
  if g "reinstall-$t-gz" gnt-instance reinstall -f -O "image=$(url b.raw.gz),image_type=raw+gz" "$inst"; then
    log=$(ls -t /var/log/ganeti/os/add-simpleimage+default-"$inst"-*.log | head -n 1)
    grep -q 'INSTANCE_REINSTALL=1' "$log" && pass "reinstall ($t, a -> b, raw+gz URL): create ran with INSTANCE_REINSTALL=1" \
      || fail "reinstall ($t): the OS log does not show INSTANCE_REINSTALL=1:"$'\n'"$(tail_of "$log" 2)"
    if disk0 "$inst" && same_as_image "$IMG/b.raw" "$DISK0"; then pass "  disk 0 = the new image b exactly, over its 24 MiB ($t)"
    else fail "  disk 0 after reinstall differs from b.raw ($t): $(cmp "$IMG/b.raw" "$DISK0" 2>&1 | head -n 1)"; fi
    deactivate "$inst"
  else
    fail "reinstall ($t, raw+gz URL):"$'\n'"$(tail_of "$ERR" 3)"
  fi
  if g "reinstall-$t-qcow2" gnt-instance reinstall -f -O "image=$IMG/a.qcow2,image_type=qcow2" "$inst"; then
    if disk0 "$inst" && same_as_image "$IMG/a.raw" "$DISK0"; then pass "reinstall ($t, b -> a, qcow2 path): disk 0 = image a exactly"
    else fail "reinstall ($t, b -> a, qcow2): disk 0 differs from a.raw: $(cmp "$IMG/a.raw" "$DISK0" 2>&1 | head -n 1)"; fi
    deactivate "$inst"
  else
    fail "reinstall ($t, qcow2 path):"$'\n'"$(tail_of "$ERR" 3)"
  fi

  new=e2e-$t-renamed.$DOMAIN
  if g "rename-$t" gnt-instance rename -f --no-ip-check --no-name-check "$inst" "$new"; then
    log=$(ls -t /var/log/ganeti/os/rename-simpleimage+default-"$inst"-"$new"-*.log 2>/dev/null | head -n 1)
    [ -n "$log" ] && pass "rename ($t): the rename script ran: $(tail -n 1 "$log")" || fail "rename ($t): no OS rename log"
    inst=$new
  else
    fail "rename ($t):"$'\n'"$(tail_of "$ERR" 3)"
  fi

  if g "export-$t" gnt-backup export -n "$NODE" "$inst"; then
    dump=$(sed -n 's/^disk0_dump = //p' "/var/lib/ganeti/export/$inst/config.ini" 2>/dev/null)
    if [ -n "$dump" ] && disk0 "$inst" && cmp -s "/var/lib/ganeti/export/$inst/$dump" "$DISK0"; then
      pass "gnt-backup export ($t): the export holds disk 0 byte for byte ($DISK_MIB MiB)"
    else
      fail "gnt-backup export ($t): the export (${dump:-no disk0_dump}) differs from disk 0"
    fi
    deactivate "$inst"
    imp=e2e-$t-imported.$DOMAIN
    # shellcheck disable=SC2046
    if g "import-$t" gnt-backup import -n "$NODE" --src-node "$NODE" --src-dir "/var/lib/ganeti/export/$inst" \
      --no-ip-check --no-name-check --net 0:mac=generate -t "$t" $(disk_opts "$t") "$imp"; then
      pass "gnt-backup import ($t)"
      if disk0 "$inst" && src_disk=$DISK0 && disk0 "$imp" && cmp -s "$src_disk" "$DISK0"; then
        pass "  imported disk 0 = exported disk 0, byte for byte ($t)"
      else
        fail "  imported disk 0 differs from the exported one ($t): $(cmp "$src_disk" "$DISK0" 2>&1 | head -n 1)"
      fi
    else
      fail "gnt-backup import ($t):"$'\n'"$(tail_of "$ERR" 3)"
    fi
    remove_instance "$imp"
    g "export-remove-$t" gnt-backup remove "$inst" || fail "gnt-backup remove $inst: $(last_err_line)"
  else
    fail "gnt-backup export ($t):"$'\n'"$(tail_of "$ERR" 3)"
  fi
  remove_instance "$inst"
}

# ---------------------------------------------------------------- rejected by verify
# rejected ID IMAGE TYPE EXPECTED_TEXT DESC: add must fail before anything is created,
# with EXPECTED_TEXT (a fixed string) in what the user sees
rejected() {
  local id=$1 image=$2 type=$3 want=$4 desc=$5 inst=$1.$DOMAIN
  # shellcheck disable=SC2046
  if g "$id" "${ADD[@]}" -o simpleimage+default -t "$T0" $(disk_opts "$T0") -O "image=$image,image_type=$type" "$inst"; then
    fail "$desc: accepted"
  elif grep -qF -- "$want" "$ERR" && grep -q 'OS Parameters validation failed' "$ERR"; then
    pass "$desc: rejected by verify: $(grep -o 'verify failed: .*' "$ERR" | head -n 1 | cut -c1-150)"
  else
    fail "$desc: rejected, but the message lacks '$want':"$'\n'"$(tail_of "$ERR" 3)"
  fi
  if instance_exists "$inst"; then fail "$desc: the instance was created anyway"; remove_instance "$inst"; fi
}
# create_fails ID IMAGE TYPE PATTERN DESC: add must fail in create, and the last line of
# Ganeti's error output must be our "create failed: <what>; <what to do>" matching PATTERN
create_fails() {
  local id=$1 image=$2 type=$3 pattern=$4 desc=$5 inst=$1.$DOMAIN last
  # shellcheck disable=SC2046
  if g "$id" "${ADD[@]}" -o simpleimage+default -t "$T0" $(disk_opts "$T0") -O "image=$image,image_type=$type" "$inst"; then
    fail "$desc: create succeeded"
  else
    last=$(last_err_line)
    if [[ $last =~ ^create\ failed:\ .+\;\ .+ ]] && grep -qiE -- "$pattern" <<<"$last"; then
      pass "$desc: $last"
    else
      fail "$desc: the last line of Ganeti's error is not our one-line cause:"$'\n'"$(tail_of "$ERR" 4)"
    fi
  fi
  remove_instance "$inst"
}

# failures: what must be refused or fail, and how the user learns why (on template T0)
failures() {
  echo "-- bad parameters: rejected by verify, the cause shown to the user ($T0)"
  rejected e2e-bad-type "$IMG/a.raw" zip "unknown image_type 'zip'" "image_type=zip"
  rejected e2e-missing "$IMG/missing.raw" raw "$IMG/missing.raw does not exist" "missing image file"
  rejected e2e-device /dev/zero raw "refused because it lies under /dev" "image=/dev/zero"
  rejected e2e-unreachable "http://127.0.0.1:$CLOSED_PORT/a.raw" raw "127.0.0.1:$CLOSED_PORT" "unreachable URL (closed port)"
  rejected e2e-http404 "$(url missing.raw)" raw "404" "URL answering 404"
  # shellcheck disable=SC2046
  if g e2e-bad-param "${ADD[@]}" -o simpleimage+default -t "$T0" $(disk_opts "$T0") -O "image=$IMG/a.raw,image_type=raw,colour=blue" e2e-bad-param.$DOMAIN; then
    fail "an unknown OS parameter was accepted"
  else
    pass "an unknown OS parameter is rejected by Ganeti: $(last_err_line | cut -c1-120)"
  fi
  remove_instance e2e-bad-param.$DOMAIN

  echo "-- failing creates: the one-line cause is the last line the user sees ($T0)"
  create_fails e2e-trunc-xz "$IMG/a-trunc.raw.xz" raw+xz 'xz|corrupt|truncated' "truncated .xz"
  create_fails e2e-trunc-xz-url "$(url a-trunc.raw.xz)" raw+xz 'xz|corrupt|truncated' "truncated .xz from a URL"
  create_fails e2e-trunc-gz "$IMG/a-trunc.raw.gz" raw+gz 'gzip|corrupt|truncated|unexpected end' "truncated .gz"
  create_fails e2e-trunc-bz2 "$IMG/a-trunc.raw.bz2" raw+bzip2 'bzip2|corrupt|truncated' "truncated .bz2"
  create_fails e2e-trunc-zst "$IMG/a-trunc.raw.zst" raw+zst 'zstd|corrupt|truncated' "truncated .zst"
  create_fails e2e-trunc-qcow2 "$IMG/a-trunc.qcow2" qcow2 'qcow2|qemu-img|corrupt|truncated' "truncated qcow2"
  create_fails e2e-too-big "$IMG/big.raw" raw 'larger than disk 0' "image larger than disk 0"
  create_fails e2e-wrong-type "$IMG/a.raw" raw+xz 'xz|format|corrupt' "raw image declared raw+xz"
}
