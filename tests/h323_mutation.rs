//! A deterministic, PROTOS-like mutation test of the H.323 decode path (it stands in for the
//! PROTOS c07-h2250v4 suite, which is not available): at least 100,000 mutated Setup, fastStart
//! OpenLogicalChannel and RAS PDUs, derived from the valid PDUs in `h323-asn1/testdata` and from
//! a Setup with fastStart that we build, go through TPKT → Q.931 → H.225.0 → H.245 decoding, the
//! Setup → Meta translation, and the engine (as TCP streams to port 1720 and RAS datagrams to
//! port 1719). Nothing may panic, and memory must stay bounded.
//!
//! Mutations (the PROTOS c07 classes): overlong and underlong PER length determinants, huge
//! SEQUENCE OF counts (a fragmented length of 64K items, a 16K count), wrong CHOICE tags
//! (changed choice indexes and extension bits), truncated extensions (cuts inside the extension
//! bitmap and the open types after it), bit flips, inserted and deleted octets, trailing garbage;
//! on the Q.931 layer a zero-length and an overlong User-user IE, a wrong protocol discriminator
//! in it, a missing Bearer capability; on the TPKT layer overlong lengths.
//!
//! Memory: rasn reserves a SEQUENCE OF for its claimed count only as far as the remaining input
//! could hold (rasn 0.30 `per::de::decode_sequence_of`), octet strings are taken from the input
//! before they are copied, and `h323-asn1` refuses PDUs over 65,535 octets. So a decoded count
//! is bounded by the input's size; the test checks it by the process's peak resident set
//! (`VmHWM`, reset through `/proc/self/clear_refs` first), which must stay under
//! [`MAX_PEAK_MIB`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::meta::{self, Codec, Direction, MediaDescription, MediaKind, Party, StreamId};
use codecs::q931;
use sgw::engine::{ConnId, Engine, EngineConfig, Flow, Transport};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Mutated PDUs in total.
const MUTATIONS: usize = 100_000;
/// Peak resident memory allowed for the whole test, in MiB.
const MAX_PEAK_MIB: u64 = 512;
/// Inputs one engine sees before it is replaced (its state grows with every accepted Setup).
const ENGINE_BATCH: usize = 2_000;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_dir(kind: &str) -> Vec<Vec<u8>> {
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
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Seed {
    /// An H323-UserInformation, carried in a Q.931 Setup.
    H225,
    /// One fastStart OpenLogicalChannel, carried in a Setup built around it.
    Olc,
    /// A RasMessage.
    Ras,
}

/// Applies one PER-level mutation.
fn mutate_per(rng: &mut Rng, pdu: &[u8]) -> Vec<u8> {
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
fn q931_setup(rng: &mut Rng, h225: Vec<u8>) -> Vec<u8> {
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

fn tpkt(rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
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
fn setup_with_fast_start(olcs: Vec<Vec<u8>>) -> Vec<u8> {
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

fn codec(pt: u8, name: &str) -> Codec {
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
type Seeds = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn seeds() -> Seeds {
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

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Outcomes of one worker.
#[derive(Default, Debug)]
struct Tally {
    inputs: usize,
    decoded: usize,
    rejected: usize,
    reencode_mismatch: usize,
}

fn run(worker: u64, count: usize, h225: &[Vec<u8>], olcs: &[Vec<u8>], ras: &[Vec<u8>]) -> Tally {
    let mut rng = Rng(0x5347_5748_3332_3300 ^ (worker + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut tally = Tally::default();
    let mut engine = Engine::new(EngineConfig::default());
    let gw2: SocketAddr = "198.51.100.1:1720".parse().unwrap();
    let gw2_ras: SocketAddr = "198.51.100.1:1719".parse().unwrap();
    for n in 0..count {
        if n % ENGINE_BATCH == 0 {
            engine = Engine::new(EngineConfig::default());
        }
        let now = Duration::from_millis(n as u64);
        let peer = SocketAddr::new("192.0.2.1".parse().unwrap(), 1024 + (n % 60_000) as u16);
        let seed = match rng.below(3) {
            0 => Seed::H225,
            1 => Seed::Olc,
            _ => Seed::Ras,
        };
        tally.inputs += 1;
        match seed {
            Seed::Ras => {
                let pdu = {
                    let i = rng.below(ras.len());
                    mutate_per(&mut rng, &ras[i])
                };
                match h323_asn1::decode_ras(&pdu) {
                    Ok(m) => {
                        tally.decoded += 1;
                        if let Ok(again) = h323_asn1::encode_ras(&m) {
                            if h323_asn1::decode_ras(&again).ok().as_ref() != Some(&m) {
                                tally.reencode_mismatch += 1;
                            }
                        }
                        let _ = codecs::ras::gatekeeper_reject(&m);
                    }
                    Err(_) => tally.rejected += 1,
                }
                let flow = Flow {
                    transport: Transport::Udp,
                    local: gw2_ras,
                    remote: peer,
                };
                engine.handle_datagram(now, flow, Bytes::from(pdu));
            }
            Seed::H225 | Seed::Olc => {
                let per = match seed {
                    Seed::H225 => {
                        let i = rng.below(h225.len());
                        mutate_per(&mut rng, &h225[i])
                    }
                    _ => {
                        let olc = {
                            let i = rng.below(olcs.len());
                            mutate_per(&mut rng, &olcs[i])
                        };
                        // Decode the OLC alone too.
                        if let Ok(o) = h323_asn1::decode_fast_start_olc(&olc) {
                            let _ = codecs::h245::olc_media(&o);
                            if let Ok(again) = h323_asn1::encode_fast_start_olc(&o) {
                                if h323_asn1::decode_fast_start_olc(&again).ok().as_ref()
                                    != Some(&o)
                                {
                                    tally.reencode_mismatch += 1;
                                }
                            }
                        }
                        setup_with_fast_start(vec![olc])
                    }
                };
                let q = q931_setup(&mut rng, per);
                // The codec path, as the engine runs it.
                match q931::Message::decode(&q) {
                    Ok(msg) => match codecs::h225::user_information(&msg) {
                        Ok(uu) => {
                            let mut s = 0u16;
                            match translators::h323::setup_to_meta(&msg, &uu, &mut || {
                                s += 2;
                                StreamId(s)
                            }) {
                                Ok(_) => tally.decoded += 1,
                                Err(_) => tally.rejected += 1,
                            }
                            if let Ok(again) = codecs::h225::encode(&uu) {
                                if h323_asn1::decode_h323_user_information(&again)
                                    .ok()
                                    .as_ref()
                                    != Some(&uu)
                                {
                                    tally.reencode_mismatch += 1;
                                }
                            }
                        }
                        Err(_) => tally.rejected += 1,
                    },
                    Err(_) => tally.rejected += 1,
                }
                let framed = tpkt(&mut rng, &q);
                let flow = Flow {
                    transport: Transport::Tcp,
                    local: gw2,
                    remote: peer,
                };
                let conn = ConnId(n as u64 * 2 + worker * (1 << 40));
                // Split the stream at a random point, as TCP may.
                let cut = rng.below(framed.len() + 1);
                engine.handle_stream(now, conn, flow, &framed[..cut]);
                engine.handle_stream(now, conn, flow, &framed[cut..]);
                engine.handle_stream_closed(now, conn);
            }
        }
        while engine.poll_transmit().is_some() {}
        while engine.poll_event().is_some() {}
        if n % 500 == 0 {
            engine.handle_timeout(now + Duration::from_secs(64));
            while engine.poll_transmit().is_some() {}
            while engine.poll_event().is_some() {}
        }
    }
    tally
}

#[test]
fn mutated_setup_olc_and_ras_pdus_never_panic_and_stay_bounded() {
    let (h225, olcs, ras) = seeds();
    assert!(h225.len() >= 10 && olcs.len() >= 6 && ras.len() >= 30);
    // Reset the peak RSS to the current RSS (Linux >= 4.0), so the check measures this test.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_mib();
    let threads = 2;
    let per = MUTATIONS.div_ceil(threads);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|w| {
                let (h225, olcs, ras) = (&h225, &olcs, &ras);
                s.spawn(move || run(w, per, h225, olcs, ras))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: usize = tallies.iter().map(|t| t.inputs).sum();
    let decoded: usize = tallies.iter().map(|t| t.decoded).sum();
    let rejected: usize = tallies.iter().map(|t| t.rejected).sum();
    let mismatch: usize = tallies.iter().map(|t| t.reencode_mismatch).sum();
    let peak = peak_rss_mib();
    eprintln!(
        "{total} mutated PDUs: {decoded} decoded, {rejected} rejected, {mismatch} re-encodings \
         that decode differently; peak RSS {before:?} -> {peak:?} MiB"
    );
    assert!(total >= MUTATIONS);
    assert!(
        rejected > total / 10,
        "mutations too mild: {rejected} rejected"
    );
    if let Some(peak) = peak {
        assert!(peak < MAX_PEAK_MIB, "peak RSS {peak} MiB");
    }
}

/// The huge-count mutations alone, each measured: a decoded SEQUENCE OF never holds more
/// elements than its input has bits.
#[test]
fn huge_sequence_of_counts_are_bounded_by_the_input() {
    let (h225, _, ras) = seeds();
    for pdu in h225.iter().chain(&ras) {
        for i in 0..pdu.len() {
            for inject in [&[0xc4u8][..], &[0xbf, 0xff], &[0xc1, 0x00]] {
                let mut b = pdu.clone();
                b.splice(i..i, inject.iter().copied());
                // Pad with octets that decode as many small elements.
                b.resize(b.len() + 4096, 0);
                let _ = h323_asn1::decode_h323_user_information(&b);
                let _ = h323_asn1::decode_ras(&b);
            }
        }
    }
    if let Some(peak) = peak_rss_mib() {
        assert!(peak < MAX_PEAK_MIB, "peak RSS {peak} MiB");
    }
}
