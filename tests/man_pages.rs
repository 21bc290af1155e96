//! The man pages in `man/` and the shell completions in `completions/` are generated from the one
//! clap definition (`sgw::cli::Cli`). This test renders them and fails when the committed files
//! are stale; `SGW_UPDATE_MAN=1 cargo test --test man_pages` rewrites them instead.

use clap::CommandFactory;
use clap_complete::Shell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

const UPDATE_VAR: &str = "SGW_UPDATE_MAN";
const REGENERATE: &str = "SGW_UPDATE_MAN=1 cargo test --test man_pages";

type Files = BTreeMap<String, Vec<u8>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn updating() -> bool {
    std::env::var(UPDATE_VAR).as_deref() == Ok("1")
}

/// `sgw.1` and one page per visible subcommand, at any depth (`sgw-replay.1`, `sgw-check.1`, …).
fn man_pages() -> io::Result<Files> {
    fn walk(cmd: clap::Command, pages: &mut Files) -> io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, pages)?;
        }
        // The source is the package for every page, not the subcommand's own name.
        let source = format!("sgw {}", env!("CARGO_PKG_VERSION"));
        let man = clap_mangen::Man::new(cmd).source(source);
        let mut page = Vec::new();
        man.render(&mut page)?;
        pages.insert(man.get_filename(), page);
        Ok(())
    }
    // As `clap_mangen::generate_to` does: no `help` page; `build` names subcommands `sgw-<name>`.
    let mut cmd = sgw::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Files::new();
    walk(cmd, &mut pages)?;
    Ok(pages)
}

fn completions() -> Files {
    let mut files = Files::new();
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let mut cmd = sgw::cli::Cli::command();
        let name = clap_complete::Generator::file_name(&shell, "sgw");
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "sgw", &mut out);
        files.insert(name, out);
    }
    files
}

fn read_dir(dir: &Path) -> io::Result<Files> {
    let mut files = Files::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        if e.file_type()?.is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            files.insert(name, std::fs::read(e.path())?);
        }
    }
    Ok(files)
}

/// Compares `expected` with the files of `dir` (all of them: a page for a removed subcommand is
/// stale too), or rewrites `dir` when updating. Returns the problems found.
fn check_dir(dir: &Path, expected: &Files) -> io::Result<Vec<String>> {
    let on_disk = read_dir(dir)?;
    let mut problems = Vec::new();
    for (name, bytes) in expected {
        match on_disk.get(name) {
            None => problems.push(format!("{name}: missing")),
            Some(b) if b != bytes => {
                problems.push(format!("{name}: differs from the clap definition"))
            }
            Some(_) => {}
        }
    }
    for name in on_disk.keys().filter(|n| !expected.contains_key(*n)) {
        problems.push(format!("{name}: no longer generated (removed subcommand?)"));
    }
    if updating() && !problems.is_empty() {
        std::fs::create_dir_all(dir)?;
        for name in on_disk.keys().filter(|n| !expected.contains_key(*n)) {
            std::fs::remove_file(dir.join(name))?;
        }
        for (name, bytes) in expected {
            std::fs::write(dir.join(name), bytes)?;
        }
        eprintln!("rewrote {}:\n  {}", dir.display(), problems.join("\n  "));
        return Ok(Vec::new());
    }
    Ok(problems)
}

fn assert_current(dir: &Path, expected: &Files) -> io::Result<()> {
    let problems = check_dir(dir, expected)?;
    assert!(
        problems.is_empty(),
        "{} is stale:\n  {}\nRegenerate with: {REGENERATE}",
        dir.display(),
        problems.join("\n  ")
    );
    Ok(())
}

#[test]
fn man_pages_are_current() -> io::Result<()> {
    let pages = man_pages()?;
    // Every subcommand has its page; guards the walk itself.
    assert!(pages.contains_key("sgw.1"));
    for sub in sgw::cli::Cli::command().get_subcommands() {
        let name = format!("sgw-{}.1", sub.get_name());
        assert!(pages.contains_key(&name), "no page {name}");
    }
    assert_current(&root().join("man"), &pages)
}

#[test]
fn completions_are_current() -> io::Result<()> {
    assert_current(&root().join("completions"), &completions())
}
