//! relstore's shared vocabulary.
//!
//! relstore deploys file trees as releases assembled from content-addressed objects.
//! This crate holds what every other crate agrees on and nothing that does I/O beyond
//! small helpers: object ids ([`hash`]), relative byte paths ([`path`]), release names
//! ([`release`]), the manifest format and its validation ([`manifest`]), manifest
//! comparison ([`diff`]), the on-target layout ([`layout`]), the [`target::Target`]
//! trait that the local and SSH targets implement with the policy they share — which
//! roots `open` accepts ([`root`]), how releases are built and repaired ([`assembly`]),
//! which store paths may be followed ([`store_path`]) — lock records ([`lock`]), progress
//! reporting ([`progress`]), crash-test kill points ([`failpoint`]) and Ctrl-C
//! cancellation ([`cancel`]).
//!
//! It has no async runtime and no knowledge of any particular target.

pub mod assembly;
pub mod cancel;
pub mod diff;
pub mod durable;
pub mod duration;
pub mod failpoint;
pub mod hash;
pub mod hook;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod path;
pub mod progress;
pub mod release;
pub mod root;
pub mod shared;
pub mod store_path;
pub mod target;
pub mod tree_hash;
pub mod verify_read;

pub use hash::{ContentHash, ObjectId};
pub use manifest::{Entry, EntryKind, Leaf, Manifest, Recipe};
pub use release::ReleaseName;
pub use target::{Target, TargetError, TargetResult};
