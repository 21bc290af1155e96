//! The Meta wire format: versioned frames whose body is a list of TLV fields, specified in
//! `codecs/META.md` (section numbers below refer to it).
//!
//! Nothing here panics on any input: every length is checked against the bytes present and
//! against a named `MAX_*` limit, and each failure is a [`MetaDecodeError`] naming the absolute
//! byte offset in the frame and what was being read. The encoder enforces the same limits, so
//! whatever [`encode_frame`] produces, [`decode_frame`] accepts and decodes to an equal message.
//!
//! Stream use (the tunnel is a TLS byte stream): feed bytes to a [`FrameReader`] (or call
//! [`split_frame`] on your own buffer) to cut complete frames, then [`decode_frame`] each one.
//! An error while cutting frames is fatal for the connection (the stream cannot be resynchronised);
//! an error from [`decode_frame`] on a complete frame concerns that frame only.

use super::codec::{LengthOverflow, Reader, Truncated, Writer};
use super::{
    Alerting, Answer, CallRef, Cause, Codec, Direction, Dtmf, Keepalive, MediaDescription,
    MediaKind, MediaUpdate, Message, OfferAnswer, Party, Progress, Release, Setup, StreamId,
    TelephoneEvent,
};

/// Major version of the Meta wire format this build speaks. A frame with another major version
/// is refused (META.md §3).
pub const META_VERSION: u8 = 1;
/// Minor version this build sends. Receivers accept any minor version of their major: minor
/// revisions only add non-critical fields, flags or message types (META.md §3).
pub const META_MINOR_VERSION: u8 = 0;
/// First two bytes of every frame: ASCII "MT".
pub const MAGIC: [u8; 2] = *b"MT";
/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 14;
/// Largest frame, header included.
pub const MAX_FRAME_LEN: usize = 65_536;
/// Most media descriptions in one message.
pub const MAX_MEDIA: usize = 16;
/// Most codecs in one media description.
pub const MAX_CODECS: usize = 32;
/// Longest string value, in bytes of UTF-8.
pub const MAX_STRING_LEN: usize = 1024;
/// Deepest nesting of TLV lists inside the body (the body's own list is level 1).
pub const MAX_NESTING: usize = 4;
/// Bit of a field type that makes the field critical: a receiver that does not know the field
/// must reject the message instead of skipping the field.
pub const FIELD_CRITICAL: u16 = 0x8000;
/// Header flag bits a receiver must understand; an unknown bit here rejects the frame. The
/// other four bits (0x0f) are ignored when unknown. No flag is defined in version 1.0.
pub const FLAGS_CRITICAL_MASK: u8 = 0xf0;

/// Why bytes are not a valid Meta frame. Offsets are absolute, counted from the first byte of
/// the frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaDecodeError {
    #[error("truncated at offset {offset}: expected {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("bad magic: not a Meta frame")]
    BadMagic,
    #[error("unsupported Meta major version {found} (this side speaks {META_VERSION})")]
    BadVersion { found: u8 },
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    #[error("unknown critical header flags {flags:#04x}")]
    UnknownCriticalFlags { flags: u8 },
    #[error("unknown critical field {field:#06x} in {context} at offset {offset}")]
    UnknownCriticalField {
        offset: usize,
        context: &'static str,
        field: u16,
    },
    #[error("{what} exceeds the limit of {limit} at offset {offset}")]
    LimitExceeded {
        offset: usize,
        what: &'static str,
        limit: usize,
    },
    #[error("invalid UTF-8 at offset {offset}")]
    InvalidUtf8 { offset: usize },
    /// A string with a control character (CR, LF, NUL, ...; only HTAB is allowed): it would
    /// end up in a header the receiver writes.
    #[error("control character in {what} at offset {offset}")]
    ControlCharacter { offset: usize, what: &'static str },
    #[error("{what} at offset {offset} has length {found}, expected {expected}")]
    InvalidLength {
        offset: usize,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("invalid {what} value {value} at offset {offset}")]
    InvalidValue {
        offset: usize,
        what: &'static str,
        value: u32,
    },
    #[error("{what} missing from {context} at offset {offset}")]
    MissingField {
        offset: usize,
        context: &'static str,
        what: &'static str,
    },
    #[error("{what} repeated at offset {offset}")]
    DuplicateField { offset: usize, what: &'static str },
    #[error("trailing bytes at offset {offset}")]
    TrailingBytes { offset: usize },
}

impl MetaDecodeError {
    /// The Q.850 cause a receiver reports when it refuses a frame for this reason (META.md §7),
    /// e.g. in a Release for the call or in its transcript.
    pub fn cause(&self) -> Cause {
        match self {
            MetaDecodeError::UnknownMessageType(_) => Cause::MESSAGE_TYPE_NOT_IMPLEMENTED,
            MetaDecodeError::MissingField { .. } => Cause::MANDATORY_IE_MISSING,
            // Q.850 99: information element / parameter non-existent or not implemented.
            MetaDecodeError::UnknownCriticalField { .. }
            | MetaDecodeError::UnknownCriticalFlags { .. } => Cause(99),
            // Q.850 100: invalid information element contents.
            MetaDecodeError::InvalidUtf8 { .. }
            | MetaDecodeError::ControlCharacter { .. }
            | MetaDecodeError::InvalidLength { .. }
            | MetaDecodeError::InvalidValue { .. } => Cause(100),
            _ => Cause::INVALID_MESSAGE,
        }
    }
}

impl From<Truncated> for MetaDecodeError {
    fn from(t: Truncated) -> Self {
        MetaDecodeError::Truncated {
            offset: t.offset,
            what: t.what,
        }
    }
}

/// Why a message cannot be encoded: it exceeds a limit the receiver would enforce. The output
/// buffer is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaEncodeError {
    #[error("{what} exceeds the limit of {limit}")]
    LimitExceeded { what: &'static str, limit: usize },
    /// A string with a control character (only HTAB is allowed); see
    /// [`MetaDecodeError::ControlCharacter`].
    #[error("control character in {what}")]
    ControlCharacter { what: &'static str },
}

/// Whether `c` may appear in a Meta string: anything but control characters (C0, DEL, C1),
/// HTAB excepted (SIP's quoted strings and SDP allow it). A string the other half writes into
/// a SIP header or a Q.931 IE can then never carry CR, LF or NUL (header injection).
pub fn is_text_char(c: char) -> bool {
    c == '\t' || !c.is_control()
}

impl From<LengthOverflow> for MetaEncodeError {
    fn from(e: LengthOverflow) -> Self {
        MetaEncodeError::LimitExceeded {
            what: e.what,
            limit: e.limit,
        }
    }
}

/// Message type codes (META.md §4). Unknown codes are kept, hickory-style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Setup,
    Progress,
    Alerting,
    Answer,
    Release,
    Dtmf,
    MediaUpdate,
    Keepalive,
    Unknown(u8),
}

impl MessageType {
    /// The type code of `msg`.
    pub fn of(msg: &Message) -> Self {
        match msg {
            Message::Setup(_) => MessageType::Setup,
            Message::Progress(_) => MessageType::Progress,
            Message::Alerting(_) => MessageType::Alerting,
            Message::Answer(_) => MessageType::Answer,
            Message::Release(_) => MessageType::Release,
            Message::Dtmf(_) => MessageType::Dtmf,
            Message::MediaUpdate(_) => MessageType::MediaUpdate,
            Message::Keepalive(_) => MessageType::Keepalive,
        }
    }
}

impl From<u8> for MessageType {
    fn from(code: u8) -> Self {
        match code {
            0x01 => MessageType::Setup,
            0x02 => MessageType::Progress,
            0x03 => MessageType::Alerting,
            0x04 => MessageType::Answer,
            0x05 => MessageType::Release,
            0x06 => MessageType::Dtmf,
            0x07 => MessageType::MediaUpdate,
            0x08 => MessageType::Keepalive,
            other => MessageType::Unknown(other),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> Self {
        match t {
            MessageType::Setup => 0x01,
            MessageType::Progress => 0x02,
            MessageType::Alerting => 0x03,
            MessageType::Answer => 0x04,
            MessageType::Release => 0x05,
            MessageType::Dtmf => 0x06,
            MessageType::MediaUpdate => 0x07,
            MessageType::Keepalive => 0x08,
            MessageType::Unknown(code) => code,
        }
    }
}

/// The fixed 14-byte frame header (META.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub minor: u8,
    pub msg_type: MessageType,
    pub flags: u8,
    /// Per-direction frame sequence number (META.md §2.1).
    pub seq: u32,
    pub body_len: usize,
}

impl FrameHeader {
    /// Reads the header at the start of `bytes` (what follows it is not looked at). Fails only
    /// on errors that break the stream: bad magic, another major version, an oversized frame.
    /// Lets a receiver learn the sequence number of a frame whose body fails to decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaDecodeError> {
        let mut r = Reader::new(bytes);
        if r.array::<2>("magic")? != MAGIC {
            return Err(MetaDecodeError::BadMagic);
        }
        let major = r.u8("major version")?;
        if major != META_VERSION {
            return Err(MetaDecodeError::BadVersion { found: major });
        }
        let minor = r.u8("minor version")?;
        let msg_type = MessageType::from(r.u8("message type")?);
        let flags = r.u8("flags")?;
        let seq = r.u32("sequence number")?;
        let len_offset = r.offset();
        let body_len = r.u32("body length")?;
        let too_long = MetaDecodeError::LimitExceeded {
            offset: len_offset,
            what: "frame length",
            limit: MAX_FRAME_LEN,
        };
        let body_len = usize::try_from(body_len).map_err(|_| too_long.clone())?;
        if body_len > MAX_FRAME_LEN - HEADER_LEN {
            return Err(too_long);
        }
        Ok(FrameHeader {
            minor,
            msg_type,
            flags,
            seq,
            body_len,
        })
    }

    /// Length of the whole frame, header included.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.body_len)
    }
}

/// Tells how long the frame at the start of a stream buffer is: `Ok(Some(len))` when all `len`
/// bytes are present, `Ok(None)` when more bytes are needed. Checks magic and major version as
/// soon as their bytes arrive, and the length against [`MAX_FRAME_LEN`]; an error means the
/// stream is not (or no longer) Meta and the connection must be closed.
pub fn split_frame(buf: &[u8]) -> Result<Option<usize>, MetaDecodeError> {
    if buf.iter().zip(MAGIC.iter()).any(|(got, want)| got != want) {
        return Err(MetaDecodeError::BadMagic);
    }
    if let Some(&major) = buf.get(2) {
        if major != META_VERSION {
            return Err(MetaDecodeError::BadVersion { found: major });
        }
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = FrameHeader::decode(buf)?.frame_len();
    Ok((buf.len() >= len).then_some(len))
}

/// Cuts a byte stream into complete frames. Sans-IO: the caller pushes what it read from the
/// connection and pulls frames out.
///
/// ```
/// # use codecs::meta::{wire::{self, FrameReader}, Keepalive, Message};
/// let mut bytes = Vec::new();
/// let msg = Message::Keepalive(Keepalive { seq: 1, reply: false });
/// wire::encode_frame(7, &msg, &mut bytes).unwrap();
/// let mut reader = FrameReader::new();
/// reader.push(&bytes[..5]);
/// assert_eq!(reader.next_frame(), Ok(None));
/// reader.push(&bytes[5..]);
/// let frame = reader.next_frame().unwrap().unwrap();
/// assert_eq!(wire::decode_frame(frame), Ok((7, msg)));
/// ```
#[derive(Debug, Default, Clone)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    start: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, to pass to [`decode_frame`]; `Ok(None)` until enough bytes have
    /// been pushed. An error is fatal for the connection; it repeats on every later call.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, MetaDecodeError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some(len) = split_frame(pending)? else {
            return Ok(None);
        };
        let frame = pending.get(..len).unwrap_or_default();
        self.start = self.start.saturating_add(len);
        Ok(Some(frame))
    }

    /// Bytes pushed but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }
}

/// Appends one frame carrying `msg` with sequence number `seq` to `out`. On error `out` is left
/// as it was.
pub fn encode_frame(seq: u32, msg: &Message, out: &mut Vec<u8>) -> Result<(), MetaEncodeError> {
    let start = out.len();
    let mut w = Writer::new(out);
    let result = write_frame(seq, msg, &mut w, start);
    if result.is_err() {
        w.truncate(start);
    }
    result
}

fn write_frame(
    seq: u32,
    msg: &Message,
    w: &mut Writer<'_>,
    start: usize,
) -> Result<(), MetaEncodeError> {
    let too_long = MetaEncodeError::LimitExceeded {
        what: "frame length",
        limit: MAX_FRAME_LEN,
    };
    w.bytes(&MAGIC);
    w.u8(META_VERSION);
    w.u8(META_MINOR_VERSION);
    w.u8(MessageType::of(msg).into());
    w.u8(0); // flags: none defined in 1.0
    w.u32(seq);
    let len_at = w.len();
    w.u32(0);
    write_body(msg, w)?;
    let frame_len = w.len().saturating_sub(start);
    if frame_len > MAX_FRAME_LEN {
        return Err(too_long);
    }
    let body_len = u32::try_from(frame_len.saturating_sub(HEADER_LEN)).map_err(|_| too_long)?;
    w.patch(len_at, &body_len.to_be_bytes(), "body length")?;
    Ok(())
}

/// Decodes exactly one frame, returning its sequence number and message. Trailing bytes are an
/// error. Receivers check the sequence number themselves (META.md §2.1).
pub fn decode_frame(bytes: &[u8]) -> Result<(u32, Message), MetaDecodeError> {
    let header = FrameHeader::decode(bytes)?;
    let mut r = Reader::new(bytes);
    r.take(HEADER_LEN, "frame header")?;
    let body = r.sub(header.body_len, "frame body")?;
    if r.any_left() {
        return Err(MetaDecodeError::TrailingBytes { offset: r.offset() });
    }
    let unknown_critical = header.flags & FLAGS_CRITICAL_MASK;
    if unknown_critical != 0 {
        return Err(MetaDecodeError::UnknownCriticalFlags {
            flags: unknown_critical,
        });
    }
    let msg = read_body(header.msg_type, body)?;
    Ok((header.seq, msg))
}

/// Appends `msg` as one frame with sequence number 0: the convenience form of [`encode_frame`]
/// for callers that do not sequence frames (tests, tools).
pub fn encode(msg: &Message, out: &mut Vec<u8>) -> Result<(), MetaEncodeError> {
    encode_frame(0, msg, out)
}

/// Decodes exactly one frame, ignoring its sequence number; trailing bytes are an error. The
/// convenience form of [`decode_frame`].
pub fn decode(bytes: &[u8]) -> Result<Message, MetaDecodeError> {
    decode_frame(bytes).map(|(_, msg)| msg)
}

// ---- Field type codes (META.md §5). Each TLV list has its own numbering. ----

mod field {
    // Message body.
    pub const CALL: u16 = 0x0001;
    pub const CALLING: u16 = 0x0002;
    pub const CALLED: u16 = 0x0003;
    pub const EMERGENCY: u16 = 0x0004;
    pub const MEDIA: u16 = 0x0005;
    pub const CAUSE: u16 = 0x0006;
    pub const DTMF_EVENT: u16 = 0x0007;
    pub const DTMF_DURATION: u16 = 0x0008;
    pub const OFFER_ANSWER: u16 = 0x0009;
    pub const KEEPALIVE_SEQ: u16 = 0x000a;
    pub const KEEPALIVE_REPLY: u16 = 0x000b;

    // Party.
    pub const PARTY_USER: u16 = 0x0001;
    pub const PARTY_DISPLAY: u16 = 0x0002;

    // Media description.
    pub const MEDIA_STREAM: u16 = 0x0001;
    pub const MEDIA_KIND: u16 = 0x0002;
    pub const MEDIA_DIRECTION: u16 = 0x0003;
    pub const MEDIA_CODEC: u16 = 0x0004;
    pub const MEDIA_TELEPHONE_EVENT: u16 = 0x0005;
    pub const MEDIA_PTIME: u16 = 0x0006;

    // Codec.
    pub const CODEC_PAYLOAD_TYPE: u16 = 0x0001;
    pub const CODEC_NAME: u16 = 0x0002;
    pub const CODEC_CLOCK_RATE: u16 = 0x0003;
    pub const CODEC_CHANNELS: u16 = 0x0004;
    pub const CODEC_FMTP: u16 = 0x0005;

    // Telephone event.
    pub const TE_PAYLOAD_TYPE: u16 = 0x0001;
    pub const TE_CLOCK_RATE: u16 = 0x0002;
}

/// The body fields each message type defines (META.md §4). A field not listed for a message
/// type is treated as unknown in that message.
fn body_fields(t: MessageType) -> Result<&'static [u16], MetaDecodeError> {
    use field::*;
    Ok(match t {
        MessageType::Setup => &[CALL, CALLING, CALLED, EMERGENCY, MEDIA],
        MessageType::Progress | MessageType::Alerting | MessageType::Answer => &[CALL, MEDIA],
        MessageType::Release => &[CALL, CAUSE],
        MessageType::Dtmf => &[CALL, DTMF_EVENT, DTMF_DURATION],
        MessageType::MediaUpdate => &[CALL, OFFER_ANSWER, MEDIA],
        MessageType::Keepalive => &[KEEPALIVE_SEQ, KEEPALIVE_REPLY],
        MessageType::Unknown(code) => return Err(MetaDecodeError::UnknownMessageType(code)),
    })
}

// ---- Encoding ----

fn write_field(
    w: &mut Writer<'_>,
    code: u16,
    what: &'static str,
    value: impl FnOnce(&mut Writer<'_>) -> Result<(), MetaEncodeError>,
) -> Result<(), MetaEncodeError> {
    w.u16(code);
    w.u16_prefixed(what, value)
}

fn write_u8(
    w: &mut Writer<'_>,
    code: u16,
    what: &'static str,
    v: u8,
) -> Result<(), MetaEncodeError> {
    write_field(w, code, what, |w| {
        w.u8(v);
        Ok(())
    })
}

fn write_u16(
    w: &mut Writer<'_>,
    code: u16,
    what: &'static str,
    v: u16,
) -> Result<(), MetaEncodeError> {
    write_field(w, code, what, |w| {
        w.u16(v);
        Ok(())
    })
}

fn write_u32(
    w: &mut Writer<'_>,
    code: u16,
    what: &'static str,
    v: u32,
) -> Result<(), MetaEncodeError> {
    write_field(w, code, what, |w| {
        w.u32(v);
        Ok(())
    })
}

/// Booleans are sent only when true (value 1); absence means false.
fn write_flag(
    w: &mut Writer<'_>,
    code: u16,
    what: &'static str,
    v: bool,
) -> Result<(), MetaEncodeError> {
    if v {
        write_u8(w, code, what, 1)?;
    }
    Ok(())
}

fn write_str(
    w: &mut Writer<'_>,
    code: u16,
    what: &'static str,
    v: &str,
) -> Result<(), MetaEncodeError> {
    if v.len() > MAX_STRING_LEN {
        return Err(MetaEncodeError::LimitExceeded {
            what,
            limit: MAX_STRING_LEN,
        });
    }
    if !v.chars().all(is_text_char) {
        return Err(MetaEncodeError::ControlCharacter { what });
    }
    write_field(w, code, what, |w| {
        w.bytes(v.as_bytes());
        Ok(())
    })
}

fn write_nested<T: Tlv>(w: &mut Writer<'_>, code: u16, v: &T) -> Result<(), MetaEncodeError> {
    write_field(w, code, T::CONTEXT, |w| v.write_fields(w))
}

fn write_media(w: &mut Writer<'_>, media: &[MediaDescription]) -> Result<(), MetaEncodeError> {
    if media.len() > MAX_MEDIA {
        return Err(MetaEncodeError::LimitExceeded {
            what: "media descriptions",
            limit: MAX_MEDIA,
        });
    }
    media
        .iter()
        .try_for_each(|m| write_nested(w, field::MEDIA, m))
}

/// Fields are written in ascending code order; optional fields only when present.
fn write_body(msg: &Message, w: &mut Writer<'_>) -> Result<(), MetaEncodeError> {
    use field::*;
    let call = |w: &mut Writer<'_>, c: CallRef| write_u32(w, CALL, "call reference", c.0);
    match msg {
        Message::Setup(m) => {
            call(w, m.call)?;
            write_nested(w, CALLING, &m.calling)?;
            write_nested(w, CALLED, &m.called)?;
            write_flag(w, EMERGENCY, "emergency", m.emergency)?;
            write_media(w, &m.media)
        }
        Message::Progress(Progress { call: c, media })
        | Message::Alerting(Alerting { call: c, media })
        | Message::Answer(Answer { call: c, media }) => {
            call(w, *c)?;
            write_media(w, media)
        }
        Message::Release(m) => {
            call(w, m.call)?;
            write_u8(w, CAUSE, "cause", m.cause.0)
        }
        Message::Dtmf(m) => {
            call(w, m.call)?;
            write_u8(w, DTMF_EVENT, "dtmf event", m.event)?;
            write_u16(w, DTMF_DURATION, "dtmf duration", m.duration_ms)
        }
        Message::MediaUpdate(m) => {
            call(w, m.call)?;
            write_u8(w, OFFER_ANSWER, "offer/answer", offer_answer_code(m.kind))?;
            write_media(w, &m.media)
        }
        Message::Keepalive(m) => {
            write_u32(w, KEEPALIVE_SEQ, "keepalive sequence", m.seq)?;
            write_flag(w, KEEPALIVE_REPLY, "keepalive reply", m.reply)
        }
    }
}

fn offer_answer_code(k: OfferAnswer) -> u8 {
    match k {
        OfferAnswer::Offer => 0,
        OfferAnswer::Answer => 1,
    }
}

fn media_kind_code(k: MediaKind) -> u8 {
    match k {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
        MediaKind::Other => 2,
    }
}

fn direction_code(d: Direction) -> u8 {
    match d {
        Direction::SendRecv => 0,
        Direction::SendOnly => 1,
        Direction::RecvOnly => 2,
        Direction::Inactive => 3,
    }
}

// ---- Decoding ----

/// One TLV field as read from a list.
struct Field<'a> {
    code: u16,
    /// Offset of the field's type code.
    offset: usize,
    value: Reader<'a>,
    /// Nesting level of the list this field belongs to.
    depth: usize,
}

/// A list of TLV fields: a frame body or a nested field's value.
struct Fields<'a> {
    r: Reader<'a>,
    depth: usize,
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<Option<Field<'a>>, MetaDecodeError> {
        if !self.r.any_left() {
            return Ok(None);
        }
        let offset = self.r.offset();
        let code = self.r.u16("field type")?;
        let len = self.r.u16("field length")?;
        let value = self.r.sub(usize::from(len), "field value")?;
        Ok(Some(Field {
            code,
            offset,
            value,
            depth: self.depth,
        }))
    }
}

impl<'a> Field<'a> {
    /// The field's type with the critical bit cleared: known fields are recognised either way.
    fn number(&self) -> u16 {
        self.code & !FIELD_CRITICAL
    }

    /// The rule for fields this side does not know (META.md §6): skip, unless critical.
    fn unknown(&self, context: &'static str) -> Result<(), MetaDecodeError> {
        if self.code & FIELD_CRITICAL != 0 {
            return Err(MetaDecodeError::UnknownCriticalField {
                offset: self.offset,
                context,
                field: self.code,
            });
        }
        Ok(())
    }

    fn fixed<const N: usize>(mut self, what: &'static str) -> Result<[u8; N], MetaDecodeError> {
        let found = self.value.left();
        if found != N {
            return Err(MetaDecodeError::InvalidLength {
                offset: self.offset,
                what,
                expected: N,
                found,
            });
        }
        Ok(self.value.array::<N>(what)?)
    }

    fn u8(self, what: &'static str) -> Result<u8, MetaDecodeError> {
        self.fixed::<1>(what).map(|[b]| b)
    }

    fn u16(self, what: &'static str) -> Result<u16, MetaDecodeError> {
        self.fixed::<2>(what).map(u16::from_be_bytes)
    }

    fn u32(self, what: &'static str) -> Result<u32, MetaDecodeError> {
        self.fixed::<4>(what).map(u32::from_be_bytes)
    }

    /// A one-byte code checked by `map`.
    fn code<T>(self, what: &'static str, map: fn(u8) -> Option<T>) -> Result<T, MetaDecodeError> {
        let offset = self.value.offset();
        let v = self.u8(what)?;
        map(v).ok_or(MetaDecodeError::InvalidValue {
            offset,
            what,
            value: u32::from(v),
        })
    }

    fn flag(self, what: &'static str) -> Result<bool, MetaDecodeError> {
        self.code(what, |v| match v {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        })
    }

    fn string(mut self, what: &'static str) -> Result<String, MetaDecodeError> {
        let start = self.value.offset();
        if self.value.left() > MAX_STRING_LEN {
            return Err(MetaDecodeError::LimitExceeded {
                offset: start,
                what,
                limit: MAX_STRING_LEN,
            });
        }
        let bytes = self.value.rest();
        match std::str::from_utf8(bytes) {
            Ok(s) => match s.char_indices().find(|(_, c)| !is_text_char(*c)) {
                Some((i, _)) => Err(MetaDecodeError::ControlCharacter {
                    offset: start.saturating_add(i),
                    what,
                }),
                None => Ok(s.to_owned()),
            },
            Err(e) => Err(MetaDecodeError::InvalidUtf8 {
                offset: start.saturating_add(e.valid_up_to()),
            }),
        }
    }

    fn nested<T: Tlv>(self) -> Result<T, MetaDecodeError> {
        let depth = self.depth.saturating_add(1);
        if depth > MAX_NESTING {
            return Err(MetaDecodeError::LimitExceeded {
                offset: self.offset,
                what: "nesting depth",
                limit: MAX_NESTING,
            });
        }
        T::read_fields(
            Fields {
                r: self.value,
                depth,
            },
            self.offset,
        )
    }
}

/// Stores a singular field's value; a second occurrence is an error.
fn once<'a, T>(
    slot: &mut Option<T>,
    f: Field<'a>,
    what: &'static str,
    read: impl FnOnce(Field<'a>) -> Result<T, MetaDecodeError>,
) -> Result<(), MetaDecodeError> {
    if slot.is_some() {
        return Err(MetaDecodeError::DuplicateField {
            offset: f.offset,
            what,
        });
    }
    *slot = Some(read(f)?);
    Ok(())
}

/// Appends a repeated field's value, up to `limit` occurrences.
fn push_limited<'a, T>(
    list: &mut Vec<T>,
    f: Field<'a>,
    what: &'static str,
    limit: usize,
    read: impl FnOnce(Field<'a>) -> Result<T, MetaDecodeError>,
) -> Result<(), MetaDecodeError> {
    if list.len() >= limit {
        return Err(MetaDecodeError::LimitExceeded {
            offset: f.offset,
            what,
            limit,
        });
    }
    list.push(read(f)?);
    Ok(())
}

fn required<T>(
    v: Option<T>,
    context: &'static str,
    offset: usize,
    what: &'static str,
) -> Result<T, MetaDecodeError> {
    v.ok_or(MetaDecodeError::MissingField {
        offset,
        context,
        what,
    })
}

/// Every body field any message type defines; `read_body` fills in what it finds.
#[derive(Default)]
struct Body {
    call: Option<CallRef>,
    calling: Option<Party>,
    called: Option<Party>,
    emergency: Option<bool>,
    media: Vec<MediaDescription>,
    cause: Option<Cause>,
    dtmf_event: Option<u8>,
    dtmf_duration: Option<u16>,
    offer_answer: Option<OfferAnswer>,
    keepalive_seq: Option<u32>,
    keepalive_reply: Option<bool>,
}

fn read_body(t: MessageType, r: Reader<'_>) -> Result<Message, MetaDecodeError> {
    use field::*;
    const CTX: &str = "message body";
    let allowed = body_fields(t)?;
    let at = r.offset();
    let mut fields = Fields { r, depth: 1 };
    let mut b = Body::default();
    while let Some(f) = fields.next()? {
        let n = f.number();
        if !allowed.contains(&n) {
            f.unknown(CTX)?;
            continue;
        }
        match n {
            CALL => once(&mut b.call, f, "call reference", |f| {
                f.u32("call reference").map(CallRef)
            })?,
            CALLING => once(&mut b.calling, f, "calling party", Field::nested)?,
            CALLED => once(&mut b.called, f, "called party", Field::nested)?,
            EMERGENCY => once(&mut b.emergency, f, "emergency", |f| f.flag("emergency"))?,
            MEDIA => push_limited(
                &mut b.media,
                f,
                "media descriptions",
                MAX_MEDIA,
                Field::nested,
            )?,
            CAUSE => once(&mut b.cause, f, "cause", |f| f.u8("cause").map(Cause))?,
            DTMF_EVENT => once(&mut b.dtmf_event, f, "dtmf event", |f| f.u8("dtmf event"))?,
            DTMF_DURATION => once(&mut b.dtmf_duration, f, "dtmf duration", |f| {
                f.u16("dtmf duration")
            })?,
            OFFER_ANSWER => once(&mut b.offer_answer, f, "offer/answer", |f| {
                f.code("offer/answer", |v| match v {
                    0 => Some(OfferAnswer::Offer),
                    1 => Some(OfferAnswer::Answer),
                    _ => None,
                })
            })?,
            KEEPALIVE_SEQ => once(&mut b.keepalive_seq, f, "keepalive sequence", |f| {
                f.u32("keepalive sequence")
            })?,
            KEEPALIVE_REPLY => once(&mut b.keepalive_reply, f, "keepalive reply", |f| {
                f.flag("keepalive reply")
            })?,
            _ => f.unknown(CTX)?,
        }
    }
    let req = |v, what| required(v, CTX, at, what);
    let msg = match t {
        MessageType::Setup => Message::Setup(Setup {
            call: req(b.call, "call reference")?,
            calling: required(b.calling, CTX, at, "calling party")?,
            called: required(b.called, CTX, at, "called party")?,
            emergency: b.emergency.unwrap_or(false),
            media: b.media,
        }),
        MessageType::Progress => Message::Progress(Progress {
            call: req(b.call, "call reference")?,
            media: b.media,
        }),
        MessageType::Alerting => Message::Alerting(Alerting {
            call: req(b.call, "call reference")?,
            media: b.media,
        }),
        MessageType::Answer => Message::Answer(Answer {
            call: req(b.call, "call reference")?,
            media: b.media,
        }),
        MessageType::Release => Message::Release(Release {
            call: req(b.call, "call reference")?,
            cause: required(b.cause, CTX, at, "cause")?,
        }),
        MessageType::Dtmf => Message::Dtmf(Dtmf {
            call: req(b.call, "call reference")?,
            event: required(b.dtmf_event, CTX, at, "dtmf event")?,
            duration_ms: required(b.dtmf_duration, CTX, at, "dtmf duration")?,
        }),
        MessageType::MediaUpdate => Message::MediaUpdate(MediaUpdate {
            call: req(b.call, "call reference")?,
            kind: required(b.offer_answer, CTX, at, "offer/answer")?,
            media: b.media,
        }),
        MessageType::Keepalive => Message::Keepalive(Keepalive {
            seq: required(b.keepalive_seq, CTX, at, "keepalive sequence")?,
            reply: b.keepalive_reply.unwrap_or(false),
        }),
        MessageType::Unknown(code) => return Err(MetaDecodeError::UnknownMessageType(code)),
    };
    Ok(msg)
}

/// A structure carried as the value of a nested field: a TLV list of its own (the rustls
/// `Codec` pattern, one implementation per structure).
trait Tlv: Sized {
    /// Name of the list, for errors.
    const CONTEXT: &'static str;
    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), MetaEncodeError>;
    /// `at` is the offset of the field that carries the list.
    fn read_fields(fields: Fields<'_>, at: usize) -> Result<Self, MetaDecodeError>;
}

impl Tlv for Party {
    const CONTEXT: &'static str = "party";

    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), MetaEncodeError> {
        write_str(w, field::PARTY_USER, "party user", &self.user)?;
        if let Some(display) = &self.display {
            write_str(w, field::PARTY_DISPLAY, "party display name", display)?;
        }
        Ok(())
    }

    fn read_fields(mut fields: Fields<'_>, at: usize) -> Result<Self, MetaDecodeError> {
        let (mut user, mut display) = (None, None);
        while let Some(f) = fields.next()? {
            match f.number() {
                field::PARTY_USER => once(&mut user, f, "party user", |f| f.string("party user"))?,
                field::PARTY_DISPLAY => once(&mut display, f, "party display name", |f| {
                    f.string("party display name")
                })?,
                _ => f.unknown(Self::CONTEXT)?,
            }
        }
        Ok(Party {
            user: required(user, Self::CONTEXT, at, "party user")?,
            display,
        })
    }
}

impl Tlv for MediaDescription {
    const CONTEXT: &'static str = "media description";

    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), MetaEncodeError> {
        use field::*;
        if let Some(stream) = self.stream {
            write_u16(w, MEDIA_STREAM, "stream id", stream.0)?;
        }
        write_u8(w, MEDIA_KIND, "media kind", media_kind_code(self.kind))?;
        write_u8(
            w,
            MEDIA_DIRECTION,
            "direction",
            direction_code(self.direction),
        )?;
        if self.codecs.len() > MAX_CODECS {
            return Err(MetaEncodeError::LimitExceeded {
                what: "codecs",
                limit: MAX_CODECS,
            });
        }
        for codec in &self.codecs {
            write_nested(w, MEDIA_CODEC, codec)?;
        }
        if let Some(te) = &self.telephone_event {
            write_nested(w, MEDIA_TELEPHONE_EVENT, te)?;
        }
        if let Some(ptime) = self.ptime_ms {
            write_u16(w, MEDIA_PTIME, "ptime", ptime)?;
        }
        Ok(())
    }

    fn read_fields(mut fields: Fields<'_>, at: usize) -> Result<Self, MetaDecodeError> {
        use field::*;
        let (mut stream, mut kind, mut direction, mut te, mut ptime) =
            (None, None, None, None, None);
        let mut codecs = Vec::new();
        while let Some(f) = fields.next()? {
            match f.number() {
                MEDIA_STREAM => once(&mut stream, f, "stream id", |f| {
                    f.u16("stream id").map(StreamId)
                })?,
                // Kinds this side does not know are described as Other (META.md §5.3).
                MEDIA_KIND => once(&mut kind, f, "media kind", |f| {
                    f.code("media kind", |v| {
                        Some(match v {
                            0 => MediaKind::Audio,
                            1 => MediaKind::Video,
                            _ => MediaKind::Other,
                        })
                    })
                })?,
                MEDIA_DIRECTION => once(&mut direction, f, "direction", |f| {
                    f.code("direction", |v| match v {
                        0 => Some(Direction::SendRecv),
                        1 => Some(Direction::SendOnly),
                        2 => Some(Direction::RecvOnly),
                        3 => Some(Direction::Inactive),
                        _ => None,
                    })
                })?,
                MEDIA_CODEC => push_limited(&mut codecs, f, "codecs", MAX_CODECS, Field::nested)?,
                MEDIA_TELEPHONE_EVENT => once(&mut te, f, "telephone event", Field::nested)?,
                MEDIA_PTIME => once(&mut ptime, f, "ptime", |f| f.u16("ptime"))?,
                _ => f.unknown(Self::CONTEXT)?,
            }
        }
        Ok(MediaDescription {
            stream,
            kind: required(kind, Self::CONTEXT, at, "media kind")?,
            direction: required(direction, Self::CONTEXT, at, "direction")?,
            // Exact: a decoded description may be kept for the call's life.
            codecs: {
                codecs.shrink_to_fit();
                codecs
            },
            telephone_event: te,
            ptime_ms: ptime,
        })
    }
}

impl Tlv for Codec {
    const CONTEXT: &'static str = "codec";

    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), MetaEncodeError> {
        use field::*;
        write_u8(w, CODEC_PAYLOAD_TYPE, "payload type", self.payload_type)?;
        write_str(w, CODEC_NAME, "codec name", &self.name)?;
        write_u32(w, CODEC_CLOCK_RATE, "clock rate", self.clock_rate)?;
        write_u8(w, CODEC_CHANNELS, "channels", self.channels)?;
        if let Some(fmtp) = &self.fmtp {
            write_str(w, CODEC_FMTP, "fmtp", fmtp)?;
        }
        Ok(())
    }

    fn read_fields(mut fields: Fields<'_>, at: usize) -> Result<Self, MetaDecodeError> {
        use field::*;
        let (mut pt, mut name, mut rate, mut channels, mut fmtp) = (None, None, None, None, None);
        while let Some(f) = fields.next()? {
            match f.number() {
                CODEC_PAYLOAD_TYPE => once(&mut pt, f, "payload type", |f| f.u8("payload type"))?,
                CODEC_NAME => once(&mut name, f, "codec name", |f| f.string("codec name"))?,
                CODEC_CLOCK_RATE => once(&mut rate, f, "clock rate", |f| f.u32("clock rate"))?,
                CODEC_CHANNELS => once(&mut channels, f, "channels", |f| f.u8("channels"))?,
                CODEC_FMTP => once(&mut fmtp, f, "fmtp", |f| f.string("fmtp"))?,
                _ => f.unknown(Self::CONTEXT)?,
            }
        }
        Ok(Codec {
            payload_type: required(pt, Self::CONTEXT, at, "payload type")?,
            name: required(name, Self::CONTEXT, at, "codec name")?,
            clock_rate: required(rate, Self::CONTEXT, at, "clock rate")?,
            channels: required(channels, Self::CONTEXT, at, "channels")?,
            fmtp,
        })
    }
}

impl Tlv for TelephoneEvent {
    const CONTEXT: &'static str = "telephone event";

    fn write_fields(&self, w: &mut Writer<'_>) -> Result<(), MetaEncodeError> {
        write_u8(w, field::TE_PAYLOAD_TYPE, "payload type", self.payload_type)?;
        write_u32(w, field::TE_CLOCK_RATE, "clock rate", self.clock_rate)
    }

    fn read_fields(mut fields: Fields<'_>, at: usize) -> Result<Self, MetaDecodeError> {
        let (mut pt, mut rate) = (None, None);
        while let Some(f) = fields.next()? {
            match f.number() {
                field::TE_PAYLOAD_TYPE => {
                    once(&mut pt, f, "payload type", |f| f.u8("payload type"))?
                }
                field::TE_CLOCK_RATE => once(&mut rate, f, "clock rate", |f| f.u32("clock rate"))?,
                _ => f.unknown(Self::CONTEXT)?,
            }
        }
        Ok(TelephoneEvent {
            payload_type: required(pt, Self::CONTEXT, at, "payload type")?,
            clock_rate: required(rate, Self::CONTEXT, at, "clock rate")?,
        })
    }
}

#[cfg(test)]
mod tests;
