//! Q.931 message types (Q.931 clause 4.4, table 4-2) used by H.225.0.

wire_enum! {
    /// The message type octet. Types H.225.0 does not use (Suspend, Resume, ...) are `Unknown`.
    pub enum MessageType: u8 {
        Alerting = 0x01,
        CallProceeding = 0x02,
        Progress = 0x03,
        Setup = 0x05,
        Connect = 0x07,
        SetupAcknowledge = 0x0d,
        ConnectAcknowledge = 0x0f,
        UserInformation = 0x20,
        Disconnect = 0x45,
        Release = 0x4d,
        ReleaseComplete = 0x5a,
        Facility = 0x62,
        Notify = 0x6e,
        StatusEnquiry = 0x75,
        Information = 0x7b,
        Status = 0x7d,
    }
}

impl MessageType {
    /// The name as Q.931 spells it ("Setup", "Release Complete", ...).
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Alerting => "Alerting",
            MessageType::CallProceeding => "Call Proceeding",
            MessageType::Progress => "Progress",
            MessageType::Setup => "Setup",
            MessageType::Connect => "Connect",
            MessageType::SetupAcknowledge => "Setup Acknowledge",
            MessageType::ConnectAcknowledge => "Connect Acknowledge",
            MessageType::UserInformation => "User Information",
            MessageType::Disconnect => "Disconnect",
            MessageType::Release => "Release",
            MessageType::ReleaseComplete => "Release Complete",
            MessageType::Facility => "Facility",
            MessageType::Notify => "Notify",
            MessageType::StatusEnquiry => "Status Enquiry",
            MessageType::Information => "Information",
            MessageType::Status => "Status",
            MessageType::Unknown(_) => "Unknown",
        }
    }
}
