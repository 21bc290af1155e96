//! The gateway's log (issue 12): `sgw run --log-format json` writes one JSON object per line on
//! stderr with an RFC 3339 UTC timestamp and a level; the lines about a call carry its id (the
//! `call` of its call record); a flood of malformed datagrams from one source is a handful of
//! lines (a few one by one, then one summary), not one per datagram. `RUST_LOG` filters.
//! Live on loopback with the raw SIP client (no sipp needed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::gateway::{config_text, serial, sip_port, Setup};
use support::rawsip::{InsideUas, RawCall};
use support::*;

/// `2026-12-05T09:00:00.123456Z`: RFC 3339, UTC, microseconds.
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 27
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && b[26] == b'Z'
}

/// Lines on stdout (not the log): the listening addresses and the exit counters.
fn is_stdout_line(l: &str) -> bool {
    l.starts_with("gw2 sip ") || l.starts_with("gw1 sip ") || l.starts_with("stats ")
}

/// Waits until `pred` holds for one of the JSON log lines seen.
fn wait_json(p: &mut Proc, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        p.drain();
        if p.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| pred(&v))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what} within {timeout:?}; output:\n{}",
            p.seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn msg(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

#[test]
fn json_lines_carry_time_level_and_call_id_and_a_flood_is_summarised() {
    let _serial = serial();
    let uas = InsideUas::start();
    let s = Setup::new((8600, 8639), (8700, 8739), uas.sip);
    let (sip, tunnel, gw1) = (
        sip_port(),
        free_tcp_port("127.0.0.1"),
        free_udp_port("127.0.0.1"),
    );
    let dir = Scratch::new("logs");
    let cfg = dir.file("sgw.toml", &config_text(&s, sip, tunnel, gw1, None));
    let mut p = Proc::spawn(
        "sgw run --log-format json",
        sgw().arg("run").arg("--config").arg(&cfg).args([
            "--role",
            "both",
            "--log-format",
            "json",
            "-v",
        ]),
    );
    p.wait_line("gw1 sip", Duration::from_secs(30));
    for half in ["gw1", "gw2"] {
        wait_json(&mut p, "tunnel up", Duration::from_secs(30), |v| {
            v["half"] == half && msg(v).starts_with("tunnel up")
        });
    }
    let gw2 = SocketAddr::from(([127, 0, 0, 1], sip));

    // One call, answered inside and hung up from outside.
    let mut call = RawCall::invite(
        gw2,
        "127.0.0.1",
        &format!("sip:100@{gw2}"),
        "logs",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|(code, seen)| {
        panic!("call not answered: {code} ({seen})\n{}", {
            p.drain();
            p.seen.join("\n")
        })
    });
    assert!(call.hangup(Duration::from_secs(5)), "no 200 to BYE");
    for half in ["gw1", "gw2"] {
        wait_json(&mut p, "call ended", Duration::from_secs(10), |v| {
            v["half"] == half && msg(v).starts_with("call ended ")
        });
    }

    // A flood of malformed requests (no header at all) from one source.
    const FLOOD: usize = 2000;
    let flood = UdpSocket::bind("127.0.0.9:0").unwrap();
    for i in 0..FLOOD {
        flood
            .send_to(format!("OPTIONS sip:{i}@x SIP/2.0\r\n\r\n").as_bytes(), gw2)
            .unwrap();
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Let GW2 take them in; the summary comes at the end of the interval or at exit.
    std::thread::sleep(Duration::from_millis(500));
    p.terminate(Duration::from_secs(20));
    let stats2 = p.stats("gw2");
    let out = p.seen.join("\n");

    let mut logs = Vec::new();
    for l in p.seen.iter().filter(|l| !is_stdout_line(l)) {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}\n{out}"));
        let ts = v["timestamp"].as_str().unwrap_or("");
        assert!(is_rfc3339_utc(ts), "timestamp {ts:?} in {l}");
        let level = v["level"].as_str().unwrap_or("");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level),
            "level {level:?} in {l}"
        );
        assert!(v["message"].is_string(), "no message in {l}");
        assert!(v["target"].is_string(), "no target in {l}");
        logs.push(v);
    }

    // The call: each half's record, and every line about it carries the record's id.
    for half in ["gw2", "gw1"] {
        let ended: Vec<&Value> = logs
            .iter()
            .filter(|v| v["half"] == half && msg(v).starts_with("call ended "))
            .collect();
        assert_eq!(ended.len(), 1, "{half}: call records\n{out}");
        let record: Value =
            serde_json::from_str(msg(ended[0]).trim_start_matches("call ended ")).unwrap();
        let id = record["call"].as_u64().unwrap();
        assert_eq!(ended[0]["call"].as_u64(), Some(id), "{half}: {}", ended[0]);
        // With -v each accepted SIP message is logged (before the flood, only the call's):
        // the INVITE, ACK and BYE on GW2, the answers from the inside on GW1, each with the id.
        let about: Vec<&Value> = logs
            .iter()
            .filter(|v| v["half"] == half && msg(v).starts_with("accepted "))
            .collect();
        assert!(about.len() >= 2, "{half}: lines about the call\n{out}");
        for v in about {
            assert_eq!(
                v["call"].as_u64(),
                Some(id),
                "{half}: line about the call: {v}"
            );
        }
    }

    // The flood: a few lines one by one, then one summary with the count.
    let from_flood: Vec<&Value> = logs
        .iter()
        .filter(|v| {
            v["source"]
                .as_str()
                .is_some_and(|s| s == "127.0.0.9" || s.starts_with("127.0.0.9:"))
        })
        .collect();
    // GW2 blocks the source after a while; what it drops then is counted in
    // `dropped_blocked`, and only the first drop is a rejection.
    let rejected = stats2["engine"]["rejected"].as_u64().unwrap();
    assert!(rejected >= 100, "GW2 rejected only {rejected}\n{out}");
    assert!(
        (2..=6).contains(&from_flood.len()),
        "{} lines about the flood of {FLOOD}:\n{}",
        from_flood.len(),
        from_flood
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let summary = from_flood
        .iter()
        .find(|v| msg(v).contains("rejected in the last 10 s"))
        .unwrap_or_else(|| panic!("no flood summary\n{out}"));
    let one_by_one = from_flood.len() as u64 - 1;
    let total = summary["rejected"].as_u64().unwrap();
    // The summary counts every rejection reported; the drops of the blocked source after the
    // first are counted in the stats only.
    let dropped = stats2["engine"]["limits"]["dropped_blocked"]
        .as_u64()
        .unwrap();
    assert!(
        total <= rejected && total + dropped >= rejected,
        "summary {total}, rejected {rejected}, dropped_blocked {dropped}: {summary}"
    );
    assert!(
        msg(summary).contains(&format!("({one_by_one} logged one by one)")),
        "{summary}"
    );
    assert_eq!(summary["level"], "WARN", "{summary}");
    println!(
        "{} log lines; flood of {FLOOD}: {} lines, summary: {}",
        logs.len(),
        from_flood.len(),
        msg(summary)
    );
}

#[test]
fn rust_log_filters_and_an_invalid_one_is_refused() {
    let (st, out) = run_bounded(
        "sgw run RUST_LOG invalid",
        sgw()
            .env("RUST_LOG", "sgw=loudest")
            .args(["run", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(20),
    );
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(out.contains("RUST_LOG"), "{out}");

    // RUST_LOG=warn: the demo starts, its tunnel comes up, and no info line is written.
    let _serial = serial();
    let mut p = Proc::spawn(
        "sgw run RUST_LOG=warn",
        sgw()
            .env("RUST_LOG", "warn")
            .args(["run", "--listen", "127.0.0.1:0"]),
    );
    let banner = p.wait_line("sgw demo:", Duration::from_secs(30));
    assert!(!banner.contains("NOT up"), "{banner}");
    std::thread::sleep(Duration::from_millis(300));
    p.terminate(Duration::from_secs(20));
    assert!(
        !p.seen.iter().any(|l| l.contains(" INFO ")),
        "info lines under RUST_LOG=warn:\n{}",
        p.seen.join("\n")
    );
    p.stats("gw2");
}
