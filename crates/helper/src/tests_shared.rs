//! Shared paths through the helper (protocol 4): looked at, seeded once, hostile seeds
//! refused, and a clear error from an older helper.

#![allow(clippy::unwrap_used)]

use std::fs;

use relstore_core::shared::SeedItem;
use relstore_core::target::TreeKind;
use relstore_core::Target;

use crate::tests::{connect_to, start};
use crate::{ClientOptions, ServeOptions};

fn dir_seed() -> Vec<SeedItem> {
    vec![
        SeedItem::Dir {
            path: Vec::new(),
            mode: 0o755,
        },
        SeedItem::File {
            path: b"a.txt".to_vec(),
            mode: 0o640,
            content: b"seeded".to_vec(),
        },
        SeedItem::Symlink {
            path: b"link".to_vec(),
            target: b"a.txt".to_vec(),
        },
    ]
}

#[test]
fn shared_paths_are_seeded_once_and_hostile_seeds_write_nothing() {
    let s = start();
    let names = vec!["media/uploads".to_owned(), ".env".to_owned()];
    assert_eq!(s.client.shared_kinds(&names).unwrap(), [None, None]);
    assert!(s.client.seed_shared("media/uploads", &dir_seed()).unwrap());
    // Already there: left alone.
    let other = vec![SeedItem::Dir {
        path: Vec::new(),
        mode: 0o700,
    }];
    assert!(!s.client.seed_shared("media/uploads", &other).unwrap());
    assert_eq!(
        s.client.shared_kinds(&names).unwrap(),
        [Some(TreeKind::Dir), None]
    );
    let seeded = s.root.join("shared/media/uploads");
    assert_eq!(fs::read(seeded.join("a.txt")).unwrap(), b"seeded");
    assert_eq!(
        fs::read_link(seeded.join("link")).unwrap().to_str(),
        Some("a.txt")
    );
    // Only the seed is there: no temporary left beside it.
    let beside: Vec<_> = fs::read_dir(s.root.join("shared/media")).unwrap().collect();
    assert_eq!(beside.len(), 1);

    // A seed escaping its path, or a path escaping shared/, is refused unwritten.
    let escape = vec![
        SeedItem::Dir {
            path: Vec::new(),
            mode: 0o755,
        },
        SeedItem::File {
            path: b"../../../evil".to_vec(),
            mode: 0o644,
            content: b"x".to_vec(),
        },
    ];
    let err = s.client.seed_shared("x", &escape).unwrap_err().to_string();
    assert!(err.contains("seed of shared path"), "{err}");
    let err = s
        .client
        .seed_shared("../x", &other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("seed of shared path"), "{err}");
    assert!(!s.root.join("shared/x").exists());
    assert!(!s.root.join("x").exists());
    assert!(!s.root.join("evil").exists());
    s.finish();
}

#[test]
fn an_older_helper_refuses_shared_paths_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let serve_options = ServeOptions {
        max_protocol: Some(3),
        ..ServeOptions::default()
    };
    let (client, server) = connect_to(&root, ClientOptions::default(), serve_options);
    client.open(true).unwrap();
    let err = client
        .shared_kinds(&[".env".to_owned()])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "test:store: the helper there speaks protocol 3, shared paths need 4: update \
         relstore on the server or use --helper off"
    );
    client.close();
    server.join().unwrap().unwrap();
}
