//! Information elements (Q.931 clause 4.5): framing, codeset shifts, and the [`Ie`] enum.
//!
//! Framing (Q.931 clause 4.5.1): an octet with bit 8 set is a single-octet IE (type 1: identifier
//! in bits 7-5, contents in bits 4-1; type 2: the whole octet); otherwise it is the identifier of
//! a variable-length IE followed by a one-octet length, except the User-user IE of codeset 0,
//! whose length is two octets in H.225.0 (clause 7.2.2, User-user).

use super::error::{Q931EncodeError, Q931Error, Q931ErrorKind};
use super::ies::{
    ascii_string, BearerCapability, CallState, NotificationIndicator, PartyNumber,
    ProgressIndicator, Signal, UserUser,
};
use super::{Cause, MAX_IE_LEN, MAX_USER_USER_LEN};

wire_enum! {
    /// Information element identifiers of codeset 0 (Q.931 table 4-3). Single-octet type 1 IEs
    /// are named by their identifier bits with the contents bits zero (Shift is 0x90).
    pub enum IeId: u8 {
        Shift = 0x90,
        MoreData = 0xa0,
        SendingComplete = 0xa1,
        CongestionLevel = 0xb0,
        RepeatIndicator = 0xd0,
        BearerCapability = 0x04,
        Cause = 0x08,
        CallIdentity = 0x10,
        CallState = 0x14,
        ChannelIdentification = 0x18,
        Facility = 0x1c,
        ProgressIndicator = 0x1e,
        NetworkSpecificFacilities = 0x20,
        NotificationIndicator = 0x27,
        Display = 0x28,
        DateTime = 0x29,
        Keypad = 0x2c,
        Signal = 0x34,
        ConnectedNumber = 0x4c,
        CallingPartyNumber = 0x6c,
        CallingPartySubaddress = 0x6d,
        CalledPartyNumber = 0x70,
        CalledPartySubaddress = 0x71,
        RedirectingNumber = 0x74,
        TransitNetworkSelection = 0x78,
        LowLayerCompatibility = 0x7c,
        HighLayerCompatibility = 0x7d,
        UserUser = 0x7e,
    }
}

/// One information element. Typed variants are codeset 0 only; anything else is kept raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ie {
    /// Shift (Q.931 clause 4.5.3/4.5.4): locking changes the codeset of all following IEs,
    /// non-locking only of the next one.
    Shift {
        locking: bool,
        codeset: u8,
    },
    MoreData,
    SendingComplete,
    /// Congestion level, 4 bits (Q.931 clause 4.5.14).
    CongestionLevel(u8),
    /// Repeat indicator, 4 bits (Q.931 clause 4.5.24).
    RepeatIndicator(u8),
    /// Any other single-octet IE (or one outside codeset 0), the whole octet.
    SingleOctet(u8),
    BearerCapability(BearerCapability),
    Cause(Cause),
    CallState(CallState),
    /// Channel identification (Q.931 clause 4.5.13), contents kept raw.
    ChannelIdentification(Vec<u8>),
    ProgressIndicator(ProgressIndicator),
    NotificationIndicator(NotificationIndicator),
    /// Display (Q.931 clause 4.5.16): IA5 text; H.323 endpoints also send UTF-8.
    Display(String),
    /// Keypad facility (Q.931 clause 4.5.18): IA5 characters.
    Keypad(String),
    Signal(Signal),
    CallingPartyNumber(PartyNumber),
    CalledPartyNumber(PartyNumber),
    UserUser(UserUser),
    /// An IE kept as bytes: an identifier this module does not type, any IE outside codeset 0,
    /// or a typed identifier whose contents are not in the form the typed variant reproduces
    /// exactly (Q.931 clause 5.8.7.2 treats those as absent).
    Raw(RawIe),
}

/// A variable-length IE kept as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawIe {
    /// The codeset the IE was received in (informational: on encode the codeset follows from
    /// the shifts before it).
    pub codeset: u8,
    pub id: u8,
    pub data: Vec<u8>,
}

/// One IE as framed on the wire, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawIeRef<'a> {
    /// Offset of the identifier octet in the message.
    pub offset: usize,
    pub codeset: u8,
    /// The identifier octet (for single-octet IEs, the whole octet).
    pub id: u8,
    /// Contents after the length octet(s); empty for single-octet IEs.
    pub data: &'a [u8],
    pub single_octet: bool,
}

/// Tracks the active codeset through Shift IEs (Q.931 clauses 4.5.2 to 4.5.4).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CodesetTracker {
    locked: u8,
    next_only: Option<u8>,
}

impl CodesetTracker {
    /// The codeset of the IE at hand (given its octet if it is a single-octet IE); updates the
    /// state for the IEs after it.
    pub(crate) fn next(&mut self, single_octet: Option<u8>) -> u8 {
        let cs = self.next_only.take().unwrap_or(self.locked);
        if let Some(octet) = single_octet {
            if octet & 0xf0 == 0x90 {
                if octet & 0x08 == 0 {
                    self.locked = octet & 0x07;
                } else {
                    self.next_only = Some(octet & 0x07);
                }
            }
        }
        cs
    }
}

/// Iterator over the IEs of a message, without typing them. Stops after the first error.
#[derive(Debug, Clone)]
pub struct RawIes<'a> {
    bytes: &'a [u8],
    at: usize,
    codeset: CodesetTracker,
    done: bool,
}

impl<'a> RawIes<'a> {
    /// Iterates over the IEs of `message` starting at offset `start`.
    pub fn new(message: &'a [u8], start: usize) -> RawIes<'a> {
        RawIes {
            bytes: message,
            at: start,
            codeset: CodesetTracker::default(),
            done: false,
        }
    }

    fn read(&mut self) -> Option<Result<RawIeRef<'a>, Q931Error>> {
        let offset = self.at;
        let id = *self.bytes.get(offset)?;
        if id & 0x80 != 0 {
            let codeset = self.codeset.next(Some(id));
            self.at = offset.saturating_add(1);
            return Some(Ok(RawIeRef {
                offset,
                codeset,
                id,
                data: &[],
                single_octet: true,
            }));
        }
        let codeset = self.codeset.next(None);
        let truncated = |what| Q931Error::new(offset, Q931ErrorKind::Truncated(what));
        let (len, data_at) = if codeset == 0 && id == u8::from(IeId::UserUser) {
            match self
                .bytes
                .get(offset.saturating_add(1)..offset.saturating_add(3))
            {
                Some(&[hi, lo]) => (usize::from(u16::from_be_bytes([hi, lo])), offset + 3),
                _ => return Some(Err(truncated("user-user length"))),
            }
        } else {
            match self.bytes.get(offset.saturating_add(1)) {
                Some(&l) => (usize::from(l), offset + 2),
                None => return Some(Err(truncated("information element length"))),
            }
        };
        if codeset == 0 && id == u8::from(IeId::UserUser) && len > MAX_USER_USER_LEN {
            return Some(Err(Q931Error::new(
                offset,
                Q931ErrorKind::IeTooLong {
                    ie: id,
                    len,
                    limit: MAX_USER_USER_LEN,
                },
            )));
        }
        let end = data_at.saturating_add(len);
        let Some(data) = self.bytes.get(data_at..end) else {
            return Some(Err(truncated("information element contents")));
        };
        self.at = end;
        Some(Ok(RawIeRef {
            offset,
            codeset,
            id,
            data,
            single_octet: false,
        }))
    }
}

impl<'a> Iterator for RawIes<'a> {
    type Item = Result<RawIeRef<'a>, Q931Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.read();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

impl Ie {
    /// Types a framed IE. Fails only for a zero-length User-user IE: H.225.0 has nothing to
    /// carry without its protocol discriminator, and PROTOS-style inputs use it.
    pub fn from_raw(raw: &RawIeRef<'_>) -> Result<Ie, Q931Error> {
        if raw.single_octet {
            let o = raw.id;
            return Ok(match (raw.codeset, o & 0xf0) {
                (_, 0x90) => Ie::Shift {
                    locking: o & 0x08 == 0,
                    codeset: o & 0x07,
                },
                (0, 0xa0) if o == 0xa0 => Ie::MoreData,
                (0, 0xa0) if o == 0xa1 => Ie::SendingComplete,
                (0, 0xb0) => Ie::CongestionLevel(o & 0x0f),
                (0, 0xd0) => Ie::RepeatIndicator(o & 0x0f),
                _ => Ie::SingleOctet(o),
            });
        }
        let data = raw.data;
        let keep_raw = || {
            Ie::Raw(RawIe {
                codeset: raw.codeset,
                id: raw.id,
                data: data.to_vec(),
            })
        };
        if raw.codeset != 0 {
            return Ok(keep_raw());
        }
        let typed = match IeId::from(raw.id) {
            IeId::UserUser => {
                let Some((&pd, pdu)) = data.split_first() else {
                    return Err(Q931Error::new(
                        raw.offset,
                        Q931ErrorKind::ZeroLengthUserUser,
                    ));
                };
                return Ok(Ie::UserUser(UserUser {
                    protocol_discriminator: pd,
                    data: pdu.to_vec(),
                }));
            }
            IeId::ChannelIdentification => return Ok(Ie::ChannelIdentification(data.to_vec())),
            IeId::BearerCapability => BearerCapability::parse(data).map(Ie::BearerCapability),
            IeId::Cause => Cause::parse(data).map(Ie::Cause),
            IeId::CallState => CallState::parse(data).map(Ie::CallState),
            IeId::ProgressIndicator => ProgressIndicator::parse(data).map(Ie::ProgressIndicator),
            IeId::NotificationIndicator => {
                NotificationIndicator::parse(data).map(Ie::NotificationIndicator)
            }
            IeId::Display => core::str::from_utf8(data)
                .ok()
                .map(|s| Ie::Display(s.to_owned())),
            IeId::Keypad => ascii_string(data).map(Ie::Keypad),
            IeId::Signal => Signal::parse(data).map(Ie::Signal),
            IeId::CallingPartyNumber => PartyNumber::parse(data).map(Ie::CallingPartyNumber),
            IeId::CalledPartyNumber => PartyNumber::parse(data).map(Ie::CalledPartyNumber),
            _ => None,
        };
        // Typed only if the typed form gives back exactly these bytes.
        Ok(match typed {
            Some(ie) => {
                let mut again = Vec::with_capacity(data.len());
                match ie.encode_contents(&mut again) {
                    Ok(()) if again == data => ie,
                    _ => keep_raw(),
                }
            }
            None => keep_raw(),
        })
    }

    /// The identifier (for type 1 single-octet IEs, with the contents bits zero).
    pub fn id(&self) -> IeId {
        IeId::from(self.id_octet())
    }

    fn id_octet(&self) -> u8 {
        match self {
            Ie::Shift { .. } => 0x90,
            Ie::MoreData => 0xa0,
            Ie::SendingComplete => 0xa1,
            Ie::CongestionLevel(_) => 0xb0,
            Ie::RepeatIndicator(_) => 0xd0,
            Ie::SingleOctet(o) if o & 0xf0 == 0xa0 => *o,
            Ie::SingleOctet(o) => o & 0xf0,
            Ie::BearerCapability(_) => IeId::BearerCapability.into(),
            Ie::Cause(_) => IeId::Cause.into(),
            Ie::CallState(_) => IeId::CallState.into(),
            Ie::ChannelIdentification(_) => IeId::ChannelIdentification.into(),
            Ie::ProgressIndicator(_) => IeId::ProgressIndicator.into(),
            Ie::NotificationIndicator(_) => IeId::NotificationIndicator.into(),
            Ie::Display(_) => IeId::Display.into(),
            Ie::Keypad(_) => IeId::Keypad.into(),
            Ie::Signal(_) => IeId::Signal.into(),
            Ie::CallingPartyNumber(_) => IeId::CallingPartyNumber.into(),
            Ie::CalledPartyNumber(_) => IeId::CalledPartyNumber.into(),
            Ie::UserUser(_) => IeId::UserUser.into(),
            Ie::Raw(r) => r.id,
        }
    }

    /// The whole octet of a single-octet IE, `None` for variable-length IEs.
    pub(crate) fn single_octet(&self) -> Option<u8> {
        match self {
            Ie::Shift { locking, codeset } => {
                Some(0x90 | if *locking { 0 } else { 0x08 } | (codeset & 0x07))
            }
            Ie::MoreData => Some(0xa0),
            Ie::SendingComplete => Some(0xa1),
            Ie::CongestionLevel(v) => Some(0xb0 | (v & 0x0f)),
            Ie::RepeatIndicator(v) => Some(0xd0 | (v & 0x0f)),
            Ie::SingleOctet(o) => Some(*o),
            _ => None,
        }
    }

    /// Sort key for [`super::Message::insert`]: single-octet IEs first, then codeset 0 IEs by
    /// identifier; shifts and IEs of other codesets last.
    pub(crate) fn order_key(&self) -> u16 {
        match self {
            Ie::Shift { .. } => u16::MAX,
            Ie::Raw(r) if r.codeset != 0 => u16::MAX,
            _ if self.single_octet().is_some() => 0,
            _ => 1 + u16::from(self.id_octet()),
        }
    }

    /// Writes the IE in codeset `codeset` (the one the shifts before it select).
    pub(crate) fn encode(&self, codeset: u8, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        if let Some(octet) = self.single_octet() {
            let in_range = match self {
                Ie::Shift { codeset, .. } => *codeset <= 7,
                Ie::CongestionLevel(v) | Ie::RepeatIndicator(v) => *v <= 0x0f,
                Ie::SingleOctet(o) => o & 0x80 != 0,
                _ => true,
            };
            if !in_range {
                return Err(Q931EncodeError::FieldRange("single-octet IE"));
            }
            out.push(octet);
            return Ok(());
        }
        let id = self.id_octet();
        if id & 0x80 != 0 {
            return Err(Q931EncodeError::FieldRange("IE identifier"));
        }
        if codeset != 0 && !matches!(self, Ie::Raw(_)) {
            return Err(Q931EncodeError::WrongCodeset(self.id()));
        }
        let two_octet = codeset == 0 && id == u8::from(IeId::UserUser);
        let limit = if two_octet {
            MAX_USER_USER_LEN
        } else {
            MAX_IE_LEN
        };
        out.push(id);
        let len_at = out.len();
        out.extend_from_slice(if two_octet { &[0, 0] } else { &[0] });
        self.encode_contents(out)?;
        let len = out
            .len()
            .saturating_sub(len_at)
            .saturating_sub(if two_octet { 2 } else { 1 });
        if len > limit {
            return Err(Q931EncodeError::IeTooLong { ie: id, len, limit });
        }
        if two_octet && len == 0 {
            return Err(Q931EncodeError::ZeroLengthUserUser);
        }
        // Patch the length now that the contents are written.
        let len_bytes =
            u16::try_from(len).map_err(|_| Q931EncodeError::IeTooLong { ie: id, len, limit })?;
        let [hi, lo] = len_bytes.to_be_bytes();
        if two_octet {
            if let Some(dst) = out.get_mut(len_at..len_at + 2) {
                dst.copy_from_slice(&[hi, lo]);
            }
        } else if let Some(dst) = out.get_mut(len_at) {
            *dst = lo;
        }
        Ok(())
    }

    /// Writes the contents of a variable-length IE (nothing for single-octet IEs).
    pub(crate) fn encode_contents(&self, out: &mut Vec<u8>) -> Result<(), Q931EncodeError> {
        match self {
            Ie::Shift { .. }
            | Ie::MoreData
            | Ie::SendingComplete
            | Ie::CongestionLevel(_)
            | Ie::RepeatIndicator(_)
            | Ie::SingleOctet(_) => {}
            Ie::BearerCapability(v) => v.emit(out)?,
            Ie::Cause(v) => v.emit(out)?,
            Ie::CallState(v) => v.emit(out)?,
            Ie::ChannelIdentification(v) => out.extend_from_slice(v),
            Ie::ProgressIndicator(v) => v.emit(out)?,
            Ie::NotificationIndicator(v) => v.emit(out)?,
            Ie::Display(v) => {
                // Never a control character: a Display IE is shown and carried into SIP
                // headers (header injection). A received one with control characters does
                // not type as Display (it is kept raw, and `Message::display` has none).
                // Trailing NULs are the C-string terminator many endpoints send.
                if v.trim_end_matches('\0').chars().any(char::is_control) {
                    return Err(Q931EncodeError::FieldRange(
                        "display holds a control character",
                    ));
                }
                out.extend_from_slice(v.as_bytes())
            }
            Ie::Keypad(v) => {
                if !v.is_ascii() {
                    return Err(Q931EncodeError::FieldRange("keypad is not IA5"));
                }
                out.extend_from_slice(v.as_bytes());
            }
            Ie::Signal(v) => out.push(v.0),
            Ie::CallingPartyNumber(v) | Ie::CalledPartyNumber(v) => v.emit(out)?,
            Ie::UserUser(v) => {
                out.push(v.protocol_discriminator);
                out.extend_from_slice(&v.data);
            }
            Ie::Raw(r) => out.extend_from_slice(&r.data),
        }
        Ok(())
    }
}
