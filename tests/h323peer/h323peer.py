#!/usr/bin/env python3
"""h323peer: a small, independent H.323 endpoint for interop tests, built on pycrate.

It shares no code with sgw: Q.931 and TPKT are framed here by hand (ITU-T Q.931, H.225.0 §7,
RFC 1006), the H.225.0 and H.245 values are encoded and decoded with pycrate's ASN.1 runtime,
compiled from the ITU-T modules (H.235, H.245 v17, H.225.0 v8) by the loader in
h323-asn1/tests/pycrate_oracle.py.

Usage:
  h323peer.py call HOST:PORT [options]   place one call, exchange RTP, release
  h323peer.py answer [options]           listen, answer one call, RTP, await release
  h323peer.py check                      exit 0 if pycrate loads

Media is negotiated with fastStart, or over H.245 (tunnelled in H.225.0 or on a separate
TCP connection: TCS, MSD, OLC, UII, RTD, CLC, end session). Both modes print one JSON
summary line on stdout when done; see README.md.
"""
import argparse
import collections
import hashlib
import ipaddress
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
# H.245 version 13 (the TCS protocolIdentifier)
H245_OID = (0, 0, 8, 245, 0, 13)
# H.245 terminalType of a terminal (H.323 table 1: 50 for terminals)
TERMINAL_TYPE = 50

# Q.931 message types (Q.931 table 4-2) used by H.225.0
MT = {
    0x01: "alerting", 0x02: "callProceeding", 0x03: "progress", 0x05: "setup",
    0x07: "connect", 0x0F: "connectAck", 0x5A: "releaseComplete", 0x62: "facility",
    0x6E: "notify", 0x75: "statusEnquiry", 0x7D: "status", 0x7B: "information",
}
MT_NUM = {v: k for k, v in MT.items()}

# Audio codecs: H.245 AudioCapability choice, RTP payload type, a silence octet, payload
# octets per packet, packet time (ms)
Codec = collections.namedtuple("Codec", "cap pt fill size ptime")
CODECS = {
    "PCMA": Codec("g711Alaw64k", 8, 0xD5, 160, 20),
    "PCMU": Codec("g711Ulaw64k", 0, 0xFF, 160, 20),
    "G722": Codec("g722-64k", 9, 0x00, 160, 20),
    "G729": Codec("g729", 18, 0x00, 20, 20),
    "G7231": Codec("g7231", 4, 0x00, 24, 30),
}
H245_TO_NAME = {v.cap: k for k, v in CODECS.items()}
# seconds between two digits sent
DTMF_GAP = 0.3
# how long the side that sent EndSessionCommand waits for the far end's, and how long the
# side that received one waits for the Release Complete before sending its own
END_SESSION_WAIT = 2.0
# retries of master/slave determination on an indeterminate result (H.245 N236)
MSD_RETRIES = 3
# H.245 messages that are tolerated (recorded in h245_seen) without any action
H245_TOLERATED = {
    "miscellaneousCommand", "miscellaneousIndication", "flowControlCommand",
    "vendorIdentification", "jitterIndication", "h2250MaximumSkewIndication",
    "terminalCapabilitySetRelease", "masterSlaveDeterminationRelease",
    "openLogicalChannelConfirm", "requestChannelCloseRelease", "functionNotSupported",
    "functionNotUnderstood", "userInputSupportIndication", "sendTerminalCapabilitySet",
}


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
    """Reads TPKT frames from a TCP socket (H.225.0 call signalling, or separate H.245)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def read(self):
        """Frames from one recv() (call when the socket is readable); sets `closed` at EOF
        or on an error. A byte stream that is not TPKT raises ValueError."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, socket.timeout):
            return []
        except OSError:
            data = b""
        if not data:
            self.closed = True
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            if self.buf[0] != 3:
                self.closed = True
                raise ValueError("not a TPKT header: %s" % self.buf[:4].hex())
            n = struct.unpack("!H", self.buf[2:4])[0]
            if n < 4:
                self.closed = True
                raise ValueError("TPKT length %d" % n)
            if len(self.buf) < n:
                break
            out.append(self.buf[4:n])
            self.buf = self.buf[n:]
        return out

    def send(self, payload):
        self.sock.sendall(tpkt(payload))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


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
    if len(msg) < 3 + n:
        raise ValueError("short Q.931 message: %s" % msg.hex())
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
            if i + 3 > len(msg):
                raise ValueError("truncated User-user IE")
            ln = struct.unpack("!H", msg[i + 1:i + 3])[0]
            ies[ident] = msg[i + 3:i + 3 + ln]
            i += 3 + ln
        else:
            if i + 2 > len(msg):
                raise ValueError("truncated IE 0x%02x" % ident)
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

def is_v6(ip):
    return ":" in ip


def packed(ip):
    return socket.inet_pton(socket.AF_INET6 if is_v6(ip) else socket.AF_INET, ip)


def unpacked(raw):
    return str(ipaddress.ip_address(raw))


def hostport(addr):
    """"host:port" ("[v6]:port" for IPv6) of a (host, port) pair."""
    h, p = addr
    return "[%s]:%d" % (h, p) if is_v6(h) else "%s:%d" % (h, p)


def split_hostport(text):
    """(host, port) from "host:port" or "[v6]:port"."""
    h, p = text.rsplit(":", 1)
    return h.strip("[]"), int(p)


def unicast(ip, port):
    """An H.245 TransportAddress (unicast, IPv4 or IPv6)."""
    if is_v6(ip):
        return ("unicastAddress", ("iP6Address", {"network": packed(ip), "tsapIdentifier": port}))
    return ("unicastAddress", ("iPAddress", {"network": packed(ip), "tsapIdentifier": port}))


def h245_address_of(ta):
    """(host, port) of an H.245 TransportAddress, or None."""
    if ta and ta[0] == "unicastAddress" and ta[1][0] in ("iPAddress", "iP6Address"):
        a = ta[1][1]
        return (unpacked(a["network"]), a["tsapIdentifier"])
    return None


def transport(ip, port):
    """An H.225.0 TransportAddress (IPv4 or IPv6)."""
    if is_v6(ip):
        return ("ip6Address", {"ip": packed(ip), "port": port})
    return ("ipAddress", {"ip": packed(ip), "port": port})


def h225_address_of(ta):
    """(host, port) of an H.225.0 TransportAddress, or None."""
    if ta and ta[0] in ("ipAddress", "ip6Address"):
        return (unpacked(ta[1]["ip"]), ta[1]["port"])
    return None


def endpoint():
    return {
        "vendor": {
            "vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 0x4850},
            "productId": b"h323peer",
            "versionId": b"0.2",
        },
        "terminal": {},
        "mc": False,
        "undefinedNode": False,
    }


def audio_cap(name):
    """The H.245 AudioCapability of a codec: 20 ms of G.711/G.722 per packet, two G.729
    frames, one G.723.1 frame."""
    c = CODECS[name]
    if name == "G7231":
        return (c.cap, {"maxAl-sduAudioFrames": 1, "silenceSuppression": False})
    if name == "G729":
        return (c.cap, 2)
    return (c.cap, 20)


def codec_name(cap):
    """Our codec name for an AudioCapability value, else its H.245 choice name."""
    if isinstance(cap, tuple):
        return H245_TO_NAME.get(cap[0], cap[0])
    return None


def olc_tx(number, codec, ip, rtp_port):
    """A channel we transmit on: our RTCP address; the answer gives the far end's RTP."""
    return {
        "forwardLogicalChannelNumber": number,
        "forwardLogicalChannelParameters": {
            "dataType": ("audioData", audio_cap(codec)),
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
            "dataType": ("audioData", audio_cap(codec)),
            "multiplexParameters": ("h2250LogicalChannelParameters", {
                "sessionID": 1,
                "mediaChannel": unicast(ip, rtp_port),
                "mediaControlChannel": unicast(ip, rtp_port + 1),
            }),
        },
    }


def olc_answer_rx(number, codec, ip, rtp_port):
    """Answerer: accepting the caller's transmit channel; the forward parameters carry where
    the answerer receives (mediaChannel)."""
    return {
        "forwardLogicalChannelNumber": number,
        "forwardLogicalChannelParameters": {
            "dataType": ("audioData", audio_cap(codec)),
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
        if dt and dt[0] == "audioData":
            codec = codec_name(dt[1])
        mp = p.get("multiplexParameters")
        addr = None
        if mp and mp[0] == "h2250LogicalChannelParameters":
            addr = h245_address_of(mp[1].get("mediaChannel"))
        if codec:
            found.append({"codec": codec, "rtp": addr, "reverse": rev,
                          "number": v.get("forwardLogicalChannelNumber")})
    return found


# --- RTP -----------------------------------------------------------------------------------

class Rtp:
    """One RTP socket: sends silence packets of the codec in use when due (`tick`), counts
    what arrives (`drain`)."""

    def __init__(self, ip, port):
        self.sock = socket.socket(socket.AF_INET6 if is_v6(ip) else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.setblocking(False)
        self.sent = 0
        self.received = 0
        self.received_bad = 0
        self.payload_types = {}
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.next = None
        self.send_error = None

    def tick(self, remote, codec):
        """Sends the packets due to `remote` (none while it or the codec is unknown)."""
        if remote is None or codec is None:
            self.next = None
            return
        c = CODECS[codec]
        now = time.monotonic()
        if self.next is None or now - self.next > 0.2:
            self.next = now
        while now >= self.next:
            hdr = struct.pack("!BBHII", 0x80, c.pt, self.seq & 0xFFFF, self.ts & 0xFFFFFFFF,
                              self.ssrc)
            try:
                self.sock.sendto(hdr + bytes([c.fill]) * c.size, remote)
                self.sent += 1
            except OSError as e:
                if self.send_error is None:
                    self.send_error = "RTP to %s: %s" % (hostport(remote), e)
            self.seq += 1
            self.ts += 8 * c.ptime
            self.next += c.ptime / 1000.0

    def wait(self):
        """Seconds until the next packet is due (0.05 when not sending)."""
        if self.next is None:
            return 0.05
        return max(0.0, self.next - time.monotonic())

    def drain(self):
        while True:
            try:
                data, _ = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if len(data) >= 12 and data[0] >> 6 == 2:
                self.received += 1
                pt = str(data[1] & 0x7F)
                self.payload_types[pt] = self.payload_types.get(pt, 0) + 1
            else:
                self.received_bad += 1

    def close(self):
        self.sock.close()


# --- one call, either side -----------------------------------------------------------------

class Peer:
    """One H.323 call, as caller (`call`) or callee (`answer`), driven by one event loop over
    the H.225.0 connection, the separate H.245 connection (or its listener) and RTP."""

    def __init__(self, args, mode):
        self.a = args
        self.mode = mode
        self.uu, self.olc = asn1()
        self.mscm = h245_codec()
        self.s = {
            "mode": mode, "messages_sent": [], "messages_seen": [], "connected": False,
            "codec": None, "remote_rtp": None, "rtp_sent": 0, "rtp_received": 0,
            "release": None, "errors": [], "media_via": None, "h245_transport": None,
            "h245_sent": [], "h245_seen": [], "msd": None, "rtd_ms": None,
        }
        if mode == "answer":
            self.s["calling"] = None
            self.s["called"] = None
        self.codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
        for c in self.codecs:
            if c not in CODECS:
                raise SystemExit("unknown codec %r (known: %s)" % (c, ",".join(CODECS)))
        # the capabilities we announce: --codecs in order, then G.711 A/µ-law if missing
        self.caps = self.codecs + [c for c in ("PCMA", "PCMU") if c not in self.codecs]
        self.sig = None          # H.225.0 Stream
        self.cr = 0
        self.call_id = os.urandom(16)
        self.conf_id = os.urandom(16)
        self.rtp = Rtp(args.local_ip, args.rtp_port)
        self.remote = None       # the far end's RTP address
        # H.245 transport
        self.tunnel = False      # tunnelling is on for the call
        self.tunnel_open = False  # we may send tunnelled H.245 now
        self.h245 = None         # separate H.245 Stream
        self.h245_lsock = None   # our separate H.245 listener
        self.h245_remote = None  # the far end's h245Address
        self.pending = []        # encoded H.245 PDUs waiting for a channel
        self.first_answer = True
        self.connect_at = None   # answer: when the Connect goes (after Alerting)
        self.connect_msg = None
        self.early = []          # H.245 PDUs tunnelled in our Setup
        self.early_names = []
        # fastStart: None (not offered/seen), "offered", "accepted", "refused"
        self.fast_start = None
        # H.245 procedures
        self.h245_started = False
        self.tcs_seq = 0
        self.tcs_acked = False
        self.remote_caps = None  # codec names the far end can receive, from its TCS
        self.remote_tcs_acked = False
        self.msd_state = "idle"  # idle, outgoing, incoming, done, failed
        self.msd_number = random.getrandbits(24)
        self.msd_retries = 0
        self.tx_number = 1 if mode == "call" else 101
        self.tx_state = None     # None, awaiting, open, rejected, closed
        self.rx_channels = {}    # the far end's channels toward us: number -> codec
        self.rtd_seq = 0
        self.rtd_sent_at = None
        self.esc_sent = False
        self.esc_received = False
        self.esc_first = None
        self.end_deadline = None
        # timeline
        self.connected_at = None
        self.media_start = None
        self.media_on = True
        self.hanging = False
        self.released = False
        self.linger_until = None
        self.done = False
        self.dtmf_queue = list(args.dtmf)
        self.rtd_done = not args.rtd

    # --- small helpers ---------------------------------------------------------------------

    def err(self, text):
        self.s["errors"].append(text)

    def h245_needed(self):
        """H.245 is needed: media over it, DTMF, RTD, or asked for."""
        return (self.s["media_via"] == "h245" or bool(self.a.dtmf) or self.a.rtd
                or self.a.h245 is not None)

    def local_ip(self):
        return self.a.local_ip

    def send_q931(self, mt, body_name, body, ies=(), cause=None):
        """An H.225.0 message; tunnelled H.245 waiting to go rides along (not in Release
        Complete)."""
        if self.sig is None or self.sig.closed:
            return
        pdu = {"h323-message-body": (body_name, body), "h245Tunneling": self.tunnel}
        if self.tunnel and self.pending and mt != "releaseComplete":
            pdu["h245Control"] = self.pending
            self.pending = []
        all_ies = list(ies)
        if cause is not None:
            all_ies.insert(0, (CAUSE_IE, cause_ie(cause)))
        all_ies.append((0x7E, user_user(self.uu, {"h323-uu-pdu": pdu})))
        try:
            self.sig.send(q931(self.cr, self.mode == "answer", mt, all_ies))
            self.s["messages_sent"].append(mt)
        except OSError as e:
            self.err("sending %s: %s" % (mt, e))
            self.sig.closed = True

    def facility(self):
        """An H.225.0 Facility (reason transportedInformation) for tunnelled H.245."""
        self.send_q931("facility", "facility", {
            "protocolIdentifier": H225_OID,
            "reason": ("transportedInformation", 0),
            "callIdentifier": {"guid": self.call_id},
            "multipleCalls": False,
            "maintainConnection": False,
        })

    def h245_usable(self):
        return (self.h245 is not None and not self.h245.closed) or (
            self.tunnel and self.tunnel_open and self.sig is not None and not self.sig.closed)

    def send_h245(self, *values):
        """H.245 MultimediaSystemControlMessages (values) over the call's H.245 channel, or
        queued until there is one. Several tunnelled at once share one Facility."""
        for v in values:
            self.mscm.set_val(v)
            self.pending.append(self.mscm.to_aper())
            self.s["h245_sent"].append(v[1][0])
        self.flush_h245()

    def flush_h245(self):
        if not self.pending:
            return
        if self.h245 is not None and not self.h245.closed:
            try:
                for raw in self.pending:
                    self.h245.send(raw)
            except OSError as e:
                self.err("sending on the H.245 connection: %s" % e)
                self.h245.closed = True
            self.pending = []
        elif self.tunnel and self.tunnel_open and self.sig is not None and not self.sig.closed:
            self.facility()

    # --- H.245 procedures --------------------------------------------------------------------

    def start_h245(self):
        """Our TerminalCapabilitySet and MasterSlaveDetermination (both H.245 SDLs start at
        once; H.323 clause 8.2)."""
        if self.h245_started:
            return
        self.h245_started = True
        self.tcs_seq = (self.tcs_seq + 1) % 256
        table = []
        for n, c in enumerate(self.caps, 1):
            table.append({"capabilityTableEntryNumber": n,
                          "capability": ("receiveAudioCapability", audio_cap(c))})
        ui = len(table) + 1
        table.append({"capabilityTableEntryNumber": ui,
                      "capability": ("receiveUserInputCapability", ("basicString", 0))})
        table.append({"capabilityTableEntryNumber": ui + 1,
                      "capability": ("receiveUserInputCapability", ("dtmf", 0))})
        tcs = {
            "sequenceNumber": self.tcs_seq,
            "protocolIdentifier": H245_OID,
            "multiplexCapability": ("h2250Capability", {
                "maximumAudioDelayJitter": 60,
                "receiveMultipointCapability": multipoint(),
                "transmitMultipointCapability": multipoint(),
                "receiveAndTransmitMultipointCapability": multipoint(),
                "mcCapability": {"centralizedConferenceMC": False,
                                 "decentralizedConferenceMC": False},
                "rtcpVideoControlCapability": False,
                "mediaPacketizationCapability": {"h261aVideoPacketization": False},
            }),
            "capabilityTable": table,
            "capabilityDescriptors": [{
                "capabilityDescriptorNumber": 0,
                "simultaneousCapabilities": [list(range(1, ui)), [ui], [ui + 1]],
            }],
        }
        self.msd_state = "outgoing"
        self.send_h245(("request", ("terminalCapabilitySet", tcs)),
                       ("request", ("masterSlaveDetermination", {
                           "terminalType": self.a.terminal_type,
                           "statusDeterminationNumber": self.msd_number})))

    def msd_decide(self, terminal_type, number):
        """H.245 clause 8.2: the larger terminal type is master; else the status
        determination numbers, modulo 2^24; None when indeterminate."""
        if terminal_type < self.a.terminal_type:
            return "master"
        if terminal_type > self.a.terminal_type:
            return "slave"
        diff = (number - self.msd_number) & 0xFFFFFF
        if diff in (0, 0x800000):
            return None
        return "master" if diff < 0x800000 else "slave"

    def msd_retry(self):
        self.msd_retries += 1
        self.msd_number = random.getrandbits(24)
        self.msd_state = "outgoing"
        self.send_h245(("request", ("masterSlaveDetermination", {
            "terminalType": self.a.terminal_type,
            "statusDeterminationNumber": self.msd_number})))

    def maybe_open(self):
        """Our transmit channel, once both capability sets are acknowledged and master/slave
        is determined (media over H.245 only)."""
        if self.s["media_via"] != "h245" or self.tx_state is not None or self.hanging:
            return
        if not (self.tcs_acked and self.remote_tcs_acked and self.msd_state == "done"):
            return
        common = [c for c in self.codecs if c in (self.remote_caps or [])]
        if not common:
            self.tx_state = "rejected"
            self.err("no codec of %s in the far end's capabilities %s"
                     % (self.codecs, self.remote_caps))
            return
        self.s["codec"] = common[0]
        self.tx_state = "awaiting"
        self.send_h245(("request", ("openLogicalChannel", olc_tx(
            self.tx_number, common[0], self.local_ip(), self.a.rtp_port))))

    def on_h245(self, raw, via):
        try:
            self.mscm.from_aper(raw)
            v = self.mscm.get_val()
            kind, (name, val) = v
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            self.err("undecodable H.245 (%s): %s: %s" % (via, raw[:16].hex(), e))
            return
        self.s["h245_seen"].append(name)
        try:
            self.h245_message(kind, name, val)
        except Exception as e:  # noqa: BLE001
            self.err("H.245 %s (%s) not handled: %s" % (name, via, e))

    def h245_message(self, kind, name, val):
        if name == "terminalCapabilitySet":
            self.start_h245()
            seq = val["sequenceNumber"]
            table = val.get("capabilityTable") or []
            numbers = {e["capabilityTableEntryNumber"] for e in table}
            undefined = [n for d in val.get("capabilityDescriptors") or []
                         for alt in d.get("simultaneousCapabilities") or [] for n in alt
                         if n not in numbers]
            if undefined:
                self.send_h245(("response", ("terminalCapabilitySetReject", {
                    "sequenceNumber": seq, "cause": ("undefinedTableEntryUsed", 0)})))
                self.err("far end's TCS uses undefined table entries %s" % undefined)
                return
            caps = []
            for e in table:
                cap = e.get("capability")
                if cap and cap[0] in ("receiveAudioCapability",
                                      "receiveAndTransmitAudioCapability"):
                    n = codec_name(cap[1])
                    if n and n not in caps:
                        caps.append(n)
            self.remote_caps = caps
            self.s["remote_capabilities"] = caps
            self.send_h245(("response", ("terminalCapabilitySetAck", {"sequenceNumber": seq})))
            self.remote_tcs_acked = True
            self.maybe_open()
        elif name == "terminalCapabilitySetAck":
            if val["sequenceNumber"] == self.tcs_seq:
                self.tcs_acked = True
                self.maybe_open()
            else:
                self.err("TCS Ack for sequence number %d, ours is %d"
                         % (val["sequenceNumber"], self.tcs_seq))
        elif name == "terminalCapabilitySetReject":
            self.err("far end rejected our TCS: %s" % (val.get("cause"),))
        elif name == "masterSlaveDetermination":
            self.start_h245()
            decision = self.msd_decide(val["terminalType"], val["statusDeterminationNumber"])
            if decision is None:
                if self.msd_state == "outgoing" and self.msd_retries < MSD_RETRIES:
                    self.msd_retry()
                else:
                    self.send_h245(("response", ("masterSlaveDeterminationReject", {
                        "cause": ("identicalNumbers", 0)})))
                    self.s.setdefault("msd_rejects_sent", 0)
                    self.s["msd_rejects_sent"] += 1
                return
            self.s["msd"] = decision
            self.msd_state = "incoming"
            # the decision in the Ack is the receiver's status
            self.send_h245(("response", ("masterSlaveDeterminationAck", {
                "decision": ("slave" if decision == "master" else "master", 0)})))
        elif name == "masterSlaveDeterminationAck":
            mine = val["decision"][0]
            if self.msd_state == "outgoing":
                self.s["msd"] = mine
                self.msd_state = "done"
                self.send_h245(("response", ("masterSlaveDeterminationAck", {
                    "decision": ("slave" if mine == "master" else "master", 0)})))
            elif self.msd_state == "incoming":
                if mine != self.s["msd"]:
                    self.err("MSD Ack says %s, we determined %s" % (mine, self.s["msd"]))
                    self.msd_state = "failed"
                    return
                self.msd_state = "done"
            else:
                self.err("unexpected MSD Ack in state %s" % self.msd_state)
            self.maybe_open()
        elif name == "masterSlaveDeterminationReject":
            if self.msd_state == "outgoing" and self.msd_retries < MSD_RETRIES:
                self.msd_retry()
            else:
                self.msd_state = "failed"
                self.err("master/slave determination rejected")
        elif name == "openLogicalChannel":
            self.remote_olc(val)
        elif name == "openLogicalChannelAck":
            if val["forwardLogicalChannelNumber"] != self.tx_number or self.tx_state != "awaiting":
                self.err("unexpected OLC Ack for channel %d" % val["forwardLogicalChannelNumber"])
                return
            fma = val.get("forwardMultiplexAckParameters")
            addr = None
            if fma and fma[0] == "h2250LogicalChannelAckParameters":
                addr = h245_address_of(fma[1].get("mediaChannel"))
            if addr is None:
                self.err("OLC Ack without a mediaChannel")
                return
            self.tx_state = "open"
            self.remote = addr
            self.s["remote_rtp"] = hostport(addr)
        elif name == "openLogicalChannelReject":
            self.tx_state = "rejected"
            self.err("far end rejected our OLC: %s" % (val.get("cause"),))
        elif name == "closeLogicalChannel":
            n = val["forwardLogicalChannelNumber"]
            self.rx_channels.pop(n, None)
            self.send_h245(("response", ("closeLogicalChannelAck",
                                         {"forwardLogicalChannelNumber": n})))
        elif name == "closeLogicalChannelAck":
            if val["forwardLogicalChannelNumber"] == self.tx_number:
                self.tx_state = "closed"
        elif name == "requestChannelClose":
            n = val["forwardLogicalChannelNumber"]
            self.send_h245(("response", ("requestChannelCloseAck",
                                         {"forwardLogicalChannelNumber": n})))
            if n == self.tx_number and self.tx_state == "open":
                self.tx_state = "closing"
                self.remote = None
                self.send_h245(("request", ("closeLogicalChannel", {
                    "forwardLogicalChannelNumber": n, "source": ("user", 0)})))
        elif name == "requestChannelCloseAck":
            pass
        elif name == "roundTripDelayRequest":
            self.send_h245(("response", ("roundTripDelayResponse",
                                         {"sequenceNumber": val["sequenceNumber"]})))
        elif name == "roundTripDelayResponse":
            if self.rtd_sent_at is not None and val["sequenceNumber"] == self.rtd_seq:
                self.s["rtd_ms"] = round((time.monotonic() - self.rtd_sent_at) * 1000.0, 2)
                self.rtd_sent_at = None
            else:
                self.err("unexpected RTD response %d" % val["sequenceNumber"])
        elif name == "endSessionCommand":
            self.esc_received = True
            self.media_on = False
            if not self.esc_sent:
                # H.323 clause 8.5: answer it, then release (without waiting for the far
                # end's own Release Complete beyond END_SESSION_WAIT)
                self.esc_sent = True
                self.esc_first = "remote"
                self.hanging = True
                self.send_h245(("command", ("endSessionCommand", ("disconnect", 0))))
                self.end_deadline = time.monotonic() + END_SESSION_WAIT
        elif name == "userInput":
            digit = None
            if val[0] == "alphanumeric":
                digit = val[1]
            elif val[0] == "signal":
                digit = val[1].get("signalType")
            if digit:
                self.s.setdefault("dtmf_received", []).extend(list(digit))
        elif name in H245_TOLERATED:
            pass
        else:
            self.err("unexpected H.245 %s %s" % (kind, name))
            if kind in ("request", "response", "command"):
                # H.245 clause 8.1: what a terminal does not understand, it says so
                self.send_h245(("indication", ("functionNotUnderstood", (kind, (name, val)))))

    def remote_olc(self, val):
        """The far end opens its transmit channel: acknowledged with our RTP/RTCP if we
        announced its codec, else rejected."""
        n = val["forwardLogicalChannelNumber"]
        fp = val["forwardLogicalChannelParameters"]
        dt = fp.get("dataType")
        codec = codec_name(dt[1]) if dt and dt[0] == "audioData" else None
        mp = fp.get("multiplexParameters")
        session = mp[1].get("sessionID", 1) if mp and mp[0] == "h2250LogicalChannelParameters" \
            else None
        if codec not in self.caps or session is None or self.hanging:
            self.send_h245(("response", ("openLogicalChannelReject", {
                "forwardLogicalChannelNumber": n, "cause": ("dataTypeNotSupported", 0)})))
            self.s.setdefault("olc_rejected", []).append(codec or (dt[0] if dt else None))
            return
        self.rx_channels[n] = codec
        self.s["codec_received"] = codec
        ip = self.local_ip()
        self.send_h245(("response", ("openLogicalChannelAck", {
            "forwardLogicalChannelNumber": n,
            "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", {
                "sessionID": session or 1,
                "mediaChannel": unicast(ip, self.a.rtp_port),
                "mediaControlChannel": unicast(ip, self.a.rtp_port + 1),
                "flowControlToZero": False,
            }),
        })))

    def h245_session(self):
        """An H.245 session runs (capabilities exchanged or a separate connection): ending
        the call takes CLC + EndSessionCommand first (H.323 clause 8.5)."""
        return (self.h245_started or (self.h245 is not None and not self.h245.closed)) \
            and self.h245_usable()

    # --- H.225.0 ---------------------------------------------------------------------------

    def on_h225(self, frame):
        try:
            cr, mt, ies = parse_q931(frame)
        except ValueError as e:
            self.err("undecodable Q.931: %s" % e)
            return
        entry = {"type": mt}
        if CAUSE_IE in ies and len(ies[CAUSE_IE]) >= 2:
            entry["cause"] = ies[CAUSE_IE][-1] & 0x7F
        pdu, body_name, body = {}, None, {}
        if 0x7E in ies:
            raw = ies[0x7E]
            try:
                if not raw or raw[0] != 0x05:
                    raise ValueError("no protocol discriminator 5")
                self.uu.from_aper(raw[1:])
                pdu = self.uu.get_val()["h323-uu-pdu"]
                body_name, body = pdu["h323-message-body"]
                if not isinstance(body, dict):
                    body = {}
                entry["uuie"] = body_name
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                self.err("%s: undecodable User-user: %s" % (mt, e))
                pdu, body = {}, {}
        fs = body.get("fastStart")
        if fs:
            try:
                entry["fastStart"] = [ch for raw in fs for ch in olc_media(self.olc, raw)]
            except Exception as e:  # noqa: BLE001
                self.err("%s: undecodable fastStart: %s" % (mt, e))
                entry["fastStart"] = []
        if "fastConnectRefused" in body:
            entry["fastConnectRefused"] = True
        if pdu.get("h245Control"):
            entry["h245"] = len(pdu["h245Control"])
        self.s["messages_seen"].append(entry)

        try:
            if self.mode == "answer" and mt == "setup":
                self.on_setup(cr, ies, body, pdu, entry)
            elif self.mode == "call" and body_name is not None and mt != "releaseComplete":
                self.on_answer(mt, body, pdu, entry)
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            self.err("%s not handled: %r" % (mt, e))
        if body_name is not None and mt != "setup":
            addr = h225_address_of(body.get("h245Address"))
            if addr and self.h245_remote is None:
                self.h245_remote = addr
        if self.tunnel:
            for raw in pdu.get("h245Control") or []:
                self.on_h245(raw, "tunnelled in %s" % mt)
        elif pdu.get("h245Control"):
            # tunnelling is off for the call: tunnelled H.245 is ignored (H.323 clause 8.2.1)
            self.s["h245_tunnelled_ignored"] = self.s.get("h245_tunnelled_ignored", 0) + len(
                pdu["h245Control"])
        if mt == "releaseComplete":
            if not self.released:
                self.s["release"] = {"by": "remote", "cause": entry.get("cause")}
            self.released = True
            self.done = True
        if mt == "statusEnquiry":
            self.send_q931_plain("status", [(CAUSE_IE, cause_ie(30)), (0x14, bytes(
                [10 if self.s["connected"] else (3 if self.mode == "call" else 9)]))])

    def send_q931_plain(self, mt, ies):
        try:
            self.sig.send(q931(self.cr, self.mode == "answer", mt, ies))
            self.s["messages_sent"].append(mt)
        except OSError as e:
            self.err("sending %s: %s" % (mt, e))

    def on_answer(self, mt, body, pdu, entry):
        """Caller: a message from the callee."""
        if self.first_answer:
            self.first_answer = False
            if self.tunnel and not pdu.get("h245Tunneling"):
                # H.323 clause 8.2.1: tunnelling is off for the call
                self.tunnel = False
                self.s["tunnel_refused"] = True
                self.tunnel_open = False
                # what went in the Setup is lost: it goes again on the separate connection
                self.pending = self.early + self.pending
                self.s["h245_sent"].extend(self.early_names)
                self.early = []
            elif self.tunnel:
                self.tunnel_open = True
        if self.fast_start == "offered":
            # our transmit channel, accepted: its forward parameters say where the far end
            # receives (a receive channel echoed back carries our own address)
            for ch in entry.get("fastStart") or []:
                if ch["rtp"] and not ch["reverse"] and ch["codec"] in CODECS:
                    self.fast_start = "accepted"
                    self.s["media_via"] = "fastStart"
                    self.remote = ch["rtp"]
                    self.s["remote_rtp"] = hostport(ch["rtp"])
                    self.s["codec"] = ch["codec"]
                    break
            if self.fast_start == "offered" and (entry.get("fastConnectRefused")
                                                 or mt == "connect"):
                self.fast_start = "refused"
                self.s["fast_start_refused"] = True
                self.s["media_via"] = "h245"
                self.start_h245()
        if mt == "connect" and not self.s["connected"]:
            self.s["connected"] = True
            self.connected_at = time.monotonic()

    def on_setup(self, cr, ies, body, pdu, entry):
        """Callee: the Setup. fastStart accepted (unless --no-fast-start, or nothing offered
        fits), H.245 tunnelled if the caller offers it (unless --h245 separate), else a
        separate H.245 connection when H.245 is needed; Call Proceeding and Connect."""
        if self.s["connected"]:
            self.err("a second Setup")
            return
        self.cr = cr & 0x7FFF
        if "uuie" not in entry or entry["uuie"] != "setup":
            # no H.225.0 Setup-UUIE we can read: released, invalid IE contents
            self.err("Setup without a readable Setup-UUIE: released")
            self.release(100)
            return
        if 0x6C in ies:
            self.s["calling"] = ies[0x6C][1:].lstrip(b"\x80\x81\x82\x83").decode("ascii",
                                                                                "replace")
        if 0x70 in ies:
            self.s["called"] = ies[0x70][1:].decode("ascii", "replace")
        if self.a.reject:
            self.s["rejected"] = self.a.reject
            self.release(self.a.reject)
            return
        self.call_id = body.get("callIdentifier", {}).get("guid") or self.call_id
        offer = entry.get("fastStart") or []
        chosen = None
        if offer and not self.a.no_fast_start:
            for ch in offer:
                if ch["codec"] in self.codecs and not ch["reverse"]:
                    rx = [c for c in offer if c["reverse"] and c["codec"] == ch["codec"]
                          and c["rtp"]]
                    if rx:
                        chosen = (ch, rx[0])
                        break
        extra = {}
        if chosen:
            caller_tx, caller_rx = chosen
            self.fast_start = "accepted"
            self.s["media_via"] = "fastStart"
            self.s["codec"] = caller_tx["codec"]
            self.remote = caller_rx["rtp"]
            self.s["remote_rtp"] = hostport(caller_rx["rtp"])
            extra["fastStart"] = encode_olcs(self.olc, [
                olc_answer_rx(caller_tx["number"], caller_tx["codec"], self.local_ip(),
                              self.a.rtp_port),
                olc_answer_tx(caller_rx["number"], caller_tx["codec"], self.local_ip(),
                              self.a.rtp_port),
            ])
        else:
            self.s["media_via"] = "h245"
            if offer:
                self.fast_start = "refused"
                self.s["fast_start_refused"] = True
                extra["fastConnectRefused"] = 0
        self.tunnel = bool(pdu.get("h245Tunneling")) and self.a.h245 != "separate"
        caller_h245 = h225_address_of(body.get("h245Address"))
        if not self.tunnel and (self.h245_needed() or caller_h245):
            if caller_h245:
                self.connect_h245(caller_h245)
            else:
                self.listen_h245()
        if self.s["media_via"] == "h245":
            self.start_h245()
        if self.h245_lsock is not None:
            name = self.h245_lsock.getsockname()
            extra["h245Address"] = transport(name[0], name[1])
        guid = self.call_id
        cp = {"protocolIdentifier": H225_OID, "destinationInfo": endpoint(),
              "callIdentifier": {"guid": guid}, "multipleCalls": False,
              "maintainConnection": False}
        for k in ("h245Address", "fastConnectRefused"):
            if k in extra:
                cp[k] = extra[k]
        # the first tunnelled H.245 (TCS, MSD) rides in Call Proceeding
        self.send_q931("callProceeding", "callProceeding", cp)
        self.tunnel_open = self.tunnel
        conn = {"protocolIdentifier": H225_OID, "destinationInfo": endpoint(),
                "conferenceID": body.get("conferenceID") or self.conf_id,
                "callIdentifier": {"guid": guid},
                "multipleCalls": False, "maintainConnection": False}
        conn.update(extra)
        self.connect_msg = conn
        if self.a.alert_seconds > 0:
            alerting = {"protocolIdentifier": H225_OID, "destinationInfo": endpoint(),
                        "callIdentifier": {"guid": guid}, "multipleCalls": False,
                        "maintainConnection": False}
            for k in ("h245Address", "fastStart", "fastConnectRefused"):
                if k in extra:
                    alerting[k] = extra[k]
            self.send_q931("alerting", "alerting", alerting)
            self.connect_at = time.monotonic() + self.a.alert_seconds
        else:
            self.send_connect()

    def send_connect(self):
        self.connect_at = None
        self.send_q931("connect", "connect", self.connect_msg, ies=[(0x04, BEARER_SPEECH)])
        self.s["connected"] = True
        self.connected_at = time.monotonic()

    # --- separate H.245 connection ---------------------------------------------------------

    def listen_h245(self):
        if self.h245_lsock is not None or self.h245 is not None:
            return
        ip = self.local_ip()
        ls = socket.socket(socket.AF_INET6 if is_v6(ip) else socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((ip, self.a.h245_port))
        ls.listen(1)
        ls.setblocking(False)
        self.h245_lsock = ls
        self.s["h245_listen"] = hostport(ls.getsockname()[:2])

    def connect_h245(self, addr):
        if self.h245 is not None:
            return
        try:
            sock = socket.create_connection(addr, timeout=5)
        except OSError as e:
            self.err("H.245 connect to %s: %s" % (hostport(addr), e))
            self.h245_remote = None
            return
        self.h245_up(sock, "connected to %s" % hostport(addr))

    def h245_up(self, sock, how):
        sock.settimeout(5)
        self.h245 = Stream(sock)
        self.s["h245_transport"] = "separate"
        self.s["h245_connection"] = how
        self.flush_h245()

    def maybe_connect_h245(self):
        """Caller: to the far end's h245Address (H.245 is not tunnelled)."""
        if self.mode != "call" or self.h245 is not None or self.h245_lsock is not None:
            return
        if self.h245_remote is None or self.tunnel or self.released:
            return
        self.connect_h245(self.h245_remote)

    # --- the call --------------------------------------------------------------------------

    def place(self):
        """Caller: TCP to the target, Setup."""
        host, port = split_hostport(self.a.target)
        self.cr = self.a.call_ref or random.randint(1, 0x7FFF)
        try:
            sock = socket.create_connection((host, port), timeout=self.a.connect_timeout)
        except OSError as e:
            self.err("connect to %s: %s" % (self.a.target, e))
            return False
        sock.settimeout(5)
        self.sig = Stream(sock)
        local = sock.getsockname()
        want = self.a.h245
        if want is None and (self.a.no_fast_start or self.a.dtmf):
            want = "tunnel"
        self.tunnel = want == "tunnel"
        if want == "separate" and self.a.h245_listen:
            self.listen_h245()
        setup = {
            "protocolIdentifier": H225_OID,
            "sourceAddress": [("dialedDigits", self.a.calling)],
            "sourceInfo": endpoint(),
            "destinationAddress": [("dialedDigits", self.a.called)],
            "destCallSignalAddress": transport(host, port),
            "activeMC": False,
            "conferenceID": self.conf_id,
            "conferenceGoal": ("create", 0),
            "callType": ("pointToPoint", 0),
            "sourceCallSignalAddress": transport(local[0], local[1]),
            "callIdentifier": {"guid": self.call_id},
            "mediaWaitForConnect": False,
            "canOverlapSend": False,
            "multipleCalls": False,
            "maintainConnection": False,
        }
        if self.h245_lsock is not None:
            name = self.h245_lsock.getsockname()
            setup["h245Address"] = transport(name[0], name[1])
        if self.a.no_fast_start:
            self.s["media_via"] = "h245"
        else:
            offer, n = [], 1
            for c in self.codecs:
                offer.append(olc_tx(n, c, self.local_ip(), self.a.rtp_port))
                offer.append(olc_rx(n + 1, c, self.local_ip(), self.a.rtp_port))
                n += 2
            setup["fastStart"] = encode_olcs(self.olc, offer)
            self.fast_start = "offered"
        if self.a.early_h245 and self.tunnel:
            # TCS and MSD tunnelled in the Setup itself (kept, to go again over a separate
            # connection should the far end turn tunnelling down)
            self.start_h245()
            self.early = list(self.pending)
            self.early_names = list(self.s["h245_sent"])
        self.send_q931("setup", "setup", setup, ies=[
            (0x04, BEARER_SPEECH),
            (0x6C, number_ie(self.a.calling)),
            (0x70, number_ie(self.a.called)),
        ])
        if self.s["media_via"] == "h245":
            self.start_h245()  # queued until the first answer says tunnelling is on
        return True

    def accept(self):
        """Callee: one connection on --listen."""
        ip = self.local_ip()
        ls = socket.socket(socket.AF_INET6 if is_v6(ip) else socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((ip, self.a.listen))
        ls.listen(1)
        print(json.dumps({"listening": hostport(ls.getsockname()[:2])}), flush=True)
        r, _, _ = select.select([ls], [], [], self.a.connect_timeout)
        if not r:
            self.err("no connection within %ss" % self.a.connect_timeout)
            ls.close()
            return False
        sock, _ = ls.accept()
        ls.close()
        sock.settimeout(5)
        self.sig = Stream(sock)
        return True

    def release(self, cause):
        """Release Complete (if the far end has not sent one)."""
        if self.released:
            return
        self.send_q931("releaseComplete", "releaseComplete", {
            "protocolIdentifier": H225_OID, "callIdentifier": {"guid": self.call_id},
        }, cause=cause)
        self.s["release"] = {"by": "us", "cause": cause}
        self.released = True
        self.linger_until = time.monotonic() + 1.0

    def hangup(self):
        """H.323 clause 8.5: close our channel and send EndSessionCommand (when an H.245
        session runs), wait for the far end's EndSessionCommand, then Release Complete."""
        if self.hanging:
            return
        self.hanging = True
        self.media_on = False
        if self.dtmf_queue:
            self.err("DTMF %s not sent: %s" % ("".join(self.dtmf_queue), "no H.245 channel"
                                                if not self.h245_usable() else "no time left"))
            self.dtmf_queue = []
        if not self.rtd_done and self.media_start is not None:
            self.err("RoundTripDelayRequest not sent: no H.245 channel")
            self.rtd_done = True
        if self.h245_session():
            msgs = []
            if self.tx_state == "open":
                self.tx_state = "closing"
                msgs.append(("request", ("closeLogicalChannel", {
                    "forwardLogicalChannelNumber": self.tx_number, "source": ("user", 0)})))
            msgs.append(("command", ("endSessionCommand", ("disconnect", 0))))
            self.esc_sent = True
            self.esc_first = "us"
            self.send_h245(*msgs)
            self.end_deadline = time.monotonic() + END_SESSION_WAIT
        else:
            self.release(self.a.cause)

    def timers(self):
        now = time.monotonic()
        if self.released:
            if self.linger_until is None or now >= self.linger_until or self.sig.closed:
                self.done = True
            return
        if self.sig.closed:
            if not self.s["connected"]:
                self.err("connection closed before Connect")
            elif self.s["release"] is None:
                self.err("connection closed without Release Complete")
            self.done = True
            return
        self.maybe_connect_h245()
        self.flush_h245()
        if self.end_deadline is not None:
            # EndSessionCommand sent: after ours, the far end's answer (or the wait) ends the
            # call; after theirs, the wait gives their Release Complete the chance to come
            if now >= self.end_deadline or (self.esc_first == "us" and self.esc_received):
                if self.esc_first == "us" and not self.esc_received:
                    self.s["end_session_unanswered"] = True
                self.release(self.a.cause)
            return
        if not self.s["connected"]:
            if self.connect_at is not None:
                if now >= self.connect_at:
                    self.send_connect()
                return
            if now - self.started > self.a.connect_timeout:
                self.err("no %s within %ss" % ("Connect" if self.mode == "call" else "Setup",
                                              self.a.connect_timeout))
                self.release(self.a.cause)
            return
        if self.media_start is None:
            if self.remote is not None and self.s["codec"] is not None:
                self.media_start = now
            elif now - self.connected_at > self.a.connect_timeout:
                self.err("no media address within %ss of Connect (media via %s)"
                         % (self.a.connect_timeout, self.s["media_via"]))
                self.hangup()
            return
        t = now - self.media_start
        if not self.rtd_done and t >= 0.5 and self.h245_usable():
            self.rtd_done = True
            self.rtd_seq = (self.rtd_seq + 1) % 256
            self.rtd_sent_at = time.monotonic()
            self.send_h245(("request", ("roundTripDelayRequest",
                                        {"sequenceNumber": self.rtd_seq})))
        sent = len(self.a.dtmf) - len(self.dtmf_queue)
        if self.dtmf_queue and t >= 1.0 + sent * DTMF_GAP and not self.hanging:
            if self.h245_usable():
                d = self.dtmf_queue.pop(0)
                if self.a.dtmf_mode == "alphanumeric":
                    ui = ("alphanumeric", d)
                else:
                    ui = ("signal", {"signalType": d, "duration": self.a.dtmf_duration})
                self.send_h245(("indication", ("userInput", ui)))
                self.s.setdefault("dtmf_sent", []).append(d)
            elif t > 1.0 + self.a.seconds:
                self.err("no H.245 channel for DTMF")
                self.dtmf_queue = []
        if t >= self.a.seconds:
            self.media_on = False
            if self.mode == "call" or t >= self.a.seconds + self.a.release_timeout:
                self.hangup()

    def run(self):
        self.started = time.monotonic()
        ok = self.place() if self.mode == "call" else self.accept()
        if not ok:
            return self.finish()
        self.started = time.monotonic()
        hard = self.started + self.a.connect_timeout * 2 + self.a.seconds + \
            self.a.release_timeout + 3 * END_SESSION_WAIT
        while not self.done:
            socks = [self.rtp.sock]
            if self.sig and not self.sig.closed:
                socks.append(self.sig.sock)
            if self.h245 and not self.h245.closed:
                socks.append(self.h245.sock)
            if self.h245_lsock is not None:
                socks.append(self.h245_lsock)
            wait = min(self.rtp.wait(), 0.05) if self.media_on and self.remote else 0.05
            try:
                r, _, _ = select.select(socks, [], [], wait)
            except (OSError, ValueError) as e:
                self.err("select: %s" % e)
                break
            for s in r:
                self.readable(s)
            self.rtp.drain()
            if self.media_on and self.media_start is not None and not self.hanging:
                self.rtp.tick(self.remote, self.s["codec"])
            self.timers()
            if time.monotonic() > hard:
                self.err("gave up: the call did not end in time")
                break
        return self.finish()

    def readable(self, s):
        if s is self.rtp.sock:
            self.rtp.drain()
        elif self.h245_lsock is not None and s is self.h245_lsock:
            try:
                sock, peer = self.h245_lsock.accept()
            except OSError:
                return
            self.h245_lsock.close()
            self.h245_lsock = None
            self.h245_up(sock, "accepted from %s" % hostport(peer[:2]))
        elif self.sig is not None and s is self.sig.sock:
            try:
                frames = self.sig.read()
            except ValueError as e:
                self.err("H.225.0 connection: %s" % e)
                return
            for f in frames:
                self.on_h225(f)
        elif self.h245 is not None and s is self.h245.sock:
            try:
                frames = self.h245.read()
            except ValueError as e:
                self.err("H.245 connection: %s" % e)
                return
            for f in frames:
                self.on_h245(f, "separate")
            if self.h245.closed and not self.esc_received and not self.released:
                self.err("the far end closed the H.245 connection before EndSessionCommand")

    def finish(self):
        for c in (self.h245, self.sig):
            if c is not None:
                c.close()
        if self.h245_lsock is not None:
            self.h245_lsock.close()
        self.rtp.drain()
        self.rtp.close()
        if self.rtd_sent_at is not None:
            self.err("no RoundTripDelayResponse")
        if self.rtp.send_error:
            self.err(self.rtp.send_error)
            self.rtp.send_error = None
        if self.s["h245_transport"] is None and self.tunnel and (
                self.s["h245_sent"] or self.s["h245_seen"]):
            self.s["h245_transport"] = "tunnel"
        self.s["rtp_sent"] = self.rtp.sent
        self.s["rtp_received"] = self.rtp.received
        self.s["rtp_received_not_rtp"] = self.rtp.received_bad
        self.s["rtp_received_payload_types"] = self.rtp.payload_types
        return self.s


def olc_answer_tx(number, codec, ip, rtp_port):
    """Answerer: the channel it transmits on (forward), with its RTCP address."""
    return olc_tx(number, codec, ip, rtp_port)


def multipoint():
    return {"multicastCapability": False, "multiUniCastConference": False,
            "mediaDistributionCapability": [{
                "centralizedControl": False, "distributedControl": False,
                "centralizedAudio": False, "distributedAudio": False,
                "centralizedVideo": False, "distributedVideo": False}]}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("check")
    for name in ("call", "answer"):
        p = sub.add_parser(name)
        if name == "call":
            p.add_argument("target", help="HOST:PORT ([V6]:PORT) of the H.225.0 listener")
            p.add_argument("--calling", default="4930555")
            p.add_argument("--called", default="2001")
            p.add_argument("--call-ref", type=int, default=0)
            p.add_argument("--h245-listen", action="store_true",
                           help="with --h245 separate: listen for H.245 ourselves and put "
                           "our h245Address in the Setup")
            p.add_argument("--early-h245", action="store_true",
                           help="with tunnelling: our TCS and MSD in the Setup itself")
            p.add_argument("--release-timeout", type=float, default=5.0,
                           help="after hanging up, the longest wait for the far end")
        else:
            p.add_argument("--listen", type=int, required=True, help="TCP port to listen on")
            p.add_argument("--alert-seconds", type=float, default=0.0,
                           help="send Alerting after Call Proceeding, Connect this much later")
            p.add_argument("--reject", type=int, default=0, metavar="CAUSE",
                           help="answer the Setup with Release Complete and this cause")
            p.add_argument("--release-timeout", type=float, default=30.0,
                           help="after the media, how long to wait for the caller's release "
                           "before releasing ourselves")
        p.add_argument("--codecs", default="PCMA,PCMU",
                       help="in order of preference, among %s" % ",".join(CODECS))
        p.add_argument("--no-fast-start", action="store_true",
                       help="call: offer no fastStart; answer: refuse it. Media over H.245")
        p.add_argument("--h245", choices=("tunnel", "separate"), default=None,
                       help="H.245 transport (default: tunnel with --no-fast-start or --dtmf)")
        p.add_argument("--h245-port", type=int, default=0,
                       help="port of our H.245 listener when we listen (0: ephemeral)")
        p.add_argument("--rtd", action="store_true",
                       help="send one RoundTripDelayRequest once media runs")
        p.add_argument("--dtmf", default="", help="digits (0-9*#A-D) to send after 1 s of "
                       "media, as H.245 UserInputIndication")
        p.add_argument("--dtmf-mode", choices=("signal", "alphanumeric"), default="signal")
        p.add_argument("--dtmf-duration", type=int, default=100, help="ms, per signal digit")
        p.add_argument("--terminal-type", type=int, default=TERMINAL_TYPE,
                       help="H.245 MSD terminalType")
        p.add_argument("--local-ip", default="127.0.0.1")
        p.add_argument("--rtp-port", type=int, required=True)
        p.add_argument("--seconds", type=float, default=4.0, help="media time")
        p.add_argument("--cause", type=int, default=16, help="Q.931 cause when we release")
        p.add_argument("--connect-timeout", type=float, default=10.0)
    args = ap.parse_args()
    if args.mode != "check" and args.dtmf_mode == "signal" and any(
            d not in "0123456789#*ABCD" for d in args.dtmf):
        ap.error("--dtmf: signal digits are 0-9, *, #, A-D")
    if args.mode == "check":
        asn1()
        return 0
    try:
        peer = Peer(args, args.mode)
    except OSError as e:
        print(json.dumps({"mode": args.mode, "connected": False,
                          "errors": ["cannot start: %s" % e]}), flush=True)
        return 1
    try:
        summary = peer.run()
    except Exception as e:  # noqa: BLE001 - the summary is always printed
        peer.err("internal error: %r" % (e,))
        summary = peer.finish()
    print(json.dumps(summary), flush=True)
    ok = summary["connected"] or (summary.get("rejected") and summary["release"] is not None)
    return 0 if ok and not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
