//! The systemd units in `dist/systemd/`: `systemd-analyze verify` accepts them (with `ExecStart`
//! pointing at the binary under test), they ask for the hardening the README promises, and
//! `sgw run` speaks `Type=notify` as systemd expects: READY=1 once it serves, WATCHDOG=1 at half
//! of `WATCHDOG_USEC`, STOPPING=1 on SIGTERM. The notify socket is a Unix datagram socket of
//! this test, as systemd's own would be.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn unit(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("dist/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !peer_available(
        "units_pass_systemd_analyze_verify",
        "systemd-analyze",
        &["--version"],
        "systemd",
    ) {
        return;
    }
    let dir = Scratch::new("systemd-units");
    let bin = env!("CARGO_BIN_EXE_sgw");
    for name in ["sgw-gw2.service", "sgw-gw1.service"] {
        let text = unit(name);
        for want in [
            "Type=notify",
            "DynamicUser=yes",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "WatchdogSec=",
        ] {
            assert!(text.contains(want), "{name} lacks {want:?}");
        }
        // verify checks that the executables exist: point them at the binary under test.
        let local = text.replace("/usr/bin/sgw", bin);
        let path = dir.file(name, &local);
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Outside a booted systemd, verify also reports its own environment (no D-Bus, no
        // /etc/sgw): only lines about our unit file count.
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(name) && !l.contains("Failed to prepare"))
            .collect();
        assert!(
            out.status.success() || ours.is_empty(),
            "systemd-analyze verify {name}: {}\n{stderr}",
            out.status
        );
        assert!(ours.is_empty(), "systemd-analyze verify {name}:\n{stderr}");
    }
}

#[test]
fn run_notifies_ready_watchdog_and_stopping() {
    let dir = Scratch::new("systemd-notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut cmd = sgw();
    cmd.args(["run", "--listen", "127.0.0.1:0", "-q"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000");
    let mut p = Proc::spawn("sgw run (notify)", &mut cmd);
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && !(seen.iter().any(|m| m.contains("READY=1"))
            && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3)
    {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = seen.iter().position(|m| m.contains("READY=1"));
    assert!(ready.is_some(), "no READY=1; got {seen:?}");
    let watchdogs = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(watchdogs >= 3, "{watchdogs} WATCHDOG=1 in {seen:?}");
    // READY comes once the demo serves: its SIP URI is printed by then.
    p.drain();
    assert!(
        p.seen.iter().any(|l| l.contains("sip:")),
        "READY=1 before the demo printed where to call:\n{}",
        p.seen.join("\n")
    );
    p.terminate(Duration::from_secs(20));
    let mut stopping = false;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && !stopping {
        if let Ok(n) = sock.recv(&mut buf) {
            stopping = String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
        }
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
}
