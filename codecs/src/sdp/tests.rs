//! SDP tests: corpus bodies from RFC 4475/5118 and captures, tables, properties.

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const CORPORA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpora");

/// The body of a SIP message: everything after the first empty line.
fn body(msg: &[u8]) -> &[u8] {
    for sep in [&b"\r\n\r\n"[..], b"\n\n"] {
        if let Some(i) = msg.windows(sep.len()).position(|w| w == sep) {
            return &msg[i + sep.len()..];
        }
    }
    &[]
}

fn corpus(path: &str) -> Vec<u8> {
    let p = format!("{CORPORA}/{path}");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

// wireshark-samplecaptures/SIP_CALL_RTP_G711, first SDP (note "a=SendRecv").
const CLARENT: &[u8] = b"v=0\r\no=Clarent 120386 120387 IN IP4 200.57.7.196\r\ns=Clarent C5CM\r\n\
c=IN IP4 200.57.7.196\r\nt=0 0\r\nm=audio 40376 RTP/AVP 8 18 4 0\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\na=rtpmap:4 G723/8000\r\na=rtpmap:0 PCMU/8000\r\na=SendRecv\r\n";

// sipp-scenarios-lundgrel/sip-rtp-g729a.pcap.
const SIPP_G729: &[u8] = b"v=0\r\no=- 42 42 IN IP4 10.0.2.20\r\ns=-\r\nc=IN IP4 10.0.2.20\r\n\
t=0 0\r\nm=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=recvonly\r\n";

// A typical phone offer with DTMF, RTCP attribute, bandwidth and unknown attributes, bare LF,
// trailing spaces and no final line ending.
const PHONE: &[u8] = b"v=0\no=alice 2890844526 2890844527 IN IP4 198.51.100.7 \ns=SIP Call\n\
c=IN IP4 198.51.100.7\nb=AS:84\nt=0 0\na=sendonly\nm=audio 49170 RTP/AVP 0 8 9 101\n\
a=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-16\na=ptime:20\na=maxptime:150\na=rtcp:49171 IN IP4 10.0.0.7\n\
a=X-nat:0\nm=video 0 RTP/AVP 31\na=inactive";

#[test]
fn rfc4475_bodies_round_trip() {
    let mut seen = 0;
    for entry in std::fs::read_dir(format!("{CORPORA}/rfc4475")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("dat") {
            continue;
        }
        let msg = std::fs::read(&path).unwrap();
        let b = body(&msg);
        // Never panics, whatever the body is.
        let _ = Session::parse(b);
        let lenient = Session::parse_lenient(b);
        if !b.starts_with(b"v=0") {
            continue;
        }
        let s = lenient.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(s.to_bytes(), b, "{}", path.display());
        assert_eq!(s.buffer_len(), b.len());
        seen += 1;
    }
    assert!(seen >= 15, "only {seen} SDP bodies found");
}

#[test]
fn rfc4475_sdp01() {
    let msg = corpus("rfc4475/sdp01.dat");
    let b = body(&msg);
    // "a=rtpmap:31 LPC" has no clock rate: strict refuses it and says where.
    assert_eq!(
        Session::parse(b).unwrap_err(),
        SdpError {
            line: 8,
            kind: SdpErrorKind::Malformed("rtpmap")
        }
    );
    let s = Session::parse_lenient(b).unwrap();
    assert_eq!(s.to_bytes(), b);
    let o = s.origin().unwrap();
    assert_eq!(o.username, "mhandley");
    assert_eq!(o.session_id, "29739");
    assert_eq!(o.session_version_number(), Some(7_272_939));
    let mut bumped = o.clone();
    assert!(bumped.increment_version());
    assert_eq!(bumped.session_version, "7272940");
    bumped.session_version = "x".into();
    assert!(!bumped.increment_version());
    assert_eq!(o.address, Address::Ip(v4("192.0.2.5")));
    assert_eq!(s.session_name(), Some(&b"-"[..]));
    assert_eq!(s.connection().unwrap().address.ip(), Some(v4("192.0.2.5")));
    assert_eq!(s.timing(), Some(Timing { start: 0, stop: 0 }));
    assert_eq!(s.media().len(), 2);
    let audio = &s.media()[0];
    assert_eq!(audio.media_line().formats, ["0", "12"]);
    let codecs = audio.codecs();
    assert_eq!(codecs.len(), 2);
    assert_eq!(codecs[0].encoding, "PCMU");
    assert_eq!(codecs[1].encoding, "QCELP");
    let video = &s.media()[1];
    assert!(matches!(
        video.lines()[0].field(),
        Field::Invalid(SdpErrorKind::Malformed("rtpmap"))
    ));
    assert_eq!(video.codec(31).unwrap().encoding, "H261");
    assert_eq!(s.media_direction(video), Direction::SendRecv);
}

#[test]
fn rfc5118_ipv6_in_sdp() {
    let msg = corpus("rfc5118/ipv6-in-sdp");
    let b = body(&msg);
    let s = Session::parse(b).unwrap();
    assert_eq!(s.to_bytes(), b);
    assert_eq!(s.origin().unwrap().addrtype, AddrType::Ip6);
    assert_eq!(s.origin().unwrap().address.ip(), Some(v6("2001:db8::20")));
    assert_eq!(
        s.connection().unwrap(),
        &Connection::new(v6("2001:db8::20"))
    );
    assert_eq!(
        s.session_name(),
        Some(&b"Live video feed for today's meeting"[..])
    );
    assert_eq!(
        s.timing(),
        Some(Timing {
            start: 3_338_481_189,
            stop: 3_370_017_201
        })
    );
    let audio = &s.media()[0];
    assert_eq!(audio.port(), 6000);
    assert_eq!(audio.rtpmap(2).unwrap(), &Rtpmap::new(2, "G726-32", 8000));
    let video = &s.media()[1];
    assert_eq!(video.media_line().media, "video");
    assert_eq!(video.codec(107).unwrap().clock_rate, 90000);
}

#[test]
fn rfc5118_mult_ip_in_sdp() {
    let msg = corpus("rfc5118/mult-ip-in-sdp");
    let b = body(&msg);
    let s = Session::parse(b).unwrap();
    assert_eq!(s.to_bytes(), b);
    // o= with an FQDN under IP4.
    assert_eq!(
        s.origin().unwrap().address,
        Address::Host("host.example.com".into())
    );
    assert_eq!(s.session_name(), Some(&b""[..]));
    assert!(s.connection().is_none());
    let (a, v) = (&s.media()[0], &s.media()[1]);
    assert_eq!(
        s.media_connection(a).unwrap().address.ip(),
        Some(v4("192.0.2.1"))
    );
    assert_eq!(
        s.media_connection(v).unwrap().address.ip(),
        Some(v6("2001:db8::1"))
    );
}

#[test]
fn rfc5118_ipv4_mapped_and_bare_lf() {
    let msg = corpus("rfc5118/ipv4-mapped-ipv6");
    let crlf = body(&msg);
    assert_eq!(Session::parse(crlf).unwrap().to_bytes(), crlf);
    // The same body as a sloppy phone would send it, with bare LF.
    let lf: Vec<u8> = String::from_utf8(crlf.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .into();
    let b = &lf[..];
    let s = Session::parse(b).unwrap();
    assert_eq!(s.to_bytes(), b);
    assert!(s.lines().iter().all(|l| l.ending() == LineEnding::Lf));
    assert_eq!(
        s.connection().unwrap().address.ip(),
        Some(v6("::ffff:192.0.2.2"))
    );
}

#[test]
fn captured_bodies() {
    let s = Session::parse(CLARENT).unwrap();
    assert_eq!(s.to_bytes(), CLARENT);
    let m = &s.media()[0];
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    let names: Vec<_> = m.codecs().into_iter().map(|c| c.encoding).collect();
    assert_eq!(names, ["PCMA", "G729", "G723", "PCMU"]);
    assert!(m.telephone_event().is_none());

    let s = Session::parse(SIPP_G729).unwrap();
    assert_eq!(s.to_bytes(), SIPP_G729);
    assert_eq!(s.media_direction(&s.media()[0]), Direction::RecvOnly);
}

#[test]
fn phone_offer_typed_view() {
    let s = Session::parse(PHONE).unwrap();
    assert_eq!(s.to_bytes(), PHONE);
    assert_eq!(s.origin().unwrap().address.ip(), Some(v4("198.51.100.7")));
    assert_eq!(
        s.bandwidths().next(),
        Some(&Bandwidth {
            bwtype: "AS".into(),
            bandwidth: 84
        })
    );
    assert_eq!(s.direction(), Some(Direction::SendOnly));
    let audio = &s.media()[0];
    assert_eq!(
        audio.media_line().payload_types().collect::<Vec<_>>(),
        [0, 8, 9, 101]
    );
    assert_eq!(
        audio.telephone_event(),
        Some(&Rtpmap::new(101, "telephone-event", 8000))
    );
    assert_eq!(audio.fmtp("101").unwrap().params, "0-16");
    assert_eq!(audio.ptime(), Some(20));
    assert_eq!(audio.maxptime(), Some(150));
    let rtcp = audio.rtcp().unwrap();
    assert_eq!(rtcp.port, 49171);
    assert_eq!(
        rtcp.connection.as_ref().unwrap().address.ip(),
        Some(v4("10.0.0.7"))
    );
    assert_eq!(
        audio.attribute("x-nat"),
        Some(&Attribute::Other {
            name: "X-nat".into(),
            value: Some("0".into())
        })
    );
    // Session-level sendonly applies where the media says nothing; media overrides.
    assert_eq!(s.media_direction(audio), Direction::SendOnly);
    let g722 = audio.codec(9).unwrap();
    assert_eq!((g722.encoding.as_str(), g722.clock_rate), ("G722", 8000));
    let te = audio.codec(101).unwrap();
    assert_eq!(te.fmtp.as_deref(), Some("0-16"));
    let video = &s.media()[1];
    assert!(video.is_rejected());
    assert_eq!(s.media_direction(video), Direction::Inactive);
    assert_eq!(video.lines()[0].ending(), LineEnding::None);
}

#[test]
fn topology_hiding_mutations() {
    let mut s = Session::parse(PHONE).unwrap();
    let gw = v6("2001:db8::1");
    assert!(s.set_origin_address(gw));
    s.set_all_connection_addresses(gw);
    s.media_mut()[0].set_port(30000);
    s.media_mut()[1].set_direction(Some(Direction::SendRecv));
    assert!(s.is_modified());
    let out = s.to_bytes();
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(
        text,
        "v=0\r\no=alice 2890844526 2890844527 IN IP6 2001:db8::1\r\ns=SIP Call\r\n\
         c=IN IP6 2001:db8::1\r\nb=AS:84\r\nt=0 0\r\na=sendonly\r\n\
         m=audio 30000 RTP/AVP 0 8 9 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=maxptime:150\r\na=rtcp:49171\r\n\
         a=X-nat:0\r\nm=video 0 RTP/AVP 31\r\na=sendrecv\r\n"
    );
    assert_eq!(s.buffer_len(), out.len());
    // Emitted output parses back strictly to the same typed view.
    let again = Session::parse(&out).unwrap();
    assert_eq!(again.to_bytes(), out);
    assert!(!again.is_modified());
}

#[test]
fn connection_inserted_where_missing() {
    let msg = corpus("rfc5118/mult-ip-in-sdp");
    let mut s = Session::parse(body(&msg)).unwrap();
    s.set_connection_address(v4("203.0.113.9"));
    s.media_mut()[1].remove_connections();
    s.media_mut()[0].set_connection_address(v4("203.0.113.10"));
    let out = s.to_bytes();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "v=0\r\no=bob 280744730 28977631 IN IP4 host.example.com\r\ns=\r\n\
         c=IN IP4 203.0.113.9\r\nt=0 0\r\nm=audio 22334 RTP/AVP 0\r\nc=IN IP4 203.0.113.10\r\n\
         m=video 6024 RTP/AVP 107\r\na=rtpmap:107 H263-1998/90000\r\n"
    );
    let s = Session::parse(&out).unwrap();
    assert_eq!(
        s.media_connection(&s.media()[1]).unwrap().address.ip(),
        Some(v4("203.0.113.9"))
    );
}

#[test]
fn retain_and_remove() {
    let mut s = Session::parse(PHONE).unwrap();
    let m = &mut s.media_mut()[0];
    m.retain_formats(|f| f == "8" || f == "101");
    assert_eq!(m.remove_attributes("x-nat"), 1);
    assert_eq!(m.remove_attributes("nothing"), 0);
    assert_eq!(m.media_line().formats, ["8", "101"]);
    assert!(m.rtpmap(0).is_none());
    assert!(m.rtpmap(8).is_some());
    assert!(m.fmtp("101").is_some());
    s.set_direction(None);
    assert_eq!(s.direction(), None);
    let out = s.to_bytes();
    assert!(!out.windows(7).any(|w| w == b"X-nat:0"));
    Session::parse(&out).unwrap();
}

#[test]
fn builder_fresh_session() {
    let ip = v4("192.0.2.1");
    let s = Session::builder(Origin::new("-", 123, 1, ip))
        .connection(ip)
        .media(
            MediaBuilder::new("audio", 40000, "RTP/AVP")
                .format(0)
                .rtpmap(Rtpmap::new(8, "PCMA", 8000))
                .rtpmap(Rtpmap::new(101, "telephone-event", 8000))
                .fmtp("101", "0-15")
                .ptime(20)
                .direction(Direction::SendOnly),
        )
        .media(
            MediaBuilder::new("video", 0, "RTP/AVP")
                .format(31)
                .connection(v6("2001:db8::2")),
        )
        .build()
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&s.to_bytes()).unwrap(),
        "v=0\r\no=- 123 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendonly\r\n\
         m=video 0 RTP/AVP 31\r\nc=IN IP6 2001:db8::2\r\n"
    );
    assert!(!s.is_modified());
    assert_eq!(s.media()[0].telephone_event().unwrap().payload_type, 101);
}

#[test]
fn builder_session_is_what_parsing_its_bytes_gives() {
    let ip = v4("192.0.2.1");
    let s = Session::builder(Origin::new("-", 7, 2, ip))
        .connection(ip)
        .media(
            MediaBuilder::new("audio", 40000, "RTP/AVP")
                .format(0)
                .rtpmap(Rtpmap::new(101, "telephone-event", 8000))
                .fmtp("101", "0-15"),
        )
        .media(MediaBuilder::new("video", 0, "RTP/AVP").format(31))
        .build()
        .unwrap();
    assert_eq!(Session::parse(&s.to_bytes()).unwrap(), s);
    // The limits of parsing hold for a built session too.
    let mut b = Session::builder(Origin::new("-", 7, 2, ip)).connection(ip);
    for port in 0..=MAX_MEDIA {
        b = b.media(MediaBuilder::new("audio", port as u16, "RTP/AVP").format(0));
    }
    assert_eq!(b.build().unwrap_err().kind, SdpErrorKind::TooManyMedia);
}

#[test]
fn builder_rejects_bad_values() {
    let ip = v4("192.0.2.1");
    let o = || Origin::new("sgw", 1, 1, ip);
    // Line-break injection in a free-form value.
    let e = Session::builder(o())
        .session_name("x\r\nc=IN IP4 10.0.0.1")
        .build()
        .unwrap_err();
    assert_eq!(e.kind, SdpErrorKind::InvalidByte(b'\r'));
    let e = Session::builder(o())
        .connection(ip)
        .media(MediaBuilder::new("audio", 1, "RTP/AVP").fmtp("0", "a\nb"))
        .build()
        .unwrap_err();
    assert_eq!(e.kind, SdpErrorKind::InvalidByte(b'\n'));
    // A space in a token would change the line's meaning.
    let e = Session::builder(Origin {
        username: "a b".into(),
        ..o()
    })
    .build()
    .unwrap_err();
    assert_eq!(e.kind, SdpErrorKind::Malformed("origin"));
    // Media without any connection address.
    let e = Session::builder(o())
        .media(MediaBuilder::new("audio", 1, "RTP/AVP").format(0))
        .build()
        .unwrap_err();
    assert_eq!(e.kind, SdpErrorKind::MissingConnection);
    let mut s = Session::builder(o()).connection(ip).build().unwrap();
    assert!(s
        .push_attribute(Attribute::Other {
            name: "x".into(),
            value: Some("1\r\n".into())
        })
        .is_err());
    assert!(!s.is_modified());
}

#[test]
fn connection_forms() {
    let cases: &[(&str, Result<Connection, SdpErrorKind>)] = &[
        ("IN IP4 192.0.2.1", Ok(Connection::new(v4("192.0.2.1")))),
        (
            "IN IP4 224.2.36.42/127",
            Ok(Connection {
                ttl: Some(127),
                ..Connection::new(v4("224.2.36.42"))
            }),
        ),
        (
            "IN IP4 224.2.1.1/127/3",
            Ok(Connection {
                ttl: Some(127),
                count: Some(3),
                ..Connection::new(v4("224.2.1.1"))
            }),
        ),
        (
            "IN IP6 FF15::101/3",
            Ok(Connection {
                count: Some(3),
                ..Connection::new(v6("ff15::101"))
            }),
        ),
        (
            "IN IP4 pbx.example.com",
            Ok(Connection {
                address: Address::Host("pbx.example.com".into()),
                ..Connection::new(v4("0.0.0.0"))
            }),
        ),
        (
            "ATM NSAP 47.0005",
            Ok(Connection {
                nettype: "ATM".into(),
                addrtype: AddrType::Other("NSAP".into()),
                address: Address::Host("47.0005".into()),
                ttl: None,
                count: None,
            }),
        ),
        ("IN IP4 192.0.2.256", Err(SdpErrorKind::BadAddress)),
        (
            "IN IP4 2001:db8::1",
            Err(SdpErrorKind::AddressFamilyMismatch),
        ),
        ("IN IP6 192.0.2.1", Err(SdpErrorKind::AddressFamilyMismatch)),
        ("IN IP6 2001:db8:::1", Err(SdpErrorKind::BadAddress)),
        ("IN IP4 exa_mple.com", Err(SdpErrorKind::BadAddress)),
        ("IN IP4 010.0.0.1", Err(SdpErrorKind::BadAddress)),
        (
            "IN IP6 FF15::101/3/2",
            Err(SdpErrorKind::Malformed("connection")),
        ),
        (
            "IN IP4 224.2.1.1/300",
            Err(SdpErrorKind::Malformed("connection")),
        ),
        ("IN IP4", Err(SdpErrorKind::Malformed("connection"))),
        (
            "IN IP4 1.2.3.4 extra",
            Err(SdpErrorKind::Malformed("connection")),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&Connection::parse(text), want, "{text}");
        if let Ok(c) = want {
            // Printing gives back a line that parses to the same value.
            assert_eq!(Connection::parse(&c.to_string()).as_ref(), Ok(c));
        }
    }
}

#[test]
fn attribute_forms() {
    let cases: &[(&str, Result<Attribute, SdpErrorKind>)] = &[
        (
            "rtpmap:0 PCMU/8000",
            Ok(Attribute::Rtpmap(Rtpmap::new(0, "PCMU", 8000))),
        ),
        (
            "rtpmap:97 opus/48000/2",
            Ok(Attribute::Rtpmap(Rtpmap {
                channels: Some(2),
                ..Rtpmap::new(97, "opus", 48000)
            })),
        ),
        (
            "rtpmap:101  telephone-event/8000  ",
            Ok(Attribute::Rtpmap(Rtpmap::new(101, "telephone-event", 8000))),
        ),
        (
            "rtpmap:127 X/1",
            Ok(Attribute::Rtpmap(Rtpmap::new(127, "X", 1))),
        ),
        // PROTOS c07-sip sdp-attribute-payloadtype and -clockrate.
        ("rtpmap:128 X/8000", Err(SdpErrorKind::BadPayloadType)),
        ("rtpmap:-1 PCMU/8000", Err(SdpErrorKind::BadPayloadType)),
        ("rtpmap:65536 PCMU/8000", Err(SdpErrorKind::BadPayloadType)),
        ("rtpmap:x PCMU/8000", Err(SdpErrorKind::BadPayloadType)),
        ("rtpmap:0 PCMU/0", Err(SdpErrorKind::BadClockRate)),
        ("rtpmap:0 PCMU/-1", Err(SdpErrorKind::BadClockRate)),
        ("rtpmap:0 PCMU/-8000", Err(SdpErrorKind::BadClockRate)),
        ("rtpmap:0 PCMU/4294967296", Err(SdpErrorKind::BadClockRate)),
        ("rtpmap:0 PCMU/", Err(SdpErrorKind::BadClockRate)),
        // No clock rate at all: malformed only (RFC 4475 keeps such lines in valid messages).
        ("rtpmap:31 LPC", Err(SdpErrorKind::Malformed("rtpmap"))),
        (
            "rtpmap:0 PCMU/8000/1/2",
            Err(SdpErrorKind::Malformed("rtpmap")),
        ),
        ("rtpmap", Err(SdpErrorKind::Malformed("rtpmap"))),
        (
            "fmtp:18 annexb=no",
            Ok(Attribute::Fmtp(Fmtp {
                format: "18".into(),
                params: "annexb=no".into(),
            })),
        ),
        ("ptime:20", Ok(Attribute::Ptime(20))),
        ("ptime:22.5", Ok(Attribute::Ptime(22))),
        ("ptime:x", Err(SdpErrorKind::Malformed("ptime"))),
        ("maxptime:40", Ok(Attribute::MaxPtime(40))),
        ("sendrecv", Ok(Attribute::Direction(Direction::SendRecv))),
        ("sendonly ", Ok(Attribute::Direction(Direction::SendOnly))),
        ("RECVONLY", Ok(Attribute::Direction(Direction::RecvOnly))),
        ("inactive", Ok(Attribute::Direction(Direction::Inactive))),
        ("inactive:1", Err(SdpErrorKind::Malformed("direction"))),
        (
            "rtcp:53020",
            Ok(Attribute::Rtcp(RtcpAttr {
                port: 53020,
                connection: None,
            })),
        ),
        (
            "rtcp:53020 IN IP6 2001:db8::2",
            Ok(Attribute::Rtcp(RtcpAttr {
                port: 53020,
                connection: Some(Connection::new(v6("2001:db8::2"))),
            })),
        ),
        ("rtcp:70000", Err(SdpErrorKind::BadPort)),
        ("rtcp:5 IN IP4", Err(SdpErrorKind::Malformed("rtcp"))),
        (
            "crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc",
            Ok(Attribute::Other {
                name: "crypto".into(),
                value: Some("1 AES_CM_128_HMAC_SHA1_80 inline:abc".into()),
            }),
        ),
        ("", Err(SdpErrorKind::Malformed("attribute"))),
        ("a b", Err(SdpErrorKind::Malformed("attribute"))),
    ];
    for (text, want) in cases {
        assert_eq!(&Attribute::parse(text), want, "{text}");
    }
}

#[test]
fn media_line_forms() {
    let m = MediaLine::parse("audio 49170/2 RTP/SAVP 0 96").unwrap();
    assert_eq!((m.port, m.port_count), (49170, Some(2)));
    assert!(m.is_rtp());
    assert_eq!(m.to_string(), "audio 49170/2 RTP/SAVP 0 96");
    let t38 = MediaLine::parse("image 6000 udptl t38").unwrap();
    assert!(!t38.is_rtp());
    assert_eq!(t38.payload_types().count(), 0);
    assert_eq!(
        MediaLine::parse("audio 65536 RTP/AVP 0"),
        Err(SdpErrorKind::BadPort)
    );
    assert_eq!(
        MediaLine::parse("audio x RTP/AVP 0"),
        Err(SdpErrorKind::BadPort)
    );
    assert_eq!(
        MediaLine::parse("audio 5"),
        Err(SdpErrorKind::Malformed("media"))
    );
    assert_eq!(
        MediaLine::parse("audio 5/0 RTP/AVP 0"),
        Err(SdpErrorKind::Malformed("media"))
    );
    for formats in ["128", "-1", "0 256", "0 x", "96 1024"] {
        assert_eq!(
            MediaLine::parse(&format!("audio 9876 RTP/AVP {formats}")),
            Err(SdpErrorKind::BadPayloadType),
            "{formats}"
        );
    }
    assert!(MediaLine::parse("audio 9876 RTP/SAVPF 0 127").is_ok());
    assert!(MediaLine::parse("application 9 TCP/BFCP *").is_ok());
    let many = format!("audio 5 RTP/AVP{}", " 0".repeat(MAX_FORMATS_PER_MEDIA + 1));
    assert_eq!(MediaLine::parse(&many), Err(SdpErrorKind::TooManyFormats));
}

#[test]
fn strict_and_lenient_errors() {
    let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
    // (body, strict error, lenient error)
    type Case = (String, SdpError, Option<SdpError>);
    let e = |line, kind| SdpError { line, kind };
    let cases: Vec<Case> = vec![
        ("".into(), e(0, SdpErrorKind::Empty), Some(e(0, SdpErrorKind::Empty))),
        (
            "o=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n".into(),
            e(0, SdpErrorKind::Missing('v')),
            None,
        ),
        (
            "v=0\r\ns=-\r\no=- 1 1 IN IP4 192.0.2.1\r\nt=0 0\r\n".into(),
            e(2, SdpErrorKind::OutOfOrder('o')),
            None,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\n".into(),
            e(0, SdpErrorKind::Missing('t')),
            None,
        ),
        (
            format!("{base}c=IN IP4 192.0.2.2\r\n"),
            e(6, SdpErrorKind::Duplicate('c')),
            None,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n".into(),
            e(5, SdpErrorKind::MissingConnection),
            None,
        ),
        (format!("{base}x=1\r\n"), e(6, SdpErrorKind::UnknownType('x')), None),
        (format!("{base}\r\n"), e(6, SdpErrorKind::NotAField), None),
        (format!("{base}a=rtpmap:x\r\n"), e(6, SdpErrorKind::Malformed("rtpmap")), None),
        (
            format!("{base}m=audio 1 RTP/AVP 0\r\ns=late\r\n"),
            e(7, SdpErrorKind::OutOfOrder('s')),
            None,
        ),
        // Fatal in both modes.
        (
            "v=1\r\n".into(),
            e(1, SdpErrorKind::BadVersion),
            Some(e(1, SdpErrorKind::BadVersion)),
        ),
        (
            format!("{base}c=IN IP4 10.0.0.300\r\n"),
            e(6, SdpErrorKind::BadAddress),
            Some(e(6, SdpErrorKind::BadAddress)),
        ),
        // PROTOS c07-sip sdp-connection-ip 3614, sdp-media-type 4130,
        // sdp-attribute-payloadtype 4310, sdp-attribute-clockrate 4481 and 4483.
        (
            format!("{base}c=IN IP4 10.10.10.-1\r\n"),
            e(6, SdpErrorKind::BadAddress),
            Some(e(6, SdpErrorKind::BadAddress)),
        ),
        (
            format!("{base}m=audio 9876 RTP/AVP 128\r\n"),
            e(6, SdpErrorKind::BadPayloadType),
            Some(e(6, SdpErrorKind::BadPayloadType)),
        ),
        (
            format!("{base}a=rtpmap:128 PCMU/8000\r\n"),
            e(6, SdpErrorKind::BadPayloadType),
            Some(e(6, SdpErrorKind::BadPayloadType)),
        ),
        (
            format!("{base}a=rtpmap:0 PCMU/0\r\n"),
            e(6, SdpErrorKind::BadClockRate),
            Some(e(6, SdpErrorKind::BadClockRate)),
        ),
        (
            format!("{base}a=rtpmap:0 PCMU/-1\r\n"),
            e(6, SdpErrorKind::BadClockRate),
            Some(e(6, SdpErrorKind::BadClockRate)),
        ),
        (
            format!("{base}a=rtcp:5 IN IP6 10.0.0.1\r\n"),
            e(6, SdpErrorKind::AddressFamilyMismatch),
            Some(e(6, SdpErrorKind::AddressFamilyMismatch)),
        ),
        (
            format!("{base}m=audio\r\n"),
            e(6, SdpErrorKind::Malformed("media")),
            Some(e(6, SdpErrorKind::Malformed("media"))),
        ),
        (
            format!("{base}o=broken\r\n"),
            e(6, SdpErrorKind::Malformed("origin")),
            Some(e(6, SdpErrorKind::Malformed("origin"))),
        ),
        (
            format!("{base}s=a\0b\r\n"),
            e(6, SdpErrorKind::InvalidByte(0)),
            Some(e(6, SdpErrorKind::InvalidByte(0))),
        ),
        (
            format!("{base}s=a\rb\r\n"),
            e(6, SdpErrorKind::InvalidByte(b'\r')),
            Some(e(6, SdpErrorKind::InvalidByte(b'\r'))),
        ),
        (
            format!("{base}a={}\r\n", "x".repeat(MAX_LINE_LEN)),
            e(6, SdpErrorKind::LineTooLong),
            Some(e(6, SdpErrorKind::LineTooLong)),
        ),
        (
            format!("{base}{}", "a=x\r\n".repeat(MAX_LINES)),
            e(MAX_LINES + 1, SdpErrorKind::TooManyLines),
            Some(e(MAX_LINES + 1, SdpErrorKind::TooManyLines)),
        ),
        (
            format!("{base}{}", "m=audio 1 RTP/AVP 0\r\n".repeat(MAX_MEDIA + 1)),
            e(6 + MAX_MEDIA, SdpErrorKind::TooManyMedia),
            Some(e(6 + MAX_MEDIA, SdpErrorKind::TooManyMedia)),
        ),
        (
            format!("{base}a={}\r\n", "x".repeat(MAX_SDP_SIZE)),
            e(0, SdpErrorKind::TooLarge(MAX_SDP_SIZE + base.len() + 4)),
            Some(e(0, SdpErrorKind::TooLarge(MAX_SDP_SIZE + base.len() + 4))),
        ),
    ];
    for (text, strict, lenient) in cases {
        let b = text.as_bytes();
        assert_eq!(Session::parse(b).unwrap_err(), strict, "{text:?}");
        match lenient {
            Some(err) => assert_eq!(Session::parse_lenient(b).unwrap_err(), err, "{text:?}"),
            None => assert_eq!(Session::parse_lenient(b).unwrap().to_bytes(), b, "{text:?}"),
        }
    }
    assert_eq!(
        Session::parse(b"v=0\r\n").unwrap_err().to_string(),
        "SDP line 0: mandatory 'o=' line missing"
    );
}

#[test]
fn lenient_keeps_invalid_lines_and_can_drop_them() {
    let text = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 1 RTP/AVP 0\r\na=ptime:abc\r\ni=info\r\n\r\n";
    let mut s = Session::parse_lenient(text).unwrap();
    assert_eq!(s.media()[0].ptime(), None);
    assert_eq!(s.to_bytes(), text);
    s.remove_uninterpreted_lines();
    assert_eq!(
        s.to_bytes(),
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n"
    );
}

#[test]
fn direction_conversions() {
    for d in [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::RecvOnly,
        Direction::Inactive,
    ] {
        let m: crate::meta::Direction = d.into();
        assert_eq!(Direction::from(m), d);
    }
}

fn sdp_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("v=0".to_string()),
        Just("o=- 1 1 IN IP4 192.0.2.1".to_string()),
        Just("s=-".to_string()),
        Just("c=IN IP6 2001:db8::1".to_string()),
        Just("t=0 0".to_string()),
        Just("m=audio 5004 RTP/AVP 0 101".to_string()),
        Just("a=rtpmap:101 telephone-event/8000".to_string()),
        Just("a=sendonly".to_string()),
        Just("a=rtcp:5005".to_string()),
        "[a-z]=[ -~]{0,30}",
        "[ -~]{0,20}",
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for mode in [Mode::Strict, Mode::Lenient] {
            if let Ok(s) = Session::parse_with(&bytes, mode) {
                prop_assert_eq!(s.to_bytes(), bytes.clone());
            }
        }
    }

    #[test]
    fn structured_lines_round_trip_and_mutate(
        lines in proptest::collection::vec(sdp_line(), 1..20),
        crlf in any::<bool>(),
        port in any::<u16>(),
    ) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let text = lines.join(sep);
        for mode in [Mode::Strict, Mode::Lenient] {
            let Ok(mut s) = Session::parse_with(text.as_bytes(), mode) else { continue };
            prop_assert_eq!(s.to_bytes(), text.as_bytes());
            // Parse -> emit -> parse is stable, also after mutation.
            let again = Session::parse_with(&s.to_bytes(), mode).unwrap();
            prop_assert_eq!(&again, &s);
            s.set_all_connection_addresses(v4("192.0.2.9"));
            s.set_origin_address(v6("2001:db8::9"));
            for m in s.media_mut() {
                m.set_port(port);
            }
            let out = s.to_bytes();
            let reparsed = Session::parse_lenient(&out).unwrap();
            prop_assert_eq!(reparsed.to_bytes(), out);
            if let Some(o) = reparsed.origin() {
                prop_assert_eq!(o.address.ip(), Some(v6("2001:db8::9")));
            }
        }
    }
}
