use super::*;
use proptest::prelude::*;

const NONCE: InstanceNonce = InstanceNonce([
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
]);

// GW1's Hello on the signalling connection, capabilities = cover traffic (TUNNEL.md §8).
const HELLO_GW1_SIG: [u8; 32] = [
    0x53, 0x47, 0x57, 0x54, // "SGWT"
    0x01, 0x00, // version 1.0
    0x01, 0x00, // Hello, flags 0
    0x00, 0x16, // body length 22
    0x01, 0x01, // GW1, signalling
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
    0x00, 0x00, 0x00, 0x01, // capabilities
];

// GW2 refuses a second GW1: reason 5, text "busy".
const REFUSAL_BUSY: [u8; 16] = [
    0x53, 0x47, 0x57, 0x54, 0x01, 0x00, 0x02, 0x00, 0x00, 0x06, // header, body 6
    0x05, 0x04, b'b', b'u', b's', b'y',
];

fn hello_gw1_sig() -> Hello {
    Hello {
        version: Version::CURRENT,
        role: Role::Gw1,
        kind: ConnectionKind::Signalling,
        instance: NONCE,
        capabilities: Capabilities::COVER_TRAFFIC,
    }
}

#[test]
fn hello_golden_bytes() {
    let h = Handshake::Hello(hello_gw1_sig());
    let mut out = Vec::new();
    h.encode(&mut out).unwrap();
    assert_eq!(out, HELLO_GW1_SIG);
    assert_eq!(Handshake::decode(&HELLO_GW1_SIG), Ok(h.clone()));
    assert_eq!(h.buffer_len(), HELLO_GW1_SIG.len());
    let f = HandshakeFrame::new_checked(&HELLO_GW1_SIG[..]).unwrap();
    assert_eq!(f.magic(), HANDSHAKE_MAGIC);
    assert_eq!((f.major(), f.minor()), (1, 0));
    assert_eq!(f.frame_type(), HandshakeType::Hello);
    assert_eq!(f.hello_role(), Role::Gw1);
    assert_eq!(f.hello_kind(), ConnectionKind::Signalling);
    assert_eq!(f.hello_instance(), NONCE);
    assert_eq!(f.hello_capabilities(), Capabilities(1));
    assert_eq!(f.body().len(), HELLO_BODY_LEN);
}

#[test]
fn refusal_golden_bytes() {
    let r = Handshake::Refusal(Refusal::new(RefusalReason::AnotherInstance, "busy"));
    let mut out = Vec::new();
    r.encode(&mut out).unwrap();
    assert_eq!(out, REFUSAL_BUSY);
    assert_eq!(Handshake::decode(&REFUSAL_BUSY), Ok(r));
}

#[test]
fn emit_into_prefilled_buffer_sets_every_byte() {
    // smoltcp habit: 0xa5 shows any byte emit forgot.
    let mut buf = [0xa5u8; 32];
    Handshake::Hello(hello_gw1_sig())
        .emit(&mut HandshakeFrame::new_unchecked(&mut buf[..]))
        .unwrap();
    assert_eq!(buf, HELLO_GW1_SIG);
    let mut small = [0u8; 31];
    assert_eq!(
        Handshake::Hello(hello_gw1_sig()).emit(&mut HandshakeFrame::new_unchecked(&mut small[..])),
        Err(TunnelEncodeError::BufferTooSmall {
            len: 31,
            needed: 32
        })
    );
}

#[test]
fn wire_enums_keep_unknown_values() {
    for v in 0..=255u8 {
        assert_eq!(u8::from(Role::from(v)), v);
        assert_eq!(u8::from(ConnectionKind::from(v)), v);
        assert_eq!(u8::from(RefusalReason::from(v)), v);
        assert_eq!(u8::from(HandshakeType::from(v)), v);
    }
    let mut b = HELLO_GW1_SIG;
    b[10] = 0x07;
    b[11] = 0x09;
    let Ok(Handshake::Hello(h)) = Handshake::decode(&b) else {
        panic!("hello with unknown role should parse")
    };
    assert_eq!(h.role, Role::Unknown(7));
    assert_eq!(h.kind, ConnectionKind::Unknown(9));
}

fn with(mut b: Vec<u8>, at: usize, v: u8) -> Vec<u8> {
    b[at] = v;
    b
}

#[test]
fn handshake_decode_errors() {
    let hello = HELLO_GW1_SIG.to_vec();
    let mut longer = hello.clone();
    longer.push(0);
    let mut short_body = hello[..30].to_vec();
    short_body[9] = 20;
    let mut newer_minor = with(hello.clone(), 5, 7);
    newer_minor[9] = 24;
    newer_minor.extend_from_slice(&[0xde, 0xad]);
    let mut bad_text = REFUSAL_BUSY.to_vec();
    bad_text[13] = 0xff;
    let mut text_past_body = REFUSAL_BUSY.to_vec();
    text_past_body[11] = 5;
    let cases: Vec<(&str, Vec<u8>, Result<(), TunnelDecodeError>)> = vec![
        (
            "empty",
            vec![],
            Err(TunnelDecodeError::Truncated {
                offset: 0,
                what: "handshake header",
            }),
        ),
        (
            "magic",
            with(hello.clone(), 1, b'X'),
            Err(TunnelDecodeError::BadMagic),
        ),
        (
            "header cut",
            hello[..9].to_vec(),
            Err(TunnelDecodeError::Truncated {
                offset: 9,
                what: "handshake header",
            }),
        ),
        (
            "body cut",
            hello[..31].to_vec(),
            Err(TunnelDecodeError::Truncated {
                offset: 31,
                what: "handshake body",
            }),
        ),
        (
            "trailing",
            longer,
            Err(TunnelDecodeError::TrailingBytes { offset: 32 }),
        ),
        (
            "major 2",
            with(with(hello.clone(), 4, 2), 5, 3),
            Err(TunnelDecodeError::UnsupportedVersion { major: 2, minor: 3 }),
        ),
        (
            "major 0",
            with(hello.clone(), 4, 0),
            Err(TunnelDecodeError::UnsupportedVersion { major: 0, minor: 0 }),
        ),
        (
            "type",
            with(hello.clone(), 6, 9),
            Err(TunnelDecodeError::UnknownFrameType {
                offset: 6,
                value: 9,
            }),
        ),
        (
            "critical flag",
            with(hello.clone(), 7, 0x90),
            Err(TunnelDecodeError::UnknownCriticalFlags {
                offset: 7,
                flags: 0x90,
            }),
        ),
        ("ignorable flag", with(hello.clone(), 7, 0x01), Ok(())),
        ("newer minor, longer hello", newer_minor, Ok(())),
        (
            "hello body short",
            short_body,
            Err(TunnelDecodeError::TooShort {
                offset: 8,
                what: "Hello body length",
                found: 20,
                min: 22,
            }),
        ),
        (
            "body limit",
            with(with(hello.clone(), 8, 0x02), 9, 0x01),
            Err(TunnelDecodeError::LimitExceeded {
                offset: 8,
                what: "handshake body length",
                found: 513,
                limit: 512,
            }),
        ),
        (
            "refusal text utf8",
            bad_text,
            Err(TunnelDecodeError::InvalidUtf8 { offset: 13 }),
        ),
        (
            "refusal text past body",
            text_past_body,
            Err(TunnelDecodeError::Truncated {
                offset: 16,
                what: "refusal text",
            }),
        ),
        (
            "refusal body short",
            vec![0x53, 0x47, 0x57, 0x54, 1, 0, 2, 0, 0, 1, 5],
            Err(TunnelDecodeError::TooShort {
                offset: 8,
                what: "Refusal body length",
                found: 1,
                min: 2,
            }),
        ),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(Handshake::decode(&bytes).map(|_| ()), want, "{name}");
    }
}

#[test]
fn refusal_from_another_major_is_readable() {
    // A version 9 peer refusing us: the Refusal layout is frozen, so we can read why.
    let mut b = REFUSAL_BUSY.to_vec();
    b[4] = 9;
    b[5] = 4;
    b[10] = 0x01;
    let Ok(Handshake::Refusal(r)) = Handshake::decode(&b) else {
        panic!("refusal should parse")
    };
    assert_eq!(r.version, Version { major: 9, minor: 4 });
    assert_eq!(r.reason, RefusalReason::UnsupportedVersion);
    assert_eq!(
        r.to_string(),
        "refused (unsupported protocol version): busy [peer speaks tunnel protocol 9.4]"
    );
}

#[test]
fn refusal_text_is_cut_on_a_char_boundary() {
    let long = "é".repeat(200); // 400 bytes
    let r = Refusal::new(RefusalReason::Malformed, &long);
    assert_eq!(r.text.len(), 254);
    let h = Handshake::Refusal(r);
    let mut out = Vec::new();
    h.encode(&mut out).unwrap();
    assert_eq!(Handshake::decode(&out), Ok(h));
    let too_long = Handshake::Refusal(Refusal {
        version: Version::CURRENT,
        reason: RefusalReason::Malformed,
        text: "x".repeat(256),
    });
    let mut out = vec![1, 2];
    assert!(too_long.encode(&mut out).is_err());
    assert_eq!(out, [1, 2]);
}

#[test]
fn split_handshake_at_every_byte() {
    let mut stream = HELLO_GW1_SIG.to_vec();
    stream.extend_from_slice(b"MT\x01\x00"); // start of the first Meta frame
    for cut in 0..HELLO_GW1_SIG.len() {
        assert_eq!(split_handshake(&stream[..cut]), Ok(None), "cut {cut}");
    }
    for cut in HELLO_GW1_SIG.len()..=stream.len() {
        assert_eq!(split_handshake(&stream[..cut]), Ok(Some(32)), "cut {cut}");
    }
    assert_eq!(split_handshake(b"SGWX"), Err(TunnelDecodeError::BadMagic));
    assert_eq!(split_handshake(b"G"), Err(TunnelDecodeError::BadMagic));
    // A Meta frame where a handshake should be: refused at the first byte.
    assert_eq!(split_handshake(b"M"), Err(TunnelDecodeError::BadMagic));
}

#[test]
fn hello_round_trips_for_every_role_and_kind() {
    for role in [Role::Gw1, Role::Gw2, Role::Unknown(0x42)] {
        for kind in [
            ConnectionKind::Signalling,
            ConnectionKind::Media,
            ConnectionKind::Unknown(0),
        ] {
            let h = Handshake::Hello(Hello {
                version: Version {
                    major: TUNNEL_VERSION,
                    minor: 3,
                },
                role,
                kind,
                instance: InstanceNonce([role_byte(role); 16]),
                capabilities: Capabilities(0xdead_beef),
            });
            let mut out = Vec::new();
            h.encode(&mut out).unwrap();
            assert_eq!(Handshake::decode(&out), Ok(h));
        }
    }
}

fn role_byte(r: Role) -> u8 {
    u8::from(r)
}

#[test]
fn capabilities() {
    let ours = Capabilities::SUPPORTED;
    let theirs = Capabilities(0x8000_0001);
    assert_eq!(ours.common(theirs), Capabilities::COVER_TRAFFIC);
    assert!(theirs.contains(Capabilities::COVER_TRAFFIC));
    assert!(!Capabilities(0).contains(Capabilities::COVER_TRAFFIC));
    assert_eq!(NONCE.to_string(), "00112233445566778899aabbccddeeff");
}

// Media frames (TUNNEL.md §7).

// Stream 0x0102, RTP, a 12-byte RTP header with no payload.
const MEDIA_RTP: [u8; 17] = [
    0x00, 0x0f, // length 15
    0x01, 0x02, // stream id
    0x00, // flags
    0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0, 0xca, 0xfe, 0xba, 0xbe,
];

// Stream 7, RTCP, 8 bytes (an empty receiver report).
const MEDIA_RTCP: [u8; 13] = [
    0x00, 0x0b, 0x00, 0x07, 0x01, 0x80, 0xc9, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
];

// Cover frame with no packet.
const MEDIA_COVER: [u8; 5] = [0x00, 0x03, 0x00, 0x00, 0x02];

#[test]
fn media_golden_bytes() {
    let cases: [(&[u8], MediaRepr, &[u8]); 3] = [
        (
            &MEDIA_RTP,
            MediaRepr {
                stream: StreamId(0x0102),
                rtcp: false,
                cover: false,
            },
            &MEDIA_RTP[5..],
        ),
        (
            &MEDIA_RTCP,
            MediaRepr {
                stream: StreamId(7),
                rtcp: true,
                cover: false,
            },
            &MEDIA_RTCP[5..],
        ),
        (&MEDIA_COVER, MediaRepr::COVER, &[]),
    ];
    for (bytes, repr, packet) in cases {
        let f = MediaFrame::new_checked(bytes).unwrap();
        assert_eq!(MediaRepr::parse(&f), Ok(repr));
        assert_eq!(f.packet(), packet);
        assert_eq!(f.stream_id(), repr.stream);
        assert_eq!(f.is_rtcp(), repr.rtcp);
        assert_eq!(f.is_cover(), repr.cover);
        let mut out = vec![0xee];
        repr.encode(packet, &mut out).unwrap();
        assert_eq!(&out[1..], bytes);
        // emit then fill, into a buffer pre-filled with 0xa5.
        let mut buf = vec![0xa5; MediaRepr::buffer_len(packet.len())];
        let mut frame = MediaFrame::new_unchecked(&mut buf[..]);
        repr.emit(&mut frame, packet.len()).unwrap();
        frame.packet_mut().copy_from_slice(packet);
        assert_eq!(buf, bytes);
    }
}

#[test]
fn media_decode_errors() {
    let mut trailing = MEDIA_RTP.to_vec();
    trailing.push(0);
    let cases: Vec<(&str, Vec<u8>, TunnelDecodeError)> = vec![
        (
            "empty",
            vec![],
            TunnelDecodeError::Truncated {
                offset: 0,
                what: "media frame length",
            },
        ),
        (
            "one byte",
            vec![0],
            TunnelDecodeError::Truncated {
                offset: 1,
                what: "media frame length",
            },
        ),
        (
            "cut",
            MEDIA_RTP[..16].to_vec(),
            TunnelDecodeError::Truncated {
                offset: 16,
                what: "media frame",
            },
        ),
        (
            "trailing",
            trailing,
            TunnelDecodeError::TrailingBytes { offset: 17 },
        ),
        (
            "length below header",
            vec![0, 2, 0, 0],
            TunnelDecodeError::TooShort {
                offset: 0,
                what: "media frame length",
                found: 2,
                min: 3,
            },
        ),
        (
            "length above limit",
            vec![0x20, 0x00],
            TunnelDecodeError::LimitExceeded {
                offset: 0,
                what: "media frame length",
                found: 8194,
                limit: 8192,
            },
        ),
        (
            "critical flag",
            vec![0, 3, 0, 0, 0x41],
            TunnelDecodeError::UnknownCriticalFlags {
                offset: 4,
                flags: 0x40,
            },
        ),
    ];
    for (name, bytes, want) in cases {
        let got = MediaFrame::new_checked(&bytes[..]).and_then(|f| MediaRepr::parse(&f));
        assert_eq!(got, Err(want), "{name}");
    }
    // Unknown ignorable flag bits are dropped.
    let f = MediaFrame::new_checked(&[0, 3, 0, 9, 0x09][..]).unwrap();
    assert_eq!(
        MediaRepr::parse(&f),
        Ok(MediaRepr {
            stream: StreamId(9),
            rtcp: true,
            cover: false
        })
    );
}

#[test]
fn media_encode_limits() {
    let repr = MediaRepr {
        stream: StreamId(1),
        rtcp: false,
        cover: false,
    };
    let mut out = vec![1];
    let max = vec![0u8; MAX_MEDIA_PACKET];
    repr.encode(&max, &mut out).unwrap();
    assert_eq!(out.len(), 1 + MAX_MEDIA_FRAME);
    let mut framer = MediaFramer::new();
    framer.push(&out[1..]);
    assert_eq!(
        framer.next_frame().unwrap().unwrap().1.len(),
        MAX_MEDIA_PACKET
    );
    let mut out = vec![1];
    let too_big = vec![0u8; MAX_MEDIA_PACKET + 1];
    assert_eq!(
        repr.encode(&too_big, &mut out),
        Err(TunnelEncodeError::LimitExceeded {
            what: "media packet",
            found: MAX_MEDIA_PACKET + 1,
            limit: MAX_MEDIA_PACKET
        })
    );
    assert_eq!(out, [1]);
    let mut buf = [0u8; 4];
    assert_eq!(
        repr.emit(&mut MediaFrame::new_unchecked(&mut buf[..]), 0),
        Err(TunnelEncodeError::BufferTooSmall { len: 4, needed: 5 })
    );
}

fn stream_of_three() -> (Vec<u8>, Vec<(MediaRepr, Vec<u8>)>) {
    let frames = vec![
        (
            MediaRepr {
                stream: StreamId(0x0102),
                rtcp: false,
                cover: false,
            },
            MEDIA_RTP[5..].to_vec(),
        ),
        (MediaRepr::COVER, vec![]),
        (
            MediaRepr {
                stream: StreamId(7),
                rtcp: true,
                cover: false,
            },
            MEDIA_RTCP[5..].to_vec(),
        ),
    ];
    let mut bytes = Vec::new();
    for (repr, packet) in &frames {
        repr.encode(packet, &mut bytes).unwrap();
    }
    (bytes, frames)
}

fn drain(framer: &mut MediaFramer, got: &mut Vec<(MediaRepr, Vec<u8>)>) {
    while let Some((repr, packet)) = framer.next_frame().unwrap() {
        got.push((repr, packet.to_vec()));
    }
}

#[test]
fn framer_split_at_every_byte() {
    let (bytes, want) = stream_of_three();
    for cut in 0..=bytes.len() {
        let mut framer = MediaFramer::new();
        let mut got = Vec::new();
        framer.push(&bytes[..cut]);
        drain(&mut framer, &mut got);
        framer.push(&bytes[cut..]);
        drain(&mut framer, &mut got);
        assert_eq!(got, want, "cut at {cut}");
        assert_eq!(framer.buffered(), 0);
        assert_eq!(framer.stream_offset(), bytes.len() as u64);
    }
}

#[test]
fn framer_one_byte_at_a_time() {
    let (bytes, want) = stream_of_three();
    let mut framer = MediaFramer::new();
    let mut got = Vec::new();
    for b in &bytes {
        framer.push(std::slice::from_ref(b));
        drain(&mut framer, &mut got);
    }
    assert_eq!(got, want);
}

#[test]
fn framer_error_is_sticky_and_located() {
    let (mut bytes, _) = stream_of_three();
    let at = bytes.len() as u64;
    bytes.extend_from_slice(&[0xff, 0xff]);
    let mut framer = MediaFramer::new();
    framer.push(&bytes);
    for _ in 0..3 {
        framer.next_frame().unwrap().unwrap();
    }
    let err = TunnelDecodeError::LimitExceeded {
        offset: 0,
        what: "media frame length",
        found: 65537,
        limit: MAX_MEDIA_FRAME,
    };
    assert_eq!(framer.next_frame().map(|_| ()), Err(err.clone()));
    assert_eq!(framer.stream_offset(), at);
    framer.push(&MEDIA_COVER);
    assert_eq!(framer.next_frame().map(|_| ()), Err(err));
}

proptest! {
    #[test]
    fn handshake_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = split_handshake(&bytes);
        if let Ok(h) = Handshake::decode(&bytes) {
            // What decodes re-encodes to something that decodes the same.
            let mut out = Vec::new();
            h.encode(&mut out).unwrap();
            prop_assert_eq!(Handshake::decode(&out), Ok(h));
        }
        let f = HandshakeFrame::new_unchecked(&bytes[..]);
        let _ = (f.body(), f.refusal_text(), f.hello_instance(), f.hello_capabilities());
    }

    #[test]
    fn handshake_prefix_mutations_never_panic(
        cut in 0usize..40,
        at in 0usize..32,
        v in any::<u8>(),
    ) {
        let mut b = HELLO_GW1_SIG.to_vec();
        b[at] = v;
        b.truncate(cut.min(b.len()));
        let _ = Handshake::decode(&b);
        let _ = split_handshake(&b);
    }

    #[test]
    fn framer_arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..64,
    ) {
        let mut framer = MediaFramer::new();
        for c in bytes.chunks(chunk) {
            framer.push(c);
            while let Ok(Some((repr, packet))) = framer.next_frame() {
                let mut out = Vec::new();
                repr.encode(packet, &mut out).unwrap();
                let f = MediaFrame::new_checked(&out[..]).unwrap();
                prop_assert_eq!(MediaRepr::parse(&f), Ok(repr));
            }
        }
        let f = MediaFrame::new_unchecked(&bytes[..]);
        let _ = (f.packet(), f.stream_id(), f.flags());
    }

    #[test]
    fn media_round_trip(
        stream in any::<u16>(),
        rtcp in any::<bool>(),
        cover in any::<bool>(),
        packet in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        let repr = MediaRepr { stream: StreamId(stream), rtcp, cover };
        let mut out = Vec::new();
        repr.encode(&packet, &mut out).unwrap();
        let f = MediaFrame::new_checked(&out[..]).unwrap();
        prop_assert_eq!(MediaRepr::parse(&f), Ok(repr));
        prop_assert_eq!(f.packet(), &packet[..]);
    }
}
