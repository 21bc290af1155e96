//! TCP stream reassembly: per connection and direction, segments become an in-order,
//! de-duplicated byte stream. Out-of-order data is buffered; retransmitted and overlapping
//! bytes are delivered once (first copy wins); a hole that will not fill is reported as a gap
//! and the stream goes on after it. A capture that starts mid-stream starts at the first seen
//! segment.
//!
//! A hole is given up on when the receiver has acknowledged data past it (the capture missed
//! what the receiver got) and something follows it, when the out-of-order buffer is full, or at
//! the end of the capture.
//!
//! Never panics. Memory is bounded: [`MAX_TCP_CONNECTIONS`] connections (the least recently
//! active eighth is evicted when full), and per direction [`MAX_TCP_OOO_BYTES`] in
//! [`MAX_TCP_OOO_SEGMENTS`] buffered segments.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::{Close, ConnId, Stats};

/// Most connections tracked at once.
pub const MAX_TCP_CONNECTIONS: usize = 16384;
/// Most out-of-order bytes buffered per direction; past it the first hole becomes a gap.
pub const MAX_TCP_OOO_BYTES: usize = 1 << 20;
/// Most out-of-order segments buffered per direction.
pub const MAX_TCP_OOO_SEGMENTS: usize = 1024;
/// An acknowledgement further than this past the delivered data is not believed.
pub const MAX_TCP_ACK_GAP: u32 = 16 << 20;

/// The parts of a TCP segment reassembly needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    /// The acknowledgement number, when the ACK flag is set.
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

/// What reassembly produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    Data {
        conn: ConnId,
        src: SocketAddr,
        dst: SocketAddr,
        data: Vec<u8>,
    },
    Gap {
        conn: ConnId,
        src: SocketAddr,
        dst: SocketAddr,
        missing: u32,
    },
    Closed {
        conn: ConnId,
        src: SocketAddr,
        dst: SocketAddr,
        how: Close,
    },
}

#[derive(Debug)]
struct DirState {
    /// Sequence number of stream offset 0.
    base: u32,
    /// Stream offset of the next byte to deliver.
    delivered: u64,
    /// Highest stream offset the peer acknowledged.
    peer_acked: u64,
    ooo: BTreeMap<u64, Vec<u8>>,
    ooo_bytes: usize,
    /// Stream offset of the FIN, once seen.
    fin_at: Option<u64>,
    closed: bool,
}

impl DirState {
    fn new(base: u32) -> Self {
        DirState {
            base,
            delivered: 0,
            peer_acked: 0,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            fin_at: None,
            closed: false,
        }
    }

    /// The stream offset of `seq`, taking the nearest one to the delivered point (so streams
    /// longer than 4 GiB work); negative before the stream start.
    fn offset_of(&self, seq: u32) -> i64 {
        // Truncation intended: sequence space is modulo 2^32.
        let next = self.base.wrapping_add(self.delivered as u32);
        let diff = i64::from(seq.wrapping_sub(next) as i32);
        i64::try_from(self.delivered)
            .unwrap_or(i64::MAX)
            .saturating_add(diff)
    }
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    /// Endpoints, in the order of the key.
    addrs: [SocketAddr; 2],
    dirs: [Option<DirState>; 2],
    last_seen: Duration,
    reset: bool,
}

impl Conn {
    fn finished(&self) -> bool {
        self.reset
            || self
                .dirs
                .iter()
                .all(|d| d.as_ref().is_some_and(|d| d.closed))
    }
}

/// Emits into `out` for one direction.
struct Sink<'o> {
    out: &'o mut Vec<Out>,
    conn: ConnId,
    src: SocketAddr,
    dst: SocketAddr,
}

impl Sink<'_> {
    fn data(&mut self, bytes: &[u8], stats: &mut Stats) {
        if bytes.is_empty() {
            return;
        }
        stats.tcp_stream_bytes += bytes.len() as u64;
        if let Some(Out::Data {
            conn, src, data, ..
        }) = self.out.last_mut()
        {
            if *conn == self.conn && *src == self.src {
                data.extend_from_slice(bytes);
                return;
            }
        }
        self.out.push(Out::Data {
            conn: self.conn,
            src: self.src,
            dst: self.dst,
            data: bytes.to_vec(),
        });
    }

    fn gap(&mut self, missing: u64, stats: &mut Stats) {
        stats.tcp_gaps += 1;
        stats.tcp_gap_bytes += missing;
        self.out.push(Out::Gap {
            conn: self.conn,
            src: self.src,
            dst: self.dst,
            missing: u32::try_from(missing).unwrap_or(u32::MAX),
        });
    }

    fn closed(&mut self, how: Close) {
        self.out.push(Out::Closed {
            conn: self.conn,
            src: self.src,
            dst: self.dst,
            how,
        });
    }
}

/// Delivers buffered data that is now in order.
fn drain(st: &mut DirState, sink: &mut Sink<'_>, stats: &mut Stats) {
    while let Some(entry) = st.ooo.first_entry() {
        let start = *entry.key();
        if start > st.delivered {
            break;
        }
        let data = entry.remove();
        st.ooo_bytes = st.ooo_bytes.saturating_sub(data.len());
        let skip = usize::try_from(st.delivered - start).unwrap_or(usize::MAX);
        if let Some(fresh) = data.get(skip..) {
            sink.data(fresh, stats);
            st.delivered += fresh.len() as u64;
        }
    }
}

/// Gives up on the hole before `to`: reports it as a gap and delivers what follows.
fn skip_to(st: &mut DirState, to: u64, sink: &mut Sink<'_>, stats: &mut Stats) {
    if to > st.delivered {
        sink.gap(to - st.delivered, stats);
        st.delivered = to;
    }
    drain(st, sink, stats);
}

/// Applies the hole policy, then closes the direction if its FIN is reached.
fn settle(st: &mut DirState, sink: &mut Sink<'_>, stats: &mut Stats) {
    drain(st, sink, stats);
    loop {
        let next = st
            .ooo
            .keys()
            .next()
            .copied()
            .or(st.fin_at)
            .filter(|n| *n > st.delivered);
        let Some(next) = next else { break };
        let over_limit = st.ooo_bytes > MAX_TCP_OOO_BYTES || st.ooo.len() > MAX_TCP_OOO_SEGMENTS;
        if over_limit || st.peer_acked >= next {
            skip_to(st, next, sink, stats);
        } else {
            break;
        }
    }
    if !st.closed && st.fin_at.is_some_and(|f| st.delivered >= f) {
        st.closed = true;
        sink.closed(Close::Fin);
    }
}

/// Gives up on every hole (end of capture, eviction).
fn flush(st: &mut DirState, sink: &mut Sink<'_>, stats: &mut Stats) {
    while let Some(next) = st.ooo.keys().next().copied() {
        skip_to(st, next, sink, stats);
    }
}

/// All TCP connections of a capture.
#[derive(Debug, Default)]
pub(crate) struct Tcp {
    conns: HashMap<(SocketAddr, SocketAddr), Conn>,
    next_id: u64,
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Tcp {
    /// Feeds one segment; what it makes deliverable is appended to `out`.
    pub fn handle(
        &mut self,
        now: Duration,
        seg: &Segment<'_>,
        stats: &mut Stats,
        out: &mut Vec<Out>,
    ) {
        let k = key(seg.src, seg.dst);
        let d = usize::from(seg.src != k.0);
        let opens = seg.syn && seg.ack.is_none();
        let replace = self.conns.get(&k).is_some_and(|c| {
            opens
                && (c.finished()
                    || c.dirs
                        .get(d)
                        .and_then(|s| s.as_ref())
                        .is_some_and(|s| s.base != seg.seq.wrapping_add(1)))
        });
        if replace {
            if let Some(old) = self.conns.remove(&k) {
                Self::retire(old, Close::Evicted, true, stats, out);
            }
        }
        if !self.conns.contains_key(&k) {
            // Only a SYN or data starts tracking: stray ACKs, FINs and RSTs cost no memory.
            if !seg.syn && seg.payload.is_empty() {
                return;
            }
            if self.conns.len() >= MAX_TCP_CONNECTIONS {
                self.evict(stats, out);
            }
            self.next_id += 1;
            stats.tcp_connections += 1;
            self.conns.insert(
                k,
                Conn {
                    id: ConnId(self.next_id),
                    addrs: [k.0, k.1],
                    dirs: [None, None],
                    last_seen: now,
                    reset: false,
                },
            );
        }
        let Some(conn) = self.conns.get_mut(&k) else {
            return;
        };
        conn.last_seen = now;
        let id = conn.id;

        // The acknowledgement speaks for the other direction.
        if let (Some(ack), Some(Some(st))) = (seg.ack, conn.dirs.get_mut(1 - d)) {
            if !st.closed {
                let acked = st.offset_of(ack);
                let acked = u64::try_from(acked).unwrap_or(0);
                if acked > st.peer_acked
                    && acked - st.delivered.min(acked) <= u64::from(MAX_TCP_ACK_GAP)
                {
                    // The ACK of a FIN counts the FIN's sequence number too.
                    st.peer_acked = st.fin_at.map_or(acked, |f| acked.min(f));
                    let mut sink = Sink {
                        out,
                        conn: id,
                        src: seg.dst,
                        dst: seg.src,
                    };
                    settle(st, &mut sink, stats);
                }
            }
        }

        if seg.rst {
            if conn.reset {
                return;
            }
            conn.reset = true;
            let addrs = conn.addrs;
            for (i, st) in conn.dirs.iter_mut().enumerate() {
                if let Some(st) = st.as_mut() {
                    let (src, dst) = if i == 0 {
                        (addrs[0], addrs[1])
                    } else {
                        (addrs[1], addrs[0])
                    };
                    flush(
                        st,
                        &mut Sink {
                            out,
                            conn: id,
                            src,
                            dst,
                        },
                        stats,
                    );
                    st.closed = true;
                }
            }
            Sink {
                out,
                conn: id,
                src: seg.src,
                dst: seg.dst,
            }
            .closed(Close::Reset);
            return;
        }
        if conn.reset {
            if !seg.payload.is_empty() {
                stats.tcp_retransmissions += 1;
            }
            return;
        }

        let Some(this) = conn.dirs.get_mut(d) else {
            return;
        };
        let data_seq = if seg.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        let st = match this {
            Some(st) => st,
            None if seg.syn || !seg.payload.is_empty() || seg.fin => {
                this.insert(DirState::new(data_seq))
            }
            None => return,
        };
        if st.closed {
            if !seg.payload.is_empty() {
                stats.tcp_retransmissions += 1;
            }
            return;
        }
        let mut sink = Sink {
            out,
            conn: id,
            src: seg.src,
            dst: seg.dst,
        };
        let start = st.offset_of(data_seq);
        let len = seg.payload.len() as i64;
        let end = start.saturating_add(len);
        if seg.fin && st.fin_at.is_none() && end >= 0 {
            st.fin_at = Some(end.unsigned_abs());
        }
        let delivered = i64::try_from(st.delivered).unwrap_or(i64::MAX);
        if len > 0 {
            if end <= delivered {
                stats.tcp_retransmissions += 1;
            } else {
                let skip = if start < delivered {
                    stats.tcp_retransmissions += 1;
                    usize::try_from(delivered - start).unwrap_or(usize::MAX)
                } else {
                    0
                };
                let fresh = seg.payload.get(skip..).unwrap_or_default();
                let at = start.max(delivered).unsigned_abs();
                if at == st.delivered {
                    sink.data(fresh, stats);
                    st.delivered += fresh.len() as u64;
                } else {
                    stats.tcp_out_of_order += 1;
                    match st.ooo.get_mut(&at) {
                        Some(held) if held.len() >= fresh.len() => stats.tcp_retransmissions += 1,
                        Some(held) => {
                            stats.tcp_retransmissions += 1;
                            st.ooo_bytes = st.ooo_bytes.saturating_sub(held.len()) + fresh.len();
                            *held = fresh.to_vec();
                        }
                        None => {
                            st.ooo_bytes += fresh.len();
                            st.ooo.insert(at, fresh.to_vec());
                        }
                    }
                }
            }
        }
        settle(st, &mut sink, stats);
    }

    /// Ends every connection's holes at the end of the capture, in connection order.
    pub fn finish(&mut self, stats: &mut Stats, out: &mut Vec<Out>) {
        let mut conns: Vec<&mut Conn> = self.conns.values_mut().collect();
        conns.sort_by_key(|c| c.id);
        for conn in conns {
            let (id, addrs) = (conn.id, conn.addrs);
            for (i, st) in conn.dirs.iter_mut().enumerate() {
                if let Some(st) = st.as_mut() {
                    let (src, dst) = if i == 0 {
                        (addrs[0], addrs[1])
                    } else {
                        (addrs[1], addrs[0])
                    };
                    flush(
                        st,
                        &mut Sink {
                            out,
                            conn: id,
                            src,
                            dst,
                        },
                        stats,
                    );
                }
            }
        }
    }

    /// Makes room: retires the least recently active eighth of the table.
    fn evict(&mut self, stats: &mut Stats, out: &mut Vec<Out>) {
        let mut ages: Vec<(Duration, ConnId, (SocketAddr, SocketAddr))> = self
            .conns
            .iter()
            .map(|(k, c)| (c.last_seen, c.id, *k))
            .collect();
        ages.sort_unstable();
        let n = (MAX_TCP_CONNECTIONS / 8).max(1);
        for (_, _, k) in ages.into_iter().take(n) {
            if let Some(conn) = self.conns.remove(&k) {
                stats.tcp_evicted += 1;
                Self::retire(conn, Close::Evicted, true, stats, out);
            }
        }
    }

    /// Flushes a connection leaving the table; announces it unless it had already ended.
    fn retire(mut conn: Conn, how: Close, announce: bool, stats: &mut Stats, out: &mut Vec<Out>) {
        let finished = conn.finished();
        let (id, addrs) = (conn.id, conn.addrs);
        for (i, st) in conn.dirs.iter_mut().enumerate() {
            if let Some(st) = st.as_mut() {
                let (src, dst) = if i == 0 {
                    (addrs[0], addrs[1])
                } else {
                    (addrs[1], addrs[0])
                };
                flush(
                    st,
                    &mut Sink {
                        out,
                        conn: id,
                        src,
                        dst,
                    },
                    stats,
                );
            }
        }
        if announce && !finished {
            Sink {
                out,
                conn: id,
                src: addrs[0],
                dst: addrs[1],
            }
            .closed(how);
        }
    }
}
