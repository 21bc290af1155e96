//! The sans-IO gateway engine: GW2 (outside termination and filtering) and GW1 (inside relay)
//! joined by the Meta tunnel, driven by bytes and time given by the caller.
//!
//! # Call order
//!
//! 1. Feed input with [`Engine::handle_datagram`], [`Engine::handle_stream`],
//!    [`Engine::handle_stream_closed`] and, when [`Engine::poll_timeout`] has passed,
//!    [`Engine::handle_timeout`]. Every call takes `now`, a time since an arbitrary epoch that
//!    never goes backwards; the engine never reads a clock.
//! 2. Drain [`Engine::poll_transmit`] (bytes to send), then [`Engine::poll_event`] (verdicts,
//!    Meta messages, call records), until each returns `None`.
//! 3. Ask [`Engine::poll_timeout`] when to call [`Engine::handle_timeout`] next.
//!
//! A live driver also gives the engine a [`Binder`] ([`Engine::with_binder`]): the media table
//! binds a port's sockets through it at the moment it takes the port, so a port another program
//! holds is known before any message announces it (the engine then takes the next one, or
//! refuses the call). This is the one place the engine asks its driver for something
//! synchronously; replay's [`NoSockets`] binds nothing. The driver declares what each stream
//! connection carries ([`Engine::declare_stream`], from the listener that accepted it), and
//! opens a SIP connection when a transmit names a stream flow it has none for. With one half
//! per process it moves [`Engine::poll_tunnel`] frames over the tunnel, feeds what arrives to
//! [`Engine::handle_tunnel_meta`] / [`Engine::handle_tunnel_media`], and reports the tunnel's
//! life with [`Engine::handle_tunnel_up`] / [`Engine::handle_tunnel_down`]. The engine owns the
//! Meta sequence numbers, so it also sends the tunnel keepalives (TUNNEL.md §6) from its timer.
//!
//! # Inside
//!
//! One place per concern (DESIGN: inside the engine): `calls` (identity, the admission chain,
//! the end of a call, linger), `media` (ports, stream ids, packet checks), `sip_leg` (one SIP
//! back-to-back user agent half, configured as GW2's outside or GW1's inside) over `txn` (RFC
//! 3261 section 17) and `timers`, `h323`, `policy` (RFC 3261 section 8.2 filtering), and
//! `answering` (replay's answering party, mapped onto the inside).
//!
//! The live runtime and `sgw replay` are two drivers over this type: what a replay reports is
//! what the live gateway does with the same packets.

pub mod access;
mod answering;
pub mod auth;
pub mod calls;
pub mod control;
pub mod dtmf;
mod h323;
pub mod ids;
pub mod limits;
pub mod media;
pub mod policy;
pub mod ras_client;
pub mod registration;
mod sip_leg;
pub mod srtp;
mod tap;
mod timers;
mod txn;

use bytes::Bytes;
use codecs::meta;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use calls::{CallCounters, Emergency};
pub use h323::{InsideProtocol, CAPABILITIES_WAIT as H323_CAPABILITIES_WAIT, H225_PORT};
pub use limits::{LimitCounters, LimitsConfig};
pub use media::{Binder, LatchMode, Latching, MediaCounters, MediaTableCounters, NoSockets};
pub use policy::{Rejection, SipPolicy};
pub use txn::TxnCounters;

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The stream transport of the two, if either is one.
    pub fn max_reliable(self, other: Transport) -> Transport {
        if self.is_reliable() {
            self
        } else {
            other
        }
    }
}

/// One direction-neutral flow as seen by the gateway: our address and the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Which network a transmit goes to or an input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The Internet side of GW2.
    Outside,
    /// The intranet side of GW1.
    Inside,
}

/// Identifies a stream connection (TCP/TLS) given by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What a transmit carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Sip,
    Rtp,
    Rtcp,
    /// H.225.0 call signalling (Q.931 in TPKT).
    H225,
    /// H.245, on its own TCP connection or tunnelled in H.225.0.
    H245,
    /// H.225.0 RAS.
    Ras,
}

/// Bytes to send: `flow.local` is the source, `flow.remote` the destination.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub side: Side,
    pub flow: Flow,
    pub protocol: Protocol,
    pub payload: Bytes,
}

/// The gateway's decision about one input message or packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accepted,
    Rejected,
    Ignored,
}

/// What a report is about, formatted only when shown (media reports are many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Summary {
    Text(String),
    Rtp {
        payload_type: u8,
        ssrc: u32,
        seq: u16,
    },
    Rtcp {
        packet_type: u8,
    },
    MalformedMedia,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Summary::Text(t) => f.write_str(t),
            Summary::Rtp {
                payload_type,
                ssrc,
                seq,
            } => write!(f, "RTP PT={payload_type} SSRC={ssrc:#010x} Seq={seq}"),
            Summary::Rtcp { packet_type } => write!(f, "RTCP PT={packet_type}"),
            Summary::MalformedMedia => f.write_str("malformed RTP"),
        }
    }
}

impl serde::Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<String> for Summary {
    fn from(s: String) -> Self {
        Summary::Text(s)
    }
}

/// The report of one input message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub protocol: Protocol,
    pub side: Side,
    pub summary: Summary,
    pub verdict: Verdict,
    pub reason: Option<String>,
    /// The status code the gateway answered with, if any.
    pub response: Option<u16>,
    pub call: Option<u32>,
    /// The access rule that decided the INVITE or Setup this report is about (none when no
    /// `[[policy.rules]]` are configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A call detail record, emitted when a call ends (and written to the tamper-evident record
/// file, [`crate::cdr`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub call: u32,
    pub direction: calls::Direction,
    pub calling: String,
    pub called: String,
    pub emergency: bool,
    /// Engine clock, seconds (live: since the half started; replay: the capture's clock).
    pub setup_at: f64,
    pub answered_at: Option<f64>,
    pub ended_at: f64,
    /// Wall-clock UTC, RFC 3339 (replay: the capture's timestamps).
    pub start: String,
    pub answer: Option<String>,
    pub end: String,
    /// Q.850 cause the call ended with.
    pub cause: u8,
    pub ended_by: EndedBy,
    /// The call as seen on each side of this engine.
    pub outside: LegRecord,
    pub inside: LegRecord,
    pub media: MediaCounters,
    /// The access rule that allowed the call (left out when no rules are configured; the
    /// record files of [`crate::cdr`] write it as null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The user the call authenticated as (digest, `[auth]`); null for a call that did not.
    pub auth_identity: Option<String>,
}

/// Who ended a call: the party on the outside (or its network), the party on the inside, or the
/// gateway itself (a timer, a refusal after admission, pre-emption, a drain, the tunnel lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndedBy {
    Outside,
    Inside,
    Gateway,
}

/// One side of a call in its record: the protocol and IP family the call used there, the peer's
/// address (where the call came from on the side it arrived on, the next hop it was sent to on
/// the other), and the parties as that side saw them. `protocol` is `tunnel` when the other
/// half carries that side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegRecord {
    pub protocol: LegProtocol,
    pub family: Option<Family>,
    pub address: Option<IpAddr>,
    pub calling: Option<String>,
    pub called: Option<String>,
}

/// The protocol of one side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LegProtocol {
    Sip,
    H323,
    /// The side is the other half's, reached over the tunnel.
    Tunnel,
}

impl LegRecord {
    pub(crate) fn of(c: &calls::NewCall) -> Self {
        LegRecord {
            protocol: match c.protocol {
                calls::CallProtocol::Sip => LegProtocol::Sip,
                calls::CallProtocol::H323 => LegProtocol::H323,
            },
            family: Some(c.family),
            address: c.source,
            calling: Some(c.calling.clone()),
            called: Some(c.called.clone()),
        }
    }

    pub(crate) fn tunnel() -> Self {
        LegRecord {
            protocol: LegProtocol::Tunnel,
            family: None,
            address: None,
            calling: None,
            called: None,
        }
    }
}

/// Things the engine tells its driver.
#[derive(Debug, Clone)]
pub enum Event {
    /// A verdict on one input message.
    Report(Report),
    /// A Meta message crossed the tunnel (towards GW1 when `to_gw1`).
    Meta {
        to_gw1: bool,
        message: meta::Message,
    },
    /// A call ended.
    CallEnded(Box<CallRecord>),
}

/// What a stream connection carries, as the listener that accepted it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamProtocol {
    Sip,
    /// H.225.0 call signalling (TPKT + Q.931).
    H225,
    /// One call's separate H.245 connection, accepted where GW2 listened for it.
    H245,
}

/// The default interval of tunnel keepalives (TUNNEL.md §6).
pub const DEFAULT_TUNNEL_KEEPALIVE: Duration = Duration::from_secs(5);

/// Inside network addressing of GW1 for one IP family.
#[derive(Debug, Clone)]
pub struct InsideConfig {
    /// GW1's own SIP address on the inside.
    pub gw1_sip: SocketAddr,
    /// The IP-PBX or proxy GW1 sends calls to.
    pub next_hop: SocketAddr,
    /// GW1's inside media address; ports come from `media_ports`.
    pub media_ip: IpAddr,
    pub media_ports: (u16, u16),
    pub transport: Transport,
}

impl InsideConfig {
    /// The built-in inside network: 10.0.0.0/24 or fd00:5357::/64 (a ULA prefix).
    pub fn default_for(family: Family) -> Self {
        let (gw1, pbx): (IpAddr, IpAddr) = match family {
            Family::V4 => (
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)),
            ),
            Family::V6 => (
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x5357, 0, 0, 0, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x5357, 0, 0, 0, 0, 0, 0x10)),
            ),
        };
        InsideConfig {
            gw1_sip: SocketAddr::new(gw1, 5060),
            next_hop: SocketAddr::new(pbx, 5060),
            media_ip: gw1,
            media_ports: (40000, 49999),
            transport: Transport::Udp,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub policy: SipPolicy,
    /// Inside addressing per family; `None` for a family picks the built-in default.
    pub inside_v4: InsideConfig,
    pub inside_v6: InsideConfig,
    /// Inside family; `None` means the same family as the outside call.
    pub inside_family: Option<Family>,
    /// Inside protocol; `None` means the same protocol as the outside call.
    pub inside_protocol: Option<InsideProtocol>,
    /// GW2's outside media ports.
    pub outside_media_ports: (u16, u16),
    /// GW2's own outside SIP address (Via, Contact, source of calls it places outside).
    pub outside_sip: Option<SocketAddr>,
    /// How GW2 reaches `outside_next_hop`.
    pub outside_transport: Transport,
    /// Where GW2 sends calls from the inside (a provider or SBC); `None` refuses them.
    pub outside_next_hop: Option<SocketAddr>,
    /// Seed for identifiers (Call-ID, tags, branches). Fixed in replay for reproducible output.
    pub id_seed: u64,
    /// Live runs: the key of the cryptographic generator identifiers come from instead of
    /// `id_seed` (see [`ids`](self::ids)); `None` in replay and tests.
    pub id_key: Option<ids::IdKey>,
    /// Replay: the capture's answering party plays the inside PBX (see [`Engine`] docs).
    pub replay: bool,
    /// Which halves this engine runs; with one half, the other is behind the tunnel.
    pub role: Role,
    /// Whether accepted RTP/RTCP packets produce a [`Report`] each (they are always counted).
    pub report_accepted_media: bool,
    /// Most concurrent calls; `limits.emergency_reserve_percent` of them only for emergency
    /// calls, which pre-empt the newest other call when every slot is taken.
    pub max_calls: usize,
    /// Called numbers treated as emergency calls.
    pub emergency_numbers: Vec<String>,
    /// The access rules (`[[policy.rules]]`); empty: every call passes the access link.
    pub access: access::AccessPolicy,
    /// With one half per process: a Meta `Keepalive` goes out when nothing was sent on the
    /// tunnel's signalling connection for this long.
    pub tunnel_keepalive: Duration,
    /// How media streams latch on GW2's outside and on GW1's inside (RFC 4961, NAT modes).
    pub outside_latching: media::Latching,
    pub inside_latching: media::Latching,
    /// Rate limits, the block list and the emergency reserve (GW2's outside).
    pub limits: LimitsConfig,
    /// The digest server of GW2's outside (`[auth]`); `None`: no call is challenged.
    pub auth: Option<auth::DigestConfig>,
    /// GW2's registration to its provider (`[gw2.registration]`), whose credentials also
    /// answer the challenges of calls GW2 places outside; `None`: none.
    pub registration: Option<registration::RegistrationConfig>,
    /// Credentials that answer the challenges of calls GW2 places outside, without
    /// registering (`[gw2.registration] register = false`).
    pub trunk: Option<auth::ClientCredentials>,
    /// GW1's registration to an inside gatekeeper (`[gw1.gatekeeper]`, RAS); `None`: none.
    /// Ignored by GW2.
    pub gatekeeper: Option<ras_client::RasConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            policy: SipPolicy::default(),
            inside_v4: InsideConfig::default_for(Family::V4),
            inside_v6: InsideConfig::default_for(Family::V6),
            inside_family: None,
            inside_protocol: None,
            outside_media_ports: (20000, 29999),
            outside_sip: None,
            outside_transport: Transport::Udp,
            outside_next_hop: None,
            id_seed: 0x5347_5700,
            id_key: None,
            replay: false,
            role: Role::Both,
            report_accepted_media: false,
            max_calls: 10_000,
            emergency_numbers: ["112", "911", "999", "110", "15", "17", "18"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            access: access::AccessPolicy::default(),
            tunnel_keepalive: DEFAULT_TUNNEL_KEEPALIVE,
            outside_latching: media::Latching::OUTSIDE,
            inside_latching: media::Latching::INSIDE,
            limits: LimitsConfig::default(),
            auth: None,
            registration: None,
            trunk: None,
            gatekeeper: None,
        }
    }
}

/// Which halves of the gateway an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Both halves in one process, the tunnel in memory (replay, `sgw check`, demos).
    Both,
    /// The inside half: Meta and media arrive from GW2 over the tunnel.
    Gw1,
    /// The outside half: Meta and media go to GW1 over the tunnel.
    Gw2,
}

/// What an engine with one half sends over the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelOut {
    /// One encoded Meta frame (`codecs/META.md`), for the signalling connection.
    Meta(Bytes),
    /// One RTP or RTCP packet of a stream, for the media connection.
    Media {
        stream: meta::StreamId,
        rtcp: bool,
        data: Bytes,
    },
}

/// The peer broke the tunnel protocol: the driver closes the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    #[error("bad Meta frame: {0}")]
    Frame(#[from] meta::MetaDecodeError),
    #[error("Meta frame out of sequence: expected {expected}, got {got}")]
    Sequence { expected: u32, got: u32 },
}

/// The well-known SIP ports (RFC 3261 section 18.1.1).
pub fn is_sip_port(port: u16) -> bool {
    port == 5060 || port == 5061
}

/// IP families, the size of per-family tables.
pub const MAX_FAMILY: usize = 2;

/// The host part as SIP writes it: IPv6 in brackets (RFC 3261 section 19.1.1).
pub fn host_of(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => codecs::sip::ip_text(IpAddr::V4(*v4.ip())),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    }
}

/// `host:port` as SIP writes it (IPv6 in brackets): `SocketAddr`'s own display form.
pub fn host_port(a: SocketAddr) -> String {
    codecs::sip::socket_text(a)
}

/// A datagram as a driver hands it to [`Engine::handle_datagram_parsed`]: shared, so that
/// what the engine keeps of it (a SIP message, a relayed packet it queues) costs no copy; or
/// borrowed from the driver's own buffer, and copied only where it is kept. Replay lends its
/// RTP and RTCP, the bulk of a capture and never kept when nothing is written: sharing each
/// costs two atomic operations on its buffer's count.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Shared(&'a Bytes),
    Borrowed(&'a [u8]),
}

impl<'a> Payload<'a> {
    pub fn as_slice(self) -> &'a [u8] {
        match self {
            Payload::Shared(b) => b,
            Payload::Borrowed(s) => s,
        }
    }

    /// The payload to keep: shared, or copied when borrowed.
    pub fn to_bytes(self) -> Bytes {
        match self {
            Payload::Shared(b) => b.clone(),
            Payload::Borrowed(s) => Bytes::copy_from_slice(s),
        }
    }
}

/// What a driver read of a datagram before handing it to [`Engine::handle_datagram_parsed`]:
/// functions of its bytes alone, so it may read them on another thread. Small, to be moved
/// with every packet: a parsed message is boxed.
#[derive(Debug)]
pub enum Prepared {
    /// Nothing: the engine reads the datagram itself.
    Nothing,
    /// The datagram looks like SIP: [`parse_sip`] of it.
    Sip(Box<SipParse>),
    /// The datagram looks like RTP or RTCP: [`media::Head::of`] it.
    Media(media::Head),
}

/// A datagram read as SIP: the message and where its body ends, or why it is not one.
pub type SipParse = Result<(codecs::sip::Message, usize), codecs::sip::SipError>;

/// A datagram that looks like SIP, read as SIP and checked (the message keeps the header
/// values and the check's result); `None` when it does not look like SIP. What
/// [`Engine::handle_datagram_parsed`] takes from a driver that parses off the engine.
pub fn parse_sip(data: &Bytes) -> Option<SipParse> {
    if !looks_like_sip(data) {
        return None;
    }
    let parsed = codecs::sip::parse_datagram(data.clone());
    if let Ok((m, _)) = &parsed {
        // Only to fill the message's cache: the engine asks for the result and reports it.
        let _ = m.check();
    }
    Some(parsed)
}

/// A cheap test for a SIP start line, so RTP and other UDP traffic is not parsed as SIP.
pub fn looks_like_sip(data: &[u8]) -> bool {
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let head = data.get(start..).unwrap_or(&[]);
    if head.starts_with(b"SIP/") {
        return true;
    }
    // A method is a token: RTP (version 2, first byte 0x80-0xBF) and other binary traffic stop
    // here, before the line is scanned.
    if !head.first().is_some_and(|&b| codecs::sip::is_token_byte(b)) {
        return false;
    }
    let line_end = head
        .iter()
        .take(1024)
        .position(|&b| b == b'\n')
        .unwrap_or(head.len().min(1024));
    let line = head.get(..line_end).unwrap_or(&[]);
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    sp > 0
        && line
            .get(..sp)
            .is_some_and(|m| m.iter().all(|&b| codecs::sip::is_token_byte(b)))
        && line.windows(4).any(|w| w == b"SIP/")
}

fn resynced_framer() -> codecs::sip::StreamFramer {
    let mut f = codecs::sip::StreamFramer::new();
    f.resync();
    f
}

/// The engine's transmits: queued for the driver, or only counted by side when the driver
/// sends and writes none of them ([`Engine::count_transmits_only`]).
#[derive(Default)]
struct Transmits {
    queue: VecDeque<Transmit>,
    count_only: bool,
    /// Counted instead of queued.
    to_inside: u64,
    to_outside: u64,
}

impl Transmits {
    fn push_back(&mut self, t: Transmit) {
        if self.count_only {
            self.count(t.side);
        } else {
            self.queue.push_back(t);
        }
    }

    /// Counts a transmit to `side` that is not queued.
    fn count(&mut self, side: Side) {
        if side == Side::Inside {
            self.to_inside += 1;
        } else {
            self.to_outside += 1;
        }
    }
}

/// What the legs of one engine share while they handle an input: the call and media tables,
/// and the output queues drained by the driver.
struct Out {
    calls: calls::CallTable,
    media: media::MediaTable,
    /// Whether a new call can reach the other half (always with both halves in one engine).
    tunnel_up: bool,
    transmits: Transmits,
    events: VecDeque<Event>,
    to_gw1: VecDeque<meta::Message>,
    to_gw2: VecDeque<meta::Message>,
    media_to_gw1: VecDeque<(meta::StreamId, bool, Bytes)>,
    media_to_gw2: VecDeque<(meta::StreamId, bool, Bytes)>,
    stats: Stats,
    report_accepted_media: bool,
    /// Who a call ended while handling the current input is ended by (see [`EndedBy`]).
    origin: EndedBy,
    /// What the H.323 part asks of GW1's gatekeeper client (admissions); every ended call
    /// is disengaged too (a no-op for calls never admitted, or without a gatekeeper).
    ras_requests: VecDeque<RasRequest>,
}

/// A request of the H.323 part to GW1's RAS client.
enum RasRequest {
    Admit(ras_client::AdmissionRequest),
    Disengage(meta::CallRef, meta::Cause),
}

impl Out {
    /// Whether nothing waits for [`Engine::pump`].
    fn pump_idle(&self) -> bool {
        !self.calls.preempts()
            && self.ras_requests.is_empty()
            && self.to_gw1.is_empty()
            && self.to_gw2.is_empty()
            && self.media_to_gw1.is_empty()
            && self.media_to_gw2.is_empty()
    }

    /// Queues a Meta message from a leg on `side` for the other half.
    fn send_other(&mut self, side: Side, m: meta::Message) {
        match side {
            Side::Outside => self.to_gw1.push_back(m),
            Side::Inside => self.to_gw2.push_back(m),
        }
    }

    /// Ends a call in both tables: its media ports are released, and the first end yields the
    /// call's one record.
    fn end_call(&mut self, now: Duration, call: meta::CallRef, cause: meta::Cause) {
        self.end_call_by(now, call, cause, self.origin);
    }

    /// Ends a call the gateway itself ends (a refusal after admission, a timer, a drain).
    fn end_call_by_gateway(&mut self, now: Duration, call: meta::CallRef, cause: meta::Cause) {
        self.end_call_by(now, call, cause, EndedBy::Gateway);
    }

    fn end_call_by(&mut self, now: Duration, call: meta::CallRef, cause: meta::Cause, by: EndedBy) {
        if !self.calls.is_live(call) {
            return;
        }
        let media = self.media.end_call(call);
        if let Some(rec) = self.calls.end_by(now, call, cause, media, by) {
            self.events.push_back(Event::CallEnded(Box::new(rec)));
            self.ras_requests
                .push_back(RasRequest::Disengage(call, cause));
        }
    }

    /// Counts a verdict and queues its report. Accepted media packets are only counted unless
    /// the driver asked for them (they are the bulk of all traffic).
    fn report(&mut self, mut r: Report) {
        // The access rule of the latest admission goes on the report of the message it
        // decided: the INVITE or Setup, reported next.
        if r.rule.is_none() && matches!(r.protocol, Protocol::Sip | Protocol::H225) {
            r.rule = self.calls.access.take_decided().map(|n| n.to_string());
        }
        self.count(r.protocol, r.verdict);
        if !self.media_counted_only(r.protocol, r.verdict) {
            self.events.push_back(Event::Report(r));
        }
    }

    /// Whether a verdict on media is only counted, never reported: an accepted packet, unless
    /// every packet is listed. The media path then builds no report at all.
    fn media_counted_only(&self, protocol: Protocol, verdict: Verdict) -> bool {
        matches!(protocol, Protocol::Rtp | Protocol::Rtcp)
            && verdict == Verdict::Accepted
            && !self.report_accepted_media
    }

    /// Counts a verdict without reporting it.
    fn count(&mut self, protocol: Protocol, verdict: Verdict) {
        let s = &mut self.stats;
        match protocol {
            Protocol::Sip => s.sip_messages += 1,
            Protocol::Rtp => s.rtp_packets += 1,
            Protocol::Rtcp => s.rtcp_packets += 1,
            Protocol::H225 => s.h225_messages += 1,
            Protocol::H245 => s.h245_messages += 1,
            Protocol::Ras => s.ras_messages += 1,
        }
        match verdict {
            Verdict::Accepted => s.accepted += 1,
            Verdict::Rejected => s.rejected += 1,
            Verdict::Ignored => s.ignored += 1,
        }
    }
}

/// Most stream connections whose framing the engine keeps at once (the driver caps
/// connections before this).
pub const MAX_STREAMS: usize = 100_000;

/// Framing state of one stream connection.
enum StreamState {
    Sip(codecs::sip::StreamFramer),
    /// Owned by the H.323 part (H.225.0 or H.245).
    H323,
    /// Not SIP, or framing was lost: the rest is dropped (the live driver closes it).
    Dead,
}

/// GW2 and GW1 with the tunnel between them. See the module docs for the call order.
///
/// Each half has a SIP leg (outside for GW2, inside for GW1) and the H.323 part; around them
/// sit the call table (identity, admission, the end of calls), the media table (ports, stream
/// ids, packet checks) and the tunnel (Meta framing, sequence numbers, keepalives). In replay,
/// `answering` routes the capture's answering party to the inside (see that module).
pub struct Engine {
    outside: sip_leg::SipLeg,
    inside: sip_leg::SipLeg,
    h323: h323::H323,
    out: Out,
    streams: HashMap<ConnId, StreamState>,
    /// Live: the protocol of each stream, as its listener declared it.
    declared: HashMap<ConnId, StreamProtocol>,
    inside_protocol: Option<InsideProtocol>,
    replay: bool,
    role: Role,
    /// Sequence numbers of Meta frames sent and expected (DESIGN: sequence-checked frames).
    meta_seq: u32,
    meta_expected: u32,
    tunnel: VecDeque<TunnelOut>,
    /// One half per process: whether the tunnel is up ([`Engine::handle_tunnel_up`]).
    tunnel_up: bool,
    keepalive_interval: Duration,
    /// When the last Meta frame went onto the tunnel, for keepalives.
    last_meta_sent: Duration,
    keepalive_seq: u32,
    /// GW1's RAS client (`[gw1.gatekeeper]`), and its events for the H.323 part.
    ras: Option<ras_client::RasClient>,
    ras_events: VecDeque<ras_client::RasEvent>,
}

/// Running totals, and the size of every table an outside party can grow.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    pub sip_messages: u64,
    pub h225_messages: u64,
    pub h245_messages: u64,
    pub ras_messages: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub ignored: u64,
    pub calls: u64,
    pub meta_messages: u64,
    pub meta_bytes: u64,
    /// Stream connections whose bytes were not the protocol of their listener, or lost framing.
    pub protocol_errors: u64,
    /// Stream connections refused because the engine tracked [`MAX_STREAMS`].
    pub streams_refused: u64,
    /// Calls up now, and calls still held (live and lingering).
    pub calls_live: u64,
    pub calls_held: u64,
    pub admission: CallCounters,
    pub media: MediaTableCounters,
    pub media_streams: u64,
    pub sip_outside: TxnCounters,
    pub sip_inside: TxnCounters,
    pub server_txns: u64,
    pub dialogs: u64,
    pub h323_state: u64,
    /// H.225.0/H.245 streams and H.245 addresses the H.323 part refused at its caps.
    pub h323_streams_refused: u64,
    pub h323_h245_addresses_refused: u64,
    pub streams: u64,
    /// Calls allowed and denied per access rule (absent when no rules are configured).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub access_rules: std::collections::BTreeMap<String, access::RuleCounters>,
    /// Refusals by the rate limits, blocks and drops of blocked sources.
    pub limits: LimitCounters,
    /// Sources held by the rate limiters and the block list, and those blocked now.
    pub limit_keys: u64,
    pub blocked_sources: u64,
    /// The digest server's counters (absent when `[auth]` is not configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<auth::AuthCounters>,
    /// GW2's registration to its provider (absent without `[gw2.registration]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<registration::RegistrationStatus>,
    /// GW1's registration to its gatekeeper (absent without `[gw1.gatekeeper]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ras: Option<ras_client::RasStatus>,
}

impl Engine {
    /// An engine whose media ports are only numbers (replay, `sgw check`, tests).
    pub fn new(config: EngineConfig) -> Engine {
        Engine::with_binder(config, Box::new(NoSockets))
    }

    /// An engine that opens media sockets through `binder` (the live driver).
    pub fn with_binder(config: EngineConfig, binder: Box<dyn Binder>) -> Engine {
        let inside = sip_leg::LegConfig::inside(
            config.policy.clone(),
            &config.inside_v4,
            &config.inside_v6,
            config.inside_family,
            config.id_seed,
        );
        let outside = sip_leg::LegConfig::outside(
            config.policy.clone(),
            config.outside_sip,
            config.outside_next_hop,
            config.outside_transport,
            config.id_seed,
        );
        let emergency = Emergency {
            numbers: config.emergency_numbers.clone(),
        };
        let mut media = media::MediaTable::new(
            binder,
            config.replay,
            config.outside_media_ports,
            config.inside_v4.media_ports,
            config.inside_v6.media_ports,
        );
        media.set_latching(Side::Outside, config.outside_latching);
        media.set_latching(Side::Inside, config.inside_latching);
        let mut outside = sip_leg::SipLeg::new(sip_leg::LegConfig {
            trunk: config.trunk.clone(),
            ..outside
        });
        let mut inside = sip_leg::SipLeg::new(inside);
        if let Some(key) = &config.id_key {
            outside.set_ids(key.ids(0x6777_3200));
            inside.set_ids(key.ids(0x6777_3100));
        }
        if let Some(r) = &config.registration {
            let from = config.outside_sip.map(|a| (a, config.outside_transport));
            outside.start_registration(r.clone(), from);
        }
        Engine {
            outside,
            inside,
            h323: h323::H323::new(&config),
            out: Out {
                calls: {
                    let mut t = calls::CallTable::with_limits(
                        config.max_calls,
                        emergency,
                        config.limits.clone(),
                    );
                    t.access = config.access.clone();
                    t.auth = auth::DigestServer::new(config.auth.clone());
                    t
                },
                media,
                tunnel_up: config.role == Role::Both,
                transmits: Transmits::default(),
                events: VecDeque::new(),
                to_gw1: VecDeque::new(),
                to_gw2: VecDeque::new(),
                media_to_gw1: VecDeque::new(),
                media_to_gw2: VecDeque::new(),
                ras_requests: VecDeque::new(),
                stats: Stats::default(),
                report_accepted_media: config.report_accepted_media,
                origin: EndedBy::Gateway,
            },
            streams: HashMap::new(),
            declared: HashMap::new(),
            inside_protocol: config.inside_protocol,
            replay: config.replay,
            role: config.role,
            meta_seq: 0,
            meta_expected: 0,
            tunnel: VecDeque::new(),
            tunnel_up: false,
            keepalive_interval: config.tunnel_keepalive.max(Duration::from_millis(10)),
            last_meta_sent: Duration::ZERO,
            keepalive_seq: 0,
            ras: config
                .gatekeeper
                .clone()
                .filter(|_| config.role != Role::Gw2)
                .map(|c| ras_client::RasClient::new(c, Duration::ZERO)),
            ras_events: VecDeque::new(),
        }
    }

    /// Media sockets are opened through `binder` from now on (the live driver's).
    pub fn set_binder(&mut self, binder: Box<dyn Binder>) {
        self.out.media.set_binder(binder);
    }

    /// The wall-clock time (since the Unix epoch) of engine time zero, for the UTC timestamps
    /// of call records (the live driver's start; replay leaves it zero: its clock is the
    /// capture's).
    pub fn set_wall_epoch(&mut self, epoch: Duration) {
        self.out.calls.wall_epoch = epoch;
    }

    /// A datagram arrived on the outside (from `flow.remote` to `flow.local`).
    pub fn handle_datagram(&mut self, now: Duration, flow: Flow, data: Bytes) {
        self.handle_datagram_parsed(now, flow, Payload::Shared(&data), Prepared::Nothing);
    }

    /// [`Engine::handle_datagram`] with what a driver already read of the datagram (see
    /// [`Prepared`]; replay reads it on its reader thread). The datagram is borrowed (see
    /// [`Payload`]): the driver drops it.
    pub fn handle_datagram_parsed(
        &mut self,
        now: Duration,
        flow: Flow,
        payload: Payload<'_>,
        prepared: Prepared,
    ) {
        let data = payload.as_slice();
        let head = match prepared {
            Prepared::Media(h) => Some(h),
            _ => None,
        };
        self.out.origin = EndedBy::Outside;
        if let Some(first) = self.out.calls.limits.blocked(now, flow.remote.ip()) {
            let protocol = if looks_like_sip(data) {
                Protocol::Sip
            } else if media::is_rtcp(data) {
                Protocol::Rtcp
            } else {
                Protocol::Rtp
            };
            self.drop_blocked(first, protocol);
            return;
        }
        if !self.handle_media(now, Side::Outside, &flow, payload, head) {
            // RAS (UDP 1718/1719), then SIP.
            if !self.h323.handle_datagram(flow, data, &mut self.out) && looks_like_sip(data) {
                let parsed = match prepared {
                    Prepared::Sip(p) => *p,
                    _ => codecs::sip::parse_datagram(payload.to_bytes()),
                };
                match parsed {
                    Ok((msg, _)) => self.handle_sip(now, flow, msg),
                    Err(e) => self
                        .outside
                        .report_parse_error(flow, &e, Some(data), &mut self.out),
                }
            }
        }
        self.pump(now);
    }

    /// A datagram arrived on GW1's inside interface.
    pub fn handle_inside_datagram(&mut self, now: Duration, flow: Flow, data: Bytes) {
        self.out.origin = EndedBy::Inside;
        if let Some(ras) = self.ras.as_mut().filter(|r| r.local() == flow.local) {
            ras.handle(now, flow.remote, &data);
            self.flush_ras();
            self.dispatch_admissions(now);
            self.pump(now);
            return;
        }
        if !self.handle_media(now, Side::Inside, &flow, Payload::Shared(&data), None)
            && looks_like_sip(&data)
        {
            self.inside.handle_datagram(now, flow, data, &mut self.out);
        }
        self.pump(now);
    }

    /// A message or packet from a blocked source: dropped unanswered. Every drop is counted as
    /// a rejected verdict; a live gateway reports only the first of each block (one log line
    /// per source and period), a replay reports each.
    fn drop_blocked(&mut self, first: bool, protocol: Protocol) {
        let r = Report {
            protocol,
            side: Side::Outside,
            summary: Summary::Text("message from a blocked source".to_owned()),
            verdict: Verdict::Rejected,
            reason: Some("source blocked".to_owned()),
            response: None,
            call: None,
            rule: None,
        };
        if first || self.replay {
            self.out.report(r);
        } else {
            self.out.count(r.protocol, r.verdict);
        }
    }

    /// The per-source request limit on a SIP request from outside (emergency INVITEs pass):
    /// over it, 503 with `Retry-After`. Returns the message when it may go on.
    fn limit_request(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: codecs::sip::Message,
    ) -> Option<codecs::sip::Message> {
        let codecs::sip::StartLine::Request(r) = msg.start() else {
            return Some(msg);
        };
        if r.method == codecs::sip::Method::Invite && self.is_emergency_invite(&msg) {
            return Some(msg);
        }
        match self.out.calls.limits.check_request(now, flow.remote.ip()) {
            Ok(()) => Some(msg),
            Err(secs) => {
                let rej = Rejection::RateLimited(limits::Limited::SourceRequests.reason(), secs);
                self.outside.refuse(now, flow, &msg, &rej, &mut self.out);
                None
            }
        }
    }

    /// Whether an INVITE calls an emergency number or URN ([`Emergency::recognises`]).
    fn is_emergency_invite(&self, msg: &codecs::sip::Message) -> bool {
        let Ok(uri) = msg.request_uri() else {
            return false;
        };
        let Ok(to) = msg.to() else {
            return false;
        };
        let called = translators::sip::called_party(uri, to);
        self.out
            .calls
            .emergency
            .recognises(&called.user, Some(&uri.raw))
    }

    /// One SIP message from the outside network (UDP or a stream).
    fn handle_sip(&mut self, now: Duration, flow: Flow, msg: codecs::sip::Message) {
        let Some(msg) = self.limit_request(now, flow, msg) else {
            return;
        };
        if !self.replay {
            self.outside.handle_message(now, flow, msg, &mut self.out);
            return;
        }
        match answering::route(&self.outside, &self.inside, &flow, msg) {
            answering::Route::Outside(m) => {
                self.outside.handle_message(now, flow, m, &mut self.out)
            }
            answering::Route::Inside(inside_flow, m, remotes) => {
                let call = m
                    .call_id()
                    .ok()
                    .and_then(|id| self.inside.call_by_call_id(id));
                self.inside
                    .handle_message(now, inside_flow, m, &mut self.out);
                // The answering party's own media addresses find the inside streams.
                if let Some(call) = call {
                    self.alias_answering_media(call, &remotes);
                }
            }
        }
    }

    /// Replay: the answering party's media, sent from the addresses of its SDP, belongs to the
    /// inside streams of the call, in m-line order.
    fn alias_answering_media(&mut self, call: meta::CallRef, remotes: &[Option<SocketAddr>]) {
        let streams = self.out.media.streams_of(call, Side::Inside);
        for (stream, remote) in streams.into_iter().zip(remotes) {
            if let Some(r) = remote {
                self.out.media.alias(Side::Inside, stream, *r);
                let rtcp = SocketAddr::new(r.ip(), r.port().wrapping_add(1));
                self.out.media.alias(Side::Inside, stream, rtcp);
            }
        }
    }

    /// RTP/RTCP of a known stream: checked, then sent over the tunnel. `head` is
    /// [`media::Head::of`] the datagram when the driver read it. Returns false when the
    /// datagram belongs to no stream on this side.
    fn handle_media(
        &mut self,
        now: Duration,
        side: Side,
        flow: &Flow,
        payload: Payload,
        head: Option<media::Head>,
    ) -> bool {
        let data = payload.as_slice();
        let head = head.unwrap_or_else(|| media::Head::of(data));
        let rtcp_hint = head.rtcp;
        let (inside, replay) = (&self.inside, self.replay);
        // Replay: the answering party's media, seen on the outside, is the inside's.
        let source = |arrival: Side, call| {
            if arrival != side {
                let next_hop = inside.next_hop(call).unwrap_or(flow.remote);
                answering::inside_source(next_hop, flow.remote, rtcp_hint)
            } else if rtcp_hint && replay {
                SocketAddr::new(flow.remote.ip(), flow.remote.port().wrapping_sub(1))
            } else {
                flow.remote
            }
        };
        let Some(media::Received {
            side: arrival,
            stream,
            call,
            result,
        }) = self.out.media.receive(now, side, flow, data, head, source)
        else {
            return false;
        };
        let protocol = if rtcp_hint {
            Protocol::Rtcp
        } else {
            Protocol::Rtp
        };
        let (verdict, reason) = match result {
            // A telephone-event read into Meta DTMF: the other side could not decode it.
            Ok((media::Checked::Dtmf(event), _)) => {
                if let Some((event, duration_ms)) = event {
                    let m = meta::Message::Dtmf(meta::Dtmf {
                        call,
                        event,
                        duration_ms,
                    });
                    self.out.send_other(arrival, m);
                }
                (Verdict::Accepted, None)
            }
            Ok((checked, plain)) => {
                let rtcp = checked == media::Checked::Rtcp;
                self.forward_media(arrival, stream, rtcp, plain, payload);
                (Verdict::Accepted, None)
            }
            Err(Some(d)) => (Verdict::Rejected, Some(d.reason())),
            Err(None) => (Verdict::Rejected, Some("call has ended".to_owned())),
        };
        if self.out.media_counted_only(protocol, verdict) {
            self.out.count(protocol, verdict);
            return true;
        }
        self.out.report(Report {
            protocol,
            side: arrival,
            summary: media::media_summary(data),
            verdict,
            reason,
            response: None,
            call: Some(call.0),
            rule: None,
        });
        true
    }

    /// A telephone-event on `call`'s stream on `side` that a driver's media worker read into a
    /// DTMF digit ([`media::Checked::Dtmf`]): it goes to the other half as Meta DTMF, as
    /// [`Engine::handle_datagram`] would have sent it.
    pub fn handle_media_dtmf(
        &mut self,
        now: Duration,
        side: Side,
        call: meta::CallRef,
        event: u8,
        duration_ms: u16,
    ) {
        let m = meta::Message::Dtmf(meta::Dtmf {
            call,
            event,
            duration_ms,
        });
        self.out.send_other(side, m);
        self.pump(now);
    }

    /// Adds what a driver's media workers counted (verdicts, the media table's counters).
    pub fn absorb_media_counts(&mut self, c: &media::WorkerCounts) {
        self.out.media.counters.add(&c.table);
        let s = &mut self.out.stats;
        let [rtp_ok, rtp_no] = c.rtp;
        let [rtcp_ok, rtcp_no] = c.rtcp;
        s.rtp_packets += rtp_ok + rtp_no;
        s.rtcp_packets += rtcp_ok + rtcp_no;
        s.accepted += rtp_ok + rtcp_ok;
        s.rejected += rtp_no + rtcp_no;
    }

    /// Whether media packets must come to the engine rather than be checked and relayed by a
    /// driver's media workers: while a source is blocked (its packets are dropped here, see
    /// [`Engine::handle_datagram`]), or when every accepted packet is reported.
    pub fn media_needs_engine(&self) -> bool {
        self.out.report_accepted_media || self.out.calls.limits.blocked_sources() > 0
    }

    /// An accepted packet goes to the other half. With both halves in this engine and nothing
    /// queued that the pump would handle first, it is relayed at once: the order is the
    /// pump's, without the round trip through its queue for every packet. The packet is
    /// `plain` (SRTP removed), else `received` as it is, shared (or copied) only where it is
    /// still needed.
    fn forward_media(
        &mut self,
        arrival: Side,
        stream: meta::StreamId,
        rtcp: bool,
        plain: Option<Bytes>,
        received: Payload,
    ) {
        let data = || plain.unwrap_or_else(|| received.to_bytes());
        if self.role == Role::Both && self.out.pump_idle() {
            let other = match arrival {
                Side::Outside => Side::Inside,
                Side::Inside => Side::Outside,
            };
            self.relay(other, stream, rtcp, data);
            return;
        }
        let data = data();
        match arrival {
            Side::Outside => self.out.media_to_gw1.push_back((stream, rtcp, data)),
            Side::Inside => self.out.media_to_gw2.push_back((stream, rtcp, data)),
        }
    }

    /// The live driver declares what a stream connection carries, from the listener that
    /// accepted it (or the connection it opened). A stream never declared (replay) is told by
    /// its ports and first bytes.
    pub fn declare_stream(&mut self, conn: ConnId, protocol: StreamProtocol) {
        if self.declared.len() < MAX_STREAMS {
            self.declared.insert(conn, protocol);
        }
    }

    /// Bytes arrived on an outside stream connection (TCP/TLS), in order. A declared stream is
    /// read as its listener's protocol only. An undeclared one (replay) is H.225.0 when it uses
    /// port 1720 or starts with TPKT + Q.931, H.245 when it goes to or from an `h245Address`
    /// announced in H.225.0, SIP when it uses a SIP port or its first bytes look like SIP;
    /// other streams are ignored.
    pub fn handle_stream(&mut self, now: Duration, conn: ConnId, flow: Flow, data: &[u8]) {
        self.out.origin = EndedBy::Outside;
        if let Some(first) = self.out.calls.limits.blocked(now, flow.remote.ip()) {
            let protocol = match self.declared.get(&conn) {
                Some(StreamProtocol::H225) => Protocol::H225,
                _ => Protocol::Sip,
            };
            if self.streams.contains_key(&conn) || self.streams.len() < MAX_STREAMS {
                self.streams.insert(conn, StreamState::Dead);
            }
            self.drop_blocked(first, protocol);
            return;
        }
        if !self.streams.contains_key(&conn) {
            if self.streams.len() >= MAX_STREAMS {
                self.out.stats.streams_refused += 1;
                return;
            }
            let state = match self.declared.get(&conn) {
                Some(StreamProtocol::Sip) => StreamState::Sip(codecs::sip::StreamFramer::new()),
                Some(StreamProtocol::H225) => {
                    // A new H.225.0 connection counts as a request of its source.
                    if let Err(secs) = self.out.calls.limits.check_request(now, flow.remote.ip()) {
                        self.out.report(Report {
                            protocol: Protocol::H225,
                            side: Side::Outside,
                            summary: Summary::Text("H.225.0 connection".to_owned()),
                            verdict: Verdict::Rejected,
                            reason: Some(format!(
                                "{}; connection closed (retry after {secs} s)",
                                limits::Limited::SourceRequests.reason()
                            )),
                            response: None,
                            call: None,
                            rule: None,
                        });
                        self.streams.insert(conn, StreamState::Dead);
                        return;
                    }
                    if self.h323.claim_h225_stream(conn, Side::Outside) {
                        StreamState::H323
                    } else {
                        StreamState::Dead
                    }
                }
                Some(StreamProtocol::H245) => {
                    if self.h323.claim_h245_stream(conn, &flow, &mut self.out) {
                        StreamState::H323
                    } else {
                        StreamState::Dead
                    }
                }
                None if self.h323.claim_stream(conn, &flow, data) => StreamState::H323,
                None => {
                    let sip = is_sip_port(flow.local.port())
                        || is_sip_port(flow.remote.port())
                        || looks_like_sip(data);
                    if sip {
                        StreamState::Sip(codecs::sip::StreamFramer::new())
                    } else {
                        StreamState::Dead
                    }
                }
            };
            self.streams.insert(conn, state);
        }
        match self.streams.get_mut(&conn) {
            Some(StreamState::H323) => {
                self.h323
                    .handle_stream(now, conn, flow, data, &mut self.out);
                self.pump(now);
                return;
            }
            Some(StreamState::Sip(_)) => {}
            Some(StreamState::Dead) | None => return,
        };
        self.sip_stream(now, Side::Outside, conn, flow, data);
    }

    /// Bytes arrived on an inside stream connection (GW1's SIP over TCP toward the PBX).
    /// GW1 with an H.323 PBX: H.225.0 and H.245 connections (declared by the listener or the
    /// connect that made them) go to the H.323 part.
    pub fn handle_inside_stream(&mut self, now: Duration, conn: ConnId, flow: Flow, data: &[u8]) {
        self.out.origin = EndedBy::Inside;
        if !self.streams.contains_key(&conn) {
            if self.streams.len() >= MAX_STREAMS {
                self.out.stats.streams_refused += 1;
                return;
            }
            let state = match self.declared.get(&conn) {
                Some(StreamProtocol::H225) => {
                    if self.h323.claim_h225_stream(conn, Side::Inside) {
                        StreamState::H323
                    } else {
                        StreamState::Dead
                    }
                }
                Some(StreamProtocol::H245) => {
                    if self.h323.claim_h245_stream(conn, &flow, &mut self.out) {
                        StreamState::H323
                    } else {
                        StreamState::Dead
                    }
                }
                _ => StreamState::Sip(codecs::sip::StreamFramer::new()),
            };
            self.streams.insert(conn, state);
        }
        match self.streams.get(&conn) {
            Some(StreamState::H323) => {
                self.h323
                    .handle_stream(now, conn, flow, data, &mut self.out);
                self.pump(now);
            }
            Some(StreamState::Sip(_)) => self.sip_stream(now, Side::Inside, conn, flow, data),
            Some(StreamState::Dead) | None => {}
        }
    }

    /// The driver could not open a connection the engine sent on (GW1 toward its H.323 PBX:
    /// the call is released, cause 27, destination out of order).
    pub fn handle_connect_failed(&mut self, now: Duration, side: Side, flow: Flow) {
        self.out.origin = EndedBy::Gateway;
        self.h323.connect_failed(now, side, &flow, &mut self.out);
        self.pump(now);
    }

    /// SIP framing of a stream on `side`, each message to that side's leg. A framing error
    /// makes the stream dead (the live driver closes it) and counts as a protocol error.
    fn sip_stream(&mut self, now: Duration, side: Side, conn: ConnId, flow: Flow, data: &[u8]) {
        let Some(StreamState::Sip(framer)) = self.streams.get_mut(&conn) else {
            return;
        };
        // On a SIP listener, a message whose first byte cannot begin one (a method is a token,
        // a response starts "SIP/") is another protocol: refused at once, not buffered.
        let first = data.iter().find(|b| !matches!(b, b'\r' | b'\n'));
        let declared = self.declared.contains_key(&conn);
        if declared
            && framer.buffered() == 0
            && first.is_some_and(|b| !codecs::sip::is_token_byte(*b))
        {
            self.streams.insert(conn, StreamState::Dead);
            self.out.stats.protocol_errors += 1;
            self.out.report(Report {
                protocol: Protocol::Sip,
                side,
                summary: Summary::Text("stream that is not SIP".to_owned()),
                verdict: Verdict::Rejected,
                reason: Some("not SIP on a SIP listener; connection closed".to_owned()),
                response: None,
                call: None,
                rule: None,
            });
            return;
        }
        framer.push(data);
        let mut messages = Vec::new();
        while let Some(m) = framer.next_message() {
            let failed = m.is_err();
            messages.push(m);
            if failed {
                break;
            }
        }
        for m in messages {
            match (m, side) {
                (Ok(msg), Side::Outside) => self.handle_sip(now, flow, msg),
                (Ok(msg), Side::Inside) => {
                    self.inside.handle_message(now, flow, msg, &mut self.out)
                }
                (Err(e), _) => {
                    self.streams.insert(conn, StreamState::Dead);
                    self.out.stats.protocol_errors += 1;
                    let leg = match side {
                        Side::Outside => &mut self.outside,
                        Side::Inside => &mut self.inside,
                    };
                    leg.report_parse_error(flow, &e, None, &mut self.out);
                }
            }
            self.pump(now);
        }
    }

    /// Bytes were lost on a stream (a capture gap): framing restarts at the next start line.
    pub fn handle_stream_gap(&mut self, _now: Duration, conn: ConnId) {
        self.h323.stream_gap(conn);
        match self.streams.get_mut(&conn) {
            Some(StreamState::Sip(framer)) => framer.resync(),
            // A stream that lost framing may recover after the gap.
            Some(entry @ StreamState::Dead) => *entry = StreamState::Sip(resynced_framer()),
            _ => {}
        }
    }

    /// The peer closed a stream connection.
    pub fn handle_stream_closed(&mut self, _now: Duration, conn: ConnId) {
        self.streams.remove(&conn);
        self.declared.remove(&conn);
        self.h323.stream_closed(conn);
    }

    /// Whether a stream's framing is lost (the live driver closes it).
    pub fn is_stream_dead(&self, conn: ConnId) -> bool {
        matches!(self.streams.get(&conn), Some(StreamState::Dead))
    }

    /// Timers due at or before `now` fire.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.out.origin = EndedBy::Gateway;
        self.outside.handle_timeout(now, &mut self.out);
        self.inside.handle_timeout(now, &mut self.out);
        self.h323.handle_timeout(now, &mut self.out);
        let mut played = VecDeque::new();
        self.out.media.handle_timeout(now, &mut played);
        for t in played {
            self.out.transmits.push_back(t);
        }
        while let Some(call) = self.out.calls.poll_forget(now) {
            self.outside.forget(call);
            self.inside.forget(call);
            self.h323.forget(call);
            self.out.media.forget_call(call);
        }
        if self.keepalive_due().is_some_and(|due| now >= due) {
            self.send_keepalive(now, None);
        }
        if let Some(ras) = &mut self.ras {
            if ras.poll_timeout().is_some_and(|due| now >= due) {
                ras.handle_timeout(now);
            }
            self.flush_ras();
            self.dispatch_admissions(now);
        }
        self.pump(now);
    }

    /// The earliest time [`Engine::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [
            self.outside.poll_timeout(),
            self.inside.poll_timeout(),
            self.out.calls.poll_timeout(),
            self.out.media.poll_timeout(),
            self.h323.poll_timeout(),
            self.keepalive_due(),
            self.ras
                .as_ref()
                .and_then(ras_client::RasClient::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the next tunnel keepalive is due: the signalling connection has been quiet for the
    /// keepalive interval (TUNNEL.md §6).
    fn keepalive_due(&self) -> Option<Duration> {
        (self.tunnel_up && self.role != Role::Both)
            .then(|| self.last_meta_sent + self.keepalive_interval)
    }

    /// Queues a Meta `Keepalive`: a new one, or the reply to the peer's `seq`.
    fn send_keepalive(&mut self, now: Duration, reply_to: Option<u32>) {
        let seq = match reply_to {
            Some(seq) => seq,
            None => {
                self.keepalive_seq = self.keepalive_seq.wrapping_add(1);
                self.keepalive_seq
            }
        };
        let m = meta::Message::Keepalive(meta::Keepalive {
            seq,
            reply: reply_to.is_some(),
        });
        self.send_meta(now, m, self.role == Role::Gw2, false);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.queue.pop_front()
    }

    /// Transmits queued and not yet polled (the driver times tunnel media to its UDP send).
    pub fn pending_transmits(&self) -> usize {
        self.out.transmits.queue.len()
    }

    /// From now on transmits are counted by side, not queued: for a driver that sends and
    /// writes none of them (replay without `--out`), so nothing is queued, polled and dropped
    /// per packet. [`Engine::poll_transmit`] then yields nothing new.
    pub fn count_transmits_only(&mut self) {
        self.out.transmits.count_only = true;
    }

    /// Transmits counted instead of queued: (to the inside, to the outside).
    pub fn counted_transmits(&self) -> (u64, u64) {
        (self.out.transmits.to_inside, self.out.transmits.to_outside)
    }

    /// Keep each answered call's setup time for [`Engine::take_setup_times`] (metrics).
    pub fn record_setup_times(&mut self) {
        self.out.calls.record_setup_times();
    }

    /// Setup times (first message in to answer) of the calls answered since the last take.
    pub fn take_setup_times(&mut self) -> Vec<Duration> {
        self.out.calls.take_setup_times()
    }

    /// Calls up now, by protocol and direction (the metrics endpoint's `sgw_calls_up`).
    pub fn calls_up_by_kind(&self) -> Vec<(calls::CallProtocol, calls::Direction, u64)> {
        self.out.calls.live_by_kind()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Events queued and not yet polled (replay skips polling after the packets, nearly
    /// all media, that leave nothing to poll).
    pub fn pending_events(&self) -> usize {
        self.out.events.len()
    }

    /// Running totals of verdicts, calls and tunnel traffic, and the size of every table.
    pub fn stats(&self) -> Stats {
        let mut s = self.out.stats.clone();
        s.calls_live = self.out.calls.live() as u64;
        s.calls_held = self.out.calls.len() as u64;
        s.admission = self.out.calls.counters.clone();
        s.media = self.out.media.counters.clone();
        s.media_streams = self.out.media.len() as u64;
        s.sip_outside = self.outside.counters.clone();
        s.sip_inside = self.inside.counters.clone();
        s.server_txns = (self.outside.server_txns() + self.inside.server_txns()) as u64;
        s.dialogs = (self.outside.dialogs() + self.inside.dialogs()) as u64;
        s.h323_state = self.h323.state_size() as u64;
        s.h323_streams_refused = self.h323.streams_refused;
        s.h323_h245_addresses_refused = self.h323.h245_addresses_refused;
        s.streams = self.streams.len() as u64;
        s.access_rules = self.out.calls.access.counters();
        s.limits = self.out.calls.limits.counters.clone();
        s.limit_keys = self.out.calls.limits.keys() as u64;
        s.blocked_sources = self.out.calls.limits.blocked_sources() as u64;
        s.registration = self.outside.registration_status();
        s.ras = self.ras.as_ref().map(ras_client::RasClient::status);
        s.auth = self
            .out
            .calls
            .auth
            .is_active()
            .then(|| self.out.calls.auth.counters.clone());
        s
    }

    /// Moves Meta messages and media across the tunnel until both halves are quiet: in memory
    /// when this engine runs both halves, into [`Engine::poll_tunnel`] otherwise. Every Meta
    /// message goes through the wire encoding, as it does on the real tunnel.
    // The check inlined where it is called: most inputs (media) leave nothing to pump, and
    // they then pay for no call into the loop below.
    #[inline]
    fn pump(&mut self, now: Duration) {
        if !self.out.pump_idle() {
            self.pump_queued(now);
        }
    }

    fn pump_queued(&mut self, now: Duration) {
        let local = self.role == Role::Both;
        for _ in 0..4096 {
            if let Some(victim) = self.out.calls.poll_preempted() {
                self.preempt(now, victim);
            } else if let Some(r) = self.out.ras_requests.pop_front() {
                match r {
                    RasRequest::Admit(req) => self.ras_admit(now, req),
                    RasRequest::Disengage(call, cause) => {
                        if self.ras.is_some() {
                            self.ras_disengage(now, call, cause);
                        }
                    }
                }
                self.dispatch_admissions(now);
            } else if let Some(m) = self.out.to_gw1.pop_front() {
                self.send_meta(now, m, true, local);
            } else if let Some(m) = self.out.to_gw2.pop_front() {
                self.send_meta(now, m, false, local);
            } else if let Some((stream, rtcp, data)) = self.out.media_to_gw1.pop_front() {
                if local {
                    self.relay(Side::Inside, stream, rtcp, || data);
                } else {
                    self.tunnel
                        .push_back(TunnelOut::Media { stream, rtcp, data });
                }
            } else if let Some((stream, rtcp, data)) = self.out.media_to_gw2.pop_front() {
                if local {
                    self.relay(Side::Outside, stream, rtcp, || data);
                } else {
                    self.tunnel
                        .push_back(TunnelOut::Media { stream, rtcp, data });
                }
            } else {
                return;
            }
        }
    }

    /// Releases a call to make room for an emergency call, with Q.850 cause 8 through every leg
    /// of this engine that holds it (BYE with `Reason` toward an answered SIP party, 503
    /// toward an unanswered caller, Release Complete for H.323), and tells the other half
    /// when it runs in another process. The Release goes ahead of the emergency call's Setup,
    /// so the other half has the slot free when the Setup arrives.
    fn preempt(&mut self, now: Duration, call: meta::CallRef) {
        self.release_call(now, call, calls::PREEMPTION);
    }

    /// Releases a call with `cause` through every leg of this engine that holds it, and tells
    /// the other half when it runs in another process (pre-emption, the end of a drain).
    fn release_call(&mut self, now: Duration, call: meta::CallRef, cause: meta::Cause) {
        let origin = std::mem::replace(&mut self.out.origin, EndedBy::Gateway);
        let release = meta::Message::Release(meta::Release { call, cause });
        if self.h323.holds(Side::Outside, call) {
            self.h323
                .handle_meta_outside(now, release.clone(), &mut self.out);
        }
        if self.h323.holds(Side::Inside, call) {
            self.h323
                .handle_meta_inside(now, release.clone(), &mut self.out);
        }
        self.outside
            .handle_meta(now, release.clone(), &mut self.out);
        self.inside.handle_meta(now, release.clone(), &mut self.out);
        self.out.end_call(now, call, cause);
        match self.role {
            Role::Both => {}
            Role::Gw2 => self.out.to_gw1.push_front(release),
            Role::Gw1 => self.out.to_gw2.push_front(release),
        }
        self.out.origin = origin;
    }

    /// A media packet from the other half, sent on from this side's port of the stream (`data`
    /// is asked for the packet only when it is sent or protected).
    fn relay(
        &mut self,
        side: Side,
        stream: meta::StreamId,
        rtcp: bool,
        data: impl FnOnce() -> Bytes,
    ) {
        if self.out.transmits.count_only {
            // Nothing is written: no transmit is built only to be counted.
            if self.out.media.relay_counted(side, stream, rtcp, data) {
                self.out.transmits.count(side);
            }
            return;
        }
        if let Some(t) = self.out.media.relay(side, stream, rtcp, data()) {
            self.out.transmits.push_back(t);
        }
    }

    fn send_meta(&mut self, now: Duration, m: meta::Message, to_gw1: bool, local: bool) {
        if !local && !self.tunnel_up {
            // No tunnel: nothing can reach the other half. The admission chain refuses new
            // calls; a call still in flight is released here.
            if let Some(call) = m.call() {
                let release = meta::Message::Release(meta::Release {
                    call,
                    cause: meta::Cause::TEMPORARY_FAILURE,
                });
                if !matches!(m, meta::Message::Release(_)) {
                    self.deliver_meta(now, release, !to_gw1);
                }
            }
            return;
        }
        let mut buf = Vec::new();
        // A message over the wire limits never leaves its half.
        if meta::encode_frame(self.meta_seq, &m, &mut buf).is_err() {
            return;
        }
        self.meta_seq = self.meta_seq.wrapping_add(1);
        self.out.stats.meta_messages += 1;
        self.out.stats.meta_bytes += buf.len() as u64;
        if matches!(m, meta::Message::Setup(_)) {
            self.out.stats.calls += 1;
        }
        if !local {
            self.last_meta_sent = now;
            if !matches!(m, meta::Message::Keepalive(_)) {
                self.out
                    .events
                    .push_back(Event::Meta { to_gw1, message: m });
            }
            self.tunnel.push_back(TunnelOut::Meta(Bytes::from(buf)));
            return;
        }
        let Ok((_, m)) = meta::decode_frame(&buf) else {
            return;
        };
        self.out.events.push_back(Event::Meta {
            to_gw1,
            message: m.clone(),
        });
        self.deliver_meta(now, m, to_gw1);
    }

    /// Hands a Meta message to the leg it is for: the leg that holds the call, or for a Setup
    /// the protocol of that half (GW1: the inside protocol, or the call's own by default).
    fn deliver_meta(&mut self, now: Duration, m: meta::Message, to_gw1: bool) {
        let side = if to_gw1 { Side::Inside } else { Side::Outside };
        let h323 = match &m {
            meta::Message::Setup(s) => match side {
                Side::Outside => false,
                Side::Inside => match self.inside_protocol {
                    Some(p) => p == InsideProtocol::H323,
                    None => self.out.calls.protocol(s.call) == Some(calls::CallProtocol::H323),
                },
            },
            other => other.call().is_some_and(|c| self.h323.holds(side, c)),
        };
        match (side, h323) {
            (Side::Inside, true) => self.h323.handle_meta_inside(now, m, &mut self.out),
            (Side::Outside, true) => self.h323.handle_meta_outside(now, m, &mut self.out),
            (Side::Inside, false) => self.inside.handle_meta(now, m, &mut self.out),
            (Side::Outside, false) => self.outside.handle_meta(now, m, &mut self.out),
        }
    }

    /// A Meta frame arrived from the other half. An error means the peer broke the protocol
    /// and the tunnel must be closed (then call [`Engine::handle_tunnel_down`]).
    pub fn handle_tunnel_meta(&mut self, now: Duration, frame: &[u8]) -> Result<(), TunnelError> {
        // What the other half sends ends a call on behalf of the party on its side.
        self.out.origin = match self.role {
            Role::Gw1 => EndedBy::Outside,
            _ => EndedBy::Inside,
        };
        let (seq, m) = meta::decode_frame(frame)?;
        if seq != self.meta_expected {
            return Err(TunnelError::Sequence {
                expected: self.meta_expected,
                got: seq,
            });
        }
        self.meta_expected = seq.wrapping_add(1);
        if let meta::Message::Keepalive(k) = &m {
            if !k.reply {
                self.send_keepalive(now, Some(k.seq));
            }
            return Ok(());
        }
        let to_gw1 = self.role == Role::Gw1;
        self.out.events.push_back(Event::Meta {
            to_gw1,
            message: m.clone(),
        });
        self.deliver_meta(now, m, to_gw1);
        self.pump(now);
        Ok(())
    }

    /// A media packet arrived from the other half.
    pub fn handle_tunnel_media(
        &mut self,
        now: Duration,
        stream: meta::StreamId,
        rtcp: bool,
        data: Bytes,
    ) {
        let side = if self.role == Role::Gw1 {
            Side::Inside
        } else {
            Side::Outside
        };
        self.relay(side, stream, rtcp, || data);
        self.pump(now);
    }

    /// Both tunnel connections are up (roles GW1 and GW2): Meta sequence numbers start at 0 and
    /// a first Keepalive goes out at once (TUNNEL.md §6). Until this is called, the admission
    /// chain refuses new calls (503, cause 41).
    pub fn handle_tunnel_up(&mut self, now: Duration) {
        self.tunnel.clear();
        self.meta_seq = 0;
        self.meta_expected = 0;
        self.tunnel_up = true;
        self.out.tunnel_up = true;
        self.send_keepalive(now, None);
    }

    /// Whether the tunnel is up, as last reported by the driver.
    pub fn is_tunnel_up(&self) -> bool {
        self.tunnel_up
    }

    /// The tunnel went down: every call is released on this side with "temporary failure"
    /// (Q.850 cause 41), so no call outlives it. Sequence numbers restart with the next tunnel.
    pub fn handle_tunnel_down(&mut self, now: Duration) {
        self.out.origin = EndedBy::Gateway;
        self.tunnel_up = false;
        self.out.tunnel_up = self.role == Role::Both;
        let cause = meta::Cause::TEMPORARY_FAILURE;
        for call in self.out.calls.live_calls() {
            let release = meta::Message::Release(meta::Release { call, cause });
            for side in [Side::Outside, Side::Inside] {
                if self.h323.holds(side, call) {
                    match side {
                        Side::Outside => {
                            self.h323
                                .handle_meta_outside(now, release.clone(), &mut self.out)
                        }
                        Side::Inside => {
                            self.h323
                                .handle_meta_inside(now, release.clone(), &mut self.out)
                        }
                    }
                }
            }
            self.outside
                .handle_meta(now, release.clone(), &mut self.out);
            self.inside.handle_meta(now, release, &mut self.out);
            self.out.end_call(now, call, cause);
        }
        self.out.to_gw1.clear();
        self.out.to_gw2.clear();
        self.out.media_to_gw1.clear();
        self.out.media_to_gw2.clear();
        self.tunnel.clear();
        self.meta_seq = 0;
        self.meta_expected = 0;
        self.pump(now);
    }

    /// Moves what the RAS client produced to the engine's queues: its datagrams leave GW1's
    /// RAS socket on the inside, every message sent or received is a report, its events wait
    /// for [`Engine::ras_events`].
    fn flush_ras(&mut self) {
        let Some(ras) = &mut self.ras else {
            return;
        };
        let local = ras.local();
        while let Some((remote, payload)) = ras.poll_transmit() {
            self.out.transmits.push_back(Transmit {
                side: Side::Inside,
                flow: Flow {
                    transport: Transport::Udp,
                    local,
                    remote,
                },
                protocol: Protocol::Ras,
                payload,
            });
        }
        while let Some((r, sent)) = ras.poll_report() {
            // A message sent is logged, not counted as a verdict on an input.
            if sent {
                self.out.events.push_back(Event::Report(r));
            } else {
                self.out.report(r);
            }
        }
        while let Some(e) = ras.poll_event() {
            if self.ras_events.len() >= ras_client::MAX_PENDING {
                self.ras_events.pop_front();
            }
            self.ras_events.push_back(e);
        }
    }

    /// The RAS client's events (registration, admissions) since the last call, for GW1's
    /// H.323 calls.
    pub fn ras_events(&mut self) -> Vec<ras_client::RasEvent> {
        self.ras_events.drain(..).collect()
    }

    /// Hands the gatekeeper's answers about calls the H.323 part waits for to it; the other
    /// events stay for [`Engine::ras_events`].
    fn dispatch_admissions(&mut self, now: Duration) {
        let events = std::mem::take(&mut self.ras_events);
        for e in events {
            match e {
                ras_client::RasEvent::Admitted { call, dest }
                    if self.h323.awaits_admission(call) =>
                {
                    self.h323.admitted(now, call, dest, &mut self.out);
                }
                ras_client::RasEvent::AdmissionRejected {
                    call,
                    cause,
                    reason,
                } if self.h323.awaits_admission(call) => {
                    self.h323
                        .admission_rejected(now, call, cause, &reason, &mut self.out);
                }
                // A call of the PBX that GW1 answers, refused by the gatekeeper.
                ras_client::RasEvent::AdmissionRejected { call, cause, .. }
                    if self.h323.holds(Side::Inside, call) && self.out.calls.is_live(call) =>
                {
                    self.release_call(now, call, cause);
                }
                ras_client::RasEvent::DisengageRequested { call }
                    if self.out.calls.is_live(call) =>
                {
                    self.release_call(now, call, meta::Cause::NORMAL_CLEARING);
                }
                other => self.ras_events.push_back(other),
            }
        }
    }

    /// Asks the gatekeeper to admit a call (ARQ); the answer comes in [`Engine::ras_events`].
    /// Without `[gw1.gatekeeper]` the call is admitted at once, to `dest`.
    pub fn ras_admit(&mut self, now: Duration, req: ras_client::AdmissionRequest) {
        match &mut self.ras {
            Some(ras) => ras.admit(now, req),
            None => self.ras_events.push_back(ras_client::RasEvent::Admitted {
                call: req.call,
                dest: req.dest,
            }),
        }
        self.flush_ras();
    }

    /// Tells the gatekeeper a call ended (DRQ), when it was admitted.
    pub fn ras_disengage(&mut self, now: Duration, call: meta::CallRef, cause: meta::Cause) {
        if let Some(ras) = &mut self.ras {
            ras.disengage(now, call, cause);
        }
        self.flush_ras();
    }

    /// GW1 is stopping: a URQ to the gatekeeper when registered. Returns whether the driver
    /// should wait for [`Engine::ras_unregistered`].
    pub fn ras_unregister(&mut self, now: Duration) -> bool {
        let waiting = self.ras.as_mut().is_some_and(|r| r.unregister(now));
        self.flush_ras();
        waiting
    }

    /// Whether GW1 is no longer registered after [`Engine::ras_unregister`] (true without a
    /// gatekeeper).
    pub fn ras_unregistered(&self) -> bool {
        self.ras
            .as_ref()
            .is_none_or(ras_client::RasClient::is_unregistered)
    }

    /// The next frame to send over the tunnel (roles GW1 and GW2 only).
    pub fn poll_tunnel(&mut self) -> Option<TunnelOut> {
        self.tunnel.pop_front()
    }
}

/// Gives back most of a map's slots once it is under a quarter full. Transactions come in
/// bursts (a wave of call set-ups) and end 32 s later, media sockets when their calls end:
/// without this, a table keeps the slots of its busiest moment for the life of the process
/// (issue 11, memory per call). Halving at a quarter keeps the rehash rare: amortised, it
/// costs nothing per removal.
pub fn shrink_when_sparse<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
    map: &mut std::collections::HashMap<K, V, S>,
) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}
