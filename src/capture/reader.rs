//! The capture reader: frames from the file, through link, IP (with reassembly) and UDP/TCP
//! (with stream reassembly), out as [`Event`]s in capture order, pulled one at a time.
//!
//! Never panics on any input; memory is bounded by the `MAX_*` constants of each layer. On a
//! truncated or corrupt file every event of the frames before the failure is yielded first,
//! then the error, then nothing.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use etherparse::TcpHeaderSlice;

use super::file::Container;
use super::ip::{Ip, IpOutcome, IpPacket};
use super::link::{self, Link};
use super::pool::ChunkPool;
use super::tcp::{Out, Segment, Tcp};
use super::{CaptureError, Event, EventKind, Skip, Stats};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const READ_BUFFER: usize = 1 << 16;

/// Reads a pcap or pcapng capture as [`Event`]s. See the [module docs](super) for an example.
///
/// Call order: [`CaptureReader::next_event`] (or iterate) until `None`, or
/// [`CaptureReader::read_into`] in batches until it returns `Ok(false)` or an error (the two may
/// be mixed); [`CaptureReader::stats`] and [`CaptureReader::offset`] at any time (for
/// progress). After `Some(Err(..))` the reader yields `None`. With
/// [`CaptureReader::lend_into`], RTP and RTCP payloads are lent rather than shared.
#[derive(Debug)]
pub struct CaptureReader<R = BufReader<File>> {
    /// Frames are read in place from the container's block buffer.
    container: Container<R>,
    layers: Layers,
    state: State,
    /// Events of the last frame not yet pulled by [`CaptureReader::next_event`].
    ready: VecDeque<Event>,
}

/// Everything after the file container: link, IP and TCP state, counters, and the events
/// waiting to be pulled.
#[derive(Debug, Default)]
struct Layers {
    /// Datagram payloads are copied once, from the file's block buffer into pooled chunks.
    pool: ChunkPool,
    /// While lending, RTP and RTCP payloads are copied here instead.
    lent: Option<Vec<u8>>,
    ip: Ip,
    tcp: Tcp,
    stats: Stats,
    /// Where the events of the frame being read go: emptied into `ready` by `next_event`, or
    /// the caller's own vector during [`CaptureReader::read_into`].
    queue: Vec<Event>,
    tcp_out: Vec<Out>,
    frame: u64,
    last_time: Duration,
}

#[derive(Debug)]
enum State {
    Running,
    /// The file failed; the error is yielded once the queue is empty.
    Failed(Option<CaptureError>),
    Done,
}

impl CaptureReader<BufReader<File>> {
    /// Opens a capture file and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Io { offset: 0, source })?;
        Self::new(BufReader::with_capacity(READ_BUFFER, file))
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the header of a capture from any byte source.
    pub fn new(src: R) -> Result<Self, CaptureError> {
        Ok(CaptureReader {
            container: Container::new(src)?,
            layers: Layers::default(),
            state: State::Running,
            ready: VecDeque::new(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.layers.stats
    }

    /// Lends from now on: a payload that looks like RTP or RTCP (replay drops those right after
    /// their checks) is appended to `buf` and its event is an [`EventKind::LentDatagram`]
    /// naming its place there, instead of a [`EventKind::Datagram`] sharing a chunk. A shared
    /// payload costs two atomic operations on its chunk's count (one to carve it, one to drop
    /// it); a lent one, none. The caller swaps the buffer out between events
    /// ([`CaptureReader::take_lent`]) once it has taken the events that name it.
    pub fn lend_into(&mut self, buf: Vec<u8>) {
        self.layers.lent = Some(buf);
    }

    /// The buffer lent payloads go to (empty when not lending).
    pub fn lent(&self) -> &[u8] {
        self.layers.lent.as_deref().unwrap_or_default()
    }

    /// The buffer the lent payloads of the events so far went to; `fresh` takes its place.
    /// Every lent event has been returned by then: a frame that lends yields that one event.
    pub fn take_lent(&mut self, fresh: Vec<u8>) -> Vec<u8> {
        debug_assert!(
            !self
                .ready
                .iter()
                .any(|e| matches!(e.kind, EventKind::LentDatagram { .. })),
            "a lent event still queued"
        );
        self.layers.lent.replace(fresh).unwrap_or_default()
    }

    /// Counters of the payload chunk pool.
    #[cfg(test)]
    pub(crate) fn pool_stats(&self) -> super::pool::PoolStats {
        self.layers.pool.stats()
    }

    /// Bytes of the file consumed so far (for a progress bar).
    pub fn offset(&self) -> u64 {
        self.container.offset()
    }

    /// The next event; `None` at the end of the capture or after an error.
    #[inline]
    pub fn next_event(&mut self) -> Option<Result<Event, CaptureError>> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Some(Ok(ev));
            }
            match &mut self.state {
                State::Done => return None,
                State::Failed(err) => {
                    let err = err.take();
                    self.state = State::Done;
                    return err.map(Err);
                }
                State::Running => {}
            }
            self.read_frame();
            self.ready.extend(self.layers.queue.drain(..));
        }
    }

    /// Appends the next events to `out`, the ones [`CaptureReader::next_event`] would yield:
    /// at least `max` of them (the events of a frame are never split) unless the capture ends
    /// first. `Ok(true)` when more may follow, `Ok(false)` at the end, the error that ended
    /// reading after the events before it. Events go straight into `out`: a bulk reader (replay)
    /// moves each once.
    pub fn read_into(&mut self, out: &mut Vec<Event>, max: usize) -> Result<bool, CaptureError> {
        let until = out.len().saturating_add(max.max(1));
        out.extend(self.ready.drain(..));
        std::mem::swap(&mut self.layers.queue, out);
        while self.layers.queue.len() < until && matches!(self.state, State::Running) {
            self.read_frame();
        }
        std::mem::swap(&mut self.layers.queue, out);
        match &mut self.state {
            State::Running => Ok(true),
            State::Done => Ok(false),
            State::Failed(err) => {
                let err = err.take();
                self.state = State::Done;
                err.map_or(Ok(false), Err)
            }
        }
    }

    /// Reads one frame (its events go to the layers' queue), or ends reading.
    fn read_frame(&mut self) {
        match self.container.next_frame() {
            Ok(Some(meta)) => {
                let data = self.container.frame(&meta);
                let l = &mut self.layers;
                l.frame += 1;
                l.last_time = meta.time;
                l.handle_frame(meta.time, meta.linktype, data);
            }
            Ok(None) => {
                self.layers.finish();
                self.state = State::Done;
            }
            Err(e) => {
                self.layers.finish();
                self.state = State::Failed(Some(e));
            }
        }
    }
}

impl Layers {
    /// Gives up on every TCP hole: what was buffered after them is still delivered.
    fn finish(&mut self) {
        self.tcp.finish(&mut self.stats, &mut self.tcp_out);
        self.push_tcp_out(self.last_time);
    }

    fn push(&mut self, time: Duration, kind: EventKind) {
        self.queue.push(Event {
            frame: self.frame,
            time,
            kind,
        });
    }

    fn skip(&mut self, time: Duration, why: Skip) {
        self.push(time, EventKind::Other(why));
    }

    fn handle_frame(&mut self, time: Duration, linktype: u32, data: &[u8]) {
        self.stats.packets += 1;
        self.stats.bytes += data.len() as u64;
        let outcome = match link::decap(linktype, data) {
            Link::Ipv4(p) => {
                self.stats.ipv4 += 1;
                self.ip.handle_v4(time, p, &mut self.stats)
            }
            Link::Ipv6(p) => {
                self.stats.ipv6 += 1;
                self.ip.handle_v6(time, p, &mut self.stats)
            }
            Link::NonIp => {
                self.stats.non_ip += 1;
                return self.skip(time, Skip::NonIp);
            }
            Link::Unknown => {
                self.stats.unknown_link += 1;
                return self.skip(time, Skip::UnknownLink(linktype));
            }
            Link::Malformed => {
                self.stats.malformed += 1;
                return self.skip(time, Skip::Malformed);
            }
        };
        match outcome {
            IpOutcome::Packet(p) => self.handle_transport(time, &p),
            IpOutcome::FragmentPending => self.skip(time, Skip::FragmentPending),
            IpOutcome::FragmentDropped => self.skip(time, Skip::FragmentDropped),
            IpOutcome::Truncated => {
                self.stats.truncated += 1;
                self.skip(time, Skip::Truncated);
            }
            IpOutcome::Malformed => {
                self.stats.malformed += 1;
                self.skip(time, Skip::Malformed);
            }
        }
    }

    fn handle_transport(&mut self, time: Duration, p: &IpPacket<'_>) {
        let payload: &[u8] = &p.payload;
        match p.proto {
            IPPROTO_UDP => {
                let (Some(sport), Some(dport), Some(len)) =
                    (be16(payload, 0), be16(payload, 2), be16(payload, 4))
                else {
                    self.stats.malformed += 1;
                    return self.skip(time, Skip::Malformed);
                };
                // Length 0 only in IPv6 jumbograms (RFC 2675): the IP length rules.
                let end = if len == 0 {
                    payload.len()
                } else {
                    usize::from(len)
                };
                let Some(body) = payload.get(8..end) else {
                    self.stats.malformed += 1;
                    return self.skip(time, Skip::Malformed);
                };
                self.stats.udp_datagrams += 1;
                let (src, dst) = (SocketAddr::new(p.src, sport), SocketAddr::new(p.dst, dport));
                let kind = match &mut self.lent {
                    Some(buf) if short_lived(body) => {
                        let start = buf.len();
                        buf.extend_from_slice(body);
                        EventKind::LentDatagram {
                            src,
                            dst,
                            at: start..buf.len(),
                        }
                    }
                    _ => {
                        let payload = if short_lived(body) {
                            self.pool.copy(body)
                        } else {
                            Bytes::copy_from_slice(body)
                        };
                        EventKind::Datagram { src, dst, payload }
                    }
                };
                self.push(time, kind);
            }
            IPPROTO_TCP => {
                let Ok(h) = TcpHeaderSlice::from_slice(payload) else {
                    self.stats.malformed += 1;
                    return self.skip(time, Skip::Malformed);
                };
                self.stats.tcp_segments += 1;
                let seg = Segment {
                    src: SocketAddr::new(p.src, h.source_port()),
                    dst: SocketAddr::new(p.dst, h.destination_port()),
                    seq: h.sequence_number(),
                    ack: h.ack().then(|| h.acknowledgment_number()),
                    syn: h.syn(),
                    fin: h.fin(),
                    rst: h.rst(),
                    payload: payload.get(h.slice().len()..).unwrap_or_default(),
                };
                self.tcp
                    .handle(time, &seg, &mut self.stats, &mut self.tcp_out);
                if self.tcp_out.is_empty() {
                    self.skip(time, Skip::TcpNoData);
                } else {
                    self.push_tcp_out(time);
                }
            }
            other => {
                self.stats.other_ip_protocol += 1;
                self.skip(time, Skip::IpProtocol(other));
            }
        }
    }

    fn push_tcp_out(&mut self, time: Duration) {
        let outs = std::mem::take(&mut self.tcp_out);
        for out in outs {
            let kind = match out {
                Out::Data {
                    conn,
                    src,
                    dst,
                    data,
                } => EventKind::StreamData {
                    conn,
                    src,
                    dst,
                    data: Bytes::from(data),
                },
                Out::Gap {
                    conn,
                    src,
                    dst,
                    missing,
                } => EventKind::StreamGap {
                    conn,
                    src,
                    dst,
                    missing,
                },
                Out::Closed {
                    conn,
                    src,
                    dst,
                    how,
                } => EventKind::StreamClosed {
                    conn,
                    src,
                    dst,
                    how,
                },
            };
            self.push(time, kind);
        }
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Event, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event()
    }
}

impl<R: Read> std::iter::FusedIterator for CaptureReader<R> {}

/// Whether a datagram looks like RTP or RTCP (version 2 in its first two bits): a consumer
/// such as replay drops those right after their checks, so they are lent while lending and go
/// to the chunk pool otherwise. Anything else (SIP, RAS, ...)
/// may be kept by the engine for a call's life (transactions, dialogs) and gets an allocation
/// of its own rather than pinning a whole chunk (without this, a quarter of the chunks of the
/// 200 MB benchmark capture were pinned by SIP messages).
fn short_lived(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b >> 6 == 2)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
