#!/usr/bin/env bash
# Benchmarks, each printed beside a direct, untunnelled baseline measured in the same run:
#  1. the data plane in one process (criterion; sealing rate as the ceiling);
#  2. as root: iperf3 through the tunnel between network namespaces this script makes,
#     TUN joiner and user-space joiner, each over the direct path and through the hub's
#     relay (CONNECT_RELAY_ONLY=1) and through the hub over TCP (UDP to the hub dropped),
#     against iperf3 over the same links without the tunnel;
#     the relay's datagrams/s and CPU; the agents' and hub's memory.
# Every namespace, link and process it makes is removed by name or PID on exit.
#  3. as root: public HTTP through the hub's reverse proxy (wrk: requests/s and p99 for
#     a small page, median of three runs; curl: a 50 MB download, median of five; the
#     paths taking turns) against the same server reached directly and through rathole
#     (plain TCP and Noise), which the bench installs with cargo if missing.
# --netns-only skips the in-process part; --public-only runs only the public HTTP figures
# (3., the quick loop when working on the proxy).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install-packages.sh iperf3 wrk curl nginx-light ethtool nftables
fi

echo "==> building (release)"
cargo build --release --workspace --bins --quiet
bin="$PWD/target/release"

mode=${1:-}
if [ -z "$mode" ]; then
  echo "==> data plane in one process (cargo bench -p connect-netstack)"
  cargo bench -p connect-netstack --bench throughput 2>/dev/null | sed -n '/^| measure/,$p'
fi

if [ "$(id -u)" -ne 0 ] || ! command -v iperf3 >/dev/null; then
  echo "==> skipping the namespace benchmarks (need root and iperf3)"
  exit 0
fi

p="cb$$"
dir=$(mktemp -d /tmp/connect-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in hub sharer joiner; do ip netns delete "$p-$ns" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

for ns in hub sharer joiner; do ip netns add "$p-$ns"; ip -n "$p-$ns" link set lo up; done
n=0
for host in sharer joiner; do
  n=$((n + 1))
  ip link add "$p-h$n" type veth peer name "$p-x$n"
  ip link set "$p-h$n" netns "$p-hub"
  ip link set "$p-x$n" netns "$p-$host"
  ip -n "$p-hub" addr add "10.88.$n.1/24" dev "$p-h$n"; ip -n "$p-hub" link set "$p-h$n" up
  ip -n "$p-$host" addr add "10.88.$n.2/24" dev "$p-x$n"; ip -n "$p-$host" link set "$p-x$n" up
  ip -n "$p-$host" route add default via "10.88.$n.1"
done
# Only for the direct baseline: the hub namespace routes between the two hosts.
ip netns exec "$p-hub" sysctl -qw net.ipv4.ip_forward=1
# The one-packet-per-crossing baseline: a veth pair straight between joiner and sharer,
# MTU 1420 and offloads off, so every packet crosses alone, as from a TUN device without
# offloads. The tunnel never uses it.
ip link add "$p-o1" type veth peer name "$p-o2"
ip link set "$p-o1" netns "$p-joiner"; ip link set "$p-o2" netns "$p-sharer"
n=0
for host in joiner sharer; do
  n=$((n + 1))
  ip -n "$p-$host" addr add "10.89.0.$n/24" dev "$p-o$n"
  ip -n "$p-$host" link set "$p-o$n" mtu 1420 up
  ip netns exec "$p-$host" ethtool -K "$p-o$n" tso off gso off gro off
done

on() { local ns=$1; shift; ip netns exec "$p-$ns" "$@"; }
hub="http://10.88.1.1:7070"
ip netns exec "$p-hub" "$bin/connect-coordinator" --listen 0.0.0.0:7070 --insecure --open-registration \
  --rate-limit-exempt 127.0.0.1/32 --data-dir "$dir/hub" --public-url "$hub" >"$dir/hub.log" 2>&1 & pids+=($!); hub_pid=$!
for _ in $(seq 200); do on hub bash -c 'exec 3<>/dev/tcp/127.0.0.1/7070' 2>/dev/null && break; sleep 0.05; done
ip netns exec "$p-sharer" iperf3 -s -B 0.0.0.0 -p 5201 >/dev/null 2>&1 & pids+=($!)
alice=(--hub "$hub" --config "$dir/alice/config.toml")
ip netns exec "$p-sharer" "$bin/connect" "${alice[@]}" up --name alice >"$dir/alice.log" 2>&1 & pids+=($!); sharer_pid=$!
for _ in $(seq 200); do on sharer "$bin/connect" "${alice[@]}" status >/dev/null 2>&1 && break; sleep 0.05; done
on sharer "$bin/connect" "${alice[@]}" expose localhost:5201 --name iperf >/dev/null
# An echo server that greets each connection with one byte: round trips and first byte.
cat >"$dir/echo.py" <<'PY'
import socket, sys, threading
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(b"!")
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)
server = socket.create_server(("0.0.0.0", 7777))
while True:
    threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()
PY
ip netns exec "$p-sharer" python3 "$dir/echo.py" >/dev/null 2>&1 & pids+=($!); echo_pid=$!
on sharer "$bin/connect" "${alice[@]}" expose localhost:7777 --name echo >/dev/null
code=$(on sharer "$bin/connect" "${alice[@]}" --json share | python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])')
# A web server for the public-URL figures, reachable directly too (for the baseline).
mkdir -p "$dir/www"; head -c 52428800 /dev/urandom >"$dir/www/big.bin"; echo "hello from the sharer" >"$dir/www/index.html"
# nginx (one worker, keep-alive), reachable directly too for the baseline.
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<CONF
user root;
worker_processes 1;
pid $dir/nginx/pid;
error_log $dir/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  server { listen 8080; root $dir/www; }
}
CONF
ip netns exec "$p-sharer" nginx -e "$dir/nginx/error.log" -c "$dir/nginx/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 & pids+=($!)
on sharer "$bin/connect" "${alice[@]}" expose localhost:8080 --name web >/dev/null
url=$(on sharer "$bin/connect" "${alice[@]}" --json share | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')
public_host=${url#http://}; public_host=${public_host%%:*}

iperf() { # iperf NS HOST PORT [-R] → Gbit/s
  on "$1" iperf3 -c "$2" -p "$3" -t 5 -O 1 -J "${@:4}" | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
# Pinned round trips, one CPU per machine as on two hosts: the client and its end of the
# tunnel (the joiner) on CPU 0, the service and its end (the sharer, and the hub when it
# relays) on the last CPU. rtt_squeezed puts the whole path but the client on the last CPU
# instead, so the two agents queue behind each other, which two machines never do.
# Unpinned again afterwards.
rtt_pinned() { # rtt_pinned HOST PORT "NEAR PIDS" "FAR PIDS" → median µs
  local host=$1 port=$2 last=$(( $(nproc) - 1 )) result pid
  [ "$last" -gt 0 ] || { rtt joiner "$host" "$port"; return; }
  for pid in $3; do taskset -acp 0 "$pid" >/dev/null; done
  for pid in $4; do taskset -acp "$last" "$pid" >/dev/null; done
  result=$(rtt joiner "$host" "$port" 0)
  for pid in $3 $4; do taskset -acp "0-$last" "$pid" >/dev/null; done
  echo "$result"
}
rtt_squeezed() { # rtt_squeezed HOST PORT "PIDS" → median µs
  rtt_pinned "$1" "$2" "" "$3"
}
rtt() { # rtt NS HOST PORT [CPU] → median µs of a 64-byte request/response
  local pin=(); [ -n "${4:-}" ] && pin=(taskset -c "$4")
  on "$1" "${pin[@]}" python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.recv(1)
msg, times = b"x" * 64, []
for _ in range(3000):
    t = time.perf_counter_ns(); s.sendall(msg); got = 0
    while got < 64:
        got += len(s.recv(64 - got))
    times.append(time.perf_counter_ns() - t)
times.sort(); print("%.0f" % (times[len(times) // 2] / 1000))' "$2" "$3"
}
# RSS, and the private part of it: the rest is the program's code mapped from its file,
# shared by every connect process on the machine.
rss() { awk '/VmRSS/ {r=$2} /RssAnon/ {a=$2} END {printf "%.1f MB (%.1f MB private)", r/1024, a/1024}' "/proc/$1/status"; }
# CPU time (user and system, in clock ticks) the processes PIDS have used so far.
cpu_ticks() { local pid t=0; for pid in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat"))); done; echo "$t"; }
# The hub's relay counters, its CPU time (ticks) and the clock, for rates over a run.
relay_sample() {
  on hub curl -s http://127.0.0.1:7070/metrics \
    | awk -v cpu="$(cpu_ticks "$hub_pid")" -v now="$(date +%s.%N)" \
      '$1=="connect_relay_packets_total" {p=$2} $1=="connect_relay_bytes_total" {b=$2} END {print p, b, cpu, now}'
}
relay_rate() { # relay_rate "BEFORE" "AFTER" → "packets/s Gbit/s cpu%"
  python3 -c '
import sys, os
p0, b0, c0, t0 = map(float, sys.argv[1].split()); p1, b1, c1, t1 = map(float, sys.argv[2].split())
dt, hz = t1 - t0, os.sysconf("SC_CLK_TCK")
print("%.0f %.2f %.0f" % ((p1 - p0) / dt, (b1 - b0) * 8 / dt / 1e9, 100 * (c1 - c0) / hz / dt))' "$1" "$2"
}

ratio() { python3 -c "print('%.0f%%' % (100*float('$1')/float('$2')))"; }

if command -v wrk >/dev/null; then
  # The tool a user would pick instead for a public URL: rathole, its server on the hub's
  # host and its client on the sharer, over plain TCP and over its Noise transport
  # (encrypted, as the tunnel is). Installed by cargo when missing.
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v rathole >/dev/null; then
    echo "==> installing rathole (cargo install, once)"
    cargo install --quiet rathole --no-default-features --features server,client,noise
  fi
  keys=$(rathole --genkey)
  rathole_private=$(echo "$keys" | sed -n 2p); rathole_public=$(echo "$keys" | sed -n 5p)
  rathole_pair() { # rathole_pair NAME CONTROL_PORT VISITOR_PORT tcp|noise; sets rathole_NAME_pids
    local side transport server
    for side in server client; do
      transport="[$side.transport]"$'\n'"type = \"$4\""
      if [ "$4" = noise ] && [ $side = server ]; then
        transport+=$'\n'"[server.transport.noise]"$'\n'"local_private_key = \"$rathole_private\""
      elif [ "$4" = noise ]; then
        transport+=$'\n'"[client.transport.noise]"$'\n'"remote_public_key = \"$rathole_public\""
      fi
      if [ $side = server ]; then
        printf '[server]\nbind_addr = "0.0.0.0:%s"\n%s\n[server.services.web]\ntoken = "bench"\nbind_addr = "0.0.0.0:%s"\n' \
          "$2" "$transport" "$3" >"$dir/rathole-$1-server.toml"
      else
        printf '[client]\nremote_addr = "10.88.1.1:%s"\n%s\n[client.services.web]\ntoken = "bench"\nlocal_addr = "127.0.0.1:8080"\n' \
          "$2" "$transport" >"$dir/rathole-$1-client.toml"
      fi
    done
    ip netns exec "$p-hub" rathole -s "$dir/rathole-$1-server.toml" >"$dir/rathole-$1-server.log" 2>&1 & pids+=($!)
    server=$!
    ip netns exec "$p-sharer" rathole -c "$dir/rathole-$1-client.toml" >"$dir/rathole-$1-client.log" 2>&1 & pids+=($!)
    printf -v "rathole_$1_pids" '%s %s' "$server" "$!"
    for _ in $(seq 200); do on joiner curl -sf -o /dev/null "http://10.88.2.1:$3/index.html" && break; sleep 0.05; done
  }
  rathole_pair plain 2333 8081 tcp
  rathole_pair noise 2334 8082 noise
  # wrk prints "N requests in", "Requests/sec: N" and, with --latency, "99% T" (T with its
  # unit). A 5 s run's p99 moves by half from run to run here: each path runs three times,
  # the paths taking turns, and the medians are shown. Beside them, the CPU time the two
  # ends of the tunnel (hub and sharer, or rathole's server and client) spent per request:
  # the work a request costs, where the rate also says how much CPU the machine gave.
  wrk_sample() { # wrk_sample NAME "PIDS" URL [Host header]: "req/s p99-ms cpu-µs/req" appended to $dir/wrk.NAME
    local args=(-t2 -c16 -d5s --latency) before out
    [ -n "${4:-}" ] && args+=(-H "Host: $4")
    # shellcheck disable=SC2086
    before=$(cpu_ticks $2)
    out=$(on joiner wrk "${args[@]}" "$3")
    # shellcheck disable=SC2086
    echo "$out" | awk -v ticks="$(( $(cpu_ticks $2) - before ))" -v hz="$(getconf CLK_TCK)" '
      $2=="requests" && $3=="in" {n=$1} /Requests\/sec/ {r=$2}
      $1=="99%" {v=$2+0; u=$2; sub(/^[0-9.]+/, "", u); if (u=="us") v/=1000; else if (u=="s") v*=1000}
      END {printf "%.0f %.2f %.1f\n", r, v, n ? ticks / hz / n * 1e6 : 0}' >>"$dir/wrk.$1"
  }
  wrk_median() { # wrk_median NAME → "req/s p99 cpu", the medians of three runs
    local column
    for column in 1 2 3; do cut -d' ' -f"$column" "$dir/wrk.$1" | sort -g | sed -n 2p; done | paste -sd' '
  }
  # One 50 MB download lasts ~0.2 s here, where a scheduling hiccup moves it by a third:
  # each path downloads five times, the paths taking turns, and the median is shown.
  download() { # download NAME URL [Host header]: one more sample in $dir/big.NAME (bytes/s)
    local args=(-s -o /dev/null -w '%{speed_download}\n')
    [ -n "${3:-}" ] && args+=(-H "Host: $3")
    on joiner curl "${args[@]}" "$2" >>"$dir/big.$1"
  }
  median_gbps() { sort -g "$dir/big.$1" | sed -n 3p | python3 -c 'import sys; print("%.2f" % (float(sys.stdin.read())*8/1e9))'; }
  for _ in $(seq 100); do on joiner curl -sf -o /dev/null -H "Host: $public_host" "http://10.88.2.1:7070/" && break; sleep 0.1; done
  for _ in 1 2 3; do
    wrk_sample direct "" http://10.88.1.2:8080/index.html
    wrk_sample rathole "$rathole_plain_pids" http://10.88.2.1:8081/index.html
    wrk_sample noise "$rathole_noise_pids" http://10.88.2.1:8082/index.html
    wrk_sample hub "$hub_pid $sharer_pid" http://10.88.2.1:7070/index.html "$public_host"
  done
  read -r direct_rps direct_p99 _ <<<"$(wrk_median direct)"
  read -r rh_rps rh_p99 rh_cpu <<<"$(wrk_median rathole)"
  read -r rhn_rps rhn_p99 rhn_cpu <<<"$(wrk_median noise)"
  read -r hub_rps hub_p99 hub_cpu <<<"$(wrk_median hub)"
  for _ in 1 2 3 4 5; do
    download direct http://10.88.1.2:8080/big.bin
    download rathole http://10.88.2.1:8081/big.bin
    download noise http://10.88.2.1:8082/big.bin
    download hub http://10.88.2.1:7070/big.bin "$public_host"
  done
  direct_big=$(median_gbps direct); rh_big=$(median_gbps rathole)
  rhn_big=$(median_gbps noise); hub_big=$(median_gbps hub)
  hub_rss=$(rss "$hub_pid")
  public_row() { # public_row NAME RPS P99 CPU BIG
    echo "| $1 | $2 | ${3}ms | $4 | $5 Gbit/s | $(ratio "$2" "$rhn_rps") req/s, $(ratio "$5" "$rhn_big") download |"
  }
  echo
  echo "| public HTTP (nginx, one worker, on the sharer; visitor on a third host) | requests/s (wrk, 2 threads, 16 conns, 5 s; median of 3) | p99 (median of 3) | CPU µs per request, both tunnel ends (median of 3) | 50 MB download (median of 5) | vs rathole with Noise |"
  echo "|---|---|---|---|---|---|"
  public_row "nginx directly" "$direct_rps" "$direct_p99" "—" "$direct_big"
  public_row "rathole, plain TCP (server on the hub's host, client on the sharer)" "$rh_rps" "$rh_p99" "$rh_cpu" "$rh_big"
  public_row "rathole with its Noise transport (encrypted, as ours is)" "$rhn_rps" "$rhn_p99" "$rhn_cpu" "$rhn_big"
  public_row "connect, the hub's public URL (hub RSS after: $hub_rss)" "$hub_rps" "$hub_p99" "$hub_cpu" "$hub_big"
  printf '%s\t%s\n' \
    "nginx directly" "$direct_rps" "rathole, plain TCP" "$rh_rps" \
    "rathole, Noise" "$rhn_rps" "connect public URL" "$hub_rps" \
    | "$bin/bench-chart" "$PWD/scripts/bench-public.svg" "Public HTTP, small page (wrk, 2 threads, 16 connections, 2 vCPUs)" "requests/s"
else
  echo "==> skipping the public HTTP figures (no wrk)"
fi
[ "$mode" = --public-only ] && exit 0

direct=$(iperf joiner 10.88.1.2 5201)
direct_r=$(iperf joiner 10.88.1.2 5201 -R)
single=$(iperf joiner 10.89.0.2 5201)
single_r=$(iperf joiner 10.89.0.2 5201 -R)
direct_rtt=$(rtt joiner 10.88.1.2 7777); direct_rtt_pinned=$(rtt_pinned 10.88.1.2 7777 "" "$echo_pid")

# From `connect join` starting to the first byte of a TCP connection through its tunnel.
first_byte=$(on joiner python3 -c '
import json, socket, subprocess, sys, time
start = time.perf_counter()
join = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
ready = json.loads(join.stdout.readline())
s = socket.create_connection((ready["machine_ip"], 7777), timeout=10)
s.recv(1)
print("%.0f" % ((time.perf_counter() - start) * 1000))
join.terminate(); join.wait()' "$bin/connect" --hub "$hub" --config "$dir/dave/config.toml" --json join "$code")

# A joiner in the joiner namespace; RELAY_ONLY=1 keeps its tunnel on the hub's relay.
# Sets join_pid and join_json.
start_join() { # start_join NAME RELAY_ONLY [--no-tun]
  local name=$1 relay_only=$2; shift 2
  join_json="$dir/$name.json"
  ip netns exec "$p-joiner" env CONNECT_RELAY_ONLY="$relay_only" "$bin/connect" --hub "$hub" \
    --config "$dir/$name/config.toml" --json join "$code" "$@" >"$join_json" 2>"$dir/$name.log" & pids+=($!); join_pid=$!
  for _ in $(seq 300); do grep -q machine_ip "$join_json" 2>/dev/null && break; sleep 0.05; done
}
stop_join() { kill "$join_pid"; wait "$join_pid" 2>/dev/null || true; }
# iperf3 with the hub's relay counters around it: "Gbit/s relayed-datagrams/s relayed-Gbit/s hub-CPU%".
measure() { # measure HOST PORT [-R]
  local before result
  before=$(relay_sample)
  result=$(iperf joiner "$@")
  echo "$result $(relay_rate "$before" "$(relay_sample)")"
}
route_of() { python3 -c 'import json,sys; print([r["address"] for r in json.load(open(sys.argv[1]))["routes"] if r["name"] == sys.argv[2]][0])' "$1" "$2"; }

# TUN joiner, direct path (the hub namespace routes between the two hosts, like a LAN).
start_join bob 0
machine=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["machine_ip"])' "$join_json")
tun_idle=$(rss "$join_pid")
tun_rtt=$(rtt joiner "$machine" 7777)
tun_rtt_pinned=$(rtt_pinned "$machine" 7777 "$join_pid" "$echo_pid $sharer_pid")
tun_rtt_squeezed=$(rtt_squeezed "$machine" 7777 "$join_pid $echo_pid $sharer_pid")
read -r tun _ tun_relayed _ <<<"$(measure "$machine" 5201)"
# RSS sampled during the download (the larger of three), then again once it is over.
for t in 1 2 3; do sleep 1; awk '/VmRSS/ {print $2}' "/proc/$join_pid/status"; done >"$dir/rss.samples" &
sampler=$!
read -r tun_r _ tun_r_relayed _ <<<"$(measure "$machine" 5201 -R)"
wait "$sampler"
tun_load="$(sort -n "$dir/rss.samples" | tail -1 | awk '{printf "%.1f MB", $1/1024}')"
tun_after=$(rss "$join_pid")
stop_join

# TUN joiner through the relay: also the relay's own figures.
start_join bob2 1
machine=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["machine_ip"])' "$join_json")
relay_rtt_pinned=$(rtt_pinned "$machine" 7777 "$join_pid" "$echo_pid $sharer_pid $hub_pid")
read -r tunx relay_pps relay_gbps relay_cpu <<<"$(measure "$machine" 5201)"
read -r tunx_r _ _ _ <<<"$(measure "$machine" 5201 -R)"
sharer_load=$(rss "$sharer_pid"); hub_load=$(rss "$hub_pid")
stop_join

# User-space joiners, direct and relayed.
start_join carol 0 --no-tun
address=$(route_of "$join_json" iperf)
read -r user _ user_relayed _ <<<"$(measure "${address%:*}" "${address##*:}")"
read -r user_r _ _ _ <<<"$(measure "${address%:*}" "${address##*:}" -R)"
user_load=$(rss "$join_pid")
stop_join
start_join carol2 1 --no-tun
address=$(route_of "$join_json" iperf)
read -r userx _ _ _ <<<"$(measure "${address%:*}" "${address##*:}")"
read -r userx_r _ _ _ <<<"$(measure "${address%:*}" "${address##*:}" -R)"
stop_join

# TUN joiner through the hub over TCP: both hosts drop UDP to the hub (relay and probe
# ports), so both agents carry their relay frames on a stream to the hub's API port. The
# joiner keeps to the relay (CONNECT_RELAY_ONLY=1): UDP between the two hosts still
# passes, and their candidates would otherwise give them a direct path. The sharer
# restarts on each change so it binds at once instead of at its next refresh.
start_sharer() {
  ip netns exec "$p-sharer" "$bin/connect" "${alice[@]}" up --name alice >>"$dir/alice.log" 2>&1 & pids+=($!); sharer_pid=$!
  for _ in $(seq 200); do on sharer "$bin/connect" "${alice[@]}" status >/dev/null 2>&1 && break; sleep 0.05; done
}
restart_sharer() { kill "$sharer_pid"; wait "$sharer_pid" 2>/dev/null || true; start_sharer; }
hub_udp() { # hub_udp drop|allow
  for ns in sharer joiner; do
    if [ "$1" = drop ]; then
      on "$ns" nft add table ip cbench
      on "$ns" nft add chain ip cbench out '{ type filter hook output priority 0 ; }'
      on "$ns" nft add rule ip cbench out ip daddr 10.88.0.0/16 udp dport '{ 7070, 7071 }' drop
    else
      on "$ns" nft delete table ip cbench
    fi
  done
}
hub_udp drop; restart_sharer
start_join bob3 1
machine=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["machine_ip"])' "$join_json")
tcp_path=$(on sharer "$bin/connect" "${alice[@]}" --json status | python3 -c 'import json,sys; print(",".join(sorted({p["path"] for p in json.load(sys.stdin)["peers"]})))')
tcp_rtt_pinned=$(rtt_pinned "$machine" 7777 "$join_pid" "$echo_pid $sharer_pid $hub_pid")
read -r tunt _ _ tcp_cpu <<<"$(measure "$machine" 5201)"
read -r tunt_r _ _ _ <<<"$(measure "$machine" 5201 -R)"
stop_join
hub_udp allow; restart_sharer

ratios() { # ratios UP DOWN BASE_UP BASE_DOWN → "x% / y%"
  echo "$(ratio "$1" "$3") / $(ratio "$2" "$4")"
}
row() { # row NAME UP DOWN RELAYED
  echo "| $1 | $2 Gbit/s | $3 Gbit/s | $(ratios "$2" "$3" "$direct" "$direct_r") | $(ratios "$2" "$3" "$single" "$single_r") | $4 |"
}
echo
echo "| path (iperf3, 5 s, one TCP stream) | joiner→sharer | sharer→joiner | vs direct (up / down) | vs one packet per crossing | relayed by the hub meanwhile |"
echo "|---|---|---|---|---|---|"
row "direct over the same veth links" "$direct" "$direct_r" "-"
row "direct, veth MTU 1420 without offloads (one packet per crossing)" "$single" "$single_r" "-"
row "TUN joiner, direct path" "$tun" "$tun_r" "$tun_relayed / $tun_r_relayed Gbit/s"
row "TUN joiner, through the hub relay" "$tunx" "$tunx_r" "$relay_gbps Gbit/s"
row "TUN joiner, through the hub over TCP (UDP to the hub dropped; paths: $tcp_path)" "$tunt" "$tunt_r" "hub CPU $tcp_cpu%"
row "user-space joiner, direct path" "$user" "$user_r" "$user_relayed Gbit/s"
row "user-space joiner, through the hub relay" "$userx" "$userx_r" "-"
echo
echo "| process | RSS |"
echo "|---|---|"
echo "| TUN joiner idle / during a download / after it | $tun_idle / $tun_load / $tun_after |"
echo "| user-space joiner under load | $user_load |"
echo "| sharing agent after load | $sharer_load |"
echo "| hub after relaying | $hub_load |"
echo
echo "| hub relay, TUN joiner's upload through it | datagrams/s | Gbit/s | hub CPU (of one core) |"
echo "|---|---|---|---|"
echo "| relayed | $relay_pps | $relay_gbps | $relay_cpu% |"


# The hub's API: shares created and joins recorded per second, by 4 clients at once, each
# on a keep-alive connection (as agents are: each keeps one).
api=$(on hub python3 -c '
import base64, http.client, json, os, secrets, sys, threading, time
token, clients, n = open(sys.argv[1]).read().strip(), 4, 600
def call(conn, path, body, tok):
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json", "authorization": "Bearer " + tok})
    resp = conn.getresponse(); data = resp.read()
    assert resp.status < 300, (resp.status, data)
    return json.loads(data)
def rate(work):  # work(conn, i) for i in 0..n, spread over the clients
    errors = []
    def run(k):
        conn = http.client.HTTPConnection("127.0.0.1", 7070)
        try:
            for i in range(k, n, clients):
                work(conn, i)
        except Exception as err:
            errors.append(err)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    t = time.perf_counter()
    for th in threads: th.start()
    for th in threads: th.join()
    if errors:
        sys.exit("hub API: %s" % errors[0])
    return n / (time.perf_counter() - t)
lookups = [secrets.token_hex(32) for _ in range(n)]
shares = rate(lambda c, i: call(c, "/v1/shares", {"lookup": lookups[i], "expires_in_secs": 600, "routes": [], "key_mac": secrets.token_hex(32)}, token))
guest = call(http.client.HTTPConnection("127.0.0.1", 7070), "/v1/agents", {"name": "bench", "public_key": base64.b64encode(os.urandom(32)).decode(), "guest": True}, "")["token"]
joins = rate(lambda c, i: call(c, "/v1/join", {"lookup": lookups[i], "key_mac": secrets.token_hex(32)}, guest))
print("%.0f %.0f" % (shares, joins))' "$dir/alice/token")
read -r shares_per_s joins_per_s <<<"$api"
echo
echo "| latency and rates | tunnel | direct |"
echo "|---|---|---|"
echo "| 64 B round trip, TUN joiner, direct path, median, unpinned | $tun_rtt µs | $direct_rtt µs |"
echo "| … pinned, one CPU per side (client and joiner on CPU 0, service and sharer on CPU 1) | $tun_rtt_pinned µs | $direct_rtt_pinned µs |"
echo "| … pinned, client on CPU 0 and the whole path (both agents, service) on CPU 1 | $tun_rtt_squeezed µs | $direct_rtt_pinned µs |"
echo "| 64 B round trip, TUN joiner, through the relay, pinned one CPU per side (hub with the sharer) | $relay_rtt_pinned µs | $direct_rtt_pinned µs |"
echo "| 64 B round trip, TUN joiner, through the hub over TCP, pinned the same way | $tcp_rtt_pinned µs | $direct_rtt_pinned µs |"
echo "| \`connect join\` to the first byte of a TCP connection (TUN) | $first_byte ms | - |"
echo "| hub API, SQLite, 4 keep-alive clients: shares created/s, joins/s | $shares_per_s / $joins_per_s | - |"

# The chart README.md shows: one TCP stream, each direction, tunnel against direct.
chart="$PWD/scripts/bench.svg"
printf '%s\t%s\n' \
  "direct, joiner→sharer" "$direct" "direct, sharer→joiner" "$direct_r" \
  "one packet per crossing, up" "$single" "one packet per crossing, down" "$single_r" \
  "TUN direct path, up" "$tun" "TUN direct path, down" "$tun_r" \
  "TUN via relay, up" "$tunx" "TUN via relay, down" "$tunx_r" \
  "TUN via relay over TCP, up" "$tunt" "TUN via relay over TCP, down" "$tunt_r" \
  "user space direct, up" "$user" "user space direct, down" "$user_r" \
  "user space via relay, up" "$userx" "user space via relay, down" "$userx_r" \
  | "$bin/bench-chart" "$chart" "One TCP stream through the tunnel (iperf3, 2 vCPUs)" "Gbit/s"
echo
echo "chart: $chart"
