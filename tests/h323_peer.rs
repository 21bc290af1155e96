//! Issue 10, "the peer to test against": the independent pycrate H.323 endpoint
//! (`tests/h323peer/h323peer.py`, which shares no code with ours) places a fastStart call to
//! the live gateway's H.225.0 listener (GW2, `sgw run --role both`), and the call runs through
//! the tunnel to an inside sipp UAS that echoes the RTP (`UAS_PCMA` with `-rtp_echo`):
//!
//! - the call connects, and the peer reads GW2's fastStart answer (its RTP address);
//! - the peer sends G.711 A-law RTP for a few seconds and counts what comes back: at least
//!   [`MIN_RTP`] packets each way (what it receives has crossed both halves twice and sipp's
//!   echo, so each way is checked at the far end);
//! - the peer ends the call with Release Complete cause [`CAUSE`]: the inside gets a BYE with
//!   `Reason: Q.850;cause=CAUSE` (the sipp scenario checks it) and the call records carry that
//!   cause, ended by the outside;
//! - tshark, capturing on `lo` for the H.225.0 port, decodes every PDU of the call (GW2's and
//!   the peer's) with no malformed frame and no expert error, and GW2's Call Proceeding and
//!   Connect are among them.
//!
//! Offering µ-law first to an inside that answers A-law only: GW2's fastStart answer accepts
//! the A-law channels, and the media is A-law.
//!
//! With DTMF: the peer sends digits as tunnelled H.245 UserInputIndication (signal) in H.225.0
//! Facility messages; the inside gets one SIP INFO (`Signal=DIGIT`) per digit, in order.
//!
//! The same call ended from the inside instead (the UAS sends BYE after four seconds): the
//! peer gets GW2's Release Complete with cause 16 (normal clearing), and the records say
//! ended by the inside. A third test runs the peer against itself (`answer` and `call`), so
//! its answering side is exercised too, and tshark reads the peer's own PDUs cleanly.
//! `peer_selftest` runs the peer's own self-test (`tests/h323peer/selftest.py`): the peer
//! against itself for fastStart, H.245 tunnelled and on a separate connection (either side
//! listening), fastStart refused, DTMF both ways, and IPv6, with tshark decoding every
//! H.225.0 and H.245 frame of each call.
//!
//! Needs sipp, tshark capturing on `lo`, and a Python with pycrate (`SGW_PYTHON`, else
//! `.venv/bin/python`, else `python3`): without them the test says it is skipped, and fails
//! under `CI=true`.

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
use std::time::Duration;
use support::gateway::*;
use support::scenarios::UAS_PCMA;
use support::*;

/// RTP packets required each way.
const MIN_RTP: u64 = 100;
/// Seconds of media the peer sends (20 ms packets: 200 of them).
const MEDIA_SECS: &str = "4";
/// The Q.850 cause the peer releases with.
const CAUSE: u8 = 16;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn peer_script() -> PathBuf {
    root().join("tests/h323peer/h323peer.py")
}

/// The Python that runs the peer: `SGW_PYTHON`, else the test venv's, else `python3`, the
/// first in which the peer loads pycrate.
fn python(test: &str) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("SGW_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![root().join(".venv/bin/python"), PathBuf::from("python3")],
    };
    let found = candidates.into_iter().find(|p| {
        Command::new(p)
            .arg(peer_script())
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

/// `UAS_PCMA`, whose BYE must carry `Reason: Q.850;cause=CAUSE`.
fn uas_checking_reason() -> String {
    let bye = "<recv request=\"BYE\"/>";
    assert!(UAS_PCMA.contains(bye));
    UAS_PCMA.replace(
        bye,
        &format!(
            "<recv request=\"BYE\">\n    <action>\n      <ereg regexp=\"Q\\.850;cause={CAUSE}\\b\" \
             search_in=\"hdr\" header=\"Reason:\" check_it=\"true\" assign_to=\"reason\"/>\n    \
             </action>\n  </recv>\n  <Reference variables=\"reason\"/>"
        ),
    )
}

/// tshark over `pcap` (Q.931 over TPKT found by its heuristic, as in tests/h323_emit_oracle.rs):
/// frames with a malformed packet or an expert error.
fn tshark_errors(pcap: &Path) -> String {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-o", "tcp.try_heuristic_first:TRUE"])
        .args(["-Y", "_ws.malformed || _ws.expert.severity >= error"])
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Frames of `pcap` matching `filter`.
fn tshark_count(pcap: &Path, filter: &str) -> usize {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-o", "tcp.try_heuristic_first:TRUE", "-Y", filter])
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().count()
}

/// The Q.931 message types (tshark's names) of the frames GW2 (`port`) sent, in order, and
/// the H.225.0 message bodies tshark decoded in them.
fn gw2_messages(pcap: &Path, port: u16) -> Vec<(String, String)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-o", "tcp.try_heuristic_first:TRUE"])
        .args(["-Y", &format!("q931 && tcp.srcport == {port}")])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args(["-e", "q931.message_type", "-e", "h225.h323_message_body"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap_or((l, ""));
            (a.to_owned(), b.to_owned())
        })
        .collect()
}

/// A UAS answering PCMA (RTP echoed by sipp) that hangs up itself after four seconds of
/// media: the BYE goes to the INVITE's Contact URI, with the dialog's tags turned round.
const UAS_PCMA_HANGS_UP: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas answering PCMA, then hanging up">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="caller"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="callee"/>
      <ereg regexp="&lt;(sip:[^&gt;]*)&gt;" search_in="hdr" header="Contact:" assign_to="contact_hdr,contact"/>
    </action>
  </recv>
  <Reference variables="contact_hdr"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
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
  <recv request="ACK" crlf="true"/>
  <pause milliseconds="4000"/>
  <send retrans="500"><![CDATA[
      BYE [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$callee];tag=[pid]SIPpTag01[call_number]
      To: [$caller]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]></send>
  <recv response="200"/>
</scenario>
"#;

/// Who ends the live call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hangup {
    /// The pycrate peer, with Release Complete cause [`CAUSE`].
    Peer,
    /// The inside sipp UAS, with a BYE: the peer gets Release Complete, normal clearing.
    Inside,
}

/// Digits the DTMF test sends, and what the inside must get for them, in order.
const DTMF: &str = "5#";

#[test]
fn pycrate_peer_calls_gw2_with_fast_start_and_media_flows_both_ways() {
    live_call(Hangup::Peer, "", "PCMA,PCMU");
}

#[test]
fn pycrate_peer_call_ended_from_the_inside_gets_release_complete_normal_clearing() {
    live_call(Hangup::Inside, "", "PCMA,PCMU");
}

/// The peer prefers µ-law, the inside answers A-law only: GW2's fastStart answer accepts the
/// A-law channels (what the call really uses), and the media is A-law both ways.
#[test]
fn pycrate_peer_preferring_pcmu_gets_the_pcma_the_inside_answered() {
    live_call(Hangup::Peer, "", "PCMU,PCMA");
}

/// Tunnelled H.245 UserInputIndication (signal) from the peer reaches the inside as SIP INFO
/// (`application/dtmf-relay`), digit by digit, in order.
#[test]
fn pycrate_peer_dtmf_in_tunnelled_h245_reaches_the_inside_as_sip_info() {
    live_call(Hangup::Peer, DTMF, "PCMA,PCMU");
}

/// `scenario` with a `recv INFO` (checking `Signal=DIGIT`) and its 200 per digit of `dtmf`,
/// before its BYE, answering without telephone-event.
fn with_info_per_digit(scenario: &str, dtmf: &str) -> String {
    let mut infos = String::new();
    for (i, d) in dtmf.chars().enumerate() {
        let re = if d.is_ascii_alphanumeric() || d == '#' {
            d.to_string()
        } else {
            format!("\\{d}")
        };
        infos.push_str(&format!(
            r#"<recv request="INFO">
    <action>
      <ereg regexp="Signal={re}\s" search_in="body" check_it="true" assign_to="digit{i}"/>
    </action>
  </recv>
  <Reference variables="digit{i}"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]></send>
  "#
        ));
    }
    // A party taking its digits as INFO negotiates no telephone-event.
    let scenario = support::scenarios::without_telephone_event(scenario);
    let at = scenario.find("<recv request=\"BYE\"").unwrap();
    format!("{}{infos}{}", &scenario[..at], &scenario[at..])
}

/// One call from the peer (offering `codecs`, in order of preference) to GW2, ended as
/// `hangup` says, with `dtmf` digits sent during it.
fn live_call(hangup: Hangup, dtmf: &str, codecs: &str) {
    let test = "h323_peer";
    if !sipp_available(test) || !peer_available(test, "tshark", &["-v"], "tshark") {
        return;
    }
    if let Err(e) = support::phones::capture_works() {
        assert!(
            !ci(),
            "{test}: tshark cannot capture on lo under CI=true: {e}"
        );
        eprintln!("{test}: skipped: {e}");
        return;
    }
    let Some(python) = python(test) else {
        return;
    };
    let _serial = serial();
    let inside_port = free_udp_port("127.0.0.1");
    let inside = addr(&format!("127.0.0.1:{inside_port}"));
    let mut s = Setup::new(
        (free_rtp_port("127.0.0.1"), 0),
        (free_rtp_port("127.0.0.1"), 0),
        inside,
    );
    s.gw2_media.1 = s.gw2_media.0 + 99;
    s.gw1_media.1 = s.gw1_media.0 + 99;
    s.gw1_media_ip = "127.0.0.2";
    s.h225 = true;
    let mut gw = Gateway::start("h323-peer", &s);
    let h225_port = gw.h225.port();

    // Everything on the H.225.0 port, from before the call starts.
    let pcap = gw.dir.0.join("h225.pcap");
    let mut cap = Proc::spawn_group(
        "tshark",
        Command::new("tshark")
            .args(["-i", "lo", "-f", &format!("tcp port {h225_port}"), "-w"])
            .arg(&pcap),
    );
    cap.wait_line("Capturing on", Duration::from_secs(15));

    let scenario = match hangup {
        Hangup::Peer => uas_checking_reason(),
        Hangup::Inside => UAS_PCMA_HANGS_UP.to_owned(),
    };
    let scenario = if dtmf.is_empty() {
        scenario
    } else {
        with_info_per_digit(&scenario, dtmf)
    };
    let uas_sf = gw.dir.file("uas.xml", &scenario);
    let mut uas_cmd = sipp(&gw.dir.0);
    uas_cmd
        .arg("-sf")
        .arg(&uas_sf)
        .args(["-i", "127.0.0.1", "-p", &inside_port.to_string()])
        .args([
            "-mi",
            "127.0.0.1",
            "-mp",
            &free_rtp_port("127.0.0.1").to_string(),
        ])
        .args(["-rtp_echo", "-m", "1"]);
    let uas =
        std::thread::spawn(move || run_bounded("sipp uas", &mut uas_cmd, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(300));

    let mut peer_cmd = Command::new(&python);
    peer_cmd
        .arg(peer_script())
        .args(["call", &gw.h225.to_string()])
        .args(["--rtp-port", &free_rtp_port("127.0.0.1").to_string()])
        .args(["--cause", &CAUSE.to_string()])
        .args(["--calling", "4930555123", "--called", "2001"])
        .args(["--codecs", codecs]);
    if !dtmf.is_empty() {
        peer_cmd.args(["--dtmf", dtmf]);
    }
    // Ended by the inside: media runs until its BYE (after four seconds), well before this.
    peer_cmd.args([
        "--seconds",
        if hangup == Hangup::Peer {
            MEDIA_SECS
        } else {
            "12"
        },
    ]);
    let (st, out) = run_bounded("h323peer", &mut peer_cmd, Duration::from_secs(40));
    let summary: Value = out
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v["mode"] == "call")
        })
        .unwrap_or_else(|| panic!("no summary from the peer (status {st}):\n{out}"));
    println!("peer: {summary}");

    let (ust, uout) = uas.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    cap.terminate(Duration::from_secs(5));
    let records = gw.call_records();
    let (gw2, gw1) = gw.stop();
    println!("sipp uas ({ust}):\n{uout}");
    println!("records: {records:?}");

    // The call, as the peer saw it.
    assert_eq!(summary["errors"], serde_json::json!([]), "{summary}");
    assert!(st.success(), "peer exit {st}:\n{out}");
    assert_eq!(summary["connected"], true, "{summary}");
    let seen: Vec<&str> = summary["messages_seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["type"].as_str())
        .collect();
    assert!(seen.contains(&"connect"), "{seen:?}");
    assert!(
        summary["remote_rtp"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "GW2's fastStart answer gave no RTP address: {summary}"
    );
    assert_eq!(summary["codec"], "PCMA", "{summary}");
    let sent = summary["rtp_sent"].as_u64().unwrap();
    let received = summary["rtp_received"].as_u64().unwrap();
    assert!(sent >= MIN_RTP, "peer sent {sent} RTP packets");
    // All of it G.711 A-law (payload type 8), nothing that is not RTP.
    assert_eq!(
        summary["rtp_received_payload_types"],
        serde_json::json!({ "8": received_of(&summary) }),
        "{summary}"
    );
    assert_eq!(summary["rtp_received_not_rtp"], 0, "{summary}");
    assert!(
        received >= MIN_RTP,
        "peer got {received} of {sent} RTP packets back through the echo; gw2 {gw2}; gw1 {gw1}"
    );
    // Released by the side that hung up, with the expected cause (normal clearing from the
    // inside's BYE).
    let (by, ended_by) = match hangup {
        Hangup::Peer => ("us", "outside"),
        Hangup::Inside => ("remote", "inside"),
    };
    assert_eq!(summary["release"]["by"], by, "{summary}");
    assert_eq!(summary["release"]["cause"], u64::from(CAUSE), "{summary}");

    // The inside: answered, echoed, and got a BYE with the peer's cause (checked by sipp), or
    // sent its own and got 200.
    assert!(ust.success(), "sipp uas:\n{uout}");

    // The records of both halves: one call, ended by the side that hung up, with its cause.
    assert!(!records.is_empty(), "no call records");
    for r in &records {
        assert_eq!(r["cause"], u64::from(CAUSE), "{r}");
        assert_eq!(r["ended_by"], ended_by, "{r}");
        assert!(r["answered_at"].is_number(), "{r}");
    }

    // tshark: every PDU of the call decodes cleanly, GW2's answers among them.
    let errors = tshark_errors(&pcap);
    assert!(errors.is_empty(), "tshark errors in the call:\n{errors}");
    // Every segment with payload, either way, was read as Q.931 (so the check covered it).
    let with_payload = tshark_count(&pcap, "tcp.len > 0");
    let q931 = tshark_count(&pcap, "q931");
    assert_eq!(with_payload, q931, "segments with payload vs Q.931 frames");
    assert!(q931 >= 4, "only {q931} Q.931 frames captured");
    let gw2_sent = gw2_messages(&pcap, h225_port);
    println!("gw2 sent: {gw2_sent:?}");
    let types: Vec<&str> = gw2_sent.iter().map(|(t, _)| t.as_str()).collect();
    let mut wanted = vec!["0x02", "0x07"];
    if hangup == Hangup::Inside {
        wanted.push("0x5a");
    }
    for want in wanted {
        assert!(
            types.contains(&want),
            "GW2 sent no Q.931 message type {want}: {gw2_sent:?}"
        );
    }
    for (t, body) in &gw2_sent {
        assert!(
            !body.is_empty(),
            "GW2's {t} carries no H.225.0 body tshark decodes"
        );
    }
}

fn received_of(summary: &Value) -> u64 {
    summary["rtp_received"].as_u64().unwrap()
}

/// The last JSON line of `out` whose `mode` is `mode`.
fn summary_of(out: &str, mode: &str) -> Option<Value> {
    out.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .filter(|v| v["mode"] == mode)
    })
}

/// The peer against itself (its `answer` mode has no live counterpart in the gateway yet: GW1
/// does not speak H.323 toward the inside live): one fastStart call with RTP both ways and
/// tunnelled UserInputIndication digits (the answerer decodes them), and
/// tshark reads every PDU of it cleanly, so the peer itself emits what an independent decoder
/// accepts.
#[test]
fn pycrate_peer_answers_its_own_fast_start_call() {
    let test = "h323_peer self";
    let Some(python) = python(test) else {
        return;
    };
    let capture = peer_available(test, "tshark", &["-v"], "tshark")
        && match support::phones::capture_works() {
            Ok(()) => true,
            Err(e) => {
                assert!(
                    !ci(),
                    "{test}: tshark cannot capture on lo under CI=true: {e}"
                );
                eprintln!("{test}: tshark part skipped: {e}");
                false
            }
        };
    let dir = Scratch::new("h323-peer-self");
    let port = free_tcp_port("127.0.0.1");
    let pcap = dir.0.join("self.pcap");
    let mut cap = capture.then(|| {
        let mut p = Proc::spawn_group(
            "tshark",
            Command::new("tshark")
                .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
                .arg(&pcap),
        );
        p.wait_line("Capturing on", Duration::from_secs(15));
        p
    });
    let mut answer = Proc::spawn(
        "h323peer answer",
        Command::new(&python)
            .arg(peer_script())
            .args(["answer", "--listen", &port.to_string()])
            .args(["--rtp-port", &free_rtp_port("127.0.0.1").to_string()])
            .args(["--seconds", MEDIA_SECS, "--release-timeout", "20"]),
    );
    answer.wait_line("listening", Duration::from_secs(20));
    let mut call = Command::new(&python);
    call.arg(peer_script())
        .args(["call", &format!("127.0.0.1:{port}")])
        .args(["--rtp-port", &free_rtp_port("127.0.0.1").to_string()])
        .args(["--seconds", MEDIA_SECS, "--cause", "31", "--dtmf", DTMF]);
    let (st, out) = run_bounded("h323peer call", &mut call, Duration::from_secs(40));
    let caller = summary_of(&out, "call").unwrap_or_else(|| panic!("caller ({st}):\n{out}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline && !matches!(answer.child.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(50));
    }
    answer.terminate(Duration::from_secs(2));
    let answerer = summary_of(&answer.seen.join("\n"), "answer")
        .unwrap_or_else(|| panic!("answerer:\n{}", answer.seen.join("\n")));
    println!("caller: {caller}\nanswerer: {answerer}");
    assert!(st.success(), "caller exit {st}: {caller}");
    for s in [&caller, &answerer] {
        assert_eq!(s["connected"], true, "{s}");
        assert_eq!(s["errors"], serde_json::json!([]), "{s}");
        assert_eq!(s["codec"], "PCMA", "{s}");
        assert!(s["rtp_sent"].as_u64().unwrap() >= MIN_RTP, "{s}");
        assert!(s["rtp_received"].as_u64().unwrap() >= MIN_RTP, "{s}");
    }
    assert_eq!(
        caller["release"],
        serde_json::json!({"by": "us", "cause": 31})
    );
    assert_eq!(
        answerer["release"],
        serde_json::json!({"by": "remote", "cause": 31})
    );
    assert_eq!(answerer["dtmf_received"], serde_json::json!(["5", "#"]));
    assert_eq!(answerer["calling"], "4930555");
    assert_eq!(answerer["called"], "2001");

    if let Some(cap) = cap.as_mut() {
        std::thread::sleep(Duration::from_millis(300));
        cap.terminate(Duration::from_secs(5));
        let errors = tshark_errors(&pcap);
        assert!(
            errors.is_empty(),
            "tshark errors in the peer's PDUs:\n{errors}"
        );
        assert_eq!(
            tshark_count(&pcap, "tcp.len > 0"),
            tshark_count(&pcap, "q931"),
            "segments with payload vs Q.931 frames"
        );
        // Setup, Call Proceeding, Connect, Release Complete
        assert!(tshark_count(&pcap, "h225") >= 4);
    }
}

/// The peer's own self-test, `tests/h323peer/selftest.py`: the peer against itself on
/// loopback, one call per case (fastStart; no fastStart with H.245 tunnelled, on a separate
/// connection the answerer listens for, and one the caller listens for; fastStart refused by
/// the answerer, falling back to H.245; DTMF both ways tunnelled and separate; either side
/// hanging up; IPv6). Each case checks at least 100 RTP packets each way, the codec, the
/// H.245 procedures, the DTMF and the release cause on both sides; tshark (required under
/// `CI=true`) decodes every H.225.0 and H.245 frame with no malformed frame and no expert
/// error, and names the same H.245 messages the two sides sent.
#[test]
fn peer_selftest() {
    let test = "h323_peer selftest";
    let Some(python) = python(test) else {
        return;
    };
    let mut cmd = Command::new(&python);
    cmd.arg(root().join("tests/h323peer/selftest.py"))
        .arg("--python")
        .arg(&python);
    if ci() {
        cmd.arg("--require-tshark");
    }
    let (st, out) = run_bounded("h323peer selftest", &mut cmd, Duration::from_secs(900));
    println!("{out}");
    assert!(st.success(), "selftest failed ({st}):\n{out}");
    assert!(out.contains("selftest: all passed"), "{out}");
}
