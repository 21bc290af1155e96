#!/usr/bin/env bash
# replay-vs-tshark.sh — replay throughput of `sgw replay --json` against `tshark -q -z sip,stat`
# on the same large SIP+RTP capture, in the same run (issue 2, Performance). Prints a markdown
# snippet for BENCHMARKS.md on stdout; progress goes to stderr.
#
# Usage: bench/replay-vs-tshark.sh [CAPTURE]
#   CAPTURE  an existing pcap to use; default: generate one with examples/gen_capture.rs into
#            ${BENCH_DIR:-${TMPDIR:-/tmp}/sgw-bench}/bench-${SIZE_MB}mb-seed${SEED}.pcap
#            (kept and reused by later runs; it is deterministic for a seed).
# Env: SIZE_MB (default 200), SEED (default 1), RUNS (default 5 rounds; medians are reported),
#      SKIP_SGW=1 to time tshark only; SGW_BIN=PATH to time another sgw binary (no build).
#
# Timing: RUNS interleaved rounds, each timing tshark and sgw back to back (bash's EPOCHREALTIME
# around /usr/bin/time, which gives the peak RSS); the median of each tool's times gives
# packets/s, and the median of the rounds' ratios the ratio. Both read the same file, which is
# in the page cache after a warm-up run of each (not counted).

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MB=${SIZE_MB:-200}
SEED=${SEED:-1}
RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/sgw-bench}
SGW=${SGW_BIN:-$ROOT/target/release/sgw}

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 2; }

for t in tshark capinfos cargo python3; do command -v "$t" >/dev/null || die "$t not found"; done

# --- the capture ---------------------------------------------------------------------------
if [[ $# -ge 1 ]]; then
    CAP=$1
    [[ -r "$CAP" ]] || die "cannot read $CAP"
    GEN_CMD="(given capture)"
else
    mkdir -p "$BENCH_DIR"
    CAP="$BENCH_DIR/bench-${SIZE_MB}mb-seed${SEED}.pcap"
    GEN_CMD="cargo run --release --example gen_capture -- --out FILE --size-mb $SIZE_MB --seed $SEED"
    if [[ ! -s "$CAP" ]]; then
        log "generating $CAP"
        (cd "$ROOT" && cargo run -q --release --example gen_capture -- \
            --out "$CAP" --size-mb "$SIZE_MB" --seed "$SEED") >&2
    else
        log "reusing $CAP"
    fi
fi
BYTES=$(stat -c %s "$CAP")
PACKETS=$(capinfos -c -M "$CAP" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}')
[[ "$PACKETS" =~ ^[0-9]+$ ]] || die "capinfos could not count packets in $CAP"

# --- sgw -------------------------------------------------------------------------------------
HAVE_SGW=0
if [[ "${SKIP_SGW:-0}" != 1 ]]; then
    if [[ -z "${SGW_BIN:-}" ]]; then
        log "building sgw (release)"
        (cd "$ROOT" && cargo build -q --release --bin sgw) >&2
    fi
    # probe on a small capture: the JSON document must have a summary
    PROBE="$ROOT/testdata/sip/sipp-cancel-and-486.pcap"
    probe_out=$("$SGW" replay --json "$PROBE" 2>/dev/null) || true   # exit 1 = rejections, fine
    if printf '%s' "$probe_out" |
        python3 -c 'import json,sys; json.load(sys.stdin)["summary"]["packets"]' 2>/dev/null; then
        HAVE_SGW=1
    else
        log "sgw replay --json does not work yet (probe: $PROBE): timing tshark only"
    fi
fi

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# --- timing ------------------------------------------------------------------------------------
# The two tools are interleaved: each of RUNS rounds times tshark and sgw back to back (in turn
# which goes first), so a change in the machine's speed during the run (a shared VM's steal time)
# reaches both. The ratio of each round is taken, and the median of the rounds reported.
# once CMD: prints "seconds max_rss_kb"; exit status 0 and 1 count as success (sgw replay exits
# 1 when it rejected something).
once() {
    local cmd=$1 tf t0 t1 rc=0 rss
    tf=$(mktemp)
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$tf" bash -c "$cmd" || rc=$?
    t1=$EPOCHREALTIME
    rss=$(tail -1 "$tf")
    rm -f "$tf"
    (( rc <= 1 )) || { log "failed (exit $rc): $cmd"; echo "NaN 0"; return; }
    awk -v a="$t0" -v b="$t1" -v r="$rss" 'BEGIN { printf "%.3f %s\n", b - a, r }'
}

TSHARK_CMD="tshark -r '$CAP' -q -z sip,stat > /dev/null"
SGW_CMD="'$SGW' replay --json '$CAP' > /dev/null"
log "warm-up (page cache)"
bash -c "$TSHARK_CMD" || true
[[ $HAVE_SGW == 1 ]] && { bash -c "$SGW_CMD" || true; }
ROUNDS=$(mktemp)
for ((i = 0; i < RUNS; i++)); do
    if [[ $HAVE_SGW == 1 && $((i % 2)) == 1 ]]; then
        read -r ts rs < <(once "$SGW_CMD")
        read -r tt rt < <(once "$TSHARK_CMD")
    else
        read -r tt rt < <(once "$TSHARK_CMD")
        ts=NaN rs=0
        [[ $HAVE_SGW == 1 ]] && read -r ts rs < <(once "$SGW_CMD")
    fi
    log "  round $((i + 1)): tshark $tt s, sgw $ts s"
    echo "$tt $rt $ts $rs" >>"$ROUNDS"
done
# Medians of each tool's times and of the rounds' ratios; the range of the ratios; peak RSS.
read -r T_TSHARK RSS_TSHARK T_SGW RSS_SGW RATIO RATIO_MIN RATIO_MAX < <(python3 - "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
tt = [float(r[0]) for r in rows]; ts = [float(r[2]) for r in rows]
ratios = [a / b for a, b in zip(tt, ts) if b == b and b > 0]
med = lambda v: statistics.median(v) if v else float("nan")
print(f"{med(tt):.3f} {max(int(r[1]) for r in rows)} {med(ts):.3f} {max(int(r[3]) for r in rows)}",
      f"{med(ratios):.1f} {min(ratios, default=float('nan')):.1f} {max(ratios, default=float('nan')):.1f}")
PY
)
rm -f "$ROUNDS"
TSHARK_SIP=$(tshark -r "$CAP" -q -z sip,stat 2>/dev/null | awk -F: '/Number of SIP messages/ {gsub(/ /, "", $2); print $2}')

if [[ $HAVE_SGW == 1 ]]; then
    SGW_JSON=$(mktemp)
    "$SGW" replay --json "$CAP" >"$SGW_JSON" 2>/dev/null || true
    SGW_SIP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["sip_messages"])' \
        "$SGW_JSON" 2>/dev/null || echo "?")
    rm -f "$SGW_JSON"
fi

# --- report -------------------------------------------------------------------------------------
rate() { python3 -c 'import sys; t=float(sys.argv[2]); print(f"{int(sys.argv[1]) / t:,.0f}" if t > 0 else "n/a")' "$PACKETS" "$1"; }
MODEL=$(lscpu | awk -F: '/Model name/ {sub(/^ +/, "", $2); print $2; exit}')
TSHARK_VER=$(tshark --version | head -1)
REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)

echo "### Replay throughput: sgw vs tshark ($(date -u +%Y-%m-%d), sgw $REV)"
echo
echo "- Capture: \`$(basename "$CAP")\` — $BYTES bytes, $PACKETS packets, $TSHARK_SIP SIP messages (tshark), made with \`$GEN_CMD\`"
echo "- Machine: $(nproc) CPUs, $MODEL; $TSHARK_VER"
echo "- $RUNS interleaved rounds after one warm-up (file in page cache), each timing tshark and sgw back to back with EPOCHREALTIME around /usr/bin/time; medians of the times and of the rounds' ratios; load average before the run: $LOAD"
echo
echo "| tool | command | wall time (s) | packets/s | max RSS (kB) |"
echo "|---|---|---|---|---|"
if [[ $HAVE_SGW == 1 ]]; then
    echo "| sgw | \`target/release/sgw replay --json FILE > /dev/null\` | $T_SGW | $(rate "$T_SGW") | ${RSS_SGW:-} |"
fi
echo "| tshark | \`tshark -r FILE -q -z sip,stat > /dev/null\` | $T_TSHARK | $(rate "$T_TSHARK") | ${RSS_TSHARK:-} |"
echo
if [[ $HAVE_SGW == 1 ]]; then
    echo "Ratio: sgw replay is **${RATIO}×** tshark, median of the rounds (range ${RATIO_MIN}–${RATIO_MAX}×; goal: ≥ 20×). SIP messages: sgw $SGW_SIP, tshark $TSHARK_SIP."
else
    echo "sgw replay: not available in this build (only tshark was timed)."
fi
