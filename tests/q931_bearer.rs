//! The Bearer capability variants of Q.931 §4.5.5 in H.225.0 Setups, judged by GW2 and by
//! tshark's Q.931 dissector (the independent reference): GW2 refuses exactly the Setups tshark
//! flags as malformed, and accepts the others.
//!
//! Each variant replaces the Bearer capability of the test Setup (tests/support/h225.rs: a
//! fastStart offer of PCMA) and goes on its own TCP connection, from its own source address,
//! to port 1720 in one pcap written with the crate's capture writer. `tshark -r` gives its
//! malformed and expert-error frames and its decode of the bearer (transfer rate, rate
//! multiplier, layer 1 protocol); `sgw replay --json` gives GW2's verdict on each Setup. Where
//! GW2 types the bearer, its reading must be tshark's.
//!
//! The same for a Status (Q.931 clause 3.1.16, H.225.0 clause 7.4.5): its Cause and Call state
//! only have to be there; nothing acts on their contents.
//!
//! The one refusal tshark does not make is a Setup without any Bearer capability: H.225.0
//! clause 7.3.1 makes the IE mandatory (Q.931 §5.8.6.1: cause 96), while tshark does not check
//! which IEs a message holds. It is checked on its own below.
//!
//! Without tshark the test says "skipped", except under `CI=true`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use codecs::q931;
use sgw::capture::{CaptureWriter, OutLink};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

/// How a variant must come out, in tshark and in GW2 alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A valid encoding of Q.931 §4.5.5 / H.225.0 clause 7.2.2.
    Valid,
    /// Contents tshark reads without complaint although Q.931 would code them otherwise: GW2
    /// takes them too (the bearer decides nothing over H.225.0).
    Tolerated,
    /// The IE's length runs past the message: tshark's malformed packet.
    Malformed,
}

/// (what, the bytes replacing the Bearer capability IE, expectation).
const VARIANTS: &[(&str, &str, Want)] = &[
    ("speech 64k G.711 u-law", "04 03 80 90 a2", Want::Valid),
    ("speech 64k G.711 A-law", "04 03 80 90 a3", Want::Valid),
    ("3.1 kHz audio G.711 u-law", "04 03 90 90 a2", Want::Valid),
    ("3.1 kHz audio G.711 A-law", "04 03 90 90 a3", Want::Valid),
    ("speech 64k H.221/H.242", "04 03 80 90 a5", Want::Valid),
    (
        "unrestricted digital 64k H.221",
        "04 03 88 90 a5",
        Want::Valid,
    ),
    (
        "unrestricted digital 2x64k H.221",
        "04 03 88 91 a5",
        Want::Valid,
    ),
    (
        "unrestricted digital 384k H.221",
        "04 03 88 93 a5",
        Want::Valid,
    ),
    (
        "unrestricted digital 1536k H.221",
        "04 03 88 95 a5",
        Want::Valid,
    ),
    (
        "unrestricted digital 1920k H.221",
        "04 03 88 97 a5",
        Want::Valid,
    ),
    ("multirate x2 H.221", "04 04 88 98 82 a5", Want::Valid),
    ("multirate x6 H.221", "04 04 88 98 86 a5", Want::Valid),
    ("multirate x30 H.221", "04 04 88 98 9e a5", Want::Valid),
    (
        "multirate x6, octet 4 bit 8 clear",
        "04 04 88 18 86 a5",
        Want::Valid,
    ),
    ("multirate x6, no layer 1", "04 03 88 98 86", Want::Valid),
    ("multirate x6 G.711 A-law", "04 04 88 98 86 a3", Want::Valid),
    (
        "unrestricted digital with tones",
        "04 03 91 90 a5",
        Want::Valid,
    ),
    ("video 64k H.221", "04 03 98 90 a5", Want::Valid),
    ("speech, no octet 5", "04 02 80 90", Want::Valid),
    ("packet mode", "04 03 88 c0 a5", Want::Valid),
    (
        "V.110 with 5a, layers 2 and 3",
        "04 06 88 90 21 8f c2 e6",
        Want::Valid,
    ),
    ("H.221 with octet 5a", "04 04 88 90 25 80", Want::Valid),
    ("national coding standard", "04 03 c0 90 a2", Want::Valid),
    (
        "two bearers under a repeat indicator",
        "d2 04 03 88 90 a5 04 03 80 90 a3",
        Want::Valid,
    ),
    ("octet 3a", "04 04 08 c0 90 a2", Want::Tolerated),
    (
        "octet 4 bit 8 clear, no 4.1",
        "04 03 80 10 a2",
        Want::Tolerated,
    ),
    ("octet 4 missing", "04 01 88", Want::Tolerated),
    ("empty", "04 00", Want::Tolerated),
    (
        "multirate without octet 4.1",
        "04 02 88 98",
        Want::Tolerated,
    ),
    (
        "octet 4.1 with bit 8 clear",
        "04 04 88 98 06 a5",
        Want::Tolerated,
    ),
    (
        "octet 5 announcing a 5a that is missing",
        "04 03 80 90 25",
        Want::Tolerated,
    ),
    ("length past the message", "04 ff 88 90 a5", Want::Malformed),
    (
        "length into the User-user IE",
        "04 40 88 90 a5",
        Want::Malformed,
    ),
];

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The test Setup (call reference `call_ref`) with its Bearer capability IE replaced by `ie`.
fn setup_with_bearer(call_ref: u16, ie: &[u8]) -> Vec<u8> {
    let rtp = SocketAddr::from(([192, 0, 2, 200], 40_000));
    let base = h225::setup_q931(&h225::SetupSpec {
        call_ref,
        ..h225::SetupSpec::new(rtp)
    });
    h225::with_bearer(&base, ie)
}

/// The source address of variant `i`: its own host, so no per-source limit applies.
fn source(i: usize) -> SocketAddr {
    SocketAddr::from((
        [10, 7, (i / 200) as u8, (i % 200) as u8 + 1],
        40_000 + i as u16,
    ))
}

const GW2: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1)),
    1720,
);

fn write_pcap(path: &Path, setups: &[Vec<u8>]) {
    let mut w = CaptureWriter::create(path, OutLink::Ethernet).unwrap();
    for (i, q) in setups.iter().enumerate() {
        let t = Duration::from_secs(i as u64);
        w.write_tcp(t, source(i), GW2, &h225::tpkt(q)).unwrap();
        w.close_tcp(t + Duration::from_millis(500), source(i), GW2)
            .unwrap();
    }
    w.finish().unwrap();
}

/// tshark's view per source port: (flagged malformed or expert error, rate, multiplier, uil1),
/// for the frames that carry Q.931.
type Decode = (bool, String, String, String);

fn tshark(path: &Path) -> BTreeMap<u16, Decode> {
    let fields = |filter: &str, extra: &[&str]| -> Vec<Vec<String>> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r")
            .arg(path)
            .args(["-Y", filter, "-T", "fields", "-E", "occurrence=f"])
            .args(["-e", "tcp.srcport"]);
        for f in extra {
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
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    };
    let mut out = BTreeMap::new();
    for row in fields(
        "q931",
        &[
            "q931.information_transfer_rate",
            "q931.bearer_capability.rate_multiplier",
            "q931.uil1",
        ],
    ) {
        out.insert(
            row[0].parse().unwrap(),
            (false, row[1].clone(), row[2].clone(), row[3].clone()),
        );
    }
    for row in fields(
        "tcp.dstport == 1720 && (_ws.malformed || _ws.expert.severity >= error)",
        &[],
    ) {
        out.entry(row[0].parse().unwrap()).or_default().0 = true;
    }
    out
}

/// GW2's verdict and reason on the Setup from each source port.
fn gw2(path: &Path) -> BTreeMap<u16, (String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_sgw"))
        .arg("replay")
        .arg("--json")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut verdicts = BTreeMap::new();
    for m in report["messages"].as_array().unwrap() {
        if m["protocol"] != "h225" {
            continue;
        }
        let src: SocketAddr = m["src"].as_str().unwrap().parse().unwrap();
        if src.port() < 40_000 {
            continue;
        }
        let v = (
            m["verdict"].as_str().unwrap().to_owned(),
            m["reason"].as_str().unwrap_or("").to_owned(),
        );
        // The first message from a caller is its Setup.
        verdicts.entry(src.port()).or_insert(v);
    }
    verdicts
}

fn tshark_present() -> bool {
    peer_available("q931_bearer", "tshark", &["--version"], "tshark")
}

/// Every variant: GW2 refuses as malformed exactly what tshark flags, accepts the rest, and
/// reads a bearer it types as tshark does.
#[test]
fn gw2_agrees_with_tshark_on_every_bearer_variant() {
    if !tshark_present() {
        return;
    }
    let dir = Scratch::new("q931-bearer");
    let pcap = dir.0.join("bearers.pcap");
    let setups: Vec<Vec<u8>> = VARIANTS
        .iter()
        .enumerate()
        .map(|(i, (_, ie, _))| setup_with_bearer(100 + i as u16, &hex(ie)))
        .collect();
    write_pcap(&pcap, &setups);
    let tshark = tshark(&pcap);
    let gw2 = gw2(&pcap);
    let mut problems = Vec::new();
    let mut table = String::new();
    for (i, (what, ie, want)) in VARIANTS.iter().enumerate() {
        let port = source(i).port();
        let Some((flagged, rate, mult, uil1)) = tshark.get(&port) else {
            problems.push(format!("{what}: tshark shows no Q.931 from port {port}"));
            continue;
        };
        let Some((verdict, reason)) = gw2.get(&port) else {
            problems.push(format!("{what}: GW2 reported no H.225.0 from port {port}"));
            continue;
        };
        let refused = verdict == "rejected" && reason.starts_with("malformed");
        table.push_str(&format!(
            "{what:45} {ie:35} tshark {:9} rate {rate:5} x{mult:3} l1 {uil1:5}  gw2 {verdict} {reason}\n",
            if *flagged { "malformed" } else { "clean" }
        ));
        if *flagged != refused {
            problems.push(format!(
                "{what} ({ie}): tshark {}, GW2 {verdict} {reason}",
                if *flagged {
                    "flags it"
                } else {
                    "decodes it cleanly"
                }
            ));
        }
        if *flagged != (*want == Want::Malformed) {
            problems.push(format!(
                "{what} ({ie}): expected {want:?}, tshark flagged={flagged}"
            ));
        }
        if !flagged && verdict != "accepted" {
            problems.push(format!("{what} ({ie}): GW2 {verdict} {reason}"));
        }
        // Where GW2 types the bearer, it reads what tshark reads.
        if let Ok(m) = q931::Message::decode(&setups[i]) {
            if let Some(b) = m.bearer_capability() {
                let ours = (
                    format!("0x{:02x}", u8::from(b.transfer_rate)),
                    b.rate_multiplier.map(|m| m.to_string()).unwrap_or_default(),
                    b.layer1
                        .map(|l| format!("0x{:02x}", u8::from(l)))
                        .unwrap_or_default(),
                );
                if b.coding_standard == q931::CodingStandard::Itu
                    && ours != (rate.clone(), mult.clone(), uil1.clone())
                {
                    problems.push(format!(
                        "{what} ({ie}): GW2 reads {ours:?}, tshark ({rate}, {mult}, {uil1})"
                    ));
                }
            } else if *want == Want::Valid {
                problems.push(format!("{what} ({ie}): a valid bearer GW2 does not type"));
            }
        }
    }
    eprintln!("{table}");
    assert!(problems.is_empty(), "{}\n{table}", problems.join("\n"));
}

/// A Setup without any Bearer capability: tshark does not check mandatory IEs, GW2 does
/// (H.225.0 clause 7.3.1) and answers cause 96.
#[test]
fn a_setup_without_bearer_capability_is_refused_with_cause_96() {
    if !tshark_present() {
        return;
    }
    let dir = Scratch::new("q931-no-bearer");
    let pcap = dir.0.join("no-bearer.pcap");
    let setups = vec![setup_with_bearer(100, &[])];
    write_pcap(&pcap, &setups);
    let port = source(0).port();
    let (flagged, ..) = tshark(&pcap)[&port].clone();
    assert!(!flagged, "tshark decodes it cleanly");
    let (verdict, reason) = gw2(&pcap)[&port].clone();
    assert_eq!(verdict, "rejected", "{reason}");
    assert!(
        reason.contains("Bearer") && reason.contains("cause 96"),
        "{reason}"
    );
}

/// Status messages in a call, with Cause and Call state IEs coded in every way tshark reads
/// without complaint: GW2 accepts each (it used to answer the odd ones with Release Complete,
/// cause 100, ending the caller's call); one whose IE runs past the message both flag.
#[test]
fn gw2_agrees_with_tshark_on_status_variants() {
    if !tshark_present() {
        return;
    }
    const STATUS: &[(&str, &str, bool)] = &[
        ("cause 30, active", "08 02 80 9e 14 01 0a", false),
        ("cause spare bit set", "08 02 90 9e 14 01 0a", false),
        ("cause without value", "08 01 80 14 01 0a", false),
        ("empty cause", "08 00 14 01 0a", false),
        ("cause value bit 8 clear", "08 02 80 1e 14 01 0a", false),
        ("cause with octet 3a", "08 03 00 80 9e 14 01 0a", false),
        ("empty call state", "08 02 80 9e 14 00", false),
        ("call state of two octets", "08 02 80 9e 14 02 0a 00", false),
        (
            "call state running past the message",
            "08 02 80 9e 14 05 0a",
            true,
        ),
    ];
    let dir = Scratch::new("q931-status");
    let pcap = dir.0.join("status.pcap");
    let mut w = CaptureWriter::create(&pcap, OutLink::Ethernet).unwrap();
    for (i, (_, ies, _)) in STATUS.iter().enumerate() {
        let call_ref = 300 + i as u16;
        let setup = setup_with_bearer(call_ref, &hex("04 03 80 90 a3"));
        let mut status = vec![0x08, 0x02];
        status.extend_from_slice(&call_ref.to_be_bytes());
        status.push(0x7d);
        status.extend_from_slice(&hex(ies));
        let t = Duration::from_secs(i as u64);
        w.write_tcp(t, source(i), GW2, &h225::tpkt(&setup)).unwrap();
        w.write_tcp(
            t + Duration::from_millis(100),
            source(i),
            GW2,
            &h225::tpkt(&status),
        )
        .unwrap();
        w.close_tcp(t + Duration::from_millis(500), source(i), GW2)
            .unwrap();
    }
    w.finish().unwrap();
    // tshark: the Status frames (message type 0x7d) it flags.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-Y", "q931.message_type == 0x7d", "-T", "fields"])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
        ])
        .output()
        .unwrap();
    let tshark: BTreeMap<u16, bool> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].parse().unwrap(), f[1..].iter().any(|x| !x.is_empty()))
        })
        .collect();
    let report = Command::new(env!("CARGO_BIN_EXE_sgw"))
        .args(["replay", "--json"])
        .arg(&pcap)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let mut problems = Vec::new();
    for (i, (what, ies, malformed)) in STATUS.iter().enumerate() {
        let port = source(i).port();
        let msgs: Vec<&serde_json::Value> = report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                m["protocol"] == "h225"
                    && m["src"]
                        .as_str()
                        .unwrap()
                        .parse::<SocketAddr>()
                        .unwrap()
                        .port()
                        == port
            })
            .collect();
        let Some(flagged) = tshark.get(&port) else {
            problems.push(format!("{what}: no Status in tshark"));
            continue;
        };
        let [setup, status] = msgs[..] else {
            problems.push(format!("{what}: GW2 reported {msgs:?}"));
            continue;
        };
        let refused = status["verdict"] == "rejected";
        eprintln!(
            "{what:40} {ies:28} tshark flagged {flagged:5} gw2 {} {}",
            status["verdict"], status["reason"]
        );
        if setup["verdict"] != "accepted" {
            problems.push(format!("{what}: the Setup was not accepted: {setup}"));
        }
        if *flagged != *malformed || refused != *malformed {
            problems.push(format!(
                "{what} ({ies}): expected malformed {malformed}, tshark flagged {flagged}, GW2 {status}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
