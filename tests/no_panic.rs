//! No byte string panics any codec, translator or the engine (STYLE.md: untrusted input never
//! panics). Inputs are arbitrary bytes and mutations of valid messages: bit flips, truncations,
//! insertions of CR/LF/NUL/0xff and SIP punctuation, deleted ranges and duplicated lines. The
//! SIP seeds are the RFC 4475 and RFC 5118 torture messages, read in place from
//! `../shared/corpora`; binary seeds are built here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::meta::{self, StreamId};
use codecs::sip::{self, HeaderName, Message, StreamFramer, Uri};
use codecs::{rtcp, rtp, sdp, telephone_event};
use proptest::prelude::*;
use proptest::sample::Index;
use sgw::check::check_bytes;
use sgw::engine::{
    media::Head, policy, ConnId, Engine, EngineConfig, Flow, Payload, Prepared, Transport, Verdict,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

const CORPORA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora");

/// A realistic INVITE with SDP (also the seed when the corpora hold no body).
const INVITE: &[u8] = b"INVITE sip:+15551234567@198.51.100.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n\
Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKnashds8\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:+15551234567@198.51.100.1;user=phone>\r\n\
Call-ID: 3848276298220188511@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\n\
Supported: timer, 100rel\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 224\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n";

/// The raw messages of RFC 4475 and RFC 5118, plus [`INVITE`].
static SIP_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut seeds = vec![INVITE.to_vec()];
    for dir in ["rfc4475", "rfc5118"] {
        let dir = Path::new(CORPORA).join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            // RFC 4475's files end in .dat, RFC 5118's have no extension.
            .filter(|p| !p.extension().is_some_and(|x| x == "txt" || x == "md"))
            .collect();
        files.sort();
        seeds.extend(files.iter().map(|p| std::fs::read(p).unwrap()));
    }
    assert!(
        seeds.len() > 40,
        "RFC 4475/5118 seeds found: {}",
        seeds.len()
    );
    seeds
});

/// The SDP bodies of the SIP seeds that have one, plus a few hand-made sessions.
static SDP_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut seeds: Vec<Vec<u8>> = SIP_SEEDS
        .iter()
        .filter_map(|s| sip::parse_datagram(Bytes::copy_from_slice(s)).ok())
        .map(|(m, _)| m.body().to_vec())
        .filter(|b| b.starts_with(b"v=0"))
        .collect();
    seeds.push(
        b"v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nb=AS:64\n\
m=audio 5004 RTP/AVP 96 101\na=rtpmap:96 opus/48000/2\na=fmtp:96 useinbandfec=1\n\
a=rtpmap:101 telephone-event/48000\na=ptime:20\na=maxptime:40\na=rtcp:5005 IN IP6 2001:db8::1\n\
a=recvonly\nm=video 0 RTP/AVP 31\nm=image 6000 udptl t38\n"
            .to_vec(),
    );
    seeds.push(
        b"v=0\r\no=- 2 2 IN IP4 0.0.0.0\r\ns= \r\nt=0 0\r\na=inactive\r\n\
m=audio 7078 RTP/SAVP 18\r\nc=IN IP4 203.0.113.5/127\r\na=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"
            .to_vec(),
    );
    seeds
});

/// Valid RTP packets: plain, with CSRCs, extension and padding, and a telephone-event.
static RTP_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let plain = [
        vec![
            0x80, 0x00, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef,
        ],
        vec![0xff; 160],
    ]
    .concat();
    let full = [
        // V=2 P=1 X=1 CC=2, M=1 PT=96
        vec![0xb2, 0xe0, 0x00, 0x01, 0, 0, 0, 160, 1, 2, 3, 4],
        vec![0, 0, 0, 5, 0, 0, 0, 6],
        vec![0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0, 0],
        vec![0x55; 20],
        vec![0, 0, 3],
    ]
    .concat();
    let dtmf = [
        vec![0x80, 0xe5, 0x00, 0x02, 0, 0, 0x03, 0x20, 1, 2, 3, 4],
        vec![0x05, 0x8a, 0x03, 0x20],
    ]
    .concat();
    vec![plain, full, dtmf]
});

/// Valid RTCP compounds: SR + SDES + BYE, RR + APP with padding.
static RTCP_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let sr = [
        vec![0x81, 200, 0, 12, 1, 2, 3, 4],
        vec![0xe1, 0x2c, 0x3b, 0x4a, 0x10, 0x20, 0x30, 0x40],
        vec![0, 0, 0x10, 0, 0, 0, 0, 10, 0, 0, 6, 0x40],
        vec![
            5, 6, 7, 8, 0, 0, 0, 3, 0, 1, 0, 9, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        // SDES: one chunk, CNAME "ab", END, padded to 32 bits
        vec![0x81, 202, 0, 3, 1, 2, 3, 4, 1, 2, b'a', b'b'],
        vec![0, 0, 0, 0],
        // BYE with a reason
        vec![0x81, 203, 0, 2, 1, 2, 3, 4, 2, b'o', b'k', 0],
    ]
    .concat();
    let rr = [
        vec![0x80, 201, 0, 1, 9, 9, 9, 9],
        vec![0xa0, 204, 0, 4, 9, 9, 9, 9, b'n', b'a', b'm', b'e'],
        vec![1, 2, 3, 4, 0, 0, 0, 4],
    ]
    .concat();
    vec![sr, rr]
});

/// Valid Meta frames: every message kind the engine produces for a call with media.
static META_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut seeds = Vec::new();
    let mut engine = Engine::new(EngineConfig::default());
    engine.handle_datagram(Duration::ZERO, udp_flow(), Bytes::from_static(INVITE));
    while let Some(e) = engine.poll_event() {
        if let sgw::engine::Event::Meta { message, .. } = e {
            let mut frame = Vec::new();
            meta::wire::encode_frame(7, &message, &mut frame).unwrap();
            seeds.push(frame);
        }
    }
    let mut ka = Vec::new();
    meta::wire::encode(
        &meta::Message::Keepalive(meta::Keepalive {
            seq: 3,
            reply: true,
        }),
        &mut ka,
    )
    .unwrap();
    seeds.push(ka);
    assert!(seeds.len() >= 2, "the INVITE seed produces a Meta Setup");
    seeds
});

fn udp_flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: "198.51.100.1:5060".parse().unwrap(),
        remote: "192.0.2.1:5060".parse().unwrap(),
    }
}

// ---- mutations ----

/// One edit of a byte string; positions are indexes scaled to the current length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Truncate(Index),
    Insert(Index, u8),
    Delete(Index, usize),
    /// Duplicates the line containing the index (a repeated header or SDP line).
    DuplicateLine(Index),
    /// Overwrites bytes with arbitrary ones.
    Overwrite(Index, Vec<u8>),
}

/// Bytes that break parsers: line ends, NUL, 0xff, and SIP/SDP punctuation.
const INTERESTING: &[u8] = b"\r\n\0\xff \t:;,<>\"\\/=@[]%?*0";

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), prop::sample::select(INTERESTING)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Mutation::Overwrite(i, v)),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    match m {
        Mutation::FlipBit(i, bit) => {
            if !data.is_empty() {
                let p = at(i, data.len());
                data[p] ^= 1 << bit;
            }
        }
        Mutation::Truncate(i) => data.truncate(at(i, data.len() + 1)),
        Mutation::Insert(i, b) => {
            let p = at(i, data.len() + 1);
            data.insert(p, *b);
        }
        Mutation::Delete(i, n) => {
            let p = at(i, data.len() + 1);
            let end = (p + n).min(data.len());
            data.drain(p..end);
        }
        Mutation::DuplicateLine(i) => {
            if !data.is_empty() {
                let p = at(i, data.len());
                let start = data[..p]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |s| s + 1);
                let end = data[p..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |e| p + e + 1);
                let line = data[start..end].to_vec();
                data.splice(start..start, line);
            }
        }
        Mutation::Overwrite(i, bytes) => {
            if !data.is_empty() {
                let p = at(i, data.len());
                for (d, b) in data[p..].iter_mut().zip(bytes) {
                    *d = *b;
                }
            }
        }
    }
}

/// A seed from `seeds` with 1 to 8 mutations applied.
fn mutated(seeds: &'static LazyLock<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(LazyLock::force(seeds).clone()),
        prop::collection::vec(mutation(), 1..8),
    )
        .prop_map(|(mut data, ms)| {
            for m in &ms {
                apply(&mut data, m);
            }
            data
        })
}

fn arbitrary(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Shrinking a mutated message can take long; a failure prints the input anyway.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

// ---- what each input is run through ----

/// Every typed accessor of a parsed message, the policy, and the SDP of its body.
fn exercise_message(m: &Message) {
    let _ = m.check();
    let _ = (
        m.summary(),
        m.body(),
        m.is_request(),
        m.method(),
        m.status(),
    );
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.content_length());
    if let Ok(from) = m.from() {
        let _ = (from.tag(), from.param("x"), from.uri.user_decoded());
        let _ = translators::sip::calling_party(from);
    }
    let to = m.to();
    if let Ok(to) = &to {
        let _ = (to.tag(), to.uri.param("user"), to.uri.is_known_scheme());
    }
    if let Ok(vias) = m.vias() {
        for v in vias {
            let _ = (v.branch(), v.param("rport"));
        }
    }
    if let Ok(contacts) = m.contacts() {
        for c in contacts {
            let _ = (c.uri.user_decoded(), c.param("expires"));
        }
    }
    let ct = m.content_type();
    if let Ok(Some(ct)) = &ct {
        let _ = (ct.param("boundary"), ct.is("application", "sdp"));
        let _ = translators::sip::dtmf_from_info(ct, &m.body());
    }
    for name in [
        HeaderName::REQUIRE,
        HeaderName::SUPPORTED,
        HeaderName::ALLOW,
    ] {
        let _ = m.option_tags(&name).count();
    }
    for (name, value) in m.headers().iter() {
        let _ = (name, sip::split_list(value).count());
    }
    let _ = policy::SipPolicy::default().check_request(m);
    if let Some(sip::StartLine::Request(req)) = Some(m.start()) {
        if let (Ok(uri), Ok(to)) = (Uri::parse(&req.uri), &to) {
            let _ = translators::sip::called_party(&uri, to);
        }
    }
    if let Some(body) = policy::sdp_body(m) {
        exercise_sdp(&body);
    }
}

/// Both SDP parsers, every accessor, byte-exact emission, and the translator.
fn exercise_sdp(body: &[u8]) {
    for mode in [sdp::Mode::Strict, sdp::Mode::Lenient] {
        let Ok(s) = sdp::Session::parse_with(body, mode) else {
            continue;
        };
        assert_eq!(s.to_bytes(), body, "SDP emission is byte-exact ({mode:?})");
        let _ = (s.version(), s.origin(), s.session_name(), s.connection());
        let _ = (s.timing(), s.bandwidths().count(), s.attributes().count());
        let _ = (s.direction(), s.attribute("group"), s.buffer_len());
        for m in s.media() {
            let _ = (m.media_line(), m.port(), m.is_rejected(), m.connection());
            let _ = (
                m.rtpmaps().count(),
                m.fmtps().count(),
                m.ptime(),
                m.maxptime(),
            );
            let _ = (m.direction(), m.rtcp(), m.telephone_event(), m.codecs());
            let _ = (
                m.media_line().is_rtp(),
                m.media_line().payload_types().count(),
            );
            let _ = (s.media_connection(m), s.media_direction(m));
            for pt in m.media_line().payload_types() {
                let _ = (m.codec(pt), m.rtpmap(pt), m.fmtp(&pt.to_string()));
            }
        }
    }
    let mut next = 0u16;
    let offer = translators::sip::offer_from_sdp(body, &mut || {
        next = next.wrapping_add(1);
        StreamId(next)
    });
    if let Ok(offer) = offer {
        let _ = translators::sip::answer_from_sdp(body, &offer.media);
    }
}

/// The datagram parser, then the stream framer on the same bytes cut at `split`.
fn exercise_sip(data: &[u8], split: usize) {
    if let Ok((m, _trailing)) = sip::parse_datagram(Bytes::copy_from_slice(data)) {
        exercise_message(&m);
    }
    let cut = split % (data.len() + 1);
    let mut framer = StreamFramer::new();
    for part in [&data[..cut], &data[cut..]] {
        framer.push(part);
        // An error repeats forever; a success consumes bytes, so this loop ends.
        for _ in 0..=data.len() {
            match framer.next_message() {
                Some(Ok(m)) => exercise_message(&m),
                Some(Err(_)) | None => break,
            }
        }
    }
    let _ = framer.buffered();
}

/// The whole engine: a fresh gateway given the bytes as a UDP datagram (`sgw check`), and as a
/// TCP stream cut at `split`, then its timers run out.
fn exercise_engine(data: &[u8], split: usize) {
    let r = check_bytes("fuzz", data);
    assert!(
        r.response.is_none_or(|c| (100..=699).contains(&c)),
        "response {:?}",
        r.response
    );
    let mut engine = Engine::new(EngineConfig::default());
    let flow = Flow {
        transport: Transport::Tcp,
        ..udp_flow()
    };
    let cut = split % (data.len() + 1);
    engine.handle_stream(Duration::ZERO, ConnId(1), flow, &data[..cut]);
    engine.handle_stream(Duration::from_millis(10), ConnId(1), flow, &data[cut..]);
    engine.handle_stream_gap(Duration::from_millis(20), ConnId(1));
    engine.handle_stream(Duration::from_millis(30), ConnId(1), flow, data);
    engine.handle_timeout(Duration::from_secs(64));
    while engine.poll_event().is_some() {}
    while engine.poll_transmit().is_some() {}

    // With a call in progress (GW2's outside dialog and GW1's inside one exist), the bytes as
    // a datagram from the caller, and from the inside next hop as a datagram and a stream: the
    // inside is one more peer whose input is not trusted.
    let mut engine = Engine::new(EngineConfig::default());
    engine.handle_datagram(Duration::ZERO, udp_flow(), Bytes::from_static(INVITE));
    let inside = engine
        .poll_transmit()
        .into_iter()
        .chain(std::iter::from_fn(|| engine.poll_transmit()))
        .find(|t| t.side == sgw::engine::Side::Inside)
        .map(|t| t.flow)
        .expect("the INVITE goes inside");
    let t = Duration::from_millis(5);
    engine.handle_datagram(t, udp_flow(), Bytes::copy_from_slice(data));
    engine.handle_inside_datagram(t, inside, Bytes::copy_from_slice(data));
    let inside_tcp = Flow {
        transport: Transport::Tcp,
        ..inside
    };
    engine.handle_inside_stream(t, ConnId(2), inside_tcp, &data[..cut]);
    engine.handle_inside_stream(t, ConnId(2), inside_tcp, &data[cut..]);
    engine.handle_timeout(Duration::from_secs(400));
    while engine.poll_event().is_some() {}
    while engine.poll_transmit().is_some() {}
}

/// Everything an engine does with one datagram, in order, as text.
fn outputs(engine: &mut Engine) -> Vec<String> {
    let mut out: Vec<String> = std::iter::from_fn(|| engine.poll_transmit())
        .map(|t| format!("{t:?}"))
        .collect();
    out.extend(std::iter::from_fn(|| engine.poll_event()).map(|e| format!("{e:?}")));
    out
}

/// RTP and RTCP with their header read off the engine ([`Head::of`], what replay's reader
/// thread does) and lent rather than shared are handled exactly as when the engine reads them:
/// the caller's media after its INVITE, several packets of it (latching, SSRC changes).
fn same_when_media_read_off_engine(packets: &[Vec<u8>]) -> Vec<String> {
    let mut all = Vec::new();
    let config = || EngineConfig {
        replay: true,
        report_accepted_media: true,
        ..EngineConfig::default()
    };
    let (mut here, mut off) = (Engine::new(config()), Engine::new(config()));
    let invite = Bytes::from_static(INVITE);
    here.handle_datagram(Duration::ZERO, udp_flow(), invite.clone());
    off.handle_datagram(Duration::ZERO, udp_flow(), invite);
    assert_eq!(outputs(&mut here), outputs(&mut off));
    // From the SDP's address (RTCP from the port above) to the callee's media port.
    for (i, d) in packets.iter().enumerate() {
        let now = Duration::from_millis(20 * (i as u64 + 1));
        let port = if Head::of(d).rtcp { 49171 } else { 49170 };
        let flow = Flow {
            transport: Transport::Udp,
            local: "198.51.100.1:30000".parse().unwrap(),
            remote: SocketAddr::from(([192, 0, 2, 1], port)),
        };
        here.handle_datagram(now, flow, Bytes::copy_from_slice(d));
        off.handle_datagram_parsed(
            now,
            flow,
            Payload::Borrowed(d),
            Prepared::Media(Head::of(d)),
        );
        let out = outputs(&mut here);
        assert_eq!(out, outputs(&mut off));
        all.extend(out);
    }
    all
}

/// The seeds reach the caller's stream and are accepted (the property test above meets a
/// stream, not only unknown packets).
#[test]
fn media_seeds_read_off_engine_reach_the_stream() {
    let seeds: Vec<Vec<u8>> = RTP_SEEDS.iter().chain(RTCP_SEEDS.iter()).cloned().collect();
    let out = same_when_media_read_off_engine(&seeds);
    for p in ["Rtp", "Rtcp"] {
        let accepted = format!("protocol: {p}, side: Outside");
        assert!(
            out.iter()
                .any(|o| o.contains(&accepted) && o.contains("Accepted")),
            "no accepted {p}: {out:#?}"
        );
    }
}

/// A datagram read as SIP off the engine ([`sgw::engine::parse_sip`], what replay's reader
/// thread does) is handled exactly as one the engine reads itself.
fn same_when_parsed_off_engine(data: &[u8]) {
    let config = || EngineConfig {
        replay: true,
        ..EngineConfig::default()
    };
    let (mut here, mut off) = (Engine::new(config()), Engine::new(config()));
    // After an INVITE, so that a mutated message may also meet a dialog.
    for (i, d) in [INVITE, data].into_iter().enumerate() {
        let now = Duration::from_millis(10 * i as u64);
        let d = Bytes::copy_from_slice(d);
        here.handle_datagram(now, udp_flow(), d.clone());
        let parsed = sgw::engine::parse_sip(&d);
        let prepared = parsed.map_or(Prepared::Nothing, |p| Prepared::Sip(Box::new(p)));
        off.handle_datagram_parsed(now, udp_flow(), Payload::Shared(&d), prepared);
        assert_eq!(outputs(&mut here), outputs(&mut off));
    }
}

fn exercise_rtp(data: &[u8]) {
    let _ = rtp::classify(data);
    let _ = (rtp::looks_like_rtp(data), rtp::looks_like_rtcp(data));
    if let Ok(p) = rtp::Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.padding(),
            p.extension(),
            p.csrc_count(),
            p.marker(),
        );
        let _ = (
            p.payload_type(),
            p.sequence_number(),
            p.timestamp(),
            p.ssrc(),
        );
        let _ = (p.csrc(0), p.csrc(15), p.extension_header(), p.header_len());
        let _ = (p.padding_len(), p.payload());
        let _ = rtp::static_payload_type(p.payload_type());
        if let Ok(repr) = rtp::Repr::parse(&p) {
            let mut buf = vec![0xa5; repr.buffer_len()];
            repr.emit(&mut rtp::Packet::new_unchecked(&mut buf[..]))
                .unwrap();
            let again = rtp::Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(rtp::Repr::parse(&again).unwrap(), repr);
        }
        exercise_telephone_event(p.payload());
    }
}

fn exercise_telephone_event(data: &[u8]) {
    if let Ok(p) = telephone_event::Packet::new_checked(data) {
        let _ = (
            p.event(),
            p.end(),
            p.reserved(),
            p.volume(),
            p.duration(),
            p.digit(),
        );
        if let Ok(repr) = telephone_event::Repr::parse(&p) {
            let _ = repr.digit();
            let mut buf = [0u8; telephone_event::PAYLOAD_LEN];
            let _ = repr.emit(&mut telephone_event::Packet::new_unchecked(&mut buf[..]));
        }
    }
}

fn exercise_rtcp(data: &[u8]) {
    for p in rtcp::packets(data).flatten() {
        let _ = (
            p.version(),
            p.count(),
            p.packet_type(),
            p.length(),
            p.ssrc(),
        );
        let _ = (
            p.padding_len(),
            p.body(),
            rtcp::packet_type_name(p.packet_type()),
        );
        exercise_rtcp_repr(&p);
    }
    if let Ok(c) = rtcp::Compound::new_checked(data) {
        assert_eq!(c.as_bytes(), data);
        for p in c.iter() {
            exercise_rtcp_repr(&p);
        }
    }
}

fn exercise_rtcp_repr(p: &rtcp::Packet<&[u8]>) {
    if let Ok(repr) = rtcp::Repr::parse(p) {
        let _ = (repr.packet_type(), repr.buffer_len());
        match &repr {
            rtcp::Repr::SenderReport { reports, .. }
            | rtcp::Repr::ReceiverReport { reports, .. } => {
                let _ = reports.iter().count();
            }
            rtcp::Repr::SourceDescription(chunks) => {
                for c in chunks.iter() {
                    let _ = (c.items().count(), c.cname());
                }
            }
            _ => {}
        }
        let mut buf = vec![0xa5; repr.buffer_len()];
        let _ = repr.emit(&mut rtcp::Packet::new_unchecked(&mut buf[..]));
    }
}

fn exercise_meta(data: &[u8]) {
    if let Ok((seq, msg)) = meta::wire::decode_frame(data) {
        let _ = (msg.call(), msg.name());
        let mut again = Vec::new();
        meta::wire::encode_frame(seq, &msg, &mut again).unwrap();
        assert_eq!(meta::wire::decode_frame(&again), Ok((seq, msg)));
    }
    let _ = meta::wire::decode(data);
    let _ = meta::wire::FrameHeader::decode(data);
    let _ = meta::wire::split_frame(data);
    let mut reader = meta::wire::FrameReader::new();
    reader.push(data);
    reader.push(data);
    for _ in 0..4 {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                let _ = meta::wire::decode_frame(frame);
            }
            Ok(None) | Err(_) => break,
        }
    }
}

// ---- the properties ----

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn sip_arbitrary_bytes(data in arbitrary(512), split in any::<usize>()) {
        exercise_sip(&data, split);
    }

    #[test]
    fn sip_printable_lines(
        lines in prop::collection::vec("[ -~]{0,40}", 0..24),
        split in any::<usize>(),
    ) {
        // Text that looks more like a message: a start line, header-ish lines, a blank line.
        let mut text = String::from("INVITE sip:a@b SIP/2.0\r\n");
        for l in &lines {
            text.push_str(l);
            text.push_str("\r\n");
        }
        exercise_sip(text.as_bytes(), split);
    }

    #[test]
    fn sip_mutated_seeds(data in mutated(&SIP_SEEDS), split in any::<usize>()) {
        exercise_sip(&data, split);
    }

    #[test]
    fn sdp_arbitrary_bytes(data in arbitrary(512)) {
        exercise_sdp(&data);
    }

    #[test]
    fn sdp_mutated_seeds(data in mutated(&SDP_SEEDS)) {
        exercise_sdp(&data);
    }

    #[test]
    fn rtp_arbitrary_and_mutated(
        data in prop_oneof![arbitrary(96), mutated(&RTP_SEEDS)],
    ) {
        exercise_rtp(&data);
        exercise_telephone_event(&data);
    }

    #[test]
    fn rtcp_arbitrary_and_mutated(
        data in prop_oneof![arbitrary(128), mutated(&RTCP_SEEDS)],
    ) {
        exercise_rtcp(&data);
    }

    #[test]
    fn meta_arbitrary_and_mutated(
        data in prop_oneof![arbitrary(256), mutated(&META_SEEDS)],
    ) {
        exercise_meta(&data);
    }
}

proptest! {
    // The engine is the slowest target: fewer cases.
    #![proptest_config(config(384))]

    #[test]
    fn engine_mutated_seeds(data in mutated(&SIP_SEEDS), split in any::<usize>()) {
        exercise_engine(&data, split);
    }

    #[test]
    fn engine_arbitrary_bytes(data in arbitrary(256), split in any::<usize>()) {
        exercise_engine(&data, split);
    }

    #[test]
    fn engine_same_when_sip_parsed_off_engine(data in mutated(&SIP_SEEDS)) {
        same_when_parsed_off_engine(&data);
    }

    #[test]
    fn engine_same_when_media_read_off_engine(
        packets in proptest::collection::vec(
            prop_oneof![arbitrary(64), mutated(&RTP_SEEDS), mutated(&RTCP_SEEDS)],
            1..6,
        )
    ) {
        let _ = same_when_media_read_off_engine(&packets);
    }
}

/// Every seed unmodified, and every truncation of the INVITE, through everything.
#[test]
fn seeds_and_every_truncation() {
    let invite = check_bytes("invite", INVITE);
    assert_eq!(invite.verdict, Verdict::Accepted, "{invite:?}");
    for s in SIP_SEEDS.iter() {
        exercise_sip(s, 0);
        exercise_engine(s, s.len() / 2);
        same_when_parsed_off_engine(s);
    }
    for s in SDP_SEEDS.iter() {
        exercise_sdp(s);
    }
    for s in RTP_SEEDS.iter() {
        exercise_rtp(s);
    }
    for s in RTCP_SEEDS.iter() {
        assert!(rtcp::Compound::new_checked(s).is_ok(), "RTCP seed is valid");
        exercise_rtcp(s);
    }
    for s in META_SEEDS.iter() {
        assert!(meta::wire::decode_frame(s).is_ok(), "Meta seed is valid");
        exercise_meta(s);
    }
    for n in 0..=INVITE.len() {
        exercise_sip(&INVITE[..n], n / 2);
    }
}
