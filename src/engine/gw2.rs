//! GW2, the outside half: terminates SIP from the Internet (a back-to-back user agent, never a
//! proxy), filters every request through the policy, keeps the outside dialog and media state,
//! and speaks Meta to GW1.

use super::ids::Ids;
use super::media::media_summary;
use super::media::{MediaStream, PortPool};
use super::policy::{self, Rejection, SipPolicy};
use super::sipua::{host_of, host_port, looks_like_sip, ClientTxns, ServerTxn, ServerTxns, TxnKey};
use super::{
    CallRecord, EngineConfig, Event, Flow, MediaCounters, Out, Protocol, Report, Side, Summary,
    Transmit, Verdict,
};
use bytes::Bytes;
use codecs::meta::{self, CallRef, Cause, MediaDescription, StreamId};
use codecs::sip::{self, HeaderName, Message, MessageBuilder, Method, SipError, StartLine};
use rustc_hash::FxHashMap;
// Maps keyed by what outside peers choose (Call-ID, addresses) keep the default SipHash
// against hash flooding; maps keyed by the gateway's own identifiers use FxHash.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use translators::sip as tsip;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Early,
    Confirmed,
    Ended,
}

/// One outside call (the caller's dialog with GW2).
#[derive(Debug)]
struct OutCall {
    flow: Flow,
    call_id: String,
    remote_tag: String,
    local_tag: String,
    /// From and To header values of the caller's INVITE, for our in-dialog requests.
    remote_uri: String,
    local_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    remote_cseq: u32,
    local_cseq: u32,
    invite_key: TxnKey,
    reinvite_key: Option<TxnKey>,
    state: CallState,
    streams: Vec<MediaStream>,
    offer: Vec<MediaDescription>,
    sdp_id: u64,
    sdp_version: u64,
    /// Replay: where the caller sent its INVITE (the party standing in for the inside).
    answering: SocketAddr,
    /// Every key this call put into `media_by_remote`.
    remote_keys: Vec<SocketAddr>,
    calling: String,
    called: String,
    emergency: bool,
    setup_at: Duration,
    answered_at: Option<Duration>,
    ended_at: Option<Duration>,
    /// Calls from the inside: GW2 is the UAC; the branch of its INVITE.
    uac_branch: Option<String>,
}

pub struct Gw2 {
    policy: SipPolicy,
    outside_sip: Option<SocketAddr>,
    outside_next_hop: Option<SocketAddr>,
    replay: bool,
    max_calls: usize,
    emergency: Vec<String>,
    ids: Ids,
    next_call: u32,
    next_stream: u16,
    ports: PortPool,
    calls: FxHashMap<CallRef, OutCall>,
    by_call_id: HashMap<String, CallRef>,
    /// Media by GW2's own port and, for replay and latching, by the peer's address.
    media_by_local: FxHashMap<SocketAddr, (CallRef, usize)>,
    /// By the peer's address; `true` marks replay's answering party (media for GW1's inside).
    media_by_remote: HashMap<SocketAddr, (CallRef, usize, bool)>,
    media_by_stream: FxHashMap<StreamId, (CallRef, usize)>,
    server: ServerTxns,
    client: ClientTxns,
    registrations: HashMap<String, (String, Duration)>,
}

/// What GW2 hands to GW1's inside side in replay.
pub enum Handoff {
    Sip {
        call: CallRef,
        msg: Box<Message>,
    },
    Media {
        stream: StreamId,
        src: SocketAddr,
        data: Bytes,
    },
}

impl Gw2 {
    pub fn new(cfg: &EngineConfig) -> Self {
        Gw2 {
            policy: cfg.policy.clone(),
            outside_sip: cfg.outside_sip,
            outside_next_hop: cfg.outside_next_hop,
            replay: cfg.replay,
            max_calls: cfg.max_calls,
            emergency: cfg.emergency_numbers.clone(),
            ids: Ids::new(cfg.id_seed ^ 0x6777_3200),
            next_call: 0,
            next_stream: 0,
            ports: PortPool::new(cfg.outside_media_ports),
            calls: FxHashMap::default(),
            by_call_id: HashMap::new(),
            media_by_local: FxHashMap::default(),
            media_by_remote: HashMap::new(),
            media_by_stream: FxHashMap::default(),
            server: ServerTxns::default(),
            client: ClientTxns::default(),
            registrations: HashMap::new(),
        }
    }

    /// A datagram from outside: SIP, or RTP/RTCP of a known stream.
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        flow: Flow,
        data: Bytes,
        out: &mut Out,
    ) -> Option<Handoff> {
        if let Some(h) = self.handle_media(flow, &data, out) {
            return h;
        }
        if !looks_like_sip(&data) {
            return None;
        }
        match sip::parse_datagram(data.clone()) {
            Ok((msg, _trailing)) => self.handle_message(now, flow, msg, out),
            Err(e) => {
                self.report_parse_error(flow, &e, Some(&data), out);
                None
            }
        }
    }

    /// A message that failed to parse. A request still gets a 400 (513 when too large) when
    /// its Via survives, so the peer's transaction ends; responses are dropped.
    fn report_parse_error(&mut self, flow: Flow, e: &SipError, raw: Option<&[u8]>, out: &mut Out) {
        let salvaged = raw
            .and_then(sip::salvage_request_headers)
            .filter(|h| h.contains(&HeaderName::VIA));
        let mut response = None;
        if let Some(h) = salvaged {
            let status = e.status();
            let bytes =
                MessageBuilder::response_to_headers(&h, status, Some(&self.ids.token())).build();
            out.transmits.push_back(Transmit {
                side: Side::Outside,
                flow,
                protocol: Protocol::Sip,
                payload: bytes,
            });
            response = Some(status);
        }
        out.report(Report {
            protocol: Protocol::Sip,
            side: Side::Outside,
            summary: Summary::Text("unparsable SIP message".to_owned()),
            verdict: Verdict::Rejected,
            reason: Some(format!("malformed: {e}")),
            response,
            call: None,
        });
    }

    /// A stream transport lost framing: the connection is closed.
    pub fn report_stream_error(&mut self, flow: Flow, e: SipError, out: &mut Out) {
        self.report_parse_error(flow, &e, None, out);
    }

    pub fn handle_message(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: Message,
        out: &mut Out,
    ) -> Option<Handoff> {
        if self.replay {
            if let Some(call) = self.answering_party_call(&flow, &msg) {
                return Some(Handoff::Sip {
                    call,
                    msg: Box::new(msg),
                });
            }
        }
        match msg.start() {
            StartLine::Response(_) => {
                self.handle_response(now, flow, msg, out);
                None
            }
            StartLine::Request(_) => {
                self.handle_request(now, flow, msg, out);
                None
            }
        }
    }

    /// Replay: a message of a known call sent by the party the caller addressed.
    fn answering_party_call(&self, flow: &Flow, msg: &Message) -> Option<CallRef> {
        let call_id = msg.call_id().ok()?;
        let call = *self.by_call_id.get(call_id)?;
        let c = self.calls.get(&call)?;
        (c.answering == flow.remote && c.flow.remote != flow.remote).then_some(call)
    }

    fn handle_response(&mut self, now: Duration, _flow: Flow, msg: Message, out: &mut Out) {
        let summary = msg.summary();
        let (verdict, reason) = match msg.check() {
            Err(e) => (Verdict::Rejected, format!("malformed: {e}")),
            Ok(()) => {
                let branch = msg
                    .vias()
                    .ok()
                    .and_then(|v| v.first().and_then(|v| v.branch().map(str::to_owned)));
                let status = msg.status().unwrap_or(0);
                // Replay: the caller answered the other party's request, not ours, so the
                // branch differs; match by dialog and method instead.
                let branch = match branch {
                    Some(b) if !self.replay => Some(b),
                    b => b.filter(|b| self.client.contains(b)).or_else(|| {
                        let call = msg.call_id().ok().and_then(|id| self.by_call_id.get(id))?;
                        let method = msg.cseq().ok()?.method;
                        self.client.find(*call, &method)
                    }),
                };
                let matched = branch
                    .as_ref()
                    .and_then(|b| self.client.on_response(b, status));
                match matched {
                    Some((method, call, repeat)) => {
                        // The INVITE that placed a call from the inside (GW2 is the UAC).
                        let placed = method == Method::Invite
                            && branch.is_some()
                            && self
                                .calls
                                .get(&call)
                                .is_some_and(|c| c.uac_branch == branch);
                        if method == Method::Invite && status >= 200 {
                            // A non-2xx ACK belongs to the INVITE's transaction (same branch).
                            let ack_branch = branch.clone().filter(|_| status >= 300);
                            self.ack_outside(call, &msg, ack_branch, out);
                        }
                        if repeat {
                            (Verdict::Ignored, "retransmitted response".to_owned())
                        } else {
                            if placed {
                                self.on_placed_call_response(now, call, status, &msg, out);
                            } else {
                                self.on_outside_response(call, &method, status, &msg, out);
                            }
                            out.report(Report {
                                protocol: Protocol::Sip,
                                side: Side::Outside,
                                summary: summary.into(),
                                verdict: Verdict::Accepted,
                                reason: None,
                                response: None,
                                call: Some(call.0),
                            });
                            return;
                        }
                    }
                    None => (
                        Verdict::Ignored,
                        "response matches no transaction of the gateway".to_owned(),
                    ),
                }
            }
        };
        out.report(Report {
            protocol: Protocol::Sip,
            side: Side::Outside,
            summary: summary.into(),
            verdict,
            reason: Some(reason),
            response: None,
            call: None,
        });
    }

    fn on_outside_response(
        &mut self,
        call: CallRef,
        method: &Method,
        status: u16,
        msg: &Message,
        out: &mut Out,
    ) {
        // GW2 sends re-INVITEs (GW1 asked for a media change) and BYEs.
        if *method == Method::Invite && (200..300).contains(&status) {
            if let Some(c) = self.calls.get_mut(&call) {
                if let Some(sdp) = policy::sdp_body(msg) {
                    if let Ok(ans) = tsip::answer_from_sdp(&sdp, &c.offer) {
                        update_remotes(&mut c.streams, &ans.remotes);
                        out.to_gw1
                            .push_back(meta::Message::MediaUpdate(meta::MediaUpdate {
                                call,
                                kind: meta::OfferAnswer::Answer,
                                media: ans.media,
                            }));
                    }
                }
            }
        }
    }

    fn ack_outside(
        &mut self,
        call: CallRef,
        resp: &Message,
        branch: Option<String>,
        out: &mut Out,
    ) {
        let branch = branch.unwrap_or_else(|| self.ids.branch());
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Ok(cseq) = resp.cseq() else {
            return;
        };
        let req = self
            .in_dialog_request(c, &Method::Ack, cseq.seq, &branch)
            .build();
        out.transmits.push_back(Transmit {
            side: Side::Outside,
            flow: c.flow,
            protocol: Protocol::Sip,
            payload: req,
        });
    }

    fn handle_request(&mut self, now: Duration, flow: Flow, msg: Message, out: &mut Out) {
        let summary = msg.summary();
        // Retransmissions are absorbed before anything else (RFC 3261 section 17.2).
        let key = TxnKey::of(&msg, None);
        let method = msg
            .method()
            .cloned()
            .unwrap_or(Method::Other(String::new()));
        if method != Method::Ack {
            if let Some(txn) = key.as_ref().and_then(|k| self.server.get(k)) {
                let status = txn.status();
                if let Some((_, bytes)) = &txn.last_response {
                    out.transmits.push_back(Transmit {
                        side: Side::Outside,
                        flow,
                        protocol: Protocol::Sip,
                        payload: bytes.clone(),
                    });
                }
                out.report(Report {
                    protocol: Protocol::Sip,
                    side: Side::Outside,
                    summary: summary.into(),
                    verdict: Verdict::Ignored,
                    reason: Some("retransmission absorbed".to_owned()),
                    response: status,
                    call: txn.call.map(|c| c.0),
                });
                return;
            }
        }
        if let Err(rej) = self.policy.check_request(&msg) {
            self.reject(now, flow, &msg, key, &rej, summary, out);
            return;
        }
        let Some(key) = key else {
            let rej = Rejection::Malformed(SipError::MissingHeader("Via"));
            self.reject(now, flow, &msg, None, &rej, summary, out);
            return;
        };
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let result = match (&method, to_tag) {
            (Method::Ack, _) => {
                self.handle_ack(&msg, &key, summary, out);
                return;
            }
            (Method::Cancel, _) => self.handle_cancel(now, flow, &msg, key, out),
            (Method::Invite, None) => self.handle_invite(now, flow, &msg, key, out),
            (Method::Options, _) => {
                self.new_txn(now, flow, &msg, key.clone(), None);
                let resp = MessageBuilder::response_to(&msg, 200, Some(&self.ids.token()))
                    .header("Allow", policy::allow_header())
                    .header("Accept", policy::accept_header())
                    .header("Supported", policy::SUPPORTED_EXTENSIONS.join(", "))
                    .build();
                self.server.respond(now, &key, 200, resp, out);
                Ok((200, None))
            }
            (Method::Register, _) => self.handle_register(now, flow, &msg, key, out),
            (Method::Message, None) => {
                // Pager-mode messages are taken for delivery (RFC 3428 section 7).
                self.new_txn(now, flow, &msg, key.clone(), None);
                let resp = MessageBuilder::response_to(&msg, 202, Some(&self.ids.token())).build();
                self.server.respond(now, &key, 202, resp, out);
                Ok((202, None))
            }
            (_, Some(tag)) => self.handle_in_dialog(now, flow, &msg, key, &tag, out),
            (_, None) => Err(Rejection::NoSuchCallOrTransaction),
        };
        match result {
            Ok((status, call)) => out.report(Report {
                protocol: Protocol::Sip,
                side: Side::Outside,
                summary: summary.into(),
                verdict: Verdict::Accepted,
                reason: None,
                response: Some(status),
                call: call.map(|c: CallRef| c.0),
            }),
            Err(rej) => {
                let key = TxnKey::of(&msg, None);
                self.reject(now, flow, &msg, key, &rej, summary, out);
            }
        }
    }

    fn new_txn(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        call: Option<CallRef>,
    ) {
        self.server.insert(
            key,
            ServerTxn {
                side: Side::Outside,
                flow,
                request: msg.clone(),
                call,
                last_response: None,
                retransmit: None,
                expires: now + super::sipua::LINGER,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: Option<TxnKey>,
        rej: &Rejection,
        summary: String,
        out: &mut Out,
    ) {
        let status = rej.status();
        // Never answer an ACK; answer other requests only if they can be addressed.
        let answerable = msg.method() != Some(&Method::Ack) && can_address_response(msg);
        let mut response = None;
        if answerable {
            let mut b = MessageBuilder::response_to(msg, status, Some(&self.ids.token()));
            for (n, v) in rej.extra_headers(&self.policy) {
                b = b.header(n, v);
            }
            let bytes = b.build();
            match key {
                Some(key) => {
                    self.new_txn(now, flow, msg, key.clone(), None);
                    self.server.respond(now, &key, status, bytes, out);
                }
                None => out.transmits.push_back(Transmit {
                    side: Side::Outside,
                    flow,
                    protocol: Protocol::Sip,
                    payload: bytes,
                }),
            }
            response = Some(status);
        }
        out.report(Report {
            protocol: Protocol::Sip,
            side: Side::Outside,
            summary: summary.into(),
            verdict: if rej.is_filtered() {
                Verdict::Rejected
            } else {
                Verdict::Accepted
            },
            reason: Some(rej.reason()),
            response,
            call: None,
        });
    }

    fn handle_invite(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        out: &mut Out,
    ) -> Result<(u16, Option<CallRef>), Rejection> {
        let call_id = msg.call_id().map_err(Rejection::Malformed)?.to_owned();
        if self.by_call_id.contains_key(&call_id) {
            // A second INVITE without To tag in a known Call-ID: a forked or merged request
            // (RFC 3261 section 8.2.2.2).
            return Err(Rejection::Malformed(SipError::BadHeader {
                name: "Call-ID",
                why: "INVITE without To tag for an existing call",
            }));
        }
        let uri = match msg.start() {
            StartLine::Request(r) => sip::Uri::parse(&r.uri).map_err(Rejection::Malformed)?,
            StartLine::Response(_) => return Err(Rejection::NoSuchCallOrTransaction),
        };
        let from = msg.from().map_err(Rejection::Malformed)?;
        let to = msg.to().map_err(Rejection::Malformed)?;
        let calling = tsip::calling_party(&from);
        let called = tsip::called_party(&uri, &to);
        let emergency = self.emergency.contains(&called.user)
            || uri.raw.to_ascii_lowercase().starts_with("urn:service:sos");
        if self.calls.len() >= self.max_calls && !emergency {
            return Err(Rejection::BusyOrOverloaded("call limit reached"));
        }
        self.next_call += 2;
        let call = CallRef(self.next_call);
        let mut offer = Vec::new();
        let mut remotes = Vec::new();
        if let Some(sdp) = policy::sdp_body(msg) {
            let next_stream = &mut self.next_stream;
            let parsed = tsip::offer_from_sdp(&sdp, &mut || {
                *next_stream = next_stream.wrapping_add(2);
                StreamId(*next_stream)
            })
            .map_err(|e| Rejection::NotAcceptableHere(e.to_string()))?;
            offer = parsed.media;
            remotes = parsed.remotes;
        }
        self.new_txn(now, flow, msg, key.clone(), Some(call));
        let trying = MessageBuilder::response_to(msg, 100, None).build();
        self.server.respond(now, &key, 100, trying, out);

        let local_tag = self.ids.token();
        let contact = msg
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| c.uri.raw)
            .unwrap_or_else(|| from.uri.raw.clone());
        let mut streams = Vec::new();
        for (i, m) in offer.iter().enumerate() {
            let Some(stream) = m.stream else { continue };
            let local = SocketAddr::new(flow.local.ip(), self.ports.allocate());
            // Live: the driver binds the port before the answer announces it.
            out.media_sockets(Side::Outside, local, true);
            let remote = remotes.get(i).copied().flatten();
            let idx = streams.len();
            self.media_by_local.insert(local, (call, idx));
            if let Some(r) = remote {
                self.media_by_remote.insert(r, (call, idx, false));
            }
            self.media_by_stream.insert(stream, (call, idx));
            streams.push(MediaStream {
                stream,
                local,
                remote,
                payload_types: payload_types(m),
                ssrc: None,
                counters: MediaCounters::default(),
            });
        }
        let h = msg.headers();
        let oc = OutCall {
            flow,
            call_id: call_id.clone(),
            remote_tag: from.tag().unwrap_or("").to_owned(),
            local_tag,
            remote_uri: h
                .single(&HeaderName::FROM, "From")
                .ok()
                .flatten()
                .unwrap_or("")
                .to_owned(),
            local_uri: h
                .single(&HeaderName::TO, "To")
                .ok()
                .flatten()
                .unwrap_or("")
                .to_owned(),
            remote_target: contact,
            route_set: h
                .list(&HeaderName::RECORD_ROUTE)
                .map(str::to_owned)
                .collect(),
            remote_cseq: msg.cseq().map(|c| c.seq).unwrap_or(0),
            local_cseq: 0,
            invite_key: key,
            reinvite_key: None,
            state: CallState::Early,
            streams,
            offer: offer.clone(),
            sdp_id: self.ids.number(),
            sdp_version: 1,
            answering: flow.local,
            remote_keys: remotes.iter().flatten().copied().collect(),
            calling: calling.user.clone(),
            called: called.user.clone(),
            emergency,
            setup_at: now,
            answered_at: None,
            ended_at: None,
            uac_branch: None,
        };
        self.by_call_id.insert(call_id, call);
        self.calls.insert(call, oc);
        out.outside_family
            .insert(call, super::Family::of(flow.remote.ip()));
        out.to_gw1.push_back(meta::Message::Setup(meta::Setup {
            call,
            calling,
            called,
            emergency,
            media: offer,
        }));
        Ok((100, Some(call)))
    }

    fn handle_ack(&mut self, msg: &Message, key: &TxnKey, summary: String, out: &mut Out) {
        // ACK for a non-2xx final response belongs to the INVITE transaction.
        let non2xx = self
            .server
            .get(key)
            .is_some_and(|t| t.status().is_some_and(|s| s >= 300));
        let call = msg
            .call_id()
            .ok()
            .and_then(|id| self.by_call_id.get(id).copied());
        let (verdict, reason) = if non2xx {
            self.server.acked(key);
            (Verdict::Accepted, None)
        } else if let Some(call) = call {
            self.server.stop_call_retransmits(call);
            // A late offer is answered in the ACK.
            if let (Some(sdp), Some(c)) = (policy::sdp_body(msg), self.calls.get_mut(&call)) {
                if let Ok(ans) = tsip::answer_from_sdp(&sdp, &c.offer) {
                    update_remotes(&mut c.streams, &ans.remotes);
                    out.to_gw1
                        .push_back(meta::Message::MediaUpdate(meta::MediaUpdate {
                            call,
                            kind: meta::OfferAnswer::Answer,
                            media: ans.media,
                        }));
                }
            }
            (Verdict::Accepted, None)
        } else {
            (
                Verdict::Ignored,
                Some("ACK matches no transaction or dialog".to_owned()),
            )
        };
        out.report(Report {
            protocol: Protocol::Sip,
            side: Side::Outside,
            summary: summary.into(),
            verdict,
            reason,
            response: None,
            call: call.map(|c| c.0),
        });
    }

    fn handle_cancel(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        out: &mut Out,
    ) -> Result<(u16, Option<CallRef>), Rejection> {
        let invite_key =
            TxnKey::of(msg, Some(&Method::Invite)).ok_or(Rejection::NoSuchCallOrTransaction)?;
        let (call, final_sent) = match self.server.get(&invite_key) {
            Some(t) => (t.call, t.is_final()),
            None => return Err(Rejection::NoSuchCallOrTransaction),
        };
        self.new_txn(now, flow, msg, key.clone(), call);
        let ok = MessageBuilder::response_to(msg, 200, None).build();
        self.server.respond(now, &key, 200, ok, out);
        if !final_sent {
            if let Some(invite) = self.server.get(&invite_key).map(|t| t.request.clone()) {
                let tag = call
                    .and_then(|c| self.calls.get(&c))
                    .map(|c| c.local_tag.clone());
                let resp = MessageBuilder::response_to(&invite, 487, tag.as_deref()).build();
                self.server.respond(now, &invite_key, 487, resp, out);
            }
            if let Some(call) = call {
                out.to_gw1.push_back(meta::Message::Release(meta::Release {
                    call,
                    cause: Cause::NORMAL_CLEARING,
                }));
                self.end_call(now, call, Cause::NORMAL_CLEARING, out);
            }
        }
        Ok((200, call))
    }

    fn handle_register(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        out: &mut Out,
    ) -> Result<(u16, Option<CallRef>), Rejection> {
        let to = msg.to().map_err(Rejection::Malformed)?;
        let aor = to.uri.raw.clone();
        let expires_hdr = msg
            .headers()
            .single(&HeaderName::EXPIRES, "Expires")
            .map_err(Rejection::Malformed)?
            .map(|v| {
                sip::parse_decimal(v, u32::MAX).ok_or(Rejection::Malformed(SipError::BadHeader {
                    name: "Expires",
                    why: "not a number",
                }))
            })
            .transpose()?;
        let contacts = msg.contacts().map_err(Rejection::Malformed)?;
        let mut resp = MessageBuilder::response_to(msg, 200, Some(&self.ids.token()));
        for c in &contacts {
            let exp = c
                .param("expires")
                .and_then(|p| p.value.as_deref())
                .and_then(|v| sip::parse_decimal(v, u32::MAX))
                .or(expires_hdr)
                .unwrap_or(3600)
                .min(3600);
            if exp == 0 {
                self.registrations.remove(&aor);
            } else {
                self.registrations.insert(
                    aor.clone(),
                    (c.uri.raw.clone(), now + Duration::from_secs(u64::from(exp))),
                );
                resp = resp.header("Contact", format!("<{}>;expires={exp}", c.uri.raw));
            }
        }
        if msg.headers().list(&HeaderName::CONTACT).any(|c| c == "*") {
            self.registrations.remove(&aor);
        }
        self.new_txn(now, flow, msg, key.clone(), None);
        self.server.respond(now, &key, 200, resp.build(), out);
        Ok((200, None))
    }

    fn handle_in_dialog(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        to_tag: &str,
        out: &mut Out,
    ) -> Result<(u16, Option<CallRef>), Rejection> {
        let call_id = msg.call_id().map_err(Rejection::Malformed)?;
        let call = *self
            .by_call_id
            .get(call_id)
            .ok_or(Rejection::NoSuchCallOrTransaction)?;
        let from_tag = msg.from().ok().and_then(|f| f.tag().map(str::to_owned));
        let cseq = msg.cseq().map_err(Rejection::Malformed)?;
        let method = cseq.method.clone();
        {
            let c = self
                .calls
                .get_mut(&call)
                .ok_or(Rejection::NoSuchCallOrTransaction)?;
            // In-dialog requests are bound to the dialog's tags and peer (integrity).
            // Replay: the caller's in-dialog requests carry the tag the capture's answering
            // party chose, not GW2's.
            let to_ok = self.replay || to_tag == c.local_tag;
            let tags_match = to_ok && from_tag.as_deref() == Some(c.remote_tag.as_str());
            if !tags_match || c.state == CallState::Ended {
                return Err(Rejection::NoSuchCallOrTransaction);
            }
            if c.flow.remote.ip() != flow.remote.ip() {
                return Err(Rejection::NoSuchCallOrTransaction);
            }
            if cseq.seq < c.remote_cseq {
                return Err(Rejection::Malformed(SipError::BadHeader {
                    name: "CSeq",
                    why: "lower than the dialog's",
                }));
            }
            c.remote_cseq = cseq.seq;
        }
        self.new_txn(now, flow, msg, key.clone(), Some(call));
        match method {
            Method::Bye => {
                let ok = MessageBuilder::response_to(msg, 200, None).build();
                self.server.respond(now, &key, 200, ok, out);
                // A BYE before the answer also ends the pending INVITE.
                if let Some(k) = self.server.pending_invite(call) {
                    if let Some(inv) = self.server.get(&k).map(|t| t.request.clone()) {
                        let r = MessageBuilder::response_to(&inv, 487, None).build();
                        self.server.respond(now, &k, 487, r, out);
                    }
                }
                out.to_gw1.push_back(meta::Message::Release(meta::Release {
                    call,
                    cause: Cause::NORMAL_CLEARING,
                }));
                self.end_call(now, call, Cause::NORMAL_CLEARING, out);
                Ok((200, Some(call)))
            }
            Method::Invite | Method::Update => {
                let Some(sdp) = policy::sdp_body(msg) else {
                    // A refresh without an offer: answer with our current description.
                    let resp = self.ok_with_sdp(msg, call);
                    self.server.respond(now, &key, 200, resp, out);
                    return Ok((200, Some(call)));
                };
                let c = self
                    .calls
                    .get_mut(&call)
                    .ok_or(Rejection::NoSuchCallOrTransaction)?;
                let ids: Vec<StreamId> = c.streams.iter().map(|s| s.stream).collect();
                let mut i = 0usize;
                let parsed = tsip::offer_from_sdp(&sdp, &mut || {
                    let id = ids.get(i).copied().unwrap_or(StreamId(u16::MAX));
                    i += 1;
                    id
                })
                .map_err(|e| Rejection::NotAcceptableHere(e.to_string()))?;
                update_remotes(&mut c.streams, &parsed.remotes);
                for (idx, r) in parsed.remotes.iter().enumerate() {
                    if let Some(r) = r {
                        self.media_by_remote.insert(*r, (call, idx, false));
                        c.remote_keys.push(*r);
                    }
                }
                c.offer = parsed.media.clone();
                c.reinvite_key = Some(key.clone());
                if method == Method::Invite {
                    let trying = MessageBuilder::response_to(msg, 100, None).build();
                    self.server.respond(now, &key, 100, trying, out);
                }
                out.to_gw1
                    .push_back(meta::Message::MediaUpdate(meta::MediaUpdate {
                        call,
                        kind: meta::OfferAnswer::Offer,
                        media: parsed.media,
                    }));
                Ok((if method == Method::Invite { 100 } else { 0 }, Some(call)))
                    .map(|(s, c)| (if s == 0 { 200 } else { s }, c))
            }
            Method::Info => {
                let body = msg.body();
                let ct = msg.content_type().ok().flatten();
                if let Some((event, duration_ms)) =
                    ct.as_ref().and_then(|ct| tsip::dtmf_from_info(ct, &body))
                {
                    out.to_gw1.push_back(meta::Message::Dtmf(meta::Dtmf {
                        call,
                        event,
                        duration_ms,
                    }));
                }
                let ok = MessageBuilder::response_to(msg, 200, None).build();
                self.server.respond(now, &key, 200, ok, out);
                Ok((200, Some(call)))
            }
            Method::Prack => Err(Rejection::NoSuchCallOrTransaction),
            _ => {
                let ok = MessageBuilder::response_to(msg, 200, None).build();
                self.server.respond(now, &key, 200, ok, out);
                Ok((200, Some(call)))
            }
        }
    }

    fn ok_with_sdp(&mut self, req: &Message, call: CallRef) -> Bytes {
        let Some(c) = self.calls.get_mut(&call) else {
            return MessageBuilder::response_to(req, 200, None).build();
        };
        c.sdp_version += 1;
        let sdp = our_sdp(c);
        MessageBuilder::response_to(req, 200, Some(&c.local_tag))
            .header("Contact", format!("<sip:gw@{}>", host_port(c.flow.local)))
            .body("application/sdp", sdp)
            .build()
    }

    /// Meta from GW1.
    pub fn handle_meta(&mut self, now: Duration, m: meta::Message, out: &mut Out) {
        if let meta::Message::Setup(s) = m {
            self.place_call(now, s, out);
            return;
        }
        let Some(call) = m.call() else { return };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match m {
            meta::Message::Alerting(meta::Alerting { media, .. })
            | meta::Message::Progress(meta::Progress { media, .. }) => {
                let key = c.invite_key.clone();
                let Some(invite) = self.server.get(&key).map(|t| t.request.clone()) else {
                    return;
                };
                let code = if media.is_empty() { 180 } else { 183 };
                let mut b = MessageBuilder::response_to(&invite, code, Some(&c.local_tag))
                    .header("Contact", format!("<sip:gw@{}>", host_port(c.flow.local)));
                if !media.is_empty() {
                    apply_answer(c, &media);
                    b = b.body("application/sdp", our_sdp(c));
                }
                self.server.respond(now, &key, code, b.build(), out);
            }
            meta::Message::Answer(meta::Answer { media, .. }) => {
                if c.state != CallState::Early {
                    return;
                }
                apply_answer(c, &media);
                c.state = CallState::Confirmed;
                c.answered_at = Some(now);
                let key = c.invite_key.clone();
                let Some(invite) = self.server.get(&key).map(|t| t.request.clone()) else {
                    return;
                };
                let b = MessageBuilder::response_to(&invite, 200, Some(&c.local_tag))
                    .header("Contact", format!("<sip:gw@{}>", host_port(c.flow.local)))
                    .header("Allow", policy::allow_header())
                    .body("application/sdp", our_sdp(c));
                self.server.respond(now, &key, 200, b.build(), out);
            }
            meta::Message::Release(meta::Release { cause, .. }) => {
                match c.state {
                    CallState::Early if c.uac_branch.is_some() => {
                        // Our own INVITE outside is still pending: CANCEL it (RFC 3261 9.1).
                        let branch = c.uac_branch.clone().unwrap_or_default();
                        let Some(c) = self.calls.get(&call) else {
                            return;
                        };
                        let req = self
                            .in_dialog_request(c, &Method::Cancel, 1, &branch)
                            .header("Reason", format!("Q.850;cause={}", cause.0))
                            .build();
                        let flow = c.flow;
                        self.client.send(
                            now,
                            Side::Outside,
                            flow,
                            format!("{branch}-cancel"),
                            Method::Cancel,
                            call,
                            req,
                            out,
                        );
                    }
                    CallState::Early => {
                        let key = c.invite_key.clone();
                        let tag = c.local_tag.clone();
                        if let Some(invite) = self.server.get(&key).map(|t| t.request.clone()) {
                            let code = translators::cause::cause_to_status(cause);
                            let b = MessageBuilder::response_to(&invite, code, Some(&tag))
                                .header("Reason", format!("Q.850;cause={}", cause.0));
                            self.server.respond(now, &key, code, b.build(), out);
                        }
                    }
                    CallState::Confirmed => {
                        c.local_cseq += 1;
                        let branch = self.ids.branch();
                        let Some(c) = self.calls.get(&call) else {
                            return;
                        };
                        let req = self
                            .in_dialog_request(c, &Method::Bye, c.local_cseq, &branch)
                            .header("Reason", format!("Q.850;cause={}", cause.0))
                            .build();
                        let flow = c.flow;
                        self.client.send(
                            now,
                            Side::Outside,
                            flow,
                            branch,
                            Method::Bye,
                            call,
                            req,
                            out,
                        );
                    }
                    CallState::Ended => {}
                }
                self.end_call(now, call, cause, out);
            }
            meta::Message::MediaUpdate(meta::MediaUpdate { kind, media, .. }) => match kind {
                meta::OfferAnswer::Answer => {
                    apply_answer(c, &media);
                    if let Some(key) = c.reinvite_key.take() {
                        if let Some(req) = self.server.get(&key).map(|t| t.request.clone()) {
                            let resp = self.ok_with_sdp(&req, call);
                            self.server.respond(now, &key, 200, resp, out);
                        }
                    }
                }
                meta::OfferAnswer::Offer => {
                    apply_answer(c, &media);
                    c.offer = media;
                    c.local_cseq += 1;
                    c.sdp_version += 1;
                    let branch = self.ids.branch();
                    let Some(c) = self.calls.get(&call) else {
                        return;
                    };
                    let req = self
                        .in_dialog_request(c, &Method::Invite, c.local_cseq, &branch)
                        .body("application/sdp", our_sdp(c))
                        .build();
                    let flow = c.flow;
                    self.client.send(
                        now,
                        Side::Outside,
                        flow,
                        branch,
                        Method::Invite,
                        call,
                        req,
                        out,
                    );
                }
            },
            meta::Message::Dtmf(d) => {
                if c.state != CallState::Confirmed {
                    return;
                }
                c.local_cseq += 1;
                let branch = self.ids.branch();
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                let (ct, body) = tsip::info_body(d.event, d.duration_ms);
                let req = self
                    .in_dialog_request(c, &Method::Info, c.local_cseq, &branch)
                    .body(ct, body)
                    .build();
                let flow = c.flow;
                self.client.send(
                    now,
                    Side::Outside,
                    flow,
                    branch,
                    Method::Info,
                    call,
                    req,
                    out,
                );
            }
            _ => {}
        }
    }

    /// A call from the inside (Meta Setup from GW1): GW2 places it outside as the UAC, toward
    /// the configured next hop, with its own addresses only.
    fn place_call(&mut self, now: Duration, s: meta::Setup, out: &mut Out) {
        let (Some(local), Some(next_hop)) = (self.outside_sip, self.outside_next_hop) else {
            out.to_gw1.push_back(meta::Message::Release(meta::Release {
                call: s.call,
                cause: Cause::NO_ROUTE_TO_DESTINATION,
            }));
            return;
        };
        let call = s.call;
        let flow = Flow {
            transport: super::Transport::Udp,
            local,
            remote: next_hop,
        };
        let mut streams = Vec::new();
        for m in &s.media {
            let Some(stream) = m.stream else { continue };
            let media_local = SocketAddr::new(local.ip(), self.ports.allocate());
            let idx = streams.len();
            self.media_by_local.insert(media_local, (call, idx));
            self.media_by_stream.insert(stream, (call, idx));
            if !self.replay {
                out.media_sockets(Side::Outside, media_local, true);
            }
            streams.push(MediaStream {
                stream,
                local: media_local,
                remote: None,
                payload_types: payload_types(m),
                ssrc: None,
                counters: MediaCounters::default(),
            });
        }
        let target = tsip::inside_uri(&s.called.user, next_hop);
        let local_tag = self.ids.token();
        let branch = self.ids.branch();
        let call_id = format!("{}@{}", self.ids.token(), host_of(local));
        let oc = OutCall {
            flow,
            call_id: call_id.clone(),
            remote_tag: String::new(),
            local_tag: local_tag.clone(),
            remote_uri: format!("<{target}>"),
            local_uri: tsip::inside_name_addr(&s.calling, local),
            remote_target: target,
            route_set: Vec::new(),
            remote_cseq: 0,
            local_cseq: 1,
            invite_key: TxnKey::Branch {
                branch: branch.clone(),
                sent_by: host_port(local),
                method: "INVITE".to_owned(),
            },
            reinvite_key: None,
            state: CallState::Early,
            streams,
            offer: s.media.clone(),
            sdp_id: self.ids.number(),
            sdp_version: 1,
            answering: next_hop,
            remote_keys: Vec::new(),
            calling: s.calling.user.clone(),
            called: s.called.user.clone(),
            emergency: s.emergency,
            setup_at: now,
            answered_at: None,
            ended_at: None,
            uac_branch: Some(branch.clone()),
        };
        let mut b = self
            .in_dialog_request(&oc, &Method::Invite, 1, &branch)
            .header("Contact", format!("<sip:gw@{}>", host_port(local)))
            .header("Allow", policy::allow_header());
        if s.emergency {
            b = b.header("Priority", "emergency");
        }
        if !oc.offer.is_empty() {
            b = b.body("application/sdp", our_sdp(&oc));
        }
        let req = b.build();
        self.by_call_id.insert(call_id, call);
        self.calls.insert(call, oc);
        self.client.send(
            now,
            Side::Outside,
            flow,
            branch,
            Method::Invite,
            call,
            req,
            out,
        );
    }

    /// Responses to GW2's own INVITE for a call from the inside become Meta toward GW1.
    fn on_placed_call_response(
        &mut self,
        now: Duration,
        call: CallRef,
        status: u16,
        msg: &Message,
        out: &mut Out,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state != CallState::Early {
            return;
        }
        if let Ok(to) = msg.to() {
            if let Some(tag) = to.tag() {
                c.remote_tag = tag.to_owned();
                c.remote_uri = format!("<{}>;tag={tag}", to.uri.raw);
            }
        }
        if let Some(contact) = msg.contacts().ok().and_then(|v| v.into_iter().next()) {
            c.remote_target = contact.uri.raw;
        }
        // A UAC's route set is the Record-Route list reversed (RFC 3261 section 12.1.2).
        let mut route_set: Vec<String> = msg
            .headers()
            .list(&HeaderName::RECORD_ROUTE)
            .map(str::to_owned)
            .collect();
        route_set.reverse();
        c.route_set = route_set;
        let media = policy::sdp_body(msg)
            .and_then(|sdp| tsip::answer_from_sdp(&sdp, &c.offer).ok())
            .map(|ans| {
                update_remotes(&mut c.streams, &ans.remotes);
                for (idx, r) in ans.remotes.iter().enumerate() {
                    if let Some(r) = r {
                        self.media_by_remote.insert(*r, (call, idx, false));
                        c.remote_keys.push(*r);
                    }
                }
                ans.media
            })
            .unwrap_or_default();
        if !media.is_empty() {
            apply_answer(c, &media);
        }
        match status {
            100 => {}
            180 if media.is_empty() => out
                .to_gw1
                .push_back(meta::Message::Alerting(meta::Alerting { call, media })),
            101..=199 => out
                .to_gw1
                .push_back(meta::Message::Progress(meta::Progress { call, media })),
            200..=299 => {
                c.state = CallState::Confirmed;
                c.answered_at = Some(now);
                out.to_gw1
                    .push_back(meta::Message::Answer(meta::Answer { call, media }));
            }
            _ => {
                let cause = translators::cause::status_to_cause(status);
                out.to_gw1
                    .push_back(meta::Message::Release(meta::Release { call, cause }));
                self.end_call(now, call, cause, out);
            }
        }
    }

    /// A request inside the caller's dialog, from GW2 (RFC 3261 section 12.2.1.1).
    fn in_dialog_request(
        &self,
        c: &OutCall,
        method: &Method,
        cseq: u32,
        branch: &str,
    ) -> MessageBuilder {
        let mut b = MessageBuilder::request(method, &c.remote_target).header(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                c.flow.transport.via_token(),
                host_port(c.flow.local)
            ),
        );
        for r in &c.route_set {
            b = b.header("Route", r.clone());
        }
        b.header("Max-Forwards", "70")
            .header("From", with_tag(&c.local_uri, &c.local_tag))
            .header("To", c.remote_uri.clone())
            .header("Call-ID", c.call_id.clone())
            .header("CSeq", format!("{cseq} {method}"))
    }

    fn end_call(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state == CallState::Ended {
            return;
        }
        c.state = CallState::Ended;
        c.ended_at = Some(now);
        let mut media = MediaCounters::default();
        for s in &c.streams {
            media.add(&s.counters);
            // Live: the call's media sockets close (replay never opened any).
            out.media_sockets(Side::Outside, s.local, false);
        }
        out.events.push_back(Event::CallEnded(CallRecord {
            call: call.0,
            calling: c.calling.clone(),
            called: c.called.clone(),
            emergency: c.emergency,
            setup_at: c.setup_at.as_secs_f64(),
            answered_at: c.answered_at.map(|t| t.as_secs_f64()),
            ended_at: now.as_secs_f64(),
            cause: cause.0,
            media,
        }));
    }

    /// RTP/RTCP from outside for a known stream: checked, then sent over the tunnel.
    fn handle_media(&mut self, flow: Flow, data: &Bytes, out: &mut Out) -> Option<Option<Handoff>> {
        // One lookup per packet in the common case: our port (live), else the peer's address.
        // RTCP comes from the port above the peer's RTP port (RFC 3550 section 11).
        let rtcp_hint = super::media::is_rtcp(data);
        let rtcp_remote = SocketAddr::new(flow.remote.ip(), flow.remote.port().wrapping_sub(1));
        let (call, idx, answering) = self
            .media_by_local
            .get(&flow.local)
            .map(|&(c, i)| (c, i, false))
            .or_else(|| self.media_by_remote.get(&flow.remote).copied())
            .or_else(|| {
                rtcp_hint
                    .then(|| self.media_by_remote.get(&rtcp_remote).copied())
                    .flatten()
            })?;
        if answering {
            let stream = self.calls.get(&call)?.streams.get(idx)?.stream;
            return Some(Some(Handoff::Media {
                stream,
                src: flow.remote,
                data: data.clone(),
            }));
        }
        let c = self.calls.get_mut(&call)?;
        let ended = c.state == CallState::Ended;
        let s = c.streams.get_mut(idx)?;
        let protocol = if rtcp_hint {
            Protocol::Rtcp
        } else {
            Protocol::Rtp
        };
        let src = if rtcp_hint { rtcp_remote } else { flow.remote };
        let result = if ended {
            Err(None)
        } else {
            s.check(src, data).map_err(Some)
        };
        match result {
            Ok(rtcp) => {
                out.media_to_gw1.push_back((s.stream, rtcp, data.clone()));
                out.report(Report {
                    protocol,
                    side: Side::Outside,
                    summary: media_summary(data),
                    verdict: Verdict::Accepted,
                    reason: None,
                    response: None,
                    call: Some(call.0),
                });
            }
            Err(drop) => out.report(Report {
                protocol,
                side: Side::Outside,
                summary: media_summary(data),
                verdict: Verdict::Rejected,
                reason: Some(match drop {
                    Some(d) => d.reason(),
                    None => "call has ended".to_owned(),
                }),
                response: None,
                call: Some(call.0),
            }),
        }
        Some(None)
    }

    /// Media from GW1 over the tunnel: sent from GW2's port to the outside peer.
    pub fn handle_tunnel_media(
        &mut self,
        stream: StreamId,
        rtcp: bool,
        data: Bytes,
        out: &mut Out,
    ) {
        let Some(&(call, idx)) = self.media_by_stream.get(&stream) else {
            return;
        };
        let transmit = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.streams.get_mut(idx))
            .and_then(|s| s.relay(Side::Outside, rtcp, data));
        out.transmits.extend(transmit);
    }

    /// Replay: remembers the answering party's media addresses of a call (from its SDP), so
    /// its RTP is handed to GW1's inside side.
    pub fn note_answering_media(&mut self, call: CallRef, remotes: &[Option<SocketAddr>]) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        for (idx, r) in remotes.iter().enumerate() {
            if let Some(r) = r {
                c.remote_keys.push(*r);
                self.media_by_remote.insert(*r, (call, idx, true));
                let rtcp = SocketAddr::new(r.ip(), r.port().wrapping_add(1));
                self.media_by_remote.insert(rtcp, (call, idx, true));
                c.remote_keys.push(rtcp);
            }
        }
    }

    /// Calls not yet ended.
    pub fn active_calls(&self) -> Vec<CallRef> {
        let mut v: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| c.state != CallState::Ended)
            .map(|(k, _)| *k)
            .collect();
        v.sort();
        v
    }

    pub fn handle_timeout(&mut self, now: Duration, out: &mut Out) {
        self.server.handle_timeout(now, out);
        for (call, method) in self.client.handle_timeout(now, out) {
            if method == Method::Invite {
                out.to_gw1.push_back(meta::Message::Release(meta::Release {
                    call,
                    cause: Cause::RECOVERY_ON_TIMER_EXPIRY,
                }));
                self.end_call(now, call, Cause::RECOVERY_ON_TIMER_EXPIRY, out);
            }
        }
        self.registrations.retain(|_, (_, exp)| *exp > now);
        self.forget_ended_calls(now);
    }

    /// Ended calls stay long enough to absorb late retransmissions and stray media, then go,
    /// with every index that points at them.
    fn forget_ended_calls(&mut self, now: Duration) {
        let expired: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ended_at.is_some_and(|t| now >= t + super::sipua::LINGER))
            .map(|(k, _)| *k)
            .collect();
        for call in expired {
            let Some(c) = self.calls.remove(&call) else {
                continue;
            };
            if self.by_call_id.get(&c.call_id) == Some(&call) {
                self.by_call_id.remove(&c.call_id);
            }
            // Ports and peer addresses may already serve a newer call: remove only our own.
            for s in &c.streams {
                if self
                    .media_by_local
                    .get(&s.local)
                    .is_some_and(|e| e.0 == call)
                {
                    self.media_by_local.remove(&s.local);
                }
                self.media_by_stream.remove(&s.stream);
            }
            for r in &c.remote_keys {
                if self.media_by_remote.get(r).is_some_and(|e| e.0 == call) {
                    self.media_by_remote.remove(r);
                }
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        match (self.server.poll_timeout(), self.client.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn update_remotes(streams: &mut [MediaStream], remotes: &[Option<SocketAddr>]) {
    for (s, r) in streams.iter_mut().zip(remotes) {
        if let Some(r) = r {
            s.remote = Some(*r);
        }
    }
}

/// Narrows the allowed payload types of each stream to the answer.
fn apply_answer(c: &mut OutCall, media: &[MediaDescription]) {
    for m in media {
        let Some(id) = m.stream else { continue };
        if let Some(s) = c.streams.iter_mut().find(|s| s.stream == id) {
            let pts = payload_types(m);
            if !pts.is_empty() {
                s.payload_types = pts;
            }
        }
    }
    // Our SDP answers with what GW1 reported, per stream.
    let mut offer = c.offer.clone();
    for o in offer.iter_mut() {
        if let Some(a) = media
            .iter()
            .find(|a| a.stream.is_some() && a.stream == o.stream)
        {
            *o = a.clone();
        }
    }
    c.offer = offer;
}

fn payload_types(m: &MediaDescription) -> Vec<u8> {
    let mut pts: Vec<u8> = m.codecs.iter().map(|c| c.payload_type).collect();
    if let Some(te) = m.telephone_event {
        pts.push(te.payload_type);
    }
    // Comfort noise (RFC 3389) is always allowed alongside audio.
    if m.kind == meta::MediaKind::Audio {
        pts.push(13);
    }
    pts
}

fn our_sdp(c: &OutCall) -> Bytes {
    let ports: Vec<Option<u16>> = c
        .offer
        .iter()
        .map(|m| {
            m.stream
                .and_then(|id| c.streams.iter().find(|s| s.stream == id))
                .map(|s| s.local.port())
        })
        .collect();
    tsip::sdp_from_media(&c.offer, c.flow.local.ip(), &ports, c.sdp_id, c.sdp_version)
}

fn with_tag(value: &str, tag: &str) -> String {
    if value.contains(";tag=") {
        value.to_owned()
    } else {
        format!("{value};tag={tag}")
    }
}

/// A response can be addressed when the request has a Via: the other headers a response
/// copies (From, To, Call-ID, CSeq) are copied as written, even when malformed, so the peer can
/// still match the 400 (RFC 3261 section 8.2.6.2).
fn can_address_response(msg: &Message) -> bool {
    msg.headers().contains(&HeaderName::VIA)
}
