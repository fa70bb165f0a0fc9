//! Helper mode: a relstore on the server (`relstore serve --stdio ROOT`, started over
//! an SSH exec channel of the same connection the SFTP target uses) serves the store,
//! and the client talks to it with [`relstore_helper::HelperClient`].
//!
//! [`connect`] finds a helper (`--helper auto`, the default) in this order:
//!
//! 1. `relstore` on the server's PATH;
//! 2. this very executable, installed earlier in `ROOT/.relstore/bin/` (see
//!    [`install`]: checked against its hash before it is run);
//! 3. when the server's OS and CPU (`uname -sm`) match this executable: this
//!    executable, uploaded there now, checked, then run.
//!
//! A candidate counts only if it greets with a protocol version this relstore speaks.
//! When none can run, the SFTP target is used and [`HelperStatus::Unavailable`] says
//! why in one line (`--helper require` turns that into the error); `--helper off`
//! never opens an exec channel. Nothing is installed into a directory that is not a
//! store yet unless the command is about to create one (a push).

mod deferred;
pub mod exec;
pub mod install;
mod probe;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use relstore_core::{Target, TargetError, TargetResult};
use relstore_helper::{ClientOptions, HelperClient, HelperError};

use crate::config::RemoteOptions;
use crate::session::error_line;
use crate::target::SftpTarget;
use exec::{shell_quote, ExecChannel};

pub use deferred::{DeferredTarget, NoteSink};
pub use probe::platform_of_uname;

/// How long a started helper may take to greet.
const GREETING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a failed command's exit status and stderr.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Whether to run a helper on the server (`--helper`, `RELSTORE_HELPER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HelperMode {
    /// Use a helper when one can run, else SFTP with a note saying why not.
    #[default]
    Auto,
    /// SFTP only: nothing is run on the server.
    Off,
    /// Fail when no helper can run.
    Require,
}

impl HelperMode {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HelperMode::Auto => "auto",
            HelperMode::Off => "off",
            HelperMode::Require => "require",
        }
    }
}

impl fmt::Display for HelperMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HelperMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(HelperMode::Auto),
            "off" => Ok(HelperMode::Off),
            "require" => Ok(HelperMode::Require),
            other => Err(format!(
                "helper mode must be auto, off or require, not {other:?}"
            )),
        }
    }
}

/// What the command about to run may do to find a helper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelperRequest {
    /// The command creates the store if it is missing (a push that is not a dry
    /// run): the store may be laid out before the helper is installed into it.
    pub may_create: bool,
    /// The helper may be uploaded (`helper status` only looks).
    pub may_install: bool,
}

/// Where a running helper came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperSource {
    /// `relstore` on the server's PATH.
    Path,
    /// This executable, installed by an earlier run.
    Installed,
    /// This executable, uploaded by this run.
    Uploaded,
}

impl HelperSource {
    /// For JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            HelperSource::Path => "path",
            HelperSource::Installed => "installed",
            HelperSource::Uploaded => "uploaded",
        }
    }
}

/// A helper that runs and speaks a protocol version this relstore speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningHelper {
    /// Its relstore version.
    pub version: String,
    /// The protocol version in use.
    pub protocol: u16,
    /// Its operating system and CPU, as Rust names them.
    pub os: String,
    pub arch: String,
    /// What was run: `relstore` (from PATH) or the installed file's path.
    pub path: String,
    pub source: HelperSource,
}

/// Which helper a target uses, or why none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelperStatus {
    /// `--helper off`, or a local target.
    Off,
    /// A helper serves the store.
    Running(RunningHelper),
    /// No helper can run; the store is reached over SFTP. One line.
    Unavailable { reason: String },
}

impl HelperStatus {
    /// The note a command prints about it, naming `location`.
    pub fn note(&self, location: &str) -> Option<String> {
        match self {
            HelperStatus::Off => None,
            HelperStatus::Running(h) => Some(format!(
                "{location}: using helper relstore {} at {}",
                h.version, h.path
            )),
            HelperStatus::Unavailable { reason } => {
                Some(format!("{location}: no helper ({reason}); using SFTP"))
            }
        }
    }
}

/// Connects to the remote target `spec` and finds a helper as `opts.helper` and
/// `request` allow (see the module docs). Returns the helper client when a helper
/// runs, the SFTP target otherwise, and which of the two it is.
pub fn connect(
    spec: &str,
    opts: &RemoteOptions,
    request: HelperRequest,
) -> TargetResult<(Arc<dyn Target>, HelperStatus)> {
    let sftp = Arc::new(SftpTarget::connect(spec, opts)?);
    if opts.helper == HelperMode::Off {
        return Ok((sftp, HelperStatus::Off));
    }
    match find(&sftp, spec, request) {
        Ok((client, running)) => Ok((Arc::new(client), HelperStatus::Running(running))),
        Err(reason) if opts.helper == HelperMode::Require => Err(TargetError::Other(format!(
            "{spec}: --helper require: no helper can run there: {reason}"
        ))),
        Err(reason) => Ok((sftp, HelperStatus::Unavailable { reason })),
    }
}

/// Connects to the remote target `spec` for a command: with `--helper off` the SFTP
/// target itself, otherwise a [`DeferredTarget`] that finds a helper when the command
/// first opens the store (so that only a push installs one into a new store) and
/// tells `note` which one it uses or why none.
pub fn connect_for_command(
    spec: &str,
    opts: &RemoteOptions,
    note: NoteSink,
) -> TargetResult<Arc<dyn Target>> {
    let sftp = SftpTarget::connect(spec, opts)?;
    if opts.helper == HelperMode::Off {
        return Ok(Arc::new(sftp));
    }
    Ok(Arc::new(DeferredTarget::new(sftp, opts.helper, note)))
}

/// Tries the candidates in order; the error is every reason, on one line.
pub(crate) fn find(
    sftp: &Arc<SftpTarget>,
    spec: &str,
    request: HelperRequest,
) -> Result<(HelperClient, RunningHelper), String> {
    let root = sftp.root().to_vec();
    let mut cmd = failpoint_prefix();
    cmd.extend_from_slice(b"relstore serve --stdio ");
    cmd.extend_from_slice(&shell_quote(&root));
    let on_path = match start(sftp, &cmd, spec) {
        Ok(client) => return Ok(running(client, "relstore".into(), HelperSource::Path)),
        Err(why) => format!("relstore on the server's PATH: {why}"),
    };
    match probe::own_copy(sftp, spec, request) {
        Ok(found) => Ok(found),
        Err(why) => Err(one_line(&format!("{on_path}; {why}"))),
    }
}

/// Describes a helper that greeted.
fn running(
    client: HelperClient,
    path: String,
    source: HelperSource,
) -> (HelperClient, RunningHelper) {
    let peer = client.peer();
    let info = RunningHelper {
        version: peer.hello.tool_version.clone(),
        protocol: peer.protocol,
        os: peer.hello.os.clone(),
        arch: peer.hello.arch.clone(),
        path,
        source,
    };
    (client, info)
}

/// Runs `command` (a `serve --stdio` command line) and greets it; the error says in
/// one line why it is not a usable helper.
fn start(sftp: &Arc<SftpTarget>, command: &[u8], spec: &str) -> Result<HelperClient, String> {
    let keep: Arc<dyn Send + Sync> = sftp.clone();
    let ch = ExecChannel::start(sftp.session(), sftp.runtime(), command, keep)
        .map_err(|e| error_line(&e))?;
    let status = ch.status.clone();
    let timeout = ch.timeout.clone();
    timeout.set(Some(GREETING_TIMEOUT));
    let options = ClientOptions {
        cache_dir: relstore_helper::manifest_cache::default_dir(),
        ..ClientOptions::default()
    };
    match HelperClient::connect(ch.reader, ch.writer, spec, options) {
        Ok(client) => {
            timeout.set(None);
            Ok(client)
        }
        Err(e @ HelperError::Incompatible { .. }) => Err(e.to_string()),
        Err(e) => {
            let state = status.wait_closed(EXIT_WAIT);
            Err(match state.failure() {
                Some(why) => why,
                None => error_line(&e),
            })
        }
    }
}

/// `NAME='VALUE' ` for each crash-test setting to pass on to the helper (nothing
/// outside test builds: see `relstore_core::failpoint::forwarded_env`).
pub(crate) fn failpoint_prefix() -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in relstore_core::failpoint::forwarded_env() {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(&shell_quote(v.as_bytes()));
        out.push(b' ');
    }
    out
}

/// `text` with line breaks turned into spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
