//! Where a command's target comes from: a TARGET argument (exactly as without a
//! project file: the file is not read), or the project file's target named by
//! `--to NAME`, its `default` or its only target. The file is `--config FILE` or the
//! `relstore.toml` found from the current directory upwards (relstore-project).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use relstore_project::{discover, Discovery, Project, ResolvedTarget};

/// A mistake on the command line: printed as one line, exit status 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Whether `e` is a usage error (exit status 2).
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Usage>().is_some()
        || e.downcast_ref::<relstore_project::ProjectError>()
            .is_some_and(|p| p.is_usage())
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// What a command works on.
pub struct Selection {
    /// The project target, or `None` for a TARGET argument.
    pub plan: Option<ResolvedTarget>,
    /// The store roots, in order (one for a TARGET argument).
    pub hosts: Vec<String>,
}

impl Selection {
    /// The one store root of a single-host selection.
    pub fn single(&self, verb: &str) -> Result<&str> {
        match (self.hosts.as_slice(), &self.plan) {
            ([one], _) => Ok(one),
            (_, Some(p)) => Err(usage(format!(
                "{verb}: target `{}` has {} hosts; name one as TARGET",
                p.name,
                self.hosts.len()
            ))),
            _ => Err(usage(format!("{verb}: no target"))),
        }
    }
}

/// The project file: `--config FILE`, else the one found upwards from the current
/// directory.
pub fn load(config: Option<&Path>) -> Result<Project> {
    let path = match config {
        // Absolute, so that every error names the file unambiguously.
        Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
        None => find()?,
    };
    Ok(Project::load(&path, &relstore_targets::is_remote)?)
}

fn find() -> Result<PathBuf> {
    let cwd = std::env::current_dir()
        .map_err(|e| anyhow::anyhow!("cannot read the current directory: {e}"))?;
    match discover(&cwd)? {
        Discovery::Project(p) => Ok(p),
        Discovery::StoreRoot(root) => Err(usage(format!(
            "no project file: {} is a store root (its relstore.toml is the store's format \
             marker, not a project file, and the search stops there); give TARGET or \
             --config FILE",
            root.display()
        ))),
        Discovery::Nothing => Err(usage(format!(
            "no project file: no relstore.toml in {} or its parents; give TARGET or \
             --config FILE",
            cwd.display()
        ))),
    }
}

/// Picks the target: `explicit` (a TARGET argument) as is, else the project file's
/// `--to NAME` or default target.
pub fn select(
    config: Option<&Path>,
    to: Option<&str>,
    explicit: Option<String>,
) -> Result<Selection> {
    if let Some(spec) = explicit {
        if let Some(name) = to {
            return Err(usage(format!(
                "both TARGET `{spec}` and --to {name} given; use one"
            )));
        }
        if let Some(c) = config {
            return Err(usage(format!(
                "TARGET `{spec}` given, so the project file --config {} would not be used; \
                 use --to NAME to pick one of its targets",
                c.display()
            )));
        }
        return Ok(Selection {
            plan: None,
            hosts: vec![spec],
        });
    }
    let project = load(config)?;
    let target = match to {
        Some(name) => project.target(name)?,
        None => project.default_target()?,
    };
    Ok(Selection {
        hosts: target.hosts.clone(),
        plan: Some(target.clone()),
    })
}

/// Positionals `[TARGET] [RELEASE]` of rollback and verify: with `--to`, a single
/// argument is the release.
pub fn target_and_release(
    target: Option<String>,
    release: Option<String>,
    to: Option<&str>,
) -> Result<(Option<String>, Option<String>)> {
    match (to, target, release) {
        (Some(name), Some(t), Some(r)) => Err(usage(format!(
            "both TARGET `{t}` and --to {name} given (release {r}); use one"
        ))),
        (Some(_), Some(r), None) => Ok((None, Some(r))),
        (_, t, r) => Ok((t, r)),
    }
}

/// Positionals of pin/unpin: `TARGET RELEASE`, or `RELEASE` alone on the project
/// file's target.
pub fn pin_operands(
    target: Option<String>,
    release: Option<String>,
) -> Result<(Option<String>, String)> {
    match (target, release) {
        (Some(t), Some(r)) => Ok((Some(t), r)),
        (Some(r), None) => Ok((None, r)),
        _ => Err(usage(
            "RELEASE missing: give TARGET RELEASE, or RELEASE with a project file",
        )),
    }
}

/// The source of a push: SOURCE, else the project target's `source`.
pub fn push_source(arg: Option<PathBuf>, sel: &Selection) -> Result<PathBuf> {
    if let Some(s) = arg {
        return Ok(s);
    }
    match &sel.plan {
        Some(p) => p.source.clone().ok_or_else(|| {
            usage(format!(
                "no SOURCE given and target `{}` has no `source` in the project file",
                p.name
            ))
        }),
        None => Err(usage("SOURCE missing")),
    }
}

/// `diff` sides written `@RELEASE`: the release on the project file's target
/// (`--to NAME` or its default), which must have one host.
pub fn diff_side(side: &str, config: Option<&Path>, to: Option<&str>) -> Result<String> {
    let Some(release) = side.strip_prefix('@') else {
        return Ok(side.to_owned());
    };
    if Path::new(side).exists() {
        return Ok(side.to_owned());
    }
    let sel = select(config, to, None)?;
    let host = sel.single("diff")?;
    Ok(format!("{host}@{release}"))
}

/// Runs `f` for each host of `sel` in turn. One host reports exactly as a TARGET
/// argument does; several get a heading each (one JSON object with a per-host list
/// with `--json`), and the first failure stops the run with an error naming its host.
pub fn each_host(
    sel: &Selection,
    out: &mut crate::output::Out,
    mut f: impl FnMut(&str, &mut crate::output::Out) -> Result<()>,
) -> Result<()> {
    if let [one] = sel.hosts.as_slice() {
        return f(one, out);
    }
    let name = sel.plan.as_ref().map_or("", |p| p.name.as_str());
    out.begin_hosts();
    let n = sel.hosts.len();
    for (i, host) in sel.hosts.iter().enumerate() {
        out.host_heading(host, i + 1, n)?;
        if let Err(e) = f(host, out) {
            if crate::interrupt::exit_status(&e).is_some() {
                return Err(e);
            }
            let text = format!("{e:#}");
            out.end_hosts(name, Some((host, text.clone())))?;
            let untouched = n - i - 1;
            let mut at = format!("host {} of {n}", i + 1);
            if untouched > 0 {
                at.push_str(&format!(", stopped: {untouched} later host(s) not tried"));
            }
            // The error names the host itself almost always; never twice.
            return Err(if text.contains(host.as_str()) {
                e.context(at)
            } else {
                e.context(format!("{host} ({at})"))
            });
        }
    }
    out.end_hosts(name, None)
}
