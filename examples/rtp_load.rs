//! RTP load generator and timestamping sink for the media benchmark
//! (`bench/media-vs-rtpengine.sh`). A dev tool: it never runs inside the gateway.
//!
//! ```sh
//! # N calls through GW2 (the `sgw run` demo): INVITE/ACK with SDP naming our sockets, RTP to
//! # GW2's media port; the demo's inside endpoint echoes, so each packet makes the round trip
//! # caller -> GW2 -> tunnel -> GW1 -> echo -> GW1 -> tunnel -> GW2 -> caller.
//! cargo run --release --example rtp_load -- sgw --sip 127.0.0.1:5060 --streams 1000 --seconds 10
//! # N sessions through rtpengine (ng offer/answer over UDP): A -> rtpengine -> B, B echoes
//! # -> rtpengine -> A. One-way latency is measured at B, the round trip at A.
//! cargo run --release --example rtp_load -- rtpengine --ng 127.0.0.1:2223 --streams 1000 --seconds 10
//! # The same through `sgw run --config` whose GW1 next hop is rtp_load itself (`--uas`): each
//! # call's inside leg ends on a socket B of rtp_load that echoes, so one way (A -> GW2 -> tunnel
//! # -> GW1 -> B) is timed at B, and the round trip at A.
//! cargo run --release --example rtp_load -- sgw --sip 127.0.0.1:5060 --uas 127.0.0.1:5090 --streams 1000
//! # No relay: A -> B, B echoes -> A. The generator's own floor (scheduling, syscalls).
//! cargo run --release --example rtp_load -- direct --streams 1000 --seconds 10
//! ```
//!
//! Every stream sends 20 ms G.711 (PCMU, 172-byte RTP packets: 12 header + 160 payload) at
//! 1000/ptime packets/s; the payload starts with the send time (ns since the run's start), the
//! stream index and a sequence number. Sending runs on its own thread, paced per millisecond
//! and spread evenly over the ptime; receiving (and the echo in `rtpengine`/`direct` modes) runs
//! on a single-threaded tokio runtime with one task per socket. The result is one line of JSON:
//! packets sent, received back, lost, packets/s, and latency percentiles (µs) of the round trip
//! (and its half) and, where measured, of one way. Samples from the first `--warmup` seconds are
//! left out of the percentiles, not out of the loss count.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const HDR: usize = 12;
const PAYLOAD: usize = 160;
/// 1 µs buckets up to this many µs; larger samples go in the last bucket.
const HIST_US: usize = 1_000_000;

struct Opts {
    mode: String,
    sip: Option<SocketAddr>,
    ng: Option<SocketAddr>,
    streams: usize,
    seconds: f64,
    ptime_ms: u64,
    warmup: f64,
    setup_window: usize,
    uas: Option<SocketAddr>,
}

fn usage() -> String {
    "usage: rtp_load sgw --sip HOST:PORT [--uas HOST:PORT] | rtpengine --ng HOST:PORT | direct \
     [--streams N] [--seconds S] [--ptime MS] [--warmup S] [--window N]"
        .to_owned()
}

fn parse_opts() -> Res<Opts> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or_else(usage)?;
    let mut o = Opts {
        mode,
        sip: None,
        ng: None,
        streams: 100,
        seconds: 10.0,
        ptime_ms: 20,
        warmup: 1.0,
        setup_window: 32,
        uas: None,
    };
    while let Some(a) = args.next() {
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--sip" => o.sip = Some(v.parse()?),
            "--ng" => o.ng = Some(v.parse()?),
            "--streams" => o.streams = v.parse()?,
            "--seconds" => o.seconds = v.parse()?,
            "--ptime" => o.ptime_ms = v.parse()?,
            "--warmup" => o.warmup = v.parse()?,
            "--window" => o.setup_window = v.parse()?,
            "--uas" => o.uas = Some(v.parse()?),
            _ => return Err(usage().into()),
        }
    }
    if o.streams == 0 || o.ptime_ms == 0 {
        return Err("--streams and --ptime must be at least 1".into());
    }
    Ok(o)
}

/// A latency histogram with 1 µs buckets, shared by the receiving tasks.
struct Hist {
    buckets: Vec<AtomicU64>,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            buckets: (0..HIST_US).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    fn add(&self, us: u64) {
        let i = usize::try_from(us).unwrap_or(HIST_US).min(HIST_US - 1);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// (count, p50, p90, p99, p99.9, max) in µs.
    fn summary(&self) -> serde_json::Value {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let pct = |p: f64| -> u64 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let want = ((total as f64) * p).ceil().max(1.0) as u64;
            let mut acc = 0;
            for (i, c) in counts.iter().enumerate() {
                acc += c;
                if acc >= want {
                    return i as u64;
                }
            }
            0
        };
        let max = counts.iter().rposition(|c| *c > 0).unwrap_or(0);
        serde_json::json!({
            "samples": total,
            "p50_us": pct(0.50),
            "p90_us": pct(0.90),
            "p99_us": pct(0.99),
            "p999_us": pct(0.999),
            "max_us": max,
        })
    }
}

/// One measured stream: socket A sends to `a_to`; what comes back to A is timed (round trip).
/// In `rtpengine`/`direct` modes socket B receives (timed one way) and echoes to `b_to`.
struct Stream {
    a: StdUdp,
    a_to: SocketAddr,
    b: Option<(StdUdp, SocketAddr)>,
}

fn bind_local() -> Res<StdUdp> {
    Ok(StdUdp::bind("127.0.0.1:0")?)
}

fn main() {
    match real_main() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("rtp_load: {e}");
            std::process::exit(1);
        }
    }
}

fn real_main() -> Res<()> {
    let o = parse_opts()?;
    let mut sip_calls = None;
    let streams = match o.mode.as_str() {
        "sgw" => {
            let target = o.sip.ok_or("sgw mode needs --sip HOST:PORT")?;
            let uas = match o.uas {
                Some(addr) => Some(Uas::start(addr)?),
                None => None,
            };
            let (mut streams, calls) = sip_setup(target, o.streams, o.setup_window)?;
            sip_calls = Some((target, calls));
            if let Some(uas) = &uas {
                // The inside legs: one echo socket per call, each answering GW1's INVITE.
                let legs = uas.take(streams.len(), Duration::from_secs(10))?;
                for (s, leg) in streams.iter_mut().zip(legs) {
                    s.b = Some(leg);
                }
            }
            streams
        }
        "rtpengine" => {
            let ng = o.ng.ok_or("rtpengine mode needs --ng HOST:PORT")?;
            ng_setup(ng, o.streams)?
        }
        "direct" => {
            let mut v = Vec::new();
            for _ in 0..o.streams {
                let a = bind_local()?;
                let b = bind_local()?;
                let (aa, ba) = (a.local_addr()?, b.local_addr()?);
                v.push(Stream {
                    a,
                    a_to: ba,
                    b: Some((b, aa)),
                });
            }
            v
        }
        _ => return Err(usage().into()),
    };
    eprintln!("rtp_load: {} streams set up, sending", streams.len());
    let report = blast(&o, streams)?;
    if let Some((target, calls)) = sip_calls {
        let ended = sip_teardown(target, &calls);
        eprintln!("rtp_load: {ended}/{} calls ended with BYE/200", calls.len());
    }
    println!("{report}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Media

fn rtp_packet(buf: &mut [u8; HDR + PAYLOAD], idx: u32, seq: u16, ts_ns: u64) {
    buf.fill(0xff);
    let seq_b = seq.to_be_bytes();
    let rtp_ts = u32::from(seq).wrapping_mul(160).to_be_bytes();
    let ssrc = (0x5347_0000_u32 ^ idx).to_be_bytes();
    let hdr = [
        0x80, 0x00, seq_b[0], seq_b[1], rtp_ts[0], rtp_ts[1], rtp_ts[2], rtp_ts[3], ssrc[0],
        ssrc[1], ssrc[2], ssrc[3],
    ];
    buf[..HDR].copy_from_slice(&hdr);
    buf[HDR..HDR + 8].copy_from_slice(&ts_ns.to_be_bytes());
    buf[HDR + 8..HDR + 12].copy_from_slice(&idx.to_be_bytes());
}

fn sent_ns(pkt: &[u8]) -> Option<u64> {
    let b: [u8; 8] = pkt.get(HDR..HDR + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[allow(clippy::too_many_lines)]
fn blast(o: &Opts, streams: Vec<Stream>) -> Res<serde_json::Value> {
    let epoch = Instant::now();
    let n = streams.len();
    let warmup_ns = secs_ns(o.warmup);
    let rtt = Arc::new(Hist::new());
    let one_way = Arc::new(Hist::new());
    let back = Arc::new(AtomicU64::new(0));
    let at_b = Arc::new(AtomicU64::new(0));
    let echo_fail = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // Sender side: clones of the A sockets, blocking.
    let mut senders = Vec::with_capacity(n);
    let mut rx_a = Vec::with_capacity(n);
    let mut rx_b = Vec::new();
    for s in streams {
        senders.push((s.a.try_clone()?, s.a_to));
        s.a.set_nonblocking(true)?;
        rx_a.push(s.a);
        if let Some((b, to)) = s.b {
            b.set_nonblocking(true)?;
            rx_b.push((b, to));
        }
    }

    // Receivers (and echo) on a current-thread runtime in its own thread.
    let rt_thread = {
        let (rtt, one_way, back, at_b, echo_fail, stop) = (
            rtt.clone(),
            one_way.clone(),
            back.clone(),
            at_b.clone(),
            echo_fail.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || -> Res<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for a in rx_a {
                    let sock = tokio::net::UdpSocket::from_std(a)?;
                    let (rtt, back, stop) = (rtt.clone(), back.clone(), stop.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut buf = [0u8; 2048];
                        while !stop.load(Ordering::Relaxed) {
                            let r = tokio::time::timeout(
                                Duration::from_millis(200),
                                sock.recv_from(&mut buf),
                            )
                            .await;
                            let Ok(Ok((len, _))) = r else { continue };
                            let now = ns_since(epoch);
                            back.fetch_add(1, Ordering::Relaxed);
                            if let Some(t) = buf.get(..len).and_then(sent_ns) {
                                if t >= warmup_ns {
                                    rtt.add(now.saturating_sub(t) / 1000);
                                }
                            }
                        }
                    }));
                }
                for (b, to) in rx_b {
                    let sock = tokio::net::UdpSocket::from_std(b)?;
                    let (one_way, at_b, echo_fail, stop) = (
                        one_way.clone(),
                        at_b.clone(),
                        echo_fail.clone(),
                        stop.clone(),
                    );
                    tasks.push(tokio::spawn(async move {
                        let mut buf = [0u8; 2048];
                        while !stop.load(Ordering::Relaxed) {
                            let r = tokio::time::timeout(
                                Duration::from_millis(200),
                                sock.recv_from(&mut buf),
                            )
                            .await;
                            let Ok(Ok((len, _))) = r else { continue };
                            let now = ns_since(epoch);
                            at_b.fetch_add(1, Ordering::Relaxed);
                            let pkt = buf.get(..len).unwrap_or_default();
                            if let Some(t) = sent_ns(pkt) {
                                if t >= warmup_ns {
                                    one_way.add(now.saturating_sub(t) / 1000);
                                }
                            }
                            if sock.try_send_to(pkt, to).is_err() {
                                echo_fail.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
    };

    // Sender: every millisecond, the packets whose slot falls in it.
    let ptime_ns = o.ptime_ms * 1_000_000;
    let total_ns = secs_ns(o.seconds);
    let ticks = total_ns / ptime_ns;
    let n64 = n as u64;
    let mut sent = 0u64;
    let mut send_err = 0u64;
    let mut late_max_ns = 0u64;
    let mut buf = [0u8; HDR + PAYLOAD];
    let mut next = 0u64; // global packet number: tick * n + stream
    let last = ticks * n64;
    let start = ns_since(epoch);
    while next < last {
        let now = ns_since(epoch) - start;
        // packets due up to now
        while next < last {
            let tick = next / n64;
            let i = next % n64;
            let due = tick * ptime_ns + i * ptime_ns / n64;
            if due > now {
                break;
            }
            late_max_ns = late_max_ns.max(now - due);
            let idx = usize::try_from(i).unwrap_or(0);
            if let Some((sock, to)) = senders.get(idx) {
                #[allow(clippy::cast_possible_truncation)]
                rtp_packet(&mut buf, i as u32, tick as u16, ns_since(epoch));
                match sock.send_to(&buf, to) {
                    Ok(_) => sent += 1,
                    Err(_) => send_err += 1,
                }
            }
            next += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let send_secs = (ns_since(epoch) - start) as f64 / 1e9;
    // Grace for packets in flight, then stop the receivers.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    match rt_thread.join() {
        Ok(r) => r?,
        Err(_) => return Err("receiver thread panicked".into()),
    }
    let back = back.load(Ordering::Relaxed);
    let mut rtt_s = rtt.summary();
    if let Some(obj) = rtt_s.as_object_mut() {
        for k in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            let v = obj.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            obj.insert(format!("half_{k}"), serde_json::json!(v as f64 / 2.0));
        }
    }
    let mut out = serde_json::json!({
        "mode": o.mode,
        "streams": n,
        "ptime_ms": o.ptime_ms,
        "seconds": send_secs,
        "sent": sent,
        "send_errors": send_err,
        "offered_pps": sent as f64 / send_secs,
        "received": back,
        "lost": sent.saturating_sub(back),
        "loss_pct": if sent > 0 { 100.0 * sent.saturating_sub(back) as f64 / sent as f64 } else { 0.0 },
        "sender_late_max_us": late_max_ns / 1000,
        "round_trip": rtt_s,
    });
    if o.mode != "sgw" || o.uas.is_some() {
        if let Some(obj) = out.as_object_mut() {
            obj.insert(
                "at_b".into(),
                serde_json::json!(at_b.load(Ordering::Relaxed)),
            );
            obj.insert(
                "echo_errors".into(),
                serde_json::json!(echo_fail.load(Ordering::Relaxed)),
            );
            obj.insert("one_way".into(), one_way.summary());
        }
    }
    Ok(out)
}

fn ns_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn secs_ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

// ---------------------------------------------------------------------------------------------
// SIP: a minimal UAC for the sgw demo (UDP, one socket, a window of outstanding INVITEs).

struct Call {
    call_id: String,
    rtp: StdUdp,
    to_hdr: String,
    from_hdr: String,
    contact: String,
    remote: Option<SocketAddr>,
    invite_branch: String,
    invite: Vec<u8>,
    sent_at: Option<Instant>,
    tries: u32,
    done: bool,
}

/// Established calls: what the teardown needs.
pub struct Established {
    call_id: String,
    from_hdr: String,
    to_hdr: String,
    contact: String,
}

fn header<'a>(msg: &'a str, names: &[&str]) -> Option<&'a str> {
    let head = msg.split("\r\n\r\n").next()?;
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if names.iter().any(|n| k.trim().eq_ignore_ascii_case(n)) {
                return Some(v.trim());
            }
        }
    }
    None
}

fn sdp_media(msg: &str) -> Option<SocketAddr> {
    let body = msg.split_once("\r\n\r\n")?.1;
    let mut ip = None;
    let mut port = None;
    for line in body.lines() {
        if let Some(c) = line
            .strip_prefix("c=IN IP4 ")
            .or(line.strip_prefix("c=IN IP6 "))
        {
            ip = c.trim().parse::<std::net::IpAddr>().ok();
        }
        if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split_whitespace().next()?.parse::<u16>().ok();
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

fn uri_of(contact: &str) -> String {
    match (contact.find('<'), contact.find('>')) {
        (Some(a), Some(b)) if a < b => contact.get(a + 1..b).unwrap_or(contact).to_owned(),
        _ => contact
            .split(';')
            .next()
            .unwrap_or(contact)
            .trim()
            .to_owned(),
    }
}

fn sip_setup(target: SocketAddr, n: usize, window: usize) -> Res<(Vec<Stream>, Vec<Established>)> {
    let sip = bind_local()?;
    let me = sip.local_addr()?;
    sip.set_read_timeout(Some(Duration::from_millis(50)))?;
    let tag = std::process::id();
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        let rtp = bind_local()?;
        let rport = rtp.local_addr()?.port();
        let call_id = format!("rtpload-{tag}-{i}@{}", me.ip());
        let branch = format!("z9hG4bK-rl{tag}x{i}");
        let from_hdr = format!("<sip:load{i}@{}>;tag=rl{i}", me.ip());
        let sdp = format!(
            "v=0\r\no=- {i} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {rport} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
            ip = me.ip()
        );
        let invite = format!(
            "INVITE sip:service@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: {from_hdr}\r\nTo: <sip:service@{target}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:load{i}@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes();
        calls.push(Call {
            call_id,
            rtp,
            to_hdr: String::new(),
            from_hdr,
            contact: String::new(),
            remote: None,
            invite_branch: branch,
            invite,
            sent_at: None,
            tries: 0,
            done: false,
        });
    }
    let by_id: HashMap<String, usize> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| (c.call_id.clone(), i))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 10);
    let mut next = 0usize;
    let mut outstanding = 0usize;
    let mut failed = 0usize;
    let mut buf = vec![0u8; 65536];
    while calls.iter().any(|c| !c.done) {
        if Instant::now() > deadline {
            return Err("call setup timed out".into());
        }
        while outstanding < window && next < n {
            if let Some(c) = calls.get_mut(next) {
                sip.send_to(&c.invite, target)?;
                c.sent_at = Some(Instant::now());
                c.tries = 1;
            }
            next += 1;
            outstanding += 1;
        }
        // retransmit INVITEs without a final answer
        for c in calls.iter_mut().filter(|c| !c.done && c.tries > 0) {
            if c.sent_at
                .is_some_and(|t| t.elapsed() > Duration::from_secs(2))
            {
                if c.tries >= 4 {
                    return Err(format!("no answer to INVITE {}", c.call_id).into());
                }
                sip.send_to(&c.invite, target)?;
                c.sent_at = Some(Instant::now());
                c.tries += 1;
            }
        }
        let Ok((len, from)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned();
        if !msg.starts_with("SIP/2.0 ") {
            // a request from GW2: answer 200 (mirroring Via, From, To, Call-ID, CSeq)
            let mut r = String::from("SIP/2.0 200 OK\r\n");
            for h in msg
                .split("\r\n\r\n")
                .next()
                .unwrap_or("")
                .split("\r\n")
                .skip(1)
            {
                let k = h
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                if ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"]
                    .contains(&k.as_str())
                {
                    r.push_str(h);
                    r.push_str("\r\n");
                }
            }
            r.push_str("Content-Length: 0\r\n\r\n");
            sip.send_to(r.as_bytes(), from)?;
            continue;
        }
        let code: u16 = msg
            .get(8..11)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let Some(cid) = header(&msg, &["call-id", "i"]) else {
            continue;
        };
        let cseq = header(&msg, &["cseq"]).unwrap_or("");
        let Some(&i) = by_id.get(cid) else { continue };
        let Some(c) = calls.get_mut(i) else { continue };
        if !cseq.ends_with("INVITE") || code < 200 {
            continue;
        }
        let to = header(&msg, &["to", "t"]).unwrap_or("").to_owned();
        if code >= 300 {
            // ACK for a failure: same branch, hop by hop
            let ack = format!(
                "ACK sip:service@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={}\r\n\
                 Max-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\n\
                 Content-Length: 0\r\n\r\n",
                c.invite_branch, c.from_hdr, c.call_id
            );
            sip.send_to(ack.as_bytes(), from)?;
            if !c.done {
                c.done = true;
                failed += 1;
                outstanding -= 1;
            }
            continue;
        }
        let contact = uri_of(header(&msg, &["contact", "m"]).unwrap_or(""));
        let contact = if contact.is_empty() {
            format!("sip:service@{target}")
        } else {
            contact
        };
        let ack = format!(
            "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-rlack{tag}x{i}\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            c.from_hdr, c.call_id
        );
        sip.send_to(ack.as_bytes(), target)?;
        if !c.done {
            c.done = true;
            c.to_hdr = to;
            c.contact = contact;
            c.remote = sdp_media(&msg);
            outstanding -= 1;
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {n} calls failed").into());
    }
    let mut streams = Vec::with_capacity(n);
    let mut est = Vec::with_capacity(n);
    for c in calls {
        let to = c.remote.ok_or("200 OK without a usable SDP answer")?;
        streams.push(Stream {
            a: c.rtp,
            a_to: to,
            b: None,
        });
        est.push(Established {
            call_id: c.call_id,
            from_hdr: c.from_hdr,
            to_hdr: c.to_hdr,
            contact: c.contact,
        });
    }
    Ok((streams, est))
}

/// Sends BYE for every call and counts the 200s (best effort, bounded time).
fn sip_teardown(target: SocketAddr, calls: &[Established]) -> usize {
    let Ok(sip) = bind_local() else { return 0 };
    let Ok(me) = sip.local_addr() else { return 0 };
    let _ = sip.set_read_timeout(Some(Duration::from_millis(100)));
    let mut ok = 0;
    let mut buf = vec![0u8; 65536];
    for chunk in calls.chunks(50) {
        for (i, c) in chunk.iter().enumerate() {
            let bye = format!(
                "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-rlbye{}x{i}\r\n\
                 Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\n\
                 Content-Length: 0\r\n\r\n",
                c.contact,
                std::process::id(),
                c.from_hdr,
                c.to_hdr,
                c.call_id
            );
            let _ = sip.send_to(bye.as_bytes(), target);
        }
        let until = Instant::now() + Duration::from_secs(2);
        let mut got = 0;
        while got < chunk.len() && Instant::now() < until {
            if let Ok((len, _)) = sip.recv_from(&mut buf) {
                if buf
                    .get(..len)
                    .is_some_and(|m| m.starts_with(b"SIP/2.0 200"))
                {
                    got += 1;
                }
            }
        }
        ok += got;
    }
    ok
}

/// `--uas`: the inside endpoint for `sgw run --config` whose GW1 next hop is this address.
/// Answers each INVITE with 200 and an SDP naming a fresh socket of its own (the stream's B
/// socket, which echoes to GW1's media address from the offer), answers BYE with 200.
struct Uas {
    legs: Arc<std::sync::Mutex<Vec<(StdUdp, SocketAddr)>>>,
}

impl Uas {
    fn start(addr: SocketAddr) -> Res<Uas> {
        let sock = StdUdp::bind(addr)?;
        let legs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = legs.clone();
        std::thread::spawn(move || {
            let _ = uas_loop(&sock, &out);
        });
        Ok(Uas { legs })
    }

    /// Waits until `n` calls have been answered and hands over their sockets.
    fn take(&self, n: usize, wait: Duration) -> Res<Vec<(StdUdp, SocketAddr)>> {
        let until = Instant::now() + wait;
        loop {
            {
                let mut g = self.legs.lock().map_err(|_| "uas lock")?;
                if g.len() >= n || Instant::now() > until {
                    if g.len() < n {
                        return Err(
                            format!("the inside endpoint saw {} of {n} calls", g.len()).into()
                        );
                    }
                    return Ok(g.drain(..).collect());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn uas_loop(sock: &StdUdp, legs: &std::sync::Mutex<Vec<(StdUdp, SocketAddr)>>) -> Res<()> {
    let me = sock.local_addr()?;
    let mut answered: HashMap<String, Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (len, from) = sock.recv_from(&mut buf)?;
        let msg = String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned();
        if msg.starts_with("SIP/2.0") || msg.starts_with("ACK ") {
            continue;
        }
        let Some(cid) = header(&msg, &["call-id", "i"]) else {
            continue;
        };
        let mut r = String::from("SIP/2.0 200 OK\r\n");
        for h in msg
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .split("\r\n")
            .skip(1)
        {
            let k = h
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if ["via", "v", "from", "f", "call-id", "i", "cseq"].contains(&k.as_str()) {
                r.push_str(h);
                r.push_str("\r\n");
            } else if k == "to" || k == "t" {
                r.push_str(h);
                if !h.contains("tag=") {
                    r.push_str(";tag=uas");
                }
                r.push_str("\r\n");
            }
        }
        if msg.starts_with("INVITE ") {
            if let Some(resp) = answered.get(cid) {
                sock.send_to(resp, from)?;
                continue;
            }
            let Some(remote) = sdp_media(&msg) else {
                continue;
            };
            let leg = StdUdp::bind(SocketAddr::new(me.ip(), 0))?;
            let port = leg.local_addr()?.port();
            let ip = me.ip();
            let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
            let sdp = format!(
                "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
            );
            r.push_str(&format!(
                "Contact: <sip:uas@{me}>\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ));
            let resp = r.into_bytes();
            sock.send_to(&resp, from)?;
            answered.insert(cid.to_owned(), resp);
            legs.lock().map_err(|_| "uas lock")?.push((leg, remote));
        } else {
            r.push_str("Content-Length: 0\r\n\r\n");
            sock.send_to(r.as_bytes(), from)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rtpengine's ng control protocol: "cookie bencode-dict" over UDP.

fn bencode_dict(items: &[(&str, &str)]) -> Vec<u8> {
    let mut v = b"d".to_vec();
    let mut sorted: Vec<_> = items.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (k, val) in sorted {
        v.extend_from_slice(format!("{}:{k}{}:", k.len(), val.len()).as_bytes());
        v.extend_from_slice(val.as_bytes());
    }
    v.push(b'e');
    v
}

/// Finds the string value of `key` in a flat bencoded dict (skipping other values).
fn bencode_get(d: &[u8], key: &str) -> Option<String> {
    fn string(d: &[u8], i: usize) -> Option<(&[u8], usize)> {
        let colon = i + d.get(i..)?.iter().position(|&c| c == b':')?;
        let len: usize = std::str::from_utf8(d.get(i..colon)?).ok()?.parse().ok()?;
        let s = d.get(colon + 1..colon + 1 + len)?;
        Some((s, colon + 1 + len))
    }
    fn skip(d: &[u8], i: usize) -> Option<usize> {
        match d.get(i)? {
            b'i' => Some(i + d.get(i..)?.iter().position(|&c| c == b'e')? + 1),
            b'l' | b'd' => {
                let mut j = i + 1;
                while *d.get(j)? != b'e' {
                    j = skip(d, j)?;
                }
                Some(j + 1)
            }
            _ => string(d, i).map(|(_, j)| j),
        }
    }
    if d.first() != Some(&b'd') {
        return None;
    }
    let mut i = 1;
    while *d.get(i)? != b'e' {
        let (k, j) = string(d, i)?;
        if k == key.as_bytes() {
            return string(d, j).map(|(s, _)| String::from_utf8_lossy(s).into_owned());
        }
        i = skip(d, j)?;
    }
    None
}

fn ng_call(sock: &StdUdp, ng: SocketAddr, cookie: &str, items: &[(&str, &str)]) -> Res<String> {
    let mut msg = format!("{cookie} ").into_bytes();
    msg.extend_from_slice(&bencode_dict(items));
    let mut buf = vec![0u8; 65536];
    for _ in 0..5 {
        sock.send_to(&msg, ng)?;
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let r = buf.get(..len).unwrap_or_default();
        let Some(sp) = r.iter().position(|&c| c == b' ') else {
            continue;
        };
        if r.get(..sp) != Some(cookie.as_bytes()) {
            continue;
        }
        let d = r.get(sp + 1..).unwrap_or_default();
        let result = bencode_get(d, "result").unwrap_or_default();
        if result != "ok" {
            return Err(format!(
                "ng {cookie}: result {result:?} {:?}",
                bencode_get(d, "error-reason")
            )
            .into());
        }
        return bencode_get(d, "sdp").ok_or_else(|| "ng answer without sdp".into());
    }
    Err(format!("ng {cookie}: no answer from {ng}").into())
}

fn ng_setup(ng: SocketAddr, n: usize) -> Res<Vec<Stream>> {
    let ctl = bind_local()?;
    ctl.set_read_timeout(Some(Duration::from_millis(500)))?;
    let pid = std::process::id();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let a = bind_local()?;
        let b = bind_local()?;
        let (aa, ba) = (a.local_addr()?, b.local_addr()?);
        let sdp = |port: u16, id: usize| {
            format!(
                "v=0\r\no=- {id} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
            )
        };
        let call_id = format!("rtpload-{pid}-{i}");
        let offer = sdp(aa.port(), i);
        let answer = sdp(ba.port(), i + 1_000_000);
        // offer (from A): the SDP returned is for B, naming where B sends
        let for_b = ng_call(
            &ctl,
            ng,
            &format!("o{pid}x{i}"),
            &[
                ("command", "offer"),
                ("call-id", &call_id),
                ("from-tag", "a"),
                ("sdp", &offer),
            ],
        )?;
        // answer (from B): the SDP returned is for A, naming where A sends
        let for_a = ng_call(
            &ctl,
            ng,
            &format!("a{pid}x{i}"),
            &[
                ("command", "answer"),
                ("call-id", &call_id),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &answer),
            ],
        )?;
        let wrap = |s: &str| format!("\r\n\r\n{s}");
        let a_to = sdp_media(&wrap(&for_a)).ok_or("no media address in the answer's SDP")?;
        let b_to = sdp_media(&wrap(&for_b)).ok_or("no media address in the offer's SDP")?;
        v.push(Stream {
            a,
            a_to,
            b: Some((b, b_to)),
        });
    }
    Ok(v)
}
