//! Shell completions and man pages, generated from the clap definitions in [`crate::cli`].
//!
//! Both come from [`command`], which carries the package version without the commit, so the
//! checked-in copies (`completions/`, `docs/man/`) change only when the command line or the
//! version does. Regenerate them with
//! `rm -f docs/man/*.1 && cargo run -q --bin envshare -- man --out-dir docs/man` and
//! `cargo run -q --bin envshare -- completions SHELL > completions/envshare.SHELL`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// The command line as the generated files describe it: the package version only.
fn command() -> clap::Command {
    let mut cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    cmd.build();
    cmd
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

/// `envshare man --out-dir DIR`: `envshare.1` and a page per visible subcommand
/// (`envshare-import.1`, `envshare-dead-list.1`, …); prints the paths written.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    render(&command(), dir, &mut written)?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the page of `cmd`, then those of its visible subcommands.
fn render(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    // After `build`, a subcommand's display name is its path joined by '-' (`envshare-dead-list`).
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    let page = cmd.clone().name(&name).version(env!("CARGO_PKG_VERSION"));
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut bytes)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            render(sub, dir, written)?;
        }
    }
    Ok(())
}
