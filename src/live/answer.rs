//! The built-in answering endpoint of `sgw run`'s demo: a tiny SIP UAS on the inside that
//! answers every INVITE with 180 and 200 (its SDP mirrors the offer's formats) and echoes every
//! RTP/RTCP packet back to where it came from. It stands in for an IP-PBX so the demo needs no
//! other software; it is not part of the gateway and never sees the outside.

use bytes::Bytes;
use codecs::sip::{self, MessageBuilder, Method, StartLine};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Dialogs remembered for retransmitted INVITEs; the oldest are forgotten beyond this.
const MAX_DIALOGS: usize = 4096;

/// A running answering endpoint; dropping it stops it.
#[derive(Debug)]
pub struct AnswerEndpoint {
    pub sip: SocketAddr,
    pub rtp: SocketAddr,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for AnswerEndpoint {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl AnswerEndpoint {
    /// Binds SIP and an RTP/RTCP echo pair on `ip` (ephemeral ports) and starts answering.
    pub fn start(ip: IpAddr) -> std::io::Result<Self> {
        let sip_sock = Arc::new(super::runtime::bind_udp(SocketAddr::new(ip, 0))?);
        let (rtp_sock, rtcp_sock) = bind_media_pair(ip)?;
        let sip = sip_sock.local_addr()?;
        let rtp = rtp_sock.local_addr()?;
        let sip_task = tokio::spawn(answer_loop(sip_sock, rtp));
        let echo_task = tokio::spawn(async move {
            tokio::join!(echo(rtp_sock), echo(rtcp_sock));
        });
        Ok(AnswerEndpoint {
            sip,
            rtp,
            tasks: [sip_task, echo_task],
        })
    }
}

/// An even RTP port and the RTCP port above it (RFC 3550 section 11).
fn bind_media_pair(ip: IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let mut last = None;
    for _ in 0..64 {
        let rtp = super::runtime::bind_udp(SocketAddr::new(ip, 0))?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        match super::runtime::bind_udp(SocketAddr::new(ip, port + 1)) {
            Ok(rtcp) => return Ok((rtp, rtcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free RTP/RTCP port pair")))
}

async fn echo(sock: UdpSocket) {
    let mut buf = vec![0u8; 65_535];
    loop {
        if let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.try_send_to(buf.get(..n).unwrap_or_default(), from);
        }
    }
}

async fn answer_loop(sock: Arc<UdpSocket>, rtp: SocketAddr) {
    let mut buf = vec![0u8; 65_535];
    let mut next_tag: u64 = 0x5e55_1000;
    // Call-ID -> (To tag, 200 OK) so a retransmitted INVITE gets the same answer.
    let mut dialogs: HashMap<String, (String, Bytes)> = HashMap::new();
    let mut order: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
        let Ok((msg, _)) = sip::parse_datagram(data) else {
            continue;
        };
        let StartLine::Request(req) = msg.start() else {
            continue;
        };
        let local = sock.local_addr().unwrap_or(rtp);
        let replies: Vec<Bytes> = match &req.method {
            Method::Ack => Vec::new(),
            Method::Invite => {
                let call_id = msg.call_id().unwrap_or("").to_owned();
                if let Some((_, ok)) = dialogs.get(&call_id) {
                    vec![ok.clone()]
                } else {
                    next_tag += 1;
                    let tag = format!("{next_tag:x}");
                    let sdp = answer_sdp(&msg.body(), rtp);
                    let contact = format!("<sip:answer@{}>", crate::engine::host_port(local));
                    let ringing = MessageBuilder::response_to(&msg, 180, Some(&tag))
                        .header("Contact", contact.clone())
                        .build();
                    let ok = MessageBuilder::response_to(&msg, 200, Some(&tag))
                        .header("Contact", contact)
                        .body("application/sdp", sdp)
                        .build();
                    if order.len() >= MAX_DIALOGS {
                        if let Some(old) = order.pop_front() {
                            dialogs.remove(&old);
                        }
                    }
                    order.push_back(call_id.clone());
                    dialogs.insert(call_id, (tag, ok.clone()));
                    vec![ringing, ok]
                }
            }
            Method::Bye => {
                if let Ok(id) = msg.call_id() {
                    dialogs.remove(id);
                }
                vec![MessageBuilder::response_to(&msg, 200, None).build()]
            }
            _ => vec![MessageBuilder::response_to(&msg, 200, Some("answer")).build()],
        };
        for r in replies {
            let _ = sock.send_to(&r, from).await;
        }
    }
}

/// An answer accepting the offer's first audio stream with all its formats, at `rtp`.
fn answer_sdp(offer: &[u8], rtp: SocketAddr) -> Bytes {
    let offer = String::from_utf8_lossy(offer);
    let mut formats = "0".to_owned();
    let mut attrs = Vec::new();
    let mut in_audio = false;
    let mut seen_audio = false;
    for line in offer.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = !seen_audio && m.starts_with("audio ");
            if in_audio {
                seen_audio = true;
                let f: Vec<&str> = m.split_whitespace().skip(3).collect();
                if !f.is_empty() {
                    formats = f.join(" ");
                }
            }
        } else if in_audio && (line.starts_with("a=rtpmap:") || line.starts_with("a=fmtp:")) {
            attrs.push(line.to_owned());
        }
    }
    let (fam, ip) = match rtp.ip() {
        IpAddr::V4(v4) => ("IP4", v4.to_string()),
        IpAddr::V6(v6) => ("IP6", v6.to_string()),
    };
    let mut s = format!(
        "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=sgw answer\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {formats}\r\n",
        rtp.port()
    );
    for a in attrs {
        s.push_str(&a);
        s.push_str("\r\n");
    }
    s.push_str("a=sendrecv\r\n");
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_mirrors_the_first_audio_stream() {
        let offer = b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\nm=video 7000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
        let sdp = answer_sdp(offer, "127.0.0.1:4000".parse().unwrap());
        let sdp = std::str::from_utf8(&sdp).unwrap();
        assert!(sdp.contains("m=audio 4000 RTP/AVP 8 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=fmtp:101 0-15"), "{sdp}");
        assert!(!sdp.contains("H264"), "{sdp}");
        assert!(sdp.contains("c=IN IP4 127.0.0.1"), "{sdp}");
    }
}
