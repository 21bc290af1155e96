//! Access control (issue 8): `[[policy.rules]]`, first match wins, as one link of the admission
//! chain. On the engine: a denied outside SIP call gets the rule's status, a denied H.323 Setup
//! Release Complete with the rule's cause, a call from the intranet to a toll prefix 403 from
//! GW1, and every decision names its rule (report, call record, stats). Live: the same through
//! `sgw run` on loopback (raw SIP, no sipp needed). Replay: `sgw replay --config --json` puts the
//! rule on the INVITE.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use bytes::Bytes;
use codecs::sip::{self, MessageBuilder, Method};
use sgw::engine::{ConnId, Engine, EngineConfig, Event, Flow, Report, Side, Transmit, Transport};
use std::net::SocketAddr;
use std::time::Duration;
use support::rawsip::{InsideUas, RawCall};
use support::*;

/// The rules every test here uses (after a `[policy]` header or at the end of a file).
const RULES: &str = r#"
[[policy.rules]]
name = "emergency"
emergency = true
action = "allow"

[[policy.rules]]
name = "blocked-net"
direction = "from_outside"
source = ["127.77.0.0/16", "192.0.2.0/24", "2001:db8:bad::/48"]
action = "deny"
status = 603
cause = 21

[[policy.rules]]
name = "toll-fraud"
direction = "from_inside"
callee = ["00*", "+881*"]
action = "deny"

[[policy.rules]]
name = "inside-out"
direction = "from_inside"
action = "allow"

[[policy.rules]]
name = "inbound-did"
direction = "from_outside"
callee = ["+49301234XXX", "did*"]
action = "allow"

[[policy.rules]]
name = "h323-deny"
protocol = "h323"
action = "deny"
cause = 88
"#;

/// A configuration for the engine tests: only its `[policy]` matters.
fn engine_config() -> EngineConfig {
    let text = format!(
        "[gw2]\nsip_udp = [\"0.0.0.0:5060\"]\ntunnel_listen = \"0.0.0.0:7001\"\noutside_next_hop = \"203.0.113.50:5060\"\n[gw2.media]\nip = \"198.51.100.1\"\nport_min = 20000\nport_max = 20099\n{RULES}"
    );
    let cfg = sgw::config::Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    EngineConfig {
        outside_sip: Some(addr(GW2)),
        outside_next_hop: Some(addr(PROVIDER)),
        access: cfg.policy.access_policy(),
        ..EngineConfig::default()
    }
}

const GW2: &str = "198.51.100.1:5060";
const PROVIDER: &str = "203.0.113.50:5060";
const PBX: &str = "10.0.0.10:5060";
const GW1: &str = "10.0.0.1:5060";

fn sdp(ip: &str, port: u16) -> Vec<u8> {
    format!("v=0\r\no=x 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n").into_bytes()
}

fn invite(ruri: &str, from_host: &str, call_id: &str) -> Bytes {
    MessageBuilder::request(&Method::Invite, ruri)
        .header(
            "Via",
            format!("SIP/2.0/UDP {from_host};branch=z9hG4bK{call_id}"),
        )
        .header("Max-Forwards", "70")
        .header("From", format!("<sip:caller@{from_host}>;tag=t{call_id}"))
        .header("To", format!("<{ruri}>"))
        .header("Call-ID", call_id)
        .header("CSeq", "1 INVITE")
        .header("Contact", format!("<sip:caller@{from_host}>"))
        .body("application/sdp", sdp("10.0.0.20", 16000))
        .build()
}

/// Transmits and reports after one input.
fn drain(e: &mut Engine) -> (Vec<Transmit>, Vec<Report>, Vec<Event>) {
    let mut t = Vec::new();
    while let Some(x) = e.poll_transmit() {
        t.push(x);
    }
    let (mut reports, mut other) = (Vec::new(), Vec::new());
    while let Some(ev) = e.poll_event() {
        match ev {
            Event::Report(r) => reports.push(r),
            ev => other.push(ev),
        }
    }
    (t, reports, other)
}

fn outside_from(e: &mut Engine, remote: &str, data: Bytes) -> (Vec<Transmit>, Vec<Report>) {
    let flow = Flow {
        transport: Transport::Udp,
        local: addr(GW2),
        remote: addr(remote),
    };
    e.handle_datagram(Duration::from_millis(1), flow, data);
    let (t, r, _) = drain(e);
    (t, r)
}

fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.payload).into_owned()
}

fn status(t: &Transmit) -> Option<u16> {
    sip::parse_datagram(t.payload.clone()).ok()?.0.status()
}

#[test]
fn denied_outside_sip_call_gets_the_rules_status_and_the_report_names_it() {
    let mut e = Engine::new(engine_config());
    let (t, r) = outside_from(
        &mut e,
        "192.0.2.7:5060",
        invite("sip:+49301234567@198.51.100.1", "192.0.2.7:5060", "c1"),
    );
    let answer = t
        .iter()
        .find(|t| t.side == Side::Outside && status(t).is_some())
        .expect("an answer");
    let answer_text = text(answer);
    assert_eq!(status(answer), Some(603), "{answer_text}");
    assert!(
        answer_text.contains("Reason: Q.850;cause=21"),
        "{answer_text}"
    );
    assert!(
        !answer_text.contains("blocked-net"),
        "the rule's name went to the caller:\n{answer_text}"
    );
    assert!(
        !t.iter().any(|t| t.side == Side::Inside),
        "a denied call reached the inside"
    );
    let inv = r.iter().find(|r| r.response == Some(603)).expect("report");
    assert_eq!(inv.rule.as_deref(), Some("blocked-net"));
    assert_eq!(inv.reason.as_deref(), Some("denied by rule blocked-net"));
    // From another source, the DID range is allowed; the report and the call record name it.
    let (t, r) = outside_from(
        &mut e,
        "203.0.113.9:5060",
        invite("sip:+49-30-1234-568@198.51.100.1", "203.0.113.9:5060", "c2"),
    );
    assert!(
        t.iter().any(|t| t.side == Side::Inside),
        "allowed call not relayed"
    );
    let inv = r
        .iter()
        .find(|r| r.summary.to_string().starts_with("INVITE"))
        .unwrap();
    assert_eq!(inv.rule.as_deref(), Some("inbound-did"), "{inv:?}");
    // Anything else from outside: the implicit final deny, 403.
    let (t, r) = outside_from(
        &mut e,
        "203.0.113.9:5060",
        invite("sip:4930999@198.51.100.1", "203.0.113.9:5060", "c3"),
    );
    assert!(t.iter().any(|t| status(t) == Some(403)));
    assert_eq!(
        r.iter().find_map(|r| r.rule.clone()).as_deref(),
        Some("default-deny")
    );
    // Only the INVITE's report carries the rule.
    assert_eq!(r.iter().filter(|r| r.rule.is_some()).count(), 1, "{r:?}");
    let s = serde_json::to_value(e.stats()).unwrap();
    let rules = &s["access_rules"];
    assert_eq!(rules["blocked-net"]["denied"], 1, "{rules}");
    assert_eq!(rules["inbound-did"]["allowed"], 1, "{rules}");
    assert_eq!(rules["default-deny"]["denied"], 1, "{rules}");
}

#[test]
fn inside_call_to_a_toll_prefix_gets_403_from_gw1() {
    let mut e = Engine::new(engine_config());
    let flow = Flow {
        transport: Transport::Udp,
        local: addr(GW1),
        remote: addr(PBX),
    };
    e.handle_inside_datagram(
        Duration::from_millis(1),
        flow,
        invite("sip:0044201234567@10.0.0.1:5060", PBX, "in1"),
    );
    let (t, r, _) = drain(&mut e);
    let answer = t
        .iter()
        .find(|t| t.side == Side::Inside && status(t).is_some_and(|s| s >= 200))
        .expect("a final answer to the PBX");
    assert_eq!(status(answer), Some(403), "{}", text(answer));
    assert!(
        !t.iter().any(|t| t.side == Side::Outside),
        "a toll call went outside"
    );
    let inv = r.iter().find(|r| r.response == Some(403)).unwrap();
    assert_eq!(inv.side, Side::Inside);
    assert_eq!(inv.rule.as_deref(), Some("toll-fraud"));
    // A national number goes out.
    e.handle_inside_datagram(
        Duration::from_millis(2),
        flow,
        invite("sip:030123456@10.0.0.1:5060", PBX, "in2"),
    );
    let (t, r, _) = drain(&mut e);
    assert!(
        t.iter().any(|t| t.side == Side::Outside),
        "national call not placed"
    );
    assert_eq!(
        r.iter().find_map(|r| r.rule.clone()).as_deref(),
        Some("inside-out")
    );
}

#[test]
fn emergency_calls_pass_before_any_deny() {
    let mut e = Engine::new(engine_config());
    // From the blocked network, to an emergency number and to the SOS URN.
    for (i, ruri) in ["sip:112@198.51.100.1", "urn:service:sos"]
        .into_iter()
        .enumerate()
    {
        let (t, r) = outside_from(
            &mut e,
            "192.0.2.7:5060",
            invite(ruri, "192.0.2.7:5060", &format!("sos{i}")),
        );
        assert!(
            t.iter().any(|t| t.side == Side::Inside),
            "{ruri} not relayed"
        );
        assert_eq!(
            r.iter().find_map(|r| r.rule.clone()).as_deref(),
            Some("emergency"),
            "{ruri}"
        );
    }
}

#[test]
fn denied_h323_setup_gets_release_complete_with_the_rules_cause() {
    let mut e = Engine::new(engine_config());
    let flow = Flow {
        transport: Transport::Tcp,
        local: addr("198.51.100.1:1720"),
        remote: addr("203.0.113.9:40000"),
    };
    e.handle_stream(
        Duration::from_millis(1),
        ConnId(1),
        flow,
        &h225::setup(&h225::SetupSpec {
            calling: "4940555",
            ..h225::SetupSpec::new(addr("203.0.113.9:16000"))
        }),
    );
    let (t, r, _) = drain(&mut e);
    let rc = t
        .iter()
        .find(|t| t.side == Side::Outside)
        .expect("Release Complete");
    let q = codecs::q931::Message::decode(&rc.payload[4..]).unwrap();
    assert_eq!(q.cause().map(|c| c.value()), Some(88), "{q:?}");
    let setup = r.iter().find(|r| r.summary.to_string() == "Setup").unwrap();
    assert_eq!(setup.rule.as_deref(), Some("h323-deny"));
    assert!(
        setup
            .reason
            .as_deref()
            .is_some_and(|s| s.contains("denied by rule h323-deny")),
        "{setup:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Live

/// `sgw run --config --role both` with [`RULES`]: a denied outside call gets 603 (the rule's
/// status) and the log names the rule; a call from inside to a toll prefix gets 403 from GW1
/// and the log names the rule; an allowed call completes; `stats` counts per rule.
#[test]
fn live_rules_deny_allow_and_name_the_rule() {
    let uas = InsideUas::start();
    let dir = Scratch::new("access-live");
    let sip = loop {
        let p = free_udp_port("127.0.0.1");
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            break p;
        }
    };
    let (tunnel, gw1) = (free_tcp_port("127.0.0.1"), free_udp_port("127.0.0.1"));
    let cfg = format!(
        r#"[gw2]
sip_udp = ["127.0.0.1:{sip}"]
tunnel_listen = "127.0.0.1:{tunnel}"

[gw2.media]
ip = "127.0.0.1"
port_min = 12600
port_max = 12699

[gw1]
tunnel = "127.0.0.1:{tunnel}"
tunnel_server_name = "127.0.0.1"
sip_bind = "127.0.0.1:{gw1}"
next_hop = "{}"
family = "ipv4"

[gw1.media]
ip = "127.0.0.2"
port_min = 12600
port_max = 12699
{RULES}"#,
        uas.sip
    );
    let file = dir.file("sgw.toml", &cfg);
    let mut p = Proc::spawn(
        "sgw run (access)",
        sgw()
            .arg("run")
            .arg("--config")
            .arg(&file)
            .args(["--role", "both"]),
    );
    p.wait_line("gw1 sip", Duration::from_secs(30));
    // Each half says so: before GW2 has, its calls meet the tunnel link first.
    p.wait_line("gw1: tunnel up", Duration::from_secs(30));
    p.wait_line("gw2: tunnel up", Duration::from_secs(30));
    let gw2 = SocketAddr::from(([127, 0, 0, 1], sip));
    let gw1 = SocketAddr::from(([127, 0, 0, 1], gw1));
    let mut problems = Vec::new();

    // 1. From the blocked network: the rule's status, the log names the rule.
    match RawCall::invite(
        gw2,
        "127.77.0.1",
        &format!("sip:+49301234567@{gw2}"),
        "blocked",
        Duration::from_secs(10),
    ) {
        Err((603, _)) => {}
        Err((code, seen)) => problems.push(format!("blocked source: {code} ({seen}), not 603")),
        Ok(mut c) => {
            problems.push("blocked source: answered".to_owned());
            c.hangup(Duration::from_secs(5));
        }
    }
    let line = p.wait_line("denied by rule blocked-net", Duration::from_secs(10));
    if !line.contains("(603)") {
        problems.push(format!("log line without the status: {line}"));
    }

    // 2. From the intranet to a toll prefix: 403 from GW1.
    let inside_before = uas.log().invites;
    match RawCall::invite(
        gw1,
        "127.0.0.1",
        &format!("sip:0044201234567@{gw1}"),
        "desk",
        Duration::from_secs(10),
    ) {
        Err((403, _)) => {}
        Err((code, seen)) => problems.push(format!("toll call: {code} ({seen}), not 403")),
        Ok(mut c) => {
            problems.push("toll call: answered".to_owned());
            c.hangup(Duration::from_secs(5));
        }
    }
    let line = p.wait_line("denied by rule toll-fraud", Duration::from_secs(10));
    if !line.contains("Inside") {
        problems.push(format!("the toll call was not refused by GW1: {line}"));
    }

    // 3. An allowed call completes, through to the inside and back.
    match RawCall::invite(
        gw2,
        "127.78.0.1",
        &format!("sip:did100@{gw2}"),
        "allowed",
        Duration::from_secs(10),
    ) {
        Ok(mut c) => {
            if uas.log().invites <= inside_before {
                problems.push("allowed call answered but the inside saw no INVITE".to_owned());
            }
            if !c.hangup(Duration::from_secs(5)) {
                problems.push("allowed call: no 200 to BYE".to_owned());
            }
        }
        Err((code, seen)) => problems.push(format!("allowed call: {code} ({seen})")),
    }

    // 4. Nothing matches: the implicit deny, 403.
    match RawCall::invite(
        gw2,
        "127.78.0.2",
        &format!("sip:nobody@{gw2}"),
        "other",
        Duration::from_secs(10),
    ) {
        Err((403, _)) => {}
        Err((code, seen)) => problems.push(format!("unmatched call: {code} ({seen}), not 403")),
        Ok(mut c) => {
            problems.push("unmatched call: answered".to_owned());
            c.hangup(Duration::from_secs(5));
        }
    }
    p.wait_line("denied by rule default-deny", Duration::from_secs(10));
    p.wait_line("\"rule\":\"inbound-did\"", Duration::from_secs(10));

    p.terminate(Duration::from_secs(20));
    let (s2, s1) = (p.stats("gw2"), p.stats("gw1"));
    let rules2 = &s2["engine"]["access_rules"];
    let rules1 = &s1["engine"]["access_rules"];
    for (what, got, want) in [
        (
            "gw2 blocked-net denied",
            &rules2["blocked-net"]["denied"],
            1,
        ),
        (
            "gw2 inbound-did allowed",
            &rules2["inbound-did"]["allowed"],
            1,
        ),
        (
            "gw2 default-deny denied",
            &rules2["default-deny"]["denied"],
            1,
        ),
        ("gw1 toll-fraud denied", &rules1["toll-fraud"]["denied"], 1),
        ("gw2 toll-fraud denied", &rules2["toll-fraud"]["denied"], 0),
    ] {
        if got.as_u64() != Some(want) {
            problems.push(format!("{what}: {got}, want {want}"));
        }
    }
    p.drain();
    assert!(
        problems.is_empty(),
        "{}\nstats gw2 access: {rules2}\nstats gw1 access: {rules1}\n--- gateway:\n{}",
        problems.join("\n"),
        p.seen.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Replay

/// `sgw replay --config FILE --json`: the INVITE names the rule that decided it, a denied
/// INVITE carries the rule's status, the call record names the allowing rule, and the summary
/// counts per rule. Without `--config`, nothing names a rule.
#[test]
fn replay_shows_the_rule_on_the_message() {
    let dir = Scratch::new("access-replay");
    let cfg = dir.file(
        "sgw.toml",
        r#"[gw2]
sip_udp = ["0.0.0.0:5060"]
tunnel_listen = "0.0.0.0:7001"
[gw2.media]
ip = "192.0.2.1"
port_min = 20000
port_max = 20099

[[policy.rules]]
name = "to-bob"
callee = ["bob"]
action = "allow"

[[policy.rules]]
name = "no-extensions"
callee = ["1XX"]
action = "deny"
status = 404
cause = 1
"#,
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |capture: &str, with_config: bool| -> serde_json::Value {
        let mut cmd = sgw();
        cmd.args(["replay", "--json"]);
        if with_config {
            cmd.arg("--config").arg(&cfg);
        }
        let out = cmd.arg(root.join(capture)).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let invites = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                m["summary"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("INVITE sip:"))
            })
            .cloned()
            .collect()
    };

    let allowed = run("testdata/sip/baresip-call-sipp-uas.pcap", true);
    let inv = &invites(&allowed)[0];
    assert_eq!(inv["rule"], "to-bob", "{inv}");
    assert_eq!(inv["verdict"], "accepted", "{inv}");
    assert_eq!(
        allowed["calls"][0]["record"]["rule"], "to-bob",
        "{}",
        allowed["calls"]
    );
    assert_eq!(allowed["summary"]["access_rules"]["to-bob"]["allowed"], 1);

    let denied = run("testdata/sip/sipp-uac-uas-udp-ipv4.pcap", true);
    let invs = invites(&denied);
    assert_eq!(invs.len(), 3, "{invs:?}");
    for inv in &invs {
        assert_eq!(inv["rule"], "no-extensions", "{inv}");
        assert_eq!(inv["verdict"], "rejected", "{inv}");
        assert_eq!(inv["response"], 404, "{inv}");
        assert_eq!(inv["reason"], "denied by rule no-extensions", "{inv}");
    }
    assert_eq!(
        denied["summary"]["access_rules"]["no-extensions"]["denied"], 3,
        "{}",
        denied["summary"]
    );

    // Without a policy nothing names a rule (the snapshots stay as they were).
    let plain = run("testdata/sip/sipp-uac-uas-udp-ipv4.pcap", false);
    let text = plain.to_string();
    assert!(!text.contains("\"rule\""), "a rule without --config");
    assert!(
        !text.contains("access_rules"),
        "access_rules without --config"
    );
}
