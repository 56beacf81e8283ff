use super::*;
use crate::model::Kind;

fn key(kind: Kind, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(kind, namespace, name)
}

fn changes(read: LogRead) -> (Vec<ObjectRef>, LogCursor) {
    match read {
        LogRead::Changes(keys, cursor) => (keys, cursor),
        LogRead::Behind { from } => panic!("behind (from {from:?})"),
    }
}

#[test]
fn appended_generations_are_read_back_from_any_point() {
    let dir = tempfile::tempdir().unwrap();
    let log = ChangeLog::new(dir.path());
    let web = key(Kind::Service, "default", "web");
    let node = key(Kind::Node, "", "n1");
    log.append(4, 5, std::slice::from_ref(&web)).unwrap();
    log.append(5, 6, &[node.clone(), web.clone()]).unwrap();
    let (keys, cursor) = changes(log.read_since(4, 6, None).unwrap());
    assert_eq!(keys, vec![web.clone(), node.clone()]);
    let (keys, _) = changes(log.read_since(5, 6, None).unwrap());
    assert_eq!(keys, vec![node.clone(), web.clone()]);
    // Continuing from the cursor reads only what came after it.
    let slice = key(Kind::EndpointSlice, "default", "web-1");
    log.append(6, 7, std::slice::from_ref(&slice)).unwrap();
    let (keys, _) = changes(log.read_since(6, 7, Some(&cursor)).unwrap());
    assert_eq!(keys, vec![slice]);
    // A reader older than the log's start loads everything.
    assert_eq!(
        log.read_since(3, 7, None).unwrap(),
        LogRead::Behind { from: Some(4) }
    );
}

#[test]
fn a_missing_log_sends_the_reader_to_a_full_load() {
    let dir = tempfile::tempdir().unwrap();
    let log = ChangeLog::new(dir.path());
    assert_eq!(
        log.read_since(1, 2, None).unwrap(),
        LogRead::Behind { from: None }
    );
}

#[test]
fn damaged_logs_give_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = ChangeLog::new(dir.path());
    let web = key(Kind::Service, "default", "web");
    log.append(1, 2, std::slice::from_ref(&web)).unwrap();
    // Entries missing for the state's generation.
    assert!(matches!(
        log.read_since(1, 3, None),
        Err(ChangeLogError::Truncated {
            ends_at: 2,
            generation: 3,
            ..
        })
    ));
    // A torn last line.
    let mut text = fs::read_to_string(log.path()).unwrap();
    text.push_str("3\tservices\tdefault\tw");
    fs::write(log.path(), &text).unwrap();
    let error = log.read_since(1, 3, None).unwrap_err();
    assert!(matches!(error, ChangeLogError::TornLine { .. }), "{error}");
    // A line that is not an entry.
    fs::write(
        log.path(),
        "ferroplane-changes v1 from 1\n2\tgadgets\tdefault\tweb\n",
    )
    .unwrap();
    let error = log.read_since(1, 2, None).unwrap_err();
    assert!(error.to_string().contains("\"2\\tgadgets"), "{error}");
    // Generations going backwards.
    fs::write(
        log.path(),
        "ferroplane-changes v1 from 1\n3\tnodes\t\tn1\n2\tnodes\t\tn2\n",
    )
    .unwrap();
    assert!(matches!(
        log.read_since(1, 3, None),
        Err(ChangeLogError::OutOfOrder {
            generation: 2,
            after: 3,
            ..
        })
    ));
    fs::write(log.path(), "garbage\n").unwrap();
    assert!(matches!(
        log.read_since(1, 3, None),
        Err(ChangeLogError::BadHeader { .. })
    ));
}

#[test]
fn the_writer_restarts_a_damaged_log_instead_of_extending_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = ChangeLog::new(dir.path());
    let web = key(Kind::Service, "default", "web");
    log.append(1, 2, std::slice::from_ref(&web)).unwrap();
    let mut text = fs::read_to_string(log.path()).unwrap();
    text.push_str("3\tservi");
    fs::write(log.path(), &text).unwrap();
    log.append(2, 3, std::slice::from_ref(&web)).unwrap();
    // Generation 2 is no longer claimed: a reader at 1 loads everything.
    assert_eq!(
        log.read_since(1, 3, None).unwrap(),
        LogRead::Behind { from: Some(2) }
    );
    let (keys, _) = changes(log.read_since(2, 3, None).unwrap());
    assert_eq!(keys, vec![web.clone()]);
    // A generation written without the log (an older binary) restarts it too.
    log.append(5, 6, std::slice::from_ref(&web)).unwrap();
    assert_eq!(
        log.read_since(3, 6, None).unwrap(),
        LogRead::Behind { from: Some(5) }
    );
}

#[test]
fn the_log_stays_bounded_and_keeps_the_newest_whole_generations() {
    let dir = tempfile::tempdir().unwrap();
    let log = ChangeLog::new(dir.path());
    let keys: Vec<ObjectRef> = (0..100)
        .map(|i| key(Kind::EndpointSlice, "default", &format!("slice-{i:04}")))
        .collect();
    let mut generation = 0;
    while fs::metadata(log.path()).map_or(0, |m| m.len()) <= MAX_LOG_BYTES {
        log.append(generation, generation + 1, &keys).unwrap();
        generation += 1;
    }
    log.append(generation, generation + 1, &keys).unwrap();
    generation += 1;
    let size = fs::metadata(log.path()).unwrap().len();
    assert!(size < MAX_LOG_BYTES / 2, "compacted to {size} bytes");
    let LogRead::Behind { from: Some(from) } = log.read_since(1, generation, None).unwrap() else {
        panic!("an old reader must load everything");
    };
    assert!(from > 1 && from < generation);
    let (read, _) = changes(log.read_since(from, generation, None).unwrap());
    assert_eq!(read, keys);
}
