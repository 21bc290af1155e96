#!/usr/bin/env bash
# memory-per-call.sh — resident memory of the gateway pair per established call (issue 11):
#
#   sipp UAC --UDP--> GW2 ==TLS tunnel==> GW1 --UDP--> sipp UAS    (one `sgw run --role both`)
#
# Starts sgw (release) from a config like bench/signalling-vs-kamailio.sh's, measures its RSS
# idle (tunnel up, no call), places N calls with `sipp -sn uac -r RATE -m N -d HOLD` (INVITE
# with SDP, 200, ACK, each held HOLD ms before its BYE), waits until every call is up, and
# measures RSS and open descriptors while they are held, once the set-up transactions ended. With MEDIA=1 the calls are placed by
# examples/rtp_load.rs instead (it is the inside UAS too and echoes: 50 packets/s each way per
# call through both halves), and the RSS is measured while the media flows.
#
# Usage: bench/memory-per-call.sh            (N=1000, no media)
#        N=10000 bench/memory-per-call.sh
#        N=1000 MEDIA=1 bench/memory-per-call.sh
# Env:   N calls (default 1000); MEDIA=1 with media; RATE calls/s (default 500); SETTLE s
#        between the last call up and the measurement (default 35: after 64*T1);
#        SGW_BIN=PATH to use another sgw binary (no build); RTP_LOAD_BIN likewise for rtp_load;
#        SPLIT=1 runs GW2 and GW1 as two processes (`--role gw2`, `--role gw1`) and sums their
#        RSS and descriptors: half the descriptors per process, where the hard limit is below
#        4 × N (a container without CAP_SYS_RESOURCE: 20,000 here holds 9,900 calls split).
# Output: progress on stderr; one markdown row on stdout:
#   | calls | media | RSS idle | RSS loaded | per call | fds idle | fds loaded |
# Needs sipp (MEDIA=0), python3, cargo. Run as root for N=10000: each call holds four UDP
# sockets, so the script raises the descriptor limit (hard and soft) to 65536 for sgw.
# Media ports: GW2 on 127.0.0.2 and GW1 on 127.0.0.3, both 10000-31999 (below the kernel's
# ephemeral range, so per-call binds never meet sipp's sockets): 11,000 calls at most.
# Bounded in time; every process started is killed on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000}
MEDIA=${MEDIA:-0}
SPLIT=${SPLIT:-0}
RATE=${RATE:-500}
SGW=${SGW_BIN:-$ROOT/target/release/sgw}
RTP_LOAD=${RTP_LOAD_BIN:-$ROOT/target/release/examples/rtp_load}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sgw-bench-mem.XXXXXX")

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 2; }

for t in python3 ip; do command -v "$t" >/dev/null || die "$t not found"; done
[[ "$MEDIA" == 1 ]] || command -v sipp >/dev/null || die "sipp not found"
if [[ -z "${SGW_BIN:-}" ]]; then
    log "building sgw (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin sgw) || die "build failed"
fi
if [[ "$MEDIA" == 1 && -z "${RTP_LOAD_BIN:-}" ]]; then
    log "building rtp_load (release)"
    (cd "$ROOT" && cargo build --release --quiet --example rtp_load) || die "build failed"
fi
(( N <= 11000 )) || die "N=$N: the media port ranges hold 11,000 calls"

PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do
        [[ -n "$p" ]] && kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Four sockets per call, plus sipp's and the listeners.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "descriptor limit $(ulimit -n)"
# Per process: four sockets per call with both halves in one, two with SPLIT=1.
NEED=$(( (SPLIT == 1 ? 2 : 4) * N + 200 ))
(( $(ulimit -n) >= NEED )) || die "N=$N needs $NEED descriptors per process: the limit is $(ulimit -n) (try SPLIT=1)"

free_port() {
    python3 - <<'EOF'
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
EOF
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

SIP=$(free_port)
TUNNEL=$(free_port)
UAS_PORT=$(free_port)
# The calls' inside leg ends at the sipp UAS (no media) or at rtp_load's UAS (media).
cat >"$WORK/sgw.toml" <<EOF
[gw2]
sip_udp = ["127.0.0.1:$SIP"]
tunnel_listen = "127.0.0.1:$TUNNEL"
[gw2.media]
ip = "127.0.0.2"
port_min = 10000
port_max = 31999
[gw2.limits]
max_calls = 100000
calls_per_source = 1000000
calls_per_source_burst = 1000000
requests_per_source = 1000000
requests_per_source_burst = 1000000
block_after = 0
[gw1]
tunnel = "127.0.0.1:$TUNNEL"
tunnel_server_name = "127.0.0.1"
sip_bind = "127.0.0.1:0"
next_hop = "127.0.0.1:$UAS_PORT"
family = "ipv4"
[gw1.media]
ip = "127.0.0.3"
port_min = 10000
port_max = 31999
EOF

if [[ "$MEDIA" != 1 ]]; then
    sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" -nostdin >/dev/null 2>&1 </dev/null &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    sleep 0.5
    kill -0 "$UAS_PID" 2>/dev/null || die "sipp UAS did not start"
fi

# One process with both halves, or (SPLIT=1) GW2 and GW1 as two processes, summed.
# Each half then has its own configuration: the shared one with its certificate ([pki]).
if [[ "$SPLIT" == 1 ]]; then
    ROLES=(gw2 gw1)
    "$SGW" pki init "$WORK/pki" >/dev/null || die "sgw pki init failed"
    for r in gw2 gw1; do
        { cat "$WORK/sgw.toml"; printf '[pki]\nca = "%s"\ncert = "%s"\nkey = "%s"\n' \
            "$WORK/pki/ca.pem" "$WORK/pki/$r.pem" "$WORK/pki/$r.key"; } >"$WORK/sgw-$r.toml"
    done
else
    ROLES=(both)
    cp "$WORK/sgw.toml" "$WORK/sgw-both.toml"
fi
SGW_PIDS=()
for r in "${ROLES[@]}"; do
    "$SGW" run -q --config "$WORK/sgw-$r.toml" --role "$r" >"$WORK/sgw-$r.out" \
        2>"$WORK/sgw-$r.err" </dev/null &
    SGW_PIDS+=("$!")
    PIDS+=("$!")
    sleep 0.5
done
alive() { for p in "${SGW_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done; }
rss_all() { local t=0; for p in "${SGW_PIDS[@]}"; do t=$(( t + $(rss_kb "$p") )); done; echo "$t"; }
fds_all() { local t=0; for p in "${SGW_PIDS[@]}"; do t=$(( t + $(fds "$p") )); done; echo "$t"; }
for r in "${ROLES[@]}"; do
    for _ in $(seq 100); do
        grep -q "tunnel up" "$WORK/sgw-$r.out" "$WORK/sgw-$r.err" 2>/dev/null && break
        sleep 0.1
    done
done
alive || { cat "$WORK"/sgw-*.err >&2; die "sgw did not start"; }
grep -h "open files limit" "$WORK"/sgw-*.out "$WORK"/sgw-*.err >&2 || true
sleep 2
IDLE_RSS=$(rss_all)
IDLE_FDS=$(fds_all)
log "idle: RSS ${IDLE_RSS} kB, ${IDLE_FDS} fds"

RAMP=$(( (N + RATE - 1) / RATE ))
# Established calls are measured: SETTLE s after the last one is up, every transaction of the
# set-up has ended (64*T1 = 32 s). Calls are held until 10 s after that.
SETTLE=${SETTLE:-35}
HOLD_S=$(( RAMP + 15 + SETTLE + 10 ))
if [[ "$MEDIA" == 1 ]]; then
    "$RTP_LOAD" sgw --sip "127.0.0.1:$SIP" --uas "127.0.0.1:$UAS_PORT" --streams "$N" \
        --seconds "$HOLD_S" >"$WORK/load.out" 2>"$WORK/load.err" </dev/null &
    LOAD_PID=$!
else
    sipp -sn uac "127.0.0.1:$SIP" -i 127.0.0.1 -p "$(free_port)" -r "$RATE" -m "$N" -l "$N" \
        -d $(( HOLD_S * 1000 )) -nostdin -trace_stat -stf "$WORK/uac.csv" -fd 1 \
        -timeout $(( HOLD_S + 60 ))s -timeout_error >"$WORK/uac.out" 2>&1 </dev/null &
    LOAD_PID=$!
fi
PIDS+=("$LOAD_PID")

# Wait until every call holds its four sockets (or the ramp plus 15 s has passed), then let
# it settle and measure.
WANT=$(( IDLE_FDS + 4 * N ))
DEADLINE=$(( SECONDS + RAMP + 15 ))
while (( SECONDS < DEADLINE )); do
    (( $(fds_all) >= WANT )) && break
    alive || { cat "$WORK"/sgw-*.err >&2; die "sgw died"; }
    sleep 0.5
done
log "calls up; measuring in ${SETTLE} s (set-up transactions end)"
sleep "$SETTLE"
LOADED_RSS=$(rss_all)
LOADED_FDS=$(fds_all)
UP=$(( (LOADED_FDS - IDLE_FDS) / 4 ))
log "loaded: RSS ${LOADED_RSS} kB, ${LOADED_FDS} fds (~${UP} calls up of ${N})"
(( UP >= N )) || log "WARNING: only ~${UP} of ${N} calls hold their sockets"

# Let the load end, to report failed calls.
wait "$LOAD_PID" 2>/dev/null || true
if [[ "$MEDIA" == 1 ]]; then
    log "rtp_load: $(tail -1 "$WORK/load.out" 2>/dev/null) $(tail -3 "$WORK/load.err" 2>/dev/null)"
else
    python3 - "$WORK/uac.csv" >&2 <<'EOF' || true
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
h, last = rows[0], rows[-1]
print(f"bench: sipp: {last[h.index('SuccessfulCall(C)')]} successful, "
      f"{last[h.index('FailedCall(C)')]} failed calls")
EOF
fi

# Per call: over the calls up (four sockets each), not the calls asked for.
python3 - "$N" "$MEDIA" "$IDLE_RSS" "$LOADED_RSS" "$IDLE_FDS" "$LOADED_FDS" "$UP" <<'EOF'
import sys
n, media, idle, loaded, fi, fl, up = (int(x) for x in sys.argv[1:])
n = min(n, up) if up > 0 else n
per = (loaded - idle) * 1024 / n
print(f"| {n:,} | {'yes' if media else 'no'} | {idle/1024:.1f} MiB | {loaded/1024:.1f} MiB "
      f"| {per/1024:.1f} KiB | {fi:,} | {fl:,} |")
EOF
