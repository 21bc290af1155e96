//! Translators between protocol messages and Meta, and IP-family mapping.
//!
//! Pure functions: no I/O, no clock, no state beyond what the caller passes in.

pub mod cause;
pub mod h323;
pub mod sip;
