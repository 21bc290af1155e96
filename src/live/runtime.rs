//! The tokio driver of one gateway half: sockets, the tunnel's two TLS connections and the
//! engine's timer around one [`Engine`]. It moves bytes and time in and out and never decides
//! what happens to a message: every verdict, answer, port choice and keepalive is the engine's.
//!
//! One task owns the engine; reader tasks (the signalling UDP sockets, SIP TCP connections, the
//! tunnel) send it [`Input`]s over one channel, and it drains the engine's outputs after each
//! input in the order the engine documents: socket requests, transmits, tunnel frames, events.
//! The per-call media sockets are read by the half's media workers, which check and forward
//! the packets of established streams themselves (see [`crate::live::media_plane`]).

use crate::engine::{
    Binder, ConnId, Engine, Event, Flow, Protocol, Side, Stats, StreamProtocol, Transmit,
    Transport, TunnelOut, Verdict,
};
use crate::live::logging::{RejectDecision, RejectLog};
use crate::live::media_plane::{MediaBatch, MediaPlane, ToEngine};
use crate::live::prebind::{bind_pair, PrebindCounters, Prebinder};
use crate::live::tunnel::{
    ServerEvent, TunnelClient, TunnelConnection, TunnelError, TunnelPair, TunnelServer,
};
use bytes::Bytes;
use codecs::meta::{FrameReader, StreamId};
use codecs::tunnel::{ConnectionKind, MediaFramer, MediaRepr};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Inputs queued for the engine task.
const INPUT_QUEUE: usize = 8192;
/// Meta frames queued for the tunnel's signalling connection. Frames cannot be dropped (the
/// peer checks their sequence), so a full queue (a peer that stopped reading) ends the tunnel.
const META_QUEUE: usize = 16_384;
/// Media packets queued for the tunnel's media connection; more are dropped (as UDP would).
const MEDIA_QUEUE: usize = 4096;
/// Batches of media packets (one per drain of the engine task, see [`Driver::flush_media`])
/// queued for the tunnel's media connection; more are dropped (as UDP would).
const MEDIA_BATCHES: usize = 1024;
/// SIP messages queued per TCP connection.
const STREAM_QUEUE: usize = 256;
/// SIP connections being opened at once; a request needing one more is not sent (counted).
const MAX_CONNECTING: usize = 1024;
/// How long GW1 waits for a TCP connection toward the inside.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from a stream connection at once.
const STREAM_READ: usize = 16 * 1024;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;
/// Receive buffer asked for each SIP/RAS UDP socket (see [`grow_receive_buffer`]): about
/// 0.5 s of datagrams at 3,000 calls/s.
const SIGNALLING_RCVBUF: usize = 4 * 1024 * 1024;
/// Below this granted receive buffer, the operator is warned.
const SIGNALLING_RCVBUF_LOW: usize = 1024 * 1024;
/// Inputs (media packets counted one by one) the engine task handles before it writes what
/// they produced.
const DRAIN_EVERY: usize = 65;
/// Bytes of tunnel frames written per flush at most.
const WRITE_BATCH: usize = 64 * 1024;
/// How long GW1 waits for the gatekeeper's UCF when it stops.
const RAS_UNREGISTER_WAIT: Duration = Duration::from_secs(2);
/// A tunnel is declared dead after this many keepalive intervals of silence from the peer.
const DEAD_AFTER_INTERVALS: u32 = 3;

/// What the reader tasks hand the engine task.
#[derive(Debug)]
enum Input {
    Datagram {
        side: Side,
        flow: Flow,
        data: Bytes,
    },
    StreamOpened {
        conn: ConnId,
        flow: Flow,
        side: Side,
        protocol: StreamProtocol,
        writer: mpsc::Sender<Bytes>,
    },
    /// A connection the engine needed could not be opened.
    ConnectFailed {
        flow: Flow,
        side: Side,
    },
    Stream {
        conn: ConnId,
        data: Bytes,
    },
    StreamClosed {
        conn: ConnId,
    },
    TunnelUp {
        generation: u64,
        remote: SocketAddr,
        meta: mpsc::Sender<Bytes>,
        media: mpsc::Sender<MediaBatch>,
    },
    TunnelMeta {
        generation: u64,
        frame: Bytes,
    },
    /// The media frames of one read from the tunnel, in order: one channel message (and at
    /// most one wake-up of the engine task) per read, not per packet.
    TunnelMedia {
        generation: u64,
        /// Stream, RTCP flag and packet; the packets share one buffer.
        packets: Vec<(StreamId, bool, Bytes)>,
        /// When the frames were read from the tunnel (metrics: frame in to UDP out).
        at: Instant,
    },
    TunnelDown {
        generation: u64,
        reason: String,
    },
    /// From the media workers: a datagram for the engine, or a DTMF digit they read.
    FromMedia(ToEngine),
    /// An operator's request (`sgw ctl`, SIGHUP), answered on `reply`.
    Control {
        request: crate::live::control::Request,
        reply: tokio::sync::oneshot::Sender<crate::live::control::Reply>,
    },
}

impl Input {
    /// How many messages or media packets it carries (see [`DRAIN_EVERY`]).
    fn weight(&self) -> usize {
        match self {
            Input::TunnelMedia { packets, .. } => packets.len().max(1),
            _ => 1,
        }
    }
}

/// Hands operator requests to one half's engine task (see [`crate::live::control`]).
#[derive(Debug, Clone)]
pub struct ControlHandle {
    pub half: &'static str,
    tx: mpsc::Sender<Input>,
}

impl ControlHandle {
    /// The engine's answer; `None` once the half has stopped.
    pub async fn request(
        &self,
        request: crate::live::control::Request,
    ) -> Option<crate::live::control::Reply> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Input::Control { request, reply }).await.ok()?;
        rx.await.ok()
    }
}

/// Packets the driver handed to the operating system, and what it could not send.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DriverCounters {
    pub outside_sip_sent: u64,
    pub outside_rtp_sent: u64,
    pub outside_rtcp_sent: u64,
    pub inside_sip_sent: u64,
    pub inside_rtp_sent: u64,
    pub inside_rtcp_sent: u64,
    pub tunnel_meta_sent: u64,
    pub tunnel_media_sent: u64,
    pub tunnel_media_received: u64,
    /// Transmits with no socket or connection to send from, or a full queue.
    pub send_failures: u64,
    /// Media sockets the engine asked for that could not be bound.
    pub bind_failures: u64,
    /// Media ports whose RTP/RTCP pair was bound ahead and taken ready, and those bound on the
    /// engine's task because none was ready (see [`crate::live::prebind`]).
    pub media_sockets_prebound: u64,
    pub media_sockets_bound_inline: u64,
    /// The tunnel was dropped because its Meta queue was full (`META_QUEUE` frames).
    pub meta_queue_full: u64,
    /// Connections not opened: `MAX_CONNECTING` were under way, or the TCP caps were reached.
    pub connects_refused: u64,
    /// SIP TCP connections the gateway opened (GW1 inside, GW2 toward its next hop).
    pub tcp_connects: u64,
    pub tunnel_ups: u64,
    pub tunnel_downs: u64,
    /// SIP TCP connections admitted within the caps: accepted, or opened by the gateway.
    pub tcp_accepted: u64,
    /// SIP TCP connections closed on accept: `max_tcp_connections` were open.
    pub tcp_refused_total: u64,
    /// SIP TCP connections closed on accept: `max_tcp_per_source` were open from that address.
    pub tcp_refused_per_source: u64,
    /// SIP TCP connections closed after `tcp_idle_timeout_secs` without a byte either way.
    pub tcp_idle_closed: u64,
    /// Call records written to the record file (`[gw2.records]`/`[gw1.records]`).
    pub records_written: u64,
    /// Call records lost: the writer's queue was full.
    pub records_dropped: u64,
    /// Record file writes, fsyncs, rotations or checkpoints that failed (each logged).
    pub record_write_errors: u64,
    /// Signed checkpoints written.
    pub record_checkpoints: u64,
    /// SIP TLS connections closed because their handshake failed or did not end within
    /// `handshake_timeout_secs`.
    pub tls_handshake_failures: u64,
    /// `[hep]`: messages queued for the collector, and dropped because the queue was full.
    pub hep_queued: u64,
    pub hep_dropped: u64,
    /// `[recording]`: packets queued for the capture files, and dropped at a full queue.
    pub recording_queued: u64,
    pub recording_dropped: u64,
}

/// Caps on the SIP TCP connections a driver accepts. TCP state is the cheapest thing for an
/// outside party to pile up (a connect costs it nothing after the handshake), so the number
/// open is capped in total and per source address, and a silent connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    pub max_total: usize,
    pub max_per_source: usize,
    /// No byte received or sent for this long closes the connection.
    pub idle_timeout: Duration,
    /// A TLS connection whose handshake has not ended this long after accept is closed.
    pub handshake_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_total: crate::config::DEFAULT_MAX_TCP_CONNECTIONS as usize,
            max_per_source: crate::config::DEFAULT_MAX_TCP_PER_SOURCE as usize,
            idle_timeout: Duration::from_secs(u64::from(
                crate::config::DEFAULT_TCP_IDLE_TIMEOUT_SECS,
            )),
            handshake_timeout: Duration::from_secs(u64::from(
                crate::config::DEFAULT_HANDSHAKE_TIMEOUT_SECS,
            )),
        }
    }
}

/// The open SIP TCP connections of one driver (all its listeners), by source address. The map
/// holds only addresses with a connection open, so it is bounded by `max_total`.
#[derive(Debug, Default)]
struct TcpOpen {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Admission of SIP TCP connections against [`TcpLimits`], shared by the accept tasks.
#[derive(Debug)]
struct TcpGate {
    limits: TcpLimits,
    open: Mutex<TcpOpen>,
    accepted: AtomicU64,
    refused_total: AtomicU64,
    refused_per_source: AtomicU64,
    idle_closed: AtomicU64,
    tls_failed: AtomicU64,
}

/// One admitted connection's place in the gate; released on drop.
struct TcpSlot {
    gate: Arc<TcpGate>,
    source: IpAddr,
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

impl TcpGate {
    fn new(limits: TcpLimits) -> Arc<Self> {
        Arc::new(TcpGate {
            limits,
            open: Mutex::new(TcpOpen::default()),
            accepted: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            refused_per_source: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            tls_failed: AtomicU64::new(0),
        })
    }

    /// A slot for a connection from `source`, or `None` (counted) when a cap is reached.
    fn admit(self: &Arc<Self>, source: IpAddr) -> Option<TcpSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.limits.max_total {
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let n = open.by_source.entry(source).or_insert(0);
        if *n >= self.limits.max_per_source {
            self.refused_per_source.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        open.total += 1;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(TcpSlot {
            gate: self.clone(),
            source,
        })
    }

    fn count_into(&self, c: &mut DriverCounters) {
        c.tcp_accepted = self.accepted.load(Ordering::Relaxed);
        c.tcp_refused_total = self.refused_total.load(Ordering::Relaxed);
        c.tcp_refused_per_source = self.refused_per_source.load(Ordering::Relaxed);
        c.tcp_idle_closed = self.idle_closed.load(Ordering::Relaxed);
        c.tls_handshake_failures = self.tls_failed.load(Ordering::Relaxed);
    }
}

/// What a half reports when it stops.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub half: &'static str,
    pub engine: Stats,
    pub driver: DriverCounters,
}

/// What the engine's binder did, for the driver to take up: sockets to read, sockets to close.
enum SocketOp {
    Opened {
        local: SocketAddr,
        socket: std::net::UdpSocket,
    },
    Closed {
        local: SocketAddr,
    },
    /// The stream opened at `local` (RTP) is served by the media workers.
    Published {
        side: Side,
        local: SocketAddr,
        stream: StreamId,
        forwarding: crate::engine::media::SharedForwarding,
    },
    /// A listener for one call's separate H.245 connection.
    Listening {
        side: Side,
        local: SocketAddr,
        listener: std::net::TcpListener,
    },
    Unlisten {
        local: SocketAddr,
    },
}

/// The engine's [`Binder`] in the live gateway: a media port's sockets are bound before the
/// port is announced (so a port another program holds is known then), and handed to the driver,
/// which reads them. They come ready from the half's [`Prebinder`] when it bound them ahead (no
/// system call on the engine's task), else they are bound here, as the engine asks.
struct LiveBinder {
    ops: Arc<std::sync::Mutex<Vec<SocketOp>>>,
    prebinder: Prebinder,
    /// The half's media workers started: without them no media port can be served.
    workers: bool,
}

impl Binder for LiveBinder {
    fn shares_streams(&self) -> bool {
        true
    }

    fn publish(
        &mut self,
        side: Side,
        rtp: SocketAddr,
        stream: StreamId,
        forwarding: &crate::engine::media::SharedForwarding,
    ) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(SocketOp::Published {
                side,
                local: rtp,
                stream,
                forwarding: forwarding.clone(),
            });
        }
    }

    fn open(&mut self, side: Side, rtp: SocketAddr) -> bool {
        if !self.workers {
            return false;
        }
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
        let (a, b) = match self.prebinder.take(side, rtp) {
            Some(pair) => pair,
            None => {
                let Ok(pair) = bind_pair(rtp) else {
                    return false;
                };
                self.prebinder
                    .counters
                    .inline
                    .fetch_add(1, Ordering::Relaxed);
                pair
            }
        };
        let Ok(mut ops) = self.ops.lock() else {
            return false;
        };
        ops.push(SocketOp::Opened {
            local: rtp,
            socket: a,
        });
        ops.push(SocketOp::Opened {
            local: rtcp,
            socket: b,
        });
        true
    }

    fn prepare(&mut self, side: Side, ip: IpAddr, upcoming: &mut dyn Iterator<Item = u16>) {
        self.prebinder.prepare(side, ip, upcoming);
    }

    // The H.245 listener stays bound here, on the engine's task: one per H.323 call without
    // tunnelling (rarer than media ports), on the TCP port numbered like the call's RTP port,
    // which is known only once the call needs it.
    fn listen(&mut self, side: Side, at: SocketAddr) -> bool {
        let bind = || {
            let l = std::net::TcpListener::bind(at)?;
            l.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(l)
        };
        let (Ok(listener), Ok(mut ops)) = (bind(), self.ops.lock()) else {
            return false;
        };
        ops.push(SocketOp::Listening {
            side,
            local: at,
            listener,
        });
        true
    }

    fn unlisten(&mut self, at: SocketAddr) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(SocketOp::Unlisten { local: at });
        }
    }

    fn close(&mut self, _side: Side, rtp: SocketAddr) {
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(SocketOp::Closed { local: rtp });
            ops.push(SocketOp::Closed { local: rtcp });
        }
    }
}

/// A UDP socket of the driver, with how it is read.
enum UdpEntry {
    /// A signalling socket, read by a task of its own.
    Task(Arc<UdpSocket>, JoinHandle<()>),
    /// A media socket (four per call with media), read by the half's media workers; the
    /// driver sends on it, non-blocking, what the engine relays itself.
    Media(Arc<std::net::UdpSocket>),
}

impl UdpEntry {
    /// Sends without waiting; false when the socket's buffer is full or the send failed (the
    /// datagram is dropped, as UDP would).
    fn try_send_to(&self, data: &[u8], to: SocketAddr) -> bool {
        match self {
            UdpEntry::Task(s, _) => s.try_send_to(data, to).is_ok(),
            UdpEntry::Media(socket) => socket.send_to(data, to).is_ok(),
        }
    }
}

impl Drop for UdpEntry {
    fn drop(&mut self) {
        // The reader lets go of the socket: it closes once the driver's handle is gone too.
        if let UdpEntry::Task(_, reader) = self {
            reader.abort();
        }
    }
}

struct ConnEntry {
    flow: Flow,
    side: Side,
    protocol: StreamProtocol,
    writer: mpsc::Sender<Bytes>,
}

struct TunnelLink {
    generation: u64,
    meta: mpsc::Sender<Bytes>,
    media: mpsc::Sender<MediaBatch>,
}

/// Logs a line about the half's sockets or tunnel (see [`crate::live::logging`]).
fn log(half: &str, msg: std::fmt::Arguments<'_>) {
    tracing::info!(half, "{msg}");
}

/// Logs a problem with the half's sockets or tunnel.
fn warn(half: &str, msg: std::fmt::Arguments<'_>) {
    tracing::warn!(half, "{msg}");
}

/// One half's engine with its sockets and tunnel. Build it, add sockets and a tunnel, then
/// [`Driver::run`].
pub struct Driver {
    half: &'static str,
    engine: Engine,
    base: Instant,
    tx: mpsc::Sender<Input>,
    rx: mpsc::Receiver<Input>,
    /// UDP sockets by the address the engine knows them by.
    udp: HashMap<SocketAddr, UdpEntry>,
    conns: HashMap<ConnId, ConnEntry>,
    conn_by_flow: HashMap<(SocketAddr, SocketAddr), ConnId>,
    next_conn: Arc<AtomicU64>,
    tunnel: Option<TunnelLink>,
    /// Media frames for the tunnel from the inputs being drained (see [`Driver::flush_media`]).
    media_out: MediaBatch,
    tunnel_state: watch::Sender<bool>,
    counters: DriverCounters,
    tcp_gate: Arc<TcpGate>,
    tasks: Vec<JoinHandle<()>>,
    /// Accept tasks of the per-call H.245 listeners, by address.
    h245_listeners: HashMap<SocketAddr, JoinHandle<()>>,
    /// Connections being opened for the engine, with what it sent meanwhile.
    connecting: HashMap<(SocketAddr, SocketAddr), Vec<Bytes>>,
    /// The media workers (`None` when they could not start: media ports are then refused).
    plane: Option<MediaPlane>,
    /// Media sockets the engine's binder opened or closed, not yet taken up.
    socket_ops: Arc<std::sync::Mutex<Vec<SocketOp>>>,
    /// How the binder found the media sockets: bound ahead or not.
    prebind: Arc<PrebindCounters>,
    /// Log each call record and rejection (filtered by the log's level, see
    /// [`crate::live::logging`]).
    pub verbose: bool,
    /// Publishes snapshots for `GET /metrics` (see [`Driver::set_metrics`]).
    metrics: Option<crate::live::metrics::DriverMetrics>,
    /// Where the input being handled came from: the source of its rejections.
    source: Option<SocketAddr>,
    /// Rejections logged one by one, and the flood summaries.
    rejects: RejectLog,
    /// The tamper-evident call record writer (`[gw2.records]`/`[gw1.records]`).
    records: Option<crate::cdr::RecordWriter>,
    /// `[confidentiality] cover_traffic_kbps`: the shape of what this half writes on the
    /// media tunnel.
    cover: Option<crate::live::cover::CoverTraffic>,
    /// GW2 with `outside_transport = "tls"`: how it opens TLS toward its outside next hop.
    outside_tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    /// Copies for the HEP export and the per-call capture (inactive unless configured).
    tap: crate::live::tap::Tap,
}

impl Drop for Driver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Driver {
    pub fn new(half: &'static str, mut engine: Engine) -> Self {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let socket_ops = Arc::new(std::sync::Mutex::new(Vec::new()));
        let prebinder = Prebinder::new(format!("sgw-{half}-bind"));
        let prebind = prebinder.counters.clone();
        let base = Instant::now();
        let to_engine = tx.clone();
        let plane = MediaPlane::new(
            base.into_std(),
            Box::new(move |m| {
                let tx = to_engine.clone();
                Box::pin(async move { tx.send(Input::FromMedia(m)).await.is_ok() })
            }),
        );
        let plane = match plane {
            Ok(p) => Some(p),
            Err(e) => {
                warn(
                    half,
                    format_args!(
                        "cannot start the media workers ({e}): calls with media are refused"
                    ),
                );
                None
            }
        };
        engine.set_binder(Box::new(LiveBinder {
            ops: socket_ops.clone(),
            prebinder,
            workers: plane.is_some(),
        }));
        // Call records carry UTC time: the engine's zero is now.
        engine.set_wall_epoch(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        Driver {
            connecting: HashMap::new(),
            socket_ops,
            prebind,
            plane,
            half,
            engine,
            base,
            tx,
            rx,
            udp: HashMap::new(),
            conns: HashMap::new(),
            conn_by_flow: HashMap::new(),
            next_conn: Arc::new(AtomicU64::new(1)),
            tunnel: None,
            media_out: Vec::new(),
            tunnel_state: watch::channel(false).0,
            counters: DriverCounters::default(),
            tcp_gate: TcpGate::new(TcpLimits::default()),
            tasks: Vec::new(),
            h245_listeners: HashMap::new(),
            verbose: true,
            metrics: None,
            source: None,
            rejects: RejectLog::default(),
            records: None,
            outside_tls: None,
            cover: None,
            tap: crate::live::tap::Tap::new(),
        }
    }

    /// Writes a call record for every call that ends through `writer` (see [`crate::cdr`]).
    pub fn set_records(&mut self, writer: crate::cdr::RecordWriter) {
        self.records = Some(writer);
    }

    /// Copies every SIP message and H.225.0 PDU of this half to the HEP export.
    pub fn set_hep(&mut self, sink: crate::live::tap::Sink<crate::live::tap::Seen>) {
        self.tap.hep = Some(sink);
    }

    /// Records the signalling and media of this half's calls into per-call pcap files.
    pub fn set_recording(&mut self, sink: crate::live::recording::RecordingSink) {
        self.tap.recording = Some(sink);
    }

    /// The driver's counters with the TCP gate's and the taps' filled in.
    fn driver_counters(&self) -> DriverCounters {
        let mut driver = self.counters.clone();
        self.tcp_gate.count_into(&mut driver);
        driver.media_sockets_prebound = self.prebind.prebound.load(Ordering::Relaxed);
        driver.media_sockets_bound_inline = self.prebind.inline.load(Ordering::Relaxed);
        if let Some(h) = &self.tap.hep {
            (driver.hep_queued, driver.hep_dropped) = h.counters.get();
        }
        if let Some(r) = &self.tap.recording {
            (driver.recording_queued, driver.recording_dropped) = r.counters.get();
        }
        if let Some(w) = &self.records {
            w.count_into(&mut driver);
        }
        driver
    }

    /// Publishes this half's counters into `board` every second, for `GET /metrics`.
    pub fn set_metrics(&mut self, board: crate::live::metrics::Board) {
        self.engine.record_setup_times();
        self.metrics = Some(crate::live::metrics::DriverMetrics::new(board));
    }

    fn publish_metrics(&mut self) {
        self.collect_media();
        if let Some(m) = &self.metrics {
            let driver = self.driver_counters();
            m.publish(self.half, &self.engine, driver, self.tunnel.is_some());
        }
    }

    /// Where operator requests reach this half's engine task.
    pub fn control_handle(&self) -> ControlHandle {
        ControlHandle {
            half: self.half,
            tx: self.tx.clone(),
        }
    }

    /// Hands datagrams read on another socket to this half's engine as if read on its own
    /// socket `local` (GW1's front dispatcher, [`crate::live::front`]).
    pub fn injector(&self, side: Side, local: SocketAddr) -> Injector {
        Injector {
            tx: self.tx.clone(),
            side,
            local,
        }
    }

    /// Follows the tunnel's state: `true` while both connections are up.
    pub fn tunnel_state(&self) -> watch::Receiver<bool> {
        self.tunnel_state.subscribe()
    }

    fn now(&self) -> Duration {
        self.base.elapsed()
    }

    /// Adds a bound UDP socket; the engine knows it as `engine_addr` (the bound address, or the
    /// advertised one when bound to the unspecified address).
    pub fn add_udp(&mut self, side: Side, socket: UdpSocket, engine_addr: SocketAddr) {
        self.add_udp_sized(side, socket, engine_addr, MAX_DATAGRAM);
    }

    /// Hands the stream opened at `local` (its RTP and RTCP sockets, opened just before) to the
    /// media workers.
    fn serve_stream(
        &mut self,
        side: Side,
        local: SocketAddr,
        stream: StreamId,
        forwarding: crate::engine::media::SharedForwarding,
    ) {
        let rtcp = SocketAddr::new(local.ip(), local.port().wrapping_add(1));
        let socket = |a| match self.udp.get(&a) {
            Some(UdpEntry::Media(s)) => Some(s.clone()),
            _ => None,
        };
        let (Some(a), Some(b), Some(plane)) = (socket(local), socket(rtcp), &mut self.plane) else {
            return;
        };
        if let Err(e) = plane.add(side, local, stream, forwarding, (a, b)) {
            self.counters.bind_failures += 1;
            warn(
                self.half,
                format_args!("cannot read media port {local}: {e}"),
            );
        }
    }

    /// Adds what the media workers counted to the engine's stats and the driver's counters.
    fn collect_media(&mut self) {
        let Some(plane) = &self.plane else { return };
        let c = plane.take_counts();
        self.engine.absorb_media_counts(&c.engine);
        let d = &mut self.counters;
        d.tunnel_media_sent += c.tunnel_media_sent;
        d.tunnel_media_received += c.tunnel_media_received;
        let [[out_rtp, out_rtcp], [in_rtp, in_rtcp]] = c.sent;
        d.outside_rtp_sent += out_rtp;
        d.outside_rtcp_sent += out_rtcp;
        d.inside_rtp_sent += in_rtp;
        d.inside_rtcp_sent += in_rtcp;
        d.send_failures += c.send_failures;
        if let (Some(m), Some(t)) = (&mut self.metrics, &c.transit) {
            m.merge_transit(t);
        }
    }

    fn add_udp_sized(&mut self, side: Side, socket: UdpSocket, addr: SocketAddr, size: usize) {
        let socket = Arc::new(socket);
        let reader = tokio::spawn(udp_reader(
            socket.clone(),
            side,
            addr,
            size,
            self.tx.clone(),
        ));
        self.udp.insert(addr, UdpEntry::Task(socket, reader));
    }

    /// Sets the caps on SIP TCP connections; call before [`Driver::add_tcp_listener`] (all
    /// listeners added after it share the caps).
    pub fn set_tcp_limits(&mut self, limits: TcpLimits) {
        self.tcp_gate = TcpGate::new(limits);
    }

    /// Accepts SIP over TCP on `listener` (outside), within the driver's [`TcpLimits`].
    pub fn add_tcp_listener(&mut self, listener: TcpListener) {
        self.add_stream_listener(listener, StreamProtocol::Sip);
    }

    /// Accepts stream connections of `protocol` on `listener` (outside): the engine reads
    /// them as that protocol only.
    pub fn add_stream_listener(&mut self, listener: TcpListener, protocol: StreamProtocol) {
        self.add_listener(listener, Side::Outside, protocol);
    }

    /// Accepts SIP over TCP from the inside (GW1 with `transport = "tcp"`).
    pub fn add_inside_tcp_listener(&mut self, listener: TcpListener) {
        self.add_listener(listener, Side::Inside, StreamProtocol::Sip);
    }

    /// Accepts H.225.0 calls from the inside (GW1 with `protocol = "h323"`).
    pub fn add_inside_h225_listener(&mut self, listener: TcpListener) {
        self.add_listener(listener, Side::Inside, StreamProtocol::H225);
    }

    /// Writes the media tunnel at the constant rate of `cover` (set before the tunnel is added).
    pub fn set_cover_traffic(&mut self, cover: Option<crate::live::cover::CoverTraffic>) {
        self.cover = cover;
    }

    /// Opens TLS connections (with `config`, asking for `name`) when the engine sends over TLS
    /// toward the outside and no connection carries it.
    pub fn set_outside_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) {
        self.outside_tls = Some((TlsConnector::from(config), name));
    }

    /// Accepts SIP over TLS on `listener` (outside), within the driver's [`TcpLimits`].
    pub fn add_tls_listener(&mut self, listener: TcpListener, config: Arc<rustls::ServerConfig>) {
        self.spawn_accept(
            listener,
            Side::Outside,
            StreamProtocol::Sip,
            Some(TlsAcceptor::from(config)),
        );
    }

    fn add_listener(&mut self, listener: TcpListener, side: Side, protocol: StreamProtocol) {
        self.spawn_accept(listener, side, protocol, None);
    }

    fn spawn_accept(
        &mut self,
        listener: TcpListener,
        side: Side,
        protocol: StreamProtocol,
        tls: Option<TlsAcceptor>,
    ) {
        let task = tokio::spawn(tcp_accept(
            listener,
            side,
            protocol,
            self.next_conn.clone(),
            self.tx.clone(),
            self.tcp_gate.clone(),
            tls,
        ));
        self.tasks.push(task);
    }

    fn tunnel_shape(&self, keepalive: Duration) -> TunnelShape {
        TunnelShape {
            keepalive,
            cover: self.cover,
            media: self.plane.as_ref().map(MediaPlane::shared),
        }
    }

    /// GW2: takes GW1's tunnel connections from `server`, one signalling and one media
    /// connection of the same instance making a tunnel.
    pub fn add_tunnel_server(&mut self, server: TunnelServer, keepalive: Duration) {
        let half = self.half;
        let task = tokio::spawn(tunnel_server(
            server,
            self.tx.clone(),
            self.tunnel_shape(keepalive),
            half,
        ));
        self.tasks.push(task);
    }

    /// GW1: keeps the tunnel to GW2 up, reconnecting with the client's backoff.
    pub fn add_tunnel_client(&mut self, client: TunnelClient, keepalive: Duration) {
        let half = self.half;
        let task = tokio::spawn(tunnel_client(
            client,
            self.tx.clone(),
            self.tunnel_shape(keepalive),
            half,
        ));
        self.tasks.push(task);
    }

    /// Runs until `shutdown` turns true (or its sender is dropped); returns the counters.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Summary {
        let mut publish = tokio::time::interval(crate::live::metrics::PUBLISH_INTERVAL);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let publishing = self.metrics.is_some();
        // One timer for the life of the loop, moved only when the next deadline changes: a
        // fresh one per pass would enter and leave the runtime's timer wheel (a lock shared
        // by the workers) once per batch of packets.
        let sleep = tokio::time::sleep_until(self.base);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            let engine_due = self.engine.poll_timeout();
            let deadline = match (engine_due, self.rejects.due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .map(|d| self.base + d);
            if deadline != armed {
                if let Some(d) = deadline {
                    sleep.as_mut().reset(d);
                }
                armed = deadline;
            }
            tokio::select! {
                input = self.rx.recv() => {
                    // The driver holds a sender, so the channel never closes.
                    let Some(input) = input else { break };
                    let mut taken = input.weight();
                    self.input_logged(input);
                    // Take what else is queued before draining, in arrival order, up to
                    // DRAIN_EVERY messages or media packets: what they send waits for the drain.
                    while taken < DRAIN_EVERY {
                        match self.rx.try_recv() {
                            Ok(input) => {
                                taken += input.weight();
                                self.input_logged(input);
                            }
                            Err(_) => break,
                        }
                    }
                }
                () = &mut sleep, if armed.is_some() => {
                    // Elapsed: armed again (reset) at the next pass, whatever the deadline.
                    armed = None;
                    let now = self.now();
                    if engine_due.is_some_and(|d| d <= now) {
                        self.engine.handle_timeout(now);
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                _ = publish.tick(), if publishing => {
                    self.publish_metrics();
                    continue;
                }
            }
            self.drain();
            self.log_floods(false);
        }
        self.unregister_ras().await;
        self.publish_metrics();
        self.log_floods(true);
        if self.records.is_some() {
            // Every call gets its record: the calls still up end here (cause 16, ended by the
            // gateway; their BYE or Release Complete goes out as far as the sockets still
            // carry it).
            let now = self.now();
            self.engine.release_all(now);
            self.drain();
        }
        if let Some(w) = self.records.take() {
            let c = w.counters.clone();
            // The final signed checkpoint; the writer thread may block on the disk.
            let _ = tokio::task::spawn_blocking(move || w.stop()).await;
            c.count_into(&mut self.counters);
        }
        self.collect_media();
        let driver = self.driver_counters();
        Summary {
            half: self.half,
            engine: self.engine.stats(),
            driver,
        }
    }

    /// GW1 stopping with `[gw1.gatekeeper]`: a URQ to the gatekeeper, and a wait of at most
    /// [`RAS_UNREGISTER_WAIT`] for its UCF (inputs are still served meanwhile).
    async fn unregister_ras(&mut self) {
        let now = self.now();
        let waiting = self.engine.ras_unregister(now);
        self.drain();
        if !waiting {
            return;
        }
        let deadline = Instant::now() + RAS_UNREGISTER_WAIT;
        while !self.engine.ras_unregistered() && Instant::now() < deadline {
            let wake = self
                .engine
                .poll_timeout()
                .map_or(deadline, |d| (self.base + d).min(deadline));
            tokio::select! {
                input = self.rx.recv() => {
                    let Some(input) = input else { break };
                    self.input_logged(input);
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    if self.engine.poll_timeout().is_some_and(|d| d <= now) {
                        self.engine.handle_timeout(now);
                    }
                }
            }
            self.drain();
        }
        log(
            self.half,
            format_args!(
                "{}",
                if self.engine.ras_unregistered() {
                    "unregistered from the gatekeeper"
                } else {
                    "no answer to URQ from the gatekeeper"
                }
            ),
        );
    }

    /// Handles one input and logs its events with its source (the transmits wait for
    /// [`Driver::drain`]).
    fn input_logged(&mut self, input: Input) {
        self.source = match &input {
            Input::Datagram { flow, .. } => Some(flow.remote),
            Input::Stream { conn, .. } => self.conns.get(conn).map(|c| c.flow.remote),
            _ => None,
        };
        self.input(input);
        while let Some(e) = self.engine.poll_event() {
            self.event(e);
        }
        self.source = None;
    }

    /// Logs the flood summaries of the interval that ended (all of them with `force`).
    fn log_floods(&mut self, force: bool) {
        let now = self.now();
        for s in self.rejects.flush(now, force) {
            let source = s.source.map(|ip| ip.to_string()).unwrap_or_default();
            tracing::warn!(
                target: "sgw::reject",
                half = self.half,
                source,
                rejected = s.total,
                "{s}"
            );
        }
    }

    fn input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Datagram { side, flow, data } => {
                let copy = self.tap.is_active().then(|| data.clone());
                match side {
                    Side::Outside => self.engine.handle_datagram(now, flow, data),
                    Side::Inside => self.engine.handle_inside_datagram(now, flow, data),
                }
                if let Some(data) = copy {
                    self.tap_datagram(side, flow, data);
                }
            }
            Input::StreamOpened {
                conn,
                flow,
                side,
                protocol,
                writer,
            } => {
                self.engine.declare_stream(conn, protocol);
                self.conn_by_flow.insert((flow.local, flow.remote), conn);
                // What the engine sent while the connection was being opened.
                for payload in self
                    .connecting
                    .remove(&(flow.local, flow.remote))
                    .unwrap_or_default()
                {
                    if writer.try_send(payload).is_err() {
                        self.counters.send_failures += 1;
                    }
                }
                self.conns.insert(
                    conn,
                    ConnEntry {
                        flow,
                        side,
                        protocol,
                        writer,
                    },
                );
            }
            Input::ConnectFailed { flow, side } => {
                let lost = self
                    .connecting
                    .remove(&(flow.local, flow.remote))
                    .map_or(0, |v| v.len() as u64);
                self.counters.send_failures += lost;
                warn(
                    self.half,
                    format_args!("cannot connect to {} over TCP", flow.remote),
                );
                self.engine.handle_connect_failed(now, side, flow);
            }
            Input::Stream { conn, data } => {
                if let Some(c) = self.conns.get(&conn) {
                    let (flow, side, protocol) = (c.flow, c.side, c.protocol);
                    match side {
                        Side::Outside => self.engine.handle_stream(now, conn, flow, &data),
                        Side::Inside => self.engine.handle_inside_stream(now, conn, flow, &data),
                    }
                    if self.tap.is_active() {
                        self.tap_stream(conn, side, flow, protocol, &data);
                    }
                    if self.engine.is_stream_dead(conn) {
                        // Not its listener's protocol, or framing lost: the connection closes.
                        self.conns.remove(&conn);
                        self.conn_by_flow.remove(&(flow.local, flow.remote));
                    }
                }
            }
            Input::StreamClosed { conn } => {
                self.tap.stream_closed(conn);
                if let Some(c) = self.conns.remove(&conn) {
                    self.conn_by_flow.remove(&(c.flow.local, c.flow.remote));
                }
                self.engine.handle_stream_closed(now, conn);
            }
            Input::TunnelUp {
                generation,
                remote,
                meta,
                media,
            } => {
                if self.tunnel.is_some() {
                    // A new tunnel replaces the old one: its calls are gone with it.
                    self.engine.handle_tunnel_down(now);
                }
                if let Some(plane) = &self.plane {
                    plane.set_tunnel(Some(media.clone()));
                }
                self.tunnel = Some(TunnelLink {
                    generation,
                    meta,
                    media,
                });
                self.counters.tunnel_ups += 1;
                log(self.half, format_args!("tunnel up ({remote})"));
                self.engine.handle_tunnel_up(now);
                self.tunnel_state.send_replace(true);
            }
            Input::TunnelMeta { generation, frame } => {
                if !self.is_current(generation) {
                    return;
                }
                if let Err(e) = self.engine.handle_tunnel_meta(now, &frame) {
                    self.tunnel_lost(&format!("peer broke the Meta protocol: {e}"));
                }
            }
            Input::TunnelMedia {
                generation,
                packets,
                at,
            } => {
                if !self.is_current(generation) {
                    return;
                }
                for (stream, rtcp, data) in packets {
                    self.counters.tunnel_media_received += 1;
                    let before = self.engine.pending_transmits();
                    self.engine.handle_tunnel_media(now, stream, rtcp, data);
                    if let Some(m) = &mut self.metrics {
                        if self.engine.pending_transmits() > before {
                            m.mark(before, at);
                        }
                    }
                }
            }
            Input::TunnelDown { generation, reason } => {
                if self.is_current(generation) {
                    self.tunnel_lost(&reason);
                }
            }
            Input::FromMedia(ToEngine::Datagram { side, flow, data }) => {
                self.input(Input::Datagram { side, flow, data });
            }
            Input::FromMedia(ToEngine::Dtmf {
                side,
                call,
                event,
                duration_ms,
            }) => self
                .engine
                .handle_media_dtmf(now, side, call, event, duration_ms),
            Input::Control { request, reply } => {
                self.collect_media();
                let answer = crate::live::control::handle(&mut self.engine, now, request);
                let _ = reply.send(answer);
            }
        }
    }

    /// Copies a received datagram to the taps that want it (after the engine handled it, so
    /// a new call is known).
    fn tap_datagram(&mut self, side: Side, flow: Flow, data: Bytes) {
        let protocol = if crate::engine::looks_like_sip(&data) {
            Protocol::Sip
        } else if crate::engine::media::is_rtcp(&data) {
            Protocol::Rtcp
        } else {
            Protocol::Rtp
        };
        if !self.tap.wants(protocol) {
            return;
        }
        let call = self.engine.call_of(side, &flow, protocol, &data);
        self.tap.observe(crate::live::tap::Seen {
            at: std::time::SystemTime::now(),
            half: self.half,
            side,
            transport: flow.transport,
            src: flow.remote,
            dst: flow.local,
            protocol,
            call,
            payload: data,
        });
    }

    /// Copies the whole messages received on a stream connection to the taps.
    fn tap_stream(
        &mut self,
        conn: ConnId,
        side: Side,
        flow: Flow,
        declared: StreamProtocol,
        data: &[u8],
    ) {
        let at = std::time::SystemTime::now();
        for (protocol, payload) in self.tap.stream_messages(conn, declared, data) {
            let call = self.engine.call_of(side, &flow, protocol, &payload);
            self.tap.observe(crate::live::tap::Seen {
                at,
                half: self.half,
                side,
                transport: flow.transport,
                src: flow.remote,
                dst: flow.local,
                protocol,
                call,
                payload,
            });
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.tunnel
            .as_ref()
            .is_some_and(|t| t.generation == generation)
    }

    /// Drops the tunnel (its session task sees its queues close and closes both connections)
    /// and lets the engine release the calls.
    fn tunnel_lost(&mut self, reason: &str) {
        self.tunnel = None;
        if let Some(plane) = &self.plane {
            plane.set_tunnel(None);
        }
        self.counters.tunnel_downs += 1;
        warn(self.half, format_args!("tunnel down: {reason}"));
        let now = self.now();
        self.engine.handle_tunnel_down(now);
        self.tunnel_state.send_replace(false);
    }

    fn drain(&mut self) {
        self.take_socket_ops();
        while let Some(t) = self.engine.poll_transmit() {
            self.transmit(t);
            if let Some(m) = &mut self.metrics {
                m.transmitted();
            }
        }
        while let Some(t) = self.engine.poll_tunnel() {
            self.tunnel_out(t);
        }
        self.flush_media();
        while let Some(e) = self.engine.poll_event() {
            self.event(e);
        }
        if let Some(m) = &mut self.metrics {
            for t in self.engine.take_setup_times() {
                m.call_setup(t);
            }
        }
        if let Some(plane) = &self.plane {
            let slow = self.tap.is_active() || self.engine.media_needs_engine();
            plane.set_slow(slow);
        }
    }

    /// Queues `payload` for a connection to `flow.remote`, opening it when none is under way.
    fn connect(&mut self, side: Side, flow: Flow, protocol: StreamProtocol, payload: Bytes) {
        let key = (flow.local, flow.remote);
        if let Some(q) = self.connecting.get_mut(&key) {
            if q.len() < STREAM_QUEUE {
                q.push(payload);
            } else {
                self.counters.send_failures += 1;
            }
            return;
        }
        if self.connecting.len() >= MAX_CONNECTING {
            self.counters.connects_refused += 1;
            self.counters.send_failures += 1;
            return;
        }
        // Connections the gateway opens count against the same caps as those it accepts, and
        // close when idle like them: the engine reopens one when it next needs it.
        let Some(slot) = self.tcp_gate.admit(flow.remote.ip()) else {
            self.counters.connects_refused += 1;
            self.counters.send_failures += 1;
            return;
        };
        self.connecting.insert(key, vec![payload]);
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        self.counters.tcp_connects += 1;
        let gate = self.tcp_gate.clone();
        let tls = match flow.transport {
            Transport::Tls => self.outside_tls.clone(),
            _ => None,
        };
        let task = tokio::spawn(tcp_connect(
            flow,
            side,
            protocol,
            conn,
            self.tx.clone(),
            slot,
            gate,
            tls,
        ));
        drop(task);
    }

    /// Takes up the media sockets the engine opened (a reader each) and drops those it closed.
    /// Runs before the transmits of the same input: they may use the new ports.
    fn take_socket_ops(&mut self) {
        let ops = match self.socket_ops.lock() {
            Ok(mut ops) => std::mem::take(&mut *ops),
            Err(_) => return,
        };
        for op in ops {
            match op {
                SocketOp::Opened { local, socket } => {
                    self.udp.insert(local, UdpEntry::Media(Arc::new(socket)));
                }
                SocketOp::Published {
                    side,
                    local,
                    stream,
                    forwarding,
                } => self.serve_stream(side, local, stream, forwarding),
                SocketOp::Closed { local } => {
                    if let Some(plane) = &mut self.plane {
                        plane.remove(local);
                    }
                    self.udp.remove(&local);
                    crate::engine::shrink_when_sparse(&mut self.udp);
                }
                SocketOp::Listening {
                    side,
                    local,
                    listener,
                } => match TcpListener::from_std(listener) {
                    Ok(l) => {
                        let task = tokio::spawn(tcp_accept(
                            l,
                            side,
                            StreamProtocol::H245,
                            self.next_conn.clone(),
                            self.tx.clone(),
                            self.tcp_gate.clone(),
                            None,
                        ));
                        if let Some(old) = self.h245_listeners.insert(local, task) {
                            old.abort();
                        }
                    }
                    Err(e) => warn(
                        self.half,
                        format_args!("cannot listen for H.245 at {local}: {e}"),
                    ),
                },
                SocketOp::Unlisten { local } => {
                    if let Some(task) = self.h245_listeners.remove(&local) {
                        task.abort();
                    }
                }
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let key = (t.flow.local, t.flow.remote);
        let sent = match t.flow.transport {
            Transport::Udp => self
                .udp
                .get(&t.flow.local)
                .is_some_and(|u| u.try_send_to(&t.payload, t.flow.remote)),
            Transport::Tcp | Transport::Tls => match self.conn_by_flow.get(&key) {
                Some(c) => self
                    .conns
                    .get(c)
                    .is_some_and(|c| c.writer.try_send(t.payload.clone()).is_ok()),
                // A SIP message with no connection to carry it opens one (RFC 3261 sections
                // 18.1.1 and 18.2.2): GW1 toward the inside, GW2 toward its outside next hop.
                // H.225.0 and H.245 open one only inside (GW1 calling its H.323 PBX): toward
                // the outside, a caller that closed its connection gets nothing more.
                None if t.protocol == Protocol::Sip
                    && (t.flow.transport == Transport::Tcp
                        || (t.side == Side::Outside && self.outside_tls.is_some())) =>
                {
                    self.connect(t.side, t.flow, StreamProtocol::Sip, t.payload.clone());
                    true
                }
                None if t.side == Side::Inside
                    && t.flow.transport == Transport::Tcp
                    && matches!(t.protocol, Protocol::H225 | Protocol::H245) =>
                {
                    let protocol = match t.protocol {
                        Protocol::H245 => StreamProtocol::H245,
                        _ => StreamProtocol::H225,
                    };
                    self.connect(t.side, t.flow, protocol, t.payload.clone());
                    true
                }
                None => false,
            },
        };
        if !sent {
            self.counters.send_failures += 1;
            return;
        }
        if self.tap.wants(t.protocol) {
            let call = self.engine.call_of(t.side, &t.flow, t.protocol, &t.payload);
            self.tap.observe(crate::live::tap::Seen {
                at: std::time::SystemTime::now(),
                half: self.half,
                side: t.side,
                transport: t.flow.transport,
                src: t.flow.local,
                dst: t.flow.remote,
                protocol: t.protocol,
                call,
                payload: t.payload.clone(),
            });
        }
        let c = &mut self.counters;
        let n = match (t.side, t.protocol) {
            // H.225.0, H.245 and RAS count with the signalling.
            (Side::Outside, Protocol::Sip | Protocol::H225 | Protocol::H245 | Protocol::Ras) => {
                &mut c.outside_sip_sent
            }
            (Side::Outside, Protocol::Rtp) => &mut c.outside_rtp_sent,
            (Side::Outside, Protocol::Rtcp) => &mut c.outside_rtcp_sent,
            (Side::Inside, Protocol::Sip | Protocol::H225 | Protocol::H245 | Protocol::Ras) => {
                &mut c.inside_sip_sent
            }
            (Side::Inside, Protocol::Rtp) => &mut c.inside_rtp_sent,
            (Side::Inside, Protocol::Rtcp) => &mut c.inside_rtcp_sent,
        };
        *n += 1;
    }

    /// Hands the media frames of this drain to the tunnel's writer in one message (one
    /// wake-up, one TLS write for all of them); a full queue drops them all, counted.
    fn flush_media(&mut self) {
        if self.media_out.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.media_out);
        let n = batch.len() as u64;
        let sent = self
            .tunnel
            .as_ref()
            .is_some_and(|link| link.media.try_send(batch).is_ok());
        if !sent {
            self.counters.send_failures += n;
        }
    }

    fn tunnel_out(&mut self, t: TunnelOut) {
        let Some(link) = &self.tunnel else {
            self.counters.send_failures += 1;
            return;
        };
        let ok = match t {
            TunnelOut::Meta(frame) => {
                self.counters.tunnel_meta_sent += 1;
                if link.meta.try_send(frame).is_err() {
                    self.counters.meta_queue_full += 1;
                    self.tunnel_lost("Meta queue full: the peer stopped reading");
                    return;
                }
                true
            }
            TunnelOut::Media { stream, rtcp, data } => {
                self.counters.tunnel_media_sent += 1;
                self.media_out.push((stream, rtcp, data));
                true
            }
        };
        if !ok {
            self.counters.send_failures += 1;
        }
    }

    fn event(&mut self, e: Event) {
        if let (Some(w), Event::CallEnded(rec)) = (&self.records, &e) {
            w.submit((**rec).clone());
        }
        if let Event::CallEnded(rec) = &e {
            self.tap.call_ended(rec.call, self.half);
        }
        if !self.verbose {
            return;
        }
        match e {
            // Media drops are counted (stats, metrics, the call record), not logged one by one.
            Event::Report(r)
                if r.verdict == Verdict::Rejected
                    && matches!(r.protocol, Protocol::Sip | Protocol::H225 | Protocol::Ras) =>
            {
                let reason = r.reason.as_deref().unwrap_or("");
                let now = self.now();
                let from = self.source.map(|a| a.ip());
                if self.rejects.reject(now, from, reason) == RejectDecision::Summarise {
                    return;
                }
                let source = self.source.map(|a| a.to_string()).unwrap_or_default();
                let response = r.response.map(|c| format!(" ({c})")).unwrap_or_default();
                let msg = format_args!("rejected {:?} {}: {reason}{response}", r.side, r.summary);
                match r.call {
                    Some(call) => tracing::info!(
                        target: "sgw::reject",
                        half = self.half,
                        call,
                        source,
                        "{msg}"
                    ),
                    None => {
                        tracing::info!(target: "sgw::reject", half = self.half, source, "{msg}")
                    }
                }
            }
            Event::Report(r)
                if r.verdict == Verdict::Accepted
                    && matches!(r.protocol, Protocol::Sip | Protocol::H225 | Protocol::Ras)
                    && tracing::enabled!(target: "sgw::message", tracing::Level::DEBUG) =>
            {
                let source = self.source.map(|a| a.to_string()).unwrap_or_default();
                let msg = format_args!("accepted {:?} {}", r.side, r.summary);
                match r.call {
                    Some(call) => tracing::debug!(
                        target: "sgw::message",
                        half = self.half,
                        call,
                        source,
                        "{msg}"
                    ),
                    None => {
                        tracing::debug!(target: "sgw::message", half = self.half, source, "{msg}")
                    }
                }
            }
            Event::Meta { to_gw1, message } if tracing::enabled!(target: "sgw::meta", tracing::Level::TRACE) =>
            {
                use codecs::meta::Message as M;
                let kind = match &message {
                    M::Setup(_) => "Setup",
                    M::Progress(_) => "Progress",
                    M::Alerting(_) => "Alerting",
                    M::Answer(_) => "Answer",
                    M::Release(_) => "Release",
                    M::Dtmf(_) => "Dtmf",
                    M::MediaUpdate(_) => "MediaUpdate",
                    M::Keepalive(_) => "Keepalive",
                    _ => "message",
                };
                let to = if to_gw1 { "gw1" } else { "gw2" };
                match message.call() {
                    Some(call) => tracing::trace!(
                        target: "sgw::meta",
                        half = self.half,
                        call = call.0,
                        "Meta {kind} to {to}"
                    ),
                    None => {
                        tracing::trace!(target: "sgw::meta", half = self.half, "Meta {kind} to {to}")
                    }
                }
            }
            Event::CallEnded(rec) => tracing::info!(
                target: "sgw::call",
                half = self.half,
                call = rec.call,
                "call ended {}",
                serde_json::to_string(&rec).unwrap_or_default()
            ),
            _ => {}
        }
    }
}

/// Binds a UDP socket synchronously (the engine's request is served before its transmits),
/// with a receive buffer of [`SIGNALLING_RCVBUF`].
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    grow_receive_buffer(&s, addr);
    UdpSocket::from_std(s)
}

/// See [`Driver::injector`].
#[derive(Clone)]
pub struct Injector {
    tx: mpsc::Sender<Input>,
    side: Side,
    local: SocketAddr,
}

impl Injector {
    /// Queues a datagram from `remote`; false when the half's input queue is full or closed
    /// (the datagram is then dropped, as the socket would drop it).
    pub fn try_send(&self, remote: SocketAddr, data: Bytes) -> bool {
        let flow = Flow {
            transport: Transport::Udp,
            local: self.local,
            remote: unmap(remote),
        };
        self.tx
            .try_send(Input::Datagram {
                side: self.side,
                flow,
                data,
            })
            .is_ok()
    }
}

/// Asks for a receive buffer of [`SIGNALLING_RCVBUF`] (the kernel caps it at
/// `net.core.rmem_max`) and warns when it granted less than [`SIGNALLING_RCVBUF_LOW`].
///
/// The kernel's default (`net.core.rmem_default`, 208 KiB) holds about a hundred SIP datagrams:
/// a 30 ms pause of the reader (the host's other work, or the engine task busy) at 1,500
/// calls/s (4,500 datagrams/s on each SIP socket) overflows it, and the datagrams dropped
/// come back only with the peer's retransmission, 500 ms later (timer A/G): the "stalls of
/// half a second" seen under load were these drops.
fn grow_receive_buffer(s: &std::net::UdpSocket, addr: SocketAddr) {
    let sock = socket2::SockRef::from(s);
    let _ = sock.set_recv_buffer_size(SIGNALLING_RCVBUF);
    // Linux reports twice what it grants (the doubled value includes its bookkeeping).
    let granted = sock.recv_buffer_size().unwrap_or(0) / 2;
    if granted < SIGNALLING_RCVBUF_LOW {
        tracing::warn!(
            "UDP socket {addr}: receive buffer of {granted} bytes (asked {SIGNALLING_RCVBUF}): \
             raise net.core.rmem_max, or datagrams are dropped in bursts of load"
        );
    }
}

async fn udp_reader(
    socket: Arc<UdpSocket>,
    side: Side,
    local: SocketAddr,
    size: usize,
    tx: mpsc::Sender<Input>,
) {
    let mut buf = vec![0u8; size];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                let flow = Flow {
                    transport: Transport::Udp,
                    local,
                    remote: unmap(remote),
                };
                if tx.send(Input::Datagram { side, flow, data }).await.is_err() {
                    return;
                }
            }
            // ICMP errors reported on the socket and the like: keep reading.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub(crate) fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

async fn tcp_accept(
    listener: TcpListener,
    side: Side,
    protocol: StreamProtocol,
    next: Arc<AtomicU64>,
    tx: mpsc::Sender<Input>,
    gate: Arc<TcpGate>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over a cap: the stream is dropped here, which closes it.
        let Some(slot) = gate.admit(unmap(remote).ip()) else {
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnId(next.fetch_add(1, Ordering::Relaxed));
        let mut flow = Flow {
            transport: Transport::Tcp,
            local: unmap(local),
            remote: unmap(remote),
        };
        let idle = Some((gate.limits.idle_timeout, gate.clone()));
        let tx = tx.clone();
        match &tls {
            None => {
                let (r, w) = stream.into_split();
                tokio::spawn(serve_stream(
                    r,
                    w,
                    conn,
                    flow,
                    side,
                    protocol,
                    tx,
                    Some(slot),
                    idle,
                ));
            }
            Some(acceptor) => {
                flow.transport = Transport::Tls;
                let accept = acceptor.accept(stream);
                let gate = gate.clone();
                tokio::spawn(async move {
                    // A peer that never completes its handshake holds its slot no longer
                    // than this; one that fails it is closed (and counted by the gate).
                    match tokio::time::timeout(gate.limits.handshake_timeout, accept).await {
                        Ok(Ok(s)) => {
                            let (r, w) = tokio::io::split(s);
                            let r = BufferedRead(r);
                            serve_stream(r, w, conn, flow, side, protocol, tx, Some(slot), idle)
                                .await;
                        }
                        _ => {
                            gate.tls_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }
    }
}

/// Opens a SIP connection the engine needs (a request with no connection to carry it). `flow`
/// is the engine's view of it: its own SIP address and the peer.
#[allow(clippy::too_many_arguments)]
async fn tcp_connect(
    flow: Flow,
    side: Side,
    protocol: StreamProtocol,
    conn: ConnId,
    tx: mpsc::Sender<Input>,
    slot: TcpSlot,
    gate: Arc<TcpGate>,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
) {
    let connect = tokio::net::TcpStream::connect(flow.remote);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => stream,
        _ => {
            let _ = tx.send(Input::ConnectFailed { flow, side }).await;
            return;
        }
    };
    let idle = Some((gate.limits.idle_timeout, gate.clone()));
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            let (r, w) = stream.into_split();
            serve_stream(r, w, conn, flow, side, protocol, tx, Some(slot), idle).await;
        }
        Some((connector, name)) => {
            let handshake = connector.connect(name, stream);
            match tokio::time::timeout(gate.limits.handshake_timeout, handshake).await {
                Ok(Ok(s)) => {
                    let (r, w) = tokio::io::split(s);
                    let r = BufferedRead(r);
                    serve_stream(r, w, conn, flow, side, protocol, tx, Some(slot), idle).await;
                }
                _ => {
                    gate.tls_failed.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(Input::ConnectFailed { flow, side }).await;
                }
            }
        }
    }
}

/// Reads a stream connection a chunk at a time.
trait ReadChunk: Send + 'static {
    /// The next bytes; empty at the end of the stream.
    fn read_chunk(&mut self) -> impl std::future::Future<Output = std::io::Result<Bytes>> + Send;
}

/// A plain TCP connection holds a read buffer only while there is something to read:
/// thousands of quiet connections hold none.
impl ReadChunk for tokio::net::tcp::OwnedReadHalf {
    async fn read_chunk(&mut self) -> std::io::Result<Bytes> {
        loop {
            self.readable().await?;
            // Readiness can be spurious: the buffer is dropped again before waiting.
            let mut buf = vec![0u8; STREAM_READ];
            match self.try_read(&mut buf) {
                Ok(n) => return Ok(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Any other stream (TLS, which buffers records itself), read into a fresh buffer.
struct BufferedRead<R>(R);

impl<R: AsyncRead + Unpin + Send + 'static> ReadChunk for BufferedRead<R> {
    async fn read_chunk(&mut self) -> std::io::Result<Bytes> {
        let mut buf = vec![0u8; STREAM_READ];
        let n = self.0.read(&mut buf).await?;
        buf.truncate(n);
        Ok(Bytes::from(buf))
    }
}

/// Reads and writes one stream connection for the engine task until either side closes it
/// or (with `idle`) it has been quiet both ways for the idle timeout.
#[allow(clippy::too_many_arguments)]
async fn serve_stream<R: ReadChunk, W: AsyncWrite + Unpin + Send + 'static>(
    mut r: R,
    mut w: W,
    conn: ConnId,
    flow: Flow,
    side: Side,
    protocol: StreamProtocol,
    tx: mpsc::Sender<Input>,
    slot: Option<TcpSlot>,
    idle: Option<(Duration, Arc<TcpGate>)>,
) {
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(STREAM_QUEUE);
    // Milliseconds since `opened` of the last byte either way.
    let opened = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let last_w = last.clone();
    tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if w.write_all(&b).await.is_err() {
                return;
            }
            last_w.store(millis_since(opened), Ordering::Relaxed);
        }
    });
    let opened_input = Input::StreamOpened {
        conn,
        flow,
        side,
        protocol,
        writer: wtx,
    };
    if tx.send(opened_input).await.is_err() {
        return;
    }
    let _slot = slot;
    loop {
        let read = r.read_chunk();
        let result = match &idle {
            Some((timeout, gate)) => {
                let quiet = Duration::from_millis(
                    millis_since(opened).saturating_sub(last.load(Ordering::Relaxed)),
                );
                let Some(left) = timeout.checked_sub(quiet).filter(|d| !d.is_zero()) else {
                    gate.idle_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                match tokio::time::timeout(left, read).await {
                    // Woken by the deadline: the loop checks whether a write moved it.
                    Err(_) => continue,
                    Ok(r) => r,
                }
            }
            None => read.await,
        };
        match result {
            Err(_) => break,
            Ok(buf) if buf.is_empty() => break,
            Ok(data) => {
                last.store(millis_since(opened), Ordering::Relaxed);
                if tx.send(Input::Stream { conn, data }).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Input::StreamClosed { conn }).await;
}

fn millis_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The keepalive interval of a tunnel, its cover traffic, and the media workers that relay
/// what its media connection carries.
#[derive(Clone)]
struct TunnelShape {
    keepalive: Duration,
    cover: Option<crate::live::cover::CoverTraffic>,
    media: Option<Arc<crate::live::media_plane::Shared>>,
}

/// GW2's side of the tunnel: pairs one signalling and one media connection of the same GW1
/// instance into a session. A half pair not completed within the handshake timeout is dropped,
/// so a GW1 that died between its two connections does not block its successor.
async fn tunnel_server(
    mut server: TunnelServer,
    tx: mpsc::Sender<Input>,
    shape: TunnelShape,
    half: &'static str,
) {
    let mut pending: Option<(TunnelConnection, Instant)> = None;
    loop {
        let expiry = pending
            .as_ref()
            .map(|(_, at)| *at + crate::live::tunnel::DEFAULT_HANDSHAKE_TIMEOUT);
        let event = tokio::select! {
            e = server.next_event() => e,
            () = async {
                match expiry {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                pending = None;
                continue;
            }
        };
        match event {
            Ok(ServerEvent::Connected(c)) => {
                let c = *c;
                let other = match pending.take() {
                    Some((p, _)) if p.peer.instance == c.peer.instance && p.kind != c.kind => p,
                    Some(old) if old.0.peer.instance == c.peer.instance => {
                        // Same kind again: keep the newer.
                        drop(old);
                        pending = Some((c, Instant::now()));
                        continue;
                    }
                    _ => {
                        pending = Some((c, Instant::now()));
                        continue;
                    }
                };
                let pair = if c.kind == ConnectionKind::Signalling {
                    TunnelPair {
                        signalling: c,
                        media: other,
                    }
                } else {
                    TunnelPair {
                        signalling: other,
                        media: c,
                    }
                };
                tokio::spawn(session(pair, tx.clone(), shape.clone()));
            }
            Ok(ServerEvent::Rejected { remote, error }) => {
                warn(
                    half,
                    format_args!("tunnel connection from {remote} refused: {error}"),
                );
            }
            Err(_) => return,
        }
    }
}

/// GW1's side: connects both connections, runs the session until it ends, and reconnects.
async fn tunnel_client(
    mut client: TunnelClient,
    tx: mpsc::Sender<Input>,
    shape: TunnelShape,
    half: &'static str,
) {
    loop {
        match client.connect_pair().await {
            Ok(pair) => session(pair, tx.clone(), shape.clone()).await,
            Err(e) => {
                warn(half, format_args!("tunnel to GW2 failed: {e}"));
                // connect_pair only gives up on errors retrying cannot fix; an operator may
                // still fix GW2, so try again slowly.
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// One tunnel: reads and writes both connections until either fails, is silent for
/// [`DEAD_AFTER_INTERVALS`] keepalive intervals, or the driver drops its queues.
async fn session(pair: TunnelPair, tx: mpsc::Sender<Input>, shape: TunnelShape) {
    let TunnelShape {
        keepalive,
        cover,
        media,
    } = shape;
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    let dead_after = keepalive.saturating_mul(DEAD_AFTER_INTERVALS);
    let remote = pair.signalling.remote;
    let (sig_r, sig_w) = tokio::io::split(pair.signalling.with_dead_peer_timeout(dead_after));
    let (med_r, med_w) = tokio::io::split(pair.media.with_dead_peer_timeout(dead_after));
    let (meta_tx, meta_rx) = mpsc::channel(META_QUEUE);
    let (media_tx, media_rx) = mpsc::channel(MEDIA_BATCHES);
    let up = Input::TunnelUp {
        generation,
        remote,
        meta: meta_tx,
        media: media_tx,
    };
    if tx.send(up).await.is_err() {
        return;
    }
    let reason = tokio::select! {
        r = read_meta(sig_r, generation, &tx) => r,
        r = read_media(med_r, generation, &tx, media.as_deref()) => r,
        r = write_meta(sig_w, meta_rx) => r,
        r = async {
            match cover {
                Some(c) => write_media_shaped(med_w, media_rx, c).await,
                None => write_media(med_w, media_rx, keepalive).await,
            }
        } => r,
    };
    let _ = tx.send(Input::TunnelDown { generation, reason }).await;
}

async fn read_meta<R: AsyncRead + Unpin>(
    mut r: R,
    generation: u64,
    tx: &mpsc::Sender<Input>,
) -> String {
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => return "signalling connection closed by the peer".to_owned(),
            Ok(n) => n,
            Err(e) => return format!("signalling connection: {e}"),
        };
        reader.push(buf.get(..n).unwrap_or_default());
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => {
                    let frame = Bytes::copy_from_slice(f);
                    if tx
                        .send(Input::TunnelMeta { generation, frame })
                        .await
                        .is_err()
                    {
                        return "gateway stopping".to_owned();
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("bad Meta frame: {e}"),
            }
        }
    }
}

/// Reads the tunnel's media connection: the media workers relay its packets to the peers of
/// their streams from here, or the engine does (see [`crate::live::media_plane`]).
async fn read_media<R: AsyncRead + Unpin>(
    mut r: R,
    generation: u64,
    tx: &mpsc::Sender<Input>,
    workers: Option<&crate::live::media_plane::Shared>,
) -> String {
    let mut framer = MediaFramer::new();
    let mut buf = vec![0u8; 64 * 1024];
    // The packets of one read, copied back to back into one buffer and handed on as slices
    // of it: one allocation and one channel message per read, not per packet.
    let mut staged = bytes::BytesMut::new();
    let mut heads: Vec<(StreamId, bool, usize)> = Vec::new();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => return "media connection closed by the peer".to_owned(),
            Ok(n) => n,
            Err(e) => return format!("media connection: {e}"),
        };
        framer.push(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_frame() {
                Ok(Some((repr, packet))) => {
                    if repr.cover {
                        continue;
                    }
                    staged.extend_from_slice(packet);
                    heads.push((repr.stream, repr.rtcp, packet.len()));
                }
                Ok(None) => break,
                Err(e) => return format!("bad media frame: {e}"),
            }
        }
        if heads.is_empty() {
            continue;
        }
        let mut packets = Vec::with_capacity(heads.len());
        for (stream, rtcp, len) in heads.drain(..) {
            let len = len.min(staged.len());
            packets.push((stream, rtcp, staged.split_to(len).freeze()));
        }
        let at = Instant::now();
        let packets = match workers {
            Some(w) => match w.relay_from_tunnel(packets, at.into_std()) {
                Some(back) => back,
                None => continue,
            },
            None => packets,
        };
        let input = Input::TunnelMedia {
            generation,
            packets,
            at,
        };
        if tx.send(input).await.is_err() {
            return "gateway stopping".to_owned();
        }
    }
}

async fn write_meta<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Bytes>) -> String {
    let mut buf = Vec::new();
    while let Some(frame) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&frame);
        while buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(f) => buf.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        if let Err(e) = write_flush(&mut w, &buf).await {
            return format!("signalling connection: {e}");
        }
    }
    let _ = w.shutdown().await;
    "closed by this gateway".to_owned()
}

/// [`write_media`] at the constant rate of `cover` (see [`crate::live::cover`]): one write of
/// the same size every interval, media first, padding after.
async fn write_media_shaped<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<MediaBatch>,
    cover: crate::live::cover::CoverTraffic,
) -> String {
    let mut pending = std::collections::VecDeque::new();
    let mut buf = Vec::with_capacity(cover.tick_bytes);
    let mut tick = tokio::time::interval(cover.interval);
    // Late ticks are caught up (Burst): the average rate stays the budget whatever the load,
    // so a busier gateway (more calls) does not write less.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                while let Ok(batch) = rx.try_recv() {
                    for p in batch {
                        if pending.len() < MEDIA_QUEUE {
                            pending.push_back(p);
                        }
                    }
                }
                crate::live::cover::fill_tick(&mut pending, cover.tick_bytes, &mut buf);
                if let Err(e) = write_flush(&mut w, &buf).await {
                    return format!("media connection: {e}");
                }
            }
            p = rx.recv() => match p {
                // More than the queue holds is dropped, as UDP would.
                Some(batch) => {
                    for p in batch {
                        if pending.len() < MEDIA_QUEUE {
                            pending.push_back(p);
                        }
                    }
                }
                None => {
                    let _ = w.shutdown().await;
                    return "closed by this gateway".to_owned();
                }
            },
        }
    }
}

async fn write_media<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<MediaBatch>,
    keepalive: Duration,
) -> String {
    let mut buf = Vec::new();
    // One timer, pushed back after each write (cheap: a later deadline is only noted), not a
    // `timeout` per batch that would enter and leave the runtime's timer wheel per packet.
    let idle = tokio::time::sleep(keepalive);
    tokio::pin!(idle);
    loop {
        buf.clear();
        let next = tokio::select! {
            biased;
            batch = rx.recv() => Ok(batch),
            () = &mut idle => Err(()),
        };
        match next {
            Ok(Some(batch)) => {
                encode_media(&batch, &mut buf);
                // What else is queued goes in the same write (no waiting for more: the latency
                // of the first packet is not traded for fewer writes).
                while buf.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(batch) => encode_media(&batch, &mut buf),
                        Err(_) => break,
                    }
                }
            }
            Ok(None) => {
                let _ = w.shutdown().await;
                return "closed by this gateway".to_owned();
            }
            // Idle for a keepalive interval: a cover frame proves we are alive (TUNNEL.md §7).
            Err(_) => {
                let _ = MediaRepr::COVER.encode(&[], &mut buf);
            }
        }
        if let Err(e) = write_flush(&mut w, &buf).await {
            return format!("media connection: {e}");
        }
        idle.as_mut().reset(Instant::now() + keepalive);
    }
}

/// Appends the frames of `batch` to `buf`.
fn encode_media(batch: &MediaBatch, buf: &mut Vec<u8>) {
    for (stream, rtcp, data) in batch {
        let repr = MediaRepr {
            stream: *stream,
            rtcp: *rtcp,
            cover: false,
        };
        // A packet over the frame limit is dropped (the engine caps media far below).
        let _ = repr.encode(data, buf);
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> std::io::Result<()> {
    w.write_all(buf).await?;
    w.flush().await
}

/// Why a half could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
}

/// Binds a UDP socket, naming what it is for in the error.
pub fn bind_udp_for(what: &'static str, addr: SocketAddr) -> Result<UdpSocket, StartError> {
    bind_udp(addr).map_err(|source| StartError::Bind { what, addr, source })
}

/// Binds a TCP listener, naming what it is for in the error.
pub async fn bind_tcp_for(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Announced ports are opened from the stock bound ahead (counted, no bind here); a port another program holds is refused as before; one
    /// not announced is bound here (counted).
    #[tokio::test]
    async fn the_live_binder_opens_announced_ports_ready_and_refuses_held_ones() {
        use crate::live::prebind::tests::{free_pairs, ip};
        let ports = free_pairs(4);
        let addr = |i: usize| SocketAddr::new(ip(), ports[i]);
        let held = std::net::UdpSocket::bind(addr(1)).unwrap();
        let ops = Arc::new(Mutex::new(Vec::new()));
        let mut b = LiveBinder {
            ops: ops.clone(),
            prebinder: Prebinder::new("test-bind".into()),
            workers: true,
        };
        let counters = b.prebinder.counters.clone();
        let count = || {
            (
                counters.prebound.load(Ordering::Relaxed),
                counters.inline.load(Ordering::Relaxed),
            )
        };
        b.prepare(Side::Outside, ip(), &mut ports[..3].iter().copied());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b.prebinder.stock() != (2, 1, false) {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                b.prebinder.stock()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(b.open(Side::Outside, addr(0)));
        assert_eq!(count(), (1, 0));
        assert!(!b.open(Side::Outside, addr(1)), "a held port is refused");
        assert_eq!(count(), (1, 0));
        assert!(b.open(Side::Outside, addr(2)));
        assert!(b.open(Side::Outside, addr(3)), "not announced: bound here");
        assert_eq!(count(), (2, 1));
        drop(held);
        let opened: Vec<SocketAddr> = ops
            .lock()
            .unwrap()
            .iter()
            .filter_map(|op| match op {
                SocketOp::Opened { local, socket } => {
                    assert_eq!(socket.local_addr().unwrap(), *local);
                    Some(*local)
                }
                _ => None,
            })
            .collect();
        let pair = |i: usize| [addr(i), SocketAddr::new(ip(), ports[i] + 1)];
        assert_eq!(opened, [pair(0), pair(2), pair(3)].concat());
    }

    /// The signalling sockets get the larger receive buffer, as far as the kernel allows.
    #[tokio::test]
    async fn signalling_sockets_get_a_large_receive_buffer() {
        let s = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let granted = socket2::SockRef::from(&s).recv_buffer_size().unwrap() / 2;
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(SIGNALLING_RCVBUF);
        assert!(
            granted >= SIGNALLING_RCVBUF.min(max),
            "granted {granted}, rmem_max {max}"
        );
    }
}
