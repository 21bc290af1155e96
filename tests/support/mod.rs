//! Helpers for the live tests: gateway processes killed on drop, their output as lines, sipp
//! runs with a deadline, free loopback ports and scratch directories.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

pub mod gateway;
pub mod h225;
pub mod h323_mutate;
pub mod h323peer;
pub mod phones;
pub mod rawsip;
pub mod scenarios;
pub mod zones;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Whether sipp can run here. Under CI=true a missing sipp fails the test; otherwise the test
/// prints why it is skipped.
pub fn sipp_available(test: &str) -> bool {
    peer_available(test, "sipp", &["-v"], "sip-tester")
}

/// Whether `program` (from the Debian package `package`) runs with `args`. Under CI=true a
/// missing peer fails the test with an install hint; otherwise the test prints why it is
/// skipped.
pub fn peer_available(test: &str, program: &str, args: &[&str], package: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{test}: {program} is required under CI=true \
                 (apt-get install {package}, or run ./scripts/test.sh as root)"
            );
        }
        eprintln!("{test}: skipped: {program} not found (apt-get install {package})");
    }
    ok
}

/// A free UDP port on `ip` (released before use: good enough on a test host).
pub fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ports of a [`free_rtp_port`] block: a test may use a media range of up to 100 ports from
/// the port it returns.
const RTP_BLOCK: u16 = 128;

/// A free even UDP port that starts a block of [`RTP_BLOCK`] ports all free now, for media
/// ranges (RTP and RTCP). The blocks lie outside the kernel's ephemeral range
/// (`ip_local_port_range`) and outside 10000-31999 (`call_model_live`'s fixed ranges): a socket
/// some program binds to port 0 after the probe (a peer, a gateway's client socket, another test)
/// never lands in a gateway's media range, and the gateways' pre-binders, which bind ports ahead
/// in their ranges, never hold a port another test was given. Blocks come from one cursor per
/// test process, so parallel tests get disjoint ones.
pub fn free_rtp_port(ip: &str) -> u16 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CURSOR: AtomicUsize = AtomicUsize::new(usize::MAX);
    let (eph_lo, eph_hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|w| w.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999));
    let outside = |lo: u32, hi: u32| hi < eph_lo || lo > eph_hi;
    let block = u32::from(RTP_BLOCK);
    let starts: Vec<u16> = (2048..65_536 - block)
        .step_by(RTP_BLOCK as usize)
        .filter(|&lo| outside(lo, lo + block - 1) && (lo + block <= 10_000 || lo >= 32_000))
        .filter_map(|lo| u16::try_from(lo).ok())
        .collect();
    if starts.is_empty() {
        return free_rtp_port_ephemeral(ip);
    }
    // Each test process starts somewhere else, so a port a previous process's peer still holds is
    // rarely the first one tried.
    let _ = CURSOR.compare_exchange(
        usize::MAX,
        std::process::id() as usize % starts.len(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..starts.len() {
        let i = CURSOR.fetch_add(1, Ordering::Relaxed) % starts.len();
        let lo = starts[i];
        let held: Vec<UdpSocket> = (lo..lo + RTP_BLOCK)
            .map_while(|p| UdpSocket::bind((ip, p)).ok())
            .collect();
        if held.len() == usize::from(RTP_BLOCK) {
            return lo;
        }
    }
    free_rtp_port_ephemeral(ip)
}

/// An even port from the ephemeral range with the two above it free: where no block outside it
/// is free.
fn free_rtp_port_ephemeral(ip: &str) -> u16 {
    for _ in 0..100 {
        let a = UdpSocket::bind((ip, 0)).unwrap();
        let p = a.local_addr().unwrap().port();
        if p.is_multiple_of(2)
            && p < 65_000
            && UdpSocket::bind((ip, p + 1)).is_ok()
            && UdpSocket::bind((ip, p + 2)).is_ok()
        {
            return p;
        }
    }
    panic!("no free RTP port pair");
}

pub fn free_tcp_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("sgw-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL) on drop, its stdout and stderr collected as lines.
pub struct Proc {
    pub name: String,
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    /// Spawned as the leader of its own process group, which is signalled as a whole.
    group: bool,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            lines: rx,
            seen: Vec::new(),
            group: false,
        }
    }

    /// As [`Proc::spawn`], for a program that starts children of its own (kamailio, tshark's
    /// dumpcap): it leads a new process group, and dropping it stops the whole group (SIGTERM,
    /// then SIGKILL after two seconds).
    pub fn spawn_group(name: &str, cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let mut p = Proc::spawn(name, cmd.process_group(0));
        p.group = true;
        p
    }

    /// Sends `signal` (a name for kill(1), e.g. "TERM") to the process, or to its group.
    fn signal(&self, signal: &str) {
        let id = self.child.id();
        let target = if self.group {
            format!("-{id}")
        } else {
            id.to_string()
        };
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Drains what arrived and returns how many lines have been seen: a mark for
    /// [`Proc::since`].
    pub fn mark(&mut self) -> usize {
        self.drain();
        self.seen.len()
    }

    /// The lines seen since `mark`, after draining what arrived.
    pub fn since(&mut self, mark: usize) -> &[String] {
        self.drain();
        self.seen.get(mark..).unwrap_or_default()
    }

    /// Waits for a line containing `needle`; returns it. Panics with everything seen on timeout.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l.clone());
                    if hit {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{}: no line with {needle:?} within {timeout:?}; output:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Lines received so far, without waiting.
    pub fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit, collecting its output.
    pub fn terminate(&mut self, timeout: Duration) {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Output threads finish when the pipes close.
        std::thread::sleep(Duration::from_millis(100));
        self.drain();
    }

    /// SIGKILL now.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The JSON after `stats HALF ` in the output (printed at SIGTERM).
    pub fn stats(&self, half: &str) -> serde_json::Value {
        let prefix = format!("stats {half} ");
        let line = self
            .seen
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no stats line; output:\n{}",
                    self.name,
                    self.seen.join("\n")
                )
            });
        serde_json::from_str(line).unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            // The leader may exit before its children: the group is signalled by its id.
            self.signal("TERM");
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.signal("KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion within `timeout` (killed after it); returns its status and
/// combined output.
pub fn run_bounded(name: &str, cmd: &mut Command, timeout: Duration) -> (ExitStatus, String) {
    let mut p = Proc::spawn(name, cmd);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            p.kill9();
            break p.child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    p.drain();
    (status, p.seen.join("\n"))
}

/// The sgw binary under test.
pub fn sgw() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sgw"))
}

/// A sipp command with the options every test uses: no keyboard, bounded run.
pub fn sipp(dir: &Path) -> Command {
    let mut c = Command::new("sipp");
    c.current_dir(dir)
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"]);
    c
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
