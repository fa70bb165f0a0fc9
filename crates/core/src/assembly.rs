//! How a release tree is built from manifest entries, decided once for every target.
//!
//! [`crate::Target::assemble`] builds `tmp/NAME.partial` from an [`AssemblyPlan`]:
//! directories level by level (parents first, each made 0700 so it can be filled),
//! then every leaf — hardlinks from objects, fresh zero-length files, symlinks — in any
//! order and in parallel, then directory modes, deepest level first. The target only
//! executes the primitives (mkdir, link, create, symlink, chmod).
//!
//! File systems cap links per inode (ext4: 65,000). When linking copy N of an object
//! hits the cap, linking continues from copy N+1 (`…+0444.1`, `.2`, …), made from copy
//! N if no one made it yet; [`LinkCopies`] remembers which copy takes new links, so the
//! rest of the assembly goes straight there.
//!
//! [`crate::Target::relink`] (`verify --repair`) re-creates single paths of a live
//! release; [`relink_step`] decides what each path needs given what is there now.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::hash::ObjectId;
use crate::manifest::{Entry, Leaf, Recipe};
use crate::target::{AssembleStats, TargetError};

/// A directory to create, with the mode it gets once filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedDir<'a> {
    /// Path relative to the release root.
    pub path: &'a [u8],
    pub mode: u32,
}

/// A non-directory entry to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedLeaf<'a> {
    /// Path relative to the release root.
    pub path: &'a [u8],
    pub leaf: Leaf<'a>,
}

/// The steps that build one release tree from validated manifest entries.
#[derive(Clone, Debug, Default)]
pub struct AssemblyPlan<'a> {
    levels: Vec<Vec<PlannedDir<'a>>>,
    leaves: Vec<PlannedLeaf<'a>>,
}

impl<'a> AssemblyPlan<'a> {
    /// Plans `entries` (validated: every parent is a directory entry).
    pub fn new(entries: &'a [Entry]) -> AssemblyPlan<'a> {
        let mut plan = AssemblyPlan::default();
        for e in entries {
            match e.recipe() {
                Recipe::Dir { mode } => {
                    let depth = e.path.iter().filter(|b| **b == b'/').count();
                    if plan.levels.len() <= depth {
                        plan.levels.resize_with(depth + 1, Vec::new);
                    }
                    plan.levels[depth].push(PlannedDir {
                        path: &e.path,
                        mode,
                    });
                }
                Recipe::Leaf(leaf) => plan.leaves.push(PlannedLeaf {
                    path: &e.path,
                    leaf,
                }),
            }
        }
        plan
    }

    /// Directories by depth, top level first: a level's directories can all be made
    /// at once when the levels before it exist. Their modes are applied after the
    /// leaves, deepest level first (a read-only parent must not block its children).
    pub fn dir_levels(&self) -> &[Vec<PlannedDir<'a>>] {
        &self.levels
    }

    /// Every non-directory entry; independent of each other once the directories exist.
    pub fn leaves(&self) -> &[PlannedLeaf<'a>] {
        &self.leaves
    }

    /// Number of directories (progress advances by this once they exist).
    pub fn dir_count(&self) -> u64 {
        self.levels.iter().map(|l| l.len() as u64).sum()
    }

    /// The totals of this assembly once carried out, with the object copies made.
    pub fn stats(&self, object_copies: u64) -> AssembleStats {
        let mut stats = AssembleStats {
            dirs: self.dir_count(),
            object_copies,
            ..AssembleStats::default()
        };
        for l in &self.leaves {
            match l.leaf {
                Leaf::Link { .. } => stats.links += 1,
                Leaf::Empty { .. } => stats.empty_files += 1,
                Leaf::Symlink { .. } => stats.symlinks += 1,
            }
        }
        stats
    }
}

/// What to do after copy `full` of an object refused a link (see [`LinkCopies`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextCopy {
    /// Another task already moved on: link from this copy.
    Use(u32),
    /// Make sure copy `next` exists — copying it from copy `from` unless it is already
    /// stored (an earlier push made it) — then report with [`LinkCopies::ensured`].
    Ensure { from: u32, next: u32 },
}

/// Which copy of each over-linked object takes new links, shared by every task of one
/// assembly or relink, and how many copies were made.
///
/// `M` is the target's lock for making copies (a blocking or an async mutex): a
/// target holds it from [`LinkCopies::after_full`] until [`LinkCopies::ensured`], so
/// many links hitting the cap at once make one copy.
#[derive(Debug, Default)]
pub struct LinkCopies<M = ()> {
    in_use: Mutex<HashMap<ObjectId, u32>>,
    made: AtomicU64,
    making: M,
}

impl<M> LinkCopies<M> {
    fn map(&self) -> MutexGuard<'_, HashMap<ObjectId, u32>> {
        self.in_use.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The copy of `id` new links start from (0, the object itself, until it is full).
    pub fn in_use(&self, id: &ObjectId) -> u32 {
        self.map().get(id).copied().unwrap_or(0)
    }

    /// The target's lock for making copies; hold it across `after_full`..`ensured`.
    pub fn making(&self) -> &M {
        &self.making
    }

    /// Copy `full` of `id` took no more links: what to link from next.
    pub fn after_full(&self, id: &ObjectId, full: u32) -> NextCopy {
        let known = self.in_use(id);
        if known > full {
            NextCopy::Use(known)
        } else {
            NextCopy::Ensure {
                from: full,
                next: full + 1,
            }
        }
    }

    /// Copy `next` of `id` now exists (`made` when this task copied it): new links go
    /// there. Returns `next`.
    pub fn ensured(&self, id: &ObjectId, next: u32, made: bool) -> u32 {
        if made {
            self.made.fetch_add(1, Ordering::Relaxed);
        }
        let mut map = self.map();
        let slot = map.entry(*id).or_insert(0);
        *slot = (*slot).max(next);
        next
    }

    /// Object copies made so far.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }
}

/// The error for a link whose object is not stored. `object` and `dest` are shown
/// as the target shows paths.
pub fn missing_object(object: &str, dest: &str) -> TargetError {
    TargetError::MissingObject {
        object: object.to_owned(),
        needed_for: dest.to_owned(),
    }
}

/// The error for a partial release from an earlier attempt that could not be
/// deleted (`first` is the first path left, with the reason).
pub fn partial_not_cleared(first: &str) -> TargetError {
    TargetError::LeftBehind {
        what: "clear an old partial release",
        first: first.to_owned(),
    }
}

/// What is at a release path before [`crate::Target::relink`] re-creates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing (or nothing the target could look at).
    Nothing,
    Dir,
    /// A file, symlink or anything else that is not a directory.
    Other,
}

/// How a directory entry is repaired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirRepair {
    /// A directory is there: only its mode is set.
    Keep,
    /// Nothing is there: create the directory.
    Create,
    /// Something else is there: delete it, then create the directory.
    ReplaceOther,
}

/// What [`crate::Target::relink`] does for one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelinkStep<'a> {
    /// A directory entry: `repair`, then set `mode` (directories are never renamed
    /// over: that would drop what is inside).
    Dir { mode: u32, repair: DirRepair },
    /// Anything else: make `leaf` under a fresh name in `tmp/`, delete the directory in
    /// the way when `clear_dir` (refusing with [`dir_not_replaced`] when something of
    /// it stays), then rename it over the path — so a reader never sees the path
    /// missing. Where renaming fails, the temporary is deleted.
    Replace { leaf: Leaf<'a>, clear_dir: bool },
}

/// Decides how `entry` is re-created where `found` is at its path.
pub fn relink_step(entry: &Entry, found: Found) -> RelinkStep<'_> {
    match entry.recipe() {
        Recipe::Dir { mode } => RelinkStep::Dir {
            mode,
            repair: match found {
                Found::Dir => DirRepair::Keep,
                Found::Nothing => DirRepair::Create,
                Found::Other => DirRepair::ReplaceOther,
            },
        },
        Recipe::Leaf(leaf) => RelinkStep::Replace {
            leaf,
            clear_dir: found == Found::Dir,
        },
    }
}

/// The error for a directory in the way of a relinked path that could not be deleted
/// (`first` is the first path left, with the reason).
pub fn dir_not_replaced(first: &str) -> TargetError {
    TargetError::LeftBehind {
        what: "replace a directory",
        first: first.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash::ContentHash;
    use crate::manifest::EntryKind;

    fn dir(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::Dir { mode },
        }
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File {
                size,
                hash: ContentHash::empty(),
                mode: 0o644,
            },
        }
    }

    fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::Symlink {
                target: target.as_bytes().to_vec(),
            },
        }
    }

    #[test]
    fn plan_orders_directories_by_level_and_keeps_every_leaf() {
        let entries = vec![
            dir("a", 0o755),
            dir("a/b", 0o555),
            file("a/b/x", 3),
            file("a/empty", 0),
            dir("c", 0o700),
            symlink("c/l", "../a"),
        ];
        let plan = AssemblyPlan::new(&entries);
        let levels: Vec<Vec<&[u8]>> = plan
            .dir_levels()
            .iter()
            .map(|l| l.iter().map(|d| d.path).collect())
            .collect();
        assert_eq!(levels, vec![vec![&b"a"[..], b"c"], vec![&b"a/b"[..]]]);
        assert_eq!(plan.dir_levels()[1][0].mode, 0o555);
        let leaves: Vec<Leaf> = plan.leaves().iter().map(|l| l.leaf).collect();
        assert_eq!(
            leaves,
            vec![
                Leaf::Link {
                    object: entries[2].object().unwrap()
                },
                Leaf::Empty { mode: 0o644 },
                Leaf::Symlink { target: b"../a" },
            ]
        );
        assert_eq!(
            plan.stats(2),
            AssembleStats {
                dirs: 3,
                links: 1,
                empty_files: 1,
                symlinks: 1,
                object_copies: 2,
            }
        );
    }

    #[test]
    fn copies_advance_once_per_full_copy() {
        let id = file("x", 3).object().unwrap();
        let copies: LinkCopies = LinkCopies::default();
        assert_eq!(copies.in_use(&id), 0);
        // The first task to find copy 0 full makes copy 1.
        assert_eq!(
            copies.after_full(&id, 0),
            NextCopy::Ensure { from: 0, next: 1 }
        );
        assert_eq!(copies.ensured(&id, 1, true), 1);
        // A task that started on copy 0 before that goes to copy 1 without copying.
        assert_eq!(copies.after_full(&id, 0), NextCopy::Use(1));
        assert_eq!(copies.in_use(&id), 1);
        // Copy 2 already stored by an earlier push: used, not counted as made.
        assert_eq!(
            copies.after_full(&id, 1),
            NextCopy::Ensure { from: 1, next: 2 }
        );
        assert_eq!(copies.ensured(&id, 2, false), 2);
        assert_eq!(copies.in_use(&id), 2);
        assert_eq!(copies.made(), 1);
        // A late report never moves the copy in use backwards.
        copies.ensured(&id, 1, false);
        assert_eq!(copies.in_use(&id), 2);
    }

    #[test]
    fn relink_keeps_directories_and_replaces_everything_else_by_rename() {
        let d = dir("a", 0o750);
        let step = |found| relink_step(&d, found);
        assert_eq!(
            step(Found::Dir),
            RelinkStep::Dir {
                mode: 0o750,
                repair: DirRepair::Keep
            }
        );
        assert_eq!(
            step(Found::Nothing),
            RelinkStep::Dir {
                mode: 0o750,
                repair: DirRepair::Create
            }
        );
        assert_eq!(
            step(Found::Other),
            RelinkStep::Dir {
                mode: 0o750,
                repair: DirRepair::ReplaceOther
            }
        );
        let f = file("a/x", 0);
        for (found, clear_dir) in [
            (Found::Nothing, false),
            (Found::Other, false),
            (Found::Dir, true),
        ] {
            assert_eq!(
                relink_step(&f, found),
                RelinkStep::Replace {
                    leaf: Leaf::Empty { mode: 0o644 },
                    clear_dir
                }
            );
        }
    }
}
