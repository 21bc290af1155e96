//! The operator's control socket (`sgw ctl`) and live reload (SIGHUP, `sgw ctl reload`).
//!
//! A Unix socket, mode 0600, answered only for the gateway's own user and root (the peer's
//! credentials are checked on every connection). One request line, then the reply: a first
//! line `ok` or `error: WHY`, the body (text, or one JSON document for `status json` and
//! `calls json`), and the connection closes. `drain` keeps the connection open and writes a
//! line each time the number of calls up changes, then `drained`.
//!
//! Requests reach each half's engine task through its driver's input channel
//! ([`ControlHandle`]): the engine is never locked or blocked, and what it answers is as
//! current as the messages queued before the request.

use super::runtime::ControlHandle;
use crate::config::Config;
use crate::engine::calls::CallInfo;
use crate::engine::control::LiveSettings;
use crate::engine::limits::BlockedSource;
use crate::engine::{Engine, EngineConfig};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Mutex};

/// Longest request line.
const MAX_REQUEST: usize = 1024;
/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a drain looks at the calls up.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// After the last call: time for the last transactions (the 200 to a BYE, the BYE toward the
/// other side) before the process exits.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// After ending the calls left at a drain's timeout: time for their BYEs to be answered.
const RELEASE_GRACE: Duration = Duration::from_secs(2);

/// What the control server asks of one half's engine.
#[derive(Debug)]
pub enum Request {
    Status,
    Calls,
    /// Refuse new calls from now on.
    Drain,
    /// End every call up (a drain's timeout).
    ReleaseAll,
    Block(IpAddr),
    Unblock(IpAddr),
    Reload(Box<LiveSettings>),
}

/// One half's state, for `sgw ctl status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HalfStatus {
    pub half: &'static str,
    pub tunnel_up: bool,
    pub draining: bool,
    pub calls_up: usize,
    pub blocked: Vec<BlockedSource>,
    /// GW2's registration to its provider (`[gw2.registration]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk_registration: Option<crate::engine::registration::RegistrationStatus>,
    /// GW1's registration to its gatekeeper (`[gw1.gatekeeper]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gatekeeper_registration: Option<Box<crate::engine::ras_client::RasStatus>>,
}

/// One half's engine's answer.
#[derive(Debug)]
pub enum Reply {
    Status(HalfStatus),
    Calls(Vec<CallInfo>),
    /// Blocked: the address or IPv6 prefix.
    Blocked(String),
    /// Unblocked: whether it was blocked.
    Unblocked(bool),
    /// Calls ended at a drain's timeout.
    Released(usize),
    Done,
}

/// Serves one request on the engine's task (called by the driver).
pub fn handle(engine: &mut Engine, now: Duration, request: Request) -> Reply {
    match request {
        Request::Status => Reply::Status(HalfStatus {
            half: "",
            tunnel_up: engine.is_tunnel_up(),
            draining: engine.is_draining(),
            calls_up: engine.calls_up(now).len(),
            blocked: engine.blocked_list(now),
            trunk_registration: engine.stats().registration,
            gatekeeper_registration: engine.stats().ras.map(Box::new),
        }),
        Request::Calls => Reply::Calls(engine.calls_up(now)),
        Request::Drain => {
            engine.set_draining(true);
            Reply::Done
        }
        Request::ReleaseAll => Reply::Released(engine.release_all(now)),
        Request::Block(ip) => Reply::Blocked(engine.block(ip)),
        Request::Unblock(ip) => Reply::Unblocked(engine.unblock(ip)),
        Request::Reload(s) => {
            engine.apply_live_settings(*s);
            Reply::Done
        }
    }
}

/// The gateway's control lines go through the log like every other line (target `sgw::control`).
fn log(msg: std::fmt::Arguments<'_>) {
    tracing::info!(target: "sgw::control", "{msg}");
}

/// How far a drain has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DrainProgress {
    calls_up: usize,
    done: bool,
}

/// The process's halves and what the operator may change in them.
pub struct Control {
    halves: Vec<ControlHandle>,
    /// The configuration file (`None`: the demo, nothing to reload).
    config_path: Option<PathBuf>,
    /// The configuration in force: the file's at start, with what reloads applied.
    running: Mutex<Option<Config>>,
    drain: watch::Sender<Option<DrainProgress>>,
    /// Turns true when a drain is over: the process exits (status 0).
    exit: watch::Sender<bool>,
    /// `sgw ctl drain` clients not yet told `drained`: the process waits for them (briefly).
    drain_clients: std::sync::atomic::AtomicUsize,
}

impl Control {
    pub fn new(
        halves: Vec<ControlHandle>,
        config_path: Option<PathBuf>,
        running: Option<Config>,
    ) -> Arc<Control> {
        Arc::new(Control {
            halves,
            config_path,
            running: Mutex::new(running),
            drain: watch::channel(None).0,
            exit: watch::channel(false).0,
            drain_clients: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Turns true when a drain has ended the process's last call.
    pub fn exit_requested(&self) -> watch::Receiver<bool> {
        self.exit.subscribe()
    }

    async fn statuses(&self) -> Vec<HalfStatus> {
        let mut v = Vec::new();
        for h in &self.halves {
            if let Some(Reply::Status(mut s)) = h.request(Request::Status).await {
                s.half = h.half;
                v.push(s);
            }
        }
        v
    }

    /// Calls up in the process (a call both halves of one process hold counts once; GW1's
    /// halves toward several GW2s, `gw1-1`, `gw1-2`, ..., each number their own calls).
    async fn calls_up(&self) -> usize {
        let mut refs = std::collections::BTreeSet::new();
        for h in &self.halves {
            let engine = if h.half.starts_with("gw1-") {
                h.half
            } else {
                ""
            };
            if let Some(Reply::Calls(calls)) = h.request(Request::Calls).await {
                refs.extend(calls.iter().map(|c| (engine, c.call)));
            }
        }
        refs.len()
    }

    /// Re-reads the configuration file and applies what can change live: the `[policy]`
    /// access rules and emergency numbers, and the rates, block settings, `max_calls` and
    /// emergency reserve of `[gw2.limits]`. An invalid file changes nothing. Returns what
    /// was done, or why nothing was.
    pub async fn reload(&self) -> Result<String, String> {
        let Some(path) = &self.config_path else {
            let why = "no configuration file to reload (the built-in demo)".to_owned();
            log(format_args!("reload: {why}"));
            return Err(why);
        };
        let new = match load_config(path) {
            Ok(c) => c,
            Err(e) => {
                let why = format!("{e}; the configuration in force is kept");
                log(format_args!("reload: {why}"));
                return Err(why);
            }
        };
        let mut running = self.running.lock().await;
        let not_live = match running.as_ref() {
            Some(old) => not_live_changes(old, &new),
            None => Vec::new(),
        };
        let mut settings = live_settings(&new);
        if let Some(a) = &new.auth {
            let loaded = super::run::nonce_key()
                .map_err(|e| e.to_string())
                .and_then(|k| a.digest_config(k));
            match loaded {
                Ok(d) => settings.auth = Some(d),
                Err(e) => {
                    let why = format!("[auth]: {e}; the configuration in force is kept");
                    log(format_args!("reload: {why}"));
                    return Err(why);
                }
            }
        }
        let rules = new.policy.rules.len();
        for h in &self.halves {
            let mut s = settings.clone();
            if h.half != "gw2" {
                // Only GW2 challenges calls.
                s.auth = None;
            }
            let _ = h.request(Request::Reload(Box::new(s))).await;
        }
        let merged = match running.take() {
            Some(old) => merge_live(old, &new),
            None => new,
        };
        *running = Some(merged);
        let mut msg = format!(
            "reloaded {}: [policy] ({rules} access rules, {} emergency numbers){}",
            path.display(),
            settings.emergency_numbers.len(),
            if settings.limits.is_some() {
                " and the live keys of [gw2.limits]"
            } else {
                ""
            }
        );
        if !not_live.is_empty() {
            msg.push_str(&format!(
                "; not changed live (restart to apply): {}",
                not_live.join(", ")
            ));
        }
        log(format_args!("{msg}"));
        Ok(msg)
    }

    /// Starts the drain (once; a later request follows the same drain).
    async fn start_drain(self: &Arc<Self>, timeout: Option<Duration>) {
        if self.drain.borrow().is_some() {
            return;
        }
        for h in &self.halves {
            let _ = h.request(Request::Drain).await;
        }
        let calls_up = self.calls_up().await;
        self.drain.send_replace(Some(DrainProgress {
            calls_up,
            done: false,
        }));
        log(format_args!(
            "draining: new calls refused, {calls_up} calls up{}",
            timeout.map_or_else(String::new, |t| format!(", timeout {}s", t.as_secs()))
        ));
        let me = self.clone();
        tokio::spawn(async move { me.run_drain(timeout).await });
    }

    async fn run_drain(self: Arc<Self>, timeout: Option<Duration>) {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let calls_up = self.calls_up().await;
            self.drain.send_if_modified(|p| {
                let changed = p.is_some_and(|p| p.calls_up != calls_up);
                *p = Some(DrainProgress {
                    calls_up,
                    done: false,
                });
                changed
            });
            if calls_up == 0 {
                tokio::time::sleep(DRAIN_GRACE).await;
                break;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                // A call both halves of the process hold is one call.
                let ended = calls_up;
                for h in &self.halves {
                    let _ = h.request(Request::ReleaseAll).await;
                }
                log(format_args!(
                    "drain timeout: ended {ended} calls (cause 16, normal clearing)"
                ));
                tokio::time::sleep(RELEASE_GRACE).await;
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        log(format_args!("drained: no call up, stopping"));
        self.drain.send_replace(Some(DrainProgress {
            calls_up: 0,
            done: true,
        }));
        // The clients waiting on the drain get their `drained` line before the process goes.
        let told = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.drain_clients.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < told {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.exit.send_replace(true);
    }

    async fn serve_one(self: Arc<Self>, stream: UnixStream) {
        if !peer_allowed(&stream) {
            return;
        }
        let (r, mut w) = stream.into_split();
        let mut line = String::new();
        let mut reader = BufReader::new(r.take(MAX_REQUEST as u64));
        let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["status"] => Ok(self.status_text().await),
            ["status", "json"] => Ok(json(&self.status_json().await)),
            ["calls"] => Ok(self.calls_text().await),
            ["calls", "json"] => Ok(json(&self.calls_json().await)),
            ["drain"] => return self.drain_reply(None, w).await,
            ["drain", secs] => match secs.parse::<u64>() {
                Ok(s) => return self.drain_reply(Some(Duration::from_secs(s)), w).await,
                Err(_) => Err(format!("bad timeout {secs:?}: whole seconds")),
            },
            ["block", addr] => match addr.parse::<IpAddr>() {
                Ok(ip) => self.block(ip).await,
                Err(_) => Err(format!("not an IP address: {addr}")),
            },
            ["unblock", addr] => match addr.parse::<IpAddr>() {
                Ok(ip) => self.unblock(ip).await,
                Err(_) => Err(format!("not an IP address: {addr}")),
            },
            ["reload"] => self.reload().await,
            _ => Err(format!(
                "unknown request {:?}: status [json], calls [json], drain [SECS], block ADDR, \
                 unblock ADDR, reload",
                line.trim()
            )),
        };
        let text = match reply {
            Ok(body) if body.is_empty() => "ok\n".to_owned(),
            Ok(body) => format!("ok\n{}\n", body.trim_end()),
            Err(why) => format!("error: {why}\n"),
        };
        let _ = w.write_all(text.as_bytes()).await;
        let _ = w.shutdown().await;
    }

    async fn drain_reply(
        self: Arc<Self>,
        timeout: Option<Duration>,
        mut w: tokio::net::unix::OwnedWriteHalf,
    ) {
        self.drain_clients.fetch_add(1, Ordering::SeqCst);
        self.start_drain(timeout).await;
        let mut rx = self.drain.subscribe();
        let _ = w.write_all(b"ok\n").await;
        loop {
            let p = *rx.borrow_and_update();
            let Some(p) = p else { break };
            let line = if p.done {
                "drained\n".to_owned()
            } else {
                format!("draining: {} calls up\n", p.calls_up)
            };
            if w.write_all(line.as_bytes()).await.is_err() || p.done {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
        self.drain_clients.fetch_sub(1, Ordering::SeqCst);
    }

    async fn block(&self, ip: IpAddr) -> Result<String, String> {
        let mut what = None;
        for h in self.halves.iter().filter(|h| h.half == "gw2") {
            if let Some(Reply::Blocked(k)) = h.request(Request::Block(ip)).await {
                what = Some(k);
            }
        }
        let what = what.ok_or("no GW2 half in this process: blocks apply to GW2's outside")?;
        log(format_args!("blocked {what} (until unblocked)"));
        Ok(format!("blocked {what}"))
    }

    async fn unblock(&self, ip: IpAddr) -> Result<String, String> {
        let mut found = None;
        for h in self.halves.iter().filter(|h| h.half == "gw2") {
            if let Some(Reply::Unblocked(b)) = h.request(Request::Unblock(ip)).await {
                found = Some(found.unwrap_or(false) || b);
            }
        }
        match found {
            None => Err("no GW2 half in this process: blocks apply to GW2's outside".into()),
            Some(false) => Err(format!("{ip} is not blocked")),
            Some(true) => {
                log(format_args!("unblocked {ip}"));
                Ok(format!("unblocked {ip}"))
            }
        }
    }

    async fn status_json(&self) -> serde_json::Value {
        let halves = self.statuses().await;
        serde_json::json!({
            "halves": halves,
            "draining": self.drain.borrow().is_some(),
            "registrations": serde_json::Value::Null,
            "registrations_note": REGISTRATIONS,
        })
    }

    async fn status_text(&self) -> String {
        let mut out = String::new();
        for s in self.statuses().await {
            out.push_str(&format!(
                "{}: tunnel {}, {} calls up, {}\n",
                s.half,
                if s.tunnel_up { "up" } else { "down" },
                s.calls_up,
                if s.draining {
                    "draining (new calls refused)"
                } else {
                    "taking calls"
                }
            ));
            if s.half == "gw2" {
                if s.blocked.is_empty() {
                    out.push_str("  blocked sources: none\n");
                }
                for b in &s.blocked {
                    let how = match b.secs_left {
                        Some(secs) => format!("{secs}s left"),
                        None => "manual, until unblocked".to_owned(),
                    };
                    out.push_str(&format!("  blocked {} ({how})\n", b.source));
                }
                if let Some(r) = &s.trunk_registration {
                    let state = serde_json::to_value(r.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let left = r
                        .expires_in
                        .map(|e| format!(", {e}s left"))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "  trunk registration {} at {}: {state}{left} (last status {})\n",
                        r.aor, r.registrar, r.last_status
                    ));
                }
            }
            if let Some(r) = &s.gatekeeper_registration {
                out.push_str(&gatekeeper_line(r));
            }
        }
        out.push_str(&format!("registrations: {REGISTRATIONS}\n"));
        out
    }

    async fn calls_json(&self) -> serde_json::Value {
        let mut v = Vec::new();
        for h in &self.halves {
            if let Some(Reply::Calls(calls)) = h.request(Request::Calls).await {
                for c in calls {
                    let mut j = serde_json::to_value(&c).unwrap_or_default();
                    if let Some(o) = j.as_object_mut() {
                        o.insert("half".into(), h.half.into());
                    }
                    v.push(j);
                }
            }
        }
        serde_json::Value::Array(v)
    }

    async fn calls_text(&self) -> String {
        let mut out = String::new();
        for h in &self.halves {
            if let Some(Reply::Calls(calls)) = h.request(Request::Calls).await {
                for c in calls {
                    out.push_str(&format!(
                        "{} call {} {} {} from {:?} to {:?}{} {:.0}s {}{}{}{}\n",
                        h.half,
                        c.call,
                        match c.direction {
                            crate::engine::calls::Direction::FromOutside => "from-outside",
                            crate::engine::calls::Direction::FromInside => "from-inside",
                        },
                        match c.protocol {
                            crate::engine::calls::CallProtocol::Sip => "sip",
                            crate::engine::calls::CallProtocol::H323 => "h323",
                        },
                        c.calling,
                        c.called,
                        if c.emergency { " emergency" } else { "" },
                        c.age_secs,
                        if c.answered { "answered" } else { "ringing" },
                        c.source.map(|s| format!(" source {s}")).unwrap_or_default(),
                        c.rule.map(|r| format!(" rule {r}")).unwrap_or_default(),
                        c.auth_identity
                            .map(|u| format!(" authenticated {u:?}"))
                            .unwrap_or_default(),
                    ));
                }
            }
        }
        if out.is_empty() {
            out.push_str("no calls up\n");
        }
        out
    }
}

/// The `sgw ctl status` line of GW1's gatekeeper registration.
fn gatekeeper_line(r: &crate::engine::ras_client::RasStatus) -> String {
    let state = serde_json::to_value(r.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let id = r
        .endpoint_id
        .as_deref()
        .map(|e| format!(" as {e}"))
        .unwrap_or_default();
    let ttl = r
        .time_to_live
        .map(|t| format!(", timeToLive {t}s"))
        .unwrap_or_default();
    let failure = r
        .last_failure
        .as_deref()
        .map(|f| format!(", last failure: {f}"))
        .unwrap_or_default();
    format!(
        "  gatekeeper registration at {}: {state}{id}{ttl} ({} requests, {} timeouts, {} rejects{failure})\n",
        r.gatekeeper, r.requests, r.timeouts, r.rejects
    )
}

const REGISTRATIONS: &str = "none (sgw keeps no registrations)";

fn json(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Only the gateway's own user and root may use the socket (besides its mode 0600).
fn peer_allowed(stream: &UnixStream) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    cred.uid() == 0 || Some(cred.uid()) == me
}

/// Reads and checks a configuration file.
pub fn load_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::from_toml_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().replace('\n', "; ")))
}

/// What a reload applies from `cfg` (as `sgw run` does at start).
fn live_settings(cfg: &Config) -> LiveSettings {
    let emergency_numbers = if cfg.policy.emergency_numbers.is_empty() {
        EngineConfig::default().emergency_numbers
    } else {
        cfg.policy.emergency_numbers.clone()
    };
    LiveSettings {
        access: cfg.policy.access_policy(),
        emergency_numbers,
        limits: cfg.gw2.as_ref().map(|g| {
            (
                g.limits.engine_limits(),
                usize::try_from(g.limits.max_calls).unwrap_or(usize::MAX),
            )
        }),
        auth: None,
    }
}

/// `old` with what a reload changes taken from `new`.
fn merge_live(mut old: Config, new: &Config) -> Config {
    old.policy = new.policy.clone();
    old.auth = new.auth.clone();
    if let (Some(o), Some(n)) = (old.gw2.as_mut(), new.gw2.as_ref()) {
        let (o, n) = (&mut o.limits, &n.limits);
        o.max_calls = n.max_calls;
        o.calls_per_second = n.calls_per_second;
        o.calls_per_source = n.calls_per_source;
        o.calls_per_source_burst = n.calls_per_source_burst;
        o.requests_per_source = n.requests_per_source;
        o.requests_per_source_burst = n.requests_per_source_burst;
        o.block_after = n.block_after;
        o.block_after_unknown_numbers = n.block_after_unknown_numbers;
        o.block_window_secs = n.block_window_secs;
        o.block_secs = n.block_secs;
        o.max_sources = n.max_sources;
        o.emergency_reserve_percent = n.emergency_reserve_percent;
    }
    old
}

/// The keys that differ between `old` and `new` and that a reload leaves as they were.
pub fn not_live_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    let merged = merge_live(old.clone(), new);
    let mut add = |changed: bool, key: &'static str| {
        if changed {
            v.push(key);
        }
    };
    match (&merged.gw2, &new.gw2) {
        (Some(o), Some(n)) => {
            add(o.sip_udp != n.sip_udp, "gw2.sip_udp");
            add(o.sip_tcp != n.sip_tcp, "gw2.sip_tcp");
            add(o.h225_tcp != n.h225_tcp, "gw2.h225_tcp");
            add(o.tunnel_listen != n.tunnel_listen, "gw2.tunnel_listen");
            add(
                o.allow_multiple_gw1 != n.allow_multiple_gw1,
                "gw2.allow_multiple_gw1",
            );
            add(o.media != n.media, "[gw2.media]");
            add(
                o.outside_next_hop != n.outside_next_hop,
                "gw2.outside_next_hop",
            );
            let (a, b) = (&o.limits, &n.limits);
            add(
                a.max_message_size != b.max_message_size,
                "gw2.limits.max_message_size",
            );
            add(
                a.max_tcp_connections != b.max_tcp_connections,
                "gw2.limits.max_tcp_connections",
            );
            add(
                a.max_tcp_per_source != b.max_tcp_per_source,
                "gw2.limits.max_tcp_per_source",
            );
            add(
                a.tcp_idle_timeout_secs != b.tcp_idle_timeout_secs,
                "gw2.limits.tcp_idle_timeout_secs",
            );
            add(
                a.ipv6_prefix_len != b.ipv6_prefix_len,
                "gw2.limits.ipv6_prefix_len",
            );
            add(
                a.handshake_timeout_secs != b.handshake_timeout_secs,
                "gw2.limits.handshake_timeout_secs",
            );
            add(o.records != n.records, "[gw2.records]");
        }
        (None, None) => {}
        _ => add(true, "[gw2]"),
    }
    match (&merged.gw1, &new.gw1) {
        (Some(o), Some(n)) => {
            add(o.tunnel != n.tunnel, "gw1.tunnel");
            add(
                o.tunnel_server_name != n.tunnel_server_name,
                "gw1.tunnel_server_name",
            );
            add(o.gw2 != n.gw2, "[[gw1.gw2]]");
            add(o.sip_bind != n.sip_bind, "gw1.sip_bind");
            add(o.next_hop != n.next_hop, "gw1.next_hop");
            add(o.family != n.family, "gw1.family");
            add(o.transport != n.transport, "gw1.transport");
            add(o.media != n.media, "[gw1.media]");
            add(o.records != n.records, "[gw1.records]");
        }
        (None, None) => {}
        _ => add(true, "[gw1]"),
    }
    add(merged.pki != new.pki, "[pki]");
    add(merged.control != new.control, "[control]");
    add(merged.hep != new.hep, "[hep]");
    add(merged.recording != new.recording, "[recording]");
    add(
        merged.confidentiality != new.confidentiality,
        "[confidentiality]",
    );
    v
}

/// The control socket at `path`, mode 0600. A socket file left by a gateway that is gone is
/// replaced; one a running gateway answers on is an error.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            anyhow::bail!(
                "control socket {}: exists and is not a socket",
                path.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "control socket {}: another gateway answers on it",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .map_err(|e| anyhow::anyhow!("control socket {}: {e}", path.display()))?;
    }
    // Bound under a temporary name, restricted, then renamed into place: the socket is never
    // reachable under its name with a wider mode.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)
        .map_err(|e| anyhow::anyhow!("control socket {}: {e}", path.display()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("control socket {}: {e}", path.display());
    }
    Ok(listener)
}

/// Answers the control socket until the process stops.
pub async fn serve(listener: UnixListener, control: Arc<Control>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(control.clone().serve_one(stream));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// SIGHUP from now on no longer stops the process: it is queued for [`start`], which
/// reloads on it.
pub fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup()).ok()
}

/// Reloads on every SIGHUP until the process stops.
async fn reload_on_sighup(control: Arc<Control>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        log(format_args!("SIGHUP: reloading"));
        let _ = control.reload().await;
    }
}

/// The control of a running `sgw run`.
pub struct Started {
    pub control: Arc<Control>,
    /// The control socket, removed by [`Started::remove_socket`].
    pub socket: Option<PathBuf>,
}

impl Started {
    pub fn remove_socket(&self) {
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Starts the control of `sgw run`: the socket of `[control]` (the demo: one in the temporary
/// directory), and reloads of `config` on `hup`. Prints `control socket PATH`.
pub fn start(
    config: Option<&Path>,
    halves: Vec<ControlHandle>,
    hup: Option<tokio::signal::unix::Signal>,
) -> anyhow::Result<Started> {
    let running = match config {
        Some(p) => Some(load_config(p).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    let socket = match (config, &running) {
        (Some(_), Some(c)) => c.control.as_ref().map(|c| c.socket.clone()),
        _ => Some(std::env::temp_dir().join(format!("sgw-demo-{}.sock", std::process::id()))),
    };
    let control = Control::new(halves, config.map(Path::to_path_buf), running);
    if let Some(path) = &socket {
        let listener = bind(path)?;
        println!(
            "control socket {} (sgw ctl --socket {} status)",
            path.display(),
            path.display()
        );
        tokio::spawn(serve(listener, control.clone()));
    }
    if let Some(hup) = hup {
        tokio::spawn(reload_on_sighup(control.clone(), hup));
    }
    Ok(Started { control, socket })
}

/// `sgw ctl`: sends `request` to the socket at `path`, prints the reply; the exit status is
/// 0 for `ok` (for `drain`, once `drained` arrived), 1 for an error reply, 2 when the socket
/// cannot be used.
pub fn client(path: &Path, request: &str) -> anyhow::Result<u8> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| anyhow::anyhow!("control socket {}: {e}", path.display()))?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let reader = std::io::BufReader::new(s);
    let mut first = None;
    let mut last = String::new();
    let mut out = std::io::stdout().lock();
    for line in reader.lines() {
        let line = line?;
        if first.is_none() {
            if let Some(why) = line.strip_prefix("error: ") {
                eprintln!("sgw ctl: {why}");
                return Ok(1);
            }
            first = Some(line.clone());
            continue;
        }
        writeln!(out, "{line}")?;
        out.flush()?;
        last = line;
    }
    match first.as_deref() {
        Some("ok") if !request.starts_with("drain") || last == "drained" => Ok(0),
        Some("ok") => {
            eprintln!("sgw ctl: the gateway closed the connection before the drain was over");
            Ok(1)
        }
        _ => anyhow::bail!("control socket {}: no reply", path.display()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_reload_names_what_it_cannot_change() {
        let old = Config::from_toml_str(crate::config::EXAMPLE_CONFIG).unwrap();
        let text = crate::config::EXAMPLE_CONFIG
            .replace("max_message_size = 65535", "max_message_size = 1500")
            .replace(
                "emergency_numbers = [\"112\", \"110\", \"911\"]",
                "emergency_numbers = [\"112\"]",
            );
        let new = Config::from_toml_str(&text).unwrap();
        assert_eq!(
            not_live_changes(&old, &new),
            vec!["gw2.limits.max_message_size"]
        );
        let merged = merge_live(old.clone(), &new);
        assert_eq!(merged.policy.emergency_numbers, vec!["112".to_owned()]);
        assert_eq!(merged.gw2.unwrap().limits.max_message_size, 65535);
        assert!(not_live_changes(&old, &old).is_empty());
    }
}
