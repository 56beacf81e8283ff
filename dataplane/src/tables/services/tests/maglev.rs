//! Maglev: primality and size ladder, determinism, balance and minimal disruption, both on
//! the raw table and through `ServiceTable`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::{backend, spec, splitmix};
use crate::tables::services::maglev::{identity, is_prime, populate, table_size};
use crate::tables::services::{
    Backend, BuildError, DEFAULT_MAGLEV_M, FrontendKind, Scheduler, SelectCtx, Selection,
    ServiceSpec, ServiceTable,
};

const M: usize = 16381;

/// Candidates for hosts 1..=n: (index, identity of 10.244.1.host:8080), index = host.
fn candidates(hosts: impl IntoIterator<Item = u8>) -> Vec<(u32, u64)> {
    hosts
        .into_iter()
        .map(|h| (u32::from(h), identity(Ipv4Addr::new(10, 244, 1, h), 8080)))
        .collect()
}

fn counts(table: &[u32]) -> HashMap<u32, usize> {
    let mut counts = HashMap::new();
    for &entry in table {
        *counts.entry(entry).or_default() += 1;
    }
    counts
}

#[test]
fn primality_matches_a_sieve() {
    let limit = 20_000;
    let mut composite = vec![false; limit];
    for n in 2..limit {
        if !composite[n] {
            (n * n..limit).step_by(n).for_each(|k| composite[k] = true);
        }
    }
    for (n, &is_composite) in composite.iter().enumerate() {
        assert_eq!(is_prime(n), n >= 2 && !is_composite, "{n}");
    }
}

#[test]
fn table_size_follows_the_ladder_up_to_the_configured_size() {
    assert_eq!(table_size(1, M), 251);
    assert_eq!(table_size(3, M), 509);
    assert_eq!(table_size(10, M), 1021);
    assert_eq!(table_size(11, M), 2039);
    assert_eq!(table_size(100, M), 16381);
    assert_eq!(table_size(1000, M), M);
    assert_eq!(table_size(10, 257), 257);
    assert_eq!(table_size(1_000_000, 2_000_003), 2_000_003);
}

#[test]
fn balanced_every_backend_owns_m_over_n_slots() {
    let table = populate(&candidates(1..=10), M);
    assert_eq!(table.len(), M);
    let counts = counts(&table);
    assert_eq!(counts.len(), 10);
    for (backend, count) in counts {
        assert!(
            (1638..=1639).contains(&count),
            "backend {backend} owns {count}"
        );
    }
}

#[test]
fn deterministic_for_the_same_candidates() {
    assert_eq!(
        populate(&candidates(1..=10), M),
        populate(&candidates(1..=10), M)
    );
    assert_ne!(
        populate(&candidates(1..=10), M),
        populate(&candidates(2..=11), M)
    );
}

/// Measured: about 0.5% of the other backends' slots move at M = 16381; hashing modulo N
/// would move about 90%.
#[test]
fn removing_one_of_ten_moves_few_slots_of_the_others() {
    let before = populate(&candidates(1..=10), M);
    for removed in 1..=10u32 {
        let after = populate(
            &candidates((1..=10).filter(|&h| u32::from(h) != removed)),
            M,
        );
        let kept: Vec<(u32, u32)> = before
            .iter()
            .zip(after.iter())
            .map(|(&b, &a)| (b, a))
            .filter(|&(b, _)| b != removed)
            .collect();
        let moved = kept.iter().filter(|(b, a)| b != a).count();
        let share = moved as f64 / kept.len() as f64;
        assert!(
            share < 0.02,
            "removing {removed} moved {share:.3} of the other slots"
        );
        assert!(after.iter().all(|&e| e != removed));
    }
}

fn maglev_spec(backends: Vec<Backend>) -> ServiceSpec {
    let mut s = spec("default/mg:http", Ipv4Addr::new(10, 96, 0, 50));
    s.scheduler = Scheduler::Maglev;
    s.backends = backends;
    s
}

/// The backend (host octet) each of `flows` flow hashes goes to.
fn picks(table: &ServiceTable, flows: &[u64]) -> Vec<u8> {
    let service = table.service(1).unwrap();
    flows
        .iter()
        .map(|&flow_hash| {
            let ctx = SelectCtx {
                kind: FrontendKind::ClusterIp,
                from_cluster: true,
                flow_hash,
                random: 0,
            };
            match service.select(&ctx) {
                Selection::Backend(i) => service.backends()[i as usize].ip.octets()[3],
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

#[test]
fn service_choice_ignores_backend_order_and_random_value() {
    let flows: Vec<u64> = {
        let mut s = 1;
        (0..5000).map(|_| splitmix(&mut s)).collect()
    };
    let forward = (1..=10).map(|h| backend(h, 8080)).collect::<Vec<_>>();
    let mut shuffled = forward.clone();
    shuffled.reverse();
    shuffled.swap(2, 7);
    let a = ServiceTable::build(vec![maglev_spec(forward)], &[], M).unwrap();
    let b = ServiceTable::build(vec![maglev_spec(shuffled)], &[], M).unwrap();
    assert_eq!(picks(&a, &flows), picks(&b, &flows));
    let service = a.service(1).unwrap();
    let with_random = |random| SelectCtx {
        kind: FrontendKind::ClusterIp,
        from_cluster: true,
        flow_hash: 42,
        random,
    };
    assert_eq!(
        service.select(&with_random(1)),
        service.select(&with_random(999))
    );
}

/// Through the table, 10 and 9 candidates get 1021-slot tables (the size ladder): measured
/// about 3.3% of the surviving backends' flows move.
#[test]
fn service_removal_of_one_backend_keeps_most_flows() {
    let flows: Vec<u64> = {
        let mut s = 3;
        (0..20_000).map(|_| splitmix(&mut s)).collect()
    };
    let all = (1..=10).map(|h| backend(h, 8080)).collect::<Vec<_>>();
    let nine = all
        .iter()
        .filter(|b| b.ip.octets()[3] != 4)
        .cloned()
        .collect();
    let before = picks(
        &ServiceTable::build(vec![maglev_spec(all)], &[], M).unwrap(),
        &flows,
    );
    let after = picks(
        &ServiceTable::build(vec![maglev_spec(nine)], &[], M).unwrap(),
        &flows,
    );
    let survivors: Vec<(u8, u8)> = before
        .into_iter()
        .zip(after)
        .filter(|&(b, _)| b != 4)
        .collect();
    let moved = survivors.iter().filter(|(b, a)| b != a).count();
    assert!(
        (moved as f64) < 0.06 * survivors.len() as f64,
        "{moved} of {} moved",
        survivors.len()
    );
}

#[test]
fn local_and_cluster_sets_get_their_own_tables() {
    let mut backends: Vec<_> = (1..=6).map(|h| backend(h, 8080)).collect();
    backends[1].node_local = true;
    backends[4].node_local = true;
    let mut s = maglev_spec(backends);
    s.external_local = true;
    let t = ServiceTable::build(vec![s], &[], M).unwrap();
    let service = t.service(1).unwrap();
    let mut local_hosts = std::collections::BTreeSet::new();
    let mut state = 5;
    for _ in 0..2000 {
        let ctx = SelectCtx {
            kind: FrontendKind::LoadBalancer,
            from_cluster: false,
            flow_hash: splitmix(&mut state),
            random: 0,
        };
        let Selection::Backend(i) = service.select(&ctx) else {
            panic!("no local backend")
        };
        local_hosts.insert(service.backends()[i as usize].ip.octets()[3]);
    }
    assert_eq!(local_hosts.into_iter().collect::<Vec<_>>(), [2, 5]);
}

#[test]
fn configured_size_must_be_prime_and_hold_the_candidates() {
    let ten = || maglev_spec((1..=10).map(|h| backend(h, 8080)).collect());
    let err = ServiceTable::build(vec![ten()], &[], 16380).unwrap_err();
    assert_eq!(
        err,
        BuildError::MaglevSizeNotPrime {
            service: "default/mg:http".into(),
            m: 16380
        }
    );
    let err = ServiceTable::build(vec![ten()], &[], 7).unwrap_err();
    assert_eq!(
        err,
        BuildError::MaglevSizeTooSmall {
            service: "default/mg:http".into(),
            m: 7,
            candidates: 10
        }
    );
    let mut random = ten();
    random.scheduler = Scheduler::Random;
    assert!(ServiceTable::build(vec![random], &[], 16380).is_ok());
    assert!(ServiceTable::build(vec![ten()], &[], 11).is_ok());
    assert!(ServiceTable::build(vec![ten()], &[], DEFAULT_MAGLEV_M).is_ok());
}
