//! Scale-out (issue 11): kamailio's dispatcher in front of two GW2s, one GW1 with a tunnel pair
//! to each (`[[gw1.gw2]]`), a sipp caller through kamailio and a sipp callee behind GW1, in the
//! product's own topology: the zones of `sgw lab up --net-only` (network namespaces this test
//! creates and deletes, also on failure), joined through a router whose nftables firewall
//! (`src/lab/router.nft`) passes only what the design allows. `inet`: kamailio, the sipp
//! caller and the outside callee (IPv4); `dmz`: the two GW2s, each on its own address (SIP and
//! media on IPv4, the tunnel port on IPv6); `intra`: GW1 and the sipp callee (the PBX's
//! address), IPv6 only; `phone`, a host on the intranet's LAN: the inside caller. The firewall
//! lets the Internet and the DMZ exchange SIP and the GW2s' media ports, lets GW1 open TCP to
//! the GW2s' tunnel port, and lets nothing open anything into the intranet: its counters show
//! that the intranet received no packet of a new connection during the whole run, and the
//! probes at the end, each counted and dropped, show that the firewall was there.
//!
//! Run 1: 100 calls, all complete, both GW2s carry a share (GW1's call records name the half,
//! one per GW2); 20 calls from the inside to GW1's `sip_bind` are spread over both halves by
//! GW1's front dispatcher (their ACK and BYE follow by Call-ID). Run 2: long calls; GW2 "a" is
//! killed with SIGKILL while they are up. The
//! calls it held are released on both sides: inside, GW1 sends BYE to the callee as soon as
//! that GW2's tunnel drops (asserted on GW1's call records, within a few seconds); outside,
//! kamailio's dialog module, whose in-dialog OPTIONS keep-alives toward GW2 time out, ends the
//! dialog with BYE to the caller (`ka_interval` cannot go below 30 s, so this takes about
//! 40 s). The calls on the survivor are hung up by the caller as planned, and calls placed 5 s
//! after the kill all complete through the survivor (kamailio's OPTIONS pings, which GW2
//! answers, have marked the dead one down by then), and so do calls from the inside, all given
//! to the survivor's half. The survivor refused nothing (no rate limit, no block) although
//! kamailio is one source for every caller. Finally GW2 a is started again: GW1's tunnel
//! client, which kept redialling, brings its half back and it takes its share of calls again.
//! GW1's front dispatcher's counters are checked in its metrics.
//!
//! Needs root (`ip netns`, nft), kamailio (Debian package `kamailio`), sipp and curl: without
//! them the test says why it is skipped, or fails under CI=true.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::zones::Zones;
use support::*;

use sgw::lab::{
    GW1_RTP, GW1_V6, GW2B_V4, GW2B_V6, GW2_RTP, GW2_V4, GW2_V6, INET_V4, OUTSIDE_CALLEE_PORT,
    PBX_V6, PHONE_V6, SIP_PORT, TUNNEL_PORT,
};

/// kamailio, in `inet`.
const KAMAILIO: &str = INET_V4;
/// GW2 a and b in `dmz`: (outside IPv4 address, DMZ IPv6 address of the tunnel port).
const GW2A: &str = GW2_V4;
const GW2B: &str = GW2B_V4;
/// GW1, in `intra`.
const GW1: &str = GW1_V6;
/// The callee behind GW1 (GW1's `next_hop`), in `intra` on the PBX's address.
const CALLEE: &str = PBX_V6;
/// The caller through kamailio, in `inet` (its own ports).
const CALLER: &str = INET_V4;
/// The outside callee of calls from the inside (both GW2s' `outside_next_hop`), in `inet`.
const OUTSIDE_CALLEE: &str = INET_V4;
/// The inside caller (the PBX), calling GW1's `sip_bind`, in `phone` on the intranet's LAN.
const INSIDE_CALLER: &str = PHONE_V6;
/// How long the calls of run 2 last unless released first.
const HOLD_MS: u64 = 55_000;

/// Whether the zones can be built here (root, `ip netns`, nft); under CI=true a reason they
/// cannot fails the test.
fn zones_available(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let probe = format!("sgwso-probe-{}", std::process::id());
    let netns = root
        && Command::new("ip")
            .args(["netns", "add", &probe])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if netns {
        let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    }
    let nft = Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let reason = if !root {
        Some("needs root")
    } else if !netns {
        Some("`ip netns add` does not work here")
    } else if !nft {
        Some("nft not found (apt-get install nftables)")
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: {r}, and CI=true requires this test to run")
        }
        Some(r) => {
            eprintln!("{test}: skipped: {r}");
            false
        }
    }
}

fn gw2_config(ip: &str, tunnel_ip: &str, pki: &Path, dir: &Path) -> String {
    let name = ip.replace('.', "-");
    format!(
        r#"[gw2]
sip_udp = ["{ip}:{SIP_PORT}"]
tunnel_listen = "[{tunnel_ip}]:{TUNNEL_PORT}"
outside_next_hop = "{OUTSIDE_CALLEE}:{OUTSIDE_CALLEE_PORT}"

[gw2.media]
ip = "{ip}"
port_min = {}
port_max = {}

# kamailio is one source carrying every caller: room above the per-source defaults.
[gw2.limits]
calls_per_source = 200
calls_per_source_burst = 400
requests_per_source = 2000
requests_per_source_burst = 4000

[pki]
ca = "{pki}/ca.pem"
cert = "{pki}/gw2.pem"
key = "{pki}/gw2.key"

[control]
socket = "{dir}/gw2-{name}.sock"
"#,
        GW2_RTP.0,
        GW2_RTP.1,
        pki = pki.display(),
        dir = dir.display(),
    )
}

fn gw1_config(pki: &Path, dir: &Path) -> String {
    format!(
        r#"[gw1]
sip_bind = "[{GW1}]:{SIP_PORT}"
next_hop = "[{CALLEE}]:{SIP_PORT}"
family = "ipv6"

[[gw1.gw2]]
tunnel = "[{GW2_V6}]:{TUNNEL_PORT}"
tunnel_server_name = "gw2.test"

[[gw1.gw2]]
tunnel = "[{GW2B_V6}]:{TUNNEL_PORT}"
tunnel_server_name = "gw2.test"

[gw1.media]
ip = "{GW1}"
port_min = {}
port_max = {}

[pki]
ca = "{pki}/ca.pem"
cert = "{pki}/gw1.pem"
key = "{pki}/gw1.key"

[control]
socket = "{dir}/gw1.sock"

[metrics]
listen = "[{GW1}]:9464"
"#,
        GW1_RTP.0,
        GW1_RTP.1,
        pki = pki.display(),
        dir = dir.display(),
    )
}

/// kamailio as the operators' load balancer: the dispatcher module round robin over both GW2s
/// (OPTIONS pings every second, a destination that does not answer marked down and probed,
/// failover to the other on timeout or 503), record-routing, and the dialog module's
/// in-dialog keep-alives toward the GW2 (`ka-dst`): a dialog whose GW2 stops answering is
/// ended with BYE to both sides.
fn kamailio_config(list: &Path) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:{KAMAILIO}:{SIP_PORT}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "dialog.so"
loadmodule "dispatcher.so"
modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 30000)
modparam("dispatcher", "list_file", "{list}")
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_from", "sip:dispatcher@{KAMAILIO}")
modparam("dialog", "ka_timer", 1)
modparam("dialog", "ka_interval", 30)
modparam("dialog", "send_bye", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    t_check_trans();
    if (is_method("INVITE")) {{
        record_route();
        dlg_manage();
        dlg_set_property("ka-dst");
    }}
    if (!ds_select_domain("1", "4")) {{
        sl_send_reply("503", "No GW2 up");
        exit;
    }}
    xlog("L_INFO", "new call $ci to $ru\n");
    t_on_failure("FAILOVER");
    t_relay();
    exit;
}}

failure_route[FAILOVER] {{
    if (t_is_canceled()) {{
        exit;
    }}
    if (t_check_status("503") || (t_branch_timeout() && !t_branch_replied())) {{
        xlog("L_WARN", "call $ci: GW2 $du failed, next\n");
        ds_mark_dst("ip");
        if (ds_next_domain()) {{
            t_on_failure("FAILOVER");
            t_relay();
            exit;
        }}
    }}
}}
"#,
        list = list.display()
    )
}

/// A call through kamailio (ACK and BYE follow its Record-Route) that lasts `hold_ms` unless
/// released first: a BYE from the network is answered and logged "released", else the caller
/// hangs up and logs "hungup"; both log the GW2 that answered (its Contact).
///
/// A 180 may arrive after the 200: GW2 sends them milliseconds apart and kamailio's UDP workers
/// forward them in parallel, so they can overtake each other (one did in a CI run of 100
/// calls). A UAC ignores a provisional response after the final one; so does this one (sipp
/// waits with the timeout of the first `recv` of a group, hence the timeout on both).
fn call_scenario(hold_ms: u64) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="long call, ended by either side">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true">
    <action>
      <ereg regexp="203\.0\.113\.[0-9]+" search_in="hdr" header="Contact:" assign_to="gw"/>
    </action>
  </recv>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <label id="3"/>
  <recv response="180" optional="true" next="3" timeout="{hold_ms}" ontimeout="1"/>
  <recv request="BYE" timeout="{hold_ms}" ontimeout="1">
    <action>
      <log message="released [call_id] gw=[$gw]"/>
    </action>
  </recv>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <nop next="2"/>
  <label id="1"/>
  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200" crlf="true">
    <action>
      <log message="hungup [call_id] gw=[$gw]"/>
    </action>
  </recv>
  <label id="2"/>
</scenario>
"#
    )
}

/// GW1's call records in `lines` (its log), as (half, record).
fn call_records(lines: &[String]) -> Vec<(String, serde_json::Value)> {
    lines
        .iter()
        .filter_map(|l| {
            let (head, json) = l.split_once("call ended ")?;
            let half = ["gw1-1", "gw1-2"].into_iter().find(|h| head.contains(h))?;
            Some((half.to_owned(), serde_json::from_str(json).ok()?))
        })
        .collect()
}

fn count(records: &[(String, serde_json::Value)], half: &str) -> usize {
    records.iter().filter(|(h, _)| h == half).count()
}

fn count_from_inside(records: &[(String, serde_json::Value)], half: &str) -> usize {
    records
        .iter()
        .filter(|(h, r)| h == half && r["direction"] == "from_inside")
        .count()
}

/// `calls` calls from the inside caller to GW1's `sip_bind` (sipp's own scenario: its ACK and
/// BYE go to `sip_bind` too, and GW1's front hands them to the call's half by Call-ID).
fn calls_from_inside(zones: &Zones, dir: &Path, calls: u32) -> (bool, String) {
    let (st, out) = run_bounded(
        "sipp inside caller",
        zones.exec("phone", "sipp").current_dir(dir).args([
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
            "-sn",
            "uac",
            &format!("[{GW1}]:{SIP_PORT}"),
            "-i",
            INSIDE_CALLER,
            "-p",
            "5080",
            "-s",
            "0049301234",
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-d",
            "300",
            "-aa",
        ]),
        Duration::from_secs(35),
    );
    (st.success(), out)
}

/// `sgw ctl status` of the process behind `socket`.
fn ctl_status(socket: &Path) -> String {
    let mut c = sgw();
    c.args(["ctl", "--socket"]).arg(socket).arg("status");
    run_bounded("sgw ctl status", &mut c, Duration::from_secs(5)).1
}

#[test]
fn kamailio_dispatcher_spreads_calls_over_two_gw2s_and_survives_one_dying() {
    let test = "scale_out";
    if !sipp_available(test)
        || !peer_available(test, "kamailio", &["-v"], "kamailio")
        || !peer_available(test, "curl", &["--version"], "curl")
    {
        return;
    }
    let started = Instant::now();
    if !zones_available(test) {
        return;
    }
    let zones = Zones::up(
        format!("sgwso{}", std::process::id()),
        Duration::from_secs(20),
    );
    let dir = Scratch::new("scale_out");
    let pki = dir.0.join("pki");
    let (st, out) = run_bounded(
        "sgw pki init",
        sgw()
            .args(["pki", "init"])
            .arg(&pki)
            .args(["--gw2-name", "gw2.test"]),
        Duration::from_secs(30),
    );
    assert!(st.success(), "sgw pki init failed:\n{out}");

    let list = dir.file(
        "dispatcher.list",
        &format!("1 sip:{GW2A}:{SIP_PORT} 0 0\n1 sip:{GW2B}:{SIP_PORT} 0 0\n"),
    );
    let kam_cfg = dir.file("kamailio.cfg", &kamailio_config(&list));
    let (st, out) = run_bounded(
        "kamailio -c",
        Command::new("kamailio").args(["-c", "-f"]).arg(&kam_cfg),
        Duration::from_secs(10),
    );
    assert!(st.success(), "kamailio refuses its configuration:\n{out}");

    // The processes, declared after the namespace: dropped (killed) before it is deleted.
    let run_dir = dir.0.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let mut gw2 = Vec::new();
    for (ip, tunnel_ip) in [(GW2A, GW2_V6), (GW2B, GW2B_V6)] {
        let cfg = dir.file(
            &format!("gw2-{ip}.toml"),
            &gw2_config(ip, tunnel_ip, &pki, &dir.0),
        );
        let mut p = Proc::spawn(
            &format!("gw2 {ip}"),
            zones
                .exec("dmz", env!("CARGO_BIN_EXE_sgw"))
                .args(["run", "--role", "gw2", "--config"])
                .arg(&cfg),
        );
        p.wait_line("gw2 sip udp", Duration::from_secs(10));
        gw2.push(p);
    }
    let gw1_cfg = dir.file("gw1.toml", &gw1_config(&pki, &dir.0));
    let mut gw1 = Proc::spawn(
        "gw1",
        zones
            .exec("intra", env!("CARGO_BIN_EXE_sgw"))
            .args(["run", "--role", "gw1", "--config"])
            .arg(&gw1_cfg),
    );
    gw1.wait_line("front of 2 halves", Duration::from_secs(10));
    // Both tunnel pairs up.
    let gw1_sock = dir.0.join("gw1.sock");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = ctl_status(&gw1_sock);
        if s.matches("tunnel up").count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "tunnels not up:\n{s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // GW1 opened the tunnel pairs through the firewall: two connections (signalling, media)
    // to each GW2, and nothing came into the intranet unasked.
    let fw_start = zones.counters();
    assert_eq!(fw_start["tunnel_new"], 4, "firewall: {fw_start:?}");
    assert_eq!(fw_start["intra_new_in"], 0, "firewall: {fw_start:?}");
    // Each half in the metrics, under its own name.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, m) = run_bounded(
            "curl metrics",
            zones
                .exec("intra", "curl")
                .args(["-s", "-g", "--max-time", "2"])
                .arg(format!("http://[{GW1}]:9464/metrics")),
            Duration::from_secs(4),
        );
        if m.contains("sgw_tunnel_up{half=\"gw1-1\"} 1")
            && m.contains("sgw_tunnel_up{half=\"gw1-2\"} 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics without both halves:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut callee = Proc::spawn(
        "sipp callee",
        zones
            .exec("intra", "sipp")
            .current_dir(&dir.0)
            .args(["-nostdin", "-sn", "uas", "-i", CALLEE, "-p", "5060", "-aa"]),
    );
    let mut outside_callee = Proc::spawn(
        "sipp outside callee",
        zones.exec("inet", "sipp").current_dir(&dir.0).args([
            "-nostdin",
            "-sn",
            "uas",
            "-i",
            OUTSIDE_CALLEE,
            "-p",
            &OUTSIDE_CALLEE_PORT.to_string(),
            "-aa",
        ]),
    );
    let mut kamailio = Proc::spawn_group(
        "kamailio",
        zones
            .exec("inet", "kamailio")
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(&run_dir)
            .arg("-f")
            .arg(&kam_cfg),
    );
    // The dispatcher's first pings: both destinations answer OPTIONS.
    std::thread::sleep(Duration::from_secs(3));

    // Run 1: 100 calls spread over both GW2s.
    let short = dir.file("short_call.xml", &call_scenario(500));
    let mark = gw1.mark();
    let (st, out) = run_bounded(
        "sipp caller run 1",
        zones.exec("inet", "sipp").current_dir(&dir.0).args([
            "-nostdin",
            "-timeout",
            "40s",
            "-timeout_error",
            "-sf",
            short.to_str().unwrap(),
            &format!("{KAMAILIO}:{SIP_PORT}"),
            "-i",
            CALLER,
            "-p",
            "5081",
            "-s",
            "service",
            "-m",
            "100",
            "-r",
            "25",
            "-aa",
        ]),
        Duration::from_secs(45),
    );
    if !st.success() {
        let (a, b) = gw2.split_at_mut(1);
        for p in [&mut kamailio, &mut gw1, &mut a[0], &mut b[0], &mut callee] {
            p.drain();
            eprintln!("---- {}:\n{}", p.name, p.seen.join("\n"));
        }
        panic!("run 1: not every call completed:\n{out}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let run1 = call_records(gw1.since(mark));
    let (a, b) = (count(&run1, "gw1-1"), count(&run1, "gw1-2"));
    eprintln!("run 1: 100 calls, {a} through GW2 {GW2A}, {b} through GW2 {GW2B}");
    assert_eq!(a + b, 100, "run 1: GW1's call records:\n{run1:?}");
    assert!(a >= 30 && b >= 30, "run 1: calls not spread: {a} / {b}");

    // Calls from the inside: GW1's front spreads them over both halves.
    let mark = gw1.mark();
    let (ok, out) = calls_from_inside(&zones, &dir.0, 20);
    assert!(ok, "calls from the inside failed:\n{out}");
    std::thread::sleep(Duration::from_millis(500));
    let inside = call_records(gw1.since(mark));
    let (a, b) = (
        count_from_inside(&inside, "gw1-1"),
        count_from_inside(&inside, "gw1-2"),
    );
    eprintln!("run 1: 20 calls from the inside, {a} through GW2 {GW2A}, {b} through GW2 {GW2B}");
    assert_eq!((a, b), (10, 10), "calls from the inside: {inside:?}");

    // Run 2: long calls, then GW2 a dies.
    let scenario = dir.file("long_call.xml", &call_scenario(HOLD_MS));
    let mut long = Proc::spawn(
        "sipp caller run 2",
        zones.exec("inet", "sipp").current_dir(&dir.0).args([
            "-nostdin",
            "-timeout",
            "90s",
            "-timeout_error",
            "-sf",
            scenario.to_str().unwrap(),
            &format!("{KAMAILIO}:{SIP_PORT}"),
            "-i",
            CALLER,
            "-p",
            "5082",
            "-s",
            "service",
            "-m",
            "20",
            "-r",
            "10",
            "-aa",
            "-trace_logs",
            "-log_file",
            dir.0.join("long.log").to_str().unwrap(),
        ]),
    );
    std::thread::sleep(Duration::from_secs(4));
    let status = ctl_status(&gw1_sock);
    assert!(
        status.contains("gw1-1: tunnel up, ") && !status.contains("gw1-1: tunnel up, 0 calls"),
        "run 2: no call up through GW2 a before the kill:\n{status}"
    );
    let mark = gw1.mark();
    gw2[0].kill9();
    let killed = Instant::now();
    // Inside: GW1 releases that half's calls (BYE to the callee) once the tunnel drops.
    let deadline = killed + Duration::from_secs(10);
    let held_by_a = loop {
        let s = ctl_status(&gw1_sock);
        if s.contains("gw1-1: tunnel down, 0 calls up") {
            break call_records(gw1.since(mark));
        }
        assert!(
            Instant::now() < deadline,
            "GW1 kept the calls of the dead GW2:\n{s}\n{}",
            gw1.seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let released_inside = count(&held_by_a, "gw1-1");
    eprintln!(
        "run 2: GW1 released {released_inside} calls of the dead GW2 within {:?}",
        killed.elapsed()
    );
    assert!(released_inside > 0, "no call released: {held_by_a:?}");
    for (_, r) in held_by_a.iter().filter(|(h, _)| h == "gw1-1") {
        // Answered calls, ended by the tunnel's loss (Q.850 41, temporary failure).
        assert!(r["answered_at"].is_number(), "{r}");
        assert_eq!(r["cause"], 41, "{r}");
    }
    assert_eq!(
        count(&held_by_a, "gw1-2"),
        0,
        "survivor's calls ended early"
    );

    // New calls 5 s after the kill all complete through the survivor.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(killed.elapsed()));
    let mark = gw1.mark();
    let (st, out) = run_bounded(
        "sipp caller after the kill",
        zones.exec("inet", "sipp").current_dir(&dir.0).args([
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
            "-sf",
            short.to_str().unwrap(),
            &format!("{KAMAILIO}:{SIP_PORT}"),
            "-i",
            CALLER,
            "-p",
            "5083",
            "-s",
            "service",
            "-m",
            "20",
            "-r",
            "20",
            "-aa",
        ]),
        Duration::from_secs(35),
    );
    assert!(st.success(), "calls after the kill failed:\n{out}");
    std::thread::sleep(Duration::from_millis(500));
    let after = call_records(gw1.since(mark));
    assert_eq!(count(&after, "gw1-2"), 20, "after the kill: {after:?}");
    // From the inside too: the front gives them all to the survivor's half.
    let mark = gw1.mark();
    let (ok, out) = calls_from_inside(&zones, &dir.0, 10);
    assert!(ok, "calls from the inside after the kill failed:\n{out}");
    std::thread::sleep(Duration::from_millis(500));
    let inside = call_records(gw1.since(mark));
    assert_eq!(
        count_from_inside(&inside, "gw1-2"),
        10,
        "calls from the inside after the kill: {inside:?}"
    );

    // Outside: kamailio's dialog keep-alives end the dead GW2's dialogs with BYE to the
    // caller; the survivor's calls are hung up by the caller. Every call of run 2 completes.
    let left = Duration::from_millis(HOLD_MS + 20_000).saturating_sub(killed.elapsed());
    let deadline = Instant::now() + left;
    let released_by = |log: &str| {
        log.lines()
            .filter(|l| l.contains("released") && l.contains(GW2A))
            .count()
    };
    let mut outside_released_after = None;
    while long.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "run 2's caller did not finish");
        let log = std::fs::read_to_string(dir.0.join("long.log")).unwrap_or_default();
        if outside_released_after.is_none() && released_by(&log) >= released_inside {
            outside_released_after = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    long.drain();
    let ok = long.child.wait().unwrap().success();
    let log = std::fs::read_to_string(dir.0.join("long.log")).unwrap_or_default();
    let released = released_by(&log);
    let hungup = log
        .lines()
        .filter(|l| l.contains("hungup") && l.contains(GW2B))
        .count();
    kamailio.drain();
    eprintln!(
        "run 2: {released} calls of the dead GW2 released by kamailio (all {:?} after the kill), \
         {hungup} on the survivor hung up by the caller",
        outside_released_after
    );
    assert!(
        ok && released == released_inside && released + hungup == 20,
        "run 2: caller status {ok}, log:\n{log}\nsipp:\n{}\nkamailio:\n{}",
        long.seen.join("\n"),
        kamailio.seen.join("\n")
    );

    // GW2 a comes back: GW1's tunnel client, which kept redialling, brings its half up again,
    // kamailio's pings mark it active, and it takes its share of new calls again.
    let mut restarted = Proc::spawn(
        "gw2 a again",
        zones
            .exec("dmz", env!("CARGO_BIN_EXE_sgw"))
            .args(["run", "--role", "gw2", "--config"])
            .arg(dir.0.join(format!("gw2-{GW2A}.toml"))),
    );
    restarted.wait_line("gw2 sip udp", Duration::from_secs(10));
    let back = Instant::now();
    let deadline = back + Duration::from_secs(10);
    loop {
        let s = ctl_status(&gw1_sock);
        if s.contains("gw1-1: tunnel up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GW1 did not reconnect to GW2 a:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "GW2 a restarted: its tunnel up again after {:?}",
        back.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    let mark = gw1.mark();
    let (st, out) = run_bounded(
        "sipp caller after the restart",
        zones.exec("inet", "sipp").current_dir(&dir.0).args([
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
            "-sf",
            short.to_str().unwrap(),
            &format!("{KAMAILIO}:{SIP_PORT}"),
            "-i",
            CALLER,
            "-p",
            "5084",
            "-s",
            "service",
            "-m",
            "20",
            "-r",
            "20",
            "-aa",
        ]),
        Duration::from_secs(35),
    );
    assert!(st.success(), "calls after the restart failed:\n{out}");
    std::thread::sleep(Duration::from_millis(500));
    let again = call_records(gw1.since(mark));
    let (a, b) = (count(&again, "gw1-1"), count(&again, "gw1-2"));
    eprintln!("after the restart: {a} calls through GW2 {GW2A}, {b} through GW2 {GW2B}");
    assert!(
        a >= 5 && b >= 5 && a + b == 20,
        "after the restart: {a} / {b}"
    );

    // GW1's front in the metrics: per half the new calls from the inside it gave (10 and 10,
    // then 10 more to the survivor) and the datagrams it handed over, none dropped; its
    // Call-IDs remembered (the 30 calls'), nothing without a Call-ID.
    let (_, m) = run_bounded(
        "curl metrics",
        zones
            .exec("intra", "curl")
            .args(["-s", "-g", "--max-time", "2"])
            .arg(format!("http://[{GW1}]:9464/metrics")),
        Duration::from_secs(4),
    );
    for want in [
        "sgw_front_new_calls_total{half=\"gw1-1\"} 10",
        "sgw_front_new_calls_total{half=\"gw1-2\"} 20",
        "sgw_front_queue_full_total{half=\"gw1-1\"} 0",
        "sgw_front_queue_full_total{half=\"gw1-2\"} 0",
        "sgw_front_no_tunnel_up_total{half=\"gw1-1\"} 0",
        "sgw_front_call_ids{half=\"gw1\"} 30",
        "sgw_front_unroutable_total{half=\"gw1\"} 0",
        "# TYPE sgw_front_dispatched_total counter",
    ] {
        assert!(
            m.lines().any(|l| l == want),
            "metrics without {want}:\n{}",
            m.lines()
                .filter(|l| l.contains("front"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let dispatched = |half: &str| {
        let prefix = format!("sgw_front_dispatched_total{{half=\"{half}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Each call's INVITE, ACK and BYE at least.
    assert!(
        dispatched("gw1-1") >= 30 && dispatched("gw1-2") >= 60,
        "front dispatched {} / {}",
        dispatched("gw1-1"),
        dispatched("gw1-2")
    );
    if peer_available(test, "promtool", &["--version"], "prometheus") {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // (run_bounded gives the lines without the last newline.)
        let text = format!("{m}\n");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    restarted.terminate(Duration::from_secs(5));
    callee.terminate(Duration::from_secs(2));
    outside_callee.terminate(Duration::from_secs(2));
    gw1.terminate(Duration::from_secs(5));
    // GW1's front: 30 new calls from the inside, none dropped.
    let front = gw1.stats("front");
    assert_eq!(front["new_calls"], 30, "{front}");
    assert_eq!(front["queue_full"], 0, "{front}");
    gw2[1].terminate(Duration::from_secs(5));
    // The survivor answered kamailio's pings and took every call: nothing refused by a rate
    // limit or a block (kamailio is one source for all callers).
    let stats = support::gateway::counters(&gw2[1].stats("gw2"));
    let refused: Vec<String> = stats
        .iter()
        .filter(|(k, v)| {
            **v > 0
                && k.as_str() != "engine.limit_keys"
                && ["refus", "reject", "limit", "block", "drop", "denied"]
                    .iter()
                    .any(|w| k.contains(w))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert!(refused.is_empty(), "the surviving GW2 refused: {refused:?}");

    // The firewall: during the whole run (calls both ways, a GW2 killed, GW1 redialling it,
    // its restart) nothing opened a connection into the intranet; GW1 opened the tunnels
    // (again to the restarted GW2), and the intranet received only replies.
    let fw_end = zones.counters();
    eprintln!("firewall after the run: {fw_end:?}");
    assert_eq!(fw_end["intra_new_in"], 0, "firewall: {fw_end:?}");
    assert!(fw_end["tunnel_new"] >= 6, "firewall: {fw_end:?}");
    assert!(
        fw_end["intra_reply_in"] > fw_start["intra_reply_in"]
            && fw_end["inet_dmz_sip"] > fw_start["inet_dmz_sip"]
            && fw_end["dmz_inet_sip"] > fw_start["dmz_inet_sip"],
        "firewall: {fw_start:?} -> {fw_end:?}"
    );
    // And it was there: probes from the Internet and the DMZ into the intranet (GW1's SIP and
    // metrics ports, the callee) are each counted once as a new connection and dropped.
    let mut connected = Vec::new();
    for (z, ip, port) in [("inet", GW1, 9464), ("dmz", GW1, SIP_PORT)] {
        if zones.tcp_probe(z, ip, port) {
            connected.push(format!("tcp {z} -> [{ip}]:{port}"));
        }
    }
    zones.udp_probe("dmz", GW1, SIP_PORT);
    zones.udp_probe("inet", CALLEE, SIP_PORT);
    let fw_probed = zones.counters();
    assert!(connected.is_empty(), "probes connected: {connected:?}");
    assert_eq!(
        fw_probed["intra_new_in"] - fw_end["intra_new_in"],
        4,
        "each probe one packet of a new connection into intra: {fw_probed:?}"
    );
    eprintln!("{test}: done in {:?}", started.elapsed());
}
