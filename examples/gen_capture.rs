//! Writes a large, realistic SIP + RTP capture (pcap, Ethernet) for the replay throughput
//! benchmark (`bench/replay-vs-tshark.sh`). A dev tool: it never runs inside the gateway.
//!
//! ```sh
//! cargo run --release --example gen_capture -- --out /tmp/x.pcap --size-mb 200 [--seed N]
//! ```
//!
//! Content, deterministic for a given seed:
//! - calls arrive as a Poisson process (about 12/s, so ~100-150 are up at once) between caller
//!   hosts in 192.0.2.0/24 and callee hosts in 198.51.100.0/24, about 1 in 10 between
//!   2001:db8:a::/48 and 2001:db8:b::/48 (documentation ranges only);
//! - each call is a UDP SIP dialog on port 5060: INVITE (SDP offer PCMU/PCMA/telephone-event) →
//!   100 → 180 → 200 (SDP answer) → ACK, then 20 ms G.711 RTP both ways (proper sequence
//!   numbers, timestamps, SSRCs, marker on the first packet) for 3-20 s, an RFC 4733 DTMF digit in
//!   about 1 call in 5, RTCP SR + SDES every 5 s on port+1 each way, and BYE → 200 from either side;
//! - about 8 % of calls are refused 486 Busy Here (→ ACK) and 7 % are CANCELled while ringing
//!   (→ 200 for the CANCEL, 487, ACK); OPTIONS keepalives (→ 200) between random host pairs;
//! - the first two calls and one call in 200 afterwards run SIP over TCP (handshake, proper
//!   sequence/acknowledgement numbers, delayed ACKs, FIN at the end); in the first TCP call the
//!   callee sends 100 and 180 in one segment, in the second the INVITE is split over two segments.
//!
//! The file grows until the planned bytes of the calls started reach `--size-mb` (MiB); calls
//! already started are completed, so the file is a little larger than asked, never smaller.
//! At the end it prints what it wrote, including the SIP request/response counts that
//! `tshark -r FILE -q -z sip,stat` should report.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::error::Error;
use std::fs::File;
use std::io::BufWriter;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Capture start: 2024-01-01T00:00:00Z.
const EPOCH_SECS: u64 = 1_704_067_200;
/// Seconds from 1900 (NTP) to 1970 (Unix), RFC 5905.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
const SIP_PORT: u16 = 5060;
const FRAME_US: u64 = 20_000;
const SAMPLES_PER_FRAME: u32 = 160;
const PT_TELEPHONE_EVENT: u8 = 101;
/// Mean call inter-arrival time.
const MEAN_ARRIVAL_US: f64 = 1_000_000.0 / 12.0;
/// Size of a pcap record header.
const PCAP_REC: u64 = 16;
const ETH_LEN: u64 = 14;

#[derive(Parser)]
#[command(about = "Write a large realistic SIP+RTP pcap for the replay benchmark")]
struct Args {
    /// Output pcap file.
    #[arg(long)]
    out: PathBuf,
    /// Minimum size of the capture in MiB.
    #[arg(long, default_value_t = 200)]
    size_mb: u64,
    /// Seed of the pseudo-random generator; the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// splitmix64: small, fast, good enough for test data, and stable across platforms.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (hi > lo).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.next_u64() % 100 < p
    }
    fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016x}", self.next_u64()));
        }
        s.truncate(digits);
        s
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        let i = self.range(0, items.len() as u64) as usize;
        items.get(i).copied().unwrap_or("")
    }
    fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
    /// Exponential with the given mean.
    fn exp(&mut self, mean: f64) -> u64 {
        let u = ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        (-u.ln() * mean) as u64
    }
}

#[derive(Clone, Copy)]
struct Host {
    ip: IpAddr,
    mac: [u8; 6],
}

impl Host {
    fn new(ip: IpAddr, id: u8, side: u8) -> Host {
        // RFC 7042 documentation MAC range 00-00-5E-00-53-xx, second-last byte marks the side.
        Host {
            ip,
            mac: [0x00, 0x00, 0x5e, side, 0x53, id],
        }
    }
    /// Host part of a SIP URI (RFC 3261 section 25: IPv6 references in brackets).
    fn uri_host(&self) -> String {
        match self.ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        }
    }
    fn sdp_addr(&self) -> String {
        match self.ip {
            IpAddr::V4(a) => format!("IN IP4 {a}"),
            IpAddr::V6(a) => format!("IN IP6 {a}"),
        }
    }
    fn ip_len(&self) -> u64 {
        if self.ip.is_ipv4() {
            20
        } else {
            40
        }
    }
}

#[derive(Clone, Copy)]
struct Ep {
    host: Host,
    port: u16,
}

#[derive(Clone, Copy, Default)]
struct TcpFlags {
    syn: bool,
    fin: bool,
    ack: bool,
    psh: bool,
}

/// One packet ready to go out, rendered when the call was planned.
enum Prepared {
    Udp {
        src: Ep,
        dst: Ep,
        payload: Vec<u8>,
    },
    Tcp {
        src: Ep,
        dst: Ep,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        payload: Vec<u8>,
    },
}

impl Prepared {
    fn record_len(&self) -> u64 {
        match self {
            Prepared::Udp { src, payload, .. } => {
                PCAP_REC + ETH_LEN + src.host.ip_len() + 8 + payload.len() as u64
            }
            Prepared::Tcp { src, payload, .. } => {
                PCAP_REC + ETH_LEN + src.host.ip_len() + 20 + payload.len() as u64
            }
        }
    }
}

/// The pcap sink: builds Ethernet/IP/UDP|TCP frames with etherparse (checksums included).
struct Out {
    w: PcapWriter<BufWriter<File>>,
    buf: Vec<u8>,
    bytes: u64,
    packets: u64,
}

impl Out {
    fn write_frame(&mut self, t_us: u64) -> Result<()> {
        let ts = Duration::from_secs(EPOCH_SECS) + Duration::from_micros(t_us);
        let len = u32::try_from(self.buf.len())?;
        self.w.write_packet(&PcapPacket::new(ts, len, &self.buf))?;
        self.bytes += PCAP_REC + u64::from(len);
        self.packets += 1;
        Ok(())
    }

    fn ip_step(src: &Ep, dst: &Ep) -> Result<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
        let eth = PacketBuilder::ethernet2(src.host.mac, dst.host.mac);
        match (src.host.ip, dst.host.ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ok(eth.ipv4(s.octets(), d.octets(), 64)),
            (IpAddr::V6(s), IpAddr::V6(d)) => Ok(eth.ipv6(s.octets(), d.octets(), 64)),
            _ => Err("mixed IP families in one packet".into()),
        }
    }

    fn udp(&mut self, t_us: u64, src: &Ep, dst: &Ep, payload: &[u8]) -> Result<()> {
        self.buf.clear();
        Self::ip_step(src, dst)?
            .udp(src.port, dst.port)
            .write_to_vec(&mut self.buf, payload)?;
        self.write_frame(t_us)
    }

    fn prepared(&mut self, t_us: u64, p: &Prepared) -> Result<()> {
        match p {
            Prepared::Udp { src, dst, payload } => self.udp(t_us, src, dst, payload),
            Prepared::Tcp {
                src,
                dst,
                seq,
                ack,
                flags,
                payload,
            } => {
                self.buf.clear();
                let mut b = Self::ip_step(src, dst)?.tcp(src.port, dst.port, *seq, 64_240);
                if flags.syn {
                    b = b.syn();
                }
                if flags.fin {
                    b = b.fin();
                }
                if flags.psh {
                    b = b.psh();
                }
                if flags.ack {
                    b = b.ack(*ack);
                }
                b.write_to_vec(&mut self.buf, payload)?;
                self.write_frame(t_us)
            }
        }
    }
}

/// One second of a voice-like test signal, G.711-encoded (ITU-T G.711 tables 1a/2a).
struct Audio {
    pcmu: Vec<u8>,
    pcma: Vec<u8>,
}

fn linear_to_ulaw(x: i16) -> u8 {
    let sign: u8 = if x < 0 { 0x80 } else { 0 };
    let mag = (i32::from(x).abs().min(32_635) + 0x84) as u32;
    let exp = (31 - mag.leading_zeros()).saturating_sub(7).min(7);
    let mant = (mag >> (exp + 3)) & 0x0f;
    !(sign | ((exp as u8) << 4) | mant as u8)
}

fn linear_to_alaw(x: i16) -> u8 {
    let sign: u8 = if x >= 0 { 0x80 } else { 0 };
    let mag = (i32::from(x).abs().min(32_767) >> 3) as u32;
    let byte = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let exp = (31 - mag.leading_zeros()).saturating_sub(4).min(7);
        ((exp as u8) << 4) | ((mag >> exp) & 0x0f) as u8
    };
    (sign | byte) ^ 0x55
}

impl Audio {
    fn new() -> Audio {
        let (mut pcmu, mut pcma) = (Vec::with_capacity(8000), Vec::with_capacity(8000));
        for i in 0..8000u32 {
            let t = f64::from(i) / 8000.0;
            let tau = std::f64::consts::TAU;
            // a few "formants" with a syllable-rate envelope
            let env = 0.3 + 0.7 * (tau * 4.0 * t).sin().abs();
            let v = env
                * (0.5 * (tau * 180.0 * t).sin()
                    + 0.3 * (tau * 720.0 * t).sin()
                    + 0.2 * (tau * 1_350.0 * t).sin());
            let s = (v * 9_000.0) as i16;
            pcmu.push(linear_to_ulaw(s));
            pcma.push(linear_to_alaw(s));
        }
        Audio { pcmu, pcma }
    }
}

/// A G.711 stream, one direction, with an optional RFC 4733 digit.
struct RtpStream {
    src: Ep,
    dst: Ep,
    pt: u8,
    ssrc: u32,
    seq0: u16,
    ts0: u32,
    start: u64,
    frames: u32,
    idx: u32,
    /// (first frame, event code) of a DTMF digit lasting `DTMF_FRAMES` frames.
    dtmf: Option<(u32, u8)>,
    jitter: Rng,
    phase: u32,
}

const DTMF_FRAMES: u32 = 10;
const DTMF_END_FRAMES: u32 = 3;

impl RtpStream {
    fn frame_len(&self, idx: u32) -> u64 {
        let payload = if self.is_dtmf(idx) { 4 } else { 160 };
        ETH_LEN + self.src.host.ip_len() + 8 + 12 + payload
    }
    fn is_dtmf(&self, idx: u32) -> bool {
        matches!(self.dtmf, Some((first, _)) if idx >= first && idx < first + DTMF_FRAMES)
    }
    fn planned_bytes(&self) -> u64 {
        (0..self.frames).map(|i| PCAP_REC + self.frame_len(i)).sum()
    }
    fn time_of(&mut self, idx: u32) -> u64 {
        self.start + u64::from(idx) * FRAME_US + self.jitter.range(0, 1_500)
    }

    /// Writes frame `idx` at `t`; RFC 3550 section 5.1 header, RFC 4733 section 2.3 events.
    fn emit(&mut self, out: &mut Out, audio: &Audio, t: u64) -> Result<()> {
        let idx = self.idx;
        let seq = self.seq0.wrapping_add(idx as u16);
        let mut pkt = [0u8; 12 + 160];
        let (pt, marker, ts, body_len) = match self.dtmf {
            Some((first, code)) if self.is_dtmf(idx) => {
                let k = idx - first;
                let end = k >= DTMF_FRAMES - DTMF_END_FRAMES;
                // duration grows per packet; the end packets repeat the final duration
                let dur = (k.min(DTMF_FRAMES - DTMF_END_FRAMES) + 1) * SAMPLES_PER_FRAME;
                let ev = [
                    code,
                    if end { 0x80 | 10 } else { 10 },
                    (dur >> 8) as u8,
                    dur as u8,
                ];
                if let Some(b) = pkt.get_mut(12..16) {
                    b.copy_from_slice(&ev);
                }
                let ts = self.ts0.wrapping_add(first * SAMPLES_PER_FRAME);
                (PT_TELEPHONE_EVENT, k == 0, ts, 4)
            }
            _ => {
                let table = if self.pt == 8 {
                    &audio.pcma
                } else {
                    &audio.pcmu
                };
                let off = (((idx + self.phase) % 50) * SAMPLES_PER_FRAME) as usize;
                if let (Some(b), Some(src)) = (pkt.get_mut(12..172), table.get(off..off + 160)) {
                    b.copy_from_slice(src);
                }
                (
                    self.pt,
                    idx == 0,
                    self.ts0.wrapping_add(idx * SAMPLES_PER_FRAME),
                    160,
                )
            }
        };
        let mut hdr = [0u8; 12];
        hdr[0] = 0x80;
        hdr[1] = (u8::from(marker) << 7) | pt;
        hdr[2..4].copy_from_slice(&seq.to_be_bytes());
        hdr[4..8].copy_from_slice(&ts.to_be_bytes());
        hdr[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        if let Some(h) = pkt.get_mut(..12) {
            h.copy_from_slice(&hdr);
        }
        let body = pkt.get(..12 + body_len).unwrap_or(&[]);
        out.udp(t, &self.src, &self.dst, body)
    }
}

/// RTCP sender reports (RFC 3550 section 6.4.1) with one report block and SDES CNAME, every 5 s.
struct RtcpStream {
    src: Ep,
    dst: Ep,
    ssrc: u32,
    ts0: u32,
    media_start: u64,
    peer_ssrc: u32,
    peer_seq0: u16,
    cname: String,
    next: u64,
    end: u64,
    jitter: Rng,
}

impl RtcpStream {
    fn payload(&mut self, t: u64) -> Vec<u8> {
        let elapsed = t.saturating_sub(self.media_start);
        let sent = (elapsed / FRAME_US) as u32;
        let unix_us = EPOCH_SECS * 1_000_000 + t;
        let ntp_sec = (unix_us / 1_000_000 + NTP_UNIX_OFFSET) as u32;
        let ntp_frac = (((unix_us % 1_000_000) << 32) / 1_000_000) as u32;
        let rtp_ts = self.ts0.wrapping_add((elapsed * 8 / 1000) as u32);
        let mut p = Vec::with_capacity(96);
        // SR: V=2, RC=1, PT=200, length 12 (52 bytes)
        p.extend_from_slice(&[0x81, 200, 0, 12]);
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(&ntp_sec.to_be_bytes());
        p.extend_from_slice(&ntp_frac.to_be_bytes());
        p.extend_from_slice(&rtp_ts.to_be_bytes());
        p.extend_from_slice(&sent.to_be_bytes());
        p.extend_from_slice(&(sent * 160).to_be_bytes());
        // report block about the peer's stream: no loss, small jitter
        p.extend_from_slice(&self.peer_ssrc.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        let ext_seq = u32::from(self.peer_seq0).wrapping_add(sent);
        p.extend_from_slice(&ext_seq.to_be_bytes());
        p.extend_from_slice(&(self.jitter.range(2, 40) as u32).to_be_bytes());
        p.extend_from_slice(&[0; 8]); // LSR, DLSR
                                      // SDES with one chunk: SSRC, CNAME item, END, padding to 32 bits
        let mut chunk = Vec::with_capacity(32);
        chunk.extend_from_slice(&self.ssrc.to_be_bytes());
        chunk.push(1);
        chunk.push(self.cname.len() as u8);
        chunk.extend_from_slice(self.cname.as_bytes());
        chunk.push(0);
        while chunk.len() % 4 != 0 {
            chunk.push(0);
        }
        let words = (chunk.len() / 4) as u16; // header word + chunk words - 1
        p.extend_from_slice(&[0x81, 202]);
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(&chunk);
        p
    }
    fn packet_len(&self) -> u64 {
        let sdes_chunk = (4 + 2 + self.cname.len() + 1).div_ceil(4) * 4;
        ETH_LEN + self.src.host.ip_len() + 8 + 52 + 4 + sdes_chunk as u64
    }
    fn planned_bytes(&self) -> u64 {
        let n = if self.next < self.end {
            (self.end - self.next).div_ceil(5_000_000)
        } else {
            0
        };
        n * (PCAP_REC + self.packet_len())
    }
}

enum Source {
    Spawner,
    Script(VecDeque<(u64, Prepared)>),
    Rtp(RtpStream),
    Rtcp(RtcpStream),
}

#[derive(Default)]
struct Stats {
    calls: u64,
    answered: u64,
    busy: u64,
    cancelled: u64,
    tcp_calls: u64,
    ipv6_calls: u64,
    dtmf_digits: u64,
    options: u64,
    requests: BTreeMap<&'static str, u64>,
    responses: BTreeMap<u16, u64>,
}

const CALLER_UA: &[&str] = &[
    "Yealink SIP-T46S 66.86.0.15",
    "PolycomVVX-VVX_411-UA/6.4.3.5018",
    "Grandstream GXP2170 1.0.11.3",
    "Linphone/5.2.0 (belle-sip/5.2.0)",
    "Zoiper rv2.10.19.5",
];
const CALLEE_UA: &[&str] = &[
    "Asterisk PBX 20.5.0",
    "FreeSWITCH-mod_sofia/1.10.11-release~64bit",
    "Cisco-SIPGateway/IOS-15.7.3",
    "Mitel-MiVoice-Business/10.0",
];
const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
];

#[derive(Clone)]
struct Party {
    ep: Ep,
    user: String,
    display: String,
    ua: String,
    rtp_port: u16,
}

/// One SIP message to send within a call, before transport framing.
struct Msg {
    t: u64,
    from_caller: bool,
    text: String,
}

struct Dialog<'a> {
    a: &'a Party,
    b: &'a Party,
    transport: &'static str,
    call_id: String,
    from_tag: String,
    to_tag: String,
}

impl Dialog<'_> {
    fn via(&self, p: &Party, branch: &str) -> String {
        let rport = if self.transport == "UDP" {
            ";rport"
        } else {
            ""
        };
        format!(
            "SIP/2.0/{} {}:{};branch=z9hG4bK{}{}",
            self.transport,
            p.ep.host.uri_host(),
            SIP_PORT,
            branch,
            rport
        )
    }
    fn caller_hdr(&self) -> String {
        format!(
            "\"{}\" <sip:{}@{}>;tag={}",
            self.a.display,
            self.a.user,
            self.a.ep.host.uri_host(),
            self.from_tag
        )
    }
    fn callee_hdr(&self, with_tag: bool) -> String {
        let tag = if with_tag {
            format!(";tag={}", self.to_tag)
        } else {
            String::new()
        };
        format!("<sip:{}@{}>{}", self.b.user, self.b.ep.host.uri_host(), tag)
    }
    fn contact(&self, p: &Party) -> String {
        format!(
            "<sip:{}@{}:{};transport={}>",
            p.user,
            p.ep.host.uri_host(),
            SIP_PORT,
            self.transport.to_ascii_lowercase()
        )
    }

    /// A request from the caller (`from_caller`) or the callee, RFC 3261 section 8.1.1.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &'static str,
        cseq: u32,
        branch: &str,
        from_caller: bool,
        to_tag: bool,
        body: Option<&str>,
        stats: &mut Stats,
        in_dialog: bool,
    ) -> String {
        *stats.requests.entry(method).or_default() += 1;
        let (me, peer) = if from_caller {
            (self.a, self.b)
        } else {
            (self.b, self.a)
        };
        // out of dialog (and the ACK for a non-2xx, section 17.1.1.3): the INVITE's Request-URI;
        // in dialog: the peer's Contact (section 12.2.1.1)
        let ruri = if !in_dialog {
            format!("sip:{}@{}", self.b.user, self.b.ep.host.uri_host())
        } else {
            format!(
                "sip:{}@{}:{};transport={}",
                peer.user,
                peer.ep.host.uri_host(),
                SIP_PORT,
                self.transport.to_ascii_lowercase()
            )
        };
        let (from, to) = if from_caller {
            (self.caller_hdr(), self.callee_hdr(to_tag))
        } else {
            // callee-originated in-dialog request: From/To swapped (section 12.2.1.1)
            (
                format!(
                    "<sip:{}@{}>;tag={}",
                    self.b.user,
                    self.b.ep.host.uri_host(),
                    self.to_tag
                ),
                format!(
                    "\"{}\" <sip:{}@{}>;tag={}",
                    self.a.display,
                    self.a.user,
                    self.a.ep.host.uri_host(),
                    self.from_tag
                ),
            )
        };
        let mut m = format!(
            "{method} {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
             Call-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.via(me, branch),
            self.call_id
        );
        if method != "ACK" && method != "CANCEL" {
            m.push_str(&format!("Contact: {}\r\n", self.contact(me)));
        }
        m.push_str(&format!("User-Agent: {}\r\n", me.ua));
        if method == "INVITE" {
            m.push_str(
                "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n\
                 Supported: replaces, timer\r\nSession-Expires: 1800\r\nMin-SE: 90\r\n",
            );
        }
        push_body(&mut m, body);
        m
    }

    /// A response from the callee to a caller request (or vice versa), section 8.2.6.
    #[allow(clippy::too_many_arguments)]
    fn response(
        &self,
        code: u16,
        reason: &str,
        req_via: &str,
        cseq: u32,
        method: &str,
        from_caller: bool,
        to_tag: bool,
        body: Option<&str>,
        stats: &mut Stats,
    ) -> String {
        *stats.responses.entry(code).or_default() += 1;
        let responder = if from_caller { self.b } else { self.a };
        let (from, to) = if from_caller {
            (self.caller_hdr(), self.callee_hdr(to_tag))
        } else {
            (
                format!(
                    "<sip:{}@{}>;tag={}",
                    self.b.user,
                    self.b.ep.host.uri_host(),
                    self.to_tag
                ),
                format!(
                    "\"{}\" <sip:{}@{}>;tag={}",
                    self.a.display,
                    self.a.user,
                    self.a.ep.host.uri_host(),
                    self.from_tag
                ),
            )
        };
        let mut m = format!(
            "SIP/2.0 {code} {reason}\r\nVia: {req_via}\r\nFrom: {from}\r\nTo: {to}\r\n\
             Call-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.call_id
        );
        if code == 180 || (code == 200 && method == "INVITE") {
            m.push_str(&format!("Contact: {}\r\n", self.contact(responder)));
        }
        if code >= 180 {
            m.push_str(&format!("Server: {}\r\n", responder.ua));
        }
        if code == 200 && method == "INVITE" {
            m.push_str(
                "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n\
                 Supported: replaces, timer\r\nRequire: timer\r\nSession-Expires: 1800;refresher=uac\r\n",
            );
        }
        push_body(&mut m, body);
        m
    }
}

fn push_body(m: &mut String, body: Option<&str>) {
    match body {
        Some(b) => {
            m.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        }
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
}

fn sdp(p: &Party, sess: u64, payload_types: &[u8]) -> String {
    let mut s = format!(
        "v=0\r\no={} {sess} {sess} {}\r\ns={}\r\nc={}\r\nt=0 0\r\nm=audio {} RTP/AVP",
        p.user.trim_start_matches('+'),
        p.ep.host.sdp_addr(),
        "call",
        p.ep.host.sdp_addr(),
        p.rtp_port
    );
    for pt in payload_types {
        s.push_str(&format!(" {pt}"));
    }
    s.push_str("\r\n");
    for pt in payload_types {
        match pt {
            0 => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            8 => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            _ => s.push_str(&format!(
                "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
            )),
        }
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

/// TCP framing of a call's messages: handshake, segments with sequence numbers, delayed ACKs, FIN.
fn tcp_script(a: Ep, b: Ep, msgs: &[Msg], special: u64, rng: &mut Rng) -> Vec<(u64, Prepared)> {
    let mut out = Vec::new();
    let (mut sa, mut sb) = (rng.u32(), rng.u32()); // next sequence number of each side
    let t0 = msgs.first().map_or(0, |m| m.t.saturating_sub(3_000));
    let flags = |syn, fin, ack, psh| TcpFlags { syn, fin, ack, psh };
    out.push((
        t0,
        Prepared::Tcp {
            src: a,
            dst: b,
            seq: sa,
            ack: 0,
            flags: flags(true, false, false, false),
            payload: vec![],
        },
    ));
    sa = sa.wrapping_add(1);
    out.push((
        t0 + 900,
        Prepared::Tcp {
            src: b,
            dst: a,
            seq: sb,
            ack: sa,
            flags: flags(true, false, true, false),
            payload: vec![],
        },
    ));
    sb = sb.wrapping_add(1);
    out.push((
        t0 + 1_800,
        Prepared::Tcp {
            src: a,
            dst: b,
            seq: sa,
            ack: sb,
            flags: flags(false, false, true, false),
            payload: vec![],
        },
    ));
    // Segments: (time, from caller, bytes)
    let mut segs: Vec<(u64, bool, Vec<u8>)> = Vec::new();
    let mut i = 0;
    while let Some(m) = msgs.get(i) {
        let bytes = m.text.as_bytes().to_vec();
        if special == 0 && !m.from_caller && m.text.starts_with("SIP/2.0 100") {
            // callee sends 100 and 180 together in one segment
            if let Some(next) = msgs.get(i + 1) {
                let mut both = bytes;
                both.extend_from_slice(next.text.as_bytes());
                segs.push((next.t, false, both));
                i += 2;
                continue;
            }
        }
        if special == 1 && m.text.starts_with("INVITE") && bytes.len() > 400 {
            // INVITE split across two segments
            let (first, rest) = bytes.split_at(300);
            segs.push((m.t, true, first.to_vec()));
            segs.push((m.t + 700, true, rest.to_vec()));
            i += 1;
            continue;
        }
        segs.push((m.t, m.from_caller, bytes));
        i += 1;
    }
    let mut last_t = t0 + 1_800;
    for (k, (t, from_a, data)) in segs.iter().enumerate() {
        let t = (*t).max(last_t + 10);
        let (src, dst, seq, ack) = if *from_a {
            (a, b, sa, sb)
        } else {
            (b, a, sb, sa)
        };
        let len = data.len() as u32;
        out.push((
            t,
            Prepared::Tcp {
                src,
                dst,
                seq,
                ack,
                flags: flags(false, false, true, true),
                payload: data.clone(),
            },
        ));
        if *from_a {
            sa = sa.wrapping_add(len);
        } else {
            sb = sb.wrapping_add(len);
        }
        last_t = t;
        // delayed ACK (40 ms) unless the peer answers with data before that
        let peer_soon = segs
            .get(k + 1)
            .is_some_and(|(nt, nf, _)| *nf != *from_a && *nt < t + 40_000);
        if !peer_soon {
            let next_t = segs.get(k + 1).map_or(u64::MAX, |s| s.0);
            let at = (t + 40_000).min(next_t.saturating_sub(10)).max(t + 10);
            let (s2, d2, seq2, ack2) = if *from_a {
                (b, a, sb, sa)
            } else {
                (a, b, sa, sb)
            };
            out.push((
                at,
                Prepared::Tcp {
                    src: s2,
                    dst: d2,
                    seq: seq2,
                    ack: ack2,
                    flags: flags(false, false, true, false),
                    payload: vec![],
                },
            ));
            last_t = at;
        }
    }
    // caller closes: FIN, FIN+ACK, ACK
    let t = last_t + 50_000;
    out.push((
        t,
        Prepared::Tcp {
            src: a,
            dst: b,
            seq: sa,
            ack: sb,
            flags: flags(false, true, true, false),
            payload: vec![],
        },
    ));
    sa = sa.wrapping_add(1);
    out.push((
        t + 900,
        Prepared::Tcp {
            src: b,
            dst: a,
            seq: sb,
            ack: sa,
            flags: flags(false, true, true, false),
            payload: vec![],
        },
    ));
    sb = sb.wrapping_add(1);
    out.push((
        t + 1_800,
        Prepared::Tcp {
            src: a,
            dst: b,
            seq: sa,
            ack: sb,
            flags: flags(false, false, true, false),
            payload: vec![],
        },
    ));
    out.sort_by_key(|(t, _)| *t);
    out
}

struct Gen {
    rng: Rng,
    callers: Vec<Host>,
    callees: Vec<Host>,
    callers6: Vec<Host>,
    callees6: Vec<Host>,
    /// next RTP port per host (by IP), so concurrent calls never share a port
    rtp_ports: BTreeMap<IpAddr, u16>,
    stats: Stats,
    tcp_seen: u64,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut callers = Vec::new();
        let mut callees = Vec::new();
        let mut callers6 = Vec::new();
        let mut callees6 = Vec::new();
        for i in 10u8..=249 {
            callers.push(Host::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)), i, 1));
            callees.push(Host::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)), i, 2));
        }
        for i in 1u8..=40 {
            let a = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, u16::from(i));
            let b = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, u16::from(i));
            callers6.push(Host::new(IpAddr::V6(a), i, 3));
            callees6.push(Host::new(IpAddr::V6(b), i, 4));
        }
        Gen {
            rng: Rng(seed ^ 0x5347_575f_4341_5054),
            callers,
            callees,
            callers6,
            callees6,
            rtp_ports: BTreeMap::new(),
            stats: Stats::default(),
            tcp_seen: 0,
        }
    }

    fn rtp_port(&mut self, ip: IpAddr) -> u16 {
        let first = 16_384 + 2 * self.rng.range(0, 8_000) as u16;
        let p = self.rtp_ports.entry(ip).or_insert(first);
        let port = *p;
        *p = if *p >= 32_766 { 16_384 } else { *p + 2 };
        port
    }

    fn party(&mut self, host: Host, caller: bool) -> Party {
        let user = if caller {
            format!("+4930{}", self.rng.range(1_000_000, 9_999_999))
        } else {
            format!("+3314{}", self.rng.range(1_000_000, 9_999_999))
        };
        let display = format!(
            "{} {}",
            self.rng.pick(FIRST_NAMES),
            (b'A' + self.rng.range(0, 26) as u8) as char
        );
        let ua = self
            .rng
            .pick(if caller { CALLER_UA } else { CALLEE_UA })
            .to_string();
        let rtp_port = self.rtp_port(host.ip);
        Party {
            ep: Ep {
                host,
                port: SIP_PORT,
            },
            user,
            display,
            ua,
            rtp_port,
        }
    }

    fn pick_host(&mut self, v6: bool, caller: bool) -> Result<Host> {
        let list = match (v6, caller) {
            (false, true) => &self.callers,
            (false, false) => &self.callees,
            (true, true) => &self.callers6,
            (true, false) => &self.callees6,
        };
        let i = self.rng.range(0, list.len() as u64) as usize;
        list.get(i).copied().ok_or_else(|| "empty host list".into())
    }

    /// Plans one call starting at `t0`; returns its sources.
    fn call(&mut self, t0: u64) -> Result<Vec<Source>> {
        self.stats.calls += 1;
        let v6 = self.rng.percent(10);
        let tcp = self.stats.calls <= 2 || self.rng.range(0, 200) == 0;
        // a TCP call opens its connection first (3 ms before the INVITE)
        let t0 = if tcp { t0 + 3_000 } else { t0 };
        let (ha, hb) = (self.pick_host(v6, true)?, self.pick_host(v6, false)?);
        let mut a = self.party(ha, true);
        let b = self.party(hb, false);
        if tcp {
            a.ep.port = 40_000 + self.rng.range(0, 20_000) as u16;
        }
        let mut r = self.rng.fork();
        let dlg = Dialog {
            a: &a,
            b: &b,
            transport: if tcp { "TCP" } else { "UDP" },
            call_id: format!("{}@{}", r.hex(24), a.ep.host.uri_host()),
            from_tag: r.hex(10),
            to_tag: r.hex(10),
        };
        if v6 {
            self.stats.ipv6_calls += 1;
        }
        let st = &mut self.stats;
        let outcome = r.range(0, 100);
        let rtt = r.range(4_000, 40_000);
        let inv_branch = r.hex(16);
        let inv_via = dlg.via(&a, &inv_branch);
        let offer = sdp(
            &a,
            r.range(1_000_000, 9_999_999),
            &[0, 8, PT_TELEPHONE_EVENT],
        );
        let mut msgs = vec![Msg {
            t: t0,
            from_caller: true,
            text: dlg.request(
                "INVITE",
                1,
                &inv_branch,
                true,
                false,
                Some(&offer),
                st,
                false,
            ),
        }];
        let t100 = t0 + r.range(2_000, 15_000);
        msgs.push(Msg {
            t: t100,
            from_caller: false,
            text: dlg.response(100, "Trying", &inv_via, 1, "INVITE", true, false, None, st),
        });
        let mut sources = Vec::new();
        if outcome < 8 {
            st.busy += 1;
            let t = t100 + r.range(300_000, 3_000_000);
            msgs.push(Msg {
                t,
                from_caller: false,
                text: dlg.response(
                    486,
                    "Busy Here",
                    &inv_via,
                    1,
                    "INVITE",
                    true,
                    true,
                    None,
                    st,
                ),
            });
            msgs.push(Msg {
                t: t + rtt,
                from_caller: true,
                text: dlg.request("ACK", 1, &inv_branch, true, true, None, st, false),
            });
        } else {
            let t180 = t100 + r.range(30_000, 400_000);
            msgs.push(Msg {
                t: t180,
                from_caller: false,
                text: dlg.response(180, "Ringing", &inv_via, 1, "INVITE", true, true, None, st),
            });
            if outcome < 15 {
                st.cancelled += 1;
                // CANCEL reuses the INVITE's branch (RFC 3261 section 9.1)
                let t = t180 + r.range(1_500_000, 8_000_000);
                msgs.push(Msg {
                    t,
                    from_caller: true,
                    text: dlg.request("CANCEL", 1, &inv_branch, true, false, None, st, false),
                });
                msgs.push(Msg {
                    t: t + rtt,
                    from_caller: false,
                    text: dlg.response(200, "OK", &inv_via, 1, "CANCEL", true, true, None, st),
                });
                msgs.push(Msg {
                    t: t + rtt + 500,
                    from_caller: false,
                    text: dlg.response(
                        487,
                        "Request Terminated",
                        &inv_via,
                        1,
                        "INVITE",
                        true,
                        true,
                        None,
                        st,
                    ),
                });
                msgs.push(Msg {
                    t: t + 2 * rtt + 500,
                    from_caller: true,
                    text: dlg.request("ACK", 1, &inv_branch, true, true, None, st, false),
                });
            } else {
                st.answered += 1;
                let pt = if r.percent(70) { 0 } else { 8 };
                let answer = sdp(&b, r.range(1_000_000, 9_999_999), &[pt, PT_TELEPHONE_EVENT]);
                let t200 = t180 + r.range(800_000, 6_000_000);
                msgs.push(Msg {
                    t: t200,
                    from_caller: false,
                    text: dlg.response(
                        200,
                        "OK",
                        &inv_via,
                        1,
                        "INVITE",
                        true,
                        true,
                        Some(&answer),
                        st,
                    ),
                });
                let tack = t200 + rtt;
                msgs.push(Msg {
                    t: tack,
                    from_caller: true,
                    text: dlg.request("ACK", 1, &r.hex(16), true, true, None, st, true),
                });
                let media_start = t200 + rtt / 2;
                let dur = r.range(3_000_000, 20_000_000);
                let frames = (dur / FRAME_US) as u32;
                let media_end = media_start + u64::from(frames) * FRAME_US;
                let (sa, sb) = (r.u32(), r.u32());
                let (qa, qb) = (r.range(0, 65_536) as u16, r.range(0, 65_536) as u16);
                let (ta, tb) = (r.u32(), r.u32());
                let dtmf = if r.percent(20) && frames > 60 {
                    st.dtmf_digits += 1;
                    Some((
                        r.range(25, u64::from(frames) - 25) as u32,
                        r.range(0, 16) as u8,
                    ))
                } else {
                    None
                };
                let ra = Ep {
                    host: a.ep.host,
                    port: a.rtp_port,
                };
                let rb = Ep {
                    host: b.ep.host,
                    port: b.rtp_port,
                };
                sources.push(Source::Rtp(RtpStream {
                    src: ra,
                    dst: rb,
                    pt,
                    ssrc: sa,
                    seq0: qa,
                    ts0: ta,
                    start: media_start + 500,
                    frames,
                    idx: 0,
                    dtmf,
                    jitter: r.fork(),
                    phase: r.range(0, 50) as u32,
                }));
                sources.push(Source::Rtp(RtpStream {
                    src: rb,
                    dst: ra,
                    pt,
                    ssrc: sb,
                    seq0: qb,
                    ts0: tb,
                    start: media_start + 700,
                    frames,
                    idx: 0,
                    dtmf: None,
                    jitter: r.fork(),
                    phase: r.range(0, 50) as u32,
                }));
                for (src, dst, ssrc, ts0, peer_ssrc, peer_seq0, user) in [
                    (ra, rb, sa, ta, sb, qb, &a.user),
                    (rb, ra, sb, tb, sa, qa, &b.user),
                ] {
                    let first = media_start + r.range(1_000_000, 5_000_000);
                    sources.push(Source::Rtcp(RtcpStream {
                        src: Ep {
                            port: src.port + 1,
                            ..src
                        },
                        dst: Ep {
                            port: dst.port + 1,
                            ..dst
                        },
                        ssrc,
                        ts0,
                        media_start,
                        peer_ssrc,
                        peer_seq0,
                        cname: format!("{}@{}", user.trim_start_matches('+'), src.host.ip),
                        next: first,
                        end: media_end,
                        jitter: r.fork(),
                    }));
                }
                let tbye = media_end + r.range(5_000, 60_000);
                let caller_hangs_up = r.percent(55);
                let bye_branch = r.hex(16);
                let bye_via = dlg.via(if caller_hangs_up { &a } else { &b }, &bye_branch);
                msgs.push(Msg {
                    t: tbye,
                    from_caller: caller_hangs_up,
                    text: dlg.request("BYE", 2, &bye_branch, caller_hangs_up, true, None, st, true),
                });
                msgs.push(Msg {
                    t: tbye + rtt,
                    from_caller: !caller_hangs_up,
                    text: dlg.response(
                        200,
                        "OK",
                        &bye_via,
                        2,
                        "BYE",
                        caller_hangs_up,
                        true,
                        None,
                        st,
                    ),
                });
            }
        }
        let script: VecDeque<(u64, Prepared)> = if tcp {
            st.tcp_calls += 1;
            let special = self.tcp_seen;
            self.tcp_seen += 1;
            let (ta, tb) = (a.ep, b.ep);
            tcp_script(ta, tb, &msgs, special, &mut r).into()
        } else {
            let mut v: Vec<(u64, Prepared)> = msgs
                .into_iter()
                .map(|m| {
                    let (src, dst) = if m.from_caller {
                        (a.ep, b.ep)
                    } else {
                        (b.ep, a.ep)
                    };
                    (
                        m.t,
                        Prepared::Udp {
                            src,
                            dst,
                            payload: m.text.into_bytes(),
                        },
                    )
                })
                .collect();
            v.sort_by_key(|(t, _)| *t);
            v.into()
        };
        sources.push(Source::Script(script));
        Ok(sources)
    }

    /// An OPTIONS keepalive from a callee-side host (e.g. a PBX) to a caller-side host, and its 200.
    fn options(&mut self, t0: u64) -> Result<Source> {
        self.stats.options += 1;
        let v6 = self.rng.percent(10);
        let (ha, hb) = (self.pick_host(v6, false)?, self.pick_host(v6, true)?);
        let a = self.party(ha, false);
        let b = self.party(hb, true);
        let mut r = self.rng.fork();
        let dlg = Dialog {
            a: &a,
            b: &b,
            transport: "UDP",
            call_id: format!("{}@{}", r.hex(24), a.ep.host.uri_host()),
            from_tag: r.hex(10),
            to_tag: r.hex(10),
        };
        let branch = r.hex(16);
        let via = dlg.via(&a, &branch);
        let st = &mut self.stats;
        let req = dlg.request(
            "OPTIONS",
            r.range(1, 5_000) as u32,
            &branch,
            true,
            false,
            None,
            st,
            false,
        );
        let cseq: u32 = req
            .lines()
            .find_map(|l| l.strip_prefix("CSeq: "))
            .and_then(|c| c.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut resp = dlg.response(200, "OK", &via, cseq, "OPTIONS", true, true, None, st);
        // advertise capabilities, as a 200 to OPTIONS does (RFC 3261 section 11.2)
        resp = resp.replacen(
            "Content-Length: 0",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\nAccept: application/sdp\r\nContent-Length: 0",
            1,
        );
        let rtt = r.range(4_000, 40_000);
        Ok(Source::Script(VecDeque::from(vec![
            (
                t0,
                Prepared::Udp {
                    src: a.ep,
                    dst: b.ep,
                    payload: req.into_bytes(),
                },
            ),
            (
                t0 + rtt,
                Prepared::Udp {
                    src: b.ep,
                    dst: a.ep,
                    payload: resp.into_bytes(),
                },
            ),
        ])))
    }
}

fn planned(s: &Source) -> u64 {
    match s {
        Source::Spawner => 0,
        Source::Script(v) => v.iter().map(|(_, p)| p.record_len()).sum(),
        Source::Rtp(r) => r.planned_bytes(),
        Source::Rtcp(r) => r.planned_bytes(),
    }
}

struct Sched {
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<Source>>,
    free: Vec<usize>,
    order: u64,
}

impl Sched {
    fn push(&mut self, t: u64, s: Source) {
        let slot = match self.free.pop() {
            Some(i) => {
                if let Some(x) = self.slots.get_mut(i) {
                    *x = Some(s);
                }
                i
            }
            None => {
                self.slots.push(Some(s));
                self.slots.len() - 1
            }
        };
        self.requeue(t, slot);
    }
    fn requeue(&mut self, t: u64, slot: usize) {
        self.order += 1;
        self.heap.push(Reverse((t, self.order, slot)));
    }
    fn first_time(s: &mut Source) -> Option<u64> {
        match s {
            Source::Spawner => Some(0),
            Source::Script(v) => v.front().map(|(t, _)| *t),
            Source::Rtp(r) => (r.frames > 0).then(|| r.time_of(0)),
            Source::Rtcp(r) => (r.next < r.end).then_some(r.next),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let target = args.size_mb.saturating_mul(1024 * 1024);
    let started = Instant::now();
    let file = File::create(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let header = PcapHeader {
        endianness: pcap_file::Endianness::Little,
        ..PcapHeader::default()
    };
    let mut out = Out {
        w: PcapWriter::with_header(BufWriter::with_capacity(1 << 20, file), header)?,
        buf: Vec::with_capacity(2048),
        bytes: 24,
        packets: 0,
    };
    let audio = Audio::new();
    let mut gen = Gen::new(args.seed);
    let mut sched = Sched {
        heap: BinaryHeap::new(),
        slots: Vec::new(),
        free: Vec::new(),
        order: 0,
    };
    let mut planned_total: u64 = 24;
    sched.push(0, Source::Spawner);

    while let Some(Reverse((t, _, slot))) = sched.heap.pop() {
        let Some(mut src) = sched.slots.get_mut(slot).and_then(Option::take) else {
            continue;
        };
        let next = match &mut src {
            Source::Spawner => {
                let mut new = gen.call(t)?;
                if gen.rng.percent(8) {
                    let at = t + gen.rng.range(0, 80_000);
                    new.push(gen.options(at)?);
                }
                for mut s in new {
                    planned_total += planned(&s);
                    if let Some(t1) = Sched::first_time(&mut s) {
                        sched.push(t1, s);
                    }
                }
                (planned_total < target).then(|| t + gen.rng.exp(MEAN_ARRIVAL_US).max(1))
            }
            Source::Script(v) => {
                if let Some((pt, p)) = v.pop_front() {
                    out.prepared(pt, &p)?;
                }
                v.front().map(|(t, _)| *t)
            }
            Source::Rtp(r) => {
                r.emit(&mut out, &audio, t)?;
                r.idx += 1;
                let idx = r.idx;
                (idx < r.frames).then(|| r.time_of(idx))
            }
            Source::Rtcp(r) => {
                let p = r.payload(t);
                out.udp(t, &r.src, &r.dst, &p)?;
                r.next += 5_000_000;
                (r.next < r.end).then(|| r.next + r.jitter.range(0, 3_000))
            }
        };
        match next {
            Some(nt) => {
                if let Some(x) = sched.slots.get_mut(slot) {
                    *x = Some(src);
                }
                sched.requeue(nt.max(t), slot);
            }
            None => sched.free.push(slot),
        }
    }
    let mut w = out.w.into_writer();
    std::io::Write::flush(&mut w)?;
    drop(w);

    let secs = started.elapsed().as_secs_f64();
    let st = &gen.stats;
    let mb = out.bytes as f64 / (1024.0 * 1024.0);
    println!(
        "wrote {} ({} bytes, {:.1} MiB, {} packets)",
        args.out.display(),
        out.bytes,
        mb,
        out.packets
    );
    println!(
        "in {secs:.2} s: {:.0} MiB/s, {:.0} packets/s",
        mb / secs,
        out.packets as f64 / secs
    );
    println!(
        "calls: {} (answered {}, busy {}, cancelled {}; over TCP {}; IPv6 {}; DTMF digits {}), OPTIONS: {}",
        st.calls, st.answered, st.busy, st.cancelled, st.tcp_calls, st.ipv6_calls, st.dtmf_digits, st.options
    );
    let req: u64 = st.requests.values().sum();
    let resp: u64 = st.responses.values().sum();
    println!("SIP requests: {req} {:?}", st.requests);
    println!("SIP responses: {resp} {:?}", st.responses);
    if out.bytes != planned_total {
        eprintln!("note: planned {planned_total} bytes, wrote {}", out.bytes);
    }
    Ok(())
}
