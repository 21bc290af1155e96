#!/usr/bin/env python3
"""h323peer: a small, independent H.323 endpoint for interop tests, built on pycrate.

It shares no code with sgw: Q.931 and TPKT are framed here by hand (ITU-T Q.931, H.225.0 §7,
RFC 1006), the H.225.0 and H.245 values are encoded and decoded with pycrate's ASN.1 runtime,
compiled from the ITU-T modules (H.235, H.245 v17, H.225.0 v8) by the loader in
h323-asn1/tests/pycrate_oracle.py.

Usage:
  h323peer.py call HOST:PORT [options]   place a fastStart call, exchange G.711 RTP, release
  h323peer.py answer [options]           listen, answer one fastStart call, RTP, await release
  h323peer.py check                      exit 0 if pycrate loads

Both print one JSON summary line on stdout when done; see README.md.
"""
import argparse
import hashlib
import json
import os
import random
import select
import socket
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

H225_OID = (0, 0, 8, 2250, 0, 4)

# Q.931 message types (Q.931 table 4-2) used by H.225.0
MT = {
    0x01: "alerting", 0x02: "callProceeding", 0x03: "progress", 0x05: "setup",
    0x07: "connect", 0x0F: "connectAck", 0x5A: "releaseComplete", 0x62: "facility",
    0x6E: "notify", 0x75: "statusEnquiry", 0x7D: "status", 0x7B: "information",
}
MT_NUM = {v: k for k, v in MT.items()}

# G.711 codecs: H.245 AudioCapability choice, RTP payload type, a silence octet
CODECS = {
    "PCMA": ("g711Alaw64k", 8, 0xD5),
    "PCMU": ("g711Ulaw64k", 0, 0xFF),
}
H245_TO_NAME = {v[0]: k for k, v in CODECS.items()}
# seconds between two digits sent
DTMF_GAP = 0.3


def asn1_dir():
    """The ITU-T ASN.1 modules: $SGW_ASN1_DIR, else shared/reference/asn1 above this file."""
    if os.environ.get("SGW_ASN1_DIR"):
        return os.environ["SGW_ASN1_DIR"]
    here = HERE
    while True:
        candidate = os.path.join(here, "shared", "reference", "asn1")
        if os.path.isfile(os.path.join(candidate, "h225.asn")):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            sys.exit("shared/reference/asn1 not found; set SGW_ASN1_DIR")
        here = parent


def compiled():
    """Compiles H.235, H.245 and H.225.0 with pycrate once, cached by content hash (the same
    loader and cache as h323-asn1/tests/pycrate_oracle.py)."""
    texts = []
    for name in ("h235.asn", "h245.asn", "h225.asn"):
        with open(os.path.join(asn1_dir(), name), "rb") as f:
            texts.append(f.read().decode("latin-1"))  # h245.asn is Latin-1; the others ASCII
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"h323-asn1-pycrate-{digest}")
    if not os.path.isfile(os.path.join(cache, "h323v8.py")):
        from pycrate_asn1c.asnproc import PycrateGenerator, compile_text, generate_modules

        os.makedirs(cache, exist_ok=True)
        tmp = os.path.join(cache, f"h323v8.{os.getpid()}.tmp")
        compile_text(texts)
        generate_modules(PycrateGenerator, tmp)
        os.replace(tmp, os.path.join(cache, "h323v8.py"))
    sys.path.insert(0, cache)
    import h323v8

    return h323v8


def asn1():
    mod = compiled()
    return (mod.H323_MESSAGES.H323_UserInformation,
            mod.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel)


def h245_codec():
    return compiled().MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage


# --- TPKT (RFC 1006) -----------------------------------------------------------------------

def tpkt(payload):
    return struct.pack("!BBH", 3, 0, len(payload) + 4) + payload


class Stream:
    """Reads TPKT frames from a TCP socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def frames(self, timeout):
        """Frames that arrive within `timeout` seconds (stops at the first one)."""
        deadline = time.monotonic() + timeout
        out = []
        first = True
        while not out and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0 and not first:
                break
            first = False
            r, _, _ = select.select([self.sock], [], [], max(left, 0))
            if r:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.closed = True
                self.buf += data
            while len(self.buf) >= 4:
                if self.buf[0] != 3:
                    raise ValueError("not a TPKT header: %s" % self.buf[:4].hex())
                n = struct.unpack("!H", self.buf[2:4])[0]
                if n < 4 or len(self.buf) < n:
                    break
                out.append(self.buf[4:n])
                self.buf = self.buf[n:]
        return out


# --- Q.931 (as H.225.0 uses it) ------------------------------------------------------------

def q931(call_ref, from_destination, msg_type, ies):
    """A Q.931 message: protocol discriminator 8, 2-octet call reference, type, IEs in order."""
    cr = call_ref & 0x7FFF
    if from_destination:
        cr |= 0x8000
    out = bytes([0x08, 2]) + struct.pack("!H", cr) + bytes([MT_NUM[msg_type]])
    for ident, value in ies:
        if ident == 0x7E:  # User-user: 2-octet length in H.225.0
            out += bytes([ident]) + struct.pack("!H", len(value)) + value
        else:
            out += bytes([ident, len(value)]) + value
    return out


def parse_q931(msg):
    if len(msg) < 3 or msg[0] != 0x08:
        raise ValueError("not Q.931: %s" % msg[:8].hex())
    n = msg[1] & 0x0F
    cr = int.from_bytes(msg[2:2 + n], "big")
    i = 2 + n
    mt = msg[i]
    i += 1
    ies = {}
    while i < len(msg):
        ident = msg[i]
        if ident & 0x80:  # single-octet IE
            i += 1
            continue
        if ident == 0x7E:
            ln = struct.unpack("!H", msg[i + 1:i + 3])[0]
            ies[ident] = msg[i + 3:i + 3 + ln]
            i += 3 + ln
        else:
            ln = msg[i + 1]
            ies[ident] = msg[i + 2:i + 2 + ln]
            i += 2 + ln
    return cr, MT.get(mt, "0x%02x" % mt), ies


def number_ie(digits):
    # octet 3: ext, type of number unknown, numbering plan ISDN/E.164
    return bytes([0x81]) + digits.encode("ascii")


BEARER_SPEECH = bytes([0x80, 0x90, 0xA3])  # speech, circuit 64 kbit/s, G.711 µ-law
CAUSE_IE = 0x08


def cause_ie(cause):
    return bytes([0x80, 0x80 | cause])  # ITU-T coding, location user


def user_user(uu_codec, value):
    uu_codec.set_val(value)
    return bytes([0x05]) + uu_codec.to_aper()  # protocol discriminator: X.208/X.209 coded


# --- H.225.0 / H.245 values ----------------------------------------------------------------

def unicast(ip, port):
    return ("unicastAddress", ("iPAddress", {"network": socket.inet_aton(ip), "tsapIdentifier": port}))


def transport(ip, port):
    return ("ipAddress", {"ip": socket.inet_aton(ip), "port": port})


def endpoint():
    return {
        "vendor": {
            "vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 0x4850},
            "productId": b"h323peer",
            "versionId": b"0.1",
        },
        "terminal": {},
        "mc": False,
        "undefinedNode": False,
    }


def olc_tx(number, codec, ip, rtp_port):
    """A channel we transmit on: our RTCP address; the answer gives the far end's RTP."""
    return {
        "forwardLogicalChannelNumber": number,
        "forwardLogicalChannelParameters": {
            "dataType": ("audioData", (codec, 20)),
            "multiplexParameters": ("h2250LogicalChannelParameters", {
                "sessionID": 1,
                "mediaControlChannel": unicast(ip, rtp_port + 1),
            }),
        },
    }


def olc_rx(number, codec, ip, rtp_port):
    """A channel we receive on (reverse parameters): our RTP and RTCP addresses."""
    return {
        "forwardLogicalChannelNumber": number,
        "forwardLogicalChannelParameters": {
            "dataType": ("nullData", 0),
            "multiplexParameters": ("none", 0),
        },
        "reverseLogicalChannelParameters": {
            "dataType": ("audioData", (codec, 20)),
            "multiplexParameters": ("h2250LogicalChannelParameters", {
                "sessionID": 1,
                "mediaChannel": unicast(ip, rtp_port),
                "mediaControlChannel": unicast(ip, rtp_port + 1),
            }),
        },
    }


def olc_answer_tx(number, codec, ip, rtp_port):
    """Answerer: the channel it transmits on (forward), with its RTCP address."""
    return olc_tx(number, codec, ip, rtp_port)


def olc_answer_rx(number, codec, ip, rtp_port):
    """Answerer: accepting the caller's transmit channel; the forward parameters carry where
    the answerer receives (mediaChannel)."""
    return {
        "forwardLogicalChannelNumber": number,
        "forwardLogicalChannelParameters": {
            "dataType": ("audioData", (codec, 20)),
            "multiplexParameters": ("h2250LogicalChannelParameters", {
                "sessionID": 1,
                "mediaChannel": unicast(ip, rtp_port),
                "mediaControlChannel": unicast(ip, rtp_port + 1),
            }),
        },
    }


def encode_olcs(olc_codec, values):
    out = []
    for v in values:
        olc_codec.set_val(v)
        out.append(olc_codec.to_aper())
    return out


def olc_media(olc_codec, raw):
    """(codec name, RTP address or None, is-reverse) from one fastStart OLC."""
    olc_codec.from_aper(raw)
    v = olc_codec.get_val()
    found = []
    for key, rev in (("forwardLogicalChannelParameters", False),
                     ("reverseLogicalChannelParameters", True)):
        p = v.get(key)
        if not p:
            continue
        dt = p.get("dataType")
        codec = None
        if dt and dt[0] == "audioData" and isinstance(dt[1], tuple):
            codec = H245_TO_NAME.get(dt[1][0], dt[1][0])
        mp = p.get("multiplexParameters")
        addr = None
        if mp and mp[0] == "h2250LogicalChannelParameters":
            mc = mp[1].get("mediaChannel")
            if mc and mc[0] == "unicastAddress" and mc[1][0] == "iPAddress":
                a = mc[1][1]
                addr = (socket.inet_ntoa(a["network"]), a["tsapIdentifier"])
        if codec:
            found.append({"codec": codec, "rtp": addr, "reverse": rev,
                          "number": v.get("forwardLogicalChannelNumber")})
    return found


def uu_body(uu_codec, raw):
    if not raw or raw[0] != 0x05:
        raise ValueError("User-user IE without protocol discriminator 5")
    uu_codec.from_aper(raw[1:])
    return uu_codec.get_val()["h323-uu-pdu"]["h323-message-body"]


# --- RTP -----------------------------------------------------------------------------------

class Rtp:
    def __init__(self, ip, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.setblocking(False)
        self.sent = 0
        self.received = 0
        self.received_bad = 0
        self.payload_types = {}
        self.ssrc = random.getrandbits(32)

    def run(self, remote, codec, seconds, stop=None):
        """Sends 20 ms G.711 packets to `remote` for `seconds`, counting what comes back;
        `stop()` returning true ends it early."""
        _, pt, fill = CODECS[codec]
        seq = random.getrandbits(16)
        ts = random.getrandbits(32)
        payload = bytes([fill]) * 160
        start = time.monotonic()
        nxt = start
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            if remote and now >= nxt:
                hdr = struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc)
                try:
                    self.sock.sendto(hdr + payload, remote)
                    self.sent += 1
                except OSError:
                    pass
                seq += 1
                ts += 160
                nxt += 0.02
            self.drain(max(0.0, min(nxt - time.monotonic(), 0.02)))
            if stop and stop():
                break
        self.drain(0.3)

    def drain(self, wait):
        r, _, _ = select.select([self.sock], [], [], wait)
        while r:
            try:
                data, _ = self.sock.recvfrom(2048)
            except BlockingIOError:
                break
            if len(data) >= 12 and data[0] >> 6 == 2:
                self.received += 1
                pt = str(data[1] & 0x7F)
                self.payload_types[pt] = self.payload_types.get(pt, 0) + 1
            else:
                self.received_bad += 1
            r, _, _ = select.select([self.sock], [], [], 0)


# --- placing a call ------------------------------------------------------------------------

def place_call(args):
    uu_codec, olc_codec = asn1()
    host, port = args.target.rsplit(":", 1)
    summary = {"mode": "call", "messages_sent": [], "messages_seen": [], "connected": False,
               "codec": None, "remote_rtp": None, "rtp_sent": 0, "rtp_received": 0,
               "release": None, "errors": []}
    call_ref = args.call_ref or random.randint(1, 0x7FFF)
    conf_id = os.urandom(16)
    call_id = os.urandom(16)
    rtp = Rtp(args.local_ip, args.rtp_port)
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.setblocking(True)
    stream = Stream(sock)
    local_ip = sock.getsockname()[0]

    def send(msg_type, ies):
        sock.sendall(tpkt(q931(call_ref, False, msg_type, ies)))
        summary["messages_sent"].append(msg_type)

    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    offer = []
    n = 1
    for c in codecs:
        offer.append(olc_tx(n, CODECS[c][0], args.local_ip, args.rtp_port))
        offer.append(olc_rx(n + 1, CODECS[c][0], args.local_ip, args.rtp_port))
        n += 2
    setup = {
        "protocolIdentifier": H225_OID,
        "sourceAddress": [("dialedDigits", args.calling)],
        "sourceInfo": endpoint(),
        "destinationAddress": [("dialedDigits", args.called)],
        "destCallSignalAddress": transport(host, int(port)),
        "activeMC": False,
        "conferenceID": conf_id,
        "conferenceGoal": ("create", 0),
        "callType": ("pointToPoint", 0),
        "sourceCallSignalAddress": transport(local_ip, sock.getsockname()[1]),
        "callIdentifier": {"guid": call_id},
        "fastStart": encode_olcs(olc_codec, offer),
        "mediaWaitForConnect": False,
        "canOverlapSend": False,
        "multipleCalls": False,
        "maintainConnection": False,
    }
    tunnel = bool(args.dtmf)
    uu = {"h323-uu-pdu": {"h323-message-body": ("setup", setup), "h245Tunneling": tunnel}}
    send("setup", [
        (0x04, BEARER_SPEECH),
        (0x6C, number_ie(args.calling)),
        (0x70, number_ie(args.called)),
        (0x7E, user_user(uu_codec, uu)),
    ])

    def send_dtmf(digits):
        """Each digit as a tunnelled H.245 UserInputIndication (signal, with a duration) in
        an H.225.0 Facility (reason transportedInformation), DTMF_GAP apart."""
        mscm = h245_codec()
        for d in digits:
            mscm.set_val(("indication", ("userInput", ("signal", {
                "signalType": d, "duration": args.dtmf_duration}))))
            fac = {"h323-uu-pdu": {
                "h323-message-body": ("facility", {
                    "protocolIdentifier": H225_OID,
                    "reason": ("transportedInformation", 0),
                    "callIdentifier": {"guid": call_id},
                    "multipleCalls": False,
                    "maintainConnection": False,
                }),
                "h245Tunneling": True,
                "h245Control": [mscm.to_aper()],
            }}
            send("facility", [(0x7E, user_user(uu_codec, fac))])
            summary.setdefault("dtmf_sent", []).append(d)
            rtp.run(remote_of(), summary["codec"], DTMF_GAP, None)

    def remote_of():
        if not summary["remote_rtp"]:
            return None
        h, p = summary["remote_rtp"].rsplit(":", 1)
        return (h, int(p))

    def handle(frame):
        cr, mt, ies = parse_q931(frame)
        entry = {"type": mt}
        if CAUSE_IE in ies and len(ies[CAUSE_IE]) >= 2:
            entry["cause"] = ies[CAUSE_IE][-1] & 0x7F
        if 0x7E in ies:
            try:
                body = uu_body(uu_codec, ies[0x7E])
                entry["uuie"] = body[0]
                fs = body[1].get("fastStart") if isinstance(body[1], dict) else None
                if fs:
                    chans = [ch for raw in fs for ch in olc_media(olc_codec, raw)]
                    entry["fastStart"] = chans
                    # our transmit channel, accepted: its forward parameters say where the far
                    # end receives (a receive channel echoed back carries our own address)
                    for ch in chans:
                        if ch["rtp"] and not ch["reverse"] and summary["remote_rtp"] is None:
                            summary["remote_rtp"] = "%s:%d" % ch["rtp"]
                            summary["codec"] = ch["codec"]
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                summary["errors"].append("%s: undecodable User-user: %s" % (mt, e))
        summary["messages_seen"].append(entry)
        if mt == "releaseComplete":
            summary["release"] = {"by": "remote", "cause": entry.get("cause")}
        if mt == "connect":
            summary["connected"] = True
        if mt == "statusEnquiry":
            send("status", [(CAUSE_IE, cause_ie(30)), (0x14, bytes([10 if summary["connected"] else 3]))])

    deadline = time.monotonic() + args.connect_timeout
    while not summary["connected"] and summary["release"] is None and not stream.closed:
        if time.monotonic() > deadline:
            summary["errors"].append("no Connect within %ss" % args.connect_timeout)
            break
        for f in stream.frames(0.2):
            handle(f)
    if not summary["connected"] and summary["release"] is None and stream.closed:
        summary["errors"].append("connection closed before Connect")

    if summary["connected"] and summary["release"] is None:
        remote = None
        if summary["remote_rtp"]:
            h, p = summary["remote_rtp"].rsplit(":", 1)
            remote = (h, int(p))
        else:
            summary["errors"].append("no RTP address in the fastStart answer")

        def stop():
            for f in stream.frames(0):
                handle(f)
            return summary["release"] is not None or stream.closed

        if args.dtmf:
            # a second of media first, then the digits, then the rest of the media
            rtp.run(remote, summary["codec"] or codecs[0], 1.0, stop)
            if summary["release"] is None:
                send_dtmf(args.dtmf)
            rtp.run(remote, summary["codec"] or codecs[0], max(args.seconds - 1.0, 0), stop)
        else:
            rtp.run(remote, summary["codec"] or codecs[0], args.seconds, stop)
    if summary["release"] is None and not stream.closed:
        rc = {"h323-uu-pdu": {"h323-message-body": ("releaseComplete", {
            "protocolIdentifier": H225_OID,
            "callIdentifier": {"guid": call_id},
        }), "h245Tunneling": False}}
        send("releaseComplete", [(CAUSE_IE, cause_ie(args.cause)), (0x7E, user_user(uu_codec, rc))])
        summary["release"] = {"by": "us", "cause": args.cause}
        # whatever still comes before the far end closes
        end = time.monotonic() + 1.0
        while time.monotonic() < end and not stream.closed:
            for f in stream.frames(0.2):
                handle(f)
    sock.close()
    summary["rtp_sent"] = rtp.sent
    summary["rtp_received"] = rtp.received
    summary["rtp_received_not_rtp"] = rtp.received_bad
    summary["rtp_received_payload_types"] = rtp.payload_types
    return summary


# --- answering a call ----------------------------------------------------------------------

def answer_call(args):
    uu_codec, olc_codec = asn1()
    summary = {"mode": "answer", "messages_sent": [], "messages_seen": [], "connected": False,
               "codec": None, "remote_rtp": None, "rtp_sent": 0, "rtp_received": 0,
               "release": None, "errors": [], "calling": None, "called": None}
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.local_ip, args.listen))
    lsock.listen(1)
    print(json.dumps({"listening": "%s:%d" % (args.local_ip, args.listen)}), flush=True)
    r, _, _ = select.select([lsock], [], [], args.connect_timeout)
    if not r:
        summary["errors"].append("no connection within %ss" % args.connect_timeout)
        return summary
    sock, _ = lsock.accept()
    lsock.close()
    stream = Stream(sock)
    rtp = Rtp(args.local_ip, args.rtp_port)
    state = {"cr": None, "call_id": None}

    def send(msg_type, ies):
        sock.sendall(tpkt(q931(state["cr"], True, msg_type, ies)))
        summary["messages_sent"].append(msg_type)

    def handle(frame):
        cr, mt, ies = parse_q931(frame)
        entry = {"type": mt}
        if CAUSE_IE in ies and len(ies[CAUSE_IE]) >= 2:
            entry["cause"] = ies[CAUSE_IE][-1] & 0x7F
        if mt == "setup":
            state["cr"] = cr & 0x7FFF
            if 0x6C in ies:
                summary["calling"] = ies[0x6C][1:].lstrip(b"\x80\x81\x82\x83").decode("ascii", "replace")
            if 0x70 in ies:
                summary["called"] = ies[0x70][1:].decode("ascii", "replace")
        if 0x7E in ies:
            try:
                body = uu_body(uu_codec, ies[0x7E])
                entry["uuie"] = body[0]
                for raw in uu_codec.get_val()["h323-uu-pdu"].get("h245Control") or []:
                    mscm = h245_codec()
                    mscm.from_aper(raw)
                    v = mscm.get_val()
                    entry.setdefault("h245", []).append(v[1][0] if isinstance(v[1], tuple) else v[0])
                    if v[0] == "indication" and v[1][0] == "userInput":
                        ui = v[1][1]
                        digit = ui[1] if ui[0] == "alphanumeric" else (
                            ui[1].get("signalType") if ui[0] == "signal" else None)
                        if digit:
                            summary.setdefault("dtmf_received", []).append(digit)
                if mt == "setup":
                    state["call_id"] = body[1].get("callIdentifier", {}).get("guid")
                    fs = body[1].get("fastStart") or []
                    entry["fastStart"] = [ch for raw in fs for ch in olc_media(olc_codec, raw)]
            except Exception as e:  # noqa: BLE001
                summary["errors"].append("%s: undecodable User-user: %s" % (mt, e))
        summary["messages_seen"].append(entry)
        if mt == "setup":
            answer(entry.get("fastStart") or [])
        if mt == "releaseComplete":
            summary["release"] = {"by": "remote", "cause": entry.get("cause")}
        if mt == "statusEnquiry":
            send("status", [(CAUSE_IE, cause_ie(30)), (0x14, bytes([10 if summary["connected"] else 9]))])

    def answer(offer):
        # choose the first offered G.711 codec that has both a transmit and a receive channel
        chosen = None
        for ch in offer:
            if ch["codec"] in CODECS and not ch["reverse"]:
                rx = [c for c in offer if c["reverse"] and c["codec"] == ch["codec"] and c["rtp"]]
                if rx:
                    chosen = (ch, rx[0])
                    break
        uu_extra = {}
        if chosen:
            caller_tx, caller_rx = chosen
            summary["codec"] = caller_tx["codec"]
            summary["remote_rtp"] = "%s:%d" % caller_rx["rtp"]
            h245 = CODECS[caller_tx["codec"]][0]
            uu_extra["fastStart"] = encode_olcs(olc_codec, [
                olc_answer_rx(caller_tx["number"], h245, args.local_ip, args.rtp_port),
                olc_answer_tx(caller_rx["number"], h245, args.local_ip, args.rtp_port),
            ])
        else:
            summary["errors"].append("no G.711 fastStart offer to accept")
        guid = state["call_id"] or os.urandom(16)
        cp = {"protocolIdentifier": H225_OID, "destinationInfo": endpoint(),
              "callIdentifier": {"guid": guid}}
        send("callProceeding", [(0x7E, user_user(uu_codec, {"h323-uu-pdu": {
            "h323-message-body": ("callProceeding", cp), "h245Tunneling": False}}))])
        conn = {"protocolIdentifier": H225_OID, "destinationInfo": endpoint(),
                "conferenceID": os.urandom(16), "callIdentifier": {"guid": guid},
                "multipleCalls": False, "maintainConnection": False}
        conn.update(uu_extra)
        send("connect", [(0x04, BEARER_SPEECH), (0x7E, user_user(uu_codec, {"h323-uu-pdu": {
            "h323-message-body": ("connect", conn), "h245Tunneling": False}}))])
        summary["connected"] = chosen is not None

    deadline = time.monotonic() + args.connect_timeout
    while not summary["connected"] and summary["release"] is None and not stream.closed:
        if time.monotonic() > deadline:
            summary["errors"].append("no Setup within %ss" % args.connect_timeout)
            break
        for f in stream.frames(0.2):
            handle(f)
    if summary["connected"] and summary["release"] is None:
        h, p = summary["remote_rtp"].rsplit(":", 1)

        def stop():
            for f in stream.frames(0):
                handle(f)
            return summary["release"] is not None or stream.closed

        rtp.run((h, int(p)), summary["codec"], args.seconds, stop)
        # keep waiting for the caller's Release Complete (media stopped after `seconds`)
        end = time.monotonic() + args.release_timeout
        while summary["release"] is None and not stream.closed and time.monotonic() < end:
            for f in stream.frames(0.2):
                handle(f)
    if summary["release"] is None and not stream.closed:
        send("releaseComplete", [(CAUSE_IE, cause_ie(args.cause)), (0x7E, user_user(uu_codec, {
            "h323-uu-pdu": {"h323-message-body": ("releaseComplete", {
                "protocolIdentifier": H225_OID,
                "callIdentifier": {"guid": state["call_id"] or os.urandom(16)}}),
                "h245Tunneling": False}}))])
        summary["release"] = {"by": "us", "cause": args.cause}
    sock.close()
    summary["rtp_sent"] = rtp.sent
    summary["rtp_received"] = rtp.received
    summary["rtp_received_not_rtp"] = rtp.received_bad
    summary["rtp_received_payload_types"] = rtp.payload_types
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("check")
    for name in ("call", "answer"):
        p = sub.add_parser(name)
        if name == "call":
            p.add_argument("target", help="HOST:PORT of the H.225.0 call signalling listener")
            p.add_argument("--calling", default="4930555")
            p.add_argument("--called", default="2001")
            p.add_argument("--codecs", default="PCMA,PCMU", help="fastStart offer, in order")
            p.add_argument("--call-ref", type=int, default=0)
            p.add_argument("--dtmf", default="", help="digits (0-9*#A-D) to send after 1 s of "
                           "media, as tunnelled H.245 UserInputIndication signals")
            p.add_argument("--dtmf-duration", type=int, default=100, help="ms, per digit")
        else:
            p.add_argument("--listen", type=int, required=True, help="TCP port to listen on")
            p.add_argument("--release-timeout", type=float, default=30.0,
                           help="after the media, how long to wait for the caller's release")
        p.add_argument("--local-ip", default="127.0.0.1")
        p.add_argument("--rtp-port", type=int, required=True)
        p.add_argument("--seconds", type=float, default=4.0, help="media time")
        p.add_argument("--cause", type=int, default=16, help="Q.931 cause when we release")
        p.add_argument("--connect-timeout", type=float, default=10.0)
    args = ap.parse_args()
    if args.mode == "check":
        asn1()
        return 0
    summary = place_call(args) if args.mode == "call" else answer_call(args)
    print(json.dumps(summary), flush=True)
    return 0 if summary["connected"] and not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
