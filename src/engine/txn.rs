//! The SIP transaction layer (RFC 3261 section 17), used by both sides: server transactions that
//! absorb retransmitted requests and retransmit final INVITE responses over UDP until the ACK,
//! and client transactions with timers A/B and E/F. All timers live in one ordered structure
//! per table ([`Timers`]).
//!
//! Both tables are bounded. A request that finds the server table full is answered without
//! keeping state (its retransmissions are answered again, not absorbed), and counted.

use super::timers::Timers;
use super::{shrink_when_sparse, Flow, Out, Protocol, Side, Transmit};
use bytes::Bytes;
use codecs::meta::CallRef;
use codecs::sip::{Message, Method, StartLine};
use std::collections::HashMap;
use std::time::Duration;

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// Timer I: how long an INVITE server transaction absorbs ACK retransmissions (T4).
pub const T4: Duration = Duration::from_secs(5);
/// Timers B, F, H and J: 64*T1.
pub const TIMEOUT: Duration = Duration::from_secs(32);
/// Most server transactions kept at once; beyond it requests are answered statelessly.
pub const MAX_SERVER_TXNS: usize = 50_000;
/// Of those, most that only remember a rejection: a flood of refused requests never takes the
/// room of calls (beyond it, rejections are answered statelessly).
pub const MAX_REJECTED_TXNS: usize = 8_192;
/// Most client transactions at once; the gateway creates them, one or two per call.
pub const MAX_CLIENT_TXNS: usize = 100_000;

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
        let via = msg.vias().ok()?.first()?;
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
                via: via.raw.clone(),
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
    pub call: Option<CallRef>,
    invite: bool,
    /// Only remembers a rejection (counted against [`MAX_REJECTED_TXNS`]).
    rejected: bool,
    /// An INVITE whose final answer is still to come: kept to build the responses. Dropped at
    /// the final response; a rejected request never keeps it.
    request: Option<Message>,
    last: Option<(u16, Bytes)>,
    retransmit: Option<Retransmit>,
    /// When the transaction goes (after its final response).
    expires: Option<Duration>,
    /// A 2xx to an INVITE not acknowledged by then ends the dialog (RFC 3261 section 13.3.1.4).
    ack_deadline: Option<Duration>,
}

impl ServerTxn {
    /// A new transaction for a request arriving on `flow`; `keep` keeps the request (an INVITE
    /// the gateway will answer later).
    pub fn new(side: Side, flow: Flow, msg: &Message, call: Option<CallRef>, keep: bool) -> Self {
        ServerTxn {
            side,
            flow,
            call,
            invite: msg.method() == Some(&Method::Invite),
            rejected: false,
            request: keep.then(|| msg.clone()),
            last: None,
            retransmit: None,
            expires: None,
            ack_deadline: None,
        }
    }

    /// The transaction only answers a rejection.
    pub fn rejection(mut self) -> Self {
        self.rejected = true;
        self
    }

    pub fn is_final(&self) -> bool {
        self.status().is_some_and(|c| c >= 200)
    }

    pub fn status(&self) -> Option<u16> {
        self.last.as_ref().map(|(c, _)| *c)
    }

    fn deadline(&self) -> Option<Duration> {
        [
            self.retransmit.map(|r| r.next.min(r.until)),
            self.expires,
            self.ack_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Counters of the transaction layer, shown in `stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TxnCounters {
    pub server_txns: u64,
    /// Requests answered without state because the server table was full.
    pub server_txn_table_full: u64,
    pub client_txns: u64,
    /// Requests sent without a transaction because the client table was full.
    pub client_txn_table_full: u64,
    pub client_timeouts: u64,
    /// 2xx responses never acknowledged: the dialog was ended with a BYE.
    pub unacked_2xx: u64,
    /// Responses to the gateway's requests that came from elsewhere than where the request
    /// went (or on another connection): dropped.
    pub responses_wrong_source: u64,
    /// Requests in a dialog (and CANCELs) from elsewhere than the dialog's peer: refused.
    pub requests_wrong_source: u64,
}

/// Server transactions of one side.
#[derive(Debug, Default)]
pub struct ServerTxns {
    /// Boxed: a map keeps the slots of its largest size, and a slot holds only a pointer
    /// (issue 11, memory per call). Keys are the peers' text: seeded per process (foldhash's
    /// quality hasher, cheaper than SipHash).
    map: HashMap<TxnKey, Box<ServerTxn>, foldhash::quality::RandomState>,
    timers: Timers<TxnKey>,
    /// Transactions in `map` that only remember a rejection.
    rejected: usize,
}

impl ServerTxns {
    pub fn get(&self, key: &TxnKey) -> Option<&ServerTxn> {
        self.map.get(key).map(Box::as_ref)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Adds a transaction; `false` when the table is full (answer statelessly).
    pub fn insert(&mut self, key: TxnKey, txn: ServerTxn, counters: &mut TxnCounters) -> bool {
        let full = if txn.rejected {
            self.rejected >= MAX_REJECTED_TXNS
        } else {
            self.map.len() >= MAX_SERVER_TXNS
        };
        if full && !self.map.contains_key(&key) {
            counters.server_txn_table_full += 1;
            return false;
        }
        counters.server_txns += 1;
        self.rejected += usize::from(txn.rejected);
        if let Some(old) = self.map.insert(key, Box::new(txn)) {
            self.rejected -= usize::from(old.rejected);
        }
        true
    }

    /// Drops a transaction still waiting for its final answer (its call is gone); one with a
    /// final response ends by its own timers.
    pub fn forget_unanswered(&mut self, key: &TxnKey) {
        if self.map.get(key).is_some_and(|t| !t.is_final()) {
            self.remove(key);
        }
    }

    fn remove(&mut self, key: &TxnKey) {
        if let Some(t) = self.map.remove(key) {
            self.rejected -= usize::from(t.rejected);
            shrink_when_sparse(&mut self.map);
        }
    }

    /// The last response sent on a transaction (for a retransmitted request).
    pub fn last_response(&self, key: &TxnKey) -> Option<Bytes> {
        self.map
            .get(key)
            .and_then(|t| t.last.as_ref().map(|(_, b)| b.clone()))
    }

    /// The request kept by an INVITE transaction still waiting for its final answer.
    pub fn request(&self, key: &TxnKey) -> Option<&Message> {
        self.map.get(key).and_then(|t| t.request.as_ref())
    }

    /// Sends a response on a transaction and remembers it for retransmissions. A final INVITE
    /// response over UDP is retransmitted until the ACK (timer G); any final response ends the
    /// transaction after its linger.
    pub fn respond(&mut self, now: Duration, key: &TxnKey, code: u16, bytes: Bytes, out: &mut Out) {
        let Some(txn) = self.map.get_mut(key) else {
            return;
        };
        if txn.is_final() {
            return;
        }
        out.transmits.push_back(Transmit {
            side: txn.side,
            flow: txn.flow,
            protocol: Protocol::Sip,
            payload: bytes.clone(),
        });
        txn.last = Some((code, bytes));
        if code < 200 {
            return;
        }
        txn.request = None;
        let reliable = txn.flow.transport.is_reliable();
        if txn.invite {
            // Timer G over UDP; timer H (or the 2xx ACK wait) on every transport.
            txn.retransmit = (!reliable).then(|| Retransmit::start(now));
            if (200..300).contains(&code) {
                txn.ack_deadline = Some(now + TIMEOUT);
            } else {
                txn.expires = Some(now + TIMEOUT);
            }
        } else {
            // Timer J: absorb retransmissions over UDP; nothing to absorb over TCP.
            txn.expires = Some(if reliable { now } else { now + TIMEOUT });
        }
        if let Some(d) = txn.deadline() {
            self.timers.set(d, key.clone());
        }
    }

    /// The ACK arrived: retransmissions stop; the transaction absorbs ACK retransmissions for
    /// T4 (timer I), then goes.
    pub fn acked(&mut self, now: Duration, key: &TxnKey) -> bool {
        let Some(txn) = self.map.get_mut(key) else {
            return false;
        };
        txn.retransmit = None;
        txn.ack_deadline = None;
        let t4 = if txn.flow.transport.is_reliable() {
            Duration::ZERO
        } else {
            T4
        };
        txn.expires = Some(now + t4);
        self.timers.set(now + t4, key.clone());
        true
    }

    /// Fires due timers; returns the calls whose 2xx was never acknowledged.
    pub fn handle_timeout(&mut self, now: Duration, out: &mut Out) -> Vec<CallRef> {
        let mut unacked = Vec::new();
        while let Some((_, key)) = self.timers.pop_due(now) {
            let Some(t) = self.map.get_mut(&key) else {
                continue;
            };
            if let Some(r) = &mut t.retransmit {
                if now >= r.until {
                    t.retransmit = None;
                } else if now >= r.next {
                    if let Some((_, bytes)) = &t.last {
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
            if t.ack_deadline.is_some_and(|d| now >= d) {
                t.ack_deadline = None;
                t.retransmit = None;
                unacked.extend(t.call);
                t.expires = Some(now);
            }
            if t.expires.is_some_and(|e| now >= e) && t.retransmit.is_none() {
                self.remove(&key);
                continue;
            }
            if let Some(d) = t.deadline() {
                self.timers.set(d, key);
            }
        }
        unacked
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.next()
    }
}

/// A request the gateway sent, waiting for its final response.
#[derive(Debug)]
pub struct ClientTxn {
    pub side: Side,
    pub flow: Flow,
    pub method: Method,
    pub call: CallRef,
    request: Bytes,
    retransmit: Option<Retransmit>,
    timeout: Duration,
    provisional: bool,
    final_status: Option<u16>,
}

/// What a response did to its client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub method: Method,
    pub call: CallRef,
    /// A final response seen before (a retransmission).
    pub repeat: bool,
}

/// Client transactions of one side, keyed by branch.
#[derive(Debug, Default)]
pub struct ClientTxns {
    /// Boxed and hashed as [`ServerTxns`]' map.
    map: HashMap<String, Box<ClientTxn>, foldhash::quality::RandomState>,
    timers: Timers<String>,
}

impl ClientTxns {
    /// Sends a new request and starts its timers. ACK has no transaction: it is only sent.
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
        counters: &mut TxnCounters,
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
        if self.map.len() >= MAX_CLIENT_TXNS {
            counters.client_txn_table_full += 1;
            return;
        }
        counters.client_txns += 1;
        let retransmit = (!flow.transport.is_reliable()).then(|| Retransmit::start(now));
        let timeout = now + TIMEOUT;
        self.timers
            .set(retransmit.map_or(timeout, |r| r.next), branch.clone());
        self.map.insert(
            branch,
            Box::new(ClientTxn {
                side,
                flow,
                method,
                call,
                request,
                retransmit,
                timeout,
                provisional: false,
                final_status: None,
            }),
        );
    }

    /// Matches a response by its top Via branch and records it.
    pub fn on_response(&mut self, branch: &str, status: u16) -> Option<Matched> {
        let t = self.map.get_mut(branch)?;
        let repeat = t.final_status.is_some() && status >= 200;
        if status < 200 {
            t.provisional = true;
            if t.method == Method::Invite {
                // Timer A stops at a provisional response (RFC 3261 section 17.1.1.2).
                t.retransmit = None;
            }
        } else {
            t.final_status = Some(status);
            t.retransmit = None;
            // Never sent again: only the branch is kept, to absorb retransmitted finals.
            t.request = Bytes::new();
        }
        Some(Matched {
            method: t.method.clone(),
            call: t.call,
            repeat,
        })
    }

    pub fn contains(&self, branch: &str) -> bool {
        self.map.contains_key(branch)
    }

    /// The call of the request with this branch.
    pub fn call_of(&self, branch: &str) -> Option<CallRef> {
        self.map.get(branch).map(|t| t.call)
    }

    /// The flow the request with this branch went out on.
    pub fn sent_on(&self, branch: &str) -> Option<Flow> {
        self.map.get(branch).map(|t| t.flow)
    }

    /// Fires timers; returns the transactions that timed out without a final response. An
    /// INVITE with a provisional response waits for the leg's own no-answer timer.
    pub fn handle_timeout(
        &mut self,
        now: Duration,
        out: &mut Out,
        counters: &mut TxnCounters,
    ) -> Vec<(CallRef, Method)> {
        let mut timed_out = Vec::new();
        while let Some((_, branch)) = self.timers.pop_due(now) {
            let Some(t) = self.map.get_mut(&branch) else {
                continue;
            };
            if now >= t.timeout {
                let waiting_invite =
                    t.method == Method::Invite && t.provisional && t.final_status.is_none();
                if !waiting_invite {
                    if t.final_status.is_none() {
                        counters.client_timeouts += 1;
                        timed_out.push((t.call, t.method.clone()));
                    }
                    self.map.remove(&branch);
                    shrink_when_sparse(&mut self.map);
                    continue;
                }
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
            let next = match (&t.retransmit, now >= t.timeout) {
                (Some(r), _) => r.next.min(t.timeout),
                // A proceeding INVITE: checked again at the leg's no-answer time.
                (None, true) => now + TIMEOUT,
                (None, false) => t.timeout,
            };
            self.timers.set(next, branch);
        }
        timed_out
    }

    /// Forgets the transactions of a call (it is gone).
    pub fn remove(&mut self, branch: &str) {
        self.map.remove(branch);
        shrink_when_sparse(&mut self.map);
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.next()
    }
}
