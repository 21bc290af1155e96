//! Typed information element contents (Q.931 clause 4.5), each with `parse` (contents after the
//! length, `None` when not in the form the type reproduces exactly) and `emit`.

use super::error::Q931EncodeError;
use super::{MAX_DIGITS, USER_USER_X208};

/// Coding standard, bits 7-6 of several IEs (Q.931 clause 4.5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CodingStandard {
    /// ITU-T standardized coding.
    #[default]
    Itu,
    /// ISO/IEC standard.
    Iso,
    /// National standard.
    National,
    /// Standard defined for the network (public or private) present on the network side.
    Network,
}

impl CodingStandard {
    /// From the two low bits of `bits`.
    pub const fn from_bits(bits: u8) -> CodingStandard {
        match bits & 0x03 {
            0 => CodingStandard::Itu,
            1 => CodingStandard::Iso,
            2 => CodingStandard::National,
            _ => CodingStandard::Network,
        }
    }

    pub const fn bits(self) -> u8 {
        match self {
            CodingStandard::Itu => 0,
            CodingStandard::Iso => 1,
            CodingStandard::National => 2,
            CodingStandard::Network => 3,
        }
    }
}

/// Checks that `v` fits in `bits` bits.
pub(crate) fn fits(v: u8, bits: u32, what: &'static str) -> Result<u8, Q931EncodeError> {
    if u32::from(v) >> bits == 0 {
        Ok(v)
    } else {
        Err(Q931EncodeError::FieldRange(what))
    }
}

/// IA5 (7-bit) characters as a string; `None` if any octet has bit 8 set.
pub(crate) fn ascii_string(data: &[u8]) -> Option<String> {
    if data.is_ascii() {
        String::from_utf8(data.to_vec()).ok()
    } else {
        None
    }
}

wire_enum! {
    /// Information transfer capability, 5 bits (Q.931 clause 4.5.5, octet 3).
    pub enum TransferCapability: u8 {
        Speech = 0x00,
        UnrestrictedDigital = 0x08,
        RestrictedDigital = 0x09,
        Audio3k1Hz = 0x10,
        UnrestrictedDigitalWithTones = 0x11,
        Video = 0x18,
    }
}

wire_enum! {
    /// Transfer mode, 2 bits (Q.931 clause 4.5.5, octet 4).
    pub enum TransferMode: u8 {
        Circuit = 0x00,
        Packet = 0x02,
    }
}

wire_enum! {
    /// Information transfer rate, 5 bits (Q.931 clause 4.5.5, octet 4).
    pub enum TransferRate: u8 {
        PacketMode = 0x00,
        Kbit64 = 0x10,
        Kbit2x64 = 0x11,
        Kbit384 = 0x13,
        Kbit1536 = 0x15,
        Kbit1920 = 0x17,
        /// Followed by the rate multiplier octet 4.1.
        Multirate = 0x18,
    }
}

wire_enum! {
    /// User information layer 1 protocol, 5 bits (Q.931 clause 4.5.5, octet 5).
    pub enum Layer1Protocol: u8 {
        V110 = 0x01,
        G711Ulaw = 0x02,
        G711Alaw = 0x03,
        G721 = 0x04,
        H221H242 = 0x05,
        H223H245 = 0x06,
        NonItu = 0x07,
        V120 = 0x08,
        X31 = 0x09,
    }
}

/// Bearer capability (Q.931 clause 4.5.5). Octets 3, 4, 4.1 and 5 are typed; 3a, 5a-5d and the
/// layer 2/3 octets 6 and 7 are kept raw.
///
/// Read as tshark's Q.931 dissector reads it: octet 3a when octet 3 has bit 8 clear, octet 4,
/// the rate multiplier octet 4.1 when the rate is multirate, whatever bit 8 of octet 4 says
/// (Q.931 sets it; some H.225.0 stacks clear it to announce octet 4.1), then the layer 1 group
/// when the next octet's layer identification is 01.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerCapability {
    pub coding_standard: CodingStandard,
    pub transfer_capability: TransferCapability,
    /// Octet 3a as received, present when octet 3 has bit 8 clear (not in Q.931 (05/98); the
    /// out-band negotiation octet of earlier editions and national variants).
    pub octet_3a: Option<u8>,
    pub transfer_mode: TransferMode,
    pub transfer_rate: TransferRate,
    /// Bit 8 of octet 4 was clear ("the octet group continues"), as sent by stacks that mark
    /// the rate multiplier octet 4.1 that way. Kept so the IE re-encodes as received.
    pub octet_4_open: bool,
    /// Octet 4.1, present exactly when the rate is [`TransferRate::Multirate`].
    pub rate_multiplier: Option<u8>,
    /// Octet 5.
    pub layer1: Option<Layer1Protocol>,
    /// Octets 5a to 5d as received (the last has bit 8 set); empty when octet 5 ends the group.
    pub layer1_octets: Vec<u8>,
    /// Octets 6 and 7 (layer 2 and 3 identification) as received.
    pub rest: Vec<u8>,
}

impl BearerCapability {
    /// Speech, circuit mode, 64 kbit/s, G.711 with the given law: what H.323 voice gateways send
    /// (H.225.0 clause 7.2.2, Bearer capability).
    pub fn speech(layer1: Layer1Protocol) -> BearerCapability {
        BearerCapability {
            coding_standard: CodingStandard::Itu,
            transfer_capability: TransferCapability::Speech,
            octet_3a: None,
            transfer_mode: TransferMode::Circuit,
            transfer_rate: TransferRate::Kbit64,
            octet_4_open: false,
            rate_multiplier: None,
            layer1: Some(layer1),
            layer1_octets: Vec::new(),
            rest: Vec::new(),
        }
    }

    /// Unrestricted digital information, circuit mode, 64 kbit/s, H.221/H.242: what H.323
    /// terminals send for calls that may carry video.
    pub fn unrestricted_digital() -> BearerCapability {
        BearerCapability {
            transfer_capability: TransferCapability::UnrestrictedDigital,
            ..BearerCapability::speech(Layer1Protocol::H221H242)
        }
    }

    /// `None` when octet 4 is missing, or a multirate rate has no octet 4.1, or octet 4.1 or the
    /// layer 1 group does not end with bit 8 set.
    pub fn parse(data: &[u8]) -> Option<BearerCapability> {
        let (&o3, mut rest) = data.split_first()?;
        let mut octet_3a = None;
        if o3 & 0x80 == 0 {
            let (&o, r) = rest.split_first()?;
            octet_3a = Some(o);
            rest = r;
        }
        let (&o4, r) = rest.split_first()?;
        rest = r;
        let transfer_rate = TransferRate::from(o4 & 0x1f);
        let mut rate_multiplier = None;
        if transfer_rate == TransferRate::Multirate {
            let (&m, r) = rest.split_first()?;
            if m & 0x80 == 0 {
                return None;
            }
            rate_multiplier = Some(m & 0x7f);
            rest = r;
        }
        let mut layer1 = None;
        let mut layer1_octets = Vec::new();
        if let Some((&o5, r)) = rest.split_first() {
            // Layer identification 01 (bits 7-6) marks octet 5.
            if o5 & 0x60 == 0x20 {
                layer1 = Some(Layer1Protocol::from(o5 & 0x1f));
                rest = r;
                if o5 & 0x80 == 0 {
                    let end = rest.iter().position(|b| b & 0x80 != 0)?;
                    let (group, r) = rest.split_at(end.checked_add(1)?);
                    layer1_octets = group.to_vec();
                    rest = r;
                }
            }
        }
        Some(BearerCapability {
            coding_standard: CodingStandard::from_bits(o3 >> 5),
            transfer_capability: TransferCapability::from(o3 & 0x1f),
            octet_3a,
            transfer_mode: TransferMode::from((o4 >> 5) & 0x03),
            transfer_rate,
            octet_4_open: o4 & 0x80 == 0,
            rate_multiplier,
            layer1,
            layer1_octets,
            rest: rest.to_vec(),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        let itc = fits(self.transfer_capability.into(), 5, "transfer capability")?;
        let mode = fits(self.transfer_mode.into(), 2, "transfer mode")?;
        let rate = fits(self.transfer_rate.into(), 5, "transfer rate")?;
        let ext3 = if self.octet_3a.is_some() { 0 } else { 0x80 };
        out.push(ext3 | (self.coding_standard.bits() << 5) | itc);
        out.extend(self.octet_3a);
        let ext4 = if self.octet_4_open { 0 } else { 0x80 };
        out.push(ext4 | (mode << 5) | rate);
        match (
            self.transfer_rate == TransferRate::Multirate,
            self.rate_multiplier,
        ) {
            (true, Some(m)) => out.push(0x80 | fits(m, 7, "rate multiplier")?),
            (false, None) => {}
            _ => return Err(Q931EncodeError::FieldRange("rate multiplier")),
        }
        match self.layer1 {
            Some(l1) => {
                let ext = if self.layer1_octets.is_empty() {
                    0x80
                } else {
                    0
                };
                out.push(ext | 0x20 | fits(l1.into(), 5, "layer 1 protocol")?);
                out.extend_from_slice(&self.layer1_octets);
            }
            None if self.layer1_octets.is_empty() => {}
            None => {
                return Err(Q931EncodeError::FieldRange(
                    "layer 1 octets without octet 5",
                ))
            }
        }
        out.extend_from_slice(&self.rest);
        Ok(())
    }
}

wire_enum! {
    /// Type of number, 3 bits (Q.931 clause 4.5.10, octet 3).
    pub enum TypeOfNumber: u8 {
        /// "Unknown" in Q.931: the number is sent as the user dialled it.
        Unspecified = 0x00,
        International = 0x01,
        National = 0x02,
        NetworkSpecific = 0x03,
        Subscriber = 0x04,
        Abbreviated = 0x06,
    }
}

wire_enum! {
    /// Numbering plan identification, 4 bits (Q.931 clause 4.5.10, octet 3).
    pub enum NumberingPlan: u8 {
        /// "Unknown" in Q.931.
        Unspecified = 0x00,
        /// ISDN/telephony numbering plan, E.164.
        Isdn = 0x01,
        /// Data numbering plan, X.121.
        Data = 0x03,
        /// Telex numbering plan, F.69.
        Telex = 0x04,
        National = 0x08,
        Private = 0x09,
    }
}

/// Presentation indicator, 2 bits (Q.931 clause 4.5.10, octet 3a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presentation {
    Allowed,
    Restricted,
    NotAvailable,
    Reserved,
}

/// Screening indicator, 2 bits (Q.931 clause 4.5.10, octet 3a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screening {
    UserProvidedNotScreened,
    UserProvidedVerifiedPassed,
    UserProvidedVerifiedFailed,
    NetworkProvided,
}

/// Octet 3a of the calling party number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PresentationScreening {
    pub presentation: Presentation,
    pub screening: Screening,
}

impl PresentationScreening {
    fn from_octet(o: u8) -> PresentationScreening {
        let presentation = match (o >> 5) & 0x03 {
            0 => Presentation::Allowed,
            1 => Presentation::Restricted,
            2 => Presentation::NotAvailable,
            _ => Presentation::Reserved,
        };
        let screening = match o & 0x03 {
            0 => Screening::UserProvidedNotScreened,
            1 => Screening::UserProvidedVerifiedPassed,
            2 => Screening::UserProvidedVerifiedFailed,
            _ => Screening::NetworkProvided,
        };
        PresentationScreening {
            presentation,
            screening,
        }
    }

    fn octet(self) -> u8 {
        let p = match self.presentation {
            Presentation::Allowed => 0,
            Presentation::Restricted => 1,
            Presentation::NotAvailable => 2,
            Presentation::Reserved => 3,
        };
        let s = match self.screening {
            Screening::UserProvidedNotScreened => 0,
            Screening::UserProvidedVerifiedPassed => 1,
            Screening::UserProvidedVerifiedFailed => 2,
            Screening::NetworkProvided => 3,
        };
        0x80 | (p << 5) | s
    }
}

/// Calling party number (Q.931 clause 4.5.10) or called party number (clause 4.5.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyNumber {
    pub type_of_number: TypeOfNumber,
    pub numbering_plan: NumberingPlan,
    /// Octet 3a: calling party number only.
    pub presentation: Option<PresentationScreening>,
    /// IA5 digits (0-9, *, #, and whatever else the peer sends in 7 bits).
    pub digits: String,
}

impl PartyNumber {
    /// An E.164 number of unspecified type, without octet 3a.
    pub fn e164(digits: &str) -> PartyNumber {
        PartyNumber {
            type_of_number: TypeOfNumber::Unspecified,
            numbering_plan: NumberingPlan::Isdn,
            presentation: None,
            digits: digits.to_owned(),
        }
    }

    pub fn parse(data: &[u8]) -> Option<PartyNumber> {
        let (&o3, mut rest) = data.split_first()?;
        let mut presentation = None;
        if o3 & 0x80 == 0 {
            let (&o3a, r) = rest.split_first()?;
            // Bit 8 ends the group; bits 5-3 are spare.
            if o3a & 0x80 == 0 || o3a & 0x1c != 0 {
                return None;
            }
            presentation = Some(PresentationScreening::from_octet(o3a));
            rest = r;
        }
        if rest.len() > MAX_DIGITS {
            return None;
        }
        Some(PartyNumber {
            type_of_number: TypeOfNumber::from((o3 >> 4) & 0x07),
            numbering_plan: NumberingPlan::from(o3 & 0x0f),
            presentation,
            digits: ascii_string(rest)?,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        if self.digits.len() > MAX_DIGITS {
            return Err(Q931EncodeError::TooManyDigits {
                count: self.digits.len(),
            });
        }
        if !self.digits.is_ascii() {
            return Err(Q931EncodeError::FieldRange("digits are not IA5"));
        }
        let ton = fits(self.type_of_number.into(), 3, "type of number")?;
        let plan = fits(self.numbering_plan.into(), 4, "numbering plan")?;
        let ext = if self.presentation.is_some() { 0 } else { 0x80 };
        out.push(ext | (ton << 4) | plan);
        if let Some(ps) = self.presentation {
            out.push(ps.octet());
        }
        out.extend_from_slice(self.digits.as_bytes());
        Ok(())
    }
}

wire_enum! {
    /// Progress description, 7 bits (Q.931 clause 4.5.23, octet 4).
    pub enum ProgressDescription: u8 {
        NotEndToEndIsdn = 0x01,
        DestinationNotIsdn = 0x02,
        OriginationNotIsdn = 0x03,
        ReturnedToIsdn = 0x04,
        InterworkingChange = 0x05,
        /// In-band information or an appropriate pattern is now available (early media).
        InbandInfoAvailable = 0x08,
    }
}

/// Progress indicator (Q.931 clause 4.5.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressIndicator {
    pub coding_standard: CodingStandard,
    pub location: super::Location,
    pub description: ProgressDescription,
}

impl ProgressIndicator {
    pub fn parse(data: &[u8]) -> Option<ProgressIndicator> {
        let [o3, o4] = *data else { return None };
        if o3 & 0x80 == 0 || o3 & 0x10 != 0 || o4 & 0x80 == 0 {
            return None;
        }
        Some(ProgressIndicator {
            coding_standard: CodingStandard::from_bits(o3 >> 5),
            location: super::Location::from(o3 & 0x0f),
            description: ProgressDescription::from(o4 & 0x7f),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        let loc = fits(self.location.into(), 4, "location")?;
        let desc = fits(self.description.into(), 7, "progress description")?;
        out.push(0x80 | (self.coding_standard.bits() << 5) | loc);
        out.push(0x80 | desc);
        Ok(())
    }
}

/// Call state (Q.931 clause 4.5.7): coding standard and a 6-bit state value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallState {
    pub coding_standard: CodingStandard,
    pub state: u8,
}

impl CallState {
    pub const NULL: u8 = 0;
    pub const CALL_INITIATED: u8 = 1;
    pub const OVERLAP_SENDING: u8 = 2;
    pub const OUTGOING_CALL_PROCEEDING: u8 = 3;
    pub const CALL_DELIVERED: u8 = 4;
    pub const CALL_PRESENT: u8 = 6;
    pub const CALL_RECEIVED: u8 = 7;
    pub const CONNECT_REQUEST: u8 = 8;
    pub const INCOMING_CALL_PROCEEDING: u8 = 9;
    pub const ACTIVE: u8 = 10;
    pub const DISCONNECT_REQUEST: u8 = 11;
    pub const DISCONNECT_INDICATION: u8 = 12;
    pub const RELEASE_REQUEST: u8 = 19;
    pub const OVERLAP_RECEIVING: u8 = 25;

    /// An ITU-T coded call state.
    pub const fn new(state: u8) -> CallState {
        CallState {
            coding_standard: CodingStandard::Itu,
            state,
        }
    }

    pub fn parse(data: &[u8]) -> Option<CallState> {
        let [o] = *data else { return None };
        Some(CallState {
            coding_standard: CodingStandard::from_bits(o >> 6),
            state: o & 0x3f,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        out.push((self.coding_standard.bits() << 6) | fits(self.state, 6, "call state")?);
        Ok(())
    }
}

/// Notification indicator (Q.931 clause 4.5.22): one 7-bit description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationIndicator(pub u8);

impl NotificationIndicator {
    pub const USER_SUSPENDED: u8 = 0x00;
    pub const USER_RESUMED: u8 = 0x01;
    pub const BEARER_SERVICE_CHANGE: u8 = 0x02;

    pub fn parse(data: &[u8]) -> Option<NotificationIndicator> {
        match *data {
            [o] if o & 0x80 != 0 => Some(NotificationIndicator(o & 0x7f)),
            _ => None,
        }
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        out.push(0x80 | fits(self.0, 7, "notification description")?);
        Ok(())
    }
}

/// Signal (Q.931 clause 4.5.28): one octet naming a tone or alerting pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub u8);

impl Signal {
    pub const DIAL_TONE_ON: Signal = Signal(0x00);
    pub const RING_BACK_TONE_ON: Signal = Signal(0x01);
    pub const INTERCEPT_TONE_ON: Signal = Signal(0x02);
    pub const NETWORK_CONGESTION_TONE_ON: Signal = Signal(0x03);
    pub const BUSY_TONE_ON: Signal = Signal(0x04);
    pub const CONFIRM_TONE_ON: Signal = Signal(0x05);
    pub const ANSWER_TONE_ON: Signal = Signal(0x06);
    pub const CALL_WAITING_TONE_ON: Signal = Signal(0x07);
    pub const OFF_HOOK_WARNING_TONE_ON: Signal = Signal(0x08);
    pub const TONES_OFF: Signal = Signal(0x3f);
    pub const ALERTING_OFF: Signal = Signal(0x4f);

    pub fn parse(data: &[u8]) -> Option<Signal> {
        match *data {
            [o] => Some(Signal(o)),
            _ => None,
        }
    }
}

/// User-user (Q.931 clause 4.5.30): a protocol discriminator, then the user information: for
/// H.225.0 ([`USER_USER_X208`]) the PER-encoded H323-UserInformation PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUser {
    pub protocol_discriminator: u8,
    pub data: Vec<u8>,
}

impl UserUser {
    /// An H.225.0 PDU (X.208/X.209 coded user information).
    pub fn h225(pdu: Vec<u8>) -> UserUser {
        UserUser {
            protocol_discriminator: USER_USER_X208,
            data: pdu,
        }
    }
}
