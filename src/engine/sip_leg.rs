//! The SIP leg: one back-to-back user agent half, used on both sides. GW2's outside leg and
//! GW1's inside leg are two configurations of it ([`LegConfig`]); a call from the Internet and a
//! call from the intranet run the same code with the direction swapped.
//!
//! A leg is the UAS of calls that arrive on its side (it answers the INVITE, then hands the call
//! to the other half as a Meta Setup) and the UAC of calls the other half hands it (it places
//! them toward its next hop). Dialogs follow RFC 3261 section 12 on both: the route set from
//! Record-Route (copied by a UAS, reversed by a UAC), the remote target from Contact, in-dialog
//! requests sent to the first route (else the remote target), responses sent where the Via says
//! (section 18.2.2), and a Contact that names the transport in use.
//!
//! Every call a leg takes ends: a final answer from the other half, CANCEL, BYE, an unanswered
//! INVITE ([`NO_ANSWER`], timer C of RFC 3261 section 16.6), a 2xx never acknowledged (BYE after
//! 64*T1, section 13.3.1.4), a request timeout, or a Setup that Meta cannot carry (500).

use super::calls::{CallProtocol, Direction, NewCall, Refusal};
use super::ids::Ids;
use super::media::payload_types;
use super::policy::{self, Rejection, SipPolicy};
use super::timers::Timers;
use super::txn::{ClientTxns, ServerTxn, ServerTxns, TxnCounters, TxnKey};
use super::{
    Family, Flow, InsideConfig, Out, Protocol, Report, Side, Summary, Transmit, Transport,
};
use super::{Verdict, MAX_FAMILY};
use bytes::Bytes;
use codecs::meta::{self, CallRef, Cause, MediaDescription, MediaKind, StreamId};
use codecs::sip::{self, HeaderName, Message, MessageBuilder, Method, SipError, StartLine};
use rustc_hash::FxHashMap;
// Maps keyed by what peers choose (Call-ID) keep SipHash against hash flooding; maps keyed by
// the gateway's own identifiers use FxHash.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use translators::sip as tsip;

/// How long an INVITE may stay unanswered before the leg gives up on it (timer C, RFC 3261
/// section 16.6: more than three minutes).
pub const NO_ANSWER: Duration = Duration::from_secs(181);

/// Where a leg places the calls the other half hands it, per IP family.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The leg's own SIP address (Via, Contact, source).
    pub local: SocketAddr,
    /// The proxy, PBX or provider calls go to.
    pub next_hop: SocketAddr,
    pub transport: Transport,
    /// The address put in SDP; ports from the media table.
    pub media_ip: IpAddr,
}

/// What makes a leg GW2's outside or GW1's inside.
#[derive(Debug, Clone)]
pub struct LegConfig {
    pub side: Side,
    pub policy: SipPolicy,
    /// Placement per family ([`Family::V4`], [`Family::V6`]); `None` refuses calls from the
    /// other half in that family (cause 3, no route).
    pub placement: [Option<Placement>; MAX_FAMILY],
    /// The family calls are placed in; `None` keeps the family the call arrived in.
    pub family: Option<Family>,
    /// The media address of calls this leg answers, per family; `None` uses the address the
    /// INVITE arrived on.
    pub media_ip: [Option<IpAddr>; MAX_FAMILY],
    /// Requests to a peer without a route set go back to where it sent from, and responses to
    /// its source address (symmetric signalling, for peers behind NAT). GW2's outside leg;
    /// the inside follows the remote target and the Via. (Both legs take in-dialog requests
    /// from the dialog's peer only: `Dialog::is_from_peer`.)
    pub symmetric: bool,
    /// The user part of the leg's Contact.
    pub contact_user: &'static str,
    pub ids_seed: u64,
    /// The account that answers 401/407 to the INVITEs this leg places (GW2's provider
    /// trunk, `[gw2.registration]`).
    pub trunk: Option<super::auth::ClientCredentials>,
}

impl LegConfig {
    /// GW1's inside leg from the inside addressing.
    pub fn inside(
        policy: SipPolicy,
        v4: &InsideConfig,
        v6: &InsideConfig,
        family: Option<Family>,
        seed: u64,
    ) -> Self {
        let placement = |c: &InsideConfig| Placement {
            local: c.gw1_sip,
            next_hop: c.next_hop,
            transport: c.transport,
            media_ip: c.media_ip,
        };
        LegConfig {
            side: Side::Inside,
            policy,
            placement: [Some(placement(v4)), Some(placement(v6))],
            family,
            media_ip: [Some(v4.media_ip), Some(v6.media_ip)],
            symmetric: false,
            contact_user: "gw1",
            ids_seed: seed ^ 0x6777_3100,
            trunk: None,
        }
    }

    /// GW2's outside leg: calls from the inside go to `next_hop` over `transport`, from
    /// `local`.
    pub fn outside(
        policy: SipPolicy,
        local: Option<SocketAddr>,
        next_hop: Option<SocketAddr>,
        transport: Transport,
        seed: u64,
    ) -> Self {
        let placement = match (local, next_hop) {
            (Some(local), Some(next_hop)) => Some(Placement {
                local,
                next_hop,
                transport,
                media_ip: local.ip(),
            }),
            _ => None,
        };
        let fam = placement
            .as_ref()
            .map(|p| Family::of(p.next_hop.ip()))
            .unwrap_or(Family::V4);
        LegConfig {
            side: Side::Outside,
            policy,
            placement: match fam {
                Family::V4 => [placement, None],
                Family::V6 => [None, placement],
            },
            family: Some(fam),
            media_ip: [None, None],
            symmetric: true,
            contact_user: "gw",
            ids_seed: seed ^ 0x6777_3200,
            trunk: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Early,
    Confirmed,
    Ended,
}

/// One dialog of a leg (RFC 3261 section 12), as UAS or UAC.
#[derive(Debug)]
pub struct Dialog {
    /// This leg sent the initial INVITE.
    pub uac: bool,
    /// Transport, the leg's own address, and the peer the dialog talks to by default.
    pub flow: Flow,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// From/To values without tag, as this leg writes them in its requests.
    local_uri: String,
    remote_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    pub state: State,
    /// UAS: the initial INVITE's transaction. Boxed, like `reinvite`: a key is 128 bytes
    /// inline, and most dialogs hold neither for long (issue 11, memory per call).
    invite_key: Option<Box<TxnKey>>,
    /// UAC: the initial INVITE's branch and CSeq.
    pub invite_branch: Option<String>,
    /// UAS: a re-INVITE or UPDATE waiting for the other half's answer.
    reinvite: Option<Box<TxnKey>>,
    /// UAS: INVITE transactions whose 2xx the peer's ACK confirms.
    awaiting_ack: Vec<TxnKey>,
    /// The last request this leg sent per method, by branch (replay matches by method).
    pub sent: Vec<(Method, String)>,
    /// UAC: the CSeq number and branch of the ACK of the last 2xx. A retransmitted 2xx is
    /// ACKed again with the same branch, the ACK rebuilt from the dialog: the dialog keeps
    /// about 40 bytes for it, not a whole message (issue 11, memory per call).
    ack: Option<(u32, String)>,
    /// UAC: the last provisional status handed on (a repeated one is not handed on again).
    provisional: u16,
    /// UAC: challenges (401/407) of the initial INVITE answered with credentials.
    auth_tries: u8,
    /// The media as this leg describes it to its peer (streams and codecs).
    offer: Vec<MediaDescription>,
    /// UAC of a re-INVITE: the media before it, restored when the peer refuses it.
    before_offer: Option<Vec<MediaDescription>>,
    media_ip: IpAddr,
    sdp_id: u64,
    sdp_version: u64,
    /// Made by a SIPS request: the leg's Contact is a SIPS URI (RFC 3261 section 12.1.1).
    sips: bool,
    /// Per media description: the `a=crypto` value of the gateway's key when the stream is
    /// served as SRTP (GW2's outside, offered `RTP/SAVP` over TLS).
    crypto: Vec<Option<String>>,
    /// UAC: the audio streams whose offer got a telephone-event the other side did not offer
    /// (the gateway converts it when the peer accepts it, see [`super::dtmf`]).
    dtmf_added: Vec<StreamId>,
}

impl Dialog {
    /// The value of our From (UAC requests) with tag.
    fn local(&self) -> String {
        with_tag(&self.local_uri, Some(&self.local_tag))
    }

    fn remote(&self) -> String {
        with_tag(&self.remote_uri, self.remote_tag.as_deref())
    }

    /// Where an in-dialog request goes: the first route, else the remote target, else (and
    /// always for a symmetric leg without routes) the peer the dialog was set up with.
    fn destination(&self, symmetric: bool) -> SocketAddr {
        let uri = match self.route_set.first() {
            Some(r) => sip::NameAddr::parse(r, "Route").ok().map(|n| n.uri),
            None if symmetric => None,
            None => sip::Uri::parse(&self.remote_target).ok(),
        };
        uri.and_then(|u| uri_addr(&u)).unwrap_or(self.flow.remote)
    }

    /// The adjacent proxy of a record-routed dialog: its first route, when it names an
    /// address.
    fn first_route(&self) -> Option<SocketAddr> {
        self.route_set
            .first()
            .and_then(|r| sip::NameAddr::parse(r, "Route").ok())
            .and_then(|n| uri_addr(&n.uri))
    }

    /// Where the dialog's peer sends from: the flow it was set up on, the remote target (a
    /// peer not behind NAT that sends its requests itself) and the first route (the adjacent
    /// proxy), each as an address when the URI holds one.
    fn peers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let target = sip::Uri::parse(&self.remote_target)
            .ok()
            .and_then(|u| uri_addr(&u));
        std::iter::once(self.flow.remote)
            .chain(target)
            .chain(self.first_route())
    }

    /// Whether a request on `flow` comes from the dialog's peer (RFC 3261 sections 12.2.2 and
    /// 18, hardened against forged requests that copy the Call-ID and tags):
    /// - over UDP, from the address *and port* of the flow the dialog was set up on or of its
    ///   remote target; a datagram from the peer's host on another port, or from another host,
    ///   is refused. A record-routing proxy (the first route) is bound to its host only: a
    ///   proxy with several sockets may forward from another port than its Record-Route names;
    /// - over TCP and TLS, on the dialog's connection, or on a connection from one of those
    ///   hosts: a peer opens a new connection from an ephemeral port when the old one closed
    ///   (idle), and a TCP source cannot be forged off the path.
    fn is_from_peer(&self, flow: &Flow) -> bool {
        let src = flow.remote;
        let host = |p: SocketAddr| canonical(p.ip()) == canonical(src.ip());
        if flow.transport.is_reliable() {
            return self.peers().any(host);
        }
        let exact = std::iter::once(self.flow.remote)
            .chain(
                sip::Uri::parse(&self.remote_target)
                    .ok()
                    .and_then(|u| uri_addr(&u)),
            )
            .any(|p| same_addr(p, src));
        exact || self.first_route().is_some_and(host)
    }

    fn sdp(&self, media: &super::media::MediaTable, side: Side) -> Bytes {
        let ports: Vec<Option<u16>> = self
            .offer
            .iter()
            .map(|m| {
                m.stream
                    .and_then(|id| media.local(side, id))
                    .map(|a| a.port())
            })
            .collect();
        tsip::sdp_from_media_srtp(
            &self.offer,
            self.media_ip,
            &ports,
            &self.crypto,
            self.sdp_id,
            self.sdp_version,
        )
    }

    /// Takes the other side's answer into the media this leg describes, keeping the
    /// telephone-event its peer offered when the answer has none (the gateway converts it, see
    /// [`super::dtmf`]); narrows the streams' payload types and sets up their DTMF. Returns
    /// nothing: the media table holds the result.
    fn take_answer_with_dtmf(
        &mut self,
        now: Duration,
        out: &mut Out,
        side: Side,
        media: &[MediaDescription],
    ) {
        narrow(out, side, media);
        for o in self.offer.iter_mut() {
            let Some(id) = o.stream else { continue };
            let Some(a) = media.iter().find(|a| a.stream == Some(id)) else {
                continue;
            };
            let kept = o
                .telephone_event
                .filter(|_| a.telephone_event.is_none() && a.kind == MediaKind::Audio);
            let mut new = a.clone();
            if kept.is_some() {
                new.telephone_event = kept;
            }
            out.media
                .set_telephone_event(now, side, id, new.telephone_event, kept.is_some());
            *o = new;
        }
    }

    /// The first audio stream of the call whose peer negotiated telephone-event (the media
    /// table knows whether the gateway converts it).
    fn dtmf_stream(&self) -> Option<StreamId> {
        self.offer
            .iter()
            .find(|m| m.kind == MediaKind::Audio && m.telephone_event.is_some())
            .and_then(|m| m.stream)
    }

    /// Takes the answer's codecs per stream into the media this leg describes.
    fn take_answer(&mut self, media: &[MediaDescription]) {
        for o in self.offer.iter_mut() {
            if let Some(a) = media
                .iter()
                .find(|a| a.stream.is_some() && a.stream == o.stream)
            {
                *o = a.clone();
            }
        }
    }
}

/// An offer read from this leg's peer: Meta media, the peer's addresses, and the SDES key
/// chosen per description (SRTP streams only).
struct Offer {
    media: Vec<MediaDescription>,
    remotes: Vec<Option<std::net::SocketAddr>>,
    sdes: Vec<Option<super::srtp::Sdes>>,
}

/// One SIP leg. See the module docs.
pub struct SipLeg {
    cfg: LegConfig,
    ids: Ids,
    /// Boxed: a map keeps the slots of its largest size, and a slot holds only a pointer
    /// (issue 11, memory per call).
    dialogs: FxHashMap<CallRef, Box<Dialog>>,
    /// Each dialog's next hop (its flow's remote, fixed for its life), apart from the dialog:
    /// replay's media path asks it for every packet of the answering party.
    next_hops: FxHashMap<CallRef, SocketAddr>,
    /// Call-IDs are the peers' text: seeded per process (foldhash's quality hasher, cheaper
    /// than SipHash for every message).
    by_call_id: HashMap<String, CallRef, foldhash::quality::RandomState>,
    /// The call an INVITE was admitted as before it failed (no media port, ...): its rejection
    /// carries the call's id, as its call record does.
    failed_call: Option<CallRef>,
    server: ServerTxns,
    client: ClientTxns,
    /// No-answer timers of early dialogs.
    timers: Timers<CallRef>,
    pub counters: TxnCounters,
    /// GW2's registration to its provider (outside leg only).
    pub registration: Option<super::registration::Registration>,
    /// The engine time of the latest message or timer (the registration's `expires_in`).
    last_now: Duration,
    /// Where REGISTER goes from without a placement of the registrar's family.
    registration_from: Option<(SocketAddr, Transport)>,
}

/// What a request handler answers: the status sent (if any) and the call.
type Handled = Result<(Option<u16>, Option<CallRef>), Rejection>;

impl SipLeg {
    pub fn new(cfg: LegConfig) -> Self {
        SipLeg {
            ids: Ids::new(cfg.ids_seed),
            cfg,
            dialogs: FxHashMap::default(),
            next_hops: FxHashMap::default(),
            by_call_id: HashMap::default(),
            failed_call: None,
            server: ServerTxns::default(),
            client: ClientTxns::default(),
            timers: Timers::default(),
            counters: TxnCounters::default(),
            registration: None,
            last_now: Duration::ZERO,
            registration_from: None,
        }
    }

    /// Registers to the provider from now on (see [`super::registration`]); its credentials
    /// also answer the challenges of the calls this leg places.
    /// `from`: GW2's own SIP address and transport, for a registrar when no call placement
    /// (`outside_next_hop`) of its family exists.
    pub fn start_registration(
        &mut self,
        cfg: super::registration::RegistrationConfig,
        from: Option<(SocketAddr, Transport)>,
    ) {
        self.registration_from = from;
        self.cfg.trunk = Some(cfg.credentials.clone());
        let call_id = format!("{}@sgw", self.ids.token());
        let tag = self.ids.token();
        let r = super::registration::Registration::new(cfg, call_id, tag);
        self.registration = Some(r);
    }

    /// Where REGISTER goes from: the placement of the registrar's family.
    fn registration_flow(&self) -> Option<Flow> {
        let r = self.registration.as_ref()?;
        let (local, transport) = self
            .cfg
            .placement
            .iter()
            .flatten()
            .map(|p| (p.local, p.transport))
            .chain(self.registration_from)
            .find(|(local, _)| local.is_ipv4() == r.registrar().is_ipv4())?;
        Some(Flow {
            transport,
            local,
            remote: r.registrar(),
        })
    }

    /// Sends the REGISTER that is due, if any.
    fn poll_registration(&mut self, now: Duration, out: &mut Out) {
        let Some(flow) = self.registration_flow() else {
            return;
        };
        let branch = self.ids.branch();
        let Some(r) = self.registration.as_mut() else {
            return;
        };
        if let Some(o) = r.poll_transmit(now, flow.local, flow.transport.via_token(), branch) {
            self.send_register(now, flow, o, out);
        }
    }

    fn send_register(
        &mut self,
        now: Duration,
        flow: Flow,
        o: super::registration::Outgoing,
        out: &mut Out,
    ) {
        let counters = &mut self.counters;
        self.client.send(
            now,
            self.cfg.side,
            flow,
            o.branch,
            Method::Register,
            CallRef(0),
            o.request,
            out,
            counters,
        );
    }

    /// The registration's state, for `stats` (as of the latest message or timer).
    pub fn registration_status(&self) -> Option<super::registration::RegistrationStatus> {
        self.registration.as_ref().map(|r| r.status(self.last_now))
    }

    /// Identifiers from this generator from now on (the live driver's cryptographic one).
    pub fn set_ids(&mut self, ids: Ids) {
        self.ids = ids;
    }

    pub fn dialog(&self, call: CallRef) -> Option<&Dialog> {
        self.dialogs.get(&call).map(Box::as_ref)
    }

    /// The remote of `call`'s dialog flow: `dialog(call).map(|d| d.flow.remote)`, without
    /// reading the dialog.
    pub fn next_hop(&self, call: CallRef) -> Option<SocketAddr> {
        let hop = self.next_hops.get(&call).copied();
        debug_assert_eq!(hop, self.dialog(call).map(|d| d.flow.remote));
        hop
    }

    pub fn call_by_call_id(&self, call_id: &str) -> Option<CallRef> {
        self.by_call_id.get(call_id).copied()
    }

    /// Whether a response with this branch answers a request of this leg.
    pub fn knows_branch(&self, branch: &str) -> bool {
        self.client.contains(branch)
    }

    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    pub fn server_txns(&self) -> usize {
        self.server.len()
    }

    fn report(&self, out: &mut Out, summary: String, verdict: Verdict, reason: Option<String>) {
        self.report_full(out, summary, verdict, reason, None, None);
    }

    fn report_full(
        &self,
        out: &mut Out,
        summary: String,
        verdict: Verdict,
        reason: Option<String>,
        response: Option<u16>,
        call: Option<CallRef>,
    ) {
        out.report(Report {
            protocol: Protocol::Sip,
            side: self.cfg.side,
            summary: Summary::Text(summary),
            verdict,
            reason,
            response,
            call: call.map(|c| c.0),
            rule: None,
        });
    }

    fn transmit(&self, out: &mut Out, flow: Flow, payload: Bytes) {
        out.transmits.push_back(Transmit {
            side: self.cfg.side,
            flow,
            protocol: Protocol::Sip,
            payload,
        });
    }

    /// An SDP offer from this leg's peer. GW2's outside serves `RTP/SAVP` (SRTP keyed by SDES)
    /// when the offer came over TLS: the keys are in the SDP, and over UDP or TCP anyone on
    /// the path reads them, so such an offer is refused there. A secure stream without a
    /// supported `a=crypto` line is refused (port 0).
    fn parse_offer(
        &self,
        sdp: &[u8],
        flow: Flow,
        alloc: &mut dyn FnMut() -> StreamId,
    ) -> Result<Offer, Rejection> {
        let outside = self.cfg.side == Side::Outside;
        let tls = flow.transport == Transport::Tls;
        let parsed = tsip::offer_from_sdp_srtp(sdp, alloc, outside && tls).map_err(|e| {
            Rejection::NotAcceptableHere(match e {
                tsip::TranslateError::SecureMedia(p) if outside && !tls => format!(
                    "{p} offered over {}: SRTP keys (SDES) are accepted over TLS only",
                    flow.transport.via_token()
                ),
                e => e.to_string(),
            })
        })?;
        let mut media = parsed.media;
        let mut sdes = Vec::with_capacity(media.len());
        for (m, offered) in media.iter_mut().zip(parsed.crypto) {
            let chosen = offered.as_deref().and_then(super::srtp::choose);
            if offered.is_some() && chosen.is_none() {
                m.stream = None;
            }
            sdes.push(chosen);
        }
        if !media.iter().any(|m| m.stream.is_some()) {
            return Err(Rejection::NotAcceptableHere(
                "no a=crypto line with a served suite (AES_CM_128_HMAC_SHA1_80 or _32, inline \
                 key, no MKI or session parameters)"
                    .to_owned(),
            ));
        }
        Ok(Offer {
            media,
            remotes: parsed.remotes,
            sdes,
        })
    }

    /// The gateway's own key for an SRTP stream whose peer offered `remote`: its `a=crypto`
    /// value and the stream's contexts.
    fn srtp_session(
        &mut self,
        remote: super::srtp::Sdes,
    ) -> (String, Option<super::srtp::SrtpSession>) {
        let local = super::srtp::Sdes {
            tag: remote.tag,
            suite: remote.suite,
            key_salt: self.ids.bytes(),
        };
        (
            local.attribute(),
            super::srtp::SrtpSession::new(remote, local),
        )
    }

    /// SRTP in a new offer on an existing dialog (a re-INVITE or UPDATE): a stream served as
    /// SRTP stays SRTP (an offer that drops it is refused, not downgraded), a new peer key
    /// re-keys what the gateway receives, and a stream that turns to SRTP gets a key of its
    /// own. Returns the dialog's `a=crypto` values for the answer.
    fn srtp_renegotiate(
        &mut self,
        call: CallRef,
        offer: &Offer,
        out: &mut Out,
    ) -> Result<Vec<Option<String>>, Rejection> {
        let side = self.cfg.side;
        let before = self
            .dialogs
            .get(&call)
            .map(|d| d.crypto.clone())
            .unwrap_or_default();
        let mut crypto = vec![None; offer.media.len()];
        for (i, (m, new)) in offer.media.iter().zip(&offer.sdes).enumerate() {
            let Some(id) = m.stream else { continue };
            let had = before.get(i).cloned().flatten();
            let current = out.media.srtp_keys(side, id);
            let attr = match (new, current) {
                (None, Some(_)) | (None, None) if had.is_some() => {
                    return Err(Rejection::NotAcceptableHere(
                        "the offer drops SRTP from a stream served as SRTP".to_owned(),
                    ));
                }
                (None, _) => None,
                (Some(new), Some((remote, local))) => {
                    if *new != remote {
                        let session = super::srtp::SrtpSession::new(new.clone(), local.clone())
                            .ok_or_else(|| {
                                Rejection::NotAcceptableHere("unusable SRTP key".to_owned())
                            })?;
                        out.media.set_srtp(side, id, session);
                    }
                    Some(local.attribute())
                }
                (Some(new), None) => {
                    let (attr, session) = self.srtp_session(new.clone());
                    let session = session.ok_or_else(|| {
                        Rejection::NotAcceptableHere("unusable SRTP key".to_owned())
                    })?;
                    out.media.set_srtp(side, id, session);
                    Some(attr)
                }
            };
            if let Some(c) = crypto.get_mut(i) {
                *c = attr;
            }
        }
        Ok(crypto)
    }

    /// The leg's Contact in dialog `d`.
    fn contact(&self, d: &Dialog) -> String {
        contact_uri(self.cfg.contact_user, d.flow, d.sips)
    }

    // ---- input -----------------------------------------------------------------------------

    /// A datagram that looks like SIP.
    pub fn handle_datagram(&mut self, now: Duration, flow: Flow, data: Bytes, out: &mut Out) {
        match sip::parse_datagram(data.clone()) {
            Ok((msg, _trailing)) => self.handle_message(now, flow, msg, out),
            Err(e) => self.report_parse_error(flow, &e, Some(&data), out),
        }
    }

    /// A message that failed to parse. A request still gets a 400 (513 when too large) when
    /// its Via survives, so the peer's transaction ends; responses are dropped.
    pub fn report_parse_error(
        &mut self,
        flow: Flow,
        e: &SipError,
        raw: Option<&[u8]>,
        out: &mut Out,
    ) {
        let salvaged = raw
            .and_then(sip::salvage_request_headers)
            .filter(|h| h.contains(&HeaderName::VIA));
        let mut response = None;
        if let Some(h) = salvaged {
            let status = e.status();
            let bytes =
                MessageBuilder::response_to_headers(&h, status, Some(&self.ids.token())).build();
            self.transmit(out, flow, bytes);
            response = Some(status);
        }
        self.report_full(
            out,
            "unparsable SIP message".to_owned(),
            Verdict::Rejected,
            Some(format!("malformed: {e}")),
            response,
            None,
        );
    }

    pub fn handle_message(&mut self, now: Duration, flow: Flow, msg: Message, out: &mut Out) {
        self.last_now = self.last_now.max(now);
        match msg.start() {
            StartLine::Response(_) => self.handle_response(now, flow, msg, out),
            StartLine::Request(_) => self.handle_request(now, flow, msg, out),
        }
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
                let call = txn.call;
                // The last response goes again only to the host the request came from: a copy
                // of its branch from elsewhere learns nothing (the answer's SDP, its tag).
                let same_host = canonical(txn.flow.remote.ip()) == canonical(flow.remote.ip());
                if let Some(bytes) = self.server_last(key.as_ref()).filter(|_| same_host) {
                    self.transmit(out, flow, bytes);
                }
                self.report_full(
                    out,
                    summary,
                    Verdict::Ignored,
                    Some("retransmission absorbed".to_owned()),
                    status,
                    call,
                );
                return;
            }
        }
        if let Err(rej) = self.cfg.policy.check_request(&msg) {
            // Credentials of another scheme: with `[auth]`, the 401 carries real challenges.
            let rej = match rej {
                Rejection::Unauthorized(why)
                    if self.cfg.side == Side::Outside && out.calls.auth.is_active() =>
                {
                    Rejection::Challenge {
                        why,
                        challenges: out.calls.auth.challenges(now, flow.remote.ip(), false),
                    }
                }
                r => r,
            };
            self.reject(now, flow, &msg, key, &rej, summary, None, out);
            return;
        }
        let Some(key) = key else {
            let rej = Rejection::Malformed(SipError::MissingHeader("Via"));
            self.reject(now, flow, &msg, None, &rej, summary, None, out);
            return;
        };
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let result = match (&method, to_tag) {
            (Method::Ack, _) => {
                self.handle_ack(now, flow, &msg, &key, summary, out);
                return;
            }
            (Method::Cancel, _) => self.handle_cancel(now, flow, &msg, key.clone(), out),
            (Method::Invite, None) => self.handle_invite(now, flow, &msg, key.clone(), out),
            (Method::Options, None) => {
                let resp = MessageBuilder::response_to(&msg, 200, Some(&self.ids.token()));
                let resp = with_capabilities(resp).build();
                self.respond_new(now, flow, &msg, key.clone(), None, 200, resp, out);
                Ok((Some(200), None))
            }
            (_, Some(tag)) => self.handle_in_dialog(now, flow, &msg, key.clone(), &tag, out),
            (_, None) => Err(Rejection::NoSuchCallOrTransaction),
        };
        match result {
            Ok((status, call)) => {
                self.report_full(out, summary, Verdict::Accepted, None, status, call)
            }
            Err(rej) => {
                let call = self.failed_call.take().or_else(|| {
                    msg.call_id()
                        .ok()
                        .and_then(|id| self.by_call_id.get(id).copied())
                });
                self.reject(now, flow, &msg, Some(key), &rej, summary, call, out);
            }
        }
    }

    /// Refuses a request before it reaches the leg (the engine's per-source request limit).
    pub fn refuse(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        rej: &Rejection,
        out: &mut Out,
    ) {
        let summary = msg.summary();
        let key = TxnKey::of(msg, None);
        let call = msg
            .call_id()
            .ok()
            .and_then(|id| self.by_call_id.get(id).copied());
        self.reject(now, flow, msg, key, rej, summary, call, out);
    }

    fn server_last(&self, key: Option<&TxnKey>) -> Option<Bytes> {
        self.server.last_response(key?)
    }

    /// A new server transaction answered at once with a final response.
    #[allow(clippy::too_many_arguments)]
    fn respond_new(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        call: Option<CallRef>,
        code: u16,
        bytes: Bytes,
        out: &mut Out,
    ) {
        let flow = response_flow(self.cfg.symmetric, flow, msg);
        let mut txn = ServerTxn::new(self.cfg.side, flow, msg, call, false);
        if code >= 300 {
            txn = txn.rejection();
        }
        if self.server.insert(key.clone(), txn, &mut self.counters) {
            self.server.respond(now, &key, code, bytes, out);
        } else {
            self.transmit(out, flow, bytes);
        }
    }

    /// Refuses a request with the rejection's status and headers. The response is kept for
    /// retransmissions (not the request).
    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: Option<TxnKey>,
        rej: &Rejection,
        summary: String,
        call: Option<CallRef>,
        out: &mut Out,
    ) {
        let status = rej.status();
        // Never answer an ACK; answer other requests only if they can be addressed.
        let answerable =
            msg.method() != Some(&Method::Ack) && msg.headers().contains(&HeaderName::VIA);
        let mut response = None;
        if answerable {
            let mut b = MessageBuilder::response_to(msg, status, Some(&self.ids.token()));
            for (n, v) in rej.extra_headers(&self.cfg.policy) {
                b = b.header(n, v);
            }
            let bytes = b.build();
            match key {
                Some(key) => self.respond_new(now, flow, msg, key, None, status, bytes, out),
                None => self.transmit(out, response_flow(self.cfg.symmetric, flow, msg), bytes),
            }
            response = Some(status);
        }
        self.report_full(
            out,
            summary,
            if rej.is_filtered() {
                Verdict::Rejected
            } else {
                Verdict::Accepted
            },
            Some(rej.reason()),
            response,
            call,
        );
    }

    /// A new call arriving on this side: the leg becomes its UAS and hands it on as Meta.
    fn handle_invite(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        out: &mut Out,
    ) -> Handled {
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
            StartLine::Request(_) => msg.request_uri().map_err(Rejection::Malformed)?,
            StartLine::Response(_) => return Err(Rejection::NoSuchCallOrTransaction),
        };
        // A SIPS Request-URI asks for TLS on every hop (RFC 3261 section 19.1, RFC 5630
        // section 3.1.3): one that reached the gateway over another transport lost that
        // promise on its last hop.
        if uri.scheme == sip::UriScheme::Sips && flow.transport != Transport::Tls {
            return Err(Rejection::UnsupportedUriScheme(format!(
                "sips over {}",
                flow.transport.via_token()
            )));
        }
        let from = msg.from().map_err(Rejection::Malformed)?;
        let to = msg.to().map_err(Rejection::Malformed)?;
        // An RFC 2543 caller sends no tag: the dialog's remote tag is then null, and its
        // in-dialog requests match without one (RFC 3261 section 12.1.1).
        let remote_tag = from.tag().filter(|t| !t.is_empty()).map(str::to_owned);
        let calling = tsip::calling_party(from);
        let called = tsip::called_party(uri, to);
        // A display name or user part with a control character (a quoted-pair may escape NUL
        // and other controls, a URI may percent-encode CR and LF, a bare CR is no line end)
        // is malformed for the gateway: 400 before anything is admitted or carried.
        for (party, name) in [(&calling, "From"), (&called, "To")] {
            if tsip::check_party(party).is_err() {
                return Err(Rejection::Malformed(SipError::BadHeader {
                    name,
                    why: "control character in the display name or user part",
                }));
            }
        }
        let emergency = out.calls.emergency.recognises(&called.user, Some(&uri.raw));
        // The offer is read before admission, with placeholder stream ids.
        let mut offer = Vec::new();
        let mut remotes = Vec::new();
        let mut sdes = Vec::new();
        if let Some(sdp) = policy::sdp_body(msg) {
            let parsed = self.parse_offer(&sdp, flow, &mut || StreamId(0))?;
            offer = parsed.media;
            remotes = parsed.remotes;
            sdes = parsed.sdes;
        }
        let family = Family::of(flow.remote.ip());
        let digest = (self.cfg.side == Side::Outside).then(|| super::auth::DigestInput {
            method: "INVITE".to_owned(),
            uri: uri.raw.clone(),
            authorizations: msg
                .headers()
                .all(&HeaderName::AUTHORIZATION)
                .map(str::to_owned)
                .collect(),
        });
        let new = NewCall {
            direction: match self.cfg.side {
                Side::Outside => Direction::FromOutside,
                Side::Inside => Direction::FromInside,
            },
            protocol: CallProtocol::Sip,
            family,
            source: Some(flow.remote.ip()),
            calling: calling.user.clone(),
            called: called.user.clone(),
            emergency,
            digest,
        };
        let call = out
            .calls
            .admit(now, self.cfg.side, &new, out.tunnel_up)
            .map_err(|r| admission_refusal(now, flow.remote.ip(), &out.calls, r))?;
        let media_ip = self
            .cfg
            .media_ip
            .get(family_index(Family::of(flow.local.ip())))
            .copied()
            .flatten()
            .unwrap_or(flow.local.ip());
        // Latch mode `signalling`: the caller's media may come from where its INVITE came from.
        out.media
            .set_signalling(self.cfg.side, call, flow.remote.ip());
        // Stream ids and ports; any failure ends the call it just began.
        let mut failure = None;
        let mut crypto = vec![None; offer.len()];
        for (i, (m, remote)) in offer.iter_mut().zip(&remotes).enumerate() {
            if m.stream.is_none() {
                continue;
            }
            let Some(id) = out.media.stream_id(self.cfg.side) else {
                failure = Some(Refusal::NoMediaPort);
                break;
            };
            m.stream = Some(id);
            if let Err(r) =
                out.media
                    .open(self.cfg.side, call, id, media_ip, payload_types(m), *remote)
            {
                failure = Some(r);
                break;
            }
            if let Some(Some(remote_key)) = sdes.get(i) {
                let (attr, session) = self.srtp_session(remote_key.clone());
                match session {
                    Some(session) => out.media.set_srtp(self.cfg.side, id, session),
                    None => {
                        failure = Some(Refusal::NoMediaPort);
                        break;
                    }
                }
                if let Some(c) = crypto.get_mut(i) {
                    *c = Some(attr);
                }
            }
        }
        let setup = meta::Message::Setup(meta::Setup {
            call,
            calling,
            called,
            emergency,
            media: offer.clone(),
        });
        if let Some(r) = failure {
            out.calls.count_refusal(r);
            out.end_call_by_gateway(now, call, r.cause());
            self.failed_call = Some(call);
            return Err(refusal(r));
        }
        if let Err(e) = meta::encode_frame(0, &setup, &mut Vec::new()) {
            out.end_call_by_gateway(now, call, Cause::INTERWORKING);
            self.failed_call = Some(call);
            return Err(Rejection::Unrepresentable(e.to_string()));
        }
        let rflow = response_flow(self.cfg.symmetric, flow, msg);
        let txn = ServerTxn::new(self.cfg.side, rflow, msg, Some(call), true);
        if !self.server.insert(key.clone(), txn, &mut self.counters) {
            out.end_call_by_gateway(now, call, Cause::SWITCHING_EQUIPMENT_CONGESTION);
            self.failed_call = Some(call);
            return Err(Rejection::BusyOrOverloaded("too many transactions"));
        }
        let trying = MessageBuilder::response_to(msg, 100, None).build();
        self.server.respond(now, &key, 100, trying, out);

        let h = msg.headers();
        let remote_target = msg
            .contacts()
            .ok()
            .and_then(|c| c.first())
            .map(|c| c.uri.raw.clone())
            .unwrap_or_else(|| from.uri.raw.clone());
        let dialog = Dialog {
            uac: false,
            flow,
            call_id: call_id.clone(),
            local_tag: self.ids.token(),
            remote_tag,
            local_uri: strip_tag(h.single(&HeaderName::TO, "To").ok().flatten().unwrap_or("")),
            remote_uri: strip_tag(
                h.single(&HeaderName::FROM, "From")
                    .ok()
                    .flatten()
                    .unwrap_or(""),
            ),
            remote_target,
            // A UAS copies the Record-Route list in order (RFC 3261 section 12.1.1).
            route_set: h
                .list(&HeaderName::RECORD_ROUTE)
                .map(str::to_owned)
                .collect(),
            local_cseq: 0,
            remote_cseq: msg.cseq().ok().map(|c| c.seq),
            state: State::Early,
            invite_key: Some(Box::new(key)),
            invite_branch: None,
            reinvite: None,
            awaiting_ack: Vec::new(),
            sent: Vec::new(),
            ack: None,
            provisional: 0,
            auth_tries: 0,
            before_offer: None,
            offer,
            media_ip,
            sdp_id: self.ids.number(),
            sdp_version: 1,
            sips: uri.scheme == sip::UriScheme::Sips,
            crypto,
            dtmf_added: Vec::new(),
        };
        self.by_call_id.insert(call_id, call);
        self.next_hops.insert(call, dialog.flow.remote);
        self.dialogs.insert(call, Box::new(dialog));
        self.timers.set(now + NO_ANSWER, call);
        out.send_other(self.cfg.side, setup);
        Ok((Some(100), Some(call)))
    }

    fn handle_ack(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: &TxnKey,
        summary: String,
        out: &mut Out,
    ) {
        // ACK for a non-2xx final response belongs to the INVITE transaction.
        let non2xx = self
            .server
            .get(key)
            .is_some_and(|t| t.status().is_some_and(|s| s >= 300));
        let call = msg
            .call_id()
            .ok()
            .and_then(|id| self.by_call_id.get(id).copied());
        // The ACK of a 2xx is a request in the dialog: its tags and its peer (as any other).
        let dialog_check = call.and_then(|c| self.dialogs.get(&c)).map(|d| {
            let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_owned));
            let from_tag = msg
                .from()
                .ok()
                .and_then(|f| f.tag().filter(|t| !t.is_empty()).map(str::to_owned));
            let tags = to_tag.as_deref() == Some(d.local_tag.as_str()) && from_tag == d.remote_tag;
            (tags, d.is_from_peer(&flow), d.flow.remote)
        });
        let (verdict, reason) = if non2xx {
            self.server.acked(now, key);
            (Verdict::Accepted, None)
        } else if let Some((false, _, _)) = dialog_check {
            (
                Verdict::Ignored,
                Some("ACK with tags of no dialog of the gateway".to_owned()),
            )
        } else if let Some((true, false, peer)) = dialog_check {
            self.counters.requests_wrong_source += 1;
            (
                Verdict::Rejected,
                Some(format!(
                    "not from the dialog's peer: ACK from {} over {}, the dialog's peer is {peer}",
                    flow.remote,
                    flow.transport.via_token()
                )),
            )
        } else if let Some(d) = call.and_then(|c| self.dialogs.get_mut(&c)) {
            for k in std::mem::take(&mut d.awaiting_ack) {
                self.server.acked(now, &k);
            }
            // A late offer is answered in the ACK.
            if let (Some(sdp), Some(call)) = (policy::sdp_body(msg), call) {
                if let Ok(ans) = tsip::answer_from_sdp(&sdp, &d.offer) {
                    apply_remotes(out, self.cfg.side, &d.offer, &ans.remotes);
                    out.send_other(
                        self.cfg.side,
                        meta::Message::MediaUpdate(meta::MediaUpdate {
                            call,
                            kind: meta::OfferAnswer::Answer,
                            media: ans.media,
                        }),
                    );
                }
            }
            (Verdict::Accepted, None)
        } else {
            (
                Verdict::Ignored,
                Some("ACK matches no transaction or dialog".to_owned()),
            )
        };
        self.report_full(out, summary, verdict, reason, None, call);
    }

    fn handle_cancel(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        out: &mut Out,
    ) -> Handled {
        let invite_key =
            TxnKey::of(msg, Some(&Method::Invite)).ok_or(Rejection::NoSuchCallOrTransaction)?;
        let (call, final_sent) = match self.server.get(&invite_key) {
            Some(t) => (t.call, t.is_final()),
            None => return Err(Rejection::NoSuchCallOrTransaction),
        };
        // A CANCEL goes hop by hop where its INVITE went: from the INVITE's peer.
        if let Some(d) = call.and_then(|c| self.dialogs.get(&c)) {
            if !d.is_from_peer(&flow) {
                self.counters.requests_wrong_source += 1;
                return Err(Rejection::NotDialogPeer(format!(
                    "CANCEL from {} over {}, the INVITE came from {}",
                    flow.remote,
                    flow.transport.via_token(),
                    d.flow.remote
                )));
            }
        }
        let ok = MessageBuilder::response_to(msg, 200, None).build();
        self.respond_new(now, flow, msg, key, call, 200, ok, out);
        if let (false, Some(call)) = (final_sent, call) {
            self.fail_invite(now, call, 487, None, out);
            self.end_both(now, call, Cause::NORMAL_CLEARING, out);
        }
        Ok((Some(200), call))
    }

    /// A UAS dialog's initial INVITE while it still waits for its final answer.
    fn pending_invite(&self, call: CallRef) -> Option<(&Dialog, TxnKey, &Message)> {
        let d = self.dialogs.get(&call)?;
        let key = TxnKey::clone(d.invite_key.as_deref()?);
        let invite = self.server.request(&key)?;
        Some((d, key, invite))
    }

    /// Answers the pending initial INVITE of a UAS dialog with a final error.
    fn fail_invite(
        &mut self,
        now: Duration,
        call: CallRef,
        code: u16,
        cause: Option<Cause>,
        out: &mut Out,
    ) {
        let Some((d, key, invite)) = self.pending_invite(call) else {
            return;
        };
        let mut b = MessageBuilder::response_to(invite, code, Some(&d.local_tag));
        if let Some(cause) = cause {
            b = b.header("Reason", format!("Q.850;cause={}", cause.0));
        }
        let bytes = b.build();
        self.server.respond(now, &key, code, bytes, out);
    }

    fn handle_in_dialog(
        &mut self,
        now: Duration,
        flow: Flow,
        msg: &Message,
        key: TxnKey,
        to_tag: &str,
        out: &mut Out,
    ) -> Handled {
        let call_id = msg.call_id().map_err(Rejection::Malformed)?;
        let call = *self
            .by_call_id
            .get(call_id)
            .ok_or(Rejection::NoSuchCallOrTransaction)?;
        let from_tag = msg
            .from()
            .ok()
            .and_then(|f| f.tag().filter(|t| !t.is_empty()).map(str::to_owned));
        let cseq = msg.cseq().map_err(Rejection::Malformed)?;
        let method = cseq.method.clone();
        {
            let d = self
                .dialogs
                .get_mut(&call)
                .ok_or(Rejection::NoSuchCallOrTransaction)?;
            // In-dialog requests are bound to the dialog's tags (and, symmetric, its peer).
            let tags_match = to_tag == d.local_tag && from_tag == d.remote_tag;
            // A BYE that crosses ours is still answered 200 while the dialog lingers.
            let ended = d.state == State::Ended && method != Method::Bye;
            if !tags_match || ended {
                return Err(Rejection::NoSuchCallOrTransaction);
            }
            if !d.is_from_peer(&flow) {
                self.counters.requests_wrong_source += 1;
                return Err(Rejection::NotDialogPeer(format!(
                    "{method} from {} over {}, the dialog's peer is {}",
                    flow.remote,
                    flow.transport.via_token(),
                    d.flow.remote
                )));
            }
            // Requests out of order are refused with 500 (RFC 3261 section 12.2.2).
            if d.remote_cseq.is_some_and(|r| cseq.seq < r) {
                return Err(Rejection::OutOfOrder);
            }
            d.remote_cseq = Some(cseq.seq);
            // A target refresh updates the remote target (section 12.2.2).
            if matches!(method, Method::Invite | Method::Update) {
                if let Some(c) = msg.contacts().ok().and_then(|c| c.first()) {
                    d.remote_target = c.uri.raw.clone();
                }
            }
        }
        let rflow = response_flow(self.cfg.symmetric, flow, msg);
        let keep = method == Method::Invite || method == Method::Update;
        let txn = ServerTxn::new(self.cfg.side, rflow, msg, Some(call), keep);
        if !self.server.insert(key.clone(), txn, &mut self.counters) {
            return Err(Rejection::BusyOrOverloaded("too many transactions"));
        }
        let local_tag = self
            .dialogs
            .get(&call)
            .map(|d| d.local_tag.clone())
            .unwrap_or_default();
        let ok = |msg: &Message| MessageBuilder::response_to(msg, 200, Some(&local_tag)).build();
        match method {
            Method::Bye => {
                self.server.respond(now, &key, 200, ok(msg), out);
                if self
                    .dialogs
                    .get(&call)
                    .is_some_and(|d| d.state == State::Ended)
                {
                    return Ok((Some(200), Some(call)));
                }
                // A BYE before the answer also ends the pending INVITE.
                self.fail_invite(now, call, 487, None, out);
                self.end_both(now, call, Cause::NORMAL_CLEARING, out);
                Ok((Some(200), Some(call)))
            }
            Method::Invite | Method::Update => {
                let Some(sdp) = policy::sdp_body(msg) else {
                    // A refresh without an offer: answer with our current description.
                    let resp = self.ok_with_sdp(call, msg, out);
                    self.server.respond(now, &key, 200, resp, out);
                    return Ok((Some(200), Some(call)));
                };
                let side = self.cfg.side;
                let ids: Vec<Option<StreamId>> = self
                    .dialogs
                    .get(&call)
                    .ok_or(Rejection::NoSuchCallOrTransaction)?
                    .offer
                    .iter()
                    .map(|m| m.stream)
                    .collect();
                let mut i = 0usize;
                let parsed = self.parse_offer(&sdp, flow, &mut || {
                    let id = ids.get(i).copied().flatten().unwrap_or(StreamId(u16::MAX));
                    i += 1;
                    id
                })?;
                let crypto = self.srtp_renegotiate(call, &parsed, out)?;
                let d = self
                    .dialogs
                    .get_mut(&call)
                    .ok_or(Rejection::NoSuchCallOrTransaction)?;
                d.crypto = crypto;
                apply_remotes(out, side, &parsed.media, &parsed.remotes);
                d.offer = parsed.media.clone();
                d.reinvite = Some(Box::new(key.clone()));
                if method == Method::Invite {
                    let trying = MessageBuilder::response_to(msg, 100, None).build();
                    self.server.respond(now, &key, 100, trying, out);
                }
                out.send_other(
                    side,
                    meta::Message::MediaUpdate(meta::MediaUpdate {
                        call,
                        kind: meta::OfferAnswer::Offer,
                        media: parsed.media,
                    }),
                );
                Ok((
                    Some(if method == Method::Invite { 100 } else { 200 }),
                    Some(call),
                ))
            }
            Method::Info => {
                let ct = msg.content_type().ok().flatten();
                if let Some((event, duration_ms)) = ct
                    .as_ref()
                    .and_then(|ct| tsip::dtmf_from_info(ct, &msg.body()))
                {
                    out.send_other(
                        self.cfg.side,
                        meta::Message::Dtmf(meta::Dtmf {
                            call,
                            event,
                            duration_ms,
                        }),
                    );
                }
                self.server.respond(now, &key, 200, ok(msg), out);
                Ok((Some(200), Some(call)))
            }
            Method::Options => {
                let resp =
                    with_capabilities(MessageBuilder::response_to(msg, 200, Some(&local_tag)));
                self.server.respond(now, &key, 200, resp.build(), out);
                Ok((Some(200), Some(call)))
            }
            // PRACK needs reliable provisional responses (RFC 3262), which the gateway never
            // sends: nothing to acknowledge.
            _ => Err(Rejection::NoSuchCallOrTransaction),
        }
    }

    /// 200 to an in-dialog INVITE/UPDATE with this leg's current media description.
    fn ok_with_sdp(&mut self, call: CallRef, req: &Message, out: &Out) -> Bytes {
        let side = self.cfg.side;
        let contact = self
            .dialogs
            .get(&call)
            .map(|d| self.contact(d))
            .unwrap_or_default();
        let Some(d) = self.dialogs.get_mut(&call) else {
            return MessageBuilder::response_to(req, 200, None).build();
        };
        d.sdp_version += 1;
        MessageBuilder::response_to(req, 200, Some(&d.local_tag))
            .header("Contact", contact)
            .body("application/sdp", d.sdp(&out.media, side))
            .build()
    }

    fn handle_response(&mut self, now: Duration, flow: Flow, msg: Message, out: &mut Out) {
        let summary = msg.summary();
        if let Err(e) = msg.check() {
            self.report(
                out,
                summary,
                Verdict::Rejected,
                Some(format!("malformed: {e}")),
            );
            return;
        }
        let branch = msg
            .vias()
            .ok()
            .and_then(|v| v.first().and_then(|v| v.branch().map(str::to_owned)));
        let status = msg.status().unwrap_or(0);
        // Bound to where the request went: a response from anywhere else is dropped before it
        // touches the transaction (RFC 3261 section 17.1.3 matches by branch only, which an
        // attacker who saw the request can copy).
        if let Some(sent) = branch.as_deref().and_then(|b| self.client.sent_on(b)) {
            if !response_from_destination(&flow, &sent) {
                self.counters.responses_wrong_source += 1;
                let call = branch.as_deref().and_then(|b| self.client.call_of(b));
                self.report_full(
                    out,
                    summary,
                    Verdict::Rejected,
                    Some(format!(
                        "response from {} over {}, not from {} over {} where the request went",
                        flow.remote,
                        flow.transport.via_token(),
                        sent.remote,
                        sent.transport.via_token()
                    )),
                    None,
                    call,
                );
                return;
            }
        }
        let matched = branch
            .as_deref()
            .and_then(|b| Some((b, self.client.on_response(b, status)?)));
        let Some((branch, m)) = matched else {
            self.report(
                out,
                summary,
                Verdict::Ignored,
                Some("response matches no transaction of the gateway".to_owned()),
            );
            return;
        };
        if m.method == Method::Register {
            if !m.repeat {
                let fresh = (self.ids.branch(), self.ids.token());
                let flow = self.registration_flow();
                if let (Some(r), Some(flow)) = (self.registration.as_mut(), flow) {
                    let via = flow.transport.via_token();
                    if let Some(o) = r.on_response(now, branch, &msg, flow.local, via, fresh) {
                        self.send_register(now, flow, o, out);
                    }
                }
            }
            self.report(out, summary, Verdict::Accepted, None);
            return;
        }
        let call = m.call;
        let initial = self
            .dialogs
            .get(&call)
            .is_some_and(|d| d.invite_branch.as_deref() == Some(branch));
        let branch = branch.to_owned();
        if m.method == Method::Invite && status >= 200 {
            if (200..300).contains(&status) && m.repeat {
                // A retransmitted 2xx: its ACK is sent again (RFC 3261 section 13.2.2.4).
                if let Some(d) = self.dialogs.get(&call) {
                    if let Some((cseq, branch)) = &d.ack {
                        let ack = in_dialog(d, &Method::Ack, *cseq, branch).build();
                        let flow = Flow {
                            remote: d.destination(self.cfg.symmetric),
                            ..d.flow
                        };
                        self.transmit(out, flow, ack);
                    }
                }
            } else if status >= 300 {
                // A non-2xx ACK belongs to the INVITE's transaction (same branch, hop by hop).
                self.ack_non2xx(call, &msg, &branch, initial, out);
            }
        }
        if m.repeat {
            self.report_full(
                out,
                summary,
                Verdict::Ignored,
                Some("retransmitted response".to_owned()),
                None,
                Some(call),
            );
            return;
        }
        if m.method == Method::Invite {
            if initial {
                self.on_invite_response(now, call, status, &msg, out);
            } else {
                self.on_reinvite_response(now, call, status, &msg, out);
            }
        }
        self.report_full(out, summary, Verdict::Accepted, None, None, Some(call));
    }

    /// The ACK of a non-2xx final response (RFC 3261 section 17.1.1.3).
    /// The ACK repeats its INVITE's Request-URI and Route and goes where it went: the initial
    /// INVITE to the next hop, a re-INVITE along the route set.
    fn ack_non2xx(
        &mut self,
        call: CallRef,
        resp: &Message,
        branch: &str,
        initial: bool,
        out: &mut Out,
    ) {
        let Some(d) = self.dialogs.get(&call) else {
            return;
        };
        let Ok(cseq) = resp.cseq() else { return };
        let to = resp
            .headers()
            .single(&HeaderName::TO, "To")
            .ok()
            .flatten()
            .map(str::to_owned)
            .unwrap_or_else(|| d.remote());
        let (uri, routes, flow) = if initial {
            (d.remote_target_initial(), &[][..], d.flow)
        } else {
            let flow = Flow {
                remote: d.destination(self.cfg.symmetric),
                ..d.flow
            };
            (d.remote_target.clone(), &d.route_set[..], flow)
        };
        let mut b = MessageBuilder::request(&Method::Ack, &uri).header("Via", via(d.flow, branch));
        for r in routes {
            b = b.header("Route", r.clone());
        }
        let req = b
            .header("Max-Forwards", "70")
            .header("From", d.local())
            .header("To", to)
            .header("Call-ID", d.call_id.clone())
            .header("CSeq", format!("{} ACK", cseq.seq))
            .build();
        self.transmit(out, flow, req);
    }

    /// A response to the INVITE that placed a call: learn the dialog, hand the progress on.
    fn on_invite_response(
        &mut self,
        now: Duration,
        call: CallRef,
        status: u16,
        msg: &Message,
        out: &mut Out,
    ) {
        let side = self.cfg.side;
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        if status > 100 && status < 300 {
            if let Ok(to) = msg.to() {
                if let Some(tag) = to.tag() {
                    d.remote_tag = Some(tag.to_owned());
                }
            }
            if let Some(contact) = msg.contacts().ok().and_then(|v| v.first()) {
                d.remote_target = contact.uri.raw.clone();
            }
            // A UAC's route set is the Record-Route list reversed (RFC 3261 section 12.1.2).
            let mut route_set: Vec<String> = msg
                .headers()
                .list(&HeaderName::RECORD_ROUTE)
                .map(str::to_owned)
                .collect();
            route_set.reverse();
            d.route_set = route_set;
        }
        if d.state == State::Ended {
            if (200..300).contains(&status) {
                // Answered after we gave up: confirm and hang up (RFC 3261 section 15).
                d.state = State::Confirmed;
                self.send_ack(now, call, msg, out);
                self.send_bye(now, call, Cause::NORMAL_CLEARING, out);
                if let Some(d) = self.dialogs.get_mut(&call) {
                    d.state = State::Ended;
                }
            }
            return;
        }
        if (101..200).contains(&status) {
            if d.provisional == status && policy::sdp_body(msg).is_none() {
                return;
            }
            d.provisional = status;
        }
        let media = if status > 100 {
            policy::sdp_body(msg)
                .and_then(|sdp| tsip::answer_from_sdp(&sdp, &d.offer).ok())
                .map(|ans| {
                    apply_remotes(out, side, &ans.media, &ans.remotes);
                    d.take_answer(&ans.media);
                    narrow(out, side, &ans.media);
                    // The peer accepted the telephone-event the gateway added for the other
                    // side: its stream converts, and the other side, which did not offer it,
                    // does not see it in the answer.
                    let mut media = ans.media;
                    for m in &mut media {
                        let Some(id) = m.stream else { continue };
                        if !d.dtmf_added.contains(&id) {
                            continue;
                        }
                        let te = m.telephone_event.take();
                        out.media.set_telephone_event(now, side, id, te, true);
                    }
                    media
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        match status {
            100 => {}
            180 if media.is_empty() => out.send_other(
                side,
                meta::Message::Alerting(meta::Alerting { call, media }),
            ),
            101..=199 => out.send_other(
                side,
                meta::Message::Progress(meta::Progress { call, media }),
            ),
            200..=299 => {
                d.state = State::Confirmed;
                out.calls.answered(now, call);
                self.send_ack(now, call, msg, out);
                out.send_other(side, meta::Message::Answer(meta::Answer { call, media }));
            }
            401 | 407 if self.answer_challenge(now, call, status, msg, out) => {}
            _ => {
                let cause = translators::cause::status_to_cause(status);
                self.end_both(now, call, cause, out);
            }
        }
    }

    /// A 401 or 407 to an INVITE this leg placed: the INVITE again with credentials of the
    /// trunk (`[gw2.registration]`), CSeq + 1 (RFC 3261 section 22.2). `false` when there is
    /// nothing to answer with, or the credentials were already refused.
    fn answer_challenge(
        &mut self,
        now: Duration,
        call: CallRef,
        status: u16,
        msg: &Message,
        out: &mut Out,
    ) -> bool {
        let side = self.cfg.side;
        let cnonce = self.ids.token();
        let branch = self.ids.branch();
        let (Some(trunk), Some(d)) = (self.cfg.trunk.as_ref(), self.dialogs.get(&call)) else {
            return false;
        };
        if d.auth_tries >= 2 || d.state != State::Early {
            return false;
        }
        let (challenge, answer) = if status == 401 {
            (HeaderName::WWW_AUTHENTICATE, "Authorization")
        } else {
            (HeaderName::PROXY_AUTHENTICATE, "Proxy-Authorization")
        };
        let values: Vec<&str> = msg.headers().all(&challenge).collect();
        let uri = d.remote_target_initial();
        let Some(credentials) = trunk.answer(&values, "INVITE", &uri, &cnonce) else {
            return false;
        };
        let cseq = d.local_cseq.wrapping_add(1);
        let mut b = in_dialog(d, &Method::Invite, cseq, &branch)
            .header(
                "Contact",
                contact_uri(self.cfg.contact_user, d.flow, d.sips),
            )
            .header("Allow", policy::allow_header())
            .header(answer, credentials);
        if !d.offer.is_empty() {
            b = b.body("application/sdp", d.sdp(&out.media, side));
        }
        let Ok(req) = b.try_build() else {
            return false;
        };
        let flow = d.flow;
        let Some(d) = self.dialogs.get_mut(&call) else {
            return false;
        };
        d.auth_tries += 1;
        d.local_cseq = cseq;
        d.invite_branch = Some(branch.clone());
        d.provisional = 0;
        d.remote_tag = None;
        d.sent.push((Method::Invite, branch.clone()));
        let counters = &mut self.counters;
        self.client.send(
            now,
            side,
            flow,
            branch,
            Method::Invite,
            call,
            req,
            out,
            counters,
        );
        true
    }

    fn on_reinvite_response(
        &mut self,
        now: Duration,
        call: CallRef,
        status: u16,
        msg: &Message,
        out: &mut Out,
    ) {
        let side = self.cfg.side;
        if !(200..300).contains(&status) {
            // Refused: the session stays as it was (RFC 3261 section 14.1), and the other half
            // answers its peer with the media it had, so no offer is left unanswered.
            let Some(d) = self.dialogs.get_mut(&call) else {
                return;
            };
            if let Some(before) = d.before_offer.take() {
                d.offer = before;
                let media = d.offer.clone();
                let kind = meta::OfferAnswer::Answer;
                let update = meta::MediaUpdate { call, kind, media };
                out.send_other(side, meta::Message::MediaUpdate(update));
            }
            return;
        }
        self.send_ack(now, call, msg, out);
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        d.before_offer = None;
        if let Some(sdp) = policy::sdp_body(msg) {
            if let Ok(ans) = tsip::answer_from_sdp(&sdp, &d.offer) {
                apply_remotes(out, side, &ans.media, &ans.remotes);
                // The telephone-event the gateway converts is not the other side's.
                let mut media = ans.media;
                for m in &mut media {
                    if m.stream
                        .is_some_and(|id| out.media.converts_dtmf(side, id).is_some())
                    {
                        m.telephone_event = None;
                    }
                }
                out.send_other(
                    side,
                    meta::Message::MediaUpdate(meta::MediaUpdate {
                        call,
                        kind: meta::OfferAnswer::Answer,
                        media,
                    }),
                );
            }
        }
    }

    /// The ACK of a 2xx: a new transaction-less request in the dialog, along the route set.
    fn send_ack(&mut self, now: Duration, call: CallRef, resp: &Message, out: &mut Out) {
        let Ok(cseq) = resp.cseq() else { return };
        let branch = self.ids.branch();
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        let req = in_dialog(d, &Method::Ack, cseq.seq, &branch).build();
        d.ack = Some((cseq.seq, branch.clone()));
        let flow = Flow {
            remote: d.destination(self.cfg.symmetric),
            ..d.flow
        };
        self.client.send(
            now,
            self.cfg.side,
            flow,
            branch,
            Method::Ack,
            call,
            req,
            out,
            &mut self.counters,
        );
    }

    /// Sends an in-dialog request with a new CSeq and remembers its branch.
    fn send_in_dialog(
        &mut self,
        now: Duration,
        call: CallRef,
        method: Method,
        build: impl FnOnce(MessageBuilder, &Dialog) -> MessageBuilder,
        out: &mut Out,
    ) {
        let branch = self.ids.branch();
        let symmetric = self.cfg.symmetric;
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        d.local_cseq += 1;
        let req = build(in_dialog(d, &method, d.local_cseq, &branch), d).build();
        let flow = Flow {
            remote: d.destination(symmetric),
            ..d.flow
        };
        remember(&mut d.sent, &method, &branch);
        let counters = &mut self.counters;
        self.client.send(
            now,
            self.cfg.side,
            flow,
            branch,
            method,
            call,
            req,
            out,
            counters,
        );
    }

    fn send_bye(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        self.send_in_dialog(
            now,
            call,
            Method::Bye,
            |b, _| b.header("Reason", format!("Q.850;cause={}", cause.0)),
            out,
        );
    }

    // ---- Meta from the other half ----------------------------------------------------------

    /// A Meta message for a call of this leg, or a Setup for it to place.
    pub fn handle_meta(&mut self, now: Duration, m: meta::Message, out: &mut Out) {
        if let meta::Message::Setup(s) = m {
            self.place_call(now, s, out);
            return;
        }
        let Some(call) = m.call() else { return };
        let side = self.cfg.side;
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        match m {
            meta::Message::Alerting(meta::Alerting { media, .. })
            | meta::Message::Progress(meta::Progress { media, .. }) => {
                if d.uac || d.state != State::Early {
                    return;
                }
                let code = if media.is_empty() { 180 } else { 183 };
                if !media.is_empty() {
                    d.take_answer_with_dtmf(now, out, side, &media);
                }
                self.answer_invite(now, call, code, !media.is_empty(), out);
            }
            meta::Message::Answer(meta::Answer { media, .. }) => {
                if d.uac || d.state != State::Early {
                    return;
                }
                d.take_answer_with_dtmf(now, out, side, &media);
                d.state = State::Confirmed;
                out.calls.answered(now, call);
                self.answer_invite(now, call, 200, true, out);
            }
            meta::Message::Release(meta::Release { cause, .. }) => {
                self.release(now, call, cause, out);
            }
            meta::Message::MediaUpdate(meta::MediaUpdate { kind, media, .. }) => match kind {
                meta::OfferAnswer::Answer => {
                    d.take_answer_with_dtmf(now, out, side, &media);
                    if let Some(key) = d.reinvite.take() {
                        if let Some(req) = self.server.request(&key).cloned() {
                            let resp = self.ok_with_sdp(call, &req, out);
                            self.server.respond(now, &key, 200, resp, out);
                            if req.method() == Some(&Method::Invite) {
                                if let Some(d) = self.dialogs.get_mut(&call) {
                                    d.awaiting_ack.push(*key);
                                }
                            }
                        }
                    }
                }
                meta::OfferAnswer::Offer => {
                    if d.state == State::Ended {
                        return;
                    }
                    // A stream the gateway converts keeps its telephone-event in the re-offer.
                    let mut media = media;
                    for m in &mut media {
                        if let (Some(id), None) = (m.stream, m.telephone_event) {
                            m.telephone_event = out.media.converts_dtmf(side, id);
                        }
                    }
                    d.take_answer(&media);
                    d.before_offer = Some(std::mem::replace(&mut d.offer, media));
                    d.sdp_version += 1;
                    let contact = contact_uri(self.cfg.contact_user, d.flow, d.sips);
                    let sdp = d.sdp(&out.media, side);
                    self.send_in_dialog(
                        now,
                        call,
                        Method::Invite,
                        |b, _| b.header("Contact", contact).body("application/sdp", sdp),
                        out,
                    );
                }
            },
            meta::Message::Dtmf(dtmf) => {
                if d.state != State::Confirmed {
                    return;
                }
                // RFC 4733 events on a stream that converts (the peer negotiated
                // telephone-event with the gateway for the other side), else INFO.
                if let Some(stream) = d.dtmf_stream() {
                    let sent = out
                        .media
                        .send_dtmf(now, side, stream, dtmf.event, dtmf.duration_ms);
                    if sent.is_some() {
                        return;
                    }
                }
                let (ct, body) = tsip::info_body(dtmf.event, dtmf.duration_ms);
                self.send_in_dialog(now, call, Method::Info, |b, _| b.body(ct, body), out);
            }
            _ => {}
        }
    }

    /// A provisional or 2xx response on the initial INVITE of a UAS dialog.
    fn answer_invite(&mut self, now: Duration, call: CallRef, code: u16, sdp: bool, out: &mut Out) {
        let side = self.cfg.side;
        let Some((d, key, invite)) = self.pending_invite(call) else {
            return;
        };
        let contact = contact_uri(self.cfg.contact_user, d.flow, d.sips);
        let mut b = MessageBuilder::response_to(invite, code, Some(&d.local_tag));
        // The dialog's Record-Route is copied into every response that makes it (RFC 3261
        // section 12.1.1).
        for r in invite.headers().all(&HeaderName::RECORD_ROUTE) {
            b = b.header("Record-Route", r);
        }
        b = b.header("Contact", contact);
        if code == 200 {
            b = with_capabilities(b);
        }
        if sdp {
            b = b.body("application/sdp", d.sdp(&out.media, side));
        }
        let bytes = b.build();
        if code == 200 {
            if let Some(d) = self.dialogs.get_mut(&call) {
                d.awaiting_ack.push(key.clone());
            }
        }
        self.server.respond(now, &key, code, bytes, out);
    }

    /// The other half released the call.
    fn release(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        let Some(d) = self.dialogs.get(&call) else {
            return;
        };
        match (d.state, d.uac) {
            (State::Early, false) => {
                let code = translators::cause::cause_to_status(cause);
                self.fail_invite(now, call, code, Some(cause), out);
            }
            (State::Early, true) => self.cancel(now, call, cause, out),
            (State::Confirmed, _) => self.send_bye(now, call, cause, out),
            (State::Ended, _) => {}
        }
        self.end(now, call, cause, out);
    }

    /// CANCEL of our pending INVITE: its branch, its CSeq number (RFC 3261 section 9.1).
    fn cancel(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        let Some(d) = self.dialogs.get(&call) else {
            return;
        };
        let Some(branch) = d.invite_branch.clone() else {
            return;
        };
        let req = MessageBuilder::request(&Method::Cancel, &d.remote_target_initial())
            .header("Via", via(d.flow, &branch))
            .header("Max-Forwards", "70")
            .header("From", d.local())
            .header("To", d.remote_uri.clone())
            .header("Call-ID", d.call_id.clone())
            .header("CSeq", "1 CANCEL")
            .header("Reason", format!("Q.850;cause={}", cause.0))
            .build();
        let flow = d.flow;
        let cancel_branch = format!("{branch}-cancel");
        if let Some(d) = self.dialogs.get_mut(&call) {
            remember(&mut d.sent, &Method::Cancel, &cancel_branch);
        }
        self.client.send(
            now,
            self.cfg.side,
            flow,
            cancel_branch,
            Method::Cancel,
            call,
            req,
            out,
            &mut self.counters,
        );
    }

    /// A call from the other half: this leg places it toward its next hop as the UAC.
    fn place_call(&mut self, now: Duration, s: meta::Setup, out: &mut Out) {
        let side = self.cfg.side;
        let call = s.call;
        let arrived = out.calls.family(call).unwrap_or(Family::V4);
        let family = self.cfg.family.unwrap_or(arrived);
        let release = |out: &mut Out, cause: Cause| {
            out.send_other(side, meta::Message::Release(meta::Release { call, cause }));
            out.end_call_by_gateway(now, call, cause);
        };
        let direction = match side {
            Side::Outside => Direction::FromInside,
            Side::Inside => Direction::FromOutside,
        };
        let new = NewCall::from_setup(&s, direction, CallProtocol::Sip, family);
        if let Err(r) = out.calls.join(now, call, &new) {
            release(out, r.cause());
            return;
        }
        let Some(p) = self
            .cfg
            .placement
            .get(family_index(family))
            .cloned()
            .flatten()
        else {
            release(out, Cause::NO_ROUTE_TO_DESTINATION);
            return;
        };
        out.calls.set_peer(call, side, p.next_hop.ip());
        // Latch mode `signalling`: the callee's media may come from the next hop's address.
        out.media.set_signalling(side, call, p.next_hop.ip());
        let mut s = s;
        let dtmf_added = offer_telephone_event(&mut s.media);
        for m in &s.media {
            let Some(stream) = m.stream else { continue };
            if let Err(r) = out
                .media
                .open(side, call, stream, p.media_ip, payload_types(m), None)
            {
                out.calls.count_refusal(r);
                release(out, r.cause());
                return;
            }
        }
        let flow = Flow {
            transport: p.transport,
            local: p.local,
            remote: p.next_hop,
        };
        // A party with a control character never reaches a header (Meta refuses it already):
        // cause 100, invalid information element contents.
        let local_uri = match tsip::inside_name_addr(&s.calling, p.local) {
            Ok(u) => u,
            Err(e) => {
                self.report_full(
                    out,
                    format!("Setup of call {}", call.0),
                    Verdict::Rejected,
                    Some(format!("calling party: {e}")),
                    None,
                    Some(call),
                );
                release(out, Cause(100));
                return;
            }
        };
        let target = tsip::inside_uri(&s.called.user, p.next_hop);
        let call_id = format!("{}@{}", self.ids.token(), super::host_of(p.local));
        let local_tag = self.ids.token();
        let branch = self.ids.branch();
        let d = Dialog {
            uac: true,
            flow,
            call_id: call_id.clone(),
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri: format!("<{target}>"),
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 1,
            remote_cseq: None,
            state: State::Early,
            invite_key: None,
            invite_branch: Some(branch.clone()),
            reinvite: None,
            awaiting_ack: Vec::new(),
            sent: vec![(Method::Invite, branch.clone())],
            ack: None,
            provisional: 0,
            auth_tries: 0,
            before_offer: None,
            offer: s.media,
            media_ip: p.media_ip,
            sdp_id: self.ids.number(),
            sdp_version: 1,
            sips: false,
            crypto: Vec::new(),
            dtmf_added,
        };
        let mut b = in_dialog(&d, &Method::Invite, 1, &branch)
            .header("Contact", self.contact(&d))
            .header("Allow", policy::allow_header());
        if s.emergency {
            // RFC 3261 section 20.26: the request's urgency, for the PBX or provider.
            b = b.header("Priority", "emergency");
        }
        if !d.offer.is_empty() {
            b = b.body("application/sdp", d.sdp(&out.media, side));
        }
        // The last line of defence: a header with a control character is not written, and
        // the call is refused (cause 100) rather than placed without it.
        let req = match b.try_build() {
            Ok(r) => r,
            Err(e) => {
                self.report_full(
                    out,
                    format!("Setup of call {}", call.0),
                    Verdict::Rejected,
                    Some(e.to_string()),
                    None,
                    Some(call),
                );
                release(out, Cause(100));
                return;
            }
        };
        self.by_call_id.insert(call_id, call);
        self.next_hops.insert(call, d.flow.remote);
        self.dialogs.insert(call, Box::new(d));
        self.timers.set(now + NO_ANSWER, call);
        let counters = &mut self.counters;
        self.client.send(
            now,
            side,
            flow,
            branch,
            Method::Invite,
            call,
            req,
            out,
            counters,
        );
    }

    // ---- time and the end of calls ---------------------------------------------------------

    /// The call ends on this leg: it stops taking requests, and the call table and media
    /// table end it (one call record, ports released).
    fn end(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        if let Some(d) = self.dialogs.get_mut(&call) {
            d.state = State::Ended;
        }
        out.end_call(now, call, cause);
    }

    /// The call ends here and the other half is told (Meta Release with `cause`).
    fn end_both(&mut self, now: Duration, call: CallRef, cause: Cause, out: &mut Out) {
        let release = meta::Message::Release(meta::Release { call, cause });
        out.send_other(self.cfg.side, release);
        self.end(now, call, cause, out);
    }

    /// The call table forgot the call: its dialog and transactions go.
    pub fn forget(&mut self, call: CallRef) {
        let Some(d) = self.dialogs.remove(&call) else {
            return;
        };
        self.next_hops.remove(&call);
        if self.by_call_id.get(&d.call_id) == Some(&call) {
            self.by_call_id.remove(&d.call_id);
        }
        for (_, branch) in &d.sent {
            self.client.remove(branch);
        }
        // Transactions the dialog never answered have no timer of their own.
        for key in d.invite_key.iter().chain(&d.reinvite) {
            self.server.forget_unanswered(key);
        }
    }

    pub fn handle_timeout(&mut self, now: Duration, out: &mut Out) {
        self.last_now = self.last_now.max(now);
        for call in self.server.handle_timeout(now, out) {
            // A 2xx never acknowledged: the dialog is ended with a BYE (section 13.3.1.4).
            if self
                .dialogs
                .get(&call)
                .is_some_and(|d| d.state == State::Confirmed)
            {
                self.counters.unacked_2xx += 1;
                let cause = Cause::RECOVERY_ON_TIMER_EXPIRY;
                self.send_bye(now, call, cause, out);
                self.end_both(now, call, cause, out);
            }
        }
        let mut counters = std::mem::take(&mut self.counters);
        let timed_out = self.client.handle_timeout(now, out, &mut counters);
        self.counters = counters;
        for (call, method) in timed_out {
            if method == Method::Register {
                if let Some(r) = self.registration.as_mut() {
                    r.on_timeout(now, None);
                }
                continue;
            }
            let early = self
                .dialogs
                .get(&call)
                .is_some_and(|d| d.state == State::Early);
            if method == Method::Invite && early {
                let cause = Cause::RECOVERY_ON_TIMER_EXPIRY;
                self.end_both(now, call, cause, out);
            }
        }
        while let Some((_, call)) = self.timers.pop_due(now) {
            let Some(d) = self.dialogs.get(&call) else {
                continue;
            };
            if d.state != State::Early {
                continue;
            }
            // Timer C: nobody answered. CANCEL our INVITE, or 408 to theirs.
            let cause = Cause::RECOVERY_ON_TIMER_EXPIRY;
            if d.uac {
                self.cancel(now, call, cause, out);
            } else {
                self.fail_invite(now, call, 408, Some(cause), out);
            }
            self.end_both(now, call, cause, out);
        }
        self.poll_registration(now, out);
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        [
            self.server.poll_timeout(),
            self.client.poll_timeout(),
            self.timers.next(),
            self.registration.as_ref().and_then(|r| r.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Dialog {
    /// This leg's party in the dialog, with its tag (From of its requests).
    pub fn local_party(&self) -> String {
        self.local()
    }

    /// The peer's party with `tag` (its tag in responses, or the dialog's).
    pub fn remote_party(&self, tag: Option<&str>) -> String {
        with_tag(&self.remote_uri, tag)
    }

    /// The CSeq number of this leg's latest request in the dialog.
    pub fn local_cseq(&self) -> u32 {
        self.local_cseq
    }

    /// The Request-URI of the initial INVITE (CANCEL and non-2xx ACK repeat it).
    fn remote_target_initial(&self) -> String {
        sip::NameAddr::parse(&self.remote_uri, "To")
            .map(|n| n.uri.raw)
            .unwrap_or_else(|_| self.remote_target.clone())
    }
}

/// The status for a refusal of the admission chain (503; with `Retry-After` for a rate limit).
fn refusal(r: Refusal) -> Rejection {
    match r.retry_after() {
        Some(secs) => Rejection::RateLimited(r.reason(), secs),
        None => Rejection::BusyOrOverloaded(r.reason()),
    }
}

/// The rejection for a refusal of the admission chain: a denial answers with its rule's
/// status and cause, and names the rule in the report (never to the caller).
fn admission_refusal(
    now: Duration,
    source: IpAddr,
    calls: &super::calls::CallTable,
    r: Refusal,
) -> Rejection {
    match r {
        Refusal::AuthRequired { stale } => Rejection::Challenge {
            why: calls.auth.last_reason(),
            challenges: calls.auth.challenges(now, source, stale),
        },
        Refusal::AuthFailed => Rejection::AuthFailed(calls.auth.last_reason()),
        Refusal::Denied(d) => Rejection::Denied {
            status: d.status,
            cause: d.cause.0,
            rule: calls.access.name(d.rule).to_owned(),
        },
        r => refusal(r),
    }
}

fn family_index(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// Stream remotes from SDP into the media table.
fn apply_remotes(
    out: &mut Out,
    side: Side,
    media: &[MediaDescription],
    remotes: &[Option<SocketAddr>],
) {
    for (m, r) in media.iter().zip(remotes) {
        if let (Some(id), Some(r)) = (m.stream, r) {
            out.media.set_remote(side, id, *r);
        }
    }
}

/// Adds telephone-event to each audio stream of an offer that has none (the other side of the
/// call did not offer it): payload type 101, or the first dynamic one the stream does not use,
/// at the clock rate of the stream's first codec (RFC 4733 section 2.1). Returns the streams.
fn offer_telephone_event(media: &mut [MediaDescription]) -> Vec<StreamId> {
    let mut added = Vec::new();
    for m in media.iter_mut() {
        let Some(id) = m.stream else { continue };
        if m.kind != MediaKind::Audio || m.telephone_event.is_some() || m.codecs.is_empty() {
            continue;
        }
        let used = |pt: u8| m.codecs.iter().any(|c| c.payload_type == pt);
        let Some(pt) = std::iter::once(101).chain(96..=127).find(|&pt| !used(pt)) else {
            continue;
        };
        let clock_rate = m.codecs.first().map_or(8000, |c| c.clock_rate);
        m.telephone_event = Some(meta::TelephoneEvent {
            payload_type: pt,
            clock_rate,
        });
        added.push(id);
    }
    added
}

/// Narrows each stream's allowed payload types to an answer's.
fn narrow(out: &mut Out, side: Side, media: &[MediaDescription]) {
    for m in media {
        if let Some(id) = m.stream {
            out.media.set_payload_types(side, id, payload_types(m));
        }
    }
}

fn remember(sent: &mut Vec<(Method, String)>, method: &Method, branch: &str) {
    match sent.iter_mut().find(|(m, _)| m == method) {
        Some(e) => e.1 = branch.to_owned(),
        None => {
            // One entry or two per dialog: not the four slots a first push reserves.
            sent.reserve_exact(1);
            sent.push((method.clone(), branch.to_owned()));
        }
    }
}

/// Allow and Accept of the gateway, and Supported when it implements any option tag.
fn with_capabilities(b: MessageBuilder) -> MessageBuilder {
    let b = b
        .header("Allow", policy::allow_header())
        .header("Accept", policy::accept_header());
    if policy::SUPPORTED_EXTENSIONS.is_empty() {
        b
    } else {
        b.header("Supported", policy::SUPPORTED_EXTENSIONS.join(", "))
    }
}

/// The leg's Contact on `flow`, naming the transport when it is not UDP, so the peer's
/// in-dialog requests come back over the same transport (RFC 3261 section 19.1.1). A dialog
/// made by a SIPS request gets a SIPS URI (section 12.1.1); any other over TLS keeps `sip:`
/// with `transport=tls`, which every TLS-capable peer reads (some, such as libre 1.x, cannot
/// send to a `sips:` target at all).
fn contact_uri(user: &str, flow: Flow, sips: bool) -> String {
    let (scheme, transport) = match flow.transport {
        Transport::Tls if sips => ("sips", ""),
        Transport::Udp => ("sip", ""),
        Transport::Tcp => ("sip", ";transport=tcp"),
        Transport::Tls => ("sip", ";transport=tls"),
    };
    let host = super::host_port(flow.local);
    ["<", scheme, ":", user, "@", &host, transport, ">"].concat()
}

fn via(flow: Flow, branch: &str) -> String {
    let host = super::host_port(flow.local);
    let transport = flow.transport.via_token();
    [
        "SIP/2.0/", transport, " ", &host, ";branch=", branch, ";rport",
    ]
    .concat()
}

/// A request in the dialog (RFC 3261 section 12.2.1.1): Request-URI the remote target, Route
/// the route set (loose routing).
fn in_dialog(d: &Dialog, method: &Method, cseq: u32, branch: &str) -> MessageBuilder {
    let mut b =
        MessageBuilder::request(method, &d.remote_target).header("Via", via(d.flow, branch));
    for r in &d.route_set {
        b = b.header("Route", r.clone());
    }
    b.header("Max-Forwards", "70")
        .header("From", d.local())
        .header("To", d.remote())
        .header("Call-ID", d.call_id.clone())
        .header("CSeq", format!("{cseq} {method}"))
}

fn with_tag(value: &str, tag: Option<&str>) -> String {
    match tag {
        Some(t) if !value.contains(";tag=") => [value, ";tag=", t].concat(),
        _ => value.to_owned(),
    }
}

/// A From/To value without its tag parameter (the dialog adds its own).
fn strip_tag(value: &str) -> String {
    replace_param(value, ";tag=", None)
}

/// `value` with the parameter that starts with `prefix` (e.g. `;tag=`, matched without regard
/// to case) set to `to`, appended when absent, or removed with `None`.
pub fn replace_param(value: &str, prefix: &str, to: Option<&str>) -> String {
    let lower = value.to_ascii_lowercase();
    // Concatenated, not formatted: every From, To and Via the legs rewrite comes here.
    let set = |v: &str| match to {
        Some(t) => [prefix, t, v].concat(),
        None => v.to_owned(),
    };
    match lower.find(prefix) {
        Some(i) => {
            let from = i + prefix.len();
            let rest = value.get(from..).unwrap_or("");
            let end = rest.find([';', ',']).map_or(value.len(), |j| from + j);
            let head = value.get(..i).unwrap_or(value);
            [head, &set(value.get(end..).unwrap_or(""))].concat()
        }
        None => [value, &set("")].concat(),
    }
}

/// The address a `sip:` URI names when its host is an IP address (default ports of RFC 3261
/// section 19.1.2).
fn uri_addr(u: &sip::Uri) -> Option<SocketAddr> {
    let ip = u.ip?;
    let port = u.port.unwrap_or(if u.scheme == sip::UriScheme::Sips {
        5061
    } else {
        5060
    });
    Some(SocketAddr::new(ip, port))
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The same address and port, whichever way the family is written.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// Whether a response on `flow` came from where its request went (`sent`): over UDP the same
/// address and port (RFC 3581 section 4: the server answers from where it received the
/// request; our Via asks for `rport`), over TCP and TLS the same connection.
fn response_from_destination(flow: &Flow, sent: &Flow) -> bool {
    flow.transport == sent.transport && same_addr(flow.remote, sent.remote)
}

/// Where a response goes (RFC 3261 section 18.2.2, RFC 3581): over a stream, back on the
/// connection; over UDP, to the source address when the Via asks for `rport` (and always on a
/// symmetric leg: peers behind NAT), else to the source IP at the Via's sent-by port.
fn response_flow(symmetric: bool, flow: Flow, msg: &Message) -> Flow {
    if symmetric || flow.transport.is_reliable() {
        return flow;
    }
    let Some(via) = msg.vias().ok().and_then(|v| v.first()) else {
        return flow;
    };
    if via.param("rport").is_some() || via.param("maddr").is_some() {
        return flow;
    }
    let port = via.port.unwrap_or(5060);
    Flow {
        remote: SocketAddr::new(flow.remote.ip(), port),
        ..flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_tag_keeps_other_params() {
        assert_eq!(strip_tag("<sip:a@b>;tag=x;foo=1"), "<sip:a@b>;foo=1");
        assert_eq!(strip_tag("<sip:a@b>;TAG=x"), "<sip:a@b>");
        assert_eq!(strip_tag("<sip:a@b>"), "<sip:a@b>");
    }
}
