//! The command line: one clap definition produces `--help`, the man pages in `man/` and shell
//! completions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Shown by `sgw --help` and in `sgw(1)`.
const EXIT_STATUS: &str =
    "Exit status: 0 ok; 1 findings (`replay --fail-on-reject` with a rejected \
message or packet); 2 usage or I/O error (unreadable or truncated input).";

/// VoIP secure gateway and SIP/H.323 protocol-translation toolkit.
#[derive(Debug, Parser)]
#[command(
    name = "sgw",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_long_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what the gateway would accept, reject and emit for a packet capture.
    Replay(ReplayArgs),
    /// Run single raw SIP message files through the gateway as if each arrived over UDP.
    Check(CheckArgs),
}

/// IP family of the inside network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The capture to replay (pcap or pcapng).
    pub capture: PathBuf,
    /// Print one JSON document instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Write what the inside network would receive (GW1's output) to this pcap file.
    #[arg(long, value_name = "FILE.pcap")]
    pub out: Option<PathBuf>,
    /// IP family of the inside network (default: the same as each call's outside leg).
    #[arg(long, value_enum, value_name = "FAMILY")]
    pub inside_family: Option<FamilyArg>,
    /// Exit with status 1 when any message or packet was rejected.
    #[arg(long)]
    pub fail_on_reject: bool,
    /// List every RTP/RTCP packet in the JSON output, not only rejected ones.
    #[arg(long)]
    pub all_media: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Raw SIP message files (one message each, as in RFC 4475's archive).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print a JSON array with one object per file.
    #[arg(long)]
    pub json: bool,
}
