//! `sgw`: the VoIP secure gateway. The sans-IO engine, the replay driver and the CLI.

pub mod capture;
pub mod cdr;
pub mod check;
pub mod cli;
pub mod config;
pub mod engine;
pub mod lab;
pub mod live;
pub mod pki;
pub mod replay;
