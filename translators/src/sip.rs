//! SIP and SDP <-> Meta: parties from name-addrs and URIs, media descriptions from SDP offers and
//! answers, fresh SDP from Meta for either side, and DTMF in SIP INFO bodies.
//!
//! Outside addresses found in SDP are returned beside the Meta media (`remotes`), never inside
//! it: the gateway keeps them for its media checks, Meta never carries them.

use bytes::Bytes;
use codecs::meta::{Codec, MediaDescription, MediaKind, Party, StreamId, TelephoneEvent};
use codecs::sdp::{self, MediaBuilder, Origin, Rtpmap, Session};
use codecs::sip::{MediaType, NameAddr, Uri, UriScheme};
use std::net::{IpAddr, SocketAddr};

/// Why SDP could not become Meta.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("invalid SDP: {0}")]
    Sdp(#[from] sdp::SdpError),
    #[error("no usable media stream")]
    NoMedia,
    /// Every RTP stream asked for a secure profile (RFC 3711 SRTP: `RTP/SAVP`, `RTP/SAVPF`,
    /// `UDP/TLS/RTP/SAVP`...) that this leg does not serve. Answering one with plain `RTP/AVP`
    /// would drop the protection the caller asked for, so such streams are refused.
    #[error("secure media ({0}) is not served here")]
    SecureMedia(String),
    #[error("answer has {answer} streams for an offer of {offer}")]
    StreamCount { offer: usize, answer: usize },
    /// The gateway sends media to an IP address; it never resolves names (RFC 8866 allows an
    /// FQDN in c=, and an unknown address type carries anything).
    #[error("connection address {0} is not an IP address")]
    ConnectionNotIp(String),
    /// A party's user or display name holds a control character (CR, LF, NUL, ...): it would
    /// inject lines into the header it is written to.
    #[error("control character in the {0}")]
    ControlCharacter(&'static str),
}

/// Whether a party's user and display name are free of control characters (HTAB aside, which
/// a quoted display name may hold). A quoted-pair may escape NUL and other controls (RFC 3261
/// section 25.1; only CR and LF are excluded), and a user part may percent-encode them: the
/// gateway carries neither.
pub fn check_party(p: &Party) -> Result<(), TranslateError> {
    let text = |s: &str| s.chars().all(codecs::meta::is_text_char);
    if !text(&p.user) {
        return Err(TranslateError::ControlCharacter("user part"));
    }
    if !p.display.as_deref().is_none_or(text) {
        return Err(TranslateError::ControlCharacter("display name"));
    }
    Ok(())
}

/// Media of an offer or answer, with the peer's RTP address per description (`None` for a
/// refused stream or an address the gateway will learn by latching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpMedia {
    pub media: Vec<MediaDescription>,
    pub remotes: Vec<Option<SocketAddr>>,
    /// Per description: the `a=crypto` values (RFC 4568 SDES) of a stream offered with the
    /// `RTP/SAVP` profile, when the caller of [`offer_from_sdp_srtp`] serves SRTP; `None` for
    /// a plain stream. Keys never go into Meta.
    pub crypto: Vec<Option<Vec<String>>>,
}

/// Most codecs kept per stream (the rest of a long offer is dropped).
pub const MAX_CODECS_PER_STREAM: usize = 16;

/// The calling party from a From header: the URI's user part and the display name.
pub fn calling_party(from: &NameAddr) -> Party {
    Party {
        user: uri_user(&from.uri),
        display: from.display.clone().filter(|d| !d.is_empty()),
    }
}

/// The called party: the Request-URI's user part, or the To URI's when the Request-URI has
/// none (a call addressed to the gateway's host).
pub fn called_party(request_uri: &Uri, to: &NameAddr) -> Party {
    let user = uri_user(request_uri);
    Party {
        user: if user.is_empty() {
            uri_user(&to.uri)
        } else {
            user
        },
        display: to.display.clone().filter(|d| !d.is_empty()),
    }
}

fn uri_user(uri: &Uri) -> String {
    match uri.scheme {
        UriScheme::Sip | UriScheme::Sips | UriScheme::Tel => {
            let u = uri.user_decoded().unwrap_or_default();
            // Visual separators in telephone numbers (RFC 3966) are dropped.
            if uri.scheme == UriScheme::Tel || u.starts_with('+') {
                u.chars()
                    .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
                    .collect()
            } else {
                u
            }
        }
        UriScheme::Other(_) => String::new(),
    }
}

/// Parses an SDP offer into Meta media, allocating a stream id per accepted RTP stream. A
/// secure stream (`RTP/SAVP`...) is refused.
pub fn offer_from_sdp(
    body: &[u8],
    alloc: &mut dyn FnMut() -> StreamId,
) -> Result<SdpMedia, TranslateError> {
    offer_from_sdp_srtp(body, alloc, false)
}

/// [`offer_from_sdp`]; with `srtp`, a stream offered as `RTP/SAVP` (SRTP keyed by SDES, RFC
/// 4568) is accepted too, its `a=crypto` values returned in [`SdpMedia::crypto`] for the
/// caller to choose from. `RTP/SAVPF` and DTLS-SRTP (`UDP/TLS/RTP/SAVP`) stay refused.
pub fn offer_from_sdp_srtp(
    body: &[u8],
    alloc: &mut dyn FnMut() -> StreamId,
    srtp: bool,
) -> Result<SdpMedia, TranslateError> {
    let session = Session::parse_lenient(body)?;
    let mut out = SdpMedia {
        media: Vec::new(),
        remotes: Vec::new(),
        crypto: Vec::new(),
    };
    for m in session.media() {
        let sdes = srtp && is_sdes_profile(&m.media_line().proto);
        let (desc, remote) = describe(&session, m, None, sdes)?;
        let desc = MediaDescription {
            stream: desc.stream.and(Some(alloc())),
            ..desc
        };
        out.crypto.push((sdes && desc.stream.is_some()).then(|| {
            m.attributes()
                .filter(|a| a.name().eq_ignore_ascii_case("crypto"))
                .filter_map(|a| match a {
                    sdp::Attribute::Other { value, .. } => value.clone(),
                    _ => None,
                })
                .collect()
        }));
        out.media.push(desc);
        out.remotes.push(remote);
    }
    if !out.media.iter().any(|m| m.stream.is_some()) {
        let secure = session
            .media()
            .iter()
            .map(|m| m.media_line())
            .find(|l| is_secure_profile(&l.proto));
        return Err(match secure {
            Some(l) => TranslateError::SecureMedia(l.proto.clone()),
            None => TranslateError::NoMedia,
        });
    }
    Ok(out)
}

/// Whether an m= line's transport protocol is `RTP/SAVP`: SRTP over UDP, keyed in SDP.
pub fn is_sdes_profile(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/SAVP")
}

/// Whether an m= line's transport protocol is a secure RTP profile (SAVP or SAVPF, RFC 3711
/// and RFC 5124, over UDP or DTLS).
pub fn is_secure_profile(proto: &str) -> bool {
    proto
        .split('/')
        .any(|p| p.eq_ignore_ascii_case("SAVP") || p.eq_ignore_ascii_case("SAVPF"))
}

/// Parses an SDP answer to `offer`: streams correspond by position (RFC 3264 section 6).
pub fn answer_from_sdp(
    body: &[u8],
    offer: &[MediaDescription],
) -> Result<SdpMedia, TranslateError> {
    let session = Session::parse_lenient(body)?;
    if session.media().len() != offer.len() {
        return Err(TranslateError::StreamCount {
            offer: offer.len(),
            answer: session.media().len(),
        });
    }
    let mut out = SdpMedia {
        media: Vec::new(),
        remotes: Vec::new(),
        crypto: Vec::new(),
    };
    for (m, o) in session.media().iter().zip(offer) {
        let (desc, remote) = describe(&session, m, o.stream, false)?;
        out.crypto.push(None);
        out.media.push(desc);
        out.remotes.push(remote);
    }
    Ok(out)
}

/// One m= section as Meta; `stream` is `Some` (a placeholder or the given id) when the stream
/// is an accepted RTP stream. A stream the gateway would relay must name an IP address.
fn describe(
    session: &Session,
    m: &sdp::MediaSection,
    stream: Option<StreamId>,
    sdes: bool,
) -> Result<(MediaDescription, Option<SocketAddr>), TranslateError> {
    let line = m.media_line();
    let kind = match line.media.to_ascii_lowercase().as_str() {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        _ => MediaKind::Other,
    };
    // A secure stream is refused (port 0 in the answer), never answered as plain RTP.
    let usable = line.is_rtp()
        && (sdes || !is_secure_profile(&line.proto))
        && !m.is_rejected()
        && kind != MediaKind::Other;
    let mut codecs = Vec::new();
    let mut telephone_event = None;
    for c in m.codecs() {
        if c.encoding.eq_ignore_ascii_case("telephone-event") {
            telephone_event.get_or_insert(TelephoneEvent {
                payload_type: c.payload_type,
                clock_rate: c.clock_rate,
            });
            continue;
        }
        // A codec whose name or parameters hold a control character (a bare CR is no SDP
        // line end) is not carried: Meta would refuse the whole message, and the other half
        // writes these into its SDP.
        let text = |s: &str| s.chars().all(codecs::meta::is_text_char);
        if !text(&c.encoding) || !c.fmtp.as_deref().is_none_or(text) {
            continue;
        }
        if codecs.len() < MAX_CODECS_PER_STREAM {
            codecs.push(Codec {
                payload_type: c.payload_type,
                name: c.encoding.clone(),
                clock_rate: c.clock_rate,
                channels: c.channels.and_then(|n| u8::try_from(n).ok()).unwrap_or(1),
                fmtp: c.fmtp.clone(),
            });
        }
    }
    // Exact: the description is kept in the dialog for the call's life.
    codecs.shrink_to_fit();
    let remote = match session.media_connection(m).map(|c| &c.address) {
        _ if !usable => None,
        Some(sdp::Address::Host(h)) => return Err(TranslateError::ConnectionNotIp(h.clone())),
        // 0.0.0.0 / :: (hold, RFC 3264 section 8.4) or no c= (lenient): learnt by latching.
        Some(sdp::Address::Ip(ip)) if !ip.is_unspecified() => Some(SocketAddr::new(*ip, line.port)),
        _ => None,
    };
    let desc = MediaDescription {
        stream: if usable {
            Some(stream.unwrap_or(StreamId(0)))
        } else {
            None
        },
        kind,
        direction: session.media_direction(m).into(),
        codecs,
        telephone_event,
        ptime_ms: m.ptime().and_then(|p| u16::try_from(p).ok()),
    };
    Ok((desc, remote))
}

/// The o= user name of the SDP the gateway writes: `-`, "no concept of user IDs" (RFC 8866
/// section 5.2). A product name here would tell a scanner (svmap) what answers.
pub const ORIGIN_USER: &str = "-";

/// A fresh SDP body for `media`, with `ip` as the connection address and `ports[i]` for the
/// i-th description (`None` refuses the stream with port 0). Nothing of any incoming SDP is
/// copied: this is how topology hiding rewrites c=, o= and m=.
pub fn sdp_from_media(
    media: &[MediaDescription],
    ip: IpAddr,
    ports: &[Option<u16>],
    session_id: u64,
    version: u64,
) -> Bytes {
    sdp_from_media_srtp(media, ip, ports, &[], session_id, version)
}

/// [`sdp_from_media`], with `crypto[i]` the `a=crypto` value of the i-th description when it
/// is served as SRTP (`RTP/SAVP`, RFC 4568).
pub fn sdp_from_media_srtp(
    media: &[MediaDescription],
    ip: IpAddr,
    ports: &[Option<u16>],
    crypto: &[Option<String>],
    session_id: u64,
    version: u64,
) -> Bytes {
    let mut b = Session::builder(Origin::new(ORIGIN_USER, session_id, version, ip)).connection(ip);
    for (i, m) in media.iter().enumerate() {
        let port = ports
            .get(i)
            .copied()
            .flatten()
            .filter(|_| m.stream.is_some());
        let kind = match m.kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Other => "application",
        };
        let key = crypto.get(i).and_then(Option::as_ref);
        let proto = if key.is_some() { "RTP/SAVP" } else { "RTP/AVP" };
        let mut mb = MediaBuilder::new(kind, port.unwrap_or(0), proto);
        if m.codecs.is_empty() && m.telephone_event.is_none() {
            // A refused stream still needs a format (RFC 3264 section 6).
            mb = mb.format(0);
        }
        for c in &m.codecs {
            mb = mb.format(c.payload_type);
            let mut r = Rtpmap::new(c.payload_type, &c.name, c.clock_rate);
            if c.channels > 1 {
                r.channels = Some(u16::from(c.channels));
            }
            mb = mb.rtpmap(r);
            if let Some(f) = &c.fmtp {
                mb = mb.fmtp(&c.payload_type.to_string(), f);
            }
        }
        if let Some(te) = m.telephone_event {
            mb = mb
                .format(te.payload_type)
                .rtpmap(Rtpmap::new(
                    te.payload_type,
                    "telephone-event",
                    te.clock_rate,
                ))
                .fmtp(&te.payload_type.to_string(), "0-15");
        }
        if let Some(p) = m.ptime_ms {
            mb = mb.ptime(u32::from(p));
        }
        if port.is_some() {
            mb = mb.direction(m.direction.into());
            if let Some(k) = key {
                mb = mb.attribute(sdp::Attribute::Other {
                    name: "crypto".to_owned(),
                    value: Some(k.clone()),
                });
            }
        }
        b = b.media(mb);
    }
    match b.build() {
        Ok(s) => Bytes::from(s.to_bytes()),
        // The builder only fails on values Meta cannot hold (a codec name with a space):
        // fall back to a session without media rather than emitting invalid SDP.
        Err(_) => Session::builder(Origin::new(ORIGIN_USER, session_id, version, ip))
            .connection(ip)
            .build()
            .map(|s| Bytes::from(s.to_bytes()))
            .unwrap_or_default(),
    }
}

/// DTMF from a SIP INFO body: `application/dtmf-relay` (`Signal=5`, `Duration=160`) or
/// `application/dtmf` (just the digit).
pub fn dtmf_from_info(ct: &MediaType, body: &[u8]) -> Option<(u8, u16)> {
    let text = std::str::from_utf8(body).ok()?;
    if ct.is("application", "dtmf-relay") {
        let mut event = None;
        let mut duration = 250u16;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "signal" => {
                    let v = v.trim();
                    event = match v.parse::<u8>() {
                        Ok(n) if v.len() <= 2 && n <= 16 => Some(n),
                        _ => v.chars().next().and_then(codecs::meta::digit_to_event),
                    };
                }
                "duration" => duration = v.trim().parse().unwrap_or(250),
                _ => {}
            }
        }
        return event.map(|e| (e, duration));
    }
    if ct.is("application", "dtmf") {
        let d = text.trim().chars().next()?;
        return codecs::meta::digit_to_event(d).map(|e| (e, 250));
    }
    None
}

/// An INFO body carrying one DTMF event (`application/dtmf-relay`).
pub fn info_body(event: u8, duration_ms: u16) -> (&'static str, Bytes) {
    let digit = codecs::meta::event_to_digit(event).unwrap_or('0');
    (
        "application/dtmf-relay",
        Bytes::from(format!("Signal={digit}\r\nDuration={duration_ms}\r\n")),
    )
}

/// `sip:user@next-hop` for the inside (the user escaped where it must be).
pub fn inside_uri(user: &str, next_hop: SocketAddr) -> String {
    let host = match next_hop {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    if user.is_empty() {
        format!("sip:{host}")
    } else {
        format!("sip:{}@{host}", escape_user(user))
    }
}

/// `"Display" <sip:user@gw1>` for the inside From; refused when the party holds a control
/// character ([`check_party`]).
pub fn inside_name_addr(party: &Party, gw1: SocketAddr) -> Result<String, TranslateError> {
    check_party(party)?;
    let host = match gw1 {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let user = if party.user.is_empty() {
        "anonymous".to_owned()
    } else {
        escape_user(&party.user)
    };
    Ok(match &party.display {
        Some(d) => format!(
            "\"{}\" <sip:{user}@{host}>",
            d.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => format!("<sip:{user}@{host}>"),
    })
}

/// Percent-encodes everything outside RFC 3261's `user` unreserved set.
fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &[u8] = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\nm=video 0 RTP/AVP 31\r\n";

    /// An offer the gateway cannot relay is refused (the engine answers 488): each row edits
    /// one line of OFFER (PROTOS c07-sip sdp-connection-ip, sdp-media-type,
    /// sdp-attribute-payloadtype and sdp-attribute-clockrate).
    #[test]
    fn unusable_offers() {
        let text = std::str::from_utf8(OFFER).unwrap();
        for (from, to, ok) in [
            ("c=IN IP4 198.51.100.7", "c=IN IP4 198.51.100.7", true),
            ("c=IN IP4 198.51.100.7", "c=IN IP4 0.0.0.0", true),
            ("c=IN IP4 198.51.100.7", "c=IN IP6 2001:db8::7", true),
            ("c=IN IP4 198.51.100.7", "c=IN IP4 v.x.y.z", false),
            ("c=IN IP4 198.51.100.7", "c=IN IP4 10.10.10.a", false),
            ("c=IN IP4 198.51.100.7", "c=IN IP4 aaaaaaaaa", false),
            ("c=IN IP4 198.51.100.7", "c=IN IP4 10.10.10.-1", false),
            ("c=IN IP4 198.51.100.7", "c=IN IP4 -1", false),
            ("c=IN IP4 198.51.100.7", "c=IN XY 198.51.100.7", false),
            ("RTP/AVP 0 8 101", "RTP/AVP 0 8 128", false),
            ("RTP/AVP 0 8 101", "RTP/AVP 0 8 -1", false),
            ("a=rtpmap:8 PCMA/8000", "a=rtpmap:128 PCMA/8000", false),
            ("a=rtpmap:8 PCMA/8000", "a=rtpmap:-1 PCMA/8000", false),
            ("a=rtpmap:8 PCMA/8000", "a=rtpmap:8 PCMA/0", false),
            ("a=rtpmap:8 PCMA/8000", "a=rtpmap:8 PCMA/-8000", false),
            ("a=rtpmap:8 PCMA/8000", "a=rtpmap:8 PCMA/1", true),
        ] {
            let body = text.replacen(from, to, 1);
            let got = offer_from_sdp(body.as_bytes(), &mut || StreamId(2));
            assert_eq!(got.is_ok(), ok, "{to}: {got:?}");
        }
        // A host name on a refused stream is nobody's media address: nothing to refuse.
        let refused = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nt=0 0\r\n\
                       m=audio 49170 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\n\
                       m=video 0 RTP/AVP 31\r\nc=IN IP4 media.example.com\r\n";
        assert!(offer_from_sdp(refused.as_bytes(), &mut || StreamId(2)).is_ok());
        assert_eq!(
            offer_from_sdp(
                text.replacen("c=IN IP4 198.51.100.7", "c=IN IP4 media.example.com", 1)
                    .as_bytes(),
                &mut || StreamId(2)
            ),
            Err(TranslateError::ConnectionNotIp("media.example.com".into()))
        );
    }

    /// SRTP is not served: an offer of secure streams only is refused (488), never answered as
    /// plain RTP; beside a plain stream (a "best effort" double offer) the secure one is
    /// refused with port 0.
    #[test]
    fn secure_profiles_are_refused_not_downgraded() {
        let text = std::str::from_utf8(OFFER).unwrap();
        for proto in [
            "RTP/SAVP",
            "RTP/SAVPF",
            "UDP/TLS/RTP/SAVP",
            "udp/tls/rtp/savpf",
        ] {
            let body = text.replacen("RTP/AVP 0 8 101", &format!("{proto} 0 8 101"), 1);
            assert_eq!(
                offer_from_sdp(body.as_bytes(), &mut || StreamId(2)),
                Err(TranslateError::SecureMedia(proto.into())),
                "{proto}"
            );
        }
        let double = text.replacen(
            "m=video 0 RTP/AVP 31\r\n",
            "m=audio 49172 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
            1,
        );
        let got = offer_from_sdp(double.as_bytes(), &mut || StreamId(2)).unwrap();
        assert!(got.media[0].stream.is_some());
        assert!(got.media[1].stream.is_none());
        // RTP/AVP with a=crypto ("best effort SRTP", RFC 4568 section 7.1.2): plain RTP.
        let best_effort = text.replacen(
            "a=ptime:20\r\n",
            "a=ptime:20\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
            1,
        );
        assert!(offer_from_sdp(best_effort.as_bytes(), &mut || StreamId(2)).is_ok());
    }

    #[test]
    fn offer_to_meta_and_back() {
        let mut n = 0u16;
        let got = offer_from_sdp(OFFER, &mut || {
            n += 2;
            StreamId(n)
        })
        .unwrap();
        assert_eq!(got.media.len(), 2);
        let a = &got.media[0];
        assert_eq!(a.stream, Some(StreamId(2)));
        assert_eq!(a.codecs.len(), 2);
        assert_eq!(a.telephone_event.map(|t| t.payload_type), Some(101));
        assert_eq!(a.ptime_ms, Some(20));
        assert_eq!(got.media[1].stream, None);
        assert_eq!(got.remotes[0], Some("198.51.100.7:49170".parse().unwrap()));

        let ip: IpAddr = "fd00::1".parse().unwrap();
        let sdp = sdp_from_media(&got.media, ip, &[Some(40000), None], 7, 1);
        let text = String::from_utf8(sdp.to_vec()).unwrap();
        assert!(text.contains("c=IN IP6 fd00::1\r\n"), "{text}");
        assert!(text.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{text}");
        assert!(text.contains("m=video 0 RTP/AVP"), "{text}");
        assert!(!text.contains("198.51.100.7"));
        let back = answer_from_sdp(&sdp, &got.media).unwrap();
        assert_eq!(back.media[0].codecs, got.media[0].codecs);
    }

    #[test]
    fn info_dtmf() {
        let ct = MediaType::parse("application/dtmf-relay").unwrap();
        assert_eq!(
            dtmf_from_info(&ct, b"Signal=5\r\nDuration=160\r\n"),
            Some((5, 160))
        );
        assert_eq!(dtmf_from_info(&ct, b"Signal=#\r\n"), Some((11, 250)));
        let (_, body) = info_body(10, 100);
        assert_eq!(dtmf_from_info(&ct, &body), Some((10, 100)));
    }

    #[test]
    fn parties() {
        let na = NameAddr::parse("\"Alice\" <sip:alice@example.com>;tag=1", "From").unwrap();
        assert_eq!(calling_party(&na).user, "alice");
        let uri = Uri::parse("tel:+1-555-0100").unwrap();
        assert_eq!(called_party(&uri, &na).user, "+15550100");
        assert_eq!(
            inside_uri("bob smith", "[fd00::10]:5060".parse().unwrap()),
            "sip:bob%20smith@[fd00::10]:5060"
        );
    }

    /// Header injection: a party with a control character is refused, whichever field holds
    /// it; HTAB in a display name is linear whitespace and passes.
    #[test]
    fn parties_with_control_characters_are_refused() {
        let gw1: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let party = |user: &str, display: Option<&str>| Party {
            user: user.to_owned(),
            display: display.map(str::to_owned),
        };
        for p in [
            party("alice", Some("Alice\r\nX-Injected: yes")),
            party("alice", Some("Alice\u{0}")),
            party("alice\r\nX-Injected: yes", None),
            party("alice", Some("\u{1b}[31m")),
        ] {
            assert!(check_party(&p).is_err(), "{p:?}");
            assert!(
                matches!(
                    inside_name_addr(&p, gw1),
                    Err(TranslateError::ControlCharacter(_))
                ),
                "{p:?}"
            );
        }
        assert_eq!(
            inside_name_addr(&party("alice", Some("Alice\tSmith \"A\"")), gw1).unwrap(),
            "\"Alice\tSmith \\\"A\\\"\" <sip:alice@10.0.0.1>"
        );
        // A percent-decoded user part with CR LF: refused before it reaches Meta.
        let na =
            NameAddr::parse("<sip:a%0D%0AX-Injected:%20yes@example.com>;tag=1", "From").unwrap();
        assert!(check_party(&calling_party(&na)).is_err());
    }
}
