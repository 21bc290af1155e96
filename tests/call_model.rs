//! The call model on virtual time, one engine with both halves: every way a call ends frees
//! what it holds (2xx never acknowledged, unanswered INVITE, a Setup Meta cannot carry), the
//! call cap counts live calls only, emergency calls have one definition and take a reserved or
//! pre-empted slot, a flooding source is rate limited and blocked, an RFC
//! 2543 caller without tags can hang up, and the inside dialog follows RFC 3261 section 12
//! behind a record-routing proxy (a refused re-INVITE included).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::sip::{self, HeaderName, Message, MessageBuilder, Method};
use sgw::engine::{Engine, EngineConfig, Flow, Side, Transmit, Transport};
use std::net::SocketAddr;
use std::time::Duration;

const GW2: &str = "198.51.100.1:5060";
const GW1: &str = "10.0.0.1:5060";
const PROXY: &str = "10.0.0.10:5060";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn engine(max_calls: usize) -> Engine {
    Engine::new(EngineConfig {
        max_calls,
        emergency_numbers: vec!["112".to_owned()],
        ..EngineConfig::default()
    })
}

fn caller(i: u32) -> SocketAddr {
    SocketAddr::new([192, 0, 2, 7].into(), 5000 + i as u16)
}

/// An INVITE from outside caller `i` to `uri`, with an SDP offer.
fn invite(i: u32, uri: &str, display: &str) -> Bytes {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        6000 + 2 * i
    );
    MessageBuilder::request(&Method::Invite, uri)
        .header(
            "Via",
            format!("SIP/2.0/UDP {};branch=z9hG4bK-cm-{i}", caller(i)),
        )
        .header("Max-Forwards", "70")
        .header(
            "From",
            format!("\"{display}\" <sip:c{i}@192.0.2.7>;tag=t{i}"),
        )
        .header("To", format!("<{uri}>"))
        .header("Call-ID", format!("cm-{i}@192.0.2.7"))
        .header("CSeq", "1 INVITE")
        .header("Contact", format!("<sip:c{i}@{}>", caller(i)))
        .body("application/sdp", sdp)
        .build()
}

fn from_caller(e: &mut Engine, now: Duration, i: u32, data: Bytes) {
    let flow = Flow {
        transport: Transport::Udp,
        local: a(GW2),
        remote: caller(i),
    };
    e.handle_datagram(now, flow, data);
}

fn from_inside(e: &mut Engine, now: Duration, from: SocketAddr, data: Bytes) {
    let flow = Flow {
        transport: Transport::Udp,
        local: a(GW1),
        remote: from,
    };
    e.handle_inside_datagram(now, flow, data);
}

fn drain(e: &mut Engine) -> Vec<Transmit> {
    std::iter::from_fn(|| e.poll_transmit()).collect()
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

/// Requests in `ts` counted once per transaction (UDP retransmissions share the branch).
fn distinct(msgs: &[Message]) -> usize {
    let mut branches: Vec<String> = msgs
        .iter()
        .filter_map(|m| m.vias().ok()?.first()?.branch().map(str::to_owned))
        .collect();
    branches.sort();
    branches.dedup();
    branches.len()
}

fn requests(ts: &[Transmit], side: Side, method: Method) -> Vec<Message> {
    ts.iter()
        .filter(|t| t.side == side)
        .map(sip_of)
        .filter(|m| m.method() == Some(&method))
        .collect()
}

/// The inside answers GW1's INVITE with 200 and SDP, as `from` (with `rr` as Record-Route).
fn answer_inside(e: &mut Engine, now: Duration, inv: &Message, from: SocketAddr, rr: &[&str]) {
    let sdp = "v=0\r\no=- 2 2 IN IP4 10.0.0.20\r\ns=-\r\nc=IN IP4 10.0.0.20\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
    let mut b = MessageBuilder::response_to(inv, 200, Some("pbx"));
    for r in rr {
        b = b.header("Record-Route", *r);
    }
    let ok = b
        .header("Contact", "<sip:phone@10.0.0.20:5060>")
        .body("application/sdp", Bytes::from(sdp))
        .build();
    from_inside(e, now, from, ok);
}

/// The inside answers the call; returns GW2's tag in the 200 to the caller.
fn answered(e: &mut Engine, now: Duration, inside_invite: &Message) -> String {
    answer_inside(e, now, inside_invite, a(PROXY), &[]);
    let ok = drain(e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .map(sip_of)
        .find(|m| m.status() == Some(200))
        .unwrap();
    ok.to().unwrap().tag().unwrap().to_owned()
}

/// Caller `i`'s BYE in its dialog with GW2 (`from_tag` as its INVITE had it).
fn caller_bye(i: u32, from_tag: Option<&str>, gw2_tag: &str) -> Bytes {
    let tag = from_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    MessageBuilder::request(&Method::Bye, "sip:gw@198.51.100.1")
        .header(
            "Via",
            format!("SIP/2.0/UDP {};branch=z9hG4bK-bye-{i}", caller(i)),
        )
        .header("From", format!("<sip:c{i}@192.0.2.7>{tag}"))
        .header("To", format!("<sip:100@198.51.100.1>;tag={gw2_tag}"))
        .header("Call-ID", format!("cm-{i}@192.0.2.7"))
        .header("CSeq", "2 BYE")
        .build()
}

#[test]
fn a_2xx_never_acknowledged_ends_with_bye_and_frees_the_slot() {
    let mut e = engine(1);
    let t0 = Duration::from_secs(1);
    from_caller(&mut e, t0, 1, invite(1, "sip:100@198.51.100.1", "a"));
    let inv = requests(&drain(&mut e), Side::Inside, Method::Invite)
        .pop()
        .unwrap();
    answer_inside(&mut e, t0, &inv, a(PROXY), &[]);
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [200]);
    assert_eq!(e.stats().calls_live, 1);
    // The caller never ACKs: the 2xx is retransmitted until 64*T1, then the dialog ends.
    let mut now = t0;
    let mut byes = Vec::new();
    while let Some(due) = e.poll_timeout() {
        if due > t0 + Duration::from_secs(40) {
            break;
        }
        now = due;
        e.handle_timeout(now);
        byes.extend(requests(&drain(&mut e), Side::Outside, Method::Bye));
    }
    assert_eq!(distinct(&byes), 1, "one BYE to the caller");
    assert!(now >= t0 + Duration::from_secs(32));
    assert_eq!(e.stats().calls_live, 0);
    assert_eq!(e.stats().sip_outside.unacked_2xx, 1);
    // The only slot is free again.
    from_caller(&mut e, now, 2, invite(2, "sip:100@198.51.100.1", "b"));
    assert_eq!(statuses(&drain(&mut e), Side::Outside), [100]);
}

#[test]
fn setups_meta_cannot_carry_get_500_and_leave_no_call() {
    let mut e = engine(3);
    let long = "x".repeat(2000);
    for i in 0..3 {
        from_caller(
            &mut e,
            Duration::ZERO,
            i,
            invite(i, "sip:100@198.51.100.1", &long),
        );
        assert_eq!(statuses(&drain(&mut e), Side::Outside), [500], "INVITE {i}");
    }
    assert_eq!(e.stats().calls_live, 0);
    from_caller(
        &mut e,
        Duration::ZERO,
        9,
        invite(9, "sip:100@198.51.100.1", "ok"),
    );
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [100]);
    assert_eq!(requests(&out, Side::Inside, Method::Invite).len(), 1);
}

#[test]
fn an_unanswered_invite_times_out_with_408_and_cancel() {
    let mut e = engine(10);
    from_caller(
        &mut e,
        Duration::ZERO,
        1,
        invite(1, "sip:100@198.51.100.1", "a"),
    );
    let inv = requests(&drain(&mut e), Side::Inside, Method::Invite)
        .pop()
        .unwrap();
    // The inside rings for ever.
    let ringing = MessageBuilder::response_to(&inv, 180, Some("pbx")).build();
    from_inside(&mut e, Duration::ZERO, a(PROXY), ringing);
    drain(&mut e);
    let mut out = Vec::new();
    while let Some(due) = e.poll_timeout() {
        if due > Duration::from_secs(200) {
            break;
        }
        e.handle_timeout(due);
        out.extend(drain(&mut e));
    }
    assert!(statuses(&out, Side::Outside).contains(&408), "{out:?}");
    assert_eq!(distinct(&requests(&out, Side::Inside, Method::Cancel)), 1);
    assert_eq!(e.stats().calls_live, 0);
}

#[test]
fn the_cap_counts_calls_in_progress_not_lingering_ones() {
    let mut e = engine(2);
    let mut now = Duration::ZERO;
    // Twenty calls one after the other, each ended by the caller: never more than one up.
    for i in 0..20 {
        from_caller(&mut e, now, i, invite(i, "sip:100@198.51.100.1", "a"));
        let out = drain(&mut e);
        assert_eq!(statuses(&out, Side::Outside), [100], "call {i}");
        let inv = requests(&out, Side::Inside, Method::Invite).pop().unwrap();
        let tag = answered(&mut e, now, &inv);
        let bye = caller_bye(i, Some(&format!("t{i}")), &tag);
        from_caller(&mut e, now, i, bye);
        assert_eq!(statuses(&drain(&mut e), Side::Outside), [200]);
        now += Duration::from_millis(10);
    }
    assert_eq!(e.stats().calls_live, 0);
    assert!(e.stats().calls_held >= 20, "ended calls linger");
    // After the linger they are forgotten with all they held.
    e.handle_timeout(now + Duration::from_secs(40));
    assert_eq!(e.stats().calls_held, 0);
    assert_eq!(e.stats().media_streams, 0);
    assert_eq!(e.stats().dialogs, 0);
}

#[test]
fn emergency_calls_have_one_definition_and_take_a_slot() {
    for (i, uri) in [
        (3, "urn:service:sos"),
        (4, "urn:service:sos.police"),
        (5, "sip:112@198.51.100.1"),
    ] {
        let mut e = engine(1);
        from_caller(
            &mut e,
            Duration::ZERO,
            1,
            invite(1, "sip:100@198.51.100.1", "a"),
        );
        drain(&mut e);
        // Full: a normal call is refused, the service URN and a configured number are not:
        // they pre-empt the unanswered call, whose caller gets 503 with cause 8.
        from_caller(
            &mut e,
            Duration::ZERO,
            2,
            invite(2, "sip:101@198.51.100.1", "b"),
        );
        assert_eq!(statuses(&drain(&mut e), Side::Outside), [503]);
        from_caller(&mut e, Duration::ZERO, i, invite(i, uri, "e"));
        let out = drain(&mut e);
        assert_eq!(statuses(&out, Side::Outside), [100, 503], "{uri}");
        let inv = requests(&out, Side::Inside, Method::Invite).pop().unwrap();
        let name = HeaderName::from("Priority");
        let priority = inv.headers().single(&name, "Priority").unwrap();
        assert_eq!(priority, Some("emergency"), "{uri}");
        assert_eq!(e.stats().admission.emergency_admitted, 1);
        assert_eq!(e.stats().admission.preempted, 1);
        assert_eq!(e.stats().calls_live, 1);
    }
}

fn reason(m: &Message) -> Option<String> {
    m.headers()
        .single(&HeaderName::from("Reason"), "Reason")
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// With every slot taken, an emergency call pre-empts the newest ordinary call: an answered
/// one ends with a BYE carrying `Reason: Q.850;cause=8` on both sides, an unanswered one gets
/// 503 (and the inside a CANCEL) with cause 8; the emergency call proceeds, and further
/// emergency calls are bounded by `max_calls` (they never pre-empt one another).
#[test]
fn an_emergency_call_preempts_the_newest_ordinary_call() {
    // 10 slots, 1 reserved for emergency calls.
    let mut e = engine(10);
    let now = Duration::from_secs(1);
    let mut tags = Vec::new();
    for i in 0..9 {
        from_caller(&mut e, now, i, invite(i, "sip:100@198.51.100.1", "a"));
        let inv = requests(&drain(&mut e), Side::Inside, Method::Invite)
            .pop()
            .unwrap();
        if i < 8 {
            tags.push(answered(&mut e, now, &inv));
        }
    }
    // The ordinary slots are full; the reserve is not for them.
    from_caller(&mut e, now, 20, invite(20, "sip:100@198.51.100.1", "x"));
    assert_eq!(statuses(&drain(&mut e), Side::Outside), [503]);
    // The reserved slot: no pre-emption.
    from_caller(&mut e, now, 30, invite(30, "sip:112@198.51.100.1", "e"));
    assert_eq!(statuses(&drain(&mut e), Side::Outside), [100]);
    assert_eq!(e.stats().admission.preempted, 0);
    // Full: the newest ordinary call (8, unanswered) is pre-empted.
    from_caller(&mut e, now, 31, invite(31, "sip:112@198.51.100.1", "e"));
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [100, 503]);
    let refused = out
        .iter()
        .filter(|t| t.side == Side::Outside)
        .map(sip_of)
        .find(|m| m.status() == Some(503))
        .unwrap();
    assert_eq!(refused.call_id().unwrap(), "cm-8@192.0.2.7");
    assert_eq!(reason(&refused).as_deref(), Some("Q.850;cause=8"));
    let cancels = requests(&out, Side::Inside, Method::Cancel);
    assert_eq!(cancels.len(), 1);
    assert_eq!(reason(&cancels[0]).as_deref(), Some("Q.850;cause=8"));
    assert_eq!(requests(&out, Side::Inside, Method::Invite).len(), 1);
    // Next: the newest answered call (7) gets a BYE with cause 8, both ways.
    from_caller(&mut e, now, 32, invite(32, "urn:service:sos", "e"));
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [100]);
    let byes = requests(&out, Side::Outside, Method::Bye);
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].call_id().unwrap(), "cm-7@192.0.2.7");
    assert_eq!(reason(&byes[0]).as_deref(), Some("Q.850;cause=8"));
    let inside_byes = requests(&out, Side::Inside, Method::Bye);
    assert_eq!(inside_byes.len(), 1);
    assert_eq!(reason(&inside_byes[0]).as_deref(), Some("Q.850;cause=8"));
    assert_eq!(e.stats().admission.preempted, 2);
    assert_eq!(e.stats().calls_live, 10);
    assert_eq!(tags.len(), 8);
}

/// A source over its call rate gets 503 with Retry-After; one that keeps on is blocked and
/// then hears nothing, every dropped message still counted; an emergency call from a busy
/// source that is not blocked passes the rate limits.
#[test]
fn a_flooding_source_is_refused_then_blocked() {
    let mut e = Engine::new(EngineConfig {
        emergency_numbers: vec!["112".to_owned()],
        limits: sgw::engine::LimitsConfig {
            source_calls_per_second: 2,
            source_calls_burst: 2,
            block_after: 5,
            ..Default::default()
        },
        ..EngineConfig::default()
    });
    let now = Duration::from_secs(1);
    let mut got = Vec::new();
    for i in 0..4 {
        from_caller(&mut e, now, i, invite(i, "sip:100@198.51.100.1", "f"));
        got.push(drain(&mut e));
    }
    assert_eq!(statuses(&got[1], Side::Outside), [100]);
    let busy: Vec<Message> = got[2]
        .iter()
        .filter(|t| t.side == Side::Outside)
        .map(sip_of)
        .collect();
    assert_eq!(busy[0].status(), Some(503));
    let name = HeaderName::from("Retry-After");
    let retry = busy[0].headers().single(&name, "Retry-After").unwrap();
    assert_eq!(retry, Some("1"));
    // Emergency calls pass the rate limits.
    from_caller(&mut e, now, 10, invite(10, "sip:112@198.51.100.1", "e"));
    assert_eq!(statuses(&drain(&mut e), Side::Outside), [100]);
    // Three more refusals (five in all) block the source.
    for i in 11..14 {
        from_caller(&mut e, now, i, invite(i, "sip:100@198.51.100.1", "f"));
        assert_eq!(statuses(&drain(&mut e), Side::Outside), [503]);
    }
    assert_eq!(e.stats().limits.blocks, 1);
    let before = e.stats();
    while e.poll_event().is_some() {}
    for i in 20..30 {
        from_caller(&mut e, now, i, invite(i, "sip:100@198.51.100.1", "f"));
        assert!(drain(&mut e).is_empty(), "dropped silently");
    }
    // Every drop is counted as a rejected SIP message; one is reported (the live log line).
    let s = e.stats();
    assert_eq!(s.limits.dropped_blocked, 10);
    assert_eq!(s.rejected - before.rejected, 10);
    assert_eq!(s.sip_messages - before.sip_messages, 10);
    let reports = std::iter::from_fn(|| e.poll_event())
        .filter(|ev| matches!(ev, sgw::engine::Event::Report(_)))
        .count();
    assert_eq!(reports, 1);
    assert_eq!(s.limits.refused_source_calls, 5);
    // The block ends.
    let later = now + Duration::from_secs(61);
    from_caller(&mut e, later, 40, invite(40, "sip:100@198.51.100.1", "f"));
    assert_eq!(statuses(&drain(&mut e), Side::Outside), [100]);
}

#[test]
fn the_inside_dialog_follows_the_route_set_and_the_via() {
    let mut e = engine(10);
    let t = Duration::ZERO;
    from_caller(&mut e, t, 1, invite(1, "sip:100@198.51.100.1", "a"));
    let inv = requests(&drain(&mut e), Side::Inside, Method::Invite)
        .pop()
        .unwrap();
    // A record-routing proxy at 10.0.0.10 forwards the phone's answer.
    answer_inside(&mut e, t, &inv, a(PROXY), &["<sip:10.0.0.10;lr>"]);
    let out = drain(&mut e);
    let ack = out
        .iter()
        .find(|t| t.side == Side::Inside && sip_of(t).method() == Some(&Method::Ack))
        .unwrap();
    // RFC 3261 section 12.1.2 and 12.2.1.1: the ACK goes to the route, names it, and its
    // Request-URI is the phone's Contact.
    assert_eq!(ack.flow.remote, a(PROXY));
    let ack = sip_of(ack);
    assert_eq!(
        ack.headers().all(&HeaderName::ROUTE).collect::<Vec<_>>(),
        ["<sip:10.0.0.10;lr>"]
    );
    assert!(ack.summary().contains("sip:phone@10.0.0.20:5060"));
    // The phone hangs up through the proxy; the 200 follows the top Via, not the dialog.
    let gw1_from = inv
        .headers()
        .single(&HeaderName::FROM, "From")
        .unwrap()
        .unwrap()
        .to_owned();
    let bye = MessageBuilder::request(&Method::Bye, "sip:gw1@10.0.0.1:5060")
        .header("Via", "SIP/2.0/UDP 10.0.0.10:5070;branch=z9hG4bK-pbye")
        .header("Via", "SIP/2.0/UDP 10.0.0.20:5060;branch=z9hG4bK-phone")
        .header("From", "<sip:100@10.0.0.10>;tag=pbx")
        .header("To", gw1_from)
        .header("Call-ID", inv.call_id().unwrap())
        .header("CSeq", "2 BYE")
        .build();
    from_inside(&mut e, t, a("10.0.0.10:5070"), bye);
    let out = drain(&mut e);
    let ok = out
        .iter()
        .find(|t| t.side == Side::Inside && sip_of(t).status() == Some(200))
        .expect("200 to the BYE");
    assert_eq!(ok.flow.remote, a("10.0.0.10:5070"));
    assert_eq!(requests(&out, Side::Outside, Method::Bye).len(), 1);
}

#[test]
fn an_rfc_2543_caller_without_from_tag_can_end_its_call() {
    let mut e = engine(10);
    let t = Duration::ZERO;
    let inv = String::from_utf8(invite(1, "sip:100@198.51.100.1", "a").to_vec())
        .unwrap()
        .replace(";tag=t1", "");
    from_caller(&mut e, t, 1, Bytes::from(inv));
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [100]);
    let inside_inv = requests(&out, Side::Inside, Method::Invite).pop().unwrap();
    let tag = answered(&mut e, t, &inside_inv);
    // The BYE carries no From tag either (RFC 3261 section 12.2.1.1: the remote tag is null).
    let bye = caller_bye(1, None, &tag);
    from_caller(&mut e, t, 1, bye);
    let out = drain(&mut e);
    assert_eq!(statuses(&out, Side::Outside), [200]);
    assert_eq!(requests(&out, Side::Inside, Method::Bye).len(), 1);
    assert_eq!(e.stats().calls_live, 0);
}

#[test]
fn a_refused_re_invite_is_acknowledged_along_the_route_set() {
    let mut e = engine(10);
    let t = Duration::ZERO;
    from_caller(&mut e, t, 1, invite(1, "sip:100@198.51.100.1", "a"));
    let inv = requests(&drain(&mut e), Side::Inside, Method::Invite)
        .pop()
        .unwrap();
    answer_inside(&mut e, t, &inv, a(PROXY), &["<sip:10.0.0.10;lr>"]);
    let ok = drain(&mut e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .map(sip_of)
        .find(|m| m.status() == Some(200))
        .unwrap();
    let gw2_tag = ok.to().unwrap().tag().unwrap().to_owned();
    // The caller puts the call on hold: GW1 re-INVITEs the phone through the proxy.
    let sdp = "v=0\r\no=- 1 2 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 6002 RTP/AVP 0\r\na=sendonly\r\n";
    let reinvite = MessageBuilder::request(&Method::Invite, "sip:gw@198.51.100.1")
        .header(
            "Via",
            format!("SIP/2.0/UDP {};branch=z9hG4bK-re", caller(1)),
        )
        .header("From", "<sip:c1@192.0.2.7>;tag=t1")
        .header("To", format!("<sip:100@198.51.100.1>;tag={gw2_tag}"))
        .header("Call-ID", "cm-1@192.0.2.7")
        .header("CSeq", "2 INVITE")
        .header("Contact", format!("<sip:c1@{}>", caller(1)))
        .body("application/sdp", Bytes::from(sdp))
        .build();
    from_caller(&mut e, t, 1, reinvite);
    let inside_re = requests(&drain(&mut e), Side::Inside, Method::Invite)
        .pop()
        .expect("re-INVITE inside");
    // The phone refuses it; the ACK repeats the re-INVITE's Request-URI and Route and goes to
    // the proxy (RFC 3261 section 17.1.1.3).
    let refused = MessageBuilder::response_to(&inside_re, 488, None).build();
    from_inside(&mut e, t, a(PROXY), refused);
    let out = drain(&mut e);
    let ack = out
        .iter()
        .find(|t| t.side == Side::Inside && sip_of(t).method() == Some(&Method::Ack))
        .expect("ACK of the 488");
    assert_eq!(ack.flow.remote, a(PROXY));
    let ack = sip_of(ack);
    assert!(
        ack.summary().contains("sip:phone@10.0.0.20:5060"),
        "{}",
        ack.summary()
    );
    assert_eq!(
        ack.headers().all(&HeaderName::ROUTE).collect::<Vec<_>>(),
        ["<sip:10.0.0.10;lr>"]
    );
    // The caller's re-INVITE is not left unanswered: it gets the session as it was.
    let answer = out
        .iter()
        .filter(|t| t.side == Side::Outside)
        .map(sip_of)
        .find(|m| m.cseq().is_ok_and(|c| c.seq == 2) && m.status().is_some_and(|s| s >= 200))
        .expect("a final answer to the caller's re-INVITE");
    assert_eq!(answer.status(), Some(200));
    assert_eq!(
        e.stats().calls_live,
        1,
        "a refused re-INVITE leaves the call up"
    );
}
