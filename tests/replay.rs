//! `sgw replay` end to end: SIP message counts against tshark on every corpus capture, exit
//! codes, truncated input, `--out` read back by tshark, and transcript snapshots of every
//! capture in `testdata/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn sgw() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sgw"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// tshark, or `None` after saying the check was skipped (a failure under CI).
fn tshark() -> Option<&'static str> {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("tshark");
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("tshark is required under CI (apt-get install tshark)");
    }
    eprintln!("skipped: tshark not installed");
    None
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(captures(&p));
        } else if !matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("md" | "txt" | "sh" | "xml" | "cfg" | "sip" | "snap")
        ) && !p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("README"))
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn replay_json(path: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = sgw()
        .arg("replay")
        .arg("--json")
        .args(extra)
        .arg(path)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: no JSON ({e}); stderr: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

fn tshark_sip_count(tshark: &str, path: &Path) -> u64 {
    let out = Command::new(tshark)
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", "sip", "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

#[test]
fn sip_counts_match_tshark_on_every_corpus_capture() {
    let Some(tshark) = tshark() else { return };
    let mut failures = Vec::new();
    let files = captures(&root().join("../shared/corpora/pcap"));
    assert!(files.len() >= 30, "corpus captures found: {}", files.len());
    for f in files {
        let (code, json) = replay_json(&f, &[]);
        if code != 0 {
            failures.push(format!("{}: exit {code}", f.display()));
        }
        let ours = json["summary"]["sip_messages"].as_u64().unwrap();
        let theirs = tshark_sip_count(tshark, &f);
        if ours != theirs {
            failures.push(format!(
                "{}: sgw {ours} SIP messages, tshark {theirs}",
                f.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn truncated_capture_reports_what_was_read_and_exits_2() {
    let src = root().join("../shared/corpora/pcap/ndpi/sip.pcap");
    let data = std::fs::read(&src).unwrap();
    let dir = std::env::temp_dir().join(format!("sgw-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &data[..data.len() / 2 + 7]).unwrap();
    let out = sgw().args(["replay", "--json"]).arg(&cut).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packets = json["summary"]["packets"].as_u64().unwrap();
    assert!(packets > 10 && packets < 112, "{packets}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.pcap") && err.contains("byte"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unreadable_input_exits_2() {
    let out = sgw()
        .args(["replay", "/nonexistent/capture.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = sgw()
        .args(["replay"])
        .arg(root().join("Cargo.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn fail_on_reject_exits_1() {
    let f = root().join("../shared/corpora/pcap/ndpi/http_on_sip_port.pcap");
    let (code, json) = replay_json(&f, &["--fail-on-reject"]);
    assert!(json["summary"]["rejected"].as_u64().unwrap() > 0);
    assert_eq!(code, 1);
}

#[test]
fn out_pcap_is_clean_for_tshark_in_both_families() {
    let Some(tshark) = tshark() else { return };
    let f = root()
        .join("../shared/corpora/pcap/sipp-scenarios-lundgrel/sipp_uac_Media_DTMF_Speex.pcap");
    let dir = std::env::temp_dir().join(format!("sgw-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for family in ["ipv4", "ipv6"] {
        let out = dir.join(format!("inside-{family}.pcap"));
        let (code, json) = replay_json(
            &f,
            &["--inside-family", family, "--out", out.to_str().unwrap()],
        );
        assert_eq!(code, 0);
        let sent = json["summary"]["inside_packets"].as_u64().unwrap();
        assert!(sent > 400, "{sent}");
        let t = Command::new(tshark)
            .args(["-n", "-r"])
            .arg(&out)
            .args([
                "-o",
                "rtp.heuristic_rtp:TRUE",
                "-Y",
                "sip || rtp",
                "-T",
                "fields",
                "-e",
                "ip.src",
                "-e",
                "ipv6.src",
                "-e",
                "_ws.col.Protocol",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&t.stdout);
        assert_eq!(
            text.lines().count() as u64,
            sent,
            "{family}: every packet decodes as SIP or RTP"
        );
        let malformed = Command::new(tshark)
            .args(["-n", "-r"])
            .arg(&out)
            .args(["-Y", "_ws.malformed || _ws.expert.severity >= error"])
            .output()
            .unwrap();
        assert!(
            malformed.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&malformed.stdout)
        );
        // Nothing of the outside network appears on the inside.
        let raw = std::fs::read(&out).unwrap();
        for outside in [
            &[213u8, 64, 235, 116][..],
            &[217, 214, 169, 162],
            &[10, 59, 27, 11],
        ] {
            assert!(
                !raw.windows(4).any(|w| w == outside),
                "{family}: outside address leaked"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Transcript snapshots of every capture in `testdata/` (insta, in `snapshots/replay/`).
#[test]
fn replay_transcripts_of_testdata() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("snapshots/replay"));
    settings.set_prepend_module_to_snapshot(false);
    let files: Vec<PathBuf> = captures(&root().join("testdata"))
        .into_iter()
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng" | "cap")
            )
        })
        .collect();
    settings.bind(|| {
        for f in files {
            let rel = f.strip_prefix(root().join("testdata")).unwrap();
            let name = rel.to_string_lossy().replace(['/', '.'], "_");
            let out = sgw().arg("replay").arg(&f).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).replace(
                &f.display().to_string(),
                &format!("testdata/{}", rel.display()),
            );
            insta::assert_snapshot!(name, text);
        }
    });
}

/// Topology hiding in replay: what GW1 sends to the inside names no outside address and no
/// outside Call-ID, for every SIP capture in `testdata/`.
#[test]
fn out_pcap_hides_the_outside() {
    let Some(tshark) = tshark() else { return };
    let dir = std::env::temp_dir().join(format!("sgw-hide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = captures(&root().join("testdata/sip"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    assert!(!files.is_empty());
    for f in files {
        let fields = |path: &Path, field: &str| -> Vec<String> {
            let o = Command::new(tshark)
                .args(["-n", "-r"])
                .arg(path)
                .args(["-Y", "sip", "-T", "fields", "-e", field])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let out = dir.join("inside.pcap");
        let (code, _) = replay_json(&f, &["--out", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{}", f.display());
        let outside_ids = fields(&f, "sip.Call-ID");
        let inside_ids = fields(&out, "sip.Call-ID");
        assert!(
            !inside_ids.is_empty(),
            "{}: nothing reached the inside",
            f.display()
        );
        for id in &inside_ids {
            assert!(
                !outside_ids.contains(id),
                "{}: outside Call-ID {id} inside",
                f.display()
            );
        }
        for hdr in fields(&out, "sip.msg_hdr") {
            for outside in ["127.0.0.1", "[::1]", "localhost"] {
                assert!(
                    !hdr.contains(outside),
                    "{}: '{outside}' inside:\n{hdr}",
                    f.display()
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
