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
//! - Separate and tunnelled H.245 PDUs are decoded and reported by name; UserInputIndication
//!   becomes Meta DTMF. GW2 does not run the H.245 procedures itself (capability exchange,
//!   master/slave, OLC) on a separate H.245 connection: calls it terminates use fastStart.
//! - RAS (UDP 1718/1719, the ports of H.225.0 clause 7.7 and tshark): GW2 is a gateway without a
//!   gatekeeper. Requests meant for a gatekeeper (GRQ, RRQ, URQ, ARQ, BRQ, DRQ, LRQ) are answered
//!   with the matching reject, so endpoints stop retrying; everything else (confirms, rejects,
//!   IRQ from a gatekeeper we are not registered with) is reported and ignored.
//!
//! Call references and stream ids of H.323 calls come from ranges of their own
//! ([`CALL_BASE`], [`STREAM_BASE`]) so they never collide with the SIP half's, and media ports from
//! the upper half of the configured ranges.

use super::ids::Ids;
use super::media::{MediaStream, PortPool};
use super::{
    CallRecord, ConnId, EngineConfig, Event, Family, Flow, InsideConfig, MediaCounters, Out,
    Protocol, Report, Side, Summary, Transmit, Transport, Verdict,
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
use translators::h323 as th323;

/// The H.225.0 call signalling port (H.225.0 clause 7.1 / H.323 annex).
pub const H225_PORT: u16 = 1720;
/// RAS ports: gatekeeper discovery (multicast) and unicast RAS (H.225.0 clause 7.7).
pub const RAS_PORTS: [u16; 2] = [1718, 1719];
/// Meta call references of H.323 calls start here (GW2 allocates even numbers).
pub const CALL_BASE: u32 = 0x4000_0000;
/// Tunnel stream ids of H.323 calls start here.
pub const STREAM_BASE: u16 = 0x8000;
/// H.225.0 and H.245 streams tracked at once; further connections are not followed.
pub const MAX_STREAMS: usize = 65_536;
/// Separate H.245 addresses remembered at once.
pub const MAX_H245_ADDRESSES: usize = 65_536;

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

/// One outside H.323 call that GW2 terminates.
struct OutCall {
    flow: Flow,
    ids: th323::CallIds,
    proposals: Vec<codecs::h245::asn::OpenLogicalChannel>,
    offer: Vec<MediaDescription>,
    streams: Vec<MediaStream>,
    state: State,
    calling: String,
    called: String,
    emergency: bool,
    setup_at: Duration,
    answered_at: Option<Duration>,
}

/// One inside H.323 call that GW1 originates.
struct InCall {
    flow: Flow,
    ids: th323::CallIds,
    offer: Vec<MediaDescription>,
    streams: Vec<MediaStream>,
    state: State,
}

pub struct H323 {
    replay: bool,
    max_calls: usize,
    emergency: Vec<String>,
    inside_protocol: Option<InsideProtocol>,
    v4: InsideConfig,
    v6: InsideConfig,
    inside_family: Option<Family>,
    ids: Ids,
    next_call: u32,
    next_stream: u16,
    next_crv: u16,
    next_tcp_port: u16,
    ports: PortPool,
    ports_v4: PortPool,
    ports_v6: PortPool,
    streams: HashMap<ConnId, Stream>,
    calls: FxHashMap<CallRef, OutCall>,
    /// (caller, GW2, call reference value) of each outside call.
    by_key: HashMap<(SocketAddr, SocketAddr, u16), CallRef>,
    /// Separate H.245 addresses announced in H.225.0 messages.
    h245: HashMap<SocketAddr, CallRef>,
    inside: FxHashMap<CallRef, InCall>,
    media_by_local: FxHashMap<SocketAddr, (CallRef, usize)>,
    media_by_remote: HashMap<SocketAddr, (CallRef, usize)>,
    out_streams: FxHashMap<StreamId, (CallRef, usize)>,
    in_streams: FxHashMap<StreamId, (CallRef, usize)>,
}

fn upper_half((low, high): (u16, u16)) -> (u16, u16) {
    let mid = low + (high.saturating_sub(low)) / 2;
    (mid.max(low) & !1, high)
}

impl H323 {
    pub fn new(cfg: &EngineConfig) -> Self {
        H323 {
            replay: cfg.replay,
            max_calls: cfg.max_calls,
            emergency: cfg.emergency_numbers.clone(),
            inside_protocol: cfg.inside_protocol,
            v4: cfg.inside_v4.clone(),
            v6: cfg.inside_v6.clone(),
            inside_family: cfg.inside_family,
            ids: Ids::new(cfg.id_seed ^ 0x6832_3233),
            next_call: CALL_BASE,
            next_stream: STREAM_BASE,
            next_crv: 0,
            next_tcp_port: 0,
            ports: PortPool::new(upper_half(cfg.outside_media_ports)),
            ports_v4: PortPool::new(upper_half(cfg.inside_v4.media_ports)),
            ports_v6: PortPool::new(upper_half(cfg.inside_v6.media_ports)),
            streams: HashMap::new(),
            calls: FxHashMap::default(),
            by_key: HashMap::new(),
            h245: HashMap::new(),
            inside: FxHashMap::default(),
            media_by_local: FxHashMap::default(),
            media_by_remote: HashMap::new(),
            out_streams: FxHashMap::default(),
            in_streams: FxHashMap::default(),
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
                framer: TpktFramer::new(),
                dead: false,
            },
        );
        true
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
        let kind = s.kind;
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
                Kind::H225 => self.handle_h225(now, flow, &f, out),
                Kind::H245 => self.handle_h245_frame(flow, &f, None, out),
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
                side: self.side_of(&flow),
                summary: Summary::Text("TPKT framing lost".to_owned()),
                verdict: Verdict::Rejected,
                reason: Some(format!("malformed: {e}; connection closed")),
                response: None,
                call: None,
            }));
        }
    }

    /// Outside, or (replay) the answering party standing in for the inside.
    fn side_of(&self, flow: &Flow) -> Side {
        if self.replay && self.answering_call(flow).is_some() {
            Side::Inside
        } else {
            Side::Outside
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
        });
    }

    /// Answers a message that cannot be handled with Release Complete (Q.931 clause 5.8).
    fn reject_h225(
        &self,
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
                self.send_q931(Side::Outside, flow, &m, out);
                reason.push_str(&format!("; answered Release Complete, cause {}", cause.0));
            }
        }
        self.report(
            out,
            Protocol::H225,
            Side::Outside,
            summary,
            Verdict::Rejected,
            Some(reason),
            None,
        );
    }

    /// One Q.931 message (a TPKT payload) on an H.225.0 stream.
    fn handle_h225(&mut self, now: Duration, flow: Flow, bytes: &[u8], out: &mut Out) {
        let header = q931::peek(bytes).ok().map(|(cr, mt, _)| (cr, mt));
        let mt_name = header.map_or("Q.931", |(_, mt)| mt.name());
        let msg = match q931::Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                let cause = e.cause().map(Cause::from);
                let cr = header.map(|(cr, _)| cr);
                self.reject_h225(flow, cr, cause, mt_name.to_owned(), e.to_string(), out);
                return;
            }
        };
        if let Err(e) = msg.check_mandatory() {
            let cause = e.cause().map(Cause::from);
            self.reject_h225(
                flow,
                Some(msg.call_ref),
                cause,
                mt_name.to_owned(),
                e.to_string(),
                out,
            );
            return;
        }
        let uu = match h225::user_information(&msg) {
            Ok(uu) => uu,
            // Status, Status Enquiry, Information may come without H.225.0 PDU.
            Err(h225::H225Error::NoUserUser) => {
                let side = self.side_of(&flow);
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
        if let (Some(a), Some(c)) = (h225::h245_address(pdu), call) {
            if self.h245.len() < MAX_H245_ADDRESSES {
                self.h245.insert(a, c);
            }
        }
        // Tunnelled H.245 is reported PDU by PDU.
        let tunnelled: Vec<Bytes> = h225::h245_control(pdu)
            .iter()
            .map(|o| Bytes::copy_from_slice(o))
            .collect();
        if msg.call_ref.from_destination {
            // Sent by a called party: in replay the answering party plays the inside; live,
            // GW2 never places outside calls, so there is no such call.
            match call.filter(|_| self.replay) {
                Some(call) => {
                    self.handle_answering(now, call, &msg, &uu, name, out);
                }
                None => self.report(
                    out,
                    Protocol::H225,
                    Side::Outside,
                    name.to_owned(),
                    Verdict::Ignored,
                    Some("matches no call of the gateway".to_owned()),
                    None,
                ),
            }
        } else {
            match (&pdu.h323_message_body, msg.msg_type, call) {
                (Body::setup(_), MessageType::Setup, None) => {
                    self.handle_setup(now, flow, &msg, &uu, out)
                }
                (_, MessageType::Setup, Some(c)) => self.report(
                    out,
                    Protocol::H225,
                    Side::Outside,
                    name.to_owned(),
                    Verdict::Ignored,
                    Some("Setup repeated for an existing call".to_owned()),
                    Some(c),
                ),
                (_, MessageType::ReleaseComplete, Some(c)) => {
                    let cause = th323::release_cause(&msg, Some(&uu));
                    let live = self.calls.get(&c).is_some_and(|x| x.state != State::Ended);
                    if live {
                        out.to_gw1
                            .push_back(meta::Message::Release(meta::Release { call: c, cause }));
                        self.end_call(now, c, cause, out);
                    }
                    self.report(
                        out,
                        Protocol::H225,
                        Side::Outside,
                        name.to_owned(),
                        Verdict::Accepted,
                        None,
                        Some(c),
                    );
                }
                (_, MessageType::ReleaseComplete, None) => self.report(
                    out,
                    Protocol::H225,
                    Side::Outside,
                    name.to_owned(),
                    Verdict::Ignored,
                    Some("matches no call of the gateway".to_owned()),
                    None,
                ),
                (_, _, Some(c)) => self.report(
                    out,
                    Protocol::H225,
                    Side::Outside,
                    name.to_owned(),
                    Verdict::Accepted,
                    None,
                    Some(c),
                ),
                (_, _, None) => {
                    // Q.931 clause 5.8.3.2: a message for an unknown call reference is
                    // answered with Release Complete, cause 81.
                    self.reject_h225(
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
        for t in tunnelled {
            self.handle_h245_frame(flow, &t, call, out);
        }
    }

    fn handle_setup(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &q931::Message,
        uu: &h225::asn::H323UserInformation,
        out: &mut Out,
    ) {
        let next_stream = &mut self.next_stream;
        let info = match th323::setup_to_meta(msg, uu, &mut || {
            *next_stream = next_stream.wrapping_add(2).max(STREAM_BASE);
            StreamId(*next_stream)
        }) {
            Ok(i) => i,
            Err(e) => {
                self.reject_h225(
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
        let emergency = self.emergency.contains(&info.called.user);
        let active = self
            .calls
            .values()
            .filter(|c| c.state != State::Ended)
            .count();
        if active >= self.max_calls && !emergency {
            let ids = th323::CallIds {
                call_ref: msg.call_ref.value,
                conference_id: info.conference_id,
                call_identifier: info.call_identifier.unwrap_or(info.conference_id),
            };
            if let Ok(m) =
                th323::release_complete_message(&ids, true, Cause::SWITCHING_EQUIPMENT_CONGESTION)
            {
                self.send_q931(Side::Outside, flow, &m, out);
            }
            self.report(
                out,
                Protocol::H225,
                Side::Outside,
                "Setup".to_owned(),
                Verdict::Rejected,
                Some("call limit reached; answered Release Complete, cause 42".to_owned()),
                None,
            );
            return;
        }
        self.next_call = self.next_call.wrapping_add(2).max(CALL_BASE);
        let call = CallRef(self.next_call);
        let ids = th323::CallIds {
            call_ref: msg.call_ref.value,
            conference_id: info.conference_id,
            call_identifier: info.call_identifier.unwrap_or(info.conference_id),
        };
        let mut streams = Vec::new();
        for (i, m) in info.media.media.iter().enumerate() {
            let Some(stream) = m.stream else { continue };
            let local = SocketAddr::new(flow.local.ip(), self.ports.allocate());
            let remote = info.media.remotes.get(i).copied().flatten();
            let idx = streams.len();
            self.media_by_local.insert(local, (call, idx));
            if let Some(r) = remote {
                self.media_by_remote.insert(r, (call, idx));
            }
            self.out_streams.insert(stream, (call, idx));
            streams.push(MediaStream {
                stream,
                local,
                remote,
                payload_types: payload_types(m),
                ssrc: None,
                counters: MediaCounters::default(),
            });
        }
        if let Ok(m) = th323::call_proceeding_message(&ids) {
            self.send_q931(Side::Outside, flow, &m, out);
        }
        if let Some(a) = info.h245_address {
            if self.h245.len() < MAX_H245_ADDRESSES {
                self.h245.insert(a, call);
            }
        }
        self.by_key
            .insert((flow.remote, flow.local, msg.call_ref.value), call);
        self.calls.insert(
            call,
            OutCall {
                flow,
                ids,
                proposals: info.proposals,
                offer: info.media.media.clone(),
                streams,
                state: State::Early,
                calling: info.calling.user.clone(),
                called: info.called.user.clone(),
                emergency,
                setup_at: now,
                answered_at: None,
            },
        );
        out.outside_family
            .insert(call, Family::of(flow.remote.ip()));
        out.to_gw1.push_back(meta::Message::Setup(meta::Setup {
            call,
            calling: info.calling,
            called: info.called,
            emergency,
            media: info.media.media,
        }));
        self.report(
            out,
            Protocol::H225,
            Side::Outside,
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
            out.to_gw2.push_back(m);
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
        flow: Flow,
        bytes: &[u8],
        call: Option<CallRef>,
        out: &mut Out,
    ) {
        let call = call
            .or_else(|| self.h245.get(&flow.local).copied())
            .or_else(|| self.h245.get(&flow.remote).copied());
        let side = self.side_of(&flow);
        match h323_asn1::decode_h245(bytes) {
            Ok(m) => {
                let name = codecs::h245::message_name(&m);
                if let (Some(c), Some((event, duration_ms))) = (call, th323::dtmf_from_h245(&m)) {
                    let confirmed = self
                        .calls
                        .get(&c)
                        .is_some_and(|x| x.state == State::Confirmed);
                    if side == Side::Outside && confirmed {
                        out.to_gw1.push_back(meta::Message::Dtmf(meta::Dtmf {
                            call: c,
                            event,
                            duration_ms,
                        }));
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

    /// A UDP datagram: RAS on its ports, or media of an H.323 call. Returns false when it is
    /// neither (the SIP half takes it).
    pub fn handle_datagram(&mut self, flow: Flow, data: &Bytes, out: &mut Out) -> bool {
        if RAS_PORTS.contains(&flow.local.port()) || RAS_PORTS.contains(&flow.remote.port()) {
            self.handle_ras(flow, data, out);
            return true;
        }
        self.handle_media(flow, data, out)
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

    fn handle_media(&mut self, flow: Flow, data: &Bytes, out: &mut Out) -> bool {
        let Some(&(call, idx)) = self
            .media_by_local
            .get(&flow.local)
            .or_else(|| self.media_by_remote.get(&flow.remote))
        else {
            return false;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let ended = c.state == State::Ended;
        let Some(s) = c.streams.get_mut(idx) else {
            return false;
        };
        let rtcp_hint = super::media::is_rtcp(data);
        let protocol = if rtcp_hint {
            Protocol::Rtcp
        } else {
            Protocol::Rtp
        };
        let src = if rtcp_hint {
            SocketAddr::new(flow.remote.ip(), flow.remote.port().wrapping_sub(1))
        } else {
            flow.remote
        };
        let result = if ended {
            Err("call has ended".to_owned())
        } else {
            s.check(src, data).map_err(|d| d.reason())
        };
        let summary = super::media::media_summary(data);
        match result {
            Ok(rtcp) => {
                out.media_to_gw1.push_back((s.stream, rtcp, data.clone()));
                out.report(Report {
                    protocol,
                    side: Side::Outside,
                    summary,
                    verdict: Verdict::Accepted,
                    reason: None,
                    response: None,
                    call: Some(call.0),
                });
            }
            Err(reason) => out.report(Report {
                protocol,
                side: Side::Outside,
                summary,
                verdict: Verdict::Rejected,
                reason: Some(reason),
                response: None,
                call: Some(call.0),
            }),
        }
        true
    }

    /// Whether Meta toward GW1 about `m` is for the H.323 inside.
    pub fn inside_wants(&self, m: &meta::Message) -> bool {
        match m {
            meta::Message::Setup(s) => match self.inside_protocol {
                Some(p) => p == InsideProtocol::H323,
                None => self.calls.contains_key(&s.call),
            },
            other => other.call().is_some_and(|c| self.inside.contains_key(&c)),
        }
    }

    /// Whether Meta toward GW2 about this call is for an outside H.323 call.
    pub fn outside_owns(&self, call: CallRef) -> bool {
        self.calls.contains_key(&call)
    }

    pub fn owns_outside_stream(&self, s: StreamId) -> bool {
        self.out_streams.contains_key(&s)
    }

    pub fn owns_inside_stream(&self, s: StreamId) -> bool {
        self.in_streams.contains_key(&s)
    }

    /// Meta from GW1 for an outside H.323 call.
    pub fn handle_meta_outside(&mut self, now: Duration, m: meta::Message, out: &mut Out) {
        let Some(call) = m.call() else { return };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state == State::Ended {
            return;
        }
        let flow = c.flow;
        let ids = c.ids;
        let rtp = c.streams.first().map(|s| s.local);
        let answer = |c: &OutCall, media: &[MediaDescription]| match rtp {
            Some(rtp) if !media.is_empty() => {
                th323::fast_start_answer(&c.proposals, media, rtp).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let msg = match m {
            meta::Message::Alerting(a) => {
                narrow(c, &a.media);
                th323::alerting_message(&ids, answer(c, &a.media))
            }
            meta::Message::Progress(p) => {
                if p.media.is_empty() {
                    return;
                }
                narrow(c, &p.media);
                th323::progress_message(&ids, answer(c, &p.media))
            }
            meta::Message::Answer(a) => {
                if c.state != State::Early {
                    return;
                }
                narrow(c, &a.media);
                c.state = State::Confirmed;
                c.answered_at = Some(now);
                th323::connect_message(&ids, answer(c, &a.media))
            }
            meta::Message::Release(r) => {
                let m = th323::release_complete_message(&ids, true, r.cause);
                self.end_call(now, call, r.cause, out);
                m
            }
            _ => return,
        };
        if let Ok(msg) = msg {
            self.send_q931(Side::Outside, flow, &msg, out);
        }
    }

    fn end_call(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state == State::Ended {
            return;
        }
        c.state = State::Ended;
        let mut media = MediaCounters::default();
        for s in &c.streams {
            media.add(&s.counters);
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

    fn inside_config(&self, outside: Family) -> &InsideConfig {
        match self.inside_family.unwrap_or(outside) {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Meta from GW2 for the H.323 inside: GW1 places the call toward the inside next hop
    /// (port 1720), with fresh identifiers and its own addresses only.
    pub fn handle_meta_inside(&mut self, _now: Duration, m: meta::Message, out: &mut Out) {
        match m {
            meta::Message::Setup(s) => {
                let family = out
                    .outside_family
                    .get(&s.call)
                    .copied()
                    .unwrap_or(Family::V4);
                let inside = self.inside_config(family).clone();
                self.next_tcp_port = self.next_tcp_port.wrapping_add(1) % 10_000;
                let flow = Flow {
                    transport: Transport::Tcp,
                    local: SocketAddr::new(inside.gw1_sip.ip(), 50_000 + self.next_tcp_port),
                    remote: SocketAddr::new(inside.next_hop.ip(), H225_PORT),
                };
                self.next_crv = (self.next_crv % q931::CallRef::MAX_VALUE) + 1;
                let ids = th323::CallIds {
                    call_ref: self.next_crv,
                    conference_id: self.guid(),
                    call_identifier: self.guid(),
                };
                let mut streams = Vec::new();
                let mut rtp = None;
                for m in &s.media {
                    let Some(stream) = m.stream else { continue };
                    let port = match Family::of(inside.media_ip) {
                        Family::V4 => self.ports_v4.allocate(),
                        Family::V6 => self.ports_v6.allocate(),
                    };
                    let local = SocketAddr::new(inside.media_ip, port);
                    rtp.get_or_insert(local);
                    self.in_streams.insert(stream, (s.call, streams.len()));
                    streams.push(MediaStream {
                        stream,
                        local,
                        remote: None,
                        payload_types: payload_types(m),
                        ssrc: None,
                        counters: MediaCounters::default(),
                    });
                }
                let fs = match rtp {
                    Some(rtp) => th323::fast_start_offer(&s.media, rtp).unwrap_or_default(),
                    None => Vec::new(),
                };
                if let Ok(msg) = th323::setup_message(&s, &ids, fs) {
                    self.send_q931(Side::Inside, flow, &msg, out);
                }
                self.inside.insert(
                    s.call,
                    InCall {
                        flow,
                        ids,
                        offer: s.media,
                        streams,
                        state: State::Early,
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
                if let Ok(msg) = th323::release_complete_message(&ids, false, r.cause) {
                    self.send_q931(Side::Inside, flow, &msg, out);
                }
            }
            _ => {}
        }
    }

    /// Media from GW1 for an outside H.323 call: sent from GW2's port to the caller.
    pub fn handle_tunnel_media_outside(
        &mut self,
        stream: StreamId,
        rtcp: bool,
        data: Bytes,
        out: &mut Out,
    ) {
        let Some(&(call, idx)) = self.out_streams.get(&stream) else {
            return;
        };
        let Some(s) = self.calls.get(&call).and_then(|c| c.streams.get(idx)) else {
            return;
        };
        relay(s, Side::Outside, rtcp, data, out);
    }

    /// Media from GW2 for an inside H.323 call: sent from GW1's port to the inside endpoint.
    pub fn handle_tunnel_media_inside(
        &mut self,
        stream: StreamId,
        rtcp: bool,
        data: Bytes,
        out: &mut Out,
    ) {
        let Some(&(call, idx)) = self.in_streams.get(&stream) else {
            return;
        };
        let Some(s) = self.inside.get(&call).and_then(|c| c.streams.get(idx)) else {
            return;
        };
        relay(s, Side::Inside, rtcp, data, out);
    }

    /// Outside calls not yet ended.
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
}

fn relay(s: &MediaStream, side: Side, rtcp: bool, data: Bytes, out: &mut Out) {
    let Some(remote) = s.remote else { return };
    let (local, remote) = if rtcp {
        (
            SocketAddr::new(s.local.ip(), s.local.port().wrapping_add(1)),
            SocketAddr::new(remote.ip(), remote.port().wrapping_add(1)),
        )
    } else {
        (s.local, remote)
    };
    out.transmits.push_back(Transmit {
        side,
        flow: Flow {
            transport: Transport::Udp,
            local,
            remote,
        },
        protocol: if rtcp { Protocol::Rtcp } else { Protocol::Rtp },
        payload: data,
    });
}

/// Narrows each stream's allowed payload types to an answer.
fn narrow(c: &mut OutCall, media: &[MediaDescription]) {
    for m in media {
        let Some(id) = m.stream else { continue };
        if let Some(s) = c.streams.iter_mut().find(|s| s.stream == id) {
            let pts = payload_types(m);
            if !pts.is_empty() {
                s.payload_types = pts;
            }
        }
    }
}

fn payload_types(m: &MediaDescription) -> Vec<u8> {
    let mut pts: Vec<u8> = m.codecs.iter().map(|c| c.payload_type).collect();
    if let Some(te) = m.telephone_event {
        pts.push(te.payload_type);
    }
    if m.kind == meta::MediaKind::Audio {
        pts.push(13);
    }
    pts
}
