# shellcheck shell=bash
# The image catalog and the cache command under Ganeti (sourced by run.sh, run by a
# worker): an operator publishes an image with a SHA512SUMS file beside it (as Debian
# does), names it in the variant's images.ini, puts it on every node with
# `gnt-cluster command simpleimage-cache prefetch NAME` (ssh to each node, this one too,
# with the keys Ganeti set up), then adds an instance by that name: the origin serves the
# image once. A catalog entry whose SUMS file does not match the image's bytes fails the add.
# Uses run.sh's settings (ADD, IMG, T0, CONF, NODE, PORT, url, ...).

CATALOG_NAME=e2e-debian
CATALOG_BAD=e2e-bad-sums

# catalog_publish: the served directories, their SUMS files and images.ini; sets CATALOG,
# CAT_URL, CAT_SHA512 (the image a.raw.xz), BAD_URL, BAD_SHA512 (what is served at BAD_URL)
catalog_publish() {
  local dir=$IMG/catalog bad=$IMG/catalog-bad
  mkdir -p "$dir" "$bad"
  cp "$IMG/a.raw.xz" "$dir/a.raw.xz"
  # not the image its SUMS file lists: b's bytes under a's name
  cp "$IMG/b.raw.xz" "$bad/a.raw.xz"
  CAT_SHA512=$(sha512sum <"$IMG/a.raw.xz" | cut -d' ' -f1)
  BAD_SHA512=$(sha512sum <"$IMG/b.raw.xz" | cut -d' ' -f1)
  # as Debian's: one line per file of the directory, the image's among others
  printf '%s  %s\n' "$BAD_SHA512" b.raw.xz "$CAT_SHA512" a.raw.xz >"$dir/SHA512SUMS"
  printf '%s  %s\n' "$CAT_SHA512" a.raw.xz >"$bad/SHA512SUMS"
  CAT_URL=$(url catalog/a.raw.xz)
  BAD_URL=$(url catalog-bad/a.raw.xz)
  CATALOG=$CONF/default/images.ini
  cat >"$E2E_WORK/images.ini" <<EOF
; the image catalog of variant default, written by the end-to-end suite (test/e2e/catalog.sh)
[$CATALOG_NAME]
description = image a of the suite, published with SHA512SUMS beside it
image = $CAT_URL
image_type = raw+xz
image_checksum = sha512sums

[$CATALOG_BAD]
description = an image whose SHA512SUMS lists another file's digest
image = $BAD_URL
image_type = raw+xz
image_checksum = sha512sums
EOF
  # as an operator installs it: root's, not writable by others (the provider insists)
  install -m 0644 -o root -g root "$E2E_WORK/images.ini" "$CATALOG"
}

# downloads URL: how many times the origin sent the whole image at URL (HTTP 200 to a GET)
downloads() { grep -cF "\"GET ${1#http://127.0.0.1:$PORT} HTTP/1.1\" 200 " "$E2E_LOGS/http.log"; }
cache_key() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
os_log() { ls -t /var/log/ganeti/os/add-simpleimage+default-"$1"-*.log 2>/dev/null | head -n 1; }

# node_results: "NODE=CODE ..." from gnt-cluster command's output ($OUT); it exits 0 whatever
# the command did on the nodes, and prints "node: NAME" ... "return code = N" for each
node_results() { awk '/^node: / { n = $2 } /^return code = / { printf "%s=%s ", n, $4 }' "$OUT"; }

catalog() {
  local t=$T0 inst=e2e-catalog.$DOMAIN bad=e2e-catalog-bad.$DOMAIN res key log last line tail_lines
  echo "-- an image catalog with SHA512SUMS, gnt-cluster command simpleimage-cache prefetch ($t)"
  catalog_publish

  # every node (here: the one) fetches it into its cache before the rollout
  if g catalog-prefetch gnt-cluster command simpleimage-cache prefetch "$CATALOG_NAME" && res=$(node_results) \
    && [ "$res" = "$NODE=0 " ] && grep -qF "is cached in" "$OUT" && grep -qF 'sha512 checked' "$OUT"; then
    pass "gnt-cluster command simpleimage-cache prefetch $CATALOG_NAME: return code 0 on $NODE (ssh with the key Ganeti set up), sha512 checked"
  else
    fail "gnt-cluster command simpleimage-cache prefetch $CATALOG_NAME (node results: ${res:-none}):"$'\n'"$(tail_of "$OUT" 4)$(tail_of "$ERR" 3)"
  fi
  grep -qF "[$CATALOG_NAME] of $CATALOG" "$OUT" && pass "  prefetch took $CATALOG_NAME from [$CATALOG_NAME] of $CATALOG" \
    || fail "  prefetch does not say it read [$CATALOG_NAME] of $CATALOG:"$'\n'"$(tail_of "$OUT" 4)"
  key=$(cache_key "$CAT_URL")
  if [ -f "$CACHE_DIR/$key.image" ] && cmp -s "$CACHE_DIR/$key.image" "$IMG/a.raw.xz" && grep -qF "\"sha512\":\"$CAT_SHA512\"" "$CACHE_DIR/$key.meta" 2>/dev/null; then
    pass "  the entry is in IMAGE_STORAGE ($CACHE_DIR/${key:0:12}….image = a.raw.xz), its .meta keeps the sha512"
  else
    fail "  no entry $CACHE_DIR/$key.image equal to a.raw.xz with its sha512 in $key.meta: $(ls "$CACHE_DIR" 2>&1 | grep -c "$key") file(s) of that key"
  fi
  if g catalog-list gnt-cluster command simpleimage-cache list && [ "$(node_results)" = "$NODE=0 " ] \
    && line=$(grep -F "$CAT_URL " "$OUT") && grep -qF "sha512:$CAT_SHA512" <<<"$line"; then
    pass "gnt-cluster command simpleimage-cache list: $CAT_URL with its sha512 (${CAT_SHA512:0:16}…)"
  else
    fail "simpleimage-cache list does not show $CAT_URL with sha512:${CAT_SHA512:0:16}…:"$'\n'"$(tail_of "$OUT" 5)"
  fi

  # the add by name: image, image_type and image_checksum from the catalog, the image from the cache
  # shellcheck disable=SC2046
  if g catalog-add "${ADD[@]}" -o simpleimage+default -t "$t" $(disk_opts "$t") -O "image=$CATALOG_NAME" "$inst"; then
    pass "add -O image=$CATALOG_NAME ($t, nothing else given)"
    log=$(os_log "$inst")
    grep -qF "image $CAT_URL from [$CATALOG_NAME] of $CATALOG" "$log" && pass "  the OS log says the image came from [$CATALOG_NAME] of $CATALOG" \
      || fail "  the OS log ${log##*/} does not name [$CATALOG_NAME] of $CATALOG:"$'\n'"$(tail_of "$log" 3)"
    grep -qF "cache hit: $CAT_URL" "$log" && pass "  cache hit: the prefetched entry$(grep -q 'unchanged (HTTP 304)' "$log" && echo ', confirmed by the server (HTTP 304)')" \
      || fail "  no 'cache hit: $CAT_URL' in ${log##*/}:"$'\n'"$(tail_of "$log" 3)"
    grep -qF "the cached download's sha512 matches" "$log" && pass "  $(grep -o "image_checksum: the cached download's sha512 matches.*" "$log" | head -n 1 | cut -c1-140)" \
      || fail "  the OS log does not say the cached download's sha512 matches:"$'\n'"$(tail_of "$log" 3)"
    if disk0 "$inst" && same_as_image "$IMG/a.raw" "$DISK0"; then pass "  disk 0 = image a ($t, catalog name)"
    else fail "  disk 0 ($DISK0) differs from a.raw ($t, catalog name)"; fi
  else
    fail "add -O image=$CATALOG_NAME ($t):"$'\n'"$(tail_of "$ERR" 3)"
  fi
  remove_instance "$inst"
  res=$(downloads "$CAT_URL")
  [ "$res" = 1 ] && pass "the origin sent $CAT_URL once, to the prefetch ($(grep -cF "\"GET ${CAT_URL#http://127.0.0.1:$PORT} HTTP/1.1\" 304 " "$E2E_LOGS/http.log") conditional GET(s) answered 304)" \
    || fail "the origin sent $CAT_URL $res times, not once (prefetch, then the add from the cache)"

  # a SUMS file that lists another digest: the add fails naming both, nothing is cached
  # shellcheck disable=SC2046
  if g catalog-bad-sums "${ADD[@]}" -o simpleimage+default -t "$t" $(disk_opts "$t") -O "image=$CATALOG_BAD" "$bad"; then
    fail "add -O image=$CATALOG_BAD: created although its SHA512SUMS does not match"
  else
    last=$(last_err_line)
    log=$(os_log "$bad")
    tail_lines=$(tail -n 3 "$log" 2>/dev/null)
    if [[ $last == "create failed: "* ]] && [[ $last == *"$BAD_SHA512"* && $last == *"$CAT_SHA512"* ]] \
      && [[ $tail_lines == *"$BAD_SHA512"* && $tail_lines == *"$CAT_SHA512"* ]]; then
      pass "add -O image=$CATALOG_BAD fails; Ganeti's last line and the OS log's name both digests: ${last:0:100}…"
    else
      fail "add -O image=$CATALOG_BAD: the last lines do not name both sha512s (${BAD_SHA512:0:12}…, ${CAT_SHA512:0:12}…):"$'\n'"$(tail_of "$ERR" 3)"
    fi
    key=$(cache_key "$BAD_URL")
    [ ! -e "$CACHE_DIR/$key.image" ] && pass "  nothing cached for $BAD_URL" || fail "  the mismatching download was cached: $CACHE_DIR/$key.image"
  fi
  # Ganeti 3.0 keeps an instance whose create failed (its disks too): removed as an operator would
  if instance_exists "$bad"; then
    remove_instance "$bad"
    instance_exists "$bad" && fail "  $bad is still defined after gnt-instance remove" \
      || pass "  no instance left behind (Ganeti kept the failed $bad defined: removed)"
  else
    pass "  no instance left behind (Ganeti removed the failed $bad)"
  fi
}
