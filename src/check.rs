//! `sgw check`: each file is one raw message, given to a fresh engine from an outside peer: a
//! SIP message as a UDP datagram, a file starting with a TPKT header (RFC 1006: version 3,
//! reserved 0) as H.225.0 call signalling on a TCP stream to port 1720. The verdict and the
//! response the gateway would send are reported.

use crate::engine::{ConnId, Engine, EngineConfig, Event, Flow, Protocol, Transport, Verdict};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The outcome for one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    pub file: String,
    pub protocol: &'static str,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub response: Option<u16>,
}

/// The peer every checked message appears to come from (RFC 5737 documentation addresses).
pub const CHECK_PEER: &str = "192.0.2.1:5060";
/// GW2's outside address in `sgw check`.
pub const CHECK_GW2: &str = "198.51.100.1:5060";

/// GW2's H.225.0 address in `sgw check`.
pub const CHECK_GW2_H225: &str = "198.51.100.1:1720";
/// The H.225.0 peer in `sgw check`.
pub const CHECK_PEER_H225: &str = "192.0.2.1:11720";

/// Whether a file holds TPKT-framed data (H.225.0): a TPKT header at offset 0.
pub fn is_tpkt_file(data: &[u8]) -> bool {
    matches!(data, [codecs::tpkt::VERSION, 0, _, _, ..])
}

/// Runs one raw TPKT/H.225.0 file through a fresh engine as a TCP stream to port 1720; the
/// first H.225.0 verdict is the result.
pub fn check_h225(name: &str, data: &[u8]) -> CheckResult {
    let mut engine = Engine::new(EngineConfig::default());
    let flow = Flow {
        transport: Transport::Tcp,
        local: CHECK_GW2_H225
            .parse()
            .unwrap_or(SocketAddr::from(([198, 51, 100, 1], 1720))),
        remote: CHECK_PEER_H225
            .parse()
            .unwrap_or(SocketAddr::from(([192, 0, 2, 1], 11720))),
    };
    engine.handle_stream(Duration::ZERO, ConnId(0), flow, data);
    let mut result = CheckResult {
        file: name.to_owned(),
        protocol: "h225",
        verdict: Verdict::Ignored,
        reason: Some("no complete H.225.0 message".to_owned()),
        response: None,
    };
    while let Some(e) = engine.poll_event() {
        if let Event::Report(r) = e {
            if matches!(r.protocol, Protocol::H225) {
                result.verdict = r.verdict;
                result.reason = r.reason;
                result.response = r.response;
                break;
            }
        }
    }
    result
}

/// Runs one message through a fresh engine.
pub fn check_bytes(name: &str, data: &[u8]) -> CheckResult {
    if is_tpkt_file(data) {
        return check_h225(name, data);
    }
    let mut engine = Engine::new(EngineConfig::default());
    let flow = Flow {
        transport: Transport::Udp,
        local: CHECK_GW2
            .parse()
            .unwrap_or(SocketAddr::from(([198, 51, 100, 1], 5060))),
        remote: CHECK_PEER
            .parse()
            .unwrap_or(SocketAddr::from(([192, 0, 2, 1], 5060))),
    };
    engine.handle_datagram(Duration::ZERO, flow, Bytes::copy_from_slice(data));
    let mut result = CheckResult {
        file: name.to_owned(),
        protocol: "sip",
        verdict: Verdict::Ignored,
        reason: Some("not a SIP message".to_owned()),
        response: None,
    };
    while let Some(e) = engine.poll_event() {
        if let Event::Report(r) = e {
            result.verdict = r.verdict;
            result.reason = r.reason;
            result.response = r.response;
            break;
        }
    }
    result
}

pub fn check_file(path: &Path) -> std::io::Result<CheckResult> {
    let data = std::fs::read(path)?;
    Ok(check_bytes(&path.display().to_string(), &data))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use codecs::meta;

    fn setup_tpkt() -> Vec<u8> {
        let setup = meta::Setup {
            call: meta::CallRef(2),
            calling: meta::Party {
                user: "5550100".to_owned(),
                display: None,
            },
            called: meta::Party {
                user: "5550199".to_owned(),
                display: None,
            },
            emergency: false,
            media: Vec::new(),
        };
        let ids = translators::h323::CallIds {
            call_ref: 1,
            conference_id: [1; 16],
            call_identifier: [2; 16],
        };
        let q = translators::h323::setup_message(&setup, &ids, Vec::new())
            .unwrap()
            .to_vec()
            .unwrap();
        let mut out = Vec::new();
        codecs::tpkt::encode(&q, &mut out).unwrap();
        out
    }

    #[test]
    fn tpkt_files_are_checked_as_h225() {
        let r = check_bytes("setup.tpkt", &setup_tpkt());
        assert_eq!(r.protocol, "h225");
        assert_eq!(r.verdict, Verdict::Accepted, "{:?}", r.reason);
    }

    #[test]
    fn a_broken_setup_is_rejected_with_a_cause() {
        let mut bytes = setup_tpkt();
        // Cut the H.225.0 PDU short: the TPKT and the User-user IE lengths follow.
        let uu = bytes.windows(2).rposition(|w| w[0] == 0x7e).unwrap();
        bytes.truncate(uu + 8);
        let len = u16::try_from(bytes.len()).unwrap();
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        let ie_len = u16::try_from(bytes.len() - uu - 3).unwrap();
        bytes[uu + 1..uu + 3].copy_from_slice(&ie_len.to_be_bytes());
        let r = check_bytes("broken.tpkt", &bytes);
        assert_eq!(r.verdict, Verdict::Rejected);
        assert!(
            r.reason.as_deref().unwrap().contains("cause 100"),
            "{:?}",
            r.reason
        );
    }
}
