#!/usr/bin/env python3
"""Seed corpora for the H.323 fuzz targets from h323-asn1/testdata.

usage: python3 fuzz/seed-h323.py OUT_DIR   (writes OUT_DIR/{h225,h245,ras}/)

h245/ and ras/ files are the PDUs as they are; h225/ PDUs are wrapped as h225_decode reads them:
TPKT, a Q.931 message of the type the file name says (Setup with a Bearer capability), and the
User-user IE (protocol discriminator 0x05) holding the H323-UserInformation.
"""
import glob
import os
import struct
import sys

TYPES = {"setup": 0x05, "callProceeding": 0x02, "alerting": 0x01, "connect": 0x07,
         "releaseComplete": 0x5A}


def main():
    out = sys.argv[1]
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "h323-asn1", "testdata")
    for kind in ("h225", "h245", "ras"):
        os.makedirs(os.path.join(out, kind), exist_ok=True)
        for path in glob.glob(f"{data}/{kind}/*.hex") + glob.glob(f"{data}/{kind}/canonical/*.hex"):
            pdu = bytes.fromhex(open(path).read().strip())
            name = os.path.basename(path) + (".canonical" if "canonical" in path else "")
            if kind == "h225":
                msg = os.path.basename(path).rsplit("-", 1)[1][:-4]
                uu = b"\x05" + pdu
                q = bytes([0x08, 0x02, 0x12, 0x34, TYPES[msg]])
                if msg == "setup":
                    q += bytes([0x04, 0x03, 0x80, 0x90, 0xA5])
                q += b"\x7e" + struct.pack(">H", len(uu)) + uu
                pdu = b"\x03\x00" + struct.pack(">H", len(q) + 4) + q
            with open(os.path.join(out, kind, name), "wb") as f:
                f.write(pdu)


if __name__ == "__main__":
    main()
