//! The Meta wire format (specified in `codecs/META.md`). TODO(skeleton): owner fills in.

use super::Message;

/// Version of the Meta wire format this build speaks.
pub const META_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaDecodeError {
    #[error("truncated at offset {0}")]
    Truncated(usize),
}

/// Appends the encoding of `msg` to `out`.
pub fn encode(_msg: &Message, _out: &mut Vec<u8>) {}

/// Decodes exactly one message; trailing bytes are an error.
pub fn decode(_bytes: &[u8]) -> Result<Message, MetaDecodeError> {
    Err(MetaDecodeError::Truncated(0))
}
