//! Tests across the capture layers: the corpora, hand-built captures per link type and file
//! format, TCP and IP reassembly cases, truncated files, writer round trips, and mutated input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use etherparse::PacketBuilder;

use super::link::*;
use super::tcp::{Out, Segment, Tcp};
use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpora/pcap")
        .join(rel)
}

struct Run {
    events: Vec<Event>,
    stats: Stats,
    error: Option<CaptureError>,
}

fn run_reader<R: std::io::Read>(mut r: CaptureReader<R>) -> Run {
    let mut events = Vec::new();
    let mut error = None;
    for item in r.by_ref() {
        match item {
            Ok(e) => events.push(e),
            Err(e) => {
                assert!(error.is_none(), "two errors");
                error = Some(e);
            }
        }
    }
    Run {
        events,
        stats: r.stats().clone(),
        error,
    }
}

fn run_bytes(bytes: &[u8]) -> Run {
    run_reader(CaptureReader::new(bytes).expect("header"))
}

fn run_file(path: &Path) -> Run {
    run_reader(CaptureReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn udp_packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (sa(src), sa(dst));
    let mut out = Vec::new();
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64)
            .udp(src.port(), dst.port())
            .write_to_vec(&mut out, payload)
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64)
            .udp(src.port(), dst.port())
            .write_to_vec(&mut out, payload)
            .unwrap(),
        _ => unreachable!(),
    }
    out
}

/// A classic pcap file.
fn pcap(linktype: u32, big_endian: bool, nanos: bool, frames: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend(w32(if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 }));
    out.extend(w16(2));
    out.extend(w16(4));
    out.extend(w32(0));
    out.extend(w32(0));
    out.extend(w32(65535));
    out.extend(w32(linktype));
    for (t, f) in frames {
        out.extend(w32(t.as_secs() as u32));
        out.extend(w32(if nanos {
            t.subsec_nanos()
        } else {
            t.subsec_micros()
        }));
        out.extend(w32(f.len() as u32));
        out.extend(w32(f.len() as u32));
        out.extend(f);
    }
    out
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// A pcapng block with its lengths.
fn block(big_endian: bool, kind: u32, body: &[u8]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut body = body.to_vec();
    pad4(&mut body);
    let total = body.len() as u32 + 12;
    let mut out = Vec::new();
    out.extend(w32(kind));
    out.extend(w32(total));
    out.extend(body);
    out.extend(w32(total));
    out
}

/// A pcapng file: one section, one interface with microsecond (or `tsresol`) units; EPBs.
fn pcapng(
    linktype: u16,
    big_endian: bool,
    tsresol: Option<u8>,
    frames: &[(u64, Vec<u8>)],
) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut shb = Vec::new();
    shb.extend(w32(0x1A2B_3C4D));
    shb.extend(w16(1));
    shb.extend(w16(0));
    shb.extend([0xFF; 8]);
    let mut out = block(big_endian, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend(w16(linktype));
    idb.extend(w16(0));
    idb.extend(w32(0));
    if let Some(r) = tsresol {
        idb.extend(w16(9));
        idb.extend(w16(1));
        idb.extend([r, 0, 0, 0]);
        idb.extend(w16(0));
        idb.extend(w16(0));
    }
    out.extend(block(big_endian, 1, &idb));
    // A name resolution block in between: skipped.
    out.extend(block(big_endian, 4, &[0, 0, 0, 0]));
    for (ts, f) in frames {
        let mut epb = Vec::new();
        epb.extend(w32(0));
        epb.extend(w32((ts >> 32) as u32));
        epb.extend(w32(*ts as u32));
        epb.extend(w32(f.len() as u32));
        epb.extend(w32(f.len() as u32));
        epb.extend(f);
        out.extend(block(big_endian, 6, &epb));
    }
    out
}

fn datagrams(events: &[Event]) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Datagram { src, dst, payload } => Some((*src, *dst, payload.to_vec())),
            _ => None,
        })
        .collect()
}

/// Stream bytes per (connection, direction), with gaps shown as `<gap N>`.
fn streams(events: &[Event]) -> BTreeMap<(ConnId, SocketAddr), Vec<u8>> {
    let mut out: BTreeMap<(ConnId, SocketAddr), Vec<u8>> = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::StreamData {
                conn, src, data, ..
            } => out.entry((*conn, *src)).or_default().extend(data),
            EventKind::StreamGap {
                conn, src, missing, ..
            } => out
                .entry((*conn, *src))
                .or_default()
                .extend(format!("<gap {missing}>").as_bytes()),
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Corpora

/// Every capture of INDEX.md: the frame count matches tshark's, every frame yields an event,
/// and the UDP/TCP counts match the protocol hierarchy.
#[test]
fn corpora_match_index() {
    let index = std::fs::read_to_string(corpus("INDEX.md")).expect("corpora present");
    let mut checked = 0;
    for line in index
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| file"))
    {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (file, pkts, protos) = (cols[1], cols[3].parse::<u64>().unwrap(), cols[4]);
        let proto = |name: &str| {
            protos
                .split(", ")
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .map(|n| n.parse::<u64>().unwrap())
                .unwrap_or(0)
        };
        let run = run_file(&corpus(file));
        assert!(run.error.is_none(), "{file}: {:?}", run.error);
        let s = &run.stats;
        assert_eq!(s.packets, pkts, "{file}: packets");
        let frames: BTreeSet<u64> = run.events.iter().map(|e| e.frame).collect();
        assert_eq!(
            frames.len() as u64,
            pkts,
            "{file}: every frame yields an event"
        );
        assert_eq!(
            frames.last().copied().unwrap_or(0),
            pkts,
            "{file}: frame numbers"
        );
        assert_eq!(s.ipv4 + s.ipv6, proto("ip"), "{file}: ip");
        assert_eq!(s.udp_datagrams, proto("udp"), "{file}: udp");
        assert_eq!(s.tcp_segments, proto("tcp"), "{file}: tcp");
        assert_eq!(
            datagrams(&run.events).len() as u64,
            s.udp_datagrams,
            "{file}"
        );
        assert_eq!(s.malformed, 0, "{file}: malformed");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} captures in INDEX.md");
}

/// Reads a TPKT-framed stream (RFC 1006): every byte belongs to a whole TPKT.
fn tpkts(stream: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < stream.len() {
        assert_eq!(stream[at], 3, "TPKT version at {at}");
        let len = usize::from(u16::from_be_bytes([stream[at + 2], stream[at + 3]]));
        assert!(len >= 4 && at + len <= stream.len(), "TPKT length at {at}");
        at += len;
        n += 1;
    }
    n
}

#[test]
fn corpus_sip_over_tcp_whole_messages() {
    let run = run_file(&corpus(
        "sipp-scenarios-lundgrel/sipp_uac_Media_DTMF_Speex.pcap",
    ));
    assert!(run.error.is_none());
    assert_eq!(run.stats.tcp_gaps, 0);
    let streams = streams(&run.events);
    assert!(!streams.is_empty());
    let mut messages = 0;
    for (key, bytes) in &streams {
        // Each direction is a sequence of whole SIP messages: headers, blank line, body of
        // Content-Length bytes.
        let text = std::str::from_utf8(bytes).expect("SIP is text");
        let mut rest = text;
        while !rest.is_empty() {
            let (head, after) = rest
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("{key:?}: no header end"));
            let first = head.lines().next().unwrap();
            assert!(
                first.starts_with("SIP/2.0 ") || first.ends_with(" SIP/2.0"),
                "{first}"
            );
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    matches!(
                        name.trim().to_ascii_lowercase().as_str(),
                        "content-length" | "l"
                    )
                    .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            rest = &after[len..];
            messages += 1;
        }
    }
    assert!(messages >= 5, "{messages} SIP messages");
    let all: String = streams
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(all.contains("INVITE sip:"));
    assert!(all.contains("SIP/2.0 200 OK"));
}

#[test]
fn corpus_h323_tpkt_streams() {
    for (file, conns) in [
        ("ndpi/h323.pcap", 4),
        ("wireshark-samplecaptures/rtp_example.pcap", 2),
    ] {
        let run = run_file(&corpus(file));
        assert!(run.error.is_none(), "{file}");
        let streams = streams(&run.events);
        let ids: BTreeSet<ConnId> = streams.keys().map(|k| k.0).collect();
        assert_eq!(ids.len(), conns, "{file}: connections");
        let mut total = 0;
        for (key, bytes) in &streams {
            // ndpi/h323.pcap has one connection captured mid-way (one segment each way).
            if bytes.first() != Some(&3) {
                continue;
            }
            total += tpkts(bytes);
            assert!(
                !bytes.windows(5).any(|w| w == b"<gap "),
                "{file} {key:?}: gap"
            );
        }
        assert!(total >= 15, "{file}: {total} TPKTs");
    }
}

#[test]
fn corpus_pcapng_times_are_sane() {
    for file in ["ndpi/rtp.pcapng", "ndpi/sip_hello.pcapng"] {
        let run = run_file(&corpus(file));
        assert!(run.error.is_none());
        let first = run.events.first().unwrap().time;
        // After 2000-01-01 and before 2100.
        assert!(
            first > Duration::from_secs(946_684_800) && first < Duration::from_secs(4_102_444_800),
            "{file}: {first:?}"
        );
        assert!(run.events.windows(2).all(|w| w[0].frame <= w[1].frame));
    }
}

// ---------------------------------------------------------------------------------------------
// Link types and file formats, end to end

#[test]
fn every_link_type_and_format_yields_the_datagram() {
    let ip4 = udp_packet("10.0.0.1:5060", "10.0.0.2:5062", b"OPTIONS");
    let ip6 = udp_packet("[2001:db8::1]:5060", "[2001:db8::2]:5062", b"OPTIONS");
    let eth = |et: [u8; 2], ip: &[u8]| [&[0u8; 12][..], &et, ip].concat();
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        ("ethernet", LINKTYPE_ETHERNET, eth([0x08, 0], &ip4)),
        ("ethernet v6", LINKTYPE_ETHERNET, eth([0x86, 0xDD], &ip6)),
        (
            "802.1q",
            LINKTYPE_ETHERNET,
            eth([0x81, 0], &[&[0, 7, 0x08, 0][..], &ip4].concat()),
        ),
        (
            "qinq",
            LINKTYPE_ETHERNET,
            eth(
                [0x88, 0xA8],
                &[&[0, 1, 0x81, 0, 0, 2, 0x86, 0xDD][..], &ip6].concat(),
            ),
        ),
        (
            "sll",
            LINKTYPE_LINUX_SLL,
            [&[0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 8, 0][..], &ip4].concat(),
        ),
        (
            "sll2",
            LINKTYPE_LINUX_SLL2,
            [
                &[
                    0x86, 0xDD, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 1, 2, 3, 4, 5, 6, 0, 0,
                ][..],
                &ip6,
            ]
            .concat(),
        ),
        ("raw", LINKTYPE_RAW, ip4.clone()),
        ("raw v6", LINKTYPE_RAW, ip6.clone()),
        ("raw 12", LINKTYPE_RAW_12, ip4.clone()),
        ("raw 14", LINKTYPE_RAW_14, ip6.clone()),
        (
            "null",
            LINKTYPE_NULL,
            [&2u32.to_le_bytes()[..], &ip4].concat(),
        ),
        (
            "null v6",
            LINKTYPE_NULL,
            [&30u32.to_be_bytes()[..], &ip6].concat(),
        ),
        (
            "loop",
            LINKTYPE_LOOP,
            [&2u32.to_be_bytes()[..], &ip4].concat(),
        ),
        ("ipv4", LINKTYPE_IPV4, ip4.clone()),
        ("ipv6", LINKTYPE_IPV6, ip6.clone()),
    ];
    let t = Duration::new(1_700_000_000, 123_456_000);
    for (name, lt, frame) in cases {
        let frames = [(t, frame.clone())];
        let files = [
            ("pcap le", pcap(lt, false, false, &frames)),
            ("pcap be", pcap(lt, true, false, &frames)),
            ("pcap ns le", pcap(lt, false, true, &frames)),
            ("pcap ns be", pcap(lt, true, true, &frames)),
            (
                "pcapng le",
                pcapng(
                    lt as u16,
                    false,
                    None,
                    &[(t.as_micros() as u64, frame.clone())],
                ),
            ),
            (
                "pcapng be",
                pcapng(
                    lt as u16,
                    true,
                    None,
                    &[(t.as_micros() as u64, frame.clone())],
                ),
            ),
            (
                "pcapng ns",
                pcapng(
                    lt as u16,
                    false,
                    Some(9),
                    &[(t.as_nanos() as u64, frame.clone())],
                ),
            ),
        ];
        for (fmt, bytes) in files {
            let run = run_bytes(&bytes);
            assert!(run.error.is_none(), "{name} {fmt}: {:?}", run.error);
            assert_eq!(run.events.len(), 1, "{name} {fmt}");
            let e = &run.events[0];
            assert_eq!((e.frame, e.time), (1, t), "{name} {fmt}");
            let EventKind::Datagram { dst, payload, .. } = &e.kind else {
                panic!("{name} {fmt}: {:?}", e.kind);
            };
            assert_eq!(
                (dst.port(), &payload[..]),
                (5062, &b"OPTIONS"[..]),
                "{name} {fmt}"
            );
        }
    }
}

#[test]
fn unknown_link_and_non_ip_are_counted_not_fatal() {
    let t = Duration::from_secs(1);
    let arp = [&[0u8; 12][..], &[0x08, 0x06], &[0; 28]].concat();
    let udp = [
        &[0u8; 12][..],
        &[0x08, 0x00],
        &udp_packet("1.1.1.1:1", "2.2.2.2:2", b"x"),
    ]
    .concat();
    let run = run_bytes(&pcap(
        LINKTYPE_ETHERNET,
        false,
        false,
        &[(t, arp), (t, udp.clone())],
    ));
    assert_eq!(run.stats.non_ip, 1);
    assert_eq!(run.stats.udp_datagrams, 1);
    assert_eq!(run.events[0].kind, EventKind::Other(Skip::NonIp));
    let run = run_bytes(&pcap(147, false, false, &[(t, udp)]));
    assert_eq!(run.stats.unknown_link, 1);
    assert_eq!(run.stats.packets, 1);
    assert_eq!(run.events[0].kind, EventKind::Other(Skip::UnknownLink(147)));
}

#[test]
fn not_a_capture() {
    let err = CaptureReader::new(&b"GIF89a......"[..]).unwrap_err();
    assert!(matches!(err, CaptureError::UnknownFormat { .. }), "{err}");
    let err = CaptureReader::new(&b"\xd4\xc3"[..]).unwrap_err();
    assert!(
        matches!(err, CaptureError::Truncated { offset: 0 }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Truncated and corrupt files

/// Offsets of each record's start in a classic pcap.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    out
}

#[test]
fn truncated_file_yields_earlier_packets_then_the_offset() {
    let original = std::fs::read(corpus("sipp/dtmf_2833_0.pcap")).unwrap();
    let offsets = record_offsets(&original);
    assert_eq!(offsets.len(), 10);
    let dir = std::env::temp_dir().join(format!("sgw-capture-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Cut inside the 7th record's data, and inside the 7th record's header.
    for cut in [offsets[6] + 16 + 5, offsets[6] + 3] {
        let path = dir.join("cut.pcap");
        std::fs::copy(corpus("sipp/dtmf_2833_0.pcap"), &path).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(cut as u64).unwrap();
        drop(f);
        let run = run_file(&path);
        assert_eq!(datagrams(&run.events).len(), 6, "cut at {cut}");
        assert_eq!(run.stats.packets, 6);
        let err = run.error.expect("an error");
        assert!(matches!(err, CaptureError::Truncated { .. }), "{err}");
        assert_eq!(err.offset(), Some(offsets[6] as u64));
        assert_eq!(err.to_string(), format!("truncated at byte {}", offsets[6]));
        // In batches: the events before the cut, then the same error, then the end.
        let mut r = CaptureReader::open(&path).unwrap();
        let mut events = Vec::new();
        let err = loop {
            match r.read_into(&mut events, 4) {
                Ok(true) => {}
                Ok(false) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert_eq!(events, run.events, "cut at {cut}");
        assert_eq!(err.offset(), Some(offsets[6] as u64));
        assert!(!r.read_into(&mut events, 4).unwrap());
        assert!(r.next_event().is_none());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_pcapng_names_the_block() {
    let bytes = std::fs::read(corpus("ndpi/sip_hello.pcapng")).unwrap();
    let full = run_bytes(&bytes);
    assert!(full.error.is_none());
    let cut = &bytes[..bytes.len() - 10];
    let run = run_bytes(cut);
    assert_eq!(run.stats.packets, 29);
    let err = run.error.unwrap();
    // The last block starts where the 29 frames' blocks end.
    let last_block_len = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as usize;
    assert_eq!(
        err.offset(),
        Some((bytes.len() - last_block_len) as u64),
        "{err}"
    );
}

#[test]
fn corrupt_record_length_is_an_error_not_an_allocation() {
    let t = Duration::from_secs(1);
    let mut bytes = pcap(
        LINKTYPE_RAW,
        false,
        false,
        &[(t, udp_packet("1.1.1.1:1", "2.2.2.2:2", b"x"))],
    );
    let second = bytes.len();
    bytes.extend([0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
    let run = run_bytes(&bytes);
    assert_eq!(run.stats.udp_datagrams, 1);
    let err = run.error.unwrap();
    assert!(matches!(err, CaptureError::Corrupt { .. }));
    assert_eq!(err.offset(), Some(second as u64));
}

// ---------------------------------------------------------------------------------------------
// Block reading: records parsed in place in the read-ahead buffer, payloads in pooled chunks

use super::file::READ_BLOCK;

/// A source that hands out the file in irregular small reads (1 to 4,099 bytes), so records
/// and blocks are cut at every kind of place; it fails with an I/O error at `fail_at`, if set.
struct Trickle<'a> {
    data: &'a [u8],
    at: usize,
    n: usize,
    fail_at: Option<usize>,
}

impl<'a> Trickle<'a> {
    fn new(data: &'a [u8]) -> Self {
        Trickle {
            data,
            at: 0,
            n: 0,
            fail_at: None,
        }
    }
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.fail_at == Some(self.at) {
            return Err(std::io::Error::other("disk on fire"));
        }
        self.n += 1;
        let mut len = (self.n * 7919) % 4099 + 1;
        if self.n.is_multiple_of(5) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        len = len.min(buf.len()).min(self.data.len() - self.at);
        if let Some(f) = self.fail_at {
            len = len.min(f - self.at);
        }
        buf[..len].copy_from_slice(&self.data[self.at..self.at + len]);
        self.at += len;
        Ok(len)
    }
}

/// `n` datagrams of sizes 0 to 1,499 bytes, each with its index in its first bytes.
fn numbered_frames(n: usize) -> Vec<(Duration, Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            // RTP-like (version 2) but one in ten, which looks like SIP: the two take
            // different paths (pooled chunk, own allocation).
            let first = if i % 10 == 0 { b'I' } else { 0x80 };
            let mut payload = vec![(i % 251) as u8; (i * 389) % 1500];
            let head = [first].into_iter().chain((i as u32).to_be_bytes());
            for (b, x) in payload.iter_mut().zip(head) {
                *b = x;
            }
            let src = format!("10.0.{}.{}:{}", i % 7, i % 200 + 1, 10000 + i % 50000);
            let frame = udp_packet(&src, "192.0.2.1:5060", &payload);
            (
                Duration::from_micros(1_000_000 + i as u64 * 20_000),
                frame,
                payload,
            )
        })
        .collect()
}

fn check_numbered(run: &Run, frames: &[(Duration, Vec<u8>, Vec<u8>)]) {
    assert!(run.error.is_none(), "{:?}", run.error);
    let got = datagrams(&run.events);
    assert_eq!(got.len(), frames.len());
    for (i, ((_, _, payload), (_, _, p))) in frames.iter().zip(&got).enumerate() {
        assert_eq!(p, payload, "datagram {i}");
    }
    for (e, (t, _, _)) in run.events.iter().zip(frames) {
        assert_eq!(e.time, *t, "frame {}", e.frame);
    }
}

#[test]
fn big_captures_read_across_blocks_and_chunks_in_every_format() {
    // ~4 MB: many read blocks and payload chunks, records cut at their edges.
    let frames = numbered_frames(5_500);
    let pairs: Vec<(Duration, Vec<u8>)> = frames.iter().map(|(t, f, _)| (*t, f.clone())).collect();
    let micros: Vec<(u64, Vec<u8>)> = frames
        .iter()
        .map(|(t, f, _)| (t.as_micros() as u64, f.clone()))
        .collect();
    for big_endian in [false, true] {
        for file in [
            pcap(LINKTYPE_RAW, big_endian, false, &pairs),
            pcapng(LINKTYPE_RAW as u16, big_endian, None, &micros),
        ] {
            assert!(file.len() > 12 * READ_BLOCK);
            // Whole reads (as from a file) and irregular small ones.
            check_numbered(&run_bytes(&file), &frames);
            check_numbered(
                &run_reader(CaptureReader::new(Trickle::new(&file)).unwrap()),
                &frames,
            );
        }
    }
}

#[test]
fn payload_chunks_are_reused_when_the_consumer_drops_payloads() {
    let frames = numbered_frames(20_000);
    let pairs: Vec<(Duration, Vec<u8>)> = frames.iter().map(|(t, f, _)| (*t, f.clone())).collect();
    let file = pcap(LINKTYPE_RAW, false, false, &pairs);
    let mut reader = CaptureReader::new(&file[..]).unwrap();
    // Hold 1,000 events at a time, as replay's batches do, then check and drop them.
    let mut held = Vec::new();
    let mut checked = 0;
    let mut check = |held: &mut Vec<Event>| {
        for (_, _, p) in datagrams(held) {
            assert_eq!(p, frames[checked].2, "datagram {checked}");
            checked += 1;
        }
        held.clear();
    };
    while let Some(ev) = reader.next_event() {
        held.push(ev.unwrap());
        if held.len() == 1000 {
            check(&mut held);
        }
    }
    check(&mut held);
    assert_eq!(checked, frames.len());
    let s = reader.pool_stats();
    // ~13 MB of RTP-like payloads went through fewer than 40 chunks of 64 KiB, and no chunk
    // was pinned (SIP-like payloads have their own allocations).
    assert!(s.allocated < 40, "{s:?}");
    assert!(s.reused > 150, "{s:?}");
    assert_eq!(s.pinned, 0, "{s:?}");
}

#[test]
fn a_record_larger_than_a_read_block_and_the_records_around_it() {
    let t = Duration::from_secs(1);
    let small = |n: u8| udp_packet("10.0.0.1:1000", "10.0.0.2:2000", &[n; 100]);
    // A raw IP frame with 600 KB of trailing bytes past the IP packet (the IP length rules).
    let mut huge = udp_packet("10.0.0.1:1000", "10.0.0.2:2000", &[9; 1000]);
    huge.resize(600_000, 0xEE);
    assert!(huge.len() > 2 * READ_BLOCK);
    let frames = vec![(t, small(1)), (t, huge.clone()), (t, small(2))];
    let micros: Vec<(u64, Vec<u8>)> = frames.iter().map(|(_, f)| (1, f.clone())).collect();
    for file in [
        pcap(LINKTYPE_RAW, false, false, &frames),
        pcapng(LINKTYPE_RAW as u16, false, None, &micros),
    ] {
        for run in [
            run_bytes(&file),
            run_reader(CaptureReader::new(Trickle::new(&file)).unwrap()),
        ] {
            assert!(run.error.is_none(), "{:?}", run.error);
            let d = datagrams(&run.events);
            let sizes: Vec<(u8, usize)> = d.iter().map(|(_, _, p)| (p[0], p.len())).collect();
            assert_eq!(sizes, vec![(1, 100), (9, 1000), (2, 100)]);
            assert_eq!(run.stats.bytes, (small(1).len() * 2 + huge.len()) as u64);
        }
    }
}

#[test]
fn truncated_big_captures_name_the_record_cut_at_any_block_edge() {
    let frames = numbered_frames(2_000);
    let pairs: Vec<(Duration, Vec<u8>)> = frames.iter().map(|(t, f, _)| (*t, f.clone())).collect();
    let file = pcap(LINKTYPE_RAW, false, false, &pairs);
    let offsets = record_offsets(&file);
    assert_eq!(offsets.len(), frames.len());
    // Cuts at, just before and just after each read block edge, and in record headers.
    let mut cuts = Vec::new();
    for k in 1..file.len() / READ_BLOCK {
        let edge = k * READ_BLOCK;
        cuts.extend([edge - 1, edge, edge + 1, edge + 17]);
    }
    cuts.extend([offsets[1500] + 3, offsets[1500] + 16, offsets[1999] + 20]);
    for cut in cuts {
        // The record the cut falls in (a cut exactly at a record's start ends cleanly).
        let whole = offsets.iter().filter(|&&o| o < cut).count();
        let last = offsets[whole - 1];
        let clean = offsets.contains(&cut);
        for run in [
            run_bytes(&file[..cut]),
            run_reader(CaptureReader::new(Trickle::new(&file[..cut])).unwrap()),
        ] {
            if clean {
                assert!(run.error.is_none(), "cut at {cut}");
                assert_eq!(datagrams(&run.events).len(), whole);
                continue;
            }
            let err = run.error.expect("an error");
            assert!(matches!(err, CaptureError::Truncated { .. }), "{err}");
            assert_eq!(err.offset(), Some(last as u64), "cut at {cut}");
            assert_eq!(datagrams(&run.events).len(), whole - 1, "cut at {cut}");
            assert_eq!(run.stats.packets, whole as u64 - 1);
        }
    }
}

#[test]
fn snaplen_cut_records_across_block_edges() {
    // A pcap written with a snap length of 200: longer frames keep only their first 200
    // bytes (incl_len < orig_len), which is no error; their IP packets are truncated.
    let frames = numbered_frames(3_000);
    let snap = 200usize;
    let mut file = pcap(LINKTYPE_RAW, false, false, &[]);
    let mut cut = 0u64;
    for (t, f, _) in &frames {
        let incl = f.len().min(snap);
        cut += u64::from(incl < f.len());
        file.extend((t.as_secs() as u32).to_le_bytes());
        file.extend(t.subsec_micros().to_le_bytes());
        file.extend((incl as u32).to_le_bytes());
        file.extend((f.len() as u32).to_le_bytes());
        file.extend(&f[..incl]);
    }
    for run in [
        run_bytes(&file),
        run_reader(CaptureReader::new(Trickle::new(&file)).unwrap()),
    ] {
        assert!(run.error.is_none(), "{:?}", run.error);
        assert_eq!(run.stats.packets, frames.len() as u64);
        assert_eq!(run.stats.truncated, cut);
        let whole: Vec<Vec<u8>> = frames
            .iter()
            .filter(|(_, f, _)| f.len() <= snap)
            .map(|(_, _, p)| p.clone())
            .collect();
        let got: Vec<Vec<u8>> = datagrams(&run.events).into_iter().map(|d| d.2).collect();
        assert_eq!(got, whole);
    }
}

#[test]
fn an_io_error_names_the_byte_where_reading_failed() {
    let frames = numbered_frames(1_000);
    let pairs: Vec<(Duration, Vec<u8>)> = frames.iter().map(|(t, f, _)| (*t, f.clone())).collect();
    let file = pcap(LINKTYPE_RAW, false, false, &pairs);
    let offsets = record_offsets(&file);
    let fail_at = READ_BLOCK + 1234;
    let mut src = Trickle::new(&file);
    src.fail_at = Some(fail_at);
    let run = run_reader(CaptureReader::new(src).unwrap());
    let err = run.error.expect("an error");
    assert!(matches!(err, CaptureError::Io { .. }), "{err}");
    assert_eq!(err.offset(), Some(fail_at as u64));
    // Every record wholly before the failure was delivered.
    let whole = offsets.windows(2).filter(|w| w[1] <= fail_at).count();
    assert_eq!(datagrams(&run.events).len(), whole);
}

// ---------------------------------------------------------------------------------------------
// TCP reassembly, on segments

const A: &str = "10.0.0.1:40000";
const B: &str = "10.0.0.2:1720";

struct Tcpt {
    tcp: Tcp,
    stats: Stats,
    t: u64,
}

impl Tcpt {
    fn new() -> Self {
        Tcpt {
            tcp: Tcp::default(),
            stats: Stats::default(),
            t: 0,
        }
    }

    fn seg(
        &mut self,
        from_a: bool,
        seq: u32,
        ack: Option<u32>,
        flags: &str,
        payload: &[u8],
    ) -> Vec<Out> {
        let (src, dst) = if from_a {
            (sa(A), sa(B))
        } else {
            (sa(B), sa(A))
        };
        let seg = Segment {
            src,
            dst,
            seq,
            ack,
            syn: flags.contains('S'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            payload,
        };
        self.t += 1;
        let mut out = Vec::new();
        self.tcp
            .handle(Duration::from_secs(self.t), &seg, &mut self.stats, &mut out);
        out
    }

    fn finish(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        self.tcp.finish(&mut self.stats, &mut out);
        out
    }
}

/// Renders outputs compactly: `a:data`, `b:<gap n>`, `a:fin`, `b:rst`, `a:evicted`.
fn show(outs: &[Out]) -> Vec<String> {
    let side = |s: &SocketAddr| if *s == sa(A) { "a" } else { "b" };
    outs.iter()
        .map(|o| match o {
            Out::Data { src, data, .. } => {
                format!("{}:{}", side(src), String::from_utf8_lossy(data))
            }
            Out::Gap { src, missing, .. } => format!("{}:<gap {missing}>", side(src)),
            Out::Closed { src, how, .. } => format!("{}:{how:?}", side(src)).to_lowercase(),
        })
        .collect()
}

#[test]
fn tcp_handshake_data_fin() {
    let mut t = Tcpt::new();
    assert!(t.seg(true, 100, None, "S", b"").is_empty());
    assert!(t.seg(false, 500, Some(101), "S", b"").is_empty());
    assert!(t.seg(true, 101, Some(501), "", b"").is_empty());
    assert_eq!(
        show(&t.seg(true, 101, Some(501), "", b"hello ")),
        ["a:hello "]
    );
    assert_eq!(show(&t.seg(false, 501, Some(107), "", b"HI")), ["b:HI"]);
    assert_eq!(
        show(&t.seg(true, 107, Some(503), "F", b"world")),
        ["a:world", "a:fin"]
    );
    assert_eq!(show(&t.seg(false, 503, Some(113), "F", b"")), ["b:fin"]);
    assert!(t.seg(true, 113, Some(504), "", b"").is_empty());
    assert_eq!(t.stats.tcp_connections, 1);
    assert!(t.finish().is_empty());
}

#[test]
fn tcp_out_of_order_is_buffered_then_delivered_in_order() {
    let mut t = Tcpt::new();
    t.seg(true, 1000, None, "S", b"");
    assert_eq!(show(&t.seg(true, 1001, None, "", b"aa")), ["a:aa"]);
    assert!(t.seg(true, 1007, None, "", b"cc").is_empty());
    assert!(t.seg(true, 1005, None, "", b"bb").is_empty());
    assert_eq!(show(&t.seg(true, 1003, None, "", b"xx")), ["a:xxbbcc"]);
    assert_eq!(t.stats.tcp_out_of_order, 2);
    assert_eq!(t.stats.tcp_gaps, 0);
}

#[test]
fn tcp_retransmission_and_overlap_are_delivered_once() {
    let mut t = Tcpt::new();
    t.seg(true, 0, None, "S", b"");
    assert_eq!(show(&t.seg(true, 1, None, "", b"abcd")), ["a:abcd"]);
    // Exact retransmission.
    assert!(t.seg(true, 1, None, "", b"abcd").is_empty());
    // Overlapping: old bytes dropped, new ones kept.
    assert_eq!(show(&t.seg(true, 3, None, "", b"cdef")), ["a:ef"]);
    // Out-of-order pieces overlapping each other and the delivered data.
    assert!(t.seg(true, 9, None, "", b"ijk").is_empty());
    assert!(t.seg(true, 9, None, "", b"ij").is_empty());
    assert_eq!(show(&t.seg(true, 6, None, "", b"fghi")), ["a:ghijk"]);
    assert_eq!(t.stats.tcp_retransmissions, 4);
    // Keep-alive: one old byte.
    assert!(t.seg(true, 11, None, "", b"k").is_empty());
}

#[test]
fn tcp_gap_acked_by_peer_is_reported_and_stream_goes_on() {
    let mut t = Tcpt::new();
    t.seg(true, 0, None, "S", b"");
    t.seg(false, 0, Some(1), "S", b"");
    assert_eq!(show(&t.seg(true, 1, Some(1), "", b"one")), ["a:one"]);
    // "two" (4..7) is lost by the capture; "three" arrives and waits.
    assert!(t.seg(true, 7, Some(1), "", b"three").is_empty());
    // The peer acknowledges everything: the hole will never fill.
    assert_eq!(
        show(&t.seg(false, 1, Some(12), "", b"")),
        ["a:<gap 3>", "a:three"]
    );
    assert_eq!(show(&t.seg(true, 12, Some(1), "", b"four")), ["a:four"]);
    assert_eq!((t.stats.tcp_gaps, t.stats.tcp_gap_bytes), (1, 3));
    // The missing segment turning up late counts as a retransmission.
    assert!(t.seg(true, 4, Some(1), "", b"two").is_empty());
}

#[test]
fn tcp_ack_alone_does_not_skip_data_that_may_still_come() {
    let mut t = Tcpt::new();
    t.seg(true, 0, None, "", b"x");
    // The ACK is captured before the data it acknowledges (capture reordering).
    assert!(t.seg(false, 0, Some(4), "", b"").is_empty());
    assert_eq!(show(&t.seg(true, 1, None, "", b"yz")), ["a:yz"]);
    assert_eq!(t.stats.tcp_gaps, 0);
}

#[test]
fn tcp_gap_flushed_at_end_of_capture() {
    let mut t = Tcpt::new();
    t.seg(true, 0, None, "S", b"");
    t.seg(true, 1, None, "", b"aaa");
    assert!(t.seg(true, 10, None, "", b"bbb").is_empty());
    assert_eq!(show(&t.finish()), ["a:<gap 6>", "a:bbb"]);
}

#[test]
fn tcp_gap_forced_by_full_buffer() {
    let mut t = Tcpt::new();
    t.seg(true, 0, None, "S", b"");
    let chunk = vec![b'z'; 1000];
    let mut outs = Vec::new();
    for i in 0..=(MAX_TCP_OOO_BYTES / 1000) as u32 {
        outs.extend(t.seg(true, 101 + i * 1000, None, "", &chunk));
    }
    assert!(
        matches!(outs.first(), Some(Out::Gap { missing: 100, .. })),
        "{:?}",
        show(&outs[..1])
    );
    assert_eq!(t.stats.tcp_gaps, 1);
}

#[test]
fn tcp_mid_stream_start_and_fin_after_a_hole() {
    let mut t = Tcpt::new();
    // No SYN seen: the stream starts at the first segment.
    assert_eq!(show(&t.seg(true, 7_000, Some(9), "", b"TPKT")), ["a:TPKT"]);
    // A stray ACK from the other side does not create state.
    assert!(t.seg(false, 9, Some(7_004), "", b"").is_empty());
    // FIN after a hole; the peer's ACK of the FIN settles it.
    assert!(t.seg(true, 7_010, Some(9), "F", b"end").is_empty());
    assert_eq!(
        show(&t.seg(false, 9, Some(7_014), "", b"")),
        ["a:<gap 6>", "a:end", "a:fin"]
    );
}

#[test]
fn tcp_sequence_wraparound() {
    let mut t = Tcpt::new();
    t.seg(true, u32::MAX - 2, None, "S", b"");
    assert_eq!(
        show(&t.seg(true, u32::MAX - 1, None, "", b"abcd")),
        ["a:abcd"]
    );
    assert_eq!(show(&t.seg(true, 2, None, "", b"ef")), ["a:ef"]);
}

#[test]
fn tcp_reset_flushes_and_closes_and_reuse_gets_a_new_id() {
    let mut t = Tcpt::new();
    t.seg(true, 0, None, "S", b"");
    t.seg(true, 1, None, "", b"a");
    t.seg(true, 5, None, "", b"late");
    assert_eq!(
        show(&t.seg(false, 0, None, "R", b"")),
        ["a:<gap 3>", "a:late", "b:reset"]
    );
    assert!(t.seg(true, 9, None, "", b"more").is_empty());
    let out = t.seg(true, 77, None, "S", b"");
    assert!(out.is_empty());
    let out = t.seg(true, 78, None, "", b"new");
    assert!(
        matches!(
            &out[..],
            [Out::Data {
                conn: ConnId(2),
                ..
            }]
        ),
        "{out:?}"
    );
}

#[test]
fn tcp_syn_with_new_isn_replaces_an_open_connection() {
    let mut t = Tcpt::new();
    t.seg(true, 0, None, "S", b"");
    t.seg(true, 1, None, "", b"a");
    assert_eq!(show(&t.seg(true, 5000, None, "S", b"")), ["a:evicted"]);
    assert!(matches!(
        &t.seg(true, 5001, None, "", b"b")[..],
        [Out::Data {
            conn: ConnId(2),
            ..
        }]
    ));
}

#[test]
fn tcp_connection_table_is_bounded() {
    let mut t = Tcpt::new();
    let mut outs = Vec::new();
    for i in 0..(MAX_TCP_CONNECTIONS + 10) {
        let src = SocketAddr::new(
            [10, 1, (i >> 8) as u8, i as u8].into(),
            1000 + (i % 50) as u16,
        );
        let seg = Segment {
            src,
            dst: sa(B),
            seq: 0,
            ack: None,
            syn: false,
            fin: false,
            rst: false,
            payload: b"x",
        };
        t.tcp
            .handle(Duration::from_secs(i as u64), &seg, &mut t.stats, &mut outs);
    }
    assert_eq!(t.stats.tcp_evicted, (MAX_TCP_CONNECTIONS / 8) as u64);
    assert!(outs.iter().any(|o| matches!(
        o,
        Out::Closed {
            how: Close::Evicted,
            ..
        }
    )));
}

// ---------------------------------------------------------------------------------------------
// IP fragments, on hand-built packets

fn ipv4_frag(id: u16, offset: usize, more: bool, proto: u8, data: &[u8]) -> Vec<u8> {
    let total = (20 + data.len()) as u16;
    let flags_off = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
    let mut h = vec![0x45, 0];
    h.extend(total.to_be_bytes());
    h.extend(id.to_be_bytes());
    h.extend(flags_off.to_be_bytes());
    h.extend([64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    h.extend(data);
    h
}

fn ipv6_frag(id: u32, offset: usize, more: bool, data: &[u8], hop_by_hop: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    let first_nh = if hop_by_hop {
        ext.extend([44, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop, PadN, then Fragment
        0
    } else {
        44
    };
    let off = ((offset / 8) as u16) << 3 | u16::from(more);
    ext.extend([60, 0]); // Fragment header; the fragmentable part starts with dest. options
    ext.extend(off.to_be_bytes());
    ext.extend(id.to_be_bytes());
    let plen = (ext.len() + data.len()) as u16;
    let mut h = vec![0x60, 0, 0, 0];
    h.extend(plen.to_be_bytes());
    h.extend([first_nh, 64]);
    h.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend(ext);
    h.extend(data);
    h
}

/// A UDP datagram of `n` payload bytes, split at `cuts`: (offset, more, bytes).
fn udp_datagram(n: usize) -> Vec<u8> {
    let mut d = vec![0x13, 0xC4, 0x13, 0xC6];
    d.extend(((8 + n) as u16).to_be_bytes());
    d.extend([0, 0]);
    d.extend((0..n).map(|i| b'a' + (i % 26) as u8));
    d
}

fn pieces(d: &[u8], cuts: &[usize]) -> Vec<(usize, bool, Vec<u8>)> {
    let mut bounds = vec![0];
    bounds.extend(cuts);
    bounds.push(d.len());
    bounds
        .windows(2)
        .map(|w| (w[0], w[1] != d.len(), d[w[0]..w[1]].to_vec()))
        .collect()
}

fn raw_run(frames: Vec<Vec<u8>>, step: Duration) -> Run {
    let frames: Vec<(Duration, Vec<u8>)> = frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (Duration::from_secs(1_000) + step * i as u32, f))
        .collect();
    run_bytes(&pcap(LINKTYPE_RAW, false, false, &frames))
}

#[test]
fn ipv4_fragments_in_any_order() {
    let d = udp_datagram(100);
    let p = pieces(&d, &[40, 80]);
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let frames = order
            .iter()
            .map(|&i| ipv4_frag(7, p[i].0, p[i].1, 17, &p[i].2))
            .collect();
        let run = raw_run(frames, Duration::from_millis(1));
        let got = datagrams(&run.events);
        assert_eq!(got.len(), 1, "{order:?}");
        assert_eq!(got[0].2, &d[8..], "{order:?}");
        assert_eq!(got[0].1, sa("192.0.2.2:5062"));
        assert_eq!(run.stats.fragments_reassembled, 1);
        assert_eq!(run.events.last().unwrap().frame, 3);
        assert_eq!(run.events[0].kind, EventKind::Other(Skip::FragmentPending));
    }
}

#[test]
fn ipv4_duplicate_fragment_is_ignored_overlap_drops_the_datagram() {
    let d = udp_datagram(100);
    let p = pieces(&d, &[40, 80]);
    let f = |i: usize| ipv4_frag(9, p[i].0, p[i].1, 17, &p[i].2);
    let run = raw_run(vec![f(0), f(0), f(1), f(2)], Duration::from_millis(1));
    assert_eq!(datagrams(&run.events).len(), 1);
    assert_eq!(run.stats.fragments_duplicate, 1);
    // An overlapping fragment with different bytes (a Teardrop-style attack).
    let bogus = ipv4_frag(9, 32, true, 17, &[0xEE; 16]);
    let run = raw_run(vec![f(0), bogus, f(1), f(2)], Duration::from_millis(1));
    assert!(datagrams(&run.events).is_empty());
    assert_eq!(run.events[1].kind, EventKind::Other(Skip::FragmentDropped));
    assert!(run.stats.fragments_dropped >= 2);
    // A middle fragment not a multiple of 8, and one past the end.
    let odd = ipv4_frag(10, 0, true, 17, &d[..41]);
    let run = raw_run(vec![odd], Duration::from_millis(1));
    assert_eq!(run.events[0].kind, EventKind::Other(Skip::FragmentDropped));
    let past = ipv4_frag(11, 65_528, false, 17, &[0; 16]);
    let run = raw_run(vec![past], Duration::from_millis(1));
    assert_eq!(run.events[0].kind, EventKind::Other(Skip::FragmentDropped));
}

#[test]
fn ipv4_fragments_time_out() {
    let d = udp_datagram(100);
    let p = pieces(&d, &[40]);
    let frames = vec![
        ipv4_frag(3, p[0].0, true, 17, &p[0].2),
        ipv4_frag(3, p[1].0, false, 17, &p[1].2),
    ];
    let run = raw_run(frames, MAX_IP_REASSEMBLY_TIME + Duration::from_secs(1));
    assert!(datagrams(&run.events).is_empty());
    assert_eq!(run.stats.fragments_dropped, 1);
}

#[test]
fn ipv4_pending_reassemblies_are_bounded() {
    let frames = (0..MAX_IP_REASSEMBLIES + 5)
        .map(|i| ipv4_frag(i as u16, 0, true, 17, &[0; 16]))
        .collect();
    let run = raw_run(frames, Duration::from_millis(1));
    assert_eq!(run.stats.fragments_dropped, 5);
}

#[test]
fn ipv6_fragments_with_extension_headers() {
    let d = udp_datagram(200);
    // The fragmentable part: a destination options header (8 bytes), then UDP.
    let mut part = vec![17, 0, 1, 4, 0, 0, 0, 0];
    part.extend(&d);
    let p = pieces(&part, &[64, 136]);
    let frames = vec![
        ipv6_frag(0xDEAD_BEEF, p[2].0, p[2].1, &p[2].2, true),
        ipv6_frag(0xDEAD_BEEF, p[0].0, p[0].1, &p[0].2, false),
        ipv6_frag(0xDEAD_BEEF, p[1].0, p[1].1, &p[1].2, true),
    ];
    let run = raw_run(frames, Duration::from_millis(1));
    let got = datagrams(&run.events);
    assert_eq!(got.len(), 1, "{:?}", run.events);
    assert_eq!(got[0].2, &d[8..]);
    assert_eq!(got[0].0, sa("[2001:db8::1]:5060"));
    // Overlap drops it (RFC 5722).
    let frames = vec![
        ipv6_frag(1, p[0].0, p[0].1, &p[0].2, false),
        ipv6_frag(1, 56, true, &[0; 16], false),
        ipv6_frag(1, p[1].0, p[1].1, &p[1].2, false),
        ipv6_frag(1, p[2].0, p[2].1, &p[2].2, false),
    ];
    let run = raw_run(frames, Duration::from_millis(1));
    assert!(datagrams(&run.events).is_empty());
}

#[test]
fn ipv6_unfragmented_with_extension_headers() {
    let mut packet = udp_packet("[2001:db8::1]:5060", "[2001:db8::2]:5060", b"REGISTER");
    // Insert a hop-by-hop and a routing header between the fixed header and UDP.
    let udp = packet.split_off(40);
    packet[6] = 0;
    packet.extend([43, 0, 1, 4, 0, 0, 0, 0]);
    packet.extend([17, 0, 0, 0, 0, 0, 0, 0]);
    packet.extend(udp);
    let plen = (packet.len() - 40) as u16;
    packet[4..6].copy_from_slice(&plen.to_be_bytes());
    let run = raw_run(vec![packet], Duration::ZERO);
    assert_eq!(datagrams(&run.events)[0].2, b"REGISTER");
}

// ---------------------------------------------------------------------------------------------
// Writer

fn tshark_check(path: &Path) {
    let tshark = Path::new("/usr/bin/tshark");
    if !tshark.exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("tshark is required in CI to check written captures");
        }
        eprintln!("tshark not installed: skipped checking {}", path.display());
        return;
    }
    let out = std::process::Command::new(tshark)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
        ])
        .args(["-V", "-r"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bad in [
        "Malformed",
        "Status: Bad",
        "incorrect",
        "Bad checksum",
        "Expert Info (Error",
    ] {
        assert!(
            !text.contains(bad),
            "tshark found {bad:?} in {}",
            path.display()
        );
    }
    assert!(
        text.contains("[Good]") || text.contains("Status: Good"),
        "no checksum was verified"
    );
}

#[test]
fn writer_round_trip_udp_and_tcp_over_ipv4_and_ipv6() {
    let dir = std::env::temp_dir().join(format!("sgw-capture-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    for link in [OutLink::Ethernet, OutLink::Raw] {
        for (c, s) in [
            ("10.0.0.1:5060", "10.0.0.2:5060"),
            ("[2001:db8::1]:1720", "[2001:db8::2]:1720"),
        ] {
            let (c, s) = (sa(c), sa(s));
            let path = dir.join(format!("out-{link:?}-{}.pcap", c.is_ipv6()));
            let mut w = CaptureWriter::create(&path, link).unwrap();
            let t = |ms: u64| Duration::from_millis(1_700_000_000_000 + ms);
            w.write_udp(t(0), c, s, b"INVITE").unwrap();
            w.write_udp(t(1), s, c, b"SIP/2.0 100 Trying").unwrap();
            w.write_tcp(t(2), c, s, b"\x03\x00\x00\x08setu").unwrap();
            w.write_tcp(t(3), s, c, b"\x03\x00\x00\x07con").unwrap();
            w.write_tcp(t(4), c, s, &big).unwrap();
            w.close_tcp(t(5), c, s).unwrap();
            assert!(matches!(
                w.write_udp(t(6), c, s, &vec![0; MAX_UDP_PAYLOAD + 1]),
                Err(WriteError::PayloadTooLarge { .. })
            ));
            assert!(matches!(
                w.write_udp(
                    t(6),
                    c,
                    sa(if c.is_ipv4() {
                        "[::1]:5"
                    } else {
                        "127.0.0.1:5"
                    }),
                    b"x"
                ),
                Err(WriteError::MixedFamily { .. })
            ));
            w.finish().unwrap();

            let run = run_file(&path);
            assert!(run.error.is_none());
            let dg = datagrams(&run.events);
            assert_eq!(
                dg,
                vec![
                    (c, s, b"INVITE".to_vec()),
                    (s, c, b"SIP/2.0 100 Trying".to_vec())
                ]
            );
            let st = streams(&run.events);
            let id = ConnId(1);
            assert_eq!(st[&(id, c)], [&b"\x03\x00\x00\x08setu"[..], &big].concat());
            assert_eq!(st[&(id, s)], b"\x03\x00\x00\x07con");
            let closes = run
                .events
                .iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        EventKind::StreamClosed {
                            how: Close::Fin,
                            ..
                        }
                    )
                })
                .count();
            assert_eq!(closes, 2);
            assert_eq!(
                run.events.first().unwrap().time,
                Duration::from_millis(1_700_000_000_000)
            );
            assert_eq!(
                run.stats.tcp_gaps + run.stats.tcp_retransmissions + run.stats.malformed,
                0
            );
            tshark_check(&path);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutated corpus files and hand-built captures never panic the reader.
#[test]
fn mutated_captures_never_panic() {
    let seeds: Vec<Vec<u8>> = [
        "ndpi/h323.pcap",
        "ndpi/sip_hello.pcapng",
        "ndpi/rtcp_multiple_pkts_in_the_same_datagram.pcap",
        "sipp/dtmf_2833_0.pcap",
        "ndpi/h323-overflow.pcap",
    ]
    .iter()
    .map(|f| std::fs::read(corpus(f)).unwrap())
    .chain([
        {
            let d = udp_datagram(100);
            let p = pieces(&d, &[40, 80]);
            let frames: Vec<_> = p
                .iter()
                .map(|(o, m, b)| (Duration::from_secs(1), ipv4_frag(1, *o, *m, 17, b)))
                .collect();
            pcap(LINKTYPE_RAW, false, false, &frames)
        },
        pcapng(
            LINKTYPE_ETHERNET as u16,
            true,
            Some(0x86),
            &[(
                1,
                [
                    &[0u8; 12][..],
                    &[0x86, 0xDD],
                    &ipv6_frag(5, 0, true, &[0; 64], true),
                ]
                .concat(),
            )],
        ),
    ])
    .collect();
    let mut rng = Rng(0x5EED_CAFE_F00D_1234);
    for round in 0..1500 {
        let mut bytes = seeds[round % seeds.len()].clone();
        let edits = 1 + rng.below(8);
        for _ in 0..edits {
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[at] = rng.next() as u8,
                1 => bytes[at] ^= 1 << rng.below(8),
                2 => bytes.truncate(at.max(1)),
                _ => {
                    let b = rng.next() as u8;
                    bytes.insert(at, b);
                }
            }
        }
        if let Ok(r) = CaptureReader::new(&bytes[..]) {
            let _ = run_reader(r);
        }
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary frames on every link type never panic, and each yields an event.
        #[test]
        fn arbitrary_frames(lt in prop::sample::select(vec![0u32, 1, 12, 14, 101, 108, 113, 228, 229, 276, 9999]),
                            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..8)) {
            let frames: Vec<(Duration, Vec<u8>)> = frames.into_iter().map(|f| (Duration::from_secs(5), f)).collect();
            let run = run_bytes(&pcap(lt, false, false, &frames));
            prop_assert!(run.error.is_none());
            prop_assert_eq!(run.stats.packets, frames.len() as u64);
            let distinct: BTreeSet<u64> = run.events.iter().map(|e| e.frame).collect();
            prop_assert_eq!(distinct.len(), frames.len());
        }

        /// Arbitrary bytes after a pcapng or pcap magic never panic.
        #[test]
        fn arbitrary_files(magic in prop::sample::select(vec![
                               [0x0A, 0x0D, 0x0D, 0x0A], [0xD4, 0xC3, 0xB2, 0xA1], [0xA1, 0xB2, 0x3C, 0x4D]]),
                           rest in prop::collection::vec(any::<u8>(), 0..400)) {
            let bytes = [&magic[..], &rest].concat();
            if let Ok(r) = CaptureReader::new(&bytes[..]) {
                let _ = run_reader(r);
            }
        }

        /// Arbitrary TCP segments on one connection never panic.
        #[test]
        fn arbitrary_segments(segs in prop::collection::vec(
            (any::<bool>(), 0u32..3000, prop::option::of(0u32..3000), 0u8..16, 0usize..600), 1..40)) {
            let mut t = Tcpt::new();
            let data = vec![b'q'; 600];
            for (from_a, seq, ack, flags, len) in segs {
                let f = format!("{}{}{}", if flags & 1 != 0 { "S" } else { "" },
                                if flags & 2 != 0 { "F" } else { "" }, if flags & 4 != 0 && flags & 8 != 0 { "R" } else { "" });
                t.seg(from_a, seq, ack, &f, &data[..len]);
            }
            t.finish();
        }
    }
}

/// Lending and reading in batches (replay's mode) yield the same events, in the same order, as
/// sharing and reading one by one: each RTP- or RTCP-looking payload lent at its place in the
/// buffer of its batch, every other event the same. Batches are a few events long.
#[test]
fn lent_payloads_are_the_shared_ones() {
    let index = std::fs::read_to_string(corpus("INDEX.md")).expect("corpora present");
    let mut lent_total = 0;
    for file in index
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| file"))
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
    {
        let shared = run_file(&corpus(file));
        let mut r = CaptureReader::open(corpus(file)).unwrap();
        r.lend_into(Vec::new());
        let (mut pending, mut n) = (Vec::new(), 0);
        let mut check = |pending: &mut Vec<Event>, buf: Vec<u8>, n: &mut usize| {
            for ev in pending.drain(..) {
                let want = shared.events.get(*n).expect("as many events");
                *n += 1;
                let EventKind::LentDatagram { src, dst, ref at } = ev.kind else {
                    assert_eq!(&ev, want, "{file}");
                    continue;
                };
                let payload = buf.get(at.clone()).expect("in the buffer");
                assert_eq!(payload.first().map(|b| b >> 6), Some(2), "{file}");
                let kind = EventKind::Datagram {
                    src,
                    dst,
                    payload: Bytes::copy_from_slice(payload),
                };
                assert_eq!(
                    (ev.frame, ev.time, &kind),
                    (want.frame, want.time, &want.kind)
                );
                lent_total += 1;
            }
        };
        while r.read_into(&mut pending, 7).expect("no error") {
            assert!(pending.len() >= 7, "{file}: a short batch before the end");
            let buf = r.take_lent(Vec::new());
            check(&mut pending, buf, &mut n);
        }
        let buf = r.take_lent(Vec::new());
        check(&mut pending, buf, &mut n);
        assert!(!r.read_into(&mut pending, 7).expect("no error") && pending.is_empty());
        assert_eq!(n, shared.events.len(), "{file}");
    }
    assert!(
        lent_total > 1000,
        "only {lent_total} RTP/RTCP payloads lent"
    );
}
