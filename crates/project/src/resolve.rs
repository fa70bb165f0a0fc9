//! From the file as written to one plain [`ResolvedTarget`] per target: top-level
//! settings with the target's own overrides applied, relative paths anchored at the
//! file's directory, every value checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::raw::{parse, RawProject, RawTarget, Source};
use crate::ProjectError;
use relstore_core::duration::parse_duration;

/// Hook timeout when neither the file nor the command line sets one.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// `helper = "auto" | "off" | "require"`: the values of `--helper`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Helper {
    /// A helper when one can run, else SFTP.
    Auto,
    /// SFTP only.
    Off,
    /// A helper or failure.
    Require,
}

impl Helper {
    /// The word as written in the file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Helper::Auto => "auto",
            Helper::Off => "off",
            Helper::Require => "require",
        }
    }
}

/// Commands run around the swap (`[hooks]`); `None` when not set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Hooks {
    /// In the new release, before `current` moves.
    pub before_activate: Option<String>,
    /// After `current` moved.
    pub after_activate: Option<String>,
    /// After a rollback (or a revert) moved `current` back.
    pub after_rollback: Option<String>,
}

/// Everything the file says about deploying to one target, ready to merge with the
/// command line's flags (which win). Unset optional values stay `None` so that the
/// CLI can tell "not in the file" from a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedTarget {
    /// The name in `[targets.NAME]`.
    pub name: String,
    /// TARGET specs, in file order; local relative paths made absolute against the
    /// file's directory.
    pub hosts: Vec<String>,
    /// Directory to deploy (absolute, anchored at the file's directory).
    pub source: Option<PathBuf>,
    /// Release directories to keep after a push (`--keep`).
    pub keep: Option<usize>,
    /// gitignore-style patterns left out of the source (`--exclude`).
    pub exclude: Vec<String>,
    /// Paths kept across releases in `ROOT/shared/` (`--shared`).
    pub shared: Vec<String>,
    /// Commands around the swap.
    pub hooks: Hooks,
    /// How long one hook may run (`--hook-timeout`).
    #[serde(serialize_with = "seconds")]
    pub hook_timeout: Duration,
    /// Whether a failing `after_activate` moves `current` back.
    pub revert_on_hook_failure: bool,
    /// Helper mode for SSH hosts (`--helper`).
    pub helper: Option<Helper>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A parsed, checked project file.
#[derive(Clone, Debug)]
pub struct Project {
    /// Where the file is.
    pub path: PathBuf,
    /// The targets by name.
    pub targets: BTreeMap<String, ResolvedTarget>,
    /// `default = "NAME"`, checked to name a target.
    pub default: Option<String>,
}

impl Project {
    /// Reads and checks the project file at `path`. `is_remote` tells a remote TARGET
    /// spec from a local path (only local relative paths are anchored at the file's
    /// directory).
    pub fn load(path: &Path, is_remote: &dyn Fn(&str) -> bool) -> Result<Project, ProjectError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProjectError::Io {
            path: path.display().to_string(),
            op: "read the project file",
            source: e,
        })?;
        Project::parse(path, &text, is_remote)
    }

    /// [`Project::load`] on text already read from `path`.
    pub fn parse(
        path: &Path,
        text: &str,
        is_remote: &dyn Fn(&str) -> bool,
    ) -> Result<Project, ProjectError> {
        let src = Source {
            path: path.display().to_string(),
            text,
        };
        let raw = parse(&src)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Resolver {
            src: &src,
            dir: &dir,
            is_remote,
        }
        .project(path, raw)
    }

    /// The target `--to NAME` names.
    pub fn target(&self, name: &str) -> Result<&ResolvedTarget, ProjectError> {
        self.targets.get(name).ok_or_else(|| ProjectError::Usage {
            path: self.path.display().to_string(),
            message: format!("no target `{name}` (targets: {})", self.names()),
        })
    }

    /// The target used without `--to`: `default`, or the only one.
    pub fn default_target(&self) -> Result<&ResolvedTarget, ProjectError> {
        if let Some(name) = &self.default {
            return self.target(name);
        }
        let mut all = self.targets.values();
        match (all.next(), all.next()) {
            (Some(only), None) => Ok(only),
            (None, _) => Err(ProjectError::Usage {
                path: self.path.display().to_string(),
                message: "defines no target: add [targets.NAME] with hosts, or give TARGET".into(),
            }),
            _ => Err(ProjectError::Usage {
                path: self.path.display().to_string(),
                message: format!(
                    "several targets ({}) and no `default`: choose one with --to NAME",
                    self.names()
                ),
            }),
        }
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.targets.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// Checks values and builds the resolved targets.
struct Resolver<'a> {
    src: &'a Source<'a>,
    dir: &'a Path,
    is_remote: &'a dyn Fn(&str) -> bool,
}

impl Resolver<'_> {
    fn project(&self, path: &Path, raw: RawProject) -> Result<Project, ProjectError> {
        let base = self.base(&raw)?;
        let mut targets = BTreeMap::new();
        for (name, t) in &raw.targets {
            check_name(self.src, name)?;
            targets.insert(name.get_ref().clone(), self.target(&base, name, t)?);
        }
        let default = match &raw.default {
            Some(d) if !targets.contains_key(d.get_ref()) => {
                let names: Vec<&str> = targets.keys().map(String::as_str).collect();
                return Err(self.src.error_at(
                    d.span().start,
                    format!(
                        "default: no target `{}` (targets: {})",
                        d.get_ref(),
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            }
            d => d.as_ref().map(|d| d.get_ref().clone()),
        };
        Ok(Project {
            path: path.to_path_buf(),
            targets,
            default,
        })
    }

    /// The top-level settings, as a target without name or hosts.
    fn base(&self, raw: &RawProject) -> Result<ResolvedTarget, ProjectError> {
        let hooks = match &raw.hooks {
            None => Hooks::default(),
            Some(h) => Hooks {
                before_activate: self.hook("before_activate", &h.before_activate)?,
                after_activate: self.hook("after_activate", &h.after_activate)?,
                after_rollback: self.hook("after_rollback", &h.after_rollback)?,
            },
        };
        let hook_timeout = match &raw.hook_timeout {
            None => DEFAULT_HOOK_TIMEOUT,
            Some(t) => parse_duration(t.get_ref()).map_err(|m| {
                self.src
                    .error_at(t.span().start, format!("hook_timeout: {m}"))
            })?,
        };
        let shared = match &raw.shared {
            None => Vec::new(),
            Some(s) => self.shared(&s.paths)?,
        };
        Ok(ResolvedTarget {
            name: String::new(),
            hosts: Vec::new(),
            source: self.source(&raw.source)?,
            keep: raw.keep,
            exclude: self.exclude(&raw.exclude)?.unwrap_or_default(),
            shared,
            hooks,
            hook_timeout,
            revert_on_hook_failure: raw.revert_on_hook_failure.unwrap_or(false),
            helper: raw.helper,
        })
    }

    fn target(
        &self,
        base: &ResolvedTarget,
        name: &Spanned<String>,
        t: &RawTarget,
    ) -> Result<ResolvedTarget, ProjectError> {
        let key = format!("targets.{}.hosts", name.get_ref());
        if t.hosts.get_ref().is_empty() {
            return Err(self.src.error_at(
                t.hosts.span().start,
                format!("{key}: empty; a target needs at least one host (a TARGET such as \"web1:/srv/site\")"),
            ));
        }
        let mut hosts: Vec<String> = Vec::new();
        for h in t.hosts.get_ref() {
            let spec = h.get_ref().trim();
            if spec.is_empty() {
                return Err(self
                    .src
                    .error_at(h.span().start, format!("{key}: an empty host")));
            }
            let spec = if (self.is_remote)(spec) || Path::new(spec).is_absolute() {
                spec.to_owned()
            } else {
                anchored(self.dir, spec).display().to_string()
            };
            if hosts.contains(&spec) {
                return Err(self
                    .src
                    .error_at(h.span().start, format!("{key}: `{spec}` is listed twice")));
            }
            hosts.push(spec);
        }
        let mut r = base.clone();
        r.name = name.get_ref().clone();
        r.hosts = hosts;
        if let Some(s) = self.source(&t.source)? {
            r.source = Some(s);
        }
        if let Some(k) = t.keep {
            r.keep = Some(k);
        }
        if let Some(e) = self.exclude(&t.exclude)? {
            r.exclude = e;
        }
        Ok(r)
    }

    fn source(&self, s: &Option<Spanned<String>>) -> Result<Option<PathBuf>, ProjectError> {
        let Some(s) = s else { return Ok(None) };
        if s.get_ref().trim().is_empty() {
            return Err(self.src.error_at(s.span().start, "source: an empty path"));
        }
        Ok(Some(anchored(self.dir, s.get_ref())))
    }

    fn exclude(
        &self,
        e: &Option<Vec<Spanned<String>>>,
    ) -> Result<Option<Vec<String>>, ProjectError> {
        let Some(e) = e else { return Ok(None) };
        e.iter()
            .map(|p| {
                if p.get_ref().trim().is_empty() {
                    Err(self
                        .src
                        .error_at(p.span().start, "exclude: an empty pattern"))
                } else {
                    Ok(p.get_ref().clone())
                }
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn hook(&self, key: &str, h: &Option<Spanned<String>>) -> Result<Option<String>, ProjectError> {
        match h {
            Some(c) if c.get_ref().trim().is_empty() => Err(self.src.error_at(
                c.span().start,
                format!("hooks.{key}: an empty command (leave the key out for no hook)"),
            )),
            Some(c) => Ok(Some(c.get_ref().clone())),
            None => Ok(None),
        }
    }

    fn shared(&self, paths: &[Spanned<String>]) -> Result<Vec<String>, ProjectError> {
        let mut seen: Vec<String> = Vec::new();
        for p in paths {
            let text = p.get_ref();
            let trimmed = text.trim_end_matches('/');
            if let Err(e) = relstore_core::shared::SharedPath::parse(text) {
                return Err(self
                    .src
                    .error_at(p.span().start, format!("shared.paths: {e}")));
            }
            if seen.iter().any(|s| s.trim_end_matches('/') == trimmed) {
                return Err(self.src.error_at(
                    p.span().start,
                    format!("shared.paths: `{text}` is listed twice"),
                ));
            }
            seen.push(text.clone());
        }
        Ok(seen)
    }
}

/// `rel` under the file's directory, without `.` components (`./public` reads as
/// `public` in `config check`); `~` and `~/…` are under `$HOME`, as a shell reads them.
fn anchored(dir: &Path, rel: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let joined = dir.join(under_home(rel, home.as_deref()));
    std::path::absolute(&joined).unwrap_or(joined)
}

/// `~` or `~/rest` as `home` or `home/rest` (unchanged without a home, and for
/// `~user`, which names another user's home).
pub(crate) fn under_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (home, path.strip_prefix('~')) {
        (Some(h), Some("")) => h.to_path_buf(),
        (Some(h), Some(rest)) if rest.starts_with('/') => h.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

/// Target names are typed after `--to`: letters, digits, `.`, `_`, `-`.
fn check_name(src: &Source<'_>, name: &Spanned<String>) -> Result<(), ProjectError> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(src.error_at(
            name.span().start,
            format!("targets.{n}: a target name is letters, digits, `.`, `_` and `-`"),
        ))
    }
}
