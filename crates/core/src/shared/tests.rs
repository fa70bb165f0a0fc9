use super::*;

fn dir(path: &str) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::Dir { mode: 0o750 },
    }
}

fn file(path: &str) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::File {
            size: 1,
            hash: crate::ContentHash::empty(),
            mode: 0o644,
        },
    }
}

fn paths(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8(e.path.clone()).unwrap())
        .collect()
}

#[test]
fn parse_tells_directories_from_files_and_refuses_bad_paths() {
    let d = SharedPath::parse("uploads/").unwrap();
    assert!(d.is_dir());
    assert_eq!(d.rel(), "uploads");
    assert_eq!(d.to_string(), "uploads/");
    let f = SharedPath::parse(".env").unwrap();
    assert!(!f.is_dir());
    assert_eq!(f.store_rel(), "shared/.env");
    for bad in [
        "", "/", "/etc/", "a/../b", "./x", "a//b", "up*", "x[1]", "a\\b",
    ] {
        let err = SharedPath::parse(bad).unwrap_err().to_string();
        assert!(err.starts_with("shared path "), "{bad}: {err}");
        assert!(!err.contains('\n'));
    }
}

#[test]
fn link_targets_climb_out_of_the_release_directory() {
    assert_eq!(link_target(b"uploads"), b"../../shared/uploads");
    assert_eq!(link_target(b"a/b/logs"), b"../../../../shared/a/b/logs");
}

#[test]
fn sets_with_duplicates_or_nesting_are_refused() {
    let p = |s| SharedPath::parse(s).unwrap();
    assert!(check_set(&[p("uploads/"), p(".env"), p("uploads2/")]).is_ok());
    let dup = check_set(&[p("uploads/"), p("uploads")]).unwrap_err();
    assert!(dup.to_string().contains("twice"), "{dup}");
    let nested = check_set(&[p("storage/logs/"), p("storage/")]).unwrap_err();
    assert_eq!(
        nested.to_string(),
        "shared path \"storage/logs/\" is inside shared path \"storage/\""
    );
}

#[test]
fn link_into_replaces_the_sources_copy_and_adds_missing_parents() {
    let entries = vec![
        dir("uploads"),
        file("uploads/a.jpg"),
        file("index.html"),
        file(".env"),
        dir("storage"),
    ];
    let shared = [
        SharedPath::parse("uploads/").unwrap(),
        SharedPath::parse(".env").unwrap(),
        SharedPath::parse("storage/logs/").unwrap(),
        SharedPath::parse("var/cache/x/").unwrap(),
    ];
    let out = link_into(entries, &shared).unwrap();
    assert_eq!(
        paths(&out),
        [
            ".env",
            "index.html",
            "storage",
            "storage/logs",
            "uploads",
            "var",
            "var/cache",
            "var/cache/x"
        ]
    );
    // The source's own directory keeps its mode; created parents get the default.
    assert_eq!(out[2].kind, EntryKind::Dir { mode: 0o750 });
    assert_eq!(
        out[5].kind,
        EntryKind::Dir {
            mode: PARENT_DIR_MODE
        }
    );
    assert_eq!(
        linked_paths(&out),
        [&b".env"[..], b"storage/logs", b"uploads", b"var/cache/x"]
    );
    // A manifest of such entries is valid (parents first, sorted).
    let m = crate::Manifest::new(&crate::ReleaseName::parse("r1").unwrap(), 0, out.clone());
    m.validate(Some("r1")).unwrap();
    assert_eq!(without(out, &linked_paths(&m.entries)).len(), 4);
}

#[test]
fn a_parent_that_is_a_file_in_the_source_is_refused() {
    let err = link_into(
        vec![file("storage")],
        &[SharedPath::parse("storage/logs/").unwrap()],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "shared path \"storage/logs/\": \"storage\" is a file in the source, not a directory"
    );
}

#[test]
fn a_symlink_elsewhere_is_not_a_shared_link() {
    let e = Entry {
        path: b"a/uploads".to_vec(),
        kind: EntryKind::Symlink {
            target: b"../../shared/uploads".to_vec(),
        },
    };
    assert!(!is_shared_link(&e));
    assert!(!is_at_or_under(b"uploads2", b"uploads"));
    assert!(is_at_or_under(b"uploads/x", b"uploads"));
}

#[test]
fn seeds_are_validated() {
    let ok = [
        SeedItem::Dir {
            path: vec![],
            mode: 0o755,
        },
        SeedItem::Dir {
            path: b"a".to_vec(),
            mode: 0o755,
        },
        SeedItem::File {
            path: b"a/x".to_vec(),
            mode: 0o644,
            content: b"hi".to_vec(),
        },
    ];
    validate_seed("uploads", &ok).unwrap();
    // A child before its parent, an escape, a file root with children.
    let mut bad = ok.to_vec();
    bad.swap(1, 2);
    assert!(validate_seed("uploads", &bad).is_err());
    let escape = [
        ok[0].clone(),
        SeedItem::Symlink {
            path: b"../x".to_vec(),
            target: b"/etc".to_vec(),
        },
    ];
    assert!(validate_seed("uploads", &escape).is_err());
    let file_root = [
        SeedItem::File {
            path: vec![],
            mode: 0o600,
            content: vec![],
        },
        ok[1].clone(),
    ];
    assert!(validate_seed(".env", &file_root).is_err());
    assert!(validate_seed("../x", &ok).is_err());
}
