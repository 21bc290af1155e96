//! Packet captures in and out for `sgw replay`: reads pcap/pcapng into UDP datagrams and
//! reassembled TCP byte streams, stamped with capture time; writes synthesized UDP/TCP packets.
//!
//! Never panics on any input and keeps memory bounded: every buffer, table and count has a
//! named `MAX_*` constant. Never touches the clock or the network: time is the capture's.
//!
//! ```no_run
//! use sgw::capture::{CaptureReader, EventKind};
//! let mut reader = CaptureReader::open("call.pcap")?;
//! for event in reader.by_ref() {
//!     let event = event?; // a CaptureError names the byte offset where the file went bad
//!     match event.kind {
//!         EventKind::Datagram { src, dst, payload } => { /* handle_datagram(event.time, ..) */ }
//!         EventKind::StreamData { conn, data, .. } => { /* handle_stream(event.time, conn, ..) */ }
//!         _ => {}
//!     }
//! }
//! println!("{:?}", reader.stats());
//! # Ok::<(), sgw::capture::CaptureError>(())
//! ```

mod file;
mod ip;
mod link;
mod pool;
mod reader;
mod tcp;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

pub use file::{MAX_BLOCK_LEN, MAX_FRAME_LEN, MAX_PCAPNG_INTERFACES};
pub use ip::{
    MAX_IPV6_EXT_HEADERS, MAX_IP_FRAGMENTS_PER_DATAGRAM, MAX_IP_REASSEMBLED_LEN,
    MAX_IP_REASSEMBLIES, MAX_IP_REASSEMBLY_TIME,
};
pub use link::MAX_VLAN_TAGS;
pub use reader::CaptureReader;
pub use tcp::{MAX_TCP_ACK_GAP, MAX_TCP_CONNECTIONS, MAX_TCP_OOO_BYTES, MAX_TCP_OOO_SEGMENTS};
pub use writer::{CaptureWriter, OutLink, WriteError, MAX_TCP_SEGMENT, MAX_UDP_PAYLOAD};

/// One thing that happened in the capture, in capture order.
///
/// Every frame yields at least one event (an [`EventKind::Other`] when it carried nothing to
/// deliver), so a consumer sees each frame's time; one frame may yield several (a TCP segment
/// that fills a hole delivers the buffered data after it, a FIN also closes the direction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// 1-based frame number, as Wireshark numbers them. Events flushed at the end of the
    /// capture carry the last frame's number.
    pub frame: u64,
    /// Capture timestamp, since the UNIX epoch.
    pub time: Duration,
    pub kind: EventKind,
}

/// What an [`Event`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A whole UDP payload (after IP reassembly).
    Datagram {
        src: SocketAddr,
        dst: SocketAddr,
        payload: Bytes,
    },
    /// A UDP payload like [`EventKind::Datagram`]'s that looks like RTP or RTCP, lent rather
    /// than shared: it sits at `at` in the buffer given to [`CaptureReader::lend_into`]. Only
    /// while lending.
    LentDatagram {
        src: SocketAddr,
        dst: SocketAddr,
        at: std::ops::Range<usize>,
    },
    /// In-order, de-duplicated bytes of the TCP direction `src -> dst`.
    StreamData {
        conn: ConnId,
        src: SocketAddr,
        dst: SocketAddr,
        data: Bytes,
    },
    /// `missing` bytes of direction `src -> dst` were never seen (capture loss); the stream
    /// goes on after them.
    StreamGap {
        conn: ConnId,
        src: SocketAddr,
        dst: SocketAddr,
        missing: u32,
    },
    /// Direction `src -> dst` ended (for [`Close::Fin`]) or the whole connection did
    /// ([`Close::Reset`] from `src`, [`Close::Evicted`] by the table bound).
    StreamClosed {
        conn: ConnId,
        src: SocketAddr,
        dst: SocketAddr,
        how: Close,
    },
    /// The frame delivered nothing; why.
    Other(Skip),
}

/// How a TCP stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Close {
    /// FIN reached in sequence: this direction only.
    Fin,
    /// RST: the whole connection, both directions.
    Reset,
    /// Dropped from the connection table to bound memory ([`MAX_TCP_CONNECTIONS`]).
    Evicted,
}

/// Why a frame delivered nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Skip {
    /// A link type this reader does not decode (the pcap LINKTYPE_ value).
    UnknownLink(u32),
    /// Not IPv4 or IPv6 (ARP, LLDP, 802.3 length frames, ...).
    NonIp,
    /// Cut short by the capture's snap length.
    Truncated,
    /// Headers that do not parse.
    Malformed,
    /// An IP protocol other than UDP and TCP (ICMP, ESP, ...).
    IpProtocol(u8),
    /// An IP fragment; the datagram is not complete yet.
    FragmentPending,
    /// An IP fragment that was discarded (overlap, bogus length, too many).
    FragmentDropped,
    /// A TCP segment with nothing new in order: a pure ACK, a retransmission, or data buffered
    /// until a hole before it fills.
    TcpNoData,
}

/// A TCP connection, numbered from 1 in order of first appearance. A 4-tuple reused after a
/// close gets a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp#{}", self.0)
    }
}

/// Running counters, updated as events are pulled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Frames read (Wireshark's frame count).
    pub packets: u64,
    /// Captured bytes of those frames.
    pub bytes: u64,
    /// Frames on a link type this reader does not decode.
    pub unknown_link: u64,
    /// Frames whose network layer is not IP.
    pub non_ip: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    /// IP packets cut short by the snap length.
    pub truncated: u64,
    /// Frames whose link, IP, UDP or TCP header does not parse.
    pub malformed: u64,
    /// IP packets of another protocol than UDP or TCP.
    pub other_ip_protocol: u64,
    /// IP fragments seen.
    pub fragments: u64,
    /// Datagrams rebuilt from fragments.
    pub fragments_reassembled: u64,
    /// Fragments discarded: overlapping, bogus, too many, or timed out unfinished.
    pub fragments_dropped: u64,
    /// Exact duplicates of a fragment already held (ignored).
    pub fragments_duplicate: u64,
    pub udp_datagrams: u64,
    pub tcp_segments: u64,
    /// TCP connections tracked.
    pub tcp_connections: u64,
    /// TCP connections dropped from a full table.
    pub tcp_evicted: u64,
    /// Segments that arrived ahead of a hole and were buffered.
    pub tcp_out_of_order: u64,
    /// Segments that carried bytes already delivered (whole or partly).
    pub tcp_retransmissions: u64,
    /// Holes given up on, and the bytes they missed.
    pub tcp_gaps: u64,
    pub tcp_gap_bytes: u64,
    /// Bytes delivered as stream data.
    pub tcp_stream_bytes: u64,
}

/// Why reading a capture failed. Every variant but [`CaptureError::UnknownFormat`] names the
/// byte offset in the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("cannot read at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("not a pcap or pcapng file (starts with {magic:02x?})")]
    UnknownFormat { magic: [u8; 4] },
    /// The file ends inside the record or block that starts at `offset`: everything before
    /// `offset` was read (`head -c offset` is a valid capture).
    #[error("truncated at byte {offset}")]
    Truncated { offset: u64 },
    /// The record or block that starts at `offset` is invalid.
    #[error("corrupt at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: &'static str },
}

impl CaptureError {
    /// The byte offset in the file where reading failed, if the error has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CaptureError::Io { offset, .. }
            | CaptureError::Truncated { offset }
            | CaptureError::Corrupt { offset, .. } => Some(*offset),
            CaptureError::UnknownFormat { .. } => None,
        }
    }
}
