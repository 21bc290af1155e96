//! The SIP filtering policy of GW2: what an outside request must satisfy before the gateway acts
//! on it, in the order of RFC 3261 section 8.2 (method, then headers, then content).
//!
//! A malformed message (`codecs::sip::SipError`) and a policy violation are different things;
//! both end up as a [`Rejection`] that names the SIP status and the headers to send with it.

use codecs::sip::HeaderName as Name;
use codecs::sip::{MediaType, Message, Method, SipError, StartLine, UriScheme};

/// Option tags (RFC 3261 section 19.2) the gateway implements: none yet. `replaces` (RFC 3891)
/// and `norefersub` (RFC 4488) were advertised without being implemented; a `Require` naming
/// any tag is answered 420. A `Supported` header built from this list is empty: omit it.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[];

/// Methods GW2 accepts from outside. Everything else is answered 405 (known methods) or 501,
/// with `Allow` listing these. REGISTER (registrations were kept and never used) and MESSAGE
/// (answered 202, then dropped) are refused until the gateway does something with them.
pub const ALLOWED_METHODS: &[Method] = &[
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Info,
    Method::Update,
    Method::Prack,
];

/// Body types the gateway understands.
pub const ACCEPTED_CONTENT_TYPES: &[(&str, &str)] = &[
    ("application", "sdp"),
    ("multipart", "mixed"),
    ("application", "dtmf-relay"),
    ("application", "dtmf"),
    ("text", "plain"),
];

/// The policy knobs; [`Default`] is the built-in policy.
#[derive(Debug, Clone)]
pub struct SipPolicy {
    /// The realm of the 401 to credentials of an unknown scheme (RFC 4475 section 3.3.7).
    /// Digest itself is the admission chain's link ([`super::auth`], `[auth]`).
    pub realm: String,
    /// Largest request accepted, in bytes (`[gw2.limits] max_message_size`); a larger one is
    /// answered 513 (RFC 3261 section 21.5.14). The codec's own ceiling is
    /// [`codecs::sip::MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
}

impl Default for SipPolicy {
    fn default() -> Self {
        SipPolicy {
            realm: "sgw".to_owned(),
            max_message_size: codecs::sip::MAX_MESSAGE_SIZE,
        }
    }
}

/// Why a request was refused. Each maps to one status code and its mandatory headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Malformed(SipError),
    VersionNotSupported(String),
    MethodNotAllowed(Method),
    MethodNotImplemented(String),
    UnsupportedUriScheme(String),
    BadExtension(Vec<String>),
    UnsupportedMediaType(String),
    NotAcceptable,
    TooManyHops,
    Unauthorized(&'static str),
    NoSuchCallOrTransaction,
    NotAcceptableHere(String),
    BusyOrOverloaded(&'static str),
    /// A rate limit refused it: 503 with `Retry-After` (seconds).
    RateLimited(&'static str, u32),
    /// Out of order in its dialog (RFC 3261 section 12.2.2).
    OutOfOrder,
    /// Valid, but more than Meta can carry to the other half (e.g. an oversized name).
    Unrepresentable(String),
    /// An INVITE that names nobody to call: no user part in the Request-URI or the To URI.
    AddressIncomplete,
    /// An access rule denied the call: its status (4xx-6xx) and Q.850 cause; the rule's name
    /// goes into the report, never to the caller.
    Denied {
        status: u16,
        cause: u8,
        rule: String,
    },
    /// A request in a dialog (or a CANCEL) with the dialog's Call-ID and tags from elsewhere
    /// than the dialog's peer: answered like an unknown dialog (481, RFC 3261 section
    /// 12.2.2), the call stays up.
    NotDialogPeer(String),
    /// The digest link wants credentials (RFC 7616): 401 with these `WWW-Authenticate`
    /// values, and why (for the report).
    Challenge {
        why: &'static str,
        challenges: Vec<String>,
    },
    /// Wrong digest credentials too often from this source for this user: 403.
    AuthFailed(&'static str),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Malformed(e) => e.status(),
            Rejection::VersionNotSupported(_) => 505,
            Rejection::MethodNotAllowed(_) => 405,
            Rejection::MethodNotImplemented(_) => 501,
            Rejection::UnsupportedUriScheme(_) => 416,
            Rejection::BadExtension(_) => 420,
            Rejection::UnsupportedMediaType(_) => 415,
            Rejection::NotAcceptable => 406,
            Rejection::TooManyHops => 483,
            Rejection::Unauthorized(_) => 401,
            Rejection::NoSuchCallOrTransaction | Rejection::NotDialogPeer(_) => 481,
            Rejection::NotAcceptableHere(_) => 488,
            Rejection::BusyOrOverloaded(_) | Rejection::RateLimited(..) => 503,
            Rejection::OutOfOrder | Rejection::Unrepresentable(_) => 500,
            Rejection::AddressIncomplete => 484,
            Rejection::Denied { status, .. } => *status,
            Rejection::Challenge { .. } => 401,
            Rejection::AuthFailed(_) => 403,
        }
    }

    /// Short machine-friendly reason for reports.
    pub fn reason(&self) -> String {
        match self {
            Rejection::Malformed(e) => format!("malformed: {e}"),
            Rejection::VersionNotSupported(v) => format!("unsupported version {v}"),
            Rejection::MethodNotAllowed(m) => format!("method {m} not allowed"),
            Rejection::MethodNotImplemented(m) => format!("unknown method {m}"),
            Rejection::UnsupportedUriScheme(s) => format!("unsupported URI scheme {s}"),
            Rejection::BadExtension(t) => format!("unsupported extension {}", t.join(", ")),
            Rejection::UnsupportedMediaType(t) => format!("unsupported content type {t}"),
            Rejection::NotAcceptable => "Accept excludes application/sdp".to_owned(),
            Rejection::TooManyHops => "Max-Forwards exhausted".to_owned(),
            Rejection::Unauthorized(why) => format!("unauthorized: {why}"),
            Rejection::NoSuchCallOrTransaction => "no matching dialog or transaction".to_owned(),
            Rejection::NotAcceptableHere(why) => format!("media not acceptable: {why}"),
            Rejection::BusyOrOverloaded(why) => format!("unavailable: {why}"),
            Rejection::RateLimited(why, _) => format!("rate limited: {why}"),
            Rejection::OutOfOrder => "CSeq lower than the dialog's".to_owned(),
            Rejection::Unrepresentable(why) => format!("cannot be carried as Meta: {why}"),
            Rejection::AddressIncomplete => "no user part to call".to_owned(),
            Rejection::Denied { rule, .. } => format!("denied by rule {rule}"),
            Rejection::NotDialogPeer(why) => format!("not from the dialog's peer: {why}"),
            Rejection::Challenge { why, .. } => format!("unauthorized: {why}"),
            Rejection::AuthFailed(why) => format!("authentication failed: {why}"),
        }
    }

    /// Whether this is a decision of the filter. A request that passed every check but names
    /// no existing dialog or transaction is answered (481) without being a rejection.
    pub fn is_filtered(&self) -> bool {
        !matches!(self, Rejection::NoSuchCallOrTransaction)
    }

    /// Headers RFC 3261 requires with this status.
    pub fn extra_headers(&self, policy: &SipPolicy) -> Vec<(&'static str, String)> {
        match self {
            Rejection::MethodNotAllowed(_) | Rejection::MethodNotImplemented(_) => {
                vec![("Allow", allow_header())]
            }
            Rejection::BadExtension(tags) => vec![("Unsupported", tags.join(", "))],
            Rejection::UnsupportedMediaType(_) => vec![("Accept", accept_header())],
            Rejection::RateLimited(_, secs) => vec![("Retry-After", secs.to_string())],
            Rejection::Unauthorized(_) => vec![(
                "WWW-Authenticate",
                format!(
                    "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
                    policy.realm, "0000000000000000"
                ),
            )],
            Rejection::Challenge { challenges, .. } => challenges
                .iter()
                .map(|c| ("WWW-Authenticate", c.clone()))
                .collect(),
            // RFC 3326: the cause, as an H.323 caller would get it; nothing names the rule.
            Rejection::Denied { cause, .. } => vec![("Reason", format!("Q.850;cause={cause}"))],
            _ => Vec::new(),
        }
    }
}

pub fn allow_header() -> String {
    ALLOWED_METHODS
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn accept_header() -> String {
    "application/sdp, multipart/mixed, application/dtmf-relay".to_owned()
}

/// Whether the request opens or addresses a call, so its Request-URI must be routable.
fn needs_routable_uri(method: &Method) -> bool {
    matches!(method, Method::Invite | Method::Info | Method::Update)
}

impl SipPolicy {
    /// Checks an outside request. `Ok` means the engine may act on it.
    pub fn check_request(&self, msg: &Message) -> Result<(), Rejection> {
        let StartLine::Request(req) = msg.start() else {
            return Ok(());
        };
        let size = msg.raw().len();
        if size > self.max_message_size {
            return Err(Rejection::Malformed(SipError::TooLarge {
                size,
                limit: self.max_message_size,
            }));
        }
        if req.version != "SIP/2.0" {
            return Err(Rejection::VersionNotSupported(req.version.clone()));
        }
        msg.check().map_err(Rejection::Malformed)?;

        // Method inspection (RFC 3261 section 8.2.1).
        if !ALLOWED_METHODS.contains(&req.method) {
            return Err(match &req.method {
                Method::Other(m) => Rejection::MethodNotImplemented(m.clone()),
                m => Rejection::MethodNotAllowed(m.clone()),
            });
        }

        // Request-URI (section 8.2.2.1): a URI with headers is never acted on.
        let uri = msg.request_uri().map_err(Rejection::Malformed)?;
        if uri.headers.is_some() {
            return Err(Rejection::Malformed(SipError::BadRequestUri(
                "headers in Request-URI",
            )));
        }
        // An emergency call to the service URN (RFC 5031) is routable: the call table
        // recognises it before any other link.
        let sos = super::calls::is_sos_urn(&req.uri);
        let routable = sos
            || matches!(
                uri.scheme,
                UriScheme::Sip | UriScheme::Sips | UriScheme::Tel
            );
        if !(sos || uri.is_known_scheme()) || (!routable && needs_routable_uri(&req.method)) {
            let scheme = match &uri.scheme {
                UriScheme::Other(s) => s.clone(),
                _ => String::new(),
            };
            return Err(Rejection::UnsupportedUriScheme(scheme));
        }
        // The called party is the Request-URI's user, else the To URI's (a call addressed to
        // the gateway's host): without either there is nobody to call (RFC 3261 section
        // 21.4.22).
        if req.method == Method::Invite && routable && !sos {
            let to = msg.to().map_err(Rejection::Malformed)?;
            if translators::sip::called_party(uri, to).user.is_empty() {
                return Err(Rejection::AddressIncomplete);
            }
        }

        // Extensions (section 8.2.2.3). Not applied to CANCEL and ACK.
        if !matches!(req.method, Method::Ack | Method::Cancel) {
            let unsupported: Vec<String> = msg
                .option_tags(&Name::REQUIRE)
                .filter(|t| {
                    !SUPPORTED_EXTENSIONS
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(t))
                })
                .map(str::to_owned)
                .collect();
            if !unsupported.is_empty() {
                return Err(Rejection::BadExtension(unsupported));
            }
        }

        // Content processing (section 8.2.3).
        if !msg.body().is_empty() {
            let ct = msg.content_type().map_err(Rejection::Malformed)?;
            match ct {
                None => {
                    return Err(Rejection::Malformed(SipError::MissingHeader(
                        "Content-Type",
                    )))
                }
                Some(ct) => self.check_content_type(&ct)?,
            }
        }

        // Accept (section 8.2.3): an INVITE is answered with SDP.
        if req.method == Method::Invite && msg.headers().contains(&Name::ACCEPT) {
            let ok = msg.headers().list(&Name::ACCEPT).any(|a| {
                MediaType::parse(a)
                    .map(|m| {
                        m.is("application", "sdp") || m.is("*", "*") || m.is("application", "*")
                    })
                    .unwrap_or(false)
            });
            if !ok {
                return Err(Rejection::NotAcceptable);
            }
        }

        // Credentials the gateway cannot verify are never accepted (RFC 4475 section 3.3.7).
        for name in [Name::AUTHORIZATION, Name::PROXY_AUTHORIZATION] {
            for v in msg.headers().all(&name) {
                let scheme = v.split([' ', '\t']).next().unwrap_or("");
                if !scheme.eq_ignore_ascii_case("Digest") {
                    return Err(Rejection::Unauthorized("unknown authorization scheme"));
                }
            }
        }

        // A B2BUA forwards the call: refuse requests that have used up their hops.
        if req.method == Method::Invite && msg.max_forwards().ok().flatten() == Some(0) {
            return Err(Rejection::TooManyHops);
        }
        Ok(())
    }

    fn check_content_type(&self, ct: &MediaType) -> Result<(), Rejection> {
        if !ACCEPTED_CONTENT_TYPES.iter().any(|(k, s)| ct.is(k, s)) {
            return Err(Rejection::UnsupportedMediaType(format!(
                "{}/{}",
                ct.kind, ct.subtype
            )));
        }
        if ct.is("multipart", "mixed") && ct.param("boundary").is_none() {
            return Err(Rejection::Malformed(SipError::BadHeader {
                name: "Content-Type",
                why: "multipart without boundary",
            }));
        }
        Ok(())
    }
}

/// The SDP part of a body: the body itself for application/sdp, the first application/sdp part
/// of a multipart/mixed body (RFC 5621), otherwise `None`.
pub fn sdp_body(msg: &Message) -> Option<bytes::Bytes> {
    let ct = msg.content_type().ok().flatten()?;
    let body = msg.body();
    if ct.is("application", "sdp") {
        return Some(body);
    }
    if ct.is("multipart", "mixed") {
        let boundary = ct.param("boundary")?;
        return multipart_sdp(&body, boundary);
    }
    None
}

fn multipart_sdp(body: &bytes::Bytes, boundary: &str) -> Option<bytes::Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    let delim = format!("--{boundary}");
    for part in text.split(delim.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'))?;
        let (head, content) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))?;
        let is_sdp = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("content-type")
                    && MediaType::parse(v.trim())
                        .map(|m| m.is("application", "sdp"))
                        .unwrap_or(false)
            })
        });
        if is_sdp {
            let content = content
                .strip_suffix("\r\n")
                .or_else(|| content.strip_suffix('\n'))
                .unwrap_or(content);
            return Some(bytes::Bytes::copy_from_slice(content.as_bytes()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use codecs::sip::parse_datagram;

    /// A valid request: `method` to `uri`, with `extra` header lines and an optional SDP body.
    fn request(method: &str, uri: &str, extra: &str, sdp: &str) -> String {
        let body = if sdp.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@192.0.2.1>;tag=1928301774\r\n\
             To: <sip:bob@198.51.100.1>\r\n\
             Call-ID: a84b4c76e66710@192.0.2.1\r\n\
             CSeq: 314159 {method}\r\n\
             {extra}{body}Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    }

    fn check(policy: &SipPolicy, text: &str) -> Result<(), Rejection> {
        let (msg, _) =
            parse_datagram(bytes::Bytes::from(text.to_owned())).map_err(Rejection::Malformed)?;
        policy.check_request(&msg)
    }

    #[test]
    fn max_message_size_is_the_configured_limit() {
        let padding = format!("Subject: {}\r\n", "x".repeat(1200));
        let text = request("INVITE", "sip:bob@198.51.100.1", &padding, "");
        assert!(text.len() > 1300 && text.len() < 1500, "{}", text.len());
        let small = SipPolicy {
            max_message_size: 1300,
            ..SipPolicy::default()
        };
        let rej = check(&small, &text).unwrap_err();
        assert_eq!(rej.status(), 513, "{rej:?}");
        assert_eq!(
            rej,
            Rejection::Malformed(SipError::TooLarge {
                size: text.len(),
                limit: 1300
            })
        );
        let exact = SipPolicy {
            max_message_size: text.len(),
            ..SipPolicy::default()
        };
        assert_eq!(check(&exact, &text), Ok(()));
        assert_eq!(check(&SipPolicy::default(), &text), Ok(()));
    }

    #[test]
    fn methods_the_gateway_does_not_serve_get_405_with_allow() {
        let p = SipPolicy::default();
        for (method, status) in [
            ("INVITE", None),
            ("OPTIONS", None),
            ("BYE", None),
            ("REGISTER", Some(405)),
            ("MESSAGE", Some(405)),
            ("SUBSCRIBE", Some(405)),
            ("FOO", Some(501)),
        ] {
            let r = check(&p, &request(method, "sip:bob@198.51.100.1", "", ""));
            assert_eq!(r.as_ref().err().map(Rejection::status), status, "{method}");
            if let Err(rej) = r {
                let headers = rej.extra_headers(&p);
                let allow = &headers.iter().find(|(n, _)| *n == "Allow").unwrap().1;
                assert!(
                    !allow.contains("REGISTER") && !allow.contains("MESSAGE"),
                    "{allow}"
                );
                assert!(allow.contains("INVITE"), "{allow}");
            }
        }
    }

    /// What the gateway acts on or passes on must be well formed (PROTOS c07-sip, issue 7
    /// item 12): each row is one edit of a valid INVITE and the status it must get.
    #[test]
    fn malformed_parts_of_an_invite() {
        let p = SipPolicy::default();
        let valid = request("INVITE", "sip:bob@198.51.100.1", "", "");
        let cases: &[(&str, &str, &str, Option<u16>)] = &[
            ("valid", "", "", None),
            ("Via port 0", "192.0.2.1:5060;", "192.0.2.1:0;", Some(400)),
            (
                "Via host not a host",
                "192.0.2.1:5060;",
                "10.10.10.256:5060;",
                Some(400),
            ),
            (
                "Via host name",
                "192.0.2.1:5060;",
                "pc33.atlanta.example:5060;",
                None,
            ),
            (
                "NUL in Call-ID",
                "Call-ID: a84b",
                "Call-ID: a\0\084b",
                Some(400),
            ),
            (
                "empty Call-ID word",
                "Call-ID: a84b4c76e66710@",
                "Call-ID: @",
                Some(400),
            ),
            (
                "NUL in From tag",
                "tag=1928301774",
                "tag=19283\x0001774",
                Some(400),
            ),
            (
                "quoted From tag",
                "tag=1928301774",
                "tag=\"1928301774\"",
                Some(400),
            ),
            (
                "NUL in To user",
                "To: <sip:bob@",
                "To: <sip:b\0ob@",
                Some(400),
            ),
            (
                "empty Request-URI user",
                "INVITE sip:bob@",
                "INVITE sip:@",
                Some(400),
            ),
            (
                "no Request-URI user, To names one",
                "INVITE sip:bob@",
                "INVITE sip:",
                None,
            ),
        ];
        for (name, from, to, status) in cases {
            assert!(valid.contains(from), "{name}");
            let text = valid.replacen(from, to, 1);
            let got = check(&p, &text).err();
            assert_eq!(
                got.as_ref().map(Rejection::status),
                *status,
                "{name}: {got:?}"
            );
        }
        // Nobody to call at all: 484 Address Incomplete.
        let text = request("INVITE", "sip:198.51.100.1", "", "")
            .replace("To: <sip:bob@198.51.100.1>", "To: <sip:198.51.100.1>");
        assert_eq!(check(&p, &text), Err(Rejection::AddressIncomplete));
        assert_eq!(Rejection::AddressIncomplete.status(), 484);
        // Other methods do not call anybody.
        let text = request("OPTIONS", "sip:198.51.100.1", "", "")
            .replace("To: <sip:bob@198.51.100.1>", "To: <sip:198.51.100.1>");
        assert_eq!(check(&p, &text), Ok(()));
    }

    #[test]
    fn no_option_tag_is_claimed() {
        let p = SipPolicy::default();
        for tag in ["replaces", "norefersub", "100rel", "timer"] {
            let text = request(
                "INVITE",
                "sip:bob@198.51.100.1",
                &format!("Require: {tag}\r\n"),
                "",
            );
            assert_eq!(
                check(&p, &text),
                Err(Rejection::BadExtension(vec![tag.to_owned()])),
                "{tag}"
            );
        }
    }
}
