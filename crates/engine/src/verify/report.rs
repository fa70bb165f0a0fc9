//! What verify tells its caller: the problems it found, the ones repair put right and
//! the ones it could not. The types serialise to the `--json` output as they are, so
//! the CLI and library callers see the same names.

use serde::Serialize;

/// How many paths an object problem lists (its `used_by_total` counts them all).
pub(super) const MAX_USED_BY: usize = 1000;
/// How many of those the one-line detail names.
const USED_BY_IN_DETAIL: usize = 5;

/// What is wrong, as a stable lower-case name (`--json` `kind`), so scripts can act on
/// a kind of problem without parsing its detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    CorruptObject,
    MissingObject,
    CorruptManifest,
    MissingPath,
    WrongKind,
    WrongMode,
    WrongSize,
    NotLinked,
    WrongTarget,
    ExtraPath,
}

impl ProblemKind {
    /// The name used in output (the same as the serialised one).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::CorruptObject => "corrupt-object",
            ProblemKind::MissingObject => "missing-object",
            ProblemKind::CorruptManifest => "corrupt-manifest",
            ProblemKind::MissingPath => "missing-path",
            ProblemKind::WrongKind => "wrong-kind",
            ProblemKind::WrongMode => "wrong-mode",
            ProblemKind::WrongSize => "wrong-size",
            ProblemKind::NotLinked => "not-linked",
            ProblemKind::WrongTarget => "wrong-target",
            ProblemKind::ExtraPath => "extra-path",
        }
    }

    /// Whether the problem is about a stored object (shared by releases) rather than a
    /// path of one release: only those carry the paths that use them.
    pub fn is_object(self) -> bool {
        matches!(
            self,
            ProblemKind::CorruptObject | ProblemKind::MissingObject
        )
    }
}

/// A path of a release that uses an object, so an operator knows what a bad object
/// breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathUse {
    pub release: String,
    /// Escaped with [`relstore_core::path::escape`].
    pub path: String,
}

/// The paths that use an object with a problem: at most [`MAX_USED_BY`] of them listed,
/// all of them counted (an object can be used by millions of paths).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectUsers {
    pub used_by: Vec<PathUse>,
    pub used_by_total: u64,
}

impl ObjectUsers {
    /// Counts one more path, listing it while there is room.
    pub(super) fn add(&mut self, release: &str, path: String) {
        self.used_by_total += 1;
        if self.used_by.len() < MAX_USED_BY {
            self.used_by.push(PathUse {
                release: release.to_owned(),
                path,
            });
        }
    }

    /// `used by N paths (r:a, r:b and N-2 more)`, for the one-line detail.
    fn describe(&self) -> String {
        let total = self.used_by_total;
        if total == 0 {
            return "used by no checked release".into();
        }
        let shown: Vec<String> = self
            .used_by
            .iter()
            .take(USED_BY_IN_DETAIL)
            .map(|u| format!("{}:{}", u.release, u.path))
            .collect();
        let more = total.saturating_sub(shown.len() as u64);
        format!(
            "used by {} ({}{})",
            plural(total, "path"),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    }
}

/// One problem found by verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The release whose tree has the problem; `None` for objects (shared by releases).
    pub release: Option<String>,
    /// Path in the release (or, for objects and manifests, relative to the store root),
    /// escaped with [`relstore_core::path::escape`].
    pub path: String,
    pub kind: ProblemKind,
    /// What was found and what was expected.
    pub detail: String,
    /// For object problems (and only those): the paths that use the object.
    #[serde(flatten)]
    pub users: Option<ObjectUsers>,
}

impl Problem {
    /// A problem of a release path or manifest (no object users).
    pub(super) fn new(
        release: Option<&str>,
        path: String,
        kind: ProblemKind,
        detail: String,
    ) -> Problem {
        Problem {
            release: release.map(str::to_owned),
            path,
            kind,
            detail,
            users: None,
        }
    }

    /// A problem of a stored object, its detail ending with who uses it.
    pub(super) fn object(
        path: String,
        kind: ProblemKind,
        detail: &str,
        users: ObjectUsers,
    ) -> Problem {
        Problem {
            release: None,
            path,
            kind,
            detail: format!("{detail}; {}", users.describe()),
            users: Some(users),
        }
    }

    /// `RELEASE: PATH: detail` (objects: `PATH: detail`).
    pub fn line(&self) -> String {
        match &self.release {
            Some(r) => format!("{r}: {}: {}", self.path, self.detail),
            None => format!("{}: {}", self.path, self.detail),
        }
    }

    /// What makes two problems (before and after repair) the same one.
    pub(super) fn key(&self) -> (Option<&str>, &str, ProblemKind) {
        (self.release.as_deref(), &self.path, self.kind)
    }
}

/// What verify found (and, with `--repair`, did). Serialises to the `--json` object.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub objects_checked: u64,
    pub bytes_checked: u64,
    /// Releases whose trees were checked.
    pub releases_checked: Vec<String>,
    /// Releases in scope that are evicted (manifest only): no tree to check.
    pub releases_evicted: Vec<String>,
    /// Problems that remain (after repair, if it ran).
    pub problems: Vec<Problem>,
    /// Problems found and no longer present after repair.
    pub repaired: Vec<Problem>,
    /// Objects repair needed but could not get (no source holds them), with their paths.
    pub unrepairable: Vec<Problem>,
    /// `--repair` was given (the caller knows; not part of the JSON).
    #[serde(skip)]
    pub repair: bool,
    pub seconds: f64,
}

impl VerifyReport {
    /// True when nothing is wrong (any more).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line for the failure message: how many problems, and why repair left them.
    pub fn failure_summary(&self) -> String {
        let n = self.problems.len();
        let problems = plural(n as u64, "problem");
        if !self.repair {
            return format!("{problems} found");
        }
        let mut s = format!(
            "{problems} {} after repair ({} repaired",
            if n == 1 { "remains" } else { "remain" },
            self.repaired.len()
        );
        if !self.unrepairable.is_empty() {
            s.push_str(&format!(
                "; {} not in any source",
                plural(self.unrepairable.len() as u64, "object")
            ));
        }
        s.push(')');
        s
    }
}

/// `1 path`, `2 paths`.
pub(super) fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
