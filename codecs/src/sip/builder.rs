//! Emitting SIP messages: a start line, headers in order, and a body with its Content-Length.

use super::message::{Headers, Message, StartLine};
use super::{reason_phrase, Method};
use bytes::Bytes;
use ezk_sip_types::Name;
use std::borrow::Cow;

/// Builds a request or response. Content-Length is always written last among the headers,
/// computed from the body.
///
/// No header line the builder writes can carry a control character: a header name or value
/// (or a Request-URI) with CR, LF, NUL or any other control character but HTAB (which LWS
/// allows, RFC 3261 section 25.1) is refused. It is left out of the message, and
/// [`MessageBuilder::try_build`] fails; callers that write what a peer chose use it and refuse
/// the message. This is the last line of defence against header injection: Meta strings and
/// the SIP parser already refuse such characters.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    start: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// The first part refused for a control character.
    refused: Option<String>,
}

/// Whether a header value may hold `c`: no control character but HTAB.
pub fn is_header_char(c: char) -> bool {
    c == '\t' || !c.is_control()
}

/// `s` without its control characters (HTAB included); borrowed when it has none.
fn without_controls(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(s.chars().filter(|c| !c.is_control()).collect())
    } else {
        Cow::Borrowed(s)
    }
}

fn is_header_text(s: &str) -> bool {
    // Nearly every value is ASCII without control characters (0x00-0x1f, 0x7f) but HTAB:
    // looked for in one pass that does not stop early, which compiles to vector code
    // (`is_ascii` then `all` cost about 500 instructions a header value). A value with any
    // other byte is decided character by character.
    let other = s.bytes().fold(false, |other, b| {
        other | ((b < 0x20 && b != b'\t') | (b >= 0x7f))
    });
    !other || s.chars().all(is_header_char)
}

impl MessageBuilder {
    pub fn request(method: &Method, uri: &str) -> Self {
        let method = method.to_string();
        let refused = (!is_header_text(&method) || uri.chars().any(|c| c.is_control()))
            .then(|| "the request line".to_owned());
        MessageBuilder {
            start: [
                &*without_controls(&method),
                " ",
                &without_controls(uri),
                " SIP/2.0",
            ]
            .concat(),
            headers: Vec::new(),
            body: Bytes::new(),
            refused,
        }
    }

    pub fn response(code: u16) -> Self {
        Self::response_with_reason(code, reason_phrase(code))
    }

    pub fn response_with_reason(code: u16, reason: &str) -> Self {
        let refused = (!is_header_text(reason)).then(|| "the status line".to_owned());
        // Pushed, not formatted: every response the gateway sends starts here.
        let mut start = String::with_capacity(12 + reason.len());
        start.push_str("SIP/2.0 ");
        super::grammar::push_decimal(&mut start, code);
        start.push(' ');
        start.push_str(&without_controls(reason));
        MessageBuilder {
            start,
            headers: Vec::new(),
            body: Bytes::new(),
            refused,
        }
    }

    /// A response to `req` with Via, From, To, Call-ID and CSeq copied (RFC 3261 section
    /// 8.2.6.2); `to_tag` is added to To when it has none.
    pub fn response_to(req: &Message, code: u16, to_tag: Option<&str>) -> Self {
        let has_tag = req.to().map(|t| t.tag().is_some()).unwrap_or(true);
        Self::response_to_headers(req.headers(), code, to_tag.filter(|_| !has_tag))
    }

    /// Like [`MessageBuilder::response_to`] from bare header fields (a request that did not
    /// parse completely); `to_tag`, if given, is appended to a To that has no tag yet.
    pub fn response_to_headers(h: &Headers, code: u16, to_tag: Option<&str>) -> Self {
        let mut b = Self::response(code);
        for (name, label) in [(Name::VIA, "Via"), (Name::FROM, "From")] {
            for v in h.all(&name) {
                b = b.header(label, v);
            }
        }
        for v in h.all(&Name::TO) {
            match to_tag {
                Some(tag) if code > 100 && !has_tag_param(v) => {
                    b = b.header("To", format!("{v};tag={tag}"))
                }
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

    /// Adds a header; one whose name or value holds a control character is refused (see the
    /// type's docs).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        let name_ok =
            !name.is_empty() && !name.contains(':') && !name.contains(char::is_whitespace);
        if name_ok && is_header_text(name) && is_header_text(&value) {
            self.headers.push((name.to_owned(), value));
        } else if self.refused.is_none() {
            self.refused = Some(format!("header {}", name.escape_debug()));
        }
        self
    }

    pub fn body(self, content_type: &str, body: impl Into<Bytes>) -> Self {
        let mut b = self.header("Content-Type", content_type);
        b.body = body.into();
        b
    }

    /// The message, or the error when a part was refused for a control character.
    pub fn try_build(self) -> Result<Bytes, super::SipError> {
        match self.refused.clone() {
            Some(what) => Err(super::SipError::ControlCharacter(what)),
            None => Ok(self.build()),
        }
    }

    /// The message; parts refused for a control character are left out.
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

/// Whether a From/To value carries a `tag` parameter (after `>`, or after the URI of a bare
/// addr-spec, whose parameters are all the header's: RFC 3261 section 20).
fn has_tag_param(v: &str) -> bool {
    let params = match v.rfind('>') {
        Some(i) => v.get(i + 1..).unwrap_or(""),
        None => v.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').any(|p| {
        p.trim()
            .get(..4)
            .is_some_and(|k| k.eq_ignore_ascii_case("tag="))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse_datagram;

    /// A To that already has a tag keeps it, alone (RFC 3261 section 8.2.6.2), in every form.
    #[test]
    fn header_text_byte_test_is_the_char_test() {
        for b in 0u8..0x80 {
            let s = format!("a{}b", char::from(b));
            assert_eq!(
                super::is_header_text(&s),
                s.chars().all(super::is_header_char),
                "{b:#x}"
            );
        }
        assert!(!super::is_header_text("a\u{85}b"));
        assert!(super::is_header_text("caf\u{e9}\t"));
    }

    #[test]
    fn a_tagged_to_gets_no_second_tag() {
        for (to, tagged) in [
            ("<sip:bob@example.com>;tag=abc", true),
            ("Bob <sip:bob@example.com;transport=tcp>;TAG=abc", true),
            ("sip:bob@example.com;tag=abc", true),
            ("<sip:bob@example.com;tag=inuri>", false),
            ("<sip:bob@example.com>;x-tag=1", false),
            ("sip:bob@example.com", false),
        ] {
            assert_eq!(has_tag_param(to), tagged, "{to}");
            let text = format!(
                "BYE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
                 From: <sip:a@example.com>;tag=f\r\nTo: {to}\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n"
            );
            let (m, _) = parse_datagram(bytes::Bytes::from(text)).unwrap();
            let resp = MessageBuilder::response_to_headers(m.headers(), 400, Some("new")).build();
            let (r, _) = parse_datagram(resp).unwrap();
            let got = r
                .headers()
                .single(&Name::TO, "To")
                .unwrap()
                .unwrap()
                .to_owned();
            // Tagged: kept as it was; untagged: the new tag added once.
            assert!(has_tag_param(&got), "{got}");
            if tagged {
                assert_eq!(got, to);
            } else {
                assert_eq!(got, format!("{to};tag=new"));
            }
        }
    }

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

    /// Header injection: no control character but HTAB reaches a line the builder writes.
    #[test]
    fn control_characters_are_refused() {
        let base = || {
            MessageBuilder::request(&Method::Invite, "sip:bob@192.0.2.1")
                .header("Via", "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKx")
                .header("To", "<sip:bob@192.0.2.1>")
                .header("Call-ID", "c1")
                .header("CSeq", "1 INVITE")
        };
        for bad in [
            "\r\nX-Injected: yes",
            "\nX-Injected: yes",
            "\rX",
            "a\u{0}b",
            "\u{1b}[0m",
            "\u{7f}",
            "\u{85}",
        ] {
            let b = base().header("From", format!("\"Alice{bad}\" <sip:a@192.0.2.2>;tag=1"));
            assert!(
                matches!(
                    b.clone().try_build(),
                    Err(crate::sip::SipError::ControlCharacter(_))
                ),
                "{bad:?}"
            );
            let bytes = b.build();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("X-Injected"), "{text}");
            assert!(
                !text.contains("Alice"),
                "the refused header is left out: {text}"
            );
            // A header name cannot smuggle a line either.
            let b = base().header(&format!("X{bad}"), "v");
            assert!(b.try_build().is_err(), "name {bad:?}");
        }
        let uri = MessageBuilder::request(&Method::Invite, "sip:bob@192.0.2.1\r\nX-Injected: yes");
        assert!(uri.clone().try_build().is_err());
        assert!(!String::from_utf8_lossy(&uri.build()).contains("\r\nX-Injected"));
        // HTAB is linear whitespace: allowed.
        let tab = base().header("From", "\"Alice\tSmith\" <sip:a@192.0.2.2>;tag=1");
        let (m, _) = parse_datagram(tab.try_build().unwrap()).unwrap();
        assert_eq!(m.from().unwrap().display.as_deref(), Some("Alice\tSmith"));
    }
}
