//! relstore's helper protocol: a store served by a relstore at the other end of a
//! byte stream.
//!
//! In helper mode, `relstore serve --stdio ROOT` runs on the server over an SSH exec
//! channel (as `rsync --server` does) and opens ROOT with the local target; the
//! client talks to it over the channel's stdin/stdout. This crate has both ends, and
//! neither knows about SSH: they work on any `Read`/`Write` pair, which is how the
//! tests run them in one process over pipes.
//!
//! - [`HelperClient`] implements [`relstore_core::Target`] by sending each method as
//!   a request, so every command (push, releases, rollback, prune, verify, diff)
//!   works through a helper with no change to the engine.
//! - [`serve`] executes requests on any `&dyn Target`.
//!
//! What makes the helper worth running is what crosses the wire: new objects travel
//! as one zstd stream whose context spans objects, objects with an earlier version on
//! the server travel as zstd patches against it ([`patch`]), and manifests and entry
//! lists travel as patches against a manifest both ends have. The helper checks every object against its hash before the
//! store sees it. `docs/protocol.md` describes the protocol in full.

mod client;
mod client_cancel;
mod client_delta;
mod client_put;
mod error;
pub mod frame;
pub mod handshake;
mod inbox;
pub mod manifest_cache;
mod manifest_delta;
pub mod patch;
mod proto;
mod server;
mod server_ops;
mod server_put;
mod spool;
mod stream;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_shared;

pub use client::{ClientOptions, HelperClient, TransferStats};
pub use error::HelperError;
pub use frame::WireTotals;
pub use handshake::{Hello, Peer, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
pub use server::{serve, ServeOptions, ServeSummary};
