//! The media table: every RTP stream of every call on both sides, their ports and tunnel stream
//! ids from tracked free lists, and the per-packet checks of RTP/RTCP: source, version, payload
//! type, SSRC, size (DESIGN: media).
//!
//! Ports and stream ids are handed out first-in first-out from free lists: a value is never
//! handed out while a call holds it, and a released one goes to the back, so it is reused as
//! late as possible. Media sockets are opened through the driver's [`Binder`] when a port is
//! taken; a port another program holds is skipped and the next one tried.

use super::calls::Refusal;
use super::{Flow, Side, Transmit};
use bytes::Bytes;
use codecs::meta::{CallRef, StreamId};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Largest RTP/RTCP packet relayed.
pub const MAX_MEDIA_PACKET: usize = 1500;

/// Per-stream counters, summed per call in the call record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaCounters {
    /// RTP packets from this side's peer that passed the checks and went over the tunnel.
    pub forwarded: u64,
    /// RTP/RTCP packets from the other half sent on to this side's peer.
    pub relayed: u64,
    pub rtcp_forwarded: u64,
    pub dropped_source: u64,
    pub dropped_malformed: u64,
    pub dropped_payload_type: u64,
    pub dropped_size: u64,
    pub ssrc_changes: u64,
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
        self.ssrc_changes += o.ssrc_changes;
    }
}

/// One RTP stream of a call on one side of the gateway.
#[derive(Debug, Clone)]
pub struct MediaStream {
    pub stream: StreamId,
    /// Our RTP address (RTCP is the next port).
    pub local: SocketAddr,
    /// The peer's RTP address as negotiated; learnt from the first packet when latching.
    pub remote: Option<SocketAddr>,
    /// Payload types negotiated for this stream (codecs and telephone-event).
    pub payload_types: Vec<u8>,
    pub ssrc: Option<u32>,
    pub counters: MediaCounters,
}

/// Why a media packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaDrop {
    Source,
    Malformed,
    PayloadType(u8),
    Size,
}

impl MediaDrop {
    pub fn reason(self) -> String {
        match self {
            MediaDrop::Source => "packet from a source other than the negotiated peer".to_owned(),
            MediaDrop::Malformed => "not a valid RTP/RTCP packet".to_owned(),
            MediaDrop::PayloadType(pt) => format!("payload type {pt} not negotiated"),
            MediaDrop::Size => format!("larger than {MAX_MEDIA_PACKET} bytes"),
        }
    }
}

/// RTCP packet types 200-204 sit where RTP payload types 72-76 would be with the marker bit
/// set (RFC 5761 section 4).
pub fn is_rtcp(data: &[u8]) -> bool {
    matches!(data.get(1), Some(200..=211))
}

impl MediaStream {
    /// The transmit that relays a packet from the other half to this stream's peer, from our
    /// RTP port (RTCP: both ports + 1, RFC 3550 section 11); `None` before the peer is known.
    pub fn relay(
        &mut self,
        side: super::Side,
        rtcp: bool,
        data: bytes::Bytes,
    ) -> Option<super::Transmit> {
        let remote = self.remote?;
        self.counters.relayed += 1;
        let bump = |a: SocketAddr| SocketAddr::new(a.ip(), a.port().wrapping_add(1));
        let (local, remote) = if rtcp {
            (bump(self.local), bump(remote))
        } else {
            (self.local, remote)
        };
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

    /// Checks one packet from `src`. On success returns whether it is RTCP.
    pub fn check(&mut self, src: SocketAddr, data: &[u8]) -> Result<bool, MediaDrop> {
        let result = self.check_inner(src, data);
        match result {
            Ok(true) => self.counters.rtcp_forwarded += 1,
            Ok(false) => self.counters.forwarded += 1,
            Err(MediaDrop::Source) => self.counters.dropped_source += 1,
            Err(MediaDrop::Malformed) => self.counters.dropped_malformed += 1,
            Err(MediaDrop::PayloadType(_)) => self.counters.dropped_payload_type += 1,
            Err(MediaDrop::Size) => self.counters.dropped_size += 1,
        }
        result
    }

    fn check_inner(&mut self, src: SocketAddr, data: &[u8]) -> Result<bool, MediaDrop> {
        if data.len() > MAX_MEDIA_PACKET {
            return Err(MediaDrop::Size);
        }
        let rtcp = is_rtcp(data);
        match self.remote {
            // Symmetric RTP: the first packet from the negotiated address, or from any port of
            // the negotiated IP, latches the stream (NATed peers change ports).
            Some(r) if r.ip() != src.ip() => return Err(MediaDrop::Source),
            Some(r) if !rtcp && r != src => self.remote = Some(src),
            None => self.remote = Some(src),
            _ => {}
        }
        if rtcp {
            let ok = data.len() >= 8 && data.first().is_some_and(|b| b >> 6 == 2);
            return if ok {
                Ok(true)
            } else {
                Err(MediaDrop::Malformed)
            };
        }
        let pkt = codecs::rtp::Packet::new_checked(data).map_err(|_| MediaDrop::Malformed)?;
        let pt = pkt.payload_type();
        if !self.payload_types.is_empty() && !self.payload_types.contains(&pt) {
            return Err(MediaDrop::PayloadType(pt));
        }
        let ssrc = pkt.ssrc();
        if self.ssrc.is_some_and(|s| s != ssrc) {
            self.counters.ssrc_changes += 1;
        }
        self.ssrc = Some(ssrc);
        Ok(false)
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

/// Even RTP ports of a range (RTCP on the odd port above), first-in first-out.
#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    in_use: FxHashSet<u16>,
}

impl PortPool {
    /// Every even port of `low..=high` whose RTCP port is also in the range.
    pub fn new((low, high): (u16, u16)) -> Self {
        let low = low.max(1024);
        let first = low + (low & 1);
        let free = (u32::from(first)..u32::from(high))
            .step_by(2)
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        PortPool {
            free,
            in_use: FxHashSet::default(),
        }
    }

    pub fn allocate(&mut self) -> Option<u16> {
        let p = self.free.pop_front()?;
        self.in_use.insert(p);
        Some(p)
    }

    /// Returns a port to the back of the list; a port not handed out is ignored.
    pub fn release(&mut self, port: u16) {
        if self.in_use.remove(&port) {
            self.free.push_back(port);
        }
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

/// Tunnel stream ids of one parity (GW2 even, GW1 odd), first-in first-out.
#[derive(Debug, Clone)]
struct IdPool {
    free: VecDeque<u16>,
    in_use: FxHashSet<u16>,
}

impl IdPool {
    fn new(parity: u16) -> Self {
        // Zero never names a stream.
        let first = if parity == 0 { 2 } else { 1 };
        IdPool {
            free: (first..=u16::MAX).step_by(2).collect(),
            in_use: FxHashSet::default(),
        }
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
}

#[derive(Debug)]
struct Entry {
    call: CallRef,
    stream: MediaStream,
    /// The call ended: the port is released and packets are refused.
    ended: bool,
    /// Replay: the keys this stream put into `by_remote`.
    remotes: Vec<SocketAddr>,
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
    streams: FxHashMap<(Side, StreamId), Entry>,
    by_local: FxHashMap<SocketAddr, (Side, StreamId)>,
    by_remote: HashMap<SocketAddr, (Side, StreamId)>,
    by_call: FxHashMap<CallRef, Vec<(Side, StreamId)>>,
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
            streams: FxHashMap::default(),
            by_local: FxHashMap::default(),
            by_remote: HashMap::new(),
            by_call: FxHashMap::default(),
            counters: MediaTableCounters::default(),
        }
    }

    /// Replaces the binder (the live driver installs its own when it takes the engine).
    pub fn set_binder(&mut self, binder: Box<dyn Binder>) {
        self.binder = binder;
    }

    /// A fresh tunnel stream id for a call that arrived on `side` (GW2 even, GW1 odd).
    pub fn stream_id(&mut self, side: Side) -> Option<StreamId> {
        let pool = self.ids.get_mut(usize::from(side == Side::Inside))?;
        let id = pool.free.pop_front()?;
        pool.in_use.insert(id);
        Some(StreamId(id))
    }

    fn release_id(&mut self, id: StreamId) {
        for pool in &mut self.ids {
            if pool.in_use.remove(&id.0) {
                pool.free.push_back(id.0);
            }
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
            return Ok(e.stream.local);
        }
        let range = self.range(side, ip);
        let pool = self
            .pools
            .entry((side, ip))
            .or_insert_with(|| PortPool::new(range));
        let mut local = None;
        for _ in 0..MAX_BIND_ATTEMPTS {
            let Some(port) = pool.allocate() else { break };
            let addr = SocketAddr::new(ip, port);
            if self.binder.open(side, addr) {
                local = Some(addr);
                break;
            }
            // Held by another program: back of the list, tried again much later.
            self.counters.bind_failures += 1;
            pool.release(port);
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
        self.streams.insert(
            (side, stream),
            Entry {
                call,
                stream: MediaStream {
                    stream,
                    local,
                    remote,
                    payload_types,
                    ssrc: None,
                    counters: MediaCounters::default(),
                },
                ended: false,
                remotes,
            },
        );
        Ok(local)
    }

    pub fn local(&self, side: Side, stream: StreamId) -> Option<SocketAddr> {
        self.streams.get(&(side, stream)).map(|e| e.stream.local)
    }

    /// The peer's RTP address from SDP (an answer, a re-INVITE).
    pub fn set_remote(&mut self, side: Side, stream: StreamId, remote: SocketAddr) {
        if let Some(e) = self.streams.get_mut(&(side, stream)) {
            e.stream.remote = Some(remote);
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
                e.stream.payload_types = pts;
            }
        }
    }

    /// The stream a datagram on `side` belongs to: by the gateway's port (live), else by the
    /// peer's address (replay; RTCP from the port above the peer's RTP port).
    pub fn find(&self, side: Side, flow: &Flow, rtcp: bool) -> Option<(StreamId, CallRef)> {
        let key = self.by_local.get(&flow.local).or_else(|| {
            if !self.replay {
                return None;
            }
            self.by_remote.get(&flow.remote).or_else(|| {
                let below = SocketAddr::new(flow.remote.ip(), flow.remote.port().wrapping_sub(1));
                rtcp.then(|| self.by_remote.get(&below)).flatten()
            })
        })?;
        if key.0 != side {
            return None;
        }
        self.streams.get(key).map(|e| (key.1, e.call))
    }

    /// Checks a packet from `src` on a stream; `Ok(rtcp)` when it may be forwarded. A packet
    /// for an ended call is refused with `None`.
    pub fn check(
        &mut self,
        side: Side,
        stream: StreamId,
        src: SocketAddr,
        data: &[u8],
    ) -> Result<bool, Option<MediaDrop>> {
        match self.streams.get_mut(&(side, stream)) {
            Some(e) if !e.ended => e.stream.check(src, data).map_err(Some),
            _ => {
                self.counters.unknown_stream += 1;
                Err(None)
            }
        }
    }

    /// A packet from the other half for `stream`, sent on to this side's peer.
    pub fn relay(
        &mut self,
        side: Side,
        stream: StreamId,
        rtcp: bool,
        data: Bytes,
    ) -> Option<Transmit> {
        match self.streams.get_mut(&(side, stream)) {
            Some(e) if !e.ended => e.stream.relay(side, rtcp, data),
            _ => {
                self.counters.unknown_stream += 1;
                None
            }
        }
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
            if (key.0 == Side::Outside) == has_outside {
                sum.add(&e.stream.counters);
            }
            if std::mem::replace(&mut e.ended, true) {
                continue;
            }
            let local = e.stream.local;
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
}
