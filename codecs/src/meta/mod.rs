//! The Meta model: call-level messages exchanged between GW2 and GW1 over the tunnel.
//!
//! Meta carries only what the gateway understands and allows: parties, media descriptions,
//! progress, answer, release cause, DTMF, hold. It holds no protocol syntax (no SIP header, no
//! H.225 field) and no outside address: media streams are named by tunnel stream identifiers,
//! never by IP address and port. The binary wire format lives in [`wire`] and is specified in
//! `codecs/META.md`.

pub(crate) mod codec;
pub mod wire;

pub use wire::{
    decode, decode_frame, encode, encode_frame, is_text_char, split_frame, FrameReader,
    MetaDecodeError, MetaEncodeError, META_VERSION,
};

/// Identifies one call on the tunnel. Allocated by the gateway half that originates the call:
/// GW2 uses even numbers, GW1 odd numbers, so both may start calls without collision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u32);

/// Identifies one media stream (one RTP flow and its RTCP) on the media connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u16);

/// One Meta message. `#[non_exhaustive]`: new message kinds get new type codes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    Setup(Setup),
    Progress(Progress),
    Alerting(Alerting),
    Answer(Answer),
    Release(Release),
    Dtmf(Dtmf),
    MediaUpdate(MediaUpdate),
    Keepalive(Keepalive),
}

impl Message {
    /// The call this message belongs to; `None` for tunnel-level messages (keepalive).
    pub fn call(&self) -> Option<CallRef> {
        match self {
            Message::Setup(m) => Some(m.call),
            Message::Progress(m) => Some(m.call),
            Message::Alerting(m) => Some(m.call),
            Message::Answer(m) => Some(m.call),
            Message::Release(m) => Some(m.call),
            Message::Dtmf(m) => Some(m.call),
            Message::MediaUpdate(m) => Some(m.call),
            Message::Keepalive(_) => None,
        }
    }

    /// Short name for transcripts ("Setup", "Answer", ...).
    pub fn name(&self) -> &'static str {
        match self {
            Message::Setup(_) => "Setup",
            Message::Progress(_) => "Progress",
            Message::Alerting(_) => "Alerting",
            Message::Answer(_) => "Answer",
            Message::Release(_) => "Release",
            Message::Dtmf(_) => "Dtmf",
            Message::MediaUpdate(_) => "MediaUpdate",
            Message::Keepalive(_) => "Keepalive",
        }
    }
}

/// A party: the user part of an address (a number or user name) and an optional display name.
/// Never a host: hosts are outside topology.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Party {
    pub user: String,
    pub display: Option<String>,
}

/// A new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub call: CallRef,
    pub calling: Party,
    pub called: Party,
    /// Emergency calls keep priority under load (availability, paper table 1).
    pub emergency: bool,
    /// The caller's media offer; empty when the offer comes later (SIP INVITE without SDP).
    pub media: Vec<MediaDescription>,
}

/// The call is being processed (SIP 183 / H.225 Call Proceeding or Progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub call: CallRef,
    /// Early media answer, if the far end sends media before answering.
    pub media: Vec<MediaDescription>,
}

/// The called party is ringing (SIP 180 / H.225 Alerting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerting {
    pub call: CallRef,
    pub media: Vec<MediaDescription>,
}

/// The call is answered (SIP 200 to INVITE / H.225 Connect), with the media answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub call: CallRef,
    pub media: Vec<MediaDescription>,
}

/// The call ends or is refused, with a normalized cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub call: CallRef,
    pub cause: Cause,
}

/// A DTMF digit (RFC 4733 event codes 0-15: 0-9, *, #, A-D).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf {
    pub call: CallRef,
    pub event: u8,
    pub duration_ms: u16,
}

impl Dtmf {
    /// The digit as a character, `None` for codes above 15.
    pub fn digit(&self) -> Option<char> {
        event_to_digit(self.event)
    }
}

/// Maps an RFC 4733 event code to its DTMF character.
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => char::from_digit(u32::from(event), 10),
        10 => Some('*'),
        11 => Some('#'),
        12 => Some('A'),
        13 => Some('B'),
        14 => Some('C'),
        15 => Some('D'),
        _ => None,
    }
}

/// Maps a DTMF character to its RFC 4733 event code.
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => d.to_digit(10).and_then(|v| u8::try_from(v).ok()),
        '*' => Some(10),
        '#' => Some(11),
        'A' => Some(12),
        'B' => Some(13),
        'C' => Some(14),
        'D' => Some(15),
        _ => None,
    }
}

/// A mid-call media change: hold/resume or a new offer, and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaUpdate {
    pub call: CallRef,
    pub kind: OfferAnswer,
    pub media: Vec<MediaDescription>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferAnswer {
    Offer,
    Answer,
}

/// Tunnel liveness; `seq` echoes so each side can measure round trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keepalive {
    pub seq: u32,
    pub reply: bool,
}

/// One media stream of an offer or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// The tunnel stream that carries this stream's RTP (and RTCP); `None` when the stream is
    /// refused (SDP port 0).
    pub stream: Option<StreamId>,
    pub kind: MediaKind,
    pub direction: Direction,
    /// Codecs in preference order.
    pub codecs: Vec<Codec>,
    /// RFC 4733 telephone-event payload type and clock rate, if negotiated.
    pub telephone_event: Option<TelephoneEvent>,
    pub ptime_ms: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    /// Other media (e.g. T.38 image) are described but not relayed.
    Other,
}

/// Stream direction (RFC 3264 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction seen from the other end.
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// A codec by its RTP payload type and encoding (RFC 3551 names, e.g. "PCMU"/8000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: u8,
    /// Format parameters (the value of an SDP a=fmtp line), kept as text.
    pub fmtp: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub payload_type: u8,
    pub clock_rate: u32,
}

/// A normalized release cause: a Q.850 cause value (ITU-T Q.850 table 1), the common
/// vocabulary of SIP (RFC 3398, RFC 6432) and H.225 (Q.931 Cause IE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cause(pub u8);

impl Cause {
    pub const UNALLOCATED_NUMBER: Cause = Cause(1);
    pub const NO_ROUTE_TO_DESTINATION: Cause = Cause(3);
    pub const NORMAL_CLEARING: Cause = Cause(16);
    pub const USER_BUSY: Cause = Cause(17);
    pub const NO_USER_RESPONDING: Cause = Cause(18);
    pub const NO_ANSWER: Cause = Cause(19);
    pub const CALL_REJECTED: Cause = Cause(21);
    pub const NUMBER_CHANGED: Cause = Cause(22);
    pub const DESTINATION_OUT_OF_ORDER: Cause = Cause(27);
    pub const INVALID_NUMBER_FORMAT: Cause = Cause(28);
    pub const NORMAL_UNSPECIFIED: Cause = Cause(31);
    pub const NO_CIRCUIT_AVAILABLE: Cause = Cause(34);
    pub const NETWORK_OUT_OF_ORDER: Cause = Cause(38);
    pub const TEMPORARY_FAILURE: Cause = Cause(41);
    pub const SWITCHING_EQUIPMENT_CONGESTION: Cause = Cause(42);
    pub const RESOURCE_UNAVAILABLE: Cause = Cause(47);
    pub const INCOMING_CALLS_BARRED: Cause = Cause(55);
    pub const BEARER_CAPABILITY_NOT_AUTHORIZED: Cause = Cause(57);
    pub const SERVICE_NOT_AVAILABLE: Cause = Cause(63);
    pub const BEARER_CAPABILITY_NOT_IMPLEMENTED: Cause = Cause(65);
    pub const SERVICE_NOT_IMPLEMENTED: Cause = Cause(79);
    pub const INCOMPATIBLE_DESTINATION: Cause = Cause(88);
    pub const INVALID_MESSAGE: Cause = Cause(95);
    pub const MANDATORY_IE_MISSING: Cause = Cause(96);
    pub const MESSAGE_TYPE_NOT_IMPLEMENTED: Cause = Cause(97);
    pub const PROTOCOL_ERROR: Cause = Cause(111);
    pub const RECOVERY_ON_TIMER_EXPIRY: Cause = Cause(102);
    pub const INTERWORKING: Cause = Cause(127);
}
