//! The capture writer for `sgw replay --out`: synthesizes IPv4/IPv6 + UDP/TCP packets with
//! valid lengths and checksums (etherparse's `PacketBuilder`) and writes them to a pcap file
//! (pcap-file's writer, nanosecond timestamps, Ethernet or raw IP).
//!
//! TCP: the first write on a connection emits a synthetic handshake (SYN, SYN-ACK, ACK) from the
//! writer of that first payload, so Wireshark follows the stream from its start; each direction
//! then gets consecutive sequence numbers, and every data segment acknowledges all the peer has
//! sent. [`CaptureWriter::close_tcp`] writes the FIN exchange and forgets the connection.
//! Payloads over [`MAX_TCP_SEGMENT`] bytes are split so no IP packet exceeds 65535 bytes.
//!
//! Never panics; memory grows with the number of open TCP connections only (a few words each).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep, TcpHeader};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

/// Largest UDP payload written (65535 - 20 IPv4 header - 8 UDP header), for either IP family.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// Largest TCP payload in one written segment; longer writes are split.
pub const MAX_TCP_SEGMENT: usize = 65_000;

const SNAPLEN: u32 = 262_144;
const TTL: u8 = 64;
const WINDOW: u16 = 65_535;
/// Initial sequence numbers of the synthetic handshake (fixed, so output is reproducible).
const ISN_INITIATOR: u32 = 0x1000_0000;
const ISN_RESPONDER: u32 = 0x2000_0000;

/// Link type of the written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutLink {
    /// LINKTYPE_ETHERNET, with locally administered MAC addresses derived from the IPs.
    Ethernet,
    /// LINKTYPE_RAW: IP packets without a link header.
    Raw,
}

/// Why writing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("cannot write capture: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write capture: {0}")]
    Pcap(#[from] PcapError),
    #[error("cannot build packet: {0}")]
    Build(#[from] etherparse::err::packet::BuildVecWriteError),
    #[error("{src} and {dst} are not of the same IP family")]
    MixedFamily { src: SocketAddr, dst: SocketAddr },
    #[error("UDP payload of {len} bytes is over {max}")]
    PayloadTooLarge { len: usize, max: usize },
}

#[derive(Debug)]
struct Flow {
    initiator: SocketAddr,
    /// Next sequence number of the initiator and the responder.
    next: [u32; 2],
}

/// Writes synthesized UDP and TCP packets to a pcap file.
#[derive(Debug)]
pub struct CaptureWriter<W: Write> {
    pcap: PcapWriter<W>,
    link: OutLink,
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    syn: bool,
    fin: bool,
    psh: bool,
    ack: Option<u32>,
}

impl CaptureWriter<BufWriter<File>> {
    /// Creates (truncates) a pcap file.
    pub fn create(path: impl AsRef<Path>, link: OutLink) -> Result<Self, WriteError> {
        Self::new(BufWriter::new(File::create(path)?), link)
    }
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the pcap file header.
    pub fn new(out: W, link: OutLink) -> Result<Self, WriteError> {
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: match link {
                OutLink::Ethernet => DataLink::ETHERNET,
                OutLink::Raw => DataLink::RAW,
            },
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        Ok(CaptureWriter {
            pcap: PcapWriter::with_header(out, header)?,
            link,
            flows: HashMap::new(),
            buf: Vec::new(),
        })
    }

    /// Writes one UDP datagram.
    pub fn write_udp(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), WriteError> {
        if payload.len() > MAX_UDP_PAYLOAD {
            return Err(WriteError::PayloadTooLarge {
                len: payload.len(),
                max: MAX_UDP_PAYLOAD,
            });
        }
        self.emit(time, src, dst, None, payload)
    }

    /// Writes `payload` as the next bytes of the TCP direction `src -> dst`, opening the
    /// connection with a handshake first if it is new. An empty payload writes nothing.
    pub fn write_tcp(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), WriteError> {
        if payload.is_empty() {
            return Ok(());
        }
        let (fwd, back) = self.open(time, src, dst)?;
        let mut seq = fwd;
        for chunk in payload.chunks(MAX_TCP_SEGMENT) {
            let flags = Flags {
                psh: true,
                ack: Some(back),
                ..Flags::default()
            };
            self.emit(time, src, dst, Some((seq, flags)), chunk)?;
            // Truncation intended: sequence space is modulo 2^32.
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        self.set_next(src, dst, seq);
        Ok(())
    }

    /// Closes the connection between `src` and `dst` (FIN from `src`, FIN-ACK back, ACK) and
    /// forgets it: the next write opens a new one. Nothing is written for an unknown connection.
    pub fn close_tcp(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<(), WriteError> {
        let Some(flow) = self.flows.remove(&key(src, dst)) else {
            return Ok(());
        };
        let (a, b) = if flow.initiator == src {
            (flow.next[0], flow.next[1])
        } else {
            (flow.next[1], flow.next[0])
        };
        let fin = |ack| Flags {
            fin: true,
            ack: Some(ack),
            ..Flags::default()
        };
        self.emit(time, src, dst, Some((a, fin(b))), &[])?;
        self.emit(time, dst, src, Some((b, fin(a.wrapping_add(1)))), &[])?;
        let ack = Flags {
            ack: Some(b.wrapping_add(1)),
            ..Flags::default()
        };
        self.emit(time, src, dst, Some((a.wrapping_add(1), ack)), &[])
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W, WriteError> {
        let mut out = self.pcap.into_writer();
        out.flush()?;
        Ok(out)
    }

    /// Returns the next sequence numbers of `src -> dst` and `dst -> src`, writing the
    /// handshake of a new connection.
    fn open(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<(u32, u32), WriteError> {
        if let Some(flow) = self.flows.get(&key(src, dst)) {
            return Ok(if flow.initiator == src {
                (flow.next[0], flow.next[1])
            } else {
                (flow.next[1], flow.next[0])
            });
        }
        let (c, s) = (ISN_INITIATOR, ISN_RESPONDER);
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        self.emit(time, src, dst, Some((c, syn)), &[])?;
        let syn_ack = Flags {
            syn: true,
            ack: Some(c.wrapping_add(1)),
            ..Flags::default()
        };
        self.emit(time, dst, src, Some((s, syn_ack)), &[])?;
        let ack = Flags {
            ack: Some(s.wrapping_add(1)),
            ..Flags::default()
        };
        self.emit(time, src, dst, Some((c.wrapping_add(1), ack)), &[])?;
        let next = [c.wrapping_add(1), s.wrapping_add(1)];
        self.flows.insert(
            key(src, dst),
            Flow {
                initiator: src,
                next,
            },
        );
        Ok((next[0], next[1]))
    }

    fn set_next(&mut self, src: SocketAddr, dst: SocketAddr, seq: u32) {
        if let Some(flow) = self.flows.get_mut(&key(src, dst)) {
            let i = usize::from(flow.initiator != src);
            if let Some(n) = flow.next.get_mut(i) {
                *n = seq;
            }
        }
    }

    /// Builds and writes one packet: UDP when `tcp` is `None`.
    fn emit(
        &mut self,
        time: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: Option<(u32, Flags)>,
        payload: &[u8],
    ) -> Result<(), WriteError> {
        let ip = match (src.ip().to_canonical(), dst.ip().to_canonical()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => match self.link {
                OutLink::Ethernet => PacketBuilder::ethernet2(mac(&s.octets()), mac(&d.octets()))
                    .ipv4(s.octets(), d.octets(), TTL),
                OutLink::Raw => PacketBuilder::ipv4(s.octets(), d.octets(), TTL),
            },
            (IpAddr::V6(s), IpAddr::V6(d)) => match self.link {
                OutLink::Ethernet => PacketBuilder::ethernet2(mac(&s.octets()), mac(&d.octets()))
                    .ipv6(s.octets(), d.octets(), TTL),
                OutLink::Raw => PacketBuilder::ipv6(s.octets(), d.octets(), TTL),
            },
            _ => return Err(WriteError::MixedFamily { src, dst }),
        };
        self.buf.clear();
        match tcp {
            None => ip
                .udp(src.port(), dst.port())
                .write_to_vec(&mut self.buf, payload)?,
            Some((seq, flags)) => {
                tcp_step(ip, src, dst, seq, flags).write_to_vec(&mut self.buf, payload)?
            }
        }
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.pcap
            .write_packet(&PcapPacket::new(time, len, &self.buf))?;
        Ok(())
    }
}

fn tcp_step(
    ip: PacketBuilderStep<IpHeaders>,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    flags: Flags,
) -> PacketBuilderStep<TcpHeader> {
    let mut step = ip.tcp(src.port(), dst.port(), seq, WINDOW);
    if flags.syn {
        step = step.syn();
    }
    if flags.fin {
        step = step.fin();
    }
    if flags.psh {
        step = step.psh();
    }
    if let Some(ack) = flags.ack {
        step = step.ack(ack);
    }
    step
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// A locally administered unicast MAC from the address's last four bytes.
fn mac(ip: &[u8]) -> [u8; 6] {
    let mut m = [0x02, 0, 0, 0, 0, 0];
    for (dst, src) in m
        .iter_mut()
        .skip(2)
        .zip(ip.iter().skip(ip.len().saturating_sub(4)))
    {
        *dst = *src;
    }
    m
}
