//! H.245 glue: names of MultimediaSystemControlMessages for summaries, unicast transport
//! addresses, audio capabilities as Meta codecs, fastStart OpenLogicalChannels (H.323 clause
//! 8.1.7) and UserInputIndication digits.
//!
//! Types and aligned PER come from `h323-asn1`; nothing here does I/O or panics on input.

use crate::meta;
use h323_asn1::h245::{
    AudioCapability, AudioCapabilityG7231, CommandMessage, DataType, H2250LogicalChannelParameters,
    H245TransportAddress, IndicationMessage, LogicalChannelNumber, MultimediaSystemControlMessage,
    OpenLogicalChannel, OpenLogicalChannelForwardLogicalChannelParameters,
    OpenLogicalChannelForwardLogicalChannelParametersMultiplexParameters as FwdMux,
    OpenLogicalChannelReverseLogicalChannelParameters,
    OpenLogicalChannelReverseLogicalChannelParametersMultiplexParameters as RevMux, RequestMessage,
    ResponseMessage, UnicastAddress, UnicastAddressIP6Address, UnicastAddressIPAddress,
    UserInputIndication, UserInputIndicationSignal,
};
use h323_asn1::rasn::types::{GeneralString, Ia5String, OctetString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use h323_asn1::h245 as asn;

/// The RTP session of audio (H.225.0 clause 6.2.8.1: session 1 is audio, 2 video, 3 data).
pub const AUDIO_SESSION: u8 = 1;
/// Frames per packet announced in audio capabilities: for G.711 the unit is 1 ms of audio
/// (H.245 AudioCapability), so 20 is the usual 20 ms packet.
pub const DEFAULT_FRAMES: u16 = 20;

/// The H.245 name of a message, for summaries: "TerminalCapabilitySet", "OpenLogicalChannelAck"…
pub fn message_name(m: &MultimediaSystemControlMessage) -> &'static str {
    use MultimediaSystemControlMessage as M;
    match m {
        M::request(r) => request_name(r),
        M::response(r) => response_name(r),
        M::command(c) => command_name(c),
        M::indication(i) => indication_name(i),
        _ => "UnknownMessage",
    }
}

fn request_name(r: &RequestMessage) -> &'static str {
    use RequestMessage as R;
    match r {
        R::nonStandard(_) => "NonStandardRequest",
        R::masterSlaveDetermination(_) => "MasterSlaveDetermination",
        R::terminalCapabilitySet(_) => "TerminalCapabilitySet",
        R::openLogicalChannel(_) => "OpenLogicalChannel",
        R::closeLogicalChannel(_) => "CloseLogicalChannel",
        R::requestChannelClose(_) => "RequestChannelClose",
        R::multiplexEntrySend(_) => "MultiplexEntrySend",
        R::requestMultiplexEntry(_) => "RequestMultiplexEntry",
        R::requestMode(_) => "RequestMode",
        R::roundTripDelayRequest(_) => "RoundTripDelayRequest",
        R::maintenanceLoopRequest(_) => "MaintenanceLoopRequest",
        R::communicationModeRequest(_) => "CommunicationModeRequest",
        R::conferenceRequest(_) => "ConferenceRequest",
        R::multilinkRequest(_) => "MultilinkRequest",
        R::logicalChannelRateRequest(_) => "LogicalChannelRateRequest",
        R::genericRequest(_) => "GenericRequest",
        _ => "UnknownRequest",
    }
}

fn response_name(r: &ResponseMessage) -> &'static str {
    use ResponseMessage as R;
    match r {
        R::nonStandard(_) => "NonStandardResponse",
        R::masterSlaveDeterminationAck(_) => "MasterSlaveDeterminationAck",
        R::masterSlaveDeterminationReject(_) => "MasterSlaveDeterminationReject",
        R::terminalCapabilitySetAck(_) => "TerminalCapabilitySetAck",
        R::terminalCapabilitySetReject(_) => "TerminalCapabilitySetReject",
        R::openLogicalChannelAck(_) => "OpenLogicalChannelAck",
        R::openLogicalChannelReject(_) => "OpenLogicalChannelReject",
        R::closeLogicalChannelAck(_) => "CloseLogicalChannelAck",
        R::requestChannelCloseAck(_) => "RequestChannelCloseAck",
        R::requestChannelCloseReject(_) => "RequestChannelCloseReject",
        R::multiplexEntrySendAck(_) => "MultiplexEntrySendAck",
        R::multiplexEntrySendReject(_) => "MultiplexEntrySendReject",
        R::requestMultiplexEntryAck(_) => "RequestMultiplexEntryAck",
        R::requestMultiplexEntryReject(_) => "RequestMultiplexEntryReject",
        R::requestModeAck(_) => "RequestModeAck",
        R::requestModeReject(_) => "RequestModeReject",
        R::roundTripDelayResponse(_) => "RoundTripDelayResponse",
        R::maintenanceLoopAck(_) => "MaintenanceLoopAck",
        R::maintenanceLoopReject(_) => "MaintenanceLoopReject",
        R::communicationModeResponse(_) => "CommunicationModeResponse",
        R::conferenceResponse(_) => "ConferenceResponse",
        R::multilinkResponse(_) => "MultilinkResponse",
        R::logicalChannelRateAcknowledge(_) => "LogicalChannelRateAcknowledge",
        R::logicalChannelRateReject(_) => "LogicalChannelRateReject",
        R::genericResponse(_) => "GenericResponse",
        _ => "UnknownResponse",
    }
}

fn command_name(c: &CommandMessage) -> &'static str {
    use CommandMessage as C;
    match c {
        C::nonStandard(_) => "NonStandardCommand",
        C::maintenanceLoopOffCommand(_) => "MaintenanceLoopOffCommand",
        C::sendTerminalCapabilitySet(_) => "SendTerminalCapabilitySet",
        C::encryptionCommand(_) => "EncryptionCommand",
        C::flowControlCommand(_) => "FlowControlCommand",
        C::endSessionCommand(_) => "EndSessionCommand",
        C::miscellaneousCommand(_) => "MiscellaneousCommand",
        C::communicationModeCommand(_) => "CommunicationModeCommand",
        C::conferenceCommand(_) => "ConferenceCommand",
        C::h223MultiplexReconfiguration(_) => "H223MultiplexReconfiguration",
        C::newATMVCCommand(_) => "NewATMVCCommand",
        C::mobileMultilinkReconfigurationCommand(_) => "MobileMultilinkReconfigurationCommand",
        C::genericCommand(_) => "GenericCommand",
        _ => "UnknownCommand",
    }
}

fn indication_name(i: &IndicationMessage) -> &'static str {
    use IndicationMessage as I;
    match i {
        I::nonStandard(_) => "NonStandardIndication",
        I::functionNotUnderstood(_) => "FunctionNotUnderstood",
        I::masterSlaveDeterminationRelease(_) => "MasterSlaveDeterminationRelease",
        I::terminalCapabilitySetRelease(_) => "TerminalCapabilitySetRelease",
        I::openLogicalChannelConfirm(_) => "OpenLogicalChannelConfirm",
        I::requestChannelCloseRelease(_) => "RequestChannelCloseRelease",
        I::multiplexEntrySendRelease(_) => "MultiplexEntrySendRelease",
        I::requestMultiplexEntryRelease(_) => "RequestMultiplexEntryRelease",
        I::requestModeRelease(_) => "RequestModeRelease",
        I::miscellaneousIndication(_) => "MiscellaneousIndication",
        I::jitterIndication(_) => "JitterIndication",
        I::h223SkewIndication(_) => "H223SkewIndication",
        I::newATMVCIndication(_) => "NewATMVCIndication",
        I::userInput(_) => "UserInputIndication",
        I::h2250MaximumSkewIndication(_) => "H2250MaximumSkewIndication",
        I::mcLocationIndication(_) => "MCLocationIndication",
        I::conferenceIndication(_) => "ConferenceIndication",
        I::vendorIdentification(_) => "VendorIdentification",
        I::functionNotSupported(_) => "FunctionNotSupported",
        I::multilinkIndication(_) => "MultilinkIndication",
        I::logicalChannelRateRelease(_) => "LogicalChannelRateRelease",
        I::flowControlIndication(_) => "FlowControlIndication",
        I::mobileMultilinkReconfigurationIndication(_) => {
            "MobileMultilinkReconfigurationIndication"
        }
        I::genericIndication(_) => "GenericIndication",
        _ => "UnknownIndication",
    }
}

/// A unicast H.245 transport address (`iPAddress` / `iP6Address`) as a socket address.
pub fn transport_to_socket(a: &H245TransportAddress) -> Option<SocketAddr> {
    match a {
        H245TransportAddress::unicastAddress(UnicastAddress::iPAddress(a)) => {
            let ip: [u8; 4] = a.network.as_ref().try_into().ok()?;
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(ip)),
                a.tsap_identifier,
            ))
        }
        H245TransportAddress::unicastAddress(UnicastAddress::iP6Address(a)) => {
            let ip: [u8; 16] = a.network.as_ref().try_into().ok()?;
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                a.tsap_identifier,
            ))
        }
        _ => None,
    }
}

/// A socket address as a unicast H.245 transport address in its own family.
pub fn socket_to_transport(a: SocketAddr) -> H245TransportAddress {
    H245TransportAddress::unicastAddress(match a {
        SocketAddr::V4(v4) => UnicastAddress::iPAddress(UnicastAddressIPAddress::new(
            OctetString::from(v4.ip().octets().to_vec()),
            v4.port(),
        )),
        SocketAddr::V6(v6) => UnicastAddress::iP6Address(UnicastAddressIP6Address::new(
            OctetString::from(v6.ip().octets().to_vec()),
            v6.port(),
        )),
    })
}

/// An audio capability as a Meta codec with its static RTP payload type (RFC 3551 table 4):
/// G.711 µ-law 0 "PCMU", A-law 8 "PCMA", G.722 9, G.723.1 4 "G723", G.729 / G.729A 18.
/// Other capabilities are `None`.
pub fn audio_to_codec(a: &AudioCapability) -> Option<meta::Codec> {
    use AudioCapability as A;
    let (pt, name, fmtp) = match a {
        A::g711Ulaw64k(_) | A::g711Ulaw56k(_) => (0, "PCMU", None),
        A::g711Alaw64k(_) | A::g711Alaw56k(_) => (8, "PCMA", None),
        A::g722_64k(_) | A::g722_56k(_) | A::g722_48k(_) => (9, "G722", None),
        A::g7231(_) => (4, "G723", None),
        A::g729(_) | A::g729AnnexA(_) => (18, "G729", Some("annexb=no")),
        A::g729wAnnexB(_) | A::g729AnnexAwAnnexB(_) => (18, "G729", None),
        _ => return None,
    };
    Some(meta::Codec {
        payload_type: pt,
        name: name.to_owned(),
        clock_rate: 8000,
        channels: 1,
        fmtp: fmtp.map(str::to_owned),
    })
}

/// A Meta codec as an audio capability with `frames` per packet; `None` for codecs H.245 has
/// no capability for here (matched by name, so dynamic payload types work too).
pub fn codec_to_audio(c: &meta::Codec, frames: u16) -> Option<AudioCapability> {
    use AudioCapability as A;
    let frames = frames.clamp(1, 256);
    let name = c.name.to_ascii_uppercase();
    Some(match (name.as_str(), c.payload_type) {
        ("PCMU", _) => A::g711Ulaw64k(frames),
        ("PCMA", _) => A::g711Alaw64k(frames),
        ("G722", _) => A::g722_64k(frames),
        ("G723", _) => A::g7231(AudioCapabilityG7231::new(frames.min(8), false)),
        ("G729", _) => {
            let annexb = c.fmtp.as_deref().is_none_or(|f| !f.contains("annexb=no"));
            if annexb {
                A::g729AnnexAwAnnexB(frames)
            } else {
                A::g729AnnexA(frames)
            }
        }
        _ => return None,
    })
}

/// What one OpenLogicalChannel says about an audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OlcMedia {
    pub number: u16,
    /// True when the channel carries media from the sender of the OLC (forward parameters
    /// carry the codec), false for a reverse channel (forward dataType nullData).
    pub forward: bool,
    pub session_id: u8,
    pub codec: Option<meta::Codec>,
    /// Where RTP is to be sent (`mediaChannel`), if given.
    pub media_channel: Option<SocketAddr>,
    /// Where RTCP is to be sent (`mediaControlChannel`), if given.
    pub media_control_channel: Option<SocketAddr>,
}

/// Reads an OpenLogicalChannel: its direction, codec and addresses. Non-audio channels have
/// `codec` `None`.
pub fn olc_media(olc: &OpenLogicalChannel) -> OlcMedia {
    let fwd = &olc.forward_logical_channel_parameters;
    let forward_codec = match &fwd.data_type {
        DataType::audioData(a) => Some(audio_to_codec(a)),
        DataType::nullData(_) => None,
        _ => Some(None),
    };
    let (forward, codec, h2250) = match (&forward_codec, &olc.reverse_logical_channel_parameters) {
        (None, Some(rev)) => {
            let codec = match &rev.data_type {
                DataType::audioData(a) => audio_to_codec(a),
                _ => None,
            };
            let h = match &rev.multiplex_parameters {
                Some(RevMux::h2250LogicalChannelParameters(h)) => Some(h),
                _ => None,
            };
            (false, codec, h)
        }
        _ => {
            let h = match &fwd.multiplex_parameters {
                FwdMux::h2250LogicalChannelParameters(h) => Some(h),
                _ => None,
            };
            (true, forward_codec.flatten(), h)
        }
    };
    OlcMedia {
        number: olc.forward_logical_channel_number.0,
        forward,
        session_id: h2250.map_or(0, |h| h.session_id),
        codec,
        media_channel: h2250
            .and_then(|h| h.media_channel.as_ref())
            .and_then(transport_to_socket),
        media_control_channel: h2250
            .and_then(|h| h.media_control_channel.as_ref())
            .and_then(transport_to_socket),
    }
}

fn h2250(
    media_channel: Option<SocketAddr>,
    media_control_channel: Option<SocketAddr>,
) -> H2250LogicalChannelParameters {
    H2250LogicalChannelParameters::new(
        None,
        AUDIO_SESSION,
        None,
        media_channel.map(socket_to_transport),
        None,
        media_control_channel.map(socket_to_transport),
        None,
        Some(false),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )
}

/// A forward audio OpenLogicalChannel (the sender sends `audio`). In a proposal only
/// `mediaControlChannel` (where the receiver sends RTCP reports) is set; in a fastStart answer to
/// a peer's forward proposal, `mediaChannel` is the answerer's RTP receive address (H.323
/// clause 8.1.7.1).
pub fn forward_olc(
    number: u16,
    audio: AudioCapability,
    media_channel: Option<SocketAddr>,
    media_control_channel: Option<SocketAddr>,
) -> OpenLogicalChannel {
    OpenLogicalChannel::new(
        LogicalChannelNumber(number.max(1)),
        OpenLogicalChannelForwardLogicalChannelParameters::new(
            None,
            DataType::audioData(audio),
            FwdMux::h2250LogicalChannelParameters(h2250(media_channel, media_control_channel)),
            None,
            None,
        ),
        None,
        None,
        None,
        None,
    )
}

/// A reverse audio OpenLogicalChannel (the peer sends `audio` to `media_channel`, our RTP
/// receive address; RTCP to `media_control_channel`).
pub fn reverse_olc(
    number: u16,
    audio: AudioCapability,
    media_channel: Option<SocketAddr>,
    media_control_channel: Option<SocketAddr>,
) -> OpenLogicalChannel {
    OpenLogicalChannel::new(
        LogicalChannelNumber(number.max(1)),
        OpenLogicalChannelForwardLogicalChannelParameters::new(
            None,
            DataType::nullData(()),
            FwdMux::none(()),
            None,
            None,
        ),
        Some(OpenLogicalChannelReverseLogicalChannelParameters::new(
            DataType::audioData(audio),
            Some(RevMux::h2250LogicalChannelParameters(h2250(
                media_channel,
                media_control_channel,
            ))),
            None,
            None,
        )),
        None,
        None,
        None,
    )
}

/// Sets the addresses of an OLC's H.225.0 parameters (forward or reverse, whichever carries
/// them), keeping everything else: a fastStart answer echoes the chosen proposal this way.
pub fn set_olc_addresses(
    olc: &mut OpenLogicalChannel,
    media_channel: Option<SocketAddr>,
    media_control_channel: Option<SocketAddr>,
) {
    let h = match (
        &mut olc.forward_logical_channel_parameters.multiplex_parameters,
        &mut olc.reverse_logical_channel_parameters,
    ) {
        (FwdMux::h2250LogicalChannelParameters(h), _) => Some(h),
        (
            _,
            Some(OpenLogicalChannelReverseLogicalChannelParameters {
                multiplex_parameters: Some(RevMux::h2250LogicalChannelParameters(h)),
                ..
            }),
        ) => Some(h),
        _ => None,
    };
    if let Some(h) = h {
        h.media_channel = media_channel.map(socket_to_transport);
        h.media_control_channel = media_control_channel.map(socket_to_transport);
    }
}

/// Encodes an OLC for a fastStart element.
pub fn encode_olc(olc: &OpenLogicalChannel) -> Result<Vec<u8>, h323_asn1::Error> {
    h323_asn1::encode_fast_start_olc(olc)
}

/// A DTMF digit from a UserInputIndication: `alphanumeric` (its first character) or `signal`
/// (with its duration in ms). Returns the RFC 4733 event code and duration.
pub fn user_input_event(u: &UserInputIndication) -> Option<(u8, u16)> {
    match u {
        UserInputIndication::alphanumeric(s) => {
            let c = s.as_bytes().first().copied().map(char::from)?;
            meta::digit_to_event(c).map(|e| (e, 250))
        }
        UserInputIndication::signal(s) => {
            let c = s
                .signal_type
                .as_iso646_bytes()
                .first()
                .copied()
                .map(char::from)?;
            // '!' is hookflash (H.245 UserInputIndication.signal), event 16 in RFC 4733.
            let e = if c == '!' {
                16
            } else {
                meta::digit_to_event(c)?
            };
            Some((e, s.duration.unwrap_or(250)))
        }
        _ => None,
    }
}

/// A UserInputIndication `signal` for an RFC 4733 event (0-15, 16 hookflash).
pub fn user_input_signal(event: u8, duration_ms: u16) -> Option<MultimediaSystemControlMessage> {
    let c = if event == 16 {
        '!'
    } else {
        meta::event_to_digit(event)?
    };
    let mut buf = [0u8; 4];
    let ty = Ia5String::from_iso646_bytes(c.encode_utf8(&mut buf).as_bytes()).ok()?;
    let signal =
        UserInputIndicationSignal::new(ty, Some(duration_ms.max(1)), None, None, None, None, None);
    Some(MultimediaSystemControlMessage::indication(
        IndicationMessage::userInput(UserInputIndication::signal(signal)),
    ))
}

/// A UserInputIndication `alphanumeric` with one digit (what version 1 endpoints understand).
pub fn user_input_alphanumeric(event: u8) -> Option<MultimediaSystemControlMessage> {
    let c = meta::event_to_digit(event)?;
    let mut buf = [0u8; 4];
    let s = GeneralString::from_bytes(c.encode_utf8(&mut buf).as_bytes()).ok()?;
    Some(MultimediaSystemControlMessage::indication(
        IndicationMessage::userInput(UserInputIndication::alphanumeric(s)),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn codec(pt: u8, name: &str) -> meta::Codec {
        meta::Codec {
            payload_type: pt,
            name: name.to_owned(),
            clock_rate: 8000,
            channels: 1,
            fmtp: None,
        }
    }

    #[test]
    fn codecs_round_trip() {
        for (pt, name) in [
            (0, "PCMU"),
            (8, "PCMA"),
            (9, "G722"),
            (4, "G723"),
            (18, "G729"),
        ] {
            let a = codec_to_audio(&codec(pt, name), 20).unwrap();
            let back = audio_to_codec(&a).unwrap();
            assert_eq!((back.payload_type, back.name.as_str()), (pt, name));
        }
        assert!(codec_to_audio(&codec(97, "opus"), 20).is_none());
    }

    #[test]
    fn olcs_encode_and_read_back() {
        let rtp: SocketAddr = "[2001:db8::5]:40000".parse().unwrap();
        let rtcp: SocketAddr = "[2001:db8::5]:40001".parse().unwrap();
        let a = codec_to_audio(&codec(8, "PCMA"), 20).unwrap();
        let f = forward_olc(1, a.clone(), None, Some(rtcp));
        let r = reverse_olc(2, a, Some(rtp), Some(rtcp));
        for (olc, forward) in [(f, true), (r, false)] {
            let bytes = encode_olc(&olc).unwrap();
            let back = h323_asn1::decode_fast_start_olc(&bytes).unwrap();
            let m = olc_media(&back);
            assert_eq!(m.forward, forward);
            assert_eq!(m.codec.unwrap().payload_type, 8);
            assert_eq!(m.media_control_channel, Some(rtcp));
            assert_eq!(m.media_channel, (!forward).then_some(rtp));
        }
    }

    #[test]
    fn user_input_digits() {
        for e in 0..=16u8 {
            let m = user_input_signal(e, 100).unwrap();
            let MultimediaSystemControlMessage::indication(IndicationMessage::userInput(u)) = &m
            else {
                panic!()
            };
            assert_eq!(user_input_event(u), Some((e, 100)));
            let bytes = h323_asn1::encode_h245(&m).unwrap();
            assert_eq!(h323_asn1::decode_h245(&bytes).unwrap(), m);
            assert_eq!(message_name(&m), "UserInputIndication");
        }
        let m = user_input_alphanumeric(11).unwrap();
        let MultimediaSystemControlMessage::indication(IndicationMessage::userInput(u)) = &m else {
            panic!()
        };
        assert_eq!(user_input_event(u), Some((11, 250)));
    }
}
