//! The capture file containers: pcap (both byte orders, micro- and nanosecond magic) and
//! pcapng (sections, interfaces with `if_tsresol`/`if_tsoffset`, enhanced/simple/obsolete
//! packet blocks). Yields raw frames with their link type and time, tracking the byte offset of
//! every record so errors can name it.
//!
//! Hand-written rather than pcap-file's reader because that one reports no offsets, rejects
//! records whose original length exceeds the snap length (normal in snaplen-limited captures),
//! rejects whole files over a non-UTF-8 comment, and has `panic!` paths. Never panics; a record
//! or block is never larger than [`MAX_FRAME_LEN`] / [`MAX_BLOCK_LEN`].

use std::io::{self, Read};
use std::time::Duration;

use super::CaptureError;

/// Largest captured frame accepted (libpcap's own maximum snap length is 262144).
pub const MAX_FRAME_LEN: u32 = 1 << 20;
/// Largest pcapng block accepted.
pub const MAX_BLOCK_LEN: u32 = 4 << 20;
/// Most interfaces in one pcapng section.
pub const MAX_PCAPNG_INTERFACES: usize = 1024;

const PCAP_HEADER_LEN: u64 = 24;
const PCAP_RECORD_HEADER_LEN: usize = 16;

// pcapng block types (draft-ietf-opsawg-pcapng, section 11.1).
const BT_SHB: u32 = 0x0A0D_0D0A;
const BT_IDB: u32 = 0x0000_0001;
const BT_PB: u32 = 0x0000_0002;
const BT_SPB: u32 = 0x0000_0003;
const BT_EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
// IDB options (section 4.2).
const OPT_ENDOFOPT: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// A frame's metadata; its bytes are in the buffer passed to [`Container::next_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    pub time: Duration,
    pub linktype: u32,
    /// Offset of the frame's bytes within the buffer.
    pub start: usize,
    pub len: usize,
}

#[derive(Debug, Clone, Copy)]
enum Order {
    Big,
    Little,
}

impl Order {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Order::Big => u16::from_be_bytes(a),
            Order::Little => u16::from_le_bytes(a),
        })
    }
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Order::Big => u32::from_be_bytes(a),
            Order::Little => u32::from_le_bytes(a),
        })
    }
    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Order::Big => u64::from_be_bytes(a),
            Order::Little => u64::from_le_bytes(a),
        })
    }
}

/// Timestamp units of a pcapng interface.
#[derive(Debug, Clone, Copy)]
enum TsResol {
    /// 10^-n seconds.
    Dec(u32),
    /// 2^-n seconds.
    Bin(u32),
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    resol: TsResol,
    offset_secs: i64,
}

#[derive(Debug)]
enum Format {
    Pcap {
        order: Order,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        order: Order,
        interfaces: Vec<Interface>,
    },
}

/// Reads frames out of a pcap or pcapng byte stream.
///
/// The file is read in blocks of [`READ_BLOCK`] bytes into one buffer, and records are parsed
/// where they lie: a frame's bytes are a slice of that buffer ([`Container::frame`]), not a copy.
/// Only a record cut by the end of a block is moved, to the buffer's start, before the next
/// read. The buffer is allocated (and zeroed) once; it grows only for a record larger than a
/// block, up to [`MAX_BLOCK_LEN`].
#[derive(Debug)]
pub(crate) struct Container<R> {
    src: R,
    format: Format,
    /// File offset of the next unread record (of `buf[pos]`).
    offset: u64,
    /// Time of the last timestamped frame, for pcapng simple packet blocks (which have none).
    last_time: Duration,
    /// Bytes read ahead: `buf[pos..end]` is the file from `offset` on.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The source reported its end.
    eof: bool,
}

/// Bytes asked of the source per read (a record longer than this is read whole).
pub(crate) const READ_BLOCK: usize = 256 * 1024;

fn corrupt(offset: u64, reason: &'static str) -> CaptureError {
    CaptureError::Corrupt { offset, reason }
}

impl<R: Read> Container<R> {
    /// Reads the file header (pcap) or first section header block (pcapng).
    pub fn new(src: R) -> Result<Self, CaptureError> {
        let mut c = Container {
            src,
            format: Format::Pcap {
                order: Order::Big,
                nanos: false,
                linktype: 0,
            },
            offset: 0,
            last_time: Duration::ZERO,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            eof: false,
        };
        if c.fill(4)? < 4 {
            return Err(CaptureError::Truncated { offset: 0 });
        }
        let head = c.unread();
        let magic: [u8; 4] = head
            .get(..4)
            .and_then(|m| m.try_into().ok())
            .unwrap_or_default();
        let pcap = match u32::from_be_bytes(magic) {
            0xA1B2_C3D4 => Some((Order::Big, false)),
            0xA1B2_3C4D => Some((Order::Big, true)),
            0xD4C3_B2A1 => Some((Order::Little, false)),
            0x4D3C_B2A1 => Some((Order::Little, true)),
            _ => None,
        };
        if let Some((order, nanos)) = pcap {
            let len = PCAP_HEADER_LEN as usize;
            if c.fill(len)? < len {
                return Err(CaptureError::Truncated { offset: 0 });
            }
            // magic (4), version (4), thiszone (4), sigfigs (4), snaplen (4), network (4).
            let linktype = order.u32(c.unread(), 20).unwrap_or(u32::MAX);
            // The upper 16 bits may carry FCS flags (pcap spec, LinkType and additional info).
            let linktype = linktype & 0xFFFF;
            c.format = Format::Pcap {
                order,
                nanos,
                linktype,
            };
            c.consume(len);
            return Ok(c);
        }
        if u32::from_be_bytes(magic) == BT_SHB {
            c.format = Format::PcapNg {
                order: Order::Big,
                interfaces: Vec::new(),
            };
            // The first block is the SHB; it never yields a frame.
            c.read_block()?;
            return Ok(c);
        }
        Err(CaptureError::UnknownFormat { magic })
    }

    /// Byte offset of the next unread record: how far the file has been consumed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The bytes of the frame [`Container::next_frame`] returned last.
    pub fn frame(&self, meta: &FrameMeta) -> &[u8] {
        meta.start
            .checked_add(meta.len)
            .and_then(|end| self.buf.get(meta.start..end))
            .unwrap_or_default()
    }

    /// The next frame (its bytes through [`Container::frame`]); `None` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<FrameMeta>, CaptureError> {
        loop {
            let step = match self.format {
                Format::Pcap {
                    order,
                    nanos,
                    linktype,
                } => return self.read_record(order, nanos, linktype),
                Format::PcapNg { .. } => self.read_block()?,
            };
            match step {
                Block::Eof => return Ok(None),
                Block::Frame(meta) => return Ok(Some(meta)),
                Block::NoFrame => {}
            }
        }
    }

    /// The bytes read ahead and not consumed yet.
    fn unread(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// Marks `n` read-ahead bytes consumed.
    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.pos);
        self.pos += n;
        self.offset = self.offset.saturating_add(n as u64);
    }

    /// Makes at least `want` unread bytes available, reading as needed; returns how many are
    /// (fewer only at the end of the source). Keeps the unread bytes, moved to the buffer's
    /// start when the buffer's end is reached.
    fn fill(&mut self, want: usize) -> Result<usize, CaptureError> {
        let have = self.end - self.pos;
        if have >= want || self.eof {
            return Ok(have.min(want));
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end = have;
            self.pos = 0;
        }
        // Room for the record plus a block, so every read asks for a block or more.
        let size = want.saturating_add(READ_BLOCK);
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
        while self.end < want {
            let Some(room) = self.buf.get_mut(self.end..) else {
                break;
            };
            match self.src.read(room) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Io {
                        offset: self.offset.saturating_add((self.end - self.pos) as u64),
                        source,
                    })
                }
            }
        }
        Ok((self.end - self.pos).min(want))
    }

    fn read_record(
        &mut self,
        order: Order,
        nanos: bool,
        linktype: u32,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        let start = self.offset;
        let got = self.fill(PCAP_RECORD_HEADER_LEN)?;
        if got == 0 {
            return Ok(None);
        }
        if got < PCAP_RECORD_HEADER_LEN {
            return Err(CaptureError::Truncated { offset: start });
        }
        let hdr = self.unread();
        let field = |at| order.u32(hdr, at).unwrap_or(0);
        let (secs, frac, incl_len) = (field(0), field(4), field(8));
        if incl_len > MAX_FRAME_LEN {
            return Err(corrupt(start, "record length over MAX_FRAME_LEN"));
        }
        let total = PCAP_RECORD_HEADER_LEN + incl_len as usize;
        if self.fill(total)? < total {
            return Err(CaptureError::Truncated { offset: start });
        }
        let meta_start = self.pos + PCAP_RECORD_HEADER_LEN;
        self.consume(total);
        // Out-of-range fractions are carried into seconds rather than rejected.
        let frac_nanos = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac).saturating_mul(1000)
        };
        let time =
            Duration::from_secs(u64::from(secs)).saturating_add(Duration::from_nanos(frac_nanos));
        self.last_time = time;
        Ok(Some(FrameMeta {
            time,
            linktype,
            start: meta_start,
            len: incl_len as usize,
        }))
    }

    /// Reads one pcapng block.
    fn read_block(&mut self) -> Result<Block, CaptureError> {
        let start = self.offset;
        let got = self.fill(8)?;
        if got == 0 {
            return Ok(Block::Eof);
        }
        if got < 8 {
            return Err(CaptureError::Truncated { offset: start });
        }
        let Format::PcapNg { order, .. } = self.format else {
            return Err(corrupt(start, "not pcapng"));
        };
        let mut order = order;
        let raw_type = Order::Big.u32(self.unread(), 0).unwrap_or(0);
        if raw_type == BT_SHB {
            // The byte-order magic right after the length decides this section's order.
            if self.fill(12)? < 12 {
                return Err(CaptureError::Truncated { offset: start });
            }
            order = match Order::Big.u32(self.unread(), 8).unwrap_or(0) {
                BYTE_ORDER_MAGIC => Order::Big,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => Order::Little,
                _ => {
                    return Err(corrupt(
                        start,
                        "pcapng section header: bad byte-order magic",
                    ))
                }
            };
        }
        let block_type = order.u32(self.unread(), 0).unwrap_or(0);
        let total = order.u32(self.unread(), 4).unwrap_or(0);
        if total < 12 || total % 4 != 0 {
            return Err(corrupt(
                start,
                "pcapng block length not a multiple of 4 of at least 12",
            ));
        }
        if total > MAX_BLOCK_LEN {
            return Err(corrupt(start, "pcapng block length over MAX_BLOCK_LEN"));
        }
        let total_len = total as usize;
        if self.fill(total_len)? < total_len {
            return Err(CaptureError::Truncated { offset: start });
        }
        // The body: after the 8-byte head, before the trailing length.
        let body_at = self.pos + 8;
        // (Field borrows: `interfaces` below is borrowed mutably beside it.)
        let block = self
            .buf
            .get(self.pos..self.end)
            .and_then(|b| b.get(..total_len))
            .unwrap_or_default();
        if order.u32(block, total_len - 4) != Some(total) {
            return Err(corrupt(start, "pcapng block: trailing length differs"));
        }
        let body = block.get(8..total_len - 4).unwrap_or_default();
        let last_time = self.last_time;
        let Format::PcapNg { interfaces, .. } = &mut self.format else {
            return Err(corrupt(start, "not pcapng"));
        };
        let block = match block_type {
            BT_SHB => {
                self.format = Format::PcapNg {
                    order,
                    interfaces: Vec::new(),
                };
                Block::NoFrame
            }
            BT_IDB => {
                if interfaces.len() >= MAX_PCAPNG_INTERFACES {
                    return Err(corrupt(start, "more than MAX_PCAPNG_INTERFACES interfaces"));
                }
                let iface = parse_idb(order, body)
                    .ok_or(corrupt(start, "short interface description block"))?;
                interfaces.push(iface);
                Block::NoFrame
            }
            BT_EPB | BT_PB => {
                // EPB: interface u32, ts hi, ts lo, caplen, origlen (section 4.3).
                // PB (obsolete): interface u16, drops u16, ts hi, ts lo, caplen, origlen.
                let bad = || corrupt(start, "short packet block");
                let iface_id = if block_type == BT_EPB {
                    order.u32(body, 0).ok_or_else(bad)?
                } else {
                    u32::from(order.u16(body, 0).ok_or_else(bad)?)
                };
                let ts = (u64::from(order.u32(body, 4).ok_or_else(bad)?) << 32)
                    | u64::from(order.u32(body, 8).ok_or_else(bad)?);
                let caplen = order.u32(body, 12).ok_or_else(bad)? as usize;
                if caplen > body.len().saturating_sub(20) {
                    return Err(corrupt(
                        start,
                        "packet block: captured length beyond the block",
                    ));
                }
                // Unknown interface ids are kept as frames on an unknown link.
                let iface = interfaces.get(iface_id as usize).copied();
                let time = match iface {
                    Some(i) => pcapng_time(ts, i.resol, i.offset_secs),
                    None => pcapng_time(ts, TsResol::Dec(6), 0),
                };
                self.last_time = time;
                Block::Frame(FrameMeta {
                    time,
                    linktype: iface.map_or(u32::MAX, |i| i.linktype),
                    start: body_at + 20,
                    len: caplen,
                })
            }
            BT_SPB => {
                // Simple packet block: original length, then data up to the snap length.
                let orig = order
                    .u32(body, 0)
                    .ok_or(corrupt(start, "short simple packet block"))?
                    as usize;
                let len = orig.min(body.len().saturating_sub(4));
                Block::Frame(FrameMeta {
                    time: last_time,
                    linktype: interfaces.first().map_or(u32::MAX, |i| i.linktype),
                    start: body_at + 4,
                    len,
                })
            }
            // Name resolution, statistics, journal, custom and unknown blocks.
            _ => Block::NoFrame,
        };
        self.consume(total_len);
        Ok(block)
    }
}

enum Block {
    Eof,
    Frame(FrameMeta),
    NoFrame,
}

fn parse_idb(order: Order, body: &[u8]) -> Option<Interface> {
    let linktype = u32::from(order.u16(body, 0)?);
    let mut iface = Interface {
        linktype,
        resol: TsResol::Dec(6),
        offset_secs: 0,
    };
    let mut at = 8usize;
    // Options are best effort: a bad one ends option parsing, it does not fail the file.
    while let (Some(code), Some(len)) = (order.u16(body, at), order.u16(body, at + 2)) {
        let len = usize::from(len);
        let Some(value) = body.get(at + 4..at + 4 + len) else {
            break;
        };
        match code {
            OPT_ENDOFOPT => break,
            OPT_IF_TSRESOL => {
                if let Some(&r) = value.first() {
                    let n = u32::from(r & 0x7F);
                    iface.resol = if r & 0x80 == 0 {
                        TsResol::Dec(n)
                    } else {
                        TsResol::Bin(n)
                    };
                }
            }
            OPT_IF_TSOFFSET => {
                if let Some(v) = order.u64(value, 0) {
                    iface.offset_secs = v as i64;
                }
            }
            _ => {}
        }
        at = at + 4 + len.div_ceil(4) * 4;
    }
    Some(iface)
}

/// Converts a pcapng timestamp in interface units to time since the epoch.
fn pcapng_time(ts: u64, resol: TsResol, offset_secs: i64) -> Duration {
    let (secs, nanos) = match resol {
        TsResol::Dec(n) => {
            let unit = 10u128.checked_pow(n).unwrap_or(u128::MAX);
            let ts = u128::from(ts);
            let secs = ts / unit;
            let nanos = (ts % unit).saturating_mul(1_000_000_000) / unit;
            (secs, nanos)
        }
        TsResol::Bin(n) => {
            let n = n.min(63);
            let ts = u128::from(ts);
            let secs = ts >> n;
            let frac = ts & ((1u128 << n) - 1);
            ((secs), (frac.saturating_mul(1_000_000_000)) >> n)
        }
    };
    let secs = u64::try_from(secs).unwrap_or(u64::MAX);
    let base = Duration::from_secs(secs)
        .saturating_add(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)));
    if offset_secs >= 0 {
        base.saturating_add(Duration::from_secs(offset_secs.unsigned_abs()))
    } else {
        base.saturating_sub(Duration::from_secs(offset_secs.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_time_units() {
        assert_eq!(
            pcapng_time(1_500_000, TsResol::Dec(6), 0),
            Duration::from_millis(1500)
        );
        assert_eq!(
            pcapng_time(1_500_000_000, TsResol::Dec(9), 0),
            Duration::from_millis(1500)
        );
        assert_eq!(
            pcapng_time(3 << 9, TsResol::Bin(10), 0),
            Duration::from_millis(1500)
        );
        assert_eq!(
            pcapng_time(15, TsResol::Dec(1), 10),
            Duration::from_millis(11_500)
        );
        assert_eq!(pcapng_time(15, TsResol::Dec(1), -10), Duration::ZERO);
        // Absurd resolutions do not panic.
        let _ = pcapng_time(u64::MAX, TsResol::Dec(127), i64::MIN);
        let _ = pcapng_time(u64::MAX, TsResol::Bin(127), i64::MAX);
    }
}
