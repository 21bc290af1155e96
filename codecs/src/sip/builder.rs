//! Emitting SIP messages: a start line, headers in order, and a body with its Content-Length.

use super::message::{Headers, Message, StartLine};
use super::{reason_phrase, Method};
use bytes::Bytes;
use ezk_sip_types::Name;

/// Builds a request or response. Content-Length is always written last among the headers,
/// computed from the body.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    start: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl MessageBuilder {
    pub fn request(method: &Method, uri: &str) -> Self {
        MessageBuilder {
            start: format!("{method} {uri} SIP/2.0"),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn response(code: u16) -> Self {
        Self::response_with_reason(code, reason_phrase(code))
    }

    pub fn response_with_reason(code: u16, reason: &str) -> Self {
        MessageBuilder {
            start: format!("SIP/2.0 {code} {reason}"),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` with Via, From, To, Call-ID and CSeq copied (RFC 3261 section
    /// 8.2.6.2); `to_tag` is added to To when it has none.
    pub fn response_to(req: &Message, code: u16, to_tag: Option<&str>) -> Self {
        let has_tag = req.to().map(|t| t.tag().is_some()).unwrap_or(true);
        Self::response_to_headers(req.headers(), code, to_tag.filter(|_| !has_tag))
    }

    /// Like [`MessageBuilder::response_to`] from bare header fields (a request that did not
    /// parse completely); `to_tag`, if given, is appended to To.
    pub fn response_to_headers(h: &Headers, code: u16, to_tag: Option<&str>) -> Self {
        let mut b = Self::response(code);
        for (name, label) in [(Name::VIA, "Via"), (Name::FROM, "From")] {
            for v in h.all(&name) {
                b = b.header(label, v);
            }
        }
        for v in h.all(&Name::TO) {
            match to_tag {
                Some(tag) if code > 100 => b = b.header("To", format!("{v};tag={tag}")),
                _ => b = b.header("To", v),
            }
        }
        for (name, label) in [(Name::CALL_ID, "Call-ID"), (Name::CSEQ, "CSeq")] {
            for v in h.all(&name) {
                b = b.header(label, v);
            }
        }
        b
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = body.into();
        self
    }

    pub fn build(self) -> Bytes {
        let mut out = String::with_capacity(256 + self.headers.len() * 48);
        out.push_str(&self.start);
        out.push_str("\r\n");
        for (n, v) in &self.headers {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("Content-Length: ");
        out.push_str(&self.body.len().to_string());
        out.push_str("\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        Bytes::from(bytes)
    }
}

impl StartLine {
    /// The start line as it would be written.
    pub fn to_line(&self) -> String {
        match self {
            StartLine::Request(r) => format!("{} {} {}", r.method, r.uri, r.version),
            StartLine::Response(s) => format!("{} {} {}", s.version, s.code, s.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse_datagram;

    #[test]
    fn build_then_parse() {
        let b = MessageBuilder::request(&Method::Invite, "sip:bob@[2001:db8::1]")
            .header("Via", "SIP/2.0/UDP [2001:db8::2]:5060;branch=z9hG4bKx")
            .header("From", "<sip:alice@[2001:db8::2]>;tag=a")
            .header("To", "<sip:bob@[2001:db8::1]>")
            .header("Call-ID", "c1")
            .header("CSeq", "1 INVITE")
            .header("Max-Forwards", "70")
            .body("application/sdp", &b"v=0\r\n"[..])
            .build();
        let (m, _) = parse_datagram(b).unwrap();
        m.check().unwrap();
        assert_eq!(m.content_length().unwrap(), Some(5));
        let r = MessageBuilder::response_to(&m, 180, Some("t1")).build();
        let (r, _) = parse_datagram(r).unwrap();
        r.check().unwrap();
        assert_eq!(r.to().unwrap().tag(), Some("t1"));
        assert_eq!(r.status(), Some(180));
    }
}
