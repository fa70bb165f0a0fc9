//! zstd patches: content compressed with an older version of itself as reference
//! prefix (zstd's `--patch-from`), so only the differences cost bytes.
//!
//! A patch is one zstd frame made by a compressor that was given the base as a
//! prefix; the decompressor must be given the same base. The window must reach back
//! over base and content together, so it is sized from their total; the helper
//! refuses a window above [`MAX_WINDOW_LOG`], which bounds what one patch may make it
//! hold in memory. Rebuilding checks the exact length; the caller checks the hash.

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer};

/// Largest window (log2 bytes) a patch or the object stream may use: 128 MiB.
pub const MAX_WINDOW_LOG: u32 = 27;
const MIN_WINDOW_LOG: u32 = 10;
/// Bases and contents together above this are sent whole: a patch needs both in
/// memory on each end and a window that covers them.
pub const MAX_PATCH_INPUT: u64 = 1 << MAX_WINDOW_LOG;

/// Why a patch could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// zstd refused (a corrupt patch, a wrong base, an oversized window).
    #[error("zstd: {0}")]
    Zstd(&'static str),
    /// The patch rebuilt more or fewer bytes than announced.
    #[error("patch rebuilds {got} bytes, {expected} were announced")]
    Length { expected: u64, got: u64 },
    /// The patch ended before its frame did, or has bytes after it.
    #[error("patch is truncated or has trailing bytes")]
    Framing,
    /// Base and content are too large to patch.
    #[error("{0} bytes are too many to patch")]
    TooLarge(u64),
}

fn zstd_err(code: usize) -> PatchError {
    PatchError::Zstd(zstd_safe::get_error_name(code))
}

/// The window log that covers `total` bytes of base and content.
pub(crate) fn window_log_for(total: u64) -> u32 {
    let needed = u64::BITS - total.max(1).leading_zeros();
    needed.clamp(MIN_WINDOW_LOG, MAX_WINDOW_LOG)
}

/// Compresses `content` with `base` as reference prefix at zstd `level`.
pub fn make_patch(base: &[u8], content: &[u8], level: i32) -> Result<Vec<u8>, PatchError> {
    let total = (base.len() + content.len()) as u64;
    if total > MAX_PATCH_INPUT {
        return Err(PatchError::TooLarge(total));
    }
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(zstd_err)?;
    cctx.set_parameter(CParameter::WindowLog(window_log_for(total)))
        .map_err(zstd_err)?;
    if total > 8 << 20 {
        cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
            .map_err(zstd_err)?;
    }
    cctx.ref_prefix(base).map_err(zstd_err)?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(content.len()));
    cctx.compress2(&mut out, content).map_err(zstd_err)?;
    Ok(out)
}

/// Rebuilds exactly `len` bytes from `patch` against `base`.
pub fn apply_patch(base: &[u8], patch: &[u8], len: u64) -> Result<Vec<u8>, PatchError> {
    if len > MAX_PATCH_INPUT {
        return Err(PatchError::TooLarge(len));
    }
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
        .map_err(zstd_err)?;
    dctx.ref_prefix(base).map_err(zstd_err)?;
    // One spare byte: a patch that would write more than announced fills it and fails.
    let mut out: Vec<u8> = Vec::with_capacity(len as usize + 1);
    let mut input = InBuffer::around(patch);
    loop {
        let before = (input.pos(), out.len());
        let filled = out.len();
        let hint = {
            let mut output = OutBuffer::around_pos(&mut out, filled);
            dctx.decompress_stream(&mut output, &mut input)
                .map_err(zstd_err)?
        };
        if out.len() as u64 > len {
            return Err(PatchError::Length {
                expected: len,
                got: out.len() as u64,
            });
        }
        if hint == 0 {
            break;
        }
        if (input.pos(), out.len()) == before {
            return Err(PatchError::Framing);
        }
    }
    if input.pos() != patch.len() {
        return Err(PatchError::Framing);
    }
    if out.len() as u64 != len {
        return Err(PatchError::Length {
            expected: len,
            got: out.len() as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn page(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(format!("<p>word{} {}</p>\n", x >> 50, x >> 58).as_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn a_small_edit_patches_into_a_few_bytes_and_rebuilds_exactly() {
        let base = page(1, 100_000);
        let mut new = base.clone();
        new.splice(500..500, b"<nav>new entry</nav>\n".iter().copied());
        new[60_000] = b'X';
        let patch = make_patch(&base, &new, 3).unwrap();
        assert!(patch.len() < 200, "patch of {} bytes", patch.len());
        assert_eq!(apply_patch(&base, &patch, new.len() as u64).unwrap(), new);
    }

    #[test]
    fn wrong_base_wrong_length_and_cut_patches_fail() {
        let base = page(1, 20_000);
        let mut new = base.clone();
        new.extend_from_slice(b"tail");
        let patch = make_patch(&base, &new, 3).unwrap();
        let other = page(2, 20_000);
        let wrong = apply_patch(&other, &patch, new.len() as u64);
        assert!(wrong.is_err() || wrong.unwrap() != new);
        assert!(apply_patch(&base, &patch, new.len() as u64 - 1).is_err());
        assert!(apply_patch(&base, &patch, new.len() as u64 + 1).is_err());
        assert!(apply_patch(&base, &patch[..patch.len() - 3], new.len() as u64).is_err());
        let mut trailing = patch.clone();
        trailing.push(0);
        assert!(apply_patch(&base, &trailing, new.len() as u64).is_err());
    }
}
