//! SDP session descriptions (RFC 8866, formerly RFC 4566): a byte-exact line model with typed
//! accessors and the mutations topology hiding needs, plus a builder for fresh sessions.
//!
//! Never panics, never resolves host names, never allocates beyond the `MAX_*` limits.
//!
//! # Design
//!
//! A [`Session`] is the ordered list of its session-level [`Line`]s followed by its
//! [`MediaSection`]s. Every line keeps its original bytes and line ending next to its parsed
//! [`Field`], so emitting an unmodified session gives back the input byte for byte (CRLF,
//! bare LF, a missing final line ending, odd spacing, unknown attributes). Typed accessors read
//! the parsed fields; mutators replace a line's field and regenerate its bytes. Once anything
//! has been mutated, [`Session::to_bytes`] writes every line with CRLF (RFC 8866 section 5).
//!
//! `sdp-types` parses into owned structs and drops the original spelling, so it cannot give
//! byte-exactness; this module follows its grammar (RFC 8866 section 9) line by line instead.
//!
//! # Strict and lenient
//!
//! [`Session::parse`] is strict: v=, o=, s= must come first in that order, t= must be present,
//! each media needs a c= (or one at session level), no duplicates, no unknown line types, and
//! every understood line must parse. [`Session::parse_lenient`] accepts missing or misplaced
//! lines and keeps lines it cannot parse as [`Field::Invalid`] (emitted unchanged, ignored by
//! accessors). Both modes always reject: size and count limits, NUL or bare CR bytes, a
//! v= other than 0, malformed o=, c= or m= lines (including an address that does not
//! parse as its IP4/IP6 address type; a host name is kept as [`Address::Host`]), RTP payload
//! types outside 0-127 (m= of an RTP profile, a=rtpmap), and an a=rtpmap clock rate of 0 or
//! below. (An a=rtpmap without a clock rate, as in RFC 4475's messages, is only malformed.) Trailing
//! whitespace and repeated spaces between fields are accepted in both modes.

mod builder;
mod field;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

pub use builder::{MediaBuilder, SessionBuilder};
pub use field::{
    AddrType, Address, Attribute, Bandwidth, Connection, Fmtp, MediaLine, Origin, RtcpAttr, Rtpmap,
    Timing, MAX_PAYLOAD_TYPE, NETTYPE_IN,
};

use crate::rtp::static_payload_type;

/// Largest SDP body accepted.
pub const MAX_SDP_SIZE: usize = 32 * 1024;
/// Most lines in one body.
pub const MAX_LINES: usize = 512;
/// Most m= sections.
pub const MAX_MEDIA: usize = 32;
/// Most formats on one m= line.
pub const MAX_FORMATS_PER_MEDIA: usize = 64;
/// Longest line, without its line ending.
pub const MAX_LINE_LEN: usize = 2048;

/// Why a body is not acceptable SDP, and on which line (1-based; 0 for the body as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {kind}")]
pub struct SdpError {
    pub line: usize,
    pub kind: SdpErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpErrorKind {
    #[error("empty body")]
    Empty,
    #[error("body of {0} bytes exceeds {MAX_SDP_SIZE}")]
    TooLarge(usize),
    #[error("more than {MAX_LINES} lines")]
    TooManyLines,
    #[error("line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    #[error("more than {MAX_MEDIA} media sections")]
    TooManyMedia,
    #[error("more than {MAX_FORMATS_PER_MEDIA} formats on an m= line")]
    TooManyFormats,
    #[error("forbidden byte 0x{0:02x}")]
    InvalidByte(u8),
    #[error("not a <type>=<value> line")]
    NotAField,
    #[error("unknown line type '{0}'")]
    UnknownType(char),
    #[error("value is not UTF-8")]
    NotUtf8,
    #[error("unsupported version (v= must be 0)")]
    BadVersion,
    #[error("mandatory '{0}=' line missing")]
    Missing(char),
    #[error("duplicate '{0}=' line")]
    Duplicate(char),
    #[error("'{0}=' line out of order")]
    OutOfOrder(char),
    #[error("media section has no connection address and the session has none")]
    MissingConnection,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("address does not parse")]
    BadAddress,
    #[error("address does not match its address type")]
    AddressFamilyMismatch,
    #[error("bad port")]
    BadPort,
    /// An RTP payload type outside 0-127 (RFC 3550 section 5.1: seven bits), in an m= line
    /// of an RTP profile or an a=rtpmap.
    #[error("RTP payload type is not a number in 0-127")]
    BadPayloadType,
    /// An a=rtpmap clock rate that is written but is not a positive number of Hz.
    #[error("rtpmap clock rate is not a positive number")]
    BadClockRate,
}

impl SdpErrorKind {
    /// Errors that even lenient parsing refuses: limits, and the lines that carry addresses
    /// and media structure.
    fn fatal_for(&self, letter: Option<u8>) -> bool {
        matches!(
            self,
            SdpErrorKind::TooManyFormats
                | SdpErrorKind::BadAddress
                | SdpErrorKind::AddressFamilyMismatch
                | SdpErrorKind::BadVersion
                | SdpErrorKind::BadPayloadType
                | SdpErrorKind::BadClockRate
        ) || matches!(letter, Some(b'o' | b'c' | b'm' | b'v'))
    }
}

/// How much of RFC 8866 to insist on; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Strict,
    Lenient,
}

/// Stream direction attributes (RFC 8866 section 6.7, RFC 3264 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_name(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

impl From<Direction> for crate::meta::Direction {
    fn from(d: Direction) -> Self {
        match d {
            Direction::SendRecv => crate::meta::Direction::SendRecv,
            Direction::SendOnly => crate::meta::Direction::SendOnly,
            Direction::RecvOnly => crate::meta::Direction::RecvOnly,
            Direction::Inactive => crate::meta::Direction::Inactive,
        }
    }
}

impl From<crate::meta::Direction> for Direction {
    fn from(d: crate::meta::Direction) -> Self {
        match d {
            crate::meta::Direction::SendRecv => Direction::SendRecv,
            crate::meta::Direction::SendOnly => Direction::SendOnly,
            crate::meta::Direction::RecvOnly => Direction::RecvOnly,
            crate::meta::Direction::Inactive => Direction::Inactive,
        }
    }
}

/// How a line ended in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    CrLf,
    Lf,
    /// The last line of a body without a final line ending.
    None,
}

impl LineEnding {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
            LineEnding::None => b"",
        }
    }
}

/// The parsed value of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Version(u32),
    Origin(Origin),
    /// s=; the text is the line's [`Line::value`] (any bytes but NUL, CR, LF).
    SessionName,
    Connection(Connection),
    Bandwidth(Bandwidth),
    Timing(Timing),
    Media(MediaLine),
    Attribute(Attribute),
    /// i=, u=, e=, p=, r=, z=, k=, or an unknown type (lenient) or non-UTF-8 attribute: kept
    /// as bytes, not interpreted.
    Other,
    /// A line that did not parse (lenient mode only): kept as bytes, ignored by accessors.
    Invalid(SdpErrorKind),
}

/// One line: its bytes (without line ending), its line ending and its parsed field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    raw: Vec<u8>,
    ending: LineEnding,
    field: Field,
}

impl Line {
    /// A new line from a typed field, checked to parse back to the same field (so no value
    /// can smuggle a line break or change meaning).
    pub fn new(letter: u8, field: Field) -> Result<Line, SdpErrorKind> {
        let value = match &field {
            Field::Version(v) => v.to_string(),
            Field::Origin(o) => o.to_string(),
            Field::Connection(c) => c.to_string(),
            Field::Bandwidth(b) => b.to_string(),
            Field::Timing(t) => t.to_string(),
            Field::Media(m) => m.to_string(),
            Field::Attribute(a) => a.to_string(),
            Field::SessionName | Field::Other | Field::Invalid(_) => {
                return Err(SdpErrorKind::Malformed("untyped line"))
            }
        };
        let mut raw = Vec::with_capacity(value.len() + 2);
        raw.push(letter);
        raw.push(b'=');
        raw.extend_from_slice(value.as_bytes());
        Self::text(raw, field)
    }

    /// A line of a given type with a free-form value (s=, i=, ...), checked.
    pub fn with_value(letter: u8, value: &[u8]) -> Result<Line, SdpErrorKind> {
        let mut raw = vec![letter, b'='];
        raw.extend_from_slice(value);
        let field = parse_line(&raw)?;
        Self::text(raw, field)
    }

    fn text(raw: Vec<u8>, field: Field) -> Result<Line, SdpErrorKind> {
        if raw.len() > MAX_LINE_LEN {
            return Err(SdpErrorKind::LineTooLong);
        }
        if let Some(&b) = raw.iter().find(|b| matches!(b, 0 | b'\r' | b'\n')) {
            return Err(SdpErrorKind::InvalidByte(b));
        }
        if parse_line(&raw)? != field {
            return Err(SdpErrorKind::Malformed("value does not round-trip"));
        }
        Ok(Line {
            raw,
            ending: LineEnding::CrLf,
            field,
        })
    }

    /// The line type letter (`b'a'` for a=), `None` for a line without `x=`.
    pub fn letter(&self) -> Option<u8> {
        match self.raw.as_slice() {
            [l, b'=', ..] => Some(*l),
            _ => None,
        }
    }

    /// The bytes after `x=`.
    pub fn value(&self) -> &[u8] {
        self.raw.get(2..).unwrap_or(&[])
    }

    /// The whole line as received, without line ending.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub fn ending(&self) -> LineEnding {
        self.ending
    }

    pub fn field(&self) -> &Field {
        &self.field
    }

    fn attribute(&self) -> Option<&Attribute> {
        match &self.field {
            Field::Attribute(a) => Some(a),
            _ => None,
        }
    }

    fn emit(&self, out: &mut Vec<u8>, normalize: bool) {
        out.extend_from_slice(&self.raw);
        out.extend_from_slice(if normalize {
            b"\r\n"
        } else {
            self.ending.as_bytes()
        });
    }
}

/// Parses one line (without ending) into its field.
fn parse_line(raw: &[u8]) -> Result<Field, SdpErrorKind> {
    let (letter, value) = match raw {
        [l, b'=', rest @ ..] if l.is_ascii_alphabetic() => (*l, rest),
        _ => return Err(SdpErrorKind::NotAField),
    };
    let text = || core::str::from_utf8(value).map_err(|_| SdpErrorKind::NotUtf8);
    Ok(match letter {
        b'v' => {
            if text()?.trim_end() != "0" {
                return Err(SdpErrorKind::BadVersion);
            }
            Field::Version(0)
        }
        b'o' => Field::Origin(Origin::parse(text()?)?),
        b's' => Field::SessionName,
        b'c' => Field::Connection(Connection::parse(text()?)?),
        b'b' => Field::Bandwidth(Bandwidth::parse(text()?)?),
        b't' => Field::Timing(Timing::parse(text()?)?),
        b'm' => Field::Media(MediaLine::parse(text()?)?),
        b'a' => match core::str::from_utf8(value) {
            Ok(s) => Field::Attribute(Attribute::parse(s)?),
            // Attribute values may be any byte string (RFC 8866 section 9, byte-string).
            Err(_) => Field::Other,
        },
        b'i' | b'u' | b'e' | b'p' | b'r' | b'z' | b'k' => Field::Other,
        other => return Err(SdpErrorKind::UnknownType(char::from(other))),
    })
}

/// One m= section: the m= line and the lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    m_raw: Line,
    m: MediaLine,
    lines: Vec<Line>,
    modified: bool,
}

/// A parsed SDP session; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    lines: Vec<Line>,
    media: Vec<MediaSection>,
    modified: bool,
}

fn err(line: usize, kind: SdpErrorKind) -> SdpError {
    SdpError { line, kind }
}

/// Splits a body into (line, ending) pairs, enforcing byte and length limits.
fn split_lines(bytes: &[u8]) -> Result<Vec<(&[u8], LineEnding)>, SdpError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = out.len() + 1;
        if n > MAX_LINES {
            return Err(err(n, SdpErrorKind::TooManyLines));
        }
        let (line, ending, tail) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                let line = rest.get(..i).unwrap_or(&[]);
                let tail = rest.get(i + 1..).unwrap_or(&[]);
                match line.split_last() {
                    Some((b'\r', l)) => (l, LineEnding::CrLf, tail),
                    _ => (line, LineEnding::Lf, tail),
                }
            }
            None => (rest, LineEnding::None, &[][..]),
        };
        if line.len() > MAX_LINE_LEN {
            return Err(err(n, SdpErrorKind::LineTooLong));
        }
        if let Some(&b) = line.iter().find(|b| matches!(b, 0 | b'\r')) {
            return Err(err(n, SdpErrorKind::InvalidByte(b)));
        }
        out.push((line, ending));
        rest = tail;
    }
    Ok(out)
}

impl Session {
    /// Parses strictly (see the module docs).
    pub fn parse(bytes: &[u8]) -> Result<Session, SdpError> {
        Self::parse_with(bytes, Mode::Strict)
    }

    /// Parses leniently (see the module docs).
    pub fn parse_lenient(bytes: &[u8]) -> Result<Session, SdpError> {
        Self::parse_with(bytes, Mode::Lenient)
    }

    pub fn parse_with(bytes: &[u8], mode: Mode) -> Result<Session, SdpError> {
        if bytes.len() > MAX_SDP_SIZE {
            return Err(err(0, SdpErrorKind::TooLarge(bytes.len())));
        }
        let raw_lines = split_lines(bytes)?;
        if raw_lines.is_empty() {
            return Err(err(0, SdpErrorKind::Empty));
        }
        let strict = mode == Mode::Strict;
        let mut session = Session::empty();
        for (i, (raw, ending)) in raw_lines.into_iter().enumerate() {
            let n = i + 1;
            let letter = match raw {
                [l, b'=', ..] => Some(*l),
                _ => None,
            };
            let field = match parse_line(raw) {
                Ok(f) => f,
                Err(kind) if strict || kind.fatal_for(letter) => return Err(err(n, kind)),
                Err(kind) => Field::Invalid(kind),
            };
            let line = Line {
                raw: raw.to_vec(),
                ending,
                field,
            };
            session.push(n, line)?;
        }
        if strict {
            session.check_strict()?;
        }
        Ok(session)
    }

    /// A session of no lines, filled by [`Session::push`].
    fn empty() -> Session {
        Session {
            lines: Vec::new(),
            media: Vec::new(),
            modified: false,
        }
    }

    /// Adds line `n` (from 1): an m= line starts a media section, any other line goes to the
    /// last one, or to the session before the first.
    fn push(&mut self, n: usize, line: Line) -> Result<(), SdpError> {
        if let Field::Media(m) = &line.field {
            if self.media.len() >= MAX_MEDIA {
                return Err(err(n, SdpErrorKind::TooManyMedia));
            }
            self.media.push(MediaSection {
                m: m.clone(),
                m_raw: line,
                lines: Vec::new(),
                modified: false,
            });
        } else if let Some(media) = self.media.last_mut() {
            media.lines.push(line);
        } else {
            self.lines.push(line);
        }
        Ok(())
    }

    /// The strict session of lines already checked one by one ([`Line::new`] and
    /// [`Line::with_value`] parse each back to its field), as [`Session::parse`] would read
    /// them written out with CRLF endings: the same size and line limits and the same
    /// session rules, without parsing every line a second time.
    fn from_checked_lines(lines: Vec<Line>) -> Result<Session, SdpError> {
        let size: usize = lines.iter().map(|l| l.raw.len() + 2).sum();
        if size > MAX_SDP_SIZE {
            return Err(err(0, SdpErrorKind::TooLarge(size)));
        }
        if lines.is_empty() {
            return Err(err(0, SdpErrorKind::Empty));
        }
        if lines.len() > MAX_LINES {
            return Err(err(MAX_LINES + 1, SdpErrorKind::TooManyLines));
        }
        let mut session = Session::empty();
        for (i, line) in lines.into_iter().enumerate() {
            session.push(i + 1, line)?;
        }
        session.check_strict()?;
        Ok(session)
    }

    /// RFC 8866 section 5 ordering and presence rules, for strict mode.
    fn check_strict(&self) -> Result<(), SdpError> {
        let letters: Vec<u8> = self.lines.iter().filter_map(Line::letter).collect();
        for (pos, want) in [b'v', b'o', b's'].iter().enumerate() {
            match letters.get(pos) {
                Some(l) if l == want => {}
                _ if letters.contains(want) => {
                    return Err(err(pos + 1, SdpErrorKind::OutOfOrder(char::from(*want))))
                }
                _ => return Err(err(0, SdpErrorKind::Missing(char::from(*want)))),
            }
        }
        for once in [b'v', b'o', b's', b'c'] {
            if let Some(pos) = letters
                .iter()
                .enumerate()
                .filter(|(_, l)| **l == once)
                .map(|(i, _)| i)
                .nth(1)
            {
                return Err(err(pos + 1, SdpErrorKind::Duplicate(char::from(once))));
            }
        }
        if !letters.contains(&b't') {
            return Err(err(0, SdpErrorKind::Missing('t')));
        }
        let mut n = self.lines.len();
        for m in &self.media {
            n += 1;
            if self.connection().is_none() && m.connection().is_none() {
                return Err(err(n, SdpErrorKind::MissingConnection));
            }
            for line in &m.lines {
                n += 1;
                if matches!(
                    line.letter(),
                    Some(b'v' | b'o' | b's' | b't' | b'r' | b'z' | b'u' | b'e' | b'p')
                ) {
                    let l = line.letter().map_or('?', char::from);
                    return Err(err(n, SdpErrorKind::OutOfOrder(l)));
                }
            }
        }
        Ok(())
    }

    /// Starts a fresh session (see [`SessionBuilder`]).
    pub fn builder(origin: Origin) -> SessionBuilder {
        SessionBuilder::new(origin)
    }

    /// True once a mutator has run: emission then writes CRLF everywhere.
    pub fn is_modified(&self) -> bool {
        self.modified || self.media.iter().any(|m| m.modified)
    }

    /// The number of bytes [`Session::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let normalize = self.is_modified();
        let len = |l: &Line| {
            l.raw.len()
                + if normalize {
                    2
                } else {
                    l.ending.as_bytes().len()
                }
        };
        self.lines.iter().map(len).sum::<usize>()
            + self
                .media
                .iter()
                .map(|m| len(&m.m_raw) + m.lines.iter().map(len).sum::<usize>())
                .sum::<usize>()
    }

    /// Appends the session to `out`: byte-exact when unmodified, CRLF everywhere otherwise.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let normalize = self.is_modified();
        out.reserve(self.buffer_len());
        for l in &self.lines {
            l.emit(out, normalize);
        }
        for m in &self.media {
            m.m_raw.emit(out, normalize);
            for l in &m.lines {
                l.emit(out, normalize);
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }

    /// Session-level lines (before the first m=).
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    pub fn media(&self) -> &[MediaSection] {
        &self.media
    }

    pub fn media_mut(&mut self) -> &mut [MediaSection] {
        &mut self.media
    }

    fn fields(&self) -> impl Iterator<Item = &Field> {
        self.lines.iter().map(|l| &l.field)
    }

    pub fn version(&self) -> Option<u32> {
        self.fields().find_map(|f| match f {
            Field::Version(v) => Some(*v),
            _ => None,
        })
    }

    pub fn origin(&self) -> Option<&Origin> {
        self.fields().find_map(|f| match f {
            Field::Origin(o) => Some(o),
            _ => None,
        })
    }

    /// The s= text as bytes (it may be in any charset).
    pub fn session_name(&self) -> Option<&[u8]> {
        self.lines
            .iter()
            .find(|l| l.field == Field::SessionName)
            .map(Line::value)
    }

    /// The session-level c=.
    pub fn connection(&self) -> Option<&Connection> {
        self.fields().find_map(|f| match f {
            Field::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// The first t=.
    pub fn timing(&self) -> Option<Timing> {
        self.fields().find_map(|f| match f {
            Field::Timing(t) => Some(*t),
            _ => None,
        })
    }

    pub fn bandwidths(&self) -> impl Iterator<Item = &Bandwidth> {
        self.fields().filter_map(|f| match f {
            Field::Bandwidth(b) => Some(b),
            _ => None,
        })
    }

    /// Session-level attributes.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.lines.iter().filter_map(Line::attribute)
    }

    /// The first session-level attribute with this name (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        direction_of(self.attributes())
    }

    /// A media section's connection: its own first c=, else the session's.
    pub fn media_connection<'a>(&'a self, media: &'a MediaSection) -> Option<&'a Connection> {
        media.connection().or_else(|| self.connection())
    }

    /// A media section's direction: its own, else the session's, else sendrecv (RFC 8866
    /// section 6.7).
    pub fn media_direction(&self, media: &MediaSection) -> Direction {
        media
            .direction()
            .or_else(|| self.direction())
            .unwrap_or_default()
    }

    fn replace_or_insert(
        &mut self,
        letter: u8,
        field: Field,
        before: &[u8],
    ) -> Result<(), SdpErrorKind> {
        let new = Line::new(letter, field)?;
        self.modified = true;
        if let Some(l) = self.lines.iter_mut().find(|l| l.letter() == Some(letter)) {
            *l = new;
        } else {
            let at = self
                .lines
                .iter()
                .position(|l| l.letter().is_some_and(|x| before.contains(&x)))
                .unwrap_or(self.lines.len());
            self.lines.insert(at, new);
        }
        Ok(())
    }

    /// Replaces o= (or inserts it after v=).
    pub fn set_origin(&mut self, origin: Origin) -> Result<(), SdpErrorKind> {
        self.replace_or_insert(b'o', Field::Origin(origin), b"sicbtzkau")
    }

    /// Points o= at `ip` (IN IP4 / IN IP6 follows the address). False when there is no o=.
    pub fn set_origin_address(&mut self, ip: IpAddr) -> bool {
        let Some(mut origin) = self.origin().cloned() else {
            return false;
        };
        origin.set_address(ip);
        self.set_origin(origin).is_ok()
    }

    /// Sets the session-level c= to `ip` (inserting it before b=/t=/... if absent).
    pub fn set_connection_address(&mut self, ip: IpAddr) {
        // A Connection built from an IpAddr always prints and parses back.
        let _ = self.replace_or_insert(b'c', Field::Connection(Connection::new(ip)), b"btzka");
    }

    /// Topology hiding: the session-level c= and every media-level c= become `ip`; a=rtcp
    /// addresses are dropped (the port stays).
    pub fn set_all_connection_addresses(&mut self, ip: IpAddr) {
        self.set_connection_address(ip);
        for m in &mut self.media {
            m.replace_connections(ip);
            m.strip_rtcp_address();
        }
    }

    /// Sets (or with `None` removes) the session-level direction attribute.
    pub fn set_direction(&mut self, direction: Option<Direction>) {
        self.modified = true;
        set_direction_in(&mut self.lines, direction);
    }

    /// Appends a session-level attribute.
    pub fn push_attribute(&mut self, attribute: Attribute) -> Result<(), SdpErrorKind> {
        let line = Line::new(b'a', Field::Attribute(attribute))?;
        self.modified = true;
        self.lines.push(line);
        Ok(())
    }

    /// Removes session-level attributes by name; returns how many.
    pub fn remove_attributes(&mut self, name: &str) -> usize {
        let n = remove_attributes_in(&mut self.lines, name);
        self.modified |= n > 0;
        n
    }

    /// Drops every line kept as [`Field::Invalid`] or [`Field::Other`] except s=, in the session
    /// and all media: what remains is what this module understands.
    pub fn remove_uninterpreted_lines(&mut self) {
        let keep = |l: &Line| !matches!(l.field, Field::Invalid(_) | Field::Other);
        let before = self.lines.len();
        self.lines.retain(keep);
        self.modified |= before != self.lines.len();
        for m in &mut self.media {
            let before = m.lines.len();
            m.lines.retain(keep);
            m.modified |= before != m.lines.len();
        }
    }

    /// Appends a media section.
    pub fn push_media(&mut self, media: MediaSection) -> Result<(), SdpErrorKind> {
        if self.media.len() >= MAX_MEDIA {
            return Err(SdpErrorKind::TooManyMedia);
        }
        self.modified = true;
        self.media.push(media);
        Ok(())
    }
}

fn direction_of<'a>(mut attrs: impl Iterator<Item = &'a Attribute>) -> Option<Direction> {
    attrs.find_map(|a| match a {
        Attribute::Direction(d) => Some(*d),
        _ => None,
    })
}

fn remove_attributes_in(lines: &mut Vec<Line>, name: &str) -> usize {
    let before = lines.len();
    lines.retain(|l| {
        !l.attribute()
            .is_some_and(|a| a.name().eq_ignore_ascii_case(name))
    });
    before - lines.len()
}

fn set_direction_in(lines: &mut Vec<Line>, direction: Option<Direction>) {
    let pos = lines
        .iter()
        .position(|l| matches!(l.attribute(), Some(Attribute::Direction(_))));
    lines.retain(|l| !matches!(l.attribute(), Some(Attribute::Direction(_))));
    if let Some(d) = direction {
        if let Ok(line) = Line::new(b'a', Field::Attribute(Attribute::Direction(d))) {
            let at = pos.unwrap_or(lines.len()).min(lines.len());
            lines.insert(at, line);
        }
    }
}

/// A payload format of an RTP media section, from its a=rtpmap or the static table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    /// The a=fmtp parameters for this payload type.
    pub fmtp: Option<String>,
}

impl MediaSection {
    /// A new media section with just its m= line.
    pub fn new(m: MediaLine) -> Result<MediaSection, SdpErrorKind> {
        if m.formats.len() > MAX_FORMATS_PER_MEDIA {
            return Err(SdpErrorKind::TooManyFormats);
        }
        Ok(MediaSection {
            m_raw: Line::new(b'm', Field::Media(m.clone()))?,
            m,
            lines: Vec::new(),
            modified: true,
        })
    }

    pub fn media_line(&self) -> &MediaLine {
        &self.m
    }

    /// The m= line itself.
    pub fn media_line_raw(&self) -> &Line {
        &self.m_raw
    }

    /// The lines after m=.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    pub fn port(&self) -> u16 {
        self.m.port
    }

    /// Port 0 means the stream is refused or disabled (RFC 3264 section 6).
    pub fn is_rejected(&self) -> bool {
        self.m.port == 0
    }

    fn fields(&self) -> impl Iterator<Item = &Field> {
        self.lines.iter().map(|l| &l.field)
    }

    /// The first media-level c= (several are allowed for layered multicast).
    pub fn connection(&self) -> Option<&Connection> {
        self.connections().next()
    }

    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.fields().filter_map(|f| match f {
            Field::Connection(c) => Some(c),
            _ => None,
        })
    }

    pub fn bandwidths(&self) -> impl Iterator<Item = &Bandwidth> {
        self.fields().filter_map(|f| match f {
            Field::Bandwidth(b) => Some(b),
            _ => None,
        })
    }

    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.lines.iter().filter_map(Line::attribute)
    }

    /// The first attribute with this name (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    pub fn rtpmaps(&self) -> impl Iterator<Item = &Rtpmap> {
        self.attributes().filter_map(|a| match a {
            Attribute::Rtpmap(r) => Some(r),
            _ => None,
        })
    }

    pub fn rtpmap(&self, payload_type: u8) -> Option<&Rtpmap> {
        self.rtpmaps().find(|r| r.payload_type == payload_type)
    }

    pub fn fmtps(&self) -> impl Iterator<Item = &Fmtp> {
        self.attributes().filter_map(|a| match a {
            Attribute::Fmtp(f) => Some(f),
            _ => None,
        })
    }

    /// The a=fmtp for a format (as written on the m= line, e.g. "101").
    pub fn fmtp(&self, format: &str) -> Option<&Fmtp> {
        self.fmtps().find(|f| f.format == format)
    }

    pub fn ptime(&self) -> Option<u32> {
        self.attributes().find_map(|a| match a {
            Attribute::Ptime(p) => Some(*p),
            _ => None,
        })
    }

    pub fn maxptime(&self) -> Option<u32> {
        self.attributes().find_map(|a| match a {
            Attribute::MaxPtime(p) => Some(*p),
            _ => None,
        })
    }

    /// The media-level direction attribute; see [`Session::media_direction`] for the
    /// effective one.
    pub fn direction(&self) -> Option<Direction> {
        direction_of(self.attributes())
    }

    pub fn rtcp(&self) -> Option<&RtcpAttr> {
        self.attributes().find_map(|a| match a {
            Attribute::Rtcp(r) => Some(r),
            _ => None,
        })
    }

    /// The RFC 4733 telephone-event format offered on the m= line, if any.
    pub fn telephone_event(&self) -> Option<&Rtpmap> {
        let listed: Vec<u8> = self.m.payload_types().collect();
        self.rtpmaps()
            .find(|r| r.is_telephone_event() && listed.contains(&r.payload_type))
    }

    /// A payload type's codec: from its a=rtpmap, else from RFC 3551's static table.
    pub fn codec(&self, payload_type: u8) -> Option<Codec> {
        let fmtp = self
            .fmtp(&payload_type.to_string())
            .map(|f| f.params.clone());
        if let Some(r) = self.rtpmap(payload_type) {
            return Some(Codec {
                payload_type,
                encoding: r.encoding.clone(),
                clock_rate: r.clock_rate,
                channels: r.channels,
                fmtp,
            });
        }
        let s = static_payload_type(payload_type)?;
        Some(Codec {
            payload_type,
            encoding: s.encoding.to_owned(),
            clock_rate: s.clock_rate,
            channels: s.channels.map(u16::from),
            fmtp,
        })
    }

    /// The codecs of the m= line's payload types, in preference order; unknown dynamic payload
    /// types (no rtpmap) are skipped. Empty for non-RTP media.
    pub fn codecs(&self) -> Vec<Codec> {
        if !self.m.is_rtp() {
            return Vec::new();
        }
        self.m
            .payload_types()
            .filter_map(|pt| self.codec(pt))
            .collect()
    }

    fn set_media_line(&mut self, m: MediaLine) -> Result<(), SdpErrorKind> {
        self.m_raw = Line::new(b'm', Field::Media(m.clone()))?;
        self.m = m;
        self.modified = true;
        Ok(())
    }

    pub fn set_port(&mut self, port: u16) {
        let mut m = self.m.clone();
        m.port = port;
        // Changing a number cannot break the line.
        let _ = self.set_media_line(m);
    }

    /// Keeps only the formats `keep` accepts, with their a=rtpmap and a=fmtp lines.
    pub fn retain_formats(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let mut m = self.m.clone();
        m.formats.retain(|f| keep(f));
        let formats = m.formats.clone();
        let _ = self.set_media_line(m);
        self.lines.retain(|l| match l.attribute() {
            Some(Attribute::Rtpmap(r)) => formats.contains(&r.payload_type.to_string()),
            Some(Attribute::Fmtp(f)) => formats.contains(&f.format),
            _ => true,
        });
    }

    fn replace_connections(&mut self, ip: IpAddr) {
        let mut changed = false;
        for l in &mut self.lines {
            if matches!(l.field, Field::Connection(_)) {
                if let Ok(new) = Line::new(b'c', Field::Connection(Connection::new(ip))) {
                    *l = new;
                    changed = true;
                }
            }
        }
        self.modified |= changed;
    }

    fn strip_rtcp_address(&mut self) {
        for l in &mut self.lines {
            if let Some(Attribute::Rtcp(r)) = l.attribute() {
                if r.connection.is_some() {
                    let attr = Attribute::Rtcp(RtcpAttr {
                        port: r.port,
                        connection: None,
                    });
                    if let Ok(new) = Line::new(b'a', Field::Attribute(attr)) {
                        *l = new;
                        self.modified = true;
                    }
                }
            }
        }
    }

    /// Sets the media-level c= to `ip`: replaces the first, drops any others, or inserts one
    /// after m=/i= when absent.
    pub fn set_connection_address(&mut self, ip: IpAddr) {
        let Ok(new) = Line::new(b'c', Field::Connection(Connection::new(ip))) else {
            return;
        };
        self.modified = true;
        match self
            .lines
            .iter()
            .position(|l| matches!(l.field, Field::Connection(_)))
        {
            Some(i) => {
                let mut seen = 0usize;
                self.lines.retain(|l| {
                    let is_c = matches!(l.field, Field::Connection(_));
                    seen += usize::from(is_c);
                    !is_c || seen == 1
                });
                if let Some(l) = self.lines.get_mut(i) {
                    *l = new;
                }
            }
            None => {
                let at = self
                    .lines
                    .iter()
                    .position(|l| l.letter() != Some(b'i'))
                    .unwrap_or(self.lines.len());
                self.lines.insert(at, new);
            }
        }
    }

    /// Removes every media-level c= (the session-level one then applies).
    pub fn remove_connections(&mut self) {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l.field, Field::Connection(_)));
        self.modified |= before != self.lines.len();
    }

    /// Sets (or with `None` removes) the media-level direction attribute.
    pub fn set_direction(&mut self, direction: Option<Direction>) {
        self.modified = true;
        set_direction_in(&mut self.lines, direction);
    }

    pub fn push_attribute(&mut self, attribute: Attribute) -> Result<(), SdpErrorKind> {
        let line = Line::new(b'a', Field::Attribute(attribute))?;
        self.modified = true;
        self.lines.push(line);
        Ok(())
    }

    /// Appends an already-built line (c=, b=, a=...).
    pub fn push_line(&mut self, line: Line) -> Result<(), SdpErrorKind> {
        if matches!(line.field, Field::Media(_)) {
            return Err(SdpErrorKind::Malformed("m= inside a media section"));
        }
        self.modified = true;
        self.lines.push(line);
        Ok(())
    }

    /// Removes attributes by name (case-insensitive); returns how many.
    pub fn remove_attributes(&mut self, name: &str) -> usize {
        let n = remove_attributes_in(&mut self.lines, name);
        self.modified |= n > 0;
        n
    }
}
