//! The engine's algorithms (push, rollback, prune) against the `Target` trait, run on
//! a local target in a temporary directory: what each leaves on the store and what it
//! reports, without the CLI.

mod helper;
mod prune;
mod push;
mod rollback;
mod util;
