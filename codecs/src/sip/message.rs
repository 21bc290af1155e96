//! A parsed SIP message: start line, raw header multimap, body, and the exact original bytes.

use super::error::SipError;
use super::grammar::{self, CSeq, MediaType, NameAddr, Uri, Via};
use super::{Method, MAX_HEADERS, MAX_HEADER_LEN, MAX_MAX_FORWARDS, MAX_VIAS};
use bytes::Bytes;
use ezk_sip_types::Name;
use std::borrow::Cow;
use std::sync::OnceLock;

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request(RequestLine),
    Response(StatusLine),
}

/// `Method SP Request-URI SP SIP-Version` (RFC 3261 section 7.1). The version is kept as
/// written so the policy can answer 505 rather than 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: Method,
    pub uri: String,
    pub version: String,
}

/// `SIP-Version SP Status-Code SP Reason-Phrase` (RFC 3261 section 7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub version: String,
    pub code: u16,
    pub reason: String,
}

/// Ordered header fields as received, names normalized (compact forms resolved), values
/// unfolded and trimmed.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// Name, its canonical spelling (compact forms resolved) for fast comparison, value. The
    /// spelling of a common name is borrowed from [`COMMON_NAMES`].
    entries: Vec<(Name, Cow<'static, str>, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `n` fields (a parsed message has a dozen or so).
    fn with_capacity(n: usize) -> Self {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// All values of a header, each as written (a comma list stays one value).
    pub fn all<'a>(&'a self, name: &'a Name) -> impl Iterator<Item = &'a str> + 'a {
        let canonical = name.as_print_str();
        self.entries
            .iter()
            .filter(move |(_, c, _)| c.eq_ignore_ascii_case(canonical))
            .map(|(_, _, v)| v.as_str())
    }

    /// The single value of a header that must appear at most once.
    pub fn single<'a>(
        &'a self,
        name: &'a Name,
        label: &'static str,
    ) -> Result<Option<&'a str>, SipError> {
        let mut it = self.all(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(SipError::DuplicateHeader(label));
        }
        Ok(first)
    }

    /// Like [`Headers::single`] but the header must be present.
    pub fn required<'a>(
        &'a self,
        name: &'a Name,
        label: &'static str,
    ) -> Result<&'a str, SipError> {
        self.single(name, label)?
            .ok_or(SipError::MissingHeader(label))
    }

    /// Every value of a list header (several fields and comma-separated values alike).
    pub fn list<'a>(&'a self, name: &'a Name) -> impl Iterator<Item = &'a str> + 'a {
        self.all(name).flat_map(grammar::split_list)
    }

    /// Where the single value of a header that must appear exactly once is.
    fn required_at(&self, name: &Name, label: &'static str) -> Result<usize, SipError> {
        let canonical = name.as_print_str();
        let mut at = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (_, c, _))| c.eq_ignore_ascii_case(canonical))
            .map(|(i, _)| i);
        let first = at.next().ok_or(SipError::MissingHeader(label))?;
        if at.next().is_some() {
            return Err(SipError::DuplicateHeader(label));
        }
        Ok(first)
    }

    /// The value of the field at `at` (from [`Headers::required_at`]).
    fn value_at(&self, at: usize) -> &str {
        self.entries.get(at).map_or("", |(_, _, v)| v.as_str())
    }

    pub fn contains(&self, name: &Name) -> bool {
        self.all(name).next().is_some()
    }

    pub fn push(&mut self, name: Name, value: impl Into<String>) {
        let canonical = Cow::Owned(name.as_print_str().to_owned());
        self.entries.push((name, canonical, value.into()));
    }

    /// A header field as the parser read it: its name resolved by [`header_name`].
    fn push_read(&mut self, name: &str, value: &str) {
        let (name, canonical) = header_name(name);
        self.entries.push((name, canonical, value.to_owned()));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Name, &str)> {
        self.entries.iter().map(|(n, _, v)| (n, v.as_str()))
    }
}

/// One SIP message. `raw` holds exactly the bytes it was parsed from (head and body).
#[derive(Debug, Clone)]
pub struct Message {
    raw: Bytes,
    start: StartLine,
    headers: Headers,
    body_start: usize,
    /// Typed headers, parsed on first use: the transaction layer, the policy and the
    /// translators all ask for the same few.
    parsed: Parsed,
}

#[derive(Debug, Clone, Default)]
struct Parsed {
    from: OnceLock<Result<NameAddr, SipError>>,
    to: OnceLock<Result<NameAddr, SipError>>,
    vias: OnceLock<Result<Vec<Via>, SipError>>,
    cseq: OnceLock<Result<CSeq, SipError>>,
    contacts: OnceLock<Result<Vec<NameAddr>, SipError>>,
    /// Where the Call-ID is among the headers, once found and checked.
    call_id: OnceLock<Result<usize, SipError>>,
    request_uri: OnceLock<Result<Uri, SipError>>,
    /// The result of [`Message::check`] (a message never changes once parsed).
    check: OnceLock<Result<(), SipError>>,
}

impl Message {
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn start(&self) -> &StartLine {
        &self.start
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn body(&self) -> Bytes {
        self.raw.slice(self.body_start.min(self.raw.len())..)
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request(_))
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request(r) => Some(&r.method),
            StartLine::Response(_) => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Request(_) => None,
            StartLine::Response(s) => Some(s.code),
        }
    }

    /// One line for transcripts: "INVITE sip:bob@example.com" or "200 OK (INVITE)".
    pub fn summary(&self) -> String {
        match &self.start {
            StartLine::Request(r) => [r.method.as_str(), " ", &r.uri].concat(),
            StartLine::Response(s) => {
                let method = self
                    .cseq()
                    .map(|c| c.method.to_string())
                    .unwrap_or_default();
                if method.is_empty() {
                    format!("{} {}", s.code, s.reason)
                } else {
                    format!("{} {} ({method})", s.code, s.reason)
                }
            }
        }
    }

    /// The Call-ID: `word [ "@" word ]` (RFC 3261 section 25.1), read leniently as one or
    /// two non-empty runs of visible characters (some UAs use characters `word` lacks, such
    /// as `=`); whitespace, control characters and an empty side of `@` are refused.
    ///
    /// Found and checked once per message (the router, the policy and the leg all ask).
    pub fn call_id(&self) -> Result<&str, SipError> {
        let at = self
            .parsed
            .call_id
            .get_or_init(|| {
                let at = self.headers.required_at(&Name::CALL_ID, "Call-ID")?;
                check_call_id(self.headers.value_at(at))?;
                Ok(at)
            })
            .clone()?;
        Ok(self.headers.value_at(at))
    }

    pub fn cseq(&self) -> Result<CSeq, SipError> {
        self.parsed
            .cseq
            .get_or_init(|| CSeq::parse(self.headers.required(&Name::CSEQ, "CSeq")?))
            .clone()
    }

    pub fn from(&self) -> Result<&NameAddr, SipError> {
        self.parsed
            .from
            .get_or_init(|| {
                NameAddr::parse_single(self.headers.required(&Name::FROM, "From")?, "From")
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    pub fn to(&self) -> Result<&NameAddr, SipError> {
        self.parsed
            .to
            .get_or_init(|| NameAddr::parse_single(self.headers.required(&Name::TO, "To")?, "To"))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// All Via values, topmost first.
    pub fn vias(&self) -> Result<&[Via], SipError> {
        self.parsed
            .vias
            .get_or_init(|| {
                let mut out = Vec::new();
                for v in self.headers.list(&Name::VIA) {
                    if out.len() >= MAX_VIAS {
                        return Err(SipError::TooManyVias { limit: MAX_VIAS });
                    }
                    out.push(Via::parse(v)?);
                }
                Ok(out)
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    pub fn contacts(&self) -> Result<&[NameAddr], SipError> {
        self.parsed
            .contacts
            .get_or_init(|| {
                let mut out = Vec::new();
                for v in self.headers.list(&Name::CONTACT) {
                    if v == "*" {
                        continue;
                    }
                    out.push(NameAddr::parse(v, "Contact")?);
                }
                Ok(out)
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    /// The Request-URI, parsed on first use (the policy, the call table and the leg all read
    /// it). A response has none.
    pub fn request_uri(&self) -> Result<&Uri, SipError> {
        let StartLine::Request(r) = &self.start else {
            return Err(SipError::BadStartLine("a response has no Request-URI"));
        };
        self.parsed
            .request_uri
            .get_or_init(|| Uri::parse(&r.uri))
            .as_ref()
            .map_err(Clone::clone)
    }

    pub fn max_forwards(&self) -> Result<Option<u32>, SipError> {
        match self.headers.single(&Name::MAX_FORWARDS, "Max-Forwards")? {
            None => Ok(None),
            Some(v) => {
                let n = grammar::parse_decimal(v, MAX_MAX_FORWARDS).ok_or(SipError::BadHeader {
                    name: "Max-Forwards",
                    why: "not a number in 0-255",
                })?;
                Ok(Some(n))
            }
        }
    }

    pub fn content_length(&self) -> Result<Option<usize>, SipError> {
        content_length(&self.headers)
    }

    pub fn content_type(&self) -> Result<Option<MediaType>, SipError> {
        match self.headers.single(&Name::CONTENT_TYPE, "Content-Type")? {
            None => Ok(None),
            Some(v) => MediaType::parse(v).map(Some),
        }
    }

    /// Option tags of a Require/Supported/Proxy-Require style header.
    pub fn option_tags<'a>(&'a self, name: &'a Name) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.list(name).filter(|t| !t.is_empty())
    }
}

/// The Call-ID: `word [ "@" word ]` (RFC 3261 section 25.1), read leniently (see
/// [`Message::call_id`]).
fn check_call_id(v: &str) -> Result<(), SipError> {
    let bad = |why| SipError::BadHeader {
        name: "Call-ID",
        why,
    };
    if v.is_empty() || v.chars().any(|c| c.is_whitespace()) {
        return Err(bad("empty or contains whitespace"));
    }
    if v.chars().any(char::is_control) {
        return Err(bad("control character"));
    }
    if let Some((local, host)) = v.split_once('@') {
        if local.is_empty() || host.is_empty() {
            return Err(bad("empty word around '@'"));
        }
    }
    Ok(())
}

pub(super) fn content_length(headers: &Headers) -> Result<Option<usize>, SipError> {
    match headers.single(&Name::CONTENT_LENGTH, "Content-Length")? {
        None => Ok(None),
        Some(v) => {
            let n = grammar::parse_decimal(v, u32::MAX).ok_or(SipError::BadHeader {
                name: "Content-Length",
                why: "not a non-negative number",
            })?;
            Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
        }
    }
}

/// Parses a header section (start line and header fields, without the blank line).
pub(super) fn parse_head(head: &str) -> Result<(StartLine, Headers), SipError> {
    let mut lines = LineIter {
        rest: head,
        line_no: 0,
    };
    let first = lines.next().ok_or(SipError::Empty)?;
    let start = parse_start_line(&first)?;
    let mut headers = Headers::with_capacity(16);
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(SipError::TooManyHeaders { limit: MAX_HEADERS });
        }
        let line_no = headers.len() + 2;
        let colon = line
            .bytes()
            .position(|b| b == b':')
            .ok_or(SipError::BadHeaderLine { line: line_no })?;
        let name = trim_wsp_end(line.get(..colon).unwrap_or(""));
        if name.is_empty() || !name.bytes().all(grammar::is_token_byte) {
            return Err(SipError::BadHeaderLine { line: line_no });
        }
        let value = trim_wsp(line.get(colon + 1..).unwrap_or(""));
        if value.len() > MAX_HEADER_LEN {
            return Err(SipError::HeaderTooLong {
                name: name.to_owned(),
                limit: MAX_HEADER_LEN,
            });
        }
        headers.push_read(name, value);
    }
    Ok((start, headers))
}

/// `s` without the spaces and tabs at its end. Byte by byte, as both are ASCII (the cut is
/// a char boundary): cheaper than a `[' ', '\t']` pattern for every header line.
fn trim_wsp_end(s: &str) -> &str {
    let end = s
        .bytes()
        .rposition(|b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    s.get(..end).unwrap_or("")
}

/// `s` without the spaces and tabs at both ends (see [`trim_wsp_end`]).
fn trim_wsp(s: &str) -> &str {
    let s = trim_wsp_end(s);
    let start = s
        .bytes()
        .position(|b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    s.get(start..).unwrap_or("")
}

/// Header lines after the start line, skipping lines that are not `name: value`.
pub(super) fn parse_header_lines_lenient(head: &str) -> Headers {
    let mut headers = Headers::with_capacity(16);
    for line in (LineIter {
        rest: head,
        line_no: 0,
    })
    .skip(1)
    {
        if headers.len() >= MAX_HEADERS {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(grammar::is_token_byte) {
            continue;
        }
        let value = value.trim_matches([' ', '\t']);
        if value.len() <= MAX_HEADER_LEN {
            headers.push_read(name, value);
        }
    }
    headers
}

/// The header names of nearly every message, in the spelling of nearly every UA (each the
/// name's canonical spelling, which a test checks).
static COMMON_NAMES: [(&str, Name); 15] = [
    ("Via", Name::VIA),
    ("From", Name::FROM),
    ("To", Name::TO),
    ("Call-ID", Name::CALL_ID),
    ("CSeq", Name::CSEQ),
    ("Contact", Name::CONTACT),
    ("Max-Forwards", Name::MAX_FORWARDS),
    ("Content-Type", Name::CONTENT_TYPE),
    ("Content-Length", Name::CONTENT_LENGTH),
    ("Record-Route", Name::RECORD_ROUTE),
    ("Route", Name::ROUTE),
    ("Allow", Name::ALLOW),
    ("Supported", Name::SUPPORTED),
    ("User-Agent", Name::USER_AGENT),
    ("Require", Name::REQUIRE),
];

/// A header name as `Name::from` resolves it (compact forms and any case to the known name),
/// and its canonical spelling. A name written exactly as a common one's canonical spelling is
/// that name: `Name::from` would find the same one after comparing the name with every known
/// spelling in turn.
fn header_name(name: &str) -> (Name, Cow<'static, str>) {
    match COMMON_NAMES.iter().find(|(spelled, _)| *spelled == name) {
        Some((spelled, common)) => (common.clone(), Cow::Borrowed(*spelled)),
        None => {
            let name = Name::from(name.to_owned());
            let canonical = Cow::Owned(name.as_print_str().to_owned());
            (name, canonical)
        }
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (ver, rest) = rest
            .split_once(' ')
            .ok_or(SipError::BadStartLine("no status code"))?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            let n = code.parse::<u64>().unwrap_or(u64::MAX);
            return Err(SipError::BadStatusCode(n));
        }
        let code: u16 = code.parse().map_err(|_| SipError::BadStatusCode(0))?;
        if !(100..=699).contains(&code) {
            return Err(SipError::BadStatusCode(u64::from(code)));
        }
        return Ok(StartLine::Response(StatusLine {
            version: ["SIP/", ver].concat(),
            code,
            reason: reason.to_owned(),
        }));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly two single spaces.
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SipError::BadStartLine(
            "request line must be Method SP Request-URI SP SIP-Version",
        ));
    };
    if method.is_empty() || !method.bytes().all(grammar::is_token_byte) {
        return Err(SipError::BadStartLine("method is not a token"));
    }
    if uri.is_empty() || !version.starts_with("SIP/") {
        return Err(SipError::BadStartLine("not a SIP request line"));
    }
    if uri.bytes().any(|b| b.is_ascii_control() || b == b'\t') {
        return Err(SipError::BadRequestUri("control characters"));
    }
    Ok(StartLine::Request(RequestLine {
        method: Method::from_token(method),
        uri: uri.to_owned(),
        version: version.to_owned(),
    }))
}

/// Checks that a request carries what RFC 3261 section 8.1.1 requires and that single-valued
/// headers are single: To, From, Call-ID, CSeq (matching the method), Via, Max-Forwards range,
/// one Content-Length.
pub(super) fn check_request(msg: &Message) -> Result<(), SipError> {
    let StartLine::Request(req) = &msg.start else {
        return Ok(());
    };
    msg.to()?;
    msg.from()?;
    msg.call_id()?;
    let cseq = msg.cseq()?;
    if cseq.method != req.method {
        return Err(SipError::CSeqMismatch);
    }
    if msg.vias()?.is_empty() {
        return Err(SipError::MissingHeader("Via"));
    }
    msg.max_forwards()?;
    msg.content_length()?;
    msg.content_type()?;
    msg.contacts()?;
    Ok(())
}

/// Checks the headers a response needs to be matched to a transaction.
pub(super) fn check_response(msg: &Message) -> Result<(), SipError> {
    msg.to()?;
    msg.from()?;
    msg.call_id()?;
    msg.cseq()?;
    if msg.vias()?.is_empty() {
        return Err(SipError::MissingHeader("Via"));
    }
    msg.content_length()?;
    Ok(())
}

impl Message {
    pub(super) fn new(raw: Bytes, start: StartLine, headers: Headers, body_start: usize) -> Self {
        Message {
            raw,
            start,
            headers,
            body_start,
            parsed: Parsed::default(),
        }
    }

    /// Checks the mandatory headers and their syntax (see RFC 3261 section 8.1.1); a failure
    /// means a 400 for a request and a silent drop for a response.
    pub fn check(&self) -> Result<(), SipError> {
        self.parsed
            .check
            .get_or_init(|| {
                if self.is_request() {
                    check_request(self)
                } else {
                    check_response(self)
                }
            })
            .clone()
    }
}

/// Iterates over logical header lines: CRLF or LF line ends, continuation lines (starting with
/// SP or HT) folded into one SP (RFC 3261 section 7.3.1).
struct LineIter<'a> {
    rest: &'a str,
    line_no: usize,
}

impl<'a> Iterator for LineIter<'a> {
    /// A line without continuation is borrowed as it is; only a folded one is built.
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        if self.rest.is_empty() {
            return None;
        }
        let mut out: Option<String> = None;
        loop {
            // A byte search: for lines of a few dozen bytes, cheaper than `str::find`'s memchr.
            let (line, rest) = match self.rest.bytes().position(|b| b == b'\n') {
                Some(i) => (
                    self.rest.get(..i).unwrap_or(""),
                    self.rest.get(i + 1..).unwrap_or(""),
                ),
                None => (self.rest, ""),
            };
            let line = line.strip_suffix('\r').unwrap_or(line);
            self.rest = rest;
            self.line_no += 1;
            let folded = self.rest.starts_with([' ', '\t']);
            match &mut out {
                None if !folded => return Some(Cow::Borrowed(line)),
                None => out = Some(line.to_owned()),
                Some(o) => {
                    // While the line so far is empty, a continuation is taken as written.
                    if !o.is_empty() {
                        o.push(' ');
                        o.push_str(line.trim_start_matches([' ', '\t']));
                    } else {
                        o.push_str(line);
                    }
                }
            }
            if !folded {
                return out.map(Cow::Owned);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sip::{parse_datagram, SipError};
    use bytes::Bytes;

    #[test]
    fn spaces_and_tabs_are_trimmed_as_str_trim_matches_would() {
        for s in [
            "",
            " ",
            "\t \t",
            "a",
            " a ",
            "\ta b\t ",
            "é \t",
            " \u{a0}x\u{a0} ",
        ] {
            assert_eq!(super::trim_wsp(s), s.trim_matches([' ', '\t']), "{s:?}");
            assert_eq!(
                super::trim_wsp_end(s),
                s.trim_end_matches([' ', '\t']),
                "{s:?}"
            );
        }
    }

    fn with_call_id(call_id: &str) -> Result<String, SipError> {
        let text = format!(
            "OPTIONS sip:u@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             To: <sip:u@example.com>\r\nFrom: <sip:c@example.net>;tag=1\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let (m, _) = parse_datagram(Bytes::from(text))?;
        m.check()?;
        m.call_id().map(str::to_owned)
    }

    #[test]
    fn common_header_names_resolve_as_name_from_does() {
        for (spelled, n) in &super::COMMON_NAMES {
            assert_eq!(*spelled, n.as_print_str());
            let full = ezk_sip_types::Name::from((*spelled).to_owned());
            let (fast, canonical) = super::header_name(spelled);
            assert_eq!(canonical, full.as_print_str(), "{spelled}");
            assert_eq!(fast.as_print_str(), full.as_print_str(), "{spelled}");
            assert_eq!(fast.as_parse_strs(), full.as_parse_strs(), "{spelled}");
            assert!(full.as_parse_strs().is_some(), "{spelled} is a known name");
        }
    }

    #[test]
    fn call_ids() {
        for (call_id, ok) in [
            ("a84b4c76e66710@pc33.atlanta.com", true),
            ("a84b4c76e66710", true),
            ("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{", true),
            ("3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..", true),
            ("%s%x%n@192.0.2.1", true),
            ("MTIzNDU2Nzg5MA==", true),
            // PROTOS c07-sip sip-call-id-value 1468, 1513, 1522; sip-call-id-ip 1748, 1756.
            ("@192.0.2.1", false),
            ("\0\0aaaaaaaaa@192.0.2.1", false),
            ("a\0a@192.0.2.1", false),
            ("protos@\0aaaaaaaaaaaaaaaaa", false),
            ("protos@a\0a", false),
            ("protos@", false),
            ("a\x7fb", false),
        ] {
            let got = with_call_id(call_id);
            assert_eq!(got.is_ok(), ok, "{call_id:?}: {got:?}");
        }
    }
}
