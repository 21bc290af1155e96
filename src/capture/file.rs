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
#[derive(Debug)]
pub(crate) struct Container<R> {
    src: R,
    format: Format,
    /// Offset of the next unread byte.
    offset: u64,
    /// Time of the last timestamped frame, for pcapng simple packet blocks (which have none).
    last_time: Duration,
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full<R: Read>(src: &mut R, buf: &mut [u8], offset: u64) -> Result<usize, CaptureError> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match src.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(CaptureError::Io {
                    offset: offset.saturating_add(got as u64),
                    source,
                })
            }
        }
    }
    Ok(got)
}

fn corrupt(offset: u64, reason: &'static str) -> CaptureError {
    CaptureError::Corrupt { offset, reason }
}

impl<R: Read> Container<R> {
    /// Reads the file header (pcap) or first section header block (pcapng).
    pub fn new(mut src: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        let got = read_full(&mut src, &mut magic, 0)?;
        if got < magic.len() {
            return Err(CaptureError::Truncated { offset: 0 });
        }
        let pcap = match u32::from_be_bytes(magic) {
            0xA1B2_C3D4 => Some((Order::Big, false)),
            0xA1B2_3C4D => Some((Order::Big, true)),
            0xD4C3_B2A1 => Some((Order::Little, false)),
            0x4D3C_B2A1 => Some((Order::Little, true)),
            _ => None,
        };
        if let Some((order, nanos)) = pcap {
            let mut hdr = [0u8; PCAP_HEADER_LEN as usize - 4];
            if read_full(&mut src, &mut hdr, 4)? < hdr.len() {
                return Err(CaptureError::Truncated { offset: 0 });
            }
            // version (4), thiszone (4), sigfigs (4), snaplen (4), network (4).
            let linktype = order.u32(&hdr, 16).unwrap_or(u32::MAX);
            // The upper 16 bits may carry FCS flags (pcap spec, LinkType and additional info).
            let linktype = linktype & 0xFFFF;
            return Ok(Container {
                src,
                format: Format::Pcap {
                    order,
                    nanos,
                    linktype,
                },
                offset: PCAP_HEADER_LEN,
                last_time: Duration::ZERO,
            });
        }
        if u32::from_be_bytes(magic) == BT_SHB {
            let mut c = Container {
                src,
                format: Format::PcapNg {
                    order: Order::Big,
                    interfaces: Vec::new(),
                },
                offset: 0,
                last_time: Duration::ZERO,
            };
            let mut buf = Vec::new();
            // The first block is the SHB; it never yields a frame.
            c.read_block(Some(magic), &mut buf)?;
            return Ok(c);
        }
        Err(CaptureError::UnknownFormat { magic })
    }

    /// Byte offset of the next unread record: how far the file has been consumed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame, its bytes left in `buf`; `None` at a clean end of file.
    pub fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<Option<FrameMeta>, CaptureError> {
        loop {
            let step = match self.format {
                Format::Pcap {
                    order,
                    nanos,
                    linktype,
                } => return self.read_record(order, nanos, linktype, buf),
                Format::PcapNg { .. } => self.read_block(None, buf)?,
            };
            match step {
                Block::Eof => return Ok(None),
                Block::Frame(meta) => return Ok(Some(meta)),
                Block::NoFrame => {}
            }
        }
    }

    fn read_record(
        &mut self,
        order: Order,
        nanos: bool,
        linktype: u32,
        buf: &mut Vec<u8>,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        let start = self.offset;
        let mut hdr = [0u8; PCAP_RECORD_HEADER_LEN];
        let got = read_full(&mut self.src, &mut hdr, start)?;
        if got == 0 {
            return Ok(None);
        }
        if got < hdr.len() {
            return Err(CaptureError::Truncated { offset: start });
        }
        let field = |at| order.u32(&hdr, at).unwrap_or(0);
        let (secs, frac, incl_len) = (field(0), field(4), field(8));
        if incl_len > MAX_FRAME_LEN {
            return Err(corrupt(start, "record length over MAX_FRAME_LEN"));
        }
        buf.clear();
        buf.resize(incl_len as usize, 0);
        let body_at = start.saturating_add(PCAP_RECORD_HEADER_LEN as u64);
        if read_full(&mut self.src, buf, body_at)? < buf.len() {
            return Err(CaptureError::Truncated { offset: start });
        }
        self.offset = body_at.saturating_add(u64::from(incl_len));
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
            start: 0,
            len: buf.len(),
        }))
    }

    /// Reads one pcapng block. `magic` is the already consumed block type of the very first
    /// block.
    fn read_block(
        &mut self,
        magic: Option<[u8; 4]>,
        buf: &mut Vec<u8>,
    ) -> Result<Block, CaptureError> {
        let start = self.offset;
        let mut head = [0u8; 8];
        let already = match magic {
            Some(m) => {
                if let Some(h) = head.get_mut(..4) {
                    h.copy_from_slice(&m);
                }
                4
            }
            None => 0,
        };
        let rest = head.get_mut(already..).unwrap_or_default();
        let got = read_full(&mut self.src, rest, start.saturating_add(already as u64))?;
        if already == 0 && got == 0 {
            return Ok(Block::Eof);
        }
        if already + got < head.len() {
            return Err(CaptureError::Truncated { offset: start });
        }
        let Format::PcapNg { order, .. } = self.format else {
            return Err(corrupt(start, "not pcapng"));
        };
        let mut order = order;
        let raw_type = Order::Big.u32(&head, 0).unwrap_or(0);
        let mut bom = [0u8; 4];
        let is_shb = raw_type == BT_SHB;
        if is_shb {
            // The byte-order magic right after the length decides this section's order.
            if read_full(&mut self.src, &mut bom, start.saturating_add(8))? < bom.len() {
                return Err(CaptureError::Truncated { offset: start });
            }
            order = match u32::from_be_bytes(bom) {
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
        let block_type = order.u32(&head, 0).unwrap_or(0);
        let total = order.u32(&head, 4).unwrap_or(0);
        if total < 12 || total % 4 != 0 {
            return Err(corrupt(
                start,
                "pcapng block length not a multiple of 4 of at least 12",
            ));
        }
        if total > MAX_BLOCK_LEN {
            return Err(corrupt(start, "pcapng block length over MAX_BLOCK_LEN"));
        }
        // Body plus trailing length, after the 8-byte head.
        buf.clear();
        buf.resize(total as usize - 8, 0);
        let mut filled = 0;
        if is_shb {
            if let Some(b) = buf.get_mut(..4) {
                b.copy_from_slice(&bom);
            }
            filled = 4;
        }
        let tail = buf.get_mut(filled..).unwrap_or_default();
        let want = tail.len();
        if read_full(&mut self.src, tail, start.saturating_add(8 + filled as u64))? < want {
            return Err(CaptureError::Truncated { offset: start });
        }
        let body_len = buf.len().saturating_sub(4);
        if order.u32(buf, body_len) != Some(total) {
            return Err(corrupt(start, "pcapng block: trailing length differs"));
        }
        self.offset = start.saturating_add(u64::from(total));
        let body = buf.get(..body_len).unwrap_or_default();
        let Format::PcapNg { interfaces, .. } = &mut self.format else {
            return Err(corrupt(start, "not pcapng"));
        };
        match block_type {
            BT_SHB => {
                self.format = Format::PcapNg {
                    order,
                    interfaces: Vec::new(),
                };
                Ok(Block::NoFrame)
            }
            BT_IDB => {
                if interfaces.len() >= MAX_PCAPNG_INTERFACES {
                    return Err(corrupt(start, "more than MAX_PCAPNG_INTERFACES interfaces"));
                }
                let iface = parse_idb(order, body)
                    .ok_or(corrupt(start, "short interface description block"))?;
                interfaces.push(iface);
                Ok(Block::NoFrame)
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
                Ok(Block::Frame(FrameMeta {
                    time,
                    linktype: iface.map_or(u32::MAX, |i| i.linktype),
                    start: 20,
                    len: caplen,
                }))
            }
            BT_SPB => {
                // Simple packet block: original length, then data up to the snap length.
                let orig = order
                    .u32(body, 0)
                    .ok_or(corrupt(start, "short simple packet block"))?
                    as usize;
                let len = orig.min(body.len().saturating_sub(4));
                Ok(Block::Frame(FrameMeta {
                    time: self.last_time,
                    linktype: interfaces.first().map_or(u32::MAX, |i| i.linktype),
                    start: 4,
                    len,
                }))
            }
            // Name resolution, statistics, journal, custom and unknown blocks.
            _ => Ok(Block::NoFrame),
        }
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
