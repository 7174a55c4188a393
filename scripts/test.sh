#!/usr/bin/env bash
# Runs the whole suite: unit, in-process and (as root) end-to-end tests.
# Installs the Debian packages the tests need when they are missing, so it works on a
# fresh machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
# The suite builds everything once: incremental compilation would only add work (and
# gigabytes of target/debug/incremental) to a build that starts from nothing.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Debian packages the suite uses: real services and real clients for the end-to-end
# tests, and PostgreSQL for the hub's store tests.
PACKAGES=(python3 chromium chromium-driver python3-websockets postgresql redis-server redis-tools dnsmasq-base bind9-dnsutils curl iproute2 procps openssh-server openssh-client openssl nftables tinyproxy)
bash scripts/install-packages.sh "${PACKAGES[@]}"

# A throwaway PostgreSQL cluster for the hub's store tests, run as a non-root user,
# stopped and deleted on exit.
pg_dir=""
cleanup() {
  if [ -n "$pg_dir" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
}
trap cleanup EXIT
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -n "$pg_bin" ]; then
  pg_dir=$(mktemp -d /tmp/connect-pg.XXXXXX)
  [ "$(id -u)" -eq 0 ] && chown postgres "$pg_dir"
  pg_port=$(( 20000 + RANDOM % 20000 ))
  as_pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U connect >/dev/null
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
    -o "-k $pg_dir -c listen_addresses=127.0.0.1 -p $pg_port -c max_connections=300 -c fsync=off" start >/dev/null
  export CONNECT_TEST_POSTGRES="postgres://connect@127.0.0.1:$pg_port/postgres"
  echo "==> PostgreSQL on 127.0.0.1:$pg_port"
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

# The end-to-end tests run the real `connect` and `connect-coordinator` binaries, which
# cargo only builds for tests of their own package: build them explicitly, in the same
# invocation as the tests. Built alone, the binaries would get their dependencies without
# the dev-dependencies' features, and the test build would then compile those dependencies
# a second time.
echo "==> cargo build"
cargo build --workspace --locked --bins --tests

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "${ignored[@]}"
else
  [ "${#ignored[@]}" -gt 0 ] && ignored=(-- --include-ignored)
  cargo test --workspace --locked --no-fail-fast "${ignored[@]}"
fi
