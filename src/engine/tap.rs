//! Which call a message or packet the live driver moved belongs to, for the HEP export and the
//! per-call capture (`src/live/hep.rs`, `src/live/recording.rs`). The driver asks after the
//! engine handled an input and when it sends a transmit, so a new call is already known.
//! Lookups only: nothing here changes what the engine does.

use super::{Engine, Flow, Protocol, Side};

impl Engine {
    /// The call (its id, the Meta call reference both halves share) that a SIP message,
    /// H.225.0/H.245 PDU or media packet on `side` belongs to; `None` when no call of the
    /// engine has it (a refused INVITE, an OPTIONS, a stray packet).
    pub fn call_of(
        &self,
        side: Side,
        flow: &Flow,
        protocol: Protocol,
        payload: &[u8],
    ) -> Option<u32> {
        let call = match protocol {
            Protocol::Sip => {
                let id = sip_call_id(payload)?;
                match side {
                    Side::Outside => self.outside.call_by_call_id(id),
                    Side::Inside => self.inside.call_by_call_id(id),
                }
            }
            Protocol::H225 | Protocol::H245 => self.h323.call_by_flow(side, flow),
            Protocol::Rtp | Protocol::Rtcp => self
                .out
                .media
                .find(side, flow, protocol == Protocol::Rtcp)
                .map(|(_, _, c)| c),
            Protocol::Ras => None,
        };
        call.map(|c| c.0)
    }
}

/// The Call-ID header's value (long or compact form) of a SIP message's head, without parsing
/// the whole message; `None` when there is none or it is not UTF-8.
pub fn sip_call_id(msg: &[u8]) -> Option<&str> {
    let mut lines = msg.split(|&b| b == b'\n');
    lines.next()?;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            let value = value.get(1..)?.trim_ascii();
            return std::str::from_utf8(value).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::sip_call_id;

    #[test]
    fn call_id_long_and_compact_forms() {
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x\r\nCall-ID:  abc@h \r\n\r\nbody";
        assert_eq!(sip_call_id(m), Some("abc@h"));
        let m = b"SIP/2.0 200 OK\r\ni: xyz\r\n\r\n";
        assert_eq!(sip_call_id(m), Some("xyz"));
        let m = b"BYE sip:a SIP/2.0\r\nTo: <sip:a>\r\n\r\nCall-ID: body\r\n";
        assert_eq!(sip_call_id(m), None);
        assert_eq!(sip_call_id(b""), None);
    }
}
