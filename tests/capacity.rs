//! 2,000 concurrent calls through the gateway pair (issue 11): `sgw run --role both` with a
//! sipp UAS as GW1's next hop, and a sipp UAC placing 2,000 calls (INVITE with SDP, 200, ACK)
//! that each stay up 60 s before their BYE. Every call must succeed, all 2,000 must be up at
//! once (sipp's own count of current calls, and four media sockets per call in the gateway),
//! and the gateway's resident memory may grow by at most [`MAX_KIB_PER_CALL`] per call over
//! its idle RSS: the bound BENCHMARKS.md documents ("Memory per call").
//!
//! Media ports lie below the kernel's ephemeral range (free-port picks never land there): GW2's
//! on 127.0.0.1 and GW1's on 127.0.0.6, 16000-23999 each (4,000 calls).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gateway::{rss_kib, serial, Gateway, Setup};
use support::*;

/// Calls held at once.
const CALLS: u32 = 2_000;
/// How long each call stays up (sipp's `-d`).
const HOLD: Duration = Duration::from_secs(60);
/// Calls placed per second: a debug build (as CI runs it) keeps up on two shared cores; all
/// 2,000 are up after 16 s, and together until the first ends at 60 s.
const RATE: u32 = 125;
/// Resident memory per call, both halves, KiB, at the peak (the 2,000 calls are set up within
/// 16 s, so their set-up transactions, held 32 s, are all still there then): the bound
/// BENCHMARKS.md documents. Measured 25 KiB (release and debug builds). The goal of issue 11
/// is 8 KiB.
const MAX_KIB_PER_CALL: u64 = 32;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The last row's `column` of a sipp `-trace_stat` file, and the largest value it had.
fn stat(path: &std::path::Path, column: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut rows = text.lines().map(|l| l.split(';').collect::<Vec<_>>());
    let Some(header) = rows.next() else {
        return (0, 0);
    };
    let i = header
        .iter()
        .position(|h| *h == column)
        .unwrap_or_else(|| panic!("no {column} in {}", path.display()));
    let values: Vec<u64> = rows
        .filter_map(|r| r.get(i).and_then(|v| v.trim().parse().ok()))
        .collect();
    (
        values.last().copied().unwrap_or(0),
        values.iter().copied().max().unwrap_or(0),
    )
}

#[test]
fn two_thousand_calls_are_held_for_a_minute_within_the_memory_bound() {
    let test = "two_thousand_calls_are_held_for_a_minute_within_the_memory_bound";
    if !sipp_available(test) {
        return;
    }
    let _serial = serial();
    let dir = Scratch::new("capacity-uas");
    let uas_port = free_udp_port("127.0.0.1");
    let uas_media = free_rtp_port("127.0.0.1").to_string();
    let mut uas = Proc::spawn(
        "sipp uas",
        sipp(&dir.0)
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas_port.to_string()])
            .args(["-mp", &uas_media, "-timeout", "300s"]),
    );
    std::thread::sleep(Duration::from_millis(300));

    let mut setup = Setup::new(
        (16_000, 23_999),
        (16_000, 23_999),
        std::net::SocketAddr::from(([127, 0, 0, 1], uas_port)),
    );
    setup.gw1_media_ip = "127.0.0.6";
    setup.quiet = true;
    // One sipp source placing calls at RATE: the per-source rate limits are opened wide.
    setup.limits = "max_calls = 5000\n\
                    calls_per_source = 1000000\n\
                    calls_per_source_burst = 1000000\n\
                    requests_per_source = 1000000\n\
                    requests_per_source_burst = 1000000\n\
                    block_after = 0";
    let mut gw = Gateway::start("capacity", &setup);
    let pid = gw.p.child.id();
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = rss_kib(pid);
    let idle_fds = open_fds(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut peak_rss, mut peak_fds) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                peak_rss = rss_kib(pid).max(peak_rss);
                peak_fds = open_fds(pid).max(peak_fds);
                std::thread::sleep(Duration::from_millis(250));
            }
            (peak_rss, peak_fds)
        })
    };

    let stats = gw.dir.0.join("uac.csv");
    let port = free_udp_port("127.0.0.1").to_string();
    let mp = free_rtp_port("127.0.0.1").to_string();
    let mut uac = sipp(&gw.dir.0);
    uac.args(["-sn", "uac", &gw.sip.to_string(), "-i", "127.0.0.1"])
        .args(["-p", &port, "-mp", &mp])
        .args(["-r", &RATE.to_string(), "-m", &CALLS.to_string()])
        .args(["-l", &CALLS.to_string()])
        .args(["-d", &HOLD.as_millis().to_string()])
        .args(["-trace_stat", "-fd", "1", "-stf", stats.to_str().unwrap()])
        .args(["-timeout", "110s"]);
    let t0 = Instant::now();
    let (status, out) = run_bounded("sipp uac", &mut uac, Duration::from_secs(115));
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (peak_rss, peak_fds) = sampler.join().unwrap();

    let (ok, _) = stat(&stats, "SuccessfulCall(C)");
    let (failed, _) = stat(&stats, "FailedCall(C)");
    let (_, most_up) = stat(&stats, "CurrentCall");
    let per_call = peak_rss.saturating_sub(idle_rss) / u64::from(CALLS);
    println!(
        "{CALLS} calls held {HOLD:?} in {took:.1?}: {ok} successful, {failed} failed, \
         at most {most_up} up at once; RSS {idle_rss} KiB idle, {peak_rss} KiB at most \
         ({per_call} KiB per call); {idle_fds} descriptors idle, {peak_fds} at most"
    );
    let (gw2, gw1) = gw.stop();
    uas.terminate(Duration::from_secs(5));

    assert!(status.success(), "sipp UAC failed:\n{out}");
    assert_eq!((ok, failed), (u64::from(CALLS), 0), "every call completes");
    assert_eq!(most_up, u64::from(CALLS), "all calls were up at once");
    assert!(
        peak_fds >= idle_fds + 4 * CALLS as usize,
        "four media sockets per call: {peak_fds} descriptors at most, {idle_fds} idle"
    );
    assert!(
        per_call <= MAX_KIB_PER_CALL,
        "{per_call} KiB of RSS per call (bound {MAX_KIB_PER_CALL} KiB): \
         {idle_rss} KiB idle, {peak_rss} KiB with {CALLS} calls"
    );
    for (half, s) in [("gw2", &gw2), ("gw1", &gw1)] {
        assert_eq!(
            support::gateway::n(s, "driver.bind_failures"),
            0,
            "{half}: {s}"
        );
    }
}
