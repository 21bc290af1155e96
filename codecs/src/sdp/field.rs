//! Typed SDP line values (RFC 8866 section 5) and their one-line parsers and printers.
//!
//! Parsers take the value after `x=` and never panic; printers produce the value only. Neither
//! ever sees a line ending.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Direction, SdpErrorKind, MAX_FORMATS_PER_MEDIA};

/// The network type of o=, c= and a=rtcp; only "IN" is defined (RFC 8866 section 8.2.6).
pub const NETTYPE_IN: &str = "IN";

/// The address type of o=, c= and a=rtcp (RFC 8866 section 8.2.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddrType {
    Ip4,
    Ip6,
    /// Kept as written; its address is a [`Address::Host`].
    Other(String),
}

impl AddrType {
    fn parse(s: &str) -> AddrType {
        if s.eq_ignore_ascii_case("IP4") {
            AddrType::Ip4
        } else if s.eq_ignore_ascii_case("IP6") {
            AddrType::Ip6
        } else {
            AddrType::Other(s.to_owned())
        }
    }

    /// The address type matching an IP address.
    pub fn of(ip: IpAddr) -> AddrType {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }
}

impl fmt::Display for AddrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrType::Ip4 => f.write_str("IP4"),
            AddrType::Ip6 => f.write_str("IP6"),
            AddrType::Other(s) => f.write_str(s),
        }
    }
}

/// A unicast or connection address: an IP literal of the stated family, or a host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Ip(IpAddr),
    /// An FQDN (RFC 8866 allows one in o= and c=), or any token under an unknown address type.
    /// The gateway must resolve or refuse it; this crate never does.
    Host(String),
}

impl Address {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ip(ip) => Some(*ip),
            Address::Host(_) => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(ip) => write!(f, "{ip}"),
            Address::Host(h) => f.write_str(h),
        }
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                // RFC 1123 section 2.1: a label neither starts nor ends with '-'.
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        // All-numeric dotted strings are failed IPv4 literals, not names.
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Strict where it matters: an IP literal must parse and match the address type; anything
/// else must be a syntactically valid host name.
fn parse_address(addrtype: &AddrType, s: &str) -> Result<Address, SdpErrorKind> {
    match addrtype {
        AddrType::Ip4 => {
            if let Ok(v4) = s.parse::<Ipv4Addr>() {
                Ok(Address::Ip(IpAddr::V4(v4)))
            } else if s.contains(':') {
                Err(SdpErrorKind::AddressFamilyMismatch)
            } else if is_hostname(s) {
                Ok(Address::Host(s.to_owned()))
            } else {
                Err(SdpErrorKind::BadAddress)
            }
        }
        AddrType::Ip6 => {
            // Some UAs (sipp among them) write a bracketed literal, as in SIP URIs.
            let unbracketed = s
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse::<Ipv6Addr>().ok());
            if let Some(v6) = unbracketed {
                Ok(Address::Ip(IpAddr::V6(v6)))
            } else if let Ok(v6) = s.parse::<Ipv6Addr>() {
                Ok(Address::Ip(IpAddr::V6(v6)))
            } else if s.parse::<Ipv4Addr>().is_ok() {
                Err(SdpErrorKind::AddressFamilyMismatch)
            } else if !s.contains(':') && is_hostname(s) {
                Ok(Address::Host(s.to_owned()))
            } else {
                Err(SdpErrorKind::BadAddress)
            }
        }
        AddrType::Other(_) => Ok(Address::Host(s.to_owned())),
    }
}

fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split_ascii_whitespace()
}

fn number<T: core::str::FromStr>(s: &str, kind: SdpErrorKind) -> Result<T, SdpErrorKind> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(kind);
    }
    s.parse().map_err(|_| kind)
}

/// Largest RTP payload type: the field has seven bits (RFC 3550 section 5.1).
pub const MAX_PAYLOAD_TYPE: u8 = 127;

/// An RTP payload type: a decimal number in 0-127.
fn payload_type(s: &str) -> Result<u8, SdpErrorKind> {
    number::<u8>(s, SdpErrorKind::BadPayloadType)
        .ok()
        .filter(|pt| *pt <= MAX_PAYLOAD_TYPE)
        .ok_or(SdpErrorKind::BadPayloadType)
}

/// o= (RFC 8866 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    /// Numeric by the RFC, but kept as text: some stacks exceed 64 bits.
    pub session_id: String,
    pub session_version: String,
    pub nettype: String,
    pub addrtype: AddrType,
    pub address: Address,
}

impl Origin {
    /// An `IN` origin for the gateway's own sessions.
    pub fn new(username: &str, session_id: u64, session_version: u64, address: IpAddr) -> Origin {
        Origin {
            username: username.to_owned(),
            session_id: session_id.to_string(),
            session_version: session_version.to_string(),
            nettype: NETTYPE_IN.to_owned(),
            addrtype: AddrType::of(address),
            address: Address::Ip(address),
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Origin, SdpErrorKind> {
        let bad = SdpErrorKind::Malformed("origin");
        let mut t = tokens(s);
        let (Some(username), Some(session_id), Some(session_version), Some(nettype)) =
            (t.next(), t.next(), t.next(), t.next())
        else {
            return Err(bad);
        };
        let (Some(addrtype), Some(address), None) = (t.next(), t.next(), t.next()) else {
            return Err(bad);
        };
        let addrtype = AddrType::parse(addrtype);
        Ok(Origin {
            username: username.to_owned(),
            session_id: session_id.to_owned(),
            session_version: session_version.to_owned(),
            nettype: nettype.to_owned(),
            address: parse_address(&addrtype, address)?,
            addrtype,
        })
    }

    /// Sets the address and its matching address type (nettype becomes IN).
    pub fn set_address(&mut self, ip: IpAddr) {
        self.nettype = NETTYPE_IN.to_owned();
        self.addrtype = AddrType::of(ip);
        self.address = Address::Ip(ip);
    }

    /// The version as a number, when it is one.
    pub fn session_version_number(&self) -> Option<u64> {
        self.session_version.parse().ok()
    }

    /// Adds one to a numeric version (RFC 3264 section 8: every changed offer bumps it).
    /// False, and nothing changes, when the version is not a number or would overflow.
    pub fn increment_version(&mut self) -> bool {
        match self.session_version_number().and_then(|v| v.checked_add(1)) {
            Some(v) => {
                self.session_version = v.to_string();
                true
            }
            None => false,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.nettype,
            self.addrtype,
            self.address
        )
    }
}

/// c= (RFC 8866 section 5.7), also the optional address of a=rtcp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub nettype: String,
    pub addrtype: AddrType,
    pub address: Address,
    /// IPv4 multicast TTL (`/ttl`).
    pub ttl: Option<u8>,
    /// Number of multicast addresses (`/count`).
    pub count: Option<u32>,
}

impl Connection {
    /// A unicast `IN IP4` / `IN IP6` connection.
    pub fn new(ip: IpAddr) -> Connection {
        Connection {
            nettype: NETTYPE_IN.to_owned(),
            addrtype: AddrType::of(ip),
            address: Address::Ip(ip),
            ttl: None,
            count: None,
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Connection, SdpErrorKind> {
        let bad = SdpErrorKind::Malformed("connection");
        let mut t = tokens(s);
        let (Some(nettype), Some(addrtype), Some(address), None) =
            (t.next(), t.next(), t.next(), t.next())
        else {
            return Err(bad);
        };
        Self::from_parts(nettype, addrtype, address)
    }

    fn from_parts(
        nettype: &str,
        addrtype: &str,
        address: &str,
    ) -> Result<Connection, SdpErrorKind> {
        let bad = SdpErrorKind::Malformed("connection");
        let addrtype = AddrType::parse(addrtype);
        let mut parts = address.split('/');
        let host = parts.next().ok_or(bad.clone())?;
        let first = parts.next();
        let second = parts.next();
        if parts.next().is_some() {
            return Err(bad);
        }
        let (ttl, count) = match (&addrtype, first, second) {
            (_, None, _) => (None, None),
            // IPv6 has no TTL: a single suffix is the count (RFC 8866 section 5.7).
            (AddrType::Ip6, Some(c), None) => (None, Some(number(c, bad.clone())?)),
            (AddrType::Ip6, Some(_), Some(_)) => return Err(bad),
            (_, Some(ttl), c) => (
                Some(number(ttl, bad.clone())?),
                c.map(|c| number(c, bad.clone())).transpose()?,
            ),
        };
        if count == Some(0) {
            return Err(bad);
        }
        Ok(Connection {
            nettype: nettype.to_owned(),
            address: parse_address(&addrtype, host)?,
            addrtype,
            ttl,
            count,
        })
    }

    /// Points the connection at a unicast IP, fixing the address type; TTL and count go.
    pub fn set_address(&mut self, ip: IpAddr) {
        *self = Connection::new(ip);
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.nettype, self.addrtype, self.address)?;
        if let Some(ttl) = self.ttl {
            write!(f, "/{ttl}")?;
        }
        if let Some(count) = self.count {
            write!(f, "/{count}")?;
        }
        Ok(())
    }
}

/// t= (RFC 8866 section 5.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
}

impl Timing {
    pub(crate) fn parse(s: &str) -> Result<Timing, SdpErrorKind> {
        let bad = SdpErrorKind::Malformed("timing");
        let mut t = tokens(s);
        let (Some(start), Some(stop), None) = (t.next(), t.next(), t.next()) else {
            return Err(bad);
        };
        Ok(Timing {
            start: number(start, bad.clone())?,
            stop: number(stop, bad)?,
        })
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.start, self.stop)
    }
}

/// b= (RFC 8866 section 5.8), e.g. `AS:64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    pub bwtype: String,
    pub bandwidth: u64,
}

impl Bandwidth {
    pub(crate) fn parse(s: &str) -> Result<Bandwidth, SdpErrorKind> {
        let bad = SdpErrorKind::Malformed("bandwidth");
        let (bwtype, value) = s.trim_end().split_once(':').ok_or(bad.clone())?;
        if bwtype.is_empty() || !bwtype.bytes().all(is_token_char) {
            return Err(bad);
        }
        Ok(Bandwidth {
            bwtype: bwtype.to_owned(),
            bandwidth: number(value, bad)?,
        })
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bwtype, self.bandwidth)
    }
}

/// m= (RFC 8866 section 5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// "audio", "video", "image", "application", ...
    pub media: String,
    pub port: u16,
    /// The `/<number of ports>` suffix.
    pub port_count: Option<u16>,
    /// "RTP/AVP", "RTP/SAVP", "udptl", ...
    pub proto: String,
    /// Formats in preference order; RTP payload type numbers for RTP profiles.
    pub formats: Vec<String>,
}

impl MediaLine {
    pub(crate) fn parse(s: &str) -> Result<MediaLine, SdpErrorKind> {
        let bad = SdpErrorKind::Malformed("media");
        let mut t = tokens(s);
        let (Some(media), Some(port), Some(proto)) = (t.next(), t.next(), t.next()) else {
            return Err(bad);
        };
        let (port, port_count) = match port.split_once('/') {
            Some((p, n)) => (p, Some(number::<u16>(n, bad.clone())?)),
            None => (port, None),
        };
        let port = number(port, SdpErrorKind::BadPort)?;
        if port_count == Some(0) {
            return Err(bad);
        }
        let mut formats = Vec::new();
        for f in t {
            if formats.len() >= MAX_FORMATS_PER_MEDIA {
                return Err(SdpErrorKind::TooManyFormats);
            }
            formats.push(f.to_owned());
        }
        let line = MediaLine {
            media: media.to_owned(),
            port,
            port_count,
            proto: proto.to_owned(),
            formats,
        };
        // Under an RTP profile the formats are payload types (RFC 8866 section 5.14).
        if line.is_rtp() && line.formats.iter().any(|f| payload_type(f).is_err()) {
            return Err(SdpErrorKind::BadPayloadType);
        }
        Ok(line)
    }

    /// True for the RTP profiles (RTP/AVP, RTP/SAVP, RTP/AVPF, RTP/SAVPF, UDP/TLS/RTP/SAVP...).
    pub fn is_rtp(&self) -> bool {
        self.proto.split('/').any(|p| p.eq_ignore_ascii_case("RTP"))
    }

    /// The formats that are RTP payload type numbers (0-127), in order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| payload_type(f).ok())
    }
}

impl fmt::Display for MediaLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt_ in &self.formats {
            write!(f, " {fmt_}")?;
        }
        Ok(())
    }
}

/// a=rtpmap (RFC 8866 section 6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    /// Encoding parameters: the number of audio channels.
    pub channels: Option<u16>,
}

impl Rtpmap {
    pub fn new(payload_type: u8, encoding: &str, clock_rate: u32) -> Rtpmap {
        Rtpmap {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            channels: None,
        }
    }

    fn parse(s: &str) -> Result<Rtpmap, SdpErrorKind> {
        let bad = SdpErrorKind::Malformed("rtpmap");
        let mut t = tokens(s);
        let (Some(pt), Some(enc), None) = (t.next(), t.next(), t.next()) else {
            return Err(bad);
        };
        let payload_type = payload_type(pt)?;
        let mut parts = enc.split('/');
        let encoding = parts.next().filter(|e| !e.is_empty()).ok_or(bad.clone())?;
        // Missing is merely malformed (RFC 4475's "31 LPC"); written, it must be usable.
        let clock_rate =
            number::<u32>(parts.next().ok_or(bad.clone())?, SdpErrorKind::BadClockRate)
                .ok()
                .filter(|hz| *hz > 0)
                .ok_or(SdpErrorKind::BadClockRate)?;
        let channels = parts.next().map(|c| number(c, bad.clone())).transpose()?;
        if parts.next().is_some() || !encoding.bytes().all(is_token_char) {
            return Err(bad);
        }
        Ok(Rtpmap {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
    }

    /// RFC 4733 telephone-event (any clock rate).
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }
}

impl fmt::Display for Rtpmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(c) = self.channels {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// a=fmtp (RFC 8866 section 6.15): format parameters, kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    pub format: String,
    pub params: String,
}

impl Fmtp {
    fn parse(s: &str) -> Result<Fmtp, SdpErrorKind> {
        let s = s.trim_end();
        let (format, params) = match s.split_once([' ', '\t']) {
            Some((f, p)) => (f, p.trim_start()),
            None => (s, ""),
        };
        if format.is_empty() {
            return Err(SdpErrorKind::Malformed("fmtp"));
        }
        Ok(Fmtp {
            format: format.to_owned(),
            params: params.to_owned(),
        })
    }
}

impl fmt::Display for Fmtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.params.is_empty() {
            f.write_str(&self.format)
        } else {
            write!(f, "{} {}", self.format, self.params)
        }
    }
}

/// a=rtcp (RFC 3605): the RTCP port, and optionally its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpAttr {
    pub port: u16,
    pub connection: Option<Connection>,
}

impl RtcpAttr {
    fn parse(s: &str) -> Result<RtcpAttr, SdpErrorKind> {
        let bad = SdpErrorKind::Malformed("rtcp");
        let mut t = tokens(s);
        let port = number(t.next().ok_or(bad.clone())?, SdpErrorKind::BadPort)?;
        let connection = match (t.next(), t.next(), t.next(), t.next()) {
            (None, ..) => None,
            (Some(n), Some(a), Some(addr), None) => Some(Connection::from_parts(n, a, addr)?),
            _ => return Err(bad),
        };
        Ok(RtcpAttr { port, connection })
    }
}

impl fmt::Display for RtcpAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(c) = &self.connection {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// An a= line. The attributes the gateway acts on are typed; the rest are [`Attribute::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Rtpmap(Rtpmap),
    Fmtp(Fmtp),
    /// Packet time in milliseconds (a fractional part is dropped).
    Ptime(u32),
    MaxPtime(u32),
    Direction(Direction),
    Rtcp(RtcpAttr),
    /// Any other attribute: name and optional value (after the first ':').
    Other {
        name: String,
        value: Option<String>,
    },
}

pub(crate) fn is_token_char(b: u8) -> bool {
    // RFC 8866 section 9: token-char.
    matches!(b, 0x21 | 0x23..=0x27 | 0x2a | 0x2b | 0x2d | 0x2e | 0x30..=0x39 | 0x41..=0x5a | 0x5e..=0x7e)
}

fn ptime(s: &str, what: &'static str) -> Result<u32, SdpErrorKind> {
    let bad = SdpErrorKind::Malformed(what);
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    number(int, bad)
}

impl Attribute {
    /// The attribute name as written on the wire.
    pub fn name(&self) -> &str {
        match self {
            Attribute::Rtpmap(_) => "rtpmap",
            Attribute::Fmtp(_) => "fmtp",
            Attribute::Ptime(_) => "ptime",
            Attribute::MaxPtime(_) => "maxptime",
            Attribute::Direction(d) => d.as_str(),
            Attribute::Rtcp(_) => "rtcp",
            Attribute::Other { name, .. } => name,
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Attribute, SdpErrorKind> {
        let (name, value) = match s.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (s.trim_end(), None),
        };
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(SdpErrorKind::Malformed("attribute"));
        }
        let lower = name.to_ascii_lowercase();
        let need = |what| value.ok_or(SdpErrorKind::Malformed(what));
        Ok(match lower.as_str() {
            "rtpmap" => Attribute::Rtpmap(Rtpmap::parse(need("rtpmap")?)?),
            "fmtp" => Attribute::Fmtp(Fmtp::parse(need("fmtp")?)?),
            "ptime" => Attribute::Ptime(ptime(need("ptime")?, "ptime")?),
            "maxptime" => Attribute::MaxPtime(ptime(need("maxptime")?, "maxptime")?),
            "rtcp" => Attribute::Rtcp(RtcpAttr::parse(need("rtcp")?)?),
            "sendrecv" | "sendonly" | "recvonly" | "inactive" => {
                if value.is_some() {
                    return Err(SdpErrorKind::Malformed("direction"));
                }
                Attribute::Direction(Direction::from_name(&lower).unwrap_or_default())
            }
            _ => Attribute::Other {
                name: name.to_owned(),
                value: value.map(|v| v.trim_end().to_owned()),
            },
        })
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Rtpmap(r) => write!(f, "rtpmap:{r}"),
            Attribute::Fmtp(x) => write!(f, "fmtp:{x}"),
            Attribute::Ptime(p) => write!(f, "ptime:{p}"),
            Attribute::MaxPtime(p) => write!(f, "maxptime:{p}"),
            Attribute::Direction(d) => f.write_str(d.as_str()),
            Attribute::Rtcp(r) => write!(f, "rtcp:{r}"),
            Attribute::Other { name, value: None } => f.write_str(name),
            Attribute::Other {
                name,
                value: Some(v),
            } => write!(f, "{name}:{v}"),
        }
    }
}
