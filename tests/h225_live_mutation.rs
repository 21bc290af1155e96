//! The PROTOS-like H.323 mutation test (tests/h323_mutation.rs) on the live H.225.0 listener:
//! 20,000 mutated Setups over TCP to GW2's `h225_tcp` in `sgw run --role both`, then a
//! legitimate call (with the multirate unrestricted-digital bearer of video-capable
//! endpoints) that must complete: Call Proceeding, Alerting and Connect come back, and the
//! Release Complete that ends it reaches the inside as a BYE.
//!
//! The Setups are the offline test's mutations (PER-level mutations of captured and built
//! H.225.0 PDUs and fastStart OLCs; on the Q.931 layer zero-length, overlong and wrong
//! User-user IEs and a missing Bearer capability; TPKT lengths that overrun), sent
//! [`PER_CONNECTION`] to a connection, each followed by a Release Complete for its call
//! reference so that the ones that become calls end at once. A Setup whose TPKT length overruns
//! ends its connection (the stream waits for bytes that never come). Connections are opened
//! from 20 loopback addresses, [`PARALLEL`] at a time, within the TCP caps.
//!
//! The process must stay up, its engine must have seen the Setups (`engine.h225_messages`),
//! and everything must be done within [`FLOOD_BOUND`] (a debug build on two loaded cores).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use codecs::meta::Cause;
use codecs::q931;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gateway::*;
use support::h323_mutate::*;
use support::rawsip::InsideUas;
use support::*;

/// Mutated Setups sent.
const SETUPS: usize = 20_000;
/// Setups (each with its Release Complete) per TCP connection.
const PER_CONNECTION: usize = 100;
/// Connections open at once.
const PARALLEL: usize = 4;
/// The whole flood, sending and draining the answers.
const FLOOD_BOUND: Duration = Duration::from_secs(60);

/// One connection's worth of mutated Setups, each followed by a Release Complete for its call
/// reference, as TPKT frames; stops after a frame whose TPKT length overruns.
fn batch(rng: &mut Rng, h225: &[Vec<u8>], olcs: &[Vec<u8>]) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut setups = 0;
    for _ in 0..PER_CONNECTION {
        let per = if rng.below(2) == 0 {
            let i = rng.below(h225.len());
            mutate_per(rng, &h225[i])
        } else {
            let i = rng.below(olcs.len());
            let olc = mutate_per(rng, &olcs[i]);
            setup_with_fast_start(vec![olc])
        };
        let q = q931_setup(rng, per);
        let framed = tpkt(rng, &q);
        bytes.extend_from_slice(&framed);
        setups += 1;
        if framed.len() >= 4 && framed[2..4] == [0xff, 0xff] {
            break;
        }
        if let Ok((cr, _, _)) = q931::peek(&q) {
            if let Ok(rc) =
                translators::h323::release_complete_for_error(cr.reply(), Cause::NORMAL_CLEARING)
            {
                bytes.extend_from_slice(&support::h225::tpkt(&rc.to_vec().unwrap()));
            }
        }
    }
    (bytes, setups)
}

/// A TCP connection from `src` (port 0: any) to `target`, within 5 s.
fn connect_from(src: SocketAddr, target: SocketAddr) -> Option<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().ok()?;
        sock.bind(src).ok()?;
        let conn = tokio::time::timeout(Duration::from_secs(5), sock.connect(target))
            .await
            .ok()?
            .ok()?;
        let std = conn.into_std().ok()?;
        std.set_nonblocking(false).ok()?;
        Some(std)
    })
}

/// Sends `bytes` on a new connection from `src` to `target`, half-closes, and reads GW2's
/// answers until it closes (or 5 s pass). Returns whether all bytes were written.
fn send(src: SocketAddr, target: SocketAddr, bytes: &[u8]) -> bool {
    let Some(mut conn) = connect_from(src, target) else {
        return false;
    };
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Write in pieces, reading answers in between so neither side's buffers fill.
    let mut written = true;
    let mut buf = vec![0u8; 65_536];
    for chunk in bytes.chunks(16 * 1024) {
        if conn.write_all(chunk).is_err() {
            written = false;
            break;
        }
        conn.set_nonblocking(true).unwrap();
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        conn.set_nonblocking(false).unwrap();
    }
    let _ = conn.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    written
}

/// Message types of the Q.931 messages in a TPKT byte stream; the rest stays in `got`.
fn q931_types(got: &mut Vec<u8>) -> Vec<u8> {
    let mut types = Vec::new();
    while got.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([got[2], got[3]]));
        if len < 4 || got.len() < len {
            break;
        }
        if let Ok((_, mt, _)) = q931::peek(&got[4..len]) {
            types.push(u8::from(mt));
        }
        got.drain(..len);
    }
    types
}

#[test]
fn twenty_thousand_mutated_setups_then_a_call_completes() {
    let _serial = serial();
    let uas = InsideUas::start();
    let mut gw = Gateway::start(
        "h225-live-mutation",
        &Setup {
            quiet: true,
            h225: true,
            // The decode path is under test, not the rate limits (tests/flood.rs).
            limits: "calls_per_source = 100000\ncalls_per_source_burst = 100000\n\
                     requests_per_source = 100000\nrequests_per_source_burst = 100000\nblock_after = 0",
            ..Setup::new((31_000, 32_999), (33_000, 34_999), uas.sip)
        },
    );
    let target = gw.h225;
    let (h225, olcs, _) = seeds();
    let t0 = Instant::now();
    // Batches built up front (deterministic), sent by PARALLEL workers.
    let mut rng = Rng(0x4832_3235_4c49_5645);
    let mut batches = Vec::new();
    let mut total = 0;
    while total < SETUPS {
        let (bytes, n) = batch(&mut rng, &h225, &olcs);
        total += n;
        batches.push((bytes, n));
    }
    let built = t0.elapsed();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let (batches, next, sent, failed) =
                (batches.clone(), next.clone(), sent.clone(), failed.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((bytes, n)) = batches.get(i) else {
                    break;
                };
                let src = SocketAddr::from(([127, 41, 0, (i % 20) as u8 + 1], 0));
                if send(src, target, bytes) {
                    sent.fetch_add(*n, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let flood_took = t0.elapsed();
    let sent = sent.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    assert!(
        gw.p.child.try_wait().unwrap().is_none(),
        "the gateway exited during the flood:\n{}",
        gw.output()
    );

    // The legitimate call, with a multirate unrestricted-digital bearer.
    let rtp = SocketAddr::from(([127, 0, 0, 1], 9));
    let spec = h225::SetupSpec {
        call_ref: 0x7ff0,
        calling: "4930999",
        ..h225::SetupSpec::new(rtp)
    };
    let setup = h225::with_bearer(&h225::setup_q931(&spec), &h225::MULTIRATE_BEARER);
    let byes_before = uas.log().byes;
    let mut conn = TcpStream::connect(target).unwrap();
    conn.write_all(&h225::tpkt(&setup)).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (mut got, mut types) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !types.contains(&0x07) && Instant::now() < deadline {
        let mut b = [0u8; 4096];
        if let Ok(n) = conn.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        types.extend(q931_types(&mut got));
    }
    let call_took = t0.elapsed() - flood_took;
    let answered = types.contains(&0x07);
    let mut conference_id = [0xc0; 16];
    conference_id[..2].copy_from_slice(&spec.call_ref.to_be_bytes());
    let mut call_identifier = [0xca; 16];
    call_identifier[..2].copy_from_slice(&spec.call_ref.to_be_bytes());
    let ids = translators::h323::CallIds {
        call_ref: spec.call_ref,
        conference_id,
        call_identifier,
    };
    let rc = translators::h323::release_complete_message(&ids, false, Cause::NORMAL_CLEARING)
        .unwrap()
        .to_vec()
        .unwrap();
    conn.write_all(&h225::tpkt(&rc)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while uas.log().byes == byes_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let cleared = uas.log().byes > byes_before;
    drop(conn);
    let (s2, _) = gw.stop();
    let figures = format!(
        "{sent} mutated Setups sent over {} connections ({failed} connections failed), built in \
         {built:?}, flood {flood_took:?}; the call after: answered {answered} ({types:02x?}) in \
         {call_took:?}, cleared inside {cleared}; engine.h225_messages {}, inside INVITEs {}\n\
         stats gw2: {s2}",
        batches.len(),
        n(&s2, "engine.h225_messages"),
        uas.log().invites,
    );
    eprintln!("{figures}");
    assert!(sent >= SETUPS, "only {sent} Setups sent\n{figures}");
    // GW2 answers on the caller's connection or not at all: it never dials back toward the
    // outside for H.225.0 (a caller that half-closed its connection gets nothing more).
    assert_eq!(
        n(&s2, "driver.tcp_connects"),
        0,
        "GW2 opened connections toward the outside\n{figures}"
    );
    assert!(
        n(&s2, "engine.h225_messages") >= SETUPS as u64 * 9 / 10,
        "the Setups did not reach the engine\n{figures}"
    );
    assert!(
        flood_took < FLOOD_BOUND,
        "the flood took {flood_took:?}\n{figures}"
    );
    assert!(
        answered,
        "the call after the flood was not answered\n{figures}"
    );
    assert!(
        types.starts_with(&[0x02]),
        "Call Proceeding first: {types:02x?}"
    );
    assert!(
        cleared,
        "its Release Complete did not reach the inside\n{figures}"
    );
}
