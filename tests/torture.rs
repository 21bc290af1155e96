//! RFC 4475 and RFC 5118 torture messages through `sgw check`, each row of
//! `../shared/corpora/EXPECTED.md` checked by file name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use sgw::check::{check_bytes, CheckResult};
use sgw::engine::{Engine, EngineConfig, Flow, Transport, Verdict};
use std::path::PathBuf;
use std::time::Duration;

fn corpora() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora"))
}

/// Rows of the RFC 4475 table: (file, reaction).
fn rfc4475_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(corpora().join("EXPECTED.md")).unwrap();
    let mut rows = Vec::new();
    let mut in_4475 = false;
    for line in text.lines() {
        if line.starts_with("## RFC 4475") {
            in_4475 = true;
        } else if line.starts_with("## ") {
            in_4475 = false;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if in_4475
            && cells.len() == 6
            && !cells[1].is_empty()
            && cells[1] != "file"
            && !cells[1].starts_with("---")
        {
            rows.push((cells[1].to_owned(), cells[4].to_owned()));
        }
    }
    rows
}

/// Rows of the RFC 5118 table: (file, category).
fn rfc5118_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(corpora().join("EXPECTED.md")).unwrap();
    let section = text.split("## RFC 5118").nth(1).unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() == 5 && cells[1] != "file" && !cells[1].starts_with("---"))
                .then(|| (cells[1].to_owned(), cells[3].to_owned()))
        })
        .collect()
}

/// Whether `r` satisfies the reaction column of EXPECTED.md.
fn satisfies(reaction: &str, r: &CheckResult) -> bool {
    let status = r.response;
    let accepted = r.verdict == Verdict::Accepted && matches!(status, Some(100 | 200 | 202 | 481));
    if reaction.starts_with("no expected outcome") {
        return true;
    }
    if reaction.contains("unknown method: 501 or 405") || reaction.contains("is unknown: 501/405") {
        return matches!(status, Some(405 | 501));
    }
    if reaction.starts_with("accept, or 400/416") {
        return accepted || matches!(status, Some(400 | 416));
    }
    if reaction.starts_with("accept, ignoring Date") {
        return accepted || status == Some(400);
    }
    if reaction.starts_with("accept") || reaction.starts_with("a terminating element processes") {
        return accepted;
    }
    if reaction == "parse" {
        // A valid response that belongs to no transaction of ours: read, then not forwarded.
        return r.verdict == Verdict::Ignored && status.is_none();
    }
    if reaction.starts_with("discard") {
        return r.verdict != Verdict::Accepted && status.is_none();
    }
    if reaction.starts_with("400 (or tolerant parse)") {
        return status == Some(400) || accepted;
    }
    if reaction.starts_with("406 (or 488)") {
        return matches!(status, Some(406 | 488));
    }
    if reaction.starts_with("401") {
        return status == Some(401) && r.verdict == Verdict::Rejected;
    }
    for code in ["400", "415", "416", "420", "505"] {
        if reaction.starts_with(code) {
            return status == Some(code.parse().unwrap()) && r.verdict == Verdict::Rejected;
        }
    }
    panic!("EXPECTED.md reaction not understood: {reaction}");
}

/// The method of a raw request: its first token.
fn method_of(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == b' ').unwrap_or(0);
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// The same request as OPTIONS: the start line's and CSeq's method rewritten, nothing else.
fn as_options(data: &[u8], method: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(data);
    let mut out = String::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i == 0 {
            out.push_str(&line.replacen(method, "OPTIONS", 1));
        } else if line.to_ascii_lowercase().starts_with("cseq:") {
            out.push_str(&line.replace(method, "OPTIONS"));
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// Checks one torture message. A method the gateway does not serve (REGISTER, MESSAGE: see
/// `policy::ALLOWED_METHODS`) is answered 405 before its content is looked at (RFC 3261
/// section 8.2.1) unless its headers are malformed (400); the message is then checked again as
/// OPTIONS, so the RFC's point about its
/// syntax is still tested. `Err` says what went wrong with the 405.
fn check_torture(file: &str, data: &[u8]) -> Result<CheckResult, String> {
    let r = check_bytes(file, data);
    let method = method_of(data);
    let refused = matches!(method.as_str(), "REGISTER" | "MESSAGE");
    assert!(
        !refused
            || !sgw::engine::policy::ALLOWED_METHODS
                .iter()
                .any(|m| m.as_str() == method),
        "{method} is allowed again: drop the OPTIONS rewrite here"
    );
    // Malformed headers are answered 400 before the method is inspected.
    if !refused || r.response == Some(400) {
        return Ok(r);
    }
    if r.response != Some(405) || r.verdict != Verdict::Rejected {
        return Err(format!("{file}: {method} should get 405, got {r:?}"));
    }
    Ok(check_bytes(file, &as_options(data, &method)))
}

#[test]
fn rfc4475_matches_expected() {
    let rows = rfc4475_rows();
    assert_eq!(rows.len(), 50, "every RFC 4475 row is read");
    let mut failures = Vec::new();
    for (file, reaction) in rows {
        let data = std::fs::read(corpora().join(format!("rfc4475/{file}.dat"))).unwrap();
        let r = match check_torture(&file, &data) {
            Ok(r) => r,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if !satisfies(&reaction, &r) {
            failures.push(format!("{file}: expected '{reaction}', got {r:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rfc5118_matches_expected() {
    let rows = rfc5118_rows();
    assert_eq!(rows.len(), 12, "every RFC 5118 row is read");
    let mut failures = Vec::new();
    for (file, category) in rows {
        let data = std::fs::read(corpora().join(format!("rfc5118/{file}"))).unwrap();
        let r = match check_torture(&file, &data) {
            Ok(r) => r,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let ok = if category.starts_with("invalid") {
            r.response == Some(400) && r.verdict == Verdict::Rejected
        } else {
            // Valid messages pass the filter; a BYE outside any dialog is answered 481.
            r.verdict == Verdict::Accepted && matches!(r.response, Some(100 | 200 | 481))
        };
        if !ok {
            failures.push(format!("{file}: {category}: got {r:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The response bytes the gateway sends for one message.
fn response_of(file: &str) -> String {
    response_to(&std::fs::read(corpora().join("rfc4475").join(file)).unwrap())
}

fn response_to(data: &[u8]) -> String {
    let data = data.to_vec();
    let mut e = Engine::new(EngineConfig::default());
    let flow = Flow {
        transport: Transport::Udp,
        local: "198.51.100.1:5060".parse().unwrap(),
        remote: "192.0.2.1:5060".parse().unwrap(),
    };
    e.handle_datagram(Duration::ZERO, flow, Bytes::from(data));
    let t = e.poll_transmit().expect("a response");
    String::from_utf8(t.payload.to_vec()).unwrap()
}

#[test]
fn rejections_carry_their_mandatory_headers() {
    let r = response_of("bext01.dat");
    assert!(r.starts_with("SIP/2.0 420 "), "{r}");
    assert!(
        r.contains("Unsupported: nothingSupportsThis, nothingSupportsThisEither\r\n"),
        "{r}"
    );
    let r = response_of("invut.dat");
    assert!(
        r.starts_with("SIP/2.0 415 ") && r.contains("\r\nAccept: application/sdp"),
        "{r}"
    );
    // REGISTER is not served: 405 with Allow, which does not list it.
    let r = response_of("regaut01.dat");
    assert!(
        r.starts_with("SIP/2.0 405 ")
            && r.contains("\r\nAllow: INVITE, ACK")
            && !r.contains("REGISTER,"),
        "{r}"
    );
    let data = std::fs::read(corpora().join("rfc4475/regaut01.dat")).unwrap();
    let r = response_to(&as_options(&data, "REGISTER"));
    assert!(
        r.starts_with("SIP/2.0 401 ") && r.contains("\r\nWWW-Authenticate: Digest "),
        "{r}"
    );
    let r = response_of("intmeth.dat");
    assert!(
        r.starts_with("SIP/2.0 501 ") && r.contains("\r\nAllow: INVITE, ACK"),
        "{r}"
    );
    let r = response_of("badvers.dat");
    assert!(r.starts_with("SIP/2.0 505 "), "{r}");
    // A request whose start line does not parse still gets a 400 its sender can match.
    let r = response_of("lwsruri.dat");
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    assert!(
        r.contains("\r\nCall-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\r\n"),
        "{r}"
    );
}

#[test]
fn wsinv_fields_parse_correctly() {
    let data = std::fs::read(corpora().join("rfc4475/wsinv.dat")).unwrap();
    let (m, _) = codecs::sip::parse_datagram(Bytes::from(data)).unwrap();
    m.check().unwrap();
    assert_eq!(m.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1");
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method.as_str()), (9, "INVITE"));
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    let from = m.from().unwrap();
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \""#));
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[2].host, "192.168.255.111");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    let contact = &m.contacts().unwrap()[0];
    assert_eq!(contact.display.as_deref(), Some(r#"Quoted string """#));
    assert_eq!(
        contact.param("secondparam").map(|p| p.value.is_none()),
        Some(true)
    );
    assert_eq!(m.content_length().unwrap(), Some(150));
}
