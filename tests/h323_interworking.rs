//! Issue 10, the live interworking matrix: calls through both halves (`sgw run --role both`)
//! between SIP and H.323 on either side, with media both ways, checked at the far ends.
//!
//! The H.323 ends are the independent pycrate peer (`tests/h323peer/h323peer.py`); the SIP
//! ends are sipp (echoing RTP) or the raw SIP client of `tests/support/rawsip.rs` (counting
//! RTP). GW1 speaks H.323 inside with `[gw1] protocol = "h323"`: it places calls to the PBX
//! (the peer's `answer`) over a TCP connection it opens, and takes calls from it on its
//! `h225_listen`.
//!
//! | cell                         | caller            | callee                    |
//! |------------------------------|-------------------|---------------------------|
//! | outside SIP → inside H.323   | raw SIP client    | peer `answer` (PBX)       |
//! | outside H.323 → inside H.323 | peer `call` → GW2 | peer `answer` (PBX)       |
//! | inside H.323 → outside SIP   | peer `call` → GW1 | sipp UAS, RTP echoed      |
//! | outside H.323 → inside SIP   | peer `call` → GW2 | sipp UAS, RTP echoed      |
//!
//! (outside H.323 → inside SIP with fastStart is also `tests/h323_peer.rs`.) Across the cells:
//! IPv4 and IPv6 on either side independently; fastStart, and no fastStart with H.245
//! tunnelled or on a separate connection (GW2 running H.245 with the caller); a PBX refusing
//! fastStart (GW1 falling back to H.245, both transports); DTMF as UserInputIndication reaching
//! SIP INFO, and the PBX's digits reaching the caller; GW1 registered to the pycrate
//! gatekeeper, which admits each call (ARQ/ACF, DRQ) or refuses it (ARJ).
//!
//! Each call carries at least [`MIN_RTP`] RTP packets each way, counted where they arrive, and
//! ends with the caller's cause on both sides. tshark decodes every H.225.0 PDU (and H.245 on
//! GW2's per-call listener) it captures without a malformed frame or an expert error.
//!
//! Needs sipp, tshark and a Python with pycrate: skipped without them, failing under
//! `CI=true`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::gateway::*;
use support::h323peer::{self, Answerer};
use support::rawsip::RawCall;
use support::scenarios::UAS_PCMA;
use support::*;

/// RTP packets required each way.
const MIN_RTP: u64 = 100;

/// What every cell needs, or `None` (skipped).
fn prerequisites(test: &str) -> Option<std::path::PathBuf> {
    if !sipp_available(test) || !peer_available(test, "tshark", &["-v"], "tshark") {
        return None;
    }
    if let Err(e) = support::phones::capture_works() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: tshark cannot capture on lo under CI=true: {e}"
        );
        eprintln!("{test}: skipped: {e}");
        return None;
    }
    h323peer::python(test)
}

/// A gateway whose GW1 speaks H.323 with a PBX at `pbx`, and its inside H.225.0 port.
fn h323_inside_gateway(name: &str, pbx: std::net::SocketAddr, gw2_h225: bool) -> (Gateway, u16) {
    h323_gateway(name, pbx, gw2_h225, Family::V4, Family::V4)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// The loopback address the tests use for this family (GW1's inside gets 127.0.0.2 in
    /// IPv4, so both halves can take the same port numbers).
    fn ip(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1",
            Family::V6 => "::1",
        }
    }

    fn host(self, port: u16) -> String {
        match self {
            Family::V4 => format!("127.0.0.1:{port}"),
            Family::V6 => format!("[::1]:{port}"),
        }
    }
}

/// A gateway with GW2's H.225.0 listener in `outside` and GW1 speaking H.323 in `inside` to a
/// PBX at `pbx`; returns it and GW1's inside H.225.0 port.
fn h323_gateway(
    name: &str,
    pbx: std::net::SocketAddr,
    gw2_h225: bool,
    outside: Family,
    inside: Family,
) -> (Gateway, u16) {
    let mut s = Setup::new(
        (free_rtp_port("127.0.0.1"), 0),
        (free_rtp_port("127.0.0.1"), 0),
        pbx,
    );
    s.gw2_media.1 = s.gw2_media.0 + 99;
    // Apart from GW2's, whatever the families.
    s.gw1_media.0 = s.gw2_media.1 + 1;
    s.gw1_media.1 = s.gw1_media.0 + 99;
    s.gw1_media_ip = "127.0.0.2";
    s.h225 = gw2_h225;
    s.outside_v6 = outside == Family::V6;
    s.inside_v6 = inside == Family::V6;
    let (listen_ip, gw1_h225) = match inside {
        Family::V4 => ("127.0.0.2".to_owned(), free_tcp_port("127.0.0.2")),
        Family::V6 => ("[::1]".to_owned(), free_tcp_port("::1")),
    };
    s.gw1_lines = format!("protocol = \"h323\"\nh225_listen = \"{listen_ip}:{gw1_h225}\"\n");
    (Gateway::start(name, &s), gw1_h225)
}

/// tshark capturing TCP on `ports` (on lo) into `pcap`, started.
fn capture(pcap: &Path, ports: &[u16]) -> Proc {
    capture_ranges(pcap, &ports.iter().map(|p| (*p, *p)).collect::<Vec<_>>())
}

/// tshark capturing TCP on the port ranges `ranges` (on lo) into `pcap`, started.
fn capture_ranges(pcap: &Path, ranges: &[(u16, u16)]) -> Proc {
    let filter = ranges
        .iter()
        .map(|(a, b)| {
            if a == b {
                format!("tcp port {a}")
            } else {
                format!("tcp portrange {a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let mut cap = Proc::spawn_group(
        "tshark",
        Command::new("tshark")
            .args(["-i", "lo", "-f", &filter, "-w"])
            .arg(pcap),
    );
    cap.wait_line("Capturing on", Duration::from_secs(15));
    // dumpcap says so a little before its filter takes the first packet.
    std::thread::sleep(Duration::from_secs(1));
    cap
}

/// GW2's media port range (from its configuration file).
fn media_range(gw: &Gateway) -> (u16, u16) {
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let num = |key: &str| -> u16 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_start_matches('=').trim().parse().ok())
            .unwrap()
    };
    (num("port_min"), num("port_max"))
}

/// The TCP ports in `range` that connections in `pcap` were opened to (GW2's per-call H.245
/// listeners take a port of its media range; the callers' own ports may fall in it too).
fn ports_used(pcap: &Path, range: (u16, u16)) -> Vec<u16> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0"])
        .args(["-T", "fields", "-e", "tcp.dstport"])
        .output()
        .unwrap();
    let mut ports: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| (range.0..=range.1).contains(p))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Every PDU in `pcap` decodes cleanly: H.225.0 by tshark's TPKT heuristic, H.245 on the
/// `h245` ports (decode-as); at least one H.245 message when there are such ports.
fn assert_clean_h245(pcap: &Path, h245: &[u16]) {
    let decode: Vec<String> = h245.iter().map(|p| format!("tcp.port=={p},h245")).collect();
    let errors = h323peer::tshark_errors(pcap, &decode);
    assert!(errors.is_empty(), "tshark errors:\n{errors}");
    if !h245.is_empty() {
        let n = h323peer::tshark_count(pcap, &decode, "h245");
        assert!(n > 0, "no H.245 message on ports {h245:?}");
    }
}

/// Every H.225.0 PDU in `pcap` decodes cleanly (tshark finds Q.931 over TPKT by its
/// heuristic on any port), every segment with payload is one, and there are some.
fn assert_clean_h225(pcap: &Path) {
    let errors = h323peer::tshark_errors(pcap, &[]);
    assert!(errors.is_empty(), "tshark errors:\n{errors}");
    let q931 = h323peer::tshark_count(pcap, &[], "q931");
    let with_payload = h323peer::tshark_count(pcap, &[], "tcp.len > 0");
    let listing = || {
        let out = Command::new("tshark")
            .args(["-n", "-o", "tcp.try_heuristic_first:TRUE", "-r"])
            .arg(pcap)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        with_payload,
        q931,
        "segments with payload vs Q.931 frames:\n{}",
        listing()
    );
    assert!(
        q931 >= 4,
        "only {q931} Q.931 frames captured:\n{}",
        listing()
    );
}

/// The pycrate peer answering as the PBX on `ip` (30 s of media at most), with `extra`
/// options; it and its H.225.0 port.
fn start_pbx(python: &Path, ip: &str, extra: &[&str]) -> (Answerer, u16) {
    let port = free_tcp_port(ip);
    let rtp = free_rtp_port(ip).to_string();
    let mut args = vec!["--local-ip", ip, "--rtp-port", &rtp, "--seconds", "30"];
    args.extend_from_slice(extra);
    (Answerer::start(python, port, &args), port)
}

/// A sipp UAS on 127.0.0.1:`port` running `scenario`, echoing RTP, started.
fn echo_uas(
    gw: &Gateway,
    port: u16,
    scenario: &str,
) -> std::thread::JoinHandle<(std::process::ExitStatus, String)> {
    echo_uas_on(gw, "127.0.0.1", port, scenario)
}

/// [`echo_uas`] on `ip`.
fn echo_uas_on(
    gw: &Gateway,
    ip: &str,
    port: u16,
    scenario: &str,
) -> std::thread::JoinHandle<(std::process::ExitStatus, String)> {
    let uas_sf = gw.dir.file("uas.xml", scenario);
    let mut uas_cmd = sipp(&gw.dir.0);
    uas_cmd
        .arg("-sf")
        .arg(&uas_sf)
        .args(["-i", ip, "-p", &port.to_string()])
        .args(["-mi", ip, "-mp", &free_rtp_port(ip).to_string()])
        .args(["-rtp_echo", "-m", "1"]);
    let uas =
        std::thread::spawn(move || run_bounded("sipp uas", &mut uas_cmd, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(300));
    uas
}

/// Runs a peer `call` command to its end; its summary.
fn run_caller(cmd: &mut Command) -> Value {
    let (st, out) = run_bounded("h323peer call", cmd, Duration::from_secs(60));
    h323peer::summary(&out, "call")
        .unwrap_or_else(|| panic!("no summary from the caller ({st}):\n{out}"))
}

fn received(v: &Value) -> u64 {
    v["rtp_received"].as_u64().unwrap_or(0)
}

#[test]
fn outside_sip_to_inside_h323_pbx() {
    let test = "h323_interworking";
    let Some(python) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let (pbx, pbx_port) = start_pbx(&python, "127.0.0.1", &["--h245", "tunnel"]);
    let (mut gw, gw1_h225) =
        h323_inside_gateway("sip-to-h323", addr(&format!("127.0.0.1:{pbx_port}")), false);
    let pcap = gw.dir.0.join("inside.pcap");
    let mut cap = capture(&pcap, &[pbx_port, gw1_h225]);

    let call = RawCall::invite(
        gw.sip,
        "127.0.0.1",
        &format!("sip:2001@{}", gw.sip),
        "Outside",
        Duration::from_secs(15),
    );
    let mut call = call.unwrap_or_else(|(st, seen)| panic!("not answered ({st}):\n{seen}"));
    let media = call.start_media();
    std::thread::sleep(Duration::from_millis(1500));
    // Digits as SIP INFO reach the PBX as UserInputIndication (tunnelled H.245).
    for d in DTMF.chars() {
        call.info_digit(d);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(2400));
    let count = media.stop();
    assert!(call.hangup(Duration::from_secs(5)), "no 200 for the BYE");
    let peer = pbx.finish(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    cap.terminate(Duration::from_secs(5));
    let records = gw.call_records();
    let (gw2, gw1) = gw.stop();
    println!("pbx: {peer}\nrecords: {records:?}");

    assert_eq!(peer["connected"], true, "{peer}");
    assert_eq!(
        peer["dtmf_received"],
        serde_json::json!(["1", "#"]),
        "{peer}"
    );
    assert!(
        received(&peer) >= MIN_RTP,
        "the PBX got {} RTP packets; gw2 {gw2}; gw1 {gw1}",
        received(&peer)
    );
    assert!(
        count.received >= MIN_RTP,
        "the SIP caller got {} of the PBX's RTP packets; gw2 {gw2}; gw1 {gw1}",
        count.received
    );
    // The BYE's normal clearing reached the PBX as Release Complete, cause 16.
    assert_eq!(peer["release"]["by"], "remote", "{peer}");
    assert_eq!(peer["release"]["cause"], 16, "{peer}");
    for r in &records {
        assert_eq!(r["cause"], 16, "{r}");
        assert_eq!(r["ended_by"], "outside", "{r}");
    }
    assert_clean_h225(&pcap);
}

#[test]
fn outside_h323_to_inside_h323_pbx() {
    let test = "h323_interworking";
    let Some(python) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let (pbx, pbx_port) = start_pbx(&python, "127.0.0.1", &[]);
    let (mut gw, gw1_h225) =
        h323_inside_gateway("h323-to-h323", addr(&format!("127.0.0.1:{pbx_port}")), true);
    let pcap = gw.dir.0.join("h225.pcap");
    let ports = [gw.h225.port(), pbx_port, gw1_h225];
    let mut cap = capture(&pcap, &ports);

    let mut cmd = Command::new(&python);
    cmd.arg(h323peer::peer_script())
        .args(["call", &gw.h225.to_string()])
        .args(["--rtp-port", &free_rtp_port("127.0.0.1").to_string()])
        .args(["--seconds", "4", "--cause", "16"]);
    let caller = run_caller(&mut cmd);
    let pbx = pbx.finish(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    cap.terminate(Duration::from_secs(5));
    let (gw2, gw1) = gw.stop();
    println!("caller: {caller}\npbx: {pbx}");

    assert_eq!(caller["connected"], true, "{caller}");
    assert_eq!(pbx["connected"], true, "{pbx}");
    assert!(
        received(&caller) >= MIN_RTP,
        "caller got {}; gw2 {gw2}; gw1 {gw1}",
        received(&caller)
    );
    assert!(
        received(&pbx) >= MIN_RTP,
        "pbx got {}; gw2 {gw2}; gw1 {gw1}",
        received(&pbx)
    );
    assert_eq!(caller["release"]["by"], "us", "{caller}");
    assert_eq!(pbx["release"]["by"], "remote", "{pbx}");
    assert_eq!(pbx["release"]["cause"], 16, "{pbx}");
    assert_clean_h225(&pcap);
}

#[test]
fn inside_h323_pbx_to_outside_sip() {
    let test = "h323_interworking";
    let Some(python) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let provider_port = free_udp_port("127.0.0.1");
    let mut s = Setup::new(
        (free_rtp_port("127.0.0.1"), 0),
        (free_rtp_port("127.0.0.1"), 0),
        addr(&format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))),
    );
    s.gw2_media.1 = s.gw2_media.0 + 99;
    s.gw1_media.1 = s.gw1_media.0 + 99;
    s.gw1_media_ip = "127.0.0.2";
    s.outside_next_hop = Some(addr(&format!("127.0.0.1:{provider_port}")));
    let gw1_h225 = free_tcp_port("127.0.0.2");
    s.gw1_lines = format!("protocol = \"h323\"\nh225_listen = \"127.0.0.2:{gw1_h225}\"\n");
    let mut gw = Gateway::start("h323-to-sip", &s);
    let pcap = gw.dir.0.join("inside.pcap");
    let mut cap = capture(&pcap, &[gw1_h225]);

    let uas = echo_uas(
        &gw,
        provider_port,
        &h323peer::with_info_per_digit(UAS_PCMA, DTMF),
    );

    // The PBX's digits (tunnelled UserInputIndication) reach the provider as SIP INFO.
    let mut cmd = Command::new(&python);
    cmd.arg(h323peer::peer_script())
        .args(["call", &format!("127.0.0.2:{gw1_h225}"), "--dtmf", DTMF])
        .args(["--local-ip", "127.0.0.1"])
        .args(["--rtp-port", &free_rtp_port("127.0.0.1").to_string()])
        .args(["--called", "4930777", "--seconds", "4", "--cause", "16"]);
    let caller = run_caller(&mut cmd);
    let (ust, uout) = uas.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cap.terminate(Duration::from_secs(5));
    let records = gw.call_records();
    let (gw2, gw1) = gw.stop();
    println!("caller: {caller}\nsipp ({ust}):\n{uout}\nrecords: {records:?}");

    assert_eq!(caller["connected"], true, "{caller}");
    assert!(
        received(&caller) >= MIN_RTP,
        "the PBX got {} of its RTP back through the provider's echo; gw2 {gw2}; gw1 {gw1}",
        received(&caller)
    );
    assert!(ust.success(), "sipp uas:\n{uout}");
    for r in &records {
        assert_eq!(r["cause"], 16, "{r}");
        assert_eq!(r["direction"], "from_inside", "{r}");
    }
    assert_clean_h225(&pcap);
}

/// How an H.323 end negotiates media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum H245Mode {
    Tunnel,
    Separate,
}

impl H245Mode {
    fn arg(self) -> &'static str {
        match self {
            H245Mode::Tunnel => "tunnel",
            H245Mode::Separate => "separate",
        }
    }
}

/// Digits sent as H.245 UserInputIndication in the H.245 cells.
const DTMF: &str = "1#";

/// A call from the peer without fastStart to GW2 (media negotiated over H.245, run by GW2),
/// to an inside sipp UAS echoing RTP: two-way media, the digits the peer sends as
/// UserInputIndication reach the inside as SIP INFO, in order.
fn outside_h323_without_fast_start_to_inside_sip(mode: H245Mode, family: Family) {
    let test = "h323_interworking";
    let Some(python) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let inside_port = free_udp_port(family.ip());
    let mut s = Setup::new(
        (free_rtp_port("127.0.0.1"), 0),
        (0, 0),
        addr(&family.host(inside_port)),
    );
    s.gw2_media.1 = s.gw2_media.0 + 99;
    s.gw1_media = (s.gw2_media.1 + 1, s.gw2_media.1 + 100);
    s.gw1_media_ip = "127.0.0.2";
    s.h225 = true;
    s.outside_v6 = family == Family::V6;
    s.inside_v6 = family == Family::V6;
    let mut gw = Gateway::start("h245-to-sip", &s);
    let pcap = gw.dir.0.join("outside.pcap");
    // The H.225.0 port and GW2's media ports (its per-call H.245 listener takes one).
    let mut cap = capture_ranges(&pcap, &[(gw.h225.port(), gw.h225.port()), s.gw2_media]);

    let scenario = h323peer::with_info_per_digit(UAS_PCMA, DTMF);
    let uas = echo_uas_on(&gw, family.ip(), inside_port, &scenario);

    let mut cmd = Command::new(&python);
    cmd.arg(h323peer::peer_script())
        .args(["call", &gw.h225.to_string(), "--local-ip", family.ip()])
        .args(["--no-fast-start", "--h245", mode.arg(), "--rtd"])
        .args(["--dtmf", DTMF])
        .args(["--rtp-port", &free_rtp_port(family.ip()).to_string()])
        .args(["--seconds", "4", "--cause", "16"]);
    let caller = run_caller(&mut cmd);
    let (ust, uout) = uas.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cap.terminate(Duration::from_secs(5));
    let (gw2, gw1) = gw.stop();
    println!("caller: {caller}\nsipp ({ust}):\n{uout}");

    assert_eq!(caller["errors"], serde_json::json!([]), "{caller}");
    assert_eq!(caller["connected"], true, "{caller}");
    assert_eq!(caller["media_via"], "h245", "{caller}");
    assert_eq!(caller["h245_transport"], mode.arg(), "{caller}");
    let seen: Vec<&str> = caller["h245_seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "terminalCapabilitySet",
        "terminalCapabilitySetAck",
        "masterSlaveDetermination",
        "masterSlaveDeterminationAck",
        "openLogicalChannel",
        "openLogicalChannelAck",
        "roundTripDelayResponse",
    ] {
        assert!(seen.contains(&want), "GW2 sent no {want}: {seen:?}");
    }
    assert!(
        received(&caller) >= MIN_RTP,
        "the caller got {} of its RTP back through the inside's echo; gw2 {gw2}; gw1 {gw1}",
        received(&caller)
    );
    // The peer ends the session (CloseLogicalChannel, EndSessionCommand, H.323 clause 8.5);
    // GW2 answers with its own and Release Complete, which may reach it first.
    assert_eq!(caller["release"]["cause"], 16, "{caller}");
    // The inside answered, echoed, got both digits as INFO, then the BYE.
    assert!(ust.success(), "sipp uas:\n{uout}");
    let h245 = match mode {
        H245Mode::Separate => ports_used(&pcap, s.gw2_media),
        H245Mode::Tunnel => Vec::new(),
    };
    assert_eq!(
        h245.len(),
        usize::from(mode == H245Mode::Separate),
        "{h245:?}"
    );
    assert_clean_h245(&pcap, &h245);
}

#[test]
fn outside_h323_without_fast_start_tunnelled_h245_to_inside_sip() {
    outside_h323_without_fast_start_to_inside_sip(H245Mode::Tunnel, Family::V4);
}

#[test]
fn outside_h323_without_fast_start_separate_h245_to_inside_sip() {
    outside_h323_without_fast_start_to_inside_sip(H245Mode::Separate, Family::V4);
}

#[test]
fn outside_h323_v6_without_fast_start_separate_h245_to_inside_sip_v6() {
    outside_h323_without_fast_start_to_inside_sip(H245Mode::Separate, Family::V6);
}

/// A fastStart call from outside H.323 to an inside PBX that refuses fastStart: GW1 falls back
/// to H.245 (tunnelled or over the PBX's separate H.245 address) and the call has media both
/// ways; the PBX's digits reach the caller as UserInputIndication through both halves.
fn outside_h323_to_inside_pbx_refusing_fast_start(mode: H245Mode) {
    let test = "h323_interworking";
    let Some(python) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    // The PBX's H.245 listener (separate), fixed so tshark can decode it.
    let pbx_h245 = free_tcp_port("127.0.0.1").to_string();
    let (pbx, pbx_port) = start_pbx(
        &python,
        "127.0.0.1",
        &[
            "--no-fast-start",
            "--h245",
            mode.arg(),
            "--h245-port",
            &pbx_h245,
            "--dtmf",
            DTMF,
        ],
    );
    let pbx_h245: u16 = pbx_h245.parse().unwrap();
    let (mut gw, gw1_h225) =
        h323_inside_gateway("pbx-refuses", addr(&format!("127.0.0.1:{pbx_port}")), true);
    let pcap = gw.dir.0.join("h323.pcap");
    let mut cap = capture(&pcap, &[gw.h225.port(), pbx_port, pbx_h245, gw1_h225]);

    // The caller uses fastStart and tunnels H.245 (for the digits).
    let mut cmd = Command::new(&python);
    cmd.arg(h323peer::peer_script())
        .args(["call", &gw.h225.to_string(), "--h245", "tunnel"])
        .args(["--rtp-port", &free_rtp_port("127.0.0.1").to_string()])
        .args(["--seconds", "4", "--cause", "16"]);
    let caller = run_caller(&mut cmd);
    let pbx = pbx.finish(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    cap.terminate(Duration::from_secs(5));
    let (gw2, gw1) = gw.stop();
    println!("caller: {caller}\npbx: {pbx}");
    let h245: &[u16] = match mode {
        H245Mode::Separate => &[pbx_h245],
        H245Mode::Tunnel => &[],
    };
    assert_clean_h245(&pcap, h245);
    assert_eq!(caller["media_via"], "fastStart", "{caller}");
    assert_eq!(
        caller["dtmf_received"],
        serde_json::json!(["1", "#"]),
        "the PBX's digits, through GW1's H.245 and GW2's tunnelled UserInputIndication: {caller}"
    );

    assert_eq!(pbx["errors"], serde_json::json!([]), "{pbx}");
    assert_eq!(pbx["connected"], true, "{pbx}");
    assert_eq!(pbx["media_via"], "h245", "{pbx}");
    assert_eq!(pbx["h245_transport"], mode.arg(), "{pbx}");
    assert_eq!(caller["connected"], true, "{caller}");
    assert!(
        received(&caller) >= MIN_RTP,
        "caller got {}; gw2 {gw2}; gw1 {gw1}",
        received(&caller)
    );
    assert!(
        received(&pbx) >= MIN_RTP,
        "pbx got {}; gw2 {gw2}; gw1 {gw1}",
        received(&pbx)
    );
    assert_eq!(pbx["release"]["by"], "remote", "{pbx}");
    assert_eq!(pbx["release"]["cause"], 16, "{pbx}");
}

#[test]
fn outside_h323_to_inside_pbx_refusing_fast_start_tunnelled() {
    outside_h323_to_inside_pbx_refusing_fast_start(H245Mode::Tunnel);
}

#[test]
fn outside_h323_to_inside_pbx_refusing_fast_start_separate() {
    outside_h323_to_inside_pbx_refusing_fast_start(H245Mode::Separate);
}

/// GW1 registered to the pycrate gatekeeper (`tests/h323peer/gatekeeper.py`): a call from
/// outside is admitted (ARQ/ACF) before GW1's Setup, which goes to the ACF's
/// `destCallSignalAddress` (the PBX; GW1's `next_hop` points nowhere), and disengaged (DRQ)
/// at its end. With the gatekeeper refusing (ARJ), the SIP caller gets a final error and the
/// PBX sees nothing.
#[test]
fn gatekeeper_admits_each_call_to_the_pbx() {
    let test = "h323_interworking";
    let Some(python) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    for refuse in [false, true] {
        let (pbx, pbx_port) = start_pbx(&python, "127.0.0.1", &[]);
        let gk_port = free_udp_port("127.0.0.1");
        let mut gk_cmd = Command::new(&python);
        gk_cmd
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/h323peer/gatekeeper.py"))
            .args(["--listen", &format!("127.0.0.1:{gk_port}")])
            .args(["--route", &format!("127.0.0.1:{pbx_port}")]);
        if refuse {
            gk_cmd.arg("--reject-arq");
        }
        let mut gk = Proc::spawn("gatekeeper", &mut gk_cmd);
        gk.wait_line("listening", Duration::from_secs(60));

        let nowhere = addr(&format!("127.0.0.1:{}", free_tcp_port("127.0.0.1")));
        let mut s = Setup::new(
            (free_rtp_port("127.0.0.1"), 0),
            (free_rtp_port("127.0.0.1"), 0),
            nowhere,
        );
        s.gw2_media.1 = s.gw2_media.0 + 99;
        s.gw1_media.1 = s.gw1_media.0 + 99;
        s.gw1_media_ip = "127.0.0.2";
        let gw1_h225 = free_tcp_port("127.0.0.2");
        s.gw1_lines = format!("protocol = \"h323\"\nh225_listen = \"127.0.0.2:{gw1_h225}\"\n");
        s.extra =
            format!("\n[gw1.gatekeeper]\naddress = \"127.0.0.1:{gk_port}\"\ndiscover = false\n");
        let mut gw = Gateway::start("gatekeeper-admits", &s);
        gk.wait_line("\"RCF\"", Duration::from_secs(20));

        let call = RawCall::invite(
            gw.sip,
            "127.0.0.1",
            &format!("sip:2001@{}", gw.sip),
            "Outside",
            Duration::from_secs(15),
        );
        if refuse {
            let (status, seen) = match call {
                Ok(_) => panic!("answered although the gatekeeper refused"),
                Err(e) => e,
            };
            assert!(status >= 400, "final {status}:\n{seen}");
            drop(pbx);
            gw.stop();
            gk.drain();
            let arj = gk.seen.iter().any(|l| l.contains("\"ARJ\""));
            assert!(arj, "no ARJ sent:\n{}", gk.seen.join("\n"));
            continue;
        }
        let mut call = call.unwrap_or_else(|(st, seen)| panic!("not answered ({st}):\n{seen}"));
        let media = call.start_media();
        std::thread::sleep(Duration::from_millis(3000));
        let count = media.stop();
        assert!(call.hangup(Duration::from_secs(5)), "no 200 for the BYE");
        let peer = pbx.finish(Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(500));
        gw.stop();
        gk.drain();
        let lines: Vec<Value> = gk
            .seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        let of = |t: &str| lines.iter().filter(|v| v["type"] == t).count();
        println!("gatekeeper:\n{}", gk.seen.join("\n"));
        assert_eq!(of("ARQ"), 1, "one admission per call");
        assert_eq!(of("ACF"), 1);
        let arq = lines.iter().find(|v| v["type"] == "ARQ").unwrap();
        assert_eq!(arq["answerCall"], false, "{arq}");
        assert!(of("DRQ") >= 1, "no DRQ at the end of the call");
        assert!(
            received(&peer) >= MIN_RTP,
            "the PBX got {}",
            received(&peer)
        );
        assert!(
            count.received >= MIN_RTP,
            "the caller got {}",
            count.received
        );
    }
}

/// outside H.323 → inside H.323 with each side in its own family, fastStart (or, `mode`
/// given, no fastStart: GW2 runs H.245 with the caller) end to end.
fn h323_to_h323(outside: Family, inside: Family, mode: Option<H245Mode>) {
    let test = "h323_interworking";
    let Some(python) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    let (pbx, pbx_port) = start_pbx(&python, inside.ip(), &[]);
    let (mut gw, gw1_h225) = h323_gateway(
        "h323-families",
        addr(&inside.host(pbx_port)),
        true,
        outside,
        inside,
    );
    let pcap = gw.dir.0.join("h323.pcap");
    let h225 = gw.h225.port();
    let mut cap = capture_ranges(
        &pcap,
        &[
            (h225, h225),
            (pbx_port, pbx_port),
            (gw1_h225, gw1_h225),
            media_range(&gw),
        ],
    );
    let mut cmd = Command::new(&python);
    cmd.arg(h323peer::peer_script())
        .args(["call", &gw.h225.to_string(), "--local-ip", outside.ip()])
        .args(["--rtp-port", &free_rtp_port(outside.ip()).to_string()])
        .args(["--seconds", "4", "--cause", "16"]);
    if let Some(mode) = mode {
        cmd.args(["--no-fast-start", "--h245", mode.arg()]);
    }
    let caller = run_caller(&mut cmd);
    let pbx = pbx.finish(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    cap.terminate(Duration::from_secs(5));
    let (gw2, gw1) = gw.stop();
    println!("caller: {caller}\npbx: {pbx}");
    let h245 = match mode {
        Some(H245Mode::Separate) => ports_used(&pcap, media_range(&gw)),
        _ => Vec::new(),
    };
    assert_clean_h245(&pcap, &h245);
    assert_eq!(caller["errors"], serde_json::json!([]), "{caller}");
    assert_eq!(pbx["errors"], serde_json::json!([]), "{pbx}");
    assert_eq!(caller["connected"], true, "{caller}");
    assert_eq!(pbx["connected"], true, "{pbx}");
    let want = if mode.is_some() { "h245" } else { "fastStart" };
    assert_eq!(caller["media_via"], want, "{caller}");
    assert!(
        received(&caller) >= MIN_RTP,
        "caller got {}; gw2 {gw2}; gw1 {gw1}",
        received(&caller)
    );
    assert!(
        received(&pbx) >= MIN_RTP,
        "pbx got {}; gw2 {gw2}; gw1 {gw1}",
        received(&pbx)
    );
    assert_eq!(caller["release"]["cause"], 16, "{caller}");
    assert_eq!(pbx["release"]["cause"], 16, "{pbx}");
}

#[test]
fn outside_h323_v6_to_inside_h323_v6() {
    h323_to_h323(Family::V6, Family::V6, None);
}

#[test]
fn outside_h323_v6_to_inside_h323_v4() {
    h323_to_h323(Family::V6, Family::V4, None);
}

#[test]
fn outside_h323_v4_to_inside_h323_v6() {
    h323_to_h323(Family::V4, Family::V6, None);
}

#[test]
fn outside_h323_v6_without_fast_start_separate_h245_to_inside_h323_v4() {
    h323_to_h323(Family::V6, Family::V4, Some(H245Mode::Separate));
}

#[test]
fn outside_h323_v4_without_fast_start_tunnelled_h245_to_inside_h323_v6() {
    h323_to_h323(Family::V4, Family::V6, Some(H245Mode::Tunnel));
}

/// outside SIP (IPv4) → an inside H.323 PBX on IPv6, and that PBX calling out to SIP.
#[test]
fn outside_sip_to_inside_h323_v6_and_back() {
    let test = "h323_interworking";
    let Some(python) = prerequisites(test) else {
        return;
    };
    let _serial = serial();
    // SIP → H.323 (IPv6 inside).
    let (pbx, pbx_port) = start_pbx(&python, "::1", &[]);
    let provider_port = free_udp_port("127.0.0.1");
    let mut s = Setup::new(
        (free_rtp_port("127.0.0.1"), 0),
        (0, 0),
        addr(&format!("[::1]:{pbx_port}")),
    );
    s.gw2_media.1 = s.gw2_media.0 + 99;
    s.gw1_media = (s.gw2_media.1 + 1, s.gw2_media.1 + 100);
    s.inside_v6 = true;
    s.outside_next_hop = Some(addr(&format!("127.0.0.1:{provider_port}")));
    let gw1_h225 = free_tcp_port("::1");
    s.gw1_lines = format!("protocol = \"h323\"\nh225_listen = \"[::1]:{gw1_h225}\"\n");
    let mut gw = Gateway::start("sip-h323-v6", &s);
    let call = RawCall::invite(
        gw.sip,
        "127.0.0.1",
        &format!("sip:2001@{}", gw.sip),
        "Outside",
        Duration::from_secs(15),
    );
    let mut call = call.unwrap_or_else(|(st, seen)| panic!("not answered ({st}):\n{seen}"));
    let media = call.start_media();
    std::thread::sleep(Duration::from_millis(3000));
    let count = media.stop();
    assert!(call.hangup(Duration::from_secs(5)), "no 200 for the BYE");
    let peer = pbx.finish(Duration::from_secs(20));
    assert!(
        received(&peer) >= MIN_RTP,
        "the IPv6 PBX got {}",
        received(&peer)
    );
    assert!(
        count.received >= MIN_RTP,
        "the SIP caller got {}",
        count.received
    );
    assert_eq!(peer["release"]["cause"], 16, "{peer}");

    // H.323 (IPv6 inside) → SIP outside (IPv4), sipp echoing.
    let uas = echo_uas(&gw, provider_port, UAS_PCMA);
    let mut cmd = Command::new(&python);
    cmd.arg(h323peer::peer_script())
        .args(["call", &format!("[::1]:{gw1_h225}"), "--local-ip", "::1"])
        .args(["--rtp-port", &free_rtp_port("::1").to_string()])
        .args(["--called", "4930777", "--seconds", "4", "--cause", "16"]);
    let caller = run_caller(&mut cmd);
    let (ust, uout) = uas.join().unwrap();
    let (gw2, gw1) = gw.stop();
    println!("caller: {caller}");
    assert_eq!(caller["connected"], true, "{caller}");
    assert!(
        received(&caller) >= MIN_RTP,
        "the IPv6 PBX got {} back through the provider's echo; gw2 {gw2}; gw1 {gw1}",
        received(&caller)
    );
    assert!(ust.success(), "sipp uas:\n{uout}");
}
