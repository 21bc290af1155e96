//! GW1, the inside half: turns Meta into SIP toward the inside next hop (an IP-PBX or proxy) in
//! the configured IP family, with fresh dialog identifiers, and relays media to the inside
//! endpoint from its own ports. Nothing of the outside (address, host, tag, Call-ID) reaches it.

use super::ids::Ids;
use super::media::media_summary;
use super::media::{MediaStream, PortPool};
use super::policy;
use super::sipua::{host_of, host_port, looks_like_sip};
use super::sipua::{ClientTxns, ServerTxn, ServerTxns, TxnKey};
use super::{
    EngineConfig, Family, Flow, InsideConfig, MediaCounters, Out, Protocol, Report, Side, Summary,
    Transmit, Verdict,
};
use bytes::Bytes;
use codecs::meta::{self, CallRef, Cause, MediaDescription, StreamId};
use codecs::sip::{self, Message, MessageBuilder, Method, StartLine};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use translators::sip as tsip;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Early,
    Confirmed,
    Ended,
}

#[derive(Debug)]
struct InCall {
    flow: Flow,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    local_uri: String,
    remote_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    invite_branch: String,
    invite: Bytes,
    state: State,
    streams: Vec<MediaStream>,
    offer: Vec<MediaDescription>,
    sdp_id: u64,
    sdp_version: u64,
    reinvite: Option<TxnKey>,
    media_ip: std::net::IpAddr,
    /// Whether the media sockets of this call are still open (closed once, when it ends).
    media_open: bool,
    /// When the call was first seen ended (set lazily by the timer).
    ended_at: Option<Duration>,
    /// Calls from the inside: the PBX's INVITE transaction GW1 answers (GW1 is the UAS).
    uas_invite: Option<TxnKey>,
}

/// Ends a call's inside leg: its media sockets are released (live) and its ports stop
/// accepting media. Idempotent.
fn mark_ended(c: &mut InCall, by_local: &mut FxHashMap<SocketAddr, StreamId>, out: &mut Out) {
    c.state = State::Ended;
    if !std::mem::take(&mut c.media_open) {
        return;
    }
    for s in &c.streams {
        let rtcp = SocketAddr::new(s.local.ip(), s.local.port().wrapping_add(1));
        // A port may already serve a newer call: remove only this stream's entries.
        for local in [s.local, rtcp] {
            if by_local.get(&local) == Some(&s.stream) {
                by_local.remove(&local);
            }
        }
        out.media_sockets(Side::Inside, s.local, false);
    }
}

pub struct Gw1 {
    v4: InsideConfig,
    v6: InsideConfig,
    family: Option<Family>,
    replay: bool,
    ids: Ids,
    ports_v4: PortPool,
    ports_v6: PortPool,
    calls: FxHashMap<CallRef, InCall>,
    by_call_id: HashMap<String, CallRef>,
    by_stream: FxHashMap<StreamId, (CallRef, usize)>,
    /// Live: GW1's own media addresses (RTP and RTCP) to their stream, so RTP from inside
    /// endpoints is told from SIP by the port it arrives on.
    by_local: FxHashMap<SocketAddr, StreamId>,
    client: ClientTxns,
    server: ServerTxns,
    /// Calls from the inside take odd call and stream numbers (GW2 uses even ones).
    next_call: u32,
    next_stream: u16,
}

impl Gw1 {
    pub fn new(cfg: &EngineConfig) -> Self {
        Gw1 {
            v4: cfg.inside_v4.clone(),
            v6: cfg.inside_v6.clone(),
            family: cfg.inside_family,
            replay: cfg.replay,
            ids: Ids::new(cfg.id_seed ^ 0x6777_3100),
            ports_v4: PortPool::new(cfg.inside_v4.media_ports),
            ports_v6: PortPool::new(cfg.inside_v6.media_ports),
            calls: FxHashMap::default(),
            by_call_id: HashMap::new(),
            by_stream: FxHashMap::default(),
            by_local: FxHashMap::default(),
            client: ClientTxns::default(),
            server: ServerTxns::default(),
            next_call: 1,
            next_stream: 1,
        }
    }

    fn inside(&self, outside_family: Family) -> &InsideConfig {
        match self.family.unwrap_or(outside_family) {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Meta from GW2.
    pub fn handle_meta(&mut self, now: Duration, m: meta::Message, out: &mut Out) {
        match m {
            meta::Message::Setup(s) => {
                let family = out
                    .outside_family
                    .get(&s.call)
                    .copied()
                    .unwrap_or(Family::V4);
                self.setup(now, s, family, out)
            }
            meta::Message::Release(r) => self.release(now, r.call, r.cause, out),
            meta::Message::Alerting(_) | meta::Message::Progress(_) | meta::Message::Answer(_) => {
                self.answer_inside(now, &m, out)
            }
            meta::Message::Dtmf(d) => {
                let Some(c) = self.calls.get_mut(&d.call) else {
                    return;
                };
                if c.state != State::Confirmed {
                    return;
                }
                c.local_cseq += 1;
                let branch = self.ids.branch();
                let Some(c) = self.calls.get(&d.call) else {
                    return;
                };
                let (ct, body) = tsip::info_body(d.event, d.duration_ms);
                let req = in_dialog(c, &Method::Info, c.local_cseq, &branch)
                    .body(ct, body)
                    .build();
                let flow = c.flow;
                self.client.send(
                    now,
                    Side::Inside,
                    flow,
                    branch,
                    Method::Info,
                    d.call,
                    req,
                    out,
                );
            }
            meta::Message::MediaUpdate(u) => {
                let Some(c) = self.calls.get_mut(&u.call) else {
                    return;
                };
                match u.kind {
                    meta::OfferAnswer::Offer => {
                        c.offer = u.media;
                        c.local_cseq += 1;
                        c.sdp_version += 1;
                        let branch = self.ids.branch();
                        let Some(c) = self.calls.get(&u.call) else {
                            return;
                        };
                        let req = in_dialog(c, &Method::Invite, c.local_cseq, &branch)
                            .header("Contact", contact(c.flow))
                            .body("application/sdp", inside_sdp(c))
                            .build();
                        let flow = c.flow;
                        self.client.send(
                            now,
                            Side::Inside,
                            flow,
                            branch,
                            Method::Invite,
                            u.call,
                            req,
                            out,
                        );
                    }
                    meta::OfferAnswer::Answer => {
                        c.offer = u.media;
                        c.sdp_version += 1;
                        if let Some(key) = c.reinvite.take() {
                            let Some(c) = self.calls.get(&u.call) else {
                                return;
                            };
                            let body = inside_sdp(c);
                            let flow = c.flow;
                            if let Some(req) = self.server.get(&key).map(|t| t.request.clone()) {
                                let resp = respond_inside(self.replay, c, &req, 200)
                                    .header("Contact", contact(flow))
                                    .body("application/sdp", body)
                                    .build();
                                self.server.respond(now, &key, 200, resp, out);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// `outside_family` only matters when the configuration says "same family as outside";
    /// it is known when both halves run in one process (replay, `--role both`).
    fn setup(&mut self, now: Duration, s: meta::Setup, outside_family: Family, out: &mut Out) {
        let inside = self.inside(outside_family).clone();
        let flow = Flow {
            transport: inside.transport,
            local: inside.gw1_sip,
            remote: inside.next_hop,
        };
        let call_id = format!("{}@{}", self.ids.token(), host_of(inside.gw1_sip));
        let local_tag = self.ids.token();
        let branch = self.ids.branch();
        let mut streams = Vec::new();
        for m in &s.media {
            let Some(stream) = m.stream else { continue };
            let port = match Family::of(inside.media_ip) {
                Family::V4 => self.ports_v4.allocate(),
                Family::V6 => self.ports_v6.allocate(),
            };
            self.by_stream.insert(stream, (s.call, streams.len()));
            let local = SocketAddr::new(inside.media_ip, port);
            if !self.replay {
                self.by_local.insert(local, stream);
                self.by_local
                    .insert(SocketAddr::new(local.ip(), port.wrapping_add(1)), stream);
                out.media_sockets(Side::Inside, local, true);
            }
            streams.push(MediaStream {
                stream,
                local,
                remote: None,
                payload_types: Vec::new(),
                ssrc: None,
                counters: MediaCounters::default(),
            });
        }
        let target = tsip::inside_uri(&s.called.user, inside.next_hop);
        let local_uri = tsip::inside_name_addr(&s.calling, inside.gw1_sip);
        let remote_uri = format!("<{target}>");
        let mut c = InCall {
            flow,
            call_id: call_id.clone(),
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri,
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 1,
            invite_branch: branch.clone(),
            invite: Bytes::new(),
            state: State::Calling,
            streams,
            offer: s.media,
            sdp_id: self.ids.number(),
            sdp_version: 1,
            reinvite: None,
            media_ip: inside.media_ip,
            media_open: !self.replay,
            ended_at: None,
            uas_invite: None,
        };
        let mut b = in_dialog(&c, &Method::Invite, 1, &branch).header("Contact", contact(flow));
        if s.emergency {
            b = b.header("Priority", "emergency");
        }
        if !c.offer.is_empty() {
            b = b.body("application/sdp", inside_sdp(&c));
        }
        let req = b.build();
        c.invite = req.clone();
        self.by_call_id.insert(call_id, s.call);
        self.calls.insert(s.call, c);
        self.client.send(
            now,
            Side::Inside,
            flow,
            branch,
            Method::Invite,
            s.call,
            req,
            out,
        );
    }

    fn release(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        // A call from the inside that is not answered yet: a final response to the PBX.
        if let (Some(key), State::Early) = (c.uas_invite.clone(), c.state) {
            c.state = State::Ended;
            let tag = c.local_tag.clone();
            if let Some(req) = self.server.get(&key).map(|t| t.request.clone()) {
                let code = translators::cause::cause_to_status(cause);
                let b = MessageBuilder::response_to(&req, code, Some(&tag))
                    .header("Reason", format!("Q.850;cause={}", cause.0));
                self.server.respond(now, &key, code, b.build(), out);
            }
            return;
        }
        match c.state {
            State::Calling | State::Early => {
                // CANCEL carries the INVITE's branch and CSeq number (RFC 3261 section 9.1).
                let req = MessageBuilder::request(&Method::Cancel, &c.remote_target)
                    .header(
                        "Via",
                        format!(
                            "SIP/2.0/{} {};branch={};rport",
                            c.flow.transport.via_token(),
                            host_port(c.flow.local),
                            c.invite_branch
                        ),
                    )
                    .header("Max-Forwards", "70")
                    .header("From", format!("{};tag={}", c.local_uri, c.local_tag))
                    .header("To", c.remote_uri.clone())
                    .header("Call-ID", c.call_id.clone())
                    .header("CSeq", "1 CANCEL")
                    .header("Reason", format!("Q.850;cause={}", cause.0))
                    .build();
                let branch = format!("{}-cancel", c.invite_branch);
                let flow = c.flow;
                mark_ended(c, &mut self.by_local, out);
                self.client.send(
                    now,
                    Side::Inside,
                    flow,
                    branch,
                    Method::Cancel,
                    call,
                    req,
                    out,
                );
            }
            State::Confirmed => {
                c.local_cseq += 1;
                mark_ended(c, &mut self.by_local, out);
                let branch = self.ids.branch();
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                let req = in_dialog(c, &Method::Bye, c.local_cseq, &branch)
                    .header("Reason", format!("Q.850;cause={}", cause.0))
                    .build();
                let flow = c.flow;
                self.client
                    .send(now, Side::Inside, flow, branch, Method::Bye, call, req, out);
            }
            State::Ended => {}
        }
    }

    /// A datagram on the inside: SIP from the PBX or RTP from an inside endpoint.
    pub fn handle_inside_datagram(
        &mut self,
        now: Duration,
        flow: Flow,
        data: Bytes,
        out: &mut Out,
    ) {
        // RTP/RTCP on one of GW1's media ports (live; replay hands media over by stream).
        if let Some(&stream) = self.by_local.get(&flow.local) {
            self.handle_inside_media(stream, flow.remote, data, out);
            return;
        }
        if !looks_like_sip(&data) {
            return;
        }
        match sip::parse_datagram(data) {
            Ok((msg, _)) => self.handle_inside_message(now, flow, msg, None, out),
            Err(e) => out.report(Report {
                protocol: Protocol::Sip,
                side: Side::Inside,
                summary: Summary::Text("unparsable SIP message".to_owned()),
                verdict: Verdict::Rejected,
                reason: Some(format!("malformed: {e}")),
                response: None,
                call: None,
            }),
        }
    }

    /// A SIP message from the inside. `call` is set in replay, where the message comes from
    /// the capture's answering party and carries the outside dialog's identifiers.
    pub fn handle_inside_message(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: Message,
        call: Option<CallRef>,
        out: &mut Out,
    ) {
        let summary = msg.summary();
        let call = call.or_else(|| {
            msg.call_id()
                .ok()
                .and_then(|id| self.by_call_id.get(id).copied())
        });
        let report = |verdict, reason: Option<String>, response| Report {
            protocol: Protocol::Sip,
            side: Side::Inside,
            summary: summary.clone().into(),
            verdict,
            reason,
            response,
            call: call.map(|c| c.0),
        };
        if let Err(e) = msg.check() {
            out.report(report(
                Verdict::Rejected,
                Some(format!("malformed: {e}")),
                None,
            ));
            return;
        }
        // An INVITE from the PBX that matches no call starts a call toward the Internet.
        let new_call = call.is_none()
            && msg.method() == Some(&Method::Invite)
            && msg.to().is_ok_and(|t| t.tag().is_none())
            && !self.replay;
        if new_call {
            let r = match self.call_from_inside(now, flow, &msg, out) {
                Ok(call) => Report {
                    call: Some(call.0),
                    ..report(Verdict::Accepted, None, Some(100))
                },
                Err(status) => report(
                    Verdict::Rejected,
                    Some("call from the inside refused".to_owned()),
                    Some(status),
                ),
            };
            out.report(r);
            return;
        }
        let Some(call) = call else {
            out.report(report(
                Verdict::Ignored,
                Some("matches no call of the gateway".to_owned()),
                None,
            ));
            return;
        };
        match msg.start() {
            StartLine::Response(st) => {
                let status = st.code;
                let r = self.inside_response(now, call, status, &msg, out);
                match r {
                    Ok(()) => out.report(report(Verdict::Accepted, None, None)),
                    Err(why) => out.report(report(Verdict::Ignored, Some(why.to_owned()), None)),
                }
            }
            StartLine::Request(req) => {
                let method = req.method.clone();
                match self.inside_request(now, flow, call, &method, &msg, out) {
                    Ok(status) => out.report(report(Verdict::Accepted, None, status)),
                    Err(status) => out.report(report(
                        Verdict::Rejected,
                        Some("no matching dialog".to_owned()),
                        Some(status),
                    )),
                }
            }
        }
    }

    /// A new call from the PBX (intranet -> Internet): GW1 is the UAS of the inside dialog and
    /// hands the call to GW2 as a Meta Setup. Returns the status of a refusal.
    fn call_from_inside(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        out: &mut Out,
    ) -> Result<CallRef, u16> {
        let key = TxnKey::of(msg, None).ok_or(400u16)?;
        let call_id = msg.call_id().map_err(|_| 400u16)?.to_owned();
        let from = msg.from().map_err(|_| 400u16)?;
        let to = msg.to().map_err(|_| 400u16)?;
        let uri = match msg.start() {
            StartLine::Request(r) => sip::Uri::parse(&r.uri).map_err(|_| 400u16)?,
            StartLine::Response(_) => return Err(400),
        };
        let call = CallRef(self.next_call);
        self.next_call = self.next_call.wrapping_add(2);
        let mut media = Vec::new();
        let mut remotes = Vec::new();
        if let Some(sdp) = policy::sdp_body(msg) {
            let next_stream = &mut self.next_stream;
            let parsed = tsip::offer_from_sdp(&sdp, &mut || {
                let id = StreamId(*next_stream);
                *next_stream = next_stream.wrapping_add(2);
                id
            })
            .map_err(|_| 488u16)?;
            media = parsed.media;
            remotes = parsed.remotes;
        }
        let media_ip = if flow.local.is_ipv4() {
            self.v4.media_ip
        } else {
            self.v6.media_ip
        };
        let mut streams = Vec::new();
        for (i, m) in media.iter().enumerate() {
            let Some(stream) = m.stream else { continue };
            let port = match Family::of(media_ip) {
                Family::V4 => self.ports_v4.allocate(),
                Family::V6 => self.ports_v6.allocate(),
            };
            let local = SocketAddr::new(media_ip, port);
            self.by_stream.insert(stream, (call, streams.len()));
            self.by_local.insert(local, stream);
            self.by_local
                .insert(SocketAddr::new(local.ip(), port.wrapping_add(1)), stream);
            out.media_sockets(Side::Inside, local, true);
            streams.push(MediaStream {
                stream,
                local,
                remote: remotes.get(i).copied().flatten(),
                payload_types: Vec::new(),
                ssrc: None,
                counters: MediaCounters::default(),
            });
        }
        let remote_target = msg
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| c.uri.raw)
            .unwrap_or_else(|| from.uri.raw.clone());
        let c = InCall {
            flow,
            call_id: call_id.clone(),
            local_tag: self.ids.token(),
            remote_tag: from.tag().map(str::to_owned),
            local_uri: format!("<{}>", to.uri.raw),
            remote_uri: format!("<{}>", from.uri.raw),
            remote_target,
            route_set: msg
                .headers()
                .list(&sip::HeaderName::RECORD_ROUTE)
                .map(str::to_owned)
                .collect(),
            local_cseq: 0,
            invite_branch: String::new(),
            invite: Bytes::new(),
            state: State::Early,
            streams,
            offer: media.clone(),
            sdp_id: self.ids.number(),
            sdp_version: 1,
            reinvite: None,
            media_ip,
            media_open: true,
            ended_at: None,
            uas_invite: Some(key.clone()),
        };
        self.server.insert(
            key.clone(),
            ServerTxn {
                side: Side::Inside,
                flow,
                request: msg.clone(),
                call: Some(call),
                last_response: None,
                retransmit: None,
                expires: now + super::sipua::LINGER,
            },
        );
        let trying = MessageBuilder::response_to(msg, 100, None).build();
        self.server.respond(now, &key, 100, trying, out);
        let emergency = msg
            .headers()
            .single(&sip::HeaderName::from("Priority"), "Priority")
            .ok()
            .flatten()
            .is_some_and(|p| p.eq_ignore_ascii_case("emergency"));
        out.to_gw2.push_back(meta::Message::Setup(meta::Setup {
            call,
            calling: tsip::calling_party(&from),
            called: tsip::called_party(&uri, &to),
            emergency,
            media,
        }));
        self.by_call_id.insert(call_id, call);
        self.calls.insert(call, c);
        Ok(call)
    }

    /// GW2's answers for a call from the inside become responses on the PBX's INVITE.
    fn answer_inside(&mut self, now: Duration, m: &meta::Message, out: &mut Out) {
        let Some(call) = m.call() else { return };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(key) = c.uas_invite.clone() else {
            return;
        };
        let Some(req) = self.server.get(&key).map(|t| t.request.clone()) else {
            return;
        };
        if self.server.get(&key).is_some_and(|t| t.is_final()) {
            return;
        }
        let (code, media) = match m {
            meta::Message::Alerting(a) if a.media.is_empty() => (180, None),
            meta::Message::Alerting(a) => (183, Some(a.media.clone())),
            meta::Message::Progress(p) if p.media.is_empty() => (180, None),
            meta::Message::Progress(p) => (183, Some(p.media.clone())),
            meta::Message::Answer(a) => (200, Some(a.media.clone())),
            _ => return,
        };
        if let Some(media) = media {
            // The answer's codecs, on GW1's ports.
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
        let mut b = MessageBuilder::response_to(&req, code, Some(&c.local_tag))
            .header("Contact", contact(c.flow));
        if code != 180 {
            c.sdp_version += 1;
            b = b.body("application/sdp", inside_sdp(c));
        }
        if code == 200 {
            c.state = State::Confirmed;
        }
        self.server.respond(now, &key, code, b.build(), out);
    }

    fn inside_response(
        &mut self,
        now: Duration,
        call: CallRef,
        status: u16,
        msg: &Message,
        out: &mut Out,
    ) -> Result<(), &'static str> {
        let cseq = msg.cseq().map_err(|_| "bad CSeq")?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err("call has ended");
        };
        // Live: match our transaction by branch. Replay: the answering party answered the
        // caller's request, so match by method within the call.
        let branch = if self.replay {
            match cseq.method {
                Method::Invite => Some(c.invite_branch.clone()),
                ref m => self.client.find(call, m),
            }
        } else {
            msg.vias()
                .ok()
                .and_then(|v| v.first().and_then(|v| v.branch().map(str::to_owned)))
        };
        if let Some(b) = &branch {
            if let Some((_, _, true)) = self.client.on_response(b, status) {
                if cseq.method == Method::Invite && (200..300).contains(&status) {
                    self.send_ack(now, call, out);
                }
                return Err("retransmitted response");
            }
        }
        if cseq.method != Method::Invite {
            return Ok(());
        }
        if c.state == State::Ended && status < 200 {
            return Ok(());
        }
        if let Ok(to) = msg.to() {
            if let Some(tag) = to.tag() {
                c.remote_tag = Some(tag.to_owned());
            }
        }
        // Replay: the answering party's Contact is an outside address; the inside next hop
        // stays the target.
        if !self.replay {
            if let Some(Ok(contact)) = msg.contacts().ok().map(|v| v.into_iter().next().ok_or(())) {
                c.remote_target = contact.uri.raw.clone();
            }
        }
        let answer = policy::sdp_body(msg).and_then(|sdp| {
            let ans = tsip::answer_from_sdp(&sdp, &c.offer).ok()?;
            Some((ans, sdp))
        });
        let media = match &answer {
            Some((ans, _)) => {
                let peer = c.flow.remote;
                for (s, r) in c.streams.iter_mut().zip(&ans.remotes) {
                    if let Some(r) = r {
                        s.remote = Some(inside_media_addr(self.replay, peer, *r));
                    }
                }
                ans.media.clone()
            }
            None => Vec::new(),
        };
        let remotes: Vec<Option<SocketAddr>> = answer
            .as_ref()
            .map(|(a, _)| a.remotes.clone())
            .unwrap_or_default();
        if self.replay && !remotes.is_empty() {
            out.replay_answering_media.push_back((call, remotes));
        }
        match status {
            100 => {}
            101..=199 => {
                c.state = State::Early;
                if status == 180 && media.is_empty() {
                    out.to_gw2
                        .push_back(meta::Message::Alerting(meta::Alerting { call, media }));
                } else {
                    out.to_gw2
                        .push_back(meta::Message::Progress(meta::Progress { call, media }));
                }
            }
            200..=299 => {
                if c.state == State::Ended {
                    // Answered after we cancelled: ACK and hang up (RFC 3261 section 15).
                    self.send_ack(now, call, out);
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.state = State::Confirmed;
                    }
                    self.release(now, call, Cause::NORMAL_CLEARING, out);
                    return Ok(());
                }
                c.state = State::Confirmed;
                out.to_gw2
                    .push_back(meta::Message::Answer(meta::Answer { call, media }));
                self.send_ack(now, call, out);
            }
            _ => {
                // Non-2xx final: ACK within the transaction (same branch), then release.
                let was_ended = c.state == State::Ended;
                mark_ended(c, &mut self.by_local, out);
                let ack = MessageBuilder::request(&Method::Ack, &c.remote_target.clone())
                    .header(
                        "Via",
                        format!(
                            "SIP/2.0/{} {};branch={};rport",
                            c.flow.transport.via_token(),
                            host_port(c.flow.local),
                            c.invite_branch
                        ),
                    )
                    .header("Max-Forwards", "70")
                    .header("From", format!("{};tag={}", c.local_uri, c.local_tag))
                    .header("To", to_value(c))
                    .header("Call-ID", c.call_id.clone())
                    .header("CSeq", "1 ACK")
                    .build();
                out.transmits.push_back(Transmit {
                    side: Side::Inside,
                    flow: c.flow,
                    protocol: Protocol::Sip,
                    payload: ack,
                });
                if !was_ended {
                    out.to_gw2.push_back(meta::Message::Release(meta::Release {
                        call,
                        cause: translators::cause::status_to_cause(status),
                    }));
                }
            }
        }
        Ok(())
    }

    fn send_ack(&mut self, now: Duration, call: CallRef, out: &mut Out) {
        let branch = self.ids.branch();
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let req = in_dialog(c, &Method::Ack, 1, &branch).build();
        let flow = c.flow;
        self.client
            .send(now, Side::Inside, flow, branch, Method::Ack, call, req, out);
    }

    fn inside_request(
        &mut self,
        now: Duration,
        flow: Flow,
        call: CallRef,
        method: &Method,
        msg: &Message,
        out: &mut Out,
    ) -> Result<Option<u16>, u16> {
        let key = TxnKey::of(msg, None).ok_or(400u16)?;
        if *method == Method::Ack {
            // The PBX confirmed our 2xx (calls from the inside): stop retransmitting it.
            self.server.stop_call_retransmits(call);
            return Ok(None);
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(481);
        };
        self.server.insert(
            key.clone(),
            ServerTxn {
                side: Side::Inside,
                flow: c.flow,
                request: msg.clone(),
                call: Some(call),
                last_response: None,
                retransmit: None,
                expires: now + super::sipua::LINGER,
            },
        );
        let _ = flow;
        match method {
            Method::Cancel if c.uas_invite.is_some() && c.state == State::Early => {
                // The PBX gave up on its call (RFC 3261 section 9.2): 200 to the CANCEL,
                // 487 to the INVITE, and the call is released toward GW2.
                c.state = State::Ended;
                let tag = c.local_tag.clone();
                let invite_key = c.uas_invite.clone();
                let ok = MessageBuilder::response_to(msg, 200, None).build();
                self.server.respond(now, &key, 200, ok, out);
                if let Some(k) = invite_key {
                    if let Some(inv) = self.server.get(&k).map(|t| t.request.clone()) {
                        let r = MessageBuilder::response_to(&inv, 487, Some(&tag)).build();
                        self.server.respond(now, &k, 487, r, out);
                    }
                }
                out.to_gw2.push_back(meta::Message::Release(meta::Release {
                    call,
                    cause: Cause::NORMAL_CLEARING,
                }));
                Ok(Some(200))
            }
            Method::Bye => {
                mark_ended(c, &mut self.by_local, out);
                let ok = respond_inside(self.replay, c, msg, 200).build();
                self.server.respond(now, &key, 200, ok, out);
                out.to_gw2.push_back(meta::Message::Release(meta::Release {
                    call,
                    cause: Cause::NORMAL_CLEARING,
                }));
                Ok(Some(200))
            }
            Method::Invite | Method::Update => {
                let Some(sdp) = policy::sdp_body(msg) else {
                    let body = inside_sdp(c);
                    let resp = respond_inside(self.replay, c, msg, 200)
                        .header("Contact", contact(c.flow))
                        .body("application/sdp", body)
                        .build();
                    self.server.respond(now, &key, 200, resp, out);
                    return Ok(Some(200));
                };
                let ids: Vec<StreamId> = c.streams.iter().map(|s| s.stream).collect();
                let mut i = 0usize;
                let Ok(parsed) = tsip::offer_from_sdp(&sdp, &mut || {
                    let id = ids.get(i).copied().unwrap_or(StreamId(u16::MAX));
                    i += 1;
                    id
                }) else {
                    let r = respond_inside(self.replay, c, msg, 488).build();
                    self.server.respond(now, &key, 488, r, out);
                    return Err(488);
                };
                let peer = c.flow.remote;
                for (s, r) in c.streams.iter_mut().zip(&parsed.remotes) {
                    if let Some(r) = r {
                        s.remote = Some(inside_media_addr(self.replay, peer, *r));
                    }
                }
                c.reinvite = Some(key.clone());
                if *method == Method::Invite {
                    let t = respond_inside(self.replay, c, msg, 100).build();
                    self.server.respond(now, &key, 100, t, out);
                }
                out.to_gw2
                    .push_back(meta::Message::MediaUpdate(meta::MediaUpdate {
                        call,
                        kind: meta::OfferAnswer::Offer,
                        media: parsed.media,
                    }));
                Ok(Some(100))
            }
            Method::Info => {
                let ct = msg.content_type().ok().flatten();
                if let Some((event, duration_ms)) = ct
                    .as_ref()
                    .and_then(|ct| tsip::dtmf_from_info(ct, &msg.body()))
                {
                    out.to_gw2.push_back(meta::Message::Dtmf(meta::Dtmf {
                        call,
                        event,
                        duration_ms,
                    }));
                }
                let ok = respond_inside(self.replay, c, msg, 200).build();
                self.server.respond(now, &key, 200, ok, out);
                Ok(Some(200))
            }
            _ => {
                let ok = respond_inside(self.replay, c, msg, 200).build();
                self.server.respond(now, &key, 200, ok, out);
                Ok(Some(200))
            }
        }
    }

    /// Media from GW2 over the tunnel: sent from GW1's inside port to the inside endpoint.
    pub fn handle_tunnel_media(
        &mut self,
        stream: StreamId,
        rtcp: bool,
        data: Bytes,
        out: &mut Out,
    ) {
        let Some(&(call, idx)) = self.by_stream.get(&stream) else {
            return;
        };
        let transmit = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.streams.get_mut(idx))
            .and_then(|s| s.relay(Side::Inside, rtcp, data));
        out.transmits.extend(transmit);
    }

    /// RTP/RTCP from an inside endpoint for `stream`: checked, then sent over the tunnel.
    pub fn handle_inside_media(
        &mut self,
        stream: StreamId,
        src: SocketAddr,
        data: Bytes,
        out: &mut Out,
    ) {
        let Some(&(call, idx)) = self.by_stream.get(&stream) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(s) = c.streams.get_mut(idx) else {
            return;
        };
        let rtcp_hint = super::media::is_rtcp(&data);
        // Replay: the answering party is mapped onto the inside next hop, RTCP onto its RTP
        // port, so the source check compares like with like.
        let src = if self.replay {
            let port = if rtcp_hint {
                src.port().wrapping_sub(1)
            } else {
                src.port()
            };
            SocketAddr::new(c.flow.remote.ip(), port)
        } else {
            src
        };
        let protocol = if rtcp_hint {
            Protocol::Rtcp
        } else {
            Protocol::Rtp
        };
        let summary = media_summary(&data);
        match s.check(src, &data) {
            Ok(rtcp) => {
                out.media_to_gw2.push_back((s.stream, rtcp, data));
                out.report(Report {
                    protocol,
                    side: Side::Inside,
                    summary,
                    verdict: Verdict::Accepted,
                    reason: None,
                    response: None,
                    call: Some(call.0),
                });
            }
            Err(d) => out.report(Report {
                protocol,
                side: Side::Inside,
                summary,
                verdict: Verdict::Rejected,
                reason: Some(d.reason()),
                response: None,
                call: Some(call.0),
            }),
        }
    }

    /// Ended calls linger to absorb retransmissions, then go with their indexes.
    fn forget_ended_calls(&mut self, now: Duration) {
        let mut expired = Vec::new();
        for (k, c) in self.calls.iter_mut() {
            if c.state != State::Ended {
                continue;
            }
            match c.ended_at {
                None => c.ended_at = Some(now),
                Some(t) if now >= t + super::sipua::LINGER => expired.push(*k),
                Some(_) => {}
            }
        }
        for call in expired {
            let Some(c) = self.calls.remove(&call) else {
                continue;
            };
            self.by_call_id.remove(&c.call_id);
            for s in &c.streams {
                self.by_stream.remove(&s.stream);
            }
        }
    }

    /// Calls not yet ended.
    pub fn active_calls(&self) -> Vec<CallRef> {
        let mut v: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| c.state != State::Ended)
            .map(|(k, _)| *k)
            .collect();
        v.sort();
        v
    }

    pub fn handle_timeout(&mut self, now: Duration, out: &mut Out) {
        self.forget_ended_calls(now);
        self.server.handle_timeout(now, out);
        for (call, method) in self.client.handle_timeout(now, out) {
            if method == Method::Invite {
                if let Some(c) = self.calls.get_mut(&call) {
                    if c.state == State::Calling || c.state == State::Early {
                        mark_ended(c, &mut self.by_local, out);
                        out.to_gw2.push_back(meta::Message::Release(meta::Release {
                            call,
                            cause: Cause::RECOVERY_ON_TIMER_EXPIRY,
                        }));
                    }
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

/// Where inside media goes. Replay maps the capture's answering party onto the inside next hop
/// (its IP, the announced port), so the output stays in the inside network and family.
fn inside_media_addr(replay: bool, next_hop: SocketAddr, announced: SocketAddr) -> SocketAddr {
    if replay {
        SocketAddr::new(next_hop.ip(), announced.port())
    } else {
        announced
    }
}

/// A response to an inside request (RFC 3261 section 8.2.6.2). In replay the request is the
/// capture's answering party's and carries the outside dialog's identifiers; the response is
/// written in GW1's inside dialog instead, as the inside party would have received it.
fn respond_inside(replay: bool, c: &InCall, req: &Message, code: u16) -> MessageBuilder {
    if !replay {
        return MessageBuilder::response_to(req, code, Some(&c.local_tag));
    }
    let branch = req
        .vias()
        .ok()
        .and_then(|v| v.first().and_then(|v| v.branch().map(str::to_owned)))
        .unwrap_or_default();
    let cseq = req
        .cseq()
        .map(|c| format!("{} {}", c.seq, c.method))
        .unwrap_or_default();
    MessageBuilder::response(code)
        .header(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch}",
                c.flow.transport.via_token(),
                host_port(c.flow.remote)
            ),
        )
        .header("From", to_value(c))
        .header("To", format!("{};tag={}", c.local_uri, c.local_tag))
        .header("Call-ID", c.call_id.clone())
        .header("CSeq", cseq)
}

fn to_value(c: &InCall) -> String {
    match &c.remote_tag {
        Some(t) => format!("{};tag={t}", c.remote_uri),
        None => c.remote_uri.clone(),
    }
}

fn contact(flow: Flow) -> String {
    format!("<sip:gw1@{}>", host_port(flow.local))
}

/// A request in the inside dialog (RFC 3261 section 12.2.1.1).
fn in_dialog(c: &InCall, method: &Method, cseq: u32, branch: &str) -> MessageBuilder {
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
        .header("From", format!("{};tag={}", c.local_uri, c.local_tag))
        .header("To", to_value(c))
        .header("Call-ID", c.call_id.clone())
        .header("CSeq", format!("{cseq} {method}"))
        .header("User-Agent", "sgw")
}

fn inside_sdp(c: &InCall) -> Bytes {
    let ports: Vec<Option<u16>> = c
        .offer
        .iter()
        .map(|m| {
            m.stream
                .and_then(|id| c.streams.iter().find(|s| s.stream == id))
                .map(|s| s.local.port())
        })
        .collect();
    tsip::sdp_from_media(&c.offer, c.media_ip, &ports, c.sdp_id, c.sdp_version)
}
