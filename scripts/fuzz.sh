#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 600), growing its corpus, then
# minimises the corpus. Installs cargo-fuzz when missing; the stable toolchain builds the
# targets with RUSTC_BOOTSTRAP=1. A finding stops the script with libFuzzer's report and
# the input under CRATE/fuzz/artifacts/. The suite itself replays every corpus (the
# `every_fuzz_target_runs_its_corpus` unit tests); this is the long run.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
export RUSTC_BOOTSTRAP=1
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# crate directory and its targets
declare -A targets=(
  [netstack]="relay_frame wireguard_datagram ip_packet"
  [coordinator/api]="api_body"
  [agent]="share_code authorized_keys config_files"
)
for dir in netstack coordinator/api agent; do
  for target in ${targets[$dir]}; do
    if [ "$#" -gt 0 ] && [[ ! " $* " =~ " $target " ]]; then
      continue
    fi
    echo "==> $dir: $target for ${seconds}s"
    (cd "$dir" && cargo fuzz run -O "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048)
    (cd "$dir" && cargo fuzz cmin -O "$target" >/dev/null 2>&1)
  done
done
