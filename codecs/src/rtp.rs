//! RTP data packets (RFC 3550 section 5.1): a zero-copy [`Packet`] view, an owned-header [`Repr`],
//! and the RTP/RTCP/STUN/DTLS demultiplexer ([`classify`], RFC 5761 section 4, RFC 7983).
//!
//! Nothing here ever panics, allocates or reads the clock. Accessors of a view built with
//! [`Packet::new_unchecked`] return 0 / empty for bytes the buffer does not have; use
//! [`Packet::new_checked`] on untrusted input, which validates the version, the CSRC list, the
//! header extension and the padding against the buffer length once.

use core::fmt;

/// The RTP version this module understands (RFC 3550 section 5.1).
pub const VERSION: u8 = 2;
/// Length of the fixed header, without CSRCs or extension.
pub const HEADER_LEN: usize = 12;
/// The CSRC count is a 4-bit field.
pub const MAX_CSRC: usize = 15;
/// An extension's length is a 16-bit count of 32-bit words (RFC 3550 section 5.3.1).
pub const MAX_EXTENSION_DATA_LEN: usize = 0xffff * 4;

mod field {
    #![allow(dead_code)]
    pub type Field = core::ops::Range<usize>;

    /// V(2) P(1) X(1) CC(4)
    pub const VPXCC: usize = 0;
    /// M(1) PT(7)
    pub const MPT: usize = 1;
    pub const SEQUENCE: Field = 2..4;
    pub const TIMESTAMP: Field = 4..8;
    pub const SSRC: Field = 8..12;
    pub const CSRC_START: usize = 12;
    /// Within the header extension: "defined by profile" then length in words.
    pub const EXT_PROFILE: Field = 0..2;
    pub const EXT_LENGTH: Field = 2..4;
    pub const EXT_HEADER_LEN: usize = 4;
}

/// Why a buffer is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("RTP packet of {len} bytes is shorter than the 12-byte fixed header")]
    TooShort { len: usize },
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTP CSRC list ({count} entries) runs past the end of the packet")]
    CsrcOverrun { count: u8 },
    #[error("RTP header extension runs past the end of the packet")]
    ExtensionOverrun,
    #[error("RTP padding count {count} is zero or exceeds the payload")]
    BadPadding { count: u8 },
    #[error("buffer of {len} bytes is too small, {needed} needed")]
    BufferTooSmall { len: usize, needed: usize },
    #[error("RTP field value out of range: {0}")]
    FieldRange(&'static str),
}

/// A read/write view of an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
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

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors return 0 for bytes that are missing.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and validates it with [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, RtpError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version and that the fixed header, CSRC list, extension and padding all fit.
    pub fn check_len(&self) -> Result<(), RtpError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(RtpError::TooShort { len });
        }
        if self.version() != VERSION {
            return Err(RtpError::BadVersion(self.version()));
        }
        let csrc_end = field::CSRC_START + usize::from(self.csrc_count()) * 4;
        if csrc_end > len {
            return Err(RtpError::CsrcOverrun {
                count: self.csrc_count(),
            });
        }
        let header_end = self.header_len();
        if header_end > len {
            return Err(RtpError::ExtensionOverrun);
        }
        if self.padding() {
            let count = self.buffer.as_ref().last().copied().unwrap_or(0);
            if count == 0 || usize::from(count) > len - header_end {
                return Err(RtpError::BadPadding { count });
            }
        }
        Ok(())
    }

    /// Gives back the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    pub fn version(&self) -> u8 {
        self.byte(field::VPXCC) >> 6
    }

    pub fn padding(&self) -> bool {
        self.byte(field::VPXCC) & 0x20 != 0
    }

    pub fn extension(&self) -> bool {
        self.byte(field::VPXCC) & 0x10 != 0
    }

    pub fn csrc_count(&self) -> u8 {
        self.byte(field::VPXCC) & 0x0f
    }

    pub fn marker(&self) -> bool {
        self.byte(field::MPT) & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.byte(field::MPT) & 0x7f
    }

    pub fn sequence_number(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SEQUENCE)
    }

    pub fn timestamp(&self) -> u32 {
        be32(self.buffer.as_ref(), field::TIMESTAMP)
    }

    pub fn ssrc(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SSRC)
    }

    /// The `i`-th contributing source, `None` past the CSRC count or the buffer.
    pub fn csrc(&self, i: usize) -> Option<u32> {
        if i >= usize::from(self.csrc_count()) {
            return None;
        }
        let start = field::CSRC_START + i * 4;
        let bytes = self.buffer.as_ref().get(start..start + 4)?;
        Some(be32(bytes, 0..4))
    }

    /// Offset of the header extension (or of the payload when there is none).
    fn extension_start(&self) -> usize {
        field::CSRC_START + usize::from(self.csrc_count()) * 4
    }

    /// The header extension: the profile-defined 16 bits and the data (a multiple of 4 bytes).
    pub fn extension_header(&self) -> Option<(u16, &[u8])> {
        if !self.extension() {
            return None;
        }
        let ext = self.buffer.as_ref().get(self.extension_start()..)?;
        let profile = be16(ext, field::EXT_PROFILE);
        let words = usize::from(be16(ext, field::EXT_LENGTH));
        let data = ext.get(field::EXT_HEADER_LEN..field::EXT_HEADER_LEN + words * 4)?;
        Some((profile, data))
    }

    /// Length of fixed header, CSRCs and extension: where the payload starts.
    pub fn header_len(&self) -> usize {
        let start = self.extension_start();
        if !self.extension() {
            return start;
        }
        let words = self
            .buffer
            .as_ref()
            .get(start..)
            .map_or(0, |ext| usize::from(be16(ext, field::EXT_LENGTH)));
        start + field::EXT_HEADER_LEN + words * 4
    }

    /// Number of padding bytes at the end (including the count byte), 0 without the P bit.
    pub fn padding_len(&self) -> u8 {
        if self.padding() {
            self.buffer.as_ref().last().copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// The payload, without padding. Empty when the lengths do not fit.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = b.len().saturating_sub(usize::from(self.padding_len()));
        b.get(self.header_len()..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_byte(&mut self, i: usize, v: u8) {
        if let Some(b) = self.buffer.as_mut().get_mut(i) {
            *b = v;
        }
    }

    /// Writes V, P, X and CC at once (used by [`Repr::emit`]).
    fn set_first_byte(&mut self, padding: bool, extension: bool, csrc_count: u8) {
        let v = (VERSION << 6)
            | (u8::from(padding) << 5)
            | (u8::from(extension) << 4)
            | (csrc_count & 0x0f);
        self.set_byte(field::VPXCC, v);
    }

    pub fn set_marker(&mut self, marker: bool) {
        let v = (self.byte(field::MPT) & 0x7f) | (u8::from(marker) << 7);
        self.set_byte(field::MPT, v);
    }

    /// Sets the 7-bit payload type; higher bits of `pt` are ignored.
    pub fn set_payload_type(&mut self, pt: u8) {
        let v = (self.byte(field::MPT) & 0x80) | (pt & 0x7f);
        self.set_byte(field::MPT, v);
    }

    pub fn set_sequence_number(&mut self, seq: u16) {
        put(self.buffer.as_mut(), field::SEQUENCE, &seq.to_be_bytes());
    }

    pub fn set_timestamp(&mut self, ts: u32) {
        put(self.buffer.as_mut(), field::TIMESTAMP, &ts.to_be_bytes());
    }

    pub fn set_ssrc(&mut self, ssrc: u32) {
        put(self.buffer.as_mut(), field::SSRC, &ssrc.to_be_bytes());
    }

    /// Sets the `i`-th CSRC; does nothing past the CSRC count or the buffer.
    pub fn set_csrc(&mut self, i: usize, csrc: u32) {
        if i < usize::from(self.csrc_count()) {
            let start = field::CSRC_START + i * 4;
            put(self.buffer.as_mut(), start..start + 4, &csrc.to_be_bytes());
        }
    }

    /// The payload bytes, mutable, without padding.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let pad = usize::from(self.padding_len());
        let b = self.buffer.as_mut();
        let end = b.len().saturating_sub(pad);
        b.get_mut(start..end).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Up to 15 contributing sources, stored inline so [`Repr`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Csrcs {
    len: u8,
    list: [u32; MAX_CSRC],
}

impl Csrcs {
    /// Copies a list of at most 15 sources; `None` when longer.
    pub fn from_slice(csrcs: &[u32]) -> Option<Csrcs> {
        let mut out = Csrcs::default();
        out.list.get_mut(..csrcs.len())?.copy_from_slice(csrcs);
        out.len = u8::try_from(csrcs.len()).ok()?;
        Some(out)
    }

    pub fn as_slice(&self) -> &[u32] {
        self.list.get(..usize::from(self.len)).unwrap_or(&[])
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Csrcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// An RTP header extension (RFC 3550 section 5.3.1); `data.len()` must be a multiple of 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A high-level representation of an RTP packet. The payload is borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: Csrcs,
    pub extension: Option<Extension<'a>>,
    pub payload: &'a [u8],
    /// Padding bytes after the payload, counting the final count byte; 0 means no padding.
    pub padding: u8,
}

impl<'a> Repr<'a> {
    /// Parses a packet that the caller may not have checked yet.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>, RtpError> {
        packet.check_len()?;
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let view = Packet::new_unchecked(bytes);
        let mut list = [0u32; MAX_CSRC];
        for (i, slot) in list
            .iter_mut()
            .enumerate()
            .take(usize::from(view.csrc_count()))
        {
            *slot = view.csrc(i).unwrap_or(0);
        }
        let extension = if view.extension() {
            let ext_start = view.extension_start();
            let header_end = view.header_len();
            let data = bytes
                .get(ext_start + field::EXT_HEADER_LEN..header_end)
                .ok_or(RtpError::ExtensionOverrun)?;
            let profile = bytes
                .get(ext_start..)
                .map_or(0, |e| be16(e, field::EXT_PROFILE));
            Some(Extension { profile, data })
        } else {
            None
        };
        let padding = view.padding_len();
        let end = bytes.len().saturating_sub(usize::from(padding));
        let payload = bytes.get(view.header_len()..end).unwrap_or(&[]);
        Ok(Repr {
            marker: view.marker(),
            payload_type: view.payload_type(),
            sequence_number: view.sequence_number(),
            timestamp: view.timestamp(),
            ssrc: view.ssrc(),
            csrcs: Csrcs {
                len: view.csrc_count(),
                list,
            },
            extension,
            payload,
            padding,
        })
    }

    /// Length of the header (fixed part, CSRCs, extension), where the payload starts.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
            + self.csrcs.len() * 4
            + self
                .extension
                .map_or(0, |e| field::EXT_HEADER_LEN + e.data.len())
    }

    /// Total length of the emitted packet.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len() + usize::from(self.padding)
    }

    /// Writes the whole packet. The buffer must be exactly or at least `buffer_len()` long;
    /// with padding, the packet ends at `buffer_len()` and the count byte lands there.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), RtpError> {
        let needed = self.buffer_len();
        let len = packet.buffer.as_ref().len();
        if len < needed {
            return Err(RtpError::BufferTooSmall { len, needed });
        }
        if self.payload_type > 0x7f {
            return Err(RtpError::FieldRange("payload type"));
        }
        let ext_words = match self.extension {
            Some(e) if e.data.len() % 4 != 0 || e.data.len() > MAX_EXTENSION_DATA_LEN => {
                return Err(RtpError::FieldRange("extension length"));
            }
            Some(e) => Some(
                u16::try_from(e.data.len() / 4)
                    .map_err(|_| RtpError::FieldRange("extension length"))?,
            ),
            None => None,
        };
        let cc = u8::try_from(self.csrcs.len()).map_err(|_| RtpError::FieldRange("CSRC count"))?;
        packet.set_first_byte(self.padding != 0, self.extension.is_some(), cc);
        packet.set_byte(field::MPT, 0);
        packet.set_marker(self.marker);
        packet.set_payload_type(self.payload_type);
        packet.set_sequence_number(self.sequence_number);
        packet.set_timestamp(self.timestamp);
        packet.set_ssrc(self.ssrc);
        for (i, c) in self.csrcs.as_slice().iter().enumerate() {
            packet.set_csrc(i, *c);
        }
        let buf = packet.buffer.as_mut();
        let mut at = HEADER_LEN + self.csrcs.len() * 4;
        if let (Some(e), Some(words)) = (self.extension, ext_words) {
            put(buf, at..at + 2, &e.profile.to_be_bytes());
            put(buf, at + 2..at + 4, &words.to_be_bytes());
            at += field::EXT_HEADER_LEN;
            put(buf, at..at + e.data.len(), e.data);
            at += e.data.len();
        }
        put(buf, at..at + self.payload.len(), self.payload);
        at += self.payload.len();
        if self.padding != 0 {
            let pad_end = at + usize::from(self.padding);
            if let Some(pad) = buf.get_mut(at..pad_end) {
                pad.fill(0);
                if let Some(last) = pad.last_mut() {
                    *last = self.padding;
                }
            }
        }
        Ok(())
    }
}

/// What a datagram on a media port is (RFC 7983 section 7, RFC 5761 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Rtp,
    Rtcp,
    Stun,
    Dtls,
    /// ZRTP or anything else; the relay drops it.
    Unknown,
}

/// Classifies a datagram by its first bytes, cheaply and without validating it.
///
/// First byte 0-3 is STUN, 20-63 DTLS, 128-191 RTP or RTCP (RFC 7983). RTP and RTCP are told
/// apart by the second byte: 192-223 (RTCP packet types, or RTP payload types 64-95 with the
/// marker set, which RFC 5761 section 4 forbids when multiplexing) means RTCP.
pub fn classify(bytes: &[u8]) -> PacketKind {
    let Some(&first) = bytes.first() else {
        return PacketKind::Unknown;
    };
    match first {
        0..=3 if bytes.len() >= 20 => PacketKind::Stun,
        20..=63 => PacketKind::Dtls,
        128..=191 => match bytes.get(1) {
            Some(192..=223) if bytes.len() >= 8 => PacketKind::Rtcp,
            Some(192..=223) => PacketKind::Unknown,
            Some(_) if bytes.len() >= HEADER_LEN => PacketKind::Rtp,
            _ => PacketKind::Unknown,
        },
        _ => PacketKind::Unknown,
    }
}

/// True when `bytes` is plausibly RTP: version 2, at least the fixed header, not an RTCP
/// packet type (see [`classify`]). Does not validate CSRC, extension or padding lengths.
pub fn looks_like_rtp(bytes: &[u8]) -> bool {
    classify(bytes) == PacketKind::Rtp
}

/// True when `bytes` is plausibly RTCP (version 2, packet type 192-223, at least 8 bytes).
pub fn looks_like_rtcp(bytes: &[u8]) -> bool {
    classify(bytes) == PacketKind::Rtcp
}

/// A static payload type of RFC 3551 table 4 and 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticPayloadType {
    pub payload_type: u8,
    pub encoding: &'static str,
    pub clock_rate: u32,
    /// Audio channels; `None` for video.
    pub channels: Option<u8>,
}

/// RFC 3551 section 6 tables 4 and 5 (G722 is listed at 8000 Hz although it samples at
/// 16000 Hz, section 4.5.2).
pub const STATIC_PAYLOAD_TYPES: &[StaticPayloadType] = &[
    spt(0, "PCMU", 8000, Some(1)),
    spt(3, "GSM", 8000, Some(1)),
    spt(4, "G723", 8000, Some(1)),
    spt(5, "DVI4", 8000, Some(1)),
    spt(6, "DVI4", 16000, Some(1)),
    spt(7, "LPC", 8000, Some(1)),
    spt(8, "PCMA", 8000, Some(1)),
    spt(9, "G722", 8000, Some(1)),
    spt(10, "L16", 44100, Some(2)),
    spt(11, "L16", 44100, Some(1)),
    spt(12, "QCELP", 8000, Some(1)),
    spt(13, "CN", 8000, Some(1)),
    spt(14, "MPA", 90000, None),
    spt(15, "G728", 8000, Some(1)),
    spt(16, "DVI4", 11025, Some(1)),
    spt(17, "DVI4", 22050, Some(1)),
    spt(18, "G729", 8000, Some(1)),
    spt(25, "CelB", 90000, None),
    spt(26, "JPEG", 90000, None),
    spt(28, "nv", 90000, None),
    spt(31, "H261", 90000, None),
    spt(32, "MPV", 90000, None),
    spt(33, "MP2T", 90000, None),
    spt(34, "H263", 90000, None),
];

const fn spt(
    payload_type: u8,
    encoding: &'static str,
    clock_rate: u32,
    channels: Option<u8>,
) -> StaticPayloadType {
    StaticPayloadType {
        payload_type,
        encoding,
        clock_rate,
        channels,
    }
}

/// Looks up a static payload type (RFC 3551); `None` for dynamic or unassigned ones.
pub fn static_payload_type(pt: u8) -> Option<&'static StaticPayloadType> {
    STATIC_PAYLOAD_TYPES.iter().find(|s| s.payload_type == pt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // sipp/dtmf_2833_pound.pcap, first packet: PT 101 with marker, RFC 4733 payload.
    const DTMF_FIRST: [u8; 16] = [
        0x80, 0xe5, 0x20, 0xf4, 0x00, 0x01, 0x69, 0xe0, 0x0e, 0x05, 0x38, 0x4e, 0x0b, 0x0a, 0x00,
        0x00,
    ];

    // CC=2, X=1 with one word, P=1 with 3 padding bytes.
    const FULL: [u8; 35] = [
        0xb2, 0x08, 0x00, 0x07, 0x00, 0x00, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, // fixed
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, // csrcs
        0xbe, 0xde, 0x00, 0x01, 0x10, 0xff, 0x00, 0x00, // extension
        0x01, 0x02, 0x03, 0x04, // payload
        0x00, 0x00, 0x03, // padding
    ];

    #[test]
    fn parse_capture_packet() {
        let p = Packet::new_checked(&DTMF_FIRST[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 101);
        assert_eq!(p.sequence_number(), 0x20f4);
        assert_eq!(p.timestamp(), 0x0001_69e0);
        assert_eq!(p.ssrc(), 0x0e05_384e);
        assert_eq!(p.payload(), &[0x0b, 0x0a, 0x00, 0x00]);
        assert_eq!(p.extension_header(), None);
        assert_eq!(p.csrc(0), None);
    }

    #[test]
    fn parse_full_packet() {
        let p = Packet::new_checked(&FULL[..]).unwrap();
        assert!(p.padding() && p.extension());
        assert_eq!(p.csrc_count(), 2);
        assert_eq!(p.csrc(0), Some(1));
        assert_eq!(p.csrc(1), Some(2));
        assert_eq!(p.csrc(2), None);
        assert_eq!(
            p.extension_header(),
            Some((0xbede, &[0x10, 0xff, 0, 0][..]))
        );
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.padding_len(), 3);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(p.payload_type(), 8);
        assert!(!p.marker());
    }

    #[test]
    fn check_len_errors() {
        let cases: &[(&[u8], RtpError)] = &[
            (&[], RtpError::TooShort { len: 0 }),
            (&DTMF_FIRST[..11], RtpError::TooShort { len: 11 }),
            (
                &[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                RtpError::BadVersion(1),
            ),
            (
                &[0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                RtpError::CsrcOverrun { count: 1 },
            ),
            (
                &[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                RtpError::ExtensionOverrun,
            ),
            (
                &[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                RtpError::ExtensionOverrun,
            ),
            (
                &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                RtpError::BadPadding { count: 0 },
            ),
            (
                &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
                RtpError::BadPadding { count: 5 },
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(
                Packet::new_checked(*bytes).unwrap_err(),
                *err,
                "{bytes:02x?}"
            );
        }
        // Padding that exactly consumes the payload is fine.
        let ok = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        assert_eq!(
            Packet::new_checked(&ok[..]).unwrap().payload(),
            &[] as &[u8]
        );
    }

    #[test]
    fn repr_round_trip() {
        for bytes in [&DTMF_FIRST[..], &FULL[..]] {
            let repr = Repr::parse(&Packet::new_unchecked(bytes)).unwrap();
            assert_eq!(repr.buffer_len(), bytes.len());
            let mut buf = vec![0xa5; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf)).unwrap();
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn emit_from_scratch() {
        let repr = Repr {
            marker: true,
            payload_type: 0,
            sequence_number: 1,
            timestamp: 160,
            ssrc: 0x1234_5678,
            csrcs: Csrcs::default(),
            extension: None,
            payload: &[0xff; 4],
            padding: 0,
        };
        let mut buf = [0xa5; 16];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(
            buf,
            [0x80, 0x80, 0, 1, 0, 0, 0, 0xa0, 0x12, 0x34, 0x56, 0x78, 0xff, 0xff, 0xff, 0xff]
        );
        let mut small = [0xa5; 15];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut small[..])),
            Err(RtpError::BufferTooSmall {
                len: 15,
                needed: 16
            })
        );
        let bad_ext = Repr {
            extension: Some(Extension {
                profile: 1,
                data: &[1, 2],
            }),
            ..repr
        };
        let mut buf = [0xa5; 32];
        assert_eq!(
            bad_ext.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(RtpError::FieldRange("extension length"))
        );
    }

    #[test]
    fn setters_rewrite_in_place() {
        let mut buf = DTMF_FIRST;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_payload_type(96);
        p.set_marker(false);
        p.set_sequence_number(0xabcd);
        p.set_timestamp(0x0102_0304);
        p.set_ssrc(0xcafe_f00d);
        p.payload_mut()[0] = 0x05;
        assert_eq!(
            buf,
            [0x80, 0x60, 0xab, 0xcd, 1, 2, 3, 4, 0xca, 0xfe, 0xf0, 0x0d, 0x05, 0x0a, 0x00, 0x00]
        );
        // Setters on a short buffer do nothing rather than panic.
        let mut short = [0x80u8, 0];
        let mut p = Packet::new_unchecked(&mut short[..]);
        p.set_ssrc(1);
        p.set_payload_type(8);
        assert_eq!(short, [0x80, 8]);
    }

    #[test]
    fn classify_table() {
        let rtcp_sr = [0x81, 0xc8, 0x00, 0x0c, 0, 0, 0, 0];
        let cases: &[(&[u8], PacketKind)] = &[
            (&DTMF_FIRST, PacketKind::Rtp),
            (&rtcp_sr, PacketKind::Rtcp),
            (&[0x80, 0xc9, 0, 1, 0, 0, 0, 0], PacketKind::Rtcp),
            (&[0x80, 0xdf, 0, 1, 0, 0, 0, 0], PacketKind::Rtcp),
            (&[0x80, 0xe0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], PacketKind::Rtp),
            (&[0x80, 0xc8, 0, 1], PacketKind::Unknown),
            (&[0x80, 0x00, 0, 1], PacketKind::Unknown),
            (
                &[
                    0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
                PacketKind::Stun,
            ),
            (&[22, 0xfe, 0xfd], PacketKind::Dtls),
            (
                &[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                PacketKind::Unknown,
            ),
            (&[], PacketKind::Unknown),
        ];
        for (bytes, kind) in cases {
            assert_eq!(classify(bytes), *kind, "{bytes:02x?}");
        }
        assert!(looks_like_rtp(&DTMF_FIRST));
        assert!(looks_like_rtcp(&rtcp_sr));
    }

    #[test]
    fn static_table() {
        assert_eq!(static_payload_type(0).unwrap().encoding, "PCMU");
        assert_eq!(static_payload_type(9).unwrap().clock_rate, 8000);
        assert_eq!(static_payload_type(18).unwrap().encoding, "G729");
        assert!(static_payload_type(96).is_none());
        assert!(static_payload_type(2).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let p = Packet::new_unchecked(&bytes[..]);
            let _ = (p.payload(), p.extension_header(), p.csrc(3), p.header_len());
            let _ = classify(&bytes);
            if let Ok(repr) = Repr::parse(&Packet::new_unchecked(&bytes[..])) {
                let mut buf = vec![0xa5; repr.buffer_len()];
                repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
                // Padding bytes other than the count byte are not preserved; compare the rest.
                let end = buf.len() - usize::from(repr.padding);
                prop_assert_eq!(&buf[..end], &bytes[..end]);
                prop_assert_eq!(buf.last(), bytes.last());
            }
        }
    }
}
