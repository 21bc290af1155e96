//! TPKT (RFC 1006 section 6): the 4-byte header that frames H.225.0 call signalling and H.245
//! on TCP. A zero-copy [`Packet`] view, a [`Repr`], a stream framer ([`TpktFramer`]) and a cheap
//! content heuristic ([`looks_like_tpkt`]) for finding H.225.0 on any TCP port.
//!
//! Nothing here panics, reads the clock or does I/O. [`Packet::new_checked`] validates the
//! version, the reserved octet and the length field against the buffer once; accessors of an
//! unchecked view return 0 / empty for bytes the buffer does not have.
//!
//! A TPKT whose length field is exactly 4 (a header and no payload) is not an error: H.323
//! endpoints send such an empty TPKT as a keepalive; the framer reports it as an empty frame and
//! counts it.

use bytes::{Buf, Bytes, BytesMut};

/// The only TPKT version (RFC 1006 section 6).
pub const VERSION: u8 = 3;
/// Length of the header: version, reserved, 16-bit length.
pub const HEADER_LEN: usize = 4;
/// The smallest legal length field: a bare header, used by H.323 as a keepalive.
pub const MIN_TPKT_LEN: usize = HEADER_LEN;
/// The largest length the 16-bit field can carry, header included.
pub const MAX_TPKT_LEN: usize = 0xffff;
/// The largest payload a TPKT can carry.
pub const MAX_PAYLOAD_LEN: usize = MAX_TPKT_LEN - HEADER_LEN;
/// Q.931 protocol discriminator (Q.931 clause 4.2), the first payload octet of H.225.0 call
/// signalling. H.245 over TPKT has no discriminator: its payload starts with PER bits.
pub const Q931_DISCRIMINATOR: u8 = 0x08;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const VERSION: usize = 0;
    pub const RESERVED: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const PAYLOAD: usize = 4;
}

/// Why bytes are not a valid TPKT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpktError {
    #[error("TPKT of {len} bytes is shorter than the 4-byte header")]
    Truncated { len: usize },
    #[error("TPKT version {0}, expected 3")]
    BadVersion(u8),
    #[error("TPKT reserved octet is {0:#04x}, expected 0")]
    BadReserved(u8),
    #[error("TPKT length field {length} is below the 4-byte header")]
    BadLength { length: usize },
    #[error("TPKT length field {length} exceeds the {len} bytes available")]
    LengthOverrun { length: usize, len: usize },
    #[error("TPKT length {length} exceeds the limit of {limit}")]
    TooLong { length: usize, limit: usize },
    #[error("buffer of {len} bytes is too small, {needed} needed")]
    BufferTooSmall { len: usize, needed: usize },
}

/// A read/write view of one TPKT. The buffer may be longer than the packet; the payload ends
/// where the length field says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and validates it with [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, TpktError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the header (version 3, reserved 0, length at least 4) and that the buffer holds
    /// the whole packet.
    pub fn check_len(&self) -> Result<(), TpktError> {
        let len = self.buffer.as_ref().len();
        check_header(self.buffer.as_ref())?;
        let length = usize::from(self.length());
        if length > len {
            return Err(TpktError::LengthOverrun { length, len });
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
        self.byte(field::VERSION)
    }

    pub fn reserved(&self) -> u8 {
        self.byte(field::RESERVED)
    }

    /// The length field: header and payload.
    pub fn length(&self) -> u16 {
        match self.buffer.as_ref().get(field::LENGTH) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    }

    /// True for a bare header (length 4): an H.323 keepalive.
    pub fn is_keepalive(&self) -> bool {
        usize::from(self.length()) == HEADER_LEN
    }

    /// The payload, bounded by the length field and the buffer.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.length()).min(b.len());
        b.get(field::PAYLOAD..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_byte(&mut self, i: usize, v: u8) {
        if let Some(b) = self.buffer.as_mut().get_mut(i) {
            *b = v;
        }
    }

    pub fn set_version(&mut self, v: u8) {
        self.set_byte(field::VERSION, v);
    }

    pub fn set_reserved(&mut self, v: u8) {
        self.set_byte(field::RESERVED, v);
    }

    pub fn set_length(&mut self, length: u16) {
        if let Some(dst) = self.buffer.as_mut().get_mut(field::LENGTH) {
            dst.copy_from_slice(&length.to_be_bytes());
        }
    }

    /// The payload, mutable, bounded by the length field and the buffer.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.length());
        let b = self.buffer.as_mut();
        let end = end.min(b.len());
        b.get_mut(field::PAYLOAD..end).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Validates the 4 header octets (not the buffer length against the length field).
fn check_header(b: &[u8]) -> Result<usize, TpktError> {
    let (&version, &reserved, hi, lo) = match b {
        [v, r, hi, lo, ..] => (v, r, *hi, *lo),
        _ => return Err(TpktError::Truncated { len: b.len() }),
    };
    if version != VERSION {
        return Err(TpktError::BadVersion(version));
    }
    if reserved != 0 {
        return Err(TpktError::BadReserved(reserved));
    }
    let length = usize::from(u16::from_be_bytes([hi, lo]));
    if length < MIN_TPKT_LEN {
        return Err(TpktError::BadLength { length });
    }
    Ok(length)
}

/// A high-level representation of a TPKT header: all it says is how long the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub payload_len: usize,
}

impl Repr {
    /// Parses a packet the caller may not have checked.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, TpktError> {
        packet.check_len()?;
        Ok(Repr {
            payload_len: usize::from(packet.length()).saturating_sub(HEADER_LEN),
        })
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Writes the header; the caller fills [`Packet::payload_mut`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), TpktError> {
        let needed = self.buffer_len();
        let length = u16::try_from(needed).map_err(|_| TpktError::TooLong {
            length: needed,
            limit: MAX_TPKT_LEN,
        })?;
        let len = packet.buffer.as_ref().len();
        if len < needed {
            return Err(TpktError::BufferTooSmall { len, needed });
        }
        packet.set_version(VERSION);
        packet.set_reserved(0);
        packet.set_length(length);
        Ok(())
    }
}

/// Appends `payload` framed in a TPKT to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<(), TpktError> {
    let repr = Repr {
        payload_len: payload.len(),
    };
    let start = out.len();
    out.resize(start.saturating_add(repr.buffer_len()), 0);
    let buf = out.get_mut(start..).unwrap_or(&mut []);
    let mut packet = Packet::new_unchecked(buf);
    if let Err(e) = repr.emit(&mut packet) {
        out.truncate(start);
        return Err(e);
    }
    packet.payload_mut().copy_from_slice(payload);
    Ok(())
}

/// Cheap test for H.225.0 call signalling at the start of a TCP stream on any port: a TPKT
/// header (version 3, reserved 0, a length with room for a minimal Q.931 header) followed by the
/// Q.931 protocol discriminator 0x08. Only the first 5 bytes are needed.
///
/// H.245 over TPKT has no protocol discriminator, so this does not find H.245; a separate H.245
/// connection is known from the h245Address in H.225.0, not guessed from content. A bare 4-byte
/// keepalive is not evidence of H.225.0 and returns false.
pub fn looks_like_tpkt(bytes: &[u8]) -> bool {
    // Protocol discriminator, call reference length, message type (Q.931 clause 4.1).
    const MIN_Q931: usize = 3;
    match check_header(bytes) {
        Ok(length) => {
            length >= HEADER_LEN + MIN_Q931
                && bytes.get(field::PAYLOAD) == Some(&Q931_DISCRIMINATOR)
        }
        Err(_) => false,
    }
}

/// Splits a TCP byte stream into TPKT payloads. After an error the stream is out of sync and
/// must be closed: the framer keeps returning the error and drops further bytes.
///
/// Memory: the buffer holds what was pushed and not yet framed; call
/// [`TpktFramer::next_frame`] until it returns `None` after each push, and at most one partial
/// packet (no more than `max_len` bytes) stays buffered.
#[derive(Debug)]
pub struct TpktFramer {
    buf: BytesMut,
    max_len: usize,
    failed: Option<TpktError>,
    /// Empty TPKTs (keepalives) seen so far.
    pub keepalives: u64,
}

impl Default for TpktFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl TpktFramer {
    /// A framer accepting packets up to [`MAX_TPKT_LEN`].
    pub fn new() -> Self {
        Self::with_max_len(MAX_TPKT_LEN)
    }

    /// A framer refusing packets whose length field exceeds `max_len` (header included).
    pub fn with_max_len(max_len: usize) -> Self {
        TpktFramer {
            buf: BytesMut::new(),
            max_len: max_len.clamp(MIN_TPKT_LEN, MAX_TPKT_LEN),
            failed: None,
            keepalives: 0,
        }
    }

    /// Appends bytes received on the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered but not yet part of a complete packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete packet's payload, `None` when more bytes are needed. An empty payload
    /// is a keepalive (length field 4), also counted in [`TpktFramer::keepalives`].
    pub fn next_frame(&mut self) -> Option<Result<Bytes, TpktError>> {
        if let Some(e) = self.failed {
            return Some(Err(e));
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let length = match check_header(&self.buf) {
            Ok(length) => length,
            Err(e) => return Some(Err(self.fail(e))),
        };
        if length > self.max_len {
            return Some(Err(self.fail(TpktError::TooLong {
                length,
                limit: self.max_len,
            })));
        }
        if self.buf.len() < length {
            return None;
        }
        let mut frame = self.buf.split_to(length);
        frame.advance(HEADER_LEN);
        if frame.is_empty() {
            self.keepalives = self.keepalives.saturating_add(1);
        }
        Some(Ok(frame.freeze()))
    }

    fn fail(&mut self, e: TpktError) -> TpktError {
        self.failed = Some(e);
        self.buf.clear();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn view_accessors() {
        let bytes = [0x03, 0x00, 0x00, 0x07, 0x08, 0x00, 0x7d, 0xff];
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 3);
        assert_eq!(p.reserved(), 0);
        assert_eq!(p.length(), 7);
        assert_eq!(p.payload(), &[0x08, 0x00, 0x7d]);
        assert!(!p.is_keepalive());
        assert_eq!(Repr::parse(&p).unwrap(), Repr { payload_len: 3 });
    }

    #[test]
    fn check_errors() {
        let cases: &[(&[u8], TpktError)] = &[
            (&[], TpktError::Truncated { len: 0 }),
            (&[3, 0, 0], TpktError::Truncated { len: 3 }),
            (&[2, 0, 0, 4], TpktError::BadVersion(2)),
            (&[3, 1, 0, 4], TpktError::BadReserved(1)),
            (&[3, 0, 0, 3], TpktError::BadLength { length: 3 }),
            (&[3, 0, 0, 0], TpktError::BadLength { length: 0 }),
            (
                &[3, 0, 0, 9, 8],
                TpktError::LengthOverrun { length: 9, len: 5 },
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(
                Packet::new_checked(*bytes).unwrap_err(),
                *err,
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn keepalive_view() {
        let p = Packet::new_checked(&[3u8, 0, 0, 4][..]).unwrap();
        assert!(p.is_keepalive());
        assert_eq!(p.payload(), &[] as &[u8]);
        assert_eq!(Repr::parse(&p).unwrap().payload_len, 0);
    }

    #[test]
    fn emit_into_prefilled_buffer() {
        let repr = Repr { payload_len: 3 };
        let mut buf = [0xa5u8; 9];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(&[1, 2, 3]);
        assert_eq!(buf, [3, 0, 0, 7, 1, 2, 3, 0xa5, 0xa5]);
        let mut small = [0xa5u8; 6];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut small[..])),
            Err(TpktError::BufferTooSmall { len: 6, needed: 7 })
        );
        assert_eq!(small, [0xa5; 6]);
    }

    #[test]
    fn encode_limits() {
        let mut out = vec![0xee];
        encode(&[0x08, 0, 0x7d], &mut out).unwrap();
        assert_eq!(out, [0xee, 3, 0, 0, 7, 8, 0, 0x7d]);
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        let mut out = vec![0xee];
        assert_eq!(
            encode(&big, &mut out),
            Err(TpktError::TooLong {
                length: MAX_TPKT_LEN + 1,
                limit: MAX_TPKT_LEN
            })
        );
        assert_eq!(out, [0xee]);
        let max = vec![0u8; MAX_PAYLOAD_LEN];
        let mut out = Vec::new();
        encode(&max, &mut out).unwrap();
        assert_eq!(&out[..4], &[3, 0, 0xff, 0xff]);
    }

    #[test]
    fn heuristic() {
        let cases: &[(&[u8], bool)] = &[
            (&[3, 0, 0, 7, 8, 0, 0x7d], true),
            (&[3, 0, 0, 0xa0, 8, 2, 0x77], true), // first segment of a longer packet
            (&[3, 0, 0, 4], false),               // keepalive (the nDPI h323-overflow input)
            (&[3, 0, 0, 6, 8, 0], false),         // too short for a Q.931 header
            (&[3, 0, 0, 7, 0x0a, 0, 0x7d], false), // H.245-like, no discriminator
            (&[3, 1, 0, 7, 8, 0, 0x7d], false),
            (&[4, 0, 0, 7, 8, 0, 0x7d], false),
            (&[3, 0, 0, 7], false),
            (&[3], false),
            (b"INVITE sip:", false),
        ];
        for (bytes, want) in cases {
            assert_eq!(looks_like_tpkt(bytes), *want, "{bytes:02x?}");
        }
    }

    #[test]
    fn framer_split_joined_and_keepalive() {
        let stream = [
            3u8, 0, 0, 4, // keepalive
            3, 0, 0, 7, 8, 0, 0x7d, // one packet
            3, 0, 0, 5, 0xaa, // another
        ];
        for chunk in 1..=stream.len() {
            let mut f = TpktFramer::new();
            let mut frames = Vec::new();
            for part in stream.chunks(chunk) {
                f.push(part);
                while let Some(r) = f.next_frame() {
                    frames.push(r.unwrap());
                }
            }
            assert_eq!(
                frames,
                vec![
                    Bytes::new(),
                    Bytes::from_static(&[8, 0, 0x7d]),
                    Bytes::from_static(&[0xaa])
                ],
                "chunk {chunk}"
            );
            assert_eq!(f.keepalives, 1);
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn framer_errors_stick() {
        let mut f = TpktFramer::new();
        f.push(&[3, 0, 0, 2, 8]);
        assert_eq!(
            f.next_frame(),
            Some(Err(TpktError::BadLength { length: 2 }))
        );
        f.push(&[3, 0, 0, 4]);
        assert_eq!(
            f.next_frame(),
            Some(Err(TpktError::BadLength { length: 2 }))
        );
        assert_eq!(f.buffered(), 0);

        let mut f = TpktFramer::with_max_len(100);
        f.push(&[3, 0, 0, 101]);
        assert_eq!(
            f.next_frame(),
            Some(Err(TpktError::TooLong {
                length: 101,
                limit: 100
            }))
        );
        let mut f = TpktFramer::new();
        f.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(f.next_frame(), Some(Err(TpktError::BadVersion(b'G'))));
    }

    #[test]
    fn ndpi_overflow_segment() {
        // The single TCP payload of corpora/pcap/ndpi/h323-overflow.pcap, which crashed
        // nDPI's TPKT detection: a bare header.
        let seg = [0x03, 0x00, 0x00, 0x04];
        assert!(!looks_like_tpkt(&seg));
        let mut f = TpktFramer::new();
        f.push(&seg);
        assert_eq!(f.next_frame(), Some(Ok(Bytes::new())));
        assert_eq!(f.next_frame(), None);
        assert_eq!(f.keepalives, 1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = looks_like_tpkt(&data);
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let repr = Repr::parse(&p).unwrap();
                let mut out = Vec::new();
                encode(p.payload(), &mut out).unwrap();
                prop_assert_eq!(&out[..], &data[..repr.buffer_len()]);
            }
            let mut f = TpktFramer::new();
            f.push(&data);
            let mut n = 0;
            while let Some(r) = f.next_frame() {
                n += 1;
                if r.is_err() || n > data.len() { break; }
            }
        }
    }
}
