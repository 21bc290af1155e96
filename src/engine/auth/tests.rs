#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use crate::engine::calls::{CallTable, Emergency};
use crate::engine::{Family, Side};
use codecs::meta::{CallRef, Cause};

// RFC 7616 section 3.9.1: the same request with MD5 and with SHA-256.
const USER: &str = "Mufasa";
const REALM: &str = "http-auth@example.org";
const PASSWORD: &str = "Circle of Life";
const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

#[test]
fn rfc_7616_test_vectors() {
    let md5 = Algorithm::Md5.ha1(USER, REALM, PASSWORD);
    assert_eq!(
        Algorithm::Md5.response(
            &md5,
            NONCE,
            "00000001",
            CNONCE,
            "auth",
            "GET",
            "/dir/index.html"
        ),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    let sha = Algorithm::Sha256.ha1(USER, REALM, PASSWORD);
    assert_eq!(
        Algorithm::Sha256.response(
            &sha,
            NONCE,
            "00000001",
            CNONCE,
            "auth",
            "GET",
            "/dir/index.html"
        ),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn rfc_2617_test_vector() {
    let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    assert_eq!(
        Algorithm::Md5.response(
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            "GET",
            "/dir/index.html"
        ),
        "6629fae49393a05397450978507c4ef1"
    );
}

#[test]
fn credentials_file_holds_ha1_values_only() {
    let line = Credentials::line("alice", "sgw", "secret");
    let c = Credentials::parse(&format!(
        "# comment\n\n{line}\nbob:sgw::{}\n",
        "a".repeat(64)
    ))
    .unwrap();
    assert_eq!(c.len(), 2);
    assert!(c.get("bob", "sgw").unwrap().md5.is_none());
    for (bad, why) in [
        ("alice:sgw:secret:", "32 hex digits"),
        ("alice:sgw", "4 fields"),
        ("alice:sgw::", "no HA1"),
        (":sgw:00000000000000000000000000000000:", "empty"),
    ] {
        let e = Credentials::parse(bad).unwrap_err();
        assert!(e.contains("line 1") && e.contains(why), "{bad}: {e}");
    }
    let dup = format!("{line}\n{line}\n");
    assert!(Credentials::parse(&dup).unwrap_err().contains("line 2"));
}

#[test]
fn authorization_values_parse() {
    let p = DigestParams::parse(
        "Digest username=\"al\\\"ice\", realm=\"sgw\",nonce=\"n\", uri=\"sip:b@x\", \
         response=\"r\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c\"",
    )
    .unwrap();
    assert_eq!(p.get("username"), Some("al\"ice"));
    assert_eq!(p.get("algorithm"), Some("SHA-256"));
    assert_eq!(p.get("nc"), Some("00000001"));
    assert_eq!(p.get("cnonce"), Some("c"));
    assert!(DigestParams::parse("Basic YWxhZGRpbjpvcGVuc2VzYW1l").is_none());
    assert!(DigestParams::parse("Digest username=\"unterminated").is_none());
    assert!(DigestParams::parse("Digestusername=x").is_none());
}

const IP: [u8; 4] = [192, 0, 2, 7];
const URI: &str = "sip:1234@gw.example";

fn config() -> DigestConfig {
    DigestConfig {
        realm: "sgw".into(),
        credentials: Credentials::parse(&Credentials::line("alice", "sgw", "secret")).unwrap(),
        trusted_peers: vec![Cidr::parse("203.0.113.0/24").unwrap()],
        require: true,
        nonce_lifetime: Duration::from_secs(300),
        max_failures: 3,
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        nonce_key: [7; 32],
    }
}

fn table() -> CallTable {
    let mut t = CallTable::new(100, Emergency::default());
    t.auth = DigestServer::new(Some(config()));
    t
}

fn invite(ip: [u8; 4], auth: Vec<String>) -> NewCall {
    NewCall {
        direction: Direction::FromOutside,
        protocol: CallProtocol::Sip,
        family: Family::V4,
        source: Some(IpAddr::from(ip)),
        calling: "alice".into(),
        called: "1234".into(),
        emergency: false,
        digest: Some(DigestInput {
            method: "INVITE".into(),
            uri: URI.into(),
            authorizations: auth,
        }),
    }
}

/// The nonce of the first challenge (SHA-256's).
fn nonce_of(challenges: &[String], alg: Algorithm) -> String {
    let c = challenges
        .iter()
        .find(|c| c.contains(&format!("algorithm={}", alg.name())))
        .unwrap();
    let p = DigestParams::parse(c).unwrap();
    p.get("nonce").unwrap().to_owned()
}

fn authorization(alg: Algorithm, password: &str, nonce: &str, nc: u32) -> String {
    let ha1 = alg.ha1("alice", "sgw", password);
    let nc = format!("{nc:08x}");
    let r = alg.response(&ha1, nonce, &nc, "0a4f113b", "auth", "INVITE", URI);
    format!(
        "Digest username=\"alice\", realm=\"sgw\", nonce=\"{nonce}\", uri=\"{URI}\", \
         response=\"{r}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"0a4f113b\"",
        alg.name()
    )
}

#[test]
fn challenge_lists_sha256_first_then_md5() {
    let t = table();
    let c = t
        .auth
        .challenges(Duration::from_secs(5), IpAddr::from(IP), false);
    assert_eq!(c.len(), 2);
    assert!(c[0].contains("algorithm=SHA-256") && c[0].contains("qop=\"auth\""));
    assert!(c[1].contains("algorithm=MD5"));
    assert!(!c[0].contains("stale"));
    assert_eq!(
        nonce_of(&c, Algorithm::Md5),
        nonce_of(&c, Algorithm::Sha256)
    );
}

#[test]
fn a_call_authenticates_with_either_algorithm_and_a_replay_is_refused() {
    let mut t = table();
    let now = Duration::from_secs(10);
    let r = t.admit(now, Side::Outside, &invite(IP, vec![]), true);
    assert_eq!(r, Err(Refusal::AuthRequired { stale: false }));
    assert_eq!(t.counters.refused_auth_required, 1);
    let ch = t.auth.challenges(now, IpAddr::from(IP), false);
    for (i, alg) in [Algorithm::Sha256, Algorithm::Md5].into_iter().enumerate() {
        let nonce = nonce_of(&ch, alg);
        let nc = u32::try_from(i).unwrap() + 1;
        let a = authorization(alg, "secret", &nonce, nc);
        let call = t
            .admit(now, Side::Outside, &invite(IP, vec![a.clone()]), true)
            .unwrap();
        let info = t.call_infos(now);
        let me = info.iter().find(|c| c.call == call.0).unwrap();
        assert_eq!(me.auth_identity.as_deref(), Some("alice"));
        // The same Authorization again: refused (challenged), counted as a replay.
        let again = t.admit(now, Side::Outside, &invite(IP, vec![a]), true);
        assert_eq!(again, Err(Refusal::AuthRequired { stale: false }));
        assert_eq!(t.auth.counters.replayed, u64::try_from(i).unwrap() + 1);
    }
    assert_eq!(t.auth.counters.authenticated, 2);
    let rec = t
        .end(now, CallRef(2), Cause::NORMAL_CLEARING, Default::default())
        .unwrap();
    assert_eq!(rec.auth_identity.as_deref(), Some("alice"));
}

#[test]
fn wrong_password_gets_403_after_max_failures_and_counts_for_blocking() {
    let mut t = CallTable::with_limits(
        100,
        Emergency::default(),
        crate::engine::LimitsConfig {
            block_after: 2,
            ..Default::default()
        },
    );
    t.auth = DigestServer::new(Some(config()));
    let now = Duration::from_secs(10);
    let ch = t.auth.challenges(now, IpAddr::from(IP), false);
    let nonce = nonce_of(&ch, Algorithm::Md5);
    for nc in 1..=2 {
        let a = authorization(Algorithm::Md5, "wrong", &nonce, nc);
        let r = t.admit(now, Side::Outside, &invite(IP, vec![a]), true);
        assert_eq!(r, Err(Refusal::AuthRequired { stale: false }), "try {nc}");
        assert_eq!(t.auth.last_reason(), "wrong response");
    }
    let a = authorization(Algorithm::Md5, "wrong", &nonce, 3);
    assert_eq!(
        t.admit(now, Side::Outside, &invite(IP, vec![a]), true),
        Err(Refusal::AuthFailed)
    );
    // Locked for the window, even with the right password over a stale nonce.
    let a = authorization(Algorithm::Md5, "secret", &nonce, 4);
    assert_eq!(
        t.admit(now, Side::Outside, &invite(IP, vec![a]), true),
        Err(Refusal::AuthFailed)
    );
    assert_eq!(t.auth.counters.forbidden, 2);
    assert_eq!(t.counters.refused_auth_failed, 2);
    // Two 403s with block_after = 2: the source is blocked.
    assert_eq!(t.limits.blocked_sources(), 1);
    // Another source is not affected, and after the window the user may try again.
    let later = now + FAILURE_WINDOW + Duration::from_secs(1);
    let other = [192, 0, 2, 8];
    let ch = t.auth.challenges(later, IpAddr::from(other), false);
    let a = authorization(Algorithm::Md5, "secret", &nonce_of(&ch, Algorithm::Md5), 1);
    assert!(t
        .admit(later, Side::Outside, &invite(other, vec![a]), true)
        .is_ok());
}

#[test]
fn an_expired_nonce_is_stale_and_a_nonce_is_bound_to_its_source() {
    let mut t = table();
    let issued = Duration::from_secs(10);
    let ch = t.auth.challenges(issued, IpAddr::from(IP), false);
    let nonce = nonce_of(&ch, Algorithm::Sha256);
    let a = authorization(Algorithm::Sha256, "secret", &nonce, 1);
    let late = issued + Duration::from_secs(301);
    assert_eq!(
        t.admit(late, Side::Outside, &invite(IP, vec![a.clone()]), true),
        Err(Refusal::AuthRequired { stale: true })
    );
    assert!(t.auth.challenges(late, IpAddr::from(IP), true)[0].contains("stale=true"));
    assert_eq!(t.auth.counters.stale, 1);
    // From another address the nonce is not ours: wrong credentials.
    let r = t.admit(
        issued,
        Side::Outside,
        &invite([192, 0, 2, 99], vec![a]),
        true,
    );
    assert_eq!(r, Err(Refusal::AuthRequired { stale: false }));
    assert_eq!(t.auth.last_reason(), "nonce not issued to this source");
}

#[test]
fn trusted_peers_rules_and_emergency_calls_need_no_digest() {
    let mut t = table();
    let now = Duration::from_secs(1);
    assert!(t
        .admit(now, Side::Outside, &invite([203, 0, 113, 5], vec![]), true)
        .is_ok());
    let mut sos = invite(IP, vec![]);
    sos.emergency = true;
    assert!(t.admit(now, Side::Outside, &sos, true).is_ok());
    // From inside: never challenged.
    let mut inside = invite(IP, vec![]);
    inside.direction = Direction::FromInside;
    assert!(t.admit(now, Side::Inside, &inside, true).is_ok());
    // H.323 from outside, not trusted: refused with cause 21.
    let mut h323 = invite(IP, vec![]);
    h323.protocol = CallProtocol::H323;
    h323.digest = None;
    let r = t.admit(now, Side::Outside, &h323, true).unwrap_err();
    assert_eq!(r.cause(), Cause(21));
    assert_eq!(t.auth.counters.refused_h323, 1);
    // A rule decides: auth = "none" for a provider's prefix, "digest" even for a trusted one.
    let rules: Vec<crate::engine::access::RuleConfig> = toml::from_str::<toml::Table>(
        r#"
        [[r]]
        name = "provider"
        source = ["198.51.100.0/24"]
        action = "allow"
        auth = "none"
        [[r]]
        name = "strict"
        source = ["203.0.113.0/24"]
        action = "allow"
        auth = "digest"
        [[r]]
        name = "rest"
        action = "allow"
        "#,
    )
    .unwrap()["r"]
        .clone()
        .try_into()
        .unwrap();
    t.access = crate::engine::access::AccessPolicy::compile(&rules).unwrap();
    assert!(t
        .admit(now, Side::Outside, &invite([198, 51, 100, 1], vec![]), true)
        .is_ok());
    assert_eq!(
        t.admit(now, Side::Outside, &invite([203, 0, 113, 5], vec![]), true),
        Err(Refusal::AuthRequired { stale: false })
    );
    assert_eq!(
        t.admit(now, Side::Outside, &invite(IP, vec![]), true),
        Err(Refusal::AuthRequired { stale: false })
    );
}

#[test]
fn the_nonce_count_table_is_bounded() {
    let mut s = DigestServer::new(Some(config()));
    let ip = IpAddr::from(IP);
    for i in 0..(MAX_NONCES as u64 + 10) {
        let mac = s.mac(i / 100, ip);
        let mut m = mac;
        m[..8].copy_from_slice(&i.to_be_bytes());
        assert!(s.count_nonce(i / 100 + 1, i / 100, m, 1, 1_000_000));
    }
    assert!(s.tracked_nonces() <= MAX_NONCES);
    // The dropped nonces' second is stale from now on.
    assert!(s.floor.is_some());
}

#[test]
fn the_digest_uri_names_the_request_uri() {
    assert!(same_resource(URI, URI));
    assert!(same_resource("sip:gw.example", "sip:1234@gw.example:5060"));
    assert!(same_resource(
        "sip:127.0.0.1:5070",
        "sip:1234@127.0.0.1:5070"
    ));
    assert!(!same_resource(
        "sip:127.0.0.1:5071",
        "sip:1234@127.0.0.1:5070"
    ));
    assert!(!same_resource("sip:other.example", "sip:1234@gw.example"));
    assert!(!same_resource("garbage", "sip:1234@gw.example"));
}

#[test]
fn the_client_answers_what_the_server_checks() {
    let mut t = table();
    for (i, secret) in [
        ClientSecret {
            password: Some("secret".into()),
            ha1_md5: None,
            ha1_sha256: None,
        },
        ClientSecret {
            password: None,
            ha1_md5: None,
            ha1_sha256: Some(Algorithm::Sha256.ha1("alice", "sgw", "secret")),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let c = ClientCredentials {
            user: "alice".into(),
            secret,
        };
        // Each call its own challenge (one second apart: another nonce).
        let now = Duration::from_secs(3 + u64::try_from(i).unwrap());
        let ch = t.auth.challenges(now, IpAddr::from(IP), false);
        let fresh: Vec<&str> = ch.iter().map(String::as_str).collect();
        let a = c.answer(&fresh, "INVITE", URI, "abc").unwrap();
        assert!(a.contains("algorithm=SHA-256"), "{a}");
        assert!(t
            .admit(now, Side::Outside, &invite(IP, vec![a]), true)
            .is_ok());
    }
    // Only an MD5 HA1 of another realm: nothing to answer with.
    let c = ClientCredentials {
        user: "alice".into(),
        secret: ClientSecret {
            password: None,
            ha1_md5: Some("0".repeat(32)),
            ha1_sha256: None,
        },
    };
    let ch = t
        .auth
        .challenges(Duration::from_secs(9), IpAddr::from(IP), false);
    assert!(c.answer(&[ch[0].as_str()], "INVITE", URI, "abc").is_none());
    // Without qop: the response of RFC 2069, H(HA1:nonce:HA2), over RFC 2617's example values
    // (the expected value computed independently with Python's hashlib).
    let c = ClientCredentials {
        user: "Mufasa".into(),
        secret: ClientSecret {
            password: Some("Circle Of Life".into()),
            ha1_md5: None,
            ha1_sha256: None,
        },
    };
    let a = c
        .answer(
            &["Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""],
            "GET",
            "/dir/index.html",
            "x",
        )
        .unwrap();
    assert!(
        a.contains("response=\"670fd8c2df070c60b045671b8b24ff02\""),
        "{a}"
    );
    assert!(
        a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
        "{a}"
    );
}

#[test]
fn garbage_never_panics() {
    let mut t = table();
    let now = Duration::from_secs(1);
    for a in [
        "Digest",
        "Digest ",
        "Digest realm=\"sgw\"",
        "Digest realm=\"sgw\", nonce=\"zz\", uri=\"x\", response=\"\", qop=auth, nc=1, cnonce=\"\"",
        "Digest realm=\"sgw\", username=\"alice\", nonce=\"000000000000000a00000000000000000000000000000000\", uri=\"sip:1234@gw.example\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"",
        "Digest realm=sgw, nc=ffffffffff",
        "Digest ===",
        "Digest realm=\"sgw\", username=\"é\u{0}\", nonce=\"\u{1F600}\"",
    ] {
        let r = t.admit(now, Side::Outside, &invite(IP, vec![a.to_owned()]), true);
        assert!(matches!(r, Err(Refusal::AuthRequired { .. } | Refusal::AuthFailed)), "{a}");
    }
}

proptest::proptest! {
    /// Whatever an `Authorization` holds, the link answers 401 or 403 and never panics.
    #[test]
    fn arbitrary_authorization_values_are_refused_without_panic(v in ".{0,300}", n in 0u64..1000) {
        let mut t = table();
        let now = Duration::from_secs(n);
        let r = t.admit(now, Side::Outside, &invite(IP, vec![format!("Digest {v}"), v.clone()]), true);
        let refused = matches!(r, Err(Refusal::AuthRequired { .. } | Refusal::AuthFailed));
        proptest::prop_assert!(refused, "{:?}", r);
        let _ = DigestParams::parse(&v);
    }
}
