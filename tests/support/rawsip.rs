//! Raw SIP on std UDP sockets for the live tests, where sipp cannot shape the traffic: an inside
//! answering endpoint that records what GW1 sends it, a caller that holds a call up with counted
//! RTP, and the text helpers both use.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use codecs::sip::{self, MessageBuilder, Method, StartLine};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The value of header `name` (full name, case-insensitive) in a SIP message's text.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .skip(1)
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

/// The status code of a response's text.
pub fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The `tag` parameter of a From/To value.
pub fn tag(v: &str) -> Option<&str> {
    v.split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("tag="))
}

/// The RTP address of the first `m=audio` line of a message's SDP body (its `c=` address).
pub fn sdp_audio(msg: &str) -> Option<SocketAddr> {
    let body = msg.split_once("\r\n\r\n")?.1;
    let ip = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

/// A PCMA offer (with telephone-event) for RTP at `rtp`.
pub fn pcma_sdp(rtp: SocketAddr) -> String {
    format!(
        "v=0\r\no=raw 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

/// One request's text. `to_tag` makes it in-dialog; `body` is SDP.
#[allow(clippy::too_many_arguments)]
pub fn request(
    method: &str,
    ruri: &str,
    local: SocketAddr,
    call_id: &str,
    from: &str,
    to: &str,
    cseq: u32,
    branch: &str,
    extra: &str,
    body: Option<&str>,
) -> String {
    let (ct, body) = match body {
        Some(b) => ("Content-Type: application/sdp\r\n", b),
        None => ("", ""),
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:raw@{local}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// What the inside answering endpoint saw.
#[derive(Debug, Default, Clone)]
pub struct UasLog {
    /// Distinct INVITEs (by Call-ID).
    pub invites: u64,
    pub acks: u64,
    pub byes: u64,
    /// Request-URIs of the first 100 INVITEs.
    pub request_uris: Vec<String>,
    /// The RTP port GW1 offered in each distinct INVITE, in arrival order.
    pub offered_ports: Vec<u16>,
}

/// The inside "PBX": answers every INVITE with 180 and 200 (SDP: its echo socket, the offer's
/// formats), answers BYE and other requests 200, and echoes RTP/RTCP to where it came from.
pub struct InsideUas {
    pub sip: SocketAddr,
    pub rtp: SocketAddr,
    log: Arc<Mutex<UasLog>>,
    pub echoed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl InsideUas {
    pub fn start() -> InsideUas {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&sock, &rtp] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        let (sip_addr, rtp_addr) = (sock.local_addr().unwrap(), rtp.local_addr().unwrap());
        let log = Arc::new(Mutex::new(UasLog::default()));
        let echoed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (stop, echoed) = (stop.clone(), echoed.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_535];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = rtp.recv_from(&mut buf) {
                        let _ = rtp.send_to(&buf[..n], from);
                        echoed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        {
            let (stop, log) = (stop.clone(), log.clone());
            threads.push(std::thread::spawn(move || {
                uas_loop(&sock, rtp_addr, &log, &stop);
            }));
        }
        InsideUas {
            sip: sip_addr,
            rtp: rtp_addr,
            log,
            echoed,
            stop,
            threads,
        }
    }

    pub fn log(&self) -> UasLog {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for InsideUas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn uas_loop(sock: &UdpSocket, rtp: SocketAddr, log: &Mutex<UasLog>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_535];
    // Call-ID -> the 200 OK, for retransmitted INVITEs.
    let mut answered: HashMap<String, Bytes> = HashMap::new();
    let mut next_tag = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok((msg, _)) = sip::parse_datagram(Bytes::copy_from_slice(&buf[..n])) else {
            continue;
        };
        let StartLine::Request(req) = msg.start() else {
            continue;
        };
        let call_id = msg.call_id().unwrap_or("").to_owned();
        let replies = match &req.method {
            Method::Ack => {
                log.lock().unwrap().acks += 1;
                Vec::new()
            }
            Method::Invite => {
                if let Some(ok) = answered.get(&call_id) {
                    vec![ok.clone()]
                } else {
                    next_tag += 1;
                    let tag = format!("uas{next_tag}");
                    let offer = String::from_utf8_lossy(&msg.body()).into_owned();
                    {
                        let mut l = log.lock().unwrap();
                        l.invites += 1;
                        if l.request_uris.len() < 100 {
                            l.request_uris.push(req.uri.clone());
                        }
                        if let Some(port) = offer
                            .lines()
                            .find_map(|l| l.trim().strip_prefix("m=audio "))
                            .and_then(|m| m.split_whitespace().next())
                            .and_then(|p| p.parse().ok())
                        {
                            l.offered_ports.push(port);
                        }
                    }
                    let contact = format!("<sip:uas@{}>", sock.local_addr().unwrap());
                    let ringing = MessageBuilder::response_to(&msg, 180, Some(&tag))
                        .header("Contact", contact.clone())
                        .build();
                    let ok = MessageBuilder::response_to(&msg, 200, Some(&tag))
                        .header("Contact", contact)
                        .body("application/sdp", answer_sdp(&offer, rtp))
                        .build();
                    answered.insert(call_id, ok.clone());
                    vec![ringing, ok]
                }
            }
            Method::Bye => {
                log.lock().unwrap().byes += 1;
                answered.remove(&call_id);
                vec![MessageBuilder::response_to(&msg, 200, None).build()]
            }
            _ => vec![MessageBuilder::response_to(&msg, 200, None).build()],
        };
        for r in replies {
            let _ = sock.send_to(&r, from);
        }
    }
}

/// The offer's first audio formats (PCMU and PCMA when there was no offer) at `rtp`.
fn answer_sdp(offer: &str, rtp: SocketAddr) -> String {
    let mut formats = "0 8".to_owned();
    let mut attrs = String::new();
    let mut in_audio = false;
    for l in offer.lines().map(str::trim_end) {
        if let Some(m) = l.strip_prefix("m=") {
            in_audio = m.starts_with("audio ") && attrs.is_empty();
            if in_audio {
                formats = m.split_whitespace().skip(3).collect::<Vec<_>>().join(" ");
            }
        } else if in_audio && (l.starts_with("a=rtpmap:") || l.starts_with("a=fmtp:")) {
            attrs.push_str(l);
            attrs.push_str("\r\n");
        }
    }
    format!(
        "v=0\r\no=uas 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n{attrs}a=sendrecv\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

/// An outside call made with raw SIP: established with [`RawCall::invite`], media counted by
/// [`RawCall::start_media`], ended with [`RawCall::hangup`].
pub struct RawCall {
    pub sip: UdpSocket,
    pub rtp: Arc<UdpSocket>,
    pub gw: SocketAddr,
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub ruri: String,
    /// Where GW2 wants our RTP (its answer's SDP).
    pub gw_media: Option<SocketAddr>,
    cseq: u32,
}

/// Counts of one call's RTP: what was sent, what came back, and the longest silence between
/// two packets that came back once the first had.
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaCount {
    pub sent: u64,
    pub received: u64,
    pub max_gap: Duration,
}

pub struct MediaRun {
    stop: Arc<AtomicBool>,
    /// Sent and received so far.
    progress: Arc<[AtomicU64; 2]>,
    thread: Option<JoinHandle<MediaCount>>,
}

impl MediaRun {
    /// (sent, received) so far.
    pub fn peek(&self) -> (u64, u64) {
        (
            self.progress[0].load(Ordering::Relaxed),
            self.progress[1].load(Ordering::Relaxed),
        )
    }

    pub fn stop(mut self) -> MediaCount {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for MediaRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl RawCall {
    /// Sends an INVITE (with a PCMA offer for our RTP socket) from a socket on `src_ip` to
    /// `ruri` via `gw`, and waits for the final response; ACKs it. Ok: answered (200); Err: the
    /// final status (0: none within `wait`) and the responses seen.
    pub fn invite(
        gw: SocketAddr,
        src_ip: &str,
        ruri: &str,
        display: &str,
        wait: Duration,
    ) -> Result<RawCall, (u16, String)> {
        Self::invite_announcing(gw, src_ip, ruri, display, wait, None)
    }

    /// [`RawCall::invite`] whose SDP announces `announce` instead of the RTP socket's address
    /// (a phone behind NAT writes its private address); the RTP is still sent from the socket.
    pub fn invite_announcing(
        gw: SocketAddr,
        src_ip: &str,
        ruri: &str,
        display: &str,
        wait: Duration,
        announce: Option<SocketAddr>,
    ) -> Result<RawCall, (u16, String)> {
        let sip = UdpSocket::bind((src_ip, 0)).unwrap();
        let rtp = UdpSocket::bind((src_ip, 0)).unwrap();
        let local = sip.local_addr().unwrap();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let call_id = format!("raw-{n}-{}@{}", std::process::id(), local.ip());
        let mut call = RawCall {
            from: format!("\"{display}\" <sip:caller@{}>;tag=rawf{n}", local.ip()),
            to: format!("<{ruri}>"),
            ruri: ruri.to_owned(),
            call_id,
            gw,
            gw_media: None,
            cseq: 1,
            rtp: Arc::new(rtp),
            sip,
        };
        let sdp = pcma_sdp(announce.unwrap_or(call.rtp.local_addr().unwrap()));
        let branch = format!("z9hG4bKraw{n}i");
        let inv = request(
            "INVITE",
            ruri,
            local,
            &call.call_id,
            &call.from,
            &call.to,
            1,
            &branch,
            "",
            Some(&sdp),
        );
        call.sip.send_to(inv.as_bytes(), gw).unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_535];
        let mut resent = Instant::now();
        let mut provisional = false;
        while Instant::now() < deadline {
            // INVITE retransmissions until a provisional response (RFC 3261 §17.1.1.2).
            if !provisional && resent.elapsed() > Duration::from_millis(500) {
                call.sip.send_to(inv.as_bytes(), gw).unwrap();
                resent = Instant::now();
            }
            call.sip
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let Ok((len, _)) = call.sip.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            let Some(code) = status(&text) else {
                continue;
            };
            if header(&text, "Call-ID") != Some(call.call_id.as_str()) {
                continue;
            }
            seen.push(code.to_string());
            if code < 200 {
                provisional = true;
                continue;
            }
            let to = header(&text, "To").unwrap_or("").to_owned();
            if code >= 300 {
                // ACK for a non-2xx response: same branch, the response's To (§17.1.1.3).
                let ack = request(
                    "ACK",
                    ruri,
                    local,
                    &call.call_id,
                    &call.from,
                    &to,
                    1,
                    &branch,
                    "",
                    None,
                );
                let _ = call.sip.send_to(ack.as_bytes(), gw);
                return Err((code, seen.join(" ")));
            }
            call.to = to;
            call.gw_media = sdp_audio(&text);
            call.send_in_dialog("ACK", 1);
            return Ok(call);
        }
        Err((0, seen.join(" ")))
    }

    fn send_in_dialog(&self, method: &str, cseq: u32) -> String {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let req = request(
            method,
            &self.ruri,
            self.sip.local_addr().unwrap(),
            &self.call_id,
            &self.from,
            &self.to,
            cseq,
            &format!("z9hG4bKraw{n}d"),
            "",
            None,
        );
        let _ = self.sip.send_to(req.as_bytes(), self.gw);
        req
    }

    /// Sends one digit as SIP INFO (`application/dtmf-relay`) in the dialog; the 200 is not
    /// waited for.
    pub fn info_digit(&mut self, digit: char) {
        self.cseq += 1;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        let req = request(
            "INFO",
            &self.ruri,
            self.sip.local_addr().unwrap(),
            &self.call_id,
            &self.from,
            &self.to,
            self.cseq,
            &format!("z9hG4bKraw{n}i"),
            "",
            Some(&body),
        )
        .replace("application/sdp", "application/dtmf-relay");
        let _ = self.sip.send_to(req.as_bytes(), self.gw);
    }

    /// Sends 20 ms PCMA to GW2's media address until stopped, counting what comes back.
    pub fn start_media(&self) -> MediaRun {
        let to = self.gw_media.expect("the answer had an audio address");
        let rtp = self.rtp.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let progress = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let p = progress.clone();
        let thread = std::thread::spawn(move || {
            rtp.set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            let mut c = MediaCount::default();
            let mut pkt = [0xd5u8; 172];
            let ssrc: u32 = 0x5347_0000 | (to.port() as u32);
            let start = Instant::now();
            let mut last_rx: Option<Instant> = None;
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let due = start + Duration::from_millis(20 * c.sent);
                if Instant::now() >= due {
                    let seq = c.sent as u16;
                    let ts = (c.sent as u32).wrapping_mul(160);
                    pkt[0] = 0x80;
                    pkt[1] = 8;
                    pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                    pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                    pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
                    let _ = rtp.send_to(&pkt, to);
                    c.sent += 1;
                    p[0].store(c.sent, Ordering::Relaxed);
                }
                if let Ok((n, _)) = rtp.recv_from(&mut buf) {
                    if n >= 12 && buf[0] >> 6 == 2 {
                        let now = Instant::now();
                        if let Some(l) = last_rx {
                            c.max_gap = c.max_gap.max(now - l);
                        }
                        last_rx = Some(now);
                        c.received += 1;
                        p[1].store(c.received, Ordering::Relaxed);
                    }
                }
            }
            // Silence up to the end counts too (all of it when nothing came back).
            c.max_gap = c.max_gap.max(last_rx.unwrap_or(start).elapsed());
            c
        });
        MediaRun {
            stop,
            progress,
            thread: Some(thread),
        }
    }

    /// Sends BYE and waits (bounded) for its 200; true when it came.
    pub fn hangup(&mut self, wait: Duration) -> bool {
        self.cseq += 1;
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_535];
        let mut last_send = None::<Instant>;
        while Instant::now() < deadline {
            if last_send.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
                self.send_in_dialog("BYE", self.cseq);
                last_send = Some(Instant::now());
            }
            self.sip
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let Ok((n, _)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            if status(&text) == Some(200)
                && header(&text, "CSeq").is_some_and(|c| c.ends_with("BYE"))
            {
                return true;
            }
        }
        false
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);
