//! The engine's live-driver interface, on virtual time with two engines (GW2 and GW1) joined
//! by an in-test tunnel, as quinn-proto tests its endpoints: tunnel keepalives and their
//! replies, 503 while the tunnel is down, media sockets through the driver's binder (opened when
//! the port is taken, closed at the end of the call; a port another program holds is skipped,
//! none free refuses the call), and RTP from the inside told from SIP by GW1's media ports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::meta::{self, Keepalive, Message};
use codecs::sip::{self, MessageBuilder};
use sgw::engine::{
    Binder, Engine, EngineConfig, Event, Family, Flow, InsideConfig, Role, Side, Transmit,
    Transport, TunnelOut, Verdict,
};
use std::net::SocketAddr;
use std::time::Duration;

const CALLER: &str = "192.0.2.7:5060";
const GW2: &str = "198.51.100.1:5060";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn invite() -> Bytes {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    Bytes::from(format!(
        "INVITE sip:service@198.51.100.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-live-1\r\n\
         From: sipp <sip:sipp@192.0.2.7:5060>;tag=caller1\r\n\
         To: <sip:service@198.51.100.1:5060>\r\n\
         Call-ID: live-test-1@192.0.2.7\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sipp@192.0.2.7:5060>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
}

fn outside_flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: a(GW2),
        remote: a(CALLER),
    }
}

fn engine(role: Role) -> Engine {
    let mut inside = InsideConfig::default_for(Family::V4);
    inside.media_ports = (30000, 30099);
    Engine::new(EngineConfig {
        role,
        inside_v4: inside,
        inside_family: Some(Family::V4),
        outside_media_ports: (20000, 20099),
        ..EngineConfig::default()
    })
}

fn transmits(e: &mut Engine) -> Vec<Transmit> {
    std::iter::from_fn(|| e.poll_transmit()).collect()
}

/// The media sockets an engine opened and closed, RTP and RTCP, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketRequest {
    Open { side: Side, local: SocketAddr },
    Close { side: Side, local: SocketAddr },
}

#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<SocketRequest>>>);

impl Binder for Recorder {
    fn open(&mut self, side: Side, rtp: SocketAddr) -> bool {
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port() + 1);
        let mut v = self.0.lock().unwrap();
        v.push(SocketRequest::Open { side, local: rtp });
        v.push(SocketRequest::Open { side, local: rtcp });
        true
    }
    fn close(&mut self, side: Side, rtp: SocketAddr) {
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port() + 1);
        let mut v = self.0.lock().unwrap();
        v.push(SocketRequest::Close { side, local: rtp });
        v.push(SocketRequest::Close { side, local: rtcp });
    }
}

fn recorded(e: &mut Engine) -> Recorder {
    let r = Recorder::default();
    e.set_binder(Box::new(r.clone()));
    r
}

fn sockets(r: &Recorder) -> Vec<SocketRequest> {
    std::mem::take(&mut *r.0.lock().unwrap())
}

fn status(t: &Transmit) -> Option<u16> {
    sip::parse_datagram(t.payload.clone()).ok()?.0.status()
}

/// Moves everything `from` has for the tunnel into `to`; returns the Meta messages moved.
fn shuttle(now: Duration, from: &mut Engine, to: &mut Engine) -> Vec<Message> {
    let mut moved = Vec::new();
    while let Some(t) = from.poll_tunnel() {
        match t {
            TunnelOut::Meta(frame) => {
                moved.push(meta::decode_frame(&frame).unwrap().1);
                to.handle_tunnel_meta(now, &frame).unwrap();
            }
            TunnelOut::Media { stream, rtcp, data } => {
                to.handle_tunnel_media(now, stream, rtcp, data)
            }
        }
    }
    moved
}

fn keepalive(seq: u32, reply: bool) -> Message {
    Message::Keepalive(Keepalive { seq, reply })
}

#[test]
fn keepalives_start_at_tunnel_up_repeat_when_idle_and_are_answered() {
    let (mut gw2, mut gw1) = (engine(Role::Gw2), engine(Role::Gw1));
    let t0 = Duration::from_secs(1);
    gw2.handle_tunnel_up(t0);
    gw1.handle_tunnel_up(t0);
    // Each side's first frame is a Keepalive (TUNNEL.md section 6); each answers the other's.
    assert_eq!(shuttle(t0, &mut gw1, &mut gw2), [keepalive(1, false)]);
    assert_eq!(
        shuttle(t0, &mut gw2, &mut gw1),
        [keepalive(1, false), keepalive(1, true)]
    );
    assert_eq!(shuttle(t0, &mut gw1, &mut gw2), [keepalive(1, true)]);
    // Quiet for the interval: the next keepalive is due.
    let due = gw1.poll_timeout().unwrap();
    assert_eq!(due, t0 + sgw::engine::DEFAULT_TUNNEL_KEEPALIVE);
    gw1.handle_timeout(due);
    assert_eq!(shuttle(due, &mut gw1, &mut gw2), [keepalive(2, false)]);
    assert_eq!(shuttle(due, &mut gw2, &mut gw1), [keepalive(2, true)]);
    // After the tunnel drops, no keepalive timer remains and sequence numbers restart.
    gw1.handle_tunnel_down(due);
    assert!(gw1.poll_timeout().is_none());
    assert!(!gw1.is_tunnel_up());
}

#[test]
fn gw2_refuses_calls_with_503_while_the_tunnel_is_down() {
    let mut gw2 = engine(Role::Gw2);
    let rec = recorded(&mut gw2);
    gw2.handle_datagram(Duration::ZERO, outside_flow(), invite());
    let codes: Vec<_> = transmits(&mut gw2).iter().filter_map(status).collect();
    // The admission chain refuses before anything is allocated: no 100, no port.
    assert_eq!(codes, [503]);
    assert!(gw2.poll_tunnel().is_none());
    assert_eq!(sockets(&rec), []);
    assert_eq!(gw2.stats().admission.refused_tunnel_down, 1);
}

#[test]
fn media_sockets_follow_the_call_and_inside_rtp_is_dispatched_by_port() {
    let (mut gw2, mut gw1) = (engine(Role::Gw2), engine(Role::Gw1));
    let (rec2, rec1) = (recorded(&mut gw2), recorded(&mut gw1));
    let t = Duration::from_secs(1);
    gw2.handle_tunnel_up(t);
    gw1.handle_tunnel_up(t);
    shuttle(t, &mut gw1, &mut gw2);
    shuttle(t, &mut gw2, &mut gw1);
    shuttle(t, &mut gw1, &mut gw2);

    gw2.handle_datagram(t, outside_flow(), invite());
    let outside_rtp = a("198.51.100.1:20000");
    assert_eq!(
        sockets(&rec2),
        [
            SocketRequest::Open {
                side: Side::Outside,
                local: outside_rtp
            },
            SocketRequest::Open {
                side: Side::Outside,
                local: a("198.51.100.1:20001")
            },
        ]
    );
    let moved = shuttle(t, &mut gw2, &mut gw1);
    assert!(matches!(moved.as_slice(), [Message::Setup(_)]), "{moved:?}");
    let inside_rtp = a("10.0.0.1:30000");
    assert_eq!(
        sockets(&rec1),
        [
            SocketRequest::Open {
                side: Side::Inside,
                local: inside_rtp
            },
            SocketRequest::Open {
                side: Side::Inside,
                local: a("10.0.0.1:30001")
            },
        ]
    );
    // The PBX answers GW1's INVITE.
    let sent = transmits(&mut gw1);
    let inv = sent.iter().find(|t| t.side == Side::Inside).unwrap();
    let (req, _) = sip::parse_datagram(inv.payload.clone()).unwrap();
    let pbx_rtp = a("10.0.0.10:7000");
    let sdp = "v=0\r\no=- 2 2 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
    let ok = MessageBuilder::response_to(&req, 200, Some("pbx"))
        .header("Contact", "<sip:pbx@10.0.0.10:5060>")
        .body("application/sdp", Bytes::from(sdp))
        .build();
    let inside = Flow {
        transport: Transport::Udp,
        local: inv.flow.local,
        remote: inv.flow.remote,
    };
    gw1.handle_inside_datagram(t, inside, ok);
    let moved = shuttle(t, &mut gw1, &mut gw2);
    assert!(
        moved.iter().any(|m| matches!(m, Message::Answer(_))),
        "{moved:?}"
    );
    let answered = transmits(&mut gw2);
    let ok200 = answered
        .iter()
        .find(|t| status(t) == Some(200))
        .expect("200 to the caller");
    let (ok200, _) = sip::parse_datagram(ok200.payload.clone()).unwrap();
    let gw2_tag = ok200.to().unwrap().tag().unwrap().to_owned();
    // GW1 acknowledged the PBX's answer.
    assert!(transmits(&mut gw1).iter().all(|t| t.side == Side::Inside));

    // RTP from the PBX to GW1's media port crosses the tunnel and leaves GW2's port for the
    // caller's media address.
    let rtp = Bytes::from_static(&[
        0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44, 0xff, 0xff,
    ]);
    let media_flow = Flow {
        transport: Transport::Udp,
        local: inside_rtp,
        remote: pbx_rtp,
    };
    gw1.handle_inside_datagram(t, media_flow, rtp.clone());
    assert!(transmits(&mut gw1).is_empty());
    shuttle(t, &mut gw1, &mut gw2);
    let out = transmits(&mut gw2);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].flow.local, outside_rtp);
    assert_eq!(out[0].flow.remote, a("192.0.2.7:6000"));
    assert_eq!(out[0].payload, rtp);

    // The caller hangs up: both halves close their media sockets.
    let bye = Bytes::from(
        "BYE sip:gw@198.51.100.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-live-2\r\n\
         From: sipp <sip:sipp@192.0.2.7:5060>;tag=caller1\r\n\
         To: <sip:service@198.51.100.1:5060>;tag=TAG\r\n\
         Call-ID: live-test-1@192.0.2.7\r\n\
         CSeq: 2 BYE\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
    );
    let bye = Bytes::from(
        String::from_utf8(bye.to_vec())
            .unwrap()
            .replace("TAG", &gw2_tag),
    );
    gw2.handle_datagram(t, outside_flow(), bye);
    let codes: Vec<_> = transmits(&mut gw2).iter().filter_map(status).collect();
    assert_eq!(codes, [200]);
    assert_eq!(
        sockets(&rec2),
        [
            SocketRequest::Close {
                side: Side::Outside,
                local: outside_rtp
            },
            SocketRequest::Close {
                side: Side::Outside,
                local: a("198.51.100.1:20001")
            },
        ]
    );
    shuttle(t, &mut gw2, &mut gw1);
    assert_eq!(
        sockets(&rec1),
        [
            SocketRequest::Close {
                side: Side::Inside,
                local: inside_rtp
            },
            SocketRequest::Close {
                side: Side::Inside,
                local: a("10.0.0.1:30001")
            },
        ]
    );
    // Media on the closed port is no longer taken for this call.
    gw1.handle_inside_datagram(t, media_flow, rtp);
    assert!(gw1.poll_tunnel().is_none());
}

/// Refuses to bind the RTP ports in its list, as if another program held them.
struct Held(Vec<u16>);

impl Binder for Held {
    fn open(&mut self, _side: Side, rtp: SocketAddr) -> bool {
        !self.0.contains(&rtp.port())
    }
    fn close(&mut self, _side: Side, _rtp: SocketAddr) {}
}

#[test]
fn a_port_another_program_holds_is_skipped_and_none_free_refuses_the_call() {
    // The first two outside ports are held: the call takes the third.
    let mut gw2 = engine(Role::Both);
    gw2.set_binder(Box::new(Held(vec![20000, 20002])));
    let t = Duration::from_secs(1);
    gw2.handle_datagram(t, outside_flow(), invite());
    let sent = transmits(&mut gw2);
    let inv = sent
        .iter()
        .find(|t| t.side == Side::Inside)
        .expect("INVITE inside");
    let (req, _) = sip::parse_datagram(inv.payload.clone()).unwrap();
    let sdp = "v=0\r\no=- 2 2 IN IP4 10.0.0.10\r\ns=-\r\nc=IN IP4 10.0.0.10\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
    let ok = MessageBuilder::response_to(&req, 200, Some("pbx"))
        .header("Contact", "<sip:pbx@10.0.0.10:5060>")
        .body("application/sdp", Bytes::from(sdp))
        .build();
    gw2.handle_inside_datagram(t, inv.flow, ok);
    let answer = transmits(&mut gw2)
        .into_iter()
        .find(|t| t.side == Side::Outside && status(t) == Some(200))
        .expect("200 to the caller");
    let body = String::from_utf8_lossy(&answer.payload).into_owned();
    assert!(body.contains("m=audio 20004 "), "{body}");
    assert_eq!(gw2.stats().media.bind_failures, 2);

    // Every outside port held: the call is refused cleanly, nothing goes inside.
    let mut gw2 = engine(Role::Both);
    gw2.set_binder(Box::new(Held((20000..20100).collect())));
    gw2.handle_datagram(t, outside_flow(), invite());
    let sent = transmits(&mut gw2);
    assert_eq!(sent.iter().filter_map(status).collect::<Vec<_>>(), [503]);
    assert!(sent.iter().all(|t| t.side == Side::Outside));
    assert_eq!(gw2.stats().admission.refused_no_media_port, 1);
    assert_eq!(gw2.stats().calls_live, 0);
    // The refusal names the call it was admitted as, the call record's id (the live log's
    // `call` field on both lines).
    let mut rejected = None;
    let mut record = None;
    while let Some(e) = gw2.poll_event() {
        match e {
            Event::Report(r) if r.verdict == Verdict::Rejected => rejected = Some(r),
            Event::CallEnded(rec) => record = Some(*rec),
            _ => {}
        }
    }
    let (rejected, record) = (rejected.expect("rejection"), record.expect("call record"));
    assert_eq!(rejected.response, Some(503));
    assert_eq!(rejected.call, Some(record.call));
}
