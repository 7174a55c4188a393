#!/usr/bin/env bash
# Runs the whole suite: unit, in-process and (as root) end-to-end tests.
# Installs the Debian packages the tests need when they are missing, so it works on a
# fresh machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite uses; empty until end-to-end tests need real services.
PACKAGES=()
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "[x] missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "==> installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Root-only tests are marked #[ignore = "needs root"]; CI runs as root and includes them.
ignored=()
if [ "$(id -u)" -eq 0 ]; then
  ignored=(--run-ignored all)
fi

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "${ignored[@]}"
else
  [ "${#ignored[@]}" -gt 0 ] && ignored=(-- --include-ignored)
  cargo test --workspace --locked --no-fail-fast "${ignored[@]}"
fi
