//! Translation conformance for H.323, as insta snapshots in `snapshots/translation/`:
//! - SIP → Meta → H.323: the SIP INVITEs of `testdata/sip/messages` with an H.323 inside, IPv4
//!   and IPv6 (GW1's Setup with fastStart in the inside family);
//! - H.323 → Meta → SIP: fastStart Setups from IPv4 and IPv6 callers and a captured Setup, with a
//!   SIP inside in both families, the PBX's 200 OK, and GW2's Connect with the fastStart answer.
//!
//! Each case also asserts topology hiding: no outside address (as text or as the octets in a
//! PER-encoded transport address) reaches the inside.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::meta::{self, Codec, Direction, MediaDescription, MediaKind, Party, StreamId};
use codecs::sip::{self, MessageBuilder};
use codecs::{h225, h245, q931};
use sgw::engine::{
    ConnId, Engine, EngineConfig, Event, Family, Flow, InsideProtocol, Side, Transport,
};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\n")
}

fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A readable account of one TPKT/Q.931/H.225.0 message.
fn render_h225(payload: &[u8]) -> String {
    let mut o = String::new();
    let q = payload.get(codecs::tpkt::HEADER_LEN..).unwrap();
    let msg = q931::Message::decode(q).unwrap();
    msg.check_mandatory().unwrap();
    let _ = writeln!(
        o,
        "Q.931 {} call ref {} (from destination: {})",
        msg.msg_type.name(),
        msg.call_ref.value,
        msg.call_ref.from_destination
    );
    for ie in &msg.ies {
        if !matches!(ie, q931::Ie::UserUser(_)) {
            let _ = writeln!(o, "  {ie:?}");
        }
    }
    let uu = h225::user_information(&msg).unwrap();
    let pdu = &uu.h323_uu_pdu;
    let _ = writeln!(
        o,
        "  H.225.0 {} h245Tunnelling={} h245Address={:?} callIdentifier={}",
        h225::body_name(&pdu.h323_message_body),
        h225::h245_tunnelling(pdu),
        h225::h245_address(pdu),
        h225::call_identifier(pdu)
            .map(|g| g.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .unwrap_or_default()
    );
    if let h225::asn::H323UUPDUH323MessageBody::setup(s) = &pdu.h323_message_body {
        let _ = writeln!(o, "  sourceAddress={:?}", s.source_address);
        let _ = writeln!(o, "  destinationAddress={:?}", s.destination_address);
    }
    if let Some(fs) = h225::fast_start(pdu) {
        for olc in h225::fast_start_olcs(fs).unwrap() {
            let _ = writeln!(o, "  fastStart {:?}", h245::olc_media(&olc));
        }
    }
    o
}

fn drain(e: &mut Engine, out: &mut String) -> Vec<(Side, Flow, Bytes, sgw::engine::Protocol)> {
    while let Some(ev) = e.poll_event() {
        if let Event::Meta { to_gw1, message } = ev {
            let _ = writeln!(
                out,
                "--- Meta {} ---\n{message:#?}",
                if to_gw1 { "GW2 -> GW1" } else { "GW1 -> GW2" }
            );
        }
    }
    let mut sent = Vec::new();
    while let Some(t) = e.poll_transmit() {
        let side = match t.side {
            Side::Inside => "inside",
            Side::Outside => "outside",
        };
        let body = match t.protocol {
            sgw::engine::Protocol::H225 => render_h225(&t.payload),
            _ => text(&t.payload),
        };
        let _ = writeln!(
            out,
            "--- {side}: {} -> {} ---\n{body}",
            t.flow.local, t.flow.remote
        );
        sent.push((t.side, t.flow, t.payload.clone(), t.protocol));
    }
    sent
}

fn assert_hidden(
    name: &str,
    outside: &[IpAddr],
    inside: &[(Side, Flow, Bytes, sgw::engine::Protocol)],
) {
    for (side, flow, payload, _) in inside {
        if *side != Side::Inside {
            continue;
        }
        for ip in outside {
            assert_ne!(flow.remote.ip(), *ip, "{name}");
            assert!(
                !text(payload).contains(&ip.to_string()),
                "{name}: {ip} leaked"
            );
            let oct = ip_octets(*ip);
            assert!(
                !payload.windows(oct.len()).any(|w| w == oct.as_slice()),
                "{name}: {ip} leaked as octets"
            );
        }
    }
}

fn sip_inputs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("testdata/sip/messages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("invite")
        })
        .collect();
    v.sort();
    v
}

fn sip_to_h323(path: &Path, family: Family) -> String {
    let data = std::fs::read(path).unwrap();
    let (msg, _) = sip::parse_datagram(Bytes::from(data.clone())).unwrap();
    let via = &msg.vias().unwrap()[0];
    let peer = match via.ip {
        Some(ip) => SocketAddr::new(ip, via.port.unwrap_or(5060)),
        None => "192.0.2.1:5060".parse().unwrap(),
    };
    let gw2: SocketAddr = match peer {
        SocketAddr::V4(_) => "198.51.100.1:5060".parse().unwrap(),
        SocketAddr::V6(_) => "[2001:db8:5357::1]:5060".parse().unwrap(),
    };
    let mut cfg = EngineConfig {
        inside_family: Some(family),
        inside_protocol: Some(InsideProtocol::H323),
        ..EngineConfig::default()
    };
    // The PBX's H.225.0 address ([gw1] next_hop with protocol = "h323").
    cfg.inside_v4.next_hop.set_port(1720);
    cfg.inside_v6.next_hop.set_port(1720);
    let mut e = Engine::new(cfg);
    let mut out = String::new();
    e.handle_datagram(
        Duration::ZERO,
        Flow {
            transport: Transport::Udp,
            local: gw2,
            remote: peer,
        },
        Bytes::from(data),
    );
    let sent = drain(&mut e, &mut out);
    let setup = sent
        .iter()
        .find(|(s, _, _, p)| *s == Side::Inside && *p == sgw::engine::Protocol::H225)
        .expect("GW1 sent a Setup");
    let want = match family {
        Family::V4 => "10.0.0.10:1720",
        Family::V6 => "[fd00:5357::10]:1720",
    };
    assert_eq!(setup.1.remote.to_string(), want);
    // Outside addresses from Via and SDP must not reach the inside.
    let mut outside = vec![peer.ip()];
    for line in text(&msg.body()).lines() {
        if let Some(rest) = line
            .strip_prefix("c=IN IP4 ")
            .or(line.strip_prefix("c=IN IP6 "))
        {
            if let Ok(ip) = rest.trim().parse() {
                outside.push(ip);
            }
        }
    }
    assert_hidden(&path.display().to_string(), &outside, &sent);
    out
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

/// An outside caller's Setup (TPKT-framed) with fastStart from `rtp`.
fn caller_setup(rtp: SocketAddr) -> Vec<u8> {
    let media = vec![MediaDescription {
        stream: Some(StreamId(2)),
        kind: MediaKind::Audio,
        direction: Direction::SendRecv,
        codecs: vec![codec(8, "PCMA"), codec(0, "PCMU"), codec(18, "G729")],
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
    let fs = translators::h323::fast_start_offer(&media, rtp).unwrap();
    let q = translators::h323::setup_message(&setup, &ids, fs)
        .unwrap()
        .to_vec()
        .unwrap();
    let mut out = Vec::new();
    codecs::tpkt::encode(&q, &mut out).unwrap();
    out
}

/// A captured Setup (ndpi-h323 frame 6) in a Q.931 Setup with its numbers.
fn captured_setup() -> Vec<u8> {
    let text =
        std::fs::read_to_string(root().join("h323-asn1/testdata/h225/ndpi-h323-f6-setup.hex"))
            .unwrap();
    let text = text.trim();
    let uu: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    let q = q931::Message::setup(
        q931::CallRef::new(1),
        q931::BearerCapability::speech(q931::Layer1Protocol::G711Ulaw),
        uu,
    )
    .with_calling_number(q931::PartyNumber::e164("5295672"))
    .with_called_number(q931::PartyNumber::e164("9246526"))
    .to_vec()
    .unwrap();
    let mut out = Vec::new();
    codecs::tpkt::encode(&q, &mut out).unwrap();
    out
}

fn h323_to_sip(setup: &[u8], caller: SocketAddr, family: Family) -> String {
    let gw2: SocketAddr = match caller {
        SocketAddr::V4(_) => "198.51.100.1:1720".parse().unwrap(),
        SocketAddr::V6(_) => "[2001:db8:5357::1]:1720".parse().unwrap(),
    };
    let mut e = Engine::new(EngineConfig {
        inside_family: Some(family),
        inside_protocol: Some(InsideProtocol::Sip),
        ..EngineConfig::default()
    });
    let mut out = String::new();
    let flow = Flow {
        transport: Transport::Tcp,
        local: gw2,
        remote: caller,
    };
    e.handle_stream(Duration::ZERO, ConnId(1), flow, setup);
    let mut sent = drain(&mut e, &mut out);
    if !sent.iter().any(|(s, _, _, _)| *s == Side::Inside) {
        // A Setup without fastStart waits for the caller's H.245 capabilities; this caller
        // sends none, so GW2 offers its own codecs when the wait ends.
        e.handle_timeout(sgw::engine::H323_CAPABILITIES_WAIT);
        sent.extend(drain(&mut e, &mut out));
    }
    assert_hidden("h323", &[caller.ip()], &sent);
    let (_, inside_flow, invite, _) = sent
        .iter()
        .find(|(s, _, p, _)| *s == Side::Inside && p.starts_with(b"INVITE "))
        .expect("GW1 sent an INVITE")
        .clone();
    let (inv, _) = sip::parse_datagram(invite).unwrap();
    let pbx_ip = inside_flow.remote.ip();
    let v = if pbx_ip.is_ipv4() { "IP4" } else { "IP6" };
    let sdp = format!(
        "v=0\r\no=pbx 1 1 IN {v} {pbx_ip}\r\ns=-\r\nc=IN {v} {pbx_ip}\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    );
    let body = if inv.body().is_empty() {
        None
    } else {
        Some(sdp)
    };
    let mut b = MessageBuilder::response_to(&inv, 200, Some("pbx-tag-1"))
        .header("Contact", format!("<sip:pbx@{}>", inside_flow.remote));
    if let Some(sdp) = body {
        b = b.body("application/sdp", sdp.into_bytes());
    }
    let _ = writeln!(out, "==> inside: PBX answers 200 OK");
    e.handle_inside_datagram(Duration::from_millis(500), inside_flow, b.build());
    drain(&mut e, &mut out);
    out
}

#[test]
fn h323_translation_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/snapshots/translation"
    ));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        let families = [(Family::V4, "v4"), (Family::V6, "v6")];
        for path in sip_inputs() {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            for (family, tag) in families {
                let t = sip_to_h323(&path, family);
                insta::assert_snapshot!(format!("{stem}.inside-h323-{tag}"), t);
            }
        }
        let v4: SocketAddr = "192.0.2.10:11720".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::10]:11720".parse().unwrap();
        let cases = [
            (
                "h323-setup-faststart-ipv4",
                caller_setup("192.0.2.10:5000".parse().unwrap()),
                v4,
            ),
            (
                "h323-setup-faststart-ipv6",
                caller_setup("[2001:db8::10]:5000".parse().unwrap()),
                v6,
            ),
            ("h323-setup-ndpi-f6", captured_setup(), v4),
        ];
        for (name, setup, caller) in cases {
            for (family, tag) in families {
                let t = h323_to_sip(&setup, caller, family);
                insta::assert_snapshot!(format!("{name}.inside-sip-{tag}"), t);
            }
        }
    });
}

/// An H.225.0 Setup over a source's call rate is released with Release Complete, cause 42
/// (switching equipment congestion), and never reaches the inside.
#[test]
fn setups_over_the_source_call_rate_get_cause_42() {
    let mut e = Engine::new(EngineConfig {
        inside_protocol: Some(InsideProtocol::Sip),
        limits: sgw::engine::LimitsConfig {
            source_calls_per_second: 1,
            source_calls_burst: 1,
            ..Default::default()
        },
        ..EngineConfig::default()
    });
    let caller: SocketAddr = "192.0.2.9:40000".parse().unwrap();
    let gw2: SocketAddr = "198.51.100.1:1720".parse().unwrap();
    let mut reasons = Vec::new();
    let mut inside_invites = 0;
    for conn in 1..=2u64 {
        let flow = Flow {
            transport: Transport::Tcp,
            local: gw2,
            remote: SocketAddr::new(caller.ip(), 40000 + conn as u16),
        };
        let rtp = SocketAddr::new(caller.ip(), 6000 + 2 * conn as u16);
        e.handle_stream(
            Duration::from_secs(1),
            ConnId(conn),
            flow,
            &caller_setup(rtp),
        );
        while let Some(t) = e.poll_transmit() {
            if t.side == Side::Inside && t.payload.starts_with(b"INVITE ") {
                inside_invites += 1;
            }
        }
        while let Some(ev) = e.poll_event() {
            if let sgw::engine::Event::Report(r) = ev {
                if let Some(why) = r.reason {
                    reasons.push(why);
                }
            }
        }
    }
    assert_eq!(inside_invites, 1, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("source call rate exceeded") && r.contains("cause 42")),
        "{reasons:?}"
    );
    assert_eq!(e.stats().limits.refused_source_calls, 1);
}

/// Q.931 clause 5.8 on a call GW2 holds: a Status Enquiry (GNU Gatekeeper polls calls so) is
/// answered with Status, cause 30 and the call's state; a Facility missing its mandatory
/// User-user IE gets Status, cause 96, and the call goes on (no Release Complete, no BYE
/// inside). A Status Enquiry for no call gets the Null state.
#[test]
fn status_enquiry_is_answered_and_a_malformed_message_keeps_the_call() {
    let mut e = Engine::new(EngineConfig {
        inside_protocol: Some(InsideProtocol::Sip),
        ..EngineConfig::default()
    });
    let flow = Flow {
        transport: Transport::Tcp,
        local: "198.51.100.1:1720".parse().unwrap(),
        remote: "192.0.2.9:40000".parse().unwrap(),
    };
    e.handle_stream(
        Duration::ZERO,
        ConnId(1),
        flow,
        &caller_setup("192.0.2.9:6000".parse().unwrap()),
    );
    let mut ignore = String::new();
    drain(&mut e, &mut ignore);
    let tpkt = |m: q931::Message| {
        let mut out = Vec::new();
        codecs::tpkt::encode(&m.to_vec().unwrap(), &mut out).unwrap();
        out
    };
    // The answers to the caller, as (cause, call state), and what went inside.
    let answers = |e: &mut Engine, bytes: Vec<u8>, at: u64| {
        e.handle_stream(Duration::from_millis(at), ConnId(1), flow, &bytes);
        let sent = drain(e, &mut String::new());
        let inside: Vec<String> = sent
            .iter()
            .filter(|(s, ..)| *s == Side::Inside)
            .map(|(_, _, p, _)| text(p).lines().next().unwrap_or("").to_owned())
            .collect();
        let outside: Vec<(q931::MessageType, Option<u8>, Option<u8>)> = sent
            .iter()
            .filter(|(s, ..)| *s == Side::Outside)
            .map(|(_, _, p, _)| {
                let m = q931::Message::decode(&p[4..]).unwrap();
                (
                    m.msg_type,
                    m.cause().map(|c| c.value()),
                    m.call_state().map(|s| s.state),
                )
            })
            .collect();
        (outside, inside)
    };
    let cr = q931::CallRef::new(0x1234);
    let (out, inside) = answers(&mut e, tpkt(q931::Message::status_enquiry(cr)), 100);
    assert_eq!(
        out,
        vec![(
            q931::MessageType::Status,
            Some(30),
            Some(q931::CallState::INCOMING_CALL_PROCEEDING)
        )]
    );
    assert!(inside.is_empty(), "{inside:?}");
    let facility = q931::Message::new(q931::MessageType::Facility, cr);
    let (out, inside) = answers(&mut e, tpkt(facility), 200);
    assert_eq!(
        out,
        vec![(
            q931::MessageType::Status,
            Some(96),
            Some(q931::CallState::INCOMING_CALL_PROCEEDING)
        )]
    );
    assert!(inside.is_empty(), "the call was cleared inside: {inside:?}");
    assert_eq!(e.stats().calls_live, 1);
    let (out, _) = answers(
        &mut e,
        tpkt(q931::Message::status_enquiry(q931::CallRef::new(0x777))),
        300,
    );
    assert_eq!(
        out,
        vec![(
            q931::MessageType::Status,
            Some(30),
            Some(q931::CallState::NULL)
        )]
    );
}

/// The inside answers with a codec the caller's fastStart did not offer: GW2 runs no H.245 to
/// open another channel, so instead of a Connect without audio the call is released both
/// ways, cause 88 (incompatible destination): Release Complete outside, ACK and BYE inside.
#[test]
fn an_answer_matching_no_fast_start_channel_is_released_with_cause_88() {
    let mut e = Engine::new(EngineConfig {
        inside_protocol: Some(InsideProtocol::Sip),
        ..EngineConfig::default()
    });
    let caller: SocketAddr = "192.0.2.9:40000".parse().unwrap();
    let flow = Flow {
        transport: Transport::Tcp,
        local: "198.51.100.1:1720".parse().unwrap(),
        remote: caller,
    };
    e.handle_stream(
        Duration::ZERO,
        ConnId(1),
        flow,
        &caller_setup("192.0.2.9:6000".parse().unwrap()),
    );
    let sent = drain(&mut e, &mut String::new());
    let (_, inside_flow, invite, _) = sent
        .iter()
        .find(|(s, _, p, _)| *s == Side::Inside && p.starts_with(b"INVITE "))
        .expect("GW1 sent an INVITE")
        .clone();
    let (inv, _) = sip::parse_datagram(invite).unwrap();
    let pbx_ip = inside_flow.remote.ip();
    let v = if pbx_ip.is_ipv4() { "IP4" } else { "IP6" };
    let sdp = format!(
        "v=0\r\no=pbx 1 1 IN {v} {pbx_ip}\r\ns=-\r\nc=IN {v} {pbx_ip}\r\nt=0 0\r\n\
         m=audio 16384 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n"
    );
    let ok = MessageBuilder::response_to(&inv, 200, Some("pbx-tag-1"))
        .header("Contact", format!("<sip:pbx@{}>", inside_flow.remote))
        .body("application/sdp", sdp.into_bytes())
        .build();
    e.handle_inside_datagram(Duration::from_millis(500), inside_flow, ok);
    let sent = drain(&mut e, &mut String::new());
    let outside: Vec<(q931::MessageType, Option<u8>)> = sent
        .iter()
        .filter(|(s, ..)| *s == Side::Outside)
        .map(|(_, _, p, _)| {
            let m = q931::Message::decode(&p[4..]).unwrap();
            (m.msg_type, m.cause().map(|c| c.value()))
        })
        .collect();
    assert_eq!(
        outside,
        vec![(q931::MessageType::ReleaseComplete, Some(88))],
        "no Connect without audio"
    );
    let inside: Vec<String> = sent
        .iter()
        .filter(|(s, ..)| *s == Side::Inside)
        .map(|(_, _, p, _)| text(p).lines().next().unwrap_or("").to_owned())
        .collect();
    assert!(
        inside.iter().any(|l| l.starts_with("ACK "))
            && inside.iter().any(|l| l.starts_with("BYE ")),
        "{inside:?}"
    );
}

/// GW2's H.245 timers sit in one ordered structure with the engine's others: a caller without
/// fastStart that never answers GW2's H.245 requests is released when their timer (15 s) runs
/// out, with cause 102, and the engine's next deadline says when.
#[test]
fn unanswered_h245_requests_release_the_call_with_cause_102() {
    let caller: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let mut e = Engine::new(EngineConfig {
        inside_family: Some(Family::V4),
        inside_protocol: Some(InsideProtocol::Sip),
        ..EngineConfig::default()
    });
    let flow = Flow {
        transport: Transport::Tcp,
        local: "198.51.100.1:1720".parse().unwrap(),
        remote: caller,
    };
    let mut out = String::new();
    e.handle_stream(Duration::ZERO, ConnId(1), flow, &captured_setup());
    drain(&mut e, &mut out);
    // The held Setup's wait is the first deadline; then the H.245 requests' timer.
    assert_eq!(e.poll_timeout(), Some(sgw::engine::H323_CAPABILITIES_WAIT));
    e.handle_timeout(sgw::engine::H323_CAPABILITIES_WAIT);
    let sent = drain(&mut e, &mut out);
    assert!(
        sent.iter()
            .any(|(s, _, p, _)| *s == Side::Inside && p.starts_with(b"INVITE ")),
        "{out}"
    );
    // Step from deadline to deadline (SIP retransmissions inside come in between): the caller
    // is released at the H.245 timer, 15 s after GW2's requests, and not before.
    let mut released_at = None;
    while let Some(due) = e.poll_timeout().filter(|d| *d <= Duration::from_secs(20)) {
        out.clear();
        e.handle_timeout(due);
        drain(&mut e, &mut out);
        if out.contains("Q.931 Release Complete") {
            assert!(out.contains("cause_value: 102"), "{out}");
            assert!(out.contains("Reason: Q.850;cause=102"), "{out}");
            released_at = Some(due);
            break;
        }
    }
    assert_eq!(released_at, Some(Duration::from_secs(15)), "{out}");
}
