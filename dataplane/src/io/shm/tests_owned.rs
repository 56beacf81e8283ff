//! Table files an attacker prepared at the path: symbolic links, files of another user or
//! open to others are replaced, never followed or used.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::tests::TempPath;
use super::*;

fn replaced_reason(path: &TempPath) -> String {
    let (_words, origin) = SharedFile::lock(&path.0)
        .unwrap()
        .map("test", 16, |_: &[AtomicU64]| Ok::<(), String>(()))
        .unwrap();
    match origin {
        Origin::Replaced(why) => why,
        other => panic!("{other:?}"),
    }
}

/// The path now holds a new regular file of ours, mode 0600, with one name.
fn assert_fresh_private_file(path: &TempPath) {
    let meta = fs::symlink_metadata(&path.0).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), fs::metadata("/proc/self").unwrap().uid());
    assert_eq!(meta.nlink(), 1);
}

#[test]
fn a_symbolic_link_is_replaced_never_followed() {
    let path = TempPath::new();
    let target = TempPath::new();
    fs::write(&target.0, b"precious").unwrap();
    std::os::unix::fs::symlink(&target.0, &path.0).unwrap();
    let why = replaced_reason(&path);
    assert!(why.contains("symbolic link"), "{why}");
    assert_eq!(
        fs::read(&target.0).unwrap(),
        b"precious",
        "the target was written"
    );
    assert_fresh_private_file(&path);
}

#[test]
fn a_file_of_another_user_is_replaced_and_its_holder_keeps_only_the_old_one() {
    assert_eq!(
        fs::metadata("/proc/self").unwrap().uid(),
        0,
        "this test needs root: it makes a file owned by the user nobody (uid 65534)"
    );
    let path = TempPath::new();
    fs::write(&path.0, b"planted").unwrap();
    fs::set_permissions(&path.0, fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&path.0, Some(65534), Some(65534)).unwrap();
    // What the planter keeps open: after the replacement it is a file with no name, which
    // the node never maps.
    let planted = fs::File::open(&path.0).unwrap();
    let why = replaced_reason(&path);
    assert!(why.contains("owned by uid 65534"), "{why}");
    assert_eq!(planted.metadata().unwrap().nlink(), 0);
    assert_eq!(
        fs::read(format!("/proc/self/fd/{}", planted.as_raw_fd())).unwrap(),
        b"planted"
    );
    assert_fresh_private_file(&path);
}

#[test]
fn a_file_others_may_open_or_with_another_name_is_replaced() {
    let path = TempPath::new();
    fs::write(&path.0, b"x").unwrap();
    fs::set_permissions(&path.0, fs::Permissions::from_mode(0o644)).unwrap();
    let why = replaced_reason(&path);
    assert!(why.contains("mode 0644"), "{why}");
    assert_fresh_private_file(&path);

    let other_name = TempPath::new();
    fs::hard_link(&path.0, &other_name.0).unwrap();
    let why = replaced_reason(&path);
    assert!(why.contains("2 names"), "{why}");
    assert_fresh_private_file(&path);
}

#[test]
fn a_directory_at_the_path_is_an_error_naming_it() {
    let path = TempPath::new();
    fs::create_dir(&path.0).unwrap();
    let error = SharedFile::lock(&path.0).unwrap_err().to_string();
    fs::remove_dir(&path.0).unwrap();
    assert!(error.contains("is a directory"), "{error}");
    assert!(error.contains(&path.0.display().to_string()), "{error}");
}
