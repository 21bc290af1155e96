#!/usr/bin/env python3
"""Extracts the H.225.0 (call signalling and RAS) and H.245 PDUs of a capture into hex files.

Usage: extract.py CAPTURE NAME OUTDIR

For every frame tshark dissects as H.225.0 or H.245, takes the TCP or UDP payload and writes:
  ras/NAME-fFRAME-MESSAGE.hex   a RasMessage (UDP payload)
  h225/NAME-fFRAME-MESSAGE.hex  an H323-UserInformation (Q.931 user-user IE content after the
                                protocol discriminator, inside TPKT)
  h245/NAME-fFRAME[-N]-MESSAGE.hex  a MultimediaSystemControlMessage (TPKT payload)
Frames tshark flags as malformed or with an error-level expert item go under malformed/<kind>/.
Needs tshark. Takes tshark's reassembled TCP data where a TPKT spans segments; a frame that still
holds no whole TPKT packets is reported on stderr and skipped.
"""
import os
import re
import subprocess
import sys


def tshark(capture, *args):
    out = subprocess.run(["tshark", "-r", capture, *args], check=True, capture_output=True, text=True)
    return out.stdout


def tpkt_packets(data):
    while data:
        if len(data) < 4 or data[0] != 3:
            raise ValueError("not TPKT")
        length = int.from_bytes(data[2:4], "big")
        if length < 4 or length > len(data):
            raise ValueError("TPKT split across segments")
        yield data[4:length]
        data = data[length:]


def user_user(q931):
    """Returns the user-user IE content (after the protocol discriminator) of a Q.931 message."""
    if len(q931) < 3 or q931[0] != 0x08:
        raise ValueError("not Q.931")
    crl = q931[1] & 0x0F
    i = 2 + crl + 1  # call reference, message type
    while i < len(q931):
        ie = q931[i]
        if ie & 0x80:  # single-octet IE
            i += 1
            continue
        if ie == 0x7E:  # user-user: two-octet length (H.225.0 clause 7.2.2.28... Q.931 4.5.30)
            length = int.from_bytes(q931[i + 1 : i + 3], "big")
            body = q931[i + 3 : i + 3 + length]
            if len(body) != length or not body or body[0] != 0x05:
                raise ValueError("bad user-user IE")
            return body[1:]
        length = q931[i + 1]
        i += 2 + length
    raise ValueError("no user-user IE")


def slug(info):
    info = re.sub(r"\[.*?\]", "", info)
    info = info.replace("CS:", "").replace("RAS:", "").split("(")[0].strip()
    words = re.findall(r"[A-Za-z0-9]+", info)
    return "-".join(words[:2]) or "unknown"


def main():
    capture, name, outdir = sys.argv[1:4]
    bad = set(tshark(capture, "-Y", "_ws.malformed || _ws.expert.severity >= error",
                     "-T", "fields", "-e", "frame.number").split())
    rows = tshark(capture, "-Y", "h225 || h245", "-T", "fields", "-E", "separator=|",
                  "-e", "frame.number", "-e", "tcp.payload", "-e", "tcp.reassembled.data",
                  "-e", "udp.payload",
                  "-e", "h245", "-e", "_ws.col.Info")
    for row in rows.splitlines():
        frame, tcp, reassembled, udp, h245, info = row.split("|", 5)
        tcp = reassembled or tcp
        sub = "malformed/" if frame in bad else ""
        pdus = []
        try:
            if udp:
                pdus.append(("ras", bytes.fromhex(udp)))
            elif h245:
                pdus.extend(("h245", p) for p in tpkt_packets(bytes.fromhex(tcp)))
            else:
                pdus.extend(("h225", user_user(p)) for p in tpkt_packets(bytes.fromhex(tcp)))
        except ValueError as e:
            print(f"frame {frame}: {e}", file=sys.stderr)
            continue
        infos = info.split() if len(pdus) > 1 else [info]
        for n, (kind, pdu) in enumerate(pdus):
            part = f"-{n + 1}" if len(pdus) > 1 else ""
            what = slug(infos[n] if n < len(infos) else info)
            if sub:
                what = "malformed"
            path = os.path.join(outdir, f"{sub}{kind}", f"{name}-f{frame}{part}-{what}.hex")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(pdu.hex() + "\n")
            print(path)


main()
