//! From a remote TARGET plus the user's SSH setup to a [`Route`]: how to reach the
//! host (directly, through a `ProxyCommand`, or through a `ProxyJump` chain) and the
//! [`ConnectOptions`] of every hop.
//!
//! A host is resolved exactly as OpenSSH resolves it: when an OpenSSH client (`ssh`)
//! is installed, `ssh -G` evaluates the config (`openssh.rs`); without one, the
//! built-in reader (`builtin.rs`) handles `Host`, `Match host/originalhost/user/
//! localuser/all`, `Include` and the keywords relstore uses, and names every other
//! keyword that applied in one note. Both produce a [`ResolvedHost`].
//!
//! [`RemoteOptions`] carries what the command line adds (`-i`, `--known-hosts`,
//! `--accept-new-host-key`, `--ssh-config`) and the environment (`HOME`,
//! `SSH_AUTH_SOCK`, `RELSTORE_*` overrides for scripts and tests).
//!
//! `HOME` wins over the account's home directory from the password database (which
//! is what `ssh` itself uses): when they differ (tests, sandboxes), relstore reads
//! only `$HOME/.ssh/config` (not the system-wide file) and moves default paths
//! (`~/.ssh/known_hosts`, `~/.ssh/id_*`) under `$HOME`, so a sandboxed run never
//! picks up the machine's own SSH setup.

mod builtin;
mod openssh;
pub mod resolved;
mod text;

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use resolved::{AgentSetting, ResolvedHost};

use crate::session::{ConnectOptions, Identity, Route, StrictHostKeyChecking, Via};
use crate::spec::{parse_hop, RemoteSpec};

/// Where notes for the user go (the CLI prints them on stderr; libraries never
/// print). Always equal to any other sink, so [`RemoteOptions`] stays comparable.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoteSink(pub Option<fn(&str)>);

impl PartialEq for NoteSink {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for NoteSink {}

/// What the user told relstore about SSH, beyond the TARGET string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Key files given with `-i`, tried first (before config `IdentityFile`s and the
    /// default `~/.ssh/id_*`). A missing one is an error, not silently skipped.
    pub identity_files: Vec<PathBuf>,
    /// known_hosts file; default: config `UserKnownHostsFile`, else
    /// `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Record the key of a host not yet in known_hosts (never a changed key).
    pub accept_new_host_key: bool,
    /// Global known_hosts files; default: config `GlobalKnownHostsFile`, else
    /// `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`
    /// (`RELSTORE_GLOBAL_KNOWN_HOSTS`, `:`-separated).
    pub global_known_hosts: Option<Vec<PathBuf>>,
    /// ssh config file; default `~/.ssh/config` (a missing default is fine, a missing
    /// explicit file is an error).
    pub ssh_config: Option<PathBuf>,
    /// Agent socket; default `$SSH_AUTH_SOCK`. `None` disables the agent.
    pub agent_socket: Option<PathBuf>,
    /// Home directory for `~`, `%d` and the default files; default `$HOME`.
    pub home: Option<PathBuf>,
    /// Limit for connecting, key exchange and authentication (per hop); a config
    /// `ConnectTimeout` wins.
    pub connect_timeout: Duration,
    /// Ask for key passphrases on the terminal (when stdin is one).
    pub prompt_passphrase: bool,
    /// Whether a relstore helper runs on the server (`--helper`, `RELSTORE_HELPER`).
    pub helper: crate::helper::HelperMode,
    /// The OpenSSH client asked to evaluate the config (`ssh -G`); `None` uses the
    /// built-in reader. [`RemoteOptions::from_env`] takes `ssh` from `PATH`.
    pub ssh_client: Option<PathBuf>,
    /// Receives notes (keywords the built-in reader ignored).
    pub notes: NoteSink,
}

impl Default for RemoteOptions {
    /// No environment consulted: nothing but explicit settings (tests build on this).
    fn default() -> Self {
        RemoteOptions {
            identity_files: Vec::new(),
            known_hosts: None,
            accept_new_host_key: false,
            global_known_hosts: None,
            ssh_config: None,
            agent_socket: None,
            home: None,
            connect_timeout: Duration::from_secs(30),
            prompt_passphrase: true,
            helper: crate::helper::HelperMode::Auto,
            ssh_client: None,
            notes: NoteSink(None),
        }
    }
}

impl RemoteOptions {
    /// Defaults from the environment: `HOME`, `SSH_AUTH_SOCK`, `ssh` on `PATH`, and
    /// for scripts and tests that cannot pass flags, `RELSTORE_SSH_IDENTITY` (paths
    /// separated by `:`), `RELSTORE_KNOWN_HOSTS`, `RELSTORE_SSH_CONFIG` and
    /// `RELSTORE_ACCEPT_NEW_HOST_KEY=1`. Command-line flags are applied on top.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        RemoteOptions {
            identity_files: var("RELSTORE_SSH_IDENTITY")
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_default(),
            known_hosts: var("RELSTORE_KNOWN_HOSTS").map(PathBuf::from),
            accept_new_host_key: var("RELSTORE_ACCEPT_NEW_HOST_KEY")
                .is_some_and(|v| v != "0" && v != "false"),
            global_known_hosts: var("RELSTORE_GLOBAL_KNOWN_HOSTS")
                .map(|v| std::env::split_paths(&v).collect()),
            ssh_config: var("RELSTORE_SSH_CONFIG").map(PathBuf::from),
            agent_socket: var("SSH_AUTH_SOCK").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            ssh_client: openssh::find_client(),
            ..RemoteOptions::default()
        }
    }
}

/// Why a connection could not even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The ssh config file (default or `--ssh-config`) could not be read.
    #[error("cannot read ssh config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config line this parser cannot read (e.g. an unterminated quote).
    #[error("{}:{line}: {reason}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A key file named on the command line is missing (config files' missing
    /// `IdentityFile`s are skipped, as OpenSSH does).
    #[error("identity file {} (given with -i) does not exist", .0.display())]
    MissingIdentity(PathBuf),
    /// `~/.ssh` is needed but `HOME` is unset.
    #[error("no home directory (HOME is unset) to find ~/.ssh in; pass --known-hosts")]
    NoHome,
    /// A config value relstore cannot use.
    #[error("ssh config for {alias}: bad {key} value {value:?}")]
    Value {
        alias: String,
        key: String,
        value: String,
    },
    /// `ssh -G` could not be started.
    #[error("cannot run `{command}` to read the ssh config")]
    OpenSshRun {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// `ssh -G` refused the config (OpenSSH's own message).
    #[error("`{command}` failed: {reason}")]
    OpenSsh { command: String, reason: String },
    /// The host is neither configured nor a resolvable name: most likely a typo.
    #[error("no Host entry matches {alias} in {files}, and {alias} does not resolve ({reason})")]
    NoSuchHost {
        alias: String,
        files: String,
        reason: String,
    },
    /// A ProxyJump hop that is not `[user@]host[:port]`.
    #[error("ProxyJump of {alias}: {reason}")]
    BadJump { alias: String, reason: String },
    /// ProxyJump hops that lead back to themselves (or a chain too long to be real).
    #[error("ProxyJump chain to {alias} is longer than {MAX_HOPS} hops (a loop? check `Host *` blocks that set ProxyJump for the jump host too)")]
    JumpLoop { alias: String },
}

/// Longest ProxyJump chain followed.
const MAX_HOPS: usize = 8;

/// The account's home directory from the password database (what `ssh` uses).
fn passwd_home() -> Option<PathBuf> {
    // SAFETY: getpwuid returns a pointer into static storage or null; the directory
    // is copied out at once (single read, no retained reference).
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
        Some(PathBuf::from(
            std::ffi::OsStr::from_encoded_bytes_unchecked(dir.to_bytes()),
        ))
    }
}

/// The name of the local user (`%u`, and the login name when nothing else says).
pub fn local_user() -> String {
    if let Some(u) = std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.is_empty())
    {
        return u;
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is
    // copied out at once (single read, no retained reference).
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    "root".into()
}

/// Which config files to read: `--ssh-config` alone; else, when HOME is the
/// account's home, `~/.ssh/config` then `/etc/ssh/ssh_config` (as OpenSSH); when
/// HOME was changed, only `$HOME/.ssh/config`.
struct Files {
    /// `Some` means "this file only" (`ssh -F`); `/dev/null` for none at all.
    only: Option<PathBuf>,
    home: Option<PathBuf>,
    rehome: Option<(PathBuf, PathBuf)>,
}

fn config_files(opts: &RemoteOptions) -> Result<Files, ConfigError> {
    let pw = passwd_home();
    let home = opts.home.clone().or_else(|| pw.clone());
    let same = |a: &Path, b: &Path| {
        a == b || std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
    };
    let rehome = match (&pw, &opts.home) {
        (Some(p), Some(h)) if !same(p, h) => Some((p.clone(), h.clone())),
        _ => None,
    };
    let only = match (&opts.ssh_config, &rehome, &home) {
        (Some(explicit), _, _) => {
            std::fs::metadata(explicit).map_err(|source| ConfigError::Read {
                path: explicit.clone(),
                source,
            })?;
            Some(explicit.clone())
        }
        (None, Some(_), Some(h)) => {
            let p = h.join(".ssh/config");
            Some(if p.exists() {
                p
            } else {
                PathBuf::from("/dev/null")
            })
        }
        _ => None,
    };
    Ok(Files { only, home, rehome })
}

/// Resolves `alias` (with the user and port a TARGET or hop gave) through the ssh
/// config: `ssh -G` when a client is configured, else the built-in reader.
pub fn resolve_host(
    alias: &str,
    user: Option<&str>,
    port: Option<u16>,
    opts: &RemoteOptions,
) -> Result<ResolvedHost, ConfigError> {
    let files = config_files(opts)?;
    let local_user = local_user();
    let local = resolved::Local {
        home: files.home.as_deref(),
        rehome: files
            .rehome
            .as_ref()
            .map(|(a, b)| (a.as_path(), b.as_path())),
        user: &local_user,
    };
    if let Some(client) = &opts.ssh_client {
        let ask = openssh::Ask {
            client,
            alias,
            user,
            port,
            config: files.only.as_deref(),
        };
        match openssh::evaluate(&ask)? {
            Some(ev) => return ResolvedHost::build(alias, ev, &local, true),
            None => note(
                opts,
                &format!(
                    "note: {} is not an OpenSSH client (no `-G`); relstore reads the ssh config itself",
                    client.display()
                ),
            ),
        }
    }
    let sources: Vec<builtin::Source> = match &files.only {
        Some(p) if p == Path::new("/dev/null") => Vec::new(),
        Some(p) => vec![builtin::Source {
            path: p.clone(),
            system: false,
        }],
        None => {
            let mut v = Vec::new();
            if let Some(h) = &files.home {
                v.push(builtin::Source {
                    path: h.join(".ssh/config"),
                    system: false,
                });
            }
            v.push(builtin::Source {
                path: PathBuf::from("/etc/ssh/ssh_config"),
                system: true,
            });
            v.retain(|s| s.path.exists());
            v
        }
    };
    let q = builtin::Query {
        alias,
        user,
        port,
        local_user: &local_user,
        home: files.home.as_deref(),
    };
    let ev = builtin::evaluate(&q, &sources)?;
    if !ev.ignored.is_empty() {
        let names: Vec<&str> = ev.ignored.iter().map(String::as_str).collect();
        note(
            opts,
            &format!(
                "note: no OpenSSH client to evaluate the ssh config; relstore's own reader ignored for {alias}: {}",
                names.join(", ")
            ),
        );
    }
    ResolvedHost::build(alias, ev, &local, false)
}

fn note(opts: &RemoteOptions, text: &str) {
    if let Some(sink) = opts.notes.0 {
        sink(text);
    }
}

/// The route to the host of `spec`, every hop resolved through the config.
pub fn resolve(spec: &RemoteSpec, opts: &RemoteOptions) -> Result<Route, ConfigError> {
    route(&spec.host, spec.user.as_deref(), spec.port, None, opts, 0)
}

/// The route to one host; `jump` overrides its own ProxyJump (the hops before it in
/// a chain, as `ssh -J` does).
fn route(
    alias: &str,
    user: Option<&str>,
    port: Option<u16>,
    jump: Option<&str>,
    opts: &RemoteOptions,
    depth: usize,
) -> Result<Route, ConfigError> {
    if depth > MAX_HOPS {
        return Err(ConfigError::JumpLoop {
            alias: alias.to_string(),
        });
    }
    let mut host = resolve_host(alias, user, port, opts)?;
    if let Some(j) = jump {
        host.proxy_jump = Some(j.to_string());
        host.proxy_command = None;
    }
    let via = if let Some(chain) = host.proxy_jump.clone() {
        let hops: Vec<&str> = chain.split(',').map(str::trim).collect();
        let (last, before) = hops.split_last().ok_or_else(|| ConfigError::BadJump {
            alias: alias.to_string(),
            reason: "empty".into(),
        })?;
        let (u, h, p) = parse_hop(last).map_err(|e| ConfigError::BadJump {
            alias: alias.to_string(),
            reason: e.to_string(),
        })?;
        let before = (!before.is_empty()).then(|| before.join(","));
        let hop = route(&h, u.as_deref(), p, before.as_deref(), opts, depth + 1);
        Via::Jump(Box::new(hop.map_err(|e| match e {
            ConfigError::JumpLoop { .. } => e,
            other => ConfigError::BadJump {
                alias: alias.to_string(),
                reason: other.to_string(),
            },
        })?))
    } else if let Some(cmd) = host.proxy_command_line() {
        Via::Command(cmd)
    } else {
        check_resolvable(&host)?;
        Via::Direct
    };
    let copts = connect_options(&host, opts)?;
    Ok(Route {
        opts: copts,
        via,
        host,
    })
}

/// An alias no config defines is passed through as a host name; when that name does
/// not resolve either, it is almost surely a typo: say so, with the files read.
fn check_resolvable(host: &ResolvedHost) -> Result<(), ConfigError> {
    if !host.hostname.eq_ignore_ascii_case(&host.alias) || host.hostname.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    match (host.hostname.as_str(), host.port).to_socket_addrs() {
        Ok(addrs) if addrs.len() > 0 => Ok(()),
        Ok(_) => Err(no_such_host(host, "no address".into())),
        Err(e) => Err(no_such_host(host, e.to_string())),
    }
}

fn no_such_host(host: &ResolvedHost, reason: String) -> ConfigError {
    let files = if host.files_read.is_empty() {
        "no ssh config file (none was read)".to_string()
    } else {
        host.files_read
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    ConfigError::NoSuchHost {
        alias: host.alias.clone(),
        files,
        reason,
    }
}

/// What the session layer takes today from a resolved host.
fn connect_options(
    host: &ResolvedHost,
    opts: &RemoteOptions,
) -> Result<ConnectOptions, ConfigError> {
    let user_files = match &opts.known_hosts {
        Some(k) => vec![k.clone()],
        None if !host.user_known_hosts_files.is_empty() => host.user_known_hosts_files.clone(),
        None => vec![opts
            .home
            .as_ref()
            .ok_or(ConfigError::NoHome)?
            .join(".ssh/known_hosts")],
    };
    let mut c = ConnectOptions::new(host.hostname.clone(), host.user.clone(), PathBuf::new());
    c.host_keys.user_files = user_files;
    if let Some(global) = &opts.global_known_hosts {
        c.host_keys.global_files = global.clone();
    } else if !host.global_known_hosts_files.is_empty() {
        c.host_keys.global_files = host.global_known_hosts_files.clone();
    }
    c.host_keys.alias = host.host_key_alias.clone();
    c.host_keys.strict = if opts.accept_new_host_key {
        StrictHostKeyChecking::AcceptNew
    } else {
        host.strict_host_key_checking
            .parse()
            .unwrap_or(StrictHostKeyChecking::Yes)
    };
    c.certificate_files = host.certificate_files.clone();
    c.port = host.port;
    c.identities = identities(opts, host)?;
    c.connect_timeout = host.connect_timeout.unwrap_or(opts.connect_timeout);
    c.compression = host.compression;
    // ServerAliveInterval is off by default in OpenSSH; relstore keeps its own quicker
    // default unless the config sets one.
    if let Some(interval) = host.server_alive_interval {
        c.keepalive = crate::session::Keepalive {
            interval,
            max: usize::try_from(host.server_alive_count_max.max(1)).unwrap_or(usize::MAX),
        };
    }
    c.prompt_passphrase = opts.prompt_passphrase;
    Ok(c)
}

/// The identities to try, in order: the agent (unless `IdentitiesOnly` or
/// `IdentityAgent none`), `-i` files (which must exist), then the host's
/// `IdentityFile`s (OpenSSH's defaults when none is set); each file once, and only if
/// it exists.
fn identities(opts: &RemoteOptions, host: &ResolvedHost) -> Result<Vec<Identity>, ConfigError> {
    let mut identities = Vec::new();
    let agent = match &host.identity_agent {
        AgentSetting::Default => opts.agent_socket.clone(),
        AgentSetting::Disabled => None,
        AgentSetting::Socket(s) => Some(s.clone()),
    };
    if let (Some(socket), false) = (agent, host.identities_only) {
        identities.push(Identity::Agent { socket });
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for f in &opts.identity_files {
        if !f.exists() {
            return Err(ConfigError::MissingIdentity(f.clone()));
        }
        files.push(f.clone());
    }
    files.extend(host.identity_files.iter().cloned());
    let mut seen = Vec::new();
    for f in files {
        if f.is_file() && !seen.contains(&f) {
            seen.push(f.clone());
            identities.push(Identity::KeyFile {
                path: f,
                passphrase: None,
            });
        }
    }
    Ok(identities)
}

#[cfg(test)]
mod tests;
