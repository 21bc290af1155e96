//! Running the independent pycrate H.323 peer (`tests/h323peer/h323peer.py`) from tests, and
//! reading what it reports.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The peer: `tests/h323peer/h323peer.py`, or `SGW_H323PEER` (another copy of it).
pub fn peer_script() -> PathBuf {
    std::env::var_os("SGW_H323PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tests/h323peer/h323peer.py"))
}

/// The Python that runs the peer: `SGW_PYTHON`, else the test venv's, else `python3`, the
/// first in which the peer loads pycrate. `None` (skipped) without one; a failure under
/// `CI=true`.
pub fn python(test: &str) -> Option<PathBuf> {
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
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: pycrate is required under CI=true (./scripts/test.sh installs it into .venv)"
        );
        eprintln!("{test}: skipped: no Python with pycrate (run ./scripts/test.sh once)");
    }
    found
}

/// The summary line of a peer run (`mode` "call" or "answer").
pub fn summary(out: &str, mode: &str) -> Option<Value> {
    out.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .filter(|v| v["mode"] == mode)
    })
}

/// A peer answering one call (`answer`), started and listening.
pub struct Answerer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Answerer {
    /// Starts `answer --listen port` with `args`, and waits for it to listen.
    pub fn start(python: &Path, port: u16, args: &[&str]) -> Answerer {
        let mut child = Command::new(python)
            .arg(peer_script())
            .args(["answer", "--listen", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let a = Answerer { child, lines: rx };
        let first = a
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_default();
        assert!(
            first.contains("listening"),
            "the peer did not listen: {first}"
        );
        a
    }

    /// Its summary, waiting at most `wait` for it to end.
    pub fn finish(mut self, wait: Duration) -> Value {
        let deadline = Instant::now() + wait;
        let mut out = String::new();
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    out.push_str(&l);
                    out.push('\n');
                    if let Some(v) = summary(&out, "answer") {
                        let _ = self.child.wait();
                        return v;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        summary(&out, "answer")
            .unwrap_or_else(|| panic!("no summary from the answering peer:\n{out}"))
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tshark over `pcap` with the H.225.0 heuristic (and `decode` as extra `-d` rules): frames
/// with a malformed packet or an expert error.
pub fn tshark_errors(pcap: &Path, decode: &[String]) -> String {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(["-o", "tcp.try_heuristic_first:TRUE"]);
    for d in decode {
        cmd.args(["-d", d]);
    }
    let out = cmd
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

/// Frames of `pcap` matching `filter` (with `decode` rules).
pub fn tshark_count(pcap: &Path, decode: &[String], filter: &str) -> usize {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(["-o", "tcp.try_heuristic_first:TRUE"]);
    for d in decode {
        cmd.args(["-d", d]);
    }
    let out = cmd
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().count()
}

/// `scenario` (a sipp UAS) with a `recv INFO` (checking `Signal=DIGIT`) and its 200 per digit
/// of `dtmf`, before its BYE, answering without telephone-event.
pub fn with_info_per_digit(scenario: &str, dtmf: &str) -> String {
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
    let scenario = super::scenarios::without_telephone_event(scenario);
    let at = scenario.find("<recv request=\"BYE\"").unwrap();
    format!("{}{infos}{}", &scenario[..at], &scenario[at..])
}
