//! The call table: one entry per call, whatever its protocol and direction. It owns a call's
//! identity, its admission (the chain every new call passes), its end (exactly one call record)
//! and the linger after it, and tells the legs when to forget a call's state.
//!
//! The admission chain is the one place where a new call is let in or refused. Each link
//! refuses with a [`Refusal`] that maps to a SIP status and a Q.850 cause; the security links
//! (rate limits, access rules, authentication) join this chain.

use super::access::{AccessPolicy, Denial};
use super::media::MediaCounters;
use super::{CallRecord, Family, Side};
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
        }
    }
}

/// Why the admission chain refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tunnel to the other half is down: nothing could carry the call.
    TunnelDown,
    /// Every call slot is taken (emergency calls excepted).
    CallLimit,
    /// The call's media could not be given ports.
    NoMediaPort,
    /// An access rule denied the call (its name: [`AccessPolicy::name`]).
    Denied(Denial),
}

impl Refusal {
    /// The Q.850 cause that releases a refused H.323 Setup or Meta call.
    pub fn cause(self) -> Cause {
        match self {
            Refusal::TunnelDown => Cause::TEMPORARY_FAILURE,
            Refusal::CallLimit => Cause::SWITCHING_EQUIPMENT_CONGESTION,
            Refusal::NoMediaPort => Cause::RESOURCE_UNAVAILABLE,
            Refusal::Denied(d) => d.cause,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TunnelDown => "tunnel to the other half is down",
            Refusal::CallLimit => "call limit reached",
            Refusal::NoMediaPort => "no free media port",
            Refusal::Denied(_) => "denied by an access rule",
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
    pub ended: u64,
    /// Ended calls forgotten before their linger was over (the lingering cap was reached).
    pub linger_evicted: u64,
}

#[derive(Debug)]
struct Entry {
    protocol: CallProtocol,
    family: Family,
    calling: String,
    called: String,
    emergency: bool,
    setup_at: Duration,
    /// The access rule that allowed the call (none when no rules are configured).
    rule: Option<std::sync::Arc<str>>,
    answered_at: Option<Duration>,
    ended_at: Option<Duration>,
}

/// Every call of this engine. See the module docs.
#[derive(Debug)]
pub struct CallTable {
    calls: FxHashMap<CallRef, Entry>,
    /// Calls not yet ended: what the call cap counts.
    live: usize,
    max_calls: usize,
    /// Ended calls in the order they ended, to forget after [`LINGER`].
    lingering: VecDeque<(Duration, CallRef)>,
    /// Next even (GW2) and odd (GW1) call reference: the halves never collide. Even references
    /// start at 2, so a zero never names a call.
    next: [u32; 2],
    pub emergency: Emergency,
    pub counters: CallCounters,
    /// The access-rule link of the chain.
    pub access: AccessPolicy,
}

impl CallTable {
    pub fn new(max_calls: usize, emergency: Emergency) -> Self {
        CallTable {
            calls: FxHashMap::default(),
            live: 0,
            max_calls,
            lingering: VecDeque::new(),
            next: [2, 1],
            emergency,
            counters: CallCounters::default(),
            access: AccessPolicy::default(),
        }
    }

    /// The admission chain for a call that arrives on `side`: tunnel, access rules
    /// ([`AccessPolicy::decide`]), then capacity. An emergency call passes the capacity link
    /// when every slot is taken.
    pub fn admit(
        &mut self,
        now: Duration,
        side: Side,
        call: &NewCall,
        tunnel_up: bool,
    ) -> Result<CallRef, Refusal> {
        self.access.take_decided();
        let result = self.check(call, tunnel_up);
        match result {
            Err(Refusal::TunnelDown) => self.counters.refused_tunnel_down += 1,
            Err(Refusal::CallLimit) => self.counters.refused_call_limit += 1,
            Err(Refusal::NoMediaPort) => self.counters.refused_no_media_port += 1,
            // Counted per rule by the access link.
            Err(Refusal::Denied(_)) | Ok(()) => {}
        }
        result?;
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
        self.insert(now, call_ref, call, rule);
        Ok(call_ref)
    }

    fn check(&mut self, call: &NewCall, tunnel_up: bool) -> Result<(), Refusal> {
        if !tunnel_up {
            return Err(Refusal::TunnelDown);
        }
        self.access.decide(call)?;
        if self.live >= self.max_calls && !call.emergency {
            return Err(Refusal::CallLimit);
        }
        Ok(())
    }

    /// A call the other half admitted, arriving over the tunnel. With both halves in one engine
    /// it is already here; otherwise this half applies its own cap (emergency calls excepted).
    pub fn join(
        &mut self,
        now: Duration,
        call_ref: CallRef,
        call: &NewCall,
    ) -> Result<(), Refusal> {
        if self.calls.contains_key(&call_ref) {
            return Ok(());
        }
        if self.live >= self.max_calls && !call.emergency {
            self.counters.refused_call_limit += 1;
            return Err(Refusal::CallLimit);
        }
        self.insert(now, call_ref, call, None);
        Ok(())
    }

    fn insert(
        &mut self,
        now: Duration,
        call_ref: CallRef,
        call: &NewCall,
        rule: Option<std::sync::Arc<str>>,
    ) {
        self.live += 1;
        self.counters.admitted += 1;
        if call.emergency {
            self.counters.emergency_admitted += 1;
        }
        self.calls.insert(
            call_ref,
            Entry {
                protocol: call.protocol,
                family: call.family,
                calling: call.calling.clone(),
                called: call.called.clone(),
                emergency: call.emergency,
                setup_at: now,
                rule,
                answered_at: None,
                ended_at: None,
            },
        );
    }

    /// Counts a refusal decided outside the chain (e.g. no media port), for `stats`.
    pub fn count_refusal(&mut self, r: Refusal) {
        match r {
            Refusal::TunnelDown => self.counters.refused_tunnel_down += 1,
            Refusal::CallLimit => self.counters.refused_call_limit += 1,
            Refusal::NoMediaPort => self.counters.refused_no_media_port += 1,
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

    /// Ends a call: the first end is the only one that counts and yields the call record; the
    /// call then lingers for [`LINGER`].
    pub fn end(
        &mut self,
        now: Duration,
        call: CallRef,
        cause: Cause,
        media: MediaCounters,
    ) -> Option<CallRecord> {
        let e = self.calls.get_mut(&call)?;
        if e.ended_at.is_some() {
            return None;
        }
        e.ended_at = Some(now);
        self.live = self.live.saturating_sub(1);
        self.counters.ended += 1;
        self.lingering.push_back((now + LINGER, call));
        Some(CallRecord {
            call: call.0,
            calling: e.calling.clone(),
            called: e.called.clone(),
            emergency: e.emergency,
            setup_at: e.setup_at.as_secs_f64(),
            answered_at: e.answered_at.map(|t| t.as_secs_f64()),
            ended_at: now.as_secs_f64(),
            cause: cause.0,
            media,
            rule: e.rule.as_deref().map(str::to_owned),
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
        let _b = t.admit(now, Side::Outside, &new_call(false), true).unwrap();
        assert_eq!(
            t.admit(now, Side::Outside, &new_call(false), true),
            Err(Refusal::CallLimit)
        );
        // An emergency call passes the cap.
        assert!(t.admit(now, Side::Outside, &new_call(true), true).is_ok());
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
    fn the_tunnel_link_refuses_first() {
        let mut t = CallTable::new(10, Emergency::default());
        assert_eq!(
            t.admit(Duration::ZERO, Side::Outside, &new_call(true), false),
            Err(Refusal::TunnelDown)
        );
        assert_eq!(t.counters.refused_tunnel_down, 1);
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
