//! Manifests and entry lists as deltas against a manifest both ends have.
//!
//! A manifest file's body is zstd-compressed, so two manifests that differ in a few
//! entries differ almost everywhere once compressed. Deltas are therefore made
//! between *unpacked* forms, where the body is stored raw:
//!
//! `head (magic .. end of header) | u64 body_len | body | blake3 trailer`
//!
//! The receiver rebuilds the unpacked form from the patch, packs it again exactly as
//! `Manifest::encode` does (zstd level [`MANIFEST_ZSTD_LEVEL`] over the body) and
//! checks the blake3 of the result against the digest the sender announced. If
//! anything differs — another zstd version compressing differently, another manifest
//! format — the check fails and the sender sends the full file instead: the delta is
//! only ever an optimisation. Entry lists (for `assemble`) are patched against the
//! raw body of the base manifest, which is the bincode encoding of its entries.

use std::io::Read;

use relstore_core::manifest::{MANIFEST_FORMAT, MAX_BODY_LEN};
use relstore_core::Entry;

use crate::patch::MAX_PATCH_INPUT;

/// The zstd level `Manifest::encode` compresses bodies with; a different level only
/// makes deltas fall back to full files.
pub(crate) const MANIFEST_ZSTD_LEVEL: i32 = 3;
const PREFIX_LEN: usize = 16;
const SUM_LEN: usize = 32;

/// The parts of a packed manifest file.
struct Packed<'a> {
    head: &'a [u8],
    body_len: u64,
    zbody: &'a [u8],
    sum: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Where the head of a manifest ends (after the header), for the format this crate
/// knows; `None` for anything else.
fn head_end(bytes: &[u8]) -> Option<usize> {
    if u32_at(bytes, 8)? != MANIFEST_FORMAT {
        return None;
    }
    Some(PREFIX_LEN + u32_at(bytes, 12)? as usize)
}

fn split(bytes: &[u8]) -> Option<Packed<'_>> {
    let head = head_end(bytes)?;
    let body_len = u64_at(bytes, head)?;
    let zlen = usize::try_from(u64_at(bytes, head + 8)?).ok()?;
    let zstart = head + 16;
    let zend = zstart.checked_add(zlen)?;
    if zend.checked_add(SUM_LEN)? != bytes.len() {
        return None;
    }
    Some(Packed {
        head: &bytes[..head],
        body_len,
        zbody: &bytes[zstart..zend],
        sum: &bytes[zend..],
    })
}

fn decompress(zbody: &[u8], body_len: u64) -> Option<Vec<u8>> {
    if body_len > MAX_BODY_LEN || body_len > MAX_PATCH_INPUT {
        return None;
    }
    let mut body = Vec::with_capacity(body_len as usize);
    zstd::stream::read::Decoder::new(zbody)
        .ok()?
        .take(body_len + 1)
        .read_to_end(&mut body)
        .ok()?;
    (body.len() as u64 == body_len).then_some(body)
}

/// The raw body of a manifest file: the bincode encoding of its entries.
pub(crate) fn raw_body(bytes: &[u8]) -> Option<Vec<u8>> {
    let p = split(bytes)?;
    decompress(p.zbody, p.body_len)
}

/// The unpacked form of a manifest file.
pub(crate) fn unpack(bytes: &[u8]) -> Option<Vec<u8>> {
    let p = split(bytes)?;
    let body = decompress(p.zbody, p.body_len)?;
    let mut out = Vec::with_capacity(p.head.len() + 8 + body.len() + SUM_LEN);
    out.extend_from_slice(p.head);
    out.extend_from_slice(&p.body_len.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(p.sum);
    Some(out)
}

/// Packs an unpacked form back into a manifest file.
pub(crate) fn repack(unpacked: &[u8]) -> Option<Vec<u8>> {
    let head = head_end(unpacked)?;
    let body_len = usize::try_from(u64_at(unpacked, head)?).ok()?;
    let body_start = head + 8;
    let body_end = body_start.checked_add(body_len)?;
    if body_end.checked_add(SUM_LEN)? != unpacked.len() {
        return None;
    }
    let zbody = zstd::bulk::compress(&unpacked[body_start..body_end], MANIFEST_ZSTD_LEVEL).ok()?;
    let mut out = Vec::with_capacity(body_start + 8 + zbody.len() + SUM_LEN);
    out.extend_from_slice(&unpacked[..head]);
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend_from_slice(&(zbody.len() as u64).to_le_bytes());
    out.extend_from_slice(&zbody);
    out.extend_from_slice(&unpacked[body_end..]);
    Some(out)
}

/// Entries encoded as a manifest body encodes them.
pub(crate) fn encode_entries(entries: &[Entry]) -> Option<Vec<u8>> {
    bincode::serde::encode_to_vec(entries, bincode::config::standard()).ok()
}

/// Decodes entries encoded by [`encode_entries`] (bounded like a manifest body).
pub(crate) fn decode_entries(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let config = bincode::config::standard().with_limit::<{ MAX_BODY_LEN as usize }>();
    let (entries, used): (Vec<Entry>, usize) =
        bincode::serde::decode_from_slice(bytes, config).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err("trailing bytes after the entries".into());
    }
    Ok(entries)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use relstore_core::{ContentHash, EntryKind, Manifest, ReleaseName};

    pub(crate) fn manifest(name: &str, files: usize, salt: &str) -> Manifest {
        let mut entries = vec![Entry {
            path: b"d".to_vec(),
            kind: EntryKind::Dir { mode: 0o755 },
        }];
        for i in 0..files {
            let content = if i == 7 {
                format!("{salt}{i}")
            } else {
                format!("{i}")
            };
            entries.push(Entry {
                path: format!("d/f{i:05}.html").into_bytes(),
                kind: EntryKind::File {
                    size: content.len() as u64,
                    hash: ContentHash::from(blake3::hash(content.as_bytes())),
                    mode: 0o644,
                },
            });
        }
        Manifest::new(&ReleaseName::parse(name).unwrap(), 1, entries)
    }

    #[test]
    fn unpack_and_repack_round_trip() {
        let bytes = manifest("r1", 50, "a").encode().unwrap();
        let unpacked = unpack(&bytes).unwrap();
        assert_eq!(repack(&unpacked).unwrap(), bytes);
        let m = Manifest::decode(&bytes, Some("r1")).unwrap();
        assert_eq!(
            decode_entries(&raw_body(&bytes).unwrap()).unwrap(),
            m.entries
        );
        assert_eq!(
            encode_entries(&m.entries).unwrap(),
            raw_body(&bytes).unwrap()
        );
        assert!(unpack(&bytes[..bytes.len() - 1]).is_none());
        assert!(repack(&unpacked[..unpacked.len() - 1]).is_none());
    }

    #[test]
    fn a_release_that_changes_one_entry_patches_into_a_few_hundred_bytes() {
        let a = unpack(&manifest("r1", 5000, "a").encode().unwrap()).unwrap();
        let b_bytes = manifest("r2", 5000, "b").encode().unwrap();
        let b = unpack(&b_bytes).unwrap();
        let patch = crate::patch::make_patch(&a, &b, 3).unwrap();
        assert!(patch.len() < 400, "{} bytes", patch.len());
        let rebuilt = crate::patch::apply_patch(&a, &patch, b.len() as u64).unwrap();
        assert_eq!(repack(&rebuilt).unwrap(), b_bytes);
    }
}
