//! The Prometheus endpoint against the live gateway (`sgw run --config --role both` with a
//! `[metrics]` section): a scrape before and after 20 sipp calls, the counters moved by the
//! calls, and `promtool check metrics` (Debian package `prometheus`) accepts the exposition.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::gateway::*;
use support::rawsip::InsideUas;
use support::scenarios::uac_rtp_scenario;
use support::*;

/// `GET path` over HTTP/1.1; the status code and body.
fn get(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "GET /metrics HTTP/1.1\r\nHost: sgw\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    body
}

/// Every sample, by `name{labels}` as written.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} among {:?}", m.keys()))
}

/// Scrapes until `done` holds (the drivers publish once a second), at most 10 s.
fn scrape_until(addr: SocketAddr, done: impl Fn(&BTreeMap<String, f64>) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(addr);
        if done(&samples(&text)) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// 20 sipp calls move the counters of both halves by what the calls did: 20 admitted, 20
/// ended, 20 setup times observed, the SIP messages of the calls, their media ports (bound
/// ahead or not), and no call left up; one
/// more call with RTP shows in the calls up while it lasts, and moves the media packets and the tunnel transit histogram of both halves;
/// the scraped call counters equal the `stats` lines printed at exit; promtool accepts the
/// exposition without a lint complaint; another path is 404, another method 405, an
/// oversized request 431.
#[test]
fn scrape_moves_with_20_sipp_calls_and_promtool_accepts_it() {
    if !sipp_available("metrics")
        || !peer_available("metrics", "promtool", &["--version"], "prometheus")
    {
        return;
    }
    let _serial = serial();
    let uas = InsideUas::start();
    let port = free_tcp_port("127.0.0.1");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut gw = Gateway::start(
        "metrics",
        &Setup {
            quiet: true,
            extra: format!("[metrics]\nlisten = \"{addr}\"\n"),
            ..Setup::new((8_600, 8_799), (8_800, 8_999), uas.sip)
        },
    );
    let line = gw.p.wait_line("metrics http://", Duration::from_secs(10));
    assert!(line.contains(&format!("http://{addr}/metrics")), "{line}");

    // Both tunnel ends up in the published snapshots before the calls.
    let up = |m: &BTreeMap<String, f64>| {
        ["gw2", "gw1"]
            .iter()
            .all(|h| m.get(&format!("sgw_tunnel_up{{half=\"{h}\"}}")) == Some(&1.0))
    };
    let before = samples(&scrape_until(addr, up));
    assert!(up(&before), "tunnel not up in the scrape: {before:?}");

    let sipp_port = free_udp_port("127.0.0.1").to_string();
    let target = gw.sip.to_string();
    let mut cmd = sipp(&gw.dir.0);
    cmd.args([
        "-sn",
        "uac",
        &target,
        "-m",
        "20",
        "-r",
        "10",
        "-i",
        "127.0.0.1",
    ])
    .args(["-p", &sipp_port]);
    let (st, out) = run_bounded("sipp uac", &mut cmd, Duration::from_secs(60));
    assert!(st.success(), "sipp failed:\n{out}");

    let key = |name: &str, half: &str| format!("{name}{{half=\"{half}\"}}");
    let ended = |m: &BTreeMap<String, f64>| {
        ["gw2", "gw1"].iter().all(|h| {
            let k = key("sgw_admission_ended_total", h);
            m.get(&k).copied().unwrap_or(0.0) >= value(&before, &k) + 20.0
        })
    };
    let text = scrape_until(addr, ended);
    let after = samples(&text);
    let delta = |name: &str, half: &str| {
        let k = key(name, half);
        value(&after, &k) - value(&before, &k)
    };
    for half in ["gw2", "gw1"] {
        for name in [
            "sgw_admission_admitted_total",
            "sgw_admission_ended_total",
            "sgw_call_setup_seconds_count",
        ] {
            assert_eq!(delta(name, half), 20.0, "{name} on {half}\n{text}");
        }
        for (p, d) in [
            ("sip", "from_outside"),
            ("sip", "from_inside"),
            ("h323", "from_outside"),
            ("h323", "from_inside"),
        ] {
            let k = format!("sgw_calls_up{{half=\"{half}\",protocol=\"{p}\",direction=\"{d}\"}}");
            assert_eq!(value(&after, &k), 0.0, "{k}");
        }
        // Nothing refused.
        for reason in ["call_limit", "tunnel_down", "no_media_port", "rate_limited"] {
            let k = format!("sgw_admission_refused_total{{half=\"{half}\",reason=\"{reason}\"}}");
            assert_eq!(value(&after, &k) - value(&before, &k), 0.0, "{k}");
        }
        assert_eq!(delta("sgw_tunnel_reconnects_total", half), 0.0);
    }
    // New calls from outside are GW2's count.
    assert_eq!(delta("sgw_calls_total", "gw2"), 20.0, "{text}");
    // GW2 reads sipp's INVITE, ACK and BYE of each call (no retransmission on loopback); GW1
    // reads the inside's 180, 200 (INVITE) and 200 (BYE).
    assert_eq!(delta("sgw_sip_messages_total", "gw2"), 60.0, "{text}");
    assert_eq!(delta("sgw_sip_messages_total", "gw1"), 60.0, "{text}");
    // Each call's signalling crossed the tunnel.
    assert!(delta("sgw_meta_messages_total", "gw2") >= 20.0, "{text}");
    assert!(delta("sgw_driver_outside_sip_sent_total", "gw2") >= 60.0);
    assert!(delta("sgw_driver_inside_sip_sent_total", "gw1") >= 60.0);
    // Each media port of the calls was bound ahead or, when none was ready (the first one of
    // each port list at least), on the engine's task.
    for half in ["gw2", "gw1"] {
        let ahead = delta("sgw_media_sockets_prebound_total", half);
        let inline = delta("sgw_media_sockets_bound_inline_total", half);
        let opened = delta("sgw_media_streams_opened_total", half);
        eprintln!("{half}: {opened} media streams opened, {ahead} bound ahead, {inline} inline");
        assert_eq!(ahead + inline, opened, "{half}\n{text}");
        assert!(ahead > 0.0, "{half}: no media port bound ahead\n{text}");
    }

    // One call with RTP (sipp plays a capture, the inside echoes it): media crosses the
    // tunnel both ways, so both halves time frames from the tunnel to their UDP send.
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rtp/g711a.pcap");
    let sf = gw.dir.file("rtp.xml", &uac_rtp_scenario(&pcap));
    let mp = free_rtp_port("127.0.0.1").to_string();
    let mut cmd = sipp(&gw.dir.0);
    cmd.arg("-sf")
        .arg(&sf)
        .arg(&target)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &sipp_port,
            "-mi",
            "127.0.0.1",
            "-mp",
            &mp,
        ])
        .args(["-m", "1"]);
    let sipp_rtp =
        std::thread::spawn(move || run_bounded("sipp rtp", &mut cmd, Duration::from_secs(60)));
    // While it is up, each half shows one SIP call from outside, and its setup time is
    // counted already (at the answer, not at the end of the call).
    let up_now = |m: &BTreeMap<String, f64>| {
        ["gw2", "gw1"].iter().all(|h| {
            let k =
                format!("sgw_calls_up{{half=\"{h}\",protocol=\"sip\",direction=\"from_outside\"}}");
            let setups = key("sgw_call_setup_seconds_count", h);
            m.get(&k) == Some(&1.0) && m.get(&setups) == Some(&(value(&after, &setups) + 1.0))
        })
    };
    let during = samples(&scrape_until(addr, up_now));
    assert!(
        up_now(&during),
        "the call is not up in the scrape: {during:?}"
    );
    let (st, out) = sipp_rtp.join().unwrap();
    assert!(st.success(), "sipp (RTP) failed:\n{out}");
    let ended = |m: &BTreeMap<String, f64>| {
        ["gw2", "gw1"].iter().all(|h| {
            let k = key("sgw_admission_ended_total", h);
            m.get(&k).copied().unwrap_or(0.0) >= value(&before, &k) + 21.0
        })
    };
    let rtp_text = scrape_until(addr, ended);
    let rtp = samples(&rtp_text);
    let echoed = uas.echoed.load(std::sync::atomic::Ordering::Relaxed) as f64;
    assert!(echoed > 0.0, "the inside echoed no RTP");
    for half in ["gw2", "gw1"] {
        let transit = value(&rtp, &key("sgw_tunnel_media_transit_seconds_count", half));
        assert!(transit > 0.0, "{half}: no tunnel transit timed\n{rtp_text}");
        let k = format!("sgw_media_packets_total{{half=\"{half}\",protocol=\"rtp\"}}");
        assert!(value(&rtp, &k) > value(&after, &k), "{k}\n{rtp_text}");
    }
    // GW2 times the echoed packets it gets from the tunnel: at most one timing per packet.
    assert!(value(&rtp, &key("sgw_tunnel_media_transit_seconds_count", "gw2")) <= echoed);

    let (ok, lint) = promtool(&text);
    assert!(
        ok && lint.trim().is_empty(),
        "promtool check metrics:\n{lint}"
    );

    assert_eq!(get(addr, "GET / HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(
        get(
            addr,
            &format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000))
        )
        .0,
        431
    );

    // The scrape agrees with the stats lines printed at exit (nothing happened since).
    let (gw2, gw1) = gw.stop();
    for (half, stats) in [("gw2", &gw2), ("gw1", &gw1)] {
        for (path, name) in [
            ("engine.admission.admitted", "sgw_admission_admitted_total"),
            ("engine.admission.ended", "sgw_admission_ended_total"),
            ("engine.sip_messages", "sgw_sip_messages_total"),
            ("engine.calls", "sgw_calls_total"),
            ("driver.tunnel_ups", "sgw_tunnel_ups_total"),
        ] {
            assert_eq!(
                n(stats, path) as f64,
                value(&rtp, &key(name, half)),
                "{half} {path}"
            );
        }
    }
}
