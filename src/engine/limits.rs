//! Availability under attack: rate limits keyed by source and a global call rate, and the
//! repeat-offender block list (in the spirit of kamailio's pike module).
//!
//! The buckets are `governor`'s GCRA limiters. Their clock is the engine's `now` (a
//! [`FakeRelativeClock`] advanced to it), so a replay decides exactly as the live gateway did
//! on the same packet times. Sources are keyed per IPv4 address and per IPv6 prefix
//! (`/64` by default): one host holds a whole /64, so a finer key would let it spread a flood.
//!
//! Memory stays bounded under a flood from spoofed sources: keys whose bucket is full again
//! are dropped ([`RateLimiter::retain_recent`]) at most once a second, and past
//! `max_sources` keys every new source shares one overflow bucket.

use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// The settings of the rate limits and the block list (`[gw2.limits]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// New calls (INVITE, H.225.0 Setup) per second from one source; 0 turns the limit off.
    pub source_calls_per_second: u32,
    /// How many new calls one source may place at once before the rate applies.
    pub source_calls_burst: u32,
    /// Requests (every SIP request; each new H.225.0 connection) per second from one source;
    /// 0 turns the limit off.
    pub source_requests_per_second: u32,
    pub source_requests_burst: u32,
    /// New calls per second from outside, all sources together; 0 turns the limit off.
    pub calls_per_second: u32,
    /// The prefix length that keys an IPv6 source.
    pub ipv6_prefix: u8,
    /// Refusals by a limit within `block_window` after which the source is blocked; 0 never
    /// blocks.
    pub block_after: u32,
    /// Calls from one source that end unanswered on a number the inside does not have (Q.850
    /// cause 1 or 28: SIP 404, 484, 604), within `block_window`, after which the source is
    /// blocked: a scanner walking a number range (svwar) is stopped before it reaches the
    /// numbers that exist. 0 never blocks for them.
    pub block_after_unknown_numbers: u32,
    pub block_window: Duration,
    /// How long a blocked source's packets are dropped unanswered.
    pub block_time: Duration,
    /// Most sources tracked per limit and in the block list.
    pub max_sources: usize,
    /// Share of `max_calls` kept for emergency calls, in percent.
    pub emergency_reserve_percent: u8,
}

pub const DEFAULT_SOURCE_CALLS_PER_SECOND: u32 = 20;
pub const DEFAULT_SOURCE_CALLS_BURST: u32 = 40;
pub const DEFAULT_SOURCE_REQUESTS_PER_SECOND: u32 = 200;
pub const DEFAULT_SOURCE_REQUESTS_BURST: u32 = 400;
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
pub const DEFAULT_BLOCK_AFTER: u32 = 50;
pub const DEFAULT_BLOCK_AFTER_UNKNOWN_NUMBERS: u32 = 10;
pub const DEFAULT_BLOCK_WINDOW: Duration = Duration::from_secs(10);
pub const DEFAULT_BLOCK_TIME: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_SOURCES: usize = 100_000;
pub const DEFAULT_EMERGENCY_RESERVE_PERCENT: u8 = 10;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            source_calls_per_second: DEFAULT_SOURCE_CALLS_PER_SECOND,
            source_calls_burst: DEFAULT_SOURCE_CALLS_BURST,
            source_requests_per_second: DEFAULT_SOURCE_REQUESTS_PER_SECOND,
            source_requests_burst: DEFAULT_SOURCE_REQUESTS_BURST,
            calls_per_second: 0,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            block_after: DEFAULT_BLOCK_AFTER,
            block_after_unknown_numbers: DEFAULT_BLOCK_AFTER_UNKNOWN_NUMBERS,
            block_window: DEFAULT_BLOCK_WINDOW,
            block_time: DEFAULT_BLOCK_TIME,
            max_sources: DEFAULT_MAX_SOURCES,
            emergency_reserve_percent: DEFAULT_EMERGENCY_RESERVE_PERCENT,
        }
    }
}

/// What a source is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4(u32),
    /// The address with every bit past the configured prefix cleared.
    V6(u128),
    /// Every new source once `max_sources` are tracked.
    Overflow,
}

impl SourceKey {
    pub fn of(ip: IpAddr, ipv6_prefix: u8) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => {
                    let bits = u32::from(ipv6_prefix.min(128));
                    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                    SourceKey::V6(u128::from(v6) & mask)
                }
            },
        }
    }
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    SourceCalls,
    GlobalCalls,
    SourceRequests,
}

impl Limited {
    pub fn reason(self) -> &'static str {
        match self {
            Limited::SourceCalls => "source call rate exceeded",
            Limited::GlobalCalls => "gateway call rate exceeded",
            Limited::SourceRequests => "source request rate exceeded",
        }
    }
}

/// Counters of the limits, shown in `stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LimitCounters {
    pub refused_source_calls: u64,
    pub refused_global_calls: u64,
    pub refused_source_requests: u64,
    /// Calls from outside that ended on a number the inside does not have.
    pub unknown_numbers: u64,
    /// Sources blocked for repeated refusals or calls to unknown numbers.
    pub blocks: u64,
    /// Messages and packets dropped unanswered from a blocked source.
    pub dropped_blocked: u64,
    /// Checks made in the shared overflow bucket because `max_sources` keys were held.
    pub overflow_checks: u64,
}

type Keyed =
    RateLimiter<SourceKey, HashMapStateStore<SourceKey>, FakeRelativeClock, NoOpMiddleware<Nanos>>;
type Direct = RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, NoOpMiddleware<Nanos>>;

/// What a source did to count towards its block.
#[derive(Debug, Clone, Copy)]
enum Offence {
    /// Refused by a source limit.
    Refusal,
    /// A call that ended on a number the inside does not have.
    UnknownNumber,
}

#[derive(Debug, Clone, Copy)]
struct Offender {
    window_start: Duration,
    refusals: u32,
    /// Calls to numbers the inside does not have, in the window.
    unknown_numbers: u32,
    blocked_until: Option<Duration>,
    /// Whether a drop was reported in the current block.
    drop_reported: bool,
    /// Blocked by the operator (`sgw ctl block`): until unblocked.
    manual: bool,
}

/// One blocked source, as `sgw ctl status` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BlockedSource {
    /// The address (IPv4) or prefix (IPv6, `/ipv6_prefix`) blocked.
    pub source: String,
    /// Blocked by `sgw ctl block` (no expiry).
    pub manual: bool,
    /// Seconds left of an automatic block.
    pub secs_left: Option<u64>,
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKey::V4(a) => write!(f, "{}", std::net::Ipv4Addr::from(*a)),
            SourceKey::V6(a) => write!(f, "{}", std::net::Ipv6Addr::from(*a)),
            SourceKey::Overflow => f.write_str("overflow"),
        }
    }
}

/// The limits and the block list. See the module docs.
pub struct Limits {
    cfg: LimitsConfig,
    clock: FakeRelativeClock,
    clock_at: Duration,
    calls: Option<Keyed>,
    requests: Option<Keyed>,
    global: Option<Direct>,
    offenders: FxHashMap<SourceKey, Offender>,
    /// Blocked sources now (so the per-packet check is free when there are none).
    blocked: usize,
    last_retain: Duration,
    pub counters: LimitCounters,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("cfg", &self.cfg)
            .field("keys", &self.keys())
            .finish()
    }
}

fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The latest time the limiters' clock reaches: 200 years, far below `u64::MAX` nanoseconds.
const MAX_CLOCK: Duration = Duration::from_secs(200 * 365 * 24 * 3600);

/// How often keys whose bucket is full again are dropped.
const RETAIN_EVERY: Duration = Duration::from_secs(1);

impl Limits {
    pub fn new(cfg: LimitsConfig) -> Self {
        let clock = FakeRelativeClock::default();
        let keyed = |rate, burst| {
            quota(rate, burst).map(|q| RateLimiter::hashmap_with_clock(q, clock.clone()))
        };
        Limits {
            calls: keyed(cfg.source_calls_per_second, cfg.source_calls_burst),
            requests: keyed(cfg.source_requests_per_second, cfg.source_requests_burst),
            global: quota(cfg.calls_per_second, cfg.calls_per_second)
                .map(|q| RateLimiter::direct_with_clock(q, clock.clone())),
            clock,
            clock_at: Duration::ZERO,
            offenders: FxHashMap::default(),
            blocked: 0,
            last_retain: Duration::ZERO,
            counters: LimitCounters::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.cfg
    }

    fn advance(&mut self, now: Duration) {
        // governor's clock counts nanoseconds in a u64 (and panics past it): a capture's
        // far-future time stops the clock instead.
        let now = now.min(MAX_CLOCK);
        if now > self.clock_at {
            self.clock.advance(now - self.clock_at);
            self.clock_at = now;
        }
    }

    pub fn key(&self, ip: IpAddr) -> SourceKey {
        SourceKey::of(ip, self.cfg.ipv6_prefix)
    }

    /// Keys held by the limiters and the block list.
    pub fn keys(&self) -> usize {
        self.calls.as_ref().map_or(0, |l| l.len())
            + self.requests.as_ref().map_or(0, |l| l.len())
            + self.offenders.len()
    }

    /// Sources blocked now.
    pub fn blocked_sources(&self) -> usize {
        self.blocked
    }

    fn retain(&mut self, now: Duration) {
        if now < self.last_retain.saturating_add(RETAIN_EVERY) {
            return;
        }
        self.last_retain = now;
        for l in [&self.calls, &self.requests].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// One check of a keyed limiter; `Err` is the time until the source may try again, and
    /// the key that was checked (the overflow key when too many sources are held).
    fn check_keyed(
        &mut self,
        now: Duration,
        which: Limited,
        key: SourceKey,
    ) -> Result<(), (Duration, SourceKey)> {
        let max = self.cfg.max_sources.max(1);
        let len = match which {
            Limited::SourceCalls => self.calls.as_ref().map_or(0, |l| l.len()),
            _ => self.requests.as_ref().map_or(0, |l| l.len()),
        };
        if len >= max {
            self.retain(now);
        }
        let limiter = match which {
            Limited::SourceCalls => self.calls.as_ref(),
            _ => self.requests.as_ref(),
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        let key = if limiter.len() >= max {
            self.counters.overflow_checks += 1;
            SourceKey::Overflow
        } else {
            key
        };
        limiter
            .check_key(&key)
            .map_err(|nu| (nu.wait_time_from(self.clock.now()), key))
    }

    /// The per-source request link: every SIP request from outside, and every new H.225.0
    /// connection. `Err` carries the seconds for `Retry-After`.
    pub fn check_request(&mut self, now: Duration, ip: IpAddr) -> Result<(), u32> {
        self.advance(now);
        if now >= self.last_retain.saturating_add(Duration::from_secs(10)) {
            self.retain(now);
        }
        let key = self.key(ip);
        match self.check_keyed(now, Limited::SourceRequests, key) {
            Ok(()) => Ok(()),
            Err((wait, key)) => {
                self.counters.refused_source_requests += 1;
                self.offence(now, key);
                Err(retry_after(wait))
            }
        }
    }

    /// The rate links of the admission chain for a new call from outside: per source, then
    /// the gateway's `calls_per_second`. `Err` names the limit and the `Retry-After` seconds.
    pub fn check_call(&mut self, now: Duration, ip: Option<IpAddr>) -> Result<(), (Limited, u32)> {
        self.advance(now);
        if let Some(ip) = ip {
            let key = self.key(ip);
            if let Err((wait, key)) = self.check_keyed(now, Limited::SourceCalls, key) {
                self.counters.refused_source_calls += 1;
                self.offence(now, key);
                return Err((Limited::SourceCalls, retry_after(wait)));
            }
        }
        if let Some(g) = &self.global {
            if let Err(nu) = g.check() {
                self.counters.refused_global_calls += 1;
                let wait = nu.wait_time_from(self.clock.now());
                return Err((Limited::GlobalCalls, retry_after(wait)));
            }
        }
        Ok(())
    }

    /// A call from outside, from `ip`, ended unanswered on a number the inside does not have.
    pub fn unknown_number(&mut self, now: Duration, ip: IpAddr) {
        self.counters.unknown_numbers += 1;
        let key = self.key(ip);
        self.offence_of(now, key, Offence::UnknownNumber);
    }

    /// Wrong digest credentials too often (the digest link's 403): a refusal that counts
    /// toward `block_after` like the rate limits' own.
    pub fn auth_failure(&mut self, now: Duration, ip: IpAddr) {
        let key = self.key(ip);
        self.offence(now, key);
    }

    /// A refusal by a source limit: enough of them within the window block the source.
    fn offence(&mut self, now: Duration, key: SourceKey) {
        self.offence_of(now, key, Offence::Refusal);
    }

    fn offence_of(&mut self, now: Duration, key: SourceKey, kind: Offence) {
        let threshold = match kind {
            Offence::Refusal => self.cfg.block_after,
            Offence::UnknownNumber => self.cfg.block_after_unknown_numbers,
        };
        if threshold == 0 || key == SourceKey::Overflow {
            return;
        }
        if !self.offenders.contains_key(&key) && self.offenders.len() >= self.cfg.max_sources {
            self.prune(now);
            if self.offenders.len() >= self.cfg.max_sources {
                return;
            }
        }
        let window = self.cfg.block_window;
        let o = self.offenders.entry(key).or_insert(Offender {
            window_start: now,
            refusals: 0,
            unknown_numbers: 0,
            blocked_until: None,
            drop_reported: false,
            manual: false,
        });
        if o.blocked_until.is_some() {
            return;
        }
        if now.saturating_sub(o.window_start) > window {
            o.window_start = now;
            o.refusals = 0;
            o.unknown_numbers = 0;
        }
        let count = match kind {
            Offence::Refusal => &mut o.refusals,
            Offence::UnknownNumber => &mut o.unknown_numbers,
        };
        *count += 1;
        if *count >= threshold {
            o.blocked_until = Some(now.saturating_add(self.cfg.block_time));
            o.drop_reported = false;
            o.refusals = 0;
            o.unknown_numbers = 0;
            self.blocked += 1;
            self.counters.blocks += 1;
        }
    }

    /// Forgets offenders that are neither blocked nor within their window.
    fn prune(&mut self, now: Duration) {
        let window = self.cfg.block_window;
        let mut unblocked = 0;
        self.offenders.retain(|_, o| match o.blocked_until {
            Some(until) if now < until => true,
            Some(_) => {
                unblocked += 1;
                false
            }
            None => now.saturating_sub(o.window_start) <= window,
        });
        self.blocked = self.blocked.saturating_sub(unblocked);
    }

    /// Whether `ip` is blocked at `now`: `Some(true)` for the first drop of its block (the
    /// one to report), `Some(false)` for the others. Every drop is counted.
    pub fn blocked(&mut self, now: Duration, ip: IpAddr) -> Option<bool> {
        if self.blocked == 0 {
            return None;
        }
        let key = self.key(ip);
        let o = self.offenders.get_mut(&key)?;
        let until = o.blocked_until?;
        if now >= until {
            o.blocked_until = None;
            o.window_start = now;
            o.refusals = 0;
            o.unknown_numbers = 0;
            self.blocked = self.blocked.saturating_sub(1);
            return None;
        }
        self.counters.dropped_blocked += 1;
        let first = !o.drop_reported;
        o.drop_reported = true;
        Some(first)
    }

    /// The operator blocks `ip`'s source (`sgw ctl block`): its packets are dropped unanswered
    /// until [`Limits::unblock`], whatever `block_secs` says. Returns the key blocked.
    pub fn block(&mut self, ip: IpAddr) -> SourceKey {
        let key = self.key(ip);
        let o = self.offenders.entry(key).or_insert(Offender {
            window_start: Duration::ZERO,
            refusals: 0,
            unknown_numbers: 0,
            blocked_until: None,
            drop_reported: false,
            manual: true,
        });
        if o.blocked_until.is_none() {
            self.blocked += 1;
            self.counters.blocks += 1;
        }
        o.blocked_until = Some(Duration::MAX);
        o.drop_reported = false;
        o.manual = true;
        key
    }

    /// Lifts a block of `ip`'s source, manual or automatic; `false` when it was not blocked.
    pub fn unblock(&mut self, ip: IpAddr) -> bool {
        let key = self.key(ip);
        let Some(o) = self.offenders.remove(&key) else {
            return false;
        };
        if o.blocked_until.is_some() {
            self.blocked = self.blocked.saturating_sub(1);
            return true;
        }
        false
    }

    /// The sources blocked at `now`, in key order.
    pub fn blocked_list(&self, now: Duration) -> Vec<BlockedSource> {
        let mut v: Vec<(SourceKey, BlockedSource)> = self
            .offenders
            .iter()
            .filter_map(|(k, o)| {
                let until = o.blocked_until.filter(|u| now < *u)?;
                let source = match k {
                    SourceKey::V6(_) => format!("{k}/{}", self.cfg.ipv6_prefix),
                    _ => k.to_string(),
                };
                Some((
                    *k,
                    BlockedSource {
                        source,
                        manual: o.manual,
                        secs_left: (!o.manual).then(|| until.saturating_sub(now).as_secs()),
                    },
                ))
            })
            .collect();
        v.sort_by_key(|(k, _)| match k {
            SourceKey::V4(a) => (0, u128::from(*a)),
            SourceKey::V6(a) => (1, *a),
            SourceKey::Overflow => (2, 0),
        });
        v.into_iter().map(|(_, b)| b).collect()
    }

    /// New settings (a live reload). The block list and the counters are kept; a rate whose
    /// quota changed starts with a fresh bucket for every source. The IPv6 prefix is kept
    /// (the keys held were made with it).
    pub fn reconfigure(&mut self, mut cfg: LimitsConfig) {
        cfg.ipv6_prefix = self.cfg.ipv6_prefix;
        let keyed = |clock: &FakeRelativeClock, rate, burst| {
            quota(rate, burst).map(|q| RateLimiter::hashmap_with_clock(q, clock.clone()))
        };
        if (cfg.source_calls_per_second, cfg.source_calls_burst)
            != (
                self.cfg.source_calls_per_second,
                self.cfg.source_calls_burst,
            )
        {
            self.calls = keyed(
                &self.clock,
                cfg.source_calls_per_second,
                cfg.source_calls_burst,
            );
        }
        if (cfg.source_requests_per_second, cfg.source_requests_burst)
            != (
                self.cfg.source_requests_per_second,
                self.cfg.source_requests_burst,
            )
        {
            self.requests = keyed(
                &self.clock,
                cfg.source_requests_per_second,
                cfg.source_requests_burst,
            );
        }
        if cfg.calls_per_second != self.cfg.calls_per_second {
            self.global = quota(cfg.calls_per_second, cfg.calls_per_second)
                .map(|q| RateLimiter::direct_with_clock(q, self.clock.clone()));
        }
        self.cfg = cfg;
    }

    /// Slots of `max_calls` kept for emergency calls.
    pub fn emergency_reserve(&self, max_calls: usize) -> usize {
        max_calls.saturating_mul(usize::from(self.cfg.emergency_reserve_percent.min(100))) / 100
    }
}

/// Whole seconds for `Retry-After`, at least 1.
fn retry_after(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_source_gets_its_burst_then_the_rate() {
        let mut l = Limits::new(LimitsConfig {
            source_calls_per_second: 10,
            source_calls_burst: 5,
            block_after: 0,
            ..LimitsConfig::default()
        });
        let now = Duration::from_secs(100);
        for _ in 0..5 {
            assert!(l.check_call(now, Some(ip4(1))).is_ok());
        }
        assert_eq!(
            l.check_call(now, Some(ip4(1))),
            Err((Limited::SourceCalls, 1))
        );
        // Another source has its own bucket.
        assert!(l.check_call(now, Some(ip4(2))).is_ok());
        // 100 ms later one more token (10/s) has come back, and only one.
        assert!(l.check_call(now + ms(100), Some(ip4(1))).is_ok());
        assert!(l.check_call(now + ms(100), Some(ip4(1))).is_err());
        // After a second, the burst again.
        let later = now + Duration::from_secs(2);
        for _ in 0..5 {
            assert!(l.check_call(later, Some(ip4(1))).is_ok());
        }
        assert_eq!(l.counters.refused_source_calls, 2);
    }

    #[test]
    fn ipv6_sources_are_keyed_by_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a, 64), SourceKey::of(b, 64));
        assert_ne!(SourceKey::of(a, 64), SourceKey::of(c, 64));
        assert_eq!(SourceKey::of(a, 48), SourceKey::of(c, 48));
        assert_ne!(SourceKey::of(a, 128), SourceKey::of(b, 128));
        assert_eq!(SourceKey::of(a, 0), SourceKey::of(c, 0));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(SourceKey::of(mapped, 64), SourceKey::of(ip4(1), 64));
        let _ = Ipv6Addr::LOCALHOST;

        let mut l = Limits::new(LimitsConfig {
            source_requests_per_second: 1,
            source_requests_burst: 1,
            block_after: 0,
            ..LimitsConfig::default()
        });
        let now = Duration::from_secs(1);
        assert!(l.check_request(now, a).is_ok());
        // Same /64: same bucket.
        assert!(l.check_request(now, b).is_err());
        assert!(l.check_request(now, c).is_ok());
    }

    #[test]
    fn the_global_rate_counts_every_source() {
        let mut l = Limits::new(LimitsConfig {
            calls_per_second: 3,
            ..LimitsConfig::default()
        });
        let now = Duration::from_secs(5);
        for d in 0..3 {
            assert!(l.check_call(now, Some(ip4(d))).is_ok());
        }
        assert_eq!(
            l.check_call(now, Some(ip4(9))).map_err(|e| e.0),
            Err(Limited::GlobalCalls)
        );
        assert!(l
            .check_call(now + Duration::from_secs(1), Some(ip4(9)))
            .is_ok());
        assert_eq!(l.counters.refused_global_calls, 1);
    }

    #[test]
    fn repeat_offenders_are_blocked_then_released() {
        let mut l = Limits::new(LimitsConfig {
            source_requests_per_second: 1,
            source_requests_burst: 1,
            block_after: 3,
            block_window: Duration::from_secs(10),
            block_time: Duration::from_secs(30),
            ..LimitsConfig::default()
        });
        let now = Duration::from_secs(1);
        assert_eq!(l.blocked(now, ip4(1)), None);
        assert!(l.check_request(now, ip4(1)).is_ok());
        for _ in 0..3 {
            assert!(l.check_request(now, ip4(1)).is_err());
        }
        assert_eq!(l.counters.blocks, 1);
        // The first drop is the one reported, every drop is counted.
        assert_eq!(l.blocked(now, ip4(1)), Some(true));
        assert_eq!(l.blocked(now, ip4(1)), Some(false));
        assert_eq!(l.blocked(now + ms(29_999), ip4(1)), Some(false));
        assert_eq!(l.blocked(now, ip4(2)), None);
        assert_eq!(l.counters.dropped_blocked, 3);
        // The block expires.
        assert_eq!(l.blocked(now + Duration::from_secs(30), ip4(1)), None);
        assert_eq!(l.blocked_sources(), 0);
    }

    #[test]
    fn refusals_spread_beyond_the_window_do_not_block() {
        let mut l = Limits::new(LimitsConfig {
            source_requests_per_second: 1,
            source_requests_burst: 1,
            block_after: 2,
            block_window: Duration::from_secs(1),
            ..LimitsConfig::default()
        });
        let mut now = Duration::from_secs(1);
        for _ in 0..5 {
            assert!(l.check_request(now, ip4(1)).is_ok());
            assert!(l.check_request(now, ip4(1)).is_err());
            now += Duration::from_secs(3);
        }
        assert_eq!(l.counters.blocks, 0);
    }

    /// A scanner walking numbers (svwar): calls ending on unknown numbers block it, on their
    /// own threshold; a few misdials do not.
    #[test]
    fn calls_to_unknown_numbers_block_a_scanner() {
        let mut l = Limits::new(LimitsConfig {
            block_after_unknown_numbers: 3,
            block_window: Duration::from_secs(10),
            ..LimitsConfig::default()
        });
        let now = Duration::from_secs(1);
        for _ in 0..2 {
            l.unknown_number(now, ip4(1));
        }
        assert_eq!(l.blocked(now, ip4(1)), None, "two misdials are no scan");
        // Beyond the window they are forgotten.
        let later = now + Duration::from_secs(11);
        l.unknown_number(later, ip4(1));
        assert_eq!(l.blocked(later, ip4(1)), None);
        l.unknown_number(later, ip4(1));
        l.unknown_number(later, ip4(1));
        assert_eq!(l.blocked(later, ip4(1)), Some(true));
        assert_eq!(l.blocked(later, ip4(2)), None);
        assert_eq!((l.counters.unknown_numbers, l.counters.blocks), (5, 1));
        let mut off = Limits::new(LimitsConfig {
            block_after_unknown_numbers: 0,
            ..LimitsConfig::default()
        });
        for _ in 0..100 {
            off.unknown_number(now, ip4(1));
        }
        assert_eq!(off.blocked(now, ip4(1)), None);
    }

    #[test]
    fn spoofed_sources_do_not_grow_the_tables_without_bound() {
        let mut l = Limits::new(LimitsConfig {
            max_sources: 1000,
            ..LimitsConfig::default()
        });
        let mut now = Duration::from_secs(1);
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check_request(now, ip);
            let _ = l.check_call(now, Some(ip));
            now += Duration::from_micros(100);
        }
        assert!(
            l.keys() <= 2 * 1000 + 2,
            "{} {} {}",
            l.calls.as_ref().unwrap().len(),
            l.requests.as_ref().unwrap().len(),
            l.offenders.len()
        );
    }

    #[test]
    fn a_far_future_time_does_not_panic() {
        let mut l = Limits::new(LimitsConfig::default());
        assert!(l.check_request(Duration::MAX, ip4(1)).is_ok());
        assert!(l.check_call(Duration::MAX, Some(ip4(1))).is_ok());
        assert_eq!(l.blocked(Duration::MAX, ip4(1)), None);
    }

    #[test]
    fn the_reserve_is_a_share_of_max_calls() {
        let l = Limits::new(LimitsConfig::default());
        assert_eq!(l.emergency_reserve(1000), 100);
        assert_eq!(l.emergency_reserve(5), 0);
        let l = Limits::new(LimitsConfig {
            emergency_reserve_percent: 50,
            ..LimitsConfig::default()
        });
        assert_eq!(l.emergency_reserve(5), 2);
    }
}
