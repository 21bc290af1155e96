//! Wire formats of the gateway: SIP, SDP, RTP/RTCP, RFC 4733 events, the Meta protocol and the
//! tunnel framing between GW1 and GW2.
//!
//! This crate never does I/O, never reads the clock and never panics on input: every decoder
//! returns a typed error naming where the bytes went wrong.

pub mod meta;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod telephone_event;
pub mod tunnel;
