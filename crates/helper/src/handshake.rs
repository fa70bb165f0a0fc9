//! The greeting both ends send before anything else, and how they agree on a
//! protocol version.
//!
//! Each end writes, without waiting for the other, a fixed preamble: the 8 magic
//! bytes `RELSTHLP`, the lowest and highest protocol version it speaks (u16
//! little-endian each), and its tool version (one length byte, then that many bytes).
//! The preamble's layout never changes, so two relstores of any versions can always
//! tell each other apart and say why they cannot talk. Each end then picks the
//! highest version both speak; when there is none, both stop and the client reports
//! [`HelperError::Incompatible`]. Otherwise each end sends a [`Hello`] frame in the
//! agreed version.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::HelperError;
use crate::frame::{FrameReader, FrameWriter};

/// The first bytes either end sends.
pub const MAGIC: [u8; 8] = *b"RELSTHLP";
/// The protocol version this build speaks (and the highest). 2 added the client's
/// `Cancel` message (Ctrl-C reaches the helper); a version 1 peer is never sent one.
/// 3 added `ManifestDigest` (the client's manifest cache asks for a manifest's
/// digest before reading it); a version 1 or 2 peer is never asked. 4 added
/// `SharedKinds` and `SeedShared` (shared paths); against an older helper a push with
/// shared paths fails with a message saying to update it or use `--helper off`.
pub const PROTOCOL_VERSION: u16 = 4;
/// The oldest protocol version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// What an end says about itself once the version is agreed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// relstore version, as `cargo` knows it.
    pub tool_version: String,
    /// Operating system (`linux`, `macos`), as Rust names it.
    pub os: String,
    /// CPU architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// zstd library version number (a patch made by one zstd decodes with any other,
    /// but equal versions also re-encode manifests byte for byte).
    pub zstd_version: u32,
    /// What this end serves (the helper's store root), empty for a client.
    pub location: String,
}

impl Hello {
    /// This build's hello.
    pub fn ours(location: &str) -> Hello {
        Hello {
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            zstd_version: zstd::zstd_safe::version_number(),
            location: location.to_owned(),
        }
    }
}

/// What the other end said in its preamble and hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The protocol version both ends use on this connection.
    pub protocol: u16,
    /// The other end's hello.
    pub hello: Hello,
}

/// The fixed part of the greeting, as sent by `(min, max, tool)`.
pub(crate) fn preamble(min: u16, max: u16, tool: &str) -> Vec<u8> {
    let tool = &tool.as_bytes()[..tool.len().min(255)];
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&min.to_le_bytes());
    out.extend_from_slice(&max.to_le_bytes());
    out.push(tool.len() as u8);
    out.extend_from_slice(tool);
    out
}

/// Shows bytes that were expected to be a greeting, for the error message: the
/// first line, at most 200 bytes.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    text.lines().next().unwrap_or("").trim_end().to_owned()
}

/// Reads the other end's preamble: `(min, max, tool)`.
fn read_preamble<R: Read>(r: &mut FrameReader<R>) -> Result<(u16, u16, String), HelperError> {
    let step = "reading the greeting";
    let mut head = [0u8; 13];
    let got = r.read_raw(&mut head, step)?;
    if got < MAGIC.len() || head[..MAGIC.len()] != MAGIC {
        // Whatever else already arrived completes the message (a shell's error line).
        let mut seen = head[..got].to_vec();
        seen.extend_from_slice(r.buffered());
        return Err(HelperError::NotAHelper { got: show(&seen) });
    }
    if got < head.len() {
        return Err(HelperError::Closed { step });
    }
    let min = u16::from_le_bytes([head[8], head[9]]);
    let max = u16::from_le_bytes([head[10], head[11]]);
    let mut tool = vec![0u8; usize::from(head[12])];
    if r.read_raw(&mut tool, step)? < tool.len() {
        return Err(HelperError::Closed { step });
    }
    Ok((min, max, String::from_utf8_lossy(&tool).into_owned()))
}

/// The version two ends with these ranges use, if any.
pub(crate) fn agree(ours: (u16, u16), theirs: (u16, u16)) -> Option<u16> {
    let v = ours.1.min(theirs.1);
    (v >= ours.0.max(theirs.0)).then_some(v)
}

/// Greets the other end with versions `ours` and hello `hello`, and reads its
/// greeting. Both ends run the same exchange.
pub(crate) fn greet<R: Read, W: Write>(
    r: &mut FrameReader<R>,
    w: &mut FrameWriter<W>,
    ours: (u16, u16),
    hello: &Hello,
) -> Result<Peer, HelperError> {
    let step = "sending the greeting";
    w.write_raw(&preamble(ours.0, ours.1, &hello.tool_version), step)?;
    w.flush(step)?;
    let (min, max, tool) = read_preamble(r)?;
    let Some(protocol) = agree(ours, (min, max)) else {
        return Err(HelperError::Incompatible {
            ours_min: ours.0,
            ours_max: ours.1,
            ours_tool: hello.tool_version.clone(),
            theirs_min: min,
            theirs_max: max,
            theirs_tool: tool,
        });
    };
    w.send_now(hello, step)?;
    let theirs: Hello = r.expect("reading the hello")?;
    Ok(Peer {
        protocol,
        hello: theirs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_agree_on_the_highest_common_one() {
        assert_eq!(agree((1, 1), (1, 1)), Some(1));
        assert_eq!(agree((1, 3), (2, 5)), Some(3));
        assert_eq!(agree((1, 1), (2, 2)), None);
        assert_eq!(agree((3, 4), (1, 2)), None);
    }
}
