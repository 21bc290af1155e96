//! The Cause IE (Q.931 clause 4.5.12, ITU-T Q.850 clause 2) and its Q.850 cause values, with the
//! conversion to and from the Meta model's normalized [`crate::meta::Cause`].

use super::error::Q931EncodeError;
use super::ies::{fits, CodingStandard};
use crate::meta;

wire_enum! {
    /// Location, 4 bits (Q.850 table 1, octet 3).
    pub enum Location: u8 {
        User = 0x00,
        PrivateNetworkLocalUser = 0x01,
        PublicNetworkLocalUser = 0x02,
        TransitNetwork = 0x03,
        PublicNetworkRemoteUser = 0x04,
        PrivateNetworkRemoteUser = 0x05,
        International = 0x07,
        BeyondInterworking = 0x0a,
    }
}

/// Cause class, bits 7-5 of the cause value (Q.850 clause 2.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CauseClass {
    /// Values 0-31.
    Normal,
    /// Values 32-47.
    ResourceUnavailable,
    /// Values 48-63.
    ServiceNotAvailable,
    /// Values 64-79.
    ServiceNotImplemented,
    /// Values 80-95.
    InvalidMessage,
    /// Values 96-111.
    ProtocolError,
    /// Values 112-127.
    Interworking,
}

/// The Cause IE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub coding_standard: CodingStandard,
    pub location: Location,
    /// Octet 3a, present only in old encodings (Q.850: "Q.931 (1988)" is 0).
    pub recommendation: Option<u8>,
    /// The 7-bit Q.850 cause value.
    pub cause_value: u8,
    /// Octets 5 onwards, kept raw.
    pub diagnostics: Vec<u8>,
}

impl Cause {
    /// An ITU-T coded cause from the user (location 0, as H.323 endpoints send), no diagnostics.
    pub fn new(value: u8) -> Cause {
        Cause {
            coding_standard: CodingStandard::Itu,
            location: Location::User,
            recommendation: None,
            cause_value: value,
            diagnostics: Vec::new(),
        }
    }

    /// The Q.850 cause value.
    pub fn value(&self) -> u8 {
        self.cause_value
    }

    /// The Q.850 class of the value.
    pub fn class(&self) -> CauseClass {
        match self.cause_value & 0x70 {
            0x00 | 0x10 => CauseClass::Normal,
            0x20 => CauseClass::ResourceUnavailable,
            0x30 => CauseClass::ServiceNotAvailable,
            0x40 => CauseClass::ServiceNotImplemented,
            0x50 => CauseClass::InvalidMessage,
            0x60 => CauseClass::ProtocolError,
            _ => CauseClass::Interworking,
        }
    }

    /// The Q.850 text of the value, `None` for values Q.850 does not define.
    pub fn description(&self) -> Option<&'static str> {
        description(self.cause_value)
    }

    pub fn parse(data: &[u8]) -> Option<Cause> {
        let (&o3, mut rest) = data.split_first()?;
        // Bit 5 of octet 3 is spare.
        if o3 & 0x10 != 0 {
            return None;
        }
        let mut recommendation = None;
        if o3 & 0x80 == 0 {
            let (&o3a, r) = rest.split_first()?;
            if o3a & 0x80 == 0 {
                return None;
            }
            recommendation = Some(o3a & 0x7f);
            rest = r;
        }
        let (&o4, diagnostics) = rest.split_first()?;
        if o4 & 0x80 == 0 {
            return None;
        }
        Some(Cause {
            coding_standard: CodingStandard::from_bits(o3 >> 5),
            location: Location::from(o3 & 0x0f),
            recommendation,
            cause_value: o4 & 0x7f,
            diagnostics: diagnostics.to_vec(),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        let loc = fits(self.location.into(), 4, "cause location")?;
        let value = fits(self.cause_value, 7, "cause value")?;
        let ext = if self.recommendation.is_some() {
            0
        } else {
            0x80
        };
        out.push(ext | (self.coding_standard.bits() << 5) | loc);
        if let Some(r) = self.recommendation {
            out.push(0x80 | fits(r, 7, "cause recommendation")?);
        }
        out.push(0x80 | value);
        out.extend_from_slice(&self.diagnostics);
        Ok(())
    }
}

/// Both are Q.850 values; a meta value above 127 fails to encode ([`Q931EncodeError`]).
impl From<meta::Cause> for Cause {
    fn from(c: meta::Cause) -> Cause {
        Cause::new(c.0)
    }
}

impl From<&Cause> for meta::Cause {
    fn from(c: &Cause) -> meta::Cause {
        meta::Cause(c.cause_value)
    }
}

impl From<Cause> for meta::Cause {
    fn from(c: Cause) -> meta::Cause {
        meta::Cause(c.cause_value)
    }
}

/// Q.850 table 1 texts.
pub fn description(value: u8) -> Option<&'static str> {
    Some(match value {
        1 => "Unallocated (unassigned) number",
        2 => "No route to specified transit network",
        3 => "No route to destination",
        4 => "Send special information tone",
        5 => "Misdialled trunk prefix",
        6 => "Channel unacceptable",
        7 => "Call awarded and being delivered in an established channel",
        8 => "Preemption",
        9 => "Preemption - circuit reserved for reuse",
        16 => "Normal call clearing",
        17 => "User busy",
        18 => "No user responding",
        19 => "No answer from user (user alerted)",
        20 => "Subscriber absent",
        21 => "Call rejected",
        22 => "Number changed",
        23 => "Redirection to new destination",
        25 => "Exchange routing error",
        26 => "Non-selected user clearing",
        27 => "Destination out of order",
        28 => "Invalid number format (address incomplete)",
        29 => "Facility rejected",
        30 => "Response to STATUS ENQUIRY",
        31 => "Normal, unspecified",
        34 => "No circuit/channel available",
        38 => "Network out of order",
        39 => "Permanent frame mode connection out of service",
        40 => "Permanent frame mode connection operational",
        41 => "Temporary failure",
        42 => "Switching equipment congestion",
        43 => "Access information discarded",
        44 => "Requested circuit/channel not available",
        46 => "Precedence call blocked",
        47 => "Resource unavailable, unspecified",
        49 => "Quality of service not available",
        50 => "Requested facility not subscribed",
        53 => "Outgoing calls barred within CUG",
        55 => "Incoming calls barred within CUG",
        57 => "Bearer capability not authorized",
        58 => "Bearer capability not presently available",
        62 => "Inconsistency in designated outgoing access information and subscriber class",
        63 => "Service or option not available, unspecified",
        65 => "Bearer capability not implemented",
        66 => "Channel type not implemented",
        69 => "Requested facility not implemented",
        70 => "Only restricted digital information bearer capability is available",
        79 => "Service or option not implemented, unspecified",
        81 => "Invalid call reference value",
        82 => "Identified channel does not exist",
        83 => "A suspended call exists, but this call identity does not",
        84 => "Call identity in use",
        85 => "No call suspended",
        86 => "Call having the requested call identity has been cleared",
        87 => "User not member of CUG",
        88 => "Incompatible destination",
        90 => "Non-existent CUG",
        91 => "Invalid transit network selection",
        95 => "Invalid message, unspecified",
        96 => "Mandatory information element is missing",
        97 => "Message type non-existent or not implemented",
        98 => {
            "Message not compatible with call state or message type non-existent or not implemented"
        }
        99 => "Information element/parameter non-existent or not implemented",
        100 => "Invalid information element contents",
        101 => "Message not compatible with call state",
        102 => "Recovery on timer expiry",
        103 => "Parameter non-existent or not implemented, passed on",
        110 => "Message with unrecognized parameter, discarded",
        111 => "Protocol error, unspecified",
        127 => "Interworking, unspecified",
        _ => return None,
    })
}
