//! Translators between protocol messages and Meta, and IP-family mapping.
//!
//! Pure functions: no I/O, no clock, no state beyond what the caller passes in; the one state
//! machine, [`h245_session`], takes its time and messages from the caller too.

pub mod cause;
pub mod h245_session;
pub mod h323;
pub mod sip;
