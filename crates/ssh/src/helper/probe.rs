//! The helper's own copy of this relstore in `ROOT/.relstore/bin/`: run it if it is
//! there and intact, else upload it when the server can run it and the command may
//! install it.

use std::sync::Arc;
use std::time::Duration;

use relstore_core::layout;
use relstore_core::Target;
use relstore_helper::HelperClient;

use super::exec::{run_capture, shell_quote};
use super::install::{self, Installed, LocalExe};
use super::{running, start, HelperRequest, HelperSource, RunningHelper};
use crate::session::error_line;
use crate::sftp::EXT_FSYNC;
use crate::target::SftpTarget;

/// How long `uname -sm` may take.
const UNAME_TIMEOUT: Duration = Duration::from_secs(15);

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Runs the installed copy, uploading it first where that is needed and allowed.
pub(super) fn own_copy(
    sftp: &Arc<SftpTarget>,
    spec: &str,
    request: HelperRequest,
) -> Result<(HelperClient, RunningHelper), String> {
    let exe = LocalExe::current()?;
    let root = sftp.root().to_vec();
    let path = install::exe_path(&root, &exe);
    let (c, rt) = (sftp.sftp(), sftp.runtime());
    match rt.block_on(install::check(c, &path, &exe))? {
        Installed::Verified => return run_copy(sftp, spec, &path, HelperSource::Installed),
        Installed::Different(why) if !request.may_install => {
            return Err(format!("{why}; it is not run"))
        }
        Installed::Different(_) => rt.block_on(install::remove(c, &path))?,
        Installed::Missing if !request.may_install => {
            check_platform(sftp)?;
            return Err(format!(
                "no helper installed at {}; a push would upload this relstore there",
                show(&path)
            ));
        }
        Installed::Missing => {}
    }
    check_platform(sftp)?;
    ensure_store(sftp, request)?;
    let fsync = c.has_extension(EXT_FSYNC);
    let path = rt.block_on(install::upload(c, &root, &exe, fsync))?;
    run_copy(sftp, spec, &path, HelperSource::Uploaded)
}

/// Starts the (checked) copy at `path`.
fn run_copy(
    sftp: &Arc<SftpTarget>,
    spec: &str,
    path: &[u8],
    source: HelperSource,
) -> Result<(HelperClient, RunningHelper), String> {
    let mut cmd = super::failpoint_prefix();
    cmd.extend_from_slice(&shell_quote(path));
    cmd.extend_from_slice(b" serve --stdio ");
    cmd.extend_from_slice(&shell_quote(sftp.root()));
    match start(sftp, &cmd, spec) {
        Ok(client) => Ok(running(client, show(path), source)),
        Err(why) => Err(format!("the helper at {} cannot run: {why}", show(path))),
    }
}

/// `(os, arch)` as Rust names them, from the output of `uname -sm`.
pub fn platform_of_uname(out: &str) -> Option<(String, String)> {
    let mut words = out.split_whitespace();
    let os = match words.next()? {
        "Linux" => "linux",
        "Darwin" => "macos",
        "FreeBSD" => "freebsd",
        "OpenBSD" => "openbsd",
        "NetBSD" => "netbsd",
        other => return Some((other.to_lowercase(), words.next()?.to_owned())),
    };
    let arch = match words.next()? {
        "x86_64" | "amd64" => "x86_64",
        "aarch64" | "arm64" => "aarch64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "riscv64" => "riscv64",
        other => other,
    };
    Some((os.to_owned(), arch.to_owned()))
}

/// Refuses a server whose OS or CPU differs from this executable's.
fn check_platform(sftp: &SftpTarget) -> Result<(), String> {
    let (out, state) = run_capture(sftp.session(), sftp.runtime(), b"uname -sm", UNAME_TIMEOUT)
        .map_err(|e| error_line(&e))?;
    if let Some(why) = state.failure() {
        return Err(format!("cannot tell the server's platform: uname {why}"));
    }
    let text = String::from_utf8_lossy(&out);
    let Some((os, arch)) = platform_of_uname(&text) else {
        return Err(format!(
            "cannot tell the server's platform from uname's answer {:?}",
            text.trim()
        ));
    };
    let (my_os, my_arch) = (std::env::consts::OS, std::env::consts::ARCH);
    if os != my_os || arch != my_arch {
        return Err(format!(
            "the server is {os} {arch}, this relstore is built for {my_os} {my_arch}"
        ));
    }
    Ok(())
}

/// Makes sure the root is a store before anything is installed into it: an existing
/// one, or one this command is about to create anyway (created now).
fn ensure_store(sftp: &SftpTarget, request: HelperRequest) -> Result<(), String> {
    let mut marker = sftp.root().to_vec();
    marker.push(b'/');
    marker.extend_from_slice(layout::CONFIG.as_bytes());
    if matches!(sftp.runtime().block_on(sftp.sftp().stat(&marker)), Ok(a) if a.is_file()) {
        return Ok(());
    }
    if !request.may_create {
        return Err(format!(
            "{} is not a store yet, and only a push installs a helper into a new one",
            show(sftp.root())
        ));
    }
    sftp.open(true)
        .map(|_| ())
        .map_err(|e| format!("cannot create the store to install the helper in: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_names_map_to_rust_names() {
        let p = |s: &str| platform_of_uname(s).map(|(a, b)| format!("{a} {b}"));
        assert_eq!(p("Linux x86_64\n").as_deref(), Some("linux x86_64"));
        assert_eq!(p("Darwin arm64").as_deref(), Some("macos aarch64"));
        assert_eq!(p("FreeBSD amd64").as_deref(), Some("freebsd x86_64"));
        assert_eq!(p(""), None);
    }
}
