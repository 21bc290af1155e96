//! DTMF between an outside SIP caller that uses RFC 4733 telephone-events and an inside party
//! that has none (issue 10): GW2 still answers the caller with telephone-event, reads its
//! events into Meta DTMF (one per event, the packets not relayed), and plays Meta DTMF (here
//! from the inside's INFO) to the caller as RFC 4733 packets.
//!
//! First on one engine with both halves driven on virtual time (both call directions, a
//! re-INVITE, pass-through when both parties negotiated telephone-event), then live through both
//! halves (`sgw run --role both`) with a raw outside caller and a sipp UAS inside checking the
//! INFOs, tshark decoding what GW2 sends the caller, and with an inside H.323 PBX (the pycrate
//! peer) taking and sending the digits as UserInputIndication.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use bytes::Bytes;
use codecs::sip::{self, Message, MessageBuilder, Method};
use sgw::engine::{Engine, EngineConfig, Flow, Side, Transmit, Transport};
use std::net::SocketAddr;
use std::time::Duration;

const GW2: &str = "198.51.100.1:5060";
const GW1: &str = "10.0.0.1:5060";
const PBX: &str = "10.0.0.10:5060";
const CALLER: &str = "192.0.2.7:5062";
const CALLER_RTP: &str = "192.0.2.7:6000";
const PBX_RTP: &str = "10.0.0.20:7000";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn caller_invite(te: bool) -> Bytes {
    let (fmts, te_lines) = if te {
        (
            "0 101",
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        )
    } else {
        ("0", "")
    };
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 6000 RTP/AVP {fmts}\r\na=rtpmap:0 PCMU/8000\r\n{te_lines}"
    );
    MessageBuilder::request(&Method::Invite, "sip:201@198.51.100.1")
        .header("Via", format!("SIP/2.0/UDP {CALLER};branch=z9hG4bK-dtmf-1"))
        .header("Max-Forwards", "70")
        .header("From", "<sip:alice@192.0.2.7>;tag=alice")
        .header("To", "<sip:201@198.51.100.1>")
        .header("Call-ID", "dtmf-1@192.0.2.7")
        .header("CSeq", "1 INVITE")
        .header("Contact", format!("<sip:alice@{CALLER}>"))
        .body("application/sdp", sdp)
        .build()
}

fn from_caller(e: &mut Engine, now: Duration, data: Bytes) {
    let flow = Flow {
        transport: Transport::Udp,
        local: a(GW2),
        remote: a(CALLER),
    };
    e.handle_datagram(now, flow, data);
}

fn rtp_from_caller(e: &mut Engine, now: Duration, to: SocketAddr, data: Vec<u8>) {
    let flow = Flow {
        transport: Transport::Udp,
        local: to,
        remote: a(CALLER_RTP),
    };
    e.handle_datagram(now, flow, Bytes::from(data));
}

fn from_pbx(e: &mut Engine, now: Duration, data: Bytes) {
    let flow = Flow {
        transport: Transport::Udp,
        local: a(GW1),
        remote: a(PBX),
    };
    e.handle_inside_datagram(now, flow, data);
}

fn drain(e: &mut Engine) -> Vec<Transmit> {
    let v = std::iter::from_fn(|| e.poll_transmit()).collect();
    while e.poll_event().is_some() {}
    v
}

fn sip_of(t: &Transmit) -> Option<Message> {
    sip::parse_datagram(t.payload.clone()).ok().map(|m| m.0)
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.raw()).into_owned()
}

/// The m=audio port of an SDP body.
fn audio_port(m: &Message) -> u16 {
    let body = String::from_utf8_lossy(&m.body()).into_owned();
    let line = body.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, (u8::from(marker) << 7) | pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0xcafe_f00du32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The RFC 4733 packets of one event as a phone sends them: start, updates, three ends.
fn event_packets(event: u8, seq: &mut u16, ts: u32) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (i, (end, d)) in [
        (false, 160u16),
        (false, 320),
        (false, 480),
        (true, 640),
        (true, 640),
        (true, 640),
    ]
    .into_iter()
    .enumerate()
    {
        let block = [event, (u8::from(end) << 7) | 10, (d >> 8) as u8, d as u8];
        v.push(rtp(101, i == 0, *seq, ts, &block));
        *seq = seq.wrapping_add(1);
    }
    v
}

struct Call {
    e: Engine,
    /// GW2's RTP address toward the caller.
    gw2_rtp: SocketAddr,
    /// GW1's RTP address toward the PBX.
    gw1_rtp: SocketAddr,
    /// GW1's INVITE to the PBX.
    inside_invite: Message,
    /// GW2's 200 to the caller.
    answer: Message,
}

/// An outside caller (telephone-event or not) calls the PBX, which answers with PCMU only.
fn call(te: bool) -> Call {
    let mut e = Engine::new(EngineConfig::default());
    from_caller(&mut e, ms(0), caller_invite(te));
    let out = drain(&mut e);
    let inv = out
        .iter()
        .filter(|t| t.side == Side::Inside)
        .filter_map(sip_of)
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("INVITE inside");
    // The inside is offered telephone-event either way: the caller's, or GW1's own (which
    // GW1 would convert, had the PBX accepted it).
    assert!(
        text(&inv).contains("a=rtpmap:101 telephone-event/8000"),
        "{}",
        text(&inv)
    );
    let _ = te;
    let gw1_rtp = SocketAddr::new(a(GW1).ip(), audio_port(&inv));
    let sdp = "v=0\r\no=- 2 2 IN IP4 10.0.0.20\r\ns=-\r\nc=IN IP4 10.0.0.20\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let ok = MessageBuilder::response_to(&inv, 200, Some("pbx"))
        .header("Contact", "<sip:201@10.0.0.10:5060>")
        .body("application/sdp", Bytes::from(sdp))
        .build();
    from_pbx(&mut e, ms(10), ok);
    let answer = drain(&mut e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .filter_map(sip_of)
        .find(|m| m.status() == Some(200))
        .expect("200 to the caller");
    let gw2_rtp = SocketAddr::new(a(GW2).ip(), audio_port(&answer));
    Call {
        e,
        gw2_rtp,
        gw1_rtp,
        inside_invite: inv,
        answer,
    }
}

fn info_from_pbx(c: &mut Call, now: Duration, digit: char, cseq: u32) {
    let info = pbx_request(c, Method::Info, cseq)
        .body(
            "application/dtmf-relay",
            format!("Signal={digit}\r\nDuration=100\r\n"),
        )
        .build();
    from_pbx(&mut c.e, now, info);
}

/// An in-dialog request of the PBX (the callee of the call).
fn pbx_request(c: &Call, method: Method, cseq: u32) -> MessageBuilder {
    let inv = &c.inside_invite;
    MessageBuilder::request(&method, "sip:gw1@10.0.0.1:5060")
        .header(
            "Via",
            format!("SIP/2.0/UDP {PBX};branch=z9hG4bK-pbx-{cseq}"),
        )
        .header("Max-Forwards", "70")
        .header(
            "From",
            format!(
                "{};tag=pbx",
                inv.headers()
                    .single(&sip::HeaderName::TO, "To")
                    .unwrap()
                    .unwrap()
            ),
        )
        .header(
            "To",
            inv.headers()
                .single(&sip::HeaderName::FROM, "From")
                .unwrap()
                .unwrap(),
        )
        .header("Call-ID", inv.call_id().unwrap())
        .header("CSeq", format!("{cseq} {method}"))
}

/// Runs the engine's timers up to `until`, collecting what it sends.
fn run_until(e: &mut Engine, until: Duration) -> Vec<(Duration, Transmit)> {
    let mut out = Vec::new();
    while let Some(t) = e.poll_timeout() {
        if t > until {
            break;
        }
        e.handle_timeout(t);
        out.extend(drain(e).into_iter().map(|x| (t, x)));
    }
    out
}

#[test]
fn caller_events_become_info_inside_and_are_not_relayed() {
    let mut c = call(true);
    let answer = text(&c.answer);
    assert!(
        answer.contains("a=rtpmap:101 telephone-event/8000"),
        "GW2 keeps the caller's telephone-event in its answer:\n{answer}"
    );
    assert!(
        answer.contains("m=audio ") && answer.contains(" RTP/AVP 0 101"),
        "{answer}"
    );
    let inside_rtp = |ts: &[Transmit]| {
        ts.iter()
            .filter(|t| t.side == Side::Inside && t.flow.local == c.gw1_rtp)
            .count()
    };
    // Voice is relayed; the digits 1, 5 and # come as events and leave as three INFOs.
    let mut seq = 100;
    let mut now = ms(100);
    rtp_from_caller(&mut c.e, now, c.gw2_rtp, rtp(0, true, seq, 0, &[0xff; 160]));
    seq += 1;
    let out = drain(&mut c.e);
    assert_eq!(inside_rtp(&out), 1, "voice relayed inside");
    let mut infos = Vec::new();
    for (i, ev) in [1u8, 5, 11].into_iter().enumerate() {
        for p in event_packets(ev, &mut seq, 1000 + 2000 * i as u32) {
            now += ms(20);
            rtp_from_caller(&mut c.e, now, c.gw2_rtp, p);
            let out = drain(&mut c.e);
            assert_eq!(
                inside_rtp(&out),
                0,
                "no telephone-event packet relayed inside"
            );
            infos.extend(
                out.iter()
                    .filter(|t| t.side == Side::Inside)
                    .filter_map(sip_of)
                    .filter(|m| m.method() == Some(&Method::Info)),
            );
        }
    }
    let signals: Vec<String> = infos
        .iter()
        .map(|m| {
            let body = String::from_utf8_lossy(&m.body()).into_owned();
            body.lines()
                .find_map(|l| l.strip_prefix("Signal="))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(signals, ["1", "5", "#"], "one INFO per event");
    assert!(infos
        .iter()
        .all(|m| String::from_utf8_lossy(&m.body()).contains("Duration=80")));
    // A malformed event packet (a 2-byte payload) and a non-DTMF event are dropped.
    rtp_from_caller(
        &mut c.e,
        now + ms(20),
        c.gw2_rtp,
        rtp(101, false, seq, 9000, &[1, 0x8a]),
    );
    rtp_from_caller(
        &mut c.e,
        now + ms(40),
        c.gw2_rtp,
        rtp(101, false, seq + 1, 9000, &[16, 0x8a, 0, 160]),
    );
    let out = drain(&mut c.e);
    assert!(out.iter().all(|t| t.side != Side::Inside), "{out:?}");
    let stats = serde_json::to_value(c.e.stats()).unwrap();
    assert_eq!(stats["media"]["dropped_malformed"], 2, "{stats}");
    assert_eq!(stats["media"]["dtmf_events"], 3, "{stats}");
    assert_eq!(stats["media"]["dtmf_packets"], 18, "{stats}");
}

#[test]
fn info_from_inside_becomes_rfc_4733_to_a_caller_with_telephone_event() {
    let mut c = call(true);
    // The caller sends voice first (GW2 latches to it).
    rtp_from_caller(
        &mut c.e,
        ms(50),
        c.gw2_rtp,
        rtp(0, true, 1, 0, &[0xff; 160]),
    );
    drain(&mut c.e);
    info_from_pbx(&mut c, ms(100), '7', 2);
    let first = drain(&mut c.e);
    let ok = first
        .iter()
        .filter(|t| t.side == Side::Inside)
        .filter_map(sip_of)
        .find(|m| m.status().is_some())
        .expect("200 to the INFO");
    assert_eq!(ok.status(), Some(200));
    assert!(
        first
            .iter()
            .filter(|t| t.side == Side::Outside)
            .filter_map(sip_of)
            .all(|m| m.method() != Some(&Method::Info)),
        "no INFO to a caller that negotiated telephone-event"
    );
    info_from_pbx(&mut c, ms(110), '#', 3);
    let mut pkts: Vec<(Duration, Transmit)> = first.into_iter().map(|t| (ms(100), t)).collect();
    pkts.extend(drain(&mut c.e).into_iter().map(|t| (ms(110), t)));
    pkts.extend(run_until(&mut c.e, ms(2000)));
    let events: Vec<(Duration, codecs::telephone_event::Repr, bool, u32, u16)> = pkts
        .iter()
        .filter(|(_, t)| t.side == Side::Outside && t.flow.local == c.gw2_rtp)
        .map(|(at, t)| {
            assert_eq!(t.flow.remote, a(CALLER_RTP));
            let p = codecs::rtp::Packet::new_checked(&t.payload[..]).unwrap();
            assert_eq!(p.payload_type(), 101);
            let ev = codecs::telephone_event::Packet::new_checked(p.payload()).unwrap();
            (
                *at,
                codecs::telephone_event::Repr::parse(&ev).unwrap(),
                p.marker(),
                p.timestamp(),
                p.sequence_number(),
            )
        })
        .collect();
    let digits: Vec<char> = events
        .iter()
        .filter(|e| e.2)
        .map(|e| e.1.digit().unwrap())
        .collect();
    assert_eq!(digits, ['7', '#'], "{events:#?}");
    // 100 ms each: 4 updates and 3 end packets, 20 ms apart.
    assert_eq!(events.len(), 14, "{events:#?}");
    assert_eq!(events.iter().filter(|e| e.1.end).count(), 6);
    assert!(events.iter().all(|e| e.1.volume == 10));
    for w in events[..7].windows(2) {
        assert_eq!(w[1].0 - w[0].0, ms(20));
        assert_eq!(w[1].3, w[0].3, "one timestamp per event");
    }
    for w in events.windows(2) {
        assert_eq!(
            w[1].4,
            w[0].4.wrapping_add(1),
            "consecutive sequence numbers"
        );
    }
    let stats = serde_json::to_value(c.e.stats()).unwrap();
    assert_eq!(stats["media"]["dropped_malformed"], 0, "{stats}");
    assert_eq!(stats["media"]["dtmf_sent"], 2, "{stats}");
}

#[test]
fn without_telephone_event_the_caller_gets_info_and_no_event_is_added() {
    let mut c = call(false);
    let answer = text(&c.answer);
    assert!(!answer.contains("telephone-event"), "{answer}");
    info_from_pbx(&mut c, ms(100), '3', 2);
    let mut out = drain(&mut c.e);
    out.extend(run_until(&mut c.e, ms(2000)).into_iter().map(|x| x.1));
    let infos: Vec<Message> = out
        .iter()
        .filter(|t| t.side == Side::Outside)
        .filter_map(sip_of)
        .filter(|m| m.method() == Some(&Method::Info))
        .collect();
    // One INFO (retransmitted: the test does not answer it).
    assert!(!infos.is_empty());
    assert!(infos
        .iter()
        .all(|m| m.cseq().unwrap().seq == infos[0].cseq().unwrap().seq));
    assert!(String::from_utf8_lossy(&infos[0].body()).contains("Signal=3"));
    assert!(out
        .iter()
        .all(|t| !(t.side == Side::Outside && t.flow.local == c.gw2_rtp)));
}

#[test]
fn events_pass_through_when_both_sides_negotiated_telephone_event() {
    // The PBX answers with telephone-event too: the caller's events are relayed as media.
    let mut e = Engine::new(EngineConfig::default());
    from_caller(&mut e, ms(0), caller_invite(true));
    let inv = drain(&mut e)
        .iter()
        .filter(|t| t.side == Side::Inside)
        .filter_map(sip_of)
        .find(|m| m.method() == Some(&Method::Invite))
        .unwrap();
    let gw1_rtp = SocketAddr::new(a(GW1).ip(), audio_port(&inv));
    let sdp = "v=0\r\no=- 2 2 IN IP4 10.0.0.20\r\ns=-\r\nc=IN IP4 10.0.0.20\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let ok = MessageBuilder::response_to(&inv, 200, Some("pbx"))
        .header("Contact", "<sip:201@10.0.0.10:5060>")
        .body("application/sdp", Bytes::from(sdp))
        .build();
    from_pbx(&mut e, ms(10), ok);
    let answer = drain(&mut e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .filter_map(sip_of)
        .find(|m| m.status() == Some(200))
        .unwrap();
    let gw2_rtp = SocketAddr::new(a(GW2).ip(), audio_port(&answer));
    let mut seq = 1;
    let mut relayed = 0;
    let mut infos = 0;
    for p in event_packets(4, &mut seq, 500) {
        rtp_from_caller(&mut e, ms(100), gw2_rtp, p);
        for t in drain(&mut e) {
            if t.side == Side::Inside && t.flow.local == gw1_rtp {
                assert_eq!(t.flow.remote, a(PBX_RTP));
                relayed += 1;
            }
            if t.side == Side::Inside
                && sip_of(&t).is_some_and(|m| m.method() == Some(&Method::Info))
            {
                infos += 1;
            }
        }
    }
    assert_eq!((relayed, infos), (6, 0));
}

#[test]
fn a_reinvite_from_the_inside_keeps_the_converted_telephone_event() {
    let mut c = call(true);
    // The PBX puts the call on hold (a re-INVITE without telephone-event).
    let hold = "v=0\r\no=- 2 3 IN IP4 10.0.0.20\r\ns=-\r\nc=IN IP4 10.0.0.20\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n";
    let reinvite = pbx_request(&c, Method::Invite, 5)
        .header("Contact", "<sip:201@10.0.0.10:5060>")
        .body("application/sdp", Bytes::from(hold))
        .build();
    from_pbx(&mut c.e, ms(200), reinvite);
    let re = drain(&mut c.e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .filter_map(sip_of)
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("re-INVITE to the caller");
    let offer = text(&re);
    assert!(
        offer.contains("a=rtpmap:101 telephone-event/8000"),
        "{offer}"
    );
    // The caller accepts, with its telephone-event.
    let sdp = "v=0\r\no=- 1 2 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";
    let ok = MessageBuilder::response_to(&re, 200, None)
        .header("Contact", format!("<sip:alice@{CALLER}>"))
        .body("application/sdp", Bytes::from(sdp))
        .build();
    from_caller(&mut c.e, ms(210), ok);
    let answer = drain(&mut c.e)
        .iter()
        .filter(|t| t.side == Side::Inside)
        .filter_map(sip_of)
        .find(|m| m.status() == Some(200))
        .expect("200 to the PBX's re-INVITE");
    assert!(
        !text(&answer).contains("telephone-event"),
        "the PBX did not offer it: {}",
        text(&answer)
    );
    // The caller's digits still arrive as INFO.
    let mut seq = 50;
    let mut infos = 0;
    for p in event_packets(2, &mut seq, 7000) {
        rtp_from_caller(&mut c.e, ms(300), c.gw2_rtp, p);
        infos += drain(&mut c.e)
            .iter()
            .filter(|t| t.side == Side::Inside)
            .filter_map(sip_of)
            .filter(|m| m.method() == Some(&Method::Info))
            .count();
    }
    assert_eq!(infos, 1);
}

#[test]
fn gw2_placing_a_call_offers_telephone_event_and_converts_when_the_provider_accepts() {
    // The PBX calls out without telephone-event; GW2 offers it to the provider, which accepts.
    const PROVIDER: &str = "203.0.113.50:5060";
    let mut e = Engine::new(EngineConfig {
        outside_sip: Some(a(GW2)),
        outside_next_hop: Some(a(PROVIDER)),
        ..EngineConfig::default()
    });
    let pbx_sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.20\r\ns=-\r\nc=IN IP4 10.0.0.20\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    let invite = MessageBuilder::request(&Method::Invite, "sip:+4930123456@10.0.0.1:5060")
        .header("Via", "SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bKpbx1")
        .header("Max-Forwards", "70")
        .header("From", "<sip:201@10.0.0.10>;tag=pbxtag")
        .header("To", "<sip:+4930123456@10.0.0.1>")
        .header("Call-ID", "pbx-dtmf@10.0.0.10")
        .header("CSeq", "1 INVITE")
        .header("Contact", "<sip:201@10.0.0.10:5060>")
        .body("application/sdp", Bytes::from(pbx_sdp))
        .build();
    from_pbx(&mut e, ms(0), invite);
    let inv = drain(&mut e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .filter_map(sip_of)
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("INVITE outside");
    let offer = text(&inv);
    assert!(
        offer.contains("m=audio ") && offer.contains(" RTP/AVP 8 101\r\n"),
        "{offer}"
    );
    assert!(
        offer.contains("a=rtpmap:101 telephone-event/8000"),
        "{offer}"
    );
    let gw2_rtp = SocketAddr::new(a(GW2).ip(), audio_port(&inv));
    let provider_sdp = "v=0\r\no=- 2 2 IN IP4 203.0.113.60\r\ns=-\r\nc=IN IP4 203.0.113.60\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let ok = MessageBuilder::response_to(&inv, 200, Some("prov"))
        .header("Contact", "<sip:gw@203.0.113.50:5060>")
        .body("application/sdp", Bytes::from(provider_sdp))
        .build();
    e.handle_datagram(
        ms(10),
        Flow {
            transport: Transport::Udp,
            local: a(GW2),
            remote: a(PROVIDER),
        },
        ok,
    );
    let out = drain(&mut e);
    let answer = out
        .iter()
        .filter(|t| t.side == Side::Inside)
        .filter_map(sip_of)
        .find(|m| m.status() == Some(200))
        .expect("200 to the PBX");
    assert!(
        !text(&answer).contains("telephone-event"),
        "the PBX did not offer it: {}",
        text(&answer)
    );
    // The provider's digit 8 reaches the PBX as INFO, its packets not relayed.
    let provider_rtp = a("203.0.113.60:30000");
    let mut seq = 1;
    let mut infos = Vec::new();
    for p in event_packets(8, &mut seq, 4000) {
        e.handle_datagram(
            ms(100),
            Flow {
                transport: Transport::Udp,
                local: gw2_rtp,
                remote: provider_rtp,
            },
            Bytes::from(p),
        );
        for t in drain(&mut e) {
            assert!(
                !(t.side == Side::Inside && sip_of(&t).is_none()),
                "relayed: {t:?}"
            );
            if let Some(m) = sip_of(&t).filter(|m| m.method() == Some(&Method::Info)) {
                infos.push(m);
            }
        }
    }
    assert_eq!(infos.len(), 1);
    assert!(String::from_utf8_lossy(&infos[0].body()).contains("Signal=8"));
    // The PBX's INFO reaches the provider as RFC 4733 events.
    let info = MessageBuilder::request(&Method::Info, "sip:gw1@10.0.0.1:5060")
        .header("Via", "SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bKpbx-info")
        .header("Max-Forwards", "70")
        .header("From", "<sip:201@10.0.0.10>;tag=pbxtag")
        .header(
            "To",
            answer
                .headers()
                .single(&sip::HeaderName::TO, "To")
                .unwrap()
                .unwrap(),
        )
        .header("Call-ID", "pbx-dtmf@10.0.0.10")
        .header("CSeq", "2 INFO")
        .body("application/dtmf-relay", "Signal=*\r\nDuration=100\r\n")
        .build();
    from_pbx(&mut e, ms(200), info);
    let mut sent: Vec<Transmit> = drain(&mut e);
    sent.extend(run_until(&mut e, ms(2000)).into_iter().map(|x| x.1));
    let events: Vec<codecs::telephone_event::Repr> = sent
        .iter()
        .filter(|t| t.side == Side::Outside && t.flow.local == gw2_rtp)
        .map(|t| {
            assert_eq!(t.flow.remote, provider_rtp);
            let p = codecs::rtp::Packet::new_checked(&t.payload[..]).unwrap();
            assert_eq!(p.payload_type(), 101);
            let ev = codecs::telephone_event::Packet::new_checked(p.payload()).unwrap();
            codecs::telephone_event::Repr::parse(&ev).unwrap()
        })
        .collect();
    assert_eq!(events.len(), 7, "{events:?}");
    assert!(events.iter().all(|r| r.digit() == Some('*')));
    assert!(sent
        .iter()
        .filter(|t| t.side == Side::Outside)
        .filter_map(sip_of)
        .all(|m| m.method() != Some(&Method::Info)));
}

// ---------------------------------------------------------------------------------------------
// Live: `sgw run --role both`, a raw outside caller with telephone-event, a sipp UAS inside
// without it.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use support::gateway::{serial, Gateway, Setup};
use support::rawsip::RawCall;
use support::{free_rtp_port, free_udp_port, h323peer, run_bounded, sipp, Proc};

/// The digits the caller sends as RFC 4733 events.
const CALLER_DIGITS: &str = "15#";
/// The digits the inside sends as INFO.
const INSIDE_DIGITS: &str = "9*";

/// A UAS answering PCMA only (no telephone-event) that sends each of `INSIDE_DIGITS` as an INFO
/// (`application/dtmf-relay`) toward GW1 at `gw1`, then takes the caller's digits as INFO, then
/// the BYE.
fn uas_without_telephone_event(gw1: SocketAddr) -> String {
    let mut sends = String::new();
    for (i, d) in INSIDE_DIGITS.chars().enumerate() {
        sends.push_str(&format!(
            r#"<send retrans="500"><![CDATA[
      INFO sip:gw1@{gw1} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <[$ourto]>;tag=[pid]SIPpTag01[call_number]
      To: [$theirfrom]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={d}
      Duration=120
    ]]></send>
  <recv response="200"/>
  <pause milliseconds="300"/>
"#,
            cseq = 10 + i
        ));
    }
    let base = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas answering PCMA without telephone-event, DTMF as INFO">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="To:" check_it="true" assign_to="ourto"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" check_it="true" assign_to="theirfrom"/>
    </action>
  </recv>
  <send retrans="500"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]></send>
  <recv request="ACK" rtd="true" crlf="true"/>
  <pause milliseconds="500"/>
{sends}  <recv request="BYE"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]></send>
</scenario>
"#
    );
    h323peer::with_info_per_digit(&base, CALLER_DIGITS)
}

/// What the caller's media thread saw come back: RFC 4733 events (event code, end bit, RTP
/// timestamp) and voice packets.
#[derive(Debug, Default)]
struct CallerRx {
    events: Vec<(u8, bool, u32)>,
    voice: u64,
}

/// Sends PCMA every 20 ms to GW2 and, from 1.5 s on, each of `CALLER_DIGITS` as RFC 4733 events
/// (start, updates, three ends) 300 ms apart; records what comes back, until stopped.
fn caller_media(
    call: &RawCall,
    stop: Arc<AtomicBool>,
    rx: Arc<Mutex<CallerRx>>,
) -> std::thread::JoinHandle<u64> {
    let to = call.gw_media.expect("GW2's answer has an audio address");
    let sock = call.rtp.clone();
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let start = Instant::now();
        let mut seq: u16 = 1;
        let mut sent = 0u64;
        let mut buf = [0u8; 2048];
        // Per digit: when it starts, its timestamp, and the packets of it sent so far.
        let digits: Vec<u8> = CALLER_DIGITS
            .chars()
            .map(|c| codecs::meta::digit_to_event(c).unwrap())
            .collect();
        let mut tick = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = start + Duration::from_millis(20 * tick);
            if Instant::now() >= due {
                let ts = (tick as u32).wrapping_mul(160);
                let at = tick * 20;
                // Digit i plays from 1500 + 300 i ms: 6 packets (3 updates, 3 ends).
                let digit = digits.iter().enumerate().find_map(|(i, &ev)| {
                    let t0 = 1500 + 300 * i as u64;
                    (at >= t0 && at < t0 + 120)
                        .then(|| (ev, (at - t0) / 20, (t0 / 20) as u32 * 160))
                });
                let pkt = match digit {
                    Some((ev, k, ev_ts)) => {
                        let (end, d) = if k < 3 {
                            (false, 160 * (k as u16 + 1))
                        } else {
                            (true, 640)
                        };
                        rtp(
                            101,
                            k == 0,
                            seq,
                            ev_ts,
                            &[ev, (u8::from(end) << 7) | 10, (d >> 8) as u8, d as u8],
                        )
                    }
                    None => rtp(8, false, seq, ts, &[0xd5; 160]),
                };
                let _ = sock.send_to(&pkt, to);
                seq = seq.wrapping_add(1);
                sent += 1;
                tick += 1;
            }
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let Ok(p) = codecs::rtp::Packet::new_checked(&buf[..n]) else {
                    continue;
                };
                let mut rx = rx.lock().unwrap();
                if p.payload_type() == 101 {
                    if let Ok(ev) = codecs::telephone_event::Packet::new_checked(p.payload()) {
                        rx.events.push((ev.event(), ev.end(), p.timestamp()));
                    }
                } else {
                    rx.voice += 1;
                }
            }
        }
        sent
    })
}

#[test]
fn live_rfc_4733_caller_and_info_inside_through_both_halves() {
    let test = "live_rfc_4733_caller_and_info_inside_through_both_halves";
    if !support::sipp_available(test) || !support::peer_available(test, "tshark", &["-v"], "tshark")
    {
        return;
    }
    let _serial = serial();
    let inside_port = free_udp_port("127.0.0.1");
    let mut s = Setup::new(
        (free_rtp_port("127.0.0.1"), 0),
        (free_rtp_port("127.0.0.1"), 0),
        support::addr(&format!("127.0.0.1:{inside_port}")),
    );
    s.gw2_media.1 = s.gw2_media.0 + 99;
    s.gw1_media.1 = s.gw1_media.0 + 99;
    s.gw1_media_ip = "127.0.0.2";
    let mut gw = Gateway::start("dtmf-live", &s);

    // tshark on lo, from before the call: GW2's media ports (what it sends the caller).
    let pcap = gw.dir.0.join("outside.pcap");
    let mut cap = Proc::spawn_group(
        "tshark",
        Command::new("tshark")
            .args([
                "-i",
                "lo",
                "-f",
                &format!("udp portrange {}-{}", s.gw2_media.0, s.gw2_media.1),
                "-w",
            ])
            .arg(&pcap),
    );
    cap.wait_line("Capturing on", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));

    // The inside: sipp without telephone-event, echoing RTP.
    let scenario = uas_without_telephone_event(gw.gw1_sip);
    let uas_sf = gw.dir.file("uas.xml", &scenario);
    let mut uas_cmd = sipp(&gw.dir.0);
    uas_cmd
        .arg("-sf")
        .arg(&uas_sf)
        .args(["-i", "127.0.0.1", "-p", &inside_port.to_string()])
        .args([
            "-mi",
            "127.0.0.1",
            "-mp",
            &free_rtp_port("127.0.0.1").to_string(),
        ])
        .args(["-rtp_echo", "-m", "1"]);
    let uas =
        std::thread::spawn(move || run_bounded("sipp uas", &mut uas_cmd, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(300));

    let ruri = format!("sip:201@{}", gw.sip);
    let mut call =
        match RawCall::invite(gw.sip, "127.0.0.1", &ruri, "Alice", Duration::from_secs(10)) {
            Ok(c) => c,
            Err(e) => {
                let (_, uout) = uas.join().unwrap();
                panic!(
                    "call not answered: {e:?}\nsipp:\n{uout}\ngateway:\n{}",
                    gw.output()
                );
            }
        };
    let caller_rtp = call.rtp.local_addr().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let rx = Arc::new(Mutex::new(CallerRx::default()));
    let media = caller_media(&call, stop.clone(), rx.clone());
    std::thread::sleep(Duration::from_millis(3500));
    stop.store(true, Ordering::Relaxed);
    let sent = media.join().unwrap();
    assert!(call.hangup(Duration::from_secs(5)), "BYE not answered");
    let (ust, uout) = uas.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cap.terminate(Duration::from_secs(5));
    let out = gw.output();
    let (gw2, _gw1) = gw.stop();
    // GW2's record of the call (each half prints its own).
    let records: Vec<serde_json::Value> = gw
        .call_records()
        .into_iter()
        .filter(|r| r["outside"]["protocol"] == "sip")
        .collect();
    assert_eq!(records.len(), 1, "{out}");
    let rx = rx.lock().unwrap();
    println!(
        "caller sent {sent}, got {} voice and events {:?}",
        rx.voice, rx.events
    );

    // The inside got the caller's digits as INFO, one each (sipp checks each Signal).
    assert!(ust.success(), "sipp uas:\n{uout}\ngateway:\n{out}");
    // The caller got the inside's INFO digits as RFC 4733 events: one M-bit start per digit,
    // three end packets each.
    let mut digits = Vec::new();
    for (ev, _, ts) in &rx.events {
        let d = codecs::meta::event_to_digit(*ev).unwrap();
        if digits.last().is_none_or(|(_, t)| t != ts) {
            digits.push((d, *ts));
        }
    }
    let digits: String = digits.iter().map(|(d, _)| d).collect();
    assert_eq!(digits, INSIDE_DIGITS, "{:?}", rx.events);
    assert_eq!(
        rx.events.iter().filter(|e| e.1).count(),
        3 * INSIDE_DIGITS.len(),
        "{:?}",
        rx.events
    );
    assert!(rx.voice > 50, "the inside's echo came back: {}", rx.voice);
    assert_eq!(gw2["engine"]["media"]["dropped_malformed"], 0, "{gw2}");
    // The call record counts the caller's events read (not relayed: the echo would have
    // brought them back as events) and the inside's played.
    let media = &records[0]["media"];
    assert_eq!(media["dtmf_events"], 3, "{media}");
    assert_eq!(media["dtmf_packets"], 18, "{media}");
    assert_eq!(media["dtmf_sent"], 2, "{media}");
    assert_eq!(media["dtmf_dropped"], 0, "{media}");

    // tshark decodes GW2's packets to the caller as RTPEvent: the digits, no malformed frame.
    let decode = [format!("udp.port=={},rtp", caller_rtp.port())];
    let errors = h323peer::tshark_errors(&pcap, &decode);
    assert!(errors.is_empty(), "tshark errors:\n{errors}");
    let tshark = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args(["-d", &decode[0]])
        .args([
            "-Y",
            &format!("rtpevent && udp.dstport == {}", caller_rtp.port()),
        ])
        .args([
            "-T",
            "fields",
            "-e",
            "rtpevent.event_id",
            "-e",
            "rtpevent.end_of_event",
            "-e",
            "rtp.timestamp",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&tshark.stdout).into_owned();
    let mut seen: Vec<(String, String)> = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if seen.last().is_none_or(|(_, ts)| ts != f[2]) {
            seen.push((f[0].to_owned(), f[2].to_owned()));
        }
    }
    let ids: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(ids, ["9", "10"], "tshark:\n{text}");
}

/// The same caller toward an inside H.323 PBX (the pycrate peer refusing fastStart, H.245
/// tunnelled): its RFC 4733 digits reach the PBX as UserInputIndication, the PBX's digits reach
/// it as RFC 4733 events.
#[test]
fn live_rfc_4733_caller_and_h323_pbx() {
    live_h323_pbx("live_rfc_4733_caller_and_h323_pbx", false);
}

/// The same with a PBX accepting fastStart (H.245 tunnelled for its UserInputIndication, no
/// H.245 session of GW1's): the digits go both ways too.
#[test]
fn live_rfc_4733_caller_to_h323_pbx_with_fast_start() {
    live_h323_pbx("live_rfc_4733_caller_to_h323_pbx_with_fast_start", true);
}

fn live_h323_pbx(test: &str, fast_start: bool) {
    if !support::sipp_available(test) || !support::peer_available(test, "tshark", &["-v"], "tshark")
    {
        return;
    }
    let Some(python) = h323peer::python(test) else {
        return;
    };
    let _serial = serial();
    let pbx_port = support::free_tcp_port("127.0.0.1");
    let rtp = free_rtp_port("127.0.0.1").to_string();
    let mut args: Vec<String> = ["--rtp-port", &rtp, "--seconds", "30", "--h245", "tunnel"]
        .map(String::from)
        .to_vec();
    args.extend(["--dtmf", INSIDE_DIGITS].map(String::from));
    if !fast_start {
        // Refusing fastStart, the PBX's digits go through GW1's H.245 procedures.
        args.push("--no-fast-start".to_owned());
    }
    let pbx = h323peer::Answerer::start(
        &python,
        pbx_port,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut s = Setup::new(
        (free_rtp_port("127.0.0.1"), 0),
        (free_rtp_port("127.0.0.1"), 0),
        support::addr(&format!("127.0.0.1:{pbx_port}")),
    );
    s.gw2_media.1 = s.gw2_media.0 + 99;
    s.gw1_media.1 = s.gw1_media.0 + 99;
    s.gw1_media_ip = "127.0.0.2";
    let gw1_h225 = support::free_tcp_port("127.0.0.2");
    s.gw1_lines = format!("protocol = \"h323\"\nh225_listen = \"127.0.0.2:{gw1_h225}\"\n");
    let mut gw = Gateway::start("dtmf-h323", &s);

    let ruri = format!("sip:2001@{}", gw.sip);
    let mut call = RawCall::invite(gw.sip, "127.0.0.1", &ruri, "Alice", Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("call not answered: {e:?}\n{}", gw.output()));
    let stop = Arc::new(AtomicBool::new(false));
    let rx = Arc::new(Mutex::new(CallerRx::default()));
    let media = caller_media(&call, stop.clone(), rx.clone());
    std::thread::sleep(Duration::from_millis(3500));
    stop.store(true, Ordering::Relaxed);
    media.join().unwrap();
    assert!(call.hangup(Duration::from_secs(5)), "BYE not answered");
    let peer = pbx.finish(Duration::from_secs(20));
    let out = gw.output();
    let (gw2, gw1) = gw.stop();
    let rx = rx.lock().unwrap();
    println!("pbx: {peer}\ncaller events {:?}", rx.events);

    assert_eq!(peer["errors"], serde_json::json!([]), "{peer}\n{out}");
    assert_eq!(peer["connected"], true, "{peer}");
    let want: Vec<String> = CALLER_DIGITS.chars().map(String::from).collect();
    assert_eq!(
        peer["dtmf_received"],
        serde_json::json!(want),
        "the caller's RFC 4733 digits as UserInputIndication: {peer}; gw2 {gw2}; gw1 {gw1}"
    );
    assert_eq!(
        peer["media_via"],
        if fast_start { "fastStart" } else { "h245" },
        "{peer}"
    );
    let mut digits = String::new();
    let mut last_ts = None;
    for (ev, _, ts) in &rx.events {
        if last_ts != Some(*ts) {
            digits.push(codecs::meta::event_to_digit(*ev).unwrap());
            last_ts = Some(*ts);
        }
    }
    assert_eq!(
        digits, INSIDE_DIGITS,
        "the PBX's digits as RFC 4733: {:?}",
        rx.events
    );
    assert_eq!(gw2["engine"]["media"]["dropped_malformed"], 0, "{gw2}");
}
