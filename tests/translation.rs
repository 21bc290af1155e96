//! Translation conformance: outside SIP -> Meta -> inside SIP for IPv4 and IPv6 inside
//! networks, then the inside answer back to the outside, as insta snapshots in `snapshots/`.
//! Each case also asserts topology hiding: nothing of the outside message reaches the inside.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::sip::{self, MessageBuilder};
use sgw::engine::{Engine, EngineConfig, Event, Family, Flow, Side, Transport};
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("testdata/sip/messages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .collect();
    for f in ["ipv6-in-sdp", "mult-ip-in-sdp", "ipv4-mapped-ipv6"] {
        v.push(root.join("../shared/corpora/rfc5118").join(f));
    }
    v.sort();
    v
}

/// The outside peer: the top Via's address when it is an IP, so the outside family follows
/// the message.
fn outside_peer(msg: &sip::Message) -> SocketAddr {
    let via = &msg.vias().unwrap()[0];
    match via.ip {
        Some(ip) => SocketAddr::new(ip, via.port.unwrap_or(5060)),
        None => "192.0.2.1:5060".parse().unwrap(),
    }
}

fn gw2_addr(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => "198.51.100.1:5060".parse().unwrap(),
        SocketAddr::V6(_) => "[2001:db8:5357::1]:5060".parse().unwrap(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\n")
}

/// Every string of the outside message that must not reach the inside.
fn outside_secrets(msg: &sip::Message) -> Vec<String> {
    let mut s = vec![msg.call_id().unwrap().to_owned()];
    if let Some(t) = msg.from().unwrap().tag() {
        s.push(t.to_owned());
    }
    for v in msg.vias().unwrap() {
        s.push(v.host.trim_matches(['[', ']']).to_owned());
        if let Some(b) = v.branch() {
            s.push(b.to_owned());
        }
    }
    for c in msg.contacts().unwrap() {
        if let Some(h) = &c.uri.host {
            s.push(h.trim_matches(['[', ']']).to_owned());
        }
    }
    if let Some(h) = &msg.from().unwrap().uri.host {
        s.push(h.trim_matches(['[', ']']).to_owned());
    }
    let body = text(&msg.body());
    for line in body.lines() {
        if let Some(rest) = line
            .strip_prefix("c=IN IP4 ")
            .or(line.strip_prefix("c=IN IP6 "))
        {
            s.push(rest.trim().to_owned());
        }
    }
    s.retain(|x| x.len() > 3);
    s
}

fn run(path: &Path, family: Family) -> String {
    let data = std::fs::read(path).unwrap();
    let (msg, _) = sip::parse_datagram(Bytes::from(data.clone())).unwrap();
    let peer = outside_peer(&msg);
    let flow = Flow {
        transport: Transport::Udp,
        local: gw2_addr(peer),
        remote: peer,
    };
    let mut e = Engine::new(EngineConfig {
        inside_family: Some(family),
        ..EngineConfig::default()
    });
    let mut out = String::new();
    let mut inside_invite = None;
    e.handle_datagram(Duration::ZERO, flow, Bytes::from(data));
    drain(&mut e, &mut out, &mut inside_invite);

    // Topology hiding: the inside sees none of the outside's identifiers or addresses.
    let (inside_flow, invite) = inside_invite.clone().expect("GW1 sent an INVITE");
    let inside_text = text(&invite);
    for secret in outside_secrets(&msg) {
        assert!(
            !inside_text.contains(&secret),
            "{}: '{secret}' leaked to the inside:\n{inside_text}",
            path.display()
        );
    }

    // The PBX answers 200 OK with its own SDP; GW1 relays it back as Meta.
    let (inv, _) = sip::parse_datagram(invite).unwrap();
    let pbx_ip = inside_flow.remote.ip();
    let pbx_sdp = match pbx_ip {
        std::net::IpAddr::V4(_) => format!("v=0\r\no=pbx 1 1 IN IP4 {pbx_ip}\r\ns=-\r\nc=IN IP4 {pbx_ip}\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"),
        std::net::IpAddr::V6(_) => format!("v=0\r\no=pbx 1 1 IN IP6 {pbx_ip}\r\ns=-\r\nc=IN IP6 {pbx_ip}\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"),
    };
    let media_count = text(&inv.body()).matches("m=").count();
    let mut pbx_sdp = pbx_sdp;
    for _ in 1..media_count {
        pbx_sdp.push_str("m=video 0 RTP/AVP 96\r\n");
    }
    let ok = MessageBuilder::response_to(&inv, 200, Some("pbx-tag-1"))
        .header("Contact", format!("<sip:pbx@{}>", inside_flow.remote))
        .body("application/sdp", pbx_sdp.into_bytes())
        .build();
    let from_pbx = Flow {
        transport: Transport::Udp,
        local: inside_flow.local,
        remote: inside_flow.remote,
    };
    let _ = writeln!(out, "==> inside: PBX answers 200 OK");
    e.handle_inside_datagram(Duration::from_millis(500), from_pbx, ok);
    drain(&mut e, &mut out, &mut inside_invite);
    out
}

fn drain(e: &mut Engine, out: &mut String, invite: &mut Option<(Flow, Bytes)>) {
    while let Some(ev) = e.poll_event() {
        if let Event::Meta { to_gw1, message } = ev {
            let _ = writeln!(
                out,
                "--- Meta {} ---\n{message:#?}",
                if to_gw1 { "GW2 -> GW1" } else { "GW1 -> GW2" }
            );
        }
    }
    while let Some(t) = e.poll_transmit() {
        let side = match t.side {
            Side::Inside => "inside",
            Side::Outside => "outside",
        };
        let _ = writeln!(
            out,
            "--- {side}: {} -> {} ---\n{}",
            t.flow.local,
            t.flow.remote,
            text(&t.payload)
        );
        if t.side == Side::Inside && t.payload.starts_with(b"INVITE ") && invite.is_none() {
            *invite = Some((t.flow, t.payload.clone()));
        }
    }
}

#[test]
fn translation_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/snapshots/translation"
    ));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for path in inputs() {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            for (family, tag) in [(Family::V4, "inside-v4"), (Family::V6, "inside-v6")] {
                let transcript = run(&path, family);
                insta::assert_snapshot!(format!("{stem}.{tag}"), transcript);
            }
        }
    });
}
