//! SIP (RFC 3261) messages: parsing from UDP datagrams and TCP streams, typed header access, and
//! emission.
//!
//! Headers are kept as an ordered raw multimap (names normalized, compact forms resolved through
//! `ezk-sip-types`' name table) and parsed into typed values only when asked. SIP URIs, host/port
//! and Via values are parsed with `ezk-sip-types`' grammar (it handles bracketed IPv6 references);
//! name-addr framing is our own because the gateway must also read non-SIP schemes (tel:, im:...).
//!
//! Nothing here panics on any input; every limit is a named constant with its own error.

mod builder;
mod error;
mod framing;
mod grammar;
mod message;

pub use builder::MessageBuilder;
pub use error::SipError;
pub use ezk_sip_types::Name as HeaderName;
pub use framing::{parse_datagram, salvage_request_headers, StreamFramer};
pub use grammar::{
    ip_text, is_hostname, is_token_byte, parse_decimal, socket_text, split_list, CSeq, MediaType,
    NameAddr, Param, SplitList, Uri, UriScheme, Via, KNOWN_URI_SCHEMES, MAX_HOSTNAME_LEN,
    MAX_LABEL_LEN,
};
pub use message::{Headers, Message, RequestLine, StartLine, StatusLine};

/// Largest message accepted on any transport (a UDP datagram cannot be larger).
pub const MAX_MESSAGE_SIZE: usize = 65_535;
/// Largest header section (start line and headers).
pub const MAX_HEAD_SIZE: usize = 16_384;
/// Most header fields (lines after unfolding) in one message.
pub const MAX_HEADERS: usize = 128;
/// Longest single header field value after unfolding.
pub const MAX_HEADER_LEN: usize = 8_192;
/// Most Via values in one message: one per hop, and 70 is the initial Max-Forwards
/// (RFC 3261 section 8.1.1.6).
pub const MAX_VIAS: usize = 70;
/// Most values in any comma-separated header list.
pub const MAX_LIST_VALUES: usize = 64;
/// Most parameters on one header value or URI.
pub const MAX_PARAMS: usize = 32;
/// Largest CSeq sequence number (RFC 3261 section 8.1.1.5: less than 2**31).
pub const MAX_CSEQ: u32 = 0x7fff_ffff;
/// Largest Max-Forwards value (RFC 3261 section 20.22 allows 0-255).
pub const MAX_MAX_FORWARDS: u32 = 255;

/// A SIP method. Unknown methods are kept (`Other`) so the policy can answer 405/501.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Message,
    Subscribe,
    Notify,
    Refer,
    Publish,
    Other(String),
}

impl Method {
    /// Methods are case-sensitive (RFC 3261 section 7.1).
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "MESSAGE" => Method::Message,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The standard reason phrase for a status code (RFC 3261 section 21 and extensions).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}
