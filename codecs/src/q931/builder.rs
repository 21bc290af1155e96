//! Builders for the messages a gateway sends (H.225.0 clause 7.3). Each takes the H.225.0 PDU
//! for the User-user IE as encoded bytes; `with_*` add optional IEs in Q.931 order.

use super::{
    BearerCapability, CallRef, CallState, Cause, Ie, Message, MessageType, PartyNumber,
    ProgressIndicator, UserUser,
};

impl Message {
    fn with_h225(msg_type: MessageType, call_ref: CallRef, h225: Vec<u8>) -> Message {
        Message::new(msg_type, call_ref).with(Ie::UserUser(UserUser::h225(h225)))
    }

    /// Setup with its mandatory Bearer capability and User-user IEs; add numbers and display
    /// with [`Message::with_calling_number`], [`Message::with_called_number`],
    /// [`Message::with_display`].
    pub fn setup(call_ref: CallRef, bearer: BearerCapability, h225: Vec<u8>) -> Message {
        Message::with_h225(MessageType::Setup, call_ref, h225).with(Ie::BearerCapability(bearer))
    }

    pub fn call_proceeding(call_ref: CallRef, h225: Vec<u8>) -> Message {
        Message::with_h225(MessageType::CallProceeding, call_ref, h225)
    }

    pub fn alerting(call_ref: CallRef, h225: Vec<u8>) -> Message {
        Message::with_h225(MessageType::Alerting, call_ref, h225)
    }

    pub fn progress(call_ref: CallRef, indicator: ProgressIndicator, h225: Vec<u8>) -> Message {
        Message::with_h225(MessageType::Progress, call_ref, h225)
            .with(Ie::ProgressIndicator(indicator))
    }

    pub fn connect(call_ref: CallRef, h225: Vec<u8>) -> Message {
        Message::with_h225(MessageType::Connect, call_ref, h225)
    }

    /// Release Complete; H.225.0 lets the cause travel in the Cause IE, the PDU's
    /// ReleaseCompleteReason, or both.
    pub fn release_complete(call_ref: CallRef, cause: Option<Cause>, h225: Vec<u8>) -> Message {
        let m = Message::with_h225(MessageType::ReleaseComplete, call_ref, h225);
        match cause {
            Some(c) => m.with(Ie::Cause(c)),
            None => m,
        }
    }

    pub fn facility(call_ref: CallRef, h225: Vec<u8>) -> Message {
        Message::with_h225(MessageType::Facility, call_ref, h225)
    }

    /// Status with its mandatory Cause and Call state (Q.931 clause 3.1.16), e.g. cause 30
    /// in answer to Status Enquiry, or cause 96/100 for a malformed message (clause 5.8).
    pub fn status(call_ref: CallRef, cause: Cause, state: CallState) -> Message {
        Message::new(MessageType::Status, call_ref)
            .with(Ie::Cause(cause))
            .with(Ie::CallState(state))
    }

    pub fn status_enquiry(call_ref: CallRef) -> Message {
        Message::new(MessageType::StatusEnquiry, call_ref)
    }

    pub fn with_calling_number(self, number: PartyNumber) -> Message {
        self.with(Ie::CallingPartyNumber(number))
    }

    pub fn with_called_number(self, number: PartyNumber) -> Message {
        self.with(Ie::CalledPartyNumber(number))
    }

    pub fn with_display(self, text: &str) -> Message {
        self.with(Ie::Display(text.to_owned()))
    }

    pub fn with_cause(self, cause: Cause) -> Message {
        self.with(Ie::Cause(cause))
    }

    pub fn with_sending_complete(self) -> Message {
        self.with(Ie::SendingComplete)
    }
}
