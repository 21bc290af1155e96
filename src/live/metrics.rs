//! `GET /metrics`: the gateway's counters in the Prometheus text exposition format (0.0.4),
//! encoded with the Prometheus project's Rust client (`prometheus-client`).
//!
//! The engine task never waits for a scrape: each driver publishes a snapshot of its counters
//! (the same `Stats` and `DriverCounters` as the `stats` line at exit, plus the calls up, the
//! tunnel state and two histograms) into a shared [`Board`] once a second, holding its lock
//! only to swap the snapshot in. A scrape copies the snapshots out and encodes them, so a
//! scrape shows the counters as they were at most [`PUBLISH_INTERVAL`] ago.
//!
//! The HTTP side is a deliberately small HTTP/1.1 responder: one request per connection, the
//! request head capped at [`MAX_REQUEST`] bytes and [`REQUEST_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] connections at once (more are closed on accept), `GET /metrics` only
//! (another path is 404, another method 405).

use super::runtime::DriverCounters;
use crate::engine::calls::{CallProtocol, Direction};
use crate::engine::Stats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The port the demo tries first (Prometheus's registry of exporter ports lists 9464 for
/// OpenTelemetry-style exporters; any free port is used when it is taken).
pub const DEMO_PORT: u16 = 9464;
/// How often each driver publishes its snapshot.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// Largest request head read, in bytes; a longer one is answered 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time a connection has to send its request and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 16;
/// Tunnel media frames waiting for their UDP send to be timed, at most.
const MAX_MARKS: usize = 4096;

/// Upper bounds of the call setup time buckets, seconds.
pub const SETUP_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds of the tunnel-frame-in to UDP-out buckets, seconds (10 µs to 100 ms).
pub const TRANSIT_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1,
];

/// A histogram with fixed buckets, owned by one task (no atomics, no lock).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), then the overflow above the last bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts one observation of `v` seconds.
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(n) = self.counts.get_mut(i) {
            *n += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds the observations of `o` (same buckets).
    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum += o.sum;
        self.count += o.count;
    }

    /// (upper bound, count in that bucket) with `+Inf` last.
    fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// What one half publishes.
#[derive(Debug, Clone)]
pub struct HalfSnapshot {
    pub engine: Stats,
    pub driver: DriverCounters,
    pub tunnel_up: bool,
    pub calls_up: Vec<(CallProtocol, Direction, u64)>,
    pub setup: Histogram,
    pub transit: Histogram,
}

/// The snapshots of every half of this process, shared by the drivers and the HTTP task.
#[derive(Debug, Clone, Default)]
pub struct Board(Arc<Mutex<BTreeMap<&'static str, HalfSnapshot>>>);

impl Board {
    pub fn publish(&self, half: &'static str, snapshot: HalfSnapshot) {
        let old = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(half, snapshot);
        // The old snapshot is freed after the lock is released.
        drop(old);
    }

    fn snapshots(&self) -> BTreeMap<&'static str, HalfSnapshot> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The exposition text of the latest snapshots.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(BoardCollector(self.clone())));
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A driver's part: the histograms it keeps between snapshots, and the tunnel media frames whose UDP send it is waiting to time.
#[derive(Debug)]
pub struct DriverMetrics {
    board: Board,
    setup: Histogram,
    transit: Histogram,
    /// (transmit sequence number, when its tunnel frame was read).
    marks: VecDeque<(u64, Instant)>,
    /// Transmits polled from the engine so far.
    polled: u64,
}

impl DriverMetrics {
    pub fn new(board: Board) -> DriverMetrics {
        DriverMetrics {
            board,
            setup: Histogram::new(SETUP_BUCKETS),
            transit: Histogram::new(TRANSIT_BUCKETS),
            marks: VecDeque::new(),
            polled: 0,
        }
    }

    /// A tunnel media frame read at `at` made the engine queue transmits: the first of them,
    /// `queued_before` places behind the head of the queue, is its UDP send.
    pub fn mark(&mut self, queued_before: usize, at: Instant) {
        if self.marks.len() >= MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks
            .push_back((self.polled + queued_before as u64, at));
    }

    /// A transmit was polled from the engine and handed to the socket.
    pub fn transmitted(&mut self) {
        let seq = self.polled;
        self.polled += 1;
        while let Some(&(s, at)) = self.marks.front() {
            if s > seq {
                break;
            }
            self.marks.pop_front();
            if s == seq {
                self.transit.observe(at.elapsed().as_secs_f64());
            }
        }
    }

    /// A call was answered `setup` after its INVITE or Setup came in.
    /// Tunnel-frame-in to UDP-out times observed by the media workers.
    pub fn merge_transit(&mut self, h: &Histogram) {
        self.transit.merge(h);
    }

    pub fn call_setup(&mut self, setup: Duration) {
        self.setup.observe(setup.as_secs_f64());
    }

    pub fn publish(
        &self,
        half: &'static str,
        engine: &crate::engine::Engine,
        driver: DriverCounters,
        tunnel_up: bool,
    ) {
        self.board.publish(
            half,
            HalfSnapshot {
                engine: engine.stats(),
                driver,
                tunnel_up,
                calls_up: engine.calls_up_by_kind(),
                setup: self.setup.clone(),
                transit: self.transit.clone(),
            },
        );
    }
}

#[derive(Debug)]
struct BoardCollector(Board);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family being assembled: samples from every half.
#[derive(Debug)]
struct Family {
    kind: Kind,
    help: String,
    samples: Vec<(Vec<(String, String)>, u64)>,
}

/// Every family, by name (without `_total`, which the encoder adds to counters).
#[derive(Debug, Default)]
struct Families(BTreeMap<String, Family>);

impl Families {
    fn add(&mut self, name: &str, kind: Kind, help: &str, labels: &[(&str, &str)], v: u64) {
        let f = self.0.entry(name.to_owned()).or_insert_with(|| Family {
            kind,
            help: help.to_owned(),
            samples: Vec::new(),
        });
        f.samples.push((
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            v,
        ));
    }
}

/// Engine `Stats` fields that are sizes of tables now, not running totals.
const ENGINE_GAUGES: &[(&str, &str)] = &[
    ("calls_live", "Calls not yet ended."),
    (
        "calls_held",
        "Calls held in the call table (live and lingering).",
    ),
    ("media_streams", "Media streams held."),
    ("server_txns", "SIP server transactions held."),
    ("dialogs", "SIP dialogs held."),
    ("h323_state", "H.323 calls and streams held."),
    ("streams", "Stream connections the engine tracks."),
    (
        "limit_keys",
        "Sources held by the rate limiters and the block list.",
    ),
    ("blocked_sources", "Sources blocked now."),
];

fn u64_fields(v: &Value) -> Vec<(&str, u64)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn protocol_label(p: CallProtocol) -> &'static str {
    match p {
        CallProtocol::Sip => "sip",
        CallProtocol::H323 => "h323",
    }
}

fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::FromOutside => "from_outside",
        Direction::FromInside => "from_inside",
    }
}

/// The families of one half's snapshot (histograms aside).
fn half_families(half: &str, s: &HalfSnapshot, f: &mut Families) {
    use Kind::{Counter, Gauge};
    let h = [("half", half)];
    let engine = serde_json::to_value(&s.engine).unwrap_or(Value::Null);
    if let Some(m) = engine.as_object() {
        for (key, v) in m {
            let key = key.as_str();
            if let Some(n) = v.as_u64() {
                if let Some((_, help)) = ENGINE_GAUGES.iter().find(|(k, _)| *k == key) {
                    f.add(&format!("sgw_{key}"), Gauge, help, &h, n);
                } else if let Some(kind) = key.strip_suffix("_packets") {
                    f.add(
                        "sgw_media_packets",
                        Counter,
                        "Media packets received and judged (accepted or dropped), by protocol (rtp, rtcp).",
                        &[("half", half), ("protocol", kind)],
                        n,
                    );
                } else {
                    f.add(
                        &format!("sgw_{key}"),
                        Counter,
                        &format!("Engine counter `{key}` of the stats line."),
                        &h,
                        n,
                    );
                }
                continue;
            }
            match key {
                "admission" | "limits" => {
                    for (field, n) in u64_fields(v) {
                        if let Some(reason) = field.strip_prefix("refused_") {
                            f.add(
                                &format!("sgw_{key}_refused"),
                                Counter,
                                &format!("Calls or requests refused by the {key} checks, by reason (`{key}.refused_*` of the stats line)."),
                                &[("half", half), ("reason", reason)],
                                n,
                            );
                        } else {
                            f.add(
                                &format!("sgw_{key}_{field}"),
                                Counter,
                                &format!("Engine counter `{key}.{field}` of the stats line."),
                                &h,
                                n,
                            );
                        }
                    }
                }
                "media" => {
                    for (field, n) in u64_fields(v) {
                        let reason = match field {
                            "unknown_stream" => Some("unknown_stream"),
                            "dropped_source" => Some("source"),
                            "dropped_malformed" => Some("malformed"),
                            "dropped_payload_type" => Some("payload_type"),
                            "dropped_size" => Some("size"),
                            "dropped_srtp_auth" => Some("srtp_auth"),
                            "dropped_srtp_replay" => Some("srtp_replay"),
                            _ => None,
                        };
                        match reason {
                            Some(reason) => f.add(
                                "sgw_media_dropped",
                                Counter,
                                "Media packets dropped, by reason, as they are dropped.",
                                &[("half", half), ("reason", reason)],
                                n,
                            ),
                            None => f.add(
                                &format!("sgw_media_{field}"),
                                Counter,
                                &format!("Engine counter `media.{field}` of the stats line."),
                                &h,
                                n,
                            ),
                        }
                    }
                }
                "sip_outside" | "sip_inside" => {
                    let side = key.trim_start_matches("sip_");
                    for (field, n) in u64_fields(v) {
                        f.add(
                            &format!("sgw_sip_txn_{field}"),
                            Counter,
                            &format!("SIP transaction counter `{field}` per side (`sip_outside`, `sip_inside` of the stats line)."),
                            &[("half", half), ("side", side)],
                            n,
                        );
                    }
                }
                "registration" => {
                    // GW2's trunk registration ([gw2.registration]).
                    let registered = v["state"].as_str() == Some("registered");
                    f.add(
                        "sgw_registration_registered",
                        Gauge,
                        "1 while GW2's registration to its provider is bound, else 0.",
                        &h,
                        u64::from(registered),
                    );
                    for (field, n) in u64_fields(v) {
                        let kind = match field {
                            "expires_in" | "last_status" => Gauge,
                            _ => Counter,
                        };
                        f.add(
                            &format!("sgw_registration_{field}"),
                            kind,
                            &format!("`registration.{field}` of the stats line."),
                            &h,
                            n,
                        );
                    }
                }
                "ras" => {
                    // GW1's registration to its gatekeeper ([gw1.gatekeeper]).
                    let registered = v["state"].as_str() == Some("registered");
                    f.add(
                        "sgw_ras_registered",
                        Gauge,
                        "1 while GW1 is registered to its gatekeeper, else 0.",
                        &h,
                        u64::from(registered),
                    );
                    for (field, n) in u64_fields(v) {
                        let kind = match field {
                            "time_to_live" | "calls" => Gauge,
                            _ => Counter,
                        };
                        f.add(
                            &format!("sgw_ras_{field}"),
                            kind,
                            &format!("`ras.{field}` of the stats line (GW1's RAS client)."),
                            &h,
                            n,
                        );
                    }
                }
                "access_rules" => {
                    if let Some(rules) = v.as_object() {
                        for (rule, c) in rules {
                            for (verdict, n) in u64_fields(c) {
                                f.add(
                                    "sgw_access_rule_calls",
                                    Counter,
                                    "Calls allowed and denied by each access rule ([[policy.rules]]; `default-deny` is the implicit last one).",
                                    &[("half", half), ("rule", rule), ("verdict", verdict)],
                                    n,
                                );
                            }
                        }
                    }
                }
                _ => {
                    for (field, n) in u64_fields(v) {
                        f.add(
                            &format!("sgw_{key}_{field}"),
                            Counter,
                            &format!("Engine counter `{key}.{field}` of the stats line."),
                            &h,
                            n,
                        );
                    }
                }
            }
        }
    }
    let driver = serde_json::to_value(&s.driver).unwrap_or(Value::Null);
    for (field, n) in u64_fields(&driver) {
        match field {
            "tunnel_ups" => {
                f.add(
                    "sgw_tunnel_ups",
                    Counter,
                    "Times the tunnel came up (both connections).",
                    &h,
                    n,
                );
                f.add(
                    "sgw_tunnel_reconnects",
                    Counter,
                    "Times the tunnel came up again after the first time.",
                    &h,
                    n.saturating_sub(1),
                );
            }
            "tunnel_downs" => f.add(
                "sgw_tunnel_downs",
                Counter,
                "Times the tunnel was lost.",
                &h,
                n,
            ),
            "media_sockets_prebound" => f.add(
                "sgw_media_sockets_prebound",
                Counter,
                "Media ports whose RTP/RTCP sockets were bound ahead, off the engine's task.",
                &h,
                n,
            ),
            "media_sockets_bound_inline" => f.add(
                "sgw_media_sockets_bound_inline",
                Counter,
                "Media ports whose RTP/RTCP sockets were bound on the engine's task (none ready).",
                &h,
                n,
            ),
            _ => f.add(
                // `tcp_refused_total` is `sgw_driver_tcp_refused_total`, not `..._total_total`.
                &format!(
                    "sgw_driver_{}",
                    field.strip_suffix("_total").unwrap_or(field)
                ),
                Counter,
                &format!("Driver counter `{field}` of the stats line."),
                &h,
                n,
            ),
        }
    }
    f.add(
        "sgw_tunnel_up",
        Gauge,
        "1 while the tunnel to the other half is up.",
        &h,
        u64::from(s.tunnel_up),
    );
    for (p, d, n) in &s.calls_up {
        f.add(
            "sgw_calls_up",
            Gauge,
            "Calls up now, by the protocol and direction they arrived with.",
            &[
                ("half", half),
                ("protocol", protocol_label(*p)),
                ("direction", direction_label(*d)),
            ],
            *n,
        );
    }
}

/// GW1's front dispatcher (several GW2s): per half what it was given, and the front's own
/// counters under `half="gw1"`. Read at the scrape (atomics: the front never waits on it).
fn front_families(c: &super::front::FrontCounters, f: &mut Families) {
    use std::sync::atomic::Ordering::Relaxed;
    use Kind::{Counter, Gauge};
    for h in c.halves.get().map(Vec::as_slice).unwrap_or_default() {
        let labels = [("half", h.name)];
        for (name, help, v) in [
            (
                "sgw_front_dispatched",
                "Datagrams from sip_bind handed by GW1's front to this half.",
                &h.dispatched,
            ),
            (
                "sgw_front_new_calls",
                "New calls from the inside given by GW1's front to this half.",
                &h.new_calls,
            ),
            (
                "sgw_front_no_tunnel_up",
                "New calls given to this half while no half's tunnel was up (refused there).",
                &h.no_tunnel_up,
            ),
            (
                "sgw_front_queue_full",
                "Datagrams for this half dropped by GW1's front: its input queue was full.",
                &h.queue_full,
            ),
        ] {
            f.add(name, Counter, help, &labels, v.load(Relaxed));
        }
    }
    let labels = [("half", "gw1")];
    f.add(
        "sgw_front_call_ids",
        Gauge,
        "Call-IDs GW1's front remembers now (each call's half).",
        &labels,
        c.call_ids.load(Relaxed),
    );
    f.add(
        "sgw_front_call_ids_evicted",
        Counter,
        "Call-IDs GW1's front forgot before their time (more than 50,000 at once).",
        &labels,
        c.call_ids_evicted.load(Relaxed),
    );
    f.add(
        "sgw_front_unroutable",
        Counter,
        "Datagrams without a Call-ID at sip_bind, given to some half (which refuses them).",
        &labels,
        c.unroutable.load(Relaxed),
    );
}

fn encode_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    family: &Family,
) -> Result<(), std::fmt::Error> {
    let kind = match family.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    let mut m = encoder.encode_descriptor(name, &family.help, None, kind)?;
    for (labels, v) in &family.samples {
        let e = m.encode_family(labels)?;
        match family.kind {
            Kind::Counter => ConstCounter::new(*v).encode(e)?,
            Kind::Gauge => ConstGauge::new(i64::try_from(*v).unwrap_or(i64::MAX)).encode(e)?,
        }
    }
    Ok(())
}

impl Collector for BoardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots = self.0.snapshots();
        let mut families = Families::default();
        for (half, s) in &snapshots {
            half_families(half, s, &mut families);
        }
        if let Some(front) = super::front::running() {
            front_families(&front, &mut families);
        }
        for (name, family) in &families.0 {
            encode_family(&mut encoder, name, family)?;
        }
        for (name, help, pick) in [
            (
                "sgw_call_setup_seconds",
                "Time from a call's INVITE or Setup in to its answer.",
                (|s: &HalfSnapshot| &s.setup) as fn(&HalfSnapshot) -> &Histogram,
            ),
            (
                "sgw_tunnel_media_transit_seconds",
                "Time from a media frame read from the tunnel to its UDP packet sent.",
                |s: &HalfSnapshot| &s.transit,
            ),
        ] {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (half, s) in &snapshots {
                let labels = [("half", *half)];
                let h = pick(s);
                m.encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        h.sum,
                        h.count,
                        &h.buckets(),
                        None,
                    )?;
            }
        }
        Ok(())
    }
}

/// What the responder answers to one request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn plain(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }
}

/// The answer to a complete request head (up to the blank line): `GET /metrics` is 200 with
/// the exposition text; another target is 404; another method 405; anything else 400.
pub fn answer(head: &[u8], board: &Board) -> Response {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).unwrap_or_default().trim_end();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::plain(400, "Bad Request", "bad request line");
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") || method.is_empty() || target.is_empty() {
        return Response::plain(400, "Bad Request", "bad request line");
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Response::plain(404, "Not Found", "only /metrics is served");
    }
    if method != "GET" {
        return Response::plain(405, "Method Not Allowed", "only GET is served");
    }
    Response {
        status: 200,
        reason: "OK",
        content_type: prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        body: board.render(),
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, board: Board) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors and the like: try again shortly.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let board = board.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &board)).await;
        });
    }
}

async fn respond(mut s: TcpStream, board: &Board) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break answer(buf.get(..end).unwrap_or_default(), board);
        }
        if buf.len() >= MAX_REQUEST {
            break Response::plain(
                431,
                "Request Header Fields Too Large",
                "request head too large",
            );
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.reason,
        response.content_type,
        response.body.len()
    );
    if response.status == 405 {
        head.push_str("Allow: GET\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    s.write_all(response.body.as_bytes()).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn snapshot() -> HalfSnapshot {
        let mut engine = Stats {
            sip_messages: 7,
            calls_live: 2,
            ..Stats::default()
        };
        engine.admission.admitted = 5;
        engine.admission.refused_call_limit = 1;
        engine.limits.refused_source_calls = 3;
        engine.media.unknown_stream = 4;
        engine.media.dropped_size = 9;
        engine.sip_outside.client_timeouts = 6;
        engine.access_rules.insert(
            "inbound-did".to_owned(),
            crate::engine::access::RuleCounters {
                allowed: 8,
                denied: 0,
            },
        );
        let mut setup = Histogram::new(SETUP_BUCKETS);
        setup.observe(0.02);
        setup.observe(100.0);
        HalfSnapshot {
            engine,
            driver: DriverCounters {
                tunnel_ups: 3,
                media_sockets_prebound: 11,
                media_sockets_bound_inline: 1,
                ..DriverCounters::default()
            },
            tunnel_up: true,
            calls_up: vec![(CallProtocol::Sip, Direction::FromOutside, 2)],
            setup,
            transit: Histogram::new(TRANSIT_BUCKETS),
        }
    }

    fn line<'a>(text: &'a str, start: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} in\n{text}"))
    }

    #[test]
    fn renders_counters_gauges_and_histograms_per_half() {
        let board = Board::default();
        board.publish("gw2", snapshot());
        board.publish("gw1", snapshot());
        let t = board.render();
        assert_eq!(
            line(&t, "sgw_sip_messages_total{half=\"gw2\"}"),
            "sgw_sip_messages_total{half=\"gw2\"} 7"
        );
        assert!(t.contains("# TYPE sgw_sip_messages_total counter"));
        assert!(t.contains("# TYPE sgw_calls_live gauge"));
        assert!(t.contains("sgw_calls_live{half=\"gw1\"} 2"));
        assert!(t.contains("sgw_admission_admitted_total{half=\"gw2\"} 5"));
        assert!(t.contains("sgw_admission_refused_total{half=\"gw2\",reason=\"call_limit\"} 1"));
        assert!(t.contains("sgw_limits_refused_total{half=\"gw2\",reason=\"source_calls\"} 3"));
        assert!(t.contains("sgw_media_dropped_total{half=\"gw2\",reason=\"unknown_stream\"} 4"));
        assert!(t.contains("sgw_media_dropped_total{half=\"gw2\",reason=\"size\"} 9"));
        assert!(t.contains("sgw_sip_txn_client_timeouts_total{half=\"gw2\",side=\"outside\"} 6"));
        assert!(t.contains(
            "sgw_access_rule_calls_total{half=\"gw2\",rule=\"inbound-did\",verdict=\"allowed\"} 8"
        ));
        assert!(t.contains("sgw_tunnel_up{half=\"gw2\"} 1"));
        assert!(t.contains("sgw_tunnel_reconnects_total{half=\"gw2\"} 2"));
        assert!(t.contains("sgw_media_sockets_prebound_total{half=\"gw2\"} 11"));
        assert!(t.contains("sgw_media_sockets_bound_inline_total{half=\"gw1\"} 1"));
        assert!(t.contains("# HELP sgw_media_sockets_prebound_total Media ports"));
        assert!(
            t.contains("sgw_calls_up{half=\"gw2\",protocol=\"sip\",direction=\"from_outside\"} 2")
        );
        assert!(t.contains("sgw_call_setup_seconds_bucket{half=\"gw2\",le=\"0.025\"} 1"));
        assert!(t.contains("sgw_call_setup_seconds_bucket{half=\"gw2\",le=\"+Inf\"} 2"));
        assert!(t.contains("sgw_call_setup_seconds_count{half=\"gw1\"} 2"));
        // One TYPE line per family, however many halves.
        assert_eq!(t.matches("# TYPE sgw_media_dropped_total ").count(), 1);
        assert_eq!(t.matches("# TYPE sgw_call_setup_seconds ").count(), 1);
    }

    #[test]
    fn front_counters_per_half_and_its_own() {
        use std::sync::atomic::Ordering::Relaxed;
        let c = crate::live::front::FrontCounters::default();
        let halves = ["gw1-1", "gw1-2"].map(crate::live::front::HalfCounters::new);
        c.halves.set(halves.into_iter().collect()).unwrap();
        let hs = c.halves.get().unwrap();
        hs[0].dispatched.store(30, Relaxed);
        hs[1].new_calls.store(4, Relaxed);
        hs[1].queue_full.store(2, Relaxed);
        c.call_ids.store(12, Relaxed);
        c.unroutable.store(3, Relaxed);
        let mut f = Families::default();
        front_families(&c, &mut f);
        let sample = |name: &str, half: &str| {
            let fam = &f.0[name];
            fam.samples
                .iter()
                .find(|(l, _)| l == &vec![("half".to_owned(), half.to_owned())])
                .map(|(_, v)| (fam.kind, *v))
        };
        assert_eq!(
            sample("sgw_front_dispatched", "gw1-1"),
            Some((Kind::Counter, 30))
        );
        assert_eq!(
            sample("sgw_front_dispatched", "gw1-2"),
            Some((Kind::Counter, 0))
        );
        assert_eq!(
            sample("sgw_front_new_calls", "gw1-2"),
            Some((Kind::Counter, 4))
        );
        assert_eq!(
            sample("sgw_front_queue_full", "gw1-2"),
            Some((Kind::Counter, 2))
        );
        assert_eq!(
            sample("sgw_front_no_tunnel_up", "gw1-1"),
            Some((Kind::Counter, 0))
        );
        assert_eq!(sample("sgw_front_call_ids", "gw1"), Some((Kind::Gauge, 12)));
        assert_eq!(
            sample("sgw_front_unroutable", "gw1"),
            Some((Kind::Counter, 3))
        );
        assert_eq!(
            sample("sgw_front_call_ids_evicted", "gw1"),
            Some((Kind::Counter, 0))
        );
    }

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.buckets(), vec![(1.0, 2), (2.0, 1), (f64::INFINITY, 1)]);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn transit_marks_match_their_transmit() {
        let mut m = DriverMetrics::new(Board::default());
        m.transmitted(); // seq 0, unmarked
        m.mark(1, Instant::now()); // seq 2: one transmit queued ahead of it
        m.transmitted(); // seq 1
        assert_eq!(m.transit.count(), 0);
        m.transmitted(); // seq 2
        assert_eq!(m.transit.count(), 1);
        assert!(m.marks.is_empty());
    }

    #[test]
    fn requests_other_than_get_metrics_are_refused() {
        let b = Board::default();
        let status = |req: &str| answer(req.as_bytes(), &b).status;
        assert_eq!(status("GET /metrics HTTP/1.1\r\nHost: x"), 200);
        assert_eq!(status("GET /metrics?x=1 HTTP/1.0"), 200);
        assert_eq!(status("GET / HTTP/1.1"), 404);
        assert_eq!(status("GET /metricsx HTTP/1.1"), 404);
        assert_eq!(status("POST /metrics HTTP/1.1"), 405);
        assert_eq!(status("HEAD /metrics HTTP/1.1"), 405);
        assert_eq!(status("GET /metrics"), 400);
        assert_eq!(status("GET /metrics HTTP/2.0"), 400);
        assert_eq!(status("\u{0}\u{1}"), 400);
        assert_eq!(
            answer(b"GET /metrics HTTP/1.1", &b).content_type,
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }

    #[test]
    fn gatekeeper_registration_metrics() {
        use crate::engine::ras_client::{RasClient, RasConfig, RasState};
        let addr = |s: &str| s.parse().unwrap();
        let client = RasClient::new(
            RasConfig {
                gatekeeper: addr("127.0.0.1:1719"),
                discover: false,
                gatekeeper_id: None,
                h323_id: "sgw-gw1".to_owned(),
                e164: Vec::new(),
                time_to_live: 60,
                ras_address: addr("127.0.0.1:40000"),
                call_signal_address: addr("127.0.0.1:1720"),
            },
            std::time::Duration::ZERO,
        );
        let mut status = client.status();
        status.state = RasState::Registered;
        status.time_to_live = Some(60);
        status.keepalives = 4;
        status.timeouts = 1;
        let mut snap = snapshot();
        snap.engine.ras = Some(status);
        let board = Board::default();
        board.publish("gw1", snap);
        let t = board.render();
        assert!(t.contains("# TYPE sgw_ras_registered gauge"), "{t}");
        assert!(t.contains("sgw_ras_registered{half=\"gw1\"} 1"), "{t}");
        assert!(
            t.contains("sgw_ras_keepalives_total{half=\"gw1\"} 4"),
            "{t}"
        );
        assert!(t.contains("sgw_ras_timeouts_total{half=\"gw1\"} 1"), "{t}");
        assert!(t.contains("sgw_ras_time_to_live{half=\"gw1\"} 60"), "{t}");
        assert!(t.contains("sgw_ras_requests_total{half=\"gw1\"} 0"), "{t}");
    }
}
