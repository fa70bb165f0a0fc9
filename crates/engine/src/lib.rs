//! relstore's commands, written once against the [`relstore_core::Target`] trait.
//!
//! - [`activate`]: staged releases (`next`) and `relstore activate`;
//! - [`bench`]: a series of pushes on a scratch copy, side by side with rsync;
//! - [`push`]: scan a source, upload what the target lacks, assemble, swap `current`;
//! - [`fleet`]: one push to many targets: staged everywhere, activated in waves;
//! - [`catalog`]: what releases a store holds, and recovery after interrupted commands;
//! - [`leftover`]: which release directories without a manifest recovery may delete;
//! - [`reconnect`]: continue a push over a new connection when one drops;
//! - [`rollback`]: point `current` at another release;
//! - [`retention`]: prune old release directories and unreferenced objects, pins;
//! - [`compare`]: diff releases, directories and manifest files;
//! - [`hooks`]: shell commands on the target's host around the swap;
//! - [`lock`]: the store lock every mutating command holds;
//! - [`opener`]: how the engine opens a TARGET string it was given (the caller knows
//!   the kinds of targets; the engine does not);
//! - [`sources`]: object content from the source tree, `--source` trees or the local
//!   release store;
//! - [`release_store`]: the client-side release store (write-through, retention);
//! - [`verify`]: re-hash objects, check release trees against manifests, repair.
//!
//! The CLI parses arguments and prints reports; everything else happens here.

pub mod activate;
pub mod bench;
pub mod catalog;
pub mod compare;
mod delta_bases;
pub mod error;
pub mod fleet;
pub mod hooks;
pub mod leftover;
pub mod lock;
pub mod opener;
pub mod push;
pub mod reconnect;
pub mod release_store;
pub mod retention;
pub mod rollback;
mod shared;
pub mod sources;
pub mod verify;

pub use error::{EngineError, EngineResult};
