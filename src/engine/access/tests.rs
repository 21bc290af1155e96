#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use crate::engine::calls::{CallProtocol, Direction, NewCall};
use crate::engine::Family;

/// The rules as TOML `[[policy.rules]]` tables.
fn policy(toml_text: &str) -> AccessPolicy {
    #[derive(Deserialize)]
    struct Doc {
        rules: Vec<RuleConfig>,
    }
    let doc: Doc = toml::from_str(toml_text).unwrap();
    AccessPolicy::compile(&doc.rules).unwrap_or_else(|e| panic!("{e:?}"))
}

fn problems(toml_text: &str) -> Vec<RuleProblem> {
    #[derive(Deserialize)]
    struct Doc {
        rules: Vec<RuleConfig>,
    }
    let doc: Doc = toml::from_str(toml_text).unwrap();
    AccessPolicy::compile(&doc.rules).expect_err("policy should be refused")
}

struct Case {
    direction: Direction,
    protocol: CallProtocol,
    source: &'static str,
    calling: &'static str,
    called: &'static str,
    emergency: bool,
    /// The deciding rule, and whether it allows.
    rule: &'static str,
    allowed: bool,
}

fn call(c: &Case) -> NewCall {
    let source: Option<IpAddr> = (!c.source.is_empty()).then(|| c.source.parse().unwrap());
    NewCall {
        direction: c.direction,
        protocol: c.protocol,
        family: source.map_or(Family::V4, Family::of),
        source,
        calling: c.calling.to_owned(),
        called: c.called.to_owned(),
        emergency: c.emergency,
        digest: None,
    }
}

const RULES: &str = r#"
[[rules]]
name = "emergency"
emergency = true
action = "allow"

[[rules]]
name = "banned-net"
direction = "from_outside"
source = ["192.0.2.0/24", "2001:db8:bad::/48"]
action = "deny"
status = 603
cause = 21

[[rules]]
name = "toll-fraud"
direction = "from_inside"
callee = ["00*", "+881*", "1900XXXXXXX"]
action = "deny"

[[rules]]
name = "inside-out"
direction = "from_inside"
source = ["10.0.0.0/8", "fd00::/8"]
action = "allow"

[[rules]]
name = "did"
direction = "from_outside"
callee = ["+49301234XXX", "alice"]
action = "allow"

[[rules]]
name = "h323-trunk"
protocol = "h323"
source = ["198.51.100.7"]
caller = ["+4940*"]
action = "allow"
"#;

#[test]
fn rules_decide_first_match_wins() {
    use CallProtocol::{Sip, H323};
    use Direction::{FromInside as In, FromOutside as Out};
    let case = |direction, protocol, source, calling, called, emergency, rule, allowed| Case {
        direction,
        protocol,
        source,
        calling,
        called,
        emergency,
        rule,
        allowed,
    };
    let cases = [
        // Emergency first, whatever the source or direction.
        case(Out, Sip, "192.0.2.9", "x", "112", true, "emergency", true),
        case(In, Sip, "10.1.2.3", "201", "112", true, "emergency", true),
        // CIDR v4 and v6; the v6 prefix is a /48.
        case(
            Out,
            Sip,
            "192.0.2.9",
            "x",
            "+49301234567",
            false,
            "banned-net",
            false,
        ),
        case(
            Out,
            Sip,
            "2001:db8:bad:1::5",
            "x",
            "+49301234567",
            false,
            "banned-net",
            false,
        ),
        case(
            Out,
            Sip,
            "2001:db8:bae::5",
            "x",
            "+49301234567",
            false,
            "did",
            true,
        ),
        // An IPv4-mapped IPv6 source is the IPv4 address.
        case(
            Out,
            Sip,
            "::ffff:192.0.2.1",
            "x",
            "alice",
            false,
            "banned-net",
            false,
        ),
        // Direction: the toll rule is for inside callers only.
        case(
            In,
            Sip,
            "10.0.0.10",
            "201",
            "0044123",
            false,
            "toll-fraud",
            false,
        ),
        case(
            In,
            Sip,
            "10.0.0.10",
            "201",
            "+88112345",
            false,
            "toll-fraud",
            false,
        ),
        case(
            In,
            Sip,
            "10.0.0.10",
            "201",
            "19001234567",
            false,
            "toll-fraud",
            false,
        ),
        // X is exactly one digit.
        case(
            In,
            Sip,
            "10.0.0.10",
            "201",
            "1900123456",
            false,
            "inside-out",
            true,
        ),
        case(
            In,
            Sip,
            "fd00::10",
            "201",
            "+4930999",
            false,
            "inside-out",
            true,
        ),
        case(
            In,
            Sip,
            "172.16.0.1",
            "201",
            "+4930999",
            false,
            DEFAULT_DENY,
            false,
        ),
        // Patterns: the DID range, visual separators dropped, exact user names.
        case(
            Out,
            Sip,
            "203.0.113.5",
            "x",
            "+49301234000",
            false,
            "did",
            true,
        ),
        case(
            Out,
            Sip,
            "203.0.113.5",
            "x",
            "+49-30-1234-999",
            false,
            "did",
            true,
        ),
        case(
            Out,
            Sip,
            "203.0.113.5",
            "x",
            "+4930123400",
            false,
            DEFAULT_DENY,
            false,
        ),
        case(
            Out,
            Sip,
            "203.0.113.5",
            "x",
            "+493012340000",
            false,
            DEFAULT_DENY,
            false,
        ),
        case(
            Out,
            Sip,
            "203.0.113.5",
            "x",
            "+49301234a00",
            false,
            DEFAULT_DENY,
            false,
        ),
        case(Out, Sip, "203.0.113.5", "x", "alice", false, "did", true),
        case(
            Out,
            Sip,
            "203.0.113.5",
            "x",
            "Alice",
            false,
            DEFAULT_DENY,
            false,
        ),
        case(
            Out,
            Sip,
            "203.0.113.5",
            "x",
            "00",
            false,
            DEFAULT_DENY,
            false,
        ),
        // Protocol, source and caller together.
        case(
            Out,
            H323,
            "198.51.100.7",
            "+4940555",
            "999",
            false,
            "h323-trunk",
            true,
        ),
        case(
            Out,
            Sip,
            "198.51.100.7",
            "+4940555",
            "999",
            false,
            DEFAULT_DENY,
            false,
        ),
        case(
            Out,
            H323,
            "198.51.100.8",
            "+4940555",
            "999",
            false,
            DEFAULT_DENY,
            false,
        ),
        case(
            Out,
            H323,
            "198.51.100.7",
            "+4941555",
            "999",
            false,
            DEFAULT_DENY,
            false,
        ),
        // No source known (handed over by the other half): source rules do not match.
        case(Out, H323, "", "+4940555", "999", false, DEFAULT_DENY, false),
    ];
    let mut p = policy(RULES);
    let mut problems = Vec::new();
    for c in &cases {
        let got = p.decide(&call(c));
        let rule = p.take_decided().map(|r| r.to_string());
        let ok = got.is_ok() == c.allowed && rule.as_deref() == Some(c.rule);
        if !ok {
            problems.push(format!(
                "{:?} {:?} from {} {} -> {}: got {got:?} by {rule:?}, want {} by {}",
                c.direction,
                c.protocol,
                c.source,
                c.calling,
                c.called,
                if c.allowed { "allow" } else { "deny" },
                c.rule
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The deny's status and cause are the rule's; the implicit deny's are 403 and 21.
    let banned = call(&cases[2]);
    match p.decide(&banned) {
        Err(Refusal::Denied(d)) => {
            assert_eq!((d.status, d.cause), (603, Cause(21)));
            assert_eq!(p.name(d.rule), "banned-net");
        }
        other => panic!("{other:?}"),
    }
    match p.decide(&call(&cases[11])) {
        Err(Refusal::Denied(d)) => {
            assert_eq!(
                (d.status, d.cause, d.rule),
                (403, Cause(21), Denial::IMPLICIT)
            );
            assert_eq!(p.name(d.rule), DEFAULT_DENY);
        }
        other => panic!("{other:?}"),
    }
    let c = p.counters();
    assert_eq!(
        c["emergency"],
        RuleCounters {
            allowed: 2,
            denied: 0
        }
    );
    assert_eq!(
        c["banned-net"],
        RuleCounters {
            allowed: 0,
            denied: 4
        }
    );
    assert_eq!(c["toll-fraud"].denied, 3);
    assert_eq!(c[DEFAULT_DENY].denied, 11);
}

#[test]
fn without_rules_every_call_passes_and_nothing_is_named() {
    let mut p = AccessPolicy::default();
    let c = Case {
        direction: Direction::FromOutside,
        protocol: CallProtocol::Sip,
        source: "192.0.2.1",
        calling: "a",
        called: "b",
        emergency: false,
        rule: "",
        allowed: true,
    };
    assert_eq!(p.decide(&call(&c)), Ok(()));
    assert!(p.take_decided().is_none());
    assert!(p.counters().is_empty());
    assert!(!p.is_active());
}

#[test]
fn patterns() {
    for (pat, yes, no) in [
        ("*", &["", "1", "alice"][..], &[][..]),
        ("00*", &["00", "0049", "00-44-1"], &["0", "01", "+00"]),
        ("XXX", &["123", "1-2-3"], &["12", "1234", "12a", "abc"]),
        ("+1 (800) XXX-XXXX", &["+18005551234"], &["18005551234"]),
        ("first.last", &["first.last"], &["firstlast"]),
        ("#31#*", &["#31#0049"], &["31#"]),
    ] {
        let p = Pattern::parse(pat).unwrap();
        for v in yes {
            assert!(p.matches(v), "{pat:?} should match {v:?}");
        }
        for v in no {
            assert!(!p.matches(v), "{pat:?} should not match {v:?}");
        }
    }
    for bad in ["", "0*0", "**", "a\tb", "a b"] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn pattern_and_prefix_containment() {
    let p = |s| Pattern::parse(s).unwrap();
    assert!(p("00*").covers(&p("0044*")));
    assert!(p("00*").covers(&p("00")));
    assert!(p("0XX").covers(&p("012")));
    assert!(p("XXX*").covers(&p("1234")));
    assert!(!p("0044*").covers(&p("00*")));
    assert!(!p("012").covers(&p("0XX")));
    assert!(!p("00").covers(&p("00*")));
    assert!(!p("XX").covers(&p("ab")));
    let c = |s| Cidr::parse(s).unwrap();
    assert!(c("10.0.0.0/8").covers(&c("10.1.0.0/16")));
    assert!(c("10.0.0.0/8").covers(&c("10.1.2.3")));
    assert!(!c("10.1.0.0/16").covers(&c("10.0.0.0/8")));
    assert!(!c("0.0.0.0/0").covers(&c("::/0")));
    assert!(c("2001:db8::/32").covers(&c("2001:db8:1::/48")));
    assert!(c("0.0.0.0/0").contains("203.0.113.1".parse().unwrap()));
    assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
    for bad in [
        "10.0.0.1/8",
        "10.0.0.0/33",
        "2001:db8::1/32",
        "ten",
        "10.0.0.0/x",
        "",
    ] {
        assert!(Cidr::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn unreachable_rules_name_the_rule_that_shadows_them() {
    let cases = [
        // Identical matchers, conflicting actions.
        (
            "[[rules]]\nname = \"a\"\ncallee = [\"00*\"]\naction = \"deny\"\n[[rules]]\nname = \"b\"\ncallee = [\"00*\"]\naction = \"allow\"\n",
            "denies what this rule would allow",
        ),
        // A narrower prefix, source, direction and protocol behind a wider rule.
        (
            "[[rules]]\nname = \"a\"\ncallee = [\"00*\"]\naction = \"deny\"\n[[rules]]\nname = \"b\"\ndirection = \"from_inside\"\nprotocol = \"sip\"\nsource = [\"10.0.0.0/8\"]\ncallee = [\"0044*\", \"001XXX\"]\naction = \"allow\"\n",
            "matched first by rule \"a\"",
        ),
        // Any call behind a rule matching all of v4 and v6.
        (
            "[[rules]]\nname = \"a\"\nsource = [\"0.0.0.0/0\", \"::/0\"]\naction = \"allow\"\n[[rules]]\nname = \"b\"\naction = \"deny\"\n",
            "allows what this rule would deny",
        ),
        // A catch-all rule shadows everything after it.
        (
            "[[rules]]\nname = \"all\"\naction = \"allow\"\n[[rules]]\nname = \"b\"\nemergency = true\naction = \"allow\"\n",
            "matched first by rule \"all\"",
        ),
    ];
    for (text, want) in cases {
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "policy.rules[1].name");
        assert!(
            p[0].1.contains("unreachable") && p[0].1.contains(want),
            "{p:?}"
        );
    }
    // Overlapping but each reachable: accepted.
    policy(
        "[[rules]]\nname = \"a\"\nsource = [\"0.0.0.0/0\"]\naction = \"allow\"\n[[rules]]\nname = \"b\"\ncallee = [\"00*\"]\naction = \"deny\"\n",
    );
}

/// The link's place in the chain: after the tunnel (a call the tunnel refuses is not decided
/// or counted), before the cap (a denied call takes no slot); an allowed call's record names
/// its rule.
#[test]
fn the_access_link_sits_between_tunnel_and_cap() {
    use crate::engine::calls::CallTable;
    use crate::engine::media::MediaCounters;
    use crate::engine::{Emergency, Side};
    use std::time::Duration;
    let mut t = CallTable::new(1, Emergency::default());
    t.access = policy(RULES);
    let now = Duration::ZERO;
    let mut c = call(&Case {
        direction: Direction::FromOutside,
        protocol: CallProtocol::Sip,
        source: "192.0.2.9",
        calling: "x",
        called: "+49301234567",
        emergency: false,
        rule: "",
        allowed: false,
    });
    assert_eq!(
        t.admit(now, Side::Outside, &c, false),
        Err(Refusal::TunnelDown)
    );
    assert!(t.access.take_decided().is_none());
    assert_eq!(t.access.counters()["banned-net"].denied, 0);
    assert!(matches!(
        t.admit(now, Side::Outside, &c, true),
        Err(Refusal::Denied(_))
    ));
    assert_eq!(t.len(), 0);
    assert_eq!(t.live(), 0);
    c.source = Some("203.0.113.1".parse().unwrap());
    let r = t.admit(now, Side::Outside, &c, true).unwrap();
    let rec = t
        .end(now, r, Cause::NORMAL_CLEARING, MediaCounters::default())
        .unwrap();
    assert_eq!(rec.rule.as_deref(), Some("did"));
}
