//! Issue 10, "RAS": GW1 registers to an inside gatekeeper (`[gw1.gatekeeper]`). The gatekeeper
//! is the independent pycrate one (`tests/h323peer/gatekeeper.py`, no code shared with ours);
//! the gateway is the real binary (`sgw run --role both`, tests/support/gateway.rs).
//!
//! - With `discover`: GRQ first, then a full RRQ, then at least three lightweight RRQs
//!   (`keepAlive`, the assigned endpointIdentifier) with the gatekeeper's `--ttl 2`, with no
//!   lapse between confirmations; an IRQ from the gatekeeper gets an IRR. On SIGTERM GW1 sends
//!   URQ, the gatekeeper confirms, and the process exits promptly. tshark, capturing on `lo`,
//!   decodes every RAS PDU GW1 sent (`-d udp.port==N,h225`) with no malformed frame and no
//!   expert error.
//! - An RRJ is retried after the backoff (5 s), and `sgw ctl status` shows the state and the
//!   reason.
//! - A gatekeeper that goes silent: the keep-alive's tries time out (counted), and GW1
//!   registers again once the gatekeeper is back.
//!
//! - Admission: GW1's engine (its RAS part driven over a real UDP socket) asks the gatekeeper
//!   with an ARQ for each call (`--route` gives the destination in the ACF) and sends a DRQ at
//!   each call's end; an ARJ refuses the call with the mapped Q.850 cause. (GW1's H.323 calls
//!   use this once GW1 places and takes H.323 calls itself.)
//! - Over IPv6 (GW1's inside and the gatekeeper on `::1`): the RRQ comes from the rasAddress it
//!   announces, with GW1's IPv6 call signalling address, and URQ goes on SIGTERM.
//! - Every kind of RAS PDU GW1 can send (GRQ, full and lightweight RRQ, ARQ answering and
//!   originating, DRQ, IRR, XRS, UCF, URQ; IPv4 and IPv6 addresses), made by driving the
//!   engine, decodes in tshark with no malformed frame or expert error, and in pycrate as the
//!   message it is.
//!
//! Needs a Python with pycrate (`SGW_PYTHON`, else `.venv/bin/python`, else `python3`) and
//! tshark capturing on `lo`: without them the test says it is skipped, and fails under
//! `CI=true`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::gateway::*;
use support::*;

/// The `timeToLive` the gatekeeper grants, seconds.
const TTL: f64 = 2.0;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn gk_script() -> PathBuf {
    root().join("tests/h323peer/gatekeeper.py")
}

/// The Python that runs the gatekeeper: `SGW_PYTHON`, else the test venv's, else `python3`,
/// the first in which it loads pycrate.
fn python(test: &str) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("SGW_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![root().join(".venv/bin/python"), PathBuf::from("python3")],
    };
    let found = candidates.into_iter().find(|p| {
        Command::new(p)
            .arg(gk_script())
            .arg("check")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            !ci(),
            "{test}: pycrate is required under CI=true (./scripts/test.sh installs it into .venv)"
        );
        eprintln!("{test}: skipped: no Python with pycrate (run ./scripts/test.sh once)");
    }
    found
}

/// The pycrate gatekeeper on 127.0.0.1:`port`.
struct Gk {
    p: Proc,
}

impl Gk {
    fn start(python: &Path, port: u16, args: &[&str]) -> Gk {
        Gk::start_on(python, &format!("127.0.0.1:{port}"), args)
    }

    fn start_on(python: &Path, listen: &str, args: &[&str]) -> Gk {
        let mut cmd = Command::new(python);
        cmd.arg(gk_script()).args(["--listen", listen]).args(args);
        let mut p = Proc::spawn("gatekeeper", &mut cmd);
        p.wait_line("listening", Duration::from_secs(60));
        Gk { p }
    }

    /// Every message line seen so far.
    fn messages(&mut self) -> Vec<Value> {
        self.p.drain();
        self.p
            .seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("type").is_some())
            .collect()
    }

    /// Waits until `done` holds for the messages seen; returns them.
    fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if done(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "gatekeeper: {what} not seen within {timeout:?}; output:\n{}",
                    self.p.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        self.p.terminate(Duration::from_secs(5));
    }
}

fn is(m: &Value, dir: &str, ty: &str) -> bool {
    m["dir"] == dir && m["type"] == ty
}

fn count(ms: &[Value], dir: &str, ty: &str) -> usize {
    ms.iter().filter(|m| is(m, dir, ty)).count()
}

fn keepalives(ms: &[Value]) -> usize {
    ms.iter()
        .filter(|m| is(m, "in", "RRQ") && m["keepAlive"] == true)
        .count()
}

fn gateway(name: &str, gk_port: u16, lines: &str, control: bool) -> Gateway {
    let inside = addr(&format!("127.0.0.1:{}", free_udp_port("127.0.0.1")));
    let mut s = Setup::new(
        (free_rtp_port("127.0.0.1"), 0),
        (free_rtp_port("127.0.0.1"), 0),
        inside,
    );
    s.gw2_media.1 = s.gw2_media.0 + 9;
    s.gw1_media.1 = s.gw1_media.0 + 9;
    s.gw1_media_ip = "127.0.0.2";
    s.control = control;
    s.extra = format!("\n[gw1.gatekeeper]\naddress = \"127.0.0.1:{gk_port}\"\n{lines}\n");
    Gateway::start(name, &s)
}

/// [`gk_status`] once it is in `state`, or after 5 s: an RCF the gatekeeper logged as sent may
/// still be on its way to GW1 when the test asks.
fn gk_status_once(gw: &Gateway, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = gk_status(gw);
        if st["state"] == state || Instant::now() >= deadline {
            return st;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `sgw ctl status --json`: GW1's gatekeeper registration.
fn gk_status(gw: &Gateway) -> Value {
    let mut cmd = sgw();
    cmd.arg("ctl")
        .arg("--socket")
        .arg(gw.control.as_ref().unwrap())
        .args(["status", "--json"]);
    let (st, out) = run_bounded("sgw ctl", &mut cmd, Duration::from_secs(20));
    assert!(st.success(), "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["halves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["half"] == "gw1")
        .unwrap()["gatekeeper_registration"]
        .clone()
}

/// tshark over the RAS frames of `pcap` sent to the gatekeeper's `port`: their count, and
/// those with a malformed packet or an expert error.
fn tshark_ras(pcap: &Path, port: u16) -> (usize, String, Vec<String>) {
    let decode = format!("udp.port=={port},h225");
    let run = |filter: &str, fields: &[&str]| {
        let mut cmd = Command::new("tshark");
        cmd.args(["-n", "-r"])
            .arg(pcap)
            .args(["-d", &decode, "-Y", filter, "-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let ours = format!("udp.dstport == {port}");
    let names = run(&format!("{ours} && h225"), &["h225.RasMessage"]);
    let errors = run(
        &format!("{ours} && (_ws.malformed || _ws.expert.severity >= error)"),
        &["frame.number", "_ws.expert.message"],
    );
    let names: Vec<String> = names.lines().map(str::to_owned).collect();
    (names.len(), errors, names)
}

fn capture_ok(test: &str) -> bool {
    if !peer_available(test, "tshark", &["-v"], "tshark") {
        return false;
    }
    match support::phones::capture_works() {
        Ok(()) => true,
        Err(e) => {
            assert!(
                !ci(),
                "{test}: tshark cannot capture on lo under CI=true: {e}"
            );
            eprintln!("{test}: skipped: {e}");
            false
        }
    }
}

#[test]
fn gw1_discovers_registers_keeps_alive_and_unregisters_on_sigterm() {
    let test = "ras";
    if !capture_ok(test) {
        return;
    }
    let Some(python) = python(test) else {
        return;
    };
    let _serial = serial();
    let port = free_udp_port("127.0.0.1");
    let mut gk = Gk::start(&python, port, &["--ttl", "2", "--irq-after", "3"]);
    let scratch = Scratch::new("ras-capture");
    let pcap = scratch.0.join("ras.pcap");
    let mut cap = Proc::spawn_group(
        "tshark",
        Command::new("tshark")
            .args(["-i", "lo", "-f", &format!("udp port {port}"), "-w"])
            .arg(&pcap),
    );
    cap.wait_line("Capturing on", Duration::from_secs(15));
    // dumpcap says so a little before its filter is in place.
    std::thread::sleep(Duration::from_secs(1));
    let mut gw = gateway(
        "ras-keepalive",
        port,
        "discover = true\ngatekeeper_id = \"pygk\"\ne164 = [\"4930\", \"+4940123\"]\ntime_to_live_secs = 60",
        false,
    );

    let ms = gk.wait("3 keep-alives and an IRR", Duration::from_secs(20), |m| {
        keepalives(m) >= 3 && count(m, "in", "IRR") >= 1
    });
    let inbound: Vec<&Value> = ms.iter().filter(|m| m["dir"] == "in").collect();
    assert_eq!(inbound[0]["type"], "GRQ", "{ms:#?}");
    let full = &inbound[1];
    assert_eq!(full["type"], "RRQ");
    assert_eq!(full["keepAlive"], false);
    assert_eq!(full["discoveryComplete"], true);
    assert_eq!(full["timeToLive"], 60, "what GW1 asks for");
    assert_eq!(full["gatekeeperIdentifier"], "pygk");
    let aliases: Vec<&str> = full["terminalAlias"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        aliases,
        [
            "h323-ID:sgw-gw1",
            "dialedDigits:4930",
            "dialedDigits:4940123"
        ]
    );
    assert!(
        full["terminalType"]
            .as_array()
            .unwrap()
            .contains(&Value::from("gateway")),
        "{full}"
    );
    // Every keep-alive names the endpoint the gatekeeper assigned.
    for k in ms
        .iter()
        .filter(|m| is(m, "in", "RRQ") && m["keepAlive"] == true)
    {
        assert_eq!(k["endpointIdentifier"], "EP0001", "{k}");
        assert!(k.get("terminalAlias").is_none(), "{k}");
    }
    // No lapse: each confirmation comes before the previous one's timeToLive ran out.
    let rcf: Vec<f64> = ms
        .iter()
        .filter(|m| is(m, "out", "RCF"))
        .map(|m| m["t"].as_f64().unwrap())
        .collect();
    assert!(rcf.len() >= 4, "{ms:#?}");
    for w in rcf.windows(2) {
        assert!(w[1] - w[0] < TTL, "registration lapsed between {w:?}");
    }
    assert_eq!(count(&ms, "out", "RRJ"), 0, "{ms:#?}");

    // SIGTERM: URQ, UCF, and GW1 exits at once.
    let before = gk.messages().len();
    let t = Instant::now();
    let (_, gw1) = gw.stop();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    let ms = gk.wait("URQ and UCF", Duration::from_secs(5), |m| {
        count(m, "in", "URQ") == 1 && count(m, "out", "UCF") == 1
    });
    let sent_by_gw1 = ms.iter().filter(|m| m["dir"] == "in").count();
    let urq = ms.iter().find(|m| is(m, "in", "URQ")).unwrap();
    assert_eq!(urq["endpointIdentifier"], "EP0001");
    assert!(ms.len() > before);
    let out = gw.output();
    assert!(out.contains("unregistered from the gatekeeper"), "{out}");
    let ras = &gw1["engine"]["ras"];
    assert_eq!(ras["state"], "unregistered", "{gw1}");
    assert_eq!(ras["registrations"], 1);
    assert!(ras["keepalives"].as_u64().unwrap() >= 3, "{ras}");
    assert_eq!(ras["timeouts"], 0, "{ras}");
    assert_eq!(ras["gatekeeper_requests"], 1, "the IRQ: {ras}");
    gk.stop();

    // tshark: every RAS PDU GW1 sent decodes, with no malformed frame and no expert error.
    std::thread::sleep(Duration::from_millis(500));
    cap.terminate(Duration::from_secs(5));
    let (n, errors, names) = tshark_ras(&pcap, port);
    println!("tshark decoded {n} RAS PDUs from GW1: {names:?}");
    assert!(errors.is_empty(), "tshark errors in GW1's RAS:\n{errors}");
    // GRQ, full RRQ, 3+ keep-alives, IRR, URQ: all that the gatekeeper read.
    let listing = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args(["-d", &format!("udp.port=={port},h225")])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        n >= 7 && n == sent_by_gw1,
        "{n} RAS PDUs from GW1 decoded, the gatekeeper read {sent_by_gw1}: {names:?}\n{listing}"
    );
}

#[test]
fn rrj_is_retried_after_the_backoff_and_the_status_says_why() {
    let test = "ras";
    let Some(python) = python(test) else {
        return;
    };
    let _serial = serial();
    let port = free_udp_port("127.0.0.1");
    let mut gk = Gk::start(&python, port, &["--reject-rrq", "securityDenial"]);
    let mut gw = gateway("ras-rrj", port, "discover = false", true);
    let ms = gk.wait("two RRQs", Duration::from_secs(15), |m| {
        count(m, "in", "RRQ") >= 2 && count(m, "out", "RRJ") >= 2
    });
    assert_eq!(count(&ms, "in", "GRQ"), 0, "discover = false: RRQ directly");
    let rrq: Vec<f64> = ms
        .iter()
        .filter(|m| is(m, "in", "RRQ"))
        .map(|m| m["t"].as_f64().unwrap())
        .collect();
    let gap = rrq[1] - rrq[0];
    assert!(
        (4.5..7.0).contains(&gap),
        "retried after {gap} s, not the 5 s backoff"
    );
    let st = gk_status(&gw);
    assert_eq!(st["state"], "failed", "{st}");
    assert_eq!(st["last_failure"], "RRJ securityDenial", "{st}");
    assert!(st["rejects"].as_u64().unwrap() >= 2, "{st}");
    // The text status says it too.
    let mut cmd = sgw();
    cmd.arg("ctl")
        .arg("--socket")
        .arg(gw.control.as_ref().unwrap())
        .arg("status");
    let (_, text) = run_bounded("sgw ctl", &mut cmd, Duration::from_secs(20));
    assert!(
        text.contains("gatekeeper registration at 127.0.0.1:")
            && text.contains("failed")
            && text.contains("RRJ securityDenial"),
        "{text}"
    );
    // Not registered: nothing to unregister, GW1 stops at once.
    let t = Instant::now();
    gw.stop();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(count(&gk.messages(), "in", "URQ"), 0);
    gk.stop();
}

#[test]
fn silent_gatekeeper_times_out_and_gw1_registers_again_when_it_is_back() {
    let test = "ras";
    let Some(python) = python(test) else {
        return;
    };
    let _serial = serial();
    let port = free_udp_port("127.0.0.1");
    let mut gk = Gk::start(&python, port, &["--ttl", "2"]);
    let mut gw = gateway("ras-silent", port, "discover = false", true);
    gk.wait("registration", Duration::from_secs(15), |m| {
        count(m, "out", "RCF") >= 1
    });
    let st = gk_status_once(&gw, "registered");
    assert_eq!(st["state"], "registered", "{st}");
    // The gatekeeper goes away: the keep-alive is sent three times (3 s apart) and times out.
    gk.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = gk_status(&gw);
        if st["timeouts"].as_u64().unwrap_or(0) >= 1 {
            break st;
        }
        assert!(Instant::now() < deadline, "no timeout counted: {st}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(st["state"], "failed", "{st}");
    assert_eq!(st["last_failure"], "no answer to RRQ", "{st}");
    assert!(st["retransmissions"].as_u64().unwrap() >= 2, "{st}");
    // Back on the same address: GW1's next attempt (after the 5 s backoff) is a full RRQ.
    let mut gk = Gk::start(&python, port, &["--ttl", "2"]);
    let ms = gk.wait("registration again", Duration::from_secs(15), |m| {
        count(m, "out", "RCF") >= 1
    });
    let rrq = ms.iter().find(|m| is(m, "in", "RRQ")).unwrap();
    assert_eq!(rrq["keepAlive"], false, "{rrq}");
    let st = gk_status_once(&gw, "registered");
    assert_eq!(st["state"], "registered", "{st}");
    assert_eq!(st["registrations"], 2, "{st}");
    gw.stop();
    gk.wait("URQ", Duration::from_secs(5), |m| {
        count(m, "in", "URQ") == 1
    });
    gk.stop();
}

#[test]
fn gw1_registers_over_ipv6() {
    let test = "ras";
    let Some(python) = python(test) else {
        return;
    };
    let _serial = serial();
    let port = free_udp_port("::1");
    let mut gk = Gk::start_on(&python, &format!("[::1]:{port}"), &["--ttl", "2"]);
    let dir = Scratch::new("ras-v6");
    let (sip, tunnel, gw1) = (sip_port(), free_tcp_port("127.0.0.1"), free_udp_port("::1"));
    let next_hop = free_udp_port("::1");
    let (m2, m1) = (free_rtp_port("127.0.0.1"), free_rtp_port("::1"));
    let text = format!(
        r#"[gw2]
sip_udp = ["127.0.0.1:{sip}"]
tunnel_listen = "127.0.0.1:{tunnel}"

[gw2.media]
ip = "127.0.0.1"
port_min = {m2}
port_max = {}

[gw1]
tunnel = "127.0.0.1:{tunnel}"
tunnel_server_name = "127.0.0.1"
sip_bind = "[::1]:{gw1}"
next_hop = "[::1]:{next_hop}"
family = "ipv6"

[gw1.media]
ip = "::1"
port_min = {m1}
port_max = {}

[gw1.gatekeeper]
address = "[::1]:{port}"
discover = false
"#,
        m2 + 9,
        m1 + 9
    );
    let cfg = dir.file("sgw.toml", &text);
    let mut p = Proc::spawn(
        "sgw",
        sgw()
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(["--role", "both"]),
    );
    let line = p.wait_line("gw1 ras", Duration::from_secs(30));
    assert!(line.contains("[::1]:"), "{line}");
    let ms = gk.wait("2 keep-alives", Duration::from_secs(15), |m| {
        keepalives(m) >= 2
    });
    let full = ms.iter().find(|m| is(m, "in", "RRQ")).unwrap();
    assert_eq!(full["keepAlive"], false);
    assert_eq!(
        full["callSignalAddress"],
        serde_json::json!([format!("[::1]:1720")])
    );
    let ras = full["rasAddress"][0].as_str().unwrap();
    assert!(ras.starts_with("[::1]:"), "{full}");
    assert_eq!(full["peer"], ras, "the RRQ comes from its rasAddress");
    p.terminate(Duration::from_secs(10));
    gk.wait("URQ and UCF", Duration::from_secs(5), |m| {
        count(m, "in", "URQ") == 1 && count(m, "out", "UCF") == 1
    });
    assert_eq!(p.stats("gw1")["engine"]["ras"]["state"], "unregistered");
    gk.stop();
}

// ---- admission against the pycrate gatekeeper, through GW1's engine ---------------------

mod admission {
    use super::*;
    use bytes::Bytes;
    use codecs::meta::{CallRef, Cause};
    use sgw::engine::ras_client::{AdmissionRequest, RasConfig, RasEvent};
    use sgw::engine::{Engine, EngineConfig, Flow, Role, Transport};
    use std::net::{SocketAddr, UdpSocket};

    /// GW1's engine with a real UDP socket toward a gatekeeper: the RAS part of the live
    /// driver, without the rest.
    struct Gw1 {
        e: Engine,
        sock: UdpSocket,
        local: SocketAddr,
        gk: SocketAddr,
        start: Instant,
    }

    impl Gw1 {
        fn new(gk: SocketAddr) -> Gw1 {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let local = sock.local_addr().unwrap();
            let e = Engine::new(EngineConfig {
                role: Role::Gw1,
                gatekeeper: Some(RasConfig {
                    gatekeeper: gk,
                    discover: false,
                    gatekeeper_id: None,
                    h323_id: "sgw-gw1".to_owned(),
                    e164: vec!["4930".to_owned()],
                    time_to_live: 60,
                    ras_address: local,
                    call_signal_address: "127.0.0.1:1720".parse().unwrap(),
                }),
                ..EngineConfig::default()
            });
            Gw1 {
                e,
                sock,
                local,
                gk,
                start: Instant::now(),
            }
        }

        fn now(&self) -> Duration {
            self.start.elapsed()
        }

        /// Runs the engine and the socket until an event matches `want`.
        fn until(&mut self, what: &str, want: impl Fn(&RasEvent) -> bool) -> RasEvent {
            self.run(what, Duration::from_secs(15), want)
                .unwrap_or_else(|| panic!("no {what} within 15 s"))
        }

        /// Runs the engine and the socket for `d`, or until an event matches `want`.
        fn run(
            &mut self,
            _what: &str,
            d: Duration,
            want: impl Fn(&RasEvent) -> bool,
        ) -> Option<RasEvent> {
            let deadline = Instant::now() + d;
            let mut buf = [0u8; 2048];
            loop {
                let now = self.now();
                if self.e.poll_timeout().is_some_and(|d| d <= now) {
                    self.e.handle_timeout(now);
                }
                while let Some(t) = self.e.poll_transmit() {
                    self.sock.send_to(&t.payload, t.flow.remote).unwrap();
                }
                while self.e.poll_event().is_some() {}
                if let Some(ev) = self.e.ras_events().into_iter().find(|e| want(e)) {
                    return Some(ev);
                }
                if Instant::now() >= deadline {
                    return None;
                }
                if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                    let flow = Flow {
                        transport: Transport::Udp,
                        local: self.local,
                        remote: from,
                    };
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    let now = self.now();
                    self.e.handle_inside_datagram(now, flow, data);
                }
            }
        }

        fn admit(&mut self, n: u32, dest: Option<SocketAddr>) -> RasEvent {
            let now = self.now();
            self.e.ras_admit(
                now,
                AdmissionRequest {
                    call: CallRef(n),
                    answer_call: false,
                    call_ref: 100 + n as u16,
                    call_identifier: [n as u8; 16],
                    conference_id: [n as u8 ^ 0xFF; 16],
                    calling: Some("4930111".to_owned()),
                    called: Some("200".to_owned()),
                    dest,
                },
            );
            self.until("admission answer", |e| {
                matches!(e, RasEvent::Admitted { call, .. } | RasEvent::AdmissionRejected { call, .. } if call.0 == n)
            })
        }
    }

    #[test]
    fn gw1_asks_admission_for_each_call_and_disengages() {
        let test = "ras";
        let Some(python) = python(test) else {
            return;
        };
        let port = free_udp_port("127.0.0.1");
        let route: SocketAddr = "127.0.0.1:1721".parse().unwrap();
        let mut gk = Gk::start(&python, port, &["--route", &route.to_string()]);
        let gk_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut gw1 = Gw1::new(gk_addr);
        gw1.until("registration", |e| matches!(e, RasEvent::Registered { .. }));
        for n in 1..=3u32 {
            let ev = gw1.admit(n, None);
            assert_eq!(
                ev,
                RasEvent::Admitted {
                    call: CallRef(n),
                    dest: Some(route)
                }
            );
        }
        for n in 1..=3u32 {
            let now = gw1.now();
            gw1.e.ras_disengage(now, CallRef(n), Cause::NORMAL_CLEARING);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&gk.messages(), "out", "DCF") < 3 {
            assert!(Instant::now() < deadline, "no 3 DCF: {:?}", gk.messages());
            gw1.run("DCF", Duration::from_millis(100), |_| false);
        }
        // The DCFs reach GW1: nothing is left to resend.
        gw1.run("-", Duration::from_millis(300), |_| false);
        let ms = gk.messages();
        let arqs: Vec<&Value> = ms.iter().filter(|m| is(m, "in", "ARQ")).collect();
        assert_eq!(arqs.len(), 3, "one ARQ per call");
        for (i, a) in arqs.iter().enumerate() {
            let n = i + 1;
            assert_eq!(a["answerCall"], false);
            assert_eq!(a["endpointIdentifier"], "EP0001");
            assert_eq!(a["callIdentifier"], format!("{n:02x}").repeat(16));
            assert_eq!(a["callReferenceValue"], 100 + n);
            assert_eq!(a["srcInfo"], serde_json::json!(["dialedDigits:4930111"]));
            assert_eq!(
                a["destinationInfo"],
                serde_json::json!(["dialedDigits:200"])
            );
            assert_eq!(a["srcCallSignalAddress"], "127.0.0.1:1720");
        }
        let drqs: Vec<&Value> = ms.iter().filter(|m| is(m, "in", "DRQ")).collect();
        assert_eq!(drqs.len(), 3);
        assert!(drqs.iter().all(|d| d["disengageReason"] == "normalDrop"));
        let st = gw1.e.stats().ras.unwrap();
        assert_eq!(
            (st.admissions, st.admitted, st.disengages, st.calls),
            (3, 3, 3, 0)
        );
        assert_eq!(
            (st.unmatched, st.retransmissions, st.timeouts),
            (0, 0, 0),
            "{st:?}"
        );
        assert_eq!(gw1.gk, gk_addr);
        gk.stop();
    }

    #[test]
    fn arj_refuses_the_call_with_its_cause() {
        let test = "ras";
        let Some(python) = python(test) else {
            return;
        };
        let port = free_udp_port("127.0.0.1");
        let mut gk = Gk::start(&python, port, &["--reject-arq", "calledPartyNotRegistered"]);
        let mut gw1 = Gw1::new(format!("127.0.0.1:{port}").parse().unwrap());
        gw1.until("registration", |e| matches!(e, RasEvent::Registered { .. }));
        let ev = gw1.admit(7, Some("127.0.0.1:1722".parse().unwrap()));
        assert_eq!(
            ev,
            RasEvent::AdmissionRejected {
                call: CallRef(7),
                cause: Cause(20),
                reason: "ARJ calledPartyNotRegistered".to_owned()
            }
        );
        gk.stop();
    }
}

// ---- every RAS PDU GW1 can send, through tshark ----------------------------------------

mod oracle {
    use super::*;
    use bytes::Bytes;
    use codecs::h225::{protocol_identifier, socket_to_transport};
    use codecs::meta::{CallRef, Cause};
    use h323_asn1::h225::{
        AdmissionConfirm, BandWidth, CallModel, CallReferenceValue, EndpointIdentifier,
        GatekeeperConfirm, GatekeeperIdentifier, InfoRequest, RasMessage, RegistrationConfirm,
        RequestSeqNum, UnregistrationRequest,
    };
    use sgw::capture::{CaptureWriter, OutLink};
    use sgw::engine::ras_client::{AdmissionRequest, RasConfig};
    use sgw::engine::{Engine, EngineConfig, Flow, Protocol, Role, Transport};
    use std::io::Write as _;
    use std::net::SocketAddr;

    fn bmp(s: &str) -> h323_asn1::rasn::types::BmpString {
        h323_asn1::bmp_string(s).unwrap()
    }

    fn enc(m: RasMessage) -> Bytes {
        Bytes::from(h323_asn1::encode_ras(&m).unwrap())
    }

    fn gcf(seq: u16, ras: SocketAddr) -> Bytes {
        enc(RasMessage::gatekeeperConfirm(GatekeeperConfirm::new(
            RequestSeqNum(seq),
            protocol_identifier(),
            None,
            Some(GatekeeperIdentifier(bmp("gk"))),
            socket_to_transport(ras),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )))
    }

    fn rcf(seq: u16) -> Bytes {
        enc(RasMessage::registrationConfirm(RegistrationConfirm::new(
            RequestSeqNum(seq),
            protocol_identifier(),
            None,
            vec![],
            None,
            Some(GatekeeperIdentifier(bmp("gk"))),
            EndpointIdentifier(bmp("EP0001")),
            None,
            Some(30),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )))
    }

    fn acf(seq: u16, dest: SocketAddr) -> Bytes {
        enc(RasMessage::admissionConfirm(AdmissionConfirm::new(
            RequestSeqNum(seq),
            BandWidth(1280),
            CallModel::direct(()),
            socket_to_transport(dest),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )))
    }

    fn seq(b: &[u8]) -> u16 {
        use RasMessage as R;
        match h323_asn1::decode_ras(b).unwrap() {
            R::gatekeeperRequest(r) => r.request_seq_num.0,
            R::registrationRequest(r) => r.request_seq_num.0,
            R::admissionRequest(r) => r.request_seq_num.0,
            other => panic!("{other:?}"),
        }
    }

    /// Drives GW1's engine through every RAS message it sends (IPv4 or IPv6 addresses);
    /// returns them in order with their source and destination.
    fn emitted(
        gk: SocketAddr,
        ras: SocketAddr,
        h225: SocketAddr,
    ) -> Vec<(SocketAddr, SocketAddr, Bytes)> {
        let mut e = Engine::new(EngineConfig {
            role: Role::Gw1,
            gatekeeper: Some(RasConfig {
                gatekeeper: gk,
                discover: true,
                gatekeeper_id: Some("gk".to_owned()),
                h323_id: "sgw-gw1 ünïcode".to_owned(),
                e164: vec!["4930".to_owned(), "+4940*1#".to_owned()],
                time_to_live: 300,
                ras_address: ras,
                call_signal_address: h225,
            }),
            ..EngineConfig::default()
        });
        let flow = Flow {
            transport: Transport::Udp,
            local: ras,
            remote: gk,
        };
        let mut out = Vec::new();
        let mut last = Bytes::new();
        let mut take = |e: &mut Engine, out: &mut Vec<_>| {
            while let Some(t) = e.poll_transmit() {
                assert_eq!(t.protocol, Protocol::Ras);
                out.push((t.flow.local, t.flow.remote, t.payload.clone()));
                last = t.payload;
            }
            last.clone()
        };
        let s = Duration::from_secs;
        e.handle_timeout(s(0));
        let grq = take(&mut e, &mut out);
        e.handle_inside_datagram(s(0), flow, gcf(seq(&grq), gk));
        let rrq = take(&mut e, &mut out);
        e.handle_inside_datagram(s(0), flow, rcf(seq(&rrq)));
        // Keep-alive at 20 s.
        e.handle_timeout(s(20));
        let keepalive = take(&mut e, &mut out);
        e.handle_inside_datagram(s(20), flow, rcf(seq(&keepalive)));
        // Two calls: answered and placed; each admitted, then disengaged.
        for (n, answer) in [(1u32, true), (3, false)] {
            e.ras_admit(
                s(21),
                AdmissionRequest {
                    call: CallRef(n),
                    answer_call: answer,
                    call_ref: 0x1234,
                    call_identifier: [n as u8; 16],
                    conference_id: [0xAB; 16],
                    calling: Some("+4930555".to_owned()),
                    called: Some("alice".to_owned()),
                    dest: Some(h225),
                },
            );
            let arq = take(&mut e, &mut out);
            e.handle_inside_datagram(s(21), flow, acf(seq(&arq), h225));
        }
        // An IRQ (IRR, with both calls), then their DRQs; a GRQ sent to GW1 (XRS), a URQ (UCF,
        // then a full RRQ).
        let irq = InfoRequest::new(
            RequestSeqNum(500),
            CallReferenceValue(0),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        );
        e.handle_inside_datagram(s(23), flow, enc(RasMessage::infoRequest(irq)));
        take(&mut e, &mut out);
        for n in [1, 3] {
            e.ras_disengage(s(23), CallRef(n), Cause(17));
            take(&mut e, &mut out);
        }
        e.handle_inside_datagram(s(23), flow, grq.clone());
        let urq = UnregistrationRequest::new(
            RequestSeqNum(501),
            vec![],
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        );
        e.handle_inside_datagram(s(23), flow, enc(RasMessage::unregistrationRequest(urq)));
        let grq2 = take(&mut e, &mut out);
        e.handle_inside_datagram(s(23), flow, gcf(seq(&grq2), gk));
        let rrq2 = take(&mut e, &mut out);
        e.handle_inside_datagram(s(23), flow, rcf(seq(&rrq2)));
        assert!(e.ras_unregister(s(24)));
        take(&mut e, &mut out);
        out
    }

    #[test]
    fn every_ras_pdu_gw1_sends_decodes_in_tshark() {
        let test = "ras";
        if !peer_available(test, "tshark", &["-v"], "tshark") {
            return;
        }
        let dir = Scratch::new("ras-oracle");
        for (name, gk, ras, h225) in [
            ("v4", "10.0.0.30:1719", "10.0.0.5:40000", "10.0.0.5:1720"),
            ("v6", "[fd00::30]:1719", "[fd00::5]:40000", "[fd00::5]:1720"),
        ] {
            let gk: SocketAddr = gk.parse().unwrap();
            let msgs = emitted(gk, ras.parse().unwrap(), h225.parse().unwrap());
            let pcap = dir.0.join(format!("ras-{name}.pcap"));
            let mut w = CaptureWriter::create(&pcap, OutLink::Ethernet).unwrap();
            for (i, (src, dst, payload)) in msgs.iter().enumerate() {
                w.write_udp(Duration::from_millis(10 * i as u64), *src, *dst, payload)
                    .unwrap();
            }
            w.finish().unwrap().flush().unwrap();
            let (n, errors, names) = tshark_ras(&pcap, gk.port());
            println!("{name}: tshark decoded {n} RAS PDUs: {names:?}");
            assert!(errors.is_empty(), "{name}: tshark errors:\n{errors}");
            assert_eq!(n, msgs.len(), "{name}: {names:?}");
            // pycrate reads each as the message it is.
            if let Some(python) = python(test) {
                let hex: Vec<String> = msgs
                    .iter()
                    .map(|(_, _, b)| b.iter().map(|x| format!("{x:02x}")).collect())
                    .collect();
                let out = Command::new(&python)
                    .arg(gk_script())
                    .arg("decode")
                    .args(&hex)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{name}: pycrate:\n{text}");
                let types: Vec<String> = text
                    .lines()
                    .map(|l| {
                        serde_json::from_str::<Value>(l).unwrap()["type"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    })
                    .collect();
                assert_eq!(
                    types,
                    [
                        "GRQ", "RRQ", "RRQ", "ARQ", "ARQ", "IRR", "DRQ", "DRQ", "XRS", "UCF",
                        "GRQ", "RRQ", "URQ"
                    ],
                    "{name}"
                );
            }
            // GRQ 0, RRQ 3, ARQ 9, DRQ 15, IRR 22, XRS 24, UCF 7, URQ 6.
            for kind in ["0", "3", "9", "15", "22", "24", "7", "6"] {
                assert!(
                    names.iter().any(|k| k == kind),
                    "{name}: no RasMessage {kind} in {names:?}"
                );
            }
        }
    }
}
