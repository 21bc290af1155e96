//! Header value grammar (RFC 3261 section 25): lists, name-addr, parameters, URIs, Via, CSeq,
//! media types. SIP URIs and host/port go through `ezk-sip-types`.

use super::error::SipError;
use super::{Method, MAX_CSEQ, MAX_PARAMS};
use ezk_sip_types::host::{Host, HostPort};
use ezk_sip_types::uri::{SipUri, SipUriUserPart};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// URI schemes the gateway knows (can parse and reason about). Only `sip`, `sips` and `tel`
/// can address a call; the others may appear in headers and in OPTIONS.
pub const KNOWN_URI_SCHEMES: &[&str] = &[
    "sip",
    "sips",
    "tel",
    "mailto",
    "http",
    "https",
    "im",
    "pres",
    "urn",
    "cid",
    "soap.beep",
    "soap.beeps",
    "xmlrpc.beep",
    "xmlrpc.beeps",
    "h323",
];

/// RFC 3261 `token` characters.
pub fn is_token_byte(b: u8) -> bool {
    // A match, not a search of the ten marks: every header name and parameter is tested.
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Longest host name, written without the final dot (RFC 1035 section 2.3.4).
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest label of a host name (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// RFC 3261 section 25.1 `hostname`: `*( domainlabel "." ) toplabel [ "." ]`. Labels are
/// letters, digits and `-` (neither first nor last), the top label starts with a letter (so a
/// failed IPv4 literal such as `10.0.0.256` is not a name), within RFC 1035's lengths.
pub fn is_hostname(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= MAX_LABEL_LEN
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty()
        && name.len() <= MAX_HOSTNAME_LEN
        && name.split('.').all(label)
        && name
            .rsplit('.')
            .next()
            .and_then(|top| top.bytes().next())
            .is_some_and(|b| b.is_ascii_alphabetic())
}

/// Parses a non-negative decimal (leading zeros allowed) no larger than `max`.
pub fn parse_decimal(s: &str, max: u32) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 10 {
        return None;
    }
    let n: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    u32::try_from(n).ok().filter(|n| *n <= max)
}

/// Where a left-to-right scan of a header value stands with regard to quoted strings
/// (RFC 3261 section 25.1: `"..."` with `\` escaping the next character).
#[derive(Debug, Default, Clone, Copy)]
struct Quoting {
    inside: bool,
    escaped: bool,
}

impl Quoting {
    /// [`Quoting::quoted`] byte by byte, for scans that look for ASCII only: the quote, the
    /// backslash and every separator are ASCII, and no byte of a multi-byte UTF-8 character
    /// is, so the bytes of a character after `\` leave the state as the character would.
    fn quoted_byte(&mut self, b: u8) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.inside = false;
            }
            true
        } else {
            self.inside = b == b'"';
            self.inside
        }
    }

    /// Takes the next character; `true` when it is part of a quoted string (its quotes
    /// included), so the caller's own syntax does not apply to it.
    fn quoted(&mut self, c: char) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.inside = false;
            }
            true
        } else {
            self.inside = c == '"';
            self.inside
        }
    }
}

/// Splits a comma-separated header value, ignoring commas inside quoted strings and `<...>`.
/// Elements are trimmed; empty elements are kept so callers can reject them.
pub fn split_list(value: &str) -> SplitList<'_> {
    SplitList { rest: Some(value) }
}

/// The elements of a list header value, found as they are asked for (see [`split_list`]).
/// A comma that splits is outside quotes and `<...>`, so each element is scanned afresh.
#[derive(Debug, Clone)]
pub struct SplitList<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for SplitList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let value = self.rest?;
        // Without a comma there is nothing to split (a memchr, not the scan below): nearly
        // every From, To and Contact.
        if !value.as_bytes().contains(&b',') {
            self.rest = None;
            return Some(value.trim());
        }
        let mut quoting = Quoting::default();
        let mut in_angle = false;
        // Byte by byte (see `Quoting::quoted_byte`): a comma at `i` is a character boundary.
        for (i, b) in value.bytes().enumerate() {
            if quoting.quoted_byte(b) {
                continue;
            }
            match b {
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    self.rest = Some(value.get(i + 1..).unwrap_or(""));
                    return Some(value.get(..i).unwrap_or("").trim());
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(value.trim())
    }
}

/// A `;name[=value]` parameter. Names compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// Parses `*( SEMI generic-param )`; `s` starts at the first `;` (or is empty).
fn parse_params(s: &str, header: &'static str) -> Result<Vec<Param>, SipError> {
    let bad = |why| SipError::BadHeader { name: header, why };
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let s = s
        .strip_prefix(';')
        .ok_or(bad("unexpected text after value"))?;
    let mut out = Vec::new();
    for part in split_outside_quotes(s, b';') {
        if out.len() >= MAX_PARAMS {
            return Err(bad("too many parameters"));
        }
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (part.trim(), None),
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(bad("empty or invalid parameter name"));
        }
        let value = match value {
            None => None,
            // tag-param = "tag" EQUAL token (RFC 3261 section 25.1).
            Some(v)
                if v.starts_with('"')
                    && matches!(header, "From" | "To")
                    && name.eq_ignore_ascii_case("tag") =>
            {
                return Err(bad("tag is not a token"));
            }
            Some(v) if v.starts_with('"') => {
                let (q, rest) = split_quoted(v).ok_or(bad("unterminated quoted string"))?;
                if !rest.trim().is_empty() {
                    return Err(bad("text after quoted parameter value"));
                }
                Some(q.to_owned())
            }
            Some(v) => {
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| is_token_byte(b) || matches!(b, b'[' | b']' | b':'))
                {
                    return Err(bad("invalid parameter value"));
                }
                Some(v.to_owned())
            }
        };
        out.push(Param {
            name: name.to_owned(),
            value,
        });
    }
    Ok(out)
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a Param> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Splits on `sep` outside quoted strings.
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoting = Quoting::default();
    let mut start = 0;
    // Byte by byte (see `Quoting::quoted_byte`); `sep` is ASCII, so `i` is a boundary.
    for (i, b) in s.bytes().enumerate() {
        if quoting.quoted_byte(b) {
            continue;
        }
        if b == sep {
            out.push(s.get(start..i).unwrap_or(""));
            start = i + 1;
        }
    }
    out.push(s.get(start..).unwrap_or(""));
    out
}

/// Splits a leading quoted-string (`s` starts with `"`): returns its unescaped content and the
/// rest after the closing quote.
fn split_quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((out, body.get(i + 1..).unwrap_or("")));
        } else {
            out.push(c);
        }
    }
    None
}

/// The scheme of a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriScheme {
    Sip,
    Sips,
    Tel,
    Other(String),
}

/// A URI as the gateway needs it: scheme, user, host, port and parameters. `sip:`/`sips:` URIs
/// are parsed by `ezk-sip-types`; `tel:` keeps the number; other schemes stay opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: UriScheme,
    pub raw: String,
    pub user: Option<String>,
    pub host: Option<String>,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub params: Vec<Param>,
    /// `?` headers of a SIP URI, as written; must not be acted on in a Request-URI.
    pub headers: Option<String>,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, SipError> {
        let bad = SipError::BadRequestUri;
        if s.is_empty()
            || s.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("empty or contains whitespace"));
        }
        let (scheme, rest) = s.split_once(':').ok_or(bad("no scheme"))?;
        let valid_scheme = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return Err(bad("invalid scheme"));
        }
        // Compared in place: nearly every URI is a SIP URI, and needs no lower-case copy.
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            return Self::parse_sip(s, scheme.len() == 4);
        }
        let lower = scheme.to_ascii_lowercase();
        match lower.as_str() {
            "tel" => {
                let (number, params) = match rest.split_once(';') {
                    Some((n, p)) => (n, p),
                    None => (rest, ""),
                };
                if number.is_empty() {
                    return Err(bad("empty tel number"));
                }
                let params = if params.is_empty() {
                    Vec::new()
                } else {
                    parse_params(&format!(";{params}"), "URI")?
                };
                Ok(Uri {
                    scheme: UriScheme::Tel,
                    raw: s.to_owned(),
                    user: Some(number.to_owned()),
                    host: None,
                    ip: None,
                    port: None,
                    params,
                    headers: None,
                })
            }
            _ => {
                if rest.is_empty() {
                    return Err(bad("empty URI after scheme"));
                }
                Ok(Uri {
                    scheme: UriScheme::Other(lower),
                    raw: s.to_owned(),
                    user: None,
                    host: None,
                    ip: None,
                    port: None,
                    params: Vec::new(),
                    headers: None,
                })
            }
        }
    }

    /// A SIP URI, from the cache of recent ones when it was read before (see [`RECENT`]). A
    /// plain one (see [`plain_sip_parts`]) is read by hand, faster than a cache hit.
    fn parse_sip(s: &str, sips: bool) -> Result<Uri, SipError> {
        if let Some((parts, params)) = plain_sip_parts(s, sips) {
            return Self::sip_uri(s, sips, parts, params, None);
        }
        if s.len() > MAX_CACHED_URI_LEN {
            return Self::parse_sip_uncached(s, sips);
        }
        let cached = RECENT.with(|c| c.try_borrow().ok().and_then(|m| m.get(s).cloned()));
        if let Some(result) = cached {
            return result;
        }
        let result = Self::parse_sip_uncached(s, sips);
        RECENT.with(|c| {
            if let Ok(mut m) = c.try_borrow_mut() {
                if m.len() >= MAX_CACHED_URIS {
                    m.clear();
                }
                m.insert(s.into(), result.clone());
            }
        });
        result
    }

    fn parse_sip_uncached(s: &str, sips: bool) -> Result<Uri, SipError> {
        let bad = SipError::BadRequestUri;
        let (without_headers, headers) = match s.split_once('?') {
            Some((u, h)) => (u, Some(h.to_owned())),
            None => (s, None),
        };
        // RFC 5118 section 4.10: "::" written as ":::" follows a bug in RFC 3261's ABNF;
        // accept it leniently (and never generate it).
        let lenient;
        let to_parse = if s.contains('[') && s.contains(":::") {
            lenient = s.replace(":::", "::");
            lenient.as_str()
        } else {
            s
        };
        // userinfo = user [ ":" password ] "@", user = 1*( ... ): never empty.
        let after_scheme = s.split_once(':').map_or("", |(_, rest)| rest);
        if after_scheme.starts_with(['@', ':']) {
            return Err(bad("empty user part"));
        }
        let parts = grammar_sip_parts(to_parse)?;
        let params_text = without_headers
            .rsplit_once(['@', ']'])
            .map(|(_, after)| after)
            .unwrap_or(without_headers);
        let params = params_text
            .find(';')
            .map_or("", |i| params_text.get(i..).unwrap_or(""));
        Self::sip_uri(s, sips, parts, params, headers)
    }

    /// A SIP URI from its parts and its parameters' text (empty, or from the first `;`).
    fn sip_uri(
        s: &str,
        sips: bool,
        parts: SipParts,
        params: &str,
        headers: Option<String>,
    ) -> Result<Uri, SipError> {
        let SipParts {
            user,
            host,
            ip,
            port,
        } = parts;
        let params = parse_params(params, "URI")?;
        Ok(Uri {
            scheme: if sips {
                UriScheme::Sips
            } else {
                UriScheme::Sip
            },
            raw: s.to_owned(),
            user,
            host: Some(host),
            ip,
            port,
            params,
            headers,
        })
    }

    /// The user part, percent-decoded for display (invalid escapes kept as written).
    pub fn user_decoded(&self) -> Option<String> {
        self.user.as_deref().map(percent_decode)
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        find_param(&self.params, name)
    }

    pub fn is_known_scheme(&self) -> bool {
        match &self.scheme {
            UriScheme::Other(s) => KNOWN_URI_SCHEMES.contains(&s.as_str()),
            _ => true,
        }
    }
}

/// What [`Uri`] takes from a SIP URI's grammar: the user (percent-decoded), the host as text and
/// as an address, the port.
#[derive(Debug, PartialEq, Eq)]
struct SipParts {
    user: Option<String>,
    host: String,
    ip: Option<IpAddr>,
    port: Option<u16>,
}

/// A SIP URI's parts by `ezk-sip-types`' grammar (nom: about 4,500 instructions a URI).
fn grammar_sip_parts(s: &str) -> Result<SipParts, SipError> {
    let bad = SipError::BadRequestUri;
    let parsed = SipUri::from_str(s).map_err(|_| bad("malformed SIP URI"))?;
    let (host, ip) = host_string(&parsed.host_port);
    // A bare IPv6 address without brackets parses as a host name with colons: reject it
    // (RFC 5118 section 4.2). The port parser would also have misread it.
    if matches!(parsed.host_port.host, Host::Name(_)) && host.contains(':') {
        return Err(bad("IPv6 reference without brackets"));
    }
    let user = match &parsed.user_part {
        SipUriUserPart::Empty => None,
        SipUriUserPart::User(u) => Some(u.to_string()),
        SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
    };
    Ok(SipParts {
        user,
        host,
        ip,
        port: parsed.host_port.port,
    })
}

/// The parts of a plain SIP URI, read by hand: `sip:` or `sips:` in lower case, an optional
/// user of [`is_plain_byte`]s, an IPv4 address in dotted decimal without leading zeros or a
/// host name of letter-led labels (no final dot), an optional port of one to five digits, and
/// parameters of [`is_plain_byte`]s with at most one `=` each. That is nearly every URI a
/// dialog carries. `None` for anything else, which [`grammar_sip_parts`] reads; for what it
/// accepts the grammar answers the same (a test compares the two), as none of it needs
/// percent-decoding, whitespace, quoting or backtracking.
fn plain_sip_parts(s: &str, sips: bool) -> Option<(SipParts, &str)> {
    let rest = s.strip_prefix(if sips { "sips:" } else { "sip:" })?;
    let semi = rest.bytes().position(|b| b == b';').unwrap_or(rest.len());
    let (user_host, params) = (rest.get(..semi)?, rest.get(semi..)?);
    let mut equals = false;
    for b in params.bytes() {
        match b {
            b';' => equals = false,
            b'=' if !equals => equals = true,
            b if is_plain_byte(b) => {}
            _ => return None,
        }
    }
    let (user, host_port) = match user_host.bytes().position(|b| b == b'@') {
        Some(at) => {
            let user = user_host.get(..at)?;
            if user.is_empty() || !user.bytes().all(is_plain_byte) {
                return None;
            }
            (Some(user.to_owned()), user_host.get(at + 1..)?)
        }
        None => (None, user_host),
    };
    let (host, ip, port) = plain_host_port(host_port)?;
    let parts = SipParts {
        user,
        host,
        ip,
        port,
    };
    Some((parts, params))
}

/// A plain `host [":" port]` (see [`plain_sip_parts`]): the host as written, its address, the
/// port. `None` for anything else.
fn plain_host_port(host_port: &str) -> Option<(String, Option<IpAddr>, Option<u16>)> {
    let (host, port) = match host_port.bytes().position(|b| b == b':') {
        Some(colon) => {
            let port = host_port.get(colon + 1..)?;
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (host_port.get(..colon)?, Some(port.parse::<u16>().ok()?))
        }
        None => (host_port, None),
    };
    let first = host.bytes().next()?;
    let ip = if first.is_ascii_digit() {
        Some(IpAddr::V4(plain_ipv4(host)?))
    } else if first.is_ascii_alphabetic() && is_plain_host_name(host) {
        None
    } else {
        return None;
    };
    // Without leading zeros an address is written as `Display` writes it.
    Some((host.to_owned(), ip, port))
}

/// Unreserved characters of a user or parameter that need no percent-decoding: letters,
/// digits and `-_.!~*'+` (RFC 3261 section 25.1; all in the grammar's sets for both).
fn is_plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'+')
}

/// Dotted decimal, each of the four numbers 0-255 without a leading zero (an address with
/// one the grammar reads as a host name).
fn plain_ipv4(s: &str) -> Option<Ipv4Addr> {
    // Digit by digit: `split` and `parse` cost several hundred instructions an address.
    let mut octets = [0u8; 4];
    let mut bytes = s.bytes().peekable();
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 && bytes.next() != Some(b'.') {
            return None;
        }
        let (mut value, mut digits) = (0u16, 0);
        while let Some(d) = bytes.next_if(u8::is_ascii_digit) {
            if (digits == 1 && value == 0) || digits == 3 {
                return None;
            }
            value = value * 10 + u16::from(d - b'0');
            digits += 1;
        }
        if digits == 0 {
            return None;
        }
        *octet = u8::try_from(value).ok()?;
    }
    bytes.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// Labels of letters, digits and inner hyphens, the first led by a letter, no final dot
/// (RFC 3261 section 25.1 `hostname`).
fn is_plain_host_name(s: &str) -> bool {
    s.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// How many parsed SIP URIs [`RECENT`] keeps before it starts over, and the longest URI it
/// keeps (longer ones are rare and parsed each time), so it stays within about 200 KiB.
const MAX_CACHED_URIS: usize = 512;
const MAX_CACHED_URI_LEN: usize = 256;

thread_local! {
    /// SIP URIs parsed recently on this thread, by their exact text (the scheme included, so
    /// `sips` is part of the key). A dialog's messages repeat the same From, To, Contact and
    /// Route URIs, and the SIP URI grammar costs about 8,000 instructions a URI. The result
    /// depends on the text alone, so a hit answers exactly what parsing would, errors included.
    static RECENT: RefCell<HashMap<Box<str>, Result<Uri, SipError>>> =
        RefCell::new(HashMap::new());
}

/// An IP address as text, exactly as `Display` writes it (IPv6 without brackets). IPv4, the
/// common case, is written here directly: `Display` goes through the formatter (about 1,200
/// instructions an address), and every Via, Contact and URI the gateway reads or writes has one.
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            push_ipv4(&mut out, v4);
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// `ip:port` (IPv6 as `[ip]:port`), exactly as `SocketAddr`'s `Display` writes it.
pub fn socket_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => {
            let mut out = String::with_capacity(21);
            push_ipv4(&mut out, *v4.ip());
            out.push(':');
            push_decimal(&mut out, v4.port());
            out
        }
        SocketAddr::V6(_) => addr.to_string(),
    }
}

fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, u16::from(octet));
    }
}

/// `n` in decimal without leading zeros.
pub(super) fn push_decimal(out: &mut String, n: u16) {
    if n >= 10 {
        push_decimal(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

fn host_string(hp: &HostPort) -> (String, Option<IpAddr>) {
    match &hp.host {
        Host::IP4(ip) => (ip_text(IpAddr::V4(*ip)), Some(IpAddr::V4(*ip))),
        Host::IP6(ip) => (format!("[{ip}]"), Some(IpAddr::V6(*ip))),
        Host::Name(n) => (n.to_string(), None),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `[display-name] <URI> *(;param)` or `URI *(;param)` (RFC 3261 section 20.10, 25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Vec<Param>,
}

impl NameAddr {
    /// Parses one value of From, To, Contact, Route...
    pub fn parse(s: &str, header: &'static str) -> Result<NameAddr, SipError> {
        let bad = |why| SipError::BadHeader { name: header, why };
        let s = s.trim();
        // Find '<' outside a quoted string.
        let mut quoting = Quoting::default();
        let mut lt = None;
        for (i, c) in s.char_indices() {
            if !quoting.quoted(c) && c == '<' {
                lt = Some(i);
                break;
            }
        }
        if quoting.inside {
            return Err(bad("unterminated quoted string"));
        }
        match lt {
            Some(lt) => {
                let display = s.get(..lt).unwrap_or("").trim();
                let display = if display.is_empty() {
                    None
                } else if display.starts_with('"') {
                    let (d, rest) =
                        split_quoted(display).ok_or(bad("unterminated quoted string"))?;
                    if !rest.trim().is_empty() {
                        return Err(bad("text after quoted display name"));
                    }
                    Some(d)
                } else {
                    if !display
                        .split([' ', '\t'])
                        .filter(|w| !w.is_empty())
                        .all(|w| w.bytes().all(is_token_byte))
                    {
                        return Err(bad("display name must be tokens or a quoted string"));
                    }
                    Some(display.to_owned())
                };
                let after = s.get(lt + 1..).unwrap_or("");
                let gt = after.find('>').ok_or(bad("missing '>'"))?;
                let uri = after.get(..gt).unwrap_or("");
                if uri.starts_with([' ', '\t']) || uri.ends_with([' ', '\t']) {
                    return Err(bad("whitespace inside <>"));
                }
                let uri = Uri::parse(uri).map_err(|_| bad("malformed URI"))?;
                let params = parse_params(after.get(gt + 1..).unwrap_or(""), header)?;
                Ok(NameAddr {
                    display,
                    uri,
                    params,
                })
            }
            None => {
                // addr-spec: parameters after the URI belong to the header, and the URI may
                // contain neither '?' nor ',' (RFC 3261 section 20.10).
                let (uri, params) = match s.find(';') {
                    Some(i) => (s.get(..i).unwrap_or(""), s.get(i..).unwrap_or("")),
                    None => (s, ""),
                };
                if uri.contains('?') {
                    return Err(bad("URI with headers must be enclosed in <>"));
                }
                let uri = Uri::parse(uri.trim()).map_err(|_| bad("malformed URI"))?;
                let params = parse_params(params, header)?;
                Ok(NameAddr {
                    display: None,
                    uri,
                    params,
                })
            }
        }
    }

    /// Parses the value of a single-valued header (From, To): a list is an error.
    pub fn parse_single(s: &str, header: &'static str) -> Result<NameAddr, SipError> {
        let mut it = split_list(s);
        let first = it.next().unwrap_or("");
        if it.next().is_some() {
            return Err(SipError::BadHeader {
                name: header,
                why: "more than one value",
            });
        }
        let na = NameAddr::parse(first, header)?;
        na.check_tag(header)?;
        Ok(na)
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").and_then(|p| p.value.as_deref())
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        find_param(&self.params, name)
    }

    /// `tag-param = "tag" EQUAL token` (RFC 3261 section 25.1): a tag without a value, or one
    /// that is not a token (a quoted string, control characters), cannot identify a dialog.
    fn check_tag(&self, header: &'static str) -> Result<(), SipError> {
        match self.param("tag") {
            None => Ok(()),
            Some(Param { value: Some(v), .. }) if !v.is_empty() && v.bytes().all(is_token_byte) => {
                Ok(())
            }
            Some(_) => Err(SipError::BadHeader {
                name: header,
                why: "tag is not a token",
            }),
        }
    }
}

/// One Via value: `SIP/2.0/transport sent-by *(;params)` (RFC 3261 section 20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub params: Vec<Param>,
    /// The value as written, for copying into responses.
    pub raw: String,
}

impl Via {
    pub fn parse(s: &str) -> Result<Via, SipError> {
        let bad = |why| SipError::BadHeader { name: "Via", why };
        let raw = s.trim();
        let (head, params) = match raw.find(';') {
            Some(i) => (raw.get(..i).unwrap_or(""), raw.get(i..).unwrap_or("")),
            None => (raw, ""),
        };
        // sent-protocol with optional LWS around each '/'.
        let mut slash = head.splitn(3, '/');
        let (Some(name), Some(version), Some(rest)) = (slash.next(), slash.next(), slash.next())
        else {
            return Err(bad("malformed sent-protocol"));
        };
        if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Err(bad("sent-protocol is not SIP/2.0"));
        }
        let rest = rest.trim_start();
        let split = rest.find([' ', '\t']).ok_or(bad("missing sent-by"))?;
        let transport = rest.get(..split).unwrap_or("");
        let sent_by = rest.get(split..).unwrap_or("").trim();
        if transport.is_empty() || !transport.bytes().all(is_token_byte) {
            return Err(bad("invalid transport"));
        }
        if sent_by.is_empty() || sent_by.contains([' ', '\t']) {
            return Err(bad("invalid sent-by"));
        }
        // A plain one by hand (see `plain_host_port`), else by the grammar.
        let (host, ip, port) = match plain_host_port(sent_by) {
            Some(plain) => plain,
            None => {
                let hp = HostPort::from_str(sent_by).map_err(|_| bad("invalid sent-by"))?;
                let (host, ip) = host_string(&hp);
                (host, ip, hp.port)
            }
        };
        // No address: a host name (`host_string`).
        if ip.is_none() && host.contains(':') {
            return Err(bad("IPv6 sent-by without brackets"));
        }
        // sent-by = host [ COLON port ], host = hostname / IPv4address / IPv6reference.
        if ip.is_none() && !is_hostname(&host) {
            return Err(bad("sent-by host is neither a host name nor an IP address"));
        }
        if port == Some(0) {
            return Err(bad("sent-by port 0"));
        }
        let params = parse_params(params, "Via")?;
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            ip,
            port,
            params,
            raw: raw.to_owned(),
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").and_then(|p| p.value.as_deref())
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        find_param(&self.params, name)
    }
}

/// `CSeq: number method` (RFC 3261 section 20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, SipError> {
        let bad = |why| SipError::BadHeader { name: "CSeq", why };
        let mut parts = s.split([' ', '\t']).filter(|p| !p.is_empty());
        let (Some(n), Some(m), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected 'number method'"));
        };
        let seq = parse_decimal(n, MAX_CSEQ).ok_or(bad("sequence number not below 2**31"))?;
        if !m.bytes().all(is_token_byte) {
            return Err(bad("method is not a token"));
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(m),
        })
    }
}

/// `type/subtype *(;param)` of Content-Type and Accept, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub kind: String,
    pub subtype: String,
    pub params: Vec<Param>,
}

impl MediaType {
    pub fn parse(s: &str) -> Result<MediaType, SipError> {
        let bad = |why| SipError::BadHeader {
            name: "Content-Type",
            why,
        };
        let (essence, params) = match s.find(';') {
            Some(i) => (s.get(..i).unwrap_or(""), s.get(i..).unwrap_or("")),
            None => (s, ""),
        };
        let (kind, subtype) = essence.split_once('/').ok_or(bad("missing '/'"))?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        let ok = |t: &str| !t.is_empty() && t.bytes().all(is_token_byte);
        if !ok(kind) || !ok(subtype) {
            return Err(bad("invalid type or subtype"));
        }
        Ok(MediaType {
            kind: kind.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            params: parse_params(params, "Content-Type")?,
        })
    }

    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind == kind && self.subtype == subtype
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name).and_then(|p| p.value.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte scans split where the character scans they replaced did.
    #[test]
    fn byte_scans_split_as_character_scans() {
        fn by_chars(value: &str, sep: char, angles: bool) -> Vec<&str> {
            let (mut out, mut quoting, mut in_angle, mut start) =
                (Vec::new(), Quoting::default(), false, 0);
            for (i, c) in value.char_indices() {
                if quoting.quoted(c) {
                    continue;
                }
                match c {
                    '<' if angles => in_angle = true,
                    '>' if angles => in_angle = false,
                    c if c == sep && !in_angle => {
                        out.push(value.get(start..i).unwrap_or(""));
                        start = i + c.len_utf8();
                    }
                    _ => {}
                }
            }
            out.push(value.get(start..).unwrap_or(""));
            out
        }
        let pieces = ["a", "\\", "\"", ",", ";", "<", ">", "é", "\\é", " ", "x=1"];
        let mut seed: u64 = 7;
        for _ in 0..50_000 {
            let mut s = String::new();
            for _ in 0..seed % 12 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                s.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            seed = seed.wrapping_add(1);
            let list: Vec<&str> = split_list(&s).collect();
            let expected: Vec<&str> = by_chars(&s, ',', true).into_iter().map(str::trim).collect();
            assert_eq!(list, expected, "{s:?}");
            assert_eq!(
                split_outside_quotes(&s, b';'),
                by_chars(&s, ';', false),
                "{s:?}"
            );
        }
    }

    /// Every URI the hand path reads, the grammar reads the same: a table of the common and
    /// the tricky, then random texts over the characters that matter to either.
    #[test]
    fn plain_sip_uris_read_as_the_grammar_reads_them() {
        let check = |s: &str| {
            for sips in [false, true] {
                if let Some((parts, params)) = plain_sip_parts(s, sips) {
                    let grammar = grammar_sip_parts(s);
                    assert_eq!(grammar.as_ref().ok(), Some(&parts), "{s:?}: {grammar:?}");
                    assert_eq!(
                        Uri::sip_uri(s, sips, parts, params, None),
                        Uri::parse_sip_uncached(s, sips),
                        "{s:?}"
                    );
                }
            }
        };
        let table = [
            "sip:+49301435224@192.0.2.179:53890;transport=udp",
            "sip:bob@example.com",
            "sips:bob@example.com:5061;lr",
            "sip:198.51.100.80",
            "sip:198.51.100.80;lr;x=",
            "sip:a-b.c@h-1.example.org;user=phone",
            "sip:0.0.0.0:0",
            "sip:255.255.255.255:65535",
            "sip:01.2.3.4",
            "sip:256.1.1.1",
            "sip:1.2.3.4.5",
            "sip:1.2.3",
            "sip:1.2.3.04",
            "sip:1.2.3.00",
            "sip:1.2.3.4.",
            "sip:1.2.3.1000",
            "sip:1.2..3",
            "sip:1and1.com",
            "sip:a@1.2.3.4x",
            "sip:a..b",
            "sip:a.b.",
            "sip:-a.b",
            "sip:a-.b",
            "sip:a@b:",
            "sip:a@b:99999",
            "sip:a@b:123456",
            "sip:a@b;x=1=2",
            "sip:a;b@c",
            "sip:a@b@c",
            "sip:@b",
            "sip::b",
            "sip:a:pw@b",
            "sip:%61@b",
            "sip:a@b?x=1",
            "sip:a@[::1]",
            "SIP:a@b",
        ];
        for s in table {
            check(s);
        }
        assert!(plain_sip_parts(table[0], false).is_some());
        assert!(plain_sip_parts(table[2], true).is_some());
        let pieces = [
            "a", "bZ", "x-y", "0", "1", "25", "255", "256", "01", "9", ".", ".", "-", ":", ":",
            "5060", "65536", ";", ";", "=", "@", "@", "lr", "_", "~", "+", "%41", "[", "]", "?",
            " ", "é", "user", "1.2.3.4",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let mut plain = 0;
        for _ in 0..200_000 {
            let mut s = String::from(if next() % 4 == 0 { "sips:" } else { "sip:" });
            for _ in 0..next() % 10 {
                s.push_str(pieces[next() % pieces.len()]);
            }
            check(&s);
            let host_port = s.rsplit('@').next().unwrap_or("");
            if let Some(plain) = plain_host_port(host_port) {
                let hp = HostPort::from_str(host_port).unwrap();
                let (host, ip) = host_string(&hp);
                assert_eq!(plain, (host, ip, hp.port), "{host_port:?}");
            }
            let sips = s.starts_with("sips:");
            if plain_sip_parts(&s, sips).is_some() {
                plain += 1;
                assert_eq!(Uri::parse(&s), Uri::parse_sip_uncached(&s, sips), "{s:?}");
            }
        }
        // The random texts reach the hand path often enough to mean something.
        assert!(plain > 5_000, "{plain}");
    }

    #[test]
    fn ip_text_is_display() {
        use std::net::{Ipv6Addr, SocketAddrV6};
        for ip in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 0, 1],
            [192, 0, 2, 109],
            [198, 51, 100, 80],
            [1, 20, 100, 250],
        ] {
            let v4 = Ipv4Addr::from(ip);
            assert_eq!(super::ip_text(IpAddr::V4(v4)), v4.to_string());
            for port in [0, 9, 10, 99, 100, 5060, 9999, 10000, 65535] {
                let a = SocketAddr::from((v4, port));
                assert_eq!(super::socket_text(a), a.to_string());
            }
        }
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
        assert_eq!(super::ip_text(IpAddr::V6(v6)), v6.to_string());
        let a = SocketAddr::V6(SocketAddrV6::new(v6, 5060, 0, 3));
        assert_eq!(super::socket_text(a), a.to_string());
    }

    #[test]
    fn lists_respect_quotes_and_angles() {
        let v: Vec<_> = split_list(r#""a,b" <sip:x@y;p=1,2>, <sip:z@w>"#).collect();
        assert_eq!(v, vec![r#""a,b" <sip:x@y;p=1,2>"#, "<sip:z@w>"]);
    }

    #[test]
    fn name_addr_table() {
        let ok = [
            (
                r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
                Some(r#"J Rosenberg \""#),
                "98asjd8",
            ),
            (
                "sip:caller@example.net;tag=134161461246",
                None,
                "134161461246",
            ),
            (
                "caller<sip:caller@example.com>;tag=323",
                Some("caller"),
                "323",
            ),
            ("<sip:user@[2001:db8::10]>;tag=1", None, "1"),
            ("<tel:+1-555-1234>;tag=9", None, "9"),
        ];
        for (s, display, tag) in ok {
            let na = NameAddr::parse(s, "From").unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(na.display.as_deref(), display, "{s}");
            assert_eq!(na.tag(), Some(tag), "{s}");
        }
        let bad = [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "< sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            r#""Joe" <sip:joe@example.org>;;;;"#,
        ];
        for s in bad {
            assert!(NameAddr::parse(s, "To").is_err(), "{s}");
        }
    }

    #[test]
    fn uris() {
        let u = Uri::parse("sip:user@[2001:db8::10]:5070;transport=tcp").unwrap();
        assert_eq!(u.ip, Some("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(
            u.param("transport").and_then(|p| p.value.as_deref()),
            Some("tcp")
        );
        let u = Uri::parse("sip:[2001:db8::10:5070]").unwrap();
        assert_eq!(u.ip, Some("2001:db8::10:5070".parse().unwrap()));
        assert_eq!(u.port, None);
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert!(!u.is_known_scheme());
        assert!(Uri::parse("soap.beep://192.0.2.103:3002")
            .unwrap()
            .is_known_scheme());
        let u = Uri::parse("sip:user@example.com?Route=%3Csip:example.com%3E").unwrap();
        assert!(u.headers.is_some());
    }

    #[test]
    fn vias() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
                .unwrap();
        assert_eq!(v.ip, Some("2001:db8::9:1".parse().unwrap()));
        assert_eq!(
            v.param("received").and_then(|p| p.value.as_deref()),
            Some("2001:db8::9:255")
        );
        let v = Via::parse("SIP/2.0/TCP spindle.example.com   ; branch  =   z9hG4bK9ikj8").unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("").is_err());
        assert!(Via::parse("SIP/3.0/UDP h").is_err());
    }

    #[test]
    fn hostnames() {
        let long_label = "a".repeat(MAX_LABEL_LEN);
        let longest = [long_label.as_str(); 4]
            .join(".")
            .get(..MAX_HOSTNAME_LEN)
            .unwrap_or("")
            .to_owned();
        for (host, ok) in [
            ("example.com", true),
            ("example.com.", true),
            ("h", true),
            ("host-of-the-hour.example.com", true),
            ("10.10.10.a", true),
            ("v.x.y.z", true),
            ("a1.example", true),
            (long_label.as_str(), true),
            (longest.as_str(), true),
            ("", false),
            (".", false),
            ("a..b", false),
            (".example.com", false),
            ("10.10.10.256", false),
            ("10.10.10.4095", false),
            ("192.0.2.15060", false),
            ("example.123", false),
            ("-example.com", false),
            ("example-.com", false),
            ("exa_mple.com", false),
            ("exa mple.com", false),
            ("ex\0ample.com", false),
            (&format!("{long_label}a"), false),
            (&format!("{longest}a"), false),
        ] {
            assert_eq!(is_hostname(host), ok, "{host:?}");
        }
    }

    #[test]
    fn via_sent_by() {
        for (sent_by, ok) in [
            ("192.0.2.1:5060", true),
            ("192.0.2.1", true),
            ("[2001:db8::9:1]:5061", true),
            ("pc33.atlanta.com:1", true),
            ("192.0.2.1:65535", true),
            ("0.10.10.0", true),
            // PROTOS c07-sip sip-via-hostport 452, sip-via-host 332, 334, 436.
            ("192.0.2.1:0", false),
            ("[2001:db8::1]:0", false),
            ("pc33.atlanta.com:0", false),
            ("10.10.10.256:5060", false),
            ("10.10.10.4095:5060", false),
            ("192.0.2.15060", false),
            ("192.0.2.1:65536", false),
            ("a.-b.example:5060", false),
        ] {
            let v = format!("SIP/2.0/UDP {sent_by};branch=z9hG4bK74bf9");
            assert_eq!(Via::parse(&v).is_ok(), ok, "{v}");
        }
    }

    #[test]
    fn user_parts() {
        for (uri, user) in [
            ("sip:alice@example.com", Ok(Some("alice"))),
            ("sip:alice:pw@example.com", Ok(Some("alice"))),
            ("sip:example.com", Ok(None)),
            // Escaped controls are valid (RFC 4475 section 3.1.1.4); ezk decodes them.
            ("sip:null-%00-null@example.com", Ok(Some("null-\0-null"))),
            // PROTOS c07-sip sip-request-uri 231, sip-from-uri 933.
            ("sip:@sip.no.invalid", Err(())),
            ("sips:@example.com", Err(())),
            ("sip::pw@example.com", Err(())),
            ("sip:al\0ice@example.com", Err(())),
            ("sip:al\x01ice@example.com", Err(())),
        ] {
            let got = Uri::parse(uri).map(|u| u.user).map_err(|_| ());
            assert_eq!(got, user.map(|u| u.map(str::to_owned)), "{uri:?}");
        }
    }

    #[test]
    fn tags_are_tokens() {
        for (from, tag) in [
            ("<sip:a@example.com>;tag=1928301774", Ok(Some("1928301774"))),
            ("<sip:a@example.com>;tag=%.999d", Ok(Some("%.999d"))),
            ("<sip:a@example.com>", Ok(None)),
            ("<sip:a@example.com>;tagtoken", Ok(None)),
            ("<sip:a@example.com>;tag", Err(())),
            ("<sip:a@example.com>;tag=\"a b\"", Err(())),
            ("<sip:a@example.com>;tag=\"ab\"", Err(())),
            ("<sip:a@example.com>;tag=\"a\\\0b\"", Err(())),
            ("<sip:a@example.com>;tag=a\0b", Err(())),
        ] {
            let got = NameAddr::parse_single(from, "From")
                .map(|na| na.tag().map(str::to_owned))
                .map_err(|_| ());
            assert_eq!(got, tag.map(|t| t.map(str::to_owned)), "{from:?}");
        }
    }

    #[test]
    fn cseq_and_numbers() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert_eq!(parse_decimal("0068", 255), Some(68));
        assert_eq!(parse_decimal("300", 255), None);
        assert_eq!(parse_decimal("-1", 255), None);
    }

    #[test]
    fn media_types() {
        let m = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(m.is("multipart", "mixed"));
        assert_eq!(m.param("boundary"), Some("7a9cbec02ceef655"));
        assert!(MediaType::parse("application sdp").is_err());
    }
}
