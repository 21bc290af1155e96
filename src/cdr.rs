//! Tamper-evident call records (non-repudiation): each half writes one JSON object per line
//! (RFC 8259) for every call that ends, whatever its protocol, into files that cannot be altered
//! unnoticed, and `sgw cdr verify` checks them.
//!
//! - **Lines.** Every line carries `kind` (`file`, `call` or `checkpoint`), `seq` (one counter
//!   across all the files of a half, +1 per line), `prev` (the SHA-256, hex, of the bytes of
//!   the line before it, without its newline; 64 zeros for the first line ever) and `half`.
//!   A `call` line then holds the [`CallRecord`].
//! - **Checkpoints.** Every `checkpoint_secs` (when calls were recorded since the last one),
//!   before a file is rotated and when the half stops, a `checkpoint` line is signed with the
//!   half's own Ed25519 key (`sgw pki init` writes `gw2-records.key` / `gw1-records.key`,
//!   PKCS#8; the public keys `*.pub`, hex). Its signature (`sig`, the last member) covers every
//!   byte of the line before it, `prev` included: the whole chain before it.
//! - **Files.** A file starts with a `file` line whose `prev` is the hash of the last complete
//!   line of the file before it (after a restart too), and is rotated by size or at the UTC day
//!   boundary.
//! - **Writing.** Records are written by a thread of their own, fed through a bounded queue
//!   ([`RECORD_QUEUE`]); a full queue or a write error is logged and counted
//!   (`records_dropped`, `record_write_errors`), never fatal. Each line is handed to the
//!   operating system in one `write` as the call ends, so a killed process loses no record;
//!   `fsync = "record"` also survives a power loss or kernel crash for every record,
//!   `fsync = "interval"` loses at most `fsync_interval_ms` of records then.
//!
//! What the chain proves: a line altered, deleted, inserted or moved breaks the `seq` or `prev`
//! of the line after it; a chain recomputed after an alteration breaks the signature of the
//! next checkpoint, which only the half's key can make. Records after the newest checkpoint of
//! the newest file are chained but not yet signed: `verify` says how many.

use crate::engine::CallRecord;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::Deserialize;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The format named in each file line.
pub const FORMAT: &str = "sgw-cdr-1";
/// The `prev` of the first line of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Records queued for the writer thread; more are dropped (counted).
pub const RECORD_QUEUE: usize = 8192;
/// Default `rotate_bytes`.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// Default `checkpoint_secs`.
pub const DEFAULT_CHECKPOINT_SECS: u32 = 60;
/// Default `fsync_interval_ms`.
pub const DEFAULT_FSYNC_INTERVAL_MS: u32 = 1000;
/// File names of the record keys `sgw pki init` writes.
pub const GW2_KEY_FILE: &str = "gw2-records.key";
pub const GW2_PUB_FILE: &str = "gw2-records.pub";
pub const GW1_KEY_FILE: &str = "gw1-records.key";
pub const GW1_PUB_FILE: &str = "gw1-records.pub";

// ---- time ---------------------------------------------------------------------------------

/// `t` (since the Unix epoch) as RFC 3339 UTC with milliseconds, e.g.
/// `2026-12-05T10:42:49.123Z`.
pub fn rfc3339(t: Duration) -> String {
    let secs = t.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t.subsec_millis()
    )
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `20261205T104249Z`, for file names.
fn stamp(t: Duration) -> String {
    let s = rfc3339(t);
    let mut out: String = s
        .get(..19)
        .unwrap_or_default()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    out.push('Z');
    out
}

// ---- hashing and keys ---------------------------------------------------------------------

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Where a checkpoint line's signature starts: it covers every byte of the line before it.
const SIG_MEMBER: &str = ",\"sig\":\"";

/// What a checkpoint's signature covers: the format and the line up to its `sig` member.
fn checkpoint_message(head: &[u8]) -> Vec<u8> {
    let mut m = format!("{FORMAT} checkpoint\n").into_bytes();
    m.extend_from_slice(head);
    m
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                let idx = usize::try_from((n >> shift) & 63).unwrap_or(0);
                out.push(char::from(A.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A new Ed25519 key: (PKCS#8 PEM, public key hex).
pub fn generate_key() -> Result<(String, String), String> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "Ed25519 key generation")?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "Ed25519 key generation")?;
    let b64 = base64(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((pem, hex(pair.public_key().as_ref())))
}

/// Loads a half's record key (PKCS#8, PEM or DER).
pub fn load_key(path: &Path) -> Result<Ed25519KeyPair, String> {
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let der = match rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&bytes) {
        Ok(k) => k.secret_pkcs8_der().to_vec(),
        Err(_) => bytes,
    };
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key ({e})", path.display()))
}

/// Loads a public key file: 64 hex digits (what `sgw pki init` writes).
pub fn load_public_key(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match unhex(&text) {
        Some(k) if k.len() == 32 => Ok(k),
        _ => Err(format!(
            "{}: not an Ed25519 public key (64 hex digits)",
            path.display()
        )),
    }
}

/// `sgw pki init`: the record keys of both halves (private key mode 0600).
pub fn key_files() -> [&'static str; 4] {
    [GW2_KEY_FILE, GW2_PUB_FILE, GW1_KEY_FILE, GW1_PUB_FILE]
}

/// Writes a file: (path, contents, secret: mode 0600).
pub type WriteFile<'a> = &'a dyn Fn(&Path, &[u8], bool) -> std::io::Result<()>;

/// Writes new record keys for both halves into `dir`; returns the files written.
pub fn write_keys(dir: &Path, write: WriteFile<'_>) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for (key, public) in [(GW2_KEY_FILE, GW2_PUB_FILE), (GW1_KEY_FILE, GW1_PUB_FILE)] {
        let (pem, pubhex) = generate_key()?;
        for (name, contents, secret) in [(key, pem, true), (public, pubhex + "\n", false)] {
            let path = dir.join(name);
            write(&path, contents.as_bytes(), secret)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

// ---- configuration ------------------------------------------------------------------------

/// `[gw2.records]` / `[gw1.records]`: where and how a half writes its call records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsConfig {
    /// A directory: files `HALF-YYYYMMDDTHHMMSSZ-SEQ.jsonl` (created if missing).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Or one file: the current records; rotated files are `PATH.YYYYMMDDTHHMMSSZ-SEQ`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The half's Ed25519 record key (PKCS#8; `sgw pki init` writes `gw2-records.key`).
    pub key: PathBuf,
    /// Start a new file past this size in bytes; 0: never by size.
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// Start a new file at each UTC day.
    #[serde(default)]
    pub rotate_daily: bool,
    /// `record`: fsync after every line; `interval`: every `fsync_interval_ms`.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u32,
    /// Seconds between signed checkpoints (written only when calls were recorded since).
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u32,
}

fn default_rotate_bytes() -> u64 {
    DEFAULT_ROTATE_BYTES
}
fn default_fsync_interval_ms() -> u32 {
    DEFAULT_FSYNC_INTERVAL_MS
}
fn default_checkpoint_secs() -> u32 {
    DEFAULT_CHECKPOINT_SECS
}

/// When record files are flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    Record,
    #[default]
    Interval,
}

/// The checks serde cannot express, as (key, message).
pub fn check_config(r: &RecordsConfig, section: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    match (&r.dir, &r.path) {
        (None, None) => v.push((
            section.to_owned(),
            "needs `dir` or `path`: where the records go".to_owned(),
        )),
        (Some(_), Some(_)) => v.push((
            format!("{section}.path"),
            "give `dir` or `path`, not both".to_owned(),
        )),
        _ => {}
    }
    if r.checkpoint_secs == 0 {
        v.push((
            format!("{section}.checkpoint_secs"),
            "must be at least 1".to_owned(),
        ));
    }
    if r.fsync == FsyncPolicy::Interval && r.fsync_interval_ms == 0 {
        v.push((
            format!("{section}.fsync_interval_ms"),
            "must be at least 1 (or fsync = \"record\")".to_owned(),
        ));
    }
    v
}

/// The checks of both halves' sections: each on its own, and one file not shared.
pub fn check_halves(
    gw2: Option<&RecordsConfig>,
    gw1: Option<&RecordsConfig>,
) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Some(r) = gw2 {
        v.extend(check_config(r, "gw2.records"));
    }
    if let Some(r) = gw1 {
        v.extend(check_config(r, "gw1.records"));
    }
    if let (Some(a), Some(b)) = (
        gw2.and_then(|r| r.path.as_ref()),
        gw1.and_then(|r| r.path.as_ref()),
    ) {
        if a == b {
            v.push((
                "gw1.records.path".to_owned(),
                "the same file as gw2.records.path: each half writes its own chain".to_owned(),
            ));
        }
    }
    if let (Some(a), Some(b)) = (gw2, gw1) {
        if a.key == b.key {
            v.push((
                "gw1.records.key".to_owned(),
                "the same key as gw2.records.key: each half signs with its own key".to_owned(),
            ));
        }
    }
    v
}

// ---- the writer ---------------------------------------------------------------------------

/// Where the files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Dir(PathBuf),
    Path(PathBuf),
}

/// A writer's settings, from [`RecordsConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub half: &'static str,
    pub target: Target,
    pub rotate_bytes: u64,
    pub rotate_daily: bool,
    /// `None`: fsync every line.
    pub fsync_interval: Option<Duration>,
    pub checkpoint: Duration,
}

impl Settings {
    pub fn from_config(half: &'static str, r: &RecordsConfig) -> Settings {
        Settings {
            half,
            target: match (&r.dir, &r.path) {
                (_, Some(p)) => Target::Path(p.clone()),
                (Some(d), None) => Target::Dir(d.clone()),
                (None, None) => Target::Dir(PathBuf::from(".")),
            },
            rotate_bytes: r.rotate_bytes,
            rotate_daily: r.rotate_daily,
            fsync_interval: match r.fsync {
                FsyncPolicy::Record => None,
                FsyncPolicy::Interval => {
                    Some(Duration::from_millis(u64::from(r.fsync_interval_ms.max(1))))
                }
            },
            checkpoint: Duration::from_secs(u64::from(r.checkpoint_secs.max(1))),
        }
    }
}

/// The chain of one half: its files, its last hash and sequence number, its key.
pub struct Chain {
    settings: Settings,
    key: Ed25519KeyPair,
    file: Option<File>,
    path: PathBuf,
    bytes: u64,
    day: u64,
    seq: u64,
    last: String,
    /// Call lines since the last checkpoint.
    unsigned: u64,
    dirty: bool,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("path", &self.path)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// The hash and `seq` after the last complete line of `path` (`None`: no complete line).
fn last_line_state(path: &Path) -> std::io::Result<Option<(String, u64)>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let tail = len.min(1 << 20);
    f.seek(SeekFrom::Start(len - tail))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok(None);
    };
    let body = buf.get(..end).unwrap_or_default();
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let line = body.get(start..).unwrap_or_default();
    let seq = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64))
        .unwrap_or(0);
    Ok(Some((sha256_hex(line), seq + 1)))
}

impl Chain {
    /// Opens the chain: continues from the newest file of the half (a new file is started
    /// whatever it holds; a `path` file is first moved to its rotated name).
    pub fn open(settings: Settings, key: Ed25519KeyPair) -> std::io::Result<Chain> {
        let mut chain = Chain {
            settings,
            key,
            file: None,
            path: PathBuf::new(),
            bytes: 0,
            day: 0,
            seq: 0,
            last: GENESIS.to_owned(),
            unsigned: 0,
            dirty: false,
        };
        if let Some(prev) = chain.newest_file()? {
            if let Some((last, seq)) = last_line_state(&prev)? {
                chain.last = last;
                chain.seq = seq;
            }
        }
        chain.start_file(wall_now())?;
        Ok(chain)
    }

    fn rotated_name(&self, now: Duration) -> PathBuf {
        let suffix = format!("{}-{:010}", stamp(now), self.seq);
        match &self.settings.target {
            Target::Dir(d) => d.join(format!("{}-{suffix}.jsonl", self.settings.half)),
            Target::Path(p) => {
                let mut s = p.clone().into_os_string();
                s.push(format!(".{suffix}"));
                PathBuf::from(s)
            }
        }
    }

    /// The newest file of this half (by name: the names sort by time, then `seq`).
    fn newest_file(&self) -> std::io::Result<Option<PathBuf>> {
        let (dir, prefix) = match &self.settings.target {
            Target::Dir(d) => (d.clone(), format!("{}-", self.settings.half)),
            Target::Path(p) => {
                if p.exists() {
                    return Ok(Some(p.clone()));
                }
                let dir = p
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_owned);
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (dir, format!("{name}."))
            }
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(None);
        };
        // The newest by the `seq` its name ends with (then by name): a clock set back does
        // not make an older file look newer.
        let mut best: Option<(u64, String)> = None;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = match &self.settings.target {
                Target::Dir(_) => name.strip_suffix(".jsonl"),
                Target::Path(_) => Some(name.as_str()),
            };
            let Some(stem) = stem.filter(|_| name.starts_with(&prefix)) else {
                continue;
            };
            let seq = stem
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            let key = (seq, name.clone());
            if best.as_ref().is_none_or(|b| key > *b) {
                best = Some(key);
            }
        }
        Ok(best.map(|(_, n)| dir.join(n)))
    }

    fn start_file(&mut self, now: Duration) -> std::io::Result<()> {
        let path = match &self.settings.target {
            Target::Dir(d) => {
                std::fs::create_dir_all(d)?;
                self.rotated_name(now)
            }
            // The file there (of an earlier run, full, or cut by a failed write) moves to its
            // rotated name first: a file holds one stretch of the chain.
            Target::Path(p) => {
                if std::fs::metadata(p).is_ok_and(|m| m.len() > 0) {
                    std::fs::rename(p, self.rotated_name(now))?;
                }
                p.clone()
            }
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o640);
        }
        let f = opts.open(&path)?;
        self.bytes = f.metadata()?.len();
        self.file = Some(f);
        self.path = path;
        self.day = now.as_secs() / 86_400;
        let line = format!(
            "\"created\":\"{}\",\"format\":\"{FORMAT}\",\"key\":\"{}\"}}",
            rfc3339(now),
            hex(self.key.public_key().as_ref())
        );
        self.write_line("file", &line)?;
        if self.settings.fsync_interval.is_some() {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes `{"kind":KIND,"seq":..,"prev":..,"half":..,REST` (REST: the other members and
    /// the closing brace) as one line.
    fn write_line(&mut self, kind: &str, rest: &str) -> std::io::Result<()> {
        let line = format!("{}{rest}", self.head(kind));
        self.write_raw(line)
    }

    /// `{"kind":KIND,"seq":..,"prev":..,"half":..,`
    fn head(&self, kind: &str) -> String {
        format!(
            "{{\"kind\":\"{kind}\",\"seq\":{},\"prev\":\"{}\",\"half\":\"{}\",",
            self.seq, self.last, self.settings.half
        )
    }

    fn write_raw(&mut self, line: String) -> std::io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Err(std::io::Error::other("no record file open"));
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        if let Err(e) = f.write_all(&buf) {
            // A line may be half written: the next line goes to a new file.
            self.file = None;
            return Err(e);
        }
        self.last = sha256_hex(line.as_bytes());
        self.seq += 1;
        self.bytes += buf.len() as u64;
        self.dirty = true;
        if self.settings.fsync_interval.is_none() {
            self.sync()?;
        }
        Ok(())
    }

    /// Rotates when the file is full or its day is over (or when the last write failed).
    fn maybe_rotate(&mut self, now: Duration) -> std::io::Result<()> {
        if self.file.is_none() {
            return self.start_file(now);
        }
        let full = self.settings.rotate_bytes > 0 && self.bytes >= self.settings.rotate_bytes;
        let new_day = self.settings.rotate_daily && now.as_secs() / 86_400 != self.day;
        if full || new_day {
            self.checkpoint_at(now, true)?;
            self.sync()?;
            self.file = None;
            self.start_file(now)?;
        }
        Ok(())
    }

    /// Appends a call record.
    pub fn append(&mut self, rec: &CallRecord) -> std::io::Result<()> {
        self.append_at(rec, wall_now())
    }

    pub fn append_at(&mut self, rec: &CallRecord, now: Duration) -> std::io::Result<()> {
        self.maybe_rotate(now)?;
        let mut json = serde_json::to_string(rec).map_err(std::io::Error::other)?;
        // Every record names its rule, null without access rules.
        if rec.rule.is_none() && json.ends_with('}') {
            json.pop();
            json.push_str(",\"rule\":null}");
        }
        let rest = json.strip_prefix('{').unwrap_or("}");
        self.write_line("call", rest)?;
        self.unsigned += 1;
        Ok(())
    }

    /// Writes a signed checkpoint when calls were recorded since the last one (or `force`).
    pub fn checkpoint(&mut self, force: bool) -> std::io::Result<bool> {
        self.checkpoint_at(wall_now(), force)
    }

    fn checkpoint_at(&mut self, now: Duration, force: bool) -> std::io::Result<bool> {
        if self.unsigned == 0 && !force {
            return Ok(false);
        }
        if self.file.is_none() {
            self.start_file(now)?;
        }
        let head = format!(
            "{}\"at\":\"{}\",\"records\":{}",
            self.head("checkpoint"),
            rfc3339(now),
            self.unsigned
        );
        let sig = hex(self.key.sign(&checkpoint_message(head.as_bytes())).as_ref());
        self.write_raw(format!("{head}{SIG_MEMBER}{sig}\"}}"))?;
        self.unsigned = 0;
        Ok(true)
    }

    /// Flushes the current file to stable storage.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if let (Some(f), true) = (&self.file, self.dirty) {
            f.sync_data()?;
        }
        self.dirty = false;
        Ok(())
    }

    /// The file being written.
    pub fn current_file(&self) -> &Path {
        &self.path
    }
}

/// What the writer counted, shared with the driver's `stats`.
#[derive(Debug, Default)]
pub struct RecordCounters {
    pub written: AtomicU64,
    /// The queue to the writer was full: the record is lost (and logged).
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    pub checkpoints: AtomicU64,
}

impl RecordCounters {
    /// Into the driver's counters (`stats` and `GET /metrics`).
    pub fn count_into(&self, c: &mut crate::live::runtime::DriverCounters) {
        c.records_written = self.written.load(Ordering::Relaxed);
        c.records_dropped = self.dropped.load(Ordering::Relaxed);
        c.record_write_errors = self.write_errors.load(Ordering::Relaxed);
        c.record_checkpoints = self.checkpoints.load(Ordering::Relaxed);
    }
}

enum Msg {
    Record(Box<CallRecord>),
    Stop,
}

/// The driver's side of a writer thread.
#[derive(Debug)]
pub struct RecordWriter {
    tx: SyncSender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<RecordCounters>,
    half: &'static str,
}

impl RecordWriter {
    /// Opens the chain (failing when the files or the key cannot be used) and starts the
    /// writer thread.
    pub fn start(settings: Settings, key: Ed25519KeyPair) -> std::io::Result<RecordWriter> {
        let half = settings.half;
        let chain = Chain::open(settings, key)?;
        tracing::info!(half, "call records to {}", chain.current_file().display());
        let (tx, rx) = sync_channel(RECORD_QUEUE);
        let counters = Arc::new(RecordCounters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sgw-records-{half}"))
            .spawn(move || writer_loop(chain, rx, &c))?;
        Ok(RecordWriter {
            tx,
            thread: Some(thread),
            counters,
            half,
        })
    }

    /// Queues a record; a full queue drops it (counted and logged).
    pub fn submit(&self, rec: CallRecord) {
        match self.tx.try_send(Msg::Record(Box::new(rec))) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Record(r)))
            | Err(TrySendError::Disconnected(Msg::Record(r))) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "sgw::call",
                    half = self.half,
                    call = r.call,
                    "call record not written: the record writer is behind or stopped"
                );
            }
            Err(_) => {}
        }
    }

    pub fn count_into(&self, c: &mut crate::live::runtime::DriverCounters) {
        self.counters.count_into(c);
    }

    /// Writes the final checkpoint and waits for the writer.
    pub fn stop(mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer_loop(mut chain: Chain, rx: Receiver<Msg>, c: &RecordCounters) {
    let half = chain.settings.half;
    let fail = |what: &str, e: std::io::Error| {
        c.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(half, "call records: {what}: {e}");
    };
    let mut next_checkpoint = Instant::now() + chain.settings.checkpoint;
    let mut next_sync = chain.settings.fsync_interval.map(|i| Instant::now() + i);
    loop {
        let now = Instant::now();
        let due = next_sync.map_or(next_checkpoint, |s| s.min(next_checkpoint));
        let stop = match rx.recv_timeout(due.saturating_duration_since(now)) {
            Ok(Msg::Record(r)) => {
                match chain.append(&r) {
                    Ok(()) => {
                        c.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => fail(&format!("call {} not written", r.call), e),
                }
                false
            }
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        let now = Instant::now();
        if stop || now >= next_checkpoint {
            // Daily rotation happens at the next record or checkpoint.
            if let Err(e) = chain.maybe_rotate(wall_now()) {
                fail("rotation", e);
            }
            match chain.checkpoint(stop) {
                Ok(true) => {
                    c.checkpoints.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(e) => fail("checkpoint not written", e),
            }
            next_checkpoint = now + chain.settings.checkpoint;
        }
        if let Some(s) = next_sync {
            if stop || now >= s {
                if let Err(e) = chain.sync() {
                    fail("fsync", e);
                }
                next_sync = chain.settings.fsync_interval.map(|i| now + i);
            }
        }
        if stop {
            return;
        }
    }
}

// ---- verification -------------------------------------------------------------------------

/// The outcome of `sgw cdr verify`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Intact,
    Tampered,
    Unreadable,
}

impl Status {
    pub fn exit_code(&self) -> u8 {
        match self {
            Status::Intact => 0,
            Status::Tampered => 1,
            Status::Unreadable => 2,
        }
    }
}

/// What `sgw cdr verify` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    pub status: Status,
    /// The first problem: `FILE:LINE: what` (tampering or why a file is unreadable).
    pub finding: Option<String>,
    /// The kind of the first problem: `altered`, `deleted`, `inserted`, `reordered`,
    /// `bad_signature`, `missing_file`, `unreadable`.
    pub kind: Option<String>,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub files: usize,
    pub records: u64,
    pub checkpoints: u64,
    /// Checkpoints whose signature was checked (all of them with a key).
    pub signatures_checked: u64,
    /// Lines refused (the first tampered one, an incomplete last record).
    pub refused_lines: u64,
    /// Notes that are not tampering: an incomplete last record after a crash, a chain starting
    /// from a file not given, records not yet covered by a checkpoint.
    pub notes: Vec<String>,
}

struct Line<'a> {
    file: usize,
    no: usize,
    raw: &'a [u8],
    parsed: Option<Parsed>,
    /// The last line of its file, without a newline.
    unterminated: bool,
}

#[derive(Debug, Clone)]
struct Parsed {
    kind: String,
    seq: u64,
    prev: String,
    half: String,
    value: serde_json::Value,
}

/// Where `needle` last occurs in `hay`.
fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn parse_line(raw: &[u8]) -> Option<Parsed> {
    let value: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let s = |k: &str| {
        value
            .get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    Some(Parsed {
        kind: s("kind")?,
        seq: value.get("seq")?.as_u64()?,
        prev: s("prev")?,
        half: s("half")?,
        value,
    })
}

/// Verifies the files of one half's chain (in any order: they are put in chain order by the
/// `seq` of their first line), checking checkpoint signatures with `key` when given.
pub fn verify(paths: &[PathBuf], key: Option<&[u8]>) -> Verification {
    let mut v = Verification {
        status: Status::Intact,
        finding: None,
        kind: None,
        file: None,
        line: None,
        files: paths.len(),
        records: 0,
        checkpoints: 0,
        signatures_checked: 0,
        refused_lines: 0,
        notes: Vec::new(),
    };
    let mut contents = Vec::new();
    for p in paths {
        match std::fs::read(p) {
            Ok(b) => contents.push((p.clone(), b)),
            Err(e) => {
                v.status = Status::Unreadable;
                v.kind = Some("unreadable".into());
                v.file = Some(p.display().to_string());
                v.finding = Some(format!("{}: {e}", p.display()));
                v.refused_lines += 1;
                return v;
            }
        }
    }
    // Each file must start with a file line; without one it is not a record file.
    let mut order = Vec::new();
    for (i, (p, b)) in contents.iter().enumerate() {
        let first = b.split(|c| *c == b'\n').next().unwrap_or_default();
        match parse_line(first) {
            Some(h) if h.kind == "file" => order.push((h.seq, i)),
            _ => {
                v.status = Status::Unreadable;
                v.kind = Some("unreadable".into());
                v.file = Some(p.display().to_string());
                v.line = Some(1);
                v.finding = Some(format!(
                    "{}:1: not a call record file (no `file` line with seq and prev)",
                    p.display()
                ));
                v.refused_lines += 1;
                return v;
            }
        }
    }
    order.sort();
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (_, i) in &order {
        let Some((_, b)) = contents.get(*i) else {
            continue;
        };
        let mut parts: Vec<&[u8]> = b.split(|c| *c == b'\n').collect();
        let terminated = parts.last().is_some_and(|l| l.is_empty());
        if terminated {
            parts.pop();
        }
        let n = parts.len();
        for (k, raw) in parts.into_iter().enumerate() {
            lines.push(Line {
                file: *i,
                no: k + 1,
                raw,
                parsed: parse_line(raw),
                unterminated: !terminated && k + 1 == n,
            });
        }
    }
    let name = |f: usize| {
        contents
            .get(f)
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_default()
    };
    let public = key.map(|k| UnparsedPublicKey::new(&ED25519, k.to_vec()));
    let mut expect: Option<(String, u64)> = None;
    let mut seen: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut last_checkpoint: Option<usize> = None;
    let mut unsigned = 0u64;
    let given = key.map(hex);
    // The key the current file's first line names (informative: only the given key counts).
    let mut file_key: Option<String> = None;
    let mut chain_half: Option<String> = None;
    let tamper = |v: &mut Verification, l: &Line<'_>, kind: &str, what: String| {
        v.status = Status::Tampered;
        v.kind = Some(kind.to_owned());
        v.file = Some(name(l.file));
        v.line = Some(l.no);
        v.finding = Some(format!("{}:{}: {what}", name(l.file), l.no));
        v.refused_lines += 1;
    };
    for (idx, l) in lines.iter().enumerate() {
        let Some(p) = &l.parsed else {
            if l.unterminated {
                v.refused_lines += 1;
                v.notes.push(format!(
                    "{}:{}: incomplete last record (a write cut short, e.g. kill -9): \
                     not tampering; the file verifies up to line {}",
                    name(l.file),
                    l.no,
                    l.no.saturating_sub(1)
                ));
                continue;
            }
            tamper(
                &mut v,
                l,
                "altered",
                "altered record: not a record line (not JSON, or kind/seq/prev/half missing)"
                    .into(),
            );
            return v;
        };
        if (p.kind == "file") != (l.no == 1) {
            let what = if p.kind == "file" {
                "inserted record: a file line inside a file".to_owned()
            } else {
                "altered record: a file does not start with its file line".to_owned()
            };
            tamper(&mut v, l, "inserted", what);
            return v;
        }
        match &expect {
            None => {
                if p.prev != GENESIS {
                    v.notes.push(format!(
                        "{}:{}: the chain starts from an earlier file not given (seq {}, prev {})",
                        name(l.file),
                        l.no,
                        p.seq,
                        p.prev
                    ));
                }
            }
            Some((prev, seq)) => {
                let boundary = l.no == 1;
                if p.seq > *seq {
                    let later = lines
                        .iter()
                        .skip(idx + 1)
                        .filter_map(|x| x.parsed.as_ref())
                        .any(|x| x.seq >= *seq && x.seq < p.seq);
                    if later {
                        let what =
                            format!("reordered record: seq {} comes before seq {seq}", p.seq);
                        tamper(&mut v, l, "reordered", what);
                    } else if boundary {
                        let what = format!(
                            "missing file or records: this file starts at seq {} but the file \
                             before it ({}) ends at seq {}",
                            p.seq,
                            lines
                                .get(idx.wrapping_sub(1))
                                .map(|x| name(x.file))
                                .unwrap_or_default(),
                            seq.saturating_sub(1)
                        );
                        tamper(&mut v, l, "deleted", what);
                    } else {
                        let what = format!(
                            "deleted records before this line: seq {seq}..{} missing",
                            p.seq.saturating_sub(1)
                        );
                        tamper(&mut v, l, "deleted", what);
                    }
                    return v;
                }
                if p.seq < *seq {
                    let what = match seen.get(&p.seq) {
                        Some(n) => {
                            format!("inserted record: seq {} repeats the seq of line {n}", p.seq)
                        }
                        None => format!("inserted record: seq {} where {seq} was due", p.seq),
                    };
                    let kind = if seen.contains_key(&p.seq) || boundary {
                        "inserted"
                    } else {
                        "reordered"
                    };
                    tamper(&mut v, l, kind, what);
                    return v;
                }
                if p.prev != *prev {
                    let before = lines.get(idx.wrapping_sub(1));
                    match before {
                        Some(b) if !boundary => {
                            let what = "altered record: its hash no longer matches the `prev` \
                                        of the next line"
                                .to_owned();
                            tamper(&mut v, b, "altered", what);
                        }
                        _ => {
                            let what = format!(
                                "altered record: this file's first line does not chain from \
                                 the last line of {} (that line was altered, or lines removed \
                                 from its end)",
                                before.map(|x| name(x.file)).unwrap_or_default()
                            );
                            tamper(&mut v, l, "altered", what);
                        }
                    }
                    return v;
                }
            }
        }
        match &chain_half {
            Some(h) if *h != p.half => {
                let what = format!(
                    "inserted record: of half {:?} in the chain of {h:?}",
                    p.half
                );
                tamper(&mut v, l, "inserted", what);
                return v;
            }
            Some(_) => {}
            None => chain_half = Some(p.half.clone()),
        }
        seen.insert(p.seq, l.no);
        match p.kind.as_str() {
            "call" => {
                v.records += 1;
                unsigned += 1;
            }
            "checkpoint" => {
                v.checkpoints += 1;
                if let Some(k) = &public {
                    // The signature covers the line's bytes before its `sig` member, which must
                    // be the last one.
                    let head = find_last(l.raw, SIG_MEMBER.as_bytes()).and_then(|i| l.raw.get(..i));
                    let sig = p
                        .value
                        .get("sig")
                        .and_then(serde_json::Value::as_str)
                        .filter(|h| l.raw.ends_with(format!("{h}\"}}").as_bytes()))
                        .and_then(unhex);
                    let ok = match (head, sig) {
                        (Some(head), Some(sig)) => {
                            k.verify(&checkpoint_message(head), &sig).is_ok()
                        }
                        _ => false,
                    };
                    if !ok {
                        let since = last_checkpoint
                            .map(|n| format!("after line {n} (the last good checkpoint)"))
                            .unwrap_or_else(|| "before it".to_owned());
                        let named = file_key.as_deref().filter(|k| Some(*k) != given.as_deref());
                        let hint = named
                            .map(|k| {
                                format!(
                                    " (the file names the signing key {k}, not the key given: \
                                     another half's key, or a forged file line)"
                                )
                            })
                            .unwrap_or_default();
                        let what = format!(
                            "bad signature: the checkpoint does not verify with the key: \
                             records {since} were altered and re-chained, or the checkpoint \
                             was forged{hint}"
                        );
                        tamper(&mut v, l, "bad_signature", what);
                        return v;
                    }
                    v.signatures_checked += 1;
                }
                last_checkpoint = Some(l.no);
                unsigned = 0;
            }
            "file" => {
                file_key = p
                    .value
                    .get("key")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
            }
            other => {
                let what = format!("altered record: unknown kind {other:?}");
                tamper(&mut v, l, "altered", what);
                return v;
            }
        }
        expect = Some((sha256_hex(l.raw), p.seq.saturating_add(1)));
    }
    if public.is_none() && v.checkpoints > 0 {
        v.notes.push(
            "checkpoint signatures not checked: give the half's public key with --key".into(),
        );
    }
    if unsigned > 0 {
        v.notes.push(format!(
            "{unsigned} records after the last checkpoint are chained but not signed yet \
             (the gateway signs them at its next checkpoint or when it stops)"
        ));
    }
    v
}

/// The human report of `sgw cdr verify`.
pub fn render(v: &Verification) -> String {
    let mut out = String::new();
    for n in &v.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    match v.status {
        Status::Intact => out.push_str(&format!(
            "intact: {} files, {} records, {} checkpoints ({} signatures checked)\n",
            v.files, v.records, v.checkpoints, v.signatures_checked
        )),
        Status::Tampered => out.push_str(&format!(
            "TAMPERED: {}\n",
            v.finding.as_deref().unwrap_or_default()
        )),
        Status::Unreadable => out.push_str(&format!(
            "unreadable: {}\n",
            v.finding.as_deref().unwrap_or_default()
        )),
    }
    out
}

#[cfg(test)]
mod tests;
