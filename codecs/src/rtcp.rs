//! RTCP (RFC 3550 section 6): a zero-copy [`Packet`] view of one packet, the compound-packet
//! iterator and validation ([`Compound`], RFC 3550 appendix A.2), and a borrowed [`Repr`] for
//! SR, RR, SDES, BYE and APP; other types (RTPFB, PSFB, XR...) stay [`Repr::Unknown`].
//!
//! Nothing here ever panics, allocates or reads the clock. Profile-specific extensions after
//! report blocks are kept as bytes, never interpreted.

/// The RTCP version (RFC 3550 section 6.4.1).
pub const VERSION: u8 = 2;
/// The common header: V/P/count, packet type, length.
pub const HEADER_LEN: usize = 4;
/// Sender info in an SR (RFC 3550 section 6.4.1).
pub const SENDER_INFO_LEN: usize = 20;
/// One reception report block.
pub const REPORT_BLOCK_LEN: usize = 24;
/// Upper bound on packets in one compound datagram; real stacks send 2-4.
pub const MAX_PACKETS_PER_COMPOUND: usize = 32;

/// RTCP packet types (RFC 3550 section 12.1).
pub const PT_SR: u8 = 0xc8;
pub const PT_RR: u8 = 0xc9;
pub const PT_SDES: u8 = 0xca;
pub const PT_BYE: u8 = 0xcb;
pub const PT_APP: u8 = 0xcc;
/// RFC 4585 section 6.1 and RFC 3611: recognised by [`packet_type_name`], parsed as Unknown.
pub const PT_RTPFB: u8 = 0xcd;
pub const PT_PSFB: u8 = 0xce;
pub const PT_XR: u8 = 0xcf;

mod field {
    pub type Field = core::ops::Range<usize>;
    /// V(2) P(1) RC/SC/subtype(5)
    pub const VPC: usize = 0;
    pub const PT: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const SSRC: Field = 4..8;
    // Sender info, relative to the start of the SR packet.
    pub const NTP: Field = 8..16;
    pub const RTP_TS: Field = 16..20;
    pub const PACKET_COUNT: Field = 20..24;
    pub const OCTET_COUNT: Field = 24..28;
    // Report block, relative to its start.
    pub const RB_SSRC: Field = 0..4;
    pub const RB_FRACTION: usize = 4;
    pub const RB_CUMULATIVE: Field = 5..8;
    pub const RB_HIGHEST_SEQ: Field = 8..12;
    pub const RB_JITTER: Field = 12..16;
    pub const RB_LSR: Field = 16..20;
    pub const RB_DLSR: Field = 20..24;
    // APP
    pub const APP_NAME: Field = 8..12;
}

/// Why bytes are not valid RTCP. `offset` is where the offending packet starts in the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    #[error("RTCP packet at offset {offset} is shorter than its 4-byte header")]
    Truncated { offset: usize },
    #[error("RTCP packet at offset {offset} has version {version}, expected 2")]
    BadVersion { offset: usize, version: u8 },
    #[error("RTCP packet at offset {offset} claims more bytes than the datagram has")]
    LengthOverrun { offset: usize },
    #[error("compound RTCP starts with packet type {0}, not SR or RR")]
    FirstNotReport(u8),
    #[error("compound RTCP starts with a padded packet")]
    PaddedFirst,
    #[error("RTCP padding at offset {offset} in a packet that is not the last")]
    PaddingNotLast { offset: usize },
    #[error("RTCP padding count at offset {offset} is zero or exceeds the packet")]
    BadPadding { offset: usize },
    #[error("more than {MAX_PACKETS_PER_COMPOUND} RTCP packets in one datagram")]
    TooManyPackets,
    #[error("RTCP packet type {packet_type} body too short for its count")]
    BodyTooShort { packet_type: u8 },
    #[error("RTCP SDES chunk malformed")]
    BadSdes,
    #[error("buffer of {len} bytes is too small, {needed} needed")]
    BufferTooSmall { len: usize, needed: usize },
    #[error("RTCP field value out of range: {0}")]
    FieldRange(&'static str),
}

/// A short name for a packet type, for transcripts.
pub fn packet_type_name(pt: u8) -> &'static str {
    match pt {
        PT_SR => "SR",
        PT_RR => "RR",
        PT_SDES => "SDES",
        PT_BYE => "BYE",
        PT_APP => "APP",
        PT_RTPFB => "RTPFB",
        PT_PSFB => "PSFB",
        PT_XR => "XR",
        _ => "unknown",
    }
}

fn be16(b: &[u8], r: field::Field) -> u16 {
    match b.get(r) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

fn be32(b: &[u8], r: field::Field) -> u32 {
    match b.get(r) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

fn put(b: &mut [u8], r: field::Field, v: &[u8]) {
    if let Some(dst) = b.get_mut(r) {
        if dst.len() == v.len() {
            dst.copy_from_slice(v);
        }
    }
}

/// A view of one RTCP packet (the buffer may extend past it; see [`Packet::total_len`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking; accessors return 0 / empty for missing bytes.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and checks the header, version, length and padding of its first packet.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, RtcpError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks version 2, that `total_len()` fits the buffer and that any padding fits.
    pub fn check_len(&self) -> Result<(), RtcpError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(RtcpError::Truncated { offset: 0 });
        }
        if self.version() != VERSION {
            return Err(RtcpError::BadVersion {
                offset: 0,
                version: self.version(),
            });
        }
        let total = self.total_len();
        if total > b.len() {
            return Err(RtcpError::LengthOverrun { offset: 0 });
        }
        if self.padding() {
            let count = usize::from(b.get(total - 1).copied().unwrap_or(0));
            if count == 0 || count > total - HEADER_LEN {
                return Err(RtcpError::BadPadding { offset: 0 });
            }
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    pub fn version(&self) -> u8 {
        self.byte(field::VPC) >> 6
    }

    pub fn padding(&self) -> bool {
        self.byte(field::VPC) & 0x20 != 0
    }

    /// The 5-bit count: reception reports (SR/RR), chunks (SDES), sources (BYE), or subtype
    /// (APP, feedback FMT).
    pub fn count(&self) -> u8 {
        self.byte(field::VPC) & 0x1f
    }

    pub fn packet_type(&self) -> u8 {
        self.byte(field::PT)
    }

    /// The length field: packet length in 32-bit words minus one.
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The packet's length in bytes, header and padding included.
    pub fn total_len(&self) -> usize {
        (usize::from(self.length()) + 1) * 4
    }

    /// The first word after the header: the sender's SSRC for SR, RR, APP, RTPFB, PSFB and XR,
    /// the first chunk's or source's SSRC for SDES and BYE; 0 when absent.
    pub fn ssrc(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SSRC)
    }

    /// Padding bytes at the end of the packet (including the count byte), 0 without the P bit.
    pub fn padding_len(&self) -> usize {
        if !self.padding() {
            return 0;
        }
        let total = self.total_len();
        usize::from(
            self.buffer
                .as_ref()
                .get(total.saturating_sub(1))
                .copied()
                .unwrap_or(0),
        )
    }

    /// Everything after the 4-byte header, without padding. Empty if lengths don't fit.
    pub fn body(&self) -> &[u8] {
        let end = self.total_len().saturating_sub(self.padding_len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The packet's own bytes (`total_len()`), without what follows in the buffer.
    pub fn as_bytes(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..self.total_len()).unwrap_or(b)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Rewrites the first word after the header (see [`Packet::ssrc`]).
    pub fn set_ssrc(&mut self, ssrc: u32) {
        put(self.buffer.as_mut(), field::SSRC, &ssrc.to_be_bytes());
    }

    fn set_header(&mut self, padding: bool, count: u8, packet_type: u8, length: u16) {
        let b = self.buffer.as_mut();
        if let Some(x) = b.get_mut(field::VPC) {
            *x = (VERSION << 6) | (u8::from(padding) << 5) | (count & 0x1f);
        }
        if let Some(x) = b.get_mut(field::PT) {
            *x = packet_type;
        }
        put(b, field::LENGTH, &length.to_be_bytes());
    }
}

/// Iterates the packets of a datagram without the compound rules of appendix A.2 (for
/// reduced-size RTCP, RFC 5506). Stops after the first error, which it yields.
#[derive(Debug, Clone)]
pub struct PacketIter<'a> {
    data: &'a [u8],
    offset: usize,
    count: usize,
    failed: bool,
}

/// Iterates the packets in `data`, checking each packet's header, length and padding.
pub fn packets(data: &[u8]) -> PacketIter<'_> {
    PacketIter {
        data,
        offset: 0,
        count: 0,
        failed: false,
    }
}

impl<'a> Iterator for PacketIter<'a> {
    type Item = Result<Packet<&'a [u8]>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.data.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        let offset = self.offset;
        let result = (|| {
            if self.count >= MAX_PACKETS_PER_COMPOUND {
                return Err(RtcpError::TooManyPackets);
            }
            let p = Packet::new_checked(rest).map_err(|e| at_offset(e, offset))?;
            let bytes = rest.get(..p.total_len()).unwrap_or(rest);
            Ok(Packet::new_unchecked(bytes))
        })();
        match &result {
            Ok(p) => {
                self.offset += p.total_len();
                self.count += 1;
            }
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

fn at_offset(e: RtcpError, offset: usize) -> RtcpError {
    match e {
        RtcpError::Truncated { .. } => RtcpError::Truncated { offset },
        RtcpError::BadVersion { version, .. } => RtcpError::BadVersion { offset, version },
        RtcpError::LengthOverrun { .. } => RtcpError::LengthOverrun { offset },
        RtcpError::BadPadding { .. } => RtcpError::BadPadding { offset },
        RtcpError::PaddingNotLast { .. } => RtcpError::PaddingNotLast { offset },
        other => other,
    }
}

/// A compound RTCP datagram that passed the validity checks of RFC 3550 appendix A.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compound<'a> {
    data: &'a [u8],
}

impl<'a> Compound<'a> {
    /// Validates a datagram: every packet version 2; the first is SR or RR without padding
    /// (even when it is the only one, as appendix A.2's mask has it);
    /// padding only in the last packet; the packet lengths add up to the datagram length.
    pub fn new_checked(data: &'a [u8]) -> Result<Compound<'a>, RtcpError> {
        let mut first = true;
        let mut last_end = 0;
        for p in packets(data) {
            let p = p?;
            let offset = last_end;
            if first {
                if p.packet_type() != PT_SR && p.packet_type() != PT_RR {
                    return Err(RtcpError::FirstNotReport(p.packet_type()));
                }
                // Appendix A.2 masks the P bit of the first packet too.
                if p.padding() {
                    return Err(RtcpError::PaddedFirst);
                }
                first = false;
            }
            last_end = offset + p.total_len();
            if p.padding() && last_end != data.len() {
                return Err(RtcpError::PaddingNotLast { offset });
            }
        }
        if first {
            return Err(RtcpError::Truncated { offset: 0 });
        }
        Ok(Compound { data })
    }

    /// The packets, in order (all checked by `new_checked`).
    pub fn iter(&self) -> impl Iterator<Item = Packet<&'a [u8]>> + 'a {
        packets(self.data).map_while(Result::ok)
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }
}

/// Sender info of an SR (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed (RFC 3550 section 6.4.1: may be negative with duplicates).
    pub cumulative_lost: i32,
    pub highest_sequence: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Reads a block from 24 bytes.
    pub fn parse(b: &[u8]) -> Option<ReportBlock> {
        let b = b.get(..REPORT_BLOCK_LEN)?;
        let cum = match b.get(field::RB_CUMULATIVE) {
            // Sign-extend 24 bits.
            Some(&[x, y, z]) => i32::from_be_bytes([x, y, z, 0]) >> 8,
            _ => 0,
        };
        Some(ReportBlock {
            ssrc: be32(b, field::RB_SSRC),
            fraction_lost: b.get(field::RB_FRACTION).copied().unwrap_or(0),
            cumulative_lost: cum,
            highest_sequence: be32(b, field::RB_HIGHEST_SEQ),
            jitter: be32(b, field::RB_JITTER),
            last_sr: be32(b, field::RB_LSR),
            delay_since_last_sr: be32(b, field::RB_DLSR),
        })
    }

    /// Writes the block into the first 24 bytes of `b`; the cumulative loss is clamped to 24 bits.
    pub fn emit(&self, b: &mut [u8]) -> Result<(), RtcpError> {
        let len = b.len();
        let b = b
            .get_mut(..REPORT_BLOCK_LEN)
            .ok_or(RtcpError::BufferTooSmall {
                len,
                needed: REPORT_BLOCK_LEN,
            })?;
        put(b, field::RB_SSRC, &self.ssrc.to_be_bytes());
        if let Some(x) = b.get_mut(field::RB_FRACTION) {
            *x = self.fraction_lost;
        }
        let cum = self
            .cumulative_lost
            .clamp(-0x80_0000, 0x7f_ffff)
            .to_be_bytes();
        put(b, field::RB_CUMULATIVE, cum.get(1..4).unwrap_or(&[0, 0, 0]));
        put(
            b,
            field::RB_HIGHEST_SEQ,
            &self.highest_sequence.to_be_bytes(),
        );
        put(b, field::RB_JITTER, &self.jitter.to_be_bytes());
        put(b, field::RB_LSR, &self.last_sr.to_be_bytes());
        put(b, field::RB_DLSR, &self.delay_since_last_sr.to_be_bytes());
        Ok(())
    }
}

/// Report blocks, borrowed; iterate for [`ReportBlock`] values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(pub &'a [u8]);

impl<'a> ReportBlocks<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / REPORT_BLOCK_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.0
            .chunks_exact(REPORT_BLOCK_LEN)
            .filter_map(ReportBlock::parse)
    }
}

/// One SDES item (RFC 3550 section 6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// 1 CNAME, 2 NAME, 3 EMAIL, 4 PHONE, 5 LOC, 6 TOOL, 7 NOTE, 8 PRIV.
    pub kind: u8,
    pub value: &'a [u8],
}

/// SDES item type CNAME.
pub const SDES_CNAME: u8 = 1;

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    /// The raw item list, up to (not including) the terminating null and chunk padding.
    pub items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    pub fn items(&self) -> impl Iterator<Item = SdesItem<'a>> + 'a {
        let mut rest = self.items;
        core::iter::from_fn(move || {
            let (&kind, tail) = rest.split_first()?;
            if kind == 0 {
                return None;
            }
            let (&len, tail) = tail.split_first()?;
            let value = tail.get(..usize::from(len))?;
            rest = tail.get(usize::from(len)..)?;
            Some(SdesItem { kind, value })
        })
    }

    /// The CNAME item, if any.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|i| i.kind == SDES_CNAME).map(|i| i.value)
    }
}

/// SDES chunks, borrowed and validated by [`Repr::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunks<'a> {
    body: &'a [u8],
    count: u8,
}

impl<'a> SdesChunks<'a> {
    /// Splits one chunk off `b`: SSRC, items, a null octet, padding to 32 bits.
    fn split(b: &'a [u8]) -> Option<(SdesChunk<'a>, &'a [u8])> {
        let ssrc = be32(b.get(..4)?, 0..4);
        let mut at = 4usize;
        loop {
            let kind = *b.get(at)?;
            if kind == 0 {
                break;
            }
            let len = usize::from(*b.get(at + 1)?);
            at = at.checked_add(2 + len)?;
            b.get(..at)?;
        }
        let items = b.get(4..at)?;
        // The null octet(s) then pad to the next multiple of four.
        let end = (at + 1).div_ceil(4) * 4;
        let rest = b.get(end..)?;
        Some((SdesChunk { ssrc, items }, rest))
    }

    fn validate(body: &'a [u8], count: u8) -> Result<SdesChunks<'a>, RtcpError> {
        let mut rest = body;
        for _ in 0..count {
            let (_, r) = Self::split(rest).ok_or(RtcpError::BadSdes)?;
            rest = r;
        }
        Ok(SdesChunks { body, count })
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = SdesChunk<'a>> + 'a {
        let mut rest = self.body;
        let mut left = self.count;
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let (chunk, r) = Self::split(rest)?;
            rest = r;
            Some(chunk)
        })
    }

    /// The raw chunk bytes (what `emit` copies).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.body
    }
}

/// A high-level, borrowed representation of one RTCP packet. Padding is not represented:
/// `emit` never pads, `parse` drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    SenderReport {
        ssrc: u32,
        sender_info: SenderInfo,
        reports: ReportBlocks<'a>,
        /// Profile-specific extension after the report blocks.
        extension: &'a [u8],
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
        extension: &'a [u8],
    },
    SourceDescription(SdesChunks<'a>),
    Goodbye {
        /// `count` SSRCs, 4 bytes each.
        sources: &'a [u8],
        reason: Option<&'a [u8]>,
    },
    App {
        subtype: u8,
        ssrc: u32,
        name: [u8; 4],
        data: &'a [u8],
    },
    /// Any other packet type (RTPFB, PSFB, XR, ...), kept whole.
    Unknown {
        packet_type: u8,
        count: u8,
        body: &'a [u8],
    },
}

fn body_too_short(packet_type: u8) -> RtcpError {
    RtcpError::BodyTooShort { packet_type }
}

impl<'a> Repr<'a> {
    /// Parses one packet (checking it first).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>, RtcpError> {
        packet.check_len()?;
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let view = Packet::new_unchecked(bytes);
        let pt = view.packet_type();
        let count = view.count();
        let end = view.total_len().saturating_sub(view.padding_len());
        let body = bytes.get(HEADER_LEN..end).unwrap_or(&[]);
        let whole = bytes.get(..end).unwrap_or(&[]);
        let reports_len = usize::from(count) * REPORT_BLOCK_LEN;
        match pt {
            PT_SR => {
                let rb_start = field::OCTET_COUNT.end;
                let reports = whole
                    .get(rb_start..rb_start + reports_len)
                    .ok_or(body_too_short(pt))?;
                let ntp = match whole.get(field::NTP) {
                    Some(b) => b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
                    None => return Err(body_too_short(pt)),
                };
                Ok(Repr::SenderReport {
                    ssrc: view.ssrc(),
                    sender_info: SenderInfo {
                        ntp_timestamp: ntp,
                        rtp_timestamp: be32(whole, field::RTP_TS),
                        packet_count: be32(whole, field::PACKET_COUNT),
                        octet_count: be32(whole, field::OCTET_COUNT),
                    },
                    reports: ReportBlocks(reports),
                    extension: whole.get(rb_start + reports_len..).unwrap_or(&[]),
                })
            }
            PT_RR => {
                let rb_start = field::SSRC.end;
                let reports = whole
                    .get(rb_start..rb_start + reports_len)
                    .ok_or(body_too_short(pt))?;
                Ok(Repr::ReceiverReport {
                    ssrc: view.ssrc(),
                    reports: ReportBlocks(reports),
                    extension: whole.get(rb_start + reports_len..).unwrap_or(&[]),
                })
            }
            PT_SDES => Ok(Repr::SourceDescription(SdesChunks::validate(body, count)?)),
            PT_BYE => {
                let n = usize::from(count) * 4;
                let sources = body.get(..n).ok_or(body_too_short(pt))?;
                let rest = body.get(n..).unwrap_or(&[]);
                let reason = match rest.split_first() {
                    None => None,
                    Some((&len, tail)) => {
                        Some(tail.get(..usize::from(len)).ok_or(body_too_short(pt))?)
                    }
                };
                Ok(Repr::Goodbye { sources, reason })
            }
            PT_APP => {
                let name = match whole.get(field::APP_NAME) {
                    Some(&[a, b, c, d]) => [a, b, c, d],
                    _ => return Err(body_too_short(pt)),
                };
                Ok(Repr::App {
                    subtype: count,
                    ssrc: view.ssrc(),
                    name,
                    data: whole.get(field::APP_NAME.end..).unwrap_or(&[]),
                })
            }
            _ => Ok(Repr::Unknown {
                packet_type: pt,
                count,
                body,
            }),
        }
    }

    pub fn packet_type(&self) -> u8 {
        match self {
            Repr::SenderReport { .. } => PT_SR,
            Repr::ReceiverReport { .. } => PT_RR,
            Repr::SourceDescription(_) => PT_SDES,
            Repr::Goodbye { .. } => PT_BYE,
            Repr::App { .. } => PT_APP,
            Repr::Unknown { packet_type, .. } => *packet_type,
        }
    }

    fn count(&self) -> usize {
        match self {
            Repr::SenderReport { reports, .. } | Repr::ReceiverReport { reports, .. } => {
                reports.len()
            }
            Repr::SourceDescription(c) => c.len(),
            Repr::Goodbye { sources, .. } => sources.len() / 4,
            Repr::App { subtype, .. } => usize::from(*subtype),
            Repr::Unknown { count, .. } => usize::from(*count),
        }
    }

    /// Body length before rounding up to 32 bits.
    fn body_len(&self) -> usize {
        match self {
            Repr::SenderReport {
                reports, extension, ..
            } => 4 + SENDER_INFO_LEN + reports.0.len() + extension.len(),
            Repr::ReceiverReport {
                reports, extension, ..
            } => 4 + reports.0.len() + extension.len(),
            Repr::SourceDescription(c) => c.body.len(),
            Repr::Goodbye { sources, reason } => sources.len() + reason.map_or(0, |r| 1 + r.len()),
            Repr::App { data, .. } => 8 + data.len(),
            Repr::Unknown { body, .. } => body.len(),
        }
    }

    /// Length of the emitted packet, rounded up to a multiple of four (BYE reason and
    /// unaligned bodies are zero-filled).
    pub fn buffer_len(&self) -> usize {
        (HEADER_LEN + self.body_len()).div_ceil(4) * 4
    }

    /// Writes the packet into the start of `packet`'s buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), RtcpError> {
        let needed = self.buffer_len();
        let len = packet.buffer.as_ref().len();
        if len < needed {
            return Err(RtcpError::BufferTooSmall { len, needed });
        }
        let count = u8::try_from(self.count())
            .ok()
            .filter(|c| *c <= 0x1f)
            .ok_or(RtcpError::FieldRange("count"))?;
        let words = u16::try_from(needed / 4 - 1).map_err(|_| RtcpError::FieldRange("length"))?;
        if let Repr::Goodbye {
            sources,
            reason: Some(r),
        } = self
        {
            if r.len() > 255 || sources.len() % 4 != 0 {
                return Err(RtcpError::FieldRange("BYE"));
            }
        }
        if let Repr::SenderReport { reports, .. } | Repr::ReceiverReport { reports, .. } = self {
            if reports.0.len() % REPORT_BLOCK_LEN != 0 {
                return Err(RtcpError::FieldRange("report blocks"));
            }
        }
        packet.set_header(false, count, self.packet_type(), words);
        let buf = packet.buffer.as_mut();
        if let Some(rest) = buf.get_mut(HEADER_LEN..needed) {
            rest.fill(0);
        }
        let mut at = HEADER_LEN;
        let mut write = |buf: &mut [u8], bytes: &[u8]| {
            put(buf, at..at + bytes.len(), bytes);
            at += bytes.len();
        };
        match self {
            Repr::SenderReport {
                ssrc,
                sender_info: si,
                reports,
                extension,
            } => {
                write(buf, &ssrc.to_be_bytes());
                write(buf, &si.ntp_timestamp.to_be_bytes());
                write(buf, &si.rtp_timestamp.to_be_bytes());
                write(buf, &si.packet_count.to_be_bytes());
                write(buf, &si.octet_count.to_be_bytes());
                write(buf, reports.0);
                write(buf, extension);
            }
            Repr::ReceiverReport {
                ssrc,
                reports,
                extension,
            } => {
                write(buf, &ssrc.to_be_bytes());
                write(buf, reports.0);
                write(buf, extension);
            }
            Repr::SourceDescription(c) => write(buf, c.body),
            Repr::Goodbye { sources, reason } => {
                write(buf, sources);
                if let Some(r) = reason {
                    write(buf, &[u8::try_from(r.len()).unwrap_or(0)]);
                    write(buf, r);
                }
            }
            Repr::App {
                ssrc, name, data, ..
            } => {
                write(buf, &ssrc.to_be_bytes());
                write(buf, name);
                write(buf, data);
            }
            Repr::Unknown { body, .. } => write(buf, body),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // ndpi/rtcp_multiple_pkts_in_the_same_datagram.pcap, UDP payloads of packets 1 and 2.
    const SR_SDES: &str =
        "81c8000c5d931534dd3ac1704d614df800007d00000000c800007d000000000000000001\
        0000000000000000000000000000000081ca000e5d931534010835643933313533340725467265655357495443\
        482e6f7267202d2d20436f6d6520746f20436c7565436f6e2e636f6d000000";
    const RR_SDES: &str =
        "81c9000701932db400000000010000010000bec200000001000000000000000081ca000e\
        01932db40107313933326462340725467265655357495443482e6f7267202d2d20436f6d6520746f20436c7565\
        436f6e2e636f6d00000000";

    #[test]
    fn capture_sr_sdes() {
        let data = hex(SR_SDES);
        assert_eq!(data.len(), 112);
        let c = Compound::new_checked(&data).unwrap();
        let ps: Vec<_> = c.iter().collect();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].packet_type(), PT_SR);
        assert_eq!(ps[0].total_len(), 52);
        assert_eq!(ps[1].packet_type(), PT_SDES);
        assert_eq!(ps[1].total_len(), 60);
        match Repr::parse(&ps[0]).unwrap() {
            Repr::SenderReport {
                ssrc,
                sender_info,
                reports,
                extension,
            } => {
                assert_eq!(ssrc, 0x5d93_1534);
                assert_eq!(sender_info.ntp_timestamp, 0xdd3a_c170_4d61_4df8);
                assert_eq!(sender_info.rtp_timestamp, 0x7d00);
                assert_eq!(sender_info.packet_count, 0xc8);
                assert_eq!(sender_info.octet_count, 0x7d00);
                assert_eq!(reports.len(), 1);
                let rb = reports.iter().next().unwrap();
                assert_eq!(rb.ssrc, 0);
                assert_eq!(rb.cumulative_lost, 1);
                assert_eq!(rb.highest_sequence, 0);
                assert!(extension.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match Repr::parse(&ps[1]).unwrap() {
            Repr::SourceDescription(chunks) => {
                let chunk = chunks.iter().next().unwrap();
                assert_eq!(chunk.ssrc, 0x5d93_1534);
                assert_eq!(chunk.cname(), Some(&b"5d931534"[..]));
                let items: Vec<_> = chunk.items().collect();
                assert_eq!(items.len(), 2);
                assert_eq!(items[1].kind, 7);
                assert_eq!(items[1].value, b"FreeSWITCH.org -- Come to ClueCon.com");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capture_rr_sdes() {
        let data = hex(RR_SDES);
        let c = Compound::new_checked(&data).unwrap();
        let ps: Vec<_> = c.iter().collect();
        assert_eq!(ps.len(), 2);
        match Repr::parse(&ps[0]).unwrap() {
            Repr::ReceiverReport { ssrc, reports, .. } => {
                assert_eq!(ssrc, 0x0193_2db4);
                let rb = reports.iter().next().unwrap();
                assert_eq!(rb.ssrc, 0);
                assert_eq!(rb.fraction_lost, 1);
                assert_eq!(rb.cumulative_lost, 1);
                assert_eq!(rb.highest_sequence, 0xbec2);
                assert_eq!(rb.jitter, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trip_every_packet() {
        for s in [SR_SDES, RR_SDES] {
            let data = hex(s);
            let mut out = Vec::new();
            for p in Compound::new_checked(&data).unwrap().iter() {
                let repr = Repr::parse(&p).unwrap();
                assert_eq!(repr.buffer_len(), p.total_len());
                let mut buf = vec![0xa5; repr.buffer_len()];
                repr.emit(&mut Packet::new_unchecked(&mut buf)).unwrap();
                out.extend_from_slice(&buf);
            }
            assert_eq!(out, data);
        }
    }

    #[test]
    fn emit_bye_app_unknown() {
        let bye = Repr::Goodbye {
            sources: &[0, 0, 0, 7],
            reason: Some(b"bye"),
        };
        let mut buf = vec![0xa5; bye.buffer_len()];
        bye.emit(&mut Packet::new_unchecked(&mut buf)).unwrap();
        assert_eq!(
            buf,
            [0x81, 0xcb, 0x00, 0x02, 0, 0, 0, 7, 3, b'b', b'y', b'e']
        );
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap(), bye);

        let bye2 = Repr::Goodbye {
            sources: &[0, 0, 0, 7],
            reason: Some(b"ok"),
        };
        let mut buf = vec![0xa5; bye2.buffer_len()];
        bye2.emit(&mut Packet::new_unchecked(&mut buf)).unwrap();
        assert_eq!(buf, [0x81, 0xcb, 0x00, 0x02, 0, 0, 0, 7, 2, b'o', b'k', 0]);

        let app = Repr::App {
            subtype: 3,
            ssrc: 0x0102_0304,
            name: *b"TEST",
            data: &[9, 9, 9, 9],
        };
        let mut buf = vec![0xa5; app.buffer_len()];
        app.emit(&mut Packet::new_unchecked(&mut buf)).unwrap();
        assert_eq!(
            buf,
            [0x83, 0xcc, 0, 3, 1, 2, 3, 4, b'T', b'E', b'S', b'T', 9, 9, 9, 9]
        );
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap(), app);

        // RTPFB generic NACK (RFC 4585 section 6.2.1) stays Unknown.
        let nack = [0x81, 0xcd, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 5, 0, 0];
        let r = Repr::parse(&Packet::new_unchecked(&nack[..])).unwrap();
        assert_eq!(
            r,
            Repr::Unknown {
                packet_type: PT_RTPFB,
                count: 1,
                body: &nack[4..]
            }
        );
        let mut buf = vec![0xa5; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut buf)).unwrap();
        assert_eq!(buf, nack);
        assert_eq!(packet_type_name(PT_RTPFB), "RTPFB");
    }

    #[test]
    fn compound_validation_errors() {
        let sr = hex(SR_SDES);
        let rr_only = [0x80u8, 0xc9, 0, 1, 0, 0, 0, 1];
        let mut padded_first = rr_only.to_vec();
        padded_first[0] |= 0x20;
        padded_first[3] = 2;
        padded_first.extend_from_slice(&[0, 0, 0, 4]);
        let mut padded_middle = padded_first.clone();
        padded_middle.extend_from_slice(&rr_only);
        let mut rr_then_padded_sdes = rr_only.to_vec();
        rr_then_padded_sdes.extend_from_slice(&[0xa0, 0xca, 0, 1, 0, 0, 0, 4]);
        let cases: Vec<(Vec<u8>, RtcpError)> = vec![
            (vec![], RtcpError::Truncated { offset: 0 }),
            (vec![0x81, 0xc9], RtcpError::Truncated { offset: 0 }),
            (
                [&rr_only[..], &[0x80, 0xca]].concat(),
                RtcpError::Truncated { offset: 8 },
            ),
            (
                vec![0x40, 0xc9, 0, 0],
                RtcpError::BadVersion {
                    offset: 0,
                    version: 1,
                },
            ),
            (
                [&rr_only[..], &[0x40, 0xca, 0, 0]].concat(),
                RtcpError::BadVersion {
                    offset: 8,
                    version: 1,
                },
            ),
            (sr[..111].to_vec(), RtcpError::LengthOverrun { offset: 52 }),
            (vec![0x81, 0xca, 0, 0], RtcpError::FirstNotReport(PT_SDES)),
            (padded_middle, RtcpError::PaddedFirst),
            (padded_first.clone(), RtcpError::PaddedFirst),
            (
                [&rr_only[..], &padded_first[..], &rr_only[..]].concat(),
                RtcpError::PaddingNotLast { offset: 8 },
            ),
            (
                vec![0xa0, 0xc9, 0, 1, 0, 0, 0, 0],
                RtcpError::BadPadding { offset: 0 },
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(
                Compound::new_checked(&bytes).unwrap_err(),
                err,
                "{bytes:02x?}"
            );
        }
        // Padding in the last packet is fine.
        assert!(Compound::new_checked(&rr_then_padded_sdes).is_ok());
        assert!(packets(&padded_first).all(|p| p.is_ok()));
        // Reduced-size RTCP (a lone feedback packet) passes the plain iterator only.
        let nack = [0x81u8, 0xcd, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        assert!(Compound::new_checked(&nack).is_err());
        assert_eq!(packets(&nack).filter(Result::is_ok).count(), 1);
        // Too many packets.
        let many: Vec<u8> = rr_only.iter().copied().cycle().take(8 * 33).collect();
        assert_eq!(
            Compound::new_checked(&many).unwrap_err(),
            RtcpError::TooManyPackets
        );
    }

    #[test]
    fn body_errors() {
        let cases: &[(&[u8], RtcpError)] = &[
            // SR claiming one report block without room for it.
            (
                &[
                    0x81, 0xc8, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0,
                ],
                RtcpError::BodyTooShort { packet_type: PT_SR },
            ),
            (
                &[0x82, 0xc9, 0, 1, 0, 0, 0, 1],
                RtcpError::BodyTooShort { packet_type: PT_RR },
            ),
            (
                &[0x82, 0xcb, 0, 1, 0, 0, 0, 1],
                RtcpError::BodyTooShort {
                    packet_type: PT_BYE,
                },
            ),
            (
                &[0x81, 0xcb, 0, 2, 0, 0, 0, 1, 9, 0, 0, 0],
                RtcpError::BodyTooShort {
                    packet_type: PT_BYE,
                },
            ),
            (
                &[0x80, 0xcc, 0, 1, 0, 0, 0, 1],
                RtcpError::BodyTooShort {
                    packet_type: PT_APP,
                },
            ),
            (
                &[0x81, 0xca, 0, 2, 0, 0, 0, 1, 1, 9, 0, 0],
                RtcpError::BadSdes,
            ),
            (
                &[0x82, 0xca, 0, 2, 0, 0, 0, 1, 1, 0, 0, 0],
                RtcpError::BadSdes,
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(*bytes)).unwrap_err(),
                *err,
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn report_block_negative_loss() {
        let rb = ReportBlock {
            ssrc: 1,
            fraction_lost: 0,
            cumulative_lost: -2,
            highest_sequence: 3,
            jitter: 4,
            last_sr: 5,
            delay_since_last_sr: 6,
        };
        let mut buf = [0xa5; REPORT_BLOCK_LEN];
        rb.emit(&mut buf).unwrap();
        assert_eq!(&buf[4..8], &[0, 0xff, 0xff, 0xfe]);
        assert_eq!(ReportBlock::parse(&buf), Some(rb));
    }

    #[test]
    fn set_ssrc_in_place() {
        let mut data = hex(RR_SDES);
        Packet::new_unchecked(&mut data[..]).set_ssrc(0xaabb_ccdd);
        assert_eq!(&data[4..8], &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Compound::new_checked(&bytes);
            for p in packets(&bytes).flatten() {
                let _ = (p.body(), p.ssrc(), p.as_bytes());
                if let Ok(repr) = Repr::parse(&p) {
                    let mut buf = vec![0xa5; repr.buffer_len()];
                    repr.emit(&mut Packet::new_unchecked(&mut buf)).unwrap();
                    let again = Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap();
                    prop_assert_eq!(again.packet_type(), repr.packet_type());
                    if let (Repr::SourceDescription(a), Repr::SourceDescription(b)) = (again, repr) {
                        prop_assert_eq!(a.len(), b.len());
                    }
                }
            }
        }

        #[test]
        fn valid_headers_never_panic(count in 0u8..32, pt in 192u8..224, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let words = body.len() / 4;
            let mut bytes = vec![0x80 | count, pt, 0, u8::try_from(words).unwrap()];
            bytes.extend_from_slice(&body[..words * 4]);
            let _ = Repr::parse(&Packet::new_unchecked(&bytes[..]));
        }
    }
}
