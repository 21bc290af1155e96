//! SIP parse → validate → Meta, stage by stage, for one realistic INVITE with SDP. Throughput is
//! reported in messages per second (one element = one INVITE).
//!
//! ```sh
//! cargo bench --bench sip_pipeline -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::meta::{self, CallRef, StreamId};
use codecs::sip::{self, StartLine, Uri};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sgw::engine::policy::{self, SipPolicy};
use sgw::engine::Verdict;
use std::hint::black_box;

/// An INVITE as a typical SIP trunk sends it: two Vias, display name, Allow/Supported lists and
/// an SDP offer with three audio codecs and telephone-event (1 KB on the wire).
const INVITE: &[u8] = b"INVITE sip:+15551234567@198.51.100.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n\
Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bKnashds8;received=203.0.113.7\r\n\
Max-Forwards: 69\r\n\
From: \"Alice Example\" <sip:+15557654321@example.com;user=phone>;tag=9fxced76sl\r\n\
To: <sip:+15551234567@198.51.100.1;user=phone>\r\n\
Call-ID: 3848276298220188511@192.0.2.1\r\n\
CSeq: 31862 INVITE\r\n\
Contact: <sip:+15557654321@192.0.2.1:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, NOTIFY\r\n\
Supported: timer, 100rel, replaces\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: ExampleSBC/4.2\r\n\
P-Asserted-Identity: \"Alice Example\" <sip:+15557654321@example.com;user=phone>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 341\r\n\
\r\n\
v=0\r\n\
o=ExampleSBC 2890844526 2890844526 IN IP4 192.0.2.1\r\n\
s=SIP Call\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=sendrecv\r\n\
a=rtcp:49171 IN IP4 192.0.2.1\r\n";

fn parse(data: &Bytes) -> sip::Message {
    sip::parse_datagram(data.clone()).unwrap().0
}

/// Stage (b): parse, the message checks and the gateway's request policy.
fn validate(data: &Bytes, policy: &SipPolicy) -> sip::Message {
    let msg = parse(data);
    msg.check().unwrap();
    policy.check_request(&msg).unwrap();
    msg
}

/// Stage (c): the Meta Setup GW2 sends through the tunnel, encoded as a frame.
fn to_meta(data: &Bytes, policy: &SipPolicy, frame: &mut Vec<u8>) -> usize {
    let msg = validate(data, policy);
    let StartLine::Request(req) = msg.start() else {
        unreachable!()
    };
    let uri = Uri::parse(&req.uri).unwrap();
    let from = msg.from().unwrap();
    let to = msg.to().unwrap();
    let sdp = policy::sdp_body(&msg).unwrap();
    let mut next = 0u16;
    let offer = translators::sip::offer_from_sdp(&sdp, &mut || {
        next += 2;
        StreamId(next)
    })
    .unwrap();
    let setup = meta::Message::Setup(meta::Setup {
        call: CallRef(2),
        calling: translators::sip::calling_party(from),
        called: translators::sip::called_party(&uri, to),
        emergency: false,
        media: offer.media,
    });
    frame.clear();
    meta::wire::encode_frame(1, &setup, frame).unwrap();
    frame.len()
}

fn sip_pipeline(c: &mut Criterion) {
    let data = Bytes::from_static(INVITE);
    let policy = SipPolicy::default();
    // The stages must succeed on the benchmark input, or the numbers mean nothing.
    let mut frame = Vec::new();
    assert!(to_meta(&data, &policy, &mut frame) > 0);
    assert_eq!(
        sgw::check::check_bytes("bench", INVITE).verdict,
        Verdict::Accepted
    );

    let mut g = c.benchmark_group("sip_pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("a_parse_datagram", |b| b.iter(|| parse(black_box(&data))));
    g.bench_function("b_parse_check_policy", |b| {
        b.iter(|| validate(black_box(&data), &policy))
    });
    g.bench_function("c_parse_validate_meta_setup", |b| {
        b.iter(|| to_meta(black_box(&data), &policy, &mut frame))
    });
    g.bench_function("d_engine_check_bytes", |b| {
        b.iter(|| sgw::check::check_bytes("bench", black_box(INVITE)))
    });
    g.finish();
}

criterion_group!(benches, sip_pipeline);
criterion_main!(benches);
