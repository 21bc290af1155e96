//! What the operator can ask of a running engine (`sgw ctl`, SIGHUP): the calls up, the drain
//! link of the admission chain, the block list, and the settings a live reload may change.
//! Every call here is as quick as one message's handling: the live driver makes them on the
//! engine's own task.

use super::access::AccessPolicy;
use super::calls::{CallInfo, Emergency};
use super::limits::{BlockedSource, LimitsConfig};
use super::{meta, Engine};
use std::net::IpAddr;
use std::time::Duration;

/// The settings a live reload applies (`[policy]` and the rate limits of `[gw2.limits]`).
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub access: AccessPolicy,
    pub emergency_numbers: Vec<String>,
    /// `None`: the limits stay as they are (a configuration without `[gw2]`).
    pub limits: Option<(LimitsConfig, usize)>,
    /// The digest server (`[auth]`, credentials re-read); `None` turns it off. Its nonce key,
    /// nonce-counts and failure counts are kept when it stays on.
    pub auth: Option<super::auth::DigestConfig>,
}

impl Engine {
    /// Every call up, for `sgw ctl calls`.
    pub fn calls_up(&self, now: Duration) -> Vec<CallInfo> {
        self.out.calls.call_infos(now)
    }

    /// Starts (or stops) the drain: new calls other than emergency calls are refused with
    /// SIP 503 or Q.850 cause 42; calls up are kept.
    pub fn set_draining(&mut self, draining: bool) {
        self.out.calls.draining = draining;
    }

    pub fn is_draining(&self) -> bool {
        self.out.calls.draining
    }

    /// Ends every call up with normal clearing (cause 16) through the legs that hold it (BYE
    /// toward an answered SIP party, a final response toward an unanswered caller, Release
    /// Complete for H.323), telling the other half: the end of a drain's timeout.
    pub fn release_all(&mut self, now: Duration) -> usize {
        let calls = self.out.calls.live_calls();
        for call in &calls {
            self.release_call(now, *call, meta::Cause::NORMAL_CLEARING);
        }
        self.pump(now);
        calls.len()
    }

    /// Blocks `ip`'s source until [`Engine::unblock`] (`sgw ctl block`); returns what was
    /// blocked (the address, or the IPv6 prefix).
    pub fn block(&mut self, ip: IpAddr) -> String {
        let key = self.out.calls.limits.block(ip);
        match key {
            super::limits::SourceKey::V6(_) => {
                format!("{key}/{}", self.out.calls.limits.config().ipv6_prefix)
            }
            _ => key.to_string(),
        }
    }

    /// Lifts the block of `ip`'s source; `false` when it was not blocked.
    pub fn unblock(&mut self, ip: IpAddr) -> bool {
        self.out.calls.limits.unblock(ip)
    }

    /// The sources blocked now.
    pub fn blocked_list(&self, now: Duration) -> Vec<BlockedSource> {
        self.out.calls.limits.blocked_list(now)
    }

    /// A live reload: new access rules (their counters start again), emergency numbers, rate
    /// limits and `max_calls`. Calls up are kept; the block list is kept.
    pub fn apply_live_settings(&mut self, s: LiveSettings) {
        self.out.calls.access = s.access;
        self.out.calls.emergency = Emergency {
            numbers: s.emergency_numbers,
        };
        if let Some((limits, max_calls)) = s.limits {
            self.out.calls.limits.reconfigure(limits);
            self.out.calls.set_max_calls(max_calls);
        }
        self.out.calls.auth.reconfigure(s.auth);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::calls::{
        CallProtocol, CallTable, Direction, Emergency as Em, NewCall, Refusal,
    };
    use super::super::{Family, Side};
    use std::time::Duration;

    fn call(emergency: bool) -> NewCall {
        NewCall {
            direction: Direction::FromOutside,
            protocol: CallProtocol::Sip,
            family: Family::V4,
            source: Some(std::net::IpAddr::from([192, 0, 2, 1])),
            calling: "a".into(),
            called: "b".into(),
            emergency,
            digest: None,
        }
    }

    #[test]
    fn the_drain_link_refuses_new_calls_but_emergency_ones() {
        let mut t = CallTable::new(10, Em::default());
        let now = Duration::ZERO;
        let a = t.admit(now, Side::Outside, &call(false), true).unwrap();
        t.draining = true;
        let r = t.admit(now, Side::Outside, &call(false), true);
        assert_eq!(r, Err(Refusal::Draining));
        assert_eq!(Refusal::Draining.cause().0, 42);
        assert_eq!(t.counters.refused_draining, 1);
        assert!(t.admit(now, Side::Outside, &call(true), true).is_ok());
        // A call the other half admitted is refused too.
        let b = super::super::meta::CallRef(1001);
        assert_eq!(t.join(now, b, &call(false)), Err(Refusal::Draining));
        assert!(t.is_live(a));
        assert_eq!(t.call_infos(now).len(), 2);
    }

    #[test]
    fn manual_blocks_last_until_unblocked() {
        use super::super::limits::{Limits, LimitsConfig};
        let mut l = Limits::new(LimitsConfig::default());
        let ip = std::net::IpAddr::from([192, 0, 2, 7]);
        assert_eq!(l.block(ip).to_string(), "192.0.2.7");
        assert_eq!(l.blocked(Duration::from_secs(1_000_000), ip), Some(true));
        assert_eq!(l.blocked_sources(), 1);
        let list = l.blocked_list(Duration::from_secs(5));
        assert_eq!(list.len(), 1);
        assert!(list[0].manual);
        assert!(l.unblock(ip));
        assert!(!l.unblock(ip));
        assert_eq!(l.blocked(Duration::from_secs(1), ip), None);
        assert_eq!(l.blocked_sources(), 0);
    }
}
