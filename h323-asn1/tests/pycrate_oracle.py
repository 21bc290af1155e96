#!/usr/bin/env python3
"""Independent aligned-PER oracle for h323-asn1, built on pycrate (PyPI).

pycrate's own ASN.1 compiler compiles the same ITU-T modules we generate from (H.225.0 v8, H.235,
H.245 v17; found in shared/reference/asn1 above this file, or $SGW_ASN1_DIR), unrenamed, into a
cached Python module. pycrate also ships H225/H245 precompiled (pycrate_asn1dir), but those are
H.225.0 v7 and H.245 v16: a SEQUENCE that gained extension additions since has a longer
extension bitmap in our canonical encoding, so they cannot serve as a byte-exact oracle.

Usage:
  pycrate_oracle.py check                 exit 0 if pycrate is importable
  pycrate_oracle.py encode                one line per message: NAME PDU HEX STATUS, STATUS "ok",
                                          or "pycrate-bug" when pycrate cannot decode its own
                                          encoding (see self_consistent)
  pycrate_oracle.py decode PDU HEX        the value in JER (X.697 JSON), one line; exit 1 if invalid
  pycrate_oracle.py reencode PDU HEX      decode, then print pycrate's own encoding; exit 1 if invalid
  pycrate_oracle.py decode-lines           reads "PDU HEX" lines on stdin, writes for each one
                                          line: "ok JER" or "error MESSAGE"
  pycrate_oracle.py canonical DIR...      for each DIR/*.hex (DIR named h225, ras or h245) whose
                                          pycrate re-encoding differs, write it to
                                          DIR/canonical/NAME.hex, if pycrate decodes it back to
                                          the same value (else say so on stderr)
PDU is one of: h225 (H323-UserInformation), ras (RasMessage), h245 (MultimediaSystemControlMessage),
olc (OpenLogicalChannel, as in a fastStart element).
"""
import hashlib
import os
import sys
import tempfile


def asn1_dir():
    if os.environ.get("SGW_ASN1_DIR"):
        return os.environ["SGW_ASN1_DIR"]
    here = os.path.dirname(os.path.abspath(__file__))
    while True:
        candidate = os.path.join(here, "shared", "reference", "asn1")
        if os.path.isfile(os.path.join(candidate, "h225.asn")):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            sys.exit("shared/reference/asn1 not found; set SGW_ASN1_DIR")
        here = parent


def compiled():
    """Compiles H.235, H.245 and H.225.0 with pycrate once, cached by content hash."""
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


def pdus():
    mod = compiled()
    return {
        "h225": mod.H323_MESSAGES.H323_UserInformation,
        "ras": mod.H323_MESSAGES.RasMessage,
        "h245": mod.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage,
        "olc": mod.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel,
    }


H225_OID = (0, 0, 8, 2250, 0, 4)
H245_OID = (0, 0, 8, 245, 0, 13)
CONF_ID = bytes(range(16))
CALL_ID = bytes(range(16, 32))
V4 = bytes([192, 0, 2, 10])
V6 = bytes.fromhex("20010db8000000000000000000000010")


def unicast(ip, port):
    if len(ip) == 4:
        return ("unicastAddress", ("iPAddress", {"network": ip, "tsapIdentifier": port}))
    return ("unicastAddress", ("iP6Address", {"network": ip, "tsapIdentifier": port}))


def olc(ip, number, session, codec, forward=True):
    """A fastStart / H.245 OpenLogicalChannel for G.711 (or G.729) audio over RTP."""
    params = {
        "dataType": ("audioData", codec),
        "multiplexParameters": ("h2250LogicalChannelParameters", {
            "sessionID": session,
            "mediaControlChannel": unicast(ip, 5005),
        }),
    }
    if forward:
        return {"forwardLogicalChannelNumber": number,
                "forwardLogicalChannelParameters": params}
    # receive channel: forward parameters are null, the reverse ones carry our RTP address
    params["multiplexParameters"][1]["mediaChannel"] = unicast(ip, 5004)
    return {
        "forwardLogicalChannelNumber": number,
        "forwardLogicalChannelParameters": {
            "dataType": ("nullData", 0),
            "multiplexParameters": ("none", 0),
        },
        "reverseLogicalChannelParameters": {
            "dataType": ("audioData", codec),
            "multiplexParameters": params["multiplexParameters"],
        },
    }


def transport(ip, port):
    if len(ip) == 4:
        return ("ipAddress", {"ip": ip, "port": port})
    return ("ip6Address", {"ip": ip, "port": port})


def endpoint():
    return {
        "vendor": {
            "vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 21324},
            "productId": b"sgw",
            "versionId": b"0.1",
        },
        "terminal": {},
        "mc": False,
        "undefinedNode": False,
    }


def uu(body, fast_start=None, h245=None):
    pdu = {"h323-message-body": body, "h245Tunneling": True}
    if h245 is not None:
        pdu["h245Control"] = h245
    return {"h323-uu-pdu": pdu}


def setup(ip):
    enc = pdus()["olc"]
    fast = []
    for value in (olc(ip, 1, 1, ("g711Ulaw64k", 20)),
                  olc(ip, 2, 1, ("g711Ulaw64k", 20), forward=False)):
        enc.set_val(value)
        fast.append(enc.to_aper())
    body = {
        "protocolIdentifier": H225_OID,
        "h245Address": transport(ip, 1721),
        "sourceAddress": [("h323-ID", "alice"), ("dialedDigits", "1001")],
        "sourceInfo": endpoint(),
        "destinationAddress": [("dialedDigits", "2002")],
        "destCallSignalAddress": transport(ip, 1720),
        "activeMC": False,
        "conferenceID": CONF_ID,
        "conferenceGoal": ("create", 0),
        "callType": ("pointToPoint", 0),
        "sourceCallSignalAddress": transport(ip, 1720),
        "callIdentifier": {"guid": CALL_ID},
        "fastStart": fast,
        "mediaWaitForConnect": False,
        "canOverlapSend": False,
        "multipleCalls": False,
        "maintainConnection": False,
    }
    return uu(("setup", body))


def messages():
    p = pdus()
    tcs = {
        "sequenceNumber": 1,
        "protocolIdentifier": H245_OID,
        "multiplexCapability": ("h2250Capability", {
            "maximumAudioDelayJitter": 60,
            "receiveMultipointCapability": mp(),
            "transmitMultipointCapability": mp(),
            "receiveAndTransmitMultipointCapability": mp(),
            "mcCapability": {"centralizedConferenceMC": False, "decentralizedConferenceMC": False},
            "rtcpVideoControlCapability": False,
            "mediaPacketizationCapability": {"h261aVideoPacketization": False},
        }),
        "capabilityTable": [
            {"capabilityTableEntryNumber": 1,
             "capability": ("receiveAudioCapability", ("g711Ulaw64k", 20))},
            {"capabilityTableEntryNumber": 2,
             "capability": ("receiveAudioCapability", ("g711Alaw64k", 20))},
            {"capabilityTableEntryNumber": 3,
             "capability": ("receiveAudioCapability", ("g729AnnexA", 2))},
            {"capabilityTableEntryNumber": 4,
             "capability": ("receiveUserInputCapability", ("dtmf", 0))},
        ],
        "capabilityDescriptors": [
            {"capabilityDescriptorNumber": 0,
             "simultaneousCapabilities": [[1, 2, 3], [4]]},
        ],
    }
    return [
        ("setup-faststart-ipv4", "h225", setup(V4)),
        ("setup-faststart-ipv6", "h225", setup(V6)),
        ("connect", "h225", uu(("connect", {
            "protocolIdentifier": H225_OID,
            "h245Address": transport(V6, 1721),
            "destinationInfo": endpoint(),
            "conferenceID": CONF_ID,
            "callIdentifier": {"guid": CALL_ID},
            "multipleCalls": False,
            "maintainConnection": False,
        }))),
        ("release-complete", "h225", uu(("releaseComplete", {
            "protocolIdentifier": H225_OID,
            "reason": ("calledPartyNotRegistered", 0),  # an extension alternative
            "callIdentifier": {"guid": CALL_ID},
        }))),
        ("facility", "h225", uu(("facility", {
            "protocolIdentifier": H225_OID,
            "alternativeAddress": transport(V4, 1720),
            "conferenceID": CONF_ID,
            "reason": ("callForwarded", 0),
            "callIdentifier": {"guid": CALL_ID},
            "multipleCalls": False,
            "maintainConnection": False,
        }))),
        ("rrq", "ras", ("registrationRequest", {
            "requestSeqNum": 42,
            "protocolIdentifier": H225_OID,
            "discoveryComplete": False,
            "callSignalAddress": [transport(V4, 1720)],
            "rasAddress": [transport(V4, 1719)],
            "terminalType": endpoint(),
            "terminalAlias": [("h323-ID", "alice"), ("dialedDigits", "1001")],
            "endpointVendor": endpoint()["vendor"],
            "timeToLive": 300,
            "keepAlive": False,
            "willSupplyUUIEs": False,
            "maintainConnection": False,
        })),
        ("arq", "ras", ("admissionRequest", {
            "requestSeqNum": 43,
            "callType": ("pointToPoint", 0),
            "endpointIdentifier": "EP1",
            "destinationInfo": [("dialedDigits", "2002")],
            "srcInfo": [("h323-ID", "alice")],
            "bandWidth": 1280,
            "callReferenceValue": 7,
            "conferenceID": CONF_ID,
            "activeMC": False,
            "answerCall": False,
            "canMapAlias": True,
            "callIdentifier": {"guid": CALL_ID},
            "gatekeeperIdentifier": "GK",
            "willSupplyUUIEs": False,
        })),
        ("terminal-capability-set", "h245", ("request", ("terminalCapabilitySet", tcs))),
        ("open-logical-channel", "h245",
         ("request", ("openLogicalChannel", olc(V6, 101, 1, ("g711Alaw64k", 20))))),
    ]


def mp():
    return {"multicastCapability": False, "multiUniCastConference": False,
            "mediaDistributionCapability": [{
                "centralizedControl": False, "distributedControl": False,
                "centralizedAudio": False, "distributedAudio": False,
                "centralizedVideo": False, "distributedVideo": False,
            }]}


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "check":
        pdus()
        print("pycrate ok")
    elif mode == "encode":
        p = pdus()
        for name, pdu, value in messages():
            obj = p[pdu]
            obj.set_val(value)
            data = obj.to_aper()
            print(name, pdu, data.hex(), "ok" if self_consistent(obj, data) else "pycrate-bug")
    elif mode in ("decode", "reencode") and len(sys.argv) == 4:
        obj = pdus()[sys.argv[2]]
        data = bytes.fromhex(sys.argv[3])
        try:
            obj.from_aper(data)
        except Exception as e:  # pycrate raises several error types
            print(f"pycrate cannot decode: {e}", file=sys.stderr)
            sys.exit(1)
        if mode == "decode":
            print(obj.to_jer().replace("\n", " "))
        else:
            print(obj.to_aper().hex())
    elif mode == "decode-lines":
        p = pdus()
        for line in sys.stdin:
            pdu, data = line.split()
            obj = p[pdu]
            try:
                obj.from_aper(bytes.fromhex(data))
                print("ok", obj.to_jer().replace("\n", " "), flush=True)
            except Exception as e:  # pycrate raises several error types
                print("error", str(e).replace("\n", " "), flush=True)
    elif mode == "canonical":
        for d in sys.argv[2:]:
            write_canonical(d)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


def self_consistent(obj, data):
    """Whether pycrate decodes `data`, its own encoding, back to the same octets.

    pycrate 0.8 sometimes puts a spurious zero octet between a SEQUENCE's extension bitmap and
    the first extension-addition open type (an AdmissionRequest always: the bitmap ends 4 bits
    into an octet), and then cannot decode its own output. rasn and the captured OpenH323/Cisco
    encoders agree with each other there, not with pycrate."""
    try:
        obj.from_aper(data)
        return obj.to_aper() == data
    except Exception:  # pycrate raises several error types
        return False


def write_canonical(d):
    obj = pdus()[os.path.basename(os.path.normpath(d))]
    out = os.path.join(d, "canonical")
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(d)):
        if not name.endswith(".hex"):
            continue
        with open(os.path.join(d, name)) as f:
            data = bytes.fromhex(f.read().strip())
        obj.from_aper(data)
        value = obj.get_val()
        again = obj.to_aper()
        if again == data:
            continue
        try:
            obj.from_aper(again)
            ok = obj.get_val() == value
        except Exception:  # pycrate raises several error types
            ok = False
        if ok:
            with open(os.path.join(out, name), "w") as f:
                f.write(again.hex() + "\n")
        else:
            print(f"{d}/{name}: pycrate cannot decode its own re-encoding {again.hex()}",
                  file=sys.stderr)


main()
