//! SIP digest authentication as a server (RFC 7616 with RFC 8760's SIP use, RFC 3261 section
//! 22): the authentication link of the admission chain ([`super::calls::CallTable::admit`]).
//!
//! - **Challenges.** A call that must authenticate and brings no valid credentials is answered
//!   401 with one `WWW-Authenticate` per algorithm, SHA-256 first, then MD5 (RFC 8760 section
//!   2.4), each `qop="auth"`. `algorithms` may narrow or reorder them (some UACs, sipp among
//!   them, answer only the first challenge and know only MD5).
//! - **Nonces are stateless**: the issue time (engine clock, seconds) and an HMAC-SHA-256 over
//!   that time, the peer's address and the realm, keyed with a per-run secret. A nonce older
//!   than `nonce_lifetime` is *stale*: a response computed correctly over it is answered with
//!   a fresh challenge and `stale=true` (RFC 7616 section 3.3), so the caller retries without
//!   asking its user again.
//! - **Replays.** The highest nonce-count seen per nonce is kept (a bounded table: when it is
//!   full the oldest nonce is dropped, and every nonce issued no later than it becomes stale),
//!   so an `Authorization` sent again (same or lower `nc`) is refused.
//! - **Credentials** are HA1 values, never passwords: a file of lines
//!   `user:realm:ha1-md5:ha1-sha256` ([`Credentials::parse`]; `sgw auth ha1` writes one).
//! - **Wrong credentials** (unknown user, wrong response, replay) are answered with a new
//!   challenge until `max_failures` of them from one source for one user within
//!   [`FAILURE_WINDOW`]; from then on, and until the window is over, that user from that source
//!   gets 403, and each 403 counts as a refusal for the repeat-offender block list.
//! - **Which calls** must authenticate: calls from outside, unless they come from a trusted
//!   peer (`trusted_peers`) or are emergency calls; a rule's `auth = "digest"` or `"none"`
//!   decides for the calls it matches; with `require = false` only those rules' calls do. H.323
//!   has no digest: a call from outside over H.323 that must authenticate is refused (Q.850
//!   cause 21). The INVITE that opens a call is the request challenged: OPTIONS is answered
//!   without, the other out-of-dialog methods are refused by the policy (405/501), and requests
//!   in a dialog are taken only from the dialog's peer.
//! - **As a client** ([`ClientCredentials`]), GW2 answers its provider's 401/407 to REGISTER
//!   ([`super::registration`]) and to the INVITEs it places outside.
//!
//! Everything runs on the engine's clock, so a replay decides as the live gateway did.

use super::access::Cidr;
use super::calls::{CallProtocol, Direction, NewCall, Refusal};
use ring::hmac;
use rustc_hash::FxHashMap;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Default lifetime of a nonce; an older one is stale.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Default number of wrong credentials (per source and user) before 403.
pub const DEFAULT_MAX_FAILURES: u32 = 3;
/// The window in which wrong credentials are counted, and the time a source and user stay
/// refused with 403 after `max_failures`.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Nonces whose nonce-count is tracked at once.
pub const MAX_NONCES: usize = 65_536;
/// Source and user pairs whose failures are tracked at once; when full, a failure of an
/// untracked pair is answered 403 at once.
pub const MAX_FAILURE_KEYS: usize = 65_536;
/// Longest user name accepted (the whole message is bounded anyway).
pub const MAX_USER_LEN: usize = 128;

/// A digest algorithm of RFC 7616 (SHA-512-256 is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The hash of `data`, in lower-case hex.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => {
                use md5::Digest;
                to_hex(&md5::Md5::digest(data))
            }
            Algorithm::Sha256 => to_hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref()),
        }
    }

    /// HA1 = H(user:realm:password) (RFC 7616 section 3.4.2).
    pub fn ha1(self, user: &str, realm: &str, password: &str) -> String {
        self.hex(format!("{user}:{realm}:{password}").as_bytes())
    }

    /// The `response` of `qop=auth` (RFC 7616 section 3.4.1).
    #[allow(clippy::too_many_arguments)]
    pub fn response(
        self,
        ha1: &str,
        nonce: &str,
        nc: &str,
        cnonce: &str,
        qop: &str,
        method: &str,
        uri: &str,
    ) -> String {
        let ha2 = self.hex(format!("{method}:{uri}").as_bytes());
        self.hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes())
    }
}

fn to_hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Compares without an early exit (the time taken does not tell how much matched).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- credentials -----------------------------------------------------------------------------

/// The HA1 values of one user in one realm; `None` for an algorithm the file leaves empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha1 {
    pub md5: Option<String>,
    pub sha256: Option<String>,
}

impl Ha1 {
    fn get(&self, alg: Algorithm) -> Option<&str> {
        match alg {
            Algorithm::Md5 => self.md5.as_deref(),
            Algorithm::Sha256 => self.sha256.as_deref(),
        }
    }
}

/// The credentials file: `(user, realm)` to HA1 values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    entries: HashMap<(String, String), Ha1>,
}

impl Credentials {
    /// One entry per line, `user:realm:ha1-md5:ha1-sha256`: the HA1 values in hex (32 and 64
    /// digits), either may be empty (that algorithm is then not accepted for the user). Empty
    /// lines and lines starting with `#` are skipped. User and realm may not contain `:`.
    /// Errors name the line.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut entries = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split(':').collect();
            let [user, realm, md5, sha] = f.as_slice() else {
                return Err(format!(
                    "line {n}: expected user:realm:ha1-md5:ha1-sha256 (4 fields), found {}",
                    f.len()
                ));
            };
            if user.is_empty() || user.len() > MAX_USER_LEN || realm.is_empty() {
                return Err(format!("line {n}: empty or too long user or realm"));
            }
            let hex = |v: &str, len: usize, what: &str| -> Result<Option<String>, String> {
                if v.is_empty() {
                    return Ok(None);
                }
                if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "line {n}: {what} HA1 must be {len} hex digits (not a password)"
                    ));
                }
                Ok(Some(v.to_ascii_lowercase()))
            };
            let ha1 = Ha1 {
                md5: hex(md5, 32, "MD5")?,
                sha256: hex(sha, 64, "SHA-256")?,
            };
            if ha1.md5.is_none() && ha1.sha256.is_none() {
                return Err(format!("line {n}: no HA1 value"));
            }
            if entries
                .insert(((*user).to_owned(), (*realm).to_owned()), ha1)
                .is_some()
            {
                return Err(format!("line {n}: {user}@{realm} appears twice"));
            }
        }
        Ok(Credentials { entries })
    }

    /// One line of the file for `user` in `realm` with `password`.
    pub fn line(user: &str, realm: &str, password: &str) -> String {
        format!(
            "{user}:{realm}:{}:{}",
            Algorithm::Md5.ha1(user, realm, password),
            Algorithm::Sha256.ha1(user, realm, password)
        )
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn get(&self, user: &str, realm: &str) -> Option<&Ha1> {
        self.entries.get(&(user.to_owned(), realm.to_owned()))
    }
}

// ---- the Authorization header ----------------------------------------------------------------

/// The parameters of one `Digest` credentials value (RFC 7616 section 3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestParams {
    pub params: Vec<(String, String)>,
}

impl DigestParams {
    /// `Digest a=b, c="d", ...`; `None` for another scheme or a malformed value.
    pub fn parse(value: &str) -> Option<DigestParams> {
        let v = value.trim_start();
        let scheme = v.get(..6)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut rest = v.get(6..)?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',', '\r', '\n']);
            if rest.is_empty() {
                break;
            }
            let eq = rest.find('=')?;
            let name = rest.get(..eq)?.trim().to_ascii_lowercase();
            if name.is_empty() || name.contains([' ', ',', '"']) {
                return None;
            }
            rest = rest.get(eq + 1..)?.trim_start();
            let value;
            if let Some(q) = rest.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => out.push(chars.next()?.1),
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => out.push(c),
                    }
                }
                value = out;
                rest = q.get(end? + 1..)?;
            } else {
                let end = rest.find([',', ' ', '\t']).unwrap_or(rest.len());
                value = rest.get(..end)?.to_owned();
                rest = rest.get(end..)?;
            }
            if params.len() >= 32 {
                return None;
            }
            params.push((name, value));
        }
        Some(DigestParams { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a SIP request brings for the authentication link: its method, Request-URI and
/// `Authorization` values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestInput {
    pub method: String,
    pub uri: String,
    pub authorizations: Vec<String>,
}

// ---- the server ------------------------------------------------------------------------------

/// Whether a rule makes the calls it matches authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAuth {
    /// Calls must bring valid digest credentials.
    Digest,
    /// Calls need none (e.g. a provider allowed by address).
    None,
}

/// The settings of the digest server (`[auth]`).
#[derive(Debug, Clone)]
pub struct DigestConfig {
    pub realm: String,
    pub credentials: Credentials,
    /// Sources that need no digest.
    pub trusted_peers: Vec<Cidr>,
    /// Whether calls from outside must authenticate when no rule decides.
    pub require: bool,
    pub nonce_lifetime: Duration,
    pub max_failures: u32,
    /// The algorithms challenged with, in order (one `WWW-Authenticate` each); credentials
    /// with another are refused.
    pub algorithms: Vec<Algorithm>,
    /// The HMAC key of the nonces: random per run live, fixed in replay.
    pub nonce_key: [u8; 32],
}

/// Counters of the digest server, in `stats` (`auth`).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthCounters {
    /// Calls that passed with valid credentials.
    pub authenticated: u64,
    /// Calls from outside that needed none (trusted peer, rule `auth = "none"`, emergency).
    pub not_required: u64,
    /// 401 answers: no credentials, or a retry allowed after wrong ones.
    pub challenged: u64,
    /// Of those, answers with `stale=true`.
    pub stale: u64,
    /// Wrong credentials: unknown user, wrong response, or a nonce that is not ours.
    pub wrong_credentials: u64,
    /// `Authorization` values sent again (nonce-count not above the last one seen).
    pub replayed: u64,
    /// 403 answers after `max_failures`.
    pub forbidden: u64,
    /// H.323 calls that had to authenticate (H.323 has no digest).
    pub refused_h323: u64,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Duration,
    count: u32,
}

/// The digest link. Off (every call passes) unless configured.
#[derive(Debug, Clone, Default)]
pub struct DigestServer {
    cfg: Option<Arc<DigestConfig>>,
    key: Option<KeyHolder>,
    /// Highest nonce-count per nonce (by its MAC), and the nonces in the order first seen.
    nc: FxHashMap<[u8; 16], u32>,
    nc_order: VecDeque<(u64, [u8; 16])>,
    /// Nonces issued at or before this second are stale (their counts were dropped).
    floor: Option<u64>,
    failures: HashMap<(IpAddr, String), Failures>,
    pub counters: AuthCounters,
    /// Why the latest call was refused by this link (for its report).
    last: Option<&'static str>,
}

#[derive(Clone)]
struct KeyHolder(hmac::Key);

impl std::fmt::Debug for KeyHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHolder(..)")
    }
}

/// Why credentials were not accepted (for the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Missing,
    Stale,
    Wrong(&'static str),
    Replayed,
}

impl DigestServer {
    pub fn new(cfg: Option<DigestConfig>) -> DigestServer {
        let key = cfg
            .as_ref()
            .map(|c| KeyHolder(hmac::Key::new(hmac::HMAC_SHA256, &c.nonce_key)));
        DigestServer {
            cfg: cfg.map(Arc::new),
            key,
            ..DigestServer::default()
        }
    }

    pub fn is_active(&self) -> bool {
        self.cfg.is_some()
    }

    pub fn realm(&self) -> Option<&str> {
        self.cfg.as_deref().map(|c| c.realm.as_str())
    }

    /// New settings (a reload): the nonce key, the nonce-counts and the failure counts are
    /// kept when the link stays on.
    pub fn reconfigure(&mut self, cfg: Option<DigestConfig>) {
        match cfg {
            None => *self = DigestServer::default(),
            Some(c) => {
                if self.key.is_none() {
                    self.key = Some(KeyHolder(hmac::Key::new(hmac::HMAC_SHA256, &c.nonce_key)));
                }
                self.cfg = Some(Arc::new(c));
            }
        }
    }

    /// Whether `call` must authenticate, given the rule that allowed it.
    pub fn required(&self, call: &NewCall, rule: Option<RuleAuth>) -> bool {
        let Some(cfg) = &self.cfg else {
            return false;
        };
        if call.direction != Direction::FromOutside || call.source.is_none() {
            return false;
        }
        match rule {
            Some(RuleAuth::Digest) => return true,
            Some(RuleAuth::None) => return false,
            None => {}
        }
        if call.emergency {
            return false;
        }
        if let Some(ip) = call.source {
            if cfg.trusted_peers.iter().any(|c| c.contains(ip)) {
                return false;
            }
        }
        cfg.require
    }

    /// The authentication link: `Ok(Some(user))` for a call that authenticated, `Ok(None)` for
    /// one that need not; a refusal otherwise.
    pub fn check(
        &mut self,
        now: Duration,
        call: &NewCall,
        rule: Option<RuleAuth>,
    ) -> Result<Option<Arc<str>>, Refusal> {
        if !self.is_active() || call.direction != Direction::FromOutside {
            return Ok(None);
        }
        if !self.required(call, rule) {
            self.counters.not_required += 1;
            return Ok(None);
        }
        let Some(ip) = call.source else {
            return Ok(None);
        };
        let Some(input) = call
            .digest
            .as_ref()
            .filter(|_| call.protocol == CallProtocol::Sip)
        else {
            self.counters.refused_h323 += 1;
            self.last = Some("H.323 has no digest: only trusted peers may call");
            return Err(Refusal::AuthRequired { stale: false });
        };
        let verdict = self.verify(now, ip, input);
        self.last = match &verdict {
            Ok(_) => None,
            Err((Outcome::Missing, _)) => Some("credentials required"),
            Err((Outcome::Stale, _)) => Some("stale nonce"),
            Err((Outcome::Replayed, _)) => Some("replayed credentials (nonce-count)"),
            Err((Outcome::Wrong(why), _)) => Some(why),
        };
        match verdict {
            Ok(user) if self.locked(now, ip, &user) => {
                self.last = Some("too many wrong credentials");
                Err(self.forbid())
            }
            Ok(user) => {
                self.counters.authenticated += 1;
                self.failures.remove(&(ip, user.to_string()));
                Ok(Some(user))
            }
            Err((Outcome::Missing, _)) => {
                self.counters.challenged += 1;
                Err(Refusal::AuthRequired { stale: false })
            }
            Err((Outcome::Stale, user)) => {
                if self.locked(now, ip, &user) {
                    self.last = Some("too many wrong credentials");
                    return Err(self.forbid());
                }
                self.counters.challenged += 1;
                self.counters.stale += 1;
                Err(Refusal::AuthRequired { stale: true })
            }
            Err((o, user)) => {
                match o {
                    Outcome::Replayed => self.counters.replayed += 1,
                    _ => self.counters.wrong_credentials += 1,
                }
                if self.fail(now, ip, user) {
                    return Err(self.forbid());
                }
                self.counters.challenged += 1;
                Err(Refusal::AuthRequired { stale: false })
            }
        }
    }

    fn forbid(&mut self) -> Refusal {
        self.counters.forbidden += 1;
        Refusal::AuthFailed
    }

    /// Whether `user` from `ip` is refused with 403 now.
    fn locked(&self, now: Duration, ip: IpAddr, user: &str) -> bool {
        let (Some(cfg), Some(f)) = (&self.cfg, self.failures.get(&(ip, user.to_owned()))) else {
            return false;
        };
        now.saturating_sub(f.since) <= FAILURE_WINDOW && f.count >= cfg.max_failures
    }

    /// Counts one wrong attempt; `true` when it is (or was already) one too many.
    fn fail(&mut self, now: Duration, ip: IpAddr, user: String) -> bool {
        let max = self.cfg.as_ref().map_or(1, |c| c.max_failures);
        let key = (ip, user);
        if !self.failures.contains_key(&key) && self.failures.len() >= MAX_FAILURE_KEYS {
            self.failures
                .retain(|_, f| now.saturating_sub(f.since) <= FAILURE_WINDOW);
            if self.failures.len() >= MAX_FAILURE_KEYS {
                return true;
            }
        }
        let f = self.failures.entry(key).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.saturating_sub(f.since) > FAILURE_WINDOW {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count = f.count.saturating_add(1);
        f.count >= max
    }

    /// The `WWW-Authenticate` values of a 401 to `ip`: SHA-256 first, then MD5.
    pub fn challenges(&self, now: Duration, ip: IpAddr, stale: bool) -> Vec<String> {
        let Some(cfg) = &self.cfg else {
            return Vec::new();
        };
        let nonce = self.nonce(now.as_secs(), ip);
        let realm = quote(&cfg.realm);
        cfg.algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
                    a.name(),
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }

    fn mac(&self, ts: u64, ip: IpAddr) -> [u8; 16] {
        let mut out = [0u8; 16];
        let Some(KeyHolder(key)) = &self.key else {
            return out;
        };
        let ip6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(&ts.to_be_bytes());
        ctx.update(&ip6.octets());
        ctx.update(self.realm().unwrap_or("").as_bytes());
        let tag = ctx.sign();
        for (o, t) in out.iter_mut().zip(tag.as_ref()) {
            *o = *t;
        }
        out
    }

    /// A nonce: 16 hex digits of the issue second, then 32 of the MAC.
    fn nonce(&self, ts: u64, ip: IpAddr) -> String {
        format!("{ts:016x}{}", to_hex(&self.mac(ts, ip)))
    }

    /// The issue time and MAC of a nonce this server made for `ip`.
    fn open_nonce(&self, nonce: &str, ip: IpAddr) -> Option<(u64, [u8; 16])> {
        if nonce.len() != 48 {
            return None;
        }
        let ts = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        let mac = from_hex(nonce.get(16..)?)?;
        let want = self.mac(ts, ip);
        same(&mac, &want).then_some((ts, want))
    }

    /// Checks the request's credentials for our realm; `Err` carries the user it named.
    fn verify(
        &mut self,
        now: Duration,
        ip: IpAddr,
        input: &DigestInput,
    ) -> Result<Arc<str>, (Outcome, String)> {
        let Some(cfg) = self.cfg.clone() else {
            return Err((Outcome::Missing, String::new()));
        };
        let Some(p) = input
            .authorizations
            .iter()
            .filter_map(|a| DigestParams::parse(a))
            .find(|p| p.get("realm") == Some(cfg.realm.as_str()))
        else {
            return Err((Outcome::Missing, String::new()));
        };
        let user: String = p
            .get("username")
            .unwrap_or("")
            .chars()
            .take(MAX_USER_LEN)
            .collect();
        let wrong = |why| Err((Outcome::Wrong(why), user.clone()));
        let alg = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::parse(a) {
                Some(a) => a,
                None => return wrong("unsupported algorithm"),
            },
        };
        if !cfg.algorithms.contains(&alg) {
            return wrong("algorithm not offered");
        }
        if p.get("userhash")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return wrong("userhash not offered");
        }
        let (Some(nonce), Some(response), Some(uri)) =
            (p.get("nonce"), p.get("response"), p.get("uri"))
        else {
            return wrong("incomplete credentials");
        };
        if p.get("qop") != Some("auth") {
            return wrong("qop=auth required");
        }
        let (Some(nc_s), Some(cnonce)) = (p.get("nc"), p.get("cnonce")) else {
            return wrong("qop=auth without nc or cnonce");
        };
        let Some(nc) = (nc_s.len() == 8)
            .then(|| u32::from_str_radix(nc_s, 16).ok())
            .flatten()
        else {
            return wrong("bad nonce-count");
        };
        if !same_resource(uri, &input.uri) {
            return wrong("uri is not the Request-URI");
        }
        let Some((ts, mac)) = self.open_nonce(nonce, ip) else {
            return wrong("nonce not issued to this source");
        };
        let Some(ha1) = cfg
            .credentials
            .get(&user, &cfg.realm)
            .and_then(|h| h.get(alg))
        else {
            return wrong("unknown user");
        };
        let expected = alg.response(ha1, nonce, nc_s, cnonce, "auth", &input.method, uri);
        if !same(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        ) {
            return wrong("wrong response");
        }
        let now_s = now.as_secs();
        if ts > now_s {
            return wrong("nonce from the future");
        }
        if now_s - ts > cfg.nonce_lifetime.as_secs() || self.floor.is_some_and(|f| ts <= f) {
            return Err((Outcome::Stale, user));
        }
        if !self.count_nonce(now_s, ts, mac, nc, cfg.nonce_lifetime.as_secs()) {
            return Err((Outcome::Replayed, user));
        }
        Ok(user.into())
    }

    /// Records `nc` for a nonce; `false` when it is not above the last one seen.
    fn count_nonce(&mut self, now_s: u64, ts: u64, mac: [u8; 16], nc: u32, lifetime: u64) -> bool {
        if let Some(last) = self.nc.get_mut(&mac) {
            if nc <= *last {
                return false;
            }
            *last = nc;
            return true;
        }
        if nc == 0 {
            return false;
        }
        // Forget nonces that are stale anyway, then the oldest when still full.
        while let Some(&(t, m)) = self.nc_order.front() {
            let expired = now_s.saturating_sub(t) > lifetime;
            if !expired && self.nc.len() < MAX_NONCES {
                break;
            }
            self.nc_order.pop_front();
            self.nc.remove(&m);
            if !expired {
                self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
            }
        }
        if self.floor.is_some_and(|f| ts <= f) {
            return false;
        }
        self.nc.insert(mac, nc);
        self.nc_order.push_back((ts, mac));
        true
    }

    /// Why the latest call was refused by this link.
    pub fn last_reason(&self) -> &'static str {
        self.last.unwrap_or("credentials required")
    }

    /// Nonces whose count is tracked.
    pub fn tracked_nonces(&self) -> usize {
        self.nc.len()
    }
}

/// Whether the digest-uri names the request's resource (RFC 7616 section 3.4.6): the
/// Request-URI as written, or a SIP URI of the same scheme, host and port (UACs such as sipp
/// write `sip:host:port`). The response is computed over the digest-uri either way, and the
/// nonce-count keeps it from being used twice.
fn same_resource(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    use codecs::sip::Uri;
    match (Uri::parse(digest_uri), Uri::parse(request_uri)) {
        (Ok(d), Ok(r)) => {
            d.scheme == r.scheme
                && d.host.as_deref().map(str::to_ascii_lowercase)
                    == r.host.as_deref().map(str::to_ascii_lowercase)
                && d.host.is_some()
                && d.port.unwrap_or(5060) == r.port.unwrap_or(5060)
        }
        _ => false,
    }
}

// ---- the client -------------------------------------------------------------------------------

/// What GW2 answers a provider's challenge with: a password, or HA1 values for the
/// provider's realm (then only that realm's challenges can be answered).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret {
    pub password: Option<String>,
    pub ha1_md5: Option<String>,
    pub ha1_sha256: Option<String>,
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// The account GW2 uses toward its provider (`[gw2.registration]`): REGISTER, and the
/// challenges of the calls it places.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The user name of the credentials (the authentication user).
    pub user: String,
    pub secret: ClientSecret,
}

impl ClientCredentials {
    /// The `Authorization` (or `Proxy-Authorization`) value answering the first of
    /// `challenges` (`WWW-Authenticate` or `Proxy-Authenticate` values) with an algorithm GW2
    /// knows and a secret for; `None` when there is none.
    pub fn answer(
        &self,
        challenges: &[&str],
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<String> {
        challenges
            .iter()
            .filter_map(|c| DigestParams::parse(c))
            .find_map(|p| self.answer_one(&p, method, uri, cnonce))
    }

    fn answer_one(
        &self,
        p: &DigestParams,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<String> {
        let realm = p.get("realm")?;
        let nonce = p.get("nonce")?;
        let alg = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a)?,
        };
        let ha1 = match (&self.secret.password, alg) {
            (Some(pw), _) => alg.ha1(&self.user, realm, pw),
            (None, Algorithm::Md5) => self.secret.ha1_md5.clone()?,
            (None, Algorithm::Sha256) => self.secret.ha1_sha256.clone()?,
        };
        let auth_qop = p
            .get("qop")
            .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", ",
            quote(&self.user),
            quote(realm),
            quote(nonce),
            quote(uri)
        );
        if auth_qop {
            let r = alg.response(&ha1, nonce, "00000001", cnonce, "auth", method, uri);
            v.push_str(&format!(
                "response=\"{r}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"{}\"",
                alg.name(),
                quote(cnonce)
            ));
        } else {
            // RFC 2069 compatibility (RFC 7616 section 3.4.1 without qop).
            let ha2 = alg.hex(format!("{method}:{uri}").as_bytes());
            let r = alg.hex(format!("{ha1}:{nonce}:{ha2}").as_bytes());
            v.push_str(&format!("response=\"{r}\", algorithm={}", alg.name()));
        }
        if let Some(o) = p.get("opaque") {
            v.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        Some(v)
    }
}

/// `s` as the inside of a quoted-string.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests;
