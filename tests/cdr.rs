//! Tamper-evident call records (tracker issue 9, "Non-repudiation"): the live gateway writes one
//! record per call to each half's chained and signed file, and `sgw cdr verify` finds every
//! kind of tampering, with exit status 0 intact, 1 tampered, 2 unreadable.
//!
//! The live tests run `sgw run --config FILE --role both` on loopback (the harness of
//! `tests/support/gateway.rs`) with `[gw2.records]` and `[gw1.records]` and the keys of
//! `sgw pki init`; the sipp test needs sipp (`sipp_available`). Their media ports are in
//! 7000-7999, a range no other test uses (tests of other binaries may run at the same time).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::gateway::{serial, Gateway, Setup};
use support::rawsip::{InsideUas, RawCall};
use support::*;

/// `sgw pki init DIR`: the tunnel PKI and the two record key pairs.
fn pki(dir: &Path) {
    let (st, out) = run_bounded(
        "sgw pki init",
        sgw().args(["pki", "init"]).arg(dir),
        Duration::from_secs(30),
    );
    assert!(st.success(), "{out}");
    for f in [
        "gw2-records.key",
        "gw2-records.pub",
        "gw1-records.key",
        "gw1-records.pub",
    ] {
        assert!(dir.join(f).exists(), "{f} not written: {out}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("gw2-records.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// The `[gw2.records]` and `[gw1.records]` sections, records under `dir/gw2` and `dir/gw1`.
fn records_sections(dir: &Path, extra: &str) -> String {
    let mut s = String::new();
    for half in ["gw2", "gw1"] {
        s.push_str(&format!(
            "\n[{half}.records]\ndir = \"{}\"\nkey = \"{}\"\n{extra}\n",
            dir.join(half).display(),
            dir.join(format!("{half}-records.key")).display()
        ));
    }
    s
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `sgw cdr verify --json [--key PUB] FILES`: its exit status and report.
fn verify(files: &[PathBuf], key: Option<&Path>) -> (i32, Value) {
    let mut cmd = sgw();
    cmd.args(["cdr", "verify", "--json"]);
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    cmd.args(files);
    let out = cmd.output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// The call lines of a half's files.
fn call_lines(files: &[PathBuf]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["kind"] == "call")
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A chain written through the library (no gateway needed): `n` calls, checkpoints every 3.
fn written_chain(dir: &Path, n: u32, rotate_bytes: u64) -> (Vec<PathBuf>, PathBuf) {
    pki(dir);
    let key = sgw::cdr::load_key(&dir.join("gw2-records.key")).unwrap();
    let settings = sgw::cdr::Settings {
        half: "gw2",
        target: sgw::cdr::Target::Dir(dir.join("records")),
        rotate_bytes,
        rotate_daily: false,
        fsync_interval: None,
        checkpoint: Duration::from_secs(60),
    };
    let mut chain = sgw::cdr::Chain::open(settings, key).unwrap();
    for i in 0..n {
        let mut rec = sample_record();
        rec.call = 2 * i + 2;
        chain.append(&rec).unwrap();
        if i % 3 == 2 {
            chain.checkpoint(false).unwrap();
        }
    }
    chain.checkpoint(true).unwrap();
    (files(&dir.join("records")), dir.join("gw2-records.pub"))
}

/// A record like the engine's (the live tests check the engine's own).
fn sample_record() -> sgw::engine::CallRecord {
    use sgw::engine::{EndedBy, Family, LegProtocol, LegRecord};
    sgw::engine::CallRecord {
        call: 2,
        direction: sgw::engine::calls::Direction::FromOutside,
        calling: "alice".into(),
        called: "1000".into(),
        emergency: false,
        setup_at: 1.0,
        answered_at: Some(2.0),
        ended_at: 3.0,
        start: "2026-12-05T10:00:01.000Z".into(),
        answer: Some("2026-12-05T10:00:02.000Z".into()),
        end: "2026-12-05T10:00:03.000Z".into(),
        cause: 16,
        ended_by: EndedBy::Outside,
        outside: LegRecord {
            protocol: LegProtocol::Sip,
            family: Some(Family::V4),
            address: Some("192.0.2.1".parse().unwrap()),
            calling: Some("alice".into()),
            called: Some("1000".into()),
        },
        inside: LegRecord {
            protocol: LegProtocol::Tunnel,
            family: None,
            address: None,
            calling: None,
            called: None,
        },
        media: Default::default(),
        rule: None,
        auth_identity: None,
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(p: &Path, l: &[String]) {
    std::fs::write(p, l.join("\n") + "\n").unwrap();
}

// ---------------------------------------------------------------------------------------------
// sgw cdr verify: every kind of tampering, and the exit status

/// Each kind of tampering, made on a copy of an intact file, is found by `sgw cdr verify` with
/// its kind and line, exit status 1; the intact file exits 0.
#[test]
fn verify_finds_every_kind_of_tampering() {
    let dir = Scratch::new("cdr-tamper");
    let (files, public) = written_chain(&dir.0, 8, 0);
    assert_eq!(files.len(), 1);
    let f = &files[0];
    let (code, v) = verify(&files, Some(&public));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["records"], 8);
    assert_eq!(v["signatures_checked"], 3);
    let intact = lines(f);
    // Line 1 is the file line; call lines are 2, 3, 4, then a checkpoint at 5.
    let recompute = |l: &mut Vec<String>, from: usize| {
        for i in from..l.len() {
            let mut j: Value = serde_json::from_str(&l[i]).unwrap();
            let old = j["prev"].as_str().unwrap().to_owned();
            let new = sgw::cdr::sha256_hex(l[i - 1].as_bytes());
            j["prev"] = new.clone().into();
            l[i] = l[i].replacen(&old, &new, 1);
        }
    };
    type Tamper = Box<dyn Fn(&mut Vec<String>)>;
    let cases: Vec<(&str, Tamper, &str, usize)> = vec![
        (
            "a called number changed",
            Box::new(|l: &mut Vec<String>| l[2] = l[2].replace("\"1000\"", "\"1999\"")),
            "altered",
            3,
        ),
        (
            "a record deleted",
            Box::new(|l: &mut Vec<String>| {
                l.remove(3);
            }),
            "deleted",
            4,
        ),
        (
            "a record copied in",
            Box::new(|l: &mut Vec<String>| {
                let c = l[2].clone();
                l.insert(4, c);
            }),
            "inserted",
            5,
        ),
        (
            "two records swapped",
            Box::new(|l: &mut Vec<String>| l.swap(2, 3)),
            "reordered",
            3,
        ),
        (
            "a record changed and the chain recomputed",
            Box::new(move |l: &mut Vec<String>| {
                l[2] = l[2].replace("\"alice\"", "\"mallory\"");
                recompute(l, 3);
            }),
            "bad_signature",
            5,
        ),
        (
            "a checkpoint signature changed",
            Box::new(move |l: &mut Vec<String>| {
                let j: Value = serde_json::from_str(&l[4]).unwrap();
                let sig = j["sig"].as_str().unwrap().to_owned();
                let flipped: String = sig
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i == 0 {
                            if c == '0' {
                                '1'
                            } else {
                                '0'
                            }
                        } else {
                            c
                        }
                    })
                    .collect();
                l[4] = l[4].replace(&sig, &flipped);
                recompute(l, 5);
            }),
            "bad_signature",
            5,
        ),
    ];
    let mut problems = Vec::new();
    for (what, tamper, kind, line) in cases {
        let mut l = intact.clone();
        tamper(&mut l);
        write_lines(f, &l);
        let (code, v) = verify(&files, Some(&public));
        if code != 1 || v["kind"] != kind || v["line"] != line {
            problems.push(format!(
                "{what}: expected exit 1, {kind} at line {line}; got exit {code}: {v}"
            ));
        }
    }
    write_lines(f, &intact);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Rotated files chain from one to the next: given in any order they verify; one left out is a
/// deletion; a file whose end was cut no longer chains to the next.
#[test]
fn verify_checks_the_chain_across_rotated_files() {
    let dir = Scratch::new("cdr-rotate");
    let (files, public) = written_chain(&dir.0, 30, 3000);
    assert!(files.len() >= 3, "{files:?}");
    let mut reversed = files.clone();
    reversed.reverse();
    let (code, v) = verify(&reversed, Some(&public));
    assert_eq!((code, v["records"].as_u64()), (0, Some(30)), "{v}");
    let mut gap = files.clone();
    gap.remove(1);
    let (code, v) = verify(&gap, Some(&public));
    assert_eq!((code, v["kind"].as_str()), (1, Some("deleted")), "{v}");
    let mut l = lines(&files[0]);
    l.pop();
    write_lines(&files[0], &l);
    let (code, v) = verify(&files, Some(&public));
    assert_eq!(code, 1, "{v}");
}

/// A last line cut short (a write killed mid-line) is an incomplete last record, counted as a
/// refused line, not tampering; a file that is not a record file, or is missing, exits 2.
#[test]
fn verify_exit_codes_for_truncated_corrupt_and_missing_files() {
    let dir = Scratch::new("cdr-exit");
    let (files, public) = written_chain(&dir.0, 4, 0);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&files[0])
        .unwrap();
    f.write_all(b"{\"kind\":\"call\",\"seq\":12,\"prev\":\"9f")
        .unwrap();
    drop(f);
    let (code, v) = verify(&files, Some(&public));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["refused_lines"], 1);
    assert!(
        v["notes"].to_string().contains("incomplete last record"),
        "{v}"
    );
    // The human report says so too.
    let out = sgw()
        .args(["cdr", "verify", "--key"])
        .arg(&public)
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("incomplete last record") && text.contains("intact"),
        "{text}"
    );

    let junk = dir.0.join("junk.jsonl");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\n not records").unwrap();
    let (code, v) = verify(&[junk], Some(&public));
    assert_eq!((code, v["status"].as_str()), (2, Some("unreadable")), "{v}");
    let (code, v) = verify(&[dir.0.join("missing.jsonl")], None);
    assert_eq!(code, 2, "{v}");
    // A key file that is not a key: a usage error, exit 2.
    let out = sgw()
        .args(["cdr", "verify", "--key"])
        .arg(&files[0])
        .args(&files)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// The live gateway

/// A sipp run of 100 calls through the live gateway: each half's record files hold exactly one
/// record per call (100), verify intact with the half's key, and each record carries UTC times,
/// direction, both sides, the end cause and who ended the call, and media counters.
#[test]
fn sipp_100_calls_give_100_records_per_half() {
    if !sipp_available("sipp_100_calls_give_100_records_per_half") {
        return;
    }
    let _serial = serial();
    let keys = Scratch::new("cdr-live");
    pki(&keys.0);
    let uas = InsideUas::start();
    let mut setup = Setup::new((7_000, 7_399), (7_400, 7_799), uas.sip);
    setup.quiet = true;
    setup.extra = records_sections(&keys.0, "checkpoint_secs = 1");
    let mut gw = Gateway::start("cdr-sipp", &setup);
    let mp = free_rtp_port("127.0.0.1");
    let port = free_udp_port("127.0.0.1").to_string();
    let target = gw.sip.to_string();
    let (st, out) = run_bounded(
        "sipp 100 calls",
        sipp(&gw.dir.0)
            .args(["-sn", "uac", &target, "-i", "127.0.0.1", "-p", &port])
            .args(["-mp", &mp.to_string(), "-m", "100", "-r", "20", "-l", "20"])
            .args(["-d", "100", "-timeout", "60s"]),
        Duration::from_secs(90),
    );
    let (gw2, gw1) = gw.stop();
    assert!(st.success(), "sipp failed ({st}):\n{out}\n{}", gw.output());
    assert_eq!(
        support::gateway::n(&gw2, "driver.records_written"),
        100,
        "{gw2}"
    );
    assert_eq!(
        support::gateway::n(&gw1, "driver.records_written"),
        100,
        "{gw1}"
    );
    assert_eq!(support::gateway::n(&gw2, "driver.records_dropped"), 0);
    assert_eq!(support::gateway::n(&gw2, "driver.record_write_errors"), 0);
    for half in ["gw2", "gw1"] {
        let f = files(&keys.0.join(half));
        let public = keys.0.join(format!("{half}-records.pub"));
        let (code, v) = verify(&f, Some(&public));
        assert_eq!(code, 0, "{half}: {v}");
        assert_eq!(v["records"], 100, "{half}: {v}");
        assert!(v["signatures_checked"].as_u64().unwrap() >= 1, "{v}");
        // The last line is the checkpoint written at shutdown: nothing is left unsigned.
        assert!(v["notes"].as_array().unwrap().is_empty(), "{half}: {v}");
        let calls = call_lines(&f);
        assert_eq!(calls.len(), 100);
        let refs: std::collections::BTreeSet<u64> =
            calls.iter().map(|c| c["call"].as_u64().unwrap()).collect();
        assert_eq!(refs.len(), 100, "{half}: a call recorded twice");
        for c in &calls {
            for k in ["start", "answer", "end"] {
                let t = c[k].as_str().unwrap_or_default();
                assert!(
                    t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
                    "{k}: {c}"
                );
            }
            assert_eq!(c["direction"], "from_outside", "{c}");
            assert_eq!(c["cause"], 16, "{c}");
            assert_eq!(c["ended_by"], "outside", "sipp hangs up: {c}");
            assert!(c["auth_identity"].is_null());
            assert!(c.get("rule").is_some_and(Value::is_null), "{c}");
            assert!(c["media"].is_object());
            let (mine, tunnel) = if half == "gw2" {
                ("outside", "inside")
            } else {
                ("inside", "outside")
            };
            assert_eq!(c[mine]["protocol"], "sip", "{c}");
            assert_eq!(c[mine]["family"], "v4", "{c}");
            assert_eq!(c[tunnel]["protocol"], "tunnel", "{c}");
            // The caller's address outside; the next hop GW1 sent the call to inside.
            assert_eq!(c[mine]["address"], "127.0.0.1", "{c}");
        }
    }
}

/// kill -9 while a call is up: each half's file verifies up to its last complete record (the
/// call up has none). A write cut short at the kill is an incomplete last record; the
/// restarted gateway continues the chain, and all the files verify together.
#[test]
fn kill9_during_a_call_leaves_a_file_that_verifies() {
    let _serial = serial();
    let keys = Scratch::new("cdr-kill");
    pki(&keys.0);
    let uas = InsideUas::start();
    let mut setup = Setup::new((7_800, 7_849), (7_850, 7_899), uas.sip);
    setup.extra = records_sections(&keys.0, "checkpoint_secs = 1\nfsync = \"record\"");
    let mut gw = Gateway::start("cdr-kill", &setup);
    let ruri = format!("sip:1000@{}", gw.sip);
    for _ in 0..3 {
        let mut c = RawCall::invite(gw.sip, "127.0.0.1", &ruri, "ended", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("call not answered: {e:?}\n{}", gw.output()));
        assert!(c.hangup(Duration::from_secs(5)));
    }
    let _up = RawCall::invite(gw.sip, "127.0.0.1", &ruri, "up", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("call not answered: {e:?}"));
    // A checkpoint covers the three calls, then the gateway dies with a call up.
    std::thread::sleep(Duration::from_millis(1500));
    gw.p.kill9();
    for half in ["gw2", "gw1"] {
        let f = files(&keys.0.join(half));
        let public = keys.0.join(format!("{half}-records.pub"));
        let (code, v) = verify(&f, Some(&public));
        assert_eq!(code, 0, "{half}: {v}");
        assert_eq!(v["records"], 3, "{half}: {v}");
    }
    // The kill cut GW2's last write short.
    let gw2_files = files(&keys.0.join("gw2"));
    let last = gw2_files.last().unwrap();
    let mut l = lines(last);
    let cut = l.pop().unwrap();
    let text = l.join("\n") + "\n" + &cut[..cut.len() / 2];
    std::fs::write(last, text).unwrap();
    let public = keys.0.join("gw2-records.pub");
    let (code, v) = verify(&gw2_files, Some(&public));
    assert_eq!(code, 0, "{v}");
    assert!(
        v["notes"].to_string().contains("incomplete last record"),
        "{v}"
    );

    // Restarted on the same files: a new file chained from the last complete line.
    std::thread::sleep(Duration::from_millis(1100));
    let mut gw = Gateway::start("cdr-kill-2", &setup);
    let ruri = format!("sip:1000@{}", gw.sip);
    let mut c = RawCall::invite(gw.sip, "127.0.0.1", &ruri, "after", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("call not answered: {e:?}\n{}", gw.output()));
    assert!(c.hangup(Duration::from_secs(5)));
    gw.stop();
    let all = files(&keys.0.join("gw2"));
    assert_eq!(all.len(), 2, "{all:?}");
    let (code, v) = verify(&all, Some(&public));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["records"], 4, "{v}");
}

/// Calls still up when the gateway stops get their record too, whatever their protocol: a SIP
/// call and an H.323 call (H.225.0 Setup with fastStart on GW2's `h225_tcp`) answered inside,
/// then SIGTERM: each half's file holds both, ended by the gateway (cause 16; GW1 may record
/// GW2's release over the tunnel as ended by the outside), and ends with the signed checkpoint
/// of the stop.
#[test]
fn calls_up_at_stop_are_recorded_sip_and_h323() {
    let _serial = serial();
    let keys = Scratch::new("cdr-stop");
    pki(&keys.0);
    let uas = InsideUas::start();
    let mut setup = Setup::new((7_900, 7_949), (7_950, 7_999), uas.sip);
    setup.h225 = true;
    setup.extra = records_sections(&keys.0, "");
    let mut gw = Gateway::start("cdr-stop", &setup);
    let ruri = format!("sip:1000@{}", gw.sip);
    let _sip = RawCall::invite(gw.sip, "127.0.0.1", &ruri, "up", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("call not answered: {e:?}\n{}", gw.output()));
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut h323 = std::net::TcpStream::connect(gw.h225).unwrap();
    h323.write_all(&support::h225::setup(&support::h225::SetupSpec::new(
        rtp.local_addr().unwrap(),
    )))
    .unwrap();
    // The inside answers at once; give the Connect time to come back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while uas.log().offered_ports.len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (gw2, _) = gw.stop();
    assert_eq!(
        support::gateway::n(&gw2, "driver.records_written"),
        2,
        "{gw2}"
    );
    for half in ["gw2", "gw1"] {
        let f = files(&keys.0.join(half));
        let public = keys.0.join(format!("{half}-records.pub"));
        let (code, v) = verify(&f, Some(&public));
        assert_eq!(code, 0, "{half}: {v}");
        assert!(v["notes"].as_array().unwrap().is_empty(), "{half}: {v}");
        let calls = call_lines(&f);
        assert_eq!(calls.len(), 2, "{half}: {calls:?}");
        for c in &calls {
            // GW1 may get GW2's release over the tunnel before it stops itself: a release
            // from the other half is recorded as ended by that side.
            let by = c["ended_by"].as_str().unwrap_or_default();
            assert!(
                by == "gateway" || (half == "gw1" && by == "outside"),
                "{half}: {c}"
            );
            assert_eq!(c["cause"], 16, "{c}");
            assert!(c["answer"].is_string(), "answered before the stop: {c}");
        }
        if half == "gw2" {
            let mut protocols: Vec<&str> = calls
                .iter()
                .map(|c| c["outside"]["protocol"].as_str().unwrap())
                .collect();
            protocols.sort();
            assert_eq!(protocols, ["h323", "sip"]);
        }
    }
}
