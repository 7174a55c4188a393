#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are missing, without
# starting any daemon they ship (sshd, PostgreSQL, Redis, nginx) in the root namespace:
# the tests and benchmarks start their own inside namespaces they made.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "[x] missing packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "==> installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
fi
trap 'if [ -n "$made_policy" ]; then rm -f "$policy"; fi' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
