//! The three-zone lab of the live gateway issue: network namespaces `inet` (IPv4 caller),
//! `dmz` (GW2, dual-stack), `intra` (GW1 and the callee, IPv6 only) and a `router` joined to
//! each by a veth pair, with nftables in the router enforcing the paper's policy
//! (`src/lab/router.nft`): the intranet may open TCP to GW2's tunnel port and nothing else,
//! nothing may open anything into the intranet, and the Internet and the DMZ exchange SIP and
//! GW2's media ports. `sgw lab up --net-only` builds the namespaces and the firewall (no
//! gateways or peers: this test runs its own) and `sgw lab down` removes them.
//!
//! A sipp caller in `inet` calls through GW2 and the tunnel to a sipp callee behind GW1, playing
//! RTP from a capture that the callee echoes. The test asserts that the calls complete, that RTP
//! crossed both gateways both ways, that GW1 opened exactly the two tunnel connections, and that
//! the firewall saw no packet of a new connection toward the intranet — then probes the intranet
//! from `inet` and `dmz` and asserts that exactly those probes are counted and dropped.
//!
//! Needs root and `ip netns` (plus nft and sipp): without them the test prints why it is
//! skipped, or fails under CI=true.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::scenarios::{uac_rtp_scenario, UAS_PCMA};
use support::zones::Zones;
use support::*;

// The addresses `sgw lab` gives each zone, and the ports its firewall opens (written into
// the configurations).
use sgw::lab::{
    GW1_RTP, GW1_V6, GW2_RTP, GW2_V4, GW2_V6, INET_V4 as CALLER_V4, PBX_V6, SIP_PORT, TUNNEL_PORT,
};
const CALLS: u32 = 2;

/// The whole test's time limit: every wait below is cut to what is left of it.
const BUDGET: Duration = Duration::from_secs(85);

/// What is left of [`BUDGET`] since `started`, at most `cap` (and at least a moment, so that a
/// late step still fails with its own message).
fn left(started: Instant, cap: Duration) -> Duration {
    BUDGET
        .saturating_sub(started.elapsed())
        .clamp(Duration::from_millis(100), cap)
}

/// Whether the lab can be built here; under CI=true, a reason it cannot fails the test.
fn lab_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let reason = if !root {
        Some("needs root")
    } else if !netns_works() {
        Some("`ip netns add` does not work here")
    } else if !Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        Some("nft not found")
    } else {
        None
    };
    match reason {
        None => sipp_available("three_zones"),
        Some(r) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("three_zones: {r}, and CI=true requires this test to run")
        }
        Some(r) => {
            eprintln!("three_zones: skipped: {r}");
            false
        }
    }
}

/// Whether a network namespace can be made here.
fn netns_works() -> bool {
    let probe = format!("sgw-probe-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    }
    made
}

fn gw2_config(pki: &Path) -> String {
    format!(
        r#"[gw2]
sip_udp = ["{GW2_V4}:{SIP_PORT}"]
tunnel_listen = "[{GW2_V6}]:{TUNNEL_PORT}"
[gw2.media]
ip = "{GW2_V4}"
port_min = {}
port_max = {}
[pki]
ca = "{p}/ca.pem"
cert = "{p}/gw2.pem"
key = "{p}/gw2.key"
"#,
        GW2_RTP.0,
        GW2_RTP.1,
        p = pki.display(),
    )
}

fn gw1_config(pki: &Path) -> String {
    format!(
        r#"[gw1]
tunnel = "[{GW2_V6}]:{TUNNEL_PORT}"
tunnel_server_name = "{GW2_V6}"
sip_bind = "[{GW1_V6}]:{SIP_PORT}"
next_hop = "[{PBX_V6}]:{SIP_PORT}"
family = "ipv6"
[gw1.media]
ip = "{GW1_V6}"
port_min = {}
port_max = {}
[pki]
ca = "{p}/ca.pem"
cert = "{p}/gw1.pem"
key = "{p}/gw1.key"
"#,
        GW1_RTP.0,
        GW1_RTP.1,
        p = pki.display(),
    )
}

fn n(v: &serde_json::Value, half: &str, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{half}: no counter {path:?}"))
}

#[test]
fn call_from_the_internet_reaches_the_ipv6_intranet_through_the_firewall() {
    if !lab_available() {
        return;
    }
    let started = Instant::now();
    let zones = Zones::up(
        format!("sgw{}", std::process::id()),
        left(started, Duration::from_secs(20)),
    );
    let dir = Scratch::new("three-zones");

    let pki = dir.0.join("pki");
    let (st, out) = run_bounded(
        "sgw pki init",
        sgw().args(["pki", "init", "--gw2-name", GW2_V6]).arg(&pki),
        left(started, Duration::from_secs(30)),
    );
    assert!(st.success(), "{out}");
    let gw2_cfg = dir.file("gw2.toml", &gw2_config(&pki));
    let gw1_cfg = dir.file("gw1.toml", &gw1_config(&pki));
    for cfg in [&gw2_cfg, &gw1_cfg] {
        let (st, out) = run_bounded(
            "sgw check-config",
            sgw().arg("check-config").arg(cfg),
            left(started, Duration::from_secs(10)),
        );
        assert!(st.success(), "{}: {out}", cfg.display());
    }

    // The callee (the IP-PBX's place) in the intranet, echoing RTP.
    let uas_sf = dir.file("uas.xml", UAS_PCMA);
    let _uas = Proc::spawn(
        "sipp uas",
        zones
            .exec("intra", "sipp")
            .current_dir(&dir.0)
            .args(["-nostdin", "-timeout", "60s", "-sf"])
            .arg(&uas_sf)
            .args(["-i", PBX_V6, "-p", &SIP_PORT.to_string()])
            .args(["-mi", PBX_V6, "-mp", "6000", "-rtp_echo", "-trace_err"]),
    );

    let mut gw2 = Proc::spawn(
        "gw2",
        zones
            .exec("dmz", env!("CARGO_BIN_EXE_sgw"))
            .arg("run")
            .arg("--config")
            .arg(&gw2_cfg)
            .args(["--role", "gw2"]),
    );
    gw2.wait_line("gw2 sip udp", left(started, Duration::from_secs(15)));
    let mut gw1 = Proc::spawn(
        "gw1",
        zones
            .exec("intra", env!("CARGO_BIN_EXE_sgw"))
            .arg("run")
            .arg("--config")
            .arg(&gw1_cfg)
            .args(["--role", "gw1"]),
    );
    gw1.wait_line("tunnel up", left(started, Duration::from_secs(15)));
    let before_call = zones.counters();

    // The caller on the Internet, IPv4.
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rtp/g711a.pcap");
    let uac_sf = dir.file("uac.xml", &uac_rtp_scenario(&pcap));
    let (uac_st, uac_out) = run_bounded(
        "sipp uac",
        zones
            .exec("inet", "sipp")
            .current_dir(&dir.0)
            .args(["-nostdin", "-timeout", "30s", "-timeout_error", "-sf"])
            .arg(&uac_sf)
            .arg(format!("{GW2_V4}:{SIP_PORT}"))
            .args([
                "-i", CALLER_V4, "-p", "5060", "-mi", CALLER_V4, "-mp", "6000",
            ])
            .args(["-m", &CALLS.to_string(), "-l", "2", "-trace_err"]),
        left(started, Duration::from_secs(40)),
    );
    // Late RTP echoes and BYE retransmissions settle.
    std::thread::sleep(Duration::from_millis(300));
    let after_call = zones.counters();

    // Nothing outside may reach into the intranet: TCP and UDP from the Internet and from the
    // DMZ (as a compromised GW2 would try) toward GW1 and the PBX. Each sends one packet.
    let tcp_probes = [
        ("inet", GW1_V6, SIP_PORT),
        ("inet", PBX_V6, SIP_PORT),
        ("dmz", GW1_V6, SIP_PORT),
        ("dmz", PBX_V6, SIP_PORT),
        ("dmz", GW1_V6, 22),
    ];
    let udp_probes = [
        ("inet", GW1_V6, SIP_PORT),
        ("dmz", GW1_V6, SIP_PORT),
        ("dmz", PBX_V6, SIP_PORT),
    ];
    // Each probe's own increment of intra_new_in, and the TCP probes that connected.
    let mut increments = Vec::new();
    let mut connected = Vec::new();
    for (z, ip, port) in tcp_probes {
        let before = zones.counters()["intra_new_in"];
        if zones.tcp_probe(z, ip, port) {
            connected.push((z, ip, port));
        }
        increments.push((
            format!("tcp {z} -> [{ip}]:{port}"),
            zones.counters()["intra_new_in"] - before,
        ));
    }
    for (z, ip, port) in udp_probes {
        let before = zones.counters()["intra_new_in"];
        zones.udp_probe(z, ip, port);
        // The datagram may wait for neighbour discovery before it leaves.
        std::thread::sleep(Duration::from_millis(100));
        increments.push((
            format!("udp {z} -> [{ip}]:{port}"),
            zones.counters()["intra_new_in"] - before,
        ));
    }
    let after_probes = zones.counters();

    gw1.terminate(left(started, Duration::from_secs(5)));
    gw2.terminate(left(started, Duration::from_secs(5)));
    let logs = format!(
        "{uac_out}\n--- gw2:\n{}\n--- gw1:\n{}",
        gw2.seen.join("\n"),
        gw1.seen.join("\n")
    );
    eprintln!(
        "counters before the call: {before_call:?}\nafter the call: {after_call:?}\n\
         after the probes: {after_probes:?}"
    );

    // The calls, with media both ways.
    assert!(uac_st.success(), "sipp uac failed ({uac_st}):\n{logs}");
    let (s2, s1) = (gw2.stats("gw2"), gw1.stats("gw1"));
    eprintln!("gw2: {s2}\ngw1: {s1}");
    assert_eq!(
        n(&s2, "gw2", &["engine", "calls"]),
        u64::from(CALLS),
        "{logs}"
    );
    assert_eq!(n(&s2, "gw2", &["engine", "rejected"]), 0, "{logs}");
    for (s, half, path) in [
        // caller -> GW2 -> tunnel -> GW1 -> callee
        (&s2, "gw2", ["engine", "rtp_packets"]),
        (&s2, "gw2", ["driver", "tunnel_media_sent"]),
        (&s1, "gw1", ["driver", "inside_rtp_sent"]),
        // callee's echo -> GW1 -> tunnel -> GW2 -> caller
        (&s1, "gw1", ["engine", "rtp_packets"]),
        (&s2, "gw2", ["driver", "outside_rtp_sent"]),
    ] {
        assert!(
            n(s, half, &path) > 10,
            "{half} {path:?} too low:\n{s2}\n{s1}\n{logs}"
        );
    }

    // The firewall: the call crossed it with exactly GW1's two outgoing tunnel connections and
    // not one packet of a new connection toward the intranet.
    let c =
        |m: &BTreeMap<String, u64>, k: &str| *m.get(k).unwrap_or_else(|| panic!("no counter {k}"));
    assert_eq!(
        c(&before_call, "tunnel_new"),
        2,
        "GW1 opens signalling and media"
    );
    assert_eq!(
        c(&after_call, "tunnel_new"),
        2,
        "no further tunnel connection"
    );
    assert_eq!(c(&before_call, "intra_new_in"), 0);
    assert_eq!(
        c(&after_call, "intra_new_in"),
        0,
        "the call opened something into intra"
    );
    assert!(c(&after_call, "intra_reply_in") > c(&before_call, "intra_reply_in"));
    assert_eq!(
        c(&after_call, "dropped"),
        0,
        "the call needed something the policy drops"
    );
    // (SIP from the caller's port to GW2's is one UDP flow for both calls.)
    assert!(c(&after_call, "inet_dmz_sip") > 0, "no SIP from the caller");
    assert!(c(&after_call, "inet_dmz_rtp") > 0, "no RTP from the caller");

    // The probes: none connected, each counted once as a new connection into intra and dropped.
    assert!(
        connected.is_empty(),
        "probes connected into intra: {connected:?}"
    );
    let probes = (tcp_probes.len() + udp_probes.len()) as u64;
    assert!(
        increments.iter().all(|(_, n)| *n == 1),
        "each probe should be one packet of a new connection into intra: {increments:#?}"
    );
    assert_eq!(
        c(&after_probes, "intra_new_in") - c(&after_call, "intra_new_in"),
        probes,
        "only the probes are counted: {increments:#?}"
    );
    assert_eq!(c(&after_probes, "tunnel_new"), 2);

    let took = started.elapsed();
    eprintln!("three_zones: {took:?}");
    assert!(took < BUDGET, "the lab took {took:?}");
}
