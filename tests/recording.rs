//! Per-call capture against the live gateway (`sgw run --config --role both` with a
//! `[recording]` section): calls with RTP through both halves give one pcap per call, named by
//! its call id, that tshark reads without an error and that holds the SIP of the outside and
//! inside legs and their RTP; an H.323 call's H.225.0 is in its file as a TCP stream tshark
//! decodes; with the quota nearly used up, the files stay within it and the packets and calls
//! left out are counted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::gateway::*;
use support::h225;
use support::rawsip::InsideUas;
use support::scenarios::uac_rtp_scenario;
use support::*;

/// One sipp call to GW2 playing RTP for two seconds (the inside echoes it).
fn rtp_call(gw: &Gateway) {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rtp/g711a.pcap");
    let sf = gw.dir.file("rtp.xml", &uac_rtp_scenario(&pcap));
    let port = free_udp_port("127.0.0.1").to_string();
    let mp = free_rtp_port("127.0.0.1").to_string();
    let target = gw.sip.to_string();
    let mut cmd = sipp(&gw.dir.0);
    cmd.arg("-sf")
        .arg(&sf)
        .arg(&target)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mi",
            "127.0.0.1",
            "-mp",
            &mp,
        ])
        .args(["-m", "1"]);
    let (st, out) = run_bounded("sipp rtp", &mut cmd, Duration::from_secs(60));
    assert!(st.success(), "sipp failed:\n{out}");
}

fn wait_records(gw: &mut Gateway, calls: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = gw.call_records();
        if r.len() >= 2 * calls || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn call_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("sgw-call-") && n.ends_with(".pcap")
        })
        .collect();
    v.sort();
    v
}

/// What tshark read from `pcap`: (protocol column, source port, destination port) per frame.
/// Fails on any tshark error or warning (a cut-short or malformed file).
fn frames(pcap: &Path) -> Vec<(String, u16, u16)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "--enable-heuristic",
            "sip_udp",
            "--enable-heuristic",
            "rtp_udp",
        ])
        .args(["-T", "fields", "-e", "_ws.col.Protocol"])
        .args(["-e", "udp.srcport", "-e", "udp.dstport"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let err: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("Running as user \"root\""))
        .collect();
    assert!(
        out.status.success() && err.is_empty(),
        "tshark on {}: {err:?}",
        pcap.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((
                f.next()?.to_owned(),
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

fn recording_setup(uas: &InsideUas, dir: &Path, quota_mb: u64) -> Setup {
    Setup {
        extra: format!(
            "[recording]\ndir = \"{}\"\nquota_mb = {quota_mb}\n",
            dir.display()
        ),
        ..Setup::new((10_000, 10_199), (10_200, 10_399), uas.sip)
    }
}

#[test]
fn each_call_gets_a_pcap_with_both_legs_sip_and_rtp() {
    if !sipp_available("recording") || !peer_available("recording", "tshark", &["-v"], "tshark") {
        return;
    }
    let _serial = serial();
    let uas = InsideUas::start();
    let rec = Scratch::new("recording-files");
    let mut gw = Gateway::start("recording", &recording_setup(&uas, &rec.0, 64));
    for _ in 0..3 {
        rtp_call(&gw);
    }
    let records = wait_records(&mut gw, 3);
    let calls: BTreeSet<u64> = records
        .iter()
        .map(|r| r["call"].as_u64().unwrap())
        .collect();
    assert_eq!(calls.len(), 3, "{records:?}");
    // A file is complete two seconds after its call ended, the gateway still running.
    std::thread::sleep(Duration::from_secs(3));

    let files = call_files(&rec.0);
    assert_eq!(files.len(), 3, "{files:?}");
    let named: BTreeSet<u64> = files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            // sgw-call-<id>-gw2-gw1-<time>.pcap
            assert!(name.contains("-gw2-gw1-"), "{name}");
            name.split('-').nth(2).unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(named, calls, "files are named by call id");
    let (gw2_sip, gw1_sip) = (gw.sip.port(), gw.gw1_sip.port());
    let in_range = |p: u16, (lo, hi): (u16, u16)| (lo..=hi).contains(&p);
    for f in &files {
        let fr = frames(f);
        let sip = |port: u16| {
            fr.iter()
                .filter(|(proto, _, _)| proto == "SIP" || proto == "SIP/SDP")
                .filter(|(_, s, d)| *s == port || *d == port)
                .count()
        };
        let rtp = |range: (u16, u16)| {
            fr.iter()
                .filter(|(proto, _, _)| proto == "RTP")
                .filter(|(_, s, d)| in_range(*s, range) || in_range(*d, range))
                .count()
        };
        // INVITE, 100, 180, 200, ACK, BYE, 200 outside; the same without 100 inside.
        assert!(sip(gw2_sip) >= 7, "{}: outside SIP {fr:?}", f.display());
        assert!(sip(gw1_sip) >= 6, "{}: inside SIP {fr:?}", f.display());
        assert!(rtp((10_000, 10_199)) > 50, "{}: outside RTP", f.display());
        assert!(rtp((10_200, 10_399)) > 50, "{}: inside RTP", f.display());
        eprintln!(
            "recording: {} frames, {} bytes in {}",
            fr.len(),
            std::fs::metadata(f).unwrap().len(),
            f.display()
        );
    }
    gw.stop();
    let stats = gw.p.stats("recording");
    assert_eq!(n(&stats, "files"), 3, "{stats}");
    assert_eq!(n(&stats, "write_errors"), 0, "{stats}");
    assert_eq!(n(&stats, "quota_packets") + n(&stats, "quota_calls"), 0);
}

#[test]
fn the_quota_is_never_exceeded_and_what_it_left_out_is_counted() {
    if !sipp_available("recording") || !peer_available("recording", "tshark", &["-v"], "tshark") {
        return;
    }
    let _serial = serial();
    let uas = InsideUas::start();
    let rec = Scratch::new("recording-quota");
    // An earlier recording leaves 120 KiB of the 1 MiB quota: room for one call (about 90 KB
    // each) and part of the next; the third is not recorded.
    let quota: u64 = 1024 * 1024;
    let earlier = rec.0.join("sgw-call-0-19700101T000000Z.pcap");
    std::fs::write(&earlier, vec![0u8; (quota - 120 * 1024) as usize]).unwrap();
    let mut gw = Gateway::start("recording-quota", &recording_setup(&uas, &rec.0, 1));
    for _ in 0..3 {
        rtp_call(&gw);
    }
    wait_records(&mut gw, 3);
    gw.stop();
    let stats = gw.p.stats("recording");
    let total: u64 = call_files(&rec.0)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(total <= quota, "{total} bytes over the {quota} quota");
    assert!(n(&stats, "quota_packets") > 0, "{stats}");
    assert!(n(&stats, "quota_calls") > 0, "{stats}");
    assert_eq!(n(&stats, "write_errors"), 0, "{stats}");
    // What was written is whole: tshark reads every file the gateway wrote without a warning.
    let written: Vec<PathBuf> = call_files(&rec.0)
        .into_iter()
        .filter(|f| *f != earlier)
        .collect();
    assert!(!written.is_empty(), "the first call was recorded in part");
    for f in &written {
        assert!(!frames(f).is_empty(), "{}", f.display());
    }
    eprintln!("recording quota: {total} of {quota} bytes used, {stats}");
}

#[test]
fn an_h323_calls_h225_is_recorded_as_a_tcp_stream() {
    if !peer_available("recording", "tshark", &["-v"], "tshark") {
        return;
    }
    let _serial = serial();
    let uas = InsideUas::start();
    let rec = Scratch::new("recording-h323");
    let mut gw = Gateway::start(
        "recording-h323",
        &Setup {
            h225: true,
            ..recording_setup(&uas, &rec.0, 64)
        },
    );
    let rtp = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let mut conn = std::net::TcpStream::connect(gw.h225).unwrap();
    std::io::Write::write_all(&mut conn, &h225::setup(&h225::SetupSpec::new(rtp))).unwrap();
    // Call Proceeding, Alerting and Connect come back; a Release Complete ends the call.
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (mut got, mut packets) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while packets < 3 && Instant::now() < deadline {
        let mut b = [0u8; 4096];
        if let Ok(n) = std::io::Read::read(&mut conn, &mut b) {
            got.extend_from_slice(&b[..n]);
        }
        while got.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([got[2], got[3]]));
            if len < 4 || got.len() < len {
                break;
            }
            got.drain(..len);
            packets += 1;
        }
    }
    assert_eq!(packets, 3, "{}", gw.output());
    // The ids the test Setup carries (tests/support/h225.rs: call reference 7).
    let mut conference_id = [0xc0; 16];
    conference_id[..2].copy_from_slice(&7u16.to_be_bytes());
    let mut call_identifier = [0xca; 16];
    call_identifier[..2].copy_from_slice(&7u16.to_be_bytes());
    let ids = translators::h323::CallIds {
        call_ref: 7,
        conference_id,
        call_identifier,
    };
    let rc = translators::h323::release_complete_message(
        &ids,
        false,
        codecs::meta::Cause::NORMAL_CLEARING,
    )
    .unwrap()
    .to_vec()
    .unwrap();
    std::io::Write::write_all(&mut conn, &h225::tpkt(&rc)).unwrap();
    let records = wait_records(&mut gw, 1);
    assert_eq!(records.len(), 2, "{}", gw.output());
    drop(conn);
    std::thread::sleep(Duration::from_secs(3));
    let files = call_files(&rec.0);
    assert_eq!(files.len(), 1, "{files:?}\n{}", gw.output());
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&files[0])
        .args(["-Y", "q931"])
        .args(["-T", "fields", "-e", "q931.message_type"])
        .output()
        .unwrap();
    let types: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    // Setup (0x05), Call Proceeding (0x02), Alerting (0x01), Connect (0x07) and Release
    // Complete (0x5a) on the outside: one TCP stream tshark reassembles as H.225.0.
    for t in ["0x05", "0x02", "0x01", "0x07", "0x5a"] {
        assert!(types.iter().any(|x| x == t), "Q.931 {t} missing: {types:?}");
    }
    // The inside leg is SIP in the same file.
    let fr = frames(&files[0]);
    let gw1 = gw.gw1_sip.port();
    assert!(
        fr.iter()
            .any(|(p, s, d)| p.starts_with("SIP") && (*s == gw1 || *d == gw1)),
        "{fr:?}"
    );
    gw.stop();
}
