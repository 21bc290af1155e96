//! SIPVicious (PyPI `sipvicious`, installed in the test venv by `scripts/test.sh`) against the
//! live GW2, the scanner suite attackers run first against any SIP service on the Internet:
//!
//! - `svmap` must not learn what answers: no `Server` or `User-Agent` header and no product
//!   name in SDP;
//! - `svwar` must not tell existing extensions of the inside PBX from missing ones, whichever
//!   method it scans with (REGISTER, OPTIONS, INVITE);
//! - `svcrack` finds nothing to crack, and its source is rate limited, then blocked.
//!
//! The inside PBX is [`Pbx`]: extensions 200-209 exist (they ring and are never answered, so
//! svwar CANCELs them), any other number is 404 Not Found, like a real IP-PBX's dial plan.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use bytes::Bytes;
use codecs::sip::{self, MessageBuilder, Method, StartLine};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::gateway::{serial, Gateway, Setup};
use support::rawsip;
use support::*;

/// The inside PBX's extensions.
const DIRECTORY: std::ops::RangeInclusive<u32> = 200..=209;
/// What svwar scans: the directory and 180 numbers around it.
const SCAN: &str = "100-299";

/// A SIPVicious tool from the test venv (`.venv/bin/sipvicious_NAME`, or beside `SGW_PYTHON`).
/// Under CI=true a missing tool fails the test.
fn tool(test: &str, name: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join(".venv/bin")];
    if let Some(p) = std::env::var_os("SGW_PYTHON") {
        if let Some(d) = PathBuf::from(p).parent() {
            dirs.insert(0, d.to_owned());
        }
    }
    let found = dirs
        .into_iter()
        .map(|d| d.join(format!("sipvicious_{name}")))
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: sipvicious_{name} is required under CI=true (./scripts/test.sh installs sipvicious into .venv)");
        }
        eprintln!("{test}: skipped: sipvicious not in .venv (run ./scripts/test.sh once)");
    }
    found
}

/// The inside PBX: a dial plan of [`DIRECTORY`] behind GW1.
struct Pbx {
    addr: SocketAddr,
    invites: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pbx {
    fn start() -> Pbx {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let invites = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), invites.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            // Call-ID -> (the ringing INVITE, its To tag), until CANCELled.
            let mut ringing: BTreeMap<String, (Bytes, String)> = BTreeMap::new();
            while !s.load(Ordering::Relaxed) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok((msg, _)) = sip::parse_datagram(Bytes::copy_from_slice(&buf[..len])) else {
                    continue;
                };
                let StartLine::Request(req) = msg.start() else {
                    continue;
                };
                let call_id = msg.call_id().unwrap_or("").to_owned();
                let user = req
                    .uri
                    .strip_prefix("sip:")
                    .and_then(|u| u.split('@').next())
                    .unwrap_or("");
                let replies = match req.method {
                    Method::Invite => {
                        n.fetch_add(1, Ordering::Relaxed);
                        let exists = user.parse().is_ok_and(|u: u32| DIRECTORY.contains(&u));
                        if exists {
                            let tag = format!("pbx{}", ringing.len());
                            ringing.insert(
                                call_id,
                                (Bytes::copy_from_slice(&buf[..len]), tag.clone()),
                            );
                            vec![MessageBuilder::response_to(&msg, 180, Some(&tag))
                                .header("Contact", format!("<sip:{user}@{addr}>"))
                                .build()]
                        } else {
                            vec![MessageBuilder::response_to(&msg, 404, Some("pbx404")).build()]
                        }
                    }
                    Method::Cancel => {
                        let mut r = vec![MessageBuilder::response_to(&msg, 200, None).build()];
                        if let Some((invite, tag)) = ringing.remove(&call_id) {
                            if let Ok((inv, _)) = sip::parse_datagram(invite) {
                                r.push(MessageBuilder::response_to(&inv, 487, Some(&tag)).build());
                            }
                        }
                        r
                    }
                    Method::Ack => Vec::new(),
                    _ => vec![MessageBuilder::response_to(&msg, 200, None).build()],
                };
                for r in replies {
                    let _ = sock.send_to(&r, from);
                }
            }
        });
        Pbx {
            addr,
            invites,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Pbx {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gateway(name: &str, pbx: &Pbx) -> Gateway {
    let base = 25_000 + (std::process::id() % 400) as u16 * 20;
    Gateway::start(
        name,
        &Setup::new((base, base + 9), (base + 10, base + 19), pbx.addr),
    )
}

/// Runs a SIPVicious tool against GW2, from `source`, bounded in time; its output.
fn run_tool(gw: &Gateway, exe: &PathBuf, source: &str, args: &[&str]) -> String {
    let port = gw.sip.port().to_string();
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .args(["-b", source, "-p", &port, &gw.sip.ip().to_string()]);
    let (_, out) = run_bounded("sipvicious", &mut cmd, Duration::from_secs(90));
    out
}

/// One raw request to GW2 from a fresh socket on `source`; every response within `wait`.
fn ask(gw: &Gateway, source: &str, method: &str, user: &str, wait: Duration) -> Vec<String> {
    let sock = UdpSocket::bind((source, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let sdp = rawsip::pcma_sdp(SocketAddr::new(local.ip(), 40_000));
    let req = rawsip::request(
        method,
        &format!("sip:{user}@{}", gw.sip),
        local,
        &format!("probe-{method}-{user}-{}", local.port()),
        &format!("<sip:scan@{local}>;tag=s1"),
        &format!("<sip:{user}@{}>", gw.sip),
        1,
        &format!("z9hG4bK{method}{}", local.port()),
        "",
        (method == "INVITE").then_some(sdp.as_str()),
    );
    sock.send_to(req.as_bytes(), gw.sip).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

/// svmap, and every response GW2 gives a scanner, name no software.
#[test]
fn svmap_learns_no_software_name() {
    let _serial = serial();
    let Some(svmap) = tool("svmap_learns_no_software_name", "svmap") else {
        return;
    };
    let pbx = Pbx::start();
    let mut gw = gateway("sipvicious-svmap", &pbx);
    let out = run_tool(&gw, &svmap, "127.0.0.5", &[]);
    println!("svmap:\n{out}");
    let row = out
        .lines()
        .find(|l| l.contains(&gw.sip.to_string()))
        .unwrap_or_else(|| panic!("svmap did not find GW2 at {}:\n{out}", gw.sip));
    assert!(
        !row.to_ascii_lowercase().contains("sgw"),
        "svmap learnt the software: {row}"
    );
    // Every kind of answer: local (OPTIONS, REGISTER), relayed from the inside (INVITE to a
    // missing and to an existing extension).
    let mut answers = Vec::new();
    for (method, user) in [
        ("OPTIONS", "100"),
        ("REGISTER", "100"),
        ("INVITE", "150"),
        ("INVITE", "201"),
    ] {
        answers.extend(ask(&gw, "127.0.0.6", method, user, Duration::from_secs(2)));
    }
    assert!(answers.len() >= 4, "too few answers: {answers:#?}");
    for a in &answers {
        for h in ["server", "user-agent"] {
            assert!(
                rawsip::header(a, h).is_none(),
                "a response names its software in {h}:\n{a}"
            );
        }
        assert!(
            !a.to_ascii_lowercase().contains("sgw"),
            "a response names the product:\n{a}"
        );
    }
    gw.stop();
}

/// The extensions svwar reports, with what it says of each.
fn svwar_findings(out: &str) -> BTreeMap<u32, String> {
    out.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // | Extension | Authentication |
            let ext = cells.get(1)?.parse().ok()?;
            Some((ext, cells.get(2).copied().unwrap_or("").to_owned()))
        })
        .collect()
}

/// svwar, by REGISTER, OPTIONS and INVITE, cannot tell the PBX's extensions from missing
/// numbers: whatever it says of an existing extension it also says of missing ones.
#[test]
fn svwar_cannot_tell_extensions_apart() {
    let _serial = serial();
    let Some(svwar) = tool("svwar_cannot_tell_extensions_apart", "svwar") else {
        return;
    };
    let pbx = Pbx::start();
    let mut gw = gateway("sipvicious-svwar", &pbx);
    // Each scan from its own source: a block earned by one does not hide the others.
    for (method, source) in [
        ("REGISTER", "127.0.0.7"),
        ("OPTIONS", "127.0.0.8"),
        ("INVITE", "127.0.0.9"),
    ] {
        let out = run_tool(&gw, &svwar, source, &["-e", SCAN, "-m", method]);
        let found = svwar_findings(&out);
        println!("svwar -m {method}: {} reported: {found:?}", found.len());
        let said_of_missing: BTreeSet<&String> = found
            .iter()
            .filter(|(e, _)| !DIRECTORY.contains(e))
            .map(|(_, s)| s)
            .collect();
        for ext in DIRECTORY {
            if let Some(said) = found.get(&ext) {
                assert!(
                    said_of_missing.contains(said),
                    "svwar -m {method} told extension {ext} apart ({said}); it said of \
                     missing ones: {said_of_missing:?}\n{out}"
                );
            }
        }
    }
    println!(
        "inside PBX saw {} INVITEs",
        pbx.invites.load(Ordering::Relaxed)
    );
    gw.stop();
}

/// svcrack finds no password, and a source cracking at its pace is rate limited, then
/// blocked: it gets no answer at all, while another source is still served.
#[test]
fn svcrack_is_rate_limited_and_blocked() {
    let _serial = serial();
    let Some(svcrack) = tool("svcrack_is_rate_limited_and_blocked", "svcrack") else {
        return;
    };
    let pbx = Pbx::start();
    let mut gw = gateway("sipvicious-svcrack", &pbx);
    let source = "127.0.0.10";
    for method in ["REGISTER", "INVITE"] {
        let out = run_tool(
            &gw,
            &svcrack,
            source,
            &["-u", "201", "-r", "1000-1999", "-m", method],
        );
        println!("svcrack -m {method}:\n{out}");
        assert!(
            !out.contains("The password for"),
            "svcrack -m {method} cracked something:\n{out}"
        );
    }
    // A brute force at line rate: REGISTERs with credentials, 2,000 in about 2 s.
    let sock = UdpSocket::bind((source, 0)).unwrap();
    sock.set_nonblocking(true).unwrap();
    let local = sock.local_addr().unwrap();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 65_535];
    let start = Instant::now();
    for i in 0..2000u32 {
        let auth = format!(
            "Authorization: Digest username=\"201\", realm=\"x\", nonce=\"n\", \
             uri=\"sip:{}\", response=\"{i:032x}\"\r\n",
            gw.sip
        );
        let req = rawsip::request(
            "REGISTER",
            &format!("sip:{}", gw.sip),
            local,
            &format!("crack-{i}"),
            &format!("<sip:201@{}>;tag=c{i}", gw.sip),
            &format!("<sip:201@{}>", gw.sip),
            1,
            &format!("z9hG4bKcrack{i}"),
            &auth,
            None,
        );
        sock.send_to(req.as_bytes(), gw.sip).unwrap();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Some(s) = rawsip::status(&String::from_utf8_lossy(&buf[..n])) {
                *statuses.entry(s).or_default() += 1;
            }
        }
        if i % 2 == 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        if let Some(s) = rawsip::status(&String::from_utf8_lossy(&buf[..n])) {
            *statuses.entry(s).or_default() += 1;
        }
    }
    let answered: u64 = statuses.values().sum();
    println!(
        "brute force: 2000 REGISTERs in {:?}, answers by status {statuses:?}",
        start.elapsed()
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "the source was never rate limited (no 503): {statuses:?}"
    );
    assert!(
        answered < 1000,
        "a blocked source must not be answered at line rate: {answered} answers to 2000"
    );
    // Blocked now: silence, for svcrack too; another source is served.
    let blocked = ask(&gw, source, "OPTIONS", "201", Duration::from_secs(1));
    assert!(
        blocked.is_empty(),
        "a blocked source was answered: {blocked:?}"
    );
    let other = ask(&gw, "127.0.0.11", "OPTIONS", "201", Duration::from_secs(1));
    assert!(
        other.iter().any(|a| rawsip::status(a) == Some(200)),
        "another source was not served: {other:?}"
    );
    let (gw2, _) = gw.stop();
    println!("stats gw2: {gw2}");
}
