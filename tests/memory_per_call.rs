//! Engine memory per established call (issue 11): one engine with both halves sets up N calls
//! (INVITE with SDP, 200 with SDP from the inside, ACK), lets every transaction of their
//! set-up end (64*T1 and the Timer K/J of the ACK-ed dialogs), and counts the heap bytes the
//! engine still holds per call with a counting global allocator (requested sizes: the
//! allocator's own rounding and the live driver's sockets and tasks are not in this figure;
//! `bench/memory-per-call.sh` measures the whole process). It then ends every call and checks
//! that the bytes come back, but for the slots of the maps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::sip::{self, Message, MessageBuilder, Method};
use sgw::engine::limits::LimitsConfig;
use sgw::engine::{Engine, EngineConfig, Flow, Side, Transmit, Transport};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::net::SocketAddr;
use std::time::Duration;

/// Bytes of engine heap per established call that CI holds (BENCHMARKS.md, "Memory per
/// call"). Measured: 4,292 (release, 2,000 calls).
const MAX_ENGINE_BYTES_PER_CALL: isize = 6 * 1024;
/// Bytes per call the engine may keep after every call ended: its maps keep their slots (a key
/// and a pointer each). Measured: 952.
const MAX_LEFT_BYTES_PER_CALL: isize = 2 * 1024;
/// Calls set up.
const CALLS: u32 = 2_000;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const GW2: &str = "198.51.100.1:5060";
const GW1: &str = "10.0.0.1:5060";
const PBX: &str = "10.0.0.10:5060";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn caller(i: u32) -> SocketAddr {
    SocketAddr::new(
        [192, 0, (2 + i / 30_000) as u8, 7].into(),
        (2_000 + i % 30_000) as u16,
    )
}

fn invite(i: u32) -> Bytes {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio {} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        40_000 + 2 * (i % 10_000)
    );
    MessageBuilder::request(&Method::Invite, "sip:100@198.51.100.1")
        .header(
            "Via",
            format!("SIP/2.0/UDP {};branch=z9hG4bK-mem-{i}", caller(i)),
        )
        .header("Max-Forwards", "70")
        .header(
            "From",
            format!("\"caller {i}\" <sip:c{i}@192.0.2.7>;tag=t{i}"),
        )
        .header("To", "<sip:100@198.51.100.1>")
        .header("Call-ID", format!("mem-{i}@192.0.2.7"))
        .header("CSeq", "1 INVITE")
        .header("Contact", format!("<sip:c{i}@{}>", caller(i)))
        .header("User-Agent", "memory-per-call test")
        .body("application/sdp", sdp)
        .build()
}

fn ack(i: u32, gw2_tag: &str) -> Bytes {
    MessageBuilder::request(&Method::Ack, "sip:gw@198.51.100.1")
        .header(
            "Via",
            format!("SIP/2.0/UDP {};branch=z9hG4bK-ack-{i}", caller(i)),
        )
        .header("Max-Forwards", "70")
        .header(
            "From",
            format!("\"caller {i}\" <sip:c{i}@192.0.2.7>;tag=t{i}"),
        )
        .header("To", format!("<sip:100@198.51.100.1>;tag={gw2_tag}"))
        .header("Call-ID", format!("mem-{i}@192.0.2.7"))
        .header("CSeq", "1 ACK")
        .build()
}

fn bye(i: u32, gw2_tag: &str) -> Bytes {
    MessageBuilder::request(&Method::Bye, "sip:gw@198.51.100.1")
        .header(
            "Via",
            format!("SIP/2.0/UDP {};branch=z9hG4bK-bye-{i}", caller(i)),
        )
        .header("Max-Forwards", "70")
        .header(
            "From",
            format!("\"caller {i}\" <sip:c{i}@192.0.2.7>;tag=t{i}"),
        )
        .header("To", format!("<sip:100@198.51.100.1>;tag={gw2_tag}"))
        .header("Call-ID", format!("mem-{i}@192.0.2.7"))
        .header("CSeq", "2 BYE")
        .build()
}

fn outside(e: &mut Engine, now: Duration, i: u32, data: Bytes) {
    let flow = Flow {
        transport: Transport::Udp,
        local: a(GW2),
        remote: caller(i),
    };
    e.handle_datagram(now, flow, data);
}

fn inside(e: &mut Engine, now: Duration, data: Bytes) {
    let flow = Flow {
        transport: Transport::Udp,
        local: a(GW1),
        remote: a(PBX),
    };
    e.handle_inside_datagram(now, flow, data);
}

/// The transmits queued; the events (reports, call records) are dropped as the live driver
/// does once it logged them.
fn drain(e: &mut Engine) -> Vec<Transmit> {
    while e.poll_event().is_some() {}
    std::iter::from_fn(|| e.poll_transmit()).collect()
}

fn sip_of(t: &Transmit) -> Message {
    sip::parse_datagram(t.payload.clone()).unwrap().0
}

/// Sets up call `i`; returns GW2's tag (for the ACK and the BYE).
fn set_up(e: &mut Engine, now: Duration, i: u32) -> String {
    outside(e, now, i, invite(i));
    let sent = drain(e);
    let inv = sent
        .iter()
        .filter(|t| t.side == Side::Inside)
        .map(sip_of)
        .find(|m| m.method() == Some(&Method::Invite))
        .unwrap_or_else(|| panic!("no INVITE from GW1 for call {i}: {sent:?}"));
    let sdp = "v=0\r\no=- 2 2 IN IP4 10.0.0.20\r\ns=-\r\nc=IN IP4 10.0.0.20\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let ok = MessageBuilder::response_to(&inv, 200, Some("pbx"))
        .header("Contact", "<sip:phone@10.0.0.20:5060>")
        .body("application/sdp", Bytes::from(sdp))
        .build();
    inside(e, now, ok);
    let ok = drain(e)
        .iter()
        .filter(|t| t.side == Side::Outside)
        .map(sip_of)
        .find(|m| m.status() == Some(200))
        .expect("GW2's 200");
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    outside(e, now, i, ack(i, &tag));
    drain(e);
    tag
}

/// Runs the engine's timers until `until` (retransmissions, Timer K/J/D, ...).
fn run_until(e: &mut Engine, until: Duration) {
    while let Some(due) = e.poll_timeout() {
        if due > until {
            break;
        }
        e.handle_timeout(due);
        drain(e);
    }
}

/// Heap bytes in use now (allocated less freed; stats_alloc counts a reallocation's growth as
/// allocated and its shrinking as freed).
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

#[test]
fn an_established_call_holds_a_bounded_number_of_engine_bytes() {
    let mut e = Engine::new(EngineConfig {
        max_calls: CALLS as usize + 10,
        // One source places every call (as sipp does in the live test): its rate limits are
        // opened wide, and no slot is kept for emergency calls.
        limits: LimitsConfig {
            source_calls_per_second: 1_000_000,
            source_calls_burst: 1_000_000,
            source_requests_per_second: 1_000_000,
            source_requests_burst: 1_000_000,
            calls_per_second: 1_000_000,
            block_after: 0,
            emergency_reserve_percent: 0,
            ..LimitsConfig::default()
        },
        ..EngineConfig::default()
    });
    // One call set up and ended first: the engine's lazily built parts exist before the count.
    let mut now = Duration::from_secs(1);
    let tag = set_up(&mut e, now, CALLS + 1);
    outside(&mut e, now, CALLS + 1, bye(CALLS + 1, &tag));
    drain(&mut e);
    now += Duration::from_secs(64);
    run_until(&mut e, now);
    let before = live();

    let mut tags = Vec::with_capacity(CALLS as usize);
    for i in 0..CALLS {
        tags.push(set_up(&mut e, now, i));
    }
    let setting_up = live() - before;
    println!(
        "engine heap per call with the set-up transactions still retained: {} bytes",
        setting_up / CALLS as isize
    );
    // Every set-up transaction ends (64*T1 = 32 s, Timer D 32 s): what is left is the call.
    now += Duration::from_secs(64);
    run_until(&mut e, now);
    assert_eq!(e.stats().calls_live, CALLS as u64, "every call is up");
    let held = live()
        - before
        - (tags.capacity() * std::mem::size_of::<String>()) as isize
        - tags.iter().map(|t| t.capacity() as isize).sum::<isize>();
    let per_call = held / CALLS as isize;
    println!("engine heap per established call: {per_call} bytes ({CALLS} calls, {held} bytes)");

    for (i, tag) in tags.iter().enumerate() {
        outside(&mut e, now, i as u32, bye(i as u32, tag));
        drain(&mut e);
    }
    now += Duration::from_secs(64);
    run_until(&mut e, now);
    assert_eq!(e.stats().calls_live, 0, "every call ended");
    // One more call after the ended ones lingered: tables forget them as they go on.
    let tag = set_up(&mut e, now, CALLS + 2);
    outside(&mut e, now, CALLS + 2, bye(CALLS + 2, &tag));
    drain(&mut e);
    now += Duration::from_secs(64);
    run_until(&mut e, now);
    let left = live()
        - before
        - (tags.capacity() * std::mem::size_of::<String>()) as isize
        - tags.iter().map(|t| t.capacity() as isize).sum::<isize>();
    println!(
        "engine heap left after the calls ended: {left} bytes ({} per call)",
        left / CALLS as isize
    );

    assert!(
        per_call <= MAX_ENGINE_BYTES_PER_CALL,
        "{per_call} bytes of engine heap per established call (bound {MAX_ENGINE_BYTES_PER_CALL})"
    );
    assert!(
        left / CALLS as isize <= MAX_LEFT_BYTES_PER_CALL,
        "{left} bytes still held after every call ended (bound {MAX_LEFT_BYTES_PER_CALL} per call)"
    );
}
