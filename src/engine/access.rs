//! Access control: an ordered list of rules, first match wins, applied as one link of the
//! admission chain ([`super::calls::CallTable::admit`]) to every new call a leg admits: GW2's
//! calls from outside (SIP and H.323) and GW1's calls from the intranet out.
//!
//! A rule matches on direction, source prefix (CIDR), caller and callee patterns, protocol and
//! whether the call is an emergency call (the one definition of [`super::calls::Emergency`]);
//! every absent matcher matches any call. Its action is allow, or deny with a SIP status and a
//! Q.850 cause.
//!
//! - No rules configured: the link is off. Every call passes it, no rule is named and nothing
//!   is counted (the built-in demo allows every call; replay without `--config` reports what
//!   it did before access rules existed).
//! - Rules configured and none matches: the call is denied by the implicit final rule
//!   [`DEFAULT_DENY`] (403, cause 21).
//!
//! Every decision names its rule: the refusal reason ("denied by rule NAME"), the report of the
//! INVITE or Setup (`rule`), the call record, and per-rule counters in `stats`.
//!
//! # Patterns
//!
//! A pattern is matched against the whole user part (SIP) or number (H.323):
//!
//! - a literal character matches itself (case-sensitive, as SIP user parts are compared);
//! - `X` matches one digit `0`-`9`;
//! - a trailing `*` matches any rest, including nothing (`00*` is every number starting with
//!   00; `*` alone is any). `*` anywhere else is an error.
//!
//! Telephone numbers are compared without visual separators: a user part or pattern that is a
//! number once `-`, `.`, `(`, `)` and spaces are removed (an optional `+`, then digits, `#`, and
//! `X` or a trailing `*` in patterns) is compared in that form, so `+49-30-1234` and
//! `+49 (30) 1234` are `+49301234`. Anything else (`alice`, `first.last`) is compared as written.

use super::calls::{CallProtocol, Direction, NewCall, Refusal};
use codecs::meta::Cause;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The name of the decision when rules are configured and none matches.
pub const DEFAULT_DENY: &str = "default-deny";
/// Names a rule may not take: the implicit decisions.
pub const RESERVED_NAMES: &[&str] = &["default", DEFAULT_DENY];
/// Longest rule name.
pub const MAX_NAME_LEN: usize = 64;
/// Most rules in a policy.
pub const MAX_RULES: usize = 10_000;
/// Default SIP status of a deny rule.
pub const DEFAULT_STATUS: u16 = 403;
/// Default Q.850 cause of a deny rule (21, call rejected).
pub const DEFAULT_CAUSE: Cause = Cause(21);

// ---- configuration ---------------------------------------------------------------------------

/// One `[[policy.rules]]` table as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique; names the decision in logs, reports and `stats`.
    pub name: String,
    /// Absent: both directions.
    pub direction: Option<RuleDirection>,
    /// Source address prefixes (CIDR; a bare address is a /32 or /128). Absent: any source.
    pub source: Option<Vec<String>>,
    /// Patterns on the calling user or number. Absent: any caller.
    pub caller: Option<Vec<String>>,
    /// Patterns on the called user or number. Absent: any callee.
    pub callee: Option<Vec<String>>,
    /// Absent: SIP and H.323.
    pub protocol: Option<RuleProtocol>,
    /// `true`: only emergency calls; `false`: only other calls. Absent: any call.
    pub emergency: Option<bool>,
    pub action: RuleAction,
    /// SIP status of a deny (400-699, default 403).
    pub status: Option<u32>,
    /// Q.850 cause of a deny (1-127, default 21 call rejected).
    pub cause: Option<u32>,
    /// Whether the calls this rule allows must authenticate (`"digest"`) or not (`"none"`);
    /// absent: as `[auth]` says. Needs an `[auth]` section.
    #[serde(default)]
    pub auth: Option<super::auth::RuleAuth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleDirection {
    FromOutside,
    FromInside,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    Sip,
    H323,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Allow,
    Deny,
}

// ---- matchers --------------------------------------------------------------------------------

/// An address prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address. Host bits must be zero.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or prefix (CIDR)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0-{max}"))?,
        };
        let c = Cidr { addr, len };
        if c.network() != bits(addr) {
            return Err(format!(
                "{s:?} has host bits set: the prefix is {}",
                c.canonical()
            ));
        }
        Ok(c)
    }

    fn mask(&self) -> u128 {
        let width: u32 = if self.addr.is_ipv4() { 32 } else { 128 };
        let len = u32::from(self.len).min(width);
        if len == 0 {
            return 0;
        }
        let ones = u128::MAX.checked_shl(width - len).unwrap_or(0);
        if width == 32 {
            ones & u128::from(u32::MAX)
        } else {
            ones
        }
    }

    fn network(&self) -> u128 {
        bits(self.addr) & self.mask()
    }

    fn canonical(&self) -> String {
        let n = self.network();
        let a: IpAddr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4(u32::try_from(n).unwrap_or(0).into()),
            IpAddr::V6(_) => IpAddr::V6(n.into()),
        };
        format!("{a}/{}", self.len)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && bits(ip) & self.mask() == self.network()
    }

    /// Whether every address of `other` is in this prefix.
    fn covers(&self, other: &Cidr) -> bool {
        other.addr.is_ipv4() == self.addr.is_ipv4()
            && other.len >= self.len
            && other.network() & self.mask() == self.network()
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Lit(char),
    Digit,
}

impl Token {
    fn matches(self, c: char) -> bool {
        match self {
            Token::Lit(l) => l == c,
            Token::Digit => c.is_ascii_digit(),
        }
    }

    /// Whether every character this token matches, `self` matches too.
    fn covers(self, other: Token) -> bool {
        match (self, other) {
            (Token::Digit, Token::Digit) => true,
            (Token::Digit, Token::Lit(c)) => c.is_ascii_digit(),
            (Token::Lit(a), Token::Lit(b)) => a == b,
            (Token::Lit(_), Token::Digit) => false,
        }
    }
}

/// A caller or callee pattern (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
    /// A trailing `*`: any rest.
    rest: bool,
}

/// Visual separators of telephone numbers (RFC 3966 `visual-separator`, and spaces).
fn is_separator(c: char) -> bool {
    matches!(c, '-' | '.' | '(' | ')' | ' ')
}

/// `s` without visual separators when that makes it a number (`extra` are the other
/// characters allowed: pattern syntax); `s` unchanged otherwise.
fn normalise<'a>(s: &'a str, extra: &[char]) -> std::borrow::Cow<'a, str> {
    if !s.chars().any(is_separator) {
        return s.into();
    }
    let stripped: String = s.chars().filter(|c| !is_separator(*c)).collect();
    let body = stripped.strip_prefix('+').unwrap_or(&stripped);
    let numberish = !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || c == '#' || extra.contains(&c));
    if numberish {
        stripped.into()
    } else {
        s.into()
    }
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() {
            return Err("empty pattern (use \"*\" for any, or omit the key)".to_owned());
        }
        let n = normalise(s, &['X', '*']);
        let mut tokens = Vec::new();
        let mut rest = false;
        let mut chars = n.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek().is_none() => rest = true,
                '*' => return Err(format!("{s:?}: '*' is only allowed at the end (any rest)")),
                'X' => tokens.push(Token::Digit),
                c if c.is_control() || c.is_whitespace() => {
                    return Err(format!("{s:?}: control or space character"))
                }
                c => tokens.push(Token::Lit(c)),
            }
        }
        Ok(Pattern { tokens, rest })
    }

    pub fn matches(&self, value: &str) -> bool {
        let v = normalise(value, &[]);
        let mut chars = v.chars();
        for t in &self.tokens {
            match chars.next() {
                Some(c) if t.matches(c) => {}
                _ => return false,
            }
        }
        self.rest || chars.next().is_none()
    }

    /// Whether every value `other` matches, `self` matches too.
    fn covers(&self, other: &Pattern) -> bool {
        for (i, t) in self.tokens.iter().enumerate() {
            match other.tokens.get(i) {
                Some(o) if t.covers(*o) => {}
                _ => return false,
            }
        }
        self.rest || (!other.rest && other.tokens.len() == self.tokens.len())
    }
}

/// What a deny answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// Index of the rule; [`Denial::IMPLICIT`] for the final deny.
    pub rule: u32,
    pub status: u16,
    pub cause: Cause,
}

impl Denial {
    pub const IMPLICIT: u32 = u32::MAX;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Deny { status: u16, cause: Cause },
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Arc<str>,
    direction: Option<Direction>,
    /// Empty: any source.
    source: Vec<Cidr>,
    caller: Vec<Pattern>,
    callee: Vec<Pattern>,
    protocol: Option<CallProtocol>,
    emergency: Option<bool>,
    action: Action,
    auth: Option<super::auth::RuleAuth>,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn matches(&self, call: &NewCall) -> bool {
        self.direction.is_none_or(|d| d == call.direction)
            && self.protocol.is_none_or(|p| p == call.protocol)
            && self.emergency.is_none_or(|e| e == call.emergency)
            && (self.source.is_empty()
                || call
                    .source
                    .is_some_and(|ip| self.source.iter().any(|c| c.contains(ip))))
            && (self.caller.is_empty() || self.caller.iter().any(|p| p.matches(&call.calling)))
            && (self.callee.is_empty() || self.callee.iter().any(|p| p.matches(&call.called)))
    }

    /// Whether every call `later` matches, this rule matches too (so `later` is unreachable
    /// behind it). Sound, not complete: a union of several prefixes or patterns covering one
    /// is not seen.
    fn shadows(&self, later: &Rule) -> bool {
        fn opt<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
            a.is_none() || a == b
        }
        fn all<T>(mine: &[T], theirs: &[T], any: &[T], covers: impl Fn(&T, &T) -> bool) -> bool {
            if mine.is_empty() {
                return true;
            }
            let theirs = if theirs.is_empty() { any } else { theirs };
            theirs.iter().all(|t| mine.iter().any(|m| covers(m, t)))
        }
        let any_source = [
            Cidr {
                addr: IpAddr::V4(0.into()),
                len: 0,
            },
            Cidr {
                addr: IpAddr::V6(0.into()),
                len: 0,
            },
        ];
        let any_pattern = [Pattern {
            tokens: Vec::new(),
            rest: true,
        }];
        opt(self.direction, later.direction)
            && opt(self.protocol, later.protocol)
            && opt(self.emergency, later.emergency)
            && all(&self.source, &later.source, &any_source, Cidr::covers)
            && all(&self.caller, &later.caller, &any_pattern, Pattern::covers)
            && all(&self.callee, &later.callee, &any_pattern, Pattern::covers)
    }
}

/// Allowed and denied calls of one rule, in `stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RuleCounters {
    pub allowed: u64,
    pub denied: u64,
}

/// The compiled policy and its counters.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    rules: Vec<Rule>,
    /// Per rule, then the implicit final deny.
    counters: Vec<RuleCounters>,
    implicit: RuleCounters,
    /// The rule of the latest decision, until the report of the message it decided takes it.
    decided: Option<Arc<str>>,
    /// The `auth` of the rule of the latest decision.
    decided_auth: Option<super::auth::RuleAuth>,
    default_deny: Option<Arc<str>>,
}

/// A problem in `[[policy.rules]]`: the key path (`policy.rules[2].callee`) and the message.
pub type RuleProblem = (String, String);

impl AccessPolicy {
    /// Compiles the configured rules; every problem is reported with its key path.
    pub fn compile(rules: &[RuleConfig]) -> Result<AccessPolicy, Vec<RuleProblem>> {
        let mut problems = Vec::new();
        let mut compiled: Vec<Rule> = Vec::new();
        if rules.len() > MAX_RULES {
            problems.push((
                "policy.rules".to_owned(),
                format!("{} rules: at most {MAX_RULES}", rules.len()),
            ));
        }
        for (i, r) in rules.iter().enumerate() {
            let key = |k: &str| format!("policy.rules[{i}].{k}");
            let before = problems.len();
            if r.name.is_empty()
                || r.name.len() > MAX_NAME_LEN
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                problems.push((
                    key("name"),
                    format!(
                        "{:?}: a name is 1-{MAX_NAME_LEN} of A-Z a-z 0-9 - _ .",
                        r.name
                    ),
                ));
            } else if RESERVED_NAMES.contains(&r.name.as_str()) {
                problems.push((
                    key("name"),
                    format!("{:?} is reserved for the implicit decision", r.name),
                ));
            } else if let Some(j) = rules
                .get(..i)
                .and_then(|p| p.iter().position(|o| o.name == r.name))
            {
                problems.push((
                    key("name"),
                    format!("duplicate name {:?} (rule {})", r.name, j + 1),
                ));
            }
            let mut list = |k: &str, v: &Option<Vec<String>>| -> Option<Vec<String>> {
                match v {
                    Some(v) if v.is_empty() => {
                        problems.push((
                            key(k),
                            "empty list matches nothing: omit the key to match any".to_owned(),
                        ));
                        None
                    }
                    v => Some(v.clone().unwrap_or_default()),
                }
            };
            let (source, caller, callee) = (
                list("source", &r.source),
                list("caller", &r.caller),
                list("callee", &r.callee),
            );
            let mut source_c = Vec::new();
            for (j, s) in source.unwrap_or_default().iter().enumerate() {
                match Cidr::parse(s) {
                    Ok(c) => source_c.push(c),
                    Err(e) => problems.push((format!("{}[{j}]", key("source")), e)),
                }
            }
            let mut patterns = |k: &str, v: Option<Vec<String>>| {
                let mut out = Vec::new();
                for (j, s) in v.unwrap_or_default().iter().enumerate() {
                    match Pattern::parse(s) {
                        Ok(p) => out.push(p),
                        Err(e) => problems.push((format!("{}[{j}]", key(k)), e)),
                    }
                }
                out
            };
            let caller_p = patterns("caller", caller);
            let callee_p = patterns("callee", callee);
            let action = match r.action {
                RuleAction::Allow => {
                    for (k, v) in [("status", r.status), ("cause", r.cause)] {
                        if v.is_some() {
                            problems.push((key(k), format!("{k} is only for action = \"deny\"")));
                        }
                    }
                    Action::Allow
                }
                RuleAction::Deny => {
                    let status = r.status.unwrap_or(u32::from(DEFAULT_STATUS));
                    if !(400..=699).contains(&status) {
                        problems.push((
                            key("status"),
                            format!("{status} is not a SIP failure status (400-699)"),
                        ));
                    }
                    let cause = r.cause.unwrap_or(u32::from(DEFAULT_CAUSE.0));
                    if !(1..=127).contains(&cause) {
                        problems.push((
                            key("cause"),
                            format!("{cause} is not a Q.850 cause value (1-127)"),
                        ));
                    }
                    Action::Deny {
                        status: u16::try_from(status).unwrap_or(DEFAULT_STATUS),
                        cause: u8::try_from(cause).map_or(DEFAULT_CAUSE, Cause),
                    }
                }
            };
            if problems.len() > before {
                continue;
            }
            let rule = Rule {
                name: r.name.as_str().into(),
                direction: r.direction.map(|d| match d {
                    RuleDirection::FromOutside => Direction::FromOutside,
                    RuleDirection::FromInside => Direction::FromInside,
                }),
                source: source_c,
                caller: caller_p,
                callee: callee_p,
                protocol: r.protocol.map(|p| match p {
                    RuleProtocol::Sip => CallProtocol::Sip,
                    RuleProtocol::H323 => CallProtocol::H323,
                }),
                emergency: r.emergency,
                action,
                auth: r.auth,
            };
            if let Some(earlier) = compiled.iter().find(|e| e.shadows(&rule)) {
                let conflict = match (earlier.action, rule.action) {
                    (Action::Allow, Action::Deny { .. }) => {
                        ", which allows what this rule would deny"
                    }
                    (Action::Deny { .. }, Action::Allow) => {
                        ", which denies what this rule would allow"
                    }
                    _ => "",
                };
                problems.push((
                    key("name"),
                    format!(
                        "rule {:?} is unreachable: every call it matches is matched first by rule {:?}{conflict}",
                        rule.name, earlier.name
                    ),
                ));
            }
            compiled.push(rule);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(AccessPolicy::new(compiled))
    }

    /// One rule, `invalid-policy`, denying every call (for rules that failed to compile).
    pub fn deny_all() -> AccessPolicy {
        AccessPolicy::new(vec![Rule {
            name: "invalid-policy".into(),
            direction: None,
            source: Vec::new(),
            caller: Vec::new(),
            callee: Vec::new(),
            protocol: None,
            emergency: None,
            action: Action::Deny {
                status: DEFAULT_STATUS,
                cause: DEFAULT_CAUSE,
            },
            auth: None,
        }])
    }

    fn new(rules: Vec<Rule>) -> AccessPolicy {
        AccessPolicy {
            counters: vec![RuleCounters::default(); rules.len()],
            default_deny: (!rules.is_empty()).then(|| DEFAULT_DENY.into()),
            rules,
            implicit: RuleCounters::default(),
            decided: None,
            decided_auth: None,
        }
    }

    /// Whether any rule is configured (the link is off otherwise).
    pub fn is_active(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The access link of the admission chain: the first matching rule decides; no match is a
    /// deny by [`DEFAULT_DENY`]. No rules: every call passes and nothing is named.
    pub fn decide(&mut self, call: &NewCall) -> Result<(), Refusal> {
        self.decided = None;
        self.decided_auth = None;
        if self.rules.is_empty() {
            return Ok(());
        }
        let found = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(call))
            .map(|(i, r)| {
                self.decided_auth = r.auth;
                (i, r.name.clone(), r.action)
            });
        let (index, name, action) = match found {
            Some((i, name, action)) => (u32::try_from(i).unwrap_or(Denial::IMPLICIT), name, action),
            None => (
                Denial::IMPLICIT,
                self.default_deny
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DENY.into()),
                Action::Deny {
                    status: DEFAULT_STATUS,
                    cause: DEFAULT_CAUSE,
                },
            ),
        };
        self.decided = Some(name);
        let counters = usize::try_from(index)
            .ok()
            .and_then(|i| self.counters.get_mut(i))
            .unwrap_or(&mut self.implicit);
        match action {
            Action::Allow => {
                counters.allowed += 1;
                Ok(())
            }
            Action::Deny { status, cause } => {
                counters.denied += 1;
                Err(Refusal::Denied(Denial {
                    rule: index,
                    status,
                    cause,
                }))
            }
        }
    }

    /// The rule of the latest decision (kept for the report of the message it decided).
    pub fn decided(&self) -> Option<&Arc<str>> {
        self.decided.as_ref()
    }

    /// The `auth` of the rule of the latest decision (`None`: the rule says nothing).
    pub fn decided_auth(&self) -> Option<super::auth::RuleAuth> {
        self.decided_auth
    }

    /// Whether any rule names `auth` (which needs an `[auth]` section).
    pub fn uses_auth(&self) -> bool {
        self.rules.iter().any(|r| r.auth.is_some())
    }

    /// Takes the rule of the latest decision: the report of the decided message carries it.
    pub fn take_decided(&mut self) -> Option<Arc<str>> {
        self.decided.take()
    }

    /// The name of rule `index` ([`DEFAULT_DENY`] for [`Denial::IMPLICIT`]).
    pub fn name(&self, index: u32) -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.rules.get(i))
            .map_or(DEFAULT_DENY, |r| &r.name)
    }

    /// Allowed and denied calls per rule name (with [`DEFAULT_DENY`] once rules exist).
    pub fn counters(&self) -> BTreeMap<String, RuleCounters> {
        let mut m: BTreeMap<String, RuleCounters> = self
            .rules
            .iter()
            .zip(&self.counters)
            .map(|(r, c)| (r.name.to_string(), *c))
            .collect();
        if self.is_active() {
            m.insert(DEFAULT_DENY.to_owned(), self.implicit);
        }
        m
    }
}

#[cfg(test)]
mod tests;
