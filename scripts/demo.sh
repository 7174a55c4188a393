#!/usr/bin/env bash
# The whole story on one machine, no root needed: builds, starts a hub with embedded
# SQLite, shares a real local HTTP service, joins it from a second identity in user space,
# shows traffic flowing, join tracking, the public URL and a dashboard link, then cleans up.
# Everything listens on 127.0.0.1; nothing is added to the machine's network.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if ! command -v python3 >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
  else
    echo "[x] the demo serves a page with python3; install it (apt-get install python3)" >&2
    exit 1
  fi
fi

say "Building"
cargo build --workspace --bins --quiet
bin="$PWD/target/debug"

demo=$(mktemp -d /tmp/connect-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$demo"
}
trap cleanup EXIT

port=$(( 20000 + RANDOM % 20000 ))
web=$(( port + 1 ))
export CONNECT_HUB="http://127.0.0.1:$port"
alice=(--config "$demo/alice/config.toml")
bob=(--config "$demo/bob/config.toml")

wait_for() { # wait_for WHAT COMMAND...: polls until the command succeeds (30 s at most)
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "[x] $what did not come up; logs in $demo" >&2; trap - EXIT; exit 1
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

say "Starting a hub (embedded SQLite in $demo/hub)"
"$bin/connect-coordinator" --listen "127.0.0.1:$port" --data-dir "$demo/hub" --open-registration \
  >"$demo/hub.log" 2>&1 & pids+=($!)
wait_for "the hub" port_open "$port"
echo "hub: $CONNECT_HUB"

say "A real service on the sharing machine: an HTTP server on 127.0.0.1:$web"
mkdir -p "$demo/www"
echo "Hello from Alice's environment, served through connect." >"$demo/www/index.html"
head -c 5000000 /dev/urandom >"$demo/www/5mb.bin"
python3 -m http.server "$web" --bind 127.0.0.1 --directory "$demo/www" >"$demo/http.log" 2>&1 & pids+=($!)
wait_for "the web server" port_open "$web"

say "Alice: connect up, expose, share"
"$bin/connect" "${alice[@]}" up --name alice >"$demo/alice.log" 2>&1 & pids+=($!)
wait_for "Alice's agent" "$bin/connect" "${alice[@]}" status
echo "\$ connect expose localhost:$web --name web"
"$bin/connect" "${alice[@]}" expose "localhost:$web" --name web
echo "\$ connect share --name demo-env --expires 1h"
"$bin/connect" "${alice[@]}" share --name demo-env --expires 1h | tee "$demo/share.txt"
code=$(awk '/Share Code/ {print $3}' "$demo/share.txt")
url=$(awk '/^URL:/ {print $2}' "$demo/share.txt")

say "Bob: connect join $code --no-tun (user space: no root needed)"
"$bin/connect" "${bob[@]}" --json join "$code" --no-tun >"$demo/join.json" 2>"$demo/join.log" & pids+=($!)
wait_for "Bob's join" grep -q machine_ip "$demo/join.json"
cat "$demo/join.json"
address=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print([x["address"] for x in r["routes"] if x["name"]=="web"][0])' "$demo/join.json")

say "Traffic: Bob fetches Alice's page and a 5 MB file through the tunnel ($address)"
python3 - "$address" "$demo/www/5mb.bin" <<'PY'
import hashlib, sys, time, urllib.request
address, original = sys.argv[1], sys.argv[2]
print(urllib.request.urlopen(f"http://{address}/", timeout=10).read().decode().strip())
start = time.time()
body = urllib.request.urlopen(f"http://{address}/5mb.bin", timeout=30).read()
took = time.time() - start
same = hashlib.sha256(body).hexdigest() == hashlib.sha256(open(original, "rb").read()).hexdigest()
print(f"5 MB in {took*1000:.0f} ms ({len(body)*8/took/1e6:.0f} Mbit/s), sha256 {'matches' if same else 'DIFFERS'}")
sys.exit(0 if same else 1)
PY

say "Alice: connect status and share --info (join tracking)"
"$bin/connect" "${alice[@]}" status
"$bin/connect" "${alice[@]}" share --info "$code"

say "Public URL: anyone reaches the page through the hub ($url)"
host=${url#http://}; host=${host%%:*}
python3 - "$port" "$host" <<'PY'
import sys, urllib.request
port, host = sys.argv[1], sys.argv[2]
request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
print(urllib.request.urlopen(request, timeout=10).read().decode().strip())
PY
echo "(with real DNS, *.DOMAIN points at the hub and the URL works in any browser)"

say "Dashboard: a one-time login link to Alice's shares, joins and access log"
"$bin/connect" "${alice[@]}" dashboard --no-open

say "Revoke: Bob is cut off"
"$bin/connect" "${alice[@]}" share --revoke "$code"
for _ in $(seq 100); do grep -q "disconnected" "$demo/join.log" 2>/dev/null && break; sleep 0.1; done
tail -n 1 "$demo/join.log"

say "Done; cleaning up"
