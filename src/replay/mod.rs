//! `sgw replay`: the offline driver. Each packet of a capture is given to the engine with its
//! capture timestamp as the clock; the engine's verdicts become the report, and what it sends
//! to the inside becomes `--out`. Nothing here decides what happens to a message.

mod report;

use crate::capture::{CaptureReader, CaptureWriter, EventKind, OutLink};
use crate::cli::{FamilyArg, ProtocolArg, ReplayArgs};
use crate::engine::{
    media::Head, parse_sip, ConnId, Engine, EngineConfig, Event, Family, Flow, InsideProtocol,
    Payload, Prepared, Side, Transport,
};
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

pub use report::{CallSummary, MessageEntry, ReplayReport, Summary};

/// How often (in capture time) the engine's timers are run.
const TIMER_TICK: Duration = Duration::from_millis(50);

/// Options of one replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub inside_family: Option<Family>,
    /// Inside protocol; `None`: the same as each call's outside protocol.
    pub inside_protocol: Option<InsideProtocol>,
    /// List accepted media packets too (rejected ones are always listed).
    pub all_media: bool,
    /// The `[policy]` of `--config`: access rules and emergency numbers.
    pub policy: Option<crate::config::PolicyConfig>,
    /// The `[auth]` of `--config`, with a fixed nonce key: calls without valid credentials are
    /// challenged as the live GW2 would (nonces of the captured gateway are not ours).
    pub auth: Option<crate::engine::auth::DigestConfig>,
}

/// The result of a replay: the report, and the error that stopped reading early, if any.
pub struct Replayed {
    pub report: ReplayReport,
    pub error: Option<crate::capture::CaptureError>,
}

/// Events read ahead per batch handed from the reader thread to the engine.
const BATCH: usize = 1024;

/// Bytes of lent payloads a batch's buffer keeps room for between batches: a batch of G.711
/// (172-byte RTP) and then some.
const LENT_KEPT: usize = BATCH * 256;

/// One batch from the reader thread: events, what the reader read of each for the engine,
/// the payloads its RTP and RTCP events lend ([`CaptureReader::lend_into`]), the file offset
/// reached, and the error that ended reading, if any (always in the last batch).
struct Batch {
    events: Vec<crate::capture::Event>,
    prepared: Vec<Prepared>,
    lent: Vec<u8>,
    offset: u64,
    error: Option<crate::capture::CaptureError>,
}

/// A handled batch's buffers, going back to the reader for reuse.
type Emptied = (Vec<crate::capture::Event>, Vec<Prepared>, Vec<u8>);

/// Reads the capture on its own thread (file, link layers, IP and TCP reassembly, and what
/// the engine would read first of a datagram, a function of its bytes alone: the parse of SIP,
/// the header of RTP and RTCP) while the engine runs on this one; batches keep the hand-over
/// cheap. RTP and RTCP payloads are lent: copied into the batch's own buffer, not shared.
fn read_ahead<R: std::io::Read + Send + 'static>(
    mut reader: CaptureReader<R>,
) -> (
    std::sync::mpsc::Receiver<Batch>,
    std::sync::mpsc::Sender<Emptied>,
    std::thread::JoinHandle<crate::capture::Stats>,
) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    // Emptied batches come back for reuse, so the hand-over allocates nothing in steady state.
    let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Emptied>();
    let handle = std::thread::spawn(move || {
        // A batch comes back with its events, which are dropped here: on the thread that made
        // their payloads (see `replay`).
        let fresh = |recycle: &std::sync::mpsc::Receiver<Emptied>| match recycle.try_recv() {
            Ok((mut events, mut prepared, mut lent)) => {
                events.clear();
                prepared.clear();
                lent.clear();
                // A batch of large datagrams grows its buffer; it is not kept that large.
                lent.shrink_to(LENT_KEPT);
                (events, prepared, lent)
            }
            Err(_) => (
                Vec::with_capacity(BATCH),
                Vec::with_capacity(BATCH),
                Vec::with_capacity(LENT_KEPT),
            ),
        };
        let (mut events, mut prepared, lent) = fresh(&recycle_rx);
        reader.lend_into(lent);
        loop {
            let (more, error) = match reader.read_into(&mut events, BATCH) {
                Ok(more) => (more, None),
                Err(e) => (false, Some(e)),
            };
            let lent = reader.lent();
            prepared.extend(events.iter().map(|ev| match &ev.kind {
                EventKind::Datagram { payload, .. } => {
                    parse_sip(payload).map_or(Prepared::Nothing, |p| Prepared::Sip(Box::new(p)))
                }
                EventKind::LentDatagram { at, .. } => {
                    Prepared::Media(Head::of(lent.get(at.clone()).unwrap_or_default()))
                }
                _ => Prepared::Nothing,
            }));
            let (next_events, next_prepared, next_lent) = if more {
                fresh(&recycle_rx)
            } else {
                Default::default()
            };
            let batch = Batch {
                events: std::mem::replace(&mut events, next_events),
                prepared: std::mem::replace(&mut prepared, next_prepared),
                lent: reader.take_lent(next_lent),
                offset: reader.offset(),
                error,
            };
            if tx.send(batch).is_err() || !more {
                break;
            }
        }
        reader.stats().clone()
    });
    (rx, recycle_tx, handle)
}

/// Replays a capture from any reader; `out` receives inside-bound traffic.
pub fn replay<R: std::io::Read + Send + 'static>(
    reader: CaptureReader<R>,
    opts: &ReplayOptions,
    mut out: Option<&mut CaptureWriter<std::io::BufWriter<std::fs::File>>>,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Replayed> {
    let config = EngineConfig {
        replay: true,
        inside_family: opts.inside_family,
        inside_protocol: opts.inside_protocol,
        report_accepted_media: opts.all_media,
        ..EngineConfig::default()
    };
    let mut config = config;
    if let Some(p) = &opts.policy {
        config.access = p.access_policy();
        if !p.emergency_numbers.is_empty() {
            config.emergency_numbers.clone_from(&p.emergency_numbers);
        }
    }
    config.auth.clone_from(&opts.auth);
    let mut engine = Engine::new(config);
    if out.is_none() {
        // Nothing is written: the summary only counts the transmits.
        engine.count_transmits_only();
    }
    let mut report = ReplayReport::default();
    let mut first_time: Option<Duration> = None;
    let mut last_tick = Duration::ZERO;
    let mut error = None;
    let (batches, recycle, reader) = read_ahead(reader);
    for mut batch in batches {
        progress(batch.offset);
        if let Some(e) = batch.error {
            error = Some(e);
        }
        // Events are handled in place and go back to the reader with the batch, which drops
        // them and reuses the batch's vectors: nothing is moved out of a batch, and what
        // dropping an event costs is paid on the thread that made it.
        for (ev, read) in batch.events.iter().zip(&mut batch.prepared) {
            let t0 = *first_time.get_or_insert(ev.time);
            let now = ev.time;
            if now >= last_tick + TIMER_TICK {
                engine.handle_timeout(now);
                last_tick = now;
                drain(&mut engine, &mut report, None, now, t0, out.as_deref_mut())?;
            }
            // What a drain reports a message against (frame, source, destination), built only
            // when there is something to drain: most packets (media counted, not reported or
            // queued) leave nothing.
            let pending = |e: &Engine| e.pending_transmits() > 0 || e.pending_events() > 0;
            if let Some((src, dst, payload)) = datagram(&ev.kind, &batch.lent) {
                let flow = Flow {
                    transport: Transport::Udp,
                    local: dst,
                    remote: src,
                };
                let read = std::mem::replace(read, Prepared::Nothing);
                engine.handle_datagram_parsed(now, flow, payload, read);
                if pending(&engine) {
                    let ctx = Some((ev.frame, src, dst));
                    drain(&mut engine, &mut report, ctx, now, t0, out.as_deref_mut())?;
                }
                continue;
            }
            match ev.kind {
                EventKind::StreamData {
                    conn,
                    src,
                    dst,
                    ref data,
                } => {
                    let flow = Flow {
                        transport: Transport::Tcp,
                        local: dst,
                        remote: src,
                    };
                    engine.handle_stream(now, stream_id(conn.0, src, dst), flow, data);
                    if pending(&engine) {
                        let ctx = Some((ev.frame, src, dst));
                        drain(&mut engine, &mut report, ctx, now, t0, out.as_deref_mut())?;
                    }
                }
                EventKind::StreamGap { conn, src, dst, .. } => {
                    engine.handle_stream_gap(now, stream_id(conn.0, src, dst));
                    if pending(&engine) {
                        drain(&mut engine, &mut report, None, now, t0, out.as_deref_mut())?;
                    }
                }
                EventKind::StreamClosed { conn, src, dst, .. } => {
                    engine.handle_stream_closed(now, stream_id(conn.0, src, dst));
                    engine.handle_stream_closed(now, stream_id(conn.0, dst, src));
                    if pending(&engine) {
                        drain(&mut engine, &mut report, None, now, t0, out.as_deref_mut())?;
                    }
                }
                _ => {
                    if pending(&engine) {
                        drain(&mut engine, &mut report, None, now, t0, out.as_deref_mut())?;
                    }
                }
            }
        }
        let _ = recycle.send((batch.events, batch.prepared, batch.lent));
    }
    // Let pending transactions and retransmission timers run out.
    let end = last_tick + Duration::from_secs(64);
    engine.handle_timeout(end);
    drain(
        &mut engine,
        &mut report,
        None,
        end,
        first_time.unwrap_or_default(),
        out,
    )?;
    let stats = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the capture reader thread failed"))?;
    let (to_inside, to_outside) = engine.counted_transmits();
    report.summary.inside_packets += to_inside;
    report.summary.outside_packets += to_outside;
    report.summary.packets = stats.packets;
    report.count(&engine.stats());
    report.capture = serde_json::to_value(&stats).unwrap_or_default();
    Ok(Replayed { report, error })
}

/// A UDP datagram's addresses and payload, shared or lent (from the batch's `lent` buffer).
fn datagram<'a>(
    kind: &'a EventKind,
    lent: &'a [u8],
) -> Option<(SocketAddr, SocketAddr, Payload<'a>)> {
    match kind {
        EventKind::Datagram { src, dst, payload } => Some((*src, *dst, Payload::Shared(payload))),
        EventKind::LentDatagram { src, dst, at } => Some((
            *src,
            *dst,
            Payload::Borrowed(lent.get(at.clone()).unwrap_or_default()),
        )),
        _ => None,
    }
}

/// The engine's stream key for one direction of a TCP connection.
fn stream_id(conn: u64, src: SocketAddr, dst: SocketAddr) -> ConnId {
    ConnId(conn << 1 | u64::from(src > dst))
}

/// Collects what the engine produced for the input just given.
fn drain(
    engine: &mut Engine,
    report: &mut ReplayReport,
    ctx: Option<(u64, SocketAddr, SocketAddr)>,
    now: Duration,
    t0: Duration,
    mut out: Option<&mut CaptureWriter<std::io::BufWriter<std::fs::File>>>,
) -> anyhow::Result<()> {
    while let Some(t) = engine.poll_transmit() {
        if t.side == Side::Inside {
            report.summary.inside_packets += 1;
            if let Some(w) = out.as_deref_mut() {
                match t.flow.transport {
                    Transport::Udp => w.write_udp(now, t.flow.local, t.flow.remote, &t.payload),
                    Transport::Tcp | Transport::Tls => {
                        w.write_tcp(now, t.flow.local, t.flow.remote, &t.payload)
                    }
                }
                .context("writing --out")?;
            }
        } else {
            report.summary.outside_packets += 1;
        }
    }
    while let Some(e) = engine.poll_event() {
        match e {
            Event::Report(r) => {
                let (frame, src, dst) = ctx.unwrap_or((0, unspecified(), unspecified()));
                report.messages.push(MessageEntry {
                    frame,
                    time: now.saturating_sub(t0).as_secs_f64(),
                    protocol: r.protocol,
                    src,
                    dst,
                    summary: r.summary,
                    verdict: r.verdict,
                    reason: r.reason,
                    response: r.response,
                    call: r.call,
                    rule: r.rule,
                });
            }
            Event::Meta { to_gw1, message } => report.meta(to_gw1, &message),
            Event::CallEnded(rec) => report.calls_ended.push(*rec),
        }
    }
    Ok(())
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// `sgw replay` as the CLI runs it: exit 0, 1 with `--fail-on-reject` and rejections, 2 when
/// the capture cannot be read (after printing what was read).
pub fn run(args: &ReplayArgs) -> anyhow::Result<u8> {
    let path = &args.capture;
    let reader =
        CaptureReader::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let opts = ReplayOptions {
        inside_family: args.inside_family.map(|f| match f {
            FamilyArg::Ipv4 => Family::V4,
            FamilyArg::Ipv6 => Family::V6,
        }),
        inside_protocol: args.inside.map(|p| match p {
            ProtocolArg::Sip => InsideProtocol::Sip,
            ProtocolArg::H323 => InsideProtocol::H323,
        }),
        all_media: args.all_media,
        policy: None,
        auth: None,
    };
    let mut opts = opts;
    if let Some(p) = &args.config {
        let text =
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let cfg = crate::config::Config::from_toml_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        opts.policy = Some(cfg.policy);
        if let Some(a) = &cfg.auth {
            opts.auth = Some(
                a.digest_config([0x5a; 32])
                    .map_err(|e| anyhow::anyhow!("[auth]: {e}"))?,
            );
        }
    }
    let mut writer = match &args.out {
        Some(p) => Some(
            CaptureWriter::create(p, OutLink::Ethernet)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = (std::io::stderr().is_terminal() && size > 8 << 20).then(|| {
        let b = indicatif::ProgressBar::new(size);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} [{bar:40}] {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let replayed = replay(reader, &opts, writer.as_mut(), |pos| {
        if let Some(b) = &bar {
            b.set_position(pos);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(w) = writer {
        w.finish().context("writing --out")?;
    }
    let rep = &replayed.report;
    if args.json {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer(&mut stdout, &rep.json())?;
        writeln!(stdout)?;
        stdout.flush()?;
    } else {
        print!("{}", rep.human(&path.display().to_string()));
    }
    if let Some(e) = replayed.error {
        eprintln!("sgw: {}: {e}", path.display());
        return Ok(2);
    }
    Ok(if args.fail_on_reject && rep.summary.engine.rejected > 0 {
        1
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Without `--out` the engine only counts its transmits; the report is the same as when
    /// they are queued and written.
    #[test]
    fn counting_transmits_reports_what_writing_them_does() {
        let dir = std::env::temp_dir().join(format!("sgw-replay-count-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "sipp-dtmf-info-and-rfc4733.pcap",
            "sipp-cancel-and-486.pcap",
            "baresip-call-sipp-uas.pcap",
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/sip")
                .join(name);
            let opts = ReplayOptions::default();
            let counted = replay(CaptureReader::open(&path).unwrap(), &opts, None, |_| {}).unwrap();
            let out = dir.join("out.pcap");
            let mut w = CaptureWriter::create(&out, OutLink::Ethernet).unwrap();
            let written = replay(
                CaptureReader::open(&path).unwrap(),
                &opts,
                Some(&mut w),
                |_| {},
            )
            .unwrap();
            w.finish().unwrap();
            let (c, w) = (&counted.report.summary, &written.report.summary);
            assert!(c.inside_packets > 0 && c.outside_packets > 0, "{name}");
            assert_eq!(
                (c.inside_packets, c.outside_packets),
                (w.inside_packets, w.outside_packets),
                "{name}"
            );
            assert_eq!(counted.report.to_json(), written.report.to_json(), "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
