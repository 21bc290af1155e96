//! Wire formats of the gateway: SIP, SDP, TPKT, Q.931, H.225.0 (call signalling and RAS), H.245,
//! RTP/RTCP, RFC 4733 events and the Meta protocol.
//!
//! This crate never does I/O, never reads the clock and never panics on input: every decoder
//! returns a typed error naming where the bytes went wrong.

pub mod h225;
pub mod h245;
pub mod meta;
pub mod q931;
pub mod ras;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod telephone_event;
pub mod tpkt;
pub mod tunnel;
