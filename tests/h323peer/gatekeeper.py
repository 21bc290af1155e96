#!/usr/bin/env python3
"""gatekeeper: a minimal, independent H.323 gatekeeper (H.225.0 RAS) for interop tests.

It shares no code with sgw: the RAS messages are encoded and decoded with pycrate's ASN.1
runtime, compiled from the ITU-T H.225.0 v8 modules (with H.235 and H.245) by the same loader
as h323peer.py (same cache).

Usage:
  gatekeeper.py --listen HOST:PORT [options]    serve RAS on UDP until SIGTERM or --seconds
  gatekeeper.py check                           exit 0 if pycrate loads
  gatekeeper.py decode HEX...                   one line per RasMessage: its type

It answers GRQ with GCF, RRQ with RCF (a full RRQ gets a new endpointIdentifier; a
lightweight RRQ with a known one is confirmed, with an unknown one rejected
fullRegistrationRequired), ARQ with ACF, DRQ with DCF, URQ with UCF, an IRR that asks for
it with IACK, and any other request with XRS. One JSON line per message seen and sent goes
to stdout; see README.md.
"""
import argparse
import json
import os
import select
import signal
import socket
import sys
import time


H225_OID = (0, 0, 8, 2250, 0, 4)

ABBREV = {
    "gatekeeperRequest": "GRQ", "gatekeeperConfirm": "GCF", "gatekeeperReject": "GRJ",
    "registrationRequest": "RRQ", "registrationConfirm": "RCF", "registrationReject": "RRJ",
    "unregistrationRequest": "URQ", "unregistrationConfirm": "UCF",
    "unregistrationReject": "URJ", "admissionRequest": "ARQ", "admissionConfirm": "ACF",
    "admissionReject": "ARJ", "bandwidthRequest": "BRQ", "bandwidthConfirm": "BCF",
    "bandwidthReject": "BRJ", "disengageRequest": "DRQ", "disengageConfirm": "DCF",
    "disengageReject": "DRJ", "locationRequest": "LRQ", "locationConfirm": "LCF",
    "locationReject": "LRJ", "infoRequest": "IRQ", "infoRequestResponse": "IRR",
    "nonStandardMessage": "NSM", "unknownMessageResponse": "XRS", "requestInProgress": "RIP",
    "resourcesAvailableIndicate": "RAI", "resourcesAvailableConfirm": "RAC",
    "infoRequestAck": "IACK", "infoRequestNak": "INAK", "serviceControlIndication": "SCI",
    "serviceControlResponse": "SCR", "admissionConfirmSequence": "ACF*",
}

START = time.monotonic()


# The ASN.1 loader is the endpoint's (one compile, one cache).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h323peer import compiled  # noqa: E402


def ras_codec():
    return compiled().H323_MESSAGES.RasMessage


def parse_hostport(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        sys.exit(f"{text!r} is not HOST:PORT (IPv6 as [addr]:port)")
    return host, int(port)


def transport(host, port):
    """An H.225.0 TransportAddress for an IPv4 or IPv6 socket address."""
    if ":" in host:
        return ("ip6Address", {"ip": socket.inet_pton(socket.AF_INET6, host), "port": port})
    return ("ipAddress", {"ip": socket.inet_pton(socket.AF_INET, host), "port": port})


def address_text(ta):
    """A TransportAddress as 'ip:port' (None for the other kinds)."""
    if not isinstance(ta, tuple):
        return None
    kind, v = ta
    if kind == "ipAddress":
        return f"{socket.inet_ntop(socket.AF_INET, v['ip'])}:{v['port']}"
    if kind == "ip6Address":
        return f"[{socket.inet_ntop(socket.AF_INET6, v['ip'])}]:{v['port']}"
    return None


def alias_text(a):
    kind, v = a
    if kind in ("dialedDigits", "h323-ID", "url-ID", "email-ID"):
        return f"{kind}:{v}"
    return kind


class Gatekeeper:
    def __init__(self, args):
        self.args = args
        self.codec = ras_codec()
        host, port = parse_hostport(args.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.next_ep = 1
        # endpointIdentifier -> {"ras": addr, "signal": [addr...], "aliases": [...]}
        self.endpoints = {}
        self.seq = 0
        self.stop = False
        self.irq_sent = False
        self.urq_sent = False

    # --- output -----------------------------------------------------------------------

    def log(self, direction, peer, name, val, extra=None):
        rec = {"t": round(time.monotonic() - START, 3), "dir": direction,
               "peer": peer, "type": ABBREV.get(name, name), "message": name}
        if isinstance(val, dict):
            if "requestSeqNum" in val:
                rec["seq"] = val["requestSeqNum"]
            for key in ("keepAlive", "answerCall", "timeToLive", "discoveryComplete"):
                if key in val:
                    rec[key] = val[key]
            if "endpointIdentifier" in val:
                rec["endpointIdentifier"] = val["endpointIdentifier"]
            if "gatekeeperIdentifier" in val:
                rec["gatekeeperIdentifier"] = val["gatekeeperIdentifier"]
            for key in ("terminalAlias", "endpointAlias", "srcInfo", "destinationInfo"):
                if key in val:
                    rec[key] = [alias_text(a) for a in val[key]]
            for key in ("callSignalAddress", "rasAddress"):
                if key in val:
                    v = val[key]
                    rec[key] = ([address_text(x) for x in v] if isinstance(v, list)
                                else address_text(v))
            for key in ("destCallSignalAddress", "srcCallSignalAddress"):
                if key in val:
                    rec[key] = address_text(val[key])
            if "callIdentifier" in val:
                rec["callIdentifier"] = val["callIdentifier"]["guid"].hex()
            if "conferenceID" in val:
                rec["conferenceID"] = val["conferenceID"].hex()
            if "callReferenceValue" in val:
                rec["callReferenceValue"] = val["callReferenceValue"]
            for key in ("rejectReason", "disengageReason", "reason"):
                if key in val and isinstance(val[key], tuple):
                    rec[key] = val[key][0]
            if "terminalType" in val:
                rec["terminalType"] = sorted(val["terminalType"].keys())
        if extra:
            rec.update(extra)
        print(json.dumps(rec), flush=True)

    # --- wire -------------------------------------------------------------------------

    def send(self, peer, name, val):
        self.codec.set_val((name, val))
        data = self.codec.to_aper()
        self.sock.sendto(data, peer)
        self.log("out", self.peer_text(peer), name, val)

    @staticmethod
    def peer_text(peer):
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def next_seq(self):
        self.seq = self.seq % 65535 + 1
        return self.seq

    # --- requests ---------------------------------------------------------------------

    def handle(self, data, peer):
        try:
            self.codec.from_aper(data)
            name, val = self.codec.get_val()
        except Exception as e:  # an undecodable datagram is reported, not fatal
            self.log("in", self.peer_text(peer), "malformed", None,
                     {"error": str(e)[:200], "bytes": data.hex()})
            return
        self.log("in", self.peer_text(peer), name, val)
        handler = getattr(self, "on_" + name, None)
        if handler:
            handler(peer, val)
        elif name.endswith("Request") or name in ("resourcesAvailableIndicate",
                                                    "serviceControlIndication"):
            self.send(peer, "unknownMessageResponse",
                      {"requestSeqNum": val.get("requestSeqNum", 1)})

    def on_gatekeeperRequest(self, peer, v):
        if self.args.reject_grq:
            self.send(peer, "gatekeeperReject", {
                "requestSeqNum": v["requestSeqNum"], "protocolIdentifier": H225_OID,
                "gatekeeperIdentifier": self.args.gatekeeper_id,
                "rejectReason": (self.args.reject_grq, 0)})
            return
        self.send(peer, "gatekeeperConfirm", {
            "requestSeqNum": v["requestSeqNum"], "protocolIdentifier": H225_OID,
            "gatekeeperIdentifier": self.args.gatekeeper_id,
            "rasAddress": transport(self.host, self.port)})

    def rrj(self, peer, v, reason):
        self.send(peer, "registrationReject", {
            "requestSeqNum": v["requestSeqNum"], "protocolIdentifier": H225_OID,
            "rejectReason": (reason, 0), "gatekeeperIdentifier": self.args.gatekeeper_id})

    def rcf(self, peer, v, eid):
        ep = self.endpoints[eid]
        ep["expires"] = (time.monotonic() + self.args.ttl) if self.args.ttl else None
        rcf = {"requestSeqNum": v["requestSeqNum"], "protocolIdentifier": H225_OID,
               "callSignalAddress": ep["signal"], "gatekeeperIdentifier": self.args.gatekeeper_id,
               "endpointIdentifier": eid, "willRespondToIRR": False,
               "maintainConnection": False}
        if ep["aliases"]:
            rcf["terminalAlias"] = ep["aliases"]
        if self.args.ttl:
            rcf["timeToLive"] = self.args.ttl
        self.send(peer, "registrationConfirm", rcf)

    def on_registrationRequest(self, peer, v):
        if self.args.reject_rrq:
            self.rrj(peer, v, self.args.reject_rrq)
            return
        if v.get("keepAlive"):
            eid = v.get("endpointIdentifier")
            if eid not in self.endpoints:
                self.rrj(peer, v, "fullRegistrationRequired")
                return
            self.endpoints[eid]["ras"] = peer
            self.rcf(peer, v, eid)
            return
        eid = f"EP{self.next_ep:04d}"
        self.next_ep += 1
        self.endpoints[eid] = {"ras": peer, "signal": v.get("callSignalAddress", []),
                               "aliases": v.get("terminalAlias", [])}
        self.rcf(peer, v, eid)

    def on_unregistrationRequest(self, peer, v):
        eid = v.get("endpointIdentifier")
        self.endpoints.pop(eid, None)
        self.send(peer, "unregistrationConfirm", {"requestSeqNum": v["requestSeqNum"]})

    def on_admissionRequest(self, peer, v):
        seq = v["requestSeqNum"]
        if v.get("endpointIdentifier") not in self.endpoints:
            self.send(peer, "admissionReject", {
                "requestSeqNum": seq, "rejectReason": ("callerNotRegistered", 0)})
            return
        if self.args.reject_arq:
            self.send(peer, "admissionReject", {
                "requestSeqNum": seq, "rejectReason": (self.args.reject_arq, 0)})
            return
        if self.args.route:
            dest = transport(*parse_hostport(self.args.route))
        elif "destCallSignalAddress" in v:
            dest = v["destCallSignalAddress"]
        else:
            self.send(peer, "admissionReject", {
                "requestSeqNum": seq, "rejectReason": ("calledPartyNotRegistered", 0)})
            return
        uuies = {k: False for k in ("setup", "callProceeding", "connect", "alerting",
                                    "information", "releaseComplete", "facility",
                                    "progress", "empty")}
        self.send(peer, "admissionConfirm", {
            "requestSeqNum": seq, "bandWidth": v.get("bandWidth", 1280),
            "callModel": ("direct", 0), "destCallSignalAddress": dest,
            "willRespondToIRR": False, "uuiesRequested": uuies})

    def on_disengageRequest(self, peer, v):
        self.send(peer, "disengageConfirm", {"requestSeqNum": v["requestSeqNum"]})

    def on_infoRequestResponse(self, peer, v):
        if v.get("needResponse"):
            self.send(peer, "infoRequestAck", {"requestSeqNum": v["requestSeqNum"]})

    def on_bandwidthRequest(self, peer, v):
        self.send(peer, "bandwidthConfirm", {"requestSeqNum": v["requestSeqNum"],
                                             "bandWidth": v["bandWidth"]})

    # --- requests of our own -----------------------------------------------------------

    def poll_own_requests(self):
        elapsed = time.monotonic() - START
        if self.args.irq_after is not None and not self.irq_sent and elapsed >= self.args.irq_after:
            for ep in self.endpoints.values():
                self.irq_sent = True
                self.send(ep["ras"], "infoRequest", {
                    "requestSeqNum": self.next_seq(), "callReferenceValue": 0})
        if self.args.urq_after is not None and not self.urq_sent and elapsed >= self.args.urq_after:
            for eid, ep in list(self.endpoints.items()):
                self.urq_sent = True
                self.send(ep["ras"], "unregistrationRequest", {
                    "requestSeqNum": self.next_seq(), "callSignalAddress": ep["signal"],
                    "endpointIdentifier": eid})
                del self.endpoints[eid]

    def run(self):
        print(json.dumps({"listening": self.peer_text((self.host, self.port)),
                          "gatekeeperIdentifier": self.args.gatekeeper_id}), flush=True)
        end = START + self.args.seconds if self.args.seconds else None
        while not self.stop:
            if end and time.monotonic() >= end:
                break
            self.poll_own_requests()
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                try:
                    data, peer = self.sock.recvfrom(65535)
                except OSError:
                    continue
                self.handle(data, peer)
        print(json.dumps({"done": True, "registered": sorted(self.endpoints)}), flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "check":
        ras_codec()
        print(json.dumps({"pycrate": "ok"}))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "decode":
        # One line per hex RasMessage: its type, or the decoding error.
        codec = ras_codec()
        bad = 0
        for h in sys.argv[2:]:
            try:
                codec.from_aper(bytes.fromhex(h))
                name, _ = codec.get_val()
                print(json.dumps({"type": ABBREV.get(name, name)}))
            except Exception as e:
                bad += 1
                print(json.dumps({"type": "malformed", "error": str(e)[:300]}))
        return 1 if bad else 0
    p = argparse.ArgumentParser(description="A minimal H.323 gatekeeper (RAS) on pycrate.")
    p.add_argument("--listen", required=True, help="UDP HOST:PORT (IPv6 as [addr]:port)")
    p.add_argument("--ttl", type=int, default=300,
                   help="timeToLive granted in RCF, seconds (0: none, no expiry)")
    p.add_argument("--gatekeeper-id", default="pygk", help="gatekeeperIdentifier")
    p.add_argument("--route", help="destCallSignalAddress of every ACF (HOST:PORT)")
    p.add_argument("--reject-arq", nargs="?", const="requestDenied", metavar="REASON",
                   help="answer ARQ with ARJ (default reason requestDenied)")
    p.add_argument("--reject-rrq", metavar="REASON",
                   help="answer every RRQ with RRJ and this reason (e.g. securityDenial)")
    p.add_argument("--reject-grq", metavar="REASON",
                   help="answer every GRQ with GRJ and this reason (e.g. resourceUnavailable)")
    p.add_argument("--irq-after", type=float, metavar="SECS",
                   help="send one IRQ to each registered endpoint after SECS")
    p.add_argument("--urq-after", type=float, metavar="SECS",
                   help="unregister each registered endpoint (URQ) after SECS")
    p.add_argument("--seconds", type=float, default=0, help="stop after SECS (0: SIGTERM only)")
    args = p.parse_args()
    gk = Gatekeeper(args)

    def stop(*_):
        gk.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    gk.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
