//! Message boundaries: one message per UDP datagram (RFC 3261 section 18.3: Content-Length
//! optional, trailing octets ignored), and Content-Length framing on TCP/TLS streams.

use super::error::SipError;
use super::message::{self, Message};
use super::{MAX_HEAD_SIZE, MAX_MESSAGE_SIZE};
use bytes::{Buf, Bytes, BytesMut};

/// Where the header section ends: (index of the blank line, index of the first body byte).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(rel) = buf
        .get(i..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
    {
        let nl = i + rel;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some((nl, nl + 2)),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some((nl, nl + 3)),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

/// The offset of the first line that starts like a SIP request or status line.
fn find_start_line(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = buf.get(at..)?;
        let end = line.iter().position(|&b| b == b'\n')?;
        let text = line.get(..end).unwrap_or(&[]);
        let is_start = text.starts_with(b"SIP/2.0 ")
            || (text.ends_with(b" SIP/2.0\r") || text.ends_with(b" SIP/2.0"))
                && text.first().is_some_and(|b| b.is_ascii_uppercase());
        if is_start {
            return Some(at);
        }
        at += end + 1;
    }
}

/// Number of leading CRLF/LF bytes (keepalives and stray line ends before a start line).
fn leading_line_ends(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

struct Head {
    start: message::StartLine,
    headers: message::Headers,
    body_start: usize,
    content_length: Option<usize>,
}

fn parse_head_at(buf: &[u8]) -> Result<Head, SipError> {
    let (blank, body_start) = match find_head_end(buf) {
        Some(found) => found,
        // The blank line may start in the last two bytes ("\n" or "\n\r" with the rest still to
        // come): only beyond that is the head certainly too large, whatever bytes follow.
        None if buf.len() > MAX_HEAD_SIZE + 2 => {
            return Err(SipError::HeadTooLarge {
                limit: MAX_HEAD_SIZE,
            })
        }
        None => return Err(SipError::Incomplete),
    };
    if blank > MAX_HEAD_SIZE {
        return Err(SipError::HeadTooLarge {
            limit: MAX_HEAD_SIZE,
        });
    }
    let head = buf.get(..blank).ok_or(SipError::Incomplete)?;
    let head = std::str::from_utf8(head).map_err(|e| {
        let before = head.get(..e.valid_up_to()).unwrap_or(&[]);
        SipError::NotUtf8 {
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
        }
    })?;
    let (start, headers) = message::parse_head(head)?;
    let content_length = message::content_length(&headers)?;
    Ok(Head {
        start,
        headers,
        body_start,
        content_length,
    })
}

/// Parses the SIP message in a datagram. Returns the message and the number of trailing bytes
/// that were ignored (RFC 4475 section 3.1.1.8).
pub fn parse_datagram(datagram: Bytes) -> Result<(Message, usize), SipError> {
    if datagram.len() > MAX_MESSAGE_SIZE {
        return Err(SipError::TooLarge {
            size: datagram.len(),
            limit: MAX_MESSAGE_SIZE,
        });
    }
    let skip = leading_line_ends(&datagram);
    let data = datagram.slice(skip..);
    if data.is_empty() {
        return Err(SipError::Empty);
    }
    let head = match parse_head_at(&data) {
        // A datagram is complete by definition: a missing blank line means no body follows.
        Err(SipError::Incomplete) => {
            let mut padded = data.to_vec();
            padded.extend_from_slice(b"\r\n\r\n");
            let head = parse_head_at(&padded)?;
            let raw = data.clone();
            let len = raw.len();
            return Ok((Message::new(raw, head.start, head.headers, len), 0));
        }
        other => other?,
    };
    let available = data.len().saturating_sub(head.body_start);
    let body_len = match head.content_length {
        Some(n) if n > available => {
            return Err(SipError::BodyTruncated {
                declared: n,
                available,
            })
        }
        Some(n) => n,
        None => available,
    };
    let end = head.body_start + body_len;
    let raw = data.slice(..end);
    Ok((
        Message::new(raw, head.start, head.headers, head.body_start),
        data.len() - end,
    ))
}

/// Best effort for a message that failed to parse: the header fields of its head, skipping
/// lines that do not parse, so a 400 can still be addressed to a broken request. Returns
/// `None` for responses (never answered) and when nothing usable is left.
pub fn salvage_request_headers(data: &[u8]) -> Option<message::Headers> {
    let data = data.get(leading_line_ends(data)..)?;
    if data.starts_with(b"SIP/") {
        return None;
    }
    let end = find_head_end(data).map_or(data.len().min(MAX_HEAD_SIZE), |(blank, _)| blank);
    let head = String::from_utf8_lossy(data.get(..end.min(MAX_HEAD_SIZE))?);
    let headers = message::parse_header_lines_lenient(&head);
    (!headers.is_empty()).then_some(headers)
}

/// Splits a TCP/TLS byte stream into messages by Content-Length. After an error the stream is
/// out of sync and must be closed: the framer keeps returning the error.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
    failed: Option<SipError>,
    resyncing: bool,
    /// Bytes of CRLF keepalives skipped (RFC 5626 section 3.5.1).
    pub keepalives: u64,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received on the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes were lost: drop what is buffered and, from the next bytes on, skip to the first
    /// line that looks like a SIP start line.
    pub fn resync(&mut self) {
        self.buf.clear();
        self.failed = None;
        self.resyncing = true;
    }

    /// Bytes buffered but not yet part of a complete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<Message, SipError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        if self.resyncing {
            match find_start_line(&self.buf) {
                Some(at) => {
                    self.buf.advance(at);
                    self.resyncing = false;
                }
                None => {
                    // Keep only a possible partial line.
                    let keep = self.buf.iter().rev().take_while(|&&b| b != b'\n').count();
                    let drop = self.buf.len() - keep;
                    self.buf.advance(drop);
                    return None;
                }
            }
        }
        let skip = leading_line_ends(&self.buf);
        if skip > 0 {
            self.keepalives += 1;
            self.buf.advance(skip);
        }
        if self.buf.is_empty() {
            return None;
        }
        let head = match parse_head_at(&self.buf) {
            Err(SipError::Incomplete) => return None,
            Err(e) => return Some(Err(self.fail(e))),
            Ok(h) => h,
        };
        let Some(body_len) = head.content_length else {
            return Some(Err(self.fail(SipError::MissingContentLength)));
        };
        let total = head.body_start.saturating_add(body_len);
        if total > MAX_MESSAGE_SIZE {
            return Some(Err(self.fail(SipError::TooLarge {
                size: total,
                limit: MAX_MESSAGE_SIZE,
            })));
        }
        if self.buf.len() < total {
            return None;
        }
        let raw = self.buf.split_to(total).freeze();
        Some(Ok(Message::new(
            raw,
            head.start,
            head.headers,
            head.body_start,
        )))
    }

    fn fail(&mut self, e: SipError) -> SipError {
        self.failed = Some(e.clone());
        self.buf.clear();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:u@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nTo: <sip:u@example.com>\r\nFrom: <sip:c@example.net>;tag=1\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn datagram_with_trailing_bytes() {
        let mut d = OPTIONS.to_vec();
        d.extend_from_slice(b"garbage");
        let (m, trailing) = parse_datagram(Bytes::from(d)).unwrap();
        assert_eq!(trailing, 7);
        assert_eq!(&m.body()[..], b"body");
        assert_eq!(m.raw().len(), OPTIONS.len());
        m.check().unwrap();
    }

    #[test]
    fn datagram_content_length_too_large() {
        let d = String::from_utf8_lossy(OPTIONS).replace("Length: 4", "Length: 40");
        assert!(matches!(
            parse_datagram(Bytes::from(d)),
            Err(SipError::BodyTruncated {
                declared: 40,
                available: 4
            })
        ));
    }

    #[test]
    fn stream_split_and_joined() {
        let mut two = OPTIONS.to_vec();
        two.extend_from_slice(b"\r\n\r\n");
        two.extend_from_slice(OPTIONS);
        for split in 0..two.len() {
            let mut f = StreamFramer::new();
            let mut got = Vec::new();
            for part in [&two[..split], &two[split..]] {
                f.push(part);
                while let Some(m) = f.next_message() {
                    got.push(m.unwrap());
                }
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(&got[1].raw()[..], OPTIONS);
        }
    }

    /// A head whose blank line starts right at the limit is accepted in one segment; it must
    /// not be refused when the segment ends inside the blank line.
    #[test]
    fn stream_head_at_limit_split_in_blank_line() {
        let head = |len: usize| {
            let mut h = String::from_utf8_lossy(OPTIONS).replace("\r\n\r\nbody", "");
            h = h.replace("Content-Length: 4", "Content-Length: 0");
            // Filler headers, each under MAX_HEADER_LEN.
            while h.len() < len {
                let pad = (len - h.len()).saturating_sub("\r\nX: ".len()).min(4096);
                h.push_str(&format!("\r\nX: {}", "a".repeat(pad.max(1))));
            }
            assert_eq!(h.len(), len);
            h
        };
        // The blank line's first LF is at offset MAX_HEAD_SIZE: the largest head accepted.
        let msg = head(MAX_HEAD_SIZE - 1) + "\r\n\r\n";
        let bytes = msg.as_bytes();
        assert!(parse_datagram(Bytes::copy_from_slice(bytes)).is_ok());
        for cut in bytes.len() - 3..bytes.len() {
            let mut f = StreamFramer::new();
            f.push(&bytes[..cut]);
            assert!(f.next_message().is_none(), "cut at {cut}");
            f.push(&bytes[cut..]);
            let m = f.next_message().unwrap().unwrap();
            assert_eq!(m.raw().len(), bytes.len(), "cut at {cut}");
        }
        // One byte more is too large, and known to be once the blank line cannot start earlier.
        let msg = head(MAX_HEAD_SIZE) + "\r\n\r";
        let mut f = StreamFramer::new();
        f.push(msg.as_bytes());
        assert_eq!(
            f.next_message().map(|r| r.err()),
            Some(Some(SipError::HeadTooLarge {
                limit: MAX_HEAD_SIZE
            }))
        );
    }

    #[test]
    fn stream_requires_content_length() {
        let d = String::from_utf8_lossy(OPTIONS).replace("Content-Length: 4\r\n", "");
        let mut f = StreamFramer::new();
        f.push(d.as_bytes());
        assert_eq!(
            f.next_message().map(|r| r.err()),
            Some(Some(SipError::MissingContentLength))
        );
    }
}
