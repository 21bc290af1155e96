//! The media table: every RTP stream of every call on both sides, their ports and tunnel stream
//! ids from tracked free lists, and the per-packet checks of RTP/RTCP: source, version, payload
//! type, SSRC, size (DESIGN: media).
//!
//! Latching follows symmetric RTP (RFC 4961): a stream latches to the address and port of the
//! first packet it accepts, sends its return media there, and drops RTP from any other address
//! or port. Which first packet may latch is the side's [`LatchMode`]. It re-latches to another
//! source only after the latched one has been silent for [`Latching::relatch_idle`], so an
//! outsider cannot take a stream that is in use; every re-latch is counted. RTCP latches on its
//! own (the RTP port + 1, or the RTP port itself with rtcp-mux, RFC 5761).
//!
//! Ports and stream ids are handed out first-in first-out from free lists: a value is never
//! handed out while a call holds it, and a released one goes to the back, so it is reused as
//! late as possible. Media sockets are opened through the driver's [`Binder`] when a port is
//! taken; a port another program holds is skipped and the next one tried. The binder is also
//! told which ports come next ([`Binder::prepare`]), so the live one binds them ahead, off the
//! engine's task.

use super::calls::Refusal;
use super::{Flow, Side, Transmit};
use bytes::Bytes;
use codecs::meta::{CallRef, StreamId};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Largest RTP/RTCP packet relayed.
pub const MAX_MEDIA_PACKET: usize = 1500;

/// Default silence of the latched source before a stream may re-latch: 100 packets at the
/// usual 20 ms. A peer that is sending never pauses that long (comfort noise, RFC 3389, keeps
/// coming during silence), and one whose NAT binding moved loses at most this much audio.
pub const DEFAULT_RELATCH_IDLE: Duration = Duration::from_secs(2);

/// RTCP is sent every 5 s or so (RFC 3550 section 6.2): its latch waits for at least three
/// missed reports before it moves on its own, so the gaps between reports are no window for an
/// outsider. It also moves when the stream's RTP re-latches.
pub const RTCP_RELATCH_IDLE_MIN: Duration = Duration::from_secs(15);

/// Which first packet may latch a stream (`[gw2.media] latch`, `[gw1.media] latch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatchMode {
    /// Only the address and port the SDP (or H.323 fastStart) gave.
    Sdp,
    /// The SDP's address and port, or any port of the IP address the call's signalling came
    /// from: a phone behind NAT announces its private address but sends from the NAT's public
    /// one, which is also where its SIP came from.
    Signalling,
    /// Any source: whoever sends first takes the stream.
    Any,
}

/// How the streams of one side latch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latching {
    pub mode: LatchMode,
    /// Silence of the latched source after which another source may latch the stream.
    pub relatch_idle: Duration,
}

impl Latching {
    /// GW2's outside default: NATed phones get two-way audio.
    pub const OUTSIDE: Latching = Latching {
        mode: LatchMode::Signalling,
        relatch_idle: DEFAULT_RELATCH_IDLE,
    };
    /// GW1's inside default: the inside network has no NAT between the PBX and the gateway.
    pub const INSIDE: Latching = Latching {
        mode: LatchMode::Sdp,
        relatch_idle: DEFAULT_RELATCH_IDLE,
    };
}

/// Where one stream's RTP (or RTCP) is latched and when it last accepted a packet from there.
#[derive(Debug, Clone, Copy, Default)]
struct Latch {
    addr: Option<SocketAddr>,
    last: Duration,
}

/// What the source check decided for one packet.
enum SourceVerdict {
    /// From the latched address.
    Latched,
    /// A first latch, or a re-latch when `again`.
    Latch { again: bool },
}

/// Per-stream counters, summed per call in the call record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaCounters {
    /// RTP packets from this side's peer that passed the checks and went over the tunnel.
    pub forwarded: u64,
    /// RTP/RTCP packets from the other half sent on to this side's peer.
    pub relayed: u64,
    pub rtcp_forwarded: u64,
    /// RTP/RTCP from a source the stream does not accept (not latched to it, or not allowed
    /// to latch to it by the side's latch mode).
    pub dropped_source: u64,
    pub dropped_malformed: u64,
    pub dropped_payload_type: u64,
    pub dropped_size: u64,
    /// SRTP/SRTCP from the peer whose authentication failed, or that was replayed.
    pub dropped_srtp_auth: u64,
    pub dropped_srtp_replay: u64,
    pub ssrc_changes: u64,
    /// RTP latched to a new source after the latched one fell silent (a new SDP address is
    /// a fresh start, not a re-latch).
    pub relatches: u64,
    /// The same for RTCP, on its own (not when it follows an RTP re-latch).
    pub rtcp_relatches: u64,
    /// RFC 4733 telephone-events of the peer converted to Meta DTMF (the other side of the
    /// call has no telephone-event), and the packets that carried them (not relayed).
    pub dtmf_events: u64,
    pub dtmf_packets: u64,
    /// Meta DTMF played to the peer as RFC 4733 events, and those dropped (a full queue).
    pub dtmf_sent: u64,
    pub dtmf_dropped: u64,
}

impl MediaCounters {
    pub fn add(&mut self, o: &MediaCounters) {
        self.forwarded += o.forwarded;
        self.relayed += o.relayed;
        self.rtcp_forwarded += o.rtcp_forwarded;
        self.dropped_source += o.dropped_source;
        self.dropped_malformed += o.dropped_malformed;
        self.dropped_payload_type += o.dropped_payload_type;
        self.dropped_size += o.dropped_size;
        self.dropped_srtp_auth += o.dropped_srtp_auth;
        self.dropped_srtp_replay += o.dropped_srtp_replay;
        self.ssrc_changes += o.ssrc_changes;
        self.relatches += o.relatches;
        self.rtcp_relatches += o.rtcp_relatches;
        self.dtmf_events += o.dtmf_events;
        self.dtmf_packets += o.dtmf_packets;
        self.dtmf_sent += o.dtmf_sent;
        self.dtmf_dropped += o.dtmf_dropped;
    }
}

/// One RTP stream of a call on one side of the gateway.
#[derive(Debug, Clone)]
pub struct MediaStream {
    pub stream: StreamId,
    /// Our RTP address (RTCP is the next port).
    pub local: SocketAddr,
    /// The peer's RTP address as negotiated (SDP or H.323 fastStart).
    pub negotiated: Option<SocketAddr>,
    /// The IP address the call's signalling came from on this side (latch mode `signalling`).
    pub signalling: Option<IpAddr>,
    pub latching: Latching,
    rtp: Latch,
    rtcp: Latch,
    /// Payload types negotiated for this stream (codecs and telephone-event).
    pub payload_types: Vec<u8>,
    pub ssrc: Option<u32>,
    pub counters: MediaCounters,
    /// The peer's telephone-event, read into Meta DTMF instead of relayed (see [`super::dtmf`]).
    dtmf_in: Option<(codecs::meta::TelephoneEvent, super::dtmf::DtmfReceiver)>,
}

/// What an accepted packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// RTP to forward to the other half.
    Rtp,
    Rtcp,
    /// A telephone-event packet read here, not forwarded: `Some` when it ends a new event
    /// (the event code and its duration in ms), to send on as Meta DTMF.
    Dtmf(Option<(u8, u16)>),
}

/// A datagram of a stream, as [`MediaTable::receive`] found and checked it.
#[derive(Debug)]
pub struct Received {
    /// The stream's side and id: in replay, the answering party's media arrives on the
    /// outside for the inside's stream.
    pub side: Side,
    pub stream: StreamId,
    pub call: CallRef,
    /// What the packet is and, when accepted, the plain packet if SRTP was removed (`None`:
    /// the packet as it arrived, not copied or shared); `Err(None)` when the stream's call has
    /// ended.
    pub result: Result<(Checked, Option<Bytes>), Option<MediaDrop>>,
}

/// Why a media packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaDrop {
    /// Not a source the side's latch mode lets the stream latch to.
    Source(LatchMode),
    /// The stream is latched to another address and port, which has not been silent long
    /// enough for a re-latch.
    Latched,
    Malformed,
    PayloadType(u8),
    Size,
    /// An SRTP stream's packet failed authentication or was a replay.
    Srtp(super::srtp::SrtpDrop),
    /// A telephone-event read into Meta DTMF that is no DTMF digit (counted as malformed).
    NotDtmf(u8),
}

impl MediaDrop {
    pub fn reason(self) -> String {
        match self {
            MediaDrop::Source(LatchMode::Sdp) => {
                "not from the negotiated address and port (latch = \"sdp\")".to_owned()
            }
            MediaDrop::Source(LatchMode::Signalling) => {
                "neither from the negotiated address nor from the call's signalling address \
                 (latch = \"signalling\")"
                    .to_owned()
            }
            // Any source may latch: only a latched stream drops for its source.
            MediaDrop::Source(LatchMode::Any) | MediaDrop::Latched => {
                "the stream is latched to another address and port (RFC 4961)".to_owned()
            }
            MediaDrop::Malformed => "not a valid RTP/RTCP packet".to_owned(),
            MediaDrop::NotDtmf(e) => {
                format!("telephone-event {e} is no DTMF digit (RFC 4733 events 0-15 are read)")
            }
            MediaDrop::PayloadType(pt) => format!("payload type {pt} not negotiated"),
            MediaDrop::Size => format!("larger than {MAX_MEDIA_PACKET} bytes"),
            MediaDrop::Srtp(super::srtp::SrtpDrop::Auth) => {
                "SRTP authentication failed (RFC 3711 section 3.3)".to_owned()
            }
            MediaDrop::Srtp(super::srtp::SrtpDrop::Replay) => {
                "SRTP replay (RFC 3711 section 3.3.2)".to_owned()
            }
        }
    }
}

/// RTCP packet types 200-204 sit where RTP payload types 72-76 would be with the marker bit
/// set (RFC 5761 section 4).
pub fn is_rtcp(data: &[u8]) -> bool {
    matches!(data.get(1), Some(200..=211))
}

/// What the checks read of a media packet's header: a function of its bytes alone, so a driver
/// may read it on another thread and hand it over with the packet (replay does, on its reader
/// thread: the engine then reads none of a plain RTP packet's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// [`is_rtcp`].
    pub rtcp: bool,
    /// RTCP: at least 8 bytes, version 2.
    rtcp_ok: bool,
    /// RTP: a whole header (version 2, CSRCs, extension and padding within the packet), with
    /// its payload type and SSRC.
    rtp: Option<(u8, u32)>,
}

impl Head {
    pub fn of(data: &[u8]) -> Head {
        let rtcp = is_rtcp(data);
        Head {
            rtcp,
            rtcp_ok: rtcp && data.len() >= 8 && data.first().is_some_and(|b| b >> 6 == 2),
            rtp: if rtcp {
                None
            } else {
                codecs::rtp::Packet::new_checked(data)
                    .ok()
                    .map(|p| (p.payload_type(), p.ssrc()))
            },
        }
    }
}

impl MediaStream {
    /// A stream that has latched to nothing yet.
    pub fn new(
        stream: StreamId,
        local: SocketAddr,
        negotiated: Option<SocketAddr>,
        latching: Latching,
        payload_types: Vec<u8>,
    ) -> MediaStream {
        MediaStream {
            stream,
            local,
            negotiated,
            signalling: None,
            latching,
            rtp: Latch::default(),
            rtcp: Latch::default(),
            payload_types,
            ssrc: None,
            counters: MediaCounters::default(),
            dtmf_in: None,
        }
    }

    /// Where return RTP goes: the latched source, else the negotiated address.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.rtp.addr.or(self.negotiated)
    }

    /// Where return RTCP goes: the latched RTCP source, else the RTP destination's port + 1.
    pub fn rtcp_remote(&self) -> Option<SocketAddr> {
        self.rtcp.addr.or_else(|| self.remote().map(bump))
    }

    /// The SDP gave the peer's address (an answer, a re-INVITE). A new address starts latching
    /// afresh: the peer moved its media on purpose.
    pub fn set_negotiated(&mut self, remote: SocketAddr) {
        if self.negotiated == Some(remote) {
            return;
        }
        self.negotiated = Some(remote);
        self.rtp.addr = None;
        self.rtcp.addr = None;
    }

    /// The transmit that relays a packet from the other half to this stream's peer, from our
    /// RTP port (RTCP: from the port above, RFC 3550 section 11, to where the peer's RTCP comes
    /// from); `None` before the peer is known.
    // Inlined into the table's relay, and that into the engine's: the transmit is then built
    // where it is queued or counted, not moved through two returns for every packet.
    #[inline]
    pub fn relay(
        &mut self,
        side: super::Side,
        rtcp: bool,
        data: bytes::Bytes,
    ) -> Option<super::Transmit> {
        let (local, remote) = self.relay_ports(rtcp)?;
        Some(super::Transmit {
            side,
            flow: super::Flow {
                transport: super::Transport::Udp,
                local,
                remote,
            },
            protocol: if rtcp {
                super::Protocol::Rtcp
            } else {
                super::Protocol::Rtp
            },
            payload: data,
        })
    }

    /// [`MediaStream::relay`] for a driver that sends nothing: whether the packet would be
    /// sent (the peer is known), counted as relayed, without building the transmit.
    #[inline]
    pub fn relay_counted(&mut self, rtcp: bool) -> bool {
        // Whether `relay_ports` would find a peer, without copying the addresses out.
        let known = self.rtp.addr.is_some()
            || self.negotiated.is_some()
            || (rtcp && self.rtcp.addr.is_some());
        self.counters.relayed += u64::from(known);
        known
    }

    /// Our port and the peer's for a packet from the other half, counted as relayed; `None`
    /// before the peer is known (the rule [`MediaStream::relay_counted`] follows).
    #[inline]
    fn relay_ports(&mut self, rtcp: bool) -> Option<(SocketAddr, SocketAddr)> {
        let ports = if rtcp {
            (bump(self.local), self.rtcp_remote()?)
        } else {
            (self.local, self.remote()?)
        };
        self.counters.relayed += 1;
        Some(ports)
    }

    /// Reads the peer's telephone-event `te` into Meta DTMF instead of relaying it (`None`:
    /// relay it, when negotiated, as any payload).
    pub fn convert_dtmf(&mut self, te: Option<codecs::meta::TelephoneEvent>) {
        let Some(te) = te else {
            self.dtmf_in = None;
            return;
        };
        if !self.dtmf_in.is_some_and(|(t, _)| t == te) {
            self.dtmf_in = Some((te, super::dtmf::DtmfReceiver::default()));
        }
        // The payload type is accepted even when the other side's answer narrowed it away.
        if !self.payload_types.is_empty() && !self.payload_types.contains(&te.payload_type) {
            self.payload_types.push(te.payload_type);
        }
    }

    /// Checks one packet from `src` at engine time `now`: what it is when accepted.
    pub fn check(
        &mut self,
        now: Duration,
        src: SocketAddr,
        data: &[u8],
    ) -> Result<Checked, MediaDrop> {
        self.check_head(now, src, data, Head::of(data))
    }

    /// [`MediaStream::check`] with the packet's header already read ([`Head::of`]`(data)`).
    fn check_head(
        &mut self,
        now: Duration,
        src: SocketAddr,
        data: &[u8],
        head: Head,
    ) -> Result<Checked, MediaDrop> {
        let result = self.check_inner(now, src, data, head);
        match result {
            Ok(Checked::Rtcp) => self.counters.rtcp_forwarded += 1,
            Ok(Checked::Rtp) => self.counters.forwarded += 1,
            Ok(Checked::Dtmf(e)) => {
                self.counters.dtmf_packets += 1;
                self.counters.dtmf_events += u64::from(e.is_some());
            }
            Err(MediaDrop::Source(_) | MediaDrop::Latched) => self.counters.dropped_source += 1,
            Err(MediaDrop::Malformed | MediaDrop::NotDtmf(_)) => {
                self.counters.dropped_malformed += 1
            }
            Err(MediaDrop::PayloadType(_)) => self.counters.dropped_payload_type += 1,
            Err(MediaDrop::Size) => self.counters.dropped_size += 1,
            Err(MediaDrop::Srtp(_)) => {}
        }
        result
    }

    /// Whether the side's latch mode lets `src` latch this stream's RTP (or RTCP).
    fn may_latch(&self, src: SocketAddr, rtcp: bool) -> bool {
        let expected = |a: SocketAddr| {
            if rtcp {
                // RTCP on the port above RTP, or on the RTP port itself (rtcp-mux, RFC 5761).
                src == bump(a) || src == a
            } else {
                src == a
            }
        };
        let negotiated = self.negotiated.is_some_and(expected);
        // RTCP follows the source its stream's RTP latched to.
        let rtp_source = rtcp && self.rtp.addr.is_some_and(expected);
        match self.latching.mode {
            LatchMode::Any => true,
            LatchMode::Sdp => negotiated || rtp_source,
            LatchMode::Signalling => negotiated || rtp_source || self.signalling == Some(src.ip()),
        }
    }

    /// The source check (nothing is latched yet: the packet must pass the other checks).
    fn check_source(
        &self,
        now: Duration,
        src: SocketAddr,
        rtcp: bool,
    ) -> Result<SourceVerdict, MediaDrop> {
        let (latch, idle) = if rtcp {
            (
                &self.rtcp,
                self.latching.relatch_idle.max(RTCP_RELATCH_IDLE_MIN),
            )
        } else {
            (&self.rtp, self.latching.relatch_idle)
        };
        match latch.addr {
            Some(a) if a == src => Ok(SourceVerdict::Latched),
            Some(_) if now.saturating_sub(latch.last) < idle => Err(MediaDrop::Latched),
            latched if self.may_latch(src, rtcp) => Ok(SourceVerdict::Latch {
                again: latched.is_some(),
            }),
            _ => Err(MediaDrop::Source(self.latching.mode)),
        }
    }

    fn check_inner(
        &mut self,
        now: Duration,
        src: SocketAddr,
        data: &[u8],
        head: Head,
    ) -> Result<Checked, MediaDrop> {
        if data.len() > MAX_MEDIA_PACKET {
            return Err(MediaDrop::Size);
        }
        let rtcp = head.rtcp;
        let verdict = self.check_source(now, src, rtcp)?;
        let mut ssrc = None;
        let mut dtmf = None;
        if rtcp {
            if !head.rtcp_ok {
                return Err(MediaDrop::Malformed);
            }
        } else {
            let (pt, packet_ssrc) = head.rtp.ok_or(MediaDrop::Malformed)?;
            if !self.payload_types.is_empty() && !self.payload_types.contains(&pt) {
                return Err(MediaDrop::PayloadType(pt));
            }
            if let Some((te, rx)) = &mut self.dtmf_in {
                if te.payload_type == pt {
                    use super::dtmf::{Invalid, Received};
                    dtmf = Some(match rx.on_packet(data, te.clock_rate) {
                        Ok(Received::Event { event, duration_ms }) => Some((event, duration_ms)),
                        Ok(Received::Part) => None,
                        Err(Invalid::Malformed) => return Err(MediaDrop::Malformed),
                        Err(Invalid::NotDtmf(e)) => return Err(MediaDrop::NotDtmf(e)),
                    });
                }
            }
            ssrc = Some(packet_ssrc);
        }
        // Accepted: the latch moves (or is refreshed) only now.
        let latch = if rtcp { &mut self.rtcp } else { &mut self.rtp };
        latch.addr = Some(src);
        latch.last = now;
        if let SourceVerdict::Latch { again } = verdict {
            if rtcp {
                self.counters.rtcp_relatches += u64::from(again);
            } else {
                self.counters.relatches += u64::from(again);
                if again {
                    // The peer moved: its RTCP latches afresh too.
                    self.rtcp.addr = None;
                }
            }
        }
        if let Some(ssrc) = ssrc {
            if self.ssrc.is_some_and(|s| s != ssrc) {
                self.counters.ssrc_changes += 1;
            }
            self.ssrc = Some(ssrc);
        }
        Ok(match (rtcp, dtmf) {
            (true, _) => Checked::Rtcp,
            (false, Some(e)) => Checked::Dtmf(e),
            (false, None) => Checked::Rtp,
        })
    }
}

/// The summary of a media packet for reports (formatted only when shown).
pub fn media_summary(data: &[u8]) -> super::Summary {
    if is_rtcp(data) {
        return super::Summary::Rtcp {
            packet_type: data.get(1).copied().unwrap_or(0),
        };
    }
    match codecs::rtp::Packet::new_checked(data) {
        Ok(p) => super::Summary::Rtp {
            payload_type: p.payload_type(),
            ssrc: p.ssrc(),
            seq: p.sequence_number(),
        },
        Err(_) => super::Summary::MalformedMedia,
    }
}

/// Opens and closes the UDP sockets of media ports for the engine. The live driver binds real
/// sockets (RTP on `rtp`, RTCP on the port above); replay and tests use [`NoSockets`].
pub trait Binder: Send {
    /// Binds the RTP and RTCP sockets of `rtp` on `side`; `false` when either cannot be bound
    /// (another program holds the port): the engine then tries another port.
    fn open(&mut self, side: Side, rtp: SocketAddr) -> bool;
    /// Closes both sockets of `rtp`: no call holds the port any more.
    fn close(&mut self, side: Side, rtp: SocketAddr);
    /// Listens for one call's separate H.245 connection (TCP) at `at`; `false` when the port
    /// cannot be bound. Connections accepted there reach the engine declared as H.245.
    fn listen(&mut self, _side: Side, _at: SocketAddr) -> bool {
        true
    }
    /// Stops listening at `at` (connections already accepted stay).
    fn unlisten(&mut self, _at: SocketAddr) {}
    /// The RTP ports of `ip` the table will ask [`Binder::open`] for next on `side`, in order
    /// (the front of its free list, at most [`PREPARE_AHEAD`]): a binder may bind them ahead,
    /// off the engine's task. Ports of `side` and `ip` it readied before that are not in the
    /// list are no longer expected (taken, or sent to the back of the list), and it should let
    /// them go. Called after every [`PREPARE_AHEAD`]` / 2` ports taken from a list.
    fn prepare(&mut self, _side: Side, _ip: IpAddr, _upcoming: &mut dyn Iterator<Item = u16>) {}
    /// Whether the binder's driver checks and relays the streams' packets itself, with the
    /// stream's [`Forwarding`] shared with the engine ([`Binder::publish`]).
    fn shares_streams(&self) -> bool {
        false
    }
    /// Stream `stream`, just opened at `rtp` ([`Binder::open`]), is checked and relayed with
    /// `forwarding`, which the engine keeps too (only when [`Binder::shares_streams`]).
    /// [`Binder::close`] ends it.
    fn publish(
        &mut self,
        _side: Side,
        _rtp: SocketAddr,
        _stream: StreamId,
        _forwarding: &SharedForwarding,
    ) {
    }
}

/// A binder that opens nothing: ports are only numbers (replay, `sgw check`, engine tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSockets;

impl Binder for NoSockets {
    fn open(&mut self, _side: Side, _rtp: SocketAddr) -> bool {
        true
    }
    fn close(&mut self, _side: Side, _rtp: SocketAddr) {}
}

/// Ports tried for one stream before the call is refused ([`Refusal::NoMediaPort`]).
pub const MAX_BIND_ATTEMPTS: usize = 16;

/// Ports of each free list announced to [`Binder::prepare`]: enough for the streams of a burst
/// of calls between two announcements (one every half of this). Fewer than
/// [`MAX_BIND_ATTEMPTS`]: another gateway sharing the range (a second instance, a test beside
/// this one) holds at most this many of its next ports bound ahead, and a call here must still
/// find a port past them, as it did when ports were only bound when used.
pub const PREPARE_AHEAD: usize = 8;
const _: () = assert!(PREPARE_AHEAD < MAX_BIND_ATTEMPTS);

/// Numbers of one parity from a range, first-in first-out: those never handed out in order,
/// then those given back in the order they came back. The range is walked as numbers are
/// taken, so a pool of thousands of ports costs nothing until it is used (replay opens one
/// pool per media address).
#[derive(Debug, Clone)]
struct Fifo {
    /// The next number never handed out, and where the range ends (exclusive).
    next: u32,
    end: u32,
    released: VecDeque<u16>,
    in_use: FxHashSet<u16>,
}

impl Fifo {
    /// Every second number of `first..end`.
    fn new(first: u32, end: u32) -> Self {
        Fifo {
            next: first,
            end,
            released: VecDeque::new(),
            in_use: FxHashSet::default(),
        }
    }

    fn take(&mut self) -> Option<u16> {
        let n = if self.next < self.end {
            let n = u16::try_from(self.next).ok()?;
            self.next += 2;
            n
        } else {
            self.released.pop_front()?
        };
        self.in_use.insert(n);
        Some(n)
    }

    /// Returns a number to the back of the list; one not handed out is ignored.
    fn give_back(&mut self, n: u16) {
        if self.in_use.remove(&n) {
            self.released.push_back(n);
        }
    }

    /// The numbers [`Fifo::take`] hands out next, in order, unless some are given back first.
    fn upcoming(&self) -> impl Iterator<Item = u16> + '_ {
        (self.next..self.end)
            .step_by(2)
            .filter_map(|n| u16::try_from(n).ok())
            .chain(self.released.iter().copied())
    }
}

/// Even RTP ports of a range (RTCP on the odd port above), first-in first-out.
#[derive(Debug, Clone)]
pub struct PortPool {
    fifo: Fifo,
    /// Ports taken since the binder was last told the upcoming ones; `None` before the first
    /// time.
    since_prepare: Option<usize>,
}

impl PortPool {
    /// Every even port of `low..=high` whose RTCP port is also in the range.
    pub fn new((low, high): (u16, u16)) -> Self {
        let low = low.max(1024);
        let first = low + (low & 1);
        PortPool {
            fifo: Fifo::new(u32::from(first), u32::from(high)),
            since_prepare: None,
        }
    }

    pub fn allocate(&mut self) -> Option<u16> {
        self.fifo.take()
    }

    /// Returns a port to the back of the list; a port not handed out is ignored.
    pub fn release(&mut self, port: u16) {
        self.fifo.give_back(port);
    }

    pub fn in_use(&self) -> usize {
        self.fifo.in_use.len()
    }

    /// The next `n` ports [`PortPool::allocate`] hands out, unless some are released first.
    pub fn upcoming(&self, n: usize) -> impl Iterator<Item = u16> + '_ {
        self.fifo.upcoming().take(n)
    }
}

/// Tunnel stream ids of one parity (GW2 even, GW1 odd), first-in first-out.
#[derive(Debug, Clone)]
struct IdPool(Fifo);

impl IdPool {
    fn new(parity: u16) -> Self {
        // Zero never names a stream.
        let first = if parity == 0 { 2 } else { 1 };
        IdPool(Fifo::new(first, u32::from(u16::MAX) + 1))
    }
}

/// Counters of the media table, shown in `stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MediaTableCounters {
    pub streams_opened: u64,
    /// Ports another program held: skipped, the next one tried.
    pub bind_failures: u64,
    /// Streams refused because no port was free or none could be bound.
    pub no_port: u64,
    /// Packets for no known stream, or a stream whose call has ended.
    pub unknown_stream: u64,
    /// Over all streams, as they happen (the call record has each call's own): packets
    /// dropped by reason, and re-latches (RTP and RTCP).
    pub dropped_source: u64,
    pub dropped_malformed: u64,
    pub dropped_payload_type: u64,
    pub dropped_size: u64,
    pub dropped_srtp_auth: u64,
    pub dropped_srtp_replay: u64,
    pub relatches: u64,
    /// RFC 4733 events read into Meta DTMF and the packets that carried them (not relayed),
    /// Meta DTMF played as RFC 4733 events and those dropped (a full queue).
    pub dtmf_events: u64,
    pub dtmf_packets: u64,
    pub dtmf_sent: u64,
    pub dtmf_dropped: u64,
}

/// What the checks and the relay of one stream read and change for each packet. The live
/// driver's media workers share it with the engine ([`Binder::publish`]) and check and relay
/// the stream's packets with it off the engine's task; replay and tests leave it to the table.
/// What a driver's media workers counted off the engine's task, for the engine's stats
/// ([`super::Engine::absorb_media_counts`]).
#[derive(Debug, Default, Clone)]
pub struct WorkerCounts {
    pub table: MediaTableCounters,
    /// Verdicts on RTP and RTCP packets: accepted, rejected.
    pub rtp: [u64; 2],
    pub rtcp: [u64; 2],
}

impl WorkerCounts {
    /// Counts a verdict on a packet.
    pub fn verdict(&mut self, rtcp: bool, accepted: bool) {
        let v = if rtcp { &mut self.rtcp } else { &mut self.rtp };
        if let Some(n) = v.get_mut(usize::from(!accepted)) {
            *n += 1;
        }
    }

    pub fn add(&mut self, o: &WorkerCounts) {
        self.table.add(&o.table);
        for (a, b) in self.rtp.iter_mut().zip(o.rtp) {
            *a += b;
        }
        for (a, b) in self.rtcp.iter_mut().zip(o.rtcp) {
            *a += b;
        }
    }
}

#[derive(Debug)]
pub struct Forwarding {
    pub call: CallRef,
    pub stream: MediaStream,
    /// SRTP keys of an outside stream served as `RTP/SAVP`.
    srtp: Option<Box<super::srtp::SrtpSession>>,
    /// The call ended: the port is released and packets are refused.
    ended: bool,
}

/// A stream's [`Forwarding`] as the driver's media workers hold it.
pub type SharedForwarding = Arc<Mutex<Forwarding>>;

impl Forwarding {
    /// Whether the call ended (its packets are refused).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// A datagram of this stream from `src` at engine time `now`: unprotected (SRTP) and
    /// checked, counted in `t` and in the stream's counters. The plain packet when accepted;
    /// `Err(None)` when the call has ended.
    pub fn receive(
        &mut self,
        now: Duration,
        t: &mut MediaTableCounters,
        src: SocketAddr,
        data: &Bytes,
    ) -> Result<(Checked, Bytes), Option<MediaDrop>> {
        self.receive_in_place(now, t, src, data, None)
            .map(|(c, plain)| (c, plain.unwrap_or_else(|| data.clone())))
    }

    /// [`Forwarding::receive`], with the plain packet only when SRTP was removed (`None`: the
    /// packet is `data` as it is; the caller shares it only if it needs it). `head` is
    /// [`Head::of`]`(data)` when the caller read it.
    fn receive_in_place(
        &mut self,
        now: Duration,
        t: &mut MediaTableCounters,
        src: SocketAddr,
        data: &[u8],
        head: Option<Head>,
    ) -> Result<(Checked, Option<Bytes>), Option<MediaDrop>> {
        if self.ended {
            t.unknown_stream += 1;
            return Err(None);
        }
        let head = head.unwrap_or_else(|| Head::of(data));
        // An SRTP stream's packet is authenticated and decrypted first; every other check,
        // and the other half, see the plain packet.
        let plain = match self.unprotect(t, head.rtcp, data) {
            Ok(plain) => plain,
            Err(d) => return Err(Some(d)),
        };
        let c = &self.stream.counters;
        let relatches = c.relatches + c.rtcp_relatches;
        let result = match plain.as_deref() {
            Some(p) => self.stream.check(now, src, p),
            None => self.stream.check_head(now, src, data, head),
        };
        let d = &self.stream.counters;
        t.relatches += (d.relatches + d.rtcp_relatches).saturating_sub(relatches);
        match result {
            Ok(Checked::Dtmf(e)) => {
                t.dtmf_packets += 1;
                t.dtmf_events += u64::from(e.is_some());
            }
            Ok(_) => {}
            Err(MediaDrop::Source(_) | MediaDrop::Latched) => t.dropped_source += 1,
            Err(MediaDrop::Malformed | MediaDrop::NotDtmf(_)) => t.dropped_malformed += 1,
            Err(MediaDrop::PayloadType(_)) => t.dropped_payload_type += 1,
            Err(MediaDrop::Size) => t.dropped_size += 1,
            Err(MediaDrop::Srtp(_)) => {}
        }
        result.map(|c| (c, plain)).map_err(Some)
    }

    /// A packet from the other half, sent on to this stream's peer (protected when the
    /// stream is SRTP): `None` when the call ended (counted in `t`) or the peer is not known
    /// yet.
    #[inline] // See MediaStream::relay.
    pub fn relay(
        &mut self,
        t: &mut MediaTableCounters,
        side: Side,
        rtcp: bool,
        data: Bytes,
    ) -> Option<Transmit> {
        if self.ended {
            t.unknown_stream += 1;
            return None;
        }
        let data = match &mut self.srtp {
            Some(s) => s.protect(rtcp, &data)?,
            None => data,
        };
        self.stream.relay(side, rtcp, data)
    }

    /// [`Forwarding::relay`] for a driver that sends nothing: whether a transmit would have
    /// been sent, with the same counters and stream state changed. An SRTP stream's packet is
    /// still protected (its session state moves with every packet, and protection may fail).
    #[inline]
    pub fn relay_counted(
        &mut self,
        t: &mut MediaTableCounters,
        side: Side,
        rtcp: bool,
        data: impl FnOnce() -> Bytes,
    ) -> bool {
        if self.ended || self.srtp.is_some() {
            return self.relay(t, side, rtcp, data()).is_some();
        }
        self.stream.relay_counted(rtcp)
    }

    /// Authenticates and decrypts a packet of an SRTP stream (before any other check, so a
    /// forged packet cannot latch it): the plain packet, or `None` for a plain stream.
    fn unprotect(
        &mut self,
        t: &mut MediaTableCounters,
        rtcp: bool,
        data: &[u8],
    ) -> Result<Option<Bytes>, MediaDrop> {
        let Some(s) = &mut self.srtp else {
            return Ok(None);
        };
        match s.unprotect(rtcp, data) {
            Ok(p) => Ok(Some(p)),
            Err(d) => {
                let c = &mut self.stream.counters;
                match d {
                    super::srtp::SrtpDrop::Auth => {
                        c.dropped_srtp_auth += 1;
                        t.dropped_srtp_auth += 1;
                    }
                    super::srtp::SrtpDrop::Replay => {
                        c.dropped_srtp_replay += 1;
                        t.dropped_srtp_replay += 1;
                    }
                }
                Err(MediaDrop::Srtp(d))
            }
        }
    }
}

/// Where the table keeps a stream's [`Forwarding`]: alone, or shared with the driver's media
/// workers (the binder asked for it, [`Binder::shares_streams`]).
#[derive(Debug)]
enum Cell {
    Own(Box<Forwarding>),
    Shared(SharedForwarding),
}

/// A stream's [`Forwarding`], borrowed from its [`Cell`].
enum Guard<'a> {
    Own(&'a mut Forwarding),
    Shared(MutexGuard<'a, Forwarding>),
}

impl Cell {
    fn get(&mut self) -> Guard<'_> {
        match self {
            Cell::Own(f) => Guard::Own(f),
            // A worker that panicked while holding it left a usable stream (its checks
            // change counters and latches field by field).
            Cell::Shared(m) => Guard::Shared(m.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }
}

impl std::ops::Deref for Guard<'_> {
    type Target = Forwarding;
    fn deref(&self) -> &Forwarding {
        match self {
            Guard::Own(f) => f,
            Guard::Shared(g) => g,
        }
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Forwarding {
        match self {
            Guard::Own(f) => f,
            Guard::Shared(g) => g,
        }
    }
}

impl MediaTableCounters {
    pub fn add(&mut self, o: &MediaTableCounters) {
        self.streams_opened += o.streams_opened;
        self.bind_failures += o.bind_failures;
        self.no_port += o.no_port;
        self.unknown_stream += o.unknown_stream;
        self.dropped_source += o.dropped_source;
        self.dropped_malformed += o.dropped_malformed;
        self.dropped_payload_type += o.dropped_payload_type;
        self.dropped_size += o.dropped_size;
        self.dropped_srtp_auth += o.dropped_srtp_auth;
        self.dropped_srtp_replay += o.dropped_srtp_replay;
        self.relatches += o.relatches;
        self.dtmf_events += o.dtmf_events;
        self.dtmf_packets += o.dtmf_packets;
        self.dtmf_sent += o.dtmf_sent;
        self.dtmf_dropped += o.dtmf_dropped;
    }
}

#[derive(Debug)]
struct Entry {
    call: CallRef,
    /// The stream's RTP address here (fixed for its life).
    local: SocketAddr,
    cell: Cell,
    /// Replay: the keys this stream put into `by_remote`.
    remotes: Vec<SocketAddr>,
    /// Plays Meta DTMF to the peer as RFC 4733 events, when it negotiated telephone-event.
    dtmf_out: Option<Box<super::dtmf::DtmfSender>>,
}

/// The table's streams by side and tunnel id. Ids are 16 bits and handed out from the bottom
/// of their range, so each side keeps a slot per id up to the highest used: an index, not a
/// hash look-up, for each of the two or three look-ups of every packet. Boxed: the slots keep
/// their largest number (at most 64 Ki a side, 512 KiB), and a slot holds only a pointer
/// (issue 11, memory per call).
#[derive(Default)]
struct Slots {
    sides: [Vec<Option<Box<Entry>>>; 2],
    len: usize,
}

impl Slots {
    fn side(&self, side: Side) -> &Vec<Option<Box<Entry>>> {
        match side {
            Side::Outside => &self.sides[0],
            Side::Inside => &self.sides[1],
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Vec<Option<Box<Entry>>> {
        match side {
            Side::Outside => &mut self.sides[0],
            Side::Inside => &mut self.sides[1],
        }
    }

    #[inline]
    fn get(&self, &(side, id): &(Side, StreamId)) -> Option<&Entry> {
        self.side(side).get(usize::from(id.0))?.as_deref()
    }

    #[inline]
    fn get_mut(&mut self, &(side, id): &(Side, StreamId)) -> Option<&mut Entry> {
        self.side_mut(side)
            .get_mut(usize::from(id.0))?
            .as_deref_mut()
    }

    fn insert(&mut self, (side, id): (Side, StreamId), entry: Box<Entry>) {
        let slots = self.side_mut(side);
        let i = usize::from(id.0);
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        if let Some(slot) = slots.get_mut(i) {
            if slot.replace(entry).is_none() {
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, &(side, id): &(Side, StreamId)) -> Option<Box<Entry>> {
        let e = self.side_mut(side).get_mut(usize::from(id.0))?.take()?;
        self.len -= 1;
        Some(e)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Every media stream of the engine, per side. See the module docs.
pub struct MediaTable {
    binder: Box<dyn Binder>,
    /// Replay: streams are also found by the peer's address (captured packets go to the
    /// original callee, not to the gateway's ports).
    replay: bool,
    ranges: [(u16, u16); 3],
    pools: HashMap<(Side, IpAddr), PortPool>,
    ids: [IdPool; 2],
    streams: Slots,
    by_local: FxHashMap<SocketAddr, (Side, StreamId)>,
    /// Keyed by addresses an SDP names, so seeded per process (foldhash's quality hasher, about
    /// twice as fast as SipHash here) rather than the fixed Fx hash of the maps above.
    by_remote: HashMap<SocketAddr, (Side, StreamId), foldhash::quality::RandomState>,
    by_call: FxHashMap<CallRef, Vec<(Side, StreamId)>>,
    /// Per side (outside, inside).
    latching: [Latching; 2],
    /// The IP address each call's signalling came from, per side.
    signalling: FxHashMap<(CallRef, Side), IpAddr>,
    /// When streams' DTMF senders have packets due (stale entries are skipped).
    dtmf_timers: super::timers::Timers<(Side, StreamId)>,
    pub counters: MediaTableCounters,
}

impl std::fmt::Debug for MediaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaTable")
            .field("streams", &self.streams.len())
            .finish()
    }
}

impl MediaTable {
    /// `outside` is GW2's port range; `inside_v4` and `inside_v6` GW1's per family.
    pub fn new(
        binder: Box<dyn Binder>,
        replay: bool,
        outside: (u16, u16),
        inside_v4: (u16, u16),
        inside_v6: (u16, u16),
    ) -> Self {
        MediaTable {
            binder,
            replay,
            ranges: [outside, inside_v4, inside_v6],
            pools: HashMap::new(),
            ids: [IdPool::new(0), IdPool::new(1)],
            streams: Slots::default(),
            by_local: FxHashMap::default(),
            by_remote: HashMap::default(),
            by_call: FxHashMap::default(),
            latching: [Latching::OUTSIDE, Latching::INSIDE],
            signalling: FxHashMap::default(),
            dtmf_timers: super::timers::Timers::default(),
            counters: MediaTableCounters::default(),
        }
    }

    /// How streams opened on `side` from now on latch.
    pub fn set_latching(&mut self, side: Side, latching: Latching) {
        if let Some(l) = self.latching.get_mut(usize::from(side == Side::Inside)) {
            *l = latching;
        }
    }

    fn latching(&self, side: Side) -> Latching {
        let i = usize::from(side == Side::Inside);
        self.latching.get(i).copied().unwrap_or(Latching::INSIDE)
    }

    /// The IP address `call`'s signalling on `side` came from (or goes to): latch mode
    /// `signalling` accepts a first packet from any port of it. Streams of the call on that
    /// side, opened before or after, take it.
    pub fn set_signalling(&mut self, side: Side, call: CallRef, ip: IpAddr) {
        self.signalling.insert((call, side), ip);
        for key in self.by_call.get(&call).into_iter().flatten() {
            if key.0 == side {
                if let Some(e) = self.streams.get_mut(key) {
                    e.cell.get().stream.signalling = Some(ip);
                }
            }
        }
    }

    /// Listens for a separate H.245 connection at `at` (see [`Binder::listen`]).
    pub fn listen(&mut self, side: Side, at: SocketAddr) -> bool {
        self.binder.listen(side, at)
    }

    pub fn unlisten(&mut self, at: SocketAddr) {
        self.binder.unlisten(at);
    }

    /// Replaces the binder (the live driver installs its own when it takes the engine).
    pub fn set_binder(&mut self, binder: Box<dyn Binder>) {
        self.binder = binder;
    }

    /// A fresh tunnel stream id for a call that arrived on `side` (GW2 even, GW1 odd).
    pub fn stream_id(&mut self, side: Side) -> Option<StreamId> {
        let pool = self.ids.get_mut(usize::from(side == Side::Inside))?;
        pool.0.take().map(StreamId)
    }

    fn release_id(&mut self, id: StreamId) {
        for pool in &mut self.ids {
            pool.0.give_back(id.0);
        }
    }

    fn range(&self, side: Side, ip: IpAddr) -> (u16, u16) {
        let i = match (side, ip) {
            (Side::Outside, _) => 0,
            (Side::Inside, IpAddr::V4(_)) => 1,
            (Side::Inside, IpAddr::V6(_)) => 2,
        };
        self.ranges.get(i).copied().unwrap_or((20000, 29999))
    }

    /// Opens stream `stream` of `call` on `side` at a free port of `ip`; the socket is bound
    /// before this returns. `remote` is the peer's RTP address when the SDP gave it.
    pub fn open(
        &mut self,
        side: Side,
        call: CallRef,
        stream: StreamId,
        ip: IpAddr,
        payload_types: Vec<u8>,
        remote: Option<SocketAddr>,
    ) -> Result<SocketAddr, Refusal> {
        if let Some(e) = self.streams.get(&(side, stream)) {
            return Ok(e.local);
        }
        let range = self.range(side, ip);
        let pool = self
            .pools
            .entry((side, ip))
            .or_insert_with(|| PortPool::new(range));
        let mut local = None;
        let mut taken = 0;
        for _ in 0..MAX_BIND_ATTEMPTS {
            let Some(port) = pool.allocate() else { break };
            taken += 1;
            let addr = SocketAddr::new(ip, port);
            if self.binder.open(side, addr) {
                local = Some(addr);
                break;
            }
            // Held by another program: back of the list, tried again much later.
            self.counters.bind_failures += 1;
            pool.release(port);
        }
        // The binder learns the next ports once half of those it was told are taken: it binds
        // them ahead, and a port it readied and no longer in front is dropped there.
        let since = pool.since_prepare.map_or(usize::MAX, |n| n + taken);
        if since >= PREPARE_AHEAD / 2 {
            self.binder
                .prepare(side, ip, &mut pool.upcoming(PREPARE_AHEAD));
            pool.since_prepare = Some(0);
        } else {
            pool.since_prepare = Some(since);
        }
        let Some(local) = local else {
            self.counters.no_port += 1;
            return Err(Refusal::NoMediaPort);
        };
        self.counters.streams_opened += 1;
        self.by_local.insert(local, (side, stream));
        self.by_local.insert(bump(local), (side, stream));
        let mut remotes = Vec::new();
        if let (true, Some(r)) = (self.replay, remote) {
            self.by_remote.insert(r, (side, stream));
            remotes.push(r);
        }
        self.by_call.entry(call).or_default().push((side, stream));
        let mut s = MediaStream::new(stream, local, remote, self.latching(side), payload_types);
        s.signalling = self.signalling.get(&(call, side)).copied();
        let forwarding = Forwarding {
            call,
            stream: s,
            srtp: None,
            ended: false,
        };
        let cell = if self.binder.shares_streams() {
            let shared = Arc::new(Mutex::new(forwarding));
            self.binder.publish(side, local, stream, &shared);
            Cell::Shared(shared)
        } else {
            Cell::Own(Box::new(forwarding))
        };
        self.streams.insert(
            (side, stream),
            Box::new(Entry {
                call,
                local,
                cell,
                remotes,
                dtmf_out: None,
            }),
        );
        Ok(local)
    }

    pub fn local(&self, side: Side, stream: StreamId) -> Option<SocketAddr> {
        self.streams.get(&(side, stream)).map(|e| e.local)
    }

    /// The peer's RTP address from SDP (an answer, a re-INVITE).
    pub fn set_remote(&mut self, side: Side, stream: StreamId, remote: SocketAddr) {
        if let Some(e) = self.streams.get_mut(&(side, stream)) {
            e.cell.get().stream.set_negotiated(remote);
            if self.replay {
                self.by_remote.insert(remote, (side, stream));
                e.remotes.push(remote);
            }
        }
    }

    /// Narrows the payload types a stream accepts (an empty list accepts any).
    pub fn set_payload_types(&mut self, side: Side, stream: StreamId, pts: Vec<u8>) {
        if let Some(e) = self.streams.get_mut(&(side, stream)) {
            if !pts.is_empty() {
                e.cell.get().stream.payload_types = pts;
            }
        }
    }

    /// The stream a datagram on `side` belongs to: by the gateway's port (live), else by the
    /// peer's address (replay; RTCP from the port above the peer's RTP port). A stream of
    /// another side is not found, except in replay, where the answering party's media is seen
    /// on the outside and belongs to the inside's stream: one lookup serves both.
    #[inline]
    fn key_of(&self, side: Side, flow: &Flow, rtcp: bool) -> Option<(Side, StreamId)> {
        let key = self.by_local.get(&flow.local).or_else(|| {
            if !self.replay {
                return None;
            }
            self.by_remote.get(&flow.remote).or_else(|| {
                let below = SocketAddr::new(flow.remote.ip(), flow.remote.port().wrapping_sub(1));
                rtcp.then(|| self.by_remote.get(&below)).flatten()
            })
        })?;
        let answering = self.replay && side == Side::Outside && key.0 == Side::Inside;
        (key.0 == side || answering).then_some(*key)
    }

    /// The stream a datagram on `side` belongs to (see [`MediaTable::key_of`]), with the side
    /// of the stream and its call.
    pub fn find(&self, side: Side, flow: &Flow, rtcp: bool) -> Option<(Side, StreamId, CallRef)> {
        let key = self.key_of(side, flow, rtcp)?;
        self.streams.get(&key).map(|e| (key.0, key.1, e.call))
    }

    /// A datagram arrived on `side`: `None` when it belongs to no stream (see
    /// [`MediaTable::key_of`]). Else the stream's packet is unprotected (SRTP) and checked at
    /// engine time `now`, from the source `source` gives for the stream's side and call, with
    /// one look-up of the stream for all of it. A packet for an ended call is refused with
    /// `None`. `head` is [`Head::of`]`(data)`.
    // Inlined into the engine's media path (its one caller there): the result is then not
    // moved out through a return for every packet.
    #[inline]
    pub fn receive(
        &mut self,
        now: Duration,
        side: Side,
        flow: &Flow,
        data: &[u8],
        head: Head,
        source: impl FnOnce(Side, CallRef) -> SocketAddr,
    ) -> Option<Received> {
        let rtcp = head.rtcp;
        let (arrival, stream) = self.key_of(side, flow, rtcp)?;
        let e = self.streams.get_mut(&(arrival, stream))?;
        let src = source(arrival, e.call);
        let result = e
            .cell
            .get()
            .receive_in_place(now, &mut self.counters, src, data, Some(head));
        Some(Received {
            side: arrival,
            stream,
            call: e.call,
            result,
        })
    }

    /// A packet from the other half for `stream`, sent on to this side's peer.
    #[inline] // See MediaStream::relay.
    pub fn relay(
        &mut self,
        side: Side,
        stream: StreamId,
        rtcp: bool,
        data: Bytes,
    ) -> Option<Transmit> {
        match self.streams.get_mut(&(side, stream)) {
            Some(e) => e.cell.get().relay(&mut self.counters, side, rtcp, data),
            None => {
                self.counters.unknown_stream += 1;
                None
            }
        }
    }

    /// [`MediaTable::relay`] for a driver that sends nothing: whether a transmit would have
    /// been sent, the table and stream changed as by `relay`, no transmit built. The packet is
    /// asked of `data` only where it is still needed (an SRTP stream protects it).
    #[inline]
    pub fn relay_counted(
        &mut self,
        side: Side,
        stream: StreamId,
        rtcp: bool,
        data: impl FnOnce() -> Bytes,
    ) -> bool {
        match self.streams.get_mut(&(side, stream)) {
            Some(e) => e
                .cell
                .get()
                .relay_counted(&mut self.counters, side, rtcp, data),
            None => {
                self.counters.unknown_stream += 1;
                false
            }
        }
    }

    /// The peer on this stream negotiated telephone-event `te` (`None`: it did not). With
    /// `convert` (the other side of the call has no telephone-event, the gateway negotiated it
    /// for that side) the peer's events are read into Meta DTMF instead of relayed, and Meta
    /// DTMF for the peer is played as RFC 4733 events; without, neither.
    pub fn set_telephone_event(
        &mut self,
        now: Duration,
        side: Side,
        stream: StreamId,
        te: Option<codecs::meta::TelephoneEvent>,
        convert: bool,
    ) {
        let Some(e) = self.streams.get_mut(&(side, stream)) else {
            return;
        };
        // Only where the gateway converts: between two parties that both negotiated it, events
        // stay media and INFO stays INFO.
        let te = te.filter(|_| convert);
        e.cell.get().stream.convert_dtmf(te);
        match te {
            None => e.dtmf_out = None,
            Some(te)
                if e.dtmf_out
                    .as_ref()
                    .is_some_and(|s| s.telephone_event() == te) => {}
            Some(te) => {
                let seed = (u64::from(stream.0) << 16) | u64::from(e.local.port());
                e.dtmf_out = Some(Box::new(super::dtmf::DtmfSender::new(te, seed, now)));
            }
        }
    }

    /// The telephone-event `stream` converts (see [`MediaTable::set_telephone_event`]).
    pub fn converts_dtmf(
        &mut self,
        side: Side,
        stream: StreamId,
    ) -> Option<codecs::meta::TelephoneEvent> {
        let e = self.streams.get_mut(&(side, stream))?;
        e.cell.get().stream.dtmf_in.map(|(te, _)| te)
    }

    /// Plays a Meta DTMF event on `stream` as RFC 4733 events: `None` when the stream does not
    /// convert (the leg sends the digit another way, INFO), else whether it was queued (a full
    /// queue, or an ended call, drops it).
    pub fn send_dtmf(
        &mut self,
        now: Duration,
        side: Side,
        stream: StreamId,
        event: u8,
        duration_ms: u16,
    ) -> Option<bool> {
        let e = self.streams.get_mut(&(side, stream))?;
        let mut f = e.cell.get();
        if f.ended {
            return Some(false);
        }
        let sender = e.dtmf_out.as_mut()?;
        let queued = sender.push(now, event, duration_ms);
        if queued {
            f.stream.counters.dtmf_sent += 1;
            self.counters.dtmf_sent += 1;
            if let Some(due) = sender.next_due() {
                self.dtmf_timers.set(due, (side, stream));
            }
        } else {
            f.stream.counters.dtmf_dropped += 1;
            self.counters.dtmf_dropped += 1;
        }
        Some(queued)
    }

    /// When the next DTMF packet is due on any stream.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.dtmf_timers.next()
    }

    /// Sends the DTMF packets due at `now`.
    pub fn handle_timeout(&mut self, now: Duration, transmits: &mut VecDeque<Transmit>) {
        while let Some((at, (side, stream))) = self.dtmf_timers.pop_due(now) {
            let Some(e) = self.streams.get_mut(&(side, stream)) else {
                continue;
            };
            let mut f = e.cell.get();
            if f.ended {
                e.dtmf_out = None;
                continue;
            }
            let Some(sender) = e.dtmf_out.as_mut() else {
                continue;
            };
            // A stale entry (the sender was rescheduled since).
            if sender.next_due() != Some(at) {
                continue;
            }
            while let Some(pkt) = sender.poll(now) {
                if let Some(t) = f.relay(&mut self.counters, side, false, Bytes::from(pkt)) {
                    transmits.push_back(t);
                }
            }
            if let Some(due) = sender.next_due() {
                self.dtmf_timers.set(due, (side, stream));
            }
        }
    }

    /// Serves `stream` as SRTP with `session`'s keys.
    pub fn set_srtp(&mut self, side: Side, stream: StreamId, session: super::srtp::SrtpSession) {
        if let Some(e) = self.streams.get_mut(&(side, stream)) {
            e.cell.get().srtp = Some(Box::new(session));
        }
    }

    /// The keys (the peer's, ours) of `stream`, if it is served as SRTP.
    pub fn srtp_keys(
        &mut self,
        side: Side,
        stream: StreamId,
    ) -> Option<(super::srtp::Sdes, super::srtp::Sdes)> {
        let e = self.streams.get_mut(&(side, stream))?;
        let f = e.cell.get();
        f.srtp.as_ref().map(|s| (s.remote.clone(), s.local.clone()))
    }

    /// The streams of a call on one side, in the order they were opened.
    pub fn streams_of(&self, call: CallRef, side: Side) -> Vec<StreamId> {
        self.by_call
            .get(&call)
            .map(|v| v.iter().filter(|k| k.0 == side).map(|k| k.1).collect())
            .unwrap_or_default()
    }

    /// Replay: packets from `addr` belong to this stream (the capture's answering party sends
    /// from addresses the gateway never negotiated with).
    pub fn alias(&mut self, side: Side, stream: StreamId, addr: SocketAddr) {
        if !self.replay {
            return;
        }
        // An address the other side already uses (the caller's, repeated in a proxied
        // request) stays with it.
        if self.by_remote.get(&addr).is_some_and(|k| k.0 != side) {
            return;
        }
        if let Some(e) = self.streams.get_mut(&(side, stream)) {
            self.by_remote.insert(addr, (side, stream));
            e.remotes.push(addr);
        }
    }

    /// The call ended: its ports are released and their sockets closed, and its packets are
    /// refused from now on. Returns the call's media counters as the outside sees them (the
    /// outside streams when this engine has them, else the inside ones), summed over streams.
    pub fn end_call(&mut self, call: CallRef) -> MediaCounters {
        let mut sum = MediaCounters::default();
        let Some(keys) = self.by_call.get(&call) else {
            return sum;
        };
        let has_outside = keys.iter().any(|k| k.0 == Side::Outside);
        for key in keys.clone() {
            let Some(e) = self.streams.get_mut(&key) else {
                continue;
            };
            let mut f = e.cell.get();
            if (key.0 == Side::Outside) == has_outside {
                sum.add(&f.stream.counters);
            }
            if std::mem::replace(&mut f.ended, true) {
                continue;
            }
            drop(f);
            let local = e.local;
            for a in [local, bump(local)] {
                if self.by_local.get(&a) == Some(&key) {
                    self.by_local.remove(&a);
                }
            }
            self.binder.close(key.0, local);
            if let Some(pool) = self.pools.get_mut(&(key.0, local.ip())) {
                pool.release(local.port());
            }
        }
        sum
    }

    /// The call is forgotten: its entries and stream ids go.
    pub fn forget_call(&mut self, call: CallRef) {
        self.end_call(call);
        for side in [Side::Outside, Side::Inside] {
            self.signalling.remove(&(call, side));
        }
        let Some(keys) = self.by_call.remove(&call) else {
            return;
        };
        for key in keys {
            if let Some(e) = self.streams.remove(&key) {
                for r in e.remotes {
                    if self.by_remote.get(&r) == Some(&key) {
                        self.by_remote.remove(&r);
                    }
                }
            }
            self.release_id(key.1);
        }
    }

    /// Streams in the table (live or lingering).
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Ports held on `side` now.
    pub fn ports_in_use(&self, side: Side) -> usize {
        self.pools
            .iter()
            .filter(|((s, _), _)| *s == side)
            .map(|(_, p)| p.in_use())
            .sum()
    }
}

fn bump(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port().wrapping_add(1))
}

/// The payload types a Meta media description allows: its codecs and telephone-event, and
/// comfort noise (RFC 3389) alongside audio.
pub fn payload_types(m: &codecs::meta::MediaDescription) -> Vec<u8> {
    let mut pts: Vec<u8> = m.codecs.iter().map(|c| c.payload_type).collect();
    if let Some(te) = m.telephone_event {
        pts.push(te.payload_type);
    }
    if m.kind == codecs::meta::MediaKind::Audio {
        pts.push(13);
    }
    pts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    impl MediaTable {
        /// The checks [`MediaTable::receive`] runs on a packet of a stream it found.
        fn check_stream(
            &mut self,
            now: Duration,
            side: Side,
            stream: StreamId,
            src: SocketAddr,
            data: &[u8],
        ) -> Result<Checked, Option<MediaDrop>> {
            let e = self.streams.get_mut(&(side, stream)).unwrap();
            let data = Bytes::copy_from_slice(data);
            let result = e.cell.get().receive(now, &mut self.counters, src, &data);
            result.map(|(c, _)| c)
        }
    }

    /// Refuses the ports in its list, as if another program held them.
    struct Held(Vec<u16>);
    impl Binder for Held {
        fn open(&mut self, _side: Side, rtp: SocketAddr) -> bool {
            !self.0.contains(&rtp.port())
        }
        fn close(&mut self, _side: Side, _rtp: SocketAddr) {}
    }

    fn ip() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    /// `relay_counted` asks whether a peer is known without `relay_ports`' addresses: the two
    /// follow one rule, in every state of the latches and the SDP's address.
    #[test]
    fn relay_counted_counts_what_relay_would_send() {
        let addr = |on: bool, p| on.then(|| SocketAddr::from(([192, 0, 2, 1], p)));
        for bits in 0..8u8 {
            for rtcp in [false, true] {
                let local = SocketAddr::from(([127, 0, 0, 1], 30000));
                let negotiated = addr(bits & 1 != 0, 4000);
                let mut a =
                    MediaStream::new(StreamId(2), local, negotiated, Latching::OUTSIDE, vec![]);
                a.rtp.addr = addr(bits & 2 != 0, 5000);
                a.rtcp.addr = addr(bits & 4 != 0, 5001);
                let mut b = a.clone();
                let sent = b.relay_ports(rtcp).is_some();
                assert_eq!(a.relay_counted(rtcp), sent, "bits {bits}, rtcp {rtcp}");
                assert_eq!(a.counters.relayed, b.counters.relayed);
            }
        }
    }

    #[test]
    fn streams_are_kept_per_side_and_id_up_to_the_highest_id() {
        let mut t = MediaTable::new(
            Box::new(NoSockets),
            false,
            (30000, 30019),
            (31000, 31019),
            (0, 0),
        );
        let top = StreamId(u16::MAX);
        let a = t
            .open(Side::Outside, CallRef(1), top, ip(), vec![], None)
            .unwrap();
        let b = t
            .open(Side::Inside, CallRef(1), top, ip(), vec![], None)
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(t.len(), 2);
        assert_eq!(t.local(Side::Outside, top), Some(a));
        assert_eq!(t.local(Side::Inside, top), Some(b));
        assert_eq!(t.local(Side::Inside, StreamId(7)), None);
        t.end_call(CallRef(1));
        t.forget_call(CallRef(1));
        assert!(t.is_empty());
        assert_eq!(t.local(Side::Outside, top), None);
    }

    #[test]
    fn ports_never_repeat_while_held_even_after_wrap_around() {
        let mut t = MediaTable::new(Box::new(NoSockets), false, (30000, 30019), (0, 0), (0, 0));
        let long: Vec<SocketAddr> = (0..5)
            .map(|i| {
                let s = t.stream_id(Side::Outside).unwrap();
                t.open(Side::Outside, CallRef(1000 + i), s, ip(), vec![], None)
                    .unwrap()
            })
            .collect();
        for n in 0..200u32 {
            let s = t.stream_id(Side::Outside).unwrap();
            let call = CallRef(n * 2);
            let p = t.open(Side::Outside, call, s, ip(), vec![], None).unwrap();
            assert!(!long.contains(&p), "port {p} handed out twice");
            t.end_call(call);
            t.forget_call(call);
        }
        // 10 pairs in the range, 5 held: the other 5 cycle.
        assert_eq!(t.ports_in_use(Side::Outside), 5);
    }

    #[test]
    fn a_port_held_by_another_program_is_skipped() {
        let mut t = MediaTable::new(
            Box::new(Held(vec![30000, 30002])),
            false,
            (30000, 30009),
            (0, 0),
            (0, 0),
        );
        let s = t.stream_id(Side::Outside).unwrap();
        let p = t
            .open(Side::Outside, CallRef(2), s, ip(), vec![], None)
            .unwrap();
        assert_eq!(p.port(), 30004);
        assert_eq!(t.counters.bind_failures, 2);
    }

    /// Records what the table asks of it.
    #[derive(Default)]
    struct Recording {
        prepared: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
        opened: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
    }
    impl Binder for Recording {
        fn open(&mut self, _side: Side, rtp: SocketAddr) -> bool {
            self.opened.lock().unwrap().push(rtp.port());
            true
        }
        fn close(&mut self, _side: Side, _rtp: SocketAddr) {}
        fn prepare(&mut self, side: Side, ip: IpAddr, upcoming: &mut dyn Iterator<Item = u16>) {
            assert_eq!((side, ip), (Side::Outside, super::tests::ip()));
            // Each announcement replaces the one before.
            let mut p = self.prepared.lock().unwrap();
            p.clear();
            p.extend(upcoming);
        }
    }

    #[test]
    fn the_binder_is_told_the_ports_it_is_asked_for_next() {
        let b = Recording::default();
        let (prepared, opened) = (b.prepared.clone(), b.opened.clone());
        let mut t = MediaTable::new(Box::new(b), false, (30000, 31999), (0, 0), (0, 0));
        let mut open = |n: u32| {
            let s = t.stream_id(Side::Outside).unwrap();
            t.open(Side::Outside, CallRef(n), s, ip(), vec![], None)
                .unwrap()
                .port()
        };
        // The first port is bound before anything is announced; then the next ones are.
        assert_eq!(open(0), 30000);
        let told = prepared.lock().unwrap().clone();
        assert_eq!(told.len(), PREPARE_AHEAD);
        assert_eq!(told.first(), Some(&30002));
        // The ports opened next are those announced, in order, and the announcement is
        // renewed before it runs out.
        for n in 1..200 {
            let before = prepared.lock().unwrap().clone();
            let p = open(n);
            assert!(before.contains(&p), "port {p} not announced in {before:?}");
        }
        assert_eq!(opened.lock().unwrap().len(), 200);
        let told = prepared.lock().unwrap().clone();
        let last = *opened.lock().unwrap().last().unwrap();
        // At least half of the last announcement is still ahead.
        let ahead = told.iter().filter(|&&p| p > last).count();
        assert!(ahead >= PREPARE_AHEAD / 2, "{told:?} after {last}");
    }

    #[test]
    fn no_port_refuses_the_stream() {
        let mut t = MediaTable::new(Box::new(NoSockets), false, (30000, 30001), (0, 0), (0, 0));
        let a = t.stream_id(Side::Outside).unwrap();
        let b = t.stream_id(Side::Outside).unwrap();
        assert!(t
            .open(Side::Outside, CallRef(2), a, ip(), vec![], None)
            .is_ok());
        assert_eq!(
            t.open(Side::Outside, CallRef(4), b, ip(), vec![], None),
            Err(Refusal::NoMediaPort)
        );
    }

    #[test]
    fn stream_ids_of_the_halves_differ_in_parity_and_are_reused_last() {
        let mut t = MediaTable::new(Box::new(NoSockets), false, (30000, 30100), (0, 0), (0, 0));
        let a = t.stream_id(Side::Outside).unwrap();
        let b = t.stream_id(Side::Inside).unwrap();
        assert_eq!((a.0 % 2, b.0 % 2), (0, 1));
        t.open(Side::Outside, CallRef(2), a, ip(), vec![], None)
            .unwrap();
        t.forget_call(CallRef(2));
        assert_ne!(t.stream_id(Side::Outside).unwrap(), a);
    }
    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A PCMA RTP packet with `ssrc`.
    fn rtp(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 8, 0, 1, 0, 0, 0, 160];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    /// An RTCP receiver report.
    fn rtcp() -> Vec<u8> {
        vec![0x80, 201, 0, 1, 0, 0, 0, 1]
    }

    /// A stream negotiated at 198.51.100.7:4000, the call's signalling from 203.0.113.9.
    fn stream(mode: LatchMode) -> MediaStream {
        let mut s = MediaStream::new(
            StreamId(2),
            a("192.0.2.1:20000"),
            Some(a("198.51.100.7:4000")),
            Latching {
                mode,
                relatch_idle: ms(2000),
            },
            vec![8],
        );
        s.signalling = Some("203.0.113.9".parse().unwrap());
        s
    }

    fn relay_to(s: &mut MediaStream, rtcp: bool) -> SocketAddr {
        s.relay(Side::Outside, rtcp, Bytes::from_static(&[0x80, 8]))
            .unwrap()
            .flow
            .remote
    }

    #[test]
    fn latches_once_and_drops_other_ports_and_addresses() {
        for mode in [LatchMode::Sdp, LatchMode::Signalling, LatchMode::Any] {
            let mut s = stream(mode);
            let peer = a("198.51.100.7:4000");
            assert_eq!(s.check(ms(0), peer, &rtp(1)), Ok(Checked::Rtp), "{mode:?}");
            // The same IP on another port, another IP: dropped, counted, return media stays.
            for (i, other) in [a("198.51.100.7:4002"), a("198.51.100.66:4000")]
                .into_iter()
                .enumerate()
            {
                assert!(
                    s.check(ms(20 + i as u64), other, &rtp(2)).is_err(),
                    "{mode:?}"
                );
            }
            assert_eq!(s.check(ms(40), peer, &rtp(1)), Ok(Checked::Rtp));
            assert_eq!(s.counters.forwarded, 2);
            assert_eq!(s.counters.dropped_source, 2);
            assert_eq!(s.counters.relatches, 0);
            assert_eq!(s.counters.ssrc_changes, 0);
            assert_eq!(relay_to(&mut s, false), peer);
        }
    }

    #[test]
    fn an_outsider_sending_first_cannot_take_a_strict_stream() {
        let mut s = stream(LatchMode::Sdp);
        let outsider = a("198.51.100.66:4000");
        assert_eq!(
            s.check(ms(0), outsider, &rtp(9)),
            Err(MediaDrop::Source(LatchMode::Sdp))
        );
        // Nor from the negotiated IP on another port.
        assert!(s.check(ms(1), a("198.51.100.7:5000"), &rtp(9)).is_err());
        // Before any packet, return media goes to the negotiated address.
        assert_eq!(relay_to(&mut s, false), a("198.51.100.7:4000"));
        assert_eq!(
            s.check(ms(2), a("198.51.100.7:4000"), &rtp(1)),
            Ok(Checked::Rtp)
        );
    }

    #[test]
    fn re_latches_only_after_the_latched_source_is_idle() {
        let mut s = stream(LatchMode::Signalling);
        let (first, moved) = (a("203.0.113.9:30000"), a("203.0.113.9:31000"));
        assert_eq!(s.check(ms(0), first, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(s.check(ms(1000), first, &rtp(1)), Ok(Checked::Rtp));
        // 1.999 s of silence: not yet.
        assert_eq!(s.check(ms(2999), moved, &rtp(1)), Err(MediaDrop::Latched));
        // Packets that are dropped do not count as activity of the new source, nor of the
        // latched one; 2 s after the last accepted packet the stream re-latches.
        assert_eq!(s.check(ms(3000), moved, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(s.counters.relatches, 1);
        assert_eq!(relay_to(&mut s, false), moved);
        // The old source is now the outsider.
        assert_eq!(s.check(ms(3020), first, &rtp(1)), Err(MediaDrop::Latched));
        // A dropped packet (wrong payload type) from the latched source keeps nothing alive;
        // and a malformed packet from a new source never latches.
        assert_eq!(
            s.check(ms(6000), a("203.0.113.9:32000"), &[0x80]),
            Err(MediaDrop::Malformed)
        );
        assert_eq!(relay_to(&mut s, false), moved);
        assert_eq!(s.counters.dropped_source, 2);
    }

    #[test]
    fn idle_re_latch_still_obeys_the_mode() {
        let mut s = stream(LatchMode::Sdp);
        let peer = a("198.51.100.7:4000");
        assert_eq!(s.check(ms(0), peer, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(
            s.check(ms(60_000), a("198.51.100.66:4000"), &rtp(1)),
            Err(MediaDrop::Source(LatchMode::Sdp))
        );
        assert_eq!(s.check(ms(60_020), peer, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(s.counters.relatches, 0);
    }

    #[test]
    fn signalling_mode_takes_the_nat_address_of_the_signalling() {
        // The SDP names a private address; the media comes from the NAT's public one, where
        // the SIP came from.
        let mut s = stream(LatchMode::Signalling);
        s.negotiated = Some(a("10.99.0.1:4000"));
        let nat = a("203.0.113.9:61000");
        assert_eq!(s.check(ms(0), nat, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(relay_to(&mut s, false), nat);
        // Another host is still refused; a strict stream refuses the NAT address.
        assert_eq!(
            s.check(ms(10_000), a("198.51.100.66:4000"), &rtp(1)),
            Err(MediaDrop::Source(LatchMode::Signalling))
        );
        let mut strict = stream(LatchMode::Sdp);
        strict.negotiated = Some(a("10.99.0.1:4000"));
        assert_eq!(
            strict.check(ms(0), nat, &rtp(1)),
            Err(MediaDrop::Source(LatchMode::Sdp))
        );
    }

    #[test]
    fn any_mode_latches_whoever_sends_first() {
        let mut s = stream(LatchMode::Any);
        let first = a("198.51.100.66:7000");
        assert_eq!(s.check(ms(0), first, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(relay_to(&mut s, false), first);
        assert_eq!(
            s.check(ms(20), a("198.51.100.7:4000"), &rtp(1)),
            Err(MediaDrop::Latched)
        );
        assert_eq!(
            s.check(ms(2020), a("198.51.100.7:4000"), &rtp(1)),
            Ok(Checked::Rtp)
        );
        assert_eq!(s.counters.relatches, 1);
    }

    #[test]
    fn rtcp_latches_on_its_own() {
        let mut s = stream(LatchMode::Sdp);
        let peer = a("198.51.100.7:4000");
        // RTCP from the port above the negotiated RTP port, before any RTP.
        assert_eq!(
            s.check(ms(0), a("198.51.100.7:4001"), &rtcp()),
            Ok(Checked::Rtcp)
        );
        assert_eq!(relay_to(&mut s, true), a("198.51.100.7:4001"));
        // RTCP from elsewhere, or from the RTP port once latched on +1: dropped.
        assert_eq!(
            s.check(ms(10), a("198.51.100.66:4001"), &rtcp()),
            Err(MediaDrop::Latched)
        );
        assert_eq!(s.check(ms(20), peer, &rtcp()), Err(MediaDrop::Latched));
        // RTP latches independently of RTCP.
        assert_eq!(s.check(ms(30), peer, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(s.counters.rtcp_forwarded, 1);
        assert_eq!(s.counters.dropped_source, 2);
        // RTCP's latch outlasts the gaps between reports (5 s): after 6 s of silence, the
        // RTP port (rtcp-mux) cannot take it yet.
        assert_eq!(s.check(ms(6000), peer, &rtcp()), Err(MediaDrop::Latched));
        assert_eq!(
            s.check(ms(15_000), peer, &rtcp()),
            Ok(Checked::Rtcp),
            "after 15 s RTCP may move to the RTP port (rtcp-mux)"
        );
        assert_eq!(s.counters.rtcp_relatches, 1);
    }

    #[test]
    fn rtcp_mux_and_rtcp_following_a_nat_latch() {
        let mut s = stream(LatchMode::Sdp);
        // rtcp-mux: RTCP from the RTP port.
        assert_eq!(
            s.check(ms(0), a("198.51.100.7:4000"), &rtcp()),
            Ok(Checked::Rtcp)
        );
        assert_eq!(relay_to(&mut s, true), a("198.51.100.7:4000"));
        // Before any RTCP came, RTCP goes to the RTP destination's port + 1.
        let mut n = stream(LatchMode::Signalling);
        n.negotiated = Some(a("10.99.0.1:4000"));
        assert_eq!(relay_to(&mut n, true), a("10.99.0.1:4001"));
        assert_eq!(
            n.check(ms(0), a("203.0.113.9:61000"), &rtp(1)),
            Ok(Checked::Rtp)
        );
        assert_eq!(relay_to(&mut n, true), a("203.0.113.9:61001"));
        assert_eq!(
            n.check(ms(5), a("203.0.113.9:61001"), &rtcp()),
            Ok(Checked::Rtcp)
        );
        assert_eq!(relay_to(&mut n, true), a("203.0.113.9:61001"));
    }

    #[test]
    fn rtp_re_latch_frees_rtcp_to_follow() {
        let mut s = stream(LatchMode::Signalling);
        let (rtp_a, rtcp_a) = (a("203.0.113.9:30000"), a("203.0.113.9:30001"));
        let (rtp_b, rtcp_b) = (a("203.0.113.9:40000"), a("203.0.113.9:40001"));
        assert_eq!(s.check(ms(0), rtp_a, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(s.check(ms(1), rtcp_a, &rtcp()), Ok(Checked::Rtcp));
        assert_eq!(s.check(ms(3000), rtp_b, &rtp(1)), Ok(Checked::Rtp));
        assert_eq!(s.check(ms(3001), rtcp_b, &rtcp()), Ok(Checked::Rtcp));
        assert_eq!((s.counters.relatches, s.counters.rtcp_relatches), (1, 0));
    }

    #[test]
    fn a_new_sdp_address_latches_afresh() {
        let mut s = stream(LatchMode::Sdp);
        assert_eq!(
            s.check(ms(0), a("198.51.100.7:4000"), &rtp(1)),
            Ok(Checked::Rtp)
        );
        // Same address again (a session refresh): the latch stays.
        s.set_negotiated(a("198.51.100.7:4000"));
        assert_eq!(relay_to(&mut s, false), a("198.51.100.7:4000"));
        // A re-INVITE moves the media: the new address latches at once.
        s.set_negotiated(a("198.51.100.8:6000"));
        assert_eq!(relay_to(&mut s, false), a("198.51.100.8:6000"));
        assert_eq!(
            s.check(ms(20), a("198.51.100.8:6000"), &rtp(1)),
            Ok(Checked::Rtp)
        );
        assert!(s.check(ms(40), a("198.51.100.7:4000"), &rtp(1)).is_err());
    }

    #[test]
    fn the_table_threads_time_side_modes_signalling_and_totals() {
        let mut t = MediaTable::new(
            Box::new(NoSockets),
            false,
            (30000, 30019),
            (40000, 40019),
            (0, 0),
        );
        t.set_latching(
            Side::Inside,
            Latching {
                mode: LatchMode::Sdp,
                relatch_idle: ms(500),
            },
        );
        let call = CallRef(2);
        let out_id = t.stream_id(Side::Outside).unwrap();
        let in_id = t.stream_id(Side::Inside).unwrap();
        t.set_signalling(Side::Outside, call, "203.0.113.9".parse().unwrap());
        t.open(
            Side::Outside,
            call,
            out_id,
            ip(),
            vec![8],
            Some(a("10.99.0.1:4000")),
        )
        .unwrap();
        t.open(Side::Inside, call, in_id, ip(), vec![8], None)
            .unwrap();
        // Outside (default `signalling`): the NAT address latches.
        let nat = a("203.0.113.9:61000");
        assert_eq!(
            t.check_stream(ms(0), Side::Outside, out_id, nat, &rtp(1)),
            Ok(Checked::Rtp)
        );
        assert_eq!(
            t.check_stream(
                ms(10),
                Side::Outside,
                out_id,
                a("203.0.113.9:61002"),
                &rtp(1)
            ),
            Err(Some(MediaDrop::Latched))
        );
        // Inside (`sdp`): nothing before the answer gave an address; the signalling address
        // set for the outside does not count on the inside.
        let pbx = a("127.0.0.9:5000");
        assert_eq!(
            t.check_stream(ms(0), Side::Inside, in_id, pbx, &rtp(1)),
            Err(Some(MediaDrop::Source(LatchMode::Sdp)))
        );
        t.set_remote(Side::Inside, in_id, pbx);
        assert_eq!(
            t.check_stream(ms(1), Side::Inside, in_id, pbx, &rtp(1)),
            Ok(Checked::Rtp)
        );
        assert_eq!(t.counters.dropped_source, 2);
        // The inside's shorter idle time applies to the inside only.
        t.set_signalling(Side::Inside, call, "127.0.0.9".parse().unwrap());
        assert_eq!(
            t.check_stream(ms(600), Side::Inside, in_id, a("127.0.0.9:5002"), &rtp(1)),
            Err(Some(MediaDrop::Source(LatchMode::Sdp)))
        );
        assert_eq!(
            t.check_stream(
                ms(600),
                Side::Outside,
                out_id,
                a("203.0.113.9:61002"),
                &rtp(1)
            ),
            Err(Some(MediaDrop::Latched))
        );
        assert_eq!(
            t.check_stream(
                ms(2000),
                Side::Outside,
                out_id,
                a("203.0.113.9:61002"),
                &rtp(1)
            ),
            Ok(Checked::Rtp)
        );
        assert_eq!(t.counters.relatches, 1);
        assert_eq!(t.counters.dropped_source, 4);
        // Every other drop reason is counted table-wide as it happens, before the call ends.
        let pbx_rtp = |pt: u8| {
            let mut p = rtp(2);
            p[1] = pt;
            p
        };
        assert_eq!(
            t.check_stream(ms(2001), Side::Inside, in_id, pbx, &[0x80, 8]),
            Err(Some(MediaDrop::Malformed))
        );
        assert!(matches!(
            t.check_stream(ms(2002), Side::Inside, in_id, pbx, &pbx_rtp(0)),
            Err(Some(MediaDrop::PayloadType(_)))
        ));
        assert_eq!(
            (
                t.counters.dropped_malformed,
                t.counters.dropped_payload_type,
                t.counters.dropped_size
            ),
            (1, 1, 0)
        );
        let sum = t.end_call(call);
        assert_eq!(
            (sum.relatches, sum.dropped_source, sum.forwarded),
            (1, 2, 2)
        );
        t.forget_call(call);
        assert!(t.signalling.is_empty());
    }

    fn te() -> codecs::meta::TelephoneEvent {
        codecs::meta::TelephoneEvent {
            payload_type: 101,
            clock_rate: 8000,
        }
    }

    fn event(seq: u16, ts: u32, ev: u8, end: bool) -> Vec<u8> {
        crate::engine::dtmf::build_packet(101, false, seq, ts, 7, ev, end, 800)
    }

    #[test]
    fn a_converting_stream_reads_events_and_plays_meta_dtmf() {
        let mut t = MediaTable::new(Box::new(NoSockets), false, (30000, 30099), (0, 0), (0, 0));
        let peer = a("198.51.100.7:4000");
        let s = t.stream_id(Side::Outside).unwrap();
        let call = CallRef(9);
        t.open(Side::Outside, call, s, ip(), vec![0], Some(peer))
            .unwrap();
        // Not converting: telephone-event is no negotiated payload type.
        assert_eq!(
            t.check_stream(ms(0), Side::Outside, s, peer, &event(1, 160, 1, true)),
            Err(Some(MediaDrop::PayloadType(101)))
        );
        assert_eq!(t.send_dtmf(ms(0), Side::Outside, s, 1, 100), None);
        // Without conversion (both parties negotiated it) nothing changes.
        t.set_telephone_event(ms(0), Side::Outside, s, Some(te()), false);
        assert_eq!(t.converts_dtmf(Side::Outside, s), None);
        assert_eq!(t.send_dtmf(ms(0), Side::Outside, s, 1, 100), None);
        t.set_telephone_event(ms(0), Side::Outside, s, Some(te()), true);
        assert_eq!(t.converts_dtmf(Side::Outside, s), Some(te()));
        // A narrowed answer does not drop the converted payload type.
        t.set_payload_types(Side::Outside, s, vec![0]);
        t.set_telephone_event(ms(0), Side::Outside, s, Some(te()), true);
        let got: Vec<_> = [(2, false), (3, true), (4, true), (5, true)]
            .into_iter()
            .map(|(seq, end)| {
                t.check_stream(ms(20), Side::Outside, s, peer, &event(seq, 320, 5, end))
            })
            .collect();
        assert_eq!(
            got,
            [
                Ok(Checked::Dtmf(None)),
                Ok(Checked::Dtmf(Some((5, 100)))),
                Ok(Checked::Dtmf(None)),
                Ok(Checked::Dtmf(None)),
            ]
        );
        assert_eq!(
            t.check_stream(ms(40), Side::Outside, s, peer, &event(6, 900, 16, true)),
            Err(Some(MediaDrop::NotDtmf(16)))
        );
        assert_eq!((t.counters.dtmf_events, t.counters.dtmf_packets), (1, 4));
        assert_eq!(t.counters.dropped_malformed, 1);
        // Meta DTMF is played on timers: 7 packets for 100 ms.
        assert_eq!(t.send_dtmf(ms(100), Side::Outside, s, 11, 100), Some(true));
        let mut out = VecDeque::new();
        while let Some(at) = t.poll_timeout() {
            t.handle_timeout(at, &mut out);
        }
        assert_eq!(out.len(), 7);
        assert!(out
            .iter()
            .all(|x| x.flow.remote == peer && x.protocol == super::super::Protocol::Rtp));
        // An ended call plays nothing more.
        assert_eq!(t.send_dtmf(ms(500), Side::Outside, s, 1, 100), Some(true));
        let sum = t.end_call(call);
        assert_eq!(
            (sum.dtmf_events, sum.dtmf_packets, sum.dtmf_sent),
            (1, 4, 2)
        );
        let mut out = VecDeque::new();
        while let Some(at) = t.poll_timeout() {
            t.handle_timeout(at, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(t.send_dtmf(ms(600), Side::Outside, s, 1, 100), Some(false));
    }
}
