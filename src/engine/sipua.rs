//! The SIP transaction layer shared by both halves (RFC 3261 section 17): server transactions
//! that absorb retransmitted requests and retransmit final responses over UDP, and client
//! transactions with timers A/B and E/F.

use super::{Flow, Out, Protocol, Side, Transmit};
use bytes::Bytes;
use codecs::meta::CallRef;
use codecs::sip::{Message, Method, StartLine};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// Timers B, F, H and J: 64*T1.
pub const TIMEOUT: Duration = Duration::from_secs(32);
/// How long a completed server transaction remembers its response for retransmissions.
pub const LINGER: Duration = Duration::from_secs(32);

/// Identifies a server transaction (RFC 3261 section 17.2.3), with ACK keyed as INVITE so a
/// non-2xx ACK finds its transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnKey {
    Branch {
        branch: String,
        sent_by: String,
        method: String,
    },
    /// RFC 2543 peers: no magic cookie.
    Legacy {
        call_id: String,
        cseq: u32,
        from_tag: String,
        uri: String,
        via: String,
        method: String,
    },
}

impl TxnKey {
    /// The key of `msg`, with `method` overriding the request method (e.g. INVITE for a CANCEL).
    pub fn of(msg: &Message, method: Option<&Method>) -> Option<TxnKey> {
        let StartLine::Request(req) = msg.start() else {
            return None;
        };
        let method = match method.unwrap_or(&req.method) {
            Method::Ack => "INVITE".to_owned(),
            m => m.to_string(),
        };
        let via = msg.vias().ok()?.into_iter().next()?;
        match via.branch() {
            Some(b) if b.starts_with("z9hG4bK") => Some(TxnKey::Branch {
                branch: b.to_owned(),
                sent_by: format!("{}:{}", via.host, via.port.unwrap_or(0)),
                method,
            }),
            _ => Some(TxnKey::Legacy {
                call_id: msg.call_id().ok()?.to_owned(),
                cseq: msg.cseq().ok()?.seq,
                from_tag: msg.from().ok()?.tag().unwrap_or("").to_owned(),
                uri: req.uri.clone(),
                via: via.raw,
                method,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Retransmit {
    pub next: Duration,
    pub interval: Duration,
    pub until: Duration,
}

impl Retransmit {
    pub fn start(now: Duration) -> Self {
        Retransmit {
            next: now + T1,
            interval: T1,
            until: now + TIMEOUT,
        }
    }

    /// Advances after a retransmission; `cap` is T2 for responses and non-INVITE requests.
    pub fn backoff(&mut self, cap: Option<Duration>) {
        self.interval = match cap {
            Some(cap) => (self.interval * 2).min(cap),
            None => self.interval * 2,
        };
        self.next += self.interval;
    }
}

#[derive(Debug)]
pub struct ServerTxn {
    pub side: Side,
    pub flow: Flow,
    pub request: Message,
    pub call: Option<CallRef>,
    pub last_response: Option<(u16, Bytes)>,
    pub retransmit: Option<Retransmit>,
    pub expires: Duration,
}

impl ServerTxn {
    pub fn is_final(&self) -> bool {
        self.last_response.as_ref().is_some_and(|(c, _)| *c >= 200)
    }

    pub fn status(&self) -> Option<u16> {
        self.last_response.as_ref().map(|(c, _)| *c)
    }
}

/// Server transactions of one half.
#[derive(Debug, Default)]
pub struct ServerTxns {
    map: HashMap<TxnKey, ServerTxn>,
}

impl ServerTxns {
    pub fn get(&self, key: &TxnKey) -> Option<&ServerTxn> {
        self.map.get(key)
    }

    pub fn insert(&mut self, key: TxnKey, txn: ServerTxn) {
        self.map.insert(key, txn);
    }

    /// Sends a response on a transaction and remembers it for retransmissions. Final INVITE
    /// responses over UDP are retransmitted until ACK (timer G, and the TU's 2xx rule).
    pub fn respond(&mut self, now: Duration, key: &TxnKey, code: u16, bytes: Bytes, out: &mut Out) {
        let Some(txn) = self.map.get_mut(key) else {
            return;
        };
        out.transmits.push_back(Transmit {
            side: txn.side,
            flow: txn.flow,
            protocol: Protocol::Sip,
            payload: bytes.clone(),
        });
        txn.last_response = Some((code, bytes));
        if code >= 200 {
            txn.expires = now + LINGER;
            let invite = txn.request.method() == Some(&Method::Invite);
            txn.retransmit =
                (invite && !txn.flow.transport.is_reliable()).then(|| Retransmit::start(now));
        }
    }

    /// Stops retransmitting the final response (an ACK arrived).
    pub fn acked(&mut self, key: &TxnKey) -> bool {
        match self.map.get_mut(key) {
            Some(txn) => {
                txn.retransmit = None;
                true
            }
            None => false,
        }
    }

    /// The pending (not yet final) INVITE transaction of a call.
    pub fn pending_invite(&self, call: CallRef) -> Option<TxnKey> {
        self.map
            .iter()
            .find(|(_, t)| {
                t.call == Some(call) && !t.is_final() && t.request.method() == Some(&Method::Invite)
            })
            .map(|(k, _)| k.clone())
    }

    /// Every INVITE transaction of a call that still retransmits a final response.
    pub fn stop_call_retransmits(&mut self, call: CallRef) {
        for t in self.map.values_mut() {
            if t.call == Some(call) {
                t.retransmit = None;
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Duration, out: &mut Out) {
        self.map.retain(|_, t| {
            if let Some(r) = &mut t.retransmit {
                if now >= r.until {
                    t.retransmit = None;
                } else if now >= r.next {
                    if let Some((_, bytes)) = &t.last_response {
                        out.transmits.push_back(Transmit {
                            side: t.side,
                            flow: t.flow,
                            protocol: Protocol::Sip,
                            payload: bytes.clone(),
                        });
                    }
                    r.backoff(Some(T2));
                }
            }
            !(t.is_final() && now >= t.expires && t.retransmit.is_none())
        });
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.map
            .values()
            .map(|t| match &t.retransmit {
                Some(r) => r.next.min(r.until),
                None if t.is_final() => t.expires,
                None => Duration::MAX,
            })
            .min()
            .filter(|d| *d != Duration::MAX)
    }
}

/// A request the gateway sent, waiting for its final response.
#[derive(Debug)]
pub struct ClientTxn {
    pub side: Side,
    pub flow: Flow,
    pub method: Method,
    pub call: CallRef,
    pub request: Bytes,
    pub retransmit: Option<Retransmit>,
    pub timeout: Duration,
    pub provisional: bool,
    pub final_status: Option<u16>,
}

/// Client transactions of one half, keyed by branch.
#[derive(Debug, Default)]
pub struct ClientTxns {
    map: HashMap<String, ClientTxn>,
}

impl ClientTxns {
    /// Sends a new request and starts its timers.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: Duration,
        side: Side,
        flow: Flow,
        branch: String,
        method: Method,
        call: CallRef,
        request: Bytes,
        out: &mut Out,
    ) {
        out.transmits.push_back(Transmit {
            side,
            flow,
            protocol: Protocol::Sip,
            payload: request.clone(),
        });
        if method == Method::Ack {
            return;
        }
        let retransmit = (!flow.transport.is_reliable()).then(|| Retransmit::start(now));
        self.map.insert(
            branch,
            ClientTxn {
                side,
                flow,
                method,
                call,
                request,
                retransmit,
                timeout: now + TIMEOUT,
                provisional: false,
                final_status: None,
            },
        );
    }

    /// Matches a response by its top Via branch and records it. Returns the transaction's
    /// method and call, and whether this is a retransmitted final response.
    pub fn on_response(&mut self, branch: &str, status: u16) -> Option<(Method, CallRef, bool)> {
        let t = self.map.get_mut(branch)?;
        let repeat = t.final_status.is_some() && status >= 200;
        if status < 200 {
            t.provisional = true;
            if t.method == Method::Invite {
                t.retransmit = None;
            }
        } else {
            t.final_status = Some(status);
            t.retransmit = None;
        }
        Some((t.method.clone(), t.call, repeat))
    }

    pub fn contains(&self, branch: &str) -> bool {
        self.map.contains_key(branch)
    }

    /// The branch of the most recent transaction of `call` with `method` (replay matching).
    pub fn find(&self, call: CallRef, method: &Method) -> Option<String> {
        self.map
            .iter()
            .filter(|(_, t)| t.call == call && t.method == *method)
            .max_by_key(|(_, t)| t.timeout)
            .map(|(b, _)| b.clone())
    }

    /// Fires timers; returns the calls whose requests timed out without a final response.
    pub fn handle_timeout(&mut self, now: Duration, out: &mut Out) -> Vec<(CallRef, Method)> {
        let mut timed_out = Vec::new();
        self.map.retain(|_, t| {
            if t.final_status.is_some() {
                return now < t.timeout;
            }
            if now >= t.timeout {
                timed_out.push((t.call, t.method.clone()));
                return false;
            }
            if let Some(r) = &mut t.retransmit {
                if now >= r.next {
                    out.transmits.push_back(Transmit {
                        side: t.side,
                        flow: t.flow,
                        protocol: Protocol::Sip,
                        payload: t.request.clone(),
                    });
                    let cap = (t.method != Method::Invite || t.provisional).then_some(T2);
                    r.backoff(cap);
                }
            }
            true
        });
        timed_out
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.map
            .values()
            .map(|t| match &t.retransmit {
                Some(r) => r.next.min(t.timeout),
                None => t.timeout,
            })
            .min()
    }
}

/// The host part as SIP writes it: IPv6 in brackets (RFC 3261 section 19.1.1).
pub fn host_of(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    }
}

/// `host:port` as SIP writes it (IPv6 in brackets): `SocketAddr`'s own display form.
pub fn host_port(a: SocketAddr) -> String {
    a.to_string()
}

/// A cheap test for a SIP start line, so RTP and other UDP traffic is not parsed as SIP.
pub fn looks_like_sip(data: &[u8]) -> bool {
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let head = data.get(start..).unwrap_or(&[]);
    if head.starts_with(b"SIP/") {
        return true;
    }
    let line_end = head
        .iter()
        .take(1024)
        .position(|&b| b == b'\n')
        .unwrap_or(head.len().min(1024));
    let line = head.get(..line_end).unwrap_or(&[]);
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    sp > 0
        && line
            .get(..sp)
            .is_some_and(|m| m.iter().all(|&b| codecs::sip::is_token_byte(b)))
        && line.windows(4).any(|w| w == b"SIP/")
}
