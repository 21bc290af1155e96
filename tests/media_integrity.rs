//! Live acceptance tests of media integrity (tracker issue 8, "Integrity: Media, NAT"), against
//! `sgw run --config FILE --role both` on loopback, GW1's next hop an answering endpoint that
//! echoes RTP ([`InsideUas`]), outside callers made with raw SIP ([`RawCall`]).
//!
//! - RTP injected into an answered call from another address, and from the caller's address
//!   on another port, is dropped and counted (`dropped_source`): nothing of it reaches the
//!   inside, and the return media keeps going to the real caller (symmetric RTP, RFC 4961).
//! - A caller behind NAT (its SDP names an address its media does not come from) has two-way
//!   audio with GW2's default latch mode (`signalling`), and none with `latch = "sdp"`.
//! - A caller whose NAT binding moves (its media comes from a new port after a silence longer
//!   than `relatch_idle_ms`) gets its audio back: the stream re-latches, and it is counted.
//!
//! No peer program is needed. The tests run one at a time, pick free ports and their own media
//! ranges, and kill what they started.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::gateway::{n, serial, Gateway, Setup};
use support::rawsip::{InsideUas, MediaCount, RawCall};

/// `sgw run --role both` with fixed media ranges; `gw2_media` are extra lines of `[gw2.media]`
/// (the latch keys).
fn start(name: &str, inside: SocketAddr, gw2_media: &'static str) -> Gateway {
    let mut s = Setup::new((16600, 16639), (16700, 16739), inside);
    s.gw2_media_lines = gw2_media;
    Gateway::start(name, &s)
}

/// An outside call from `src_ip` through GW2, announcing `announce` in its SDP when given.
fn call(gw: &mut Gateway, src_ip: &str, announce: Option<SocketAddr>) -> RawCall {
    let ruri = format!("sip:media@{}", gw.sip);
    match RawCall::invite_announcing(
        gw.sip,
        src_ip,
        &ruri,
        "media",
        Duration::from_secs(10),
        announce,
    ) {
        Ok(c) => c,
        Err((code, seen)) => panic!("call not answered: {code} (saw {seen})\n{}", gw.output()),
    }
}

/// SIGTERM; the `stats gw2` line and the call records GW2 printed.
fn stop(gw: &mut Gateway) -> (Value, Vec<Value>) {
    let (stats, _) = gw.stop();
    let records =
        gw.p.seen
            .iter()
            .filter(|l| l.contains(" sgw gw2 call="))
            .filter_map(|l| l.split_once("call ended ").map(|(_, j)| j))
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
    (stats, records)
}

/// An RTP packet (PCMA, the payload type the call negotiated) with `ssrc`.
fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// An RTCP sender report with `ssrc`.
fn rtcp_packet(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0; 20]);
    p
}

/// An outsider sending `rtp` RTP packets to `to` and `rtcp` RTCP packets to `to`'s port + 1,
/// 20 ms apart, from `sock`; it counts what the gateway sends back to it.
struct Injector {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, u64)>,
}

impl Injector {
    fn start(sock: UdpSocket, to: SocketAddr, rtp: u64, rtcp: u64) -> Injector {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            let rtcp_to = SocketAddr::new(to.ip(), to.port() + 1);
            let ssrc = 0x0bad_0000 | u32::from(sock.local_addr().unwrap().port());
            let (mut sent, mut received) = (0u64, 0u64);
            let start = Instant::now();
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if sent < rtp + rtcp && Instant::now() >= start + Duration::from_millis(20 * sent) {
                    let (pkt, dest) = if sent < rtp {
                        (rtp_packet(sent as u16, ssrc), to)
                    } else {
                        (rtcp_packet(ssrc), rtcp_to)
                    };
                    sock.send_to(&pkt, dest).unwrap();
                    sent += 1;
                }
                if sock.recv_from(&mut buf).is_ok() {
                    received += 1;
                }
            }
            (sent, received)
        });
        Injector { stop, thread }
    }

    /// (sent, received).
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Waits until the inside endpoint has echoed `n` packets (bounded).
fn wait_echoed(uas: &InsideUas, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let e = uas.echoed.load(Ordering::Relaxed);
        if e >= n || Instant::now() > deadline {
            return e;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// RTP injection into an answered call, from another address (127.61.0.2) and from the
/// caller's own address on another port, while the caller sends 20 ms PCMA: not one injected
/// packet reaches the inside (the inside endpoint receives exactly the caller's packets, and
/// the call record counts them as its only forwarded packets), every injected packet is counted
/// in `dropped_source` (call record and `stats`), nothing is re-latched, the injectors hear
/// nothing back, and the caller's echo keeps coming back to the caller.
///
/// RTCP is injected from the other address only: with GW2's default mode (`signalling`), any
/// port of the caller's own address may latch RTCP the caller never sent — the documented risk
/// of that mode (a host behind the caller's NAT).
#[test]
fn injected_rtp_is_dropped_counted_and_never_takes_the_stream() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = start("media-inject", uas.sip, "");
    let mut call = call(&mut gw, "127.61.0.1", None);
    let gw_media = call.gw_media.unwrap();
    let media = call.start_media();
    // The caller's first packets latch the stream.
    std::thread::sleep(Duration::from_millis(600));
    let (sent_before, back_before) = media.peek();
    assert!(
        sent_before > 10 && back_before > 0,
        "no media before the injection: sent {sent_before}, back {back_before}"
    );
    let (rtp_n, rtcp_n) = (50, 10);
    let other_ip = Injector::start(
        UdpSocket::bind("127.61.0.2:0").unwrap(),
        gw_media,
        rtp_n,
        rtcp_n,
    );
    let same_ip = Injector::start(UdpSocket::bind("127.61.0.1:0").unwrap(), gw_media, rtp_n, 0);
    std::thread::sleep(Duration::from_millis(20 * (rtp_n + rtcp_n) + 500));
    let (o_sent, o_back) = other_ip.stop();
    let (s_sent, s_back) = same_ip.stop();
    let c: MediaCount = media.stop();
    let echoed = wait_echoed(&uas, c.sent);
    std::thread::sleep(Duration::from_millis(200));
    let echoed = echoed.max(uas.echoed.load(Ordering::Relaxed));
    assert!(call.hangup(Duration::from_secs(5)), "BYE not answered");
    std::thread::sleep(Duration::from_millis(300));
    let (stats, records) = stop(&mut gw);
    let injected = o_sent + s_sent;
    eprintln!(
        "caller sent {} RTP, {} came back (longest gap {:?}); inside received {echoed}; \
         injected {o_sent} from 127.61.0.2 and {s_sent} from the caller's IP, another port; \
         they got {o_back} and {s_back} back",
        c.sent, c.received, c.max_gap
    );
    assert_eq!((o_sent, s_sent), (rtp_n + rtcp_n, rtp_n));
    assert_eq!((o_back, s_back), (0, 0), "media went to an injector");
    assert!(
        echoed <= c.sent && echoed + 2 >= c.sent,
        "the inside received {echoed} packets, the caller sent {}",
        c.sent
    );
    assert!(
        c.received + 5 >= echoed,
        "the caller got {} of {echoed} echoed packets back: return media went elsewhere",
        c.received
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let m = &records[0]["media"];
    assert_eq!(n(m, "forwarded") + n(m, "rtcp_forwarded"), c.sent, "{m}");
    assert_eq!(n(m, "dropped_source"), injected, "{m}");
    assert_eq!((n(m, "relatches"), n(m, "rtcp_relatches")), (0, 0), "{m}");
    assert_eq!(
        n(&stats, "engine.media.dropped_source"),
        injected,
        "{stats}"
    );
    assert_eq!(n(&stats, "engine.media.relatches"), 0, "{stats}");
}

/// A caller behind NAT: its SDP says 10.99.0.1, its SIP and RTP come from 127.62.0.1. With
/// GW2's default latch mode (`signalling`) the call has two-way audio: the first RTP from the
/// signalling address latches the stream and the return media goes there. With
/// `latch = "sdp"` the same call has none, and every packet is counted as dropped.
#[test]
fn a_caller_behind_nat_has_two_way_audio_by_default() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut figures = Vec::new();
    for (mode, lines) in [("default", ""), ("sdp", "latch = \"sdp\"")] {
        let mut gw = start(&format!("media-nat-{mode}"), uas.sip, lines);
        let echoed_before = uas.echoed.load(Ordering::Relaxed);
        let rtp = UdpSocket::bind("127.62.0.1:0").unwrap();
        let private = SocketAddr::from(([10, 99, 0, 1], rtp.local_addr().unwrap().port()));
        drop(rtp);
        let mut call = call(&mut gw, "127.62.0.1", Some(private));
        let media = call.start_media();
        std::thread::sleep(Duration::from_millis(1500));
        let c = media.stop();
        std::thread::sleep(Duration::from_millis(300));
        let echoed = uas.echoed.load(Ordering::Relaxed) - echoed_before;
        assert!(
            call.hangup(Duration::from_secs(5)),
            "{mode}: BYE not answered"
        );
        std::thread::sleep(Duration::from_millis(300));
        let (stats, records) = stop(&mut gw);
        figures.push(format!(
            "{mode}: sent {}, inside got {echoed}, back {}, dropped_source {}",
            c.sent,
            c.received,
            n(&stats, "engine.media.dropped_source")
        ));
        assert_eq!(records.len(), 1, "{mode}: {records:?}");
        let m = &records[0]["media"];
        if mode == "default" {
            assert!(
                echoed + 2 >= c.sent && c.received + 5 >= echoed && c.received > 20,
                "{mode}: no two-way audio: sent {}, inside got {echoed}, back {}",
                c.sent,
                c.received
            );
            assert_eq!(n(m, "dropped_source"), 0, "{m}");
        } else {
            assert_eq!((echoed, c.received), (0, 0), "{mode}: media passed");
            assert_eq!(n(m, "dropped_source"), c.sent, "{m}");
            assert_eq!(n(&stats, "engine.media.dropped_source"), c.sent, "{stats}");
        }
    }
    eprintln!("{}", figures.join("\n"));
}

/// A caller's NAT binding moves mid-call: after 2.5 s of silence (more than the default
/// `relatch_idle_ms`, 2000) its RTP comes from a new port. The stream re-latches to it (counted
/// once), and the return media follows; packets from the new port during the first second of
/// the call, while the old port was live, were dropped.
#[test]
fn a_moved_nat_binding_re_latches_after_the_idle_time() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = start("media-relatch", uas.sip, "");
    let mut call = call(&mut gw, "127.63.0.1", None);
    let gw_media = call.gw_media.unwrap();
    let first = call.start_media();
    std::thread::sleep(Duration::from_millis(400));
    // The future port tries while the first is live: dropped.
    let moved = UdpSocket::bind("127.63.0.1:0").unwrap();
    let early = Injector::start(moved.try_clone().unwrap(), gw_media, 10, 0);
    std::thread::sleep(Duration::from_millis(600));
    let (early_sent, early_back) = early.stop();
    let a = first.stop();
    std::thread::sleep(Duration::from_millis(2500));
    call.rtp = Arc::new(moved);
    let second = call.start_media();
    std::thread::sleep(Duration::from_millis(1500));
    let b = second.stop();
    assert!(call.hangup(Duration::from_secs(5)), "BYE not answered");
    std::thread::sleep(Duration::from_millis(300));
    let (stats, records) = stop(&mut gw);
    eprintln!(
        "before: sent {} back {}; early from the new port: {early_sent} (back {early_back}); \
         after the move: sent {} back {}",
        a.sent, a.received, b.sent, b.received
    );
    assert!(a.received > 10, "no audio before the move: {a:?}");
    assert_eq!(early_back, 0);
    assert!(
        b.received + 5 >= b.sent && b.received > 20,
        "no audio after the move: {b:?}"
    );
    let m = &records[0]["media"];
    assert_eq!(n(m, "relatches"), 1, "{m}");
    assert_eq!(n(m, "dropped_source"), early_sent, "{m}");
    assert_eq!(n(&stats, "engine.media.relatches"), 1, "{stats}");
}
