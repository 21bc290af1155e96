//! The live driver (tokio): sockets, TLS and timers around the sans-IO engine. Nothing here
//! decides what happens to a message.
pub mod answer;
pub mod control;
pub mod cover;
pub mod front;
pub mod hep;
pub mod logging;
pub mod media_plane;
pub mod metrics;
pub mod prebind;
pub mod recording;
pub mod run;
pub mod runtime;
pub mod sip_tls;
pub mod tap;
pub mod tunnel;
