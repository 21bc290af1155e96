//! `[auth]` (GW2's digest server) and `[gw2.registration]` (GW2's account at its provider):
//! the keys, their checks, and the engine settings they make.

use super::Problems;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[auth]`: GW2's digest server (RFC 7616, RFC 8760), see [`crate::engine::auth`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The realm of the challenges, and of the credentials used from the file.
    pub realm: String,
    /// The credentials file: lines `user:realm:ha1-md5:ha1-sha256` (`sgw auth ha1`).
    pub credentials: PathBuf,
    /// Whether calls from outside must authenticate when no rule says (`auth` of a rule);
    /// trusted peers and emergency calls never need to.
    #[serde(default = "default_true")]
    pub require: bool,
    /// Source addresses or prefixes (CIDR) that need no digest: the provider's.
    #[serde(default)]
    pub trusted_peers: Vec<String>,
    /// Seconds a nonce is valid; an older one is answered `stale=true`.
    #[serde(default = "default_nonce_lifetime_secs")]
    pub nonce_lifetime_secs: u32,
    /// Wrong credentials from one source for one user (within 60 s) before 403.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// The algorithms challenged with, in this order: "SHA-256", "MD5" (the default is both,
    /// SHA-256 first, RFC 8760). A phone that answers only the first challenge and knows only
    /// MD5 needs `["MD5"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["SHA-256".to_owned(), "MD5".to_owned()]
}

fn default_true() -> bool {
    true
}
fn default_nonce_lifetime_secs() -> u32 {
    u32::try_from(crate::engine::auth::DEFAULT_NONCE_LIFETIME.as_secs()).unwrap_or(300)
}
fn default_max_failures() -> u32 {
    crate::engine::auth::DEFAULT_MAX_FAILURES
}

impl AuthConfig {
    /// The engine's settings, with the credentials file read (`nonce_key`: the HMAC key).
    pub fn digest_config(
        &self,
        nonce_key: [u8; 32],
    ) -> Result<crate::engine::auth::DigestConfig, String> {
        let path = &self.credentials;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let credentials = crate::engine::auth::Credentials::parse(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if credentials.is_empty() {
            return Err(format!(
                "{}: no credentials in the file",
                self.credentials.display()
            ));
        }
        Ok(crate::engine::auth::DigestConfig {
            realm: self.realm.clone(),
            credentials,
            trusted_peers: self
                .trusted_peers
                .iter()
                .filter_map(|p| crate::engine::access::Cidr::parse(p).ok())
                .collect(),
            require: self.require,
            nonce_lifetime: std::time::Duration::from_secs(u64::from(self.nonce_lifetime_secs)),
            max_failures: self.max_failures,
            algorithms: self
                .algorithms
                .iter()
                .filter_map(|a| crate::engine::auth::Algorithm::parse(a))
                .collect(),
            nonce_key,
        })
    }
}

pub(super) fn check_auth(a: &AuthConfig, has_gw2: bool, p: &mut Problems) {
    if !has_gw2 {
        p.add(
            "auth",
            "only GW2 challenges calls: [auth] needs a [gw2] section",
        );
    }
    if a.realm.is_empty() || a.realm.len() > 128 || a.realm.chars().any(|c| c.is_control()) {
        p.add("auth.realm", "1-128 characters, no control character");
    }
    for (i, s) in a.trusted_peers.iter().enumerate() {
        if let Err(e) = crate::engine::access::Cidr::parse(s) {
            p.add(&format!("auth.trusted_peers[{i}]"), e);
        }
    }
    if !(10..=86_400).contains(&a.nonce_lifetime_secs) {
        p.add(
            "auth.nonce_lifetime_secs",
            format!("{} is outside 10..=86400", a.nonce_lifetime_secs),
        );
    }
    if a.algorithms.is_empty() {
        p.add("auth.algorithms", "at least one of \"SHA-256\", \"MD5\"");
    }
    for (i, alg) in a.algorithms.iter().enumerate() {
        if crate::engine::auth::Algorithm::parse(alg).is_none() {
            p.add(
                &format!("auth.algorithms[{i}]"),
                format!("{alg:?}: only \"SHA-256\" and \"MD5\""),
            );
        } else if a.algorithms.get(..i).is_some_and(|b| b.contains(alg)) {
            p.add(&format!("auth.algorithms[{i}]"), format!("{alg:?} twice"));
        }
    }
    if !(1..=100).contains(&a.max_failures) {
        p.add(
            "auth.max_failures",
            format!("{} is outside 1..=100", a.max_failures),
        );
    }
}

/// `[gw2.registration]`, see [`crate::engine::registration`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationSection {
    /// Where REGISTER goes (`ip:port`, over GW2's outside transport).
    pub registrar: SocketAddr,
    /// The domain of the address of record and Request-URI; default: the registrar's address.
    #[serde(default)]
    pub domain: Option<String>,
    /// The user of the address of record (and of GW2's Contact).
    pub user: String,
    /// The user name of the credentials; default: `user`.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// The password, or instead the HA1 values for the provider's realm (hex, as `sgw auth
    /// ha1` prints them): keep this file readable by the gateway only.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ha1_md5: Option<String>,
    #[serde(default)]
    pub ha1_sha256: Option<String>,
    /// Seconds asked for (the registrar may grant fewer; refreshed before they run out).
    #[serde(default = "default_registration_expires")]
    pub expires: u32,
    /// `false`: no REGISTER, the credentials only answer the challenges of calls GW2 places.
    #[serde(default = "default_true")]
    pub register: bool,
}

fn default_registration_expires() -> u32 {
    3600
}

impl RegistrationSection {
    pub fn credentials(&self) -> crate::engine::auth::ClientCredentials {
        crate::engine::auth::ClientCredentials {
            user: self.auth_user.clone().unwrap_or_else(|| self.user.clone()),
            secret: crate::engine::auth::ClientSecret {
                password: self.password.clone(),
                ha1_md5: self.ha1_md5.as_ref().map(|h| h.to_ascii_lowercase()),
                ha1_sha256: self.ha1_sha256.as_ref().map(|h| h.to_ascii_lowercase()),
            },
        }
    }

    /// The engine's registration (`None` with `register = false`).
    pub fn engine_registration(&self) -> Option<crate::engine::registration::RegistrationConfig> {
        self.register
            .then(|| crate::engine::registration::RegistrationConfig {
                registrar: self.registrar,
                domain: self
                    .domain
                    .clone()
                    .unwrap_or_else(|| crate::engine::host_port(self.registrar)),
                user: self.user.clone(),
                credentials: self.credentials(),
                expires: self.expires,
            })
    }
}

pub(super) fn check_registration(
    r: &RegistrationSection,
    gw2: &super::Gw2Config,
    p: &mut Problems,
) {
    let key = |k: &str| format!("gw2.registration.{k}");
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%#".contains(&b))
    };
    if !token(&r.user) {
        p.add(&key("user"), "1-128 characters of a SIP user part");
    }
    if let Some(a) = &r.auth_user {
        if a.is_empty()
            || a.len() > 128
            || a.contains(['"', '\\'])
            || a.chars().any(char::is_control)
        {
            p.add(
                &key("auth_user"),
                "1-128 characters, no quote or control character",
            );
        }
    }
    if let Some(d) = &r.domain {
        if d.is_empty()
            || d.len() > 253
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            p.add(
                &key("domain"),
                format!("{d:?} is not a host name or address"),
            );
        }
    }
    if r.registrar.ip().is_unspecified() || r.registrar.port() == 0 {
        p.add(
            &key("registrar"),
            format!("{} is not an address to send to", r.registrar),
        );
    }
    let hex = |v: &Option<String>, len: usize| {
        v.as_ref()
            .is_none_or(|h| h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if !hex(&r.ha1_md5, 32) {
        p.add(&key("ha1_md5"), "32 hex digits (sgw auth ha1)");
    }
    if !hex(&r.ha1_sha256, 64) {
        p.add(&key("ha1_sha256"), "64 hex digits (sgw auth ha1)");
    }
    if r.password.is_none() && r.ha1_md5.is_none() && r.ha1_sha256.is_none() {
        p.add(
            &key("password"),
            "a password, or ha1_md5/ha1_sha256, is needed",
        );
    }
    if r.password.is_some() && (r.ha1_md5.is_some() || r.ha1_sha256.is_some()) {
        p.add(
            &key("password"),
            "either a password or HA1 values, not both",
        );
    }
    if let Some(listener) = gw2.sip_udp.first().or(gw2.sip_tcp.first()) {
        // GW2 registers from its first SIP listener (the media address when it is a wildcard).
        let ip = if listener.ip().is_unspecified() {
            gw2.media.ip
        } else {
            listener.ip()
        };
        if ip.is_ipv4() != r.registrar.is_ipv4() {
            p.add(
                &key("registrar"),
                format!(
                    "{} is not in the family of GW2's SIP address {ip}",
                    r.registrar
                ),
            );
        }
    }
    if !(10..=86_400).contains(&r.expires) {
        p.add(
            &key("expires"),
            format!("{} is outside 10..=86400", r.expires),
        );
    }
}
