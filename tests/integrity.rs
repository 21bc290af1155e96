//! Integrity of signalling (issue 8): responses bound to where their request went, in-dialog
//! requests bound to the dialog's peer, and no control character from a peer in a header the
//! gateway writes.
//!
//! The first tests run the engine on virtual time (both halves in one engine, like
//! `tests/call_model.rs`); the `live_*` tests run the real `sgw` binary with the raw SIP client
//! of `tests/support/rawsip.rs` on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::meta::{self, Codec, Direction, MediaDescription, MediaKind, Party, StreamId};
use codecs::sip::{self, HeaderName, Message, MessageBuilder, Method};
use sgw::engine::{
    ConnId, Engine, EngineConfig, Event, Flow, InsideProtocol, Side, Transmit, Transport, Verdict,
};
use std::net::SocketAddr;
use std::time::Duration;

const GW2: &str = "198.51.100.1:5060";
const GW1: &str = "10.0.0.1:5060";
/// The inside next hop of the default configuration.
const PROXY: &str = "10.0.0.10:5060";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        outside_sip: Some(a(GW2)),
        outside_next_hop: Some(a("203.0.113.9:5060")),
        ..EngineConfig::default()
    })
}

fn caller() -> SocketAddr {
    a("192.0.2.7:5001")
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

/// An INVITE from the caller as raw text, `from` its whole From value (the builder would
/// refuse control characters; a peer need not).
fn raw_invite(from: &str, to: &str) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:100@198.51.100.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {c};branch=z9hG4bK-inj\r\n\
         Max-Forwards: 70\r\n\
         From: {from}\r\n\
         To: {to}\r\n\
         Call-ID: inj@192.0.2.7\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:c@{c}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{SDP}",
        c = caller(),
        len = SDP.len()
    ))
}

fn invite() -> Bytes {
    raw_invite(
        "\"Alice\" <sip:c@192.0.2.7>;tag=t1",
        "<sip:100@198.51.100.1>",
    )
}

fn udp(local: &str, remote: SocketAddr) -> Flow {
    Flow {
        transport: Transport::Udp,
        local: a(local),
        remote,
    }
}

fn drain(e: &mut Engine) -> Vec<Transmit> {
    std::iter::from_fn(|| e.poll_transmit()).collect()
}

fn reports(e: &mut Engine) -> Vec<sgw::engine::Report> {
    std::iter::from_fn(|| e.poll_event())
        .filter_map(|ev| match ev {
            Event::Report(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn sip_of(t: &Transmit) -> Message {
    sip::parse_datagram(t.payload.clone()).unwrap().0
}

fn statuses(ts: &[Transmit], side: Side) -> Vec<u16> {
    ts.iter()
        .filter(|t| t.side == side)
        .filter_map(|t| sip_of(t).status())
        .collect()
}

fn requests(ts: &[Transmit], side: Side, method: Method) -> Vec<Message> {
    ts.iter()
        .filter(|t| t.side == side)
        .map(sip_of)
        .filter(|m| m.method() == Some(&method))
        .collect()
}

/// Every byte the gateway wrote toward the inside.
fn inside_text(ts: &[Transmit]) -> String {
    ts.iter()
        .filter(|t| t.side == Side::Inside)
        .map(|t| String::from_utf8_lossy(&t.payload).into_owned())
        .collect()
}

/// The inside PBX's 200 with SDP to GW1's INVITE.
fn pbx_ok(inv: &Message) -> Bytes {
    let sdp = "v=0\r\no=- 2 2 IN IP4 10.0.0.20\r\ns=-\r\nc=IN IP4 10.0.0.20\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
    MessageBuilder::response_to(inv, 200, Some("pbx"))
        .header("Contact", "<sip:phone@10.0.0.10:5060>")
        .body("application/sdp", Bytes::from(sdp))
        .build()
}

/// A call from the outside caller, answered inside; returns GW2's tag and GW1's INVITE.
fn answered_call(e: &mut Engine) -> (String, Message) {
    e.handle_datagram(Duration::ZERO, udp(GW2, caller()), invite());
    let inv = requests(&drain(e), Side::Inside, Method::Invite)
        .pop()
        .expect("GW1's INVITE");
    e.handle_inside_datagram(Duration::ZERO, udp(GW1, a(PROXY)), pbx_ok(&inv));
    let ok = drain(e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .map(sip_of)
        .find(|m| m.status() == Some(200))
        .expect("200 to the caller");
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    let ack = MessageBuilder::request(&Method::Ack, "sip:gw@198.51.100.1")
        .header(
            "Via",
            format!("SIP/2.0/UDP {};branch=z9hG4bK-ack", caller()),
        )
        .header("From", "\"Alice\" <sip:c@192.0.2.7>;tag=t1")
        .header("To", format!("<sip:100@198.51.100.1>;tag={tag}"))
        .header("Call-ID", "inj@192.0.2.7")
        .header("CSeq", "1 ACK")
        .build();
    e.handle_datagram(Duration::ZERO, udp(GW2, caller()), ack);
    drain(e);
    reports(e);
    (tag, inv)
}

fn caller_bye(gw2_tag: &str, via: SocketAddr, branch: &str) -> Bytes {
    MessageBuilder::request(&Method::Bye, "sip:gw@198.51.100.1")
        .header("Via", format!("SIP/2.0/UDP {via};branch={branch}"))
        .header("From", "\"Alice\" <sip:c@192.0.2.7>;tag=t1")
        .header("To", format!("<sip:100@198.51.100.1>;tag={gw2_tag}"))
        .header("Call-ID", "inj@192.0.2.7")
        .header("CSeq", "2 BYE")
        .build()
}

// ---- binding ---------------------------------------------------------------------------------

/// A BYE with the right Call-ID and tags from the caller's IP on another port, and from
/// another host, is refused with 481; the call stays up, and the caller's own BYE ends it.
#[test]
fn a_spoofed_bye_does_not_end_the_call() {
    let mut e = engine();
    let (tag, _) = answered_call(&mut e);
    for (i, from) in [a("192.0.2.7:5002"), a("192.0.2.66:5001")]
        .into_iter()
        .enumerate()
    {
        let bye = caller_bye(&tag, from, &format!("z9hG4bK-spoof{i}"));
        e.handle_datagram(Duration::ZERO, udp(GW2, from), bye);
        let out = drain(&mut e);
        assert_eq!(statuses(&out, Side::Outside), [481], "BYE from {from}");
        assert!(requests(&out, Side::Inside, Method::Bye).is_empty());
        let r = reports(&mut e);
        let r = r.iter().find(|r| r.response == Some(481)).unwrap();
        assert_eq!(r.verdict, Verdict::Rejected);
        assert!(
            r.reason
                .as_deref()
                .unwrap()
                .contains("not from the dialog's peer"),
            "{:?}",
            r.reason
        );
        assert_eq!(e.stats().calls_live, 1, "the call stays up");
    }
    assert_eq!(e.stats().sip_outside.requests_wrong_source, 2);
    let bye = caller_bye(&tag, caller(), "z9hG4bK-real");
    e.handle_datagram(Duration::ZERO, udp(GW2, caller()), bye);
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [200]);
    assert_eq!(requests(&out, Side::Inside, Method::Bye).len(), 1);
    assert_eq!(e.stats().calls_live, 0);
}

/// GW1 binds the inside dialog too: a BYE from the inside with the dialog's Call-ID but a
/// wrong tag, or the right tags from another inside address, leaves the call up.
#[test]
fn gw1_checks_tags_and_source_of_inside_requests() {
    let mut e = engine();
    let (_, inv) = answered_call(&mut e);
    let gw1_from = inv
        .headers()
        .single(&HeaderName::FROM, "From")
        .unwrap()
        .unwrap()
        .to_owned();
    let bye = |from_tag: &str, branch: &str| {
        MessageBuilder::request(&Method::Bye, "sip:gw1@10.0.0.1:5060")
            .header("Via", format!("SIP/2.0/UDP 10.0.0.10:5060;branch={branch}"))
            .header("From", format!("<sip:100@10.0.0.10>;tag={from_tag}"))
            .header("To", gw1_from.clone())
            .header("Call-ID", inv.call_id().unwrap())
            .header("CSeq", "2 BYE")
            .build()
    };
    let cases = [
        (bye("not-pbx", "z9hG4bK-i1"), a(PROXY)),
        (bye("pbx", "z9hG4bK-i2"), a("10.0.0.10:5999")),
        (bye("pbx", "z9hG4bK-i3"), a("10.0.0.99:5060")),
    ];
    for (msg, from) in cases {
        e.handle_inside_datagram(Duration::ZERO, udp(GW1, from), msg);
        let out = drain(&mut e);
        assert_eq!(statuses(&out, Side::Inside), [481], "BYE from {from}");
        assert!(requests(&out, Side::Outside, Method::Bye).is_empty());
        assert_eq!(e.stats().calls_live, 1);
    }
    e.handle_inside_datagram(Duration::ZERO, udp(GW1, a(PROXY)), bye("pbx", "z9hG4bK-i4"));
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Inside), [200]);
    assert_eq!(requests(&out, Side::Outside, Method::Bye).len(), 1);
}

/// A 200 to GW1's INVITE from anywhere but the inside next hop is dropped and counted; the
/// next hop's own 200 still answers the call.
#[test]
fn a_response_from_elsewhere_is_ignored() {
    let mut e = engine();
    e.handle_datagram(Duration::ZERO, udp(GW2, caller()), invite());
    let inv = requests(&drain(&mut e), Side::Inside, Method::Invite)
        .pop()
        .unwrap();
    reports(&mut e);
    for from in [a("10.0.0.10:5061"), a("10.0.0.66:5060")] {
        e.handle_inside_datagram(Duration::ZERO, udp(GW1, from), pbx_ok(&inv));
        let out = drain(&mut e);
        assert!(statuses(&out, Side::Outside).is_empty(), "200 from {from}");
        assert!(requests(&out, Side::Inside, Method::Ack).is_empty());
        let r = reports(&mut e);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].verdict, Verdict::Rejected);
        assert!(r[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("where the request went"));
    }
    assert_eq!(e.stats().sip_inside.responses_wrong_source, 2);
    e.handle_inside_datagram(Duration::ZERO, udp(GW1, a(PROXY)), pbx_ok(&inv));
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [200]);
    assert_eq!(requests(&out, Side::Inside, Method::Ack).len(), 1);
}

// ---- header injection ------------------------------------------------------------------------

/// From and To values that carry a control character into the display name or user part:
/// each INVITE gets 400, and nothing reaches the inside.
#[test]
fn outside_sip_with_control_characters_gets_400() {
    let to = "<sip:100@198.51.100.1>";
    let from = |v: &str| format!("{v} <sip:c@192.0.2.7>;tag=t1");
    let cases = [
        // A bare CR is no line end for the parser: it stays in the quoted string.
        (from("\"Alice\rX-Injected: yes\""), to.to_owned()),
        // quoted-pair may escape any character but CR and LF (RFC 3261 section 25.1).
        (from("\"Alice\\\0X-Injected: yes\""), to.to_owned()),
        (from("\"Alice\\\rX-Injected: yes\""), to.to_owned()),
        (from("\"Alice\x1bX\""), to.to_owned()),
        // The user part, percent-decoded.
        (
            "<sip:c%0D%0AX-Injected:%20yes@192.0.2.7>;tag=t1".to_owned(),
            to.to_owned(),
        ),
        (
            from("\"Alice\""),
            "\"Bob\rX-Injected: yes\" <sip:100@198.51.100.1>".to_owned(),
        ),
        // A bare LF ends the line: the From is cut short, malformed.
        (from("\"Alice\nX-Injected: yes\""), to.to_owned()),
    ];
    for (from, to) in cases {
        let mut e = engine();
        e.handle_datagram(Duration::ZERO, udp(GW2, caller()), raw_invite(&from, &to));
        let out = drain(&mut e);
        assert_eq!(statuses(&out, Side::Outside), [400], "{from:?} / {to:?}");
        assert!(inside_text(&out).is_empty(), "{from:?}");
        assert_eq!(e.stats().calls_live, 0);
    }
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

/// An outside caller's Setup (TPKT-framed) whose Display IE is `display` (any bytes).
fn h323_setup_with_display(display: &[u8]) -> Vec<u8> {
    let media = vec![MediaDescription {
        stream: Some(StreamId(2)),
        kind: MediaKind::Audio,
        direction: Direction::SendRecv,
        codecs: vec![codec(0, "PCMU")],
        telephone_event: None,
        ptime_ms: Some(20),
    }];
    let setup = meta::Setup {
        call: meta::CallRef(2),
        calling: Party {
            user: "4930555".to_owned(),
            display: Some("Caller".to_owned()),
        },
        called: Party {
            user: "2001".to_owned(),
            display: None,
        },
        emergency: false,
        media: media.clone(),
    };
    let ids = translators::h323::CallIds {
        call_ref: 0x1234,
        conference_id: [0xc0; 16],
        call_identifier: [0xca; 16],
    };
    let fs = translators::h323::fast_start_offer(&media, a("192.0.2.8:7000")).unwrap();
    let q = translators::h323::setup_message(&setup, &ids, fs)
        .unwrap()
        .to_vec()
        .unwrap();
    // The builder refuses control characters: the Display IE (0x28) is replaced by hand.
    let ie = [&[0x28, 6][..], b"Caller"].concat();
    let at = q
        .windows(ie.len())
        .position(|w| w == ie)
        .expect("Display IE");
    let mut q2 = q[..at].to_vec();
    q2.push(0x28);
    q2.push(u8::try_from(display.len()).unwrap());
    q2.extend_from_slice(display);
    q2.extend_from_slice(&q[at + ie.len()..]);
    let mut out = Vec::new();
    codecs::tpkt::encode(&q2, &mut out).unwrap();
    out
}

/// An H.323 Setup whose Display IE carries `\r\nX-Injected: yes`: the IE has invalid contents
/// and is treated as absent (Q.931 clause 5.8.7.2, a non-mandatory IE); the call goes on, and
/// the inside INVITE carries neither the header nor the display.
#[test]
fn outside_h323_display_injection_never_reaches_the_inside() {
    for display in [
        &b"Caller\r\nX-Injected: yes"[..],
        b"Caller\nX-Injected: yes",
        b"Caller\0X-Injected: yes",
    ] {
        let mut e = Engine::new(EngineConfig {
            inside_protocol: Some(InsideProtocol::Sip),
            ..EngineConfig::default()
        });
        let flow = Flow {
            transport: Transport::Tcp,
            local: a("198.51.100.1:1720"),
            remote: a("192.0.2.8:40000"),
        };
        e.handle_stream(
            Duration::ZERO,
            ConnId(1),
            flow,
            &h323_setup_with_display(display),
        );
        let out = drain(&mut e);
        let inside = inside_text(&out);
        let inv = requests(&out, Side::Inside, Method::Invite)
            .pop()
            .expect("the call goes on without the display");
        assert!(!inside.contains("X-Injected"), "{inside}");
        assert!(!inside.contains("Caller"), "{inside}");
        assert_eq!(inv.from().unwrap().display, None);
    }
    // The control group sees the display.
    let mut e = Engine::new(EngineConfig {
        inside_protocol: Some(InsideProtocol::Sip),
        ..EngineConfig::default()
    });
    let flow = Flow {
        transport: Transport::Tcp,
        local: a("198.51.100.1:1720"),
        remote: a("192.0.2.8:40000"),
    };
    e.handle_stream(
        Duration::ZERO,
        ConnId(1),
        flow,
        &h323_setup_with_display(b"Caller Bob"),
    );
    let inv = requests(&drain(&mut e), Side::Inside, Method::Invite)
        .pop()
        .unwrap();
    assert_eq!(inv.from().unwrap().display.as_deref(), Some("Caller Bob"));
}
