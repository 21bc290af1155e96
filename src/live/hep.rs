//! HEP v3 export (`[hep]`): every SIP message and H.225.0 PDU a half receives or sends, on its
//! side (GW2 outside, GW1 inside), goes to a HEP collector (Homer, heplify-server, sngrep
//! `-L`), as the HEP/EEP v3 specification of the sipcapture project lays it out.
//!
//! # Wire format
//!
//! A packet is `HEP3`, its total length (16 bits, network order), then chunks, each a vendor id
//! (0, the generic chunks), a type, a length (header included, 16 bits) and the value:
//!
//! | type | value |
//! |------|-------|
//! | 0x0001 | IP family: 2 IPv4, 10 IPv6 (8 bits) |
//! | 0x0002 | IP protocol: 17 UDP, 6 TCP (8 bits) |
//! | 0x0003 / 0x0004 | IPv4 source / destination |
//! | 0x0005 / 0x0006 | IPv6 source / destination |
//! | 0x0007 / 0x0008 | source / destination port (16 bits) |
//! | 0x0009 / 0x000a | time: seconds / microseconds (32 bits each) |
//! | 0x000b | protocol type (8 bits): 1 SIP, [`PROTO_H323`] for H.225.0 |
//! | 0x000c | capture agent id (32 bits): `agent_id` |
//! | 0x000e | authentication key: `password`, when set |
//! | 0x000f | the payload: the SIP message, or the H.225.0 PDU in its TPKT, as on the wire |
//! | 0x0011 | correlation id: the call id, when the message belongs to a call |
//!
//! # Correlation
//!
//! The correlation id is the gateway's call id as decimal text: the Meta call reference,
//! which both halves share for a call (GW2 allocates it for a call from outside, GW1 for one
//! from inside, and the other half learns it from the Meta Setup). So a call's outside leg
//! (exported by GW2) and inside leg (exported by GW1) carry the same correlation id even when
//! the halves run on two hosts, and it is the id in the logs, the call records, `sgw ctl calls`
//! and the metrics. A message no call holds (an OPTIONS, a refused INVITE) has no correlation
//! chunk. Call ids are reused after a restart: a collector keeping weeks of data should group
//! by correlation id and time.
//!
//! # Never slowing the call path
//!
//! The drivers queue each message (at most [`QUEUE`] waiting; more are dropped and counted per
//! half as `hep_dropped`, next to `hep_queued`); one task encodes and sends them. A send that
//! fails and a message too large for one HEP packet (over 65535 bytes with its chunks) are
//! counted for the process, printed at exit as `stats hep {"sent":..,"send_failures":..,
//! "too_large":..}`. Over TCP the task connects, reconnects after a failure (at most once a
//! second, each attempt and write bounded to 2 s) and counts what arrives while it is not
//! connected as send failures. Messages still queued when the gateway stops are not sent.

use super::tap::{Seen, Sink};
use crate::config::{HepConfig, HepTransport};
use crate::engine::{Protocol, Transport};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Messages waiting to be sent to the collector, at most (per process).
pub const QUEUE: usize = 8192;
/// HEP protocol type of SIP.
pub const PROTO_SIP: u8 = 0x01;
/// HEP protocol type used for H.225.0: 0x0b, an H.32x entry of the HEP type table as we read it
/// (not checked against a stored copy of the specification; sngrep ignores non-SIP types).
pub const PROTO_H323: u8 = 0x0b;

const IPV4: u8 = 2;
const IPV6: u8 = 10;
const UDP: u8 = 17;
const TCP: u8 = 6;

/// Generic chunk types (vendor 0).
pub mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const IPV4_SRC: u16 = 0x0003;
    pub const IPV4_DST: u16 = 0x0004;
    pub const IPV6_SRC: u16 = 0x0005;
    pub const IPV6_DST: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TIME_SEC: u16 = 0x0009;
    pub const TIME_USEC: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const AGENT_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// One message to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepPacket {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IP protocol of the original message: UDP or TCP.
    pub tcp: bool,
    pub time: Duration,
    pub proto_type: u8,
    pub agent_id: u32,
    pub password: Option<String>,
    pub correlation: Option<String>,
    pub payload: Bytes,
}

/// Why a message was not encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("HEP packet of {0} bytes is over 65535")]
    TooLarge(usize),
    #[error("source and destination are not of the same IP family")]
    MixedFamily,
}

fn put_chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) -> Result<(), EncodeError> {
    let len = value.len() + 6;
    let len16 = u16::try_from(len).map_err(|_| EncodeError::TooLarge(len))?;
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len16.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Encodes one HEP v3 packet.
pub fn encode(p: &HepPacket) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(p.payload.len() + 128);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]);
    match (p.src.ip(), p.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put_chunk(&mut out, chunk::IP_FAMILY, &[IPV4])?;
            put_chunk(&mut out, chunk::IP_PROTO, &[if p.tcp { TCP } else { UDP }])?;
            put_chunk(&mut out, chunk::IPV4_SRC, &s.octets())?;
            put_chunk(&mut out, chunk::IPV4_DST, &d.octets())?;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put_chunk(&mut out, chunk::IP_FAMILY, &[IPV6])?;
            put_chunk(&mut out, chunk::IP_PROTO, &[if p.tcp { TCP } else { UDP }])?;
            put_chunk(&mut out, chunk::IPV6_SRC, &s.octets())?;
            put_chunk(&mut out, chunk::IPV6_DST, &d.octets())?;
        }
        _ => return Err(EncodeError::MixedFamily),
    }
    put_chunk(&mut out, chunk::SRC_PORT, &p.src.port().to_be_bytes())?;
    put_chunk(&mut out, chunk::DST_PORT, &p.dst.port().to_be_bytes())?;
    let secs = u32::try_from(p.time.as_secs()).unwrap_or(u32::MAX);
    put_chunk(&mut out, chunk::TIME_SEC, &secs.to_be_bytes())?;
    put_chunk(
        &mut out,
        chunk::TIME_USEC,
        &p.time.subsec_micros().to_be_bytes(),
    )?;
    put_chunk(&mut out, chunk::PROTO_TYPE, &[p.proto_type])?;
    put_chunk(&mut out, chunk::AGENT_ID, &p.agent_id.to_be_bytes())?;
    if let Some(pw) = &p.password {
        put_chunk(&mut out, chunk::AUTH_KEY, pw.as_bytes())?;
    }
    if let Some(c) = &p.correlation {
        put_chunk(&mut out, chunk::CORRELATION_ID, c.as_bytes())?;
    }
    put_chunk(&mut out, chunk::PAYLOAD, &p.payload)?;
    let total = u16::try_from(out.len()).map_err(|_| EncodeError::TooLarge(out.len()))?;
    if let Some(len) = out.get_mut(4..6) {
        len.copy_from_slice(&total.to_be_bytes());
    }
    Ok(out)
}

/// The chunks of a HEP v3 packet, (vendor, type, value) in order; `None` when it is not one
/// (bad magic, lengths that do not add up). For tests and for checking a collector's input.
pub fn decode(packet: &[u8]) -> Option<Vec<(u16, u16, Vec<u8>)>> {
    let be16 = |b: &[u8], at: usize| -> Option<u16> {
        let s = b.get(at..at + 2)?;
        Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
    };
    if packet.get(..4)? != b"HEP3" {
        return None;
    }
    let total = usize::from(be16(packet, 4)?);
    if total != packet.len() {
        return None;
    }
    let mut chunks = Vec::new();
    let mut at = 6;
    while at < total {
        let vendor = be16(packet, at)?;
        let kind = be16(packet, at + 2)?;
        let len = usize::from(be16(packet, at + 4)?);
        if len < 6 {
            return None;
        }
        let value = packet.get(at + 6..at + len)?;
        chunks.push((vendor, kind, value.to_vec()));
        at += len;
    }
    Some(chunks)
}

/// What the export counted, per process.
#[derive(Debug, Default)]
pub struct HepCounters {
    pub sent: AtomicU64,
    pub send_failures: AtomicU64,
    pub too_large: AtomicU64,
}

/// The export of one process: the drivers' queue and what the sending task counted.
#[derive(Debug, Clone)]
pub struct Hep {
    pub sink: Sink<Seen>,
    pub counters: Arc<HepCounters>,
}

/// Starts the sending task of `[hep]`; the drivers offer messages to the returned sink.
pub async fn start(cfg: &HepConfig) -> std::io::Result<Hep> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let counters = Arc::new(HepCounters::default());
    let out = Output::new(cfg).await?;
    tokio::spawn(send_loop(rx, out, cfg.clone(), counters.clone()));
    Ok(Hep {
        sink: Sink::new(super::tap::Tx::Task(tx)),
        counters,
    })
}

enum Output {
    Udp(tokio::net::UdpSocket),
    Tcp {
        collector: SocketAddr,
        stream: Option<tokio::net::TcpStream>,
        last_try: Option<tokio::time::Instant>,
    },
}

impl Output {
    async fn new(cfg: &HepConfig) -> std::io::Result<Self> {
        Ok(match cfg.transport {
            HepTransport::Udp => {
                let local: SocketAddr = if cfg.collector.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = tokio::net::UdpSocket::bind(local).await?;
                s.connect(cfg.collector).await?;
                Output::Udp(s)
            }
            HepTransport::Tcp => Output::Tcp {
                collector: cfg.collector,
                stream: None,
                last_try: None,
            },
        })
    }

    async fn send(&mut self, packet: &[u8]) -> bool {
        match self {
            Output::Udp(s) => s.send(packet).await.is_ok(),
            Output::Tcp {
                collector,
                stream,
                last_try,
            } => {
                if stream.is_none() {
                    let now = tokio::time::Instant::now();
                    if last_try.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
                        return false;
                    }
                    *last_try = Some(now);
                    let connect = tokio::net::TcpStream::connect(*collector);
                    if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                        let _ = s.set_nodelay(true);
                        *stream = Some(s);
                    }
                }
                let Some(s) = stream else { return false };
                let write = s.write_all(packet);
                match tokio::time::timeout(Duration::from_secs(2), write).await {
                    Ok(Ok(())) => true,
                    _ => {
                        *stream = None;
                        false
                    }
                }
            }
        }
    }
}

async fn send_loop(
    mut rx: mpsc::Receiver<Seen>,
    mut out: Output,
    cfg: HepConfig,
    counters: Arc<HepCounters>,
) {
    while let Some(seen) = rx.recv().await {
        let Some(packet) = packet_of(&seen, &cfg) else {
            continue;
        };
        match encode(&packet) {
            Ok(bytes) => {
                if out.send(&bytes).await {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.send_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                counters.too_large.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The HEP packet of one observed message (`None` for what is not exported).
pub fn packet_of(seen: &Seen, cfg: &HepConfig) -> Option<HepPacket> {
    let proto_type = match seen.protocol {
        Protocol::Sip => PROTO_SIP,
        Protocol::H225 => PROTO_H323,
        _ => return None,
    };
    Some(HepPacket {
        src: seen.src,
        dst: seen.dst,
        tcp: seen.transport != Transport::Udp,
        time: seen.at.duration_since(UNIX_EPOCH).unwrap_or_default(),
        proto_type,
        agent_id: cfg.agent_id,
        password: cfg.password.clone(),
        correlation: seen.call.map(|c| c.to_string()),
        payload: seen.payload.clone(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn packet() -> HepPacket {
        HepPacket {
            src: "192.0.2.1:5060".parse().unwrap(),
            dst: "198.51.100.2:5080".parse().unwrap(),
            tcp: false,
            time: Duration::new(1_700_000_000, 123_456_789),
            proto_type: PROTO_SIP,
            agent_id: 2001,
            password: Some("myHep".into()),
            correlation: Some("42".into()),
            payload: Bytes::from_static(b"OPTIONS sip:a SIP/2.0\r\n\r\n"),
        }
    }

    fn value(chunks: &[(u16, u16, Vec<u8>)], kind: u16) -> Vec<u8> {
        chunks
            .iter()
            .find(|(v, k, _)| *v == 0 && *k == kind)
            .map(|(_, _, d)| d.clone())
            .unwrap()
    }

    #[test]
    fn encodes_every_chunk_and_decodes_back() {
        let p = packet();
        let bytes = encode(&p).unwrap();
        assert_eq!(&bytes[..4], b"HEP3");
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[4], bytes[5]])),
            bytes.len()
        );
        let c = decode(&bytes).unwrap();
        assert_eq!(value(&c, chunk::IP_FAMILY), [2]);
        assert_eq!(value(&c, chunk::IP_PROTO), [17]);
        assert_eq!(value(&c, chunk::IPV4_SRC), [192, 0, 2, 1]);
        assert_eq!(value(&c, chunk::IPV4_DST), [198, 51, 100, 2]);
        assert_eq!(value(&c, chunk::SRC_PORT), 5060u16.to_be_bytes());
        assert_eq!(value(&c, chunk::DST_PORT), 5080u16.to_be_bytes());
        assert_eq!(value(&c, chunk::TIME_SEC), 1_700_000_000u32.to_be_bytes());
        assert_eq!(value(&c, chunk::TIME_USEC), 123_456u32.to_be_bytes());
        assert_eq!(value(&c, chunk::PROTO_TYPE), [1]);
        assert_eq!(value(&c, chunk::AGENT_ID), 2001u32.to_be_bytes());
        assert_eq!(value(&c, chunk::AUTH_KEY), b"myHep");
        assert_eq!(value(&c, chunk::CORRELATION_ID), b"42");
        assert_eq!(value(&c, chunk::PAYLOAD), p.payload.to_vec());
    }

    #[test]
    fn ipv6_tcp_without_optional_chunks() {
        let mut p = packet();
        p.src = "[2001:db8::1]:1720".parse().unwrap();
        p.dst = "[2001:db8::2]:40000".parse().unwrap();
        p.tcp = true;
        p.password = None;
        p.correlation = None;
        p.proto_type = PROTO_H323;
        let c = decode(&encode(&p).unwrap()).unwrap();
        assert_eq!(value(&c, chunk::IP_FAMILY), [10]);
        assert_eq!(value(&c, chunk::IP_PROTO), [6]);
        assert_eq!(value(&c, chunk::IPV6_SRC).len(), 16);
        assert_eq!(value(&c, chunk::PROTO_TYPE), [PROTO_H323]);
        assert!(c.iter().all(|(_, k, _)| *k != chunk::AUTH_KEY));
        assert!(c.iter().all(|(_, k, _)| *k != chunk::CORRELATION_ID));
    }

    #[test]
    fn refuses_what_does_not_fit_or_mixes_families() {
        let mut p = packet();
        p.payload = Bytes::from(vec![b'x'; 65_535]);
        assert!(matches!(encode(&p), Err(EncodeError::TooLarge(_))));
        let mut p = packet();
        p.dst = "[2001:db8::2]:5060".parse().unwrap();
        assert_eq!(encode(&p), Err(EncodeError::MixedFamily));
    }

    /// A one-half configuration for the section tests.
    pub const BASE: &str = r#"[gw2]
sip_udp = ["127.0.0.1:5060"]
tunnel_listen = "127.0.0.1:7001"

[gw2.media]
ip = "127.0.0.1"
port_min = 20000
port_max = 20099
"#;

    #[test]
    fn hep_section_defaults_and_errors() {
        use crate::config::Config;
        assert_eq!(Config::from_toml_str(BASE).unwrap().hep, None);
        let text = format!("{BASE}\n[hep]\ncollector = \"127.0.0.1:9060\"\n");
        assert_eq!(
            Config::from_toml_str(&text).unwrap().hep,
            Some(HepConfig {
                collector: "127.0.0.1:9060".parse().unwrap(),
                agent_id: crate::config::DEFAULT_HEP_AGENT_ID,
                password: None,
                transport: HepTransport::Udp,
            })
        );
        let text = format!(
            "{BASE}\n[hep]\ncollector = \"[::1]:9060\"\nagent_id = 7\npassword = \"p\"\ntransport = \"tcp\"\n"
        );
        let h = Config::from_toml_str(&text).unwrap().hep.unwrap();
        assert_eq!(
            (h.agent_id, h.password.as_deref(), h.transport),
            (7, Some("p"), HepTransport::Tcp)
        );
        for (lines, key, message) in [
            (
                "collector = \"127.0.0.1:0\"",
                "hep.collector",
                "not an address",
            ),
            (
                "collector = \"0.0.0.0:9060\"",
                "hep.collector",
                "not an address",
            ),
            (
                "collector = \"127.0.0.1:9060\"\ntransport = \"sctp\"",
                "hep.transport",
                "unknown variant",
            ),
            (
                "collector = \"127.0.0.1:9060\"\nport = 1",
                "hep.port",
                "unknown field",
            ),
            ("", "hep", "missing field `collector`"),
        ] {
            let text = format!("{BASE}\n[hep]\n{lines}\n");
            let errors = Config::from_toml_str(&text).unwrap_err();
            let e = &errors.errors()[0];
            assert_eq!(e.key.as_str(), key, "{errors}");
            assert!(e.message.contains(message), "{errors}");
        }
    }

    #[test]
    fn a_reload_names_hep_and_recording_changes_as_not_live() {
        use crate::config::Config;
        let old = Config::from_toml_str(BASE).unwrap();
        let text =
            format!("{BASE}\n[hep]\ncollector = \"127.0.0.1:9060\"\n[recording]\ndir = \"/tmp\"\n");
        let new = Config::from_toml_str(&text).unwrap();
        let keys = crate::live::control::not_live_changes(&old, &new);
        assert!(
            keys.contains(&"[hep]") && keys.contains(&"[recording]"),
            "{keys:?}"
        );
    }

    #[test]
    fn decode_refuses_garbage() {
        assert!(decode(b"").is_none());
        assert!(decode(b"HEP2\x00\x06").is_none());
        let mut b = encode(&packet()).unwrap();
        b.pop();
        assert!(decode(&b).is_none());
        // A chunk whose length is under its header.
        assert!(decode(b"HEP3\x00\x0c\x00\x00\x00\x01\x00\x02").is_none());
    }
}
