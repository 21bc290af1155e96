//! The `sgw` binary: parses the command line, runs one subcommand, prints errors once and
//! returns the exit code (0 ok, 1 findings, 2 usage or I/O error).

use clap::Parser;

/// mimalloc: replay hands packet buffers from the reader thread to the engine thread, a pattern
/// glibc's allocator handles poorly (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sgw::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_gateway(&args),
        Command::Replay(args) => sgw::replay::run(&args),
        Command::Check(args) => run_check(&args),
        Command::Pki(args) => run_pki(&args),
        Command::Auth(args) => run_auth(&args),
        Command::CheckConfig(args) => run_check_config(&args),
        Command::Ctl(args) => sgw::live::control::client(&args.socket, &args.command.request()),
        Command::Cdr(args) => run_cdr(&args),
        Command::Lab(args) => sgw::lab::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("sgw: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_gateway(args: &sgw::cli::RunArgs) -> anyhow::Result<u8> {
    use sgw::cli::{LogFormatArg, RoleArg};
    use sgw::engine::Role;
    use sgw::live::logging::LogFormat;
    let format = match args.log_format {
        LogFormatArg::Human => LogFormat::Human,
        LogFormatArg::Json => LogFormat::Json,
    };
    sgw::live::logging::init(format, args.quiet, args.verbose)?;
    raise_open_files_limit();
    let opts = sgw::live::run::RunOptions {
        config: args.config.clone(),
        role: args.role.map(|r| match r {
            RoleArg::Gw1 => Role::Gw1,
            RoleArg::Gw2 => Role::Gw2,
            RoleArg::Both => Role::Both,
        }),
        listen: args.listen,
        quiet: args.quiet,
    };
    sgw::live::run::run(&opts)
}

/// Raises the soft limit on open files to the hard limit: a call with media holds four UDP
/// sockets (RTP and RTCP on each half), so 10,000 calls need 40,000 descriptors where the
/// usual soft limit is 1,024. Logs the limit in force.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(
            limit = n,
            "open files limit {n} (about {} calls with media)",
            n / 4
        ),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}

fn run_check(args: &sgw::cli::CheckArgs) -> anyhow::Result<u8> {
    let mut results = Vec::new();
    for f in &args.files {
        let r = sgw::check::check_file(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        results.push(r);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            let verdict = serde_json::to_value(r.verdict)?;
            println!(
                "{}: {} {}{}",
                r.file,
                verdict.as_str().unwrap_or("?"),
                r.response.map(|c| format!("{c} ")).unwrap_or_default(),
                r.reason.as_deref().unwrap_or("")
            );
        }
    }
    let rejected = results
        .iter()
        .any(|r| r.verdict == sgw::engine::Verdict::Rejected);
    Ok(u8::from(args.fail_on_reject && rejected))
}

fn run_pki(args: &sgw::cli::PkiArgs) -> anyhow::Result<u8> {
    match &args.command {
        sgw::cli::PkiCommand::Init(a) => {
            let mut opts = sgw::pki::PkiOptions::default();
            if !a.gw2_names.is_empty() {
                opts.gw2_names.clone_from(&a.gw2_names);
            }
            for path in sgw::pki::init(&a.dir, &opts, a.force)? {
                println!("wrote {}", path.display());
            }
            Ok(0)
        }
    }
}

fn run_cdr(args: &sgw::cli::CdrArgs) -> anyhow::Result<u8> {
    match &args.command {
        sgw::cli::CdrCommand::Verify(a) => {
            let key = match &a.key {
                Some(p) => Some(sgw::cdr::load_public_key(p).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let v = sgw::cdr::verify(&a.files, key.as_deref());
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", sgw::cdr::render(&v));
            }
            Ok(v.status.exit_code())
        }
    }
}

fn run_auth(args: &sgw::cli::AuthArgs) -> anyhow::Result<u8> {
    match &args.command {
        sgw::cli::AuthCommand::Ha1 { user, realm } => {
            if user.is_empty() || user.contains(':') || realm.is_empty() || realm.contains(':') {
                anyhow::bail!("user and realm must be non-empty and without ':'");
            }
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            println!(
                "{}",
                sgw::engine::auth::Credentials::line(user, realm, password)
            );
            Ok(0)
        }
    }
}

fn run_check_config(args: &sgw::cli::CheckConfigArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    match sgw::config::Config::from_toml_str(&text) {
        Ok(_) => {
            println!("ok");
            Ok(0)
        }
        Err(errors) => {
            // grep style: FILE:LINE: key: message
            for e in errors.errors() {
                let sep = if e.line.is_some() { "" } else { " " };
                println!("{}:{sep}{e}", args.file.display());
            }
            Ok(2)
        }
    }
}
