//! SIP over TLS on GW2's outside (issue 9, confidentiality level 2), with real peers:
//!
//! - a baresip phone (Debian; libre's TLS client) calls GW2 over TLS (`transport=tls`), and an
//!   inside baresip answers behind GW1: the call is established, RTP flows both ways, and each
//!   side hangs up once, so GW2 also sends its BYE down the phone's TLS connection. The phone's
//!   own trace shows that every message of the call was on TLS;
//! - a call made by a `sips:` request (a raw TLS peer, as libre 1.x cannot dial `sips:`) gets a
//!   SIPS Contact, and its ACK and BYE complete;
//! - SRTP (SDES over TLS): libsrtp (`tests/srtp_peer.py`, pylibsrtp) encrypts what it sends GW2
//!   and decrypts what GW2 sends back; a forged and a replayed packet are dropped and counted;
//!   the same offer over UDP is refused 488; tshark, capturing that call on the outside,
//!   decodes no SIP and finds neither key nor plain payload on the wire; and a baresip phone with its own SRTP (`srtp`
//!   module, `mediaenc=srtp-mand`) calls through with audio both ways;
//! - `openssl s_client` completes a TLS 1.2 handshake and a TLS 1.3 one, and verifies GW2's
//!   certificate against the CA;
//! - a peer that speaks plain SIP to the TLS port, or never completes its handshake, is closed
//!   and counted (`tls_handshake_failures`), and a `sips:` INVITE over UDP is refused 416; the
//!   gateway serves the next call.
//!
//! sipp is not used here: the Debian build (3.6.1, "SCTP-PCAP-RTPSTREAM") has no TLS transport
//! (`-t l1`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::phones::{hostport, Phone, PhoneSpec};
use support::*;

const INSIDE_USER: &str = "1001";
const OUTSIDE_USER: &str = "4930555777";
/// RTP packets each way GW2 must carry per call: half a second of the talk time.
const MIN_RTP: u64 = 25;

/// A port free for UDP and TCP, with the TCP port above it free too (baresip binds its TLS
/// transport there).
fn free_sip_port() -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let p = t.local_addr().unwrap().port();
        let above = p
            .checked_add(1)
            .is_some_and(|q| TcpListener::bind(("127.0.0.1", q)).is_ok());
        if above && UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn peers_available(test: &str) -> bool {
    peer_available(test, "baresip", &["-h"], "baresip")
        && peer_available(test, "openssl", &["version"], "openssl")
        && peer_available(test, "tshark", &["-v"], "tshark")
}

struct Lab {
    inside: Phone,
    outside: Phone,
    /// An outside phone with SRTP (baresip's `srtp` module, SDES, `mediaenc=srtp-mand`).
    outside_srtp: Phone,
    sgw: Proc,
    udp: SocketAddr,
    tls: SocketAddr,
    gw1: SocketAddr,
    ca: std::path::PathBuf,
    dir: Scratch,
}

fn start(name: &str) -> Lab {
    let dir = Scratch::new(name);
    let pki = dir.0.join("pki");
    let (st, out) = run_bounded(
        "sgw pki init",
        sgw()
            .args(["pki", "init"])
            .arg(&pki)
            .args(["--gw2-name", "127.0.0.1"]),
        Duration::from_secs(20),
    );
    assert!(st.success(), "{out}");
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let udp = at(free_udp_port("127.0.0.1"));
    let tls = at(free_tcp_port("127.0.0.1"));
    let tunnel = free_tcp_port("127.0.0.1");
    let gw1 = at(free_udp_port("127.0.0.1"));
    let inside_sip = at(free_sip_port());
    let outside_sip = at(free_sip_port());
    let media = free_rtp_port("127.0.0.1");
    let cfg = dir.file(
        "sgw.toml",
        &format!(
            r#"[gw2]
sip_udp = ["{udp}"]
sip_tls = ["{tls}"]
sip_tls_cert = "{pki}/gw2.pem"
sip_tls_key = "{pki}/gw2.key"
tunnel_listen = "127.0.0.1:{tunnel}"
outside_next_hop = "127.0.0.1:{provider_tls}"
outside_transport = "tls"
outside_tls_server_name = "127.0.0.1"
outside_tls_ca = "{pki}/ca.pem"
[gw2.media]
ip = "127.0.0.1"
port_min = {media}
port_max = {o_max}

[gw1]
tunnel = "127.0.0.1:{tunnel}"
tunnel_server_name = "127.0.0.1"
sip_bind = "{gw1}"
next_hop = "{inside_sip}"
family = "ipv4"
[gw1.media]
ip = "127.0.0.2"
port_min = {media}
port_max = {o_max}
"#,
            pki = pki.display(),
            o_max = media + 99,
            provider_tls = outside_sip.port() + 1,
        ),
    );
    let mut sgw = Proc::spawn(
        name,
        sgw()
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(["--role", "both"]),
    );
    let line = sgw.wait_line("gw2 sip", Duration::from_secs(20));
    assert!(line.contains(&format!("tls {tls}")), "{line}");
    sgw.wait_line("gw1: tunnel up", Duration::from_secs(20));
    sgw.wait_line("gw2: tunnel up", Duration::from_secs(20));
    let rtp = free_rtp_port("127.0.0.1");
    let inside = Phone::start(
        &dir,
        &PhoneSpec {
            name: "inside phone",
            sip: inside_sip,
            aor: format!("sip:{INSIDE_USER}@{}", hostport(inside_sip)),
            register: false,
            ctrl_port: free_tcp_port("127.0.0.1"),
            rtp_ports: (rtp, rtp + 9),
            tone_hz: 440,
        },
        Duration::from_secs(10),
    );
    let ca = pki.join("ca.pem");
    // The outside phone plays the provider GW2 dials over TLS: a certificate for 127.0.0.1
    // from the lab's CA (baresip wants certificate and key in one file).
    let phone_cert = pki.join("phone.pem");
    std::fs::write(
        &phone_cert,
        [
            std::fs::read(pki.join("gw2.pem")).unwrap(),
            std::fs::read(pki.join("gw2.key")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let rtp = free_rtp_port("127.0.0.1");
    let outside = Phone::start_with(
        &dir,
        &PhoneSpec {
            name: "outside phone",
            sip: outside_sip,
            aor: format!("sip:{OUTSIDE_USER}@{}", hostport(outside_sip)),
            register: false,
            ctrl_port: free_tcp_port("127.0.0.1"),
            rtp_ports: (rtp, rtp + 9),
            tone_hz: 660,
        },
        &format!(
            "sip_cafile\t\t{}\nsip_certificate\t\t{}\n",
            ca.display(),
            phone_cert.display()
        ),
        "",
        Duration::from_secs(10),
    );
    let rtp = free_rtp_port("127.0.0.1");
    let srtp_sip = at(free_sip_port());
    let outside_srtp = Phone::start_with(
        &dir,
        &PhoneSpec {
            name: "outside srtp phone",
            sip: srtp_sip,
            aor: format!("sip:{OUTSIDE_USER}@{}", hostport(srtp_sip)),
            register: false,
            ctrl_port: free_tcp_port("127.0.0.1"),
            rtp_ports: (rtp, rtp + 9),
            tone_hz: 880,
        },
        &format!("sip_cafile\t\t{}\nmodule\t\t\tsrtp.so\n", ca.display()),
        ";mediaenc=srtp-mand",
        Duration::from_secs(10),
    );
    Lab {
        inside,
        outside,
        outside_srtp,
        sgw,
        udp,
        tls,
        gw1,
        ca,
        dir,
    }
}

/// One call from the outside phone (the SRTP one with `srtp`) to `target`; `outside_hangs_up`
/// picks who ends it.
fn call(lab: &mut Lab, target: &str, outside_hangs_up: bool) {
    call_from(lab, target, outside_hangs_up, false);
}

fn call_from(lab: &mut Lab, target: &str, outside_hangs_up: bool, srtp: bool) {
    if srtp {
        std::mem::swap(&mut lab.outside, &mut lab.outside_srtp);
    }
    call_inner(lab, target, outside_hangs_up);
    if srtp {
        std::mem::swap(&mut lab.outside, &mut lab.outside_srtp);
        // Its trace holds the SDP both ways: its offer and GW2's answer were RTP/SAVP with
        // keys (and nothing else was).
        let p = &mut lab.outside_srtp;
        p.drain();
        let m_lines: Vec<&String> = p
            .proc
            .seen
            .iter()
            .filter(|l| l.starts_with("m=audio"))
            .collect();
        assert!(m_lines.len() >= 2, "{}", p.proc.seen.join("\n"));
        assert!(
            m_lines.iter().all(|l| l.contains(" RTP/SAVP ")),
            "{m_lines:?}"
        );
        let keys = p
            .proc
            .seen
            .iter()
            .filter(|l| l.starts_with("a=crypto:"))
            .count();
        assert!(keys >= 2, "{}", p.proc.seen.join("\n"));
    }
}

fn call_inner(lab: &mut Lab, target: &str, outside_hangs_up: bool) {
    let secs = |s: u64| Instant::now() + Duration::from_secs(s);
    let (om, im) = (lab.outside.mark(), lab.inside.mark());
    let log_mark = lab.sgw.mark();
    lab.outside.command("dial", target);
    let incoming = lab
        .inside
        .wait_event(im, &["CALL_INCOMING"], secs(8))
        .unwrap_or_else(|seen| {
            panic!(
                "{target}: the INVITE never reached the inside phone ({seen}); outside saw {:?}; \
                 gateway:\n{}",
                lab.outside.events_since(om),
                lab.sgw.since(log_mark).join("\n")
            )
        });
    lab.inside.command("accept", "");
    let e = lab
        .outside
        .wait_event(om, &["CALL_ESTABLISHED", "CALL_CLOSED"], secs(5))
        .unwrap();
    if e.kind != "CALL_ESTABLISHED" {
        lab.outside.drain();
        panic!(
            "{target}: {e}; outside phone:\n{}",
            lab.outside.proc.seen.join("\n")
        );
    }
    let outside_id = e.call_id.clone().unwrap();
    lab.inside
        .wait_event(im, &["CALL_ESTABLISHED"], secs(3))
        .unwrap();
    for p in [&mut lab.outside, &mut lab.inside] {
        let m = if p.name.starts_with("outside") {
            om
        } else {
            im
        };
        p.wait_event(m, &["CALL_RTPESTAB"], secs(3))
            .unwrap_or_else(|seen| panic!("{target}: {} received no RTP ({seen})", p.name));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let (hanger, other, other_mark) = if outside_hangs_up {
        (&mut lab.outside, &mut lab.inside, im)
    } else {
        (&mut lab.inside, &mut lab.outside, om)
    };
    hanger.command("hangup", "");
    other
        .wait_event(other_mark, &["CALL_CLOSED"], secs(5))
        .unwrap_or_else(|seen| panic!("{target}: {} still in the call ({seen})", other.name));

    // Every message of the call, both ways, went over TLS between the phone and GW2.
    let deadline = secs(3);
    let trace = loop {
        let t = lab.outside.trace(&outside_id);
        let done = t
            .iter()
            .any(|m| m.cseq_method() == "BYE" && m.status() == Some(200));
        if done || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let shown: Vec<String> = trace.iter().map(ToString::to_string).collect();
    assert!(
        trace
            .iter()
            .any(|m| m.cseq_method() == "BYE" && m.status() == Some(200)),
        "{target}: no BYE answered 200 at the outside phone:\n{}",
        shown.join("\n")
    );
    assert!(
        trace.iter().all(|m| m.path.starts_with("TLS ")),
        "{target}: a message of the call was not on TLS:\n{}",
        shown.join("\n")
    );
    if !outside_hangs_up {
        let bye = trace
            .iter()
            .find(|m| m.first_line.starts_with("BYE "))
            .expect("GW2's BYE");
        assert!(bye.path.contains(&format!("{} ->", lab.tls)), "{bye}");
    }
    // GW2's call record: media carried both ways.
    let rec = gw2_record(&mut lab.sgw, log_mark);
    let m = &rec["media"];
    assert!(
        m["forwarded"].as_u64().unwrap() >= MIN_RTP && m["relayed"].as_u64().unwrap() >= MIN_RTP,
        "{target}: {rec}"
    );
    let _ = incoming;
}

/// A call from the inside phone out through GW2, which dials its `outside_next_hop` (the
/// outside phone's TLS port) over TLS, verifying its certificate: audio both ways, and every
/// message at the outside phone on TLS.
fn call_out_over_tls(lab: &mut Lab) {
    let secs = |s: u64| Instant::now() + Duration::from_secs(s);
    let (om, im) = (lab.outside.mark(), lab.inside.mark());
    let log_mark = lab.sgw.mark();
    let gw1 = lab.gw1;
    lab.inside
        .command("dial", &format!("sip:{OUTSIDE_USER}@{gw1}"));
    let incoming = lab
        .outside
        .wait_event(om, &["CALL_INCOMING"], secs(8))
        .unwrap_or_else(|seen| {
            panic!(
                "the call out never reached the outside phone ({seen}); gateway:\n{}",
                lab.sgw.since(log_mark).join("\n")
            )
        });
    lab.outside.command("accept", "");
    for (p, m) in [(&mut lab.inside, im), (&mut lab.outside, om)] {
        p.wait_event(m, &["CALL_ESTABLISHED"], secs(5))
            .unwrap_or_else(|seen| panic!("{}: not established ({seen})", p.name));
        p.wait_event(m, &["CALL_RTPESTAB"], secs(3))
            .unwrap_or_else(|seen| panic!("{}: no RTP ({seen})", p.name));
    }
    std::thread::sleep(Duration::from_millis(500));
    lab.inside.command("hangup", "");
    lab.outside
        .wait_event(om, &["CALL_CLOSED"], secs(5))
        .unwrap();
    let id = incoming.call_id.unwrap();
    let trace = lab.outside.trace(&id);
    let shown: Vec<String> = trace.iter().map(ToString::to_string).collect();
    assert!(
        !trace.is_empty() && trace.iter().all(|m| m.path.starts_with("TLS ")),
        "{}",
        shown.join("\n")
    );
    assert!(
        trace.iter().any(|m| m.first_line.starts_with("BYE ")),
        "{}",
        shown.join("\n")
    );
}

/// GW2's first call record logged since `mark`, waiting up to 3 s for it.
fn gw2_record(sgw: &mut Proc, mark: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let rec = sgw.since(mark).iter().find_map(|l| {
            let (head, json) = l.split_once(": call ended ")?;
            head.contains(" sgw gw2 call=")
                .then(|| serde_json::from_str::<serde_json::Value>(json).ok())?
        });
        if rec.is_some() || Instant::now() > deadline {
            return rec.expect("GW2's call record");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `openssl s_client` with `version` (`-tls1_2`, `-tls1_3`) against `tls`, verifying against
/// `ca`: its output.
fn s_client(tls: SocketAddr, ca: &Path, version: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &tls.to_string(), version])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1", "-brief"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // An OPTIONS ping over the session, then end of input closes it.
    let ping = format!(
        "OPTIONS sip:{tls} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKtls{v}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:{tls}>\r\n\
         Call-ID: tls-{v}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        v = version.trim_start_matches('-')
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(ping.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `openssl s_client` as a raw SIP/TLS peer: what it writes goes down the session, what it
/// prints comes back over a channel.
struct TlsPeer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl TlsPeer {
    fn connect(tls: SocketAddr, ca: &Path) -> TlsPeer {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &tls.to_string(), "-quiet"])
            .arg("-CAfile")
            .arg(ca)
            .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, out) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0
                    || tx
                        .send(String::from_utf8_lossy(&buf[..n]).to_string())
                        .is_err()
                {
                    return;
                }
            }
        });
        TlsPeer {
            child,
            stdin,
            out,
            seen: String::new(),
        }
    }

    fn send(&mut self, msg: &str) {
        self.stdin.write_all(msg.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits until what it received contains `needle`; returns everything received.
    fn wait(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(s) => self.seen.push_str(&s),
                Err(_) => panic!("no {needle:?} within {timeout:?}; received:\n{}", self.seen),
            }
        }
        self.seen.clone()
    }
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A call made by a SIPS request (libre 1.x cannot dial `sips:`, so a raw TLS peer places it):
/// GW2's Contact in the dialog is a SIPS URI (RFC 3261 section 12.1.1), and ACK and BYE
/// complete over the same session.
fn sips_call(lab: &mut Lab) {
    let tls = lab.tls;
    let mut peer = TlsPeer::connect(tls, &lab.ca);
    let im = lab.inside.mark();
    let head = |method: &str, cseq: u32, branch: &str, to_tag: &str| {
        format!(
            "{method} sips:{INSIDE_USER}@{tls} SIP/2.0\r\n\
             Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
             From: <sips:{OUTSIDE_USER}@127.0.0.1>;tag=sipsfrom\r\n\
             To: <sips:{INSIDE_USER}@{tls}>{to_tag}\r\nCall-ID: sips-call@127.0.0.1\r\n\
             CSeq: {cseq} {method}\r\nContact: <sips:{OUTSIDE_USER}@127.0.0.1:5999>\r\n"
        )
    };
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 5998 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    peer.send(&format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        head("INVITE", 1, "sips1", ""),
        sdp.len()
    ));
    lab.inside
        .wait_event(
            im,
            &["CALL_INCOMING"],
            Instant::now() + Duration::from_secs(8),
        )
        .unwrap();
    lab.inside.command("accept", "");
    let seen = peer.wait("SIP/2.0 200 OK", Duration::from_secs(5));
    let ok = &seen[seen.find("SIP/2.0 200 OK").unwrap()..];
    let contact = ok
        .lines()
        .find(|l| l.starts_with("Contact:"))
        .unwrap_or_else(|| panic!("no Contact in\n{ok}"));
    assert!(contact.contains("<sips:"), "{contact}");
    let to = ok.lines().find(|l| l.starts_with("To:")).unwrap();
    let to_tag = &to[to.find(";tag=").unwrap()..];
    peer.send(&format!(
        "{}Content-Length: 0\r\n\r\n",
        head("ACK", 1, "sips2", to_tag)
    ));
    lab.inside
        .wait_event(
            im,
            &["CALL_ESTABLISHED"],
            Instant::now() + Duration::from_secs(3),
        )
        .unwrap();
    peer.send(&format!(
        "{}Content-Length: 0\r\n\r\n",
        head("BYE", 2, "sips3", to_tag)
    ));
    let seen = peer.wait("CSeq: 2 BYE", Duration::from_secs(5));
    assert!(
        seen.contains("SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKsips3"),
        "{seen}"
    );
    lab.inside
        .wait_event(
            im,
            &["CALL_CLOSED"],
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap();
}

/// The test venv's python with pylibsrtp (`.venv`, or `SGW_PYTHON`); `None` (skipped, or a
/// failure under CI=true) without it.
fn srtp_python(test: &str) -> Option<std::path::PathBuf> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("SGW_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import pylibsrtp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: pylibsrtp is required under CI=true (./scripts/test.sh installs it into .venv)");
    }
    eprintln!("{test}: skipped: pylibsrtp not in .venv (run ./scripts/test.sh once)");
    None
}

/// Waits until a tshark capture says it is capturing (its stderr), at most 10 s.
fn wait_capturing(capture: &mut std::process::Child) {
    let mut err = capture.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut seen = String::new();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("Capturing on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("tshark did not start capturing");
}

/// The first line of `text` starting with `prefix`, without it.
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
        .trim()
}

/// An SRTP call over TLS: the raw TLS peer offers `RTP/SAVP` with an SDES key, and libsrtp
/// (pylibsrtp, `tests/srtp_peer.py`) protects what it sends to GW2 and unprotects what GW2
/// sends back, from the inside phone's plain RTP. A forged and a replayed packet are dropped
/// and counted in the call record. The same offer over UDP is refused 488.
fn srtp_call(lab: &mut Lab, python: &Path) {
    let tls = lab.tls;
    let media_port = free_udp_port("127.0.0.1");
    let our_key = "YUJjRGVGZ0hpSmtMbU5vUHFSc1R1VndYeVphQmNE";
    let sdp = format!(
        "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {media_port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{our_key}\r\n"
    );
    let invite = |transport: &str, branch: &str, call_id: &str| {
        format!(
            "INVITE sip:{INSIDE_USER}@{tls};transport={t} SIP/2.0\r\n\
             Via: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{OUTSIDE_USER}@127.0.0.1>;tag=srtpfrom\r\n\
             To: <sip:{INSIDE_USER}@{tls}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:{OUTSIDE_USER}@127.0.0.1:5999;transport={t}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            t = transport.to_ascii_lowercase(),
        )
    };

    // Over UDP the key would be in clear: 488.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(
        invite("UDP", "srtpudp", "srtp-udp@127.0.0.1").as_bytes(),
        lab.udp,
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("SIP/2.0 488 "), "{answer}");

    // What an eavesdropper on the outside would get: the TLS connection and the SRTP.
    let wire = lab.dir.0.join("srtp-wire.pcap");
    let mut capture = Command::new("tshark")
        .args(["-i", "lo", "-q", "-n", "-w"])
        .arg(&wire)
        .arg("-f")
        .arg(format!("tcp port {} or udp port {media_port}", tls.port()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_capturing(&mut capture);
    let mut peer = TlsPeer::connect(tls, &lab.ca);
    let im = lab.inside.mark();
    let log_mark = lab.sgw.mark();
    peer.send(&invite("TLS", "srtp1", "srtp-call@127.0.0.1"));
    lab.inside
        .wait_event(
            im,
            &["CALL_INCOMING"],
            Instant::now() + Duration::from_secs(8),
        )
        .unwrap();
    lab.inside.command("accept", "");
    let seen = peer.wait("SIP/2.0 200 OK", Duration::from_secs(5));
    let ok = seen[seen.find("SIP/2.0 200 OK").unwrap()..].to_owned();
    let m = line_after(&ok, "m=audio ");
    assert!(m.contains(" RTP/SAVP "), "{ok}");
    let gw2_port: u16 = m.split_whitespace().next().unwrap().parse().unwrap();
    let crypto = line_after(&ok, "a=crypto:");
    let gw2_key = crypto
        .strip_prefix("1 AES_CM_128_HMAC_SHA1_80 inline:")
        .unwrap_or_else(|| panic!("{crypto}"));
    assert_ne!(gw2_key, our_key);
    let to = line_after(&ok, "To:");
    let to_tag = &to[to.find(";tag=").unwrap()..];
    let head = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} sip:gw@{tls};transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:{OUTSIDE_USER}@127.0.0.1>;tag=srtpfrom\r\n\
             To: <sip:{INSIDE_USER}@{tls}>{to_tag}\r\nCall-ID: srtp-call@127.0.0.1\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    peer.send(&head("ACK", 1, "srtp2"));

    let (st, out) = run_bounded(
        "srtp_peer.py",
        Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/srtp_peer.py"))
            .arg(format!("127.0.0.1:{media_port}"))
            .arg(format!("127.0.0.1:{gw2_port}"))
            .args([our_key, gw2_key, "AES_CM_128_HMAC_SHA1_80", "100"]),
        Duration::from_secs(20),
    );
    assert!(st.success(), "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!("{e}: {out}");
        });
    // The inside phone's tone, encrypted by GW2, decrypted by libsrtp.
    assert!(report["received_ok"].as_u64().unwrap() >= 50, "{report}");
    assert_eq!(report["received_bad"].as_u64(), Some(0), "{report}");
    lab.inside
        .wait_event(
            im,
            &["CALL_RTPESTAB"],
            Instant::now() + Duration::from_secs(3),
        )
        .unwrap_or_else(|seen| panic!("the inside phone received no RTP ({seen})"));

    peer.send(&head("BYE", 2, "srtp3"));
    peer.wait("CSeq: 2 BYE", Duration::from_secs(5));
    let rec = gw2_record(&mut lab.sgw, log_mark);
    let m = &rec["media"];
    // libsrtp's packets, decrypted and carried to the inside (the forged and replayed ones not).
    assert!(m["forwarded"].as_u64().unwrap() >= 95, "{rec}");
    assert!(m["relayed"].as_u64().unwrap() >= 50, "{rec}");
    assert_eq!(m["dropped_srtp_auth"].as_u64(), Some(1), "{rec}");
    assert_eq!(m["dropped_srtp_replay"].as_u64(), Some(1), "{rec}");

    // tshark decrypts nothing it should not: no SIP decoded from the TLS connection, neither
    // key nor libsrtp's plain payload (160 bytes of 0xff) anywhere on the wire, yet the
    // packets are there (RTP headers stay clear in SRTP).
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &capture.id().to_string()])
        .status();
    let _ = capture.wait();
    let bytes = std::fs::read(&wire).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(our_key.as_bytes()) && !contains(gw2_key.as_bytes()));
    assert!(!contains(&[0xff; 160]));
    assert!(!contains(b"INVITE sip:"));
    let decoded = |filter: &str| {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&wire)
            .args([
                "-n",
                "-d",
                &format!("udp.port=={media_port},rtp"),
                "-Y",
                filter,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(decoded("sip"), 0);
    assert!(decoded("tls") > 0);
    assert!(decoded("rtp") >= 100);
}

#[test]
fn baresip_calls_gw2_over_tls_and_tls_1_2_and_1_3_are_served() {
    if !peers_available("sip_tls") {
        return;
    }
    let mut lab = start("sip-tls");

    // TLS 1.2 and 1.3, GW2's certificate verified against the CA, and SIP answered inside.
    for version in ["-tls1_2", "-tls1_3"] {
        let out = s_client(lab.tls, &lab.ca, version);
        let want = if version == "-tls1_2" {
            "Protocol version: TLSv1.2"
        } else {
            "Protocol version: TLSv1.3"
        };
        assert!(out.contains(want), "{version}:\n{out}");
        assert!(out.contains("Verification: OK"), "{version}:\n{out}");
        assert!(out.contains("SIP/2.0 200 OK"), "{version}:\n{out}");
    }

    let tls = lab.tls;
    call(
        &mut lab,
        &format!("sip:{INSIDE_USER}@{tls};transport=tls"),
        true,
    );
    call(
        &mut lab,
        &format!("sip:{INSIDE_USER}@{tls};transport=tls"),
        false,
    );
    sips_call(&mut lab);
    if let Some(python) = srtp_python("sip_tls") {
        srtp_call(&mut lab, &python);
    }
    call_out_over_tls(&mut lab);
    // baresip's own SRTP (libre, SDES) over TLS, both ways through GW2.
    call_from(
        &mut lab,
        &format!("sip:{INSIDE_USER}@{tls};transport=tls"),
        true,
        true,
    );

    // Plain SIP on the TLS port, and a peer that never sends its ClientHello: closed, counted.
    let mut plain = TcpStream::connect(tls).unwrap();
    plain
        .write_all(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).contains("SIP/2.0"),
        "plain SIP answered on the TLS port"
    );
    // A sips: INVITE over UDP: its last hop was not TLS.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let udp = lab.udp;
    let invite = format!(
        "INVITE sips:{INSIDE_USER}@{udp} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsipsudp\r\n\
         Max-Forwards: 70\r\nFrom: <sips:{OUTSIDE_USER}@127.0.0.1>;tag=7\r\n\
         To: <sips:{INSIDE_USER}@{udp}>\r\nCall-ID: sips-over-udp@127.0.0.1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:{OUTSIDE_USER}@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), udp).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("SIP/2.0 416 "), "{answer}");

    // Still serving: one more call over TLS.
    call(
        &mut lab,
        &format!("sip:{INSIDE_USER}@{tls};transport=tls"),
        true,
    );
    drop(plain);

    lab.sgw.terminate(Duration::from_secs(20));
    let stats = lab.sgw.stats("gw2");
    let failures = stats["driver"]["tls_handshake_failures"]
        .as_u64()
        .unwrap_or_else(|| panic!("no tls_handshake_failures in {stats}"));
    assert!(failures >= 1, "{stats}");
    drop(lab.dir);
}

/// GW2 dials its provider over mutual TLS: `openssl s_server` plays the provider, requires a
/// client certificate from the lab's CA, and receives the INVITE of a call from the inside.
#[test]
fn gw2_dials_its_provider_with_mutual_tls() {
    if !peer_available("sip_tls", "openssl", &["version"], "openssl") {
        return;
    }
    let dir = Scratch::new("sip-tls-mtls");
    let pki = dir.0.join("pki");
    let (st, out) = run_bounded(
        "sgw pki init",
        sgw().args(["pki", "init"]).arg(&pki),
        Duration::from_secs(20),
    );
    assert!(st.success(), "{out}");
    let provider = free_tcp_port("127.0.0.1");
    let mut server = KillOnDrop(
        Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{provider}")])
            .arg("-cert")
            .arg(pki.join("gw2.pem"))
            .arg("-key")
            .arg(pki.join("gw2.key"))
            .arg("-CAfile")
            .arg(pki.join("ca.pem"))
            .args(["-Verify", "1", "-verify_return_error"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for r in [
        Box::new(server.0.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(server.0.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        let mut r = r;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0
                    || tx
                        .send(String::from_utf8_lossy(&buf[..n]).to_string())
                        .is_err()
                {
                    return;
                }
            }
        });
    }
    let udp = free_udp_port("127.0.0.1");
    let tunnel = free_tcp_port("127.0.0.1");
    let gw1 = free_udp_port("127.0.0.1");
    let media = free_rtp_port("127.0.0.1");
    let cfg = dir.file(
        "sgw.toml",
        &format!(
            r#"[gw2]
sip_udp = ["127.0.0.1:{udp}"]
tunnel_listen = "127.0.0.1:{tunnel}"
outside_next_hop = "127.0.0.1:{provider}"
outside_transport = "tls"
outside_tls_server_name = "127.0.0.1"
outside_tls_ca = "{pki}/ca.pem"
outside_tls_cert = "{pki}/gw1.pem"
outside_tls_key = "{pki}/gw1.key"
[gw2.media]
ip = "127.0.0.1"
port_min = {media}
port_max = {o_max}

[gw1]
tunnel = "127.0.0.1:{tunnel}"
tunnel_server_name = "127.0.0.1"
sip_bind = "127.0.0.1:{gw1}"
next_hop = "127.0.0.1:9"
family = "ipv4"
[gw1.media]
ip = "127.0.0.2"
port_min = {media}
port_max = {o_max}
"#,
            pki = pki.display(),
            o_max = media + 99,
        ),
    );
    let mut sgw = Proc::spawn(
        "sip-tls-mtls",
        sgw()
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(["--role", "both"]),
    );
    sgw.wait_line("gw1: tunnel up", Duration::from_secs(20));
    sgw.wait_line("gw2: tunnel up", Duration::from_secs(20));
    // A call from the inside PBX to GW1.
    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = pbx.local_addr().unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 5996 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "INVITE sip:{OUTSIDE_USER}@127.0.0.1:{gw1} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKmtls1\r\nMax-Forwards: 70\r\n\
         From: <sip:{INSIDE_USER}@127.0.0.1>;tag=mtls\r\nTo: <sip:{OUTSIDE_USER}@127.0.0.1>\r\n\
         Call-ID: mtls@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:{INSIDE_USER}@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    pbx.send_to(invite.as_bytes(), ("127.0.0.1", gw1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !(seen.contains("CN = sgw gw1") && seen.contains(&format!("INVITE sip:{OUTSIDE_USER}@")))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => seen.push_str(&s),
            Err(_) => {
                panic!(
                    "the provider saw no INVITE over mutual TLS:\n{seen}\ngateway:\n{}",
                    sgw.since(0).join("\n")
                );
            }
        }
    }
    // `-verify_return_error`: the handshake ends only with a client certificate that chains
    // to the CA.
    assert!(seen.contains("Client certificate"), "{seen}");
    assert!(seen.contains("Via: SIP/2.0/TLS "), "{seen}");
}

/// A child process killed when dropped (also when the test panics).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
