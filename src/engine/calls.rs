//! The call table: one entry per call, whatever its protocol and direction. It owns a call's
//! identity, its admission (the chain every new call passes), its end (exactly one call record)
//! and the linger after it, and tells the legs when to forget a call's state.
//!
//! The admission chain is the one place where a new call is let in or refused. Each link
//! refuses with a [`Refusal`] that maps to a SIP status and a Q.850 cause; the security links
//! (rate limits, access rules, authentication) join this chain.

use super::access::{AccessPolicy, Denial};
use super::limits::{Limited, Limits, LimitsConfig};
use super::media::MediaCounters;
use super::{CallRecord, EndedBy, Family, LegRecord, Side};
use codecs::meta::{CallRef, Cause};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::time::Duration;

/// Ended calls kept lingering, per allowed concurrent call: beyond it the oldest ended call is
/// forgotten early (a flood of short calls cannot grow the table without bound).
pub const LINGER_PER_CALL: usize = 4;
/// Ended calls kept lingering whatever `max_calls` is.
pub const MIN_LINGERING: usize = 1024;

/// How long an ended call stays in the table, so late retransmissions and stray media still find
/// it (64*T1, RFC 3261 section 17.1.1.2: the longest a peer keeps retransmitting).
pub const LINGER: Duration = Duration::from_secs(32);

/// Q.850 cause 8, preemption: a call released to make room for an emergency call.
pub const PREEMPTION: Cause = Cause(8);

/// Whether a call reached the gateway from the Internet or from the intranet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    FromOutside,
    FromInside,
}

/// The protocol of the leg a call arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallProtocol {
    Sip,
    H323,
}

/// What the admission chain knows about a new call.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub direction: Direction,
    pub protocol: CallProtocol,
    /// The family of the network the call arrived from.
    pub family: Family,
    /// The address the call's first message came from; `None` for a call the other half
    /// admitted and handed over in a Meta Setup.
    pub source: Option<std::net::IpAddr>,
    pub calling: String,
    pub called: String,
    /// From [`Emergency::recognises`], the one definition of an emergency call.
    pub emergency: bool,
    /// What a SIP request brings for the digest link (`None`: H.323, or a Meta Setup).
    pub digest: Option<super::auth::DigestInput>,
}

impl NewCall {
    /// A call the other half hands over in a Meta Setup (it decided emergency already).
    pub fn from_setup(
        s: &codecs::meta::Setup,
        direction: Direction,
        protocol: CallProtocol,
        family: Family,
    ) -> Self {
        NewCall {
            direction,
            protocol,
            family,
            source: None,
            calling: s.calling.user.clone(),
            called: s.called.user.clone(),
            emergency: s.emergency,
            digest: None,
        }
    }
}

/// Why the admission chain refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tunnel to the other half is down: nothing could carry the call.
    TunnelDown,
    /// Every call slot open to the call is taken (the reserve is for emergency calls; an
    /// emergency call finds every slot held by emergency calls).
    CallLimit,
    /// The call's media could not be given ports.
    NoMediaPort,
    /// An access rule denied the call (its name: [`AccessPolicy::name`]).
    Denied(Denial),
    /// A rate limit refused the call; the caller may retry after the seconds given.
    RateLimited(Limited, u32),
    /// The gateway is draining (`sgw ctl drain`): it takes no new call.
    Draining,
    /// The call must authenticate (digest) and brought no valid credentials: SIP 401 with a
    /// challenge (`stale`: the credentials were right over an expired nonce).
    AuthRequired { stale: bool },
    /// Wrong credentials too often from this source for this user: SIP 403.
    AuthFailed,
}

impl Refusal {
    /// The Q.850 cause that releases a refused H.323 Setup or Meta call.
    pub fn cause(self) -> Cause {
        match self {
            Refusal::TunnelDown => Cause::TEMPORARY_FAILURE,
            Refusal::CallLimit => Cause::SWITCHING_EQUIPMENT_CONGESTION,
            Refusal::NoMediaPort => Cause::RESOURCE_UNAVAILABLE,
            Refusal::Denied(d) => d.cause,
            Refusal::RateLimited(..) => Cause::SWITCHING_EQUIPMENT_CONGESTION,
            Refusal::Draining => Cause::SWITCHING_EQUIPMENT_CONGESTION,
            Refusal::AuthRequired { .. } | Refusal::AuthFailed => Cause(21),
        }
    }

    /// Seconds for `Retry-After`, for the refusals that have one.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Refusal::RateLimited(_, secs) => Some(secs),
            _ => None,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TunnelDown => "tunnel to the other half is down",
            Refusal::CallLimit => "call limit reached",
            Refusal::NoMediaPort => "no free media port",
            Refusal::Denied(_) => "denied by an access rule",
            Refusal::RateLimited(l, _) => l.reason(),
            Refusal::Draining => "gateway draining",
            Refusal::AuthRequired { .. } => "authentication required",
            Refusal::AuthFailed => "authentication failed",
        }
    }
}

/// The one definition of an emergency call: a configured number, or the emergency service URN
/// `urn:service:sos` and its sub-services (RFC 5031 section 4.2, e.g. `urn:service:sos.police`).
#[derive(Debug, Clone, Default)]
pub struct Emergency {
    pub numbers: Vec<String>,
}

impl Emergency {
    /// `called` is the called user or number; `uri` the request URI when the protocol has one.
    pub fn recognises(&self, called: &str, uri: Option<&str>) -> bool {
        if !called.is_empty() && self.numbers.iter().any(|n| n == called) {
            return true;
        }
        uri.is_some_and(is_sos_urn)
    }
}

/// `urn:service:sos` or `urn:service:sos.<sub-service>`; URN scheme, NID and service names are
/// case-insensitive (RFC 8141 section 3.1, RFC 5031 section 3).
pub fn is_sos_urn(uri: &str) -> bool {
    let u = uri.trim();
    let Some(head) = u.get(..15) else {
        return false;
    };
    if !head.eq_ignore_ascii_case("urn:service:sos") {
        return false;
    }
    matches!(u.as_bytes().get(15), None | Some(b'.'))
}

/// Counters of the call table, shown in `stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CallCounters {
    pub admitted: u64,
    pub emergency_admitted: u64,
    pub refused_call_limit: u64,
    pub refused_tunnel_down: u64,
    pub refused_no_media_port: u64,
    /// Refused by a rate limit (per source or global; details in `limits`).
    pub refused_rate_limited: u64,
    /// Refused because the gateway is draining (`sgw ctl drain`).
    pub refused_draining: u64,
    /// Answered 401 (digest challenge) and 403 (wrong credentials too often) by the digest
    /// link; details in `auth`.
    pub refused_auth_required: u64,
    pub refused_auth_failed: u64,
    /// Calls released (cause 8) to make room for an emergency call.
    pub preempted: u64,
    pub ended: u64,
    /// Ended calls forgotten before their linger was over (the lingering cap was reached).
    pub linger_evicted: u64,
}

#[derive(Debug)]
struct Entry {
    direction: Direction,
    /// Where the call's first message came from (calls admitted by this half).
    source: Option<std::net::IpAddr>,
    protocol: CallProtocol,
    family: Family,
    calling: String,
    called: String,
    emergency: bool,
    /// Admission order (the newest call is the one an emergency call pre-empts).
    seq: u64,
    /// Chosen for pre-emption, not yet ended.
    preempted: bool,
    setup_at: Duration,
    /// The access rule that allowed the call (none when no rules are configured).
    rule: Option<std::sync::Arc<str>>,
    /// The user the call authenticated as (digest).
    auth_identity: Option<std::sync::Arc<str>>,
    answered_at: Option<Duration>,
    ended_at: Option<Duration>,
    /// The legs of this engine that carry the call, outside and inside (`None`: the tunnel to
    /// the other half carries that side).
    outside: Option<LegRecord>,
    inside: Option<LegRecord>,
}

/// Every call of this engine. See the module docs.
#[derive(Debug)]
pub struct CallTable {
    /// Boxed: a map keeps the slots of its largest size, and a slot holds only a pointer
    /// (issue 11, memory per call).
    calls: FxHashMap<CallRef, Box<Entry>>,
    /// Calls not yet ended: what the call cap counts.
    live: usize,
    max_calls: usize,
    /// Slots only emergency calls may use.
    reserve: usize,
    /// Calls chosen for pre-emption that the engine has not ended yet.
    preempting: Vec<CallRef>,
    seq: u64,
    /// The rate links of the chain and the block list.
    pub limits: Limits,
    /// Ended calls in the order they ended, to forget after [`LINGER`].
    lingering: VecDeque<(Duration, CallRef)>,
    /// Next even (GW2) and odd (GW1) call reference: the halves never collide. Even references
    /// start at 2, so a zero never names a call.
    next: [u32; 2],
    pub emergency: Emergency,
    pub counters: CallCounters,
    /// The access-rule link of the chain.
    pub access: AccessPolicy,
    /// The digest link of the chain (off unless `[auth]` is configured).
    pub auth: super::auth::DigestServer,
    /// The drain link of the chain: while set, new calls other than emergency calls are
    /// refused ([`Refusal::Draining`]).
    pub draining: bool,
    /// Setup times (first message in to answer) of calls answered since the driver last took
    /// them; `None` unless asked for ([`CallTable::record_setup_times`]).
    setup_times: Option<Vec<Duration>>,
    /// Wall-clock time (since the Unix epoch) of engine time zero: call records carry UTC
    /// timestamps. Zero where the engine's clock is already wall-clock time (replay: the
    /// capture's timestamps).
    pub wall_epoch: Duration,
}

/// One call up, as `sgw ctl calls` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallInfo {
    pub call: u32,
    pub direction: Direction,
    pub protocol: CallProtocol,
    pub calling: String,
    pub called: String,
    pub emergency: bool,
    /// Where the call's first message came from (calls this half admitted from a network).
    pub source: Option<std::net::IpAddr>,
    /// Seconds since the call's setup.
    pub age_secs: f64,
    pub answered: bool,
    /// The access rule that allowed it.
    pub rule: Option<String>,
    /// The user it authenticated as (digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_identity: Option<String>,
}

/// Setup times held for the driver at most; more are not recorded.
const MAX_SETUP_TIMES: usize = 4096;

impl CallTable {
    pub fn new(max_calls: usize, emergency: Emergency) -> Self {
        Self::with_limits(max_calls, emergency, LimitsConfig::default())
    }

    pub fn with_limits(max_calls: usize, emergency: Emergency, limits: LimitsConfig) -> Self {
        let limits = Limits::new(limits);
        CallTable {
            calls: FxHashMap::default(),
            live: 0,
            max_calls,
            reserve: limits.emergency_reserve(max_calls),
            preempting: Vec::new(),
            seq: 0,
            limits,
            lingering: VecDeque::new(),
            next: [2, 1],
            emergency,
            counters: CallCounters::default(),
            access: AccessPolicy::default(),
            auth: super::auth::DigestServer::default(),
            draining: false,
            setup_times: None,
            wall_epoch: Duration::ZERO,
        }
    }

    /// Keep the setup time of each answered call for [`CallTable::take_setup_times`].
    pub fn record_setup_times(&mut self) {
        self.setup_times.get_or_insert_with(Vec::new);
    }

    /// Setup times of the calls answered since the last call.
    pub fn take_setup_times(&mut self) -> Vec<Duration> {
        self.setup_times
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The admission chain for a call that arrives on `side`: tunnel; the access rules
    /// ([`AccessPolicy::decide`]); for calls other than emergency calls the drain (while `sgw
    /// ctl drain` runs), then for calls from outside the rate limits (per source, then the
    /// gateway's); digest authentication ([`super::auth`], off unless `[auth]`); then an
    /// emergency call takes any slot of `max_calls`, pre-empting the newest other call when
    /// all are taken, and other calls the slots below the emergency reserve.
    pub fn admit(
        &mut self,
        now: Duration,
        side: Side,
        call: &NewCall,
        tunnel_up: bool,
    ) -> Result<CallRef, Refusal> {
        self.access.take_decided();
        let mut identity = None;
        let result = self.check(now, call, tunnel_up, &mut identity);
        if let Err(r) = result {
            self.count_refusal(r);
            if let (Refusal::AuthFailed, Some(ip)) = (r, call.source) {
                self.limits.auth_failure(now, ip);
            }
        }
        if let Some(victim) = result? {
            self.preempt(victim);
        }
        let parity = usize::from(side == Side::Inside);
        let call_ref = loop {
            let n = self.next.get(parity).copied().unwrap_or(0);
            if let Some(slot) = self.next.get_mut(parity) {
                *slot = n.wrapping_add(2);
            }
            // Wrap-around: skip references still in the table (a lingering call's).
            if !self.calls.contains_key(&CallRef(n)) {
                break CallRef(n);
            }
        };
        let rule = self.access.decided().cloned();
        self.insert(now, call_ref, call, rule, side);
        if let Some(e) = self.calls.get_mut(&call_ref) {
            e.auth_identity = identity;
        }
        Ok(call_ref)
    }

    /// `Ok(Some(call))`: admitted once `call` is pre-empted.
    fn check(
        &mut self,
        now: Duration,
        call: &NewCall,
        tunnel_up: bool,
        identity: &mut Option<std::sync::Arc<str>>,
    ) -> Result<Option<CallRef>, Refusal> {
        if !tunnel_up {
            return Err(Refusal::TunnelDown);
        }
        self.access.decide(call)?;
        if !call.emergency {
            if self.draining {
                return Err(Refusal::Draining);
            }
            if call.direction == Direction::FromOutside {
                self.limits
                    .check_call(now, call.source)
                    .map_err(|(l, secs)| Refusal::RateLimited(l, secs))?;
            }
        }
        // After the rate limits: a flood of INVITEs is limited before any digest is computed.
        *identity = self.auth.check(now, call, self.access.decided_auth())?;
        if call.emergency {
            return self.emergency_slot();
        }
        if self.occupied() >= self.max_calls.saturating_sub(self.reserve) {
            return Err(Refusal::CallLimit);
        }
        Ok(None)
    }

    /// Live calls not being pre-empted.
    fn occupied(&self) -> usize {
        self.live.saturating_sub(self.preempting.len())
    }

    /// An emergency call may use every slot; when none is free, the newest call that is not
    /// an emergency call gives its slot up.
    fn emergency_slot(&self) -> Result<Option<CallRef>, Refusal> {
        if self.occupied() < self.max_calls {
            return Ok(None);
        }
        self.calls
            .iter()
            .filter(|(_, e)| e.ended_at.is_none() && !e.emergency && !e.preempted)
            .max_by_key(|(_, e)| e.seq)
            .map(|(c, _)| Some(*c))
            .ok_or(Refusal::CallLimit)
    }

    fn preempt(&mut self, victim: CallRef) {
        if let Some(e) = self.calls.get_mut(&victim) {
            e.preempted = true;
            self.preempting.push(victim);
            self.counters.preempted += 1;
        }
    }

    /// Whether a call waits to be pre-empted ([`CallTable::poll_preempted`]).
    pub fn preempts(&self) -> bool {
        !self.preempting.is_empty()
    }

    /// The next call to release with cause 8 ([`PREEMPTION`]) through the leg that holds it,
    /// to make room for an emergency call.
    pub fn poll_preempted(&mut self) -> Option<CallRef> {
        let victim = *self.preempting.first()?;
        self.preempting.remove(0);
        Some(victim)
    }

    /// A call the other half admitted, arriving over the tunnel. With both halves in one engine
    /// it is already here; otherwise this half applies its own cap (an emergency call takes a
    /// slot by pre-emption when none is free).
    pub fn join(
        &mut self,
        now: Duration,
        call_ref: CallRef,
        call: &NewCall,
    ) -> Result<(), Refusal> {
        // The leg joining the call places it on the side the call goes to.
        let side = match call.direction {
            Direction::FromOutside => Side::Inside,
            Direction::FromInside => Side::Outside,
        };
        if let Some(e) = self.calls.get_mut(&call_ref) {
            let leg = Some(LegRecord::of(call));
            match side {
                Side::Outside => e.outside = leg,
                Side::Inside => e.inside = leg,
            }
            return Ok(());
        }
        if call.emergency {
            let slot = self.emergency_slot();
            if let Err(r) = slot {
                self.count_refusal(r);
            }
            if let Some(victim) = slot? {
                self.preempt(victim);
            }
        } else if self.draining {
            self.count_refusal(Refusal::Draining);
            return Err(Refusal::Draining);
        } else if self.occupied() >= self.max_calls {
            self.counters.refused_call_limit += 1;
            return Err(Refusal::CallLimit);
        }
        self.insert(now, call_ref, call, None, side);
        Ok(())
    }

    fn insert(
        &mut self,
        now: Duration,
        call_ref: CallRef,
        call: &NewCall,
        rule: Option<std::sync::Arc<str>>,
        side: Side,
    ) {
        let leg = Some(LegRecord::of(call));
        let (outside, inside) = match side {
            Side::Outside => (leg, None),
            Side::Inside => (None, leg),
        };
        self.live += 1;
        self.seq += 1;
        self.counters.admitted += 1;
        if call.emergency {
            self.counters.emergency_admitted += 1;
        }
        self.calls.insert(
            call_ref,
            Box::new(Entry {
                direction: call.direction,
                source: call.source,
                protocol: call.protocol,
                family: call.family,
                calling: call.calling.clone(),
                called: call.called.clone(),
                emergency: call.emergency,
                seq: self.seq,
                preempted: false,
                setup_at: now,
                rule,
                auth_identity: None,
                answered_at: None,
                ended_at: None,
                outside,
                inside,
            }),
        );
    }

    /// The address of the peer a leg placed the call with on `side` (its next hop), for the
    /// call's record.
    pub fn set_peer(&mut self, call: CallRef, side: Side, ip: std::net::IpAddr) {
        if let Some(e) = self.calls.get_mut(&call) {
            let leg = match side {
                Side::Outside => e.outside.as_mut(),
                Side::Inside => e.inside.as_mut(),
            };
            if let Some(l) = leg {
                l.address = Some(ip);
            }
        }
    }

    /// Counts a refusal decided outside the chain (e.g. no media port), for `stats`.
    pub fn count_refusal(&mut self, r: Refusal) {
        match r {
            Refusal::TunnelDown => self.counters.refused_tunnel_down += 1,
            Refusal::CallLimit => self.counters.refused_call_limit += 1,
            Refusal::NoMediaPort => self.counters.refused_no_media_port += 1,
            Refusal::RateLimited(..) => self.counters.refused_rate_limited += 1,
            Refusal::Draining => self.counters.refused_draining += 1,
            Refusal::AuthRequired { .. } => self.counters.refused_auth_required += 1,
            Refusal::AuthFailed => self.counters.refused_auth_failed += 1,
            Refusal::Denied(_) => {}
        }
    }

    /// The reason of a refusal for reports and logs; a denial names its rule.
    pub fn describe(&self, r: Refusal) -> String {
        match r {
            Refusal::Denied(d) => format!("denied by rule {}", self.access.name(d.rule)),
            r => r.reason().to_owned(),
        }
    }

    pub fn answered(&mut self, now: Duration, call: CallRef) {
        if let Some(e) = self.calls.get_mut(&call) {
            if e.answered_at.is_none() && e.ended_at.is_none() {
                e.answered_at = Some(now);
                if let Some(t) = &mut self.setup_times {
                    if t.len() < MAX_SETUP_TIMES {
                        t.push(now.saturating_sub(e.setup_at));
                    }
                }
            }
        }
    }

    /// Whether the call is in the table and not ended.
    pub fn is_live(&self, call: CallRef) -> bool {
        self.calls.get(&call).is_some_and(|e| e.ended_at.is_none())
    }

    /// The family of the network the call arrived from (for "inside family as outside").
    pub fn family(&self, call: CallRef) -> Option<Family> {
        self.calls.get(&call).map(|e| e.family)
    }

    pub fn protocol(&self, call: CallRef) -> Option<CallProtocol> {
        self.calls.get(&call).map(|e| e.protocol)
    }

    /// Calls not yet ended.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Calls not yet ended, by the protocol and direction they arrived with (metrics).
    pub fn live_by_kind(&self) -> Vec<(CallProtocol, Direction, u64)> {
        let mut v = Vec::with_capacity(4);
        for p in [CallProtocol::Sip, CallProtocol::H323] {
            for d in [Direction::FromOutside, Direction::FromInside] {
                v.push((p, d, 0));
            }
        }
        for e in self.calls.values().filter(|e| e.ended_at.is_none()) {
            if let Some(n) = v
                .iter_mut()
                .find(|(p, d, _)| *p == e.protocol && *d == e.direction)
            {
                n.2 += 1;
            }
        }
        v
    }

    /// Every call not yet ended, in order.
    pub fn live_calls(&self) -> Vec<CallRef> {
        let mut v: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, e)| e.ended_at.is_none())
            .map(|(k, _)| *k)
            .collect();
        v.sort();
        v
    }

    /// Every call not yet ended, described for `sgw ctl calls`, in order.
    pub fn call_infos(&self, now: Duration) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self
            .calls
            .iter()
            .filter(|(_, e)| e.ended_at.is_none())
            .map(|(k, e)| CallInfo {
                call: k.0,
                direction: e.direction,
                protocol: e.protocol,
                calling: e.calling.clone(),
                called: e.called.clone(),
                emergency: e.emergency,
                source: e.source,
                age_secs: now.saturating_sub(e.setup_at).as_secs_f64(),
                answered: e.answered_at.is_some(),
                rule: e.rule.as_deref().map(str::to_owned),
                auth_identity: e.auth_identity.as_deref().map(str::to_owned),
            })
            .collect();
        v.sort_by_key(|c| c.call);
        v
    }

    /// Sets `max_calls` (a live reload): calls above a lower cap stay up, new ones wait for
    /// room.
    pub fn set_max_calls(&mut self, max_calls: usize) {
        self.max_calls = max_calls;
        self.reserve = self.limits.emergency_reserve(max_calls);
    }

    /// Ends a call: the first end is the only one that counts and yields the call record; the
    /// call then lingers for [`LINGER`].
    pub fn end(
        &mut self,
        now: Duration,
        call: CallRef,
        cause: Cause,
        media: MediaCounters,
    ) -> Option<CallRecord> {
        self.end_by(now, call, cause, media, EndedBy::Gateway)
    }

    /// [`CallTable::end`], saying who ended the call (for its record).
    pub fn end_by(
        &mut self,
        now: Duration,
        call: CallRef,
        cause: Cause,
        media: MediaCounters,
        ended_by: EndedBy,
    ) -> Option<CallRecord> {
        let e = self.calls.get_mut(&call)?;
        if e.ended_at.is_some() {
            return None;
        }
        e.ended_at = Some(now);
        if e.preempted {
            self.preempting.retain(|c| *c != call);
        }
        self.live = self.live.saturating_sub(1);
        self.counters.ended += 1;
        self.lingering.push_back((now + LINGER, call));
        // A number the inside does not have (SIP 404, 484, 604): a scanner walking numbers
        // earns a block.
        let unknown = matches!(
            cause,
            Cause::UNALLOCATED_NUMBER | Cause::INVALID_NUMBER_FORMAT
        );
        if let (true, Direction::FromOutside, None, Some(ip)) =
            (unknown, e.direction, e.answered_at, e.source)
        {
            self.limits.unknown_number(now, ip);
        }
        let wall = |t: Duration| crate::cdr::rfc3339(self.wall_epoch.saturating_add(t));
        Some(CallRecord {
            call: call.0,
            direction: e.direction,
            calling: e.calling.clone(),
            called: e.called.clone(),
            emergency: e.emergency,
            setup_at: e.setup_at.as_secs_f64(),
            answered_at: e.answered_at.map(|t| t.as_secs_f64()),
            ended_at: now.as_secs_f64(),
            start: wall(e.setup_at),
            answer: e.answered_at.map(wall),
            end: wall(now),
            cause: cause.0,
            ended_by,
            outside: e.outside.clone().unwrap_or_else(LegRecord::tunnel),
            inside: e.inside.clone().unwrap_or_else(LegRecord::tunnel),
            media,
            rule: e.rule.as_deref().map(str::to_owned),
            auth_identity: e.auth_identity.as_deref().map(str::to_owned),
        })
    }

    /// The next call whose linger is over at `now` (or the oldest ended call, when more linger
    /// than the cap allows): it is gone from the table, and the legs drop what they still hold
    /// of it.
    pub fn poll_forget(&mut self, now: Duration) -> Option<CallRef> {
        let &(at, call) = self.lingering.front()?;
        let over_cap = self.lingering.len() > self.max_lingering();
        if now < at && !over_cap {
            return None;
        }
        if now < at {
            self.counters.linger_evicted += 1;
        }
        self.lingering.pop_front();
        self.calls.remove(&call);
        Some(call)
    }

    fn max_lingering(&self) -> usize {
        self.max_calls
            .saturating_mul(LINGER_PER_CALL)
            .max(MIN_LINGERING)
    }

    /// When the next lingering call is forgotten (at once when over the cap).
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.lingering.len() > self.max_lingering() {
            return Some(Duration::ZERO);
        }
        self.lingering.front().map(|(at, _)| *at)
    }

    /// Calls in the table, live or lingering.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn new_call(emergency: bool) -> NewCall {
        NewCall {
            direction: Direction::FromOutside,
            protocol: CallProtocol::Sip,
            family: Family::V4,
            source: None,
            calling: "a".into(),
            called: "b".into(),
            emergency,
            digest: None,
        }
    }

    #[test]
    fn sos_urns_per_rfc_5031() {
        for u in [
            "urn:service:sos",
            "URN:Service:SOS",
            "urn:service:sos.police",
            "urn:service:sos.ambulance",
        ] {
            assert!(is_sos_urn(u), "{u}");
        }
        for u in [
            "urn:service:sosx",
            "urn:service:counseling",
            "sip:sos@x",
            "urn:service:so",
        ] {
            assert!(!is_sos_urn(u), "{u}");
        }
    }

    #[test]
    fn the_cap_counts_live_calls_not_lingering_ones() {
        let mut t = CallTable::new(2, Emergency::default());
        let now = Duration::ZERO;
        let a = t.admit(now, Side::Outside, &new_call(false), true).unwrap();
        let b = t.admit(now, Side::Outside, &new_call(false), true).unwrap();
        assert_eq!(
            t.admit(now, Side::Outside, &new_call(false), true),
            Err(Refusal::CallLimit)
        );
        // An emergency call takes a slot: the newest ordinary call is pre-empted.
        assert!(t.admit(now, Side::Outside, &new_call(true), true).is_ok());
        assert_eq!(t.poll_preempted(), Some(b));
        assert!(t
            .end(now, a, Cause::NORMAL_CLEARING, MediaCounters::default())
            .is_some());
        // Exactly one record per call.
        assert!(t
            .end(now, a, Cause::NORMAL_CLEARING, MediaCounters::default())
            .is_none());
        // Ended but lingering: no longer counted... but 2 live remain (b and the emergency).
        assert_eq!(t.live(), 2);
        assert_eq!(t.poll_forget(now + LINGER), Some(a));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn lingering_calls_are_capped() {
        let mut t = CallTable::new(1, Emergency::default());
        let now = Duration::ZERO;
        for _ in 0..MIN_LINGERING + 5 {
            let c = t.admit(now, Side::Outside, &new_call(false), true).unwrap();
            t.end(now, c, Cause::NORMAL_CLEARING, MediaCounters::default());
        }
        assert_eq!(t.poll_timeout(), Some(Duration::ZERO));
        let mut evicted = 0;
        while t.poll_forget(now).is_some() {
            evicted += 1;
        }
        assert_eq!(evicted, 5);
        assert_eq!(t.counters.linger_evicted, 5);
        assert_eq!(t.len(), MIN_LINGERING);
    }

    #[test]
    fn setup_times_and_calls_up_for_metrics() {
        let mut t = CallTable::new(10, Emergency::default());
        let s = Duration::from_secs(1);
        let a = t.admit(s, Side::Outside, &new_call(false), true).unwrap();
        // Not asked for: nothing kept.
        t.answered(s * 2, a);
        assert!(t.take_setup_times().is_empty());
        t.record_setup_times();
        let b = t.admit(s, Side::Outside, &new_call(false), true).unwrap();
        t.answered(s * 3, b);
        t.answered(s * 4, b); // only the first answer counts
        assert_eq!(t.take_setup_times(), vec![s * 2]);
        assert!(t.take_setup_times().is_empty());
        let up = t.live_by_kind();
        assert_eq!(up.len(), 4);
        assert!(up.contains(&(CallProtocol::Sip, Direction::FromOutside, 2)));
        assert!(up.contains(&(CallProtocol::H323, Direction::FromInside, 0)));
        t.end(s * 5, a, Cause::NORMAL_CLEARING, MediaCounters::default());
        assert!(t
            .live_by_kind()
            .contains(&(CallProtocol::Sip, Direction::FromOutside, 1)));
    }

    #[test]
    fn the_tunnel_link_refuses_first() {
        let mut t = CallTable::new(10, Emergency::default());
        assert_eq!(
            t.admit(Duration::ZERO, Side::Outside, &new_call(true), false),
            Err(Refusal::TunnelDown)
        );
        assert_eq!(t.counters.refused_tunnel_down, 1);
    }

    fn outside_call(emergency: bool, source: u8) -> NewCall {
        NewCall {
            source: Some(std::net::IpAddr::from([192, 0, 2, source])),
            ..new_call(emergency)
        }
    }

    #[test]
    fn ordinary_calls_leave_the_reserve_to_emergency_calls() {
        // 10 slots, 10 % reserved: 9 for ordinary calls, all 10 for emergency calls.
        let mut t = CallTable::new(10, Emergency::default());
        let now = Duration::ZERO;
        for i in 0..9 {
            t.admit(now, Side::Outside, &outside_call(false, i), true)
                .unwrap();
        }
        assert_eq!(
            t.admit(now, Side::Outside, &outside_call(false, 9), true),
            Err(Refusal::CallLimit)
        );
        assert!(t
            .admit(now, Side::Outside, &outside_call(true, 9), true)
            .is_ok());
        assert_eq!(t.poll_preempted(), None);
        assert_eq!(t.live(), 10);
    }

    #[test]
    fn a_full_table_preempts_the_newest_ordinary_call() {
        let mut t = CallTable::new(3, Emergency::default());
        let now = Duration::ZERO;
        let a = t.admit(now, Side::Outside, &new_call(false), true).unwrap();
        let e = t.admit(now, Side::Outside, &new_call(true), true).unwrap();
        let b = t.admit(now, Side::Outside, &new_call(false), true).unwrap();
        assert_eq!(t.live(), 3);
        // Full: the newest non-emergency call (b, not the emergency call e) gives way.
        let e2 = t.admit(now, Side::Outside, &new_call(true), true).unwrap();
        assert_eq!(t.poll_preempted(), Some(b));
        assert_eq!(t.poll_preempted(), None);
        assert_eq!(t.counters.preempted, 1);
        let rec = t.end(now, b, PREEMPTION, MediaCounters::default()).unwrap();
        assert_eq!(rec.cause, 8);
        // Next: a.
        let _e3 = t.admit(now, Side::Outside, &new_call(true), true).unwrap();
        assert_eq!(t.poll_preempted(), Some(a));
        t.end(now, a, PREEMPTION, MediaCounters::default());
        // Only emergency calls left: the next one is refused, the cap holds.
        assert_eq!(
            t.admit(now, Side::Outside, &new_call(true), true),
            Err(Refusal::CallLimit)
        );
        assert_eq!(t.live(), 3);
        let _ = (e, e2);
    }

    #[test]
    fn emergency_calls_pass_the_rate_limits() {
        let mut t = CallTable::with_limits(
            100,
            Emergency::default(),
            LimitsConfig {
                source_calls_per_second: 1,
                source_calls_burst: 1,
                calls_per_second: 1,
                ..LimitsConfig::default()
            },
        );
        let now = Duration::from_secs(1);
        assert!(t
            .admit(now, Side::Outside, &outside_call(false, 1), true)
            .is_ok());
        assert!(matches!(
            t.admit(now, Side::Outside, &outside_call(false, 1), true),
            Err(Refusal::RateLimited(Limited::SourceCalls, 1))
        ));
        assert!(matches!(
            t.admit(now, Side::Outside, &outside_call(false, 2), true),
            Err(Refusal::RateLimited(Limited::GlobalCalls, 1))
        ));
        for _ in 0..5 {
            assert!(t
                .admit(now, Side::Outside, &outside_call(true, 1), true)
                .is_ok());
        }
        // Calls from inside are not rate limited.
        let mut inside = new_call(false);
        inside.direction = Direction::FromInside;
        assert!(t.admit(now, Side::Inside, &inside, true).is_ok());
        assert_eq!(t.counters.refused_rate_limited, 2);
        assert_eq!(Refusal::RateLimited(Limited::GlobalCalls, 1).cause().0, 42);
    }

    #[test]
    fn halves_allocate_disjoint_references() {
        let mut t = CallTable::new(10, Emergency::default());
        let o = t
            .admit(Duration::ZERO, Side::Outside, &new_call(false), true)
            .unwrap();
        let i = t
            .admit(Duration::ZERO, Side::Inside, &new_call(false), true)
            .unwrap();
        assert_eq!(o.0 % 2, 0);
        assert_eq!(i.0 % 2, 1);
    }
}
