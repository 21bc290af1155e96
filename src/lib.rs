//! `sgw`: the VoIP secure gateway. The sans-IO engine, the replay driver and the CLI.
pub mod capture;
