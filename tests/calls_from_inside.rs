//! Calls from the intranet out: PBX -> GW1 (UAS) -> Meta -> GW2 (UAC) -> outside next hop, on
//! one engine with both halves, driven message by message like the live runtime does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::sip::{self, MessageBuilder, Method};
use sgw::engine::{Engine, EngineConfig, Flow, Side, Transmit, Transport};
use std::net::SocketAddr;
use std::time::Duration;

const GW2: &str = "198.51.100.1:5060";
const PROVIDER: &str = "203.0.113.50:5060";
const PBX: &str = "10.0.0.10:5060";
const GW1: &str = "10.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        outside_sip: Some(addr(GW2)),
        outside_next_hop: Some(addr(PROVIDER)),
        ..EngineConfig::default()
    })
}

fn sdp(ip: &str, port: u16) -> Vec<u8> {
    format!("v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n").into_bytes()
}

fn pbx_invite() -> Bytes {
    MessageBuilder::request(&Method::Invite, "sip:+4930123456@10.0.0.1:5060")
        .header("Via", "SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bKpbx1")
        .header("Max-Forwards", "70")
        .header("From", "\"Desk 201\" <sip:201@10.0.0.10>;tag=pbxtag")
        .header("To", "<sip:+4930123456@10.0.0.1>")
        .header("Call-ID", "pbx-call-1@10.0.0.10")
        .header("CSeq", "1 INVITE")
        .header("Contact", "<sip:201@10.0.0.10:5060>")
        .body("application/sdp", sdp("10.0.0.20", 16000))
        .build()
}

fn inside(e: &mut Engine, data: Bytes) {
    let flow = Flow {
        transport: Transport::Udp,
        local: addr(GW1),
        remote: addr(PBX),
    };
    e.handle_inside_datagram(Duration::from_millis(1), flow, data);
}

fn outside(e: &mut Engine, data: Bytes) {
    let flow = Flow {
        transport: Transport::Udp,
        local: addr(GW2),
        remote: addr(PROVIDER),
    };
    e.handle_datagram(Duration::from_millis(2), flow, data);
}

fn sent(e: &mut Engine) -> Vec<Transmit> {
    let mut v = Vec::new();
    while let Some(t) = e.poll_transmit() {
        v.push(t);
    }
    while e.poll_event().is_some() {}
    v
}

fn parse(t: &Transmit) -> sip::Message {
    sip::parse_datagram(t.payload.clone()).unwrap().0
}

fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.payload).into_owned()
}

#[test]
fn inside_call_is_placed_outside_answered_and_hung_up() {
    let mut e = engine();
    inside(&mut e, pbx_invite());
    let out = sent(&mut e);
    let trying = out
        .iter()
        .find(|t| t.side == Side::Inside)
        .expect("100 to the PBX");
    assert_eq!(parse(trying).status(), Some(100));
    let invite = out
        .iter()
        .find(|t| t.side == Side::Outside)
        .expect("INVITE outside");
    let inv = parse(invite);
    assert_eq!(inv.method(), Some(&Method::Invite));
    assert_eq!(invite.flow.remote, addr(PROVIDER));
    let inv_text = text(invite);
    assert!(
        inv_text.starts_with("INVITE sip:+4930123456@203.0.113.50:5060 SIP/2.0"),
        "{inv_text}"
    );
    assert!(inv_text.contains("c=IN IP4 198.51.100.1"), "{inv_text}");
    for inside_secret in ["10.0.0.", "pbx-call-1", "pbxtag", "z9hG4bKpbx1"] {
        assert!(
            !inv_text.contains(inside_secret),
            "'{inside_secret}' leaked outside:\n{inv_text}"
        );
    }

    // The provider rings, then answers with its SDP.
    outside(
        &mut e,
        MessageBuilder::response_to(&inv, 180, Some("prov1")).build(),
    );
    let out = sent(&mut e);
    let ringing = out
        .iter()
        .find(|t| t.side == Side::Inside)
        .expect("180 to the PBX");
    assert_eq!(parse(ringing).status(), Some(180));

    let ok = MessageBuilder::response_to(&inv, 200, Some("prov1"))
        .header("Contact", "<sip:gw@203.0.113.50:5060>")
        .body("application/sdp", sdp("203.0.113.60", 30000))
        .build();
    outside(&mut e, ok);
    let out = sent(&mut e);
    let ack = out
        .iter()
        .find(|t| t.side == Side::Outside)
        .expect("ACK outside");
    assert_eq!(parse(ack).method(), Some(&Method::Ack));
    let answer = out
        .iter()
        .find(|t| t.side == Side::Inside)
        .expect("200 to the PBX");
    let answer_text = text(answer);
    assert_eq!(parse(answer).status(), Some(200));
    assert!(answer_text.contains("c=IN IP4 10.0.0.1"), "{answer_text}");
    assert!(
        !answer_text.contains("203.0.113."),
        "outside leaked inside:\n{answer_text}"
    );

    // The PBX confirms; the provider hangs up.
    let pbx_ack = MessageBuilder::request(&Method::Ack, "sip:gw1@10.0.0.1:5060")
        .header("Via", "SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bKpbx2")
        .header("From", "\"Desk 201\" <sip:201@10.0.0.10>;tag=pbxtag")
        .header(
            "To",
            parse(answer)
                .headers()
                .single(&sip::HeaderName::TO, "To")
                .unwrap()
                .unwrap(),
        )
        .header("Call-ID", "pbx-call-1@10.0.0.10")
        .header("CSeq", "1 ACK")
        .build();
    inside(&mut e, pbx_ack);
    assert!(sent(&mut e).is_empty());

    let bye = MessageBuilder::request(&Method::Bye, "sip:gw@198.51.100.1:5060")
        .header("Via", "SIP/2.0/UDP 203.0.113.50:5060;branch=z9hG4bKprov9")
        .header("From", "<sip:+4930123456@203.0.113.50>;tag=prov1")
        .header(
            "To",
            parse(invite)
                .headers()
                .single(&sip::HeaderName::FROM, "From")
                .unwrap()
                .unwrap(),
        )
        .header("Call-ID", inv.call_id().unwrap())
        .header("CSeq", "5 BYE")
        .build();
    outside(&mut e, bye);
    let out = sent(&mut e);
    let ok = out
        .iter()
        .find(|t| t.side == Side::Outside)
        .expect("200 to the BYE");
    assert_eq!(parse(ok).status(), Some(200));
    let inside_bye = out
        .iter()
        .find(|t| t.side == Side::Inside)
        .expect("BYE to the PBX");
    let ib = parse(inside_bye);
    assert_eq!(ib.method(), Some(&Method::Bye));
    assert_eq!(ib.call_id().unwrap(), "pbx-call-1@10.0.0.10");
    assert_eq!(ib.to().unwrap().tag(), Some("pbxtag"));
}

#[test]
fn pbx_cancel_cancels_outside_and_busy_maps_back() {
    let mut e = engine();
    inside(&mut e, pbx_invite());
    let out = sent(&mut e);
    let inv = parse(out.iter().find(|t| t.side == Side::Outside).unwrap());
    let cancel = MessageBuilder::request(&Method::Cancel, "sip:+4930123456@10.0.0.1:5060")
        .header("Via", "SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bKpbx1")
        .header("From", "\"Desk 201\" <sip:201@10.0.0.10>;tag=pbxtag")
        .header("To", "<sip:+4930123456@10.0.0.1>")
        .header("Call-ID", "pbx-call-1@10.0.0.10")
        .header("CSeq", "1 CANCEL")
        .build();
    inside(&mut e, cancel);
    let out = sent(&mut e);
    let codes: Vec<u16> = out
        .iter()
        .filter(|t| t.side == Side::Inside)
        .filter_map(|t| parse(t).status())
        .collect();
    assert!(codes.contains(&200) && codes.contains(&487), "{codes:?}");
    let outside_cancel = out
        .iter()
        .find(|t| t.side == Side::Outside)
        .expect("CANCEL outside");
    let oc = parse(outside_cancel);
    assert_eq!(oc.method(), Some(&Method::Cancel));
    assert_eq!(
        oc.vias().unwrap()[0].branch(),
        inv.vias().unwrap()[0].branch(),
        "CANCEL carries the INVITE's branch"
    );

    // A second call is refused outside with 486: the PBX gets 486 back.
    let mut e = engine();
    inside(&mut e, pbx_invite());
    let out = sent(&mut e);
    let inv = parse(out.iter().find(|t| t.side == Side::Outside).unwrap());
    outside(
        &mut e,
        MessageBuilder::response_to(&inv, 486, Some("p2")).build(),
    );
    let out = sent(&mut e);
    let busy = out
        .iter()
        .find(|t| t.side == Side::Inside)
        .expect("486 to the PBX");
    assert_eq!(parse(busy).status(), Some(486));
    let ack = out
        .iter()
        .find(|t| t.side == Side::Outside)
        .expect("ACK outside");
    assert_eq!(
        parse(ack).vias().unwrap()[0].branch(),
        inv.vias().unwrap()[0].branch()
    );
}

#[test]
fn without_an_outside_next_hop_the_pbx_gets_404() {
    let mut e = Engine::new(EngineConfig::default());
    inside(&mut e, pbx_invite());
    let out = sent(&mut e);
    let codes: Vec<u16> = out.iter().filter_map(|t| parse(t).status()).collect();
    assert_eq!(codes, vec![100, 404], "cause 3 (no route) maps to 404");
}
