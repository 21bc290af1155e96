//! `sgw check-config` as a user runs it: the shipped example is accepted, and a key the gateway
//! does not implement is refused with its line and "not supported yet", exit status 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn check_config(name: &str, text: &str) -> (Output, PathBuf) {
    let dir = std::env::temp_dir().join(format!("sgw-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sgw"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    (out, file)
}

#[test]
fn the_example_is_accepted() {
    let (out, _) = check_config("example.toml", sgw::config::EXAMPLE_CONFIG);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

/// A key that does nothing where it is (a certificate without the listener that would present
/// it): exit 2, with the file, its line and its key.
#[test]
fn idle_keys_exit_2_with_file_line_and_key() {
    let text = sgw::config::EXAMPLE_CONFIG.replacen(
        "[gw2]\n",
        "[gw2]\nsip_tls_cert = \"/etc/sgw/tls.pem\"\n",
        1,
    );
    let (out, file) = check_config("unsupported.toml", &text);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let key = "gw2.sip_tls_cert";
    let want = format!(
        "{}:{}: {key}: set without a sip_tls listener",
        file.display(),
        line_of("sip_tls_cert")
    );
    assert!(stdout.contains(&want), "want {want:?} in:\n{stdout}");
}

/// A rule of the shipped example made unreachable by an earlier one: exit 2, the line of its
/// name, its key path, and the rule that shadows it.
#[test]
fn unreachable_rule_exits_2_with_file_line_and_key() {
    let text = format!(
        "{}\n[[policy.rules]]\nname = \"no-did\"\ndirection = \"from_outside\"\ncallee = [\"+4930123456X\"]\naction = \"deny\"\n",
        sgw::config::EXAMPLE_CONFIG
    );
    let (out, file) = check_config("unreachable.toml", &text);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().position(|l| l == "name = \"no-did\"").unwrap() + 1;
    let want = format!(
        "{}:{line}: policy.rules[4].name: rule \"no-did\" is unreachable: every call it matches is matched first by rule \"inbound-did\", which allows what this rule would deny",
        file.display()
    );
    assert!(stdout.contains(&want), "want {want:?} in:\n{stdout}");
}

#[test]
fn inside_tcp_is_accepted() {
    let text = sgw::config::EXAMPLE_CONFIG.replace("transport = \"udp\"", "transport = \"tcp\"");
    assert_ne!(text, sgw::config::EXAMPLE_CONFIG);
    let (out, _) = check_config("tcp.toml", &text);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// The rate limit keys are real: a global call rate is accepted, a value out of range is
/// refused with its line and key.
#[test]
fn rate_limit_keys_are_checked() {
    let text = sgw::config::EXAMPLE_CONFIG.replace("calls_per_second = 0", "calls_per_second = 50");
    assert_ne!(text, sgw::config::EXAMPLE_CONFIG);
    let (out, _) = check_config("rates.toml", &text);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let text = sgw::config::EXAMPLE_CONFIG.replace("ipv6_prefix_len = 64", "ipv6_prefix_len = 8");
    assert_ne!(text, sgw::config::EXAMPLE_CONFIG);
    let (out, file) = check_config("prefix.toml", &text);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = text
        .lines()
        .position(|l| l.starts_with("ipv6_prefix_len"))
        .unwrap()
        + 1;
    let want = format!(
        "{}:{line}: gw2.limits.ipv6_prefix_len: 8 is outside 16..=128",
        file.display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&want), "want {want:?} in:\n{stdout}");
}
