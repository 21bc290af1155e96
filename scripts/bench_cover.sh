#!/usr/bin/env bash
# What cover traffic ([confidentiality] cover_traffic_kbps) costs on an idle gateway pair:
# the tunnel's bytes per second each way (TCP payload, as tshark sees it on lo) and the CPU time
# the `sgw run --role both` process uses, over a window, with cover traffic off and at a few
# rates. Needs root (tshark on lo) and a release build (`cargo build --release`).
#
#   scripts/bench_cover.sh [SECONDS]
#
# Loopback only; the ports below are taken for the run and freed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECS=${1:-10}
SGW=target/release/sgw
TUNNEL=17931
DIR=$(mktemp -d)
trap 'pkill -f "$DIR/sgw.toml" 2>/dev/null || true; rm -rf "$DIR"' EXIT

[ -x "$SGW" ] || { echo "build first: cargo build --release" >&2; exit 2; }
TICK=$(getconf CLK_TCK)

config() {
	cat <<EOF
[gw2]
sip_udp = ["127.0.0.1:17960"]
tunnel_listen = "127.0.0.1:$TUNNEL"
[gw2.media]
ip = "127.0.0.1"
port_min = 31000
port_max = 31099
[gw1]
tunnel = "127.0.0.1:$TUNNEL"
tunnel_server_name = "127.0.0.1"
sip_bind = "127.0.0.1:17970"
next_hop = "127.0.0.1:17980"
family = "ipv4"
[gw1.media]
ip = "127.0.0.2"
port_min = 31000
port_max = 31099
EOF
	if [ "$1" -gt 0 ]; then
		printf '[confidentiality]\ncover_traffic_kbps = %s\ncover_interval_ms = 20\n' "$1"
	fi
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "| cover_traffic_kbps | GW2 -> GW1 B/s | GW1 -> GW2 B/s | CPU (both halves) |"
echo "|---|---|---|---|"
for kbps in 0 256 512 2048; do
	config "$kbps" > "$DIR/sgw.toml"
	"$SGW" run --config "$DIR/sgw.toml" --role both -q > "$DIR/run.log" 2>&1 &
	pid=$!
	sleep 2
	kill -0 "$pid" 2>/dev/null || { cat "$DIR/run.log" >&2; exit 1; }
	before=$(cpu_ticks "$pid")
	# tshark runs a little longer than its duration: the window is cut by the packets' stamps.
	tshark -i lo -q -n -f "tcp port $TUNNEL" -a "duration:$(( SECS + 1 ))" \
		-T fields -e frame.time_relative -e tcp.srcport -e tcp.len 2>/dev/null > "$DIR/t.txt"
	after=$(cpu_ticks "$pid")
	kill "$pid"; wait "$pid" 2>/dev/null || true
	awk -v port="$TUNNEL" -v secs="$SECS" -v kbps="$kbps" \
		-v cpu="$(( after - before ))" -v tick="$TICK" '
		$1 < 0.5 || $1 >= 0.5 + secs { next }
		$2 == port { down += $3 } $2 != port { up += $3 }
		END { printf "| %s | %.0f | %.0f | %.1f %% of a core |\n", kbps, down / secs, up / secs, 100 * cpu / tick / secs }' "$DIR/t.txt"
done
