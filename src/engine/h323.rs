//! H.323 in the engine: GW2 terminates H.225.0 call signalling from outside (TPKT over TCP, Q.931
//! with the H.225.0 PDU in User-user), follows separate H.245 connections announced in
//! `h245Address`, reports tunnelled H.245 and answers RAS; GW1 emits H.323 toward the inside when
//! the inside protocol is H.323.
//!
//! What GW2 does, per H.225.0 clause 7 / H.323 clause 8:
//! - A well-formed Setup becomes a Meta Setup (parties, fastStart offer) and is answered with Call
//!   Proceeding; Meta Alerting / Progress / Answer / Release from GW1 become Alerting, Progress,
//!   Connect (with a fastStart answer carrying GW2's own media addresses) and Release Complete.
//! - A malformed or incomplete message is answered with Release Complete carrying the Q.931 cause
//!   (Q.931 clause 5.8: 95 invalid message, 96 mandatory IE missing, 100 invalid IE contents, 81
//!   invalid call reference) and reported as rejected; a message whose call reference cannot be
//!   read is only reported (clause 5.8.1 to 5.8.3.1 say ignore it).
//! - A Setup without fastStart gets media over H.245, which GW2 runs itself
//!   ([`translators::h245_session`]): tunnelled in H.225.0 when the caller tunnels, else over a
//!   separate connection to an `h245Address` GW2 listens at for this call only (on the port
//!   number of the call's media port; only the caller's address may connect; GW2 never
//!   connects out to an address a PDU names). The Meta Setup waits for the caller's
//!   capability set (at most [`CAPABILITIES_WAIT`], then GW2's own codecs are offered), so
//!   the other side answers with a codec the caller can receive; at the answer GW2 sends its
//!   capability set (the answered codecs only), opens its channel and accepts the caller's.
//!   UserInputIndication becomes Meta DTMF and Meta DTMF becomes UserInputIndication;
//!   EndSessionCommand ends the call. Replay reports H.245 but runs no procedures.
//! - Calls with fastStart: separate and tunnelled H.245 PDUs are decoded and reported by name;
//!   UserInputIndication becomes Meta DTMF.
//! - RAS (UDP 1718/1719, the ports of H.225.0 clause 7.7 and tshark): GW2 is a gateway without a
//!   gatekeeper. Requests meant for a gatekeeper (GRQ, RRQ, URQ, ARQ, BRQ, DRQ, LRQ) are answered
//!   with the matching reject, so endpoints stop retrying; everything else (confirms, rejects,
//!   IRQ from a gatekeeper we are not registered with) is reported and ignored.
//!
//! Calls, their references, stream ids and media ports live in the engine's call and media
//! tables, shared with SIP: one admission chain, one pool of ports, one call record per call.
//! The state of a call here is dropped when the call table forgets it.

use super::calls::{CallProtocol, Direction, NewCall};
use super::ids::Ids;
use super::media::payload_types;
use super::{
    ConnId, EngineConfig, Event, Family, Flow, InsideConfig, Out, Protocol, Report, Side, Summary,
    Transmit, Transport, Verdict,
};
use bytes::Bytes;
use codecs::h225::{self, asn::H323UUPDUH323MessageBody as Body};
use codecs::meta::{self, CallRef, Cause, MediaDescription, StreamId};
use codecs::q931::{self, MessageType};
use codecs::tpkt::{self, TpktFramer};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use translators::h245_session::{Session, SessionEvent};
use translators::h323 as th323;

/// The H.225.0 call signalling port (H.225.0 clause 7.1 / H.323 annex).
pub const H225_PORT: u16 = 1720;
/// RAS ports: gatekeeper discovery (multicast) and unicast RAS (H.225.0 clause 7.7).
pub const RAS_PORTS: [u16; 2] = [1718, 1719];
/// H.225.0 and H.245 streams tracked at once; further connections are not followed.
pub const MAX_STREAMS: usize = 65_536;
/// Separate H.245 addresses remembered at once.
pub const MAX_H245_ADDRESSES: usize = 65_536;

/// How long the Meta Setup of a call without fastStart waits for the caller's capabilities.
pub const CAPABILITIES_WAIT: Duration = Duration::from_secs(3);

/// The audio codecs GW2 offers for an H.323 caller that sent no capabilities in time.
fn default_audio() -> Vec<meta::Codec> {
    [
        (0, "PCMU"),
        (8, "PCMA"),
        (9, "G722"),
        (18, "G729"),
        (4, "G723"),
    ]
    .into_iter()
    .map(|(pt, name)| meta::Codec {
        payload_type: pt,
        name: name.to_owned(),
        clock_rate: 8000,
        channels: 1,
        fmtp: None,
    })
    .collect()
}

/// How a call without fastStart carries H.245.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H245Transport {
    /// In `h245Control` of H.225.0 messages (Facility when no other message is due).
    Tunnel,
    /// A separate connection: accepted where the gateway listens (`listen`, until the caller
    /// connected or the call ended), or opened by GW1 to its PBX; `conn` once it exists.
    Separate {
        listen: Option<SocketAddr>,
        conn: Option<Flow>,
    },
}

/// GW2's H.245 for one outside call without fastStart.
struct H245Leg {
    session: Session,
    transport: H245Transport,
    /// The outside stream H.245 opens channels for.
    stream: StreamId,
    /// The Meta Setup, held until the caller's capabilities come or `deadline` passes.
    setup: Option<meta::Setup>,
    deadline: Duration,
    /// The deadline last put into [`H323::timers`] for this leg.
    scheduled: Option<Duration>,
}

/// Which protocol GW1 speaks on the inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InsideProtocol {
    Sip,
    H323,
}

/// Whether a TCP stream is H.225.0 call signalling.
pub fn is_h225_stream(flow: &Flow, first: &[u8]) -> bool {
    flow.local.port() == H225_PORT
        || flow.remote.port() == H225_PORT
        || tpkt::looks_like_tpkt(first)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    H225,
    H245,
}

struct Stream {
    kind: Kind,
    /// Outside (GW2's listener, replay) or inside (GW1's H.323 PBX).
    side: Side,
    framer: TpktFramer,
    /// Framing was lost: the rest of the stream is dropped (the live gateway closes it).
    dead: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Early,
    Confirmed,
    Ended,
}

/// Which end of an H.225.0 call a leg is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    /// The gateway answers: GW2 from an outside caller, GW1 from its inside PBX.
    Answering,
    /// The gateway calls: GW1 toward its inside PBX.
    Calling,
}

/// One H.323 leg of a call.
struct Call {
    flow: Flow,
    ids: th323::CallIds,
    /// An answering leg: the caller's fastStart proposals.
    proposals: Vec<codecs::h245::asn::OpenLogicalChannel>,
    offer: Vec<MediaDescription>,
    streams: Vec<StreamId>,
    state: State,
    /// Keys this call put into `by_key` and `h245`, removed when it is forgotten.
    key: (SocketAddr, SocketAddr, u16),
    /// Outside (GW2, the caller on the Internet) or inside (GW1, the PBX).
    side: Side,
    h245: Vec<SocketAddr>,
    /// The far end tunnels H.245 (the gateway always offers to).
    tunnelling: bool,
    /// H.245 run by the gateway (calls without fastStart, live).
    procedures: Option<Box<H245Leg>>,
    /// A calling leg: the callee's h245Address, for a separate H.245 connection.
    far_h245: Option<SocketAddr>,
    /// A calling leg: Connect came (the Meta Answer may wait for H.245).
    connected: bool,
    /// A calling leg: the PBX answered GW1's fastStart proposals.
    fast_answered: bool,
    /// A calling leg: tunnelled H.245 the PBX sent before GW1's session started (at most
    /// [`MAX_EARLY_H245`]), given to the session when it starts.
    early_h245: Vec<Bytes>,
    /// A calling leg waiting for the gatekeeper's admission: its Setup, sent on ACF.
    held_setup: Option<q931::Message>,
}

/// Tunnelled H.245 PDUs kept for a session that has not started yet.
const MAX_EARLY_H245: usize = 16;

pub struct H323 {
    replay: bool,
    v4: InsideConfig,
    v6: InsideConfig,
    inside_family: Option<Family>,
    ids: Ids,
    next_crv: u16,
    next_tcp_port: u16,
    streams: HashMap<ConnId, Stream>,
    /// Answering legs.
    calls: FxHashMap<CallRef, Call>,
    /// (caller, GW2, call reference value) of each outside call.
    by_key: HashMap<(SocketAddr, SocketAddr, u16), CallRef>,
    /// Separate H.245 addresses announced in H.225.0 messages.
    h245: HashMap<SocketAddr, CallRef>,
    /// Calling legs (GW1 toward its H.323 PBX).
    inside: FxHashMap<CallRef, Call>,
    /// Separate H.245 connections GW1 opened for its calling legs.
    h245_out: HashMap<(SocketAddr, SocketAddr), CallRef>,
    /// GW1 registers to a gatekeeper: each call of the PBX is admitted first (ARQ).
    gatekeeper: bool,
    /// H.225.0/H.245 streams not followed because [`MAX_STREAMS`] were tracked.
    pub streams_refused: u64,
    /// `h245Address`es not remembered because [`MAX_H245_ADDRESSES`] were.
    pub h245_addresses_refused: u64,
    /// Calls whose H.245 procedures have timers (their sessions are polled, no other call).
    timed: rustc_hash::FxHashSet<(Role, CallRef)>,
    /// The deadlines of the legs in `timed`, earliest first. An entry goes stale when a leg's
    /// deadline moves or its call ends; it is skipped when it fires.
    timers: super::timers::Timers<(Role, CallRef)>,
}

impl H323 {
    pub fn new(cfg: &EngineConfig) -> Self {
        H323 {
            replay: cfg.replay,
            v4: cfg.inside_v4.clone(),
            v6: cfg.inside_v6.clone(),
            inside_family: cfg.inside_family,
            ids: match &cfg.id_key {
                Some(key) => key.ids(0x6832_3233),
                None => Ids::new(cfg.id_seed ^ 0x6832_3233),
            },
            next_crv: 0,
            next_tcp_port: 0,
            streams: HashMap::new(),
            calls: FxHashMap::default(),
            by_key: HashMap::new(),
            h245: HashMap::new(),
            inside: FxHashMap::default(),
            h245_out: HashMap::new(),
            gatekeeper: cfg.gatekeeper.is_some(),
            streams_refused: 0,
            h245_addresses_refused: 0,
            timed: rustc_hash::FxHashSet::default(),
            timers: super::timers::Timers::default(),
        }
    }

    fn guid(&mut self) -> [u8; 16] {
        let a = self.ids.number().to_be_bytes();
        let b = self.ids.number().to_be_bytes();
        let mut g = [0u8; 16];
        for (d, s) in g.iter_mut().zip(a.iter().chain(b.iter())) {
            *d = *s;
        }
        g
    }

    /// Whether this stream is H.225.0 or H.245; claims it on its first bytes.
    pub fn claim_stream(&mut self, conn: ConnId, flow: &Flow, first: &[u8]) -> bool {
        if self.streams.contains_key(&conn) {
            return true;
        }
        if self.streams.len() >= MAX_STREAMS {
            self.streams_refused += 1;
            return false;
        }
        let kind = if self.h245.contains_key(&flow.local) || self.h245.contains_key(&flow.remote) {
            Kind::H245
        } else if is_h225_stream(flow, first) {
            Kind::H225
        } else {
            return false;
        };
        self.streams.insert(
            conn,
            Stream {
                kind,
                side: Side::Outside,
                framer: TpktFramer::new(),
                dead: false,
            },
        );
        true
    }

    /// A stream from an H.225.0 listener, or one GW1 opened toward its H.323 PBX (live):
    /// H.225.0 whatever its first bytes.
    pub fn claim_h225_stream(&mut self, conn: ConnId, side: Side) -> bool {
        if self.streams.len() >= MAX_STREAMS {
            self.streams_refused += 1;
            return false;
        }
        self.streams.insert(
            conn,
            Stream {
                kind: Kind::H225,
                side,
                framer: TpktFramer::new(),
                dead: false,
            },
        );
        true
    }

    /// Whether this part holds `call` on `side` (GW2's outside calls, GW1's inside calls).
    pub fn holds(&self, side: Side, call: CallRef) -> bool {
        self.calls.get(&call).is_some_and(|c| c.side == side)
            || (side == Side::Inside && self.inside.contains_key(&call))
    }

    pub fn stream_closed(&mut self, conn: ConnId) {
        self.streams.remove(&conn);
    }

    /// Bytes were lost: TPKT cannot find its next header, so the stream is given up.
    pub fn stream_gap(&mut self, conn: ConnId) {
        if let Some(s) = self.streams.get_mut(&conn) {
            s.dead = true;
        }
    }

    /// Bytes of a claimed stream.
    pub fn handle_stream(
        &mut self,
        now: Duration,
        conn: ConnId,
        flow: Flow,
        data: &[u8],
        out: &mut Out,
    ) {
        let Some(s) = self.streams.get_mut(&conn) else {
            return;
        };
        if s.dead {
            return;
        }
        s.framer.push(data);
        let (kind, side) = (s.kind, s.side);
        let mut frames = Vec::new();
        let mut lost = None;
        while let Some(f) = s.framer.next_frame() {
            match f {
                Ok(f) => frames.push(f),
                Err(e) => {
                    s.dead = true;
                    lost = Some(e);
                    break;
                }
            }
        }
        for f in frames {
            // An empty TPKT is a keepalive (H.323 clause 8.2.1 / RFC 1006): nothing to report.
            if f.is_empty() {
                continue;
            }
            match kind {
                Kind::H225 => self.handle_h225(now, side, flow, &f, out),
                Kind::H245 => self.handle_h245_frame(now, side, flow, &f, None, out),
            }
        }
        if let Some(e) = lost {
            let protocol = match kind {
                Kind::H225 => Protocol::H225,
                Kind::H245 => Protocol::H245,
            };
            // Not counted as a message: no PDU could be delimited.
            out.events.push_back(Event::Report(Report {
                protocol,
                side: self.side_of(side, &flow),
                summary: Summary::Text("TPKT framing lost".to_owned()),
                verdict: Verdict::Rejected,
                reason: Some(format!("malformed: {e}; connection closed")),
                response: None,
                call: None,
                rule: None,
            }));
        }
    }

    /// The call whose H.225.0 or H.245 connection `flow` is (either direction), for the
    /// live driver's HEP export and per-call capture. A scan of the calls: only asked when
    /// one of them is configured.
    pub fn call_by_flow(&self, side: Side, flow: &Flow) -> Option<CallRef> {
        let same = |f: &Flow| {
            (f.local == flow.local && f.remote == flow.remote)
                || (f.local == flow.remote && f.remote == flow.local)
        };
        match side {
            Side::Outside => self
                .h245
                .get(&flow.remote)
                .or_else(|| self.h245.get(&flow.local))
                .copied()
                .or_else(|| {
                    self.calls
                        .iter()
                        .find(|(_, c)| same(&c.flow))
                        .map(|(r, _)| *r)
                }),
            Side::Inside => self
                .inside
                .iter()
                .find(|(_, c)| same(&c.flow))
                .map(|(r, _)| *r),
        }
    }

    /// The side of a stream's messages: its own, but (replay) the answering party on an
    /// outside stream stands in for the inside.
    fn side_of(&self, side: Side, flow: &Flow) -> Side {
        if side == Side::Outside && self.replay && self.answering_call(flow).is_some() {
            Side::Inside
        } else {
            side
        }
    }

    /// Replay: the call whose answering party sent on this flow (it is the callee's side of a
    /// call signalling or H.245 connection).
    fn answering_call(&self, flow: &Flow) -> Option<CallRef> {
        if let Some(c) = self.h245.get(&flow.remote) {
            return Some(*c);
        }
        self.calls
            .iter()
            .find(|(_, c)| c.flow.local == flow.remote && c.flow.remote == flow.local)
            .map(|(k, _)| *k)
    }

    fn send(&self, side: Side, flow: Flow, protocol: Protocol, pdu: &[u8], out: &mut Out) {
        let mut buf = Vec::with_capacity(pdu.len() + tpkt::HEADER_LEN);
        if tpkt::encode(pdu, &mut buf).is_ok() {
            out.transmits.push_back(Transmit {
                side,
                flow,
                protocol,
                payload: Bytes::from(buf),
            });
        }
    }

    fn send_q931(&self, side: Side, flow: Flow, msg: &q931::Message, out: &mut Out) {
        if let Ok(bytes) = msg.to_vec() {
            self.send(side, flow, Protocol::H225, &bytes, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        out: &mut Out,
        protocol: Protocol,
        side: Side,
        summary: String,
        verdict: Verdict,
        reason: Option<String>,
        call: Option<CallRef>,
    ) {
        out.report(Report {
            protocol,
            side,
            summary: Summary::Text(summary),
            verdict,
            reason,
            response: None,
            call: call.map(|c| c.0),
            rule: None,
        });
    }

    /// Answers a message that cannot be handled with Release Complete (Q.931 clause 5.8).
    #[allow(clippy::too_many_arguments)]
    fn reject_h225(
        &self,
        side: Side,
        flow: Flow,
        call_ref: Option<q931::CallRef>,
        cause: Option<Cause>,
        summary: String,
        why: String,
        out: &mut Out,
    ) {
        let mut reason = format!("malformed: {why}");
        if let (Some(cr), Some(cause)) = (call_ref, cause) {
            if let Ok(m) = th323::release_complete_for_error(cr, cause) {
                self.send_q931(side, flow, &m, out);
                reason.push_str(&format!("; answered Release Complete, cause {}", cause.0));
            }
        }
        self.report(
            out,
            Protocol::H225,
            side,
            summary,
            Verdict::Rejected,
            Some(reason),
            None,
        );
    }

    /// The outside call a caller's message with call reference `cr` on `flow` belongs to.
    fn call_of(&self, flow: &Flow, cr: q931::CallRef) -> Option<CallRef> {
        if cr.from_destination {
            self.by_key
                .get(&(flow.local, flow.remote, cr.value))
                .copied()
        } else {
            self.by_key
                .get(&(flow.remote, flow.local, cr.value))
                .copied()
        }
    }

    /// The H.225.0 call identifier of `call` (zero for none).
    fn call_id(&self, call: Option<CallRef>) -> [u8; 16] {
        call.and_then(|c| self.calls.get(&c))
            .map_or([0; 16], |c| c.ids.call_identifier)
    }

    /// The Q.931 call state GW2 reports for `call` (it is the called side): Incoming Call
    /// Proceeding until the call is answered, Active after, Null for no call.
    fn call_state(&self, call: Option<CallRef>) -> q931::CallState {
        let state = match call.and_then(|c| self.calls.get(&c)).map(|c| c.state) {
            Some(State::Early) => q931::CallState::INCOMING_CALL_PROCEEDING,
            Some(State::Confirmed) => q931::CallState::ACTIVE,
            Some(State::Ended) | None => q931::CallState::NULL,
        };
        q931::CallState::new(state)
    }

    /// A malformed message other than Setup (Q.931 clause 5.8.5-5.8.6): for a call GW2
    /// holds, no action and a Status with the cause (the call goes on); a Release Complete is
    /// never answered; anything else is refused as [`Self::reject_h225`] does.
    #[allow(clippy::too_many_arguments)]
    fn malformed_h225(
        &mut self,
        side: Side,
        flow: Flow,
        header: Option<(q931::CallRef, MessageType)>,
        cause: Option<Cause>,
        summary: String,
        why: String,
        out: &mut Out,
    ) {
        let call = header.and_then(|(cr, _)| self.call_of(&flow, cr));
        match (header, call, cause) {
            (Some((_, MessageType::ReleaseComplete)), _, _) => self.report(
                out,
                Protocol::H225,
                side,
                summary,
                Verdict::Rejected,
                Some(format!("malformed: {why}")),
                call,
            ),
            (Some((cr, mt)), Some(c), Some(cause)) if mt != MessageType::Setup => {
                if let Ok(status) =
                    th323::status_message(cr, cause, self.call_state(call), self.call_id(call))
                {
                    self.send_q931(side, flow, &status, out);
                }
                self.report(
                    out,
                    Protocol::H225,
                    side,
                    summary,
                    Verdict::Rejected,
                    Some(format!(
                        "malformed: {why}; answered Status, cause {} (Q.931 5.8), call kept",
                        cause.0
                    )),
                    Some(c),
                );
            }
            _ => self.reject_h225(
                side,
                flow,
                header.map(|(cr, _)| cr),
                cause,
                summary,
                why,
                out,
            ),
        }
    }

    /// Status Enquiry (Q.931 clause 5.8.10): answered with Status, cause 30, and the call's
    /// state (Null for a call GW2 does not hold). GNU Gatekeeper and others poll calls so.
    fn answer_status_enquiry(
        &mut self,
        side: Side,
        flow: Flow,
        msg: &q931::Message,
        out: &mut Out,
    ) {
        let call = self.call_of(&flow, msg.call_ref);
        if let Ok(status) = th323::status_message(
            msg.call_ref,
            Cause(30),
            self.call_state(call),
            self.call_id(call),
        ) {
            self.send_q931(side, flow, &status, out);
        }
        self.report(
            out,
            Protocol::H225,
            side,
            "StatusEnquiry".to_owned(),
            Verdict::Accepted,
            Some("answered Status, cause 30".to_owned()),
            call,
        );
    }

    /// One Q.931 message (a TPKT payload) on an H.225.0 stream.
    fn handle_h225(&mut self, now: Duration, side: Side, flow: Flow, bytes: &[u8], out: &mut Out) {
        let header = q931::peek(bytes).ok().map(|(cr, mt, _)| (cr, mt));
        let mt_name = header.map_or("Q.931", |(_, mt)| mt.name());
        let msg = match q931::Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                let cause = e.cause().map(Cause::from);
                self.malformed_h225(
                    side,
                    flow,
                    header,
                    cause,
                    mt_name.to_owned(),
                    e.to_string(),
                    out,
                );
                return;
            }
        };
        if let Err(e) = msg.check_mandatory() {
            let cause = e.cause().map(Cause::from);
            self.malformed_h225(
                side,
                flow,
                Some((msg.call_ref, msg.msg_type)),
                cause,
                mt_name.to_owned(),
                e.to_string(),
                out,
            );
            return;
        }
        if msg.msg_type == MessageType::StatusEnquiry && self.side_of(side, &flow) == side {
            self.answer_status_enquiry(side, flow, &msg, out);
            return;
        }
        let uu = match h225::user_information(&msg) {
            Ok(uu) => uu,
            // Status, Status Enquiry, Information may come without H.225.0 PDU.
            Err(h225::H225Error::NoUserUser) => {
                let side = self.side_of(side, &flow);
                self.report(
                    out,
                    Protocol::H225,
                    side,
                    mt_name.replace(' ', ""),
                    Verdict::Accepted,
                    None,
                    None,
                );
                return;
            }
            Err(e) => {
                let cause = Some(Cause::from(e.cause()));
                self.reject_h225(
                    side,
                    flow,
                    Some(msg.call_ref),
                    cause,
                    mt_name.replace(' ', ""),
                    e.to_string(),
                    out,
                );
                return;
            }
        };
        let pdu = &uu.h323_uu_pdu;
        let name = h225::body_name(&pdu.h323_message_body);
        let key = (flow.remote, flow.local, msg.call_ref.value);
        let reverse_key = (flow.local, flow.remote, msg.call_ref.value);
        let call = if msg.call_ref.from_destination {
            self.by_key.get(&reverse_key).copied()
        } else {
            self.by_key.get(&key).copied()
        };
        // Live, a called party's message on an inside stream answers one of GW1's calls.
        let role = if msg.call_ref.from_destination && side == Side::Inside && !self.replay {
            Role::Calling
        } else {
            Role::Answering
        };
        if role == Role::Calling {
            if let Some(c) = call {
                self.handle_callee_reply(now, c, &msg, &uu, name, out);
            }
        }
        if let (Some(a), Some(c), Role::Answering) = (h225::h245_address(pdu), call, role) {
            if self.h245.len() < MAX_H245_ADDRESSES {
                self.h245.insert(a, c);
                if let Some(oc) = self.calls.get_mut(&c) {
                    oc.h245.push(a);
                }
            } else {
                self.h245_addresses_refused += 1;
            }
        }
        // Tunnelled H.245 is reported PDU by PDU.
        let tunnelled: Vec<Bytes> = h225::h245_control(pdu)
            .iter()
            .map(|o| Bytes::copy_from_slice(o))
            .collect();
        if role == Role::Calling && call.is_some() {
            // Handled above.
        } else if msg.call_ref.from_destination {
            // Sent by a called party: in replay the answering party plays the inside; live,
            // GW2 never places outside calls, so there is no such call.
            match call.filter(|_| self.replay) {
                Some(call) => {
                    self.handle_answering(now, call, &msg, &uu, name, out);
                }
                None => self.report(
                    out,
                    Protocol::H225,
                    side,
                    name.to_owned(),
                    Verdict::Ignored,
                    Some("matches no call of the gateway".to_owned()),
                    None,
                ),
            }
        } else {
            match (&pdu.h323_message_body, msg.msg_type, call) {
                (Body::setup(_), MessageType::Setup, None) => {
                    self.handle_setup(now, side, flow, &msg, &uu, out)
                }
                (_, MessageType::Setup, Some(c)) => self.report(
                    out,
                    Protocol::H225,
                    side,
                    name.to_owned(),
                    Verdict::Ignored,
                    Some("Setup repeated for an existing call".to_owned()),
                    Some(c),
                ),
                (_, MessageType::ReleaseComplete, Some(c)) => {
                    let cause = th323::release_cause(&msg, Some(&uu));
                    let live = self.calls.get(&c).is_some_and(|x| x.state != State::Ended);
                    if live {
                        out.send_other(
                            side,
                            meta::Message::Release(meta::Release { call: c, cause }),
                        );
                        self.end_call(now, c, cause, out);
                    }
                    self.report(
                        out,
                        Protocol::H225,
                        side,
                        name.to_owned(),
                        Verdict::Accepted,
                        None,
                        Some(c),
                    );
                }
                (_, MessageType::ReleaseComplete, None) => self.report(
                    out,
                    Protocol::H225,
                    side,
                    name.to_owned(),
                    Verdict::Ignored,
                    Some("matches no call of the gateway".to_owned()),
                    None,
                ),
                (_, _, Some(c)) => self.report(
                    out,
                    Protocol::H225,
                    side,
                    name.to_owned(),
                    Verdict::Accepted,
                    None,
                    Some(c),
                ),
                (_, _, None) => {
                    // Q.931 clause 5.8.3.2: a message for an unknown call reference is
                    // answered with Release Complete, cause 81.
                    self.reject_h225(
                        side,
                        flow,
                        Some(msg.call_ref),
                        Some(Cause(81)),
                        name.to_owned(),
                        "invalid call reference value".to_owned(),
                        out,
                    );
                }
            }
        }
        // A Setup's call exists only now.
        let call = call.or_else(|| self.by_key.get(&key).copied());
        for t in tunnelled {
            self.handle_h245_frame(now, side, flow, &t, call.map(|c| (role, c)), out);
        }
    }

    fn handle_setup(
        &mut self,
        now: Duration,
        side: Side,
        flow: Flow,
        msg: &q931::Message,
        uu: &h225::asn::H323UserInformation,
        out: &mut Out,
    ) {
        // Stream ids are placeholders until the call is admitted.
        let mut info = match th323::setup_to_meta(msg, uu, &mut || StreamId(0)) {
            Ok(i) => i,
            Err(e) => {
                self.reject_h225(
                    side,
                    flow,
                    Some(msg.call_ref),
                    Some(e.cause()),
                    "Setup".to_owned(),
                    e.to_string(),
                    out,
                );
                return;
            }
        };
        let ids = th323::CallIds {
            call_ref: msg.call_ref.value,
            conference_id: info.conference_id,
            call_identifier: info.call_identifier.unwrap_or(info.conference_id),
        };
        let emergency = out.calls.emergency.recognises(&info.called.user, None);
        let new = NewCall {
            direction: match side {
                Side::Outside => Direction::FromOutside,
                Side::Inside => Direction::FromInside,
            },
            protocol: CallProtocol::H323,
            family: Family::of(flow.remote.ip()),
            source: Some(flow.remote.ip()),
            calling: info.calling.user.clone(),
            called: info.called.user.clone(),
            emergency,
            digest: None,
        };
        let refuse = |this: &Self, out: &mut Out, cause: Cause, why: &str| {
            if let Ok(m) = th323::release_complete_message(&ids, true, cause) {
                this.send_q931(side, flow, &m, out);
            }
            this.report(
                out,
                Protocol::H225,
                side,
                "Setup".to_owned(),
                Verdict::Rejected,
                Some(format!(
                    "{why}; answered Release Complete, cause {}",
                    cause.0
                )),
                None,
            );
        };
        let call = match out.calls.admit(now, side, &new, out.tunnel_up) {
            Ok(c) => c,
            Err(r) => {
                let why = out.calls.describe(r);
                refuse(self, out, r.cause(), &why);
                return;
            }
        };
        // Latch mode `signalling`: the caller's media may come from where its Setup came from.
        out.media.set_signalling(side, call, flow.remote.ip());
        let mut streams = Vec::new();
        let mut failed = None;
        for (m, remote) in info.media.media.iter_mut().zip(&info.media.remotes) {
            if m.stream.is_none() {
                continue;
            }
            let Some(id) = out.media.stream_id(side) else {
                failed = Some(super::calls::Refusal::NoMediaPort);
                break;
            };
            m.stream = Some(id);
            let ip = flow.local.ip();
            if let Err(r) = out
                .media
                .open(side, call, id, ip, payload_types(m), *remote)
            {
                failed = Some(r);
                break;
            }
            streams.push(id);
        }
        // No fastStart: media is negotiated over H.245, which GW2 runs (live).
        let mut procedures = None;
        if failed.is_none() && info.proposals.is_empty() && !self.replay {
            match self.start_h245(now, side, call, &flow, info.tunnelling, out) {
                Ok((leg, desc)) => {
                    streams.push(leg.stream);
                    info.media.media = vec![desc];
                    procedures = Some(leg);
                }
                Err(r) => failed = Some(r),
            }
        }
        let setup = meta::Message::Setup(meta::Setup {
            call,
            calling: info.calling,
            called: info.called,
            emergency,
            media: info.media.media.clone(),
        });
        if failed.is_none() && meta::encode_frame(0, &setup, &mut Vec::new()).is_err() {
            out.end_call_by_gateway(now, call, Cause::INTERWORKING);
            refuse(
                self,
                out,
                Cause::INTERWORKING,
                "Setup cannot be carried as Meta",
            );
            return;
        }
        if let Some(r) = failed {
            out.calls.count_refusal(r);
            out.end_call_by_gateway(now, call, r.cause());
            refuse(self, out, r.cause(), r.reason());
            return;
        }
        let mut parts = th323::H245Parts::default();
        if let Some(leg) = procedures.as_mut() {
            match leg.transport {
                H245Transport::Separate { listen, .. } => parts.address = listen,
                H245Transport::Tunnel => parts.control = drain_h245(&mut leg.session),
            }
        }
        if let Ok(m) = th323::call_proceeding_message(&ids, parts) {
            self.send_q931(side, flow, &m, out);
        }
        let mut h245 = Vec::new();
        if let Some(H245Transport::Separate {
            listen: Some(listen),
            ..
        }) = procedures.as_ref().map(|l| l.transport)
        {
            if self.h245.len() < MAX_H245_ADDRESSES {
                self.h245.insert(listen, call);
                h245.push(listen);
            }
        }
        if let Some(a) = info.h245_address {
            if self.h245.len() < MAX_H245_ADDRESSES {
                self.h245.insert(a, call);
                h245.push(a);
            } else {
                self.h245_addresses_refused += 1;
            }
        }
        let key = (flow.remote, flow.local, msg.call_ref.value);
        self.by_key.insert(key, call);
        self.calls.insert(
            call,
            Call {
                flow,
                ids,
                proposals: info.proposals,
                offer: info.media.media,
                streams,
                state: State::Early,
                key,
                side,
                h245,
                tunnelling: info.tunnelling,
                far_h245: None,
                connected: false,
                fast_answered: false,
                early_h245: Vec::new(),
                held_setup: None,
                procedures: procedures.map(|mut leg| {
                    if let meta::Message::Setup(s) = setup.clone() {
                        leg.setup = Some(s);
                    }
                    leg
                }),
            },
        );
        if side == Side::Inside && self.gatekeeper {
            // GW1 answers a call of its PBX: admitted by the gatekeeper too (answerCall);
            // an ARJ releases it.
            out.ras_requests.push_back(super::RasRequest::Admit(
                super::ras_client::AdmissionRequest {
                    call,
                    answer_call: true,
                    call_ref: ids.call_ref,
                    call_identifier: ids.call_identifier,
                    conference_id: ids.conference_id,
                    calling: Some(new.calling.clone()),
                    called: Some(new.called.clone()),
                    dest: Some(flow.local),
                },
            ));
        }
        if self
            .calls
            .get(&call)
            .is_some_and(|c| c.procedures.is_some())
        {
            // The Meta Setup waits for the caller's capabilities.
            self.timed.insert((Role::Answering, call));
            self.schedule(Role::Answering, call);
        } else {
            out.send_other(side, setup);
        }
        self.report(
            out,
            Protocol::H225,
            side,
            "Setup".to_owned(),
            Verdict::Accepted,
            None,
            Some(call),
        );
    }

    /// Replay: a message of the called party, which plays the inside: it becomes Meta toward
    /// GW2 as GW1 would have produced it.
    fn handle_answering(
        &mut self,
        _now: Duration,
        call: CallRef,
        msg: &q931::Message,
        uu: &h225::asn::H323UserInformation,
        name: &str,
        out: &mut Out,
    ) {
        let offer = match self.inside.get(&call) {
            Some(c) => c.offer.clone(),
            None => self
                .calls
                .get(&call)
                .map(|c| c.offer.clone())
                .unwrap_or_default(),
        };
        let media = || {
            th323::fast_start_of(uu)
                .map(|olcs| th323::answer_from_fast_start(&olcs, &offer).media)
                .unwrap_or_default()
        };
        let state = self.inside.get(&call).map(|c| c.state);
        if state == Some(State::Ended) {
            self.report(
                out,
                Protocol::H225,
                Side::Inside,
                name.to_owned(),
                Verdict::Ignored,
                Some("call has ended".to_owned()),
                Some(call),
            );
            return;
        }
        let m = match msg.msg_type {
            MessageType::Alerting => Some(meta::Message::Alerting(meta::Alerting {
                call,
                media: media(),
            })),
            MessageType::Progress => Some(meta::Message::Progress(meta::Progress {
                call,
                media: media(),
            })),
            MessageType::Connect => {
                if let Some(c) = self.inside.get_mut(&call) {
                    c.state = State::Confirmed;
                }
                Some(meta::Message::Answer(meta::Answer {
                    call,
                    media: media(),
                }))
            }
            MessageType::ReleaseComplete => {
                if let Some(c) = self.inside.get_mut(&call) {
                    c.state = State::Ended;
                }
                Some(meta::Message::Release(meta::Release {
                    call,
                    cause: th323::release_cause(msg, Some(uu)),
                }))
            }
            _ => None,
        };
        if let Some(m) = m {
            out.send_other(Side::Inside, m);
        }
        self.report(
            out,
            Protocol::H225,
            Side::Inside,
            name.to_owned(),
            Verdict::Accepted,
            None,
            Some(call),
        );
    }

    /// One H.245 PDU: from a separate H.245 connection or tunnelled in H.225.0 (`call` set).
    fn handle_h245_frame(
        &mut self,
        now: Duration,
        side: Side,
        flow: Flow,
        bytes: &[u8],
        leg: Option<(Role, CallRef)>,
        out: &mut Out,
    ) {
        let leg = leg
            .or_else(|| {
                self.h245_out
                    .get(&(flow.local, flow.remote))
                    .map(|c| (Role::Calling, *c))
            })
            .or_else(|| self.h245.get(&flow.local).map(|c| (Role::Answering, *c)))
            .or_else(|| self.h245.get(&flow.remote).map(|c| (Role::Answering, *c)));
        let call = leg.map(|(_, c)| c);
        if let Some((role, c)) = leg.filter(|(r, c)| self.runs_h245(*r, *c)) {
            self.procedure_pdu(role, now, c, bytes, out);
            return;
        }
        // The PBX starting H.245 before GW1 knows it refused fastStart: kept for the session.
        if let Some((Role::Calling, c)) = leg {
            if let Some(call) = self
                .inside
                .get_mut(&c)
                .filter(|x| !self.replay && !x.fast_answered && x.state == State::Early)
            {
                if call.early_h245.len() < MAX_EARLY_H245 {
                    call.early_h245.push(Bytes::copy_from_slice(bytes));
                }
                return;
            }
        }
        let side = self.side_of(side, &flow);
        match h323_asn1::decode_h245(bytes) {
            Ok(m) => {
                let name = codecs::h245::message_name(&m);
                if let (Some(c), Some((event, duration_ms))) = (call, th323::dtmf_from_h245(&m)) {
                    // From the caller of a call this side answered (in replay the answering
                    // party's digits stay in the capture).
                    let confirmed = match leg {
                        // The PBX GW1 called (fastStart, no H.245 session of GW1's).
                        Some((Role::Calling, _)) => {
                            !self.replay
                                && self
                                    .inside
                                    .get(&c)
                                    .is_some_and(|x| x.state == State::Confirmed)
                        }
                        _ => self
                            .calls
                            .get(&c)
                            .is_some_and(|x| x.state == State::Confirmed && x.side == side),
                    };
                    if confirmed {
                        out.send_other(
                            side,
                            meta::Message::Dtmf(meta::Dtmf {
                                call: c,
                                event,
                                duration_ms,
                            }),
                        );
                    }
                }
                self.report(
                    out,
                    Protocol::H245,
                    side,
                    name.to_owned(),
                    Verdict::Accepted,
                    None,
                    call,
                );
            }
            Err(e) => self.report(
                out,
                Protocol::H245,
                side,
                "MultimediaSystemControlMessage".to_owned(),
                Verdict::Rejected,
                Some(format!("malformed: {e}")),
                call,
            ),
        }
    }

    fn leg(&self, role: Role, call: CallRef) -> Option<&Call> {
        match role {
            Role::Answering => self.calls.get(&call),
            Role::Calling => self.inside.get(&call),
        }
    }

    fn leg_mut(&mut self, role: Role, call: CallRef) -> Option<&mut Call> {
        match role {
            Role::Answering => self.calls.get_mut(&call),
            Role::Calling => self.inside.get_mut(&call),
        }
    }

    fn leg_side(&self, role: Role, call: CallRef) -> Side {
        self.leg(role, call).map_or(Side::Outside, |c| c.side)
    }

    /// Whether GW2 runs the H.245 procedures of `call` (a live outside call without
    /// fastStart that has not ended).
    fn runs_h245(&self, role: Role, call: CallRef) -> bool {
        self.leg(role, call)
            .is_some_and(|c| c.procedures.is_some() && c.state != State::Ended)
    }

    /// Opens the outside stream of a call without fastStart and starts its H.245: tunnelled
    /// when the caller tunnels, else a listener for its separate connection on the port number
    /// of the stream's RTP port. Returns the leg and the stream's offer (GW2's codecs until the
    /// caller's capabilities come).
    fn start_h245(
        &mut self,
        now: Duration,
        side: Side,
        call: CallRef,
        flow: &Flow,
        tunnelling: bool,
        out: &mut Out,
    ) -> Result<(Box<H245Leg>, MediaDescription), super::calls::Refusal> {
        use super::calls::Refusal;
        let id = out.media.stream_id(side).ok_or(Refusal::NoMediaPort)?;
        let desc = audio_description(id, default_audio());
        let rtp = out
            .media
            .open(side, call, id, flow.local.ip(), payload_types(&desc), None)?;
        let transport = if tunnelling {
            H245Transport::Tunnel
        } else {
            if !out.media.listen(side, rtp) {
                return Err(Refusal::NoMediaPort);
            }
            H245Transport::Separate {
                listen: Some(rtp),
                conn: None,
            }
        };
        let mut session = Session::new(self.ids.number());
        session.determine_master_slave(now);
        let leg = H245Leg {
            session,
            transport,
            stream: id,
            setup: None,
            deadline: now + CAPABILITIES_WAIT,
            scheduled: None,
        };
        Ok((Box::new(leg), desc))
    }

    /// A connection accepted where GW2 listens for a call's separate H.245: taken when it
    /// comes from the caller's address and the call has none yet.
    pub fn claim_h245_stream(&mut self, conn: ConnId, flow: &Flow, out: &mut Out) -> bool {
        if self.h245_out.contains_key(&(flow.local, flow.remote)) {
            // A connection GW1 opened to its PBX's h245Address.
            if self.streams.len() >= MAX_STREAMS {
                self.streams_refused += 1;
                return false;
            }
            self.streams.insert(
                conn,
                Stream {
                    kind: Kind::H245,
                    side: Side::Inside,
                    framer: TpktFramer::new(),
                    dead: false,
                },
            );
            return true;
        }
        let Some(call) = self.h245.get(&flow.local).copied() else {
            return false;
        };
        let refuse = |this: &Self, out: &mut Out, side: Side, why: &str| {
            this.report(
                out,
                Protocol::H245,
                side,
                "H.245 connection".to_owned(),
                Verdict::Rejected,
                Some(format!("{why}; connection closed")),
                Some(call),
            );
            false
        };
        if self.streams.len() >= MAX_STREAMS {
            self.streams_refused += 1;
            return false;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let side = c.side;
        if c.state == State::Ended || c.flow.remote.ip() != flow.remote.ip() {
            return refuse(self, out, side, "not from the caller of a live call");
        }
        let Some(leg) = c.procedures.as_mut() else {
            return false;
        };
        let listen = match &mut leg.transport {
            H245Transport::Separate { listen, conn }
                if conn.is_none() && *listen == Some(flow.local) =>
            {
                *conn = Some(*flow);
                listen.take().unwrap_or(flow.local)
            }
            _ => {
                return refuse(
                    self,
                    out,
                    side,
                    "the call's H.245 connection is already open",
                )
            }
        };
        out.media.unlisten(listen);
        self.streams.insert(
            conn,
            Stream {
                kind: Kind::H245,
                side,
                framer: TpktFramer::new(),
                dead: false,
            },
        );
        self.flush_h245(Role::Answering, call, out);
        true
    }

    /// One H.245 PDU for a call whose procedures GW2 runs.
    fn procedure_pdu(
        &mut self,
        role: Role,
        now: Duration,
        call: CallRef,
        bytes: &[u8],
        out: &mut Out,
    ) {
        let (verdict, summary, reason) = match h323_asn1::decode_h245(bytes) {
            Ok(m) => {
                let name = codecs::h245::message_name(&m).to_owned();
                let Some(leg) = self.leg_mut(role, call).and_then(|c| c.procedures.as_mut()) else {
                    return;
                };
                match leg.session.handle(now, m) {
                    translators::h245_session::Verdict::Accepted => (Verdict::Accepted, name, None),
                    translators::h245_session::Verdict::Ignored(why) => {
                        (Verdict::Ignored, name, Some(why.to_owned()))
                    }
                }
            }
            Err(e) => (
                Verdict::Rejected,
                "MultimediaSystemControlMessage".to_owned(),
                Some(format!("malformed: {e}")),
            ),
        };
        self.report(
            out,
            Protocol::H245,
            self.leg_side(role, call),
            summary,
            verdict,
            reason,
            Some(call),
        );
        self.drive(role, now, call, out);
    }

    /// Acts on what the session of `call` reports, then sends what it queued.
    fn drive(&mut self, role: Role, now: Duration, call: CallRef, out: &mut Out) {
        loop {
            let Some(leg) = self.leg_mut(role, call).and_then(|c| c.procedures.as_mut()) else {
                return;
            };
            let Some(event) = leg.session.poll_event() else {
                break;
            };
            self.on_session_event(role, now, call, event, out);
        }
        self.flush_h245(role, call, out);
    }

    fn on_session_event(
        &mut self,
        role: Role,
        now: Duration,
        call: CallRef,
        event: SessionEvent,
        out: &mut Out,
    ) {
        let Some(c) = self.leg_mut(role, call) else {
            return;
        };
        let Some(leg) = c.procedures.as_mut() else {
            return;
        };
        match event {
            SessionEvent::RemoteCapabilities(codecs) => {
                if leg.setup.is_some() {
                    let ours = default_audio();
                    let offer: Vec<meta::Codec> = codecs
                        .into_iter()
                        .filter(|c| ours.iter().any(|o| o.name == c.name))
                        .collect();
                    if offer.is_empty() {
                        self.release_h245(
                            role,
                            now,
                            call,
                            Cause::INCOMPATIBLE_DESTINATION,
                            "the caller can receive no audio codec GW2 carries",
                            out,
                        );
                    } else {
                        self.send_held_setup(call, offer, out);
                    }
                }
            }
            SessionEvent::OutgoingChannel { codec, rtp, .. } => {
                let stream = leg.stream;
                let side = c.side;
                out.media.set_remote(side, stream, rtp);
                // GW1 calling a PBX that refused fastStart: the call is answered now that
                // media can flow, with the codec its channel carries.
                if role == Role::Calling && c.connected && c.state == State::Early {
                    c.state = State::Confirmed;
                    let media = c
                        .offer
                        .iter()
                        .filter(|m| m.stream == Some(stream))
                        .map(|m| MediaDescription {
                            codecs: vec![codec.clone()],
                            // H.323 carries digits as UserInputIndication, never RFC 4733.
                            telephone_event: None,
                            ..m.clone()
                        })
                        .collect::<Vec<_>>();
                    narrow(out, side, &media);
                    out.calls.answered(now, call);
                    out.send_other(side, meta::Message::Answer(meta::Answer { call, media }));
                }
                self.report(
                    out,
                    Protocol::H245,
                    side,
                    "OpenLogicalChannelAck".to_owned(),
                    Verdict::Accepted,
                    Some(format!("the gateway sends {} to {rtp}", codec.name)),
                    Some(call),
                );
            }
            SessionEvent::OutgoingChannelClosed { why } => self.report(
                out,
                Protocol::H245,
                self.leg_side(role, call),
                "OpenLogicalChannel".to_owned(),
                Verdict::Ignored,
                Some(format!("the gateway's channel is not open: {why}")),
                Some(call),
            ),
            SessionEvent::Dtmf { event, duration_ms } => {
                if leg.setup.is_none() {
                    out.send_other(
                        self.leg_side(role, call),
                        meta::Message::Dtmf(meta::Dtmf {
                            call,
                            event,
                            duration_ms,
                        }),
                    );
                }
            }
            SessionEvent::RoundTrip(d) => self.report(
                out,
                Protocol::H245,
                self.leg_side(role, call),
                "RoundTripDelayResponse".to_owned(),
                Verdict::Accepted,
                Some(format!("round trip {} ms", d.as_millis())),
                Some(call),
            ),
            SessionEvent::EndSession => {
                self.release_h245(
                    role,
                    now,
                    call,
                    Cause::NORMAL_CLEARING,
                    "the far end ended the H.245 session",
                    out,
                );
            }
            SessionEvent::Failed(why) => {
                self.release_h245(role, now, call, Cause(102), &why, out);
            }
            SessionEvent::Determined(_)
            | SessionEvent::IncomingChannel { .. }
            | SessionEvent::IncomingChannelClosed { .. } => {}
        }
    }

    /// Sends the held Meta Setup of `call` offering `codecs`.
    fn send_held_setup(&mut self, call: CallRef, codecs: Vec<meta::Codec>, out: &mut Out) {
        let side = self.leg_side(Role::Answering, call);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(leg) = c.procedures.as_mut() else {
            return;
        };
        let Some(mut setup) = leg.setup.take() else {
            return;
        };
        let stream = leg.stream;
        let desc = audio_description(stream, codecs);
        out.media
            .set_payload_types(side, stream, payload_types(&desc));
        setup.media = vec![desc];
        c.offer.clone_from(&setup.media);
        out.send_other(
            self.leg_side(Role::Answering, call),
            meta::Message::Setup(setup),
        );
    }

    /// The answer of a call whose media H.245 negotiates: Connect, then GW2's capabilities
    /// (the answered codecs), its channel, and the caller's channels accepted.
    fn answer_h245(
        &mut self,
        now: Duration,
        call: CallRef,
        media: &[MediaDescription],
        parts: th323::H245Parts,
        out: &mut Out,
    ) {
        let codecs: Vec<meta::Codec> = media
            .iter()
            .find(|m| m.kind == meta::MediaKind::Audio && m.stream.is_some())
            .map(|m| m.codecs.clone())
            .unwrap_or_default();
        if codecs.is_empty() {
            self.release_h245(
                Role::Answering,
                now,
                call,
                Cause::INCOMPATIBLE_DESTINATION,
                "the answer has no audio",
                out,
            );
            return;
        }
        narrow(out, self.leg_side(Role::Answering, call), media);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let (flow, ids) = (c.flow, c.ids);
        c.state = State::Confirmed;
        out.calls.answered(now, call);
        let side = self.leg_side(Role::Answering, call);
        if let Ok(m) = th323::connect_message(&ids, Vec::new(), parts) {
            self.send_q931(side, flow, &m, out);
        }
        let Some(leg) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.procedures.as_mut())
        else {
            return;
        };
        let Some(rtp) = out.media.local(side, leg.stream) else {
            return;
        };
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
        leg.session.send_capabilities(now, &codecs);
        leg.session.set_media(rtp, rtcp);
        leg.session.open_channel(now, codecs, rtcp);
        self.drive(Role::Answering, now, call, out);
    }

    /// A digit from the other side toward the caller: UserInputIndication through GW2's
    /// session, or tunnelled on its own for a fastStart call whose caller tunnels.
    fn send_user_input(
        &mut self,
        role: Role,
        call: CallRef,
        event: u8,
        duration_ms: u16,
        out: &mut Out,
    ) {
        let Some(c) = self.leg_mut(role, call) else {
            return;
        };
        if c.state == State::Ended {
            return;
        }
        if let Some(leg) = c.procedures.as_mut() {
            leg.session.send_dtmf(event, duration_ms, false);
            self.flush_h245(role, call, out);
            return;
        }
        if !c.tunnelling {
            self.report(
                out,
                Protocol::H245,
                self.leg_side(role, call),
                "UserInputIndication".to_owned(),
                Verdict::Ignored,
                Some("the caller has no H.245 channel: digit not sent".to_owned()),
                Some(call),
            );
            return;
        }
        let (flow, ids) = (c.flow, c.ids);
        let pdu = codecs::h245::user_input_signal(event, duration_ms)
            .and_then(|m| h323_asn1::encode_h245(&m).ok());
        if let Some(pdu) = pdu {
            let parts = th323::H245Parts {
                address: None,
                control: vec![pdu],
            };
            if let Ok(m) = th323::facility_message(&ids, role == Role::Answering, parts) {
                self.send_q931(self.leg_side(role, call), flow, &m, out);
            }
        }
    }

    /// Sends what the session of `call` queued: in a Facility when tunnelled, on the separate
    /// connection once the caller opened it (held until then).
    /// Sends what the leg's H.245 session has queued, and schedules its next deadline (every
    /// session action that sets a timer queues a PDU, so this is where deadlines move).
    fn flush_h245(&mut self, role: Role, call: CallRef, out: &mut Out) {
        self.send_h245_queued(role, call, out);
        self.schedule(role, call);
    }

    /// Puts the leg's next deadline (the held Setup's, or its H.245 session's) into the timers,
    /// unless it is there already.
    fn schedule(&mut self, role: Role, call: CallRef) {
        if !self.timed.contains(&(role, call)) {
            return;
        }
        let Some(leg) = self.leg_mut(role, call).and_then(|c| c.procedures.as_mut()) else {
            return;
        };
        let held = leg.setup.as_ref().map(|_| leg.deadline);
        let next = [held, leg.session.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = next.filter(|at| leg.scheduled != Some(*at)) {
            leg.scheduled = Some(at);
            self.timers.set(at, (role, call));
        }
    }

    fn send_h245_queued(&mut self, role: Role, call: CallRef, out: &mut Out) {
        let Some(c) = self.leg_mut(role, call) else {
            return;
        };
        let (flow, ids) = (c.flow, c.ids);
        let Some(leg) = c.procedures.as_mut() else {
            return;
        };
        match leg.transport {
            H245Transport::Tunnel => {
                let control = drain_h245(&mut leg.session);
                if control.is_empty() {
                    return;
                }
                let parts = th323::H245Parts {
                    address: None,
                    control,
                };
                if let Ok(m) = th323::facility_message(&ids, role == Role::Answering, parts) {
                    self.send_q931(self.leg_side(role, call), flow, &m, out);
                }
            }
            H245Transport::Separate {
                conn: Some(conn), ..
            } => {
                for pdu in drain_h245(&mut leg.session) {
                    self.send(self.leg_side(role, call), conn, Protocol::H245, &pdu, out);
                }
            }
            H245Transport::Separate { conn: None, .. } => {}
        }
    }

    /// Ends a call from its H.245 side: the session ends (EndSessionCommand), the other side
    /// gets a Meta Release (if its Setup was sent), the caller a Release Complete.
    fn release_h245(
        &mut self,
        role: Role,
        now: Duration,
        call: CallRef,
        cause: Cause,
        why: &str,
        out: &mut Out,
    ) {
        let Some(c) = self.leg_mut(role, call) else {
            return;
        };
        if c.state == State::Ended {
            return;
        }
        let (flow, ids) = (c.flow, c.ids);
        let mut setup_sent = true;
        if let Some(leg) = c.procedures.as_mut() {
            setup_sent = leg.setup.take().is_none();
            leg.session.end();
        }
        self.flush_h245(role, call, out);
        let side = self.leg_side(role, call);
        if let Some(c) = self.leg_mut(role, call) {
            c.state = State::Ended;
        }
        self.stop_h245(role, call, out);
        if setup_sent {
            out.send_other(side, meta::Message::Release(meta::Release { call, cause }));
            out.end_call(now, call, cause);
        } else {
            out.end_call_by_gateway(now, call, cause);
        }
        let from_destination = role == Role::Answering;
        if let Ok(m) = th323::release_complete_message(&ids, from_destination, cause) {
            self.send_q931(self.leg_side(role, call), flow, &m, out);
        }
        self.report(
            out,
            Protocol::H225,
            self.leg_side(role, call),
            "ReleaseComplete".to_owned(),
            Verdict::Accepted,
            Some(format!("{why}: released, cause {}", cause.0)),
            Some(call),
        );
    }

    /// The call ended: no more timers, and the listener for a connection that never came
    /// closes.
    fn stop_h245(&mut self, role: Role, call: CallRef, out: &mut Out) {
        self.timed.remove(&(role, call));
        let Some(leg) = self.leg_mut(role, call).and_then(|c| c.procedures.as_mut()) else {
            return;
        };
        if let H245Transport::Separate { listen, .. } = &mut leg.transport {
            if let Some(l) = listen.take() {
                out.media.unlisten(l);
            }
        }
    }

    /// The earliest timer of the calls whose H.245 the gateway runs (possibly a stale one:
    /// [`H323::handle_timeout`] then finds nothing due).
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.next()
    }

    pub fn handle_timeout(&mut self, now: Duration, out: &mut Out) {
        let mut fired: Vec<(Role, CallRef)> = Vec::new();
        while let Some((at, key)) = self.timers.pop_due(now) {
            let (role, call) = key;
            if !self.timed.contains(&key) {
                continue;
            }
            if let Some(leg) = self.leg_mut(role, call).and_then(|c| c.procedures.as_mut()) {
                if leg.scheduled == Some(at) {
                    leg.scheduled = None;
                }
            }
            if !fired.contains(&key) {
                fired.push(key);
            }
        }
        let due: Vec<(Role, CallRef)> = fired
            .iter()
            .copied()
            .filter(|(r, c)| {
                self.leg(*r, *c)
                    .and_then(|c| c.procedures.as_ref())
                    .is_some_and(|leg| {
                        let held = leg.setup.is_some() && leg.deadline <= now;
                        held || leg.session.poll_timeout().is_some_and(|t| t <= now)
                    })
            })
            .collect();
        for (role, call) in due {
            let Some(leg) = self.leg_mut(role, call).and_then(|c| c.procedures.as_mut()) else {
                continue;
            };
            if leg.setup.is_some() && leg.deadline <= now {
                // The caller sent no capabilities in time: the gateway's own codecs are offered.
                self.send_held_setup(call, default_audio(), out);
            }
            if let Some(leg) = self.leg_mut(role, call).and_then(|c| c.procedures.as_mut()) {
                leg.session.handle_timeout(now);
            }
            self.drive(role, now, call, out);
        }
        for (role, call) in fired {
            self.schedule(role, call);
        }
    }

    /// A UDP datagram: RAS on its ports. Returns false when it is not RAS.
    pub fn handle_datagram(&mut self, flow: Flow, data: &[u8], out: &mut Out) -> bool {
        if RAS_PORTS.contains(&flow.local.port()) || RAS_PORTS.contains(&flow.remote.port()) {
            self.handle_ras(flow, data, out);
            return true;
        }
        false
    }

    fn handle_ras(&mut self, flow: Flow, data: &[u8], out: &mut Out) {
        let m = match h323_asn1::decode_ras(data) {
            Ok(m) => m,
            Err(e) => {
                self.report(
                    out,
                    Protocol::Ras,
                    Side::Outside,
                    "RasMessage".to_owned(),
                    Verdict::Rejected,
                    Some(format!("malformed: {e}")),
                    None,
                );
                return;
            }
        };
        let (name, abbrev) = codecs::ras::message_name(&m);
        let summary = format!("{name} ({abbrev})");
        match codecs::ras::gatekeeper_reject(&m) {
            Some(rej) => {
                let (rname, _) = codecs::ras::message_name(&rej);
                if let Ok(bytes) = h323_asn1::encode_ras(&rej) {
                    out.transmits.push_back(Transmit {
                        side: Side::Outside,
                        flow,
                        protocol: Protocol::Ras,
                        payload: Bytes::from(bytes),
                    });
                }
                self.report(
                    out,
                    Protocol::Ras,
                    Side::Outside,
                    summary,
                    Verdict::Accepted,
                    Some(format!("GW2 is no gatekeeper: answered {rname}")),
                    None,
                );
            }
            None => self.report(
                out,
                Protocol::Ras,
                Side::Outside,
                summary,
                Verdict::Ignored,
                Some("answers no request of GW2; GW2 has no gatekeeper".to_owned()),
                None,
            ),
        }
    }

    /// Meta from GW1 for an outside H.323 call.
    pub fn handle_meta_outside(&mut self, now: Duration, m: meta::Message, out: &mut Out) {
        self.handle_meta_answering(now, m, out);
    }

    /// Meta from the other half for a call this side answers (GW2's outside callers, GW1's
    /// inside ones).
    fn handle_meta_answering(&mut self, now: Duration, m: meta::Message, out: &mut Out) {
        let Some(call) = m.call() else { return };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state == State::Ended {
            return;
        }
        let side = c.side;
        let flow = c.flow;
        let ids = c.ids;
        let rtp = c.streams.first().and_then(|s| out.media.local(side, *s));
        let answer = |c: &Call, media: &[MediaDescription]| match rtp {
            Some(rtp) if !media.is_empty() => {
                th323::fast_start_answer(&c.proposals, media, rtp).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        // The address of GW2's separate H.245 listener, repeated until the caller connects.
        let parts = th323::H245Parts {
            address: match c.procedures.as_ref().map(|l| l.transport) {
                Some(H245Transport::Separate { listen, conn: None }) => listen,
                _ => None,
            },
            control: Vec::new(),
        };
        let procedures = c.procedures.is_some();
        let msg = match m {
            meta::Message::Alerting(a) => {
                narrow(out, side, &a.media);
                let fast_start = if procedures {
                    Vec::new()
                } else {
                    answer(c, &a.media)
                };
                th323::alerting_message(&ids, fast_start, parts)
            }
            meta::Message::Dtmf(d) => {
                self.send_user_input(Role::Answering, call, d.event, d.duration_ms, out);
                return;
            }
            meta::Message::Answer(a) if procedures => {
                self.answer_h245(now, call, &a.media, parts, out);
                return;
            }
            meta::Message::Progress(p) => {
                // Early media over H.245 is not opened: audio starts at the answer.
                if p.media.is_empty() || procedures {
                    return;
                }
                narrow(out, side, &p.media);
                th323::progress_message(&ids, answer(c, &p.media))
            }
            meta::Message::Answer(a) => {
                if c.state != State::Early {
                    return;
                }
                let fast_start = answer(c, &a.media);
                if fast_start.is_empty() && !c.proposals.is_empty() {
                    // None of the caller's fastStart channels matches the answer, and GW2 runs
                    // no H.245 to open others: connecting would give a call without audio.
                    // Released both ways, cause 88 (incompatible destination, as for 488).
                    let cause = Cause::INCOMPATIBLE_DESTINATION;
                    out.send_other(side, meta::Message::Release(meta::Release { call, cause }));
                    let m = th323::release_complete_message(&ids, true, cause);
                    self.end_call(now, call, cause, out);
                    if let Ok(m) = m {
                        self.send_q931(side, flow, &m, out);
                    }
                    self.report(
                        out,
                        Protocol::H225,
                        side,
                        "ReleaseComplete".to_owned(),
                        Verdict::Rejected,
                        Some(
                            "the answer matches none of the caller's fastStart channels: \
                             released, cause 88"
                                .to_owned(),
                        ),
                        Some(call),
                    );
                    return;
                }
                narrow(out, side, &a.media);
                c.state = State::Confirmed;
                out.calls.answered(now, call);
                th323::connect_message(&ids, fast_start, th323::H245Parts::default())
            }
            meta::Message::Release(r) => {
                // H.323 clause 8.5: channels closed and EndSessionCommand before Release
                // Complete.
                if let Some(leg) = c.procedures.as_mut() {
                    leg.session.end();
                }
                self.flush_h245(Role::Answering, call, out);
                let m = th323::release_complete_message(&ids, true, r.cause);
                self.end_call(now, call, r.cause, out);
                m
            }
            _ => return,
        };
        if let Ok(msg) = msg {
            self.send_q931(side, flow, &msg, out);
        }
    }

    /// A message of the PBX GW1 calls: Alerting, Progress and Connect become Meta (with the
    /// fastStart answer's media); a Connect without one starts H.245 (H.323 clause 8.1.7.3:
    /// the callee refused fastStart), and the Meta Answer waits for GW1's channel to open;
    /// Release Complete releases the call.
    fn handle_callee_reply(
        &mut self,
        now: Duration,
        call: CallRef,
        msg: &q931::Message,
        uu: &h225::asn::H323UserInformation,
        name: &str,
        out: &mut Out,
    ) {
        let Some(c) = self.inside.get_mut(&call) else {
            return;
        };
        if c.state == State::Ended {
            self.report(
                out,
                Protocol::H225,
                Side::Inside,
                name.to_owned(),
                Verdict::Ignored,
                Some("call has ended".to_owned()),
                Some(call),
            );
            return;
        }
        let pdu = &uu.h323_uu_pdu;
        if msg.msg_type != MessageType::ReleaseComplete {
            c.tunnelling = h225::h245_tunnelling(pdu);
        }
        if let Some(a) = h225::h245_address(pdu) {
            // The PBX's own address only: GW1 connects nowhere else.
            if a.ip() == c.flow.remote.ip() {
                c.far_h245 = Some(a);
            }
        }
        let answer = th323::fast_start_of(uu)
            .ok()
            .filter(|olcs| !olcs.is_empty())
            .map(|olcs| th323::answer_from_fast_start(&olcs, &c.offer));
        if let Some(a) = &answer {
            for (m, remote) in a.media.iter().zip(&a.remotes) {
                if let (Some(stream), Some(remote)) = (m.stream, remote) {
                    out.media.set_remote(Side::Inside, stream, *remote);
                }
            }
            narrow(out, Side::Inside, &a.media);
            // fastStart answered: no H.245 fallback.
            c.fast_answered = true;
        }
        let fast_started = c.fast_answered;
        let media = answer.map(|a| a.media).unwrap_or_default();
        let m = match msg.msg_type {
            MessageType::Alerting => Some(meta::Message::Alerting(meta::Alerting { call, media })),
            MessageType::Progress if !media.is_empty() => {
                Some(meta::Message::Progress(meta::Progress { call, media }))
            }
            MessageType::Connect if fast_started && c.procedures.is_none() => {
                c.state = State::Confirmed;
                c.connected = true;
                out.calls.answered(now, call);
                Some(meta::Message::Answer(meta::Answer { call, media }))
            }
            MessageType::Connect => {
                c.connected = true;
                self.start_calling_h245(now, call, out);
                None
            }
            MessageType::ReleaseComplete => {
                c.state = State::Ended;
                let cause = th323::release_cause(msg, Some(uu));
                out.send_other(
                    Side::Inside,
                    meta::Message::Release(meta::Release { call, cause }),
                );
                self.stop_h245(Role::Calling, call, out);
                out.end_call(now, call, cause);
                None
            }
            _ => None,
        };
        if let Some(m) = m {
            out.send_other(Side::Inside, m);
        }
        self.report(
            out,
            Protocol::H225,
            Side::Inside,
            name.to_owned(),
            Verdict::Accepted,
            None,
            Some(call),
        );
    }

    /// GW1's H.245 toward a PBX that refused fastStart: tunnelled when the PBX tunnels, else
    /// over a connection to the PBX's h245Address (released, cause 47, when it gave none).
    fn start_calling_h245(&mut self, now: Duration, call: CallRef, out: &mut Out) {
        let Some(c) = self.inside.get_mut(&call) else {
            return;
        };
        if c.procedures.is_some() {
            return;
        }
        let Some(stream) = c.streams.first().copied() else {
            self.release_h245(
                Role::Calling,
                now,
                call,
                Cause::INCOMPATIBLE_DESTINATION,
                "the call has no audio stream to negotiate",
                out,
            );
            return;
        };
        let transport = if c.tunnelling {
            H245Transport::Tunnel
        } else if let Some(far) = c.far_h245 {
            let local = SocketAddr::new(c.flow.local.ip(), c.flow.local.port().wrapping_add(1));
            let conn = Flow {
                transport: Transport::Tcp,
                local,
                remote: far,
            };
            self.h245_out.insert((local, far), call);
            H245Transport::Separate {
                listen: None,
                conn: Some(conn),
            }
        } else {
            self.release_h245(
                Role::Calling,
                now,
                call,
                Cause(47),
                "the PBX refused fastStart and gave no way to run H.245",
                out,
            );
            return;
        };
        let codecs: Vec<meta::Codec> = c
            .offer
            .iter()
            .find(|m| m.stream == Some(stream))
            .map(|m| m.codecs.clone())
            .unwrap_or_default();
        let Some(rtp) = out.media.local(Side::Inside, stream) else {
            return;
        };
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
        let mut session = Session::new(self.ids.number());
        session.send_capabilities(now, &codecs);
        session.determine_master_slave(now);
        session.set_media(rtp, rtcp);
        session.open_channel(now, codecs, rtcp);
        let Some(c) = self.inside.get_mut(&call) else {
            return;
        };
        c.procedures = Some(Box::new(H245Leg {
            session,
            transport,
            stream,
            setup: None,
            deadline: now,
            scheduled: None,
        }));
        let early = std::mem::take(&mut c.early_h245);
        self.timed.insert((Role::Calling, call));
        self.schedule(Role::Calling, call);
        for pdu in early {
            self.procedure_pdu(Role::Calling, now, call, &pdu, out);
        }
        self.drive(Role::Calling, now, call, out);
    }

    /// GW1 could not connect to its PBX: the call is released toward GW2 with cause 27
    /// (destination out of order), or 47 when the lost connection was a separate H.245 one.
    pub fn connect_failed(&mut self, now: Duration, side: Side, flow: &Flow, out: &mut Out) {
        if side != Side::Inside {
            return;
        }
        if let Some(call) = self.h245_out.get(&(flow.local, flow.remote)).copied() {
            self.release_h245(
                Role::Calling,
                now,
                call,
                Cause(47),
                "cannot connect to the PBX's H.245 address",
                out,
            );
            return;
        }
        // A rare event: the calling legs are searched.
        let found = self
            .inside
            .iter()
            .find(|(_, c)| c.flow == *flow && c.state != State::Ended)
            .map(|(r, _)| *r);
        let Some(call) = found else {
            return;
        };
        if let Some(c) = self.inside.get_mut(&call) {
            c.state = State::Ended;
        }
        self.stop_h245(Role::Calling, call, out);
        let cause = Cause(27);
        out.send_other(
            Side::Inside,
            meta::Message::Release(meta::Release { call, cause }),
        );
        out.end_call(now, call, cause);
        self.report(
            out,
            Protocol::H225,
            Side::Inside,
            "Setup".to_owned(),
            Verdict::Rejected,
            Some(format!(
                "cannot connect to the PBX at {}: released, cause 27",
                flow.remote
            )),
            Some(call),
        );
    }

    /// Whether a calling leg waits for the gatekeeper's admission.
    pub fn awaits_admission(&self, call: CallRef) -> bool {
        self.inside
            .get(&call)
            .is_some_and(|c| c.held_setup.is_some() && c.state == State::Early)
    }

    /// ACF: the held Setup goes to the PBX, at the gatekeeper's `destCallSignalAddress` when
    /// it gave one.
    pub fn admitted(
        &mut self,
        _now: Duration,
        call: CallRef,
        dest: Option<SocketAddr>,
        out: &mut Out,
    ) {
        let Some(c) = self.inside.get_mut(&call) else {
            return;
        };
        let Some(setup) = c.held_setup.take() else {
            return;
        };
        if let Some(dest) = dest.filter(|d| *d != c.flow.remote) {
            if self.by_key.get(&c.key) == Some(&call) {
                self.by_key.remove(&c.key);
            }
            c.flow.remote = dest;
            c.key = (c.flow.local, dest, c.ids.call_ref);
            self.by_key.insert(c.key, call);
        }
        let flow = c.flow;
        self.send_q931(Side::Inside, flow, &setup, out);
    }

    /// ARJ, or no answer: the call is released toward GW2 with the gatekeeper's cause.
    pub fn admission_rejected(
        &mut self,
        now: Duration,
        call: CallRef,
        cause: Cause,
        reason: &str,
        out: &mut Out,
    ) {
        let Some(c) = self.inside.get_mut(&call) else {
            return;
        };
        c.held_setup = None;
        c.state = State::Ended;
        out.send_other(
            Side::Inside,
            meta::Message::Release(meta::Release { call, cause }),
        );
        out.end_call_by_gateway(now, call, cause);
        self.report(
            out,
            Protocol::Ras,
            Side::Inside,
            "AdmissionRequest".to_owned(),
            Verdict::Rejected,
            Some(format!(
                "not admitted ({reason}): released, cause {}",
                cause.0
            )),
            Some(call),
        );
    }

    fn end_call(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.state = State::Ended;
        self.stop_h245(Role::Answering, call, out);
        out.end_call(now, call, cause);
    }

    /// The call table forgot the call: everything held for it goes.
    pub fn forget(&mut self, call: CallRef) {
        self.timed.remove(&(Role::Answering, call));
        self.timed.remove(&(Role::Calling, call));
        if let Some(c) = self.inside.remove(&call) {
            if self.by_key.get(&c.key) == Some(&call) {
                self.by_key.remove(&c.key);
            }
            if let Some(H245Transport::Separate { conn: Some(f), .. }) =
                c.procedures.as_ref().map(|l| l.transport)
            {
                self.h245_out.remove(&(f.local, f.remote));
            }
        }
        if let Some(c) = self.calls.remove(&call) {
            if self.by_key.get(&c.key) == Some(&call) {
                self.by_key.remove(&c.key);
            }
            for a in c.h245 {
                if self.h245.get(&a) == Some(&call) {
                    self.h245.remove(&a);
                }
            }
        }
    }

    /// Calls and addresses held now (for `stats` and the bounded-state tests).
    pub fn state_size(&self) -> usize {
        self.calls.len()
            + self.inside.len()
            + self.by_key.len()
            + self.h245.len()
            + self.h245_out.len()
    }

    fn inside_config(&self, outside: Family) -> &InsideConfig {
        match self.inside_family.unwrap_or(outside) {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Meta from GW2 for the H.323 inside: GW1 places the call toward the inside next hop
    /// (port 1720), with fresh identifiers and its own addresses only.
    pub fn handle_meta_inside(&mut self, now: Duration, m: meta::Message, out: &mut Out) {
        if m.call().is_some_and(|c| self.calls.contains_key(&c)) {
            self.handle_meta_answering(now, m, out);
            return;
        }
        match m {
            meta::Message::Setup(s) => {
                let family = out.calls.family(s.call).unwrap_or(Family::V4);
                let inside = self.inside_config(family).clone();
                let call = s.call;
                let release = |out: &mut Out, cause: Cause| {
                    out.send_other(
                        Side::Inside,
                        meta::Message::Release(meta::Release { call, cause }),
                    );
                    out.end_call_by_gateway(now, call, cause);
                };
                let new =
                    NewCall::from_setup(&s, Direction::FromOutside, CallProtocol::H323, family);
                if let Err(r) = out.calls.join(now, call, &new) {
                    release(out, r.cause());
                    return;
                }
                self.next_tcp_port = self.next_tcp_port.wrapping_add(1) % 10_000;
                let flow = Flow {
                    transport: Transport::Tcp,
                    local: SocketAddr::new(inside.gw1_sip.ip(), 50_000 + self.next_tcp_port),
                    // Replay shows the standard port; live, the configured next hop.
                    remote: if self.replay {
                        SocketAddr::new(inside.next_hop.ip(), H225_PORT)
                    } else {
                        inside.next_hop
                    },
                };
                self.next_crv = (self.next_crv % q931::CallRef::MAX_VALUE) + 1;
                let ids = th323::CallIds {
                    call_ref: self.next_crv,
                    conference_id: self.guid(),
                    call_identifier: self.guid(),
                };
                out.media
                    .set_signalling(Side::Inside, call, inside.next_hop.ip());
                out.calls.set_peer(call, Side::Inside, inside.next_hop.ip());
                let mut rtp = None;
                for m in &s.media {
                    let Some(stream) = m.stream else { continue };
                    let opened = out.media.open(
                        Side::Inside,
                        call,
                        stream,
                        inside.media_ip,
                        payload_types(m),
                        None,
                    );
                    match opened {
                        Ok(local) => {
                            rtp.get_or_insert(local);
                        }
                        Err(r) => {
                            out.calls.count_refusal(r);
                            release(out, r.cause());
                            return;
                        }
                    }
                }
                let fs = match rtp {
                    Some(rtp) => th323::fast_start_offer(&s.media, rtp).unwrap_or_default(),
                    None => Vec::new(),
                };
                let mut held_setup = None;
                if let Ok(msg) = th323::setup_message(&s, &ids, fs) {
                    if self.gatekeeper {
                        // Admission first (H.225.0 clause 7.11): the Setup goes on ACF.
                        out.ras_requests.push_back(super::RasRequest::Admit(
                            super::ras_client::AdmissionRequest {
                                call,
                                answer_call: false,
                                call_ref: ids.call_ref,
                                call_identifier: ids.call_identifier,
                                conference_id: ids.conference_id,
                                calling: Some(s.calling.user.clone()),
                                called: Some(s.called.user.clone()),
                                dest: Some(flow.remote),
                            },
                        ));
                        held_setup = Some(msg);
                    } else {
                        self.send_q931(Side::Inside, flow, &msg, out);
                    }
                }
                // The PBX's replies come on this flow with this call reference (GW1 is the
                // caller): the same key as an answering leg's, from the other end.
                let key = (flow.local, flow.remote, ids.call_ref);
                self.by_key.insert(key, call);
                let streams = s.media.iter().filter_map(|m| m.stream).collect();
                self.inside.insert(
                    s.call,
                    Call {
                        flow,
                        ids,
                        proposals: Vec::new(),
                        offer: s.media,
                        streams,
                        state: State::Early,
                        key,
                        side: Side::Inside,
                        h245: Vec::new(),
                        tunnelling: true,
                        procedures: None,
                        far_h245: None,
                        connected: false,
                        fast_answered: false,
                        early_h245: Vec::new(),
                        held_setup,
                    },
                );
            }
            meta::Message::Release(r) => {
                let Some(c) = self.inside.get_mut(&r.call) else {
                    return;
                };
                if c.state == State::Ended {
                    return;
                }
                c.state = State::Ended;
                let (flow, ids) = (c.flow, c.ids);
                // Released while the gatekeeper was asked: the PBX never saw the call.
                if c.held_setup.take().is_some() {
                    out.end_call(now, r.call, r.cause);
                    return;
                }
                // H.323 clause 8.5: channels closed and EndSessionCommand first.
                if let Some(leg) = c.procedures.as_mut() {
                    leg.session.end();
                }
                self.flush_h245(Role::Calling, r.call, out);
                self.stop_h245(Role::Calling, r.call, out);
                if let Ok(msg) = th323::release_complete_message(&ids, false, r.cause) {
                    self.send_q931(Side::Inside, flow, &msg, out);
                }
                out.end_call(now, r.call, r.cause);
            }
            meta::Message::Dtmf(d) => {
                self.send_user_input(Role::Calling, d.call, d.event, d.duration_ms, out);
            }
            _ => {}
        }
    }
}

/// Narrows each stream's allowed payload types to an answer.
fn narrow(out: &mut Out, side: Side, media: &[MediaDescription]) {
    for m in media {
        if let Some(id) = m.stream {
            out.media.set_payload_types(side, id, payload_types(m));
        }
    }
}

/// An audio stream offering `codecs` (20 ms packets, both ways).
fn audio_description(stream: StreamId, codecs: Vec<meta::Codec>) -> MediaDescription {
    MediaDescription {
        stream: Some(stream),
        kind: meta::MediaKind::Audio,
        direction: meta::Direction::SendRecv,
        codecs,
        telephone_event: None,
        ptime_ms: Some(20),
    }
}

/// The session's queued messages, encoded (a message that cannot be encoded is dropped; the
/// session builds only encodable ones).
fn drain_h245(session: &mut Session) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| session.poll_message())
        .filter_map(|m| h323_asn1::encode_h245(&m).ok())
        .collect()
}
