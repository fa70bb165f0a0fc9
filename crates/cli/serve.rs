//! `relstore serve --stdio ROOT`: the helper end of helper mode (hidden from --help).
//!
//! Started by a relstore client over an SSH exec channel, it serves the store at ROOT
//! with the local target — the same code a local push runs — on stdin/stdout. Stdout
//! carries the protocol and nothing else: the process's own fd 1 is pointed at stderr
//! before serving, so no stray print can corrupt the stream.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, Result};
use relstore_helper::{serve, ServeOptions};
use relstore_local::LocalTarget;

/// Serves ROOT until the client says goodbye or closes the stream.
pub fn serve_stdio(root: PathBuf) -> Result<()> {
    let input = File::from(
        io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot duplicate stdin")?,
    );
    let output = File::from(
        io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot duplicate stdout")?,
    );
    // SAFETY: dup2 on two descriptors this process owns (0-2 are open for a process
    // started by sshd); it only changes what fd 1 refers to. The protocol goes through
    // the duplicate made above.
    if unsafe { libc::dup2(2, 1) } < 0 {
        return Err(io::Error::last_os_error()).context("cannot point stdout at stderr");
    }
    let target = LocalTarget::new(root);
    serve(input, output, &target, &ServeOptions::default())
        .map(|_| ())
        .context("helper session failed")
}
