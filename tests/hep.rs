//! HEP v3 export against the live gateway (`sgw run --config --role both` with a `[hep]`
//! section): sngrep (Debian 1.6) listens for HEP and writes what it got to a pcap, and the
//! SIP messages tshark counts in it equal the messages each half handled (received and sent,
//! on its side) for a 5-call sipp run; a collector in the test decodes the chunks and finds
//! every call's outside and inside legs under one correlation id, the call id of the call
//! records; an H.323 call's H.225.0 PDUs are exported (protocol type 0x0b, over TCP, the TPKT
//! as on the wire) under the id its inside SIP leg carries; and `transport = "tcp"` streams the
//! same packets to a TCP collector.
//!
//! tshark (Debian 12's 4.0) has no HEP dissector (`-d udp.port==P,hep` is refused), so sngrep is
//! the independent decoder of the chunks, and tshark reads the pcap sngrep rebuilt from them
//! (addresses, ports and payload).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::gateway::*;
use support::h225;
use support::rawsip::InsideUas;
use support::*;

/// Waits until something holds UDP `port` on 127.0.0.1 (a bind there fails), at most 10 s.
fn wait_bound(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "nothing listens on udp {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` sipp calls (INVITE, ACK, BYE) to GW2 over UDP.
fn sipp_calls(gw: &Gateway, count: u32) {
    let port = free_udp_port("127.0.0.1").to_string();
    let target = gw.sip.to_string();
    let count = count.to_string();
    let mut cmd = sipp(&gw.dir.0);
    cmd.args(["-sn", "uac", &target, "-m", &count, "-r", "5"])
        .args(["-i", "127.0.0.1", "-p", &port]);
    let (st, out) = run_bounded("sipp uac", &mut cmd, Duration::from_secs(60));
    assert!(st.success(), "sipp failed:\n{out}");
}

/// Waits for `n` call records from each half.
fn wait_records(gw: &mut Gateway, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let records = gw.call_records();
        if records.len() >= 2 * n || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (source port, destination port) of every frame tshark dissects as SIP in `pcap`.
fn sip_frames(pcap: &Path) -> Vec<(u16, u16)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["--enable-heuristic", "sip_udp", "-Y", "sip", "-T", "fields"])
        .args(["-e", "udp.srcport", "-e", "udp.dstport"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

/// The SIP messages a half handled on its side: those it read (`sip_messages`) and those it
/// sent (the driver's `outside_sip_sent` on GW2, `inside_sip_sent` on GW1).
fn handled(stats: &serde_json::Value, sent: &str) -> u64 {
    n(stats, "engine.sip_messages") + n(stats, &format!("driver.{sent}"))
}

#[test]
fn sngrep_gets_every_sip_message_of_both_halves_for_5_calls() {
    if !sipp_available("hep")
        || !peer_available("hep", "sngrep", &["-V"], "sngrep")
        || !peer_available("hep", "tshark", &["-v"], "tshark")
    {
        return;
    }
    let _serial = serial();
    let uas = InsideUas::start();
    let hep_port = free_udp_port("127.0.0.1");
    let dir = Scratch::new("hep-sngrep");
    let pcap = dir.0.join("sngrep.pcap");
    let listen = format!("udp:127.0.0.1:{hep_port}");
    let mut sngrep = Proc::spawn_group(
        "sngrep",
        Command::new("sngrep")
            .args(["-N", "-q", "-L", &listen, "-O"])
            .arg(&pcap),
    );
    wait_bound(hep_port);
    let mut gw = Gateway::start(
        "hep-sngrep",
        &Setup {
            extra: format!("[hep]\ncollector = \"127.0.0.1:{hep_port}\"\nagent_id = 7\n"),
            ..Setup::new((9_400, 9_599), (9_600, 9_799), uas.sip)
        },
    );
    sipp_calls(&gw, 5);
    let records = wait_records(&mut gw, 5);
    assert_eq!(records.len(), 10, "call records: {records:?}");
    let (gw2, gw1) = gw.stop();
    sngrep.drain();
    // sngrep writes each packet as it reads it; give the last ones time to arrive.
    std::thread::sleep(Duration::from_millis(500));
    sngrep.terminate(Duration::from_secs(5));

    let outside = handled(&gw2, "outside_sip_sent");
    let inside = handled(&gw1, "inside_sip_sent");
    // sipp's INVITE, ACK, BYE and GW2's answers at least; the same inside.
    assert!(outside >= 5 * 6, "gw2 handled {outside}: {gw2}");
    assert!(inside >= 5 * 6, "gw1 handled {inside}: {gw1}");
    // Each half queued every message for the collector and dropped none.
    assert_eq!(n(&gw2, "driver.hep_queued"), outside, "{gw2}");
    assert_eq!(n(&gw1, "driver.hep_queued"), inside, "{gw1}");
    assert_eq!(n(&gw2, "driver.hep_dropped"), 0);
    assert_eq!(n(&gw1, "driver.hep_dropped"), 0);
    let hep = gw.p.stats("hep");
    assert_eq!(n(&hep, "sent"), outside + inside, "{hep}");

    let frames = sip_frames(&pcap);
    eprintln!(
        "hep: gw2 handled {outside}, gw1 {inside}; sngrep's pcap: {} SIP messages",
        frames.len()
    );
    let (gw2_port, gw1_port) = (gw.sip.port(), gw.gw1_sip.port());
    let on = |p: u16| frames.iter().filter(|(s, d)| *s == p || *d == p).count() as u64;
    assert_eq!(
        frames.len() as u64,
        outside + inside,
        "sngrep's pcap has {} SIP messages, the halves handled {outside} + {inside}",
        frames.len()
    );
    assert_eq!(on(gw2_port), outside, "outside leg (GW2 {gw2_port})");
    assert_eq!(on(gw1_port), inside, "inside leg (GW1 {gw1_port})");
}

/// The generic chunks of a HEP v3 packet, by type (the test's own decoder).
fn chunks(p: &[u8]) -> BTreeMap<u16, Vec<u8>> {
    assert_eq!(&p[..4], b"HEP3");
    assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len());
    let mut out = BTreeMap::new();
    let mut at = 6;
    while at < p.len() {
        let vendor = u16::from_be_bytes([p[at], p[at + 1]]);
        let kind = u16::from_be_bytes([p[at + 2], p[at + 3]]);
        let len = usize::from(u16::from_be_bytes([p[at + 4], p[at + 5]]));
        assert_eq!(vendor, 0);
        out.insert(kind, p[at + 6..at + len].to_vec());
        at += len;
    }
    out
}

fn call_id(sip: &str) -> String {
    sip.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
                .then(|| value.trim().to_owned())
        })
        .unwrap()
}

#[test]
fn a_calls_outside_and_inside_legs_share_its_correlation_id() {
    if !sipp_available("hep") {
        return;
    }
    let _serial = serial();
    let uas = InsideUas::start();
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr: SocketAddr = collector.local_addr().unwrap();
    let mut gw = Gateway::start(
        "hep-correlation",
        &Setup {
            extra: format!(
                "[hep]\ncollector = \"{addr}\"\nagent_id = 4242\npassword = \"s3cret\"\n"
            ),
            ..Setup::new((9_800, 9_899), (9_900, 9_999), uas.sip)
        },
    );
    sipp_calls(&gw, 3);
    let records = wait_records(&mut gw, 3);
    let calls: BTreeSet<String> = records.iter().map(|r| r["call"].to_string()).collect();
    assert_eq!(calls.len(), 3, "{records:?}");
    let mut packets = Vec::new();
    let mut buf = vec![0u8; 65_535];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(n) = collector.recv(&mut buf) {
            packets.push(buf[..n].to_vec());
        }
    }
    gw.stop();
    assert!(packets.len() >= 3 * 12, "{} packets", packets.len());
    let (gw2_port, gw1_port) = (gw.sip.port(), gw.gw1_sip.port());
    // correlation id -> (Call-IDs seen outside, Call-IDs seen inside)
    let mut legs: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for p in &packets {
        let c = chunks(p);
        assert_eq!(c[&0x0001], [2], "IPv4");
        assert_eq!(c[&0x0002], [17], "UDP");
        assert_eq!(c[&0x000b], [1], "SIP");
        assert_eq!(c[&0x000c], 4242u32.to_be_bytes());
        assert_eq!(c[&0x000e], b"s3cret");
        let secs = u32::from_be_bytes(c[&0x0009].clone().try_into().unwrap());
        assert!(secs > 1_700_000_000, "wall-clock time");
        let sport = u16::from_be_bytes(c[&0x0007].clone().try_into().unwrap());
        let dport = u16::from_be_bytes(c[&0x0008].clone().try_into().unwrap());
        let payload = String::from_utf8(c[&0x000f].clone()).unwrap();
        let corr = String::from_utf8(
            c.get(&0x0011)
                .unwrap_or_else(|| panic!("no correlation id:\n{payload}"))
                .clone(),
        )
        .unwrap();
        let entry = legs.entry(corr).or_default();
        if sport == gw2_port || dport == gw2_port {
            entry.0.insert(call_id(&payload));
        } else if sport == gw1_port || dport == gw1_port {
            entry.1.insert(call_id(&payload));
        } else {
            panic!("{sport} -> {dport} is on neither leg:\n{payload}");
        }
    }
    assert_eq!(legs.keys().cloned().collect::<BTreeSet<_>>(), calls);
    for (corr, (outside, inside)) in &legs {
        // One Call-ID per leg, and the B2BUA's two legs have different ones.
        assert_eq!(outside.len(), 1, "call {corr} outside: {outside:?}");
        assert_eq!(inside.len(), 1, "call {corr} inside: {inside:?}");
        assert_ne!(outside, inside);
    }
}

/// Reads TPKT packets from `conn` until `n` arrived or 10 s passed; their count.
fn read_tpkts(conn: &mut std::net::TcpStream, n: usize) -> usize {
    use std::io::Read;
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let mut got = 0;
    while got < n && Instant::now() < deadline {
        let mut chunk = [0u8; 4096];
        if let Ok(k) = conn.read(&mut chunk) {
            if k == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..k]);
        }
        while buf.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if len < 4 || buf.len() < len {
                break;
            }
            buf.drain(..len);
            got += 1;
        }
    }
    got
}

#[test]
fn h225_pdus_are_exported_under_the_calls_id_with_its_inside_sip() {
    let _serial = serial();
    let uas = InsideUas::start();
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = collector.local_addr().unwrap();
    let mut gw = Gateway::start(
        "hep-h225",
        &Setup {
            h225: true,
            extra: format!("[hep]\ncollector = \"{addr}\"\n"),
            ..Setup::new((9_300, 9_349), (9_350, 9_399), uas.sip)
        },
    );
    let rtp = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut conn = std::net::TcpStream::connect(gw.h225).unwrap();
    std::io::Write::write_all(&mut conn, &h225::setup(&h225::SetupSpec::new(rtp))).unwrap();
    // Call Proceeding, Alerting, Connect.
    let answers = read_tpkts(&mut conn, 3);
    assert_eq!(answers, 3, "{}", gw.output());
    drop(conn);
    let mut h225 = Vec::new();
    let mut sip = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        if let Ok(n) = collector.recv(&mut buf) {
            let c = chunks(&buf[..n]);
            match c[&0x000b][..] {
                [0x0b] => h225.push(c),
                [0x01] => sip.push(c),
                ref t => panic!("protocol type {t:?}"),
            }
        }
    }
    gw.stop();
    // The Setup read and the three answers sent, over TCP, with GW2's H.225.0 port.
    assert!(h225.len() >= 4, "{} H.225.0 packets", h225.len());
    let h225_port = gw.h225.port().to_be_bytes().to_vec();
    for c in &h225 {
        assert_eq!(c[&0x0002], [6], "TCP");
        assert!(c[&0x0007] == h225_port || c[&0x0008] == h225_port);
        // The payload is the TPKT packet as on the wire: version 3, its own length.
        let p = &c[&0x000f];
        assert_eq!(p[0], 3);
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
    }
    let corr = |c: &BTreeMap<u16, Vec<u8>>| c.get(&0x0011).cloned();
    let call = corr(&h225[0]).expect("the Setup has the call's id");
    assert!(h225.iter().all(|c| corr(c).as_ref() == Some(&call)));
    // GW1's INVITE toward the inside carries the same id.
    let invite = sip
        .iter()
        .find(|c| c[&0x000f].starts_with(b"INVITE "))
        .expect("GW1's INVITE");
    assert_eq!(corr(invite), Some(call));
}

#[test]
fn a_tcp_collector_gets_the_same_packets() {
    if !sipp_available("hep") {
        return;
    }
    let _serial = serial();
    let uas = InsideUas::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut gw = Gateway::start(
        "hep-tcp",
        &Setup {
            extra: format!("[hep]\ncollector = \"{addr}\"\ntransport = \"tcp\"\n"),
            ..Setup::new((9_200, 9_249), (9_250, 9_299), uas.sip)
        },
    );
    sipp_calls(&gw, 1);
    wait_records(&mut gw, 1);
    let (mut conn, _) = listener.accept().unwrap();
    let (gw2, gw1) = gw.stop();
    let expected = handled(&gw2, "outside_sip_sent") + handled(&gw1, "inside_sip_sent");
    // The gateway has exited: the stream ends after the last packet.
    let mut bytes = Vec::new();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Read::read_to_end(&mut conn, &mut bytes).unwrap();
    let mut packets = 0;
    let mut rest = &bytes[..];
    while rest.len() >= 6 {
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
        let c = chunks(&rest[..len]);
        assert_eq!(c[&0x000b], [1]);
        packets += 1;
        rest = &rest[len..];
    }
    assert!(rest.is_empty(), "a partial packet at the end");
    assert_eq!(packets, expected, "{gw2}\n{gw1}");
}
