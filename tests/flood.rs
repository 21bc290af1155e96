//! The availability acceptance test (tracker issue 8): `sgw run --config FILE --role both` on
//! loopback with an answering inside party, under an INVITE flood from one source.
//!
//! - 127.0.0.2: sipp sends INVITEs (and nothing else) at its highest rate for 20 s;
//! - 127.0.0.3: a sipp UAC places legitimate calls at 5 calls/s meanwhile: at least 99 %
//!   complete;
//! - 127.0.0.4: calls to an emergency number, during the flood and then with every slot of
//!   `max_calls` taken (held calls from other addresses): 100 % complete, by pre-emption;
//! - the gateway's RSS stays under 256 MiB throughout.
//!
//! It prints the figures (flood INVITEs sent, success rates, peak RSS, the gateway's CPU time)
//! for BENCHMARKS.md. A second test checks the tunnel listener's handshake timeout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gateway::{rss_kib, serial, Gateway, Setup};
use support::rawsip::{InsideUas, RawCall};
use support::*;

/// `max_calls` of the flood test's gateway (`start("flood", "max_calls = 100", ..)`).
const MAX_CALLS: usize = 100;
const RESERVE: usize = MAX_CALLS / 10;
const RSS_LIMIT_KIB: u64 = 256 * 1024;

/// `sgw run --role both` quiet (`-q`: no line per refused message) with these `[gw2.limits]`
/// lines, emergency number 112, and media ranges from `media` (2,000 ports each half).
fn start(name: &str, limits: &'static str, inside: SocketAddr, media: u16) -> Gateway {
    let mut s = Setup::new((media, media + 1999), (media + 2000, media + 3999), inside);
    s.limits = limits;
    s.policy = "emergency_numbers = [\"112\"]";
    s.quiet = true;
    Gateway::start(name, &s)
}

/// User plus system CPU time of a process, in clock ticks (`/proc/PID/stat` fields 14, 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 is at index 0, so utime (14) at 11 and stime (15) at 12.
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A cumulative count from sipp's final screen (`| periodic | cumulative |` columns).
fn sipp_count(out: &str, what: &str) -> u64 {
    out.lines()
        .rev()
        .filter(|l| l.contains(what))
        .find_map(|l| l.split('|').nth(2)?.trim().parse().ok())
        .unwrap_or(0)
}

/// A counter anywhere in a stats line, by its name and its parent's.
fn stat(v: &Value, parent: &str, name: &str) -> u64 {
    match v {
        Value::Object(m) => {
            if let Some(n) = m
                .get(parent)
                .and_then(|p| p.get(name))
                .and_then(Value::as_u64)
            {
                return n;
            }
            m.values().map(|c| stat(c, parent, name)).max().unwrap_or(0)
        }
        _ => 0,
    }
}

/// An INVITE, and nothing else: no waiting for responses, no ACK.
const FLOOD_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="invite flood">
  <send>
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:flood@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:flood@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// A sipp UAC from `ip` placing `calls` calls at `rate` per second to `service`.
fn uac(gw: &Gateway, ip: &str, service: &str, rate: u32, calls: u32) -> std::process::Command {
    let port = free_udp_port(ip).to_string();
    let mp = free_rtp_port(ip).to_string();
    let mut cmd = sipp(&gw.dir.0);
    cmd.args(["-sn", "uac", &gw.sip.to_string(), "-i", ip, "-p", &port])
        .args(["-mp", &mp, "-s", service])
        .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
        .args(["-timeout", "40s"]);
    cmd
}

/// See the module docs.
#[test]
fn legitimate_and_emergency_calls_complete_under_an_invite_flood() {
    if !sipp_available("legitimate_and_emergency_calls_complete_under_an_invite_flood") {
        return;
    }
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = start("flood", "max_calls = 100", uas.sip, 30_000);
    let pid = gw.p.child.id();
    let ticks = clock_ticks_per_second();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = rss_kib(pid).max(peak);
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let idle_rss = rss_kib(pid);
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();

    // Phase 1: the flood, with legitimate and emergency calls meanwhile.
    let scenario = gw.dir.file("flood.xml", FLOOD_SCENARIO);
    let flood = {
        let port = free_udp_port("127.0.0.2").to_string();
        let mut cmd = sipp(&gw.dir.0);
        cmd.args(["-sf", scenario.to_str().unwrap(), &gw.sip.to_string()])
            .args(["-i", "127.0.0.2", "-p", &port, "-s", "100"])
            .args([
                "-r", "10000", "-rp", "1000", "-l", "1000000", "-m", "1000000",
            ])
            .args(["-timeout", "20s"]);
        std::thread::spawn(move || run_bounded("sipp flood", &mut cmd, Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(500));
    let legit = {
        let mut cmd = uac(&gw, "127.0.0.3", "200", 5, 95);
        std::thread::spawn(move || run_bounded("sipp legit", &mut cmd, Duration::from_secs(50)))
    };
    let sos_during = {
        let mut cmd = uac(&gw, "127.0.0.4", "112", 1, 15);
        std::thread::spawn(move || run_bounded("sipp sos", &mut cmd, Duration::from_secs(50)))
    };
    let (_, flood_out) = flood.join().unwrap();
    let flood_cpu = cpu_ticks(pid).saturating_sub(cpu0);
    let flood_took = t0.elapsed();
    let (legit_st, legit_out) = legit.join().unwrap();
    let (sos_st, sos_out) = sos_during.join().unwrap();

    // Phase 2: every slot taken. Ordinary calls, each from its own address (the per-source
    // rate limit is not what fills the table), until the cap below the reserve refuses one;
    // then the reserve with emergency calls.
    let mut held = Vec::new();
    let mut refused = None;
    for k in 0..MAX_CALLS {
        let ip = format!("127.0.5.{}", k + 1);
        match RawCall::invite(
            gw.sip,
            &ip,
            &format!("sip:hold{k}@{}", gw.sip),
            "hold",
            Duration::from_secs(10),
        ) {
            Ok(c) => held.push(c),
            Err((code, seen)) => {
                refused = Some((code, seen));
                break;
            }
        }
    }
    let ordinary_held = held.len();
    for k in 0..RESERVE {
        let ip = format!("127.0.6.{}", k + 1);
        if let Ok(c) = RawCall::invite(
            gw.sip,
            &ip,
            "urn:service:sos",
            "held sos",
            Duration::from_secs(10),
        ) {
            held.push(c);
        }
    }
    let (sos_full_st, sos_full_out) = run_bounded(
        "sipp sos full",
        &mut uac(&gw, "127.0.0.4", "112", 5, 10),
        Duration::from_secs(50),
    );
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let cpu_all = cpu_ticks(pid).saturating_sub(cpu0);
    for c in &mut held {
        c.hangup(Duration::from_millis(200));
    }
    let (s2, _) = gw.stop();

    let flood_sent = sipp_count(&flood_out, "Outgoing calls created");
    let legit_ok = sipp_count(&legit_out, "Successful call");
    let sos_ok = sipp_count(&sos_out, "Successful call");
    let sos_full_ok = sipp_count(&sos_full_out, "Successful call");
    let pct = |ok: u64, of: u64| 100.0 * ok as f64 / of as f64;
    let figures = format!(
        "flood: {flood_sent} INVITEs sent from 127.0.0.2 in {flood_took:.1?}\n\
         legitimate calls (5/s, 127.0.0.3): {legit_ok}/95 = {:.1} % ({legit_st})\n\
         emergency calls during the flood (127.0.0.4): {sos_ok}/15 = {:.1} % ({sos_st})\n\
         emergency calls with max_calls {MAX_CALLS} full ({ordinary_held} ordinary + {RESERVE} \
         emergency held): {sos_full_ok}/10 = {:.1} % ({sos_full_st})\n\
         RSS idle {idle_rss} KiB, peak {peak} KiB (limit {RSS_LIMIT_KIB} KiB)\n\
         gateway CPU: {:.2} s during the flood ({:.1} % of one core), {:.2} s in all\n\
         gw2: refused_source_calls {}, refused_source_requests {}, blocks {}, \
         dropped_blocked {}, preempted {}, sip_messages {}",
        pct(legit_ok, 95),
        pct(sos_ok, 15),
        pct(sos_full_ok, 10),
        flood_cpu as f64 / ticks as f64,
        100.0 * flood_cpu as f64 / ticks as f64 / flood_took.as_secs_f64(),
        cpu_all as f64 / ticks as f64,
        stat(&s2, "limits", "refused_source_calls"),
        stat(&s2, "limits", "refused_source_requests"),
        stat(&s2, "limits", "blocks"),
        stat(&s2, "limits", "dropped_blocked"),
        stat(&s2, "admission", "preempted"),
        stat(&s2, "engine", "sip_messages").max(stat(&s2, "gw2", "sip_messages")),
    );
    eprintln!("--- flood figures ---\n{figures}");
    if std::env::var("FLOOD_SIPP_OUT").is_ok() {
        eprintln!("{flood_out}");
    }
    let mut problems = Vec::new();
    if flood_sent < 10_000 {
        problems.push(format!("the flood sent only {flood_sent} INVITEs"));
    }
    if pct(legit_ok, 95) < 99.0 {
        problems.push(format!(
            "legitimate calls: {legit_ok}/95 completed\n--- sipp:\n{legit_out}"
        ));
    }
    if sos_ok != 15 {
        problems.push(format!(
            "emergency calls during the flood: {sos_ok}/15 completed\n--- sipp:\n{sos_out}"
        ));
    }
    if sos_full_ok != 10 {
        problems.push(format!(
            "emergency calls with max_calls full: {sos_full_ok}/10 completed\n--- sipp:\n{sos_full_out}"
        ));
    }
    match &refused {
        Some((503, _)) => {}
        other => problems.push(format!(
            "filling the table: expected the ordinary slots to run out with 503, got {other:?}"
        )),
    }
    if stat(&s2, "admission", "preempted") == 0 {
        problems.push("no call was pre-empted: the table was not full".to_owned());
    }
    if stat(&s2, "limits", "blocks") == 0 {
        problems.push("the flooding source was never blocked".to_owned());
    }
    if peak >= RSS_LIMIT_KIB {
        problems.push(format!("peak RSS {peak} KiB"));
    }
    assert!(
        problems.is_empty(),
        "{}\n--- figures:\n{figures}",
        problems.join("\n")
    );
}

/// A TCP client that connects to the tunnel port and sends nothing is closed once
/// `handshake_timeout_secs` have passed.
#[test]
fn a_silent_tunnel_connection_is_closed_after_the_handshake_timeout() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = start(
        "flood-handshake",
        "handshake_timeout_secs = 1",
        uas.sip,
        34_000,
    );
    let mut c = TcpStream::connect(gw.tunnel).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let r = c.read(&mut buf);
    let took = t.elapsed();
    gw.stop();
    assert!(
        matches!(r, Ok(0)) || r.is_err() && took < Duration::from_secs(9),
        "read {r:?} after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}, not about 1 s"
    );
}
