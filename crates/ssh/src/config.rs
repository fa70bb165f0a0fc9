//! From a remote TARGET plus the user's SSH setup to [`ConnectOptions`].
//!
//! relstore honours the parts of `~/.ssh/config` a deploy needs so that `web1:/srv`
//! means what it means to `ssh web1`: `Host` blocks with patterns (`*`, `?`, `!neg`,
//! several per line), `HostName` (with `%h`), `User`, `Port`, `IdentityFile` (with `~`
//! and `%d %u %h %r %p %%`), `UserKnownHostsFile` (first file). As in OpenSSH the first
//! value obtained for a keyword wins, except `IdentityFile`, which accumulates.
//! `Match` blocks and `Include` are not supported: their contents are ignored (never
//! misapplied). A small parser is used instead of a crate: the crates available
//! either reject lines before the first `Host` or need flags for common keywords,
//! and this subset is a few dozen lines.
//!
//! [`RemoteOptions`] carries what the command line adds (`-i`, `--known-hosts`,
//! `--accept-new-host-key`, `--ssh-config`) and the environment (`HOME`,
//! `SSH_AUTH_SOCK`, `RELSTORE_*` overrides for scripts and tests).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::session::{ConnectOptions, Identity};
use crate::spec::RemoteSpec;

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
    /// Global known_hosts files; default `/etc/ssh/ssh_known_hosts` and
    /// `/etc/ssh/ssh_known_hosts2` (`RELSTORE_GLOBAL_KNOWN_HOSTS`, `:`-separated).
    pub global_known_hosts: Option<Vec<PathBuf>>,
    /// ssh config file; default `~/.ssh/config` (a missing default is fine, a missing
    /// explicit file is an error).
    pub ssh_config: Option<PathBuf>,
    /// Agent socket; default `$SSH_AUTH_SOCK`. `None` disables the agent.
    pub agent_socket: Option<PathBuf>,
    /// Home directory for `~`, `%d` and the default files; default `$HOME`.
    pub home: Option<PathBuf>,
    /// Limit for connecting, key exchange and authentication.
    pub connect_timeout: Duration,
    /// Ask for key passphrases on the terminal (when stdin is one).
    pub prompt_passphrase: bool,
    /// Whether a relstore helper runs on the server (`--helper`, `RELSTORE_HELPER`).
    pub helper: crate::helper::HelperMode,
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
        }
    }
}

impl RemoteOptions {
    /// Defaults from the environment: `HOME`, `SSH_AUTH_SOCK`, and for scripts and
    /// tests that cannot pass flags, `RELSTORE_SSH_IDENTITY` (paths separated by
    /// `:`), `RELSTORE_KNOWN_HOSTS`, `RELSTORE_GLOBAL_KNOWN_HOSTS` (`:`-separated),
    /// `RELSTORE_SSH_CONFIG` and `RELSTORE_ACCEPT_NEW_HOST_KEY=1`. Command-line flags
    /// are applied on top.
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
}

/// One `Host` block.
#[derive(Clone, Debug, Default)]
struct Block {
    /// `(negated, pattern)`.
    patterns: Vec<(bool, String)>,
    /// `Match` blocks never apply (unsupported).
    never: bool,
    /// `(keyword lower-cased, arguments)`.
    settings: Vec<(String, Vec<String>)>,
}

/// A parsed ssh config file.
#[derive(Clone, Debug, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

/// What the config says about one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Unexpanded, in order.
    pub identity_files: Vec<String>,
    pub user_known_hosts_file: Option<String>,
}

impl SshConfig {
    /// Parses config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<SshConfig, ConfigError> {
        // Lines before the first Host apply to every host.
        let mut blocks = vec![Block {
            patterns: vec![(false, "*".into())],
            ..Block::default()
        }];
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: &str| ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                reason: reason.to_string(),
            };
            let key_end = line
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(line.len());
            let key = line[..key_end].to_ascii_lowercase();
            let rest = line[key_end..].trim_start();
            let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
            let args = split_args(rest).map_err(|r| syntax(&r))?;
            match key.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(syntax("Host without a pattern"));
                    }
                    blocks.push(Block {
                        patterns: args
                            .into_iter()
                            .map(|a| match a.strip_prefix('!') {
                                Some(p) => (true, p.to_string()),
                                None => (false, a),
                            })
                            .collect(),
                        ..Block::default()
                    });
                }
                "match" => blocks.push(Block {
                    never: true,
                    ..Block::default()
                }),
                _ => {
                    if let Some(b) = blocks.last_mut() {
                        b.settings.push((key, args));
                    }
                }
            }
        }
        Ok(SshConfig { blocks })
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<SshConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SshConfig::parse(&text, path)
    }

    /// The settings for `host` (the name as the user wrote it).
    pub fn resolve(&self, host: &str) -> HostConfig {
        let mut out = HostConfig::default();
        for b in &self.blocks {
            if b.never || !block_matches(b, host) {
                continue;
            }
            for (key, args) in &b.settings {
                let Some(first) = args.first() else { continue };
                match key.as_str() {
                    "hostname" if out.hostname.is_none() => {
                        out.hostname = Some(expand_percent_host(first, host));
                    }
                    "user" if out.user.is_none() => out.user = Some(first.clone()),
                    "port" if out.port.is_none() => out.port = first.parse().ok(),
                    "identityfile" if !out.identity_files.contains(first) => {
                        out.identity_files.push(first.clone());
                    }
                    "userknownhostsfile" if out.user_known_hosts_file.is_none() => {
                        out.user_known_hosts_file = Some(first.clone());
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

fn block_matches(b: &Block, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let mut positive = false;
    for (neg, pat) in &b.patterns {
        if glob(&pat.to_ascii_lowercase(), &host) {
            if *neg {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` and `?` glob over bytes.
fn glob(pat: &str, s: &str) -> bool {
    let (p, s) = (pat.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// Splits arguments on whitespace, honouring double quotes.
fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut have = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                have = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if in_quotes {
        return Err("unterminated quote".into());
    }
    if have {
        out.push(cur);
    }
    Ok(out)
}

fn expand_percent_host(s: &str, host: &str) -> String {
    expand_tokens(s, &[('h', host)])
}

/// Replaces `%X` tokens from `table` and `%%`; unknown tokens stay as written.
fn expand_tokens(s: &str, table: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match table.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push('%');
                    out.push(t);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// `~` / `~/x` → home; relative paths stay relative (to the working directory).
fn expand_tilde(s: &str, home: Option<&Path>) -> PathBuf {
    match (s.strip_prefix('~'), home) {
        (Some(""), Some(h)) => h.to_path_buf(),
        (Some(r), Some(h)) if r.starts_with('/') => h.join(r.trim_start_matches('/')),
        _ => PathBuf::from(s),
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

/// The identities to try, in order: the agent, `-i` files (which must exist), the
/// config's `IdentityFile`s, then the default `~/.ssh/id_*` keys; each file once, and
/// only if it exists.
fn identities(
    opts: &RemoteOptions,
    hc: &HostConfig,
    home: Option<&Path>,
    expand: impl Fn(&str) -> PathBuf,
) -> Result<Vec<Identity>, ConfigError> {
    let mut identities = Vec::new();
    if let Some(sock) = &opts.agent_socket {
        identities.push(Identity::Agent {
            socket: sock.clone(),
        });
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for f in &opts.identity_files {
        if !f.exists() {
            return Err(ConfigError::MissingIdentity(f.clone()));
        }
        files.push(f.clone());
    }
    for f in &hc.identity_files {
        files.push(expand(f));
    }
    if let Some(h) = home {
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            files.push(h.join(".ssh").join(name));
        }
    }
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

/// The ssh config in effect: `--ssh-config`, else `~/.ssh/config` if it exists, else
/// none.
fn load_config(opts: &RemoteOptions) -> Result<SshConfig, ConfigError> {
    match (&opts.ssh_config, opts.home.as_deref()) {
        (Some(explicit), _) => SshConfig::load(explicit),
        (None, Some(h)) => {
            let p = h.join(".ssh/config");
            if p.exists() {
                SshConfig::load(&p)
            } else {
                Ok(SshConfig::default())
            }
        }
        (None, None) => Ok(SshConfig::default()),
    }
}

/// Everything needed to connect to the host of `spec`, with the config applied.
pub fn resolve(spec: &RemoteSpec, opts: &RemoteOptions) -> Result<ConnectOptions, ConfigError> {
    let home = opts.home.as_deref();
    let hc = load_config(opts)?.resolve(&spec.host);
    let hostname = hc.hostname.clone().unwrap_or_else(|| spec.host.clone());
    let local = local_user();
    let user = spec
        .user
        .clone()
        .or(hc.user.clone())
        .unwrap_or_else(|| local.clone());
    let port = spec.port.or(hc.port).unwrap_or(22);
    let home_s = home.map(|h| h.display().to_string()).unwrap_or_default();
    let port_s = port.to_string();
    let table = [
        ('d', home_s.as_str()),
        ('u', local.as_str()),
        ('h', hostname.as_str()),
        ('r', user.as_str()),
        ('p', port_s.as_str()),
        ('n', spec.host.as_str()),
    ];
    let expand = |s: &str| expand_tilde(&expand_tokens(s, &table), home);

    let known_hosts = match (&opts.known_hosts, &hc.user_known_hosts_file) {
        (Some(k), _) => k.clone(),
        (None, Some(k)) => expand(k),
        (None, None) => home.ok_or(ConfigError::NoHome)?.join(".ssh/known_hosts"),
    };

    let identities = identities(opts, &hc, home, expand)?;

    let mut c = ConnectOptions::new(hostname, user, known_hosts);
    c.port = port;
    c.identities = identities;
    c.connect_timeout = opts.connect_timeout;
    if opts.accept_new_host_key {
        c.host_keys.strict = crate::session::StrictHostKeyChecking::AcceptNew;
    }
    if let Some(global) = &opts.global_known_hosts {
        c.host_keys.global_files = global.clone();
    }
    c.prompt_passphrase = opts.prompt_passphrase;
    Ok(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CFG: &str = "\
# global first
IdentityFile ~/.ssh/global_key
Host web1 web1.example
    HostName 10.0.0.5
    User deploy
    Port 2222
    IdentityFile %d/.ssh/%r@%h
Host *.internal !bad.internal
  User=ops
  HostName \"%h.corp\"
Host web?
  User nobody-wins-here
  Port 1
Match host foo
  User matched
Host *
  User fallback
";

    fn cfg() -> SshConfig {
        SshConfig::parse(CFG, Path::new("cfg")).unwrap()
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let h = cfg().resolve("web1");
        assert_eq!(h.hostname.as_deref(), Some("10.0.0.5"));
        assert_eq!(h.user.as_deref(), Some("deploy"));
        assert_eq!(h.port, Some(2222));
        assert_eq!(
            h.identity_files,
            vec!["~/.ssh/global_key".to_string(), "%d/.ssh/%r@%h".into()]
        );
    }

    #[test]
    fn patterns_negation_and_percent_h() {
        let c = cfg();
        let h = c.resolve("db.internal");
        assert_eq!(h.user.as_deref(), Some("ops"));
        assert_eq!(h.hostname.as_deref(), Some("db.internal.corp"));
        let h = c.resolve("bad.internal");
        assert_eq!(h.user.as_deref(), Some("fallback"));
        assert_eq!(h.hostname, None);
        let h = c.resolve("web7");
        assert_eq!(
            (h.user.as_deref(), h.port),
            (Some("nobody-wins-here"), Some(1))
        );
        assert_eq!(c.resolve("foo").user.as_deref(), Some("fallback"));
    }

    #[test]
    fn globbing() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*.x.*", "a.x.b"));
        assert!(!glob("web", "web1"));
    }

    #[test]
    fn resolve_applies_spec_over_config_and_expands() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/config"), CFG).unwrap();
        std::fs::write(home.join(".ssh/deploy@10.0.0.5"), "k").unwrap();
        std::fs::write(home.join(".ssh/id_rsa"), "k").unwrap();
        let opts = RemoteOptions {
            home: Some(home.to_path_buf()),
            ..RemoteOptions::default()
        };
        let spec = RemoteSpec::parse("web1:/srv").unwrap();
        let c = resolve(&spec, &opts).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("10.0.0.5", 2222, "deploy")
        );
        assert_eq!(c.host_keys.user_files, vec![home.join(".ssh/known_hosts")]);
        let files: Vec<PathBuf> = c
            .identities
            .iter()
            .filter_map(|i| match i {
                Identity::KeyFile { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            files,
            vec![home.join(".ssh/deploy@10.0.0.5"), home.join(".ssh/id_rsa")]
        );
        let spec = RemoteSpec::parse("ssh://me@web1:22/srv").unwrap();
        let c = resolve(&spec, &opts).unwrap();
        assert_eq!((c.port, c.user.as_str()), (22, "me"));

        let missing = RemoteOptions {
            identity_files: vec![home.join("nope")],
            ..opts.clone()
        };
        let e = resolve(&spec, &missing).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let bad_cfg = RemoteOptions {
            ssh_config: Some(home.join("missing_config")),
            ..opts
        };
        assert!(resolve(&spec, &bad_cfg).is_err());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = SshConfig::parse("Host a\n  User \"x\n", Path::new("c")).unwrap_err();
        assert_eq!(e.to_string(), "c:2: unterminated quote");
    }
}
