//! Why a SIP message could not be read. Each variant names the part that failed.

/// A malformed SIP message. The engine answers a request carrying one of these with 400 (or
/// 505 / 513 where noted) and drops a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// Not enough bytes yet (stream transports only ask for more).
    #[error("incomplete message")]
    Incomplete,
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("header section exceeds {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("empty message")]
    Empty,
    #[error("malformed start line: {0}")]
    BadStartLine(&'static str),
    #[error("line {line} is not UTF-8")]
    NotUtf8 { line: usize },
    #[error("malformed header line {line}")]
    BadHeaderLine { line: usize },
    #[error("more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    #[error("{name} header longer than {limit} bytes")]
    HeaderTooLong { name: String, limit: usize },
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    #[error("malformed {name} header: {why}")]
    BadHeader {
        name: &'static str,
        why: &'static str,
    },
    #[error("more than {limit} Via values")]
    TooManyVias { limit: usize },
    #[error("more than {limit} values in {name}")]
    TooManyValues { name: &'static str, limit: usize },
    #[error("Content-Length says {declared} bytes but {available} follow")]
    BodyTruncated { declared: usize, available: usize },
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    #[error("malformed Request-URI: {0}")]
    BadRequestUri(&'static str),
    #[error("status code {0} out of range")]
    BadStatusCode(u64),
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    /// A header the gateway was to write holds a control character (CR, LF, NUL, ...):
    /// writing it would let a peer inject header lines. The message is not sent.
    #[error("control character in {0}")]
    ControlCharacter(String),
}

impl SipError {
    /// The status code a UAS answers a request carrying this error with.
    pub fn status(&self) -> u16 {
        match self {
            SipError::TooLarge { .. } | SipError::HeadTooLarge { .. } => 513,
            _ => 400,
        }
    }
}
