//! The gateway's log: `tracing` events on stderr, as human lines or JSON lines, with RFC 3339
//! UTC timestamps, and the summariser that turns a flood of rejected messages into one line per
//! source and interval.
//!
//! Targets (for `RUST_LOG` filters and `-q`):
//! - `sgw::call`: one line per call (the call record when it ends);
//! - `sgw::reject`: one line per rejected SIP or H.225.0 message (the first few per source and
//!   interval, then a summary);
//! - `sgw::message`: each accepted SIP or H.225.0 message (debug);
//! - `sgw::meta`: each Meta message across the tunnel (trace);
//! - the module paths (`sgw::live::runtime`, ...): the tunnel and sockets.
//!
//! Every event about a call has the fields `half` (`gw1`/`gw2`) and `call` (the Meta call
//! reference, the `call` of the call record and of replay's JSON).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-05T09:00:00.123456Z  INFO sgw gw2 call=7: message key=value`
    Human,
    /// One JSON object per line: `timestamp`, `level`, `message`, the fields, `target`.
    Json,
}

/// The filter `-q` and `-v` stand for when `RUST_LOG` is not set.
pub fn default_filter(quiet: bool, verbose: u8) -> &'static str {
    match (quiet, verbose) {
        // No per-call and per-rejection lines; flood summaries (warn) and the tunnel stay.
        (true, _) => "info,sgw::call=warn,sgw::reject=warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    }
}

/// Installs the global subscriber on stderr. `RUST_LOG`, when set and not empty, is the filter
/// (it replaces the level `-q`/`-v` give); an invalid one is an error.
pub fn init(format: LogFormat, quiet: bool, verbose: u8) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => EnvFilter::builder()
            .parse(&s)
            .map_err(|e| anyhow::anyhow!("RUST_LOG={s:?}: {e}"))?,
        _ => EnvFilter::new(default_filter(quiet, verbose)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_timer(SystemTime);
    let result = match format {
        LogFormat::Human => builder.event_format(Human).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up the log: {e}"))
}

/// The human line: timestamp, level, `sgw`, the half and the call id, then the message and the
/// other fields as `key=value`. A call's `call ended {json}` line ends with its record.
struct Human;

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut w)?;
        let mut f = Fields::default();
        event.record(&mut f);
        write!(w, " {:>5} sgw", event.metadata().level())?;
        if let Some(h) = &f.half {
            write!(w, " {h}")?;
        }
        if let Some(c) = &f.call {
            write!(w, " call={c}")?;
        }
        write!(w, ": {}", f.message)?;
        for (k, v) in &f.rest {
            write!(w, " {k}={v}")?;
        }
        writeln!(w)
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    half: Option<String>,
    call: Option<String>,
    rest: Vec<(&'static str, String)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "half" => self.half = Some(value),
            "call" => self.call = Some(value),
            name => self.rest.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.put(field, s);
    }
}

/// How long one flood-summary interval lasts.
pub const REJECT_INTERVAL: Duration = Duration::from_secs(10);
/// Rejections logged one by one per source and interval; the rest go into its summary.
pub const REJECT_BURST: u32 = 3;
/// Sources tracked per interval; rejections from further sources are counted together.
pub const REJECT_MAX_SOURCES: usize = 1024;
/// Distinct reasons kept per source; further ones count as "other reasons".
const REJECT_MAX_REASONS: usize = 4;

/// What to do with one rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectDecision {
    /// Log it on its own line.
    Log,
    /// Counted: it appears in the source's summary at the end of the interval.
    Summarise,
}

/// The rejections of one source in the interval, or of all sources past the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodSummary {
    /// The source; `None` for the rejections past [`REJECT_MAX_SOURCES`] sources, or with no
    /// source (timers, the tunnel).
    pub source: Option<IpAddr>,
    /// The sources past the cap are counted together.
    pub overflow: bool,
    /// All its rejections in the interval, those logged one by one included.
    pub total: u64,
    /// Those logged one by one.
    pub logged: u64,
    /// Reasons and their counts, most frequent first; "other reasons" when more than a few.
    pub reasons: Vec<(String, u64)>,
    pub interval: Duration,
}

impl fmt::Display for FloodSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match (self.overflow, self.source) {
            (true, _) => format!("sources past the first {REJECT_MAX_SOURCES}"),
            (false, Some(ip)) => ip.to_string(),
            (false, None) => "no source".to_owned(),
        };
        write!(
            f,
            "{} messages from {from} rejected in the last {} s ({} logged one by one): reasons ",
            self.total,
            self.interval.as_secs(),
            self.logged
        )?;
        for (i, (reason, n)) in self.reasons.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{reason} x{n}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct SourceCount {
    total: u64,
    logged: u64,
    reasons: BTreeMap<String, u64>,
}

impl SourceCount {
    fn add(&mut self, reason: &str) {
        self.total += 1;
        if let Some(n) = self.reasons.get_mut(reason) {
            *n += 1;
        } else if self.reasons.len() < REJECT_MAX_REASONS {
            self.reasons.insert(reason.to_owned(), 1);
        } else {
            *self.reasons.entry("other reasons".to_owned()).or_default() += 1;
        }
    }

    fn summary(self, source: Option<IpAddr>, overflow: bool, interval: Duration) -> FloodSummary {
        let mut reasons: Vec<(String, u64)> = self.reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        FloodSummary {
            source,
            overflow,
            total: self.total,
            logged: self.logged,
            reasons,
            interval,
        }
    }
}

/// Decides which rejections are logged one by one and summarises the rest, per source and
/// fixed interval. Sans-IO: the caller passes the time. Its memory is bounded: at most
/// [`REJECT_MAX_SOURCES`] sources and a few reasons each per interval.
#[derive(Debug)]
pub struct RejectLog {
    interval: Duration,
    burst: u32,
    max_sources: usize,
    /// When the current interval started (none while nothing was rejected).
    started: Option<Duration>,
    sources: HashMap<Option<IpAddr>, SourceCount>,
    overflow: SourceCount,
}

impl Default for RejectLog {
    fn default() -> Self {
        RejectLog::new(REJECT_INTERVAL, REJECT_BURST, REJECT_MAX_SOURCES)
    }
}

impl RejectLog {
    pub fn new(interval: Duration, burst: u32, max_sources: usize) -> Self {
        RejectLog {
            interval,
            burst,
            max_sources,
            started: None,
            sources: HashMap::new(),
            overflow: SourceCount::default(),
        }
    }

    /// Counts a rejection at `now`. Call [`RejectLog::flush`] before, so a rejection after the
    /// end of an interval opens the next one.
    pub fn reject(
        &mut self,
        now: Duration,
        source: Option<IpAddr>,
        reason: &str,
    ) -> RejectDecision {
        if self.started.is_none() {
            self.started = Some(now);
        }
        if !self.sources.contains_key(&source) && self.sources.len() >= self.max_sources {
            self.overflow.add(reason);
            return RejectDecision::Summarise;
        }
        let count = self.sources.entry(source).or_default();
        count.add(reason);
        if count.logged < u64::from(self.burst) {
            count.logged += 1;
            RejectDecision::Log
        } else {
            RejectDecision::Summarise
        }
    }

    /// When the current interval ends, if one is open.
    pub fn due(&self) -> Option<Duration> {
        self.started.map(|s| s + self.interval)
    }

    /// Ends the interval when it is over (or now with `force`): the summaries of the sources
    /// that had rejections not logged one by one, and of the sources past the cap.
    pub fn flush(&mut self, now: Duration, force: bool) -> Vec<FloodSummary> {
        let Some(due) = self.due() else {
            return Vec::new();
        };
        if now < due && !force {
            return Vec::new();
        }
        self.started = None;
        let interval = self.interval;
        let mut out: Vec<FloodSummary> = self
            .sources
            .drain()
            .filter(|(_, c)| c.total > c.logged)
            .map(|(source, c)| c.summary(source, false, interval))
            .collect();
        out.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.source.cmp(&b.source)));
        let overflow = std::mem::take(&mut self.overflow);
        if overflow.total > 0 {
            out.push(overflow.summary(None, true, interval));
        }
        out
    }

    /// Sources tracked in the current interval.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000 + n)))
    }

    #[test]
    fn a_flood_from_one_source_is_a_few_lines_and_one_summary() {
        let mut log = RejectLog::default();
        let mut logged = 0;
        for i in 0..2000u64 {
            let now = Duration::from_millis(i);
            assert!(log.flush(now, false).is_empty());
            if log.reject(now, ip(1), "malformed: no CSeq") == RejectDecision::Log {
                logged += 1;
            }
        }
        assert_eq!(logged, REJECT_BURST);
        // Not yet at the end of the interval.
        assert!(log.flush(Duration::from_millis(9_999), false).is_empty());
        let s = log.flush(Duration::from_secs(10), false);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!((s.source, s.total, s.logged), (ip(1), 2000, 3));
        assert_eq!(s.reasons, vec![("malformed: no CSeq".to_owned(), 2000)]);
        assert_eq!(
            s.to_string(),
            "2000 messages from 127.0.0.1 rejected in the last 10 s (3 logged one by one): \
             reasons malformed: no CSeq x2000"
        );
        assert_eq!(log.due(), None);
        assert_eq!(log.tracked(), 0);
        // The next interval logs its first rejections again.
        assert_eq!(
            log.reject(Duration::from_secs(11), ip(1), "x"),
            RejectDecision::Log
        );
        assert_eq!(log.due(), Some(Duration::from_secs(21)));
    }

    #[test]
    fn a_source_under_the_burst_gets_no_summary() {
        let mut log = RejectLog::default();
        for i in 0..REJECT_BURST {
            let who = ip(i % 2);
            assert_eq!(
                log.reject(Duration::ZERO, who, "denied by rule x"),
                RejectDecision::Log
            );
        }
        assert!(log.flush(Duration::from_secs(60), false).is_empty());
        assert_eq!(log.due(), None);
    }

    #[test]
    fn sources_past_the_cap_are_counted_together() {
        let mut log = RejectLog::new(Duration::from_secs(10), 1, 4);
        for n in 0..10 {
            for _ in 0..3 {
                log.reject(Duration::from_secs(1), ip(n), "source blocked");
            }
        }
        assert_eq!(log.tracked(), 4);
        let s = log.flush(Duration::from_secs(1), true);
        // Four tracked sources, each 3 rejections of which 1 logged, and the overflow.
        assert_eq!(s.len(), 5);
        assert!(s[..4].iter().all(|s| s.total == 3 && s.logged == 1));
        let last = &s[4];
        assert!(last.overflow);
        assert_eq!((last.total, last.logged), (18, 0));
        assert!(last
            .to_string()
            .starts_with("18 messages from sources past the first 1024 rejected"));
    }

    #[test]
    fn reasons_are_bounded_per_source() {
        let mut log = RejectLog::new(Duration::from_secs(10), 0, 8);
        for n in 0..100 {
            assert_eq!(
                log.reject(Duration::ZERO, ip(1), &format!("malformed at byte {n}")),
                RejectDecision::Summarise
            );
        }
        log.reject(Duration::ZERO, ip(1), "malformed at byte 0");
        let s = log.flush(Duration::from_secs(10), false);
        let reasons = &s[0].reasons;
        assert_eq!(reasons.len(), REJECT_MAX_REASONS + 1);
        assert_eq!(reasons[0], ("other reasons".to_owned(), 96));
        assert_eq!(reasons[1], ("malformed at byte 0".to_owned(), 2));
        assert_eq!(reasons.iter().map(|r| r.1).sum::<u64>(), 101);
    }

    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn human_lines_have_time_level_half_call_and_fields() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .event_format(Human)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "sgw::call", half = "gw2", call = 7u32, "call ended {}", r#"{"call":7}"#);
            tracing::warn!(
                half = "gw1",
                source = "10.0.0.1",
                rejected = 5u64,
                "summary"
            );
            tracing::info!("plain");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for l in &lines {
            let ts = &l[..27];
            assert!(
                ts.len() == 27 && ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".",
                "{l}"
            );
        }
        assert_eq!(
            &lines[0][27..],
            r#"  INFO sgw gw2 call=7: call ended {"call":7}"#
        );
        assert_eq!(
            &lines[1][27..],
            "  WARN sgw gw1: summary source=10.0.0.1 rejected=5"
        );
        assert_eq!(&lines[2][27..], "  INFO sgw: plain");
    }

    #[test]
    fn quiet_and_verbose_map_to_filters() {
        assert_eq!(default_filter(false, 0), "info");
        assert_eq!(default_filter(false, 1), "debug");
        assert_eq!(default_filter(false, 2), "trace");
        assert!(default_filter(true, 0).contains("sgw::call=warn"));
        for q in [true, false] {
            for v in 0..3 {
                assert!(EnvFilter::builder().parse(default_filter(q, v)).is_ok());
            }
        }
    }
}
