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
    /// Run the gateway. Without --config: the built-in demo, both halves on loopback joined by
    /// the mutual-TLS tunnel with ephemeral certificates and an answering endpoint inside; it
    /// prints the SIP URI to call and the URL of its Prometheus metrics (`GET /metrics` on
    /// loopback, port 9464 or a free one). Stops on SIGINT/SIGTERM, or when `sgw ctl drain` has
    /// seen the last call end, and prints each half's counters. SIGHUP re-reads the
    /// configuration file (`sgw ctl reload`). With `[control] socket` (the demo: one in the
    /// temporary directory, printed at start) it answers `sgw ctl`.
    Run(RunArgs),
    /// Show what the gateway would accept, reject and emit for a packet capture.
    Replay(ReplayArgs),
    /// Run single raw SIP message files (as if each arrived over UDP) or TPKT/H.225.0 files (as
    /// a TCP stream to port 1720) through the gateway.
    Check(CheckArgs),
    /// Manage the private PKI of the GW1-GW2 tunnel.
    Pki(PkiArgs),
    /// SIP digest credentials of `[auth]`.
    Auth(AuthArgs),
    /// Check a configuration file: prints "ok" or each error with its key and line.
    #[command(after_long_help = crate::config::EXAMPLE_CONFIG_HELP)]
    CheckConfig(CheckConfigArgs),
    /// Ask a running gateway (its control socket, `[control] socket`): status, calls, drain,
    /// block, unblock, reload. Exit status 0 ok, 1 refused, 2 no gateway on the socket.
    Ctl(CtlArgs),
    /// Tamper-evident call records (`[gw2.records]`, `[gw1.records]`): verify them.
    Cdr(CdrArgs),
    /// The three-zone interop lab (root): network namespaces PREFIX-inet, PREFIX-dmz and
    /// PREFIX-intra joined by PREFIX-router's nftables policy (the intranet may open only the
    /// tunnel to GW2; nothing may open anything into it); GW2 in dmz, GW1 in intra, kamailio as
    /// the intranet's PBX and registrar, a baresip phone (1001) registered there from
    /// PREFIX-phone (a second host on the intranet's LAN), and a sipp callee on the Internet.
    /// `up` prints how to place a call each way; `down` removes everything it made.
    Lab(LabArgs),
}

#[derive(Debug, Args)]
pub struct CdrArgs {
    #[command(subcommand)]
    pub command: CdrCommand,
}

#[derive(Debug, Subcommand)]
pub enum CdrCommand {
    /// Check one half's call record files: the hash chain and the signed checkpoints.
    ///
    /// Give all the half's files (rotated ones too) in any order: they are put in chain order.
    /// Reports the first record altered, deleted, inserted or reordered, with its file and
    /// line, a checkpoint whose signature does not verify with --key, and a file missing from
    /// the middle of the chain; a last line cut short (kill -9 mid-write) is reported as an
    /// "incomplete last record", not as tampering. Records after the newest checkpoint are
    /// chained but not yet signed: it says how many. Exit status 0 intact, 1 tampered, 2
    /// unreadable (a missing file, or not a call record file).
    Verify(CdrVerifyArgs),
}

#[derive(Debug, Args)]
pub struct CdrVerifyArgs {
    /// The record files of one half.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The half's public record key (`gw2-records.pub` or `gw1-records.pub` from `sgw pki
    /// init`): checkpoint signatures are checked with it. Without it only the chain is.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

/// Which lab: its namespaces' prefix and its state directory.
#[derive(Debug, Clone, Args)]
pub struct LabCommon {
    /// The namespaces are PREFIX-router, PREFIX-inet, PREFIX-dmz, PREFIX-intra and
    /// PREFIX-phone: several labs with different prefixes coexist.
    #[arg(long, value_name = "NAME", default_value = crate::lab::DEFAULT_PREFIX)]
    pub prefix: String,
    /// The state directory: configurations, PKI, logs, pid files, control sockets
    /// [default: /run/sgw-lab/PREFIX].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab and start its processes (in the background, logging into the state
    /// directory); print the addresses and the sipp command lines that call each way. Needs
    /// root, ip and nft; the full lab also kamailio, baresip and sipp. On failure it removes
    /// what it made.
    Up {
        #[command(flatten)]
        common: LabCommon,
        /// Only the namespaces, veths, routes and the router's firewall: no gateway, PBX or
        /// phone (for tests that run their own).
        #[arg(long)]
        net_only: bool,
    },
    /// Stop every process the lab started and any process left in its namespaces, delete the
    /// namespaces (their veths and the router's nftables table with them) and the state
    /// directory. Idempotent; works after a partial `up`. Exit status 1 when something could
    /// not be removed.
    Down {
        #[command(flatten)]
        common: LabCommon,
    },
    /// Show what is there: namespaces, the firewall and its counters, each process (running or
    /// not) and each gateway's tunnel (asked on its control socket). Exit status 0 when all of
    /// it is up.
    Status {
        #[command(flatten)]
        common: LabCommon,
    },
}

/// IP family of the inside network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

/// Which gateway half `sgw run` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The relay gateway in the intranet: opens the tunnel, speaks SIP to the inside.
    Gw1,
    /// The termination gateway in the DMZ: terminates outside SIP, accepts the tunnel.
    Gw2,
    /// Both halves in one process, joined by the real tunnel.
    Both,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The TOML configuration (see `sgw check-config --help`); without it, the built-in demo.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which half to run [default: the halves the configuration describes].
    #[arg(long, value_enum, value_name = "ROLE", requires = "config")]
    pub role: Option<RoleArg>,
    /// Demo only: GW2's SIP address, UDP and TCP (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5060")]
    pub listen: std::net::SocketAddr,
    /// No per-call and per-rejection log lines on stderr (their targets `sgw::call` and
    /// `sgw::reject` at level warn: flood summaries and the tunnel's lines stay).
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log detail: -v debug (each accepted SIP or H.225.0 message), -vv trace (each Meta
    /// message across the tunnel). `RUST_LOG`
    /// (e.g. `RUST_LOG=sgw::reject=warn,info`), when set, replaces the level -q and -v give.
    #[arg(long, short, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The log on stderr: human lines, or JSON lines (one object per line with `timestamp`,
    /// RFC 3339 UTC, `level`, `message`, `target` and the fields `half`, `call`, `source`).
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "human")]
    pub log_format: LogFormatArg,
}

/// How `sgw run` writes its log on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// `TIMESTAMP LEVEL sgw HALF call=ID: message key=value`.
    Human,
    /// One JSON object per line.
    Json,
}

/// Signalling protocol of the inside network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    Sip,
    H323,
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
    /// Signalling protocol GW1 speaks on the inside (default: the same as each call's outside
    /// leg): H.323 sends Q.931/H.225.0 Setup with fastStart over TCP to the next hop's port 1720.
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub inside: Option<ProtocolArg>,
    /// Exit with status 1 when any message or packet was rejected.
    #[arg(long)]
    pub fail_on_reject: bool,
    /// List every RTP/RTCP packet in the JSON output, not only rejected ones.
    #[arg(long)]
    pub all_media: bool,
    /// A gateway configuration whose [policy] applies: its access rules decide each call (the
    /// JSON names the rule on the INVITE or Setup) and its emergency numbers are used. Without
    /// it no access rule applies.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Raw message files: SIP (one message each, as in RFC 4475's archive) or TPKT-framed
    /// H.225.0 (detected by a TPKT header at offset 0).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print a JSON array with one object per file.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when any message was rejected.
    #[arg(long)]
    pub fail_on_reject: bool,
}

#[derive(Debug, Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a CA (ECDSA P-256) and the certificates and keys of GW2 and GW1 in DIR: ca.pem,
    /// ca.key, gw2.pem, gw2.key, gw1.pem, gw1.key (keys with mode 0600); and each half's
    /// Ed25519 key for signing its call records: gw2-records.key, gw1-records.key (PKCS#8,
    /// mode 0600) with their public keys gw2-records.pub, gw1-records.pub (hex).
    Init(PkiInitArgs),
}

#[derive(Debug, Args)]
pub struct PkiInitArgs {
    /// Directory to write the files into (created if missing).
    pub dir: PathBuf,
    /// A DNS name or IP address GW1 uses to reach GW2; repeat for several
    /// [default: localhost, 127.0.0.1, ::1].
    #[arg(long = "gw2-name", value_name = "NAME")]
    pub gw2_names: Vec<String>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the line of the `[auth] credentials` file for USER in REALM:
    /// `user:realm:ha1-md5:ha1-sha256` (RFC 7616 HA1 values). The password is read from the
    /// first line of standard input; it is not stored anywhere.
    Ha1 {
        /// The user name callers authenticate with.
        user: String,
        /// The realm (`[auth] realm`).
        realm: String,
    },
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The TOML configuration file to check.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The gateway's control socket (`[control] socket`; the demo prints its own).
    #[arg(long, value_name = "PATH", default_value = "/run/sgw/sgw.sock")]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Each half: tunnel up or down, calls up, draining or not, the blocked sources and the
    /// trunk registration (GW2, `[gw2.registration]`); and registrations of phones (sgw keeps
    /// none).
    Status {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// One line per call up and half: reference, direction, protocol, calling and called
    /// numbers, age, answered or ringing, source, the access rule that let it in.
    Calls {
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Refuse new calls from now on (SIP 503, H.323 cause 42; emergency calls are still
    /// taken), wait for the calls up to end, then stop the gateway (exit status 0). Prints the
    /// calls left as they end and returns when the gateway stops.
    Drain {
        /// At this many seconds, end the calls still up (BYE, Release Complete; cause 16) and
        /// stop [default: wait for the last call however long].
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Drop everything from ADDR (its IPv6 prefix: `ipv6_prefix_len`) unanswered on GW2's
    /// outside, until `unblock`.
    Block {
        #[arg(value_name = "ADDR")]
        addr: std::net::IpAddr,
    },
    /// Lift a block of ADDR, manual or automatic.
    Unblock {
        #[arg(value_name = "ADDR")]
        addr: std::net::IpAddr,
    },
    /// Re-read the configuration file, as SIGHUP does: applies [policy] and the rates, block
    /// settings and max_calls of [gw2.limits]; calls up are kept; an invalid file changes
    /// nothing; other changed keys are named and need a restart.
    Reload,
}

impl CtlCommand {
    /// The request line of the control protocol.
    pub fn request(&self) -> String {
        match self {
            CtlCommand::Status { json } => format!("status{}", if *json { " json" } else { "" }),
            CtlCommand::Calls { json } => format!("calls{}", if *json { " json" } else { "" }),
            CtlCommand::Drain { timeout } => match timeout {
                Some(t) => format!("drain {t}"),
                None => "drain".to_owned(),
            },
            CtlCommand::Block { addr } => format!("block {addr}"),
            CtlCommand::Unblock { addr } => format!("unblock {addr}"),
            CtlCommand::Reload => "reload".to_owned(),
        }
    }
}
