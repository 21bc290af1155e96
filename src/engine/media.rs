//! Media streams of a call on one side, and the per-packet checks of RTP/RTCP: source, version,
//! payload type, SSRC, size (DESIGN: media).

use codecs::meta::StreamId;
use std::net::SocketAddr;

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

/// Hands out even RTP ports (RTCP on the odd port above) from a range, cycling.
#[derive(Debug, Clone)]
pub struct PortPool {
    low: u16,
    high: u16,
    next: u16,
}

impl PortPool {
    pub fn new((low, high): (u16, u16)) -> Self {
        let low = low.max(1024) & !1;
        let high = high.max(low + 2);
        PortPool {
            low,
            high,
            next: low,
        }
    }

    pub fn allocate(&mut self) -> u16 {
        let port = self.next;
        self.next = self.next.saturating_add(2);
        if self.next >= self.high {
            self.next = self.low;
        }
        port
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
