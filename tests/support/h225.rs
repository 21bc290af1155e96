//! H.225.0 Setups of an outside caller, as the live and engine tests send them: TPKT + Q.931
//! Setup + H.225.0 UUIE with a fastStart offer of one audio codec, built with the translators
//! the gateway itself uses (the pycrate and tshark tests check those against independent
//! decoders).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use codecs::meta::{self, Codec, Direction, MediaDescription, MediaKind, Party, StreamId};
use std::net::SocketAddr;

/// What differs between the tests' Setups.
pub struct SetupSpec<'a> {
    pub calling: &'a str,
    pub called: &'a str,
    pub display: Option<&'a str>,
    /// The offered codec: payload type and name (8000 Hz, mono).
    pub codec: (u8, &'a str),
    /// Where the caller wants its RTP.
    pub rtp: SocketAddr,
    /// Q.931 call reference; its big-endian bytes also open the conference and call ids, so
    /// distinct references make distinct calls.
    pub call_ref: u16,
}

impl<'a> SetupSpec<'a> {
    /// A call from 4930555 to 2001 offering PCMA at `rtp`.
    pub fn new(rtp: SocketAddr) -> SetupSpec<'a> {
        SetupSpec {
            calling: "4930555",
            called: "2001",
            display: None,
            codec: (8, "PCMA"),
            rtp,
            call_ref: 7,
        }
    }
}

/// The Q.931 Setup message, without TPKT framing.
pub fn setup_q931(s: &SetupSpec<'_>) -> Vec<u8> {
    let media = vec![MediaDescription {
        stream: Some(StreamId(2)),
        kind: MediaKind::Audio,
        direction: Direction::SendRecv,
        codecs: vec![Codec {
            payload_type: s.codec.0,
            name: s.codec.1.to_owned(),
            clock_rate: 8000,
            channels: 1,
            fmtp: None,
        }],
        telephone_event: None,
        ptime_ms: Some(20),
    }];
    let setup = meta::Setup {
        call: meta::CallRef(2),
        calling: Party {
            user: s.calling.to_owned(),
            display: s.display.map(str::to_owned),
        },
        called: Party {
            user: s.called.to_owned(),
            display: None,
        },
        emergency: false,
        media: media.clone(),
    };
    let mut conference_id = [0xc0; 16];
    conference_id[..2].copy_from_slice(&s.call_ref.to_be_bytes());
    let mut call_identifier = [0xca; 16];
    call_identifier[..2].copy_from_slice(&s.call_ref.to_be_bytes());
    let ids = translators::h323::CallIds {
        call_ref: s.call_ref,
        conference_id,
        call_identifier,
    };
    let fs = translators::h323::fast_start_offer(&media, s.rtp).unwrap();
    translators::h323::setup_message(&setup, &ids, fs)
        .unwrap()
        .to_vec()
        .unwrap()
}

/// `q931` in a TPKT frame (RFC 1006), as it goes on an H.225.0 connection.
pub fn tpkt(q931: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    codecs::tpkt::encode(q931, &mut out).unwrap();
    out
}

/// The TPKT-framed Setup.
pub fn setup(s: &SetupSpec<'_>) -> Vec<u8> {
    tpkt(&setup_q931(s))
}

/// `q931` (a Setup) with its Bearer capability IE replaced by the bytes `ie` (identifier,
/// length and contents; several IEs, or none, as well).
pub fn with_bearer(q931: &[u8], ie: &[u8]) -> Vec<u8> {
    let (_, _, ies) = codecs::q931::peek(q931).unwrap();
    let bearer = ies
        .map(Result::unwrap)
        .find(|r| r.codeset == 0 && r.id == 0x04)
        .unwrap();
    let end = bearer.offset + 2 + bearer.data.len();
    let mut out = q931[..bearer.offset].to_vec();
    out.extend_from_slice(ie);
    out.extend_from_slice(&q931[end..]);
    out
}

/// The multirate unrestricted-digital bearer video-capable endpoints send (Q.931 §4.5.5:
/// 6 x 64 kbit/s, H.221/H.242), with bit 8 of octet 4 clear before octet 4.1.
pub const MULTIRATE_BEARER: [u8; 6] = [0x04, 0x04, 0x88, 0x18, 0x86, 0xa5];
