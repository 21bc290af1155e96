//! Q.931 as used by H.225.0 call signalling (ITU-T Q.931 clause 4, H.225.0 clause 7): the
//! message header, the information elements that H.323 uses, and builders for the messages a
//! gateway sends. The H.225.0 PDU inside the User-user IE is kept as opaque bytes.
//!
//! Decoding never panics; what it allocates is bounded by the input's size and [`MAX_IES`].
//! [`Message::decode`] checks the framing strictly (header, every IE length) and the contents of
//! typed IEs leniently: a known IE whose contents are not in the exact form this module types is
//! kept as [`Ie::Raw`], so decode → encode gives back the same bytes for every message that
//! decodes. Whether a message has what H.225.0 requires is a separate question,
//! [`Message::check_mandatory`].

/// A wire enum that keeps unknown values (rustls `msgs/macros.rs` style).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $ty:ty {
            $( $(#[$vmeta:meta])* $var:ident = $val:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $var, )*
            /// A value this module does not name, kept as received.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v {
                    $( $val => $name::$var, )*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> $ty {
                match v {
                    $( $name::$var => $val, )*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

mod builder;
mod cause;
mod error;
mod ie;
mod ies;
mod message_type;
#[cfg(test)]
mod tests;

pub use cause::{description as cause_description, Cause, CauseClass, Location};
pub use error::{Q931EncodeError, Q931Error, Q931ErrorKind};
pub use ie::{Ie, IeId, RawIe, RawIeRef, RawIes};
pub use ies::{
    BearerCapability, CallState, CodingStandard, Layer1Protocol, NotificationIndicator,
    NumberingPlan, PartyNumber, Presentation, PresentationScreening, ProgressDescription,
    ProgressIndicator, Screening, Signal, TransferCapability, TransferMode, TransferRate,
    TypeOfNumber, UserUser,
};
pub use message_type::MessageType;

/// Q.931 protocol discriminator for user-network call control (Q.931 clause 4.2).
pub const PROTOCOL_DISCRIMINATOR: u8 = 0x08;
/// H.225.0 uses call references of 0 (dummy), 1 or 2 octets; H.323 endpoints send 2.
pub const MAX_CALL_REF_LEN: u8 = 2;
/// Information elements per message. A Setup has about ten.
pub const MAX_IES: usize = 64;
/// Contents of a variable-length IE with a one-octet length (Q.931 clause 4.5.1).
pub const MAX_IE_LEN: usize = 0xff;
/// Contents of the User-user IE, whose length is two octets in H.225.0 (H.225.0 clause 7.2.2,
/// User-user). H.225.0 PDUs with fastStart and tokens are a few kilobytes.
pub const MAX_USER_USER_LEN: usize = 0x8000;
/// Digits of a calling or called party number.
pub const MAX_DIGITS: usize = 64;
/// Protocol discriminator inside the User-user IE for X.208/X.209 coded user information, the
/// value H.225.0 uses (Q.931 table 4-26).
pub const USER_USER_X208: u8 = 0x05;

/// The call reference (Q.931 clause 4.3). `from_destination` is the flag bit: false in messages
/// sent by the side that allocated the reference, true in those sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallRef {
    /// 15 bits when `len` is 2, 7 bits when 1, 0 when 0.
    pub value: u16,
    pub from_destination: bool,
    /// Octets on the wire: 0 (dummy call reference), 1 or 2.
    pub len: u8,
}

impl CallRef {
    /// The dummy call reference (length 0), used e.g. by Facility outside a call.
    pub const DUMMY: CallRef = CallRef {
        value: 0,
        from_destination: false,
        len: 0,
    };
    /// The largest 2-octet call reference value.
    pub const MAX_VALUE: u16 = 0x7fff;

    /// A 2-octet call reference sent by the side that allocated it.
    pub const fn new(value: u16) -> CallRef {
        CallRef {
            value,
            from_destination: false,
            len: 2,
        }
    }

    /// The same call reference as the other side sends it (flag bit inverted).
    pub const fn reply(self) -> CallRef {
        CallRef {
            from_destination: !self.from_destination,
            ..self
        }
    }
}

/// A Q.931 message: header and information elements in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub call_ref: CallRef,
    pub msg_type: MessageType,
    /// IEs in the order received (or to be sent), shifts included.
    pub ies: Vec<Ie>,
}

impl Message {
    /// A message with no IEs yet; see the builders (`Message::setup`, ...) and [`Message::with`].
    pub fn new(msg_type: MessageType, call_ref: CallRef) -> Message {
        Message {
            call_ref,
            msg_type,
            ies: Vec::new(),
        }
    }

    /// Decodes one whole message (a TPKT payload). Every byte must belong to the header or an
    /// IE: an IE running past the end is [`Q931ErrorKind::Truncated`].
    pub fn decode(bytes: &[u8]) -> Result<Message, Q931Error> {
        let (call_ref, msg_type, ies_at) = decode_header(bytes)?;
        let mut ies = Vec::new();
        for raw in RawIes::new(bytes, ies_at) {
            let raw = raw?;
            if ies.len() >= MAX_IES {
                return Err(Q931Error::new(raw.offset, Q931ErrorKind::TooManyIes));
            }
            ies.push(Ie::from_raw(&raw)?);
        }
        Ok(Message {
            call_ref,
            msg_type,
            ies,
        })
    }

    /// Appends the encoded message to `out`. On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        let start = out.len();
        let r = self.encode_inner(out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// The encoded message in a new buffer.
    pub fn to_vec(&self) -> Result<Vec<u8>, Q931EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    fn encode_inner(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        if self.ies.len() > MAX_IES {
            return Err(Q931EncodeError::TooManyIes {
                count: self.ies.len(),
            });
        }
        let CallRef {
            value,
            from_destination,
            len,
        } = self.call_ref;
        out.push(PROTOCOL_DISCRIMINATOR);
        out.push(len);
        let flag = if from_destination { 0x80 } else { 0 };
        match len {
            0 if value == 0 && !from_destination => {}
            1 if value <= 0x7f => {
                let [_, lo] = value.to_be_bytes();
                out.push(flag | lo);
            }
            2 if value <= CallRef::MAX_VALUE => {
                let [hi, lo] = value.to_be_bytes();
                out.push(flag | hi);
                out.push(lo);
            }
            _ => return Err(Q931EncodeError::BadCallRef(self.call_ref)),
        }
        out.push(u8::from(self.msg_type));
        let mut codeset = ie::CodesetTracker::default();
        for ie in &self.ies {
            let cs = codeset.next(ie.single_octet());
            ie.encode(cs, out)?;
        }
        Ok(())
    }

    /// Adds an IE in Q.931 order (clause 4.5.1: ascending identifiers within codeset 0): before
    /// the first IE with a higher identifier, after equal ones. Single-octet IEs (Sending
    /// complete) go first; after a shift, the IE is appended.
    pub fn with(mut self, ie: Ie) -> Message {
        self.insert(ie);
        self
    }

    /// [`Message::with`] in place.
    pub fn insert(&mut self, ie: Ie) {
        let key = ie.order_key();
        let at = self
            .ies
            .iter()
            .position(|e| e.order_key() > key || matches!(e, Ie::Shift { .. }))
            .unwrap_or(self.ies.len());
        self.ies.insert(at, ie);
    }

    /// The first IE of codeset 0 with this identifier.
    pub fn ie(&self, id: IeId) -> Option<&Ie> {
        let mut codeset = ie::CodesetTracker::default();
        self.ies.iter().find(|ie| {
            let cs = codeset.next(ie.single_octet());
            cs == 0 && ie.id() == id
        })
    }

    pub fn bearer_capability(&self) -> Option<&BearerCapability> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::BearerCapability(v) => Some(v),
            _ => None,
        })
    }

    pub fn cause(&self) -> Option<&Cause> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::Cause(v) => Some(v),
            _ => None,
        })
    }

    pub fn call_state(&self) -> Option<CallState> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::CallState(v) => Some(*v),
            _ => None,
        })
    }

    pub fn progress_indicator(&self) -> Option<&ProgressIndicator> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::ProgressIndicator(v) => Some(v),
            _ => None,
        })
    }

    pub fn display(&self) -> Option<&str> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::Display(v) => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn keypad(&self) -> Option<&str> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::Keypad(v) => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn signal(&self) -> Option<Signal> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::Signal(v) => Some(*v),
            _ => None,
        })
    }

    pub fn calling_party_number(&self) -> Option<&PartyNumber> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::CallingPartyNumber(v) => Some(v),
            _ => None,
        })
    }

    pub fn called_party_number(&self) -> Option<&PartyNumber> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::CalledPartyNumber(v) => Some(v),
            _ => None,
        })
    }

    /// The User-user IE; its `data` is the H.225.0 H323-UserInformation PDU.
    pub fn user_user(&self) -> Option<&UserUser> {
        self.ies.iter().find_map(|ie| match ie {
            Ie::UserUser(v) => Some(v),
            _ => None,
        })
    }

    pub fn sending_complete(&self) -> bool {
        self.ies.iter().any(|ie| matches!(ie, Ie::SendingComplete))
    }

    /// Checks the IEs H.225.0 makes mandatory for this message type (H.225.0 clause 7.3: the
    /// User-user IE in every call signalling message it defines, Bearer capability in Setup;
    /// Q.931 clause 3.1.16: Cause and Call state in Status). Q.931 clause 5.8.6.1 answers a
    /// missing mandatory IE with cause 96, see [`Q931Error::cause`].
    ///
    /// The IEs only have to be there, whatever their contents, as tshark's Q.931 dissector
    /// takes them: over H.225.0 the media are negotiated by fastStart or H.245, so the Bearer
    /// capability's contents decide nothing (an H.323 endpoint refused for a bearer octet it
    /// coded its own way has no other way in), and nothing acts on a Status' Cause and Call
    /// state (answering an unreadable one with Release Complete would end the caller's call,
    /// where Q.931 clause 5.8.7.1 takes no action). A typed IE whose contents are not typed is
    /// kept as [`Ie::Raw`], so its accessor (e.g. [`Message::cause`]) gives `None`.
    pub fn check_mandatory(&self) -> Result<(), Q931Error> {
        use MessageType as M;
        let required: &[IeId] = match self.msg_type {
            M::Setup => &[IeId::BearerCapability, IeId::UserUser],
            M::Alerting
            | M::CallProceeding
            | M::Connect
            | M::Progress
            | M::ReleaseComplete
            | M::Facility
            | M::SetupAcknowledge
            | M::Notify => &[IeId::UserUser],
            M::Status => &[IeId::Cause, IeId::CallState],
            _ => &[],
        };
        for id in required {
            if self.ie(*id).is_none() {
                return Err(Q931Error::new(0, Q931ErrorKind::MandatoryIeMissing(*id)));
            }
        }
        Ok(())
    }
}

/// Zero-copy look at a message: its header and an iterator over its IEs, without typing or
/// copying them (e.g. to name a message in a transcript). Errors in IEs surface while iterating.
pub fn peek(bytes: &[u8]) -> Result<(CallRef, MessageType, RawIes<'_>), Q931Error> {
    let (call_ref, msg_type, ies_at) = decode_header(bytes)?;
    Ok((call_ref, msg_type, RawIes::new(bytes, ies_at)))
}

/// Decodes protocol discriminator, call reference and message type; returns where IEs start.
fn decode_header(b: &[u8]) -> Result<(CallRef, MessageType, usize), Q931Error> {
    let truncated = |offset| Q931Error::new(offset, Q931ErrorKind::TooShort);
    let pd = *b.first().ok_or_else(|| truncated(0))?;
    if pd != PROTOCOL_DISCRIMINATOR {
        return Err(Q931Error::new(
            0,
            Q931ErrorKind::BadProtocolDiscriminator(pd),
        ));
    }
    let len_octet = *b.get(1).ok_or_else(|| truncated(1))?;
    // Bits 8-5 are spare (Q.931 figure 4-5).
    if len_octet > MAX_CALL_REF_LEN {
        return Err(Q931Error::new(1, Q931ErrorKind::BadCallRefLen(len_octet)));
    }
    let len = usize::from(len_octet);
    let cr = b.get(2..2 + len).ok_or_else(|| truncated(2))?;
    let (value, from_destination) = match *cr {
        [] => (0, false),
        [v] => (u16::from(v & 0x7f), v & 0x80 != 0),
        [hi, lo] => (u16::from_be_bytes([hi & 0x7f, lo]), hi & 0x80 != 0),
        _ => return Err(Q931Error::new(1, Q931ErrorKind::BadCallRefLen(len_octet))),
    };
    let mt_at = 2 + len;
    // Bit 8 is reserved for an extension (Q.931 clause 4.4); such types stay Unknown.
    let mt = *b.get(mt_at).ok_or_else(|| truncated(mt_at))?;
    Ok((
        CallRef {
            value,
            from_destination,
            len: len_octet,
        },
        MessageType::from(mt),
        mt_at + 1,
    ))
}
