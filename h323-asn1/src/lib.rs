//! ASN.1 types of H.225.0 v8 (call signalling and RAS), H.235 and H.245 v17, with aligned PER
//! (X.691) encoders and decoders from `rasn`.
//!
//! This crate never does I/O and never panics on input: decoders return [`DecodeError`].

mod generated;

pub use generated::{h225, h235, h245};
