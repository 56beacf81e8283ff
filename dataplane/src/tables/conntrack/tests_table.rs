//! Conntrack tests of the table as a whole: capacity and eviction, ageing sweeps, flushes and
//! listings, and the size of a 1M-flow table.

use std::net::Ipv4Addr;

use super::tests::{ACK, CLIENT, SYN, VIP, backend, created, dnat, table};
use super::*;
use crate::flow::L4Proto;

#[test]
fn past_capacity_the_least_recently_seen_flows_are_evicted() {
    // SYN_SENT outlives the run (300 s), so every flow that goes is evicted, none expires.
    let ct = Conntrack::new(ConntrackConfig {
        capacity: 100,
        limits: FlowLimits::NONE,
        timeouts: Timeouts {
            tcp_syn_sent: 3600,
            ..Timeouts::default()
        },
    });
    for i in 0..300u16 {
        let now = u32::from(i);
        // SYN_SENT: unreplied, so evictable (an ESTABLISHED flow never is).
        created(ct.insert(&dnat(L4Proto::Tcp, 10_000 + i, 1, SYN), now));
        assert!(ct.len() <= 100);
    }
    let stats = ct.stats();
    assert_eq!(stats.inserts, 300);
    assert!(stats.evictions >= 200, "{stats:?}");
    assert_eq!(
        stats.entries + stats.evictions,
        300,
        "every flow is live or counted"
    );
    assert_eq!((stats.insert_failed, stats.expired), (0, 0));
    // The newest flow is always there, with both its records.
    let newest = dnat(L4Proto::Tcp, 10_299, 1, ACK);
    assert!(ct.lookup(&newest.original, 299).is_some());
    assert!(ct.lookup(&newest.reply, 299).is_some());
    let mut listed = 0;
    ct.for_each(299, |_| listed += 1);
    assert_eq!(listed, ct.len());
}

#[test]
fn eviction_picks_the_flow_idle_longest_and_spares_recent_traffic() {
    // Capacity 4: one bucket, so every flow is a candidate.
    let ct = table(4);
    let flows: Vec<NewFlow> = (0..4).map(|i| dnat(L4Proto::Udp, 100 + i, 1, 0)).collect();
    for (i, flow) in flows.iter().enumerate() {
        created(ct.insert(flow, 10 + i as u32));
    }
    let first = ct.lookup(&flows[0].original, 20).unwrap();
    ct.on_packet(&first, 0, 20);
    created(ct.insert(&dnat(L4Proto::Udp, 200, 1, 0), 21));
    assert!(ct.lookup(&flows[0].original, 21).is_some());
    assert!(
        ct.lookup(&flows[1].original, 21).is_none(),
        "idle since 11: evicted"
    );
    assert!(ct.lookup(&flows[1].reply, 21).is_none());
    assert_eq!(ct.stats().evictions, 1);
}

#[test]
fn a_zero_capacity_table_fails_inserts_visibly() {
    let ct = table(0);
    assert_eq!(
        ct.insert(&dnat(L4Proto::Udp, 1, 1, 0), 1),
        Err(InsertError::Full)
    );
    assert_eq!(ct.stats().insert_failed, 1);
}

#[test]
fn sweep_removes_expired_flows_in_bounded_steps() {
    let ct = table(2000);
    for i in 0..1000u16 {
        let proto = if i % 2 == 0 {
            L4Proto::Udp
        } else {
            L4Proto::Tcp
        };
        created(ct.insert(&dnat(proto, i, 1, SYN), 0));
    }
    let buckets = ct.map.buckets();
    let mut cursor = SweepCursor::default();
    // At 100 s the UDP flows (30 s) are expired, the SYN_SENT ones (120 s) are not.
    let mut ended = ct.sweep(&mut cursor, 1, 100);
    assert!(ended <= 16, "one bucket holds at most 16 records");
    for _ in 1..buckets {
        ended += ct.sweep(&mut cursor, 1, 100);
    }
    assert_eq!(
        ended, 500,
        "one pass over all buckets ends every expired flow"
    );
    assert_eq!(ct.sweep(&mut cursor, buckets, 100), 0);
    assert_eq!(ct.len(), 500);
    assert_eq!(ct.stats().expired, 500);
    // Both records are gone, not merely hidden: an earlier clock finds nothing either.
    let udp = dnat(L4Proto::Udp, 0, 1, 0);
    assert_eq!(ct.lookup(&udp.original, 0), None);
    assert_eq!(ct.lookup(&udp.reply, 0), None);
    assert!(
        ct.lookup(&dnat(L4Proto::Tcp, 1, 1, SYN).reply, 100)
            .is_some()
    );
}

#[test]
fn flush_by_predicate_and_listing() {
    let ct = table(256);
    for i in 0..30u16 {
        created(ct.insert(&dnat(L4Proto::Udp, i, (i % 3) as u8 + 1, 0), 10));
    }
    assert_eq!(
        ct.flush(15, |view| view.backend == 2
            && view.state.name() == "UNREPLIED"),
        10
    );
    assert_eq!(ct.len(), 20);
    let mut views = Vec::new();
    ct.for_each(15, |view| views.push(*view));
    assert_eq!(views.len(), 20);
    assert!(views.iter().all(|v| v.backend != 2));
    let one = views.iter().find(|v| v.original.sport == 3).unwrap();
    assert_eq!(
        one.reply,
        FlowKey::new(L4Proto::Udp, backend(1), 8080, CLIENT, 3)
    );
    assert_eq!(
        (one.service, one.flags, one.expires_in),
        (42, flags::DNAT, 25)
    );
    assert_eq!(ct.lookup(&dnat(L4Proto::Udp, 1, 2, 0).reply, 15), None);
}

#[test]
fn a_million_flows_fit_in_128_bytes_each_without_eviction() {
    const FLOWS: u32 = 1_000_000;
    let ct = table(FLOWS as usize);
    let per_flow = ct.bytes_per_flow();
    println!(
        "conntrack: {} MiB for 1M flows = {per_flow} bytes per flow (both records, 80 % slot load)",
        (ct.words().len() * 8) >> 20
    );
    assert!(per_flow <= 128, "{per_flow} bytes per flow");
    // The capacity is real: two-choice buckets of 16 at 80 % load take 1M flows, no eviction.
    let flow = |i: u32| {
        let client = Ipv4Addr::from(0x0af4_0000 | (i >> 16));
        let original = FlowKey::new(L4Proto::Tcp, client, i as u16, VIP, 80);
        let reply = FlowKey::new(
            L4Proto::Tcp,
            backend((i % 200) as u8),
            8080,
            client,
            i as u16,
        );
        NewFlow {
            original,
            reply,
            service: 1,
            backend: i % 200,
            flags: flags::DNAT,
            tcp_flags: SYN,
        }
    };
    for i in 0..FLOWS {
        created(ct.insert(&flow(i), 1));
    }
    assert_eq!(ct.stats().evictions, 0);
    created(ct.insert(&flow(FLOWS), 2));
    let stats = ct.stats();
    assert_eq!((stats.entries, stats.evictions), (u64::from(FLOWS), 1));
}

#[test]
fn an_orphaned_reply_never_resolves_to_a_newer_flow_of_its_tuple() {
    // One bucket, so the new flow reuses the slot of the old original record.
    let ct = table(4);
    let old = dnat(L4Proto::Udp, 7000, 1, 0);
    let hit = created(ct.insert(&old, 1));
    // End the flow without clearing its records, as a crash between kill and purge would.
    let slot = ct.map.slot(hit.entry.slot).unwrap();
    assert!(matches!(
        ct.kill(slot, hit.entry.generation, |_| true),
        super::lifecycle::Kill::Killed(_)
    ));
    let new = created(ct.insert(&dnat(L4Proto::Udp, 7000, 2, 0), 2));
    assert_eq!(new.entry.slot, hit.entry.slot, "same slot, next generation");
    // The old reply record still points at that slot, and the key there matches: only the
    // generation tells the flows apart.
    assert!(ct.map.get(&old.reply.to_words()).is_some());
    assert_eq!(ct.lookup(&old.reply, 2), None);
    assert_eq!(ct.sweep(&mut SweepCursor::default(), 1, 2), 0);
    assert!(
        ct.map.get(&old.reply.to_words()).is_none(),
        "the sweep cleared the orphan"
    );
    assert_eq!(ct.len(), 1);
}
