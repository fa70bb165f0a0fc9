//! The built-in ssh config reader, used when no OpenSSH client is installed to ask
//! (`ssh -G`). It evaluates files the way OpenSSH does for the keywords relstore uses:
//! `Host` (patterns, `!negation`), `Match host/originalhost/user/localuser/all`
//! (with `!`), `Include` (globs, `~`, relative to `~/.ssh` or `/etc/ssh`, nested,
//! conditional inside a block), first value wins except `IdentityFile` and
//! `CertificateFile`, which accumulate. Every other keyword that applies to the host
//! is collected in `Evaluated::ignored` so the caller can name them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::text::{expand_tilde, glob_paths, pattern_list_matches, split_args};
use super::ConfigError;

/// Keywords this reader applies; everything else is reported as ignored.
pub(crate) const APPLIED: &[&str] = &[
    "hostname",
    "user",
    "port",
    "identityfile",
    "identitiesonly",
    "certificatefile",
    "identityagent",
    "userknownhostsfile",
    "globalknownhostsfile",
    "hostkeyalias",
    "stricthostkeychecking",
    "proxyjump",
    "proxycommand",
    "connecttimeout",
    "serveraliveinterval",
    "serveralivecountmax",
    "compression",
];

/// Keywords whose every value counts (OpenSSH accumulates them).
const MULTI: &[&str] = &["identityfile", "certificatefile"];

/// Include nesting OpenSSH allows.
const MAX_DEPTH: usize = 16;

/// The outcome of evaluating config files for one host, in `ssh -G`'s shape:
/// lower-case keyword and its value, in the order obtained.
#[derive(Clone, Debug, Default)]
pub(crate) struct Evaluated {
    pub pairs: Vec<(String, String)>,
    /// Every file read, Includes too, in order.
    pub files_read: Vec<PathBuf>,
    /// Keywords (and unsupported `Match` criteria) that applied but were ignored.
    pub ignored: BTreeSet<String>,
}

impl Evaluated {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: String) {
        if MULTI.contains(&key) {
            if !self.pairs.iter().any(|(k, v)| k == key && *v == value) {
                self.pairs.push((key.to_string(), value));
            }
        } else if self.get(key).is_none() {
            // ProxyJump and ProxyCommand exclude each other as in OpenSSH: any
            // ProxyCommand (`none` too) blocks a later ProxyJump; a ProxyJump blocks
            // a later ProxyCommand unless it was `none`.
            let blocked = match key {
                "proxyjump" => self.get("proxycommand").is_some(),
                "proxycommand" => self
                    .get("proxyjump")
                    .is_some_and(|j| !j.eq_ignore_ascii_case("none")),
                _ => false,
            };
            if !blocked {
                self.pairs.push((key.to_string(), value));
            }
        }
    }
}

/// What the evaluation is about: the host as written and what the command line set.
pub(crate) struct Query<'a> {
    pub alias: &'a str,
    pub user: Option<&'a str>,
    pub port: Option<u16>,
    pub local_user: &'a str,
    pub home: Option<&'a Path>,
}

/// One config file to read and whether relative Includes in it are relative to
/// `~/.ssh` (user files) or `/etc/ssh` (the system file).
pub(crate) struct Source {
    pub path: PathBuf,
    pub system: bool,
}

/// Evaluates `sources` in order for `q`.
pub(crate) fn evaluate(q: &Query, sources: &[Source]) -> Result<Evaluated, ConfigError> {
    let mut ev = Evaluated::default();
    if let Some(u) = q.user {
        ev.set("user", u.to_string());
    }
    if let Some(p) = q.port {
        ev.set("port", p.to_string());
    }
    for s in sources {
        let mut r = Reader {
            q,
            ev: &mut ev,
            system: s.system,
        };
        r.file(&s.path, true, false, 0)?;
    }
    Ok(ev)
}

struct Reader<'a, 'b> {
    q: &'a Query<'a>,
    ev: &'b mut Evaluated,
    system: bool,
}

impl Reader<'_, '_> {
    /// Reads one file; `active` is the state inherited from an including block,
    /// `never` makes its Host/Match lines never match (an Include in an inactive block).
    fn file(
        &mut self,
        path: &Path,
        active: bool,
        never: bool,
        depth: usize,
    ) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.ev.files_read.push(path.to_path_buf());
        let mut active = active;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: String| ConfigError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let key_end = line
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(line.len());
            let key = line[..key_end].to_ascii_lowercase();
            let rest = line[key_end..].trim_start();
            let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
            let args = split_args(rest).map_err(syntax)?;
            match key.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(syntax("Host without a pattern".into()));
                    }
                    active = !never
                        && pattern_list_matches(args.iter().map(String::as_str), self.q.alias);
                }
                "match" => active = !never && self.match_line(&args).map_err(syntax)?,
                "include" => {
                    if args.is_empty() {
                        return Err(syntax("Include without a file".into()));
                    }
                    if depth >= MAX_DEPTH {
                        return Err(syntax(format!("Includes nested deeper than {MAX_DEPTH}")));
                    }
                    for arg in &args {
                        for p in glob_paths(&self.include_path(arg)) {
                            self.file(&p, active, never || !active, depth + 1)?;
                        }
                    }
                }
                _ if !active => {}
                k if APPLIED.contains(&k) => {
                    let value = if k == "proxycommand" {
                        rest.to_string()
                    } else {
                        args.join(" ")
                    };
                    if !value.is_empty() {
                        self.ev.set(k, value);
                    }
                }
                _ => {
                    self.ev.ignored.insert(key_name(raw.trim()));
                }
            }
        }
        Ok(())
    }

    /// An Include argument as a path: `~` expanded; relative ones relative to
    /// `~/.ssh` (user files) or `/etc/ssh` (the system file), as OpenSSH does.
    fn include_path(&self, arg: &str) -> PathBuf {
        let p = expand_tilde(arg, self.q.home);
        if p.is_absolute() {
            return p;
        }
        if self.system {
            return Path::new("/etc/ssh").join(p);
        }
        match self.q.home {
            Some(h) => h.join(".ssh").join(p),
            None => p,
        }
    }

    /// Evaluates a `Match` line's criteria (all must hold). Unsupported criteria
    /// never match and are noted.
    fn match_line(&mut self, args: &[String]) -> Result<bool, String> {
        if args.is_empty() {
            return Err("Match without criteria".into());
        }
        let mut result = true;
        let mut it = args.iter();
        while let Some(crit) = it.next() {
            let (neg, name) = match crit.strip_prefix('!') {
                Some(c) => (true, c.to_ascii_lowercase()),
                None => (false, crit.to_ascii_lowercase()),
            };
            let hit = match name.as_str() {
                "all" => true,
                "canonical" | "final" => {
                    self.ev.ignored.insert(format!("Match {name}"));
                    false
                }
                _ => {
                    let list = it
                        .next()
                        .ok_or_else(|| format!("Match {name} needs an argument"))?;
                    let subject = match name.as_str() {
                        "host" => self.current_host(),
                        "originalhost" => self.q.alias.to_string(),
                        "user" => self.ev.get("user").unwrap_or(self.q.local_user).to_string(),
                        "localuser" => self.q.local_user.to_string(),
                        _ => {
                            self.ev.ignored.insert(format!("Match {name}"));
                            result = false;
                            continue;
                        }
                    };
                    pattern_list_matches(list.split(','), &subject)
                }
            };
            if hit == neg {
                result = false;
            }
        }
        Ok(result)
    }

    /// `Match host` sees the HostName set so far (`%h` expanded), else the alias.
    fn current_host(&self) -> String {
        match self.ev.get("hostname") {
            Some(h) => super::text::expand_tokens(h, &[('h', self.q.alias)]),
            None => self.q.alias.to_string(),
        }
    }
}

/// The keyword as the user spelled it, for the note of ignored keywords.
fn key_name(line: &str) -> String {
    line.split(|c: char| c.is_whitespace() || c == '=')
        .next()
        .unwrap_or(line)
        .to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn eval(home: &Path, alias: &str, user: Option<&str>) -> Evaluated {
        let q = Query {
            alias,
            user,
            port: None,
            local_user: "me",
            home: Some(home),
        };
        evaluate(
            &q,
            &[Source {
                path: home.join(".ssh/config"),
                system: false,
            }],
        )
        .unwrap()
    }

    fn write(home: &Path, rel: &str, text: &str) {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn include_glob_nested_relative_and_conditional() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        write(
            h,
            ".ssh/config",
            "Include config.d/*\nHost only-b\n  Include ~/.ssh/cond.conf\nHost *\n  Port 7\n  ForwardAgent yes\n",
        );
        write(
            h,
            ".ssh/config.d/a",
            "Host web1\n  HostName 10.0.0.1\n  Include nested/*.conf\n",
        );
        write(
            h,
            ".ssh/config.d/b",
            "Host web1\n  HostName not-first\n  User b-user\n",
        );
        write(h, ".ssh/nested/x.conf", "Port 2200\n");
        write(h, ".ssh/cond.conf", "User cond\nHost *\n  User cond-host\n");
        let e = eval(h, "web1", None);
        assert_eq!(e.get("hostname"), Some("10.0.0.1"));
        assert_eq!(e.get("port"), Some("2200"));
        assert_eq!(e.get("user"), Some("b-user"));
        // cond.conf is read (as OpenSSH does) but applies nothing to web1.
        assert_eq!(e.files_read.len(), 5, "{:?}", e.files_read);
        assert!(e.ignored.contains("ForwardAgent"), "{:?}", e.ignored);
        // An Include inside a block that does not match applies nothing, even after
        // its own `Host *`.
        assert_eq!(eval(h, "other", None).get("user"), None);
        assert_eq!(eval(h, "only-b", None).get("user"), Some("cond"));
    }

    #[test]
    fn match_criteria() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        write(
            h,
            ".ssh/config",
            "Host db\n  HostName db.internal\nMatch host *.internal user ops\n  Port 2\nMatch host *.internal\n  Port 3\nMatch originalhost db !localuser root\n  User viaorig\nMatch exec \"true\"\n  Port 9\nMatch all\n  IdentityFile k\n",
        );
        let e = eval(h, "db", Some("ops"));
        assert_eq!(e.get("port"), Some("2"));
        let e = eval(h, "db", None);
        assert_eq!((e.get("port"), e.get("user")), (Some("3"), Some("viaorig")));
        assert!(e.ignored.contains("Match exec"), "{:?}", e.ignored);
        assert_eq!(e.get("identityfile"), Some("k"));
        assert_eq!(eval(h, "x", None).get("port"), None);
    }

    #[test]
    fn proxy_first_wins_and_command_keeps_its_text() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path();
        write(
            h,
            ".ssh/config",
            "Host a\n  ProxyCommand nc  \"%h\" %p\n  ProxyJump b\nHost c\n  ProxyJump none\n",
        );
        let e = eval(h, "a", None);
        assert_eq!(e.get("proxycommand"), Some("nc  \"%h\" %p"));
        assert_eq!(e.get("proxyjump"), None);
        assert_eq!(eval(h, "c", None).get("proxyjump"), Some("none"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), ".ssh/config", "Host a\n  User \"x\n");
        let q = Query {
            alias: "a",
            user: None,
            port: None,
            local_user: "me",
            home: Some(d.path()),
        };
        let src = [Source {
            path: d.path().join(".ssh/config"),
            system: false,
        }];
        let e = evaluate(&q, &src).unwrap_err().to_string();
        assert!(e.ends_with("config:2: unterminated quote"), "{e}");
        write(d.path(), ".ssh/config", "Match host\n");
        let e = evaluate(&q, &src).unwrap_err().to_string();
        assert!(e.contains("config:1: Match host needs an argument"), "{e}");
    }
}
