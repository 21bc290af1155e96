//! DTMF between an outside SIP caller that uses RFC 4733 telephone-events and an inside party
//! that has none (issue 10): GW2 still answers the caller with telephone-event, reads its
//! events into Meta DTMF (one per event, the packets not relayed), and plays Meta DTMF (here
//! from the inside's INFO) to the caller as RFC 4733 packets.
//!
//! First on one engine with both halves driven on virtual time, then live through both halves
//! (`sgw run --role both`) with a raw outside caller and a sipp UAS inside checking the INFOs,
//! and tshark decoding what GW2 sends the caller.
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
    // The inside sees what the caller offered: telephone-event when it offered it.
    assert_eq!(text(&inv).contains("telephone-event"), te, "{}", text(&inv));
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
    let inv = &c.inside_invite;
    let info = MessageBuilder::request(&Method::Info, "sip:gw1@10.0.0.1:5060")
        .header(
            "Via",
            format!("SIP/2.0/UDP {PBX};branch=z9hG4bK-info-{cseq}"),
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
        .header("CSeq", format!("{cseq} INFO"))
        .body(
            "application/dtmf-relay",
            format!("Signal={digit}\r\nDuration=100\r\n"),
        )
        .build();
    from_pbx(&mut c.e, now, info);
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
