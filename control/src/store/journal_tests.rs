use super::*;
use crate::model::Kind;
use crate::store::changelog::LogRead;

fn key(kind: Kind, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(kind, namespace, name)
}

fn journal_bytes(dir: &StateDir) -> Vec<u8> {
    fs::read(path_of(dir)).unwrap()
}

/// Makes the journal look as if written in another boot (the machine went down since).
fn from_another_boot(dir: &StateDir) {
    let bytes = journal_bytes(dir);
    let body = &bytes[bytes.iter().position(|&b| b == b'\n').unwrap() + 1..];
    let mut rewritten = format!("{HEADER_PREFIX}an-earlier-boot\n").into_bytes();
    rewritten.extend_from_slice(body);
    fs::write(path_of(dir), rewritten).unwrap();
}

#[test]
fn records_round_trip_with_bytes_holding_newlines() {
    let web = key(Kind::Service, "default", "web");
    let node = key(Kind::Node, "", "n1");
    let mut bytes = format!("{HEADER_PREFIX}b\n").into_bytes();
    bytes.extend(encode(
        7,
        &[
            (web.clone(), Some(b"{\n\"a\": 1\n}".to_vec())),
            (node.clone(), None),
        ],
    ));
    bytes.extend(encode(8, &[]));
    let parsed = parse(Path::new("j"), &bytes);
    assert_eq!(parsed.damage, None);
    assert_eq!(parsed.boot.as_deref(), Some("b"));
    assert_eq!(
        parsed.records,
        vec![
            Record {
                generation: 7,
                objects: vec![(web, Some(b"{\n\"a\": 1\n}".to_vec())), (node, None)],
            },
            Record {
                generation: 8,
                objects: vec![],
            },
        ]
    );
}

#[test]
fn a_torn_or_damaged_record_is_named_and_the_records_before_it_kept() {
    let web = key(Kind::Service, "default", "web");
    let mut bytes = format!("{HEADER_PREFIX}b\n").into_bytes();
    bytes.extend(encode(3, &[(web.clone(), Some(b"{}".to_vec()))]));
    let whole = bytes.len();
    let next = encode(4, &[(web.clone(), Some(b"{\"x\":1}".to_vec()))]);
    bytes.extend_from_slice(&next[..next.len() - 3]);
    let parsed = parse(Path::new("j"), &bytes);
    assert_eq!(parsed.records.len(), 1);
    assert_eq!(
        parsed.damage,
        Some(JournalError::TornRecord {
            path: PathBuf::from("j"),
            offset: whole,
            generation: 4,
        })
    );
    let mut bytes = bytes[..whole].to_vec();
    bytes.extend_from_slice(b"commit\t4\nbogus line\n");
    let parsed = parse(Path::new("j"), &bytes);
    assert_eq!(parsed.records.len(), 1);
    assert!(
        matches!(&parsed.damage, Some(JournalError::Malformed { line, .. }) if line == "bogus line"),
        "{:?}",
        parsed.damage
    );
    let parsed = parse(Path::new("j"), b"not a journal\n");
    assert_eq!(
        parsed.damage,
        Some(JournalError::BadHeader {
            path: PathBuf::from("j")
        })
    );
}

#[test]
fn a_commit_is_journaled_and_its_files_and_generation_written() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::new(root.path());
    let web = key(Kind::Service, "default", "web");
    let lock = dir.lock_exclusive().unwrap();
    dir.write_commit(1, &[(web.clone(), Some(b"{\"v\":1}".to_vec()))])
        .unwrap();
    drop(lock);
    assert_eq!(dir.read_generation().unwrap(), 1);
    assert_eq!(fs::read(dir.object_path(&web)).unwrap(), b"{\"v\":1}");
    let parsed = parse(&path_of(&dir), &journal_bytes(&dir));
    assert_eq!(parsed.damage, None);
    assert_eq!(parsed.records.len(), 1);
    // Taking the lock again in the same boot replays nothing.
    let _lock = dir.lock_exclusive().unwrap();
    assert_eq!(recover(&dir).unwrap(), Recovered::default());
}

#[test]
fn after_a_reboot_the_journal_is_replayed_and_the_change_log_restarted() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::new(root.path());
    let web = key(Kind::Service, "default", "web");
    let old = key(Kind::Service, "default", "old");
    {
        let _lock = dir.lock_exclusive().unwrap();
        dir.write_commit(1, &[(old.clone(), Some(b"{\"old\":1}".to_vec()))])
            .unwrap();
        dir.write_commit(2, &[(web.clone(), Some(b"{\"v\":1}".to_vec()))])
            .unwrap();
        dir.write_commit(
            3,
            &[
                (web.clone(), Some(b"{\"v\":2}".to_vec())),
                (old.clone(), None),
            ],
        )
        .unwrap();
    }
    // The crash lost the unsynced file contents and the last generation.
    fs::write(dir.object_path(&web), b"").unwrap();
    fs::write(dir.object_path(&old), b"{\"old\":1}").unwrap();
    fs::write(dir.generation_path(), b"1\n").unwrap();
    from_another_boot(&dir);
    let _lock = dir.lock(true).unwrap();
    let recovered = recover(&dir).unwrap();
    assert_eq!(recovered.replayed, vec![1, 2, 3]);
    assert_eq!(fs::read(dir.object_path(&web)).unwrap(), b"{\"v\":2}");
    assert!(!dir.object_path(&old).exists());
    assert_eq!(dir.read_generation().unwrap(), 3);
    // Readers behind the replay load the directory once; the journal starts afresh.
    assert_eq!(
        dir.change_log().read_since(1, 3, None).unwrap(),
        LogRead::Behind { from: Some(3) }
    );
    assert!(
        parse(&path_of(&dir), &journal_bytes(&dir))
            .records
            .is_empty()
    );
}

#[test]
fn a_commit_interrupted_after_its_record_was_synced_is_finished() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::new(root.path());
    let web = key(Kind::Service, "default", "web");
    {
        let _lock = dir.lock_exclusive().unwrap();
        dir.write_commit(1, &[]).unwrap();
        // The writer died after syncing generation 2's record.
        append(
            &dir,
            &encode(2, &[(web.clone(), Some(b"{\"v\":1}".to_vec()))]),
        )
        .unwrap();
    }
    assert_eq!(dir.read_generation().unwrap(), 1);
    drop(dir.lock_exclusive().unwrap());
    assert_eq!(dir.read_generation().unwrap(), 2);
    assert_eq!(fs::read(dir.object_path(&web)).unwrap(), b"{\"v\":1}");
    match dir.change_log().read_since(1, 2, None).unwrap() {
        LogRead::Changes(keys, _) => assert_eq!(keys, vec![web]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_torn_tail_is_cut_off_and_the_next_commit_follows_the_whole_records() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::new(root.path());
    let web = key(Kind::Service, "default", "web");
    {
        let _lock = dir.lock_exclusive().unwrap();
        dir.write_commit(1, &[(web.clone(), Some(b"{\"v\":1}".to_vec()))])
            .unwrap();
    }
    let mut file = OpenOptions::new().append(true).open(path_of(&dir)).unwrap();
    file.write_all(b"commit\t2\nput 40 2\tservices\tdefault\tweb\n{\"v\"")
        .unwrap();
    drop(file);
    let lock = dir.lock(true).unwrap();
    let recovered = recover(&dir).unwrap();
    assert!(
        matches!(
            recovered.damage,
            Some(JournalError::TornRecord { generation: 2, .. })
        ),
        "{recovered:?}"
    );
    assert!(recovered.replayed.is_empty());
    assert_eq!(fs::read(dir.object_path(&web)).unwrap(), b"{\"v\":1}");
    dir.write_commit(2, &[(web.clone(), Some(b"{\"v\":2}".to_vec()))])
        .unwrap();
    drop(lock);
    let parsed = parse(&path_of(&dir), &journal_bytes(&dir));
    assert_eq!(parsed.damage, None);
    assert_eq!(parsed.records.len(), 1);
    assert_eq!(parsed.records[0].generation, 2);
}

#[test]
fn a_journal_past_its_bound_is_started_afresh() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::new(root.path());
    let big = key(Kind::Service, "default", "big");
    let small = key(Kind::Service, "default", "small");
    let _lock = dir.lock_exclusive().unwrap();
    let bytes = vec![b'x'; MAX_JOURNAL_BYTES as usize + 1];
    dir.write_commit(1, &[(big.clone(), Some(bytes))]).unwrap();
    assert!(fs::metadata(path_of(&dir)).unwrap().len() > MAX_JOURNAL_BYTES);
    dir.write_commit(2, &[(small, Some(b"{}".to_vec()))])
        .unwrap();
    let parsed = parse(&path_of(&dir), &journal_bytes(&dir));
    assert_eq!(parsed.records.len(), 1);
    assert_eq!(parsed.records[0].generation, 2);
    assert_eq!(
        fs::metadata(dir.object_path(&big)).unwrap().len(),
        MAX_JOURNAL_BYTES + 1
    );
    // The sealed journal goes once the checkpoint thread has synced the file system.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sealed_segments(root.path()).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sealed journal was never checkpointed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn after_a_reboot_sealed_journals_are_replayed_before_the_active_one() {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::new(root.path());
    let web = key(Kind::Service, "default", "web");
    {
        let _lock = dir.lock_exclusive().unwrap();
        dir.write_commit(1, &[(web.clone(), Some(b"{\"v\":1}".to_vec()))])
            .unwrap();
    }
    // Seal it by hand (as a commit past the bound does) and journal one more commit.
    from_another_boot(&dir);
    let sealed = root.path().join(format!("{SEALED_PREFIX}{:020}", 1));
    fs::rename(path_of(&dir), sealed).unwrap();
    let mut active = format!("{HEADER_PREFIX}an-earlier-boot\n").into_bytes();
    active.extend(encode(2, &[(web.clone(), Some(b"{\"v\":2}".to_vec()))]));
    fs::write(path_of(&dir), active).unwrap();
    fs::write(dir.object_path(&web), b"").unwrap();
    fs::write(dir.generation_path(), b"0\n").unwrap();
    let _lock = dir.lock(true).unwrap();
    let recovered = recover(&dir).unwrap();
    assert_eq!(recovered.replayed, vec![1, 2]);
    assert_eq!(fs::read(dir.object_path(&web)).unwrap(), b"{\"v\":2}");
    assert_eq!(dir.read_generation().unwrap(), 2);
    assert!(sealed_segments(root.path()).unwrap().is_empty());
}
