//! FlowMap tests: placement, guards, adoption from words, and torn reads under a live writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::*;

fn insert<const V: usize>(map: &FlowMap<V>, key: Key, value: [u64; V]) -> Option<SlotId> {
    let mut locked = map.lock(&[key]);
    let slot = locked.vacancy(&key, None, |_, _, _| false)?;
    locked.write(slot, key, value);
    Some(slot)
}

fn key(n: u64) -> Key {
    [n.wrapping_mul(0x9e37_79b9_7f4a_7c15), n]
}

#[test]
fn get_finds_what_was_written_and_not_other_keys() {
    let map = FlowMap::<3>::with_capacity(64);
    let slot = insert(&map, key(1), [10, 11, 12]);
    assert!(slot.is_some());
    assert_eq!(map.get(&key(1)), slot.map(|s| (s, [10, 11, 12])));
    assert_eq!(map.get(&key(2)), None);
    let slot = slot.unwrap();
    assert!(map.candidate_buckets(&key(1)).contains(&slot.bucket()));
    assert_eq!(map.record(slot)[0].load(Ordering::Relaxed), key(1)[0]);
    assert_eq!(map.record(slot)[KEY_WORDS + 2].load(Ordering::Relaxed), 12);
}

#[test]
fn remove_if_obeys_its_predicate_and_keeps_value_words() {
    let map = FlowMap::<1>::with_capacity(64);
    let slot = insert(&map, key(5), [55]).unwrap();
    assert_eq!(map.remove_if(&key(5), |_, v| v[0] == 0), None);
    assert_eq!(
        map.remove_if(&key(5), |s, v| s == slot && v[0] == 55),
        Some([55])
    );
    assert_eq!(map.get(&key(5)), None);
    // Cleared, but the value word stays for the owner's generation counting.
    assert_eq!(map.record(slot)[KEY_WORDS].load(Ordering::Relaxed), 55);
}

#[test]
fn two_full_buckets_give_no_vacancy_and_upsert_evicts_the_oldest() {
    let map = FlowMap::<1>::with_capacity(2 * SLOTS_PER_BUCKET);
    assert_eq!(map.buckets(), 2);
    for n in 0..2 * SLOTS_PER_BUCKET as u64 {
        assert!(insert(&map, key(n), [100 + n]).is_some(), "slot {n} of 32");
    }
    let locked = map.lock(&[key(1000)]);
    assert_eq!(locked.vacancy(&key(1000), None, |_, _, _| false), None);
    // A reclaimable record is offered instead.
    let offered = locked.vacancy(&key(1000), None, |_, _, v| v[0] == 107);
    assert_eq!(offered.map(|s| locked.key(s)), Some(key(7)));
    drop(locked);
    let age = |v: &[u64; 1]| v[0] as u32;
    assert_eq!(
        map.upsert_evicting(key(1000), [500], age),
        Upsert::Evicted(key(0))
    );
    assert_eq!(map.upsert_evicting(key(1000), [501], age), Upsert::Replaced);
    assert_eq!(map.get(&key(1000)).map(|(_, v)| v), Some([501]));
    assert_eq!(map.get(&key(0)), None);
}

#[test]
fn an_untouched_lock_restores_the_version_and_a_write_bumps_it() {
    let map = FlowMap::<1>::with_capacity(16);
    let version = || map.bucket_words(0)[0].load(Ordering::Relaxed);
    drop(map.lock(&[key(1)]));
    assert_eq!(version(), 0);
    insert(&map, key(1), [1]);
    assert_eq!(version(), 2);
}

#[test]
#[should_panic(expected = "not held")]
fn writing_outside_the_held_buckets_is_refused() {
    let map = FlowMap::<1>::with_capacity(64 * SLOTS_PER_BUCKET);
    let [a, _] = map.candidate_buckets(&key(1));
    let other = (0..)
        .map(key)
        .find(|k| !map.candidate_buckets(k).contains(&a))
        .unwrap();
    let mut locked = map.lock(&[other]);
    locked.clear(SlotId::new(a, 0));
}

#[test]
fn from_words_adopts_a_live_table() {
    let map = FlowMap::<2>::with_capacity(1000);
    for n in 0..500 {
        insert(&map, key(n), [n, !n]).unwrap();
    }
    let adopted = FlowMap::<2>::from_words(map.into_words()).unwrap();
    assert_eq!(adopted.slots(), 1008);
    for n in 0..500 {
        assert_eq!(
            adopted.get(&key(n)).map(|(_, v)| v),
            Some([n, !n]),
            "key {n}"
        );
    }
    assert_eq!(adopted.get(&key(500)), None);
}

#[test]
fn from_words_refuses_foreign_layouts() {
    let words = || FlowMap::<2>::with_capacity(64).into_words();
    let with = |at: usize, value: u64| {
        let w = words();
        w[at].store(value, Ordering::Relaxed);
        FlowMap::<2>::from_words(w).err()
    };
    assert!(matches!(
        with(0, 7),
        Some(LayoutError::BadMagic { found: 7 })
    ));
    assert!(matches!(
        with(1, 99),
        Some(LayoutError::Version { found: 99 })
    ));
    assert!(matches!(
        with(3, 8),
        Some(LayoutError::SlotsPerBucket { found: 8 })
    ));
    assert!(matches!(
        with(4, 5),
        Some(LayoutError::Length { buckets: 5, .. })
    ));
    assert!(matches!(
        with(4, 0),
        Some(LayoutError::Length { buckets: 0, .. })
    ));
    assert!(matches!(
        FlowMap::<3>::from_words(words()).err(),
        Some(LayoutError::ValueWords {
            expected: 3,
            found: 2
        })
    ));
    let short: Box<[AtomicU64]> = (0..5).map(AtomicU64::new).collect();
    assert!(matches!(
        FlowMap::<2>::from_words(short.into()).err(),
        Some(LayoutError::TooShort { words: 5 })
    ));
}

#[test]
fn from_words_repairs_the_buckets_a_dead_writer_left_locked() {
    let map = FlowMap::<2>::with_capacity(64 * SLOTS_PER_BUCKET);
    for n in 0..200 {
        insert(&map, key(n), [n, !n]).unwrap();
    }
    let victim = map.get(&key(3)).unwrap().0.bucket();
    let torn = (0..200)
        .find(|&n| n != 3 && map.get(&key(n)).unwrap().0.bucket() == victim)
        .unwrap();
    let torn_lane = map.get(&key(torn)).unwrap().0.lane();
    // The writer died holding key 3's buckets (readers would wait from now on) ...
    std::mem::forget(map.lock(&[key(3)]));
    let words = map.bucket_words(victim);
    let tag_of = |lane: usize| lane_tag(load_tags(words), lane);
    // ... after it wrote the words of a new record into an empty lane but before its tag ...
    let empty = (0..SLOTS_PER_BUCKET).find(|&l| tag_of(l) == 0).unwrap();
    let newcomer = (1000..)
        .map(key)
        .find(|k| map.candidate_buckets(k).contains(&victim))
        .unwrap();
    let at = FlowMap::<2>::lane_offset(empty);
    for (i, word) in [newcomer[0], newcomer[1], 77, 78].into_iter().enumerate() {
        words[at + i].store(word, Ordering::Relaxed);
    }
    // ... and while it overwrote the key of another record, whose tag is now wrong.
    let at = FlowMap::<2>::lane_offset(torn_lane);
    let stranger = (2000..)
        .map(key)
        .find(|k| map.placement(k).tag != tag_of(torn_lane))
        .unwrap();
    words[at].store(stranger[0], Ordering::Relaxed);
    words[at + 1].store(stranger[1], Ordering::Relaxed);

    let adopted = FlowMap::<2>::from_words(map.into_words()).unwrap();
    assert_eq!(adopted.repaired_buckets(), 2, "both buckets of key 3");
    for bucket in adopted.candidate_buckets(&key(3)) {
        let version = adopted.bucket_words(bucket)[0].load(Ordering::Relaxed);
        assert_eq!(version % 2, 0, "bucket {bucket} is unlocked");
    }
    // Every whole record survives, those of the repaired buckets included.
    for n in (0..200).filter(|&n| n != torn) {
        assert_eq!(
            adopted.get(&key(n)).map(|(_, v)| v),
            Some([n, !n]),
            "key {n}"
        );
    }
    assert_eq!(adopted.get(&key(torn)), None);
    assert_eq!(adopted.get(&stranger), None);
    assert_eq!(adopted.get(&newcomer), None);
    // Emptied and never-finished lanes are zeroed, so no owner finds half a record there.
    for lane in [empty, torn_lane] {
        let at = FlowMap::<2>::lane_offset(lane);
        let words = &adopted.bucket_words(victim)[at..at + 4];
        assert!(
            words.iter().all(|w| w.load(Ordering::Relaxed) == 0),
            "lane {lane}"
        );
    }
    // The buckets take writers again.
    assert!(insert(&adopted, newcomer, [5, 6]).is_some());
    assert_eq!(adopted.get(&newcomer).map(|(_, v)| v), Some([5, 6]));
}

#[test]
fn with_capacity_in_takes_storage_of_exactly_its_size() {
    let words = FlowMap::<2>::storage_words(100);
    let dirty = crate::io::words::Words::zeroed(words);
    dirty[words - 1].store(9, Ordering::Relaxed);
    let map = FlowMap::<2>::with_capacity_in(100, dirty).unwrap();
    assert!(map.slots() >= 100);
    assert!(
        map.words()[8..]
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0)
    );
    assert_eq!(map.get(&key(1)), None);
    let short = crate::io::words::Words::zeroed(words - 1);
    assert_eq!(
        FlowMap::<2>::with_capacity_in(100, short).err(),
        Some(LayoutError::Storage {
            expected: words,
            found: words - 1
        })
    );
}

#[test]
fn readers_never_see_a_torn_record() {
    // The writer keeps rewriting records whose words all carry one number; readers check that
    // every value they get is uniform and belongs to its key.
    const KEYS: u64 = 4;
    let map = Arc::new(FlowMap::<4>::with_capacity(256));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (map, done) = (Arc::clone(&map), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !done.load(Ordering::Relaxed) {
                    for n in 0..KEYS {
                        if let Some((_, v)) = map.get(&key(n)) {
                            assert!(v.iter().all(|&w| w == v[0]), "torn record {v:?}");
                            assert_eq!(v[0] % KEYS, n, "value of another key");
                            seen += 1;
                        }
                    }
                }
                seen
            })
        })
        .collect();
    for round in 0..200_000u64 {
        let n = round % KEYS;
        let stamp = round * KEYS + n;
        if round % 3 == 0 {
            map.remove_if(&key(n), |_, _| true);
        } else {
            map.upsert_evicting(key(n), [stamp; 4], |v| v[0] as u32);
        }
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
}

#[test]
fn records_go_to_their_first_bucket_and_lie_in_one_cache_line_while_there_is_room() {
    let map = FlowMap::<4>::with_capacity(1 << 12);
    for n in 0..100 {
        let slot = insert(&map, key(n), [n, 0, 0, 0]).expect("room");
        assert_eq!(slot.bucket(), map.candidate_buckets(&key(n))[0], "key {n}");
        let record = map.record(slot);
        let start = record.as_ptr() as usize;
        let end = start + size_of_val(record) - 1;
        assert_eq!(
            start / 64,
            end / 64,
            "key {n}: record at {start:#x} straddles a line"
        );
    }
}
