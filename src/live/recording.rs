//! Per-call capture (`[recording]`): a pcap file per call with the signalling (SIP or
//! H.225.0) and media (RTP, RTCP) of the legs this process sees, like rtpengine's recording.
//! GW2 records the outside leg, GW1 the inside leg; with both halves in one process one file
//! holds both legs of the call.
//!
//! Files are `dir/sgw-call-<id>-<halves>-<UTC time of the call's first packet>.pcap` (halves:
//! `gw2`, `gw1`, or `gw2-gw1` for a process running both; a file is never overwritten), written with
//! replay's capture writer ([`crate::capture::CaptureWriter`]: Ethernet link, synthetic IP/UDP/TCP
//! headers, a TCP handshake before a stream's first bytes). A file is closed when every half
//! that wrote to it has seen its call end, and [`LINGER`] more for the last messages.
//!
//! # Off the call path
//!
//! The drivers queue packets (at most [`QUEUE`]; more are dropped and counted); one thread
//! writes the files. A write error is counted and closes that call's file.
//!
//! # The quota
//!
//! `quota_mb` bounds the bytes of the capture files in `dir`: those already there when the
//! gateway starts (`sgw-call-*.pcap`) plus what it writes. Recordings are evidence, so nothing
//! is deleted: when the next packet could take the total over the quota it is not written,
//! no new call is recorded from then on, and both are counted (`recording_quota_packets`,
//! `recording_quota_calls`). The operator frees space by moving files away; the count restarts
//! at the next start. At most [`MAX_OPEN`] calls are recorded at once; more are not recorded
//! (`recording_calls_skipped`).

use super::tap::{Seen, Sink};
use crate::capture::{CaptureWriter, OutLink, WriteError};
use crate::config::RecordingConfig;
use crate::engine::Transport;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

/// Packets waiting to be written, at most (per process).
pub const QUEUE: usize = 16_384;
/// Calls recorded at once, at most (one open file each).
pub const MAX_OPEN: usize = 1024;
/// Bytes a packet may add to a file beyond its payload (pcap record, Ethernet, IP and TCP
/// headers, a TCP handshake): the quota check counts this much so it is never overrun.
const OVERHEAD: u64 = 512;
/// Bytes of a pcap file header.
const FILE_HEADER: u64 = 24;
/// How long a call's file stays open after its end, for the last messages (a BYE's answer,
/// retransmissions).
pub const LINGER: Duration = Duration::from_secs(2);

/// What the drivers send the writer.
#[derive(Debug)]
pub enum Item {
    Packet(Seen),
    /// One half saw the call end.
    End {
        call: u32,
        half: &'static str,
    },
}

pub type RecordingSink = Sink<Item>;

/// What the writer counted.
#[derive(Debug, Default)]
pub struct RecordingCounters {
    pub files: AtomicU64,
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub quota_packets: AtomicU64,
    pub quota_calls: AtomicU64,
    pub calls_skipped: AtomicU64,
    pub write_errors: AtomicU64,
}

/// The recording of one process: the drivers' queue and the writer's counters.
#[derive(Debug)]
pub struct Recording {
    pub sink: RecordingSink,
    pub counters: Arc<RecordingCounters>,
}

/// Starts the writer thread of `[recording]` (join it once the drivers are gone: it closes
/// every file and returns). `halves` names the halves of this process in the file names (`gw2`, `gw1`, `gw2-gw1`).
pub fn start(
    cfg: &RecordingConfig,
    halves: &str,
) -> std::io::Result<(Recording, std::thread::JoinHandle<()>)> {
    if !cfg.dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("recording.dir {} is not a directory", cfg.dir.display()),
        ));
    }
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let counters = Arc::new(RecordingCounters::default());
    let mut w = Writer {
        dir: cfg.dir.clone(),
        halves: halves.to_owned(),
        quota: cfg.quota_mb.saturating_mul(1024 * 1024),
        used: existing_bytes(&cfg.dir),
        full: false,
        open: HashMap::new(),
        done: HashSet::new(),
        counters: counters.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("sgw-recording".into())
        .spawn(move || w.run(rx))?;
    let rec = Recording {
        sink: Sink::new(super::tap::Tx::Thread(tx)),
        counters,
    };
    Ok((rec, thread))
}

/// Bytes of the capture files already in `dir`.
fn existing_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("sgw-call-") && name.ends_with(".pcap")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Counts what goes through it into the writer's running total.
struct Counting<W> {
    inner: W,
    written: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct Open {
    pcap: CaptureWriter<Counting<BufWriter<File>>>,
    /// Halves that wrote to the file and have not yet seen the call end.
    wrote: HashSet<&'static str>,
    /// Halves that saw the call end.
    ended: HashSet<&'static str>,
    /// Every half that wrote saw the end: the file closes at this time (late packets, such as
    /// the answer to a BYE, still go in until then).
    closing: Option<Instant>,
    /// Bytes passed to the file, and those counted into `used` so far.
    written: Arc<AtomicU64>,
    counted: u64,
}

struct Writer {
    dir: PathBuf,
    halves: String,
    quota: u64,
    used: u64,
    /// The quota was reached: no new call is recorded.
    full: bool,
    open: HashMap<u32, Open>,
    /// Calls whose file was closed (or not opened): late packets do not open a new file.
    /// Bounded: cleared when it grows past a few times [`MAX_OPEN`].
    done: HashSet<u32>,
    counters: Arc<RecordingCounters>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Item>) {
        loop {
            match rx.recv_timeout(LINGER / 4) {
                Ok(Item::Packet(seen)) => self.packet(seen),
                Ok(Item::End { call, half }) => self.end(call, half),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.close_lingering();
        }
        for (_, o) in self.open.drain() {
            let _ = o.pcap.finish().map(|mut w| w.flush());
        }
    }

    fn packet(&mut self, seen: Seen) {
        let Some(call) = seen.call else { return };
        let need = seen.payload.len() as u64 + OVERHEAD;
        if !self.open.contains_key(&call) {
            if self.done.contains(&call) {
                return;
            }
            if self.full || self.used + FILE_HEADER + need > self.quota {
                self.full = true;
                self.counters.quota_calls.fetch_add(1, Ordering::Relaxed);
                self.forget(call);
                return;
            }
            if self.open.len() >= MAX_OPEN {
                self.counters.calls_skipped.fetch_add(1, Ordering::Relaxed);
                self.forget(call);
                return;
            }
            let path = self.dir.join(file_name(call, &self.halves, seen.at));
            let written = Arc::new(AtomicU64::new(0));
            // Never over another file (an earlier run's call with the same id and second).
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(WriteError::from);
            let pcap = created.and_then(|f| {
                let out = Counting {
                    inner: BufWriter::new(f),
                    written: written.clone(),
                };
                CaptureWriter::new(out, OutLink::Ethernet)
            });
            match pcap {
                Ok(pcap) => {
                    self.counters.files.fetch_add(1, Ordering::Relaxed);
                    self.open.insert(
                        call,
                        Open {
                            pcap,
                            wrote: HashSet::new(),
                            ended: HashSet::new(),
                            closing: None,
                            written,
                            counted: 0,
                        },
                    );
                }
                Err(_) => {
                    self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    self.forget(call);
                    return;
                }
            }
        }
        if self.used + need > self.quota {
            self.full = true;
            self.counters.quota_packets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(o) = self.open.get_mut(&call) else {
            return;
        };
        o.wrote.insert(seen.half);
        let time = seen.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let result = match seen.transport {
            Transport::Udp => o.pcap.write_udp(time, seen.src, seen.dst, &seen.payload),
            Transport::Tcp | Transport::Tls => {
                o.pcap.write_tcp(time, seen.src, seen.dst, &seen.payload)
            }
        };
        self.counters.packets.fetch_add(1, Ordering::Relaxed);
        let failed = result.is_err();
        self.account(call);
        if failed {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            self.close(call);
        }
    }

    /// Adds what the file's writer passed on since last time to the total.
    fn account(&mut self, call: u32) {
        let Some(o) = self.open.get_mut(&call) else {
            return;
        };
        let w = o.written.load(Ordering::Relaxed);
        let delta = w.saturating_sub(o.counted);
        o.counted = w;
        self.used += delta;
        self.counters.bytes.fetch_add(delta, Ordering::Relaxed);
    }

    /// `half` saw the call end: the file closes [`LINGER`] after every half that wrote to it
    /// has (both halves in one process write to the same file).
    fn end(&mut self, call: u32, half: &'static str) {
        let Some(o) = self.open.get_mut(&call) else {
            return;
        };
        o.ended.insert(half);
        if o.closing.is_none() && o.wrote.is_subset(&o.ended) {
            o.closing = Some(Instant::now() + LINGER);
        }
    }

    fn close_lingering(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, o)| o.closing.is_some_and(|t| t <= now))
            .map(|(c, _)| *c)
            .collect();
        for call in due {
            self.close(call);
        }
    }

    fn close(&mut self, call: u32) {
        if let Some(o) = self.open.remove(&call) {
            if o.pcap.finish().and_then(|mut w| Ok(w.flush()?)).is_err() {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.forget(call);
    }

    fn forget(&mut self, call: u32) {
        if self.done.len() >= 4 * MAX_OPEN {
            self.done.clear();
        }
        self.done.insert(call);
    }
}

/// `sgw-call-<id>-<halves>-<YYYYMMDDTHHMMSSZ>.pcap`.
pub fn file_name(call: u32, halves: &str, at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "sgw-call-{call}-{halves}-{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z.pcap",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn recording_section_defaults_and_errors() {
        use crate::config::{Config, DEFAULT_RECORDING_QUOTA_MB};
        let base = crate::live::hep::tests::BASE;
        assert_eq!(Config::from_toml_str(base).unwrap().recording, None);
        let text = format!("{base}\n[recording]\ndir = \"/tmp\"\n");
        let r = Config::from_toml_str(&text).unwrap().recording.unwrap();
        assert_eq!(
            (r.dir.as_path(), r.quota_mb),
            (Path::new("/tmp"), DEFAULT_RECORDING_QUOTA_MB)
        );
        for (lines, key, message) in [
            (
                "dir = \"/tmp\"\nquota_mb = 0",
                "recording.quota_mb",
                "at least 1",
            ),
            (
                "dir = \"/tmp\"\nquota = 5",
                "recording.quota",
                "unknown field",
            ),
            ("", "recording", "missing field `dir`"),
        ] {
            let text = format!("{base}\n[recording]\n{lines}\n");
            let errors = Config::from_toml_str(&text).unwrap_err();
            let e = &errors.errors()[0];
            assert_eq!(e.key.as_str(), key, "{errors}");
            assert!(e.message.contains(message), "{errors}");
        }
    }

    fn writer(quota: u64) -> (Writer, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("sgw-recording-unit-{}-{quota}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let w = Writer {
            dir: dir.clone(),
            halves: "gw2-gw1".into(),
            quota,
            used: existing_bytes(&dir),
            full: false,
            open: HashMap::new(),
            done: HashSet::new(),
            counters: Arc::new(RecordingCounters::default()),
        };
        (w, dir)
    }

    fn packet(call: u32, half: &'static str, len: usize) -> Seen {
        Seen {
            at: SystemTime::now(),
            half,
            side: crate::engine::Side::Outside,
            transport: Transport::Udp,
            src: "192.0.2.1:4000".parse().unwrap(),
            dst: "192.0.2.2:5000".parse().unwrap(),
            protocol: crate::engine::Protocol::Rtp,
            call: Some(call),
            payload: bytes::Bytes::from(vec![0x80; len]),
        }
    }

    #[test]
    fn the_quota_stops_packets_then_new_calls() {
        let (mut w, dir) = writer(8 * 1024);
        for _ in 0..20 {
            w.packet(packet(1, "gw2", 1000));
        }
        w.packet(packet(2, "gw2", 100));
        let c = &w.counters;
        assert_eq!(c.files.load(Ordering::Relaxed), 1);
        assert!(c.quota_packets.load(Ordering::Relaxed) > 0);
        assert_eq!(c.quota_calls.load(Ordering::Relaxed), 1);
        assert!(w.used <= w.quota, "{} over {}", w.used, w.quota);
        w.close(1);
        let size: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(
            size <= 8 * 1024 && size == w.used,
            "{size} on disk, {} counted",
            w.used
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_closes_after_every_half_that_wrote_ended() {
        let (mut w, dir) = writer(1 << 20);
        w.packet(packet(3, "gw2", 100));
        w.packet(packet(3, "gw1", 100));
        w.end(3, "gw2");
        assert!(w.open[&3].closing.is_none());
        // A late packet of an ended half still goes in.
        w.packet(packet(3, "gw2", 100));
        w.end(3, "gw1");
        assert!(w.open[&3].closing.is_some());
        w.open.get_mut(&3).unwrap().closing = Some(Instant::now());
        w.close_lingering();
        assert!(w.open.is_empty());
        // Closed: a packet after it does not open a second file.
        w.packet(packet(3, "gw1", 100));
        assert!(w.open.is_empty());
        assert_eq!(w.counters.packets.load(Ordering::Relaxed), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_names_carry_call_and_utc_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_931_500); // 2025-12-05 10:45:00 UTC
        assert_eq!(
            file_name(7, "gw2", at),
            "sgw-call-7-gw2-20251205T104500Z.pcap"
        );
        assert_eq!(
            file_name(0, "gw2-gw1", UNIX_EPOCH),
            "sgw-call-0-gw2-gw1-19700101T000000Z.pcap"
        );
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(
            file_name(1, "gw1", leap),
            "sgw-call-1-gw1-20000229T000000Z.pcap"
        );
    }
}
