#!/bin/bash
# Installs what the provider, its demo and its tests need on a Debian 12 machine (as root)
# (the boot checks: QEMU, mmdebstrap and GRUB's BIOS files to build and boot guest images):
# Debian packages, Debian's own node 18 beside the system node (to prove the bundles run
# on it), and the npm packages from package-lock.json. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
[ "$(id -u)" = 0 ] || { echo "setup-deps.sh: run as root (apt-get install)" >&2; exit 1; }

PKGS=(bash coreutils util-linux mount fdisk e2fsprogs xz-utils bzip2 gzip lbzip2 zstd
      qemu-utils openssl tinyproxy python3 curl ca-certificates time lintian
      qemu-system-x86 mmdebstrap grub-pc-bin grub2-common dosfstools socat squid)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ] || ! apt-cache madison nodejs 2>/dev/null | grep -q debian.org; then
  echo "setup-deps: apt-get install ${missing[*]:-(package lists only)}"
  apt-get update -q >/dev/null
  [ ${#missing[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# tinyproxy's and squid's packages start a system-wide daemon (squid on port 3128); the
# tests start their own, on free ports with their config, logs and cache in a temp dir
for svc in tinyproxy squid; do
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl disable --now "$svc" >/dev/null 2>&1 || true
  else service "$svc" stop >/dev/null 2>&1 || true; fi
done

echo "setup-deps: node 18 for the compatibility test: $(bash test/support/node18.sh)"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "setup-deps: done (node $(node -v), npm $(npm -v))"
