//! `sgw replay` on the H.323 captures against tshark: H.225.0, H.245 and RAS message counts, and
//! no decode error on a PDU that tshark decodes cleanly (the ones tshark flags must be clean
//! errors); `--inside h323 --inside-family ipv6 --out` read back by tshark without errors.
//!
//! What is counted, precisely: tshark's per-PDU fields, not frames. A frame may hold several
//! PDUs (one TCP segment with two H.245 TPKTs) and a frame of one protocol may hold none of
//! another, so the counts are the occurrences of
//! - `h225.h323_message_body` (one per H.225.0 call signalling message, a Q.931 message with
//!   an H323-UserInformation; tshark sets it for the malformed Setup too) against our
//!   `h225_messages`,
//! - `h245.pdu_type` (one per MultimediaSystemControlMessage) against `h245_messages`,
//! - `h225.RasMessage` (one per RAS datagram, malformed one included) against `ras_messages`.
//!
//! Empty TPKT keepalives are neither tshark's nor our messages.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const CAPTURES: &[&str] = &[
    "ndpi/h323.pcap",
    "wireshark-samplecaptures/rtp_example.pcap",
    "wireshark-samplecaptures/SIP_CALL_RTP_G711",
];

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpora/pcap")
        .join(name)
}

fn tshark() -> Option<&'static str> {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("tshark");
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("tshark is required under CI (apt-get install tshark)");
    }
    eprintln!("skipped: tshark not installed");
    None
}

/// tshark's fields per frame: (frame number, one value list per field).
fn tshark_fields(path: &Path, filter: &str, fields: &[&str]) -> Vec<(u64, Vec<String>)> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-E", "occurrence=a"]);
    cmd.args(["-e", "frame.number"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut cols = l.split('\t');
            let frame = cols.next().unwrap().parse().unwrap();
            (frame, cols.map(str::to_owned).collect())
        })
        .collect()
}

/// Occurrences of a field over the capture (tshark joins repeats in a frame with ',').
fn tshark_count(path: &Path, field: &str) -> u64 {
    tshark_fields(path, field, &[field])
        .iter()
        .map(|(_, v)| v[0].split(',').filter(|s| !s.is_empty()).count() as u64)
        .sum()
}

fn replay(path: &Path, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sgw"))
        .arg("replay")
        .arg("--json")
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn h323_counts_equal_tsharks() {
    let Some(_) = tshark() else { return };
    for name in CAPTURES {
        let path = corpus(name);
        if !path.exists() {
            panic!("{} missing", path.display());
        }
        let report = replay(&path, &[]);
        let s = &report["summary"];
        let ours = |k: &str| s[k].as_u64().unwrap();
        let want = [
            (
                "h225_messages",
                tshark_count(&path, "h225.h323_message_body"),
            ),
            ("h245_messages", tshark_count(&path, "h245.pdu_type")),
            ("ras_messages", tshark_count(&path, "h225.RasMessage")),
        ];
        for (k, n) in want {
            assert_eq!(ours(k), n, "{name}: {k}");
        }
        eprintln!(
            "{name}: h225 {} h245 {} ras {} (equal to tshark)",
            ours("h225_messages"),
            ours("h245_messages"),
            ours("ras_messages")
        );

        // Frames tshark cannot decode cleanly; every other PDU must decode here.
        let bad: BTreeSet<u64> = tshark_fields(
            &path,
            "(h225 || h245) && (_ws.malformed || _ws.expert.severity >= error)",
            &[],
        )
        .into_iter()
        .map(|(f, _)| f)
        .collect();
        let mut rejected = BTreeSet::new();
        for m in report["messages"].as_array().unwrap() {
            let p = m["protocol"].as_str().unwrap();
            if !matches!(p, "h225" | "h245" | "ras") {
                continue;
            }
            let frame = m["frame"].as_u64().unwrap();
            let malformed = m["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("malformed"));
            if malformed {
                assert!(
                    bad.contains(&frame),
                    "{name}: frame {frame} decodes in tshark but not here: {m}"
                );
                rejected.insert(frame);
            }
        }
        assert_eq!(
            rejected, bad,
            "{name}: tshark's malformed frames are our errors"
        );
    }
}

/// A SIP capture re-emitted as H.323 toward an IPv6 inside: tshark reads every Setup, with
/// fastStart in iP6Address, and finds nothing malformed.
#[test]
fn sip_to_h323_ipv6_out_decodes_in_tshark() {
    let Some(_) = tshark() else { return };
    let dir = std::env::temp_dir().join(format!("sgw-h323-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.pcap");
    let path = corpus("wireshark-samplecaptures/SIP_CALL_RTP_G711");
    let report = replay(
        &path,
        &[
            "--inside",
            "h323",
            "--inside-family",
            "ipv6",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(report["summary"]["inside_packets"].as_u64().unwrap() > 0);
    let h225 = tshark_fields(
        &out,
        "h225",
        &[
            "h225.h323_message_body",
            "ipv6.dst",
            "h245.iP6Address_element",
        ],
    );
    assert!(!h225.is_empty(), "no H.225.0 in --out");
    assert!(h225.iter().all(|(_, v)| v[1].starts_with("fd00:5357::")));
    assert!(
        h225.iter().any(|(_, v)| !v[2].is_empty()),
        "no IPv6 fastStart"
    );
    let bad = tshark_fields(&out, "_ws.malformed || _ws.expert.severity >= error", &[]);
    assert!(bad.is_empty(), "tshark finds errors in frames {bad:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
