//! Tests of the Meta wire format: golden bytes, error table, truncation, round trips, proptest.

use super::*;
use proptest::prelude::*;

// ---- Helpers building frames by hand, independent of the encoder ----

fn tlv(code: u16, value: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn frame(msg_type: u8, flags: u8, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut v = vec![b'M', b'T', META_VERSION, 0, msg_type, flags];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn encoded(seq: u32, msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(seq, msg, &mut out).unwrap();
    out
}

fn pcmu() -> Codec {
    Codec {
        payload_type: 0,
        name: "PCMU".into(),
        clock_rate: 8000,
        channels: 1,
        fmtp: None,
    }
}

fn audio(stream: u16) -> MediaDescription {
    MediaDescription {
        stream: Some(StreamId(stream)),
        kind: MediaKind::Audio,
        direction: Direction::SendRecv,
        codecs: vec![pcmu()],
        telephone_event: Some(TelephoneEvent {
            payload_type: 101,
            clock_rate: 8000,
        }),
        ptime_ms: Some(20),
    }
}

fn golden_setup() -> Message {
    Message::Setup(Setup {
        call: CallRef(2),
        calling: Party {
            user: "1001".into(),
            display: Some("Alice".into()),
        },
        called: Party {
            user: "2002".into(),
            display: None,
        },
        emergency: true,
        media: vec![audio(4)],
    })
}

/// One rich example of every message kind.
fn samples() -> Vec<Message> {
    let rich_media = vec![
        MediaDescription {
            stream: Some(StreamId(10)),
            kind: MediaKind::Audio,
            direction: Direction::SendOnly,
            codecs: vec![
                Codec {
                    payload_type: 96,
                    name: "opus".into(),
                    clock_rate: 48000,
                    channels: 2,
                    fmtp: Some("minptime=10;useinbandfec=1".into()),
                },
                Codec {
                    payload_type: 8,
                    name: "PCMA".into(),
                    clock_rate: 8000,
                    channels: 1,
                    fmtp: Some(String::new()),
                },
                pcmu(),
            ],
            telephone_event: Some(TelephoneEvent {
                payload_type: 101,
                clock_rate: 48000,
            }),
            ptime_ms: Some(20),
        },
        MediaDescription {
            stream: Some(StreamId(11)),
            kind: MediaKind::Video,
            direction: Direction::RecvOnly,
            codecs: vec![Codec {
                payload_type: 99,
                name: "H264".into(),
                clock_rate: 90000,
                channels: 0,
                fmtp: Some("profile-level-id=42e01f;packetization-mode=1".into()),
            }],
            telephone_event: None,
            ptime_ms: None,
        },
        MediaDescription {
            stream: None,
            kind: MediaKind::Other,
            direction: Direction::Inactive,
            codecs: vec![],
            telephone_event: None,
            ptime_ms: None,
        },
    ];
    vec![
        golden_setup(),
        Message::Setup(Setup {
            call: CallRef(0xffff_fffe),
            calling: Party {
                user: "anonymous".into(),
                display: Some("Zoë «Ünïcode» 電話".into()),
            },
            called: Party {
                user: String::new(),
                display: Some(String::new()),
            },
            emergency: false,
            media: rich_media.clone(),
        }),
        Message::Setup(Setup {
            call: CallRef(1),
            calling: Party::default(),
            called: Party::default(),
            emergency: false,
            media: vec![],
        }),
        Message::Progress(Progress {
            call: CallRef(3),
            media: rich_media.clone(),
        }),
        Message::Alerting(Alerting {
            call: CallRef(5),
            media: vec![],
        }),
        Message::Answer(Answer {
            call: CallRef(6),
            media: vec![audio(1)],
        }),
        Message::Release(Release {
            call: CallRef(7),
            cause: Cause::USER_BUSY,
        }),
        Message::Dtmf(Dtmf {
            call: CallRef(8),
            event: 11,
            duration_ms: 160,
        }),
        Message::MediaUpdate(MediaUpdate {
            call: CallRef(9),
            kind: OfferAnswer::Offer,
            media: rich_media,
        }),
        Message::MediaUpdate(MediaUpdate {
            call: CallRef(9),
            kind: OfferAnswer::Answer,
            media: vec![audio(2)],
        }),
        Message::Keepalive(Keepalive {
            seq: 42,
            reply: true,
        }),
        Message::Keepalive(Keepalive {
            seq: 0,
            reply: false,
        }),
    ]
}

// ---- Golden bytes: the format must not change silently ----

#[rustfmt::skip]
const SETUP_GOLDEN: &[u8] = &[
    // header: magic "MT", version 1.0, type Setup, flags 0, seq 0, body length 119
    0x4d, 0x54, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x77,
    // call reference = 2
    0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02,
    // calling party { user "1001", display "Alice" }
    0x00, 0x02, 0x00, 0x11,
        0x00, 0x01, 0x00, 0x04, b'1', b'0', b'0', b'1',
        0x00, 0x02, 0x00, 0x05, b'A', b'l', b'i', b'c', b'e',
    // called party { user "2002" }
    0x00, 0x03, 0x00, 0x08,
        0x00, 0x01, 0x00, 0x04, b'2', b'0', b'0', b'2',
    // emergency = true
    0x00, 0x04, 0x00, 0x01, 0x01,
    // media description
    0x00, 0x05, 0x00, 0x45,
        0x00, 0x01, 0x00, 0x02, 0x00, 0x04, // stream 4
        0x00, 0x02, 0x00, 0x01, 0x00,       // kind audio
        0x00, 0x03, 0x00, 0x01, 0x00,       // direction sendrecv
        0x00, 0x04, 0x00, 0x1a,             // codec
            0x00, 0x01, 0x00, 0x01, 0x00,                         // payload type 0
            0x00, 0x02, 0x00, 0x04, b'P', b'C', b'M', b'U',       // name
            0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x1f, 0x40,       // clock rate 8000
            0x00, 0x04, 0x00, 0x01, 0x01,                         // channels 1
        0x00, 0x05, 0x00, 0x0d,             // telephone event
            0x00, 0x01, 0x00, 0x01, 0x65,                         // payload type 101
            0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x1f, 0x40,       // clock rate 8000
        0x00, 0x06, 0x00, 0x02, 0x00, 0x14, // ptime 20
];

#[rustfmt::skip]
const RELEASE_GOLDEN: &[u8] = &[
    // header: type Release, seq 0x01020304, body length 13
    0x4d, 0x54, 0x01, 0x00, 0x05, 0x00, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x0d,
    0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x07, // call reference 7
    0x00, 0x06, 0x00, 0x01, 0x11,                   // cause 17 (user busy)
];

#[rustfmt::skip]
const KEEPALIVE_GOLDEN: &[u8] = &[
    0x4d, 0x54, 0x01, 0x00, 0x08, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x0d,
    0x00, 0x0a, 0x00, 0x04, 0x00, 0x00, 0x00, 0x09, // keepalive sequence 9
    0x00, 0x0b, 0x00, 0x01, 0x01,                   // reply
];

#[test]
fn golden_bytes() {
    let table: &[(&str, u32, Message, &[u8])] = &[
        ("setup", 0, golden_setup(), SETUP_GOLDEN),
        (
            "release",
            0x0102_0304,
            Message::Release(Release {
                call: CallRef(7),
                cause: Cause::USER_BUSY,
            }),
            RELEASE_GOLDEN,
        ),
        (
            "keepalive",
            u32::MAX,
            Message::Keepalive(Keepalive {
                seq: 9,
                reply: true,
            }),
            KEEPALIVE_GOLDEN,
        ),
    ];
    for (name, seq, msg, golden) in table {
        // Pre-filled output: encoding appends and leaves earlier bytes alone.
        let mut out = vec![0xa5; 3];
        encode_frame(*seq, msg, &mut out).unwrap();
        assert_eq!(&out[..3], &[0xa5; 3], "{name}");
        assert_eq!(&out[3..], *golden, "{name}: encoding changed");
        assert_eq!(decode_frame(golden), Ok((*seq, msg.clone())), "{name}");
        assert_eq!(split_frame(golden), Ok(Some(golden.len())), "{name}");
    }
}

#[test]
fn encode_is_seq_zero_and_decode_ignores_seq() {
    let msg = golden_setup();
    let mut out = Vec::new();
    encode(&msg, &mut out).unwrap();
    assert_eq!(out, SETUP_GOLDEN);
    assert_eq!(decode(RELEASE_GOLDEN).unwrap().name(), "Release");
}

#[test]
fn round_trip_every_kind() {
    let mut kinds = std::collections::HashSet::new();
    for (i, msg) in samples().into_iter().enumerate() {
        let seq = u32::try_from(i).unwrap().wrapping_mul(0x9e37_79b9);
        let bytes = encoded(seq, &msg);
        assert_eq!(decode_frame(&bytes), Ok((seq, msg.clone())), "{msg:?}");
        let header = FrameHeader::decode(&bytes).unwrap();
        assert_eq!(header.msg_type, MessageType::of(&msg));
        assert_eq!(header.seq, seq);
        assert_eq!(header.frame_len(), bytes.len());
        kinds.insert(msg.name());
    }
    assert_eq!(kinds.len(), 8, "a message kind has no sample");
}

#[test]
fn message_type_codes_round_trip() {
    for code in 0..=u8::MAX {
        assert_eq!(u8::from(MessageType::from(code)), code);
    }
    assert_eq!(MessageType::from(0), MessageType::Unknown(0));
}

// ---- Decoding errors, table-driven ----

fn release_body() -> Vec<u8> {
    cat(&[&tlv(0x0001, &[0, 0, 0, 7]), &tlv(0x0006, &[16])])
}

fn release(cause: u8) -> Message {
    Message::Release(Release {
        call: CallRef(7),
        cause: Cause(cause),
    })
}

/// A Setup frame whose calling party has the given fields.
fn setup_with_calling(calling: &[u8]) -> Vec<u8> {
    let body = cat(&[
        &tlv(0x0001, &[0, 0, 0, 2]),
        &tlv(0x0002, calling),
        &tlv(0x0003, &tlv(0x0001, b"2")),
    ]);
    frame(0x01, 0, 0, &body)
}

/// An Answer frame with one media description holding `media` fields.
fn answer_with_media(media: &[u8]) -> Vec<u8> {
    let body = cat(&[&tlv(0x0001, &[0, 0, 0, 6]), &tlv(0x0005, media)]);
    frame(0x04, 0, 0, &body)
}

fn minimal_media() -> Vec<u8> {
    cat(&[&tlv(0x0002, &[0]), &tlv(0x0003, &[0])])
}

#[test]
fn decode_accepts_extensions() {
    let plain = release(16);
    let with_unknown = cat(&[&tlv(0x0077, b"future"), &release_body(), &tlv(0x0100, &[])]);
    // Field 0x0004 (emergency) is not defined for Release: unknown there.
    let foreign = cat(&[&release_body(), &tlv(0x0004, &[1])]);
    // Known fields are recognised with the critical bit set too.
    let critical_known = cat(&[&tlv(0x8001, &[0, 0, 0, 7]), &tlv(0x8006, &[16])]);
    let mut media_unknown = minimal_media();
    media_unknown.extend(tlv(0x0042, &[1, 2, 3]));
    media_unknown.extend(tlv(
        0x0004,
        &cat(&[
            &tlv(0x0001, &[0]),
            &tlv(0x0002, b"PCMU"),
            &tlv(0x0003, &8000u32.to_be_bytes()),
            &tlv(0x0004, &[1]),
            &tlv(0x7fff, b"codec extension"),
        ]),
    ));
    let media_answer = Message::Answer(Answer {
        call: CallRef(6),
        media: vec![MediaDescription {
            stream: None,
            kind: MediaKind::Audio,
            direction: Direction::SendRecv,
            codecs: vec![pcmu()],
            telephone_event: None,
            ptime_ms: None,
        }],
    });
    let unknown_kind = cat(&[&tlv(0x0002, &[9]), &tlv(0x0003, &[0])]);
    let other_answer = Message::Answer(Answer {
        call: CallRef(6),
        media: vec![MediaDescription {
            stream: None,
            kind: MediaKind::Other,
            direction: Direction::SendRecv,
            codecs: vec![],
            telephone_event: None,
            ptime_ms: None,
        }],
    });
    let explicit_false = cat(&[&tlv(0x000a, &[0, 0, 0, 1]), &tlv(0x000b, &[0])]);

    let table: &[(&str, Vec<u8>, Message)] = &[
        (
            "unknown non-critical fields",
            frame(0x05, 0, 0, &with_unknown),
            plain.clone(),
        ),
        (
            "field foreign to the type",
            frame(0x05, 0, 0, &foreign),
            plain.clone(),
        ),
        (
            "known field, critical bit",
            frame(0x05, 0, 0, &critical_known),
            plain.clone(),
        ),
        (
            "unknown ignorable flags",
            frame(0x05, 0x0f, 0, &release_body()),
            plain.clone(),
        ),
        (
            "newer minor version",
            {
                let mut f = frame(0x05, 0, 0, &release_body());
                f[3] = 7;
                f
            },
            plain,
        ),
        (
            "unknown fields in nested lists",
            answer_with_media(&media_unknown),
            media_answer,
        ),
        (
            "unknown media kind is other",
            answer_with_media(&unknown_kind),
            other_answer,
        ),
        (
            "explicit false",
            frame(0x08, 0, 0, &explicit_false),
            Message::Keepalive(Keepalive {
                seq: 1,
                reply: false,
            }),
        ),
    ];
    for (name, bytes, want) in table {
        assert_eq!(decode(bytes).as_ref(), Ok(want), "{name}");
    }
}

#[test]
fn decode_errors() {
    use MetaDecodeError as E;
    let good = frame(0x05, 0, 0, &release_body());
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let long_name = vec![b'x'; MAX_STRING_LEN + 1];
    let many_media: Vec<u8> = cat(&[
        &tlv(0x0001, &[0, 0, 0, 6]),
        &tlv(0x0005, &minimal_media()).repeat(MAX_MEDIA + 1),
    ]);
    let codec = tlv(
        0x0004,
        &cat(&[
            &tlv(0x0001, &[0]),
            &tlv(0x0002, b"PCMU"),
            &tlv(0x0003, &8000u32.to_be_bytes()),
            &tlv(0x0004, &[1]),
        ]),
    );
    let many_codecs = cat(&[&minimal_media(), &codec.repeat(MAX_CODECS + 1)]);

    let table: Vec<(&str, Vec<u8>, MetaDecodeError)> = vec![
        (
            "empty",
            vec![],
            E::Truncated {
                offset: 0,
                what: "magic",
            },
        ),
        ("bad magic", with(&|v| v[1] = b'X'), E::BadMagic),
        (
            "major version 2",
            with(&|v| v[2] = 2),
            E::BadVersion { found: 2 },
        ),
        (
            "major version 0",
            with(&|v| v[2] = 0),
            E::BadVersion { found: 0 },
        ),
        (
            "frame too long",
            with(&|v| v[10..14].copy_from_slice(&u32::MAX.to_be_bytes())),
            E::LimitExceeded {
                offset: 10,
                what: "frame length",
                limit: MAX_FRAME_LEN,
            },
        ),
        (
            "unknown message type",
            with(&|v| v[4] = 0x7f),
            E::UnknownMessageType(0x7f),
        ),
        (
            "message type 0",
            with(&|v| v[4] = 0),
            E::UnknownMessageType(0),
        ),
        (
            "unknown critical flag",
            with(&|v| v[5] = 0x81),
            E::UnknownCriticalFlags { flags: 0x80 },
        ),
        (
            "trailing bytes",
            with(&|v| v.push(0)),
            E::TrailingBytes { offset: 27 },
        ),
        (
            "body shorter than its length",
            with(&|v| {
                v.pop();
            }),
            E::Truncated {
                offset: 14,
                what: "frame body",
            },
        ),
        (
            "field longer than the body",
            frame(0x05, 0, 0, &[0, 1, 0, 9, 0, 0, 0, 7]),
            E::Truncated {
                offset: 18,
                what: "field value",
            },
        ),
        (
            "half a field header",
            frame(0x05, 0, 0, &cat(&[&release_body(), &[0, 1, 0]])),
            E::Truncated {
                offset: 29,
                what: "field length",
            },
        ),
        (
            "unknown critical field",
            frame(0x05, 0, 0, &cat(&[&release_body(), &tlv(0x8077, &[])])),
            E::UnknownCriticalField {
                offset: 27,
                context: "message body",
                field: 0x8077,
            },
        ),
        (
            "critical field foreign to the type",
            frame(0x05, 0, 0, &cat(&[&release_body(), &tlv(0x8005, &[])])),
            E::UnknownCriticalField {
                offset: 27,
                context: "message body",
                field: 0x8005,
            },
        ),
        (
            "unknown critical field in a nested list",
            answer_with_media(&cat(&[&minimal_media(), &tlv(0xc000, &[])])),
            E::UnknownCriticalField {
                offset: 36,
                context: "media description",
                field: 0xc000,
            },
        ),
        (
            "missing cause",
            frame(0x05, 0, 0, &tlv(0x0001, &[0, 0, 0, 7])),
            E::MissingField {
                offset: 14,
                context: "message body",
                what: "cause",
            },
        ),
        (
            "missing call reference",
            frame(0x05, 0, 0, &tlv(0x0006, &[16])),
            E::MissingField {
                offset: 14,
                context: "message body",
                what: "call reference",
            },
        ),
        (
            "missing party user",
            setup_with_calling(&tlv(0x0002, b"Alice")),
            E::MissingField {
                offset: 22,
                context: "party",
                what: "party user",
            },
        ),
        (
            "duplicate cause",
            frame(0x05, 0, 0, &cat(&[&release_body(), &tlv(0x0006, &[17])])),
            E::DuplicateField {
                offset: 27,
                what: "cause",
            },
        ),
        (
            "wrong fixed length",
            frame(
                0x05,
                0,
                0,
                &cat(&[&tlv(0x0001, &[0, 0, 7]), &tlv(0x0006, &[16])]),
            ),
            E::InvalidLength {
                offset: 14,
                what: "call reference",
                expected: 4,
                found: 3,
            },
        ),
        (
            "invalid utf-8",
            setup_with_calling(&tlv(0x0001, &[b'a', b'b', 0xff, b'c'])),
            E::InvalidUtf8 { offset: 32 },
        ),
        (
            "string too long",
            setup_with_calling(&tlv(0x0001, &long_name)),
            E::LimitExceeded {
                offset: 30,
                what: "party user",
                limit: MAX_STRING_LEN,
            },
        ),
        (
            "invalid direction",
            answer_with_media(&cat(&[&tlv(0x0002, &[0]), &tlv(0x0003, &[4])])),
            E::InvalidValue {
                offset: 35,
                what: "direction",
                value: 4,
            },
        ),
        (
            "invalid boolean",
            frame(
                0x08,
                0,
                0,
                &cat(&[&tlv(0x000a, &[0, 0, 0, 1]), &tlv(0x000b, &[2])]),
            ),
            E::InvalidValue {
                offset: 26,
                what: "keepalive reply",
                value: 2,
            },
        ),
        (
            "too many media",
            frame(0x04, 0, 0, &many_media),
            E::LimitExceeded {
                offset: 22 + 14 * MAX_MEDIA,
                what: "media descriptions",
                limit: MAX_MEDIA,
            },
        ),
        (
            "too many codecs",
            answer_with_media(&many_codecs),
            E::LimitExceeded {
                offset: 36 + 30 * MAX_CODECS,
                what: "codecs",
                limit: MAX_CODECS,
            },
        ),
    ];
    for (name, bytes, want) in table {
        assert_eq!(decode(&bytes), Err(want), "{name}");
    }
}

#[test]
fn errors_map_to_q850_causes() {
    use MetaDecodeError as E;
    let table = [
        (E::UnknownMessageType(9), 97),
        (
            E::MissingField {
                offset: 14,
                context: "message body",
                what: "cause",
            },
            96,
        ),
        (
            E::UnknownCriticalField {
                offset: 14,
                context: "codec",
                field: 0x8009,
            },
            99,
        ),
        (E::InvalidUtf8 { offset: 30 }, 100),
        (
            E::Truncated {
                offset: 3,
                what: "major version",
            },
            95,
        ),
        (E::TrailingBytes { offset: 40 }, 95),
    ];
    for (err, cause) in table {
        assert_eq!(err.cause(), Cause(cause), "{err}");
    }
}

#[test]
fn frame_header_survives_body_errors() {
    // A receiver can still learn the sequence number of a frame it cannot decode.
    let bytes = frame(0x7f, 0, 99, &[1, 2, 3]);
    assert_eq!(
        decode_frame(&bytes),
        Err(MetaDecodeError::UnknownMessageType(0x7f))
    );
    let header = FrameHeader::decode(&bytes).unwrap();
    assert_eq!(
        (header.seq, header.msg_type),
        (99, MessageType::Unknown(0x7f))
    );
    assert_eq!(split_frame(&bytes), Ok(Some(17)));
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    for msg in samples() {
        let bytes = encoded(5, &msg);
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            assert!(
                matches!(decode_frame(prefix), Err(MetaDecodeError::Truncated { .. })),
                "{} cut at {len}: {:?}",
                msg.name(),
                decode_frame(prefix)
            );
            assert_eq!(split_frame(prefix), Ok(None), "{} cut at {len}", msg.name());
        }
        assert_eq!(split_frame(&bytes), Ok(Some(bytes.len())));
    }
}

// ---- Encoding limits ----

#[test]
fn encode_enforces_limits_and_leaves_output_alone() {
    use MetaEncodeError as E;
    let long = "x".repeat(MAX_STRING_LEN + 1);
    let big_codec = Codec {
        fmtp: Some("f".repeat(MAX_STRING_LEN)),
        ..pcmu()
    };
    let big_media = MediaDescription {
        codecs: vec![big_codec; MAX_CODECS],
        ..audio(1)
    };
    let table: Vec<(&str, Message, MetaEncodeError)> = vec![
        (
            "long string",
            Message::Setup(Setup {
                call: CallRef(1),
                calling: Party {
                    user: long,
                    display: None,
                },
                called: Party::default(),
                emergency: false,
                media: vec![],
            }),
            E::LimitExceeded {
                what: "party user",
                limit: MAX_STRING_LEN,
            },
        ),
        (
            "too many media",
            Message::Answer(Answer {
                call: CallRef(1),
                media: vec![audio(1); MAX_MEDIA + 1],
            }),
            E::LimitExceeded {
                what: "media descriptions",
                limit: MAX_MEDIA,
            },
        ),
        (
            "too many codecs",
            Message::Answer(Answer {
                call: CallRef(1),
                media: vec![MediaDescription {
                    codecs: vec![pcmu(); MAX_CODECS + 1],
                    ..audio(1)
                }],
            }),
            E::LimitExceeded {
                what: "codecs",
                limit: MAX_CODECS,
            },
        ),
        (
            "frame too long",
            Message::Answer(Answer {
                call: CallRef(1),
                media: vec![big_media; MAX_MEDIA],
            }),
            E::LimitExceeded {
                what: "frame length",
                limit: MAX_FRAME_LEN,
            },
        ),
    ];
    for (name, msg, want) in table {
        let mut out = vec![0xa5];
        assert_eq!(encode(&msg, &mut out), Err(want), "{name}");
        assert_eq!(out, [0xa5], "{name}: output touched");
    }
}

#[test]
fn largest_allowed_message_round_trips() {
    let codec = Codec {
        fmtp: Some("f".repeat(MAX_STRING_LEN)),
        ..pcmu()
    };
    let msg = Message::Answer(Answer {
        call: CallRef(1),
        media: vec![MediaDescription {
            codecs: vec![codec; MAX_CODECS],
            ..audio(1)
        }],
    });
    let bytes = encoded(1, &msg);
    assert!(bytes.len() > 32 * 1024);
    assert_eq!(decode(&bytes), Ok(msg));
}

// ---- Stream framing ----

#[test]
fn frame_reader_cuts_a_stream() {
    let msgs = samples();
    let stream: Vec<u8> = msgs
        .iter()
        .enumerate()
        .flat_map(|(i, m)| encoded(u32::try_from(i).unwrap(), m))
        .collect();
    for chunk in [1, 2, 7, 14, 100, stream.len()] {
        let mut reader = FrameReader::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            reader.push(piece);
            while let Some(frame) = reader.next_frame().unwrap() {
                got.push(decode_frame(frame).unwrap());
            }
        }
        assert_eq!(reader.buffered(), 0);
        let want: Vec<_> = msgs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, m)| (u32::try_from(i).unwrap(), m))
            .collect();
        assert_eq!(got, want, "chunk size {chunk}");
    }
}

#[test]
fn frame_reader_errors_are_sticky() {
    let mut reader = FrameReader::new();
    reader.push(b"MT");
    assert_eq!(reader.next_frame(), Ok(None));
    reader.push(&[9]);
    assert_eq!(
        reader.next_frame(),
        Err(MetaDecodeError::BadVersion { found: 9 })
    );
    assert_eq!(
        reader.next_frame(),
        Err(MetaDecodeError::BadVersion { found: 9 })
    );
    // Garbage is refused from its first byte; an HTTP request is not a Meta stream.
    assert_eq!(split_frame(b"G"), Err(MetaDecodeError::BadMagic));
    assert_eq!(
        split_frame(b"GET / HTTP/1.1\r\n"),
        Err(MetaDecodeError::BadMagic)
    );
}

// ---- Property tests ----

/// Strings Meta carries: anything but control characters (HTAB aside).
fn arb_string() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{0,12}"
}

fn arb_party() -> impl Strategy<Value = Party> {
    (arb_string(), proptest::option::of(arb_string()))
        .prop_map(|(user, display)| Party { user, display })
}

fn arb_codec() -> impl Strategy<Value = Codec> {
    (
        any::<u8>(),
        arb_string(),
        any::<u32>(),
        any::<u8>(),
        proptest::option::of(arb_string()),
    )
        .prop_map(|(payload_type, name, clock_rate, channels, fmtp)| Codec {
            payload_type,
            name,
            clock_rate,
            channels,
            fmtp,
        })
}

fn arb_media() -> impl Strategy<Value = MediaDescription> {
    (
        proptest::option::of(any::<u16>().prop_map(StreamId)),
        prop_oneof![
            Just(MediaKind::Audio),
            Just(MediaKind::Video),
            Just(MediaKind::Other)
        ],
        prop_oneof![
            Just(Direction::SendRecv),
            Just(Direction::SendOnly),
            Just(Direction::RecvOnly),
            Just(Direction::Inactive)
        ],
        proptest::collection::vec(arb_codec(), 0..4),
        proptest::option::of(
            (any::<u8>(), any::<u32>()).prop_map(|(payload_type, clock_rate)| TelephoneEvent {
                payload_type,
                clock_rate,
            }),
        ),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(
            |(stream, kind, direction, codecs, telephone_event, ptime_ms)| MediaDescription {
                stream,
                kind,
                direction,
                codecs,
                telephone_event,
                ptime_ms,
            },
        )
}

fn arb_message() -> impl Strategy<Value = Message> {
    let call = any::<u32>().prop_map(CallRef);
    let media = || proptest::collection::vec(arb_media(), 0..3);
    prop_oneof![
        (
            call.clone(),
            arb_party(),
            arb_party(),
            any::<bool>(),
            media()
        )
            .prop_map(
                |(call, calling, called, emergency, media)| Message::Setup(Setup {
                    call,
                    calling,
                    called,
                    emergency,
                    media
                })
            ),
        (call.clone(), media())
            .prop_map(|(call, media)| Message::Progress(Progress { call, media })),
        (call.clone(), media())
            .prop_map(|(call, media)| Message::Alerting(Alerting { call, media })),
        (call.clone(), media()).prop_map(|(call, media)| Message::Answer(Answer { call, media })),
        (call.clone(), any::<u8>()).prop_map(|(call, c)| Message::Release(Release {
            call,
            cause: Cause(c)
        })),
        (call.clone(), any::<u8>(), any::<u16>()).prop_map(|(call, event, duration_ms)| {
            Message::Dtmf(Dtmf {
                call,
                event,
                duration_ms,
            })
        }),
        (
            call,
            prop_oneof![Just(OfferAnswer::Offer), Just(OfferAnswer::Answer)],
            media()
        )
            .prop_map(|(call, kind, media)| Message::MediaUpdate(MediaUpdate {
                call,
                kind,
                media
            })),
        (any::<u32>(), any::<bool>())
            .prop_map(|(seq, reply)| Message::Keepalive(Keepalive { seq, reply })),
    ]
}

/// Whatever decodes must re-encode to bytes that decode to the same message, and re-encoding
/// is canonical (a fixed point after one pass).
fn check_stable(bytes: &[u8]) {
    let header = split_frame(bytes);
    if let Ok((seq, msg)) = decode_frame(bytes) {
        assert_eq!(header, Ok(Some(bytes.len())));
        let mut again = Vec::new();
        encode_frame(seq, &msg, &mut again).expect("a decoded message re-encodes");
        assert_eq!(decode_frame(&again), Ok((seq, msg.clone())));
        let mut third = Vec::new();
        encode_frame(seq, &msg, &mut third).unwrap();
        assert_eq!(again, third);
    }
}

proptest! {
    #[test]
    fn prop_round_trip(seq in any::<u32>(), msg in arb_message()) {
        let mut bytes = Vec::new();
        encode_frame(seq, &msg, &mut bytes).unwrap();
        prop_assert_eq!(decode_frame(&bytes), Ok((seq, msg)));
        prop_assert_eq!(split_frame(&bytes), Ok(Some(bytes.len())));
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_stable(&bytes);
        let _ = split_frame(&bytes);
        let mut reader = FrameReader::new();
        reader.push(&bytes);
        let _ = reader.next_frame();
    }

    #[test]
    fn prop_arbitrary_bodies_never_panic(
        msg_type in 0u8..10,
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        check_stable(&frame(msg_type, 0, 1, &body));
    }

    #[test]
    fn prop_mutated_frames_never_panic(
        msg in arb_message(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<proptest::sample::Index>(),
    ) {
        let mut bytes = encoded(3, &msg);
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        check_stable(&bytes);
        // Same edits, with the header's length fixed so the body parser sees them.
        let body_len = u32::try_from(bytes.len() - HEADER_LEN).unwrap();
        bytes[..2].copy_from_slice(&MAGIC);
        bytes[2] = META_VERSION;
        bytes[10..14].copy_from_slice(&body_len.to_be_bytes());
        check_stable(&bytes);
        let cut = cut.index(bytes.len());
        check_stable(&bytes[..cut]);
    }
}

// ---- Header injection: control characters never cross the tunnel ----

/// Every string field refuses CR, LF, NUL and the other controls on encode; HTAB passes.
#[test]
fn control_characters_are_refused_on_encode() {
    let injected = "Alice\r\nX-Injected: yes";
    let with = |f: &dyn Fn(&mut Setup)| {
        let Message::Setup(mut s) = golden_setup() else {
            unreachable!()
        };
        f(&mut s);
        encode_frame(0, &Message::Setup(s), &mut Vec::new())
    };
    type Edit = Box<dyn Fn(&mut Setup)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "party display name",
            Box::new(|s| s.calling.display = Some(injected.into())),
        ),
        ("party user", Box::new(|s| s.called.user = injected.into())),
        (
            "party user",
            Box::new(|s| s.calling.user = "100\u{0}1".into()),
        ),
        (
            "codec name",
            Box::new(|s| s.media[0].codecs[0].name = "PCMU\n".into()),
        ),
        (
            "fmtp",
            Box::new(|s| s.media[0].codecs[0].fmtp = Some("a=1\rb".into())),
        ),
        (
            "party display name",
            Box::new(|s| s.calling.display = Some("A\u{7f}".into())),
        ),
        (
            "party display name",
            Box::new(|s| s.calling.display = Some("A\u{85}".into())),
        ),
    ];
    for (what, f) in &cases {
        let mut out = vec![1, 2, 3];
        let Message::Setup(mut s) = golden_setup() else {
            unreachable!()
        };
        f(&mut s);
        assert_eq!(
            encode_frame(0, &Message::Setup(s), &mut out),
            Err(MetaEncodeError::ControlCharacter { what }),
            "{what}"
        );
        assert_eq!(out, vec![1, 2, 3], "the buffer is left as it was");
    }
    assert!(with(&|s| s.calling.display = Some("Alice\tSmith".into())).is_ok());
}

/// A frame whose string holds a control character is refused on decode, with cause 100.
#[test]
fn control_characters_are_refused_on_decode() {
    let good = encoded(0, &golden_setup());
    let at = good
        .windows(5)
        .position(|w| w == b"Alice")
        .expect("the display name is in the frame");
    for bad in [b'\r', b'\n', 0, 0x1b, 0x7f] {
        let mut frame = good.clone();
        frame[at + 2] = bad;
        let err = decode_frame(&frame).unwrap_err();
        assert_eq!(
            err,
            MetaDecodeError::ControlCharacter {
                offset: at + 2,
                what: "party display name"
            },
            "byte {bad:#04x}"
        );
        assert_eq!(err.cause(), Cause(100));
    }
    let mut tab = good.clone();
    tab[at + 2] = b'\t';
    assert!(decode_frame(&tab).is_ok());
}

proptest! {
    /// A string with any control character but HTAB never encodes.
    #[test]
    fn any_control_character_is_refused(
        pre in arb_string(),
        c in proptest::char::any().prop_filter("control", |c| c.is_control() && *c != '\t'),
        post in arb_string(),
    ) {
        let Message::Setup(mut s) = golden_setup() else { unreachable!() };
        s.calling.display = Some(format!("{pre}{c}{post}"));
        let refused = matches!(
            encode_frame(0, &Message::Setup(s), &mut Vec::new()),
            Err(MetaEncodeError::ControlCharacter { .. })
        );
        prop_assert!(refused);
    }
}
