#!/usr/bin/env bash
# Debian packages for the multi-host lab (nftables), the dashboard test (chromium) and the
# proxy benchmark (nginx). Installs only what is missing; needs root (the CI machine is root).
set -euo pipefail
want=()
command -v nft >/dev/null 2>&1 || want+=(nftables)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
command -v nginx >/dev/null 2>&1 || want+=(nginx-light)
command -v ip >/dev/null 2>&1 || want+=(iproute2)
command -v shellcheck >/dev/null 2>&1 || want+=(shellcheck)
command -v curl >/dev/null 2>&1 || want+=(curl)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "sysdeps: not root; missing ${want[*]} (the lab tests need root and these packages)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
# nginx-light's package starts a daemon on port 80; the benchmark runs its own.
systemctl disable --now nginx >/dev/null 2>&1 || service nginx stop >/dev/null 2>&1 || true
