//! The PROTOS c07-sip suite (OUSPG, 4527 malformed INVITEs) through the whole engine, as
//! `sgw check` sees it: no case panics, every case gets a verdict, the valid case 0000000 is
//! accepted, and the cases in [`DECIDED`] get their status (what the gateway acts on or passes
//! on is checked, issue 7 item 12). A per-group histogram of verdicts and responses goes to
//! stderr.
//!
//! The suite is read in place from `../shared/corpora/protos-c07-sip` and unpacked in memory
//! (`xz -dc` piped into a small tar reader), so nothing is written to disk.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use sgw::check::check_bytes;
use sgw::engine::Verdict;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpora/protos-c07-sip/protos-c07-sip.tar.xz"
);
const GROUPS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpora/protos-c07-sip/GROUPS.txt"
);
const CASES: usize = 4527;

/// Plausible values for the PROTOS placeholders (RFC 5737 documentation addresses; the peer is
/// `sgw check`'s outside peer 192.0.2.1, the callee is GW2's outside address). `<Branch-ID>`,
/// `<Call-ID>` and `<Content-Length>` are filled per case.
const FIXED: &[(&str, &str)] = &[
    ("<To>", "user@198.51.100.1"),
    ("<From>", "caller@192.0.2.1"),
    ("<From-Address>", "192.0.2.1"),
    ("<From-IP>", "192.0.2.1"),
    ("<Local-Port>", "5060"),
    ("<CSeq>", "1"),
    ("<Teardown-Method>", "CANCEL"),
];

/// Every `<Name>` placeholder the suite uses (`grep -ao '<[A-Z][A-Za-z-]*>'` over all cases).
const PLACEHOLDERS: &[&str] = &[
    "<To>",
    "<From>",
    "<From-Address>",
    "<From-IP>",
    "<Local-Port>",
    "<CSeq>",
    "<Teardown-Method>",
    "<Branch-ID>",
    "<Call-ID>",
    "<Content-Length>",
];

/// Cases with a decided answer: (case, status, what it exercises). `None` is a case that must
/// stay accepted (the gateway answers 100): a near miss of a refused one.
const DECIDED: &[(usize, Option<u16>, &str)] = &[
    (229, None, "Request-URI without user, To names one"),
    (231, Some(400), "Request-URI sip:@host: empty user part"),
    (933, Some(400), "From sip:@host: empty user part"),
    (330, None, "Via host 10.10.10.1"),
    (335, None, "Via host 10.10.10.a (a host name)"),
    (
        332,
        Some(400),
        "Via host 10.10.10.256: neither IPv4 nor host name",
    ),
    (334, Some(400), "Via host 10.10.10.4095"),
    (378, Some(400), "Via host with a label over 63 octets"),
    (436, Some(400), "Via host 192.0.2.15060 (colon missing)"),
    (453, None, "Via port 1"),
    (452, Some(400), "Via port 0"),
    (1468, Some(400), "Call-ID with an empty word before @"),
    (1513, Some(400), "Call-ID starting with NUL"),
    (1522, Some(400), "Call-ID with NUL inside"),
    (1748, Some(400), "Call-ID host part starting with NUL"),
    (1756, Some(400), "Call-ID host part with NUL inside"),
    (3611, None, "c= 10.10.10.1"),
    (3614, Some(488), "c= 10.10.10.-1: not an address"),
    (3616, Some(488), "c= 10.10.10.a: a name, not an address"),
    (3619, Some(488), "c= -1"),
    (3620, Some(488), "c= v.x.y.z: a name, not an address"),
    (3656, Some(488), "c= aaaaaaaaa: a name, not an address"),
    (4123, Some(488), "m= payload type -1"),
    (4130, Some(488), "m= payload type 128"),
    (4303, Some(488), "rtpmap payload type -1"),
    (4310, Some(488), "rtpmap payload type 128"),
    (4482, None, "rtpmap clock rate 1"),
    (4481, Some(488), "rtpmap clock rate 0"),
    (4483, Some(488), "rtpmap clock rate -1"),
];

/// Unpacks the suite: (file name, contents) for every regular file, in archive order.
fn unpack() -> Vec<(String, Vec<u8>)> {
    let out = Command::new("xz")
        .args(["-dc", SUITE])
        .output()
        .expect("xz is installed");
    assert!(out.status.success(), "xz -dc {SUITE} failed");
    let tar = out.stdout;
    let mut files = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &header[r];
            let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).trim().to_owned()
        };
        let name = field(0..100);
        let size = usize::from_str_radix(&field(124..136), 8).expect("octal tar size");
        let kind = header[156];
        let data = &tar[at + 512..at + 512 + size];
        if kind == b'0' || kind == 0 {
            files.push((name, data.to_vec()));
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    files
}

/// The first length-prefixed record ("<decimal length><SP><bytes>") of a case file.
fn first_record(file: &[u8]) -> &[u8] {
    let sp = file.iter().position(|&b| b == b' ').expect("record length");
    let len: usize = std::str::from_utf8(&file[..sp]).unwrap().parse().unwrap();
    &file[sp + 1..sp + 1 + len]
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Where the body starts, by the SIP codec's rule: after the first LF followed by LF or CRLF.
fn body_start(msg: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(rel) = msg[i..].iter().position(|&b| b == b'\n') {
        let nl = i + rel;
        match msg.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if msg.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

/// Fills in the placeholders of case `n`; Content-Length becomes the real body length.
fn substitute(n: usize, record: &[u8]) -> Vec<u8> {
    let mut msg = record.to_vec();
    for (p, v) in FIXED {
        msg = replace(&msg, p.as_bytes(), v.as_bytes());
    }
    msg = replace(&msg, b"<Branch-ID>", format!("{n:07}").as_bytes());
    msg = replace(&msg, b"<Call-ID>", format!("protos-{n:07}").as_bytes());
    let body_len = body_start(&msg).map_or(0, |s| msg.len() - s);
    replace(&msg, b"<Content-Length>", body_len.to_string().as_bytes())
}

fn groups() -> Vec<(String, usize, usize)> {
    std::fs::read_to_string(GROUPS)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

struct Outcome {
    case: usize,
    result: Result<(Verdict, Option<u16>), String>,
}

fn run_case(case: usize, msg: &[u8]) -> Outcome {
    let name = format!("{case:07}");
    let result = catch_unwind(AssertUnwindSafe(|| check_bytes(&name, msg)))
        .map(|r| (r.verdict, r.response))
        .map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        });
    Outcome { case, result }
}

#[test]
fn protos_c07_sip_through_the_engine() {
    let files = unpack();
    let mut cases: Vec<(usize, Vec<u8>)> = files
        .iter()
        .filter_map(|(name, data)| {
            let n: usize = name.rsplit('/').next()?.parse().ok()?;
            Some((n, data))
        })
        .map(|(n, data)| (n, substitute(n, first_record(data))))
        .collect();
    cases.sort_by_key(|(n, _)| *n);
    assert_eq!(cases.len(), CASES, "cases in the suite");
    assert!(cases.iter().enumerate().all(|(i, (n, _))| i == *n));
    for (n, msg) in &cases {
        for p in PLACEHOLDERS {
            assert!(
                !msg.windows(p.len()).any(|w| w == p.as_bytes()),
                "case {n:07}: {p} left in"
            );
        }
    }

    // Panics are caught and reported per case; silence the default hook meanwhile.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    let mut outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(threads))
            .map(|chunk| {
                s.spawn(|| {
                    chunk
                        .iter()
                        .map(|(n, m)| run_case(*n, m))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    std::panic::set_hook(hook);
    outcomes.sort_by_key(|o| o.case);

    // Histogram per group: verdicts and response codes.
    for (group, first, count) in groups() {
        let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
        let mut responses: BTreeMap<String, usize> = BTreeMap::new();
        for o in &outcomes[first..first + count] {
            let (v, r) = match &o.result {
                Ok((v, r)) => (
                    format!("{v:?}").to_lowercase(),
                    r.map_or("none".to_owned(), |c| c.to_string()),
                ),
                Err(_) => ("PANIC".to_owned(), "-".to_owned()),
            };
            *verdicts.entry(v).or_default() += 1;
            *responses.entry(r).or_default() += 1;
        }
        let join = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "{group:<32} {count:>4}  {:<40} response: {}",
            join(&verdicts),
            join(&responses)
        );
    }
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut responses: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        if let Ok((v, r)) = &o.result {
            *verdicts.entry(format!("{v:?}").to_lowercase()).or_default() += 1;
            *responses
                .entry(r.map_or("none".to_owned(), |c| c.to_string()))
                .or_default() += 1;
        }
    }
    eprintln!(
        "{:<32} {CASES:>4}  {verdicts:?} response: {responses:?}",
        "total"
    );

    let panics: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|e| format!("{:07}: {e}", o.case))
        })
        .collect();
    assert!(
        panics.is_empty(),
        "cases that panicked:\n{}",
        panics.join("\n")
    );
    assert_eq!(outcomes.len(), CASES, "a verdict for every case");
    let wrong: Vec<String> = DECIDED
        .iter()
        .filter_map(|(case, status, what)| {
            let got = outcomes[*case].result.as_ref().ok()?;
            let ok = match status {
                None => got.0 == Verdict::Accepted && got.1 == Some(100),
                Some(s) => got.0 == Verdict::Rejected && got.1 == Some(*s),
            };
            (!ok).then(|| format!("{case:07} ({what}): want {status:?}, got {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let valid = &outcomes[0];
    assert_eq!(
        valid.result.as_ref().map(|(v, _)| *v),
        Ok(Verdict::Accepted),
        "case 0000000 (valid INVITE):\n{}",
        String::from_utf8_lossy(&cases[0].1)
    );
}
