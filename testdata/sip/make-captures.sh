#!/usr/bin/env bash
# make-captures.sh — record sgw's own SIP/RTP test captures on the loopback interface.
#
# Usage: testdata/sip/make-captures.sh [NAME...]
#   NAME is one of: udp4 tcp4 udp6 kamailio dtmf hold cancel baresip (default: all).
#   Env: OUT=DIR (default: this folder), KEEP=1 keeps the work directory (logs) for debugging.
#
# Needs (run as root or with capture rights on lo): sipp >= 3.6 built with PCAP and RTPSTREAM,
# dumpcap/tshark, kamailio (for "kamailio"), python3 (free ports, the test tone), baresip (optional).
#
# What it does, for each capture:
#   1. picks free SIP ports and a free block of RTP ports on loopback (python bind to port 0);
#   2. starts dumpcap on lo in pcap format with a capture filter on exactly those ports, so other
#      loopback traffic on this machine never ends up in the file;
#   3. runs the sipp UAS (and kamailio) in the background and the sipp UAC in the foreground, all
#      bounded by `timeout` and by a call count (-m);
#   4. stops the capture and prints the SIP message / RTP packet counts for README.md.
# Every run produces new bytes (timestamps, ports, tags, Call-IDs); counts stay the same. After a
# re-run, update the table in README.md with what this script prints.
#
# Traffic goes only to 127.0.0.1 / ::1, on ports chosen free at run time.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SCEN="$HERE/scenarios"
OUT=${OUT:-$HERE}
SIPP_PCAPS=${SIPP_PCAPS:-/usr/share/sip-tester}   # Debian's sip-tester puts g711a/dtmf_2833 here
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/sgw-captures.XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]:-}"; do
        [[ -n "$p" ]] && wait "$p" 2>/dev/null || true
    done
    if [[ "${KEEP:-0}" == 1 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

die() { echo "make-captures: $*" >&2; exit 1; }

for t in sipp dumpcap tshark python3; do command -v "$t" >/dev/null || die "$t not found"; done

# --- helpers ---------------------------------------------------------------------------------

# free_ports N HOST: N distinct ports free for both UDP and TCP on HOST.
free_ports() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
n, host = int(sys.argv[1]), sys.argv[2]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
out, keep = [], []
while len(out) < n:
    u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((host, 0)); port = u.getsockname()[1]
    t = socket.socket(fam, socket.SOCK_STREAM)
    try:
        t.bind((host, port))
    except OSError:
        u.close(); t.close(); continue
    keep += [u, t]; out.append(port)
print(*out)
EOF
}

# free_block LEN HOST: first port of LEN consecutive UDP ports free on HOST (even, 20000-59999).
free_block() {
    python3 - "$1" "$2" <<'EOF'
import random, socket, sys
n, host = int(sys.argv[1]), sys.argv[2]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
rng = random.Random()
for _ in range(200):
    base = rng.randrange(20000, 60000 - n) & ~1
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(fam, socket.SOCK_DGRAM); socks.append(s); s.bind((host, p))
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); sys.exit(0)
sys.exit("no free port block")
EOF
}

CAP_PID=
CAP_FILE=
# start_capture FILE FILTER
start_capture() {
    local file=$1 filter=$2 log="$WORK/dumpcap.$(basename "$1").log"
    rm -f "$file"
    CAP_FILE=$file
    dumpcap -i lo -P -q -f "$filter" -a duration:60 -w "$file" 2>"$log" &
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    # dumpcap prints "Capturing on 'Loopback: lo'" once the filter is installed (even with -q)
    for _ in $(seq 50); do
        grep -q "Capturing on" "$log" 2>/dev/null && return 0
        kill -0 "$CAP_PID" 2>/dev/null || { cat "$log" >&2; die "dumpcap failed"; }
        sleep 0.1
    done
    die "dumpcap did not start"
}

stop_capture() {
    sleep 0.7   # let the last retransmission-free packets land
    kill -INT "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
    [[ -s "$CAP_FILE" ]] || die "no capture written to $CAP_FILE"
    chmod 644 "$CAP_FILE"   # dumpcap creates 0600
}

# sipp_bg NAME ARGS...: a sipp (UAS) in the background, bounded by timeout.
sipp_bg() {
    local name=$1; shift
    (cd "$WORK" && exec timeout 40 sipp "$@" -nostdin -trace_err >"$WORK/$name.log" 2>&1) &
    PIDS+=("$!")
    LAST_BG=$!
    sleep 0.4   # let it bind
}

# sipp_fg NAME ARGS...: a sipp (UAC) in the foreground; fails the script if sipp fails.
sipp_fg() {
    local name=$1; shift
    if ! (cd "$WORK" && timeout 40 sipp "$@" -nostdin -trace_err >"$WORK/$name.log" 2>&1); then
        tail -40 "$WORK/$name.log" >&2
        die "sipp $name failed (KEEP=1 keeps $WORK)"
    fi
}

# wait_bg PID: wait for a background UAS to finish its -m calls.
wait_bg() {
    wait "$1" || { tail -40 "$WORK"/*.log >&2; die "background process $1 failed"; }
}

# counts FILE: "sip_messages rtp_packets rtpevent_packets malformed"
counts() {
    local f=$1 sip rtp ev bad
    # one line per SIP message even when a TCP segment carries several
    sip=$(tshark -r "$f" -Y sip -T fields -e sip.Request-Line -e sip.Status-Line \
            -E occurrence=a -E aggregator='\n' 2>/dev/null | tr '\t' '\n' | grep -c . || true)
    rtp=$(tshark -r "$f" -o rtp.heuristic_rtp:TRUE -Y rtp 2>/dev/null | wc -l)
    ev=$(tshark -r "$f" -o rtp.heuristic_rtp:TRUE -Y rtpevent 2>/dev/null | wc -l)
    bad=$(tshark -r "$f" -o rtp.heuristic_rtp:TRUE -Y _ws.malformed 2>/dev/null | wc -l)
    echo "$sip $rtp $ev $bad"
}

# --- the test tone: 2 s of G.711 mu-law (two tones, 3 Hz tremolo), deterministic ----------
python3 - "$WORK/tone.ulaw" <<'EOF'
import math, sys
def ulaw(x):  # G.711 mu-law encoder, x in [-32768, 32767]
    sign = 0x80 if x < 0 else 0
    x = min(abs(x), 32635) + 0x84
    exp = 7
    while exp > 0 and not x & (0x4000 >> (7 - exp)):
        exp -= 1
    return ~(sign | (exp << 4) | ((x >> (exp + 3)) & 0x0F)) & 0xFF
sr = 8000
out = bytearray()
for i in range(2 * sr):
    t = i / sr
    v = (0.6 * math.sin(2 * math.pi * 440 * t) + 0.4 * math.sin(2 * math.pi * 620 * t)) \
        * (0.5 + 0.5 * math.sin(2 * math.pi * 3 * t))
    out.append(ulaw(int(8000 * v)))
open(sys.argv[1], "wb").write(out)
EOF
ln -s "$SIPP_PCAPS" "$WORK/pcap"   # play_pcap_audio paths in the scenarios are pcap/<file>
cp "$SCEN"/*.xml "$WORK/"

# --- the captures ----------------------------------------------------------------------------

# basic HOST TRANSPORT FILE: 3 calls uac-media <-> uas-media
basic() {
    local host=$1 tr=$2 file=$3 hostf uas uac mp
    read -r uas uac < <(free_ports 2 "$host")
    mp=$(free_block 400 "$host")
    hostf=$host; [[ $host == *:* ]] && hostf="[$host]"
    start_capture "$file" "host $host and (port $uas or port $uac or udp portrange $mp-$((mp + 399)))"
    sipp_bg uas-$tr -sf uas-media.xml -t "$tr" -i "$host" -mi "$host" -p "$uas" -mp "$mp" -m 3
    local bg=$LAST_BG
    sipp_fg uac-$tr -sf uac-media.xml -t "$tr" -i "$host" -mi "$host" -p "$uac" -mp $((mp + 200)) \
        -s 100 -m 3 -l 1 -r 1 "$hostf:$uas"
    wait_bg "$bg"
    stop_capture
}

make_udp4() { basic 127.0.0.1 u1 "$OUT/sipp-uac-uas-udp-ipv4.pcap"; }
make_tcp4() { basic 127.0.0.1 t1 "$OUT/sipp-uac-uas-tcp-ipv4.pcap"; }
make_udp6() { basic ::1 u1 "$OUT/sipp-uac-uas-udp-ipv6.pcap"; }

make_kamailio() {
    command -v kamailio >/dev/null || die "kamailio not found"
    local h=127.0.0.1 uas uac kam mp file="$OUT/kamailio-proxy-udp.pcap"
    read -r uas uac kam < <(free_ports 3 $h)
    mp=$(free_block 400 $h)
    mkdir -p "$WORK/kam"
    start_capture "$file" "host $h and (port $uas or port $uac or port $kam or udp portrange $mp-$((mp + 399)))"
    timeout 60 kamailio -f "$HERE/kamailio.cfg" -l "udp:$h:$kam" -DD -E -n 1 -m 32 -M 8 \
        -Y "$WORK/kam" -w "$WORK/kam" -P "$WORK/kam/kamailio.pid" >"$WORK/kamailio.log" 2>&1 &
    local kpid=$!
    PIDS+=("$kpid")
    sleep 1
    kill -0 "$kpid" 2>/dev/null || { cat "$WORK/kamailio.log" >&2; die "kamailio did not start"; }
    sipp_bg uas-kam -sf uas-media.xml -i $h -mi $h -p "$uas" -mp "$mp" -m 2
    local bg=$LAST_BG
    # Request-URI points at the UAS; -rsa sends everything through kamailio, which record-routes.
    sipp_fg uac-kam -sf uac-media.xml -i $h -mi $h -p "$uac" -mp $((mp + 200)) \
        -s 100 -m 2 -l 1 -r 1 -rsa "$h:$kam" "$h:$uas"
    wait_bg "$bg"
    stop_capture
    kill "$kpid" 2>/dev/null || true
    wait "$kpid" 2>/dev/null || true
}

# pair UASXML UACXML [sipp args for both]: one call between two fresh sipps (capture already on)
pair() {
    local uasx=$1 uacx=$2 h=$3 uas=$4 uac=$5 mp=$6
    sipp_bg "${uasx%.xml}" -sf "$uasx" -i "$h" -mi "$h" -p "$uas" -mp "$mp" -m 1
    local bg=$LAST_BG
    sipp_fg "${uacx%.xml}" -sf "$uacx" -i "$h" -mi "$h" -p "$uac" -mp $((mp + 200)) -s 100 -m 1 "$h:$uas"
    wait_bg "$bg"
}

one_call() {   # one_call UASXML UACXML FILE
    local h=127.0.0.1 uas uac mp
    read -r uas uac < <(free_ports 2 $h)
    mp=$(free_block 400 $h)
    start_capture "$3" "host $h and (port $uas or port $uac or udp portrange $mp-$((mp + 399)))"
    pair "$1" "$2" $h "$uas" "$uac" "$mp"
    stop_capture
}

make_dtmf() { one_call uas-dtmf.xml uac-dtmf.xml "$OUT/sipp-dtmf-info-and-rfc4733.pcap"; }
make_hold() { one_call uas-hold.xml uac-hold.xml "$OUT/sipp-reinvite-hold.pcap"; }

make_cancel() {
    local h=127.0.0.1 uas uac mp file="$OUT/sipp-cancel-and-486.pcap"
    read -r uas uac < <(free_ports 2 $h)
    mp=$(free_block 400 $h)
    start_capture "$file" "host $h and (port $uas or port $uac or udp portrange $mp-$((mp + 399)))"
    pair uas-cancel.xml uac-cancel.xml $h "$uas" "$uac" "$mp"
    pair uas-busy.xml uac-busy.xml $h "$uas" "$uac" "$mp"
    stop_capture
}

# baresip: a real softphone (baresip 1.0; no sound card: ausine 440 Hz source, aubridge as a dummy player) calls the
# sipp UAS; "-t" makes it quit after a few seconds, hanging up with BYE.
make_baresip() {
    command -v baresip >/dev/null || die "baresip not found"
    local h=127.0.0.1 uas bs mp file="$OUT/baresip-call-sipp-uas.pcap" home="$WORK/baresip"
    read -r uas bs < <(free_ports 2 $h)
    mp=$(free_block 400 $h)
    mkdir -p "$home"
    cat >"$home/config" <<EOF
poll_method		epoll
sip_listen		$h:$bs
audio_player		aubridge,nowhere
audio_source		ausine,440
audio_alert		aubridge,nowhere
ausrc_srate		48000
ausrc_channels		2
rtp_ports		$((mp + 200))-$((mp + 299))
rtcp_mux		no
module_path		/usr/lib/baresip/modules
module			g711.so
module			ausine.so
module			aubridge.so
module_app		account.so
module_app		menu.so
dns_server		127.0.0.1:9
EOF
    printf '<sip:alice@%s:%s;transport=udp>;regint=0;audio_codecs=PCMU,PCMA\n' "$h" "$bs" >"$home/accounts"
    : >"$home/contacts"
    start_capture "$file" "host $h and (port $uas or port $bs or udp portrange $mp-$((mp + 399)))"
    sipp_bg uas-baresip -sf uas-media.xml -i $h -mi $h -p "$uas" -mp "$mp" -m 1
    local bg=$LAST_BG
    (cd "$home" && HOME="$home" timeout 20 baresip -f "$home" -e "/dial sip:bob@$h:$uas" -t 4 \
        >"$WORK/baresip.log" 2>&1 </dev/null) || true
    wait_bg "$bg"
    stop_capture
}

ALL=(udp4 tcp4 udp6 kamailio dtmf hold cancel baresip)
[[ $# -gt 0 ]] && ALL=("$@")
for n in "${ALL[@]}"; do
    declare -F "make_$n" >/dev/null || die "unknown capture: $n"
    echo "== $n" >&2
    "make_$n"
done

echo
echo "| file | bytes | SIP messages | RTP packets (heuristic on) | of which RFC 4733 events | malformed |"
echo "|---|---|---|---|---|---|"
for f in "$OUT"/*.pcap; do
    read -r sip rtp ev bad < <(counts "$f")
    echo "| $(basename "$f") | $(stat -c %s "$f") | $sip | $rtp | $ev | $bad |"
done
