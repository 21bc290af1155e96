//! Checked byte reader and length-patching writer for binary codecs (after rustls
//! `msgs/codec.rs`). Never panics: every read is bounds-checked and names what it was reading.

/// A read ran past the end of the input: `what` was expected at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated {
    pub offset: usize,
    pub what: &'static str,
}

/// A length did not fit its prefix while encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LengthOverflow {
    pub what: &'static str,
    pub limit: usize,
}

/// A cursor over a byte slice that knows its absolute offset in the outermost input, so errors
/// from nested readers point into the original frame.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    cursor: usize,
    /// Absolute offset of `buf[0]` in the outermost input.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self::at(buf, 0)
    }

    /// A reader over `buf`, which starts at absolute offset `base` of the outermost input.
    pub(crate) fn at(buf: &'a [u8], base: usize) -> Self {
        Reader {
            buf,
            cursor: 0,
            base,
        }
    }

    /// Absolute offset of the next unread byte.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.cursor)
    }

    pub(crate) fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.cursor)
    }

    pub(crate) fn any_left(&self) -> bool {
        self.left() > 0
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Truncated> {
        let end = self.cursor.checked_add(n);
        match end.and_then(|end| self.buf.get(self.cursor..end)) {
            Some(bytes) => {
                self.cursor = self.cursor.saturating_add(n);
                Ok(bytes)
            }
            None => Err(Truncated {
                offset: self.offset(),
                what,
            }),
        }
    }

    /// Takes everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.cursor..).unwrap_or_default();
        self.cursor = self.buf.len();
        rest
    }

    /// A reader over the next `n` bytes, keeping absolute offsets.
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, Truncated> {
        let base = self.offset();
        let bytes = self.take(n, what)?;
        Ok(Reader::at(bytes, base))
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Truncated> {
        let [b] = self.array::<1>(what)?;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, Truncated> {
        self.array::<2>(what).map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, Truncated> {
        self.array::<4>(what).map(u32::from_be_bytes)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], Truncated> {
        let offset = self.offset();
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| Truncated { offset, what })
    }
}

/// Appends big-endian values to a `Vec<u8>`; length prefixes are written as placeholders and
/// patched once the nested content is known (one pass, no size pre-computation).
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything written after `len` (used to leave the output untouched on error).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Writes a u16 length placeholder, runs `body`, then patches the placeholder with the number
    /// of bytes `body` wrote.
    pub(crate) fn u16_prefixed<E>(
        &mut self,
        what: &'static str,
        body: impl FnOnce(&mut Self) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<LengthOverflow>,
    {
        let at = self.buf.len();
        self.u16(0);
        body(self)?;
        let len = self.buf.len().saturating_sub(at).saturating_sub(2);
        let len = u16::try_from(len).map_err(|_| LengthOverflow {
            what,
            limit: usize::from(u16::MAX),
        })?;
        self.patch(at, &len.to_be_bytes(), what)?;
        Ok(())
    }

    /// Overwrites bytes already written at `at`.
    pub(crate) fn patch(
        &mut self,
        at: usize,
        bytes: &[u8],
        what: &'static str,
    ) -> Result<(), LengthOverflow> {
        let end = at.checked_add(bytes.len());
        match end.and_then(|end| self.buf.get_mut(at..end)) {
            Some(slot) => {
                slot.copy_from_slice(bytes);
                Ok(())
            }
            // Only reachable through a bug in a caller; reported rather than panicking.
            None => Err(LengthOverflow { what, limit: 0 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_absolute_offsets() {
        let data = [1u8, 0, 2, 0, 0, 0, 3];
        let mut r = Reader::at(&data, 100);
        assert_eq!(r.u8("a"), Ok(1));
        let mut sub = r.sub(2, "sub").unwrap();
        assert_eq!(sub.offset(), 101);
        assert_eq!(sub.u16("b"), Ok(2));
        assert_eq!(
            sub.u8("c"),
            Err(Truncated {
                offset: 103,
                what: "c"
            })
        );
        assert_eq!(r.u32("d"), Ok(3));
        assert!(!r.any_left());
        assert_eq!(
            r.take(usize::MAX, "huge"),
            Err(Truncated {
                offset: 107,
                what: "huge"
            })
        );
    }

    #[test]
    fn writer_patches_length_prefix() {
        let mut out = vec![0xa5];
        let mut w = Writer::new(&mut out);
        w.u16_prefixed::<LengthOverflow>("x", |w| {
            w.u8(7);
            w.u32(0x0102_0304);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, [0xa5, 0, 5, 7, 1, 2, 3, 4]);
    }

    #[test]
    fn writer_rejects_oversized_prefix() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        let r = w.u16_prefixed::<LengthOverflow>("big", |w| {
            w.bytes(&vec![0; 70_000]);
            Ok(())
        });
        assert_eq!(
            r,
            Err(LengthOverflow {
                what: "big",
                limit: 65535
            })
        );
    }
}
