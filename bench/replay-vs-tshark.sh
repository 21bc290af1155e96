#!/usr/bin/env bash
# replay-vs-tshark.sh — replay throughput of `sgw replay --json` against `tshark -q -z sip,stat`
# on the same large SIP+RTP capture, in the same run (issue 2, Performance). Prints a markdown
# snippet for BENCHMARKS.md on stdout; progress goes to stderr.
#
# Usage: bench/replay-vs-tshark.sh [CAPTURE]
#   CAPTURE  an existing pcap to use; default: generate one with examples/gen_capture.rs into
#            ${BENCH_DIR:-${TMPDIR:-/tmp}/sgw-bench}/bench-${SIZE_MB}mb-seed${SEED}.pcap
#            (kept and reused by later runs; it is deterministic for a seed).
# Env: SIZE_MB (default 200), SEED (default 1), RUNS (default 3; the median is reported),
#      SKIP_SGW=1 to time tshark only; SGW_BIN=PATH to time another sgw binary (no build).
#
# Timing uses hyperfine when installed, else bash's EPOCHREALTIME around /usr/bin/time (which
# gives the peak RSS); each tool runs RUNS times, and the
# median wall-clock time gives packets/s. Both read the same file, which is in the page cache
# after the first run (a warm-up run is done and not counted).

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MB=${SIZE_MB:-200}
SEED=${SEED:-1}
RUNS=${RUNS:-3}
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

# --- timing ------------------------------------------------------------------------------------
# time_cmd NAME CMD: prints "median_seconds max_rss_kb" (rss empty with hyperfine).
# Exit status 0 and 1 count as success (sgw replay exits 1 when it rejected something).
time_cmd() {
    local name=$1 cmd=$2
    log "timing $name: $cmd"
    if command -v hyperfine >/dev/null; then
        local json
        json=$(mktemp)
        hyperfine --warmup 1 --runs "$RUNS" -i --export-json "$json" --style none "$cmd" >&2
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(r["median"], "")' "$json"
        rm -f "$json"
        return
    fi
    bash -c "$cmd" || true # warm-up (page cache), not counted
    local i t0 t1 rc rss=0 r tf times=()
    tf=$(mktemp)
    for ((i = 0; i < RUNS; i++)); do
        t0=$EPOCHREALTIME
        rc=0
        /usr/bin/time -f '%M' -o "$tf" bash -c "$cmd" || rc=$?
        t1=$EPOCHREALTIME
        (( rc <= 1 )) || { log "$name failed (exit $rc)"; echo "NaN 0"; rm -f "$tf"; return; }
        r=$(tail -1 "$tf")
        (( r > rss )) && rss=$r
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
        log "  run $((i + 1)): ${times[-1]} s, max RSS $r kB"
    done
    rm -f "$tf"
    printf '%s\n' "${times[@]}" | sort -n | awk -v rss="$rss" '{a[NR]=$1} END {print a[int((NR+1)/2)], rss}'
}

TSHARK_CMD="tshark -r '$CAP' -q -z sip,stat > /dev/null"
read -r T_TSHARK RSS_TSHARK < <(time_cmd tshark "$TSHARK_CMD")
TSHARK_SIP=$(tshark -r "$CAP" -q -z sip,stat 2>/dev/null | awk -F: '/Number of SIP messages/ {gsub(/ /, "", $2); print $2}')

if [[ $HAVE_SGW == 1 ]]; then
    SGW_CMD="'$SGW' replay --json '$CAP' > /dev/null"
    read -r T_SGW RSS_SGW < <(time_cmd sgw "$SGW_CMD")
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
echo "- Median wall time of $RUNS runs after one warm-up (file in page cache), $(command -v hyperfine >/dev/null && echo 'hyperfine' || echo 'EPOCHREALTIME + /usr/bin/time') (shared machine: other load may slow both)"
echo
echo "| tool | command | wall time (s) | packets/s | max RSS (kB) |"
echo "|---|---|---|---|---|"
if [[ $HAVE_SGW == 1 ]]; then
    echo "| sgw | \`target/release/sgw replay --json FILE > /dev/null\` | $T_SGW | $(rate "$T_SGW") | ${RSS_SGW:-} |"
fi
echo "| tshark | \`tshark -r FILE -q -z sip,stat > /dev/null\` | $T_TSHARK | $(rate "$T_TSHARK") | ${RSS_TSHARK:-} |"
echo
if [[ $HAVE_SGW == 1 ]]; then
    RATIO=$(python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{a / b:.1f}" if b > 0 else "n/a")' "$T_TSHARK" "$T_SGW")
    echo "Ratio: sgw replay is **${RATIO}×** tshark (goal: ≥ 20×). SIP messages: sgw $SGW_SIP, tshark $TSHARK_SIP."
else
    echo "sgw replay: not available in this build (only tshark was timed)."
fi
