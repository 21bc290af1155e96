//! Real PDUs from captures (see `testdata/README.md`): each must decode, and re-encode to the
//! same octets, or, where the sender did not encode canonically, to the canonical octets that
//! pycrate produced for it (`testdata/<kind>/canonical/`), which must decode to the same value.
//! The ones tshark flags as malformed must give an error, never a panic.

// Test helpers panic on bad fixtures; clippy counts only #[test] fns as tests.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::fs;
use std::path::{Path, PathBuf};

fn hex_files(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, hex(text.trim()))
        })
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// PDUs their sender did not encode canonically, where pycrate's re-encoding is no oracle: pycrate
/// cannot decode its own output for them (an empty SEQUENCE OF, or a BOOLEAN or NULL, alone in
/// an extension-addition open type). For these, ours must decode back to the same value, and
/// `tests/pycrate.rs` checks that pycrate reads ours as the same value as the original.
const NO_CANONICAL_ORACLE: &[&str] = &[
    "ndpi-h323-f66-releaseComplete.hex",
    "ndpi-h323-f62-registrationConfirm.hex",
    "ndpi-h323-f63-admissionRequest.hex",
    "ndpi-h323-f64-admissionConfirm.hex",
    "ndpi-h323-f69-disengageRequest.hex",
    "ndpi-h323-f70-disengageRequest.hex",
    "SIP_CALL_RTP_G711-f269-gatekeeperRequest.hex",
    "SIP_CALL_RTP_G711-f273-registrationRequest.hex",
];

fn canonical(kind: &str, name: &str) -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(kind)
        .join("canonical")
        .join(name);
    fs::read_to_string(path).ok().map(|t| hex(t.trim()))
}

/// Decodes and re-encodes every file of `kind`; panics listing the failures; returns
/// (PDUs, of which re-encoded byte-identically).
fn round_trip<T: std::fmt::Debug + PartialEq>(
    kind: &str,
    decode: impl Fn(&[u8]) -> Result<T, h323_asn1::Error>,
    encode: impl Fn(&T) -> Result<Vec<u8>, h323_asn1::Error>,
) -> (usize, usize) {
    let files = hex_files(kind);
    assert!(!files.is_empty(), "no test data for {kind}");
    let mut failures = Vec::new();
    let mut identical = 0;
    for (name, bytes) in &files {
        let value = match decode(bytes) {
            Ok(value) => value,
            Err(e) => {
                failures.push(format!("{name}: decode: {e}"));
                continue;
            }
        };
        let again = match encode(&value) {
            Ok(again) => again,
            Err(e) => {
                failures.push(format!("{name}: encode: {e}"));
                continue;
            }
        };
        let expected = match canonical(kind, name) {
            None if NO_CANONICAL_ORACLE.contains(&name.as_str()) => {
                match decode(&again) {
                    Ok(v) if v == value => {}
                    other => failures.push(format!("{name}: re-encoding decodes to {other:?}")),
                }
                if again == *bytes {
                    identical += 1;
                }
                again.clone()
            }
            None => {
                identical += 1;
                bytes.clone()
            }
            Some(canonical) => {
                match decode(&canonical) {
                    Ok(v) if v == value => {}
                    other => failures.push(format!("{name}: canonical form decodes to {other:?}")),
                }
                canonical
            }
        };
        if again != expected {
            failures.push(format!(
                "{name}: re-encoding differs\n  want: {}\n  got:  {}\n  {value:?}",
                hexs(&expected),
                hexs(&again)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {kind} PDUs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    (files.len(), identical)
}

fn hexs(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn h225_call_signalling_round_trips() {
    let n = round_trip(
        "h225",
        h323_asn1::decode_h323_user_information,
        h323_asn1::encode_h323_user_information,
    );
    assert_eq!(n, (11, 0));
}

#[test]
fn ras_round_trips() {
    let n = round_trip("ras", h323_asn1::decode_ras, h323_asn1::encode_ras);
    assert_eq!(n, (38, 6));
}

#[test]
fn h245_round_trips() {
    let n = round_trip("h245", h323_asn1::decode_h245, h323_asn1::encode_h245);
    assert_eq!(n, (24, 20));
}

#[test]
fn malformed_pdus_are_errors() {
    for (name, bytes) in hex_files("malformed/h225") {
        let result = h323_asn1::decode_h323_user_information(&bytes);
        assert!(result.is_err(), "{name}: decoded {result:?}");
    }
    for (name, bytes) in hex_files("malformed/ras") {
        let result = h323_asn1::decode_ras(&bytes);
        assert!(result.is_err(), "{name}: decoded {result:?}");
    }
}
