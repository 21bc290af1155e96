//! Q.931 tests: per-IE byte tables, message round trips, real captures, errors, proptest.

use super::*;
use crate::tpkt::{self, TpktFramer};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A message with header 08 02 12 34 05 (Setup, call ref 0x1234) followed by `ies`.
fn with_header(ies: &[u8]) -> Vec<u8> {
    let mut m = vec![0x08, 0x02, 0x12, 0x34, 0x05];
    m.extend_from_slice(ies);
    m
}

fn round_trip(bytes: &[u8]) -> Message {
    let m = Message::decode(bytes).unwrap_or_else(|e| panic!("{e} in {bytes:02x?}"));
    // Encode after a 0xa5 prefix: nothing before the message may change.
    let mut out = vec![0xa5; 3];
    m.encode(&mut out).unwrap();
    assert_eq!(&out[..3], &[0xa5; 3]);
    assert_eq!(&out[3..], bytes, "re-encoding of {m:?}");
    m
}

#[test]
fn header_call_reference_forms() {
    let cases: &[(&str, CallRef, MessageType)] = &[
        ("08 02 77 f4 05", CallRef::new(0x77f4), MessageType::Setup),
        (
            "08 02 f7 f4 02",
            CallRef::new(0x77f4).reply(),
            MessageType::CallProceeding,
        ),
        (
            "08 01 81 5a",
            CallRef {
                value: 1,
                from_destination: true,
                len: 1,
            },
            MessageType::ReleaseComplete,
        ),
        ("08 00 62", CallRef::DUMMY, MessageType::Facility),
        ("08 02 00 00 7d", CallRef::new(0), MessageType::Status),
        (
            "08 02 7f ff 46",
            CallRef::new(0x7fff),
            MessageType::Unknown(0x46),
        ),
        ("08 00 85", CallRef::DUMMY, MessageType::Unknown(0x85)),
    ];
    for (h, call_ref, mt) in cases {
        let m = round_trip(&hex(h));
        assert_eq!(m.call_ref, *call_ref, "{h}");
        assert_eq!(m.msg_type, *mt, "{h}");
        assert!(m.ies.is_empty());
    }
}

#[test]
fn message_types_table() {
    let cases: &[(u8, MessageType)] = &[
        (0x01, MessageType::Alerting),
        (0x02, MessageType::CallProceeding),
        (0x03, MessageType::Progress),
        (0x05, MessageType::Setup),
        (0x07, MessageType::Connect),
        (0x0d, MessageType::SetupAcknowledge),
        (0x0f, MessageType::ConnectAcknowledge),
        (0x4d, MessageType::Release),
        (0x5a, MessageType::ReleaseComplete),
        (0x62, MessageType::Facility),
        (0x6e, MessageType::Notify),
        (0x75, MessageType::StatusEnquiry),
        (0x7b, MessageType::Information),
        (0x7d, MessageType::Status),
        (0x25, MessageType::Unknown(0x25)), // Suspend
    ];
    for (v, mt) in cases {
        assert_eq!(MessageType::from(*v), *mt);
        assert_eq!(u8::from(*mt), *v);
        let m = round_trip(&[0x08, 0x02, 0x00, 0x01, *v]);
        assert_eq!(m.msg_type, *mt);
    }
    assert_eq!(MessageType::ReleaseComplete.name(), "Release Complete");
}

#[test]
fn header_errors() {
    let cases: &[(&str, Q931Error)] = &[
        ("", Q931Error::new(0, Q931ErrorKind::TooShort)),
        ("08", Q931Error::new(1, Q931ErrorKind::TooShort)),
        ("08 02 00", Q931Error::new(2, Q931ErrorKind::TooShort)),
        ("08 02 00 01", Q931Error::new(4, Q931ErrorKind::TooShort)),
        ("08 00", Q931Error::new(2, Q931ErrorKind::TooShort)),
        (
            "09 02 00 01 05",
            Q931Error::new(0, Q931ErrorKind::BadProtocolDiscriminator(9)),
        ),
        (
            "08 03 00 00 01 05",
            Q931Error::new(1, Q931ErrorKind::BadCallRefLen(3)),
        ),
        (
            "08 12 00 01 05",
            Q931Error::new(1, Q931ErrorKind::BadCallRefLen(0x12)),
        ),
    ];
    for (h, err) in cases {
        assert_eq!(Message::decode(&hex(h)), Err(*err), "{h}");
    }
    assert_eq!(
        Q931Error::new(0, Q931ErrorKind::BadProtocolDiscriminator(9)).cause(),
        None
    );
}

#[test]
fn ie_framing_errors() {
    let cases: &[(&str, Q931Error)] = &[
        // Identifier without length.
        (
            "04",
            Q931Error::new(5, Q931ErrorKind::Truncated("information element length")),
        ),
        // Length past the end.
        (
            "04 03 80 90",
            Q931Error::new(5, Q931ErrorKind::Truncated("information element contents")),
        ),
        // User-user: the length is two octets in H.225.0.
        (
            "7e 00",
            Q931Error::new(5, Q931ErrorKind::Truncated("user-user length")),
        ),
        (
            "7e 00 05 05 00",
            Q931Error::new(5, Q931ErrorKind::Truncated("information element contents")),
        ),
        (
            "7e 00 00",
            Q931Error::new(5, Q931ErrorKind::ZeroLengthUserUser),
        ),
        (
            "a1 7e 80 01 05",
            Q931Error::new(
                6,
                Q931ErrorKind::IeTooLong {
                    ie: 0x7e,
                    len: 0x8001,
                    limit: MAX_USER_USER_LEN,
                },
            ),
        ),
    ];
    for (h, err) in cases {
        let m = with_header(&hex(h));
        assert_eq!(Message::decode(&m), Err(*err), "{h}");
        assert!(err.cause().is_some());
    }
    let many: Vec<u8> = std::iter::repeat_n(0xa1, MAX_IES + 1).collect();
    assert_eq!(
        Message::decode(&with_header(&many)),
        Err(Q931Error::new(5 + MAX_IES, Q931ErrorKind::TooManyIes))
    );
    assert!(Message::decode(&with_header(&many[..MAX_IES])).is_ok());
}

/// One IE's bytes (identifier, length, contents) and what it must decode to.
fn ie_table() -> Vec<(&'static str, Ie)> {
    vec![
        // Single-octet IEs (Q.931 clause 4.5.1).
        ("a1", Ie::SendingComplete),
        ("a0", Ie::MoreData),
        ("b3", Ie::CongestionLevel(3)),
        ("d1", Ie::RepeatIndicator(1)),
        ("a7", Ie::SingleOctet(0xa7)),
        ("86", Ie::SingleOctet(0x86)),
        (
            "04 03 88 90 a5",
            Ie::BearerCapability(BearerCapability::unrestricted_digital()),
        ),
        (
            "04 03 80 90 a5",
            Ie::BearerCapability(BearerCapability {
                transfer_capability: TransferCapability::Speech,
                ..BearerCapability::speech(Layer1Protocol::H221H242)
            }),
        ),
        (
            "04 03 90 90 a2",
            Ie::BearerCapability(BearerCapability {
                transfer_capability: TransferCapability::Audio3k1Hz,
                ..BearerCapability::speech(Layer1Protocol::G711Ulaw)
            }),
        ),
        (
            "04 03 88 c0 a5",
            Ie::BearerCapability(BearerCapability {
                transfer_mode: TransferMode::Packet,
                transfer_rate: TransferRate::PacketMode,
                ..BearerCapability::unrestricted_digital()
            }),
        ),
        (
            "04 02 88 90",
            Ie::BearerCapability(BearerCapability {
                layer1: None,
                ..BearerCapability::unrestricted_digital()
            }),
        ),
        (
            "04 04 88 98 86 a5",
            Ie::BearerCapability(BearerCapability {
                transfer_rate: TransferRate::Multirate,
                rate_multiplier: Some(6),
                ..BearerCapability::unrestricted_digital()
            }),
        ),
        (
            "04 06 88 90 21 8f c2 e6",
            Ie::BearerCapability(BearerCapability {
                layer1: Some(Layer1Protocol::V110),
                layer1_octets: vec![0x8f],
                rest: vec![0xc2, 0xe6],
                ..BearerCapability::unrestricted_digital()
            }),
        ),
        // Multirate with octet 4's bit 8 clear before octet 4.1 (as some H.225.0 stacks send).
        (
            "04 04 88 18 86 a5",
            Ie::BearerCapability(BearerCapability {
                transfer_rate: TransferRate::Multirate,
                octet_4_open: true,
                rate_multiplier: Some(6),
                ..BearerCapability::unrestricted_digital()
            }),
        ),
        // 384 kbit/s (H0), 3.1 kHz audio with A-law.
        (
            "04 03 88 93 a5",
            Ie::BearerCapability(BearerCapability {
                transfer_rate: TransferRate::Kbit384,
                ..BearerCapability::unrestricted_digital()
            }),
        ),
        (
            "04 03 90 90 a3",
            Ie::BearerCapability(BearerCapability {
                transfer_capability: TransferCapability::Audio3k1Hz,
                ..BearerCapability::speech(Layer1Protocol::G711Alaw)
            }),
        ),
        // Octet 3a (out-band negotiation in earlier editions), octet 4 open without 4.1.
        (
            "04 04 08 c0 90 a2",
            Ie::BearerCapability(BearerCapability {
                octet_3a: Some(0xc0),
                ..BearerCapability {
                    transfer_capability: TransferCapability::UnrestrictedDigital,
                    ..BearerCapability::speech(Layer1Protocol::G711Ulaw)
                }
            }),
        ),
        (
            "04 03 80 10 a2",
            Ie::BearerCapability(BearerCapability {
                octet_4_open: true,
                ..BearerCapability::speech(Layer1Protocol::G711Ulaw)
            }),
        ),
        // Video, H.221/H.242 with octet 5 open and a 5a.
        (
            "04 04 98 90 25 80",
            Ie::BearerCapability(BearerCapability {
                transfer_capability: TransferCapability::Video,
                layer1_octets: vec![0x80],
                ..BearerCapability::speech(Layer1Protocol::H221H242)
            }),
        ),
        ("08 02 80 90", Ie::Cause(Cause::new(16))),
        (
            "08 02 81 91",
            Ie::Cause(Cause {
                location: Location::PrivateNetworkLocalUser,
                ..Cause::new(17)
            }),
        ),
        (
            "08 04 02 80 ff 12",
            Ie::Cause(Cause {
                location: Location::PublicNetworkLocalUser,
                recommendation: Some(0),
                diagnostics: vec![0x12],
                ..Cause::new(127)
            }),
        ),
        ("14 01 0a", Ie::CallState(CallState::new(CallState::ACTIVE))),
        (
            "14 01 c0",
            Ie::CallState(CallState {
                coding_standard: CodingStandard::Network,
                state: 0,
            }),
        ),
        ("18 01 89", Ie::ChannelIdentification(vec![0x89])),
        (
            "1e 02 81 88",
            Ie::ProgressIndicator(ProgressIndicator {
                coding_standard: CodingStandard::Itu,
                location: Location::PrivateNetworkLocalUser,
                description: ProgressDescription::InbandInfoAvailable,
            }),
        ),
        (
            "27 01 81",
            Ie::NotificationIndicator(NotificationIndicator(1)),
        ),
        ("28 05 41 6c 69 63 65", Ie::Display("Alice".into())),
        ("28 06 c3 a9 6c c3 a8 6e", Ie::Display("élèn".into())),
        ("28 00", Ie::Display(String::new())),
        ("2c 03 31 2a 23", Ie::Keypad("1*#".into())),
        ("34 01 01", Ie::Signal(Signal::RING_BACK_TONE_ON)),
        (
            "6c 04 01 80 31 37",
            Ie::CallingPartyNumber(PartyNumber {
                presentation: Some(PresentationScreening {
                    presentation: Presentation::Allowed,
                    screening: Screening::UserProvidedNotScreened,
                }),
                ..PartyNumber::e164("17")
            }),
        ),
        (
            "6c 05 21 a3 35 35 35",
            Ie::CallingPartyNumber(PartyNumber {
                type_of_number: TypeOfNumber::National,
                presentation: Some(PresentationScreening {
                    presentation: Presentation::Restricted,
                    screening: Screening::NetworkProvided,
                }),
                ..PartyNumber::e164("555")
            }),
        ),
        (
            "70 08 c1 39 32 34 36 35 32 36",
            Ie::CalledPartyNumber(PartyNumber {
                type_of_number: TypeOfNumber::Subscriber,
                ..PartyNumber::e164("9246526")
            }),
        ),
        (
            "70 03 89 31 30",
            Ie::CalledPartyNumber(PartyNumber {
                numbering_plan: NumberingPlan::Private,
                ..PartyNumber::e164("10")
            }),
        ),
        (
            "70 01 80",
            Ie::CalledPartyNumber(PartyNumber {
                numbering_plan: NumberingPlan::Unspecified,
                ..PartyNumber::e164("")
            }),
        ),
        (
            "7e 00 03 05 20 a8",
            Ie::UserUser(UserUser::h225(vec![0x20, 0xa8])),
        ),
        ("7e 00 01 05", Ie::UserUser(UserUser::h225(vec![]))),
        (
            "7e 00 02 04 01",
            Ie::UserUser(UserUser {
                protocol_discriminator: 4,
                data: vec![1],
            }),
        ),
        // Not typed: kept raw.
        ("1c 03 91 a1 00", raw(0, 0x1c, "91a100")),
        ("4c 03 81 31 32", raw(0, 0x4c, "813132")),
        ("00 00", raw(0, 0x00, "")),
        // Typed identifiers whose contents are not in a form we type exactly: raw.
        ("04 01 80", raw(0, 0x04, "80")), // bearer: octet 4 missing
        ("04 02 00 90", raw(0, 0x04, "0090")), // bearer: octet 3a, octet 4 missing
        ("04 04 88 98 06 a5", raw(0, 0x04, "889806a5")), // octet 4.1 without bit 8
        ("04 03 80 90 25", raw(0, 0x04, "809025")), // octet 5 announces 5a, none follows
        ("04 02 88 98", raw(0, 0x04, "8898")), // multirate without octet 4.1
        ("08 01 80", raw(0, 0x08, "80")), // cause: no value
        ("08 02 90 90", raw(0, 0x08, "9090")), // cause: spare bit set
        ("08 02 80 10", raw(0, 0x08, "8010")), // cause: extension bit clear
        ("14 02 0a 00", raw(0, 0x14, "0a00")),
        ("1e 01 81", raw(0, 0x1e, "81")),
        ("27 01 01", raw(0, 0x27, "01")),
        ("28 02 ff fe", raw(0, 0x28, "fffe")), // display not UTF-8 (Latin-1)
        ("2c 01 b1", raw(0, 0x2c, "b1")),
        ("34 00", raw(0, 0x34, "")),
        ("6c 00", raw(0, 0x6c, "")),
        ("6c 02 01 31", raw(0, 0x6c, "0131")), // octet 3a without bit 8
        ("6c 03 01 9c 31", raw(0, 0x6c, "019c31")), // octet 3a spare bits
        ("70 02 81 b1", raw(0, 0x70, "81b1")), // digit with bit 8 set
    ]
}

fn raw(codeset: u8, id: u8, data: &str) -> Ie {
    Ie::Raw(RawIe {
        codeset,
        id,
        data: hex(data),
    })
}

#[test]
fn information_elements_table() {
    for (h, want) in ie_table() {
        let bytes = with_header(&hex(h));
        let m = round_trip(&bytes);
        assert_eq!(m.ies, vec![want.clone()], "{h}");
        // And from the typed value alone, appended after 0xa5 filler.
        let mut out = vec![0xa5; 2];
        Message {
            ies: vec![want],
            ..m
        }
        .encode(&mut out)
        .unwrap();
        assert_eq!(&out[2..], &bytes[..], "{h}");
    }
}

#[test]
fn single_octet_ies_are_listed_by_id() {
    let m = round_trip(&with_header(&hex("a1 b3")));
    assert_eq!(m.ies[0].id(), IeId::SendingComplete);
    assert_eq!(m.ies[1].id(), IeId::CongestionLevel);
    assert!(m.sending_complete());
}

#[test]
fn shifts_change_the_codeset() {
    // Locking shift to codeset 6: 0x08 and 0x7e there are not Cause and User-user, and the
    // 0x7e of codeset 6 has a one-octet length.
    let m = round_trip(&with_header(&hex("08 02 80 90 96 08 01 55 7e 01 aa")));
    assert_eq!(
        m.ies,
        vec![
            Ie::Cause(Cause::new(16)),
            Ie::Shift {
                locking: true,
                codeset: 6
            },
            raw(6, 0x08, "55"),
            raw(6, 0x7e, "aa"),
        ]
    );
    assert_eq!(m.cause(), Some(&Cause::new(16)));
    assert_eq!(m.ie(IeId::Cause), Some(&Ie::Cause(Cause::new(16))));
    // Non-locking shift: only the next IE is in codeset 5.
    let m = round_trip(&with_header(&hex("9d 08 01 55 08 02 80 90 7e 00 01 05")));
    assert_eq!(
        m.ies,
        vec![
            Ie::Shift {
                locking: false,
                codeset: 5
            },
            raw(5, 0x08, "55"),
            Ie::Cause(Cause::new(16)),
            Ie::UserUser(UserUser::h225(vec![])),
        ]
    );
    assert_eq!(m.ie(IeId::Cause), Some(&Ie::Cause(Cause::new(16))));
    // A typed IE after a locking shift cannot be encoded.
    let bad = Message::new(MessageType::Setup, CallRef::new(1))
        .with(Ie::Shift {
            locking: true,
            codeset: 6,
        })
        .with(Ie::Cause(Cause::new(16)));
    // `with` keeps the shift last, so build the order by hand.
    let bad = Message {
        ies: bad.ies.into_iter().rev().collect(),
        ..bad
    };
    assert_eq!(
        bad.to_vec(),
        Err(Q931EncodeError::WrongCodeset(IeId::Cause))
    );
}

#[test]
fn cause_values_and_meta() {
    let c = Cause::new(17);
    assert_eq!(c.value(), 17);
    assert_eq!(c.class(), CauseClass::Normal);
    assert_eq!(c.description(), Some("User busy"));
    assert_eq!(Cause::new(34).class(), CauseClass::ResourceUnavailable);
    assert_eq!(Cause::new(63).class(), CauseClass::ServiceNotAvailable);
    assert_eq!(Cause::new(65).class(), CauseClass::ServiceNotImplemented);
    assert_eq!(Cause::new(95).class(), CauseClass::InvalidMessage);
    assert_eq!(Cause::new(111).class(), CauseClass::ProtocolError);
    assert_eq!(Cause::new(127).class(), CauseClass::Interworking);
    assert_eq!(cause_description(12), None);
    for v in 0..=127u8 {
        let m = meta::Cause(v);
        let q: Cause = m.into();
        assert_eq!(meta::Cause::from(&q), m);
    }
    let q: Cause = meta::Cause::NORMAL_CLEARING.into();
    assert_eq!(q.value(), 16);
    let too_big: Cause = meta::Cause(200).into();
    assert_eq!(
        Message::release_complete(CallRef::new(1), Some(too_big), vec![0]).to_vec(),
        Err(Q931EncodeError::FieldRange("cause value"))
    );
    let e = Q931Error::new(0, Q931ErrorKind::MandatoryIeMissing(IeId::UserUser));
    assert_eq!(e.cause().map(|c| c.value()), Some(96));
}

use crate::meta;

#[test]
fn builders_encode_in_q931_order() {
    let setup = Message::setup(
        CallRef::new(0x1234),
        BearerCapability::speech(Layer1Protocol::G711Alaw),
        vec![0x20, 0xa8],
    )
    .with_display("Bob")
    .with_called_number(PartyNumber::e164("200"))
    .with_calling_number(PartyNumber::e164("100"))
    .with_sending_complete();
    assert_eq!(
        setup.to_vec().unwrap(),
        hex("08 02 12 34 05  a1  04 03 80 90 a3  28 03 42 6f 62
             6c 04 81 31 30 30  70 04 81 32 30 30  7e 00 03 05 20 a8")
    );
    setup.check_mandatory().unwrap();
    assert_eq!(setup.calling_party_number().unwrap().digits, "100");
    assert_eq!(setup.called_party_number().unwrap().digits, "200");
    assert_eq!(setup.display(), Some("Bob"));
    assert_eq!(setup.user_user().unwrap().data, [0x20, 0xa8]);

    let rc = Message::release_complete(CallRef::new(0x1234).reply(), Some(Cause::new(16)), vec![1]);
    assert_eq!(
        rc.to_vec().unwrap(),
        hex("08 02 92 34 5a 08 02 80 90 7e 00 02 05 01")
    );
    let status = Message::status(
        CallRef::new(7),
        Cause::new(30),
        CallState::new(CallState::ACTIVE),
    );
    assert_eq!(
        status.to_vec().unwrap(),
        hex("08 02 00 07 7d 08 02 80 9e 14 01 0a")
    );
    status.check_mandatory().unwrap();
    let cases = [
        (Message::connect(CallRef::new(1), vec![9]), 0x07),
        (Message::alerting(CallRef::new(1), vec![9]), 0x01),
        (Message::call_proceeding(CallRef::new(1), vec![9]), 0x02),
        (Message::facility(CallRef::new(1), vec![9]), 0x62),
    ];
    for (m, t) in cases {
        let mut want = vec![0x08, 0x02, 0x00, 0x01, t];
        want.extend_from_slice(&hex("7e 00 02 05 09"));
        assert_eq!(m.to_vec().unwrap(), want);
        m.check_mandatory().unwrap();
    }
    let p = Message::progress(
        CallRef::new(1),
        ProgressIndicator {
            coding_standard: CodingStandard::Itu,
            location: Location::User,
            description: ProgressDescription::InbandInfoAvailable,
        },
        vec![9],
    );
    assert_eq!(
        p.to_vec().unwrap(),
        hex("08 02 00 01 03 1e 02 80 88 7e 00 02 05 09")
    );
    assert_eq!(
        Message::status_enquiry(CallRef::DUMMY).to_vec().unwrap(),
        hex("08 00 75")
    );
}

#[test]
fn mandatory_ies() {
    let no_uu = Message::new(MessageType::Connect, CallRef::new(1));
    assert_eq!(
        no_uu.check_mandatory(),
        Err(Q931Error::new(
            0,
            Q931ErrorKind::MandatoryIeMissing(IeId::UserUser)
        ))
    );
    // A Bearer capability only has to be there: contents we do not type are taken as they
    // are (tshark takes them too), a missing one is cause 96.
    for bearer in ["04 01 80", "04 00", "04 02 88 98", "04 03 80 90 25"] {
        let setup = Message::decode(&with_header(&hex(&format!("{bearer} 7e 00 01 05")))).unwrap();
        assert!(setup.bearer_capability().is_none(), "{bearer}");
        assert_eq!(setup.check_mandatory(), Ok(()), "{bearer}");
    }
    let setup = Message::decode(&with_header(&hex("7e 00 01 05"))).unwrap();
    assert_eq!(
        setup.check_mandatory(),
        Err(Q931Error::new(
            0,
            Q931ErrorKind::MandatoryIeMissing(IeId::BearerCapability)
        ))
    );
    // After a locking shift, 0x04 is another codeset's IE: not a Bearer capability.
    let setup = Message::decode(&with_header(&hex("96 04 03 80 90 a3 7e 01 05"))).unwrap();
    assert_eq!(
        setup.check_mandatory(),
        Err(Q931Error::new(
            0,
            Q931ErrorKind::MandatoryIeMissing(IeId::BearerCapability)
        ))
    );
    // Status: Cause and Call state only have to be there too.
    for ies in [
        "08 01 80 14 01 0a",
        "08 02 90 9e 14 00",
        "08 00 14 02 0a 00",
    ] {
        let status = Message::decode(&hex(&format!("08 02 00 01 7d {ies}"))).unwrap();
        assert!(
            status.cause().is_none() || status.call_state().is_none(),
            "{ies}"
        );
        assert_eq!(status.check_mandatory(), Ok(()), "{ies}");
    }
    let status = Message::new(MessageType::Status, CallRef::new(1)).with_cause(Cause::new(30));
    assert_eq!(
        status.check_mandatory(),
        Err(Q931Error::new(
            0,
            Q931ErrorKind::MandatoryIeMissing(IeId::CallState)
        ))
    );
}

#[test]
fn encode_errors() {
    let cases: Vec<(Message, Q931EncodeError)> = vec![
        (
            Message::new(
                MessageType::Setup,
                CallRef {
                    value: 0x80,
                    from_destination: false,
                    len: 1,
                },
            ),
            Q931EncodeError::BadCallRef(CallRef {
                value: 0x80,
                from_destination: false,
                len: 1,
            }),
        ),
        (
            Message::new(MessageType::Setup, CallRef::new(0x8000)),
            Q931EncodeError::BadCallRef(CallRef::new(0x8000)),
        ),
        (
            Message::new(MessageType::Setup, CallRef::DUMMY.reply()),
            Q931EncodeError::BadCallRef(CallRef::DUMMY.reply()),
        ),
        (
            Message::new(MessageType::Setup, CallRef::new(1)).with(Ie::Display("x".repeat(256))),
            Q931EncodeError::IeTooLong {
                ie: 0x28,
                len: 256,
                limit: MAX_IE_LEN,
            },
        ),
        (
            Message::new(MessageType::Setup, CallRef::new(1))
                .with_called_number(PartyNumber::e164(&"1".repeat(MAX_DIGITS + 1))),
            Q931EncodeError::TooManyDigits {
                count: MAX_DIGITS + 1,
            },
        ),
        (
            Message::facility(CallRef::new(1), vec![0; MAX_USER_USER_LEN]),
            Q931EncodeError::IeTooLong {
                ie: 0x7e,
                len: MAX_USER_USER_LEN + 1,
                limit: MAX_USER_USER_LEN,
            },
        ),
        (
            Message::new(MessageType::Setup, CallRef::new(1)).with(Ie::Raw(RawIe {
                codeset: 0,
                id: 0x7e,
                data: vec![],
            })),
            Q931EncodeError::ZeroLengthUserUser,
        ),
        (
            Message::new(MessageType::Setup, CallRef::new(1)).with(Ie::SingleOctet(0x05)),
            Q931EncodeError::FieldRange("single-octet IE"),
        ),
        (
            Message::new(MessageType::Setup, CallRef::new(1))
                .with(Ie::CallState(CallState::new(0x40))),
            Q931EncodeError::FieldRange("call state"),
        ),
        (
            Message {
                ies: vec![Ie::SendingComplete; MAX_IES + 1],
                ..Message::new(MessageType::Setup, CallRef::new(1))
            },
            Q931EncodeError::TooManyIes { count: MAX_IES + 1 },
        ),
    ];
    for (m, err) in cases {
        let mut out = vec![0xa5];
        assert_eq!(m.encode(&mut out), Err(err.clone()), "{m:?}");
        assert_eq!(out, [0xa5], "output untouched on {err}");
    }
}

/// One row of testdata/q931/vectors.tsv.
struct Vector {
    source: String,
    frame: u32,
    message_type: u8,
    call_ref: u16,
    flag: bool,
    called: Option<String>,
    calling: Option<String>,
    cause: Option<u8>,
    tpkt: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let opt = |s: &str| (s != "-").then(|| s.to_owned());
    include_str!("../../testdata/q931/vectors.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 10, "{l}");
            Vector {
                source: f[0].to_owned(),
                frame: f[1].parse().unwrap(),
                message_type: u8::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap(),
                call_ref: u16::from_str_radix(f[4], 16).unwrap(),
                flag: f[5] == "1",
                called: opt(f[6]),
                calling: opt(f[7]),
                cause: opt(f[8]).map(|c| c.parse().unwrap()),
                tpkt: hex(f[9]),
            }
        })
        .collect()
}

#[test]
fn real_captures_decode_like_tshark_and_round_trip() {
    let vs = vectors();
    assert_eq!(vs.len(), 12);
    for v in &vs {
        let what = format!("{} frame {}", v.source, v.frame);
        assert!(tpkt::looks_like_tpkt(&v.tpkt), "{what}");
        let mut framer = TpktFramer::new();
        framer.push(&v.tpkt);
        let payload = framer.next_frame().unwrap().unwrap();
        assert_eq!(framer.next_frame(), None, "{what}: one TPKT");
        let m = round_trip(&payload);
        assert_eq!(u8::from(m.msg_type), v.message_type, "{what}");
        assert_eq!(m.call_ref.value, v.call_ref, "{what}");
        assert_eq!(m.call_ref.from_destination, v.flag, "{what}");
        assert_eq!(m.call_ref.len, 2, "{what}");
        assert_eq!(
            m.called_party_number().map(|n| n.digits.clone()),
            v.called,
            "{what}"
        );
        assert_eq!(
            m.calling_party_number().map(|n| n.digits.clone()),
            v.calling,
            "{what}"
        );
        assert_eq!(m.cause().map(Cause::value), v.cause, "{what}");
        m.check_mandatory().unwrap();
        // Every IE in these captures is typed (none kept raw).
        assert!(
            m.ies.iter().all(|ie| !matches!(ie, Ie::Raw(_))),
            "{what}: {:?}",
            m.ies
        );
        let uu = m.user_user().unwrap();
        assert_eq!(uu.protocol_discriminator, USER_USER_X208, "{what}");
        // The whole TPKT re-encodes too.
        let mut again = Vec::new();
        tpkt::encode(&m.to_vec().unwrap(), &mut again).unwrap();
        assert_eq!(again, v.tpkt, "{what}");
    }
}

#[test]
fn real_capture_truncations_and_mutations_fail_cleanly() {
    for v in vectors() {
        let payload = &v.tpkt[4..];
        // Every strict prefix that cuts an IE is a clean error; cuts at an IE boundary decode.
        let boundaries: Vec<usize> = RawIes::new(payload, 5)
            .map(|r| r.unwrap().offset)
            .chain([payload.len()])
            .collect();
        for cut in 0..payload.len() {
            match Message::decode(&payload[..cut]) {
                Ok(m) => {
                    assert!(boundaries.contains(&cut), "frame {} cut {cut}", v.frame);
                    assert_eq!(m.to_vec().unwrap(), &payload[..cut]);
                }
                Err(e) => assert!(e.offset <= cut, "frame {} cut {cut}: {e}", v.frame),
            }
        }
        // And as a TPKT stream, a cut packet is just incomplete.
        let mut framer = TpktFramer::new();
        framer.push(&v.tpkt[..v.tpkt.len() - 1]);
        assert_eq!(framer.next_frame(), None);
    }
}

#[test]
fn peek_without_copying() {
    let bytes = with_header(&hex("a1 04 03 88 90 a5 7e 00 01 05"));
    let (cr, mt, ies) = peek(&bytes).unwrap();
    assert_eq!((cr, mt), (CallRef::new(0x1234), MessageType::Setup));
    let ids: Vec<(usize, u8, usize)> = ies
        .map(|r| r.map(|r| (r.offset, r.id, r.data.len())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, [(5, 0xa1, 0), (6, 0x04, 3), (11, 0x7e, 1)]);
    let bad_bytes = with_header(&hex("a1 04 09"));
    let mut bad = peek(&bad_bytes).unwrap().2;
    assert!(bad.next().unwrap().is_ok());
    assert!(bad.next().unwrap().is_err());
    assert!(bad.next().is_none());
}

#[test]
fn ndpi_overflow_input() {
    let seg = hex(include_str!("../../testdata/q931/ndpi-h323-overflow.hex"));
    assert_eq!(seg, [3, 0, 0, 4]);
    assert!(!tpkt::looks_like_tpkt(&seg));
    let mut framer = TpktFramer::new();
    framer.push(&seg);
    let frame = framer.next_frame().unwrap().unwrap();
    assert!(frame.is_empty(), "a keepalive");
    assert_eq!(
        Message::decode(&frame),
        Err(Q931Error::new(0, Q931ErrorKind::TooShort))
    );
    assert_eq!(
        Message::decode(&seg),
        Err(Q931Error::new(
            0,
            Q931ErrorKind::BadProtocolDiscriminator(3)
        ))
    );
}

fn seeds() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = vectors()
        .into_iter()
        .map(|v| v.tpkt[4..].to_vec())
        .collect();
    s.extend(ie_table().into_iter().map(|(h, _)| with_header(&hex(h))));
    s
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        decode_encode_decode(&data)?;
    }

    #[test]
    fn mutated_real_messages(
        seed in 0usize..1000,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let seeds = seeds();
        let mut data = seeds[seed % seeds.len()].clone();
        for (at, v) in edits {
            let i = at.index(data.len());
            data[i] = v;
        }
        // Keep the header plausible so IE parsing gets exercised.
        data[0] = 0x08;
        data.truncate(cut.index(data.len() + 1).max(1));
        decode_encode_decode(&data)?;
    }
}

fn decode_encode_decode(data: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = Message::decode(data) {
        let out = m.to_vec().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&out[..], data);
        prop_assert_eq!(Message::decode(&out), Ok(m));
    }
    Ok(())
}
