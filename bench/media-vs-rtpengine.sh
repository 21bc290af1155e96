#!/usr/bin/env bash
# media-vs-rtpengine.sh — RTP relayed at zero loss and added latency, sgw vs rtpengine
# (userspace, no kernel module), same load, same run (issue 4, Performance). The load is N
# concurrent G.711 streams, 20 ms ptime (50 packets/s each, 172-byte RTP), made and timed by
# examples/rtp_load.rs:
#
#   sgw (demo): rtp_load places N calls through the `sgw run` demo (SIP INVITE/ACK, its sockets
#              in the SDP), then each stream's socket A sends to GW2's media port; the demo's
#              inside endpoint echoes, so a packet goes A -> GW2 -> TLS tunnel -> GW1 -> echo ->
#              GW1 -> tunnel -> GW2 -> A. Timed at A: round trip, reported also halved.
#              Per sent packet: 2 relays by GW2, 2 by GW1, 2 tunnel frames, 1 echo — all in the
#              one sgw process (2 tokio workers).
#   sgw-ext:   the same through `sgw run --config` (role both) whose GW1 next hop is rtp_load
#              itself (--uas): each call's inside leg ends on an rtp_load socket B that echoes.
#              A -> GW2 -> tunnel -> GW1 -> B is timed at B (one way through the pair), the
#              round trip at A; the echo costs rtp_load's CPU, as for rtpengine.
#   rtpengine: rtp_load makes N sessions with ng offer/answer; A -> rtpengine -> B, B (in
#              rtp_load) echoes -> rtpengine -> A. Timed at B (one way through one relay) and at
#              A (round trip, two relays). The echo costs rtp_load's CPU, not rtpengine's.
#   direct:    A -> B, B echoes -> A, no relay: the generator's own floor, subtracted to give
#              "added" latency.
#
# Usage: bench/media-vs-rtpengine.sh
# Env:   STREAMS "250 500 1000" (loads to run); SECONDS_PER_RUN (default 10); REPEATS (default
#        3, interleaved direct/sgw-ext/sgw/rtpengine); RTPE_THREADS (default 2, = cores);
#        SGW_BIN=PATH and LOAD_BIN=PATH to skip the build; DEMO=1 also runs the demo path
#        (limited by the demo's per-source call limits to 40 streams from rtp_load's address).
# Output: one JSON line per run on stderr, and a markdown table on stdout. Needs rtpengine
# (Debian: apt-get install rtpengine-daemon; run here in the foreground with --table=-1),
# python3, cargo. Loopback only; every process started is killed on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STREAMS=${STREAMS:-"250 500 1000"}
SECS=${SECONDS_PER_RUN:-10}
REPEATS=${REPEATS:-3}
RTPE_THREADS=${RTPE_THREADS:-2}
SGW=${SGW_BIN:-$ROOT/target/release/sgw}
LOAD=${LOAD_BIN:-$ROOT/target/release/examples/rtp_load}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sgw-bench-media.XXXXXX")

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 2; }

for t in rtpengine python3; do command -v "$t" >/dev/null || die "$t not found"; done
if [[ -z "${SGW_BIN:-}" || -z "${LOAD_BIN:-}" ]]; then
    log "building sgw and examples/rtp_load (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin sgw --example rtp_load) || die "build failed"
fi

PID=""
stop() {
    if [[ -n "$PID" ]]; then
        kill "$PID" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    fi
}
cleanup() { stop; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Runs rtp_load; appends its JSON (with a "dut" and "rep" field) to $WORK/results.jsonl.
record() {
    local dut=$1 rep=$2 n=$3
    shift 3
    local out
    if out=$(timeout $((SECS + 180)) "$LOAD" "$@" --streams "$n" --seconds "$SECS" 2>"$WORK/load.err"); then
        out=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["dut"]=sys.argv[2]; d["rep"]=int(sys.argv[3]); d["load"]=open("/proc/loadavg").read().split()[:3]; print(json.dumps(d))' "$out" "$dut" "$rep")
    else
        out="{\"dut\":\"$dut\",\"rep\":$rep,\"streams\":$n,\"error\":$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()[-400:]))' "$WORK/load.err")}"
    fi
    echo "$out" >>"$WORK/results.jsonl"
    echo "$out" >&2
}

run_direct() { record direct "$1" "$2" direct; }

run_sgw() {
    local rep=$1 n=$2 port
    port=$(free_port)
    "$SGW" run -q --listen "127.0.0.1:$port" >"$WORK/sgw.out" 2>"$WORK/sgw.err" </dev/null &
    PID=$!
    for _ in $(seq 150); do grep -q "call:" "$WORK/sgw.out" 2>/dev/null && break; sleep 0.1; done
    grep -q "call:" "$WORK/sgw.out" || { stop; die "sgw demo did not start: $(tail -5 "$WORK/sgw.err")"; }
    record sgw "$rep" "$n" sgw --sip "127.0.0.1:$port"
    stop
    grep "^stats" "$WORK/sgw.out" | cut -c1-600 >&2 || true
}

# sgw with a configuration (role both) whose GW1 next hop is rtp_load itself (--uas): the inside
# leg of each call ends on a socket of rtp_load that echoes (no demo echo in the sgw process).
run_sgw_ext() {
    local rep=$1 n=$2 sip tunnel uas
    sip=$(free_port)
    tunnel=$(free_port)
    uas=$(free_port)
    cat >"$WORK/sgw.toml" <<TOML
[gw2]
sip_udp = ["127.0.0.1:$sip"]
tunnel_listen = "127.0.0.1:$tunnel"
[gw2.media]
ip = "127.0.0.1"
port_min = 10000
port_max = 19999
[gw2.limits]
max_calls = 100000
# One sipp source at benchmark rates: the per-source rate limits are opened wide.
calls_per_source = 1000000
calls_per_source_burst = 1000000
requests_per_source = 1000000
requests_per_source_burst = 1000000
block_after = 0
[gw1]
tunnel = "127.0.0.1:$tunnel"
tunnel_server_name = "127.0.0.1"
sip_bind = "127.0.0.1:0"
next_hop = "127.0.0.1:$uas"
family = "ipv4"
[gw1.media]
ip = "127.0.0.1"
port_min = 20000
port_max = 29999
TOML
    "$SGW" run -q --config "$WORK/sgw.toml" --role both >"$WORK/sgw.out" 2>"$WORK/sgw.err" </dev/null &
    PID=$!
    for _ in $(seq 150); do grep -q "tunnel up" "$WORK/sgw.err" 2>/dev/null && break; sleep 0.1; done
    sleep 0.3
    record sgw-ext "$rep" "$n" sgw --sip "127.0.0.1:$sip" --uas "127.0.0.1:$uas"
    stop
    grep "^stats" "$WORK/sgw.out" | cut -c1-600 >&2 || true
}

run_rtpengine() {
    local rep=$1 n=$2 ng
    ng=$(free_port)
    rtpengine -f -E --config-file=none --table=-1 -i 127.0.0.1 -n "127.0.0.1:$ng" \
        -m 10000 -M 19999 -L 3 --num-threads="$RTPE_THREADS" >"$WORK/rtpe.log" 2>&1 </dev/null &
    PID=$!
    local ok=0
    for _ in $(seq 50); do
        if python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.2); s.sendto(b"p d7:command4:pinge",("127.0.0.1",int(sys.argv[1]))); sys.exit(0 if b"pong" in s.recv(100) else 1)' "$ng" 2>/dev/null; then
            ok=1; break
        fi
        sleep 0.1
    done
    [[ $ok == 1 ]] || { stop; die "rtpengine did not answer ng ping: $(tail -5 "$WORK/rtpe.log")"; }
    record rtpengine "$rep" "$n" rtpengine --ng "127.0.0.1:$ng"
    stop
}

log "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
log "rtpengine $(rtpengine --version 2>&1 | head -1), sgw commit $(cd "$ROOT" && git rev-parse --short HEAD)"
for n in $STREAMS; do
    for rep in $(seq "$REPEATS"); do
        run_direct "$rep" "$n"
        run_sgw_ext "$rep" "$n"
        # The demo keeps its per-source call limits (a burst of 40 new calls from one source),
        # so it carries at most that many streams from rtp_load's one address: DEMO=1 adds it.
        if [[ "${DEMO:-0}" == 1 ]]; then run_sgw "$rep" "$n"; fi
        run_rtpengine "$rep" "$n"
    done
done

python3 - "$WORK/results.jsonl" <<'EOF'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(xs):
    xs = [x for x in xs if x is not None]
    return st.median(xs) if xs else None
def g(d, *ks):
    for k in ks:
        d = d.get(k) if isinstance(d, dict) else None
    return d
print("| streams | path | offered pkt/s | received pkt/s | loss (median of reps, %) | one-way p50 / p99 µs | round trip/2 p50 / p99 µs | added one-way p50 / p99 µs |")
print("|---|---|---|---|---|---|---|---|")
for n in sorted({r["streams"] for r in rows}):
    base = [r for r in rows if r["streams"] == n and r["dut"] == "direct" and "error" not in r]
    b50 = med([g(r, "round_trip", "half_p50_us") for r in base])
    b99 = med([g(r, "round_trip", "half_p99_us") for r in base])
    bo50 = med([g(r, "one_way", "p50_us") for r in base])
    bo99 = med([g(r, "one_way", "p99_us") for r in base])
    for dut in ["direct", "sgw-ext", "sgw", "rtpengine"]:
        rs = [r for r in rows if r["streams"] == n and r["dut"] == dut]
        ok = [r for r in rs if "error" not in r]
        if not rs:
            continue  # a path not run (the demo without DEMO=1)
        if not ok:
            print(f"| {n} | {dut} | - | - | failed ({len(rs)} runs) | - | - | - |")
            continue
        off = med([r["offered_pps"] for r in ok])
        recv = med([r["received"] / r["seconds"] for r in ok])
        loss = med([r["loss_pct"] for r in ok])
        losses = ", ".join(f"{r['loss_pct']:.3f}" for r in ok)
        h50 = med([g(r, "round_trip", "half_p50_us") for r in ok])
        h99 = med([g(r, "round_trip", "half_p99_us") for r in ok])
        o50 = med([g(r, "one_way", "p50_us") for r in ok])
        o99 = med([g(r, "one_way", "p99_us") for r in ok])
        ow = f"{o50:.0f} / {o99:.0f}" if o50 is not None else "-"
        if dut == "direct":
            added = "(baseline)"
        elif dut == "sgw":
            added = f"{h50 - b50:.0f} / {h99 - b99:.0f} (from rt/2)"
        else:  # one way, measured at B
            added = f"{o50 - bo50:.0f} / {o99 - bo99:.0f}"
        print(f"| {n} | {dut} | {off:,.0f} | {recv:,.0f} | {loss:.3f} ({losses}) | {ow} | {h50:.0f} / {h99:.0f} | {added} |")
print()
print("Latencies are capped at 1 s by the histogram (999999 µs, or 500000 for halves, means ≥ 1 s).")
print(f"{len(rows)} runs of {rows[0].get('seconds', 0):.0f} s; load average at end: {open('/proc/loadavg').read().split()[:3]}")
EOF
