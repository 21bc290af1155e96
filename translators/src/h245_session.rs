//! The H.245 procedures of one H.323 call leg, sans I/O: capability exchange, master/slave
//! determination, logical channels, round-trip delay, user input and end of session (H.245
//! clause 8 and its SDLs, as H.323 clause 8.2 to 8.5 uses them for calls without fastStart).
//!
//! The leg feeds decoded messages to [`Session::handle`] (from a separate H.245 connection or
//! tunnelled in H.225.0, the session does not care), asks for what to send with
//! [`Session::poll_message`] and learns what happened with [`Session::poll_event`]. Timers are
//! the leg's: it calls [`Session::handle_timeout`] at [`Session::poll_timeout`].
//!
//! What this side does, as a gateway (terminal type 60, H.323 table 1):
//! - Capabilities: it sends one TerminalCapabilitySet with the audio codecs the leg gives it
//!   (receive capabilities, one alternative set) and user input (DTMF, hookflash, basic
//!   string). The far end's set is checked (every descriptor refers to a defined entry; at most
//!   [`MAX_TABLE_ENTRIES`]) and acknowledged; its receive audio capabilities are the codecs this
//!   side may send.
//! - Master/slave (clause 8.2): terminal type first, then the 24-bit random numbers; identical
//!   numbers are rejected and retried with new ones, up to [`MSD_RETRIES`] times.
//! - Logical channels: the far end's audio channels are accepted when their codec is one of
//!   ours (else OpenLogicalChannelReject, dataTypeNotSupported), video and data are refused, at
//!   most [`MAX_INCOMING_CHANNELS`] at once. This side opens one audio channel, once both
//!   capability sets are known and master/slave is determined.
//! - Anything the far end asks that this side does not do is answered as H.245 says:
//!   FunctionNotSupported for requests, nothing for unknown commands and indications.
//! - Every request this side sends is timed ([`RESPONSE_TIMEOUT`]): no answer fails the
//!   session, and the leg releases the call.
//!
//! State is bounded: a fixed number of channels, one outstanding request of each kind, and a
//! queue emptied after each input.

use codecs::h245::{self as ch245, asn, AUDIO_SESSION};
use codecs::meta::Codec;
use h323_asn1::rasn::types::{ObjectIdentifier, SetOf};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use asn::{
    Capability, CapabilityDescriptor, CapabilityDescriptorNumber, CapabilityTableEntry,
    CapabilityTableEntryNumber, CloseLogicalChannel, CloseLogicalChannelAck,
    CloseLogicalChannelSource, CommandMessage, DataType, EndSessionCommand, FunctionNotSupported,
    FunctionNotSupportedCause, H2250LogicalChannelAckParameters, IndicationMessage,
    LogicalChannelNumber, MasterSlaveDetermination, MasterSlaveDeterminationAck,
    MasterSlaveDeterminationAckDecision as Decision, MasterSlaveDeterminationReject,
    MasterSlaveDeterminationRejectCause, MultimediaSystemControlMessage as Msg,
    OpenLogicalChannelAck, OpenLogicalChannelAckForwardMultiplexAckParameters as AckMux,
    OpenLogicalChannelReject, OpenLogicalChannelRejectCause, RequestChannelCloseAck,
    RequestMessage, ResponseMessage, RoundTripDelayRequest, RoundTripDelayResponse, SequenceNumber,
    TerminalCapabilitySet, TerminalCapabilitySetAck, TerminalCapabilitySetReject,
    TerminalCapabilitySetRejectCause, UserInputCapability,
};

/// The H.245 version this side announces: {itu-t recommendation h 245 version(0) 7}.
pub const PROTOCOL_IDENTIFIER: &[u32] = &[0, 0, 8, 245, 0, 7];
/// Terminal type of a gateway in master/slave determination (H.323 table 1).
pub const TERMINAL_TYPE_GATEWAY: u8 = 60;
/// Capability table entries accepted in the far end's TerminalCapabilitySet.
pub const MAX_TABLE_ENTRIES: usize = 256;
/// Logical channels from the far end open at once.
pub const MAX_INCOMING_CHANNELS: usize = 4;
/// Master/slave determinations retried after identical numbers (H.245 counter N100).
pub const MSD_RETRIES: u8 = 3;
/// How long a request waits for its answer (H.245 timers T101, T103, T106, T105).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames per packet announced for audio (20 ms of G.711).
pub const FRAMES: u16 = ch245::DEFAULT_FRAMES;

/// Who decides channel conflicts (H.245 clause 8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterSlave {
    Master,
    Slave,
}

/// What happened, for the leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The far end's capability set was acknowledged: the codecs it can receive, in its order.
    RemoteCapabilities(Vec<Codec>),
    /// Master/slave determination ended.
    Determined(MasterSlave),
    /// The far end opened (and this side acknowledged) a channel toward us.
    IncomingChannel {
        number: u16,
        codec: Codec,
        /// Where the far end wants RTCP about this stream (`mediaControlChannel`).
        rtcp: Option<SocketAddr>,
    },
    /// The far end closed its channel toward us.
    IncomingChannelClosed { number: u16 },
    /// Our channel was acknowledged: send RTP to `rtp`.
    OutgoingChannel {
        codec: Codec,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
    /// Our channel was refused or closed by the far end.
    OutgoingChannelClosed { why: String },
    /// A digit from a UserInputIndication: RFC 4733 event and duration.
    Dtmf { event: u8, duration_ms: u16 },
    /// A round trip measured with RoundTripDelayRequest.
    RoundTrip(Duration),
    /// The far end ended the session (EndSessionCommand).
    EndSession,
    /// A procedure failed (no answer in time, rejected capabilities, indeterminate
    /// master/slave): the leg should release the call.
    Failed(String),
}

/// A message the session could not use, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Answered as not supported, or ignored: names why.
    Ignored(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsdState {
    Idle,
    /// We sent MSD and wait for the far end's MSD or Ack.
    Outgoing,
    /// We acknowledged the far end's MSD with our decision and wait for its Ack.
    Incoming(MasterSlave),
    Done(MasterSlave),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OutChannel {
    /// Asked for by the leg, sent once capabilities and master/slave are known, with the
    /// first of `codecs` the far end can receive.
    Wanted {
        codecs: Vec<Codec>,
        rtcp: SocketAddr,
    },
    AwaitingAck {
        codec: Codec,
    },
    Open,
}

#[derive(Debug, Clone)]
struct InChannel {
    number: u16,
    codec: Codec,
}

/// Timed requests: one outstanding of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Tcs,
    Msd,
    Olc,
    Rtd,
}

pub struct Session {
    terminal_type: u8,
    /// Our status determination number; a new one on every retry (24 bits).
    number: u32,
    random: u64,
    msd: MsdState,
    msd_retries: u8,
    local: Vec<Codec>,
    tcs_seq: u8,
    tcs_acked: bool,
    remote: Option<Vec<Codec>>,
    /// Where our acknowledgements point the far end's RTP and RTCP.
    media: Option<(SocketAddr, SocketAddr)>,
    /// The far end's channels not yet acknowledged because [`Self::media`] was not known.
    held: Vec<(u16, Codec, Option<SocketAddr>)>,
    incoming: Vec<InChannel>,
    outgoing: Option<OutChannel>,
    out_number: u16,
    rtd_seq: u8,
    rtd_sent: Option<Duration>,
    timers: Vec<(Pending, Duration)>,
    ended: bool,
    end_sent: bool,
    messages: VecDeque<Msg>,
    events: VecDeque<SessionEvent>,
}

impl Session {
    /// A session for a gateway leg; `seed` gives the random numbers of master/slave
    /// determination (any value; the leg derives it from its unpredictable call ids).
    pub fn new(seed: u64) -> Self {
        let mut s = Session {
            terminal_type: TERMINAL_TYPE_GATEWAY,
            number: 0,
            random: seed | 1,
            msd: MsdState::Idle,
            msd_retries: 0,
            local: Vec::new(),
            tcs_seq: 0,
            tcs_acked: false,
            remote: None,
            media: None,
            held: Vec::new(),
            incoming: Vec::new(),
            outgoing: None,
            out_number: 0,
            rtd_seq: 0,
            rtd_sent: None,
            timers: Vec::new(),
            ended: false,
            end_sent: false,
            messages: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.number = s.next_number();
        s
    }

    /// xorshift64: the numbers only need to differ between the two ends.
    fn next_number(&mut self) -> u32 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        ((x >> 20) as u32) & 0x00FF_FFFF
    }

    pub fn poll_message(&mut self) -> Option<Msg> {
        self.messages.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The far end's codecs, once its capability set came.
    pub fn remote_capabilities(&self) -> Option<&[Codec]> {
        self.remote.as_deref()
    }

    /// Our capability set was acknowledged.
    pub fn capabilities_acknowledged(&self) -> bool {
        self.tcs_acked
    }

    pub fn master_slave(&self) -> Option<MasterSlave> {
        match self.msd {
            MsdState::Done(d) => Some(d),
            _ => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether our channel is open (acknowledged).
    pub fn outgoing_open(&self) -> bool {
        self.outgoing == Some(OutChannel::Open)
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.iter().map(|(_, t)| *t).min()
    }

    fn arm(&mut self, now: Duration, what: Pending) {
        self.timers.retain(|(p, _)| *p != what);
        self.timers.push((what, now + RESPONSE_TIMEOUT));
    }

    fn disarm(&mut self, what: Pending) {
        self.timers.retain(|(p, _)| *p != what);
    }

    fn fail(&mut self, why: String) {
        self.timers.clear();
        self.events.push_back(SessionEvent::Failed(why));
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        let expired: Vec<Pending> = self
            .timers
            .iter()
            .filter(|(_, t)| *t <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.disarm(p);
            match p {
                // A lost round trip is only not measured.
                Pending::Rtd => self.rtd_sent = None,
                Pending::Tcs => self.fail("no answer to TerminalCapabilitySet".to_owned()),
                Pending::Msd => self.fail("no answer to MasterSlaveDetermination".to_owned()),
                Pending::Olc => self.fail("no answer to OpenLogicalChannel".to_owned()),
            }
        }
    }

    /// Sends our capability set: `codecs` (those H.245 has capabilities for) and user input.
    /// May be called again; each set gets the next sequence number.
    pub fn send_capabilities(&mut self, now: Duration, codecs: &[Codec]) {
        if self.ended {
            return;
        }
        self.local = codecs
            .iter()
            .filter(|c| ch245::codec_to_audio(c, FRAMES).is_some())
            .cloned()
            .collect();
        self.tcs_seq = self.tcs_seq.wrapping_add(1);
        self.tcs_acked = false;
        self.messages.push_back(self.capability_set());
        self.arm(now, Pending::Tcs);
        // Channels the far end opened before we knew our codecs are checked now.
        self.ack_held();
    }

    fn capability_set(&self) -> Msg {
        let mut table = Vec::new();
        let mut audio = Vec::new();
        let mut input = Vec::new();
        let mut n: u16 = 0;
        for c in &self.local {
            if let Some(a) = ch245::codec_to_audio(c, FRAMES) {
                n += 1;
                table.push(CapabilityTableEntry::new(
                    CapabilityTableEntryNumber(n),
                    Some(Capability::receiveAudioCapability(a)),
                ));
                audio.push(CapabilityTableEntryNumber(n));
            }
        }
        for u in [
            UserInputCapability::basicString(()),
            UserInputCapability::dtmf(()),
            UserInputCapability::hookflash(()),
        ] {
            n += 1;
            table.push(CapabilityTableEntry::new(
                CapabilityTableEntryNumber(n),
                Some(Capability::receiveUserInputCapability(u)),
            ));
            input.push(CapabilityTableEntryNumber(n));
        }
        let mut simultaneous = Vec::new();
        if !audio.is_empty() {
            simultaneous.push(asn::AlternativeCapabilitySet(audio));
        }
        simultaneous.push(asn::AlternativeCapabilitySet(input));
        let descriptor = CapabilityDescriptor::new(
            CapabilityDescriptorNumber(0),
            Some(SetOf::from_vec(simultaneous)),
        );
        Msg::request(RequestMessage::terminalCapabilitySet(
            TerminalCapabilitySet::new(
                SequenceNumber(self.tcs_seq),
                ObjectIdentifier::new_unchecked(std::borrow::Cow::Borrowed(PROTOCOL_IDENTIFIER)),
                None,
                Some(SetOf::from_vec(table)),
                Some(SetOf::from_vec(vec![descriptor])),
                None,
            ),
        ))
    }

    /// Starts master/slave determination (once; the far end may start it too).
    pub fn determine_master_slave(&mut self, now: Duration) {
        if self.ended || self.msd != MsdState::Idle {
            return;
        }
        self.msd = MsdState::Outgoing;
        self.messages
            .push_back(Msg::request(RequestMessage::masterSlaveDetermination(
                MasterSlaveDetermination::new(self.terminal_type, self.number),
            )));
        self.arm(now, Pending::Msd);
    }

    /// Where the far end's channels are to send RTP and RTCP (our receive addresses).
    /// Channels it opened before this was known are acknowledged now.
    pub fn set_media(&mut self, rtp: SocketAddr, rtcp: SocketAddr) {
        self.media = Some((rtp, rtcp));
        self.ack_held();
    }

    /// Opens our audio channel (RTCP about it to `rtcp`) with the first of `codecs` (in
    /// preference order) the far end can receive, as soon as both capability sets are known
    /// and master/slave is determined. Once per session.
    pub fn open_channel(&mut self, now: Duration, codecs: Vec<Codec>, rtcp: SocketAddr) {
        if self.ended || self.outgoing.is_some() {
            return;
        }
        self.outgoing = Some(OutChannel::Wanted { codecs, rtcp });
        self.try_open(now);
    }

    fn try_open(&mut self, now: Duration) {
        let Some(OutChannel::Wanted { codecs, rtcp }) = self.outgoing.clone() else {
            return;
        };
        let (Some(remote), Some(_)) = (&self.remote, self.master_slave()) else {
            return;
        };
        let chosen = codecs.iter().find_map(|c| {
            let receivable = remote.iter().any(|r| r.name.eq_ignore_ascii_case(&c.name));
            let audio = ch245::codec_to_audio(c, FRAMES)?;
            receivable.then(|| (c.clone(), audio))
        });
        let Some((codec, audio)) = chosen else {
            self.outgoing = None;
            self.events.push_back(SessionEvent::OutgoingChannelClosed {
                why: "the far end can receive none of our codecs".to_owned(),
            });
            return;
        };
        self.out_number = 1;
        let olc = ch245::forward_olc(self.out_number, audio, None, Some(rtcp));
        self.messages
            .push_back(Msg::request(RequestMessage::openLogicalChannel(olc)));
        self.outgoing = Some(OutChannel::AwaitingAck { codec });
        self.arm(now, Pending::Olc);
    }

    /// Sends a RoundTripDelayRequest (one at a time).
    pub fn round_trip(&mut self, now: Duration) {
        if self.ended || self.rtd_sent.is_some() {
            return;
        }
        self.rtd_seq = self.rtd_seq.wrapping_add(1);
        self.rtd_sent = Some(now);
        self.messages
            .push_back(Msg::request(RequestMessage::roundTripDelayRequest(
                RoundTripDelayRequest::new(SequenceNumber(self.rtd_seq)),
            )));
        self.arm(now, Pending::Rtd);
    }

    /// A digit toward the far end: UserInputIndication `signal` (with duration), or
    /// `alphanumeric` for far ends whose capabilities have no DTMF signal.
    pub fn send_dtmf(&mut self, event: u8, duration_ms: u16, alphanumeric: bool) {
        if self.ended {
            return;
        }
        let m = if alphanumeric {
            ch245::user_input_alphanumeric(event)
        } else {
            ch245::user_input_signal(event, duration_ms)
        };
        if let Some(m) = m {
            self.messages.push_back(m);
        }
    }

    /// Ends the session (H.323 clause 8.5): closes our channel, then EndSessionCommand.
    pub fn end(&mut self) {
        if self.end_sent {
            return;
        }
        if matches!(
            self.outgoing,
            Some(OutChannel::Open | OutChannel::AwaitingAck { .. })
        ) {
            self.messages
                .push_back(Msg::request(RequestMessage::closeLogicalChannel(
                    CloseLogicalChannel::new(
                        LogicalChannelNumber(self.out_number),
                        CloseLogicalChannelSource::user(()),
                        None,
                    ),
                )));
        }
        self.outgoing = None;
        self.messages
            .push_back(Msg::command(CommandMessage::endSessionCommand(
                EndSessionCommand::disconnect(()),
            )));
        self.end_sent = true;
        self.ended = true;
        self.timers.clear();
    }

    /// One message from the far end.
    pub fn handle(&mut self, now: Duration, m: Msg) -> Verdict {
        if self.ended {
            return Verdict::Ignored("the session has ended");
        }
        match m {
            Msg::request(r) => self.handle_request(now, r),
            Msg::response(r) => self.handle_response(now, r),
            Msg::command(CommandMessage::endSessionCommand(_)) => {
                self.events.push_back(SessionEvent::EndSession);
                self.end();
                Verdict::Accepted
            }
            Msg::command(_) => Verdict::Ignored("command not supported"),
            Msg::indication(IndicationMessage::userInput(u)) => match ch245::user_input_event(&u) {
                Some((event, duration_ms)) => {
                    self.events
                        .push_back(SessionEvent::Dtmf { event, duration_ms });
                    Verdict::Accepted
                }
                None => Verdict::Ignored("user input that is no DTMF digit"),
            },
            Msg::indication(IndicationMessage::masterSlaveDeterminationRelease(_)) => {
                if matches!(self.msd, MsdState::Outgoing | MsdState::Incoming(_)) {
                    self.fail("master/slave determination released".to_owned());
                }
                Verdict::Accepted
            }
            Msg::indication(_) => Verdict::Ignored("indication not used"),
            _ => Verdict::Ignored("unknown message"),
        }
    }

    fn handle_request(&mut self, now: Duration, r: RequestMessage) -> Verdict {
        match r {
            RequestMessage::terminalCapabilitySet(t) => {
                self.remote_tcs(now, &t);
                Verdict::Accepted
            }
            RequestMessage::masterSlaveDetermination(m) => {
                self.remote_msd(now, &m);
                Verdict::Accepted
            }
            RequestMessage::openLogicalChannel(olc) => self.remote_olc(&olc),
            RequestMessage::closeLogicalChannel(c) => {
                let n = c.forward_logical_channel_number.0;
                self.messages
                    .push_back(Msg::response(ResponseMessage::closeLogicalChannelAck(
                        CloseLogicalChannelAck::new(LogicalChannelNumber(n)),
                    )));
                let before = self.incoming.len();
                self.incoming.retain(|c| c.number != n);
                self.held.retain(|(h, _, _)| *h != n);
                if self.incoming.len() != before {
                    self.events
                        .push_back(SessionEvent::IncomingChannelClosed { number: n });
                }
                Verdict::Accepted
            }
            RequestMessage::requestChannelClose(c) => {
                let n = c.forward_logical_channel_number.0;
                self.messages
                    .push_back(Msg::response(ResponseMessage::requestChannelCloseAck(
                        RequestChannelCloseAck::new(LogicalChannelNumber(n)),
                    )));
                if n == self.out_number && self.outgoing.is_some() {
                    self.messages
                        .push_back(Msg::request(RequestMessage::closeLogicalChannel(
                            CloseLogicalChannel::new(
                                LogicalChannelNumber(n),
                                CloseLogicalChannelSource::user(()),
                                None,
                            ),
                        )));
                    self.outgoing = None;
                    self.disarm(Pending::Olc);
                    self.events.push_back(SessionEvent::OutgoingChannelClosed {
                        why: "the far end asked to close it".to_owned(),
                    });
                }
                Verdict::Accepted
            }
            RequestMessage::roundTripDelayRequest(q) => {
                self.messages
                    .push_back(Msg::response(ResponseMessage::roundTripDelayResponse(
                        RoundTripDelayResponse::new(q.sequence_number),
                    )));
                Verdict::Accepted
            }
            other => {
                let bytes = h323_asn1::encode_h245(&Msg::request(other))
                    .ok()
                    .map(h323_asn1::rasn::types::OctetString::from);
                self.messages
                    .push_back(Msg::indication(IndicationMessage::functionNotSupported(
                        FunctionNotSupported::new(
                            FunctionNotSupportedCause::unknownFunction(()),
                            bytes,
                        ),
                    )));
                Verdict::Ignored("request not supported: answered FunctionNotSupported")
            }
        }
    }

    fn handle_response(&mut self, now: Duration, r: ResponseMessage) -> Verdict {
        match r {
            ResponseMessage::terminalCapabilitySetAck(a) => {
                if a.sequence_number.0 != self.tcs_seq || self.tcs_acked {
                    return Verdict::Ignored("acknowledges no capability set of ours");
                }
                self.tcs_acked = true;
                self.disarm(Pending::Tcs);
                self.try_open(now);
                Verdict::Accepted
            }
            ResponseMessage::terminalCapabilitySetReject(r) => {
                if r.sequence_number.0 != self.tcs_seq {
                    return Verdict::Ignored("rejects no capability set of ours");
                }
                self.fail("our TerminalCapabilitySet was rejected".to_owned());
                Verdict::Accepted
            }
            ResponseMessage::masterSlaveDeterminationAck(a) => {
                let ours = match a.decision {
                    Decision::master(()) => MasterSlave::Master,
                    Decision::slave(()) => MasterSlave::Slave,
                };
                match self.msd {
                    MsdState::Outgoing => {
                        // The far end decided; we agree by acknowledging its view.
                        self.messages.push_back(Msg::response(
                            ResponseMessage::masterSlaveDeterminationAck(
                                MasterSlaveDeterminationAck::new(decision_for_far_end(ours)),
                            ),
                        ));
                        self.determined(now, ours);
                        Verdict::Accepted
                    }
                    MsdState::Incoming(d) if d == ours => {
                        self.determined(now, d);
                        Verdict::Accepted
                    }
                    MsdState::Incoming(_) => {
                        self.fail("master/slave determination: the ends disagree".to_owned());
                        Verdict::Accepted
                    }
                    _ => Verdict::Ignored("no master/slave determination in progress"),
                }
            }
            ResponseMessage::masterSlaveDeterminationReject(_) => {
                if !matches!(self.msd, MsdState::Outgoing | MsdState::Incoming(_)) {
                    return Verdict::Ignored("no master/slave determination in progress");
                }
                self.retry_msd(now);
                Verdict::Accepted
            }
            ResponseMessage::openLogicalChannelAck(a) => self.olc_ack(&a),
            ResponseMessage::openLogicalChannelReject(r) => {
                if r.forward_logical_channel_number.0 != self.out_number
                    || !matches!(self.outgoing, Some(OutChannel::AwaitingAck { .. }))
                {
                    return Verdict::Ignored("rejects no channel of ours");
                }
                self.outgoing = None;
                self.disarm(Pending::Olc);
                self.events.push_back(SessionEvent::OutgoingChannelClosed {
                    why: "the far end rejected our channel".to_owned(),
                });
                Verdict::Accepted
            }
            ResponseMessage::roundTripDelayResponse(r) => match self.rtd_sent {
                Some(sent) if r.sequence_number.0 == self.rtd_seq => {
                    self.rtd_sent = None;
                    self.disarm(Pending::Rtd);
                    self.events
                        .push_back(SessionEvent::RoundTrip(now.saturating_sub(sent)));
                    Verdict::Accepted
                }
                _ => Verdict::Ignored("answers no round trip of ours"),
            },
            ResponseMessage::closeLogicalChannelAck(_)
            | ResponseMessage::requestChannelCloseAck(_)
            | ResponseMessage::requestChannelCloseReject(_) => Verdict::Accepted,
            _ => Verdict::Ignored("response to nothing we asked"),
        }
    }

    fn remote_tcs(&mut self, now: Duration, t: &TerminalCapabilitySet) {
        let seq = t.sequence_number.0;
        let reject = |s: &mut Self, cause: TerminalCapabilitySetRejectCause| {
            s.messages
                .push_back(Msg::response(ResponseMessage::terminalCapabilitySetReject(
                    TerminalCapabilitySetReject::new(SequenceNumber(seq), cause, None),
                )));
        };
        let entries: Vec<&CapabilityTableEntry> = t
            .capability_table
            .as_ref()
            .map(|s| s.iter().collect())
            .unwrap_or_default();
        if entries.len() > MAX_TABLE_ENTRIES {
            reject(self, TerminalCapabilitySetRejectCause::unspecified(()));
            return;
        }
        let defined = |n: u16| {
            entries
                .iter()
                .any(|e| e.capability_table_entry_number.0 == n)
        };
        let undefined = t
            .capability_descriptors
            .iter()
            .flat_map(|d| d.iter())
            .any(|d| {
                d.simultaneous_capabilities
                    .iter()
                    .flat_map(|s| s.iter())
                    .flat_map(|alt| alt.0.iter())
                    .any(|n| !defined(n.0))
            });
        if undefined {
            reject(
                self,
                TerminalCapabilitySetRejectCause::undefinedTableEntryUsed(()),
            );
            return;
        }
        let mut codecs: Vec<Codec> = Vec::new();
        for e in &entries {
            let audio = match &e.capability {
                Some(Capability::receiveAudioCapability(a))
                | Some(Capability::receiveAndTransmitAudioCapability(a)) => a,
                _ => continue,
            };
            if let Some(c) = ch245::audio_to_codec(audio) {
                if !codecs.iter().any(|k| k.name == c.name) {
                    codecs.push(c);
                }
            }
        }
        self.messages
            .push_back(Msg::response(ResponseMessage::terminalCapabilitySetAck(
                TerminalCapabilitySetAck::new(SequenceNumber(seq), None),
            )));
        self.remote = Some(codecs.clone());
        self.events
            .push_back(SessionEvent::RemoteCapabilities(codecs));
        self.try_open(now);
    }

    /// Clause 8.2: the larger terminal type is master; then the status determination numbers,
    /// modulo 2^24.
    fn decide(&self, remote_type: u8, remote_number: u32) -> Option<MasterSlave> {
        if self.terminal_type != remote_type {
            return Some(if self.terminal_type > remote_type {
                MasterSlave::Master
            } else {
                MasterSlave::Slave
            });
        }
        let diff = remote_number.wrapping_sub(self.number) & 0x00FF_FFFF;
        match diff {
            0 | 0x0080_0000 => None,
            d if d < 0x0080_0000 => Some(MasterSlave::Master),
            _ => Some(MasterSlave::Slave),
        }
    }

    fn remote_msd(&mut self, now: Duration, m: &MasterSlaveDetermination) {
        match self.decide(m.terminal_type, m.status_determination_number & 0x00FF_FFFF) {
            None => {
                self.messages.push_back(Msg::response(
                    ResponseMessage::masterSlaveDeterminationReject(
                        MasterSlaveDeterminationReject::new(
                            MasterSlaveDeterminationRejectCause::identicalNumbers(()),
                        ),
                    ),
                ));
                // Both ends then start again with new numbers.
                if self.msd == MsdState::Outgoing {
                    self.retry_msd(now);
                }
            }
            Some(d) => {
                self.messages.push_back(Msg::response(
                    ResponseMessage::masterSlaveDeterminationAck(MasterSlaveDeterminationAck::new(
                        decision_for_far_end(d),
                    )),
                ));
                self.msd = MsdState::Incoming(d);
                self.arm(now, Pending::Msd);
            }
        }
    }

    fn retry_msd(&mut self, now: Duration) {
        self.msd_retries += 1;
        if self.msd_retries > MSD_RETRIES {
            self.fail("master/slave determination stayed indeterminate".to_owned());
            return;
        }
        self.number = self.next_number();
        self.msd = MsdState::Idle;
        self.determine_master_slave(now);
    }

    fn determined(&mut self, now: Duration, d: MasterSlave) {
        self.msd = MsdState::Done(d);
        self.disarm(Pending::Msd);
        self.events.push_back(SessionEvent::Determined(d));
        self.try_open(now);
    }

    fn remote_olc(&mut self, olc: &asn::OpenLogicalChannel) -> Verdict {
        let info = ch245::olc_media(olc);
        let n = info.number;
        let reject = |s: &mut Self, cause: OpenLogicalChannelRejectCause| {
            s.messages
                .push_back(Msg::response(ResponseMessage::openLogicalChannelReject(
                    OpenLogicalChannelReject::new(LogicalChannelNumber(n), cause, None),
                )));
        };
        let audio = matches!(
            olc.forward_logical_channel_parameters.data_type,
            DataType::audioData(_)
        );
        if !audio || !info.forward || olc.reverse_logical_channel_parameters.is_some() {
            // Video, data and bidirectional channels: this gateway carries audio only.
            reject(
                self,
                OpenLogicalChannelRejectCause::dataTypeNotSupported(()),
            );
            return Verdict::Ignored("only unidirectional audio channels are accepted");
        }
        if info.session_id != AUDIO_SESSION {
            reject(self, OpenLogicalChannelRejectCause::invalidSessionID(()));
            return Verdict::Ignored("audio channel outside session 1");
        }
        if self.incoming.iter().any(|c| c.number == n) || self.held.iter().any(|h| h.0 == n) {
            reject(self, OpenLogicalChannelRejectCause::unspecified(()));
            return Verdict::Ignored("channel number already open");
        }
        if self.incoming.len() + self.held.len() >= MAX_INCOMING_CHANNELS {
            reject(
                self,
                OpenLogicalChannelRejectCause::insufficientBandwidth(()),
            );
            return Verdict::Ignored("too many channels open");
        }
        let Some(codec) = info.codec else {
            reject(self, OpenLogicalChannelRejectCause::unknownDataType(()));
            return Verdict::Ignored("audio codec without a Meta equivalent");
        };
        self.held.push((n, codec, info.media_control_channel));
        self.ack_held();
        Verdict::Accepted
    }

    /// Acknowledges (or rejects) the far end's channels once our codecs and addresses are
    /// known.
    fn ack_held(&mut self) {
        let Some((rtp, rtcp)) = self.media else {
            return;
        };
        if self.local.is_empty() {
            return;
        }
        for (n, codec, remote_rtcp) in std::mem::take(&mut self.held) {
            if !self
                .local
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&codec.name))
            {
                self.messages
                    .push_back(Msg::response(ResponseMessage::openLogicalChannelReject(
                        OpenLogicalChannelReject::new(
                            LogicalChannelNumber(n),
                            OpenLogicalChannelRejectCause::dataTypeNotSupported(()),
                            None,
                        ),
                    )));
                continue;
            }
            let params = H2250LogicalChannelAckParameters::new(
                None,
                Some(AUDIO_SESSION),
                Some(ch245::socket_to_transport(rtp)),
                Some(ch245::socket_to_transport(rtcp)),
                None,
                None,
                None,
                None,
            );
            self.messages
                .push_back(Msg::response(ResponseMessage::openLogicalChannelAck(
                    OpenLogicalChannelAck::new(
                        LogicalChannelNumber(n),
                        None,
                        None,
                        Some(AckMux::h2250LogicalChannelAckParameters(params)),
                        None,
                        None,
                        None,
                    ),
                )));
            self.incoming.push(InChannel {
                number: n,
                codec: codec.clone(),
            });
            self.events.push_back(SessionEvent::IncomingChannel {
                number: n,
                codec,
                rtcp: remote_rtcp,
            });
        }
    }

    fn olc_ack(&mut self, a: &OpenLogicalChannelAck) -> Verdict {
        let Some(OutChannel::AwaitingAck { codec }) = self.outgoing.clone() else {
            return Verdict::Ignored("acknowledges no channel of ours");
        };
        if a.forward_logical_channel_number.0 != self.out_number {
            return Verdict::Ignored("acknowledges no channel of ours");
        }
        let params = match &a.forward_multiplex_ack_parameters {
            Some(AckMux::h2250LogicalChannelAckParameters(p)) => Some(p),
            _ => None,
        };
        let rtp = params
            .and_then(|p| p.media_channel.as_ref())
            .and_then(ch245::transport_to_socket);
        let rtcp = params
            .and_then(|p| p.media_control_channel.as_ref())
            .and_then(ch245::transport_to_socket);
        self.disarm(Pending::Olc);
        match rtp {
            Some(rtp) => {
                self.outgoing = Some(OutChannel::Open);
                self.events
                    .push_back(SessionEvent::OutgoingChannel { codec, rtp, rtcp });
            }
            None => {
                // Nowhere to send media: the channel is closed again.
                self.messages
                    .push_back(Msg::request(RequestMessage::closeLogicalChannel(
                        CloseLogicalChannel::new(
                            LogicalChannelNumber(self.out_number),
                            CloseLogicalChannelSource::lcse(()),
                            None,
                        ),
                    )));
                self.outgoing = None;
                self.events.push_back(SessionEvent::OutgoingChannelClosed {
                    why: "the acknowledgement gives no media address".to_owned(),
                });
            }
        }
        Verdict::Accepted
    }

    /// The codecs of the far end's channels open toward us.
    pub fn incoming_codecs(&self) -> Vec<Codec> {
        self.incoming.iter().map(|c| c.codec.clone()).collect()
    }
}

/// An Ack tells its receiver what the receiver is.
fn decision_for_far_end(ours: MasterSlave) -> Decision {
    match ours {
        MasterSlave::Master => Decision::slave(()),
        MasterSlave::Slave => Decision::master(()),
    }
}

/// Decodes one H.245 PDU and returns it if it decodes; a helper for legs and the fuzz target.
pub fn decode(bytes: &[u8]) -> Option<Msg> {
    h323_asn1::decode_h245(bytes).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn codec(pt: u8, name: &str) -> Codec {
        Codec {
            payload_type: pt,
            name: name.to_owned(),
            clock_rate: 8000,
            channels: 1,
            fmtp: None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Moves every queued message from `a` to `b` through aligned PER, as the wire would.
    fn pump(now: Duration, a: &mut Session, b: &mut Session) -> usize {
        let mut n = 0;
        while let Some(m) = a.poll_message() {
            let bytes = h323_asn1::encode_h245(&m).unwrap();
            let back = decode(&bytes).unwrap();
            b.handle(now, back);
            n += 1;
        }
        n
    }

    fn events(s: &mut Session) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn converse(a: &mut Session, b: &mut Session) {
        let now = Duration::from_secs(1);
        for _ in 0..10 {
            if pump(now, a, b) + pump(now, b, a) == 0 {
                break;
            }
        }
    }

    #[test]
    fn two_gateways_open_audio_both_ways() {
        let now = Duration::ZERO;
        let mut a = Session::new(1);
        let mut b = Session::new(2);
        a.send_capabilities(now, &[codec(8, "PCMA"), codec(0, "PCMU")]);
        a.determine_master_slave(now);
        a.set_media(addr("192.0.2.1:4000"), addr("192.0.2.1:4001"));
        b.send_capabilities(now, &[codec(0, "PCMU"), codec(18, "G729")]);
        b.determine_master_slave(now);
        b.set_media(addr("[2001:db8::2]:5000"), addr("[2001:db8::2]:5001"));
        a.open_channel(
            now,
            vec![codec(8, "PCMA"), codec(0, "PCMU")],
            addr("192.0.2.1:4001"),
        );
        b.open_channel(now, vec![codec(0, "PCMU")], addr("[2001:db8::2]:5001"));
        converse(&mut a, &mut b);
        let (ea, eb) = (events(&mut a), events(&mut b));
        let ms = |e: &[SessionEvent]| {
            e.iter()
                .find_map(|e| match e {
                    SessionEvent::Determined(d) => Some(*d),
                    _ => None,
                })
                .unwrap()
        };
        assert_ne!(ms(&ea), ms(&eb), "one master, one slave: {ea:?} {eb:?}");
        assert!(ea.contains(&SessionEvent::OutgoingChannel {
            codec: codec(0, "PCMU"),
            rtp: addr("[2001:db8::2]:5000"),
            rtcp: Some(addr("[2001:db8::2]:5001")),
        }));
        assert!(eb.contains(&SessionEvent::OutgoingChannel {
            codec: codec(0, "PCMU"),
            rtp: addr("192.0.2.1:4000"),
            rtcp: Some(addr("192.0.2.1:4001")),
        }));
        assert!(ea
            .iter()
            .any(|e| matches!(e, SessionEvent::IncomingChannel { .. })));
        let remote = ea
            .iter()
            .find_map(|e| match e {
                SessionEvent::RemoteCapabilities(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(remote, vec![codec(0, "PCMU"), codec(18, "G729")]);
        assert!(a.outgoing_open() && b.outgoing_open());
        assert!(a.capabilities_acknowledged() && b.capabilities_acknowledged());
        assert_eq!(a.poll_timeout(), None, "every request was answered");

        // DTMF, round trip, end of session.
        a.send_dtmf(5, 120, false);
        a.send_dtmf(11, 100, true);
        a.round_trip(now);
        converse(&mut a, &mut b);
        let eb = events(&mut b);
        assert!(eb.contains(&SessionEvent::Dtmf {
            event: 5,
            duration_ms: 120
        }));
        assert!(eb
            .iter()
            .any(|e| matches!(e, SessionEvent::Dtmf { event: 11, .. })));
        assert!(events(&mut a)
            .iter()
            .any(|e| matches!(e, SessionEvent::RoundTrip(_))));
        a.end();
        converse(&mut a, &mut b);
        assert!(events(&mut b).contains(&SessionEvent::EndSession));
        assert!(a.is_ended() && b.is_ended());
    }

    #[test]
    fn channels_wait_for_capabilities_and_addresses() {
        let now = Duration::ZERO;
        let mut gw = Session::new(7);
        let mut ep = Session::new(8);
        // The endpoint opens first; the gateway knows neither codecs nor addresses yet.
        ep.send_capabilities(now, &[codec(8, "PCMA")]);
        ep.determine_master_slave(now);
        ep.open_channel(now, vec![codec(8, "PCMA")], addr("192.0.2.9:7001"));
        converse(&mut ep, &mut gw);
        assert!(
            !ep.outgoing_open(),
            "no OLC before the gateway's capabilities"
        );
        gw.send_capabilities(now, &[codec(8, "PCMA")]);
        converse(&mut ep, &mut gw);
        assert!(
            !ep.outgoing_open(),
            "no acknowledgement before the gateway's addresses"
        );
        gw.set_media(addr("192.0.2.1:4000"), addr("192.0.2.1:4001"));
        converse(&mut ep, &mut gw);
        assert!(ep.outgoing_open());
        assert_eq!(gw.incoming_codecs(), vec![codec(8, "PCMA")]);
    }

    #[test]
    fn codecs_outside_our_set_and_video_are_refused() {
        let now = Duration::ZERO;
        let mut gw = Session::new(3);
        gw.send_capabilities(now, &[codec(8, "PCMA")]);
        gw.set_media(addr("192.0.2.1:4000"), addr("192.0.2.1:4001"));
        let olc = ch245::forward_olc(
            5,
            ch245::codec_to_audio(&codec(0, "PCMU"), 20).unwrap(),
            None,
            None,
        );
        gw.handle(now, Msg::request(RequestMessage::openLogicalChannel(olc)));
        let sent: Vec<Msg> = std::iter::from_fn(|| gw.poll_message()).collect();
        assert!(sent.iter().any(|m| matches!(
            m,
            Msg::response(ResponseMessage::openLogicalChannelReject(_))
        )));
        assert!(gw.incoming_codecs().is_empty());
    }

    #[test]
    fn identical_numbers_are_retried_then_fail() {
        let now = Duration::ZERO;
        let mut a = Session::new(9);
        a.determine_master_slave(now);
        let MsdState::Outgoing = a.msd else { panic!() };
        for _ in 0..=MSD_RETRIES {
            let n = a.number;
            a.handle(
                now,
                Msg::request(RequestMessage::masterSlaveDetermination(
                    MasterSlaveDetermination::new(TERMINAL_TYPE_GATEWAY, n),
                )),
            );
        }
        assert!(events(&mut a)
            .iter()
            .any(|e| matches!(e, SessionEvent::Failed(_))));
    }

    #[test]
    fn unanswered_requests_fail_the_session() {
        let mut a = Session::new(4);
        a.send_capabilities(Duration::ZERO, &[codec(8, "PCMA")]);
        let t = a.poll_timeout().unwrap();
        a.handle_timeout(t);
        assert!(matches!(events(&mut a)[..], [SessionEvent::Failed(_)]));
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn unsupported_requests_get_function_not_supported() {
        let mut a = Session::new(4);
        let m = Msg::request(RequestMessage::maintenanceLoopRequest(
            asn::MaintenanceLoopRequest::new(asn::MaintenanceLoopRequestType::systemLoop(())),
        ));
        assert!(matches!(a.handle(Duration::ZERO, m), Verdict::Ignored(_)));
        assert!(matches!(
            a.poll_message(),
            Some(Msg::indication(IndicationMessage::functionNotSupported(_)))
        ));
    }

    /// PDUs a far end could send, built from a few bytes each.
    fn arbitrary_pdu(kind: u8, x: u16) -> Msg {
        let audio = ch245::codec_to_audio(
            &[codec(0, "PCMU"), codec(8, "PCMA"), codec(18, "G729")][usize::from(x % 3)],
            20,
        )
        .unwrap();
        let n = LogicalChannelNumber(x % 6 + 1);
        let seq = SequenceNumber((x % 4) as u8);
        match kind % 14 {
            0 => {
                let mut gw = Session::new(u64::from(x));
                gw.send_capabilities(Duration::ZERO, &[codec(0, "PCMU"), codec(8, "PCMA")]);
                gw.poll_message().unwrap()
            }
            1 => Msg::request(RequestMessage::masterSlaveDetermination(
                MasterSlaveDetermination::new((x % 3) as u8 * 30 + 30, u32::from(x)),
            )),
            2 => Msg::response(ResponseMessage::masterSlaveDeterminationAck(
                MasterSlaveDeterminationAck::new(if x.is_multiple_of(2) {
                    Decision::master(())
                } else {
                    Decision::slave(())
                }),
            )),
            3 => Msg::response(ResponseMessage::masterSlaveDeterminationReject(
                MasterSlaveDeterminationReject::new(
                    MasterSlaveDeterminationRejectCause::identicalNumbers(()),
                ),
            )),
            4 => Msg::response(ResponseMessage::terminalCapabilitySetAck(
                TerminalCapabilitySetAck::new(seq, None),
            )),
            5 => Msg::request(RequestMessage::openLogicalChannel(ch245::forward_olc(
                n.0,
                audio,
                None,
                Some(addr("192.0.2.7:9001")),
            ))),
            6 => Msg::response(ResponseMessage::openLogicalChannelAck(
                OpenLogicalChannelAck::new(
                    LogicalChannelNumber(1),
                    None,
                    None,
                    Some(AckMux::h2250LogicalChannelAckParameters(
                        H2250LogicalChannelAckParameters::new(
                            None,
                            Some(1),
                            x.is_multiple_of(2)
                                .then(|| ch245::socket_to_transport(addr("192.0.2.7:9000"))),
                            None,
                            None,
                            None,
                            None,
                            None,
                        ),
                    )),
                    None,
                    None,
                    None,
                ),
            )),
            7 => Msg::request(RequestMessage::closeLogicalChannel(
                CloseLogicalChannel::new(n, CloseLogicalChannelSource::user(()), None),
            )),
            8 => Msg::request(RequestMessage::requestChannelClose(
                asn::RequestChannelClose::new(LogicalChannelNumber(1), None, None),
            )),
            9 => Msg::request(RequestMessage::roundTripDelayRequest(
                RoundTripDelayRequest::new(seq),
            )),
            10 => ch245::user_input_signal((x % 17) as u8, 100).unwrap(),
            11 => Msg::command(CommandMessage::endSessionCommand(
                EndSessionCommand::disconnect(()),
            )),
            12 => Msg::response(ResponseMessage::openLogicalChannelReject(
                OpenLogicalChannelReject::new(
                    LogicalChannelNumber(1),
                    OpenLogicalChannelRejectCause::unspecified(()),
                    None,
                ),
            )),
            _ => Msg::request(RequestMessage::maintenanceLoopRequest(
                asn::MaintenanceLoopRequest::new(asn::MaintenanceLoopRequestType::systemLoop(())),
            )),
        }
    }

    proptest! {
        /// Any order of PDUs, interleaved with our own actions and timers: no panic, at most
        /// a few messages out per input, bounded channels, and after `end` nothing more.
        #[test]
        fn any_sequence_keeps_the_session_sound(
            seed in any::<u64>(),
            steps in proptest::collection::vec((any::<u8>(), any::<u16>()), 0..64),
        ) {
            let mut s = Session::new(seed);
            let mut now = Duration::ZERO;
            for (kind, x) in steps {
                now += Duration::from_millis(u64::from(x % 4000));
                match kind / 14 % 8 {
                    0 => s.send_capabilities(now, &[codec(0, "PCMU"), codec(8, "PCMA")]),
                    1 => s.determine_master_slave(now),
                    2 => s.set_media(addr("192.0.2.1:4000"), addr("192.0.2.1:4001")),
                    3 => s.open_channel(now, vec![codec(8, "PCMA")], addr("192.0.2.1:4001")),
                    4 => s.handle_timeout(now),
                    _ => {}
                }
                let pdu = arbitrary_pdu(kind, x);
                let bytes = h323_asn1::encode_h245(&pdu).unwrap();
                s.handle(now, decode(&bytes).unwrap());
                let out: Vec<Msg> = std::iter::from_fn(|| s.poll_message()).collect();
                prop_assert!(out.len() <= 6, "{} messages for one input", out.len());
                for m in &out {
                    prop_assert!(h323_asn1::encode_h245(m).is_ok());
                }
                while s.poll_event().is_some() {}
                prop_assert!(s.incoming.len() + s.held.len() <= MAX_INCOMING_CHANNELS);
                prop_assert!(s.timers.len() <= 4);
            }
            s.end();
            while s.poll_message().is_some() {}
            s.handle(now, arbitrary_pdu(0, 1));
            prop_assert!(s.poll_message().is_none());
        }
    }
}
