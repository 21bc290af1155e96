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

// ---- identifiers -----------------------------------------------------------------------------

/// GW1's Call-ID, tags and branch toward the inside, and GW2's tag to the caller, for one call.
fn identifiers(config: EngineConfig) -> Vec<String> {
    let mut e = Engine::new(config);
    e.handle_datagram(Duration::ZERO, udp(GW2, caller()), invite());
    let inv = requests(&drain(&mut e), Side::Inside, Method::Invite)
        .pop()
        .unwrap();
    e.handle_inside_datagram(Duration::ZERO, udp(GW1, a(PROXY)), pbx_ok(&inv));
    let ok = drain(&mut e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .map(sip_of)
        .find(|m| m.status() == Some(200))
        .unwrap();
    vec![
        inv.call_id().unwrap().to_owned(),
        inv.from().unwrap().tag().unwrap().to_owned(),
        inv.vias().unwrap()[0].branch().unwrap().to_owned(),
        ok.to().unwrap().tag().unwrap().to_owned(),
    ]
}

/// Replay and tests: the seeded generator gives the same identifiers every run. Live (a key
/// from the OS): identifiers differ from the seeded ones and between two gateways with the same
/// seed, so the seed does not predict them.
#[test]
fn live_identifiers_come_from_the_os_key_not_the_seed() {
    let seeded = || EngineConfig {
        id_seed: 7,
        ..EngineConfig::default()
    };
    assert_eq!(identifiers(seeded()), identifiers(seeded()));
    let live = || EngineConfig {
        id_key: Some(sgw::engine::ids::IdKey::from_os().unwrap()),
        ..seeded()
    };
    let (a1, a2, s) = (
        identifiers(live()),
        identifiers(live()),
        identifiers(seeded()),
    );
    for i in 0..a1.len() {
        assert_ne!(a1[i], s[i], "identifier {i} follows the seed");
        assert_ne!(a1[i], a2[i], "identifier {i} repeats across keys");
    }
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

/// A copy of a request's branch from another host is absorbed as a retransmission, but the
/// last response goes only to the host the request came from.
#[test]
fn a_retransmission_from_another_host_gets_no_response() {
    let mut e = engine();
    e.handle_datagram(Duration::ZERO, udp(GW2, caller()), invite());
    assert_eq!(statuses(&drain(&mut e), Side::Outside), [100]);
    e.handle_datagram(Duration::ZERO, udp(GW2, a("192.0.2.66:5001")), invite());
    assert!(drain(&mut e).is_empty());
    e.handle_datagram(Duration::ZERO, udp(GW2, caller()), invite());
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [100]);
    assert_eq!(out[0].flow.remote, caller());
    assert_eq!(e.stats().calls_live, 1);
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

/// An outside caller's Setup (TPKT-framed) whose Display IE is `display` (any bytes).
fn h323_setup_with_display(display: &[u8]) -> Vec<u8> {
    let q = h225::setup_q931(&h225::SetupSpec {
        display: Some("Caller"),
        codec: (0, "PCMU"),
        call_ref: 0x1234,
        ..h225::SetupSpec::new(a("192.0.2.8:7000"))
    });
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
    h225::tpkt(&q2)
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

// ---- live: `sgw run --role both` on loopback -------------------------------------------------

mod support;

use std::net::UdpSocket;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use support::h225;
use support::rawsip::{self, InsideUas, RawCall};
use support::{free_tcp_port, free_udp_port, sgw, Proc, Scratch};

static SERIAL: Mutex<()> = Mutex::new(());

/// The live tests share two cores: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running `sgw run --config --role both` whose GW1 next hop is `inside`.
struct Gateway {
    p: Proc,
    sip: SocketAddr,
    _dir: Scratch,
}

impl Gateway {
    fn start(name: &str, inside: SocketAddr, media: u16) -> Gateway {
        let dir = Scratch::new(name);
        let (sip, tunnel, gw1) = (
            free_udp_port("127.0.0.1"),
            free_tcp_port("127.0.0.1"),
            free_udp_port("127.0.0.1"),
        );
        let text = format!(
            r#"[gw2]
sip_udp = ["127.0.0.1:{sip}"]
tunnel_listen = "127.0.0.1:{tunnel}"

[gw2.media]
ip = "127.0.0.1"
port_min = {}
port_max = {}

[gw1]
tunnel = "127.0.0.1:{tunnel}"
tunnel_server_name = "127.0.0.1"
sip_bind = "127.0.0.1:{gw1}"
next_hop = "{inside}"
family = "ipv4"
transport = "udp"

[gw1.media]
ip = "127.0.0.1"
port_min = {}
port_max = {}
"#,
            media,
            media + 99,
            media + 100,
            media + 199,
        );
        let cfg = dir.file("sgw.toml", &text);
        let mut p = Proc::spawn(
            name,
            sgw()
                .arg("run")
                .arg("--config")
                .arg(&cfg)
                .args(["--role", "both"]),
        );
        p.wait_line("gw1 sip", Duration::from_secs(30));
        p.wait_line("gw1: tunnel up", Duration::from_secs(30));
        p.wait_line("gw2: tunnel up", Duration::from_secs(30));
        Gateway {
            p,
            sip: SocketAddr::from(([127, 0, 0, 1], sip)),
            _dir: dir,
        }
    }

    fn stop(&mut self) -> (serde_json::Value, serde_json::Value) {
        self.p.terminate(Duration::from_secs(20));
        (self.p.stats("gw2"), self.p.stats("gw1"))
    }
}

/// Sends `req` from `sock` to `to` and waits (bounded) for a response to it; its status.
fn ask(sock: &UdpSocket, to: SocketAddr, req: &str, wait: Duration) -> Option<u16> {
    sock.send_to(req.as_bytes(), to).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if let Some(s) = rawsip::status(&text).filter(|s| *s >= 200) {
                return Some(s);
            }
        }
    }
    None
}

/// The counter `name` of a `stats` half's SIP leg (`sip_outside` or `sip_inside`).
fn leg_counter(stats: &serde_json::Value, leg: &str, name: &str) -> u64 {
    let v = stats
        .pointer(&format!("/engine/{leg}/{name}"))
        .or_else(|| stats.pointer(&format!("/{leg}/{name}")));
    v.and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no {leg}.{name} in {stats}"))
}

/// Acceptance: a BYE with the call's Call-ID and both tags, from the caller's IP on another
/// port and from another loopback address, gets 481 and the call stays up (the inside sees no
/// BYE); the caller's own BYE then ends it.
#[test]
fn live_spoofed_bye_is_refused_and_the_call_stays_up() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = Gateway::start("integ-bye", uas.sip, 42_000);
    let mut call = RawCall::invite(
        gw.sip,
        "127.0.0.3",
        &format!("sip:2001@{}", gw.sip),
        "Alice",
        Duration::from_secs(10),
    )
    .expect("the call is answered");
    let media = call.start_media();
    std::thread::sleep(Duration::from_millis(300));
    for (i, ip) in ["127.0.0.3", "127.0.0.4"].into_iter().enumerate() {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        let local = sock.local_addr().unwrap();
        let bye = rawsip::request(
            "BYE",
            &call.ruri,
            local,
            &call.call_id,
            &call.from,
            &call.to,
            10 + i as u32,
            &format!("z9hG4bKspoof{i}"),
            "",
            None,
        );
        let status = ask(&sock, gw.sip, &bye, Duration::from_secs(3));
        assert_eq!(status, Some(481), "spoofed BYE from {local}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(uas.log().byes, 0, "a spoofed BYE reached the inside");
    let (_, received_before) = media.peek();
    std::thread::sleep(Duration::from_millis(400));
    let (_, received_after) = media.peek();
    assert!(
        received_after > received_before,
        "media stopped flowing after the spoofed BYEs ({received_before} -> {received_after})"
    );
    media.stop();
    assert!(call.hangup(Duration::from_secs(5)), "the real BYE gets 200");
    let deadline = Instant::now() + Duration::from_secs(5);
    while uas.log().byes == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(uas.log().byes, 1, "the real BYE ends the call inside");
    let (gw2, _) = gw.stop();
    assert_eq!(leg_counter(&gw2, "sip_outside", "requests_wrong_source"), 2);
}

/// Acceptance: a 200 OK to GW1's INVITE sent from an address that is not the inside next hop
/// (its IP on another port, another loopback address on its port) is ignored: the caller gets
/// no 200 from it; the next hop's own 200 answers the call.
#[test]
fn live_200_from_elsewhere_than_the_next_hop_is_ignored() {
    let _serial = serial();
    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pbx_addr = pbx.local_addr().unwrap();
    let mut gw = Gateway::start("integ-200", pbx_addr, 42_200);
    let target = format!("sip:2001@{}", gw.sip);
    let gw_sip = gw.sip;
    let caller = std::thread::spawn(move || {
        let r = RawCall::invite(
            gw_sip,
            "127.0.0.3",
            &target,
            "Alice",
            Duration::from_secs(15),
        );
        (r.map(|c| c.call_id), Instant::now())
    });
    // GW1's INVITE.
    pbx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    let deadline = Instant::now() + Duration::from_secs(10);
    let (inv, gw1) = loop {
        assert!(Instant::now() < deadline, "no INVITE from GW1");
        if let Ok((n, from)) = pbx.recv_from(&mut buf) {
            let (m, _) = sip::parse_datagram(Bytes::copy_from_slice(&buf[..n])).unwrap();
            if m.method() == Some(&Method::Invite) {
                break (m, from);
            }
        }
    };
    let sdp = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n";
    let ok = MessageBuilder::response_to(&inv, 200, Some("pbx1"))
        .header("Contact", format!("<sip:pbx@{pbx_addr}>"))
        .body("application/sdp", Bytes::from(sdp))
        .build();
    // 100 Trying stops GW1's retransmissions.
    pbx.send_to(&MessageBuilder::response_to(&inv, 100, None).build(), gw1)
        .unwrap();
    let spoofers = [
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind(("127.0.0.5", pbx_addr.port())).unwrap(),
    ];
    for s in &spoofers {
        s.send_to(&ok, gw1).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !caller.is_finished(),
        "the caller's INVITE ended on a 200 that did not come from the next hop"
    );
    let real = Instant::now();
    pbx.send_to(&ok, gw1).unwrap();
    let (answered, at) = caller.join().unwrap();
    assert!(
        answered.is_ok(),
        "the real 200 answers the call: {answered:?}"
    );
    assert!(at >= real);
    // GW1 ACKs the real 200 at the next hop.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut acked = false;
    while !acked && Instant::now() < deadline {
        if let Ok((n, _)) = pbx.recv_from(&mut buf) {
            acked = buf[..n].starts_with(b"ACK ");
        }
    }
    assert!(acked, "GW1 ACKs the next hop's 200");
    let (_, gw1_stats) = gw.stop();
    assert_eq!(
        leg_counter(&gw1_stats, "sip_inside", "responses_wrong_source"),
        2
    );
}

/// Acceptance: an outside INVITE whose From display name carries a bare CR and an injected
/// header gets 400, and nothing reaches the inside.
#[test]
fn live_header_injection_from_outside_sip_gets_400() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = Gateway::start("integ-inj", uas.sip, 42_400);
    let sock = UdpSocket::bind("127.0.0.3:0").unwrap();
    let local = sock.local_addr().unwrap();
    for (i, display) in ["\"Alice\rX-Injected: yes\"", "\"Alice\\\0X-Injected: yes\""]
        .into_iter()
        .enumerate()
    {
        let req = rawsip::request(
            "INVITE",
            &format!("sip:2001@{}", gw.sip),
            local,
            &format!("inj-{i}@127.0.0.3"),
            &format!("{display} <sip:a@127.0.0.3>;tag=i{i}"),
            &format!("<sip:2001@{}>", gw.sip),
            1,
            &format!("z9hG4bKinj{i}"),
            "",
            Some(&rawsip::pcma_sdp(local)),
        );
        assert_eq!(ask(&sock, gw.sip, &req, Duration::from_secs(3)), Some(400));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(uas.log().invites, 0, "an INVITE reached the inside");
    gw.stop();
}
