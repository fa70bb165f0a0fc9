//! Parsing a remote TARGET argument: `[user@]host:path` (scp/rsync style) or
//! `ssh://[user@]host[:port]/path`, with IPv6 addresses in brackets in both forms.
//!
//! Only the syntax is handled here; what `host` means (an alias of `~/.ssh/config`, a
//! name, an address) is decided by [`crate::config`], and a relative path is resolved
//! against the login's home directory once connected (SFTP `realpath`).

/// A remote target as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSpec {
    /// User before `@`, if given (it wins over `User` in the ssh config).
    pub user: Option<String>,
    /// Host as written (an alias, a name or an address; IPv6 without brackets).
    pub host: String,
    /// Port, only in the `ssh://` form (wins over `Port` in the ssh config).
    pub port: Option<u16>,
    /// Path on the server as written; relative means relative to the login's home
    /// directory (a leading `~/` means the same). Empty means the home directory.
    pub path: String,
}

/// Why a target string is not a usable remote spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{spec}: {reason}")]
pub struct SpecError {
    /// The target as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RemoteSpec {
    /// Parses `spec`; see the module docs for the accepted forms.
    pub fn parse(spec: &str) -> Result<RemoteSpec, SpecError> {
        let err = |reason: &str| SpecError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let parsed = if let Some(rest) = spec.strip_prefix("ssh://") {
            // ssh://[user@]host[:port]/path — the path starts at the first '/' after
            // the authority (an absolute path; `ssh://h/~/x` means home-relative).
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (user, hostport) = split_user(authority);
            let (host, port) = split_host_port(hostport).map_err(|r| err(&r))?;
            let path = match path.strip_prefix("/~") {
                Some(home_rel) if home_rel.is_empty() || home_rel.starts_with('/') => {
                    home_rel.trim_start_matches('/').to_string()
                }
                _ => path.to_string(),
            };
            RemoteSpec {
                user,
                host,
                port,
                path,
            }
        } else {
            // [user@]host:path, where host may be [v6addr].
            let (user, rest) = split_user_scp(spec);
            let (host, path) = if let Some(inner) = rest.strip_prefix('[') {
                let close = inner
                    .find(']')
                    .ok_or_else(|| err("an IPv6 address in [ ] is missing its ]"))?;
                let after = &inner[close + 1..];
                let path = after
                    .strip_prefix(':')
                    .ok_or_else(|| err("expected ':' after ]"))?;
                (inner[..close].to_string(), path)
            } else {
                let colon = rest
                    .find(':')
                    .ok_or_else(|| err("not host:path (no colon)"))?;
                (rest[..colon].to_string(), &rest[colon + 1..])
            };
            let path = match path.strip_prefix('~') {
                Some("") => String::new(),
                Some(r) if r.starts_with('/') => r.trim_start_matches('/').to_string(),
                _ => path.to_string(),
            };
            RemoteSpec {
                user,
                host,
                port: None,
                path,
            }
        };
        if parsed.host.is_empty() {
            return Err(err("the host is empty"));
        }
        if parsed.host.starts_with('-') {
            return Err(err("the host starts with '-'"));
        }
        if parsed.user.as_deref() == Some("") {
            return Err(err("the user before @ is empty"));
        }
        if parsed.path.contains('\0') {
            return Err(err("the path contains a NUL byte"));
        }
        Ok(parsed)
    }
}

/// One ProxyJump hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`, as
/// OpenSSH's `-J` takes it: `(user, host, port)`.
pub fn parse_hop(hop: &str) -> Result<(Option<String>, String, Option<u16>), SpecError> {
    let err = |reason: &str| SpecError {
        spec: hop.to_string(),
        reason: reason.to_string(),
    };
    let authority = hop.strip_prefix("ssh://").unwrap_or(hop);
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (user, hostport) = split_user(authority);
    let (host, port) = split_host_port(hostport).map_err(|r| err(&r))?;
    if host.is_empty() {
        return Err(err("the host is empty"));
    }
    if host.starts_with('-') || host.contains(['/', ' ']) {
        return Err(err("not [user@]host[:port]"));
    }
    if user.as_deref() == Some("") {
        return Err(err("the user before @ is empty"));
    }
    Ok((user, host, port))
}

/// `user@rest` in an `ssh://` authority (the last `@` separates: user names cannot
/// hold one, but being lenient costs nothing).
fn split_user(authority: &str) -> (Option<String>, &str) {
    match authority.rfind('@') {
        Some(i) => (Some(authority[..i].to_string()), &authority[i + 1..]),
        None => (None, authority),
    }
}

/// `user@host:path`: the `@` must come before the host's colon (a path may hold `@`).
fn split_user_scp(spec: &str) -> (Option<String>, &str) {
    let host_end = if spec.starts_with('[') {
        spec.find(']').unwrap_or(spec.len())
    } else {
        spec.find(':').unwrap_or(spec.len())
    };
    match spec[..host_end].rfind('@') {
        Some(i) => (Some(spec[..i].to_string()), &spec[i + 1..]),
        None => (None, spec),
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("bad port {p:?}"))
    };
    if let Some(inner) = s.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or("an IPv6 address in [ ] is missing its ]")?;
        let host = inner[..close].to_string();
        let after = &inner[close + 1..];
        if after.is_empty() {
            return Ok((host, None));
        }
        let port = after.strip_prefix(':').ok_or("expected ':' after ]")?;
        return Ok((host, Some(parse_port(port)?)));
    }
    match s.rfind(':') {
        Some(i) => Ok((s[..i].to_string(), Some(parse_port(&s[i + 1..])?))),
        None => Ok((s.to_string(), None)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> RemoteSpec {
        RemoteSpec::parse(s).unwrap()
    }

    #[test]
    fn scp_forms() {
        assert_eq!(
            p("deploy@web1:/srv/www"),
            RemoteSpec {
                user: Some("deploy".into()),
                host: "web1".into(),
                port: None,
                path: "/srv/www".into()
            }
        );
        let s = p("web1:site");
        assert_eq!(
            (s.user, s.host.as_str(), s.path.as_str()),
            (None, "web1", "site")
        );
        assert_eq!(p("web1:").path, "");
        assert_eq!(p("web1:~/site").path, "site");
        assert_eq!(p("web1:~").path, "");
        assert_eq!(p("web1:/a@b:c").path, "/a@b:c");
        let v6 = p("me@[::1]:/srv");
        assert_eq!((v6.host.as_str(), v6.path.as_str()), ("::1", "/srv"));
        assert_eq!(v6.user.as_deref(), Some("me"));
    }

    #[test]
    fn url_forms() {
        let s = p("ssh://deploy@web1:2222/srv/www/site");
        assert_eq!(s.user.as_deref(), Some("deploy"));
        assert_eq!((s.host.as_str(), s.port), ("web1", Some(2222)));
        assert_eq!(s.path, "/srv/www/site");
        let s = p("ssh://web1/~/site");
        assert_eq!((s.port, s.path.as_str()), (None, "site"));
        let s = p("ssh://[::1]:22/x");
        assert_eq!((s.host.as_str(), s.port), ("::1", Some(22)));
        let s = p("ssh://[fe80::1]/x");
        assert_eq!((s.host.as_str(), s.port), ("fe80::1", None));
    }

    #[test]
    fn refusals() {
        assert!(RemoteSpec::parse("ssh://h:99999/x").is_err());
        assert!(RemoteSpec::parse("ssh://h:0/x").is_err());
        assert!(RemoteSpec::parse(":/x").is_err());
        assert!(RemoteSpec::parse("@h:/x").is_err());
        assert!(RemoteSpec::parse("[::1/x").is_err());
        assert!(RemoteSpec::parse("nocolon").is_err());
        assert!(RemoteSpec::parse("-oProxyCommand=x:/p").is_err());
        let e = RemoteSpec::parse("ssh://h:port/x").unwrap_err();
        assert!(e.to_string().contains("ssh://h:port/x"), "{e}");
    }

    #[test]
    fn jump_hops() {
        assert_eq!(parse_hop("b").unwrap(), (None, "b".into(), None));
        assert_eq!(
            parse_hop("me@b:2200").unwrap(),
            (Some("me".into()), "b".into(), Some(2200))
        );
        assert_eq!(
            parse_hop("ssh://me@[::1]:22").unwrap(),
            (Some("me".into()), "::1".into(), Some(22))
        );
        for bad in ["", "@b", "b:x", "-b", "a/b"] {
            let e = parse_hop(bad).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{bad}: ")), "{e}");
        }
    }
}
