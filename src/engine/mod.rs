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
//! A live driver also drains [`Engine::poll_socket_request`] *before* the transmits of the same
//! input (the engine names the media ports it needs, the driver binds them, as quinn's endpoint
//! says what to send and the driver sends it), and with one half per process it moves
//! [`Engine::poll_tunnel`] frames over the tunnel, feeds what arrives to
//! [`Engine::handle_tunnel_meta`] / [`Engine::handle_tunnel_media`], and reports the tunnel's
//! life with [`Engine::handle_tunnel_up`] / [`Engine::handle_tunnel_down`]. The engine owns the
//! Meta sequence numbers, so it also sends the tunnel keepalives (TUNNEL.md §6) from its timer.
//!
//! The live runtime and `sgw replay` are two drivers over this type: what a replay reports is
//! what the live gateway does with the same packets.

mod gw1;
mod gw2;
mod h323;
mod ids;
mod media;
pub mod policy;
mod sipua;

use bytes::Bytes;
use codecs::meta;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use h323::InsideProtocol;
pub use media::MediaCounters;
pub use policy::{Rejection, SipPolicy};
pub use sipua::host_port;

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
}

/// A call detail record, emitted when a call ends.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub call: u32,
    pub calling: String,
    pub called: String,
    pub emergency: bool,
    pub setup_at: f64,
    pub answered_at: Option<f64>,
    pub ended_at: f64,
    pub cause: u8,
    pub media: MediaCounters,
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
    CallEnded(CallRecord),
}

/// A UDP socket the live driver must open or close: media ports are chosen per call by the
/// engine. RTP and RTCP are separate requests (RTCP on the next port). Replay never asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketRequest {
    /// Bind a UDP socket on exactly `local`; what arrives goes to [`Engine::handle_datagram`]
    /// (outside) or [`Engine::handle_inside_datagram`] (inside).
    Open { side: Side, local: SocketAddr },
    /// The call using `local` has ended: close the socket.
    Close { side: Side, local: SocketAddr },
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
    /// Where GW2 sends calls from the inside (a provider or SBC); `None` refuses them.
    pub outside_next_hop: Option<SocketAddr>,
    /// Seed for identifiers (Call-ID, tags, branches). Fixed in replay for reproducible output.
    pub id_seed: u64,
    /// Replay: the capture's answering party plays the inside PBX (see [`Engine`] docs).
    pub replay: bool,
    /// Which halves this engine runs; with one half, the other is behind the tunnel.
    pub role: Role,
    /// Whether accepted RTP/RTCP packets produce a [`Report`] each (they are always counted).
    pub report_accepted_media: bool,
    /// Most concurrent calls; further INVITEs get 503 (emergency calls excepted).
    pub max_calls: usize,
    /// Called numbers treated as emergency calls.
    pub emergency_numbers: Vec<String>,
    /// With one half per process: a Meta `Keepalive` goes out when nothing was sent on the
    /// tunnel's signalling connection for this long.
    pub tunnel_keepalive: Duration,
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
            outside_next_hop: None,
            id_seed: 0x5347_5700,
            replay: false,
            role: Role::Both,
            report_accepted_media: false,
            max_calls: 10_000,
            emergency_numbers: ["112", "911", "999", "110", "15", "17", "18"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            tunnel_keepalive: DEFAULT_TUNNEL_KEEPALIVE,
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

fn resynced_framer() -> codecs::sip::StreamFramer {
    let mut f = codecs::sip::StreamFramer::new();
    f.resync();
    f
}

/// Output queues shared by both halves during one input.
#[derive(Default)]
struct Out {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    to_gw1: VecDeque<meta::Message>,
    to_gw2: VecDeque<meta::Message>,
    media_to_gw1: VecDeque<(meta::StreamId, bool, Bytes)>,
    media_to_gw2: VecDeque<(meta::StreamId, bool, Bytes)>,
    /// The IP family of each call's outside leg, for "inside family same as outside".
    outside_family: HashMap<meta::CallRef, Family>,
    stats: Stats,
    report_accepted_media: bool,
    /// Replay: media addresses the answering party announced, per call.
    replay_answering_media: VecDeque<(meta::CallRef, Vec<Option<SocketAddr>>)>,
    /// Live only (empty in replay): media sockets to open and close.
    sockets: VecDeque<SocketRequest>,
    replay: bool,
}

impl Out {
    /// Asks the live driver for the RTP and RTCP sockets of a media port (see [`SocketRequest`]).
    fn media_sockets(&mut self, side: Side, rtp: SocketAddr, open: bool) {
        if self.replay {
            return;
        }
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
        for local in [rtp, rtcp] {
            self.sockets.push_back(if open {
                SocketRequest::Open { side, local }
            } else {
                SocketRequest::Close { side, local }
            });
        }
    }

    /// Counts a verdict and queues its report. Accepted media packets are only counted unless
    /// the driver asked for them (they are the bulk of all traffic).
    fn report(&mut self, r: Report) {
        let s = &mut self.stats;
        match r.protocol {
            Protocol::Sip => s.sip_messages += 1,
            Protocol::Rtp => s.rtp_packets += 1,
            Protocol::Rtcp => s.rtcp_packets += 1,
            Protocol::H225 => s.h225_messages += 1,
            Protocol::H245 => s.h245_messages += 1,
            Protocol::Ras => s.ras_messages += 1,
        }
        match r.verdict {
            Verdict::Accepted => s.accepted += 1,
            Verdict::Rejected => s.rejected += 1,
            Verdict::Ignored => s.ignored += 1,
        }
        let media = matches!(r.protocol, Protocol::Rtp | Protocol::Rtcp);
        if !media || r.verdict != Verdict::Accepted || self.report_accepted_media {
            self.events.push_back(Event::Report(r));
        }
    }
}

/// GW2 and GW1 with the tunnel between them. See the module docs for the call order.
///
/// In replay (`EngineConfig::replay`), a capture holds both parties of each call. The party that
/// sent the first INVITE of a dialog is the outside caller; the other party's messages and media
/// for that call are what the inside PBX would have answered, so the engine hands them to GW1's
/// inside side, mapped onto the configured inside next hop.
pub struct Engine {
    gw2: gw2::Gw2,
    gw1: gw1::Gw1,
    h323: h323::H323,
    out: Out,
    /// SIP framing per stream; `None` for streams that are not SIP or lost framing.
    streams: HashMap<ConnId, Option<codecs::sip::StreamFramer>>,
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
}

/// Running totals.
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
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            gw2: gw2::Gw2::new(&config),
            gw1: gw1::Gw1::new(&config),
            h323: h323::H323::new(&config),
            out: Out {
                report_accepted_media: config.report_accepted_media,
                replay: config.replay,
                ..Out::default()
            },
            streams: HashMap::new(),
            role: config.role,
            meta_seq: 0,
            meta_expected: 0,
            tunnel: VecDeque::new(),
            tunnel_up: false,
            keepalive_interval: config.tunnel_keepalive.max(Duration::from_millis(10)),
            last_meta_sent: Duration::ZERO,
            keepalive_seq: 0,
        }
    }

    /// A datagram arrived on the outside (from `flow.remote` to `flow.local`).
    pub fn handle_datagram(&mut self, now: Duration, flow: Flow, data: Bytes) {
        // RAS (UDP 1718/1719) and media of H.323 calls.
        if self.h323.handle_datagram(flow, &data, &mut self.out) {
            self.pump(now);
            return;
        }
        let handoff = self.gw2.handle_datagram(now, flow, data, &mut self.out);
        self.handoff(now, flow, handoff);
        self.pump(now);
    }

    /// Replay: GW2 recognised the capture's answering party, which plays the inside.
    fn handoff(&mut self, now: Duration, flow: Flow, handoff: Option<gw2::Handoff>) {
        match handoff {
            None => {}
            Some(gw2::Handoff::Sip { call, msg }) => {
                self.gw1
                    .handle_inside_message(now, flow, *msg, Some(call), &mut self.out);
            }
            Some(gw2::Handoff::Media { stream, src, data }) => {
                self.gw1
                    .handle_inside_media(stream, src, data, &mut self.out);
            }
        }
    }

    /// A datagram arrived on GW1's inside interface.
    pub fn handle_inside_datagram(&mut self, now: Duration, flow: Flow, data: Bytes) {
        self.gw1
            .handle_inside_datagram(now, flow, data, &mut self.out);
        self.pump(now);
    }

    /// Bytes arrived on an outside stream connection (TCP/TLS), in order. A stream is H.225.0
    /// when it uses port 1720 or starts with TPKT + Q.931, H.245 when it goes to or from an
    /// `h245Address` announced in H.225.0, SIP when it uses a SIP port (5060, 5061: the
    /// listener's) or its first bytes look like SIP; other streams are ignored.
    pub fn handle_stream(&mut self, now: Duration, conn: ConnId, flow: Flow, data: &[u8]) {
        if !self.streams.contains_key(&conn) && self.h323.claim_stream(conn, &flow, data) {
            self.h323
                .handle_stream(now, conn, flow, data, &mut self.out);
            self.pump(now);
            return;
        }
        let entry = self.streams.entry(conn).or_insert_with(|| {
            let sip = is_sip_port(flow.local.port())
                || is_sip_port(flow.remote.port())
                || sipua::looks_like_sip(data);
            sip.then(codecs::sip::StreamFramer::new)
        });
        let Some(framer) = entry else { return };
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
            match m {
                Ok(msg) => {
                    let handoff = self.gw2.handle_message(now, flow, msg, &mut self.out);
                    self.handoff(now, flow, handoff);
                }
                Err(e) => {
                    // Framing is lost: the live gateway closes the connection.
                    self.streams.insert(conn, None);
                    self.gw2.report_stream_error(flow, e, &mut self.out);
                }
            }
            self.pump(now);
        }
    }

    /// Bytes were lost on a stream (a capture gap): framing restarts at the next start line.
    pub fn handle_stream_gap(&mut self, _now: Duration, conn: ConnId) {
        self.h323.stream_gap(conn);
        match self.streams.get_mut(&conn) {
            Some(Some(framer)) => framer.resync(),
            // A stream that lost framing may recover after the gap.
            Some(entry) => *entry = Some(resynced_framer()),
            None => {}
        }
    }

    /// The peer closed a stream connection.
    pub fn handle_stream_closed(&mut self, _now: Duration, conn: ConnId) {
        self.streams.remove(&conn);
        self.h323.stream_closed(conn);
    }

    /// Timers due at or before `now` fire.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.gw2.handle_timeout(now, &mut self.out);
        self.gw1.handle_timeout(now, &mut self.out);
        if self.keepalive_due().is_some_and(|due| now >= due) {
            self.send_keepalive(now, None);
        }
        self.pump(now);
    }

    /// The earliest time [`Engine::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [
            self.gw2.poll_timeout(),
            self.gw1.poll_timeout(),
            self.keepalive_due(),
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

    /// The next media socket to open or close (live drivers; see [`SocketRequest`]). Drain
    /// these before [`Engine::poll_transmit`]: the transmits may announce the ports.
    pub fn poll_socket_request(&mut self) -> Option<SocketRequest> {
        self.out.sockets.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Running totals of verdicts, calls and tunnel traffic.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// Moves Meta messages and media across the tunnel until both halves are quiet: in memory
    /// when this engine runs both halves, into [`Engine::poll_tunnel`] otherwise. Every Meta
    /// message goes through the wire encoding, as it does on the real tunnel.
    fn pump(&mut self, now: Duration) {
        let local = self.role == Role::Both;
        for _ in 0..4096 {
            if let Some(m) = self.out.to_gw1.pop_front() {
                self.send_meta(now, m, true, local);
            } else if let Some(m) = self.out.to_gw2.pop_front() {
                self.send_meta(now, m, false, local);
            } else if let Some((call, remotes)) = self.out.replay_answering_media.pop_front() {
                self.gw2.note_answering_media(call, &remotes);
            } else if let Some((stream, rtcp, data)) = self.out.media_to_gw1.pop_front() {
                if local && self.h323.owns_inside_stream(stream) {
                    self.h323
                        .handle_tunnel_media_inside(stream, rtcp, data, &mut self.out);
                } else if local {
                    self.gw1
                        .handle_tunnel_media(stream, rtcp, data, &mut self.out);
                } else {
                    self.tunnel
                        .push_back(TunnelOut::Media { stream, rtcp, data });
                }
            } else if let Some((stream, rtcp, data)) = self.out.media_to_gw2.pop_front() {
                if local && self.h323.owns_outside_stream(stream) {
                    self.h323
                        .handle_tunnel_media_outside(stream, rtcp, data, &mut self.out);
                } else if local {
                    self.gw2
                        .handle_tunnel_media(stream, rtcp, data, &mut self.out);
                } else {
                    self.tunnel
                        .push_back(TunnelOut::Media { stream, rtcp, data });
                }
            } else {
                return;
            }
        }
    }

    fn send_meta(&mut self, now: Duration, m: meta::Message, to_gw1: bool, local: bool) {
        if !local && !self.tunnel_up {
            // No tunnel: nothing can reach the other half. A new outside call is refused at
            // once (GW2 answers 503) rather than left ringing into the void.
            if let meta::Message::Setup(s) = &m {
                if self.role == Role::Gw2 {
                    let release = meta::Message::Release(meta::Release {
                        call: s.call,
                        cause: meta::Cause::TEMPORARY_FAILURE,
                    });
                    self.gw2.handle_meta(now, release, &mut self.out);
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

    /// Hands a Meta message to the half it is for: the H.323 side owns the calls it terminates
    /// (GW2) or places (GW1), the SIP halves the rest.
    fn deliver_meta(&mut self, now: Duration, m: meta::Message, to_gw1: bool) {
        if to_gw1 {
            if self.h323.inside_wants(&m) {
                self.h323.handle_meta_inside(now, m, &mut self.out);
            } else {
                self.gw1.handle_meta(now, m, &mut self.out);
            }
        } else if m.call().is_some_and(|c| self.h323.outside_owns(c)) {
            self.h323.handle_meta_outside(now, m, &mut self.out);
        } else {
            self.gw2.handle_meta(now, m, &mut self.out);
        }
    }

    /// A Meta frame arrived from the other half. An error means the peer broke the protocol
    /// and the tunnel must be closed (then call [`Engine::handle_tunnel_down`]).
    pub fn handle_tunnel_meta(&mut self, now: Duration, frame: &[u8]) -> Result<(), TunnelError> {
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
        if self.role == Role::Gw1 && self.h323.owns_inside_stream(stream) {
            self.h323
                .handle_tunnel_media_inside(stream, rtcp, data, &mut self.out);
        } else if self.role == Role::Gw1 {
            self.gw1
                .handle_tunnel_media(stream, rtcp, data, &mut self.out);
        } else if self.h323.owns_outside_stream(stream) {
            self.h323
                .handle_tunnel_media_outside(stream, rtcp, data, &mut self.out);
        } else {
            self.gw2
                .handle_tunnel_media(stream, rtcp, data, &mut self.out);
        }
        self.pump(now);
    }

    /// Both tunnel connections are up (roles GW1 and GW2): Meta sequence numbers start at 0 and
    /// a first Keepalive goes out at once (TUNNEL.md §6). Until this is called, GW2 refuses new
    /// outside calls with 503.
    pub fn handle_tunnel_up(&mut self, now: Duration) {
        self.tunnel.clear();
        self.meta_seq = 0;
        self.meta_expected = 0;
        self.tunnel_up = true;
        self.send_keepalive(now, None);
    }

    /// Whether the tunnel is up, as last reported by the driver.
    pub fn is_tunnel_up(&self) -> bool {
        self.tunnel_up
    }

    /// The tunnel went down: every call is released on this side with "temporary failure"
    /// (Q.850 cause 41), so no call outlives it. Sequence numbers restart with the next tunnel.
    pub fn handle_tunnel_down(&mut self, now: Duration) {
        self.tunnel_up = false;
        let cause = meta::Cause::TEMPORARY_FAILURE;
        for call in self.gw2.active_calls() {
            self.gw2.handle_meta(
                now,
                meta::Message::Release(meta::Release { call, cause }),
                &mut self.out,
            );
        }
        for call in self.h323.active_calls() {
            self.h323.handle_meta_outside(
                now,
                meta::Message::Release(meta::Release { call, cause }),
                &mut self.out,
            );
        }
        for call in self.gw1.active_calls() {
            self.gw1.handle_meta(
                now,
                meta::Message::Release(meta::Release { call, cause }),
                &mut self.out,
            );
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

    /// The next frame to send over the tunnel (roles GW1 and GW2 only).
    pub fn poll_tunnel(&mut self) -> Option<TunnelOut> {
        self.tunnel.pop_front()
    }
}
