//! `sgw check`: each file is one raw message, given to a fresh engine as a UDP datagram from an
//! outside peer; the verdict and the response the gateway would send are reported.

use crate::engine::{Engine, EngineConfig, Event, Flow, Transport, Verdict};
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

/// Runs one message through a fresh engine.
pub fn check_bytes(name: &str, data: &[u8]) -> CheckResult {
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
