//! The control socket and live reload (issue 12), live: `sgw run --config --role both` with a
//! `[control]` socket, raw SIP calls from outside to the inside UAS (no sipp needed), and
//! `sgw ctl` as an operator runs it.
//!
//! - drain with 3 calls up: a new call gets 503, the 3 calls end normally (BYE answered 200),
//!   `sgw ctl drain` returns 0 and the gateway exits 0 after the last one;
//! - reload (`sgw ctl reload`, then SIGHUP) of a policy that denies a prefix, with a call up:
//!   the call stays up, the next call to the prefix gets 403, a broken file leaves the policy
//!   in force, and a changed key that cannot change live is named in the log;
//! - `status`, `calls` (text and JSON), `block`/`unblock` (a blocked source gets no answer;
//!   after unblock it does), and the socket's mode 0600.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use support::gateway::{n, serial, Gateway, Setup};
use support::rawsip::{InsideUas, RawCall};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

fn ctl(socket: &Path, args: &[&str]) -> (ExitStatus, String) {
    let mut cmd = sgw();
    cmd.arg("ctl").arg("--socket").arg(socket).args(args);
    run_bounded("sgw ctl", &mut cmd, Duration::from_secs(20))
}

fn wait_exit(p: &mut Proc, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = p.child.try_wait() {
            std::thread::sleep(Duration::from_millis(100));
            p.drain();
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gateway(name: &str, uas: &InsideUas, ports: u16) -> Gateway {
    Gateway::start(
        name,
        &Setup {
            control: true,
            ..Setup::new((ports, ports + 99), (ports + 100, ports + 199), uas.sip)
        },
    )
}

fn call(gw: &Gateway, src: &str, user: &str) -> Result<RawCall, (u16, String)> {
    RawCall::invite(gw.sip, src, &format!("sip:{user}@{}", gw.sip), "ctl", WAIT)
}

#[test]
fn drain_refuses_new_calls_and_exits_after_the_last_one() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = gateway("ctl-drain", &uas, 13600);
    let socket = gw.control.clone().unwrap();
    let mut calls: Vec<RawCall> = (0..3)
        .map(|i| call(&gw, "127.0.0.1", &format!("drain{i}")).unwrap())
        .collect();

    let mut cmd = sgw();
    cmd.arg("ctl")
        .arg("--socket")
        .arg(&socket)
        .args(["drain", "--timeout", "60"]);
    let mut drain = Proc::spawn("sgw ctl drain", &mut cmd);
    drain.wait_line("draining: 3 calls up", WAIT);
    gw.p.wait_line("draining: new calls refused, 3 calls up", WAIT);

    match call(&gw, "127.0.0.1", "late") {
        Err((503, _)) => {}
        Err((code, seen)) => panic!("a call while draining: {code} ({seen}), not 503"),
        Ok(_) => panic!("a call while draining was answered"),
    }
    let (st, out) = ctl(&socket, &["status"]);
    assert!(st.success(), "{out}");
    assert!(out.contains("draining (new calls refused)"), "{out}");

    for (i, c) in calls.iter_mut().enumerate() {
        assert!(
            wait_exit(&mut gw.p, Duration::ZERO).is_none(),
            "the gateway stopped with {} calls up",
            3 - i
        );
        assert!(c.hangup(WAIT), "call {i}: BYE not answered 200");
    }
    let st = wait_exit(&mut drain, Duration::from_secs(20)).expect("sgw ctl drain returned");
    assert!(st.success(), "sgw ctl drain: {st}: {:?}", drain.seen);
    assert!(
        drain.seen.iter().any(|l| l == "drained"),
        "{:?}",
        drain.seen
    );
    let st = wait_exit(&mut gw.p, Duration::from_secs(20)).expect("the gateway exited");
    assert_eq!(st.code(), Some(0), "{}", gw.output());
    let gw2 = gw.p.stats("gw2");
    assert_eq!(n(&gw2, "engine.admission.refused_draining"), 1);
    assert_eq!(n(&gw2, "engine.admission.admitted"), 3);
    assert_eq!(uas.log().byes, 3, "the inside saw the 3 calls end");
    assert!(!socket.exists(), "the socket is removed at exit");
}

const DENY_0900: &str = r#"
[[policy.rules]]
name = "no-premium"
direction = "from_outside"
callee = ["0900*"]
action = "deny"

[[policy.rules]]
name = "everything-else"
action = "allow"
"#;

#[test]
fn reload_applies_a_policy_keeps_calls_and_refuses_a_broken_file() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = gateway("ctl-reload", &uas, 13800);
    let socket = gw.control.clone().unwrap();
    let original = std::fs::read_to_string(&gw.config).unwrap();
    let mut up = call(&gw, "127.0.0.1", "0900111").expect("allowed before the reload");

    std::fs::write(&gw.config, format!("{original}{DENY_0900}")).unwrap();
    let (st, out) = ctl(&socket, &["reload"]);
    assert!(st.success(), "{out}");
    assert!(out.contains("2 access rules"), "{out}");
    match call(&gw, "127.0.0.1", "0900222") {
        Err((403, _)) => {}
        Err((code, seen)) => panic!("after the reload: {code} ({seen}), not 403"),
        Ok(_) => panic!("after the reload a call to 0900 was answered"),
    }
    gw.p.wait_line("denied by rule no-premium", WAIT);
    let mut other = call(&gw, "127.0.0.1", "service").expect("other numbers still allowed");
    assert!(other.hangup(WAIT));

    // A broken file: refused, the policy in force stays.
    std::fs::write(
        &gw.config,
        format!("{original}{}", DENY_0900.replace("\"deny\"", "\"maybe\"")),
    )
    .unwrap();
    let (st, out) = ctl(&socket, &["reload"]);
    assert_eq!(st.code(), Some(1), "{out}");
    assert!(out.contains("the configuration in force is kept"), "{out}");
    gw.p.wait_line("the configuration in force is kept", WAIT);
    assert!(matches!(call(&gw, "127.0.0.1", "0900333"), Err((403, _))));

    // SIGHUP: the policy without the rule, and a key that needs a restart.
    let text = original.replace("[gw2.limits]\n", "[gw2.limits]\nmax_message_size = 1500\n");
    std::fs::write(&gw.config, text).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &gw.p.child.id().to_string()])
        .status();
    let line = gw.p.wait_line("not changed live", WAIT);
    assert!(
        line.contains("reloaded") && line.contains("gw2.limits.max_message_size"),
        "{line}"
    );
    let mut again = call(&gw, "127.0.0.1", "0900444").expect("allowed again after SIGHUP");
    assert!(again.hangup(WAIT));

    // The call placed before the first reload is still up, and ends normally.
    assert!(up.hangup(WAIT), "the call up across the reloads");
    assert!(wait_exit(&mut gw.p, Duration::ZERO).is_none());
    let (gw2, _) = gw.stop();
    assert_eq!(n(&gw2, "engine.admission.admitted"), 3);
}

#[test]
fn status_calls_block_and_unblock() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = gateway("ctl-status", &uas, 14000);
    let socket = gw.control.clone().unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let mut up = call(&gw, "127.0.0.1", "status1").unwrap();
    let (st, out) = ctl(&socket, &["status"]);
    assert!(st.success(), "{out}");
    assert!(
        out.contains("gw2: tunnel up, 1 calls up, taking calls"),
        "{out}"
    );
    assert!(out.contains("gw1: tunnel up, 1 calls up"), "{out}");
    assert!(out.contains("blocked sources: none"), "{out}");
    assert!(out.contains("registrations: none"), "{out}");
    let (st, out) = ctl(&socket, &["status", "--json"]);
    assert!(st.success(), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["halves"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["halves"][0]["calls_up"], 1, "{v}");

    let (st, out) = ctl(&socket, &["calls"]);
    assert!(st.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "one line per half: {out}");
    assert!(
        lines[0].starts_with("gw2 call ") && lines[0].contains("from-outside sip"),
        "{out}"
    );
    assert!(
        lines[0].contains("\"status1\"") && lines[0].contains("answered"),
        "{out}"
    );
    let (st, out) = ctl(&socket, &["calls", "--json"]);
    assert!(st.success(), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v[0]["called"], "status1", "{v}");
    assert_eq!(v[0]["direction"], "from_outside", "{v}");
    assert_eq!(v[0]["answered"], true, "{v}");
    assert!(up.hangup(WAIT));

    let (st, out) = ctl(&socket, &["block", "127.0.0.3"]);
    assert!(st.success(), "{out}");
    let (_, out) = ctl(&socket, &["status"]);
    assert!(out.contains("blocked 127.0.0.3 (manual"), "{out}");
    match RawCall::invite(
        gw.sip,
        "127.0.0.3",
        &format!("sip:blocked@{}", gw.sip),
        "b",
        Duration::from_secs(3),
    ) {
        Err((0, seen)) => assert!(seen.is_empty(), "{seen}"),
        Err((code, _)) => panic!("a blocked source got {code}"),
        Ok(_) => panic!("a blocked source was answered"),
    }
    // Another source is not blocked.
    let mut other = call(&gw, "127.0.0.1", "free").unwrap();
    assert!(other.hangup(WAIT));
    let (st, out) = ctl(&socket, &["unblock", "127.0.0.3"]);
    assert!(st.success(), "{out}");
    let (st, _) = ctl(&socket, &["unblock", "127.0.0.3"]);
    assert_eq!(st.code(), Some(1), "unblocking twice");
    let mut back = call(&gw, "127.0.0.3", "unblocked").expect("answered after unblock");
    assert!(back.hangup(WAIT));

    let (st, _) = ctl(&socket, &["block", "not-an-address"]);
    assert_eq!(st.code(), Some(2), "clap refuses a bad address");
    let (gw2, _) = gw.stop();
    assert!(n(&gw2, "engine.limits.dropped_blocked") >= 1);
    assert!(!socket.exists(), "the socket is removed at exit");
}

#[test]
fn ctl_without_a_gateway_says_so() {
    let dir = Scratch::new("ctl-none");
    let (st, out) = ctl(&dir.0.join("none.sock"), &["status"]);
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(out.contains("control socket"), "{out}");
}

#[test]
fn a_drain_timeout_ends_the_calls_left_and_exits() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = gateway("ctl-drain-timeout", &uas, 14200);
    let socket = gw.control.clone().unwrap();
    let _up = call(&gw, "127.0.0.1", "stays").unwrap();
    let started = Instant::now();
    let (st, out) = ctl(&socket, &["drain", "--timeout", "1"]);
    assert!(st.success(), "{out}");
    assert!(out.lines().last() == Some("drained"), "{out}");
    let st = wait_exit(&mut gw.p, Duration::from_secs(20)).expect("the gateway exited");
    assert_eq!(st.code(), Some(0), "{}", gw.output());
    assert!(started.elapsed() < Duration::from_secs(15));
    gw.p.wait_line("drain timeout: ended 1 calls", WAIT);
    assert_eq!(uas.log().byes, 1, "the inside got a BYE");
    let gw2 = gw.p.stats("gw2");
    assert_eq!(n(&gw2, "engine.admission.ended"), 1);
}

// ---------------------------------------------------------------------------------------------
// The drain link on the engine: SIP 503, H.323 cause 42, the reason in the report.

mod engine {
    use super::support::{addr, h225};
    use bytes::Bytes;
    use codecs::sip::{self, MessageBuilder, Method};
    use sgw::engine::{ConnId, Engine, EngineConfig, Event, Flow, Report, Side, Transport};
    use std::time::Duration;

    const GW2: &str = "198.51.100.1:5060";

    fn engine() -> Engine {
        let mut e = Engine::new(EngineConfig {
            outside_sip: Some(addr(GW2)),
            ..EngineConfig::default()
        });
        e.set_draining(true);
        e
    }

    fn invite(ruri: &str, id: &str) -> Bytes {
        let host = "203.0.113.9:5060";
        let sdp = "v=0\r\no=x 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\nm=audio 16000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
        MessageBuilder::request(&Method::Invite, ruri)
            .header("Via", format!("SIP/2.0/UDP {host};branch=z9hG4bK{id}"))
            .header("Max-Forwards", "70")
            .header("From", format!("<sip:caller@{host}>;tag=t{id}"))
            .header("To", format!("<{ruri}>"))
            .header("Call-ID", id)
            .header("CSeq", "1 INVITE")
            .header("Contact", format!("<sip:caller@{host}>"))
            .body("application/sdp", sdp.as_bytes().to_vec())
            .build()
    }

    fn reports(e: &mut Engine) -> Vec<Report> {
        let mut v = Vec::new();
        while let Some(ev) = e.poll_event() {
            if let Event::Report(r) = ev {
                v.push(r);
            }
        }
        v
    }

    #[test]
    fn a_draining_engine_answers_503_and_cause_42() {
        let mut e = engine();
        let flow = Flow {
            transport: Transport::Udp,
            local: addr(GW2),
            remote: addr("203.0.113.9:5060"),
        };
        e.handle_datagram(
            Duration::from_millis(1),
            flow,
            invite("sip:1000@198.51.100.1", "drain1"),
        );
        let mut finals = Vec::new();
        while let Some(t) = e.poll_transmit() {
            assert_eq!(t.side, Side::Outside, "a call went inside while draining");
            if let Some(s) = sip::parse_datagram(t.payload.clone())
                .ok()
                .and_then(|(m, _)| m.status())
            {
                finals.push(s);
            }
        }
        assert!(finals.contains(&503), "{finals:?}");
        let r = reports(&mut e);
        assert!(
            r.iter().any(|r| r
                .reason
                .as_deref()
                .is_some_and(|s| s.contains("gateway draining"))),
            "{r:?}"
        );
        assert_eq!(e.stats().admission.refused_draining, 1);

        let flow = Flow {
            transport: Transport::Tcp,
            local: addr("198.51.100.1:1720"),
            remote: addr("203.0.113.9:40000"),
        };
        e.handle_stream(
            Duration::from_millis(2),
            ConnId(1),
            flow,
            &h225::setup(&h225::SetupSpec::new(addr("203.0.113.9:16000"))),
        );
        let rc = std::iter::from_fn(|| e.poll_transmit())
            .find(|t| t.side == Side::Outside)
            .expect("Release Complete");
        let q = codecs::q931::Message::decode(&rc.payload[4..]).unwrap();
        assert_eq!(q.cause().map(|c| c.value()), Some(42), "{q:?}");
        assert_eq!(e.stats().admission.refused_draining, 2);
        // An emergency call still gets through the drain link.
        e.handle_datagram(
            Duration::from_millis(3),
            Flow {
                transport: Transport::Udp,
                local: addr(GW2),
                remote: addr("203.0.113.9:5060"),
            },
            invite("sip:112@198.51.100.1", "drain2"),
        );
        assert_eq!(e.stats().admission.refused_draining, 2);
        assert_eq!(e.stats().admission.emergency_admitted, 1);
    }
}
