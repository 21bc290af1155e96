//! GW1's RAS client (H.225.0 clause 7.7 onwards, H.323 clause 7.2): GW1 registers to an inside
//! gatekeeper as a gateway (`[gw1.gatekeeper]`), keeps the registration alive, asks admission
//! for calls and unregisters when it stops.
//!
//! - **Discovery and registration.** With `discover`, a unicast GRQ goes to the gatekeeper
//!   first; its GCF names the gatekeeper (and its RAS address, when in the same family). Then a
//!   full RRQ: terminal type gateway (voice and H.323), GW1's inside call signalling address,
//!   its RAS address, its aliases (`h323_id`, `e164`), `keepAlive` FALSE and the `timeToLive`
//!   asked for. The RCF's endpoint identifier and `timeToLive` (the gatekeeper's value wins)
//!   are kept.
//! - **Keep-alive.** A lightweight RRQ (`keepAlive` TRUE, endpoint and gatekeeper identifiers)
//!   goes at two thirds of `timeToLive`, at least 1 s before the end (never earlier than half
//!   of it). An RCF without `timeToLive` never expires and needs none. An RRJ
//!   `fullRegistrationRequired` to a lightweight RRQ sends a full RRQ at once.
//! - **Retransmission.** A request with no answer is resent with the same sequence number after
//!   [`RAS_TIMEOUT`], [`RAS_RETRIES`] times (the recommended defaults of H.225.0 clause 7.7); a
//!   RequestInProgress (RIP) restarts the wait with its delay. A GRQ or RRQ whose tries all
//!   time out, or a GRJ or RRJ, loses the registration: the next attempt (discovery again with
//!   `discover`) waits for a backoff that doubles from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`],
//!   as GW2's SIP registration does.
//! - **Requests from the gatekeeper.** URQ is confirmed (UCF) and GW1 registers again at once;
//!   IRQ is answered with an IRR (with the admitted calls it asks about); DRQ for an admitted call is confirmed and reported (the
//!   gatekeeper drops the call); every other request gets an UnknownMessageResponse (XRS).
//! - **Calls.** [`RasClient::admit`] sends an ARQ and later yields [`RasEvent::Admitted`] or
//!   [`RasEvent::AdmissionRejected`] (ARJ reasons mapped to Q.850 causes; not registered, a
//!   full table or no answer are rejections too). [`RasClient::disengage`] sends the DRQ of an
//!   admitted call; a DCF, a DRJ or no answer all end it.
//! - **Unregistration.** [`RasClient::unregister`] sends a URQ; [`RasEvent::Unregistered`] comes
//!   with the UCF, a URJ, or when the tries run out. After it the client sends nothing more.
//!
//! Only datagrams from the gatekeeper's address are read; anything else is counted and
//! dropped, and replies are matched to requests by `requestSeqNum`. Sans-IO and bounded like
//! the rest of the engine: no I/O, no clock, no panic on input; at most [`MAX_PENDING`]
//! requests in flight and [`MAX_ADMITTED`] admitted calls.

use super::{Protocol, Report, Side, Summary, Verdict};
use bytes::Bytes;
use codecs::h225::{
    guid, guid_bytes, protocol_identifier, socket_to_transport, transport_to_socket,
};
use codecs::meta::{CallRef, Cause};
use h323_asn1::h225::{
    AdmissionRejectReason, AliasAddress, AnonymousInfoRequestResponsePerCallInfo, BandWidth,
    CallIdentifier, CallModel, CallReferenceValue, CallType, ConferenceIdentifier,
    DisengageConfirm, DisengageReason, DisengageReject, DisengageRejectReason, DisengageRequest,
    EndpointIdentifier, EndpointType, GatekeeperIdentifier, GatekeeperRejectReason,
    GatekeeperRequest, GatewayInfo, H221NonStandard, H323Caps, InfoRequestResponse,
    InfoRequestResponsePerCallInfo, RasMessage, RegistrationRejectReason, RegistrationRequest,
    RequestSeqNum, SupportedProtocols, TransportChannelInfo, UnknownMessageResponse,
    UnregistrationConfirm, UnregistrationRequest, VendorIdentifier, VoiceCaps,
};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a RAS request waits for its answer before it is resent (H.225.0 clause 7.7,
/// recommended default).
pub const RAS_TIMEOUT: Duration = Duration::from_secs(3);
/// Times a request is resent before it counts as unanswered (recommended default).
pub const RAS_RETRIES: u8 = 2;
/// The first wait after a failed registration.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait between registration attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The default `timeToLive` asked for in RRQ, seconds.
pub const DEFAULT_TIME_TO_LIVE: u32 = 300;
/// The longest RIP delay honoured (a gatekeeper cannot park a request for longer).
pub const MAX_RIP_DELAY: Duration = Duration::from_secs(30);
/// Requests in flight at once (ARQ and DRQ are per call); an ARQ past it is rejected.
pub const MAX_PENDING: usize = 4096;
/// Calls admitted and not yet disengaged.
pub const MAX_ADMITTED: usize = 100_000;
/// Events and reports queued for the driver; the oldest are dropped past it.
const MAX_QUEUE: usize = 8192;
/// Calls described in one IRR at most (a UDP datagram holds about a thousand).
const MAX_IRR_CALLS: usize = 256;
/// Bandwidth asked for in ARQ, in units of 100 bit/s: one G.711 call both ways.
const ARQ_BANDWIDTH: u32 = 1280;

/// The settings of `[gw1.gatekeeper]`, with GW1's addresses filled in by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RasConfig {
    /// The gatekeeper's RAS address: GRQ, or RRQ directly, go there.
    pub gatekeeper: SocketAddr,
    /// GRQ/GCF first.
    pub discover: bool,
    /// The gatekeeper identifier asked for (GRQ, RRQ); `None`: any.
    pub gatekeeper_id: Option<String>,
    /// GW1's H.323 identifier alias.
    pub h323_id: String,
    /// E.164 numbers or prefixes registered as `dialedDigits` aliases.
    pub e164: Vec<String>,
    /// `timeToLive` asked for, seconds.
    pub time_to_live: u32,
    /// GW1's RAS socket (the source of every request).
    pub ras_address: SocketAddr,
    /// GW1's inside H.225.0 call signalling address.
    pub call_signal_address: SocketAddr,
}

/// Where the registration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RasState {
    /// A GRQ is out.
    Discovering,
    /// A full RRQ is out.
    Registering,
    Registered,
    /// The last attempt failed (reject or no answer); the next one waits for the backoff.
    Failed,
    /// A URQ is out.
    Unregistering,
    /// Unregistered for good (GW1 is stopping): nothing more is sent.
    Unregistered,
}

/// The registration in `stats` (`ras`), `sgw ctl status` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RasStatus {
    pub state: RasState,
    pub gatekeeper: String,
    /// The gatekeeper identifier (configured, or from GCF/RCF).
    pub gatekeeper_id: Option<String>,
    /// The endpoint identifier the gatekeeper assigned (registered only).
    pub endpoint_id: Option<String>,
    /// The `timeToLive` the gatekeeper granted, seconds (`None`: no expiry).
    pub time_to_live: Option<u32>,
    /// Why the last attempt failed ("RRJ fullRegistrationRequired", "no answer to RRQ").
    pub last_failure: Option<String>,
    /// Requests sent (not counting retransmissions), and retransmissions.
    pub requests: u64,
    pub retransmissions: u64,
    /// Requests that got no answer after every retry.
    pub timeouts: u64,
    /// GRJ, RRJ, URJ, ARJ and DRJ received.
    pub rejects: u64,
    /// Full registrations confirmed, and keep-alives (lightweight RRQ) confirmed.
    pub registrations: u64,
    pub keepalives: u64,
    /// Admissions asked (ARQ), confirmed (ACF) and refused (ARJ, timeout, not registered).
    pub admissions: u64,
    pub admitted: u64,
    pub admission_rejects: u64,
    /// DRQ sent, and DRQ from the gatekeeper confirmed.
    pub disengages: u64,
    pub forced_disengages: u64,
    /// Requests from the gatekeeper answered (URQ, IRQ, and XRS to the others).
    pub gatekeeper_requests: u64,
    /// Datagrams from any other address, undecodable ones, and answers matching no request.
    pub foreign_dropped: u64,
    pub malformed: u64,
    pub unmatched: u64,
    /// Calls admitted and not yet disengaged.
    pub calls: u64,
}

/// An admission request for one call (sent as ARQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRequest {
    pub call: CallRef,
    /// GW1 answers the call (it came from outside) rather than places it.
    pub answer_call: bool,
    /// The Q.931 call reference value.
    pub call_ref: u16,
    pub call_identifier: [u8; 16],
    pub conference_id: [u8; 16],
    pub calling: Option<String>,
    pub called: Option<String>,
    /// The destination's call signalling address, when known.
    pub dest: Option<SocketAddr>,
}

/// What the client tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RasEvent {
    /// A full registration was confirmed.
    Registered { endpoint_id: String },
    /// The registration is gone (reject, no answer, URQ from the gatekeeper); the client is
    /// registering again.
    RegistrationLost { reason: String },
    /// ACF: the call may go on, to `dest` (the ACF's `destCallSignalAddress`) when given.
    Admitted {
        call: CallRef,
        dest: Option<SocketAddr>,
    },
    /// ARJ, no answer, or not registered: the call must be refused with `cause`.
    AdmissionRejected {
        call: CallRef,
        cause: Cause,
        reason: String,
    },
    /// The gatekeeper dropped an admitted call (DRQ from it, confirmed).
    DisengageRequested { call: CallRef },
    /// URQ confirmed, rejected, or unanswered: GW1 is no longer registered.
    Unregistered,
}

/// What a request in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Grq,
    Rrq { keep_alive: bool },
    Urq,
    Arq(CallRef),
    Drq(CallRef),
}

impl Kind {
    fn abbrev(self) -> &'static str {
        match self {
            Kind::Grq => "GRQ",
            Kind::Rrq { .. } => "RRQ",
            Kind::Urq => "URQ",
            Kind::Arq(_) => "ARQ",
            Kind::Drq(_) => "DRQ",
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    kind: Kind,
    bytes: Bytes,
    summary: String,
    /// Sends so far (1 + retransmissions).
    sent: u8,
    /// When it is resent, or given up.
    due: Duration,
}

/// A call admitted by the gatekeeper, for its DRQ.
#[derive(Debug, Clone)]
struct Admitted {
    call_ref: u16,
    call_identifier: [u8; 16],
    conference_id: [u8; 16],
    answer_call: bool,
}

/// GW1's RAS client (see the module docs).
#[derive(Debug)]
pub struct RasClient {
    cfg: RasConfig,
    state: RasState,
    /// Where requests go: the configured address, or GCF's `rasAddress`.
    target: SocketAddr,
    gatekeeper_id: Option<String>,
    endpoint_id: Option<String>,
    time_to_live: Option<u32>,
    /// When the next registration attempt (or keep-alive) goes.
    next_attempt: Option<Duration>,
    backoff: Duration,
    next_seq: u16,
    pending: HashMap<u16, Pending>,
    admitted: HashMap<CallRef, Admitted>,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<RasEvent>,
    /// Reports, and whether each is of a message sent.
    reports: VecDeque<(Report, bool)>,
    status: RasStatus,
}

impl RasClient {
    /// A client that starts discovery (or registration) at the first [`RasClient::handle_timeout`]
    /// at or after `now`.
    pub fn new(cfg: RasConfig, now: Duration) -> RasClient {
        let status = RasStatus {
            state: RasState::Failed,
            gatekeeper: cfg.gatekeeper.to_string(),
            gatekeeper_id: cfg.gatekeeper_id.clone(),
            endpoint_id: None,
            time_to_live: None,
            last_failure: None,
            requests: 0,
            retransmissions: 0,
            timeouts: 0,
            rejects: 0,
            registrations: 0,
            keepalives: 0,
            admissions: 0,
            admitted: 0,
            admission_rejects: 0,
            disengages: 0,
            forced_disengages: 0,
            gatekeeper_requests: 0,
            foreign_dropped: 0,
            malformed: 0,
            unmatched: 0,
            calls: 0,
        };
        RasClient {
            target: cfg.gatekeeper,
            gatekeeper_id: cfg.gatekeeper_id.clone(),
            state: if cfg.discover {
                RasState::Discovering
            } else {
                RasState::Registering
            },
            cfg,
            endpoint_id: None,
            time_to_live: None,
            next_attempt: Some(now),
            backoff: FIRST_BACKOFF,
            next_seq: 1,
            pending: HashMap::new(),
            admitted: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            reports: VecDeque::new(),
            status,
        }
    }

    pub fn state(&self) -> RasState {
        self.state
    }

    pub fn is_registered(&self) -> bool {
        self.state == RasState::Registered
    }

    /// The address datagrams are read on (GW1's RAS socket).
    pub fn local(&self) -> SocketAddr {
        self.cfg.ras_address
    }

    /// The state and counters.
    pub fn status(&self) -> RasStatus {
        let mut s = self.status.clone();
        s.state = self.state;
        s.gatekeeper_id.clone_from(&self.gatekeeper_id);
        s.endpoint_id.clone_from(&self.endpoint_id);
        s.time_to_live = self.time_to_live;
        s.calls = self.admitted.len() as u64;
        s
    }

    /// The next datagram to send: its destination and bytes (source: [`RasClient::local`]).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RasEvent> {
        self.events.pop_front()
    }

    /// The report of each RAS message sent or received, for the logs; true for one sent.
    pub fn poll_report(&mut self) -> Option<(Report, bool)> {
        self.reports.pop_front()
    }

    /// When [`RasClient::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let resend = self.pending.values().map(|p| p.due).min();
        match (resend, self.next_attempt) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Retransmissions, given-up requests, and the next registration attempt or keep-alive.
    pub fn handle_timeout(&mut self, now: Duration) {
        let mut due: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(s, _)| *s)
            .collect();
        due.sort_unstable();
        for seq in due {
            let Some(p) = self.pending.get_mut(&seq) else {
                continue;
            };
            if p.sent <= RAS_RETRIES {
                p.sent += 1;
                p.due = now + RAS_TIMEOUT;
                let (bytes, summary) = (p.bytes.clone(), p.summary.clone());
                self.status.retransmissions += 1;
                self.transmits.push_back((self.target, bytes));
                self.note(
                    format!("{summary} (retransmission)"),
                    Verdict::Accepted,
                    None,
                );
            } else if let Some(p) = self.pending.remove(&seq) {
                self.status.timeouts += 1;
                self.timed_out(now, p.kind);
            }
        }
        if self.next_attempt.is_some_and(|t| t <= now) {
            self.next_attempt = None;
            match self.state {
                RasState::Discovering => self.send_grq(now),
                RasState::Registering | RasState::Failed => {
                    if self.cfg.discover && self.state == RasState::Failed {
                        self.state = RasState::Discovering;
                        self.send_grq(now);
                    } else {
                        self.send_rrq(now, false);
                    }
                }
                RasState::Registered => self.send_rrq(now, true),
                RasState::Unregistering | RasState::Unregistered => {}
            }
        }
    }

    /// A datagram on the RAS socket from `from`.
    pub fn handle(&mut self, now: Duration, from: SocketAddr, data: &[u8]) {
        if from != self.target && from != self.cfg.gatekeeper {
            self.status.foreign_dropped += 1;
            self.note_in(
                format!("RAS datagram from {from}"),
                Verdict::Rejected,
                Some("not from the gatekeeper; dropped".to_owned()),
            );
            return;
        }
        let m = match h323_asn1::decode_ras(data) {
            Ok(m) => m,
            Err(e) => {
                self.status.malformed += 1;
                self.note_in(
                    "RasMessage".to_owned(),
                    Verdict::Rejected,
                    Some(format!("malformed: {e}")),
                );
                return;
            }
        };
        self.handle_message(now, m);
    }

    fn handle_message(&mut self, now: Duration, m: RasMessage) {
        use RasMessage as R;
        let (_, abbrev) = codecs::ras::message_name(&m);
        match m {
            R::gatekeeperConfirm(c) => {
                let Some(Kind::Grq) = self.take(c.request_seq_num.0, abbrev) else {
                    return;
                };
                if let Some(id) = &c.gatekeeper_identifier {
                    self.gatekeeper_id = Some(h323_asn1::bmp_to_string(&id.0));
                }
                // RRQ goes to the RAS address the GCF names, in our family.
                if let Some(a) = transport_to_socket(&c.ras_address).filter(|a| {
                    !a.ip().is_unspecified()
                        && a.port() != 0
                        && a.is_ipv4() == self.cfg.ras_address.is_ipv4()
                }) {
                    self.target = a;
                }
                self.state = RasState::Registering;
                self.send_rrq(now, false);
            }
            R::gatekeeperReject(r) => {
                let Some(Kind::Grq) = self.take(r.request_seq_num.0, abbrev) else {
                    return;
                };
                self.status.rejects += 1;
                let why = format!("GRJ {}", grj_reason(&r.reject_reason));
                self.failed(now, why);
            }
            R::registrationConfirm(c) => {
                let Some(Kind::Rrq { keep_alive }) = self.take(c.request_seq_num.0, abbrev) else {
                    return;
                };
                self.endpoint_id = Some(h323_asn1::bmp_to_string(&c.endpoint_identifier.0));
                if let Some(id) = &c.gatekeeper_identifier {
                    self.gatekeeper_id = Some(h323_asn1::bmp_to_string(&id.0));
                }
                self.time_to_live = c.time_to_live;
                self.backoff = FIRST_BACKOFF;
                let was = self.state;
                self.state = RasState::Registered;
                self.next_attempt = self.time_to_live.map(|ttl| now + refresh_after(ttl));
                if keep_alive {
                    self.status.keepalives += 1;
                } else {
                    self.status.registrations += 1;
                }
                if !keep_alive || was != RasState::Registered {
                    self.push_event(RasEvent::Registered {
                        endpoint_id: self.endpoint_id.clone().unwrap_or_default(),
                    });
                }
            }
            R::registrationReject(r) => {
                let Some(Kind::Rrq { keep_alive }) = self.take(r.request_seq_num.0, abbrev) else {
                    return;
                };
                self.status.rejects += 1;
                let why = format!("RRJ {}", rrj_reason(&r.reject_reason));
                if keep_alive
                    && matches!(
                        r.reject_reason,
                        RegistrationRejectReason::fullRegistrationRequired(())
                    )
                {
                    // The gatekeeper forgot us: a full registration at once.
                    self.status.last_failure = Some(why);
                    self.state = RasState::Registering;
                    self.send_rrq(now, false);
                    return;
                }
                if self.cfg.discover
                    && matches!(
                        r.reject_reason,
                        RegistrationRejectReason::discoveryRequired(())
                    )
                {
                    self.status.last_failure = Some(why.clone());
                    self.lose(why);
                    self.state = RasState::Discovering;
                    self.target = self.cfg.gatekeeper;
                    self.send_grq(now);
                    return;
                }
                self.failed(now, why);
            }
            R::unregistrationConfirm(c) => {
                if let Some(Kind::Urq) = self.take(c.request_seq_num.0, abbrev) {
                    self.unregistered();
                }
            }
            R::unregistrationReject(r) => {
                if let Some(Kind::Urq) = self.take(r.request_seq_num.0, abbrev) {
                    self.status.rejects += 1;
                    self.unregistered();
                }
            }
            R::admissionConfirm(c) => {
                let Some(Kind::Arq(call)) = self.take(c.request_seq_num.0, abbrev) else {
                    return;
                };
                self.status.admitted += 1;
                let dest = transport_to_socket(&c.dest_call_signal_address);
                self.push_event(RasEvent::Admitted { call, dest });
            }
            R::admissionReject(r) => {
                let Some(Kind::Arq(call)) = self.take(r.request_seq_num.0, abbrev) else {
                    return;
                };
                self.status.rejects += 1;
                self.admitted.remove(&call);
                let (cause, name) = arj_cause(&r.reject_reason);
                self.reject_admission(call, cause, format!("ARJ {name}"));
                if matches!(
                    r.reject_reason,
                    AdmissionRejectReason::callerNotRegistered(())
                        | AdmissionRejectReason::invalidEndpointIdentifier(())
                ) && self.state == RasState::Registered
                {
                    // The gatekeeper no longer knows us: register again at once.
                    self.lose(format!("ARJ {name}"));
                    self.state = RasState::Registering;
                    self.send_rrq(now, false);
                }
            }
            R::disengageConfirm(c) => {
                let _ = self.take(c.request_seq_num.0, abbrev);
            }
            R::disengageReject(r) => {
                if self.take(r.request_seq_num.0, abbrev).is_some() {
                    self.status.rejects += 1;
                }
            }
            R::requestInProgress(r) => {
                let seq = r.request_seq_num.0;
                let delay = Duration::from_millis(u64::from(r.delay)).min(MAX_RIP_DELAY);
                match self.pending.get_mut(&seq) {
                    Some(p) => {
                        p.due = now + delay.max(RAS_TIMEOUT);
                        self.note_in(
                            format!("RIP seq={seq} delay={}ms", r.delay),
                            Verdict::Accepted,
                            None,
                        );
                    }
                    None => self.unmatched(format!("RIP seq={seq}")),
                }
            }
            R::unknownMessageResponse(x) => {
                let seq = x.request_seq_num.0;
                // The gatekeeper does not know one of our requests: it ends as unanswered.
                match self.pending.remove(&seq) {
                    Some(p) => {
                        self.note_in(format!("XRS seq={seq}"), Verdict::Accepted, None);
                        self.timed_out(now, p.kind);
                    }
                    None => self.unmatched(format!("XRS seq={seq}")),
                }
            }
            R::unregistrationRequest(u) => {
                let seq = u.request_seq_num.0;
                self.status.gatekeeper_requests += 1;
                self.note_in(format!("URQ seq={seq}"), Verdict::Accepted, None);
                let ucf = RasMessage::unregistrationConfirm(UnregistrationConfirm::new(
                    RequestSeqNum(seq),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                ));
                self.send_answer(ucf, format!("UCF seq={seq}"));
                if matches!(self.state, RasState::Unregistering | RasState::Unregistered) {
                    return;
                }
                // Registered again at once (discovery first with `discover`).
                self.lose("URQ from the gatekeeper".to_owned());
                self.clear_registration_requests();
                self.backoff = FIRST_BACKOFF;
                self.next_attempt = None;
                self.target = self.cfg.gatekeeper;
                if self.cfg.discover {
                    self.state = RasState::Discovering;
                    self.send_grq(now);
                } else {
                    self.state = RasState::Registering;
                    self.send_rrq(now, false);
                }
            }
            R::infoRequest(q) => {
                let seq = q.request_seq_num.0;
                self.status.gatekeeper_requests += 1;
                self.note_in(format!("IRQ seq={seq}"), Verdict::Accepted, None);
                let Some(id) = self.endpoint_id.clone() else {
                    // Not registered: nothing to tell.
                    self.send_xrs(seq);
                    return;
                };
                // The calls asked about: one by its identifier or call reference, or all.
                let wanted = q.call_identifier.as_ref().map(|c| guid_bytes(&c.guid));
                let crv = q.call_reference_value.0 & 0x7FFF;
                let mut calls: Vec<&Admitted> = self
                    .admitted
                    .values()
                    .filter(|a| match wanted {
                        Some(id) => a.call_identifier == id,
                        None => crv == 0 || a.call_ref == crv,
                    })
                    .collect();
                calls.sort_by_key(|a| a.call_identifier);
                let per_call: Vec<AnonymousInfoRequestResponsePerCallInfo> = calls
                    .into_iter()
                    .take(MAX_IRR_CALLS)
                    .map(|a| self.per_call_info(a))
                    .collect();
                let irr = RasMessage::infoRequestResponse(InfoRequestResponse::new(
                    None,
                    RequestSeqNum(seq),
                    terminal_type(),
                    EndpointIdentifier(bmp(&id)),
                    socket_to_transport(self.cfg.ras_address),
                    vec![socket_to_transport(self.cfg.call_signal_address)],
                    Some(self.aliases()),
                    (!per_call.is_empty()).then_some(InfoRequestResponsePerCallInfo(per_call)),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                ));
                self.send_answer(irr, format!("IRR seq={seq}"));
            }
            R::disengageRequest(d) => {
                let seq = d.request_seq_num.0;
                self.status.gatekeeper_requests += 1;
                self.note_in(format!("DRQ seq={seq}"), Verdict::Accepted, None);
                let id = d.call_identifier.as_ref().map(|c| guid_bytes(&c.guid));
                let found = self
                    .admitted
                    .iter()
                    .find(|(_, a)| match id {
                        Some(id) => a.call_identifier == id,
                        None => a.call_ref == d.call_reference_value.0,
                    })
                    .map(|(c, _)| *c);
                match found {
                    Some(call) => {
                        self.admitted.remove(&call);
                        self.status.forced_disengages += 1;
                        let dcf = RasMessage::disengageConfirm(DisengageConfirm::new(
                            RequestSeqNum(seq),
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                        ));
                        self.send_answer(dcf, format!("DCF seq={seq}"));
                        self.push_event(RasEvent::DisengageRequested { call });
                    }
                    None => {
                        let drj = RasMessage::disengageReject(DisengageReject::new(
                            RequestSeqNum(seq),
                            DisengageRejectReason::requestToDropOther(()),
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                        ));
                        self.send_answer(drj, format!("DRJ seq={seq} (no such call)"));
                    }
                }
            }
            other => {
                let seq = request_seq(&other);
                let (name, abbrev) = codecs::ras::message_name(&other);
                match seq {
                    // A request we do not serve: UnknownMessageResponse.
                    Some(seq) if is_request(&other) => {
                        self.status.gatekeeper_requests += 1;
                        self.note_in(
                            format!("{abbrev} seq={seq}"),
                            Verdict::Ignored,
                            Some(format!("{name} not served; answered XRS")),
                        );
                        self.send_xrs(seq);
                    }
                    _ => self.unmatched(abbrev.to_owned()),
                }
            }
        }
    }

    /// Sends an ARQ for a call; the answer comes as an event. Not registered, or too many
    /// requests in flight, is a rejection at once.
    pub fn admit(&mut self, now: Duration, req: AdmissionRequest) {
        self.status.admissions += 1;
        let call = req.call;
        let Some(id) = self.endpoint_id.clone().filter(|_| self.is_registered()) else {
            self.reject_admission(
                call,
                Cause::TEMPORARY_FAILURE,
                "not registered to the gatekeeper".to_owned(),
            );
            return;
        };
        if self.pending.len() >= MAX_PENDING
            || (self.admitted.len() >= MAX_ADMITTED && !self.admitted.contains_key(&call))
        {
            self.reject_admission(
                call,
                Cause::RESOURCE_UNAVAILABLE,
                "too many admissions in flight".to_owned(),
            );
            return;
        }
        let Some(seq) = self.seq() else {
            self.reject_admission(
                call,
                Cause::RESOURCE_UNAVAILABLE,
                "no sequence number".to_owned(),
            );
            return;
        };
        let own = self.aliases();
        let src_info = match req.calling.as_deref().and_then(alias) {
            Some(a) => vec![a],
            None => own,
        };
        let arq = RasMessage::admissionRequest(build_arq(
            seq,
            &req,
            EndpointIdentifier(bmp(&id)),
            src_info,
            self.cfg.call_signal_address,
            self.gatekeeper_id.as_deref().map(bmp),
        ));
        self.admitted.insert(
            call,
            Admitted {
                call_ref: req.call_ref & 0x7FFF,
                call_identifier: req.call_identifier,
                conference_id: req.conference_id,
                answer_call: req.answer_call,
            },
        );
        let summary = format!(
            "ARQ seq={seq} call={} {}",
            call.0,
            if req.answer_call {
                "answer"
            } else {
                "originate"
            }
        );
        if !self.send_request(now, seq, Kind::Arq(call), &arq, summary) {
            self.admitted.remove(&call);
            self.reject_admission(
                call,
                Cause::TEMPORARY_FAILURE,
                "ARQ not encodable".to_owned(),
            );
        }
    }

    /// Sends the DRQ of an admitted call (nothing for a call never admitted, or when not
    /// registered).
    pub fn disengage(&mut self, now: Duration, call: CallRef, cause: Cause) {
        let Some(a) = self.admitted.remove(&call) else {
            return;
        };
        let Some(id) = self.endpoint_id.clone().filter(|_| self.is_registered()) else {
            return;
        };
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        let Some(seq) = self.seq() else {
            return;
        };
        let reason = if cause == Cause::NORMAL_CLEARING {
            DisengageReason::normalDrop(())
        } else {
            DisengageReason::undefinedReason(())
        };
        let drq = RasMessage::disengageRequest(DisengageRequest::new(
            RequestSeqNum(seq),
            EndpointIdentifier(bmp(&id)),
            ConferenceIdentifier(guid(a.conference_id)),
            CallReferenceValue(a.call_ref),
            reason,
            None,
            Some(CallIdentifier::new(guid(a.call_identifier))),
            self.gatekeeper_id.as_deref().map(bmp),
            None,
            None,
            None,
            Some(a.answer_call),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ));
        self.status.disengages += 1;
        let summary = format!("DRQ seq={seq} call={} cause={}", call.0, cause.0);
        self.send_request(now, seq, Kind::Drq(call), &drq, summary);
    }

    /// Unregisters (GW1 is stopping): a URQ when registered, and [`RasEvent::Unregistered`]
    /// when it is answered or unanswered; at once when not registered. Returns whether a URQ
    /// went out. Nothing is sent after it.
    pub fn unregister(&mut self, now: Duration) -> bool {
        if matches!(self.state, RasState::Unregistering | RasState::Unregistered) {
            return self.state == RasState::Unregistering;
        }
        let registered = self.is_registered();
        self.next_attempt = None;
        self.pending
            .retain(|_, p| !matches!(p.kind, Kind::Grq | Kind::Rrq { .. }));
        let id = self.endpoint_id.clone();
        let seq = self.seq();
        let (true, Some(seq)) = (registered, seq) else {
            self.unregistered();
            return false;
        };
        let urq = RasMessage::unregistrationRequest(UnregistrationRequest::new(
            RequestSeqNum(seq),
            vec![socket_to_transport(self.cfg.call_signal_address)],
            Some(self.aliases()),
            None,
            id.as_deref().map(|i| EndpointIdentifier(bmp(i))),
            None,
            self.gatekeeper_id.as_deref().map(bmp),
            None,
            None,
            None,
            Some(h323_asn1::h225::UnregRequestReason::maintenance(())),
            None,
            None,
            None,
            None,
            None,
        ));
        self.state = RasState::Unregistering;
        if self.send_request(now, seq, Kind::Urq, &urq, format!("URQ seq={seq}")) {
            true
        } else {
            self.unregistered();
            false
        }
    }

    /// Whether the client is done unregistering (or was never asked to).
    pub fn is_unregistered(&self) -> bool {
        self.state == RasState::Unregistered
    }

    // ---- requests ----

    fn send_grq(&mut self, now: Duration) {
        let Some(seq) = self.seq() else {
            return self.retry_later(now);
        };
        let grq = RasMessage::gatekeeperRequest(GatekeeperRequest::new(
            RequestSeqNum(seq),
            protocol_identifier(),
            None,
            socket_to_transport(self.cfg.ras_address),
            terminal_type(),
            self.cfg
                .gatekeeper_id
                .as_deref()
                .map(|g| GatekeeperIdentifier(bmp(g))),
            None,
            Some(self.aliases()),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ));
        if !self.send_request(now, seq, Kind::Grq, &grq, format!("GRQ seq={seq}")) {
            self.retry_later(now);
        }
    }

    fn send_rrq(&mut self, now: Duration, keep_alive: bool) {
        // One registration request at a time.
        self.pending
            .retain(|_, p| !matches!(p.kind, Kind::Rrq { .. }));
        let Some(seq) = self.seq() else {
            return self.retry_later(now);
        };
        let endpoint_id = if keep_alive {
            self.endpoint_id.as_deref().map(bmp)
        } else {
            None
        };
        let keep_alive = keep_alive && endpoint_id.is_some();
        let rrq = RasMessage::registrationRequest(RegistrationRequest::new(
            RequestSeqNum(seq),
            protocol_identifier(),
            None,
            // discoveryComplete: a GCF came before this RRQ.
            self.cfg.discover,
            vec![socket_to_transport(self.cfg.call_signal_address)],
            vec![socket_to_transport(self.cfg.ras_address)],
            terminal_type(),
            (!keep_alive).then(|| self.aliases()),
            self.gatekeeper_id
                .as_deref()
                .map(|g| GatekeeperIdentifier(bmp(g))),
            vendor(),
            None,
            Some(self.cfg.time_to_live),
            None,
            None,
            None,
            Some(keep_alive),
            endpoint_id,
            Some(false),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ));
        let summary = if keep_alive {
            format!("RRQ seq={seq} keepAlive")
        } else {
            format!("RRQ seq={seq} full")
        };
        if !self.send_request(now, seq, Kind::Rrq { keep_alive }, &rrq, summary) {
            self.retry_later(now);
        }
    }

    fn send_xrs(&mut self, seq: u16) {
        let xrs = RasMessage::unknownMessageResponse(UnknownMessageResponse::new(
            RequestSeqNum(seq),
            None,
            None,
            None,
            None,
        ));
        self.send_answer(xrs, format!("XRS seq={seq}"));
    }

    /// Encodes and sends a request, keeping it for retransmission. False when it cannot be
    /// encoded (an alias too long for its type, say).
    fn send_request(
        &mut self,
        now: Duration,
        seq: u16,
        kind: Kind,
        m: &RasMessage,
        summary: String,
    ) -> bool {
        let Ok(bytes) = h323_asn1::encode_ras(m) else {
            self.note(summary, Verdict::Rejected, Some("cannot encode".to_owned()));
            return false;
        };
        let bytes = Bytes::from(bytes);
        self.status.requests += 1;
        self.transmits.push_back((self.target, bytes.clone()));
        self.note(summary.clone(), Verdict::Accepted, None);
        self.pending.insert(
            seq,
            Pending {
                kind,
                bytes,
                summary,
                sent: 1,
                due: now + RAS_TIMEOUT,
            },
        );
        true
    }

    /// Sends an answer to a gatekeeper request (not retransmitted: the gatekeeper resends
    /// its request, and gets the answer again).
    fn send_answer(&mut self, m: RasMessage, summary: String) {
        match h323_asn1::encode_ras(&m) {
            Ok(bytes) => {
                self.transmits.push_back((self.target, Bytes::from(bytes)));
                self.note(summary, Verdict::Accepted, None);
            }
            Err(_) => self.note(summary, Verdict::Rejected, Some("cannot encode".to_owned())),
        }
    }

    /// A free sequence number (1..=65535, none in flight).
    fn seq(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let s = self.next_seq;
            self.next_seq = if s == u16::MAX { 1 } else { s + 1 };
            if s != 0 && !self.pending.contains_key(&s) {
                return Some(s);
            }
        }
        None
    }

    /// The request an answer is for; `None` (counted, reported) when none is in flight with
    /// its sequence number or it answers another kind of request.
    fn take(&mut self, seq: u16, abbrev: &str) -> Option<Kind> {
        let expected = match abbrev {
            "GCF" | "GRJ" => "GRQ",
            "RCF" | "RRJ" => "RRQ",
            "UCF" | "URJ" => "URQ",
            "ACF" | "ARJ" => "ARQ",
            "DCF" | "DRJ" => "DRQ",
            _ => "",
        };
        match self.pending.get(&seq) {
            Some(p) if p.kind.abbrev() == expected => {
                let kind = p.kind;
                self.pending.remove(&seq);
                self.note_in(format!("{abbrev} seq={seq}"), Verdict::Accepted, None);
                Some(kind)
            }
            _ => {
                self.unmatched(format!("{abbrev} seq={seq}"));
                None
            }
        }
    }

    fn unmatched(&mut self, summary: String) {
        self.status.unmatched += 1;
        self.note_in(
            summary,
            Verdict::Ignored,
            Some("answers no request in flight".to_owned()),
        );
    }

    fn timed_out(&mut self, now: Duration, kind: Kind) {
        match kind {
            Kind::Grq => self.failed(now, "no answer to GRQ".to_owned()),
            Kind::Rrq { .. } => self.failed(now, "no answer to RRQ".to_owned()),
            Kind::Urq => self.unregistered(),
            Kind::Arq(call) => {
                self.admitted.remove(&call);
                self.reject_admission(
                    call,
                    Cause::RECOVERY_ON_TIMER_EXPIRY,
                    "no answer to ARQ".to_owned(),
                );
            }
            Kind::Drq(_) => {}
        }
    }

    /// A registration attempt failed: retried after the backoff.
    fn failed(&mut self, now: Duration, why: String) {
        if matches!(self.state, RasState::Unregistering | RasState::Unregistered) {
            return;
        }
        self.lose(why.clone());
        self.status.last_failure = Some(why);
        self.state = RasState::Failed;
        self.target = self.cfg.gatekeeper;
        self.retry_later(now);
    }

    fn retry_later(&mut self, now: Duration) {
        self.next_attempt = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The registration is gone: an event when there was one.
    fn lose(&mut self, reason: String) {
        if self.state == RasState::Registered {
            self.push_event(RasEvent::RegistrationLost { reason });
        }
        self.endpoint_id = None;
        self.time_to_live = None;
    }

    fn clear_registration_requests(&mut self) {
        self.pending
            .retain(|_, p| !matches!(p.kind, Kind::Grq | Kind::Rrq { .. }));
    }

    fn unregistered(&mut self) {
        self.state = RasState::Unregistered;
        self.endpoint_id = None;
        self.time_to_live = None;
        self.next_attempt = None;
        self.pending.clear();
        self.push_event(RasEvent::Unregistered);
    }

    fn reject_admission(&mut self, call: CallRef, cause: Cause, reason: String) {
        self.status.admission_rejects += 1;
        self.push_event(RasEvent::AdmissionRejected {
            call,
            cause,
            reason,
        });
    }

    /// An admitted call in an IRR: its identifiers, and GW1's call signalling address.
    fn per_call_info(&self, a: &Admitted) -> AnonymousInfoRequestResponsePerCallInfo {
        let signalling = socket_to_transport(self.cfg.call_signal_address);
        AnonymousInfoRequestResponsePerCallInfo::new(
            None,
            CallReferenceValue(a.call_ref),
            ConferenceIdentifier(guid(a.conference_id)),
            Some(!a.answer_call),
            None,
            None,
            None,
            TransportChannelInfo::new(None, None),
            TransportChannelInfo::new(Some(signalling.clone()), Some(signalling)),
            CallType::pointToPoint(()),
            BandWidth(ARQ_BANDWIDTH),
            CallModel::direct(()),
            Some(CallIdentifier::new(guid(a.call_identifier))),
            None,
            None,
            Some(Vec::new()),
            None,
            None,
            None,
            None,
        )
    }

    fn aliases(&self) -> Vec<AliasAddress> {
        let mut v: Vec<AliasAddress> = Vec::new();
        if let Ok(b) = h323_asn1::bmp_string(&self.cfg.h323_id) {
            if !self.cfg.h323_id.is_empty() {
                v.push(AliasAddress::h323_ID(b));
            }
        }
        v.extend(self.cfg.e164.iter().filter_map(|n| dialed_digits(n)));
        v
    }

    fn push_event(&mut self, e: RasEvent) {
        if self.events.len() >= MAX_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Reports a message sent.
    fn note(&mut self, summary: String, verdict: Verdict, reason: Option<String>) {
        self.report(
            format!("sent {summary} to {}", self.target),
            verdict,
            reason,
            true,
        );
    }

    /// Reports a message received.
    fn note_in(&mut self, summary: String, verdict: Verdict, reason: Option<String>) {
        self.report(summary, verdict, reason, false);
    }

    fn report(&mut self, summary: String, verdict: Verdict, reason: Option<String>, sent: bool) {
        if self.reports.len() >= MAX_QUEUE {
            self.reports.pop_front();
        }
        let r = Report {
            protocol: Protocol::Ras,
            side: Side::Inside,
            summary: Summary::Text(summary),
            verdict,
            reason,
            response: None,
            call: None,
            rule: None,
        };
        self.reports.push_back((r, sent));
    }
}

/// When a keep-alive goes after an RCF granting `ttl` seconds: at two thirds, at least 1 s
/// before the end, never before half of it.
pub fn refresh_after(ttl: u32) -> Duration {
    let ttl = Duration::from_secs(u64::from(ttl));
    let two_thirds = ttl * 2 / 3;
    let before_end = ttl.saturating_sub(Duration::from_secs(1));
    two_thirds.min(before_end).max(ttl / 2)
}

/// A BMPString of at most 128 characters (identifiers' size), dropping what does not fit.
fn bmp(text: &str) -> h323_asn1::rasn::types::BmpString {
    let t: String = text
        .chars()
        .filter(|c| u32::from(*c) < 0xFFFE)
        .take(128)
        .collect();
    h323_asn1::bmp_string(&t).unwrap_or_default()
}

/// A `dialedDigits` alias: 1-128 of `0-9 # * ,` (a leading `+` dropped).
pub fn dialed_digits(n: &str) -> Option<AliasAddress> {
    let n = n.strip_prefix('+').unwrap_or(n);
    if n.is_empty()
        || n.len() > 128
        || !n
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'#' | b'*' | b','))
    {
        return None;
    }
    h323_asn1::rasn::types::Ia5String::from_iso646_bytes(n.as_bytes())
        .ok()
        .map(AliasAddress::dialedDigits)
}

/// A party as an alias: digits as `dialedDigits`, anything else as an H.323 identifier.
fn alias(party: &str) -> Option<AliasAddress> {
    dialed_digits(party).or_else(|| {
        (!party.is_empty() && !party.chars().any(char::is_control))
            .then(|| party.chars().take(256).collect::<String>())
            .and_then(|t| h323_asn1::bmp_string(&t).ok())
            .map(AliasAddress::h323_ID)
    })
}

fn vendor() -> VendorIdentifier {
    // Names no product or version, as codecs::h225::endpoint_type does.
    VendorIdentifier::new(H221NonStandard::new(0, 0, 0), None, None, None)
}

/// GW1 as an H.323 endpoint: a gateway for voice over H.323.
fn terminal_type() -> EndpointType {
    EndpointType::new(
        None,
        Some(vendor()),
        None,
        Some(GatewayInfo::new(
            Some(vec![
                SupportedProtocols::voice(VoiceCaps::new(None, None, None)),
                SupportedProtocols::h323(H323Caps::new(None, None, None)),
            ]),
            None,
        )),
        None,
        None,
        false,
        false,
        None,
        None,
    )
}

/// The ARQ of a call.
fn build_arq(
    seq: u16,
    req: &AdmissionRequest,
    endpoint_id: EndpointIdentifier,
    src_info: Vec<AliasAddress>,
    own: SocketAddr,
    gatekeeper_id: Option<h323_asn1::rasn::types::BmpString>,
) -> h323_asn1::h225::AdmissionRequest {
    {
        let destination = req.called.as_deref().and_then(alias).map(|a| vec![a]);
        // The side that places the call names where it goes; the answering side is the
        // destination itself.
        let (src_addr, dest_addr) = if req.answer_call {
            (req.dest, Some(own))
        } else {
            (Some(own), req.dest)
        };
        h323_asn1::h225::AdmissionRequest::new(
            RequestSeqNum(seq),
            CallType::pointToPoint(()),
            Some(CallModel::direct(())),
            endpoint_id,
            destination,
            dest_addr.map(socket_to_transport),
            None,
            src_info,
            src_addr.map(socket_to_transport),
            BandWidth(ARQ_BANDWIDTH),
            CallReferenceValue(req.call_ref & 0x7FFF),
            None,
            None,
            ConferenceIdentifier(guid(req.conference_id)),
            false,
            req.answer_call,
            Some(true),
            Some(CallIdentifier::new(guid(req.call_identifier))),
            None,
            None,
            gatekeeper_id,
            None,
            None,
            None,
            None,
            Some(false),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
    }
}

/// The Q.850 cause a call refused by ARJ is released with, and the reason's name.
pub fn arj_cause(r: &AdmissionRejectReason) -> (Cause, &'static str) {
    use AdmissionRejectReason as A;
    match r {
        A::calledPartyNotRegistered(()) => (Cause(20), "calledPartyNotRegistered"),
        A::invalidPermission(()) => (Cause::CALL_REJECTED, "invalidPermission"),
        A::requestDenied(()) => (Cause::NO_CIRCUIT_AVAILABLE, "requestDenied"),
        A::undefinedReason(()) => (Cause::NORMAL_UNSPECIFIED, "undefinedReason"),
        A::callerNotRegistered(()) => (Cause::TEMPORARY_FAILURE, "callerNotRegistered"),
        A::routeCallToGatekeeper(()) => (Cause::SERVICE_NOT_AVAILABLE, "routeCallToGatekeeper"),
        A::invalidEndpointIdentifier(()) => (Cause::TEMPORARY_FAILURE, "invalidEndpointIdentifier"),
        A::resourceUnavailable(()) => (Cause::RESOURCE_UNAVAILABLE, "resourceUnavailable"),
        A::securityDenial(()) => (Cause::CALL_REJECTED, "securityDenial"),
        A::qosControlNotSupported(()) => (Cause::SERVICE_NOT_AVAILABLE, "qosControlNotSupported"),
        A::incompleteAddress(()) => (Cause::INVALID_NUMBER_FORMAT, "incompleteAddress"),
        A::aliasesInconsistent(()) => (Cause::INVALID_NUMBER_FORMAT, "aliasesInconsistent"),
        A::routeCallToSCN(_) => (Cause::NO_ROUTE_TO_DESTINATION, "routeCallToSCN"),
        A::exceedsCallCapacity(()) => (Cause::NO_CIRCUIT_AVAILABLE, "exceedsCallCapacity"),
        A::collectDestination(()) => (Cause::INVALID_NUMBER_FORMAT, "collectDestination"),
        A::collectPIN(()) => (Cause::CALL_REJECTED, "collectPIN"),
        A::genericDataReason(()) => (Cause::NORMAL_UNSPECIFIED, "genericDataReason"),
        A::neededFeatureNotSupported(()) => {
            (Cause::SERVICE_NOT_IMPLEMENTED, "neededFeatureNotSupported")
        }
        A::securityError(_) => (Cause::CALL_REJECTED, "securityError"),
        A::securityDHmismatch(()) => (Cause::CALL_REJECTED, "securityDHmismatch"),
        A::noRouteToDestination(()) => (Cause::NO_ROUTE_TO_DESTINATION, "noRouteToDestination"),
        A::unallocatedNumber(()) => (Cause::UNALLOCATED_NUMBER, "unallocatedNumber"),
        A::registerWithAssignedGK(()) => (Cause::TEMPORARY_FAILURE, "registerWithAssignedGK"),
        #[allow(unreachable_patterns)]
        _ => (Cause::NORMAL_UNSPECIFIED, "unknown reason"),
    }
}

fn grj_reason(r: &GatekeeperRejectReason) -> &'static str {
    use GatekeeperRejectReason as G;
    match r {
        G::resourceUnavailable(()) => "resourceUnavailable",
        G::terminalExcluded(()) => "terminalExcluded",
        G::invalidRevision(()) => "invalidRevision",
        G::undefinedReason(()) => "undefinedReason",
        G::securityDenial(()) => "securityDenial",
        G::genericDataReason(()) => "genericDataReason",
        G::neededFeatureNotSupported(()) => "neededFeatureNotSupported",
        G::securityError(_) => "securityError",
        #[allow(unreachable_patterns)]
        _ => "unknown reason",
    }
}

/// The name of an RRJ reason.
pub fn rrj_reason(r: &RegistrationRejectReason) -> &'static str {
    use RegistrationRejectReason as R;
    match r {
        R::discoveryRequired(()) => "discoveryRequired",
        R::invalidRevision(()) => "invalidRevision",
        R::invalidCallSignalAddress(()) => "invalidCallSignalAddress",
        R::invalidRASAddress(()) => "invalidRASAddress",
        R::duplicateAlias(_) => "duplicateAlias",
        R::invalidTerminalType(()) => "invalidTerminalType",
        R::undefinedReason(()) => "undefinedReason",
        R::transportNotSupported(()) => "transportNotSupported",
        R::transportQOSNotSupported(()) => "transportQOSNotSupported",
        R::resourceUnavailable(()) => "resourceUnavailable",
        R::invalidAlias(()) => "invalidAlias",
        R::securityDenial(()) => "securityDenial",
        R::fullRegistrationRequired(()) => "fullRegistrationRequired",
        R::additiveRegistrationNotSupported(()) => "additiveRegistrationNotSupported",
        R::invalidTerminalAliases(_) => "invalidTerminalAliases",
        R::genericDataReason(()) => "genericDataReason",
        R::neededFeatureNotSupported(()) => "neededFeatureNotSupported",
        R::securityError(_) => "securityError",
        R::registerWithAssignedGK(()) => "registerWithAssignedGK",
        #[allow(unreachable_patterns)]
        _ => "unknown reason",
    }
}

/// Whether a message is a request a gatekeeper may send an endpoint, to be answered.
fn is_request(m: &RasMessage) -> bool {
    use RasMessage as R;
    matches!(
        m,
        R::gatekeeperRequest(_)
            | R::registrationRequest(_)
            | R::admissionRequest(_)
            | R::bandwidthRequest(_)
            | R::locationRequest(_)
            | R::resourcesAvailableIndicate(_)
            | R::serviceControlIndication(_)
    )
}

/// The `requestSeqNum` of the requests [`is_request`] names.
fn request_seq(m: &RasMessage) -> Option<u16> {
    use RasMessage as R;
    Some(match m {
        R::gatekeeperRequest(r) => r.request_seq_num.0,
        R::registrationRequest(r) => r.request_seq_num.0,
        R::admissionRequest(r) => r.request_seq_num.0,
        R::bandwidthRequest(r) => r.request_seq_num.0,
        R::locationRequest(r) => r.request_seq_num.0,
        R::resourcesAvailableIndicate(r) => r.request_seq_num.0,
        R::serviceControlIndication(r) => r.request_seq_num.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
