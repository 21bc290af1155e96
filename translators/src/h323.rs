//! H.323 (Q.931 + H.225.0 + H.245 fastStart) <-> Meta: parties from aliases and Q.931 numbers,
//! media from fastStart OpenLogicalChannels, release causes from the Cause IE or the
//! ReleaseCompleteReason, DTMF from UserInputIndication; and fresh H.225.0 messages from Meta in
//! the target IP family.
//!
//! Outside media addresses found in OLCs are returned beside the Meta media (`remotes`), never
//! inside it. Messages built from Meta copy nothing of any incoming message except what the
//! caller passes in explicitly (the fastStart proposals a Connect answers, which go back to the
//! peer that sent them). Pure functions.

use codecs::h225::{self, asn as h225asn, H225Error};
use codecs::h245::{self, asn as h245asn};
use codecs::meta::{self, Cause, Codec, Direction, MediaDescription, MediaKind, Party, StreamId};
use codecs::q931::{self, BearerCapability, CallRef, Layer1Protocol, PartyNumber};
use h225asn::{AliasAddress, H323UUPDUH323MessageBody as Body, H323UserInformation};
use h245asn::OpenLogicalChannel;
use std::net::SocketAddr;

/// Why an H.323 message could not become Meta, or Meta could not become H.323.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranslateError {
    #[error("H.225.0: {0}")]
    H225(#[from] H225Error),
    #[error("Q.931: {0}")]
    Q931(#[from] q931::Q931EncodeError),
    #[error("not a {0} message")]
    WrongMessage(&'static str),
}

impl TranslateError {
    /// The Q.931 cause a Release Complete answers this error with.
    pub fn cause(&self) -> Cause {
        match self {
            TranslateError::H225(e) => e.cause().into(),
            TranslateError::Q931(_) => Cause::PROTOCOL_ERROR,
            TranslateError::WrongMessage(_) => Cause(98),
        }
    }
}

/// Meta media from fastStart, with the peer's RTP and RTCP addresses per description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FastStartMedia {
    pub media: Vec<MediaDescription>,
    pub remotes: Vec<Option<SocketAddr>>,
    pub rtcp_remotes: Vec<Option<SocketAddr>>,
}

/// An incoming Setup as Meta, plus what the gateway keeps beside it.
#[derive(Debug, Clone)]
pub struct SetupInfo {
    pub calling: Party,
    pub called: Party,
    pub media: FastStartMedia,
    /// The decoded fastStart proposals, to answer from at Connect.
    pub proposals: Vec<OpenLogicalChannel>,
    pub conference_id: [u8; 16],
    pub call_identifier: Option<[u8; 16]>,
    pub h245_address: Option<SocketAddr>,
    pub tunnelling: bool,
}

/// Identifiers of one H.225.0 call, fresh per leg (never copied from the other leg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallIds {
    pub call_ref: u16,
    pub conference_id: [u8; 16],
    pub call_identifier: [u8; 16],
}

/// Most codecs taken from one fastStart offer.
pub const MAX_CODECS: usize = 16;

fn alias_text(a: &AliasAddress) -> Option<(String, bool)> {
    match a {
        AliasAddress::dialedDigits(d) => Some((String::from(d.clone()), true)),
        AliasAddress::h323_ID(b) => Some((h323_asn1::bmp_to_string(b), false)),
        AliasAddress::url_ID(u) | AliasAddress::email_ID(u) => {
            let s = String::from(u.clone());
            let user = s
                .trim_start_matches("h323:")
                .trim_start_matches("sip:")
                .split('@')
                .next()
                .unwrap_or("")
                .to_owned();
            Some((user, false))
        }
        _ => None,
    }
}

/// A party from a Q.931 number and H.225.0 aliases: the number, else the first dialedDigits
/// alias, else the first h323-ID / URL / e-mail user part; the display from the Display IE or an
/// h323-ID next to a number.
fn party(
    number: Option<&PartyNumber>,
    aliases: Option<&Vec<AliasAddress>>,
    display: Option<&str>,
) -> Party {
    // Text with a control character (CR, LF, NUL, ...) is invalid contents: a Display IE or
    // alias carrying one is treated as absent, as Q.931 clause 5.8.7.2 has a receiver do
    // with a non-mandatory IE of invalid contents. It never reaches a header.
    let text = |s: &str| s.chars().all(codecs::meta::is_text_char);
    let aliases: Vec<(String, bool)> = aliases
        .map(|v| {
            v.iter()
                .take(h225::MAX_ALIASES)
                .filter_map(alias_text)
                .filter(|(s, _)| text(s))
                .collect()
        })
        .unwrap_or_default();
    let digits = aliases.iter().find(|(_, d)| *d).map(|(s, _)| s.clone());
    let name = aliases.iter().find(|(_, d)| !*d).map(|(s, _)| s.clone());
    let user = number
        .map(|n| n.digits.clone())
        .filter(|d| !d.is_empty())
        .or(digits)
        .or(name.clone())
        .unwrap_or_default();
    let display = display
        // A C-string terminator is no part of the name.
        .map(|d| d.trim_end_matches('\0'))
        .filter(|d| text(d))
        .map(str::to_owned)
        .or(name.filter(|n| *n != user))
        .filter(|d| !d.is_empty());
    Party { user, display }
}

/// Reads an incoming Setup (H.225.0 clause 7.3.1 with its Q.931 numbers), allocating a stream
/// id for the audio stream of a fastStart offer.
pub fn setup_to_meta(
    msg: &q931::Message,
    uu: &H323UserInformation,
    alloc: &mut dyn FnMut() -> StreamId,
) -> Result<SetupInfo, TranslateError> {
    let Body::setup(s) = &uu.h323_uu_pdu.h323_message_body else {
        return Err(TranslateError::WrongMessage("Setup"));
    };
    let calling = party(
        msg.calling_party_number(),
        s.source_address.as_ref(),
        msg.display(),
    );
    let called = party(
        msg.called_party_number(),
        s.destination_address.as_ref(),
        None,
    );
    let proposals = match h225::fast_start(&uu.h323_uu_pdu) {
        Some(fs) => h225::fast_start_olcs(fs)?,
        None => Vec::new(),
    };
    let media = offer_from_fast_start(&proposals, alloc);
    Ok(SetupInfo {
        calling,
        called,
        media,
        proposals,
        conference_id: h225::guid_bytes(&s.conference_id.0),
        call_identifier: s
            .call_identifier
            .as_ref()
            .map(|c| h225::guid_bytes(&c.guid)),
        h245_address: h225::h245_address(&uu.h323_uu_pdu),
        tunnelling: h225::h245_tunnelling(&uu.h323_uu_pdu),
    })
}

fn push_codec(codecs: &mut Vec<Codec>, c: Codec) {
    if codecs.len() < MAX_CODECS && !codecs.iter().any(|x| x.payload_type == c.payload_type) {
        codecs.push(c);
    }
}

/// A fastStart offer as one Meta audio stream: codecs of the reverse proposals (what the
/// offerer can receive) first, then forward-only ones; the offerer's RTP address from a reverse
/// proposal's `mediaChannel`, RTCP from any `mediaControlChannel`. Empty when no audio codec is
/// understood.
pub fn offer_from_fast_start(
    proposals: &[OpenLogicalChannel],
    alloc: &mut dyn FnMut() -> StreamId,
) -> FastStartMedia {
    let olcs: Vec<h245::OlcMedia> = proposals
        .iter()
        .map(h245::olc_media)
        .filter(|m| m.codec.is_some())
        .collect();
    let mut codecs = Vec::new();
    for m in olcs.iter().filter(|m| !m.forward) {
        if let Some(c) = &m.codec {
            push_codec(&mut codecs, c.clone());
        }
    }
    for m in olcs.iter().filter(|m| m.forward) {
        if let Some(c) = &m.codec {
            push_codec(&mut codecs, c.clone());
        }
    }
    if codecs.is_empty() {
        return FastStartMedia::default();
    }
    let sends = olcs.iter().any(|m| m.forward);
    let receives = olcs.iter().any(|m| !m.forward);
    let direction = match (sends, receives) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, _) => Direction::RecvOnly,
    };
    let remote = olcs
        .iter()
        .filter(|m| !m.forward)
        .find_map(|m| m.media_channel);
    let rtcp = olcs
        .iter()
        .filter(|m| !m.forward)
        .chain(olcs.iter().filter(|m| m.forward))
        .find_map(|m| m.media_control_channel);
    FastStartMedia {
        media: vec![MediaDescription {
            stream: Some(alloc()),
            kind: MediaKind::Audio,
            direction,
            codecs,
            telephone_event: None,
            ptime_ms: Some(20),
        }],
        remotes: vec![remote],
        rtcp_remotes: vec![rtcp],
    }
}

/// A fastStart answer (the chosen OLCs echoed by the called side, H.323 clause 8.1.7.1) to
/// `offer`: the answerer's RTP address is the `mediaChannel` of the forward channel (the
/// offerer's sending direction). Streams keep the offer's ids.
pub fn answer_from_fast_start(
    olcs: &[OpenLogicalChannel],
    offer: &[MediaDescription],
) -> FastStartMedia {
    let Some(o) = offer.iter().find(|m| m.kind == MediaKind::Audio) else {
        return FastStartMedia::default();
    };
    let read: Vec<h245::OlcMedia> = olcs
        .iter()
        .map(h245::olc_media)
        .filter(|m| m.codec.is_some())
        .collect();
    let mut codecs = Vec::new();
    for m in &read {
        if let Some(c) = &m.codec {
            push_codec(&mut codecs, c.clone());
        }
    }
    if codecs.is_empty() {
        return FastStartMedia::default();
    }
    let fwd = read.iter().any(|m| m.forward);
    let rev = read.iter().any(|m| !m.forward);
    // Seen from the offerer: forward channels are its sending direction.
    let direction = match (fwd, rev) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::RecvOnly,
        (false, _) => Direction::SendOnly,
    };
    let remote = read
        .iter()
        .filter(|m| m.forward)
        .find_map(|m| m.media_channel);
    let rtcp = read
        .iter()
        .filter(|m| m.forward)
        .chain(read.iter().filter(|m| !m.forward))
        .find_map(|m| m.media_control_channel);
    FastStartMedia {
        media: vec![MediaDescription {
            stream: o.stream,
            kind: MediaKind::Audio,
            direction,
            codecs,
            telephone_event: None,
            ptime_ms: Some(20),
        }],
        remotes: vec![remote],
        rtcp_remotes: vec![rtcp],
    }
}

/// fastStart proposals for a Meta offer: per audio codec H.245 can name, a forward OLC (we send;
/// RTCP reports to `rtp`+1) and a reverse OLC (we receive at `rtp`), as the direction allows.
/// Addresses are in `rtp`'s family (`iPAddress` or `iP6Address`).
pub fn fast_start_offer(
    media: &[MediaDescription],
    rtp: SocketAddr,
) -> Result<Vec<Vec<u8>>, TranslateError> {
    let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
    let mut out = Vec::new();
    let Some(m) = media
        .iter()
        .find(|m| m.kind == MediaKind::Audio && m.stream.is_some())
    else {
        return Ok(out);
    };
    let (send, recv) = match m.direction {
        Direction::SendRecv => (true, true),
        Direction::SendOnly => (true, false),
        Direction::RecvOnly => (false, true),
        Direction::Inactive => (false, false),
    };
    let mut number = 1u16;
    for c in m.codecs.iter().take(h225::MAX_FAST_START / 2) {
        let Some(audio) = h245::codec_to_audio(c, h245::DEFAULT_FRAMES) else {
            continue;
        };
        if send {
            let olc = h245::forward_olc(number, audio.clone(), None, Some(rtcp));
            out.push(h245::encode_olc(&olc).map_err(H225Error::from)?);
            number += 1;
        }
        if recv {
            let olc = h245::reverse_olc(number, audio, Some(rtp), Some(rtcp));
            out.push(h245::encode_olc(&olc).map_err(H225Error::from)?);
            number += 1;
        }
    }
    Ok(out)
}

fn same_codec(a: &Codec, b: &Codec) -> bool {
    a.payload_type == b.payload_type || a.name.eq_ignore_ascii_case(&b.name)
}

/// A fastStart answer to `proposals` for the Meta answer `answer`: the first answered codec
/// the proposals offer, one channel per direction, echoed with our addresses (`rtp` receives in
/// the forward channel; RTCP at `rtp`+1 in both). Empty when nothing matches (the caller then
/// falls back to H.245).
pub fn fast_start_answer(
    proposals: &[OpenLogicalChannel],
    answer: &[MediaDescription],
    rtp: SocketAddr,
) -> Result<Vec<Vec<u8>>, TranslateError> {
    let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
    let wanted: Vec<&Codec> = answer
        .iter()
        .filter(|m| m.kind == MediaKind::Audio && m.stream.is_some())
        .flat_map(|m| m.codecs.iter())
        .collect();
    let read: Vec<(usize, h245::OlcMedia)> =
        proposals.iter().map(h245::olc_media).enumerate().collect();
    let pick = |forward: bool| {
        wanted.iter().find_map(|w| {
            read.iter()
                .find(|(_, m)| {
                    m.forward == forward && m.codec.as_ref().is_some_and(|c| same_codec(c, w))
                })
                .map(|(i, m)| (*i, m.media_channel))
        })
    };
    let mut out = Vec::new();
    for forward in [true, false] {
        let Some((i, their_media)) = pick(forward) else {
            continue;
        };
        let Some(p) = proposals.get(i) else { continue };
        let mut olc = p.clone();
        if forward {
            h245::set_olc_addresses(&mut olc, Some(rtp), Some(rtcp));
        } else {
            h245::set_olc_addresses(&mut olc, their_media, Some(rtcp));
        }
        out.push(h245::encode_olc(&olc).map_err(H225Error::from)?);
    }
    Ok(out)
}

/// The fastStart OLCs of a message, decoded (empty when it has none).
pub fn fast_start_of(uu: &H323UserInformation) -> Result<Vec<OpenLogicalChannel>, TranslateError> {
    match h225::fast_start(&uu.h323_uu_pdu) {
        Some(fs) => Ok(h225::fast_start_olcs(fs)?),
        None => Ok(Vec::new()),
    }
}

/// The release cause of a Release Complete: the Cause IE, else the ReleaseCompleteReason (H.225.0
/// table 5), else normal clearing.
pub fn release_cause(msg: &q931::Message, uu: Option<&H323UserInformation>) -> Cause {
    if let Some(c) = msg.cause() {
        return c.into();
    }
    if let Some(Body::releaseComplete(r)) = uu.map(|u| &u.h323_uu_pdu.h323_message_body) {
        if let Some(reason) = &r.reason {
            return Cause(h225::reason_to_cause(reason));
        }
    }
    Cause::NORMAL_CLEARING
}

/// DTMF from an H.245 message: a UserInputIndication `alphanumeric` or `signal`.
pub fn dtmf_from_h245(m: &h245asn::MultimediaSystemControlMessage) -> Option<(u8, u16)> {
    match m {
        h245asn::MultimediaSystemControlMessage::indication(
            h245asn::IndicationMessage::userInput(u),
        ) => h245::user_input_event(u),
        _ => None,
    }
}

fn alias(user: &str) -> Option<AliasAddress> {
    if user.is_empty() {
        return None;
    }
    // dialedDigits has no '+': an E.164 number is sent without it (H.225.0 AliasAddress).
    let number = user.strip_prefix('+').unwrap_or(user);
    let digits = !number.is_empty()
        && number.len() <= 128
        && number
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'#' || b == b'*' || b == b',');
    if digits {
        let s = h323_asn1::rasn::types::Ia5String::from_iso646_bytes(number.as_bytes()).ok()?;
        return Some(AliasAddress::dialedDigits(s));
    }
    let digits = user.len() <= 128
        && user
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'#' || b == b'*' || b == b',');
    if digits {
        let s = h323_asn1::rasn::types::Ia5String::from_iso646_bytes(user.as_bytes()).ok()?;
        return Some(AliasAddress::dialedDigits(s));
    }
    // Never a control character in an alias (Meta refuses them already): no alias then.
    if user.chars().any(char::is_control) {
        return None;
    }
    let text: String = user.chars().take(256).collect();
    h323_asn1::bmp_string(&text).ok().map(AliasAddress::h323_ID)
}

/// Digits for a Q.931 party number: a leading '+' is dropped (E.164 in Q.931 has no '+').
fn number(user: &str) -> Option<PartyNumber> {
    let d = user.strip_prefix('+').unwrap_or(user);
    (!d.is_empty()
        && d.len() <= q931::MAX_DIGITS
        && d.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'))
    .then(|| PartyNumber::e164(d))
}

fn encode_uu(body: Body) -> Result<Vec<u8>, TranslateError> {
    encode_uu_with(body, H245Parts::default())
}

/// What an H.225.0 message carries for H.245: this side's `h245Address` (a separate H.245
/// connection, H.323 clause 8.1.7.2) and tunnelled H.245 PDUs (`h245Control`, clause 8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct H245Parts {
    pub address: Option<SocketAddr>,
    pub control: Vec<Vec<u8>>,
}

fn encode_uu_with(mut body: Body, h245: H245Parts) -> Result<Vec<u8>, TranslateError> {
    if let Some(a) = h245.address.map(h225::socket_to_transport) {
        match &mut body {
            Body::setup(b) => b.h245_address = Some(a),
            Body::callProceeding(b) => b.h245_address = Some(a),
            Body::alerting(b) => b.h245_address = Some(a),
            Body::connect(b) => b.h245_address = Some(a),
            Body::progress(b) => b.h245_address = Some(a),
            Body::facility(b) => b.h245_address = Some(a),
            _ => {}
        }
    }
    let mut uu = h225::user_information_for(body, true);
    if !h245.control.is_empty() {
        uu.h323_uu_pdu.h245_control = Some(h245.control.into_iter().map(Into::into).collect());
    }
    Ok(h225::encode(&uu)?)
}

fn fast_start_elements(fs: Vec<Vec<u8>>) -> Option<Vec<h323_asn1::rasn::types::OctetString>> {
    (!fs.is_empty()).then(|| fs.into_iter().map(Into::into).collect())
}

/// A Setup for a Meta setup (H.225.0 clause 7.3.1): Bearer capability (speech, G.711 µ-law),
/// calling/called numbers where the users are numbers, the calling display, aliases, fresh
/// conference and call identifiers, `fastStart` as given and H.245 tunnelling. Nothing else: no
/// h245Address, no source or destination signalling address.
pub fn setup_message(
    setup: &meta::Setup,
    ids: &CallIds,
    fast_start: Vec<Vec<u8>>,
) -> Result<q931::Message, TranslateError> {
    let mut s = h225::setup_uuie(ids.conference_id, ids.call_identifier);
    s.source_address = alias(&setup.calling.user).map(|a| vec![a]);
    s.destination_address = alias(&setup.called.user).map(|a| vec![a]);
    s.fast_start = fast_start_elements(fast_start);
    let uu = encode_uu(Body::setup(s))?;
    let mut m = q931::Message::setup(
        CallRef::new(ids.call_ref),
        BearerCapability::speech(Layer1Protocol::G711Ulaw),
        uu,
    );
    if let Some(n) = number(&setup.calling.user) {
        m = m.with_calling_number(n);
    }
    if let Some(n) = number(&setup.called.user) {
        m = m.with_called_number(n);
    }
    if let Some(d) = &setup.calling.display {
        // The Display IE is IA5 of at most 82 characters (Q.931 clause 4.5.16).
        // Never a control character (Meta refuses them already; the IE is left out).
        let d: String = d.chars().filter(char::is_ascii).take(82).collect();
        if !d.is_empty() && !d.chars().any(|c| c.is_ascii_control()) {
            m = m.with_display(&d);
        }
    }
    Ok(m)
}

/// Call Proceeding from the called side (call reference flag set).
pub fn call_proceeding_message(
    ids: &CallIds,
    h245: H245Parts,
) -> Result<q931::Message, TranslateError> {
    let uu = encode_uu_with(
        Body::callProceeding(h225::call_proceeding_uuie(ids.call_identifier)),
        h245,
    )?;
    Ok(q931::Message::call_proceeding(
        CallRef::new(ids.call_ref).reply(),
        uu,
    ))
}

/// Alerting from the called side, with an early fastStart answer when given.
pub fn alerting_message(
    ids: &CallIds,
    fast_start: Vec<Vec<u8>>,
    h245: H245Parts,
) -> Result<q931::Message, TranslateError> {
    let mut a = h225::alerting_uuie(ids.call_identifier);
    a.fast_start = fast_start_elements(fast_start);
    Ok(q931::Message::alerting(
        CallRef::new(ids.call_ref).reply(),
        encode_uu_with(Body::alerting(a), h245)?,
    ))
}

/// Progress from the called side (in-band information available), with fastStart when given.
pub fn progress_message(
    ids: &CallIds,
    fast_start: Vec<Vec<u8>>,
) -> Result<q931::Message, TranslateError> {
    let mut p = h225asn::ProgressUUIE::new(
        h225::protocol_identifier(),
        h225::endpoint_type(),
        None,
        h225asn::CallIdentifier::new(h225::guid(ids.call_identifier)),
        None,
        None,
        None,
        None,
        Some(false),
        Some(false),
        None,
    );
    p.fast_start = fast_start_elements(fast_start);
    let indicator = q931::ProgressIndicator {
        coding_standard: q931::CodingStandard::Itu,
        location: q931::Location::User,
        description: q931::ProgressDescription::InbandInfoAvailable,
    };
    Ok(q931::Message::progress(
        CallRef::new(ids.call_ref).reply(),
        indicator,
        encode_uu(Body::progress(p))?,
    ))
}

/// Connect from the called side with the fastStart answer.
pub fn connect_message(
    ids: &CallIds,
    fast_start: Vec<Vec<u8>>,
    h245: H245Parts,
) -> Result<q931::Message, TranslateError> {
    let mut c = h225::connect_uuie(ids.conference_id, ids.call_identifier);
    c.fast_start = fast_start_elements(fast_start);
    Ok(q931::Message::connect(
        CallRef::new(ids.call_ref).reply(),
        encode_uu_with(Body::connect(c), h245)?,
    ))
}

/// Facility carrying H.245 (reason `transportedInformation`, H.323 clause 8.2.1: tunnelled
/// PDUs when no other message is due) or announcing `h245Address` (reason `startH245`).
/// `from_destination` is the call reference flag.
pub fn facility_message(
    ids: &CallIds,
    from_destination: bool,
    h245: H245Parts,
) -> Result<q931::Message, TranslateError> {
    let reason = if h245.control.is_empty() && h245.address.is_some() {
        h225asn::FacilityReason::startH245(())
    } else {
        h225asn::FacilityReason::transportedInformation(())
    };
    let f = h225asn::FacilityUUIE::new(
        h225::protocol_identifier(),
        None,
        None,
        Some(h225asn::ConferenceIdentifier(h225::guid(ids.conference_id))),
        reason,
        Some(h225asn::CallIdentifier::new(h225::guid(
            ids.call_identifier,
        ))),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        Some(false),
        Some(false),
        None,
        None,
        None,
        None,
        None,
        None,
    );
    let mut cr = CallRef::new(ids.call_ref);
    cr.from_destination = from_destination;
    Ok(q931::Message::facility(
        cr,
        encode_uu_with(Body::facility(f), h245)?,
    ))
}

/// Release Complete with the cause in both the Cause IE and the ReleaseCompleteReason. `from_
/// destination` is the call reference flag: true when the called side sends it.
pub fn release_complete_message(
    ids: &CallIds,
    from_destination: bool,
    cause: Cause,
) -> Result<q931::Message, TranslateError> {
    let rc = h225::release_complete_uuie(
        Some(ids.call_identifier),
        Some(h225::cause_to_reason(cause.0)),
    );
    let mut cr = CallRef::new(ids.call_ref);
    cr.from_destination = from_destination;
    Ok(q931::Message::release_complete(
        cr,
        Some(cause.into()),
        encode_uu(Body::releaseComplete(rc))?,
    ))
}

/// Release Complete answering a message that could not be handled, on its call reference
/// (Q.931 clause 5.8), with the cause as IE and reason and no call identifier.
/// A Status (Q.931 clause 5.8: cause 30 answers Status Enquiry, 96/100 a malformed message)
/// with the call state and H.225.0's status body carrying the call's identifier (all zero for
/// a call the gateway does not hold).
pub fn status_message(
    call_ref: CallRef,
    cause: Cause,
    state: q931::CallState,
    call_id: [u8; 16],
) -> Result<q931::Message, TranslateError> {
    let uu = encode_uu(Body::status(h225::status_uuie(call_id)))?;
    Ok(q931::Message::status(call_ref.reply(), cause.into(), state)
        .with(q931::Ie::UserUser(q931::UserUser::h225(uu))))
}

pub fn release_complete_for_error(
    call_ref: CallRef,
    cause: Cause,
) -> Result<q931::Message, TranslateError> {
    let rc = h225::release_complete_uuie(None, Some(h225::cause_to_reason(cause.0)));
    Ok(q931::Message::release_complete(
        call_ref.reply(),
        Some(cause.into()),
        encode_uu(Body::releaseComplete(rc))?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn codec(pt: u8, name: &str) -> Codec {
        Codec {
            payload_type: pt,
            name: name.to_owned(),
            clock_rate: 8000,
            channels: 1,
            fmtp: None,
        }
    }

    fn meta_setup(media: Vec<MediaDescription>) -> meta::Setup {
        meta::Setup {
            call: meta::CallRef(2),
            calling: Party {
                user: "+4930123".to_owned(),
                display: Some("Alice".to_owned()),
            },
            called: Party {
                user: "bob".to_owned(),
                display: None,
            },
            emergency: false,
            media,
        }
    }

    fn audio(codecs: Vec<Codec>) -> MediaDescription {
        MediaDescription {
            stream: Some(StreamId(4)),
            kind: MediaKind::Audio,
            direction: Direction::SendRecv,
            codecs,
            telephone_event: None,
            ptime_ms: Some(20),
        }
    }

    const IDS: CallIds = CallIds {
        call_ref: 7,
        conference_id: [1; 16],
        call_identifier: [2; 16],
    };

    #[test]
    fn setup_round_trips_through_meta_in_both_families() {
        for rtp in ["10.0.0.1:40000", "[fd00::1]:40000"] {
            let rtp: SocketAddr = rtp.parse().unwrap();
            let media = vec![audio(vec![
                codec(8, "PCMA"),
                codec(0, "PCMU"),
                codec(18, "G729"),
            ])];
            let fs = fast_start_offer(&media, rtp).unwrap();
            assert_eq!(fs.len(), 6);
            let msg = setup_message(&meta_setup(media.clone()), &IDS, fs).unwrap();
            let bytes = msg.to_vec().unwrap();
            let back = q931::Message::decode(&bytes).unwrap();
            back.check_mandatory().unwrap();
            let uu = h225::user_information(&back).unwrap();
            let mut n = 0;
            let info = setup_to_meta(&back, &uu, &mut || {
                n += 2;
                StreamId(n)
            })
            .unwrap();
            assert_eq!(info.calling.user, "4930123");
            assert_eq!(info.calling.display.as_deref(), Some("Alice"));
            assert_eq!(info.called.user, "bob");
            assert!(info.tunnelling);
            assert_eq!(info.call_identifier, Some([2; 16]));
            let m = &info.media.media[0];
            assert_eq!(m.direction, Direction::SendRecv);
            let pts: Vec<u8> = m.codecs.iter().map(|c| c.payload_type).collect();
            assert_eq!(pts, [8, 0, 18]);
            assert_eq!(info.media.remotes[0], Some(rtp));

            // The answer picks PCMU and echoes one channel per direction.
            let gw: SocketAddr = "198.51.100.1:20000".parse().unwrap();
            let ans =
                fast_start_answer(&info.proposals, &[audio(vec![codec(0, "PCMU")])], gw).unwrap();
            assert_eq!(ans.len(), 2);
            let olcs =
                h225::fast_start_olcs(&ans.iter().cloned().map(Into::into).collect::<Vec<_>>())
                    .unwrap();
            let a = answer_from_fast_start(&olcs, &info.media.media);
            assert_eq!(a.media[0].codecs[0].payload_type, 0);
            assert_eq!(a.remotes[0], Some(gw));
        }
    }

    /// Header injection, H.323 side: the Setup builder writes no control character into the
    /// Display IE or the aliases, and a received alias or Display IE with one is dropped.
    #[test]
    fn control_characters_never_reach_display_or_aliases() {
        let media = vec![audio(vec![codec(0, "PCMU")])];
        let rtp: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let mut setup = meta_setup(media.clone());
        setup.calling.display = Some("Alice\r\nX-Injected: yes".to_owned());
        setup.called.user = "bob\r\nX-Injected: yes".to_owned();
        let msg = setup_message(&setup, &IDS, fast_start_offer(&media, rtp).unwrap()).unwrap();
        assert_eq!(msg.display(), None);
        let bytes = msg.to_vec().unwrap();
        assert!(!bytes.windows(10).any(|w| w == b"X-Injected"));
        let back = q931::Message::decode(&bytes).unwrap();
        let uu = h225::user_information(&back).unwrap();
        let info = setup_to_meta(&back, &uu, &mut || StreamId(2)).unwrap();
        assert_eq!(info.calling.display, None);
        assert_eq!(info.called.user, "", "the injected alias was not written");
        // A received h323-ID alias with CR LF is no party name.
        let p = party(
            None,
            Some(&vec![alias("Mallory\r\nX-Injected: yes").unwrap_or_else(
                || AliasAddress::h323_ID(h323_asn1::bmp_string("Mallory\r\nX: y").unwrap()),
            )]),
            Some("Mallory\0"),
        );
        assert_eq!(p.user, "");
        assert_eq!(
            p.display.as_deref(),
            Some("Mallory"),
            "a C-string NUL is trimmed"
        );
    }

    #[test]
    fn release_cause_from_ie_or_reason() {
        let m = release_complete_message(&IDS, true, Cause::USER_BUSY).unwrap();
        let back = q931::Message::decode(&m.to_vec().unwrap()).unwrap();
        assert!(back.call_ref.from_destination);
        let uu = h225::user_information(&back).unwrap();
        assert_eq!(release_cause(&back, Some(&uu)), Cause::USER_BUSY);
        let mut no_ie = back.clone();
        no_ie.ies.retain(|ie| !matches!(ie, q931::Ie::Cause(_)));
        assert_eq!(release_cause(&no_ie, Some(&uu)), Cause::USER_BUSY);
    }

    #[test]
    fn responses_encode() {
        for m in [
            call_proceeding_message(&IDS, H245Parts::default()).unwrap(),
            alerting_message(&IDS, Vec::new(), H245Parts::default()).unwrap(),
            progress_message(&IDS, Vec::new()).unwrap(),
            connect_message(&IDS, Vec::new(), H245Parts::default()).unwrap(),
            facility_message(
                &IDS,
                true,
                H245Parts {
                    address: Some("192.0.2.1:30000".parse().unwrap()),
                    control: vec![vec![0x64, 0x00]],
                },
            )
            .unwrap(),
            release_complete_for_error(CallRef::new(9), Cause::INVALID_MESSAGE).unwrap(),
        ] {
            let back = q931::Message::decode(&m.to_vec().unwrap()).unwrap();
            back.check_mandatory().unwrap();
            assert!(back.call_ref.from_destination);
            h225::user_information(&back).unwrap();
        }
    }

    #[test]
    fn captured_setups_become_meta() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../h323-asn1/testdata/h225");
        for f in ["ndpi-h323-f6-setup.hex", "ndpi-h323-f47-setup.hex"] {
            let text = std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
            let bytes: Vec<u8> = (0..text.trim().len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                .collect();
            let uu = h323_asn1::decode_h323_user_information(&bytes).unwrap();
            let msg = q931::Message::new(q931::MessageType::Setup, CallRef::new(1));
            let info = setup_to_meta(&msg, &uu, &mut || StreamId(2)).unwrap();
            assert!(
                !info.calling.user.is_empty() || !info.called.user.is_empty(),
                "{f}"
            );
        }
    }
}
