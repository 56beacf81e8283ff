//! Adoption of a table a previous process left, cleanly stopped or killed at any instruction:
//! locks it held are released, what it left half-written is repaired, every whole flow stays.
//! The damage a dead writer leaves is made by hand here: a forgotten guard keeps its buckets
//! locked, and raw word writes stop a write between its words and its tag.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::tests::{SYN, SYN_ACK, VIP, created, dnat, state_of, table};
use super::*;
use crate::flow::L4Proto;
use crate::io::shm::{Origin, SharedFile};
use crate::tables::flowmap::{Key, SlotId};

/// Flowmap geometry for 4 value words: an 8-word header, buckets of a version word, two tag
/// words, a reserved word and 16 slots of 6 words (see `flowmap`'s module doc).
const HEADER_WORDS: usize = 8;
const BUCKET_HEADER_WORDS: usize = 4;
const BUCKET_WORDS: usize = BUCKET_HEADER_WORDS + 16 * 6;

fn config(capacity: usize) -> ConntrackConfig {
    ConntrackConfig {
        capacity,
        ..ConntrackConfig::default()
    }
}

fn version(ct: &Conntrack, bucket: usize) -> u64 {
    ct.words()[HEADER_WORDS + bucket * BUCKET_WORDS].load(Ordering::Relaxed)
}

fn lane(slot: SlotId) -> usize {
    slot.raw() as usize % SLOTS_PER_BUCKET
}

/// The words of the record at `slot`: key (2), head, ids, translation (2).
fn record_words(ct: &Conntrack, slot: SlotId) -> &[AtomicU64] {
    let start = HEADER_WORDS + slot.bucket() * BUCKET_WORDS + BUCKET_HEADER_WORDS + lane(slot) * 6;
    &ct.words()[start..start + 6]
}

fn clear_tag(ct: &Conntrack, slot: SlotId) {
    let tags = &ct.words()[HEADER_WORDS + slot.bucket() * BUCKET_WORDS + 1 + lane(slot) / 8];
    tags.fetch_and(!(0xff << ((lane(slot) % 8) * 8)), Ordering::Relaxed);
}

fn flows(n: u16) -> Vec<NewFlow> {
    (0..n).map(|i| dnat(L4Proto::Udp, i, 1, 0)).collect()
}

fn keys(flow: &NewFlow) -> [Key; 2] {
    [flow.original.to_words(), flow.reply.to_words()]
}

/// The distinct candidate buckets of a flow's two keys.
fn buckets_of(ct: &Conntrack, flow: &NewFlow) -> Vec<usize> {
    let mut buckets: Vec<usize> = keys(flow)
        .iter()
        .flat_map(|k| ct.map.candidate_buckets(k))
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    buckets
}

#[test]
fn adopted_table_keeps_flows_and_translations() {
    let ct = table(1000);
    let flows: Vec<NewFlow> = (0..800).map(|i| dnat(L4Proto::Tcp, i, 1, SYN)).collect();
    let hits: Vec<Hit> = flows.iter().map(|f| created(ct.insert(f, 7))).collect();
    let per_flow = ct.bytes_per_flow();
    let adopted = Conntrack::adopt(ct.into_words(), config(1000)).unwrap();
    assert_eq!(adopted.len(), 800);
    assert_eq!(adopted.repaired_buckets(), 0);
    assert_eq!(adopted.bytes_per_flow(), per_flow);
    for (flow, hit) in flows.iter().zip(&hits) {
        assert_eq!(adopted.lookup(&flow.original, 8), Some(*hit));
        assert_eq!(
            adopted.lookup(&flow.reply, 8).map(|h| h.xlate.src),
            Some(VIP)
        );
    }
    let reply = adopted.lookup(&flows[0].reply, 8).unwrap();
    assert_eq!(adopted.on_packet(&reply, SYN_ACK, 8), Track::Ok);
    assert_eq!(
        state_of(&adopted, &flows[0].original, 8),
        Some(FlowState::SynRecv)
    );
    let too_big = config(100_000);
    let refused = Conntrack::adopt(adopted.into_words(), too_big).err();
    assert!(matches!(refused, Some(LayoutError::TooSmall { .. })));
}

#[test]
fn a_writer_killed_holding_its_locks_costs_no_flow() {
    let ct = table(1000);
    let flows = flows(600);
    for flow in &flows {
        created(ct.insert(flow, 7));
    }
    let held = buckets_of(&ct, &flows[0]);
    std::mem::forget(ct.map.lock(&keys(&flows[0])));
    assert!(held.iter().all(|&b| version(&ct, b) % 2 == 1));
    let adopted = Conntrack::adopt(ct.into_words(), config(1000)).unwrap();
    assert_eq!(adopted.repaired_buckets(), held.len());
    assert!(
        held.iter().all(|&b| version(&adopted, b).is_multiple_of(2)),
        "the lock bits are released"
    );
    assert_eq!(adopted.len(), 600);
    for flow in &flows {
        assert!(adopted.lookup(&flow.original, 8).is_some());
        assert!(adopted.lookup(&flow.reply, 8).is_some());
    }
    // Writers take those buckets again.
    let hit = adopted.lookup(&flows[0].original, 8).unwrap();
    assert!(adopted.remove(&hit));
    assert_eq!(adopted.len(), 599);
    assert!(adopted.lookup(&flows[0].reply, 8).is_none());
}

/// Builds 600 flows, lets `damage` tear the first one's insert (its buckets locked by a dead
/// writer), adopts, and checks that exactly that flow is gone, records and all.
fn only_the_torn_flow_is_lost(damage: impl Fn(&Conntrack, SlotId)) {
    let ct = table(1000);
    let flows = flows(600);
    let hits: Vec<Hit> = flows.iter().map(|f| created(ct.insert(f, 7))).collect();
    let original = ct.map.slot(hits[0].entry.slot).unwrap();
    std::mem::forget(ct.map.lock(&keys(&flows[0])));
    damage(&ct, original);
    let adopted = Conntrack::adopt(ct.into_words(), config(1000)).unwrap();
    assert!(adopted.repaired_buckets() >= 1);
    assert_eq!(adopted.len(), 599);
    assert_eq!(adopted.lookup(&flows[0].original, 8), None);
    assert_eq!(adopted.lookup(&flows[0].reply, 8), None);
    assert_eq!(
        adopted.map.get(&flows[0].reply.to_words()),
        None,
        "the orphaned reply record is cleared"
    );
    assert!(
        record_words(&adopted, original)
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0),
        "the half-written original slot is zeroed"
    );
    for (flow, hit) in flows.iter().zip(&hits).skip(1) {
        assert_eq!(adopted.lookup(&flow.original, 8), Some(*hit));
        assert!(adopted.lookup(&flow.reply, 8).is_some());
    }
    // The tuple can be tracked again.
    created(adopted.insert(&flows[0], 9));
    assert_eq!(adopted.len(), 600);
}

#[test]
fn an_insert_killed_before_its_original_record_loses_only_that_flow() {
    // The reply record was written; the original slot still holds what it held before.
    only_the_torn_flow_is_lost(|ct, original| {
        clear_tag(ct, original);
        record_words(ct, original)[2].store(0, Ordering::Relaxed);
    });
}

#[test]
fn an_insert_killed_before_its_original_tag_loses_only_that_flow() {
    // The original record's words, its live head included, are there; its tag is not.
    only_the_torn_flow_is_lost(clear_tag);
}

#[test]
fn a_flow_killed_but_not_purged_is_cleared_at_adoption() {
    let ct = table(1000);
    let flows = flows(10);
    let hits: Vec<Hit> = flows.iter().map(|f| created(ct.insert(f, 7))).collect();
    let slot = ct.map.slot(hits[3].entry.slot).unwrap();
    assert!(matches!(
        ct.kill(slot, hits[3].entry.generation, |_| true),
        super::lifecycle::Kill::Killed(_)
    ));
    let adopted = Conntrack::adopt(ct.into_words(), config(1000)).unwrap();
    assert_eq!(adopted.len(), 9);
    for key in keys(&flows[3]) {
        assert_eq!(adopted.map.get(&key), None, "both records are cleared");
    }
}

/// A path in the temporary directory, removed when dropped.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_table_in_a_shared_file_survives_its_process_dying_mid_write() {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = TempPath(std::env::temp_dir().join(format!("fp-ct-shm-{}-{n}", std::process::id())));
    let open = |cfg: ConntrackConfig| {
        SharedFile::lock(&path.0)
            .unwrap()
            .map("conntrack", Conntrack::storage_words(&cfg), |words| {
                Conntrack::check_adoptable(words, &cfg)
            })
            .unwrap()
    };
    let (words, origin) = open(config(1000));
    assert_eq!(origin, Origin::Created);
    let ct = Conntrack::new_in(words, config(1000)).unwrap();
    let flows = flows(300);
    for flow in &flows {
        created(ct.insert(flow, 7));
    }
    // The process dies inside a write: its locks stay taken and nothing is handed off.
    std::mem::forget(ct.map.lock(&keys(&flows[0])));
    drop(ct);
    let (words, origin) = open(config(1000));
    assert_eq!(origin, Origin::Adopted);
    let adopted = Conntrack::adopt(words, config(1000)).unwrap();
    assert!(adopted.repaired_buckets() >= 1);
    assert_eq!(adopted.len(), 300);
    for flow in &flows {
        assert!(adopted.lookup(&flow.original, 8).is_some());
        assert!(adopted.lookup(&flow.reply, 8).is_some());
    }
    drop(adopted);
    // A configuration the table cannot hold gets a fresh table, and says why.
    let (words, origin) = open(config(100_000));
    let Origin::Replaced(why) = origin else {
        panic!("a too small table was adopted")
    };
    assert!(why.contains("slots") && why.contains("needed"), "{why}");
    let fresh = Conntrack::new_in(words, config(100_000)).unwrap();
    assert!(fresh.is_empty());
    assert_eq!(fresh.lookup(&flows[0].original, 8), None);
}
