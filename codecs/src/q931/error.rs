//! Q.931 decode and encode errors, and the cause each decode error is answered with.

use super::{CallRef, Cause, IeId};

/// Why bytes are not a Q.931 message (or lack what H.225.0 requires): where and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Q.931: {what} at offset {offset}")]
pub struct Q931Error {
    /// Offset in the message where the problem was found (0 for whole-message checks).
    pub offset: usize,
    pub what: Q931ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Q931ErrorKind {
    /// Shorter than protocol discriminator, call reference and message type (Q.931 5.8.2).
    #[error("message too short for its header")]
    TooShort,
    /// An information element runs past the end of the message.
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("protocol discriminator {0:#04x}, expected 0x08")]
    BadProtocolDiscriminator(u8),
    #[error("call reference length octet {0:#04x}, H.225.0 allows 0 to 2")]
    BadCallRefLen(u8),
    #[error("information element {ie:#04x} of {len} bytes exceeds the limit of {limit}")]
    IeTooLong { ie: u8, len: usize, limit: usize },
    #[error("more than {} information elements", super::MAX_IES)]
    TooManyIes,
    #[error("zero-length User-user information element")]
    ZeroLengthUserUser,
    #[error("mandatory information element {0:?} missing")]
    MandatoryIeMissing(IeId),
    /// Cause 100 (Q.931 clause 5.8.7.1). [`super::Message::check_mandatory`] does not raise
    /// it: it takes a mandatory IE whatever its contents.
    #[error("invalid contents of information element {0:?}")]
    InvalidIeContents(IeId),
}

impl Q931Error {
    pub(crate) const fn new(offset: usize, what: Q931ErrorKind) -> Q931Error {
        Q931Error { offset, what }
    }

    /// The cause to answer with (Q.931 clause 5.8, Q.850), or `None` when the message must be
    /// ignored without an answer (clauses 5.8.1 to 5.8.3.1).
    pub fn cause(&self) -> Option<Cause> {
        let value = match self.what {
            // Q.931 5.8.1, 5.8.2, 5.8.3.1: ignored.
            Q931ErrorKind::BadProtocolDiscriminator(_)
            | Q931ErrorKind::TooShort
            | Q931ErrorKind::BadCallRefLen(_) => return None,
            Q931ErrorKind::MandatoryIeMissing(_) => 96,
            Q931ErrorKind::TooManyIes => 95,
            Q931ErrorKind::Truncated(_)
            | Q931ErrorKind::IeTooLong { .. }
            | Q931ErrorKind::ZeroLengthUserUser
            | Q931ErrorKind::InvalidIeContents(_) => 100,
        };
        Some(Cause::new(value))
    }
}

/// Why a message cannot be encoded: a value does not fit its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Q931EncodeError {
    #[error("call reference {0:?} does not fit its length")]
    BadCallRef(CallRef),
    #[error("information element {ie:#04x} of {len} bytes exceeds the limit of {limit}")]
    IeTooLong { ie: u8, len: usize, limit: usize },
    #[error("{count} information elements, more than {}", super::MAX_IES)]
    TooManyIes { count: usize },
    #[error("{count} digits, more than {}", super::MAX_DIGITS)]
    TooManyDigits { count: usize },
    #[error("field value out of range: {0}")]
    FieldRange(&'static str),
    #[error("typed information element {0:?} after a shift out of codeset 0")]
    WrongCodeset(IeId),
    #[error("zero-length User-user information element")]
    ZeroLengthUserUser,
}
