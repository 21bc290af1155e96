//! The gateway's configuration file (TOML): raw text becomes a validated [`Config`] in one step,
//! and every error names the key path and the line it is on (`sgw check-config FILE`).
//!
//! Parsing is two passes over the same text: serde fills the typed structure (unknown keys are
//! errors, so a misspelt key never goes unnoticed), and `toml`'s spanned document tree maps an
//! error's byte offset to a key path, or a key path to its line, for the checks serde cannot
//! express (a port range upside down, an IPv4 next hop on an IPv6 inside network, ...).
//!
//! Every key accepted here does something. Keys the gateway does not implement yet are
//! [`NOT_SUPPORTED_YET`]: written anywhere, they are refused before anything else is checked.

use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

/// The annotated example configuration shipped in `examples/sgw.toml`.
pub const EXAMPLE_CONFIG: &str = include_str!("../examples/sgw.toml");
/// `sgw check-config --help` shows the example verbatim (and so does the man page).
pub const EXAMPLE_CONFIG_HELP: &str = concat!(
    "Example configuration (examples/sgw.toml):\n\n",
    include_str!("../examples/sgw.toml")
);

/// Default for `[gw2.limits] handshake_timeout_secs`.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u32 = 10;
/// Default for `[gw2.limits] max_calls`.
pub const DEFAULT_MAX_CALLS: u32 = 1000;
/// Default and largest `[gw2.limits] max_message_size`: the largest UDP payload SIP can use.
pub const MAX_MESSAGE_SIZE: u32 = 65_535;
/// Smallest `max_message_size`: RFC 3261 §18.1.1 expects at least 1300-byte messages over UDP.
pub const MIN_MESSAGE_SIZE: u32 = 1300;
/// Default for `[gw2.limits] max_tcp_connections`: SIP TCP connections open at once.
pub const DEFAULT_MAX_TCP_CONNECTIONS: u32 = 10_000;
/// Default for `[gw2.limits] max_tcp_per_source`: SIP TCP connections open at once from one
/// source address (a NAT or a site proxy may carry many phones, hence not lower).
pub const DEFAULT_MAX_TCP_PER_SOURCE: u32 = 256;
/// Default for `[gw2.limits] tcp_idle_timeout_secs`: a SIP TCP connection with no bytes either
/// way for this long is closed (as kamailio's `tcp_connection_lifetime`, 120 s).
pub const DEFAULT_TCP_IDLE_TIMEOUT_SECS: u32 = 120;
/// Default for `[gw2.media]`/`[gw1.media] relatch_idle_ms`: how long the source a media stream
/// latched to must be silent before another may take the stream (100 packets at 20 ms).
pub const DEFAULT_RELATCH_IDLE_MS: u32 = 2000;
/// Bounds of `relatch_idle_ms`: below a few packet times an outsider could take a stream in the
/// gaps of a live one; above an hour re-latching is off in all but name.
pub const RELATCH_IDLE_MS_RANGE: (u32, u32) = (100, 3_600_000);
/// Longest configuration file accepted, in bytes.
pub const MAX_CONFIG_LEN: usize = 1 << 20;

/// Keys the gateway does not implement yet. Written in a file, each is refused ("not supported
/// yet: KEY", `sgw check-config` exits 2) rather than accepted and silently ignored: a gateway
/// must not claim a protection it does not give. When a feature lands, its key moves out of
/// this list and into the typed structure below, with a test that it works.
pub const NOT_SUPPORTED_YET: &[(&str, &str)] = &[];

/// The transports GW1 can speak SIP over toward the inside (over TCP it listens on `sip_bind`
/// and opens its own connections to the next hop).
pub const GW1_TRANSPORTS: &[Transport] = &[Transport::Udp, Transport::Tcp];

/// A complete configuration. A host running one half needs only that half's section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub gw2: Option<Gw2Config>,
    pub gw1: Option<Gw1Config>,
    /// Absent: ephemeral certificates, only useful when both halves run in one process.
    pub pki: Option<PkiConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The operator's control socket (`sgw ctl`); absent: none.
    #[serde(default)]
    pub control: Option<ControlConfig>,
    /// The Prometheus endpoint (`GET /metrics`); absent: none is served.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// HEP v3 export to a collector (Homer, sngrep); absent: none.
    #[serde(default)]
    pub hep: Option<HepConfig>,
    /// Per-call pcap files; absent: none are written.
    #[serde(default)]
    pub recording: Option<RecordingConfig>,
    /// The confidentiality levels that are settings (level 4, cover traffic); absent: none.
    #[serde(default)]
    pub confidentiality: Option<ConfidentialityConfig>,
    /// SIP digest authentication of calls to GW2 from outside; absent: none is asked for.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

/// `[confidentiality]`: level 4 of the paper, cover traffic on the media tunnel (both halves
/// shape the direction they send; see `live::cover`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfidentialityConfig {
    /// Constant rate of each direction of the media tunnel, kbit/s; 0: off.
    #[serde(default)]
    pub cover_traffic_kbps: u32,
    /// One write of that rate every this many milliseconds (5-1000, default 20).
    #[serde(default = "default_cover_interval_ms")]
    pub cover_interval_ms: u32,
}

fn default_cover_interval_ms() -> u32 {
    20
}

/// `[hep]`: where every SIP message and H.225.0 PDU either half handles is copied, HEP v3.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HepConfig {
    pub collector: SocketAddr,
    /// The capture agent id (chunk 0x000c) the collector shows as the node.
    #[serde(default = "default_hep_agent_id")]
    pub agent_id: u32,
    /// The authentication key (chunk 0x000e); absent: none is sent.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub transport: HepTransport,
}

/// Default `[hep] agent_id`.
pub const DEFAULT_HEP_AGENT_ID: u32 = 2001;

fn default_hep_agent_id() -> u32 {
    DEFAULT_HEP_AGENT_ID
}

/// How HEP packets reach the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HepTransport {
    #[default]
    Udp,
    Tcp,
}

/// `[recording]`: a pcap file per call (signalling and media of the legs this process sees).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// The directory the files are written to (it must exist).
    pub dir: PathBuf,
    /// The most the capture files in `dir` may take, in MiB; at the quota no new call is
    /// recorded and calls being recorded stop growing.
    #[serde(default = "default_recording_quota_mb")]
    pub quota_mb: u64,
}

/// Default `[recording] quota_mb`.
pub const DEFAULT_RECORDING_QUOTA_MB: u64 = 1024;

fn default_recording_quota_mb() -> u64 {
    DEFAULT_RECORDING_QUOTA_MB
}

/// `[control]`: where `sgw run` listens for `sgw ctl`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// A Unix socket path; it is created with mode 0600 (only the gateway's user, and root,
    /// may use it) and removed when the gateway stops.
    pub socket: PathBuf,
}

/// `[metrics]`: where `GET /metrics` is served (plain HTTP: bind it to a management address).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

/// The termination gateway in the DMZ.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gw2Config {
    /// SIP over UDP listeners.
    #[serde(default)]
    pub sip_udp: Vec<SocketAddr>,
    /// SIP over TCP listeners.
    #[serde(default)]
    pub sip_tcp: Vec<SocketAddr>,
    /// SIP over TLS listeners (TLS 1.2 and 1.3; the standard port is 5061).
    #[serde(default)]
    pub sip_tls: Vec<SocketAddr>,
    /// The PEM certificate chain GW2 presents on `sip_tls`.
    #[serde(default)]
    pub sip_tls_cert: Option<PathBuf>,
    /// The PEM private key of `sip_tls_cert`.
    #[serde(default)]
    pub sip_tls_key: Option<PathBuf>,
    /// H.225.0 call signalling listeners (TCP; the standard port is 1720). Only H.225.0 is
    /// read on them, and H.225.0 is read nowhere else.
    #[serde(default)]
    pub h225_tcp: Vec<SocketAddr>,
    /// Where GW1's two tunnel connections arrive.
    pub tunnel_listen: SocketAddr,
    /// Accept more than one GW1 instance at a time.
    #[serde(default)]
    pub allow_multiple_gw1: bool,
    /// Outside media: the address put in SDP and the RTP/RTCP port range.
    pub media: MediaConfig,
    /// Where calls from the intranet go out (a provider or SBC, `ip:port`); without it GW2
    /// refuses them (Q.850 cause 3, no route).
    #[serde(default)]
    pub outside_next_hop: Option<SocketAddr>,
    /// How GW2 reaches `outside_next_hop`. Unset: UDP with a `sip_udp` listener, else TCP.
    #[serde(default)]
    pub outside_transport: Option<Transport>,
    /// With `outside_transport = "tls"`: the name the next hop's certificate must carry
    /// (DNS name or IP address), the PEM file of the CAs it is verified against, and an
    /// optional client certificate and key (mutual TLS with the provider).
    #[serde(default)]
    pub outside_tls_server_name: Option<String>,
    #[serde(default)]
    pub outside_tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub outside_tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub outside_tls_key: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[gw2.records]`: GW2's tamper-evident call records; absent: none are written.
    #[serde(default)]
    pub records: Option<crate::cdr::RecordsConfig>,
    /// GW2's account at its provider: REGISTER, and the answer to the challenges of calls it
    /// places outside.
    #[serde(default)]
    pub registration: Option<RegistrationSection>,
}

/// The relay gateway in the intranet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gw1Config {
    /// GW2's tunnel address as GW1 dials it, `host:port` (one GW2; several: `[[gw1.gw2]]`).
    #[serde(default)]
    pub tunnel: Option<String>,
    /// The name GW2's certificate must carry (DNS name or IP address).
    #[serde(default)]
    pub tunnel_server_name: Option<String>,
    /// `[[gw1.gw2]]`: several GW2s; GW1 keeps a tunnel pair to each and spreads the calls
    /// from the inside over those whose tunnel is up (see [`Gw1Config::peers`]).
    #[serde(default)]
    pub gw2: Vec<Gw2Peer>,
    /// Where GW1 listens for SIP from the inside.
    pub sip_bind: SocketAddr,
    /// The inside next hop (IP-PBX or proxy) that calls from outside are sent to.
    pub next_hop: SocketAddr,
    /// IP family of the inside network.
    pub family: Family,
    /// Only [`GW1_TRANSPORTS`] are accepted.
    #[serde(default)]
    pub transport: Transport,
    /// Inside media: the address put in SDP and the port range.
    pub media: MediaConfig,
    /// `[gw1.records]`: GW1's tamper-evident call records; absent: none are written.
    #[serde(default)]
    pub records: Option<crate::cdr::RecordsConfig>,
    /// What the inside speaks: SIP (default) or H.323, `next_hop` then being the PBX's
    /// H.225.0 call signalling address.
    #[serde(default)]
    pub protocol: InsideProtocol,
    /// `protocol = "h323"`: where GW1 accepts H.225.0 calls from the inside (default:
    /// `sip_bind`'s address, port 1720).
    #[serde(default)]
    pub h225_listen: Option<SocketAddr>,
    /// `[gw1.gatekeeper]`: GW1 registers to an inside H.323 gatekeeper (RAS); absent: none.
    #[serde(default)]
    pub gatekeeper: Option<GatekeeperSection>,
}

/// One GW2 of `[[gw1.gw2]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gw2Peer {
    /// Its tunnel address as GW1 dials it, `host:port`.
    pub tunnel: String,
    /// The name its certificate must carry (DNS name or IP address).
    pub tunnel_server_name: String,
}

/// Most GW2s one GW1 connects to (`[[gw1.gw2]]`).
pub const MAX_GW2_PEERS: usize = 16;
/// Fewest inside media ports each GW2's share of `[gw1.media]` may have.
pub const MIN_PORTS_PER_GW2: u32 = 4;

impl Gw1Config {
    /// The GW2s this GW1 connects to: `[[gw1.gw2]]`, else the one of `tunnel` and
    /// `tunnel_server_name` (empty only in a configuration that failed its checks).
    pub fn peers(&self) -> Vec<Gw2Peer> {
        if !self.gw2.is_empty() {
            return self.gw2.clone();
        }
        match (&self.tunnel, &self.tunnel_server_name) {
            (Some(tunnel), Some(name)) => vec![Gw2Peer {
                tunnel: tunnel.clone(),
                tunnel_server_name: name.clone(),
            }],
            _ => Vec::new(),
        }
    }

    /// Each GW2's share of the inside media ports: `[gw1.media]` cut into as many equal,
    /// even-aligned ranges (RTP even, RTCP odd) as there are GW2s, one engine per GW2.
    pub fn media_slices(&self) -> Vec<(u16, u16)> {
        media_slices(self.media.port_min, self.media.port_max, self.peers().len())
    }
}

/// `port_min..=port_max` cut into `n` equal ranges, each starting on an even port and holding
/// an even number of ports (the last ports of an uneven split are left unused).
pub fn media_slices(port_min: u16, port_max: u16, n: usize) -> Vec<(u16, u16)> {
    let (min, max) = (u32::from(port_min), u32::from(port_max));
    let Ok(n32) = u32::try_from(n) else {
        return Vec::new();
    };
    if n32 == 0 || max < min {
        return Vec::new();
    }
    let per = ((max - min + 1) / n32) & !1;
    if per == 0 {
        return Vec::new();
    }
    (0..n32)
        .filter_map(|i| {
            let lo = u16::try_from(min + i * per).ok()?;
            let hi = u16::try_from(min + (i + 1) * per - 1).ok()?;
            Some((lo, hi))
        })
        .collect()
}

/// The protocol GW1 speaks with the inside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsideProtocol {
    #[default]
    Sip,
    H323,
}

/// An RTP/RTCP port range and the address advertised for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub ip: IpAddr,
    /// First port, even (RTP on even ports, RTCP on the next odd one).
    pub port_min: u16,
    /// Last port, inclusive.
    pub port_max: u16,
    /// Which first packet latches a media stream (symmetric RTP, RFC 4961). Unset: GW2's
    /// outside uses `signalling`, GW1's inside `sdp`.
    #[serde(default)]
    pub latch: Option<LatchMode>,
    /// Milliseconds of silence from the latched source before another source may latch.
    #[serde(default = "default_relatch_idle_ms")]
    pub relatch_idle_ms: u32,
}

fn default_relatch_idle_ms() -> u32 {
    DEFAULT_RELATCH_IDLE_MS
}

/// `latch` of a media section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatchMode {
    /// Only the address and port of the SDP.
    Sdp,
    /// The SDP's address and port, or any port of the address the call's signalling came
    /// from (phones behind NAT).
    Signalling,
    /// Any first packet: whoever sends first takes the stream.
    Any,
}

impl MediaConfig {
    /// The ports as a range, end exclusive.
    pub fn ports(&self) -> Range<u32> {
        u32::from(self.port_min)..u32::from(self.port_max).saturating_add(1)
    }
}

/// GW2's protections (availability, paper table 1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent calls; `emergency_reserve_percent` of them are kept for emergency calls,
    /// which pre-empt the newest other call when every slot is taken.
    #[serde(default = "default_max_calls")]
    pub max_calls: u32,
    /// Largest SIP message accepted from outside, in bytes; a larger request is answered 513.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u32,
    /// SIP TCP connections open at once; further connections are closed on accept.
    #[serde(default = "default_max_tcp_connections")]
    pub max_tcp_connections: u32,
    /// SIP TCP connections open at once from one source address.
    #[serde(default = "default_max_tcp_per_source")]
    pub max_tcp_per_source: u32,
    /// Seconds without a byte either way after which a SIP TCP connection is closed.
    #[serde(default = "default_tcp_idle_timeout_secs")]
    pub tcp_idle_timeout_secs: u32,
    /// New calls per second from outside, all sources together; 0: no global limit.
    #[serde(default)]
    pub calls_per_second: u32,
    /// New calls (INVITE, H.225.0 Setup) per second from one source, and its burst.
    #[serde(default = "default_calls_per_source")]
    pub calls_per_source: u32,
    #[serde(default = "default_calls_per_source_burst")]
    pub calls_per_source_burst: u32,
    /// SIP requests (and new H.225.0 connections) per second from one source, and its burst.
    #[serde(default = "default_requests_per_source")]
    pub requests_per_source: u32,
    #[serde(default = "default_requests_per_source_burst")]
    pub requests_per_source_burst: u32,
    /// The prefix length that keys an IPv6 source (IPv4: the address).
    #[serde(default = "default_ipv6_prefix_len")]
    pub ipv6_prefix_len: u8,
    /// Refusals by a source limit within `block_window_secs` that block the source for
    /// `block_secs`; 0: never block.
    #[serde(default = "default_block_after")]
    pub block_after: u32,
    /// Calls that end on a number the inside does not have (404, 484, 604), within
    /// `block_window_secs`, that block the source (a scanner walking numbers); 0: never.
    #[serde(default = "default_block_after_unknown_numbers")]
    pub block_after_unknown_numbers: u32,
    #[serde(default = "default_block_window_secs")]
    pub block_window_secs: u32,
    #[serde(default = "default_block_secs")]
    pub block_secs: u32,
    /// Most sources the limiters and the block list track.
    #[serde(default = "default_max_sources")]
    pub max_sources: u32,
    /// Share of max_calls only emergency calls may use, in percent.
    #[serde(default = "default_emergency_reserve_percent")]
    pub emergency_reserve_percent: u8,
    /// Seconds a tunnel connection has from accept to the end of its TLS and tunnel handshake,
    /// and a SIP TLS connection to the end of its TLS handshake.
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u32,
}

fn default_calls_per_source() -> u32 {
    crate::engine::limits::DEFAULT_SOURCE_CALLS_PER_SECOND
}
fn default_calls_per_source_burst() -> u32 {
    crate::engine::limits::DEFAULT_SOURCE_CALLS_BURST
}
fn default_requests_per_source() -> u32 {
    crate::engine::limits::DEFAULT_SOURCE_REQUESTS_PER_SECOND
}
fn default_requests_per_source_burst() -> u32 {
    crate::engine::limits::DEFAULT_SOURCE_REQUESTS_BURST
}
fn default_ipv6_prefix_len() -> u8 {
    crate::engine::limits::DEFAULT_IPV6_PREFIX
}
fn default_block_after() -> u32 {
    crate::engine::limits::DEFAULT_BLOCK_AFTER
}
fn default_block_after_unknown_numbers() -> u32 {
    crate::engine::limits::DEFAULT_BLOCK_AFTER_UNKNOWN_NUMBERS
}
fn default_block_window_secs() -> u32 {
    10
}
fn default_block_secs() -> u32 {
    60
}
fn default_max_sources() -> u32 {
    100_000
}
fn default_emergency_reserve_percent() -> u8 {
    crate::engine::limits::DEFAULT_EMERGENCY_RESERVE_PERCENT
}
fn default_handshake_timeout_secs() -> u32 {
    DEFAULT_HANDSHAKE_TIMEOUT_SECS
}

impl LimitsConfig {
    /// The engine's settings of the rate limits, block list and emergency reserve.
    pub fn engine_limits(&self) -> crate::engine::LimitsConfig {
        crate::engine::LimitsConfig {
            source_calls_per_second: self.calls_per_source,
            source_calls_burst: self.calls_per_source_burst,
            source_requests_per_second: self.requests_per_source,
            source_requests_burst: self.requests_per_source_burst,
            calls_per_second: self.calls_per_second,
            ipv6_prefix: self.ipv6_prefix_len,
            block_after: self.block_after,
            block_after_unknown_numbers: self.block_after_unknown_numbers,
            block_window: std::time::Duration::from_secs(u64::from(self.block_window_secs)),
            block_time: std::time::Duration::from_secs(u64::from(self.block_secs)),
            max_sources: usize::try_from(self.max_sources).unwrap_or(usize::MAX),
            emergency_reserve_percent: self.emergency_reserve_percent,
        }
    }
}

fn default_max_calls() -> u32 {
    DEFAULT_MAX_CALLS
}
fn default_max_message_size() -> u32 {
    MAX_MESSAGE_SIZE
}
fn default_max_tcp_connections() -> u32 {
    DEFAULT_MAX_TCP_CONNECTIONS
}
fn default_max_tcp_per_source() -> u32 {
    DEFAULT_MAX_TCP_PER_SOURCE
}
fn default_tcp_idle_timeout_secs() -> u32 {
    DEFAULT_TCP_IDLE_TIMEOUT_SECS
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_calls: DEFAULT_MAX_CALLS,
            max_message_size: MAX_MESSAGE_SIZE,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            max_tcp_per_source: DEFAULT_MAX_TCP_PER_SOURCE,
            tcp_idle_timeout_secs: DEFAULT_TCP_IDLE_TIMEOUT_SECS,
            calls_per_second: 0,
            calls_per_source: default_calls_per_source(),
            calls_per_source_burst: default_calls_per_source_burst(),
            requests_per_source: default_requests_per_source(),
            requests_per_source_burst: default_requests_per_source_burst(),
            ipv6_prefix_len: default_ipv6_prefix_len(),
            block_after: default_block_after(),
            block_after_unknown_numbers: default_block_after_unknown_numbers(),
            block_window_secs: default_block_window_secs(),
            block_secs: default_block_secs(),
            max_sources: default_max_sources(),
            emergency_reserve_percent: default_emergency_reserve_percent(),
            handshake_timeout_secs: default_handshake_timeout_secs(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn matches(self, ip: IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::Ipv4, IpAddr::V4(_)) | (Family::Ipv6, IpAddr::V6(_))
        )
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// Certificate and key of this host's gateway half, and the CA both halves trust
/// (`sgw pki init` makes them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Call policy (authentication is `[auth]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Called numbers that are emergency calls: they pass the rate limits, use the reserve of
    /// `max_calls` and pre-empt other calls when it is full.
    #[serde(default)]
    pub emergency_numbers: Vec<String>,
    /// Access rules (`[[policy.rules]]`), first match wins; see [`crate::engine::access`].
    #[serde(default)]
    pub rules: Vec<crate::engine::access::RuleConfig>,
}

impl PolicyConfig {
    /// The compiled access rules. A configuration from [`Config::from_toml_str`] always
    /// compiles; one built otherwise that does not denies every call rather than none.
    pub fn access_policy(&self) -> crate::engine::access::AccessPolicy {
        crate::engine::access::AccessPolicy::compile(&self.rules)
            .unwrap_or_else(|_| crate::engine::access::AccessPolicy::deny_all())
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `gw2.media.port_min`; empty for the document as a whole.
    pub key: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found (a syntax or type error stops at the first; the semantic checks report
/// them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "line {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// 1-based line of byte offset `pos` in `text`.
fn line_of(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()
        .get(..pos)
        .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
        .saturating_add(1)
}

/// Every key of the document with where its key and value are, in document order.
struct KeyIndex {
    entries: Vec<(String, Range<usize>, Range<usize>)>,
}

impl KeyIndex {
    fn new(doc: &toml::de::DeTable<'_>) -> Self {
        let mut entries = Vec::new();
        Self::walk_table(doc, "", &mut entries);
        entries.sort_by_key(|(_, k, _)| k.start);
        KeyIndex { entries }
    }

    fn walk_table(
        t: &toml::de::DeTable<'_>,
        prefix: &str,
        out: &mut Vec<(String, Range<usize>, Range<usize>)>,
    ) {
        for (k, v) in t.iter() {
            let path = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            out.push((path.clone(), k.span(), v.span()));
            Self::walk_value(v.get_ref(), &path, out);
        }
    }

    fn walk_value(
        v: &toml::de::DeValue<'_>,
        path: &str,
        out: &mut Vec<(String, Range<usize>, Range<usize>)>,
    ) {
        if let Some(t) = v.as_table() {
            Self::walk_table(t, path, out);
        } else if let Some(a) = v.as_array() {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push((p.clone(), item.span(), item.span()));
                Self::walk_value(item.get_ref(), &p, out);
            }
        }
    }

    /// The key an error at `span` is about: the innermost key or value containing its start,
    /// else the last key before it.
    fn key_at(&self, span: &Range<usize>) -> Option<&str> {
        let pos = span.start;
        let within = |r: &Range<usize>| r.start <= pos && pos < r.end.max(r.start + 1);
        self.entries
            .iter()
            .filter(|(_, k, v)| within(k) || within(v))
            .min_by_key(|(_, k, v)| {
                let r = if within(k) { k } else { v };
                r.end.saturating_sub(r.start)
            })
            .or_else(|| self.entries.iter().rev().find(|(_, k, _)| k.start <= pos))
            .map(|(p, _, _)| p.as_str())
    }

    /// Where `path` is written, or the closest enclosing key that is.
    fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut p = path;
        loop {
            if let Some((_, k, _)) = self.entries.iter().find(|(q, _, _)| q == p) {
                return Some(k.clone());
            }
            p = p.get(..p.rfind(['.', '['])?)?;
        }
    }
}

impl Config {
    /// Parses and checks a configuration. Errors carry key paths and lines.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let one = |key: String, line: Option<usize>, message: String| {
            ConfigErrors(vec![ConfigError { key, line, message }])
        };
        if text.len() > MAX_CONFIG_LEN {
            return Err(one(
                String::new(),
                None,
                format!("file larger than {MAX_CONFIG_LEN} bytes"),
            ));
        }
        let doc = toml::de::DeTable::parse(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            one(String::new(), line, e.message().trim().to_owned())
        })?;
        let index = KeyIndex::new(doc.get_ref());
        let unsupported: Vec<ConfigError> = index
            .entries
            .iter()
            .filter_map(|(path, k, _)| {
                let (_, why) = NOT_SUPPORTED_YET.iter().find(|(key, _)| key == path)?;
                Some(ConfigError {
                    key: path.clone(),
                    line: Some(line_of(text, k.start)),
                    message: format!("not supported yet: {path} ({why}); remove it"),
                })
            })
            .collect();
        if !unsupported.is_empty() {
            return Err(ConfigErrors(unsupported));
        }
        let config: Config = toml::from_str(text).map_err(|e| {
            let span = e.span();
            let key = span
                .as_ref()
                .and_then(|s| index.key_at(s))
                .unwrap_or_default()
                .to_owned();
            let line = span.map(|s| line_of(text, s.start));
            one(key, line, e.message().trim().to_owned())
        })?;
        let problems = config.check();
        if problems.is_empty() {
            return Ok(config);
        }
        Err(ConfigErrors(
            problems
                .into_iter()
                .map(|(key, message)| ConfigError {
                    line: index.span_of(&key).map(|s| line_of(text, s.start)),
                    key,
                    message,
                })
                .collect(),
        ))
    }

    /// The checks serde cannot express: (key path, message) for each problem.
    fn check(&self) -> Vec<(String, String)> {
        let mut p = Problems::default();
        if self.gw1.is_none() && self.gw2.is_none() {
            p.add("", "neither a [gw2] nor a [gw1] section: nothing to run");
        }
        if let Some(gw2) = &self.gw2 {
            check_gw2(gw2, &mut p);
        }
        if let Some(gw1) = &self.gw1 {
            check_gw1(gw1, &mut p);
        }
        if let (Some(gw2), Some(gw1)) = (&self.gw2, &self.gw1) {
            let (a, b) = (gw2.media.ports(), gw1.media.ports());
            if gw2.media.ip == gw1.media.ip && a.start < b.end && b.start < a.end {
                p.add(
                    "gw1.media.port_min",
                    format!(
                        "port range {}-{} overlaps gw2's {}-{} on the same address {}",
                        gw1.media.port_min,
                        gw1.media.port_max,
                        gw2.media.port_min,
                        gw2.media.port_max,
                        gw1.media.ip
                    ),
                );
            }
        }
        check_policy(&self.policy, &mut p);
        for (key, message) in crate::cdr::check_halves(
            self.gw2.as_ref().and_then(|g| g.records.as_ref()),
            self.gw1.as_ref().and_then(|g| g.records.as_ref()),
        ) {
            p.add(&key, message);
        }
        if let Some(a) = &self.auth {
            check_auth(a, self.gw2.is_some(), &mut p);
        } else if self.policy.access_policy().uses_auth() {
            if let Some(i) = self.policy.rules.iter().position(|r| r.auth.is_some()) {
                p.add(
                    &format!("policy.rules[{i}].auth"),
                    "needs an [auth] section (realm and credentials)",
                );
            }
        }
        if let Some(m) = &self.metrics {
            check_metrics(m, &mut p);
        }
        if let Some(h) = &self.hep {
            check_hep(h, &mut p);
        }
        if let Some(r) = &self.recording {
            if self.gw1.as_ref().is_some_and(|g| g.gw2.len() > 1) {
                p.add(
                    "recording",
                    "not supported yet: [recording] with several GW2s ([[gw1.gw2]])",
                );
            }
            if r.quota_mb == 0 {
                p.add("recording.quota_mb", "must be at least 1 (MiB)");
            }
        }
        if let Some(c) = &self.confidentiality {
            check_confidentiality(c, &mut p);
        }
        p.0
    }
}

fn check_confidentiality(c: &ConfidentialityConfig, p: &mut Problems) {
    if !(5..=1000).contains(&c.cover_interval_ms) {
        p.add(
            "confidentiality.cover_interval_ms",
            format!("{} is not within 5-1000", c.cover_interval_ms),
        );
        return;
    }
    if c.cover_traffic_kbps == 0 {
        return;
    }
    let cover = crate::live::cover::CoverTraffic::new(c.cover_traffic_kbps, c.cover_interval_ms);
    let min = crate::live::cover::MIN_TICK_BYTES;
    if cover.tick_bytes < min {
        let kbps = (min * 8).div_ceil(c.cover_interval_ms as usize);
        p.add(
            "confidentiality.cover_traffic_kbps",
            format!(
                "{} kbit/s gives {} bytes per {} ms tick; at least {min} are needed ({kbps} kbit/s)",
                c.cover_traffic_kbps, cover.tick_bytes, c.cover_interval_ms
            ),
        );
    }
}

#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push((key.to_owned(), message.into()));
    }
}

fn check_media(m: &MediaConfig, section: &str, p: &mut Problems) {
    let key = |k: &str| format!("{section}.media.{k}");
    if m.ip.is_unspecified() || m.ip.is_multicast() {
        p.add(
            &key("ip"),
            format!(
                "{} cannot be advertised in SDP: give the address peers send media to",
                m.ip
            ),
        );
    }
    if m.port_min == 0 {
        p.add(&key("port_min"), "must be at least 1");
    } else if m.port_min > m.port_max {
        p.add(
            &key("port_min"),
            format!("{} is above port_max {}", m.port_min, m.port_max),
        );
    } else if m.port_max - m.port_min < 1 {
        p.add(
            &key("port_max"),
            "the range needs at least 2 ports (RTP and RTCP)",
        );
    }
    let (lo, hi) = RELATCH_IDLE_MS_RANGE;
    if !(lo..=hi).contains(&m.relatch_idle_ms) {
        p.add(
            &key("relatch_idle_ms"),
            format!(
                "{} is outside {lo}-{hi}: a shorter silence would let an outsider take a stream \
                 between the packets of a live one",
                m.relatch_idle_ms
            ),
        );
    }
    if m.port_min % 2 == 1 {
        p.add(
            &key("port_min"),
            format!(
                "{} is odd: RTP uses even ports, RTCP the next odd one (RFC 3550 §11)",
                m.port_min
            ),
        );
    }
}

fn check_gw2(g: &Gw2Config, p: &mut Problems) {
    if g.sip_udp.is_empty() && g.sip_tcp.is_empty() && g.sip_tls.is_empty() {
        p.add("gw2", "no SIP listener: set sip_udp, sip_tcp or sip_tls");
    }
    let tls_out = g.outside_transport == Some(Transport::Tls);
    if tls_out {
        if g.outside_next_hop.is_none() {
            p.add("gw2.outside_transport", "tls needs outside_next_hop");
        }
        match &g.outside_tls_server_name {
            None => p.add(
                "gw2.outside_tls_server_name",
                "needed by outside_transport = \"tls\"",
            ),
            Some(n) if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() => p.add(
                "gw2.outside_tls_server_name",
                format!("{n:?} is not a DNS name or IP address"),
            ),
            Some(_) => {}
        }
        if g.outside_tls_ca.is_none() {
            p.add(
                "gw2.outside_tls_ca",
                "needed by outside_transport = \"tls\"",
            );
        }
        if g.outside_tls_cert.is_some() != g.outside_tls_key.is_some() {
            p.add(
                "gw2.outside_tls_cert",
                "outside_tls_cert and outside_tls_key go together",
            );
        }
    } else {
        for (key, set) in [
            (
                "gw2.outside_tls_server_name",
                g.outside_tls_server_name.is_some(),
            ),
            ("gw2.outside_tls_ca", g.outside_tls_ca.is_some()),
            ("gw2.outside_tls_cert", g.outside_tls_cert.is_some()),
            ("gw2.outside_tls_key", g.outside_tls_key.is_some()),
        ] {
            if set {
                p.add(key, "only used with outside_transport = \"tls\"");
            }
        }
    }
    match (g.sip_tls.is_empty(), &g.sip_tls_cert, &g.sip_tls_key) {
        (false, None, _) => p.add("gw2.sip_tls", "needs sip_tls_cert and sip_tls_key"),
        (false, Some(_), None) => p.add("gw2.sip_tls_key", "needed by sip_tls"),
        (true, Some(_), _) => p.add("gw2.sip_tls_cert", "set without a sip_tls listener"),
        (true, None, Some(_)) => p.add("gw2.sip_tls_key", "set without a sip_tls listener"),
        _ => {}
    }
    if g.tunnel_listen.port() == 0 {
        p.add(
            "gw2.tunnel_listen",
            "needs a fixed port: GW1 dials it and the firewall opens it",
        );
    }
    check_media(&g.media, "gw2", p);
    if let Some(r) = &g.registration {
        check_registration(r, g, p);
    }
    let l = &g.limits;
    if l.max_calls == 0 {
        p.add("gw2.limits.max_calls", "must be at least 1");
    }
    for (key, v) in [
        ("gw2.limits.max_tcp_connections", l.max_tcp_connections),
        ("gw2.limits.max_tcp_per_source", l.max_tcp_per_source),
        ("gw2.limits.tcp_idle_timeout_secs", l.tcp_idle_timeout_secs),
        ("gw2.limits.block_window_secs", l.block_window_secs),
        ("gw2.limits.block_secs", l.block_secs),
        ("gw2.limits.max_sources", l.max_sources),
        (
            "gw2.limits.handshake_timeout_secs",
            l.handshake_timeout_secs,
        ),
    ] {
        if v == 0 {
            p.add(key, "must be at least 1");
        }
    }
    for (key, rate, burst) in [
        (
            "gw2.limits.calls_per_source_burst",
            l.calls_per_source,
            l.calls_per_source_burst,
        ),
        (
            "gw2.limits.requests_per_source_burst",
            l.requests_per_source,
            l.requests_per_source_burst,
        ),
    ] {
        if rate > 0 && burst < rate {
            p.add(
                key,
                format!(
                    "{burst} is below the rate {rate} (a burst is at least one second's worth)"
                ),
            );
        }
    }
    if l.calls_per_source > 0
        && l.requests_per_source > 0
        && l.requests_per_source < l.calls_per_source
    {
        p.add(
            "gw2.limits.requests_per_source",
            format!(
                "{} is below calls_per_source {} (every call is a request)",
                l.requests_per_source, l.calls_per_source
            ),
        );
    }
    if !(16..=128).contains(&l.ipv6_prefix_len) {
        p.add(
            "gw2.limits.ipv6_prefix_len",
            format!("{} is outside 16..=128", l.ipv6_prefix_len),
        );
    }
    if l.emergency_reserve_percent > 50 {
        p.add(
            "gw2.limits.emergency_reserve_percent",
            format!("{} is above 50", l.emergency_reserve_percent),
        );
    }
    if l.handshake_timeout_secs > 300 {
        p.add(
            "gw2.limits.handshake_timeout_secs",
            format!("{} is above 300", l.handshake_timeout_secs),
        );
    }
    if l.max_tcp_per_source > l.max_tcp_connections {
        p.add(
            "gw2.limits.max_tcp_per_source",
            format!(
                "{} is above max_tcp_connections {}",
                l.max_tcp_per_source, l.max_tcp_connections
            ),
        );
    }
    if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&l.max_message_size) {
        p.add(
            "gw2.limits.max_message_size",
            format!(
                "{} is outside {MIN_MESSAGE_SIZE}..={MAX_MESSAGE_SIZE}",
                l.max_message_size
            ),
        );
    }
}

fn check_tunnel(tunnel: &str, name: &str, key: &str, p: &mut Problems) {
    match tunnel.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port != 0) => {}
        _ => p.add(
            &format!("{key}tunnel"),
            format!("{tunnel:?} is not host:port (IPv6 as [addr]:port)"),
        ),
    }
    if rustls::pki_types::ServerName::try_from(name).is_err() {
        p.add(
            &format!("{key}tunnel_server_name"),
            format!("{name:?} is not a DNS name or IP address"),
        );
    }
}

/// The GW2s of `[gw1]`: one (`tunnel`, `tunnel_server_name`) or several (`[[gw1.gw2]]`), and
/// what several GW2s do not support yet.
fn check_gw1_peers(g: &Gw1Config, p: &mut Problems) {
    if g.gw2.is_empty() {
        match (&g.tunnel, &g.tunnel_server_name) {
            (Some(t), Some(n)) => check_tunnel(t, n, "gw1.", p),
            (None, _) => p.add(
                "gw1",
                "missing field `tunnel` (GW2's tunnel address; several GW2s: [[gw1.gw2]])",
            ),
            (Some(_), None) => p.add(
                "gw1",
                "missing field `tunnel_server_name` (the name on GW2's certificate)",
            ),
        }
        return;
    }
    for key in [
        g.tunnel.as_ref().map(|_| "gw1.tunnel"),
        g.tunnel_server_name
            .as_ref()
            .map(|_| "gw1.tunnel_server_name"),
    ]
    .into_iter()
    .flatten()
    {
        p.add(
            key,
            "give GW2's tunnel either here (one GW2) or in [[gw1.gw2]] (several), not both",
        );
    }
    if g.gw2.len() > MAX_GW2_PEERS {
        p.add(
            "gw1.gw2",
            format!("{} GW2s: at most {MAX_GW2_PEERS}", g.gw2.len()),
        );
    }
    for (i, peer) in g.gw2.iter().enumerate() {
        let key = format!("gw1.gw2[{i}].");
        check_tunnel(&peer.tunnel, &peer.tunnel_server_name, &key, p);
        if g.gw2.iter().take(i).any(|q| q.tunnel == peer.tunnel) {
            p.add(
                &format!("{key}tunnel"),
                format!("{} is listed twice", peer.tunnel),
            );
        }
    }
    if g.gw2.len() < 2 {
        return;
    }
    let several = "with several GW2s ([[gw1.gw2]])";
    if g.protocol == InsideProtocol::H323 {
        p.add(
            "gw1.protocol",
            format!("not supported yet: protocol = \"h323\" {several}"),
        );
    }
    if g.gatekeeper.is_some() {
        p.add(
            "gw1.gatekeeper",
            format!("not supported yet: [gw1.gatekeeper] {several}"),
        );
    }
    if g.records.is_some() {
        p.add(
            "gw1.records",
            format!("not supported yet: [gw1.records] {several} (one record chain per GW1)"),
        );
    }
    if g.transport != Transport::Udp {
        p.add(
            "gw1.transport",
            format!(
                "not supported yet: transport = \"{}\" {several}",
                g.transport
            ),
        );
    }
    let total = u32::from(g.media.port_max).saturating_sub(u32::from(g.media.port_min)) + 1;
    let n = u32::try_from(g.gw2.len()).unwrap_or(u32::MAX);
    if g.media.port_max >= g.media.port_min && (total / n) & !1 < MIN_PORTS_PER_GW2 {
        p.add(
            "gw1.media.port_max",
            format!("{total} ports shared by {n} GW2s: each needs at least {MIN_PORTS_PER_GW2}"),
        );
    }
}

fn check_gw1(g: &Gw1Config, p: &mut Problems) {
    check_gw1_peers(g, p);
    for (key, ip) in [
        ("gw1.sip_bind", g.sip_bind.ip()),
        ("gw1.next_hop", g.next_hop.ip()),
        ("gw1.media.ip", g.media.ip),
    ] {
        if !g.family.matches(ip) {
            p.add(
                key,
                format!("{ip} is not an {} address (gw1.family)", g.family),
            );
        }
    }
    if g.next_hop.ip().is_unspecified() || g.next_hop.port() == 0 {
        p.add(
            "gw1.next_hop",
            format!("{} is not an address to send to", g.next_hop),
        );
    }
    if !GW1_TRANSPORTS.contains(&g.transport) {
        p.add(
            "gw1.transport",
            format!(
                "not supported yet: gw1.transport = \"{}\" (GW1 speaks SIP over UDP to the inside)",
                g.transport
            ),
        );
    }
    check_media(&g.media, "gw1", p);
    if let Some(gk) = &g.gatekeeper {
        check_gatekeeper(gk, g.family, p);
    }
}

fn check_metrics(m: &MetricsConfig, p: &mut Problems) {
    if m.listen.port() == 0 {
        p.add(
            "metrics.listen",
            "needs a fixed port: Prometheus is configured with it",
        );
    }
    if m.listen.ip().is_multicast() {
        p.add(
            "metrics.listen",
            format!("{} is a multicast address", m.listen.ip()),
        );
    }
}

fn check_hep(h: &HepConfig, p: &mut Problems) {
    if h.collector.port() == 0 || h.collector.ip().is_unspecified() {
        p.add(
            "hep.collector",
            format!("{} is not an address a collector listens on", h.collector),
        );
    }
}

fn check_policy(pol: &PolicyConfig, p: &mut Problems) {
    for (i, n) in pol.emergency_numbers.iter().enumerate() {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit() || b"+*#".contains(&b)) {
            p.add(
                &format!("policy.emergency_numbers[{i}]"),
                format!("{n:?} is not a dialable number (digits, +, *, #)"),
            );
        }
    }
    if let Err(problems) = crate::engine::access::AccessPolicy::compile(&pol.rules) {
        for (key, message) in problems {
            p.add(&key, message);
        }
    }
}

mod auth;
mod gatekeeper;
use auth::{check_auth, check_registration};
pub use auth::{AuthConfig, RegistrationSection};
use gatekeeper::check_gatekeeper;
pub use gatekeeper::GatekeeperSection;

#[cfg(test)]
mod tests;
