//! GW2's registration to its provider as a trunk (`[gw2.registration]`): an outbound REGISTER
//! (RFC 3261 section 10) from GW2's outside SIP address, answered with digest when the
//! registrar challenges it (401 or 407, [`super::auth::ClientCredentials`]).
//!
//! - The binding is refreshed before it expires: at half the granted time for short ones, a
//!   minute before the end for long ones. The granted time is the registrar's (the `expires`
//!   of our Contact in the 2xx, else its `Expires`), not the one asked for.
//! - A failure (a final status other than 2xx, a challenge that credentials do not answer, no
//!   response) is retried after a backoff that doubles from [`FIRST_BACKOFF`] to
//!   [`MAX_BACKOFF`]; 423 is retried at once with the registrar's `Min-Expires`.
//! - The state and counters are in `stats` (`registration`).
//!
//! Sans-IO like the rest of the engine: the SIP leg sends what this returns and hands it the
//! responses and timeouts of its REGISTER transactions.

use super::auth::ClientCredentials;
use codecs::sip::{HeaderName, Message, MessageBuilder, Method};
use std::net::SocketAddr;
use std::time::Duration;

/// The first wait after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Challenges answered in a row before the attempt counts as failed (a 401 after our
/// credentials means they are wrong).
const MAX_CHALLENGES: u8 = 2;

/// The settings of `[gw2.registration]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// Where REGISTER goes.
    pub registrar: SocketAddr,
    /// The domain of the address of record and of the Request-URI (`sip:DOMAIN`).
    pub domain: String,
    /// The user part of the address of record (and of GW2's Contact).
    pub user: String,
    pub credentials: ClientCredentials,
    /// Seconds asked for.
    pub expires: u32,
}

/// Where the registration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegState {
    /// Not sent yet.
    Idle,
    /// A REGISTER is out, no binding yet.
    Registering,
    Registered,
    /// The last attempt failed; the next one waits for the backoff.
    Failed,
}

/// The registration in `stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegistrationStatus {
    pub state: RegState,
    pub registrar: String,
    pub aor: String,
    /// Seconds the binding has left (registered only).
    pub expires_in: Option<u64>,
    /// The status of the last final response (0: none, or no response).
    pub last_status: u16,
    /// REGISTER requests sent (with credentials or not).
    pub sent: u64,
    /// Bindings granted: the first, and each refresh.
    pub registered: u64,
    /// Challenges answered with credentials.
    pub challenged: u64,
    /// Attempts that failed (final status, unanswerable challenge, timeout).
    pub failures: u64,
    /// REGISTER transactions with no final response.
    pub timeouts: u64,
}

/// One registration (see the module docs).
#[derive(Debug, Clone)]
pub struct Registration {
    cfg: RegistrationConfig,
    state: RegState,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The branch of the REGISTER out (responses to others are stale).
    pending: Option<String>,
    /// When the next REGISTER goes (`None` while one is out).
    next_at: Option<Duration>,
    registered_until: Option<Duration>,
    backoff: Duration,
    challenges: u8,
    /// The expiry asked for next (423 raises it).
    asking: u32,
    status: RegistrationStatus,
}

/// A REGISTER to send: its branch (for the client transaction) and bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub branch: String,
    pub request: bytes::Bytes,
}

impl Registration {
    /// `call_id` and `from_tag` stay for the registration's life (RFC 3261 section 10.2).
    pub fn new(cfg: RegistrationConfig, call_id: String, from_tag: String) -> Registration {
        let status = RegistrationStatus {
            state: RegState::Idle,
            registrar: cfg.registrar.to_string(),
            aor: format!("sip:{}@{}", cfg.user, cfg.domain),
            expires_in: None,
            last_status: 0,
            sent: 0,
            registered: 0,
            challenged: 0,
            failures: 0,
            timeouts: 0,
        };
        Registration {
            asking: cfg.expires,
            cfg,
            state: RegState::Idle,
            call_id,
            from_tag,
            cseq: 0,
            pending: None,
            next_at: Some(Duration::ZERO),
            registered_until: None,
            backoff: FIRST_BACKOFF,
            challenges: 0,
            status,
        }
    }

    pub fn registrar(&self) -> SocketAddr {
        self.cfg.registrar
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// When [`Registration::poll_transmit`] has something to send.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.next_at
    }

    /// The state for `stats` at `now`.
    pub fn status(&self, now: Duration) -> RegistrationStatus {
        let mut s = self.status.clone();
        s.state = self.state;
        s.expires_in = match (self.state, self.registered_until) {
            (RegState::Registered, Some(until)) => Some(until.saturating_sub(now).as_secs()),
            _ => None,
        };
        s
    }

    /// A REGISTER due at `now` (first, refresh, or retry after a failure), from `local`.
    /// `branch` and `cnonce` are fresh random tokens.
    pub fn poll_transmit(
        &mut self,
        now: Duration,
        local: SocketAddr,
        transport: &str,
        branch: String,
    ) -> Option<Outgoing> {
        if self.next_at.is_none_or(|t| now < t) {
            return None;
        }
        // A binding that ran out without a refresh answered is gone.
        if self.state == RegState::Registered && self.registered_until.is_some_and(|u| now >= u) {
            self.state = RegState::Registering;
        }
        if self.state != RegState::Registered {
            self.state = RegState::Registering;
        }
        self.challenges = 0;
        Some(self.request(local, transport, branch, None))
    }

    fn request(
        &mut self,
        local: SocketAddr,
        transport: &str,
        branch: String,
        authorization: Option<(&'static str, String)>,
    ) -> Outgoing {
        self.cseq = self.cseq.wrapping_add(1);
        self.next_at = None;
        self.pending = Some(branch.clone());
        self.status.sent += 1;
        let aor = format!("<sip:{}@{}>", self.cfg.user, self.cfg.domain);
        let host = super::host_port(local);
        let mut b = MessageBuilder::request(&Method::Register, &format!("sip:{}", self.cfg.domain))
            .header(
                "Via",
                format!("SIP/2.0/{transport} {host};branch={branch};rport"),
            )
            .header("Max-Forwards", "70")
            .header("From", format!("{aor};tag={}", self.from_tag))
            .header("To", aor)
            .header("Call-ID", self.call_id.clone())
            .header("CSeq", format!("{} REGISTER", self.cseq))
            .header(
                "Contact",
                format!(
                    "<sip:{}@{host};transport={}>",
                    self.cfg.user,
                    transport.to_ascii_lowercase()
                ),
            )
            .header("Expires", self.asking.to_string());
        if let Some((name, value)) = authorization {
            b = b.header(name, value);
        }
        Outgoing {
            branch,
            request: b.build(),
        }
    }

    /// A response to a REGISTER: what to send next, if anything (a REGISTER with
    /// credentials after a challenge, or with a longer expiry after 423).
    pub fn on_response(
        &mut self,
        now: Duration,
        branch: &str,
        msg: &Message,
        local: SocketAddr,
        transport: &str,
        fresh: (String, String),
    ) -> Option<Outgoing> {
        if self.pending.as_deref() != Some(branch) {
            return None;
        }
        let status = msg.status().unwrap_or(0);
        if status < 200 {
            return None;
        }
        self.pending = None;
        self.status.last_status = status;
        let (new_branch, cnonce) = fresh;
        match status {
            200..=299 => {
                let granted = granted_expires(msg, &self.cfg.user).unwrap_or(self.asking);
                let granted = Duration::from_secs(u64::from(granted.max(1)));
                self.state = RegState::Registered;
                self.registered_until = Some(now + granted);
                let lead = (granted / 2).min(Duration::from_secs(60));
                self.next_at = Some(now + granted.saturating_sub(lead));
                self.backoff = FIRST_BACKOFF;
                self.status.registered += 1;
                None
            }
            401 | 407 if self.challenges < MAX_CHALLENGES => {
                let (challenge, answer) = if status == 401 {
                    (HeaderName::WWW_AUTHENTICATE, "Authorization")
                } else {
                    (HeaderName::PROXY_AUTHENTICATE, "Proxy-Authorization")
                };
                let values: Vec<&str> = msg.headers().all(&challenge).collect();
                let uri = format!("sip:{}", self.cfg.domain);
                match self
                    .cfg
                    .credentials
                    .answer(&values, "REGISTER", &uri, &cnonce)
                {
                    Some(a) => {
                        self.challenges += 1;
                        self.status.challenged += 1;
                        Some(self.request(local, transport, new_branch, Some((answer, a))))
                    }
                    None => {
                        self.fail(now);
                        None
                    }
                }
            }
            423 => {
                let min = msg
                    .headers()
                    .all(&HeaderName::MIN_EXPIRES)
                    .next()
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.asking => {
                        self.asking = m;
                        Some(self.request(local, transport, new_branch, None))
                    }
                    _ => {
                        self.fail(now);
                        None
                    }
                }
            }
            _ => {
                self.fail(now);
                None
            }
        }
    }

    /// The REGISTER with this branch got no final response.
    pub fn on_timeout(&mut self, now: Duration, branch: Option<&str>) {
        if branch.is_some() && self.pending.as_deref() != branch {
            return;
        }
        self.pending = None;
        self.status.timeouts += 1;
        self.status.last_status = 0;
        self.fail(now);
    }

    fn fail(&mut self, now: Duration) {
        self.status.failures += 1;
        if self.state != RegState::Registered || self.registered_until.is_none_or(|u| now >= u) {
            self.state = RegState::Failed;
        }
        self.next_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// The expiry a 2xx grants our binding: the `expires` parameter of the Contact with our user,
/// else the `Expires` header.
fn granted_expires(msg: &Message, user: &str) -> Option<u32> {
    let ours = format!("sip:{user}@");
    let from_contact = msg.headers().list(&HeaderName::CONTACT).find_map(|c| {
        if !c.contains(&ours) {
            return None;
        }
        let params = c.rsplit_once('>').map_or(c, |(_, p)| p);
        params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("expires")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
    });
    from_contact.or_else(|| {
        msg.headers()
            .all(&HeaderName::EXPIRES)
            .next()
            .and_then(|v| v.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::engine::auth::{Algorithm, ClientSecret, DigestParams};
    use bytes::Bytes;

    const LOCAL: &str = "198.51.100.1:5060";

    fn reg() -> Registration {
        Registration::new(
            RegistrationConfig {
                registrar: "203.0.113.5:5060".parse().unwrap(),
                domain: "provider.example".into(),
                user: "trunk".into(),
                credentials: ClientCredentials {
                    user: "trunk-auth".into(),
                    secret: ClientSecret {
                        password: Some("pw".into()),
                        ha1_md5: None,
                        ha1_sha256: None,
                    },
                },
                expires: 600,
            },
            "reg-1".into(),
            "tag1".into(),
        )
    }

    fn response(req: &Bytes, status: u16, extra: &str) -> Message {
        let text = String::from_utf8_lossy(req);
        let head: Vec<&str> = text
            .split("\r\n")
            .filter(|l| {
                ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                    .iter()
                    .any(|h| l.starts_with(h))
            })
            .collect();
        let s = format!(
            "SIP/2.0 {status} X\r\n{}\r\n{extra}Content-Length: 0\r\n\r\n",
            head.join("\r\n")
        );
        codecs::sip::parse_datagram(Bytes::from(s)).unwrap().0
    }

    fn fresh(n: u32) -> (String, String) {
        (format!("z9hG4bKb{n}"), format!("cn{n}"))
    }

    #[test]
    fn registers_with_digest_refreshes_before_expiry_and_backs_off_after_failure() {
        let mut r = reg();
        let local: SocketAddr = LOCAL.parse().unwrap();
        let t0 = Duration::from_secs(1);
        let first = r
            .poll_transmit(t0, local, "UDP", "z9hG4bKa".into())
            .unwrap();
        let text = String::from_utf8_lossy(&first.request).into_owned();
        assert!(
            text.starts_with("REGISTER sip:provider.example SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 REGISTER") && text.contains("Expires: 600"));
        assert_eq!(r.status(t0).state, RegState::Registering);
        // 401 with an MD5 challenge: the next REGISTER answers it, CSeq + 1.
        let ch = "WWW-Authenticate: Digest realm=\"prov\", nonce=\"n1\", qop=\"auth\"\r\n";
        let resp = response(&first.request, 401, ch);
        let second = r
            .on_response(t0, &first.branch, &resp, local, "UDP", fresh(1))
            .unwrap();
        let text = String::from_utf8_lossy(&second.request).into_owned();
        assert!(text.contains("CSeq: 2 REGISTER"), "{text}");
        let auth = text
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Authorization: "))
            .unwrap();
        let p = DigestParams::parse(auth).unwrap();
        assert_eq!(p.get("username"), Some("trunk-auth"));
        assert_eq!(p.get("uri"), Some("sip:provider.example"));
        let ha1 = Algorithm::Md5.ha1("trunk-auth", "prov", "pw");
        let want = Algorithm::Md5.response(
            &ha1,
            "n1",
            "00000001",
            "cn1",
            "auth",
            "REGISTER",
            "sip:provider.example",
        );
        assert_eq!(p.get("response"), Some(want.as_str()));
        // 200 granting 60 s (Contact expires): refreshed 30 s later.
        let ok = response(
            &second.request,
            200,
            "Contact: <sip:trunk@198.51.100.1:5060;transport=udp>;expires=60\r\n",
        );
        assert!(r
            .on_response(t0, &second.branch, &ok, local, "UDP", fresh(2))
            .is_none());
        let s = r.status(t0);
        assert_eq!(
            (s.state, s.expires_in, s.registered),
            (RegState::Registered, Some(60), 1)
        );
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        assert!(r
            .poll_transmit(t0 + Duration::from_secs(29), local, "UDP", "x".into())
            .is_none());
        let t1 = t0 + Duration::from_secs(30);
        let refresh = r
            .poll_transmit(t1, local, "UDP", "z9hG4bKc".into())
            .unwrap();
        assert!(String::from_utf8_lossy(&refresh.request).contains("CSeq: 3 REGISTER"));
        // Wrong password: a 401 after our credentials is one too many; then 403.
        let resp = response(&refresh.request, 401, ch);
        let again = r
            .on_response(t1, &refresh.branch, &resp, local, "UDP", fresh(3))
            .unwrap();
        let resp = response(&again.request, 401, ch);
        let third = r
            .on_response(t1, &again.branch, &resp, local, "UDP", fresh(4))
            .unwrap();
        let resp = response(&third.request, 401, ch);
        assert!(r
            .on_response(t1, &third.branch, &resp, local, "UDP", fresh(5))
            .is_none());
        let s = r.status(t1);
        // Still bound until the granted time runs out.
        assert_eq!(s.state, RegState::Registered);
        assert_eq!(s.failures, 1);
        assert_eq!(r.poll_timeout(), Some(t1 + FIRST_BACKOFF));
        // No response at all: the binding runs out, failed, the backoff doubles.
        let t2 = t1 + FIRST_BACKOFF;
        let lost = r
            .poll_transmit(t2, local, "UDP", "z9hG4bKd".into())
            .unwrap();
        let t3 = t0 + Duration::from_secs(61);
        r.on_timeout(t3, Some(&lost.branch));
        assert_eq!(r.status(t3).state, RegState::Failed);
        assert_eq!(r.poll_timeout(), Some(t3 + FIRST_BACKOFF * 2));
        // 423: asked again at once with Min-Expires.
        let t4 = t3 + FIRST_BACKOFF * 2;
        let a = r
            .poll_transmit(t4, local, "UDP", "z9hG4bKe".into())
            .unwrap();
        let resp = response(&a.request, 423, "Min-Expires: 1200\r\n");
        let b = r
            .on_response(t4, &a.branch, &resp, local, "UDP", fresh(6))
            .unwrap();
        assert!(String::from_utf8_lossy(&b.request).contains("Expires: 1200"));
        // A response to an older REGISTER is ignored.
        assert!(r
            .on_response(t4, &a.branch, &resp, local, "UDP", fresh(7))
            .is_none());
    }
}
