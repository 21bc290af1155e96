//! The tunnel between GW1 and GW2 (`codecs/TUNNEL.md`): the handshake frame that opens each of
//! the two TLS connections, and the RFC 4571 media framing of the media connection.
//!
//! smoltcp style: zero-copy views ([`HandshakeFrame`], [`MediaFrame`]) whose byte ranges live in
//! `mod field`, checked once by `new_checked`, and owned representations ([`Handshake`],
//! [`MediaRepr`]) with `parse` / `emit` / `buffer_len`. Nothing here panics, does I/O or reads the
//! clock; every decode error names the byte offset where the input went wrong. [`MediaFramer`]
//! and [`split_handshake`] cut frames out of a byte stream (sans-IO: the caller pushes bytes).
//!
//! The signalling connection needs no framing beyond the handshake: after it, each direction is
//! a stream of Meta frames (`codecs/META.md`), self-delimiting, cut with
//! [`crate::meta::wire::FrameReader`]. Keepalive on it is Meta's `Keepalive { seq, reply }`. The
//! media connection keeps itself alive with *cover* frames ([`MEDIA_FLAG_COVER`]), which the
//! receiver discards.

use crate::meta::StreamId;
use core::fmt;

/// First four bytes of every handshake frame: ASCII "SGWT". Frozen across major versions.
pub const HANDSHAKE_MAGIC: [u8; 4] = *b"SGWT";
/// Major version of the tunnel protocol this build speaks. A peer whose Hello carries another
/// major is refused with [`RefusalReason::UnsupportedVersion`] (TUNNEL.md §3).
pub const TUNNEL_VERSION: u8 = 1;
/// Minor version this build sends. Minor versions only append Hello fields and define new
/// capability bits, refusal reasons and media flags in the ignorable range.
pub const TUNNEL_MINOR_VERSION: u8 = 0;
/// Length of the handshake frame header: magic, major, minor, type, flags, body length.
pub const HANDSHAKE_HEADER_LEN: usize = 10;
/// Length of the Hello body of version 1.0; a longer body (from a newer minor) is accepted and
/// the bytes past this length are ignored.
pub const HELLO_BODY_LEN: usize = 22;
/// Fixed part of a Refusal body: reason code and text length.
pub const REFUSAL_FIXED_LEN: usize = 2;
/// Longest refusal text, in bytes of UTF-8.
pub const MAX_REFUSAL_TEXT: usize = 255;
/// Largest handshake body a receiver accepts.
pub const MAX_HANDSHAKE_BODY: usize = 512;
/// Largest handshake frame, header included.
pub const MAX_HANDSHAKE_LEN: usize = HANDSHAKE_HEADER_LEN + MAX_HANDSHAKE_BODY;
/// Handshake header flag bits a receiver must understand (none are defined in 1.0); the low
/// four bits are ignored when unknown.
pub const HANDSHAKE_FLAGS_CRITICAL: u8 = 0xf0;

/// Length of the RFC 4571 length prefix of a media frame.
pub const MEDIA_LENGTH_LEN: usize = 2;
/// Length of the media header after the length prefix: stream id and flags.
pub const MEDIA_HEADER_LEN: usize = 3;
/// Bytes a media frame adds around its RTP/RTCP packet.
pub const MEDIA_OVERHEAD: usize = MEDIA_LENGTH_LEN + MEDIA_HEADER_LEN;
/// Largest media frame, length prefix included. GW2 drops larger RTP before it reaches the
/// tunnel; a receiver that sees a larger length closes the connection.
pub const MAX_MEDIA_FRAME: usize = 8192;
/// Largest RTP/RTCP packet a media frame carries.
pub const MAX_MEDIA_PACKET: usize = MAX_MEDIA_FRAME - MEDIA_OVERHEAD;
/// Media flag: the packet is RTCP (otherwise RTP).
pub const MEDIA_FLAG_RTCP: u8 = 0x01;
/// Media flag: a cover/keepalive frame. The receiver discards it whatever its stream id and
/// packet; senders use stream id 0.
pub const MEDIA_FLAG_COVER: u8 = 0x02;
/// Media flag bits a receiver must understand; an unknown bit here refuses the frame. Unknown
/// bits of 0x0f are ignored.
pub const MEDIA_FLAGS_CRITICAL: u8 = 0xf0;
/// Media flags this build understands.
pub const MEDIA_FLAGS_KNOWN: u8 = MEDIA_FLAG_RTCP | MEDIA_FLAG_COVER;

mod field {
    #![allow(dead_code)]
    pub type Field = core::ops::Range<usize>;

    // Handshake header (TUNNEL.md §2).
    pub const MAGIC: Field = 0..4;
    pub const MAJOR: usize = 4;
    pub const MINOR: usize = 5;
    pub const TYPE: usize = 6;
    pub const FLAGS: usize = 7;
    pub const BODY_LEN: Field = 8..10;
    pub const BODY: usize = 10;

    // Hello body, offsets within the frame (TUNNEL.md §4).
    pub const HELLO_ROLE: usize = 10;
    pub const HELLO_KIND: usize = 11;
    pub const HELLO_INSTANCE: Field = 12..28;
    pub const HELLO_CAPS: Field = 28..32;

    // Refusal body, offsets within the frame (TUNNEL.md §5).
    pub const REFUSAL_REASON: usize = 10;
    pub const REFUSAL_TEXT_LEN: usize = 11;
    pub const REFUSAL_TEXT: usize = 12;

    // Media frame (TUNNEL.md §7).
    pub const MEDIA_LENGTH: Field = 0..2;
    pub const MEDIA_STREAM: Field = 2..4;
    pub const MEDIA_FLAGS: usize = 4;
    pub const MEDIA_PACKET: usize = 5;
}

/// Why bytes are not a valid tunnel frame. Offsets count from the first byte of the frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelDecodeError {
    #[error("truncated at offset {offset}: expected {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("bad magic: not a tunnel handshake")]
    BadMagic,
    /// A Hello of another major version. The receiver answers with a Refusal
    /// ([`RefusalReason::UnsupportedVersion`]) and closes.
    #[error(
        "unsupported tunnel protocol version {major}.{minor} (this side speaks {TUNNEL_VERSION}.x)"
    )]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error("unknown handshake frame type {value:#04x} at offset {offset}")]
    UnknownFrameType { offset: usize, value: u8 },
    #[error("unknown critical flags {flags:#04x} at offset {offset}")]
    UnknownCriticalFlags { offset: usize, flags: u8 },
    #[error("{what} at offset {offset} is {found}, more than the limit of {limit}")]
    LimitExceeded {
        offset: usize,
        what: &'static str,
        found: usize,
        limit: usize,
    },
    #[error("{what} at offset {offset} is {found}, less than the minimum of {min}")]
    TooShort {
        offset: usize,
        what: &'static str,
        found: usize,
        min: usize,
    },
    #[error("invalid UTF-8 at offset {offset}")]
    InvalidUtf8 { offset: usize },
    #[error("trailing bytes at offset {offset}")]
    TrailingBytes { offset: usize },
}

/// Why a frame cannot be encoded. The output is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelEncodeError {
    #[error("{what} of {found} bytes exceeds the limit of {limit}")]
    LimitExceeded {
        what: &'static str,
        found: usize,
        limit: usize,
    },
    #[error("buffer of {len} bytes is too small, {needed} needed")]
    BufferTooSmall { len: usize, needed: usize },
}

fn be16(b: &[u8], r: field::Field) -> u16 {
    match b.get(r) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

fn be32(b: &[u8], r: field::Field) -> u32 {
    match b.get(r) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

fn put(b: &mut [u8], r: field::Field, v: &[u8]) {
    if let Some(dst) = b.get_mut(r) {
        if dst.len() == v.len() {
            dst.copy_from_slice(v);
        }
    }
}

fn put_byte(b: &mut [u8], i: usize, v: u8) {
    if let Some(dst) = b.get_mut(i) {
        *dst = v;
    }
}

/// Which half of the gateway a connection's sender is (TUNNEL.md §4). Unknown codes are kept
/// so the receiver can refuse them by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The relay gateway in the intranet; opens the connections.
    Gw1,
    /// The termination gateway in the DMZ; accepts them.
    Gw2,
    Unknown(u8),
}

impl From<u8> for Role {
    fn from(v: u8) -> Self {
        match v {
            0x01 => Role::Gw1,
            0x02 => Role::Gw2,
            other => Role::Unknown(other),
        }
    }
}

impl From<Role> for u8 {
    fn from(r: Role) -> Self {
        match r {
            Role::Gw1 => 0x01,
            Role::Gw2 => 0x02,
            Role::Unknown(v) => v,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Gw1 => f.write_str("GW1"),
            Role::Gw2 => f.write_str("GW2"),
            Role::Unknown(v) => write!(f, "unknown role {v:#04x}"),
        }
    }
}

/// Which of the two tunnel connections this is (TUNNEL.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionKind {
    /// Carries Meta frames.
    Signalling,
    /// Carries RFC 4571 media frames.
    Media,
    Unknown(u8),
}

impl From<u8> for ConnectionKind {
    fn from(v: u8) -> Self {
        match v {
            0x01 => ConnectionKind::Signalling,
            0x02 => ConnectionKind::Media,
            other => ConnectionKind::Unknown(other),
        }
    }
}

impl From<ConnectionKind> for u8 {
    fn from(k: ConnectionKind) -> Self {
        match k {
            ConnectionKind::Signalling => 0x01,
            ConnectionKind::Media => 0x02,
            ConnectionKind::Unknown(v) => v,
        }
    }
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionKind::Signalling => f.write_str("signalling"),
            ConnectionKind::Media => f.write_str("media"),
            ConnectionKind::Unknown(v) => write!(f, "unknown connection kind {v:#04x}"),
        }
    }
}

/// Random 16 bytes a gateway process picks at start. Both connections of one GW1 process carry
/// the same nonce, which is how GW2 pairs them and tells a second GW1 from a reconnect.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct InstanceNonce(pub [u8; 16]);

impl fmt::Debug for InstanceNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceNonce({self})")
    }
}

impl fmt::Display for InstanceNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The capabilities bitfield of a Hello (TUNNEL.md §4.1). Unknown bits are kept; what both
/// sides may use is the intersection of the two Hellos ([`Capabilities::common`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// The sender accepts cover frames ([`MEDIA_FLAG_COVER`]) beyond keepalive use, i.e. may be
    /// sent constant-rate padding traffic on the media connection.
    pub const COVER_TRAFFIC: Capabilities = Capabilities(1 << 0);
    /// What this build supports.
    pub const SUPPORTED: Capabilities = Capabilities::COVER_TRAFFIC;

    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// Capabilities both sides announced.
    pub const fn common(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0)
    }
}

/// Why a gateway refused a connection (TUNNEL.md §5). The code layout of a Refusal is frozen
/// across major versions so a peer of any version can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The peer's major version is not ours; the Refusal header carries ours.
    UnsupportedVersion,
    /// The peer's handshake did not decode.
    Malformed,
    /// The peer claimed a role it may not have on this side (e.g. GW2 connecting to GW2).
    WrongRole,
    /// The connection kind is unknown.
    UnknownKind,
    /// Another GW1 instance holds the tunnel and only one is allowed.
    AnotherInstance,
    /// This instance already has a connection of this kind.
    DuplicateConnection,
    /// The gateway is shutting down.
    ShuttingDown,
    Unknown(u8),
}

impl From<u8> for RefusalReason {
    fn from(v: u8) -> Self {
        match v {
            0x01 => RefusalReason::UnsupportedVersion,
            0x02 => RefusalReason::Malformed,
            0x03 => RefusalReason::WrongRole,
            0x04 => RefusalReason::UnknownKind,
            0x05 => RefusalReason::AnotherInstance,
            0x06 => RefusalReason::DuplicateConnection,
            0x07 => RefusalReason::ShuttingDown,
            other => RefusalReason::Unknown(other),
        }
    }
}

impl From<RefusalReason> for u8 {
    fn from(r: RefusalReason) -> Self {
        match r {
            RefusalReason::UnsupportedVersion => 0x01,
            RefusalReason::Malformed => 0x02,
            RefusalReason::WrongRole => 0x03,
            RefusalReason::UnknownKind => 0x04,
            RefusalReason::AnotherInstance => 0x05,
            RefusalReason::DuplicateConnection => 0x06,
            RefusalReason::ShuttingDown => 0x07,
            RefusalReason::Unknown(v) => v,
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::UnsupportedVersion => f.write_str("unsupported protocol version"),
            RefusalReason::Malformed => f.write_str("malformed handshake"),
            RefusalReason::WrongRole => f.write_str("wrong role"),
            RefusalReason::UnknownKind => f.write_str("unknown connection kind"),
            RefusalReason::AnotherInstance => f.write_str("another GW1 instance is connected"),
            RefusalReason::DuplicateConnection => {
                f.write_str("this instance already has a connection of this kind")
            }
            RefusalReason::ShuttingDown => f.write_str("shutting down"),
            RefusalReason::Unknown(v) => write!(f, "refusal reason {v:#04x}"),
        }
    }
}

/// Handshake frame types (TUNNEL.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeType {
    Hello,
    Refusal,
    Unknown(u8),
}

impl From<u8> for HandshakeType {
    fn from(v: u8) -> Self {
        match v {
            0x01 => HandshakeType::Hello,
            0x02 => HandshakeType::Refusal,
            other => HandshakeType::Unknown(other),
        }
    }
}

impl From<HandshakeType> for u8 {
    fn from(t: HandshakeType) -> Self {
        match t {
            HandshakeType::Hello => 0x01,
            HandshakeType::Refusal => 0x02,
            HandshakeType::Unknown(v) => v,
        }
    }
}

/// A read/write view of a handshake frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HandshakeFrame<T> {
    /// Wraps a buffer without checking it. Accessors return 0 / empty for missing bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        HandshakeFrame { buffer }
    }

    /// Wraps a buffer and validates it with [`HandshakeFrame::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, TunnelDecodeError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks the magic, that the header and the body its length announces are present (and
    /// nothing more), and the length against [`MAX_HANDSHAKE_BODY`]. The version is not
    /// checked here: [`Handshake::parse`] does, after reading the frame type.
    pub fn check_len(&self) -> Result<(), TunnelDecodeError> {
        let b = self.buffer.as_ref();
        check_header(b)?;
        let total = self.frame_len();
        if b.len() < total {
            return Err(TunnelDecodeError::Truncated {
                offset: b.len(),
                what: "handshake body",
            });
        }
        if b.len() > total {
            return Err(TunnelDecodeError::TrailingBytes { offset: total });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    pub fn magic(&self) -> [u8; 4] {
        match self.buffer.as_ref().get(field::MAGIC) {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => [0; 4],
        }
    }

    pub fn major(&self) -> u8 {
        self.byte(field::MAJOR)
    }

    pub fn minor(&self) -> u8 {
        self.byte(field::MINOR)
    }

    pub fn frame_type(&self) -> HandshakeType {
        HandshakeType::from(self.byte(field::TYPE))
    }

    pub fn flags(&self) -> u8 {
        self.byte(field::FLAGS)
    }

    pub fn body_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::BODY_LEN))
    }

    /// Header plus body length.
    pub fn frame_len(&self) -> usize {
        HANDSHAKE_HEADER_LEN.saturating_add(self.body_len())
    }

    /// The body, empty when the buffer is shorter than announced.
    pub fn body(&self) -> &[u8] {
        let end = self.frame_len();
        self.buffer
            .as_ref()
            .get(field::BODY..end)
            .unwrap_or_default()
    }

    pub fn hello_role(&self) -> Role {
        Role::from(self.byte(field::HELLO_ROLE))
    }

    pub fn hello_kind(&self) -> ConnectionKind {
        ConnectionKind::from(self.byte(field::HELLO_KIND))
    }

    pub fn hello_instance(&self) -> InstanceNonce {
        let mut n = [0u8; 16];
        if let Some(src) = self.buffer.as_ref().get(field::HELLO_INSTANCE) {
            n.copy_from_slice(src);
        }
        InstanceNonce(n)
    }

    pub fn hello_capabilities(&self) -> Capabilities {
        Capabilities(be32(self.buffer.as_ref(), field::HELLO_CAPS))
    }

    pub fn refusal_reason(&self) -> RefusalReason {
        RefusalReason::from(self.byte(field::REFUSAL_REASON))
    }

    pub fn refusal_text_len(&self) -> usize {
        usize::from(self.byte(field::REFUSAL_TEXT_LEN))
    }

    /// The refusal text bytes (not checked for UTF-8), empty when they do not fit.
    pub fn refusal_text(&self) -> &[u8] {
        let end = field::REFUSAL_TEXT.saturating_add(self.refusal_text_len());
        self.buffer
            .as_ref()
            .get(field::REFUSAL_TEXT..end)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HandshakeFrame<T> {
    fn set_byte(&mut self, i: usize, v: u8) {
        put_byte(self.buffer.as_mut(), i, v);
    }

    /// Writes magic, version, type, flags and body length.
    pub fn set_header(&mut self, major: u8, minor: u8, t: HandshakeType, body_len: u16) {
        put(self.buffer.as_mut(), field::MAGIC, &HANDSHAKE_MAGIC);
        self.set_byte(field::MAJOR, major);
        self.set_byte(field::MINOR, minor);
        self.set_byte(field::TYPE, t.into());
        self.set_byte(field::FLAGS, 0);
        put(
            self.buffer.as_mut(),
            field::BODY_LEN,
            &body_len.to_be_bytes(),
        );
    }

    pub fn set_hello_role(&mut self, role: Role) {
        self.set_byte(field::HELLO_ROLE, role.into());
    }

    pub fn set_hello_kind(&mut self, kind: ConnectionKind) {
        self.set_byte(field::HELLO_KIND, kind.into());
    }

    pub fn set_hello_instance(&mut self, nonce: InstanceNonce) {
        put(self.buffer.as_mut(), field::HELLO_INSTANCE, &nonce.0);
    }

    pub fn set_hello_capabilities(&mut self, caps: Capabilities) {
        put(
            self.buffer.as_mut(),
            field::HELLO_CAPS,
            &caps.0.to_be_bytes(),
        );
    }

    pub fn set_refusal_reason(&mut self, reason: RefusalReason) {
        self.set_byte(field::REFUSAL_REASON, reason.into());
    }

    /// Writes the text length and the text; does nothing if it does not fit the buffer or is
    /// longer than [`MAX_REFUSAL_TEXT`].
    pub fn set_refusal_text(&mut self, text: &[u8]) {
        let Ok(len) = u8::try_from(text.len()) else {
            return;
        };
        let end = field::REFUSAL_TEXT.saturating_add(text.len());
        if let Some(dst) = self.buffer.as_mut().get_mut(field::REFUSAL_TEXT..end) {
            dst.copy_from_slice(text);
            self.set_byte(field::REFUSAL_TEXT_LEN, len);
        }
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for HandshakeFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Checks magic and the body length limit on the bytes present (a prefix of the stream is fine).
fn check_header(b: &[u8]) -> Result<(), TunnelDecodeError> {
    if b.iter().zip(HANDSHAKE_MAGIC.iter()).any(|(x, y)| x != y) {
        return Err(TunnelDecodeError::BadMagic);
    }
    if b.len() < HANDSHAKE_HEADER_LEN {
        return Err(TunnelDecodeError::Truncated {
            offset: b.len(),
            what: "handshake header",
        });
    }
    let body_len = usize::from(be16(b, field::BODY_LEN));
    if body_len > MAX_HANDSHAKE_BODY {
        return Err(TunnelDecodeError::LimitExceeded {
            offset: field::BODY_LEN.start,
            what: "handshake body length",
            found: body_len,
            limit: MAX_HANDSHAKE_BODY,
        });
    }
    Ok(())
}

/// How long the handshake frame at the start of a stream buffer is: `Ok(Some(len))` once all
/// `len` bytes are present, `Ok(None)` while more are needed. Fails as soon as the magic or the
/// body length is wrong; such an error is fatal for the connection. What follows the frame in
/// `buf` already belongs to the connection's payload stream (Meta or media frames).
pub fn split_handshake(buf: &[u8]) -> Result<Option<usize>, TunnelDecodeError> {
    match check_header(buf) {
        Err(TunnelDecodeError::Truncated { .. }) => return Ok(None),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    let len = HANDSHAKE_HEADER_LEN.saturating_add(usize::from(be16(buf, field::BODY_LEN)));
    Ok((buf.len() >= len).then_some(len))
}

/// Protocol version of a handshake frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

impl Version {
    /// The version this build sends.
    pub const CURRENT: Version = Version {
        major: TUNNEL_VERSION,
        minor: TUNNEL_MINOR_VERSION,
    };
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The first frame each side sends on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hello {
    /// The sender's version; its major equals ours once parsed.
    pub version: Version,
    pub role: Role,
    pub kind: ConnectionKind,
    pub instance: InstanceNonce,
    pub capabilities: Capabilities,
}

/// A receiver's answer instead of its Hello: why the connection is refused. The connection is
/// closed after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// The refuser's version: for [`RefusalReason::UnsupportedVersion`], what it speaks.
    pub version: Version,
    pub reason: RefusalReason,
    /// Human-readable detail, at most [`MAX_REFUSAL_TEXT`] bytes.
    pub text: String,
}

impl Refusal {
    /// A refusal from this build, the text cut at [`MAX_REFUSAL_TEXT`] bytes (on a character
    /// boundary).
    pub fn new(reason: RefusalReason, text: &str) -> Self {
        let mut end = text.len().min(MAX_REFUSAL_TEXT);
        while !text.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        Refusal {
            version: Version::CURRENT,
            reason,
            text: text.get(..end).unwrap_or_default().to_owned(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused ({})", self.reason)?;
        if !self.text.is_empty() {
            write!(f, ": {}", self.text)?;
        }
        write!(f, " [peer speaks tunnel protocol {}]", self.version)
    }
}

/// A handshake frame, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Handshake {
    Hello(Hello),
    Refusal(Refusal),
}

impl Handshake {
    /// Parses a checked frame. A Refusal of any major version is read (its layout is frozen); a
    /// Hello of another major is [`TunnelDecodeError::UnsupportedVersion`].
    pub fn parse<T: AsRef<[u8]>>(frame: &HandshakeFrame<T>) -> Result<Self, TunnelDecodeError> {
        frame.check_len()?;
        let version = Version {
            major: frame.major(),
            minor: frame.minor(),
        };
        let t = frame.frame_type();
        if t == HandshakeType::Refusal {
            return parse_refusal(frame, version);
        }
        if version.major != TUNNEL_VERSION {
            return Err(TunnelDecodeError::UnsupportedVersion {
                major: version.major,
                minor: version.minor,
            });
        }
        let critical = frame.flags() & HANDSHAKE_FLAGS_CRITICAL;
        if critical != 0 {
            return Err(TunnelDecodeError::UnknownCriticalFlags {
                offset: field::FLAGS,
                flags: critical,
            });
        }
        match t {
            HandshakeType::Hello => {
                if frame.body_len() < HELLO_BODY_LEN {
                    return Err(TunnelDecodeError::TooShort {
                        offset: field::BODY_LEN.start,
                        what: "Hello body length",
                        found: frame.body_len(),
                        min: HELLO_BODY_LEN,
                    });
                }
                // Bytes past HELLO_BODY_LEN come from a newer minor version: ignored.
                Ok(Handshake::Hello(Hello {
                    version,
                    role: frame.hello_role(),
                    kind: frame.hello_kind(),
                    instance: frame.hello_instance(),
                    capabilities: frame.hello_capabilities(),
                }))
            }
            _ => Err(TunnelDecodeError::UnknownFrameType {
                offset: field::TYPE,
                value: u8::from(t),
            }),
        }
    }

    /// Decodes exactly one handshake frame from `bytes` (trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<Self, TunnelDecodeError> {
        Self::parse(&HandshakeFrame::new_checked(bytes)?)
    }

    /// Length of the body this frame is emitted with.
    fn body_len(&self) -> usize {
        match self {
            Handshake::Hello(_) => HELLO_BODY_LEN,
            Handshake::Refusal(r) => REFUSAL_FIXED_LEN.saturating_add(r.text.len()),
        }
    }

    /// Bytes [`Handshake::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HANDSHAKE_HEADER_LEN.saturating_add(self.body_len())
    }

    /// Writes the frame at the start of `frame`'s buffer, which must be at least
    /// [`Handshake::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut HandshakeFrame<T>,
    ) -> Result<(), TunnelEncodeError> {
        let needed = self.buffer_len();
        let len = frame.buffer.as_ref().len();
        if len < needed {
            return Err(TunnelEncodeError::BufferTooSmall { len, needed });
        }
        let body_len = self.body_len();
        let body_len16 = u16::try_from(body_len).unwrap_or(u16::MAX);
        match self {
            Handshake::Hello(h) => {
                frame.set_header(
                    h.version.major,
                    h.version.minor,
                    HandshakeType::Hello,
                    body_len16,
                );
                frame.set_hello_role(h.role);
                frame.set_hello_kind(h.kind);
                frame.set_hello_instance(h.instance);
                frame.set_hello_capabilities(h.capabilities);
            }
            Handshake::Refusal(r) => {
                if r.text.len() > MAX_REFUSAL_TEXT {
                    return Err(TunnelEncodeError::LimitExceeded {
                        what: "refusal text",
                        found: r.text.len(),
                        limit: MAX_REFUSAL_TEXT,
                    });
                }
                frame.set_header(
                    r.version.major,
                    r.version.minor,
                    HandshakeType::Refusal,
                    body_len16,
                );
                frame.set_refusal_reason(r.reason);
                frame.set_refusal_text(r.text.as_bytes());
            }
        }
        Ok(())
    }

    /// Appends the frame to `out`; on error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), TunnelEncodeError> {
        let start = out.len();
        out.resize(start.saturating_add(self.buffer_len()), 0);
        let result = match out.get_mut(start..) {
            Some(buf) => self.emit(&mut HandshakeFrame::new_unchecked(buf)),
            None => Ok(()),
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

fn parse_refusal<T: AsRef<[u8]>>(
    frame: &HandshakeFrame<T>,
    version: Version,
) -> Result<Handshake, TunnelDecodeError> {
    let body_len = frame.body_len();
    if body_len < REFUSAL_FIXED_LEN {
        return Err(TunnelDecodeError::TooShort {
            offset: field::BODY_LEN.start,
            what: "Refusal body length",
            found: body_len,
            min: REFUSAL_FIXED_LEN,
        });
    }
    let text_len = frame.refusal_text_len();
    let room = body_len.saturating_sub(REFUSAL_FIXED_LEN);
    if text_len > room {
        return Err(TunnelDecodeError::Truncated {
            offset: frame.frame_len(),
            what: "refusal text",
        });
    }
    // Bytes after the text (a newer version's additions) are ignored, as in a Hello.
    let text = match std::str::from_utf8(frame.refusal_text()) {
        Ok(s) => s.to_owned(),
        Err(e) => {
            return Err(TunnelDecodeError::InvalidUtf8 {
                offset: field::REFUSAL_TEXT.saturating_add(e.valid_up_to()),
            })
        }
    };
    Ok(Handshake::Refusal(Refusal {
        version,
        reason: frame.refusal_reason(),
        text,
    }))
}

/// A read/write view of one media frame: RFC 4571 length, stream id, flags, RTP/RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MediaFrame<T> {
    /// Wraps a buffer without checking it. Accessors return 0 / empty for missing bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        MediaFrame { buffer }
    }

    /// Wraps a buffer holding exactly one frame and validates it with [`MediaFrame::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, TunnelDecodeError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the length prefix is within limits and matches the buffer exactly.
    pub fn check_len(&self) -> Result<(), TunnelDecodeError> {
        let b = self.buffer.as_ref();
        let total = check_media_length(b)?.unwrap_or(MEDIA_LENGTH_LEN);
        if b.len() < total {
            return Err(TunnelDecodeError::Truncated {
                offset: b.len(),
                what: if b.len() < MEDIA_LENGTH_LEN {
                    "media frame length"
                } else {
                    "media frame"
                },
            });
        }
        if b.len() > total {
            return Err(TunnelDecodeError::TrailingBytes { offset: total });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The RFC 4571 length: bytes after the length field.
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::MEDIA_LENGTH)
    }

    pub fn stream_id(&self) -> StreamId {
        StreamId(be16(self.buffer.as_ref(), field::MEDIA_STREAM))
    }

    pub fn flags(&self) -> u8 {
        self.buffer
            .as_ref()
            .get(field::MEDIA_FLAGS)
            .copied()
            .unwrap_or(0)
    }

    pub fn is_rtcp(&self) -> bool {
        self.flags() & MEDIA_FLAG_RTCP != 0
    }

    pub fn is_cover(&self) -> bool {
        self.flags() & MEDIA_FLAG_COVER != 0
    }

    /// The RTP or RTCP packet, empty when the buffer is shorter than announced.
    pub fn packet(&self) -> &[u8] {
        let end = MEDIA_LENGTH_LEN.saturating_add(usize::from(self.length()));
        self.buffer
            .as_ref()
            .get(field::MEDIA_PACKET..end)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MediaFrame<T> {
    pub fn set_length(&mut self, len: u16) {
        put(
            self.buffer.as_mut(),
            field::MEDIA_LENGTH,
            &len.to_be_bytes(),
        );
    }

    pub fn set_stream_id(&mut self, id: StreamId) {
        put(
            self.buffer.as_mut(),
            field::MEDIA_STREAM,
            &id.0.to_be_bytes(),
        );
    }

    pub fn set_flags(&mut self, flags: u8) {
        put_byte(self.buffer.as_mut(), field::MEDIA_FLAGS, flags);
    }

    /// The packet bytes, mutable; empty when the buffer is shorter than announced.
    pub fn packet_mut(&mut self) -> &mut [u8] {
        let end = MEDIA_LENGTH_LEN.saturating_add(usize::from(self.length()));
        self.buffer
            .as_mut()
            .get_mut(field::MEDIA_PACKET..end)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for MediaFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Reads the length prefix at the start of `b`: `Ok(None)` when fewer than two bytes are
/// present, else the whole frame length after checking the limits.
fn check_media_length(b: &[u8]) -> Result<Option<usize>, TunnelDecodeError> {
    if b.len() < MEDIA_LENGTH_LEN {
        return Ok(None);
    }
    let len = usize::from(be16(b, field::MEDIA_LENGTH));
    if len < MEDIA_HEADER_LEN {
        return Err(TunnelDecodeError::TooShort {
            offset: field::MEDIA_LENGTH.start,
            what: "media frame length",
            found: len,
            min: MEDIA_HEADER_LEN,
        });
    }
    let total = MEDIA_LENGTH_LEN.saturating_add(len);
    if total > MAX_MEDIA_FRAME {
        return Err(TunnelDecodeError::LimitExceeded {
            offset: field::MEDIA_LENGTH.start,
            what: "media frame length",
            found: total,
            limit: MAX_MEDIA_FRAME,
        });
    }
    Ok(Some(total))
}

/// The header of one media frame; the packet travels beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaRepr {
    pub stream: StreamId,
    /// The packet is RTCP, not RTP.
    pub rtcp: bool,
    /// A cover/keepalive frame, to be discarded by the receiver.
    pub cover: bool,
}

impl MediaRepr {
    /// A cover frame: what an idle media connection sends to show it is alive.
    pub const COVER: MediaRepr = MediaRepr {
        stream: StreamId(0),
        rtcp: false,
        cover: true,
    };

    /// Parses a checked frame; returns the header and the packet. Unknown critical flags
    /// refuse the frame; unknown ignorable flags are dropped.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        frame: &MediaFrame<&T>,
    ) -> Result<MediaRepr, TunnelDecodeError> {
        frame.check_len()?;
        let flags = frame.flags();
        let critical = flags & MEDIA_FLAGS_CRITICAL;
        if critical != 0 {
            return Err(TunnelDecodeError::UnknownCriticalFlags {
                offset: field::MEDIA_FLAGS,
                flags: critical,
            });
        }
        Ok(MediaRepr {
            stream: frame.stream_id(),
            rtcp: flags & MEDIA_FLAG_RTCP != 0,
            cover: flags & MEDIA_FLAG_COVER != 0,
        })
    }

    fn flags(&self) -> u8 {
        (if self.rtcp { MEDIA_FLAG_RTCP } else { 0 })
            | (if self.cover { MEDIA_FLAG_COVER } else { 0 })
    }

    /// Bytes of a frame carrying a packet of `packet_len` bytes.
    pub const fn buffer_len(packet_len: usize) -> usize {
        MEDIA_OVERHEAD + packet_len
    }

    fn check_packet_len(packet_len: usize) -> Result<u16, TunnelEncodeError> {
        let too_long = TunnelEncodeError::LimitExceeded {
            what: "media packet",
            found: packet_len,
            limit: MAX_MEDIA_PACKET,
        };
        if packet_len > MAX_MEDIA_PACKET {
            return Err(too_long);
        }
        u16::try_from(MEDIA_HEADER_LEN.saturating_add(packet_len)).map_err(|_| too_long)
    }

    /// Writes the length prefix and header for a packet of `packet_len` bytes; the caller then
    /// fills [`MediaFrame::packet_mut`] (smoltcp's emit-then-fill-payload order).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut MediaFrame<T>,
        packet_len: usize,
    ) -> Result<(), TunnelEncodeError> {
        let length = Self::check_packet_len(packet_len)?;
        let needed = Self::buffer_len(packet_len);
        let len = frame.buffer.as_ref().len();
        if len < needed {
            return Err(TunnelEncodeError::BufferTooSmall { len, needed });
        }
        frame.set_length(length);
        frame.set_stream_id(self.stream);
        frame.set_flags(self.flags());
        Ok(())
    }

    /// Appends one frame carrying `packet` to `out`: no allocation beyond `out`'s growth. On
    /// error `out` is left as it was.
    pub fn encode(&self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelEncodeError> {
        let length = Self::check_packet_len(packet.len())?;
        out.reserve(Self::buffer_len(packet.len()));
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&self.stream.0.to_be_bytes());
        out.push(self.flags());
        out.extend_from_slice(packet);
        Ok(())
    }
}

/// Cuts the media connection's byte stream into frames. Sans-IO: push what the connection
/// read, then take frames with [`MediaFramer::next_frame`] until it returns `Ok(None)`.
///
/// Bounded: a frame longer than [`MAX_MEDIA_FRAME`] is an error as soon as its length prefix
/// arrives, so the buffer holds at most one partial frame plus what was pushed since the last
/// drain. An error is fatal for the connection (the stream cannot be resynchronised) and
/// repeats on every later call.
///
/// ```
/// # use codecs::{meta::StreamId, tunnel::{MediaFramer, MediaRepr}};
/// let repr = MediaRepr { stream: StreamId(4), rtcp: false, cover: false };
/// let mut bytes = Vec::new();
/// repr.encode(&[0x80, 0x00], &mut bytes).unwrap();
/// let mut framer = MediaFramer::new();
/// framer.push(&bytes[..3]);
/// assert!(framer.next_frame().unwrap().is_none());
/// framer.push(&bytes[3..]);
/// let (got, packet) = framer.next_frame().unwrap().unwrap();
/// assert_eq!((got, packet), (repr, &[0x80, 0x00][..]));
/// ```
#[derive(Debug, Default, Clone)]
pub struct MediaFramer {
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// Stream offset of `buf[0]`, for error offsets that point into the stream.
    consumed: u64,
    failed: Option<TunnelDecodeError>,
}

impl MediaFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.consumed = self.consumed.saturating_add(self.start as u64);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's header and packet; `Ok(None)` until enough bytes are pushed.
    /// Error offsets are relative to the frame that failed; [`MediaFramer::stream_offset`]
    /// tells where that frame starts in the stream.
    pub fn next_frame(&mut self) -> Result<Option<(MediaRepr, &[u8])>, TunnelDecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let total = match check_media_length(pending) {
            Ok(Some(total)) if pending.len() >= total => total,
            Ok(_) => return Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        let bytes = pending.get(..total).unwrap_or_default();
        let frame = MediaFrame::new_unchecked(bytes);
        let repr = match MediaRepr::parse(&frame) {
            Ok(repr) => repr,
            Err(e) => {
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        self.start = self.start.saturating_add(total);
        let packet = bytes.get(field::MEDIA_PACKET..).unwrap_or_default();
        Ok(Some((repr, packet)))
    }

    /// Stream offset of the next unconsumed byte: where the next (or failing) frame starts.
    pub fn stream_offset(&self) -> u64 {
        self.consumed.saturating_add(self.start as u64)
    }

    /// Bytes pushed but not yet returned in frames.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }
}

#[cfg(test)]
mod tests;
