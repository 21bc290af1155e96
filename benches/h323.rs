//! H.323 call signalling (issue 3): H.225.0 Setup decode and encode, and a whole Setup → Meta →
//! SIP INVITE translation through the engine. One element = one Setup.
//!
//! ```sh
//! cargo bench --bench h323 -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use codecs::meta::{self, Codec, Direction, MediaDescription, MediaKind, Party, StreamId};
use codecs::{h225, q931, tpkt};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sgw::engine::{ConnId, Engine, EngineConfig, Family, Flow, InsideProtocol, Side, Transport};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

/// A captured Setup's H323-UserInformation (nDPI h323.pcap frame 6: H.225.0 v4, no fastStart,
/// aliases, sourceInfo with vendor and a callIdentifier).
const CAPTURED_UU: &str = include_str!("../h323-asn1/testdata/h225/ndpi-h323-f6-setup.hex");

fn unhex(text: &str) -> Vec<u8> {
    let t = text.trim();
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap())
        .collect()
}

/// The captured H.225.0 PDU in a Q.931 Setup with bearer capability and numbers.
fn captured_q931() -> Vec<u8> {
    q931::Message::setup(
        q931::CallRef::new(1),
        q931::BearerCapability::speech(q931::Layer1Protocol::G711Ulaw),
        unhex(CAPTURED_UU),
    )
    .with_calling_number(q931::PartyNumber::e164("5295672"))
    .with_called_number(q931::PartyNumber::e164("9246526"))
    .to_vec()
    .unwrap()
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

fn offer() -> Vec<MediaDescription> {
    vec![MediaDescription {
        stream: Some(StreamId(1)),
        kind: MediaKind::Audio,
        direction: Direction::SendRecv,
        codecs: vec![codec(0, "PCMU"), codec(8, "PCMA"), codec(18, "G729")],
        telephone_event: None,
        ptime_ms: Some(20),
    }]
}

fn meta_setup() -> meta::Setup {
    meta::Setup {
        call: meta::CallRef(1),
        calling: Party {
            user: "4930555123".to_owned(),
            display: Some("Alice Example".to_owned()),
        },
        called: Party {
            user: "2001".to_owned(),
            display: None,
        },
        emergency: false,
        media: offer(),
    }
}

const IDS: translators::h323::CallIds = translators::h323::CallIds {
    call_ref: 0x1234,
    conference_id: [0xc0; 16],
    call_identifier: [0xca; 16],
};

/// What GW1 does for a Meta Setup toward an H.323 inside: fastStart offer (G.711 µ/A-law and
/// G.729, both directions, IPv6 addresses), H.225.0 Setup, Q.931, TPKT.
fn encode_ours(setup: &meta::Setup, rtp: SocketAddr) -> Vec<u8> {
    let fs = translators::h323::fast_start_offer(&setup.media, rtp).unwrap();
    let q = translators::h323::setup_message(setup, &IDS, fs)
        .unwrap()
        .to_vec()
        .unwrap();
    let mut out = Vec::with_capacity(q.len() + tpkt::HEADER_LEN);
    tpkt::encode(&q, &mut out).unwrap();
    out
}

/// Q.931 decode, H323-UserInformation decode, fastStart OLCs decode.
fn decode(q: &[u8]) -> usize {
    let msg = q931::Message::decode(q).unwrap();
    let uu = h225::user_information(&msg).unwrap();
    let olcs = h225::fast_start(&uu.h323_uu_pdu)
        .map(|fs| h225::fast_start_olcs(fs).unwrap().len())
        .unwrap_or(0);
    msg.ies.len() + olcs
}

fn bench(c: &mut Criterion) {
    let rtp: SocketAddr = "[fd00:5357::1]:40000".parse().unwrap();
    let captured = captured_q931();
    let ours_tpkt = encode_ours(&meta_setup(), rtp);
    let ours = ours_tpkt[tpkt::HEADER_LEN..].to_vec();
    // Bearer capability, calling and called number, User-user; no fastStart.
    assert_eq!(decode(&captured), 4);
    // Five IEs (with Display) and six OLCs (three codecs, both directions).
    assert_eq!(decode(&ours), 11);

    let mut g = c.benchmark_group("h225_setup_decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("captured_ndpi_f6_{}B", captured.len()), |b| {
        b.iter(|| decode(black_box(&captured)));
    });
    g.bench_function(format!("ours_faststart6_ipv6_{}B", ours.len()), |b| {
        b.iter(|| decode(black_box(&ours)));
    });
    g.finish();

    let mut g = c.benchmark_group("h225_setup_encode");
    g.throughput(Throughput::Elements(1));
    let setup = meta_setup();
    g.bench_function("ours_faststart6_ipv6_meta_to_tpkt", |b| {
        b.iter(|| encode_ours(black_box(&setup), rtp));
    });
    let captured_uu = h323_asn1::decode_h323_user_information(&unhex(CAPTURED_UU)).unwrap();
    g.bench_function("captured_ndpi_f6_uu_reencode", |b| {
        b.iter(|| h225::encode(black_box(&captured_uu)).unwrap());
    });
    g.finish();

    // The outside caller's Setup (IPv4, fastStart) into a fresh engine, out as a SIP INVITE
    // toward an IPv4 inside: TPKT framing, Q.931 + H.225.0 + OLC decode, policy, Meta, SIP.
    let caller: SocketAddr = "192.0.2.10:11720".parse().unwrap();
    let setup_in = encode_ours(&meta_setup(), "192.0.2.10:5000".parse().unwrap());
    let flow = Flow {
        transport: Transport::Tcp,
        local: "198.51.100.1:1720".parse().unwrap(),
        remote: caller,
    };
    let config = EngineConfig {
        inside_family: Some(Family::V4),
        inside_protocol: Some(InsideProtocol::Sip),
        ..EngineConfig::default()
    };
    let run = |mut e: Engine| {
        e.handle_stream(Duration::ZERO, ConnId(1), flow, black_box(&setup_in));
        while e.poll_event().is_some() {}
        let mut invite = 0;
        while let Some(t) = e.poll_transmit() {
            if t.side == Side::Inside && t.payload.starts_with(b"INVITE ") {
                invite = t.payload.len();
            }
        }
        invite
    };
    assert!(
        run(Engine::new(config.clone())) > 0,
        "the engine sent an INVITE"
    );
    let mut g = c.benchmark_group("h323_to_sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("setup_faststart_to_invite_engine", |b| {
        b.iter_batched(|| Engine::new(config.clone()), run, BatchSize::SmallInput);
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
