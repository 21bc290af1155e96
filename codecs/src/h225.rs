//! H.225.0 call signalling glue: the H323-UserInformation PDU inside a Q.931 message's
//! User-user IE (H.225.0 clause 7.2.2), the names of its UUIE bodies, fastStart, H.245
//! tunnelling and addresses, and minimal UUIE values for the messages a gateway sends.
//!
//! The ASN.1 types and their aligned PER come from the `h323-asn1` crate; this module never does
//! I/O and never panics on input. Every count read from a PDU is capped by a named `MAX_*`
//! constant before anything is allocated for it.

use crate::q931;
use h323_asn1::h225::{
    AlertingUUIE, CallIdentifier, CallProceedingUUIE, CallType, ConferenceIdentifier, ConnectUUIE,
    EndpointType, GatewayInfo, GloballyUniqueID, H221NonStandard, H323UUPDUH323MessageBody,
    H323UserInformation, ProtocolIdentifier, ReleaseCompleteReason, ReleaseCompleteUUIE, SetupUUIE,
    SetupUUIEConferenceGoal, StatusUUIE, TransportAddress, TransportAddressIp6Address,
    TransportAddressIpAddress, VendorIdentifier, H323UUPDU,
};
use h323_asn1::rasn::types::{FixedOctetString, ObjectIdentifier, OctetString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use h323_asn1::h225 as asn;

/// fastStart elements accepted in one message. An endpoint offers one OLC per codec and
/// direction; 32 covers 16 codecs both ways.
pub const MAX_FAST_START: usize = 32;
/// Tunnelled H.245 PDUs (`h245Control`) accepted in one message.
pub const MAX_H245_CONTROL: usize = 16;
/// Aliases read from `sourceAddress` / `destinationAddress`.
pub const MAX_ALIASES: usize = 16;

/// H.225.0 version 4 (`itu-t(0) recommendation(0) h(8) 2250 version(0) 4`), what this gateway
/// announces in `protocolIdentifier` (H.225.0 clause 7.6).
pub const PROTOCOL_IDENTIFIER_V4: &[u32] = &[0, 0, 8, 2250, 0, 4];

/// Why the H.225.0 PDU of a Q.931 message is unusable. Each maps to the Q.931 cause a Release
/// Complete carries ([`H225Error::cause`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum H225Error {
    #[error("no User-user information element")]
    NoUserUser,
    #[error("User-user protocol discriminator {0:#04x}, expected 0x05 (X.208/X.209)")]
    BadDiscriminator(u8),
    #[error("{0}")]
    Asn1(#[from] h323_asn1::Error),
    #[error("{what}: {count} elements, more than {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
}

impl H225Error {
    /// The Q.931 cause for a Release Complete (Q.931 clause 5.8): 96 when the User-user IE is
    /// missing, 100 when its contents are invalid.
    pub fn cause(&self) -> q931::Cause {
        match self {
            H225Error::NoUserUser => q931::Cause::new(96),
            _ => q931::Cause::new(100),
        }
    }
}

/// Decodes the H323-UserInformation of a Q.931 message.
pub fn user_information(msg: &q931::Message) -> Result<H323UserInformation, H225Error> {
    let uu = msg.user_user().ok_or(H225Error::NoUserUser)?;
    decode_user_user(uu)
}

/// Decodes the H323-UserInformation of a User-user IE.
pub fn decode_user_user(uu: &q931::UserUser) -> Result<H323UserInformation, H225Error> {
    if uu.protocol_discriminator != q931::USER_USER_X208 {
        return Err(H225Error::BadDiscriminator(uu.protocol_discriminator));
    }
    let info = h323_asn1::decode_h323_user_information(&uu.data)?;
    check_counts(&info)?;
    Ok(info)
}

fn check_counts(info: &H323UserInformation) -> Result<(), H225Error> {
    let pdu = &info.h323_uu_pdu;
    let limit = |what, count, limit| {
        if count > limit {
            Err(H225Error::TooMany { what, count, limit })
        } else {
            Ok(())
        }
    };
    limit(
        "fastStart",
        fast_start(pdu).map_or(0, <[OctetString]>::len),
        MAX_FAST_START,
    )?;
    limit(
        "h245Control",
        pdu.h245_control.as_ref().map_or(0, Vec::len),
        MAX_H245_CONTROL,
    )
}

/// Encodes an H323-UserInformation for a User-user IE.
pub fn encode(info: &H323UserInformation) -> Result<Vec<u8>, H225Error> {
    Ok(h323_asn1::encode_h323_user_information(info)?)
}

/// The H.225.0 name of a UUIE body, for summaries: "Setup", "CallProceeding", ...
pub fn body_name(body: &H323UUPDUH323MessageBody) -> &'static str {
    use H323UUPDUH323MessageBody as B;
    match body {
        B::setup(_) => "Setup",
        B::callProceeding(_) => "CallProceeding",
        B::connect(_) => "Connect",
        B::alerting(_) => "Alerting",
        B::information(_) => "Information",
        B::releaseComplete(_) => "ReleaseComplete",
        B::facility(_) => "Facility",
        B::progress(_) => "Progress",
        B::empty(_) => "Empty",
        B::status(_) => "Status",
        B::statusInquiry(_) => "StatusInquiry",
        B::setupAcknowledge(_) => "SetupAcknowledge",
        B::notify(_) => "Notify",
        _ => "UnknownBody",
    }
}

/// The fastStart elements of the message body, if it carries any (each an encoded H.245
/// OpenLogicalChannel).
pub fn fast_start(pdu: &H323UUPDU) -> Option<&[OctetString]> {
    use H323UUPDUH323MessageBody as B;
    let fs = match &pdu.h323_message_body {
        B::setup(b) => b.fast_start.as_ref(),
        B::callProceeding(b) => b.fast_start.as_ref(),
        B::connect(b) => b.fast_start.as_ref(),
        B::alerting(b) => b.fast_start.as_ref(),
        B::facility(b) => b.fast_start.as_ref(),
        B::progress(b) => b.fast_start.as_ref(),
        _ => None,
    };
    fs.map(Vec::as_slice)
}

/// Decodes fastStart elements as OpenLogicalChannels.
pub fn fast_start_olcs(
    elements: &[OctetString],
) -> Result<Vec<h323_asn1::h245::OpenLogicalChannel>, H225Error> {
    if elements.len() > MAX_FAST_START {
        return Err(H225Error::TooMany {
            what: "fastStart",
            count: elements.len(),
            limit: MAX_FAST_START,
        });
    }
    elements
        .iter()
        .map(|e| h323_asn1::decode_fast_start_olc(e).map_err(H225Error::from))
        .collect()
}

/// The `h245Address` of the message body (where to open a separate H.245 connection).
pub fn h245_address(pdu: &H323UUPDU) -> Option<SocketAddr> {
    use H323UUPDUH323MessageBody as B;
    let a = match &pdu.h323_message_body {
        B::setup(b) => b.h245_address.as_ref(),
        B::callProceeding(b) => b.h245_address.as_ref(),
        B::connect(b) => b.h245_address.as_ref(),
        B::alerting(b) => b.h245_address.as_ref(),
        B::facility(b) => b.h245_address.as_ref(),
        B::progress(b) => b.h245_address.as_ref(),
        _ => None,
    };
    a.and_then(transport_to_socket)
}

/// Whether the sender tunnels H.245 in H.225.0 (`h245Tunneling`; absent in version 1 PDUs).
pub fn h245_tunnelling(pdu: &H323UUPDU) -> bool {
    pdu.h245_tunneling == Some(true)
}

/// The tunnelled H.245 PDUs (`h245Control`), each an encoded MultimediaSystemControlMessage.
pub fn h245_control(pdu: &H323UUPDU) -> &[OctetString] {
    pdu.h245_control.as_deref().unwrap_or(&[])
}

/// The `callIdentifier` GUID of the message body, where it has one.
pub fn call_identifier(pdu: &H323UUPDU) -> Option<[u8; 16]> {
    use H323UUPDUH323MessageBody as B;
    let id = match &pdu.h323_message_body {
        B::setup(b) => b.call_identifier.as_ref(),
        B::callProceeding(b) => b.call_identifier.as_ref(),
        B::connect(b) => b.call_identifier.as_ref(),
        B::alerting(b) => b.call_identifier.as_ref(),
        B::releaseComplete(b) => b.call_identifier.as_ref(),
        B::facility(b) => b.call_identifier.as_ref(),
        B::progress(b) => Some(&b.call_identifier),
        _ => None,
    };
    id.map(|c| guid_bytes(&c.guid))
}

/// The 16 octets of a GUID.
pub fn guid_bytes(g: &GloballyUniqueID) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(g.0.as_ref());
    out
}

/// A GUID from 16 octets.
pub fn guid(bytes: [u8; 16]) -> GloballyUniqueID {
    GloballyUniqueID(FixedOctetString::new(bytes))
}

/// An H.225.0 transport address as a socket address: `ipAddress` and `ip6Address` only
/// (`ipSourceRoute`, IPX, NetBIOS, NSAP and non-standard addresses are `None`).
pub fn transport_to_socket(a: &TransportAddress) -> Option<SocketAddr> {
    match a {
        TransportAddress::ipAddress(a) => {
            let ip: [u8; 4] = a.ip.as_ref().try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), a.port))
        }
        TransportAddress::ip6Address(a) => {
            let ip: [u8; 16] = a.ip.as_ref().try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), a.port))
        }
        _ => None,
    }
}

/// A socket address as an H.225.0 transport address in its own family.
pub fn socket_to_transport(a: SocketAddr) -> TransportAddress {
    match a {
        SocketAddr::V4(v4) => TransportAddress::ipAddress(TransportAddressIpAddress::new(
            OctetString::from(v4.ip().octets().to_vec()),
            v4.port(),
        )),
        SocketAddr::V6(v6) => TransportAddress::ip6Address(TransportAddressIp6Address::new(
            OctetString::from(v6.ip().octets().to_vec()),
            v6.port(),
        )),
    }
}

/// `protocolIdentifier` for version 4.
pub fn protocol_identifier() -> ProtocolIdentifier {
    ProtocolIdentifier(ObjectIdentifier::new_unchecked(std::borrow::Cow::Borrowed(
        PROTOCOL_IDENTIFIER_V4,
    )))
}

/// This gateway as an H.323 endpoint: a gateway with a vendor identifier that names no
/// product or version (nothing about the implementation leaks).
pub fn endpoint_type() -> EndpointType {
    EndpointType::new(
        None,
        Some(VendorIdentifier::new(
            H221NonStandard::new(0, 0, 0),
            None,
            None,
            None,
        )),
        None,
        Some(GatewayInfo::new(None, None)),
        None,
        None,
        false,
        false,
        None,
        None,
    )
}

/// A Setup UUIE with the mandatory version 2+ fields set (H.225.0 clause 7.3.1): no h245Address,
/// no aliases, no fastStart yet.
pub fn setup_uuie(conference_id: [u8; 16], call_id: [u8; 16]) -> SetupUUIE {
    SetupUUIE::new(
        protocol_identifier(),
        None,
        None,
        endpoint_type(),
        None,
        None,
        None,
        None,
        false,
        ConferenceIdentifier(guid(conference_id)),
        SetupUUIEConferenceGoal::create(()),
        None,
        CallType::pointToPoint(()),
        None,
        None,
        Some(CallIdentifier::new(guid(call_id))),
        None,
        None,
        None,
        None,
        Some(false),
        Some(false),
        None,
        Some(false),
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
    )
}

/// A Call Proceeding UUIE.
pub fn call_proceeding_uuie(call_id: [u8; 16]) -> CallProceedingUUIE {
    CallProceedingUUIE::new(
        protocol_identifier(),
        endpoint_type(),
        None,
        Some(CallIdentifier::new(guid(call_id))),
        None,
        None,
        None,
        None,
        Some(false),
        Some(false),
        None,
        None,
    )
}

/// An Alerting UUIE.
pub fn alerting_uuie(call_id: [u8; 16]) -> AlertingUUIE {
    AlertingUUIE::new(
        protocol_identifier(),
        endpoint_type(),
        None,
        Some(CallIdentifier::new(guid(call_id))),
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
        None,
        None,
    )
}

/// A Connect UUIE.
pub fn connect_uuie(conference_id: [u8; 16], call_id: [u8; 16]) -> ConnectUUIE {
    ConnectUUIE::new(
        protocol_identifier(),
        None,
        endpoint_type(),
        ConferenceIdentifier(guid(conference_id)),
        Some(CallIdentifier::new(guid(call_id))),
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
        None,
        None,
        None,
    )
}

/// A Release Complete UUIE.
/// A Status body (H.225.0 clause 7.3.x): the call's identifier.
pub fn status_uuie(call_id: [u8; 16]) -> StatusUUIE {
    StatusUUIE::new(
        protocol_identifier(),
        CallIdentifier::new(guid(call_id)),
        None,
        None,
    )
}

pub fn release_complete_uuie(
    call_id: Option<[u8; 16]>,
    reason: Option<ReleaseCompleteReason>,
) -> ReleaseCompleteUUIE {
    ReleaseCompleteUUIE::new(
        protocol_identifier(),
        reason,
        call_id.map(|c| CallIdentifier::new(guid(c))),
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
    )
}

/// An H323-UserInformation around a body, with `h245Tunneling` set as given (mandatory from
/// version 2, H.225.0 clause 7.6).
pub fn user_information_for(
    body: H323UUPDUH323MessageBody,
    tunnelling: bool,
) -> H323UserInformation {
    H323UserInformation::new(
        H323UUPDU::new(
            body,
            None,
            None,
            Some(tunnelling),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ),
        None,
    )
}

/// The Q.850 cause for a ReleaseCompleteReason (H.225.0 table 5, clause 7.2.2.8: the mapping a
/// gateway applies between H.225.0 reasons and Q.931 causes).
pub fn reason_to_cause(reason: &ReleaseCompleteReason) -> u8 {
    use ReleaseCompleteReason as R;
    match reason {
        R::noBandwidth(_) => 34,
        R::gatekeeperResources(_) => 47,
        R::unreachableDestination(_) => 3,
        R::destinationRejection(_) => 16,
        R::invalidRevision(_) => 88,
        R::noPermission(_) => 111,
        R::unreachableGatekeeper(_) => 38,
        R::gatewayResources(_) => 42,
        R::badFormatAddress(_) => 28,
        R::adaptiveBusy(_) => 41,
        R::inConf(_) => 17,
        R::undefinedReason(_) => 31,
        R::facilityCallDeflection(_) => 16,
        R::securityDenied(_) => 31,
        R::calledPartyNotRegistered(_) => 20,
        R::callerNotRegistered(_) => 31,
        R::newConnectionNeeded(_) => 47,
        R::nonStandardReason(_) => 127,
        R::replaceWithConferenceInvite(_) => 31,
        R::genericDataReason(_) => 31,
        R::neededFeatureNotSupported(_) => 31,
        R::tunnelledSignallingRejected(_) => 127,
        R::invalidCID(_) => 31,
        R::securityError(_) => 31,
        R::hopCountExceeded(_) => 31,
        _ => 31,
    }
}

/// The ReleaseCompleteReason for a Q.850 cause (H.225.0 table 5, read the other way; causes the
/// table does not name map to `undefinedReason`).
pub fn cause_to_reason(cause: u8) -> ReleaseCompleteReason {
    use ReleaseCompleteReason as R;
    match cause {
        34 => R::noBandwidth(()),
        47 => R::gatekeeperResources(()),
        1..=3 => R::unreachableDestination(()),
        16 => R::destinationRejection(()),
        88 => R::invalidRevision(()),
        38 => R::unreachableGatekeeper(()),
        42 => R::gatewayResources(()),
        28 => R::badFormatAddress(()),
        41 => R::adaptiveBusy(()),
        17 => R::inConf(()),
        20 => R::calledPartyNotRegistered(()),
        _ => R::undefinedReason(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn transport_addresses_round_trip() {
        for a in ["192.0.2.1:1720", "[2001:db8::1]:1720"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(transport_to_socket(&socket_to_transport(a)), Some(a));
        }
    }

    #[test]
    fn built_uuies_encode_and_decode() {
        let bodies = [
            H323UUPDUH323MessageBody::setup(setup_uuie([1; 16], [2; 16])),
            H323UUPDUH323MessageBody::callProceeding(call_proceeding_uuie([2; 16])),
            H323UUPDUH323MessageBody::alerting(alerting_uuie([2; 16])),
            H323UUPDUH323MessageBody::connect(connect_uuie([1; 16], [2; 16])),
            H323UUPDUH323MessageBody::releaseComplete(release_complete_uuie(
                Some([2; 16]),
                Some(cause_to_reason(17)),
            )),
        ];
        for b in bodies {
            let info = user_information_for(b, true);
            let bytes = encode(&info).unwrap();
            let back = h323_asn1::decode_h323_user_information(&bytes).unwrap();
            assert_eq!(back, info);
            assert!(h245_tunnelling(&back.h323_uu_pdu));
            assert_eq!(call_identifier(&back.h323_uu_pdu), Some([2; 16]));
        }
    }

    #[test]
    fn reasons_map_to_causes_and_back() {
        for c in [34u8, 47, 3, 16, 88, 38, 42, 28, 41, 17, 20] {
            assert_eq!(reason_to_cause(&cause_to_reason(c)), c);
        }
        assert_eq!(reason_to_cause(&cause_to_reason(99)), 31);
    }

    #[test]
    fn missing_or_foreign_user_user_is_an_error() {
        let m = q931::Message::new(q931::MessageType::Setup, q931::CallRef::new(1));
        assert!(matches!(user_information(&m), Err(H225Error::NoUserUser)));
        assert_eq!(user_information(&m).unwrap_err().cause().value(), 96);
        let uu = q931::UserUser {
            protocol_discriminator: 4,
            data: vec![0],
        };
        assert!(matches!(
            decode_user_user(&uu),
            Err(H225Error::BadDiscriminator(4))
        ));
    }
}
