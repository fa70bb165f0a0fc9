//! Manifest encoding, decoding and validation, including hostile input.
#![allow(clippy::unwrap_used)]

use super::*;

fn sample() -> Manifest {
    let h = ContentHash::from(blake3::hash(b"content"));
    let entries = vec![
        Entry {
            path: b"b.txt".to_vec(),
            kind: EntryKind::File {
                size: 7,
                hash: h,
                mode: 0o644,
            },
        },
        Entry {
            path: b"a".to_vec(),
            kind: EntryKind::Dir { mode: 0o755 },
        },
        Entry {
            path: b"a/caf\xe9".to_vec(),
            kind: EntryKind::File {
                size: 7,
                hash: h,
                mode: 0o755,
            },
        },
        Entry {
            path: b"a/link".to_vec(),
            kind: EntryKind::Symlink {
                target: b"../b.txt".to_vec(),
            },
        },
    ];
    Manifest::new(
        &ReleaseName::parse("r1").unwrap(),
        1_700_000_000_000_000_000,
        entries,
    )
}

#[test]
fn encode_decode_round_trip() {
    let m = sample();
    let bytes = m.encode().unwrap();
    let back = Manifest::decode(&bytes, Some("r1")).unwrap();
    assert_eq!(back, m);
    assert_eq!(
        decode_header(&bytes[..100.min(bytes.len())], Some("r1")).unwrap(),
        m.header
    );
    assert_eq!(
        back.objects().len(),
        2,
        "same content, two modes: two objects"
    );
}

#[test]
fn streaming_equality_matches_decoded_equality() {
    let m = sample();
    let bytes = m.encode().unwrap();
    let (same, header) = Manifest::equals_entries(&bytes, Some("r1"), &m.entries).unwrap();
    assert!(same);
    assert_eq!(header, m.header);
    // One field of one entry differs (totals equal): found while streaming.
    let mut other = m.entries.clone();
    if let Some(EntryKind::File { hash, .. }) = other.iter_mut().rev().find_map(|e| match e.kind {
        EntryKind::File { .. } => Some(&mut e.kind),
        _ => None,
    }) {
        *hash = ContentHash::from(blake3::hash(b"other"));
    }
    assert!(
        !Manifest::equals_entries(&bytes, Some("r1"), &other)
            .unwrap()
            .0
    );
    // Fewer entries: different totals.
    assert!(
        !Manifest::equals_entries(&bytes, Some("r1"), &m.entries[1..])
            .unwrap()
            .0
    );
    // Damage is still refused.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    assert!(Manifest::equals_entries(&bad, Some("r1"), &m.entries).is_err());
    assert!(Manifest::equals_entries(&bytes, Some("r2"), &m.entries).is_err());
}

#[test]
fn rejects_wrong_name_and_every_single_bit_flip() {
    let bytes = sample().encode().unwrap();
    assert!(matches!(
        Manifest::decode(&bytes, Some("r2")),
        Err(ManifestError::NameMismatch { .. })
    ));
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        assert!(
            Manifest::decode(&b, Some("r1")).is_err(),
            "flip at {i} accepted"
        );
    }
    for len in 0..bytes.len() {
        assert!(Manifest::decode(&bytes[..len], None).is_err());
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(7);
    let valid = sample().encode().unwrap();
    for round in 0..3000 {
        let mut b: Vec<u8> = if round % 3 == 0 {
            (0..rng.usize(0..400)).map(|_| rng.u8(..)).collect()
        } else {
            valid.clone()
        };
        if round % 3 != 0 {
            // Keep the magic/version so the decoder goes deep, then corrupt.
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(8..b.len());
                b[i] = rng.u8(..);
            }
        }
        let _ = Manifest::decode(&b, None);
        let _ = decode_header(&b, None);
    }
}

fn with_entries(entries: Vec<Entry>) -> Manifest {
    let mut m = sample();
    m.header.totals = Totals::of(&entries);
    m.entries = entries;
    m
}

fn file(path: &[u8]) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::File {
            size: 1,
            hash: ContentHash::empty(),
            mode: 0o644,
        },
    }
}

/// Hostile manifests are re-encoded with a valid checksum so that validation, not
/// the checksum, must catch them.
#[test]
fn hostile_entries_are_rejected_after_a_valid_checksum() {
    let link = Entry {
        path: b"l".to_vec(),
        kind: EntryKind::Symlink {
            target: b"/etc".to_vec(),
        },
    };
    let cases: Vec<Vec<Entry>> = vec![
        vec![file(b"/etc/passwd")],
        vec![file(b"../x")],
        vec![file(b"a/./b")],
        vec![file(b"a\0b")],
        vec![file(b"")],
        vec![file(b"b"), file(b"a")],
        vec![file(b"a"), file(b"a")],
        vec![file(b"nodir/x")],
        vec![link.clone(), file(b"l/passwd")],
        vec![Entry {
            path: b"m".to_vec(),
            kind: EntryKind::Dir { mode: 0o40755 },
        }],
        vec![Entry {
            path: b"s".to_vec(),
            kind: EntryKind::Symlink { target: vec![] },
        }],
    ];
    for entries in cases {
        let m = with_entries(entries.clone());
        let bytes = m.encode().unwrap();
        assert!(
            Manifest::decode(&bytes, None).is_err(),
            "accepted {entries:?}"
        );
    }
    let mut m = sample();
    m.header.totals.files += 1;
    assert!(matches!(
        Manifest::decode(&m.encode().unwrap(), None),
        Err(ManifestError::BadTotals)
    ));
    let mut m = sample();
    m.header.release = "../x".into();
    assert!(Manifest::decode(&m.encode().unwrap(), None).is_err());
}

/// A manifest file whose header declares `entries` entries and whose body repeats
/// one tiny directory entry that many times: a few KB that decompress to far more.
fn bomb(entries: u64) -> Vec<u8> {
    let header = Header {
        release: "r1".into(),
        created_unix_ns: 0,
        tool_version: "0".into(),
        totals: Totals {
            entries,
            dirs: entries,
            ..Totals::default()
        },
    };
    let one = Entry {
        path: b"a".to_vec(),
        kind: EntryKind::Dir { mode: 0o755 },
    };
    let one = bincode::serde::encode_to_vec(&one, bincode_config()).unwrap();
    let mut body = bincode::serde::encode_to_vec(entries, bincode_config()).unwrap();
    for _ in 0..entries {
        body.extend_from_slice(&one);
    }
    let header = bincode::serde::encode_to_vec(&header, bincode_config()).unwrap();
    let zbody = zstd::bulk::compress(&body, 19).unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&MANIFEST_FORMAT.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&(zbody.len() as u64).to_le_bytes());
    out.extend_from_slice(&zbody);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Regression: an 11–33 KB manifest decompressing to tens of millions of tiny
/// entries stayed under the body cap, and verify, prune and rollback then took
/// gigabytes or aborted on a failed allocation. It is refused before decompression.
#[test]
fn manifest_decompression_bomb_is_refused_before_decoding() {
    let bytes = bomb(4_000_000);
    assert!(bytes.len() < 64 * 1024, "a bomb is small: {}", bytes.len());
    match Manifest::decode(&bytes, Some("r1")) {
        Err(ManifestError::TooManyEntries {
            declared, limit, ..
        }) => {
            assert_eq!(declared, 4_000_000);
            assert!(limit < declared);
        }
        other => panic!("expected a refusal as a bomb, got {other:?}"),
    }
}

#[test]
fn entry_limit_allows_real_manifests_and_caps_everything() {
    // A real manifest costs tens of bytes per entry compressed.
    assert!(entry_limit(42 * 1_000_000) >= 1_000_000);
    assert_eq!(entry_limit(0), MIN_ENTRY_LIMIT);
    assert_eq!(entry_limit(usize::MAX), MAX_ENTRIES);
}

/// A header that understates the entries of a body is refused as soon as the
/// body's own count disagrees, without decoding the rest.
#[test]
fn body_count_must_match_the_header() {
    let mut m = sample();
    m.header.totals.entries = 1;
    let bytes = m.encode().unwrap();
    assert!(matches!(
        Manifest::decode(&bytes, None),
        Err(ManifestError::BadTotals)
    ));
}
