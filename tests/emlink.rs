//! A blob shared by more paths than the file system allows links per inode (ext4:
//! 65,000): the target must start a second copy of the object, not fail.
//!
//! Both targets: the links are hoarded on the store's disk directly (the server is this
//! machine). Over SFTP `EMLINK` arrives as a generic failure; the SSH target then
//! reads the object's link count from the directory listing (crates/ssh/README.md).

use std::ffi::CString;

use crate::util::{assert_linked_from_objects, assert_same_tree, blobs, Env};

fn emlink_starts_a_second_copy_of_the_object(env: Env) {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("logo.svg"), "<svg/>").unwrap();
    env.push(&src, &["--release", "r1"]);

    let (key, _) = blobs(&src).into_iter().next().unwrap();
    let object = env.root.join("objects").join(&key[..2]).join(&key[2..]);
    let c = CString::new(object.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    let link_max = unsafe { libc::pathconf(c.as_ptr(), libc::_PC_LINK_MAX) };
    assert!(
        (1000..=1_000_000).contains(&link_max),
        "cannot exercise EMLINK here: the file system allows {link_max} links per inode"
    );
    // Use up the links of the object from outside the store (same file system).
    let hoard = env.path("hoard");
    std::fs::create_dir(&hoard).unwrap();
    let have = std::fs::metadata(&object)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.nlink() as i64
        })
        .unwrap();
    for i in 0..(link_max - have - 5) {
        std::fs::hard_link(&object, hoard.join(i.to_string())).unwrap();
    }
    for i in 0..40 {
        std::fs::write(src.join(format!("logo-{i}.svg")), "<svg/>").unwrap();
    }
    let r = env.push(&src, &["--release", "r2"]);
    assert!(r["object_copies"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["objects_uploaded"], 0);
    assert_same_tree(&src, &env.root.join("current"));
    assert_linked_from_objects(&env.root, &env.root.join("current"));
    // The next push reuses the copy instead of failing again.
    std::fs::write(src.join("logo-extra.svg"), "<svg/>").unwrap();
    let r = env.push(&src, &["--release", "r3"]);
    assert_eq!(r["object_copies"], 0, "{r}");
    assert_same_tree(&src, &env.root.join("current"));
    std::fs::remove_dir_all(&hoard).unwrap();
}

conformance!(emlink_starts_a_second_copy_of_the_object,);
