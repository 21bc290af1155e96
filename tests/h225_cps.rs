//! Benchmark, not run by the test suite: H.225.0 calls per second through the gateway pair,
//! against SIP calls per second in the same run (issue 10). Run it on a quiet machine with
//!
//!     cargo test --release --test h225_cps -- --ignored --nocapture
//!
//! One `sgw run --role both` (H.225.0 and SIP listeners on GW2), one inside `sipp -sn uas`
//! behind GW1; both loads are closed loops with [`IN_FLIGHT`] calls at a time:
//!
//! - SIP: `sipp -sn uac` (INVITE with SDP, 100/180/200, ACK, BYE/200, no media);
//! - H.225.0: [`IN_FLIGHT`] threads, each placing calls one after another on fresh TCP
//!   connections: Setup with a fastStart PCMU offer, Call Proceeding / Alerting / Connect back,
//!   Release Complete (the inside call ends with BYE).
//!
//! Each load places [`CALLS`] calls; a call that is not answered counts as failed. It prints
//! both rates and their ratio, and the load average before and after.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use codecs::meta::Cause;
use codecs::q931;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gateway::*;
use support::h225;
use support::*;

const CALLS: u64 = 10_000;
const IN_FLIGHT: u64 = 16;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Q.931 message types of the complete TPKT frames in `got` (removed from it).
fn q931_types(got: &mut Vec<u8>) -> Vec<u8> {
    let mut types = Vec::new();
    while got.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([got[2], got[3]]));
        if len < 4 || got.len() < len {
            break;
        }
        if let Ok((_, mt, _)) = q931::peek(&got[4..len]) {
            types.push(u8::from(mt));
        }
        got.drain(..len);
    }
    types
}

/// One H.225.0 call: true when it was answered (Connect) and released.
fn h225_call(target: SocketAddr, call_ref: u16) -> bool {
    let spec = h225::SetupSpec {
        call_ref,
        codec: (0, "PCMU"),
        ..h225::SetupSpec::new(SocketAddr::from(([127, 0, 0, 1], 9)))
    };
    let Ok(mut conn) = TcpStream::connect(target) else {
        return false;
    };
    let _ = conn.set_nodelay(true);
    if conn.write_all(&h225::setup(&spec)).is_err() {
        return false;
    }
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut answered = false;
    while !answered {
        let mut b = [0u8; 4096];
        match conn.read(&mut b) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
        let types = q931_types(&mut got);
        if types.contains(&0x5a) {
            return false;
        }
        answered = types.contains(&0x07);
    }
    let mut conference_id = [0xc0; 16];
    conference_id[..2].copy_from_slice(&call_ref.to_be_bytes());
    let mut call_identifier = [0xca; 16];
    call_identifier[..2].copy_from_slice(&call_ref.to_be_bytes());
    let ids = translators::h323::CallIds {
        call_ref,
        conference_id,
        call_identifier,
    };
    let rc = translators::h323::release_complete_message(&ids, false, Cause::NORMAL_CLEARING)
        .unwrap()
        .to_vec()
        .unwrap();
    conn.write_all(&h225::tpkt(&rc)).is_ok()
}

#[test]
#[ignore = "benchmark: cargo test --release --test h225_cps -- --ignored --nocapture"]
fn h225_calls_per_second_against_sip() {
    assert!(sipp_available("h225_cps"), "sipp is needed");
    let _serial = serial();
    let uas_port = free_udp_port("127.0.0.1");
    let inside = addr(&format!("127.0.0.1:{uas_port}"));
    let mut s = Setup::new((20_000, 29_999), (30_000, 39_999), inside);
    s.quiet = true;
    s.h225 = true;
    s.limits = "max_calls = 100000\ncalls_per_source = 1000000\ncalls_per_source_burst = 1000000\n\
                requests_per_source = 1000000\nrequests_per_source_burst = 1000000\n\
                max_tcp_per_source = 10000\n";
    s.gw1_media_ip = "127.0.0.2";
    let gw = Gateway::start("h225-cps", &s);
    let dir = gw.dir.0.clone();
    let mut uas_cmd = sipp(&dir);
    uas_cmd
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas_port.to_string()])
        .args(["-mp", &free_rtp_port("127.0.0.1").to_string()]);
    let mut uas = Proc::spawn("sipp uas", &mut uas_cmd);
    std::thread::sleep(Duration::from_millis(500));
    let before = load_average();

    // SIP.
    let t0 = Instant::now();
    let mut uac = sipp(&dir);
    uac.args(["-sn", "uac", &gw.sip.to_string(), "-i", "127.0.0.1"])
        .args(["-p", &free_udp_port("127.0.0.1").to_string()])
        .args(["-mp", &free_rtp_port("127.0.0.1").to_string()])
        .args([
            "-m",
            &CALLS.to_string(),
            "-l",
            &IN_FLIGHT.to_string(),
            "-r",
            "100000",
        ]);
    let (st, out) = run_bounded("sipp uac", &mut uac, Duration::from_secs(300));
    let sip_secs = t0.elapsed().as_secs_f64();
    assert!(st.success(), "sipp uac:\n{out}");
    let sip_cps = CALLS as f64 / sip_secs;

    // H.225.0.
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let target = gw.h225;
    let t0 = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (ok, failed, next) = (ok.clone(), failed.clone(), next.clone());
            std::thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= CALLS {
                    return;
                }
                let call_ref = u16::try_from(n % 0x7fff + 1).unwrap();
                if h225_call(target, call_ref) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let h225_secs = t0.elapsed().as_secs_f64();
    let h225_ok = ok.load(Ordering::Relaxed);
    let h225_cps = h225_ok as f64 / h225_secs;
    let after = load_average();
    uas.terminate(Duration::from_secs(5));
    eprintln!(
        "h225_cps: SIP {sip_cps:.0} calls/s ({CALLS} calls in {sip_secs:.1} s, 0 failed); \
         H.225.0 {h225_cps:.0} calls/s ({h225_ok} answered, {} failed, in {h225_secs:.1} s); \
         ratio H.225.0/SIP {:.2}; {IN_FLIGHT} calls in flight; load average before {before}, \
         after {after}",
        failed.load(Ordering::Relaxed),
        h225_cps / sip_cps
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}
