//! The media path of one half, off the engine's task and across the cores (issue 11).
//!
//! A call with media holds two RTP/RTCP pairs per half, each socket carrying one packet per
//! 20 ms. A half's sockets are shared out over its media workers: one task per thread of the
//! runtime, each waiting on an epoll instance of its own (mio) that the runtime's reactor
//! watches. A socket costs its descriptor and a table entry, not a runtime registration or a
//! task.
//!
//! Workers are tasks, not threads of their own: a checked batch wakes the tunnel's media writer
//! on the worker's own thread (the runtime runs a task just woken there next), so no parked
//! thread is woken between the check and the TLS write. The first version ran dedicated
//! threads, and that futex wake added tens of µs to every packet at low load.
//!
//! The engine still owns every stream: it opens it, negotiates it, ends it and writes its call
//! record. What it shares with the workers is the stream's [`Forwarding`] (latches, payload
//! types, SRTP keys, counters), behind a lock each stream has to itself
//! ([`crate::engine::media::Binder::publish`]). A worker checks a packet with exactly the
//! engine's code ([`Forwarding::receive`]) and, when it passes, hands it straight to the
//! tunnel's media writer; the tunnel's reader relays a packet from the other half with
//! [`Forwarding::relay`] and sends it from the stream's socket itself. No packet of an
//! established stream waits for signalling.
//!
//! What the engine alone can do goes to it: a telephone-event read into a DTMF digit becomes
//! Meta DTMF there; and while a source is blocked, a tap (HEP, recording) is on, or every
//! packet is reported, every packet goes to the engine as before ([`Shared::set_slow`]).
//! Verdicts and counters reach the engine's stats when the driver collects them
//! ([`MediaPlane::take_counts`]).
//!
//! Each readable socket is read until it is empty, at most [`READ_BURST`] datagrams before the
//! other readable ones of its worker get their turn; what is left is read first in the next
//! round, which does not wait for the reactor (a worker yields to the runtime's other tasks
//! between rounds). Datagrams are read into 64 KiB blocks that their packets share (one
//! allocation per block, not per packet).

use crate::engine::media::{
    is_rtcp, Checked, Forwarding, SharedForwarding, WorkerCounts, MAX_MEDIA_PACKET,
};
use crate::engine::{Flow, Side, Transport};
use crate::live::metrics::{Histogram, TRANSIT_BUCKETS};
use bytes::{Bytes, BytesMut};
use codecs::meta::{CallRef, StreamId};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Datagrams one socket reads per turn before the other readable sockets get theirs.
pub const READ_BURST: usize = 16;

/// Events a worker takes from its epoll instance per round (a round is at most this many
/// turns of [`READ_BURST`] before the worker yields).
const EVENTS: usize = 256;

/// Most workers per half.
const MAX_WORKERS: usize = 8;

/// Bytes of a block that datagrams are read into (see the module docs).
const BLOCK: usize = 64 * 1024;

/// Media frames for the tunnel, in order: stream, RTCP flag, packet.
pub type MediaBatch = Vec<(StreamId, bool, Bytes)>;

/// What a worker hands the engine's task.
#[derive(Debug)]
pub enum ToEngine {
    /// A datagram the engine handles itself (see the module docs).
    Datagram { side: Side, flow: Flow, data: Bytes },
    /// A telephone-event packet read into a DTMF digit, for Meta DTMF.
    Dtmf {
        side: Side,
        call: CallRef,
        event: u8,
        duration_ms: u16,
    },
}

/// Hands the engine's task a [`ToEngine`]; the future waits while its queue is full and gives
/// `false` once it stopped.
pub type EngineSink =
    Box<dyn Fn(ToEngine) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What the workers and the tunnel's reader counted since the driver last collected.
#[derive(Debug, Default)]
pub struct PlaneCounts {
    /// For the engine's stats.
    pub engine: WorkerCounts,
    pub tunnel_media_sent: u64,
    pub tunnel_media_received: u64,
    /// Packets sent to peers: `[side][rtcp]`, outside first.
    pub sent: [[u64; 2]; 2],
    /// Datagrams not sent (a full socket buffer, a full tunnel queue, no tunnel).
    pub send_failures: u64,
    /// Tunnel frame read to UDP send, seconds (none yet: `None`).
    pub transit: Option<Histogram>,
}

impl PlaneCounts {
    fn add(&mut self, o: &PlaneCounts) {
        self.engine.add(&o.engine);
        self.tunnel_media_sent += o.tunnel_media_sent;
        self.tunnel_media_received += o.tunnel_media_received;
        for (a, b) in self.sent.iter_mut().flatten().zip(o.sent.iter().flatten()) {
            *a += b;
        }
        self.send_failures += o.send_failures;
        if let Some(t) = &o.transit {
            self.transit
                .get_or_insert_with(|| Histogram::new(TRANSIT_BUCKETS))
                .merge(t);
        }
    }

    fn sent(&mut self, side: Side, rtcp: bool) -> Option<&mut u64> {
        self.sent
            .get_mut(usize::from(side == Side::Inside))?
            .get_mut(usize::from(rtcp))
    }
}

/// One stream as the workers and the tunnel's reader serve it.
struct Route {
    side: Side,
    stream: StreamId,
    call: CallRef,
    /// The engine's RTP address of the stream (RTCP: the port above).
    local: SocketAddr,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    forwarding: SharedForwarding,
    /// RTP, RTCP: in its worker's list of sockets to read (at most once, however often epoll
    /// reports it). Only that worker touches them.
    listed: [AtomicBool; 2],
}

impl Route {
    fn listed(&self, rtcp: bool) -> &AtomicBool {
        let [rtp, rtcp_flag] = &self.listed;
        if rtcp {
            rtcp_flag
        } else {
            rtp
        }
    }
}

/// What the driver, the workers and the tunnel's reader share.
pub struct Shared {
    /// Engine time zero.
    base: Instant,
    /// Every packet goes to the engine (see the module docs).
    slow: AtomicBool,
    /// The media writer of the tunnel that is up.
    tunnel: Mutex<Option<mpsc::Sender<MediaBatch>>>,
    to_engine: EngineSink,
    by_stream: RwLock<FxHashMap<StreamId, Arc<Route>>>,
    counts: Mutex<PlaneCounts>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn now(&self) -> Duration {
        self.base.elapsed()
    }

    /// Whether every packet goes to the engine from now on.
    pub fn set_slow(&self, slow: bool) {
        self.slow.store(slow, Ordering::Relaxed);
    }

    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }

    /// Relays the media frames of one tunnel read, read at `at`, to the peers of their streams
    /// (see the module docs); they come back when the engine has to relay them.
    pub fn relay_from_tunnel(&self, packets: MediaBatch, at: Instant) -> Option<MediaBatch> {
        if self.is_slow() {
            return Some(packets);
        }
        let mut c = PlaneCounts::default();
        {
            let routes = self
                .by_stream
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for (stream, rtcp, data) in packets {
                c.tunnel_media_received += 1;
                let Some(route) = routes.get(&stream) else {
                    // As the engine counts a frame for no stream of its own.
                    c.engine.table.unknown_stream += 1;
                    continue;
                };
                let t = lock(&route.forwarding).relay(&mut c.engine.table, route.side, rtcp, data);
                let Some(t) = t else { continue };
                let socket = if rtcp { &route.rtcp } else { &route.rtp };
                if socket.send_to(&t.payload, t.flow.remote).is_ok() {
                    if let Some(n) = c.sent(route.side, rtcp) {
                        *n += 1;
                    }
                    c.transit
                        .get_or_insert_with(|| Histogram::new(TRANSIT_BUCKETS))
                        .observe(at.elapsed().as_secs_f64());
                } else {
                    c.send_failures += 1;
                }
            }
        }
        lock(&self.counts).add(&c);
        None
    }

    /// Hands a batch of checked packets to the tunnel's media writer.
    fn to_tunnel(&self, batch: &mut MediaBatch, c: &mut PlaneCounts) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let sent = lock(&self.tunnel)
            .as_ref()
            .is_some_and(|tx| tx.try_send(std::mem::take(batch)).is_ok());
        if sent {
            c.tunnel_media_sent += n;
        } else {
            // A full queue or no tunnel: dropped, as UDP would be.
            c.send_failures += n;
            batch.clear();
        }
    }
}

/// A media worker, as its half reaches it.
struct Worker {
    registry: mio::Registry,
    routes: Arc<Mutex<FxHashMap<usize, Arc<Route>>>>,
    task: JoinHandle<()>,
}

/// One half's streams as its media workers serve them (owned by the driver).
pub struct MediaPlane {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
    next_id: usize,
    /// Per stream's RTP address: its worker and route id.
    routes: HashMap<SocketAddr, (usize, usize, StreamId)>,
}

impl MediaPlane {
    /// The media path of a half whose engine time began at `base` and whose engine takes
    /// inputs through `to_engine`: starts one worker per thread of the current runtime (at
    /// most [`MAX_WORKERS`]). Called inside a Tokio runtime.
    pub fn new(base: Instant, to_engine: EngineSink) -> std::io::Result<MediaPlane> {
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            base,
            slow: AtomicBool::new(false),
            tunnel: Mutex::new(None),
            to_engine,
            by_stream: RwLock::new(FxHashMap::default()),
            counts: Mutex::new(PlaneCounts::default()),
        });
        let n = runtime.metrics().num_workers().clamp(1, MAX_WORKERS);
        let mut workers: Vec<Worker> = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            let registry = poll.registry().try_clone()?;
            // The reactor reports the worker's epoll instance readable when one of its
            // sockets is. Tokio deprecated this constructor for types that could close or
            // replace their descriptor while registered (its replacement is `unsafe`, which
            // this crate forbids); a `Poll` owns its epoll descriptor until it is dropped, and
            // the `AsyncFd` owns the `Poll`, so the descriptor outlives the registration.
            let poll = {
                let _entered = runtime.enter();
                #[allow(deprecated)]
                AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)
            };
            let poll = match poll {
                Ok(p) => p,
                Err(e) => {
                    for w in &workers {
                        w.task.abort();
                    }
                    return Err(e);
                }
            };
            let routes = Arc::new(Mutex::new(FxHashMap::default()));
            let task = runtime.spawn(run_worker(poll, routes.clone(), shared.clone()));
            workers.push(Worker {
                registry,
                routes,
                task,
            });
        }
        Ok(MediaPlane {
            shared,
            workers,
            next_id: 0,
            routes: HashMap::new(),
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// See [`Shared::set_slow`].
    pub fn set_slow(&self, slow: bool) {
        self.shared.set_slow(slow);
    }

    /// Where the workers send checked packets (`None`: no tunnel, they are dropped).
    pub fn set_tunnel(&self, tx: Option<mpsc::Sender<MediaBatch>>) {
        *lock(&self.shared.tunnel) = tx;
    }

    /// What was counted since the last call.
    pub fn take_counts(&self) -> PlaneCounts {
        std::mem::take(&mut *lock(&self.shared.counts))
    }

    /// Serves stream `stream` on `side`, whose RTP address the engine knows as `local`, read
    /// from `rtp` and `rtcp`, checked and relayed with `forwarding`.
    pub fn add(
        &mut self,
        side: Side,
        local: SocketAddr,
        stream: StreamId,
        forwarding: SharedForwarding,
        (rtp, rtcp): (Arc<UdpSocket>, Arc<UdpSocket>),
    ) -> std::io::Result<()> {
        self.remove(local);
        let n = self.workers.len().max(1);
        let w = usize::from(stream.0) % n;
        let Some(worker) = self.workers.get(w) else {
            return Err(std::io::Error::other("no media worker"));
        };
        let id = self.next_id;
        self.next_id = (self.next_id + 1) % (usize::MAX / 4);
        let call = lock(&forwarding).call;
        let route = Arc::new(Route {
            side,
            stream,
            call,
            local,
            rtp,
            rtcp,
            forwarding,
            listed: [AtomicBool::new(false), AtomicBool::new(false)],
        });
        lock(&worker.routes).insert(id, route.clone());
        // Data that came before the registration is reported by it.
        for (socket, token) in [(&route.rtp, id << 1), (&route.rtcp, (id << 1) | 1)] {
            let fd = socket.as_raw_fd();
            if let Err(e) =
                worker
                    .registry
                    .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
            {
                lock(&worker.routes).remove(&id);
                let fd = route.rtp.as_raw_fd();
                let _ = worker.registry.deregister(&mut SourceFd(&fd));
                return Err(e);
            }
        }
        self.shared
            .by_stream
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream, route);
        self.routes.insert(local, (w, id, stream));
        Ok(())
    }

    /// Stops serving the stream whose RTP address is `local` (its call ended).
    pub fn remove(&mut self, local: SocketAddr) {
        let Some((w, id, stream)) = self.routes.remove(&local) else {
            return;
        };
        crate::engine::shrink_when_sparse(&mut self.routes);
        let Some(worker) = self.workers.get(w) else {
            return;
        };
        let route = lock(&worker.routes).remove(&id);
        if let Some(route) = route {
            for socket in [&route.rtp, &route.rtcp] {
                let fd = socket.as_raw_fd();
                let _ = worker.registry.deregister(&mut SourceFd(&fd));
            }
            let mut by_stream = self
                .shared
                .by_stream
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if by_stream
                .get(&stream)
                .is_some_and(|r| Arc::ptr_eq(r, &route))
            {
                by_stream.remove(&stream);
            }
        }
    }

    /// Whether it serves no stream.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Drop for MediaPlane {
    /// The half stopped: its workers stop and let go of its streams (and their sockets).
    fn drop(&mut self) {
        let locals: Vec<SocketAddr> = self.routes.keys().copied().collect();
        for local in locals {
            self.remove(local);
        }
        for w in &self.workers {
            w.task.abort();
        }
    }
}

/// What a worker read in one round: checked packets for the tunnel, inputs for the engine,
/// counts.
#[derive(Default)]
struct Round {
    batch: MediaBatch,
    to_engine: Vec<ToEngine>,
    counts: PlaneCounts,
}

/// A worker's loop: waits for readable sockets, reads them, checks and forwards what they
/// hold, until its half stops.
async fn run_worker(
    mut poll: AsyncFd<Poll>,
    routes: Arc<Mutex<FxHashMap<usize, Arc<Route>>>>,
    half: Arc<Shared>,
) {
    let mut events = Events::with_capacity(EVENTS);
    // Sockets left readable after their turn (epoll reports a socket again only when more
    // arrives), read first in the next round.
    let mut pending: Vec<(Arc<Route>, bool)> = Vec::new();
    let mut readable: Vec<(Arc<Route>, bool)> = Vec::new();
    let mut block = BytesMut::new();
    let mut round = Round::default();
    // Whether the epoll instance may hold more events than the last round took.
    let mut more = false;
    loop {
        if pending.is_empty() && !more {
            match poll.readable_mut().await {
                // Cleared before the epoll instance is read: what arrives after that read
                // makes it readable again.
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    tracing::error!("media worker: the reactor failed ({e}); its streams stop");
                    return;
                }
            }
        }
        if let Err(e) = poll.get_mut().poll(&mut events, Some(Duration::ZERO)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!("media worker: epoll failed ({e})");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            continue;
        }
        more = events.iter().count() >= EVENTS;
        std::mem::swap(&mut readable, &mut pending);
        {
            let routes = lock(&routes);
            for event in events.iter() {
                let token = event.token();
                if let Some(r) = routes.get(&(token.0 >> 1)) {
                    let rtcp = token.0 & 1 == 1;
                    // Listed once, however often it was reported: a peer flooding one port
                    // cannot grow the list.
                    if !r.listed(rtcp).swap(true, Ordering::Relaxed) {
                        readable.push((r.clone(), rtcp));
                    }
                }
            }
        }
        let now = half.now();
        for (route, rtcp) in readable.drain(..) {
            let socket = if rtcp { &route.rtcp } else { &route.rtp };
            let mut emptied = false;
            for _ in 0..READ_BURST {
                if block.capacity() < MAX_MEDIA_PACKET + 1 {
                    block = BytesMut::with_capacity(BLOCK);
                }
                // One byte larger than the largest packet relayed: a larger datagram is read
                // truncated to that and refused as too large.
                block.resize(MAX_MEDIA_PACKET + 1, 0);
                match socket.recv_from(&mut block) {
                    Ok((len, src)) => {
                        block.truncate(len);
                        let data = block.split().freeze();
                        let src = crate::live::runtime::unmap(src);
                        serve(&half, now, &route, rtcp, src, data, &mut round);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        emptied = true;
                        break;
                    }
                    // ICMP errors reported on the socket and the like: keep reading.
                    Err(_) => {}
                }
            }
            block.clear();
            if emptied {
                route.listed(rtcp).store(false, Ordering::Relaxed);
            } else {
                pending.push((route, rtcp));
            }
        }
        // The writer is woken on this thread and runs once this task waits or yields.
        half.to_tunnel(&mut round.batch, &mut round.counts);
        lock(&half.counts).add(&std::mem::take(&mut round.counts));
        for m in round.to_engine.drain(..) {
            if !(half.to_engine)(m).await {
                return;
            }
        }
        if !pending.is_empty() || more {
            tokio::task::yield_now().await;
        }
    }
}

/// One datagram from `src` on a stream's RTP or RTCP socket.
fn serve(
    half: &Shared,
    now: Duration,
    route: &Route,
    rtcp_socket: bool,
    src: SocketAddr,
    data: Bytes,
    round: &mut Round,
) {
    let c = &mut round.counts;
    if half.is_slow() {
        let local = if rtcp_socket {
            SocketAddr::new(route.local.ip(), route.local.port().wrapping_add(1))
        } else {
            route.local
        };
        let flow = Flow {
            transport: Transport::Udp,
            local,
            remote: src,
        };
        round.to_engine.push(ToEngine::Datagram {
            side: route.side,
            flow,
            data,
        });
        return;
    }
    let rtcp = is_rtcp(&data);
    let result = {
        let mut f = lock(&route.forwarding);
        Forwarding::receive(&mut f, now, &mut c.engine.table, src, &data)
    };
    match result {
        Ok((Checked::Dtmf(event), _)) => {
            c.engine.verdict(rtcp, true);
            if let Some((event, duration_ms)) = event {
                round.to_engine.push(ToEngine::Dtmf {
                    side: route.side,
                    call: route.call,
                    event,
                    duration_ms,
                });
            }
        }
        Ok((checked, plain)) => {
            c.engine.verdict(rtcp, true);
            round
                .batch
                .push((route.stream, checked == Checked::Rtcp, plain));
        }
        Err(_) => c.engine.verdict(rtcp, false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::engine::media::{Binder, MediaTable};
    use std::net::IpAddr;

    /// Keeps what the table publishes, as the live binder hands it to the driver.
    struct Published(Arc<Mutex<Vec<SharedForwarding>>>);
    impl Binder for Published {
        fn open(&mut self, _side: Side, _rtp: SocketAddr) -> bool {
            true
        }
        fn close(&mut self, _side: Side, _rtp: SocketAddr) {}
        fn shares_streams(&self) -> bool {
            true
        }
        fn publish(&mut self, _: Side, _: SocketAddr, _: StreamId, f: &SharedForwarding) {
            self.0.lock().unwrap().push(f.clone());
        }
    }

    fn bound() -> Arc<UdpSocket> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        Arc::new(s)
    }

    fn rtp(pt: u8, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44]);
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    /// Waits up to 5 s for `want` packets on the tunnel's queue.
    fn tunnel_packets(rx: &mut mpsc::Receiver<MediaBatch>, want: usize) -> MediaBatch {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < want {
            match rx.try_recv() {
                Ok(batch) => got.extend(batch),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => panic!("{} of {want} packets reached the tunnel", got.len()),
            }
        }
        got
    }

    /// A stream's packets are checked by a worker with the engine's checks and handed to the
    /// tunnel in order (bursts larger than a socket's turn too); a refused one is counted, not
    /// forwarded; in slow mode they go to the engine instead; packets from the tunnel are sent
    /// to the latched peer from the stream's socket; a removed stream's socket is not read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_check_and_forward_a_streams_packets_until_it_is_removed() {
        let to_engine = Arc::new(Mutex::new(Vec::new()));
        let sink = to_engine.clone();
        let mut plane = MediaPlane::new(
            Instant::now(),
            Box::new(move |m| {
                sink.lock().unwrap().push(m);
                Box::pin(async { true })
            }),
        )
        .unwrap();
        assert_eq!(plane.workers.len(), 2);
        let (tx, mut rx) = mpsc::channel(1024);
        plane.set_tunnel(Some(tx));

        let published = Arc::new(Mutex::new(Vec::new()));
        let mut table = MediaTable::new(
            Box::new(Published(published.clone())),
            false,
            (20000, 20099),
            (40000, 40099),
            (40000, 40099),
        );
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (call, stream) = (CallRef(7), StreamId(4));
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = table
            .open(
                Side::Outside,
                call,
                stream,
                ip,
                vec![0],
                Some(peer.local_addr().unwrap()),
            )
            .unwrap();
        let forwarding = published.lock().unwrap().pop().expect("published");
        let (a, b) = (bound(), bound());
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // A packet sent before the stream is served is read once it is.
        peer.send_to(&rtp(0, 1), a.local_addr().unwrap()).unwrap();
        plane
            .add(Side::Outside, local, stream, forwarding, (a.clone(), b))
            .unwrap();
        let got = tunnel_packets(&mut rx, 1);
        assert_eq!(
            (got[0].0, got[0].1, &got[0].2[..]),
            (stream, false, &rtp(0, 1)[..])
        );

        // Payload type 8 was not negotiated: refused and counted, nothing forwarded.
        peer.send_to(&rtp(8, 2), a.local_addr().unwrap()).unwrap();
        let n = 3 * READ_BURST;
        for i in 0..n {
            peer.send_to(&rtp(0, 10 + i as u16), a.local_addr().unwrap())
                .unwrap();
        }
        let got = tunnel_packets(&mut rx, n);
        let seqs: Vec<u16> = got
            .iter()
            .map(|p| u16::from_be_bytes([p.2[2], p.2[3]]))
            .collect();
        assert_eq!(seqs, (10..10 + n as u16).collect::<Vec<_>>());
        let c = plane.take_counts();
        assert_eq!(c.engine.rtp, [1 + n as u64, 1]);
        assert_eq!(c.engine.table.dropped_payload_type, 1);
        assert_eq!(c.tunnel_media_sent, 1 + n as u64);

        // From the other half: sent to the latched peer from the stream's RTP socket.
        let back = rtp(0, 99);
        let left = plane.shared().relay_from_tunnel(
            vec![
                (stream, false, Bytes::from(back.clone())),
                (StreamId(8), false, Bytes::new()),
            ],
            Instant::now(),
        );
        assert!(left.is_none());
        let mut buf = [0u8; 2048];
        let (len, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..len], from), (&back[..], a.local_addr().unwrap()));
        let c = plane.take_counts();
        assert_eq!((c.sent[0][0], c.engine.table.unknown_stream), (1, 1));
        assert_eq!(c.transit.map(|t| t.count()), Some(1));

        // Slow mode: the engine gets the datagram as read.
        plane.shared().set_slow(true);
        peer.send_to(&rtp(0, 500), a.local_addr().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while to_engine.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "nothing reached the engine");
            std::thread::sleep(Duration::from_millis(2));
        }
        match &to_engine.lock().unwrap()[0] {
            ToEngine::Datagram { side, flow, data } => {
                assert_eq!(
                    (*side, flow.local, flow.remote),
                    (Side::Outside, local, peer.local_addr().unwrap())
                );
                assert_eq!(&data[..], &rtp(0, 500)[..]);
            }
            other => panic!("{other:?}"),
        }
        assert!(plane
            .shared()
            .relay_from_tunnel(Vec::new(), Instant::now())
            .is_some());
        plane.shared().set_slow(false);

        plane.remove(local);
        assert!(plane.is_empty());
        peer.send_to(&rtp(0, 600), a.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "a removed stream was read");
        assert_eq!(to_engine.lock().unwrap().len(), 1);
    }
}
