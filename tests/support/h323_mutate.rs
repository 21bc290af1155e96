//! The mutations of the PROTOS-like H.323 mutation tests (tests/h323_mutation.rs offline,
//! through the engine; tests/h225_live_mutation.rs on GW2's live H.225.0 listener): seeds from
//! `h323-asn1/testdata` and our own fastStart Setups, PER-level mutations, Q.931 Setups around
//! them with Q.931-level mutations, TPKT framing with overlong lengths now and then.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use codecs::meta::{self, Codec, Direction, MediaDescription, MediaKind, Party, StreamId};
use codecs::q931;
use std::net::SocketAddr;
use std::path::Path;

pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

pub fn hex_dir(kind: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("h323-asn1/testdata")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| hex(std::fs::read_to_string(p).unwrap().trim()))
        .collect()
}

/// xorshift64*: deterministic and good enough to pick mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Seed {
    /// An H323-UserInformation, carried in a Q.931 Setup.
    H225,
    /// One fastStart OpenLogicalChannel, carried in a Setup built around it.
    Olc,
    /// A RasMessage.
    Ras,
}

/// Applies one PER-level mutation.
pub fn mutate_per(rng: &mut Rng, pdu: &[u8]) -> Vec<u8> {
    let mut b = pdu.to_vec();
    if b.is_empty() {
        return vec![0xff];
    }
    let i = rng.below(b.len());
    match rng.below(12) {
        // Bit flip.
        0 => b[i] ^= 1 << rng.below(8),
        // Interesting octet values.
        1 => b[i] = [0x00, 0xff, 0x7f, 0x80, 0x3f, 0x40, 0xc0, 0x01][rng.below(8)],
        // Overlong length determinant: 16383 (two-octet form).
        2 => {
            b[i] = 0xbf;
            if i + 1 < b.len() {
                b[i + 1] = 0xff;
            }
        }
        // Huge SEQUENCE OF count: a fragment of 4 x 16K items.
        3 => b.insert(i, 0xc4),
        // 16K-item count followed by nothing.
        4 => {
            b.truncate(i);
            b.extend_from_slice(&[0xc1]);
        }
        // Wrong CHOICE tag / extension bit: first octet's index bits or top bit.
        5 => b[0] ^= 1 << (7 - rng.below(7)),
        6 => b[0] = b[0].wrapping_add(1 + rng.below(0x20) as u8),
        // Truncated extensions: cut inside the last quarter (bitmap and open types).
        7 => {
            let from = b.len() * 3 / 4;
            let cut = from + rng.below(b.len() - from);
            b.truncate(cut);
        }
        // Underlong: a length octet decreased.
        8 => b[i] = b[i].saturating_sub(1 + rng.below(4) as u8),
        // Insert or delete octets.
        9 => {
            b.remove(i);
        }
        10 => b.insert(i, rng.next() as u8),
        // Trailing garbage.
        _ => {
            for _ in 0..1 + rng.below(8) {
                b.push(rng.next() as u8);
            }
        }
    }
    // Sometimes stack a second mutation.
    if rng.below(4) == 0 {
        return mutate_per(rng, &b);
    }
    b
}

/// A Q.931 Setup around an H.225.0 PDU, with Q.931-level mutations now and then.
pub fn q931_setup(rng: &mut Rng, h225: Vec<u8>) -> Vec<u8> {
    let bearer = q931::BearerCapability::speech(q931::Layer1Protocol::G711Ulaw);
    let msg = q931::Message::setup(
        q931::CallRef::new(1 + rng.below(0x7ffe) as u16),
        bearer,
        h225,
    )
    .with_called_number(q931::PartyNumber::e164("5550100"));
    let mut bytes = msg.to_vec().unwrap_or_default();
    // Find the User-user IE (0x7e, two-octet length, discriminator 0x05).
    let uu = bytes
        .windows(4)
        .rposition(|w| w[0] == 0x7e && w[3] == q931::USER_USER_X208);
    match (rng.below(10), uu) {
        // Zero-length User-user IE.
        (0, Some(at)) => {
            bytes.truncate(at);
            bytes.extend_from_slice(&[0x7e, 0x00, 0x00]);
        }
        // Overlong User-user IE length.
        (1, Some(at)) => {
            bytes[at + 1] = 0x7f;
            bytes[at + 2] = 0xff;
        }
        // Wrong protocol discriminator inside User-user.
        (2, Some(at)) => bytes[at + 3] = 0x04,
        // No Bearer capability (mandatory in Setup): the IE 0x04 removed.
        (3, _) => {
            if let Some(at) = bytes.iter().position(|&b| b == 0x04) {
                if at >= 4 && at + 1 < bytes.len() {
                    let len = usize::from(bytes[at + 1]);
                    if at + 2 + len <= bytes.len() {
                        bytes.drain(at..at + 2 + len);
                    }
                }
            }
        }
        _ => {}
    }
    bytes
}

pub fn tpkt(rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    codecs::tpkt::encode(payload, &mut out).unwrap_or_default();
    if rng.below(20) == 0 && out.len() >= 4 {
        // Overlong TPKT length: the stream waits for bytes that never come.
        out[2] = 0xff;
        out[3] = 0xff;
    }
    out
}

/// A valid Setup carrying `olcs` as fastStart (the seed for OLC mutations).
pub fn setup_with_fast_start(olcs: Vec<Vec<u8>>) -> Vec<u8> {
    let setup = meta::Setup {
        call: meta::CallRef(2),
        calling: Party {
            user: "5550100".to_owned(),
            display: None,
        },
        called: Party {
            user: "5550199".to_owned(),
            display: None,
        },
        emergency: false,
        media: Vec::new(),
    };
    let ids = translators::h323::CallIds {
        call_ref: 1,
        conference_id: [7; 16],
        call_identifier: [8; 16],
    };
    let m = translators::h323::setup_message(&setup, &ids, olcs).unwrap();
    m.user_user().unwrap().data.clone()
}

pub fn codec(pt: u8, name: &str) -> Codec {
    Codec {
        payload_type: pt,
        name: name.to_owned(),
        clock_rate: 8000,
        channels: 1,
        fmtp: None,
    }
}

/// Seeds: captured H.225.0 PDUs plus our fastStart Setups (IPv4 and IPv6); OLCs from the
/// captured H.245 OpenLogicalChannels and from our fastStart; captured RAS.
/// PDUs to mutate: (H.225.0, fastStart OLCs, RAS).
pub type Seeds = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

pub fn seeds() -> Seeds {
    let media = vec![MediaDescription {
        stream: Some(StreamId(2)),
        kind: MediaKind::Audio,
        direction: Direction::SendRecv,
        codecs: vec![codec(0, "PCMU"), codec(8, "PCMA"), codec(18, "G729")],
        telephone_event: None,
        ptime_ms: Some(20),
    }];
    let mut olcs = Vec::new();
    let mut h225 = hex_dir("h225");
    for rtp in ["192.0.2.10:40000", "[2001:db8::10]:40000"] {
        let rtp: SocketAddr = rtp.parse().unwrap();
        let fs = translators::h323::fast_start_offer(&media, rtp).unwrap();
        h225.push(setup_with_fast_start(fs.clone()));
        olcs.extend(fs);
    }
    for pdu in hex_dir("h245") {
        let m = h323_asn1::decode_h245(&pdu).unwrap();
        if let h323_asn1::h245::MultimediaSystemControlMessage::request(
            h323_asn1::h245::RequestMessage::openLogicalChannel(olc),
        ) = m
        {
            olcs.push(h323_asn1::encode_fast_start_olc(&olc).unwrap());
        }
    }
    (h225, olcs, hex_dir("ras"))
}
