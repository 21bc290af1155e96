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
        Command::Replay(args) => sgw::replay::run(&args),
        Command::Check(args) => run_check(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("sgw: {e:#}");
            ExitCode::from(2)
        }
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
    Ok(0)
}
