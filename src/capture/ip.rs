//! IPv4 and IPv6: header parsing, IPv6 extension header walking, and fragment reassembly
//! (IPv4 by identification, RFC 791 section 3.2; IPv6 Fragment header, RFC 8200 section 4.5).
//!
//! Never panics. Memory is bounded: at most [`MAX_IP_REASSEMBLIES`] datagrams pending, each at
//! most [`MAX_IP_REASSEMBLED_LEN`] bytes in [`MAX_IP_FRAGMENTS_PER_DATAGRAM`] pieces, dropped
//! after [`MAX_IP_REASSEMBLY_TIME`] of capture time. Overlapping fragments discard the whole
//! datagram (RFC 5722; Linux does the same for IPv4); exact duplicates are ignored.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};

use super::Stats;

/// Most datagrams being reassembled at once; the oldest is dropped to make room.
pub const MAX_IP_REASSEMBLIES: usize = 1024;
/// Largest reassembled payload (the IPv4 total length limit; IPv6 without jumbograms).
pub const MAX_IP_REASSEMBLED_LEN: usize = 65535;
/// Most fragments held for one datagram.
pub const MAX_IP_FRAGMENTS_PER_DATAGRAM: usize = 128;
/// Capture time after the first fragment when an unfinished datagram is dropped (Linux's
/// `ipfrag_time` default).
pub const MAX_IP_REASSEMBLY_TIME: Duration = Duration::from_secs(30);
/// Most IPv6 extension headers walked before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 16;

// IPv6 next-header values (IANA "Assigned Internet Protocol Numbers").
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_AUTH: u8 = 51;
const NH_DEST_OPTS: u8 = 60;
const NH_MOBILITY: u8 = 135;
const NH_HIP: u8 = 139;
const NH_SHIM6: u8 = 140;

/// An IP packet's transport payload, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: Cow<'a, [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IpOutcome<'a> {
    Packet(IpPacket<'a>),
    /// A fragment was stored; the datagram is not complete.
    FragmentPending,
    /// A fragment was discarded (and maybe the datagram with it).
    FragmentDropped,
    /// The capture cut the packet short.
    Truncated,
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FragKey {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        id: u16,
        proto: u8,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: u32,
    },
}

#[derive(Debug)]
struct Pending {
    first_seen: Duration,
    /// Arrival order, so eviction among equal times is deterministic.
    serial: u64,
    /// (offset, bytes), unordered.
    pieces: Vec<(usize, Vec<u8>)>,
    /// Known once the last fragment (MF clear) arrives.
    total: Option<usize>,
    /// IPv6: the next header from the offset-0 fragment.
    next_header: Option<u8>,
}

/// IP layer state: the fragment reassembly table.
#[derive(Debug, Default)]
pub(crate) struct Ip {
    pending: HashMap<FragKey, Pending>,
    serial: u64,
}

struct Fragment<'a> {
    key: FragKey,
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// IPv6 next header of this fragment (meaningful on offset 0 only).
    next_header: u8,
}

enum Added {
    Pending,
    Dropped,
    Complete(Vec<u8>, Option<u8>),
}

impl Ip {
    /// Parses an IPv4 packet, reassembling fragments.
    pub fn handle_v4<'a>(
        &mut self,
        now: Duration,
        data: &'a [u8],
        stats: &mut Stats,
    ) -> IpOutcome<'a> {
        let Ok(h) = Ipv4HeaderSlice::from_slice(data) else {
            // from_slice fails on a bad version or IHL, or a header longer than the data.
            return if data.first().is_some_and(|b| b >> 4 == 4 && b & 0xF >= 5) {
                IpOutcome::Truncated
            } else {
                IpOutcome::Malformed
            };
        };
        let header_len = h.slice().len();
        // A total length of 0 is what TCP segmentation offload captures show: use the frame.
        let total = match usize::from(h.total_len()) {
            0 => data.len(),
            t => t,
        };
        if total < header_len {
            return IpOutcome::Malformed;
        }
        let Some(payload) = data.get(header_len..total) else {
            return IpOutcome::Truncated;
        };
        let (src, dst, proto) = (h.source_addr(), h.destination_addr(), h.protocol().0);
        if !h.is_fragmenting_payload() {
            return IpOutcome::Packet(IpPacket {
                src: src.into(),
                dst: dst.into(),
                proto,
                payload: Cow::Borrowed(payload),
            });
        }
        stats.fragments += 1;
        let frag = Fragment {
            key: FragKey::V4 {
                src,
                dst,
                id: h.identification(),
                proto,
            },
            offset: usize::from(h.fragments_offset().value()) * 8,
            more: h.more_fragments(),
            data: payload,
            next_header: proto,
        };
        match self.add(now, frag, stats) {
            Added::Pending => IpOutcome::FragmentPending,
            Added::Dropped => IpOutcome::FragmentDropped,
            Added::Complete(whole, _) => IpOutcome::Packet(IpPacket {
                src: src.into(),
                dst: dst.into(),
                proto,
                payload: Cow::Owned(whole),
            }),
        }
    }

    /// Parses an IPv6 packet, walking extension headers and reassembling fragments.
    pub fn handle_v6<'a>(
        &mut self,
        now: Duration,
        data: &'a [u8],
        stats: &mut Stats,
    ) -> IpOutcome<'a> {
        let Ok(h) = Ipv6HeaderSlice::from_slice(data) else {
            return if data.first().is_some_and(|b| b >> 4 == 6) {
                IpOutcome::Truncated
            } else {
                IpOutcome::Malformed
            };
        };
        // Payload length 0: a jumbogram or an offloaded segment; use the frame.
        let end = match usize::from(h.payload_length()) {
            0 => data.len(),
            n => 40 + n,
        };
        let Some(payload) = data.get(40..end) else {
            return IpOutcome::Truncated;
        };
        let (src, dst) = (h.source_addr(), h.destination_addr());
        let (proto, rest) = match walk_ext(h.next_header().0, payload) {
            Walk::Upper(proto, rest) => (proto, rest),
            Walk::Malformed => return IpOutcome::Malformed,
            Walk::Fragment {
                next_header,
                offset,
                more,
                id,
                rest,
            } => {
                if offset == 0 && !more {
                    // An atomic fragment (RFC 6946): no reassembly needed.
                    return match walk_ext(next_header, rest) {
                        Walk::Upper(proto, rest) => IpOutcome::Packet(IpPacket {
                            src: src.into(),
                            dst: dst.into(),
                            proto,
                            payload: Cow::Borrowed(rest),
                        }),
                        _ => IpOutcome::Malformed,
                    };
                }
                stats.fragments += 1;
                let frag = Fragment {
                    key: FragKey::V6 { src, dst, id },
                    offset,
                    more,
                    data: rest,
                    next_header,
                };
                return match self.add(now, frag, stats) {
                    Added::Pending => IpOutcome::FragmentPending,
                    Added::Dropped => IpOutcome::FragmentDropped,
                    Added::Complete(whole, next_header) => {
                        // The fragmentable part may start with more extension headers.
                        match walk_ext(next_header.unwrap_or(NH_FRAGMENT), &whole) {
                            Walk::Upper(proto, rest) => {
                                let skip = whole.len().saturating_sub(rest.len());
                                let mut whole = whole;
                                whole.drain(..skip);
                                IpOutcome::Packet(IpPacket {
                                    src: src.into(),
                                    dst: dst.into(),
                                    proto,
                                    payload: Cow::Owned(whole),
                                })
                            }
                            _ => IpOutcome::Malformed,
                        }
                    }
                };
            }
        };
        IpOutcome::Packet(IpPacket {
            src: src.into(),
            dst: dst.into(),
            proto,
            payload: Cow::Borrowed(rest),
        })
    }

    fn add(&mut self, now: Duration, frag: Fragment<'_>, stats: &mut Stats) -> Added {
        self.expire(now, stats);
        let len = frag.data.len();
        let Some(end) = frag.offset.checked_add(len) else {
            return self.drop_key(&frag.key, stats);
        };
        // Every fragment but the last carries a multiple of 8 bytes (RFC 8200 section 4.5).
        if end > MAX_IP_REASSEMBLED_LEN || (frag.more && (len == 0 || !len.is_multiple_of(8))) {
            return self.drop_key(&frag.key, stats);
        }
        if !self.pending.contains_key(&frag.key) && self.pending.len() >= MAX_IP_REASSEMBLIES {
            self.evict_oldest(stats);
        }
        self.serial += 1;
        let serial = self.serial;
        let entry = self
            .pending
            .entry(frag.key.clone())
            .or_insert_with(|| Pending {
                first_seen: now,
                serial,
                pieces: Vec::new(),
                total: None,
                next_header: None,
            });
        // A last fragment fixes the total; anything past it, or a second different total, is
        // bogus. Overlaps are bogus too unless they are exact duplicates.
        let bogus_total = match (frag.more, entry.total) {
            (false, Some(t)) => t != end,
            (false, None) => entry.pieces.iter().any(|(o, d)| o + d.len() > end),
            (true, Some(t)) => end > t,
            (true, None) => false,
        };
        let mut duplicate = false;
        let mut overlap = false;
        for (o, d) in &entry.pieces {
            if frag.offset < o + d.len() && *o < end {
                if *o == frag.offset && d.as_slice() == frag.data {
                    duplicate = true;
                } else {
                    overlap = true;
                }
            }
        }
        if bogus_total
            || overlap
            || (!duplicate && entry.pieces.len() >= MAX_IP_FRAGMENTS_PER_DATAGRAM)
        {
            return self.drop_key(&frag.key, stats);
        }
        if duplicate {
            stats.fragments_duplicate += 1;
            return Added::Pending;
        }
        if !frag.more {
            entry.total = Some(end);
        }
        if frag.offset == 0 {
            entry.next_header = Some(frag.next_header);
        }
        entry.pieces.push((frag.offset, frag.data.to_vec()));
        let Some(total) = entry.total else {
            return Added::Pending;
        };
        // Pieces never overlap, so they cover [0, total) exactly when their sizes add up.
        let covered: usize = entry.pieces.iter().map(|(_, d)| d.len()).sum();
        if covered != total {
            return Added::Pending;
        }
        let Some(mut done) = self.pending.remove(&frag.key) else {
            return Added::Pending;
        };
        done.pieces.sort_by_key(|(o, _)| *o);
        let mut whole = Vec::with_capacity(total);
        for (_, d) in done.pieces {
            whole.extend_from_slice(&d);
        }
        stats.fragments_reassembled += 1;
        Added::Complete(whole, done.next_header)
    }

    fn drop_key(&mut self, key: &FragKey, stats: &mut Stats) -> Added {
        let held = self
            .pending
            .remove(key)
            .map_or(0, |p| p.pieces.len() as u64);
        stats.fragments_dropped += held + 1;
        Added::Dropped
    }

    fn evict_oldest(&mut self, stats: &mut Stats) {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, p)| (p.first_seen, p.serial))
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            let held = self.pending.remove(&k).map_or(0, |p| p.pieces.len() as u64);
            stats.fragments_dropped += held;
        }
    }

    fn expire(&mut self, now: Duration, stats: &mut Stats) {
        let mut dropped = 0u64;
        self.pending.retain(|_, p| {
            let keep = now.saturating_sub(p.first_seen) <= MAX_IP_REASSEMBLY_TIME;
            if !keep {
                dropped += p.pieces.len() as u64;
            }
            keep
        });
        stats.fragments_dropped += dropped;
    }
}

enum Walk<'a> {
    Upper(u8, &'a [u8]),
    Fragment {
        next_header: u8,
        offset: usize,
        more: bool,
        id: u32,
        rest: &'a [u8],
    },
    Malformed,
}

/// Skips IPv6 extension headers (RFC 8200 section 4) up to the upper-layer header or a
/// Fragment header.
fn walk_ext(mut next: u8, mut data: &[u8]) -> Walk<'_> {
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS | NH_MOBILITY | NH_HIP | NH_SHIM6 => {
                data.get(1).map(|l| (usize::from(*l) + 1) * 8)
            }
            // AH length is in 4-octet units minus 2 (RFC 4302 section 2.2).
            NH_AUTH => data.get(1).map(|l| (usize::from(*l) + 2) * 4),
            NH_FRAGMENT => {
                let (Some(&nh), Some(off), Some(id), Some(rest)) =
                    (data.first(), data.get(2..4), data.get(4..8), data.get(8..))
                else {
                    return Walk::Malformed;
                };
                let off = u16::from_be_bytes([
                    off.first().copied().unwrap_or(0),
                    off.get(1).copied().unwrap_or(0),
                ]);
                let id = id.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
                return Walk::Fragment {
                    next_header: nh,
                    offset: usize::from(off >> 3) * 8,
                    more: off & 1 == 1,
                    id,
                    rest,
                };
            }
            upper => return Walk::Upper(upper, data),
        };
        let (Some(len), Some(&nh)) = (len, data.first()) else {
            return Walk::Malformed;
        };
        let Some(rest) = data.get(len..) else {
            return Walk::Malformed;
        };
        next = nh;
        data = rest;
    }
    Walk::Malformed
}
