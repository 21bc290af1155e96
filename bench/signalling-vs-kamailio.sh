#!/usr/bin/env bash
# signalling-vs-kamailio.sh — calls per second at zero failed calls through the sgw gateway pair
# (GW2 -> mutual-TLS tunnel -> GW1) against kamailio as a transaction-stateful proxy (tm,
# t_relay, record-route), in the same run, same topology, on loopback (issue 4, Performance):
#
#   sgw:      sipp UAC --UDP--> GW2 ==TLS tunnel==> GW1 --UDP--> sipp UAS   (one `sgw run` process,
#                                                                           --role both, a config)
#   kamailio: sipp UAC --UDP--> kamailio (tm, stateful, record-route) --UDP--> sipp UAS
#
# Both paths end in the same sipp UAS (`-sn uas`); the UAC is `sipp -sn uac` (INVITE with SDP,
# 100/180/200, ACK, BYE/200, no media). For each DUT the rate rises in steps; each step places
# max(CALLS, 4 × RATE) calls at `-r RATE` (at least 4 s of load per step). A step passes when every call succeeds (sipp exit code 0, no
# failed call in the -trace_stat file). The DUT's CPS is the highest passing step whose
# achieved rate (calls / elapsed) is at least 90 % of the asked rate; the search stops at the
# first failing step (after one retry with a fresh DUT, to separate noise from saturation).
# "Lenient" CPS also passes a step whose only failed calls are sipp's complaint about a 180
# that arrived after the 200 (a multi-worker proxy relays them in parallel and they can swap;
# the call itself completes): the strict CPS is the highest strictly passing step below it.
#
# Usage: bench/signalling-vs-kamailio.sh
# Env:   RATES   "100 200 ..." the steps (default below); CALLS per step (default 2000);
#        REPEATS (default 3) — the whole sgw-then-kamailio search is repeated, interleaved, and
#        each repetition's CPS is printed; KAM_CHILDREN (default 2, = cores) kamailio UDP workers;
#        SGW_BIN=PATH to use another sgw binary (no build); ONLY=sgw|kamailio;
#        SIPP_BUFF (default 4194304) sipp's -buff_size, for the UAC and the UAS;
#        LOGDIR (default /tmp/sgw-bench-sig-logs): DUT and sipp logs of failing steps go there.
# Output: per-step lines on stderr; a markdown table on stdout. Needs sipp, kamailio, cargo.
# All sockets are on 127.0.0.1, ports picked free at start (sgw's media ranges 10000-29999 lie
# below the kernel's ephemeral range, so its per-call binds do not collide with sipp's sockets);
# every process started is killed on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATES=${RATES:-"200 400 600 800 1000 1200 1500 2000 2500 3000 3500 4000 5000 6000"}
CALLS=${CALLS:-2000}
REPEATS=${REPEATS:-3}
KAM_CHILDREN=${KAM_CHILDREN:-2}
ONLY=${ONLY:-}
# sipp's own socket buffers (its default, 64 KiB, drops datagrams at 2,500 calls/s on a busy
# host: the retransmissions that follow are the load generator's, not the DUT's). The same
# for both DUTs; the kernel caps it at net.core.rmem_max/wmem_max.
SIPP_BUFF=${SIPP_BUFF:-4194304}
SGW=${SGW_BIN:-$ROOT/target/release/sgw}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sgw-bench-sig.XXXXXX")
LOGDIR=${LOGDIR:-${TMPDIR:-/tmp}/sgw-bench-sig-logs}

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 2; }

for t in sipp kamailio python3; do command -v "$t" >/dev/null || die "$t not found"; done
if [[ -z "${SGW_BIN:-}" ]]; then
    log "building sgw (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin sgw) || die "build failed"
fi

PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do
        [[ -n "$p" ]] && kill -9 "$p" 2>/dev/null || true
    done
    # kamailio forks its workers; they sit in our process group file
    if [[ -f "$WORK/kamailio.pid" ]]; then
        kill "$(cat "$WORK/kamailio.pid")" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A free UDP port on 127.0.0.1 (and TCP too, for the tunnel / sgw's SIP TCP listener).
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

# --- the sipp UAS (shared by both DUTs, restarted per DUT run) -------------------------------
UAS_PID=""
start_uas() {
    rm -f "$WORK"/*.log "$WORK"/sgw.* "$WORK"/*.out
    UAS_PORT=$(free_port)
    sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" -nostdin -trace_err -buff_size "$SIPP_BUFF" \
        -error_file "$WORK/uas-errors.log" >/dev/null 2>&1 </dev/null &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    sleep 0.5
    kill -0 "$UAS_PID" 2>/dev/null || die "sipp UAS did not start"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# --- sgw: one process, both halves, inside next hop = the sipp UAS ---------------------------
SGW_PID=""
start_sgw() {
    local sip tunnel
    sip=$(free_port)
    tunnel=$(free_port)
    cat >"$WORK/sgw.toml" <<EOF
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
next_hop = "127.0.0.1:$UAS_PORT"
family = "ipv4"
[gw1.media]
ip = "127.0.0.1"
port_min = 20000
port_max = 29999
EOF
    "$SGW" run -q --config "$WORK/sgw.toml" --role both >"$WORK/sgw.out" 2>"$WORK/sgw.err" </dev/null &
    SGW_PID=$!
    PIDS+=("$SGW_PID")
    for _ in $(seq 100); do
        grep -q "tunnel up" "$WORK/sgw.out" "$WORK/sgw.err" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.5
    kill -0 "$SGW_PID" 2>/dev/null || { cat "$WORK/sgw.err" >&2; die "sgw did not start"; }
    DUT_ADDR="127.0.0.1:$sip"
    DUT_EXTRA=()
}

# --- kamailio: stateful proxy (tm), everything to the sipp UAS -------------------------------
KAM_PID=""
start_kamailio() {
    local port
    port=$(free_port)
    mkdir -p "$WORK/kam"
    sed -e "s/@UAS@/127.0.0.1:$UAS_PORT/" -e "s/@CHILDREN@/$KAM_CHILDREN/" \
        "$ROOT/bench/kamailio-stateful.cfg" >"$WORK/kamailio.cfg"
    kamailio -f "$WORK/kamailio.cfg" -l "udp:127.0.0.1:$port" -DD -E -m 256 -M 16 \
        -Y "$WORK/kam" -P "$WORK/kamailio.pid" >"$WORK/kam.log" 2>&1 </dev/null &
    KAM_PID=$!
    PIDS+=("$KAM_PID")
    sleep 1.5
    kill -0 "$KAM_PID" 2>/dev/null || { tail -20 "$WORK/kam.log" >&2; die "kamailio did not start"; }
    # The UAC's Request-URI names the UAS; kamailio relays to it (t_relay to the R-URI).
    DUT_ADDR="127.0.0.1:$UAS_PORT"
    DUT_EXTRA=(-rsa "127.0.0.1:$port")
}

# One step: CALLS calls at RATE through the DUT. Prints "ok|fail achieved_cps failed retrans".
step() {
    local rate=$1 tag=$2 port stat rc calls
    calls=$((rate * 4 > CALLS ? rate * 4 : CALLS))
    port=$(free_port)
    stat="$WORK/$tag-$rate.csv"
    rm -f "$stat"
    set +e
    local t0=$EPOCHREALTIME
    timeout $((calls / rate + 60)) sipp -sn uac "$DUT_ADDR" "${DUT_EXTRA[@]}" \
        -i 127.0.0.1 -p "$port" -r "$rate" -m "$calls" -l $((rate * 4 + 100)) -buff_size "$SIPP_BUFF" \
        -nostdin -trace_stat -stf "$stat" -fd 1 \
        -timeout 120s -timeout_error >"$WORK/$tag-$rate.out" 2>&1 </dev/null
    rc=$?
    local t1=$EPOCHREALTIME
    set -e
    python3 - "$stat" "$rc" "$rate" "$t0" "$t1" <<'EOF'
import csv, sys
path, rc, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0, t1 = float(sys.argv[4]), float(sys.argv[5])
try:
    rows = list(csv.reader(open(path), delimiter=";"))
    h, last = rows[0], rows[-1]
    g = lambda k: last[h.index(k)]
    ok, failed = int(g("SuccessfulCall(C)")), int(g("FailedCall(C)"))
    retr = int(g("Retransmissions(C)"))
    # sipp's ElapsedTime has whole seconds only: use the wall-clock time of the sipp run
    # (includes sipp's start and the last call's duration, so it slightly understates the rate)
    secs = t1 - t0
    achieved = ok / secs if secs > 0 else 0
except Exception as e:  # no stats: sipp died
    print(f"fail 0 -1 -1 0 rc={rc} ({e})"); sys.exit()
# A 180 that overtakes the 200 (two proxy workers relaying them in parallel) reaches sipp during
# the pause after the ACK: sipp counts the call failed ("Unexpected-Msg" on the Pause row).
# Such calls are complete in SIP terms; they are counted as "reorder", not as failures, for
# the lenient CPS.
late = 0
try:
    for line in open(path[:-4] + ".out"):
        if line.strip().startswith("Pause ["):
            late = int(line.split()[-1])
except Exception:
    pass
good = rc == 0 and failed == 0 and ok > 0
verdict = "ok" if good else ("reorder" if failed > 0 and failed == late else "fail")
print(f"{verdict} {achieved:.0f} ok={ok} failed={failed} late180={late} retrans={retr} secs={secs:.2f} rc={rc}")
EOF
}

# Searches the highest passing rate for a DUT; echoes it.
search() {
    local dut=$1 best=0 lenient=0 r out verdict achieved retried
    for r in $RATES; do
        retried=0
        while :; do
            start_uas
            "start_$dut"
            out=$(step "$r" "$dut")
            [[ $dut == sgw ]] && { stop_pid "$SGW_PID"; } || { stop_pid "$KAM_PID"; }
            stop_pid "$UAS_PID"
            log "$dut rate $r: $out (load $(cut -d' ' -f1-3 /proc/loadavg))"
            verdict=${out%% *}
            achieved=$(echo "$out" | cut -d' ' -f2)
            if [[ $verdict != fail && $achieved -ge $((r * 9 / 10)) ]]; then
                [[ $verdict == ok ]] && best=$r
                lenient=$r
                break
            fi
            mkdir -p "$LOGDIR"
            for f in sgw.err sgw.out kam.log "$dut-$r.out" "$dut-$r.csv" uas-errors.log; do
                [[ -f "$WORK/$f" ]] && cp "$WORK/$f" "$LOGDIR/$dut-$r-try$retried-$f"
            done
            if [[ $retried == 0 ]]; then retried=1; continue; fi
            echo "$best $lenient"
            return
        done
    done
    echo "$best $lenient"
}

log "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
log "$("$SGW" --version 2>/dev/null || echo '?'), commit $(cd "$ROOT" && git rev-parse --short HEAD)"
declare -a S K
for i in $(seq "$REPEATS"); do
    if [[ $ONLY != kamailio ]]; then S+=("$(search sgw)"); log "rep $i sgw CPS (strict lenient) ${S[-1]}"; fi
    if [[ $ONLY != sgw ]]; then K+=("$(search kamailio)"); log "rep $i kamailio CPS (strict lenient) ${K[-1]}"; fi
done

echo "| repetition | sgw (GW2→tunnel→GW1) CPS | kamailio (tm, stateful) CPS | ratio | lenient: sgw | lenient: kamailio | lenient ratio |"
echo "|---|---|---|---|---|---|---|"
for i in $(seq 0 $((REPEATS - 1))); do
    read -r s sl <<<"${S[$i]:-0 0}"
    read -r k kl <<<"${K[$i]:-0 0}"
    ratio=$(python3 -c "print(f'{$s/$k:.2f}×' if $k else '-')")
    lratio=$(python3 -c "print(f'{$sl/$kl:.2f}×' if $kl else '-')")
    echo "| $((i + 1)) | $s | $k | $ratio | $sl | $kl | $lratio |"
done
echo
echo "Steps of max($CALLS, 4 × rate) calls; rates: $RATES; kamailio children=$KAM_CHILDREN;" \
    "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
