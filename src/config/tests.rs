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
    let names: Vec<&str> = c.policy.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["emergency", "toll-fraud", "inside-out", "inbound-did"]
    );
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
            "needs sip_tls_cert and sip_tls_key",
        ),
        (
            "tls toward the next hop without a CA",
            edit(
                "sip_udp = [\"0.0.0.0:5060\"]",
                "sip_udp = [\"0.0.0.0:5060\"]\noutside_next_hop = \"192.0.2.1:5061\"\noutside_transport = \"tls\"\noutside_tls_server_name = \"sip.example\"",
            ),
            "gw2.outside_tls_ca",
            1,
            "needed by outside_transport",
        ),
        (
            "tls certificate without a listener",
            edit(
                "sip_udp = [\"0.0.0.0:5060\"]",
                "sip_udp = [\"0.0.0.0:5060\"]\nsip_tls_cert = \"gw2.pem\"",
            ),
            "gw2.sip_tls_cert",
            3,
            "without a sip_tls listener",
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
            "unknown field",
        ),
        (
            "auth prefix",
            format!("{BASE}\n[auth]\nrealm = \"r\"\ncredentials = \"/x\"\ntrusted_peers = [\"10.0.0.1/8\"]\n"),
            "auth.trusted_peers[0]",
            25,
            "host bits",
        ),
        (
            "rule auth without [auth]",
            format!("{BASE}\n[[policy.rules]]\nname = \"a\"\naction = \"allow\"\nauth = \"digest\"\n"),
            "policy.rules[0].auth",
            25,
            "needs an [auth] section",
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
    let value = |_key: &str| "\"x\"";
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

/// Three good rules after BASE (lines 22-41); the cases below edit them.
const RULES: &str = r#"
[[policy.rules]]
name = "emergency"
emergency = true
action = "allow"

[[policy.rules]]
name = "toll-fraud"
direction = "from_inside"
callee = ["00*", "+881*"]
action = "deny"
status = 403
cause = 21

[[policy.rules]]
name = "did"
direction = "from_outside"
source = ["0.0.0.0/0", "2001:db8::/32"]
callee = ["+49301234XXX"]
protocol = "sip"
action = "allow"
"#;

#[test]
fn good_rules_parse_and_compile() {
    let text = format!("{BASE}{RULES}");
    let c = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.policy.rules.len(), 3);
    assert!(c.policy.access_policy().is_active());
}

#[test]
fn bad_policies_name_key_and_line() {
    let rules = |from: &str, to: &str| {
        assert!(RULES.contains(from), "{from}");
        format!("{BASE}{}", RULES.replacen(from, to, 1))
    };
    let cases: Vec<(&str, String, &str, usize, &str)> = vec![
        (
            "unknown key",
            rules("protocol = \"sip\"", "protocols = \"sip\""),
            "policy.rules[2].protocols",
            40,
            "unknown field",
        ),
        (
            "duplicate name",
            rules("name = \"did\"", "name = \"toll-fraud\""),
            "policy.rules[2].name",
            36,
            "duplicate name \"toll-fraud\"",
        ),
        (
            "bad CIDR",
            rules("\"2001:db8::/32\"", "\"2001:db8::1/32\""),
            "policy.rules[2].source[1]",
            38,
            "host bits",
        ),
        (
            "bad pattern",
            rules("\"+881*\"", "\"+8*81\""),
            "policy.rules[1].callee[1]",
            30,
            "only allowed at the end",
        ),
        (
            "bad status",
            rules("status = 403", "status = 200"),
            "policy.rules[1].status",
            32,
            "400-699",
        ),
        (
            "bad cause",
            rules("cause = 21", "cause = 128"),
            "policy.rules[1].cause",
            33,
            "1-127",
        ),
        (
            "status on an allow rule",
            rules("protocol = \"sip\"", "protocol = \"sip\"\nstatus = 404"),
            "policy.rules[2].status",
            41,
            "only for action = \"deny\"",
        ),
        (
            "bad direction",
            rules("\"from_inside\"", "\"inbound\""),
            "policy.rules[1].direction",
            29,
            "unknown variant",
        ),
        (
            "missing action",
            rules("action = \"deny\"\n", ""),
            "policy.rules[1]",
            27,
            "action",
        ),
        (
            "unreachable rule",
            rules("direction = \"from_outside\"\nsource = [\"0.0.0.0/0\", \"2001:db8::/32\"]\ncallee = [\"+49301234XXX\"]", "direction = \"from_inside\"\nsource = [\"10.0.0.0/8\"]\ncallee = [\"0049XXX\"]"),
            "policy.rules[2].name",
            36,
            "\"did\" is unreachable: every call it matches is matched first by rule \"toll-fraud\", which denies what this rule would allow",
        ),
        (
            "identical matchers, conflicting actions",
            format!(
                "{BASE}{RULES}\n[[policy.rules]]\nname = \"no-did\"\ndirection = \"from_outside\"\nsource = [\"0.0.0.0/0\", \"2001:db8::/32\"]\ncallee = [\"+49301234XXX\"]\nprotocol = \"sip\"\naction = \"deny\"\n"
            ),
            "policy.rules[3].name",
            44,
            "matched first by rule \"did\", which allows what this rule would deny",
        ),
        (
            "reserved name",
            rules("name = \"did\"", "name = \"default-deny\""),
            "policy.rules[2].name",
            36,
            "reserved",
        ),
        (
            "empty list",
            rules("callee = [\"+49301234XXX\"]", "callee = []"),
            "policy.rules[2].callee",
            39,
            "omit the key",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, key, line, part) in &cases {
        match Config::from_toml_str(text) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(errors) => {
                let e = &errors.errors()[0];
                if e.key != *key || e.line != Some(*line) || !e.message.contains(part) {
                    failures.push(format!(
                        "{name}: got {errors}, want line {line} key {key} with {part:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn media_latching_keys() {
    // Unset: the side's default mode (chosen in the engine wiring) and 2 s.
    let c = Config::from_toml_str(BASE).unwrap();
    let (gw2, gw1) = (c.gw2.unwrap(), c.gw1.unwrap());
    assert_eq!((gw2.media.latch, gw1.media.latch), (None, None));
    assert_eq!(gw2.media.relatch_idle_ms, DEFAULT_RELATCH_IDLE_MS);
    for (word, mode) in [
        ("sdp", LatchMode::Sdp),
        ("signalling", LatchMode::Signalling),
        ("any", LatchMode::Any),
    ] {
        let text = edit(
            "port_max = 20099\n",
            &format!("port_max = 20099\nlatch = \"{word}\"\nrelatch_idle_ms = 5000\n"),
        );
        let c = Config::from_toml_str(&text).unwrap();
        let m = c.gw2.unwrap().media;
        assert_eq!((m.latch, m.relatch_idle_ms), (Some(mode), 5000));
    }
    let text = edit("port_max = 30099\n", "port_max = 30099\nlatch = \"sdp\"\n");
    assert_eq!(
        Config::from_toml_str(&text)
            .unwrap()
            .gw1
            .unwrap()
            .media
            .latch,
        Some(LatchMode::Sdp)
    );
}

#[test]
fn bad_media_latching_keys_name_key_and_line() {
    for (text, key, line, message) in [
        (
            edit("port_max = 20099\n", "port_max = 20099\nlatch = \"nat\"\n"),
            "gw2.media.latch",
            9,
            "unknown variant",
        ),
        (
            edit(
                "port_max = 30099\n",
                "port_max = 30099\nrelatch_idle_ms = 0\n",
            ),
            "gw1.media.relatch_idle_ms",
            21,
            "outside 100-3600000",
        ),
        (
            edit(
                "port_max = 20099\n",
                "port_max = 20099\nrelatch_idle_ms = 3600001\n",
            ),
            "gw2.media.relatch_idle_ms",
            9,
            "outside 100-3600000",
        ),
        (
            edit(
                "port_max = 20099\n",
                "port_max = 20099\nrelatch_idle_secs = 2\n",
            ),
            "gw2.media.relatch_idle_secs",
            9,
            "unknown field",
        ),
    ] {
        let errors = Config::from_toml_str(&text).unwrap_err();
        let e = &errors.errors()[0];
        assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{errors}");
        assert!(e.message.contains(message), "{errors}");
    }
    for (ms, ok) in [(99, false), (100, true), (3_600_000, true)] {
        let text = edit(
            "port_max = 20099\n",
            &format!("port_max = 20099\nrelatch_idle_ms = {ms}\n"),
        );
        assert_eq!(Config::from_toml_str(&text).is_ok(), ok, "{ms}");
    }
}

#[test]
fn metrics_section() {
    assert_eq!(Config::from_toml_str(BASE).unwrap().metrics, None);
    let text = format!("{BASE}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n");
    assert_eq!(
        Config::from_toml_str(&text).unwrap().metrics,
        Some(MetricsConfig {
            listen: "127.0.0.1:9464".parse().unwrap()
        })
    );
    // BASE has 20 lines and ends with a newline: [metrics] is on line 22.
    for (lines, key, line, message) in [
        (
            "listen = \"127.0.0.1:0\"",
            "metrics.listen",
            23,
            "fixed port",
        ),
        (
            "listen = \"224.0.0.1:9464\"",
            "metrics.listen",
            23,
            "multicast",
        ),
        (
            "listen = \"localhost:9464\"",
            "metrics.listen",
            23,
            "invalid",
        ),
        (
            "listen = \"127.0.0.1:9464\"\npath = \"/m\"",
            "metrics.path",
            24,
            "unknown field",
        ),
        ("", "metrics", 22, "missing field `listen`"),
    ] {
        let text = format!("{BASE}\n[metrics]\n{lines}\n");
        let errors = Config::from_toml_str(&text).unwrap_err();
        let e = &errors.errors()[0];
        assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{errors}");
        assert!(e.message.contains(message), "{errors}");
    }
}

#[test]
fn auth_and_registration_sections() {
    let c = Config::from_toml_str(EXAMPLE_CONFIG).unwrap();
    let a = c.auth.as_ref().unwrap();
    assert_eq!(a.realm, "sip.example.net");
    assert_eq!(a.algorithms, ["SHA-256", "MD5"]);
    assert!(a.require);
    let r = c.gw2.as_ref().unwrap().registration.as_ref().unwrap();
    let e = r.engine_registration().unwrap();
    assert_eq!(e.domain, "sip.provider.example");
    assert_eq!(e.credentials.user, "4930123456");
    assert_eq!(e.expires, 3600);
    // The example's HA1 values are those `sgw auth ha1` prints for its password.
    assert_eq!(
        crate::engine::auth::Credentials::line("4930123456", "sip.provider.example", "change-me"),
        format!(
            "4930123456:sip.provider.example:{}:{}",
            r.ha1_md5.as_deref().unwrap(),
            r.ha1_sha256.as_deref().unwrap()
        )
    );
    // A credentials file is read at start, not by check-config.
    let err = a.digest_config([0; 32]).unwrap_err();
    assert!(err.contains("/etc/sgw/digest.ha1"), "{err}");
}

#[test]
fn bad_auth_and_registration_keys_name_key_and_line() {
    let reg = |lines: &str| {
        BASE.replacen(
            "[gw2.media]",
            &format!("[gw2.registration]\nregistrar = \"198.51.100.20:5060\"\nuser = \"trunk\"\n{lines}\n[gw2.media]"),
            1,
        )
    };
    let auth =
        |lines: &str| format!("{BASE}\n[auth]\nrealm = \"r\"\ncredentials = \"/x\"\n{lines}\n");
    for (text, key, message) in [
        (
            reg(""),
            "gw2.registration.password",
            "a password, or ha1_md5",
        ),
        (
            reg("password = \"a\"\nha1_md5 = \"00000000000000000000000000000000\""),
            "gw2.registration.password",
            "not both",
        ),
        (
            reg("ha1_md5 = \"abc\""),
            "gw2.registration.ha1_md5",
            "32 hex",
        ),
        (
            reg("password = \"a\"\nexpires = 5"),
            "gw2.registration.expires",
            "10..=86400",
        ),
        (
            reg("password = \"a\"\nrealm = \"x\""),
            "gw2.registration.realm",
            "unknown field",
        ),
        (
            auth("algorithms = [\"SHA-512\"]"),
            "auth.algorithms[0]",
            "only",
        ),
        (auth("algorithms = []"), "auth.algorithms", "at least one"),
        (auth("max_failures = 0"), "auth.max_failures", "1..=100"),
        (
            auth("nonce_lifetime_secs = 1"),
            "auth.nonce_lifetime_secs",
            "10..=86400",
        ),
    ] {
        let errors = Config::from_toml_str(&text).unwrap_err();
        let e = &errors.errors()[0];
        assert_eq!(e.key, key, "{errors}\n{text}");
        assert!(e.message.contains(message), "{errors}");
        assert!(e.line.is_some(), "{errors}");
    }
    // A registrar of the other family than GW2's SIP address.
    let text = reg("password = \"a\"").replace("198.51.100.20:5060", "[2001:db8::20]:5060");
    let errors = Config::from_toml_str(&text).unwrap_err();
    assert_eq!(
        errors.errors()[0].key,
        "gw2.registration.registrar",
        "{errors}"
    );
    assert!(errors.errors()[0].message.contains("family"), "{errors}");
    // [auth] without [gw2]: GW1 never challenges.
    let gw1_only = "[gw1]\ntunnel = \"gw2:7001\"\ntunnel_server_name = \"gw2\"\nsip_bind = \"10.0.0.5:5060\"\nnext_hop = \"10.0.0.20:5060\"\nfamily = \"ipv4\"\n[gw1.media]\nip = \"10.0.0.5\"\nport_min = 30000\nport_max = 30099\n[auth]\nrealm = \"r\"\ncredentials = \"/x\"\n";
    let errors = Config::from_toml_str(gw1_only).unwrap_err();
    assert_eq!(errors.errors()[0].key, "auth", "{errors}");
}

#[test]
fn gatekeeper_section() {
    let c = Config::from_toml_str(EXAMPLE_CONFIG).unwrap();
    let g = c.gw1.as_ref().unwrap().gatekeeper.as_ref().unwrap();
    assert_eq!(g.address, "[2001:db8:10::30]:1719".parse().unwrap());
    assert!(g.discover);
    // Defaults.
    let text = format!("{BASE}\n[gw1.gatekeeper]\naddress = \"127.0.0.1:1719\"\n");
    let c = Config::from_toml_str(&text).unwrap();
    let g = c.gw1.unwrap().gatekeeper.unwrap();
    assert!(g.discover);
    assert_eq!(g.h323_id, "sgw-gw1");
    assert!(g.e164.is_empty() && g.gatekeeper_id.is_none() && g.bind.is_none());
    assert_eq!(g.time_to_live_secs, 300);
    let inside: std::net::SocketAddr = "127.0.0.1:5070".parse().unwrap();
    assert_eq!(g.bind_address(inside), "127.0.0.1:0".parse().unwrap());
    let r = g.ras_config("127.0.0.1:4000".parse().unwrap(), inside);
    assert_eq!(r.gatekeeper, g.address);
    assert_eq!(r.time_to_live, 300);
}

#[test]
fn bad_gatekeeper_keys_name_key_and_line() {
    let gk =
        |lines: &str| format!("{BASE}\n[gw1.gatekeeper]\naddress = \"127.0.0.1:1719\"\n{lines}\n");
    for (text, key, message) in [
        (
            format!("{BASE}\n[gw1.gatekeeper]\naddress = \"[::1]:1719\"\n"),
            "gw1.gatekeeper.address",
            "not an ipv4 address",
        ),
        (
            format!("{BASE}\n[gw1.gatekeeper]\naddress = \"0.0.0.0:1719\"\n"),
            "gw1.gatekeeper.address",
            "not an address",
        ),
        (
            format!("{BASE}\n[gw1.gatekeeper]\naddress = \"127.0.0.1:0\"\n"),
            "gw1.gatekeeper.address",
            "not an address",
        ),
        (gk("bind = \"[::1]:0\""), "gw1.gatekeeper.bind", "ipv4"),
        (gk("h323_id = \"\""), "gw1.gatekeeper.h323_id", "1-256"),
        (
            gk("gatekeeper_id = \"a\\u0007\""),
            "gw1.gatekeeper.gatekeeper_id",
            "control",
        ),
        (
            gk("e164 = [\"12a\"]"),
            "gw1.gatekeeper.e164[0]",
            "not a number",
        ),
        (
            gk("time_to_live_secs = 0"),
            "gw1.gatekeeper.time_to_live_secs",
            "1..=86400",
        ),
        (gk("ttl = 5"), "gw1.gatekeeper.ttl", "unknown field"),
        (
            format!("{BASE}\n[gw1.gatekeeper]\ndiscover = true\n"),
            "gw1.gatekeeper",
            "address",
        ),
    ] {
        let errors = Config::from_toml_str(&text).unwrap_err();
        let e = &errors.errors()[0];
        assert_eq!(e.key, key, "{errors}\n{text}");
        assert!(e.message.contains(message), "{errors}");
        assert!(e.line.is_some(), "{errors}");
    }
}

/// BASE with its single GW2 replaced by `[[gw1.gw2]]` entries (written after `[gw1]`'s keys).
fn several_gw2(entries: &[(&str, &str)], extra_gw1: &str) -> String {
    let list: String = entries
        .iter()
        .map(|(t, n)| format!("[[gw1.gw2]]\ntunnel = \"{t}\"\ntunnel_server_name = \"{n}\"\n"))
        .collect();
    BASE.replace(
        "tunnel = \"127.0.0.1:7001\"\ntunnel_server_name = \"localhost\"\n",
        "",
    )
    .replace(
        "family = \"ipv4\"\n",
        &format!("family = \"ipv4\"\n{extra_gw1}{list}"),
    )
}

#[test]
fn gw1_with_several_gw2s() {
    let text = several_gw2(
        &[("10.0.0.2:7001", "gw2-a"), ("10.0.0.3:7001", "gw2-b")],
        "",
    );
    let c = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let gw1 = c.gw1.unwrap();
    let peers = gw1.peers();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[1].tunnel, "10.0.0.3:7001");
    assert_eq!(peers[1].tunnel_server_name, "gw2-b");
    // 30000-30099 cut in two even-aligned halves.
    assert_eq!(gw1.media_slices(), [(30000, 30049), (30050, 30099)]);
    // The single form is one peer.
    let c = Config::from_toml_str(BASE).unwrap();
    let gw1 = c.gw1.unwrap();
    assert_eq!(gw1.peers().len(), 1);
    assert_eq!(gw1.media_slices(), [(30000, 30099)]);
}

#[test]
fn media_slices_are_even_aligned_and_within_the_range() {
    assert_eq!(
        media_slices(30000, 30099, 3),
        [(30000, 30031), (30032, 30063), (30064, 30095)]
    );
    assert_eq!(media_slices(30000, 30002, 2), []);
    assert_eq!(
        media_slices(30000, 30003, 2),
        [(30000, 30001), (30002, 30003)]
    );
    assert_eq!(media_slices(30000, 30003, 0), []);
    assert_eq!(media_slices(65530, 65535, 1), [(65530, 65535)]);
    for n in 1..=16 {
        for (lo, hi) in media_slices(1000, 1999, n) {
            assert_eq!(lo % 2, 0);
            assert_eq!((hi - lo + 1) % 2, 0);
            assert!((1000..=1999).contains(&lo) && (1000..=1999).contains(&hi));
        }
    }
}

#[test]
fn several_gw2s_refusals_name_key_and_line() {
    let two = [("10.0.0.2:7001", "gw2-a"), ("10.0.0.3:7001", "gw2-b")];
    let cases: Vec<(String, &str, &str)> = vec![
        (
            several_gw2(&two, "tunnel = \"10.0.0.9:7001\"\n"),
            "gw1.tunnel",
            "not both",
        ),
        (
            several_gw2(&[("10.0.0.2:7001", "a"), ("10.0.0.2:7001", "b")], ""),
            "gw1.gw2[1].tunnel",
            "listed twice",
        ),
        (
            several_gw2(&[("10.0.0.2", "a"), ("10.0.0.3:7001", "b")], ""),
            "gw1.gw2[0].tunnel",
            "host:port",
        ),
        (
            several_gw2(
                &[("10.0.0.2:7001", "a"), ("10.0.0.3:7001", "not a name")],
                "",
            ),
            "gw1.gw2[1].tunnel_server_name",
            "DNS name",
        ),
        (
            several_gw2(&two, "protocol = \"h323\"\n"),
            "gw1.protocol",
            "not supported yet",
        ),
        (
            several_gw2(&two, "transport = \"tcp\"\n"),
            "gw1.transport",
            "not supported yet",
        ),
        (
            several_gw2(&two, "").replace("port_max = 30099", "port_max = 30006"),
            "gw1.media.port_max",
            "at least 4",
        ),
        (
            format!("{}[recording]\ndir = \"/tmp/r\"\n", several_gw2(&two, "")),
            "recording",
            "not supported yet",
        ),
        (
            several_gw2(&two, "").replace(
                "[[gw1.gw2]]\ntunnel = \"10.0.0.3:7001\"\n",
                "[[gw1.gw2]]\ntunnel = \"10.0.0.3:7001\"\nweight = 2\n",
            ),
            "gw1.gw2",
            "unknown field",
        ),
        (
            BASE.replace("tunnel = \"127.0.0.1:7001\"\n", ""),
            "gw1",
            "missing field `tunnel`",
        ),
    ];
    for (text, key, needle) in cases {
        let errs = Config::from_toml_str(&text).expect_err(&text);
        let e = errs
            .errors()
            .iter()
            .find(|e| e.key.starts_with(key) && e.message.contains(needle))
            .unwrap_or_else(|| panic!("no {key}: {needle} in {errs}\n{text}"));
        let line = e.line.unwrap_or_else(|| panic!("no line: {e}"));
        assert!(line > 1 && line <= text.lines().count(), "{e}");
    }
    // [gw1.gatekeeper] and [gw1.records] are refused the same way.
    let text = format!(
        "{}[gw1.records]\ndir = \"/tmp/r\"\nkey = \"/tmp/k\"\n",
        several_gw2(&two, "")
    );
    let errs = Config::from_toml_str(&text).expect_err(&text);
    assert!(
        errs.to_string().contains("gw1.records: not supported yet"),
        "{errs}"
    );
}
