//! Shared table files: fresh, adopted, refused for the right reasons, and locked.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::*;

/// A path of its own in the temporary directory, removed when dropped.
pub(super) struct TempPath(pub(super) PathBuf);

impl TempPath {
    pub(super) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!("fp-shm-{}-{n}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn accept(_: &[AtomicU64]) -> Result<(), String> {
    Ok(())
}

fn map(path: &TempPath, kind: &str, len: usize) -> (Words, Origin) {
    SharedFile::lock(&path.0)
        .unwrap()
        .map(kind, len, accept)
        .unwrap()
}

#[test]
fn a_table_written_through_the_mapping_is_adopted_by_the_next_mapping() {
    let path = TempPath::new();
    let (words, origin) = map(&path, "conntrack", 100);
    assert_eq!(origin, Origin::Created);
    assert!(words.is_shared());
    assert_eq!(words.len(), 100);
    assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    words[3].store(0xfeed, Ordering::Relaxed);
    words[99].store(7, Ordering::Relaxed);
    drop(words);
    // The bytes are in the file: header, then the table in native order.
    let bytes = fs::read(&path.0).unwrap();
    assert_eq!(bytes.len(), 64 + 800);
    assert_eq!(&bytes[..8], &u64::from_be_bytes(*b"FPSHARE1").to_ne_bytes());
    assert_eq!(&bytes[8..17], b"conntrack");
    assert_eq!(&bytes[64 + 24..64 + 32], &0xfeed_u64.to_ne_bytes());
    let (words, origin) = map(&path, "conntrack", 100);
    assert_eq!(origin, Origin::Adopted);
    assert_eq!(words[3].load(Ordering::Relaxed), 0xfeed);
    assert_eq!(words[99].load(Ordering::Relaxed), 7);
}

#[test]
fn a_file_that_does_not_fit_is_formatted_afresh_with_the_reason() {
    let path = TempPath::new();
    let (words, _) = map(&path, "conntrack", 50);
    words[0].store(1, Ordering::Relaxed);
    drop(words);
    let (words, origin) = map(&path, "affinity", 50);
    assert_eq!(
        origin,
        Origin::Replaced("it holds another kind of table".to_owned())
    );
    assert_eq!(words[0].load(Ordering::Relaxed), 0, "formatted, not reused");
    words[0].store(1, Ordering::Relaxed);
    drop(words);
    let refuse = |table: &[AtomicU64]| Err(format!("{} words are too few", table.len()));
    let (words, origin) = SharedFile::lock(&path.0)
        .unwrap()
        .map("affinity", 80, refuse)
        .unwrap();
    assert_eq!(origin, Origin::Replaced("50 words are too few".to_owned()));
    assert_eq!(words.len(), 80);
    assert_eq!(words[0].load(Ordering::Relaxed), 0);
    drop(words);
    // Another boot wrote it: the times in it mean nothing now.
    let mut file = fs::OpenOptions::new().write(true).open(&path.0).unwrap();
    file.seek(SeekFrom::Start(24)).unwrap();
    file.write_all(&[0x5a; 16]).unwrap();
    drop(file);
    let (_, origin) = map(&path, "affinity", 80);
    assert_eq!(
        origin,
        Origin::Replaced("it was written before the last reboot".to_owned())
    );
    // A foreign or cut file.
    fs::write(&path.0, [1u8; 200]).unwrap();
    let (words, origin) = map(&path, "affinity", 80);
    assert_eq!(
        origin,
        Origin::Replaced("not a ferroplane table file".to_owned())
    );
    assert_eq!(words.len(), 80);
    drop(words);
    fs::write(&path.0, [1u8; 13]).unwrap();
    assert_eq!(
        map(&path, "affinity", 80).1,
        Origin::Replaced("13 bytes is not a table file".to_owned())
    );
}

#[test]
fn a_second_writer_is_refused_while_the_words_live() {
    let path = TempPath::new();
    let (words, _) = map(&path, "conntrack", 10);
    let asked = std::time::Instant::now();
    let refused = SharedFile::lock(&path.0).unwrap_err();
    assert!(asked.elapsed() >= LOCK_WAIT, "refused only after waiting");
    assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
    assert!(
        refused.to_string().contains(&path.0.display().to_string()),
        "{refused}"
    );
    // A holder that lets go within the wait (a predecessor exiting) is waited for.
    let holder = std::thread::spawn(move || {
        std::thread::sleep(LOCK_WAIT / 4);
        drop(words);
    });
    assert!(
        SharedFile::lock(&path.0).is_ok(),
        "the lock went with the words"
    );
    holder.join().unwrap();
}

#[test]
fn kinds_and_boot_ids_are_checked() {
    assert!(kind_words("").is_err());
    assert!(kind_words("seventeen-bytes-x").is_err());
    assert!(kind_words("a\0b").is_err());
    assert_ne!(
        kind_words("conntrack").unwrap(),
        kind_words("affinity").unwrap()
    );
    let boot = boot_id();
    assert_ne!(boot, [0, 0], "this kernel has a boot id");
    assert_eq!(boot, boot_id());
}

#[test]
fn a_fresh_file_has_its_pages_allocated_before_it_is_mapped() {
    use std::os::unix::fs::MetadataExt;
    let path = TempPath::new();
    // 1 MiB of table: untouched through the mapping, so only the reservation allocates it.
    let (words, _) = map(&path, "conntrack", 1 << 17);
    let meta = fs::metadata(&path.0).unwrap();
    assert!(
        meta.blocks() * 512 >= meta.len(),
        "{} bytes allocated of {}: a sparse file would fault on a full disk",
        meta.blocks() * 512,
        meta.len()
    );
    drop(words);
}
