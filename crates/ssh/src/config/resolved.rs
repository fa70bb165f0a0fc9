//! [`ResolvedHost`]: every setting relstore takes from the ssh config for one host,
//! with OpenSSH's defaults filled in, `%` tokens and `~` expanded, whichever reader
//! (`ssh -G` or the built-in one) produced it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::builtin::Evaluated;
use super::text::{expand_tilde, expand_tokens};
use super::ConfigError;

/// Which agent to use for this host (`IdentityAgent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSetting {
    /// Not configured: `SSH_AUTH_SOCK` (or relstore's own setting).
    Default,
    /// `IdentityAgent none`: no agent.
    Disabled,
    /// A socket path named by the config.
    Socket(PathBuf),
}

/// How one host is reached and checked, as OpenSSH would evaluate its config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedHost {
    /// The host as written in the TARGET (or a ProxyJump hop).
    pub alias: String,
    /// `HostName` (default: the alias).
    pub hostname: String,
    pub user: String,
    pub port: u16,
    /// `IdentityFile`s, expanded, existing or not (OpenSSH's defaults if none set).
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly yes`: only the configured files, no agent keys.
    pub identities_only: bool,
    /// `CertificateFile`s, expanded.
    pub certificate_files: Vec<PathBuf>,
    pub identity_agent: AgentSetting,
    /// `UserKnownHostsFile` list (new keys are recorded in the first).
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile` list.
    pub global_known_hosts_files: Vec<PathBuf>,
    /// `HostKeyAlias`: the name to look the host key up under.
    pub host_key_alias: Option<String>,
    /// `StrictHostKeyChecking`, normalised to `yes`, `no`, `ask` or `accept-new`.
    pub strict_host_key_checking: String,
    /// `ProxyJump` chain as written (`None` for `none` or unset).
    pub proxy_jump: Option<String>,
    /// `ProxyCommand`, tokens not yet expanded (`None` for `none` or unset).
    pub proxy_command: Option<String>,
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval` (`None` when 0).
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: u32,
    pub compression: bool,
    /// Config files read to get here, for messages.
    pub files_read: Vec<PathBuf>,
    /// Whether `ssh -G` evaluated it (else the built-in reader).
    pub from_openssh: bool,
}

/// Facts about the local side needed for expansion.
pub(crate) struct Local<'a> {
    pub home: Option<&'a Path>,
    /// `(passwd home, HOME)` when they differ: paths `ssh -G` expanded under the
    /// passwd home are moved under HOME (see [`super::resolve_host`]).
    pub rehome: Option<(&'a Path, &'a Path)>,
    pub user: &'a str,
}

const DEFAULT_IDS: &[&str] = &[
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];

impl ResolvedHost {
    /// Builds the resolved host from an evaluation; `from_openssh` says `ssh -G`
    /// produced it (defaults present, host and known_hosts tokens already expanded).
    pub(crate) fn build(
        alias: &str,
        ev: Evaluated,
        local: &Local,
        from_openssh: bool,
    ) -> Result<ResolvedHost, ConfigError> {
        let r = Reading::new(alias, &ev, local, from_openssh)?;
        let mut identity_files: Vec<PathBuf> = r.paths("identityfile");
        if identity_files.is_empty() && !from_openssh {
            identity_files = DEFAULT_IDS.iter().map(|v| r.path(v, false)).collect();
        }
        Ok(ResolvedHost {
            alias: alias.to_string(),
            identity_files,
            identities_only: r.flag("identitiesonly"),
            certificate_files: r.paths("certificatefile"),
            identity_agent: r.agent(),
            user_known_hosts_files: r.list(
                "userknownhostsfile",
                "~/.ssh/known_hosts ~/.ssh/known_hosts2",
            ),
            global_known_hosts_files: r.list(
                "globalknownhostsfile",
                "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2",
            ),
            host_key_alias: r.opt("hostkeyalias"),
            strict_host_key_checking: r.strict()?,
            proxy_jump: r.opt("proxyjump"),
            proxy_command: r.opt("proxycommand"),
            connect_timeout: r.seconds("connecttimeout")?,
            server_alive_interval: r.seconds("serveraliveinterval")?,
            server_alive_count_max: match ev.get("serveralivecountmax") {
                None => 3,
                Some(v) => v.parse().map_err(|_| r.bad("ServerAliveCountMax", v))?,
            },
            compression: r.flag("compression"),
            hostname: r.hostname.clone(),
            user: r.user.clone(),
            port: r.port,
            files_read: ev.files_read.clone(),
            from_openssh,
        })
    }

    /// `ProxyCommand` with `%h %p %r %n %%` expanded, as run by `sh -c`.
    pub fn proxy_command_line(&self) -> Option<String> {
        let port = self.port.to_string();
        self.proxy_command.as_deref().map(|c| {
            expand_tokens(
                c,
                &[
                    ('h', self.hostname.as_str()),
                    ('p', port.as_str()),
                    ('r', self.user.as_str()),
                    ('n', self.alias.as_str()),
                ],
            )
        })
    }
}

/// One evaluation being turned into settings: where the host is (for `%` tokens)
/// and how to read each kind of value.
struct Reading<'a> {
    alias: &'a str,
    ev: &'a Evaluated,
    local: &'a Local<'a>,
    from_openssh: bool,
    hostname: String,
    user: String,
    port: u16,
}

impl<'a> Reading<'a> {
    fn new(
        alias: &'a str,
        ev: &'a Evaluated,
        local: &'a Local<'a>,
        from_openssh: bool,
    ) -> Result<Self, ConfigError> {
        let hostname = match ev.get("hostname") {
            Some(h) if !from_openssh => expand_tokens(h, &[('h', alias)]),
            Some(h) => h.to_string(),
            None => alias.to_string(),
        };
        let mut r = Reading {
            alias,
            ev,
            local,
            from_openssh,
            hostname,
            user: ev.get("user").unwrap_or(local.user).to_string(),
            port: 22,
        };
        if let Some(p) = ev.get("port") {
            r.port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| r.bad("Port", p))?;
        }
        Ok(r)
    }

    fn bad(&self, key: &str, value: &str) -> ConfigError {
        ConfigError::Value {
            alias: self.alias.to_string(),
            key: key.to_string(),
            value: value.to_string(),
        }
    }

    /// A path value: `%` tokens (when `tokens`), `~`, and the HOME move.
    fn path(&self, s: &str, tokens: bool) -> PathBuf {
        let s = if tokens {
            let home = self
                .local
                .home
                .map(|h| h.display().to_string())
                .unwrap_or_default();
            let port = self.port.to_string();
            let table = [
                ('d', home.as_str()),
                ('u', self.local.user),
                ('h', self.hostname.as_str()),
                ('r', self.user.as_str()),
                ('p', port.as_str()),
                ('n', self.alias),
            ];
            expand_tokens(s, &table)
        } else {
            s.to_string()
        };
        rehome(expand_tilde(&s, self.local.home), self.local.rehome)
    }

    /// Every value of a repeatable path keyword.
    fn paths(&self, key: &str) -> Vec<PathBuf> {
        self.ev
            .pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| self.path(v, true))
            .collect()
    }

    /// A space-separated list of paths (`none`: empty); `default` for the built-in
    /// reader (`ssh -G` prints its defaults itself, tokens already expanded).
    fn list(&self, key: &str, default: &str) -> Vec<PathBuf> {
        let v = self
            .ev
            .get(key)
            .unwrap_or(if self.from_openssh { "" } else { default });
        if v.eq_ignore_ascii_case("none") {
            return Vec::new();
        }
        v.split_whitespace()
            .map(|p| self.path(p, !self.from_openssh))
            .collect()
    }

    fn flag(&self, key: &str) -> bool {
        self.ev
            .get(key)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true"))
    }

    /// A value where `none` means unset.
    fn opt(&self, key: &str) -> Option<String> {
        self.ev
            .get(key)
            .filter(|v| !v.eq_ignore_ascii_case("none"))
            .map(str::to_string)
    }

    fn strict(&self) -> Result<String, ConfigError> {
        let Some(v) = self.ev.get("stricthostkeychecking") else {
            return Ok("ask".into());
        };
        Ok(match v.to_ascii_lowercase().as_str() {
            "yes" | "true" => "yes".into(),
            "no" | "false" | "off" => "no".into(),
            "ask" => "ask".into(),
            "accept-new" => "accept-new".into(),
            _ => return Err(self.bad("StrictHostKeyChecking", v)),
        })
    }

    /// A time in OpenSSH's format; `none` or 0 mean unset.
    fn seconds(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        match self.ev.get(key) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("none") => Ok(None),
            Some(v) => match convtime(v) {
                Some(0) => Ok(None),
                Some(s) => Ok(Some(Duration::from_secs(s))),
                None => Err(self.bad(key, v)),
            },
        }
    }

    fn agent(&self) -> AgentSetting {
        match self.ev.get("identityagent") {
            None | Some("SSH_AUTH_SOCK") => AgentSetting::Default,
            Some(v) if v.eq_ignore_ascii_case("none") => AgentSetting::Disabled,
            Some(v) => match v.strip_prefix('$') {
                Some(var) => match std::env::var_os(var) {
                    Some(s) if !s.is_empty() => AgentSetting::Socket(PathBuf::from(s)),
                    _ => AgentSetting::Disabled,
                },
                None => AgentSetting::Socket(self.path(v, true)),
            },
        }
    }
}

/// Moves a path under the passwd home to the same place under HOME.
/// Only `~/.ssh/…` moves: a passwd home of `/` must not move `/etc/ssh/…`.
fn rehome(p: PathBuf, rehome: Option<(&Path, &Path)>) -> PathBuf {
    match rehome {
        Some((pw, home)) => match p.strip_prefix(pw.join(".ssh")) {
            Ok(rest) => home.join(".ssh").join(rest),
            Err(_) => p,
        },
        None => p,
    }
}

/// OpenSSH's time format: `90`, `90s`, `1m30s`, `2h`, `1d`, `1w`.
fn convtime(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(d))?,
            );
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return None,
        };
        total = total.checked_add(num.take()?.checked_mul(mult)?)?;
    }
    if let Some(n) = num {
        total = total.checked_add(n)?;
    }
    Some(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(pairs: Vec<(String, String)>) -> Evaluated {
        Evaluated {
            pairs,
            ..Evaluated::default()
        }
    }

    #[test]
    fn times() {
        assert_eq!(convtime("90"), Some(90));
        assert_eq!(convtime("1m30s"), Some(90));
        assert_eq!(convtime("2h"), Some(7200));
        assert_eq!(convtime("x"), None);
        assert_eq!(convtime("m"), None);
    }

    #[test]
    fn builtin_defaults_and_expansion() {
        let ev = ev(vec![
            ("hostname".into(), "%h.corp".into()),
            ("identityfile".into(), "%d/.ssh/%r@%h".into()),
            ("proxycommand".into(), "nc %h %p %r %n %%".into()),
            ("stricthostkeychecking".into(), "accept-new".into()),
            ("connecttimeout".into(), "1m".into()),
            ("identityagent".into(), "none".into()),
        ]);
        let home = Path::new("/h");
        let local = Local {
            home: Some(home),
            rehome: None,
            user: "me",
        };
        let r = ResolvedHost::build("web", ev, &local, false).unwrap();
        assert_eq!(
            (r.hostname.as_str(), r.user.as_str(), r.port),
            ("web.corp", "me", 22)
        );
        assert_eq!(r.identity_files, vec![PathBuf::from("/h/.ssh/me@web.corp")]);
        assert_eq!(
            r.user_known_hosts_files,
            vec![
                PathBuf::from("/h/.ssh/known_hosts"),
                PathBuf::from("/h/.ssh/known_hosts2")
            ]
        );
        assert_eq!(
            r.global_known_hosts_files[0],
            PathBuf::from("/etc/ssh/ssh_known_hosts")
        );
        assert_eq!(r.proxy_command_line().unwrap(), "nc web.corp 22 me web %");
        assert_eq!(r.strict_host_key_checking, "accept-new");
        assert_eq!(r.connect_timeout, Some(Duration::from_secs(60)));
        assert_eq!(r.identity_agent, AgentSetting::Disabled);
    }

    #[test]
    fn bad_values_name_host_and_key() {
        let ev = ev(vec![("port".into(), "http".into())]);
        let local = Local {
            home: None,
            rehome: None,
            user: "me",
        };
        let e = ResolvedHost::build("web", ev, &local, false).unwrap_err();
        assert_eq!(e.to_string(), "ssh config for web: bad Port value \"http\"");
    }

    #[test]
    fn openssh_paths_move_from_passwd_home_to_home() {
        let ev = ev(vec![
            (
                "userknownhostsfile".into(),
                "/root/.ssh/known_hosts /root/.ssh/kh2".into(),
            ),
            ("identityfile".into(), "~/.ssh/id_rsa".into()),
        ]);
        let local = Local {
            home: Some(Path::new("/t")),
            rehome: Some((Path::new("/root"), Path::new("/t"))),
            user: "me",
        };
        let r = ResolvedHost::build("web", ev.clone(), &local, true).unwrap();
        let root = Local {
            rehome: Some((Path::new("/"), Path::new("/t"))),
            ..local
        };
        let g = ResolvedHost::build("web", ev, &root, true).unwrap();
        assert_eq!(
            g.user_known_hosts_files[0],
            PathBuf::from("/root/.ssh/known_hosts")
        );
        assert_eq!(
            r.user_known_hosts_files[0],
            PathBuf::from("/t/.ssh/known_hosts")
        );
        assert_eq!(r.identity_files, vec![PathBuf::from("/t/.ssh/id_rsa")]);
    }
}
