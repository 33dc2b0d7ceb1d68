//! Shell completions and man pages, generated from the clap definitions in [`crate::cli`].
//!
//! Both come from [`command`], which carries the package version without the commit, so the
//! checked-in copies (`completions/`, `docs/man/`) change only when the command line or the
//! version does. Regenerate them with
//! `rm -f docs/man/*.1 && cargo run -q --bin envshare -- man --out-dir docs/man` and
//! `cargo run -q --bin envshare -- completions SHELL > completions/envshare.SHELL`.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// The command line as the generated files describe it: the package version only.
fn command() -> clap::Command {
    Cli::command().version(env!("CARGO_PKG_VERSION"))
}

/// `envshare completions SHELL`: the completion script on stdout.
pub fn print_completions(shell: Shell) -> anyhow::Result<()> {
    let mut cmd = command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "envshare", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .context("writing the completion script to stdout")
}

/// `envshare man --out-dir DIR`: `envshare.1` and a page per visible subcommand, named by its
/// path (`envshare-import.1`, `envshare-dead-list.1`, …); prints the directory.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = command().disable_help_subcommand(true);
    // Gives each subcommand its path as display name (`envshare-dead-list`) and its usage line.
    cmd.build();
    write_page(cmd, dir)
        .with_context(|| format!("writing the man pages into {}", dir.display()))?;
    println!("man pages written to {}", dir.display());
    Ok(())
}

/// Writes the page of `cmd` and those of its visible subcommands, each saying which package it
/// documents (`envshare 0.1.0`) in its footer.
fn write_page(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub.clone(), dir)?;
    }
    clap_mangen::Man::new(cmd)
        .source(concat!("envshare ", env!("CARGO_PKG_VERSION")))
        .generate_to(dir)?;
    Ok(())
}
