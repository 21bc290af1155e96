//! What a half's driver hands the HEP export ([`super::hep`]) and the per-call capture
//! ([`super::recording`]): every SIP message, H.225.0 PDU and (for the capture) media packet
//! it received or sent, on its side, with the call it belongs to.
//!
//! The driver observes after the engine handled an input, and when a transmit was handed to
//! the operating system, so the engine knows the call by then ([`Engine::call_of`]). Nothing
//! here waits: each consumer has a bounded queue served by its own task, and an observation
//! that does not fit is dropped and counted. Stream connections are split into messages here
//! (SIP by Content-Length, H.225.0 by TPKT) with the same framers the engine uses.
//!
//! [`Engine::call_of`]: crate::engine::Engine::call_of

use crate::engine::{ConnId, Protocol, Side, StreamProtocol, Transport};
use bytes::Bytes;
use codecs::sip::StreamFramer;
use codecs::tpkt::{self, TpktFramer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Most stream connections split at once; a connection beyond is not observed (counted as
/// drops). The driver caps connections far below.
pub const MAX_FRAMERS: usize = 100_000;

/// One message or packet as it crossed the half's sockets.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Wall-clock time it was received or handed to the operating system.
    pub at: SystemTime,
    pub half: &'static str,
    pub side: Side,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub protocol: Protocol,
    /// The call id (the Meta call reference both halves share), when the engine has a call
    /// for it.
    pub call: Option<u32>,
    /// The message as on the wire: a whole SIP message, a whole TPKT packet, an RTP packet.
    pub payload: Bytes,
}

/// What a consumer counts; shared between the driver and the consumer's task.
#[derive(Debug, Default)]
pub struct TapCounters {
    /// Handed to the consumer's task.
    pub queued: AtomicU64,
    /// Not queued: the queue was full (or the consumer had stopped).
    pub dropped: AtomicU64,
}

impl TapCounters {
    pub fn get(&self) -> (u64, u64) {
        (
            self.queued.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// The sending end of a consumer's bounded queue: a tokio task's, or a thread's.
#[derive(Debug)]
pub enum Tx<T> {
    Task(tokio::sync::mpsc::Sender<T>),
    Thread(std::sync::mpsc::SyncSender<T>),
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        match self {
            Tx::Task(t) => Tx::Task(t.clone()),
            Tx::Thread(t) => Tx::Thread(t.clone()),
        }
    }
}

/// A bounded queue to a consumer's task; [`Sink::offer`] never waits.
#[derive(Debug, Clone)]
pub struct Sink<T> {
    tx: Tx<T>,
    pub counters: Arc<TapCounters>,
}

impl<T> Sink<T> {
    pub fn new(tx: Tx<T>) -> Self {
        Sink {
            tx,
            counters: Arc::new(TapCounters::default()),
        }
    }

    /// Another producer on the same queue, with counters of its own.
    pub fn for_another(&self) -> Self {
        Sink::new(self.tx.clone())
    }

    /// Queues `item`, or drops it (counted) when the queue is full.
    pub fn offer(&self, item: T) {
        let c = &self.counters;
        let queued = match &self.tx {
            Tx::Task(t) => t.try_send(item).is_ok(),
            Tx::Thread(t) => t.try_send(item).is_ok(),
        };
        if queued {
            c.queued.fetch_add(1, Ordering::Relaxed);
        } else {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Framer {
    Sip(StreamFramer),
    Tpkt(TpktFramer),
    /// Framing lost (the engine closes such a connection too): nothing more is observed.
    Lost,
}

/// The driver's observation point: the consumers configured, and the stream framers.
pub struct Tap {
    pub hep: Option<Sink<Seen>>,
    pub recording: Option<super::recording::RecordingSink>,
    framers: HashMap<ConnId, Framer>,
}

impl Tap {
    pub fn new() -> Self {
        Tap {
            hep: None,
            recording: None,
            framers: HashMap::new(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.hep.is_some() || self.recording.is_some()
    }

    /// Whether media packets are wanted (only the capture records them).
    pub fn wants_media(&self) -> bool {
        self.recording.is_some()
    }

    /// Whether an observation of `protocol` is wanted by anyone.
    pub fn wants(&self, protocol: Protocol) -> bool {
        match protocol {
            Protocol::Sip | Protocol::H225 => self.is_active(),
            Protocol::Rtp | Protocol::Rtcp | Protocol::H245 | Protocol::Ras => self.wants_media(),
        }
    }

    /// Hands `seen` to the consumers that want it.
    pub fn observe(&mut self, seen: Seen) {
        if let Some(r) = &self.recording {
            if seen.call.is_some() {
                r.offer(super::recording::Item::Packet(seen.clone()));
            }
        }
        if let Some(h) = &self.hep {
            if matches!(seen.protocol, Protocol::Sip | Protocol::H225) {
                h.offer(seen);
            }
        }
    }

    /// The call ended: its capture file is closed.
    pub fn call_ended(&mut self, call: u32, half: &'static str) {
        if let Some(r) = &self.recording {
            r.offer(super::recording::Item::End { call, half });
        }
    }

    /// Splits bytes received on stream connection `conn` into whole messages (each with the
    /// protocol it is), keeping partial ones for the next bytes.
    pub fn stream_messages(
        &mut self,
        conn: ConnId,
        declared: StreamProtocol,
        data: &[u8],
    ) -> Vec<(Protocol, Bytes)> {
        if !self.framers.contains_key(&conn) {
            if self.framers.len() >= MAX_FRAMERS {
                // Not observed: counted as dropped by each consumer.
                for c in [
                    self.hep.as_ref().map(|h| &h.counters),
                    self.recording.as_ref().map(|r| &r.counters),
                ]
                .into_iter()
                .flatten()
                {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return Vec::new();
            }
            if declared == StreamProtocol::H245 {
                // HEP carries SIP and H.225.0 only.
                return Vec::new();
            }
            let framer = if declared == StreamProtocol::H225 || tpkt::looks_like_tpkt(data) {
                Framer::Tpkt(TpktFramer::new())
            } else {
                Framer::Sip(StreamFramer::new())
            };
            self.framers.insert(conn, framer);
        }
        let mut out = Vec::new();
        let Some(framer) = self.framers.get_mut(&conn) else {
            return out;
        };
        match framer {
            Framer::Sip(f) => {
                f.push(data);
                while let Some(m) = f.next_message() {
                    match m {
                        Ok(m) => out.push((Protocol::Sip, m.raw().clone())),
                        Err(_) => {
                            *framer = Framer::Lost;
                            break;
                        }
                    }
                }
            }
            Framer::Tpkt(f) => {
                f.push(data);
                while let Some(p) = f.next_frame() {
                    match p {
                        Ok(p) if p.is_empty() => {}
                        Ok(p) => {
                            let mut buf = Vec::with_capacity(p.len() + tpkt::HEADER_LEN);
                            if tpkt::encode(&p, &mut buf).is_ok() {
                                out.push((Protocol::H225, Bytes::from(buf)));
                            }
                        }
                        Err(_) => {
                            *framer = Framer::Lost;
                            break;
                        }
                    }
                }
            }
            Framer::Lost => {}
        }
        out
    }

    /// The connection closed: its framer is dropped.
    pub fn stream_closed(&mut self, conn: ConnId) {
        self.framers.remove(&conn);
    }
}

impl Default for Tap {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's exporters, for the totals printed at exit.
struct Running {
    hep: Option<super::hep::Hep>,
    recording: Option<(
        Arc<super::recording::RecordingCounters>,
        std::thread::JoinHandle<()>,
    )>,
}

static RUNNING: std::sync::Mutex<Option<Running>> = std::sync::Mutex::new(None);

/// Starts `[hep]` and `[recording]` when configured and gives every driver of the process
/// its queue to them (each driver counts its own drops).
pub async fn attach(
    cfg: &crate::config::Config,
    drivers: &mut [super::runtime::Driver],
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut running = Running {
        hep: None,
        recording: None,
    };
    if let Some(h) = &cfg.hep {
        let hep = super::hep::start(h)
            .await
            .with_context(|| format!("starting the HEP export to {}", h.collector))?;
        for d in drivers.iter_mut() {
            d.set_hep(hep.sink.for_another());
        }
        println!("hep {} agent {}", h.collector, h.agent_id);
        running.hep = Some(hep);
    }
    if let Some(r) = &cfg.recording {
        let halves: Vec<&str> = drivers.iter().map(|d| d.control_handle().half).collect();
        let (rec, thread) =
            super::recording::start(r, &halves.join("-")).context("starting the call recording")?;
        for d in drivers.iter_mut() {
            d.set_recording(rec.sink.for_another());
        }
        println!("recording {} quota {} MiB", r.dir.display(), r.quota_mb);
        running.recording = Some((rec.counters, thread));
    }
    if let Ok(mut g) = RUNNING.lock() {
        *g = Some(running);
    }
    Ok(())
}

/// At exit, once the drivers have stopped: waits for the capture files to be closed and
/// prints the exporters' totals (`stats hep {..}`, `stats recording {..}`).
pub fn finish() {
    let running = RUNNING.lock().ok().and_then(|mut g| g.take());
    let Some(running) = running else { return };
    if let Some(h) = running.hep {
        let c = &h.counters;
        println!(
            "stats hep {{\"sent\":{},\"send_failures\":{},\"too_large\":{}}}",
            c.sent.load(Ordering::Relaxed),
            c.send_failures.load(Ordering::Relaxed),
            c.too_large.load(Ordering::Relaxed)
        );
    }
    if let Some((c, thread)) = running.recording {
        // The drivers' queues are gone: the writer closes every file and returns.
        let _ = thread.join();
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "stats recording {{\"files\":{},\"packets\":{},\"bytes\":{},\"quota_packets\":{},\"quota_calls\":{},\"calls_skipped\":{},\"write_errors\":{}}}",
            n(&c.files),
            n(&c.packets),
            n(&c.bytes),
            n(&c.quota_packets),
            n(&c.quota_calls),
            n(&c.calls_skipped),
            n(&c.write_errors)
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 4\r\n\r\nbody";
    const BYE: &[u8] = b"BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn sip_streams_split_into_whole_messages() {
        let mut tap = Tap::new();
        let conn = ConnId(1);
        let (a, b) = INVITE.split_at(30);
        assert!(tap.stream_messages(conn, StreamProtocol::Sip, a).is_empty());
        let mut rest = b.to_vec();
        rest.extend_from_slice(BYE);
        let got = tap.stream_messages(conn, StreamProtocol::Sip, &rest);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, &got[0].1[..]), (Protocol::Sip, INVITE));
        assert_eq!(&got[1].1[..], BYE);
        tap.stream_closed(conn);
        assert!(tap.framers.is_empty());
    }

    #[test]
    fn h225_streams_split_by_tpkt_and_keep_the_header() {
        let mut tap = Tap::new();
        let conn = ConnId(2);
        let mut wire = Vec::new();
        tpkt::encode(b"\x08\x02\x00\x07\x05abc", &mut wire).unwrap();
        let one = wire.clone();
        // A keepalive (empty TPKT) between two PDUs is not a message.
        wire.extend_from_slice(&[3, 0, 0, 4]);
        wire.extend_from_slice(&one);
        let got = tap.stream_messages(conn, StreamProtocol::H225, &wire);
        assert_eq!(got.len(), 2);
        assert!(got
            .iter()
            .all(|(p, b)| *p == Protocol::H225 && b[..] == one[..]));
        // Undeclared (a connection GW1 opened), recognised by its first bytes.
        let got = tap.stream_messages(ConnId(3), StreamProtocol::Sip, &one);
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn lost_framing_stops_observing_without_panicking() {
        let mut tap = Tap::new();
        let conn = ConnId(4);
        let junk = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n";
        // No Content-Length on a stream: framing is lost.
        assert!(tap
            .stream_messages(conn, StreamProtocol::Sip, junk)
            .is_empty());
        assert!(tap
            .stream_messages(conn, StreamProtocol::Sip, BYE)
            .is_empty());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let sink = Sink::new(Tx::Task(tx));
        sink.offer(1u8);
        sink.offer(2u8);
        assert_eq!(sink.counters.get(), (1, 1));
        let other = sink.for_another();
        other.offer(3u8);
        assert_eq!(other.counters.get(), (0, 1));
    }
}
