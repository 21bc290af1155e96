//! Builds fresh SDP sessions (the gateway's own offers and answers). Never panics; every
//! result is checked by parsing it back strictly.

use std::net::IpAddr;

use super::{
    Attribute, Connection, Direction, Field, Fmtp, Line, MediaLine, Origin, RtcpAttr, Rtpmap,
    SdpError, SdpErrorKind, Session, Timing,
};

/// A fresh session: `v=0`, o=, `s=-`, optional c=, `t=0 0`, session attributes, media.
///
/// ```
/// # use codecs::sdp::*;
/// let ip = "192.0.2.1".parse().unwrap();
/// let sdp = Session::builder(Origin::new("-", 1, 1, ip))
///     .connection(ip)
///     .media(
///         MediaBuilder::new("audio", 49170, "RTP/AVP")
///             .format(0)
///             .rtpmap(Rtpmap::new(101, "telephone-event", 8000))
///             .fmtp("101", "0-15")
///             .ptime(20)
///             .direction(Direction::SendRecv),
///     )
///     .build()
///     .unwrap();
/// assert!(sdp.to_bytes().starts_with(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"));
/// ```
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    origin: Origin,
    name: Vec<u8>,
    connection: Option<IpAddr>,
    timing: Timing,
    attributes: Vec<Attribute>,
    media: Vec<MediaBuilder>,
}

impl SessionBuilder {
    pub fn new(origin: Origin) -> SessionBuilder {
        SessionBuilder {
            origin,
            name: b"-".to_vec(),
            connection: None,
            timing: Timing::default(),
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// The s= text (default "-").
    pub fn session_name(mut self, name: &str) -> Self {
        self.name = name.as_bytes().to_vec();
        self
    }

    /// A session-level c=.
    pub fn connection(mut self, ip: IpAddr) -> Self {
        self.connection = Some(ip);
        self
    }

    /// t= (default `0 0`).
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// A session-level direction attribute.
    pub fn direction(self, direction: Direction) -> Self {
        self.attribute(Attribute::Direction(direction))
    }

    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    pub fn media(mut self, media: MediaBuilder) -> Self {
        self.media.push(media);
        self
    }

    /// Checks the session as if written out and parsed back strictly: limits, values that
    /// would break a line, a media without any c=, all come back as errors.
    pub fn build(self) -> Result<Session, SdpError> {
        let at0 = |kind| SdpError { line: 0, kind };
        let mut lines = vec![
            Line::new(b'v', Field::Version(0)).map_err(at0)?,
            Line::new(b'o', Field::Origin(self.origin)).map_err(at0)?,
            Line::with_value(b's', &self.name).map_err(at0)?,
        ];
        if let Some(ip) = self.connection {
            lines.push(Line::new(b'c', Field::Connection(Connection::new(ip))).map_err(at0)?);
        }
        lines.push(Line::new(b't', Field::Timing(self.timing)).map_err(at0)?);
        for a in self.attributes {
            lines.push(Line::new(b'a', Field::Attribute(a)).map_err(at0)?);
        }
        for m in self.media {
            m.lines(&mut lines).map_err(at0)?;
        }
        Session::from_checked_lines(lines)
    }
}

/// One m= section of a [`SessionBuilder`]. Lines come out as: m=, c=, then attributes in the
/// order they were added.
#[derive(Debug, Clone)]
pub struct MediaBuilder {
    media: MediaLine,
    connection: Option<IpAddr>,
    attributes: Vec<Attribute>,
}

impl MediaBuilder {
    /// `media` e.g. "audio", `proto` e.g. "RTP/AVP"; formats are added by the other methods.
    pub fn new(media: &str, port: u16, proto: &str) -> MediaBuilder {
        MediaBuilder {
            media: MediaLine {
                media: media.to_owned(),
                port,
                port_count: None,
                proto: proto.to_owned(),
                formats: Vec::new(),
            },
            connection: None,
            attributes: Vec::new(),
        }
    }

    fn add_format(&mut self, format: String) {
        if !self.media.formats.contains(&format) {
            self.media.formats.push(format);
        }
    }

    /// Adds a payload type to the m= line without an rtpmap (static payload types).
    pub fn format(mut self, payload_type: u8) -> Self {
        self.add_format(payload_type.to_string());
        self
    }

    /// Adds a non-RTP format token (e.g. "t38").
    pub fn format_token(mut self, format: &str) -> Self {
        self.add_format(format.to_owned());
        self
    }

    /// Adds the payload type to the m= line and its a=rtpmap.
    pub fn rtpmap(mut self, rtpmap: Rtpmap) -> Self {
        self.add_format(rtpmap.payload_type.to_string());
        self.attributes.push(Attribute::Rtpmap(rtpmap));
        self
    }

    pub fn fmtp(mut self, format: &str, params: &str) -> Self {
        self.attributes.push(Attribute::Fmtp(Fmtp {
            format: format.to_owned(),
            params: params.to_owned(),
        }));
        self
    }

    pub fn ptime(mut self, ms: u32) -> Self {
        self.attributes.push(Attribute::Ptime(ms));
        self
    }

    pub fn maxptime(mut self, ms: u32) -> Self {
        self.attributes.push(Attribute::MaxPtime(ms));
        self
    }

    pub fn direction(mut self, direction: Direction) -> Self {
        self.attributes.push(Attribute::Direction(direction));
        self
    }

    /// a=rtcp with just a port (RFC 3605).
    pub fn rtcp_port(mut self, port: u16) -> Self {
        self.attributes.push(Attribute::Rtcp(RtcpAttr {
            port,
            connection: None,
        }));
        self
    }

    /// A media-level c=.
    pub fn connection(mut self, ip: IpAddr) -> Self {
        self.connection = Some(ip);
        self
    }

    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    fn lines(self, out: &mut Vec<Line>) -> Result<(), SdpErrorKind> {
        out.push(Line::new(b'm', Field::Media(self.media))?);
        if let Some(ip) = self.connection {
            out.push(Line::new(b'c', Field::Connection(Connection::new(ip)))?);
        }
        for a in self.attributes {
            out.push(Line::new(b'a', Field::Attribute(a))?);
        }
        Ok(())
    }
}
