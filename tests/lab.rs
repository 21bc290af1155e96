//! `sgw lab` (issue 12's acceptance): `sgw lab up` builds the three-zone lab with its own
//! gateways, kamailio and a registered baresip phone; the sipp command it prints for the
//! Internet calls the phone with media both ways (GW2's and GW1's call records count RTP each
//! way), the command it prints for the intranet calls out to the sipp callee on the Internet,
//! and so does the phone itself, told to dial and hang up as `up` prints; the router's firewall sees no new connection into the intranet, and `sgw lab down` leaves
//! nothing behind: no namespace, no nftables table, no process, no state directory. A second
//! test builds half a lab by hand and checks that `down` removes it.
//!
//! Needs root, ip, nft, kamailio, baresip and sipp: without them the tests say they are
//! skipped, or fail under CI=true.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// RTP packets each way through each half: the call plays 3 s (150 packets of 20 ms).
const MIN_RTP: u64 = 100;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Root and the lab's tools; under CI=true their absence fails the test.
fn lab_available(test: &str, full: bool) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        if ci() {
            panic!("{test}: needs root, and CI=true requires this test to run");
        }
        eprintln!("{test}: skipped: needs root");
        return false;
    }
    let mut ok = peer_available(test, "ip", &["-V"], "iproute2")
        && peer_available(test, "nft", &["--version"], "nftables");
    if full {
        ok = ok
            && peer_available(test, "kamailio", &["-v"], "kamailio")
            && peer_available(test, "baresip", &["-h"], "baresip")
            && sipp_available(test);
    }
    ok
}

/// Runs `sgw lab down` on drop, so that a failed test leaves nothing either.
struct Down {
    prefix: String,
    dir: PathBuf,
}

impl Down {
    fn run(&self) -> (std::process::ExitStatus, String) {
        run_bounded(
            "sgw lab down",
            sgw()
                .args(["lab", "down", "--prefix", &self.prefix, "--dir"])
                .arg(&self.dir),
            Duration::from_secs(20),
        )
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        let (st, out) = self.run();
        if !st.success() {
            eprintln!("sgw lab down --prefix {}: {out}", self.prefix);
        }
    }
}

/// Whether a process with one thread that is not a zombie has `pid`.
fn alive(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|st| st != "Z" && st != "X")
        })
    })
}

/// The pids in the state directory's `*.pid` files.
fn lab_pids(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(name) = name.strip_suffix(".pid") else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).unwrap();
        let pid = text.split_whitespace().next().unwrap().parse().unwrap();
        out.push((name.to_owned(), pid));
    }
    out.sort();
    out
}

/// What of lab `prefix` is still there: namespaces, the firewall's table in the root
/// namespace, live processes among `pids`, the state directory.
fn leftovers(prefix: &str, pids: &[(String, u32)], dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for l in String::from_utf8_lossy(&list.stdout).lines() {
        if l.starts_with(&format!("{prefix}-")) {
            left.push(format!("namespace {l}"));
        }
    }
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&tables.stdout).contains("sgw_lab") {
        left.push("an nftables table sgw_lab in the root namespace".to_owned());
    }
    for (name, pid) in pids {
        if alive(*pid) {
            left.push(format!("process {name} ({pid})"));
        }
    }
    if dir.exists() {
        left.push(format!("state directory {}", dir.display()));
    }
    left
}

/// The line of `up`'s output that runs sipp in `zone`, as arguments.
fn printed_command(out: &str, prefix: &str, zone: &str) -> Vec<String> {
    let start = format!("ip netns exec {prefix}-{zone} sipp ");
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("sgw lab up printed no sipp command for {zone}:\n{out}"));
    line.split_whitespace().map(str::to_owned).collect()
}

/// The `call ended` record of `half` whose called number is `called`, waited for.
fn record(log: &Path, half: &str, called: &str) -> serde_json::Value {
    nth_record(log, half, called, 0)
}

/// The `n`th (from 0) such record.
fn nth_record(log: &Path, half: &str, called: &str, n: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text.lines().filter_map(|l| {
            let (head, json) = l.split_once(": call ended ")?;
            if !head.contains(&format!(" sgw {half} call=")) {
                return None;
            }
            let v: serde_json::Value = serde_json::from_str(json).ok()?;
            (v["called"].as_str() == Some(called)).then_some(v)
        });
        let found = found.into_iter().nth(n);
        if let Some(v) = found {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{half}: no call record for {called} in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn counters(prefix: &str) -> std::collections::BTreeMap<String, u64> {
    support::zones::router_counters(prefix)
}

/// Runs a sipp command printed by `up` (no keyboard, bounded, errors traced in `cwd`).
fn call(args: &[String], cwd: &Path, what: &str) -> String {
    let (st, out) = run_bounded(
        what,
        Command::new(&args[0])
            .args(&args[1..])
            .args([
                "-nostdin",
                "-timeout",
                "30s",
                "-timeout_error",
                "-trace_err",
            ])
            .current_dir(cwd)
            .stdout(Stdio::null()),
        Duration::from_secs(40),
    );
    let errors: String = std::fs::read_dir(cwd)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(st.success(), "{what} failed ({st}):\n{out}\n{errors}");
    out
}

#[test]
fn lab_up_a_call_each_way_with_media_then_down_leaves_nothing() {
    let test = "lab_up_a_call_each_way_with_media_then_down_leaves_nothing";
    if !lab_available(test, true) {
        return;
    }
    let started = Instant::now();
    let scratch = Scratch::new("lab");
    let prefix = format!("sgwt{}", std::process::id());
    let dir = scratch.0.join("state");
    let down = Down {
        prefix: prefix.clone(),
        dir: dir.clone(),
    };
    let (st, up) = run_bounded(
        "sgw lab up",
        sgw()
            .args(["lab", "up", "--prefix", &prefix, "--dir"])
            .arg(&dir),
        Duration::from_secs(60),
    );
    assert!(st.success(), "sgw lab up failed ({st}):\n{up}");
    eprintln!("{up}");
    let pids = lab_pids(&dir);
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["gw1", "gw2", "kamailio", "outside-callee", "phone"],
        "{up}"
    );

    let (st, status) = run_bounded(
        "sgw lab status",
        sgw()
            .args(["lab", "status", "--prefix", &prefix, "--dir"])
            .arg(&dir),
        Duration::from_secs(10),
    );
    assert!(st.success(), "sgw lab status ({st}):\n{status}");
    assert_eq!(status.matches("tunnel up").count(), 2, "{status}");

    // A call from the Internet to the phone, as `up` said to place it.
    let calls = scratch.0.join("calls");
    std::fs::create_dir_all(&calls).unwrap();
    call(
        &printed_command(&up, &prefix, "inet"),
        &calls,
        "call in (sipp in inet)",
    );
    let gw2 = record(&dir.join("gw2.log"), "gw2", "1001");
    let gw1 = record(&dir.join("gw1.log"), "gw1", "1001");
    let m = |r: &serde_json::Value, k: &str| r["media"][k].as_u64().unwrap_or(0);
    // GW2: `forwarded` is the caller's RTP into the tunnel, `relayed` the phone's RTP out to
    // the caller; GW1 the other way round.
    for (half, r, to_phone, from_phone) in [
        ("gw2", &gw2, "forwarded", "relayed"),
        ("gw1", &gw1, "relayed", "forwarded"),
    ] {
        assert!(
            m(r, to_phone) >= MIN_RTP && m(r, from_phone) >= MIN_RTP,
            "{half}: media of the call in not carried both ways: {r}"
        );
    }
    eprintln!("call in: gw2 {}\ngw1 {}", gw2["media"], gw1["media"]);

    // A call out from the intranet, through kamailio, to the sipp callee on the Internet
    // (it echoes the caller's RTP).
    call(
        &printed_command(&up, &prefix, "phone"),
        &calls,
        "call out (sipp in phone)",
    );
    let out2 = record(&dir.join("gw2.log"), "gw2", "4930555777");
    assert!(
        m(&out2, "forwarded") >= MIN_RTP && m(&out2, "relayed") >= MIN_RTP,
        "gw2: media of the call out not carried both ways: {out2}"
    );

    // The phone dials out itself, as `up` says (baresip's ctrl_tcp), then hangs up.
    let dial = up
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("ip netns exec {prefix}-phone bash -c")))
        .unwrap_or_else(|| panic!("no command for the phone in:\n{up}"));
    let st = Command::new("bash").arg("-c").arg(dial).status().unwrap();
    assert!(st.success(), "{dial}");
    std::thread::sleep(Duration::from_secs(3));
    let hangup = dial.replace(
        r#"{\"command\":\"dial\",\"params\":\"sip:4930555777@[fd00:5357:2::20]\"}"#,
        r#"{\"command\":\"hangup\"}"#,
    );
    assert_ne!(hangup, dial);
    let st = Command::new("bash")
        .arg("-c")
        .arg(&hangup)
        .status()
        .unwrap();
    assert!(st.success(), "{hangup}");
    let out3 = nth_record(&dir.join("gw2.log"), "gw2", "4930555777", 1);
    assert!(
        m(&out3, "forwarded") >= MIN_RTP && m(&out3, "relayed") >= MIN_RTP,
        "gw2: media of the phone's call out not carried both ways: {out3}"
    );

    // The firewall: GW1's two tunnel connections, nothing new into the intranet.
    let c = counters(&prefix);
    eprintln!("firewall counters: {c:?}");
    assert_eq!(c["tunnel_new"], 2, "{c:?}");
    assert_eq!(c["intra_new_in"], 0, "{c:?}");
    assert_eq!(c["dropped"], 0, "{c:?}");
    // An RTP flow is new in the direction that sends first: the Internet phone's packets
    // (`inet_dmz_rtp`) or GW2's relay of the inside party's (`dmz_inet_rtp`); the other
    // direction's are then its replies. Which one wins is a race (both start on the 200 OK);
    // that media crossed both ways is asserted on the gateways' counters above.
    assert!(c["inet_dmz_sip"] > 0 && c["dmz_inet_sip"] > 0, "{c:?}");
    assert!(c["inet_dmz_rtp"] + c["dmz_inet_rtp"] > 0, "{c:?}");

    // Down, and nothing is left (kamailio's children included); down again is fine.
    let mut pids = pids;
    for z in ["router", "inet", "dmz", "intra", "phone"] {
        let out = Command::new("ip")
            .args(["netns", "pids", &format!("{prefix}-{z}")])
            .output()
            .unwrap();
        for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            pids.push((format!("pid in {z}"), p.parse().unwrap()));
        }
    }
    assert!(pids.len() > 6, "kamailio's children: {pids:?}");
    let (st, out) = down.run();
    assert!(st.success(), "sgw lab down ({st}):\n{out}");
    let left = leftovers(&prefix, &pids, &dir);
    assert!(left.is_empty(), "left behind after down: {left:?}");
    let (st, out) = down.run();
    assert!(st.success(), "a second sgw lab down ({st}):\n{out}");
    let (st, status) = run_bounded(
        "sgw lab status",
        sgw()
            .args(["lab", "status", "--prefix", &prefix, "--dir"])
            .arg(&dir),
        Duration::from_secs(10),
    );
    assert_eq!(
        st.code(),
        Some(1),
        "status of a lab that is down:\n{status}"
    );
    eprintln!("{test}: {:?}", started.elapsed());
}

#[test]
fn down_removes_a_partial_lab() {
    let test = "down_removes_a_partial_lab";
    if !lab_available(test, false) {
        return;
    }
    let scratch = Scratch::new("lab-partial");
    let prefix = format!("sgwp{}", std::process::id());
    let dir = scratch.0.join("state");
    let down = Down {
        prefix: prefix.clone(),
        dir: dir.clone(),
    };
    // Half a lab, as an `up` that died half-way would leave it: two of the namespaces, a
    // process in one of them, a state directory with a stale pid file.
    for z in ["router", "inet"] {
        let st = Command::new("ip")
            .args(["netns", "add", &format!("{prefix}-{z}")])
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gw2.pid"), "999999999 sgw\n").unwrap();
    let mut sleeper = Proc::spawn(
        "sleep in inet",
        Command::new("ip")
            .args(["netns", "exec", &format!("{prefix}-inet"), "sleep", "60"])
            .stdout(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(200));
    let pid = sleeper.child.id();

    // `up` refuses a lab that exists.
    let (st, out) = run_bounded(
        "sgw lab up",
        sgw()
            .args(["lab", "up", "--net-only", "--prefix", &prefix, "--dir"])
            .arg(&dir),
        Duration::from_secs(20),
    );
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(out.contains("exists already"), "{out}");

    let (st, out) = down.run();
    assert!(st.success(), "sgw lab down ({st}):\n{out}");
    // The sleeper was ours: reap it, then nothing may be left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !matches!(sleeper.child.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = leftovers(&prefix, &[("sleep".to_owned(), pid)], &dir);
    assert!(left.is_empty(), "left behind after down: {left:?}");

    // And a lab with only the network comes up and goes down.
    let (st, out) = run_bounded(
        "sgw lab up --net-only",
        sgw()
            .args(["lab", "up", "--net-only", "--prefix", &prefix, "--dir"])
            .arg(&dir),
        Duration::from_secs(20),
    );
    assert!(st.success(), "{out}");
    let c = counters(&prefix);
    assert_eq!(c.get("intra_new_in"), Some(&0), "{c:?}");
    let (st, out) = down.run();
    assert!(st.success(), "{out}");
    assert!(leftovers(&prefix, &[], &dir).is_empty());
}
