//! The live gateway of the acceptance tests: `sgw run --config FILE --role both` on loopback,
//! both halves in one process over the real mutual-TLS tunnel, with a configuration built from a
//! [`Setup`]; and the readers of what it printed (stats counters, call records, RSS).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub static SERIAL: Mutex<()> = Mutex::new(());

/// These tests load two shared cores: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A port free for both UDP and TCP on 127.0.0.1 (GW2 listens for SIP on both).
pub fn sip_port() -> u16 {
    for _ in 0..100 {
        let p = free_udp_port("127.0.0.1");
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// What differs between the tests' gateways.
pub struct Setup {
    pub gw2_media: (u16, u16),
    pub gw1_media: (u16, u16),
    /// Lines of `[gw2.limits]`.
    pub limits: &'static str,
    /// Lines of `[policy]`.
    pub policy: &'static str,
    pub gw1_transport: &'static str,
    /// GW1's media address: another loopback address lets both halves use the same ports.
    pub gw1_media_ip: &'static str,
    /// Extra lines of `[gw2.media]` (e.g. `latch = "sdp"`).
    pub gw2_media_lines: &'static str,
    pub outside_next_hop: Option<SocketAddr>,
    pub inside_next_hop: SocketAddr,
    /// `-q`: no per-call and per-rejection lines (the floods would print a line per message).
    pub quiet: bool,
    /// Give GW2 an H.225.0 listener (`[gw2] h225_tcp`).
    pub h225: bool,
    /// A control socket (`[control] socket`, in the scratch directory): [`Gateway::control`].
    pub control: bool,
    /// Whole sections appended to the configuration (e.g. `[metrics]`).
    pub extra: String,
    /// Extra lines of `[gw1]` (e.g. `protocol = "h323"`).
    pub gw1_lines: String,
    /// GW2's H.225.0 listener and media on `::1` (its SIP listeners stay on 127.0.0.1).
    pub outside_v6: bool,
    /// GW1's inside on `::1`: `family = "ipv6"`, SIP and media there.
    pub inside_v6: bool,
}

impl Setup {
    pub fn new(gw2_media: (u16, u16), gw1_media: (u16, u16), inside: SocketAddr) -> Setup {
        Setup {
            gw2_media,
            gw1_media,
            limits: "",
            policy: "",
            gw1_transport: "udp",
            gw1_media_ip: "127.0.0.1",
            gw2_media_lines: "",
            outside_next_hop: None,
            inside_next_hop: inside,
            quiet: false,
            h225: false,
            control: false,
            extra: String::new(),
            gw1_lines: String::new(),
            outside_v6: false,
            inside_v6: false,
        }
    }
}

/// A running `sgw run --config --role both`.
pub struct Gateway {
    pub p: Proc,
    /// GW2's SIP address (UDP and TCP).
    pub sip: SocketAddr,
    /// GW1's inside SIP address.
    pub gw1_sip: SocketAddr,
    /// GW2's tunnel listener.
    pub tunnel: SocketAddr,
    /// Where H.225.0 goes: GW2's `h225_tcp` listener, or the SIP TCP port without one.
    pub h225: SocketAddr,
    pub h225_listener: bool,
    pub dir: Scratch,
    /// The configuration file it runs with.
    pub config: std::path::PathBuf,
    /// Its control socket (with [`Setup::control`]).
    pub control: Option<std::path::PathBuf>,
}

pub fn config_text(s: &Setup, sip: u16, tunnel: u16, gw1: u16, h225: Option<u16>) -> String {
    let next_hop = s
        .outside_next_hop
        .map(|a| format!("outside_next_hop = \"{a}\"\n"))
        .unwrap_or_default();
    let out_ip = if s.outside_v6 { "[::1]" } else { "127.0.0.1" };
    let h225 = h225
        .map(|p| format!("h225_tcp = [\"{out_ip}:{p}\"]\n"))
        .unwrap_or_default();
    let gw2_media_ip = if s.outside_v6 { "::1" } else { "127.0.0.1" };
    let (gw1_ip, family, gw1_media_ip) = if s.inside_v6 {
        ("[::1]", "ipv6", "::1")
    } else {
        ("127.0.0.1", "ipv4", s.gw1_media_ip)
    };
    format!(
        r#"[gw2]
sip_udp = ["127.0.0.1:{sip}"]
sip_tcp = ["127.0.0.1:{sip}"]
tunnel_listen = "127.0.0.1:{tunnel}"
{next_hop}{h225}
[gw2.media]
ip = "{gw2_media_ip}"
port_min = {}
port_max = {}
{}

[gw2.limits]
{}

[gw1]
tunnel = "127.0.0.1:{tunnel}"
tunnel_server_name = "127.0.0.1"
sip_bind = "{gw1_ip}:{gw1}"
next_hop = "{}"
family = "{family}"
transport = "{}"
{}

[gw1.media]
ip = "{gw1_media_ip}"
port_min = {}
port_max = {}

[policy]
{}
{}"#,
        s.gw2_media.0,
        s.gw2_media.1,
        s.gw2_media_lines,
        s.limits,
        s.inside_next_hop,
        s.gw1_transport,
        s.gw1_lines,
        s.gw1_media.0,
        s.gw1_media.1,
        s.policy,
        s.extra,
    )
}

impl Gateway {
    pub fn start(name: &str, s: &Setup) -> Gateway {
        let dir = Scratch::new(name);
        let (sip, tunnel, gw1) = (
            sip_port(),
            free_tcp_port("127.0.0.1"),
            free_udp_port("127.0.0.1"),
        );
        let h225_port = s.h225.then(|| free_tcp_port("127.0.0.1"));
        let mut text = config_text(s, sip, tunnel, gw1, h225_port);
        let control = s.control.then(|| dir.0.join("sgw.sock"));
        if let Some(c) = &control {
            text = format!("[control]\nsocket = \"{}\"\n\n{text}", c.display());
        }
        let h225 = match (s.outside_v6, h225_port) {
            (true, Some(p)) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, p)),
            _ => SocketAddr::from(([127, 0, 0, 1], h225_port.unwrap_or(sip))),
        };
        let h225_listener = h225_port.is_some();
        let cfg = dir.file("sgw.toml", &text);
        let mut cmd = sgw();
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(["--role", "both"]);
        if s.quiet {
            cmd.arg("-q");
        }
        let mut p = Proc::spawn(name, &mut cmd);
        p.wait_line("gw1 sip", Duration::from_secs(30));
        // Each half logs its own end of the tunnel: a call placed before GW2's is up meets the
        // tunnel link of the admission chain.
        p.wait_line("gw1: tunnel up", Duration::from_secs(30));
        p.wait_line("gw2: tunnel up", Duration::from_secs(30));
        Gateway {
            p,
            sip: SocketAddr::from(([127, 0, 0, 1], sip)),
            tunnel: SocketAddr::from(([127, 0, 0, 1], tunnel)),
            gw1_sip: SocketAddr::from(([127, 0, 0, 1], gw1)),
            h225,
            h225_listener,
            dir,
            config: cfg,
            control,
        }
    }

    /// The gateway's resident set, KiB (`VmRSS` in /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.p.child.id())
    }

    /// SIGTERM; returns the `stats gw2` and `stats gw1` lines.
    pub fn stop(&mut self) -> (Value, Value) {
        self.p.terminate(Duration::from_secs(20));
        (self.p.stats("gw2"), self.p.stats("gw1"))
    }

    /// Everything it printed so far.
    pub fn output(&mut self) -> String {
        self.p.drain();
        self.p.seen.join("\n")
    }

    /// The `call ended {json}` records printed so far.
    pub fn call_records(&mut self) -> Vec<Value> {
        self.p.drain();
        self.p
            .seen
            .iter()
            .filter_map(|l| l.split_once("call ended ").map(|(_, j)| j))
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect()
    }

    /// One `sipp -sn uac` call to GW2 (over TCP with `tcp`); its status and output.
    pub fn sipp_call(&self, tcp: bool) -> (bool, String) {
        let port = free_udp_port("127.0.0.1").to_string();
        let mp = free_rtp_port("127.0.0.1").to_string();
        let target = self.sip.to_string();
        let mut cmd = sipp(&self.dir.0);
        cmd.args(["-sn", "uac", &target, "-m", "1", "-i", "127.0.0.1"])
            .args(["-p", &port, "-mp", &mp]);
        if tcp {
            cmd.args(["-t", "t1"]);
        }
        let (st, out) = run_bounded("sipp uac", &mut cmd, Duration::from_secs(40));
        (st.success(), out)
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Every numeric counter of a stats line, by dotted path.
pub fn counters(v: &Value) -> BTreeMap<String, u64> {
    pub fn walk(v: &Value, path: &str, out: &mut BTreeMap<String, u64>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &p, out);
                }
            }
            Value::Number(n) => {
                if let Some(n) = n.as_u64() {
                    out.insert(path.to_owned(), n);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(v, "", &mut out);
    out
}

pub const CAP_WORDS: &[&str] = &["evict", "refus", "drop", "cap", "limit", "full", "overflow"];

/// The counters of a cap on `subjects` (see the module docs).
pub fn cap_counters(stats: &BTreeMap<String, u64>, subjects: &[&str]) -> Vec<String> {
    stats
        .keys()
        .filter(|k| {
            let k = k.to_ascii_lowercase();
            subjects.iter().any(|s| k.contains(s)) && CAP_WORDS.iter().any(|w| k.contains(w))
        })
        .cloned()
        .collect()
}

pub fn n(v: &Value, path: &str) -> u64 {
    let mut v = v;
    for p in path.split('.') {
        v = &v[p];
    }
    v.as_u64().unwrap_or(0)
}
