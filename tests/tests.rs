//! Integration tests: the real `relstore` binary against real directories, with real
//! kills of real processes. Each test builds its own trees under a temp directory.
//!
//! Tests that exercise a store are written once against [`util::Env`], which names a
//! target kind; every kind runs the same conformance cases.

#![allow(clippy::unwrap_used)]

mod util;

mod bad_input;
mod bench;
mod crash;
mod diff;
mod dry_run;
mod emlink;
mod exclude;
mod interrupt;
mod lock;
mod progress;
mod push;
mod restore;
mod retention;
mod rollback;
mod verify;
