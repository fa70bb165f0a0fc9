//! `relstore completions SHELL` and `relstore man`: shell completion scripts and manual
//! pages generated from the same clap definition as the parser, so they can never list
//! a verb or an option the binary does not have.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::args::Cli;

/// The command line as users see it: hidden verbs (`serve`, which only a client runs)
/// and hidden options left out. clap_complete's bash and zsh scripts would otherwise
/// offer them.
fn public_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("relstore")
        .args(full.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .subcommand_required(true)
        .version(env!("CARGO_PKG_VERSION"));
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    if let Some(after) = full.get_after_help() {
        cmd = cmd.after_help(after.clone());
    }
    cmd
}

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = public_command();
    let mut out = io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "relstore", &mut out);
    out.flush()?;
    Ok(())
}

/// Writes relstore.1 to stdout, or, with `dir`, relstore.1 and one relstore-VERB.1 per
/// command (hidden ones excepted) into `dir`, creating it.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let cmd = public_command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            let mut out = io::stdout().lock();
            out.write_all(&page)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("create directory {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("write manual pages into {}", dir.display()))?;
        }
    }
    Ok(())
}
