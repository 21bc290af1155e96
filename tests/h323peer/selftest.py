#!/usr/bin/env python3
"""selftest: h323peer.py against itself on loopback, one call per case.

Each case runs `h323peer.py answer` and `h323peer.py call` (ephemeral ports) and checks, on
both sides: the call connected with no error, at least MIN_RTP RTP packets each way, the
codec, how media was negotiated (fastStart or H.245) and over which H.245 transport, the
H.245 procedures seen (TCS, MSD, OLC, CLC, end session), the DTMF digits each side got, the
round-trip delay, and the release (who, which cause).

If tshark is installed (and can capture on lo), each case is captured and tshark must decode
every H.225.0 and H.245 frame with no malformed frame and no expert error: the H.225.0 port
is read as Q.931 over TPKT (tshark's heuristic), the separate H.245 port with decode-as
(`-d tcp.port==N,h245`); tshark must find the same H.245 messages, by name, that the two
sides say they sent (tunnelled ones included).

Usage: selftest.py [--python PY] [--seconds S] [--only NAME[,NAME]] [--require-tshark]
Exit status 0 when every case passes. One line per case on stdout, details on failure.
"""
import argparse
import collections
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "h323peer.py")
MIN_RTP = 100
CAUSE = 31
ANSWER_CAUSE = 17

# H.245 messages of a full H.245 call, each side
H245_CORE = ["terminalCapabilitySet", "terminalCapabilitySetAck", "masterSlaveDetermination",
             "masterSlaveDeterminationAck", "openLogicalChannel", "openLogicalChannelAck",
             "endSessionCommand"]

# name: (ip, answer args, call args, expectations)
#   media: "fastStart" / "h245"; transport: "tunnel" / "separate" / None; codec;
#   hangup: "call" (default) or "answer"; rtd: the caller measures RTD
CASES = [
    ("faststart", "127.0.0.1", [], [],
     {"media": "fastStart", "transport": None, "codec": "PCMA"}),
    ("faststart-dtmf-tunnel", "127.0.0.1", ["--dtmf", "4#"], ["--dtmf", "123"],
     {"media": "fastStart", "transport": "tunnel", "codec": "PCMA"}),
    ("faststart-dtmf-separate", "127.0.0.1", ["--dtmf", "12"], [],
     {"media": "fastStart", "transport": "separate", "codec": "PCMA", "listener": "answer"}),
    ("h245-tunnel", "127.0.0.1", [], ["--no-fast-start", "--rtd"],
     {"media": "h245", "transport": "tunnel", "codec": "PCMA", "rtd": True}),
    ("h245-in-setup-tunnel", "127.0.0.1", [], ["--no-fast-start", "--early-h245"],
     {"media": "h245", "transport": "tunnel", "codec": "PCMA"}),
    ("h245-in-setup-tunnel-refused", "127.0.0.1", ["--h245", "separate"],
     ["--no-fast-start", "--early-h245", "--dtmf", "3"],
     {"media": "h245", "transport": "separate", "codec": "PCMA", "listener": "answer"}),
    ("h245-separate-answer-listens", "127.0.0.1", [],
     ["--no-fast-start", "--h245", "separate", "--rtd"],
     {"media": "h245", "transport": "separate", "codec": "PCMA", "rtd": True,
      "listener": "answer"}),
    ("h245-separate-call-listens", "127.0.0.1", [],
     ["--no-fast-start", "--h245", "separate", "--h245-listen"],
     {"media": "h245", "transport": "separate", "codec": "PCMA", "listener": "call"}),
    ("faststart-refused-separate", "127.0.0.1", ["--no-fast-start"], [],
     {"media": "h245", "transport": "separate", "codec": "PCMA", "refused": True,
      "listener": "answer"}),
    ("faststart-refused-tunnel", "127.0.0.1", ["--no-fast-start"], ["--h245", "tunnel"],
     {"media": "h245", "transport": "tunnel", "codec": "PCMA", "refused": True}),
    ("dtmf-both-ways-tunnel", "127.0.0.1", ["--dtmf", "4#", "--dtmf-mode", "alphanumeric"],
     ["--no-fast-start", "--dtmf", "123"],
     {"media": "h245", "transport": "tunnel", "codec": "PCMA"}),
    ("dtmf-both-ways-separate", "127.0.0.1", ["--dtmf", "9*"],
     ["--no-fast-start", "--h245", "separate", "--dtmf", "0A", "--dtmf-mode", "alphanumeric"],
     {"media": "h245", "transport": "separate", "codec": "PCMA", "listener": "answer"}),
    ("codec-pcmu-preferred", "127.0.0.1", ["--codecs", "PCMU,PCMA"],
     ["--no-fast-start", "--codecs", "G729,PCMU"],
     {"media": "h245", "transport": "tunnel", "codec": "PCMU"}),
    ("answer-hangs-up-separate", "127.0.0.1", ["--release-timeout", "0"],
     ["--no-fast-start", "--h245", "separate", "--seconds-extra", "6"],
     {"media": "h245", "transport": "separate", "codec": "PCMA", "hangup": "answer",
      "listener": "answer"}),
    ("alerting-then-connect", "127.0.0.1", ["--alert-seconds", "1", "--no-fast-start"],
     ["--h245", "tunnel"],
     {"media": "h245", "transport": "tunnel", "codec": "PCMA", "refused": True,
      "alerting": True}),
    ("rejected-busy", "127.0.0.1", ["--reject", "17"], [], {"reject": 17}),
    ("ipv6-faststart", "::1", ["--dtmf", "5"], ["--dtmf", "6"],
     {"media": "fastStart", "transport": "tunnel", "codec": "PCMA"}),
    ("ipv6-h245-separate", "::1", ["--dtmf", "7"],
     ["--no-fast-start", "--h245", "separate", "--dtmf", "8", "--rtd"],
     {"media": "h245", "transport": "separate", "codec": "PCMA", "rtd": True,
      "listener": "answer"}),
    ("ipv6-h245-tunnel", "::1", [], ["--no-fast-start"],
     {"media": "h245", "transport": "tunnel", "codec": "PCMA"}),
]


def free_port(ip, kind=socket.SOCK_STREAM, pair=False):
    """A free port on `ip` (with pair: an even one whose successor is free too)."""
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(200):
        s = socket.socket(fam, kind)
        s.bind((ip, 0))
        port = s.getsockname()[1]
        if not pair:
            s.close()
            return port
        if port % 2 or port > 65000:
            s.close()
            continue
        t = socket.socket(fam, kind)
        try:
            t.bind((ip, port + 1))
        except OSError:
            continue
        finally:
            s.close()
            t.close()
        return port
    raise RuntimeError("no free port")


def hostport(ip, port):
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def read_line(proc, want, timeout):
    """The first stdout line of `proc` containing `want`, within `timeout` seconds."""
    end = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.split(b"\n"):
                if want.encode() in line:
                    return line.decode(), buf
    return None, buf


def summary_of(text, mode):
    for line in reversed(text.splitlines()):
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if isinstance(v, dict) and v.get("mode") == mode:
            return v
    return None


class Capture:
    """tshark on lo for the case's ports."""

    def __init__(self, pcap, ports, limit=180):
        self.pcap = pcap
        flt = " or ".join("tcp port %d" % p for p in ports)
        # stops by itself after `limit` seconds, should this script be killed
        self.proc = subprocess.Popen(["tshark", "-i", "lo", "-f", flt, "-w", pcap,
                                      "-a", "duration:%d" % limit],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        end = time.monotonic() + 15
        buf = b""
        fd = self.proc.stderr.fileno()
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                if b"Capturing on" in buf:
                    time.sleep(0.5)  # "Capturing on" comes a moment before the capture
                    return
        self.stop()
        raise RuntimeError("tshark did not start capturing: %s" % buf.decode(errors="replace"))

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def capture_works():
    """tshark can capture on lo: None, else why not."""
    if shutil.which("tshark") is None:
        return "tshark not installed"
    with tempfile.TemporaryDirectory() as d:
        try:
            c = Capture(os.path.join(d, "probe.pcap"), [9], 20)
            c.stop()
        except (RuntimeError, OSError) as e:
            return str(e)
    return None


def tshark(pcap, decode_as, display, fields):
    cmd = ["tshark", "-n", "-r", pcap, "-o", "tcp.try_heuristic_first:TRUE"]
    for port in decode_as:
        cmd += ["-d", "tcp.port==%d,h245" % port]
    cmd += ["-Y", display, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("tshark: %s" % out.stderr.decode(errors="replace"))
    return [line.split("\t") for line in out.stdout.decode(errors="replace").splitlines()]


def check_capture(pcap, h225_port, h245_port, separate, sent_h245):
    """Problems tshark finds in the case's capture."""
    problems = []
    ports = "(tcp.port==%d%s)" % (h225_port, " || tcp.port==%d" % h245_port if separate else "")
    decode = [h245_port] if separate else []
    bad = tshark(pcap, decode, "%s && (_ws.malformed || _ws.expert.severity >= error)" % ports,
                 ["frame.number", "_ws.expert.message"])
    if bad:
        problems.append("tshark: malformed frames or expert errors: %s" % bad)
    payload = len(tshark(pcap, decode, "tcp.port==%d && tcp.len > 0" % h225_port,
                         ["frame.number"]))
    q931 = len(tshark(pcap, decode, "tcp.port==%d && q931" % h225_port, ["frame.number"]))
    if payload != q931 or q931 < 2:
        problems.append("tshark: %d segments with payload on the H.225.0 port, %d read as "
                        "Q.931" % (payload, q931))
    if separate:
        payload = len(tshark(pcap, decode, "tcp.port==%d && tcp.len > 0" % h245_port,
                             ["frame.number"]))
        h245 = len(tshark(pcap, decode, "tcp.port==%d && h245" % h245_port, ["frame.number"]))
        if payload != h245 or h245 == 0:
            problems.append("tshark: %d segments with payload on the H.245 port, %d read as "
                            "H.245" % (payload, h245))
    # the H.245 messages tshark names (Info column), against what both sides sent
    names = set(sent_h245)
    seen = collections.Counter()
    for row in tshark(pcap, decode, "%s && h245" % ports, ["_ws.col.Info"]):
        for tok in row[0].replace(",", " ").split():
            if tok in names:
                seen[tok] += 1
    if seen != collections.Counter(sent_h245):
        problems.append("tshark decoded H.245 %s, the peers sent %s"
                        % (dict(seen), dict(collections.Counter(sent_h245))))
    return problems


def tshark_control(workdir):
    """The tshark check is not vacuous: an undecodable H.245 PDU on a decode-as port, and a
    Q.931 message with a broken User-user IE, are flagged. Problems, if any."""
    hp = peer_module()
    h225, h245 = free_port("127.0.0.1"), free_port("127.0.0.1")
    pcap = os.path.join(workdir, "control.pcap")
    cap = Capture(pcap, [h225, h245], 60)
    try:
        for port, payload in ((h245, b"\x02\x7f\xff\xff\xff"),
                              (h225, hp.q931(5, False, "setup",
                                             [(0x7E, b"\x05\x20\xff\xff\xff")]))):
            ls = socket.socket()
            ls.bind(("127.0.0.1", port))
            ls.listen(1)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                a, _ = ls.accept()
                c.sendall(hp.tpkt(payload))
                time.sleep(0.2)
                a.close()
            ls.close()
        time.sleep(0.5)
    finally:
        cap.stop()
    problems = []
    for port, what in ((h245, "H.245"), (h225, "H.225.0")):
        bad = tshark(pcap, [h245], "tcp.port==%d && (_ws.malformed || _ws.expert.severity >= "
                     "error)" % port, ["frame.number"])
        if not bad:
            problems.append("tshark did not flag a broken %s PDU" % what)
    return problems


def run_case(py, name, ip, answer_args, call_args, want, seconds, workdir, capture):
    h225 = free_port(ip)
    h245 = free_port(ip)
    extra = 0.0
    call_args = list(call_args)
    if "--seconds-extra" in call_args:
        i = call_args.index("--seconds-extra")
        extra = float(call_args[i + 1])
        del call_args[i:i + 2]
    cap = None
    pcap = os.path.join(workdir, "%s.pcap" % name)
    if capture:
        cap = Capture(pcap, [h225, h245], int(seconds + extra) + 120)
    answer = subprocess.Popen(
        [py, PEER, "answer", "--listen", str(h225), "--local-ip", ip,
         "--rtp-port", str(free_port(ip, socket.SOCK_DGRAM, True)),
         "--seconds", str(seconds), "--release-timeout", "20", "--h245-port", str(h245),
         "--cause", str(ANSWER_CAUSE), "--connect-timeout", "15"] + answer_args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    problems = []
    caller = answerer = None
    try:
        line, early = read_line(answer, "listening", 20)
        if line is None:
            raise RuntimeError("answer did not listen: %s" % early.decode(errors="replace"))
        call = subprocess.run(
            [py, PEER, "call", hostport(ip, h225), "--local-ip", ip,
             "--rtp-port", str(free_port(ip, socket.SOCK_DGRAM, True)),
             "--seconds", str(seconds + extra), "--cause", str(CAUSE),
             "--h245-port", str(h245), "--release-timeout", "5"] + call_args,
            capture_output=True, timeout=seconds + extra + 40)
        caller = summary_of(call.stdout.decode(errors="replace"), "call")
        if caller is None:
            problems.append("no caller summary (exit %d): %s %s" % (
                call.returncode, call.stdout.decode(errors="replace"), call.stderr.decode(errors="replace")))
        elif call.returncode != (1 if want.get("reject") else 0):
            problems.append("caller exit %d" % call.returncode)
        try:
            out, err = answer.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(answer.pid, signal.SIGKILL)
            out, err = answer.communicate()
            problems.append("answer did not exit")
        answerer = summary_of((early + out).decode(errors="replace"), "answer")
        if answerer is None:
            problems.append("no answerer summary (exit %s): %s %s" % (
                answer.returncode, out.decode(errors="replace"), err.decode(errors="replace")))
        elif answer.returncode != 0:
            problems.append("answerer exit %d" % answer.returncode)
    finally:
        if answer.poll() is None:
            os.killpg(answer.pid, signal.SIGKILL)
            answer.wait()
        if cap is not None:
            time.sleep(0.3)
            cap.stop()
    if caller is None or answerer is None:
        return problems, caller, answerer
    problems += check_sides(caller, answerer, answer_args, call_args, want)
    if cap is not None and not problems:
        sent = caller["h245_sent"] + answerer["h245_sent"]
        problems += check_capture(pcap, h225, h245, want.get("transport") == "separate", sent)
    return problems, caller, answerer


def arg_of(args, name):
    return args[args.index(name) + 1] if name in args else ""


def check_sides(caller, answerer, answer_args, call_args, want):
    problems = []

    def expect(cond, text):
        if not cond:
            problems.append(text)

    if want.get("reject"):
        cause = want["reject"]
        expect(caller["connected"] is False and answerer["connected"] is False,
               "a rejected call connected")
        expect(caller["release"] == {"by": "remote", "cause": cause},
               "caller's release %s" % caller["release"])
        expect(answerer["release"] == {"by": "us", "cause": cause},
               "answerer's release %s" % answerer["release"])
        expect(answerer["messages_sent"] == ["releaseComplete"],
               "answerer sent %s" % answerer["messages_sent"])
        for side, s in (("caller", caller), ("answerer", answerer)):
            expect(s["errors"] == [], "%s errors: %s" % (side, s["errors"]))
            expect(s["rtp_sent"] == 0, "%s sent RTP" % side)
        return problems
    if want.get("alerting"):
        sent = [m for m in answerer["messages_sent"] if m != "facility"]
        expect(sent[:3] == ["callProceeding", "alerting", "connect"],
               "answerer sent %s" % answerer["messages_sent"])
    hangup = want.get("hangup", "call")
    for side, s, other in (("caller", caller, answerer), ("answerer", answerer, caller)):
        expect(s["connected"] is True, "%s not connected" % side)
        expect(s["errors"] == [], "%s errors: %s" % (side, s["errors"]))
        expect(s["rtp_sent"] >= MIN_RTP, "%s sent %d RTP" % (side, s["rtp_sent"]))
        expect(s["rtp_received"] >= MIN_RTP, "%s received %d RTP" % (side, s["rtp_received"]))
        expect(s["rtp_received_not_rtp"] == 0, "%s got non-RTP" % side)
        expect(s["codec"] == want["codec"], "%s codec %s, want %s"
               % (side, s["codec"], want["codec"]))
        expect(s["media_via"] == want["media"], "%s media via %s, want %s"
               % (side, s["media_via"], want["media"]))
        expect(s["h245_transport"] == want["transport"], "%s H.245 transport %s, want %s"
               % (side, s["h245_transport"], want["transport"]))
        if want["media"] == "h245":
            for m in H245_CORE:
                expect(m in s["h245_sent"] and m in s["h245_seen"],
                       "%s: no %s both ways: sent %s, seen %s"
                       % (side, m, s["h245_sent"], s["h245_seen"]))
            expect(s["msd"] in ("master", "slave") and s["msd"] != other["msd"],
                   "MSD: %s %s, other %s" % (side, s["msd"], other["msd"]))
            expect(s.get("codec_received") == other["codec"], "%s receives %s, other sends %s"
                   % (side, s.get("codec_received"), other["codec"]))
            pt = {"PCMA": "8", "PCMU": "0", "G729": "18", "G722": "9", "G7231": "4"}
            expect(list(s["rtp_received_payload_types"]) == [pt[other["codec"]]],
                   "%s payload types %s" % (side, s["rtp_received_payload_types"]))
        if want.get("refused"):
            expect(s.get("fast_start_refused") is True, "%s: fastStart not refused" % side)
    # who closes: the hanging-up side sends CloseLogicalChannel, and both EndSessionCommand
    closer, other = (caller, answerer) if hangup == "call" else (answerer, caller)
    if want["media"] == "h245":
        expect("closeLogicalChannel" in closer["h245_sent"]
               and "closeLogicalChannelAck" in other["h245_sent"],
               "no CLC/CLC Ack from the hanging-up side")
        expect(closer["h245_sent"][-1:] == ["endSessionCommand"]
               and other["h245_sent"][-1:] == ["endSessionCommand"],
               "end session: %s / %s" % (closer["h245_sent"][-2:], other["h245_sent"][-2:]))
    cause = CAUSE if hangup == "call" else ANSWER_CAUSE
    expect(closer["release"] == {"by": "us", "cause": cause},
           "hanging-up side's release %s" % closer["release"])
    expect(other["release"] == {"by": "remote", "cause": cause},
           "other side's release %s" % other["release"])
    # DTMF both ways, in order
    expect(answerer.get("dtmf_received", []) == list(arg_of(call_args, "--dtmf")),
           "answerer got DTMF %s" % answerer.get("dtmf_received"))
    expect(caller.get("dtmf_received", []) == list(arg_of(answer_args, "--dtmf")),
           "caller got DTMF %s" % caller.get("dtmf_received"))
    if want.get("rtd"):
        expect(isinstance(caller["rtd_ms"], (int, float)) and caller["rtd_ms"] >= 0,
               "no RTD measured: %s" % caller["rtd_ms"])
    listener = want.get("listener")
    if listener:
        s = caller if listener == "call" else answerer
        expect("h245_listen" in s and s.get("h245_connection", "").startswith("accepted"),
               "%s did not listen for H.245: %s" % (listener, s.get("h245_connection")))
    return problems


def msd_vectors():
    """H.245 clause 8.2 master/slave decisions on fixed vectors (h323peer's msd_decide):
    problems, if any."""
    h323peer = peer_module()

    class Side:
        def __init__(self, tt, number):
            self.a = argparse.Namespace(terminal_type=tt)
            self.msd_number = number

    def decide(local, remote):
        return h323peer.Peer.msd_decide(Side(*local), *remote)

    problems = []
    vectors = [
        ((50, 5), (40, 5), "master"),            # the larger terminal type is master
        ((50, 5), (60, 5), "slave"),
        ((50, 0x10), (50, 0x11), "master"),      # (remote - local) mod 2^24 < 2^23
        ((50, 0x11), (50, 0x10), "slave"),
        ((50, 0xFFFFF0), (50, 0x05), "master"),  # modulo 2^24
        ((50, 0x05), (50, 0xFFFFF0), "slave"),
        ((50, 7), (50, 7), None),                # indeterminate: equal numbers
        ((50, 0), (50, 0x800000), None),         # indeterminate: 2^23 apart
    ]
    for local, remote, want in vectors:
        got = decide(local, remote)
        if got != want:
            problems.append("MSD local %s remote %s: %s, want %s" % (local, remote, got, want))
    rnd = __import__("random").Random(7)
    for _ in range(2000):
        a = (rnd.choice([50, 50, 60]), rnd.getrandbits(24))
        b = (rnd.choice([50, 50, 60]), rnd.getrandbits(24))
        x, y = decide(a, b), decide(b, a)
        if x is None:
            if y is not None:
                problems.append("MSD %s/%s: indeterminate on one side only" % (a, b))
        elif {x, y} != {"master", "slave"}:
            problems.append("MSD %s/%s: %s and %s" % (a, b, x, y))
    return problems


def peer_module():
    sys.dont_write_bytecode = True  # no __pycache__ next to the peer
    sys.path.insert(0, HERE)
    import h323peer

    return h323peer


def frames_for_answer(hp, rnd, rounds):
    """(name, TPKT byte strings) to send to `answer`: junk, broken framing, undecodable
    Q.931 / User-user / H.245, and random mutations of a valid Setup and of a Facility
    carrying a tunnelled TCS."""
    uu, _ = hp.asn1()
    mscm = hp.h245_codec()
    call_id = os.urandom(16)
    setup = {"h323-uu-pdu": {"h323-message-body": ("setup", {
        "protocolIdentifier": hp.H225_OID, "sourceInfo": hp.endpoint(), "activeMC": False,
        "conferenceID": os.urandom(16), "conferenceGoal": ("create", 0),
        "callType": ("pointToPoint", 0), "callIdentifier": {"guid": call_id},
        "mediaWaitForConnect": False, "canOverlapSend": False, "multipleCalls": False,
        "maintainConnection": False}), "h245Tunneling": True}}
    setup_msg = hp.q931(5, False, "setup", [(0x04, hp.BEARER_SPEECH),
                                            (0x70, hp.number_ie("2001")),
                                            (0x7E, hp.user_user(uu, setup))])
    mscm.set_val(("request", ("terminalCapabilitySet", {
        "sequenceNumber": 1, "protocolIdentifier": hp.H245_OID,
        "capabilityTable": [{"capabilityTableEntryNumber": 1,
                             "capability": ("receiveAudioCapability", ("g711Alaw64k", 20))}],
        "capabilityDescriptors": [{"capabilityDescriptorNumber": 0,
                                   "simultaneousCapabilities": [[1]]}]})))
    tcs = mscm.to_aper()

    def facility(control):
        return hp.q931(5, False, "facility", [(0x7E, hp.user_user(uu, {"h323-uu-pdu": {
            "h323-message-body": ("facility", {
                "protocolIdentifier": hp.H225_OID, "reason": ("transportedInformation", 0),
                "callIdentifier": {"guid": call_id}, "multipleCalls": False,
                "maintainConnection": False}),
            "h245Tunneling": True, "h245Control": control}}))])

    t = hp.tpkt
    cases = [
        ("not TPKT", [b"GET / HTTP/1.0\r\n\r\n"]),
        ("TPKT length 2", [b"\x03\x00\x00\x02"]),
        ("TPKT, not Q.931", [t(b"\x01\x02\x03")]),
        ("truncated User-user IE", [t(bytes([8, 2, 0, 5, 5, 0x7E, 0, 50, 5]))]),
        ("undecodable User-user", [t(hp.q931(5, False, "setup", [(0x7E, b"\x05\xff\xff")]))]),
        ("undecodable tunnelled H.245", [t(setup_msg), t(facility([b"\xff\xfe\x00"]))]),
        ("OLC before anything", [t(setup_msg), t(facility([b"\x03\x00"]))]),
    ]
    for i in range(rounds):
        which = rnd.choice(["setup", "facility"])
        base = bytearray(setup_msg if which == "setup" else facility([tcs]))
        for _ in range(rnd.randint(1, 6)):
            op = rnd.random()
            pos = rnd.randrange(len(base))
            if op < 0.6:
                base[pos] = rnd.getrandbits(8)
            elif op < 0.8:
                del base[pos:]
                if not base:
                    base = bytearray(b"\x08")
            else:
                base[pos:pos] = os.urandom(rnd.randint(1, 8))
        msgs = [t(bytes(base))] if which == "setup" else [t(setup_msg), t(bytes(base))]
        cases.append(("mutated %s #%d" % (which, i), msgs))
    return cases


def frames_for_call(hp, rnd, rounds):
    """(name, TPKT byte strings) a fake callee sends to `call` after its Setup: junk, and
    random mutations of a Connect carrying a tunnelled TCS."""
    uu, _ = hp.asn1()
    mscm = hp.h245_codec()
    mscm.set_val(("request", ("masterSlaveDetermination", {
        "terminalType": 50, "statusDeterminationNumber": 12345})))
    msd = mscm.to_aper()
    conn = hp.q931(5, True, "connect", [(0x7E, hp.user_user(uu, {"h323-uu-pdu": {
        "h323-message-body": ("connect", {
            "protocolIdentifier": hp.H225_OID, "destinationInfo": hp.endpoint(),
            "conferenceID": os.urandom(16), "callIdentifier": {"guid": os.urandom(16)},
            "multipleCalls": False, "maintainConnection": False,
            "h245Address": hp.transport("127.0.0.1", 9)}),
        "h245Tunneling": True, "h245Control": [msd]}}))])
    t = hp.tpkt
    cases = [
        ("junk answer", [b"\x00" * 40]),
        ("Connect with undecodable User-user", [t(conn[:12])]),
        ("Connect, h245Address to a closed port", [t(conn)]),
    ]
    for i in range(rounds):
        base = bytearray(conn)
        for _ in range(rnd.randint(1, 6)):
            pos = rnd.randrange(len(base))
            base[pos] = rnd.getrandbits(8)
        cases.append(("mutated connect #%d" % i, [t(bytes(base))]))
    return cases


def robustness_call(py, rounds, seed):
    """`call` against a fake callee answering junk and mutated messages: always a summary,
    no internal error, a bounded run."""
    hp = peer_module()
    rnd = __import__("random").Random(seed)
    problems = []
    for name, msgs in frames_for_call(hp, rnd, rounds):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        port = ls.getsockname()[1]
        proc = subprocess.Popen(
            [py, PEER, "call", "127.0.0.1:%d" % port, "--rtp-port",
             str(free_port("127.0.0.1", socket.SOCK_DGRAM, True)), "--seconds", "1",
             "--connect-timeout", "3", "--release-timeout", "1", "--no-fast-start"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            ls.settimeout(20)
            try:
                c, _ = ls.accept()
            except socket.timeout:
                problems.append("%s: the caller did not connect" % name)
                continue
            t0 = time.monotonic()
            with c:
                c.settimeout(5)
                try:
                    c.recv(65536)  # the Setup
                    for m in msgs:
                        c.sendall(m)
                        time.sleep(0.05)
                except OSError:
                    pass
                time.sleep(0.5)
            try:
                out, err = proc.communicate(timeout=2 * 3 + 1 + 1 + 6 + 3)
            except subprocess.TimeoutExpired:
                problems.append("%s: call did not exit in time" % name)
                continue
            summary = summary_of(out.decode(errors="replace"), "call")
            if summary is None:
                problems.append("%s: no summary (exit %s): %s" % (
                    name, proc.returncode, err.decode(errors="replace")[-500:]))
            elif any("internal error" in e or "not handled" in e for e in summary["errors"]):
                problems.append("%s: %s" % (name, summary["errors"]))
            elif err.strip():
                problems.append("%s: stderr: %s" % (name, err.decode(errors="replace")[-500:]))
            elif time.monotonic() - t0 > 15:
                problems.append("%s: took %.1fs" % (name, time.monotonic() - t0))
        finally:
            ls.close()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return problems


def robustness(py, rounds, seed):
    """`answer` fed junk and mutated messages: it always prints its summary, lists what it
    could not use in `errors`, never hits an internal error, and exits within its bound."""
    hp = peer_module()
    rnd = __import__("random").Random(seed)
    problems = []
    for name, msgs in frames_for_answer(hp, rnd, rounds):
        # A port found free may be taken before the peer binds it (the gateways the other
        # tests run bind their media ports ahead in ranges found the same way): a peer that
        # stopped on a port in use is started again on other ports, twice at most.
        for _ in range(3):
            port = free_port("127.0.0.1")
            proc = subprocess.Popen(
                [py, PEER, "answer", "--listen", str(port), "--rtp-port",
                 str(free_port("127.0.0.1", socket.SOCK_DGRAM, True)), "--seconds", "1",
                 "--connect-timeout", "3", "--release-timeout", "1"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            line, early = read_line(proc, "listening", 20)
            if line is not None or proc.poll() is None:
                break
            err = proc.stderr.read().decode(errors="replace")
            if "in use" not in err:
                break
        try:
            if line is None:
                problems.append("%s: answer did not listen (exit %s): %s" % (
                    name, proc.poll(), early.decode(errors="replace")[-300:]))
                continue
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                for m in msgs:
                    try:
                        c.sendall(m)
                    except OSError:
                        break
                    time.sleep(0.05)
                time.sleep(0.3)
            try:
                out, err = proc.communicate(timeout=2 * 3 + 1 + 1 + 6 + 3)
            except subprocess.TimeoutExpired:
                problems.append("%s: answer did not exit in time" % name)
                continue
            took = time.monotonic() - t0
            summary = summary_of((early + out).decode(errors="replace"), "answer")
            if summary is None:
                problems.append("%s: no summary (exit %s): %s" % (
                    name, proc.returncode, err.decode(errors="replace")[-500:]))
            elif any("internal error" in e or "not handled" in e for e in summary["errors"]):
                problems.append("%s: %s" % (name, summary["errors"]))
            elif err.strip():
                problems.append("%s: stderr: %s" % (name, err.decode(errors="replace")[-500:]))
            elif took > 15:
                problems.append("%s: took %.1fs" % (name, took))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--seconds", type=float, default=3.0, help="media time per call")
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--require-tshark", action="store_true",
                    help="fail when tshark cannot capture on lo (else its checks are skipped)")
    ap.add_argument("--keep", action="store_true", help="keep the captures")
    args = ap.parse_args()
    why = capture_works()
    if why:
        if args.require_tshark:
            print("selftest: tshark is required: %s" % why, flush=True)
            return 2
        print("selftest: tshark checks skipped: %s" % why, flush=True)
    only = {n for n in args.only.split(",") if n}
    failed = 0
    if not only or "msd" in only:
        problems = msd_vectors()
        failed += bool(problems)
        print("%s msd (decision vectors)" % ("FAIL" if problems else "ok  "), flush=True)
        for p in problems[:10]:
            print("  - %s" % p, flush=True)
    if not only or "robustness" in only:
        t0 = time.monotonic()
        problems = robustness(args.python, 16, 1) + robustness_call(args.python, 8, 2)
        failed += bool(problems)
        print("%s robustness (junk and mutated messages to answer and call, %.1fs)" % (
            "FAIL" if problems else "ok  ", time.monotonic() - t0), flush=True)
        for p in problems[:20]:
            print("  - %s" % p, flush=True)
    workdir = tempfile.mkdtemp(prefix="h323peer-selftest-")
    if why is None and (not only or "tshark-control" in only):
        problems = tshark_control(workdir)
        failed += bool(problems)
        print("%s tshark-control (a broken H.225.0 and H.245 PDU are flagged)" % (
            "FAIL" if problems else "ok  "), flush=True)
        for p in problems:
            print("  - %s" % p, flush=True)
    for name, ip, answer_args, call_args, want in CASES:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        try:
            problems, caller, answerer = run_case(args.python, name, ip, answer_args,
                                                  call_args, want, args.seconds, workdir,
                                                  why is None)
        except Exception as e:  # noqa: BLE001 - a case that crashes fails
            problems, caller, answerer = ["crashed: %r" % (e,)], None, None
        took = time.monotonic() - t0
        if problems:
            failed += 1
            print("FAIL %s (%.1fs)" % (name, took), flush=True)
            for p in problems:
                print("  - %s" % p, flush=True)
            print("  caller: %s" % json.dumps(caller), flush=True)
            print("  answerer: %s" % json.dumps(answerer), flush=True)
        else:
            print("ok   %s (%.1fs): %s, %s, RTP %d/%d, H.245 %d+%d%s" % (
                name, took, caller["media_via"], caller["h245_transport"],
                caller["rtp_sent"], caller["rtp_received"], len(caller["h245_sent"]),
                len(answerer["h245_sent"]),
                ", rtd %.2f ms" % caller["rtd_ms"] if caller["rtd_ms"] is not None else ""),
                flush=True)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("captures in %s" % workdir)
    print("selftest: %s" % ("%d failed" % failed if failed else "all passed"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
