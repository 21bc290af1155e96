//! `sgw run` with no configuration (the built-in demo: both halves on loopback joined by the
//! real mutual-TLS tunnel, an answering endpoint inside) answers `sipp -sn uac` with 10
//! successful calls: the acceptance test of the live gateway issue.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;
use support::*;

#[test]
fn demo_answers_ten_sipp_calls() {
    if !sipp_available("demo_answers_ten_sipp_calls") {
        return;
    }
    let dir = Scratch::new("live-sipp");
    let mut gw = Proc::spawn("sgw run", sgw().args(["run", "--listen", "127.0.0.1:0"]));
    let line = gw.wait_line("call:", Duration::from_secs(20));
    assert!(
        !gw.seen.iter().any(|l| l.contains("NOT up")),
        "{}",
        gw.seen.join("\n")
    );
    let target = line
        .rsplit_once('@')
        .map(|(_, a)| a.trim().to_owned())
        .expect("call: sip:service@HOST:PORT");
    let port = free_udp_port("127.0.0.1").to_string();
    let (status, out) = run_bounded(
        "sipp uac",
        sipp(&dir.0).args([
            "-sn",
            "uac",
            &target,
            "-m",
            "10",
            "-p",
            &port,
            "-i",
            "127.0.0.1",
        ]),
        Duration::from_secs(60),
    );
    gw.terminate(Duration::from_secs(5));
    assert!(
        status.success(),
        "sipp failed ({status}):\n{out}\n--- sgw:\n{}",
        gw.seen.join("\n")
    );
    assert!(out.contains("Successful call"), "{out}");
    let stats = gw.stats("gw2");
    assert_eq!(stats["engine"]["calls"], 10, "{stats}");
    assert_eq!(stats["driver"]["tunnel_ups"], 1, "{stats}");
}

#[test]
fn demo_answers_sipp_over_tcp() {
    if !sipp_available("demo_answers_sipp_over_tcp") {
        return;
    }
    let dir = Scratch::new("live-sipp-tcp");
    let mut gw = Proc::spawn(
        "sgw run",
        sgw().args(["run", "-q", "--listen", "127.0.0.1:0"]),
    );
    let line = gw.wait_line("call:", Duration::from_secs(20));
    let target = line
        .rsplit_once('@')
        .map(|(_, a)| a.trim().to_owned())
        .unwrap();
    let (status, out) = run_bounded(
        "sipp uac tcp",
        sipp(&dir.0).args([
            "-sn",
            "uac",
            "-t",
            "t1",
            &target,
            "-m",
            "3",
            "-i",
            "127.0.0.1",
        ]),
        Duration::from_secs(60),
    );
    gw.terminate(Duration::from_secs(5));
    assert!(
        status.success(),
        "sipp over TCP failed ({status}):\n{out}\n--- sgw:\n{}",
        gw.seen.join("\n")
    );
    assert_eq!(gw.stats("gw2")["engine"]["calls"], 3);
}
