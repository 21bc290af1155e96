//! Real PDUs from captures (see `testdata/README.md`): each must decode and re-encode to the
//! same octets; the ones tshark flags as malformed must give an error, never a panic.

use std::fs;
use std::path::{Path, PathBuf};

fn hex_files(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(kind);
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

/// Decodes and re-encodes every file of `kind`; returns the failures.
fn round_trip<T: std::fmt::Debug>(
    kind: &str,
    decode: impl Fn(&[u8]) -> Result<T, h323_asn1::Error>,
    encode: impl Fn(&T) -> Result<Vec<u8>, h323_asn1::Error>,
) -> usize {
    let files = hex_files(kind);
    assert!(!files.is_empty(), "no test data for {kind}");
    let mut failures = Vec::new();
    for (name, bytes) in &files {
        match decode(bytes) {
            Err(e) => failures.push(format!("{name}: decode: {e}")),
            Ok(value) => match encode(&value) {
                Err(e) => failures.push(format!("{name}: encode: {e}")),
                Ok(again) if again != *bytes => failures.push(format!(
                    "{name}: re-encoding differs\n  in:  {}\n  out: {}\n  {value:?}",
                    hexs(bytes),
                    hexs(&again)
                )),
                Ok(_) => {}
            },
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {kind} PDUs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
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
    assert_eq!(n, 11);
}

#[test]
fn ras_round_trips() {
    let n = round_trip("ras", h323_asn1::decode_ras, h323_asn1::encode_ras);
    assert_eq!(n, 38);
}

#[test]
fn h245_round_trips() {
    let n = round_trip("h245", h323_asn1::decode_h245, h323_asn1::encode_h245);
    assert_eq!(n, 24);
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
