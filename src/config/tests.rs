use super::*;

#[test]
fn the_example_parses() {
    let c = Config::from_toml_str(EXAMPLE_CONFIG).unwrap();
    let gw2 = c.gw2.unwrap();
    assert_eq!(gw2.tunnel_listen, "0.0.0.0:7001".parse().unwrap());
    assert_eq!(gw2.media.ports(), 20000..30000);
    assert_eq!(gw2.limits.max_message_size, 65535);
    let gw1 = c.gw1.unwrap();
    assert_eq!(gw1.family, Family::Ipv6);
    assert_eq!(gw1.transport, Transport::Udp);
    assert_eq!(c.policy.emergency_numbers, ["112", "110", "911"]);
    assert!(c.pki.is_some());
    assert!(EXAMPLE_CONFIG_HELP.ends_with(EXAMPLE_CONFIG));
}

/// A small valid configuration; line numbers below refer to it.
const BASE: &str = r#"[gw2]
sip_udp = ["0.0.0.0:5060"]
tunnel_listen = "0.0.0.0:7001"

[gw2.media]
ip = "192.0.2.1"
port_min = 20000
port_max = 20099

[gw1]
tunnel = "127.0.0.1:7001"
tunnel_server_name = "localhost"
sip_bind = "127.0.0.1:5070"
next_hop = "127.0.0.1:5080"
family = "ipv4"

[gw1.media]
ip = "127.0.0.1"
port_min = 30000
port_max = 30099
"#;

#[test]
fn base_parses_with_defaults() {
    let c = Config::from_toml_str(BASE).unwrap();
    let gw2 = c.gw2.unwrap();
    assert_eq!(gw2.limits, LimitsConfig::default());
    assert!(!gw2.allow_multiple_gw1);
    assert!(c.pki.is_none());
    assert_eq!(c.policy, PolicyConfig::default());
}

/// Replaces the first occurrence of `from` in BASE.
fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn bad_configs_name_key_and_line() {
    let cases: Vec<(&str, String, &str, usize, &str)> = vec![
        // (name, text, key, line (0: none), part of the message)
        ("syntax", edit("port_max = 20099", "port_max = "), "", 8, ""),
        (
            "unknown key",
            edit("sip_udp", "sip_udpp"),
            "gw2.sip_udpp",
            2,
            "unknown field",
        ),
        (
            "bad address",
            edit("0.0.0.0:7001", "0.0.0.0"),
            "gw2.tunnel_listen",
            3,
            "address",
        ),
        (
            "wrong type",
            edit("port_min = 20000", "port_min = \"20000\""),
            "gw2.media.port_min",
            7,
            "expected u16",
        ),
        (
            "port out of range",
            edit("port_max = 20099", "port_max = 70000"),
            "gw2.media.port_max",
            8,
            "",
        ),
        (
            "bad family",
            edit("family = \"ipv4\"", "family = \"ipv5\""),
            "gw1.family",
            15,
            "ipv5",
        ),
        (
            "missing key",
            edit("tunnel_server_name = \"localhost\"\n", ""),
            "gw1",
            10,
            "tunnel_server_name",
        ),
        (
            "range upside down",
            edit("port_min = 20000", "port_min = 20200"),
            "gw2.media.port_min",
            7,
            "above port_max",
        ),
        (
            "odd first port",
            edit("port_min = 30000", "port_min = 30001"),
            "gw1.media.port_min",
            19,
            "odd",
        ),
        (
            "family mismatch",
            edit("next_hop = \"127.0.0.1:5080\"", "next_hop = \"[::1]:5080\""),
            "gw1.next_hop",
            14,
            "not an ipv4 address",
        ),
        (
            "unspecified media ip",
            edit("ip = \"192.0.2.1\"", "ip = \"0.0.0.0\""),
            "gw2.media.ip",
            6,
            "SDP",
        ),
        (
            "overlapping ranges",
            edit("ip = \"192.0.2.1\"", "ip = \"127.0.0.1\"").replace("30000", "20050"),
            "gw1.media.port_min",
            19,
            "overlaps",
        ),
        (
            "tunnel without port",
            edit(
                "tunnel = \"127.0.0.1:7001\"",
                "tunnel = \"gw2.example.net\"",
            ),
            "gw1.tunnel",
            11,
            "host:port",
        ),
        (
            "bad server name",
            edit("\"localhost\"", "\"not a name\""),
            "gw1.tunnel_server_name",
            12,
            "DNS name",
        ),
        (
            "tls listener",
            edit(
                "sip_udp = [\"0.0.0.0:5060\"]",
                "sip_tls = [\"0.0.0.0:5061\"]",
            ),
            "gw2.sip_tls",
            2,
            "not supported yet: gw2.sip_tls",
        ),
        (
            "no listener",
            edit("sip_udp = [\"0.0.0.0:5060\"]", "sip_udp = []"),
            "gw2",
            1,
            "no SIP listener",
        ),
        (
            "limits",
            format!("{BASE}\n[gw2.limits]\nmax_calls = 0\nmax_message_size = 100\n"),
            "gw2.limits.max_calls",
            23,
            "at least 1",
        ),
        (
            "tcp per-source cap above the total",
            format!("{BASE}\n[gw2.limits]\nmax_tcp_connections = 10\nmax_tcp_per_source = 20\n"),
            "gw2.limits.max_tcp_per_source",
            24,
            "above max_tcp_connections",
        ),
        (
            "tcp idle timeout",
            format!("{BASE}\n[gw2.limits]\ntcp_idle_timeout_secs = 0\n"),
            "gw2.limits.tcp_idle_timeout_secs",
            23,
            "at least 1",
        ),
        (
            "burst below rate",
            format!("{BASE}\n[gw2.limits]\ncalls_per_source = 30\ncalls_per_source_burst = 10\n"),
            "gw2.limits.calls_per_source_burst",
            24,
            "below the rate",
        ),
        (
            "ipv6 prefix",
            format!("{BASE}\n[gw2.limits]\nipv6_prefix_len = 200\n"),
            "gw2.limits.ipv6_prefix_len",
            23,
            "outside 16..=128",
        ),
        (
            "emergency reserve",
            format!("{BASE}\n[gw2.limits]\nemergency_reserve_percent = 90\n"),
            "gw2.limits.emergency_reserve_percent",
            23,
            "above 50",
        ),
        (
            "handshake timeout",
            format!("{BASE}\n[gw2.limits]\nhandshake_timeout_secs = 0\n"),
            "gw2.limits.handshake_timeout_secs",
            23,
            "at least 1",
        ),
        (
            "requests below calls",
            format!(
                "{BASE}\n[gw2.limits]\nrequests_per_source = 5\nrequests_per_source_burst = 5\n"
            ),
            "gw2.limits.requests_per_source",
            23,
            "below calls_per_source",
        ),
        (
            "auth",
            format!("{BASE}\n[policy]\nrequire_auth = false\n"),
            "policy.require_auth",
            23,
            "not supported yet: policy.require_auth",
        ),
        (
            "emergency number",
            format!("{BASE}\n[policy]\nemergency_numbers = [\"112\", \"eleven\"]\n"),
            "policy.emergency_numbers[1]",
            23,
            "dialable",
        ),
        (
            "unknown section",
            format!("{BASE}\n[gw3]\nx = 1\n"),
            "gw3",
            22,
            "unknown field",
        ),
        (
            "nothing to run",
            "[policy]\nemergency_numbers = []\n".to_owned(),
            "",
            0, // the document as a whole: no line
            "nothing to run",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, key, line, message) in cases {
        let errors = match Config::from_toml_str(&text) {
            Ok(_) => {
                failures.push(format!("{name}: parsed"));
                continue;
            }
            Err(e) => e,
        };
        let first = &errors.errors()[0];
        let want_line = (line > 0).then_some(line);
        if first.key != key || first.line != want_line || !first.message.contains(message) {
            failures.push(format!(
                "{name}: got {:?} line {:?} {:?}; want {key:?} line {line} {message:?}",
                first.key, first.line, first.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn semantic_errors_are_all_reported() {
    let text = format!("{BASE}\n[gw2.limits]\nmax_calls = 0\nmax_message_size = 100\n")
        .replace("port_min = 30000", "port_min = 30001");
    let errors = Config::from_toml_str(&text).unwrap_err();
    let keys: Vec<&str> = errors.errors().iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "gw2.limits.max_calls",
            "gw2.limits.max_message_size",
            "gw1.media.port_min"
        ]
    );
    let shown = errors.to_string();
    assert!(
        shown.contains("line 23: gw2.limits.max_calls: must be at least 1"),
        "{shown}"
    );
    assert!(
        shown.contains("line 24: gw2.limits.max_message_size"),
        "{shown}"
    );
}

/// Every key the gateway does not implement is refused where it is written, with its name, in
/// whatever form the table is written; nothing else is reported until it is removed.
#[test]
fn unimplemented_keys_are_refused() {
    let value = |key: &str| match key {
        "gw2.sip_tls" => "[\"0.0.0.0:5061\"]",
        "policy.require_auth" => "true",
        "policy.allowed_callers" | "policy.allowed_callees" => "[\"*\"]",
        _ => "\"x\"",
    };
    for (key, _) in NOT_SUPPORTED_YET {
        let (table, name) = key.rsplit_once('.').unwrap();
        for text in [
            // A [table] header after BASE (gw2 keys go into a fresh [gw2.x] table otherwise).
            if table == "gw2" {
                BASE.replacen("[gw2]\n", &format!("[gw2]\n{name} = {}\n", value(key)), 1)
            } else {
                format!("{BASE}\n[{table}]\n{name} = {}\n", value(key))
            },
            // A dotted key.
            match key.strip_prefix("gw2.") {
                Some(rest) => {
                    BASE.replacen("[gw2]\n", &format!("[gw2]\n{rest} = {}\n", value(key)), 1)
                }
                None => format!("{key} = {}\n{BASE}", value(key)),
            },
        ] {
            let errors = Config::from_toml_str(&text).unwrap_err();
            let e = &errors.errors()[0];
            assert_eq!(errors.errors().len(), 1, "{key}: {errors}");
            assert_eq!(e.key, *key, "{errors}");
            assert!(
                e.message.starts_with(&format!("not supported yet: {key}")),
                "{errors}"
            );
            let line = e.line.unwrap();
            let written = text.lines().nth(line - 1).unwrap();
            assert!(written.contains(name), "{key}: line {line} is {written:?}");
        }
        // The example, the help text and the man page never show a refused key as a setting.
        assert!(
            !EXAMPLE_CONFIG
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{name} ="))),
            "{key} in examples/sgw.toml"
        );
    }
}

#[test]
fn max_message_size_bounds() {
    for (size, ok) in [(1299, false), (1300, true), (65535, true), (65536, false)] {
        let text = format!("{BASE}\n[gw2.limits]\nmax_message_size = {size}\n");
        assert_eq!(Config::from_toml_str(&text).is_ok(), ok, "{size}");
    }
}

#[test]
fn line_of_counts_newlines() {
    assert_eq!(line_of("a\nb\nc", 0), 1);
    assert_eq!(line_of("a\nb\nc", 2), 2);
    assert_eq!(line_of("a\nb\nc", 4), 3);
    assert_eq!(line_of("a\nb\nc", 99), 3);
}
