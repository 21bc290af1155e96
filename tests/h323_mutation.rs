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

mod support;

use bytes::Bytes;
use codecs::meta::StreamId;
use codecs::q931;
use sgw::engine::{ConnId, Engine, EngineConfig, Flow, Transport};
use std::net::SocketAddr;
use std::time::Duration;
use support::h323_mutate::*;

/// Mutated PDUs in total.
const MUTATIONS: usize = 100_000;
/// Peak resident memory allowed for the whole test, in MiB.
const MAX_PEAK_MIB: u64 = 512;
/// Inputs one engine sees before it is replaced (its state grows with every accepted Setup).
const ENGINE_BATCH: usize = 2_000;

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
