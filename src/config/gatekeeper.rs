//! `[gw1.gatekeeper]`: GW1's registration to an inside H.323 gatekeeper (RAS, see
//! [`crate::engine::ras_client`]): the keys, their checks, and the engine settings they make.

use super::{Family, Problems};
use crate::engine::ras_client::{self, RasConfig};
use serde::Deserialize;
use std::net::SocketAddr;

/// Bounds of `time_to_live_secs`.
pub const TIME_TO_LIVE_RANGE: (u32, u32) = (1, 86_400);

/// `[gw1.gatekeeper]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatekeeperSection {
    /// The gatekeeper's RAS address (`ip:port`, usually port 1719), in GW1's family.
    pub address: SocketAddr,
    /// GW1's RAS socket; default: GW1's inside address (`sip_bind`'s), port 0 (any).
    #[serde(default)]
    pub bind: Option<SocketAddr>,
    /// GRQ/GCF to `address` first (gatekeeper discovery); false: RRQ directly.
    #[serde(default = "default_true")]
    pub discover: bool,
    /// The gatekeeper identifier asked for; default: any.
    #[serde(default)]
    pub gatekeeper_id: Option<String>,
    /// GW1's H.323 identifier alias.
    #[serde(default = "default_h323_id")]
    pub h323_id: String,
    /// E.164 numbers or prefixes registered as dialedDigits aliases.
    #[serde(default)]
    pub e164: Vec<String>,
    /// The `timeToLive` asked for in RRQ, seconds (the gatekeeper's RCF value wins).
    #[serde(default = "default_time_to_live_secs")]
    pub time_to_live_secs: u32,
}

fn default_true() -> bool {
    true
}
fn default_h323_id() -> String {
    "sgw-gw1".to_owned()
}
fn default_time_to_live_secs() -> u32 {
    ras_client::DEFAULT_TIME_TO_LIVE
}

impl GatekeeperSection {
    /// The socket GW1 binds for RAS: `bind`, else `inside_ip` port 0.
    pub fn bind_address(&self, inside: SocketAddr) -> SocketAddr {
        self.bind.unwrap_or(SocketAddr::new(inside.ip(), 0))
    }

    /// The client's settings, with GW1's bound RAS address and call signalling address.
    pub fn ras_config(
        &self,
        ras_address: SocketAddr,
        call_signal_address: SocketAddr,
    ) -> RasConfig {
        RasConfig {
            gatekeeper: self.address,
            discover: self.discover,
            gatekeeper_id: self.gatekeeper_id.clone(),
            h323_id: self.h323_id.clone(),
            e164: self.e164.clone(),
            time_to_live: self.time_to_live_secs,
            ras_address,
            call_signal_address,
        }
    }
}

pub(super) fn check_gatekeeper(g: &GatekeeperSection, family: Family, p: &mut Problems) {
    let a = g.address;
    if a.ip().is_unspecified() || a.ip().is_multicast() || a.port() == 0 {
        p.add(
            "gw1.gatekeeper.address",
            format!("{a} is not an address a gatekeeper answers on"),
        );
    } else if !family.matches(a.ip()) {
        p.add(
            "gw1.gatekeeper.address",
            format!("{} is not an {family} address (gw1.family)", a.ip()),
        );
    }
    if let Some(b) = g.bind {
        if !family.matches(b.ip()) {
            p.add(
                "gw1.gatekeeper.bind",
                format!("{} is not an {family} address (gw1.family)", b.ip()),
            );
        } else if b.ip().is_multicast() {
            p.add("gw1.gatekeeper.bind", format!("{b} is a multicast address"));
        }
    }
    let bmp_ok = |s: &str, max: usize| {
        let n = s.chars().count();
        n >= 1 && n <= max && !s.chars().any(char::is_control) && h323_asn1::bmp_string(s).is_ok()
    };
    if let Some(id) = &g.gatekeeper_id {
        if !bmp_ok(id, 128) {
            p.add(
                "gw1.gatekeeper.gatekeeper_id",
                format!("{id:?}: 1-128 characters of the Basic Multilingual Plane, no control character"),
            );
        }
    }
    if !bmp_ok(&g.h323_id, 256) {
        p.add(
            "gw1.gatekeeper.h323_id",
            format!(
                "{:?}: 1-256 characters of the Basic Multilingual Plane, no control character",
                g.h323_id
            ),
        );
    }
    for (i, n) in g.e164.iter().enumerate() {
        if ras_client::dialed_digits(n).is_none() {
            p.add(
                &format!("gw1.gatekeeper.e164[{i}]"),
                format!("{n:?} is not a number or prefix (1-128 of 0-9 # * , after an optional +)"),
            );
        }
    }
    let (lo, hi) = TIME_TO_LIVE_RANGE;
    if !(lo..=hi).contains(&g.time_to_live_secs) {
        p.add(
            "gw1.gatekeeper.time_to_live_secs",
            format!("{} is outside {lo}..={hi}", g.time_to_live_secs),
        );
    }
}
