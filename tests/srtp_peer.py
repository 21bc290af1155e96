#!/usr/bin/env python3
"""An SRTP peer built on libsrtp (PyPI `pylibsrtp`), independent of sgw's SRTP code.

It sends COUNT PCMU packets (20 ms apart) protected with SEND_KEY to TO from BIND, and
unprotects with RECV_KEY every packet that arrives on BIND meanwhile. Half-way it also sends
one packet with a corrupted authentication tag and one replay of an earlier packet, which the
receiver must drop. It prints one JSON object:

    {"sent": N, "received_ok": N, "received_bad": N, "tampered": 1, "replayed": 1}

Keys are the base64 `inline:` values of SDP a=crypto lines (RFC 4568), 30 bytes each.

usage: srtp_peer.py BIND TO SEND_KEY RECV_KEY SUITE COUNT
"""

import base64
import json
import select
import socket
import struct
import sys
import time

import pylibsrtp

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main():
    bind, to, send_key, recv_key, suite, count = sys.argv[1:7]
    count = int(count)
    profile = PROFILES[suite]
    tx = pylibsrtp.Session(
        policy=pylibsrtp.Policy(
            key=base64.b64decode(send_key),
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=profile,
        )
    )
    rx = pylibsrtp.Session(
        policy=pylibsrtp.Policy(
            key=base64.b64decode(recv_key),
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile,
        )
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(addr(bind))
    dest = addr(to)
    ok = bad = sent = 0
    earlier = None
    next_send = time.monotonic()
    seq = 1000
    end = None
    while True:
        now = time.monotonic()
        if sent < count and now >= next_send:
            header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5347_5750)
            packet = tx.protect(header + bytes([0xFF]) * 160)
            sock.sendto(packet, dest)
            if sent == 5:
                earlier = packet
            if sent == count // 2:
                # A forged packet (last tag byte changed) and a replay of packet 5.
                seq += 1
                header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5347_5750)
                forged = bytearray(tx.protect(header + bytes([0xFF]) * 160))
                forged[-1] ^= 0x55
                sock.sendto(bytes(forged), dest)
                sock.sendto(earlier, dest)
            sent += 1
            seq += 1
            next_send += 0.02
        if sent >= count and end is None:
            # Keep receiving a little after the last packet went out.
            end = now + 0.5
        if end is not None and now >= end:
            break
        wait = max(0.0, min(next_send - now, 0.02))
        ready, _, _ = select.select([sock], [], [], wait)
        if ready:
            data = sock.recv(2048)
            try:
                rx.unprotect(data) if data[1] < 200 or data[1] > 211 else rx.unprotect_rtcp(data)
                ok += 1
            except pylibsrtp.Error:
                bad += 1
    print(
        json.dumps(
            {"sent": sent, "received_ok": ok, "received_bad": bad, "tampered": 1, "replayed": 1}
        )
    )


if __name__ == "__main__":
    main()
