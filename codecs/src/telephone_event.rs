//! RFC 4733 telephone-event payloads (section 2.3): a zero-copy [`Packet`] view and a [`Repr`].
//!
//! Only the 4-byte event block is understood; RFC 2198 redundancy is not. Nothing here ever
//! panics, allocates or reads the clock.

use crate::meta::{digit_to_event, event_to_digit};

/// Length of one event block.
pub const PAYLOAD_LEN: usize = 4;
/// Volume is 6 bits, in -dBm0 (RFC 4733 section 2.3.4).
pub const MAX_VOLUME: u8 = 63;
/// RFC 4733 section 3.2: DTMF digits are events 0-15, flash is 16.
pub const EVENT_FLASH: u8 = 16;

mod field {
    pub const EVENT: usize = 0;
    /// E(1) R(1) volume(6)
    pub const E_R_VOLUME: usize = 1;
    pub const DURATION: core::ops::Range<usize> = 2..4;
}

/// Why a payload is not a telephone-event block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TelephoneEventError {
    #[error("telephone-event payload of {len} bytes, at least 4 needed")]
    TooShort { len: usize },
    #[error("volume {0} above 63")]
    VolumeRange(u8),
}

/// A read/write view of an RFC 4733 event payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking; accessors return 0 for missing bytes.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer of at least [`PAYLOAD_LEN`] bytes. Bytes after the first block are
    /// ignored (sender padding or a second event some senders append).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, TelephoneEventError> {
        let len = buffer.as_ref().len();
        if len < PAYLOAD_LEN {
            return Err(TelephoneEventError::TooShort { len });
        }
        Ok(Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    pub fn event(&self) -> u8 {
        self.byte(field::EVENT)
    }

    /// The E bit: this packet ends the event.
    pub fn end(&self) -> bool {
        self.byte(field::E_R_VOLUME) & 0x80 != 0
    }

    /// The R bit, reserved: senders set 0, receivers ignore it.
    pub fn reserved(&self) -> bool {
        self.byte(field::E_R_VOLUME) & 0x40 != 0
    }

    pub fn volume(&self) -> u8 {
        self.byte(field::E_R_VOLUME) & 0x3f
    }

    /// Duration so far, in timestamp units.
    pub fn duration(&self) -> u16 {
        u16::from_be_bytes([
            self.byte(field::DURATION.start),
            self.byte(field::DURATION.end - 1),
        ])
    }

    /// The DTMF character for events 0-15.
    pub fn digit(&self) -> Option<char> {
        event_to_digit(self.event())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_byte(&mut self, i: usize, v: u8) {
        if let Some(b) = self.buffer.as_mut().get_mut(i) {
            *b = v;
        }
    }

    pub fn set_event(&mut self, event: u8) {
        self.set_byte(field::EVENT, event);
    }

    /// Writes E, R (always 0) and the volume (only its low 6 bits).
    pub fn set_end_volume(&mut self, end: bool, volume: u8) {
        self.set_byte(field::E_R_VOLUME, (u8::from(end) << 7) | (volume & 0x3f));
    }

    pub fn set_duration(&mut self, duration: u16) {
        let [a, b] = duration.to_be_bytes();
        self.set_byte(field::DURATION.start, a);
        self.set_byte(field::DURATION.end - 1, b);
    }
}

/// A telephone event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&T>,
    ) -> Result<Repr, TelephoneEventError> {
        let len = packet.buffer.as_ref().len();
        if len < PAYLOAD_LEN {
            return Err(TelephoneEventError::TooShort { len });
        }
        Ok(Repr {
            event: packet.event(),
            end: packet.end(),
            volume: packet.volume(),
            duration: packet.duration(),
        })
    }

    /// A DTMF digit event (0-9, *, #, A-D, case-insensitive); `None` for other characters.
    pub fn from_digit(digit: char, end: bool, volume: u8, duration: u16) -> Option<Repr> {
        Some(Repr {
            event: digit_to_event(digit)?,
            end,
            volume,
            duration,
        })
    }

    /// The DTMF character for events 0-15.
    pub fn digit(&self) -> Option<char> {
        event_to_digit(self.event)
    }

    pub const fn buffer_len(&self) -> usize {
        PAYLOAD_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), TelephoneEventError> {
        let len = packet.buffer.as_ref().len();
        if len < PAYLOAD_LEN {
            return Err(TelephoneEventError::TooShort { len });
        }
        if self.volume > MAX_VOLUME {
            return Err(TelephoneEventError::VolumeRange(self.volume));
        }
        packet.set_event(self.event);
        packet.set_end_volume(self.end, self.volume);
        packet.set_duration(self.duration);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_table() {
        // From sipp/dtmf_2833_pound.pcap (first and last packets) and made-up ones.
        let cases: &[([u8; 4], Repr, Option<char>)] = &[
            (
                [0x0b, 0x0a, 0x00, 0x00],
                Repr {
                    event: 11,
                    end: false,
                    volume: 10,
                    duration: 0,
                },
                Some('#'),
            ),
            (
                [0x0b, 0x8a, 0x08, 0xc0],
                Repr {
                    event: 11,
                    end: true,
                    volume: 10,
                    duration: 2240,
                },
                Some('#'),
            ),
            (
                [0x00, 0xbf, 0xff, 0xff],
                Repr {
                    event: 0,
                    end: true,
                    volume: 63,
                    duration: 0xffff,
                },
                Some('0'),
            ),
            (
                [0x0a, 0x07, 0x03, 0x20],
                Repr {
                    event: 10,
                    end: false,
                    volume: 7,
                    duration: 800,
                },
                Some('*'),
            ),
            (
                [0x0f, 0x00, 0x00, 0xa0],
                Repr {
                    event: 15,
                    end: false,
                    volume: 0,
                    duration: 160,
                },
                Some('D'),
            ),
            (
                [EVENT_FLASH, 0x00, 0x00, 0xa0],
                Repr {
                    event: 16,
                    end: false,
                    volume: 0,
                    duration: 160,
                },
                None,
            ),
        ];
        for (bytes, repr, digit) in cases {
            let p = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(Repr::parse(&p).unwrap(), *repr);
            assert_eq!(p.digit(), *digit);
            assert_eq!(repr.digit(), *digit);
            let mut buf = [0xa5u8; 4];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            assert_eq!(&buf, bytes);
        }
    }

    #[test]
    fn reserved_bit_ignored_and_cleared() {
        let bytes = [0x05, 0xca, 0x01, 0x40];
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.reserved());
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Repr {
                event: 5,
                end: true,
                volume: 10,
                duration: 320
            }
        );
        let mut buf = [0xa5u8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf, [0x05, 0x8a, 0x01, 0x40]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&[1u8, 2, 3][..]).unwrap_err(),
            TelephoneEventError::TooShort { len: 3 }
        );
        let repr = Repr {
            event: 1,
            end: false,
            volume: 64,
            duration: 0,
        };
        let mut buf = [0u8; 4];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(TelephoneEventError::VolumeRange(64))
        );
        let mut short = [0u8; 3];
        assert_eq!(
            Repr { volume: 0, ..repr }.emit(&mut Packet::new_unchecked(&mut short[..])),
            Err(TelephoneEventError::TooShort { len: 3 })
        );
    }

    #[test]
    fn digits() {
        for (c, e) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('a', 12),
            ('D', 15),
        ] {
            let r = Repr::from_digit(c, false, 10, 160).unwrap();
            assert_eq!(r.event, e);
            assert_eq!(r.digit(), Some(c.to_ascii_uppercase()));
        }
        assert!(Repr::from_digit('x', false, 10, 160).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
            let p = Packet::new_unchecked(&bytes[..]);
            let _ = (p.event(), p.end(), p.volume(), p.duration(), p.digit());
            if let Ok(repr) = Repr::parse(&p) {
                let mut buf = [0xa5u8; 4];
                repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
                prop_assert_eq!(buf[0], bytes[0]);
                prop_assert_eq!(buf[1], bytes[1] & 0xbf);
                prop_assert_eq!(&buf[2..], &bytes[2..4]);
            }
        }
    }
}
