//! The patched rebuild (`builder::patch`, taken by `ServiceTable::rebuild_lenient` when the
//! specs keep the previous table's names and order) equals a full build of the same specs,
//! under random churn of backends, addresses, NodePorts, collisions, bad specs, additions and
//! removals; and it is taken whenever it can be (every spec accepted, names in order).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{backend, spec, splitmix};
use crate::flow::L4Proto;
use crate::tables::services::builder::patch;
use crate::tables::services::{
    BuildError, DEFAULT_MAGLEV_M, Frontend, Reuse, Scheduler, ServiceSpec, ServiceTable,
};

const NODES: [Ipv4Addr; 2] = [Ipv4Addr::new(172, 18, 0, 2), Ipv4Addr::new(172, 18, 0, 3)];

/// A value below `n` from the stream.
fn pick(state: &mut u64, n: u64) -> u64 {
    splitmix(state) % n
}

/// Changes one thing of `spec` (from small pools, so collisions happen now and then).
fn mutate(state: &mut u64, spec: &mut ServiceSpec) {
    match pick(state, 9) {
        0 => spec.cluster_ips = vec![Ipv4Addr::new(10, 96, 0, pick(state, 250) as u8)],
        1 => {
            spec.external_ips = (0..pick(state, 2))
                .map(|_| Ipv4Addr::new(192, 0, 2, pick(state, 64) as u8))
                .collect();
        }
        2 => spec.node_port = (pick(state, 3) == 0).then(|| 30000 + pick(state, 100) as u16),
        3 => {
            spec.lb_ips = if pick(state, 8) == 0 {
                vec![NODES[0]]
            } else {
                Vec::new()
            }
        }
        4 => spec.port = if pick(state, 20) == 0 { 0 } else { 80 },
        5 => spec.scheduler = Scheduler::Maglev,
        _ => {
            spec.backends = (0..pick(state, 5))
                .map(|_| {
                    let mut b = backend(pick(state, 30) as u8, 8080);
                    b.serving = pick(state, 4) != 0;
                    b.node_local = pick(state, 2) == 0;
                    b
                })
                .collect();
        }
    }
}

fn fresh(state: &mut u64, n: u64) -> ServiceSpec {
    let mut s = spec(
        &format!("default/s{n}:http"),
        Ipv4Addr::new(10, 96, 1, (n % 250) as u8),
    );
    mutate(state, &mut s);
    s
}

/// Every destination the specs could claim, for comparing lookups.
fn probes(specs: &[ServiceSpec]) -> Vec<(Ipv4Addr, u16)> {
    let mut probes = Vec::new();
    for s in specs {
        for &ip in s.cluster_ips.iter().chain(&s.external_ips).chain(&s.lb_ips) {
            probes.extend([(ip, s.port), (ip, 1)]);
        }
        for &ip in &NODES {
            probes.extend(s.node_port.map(|p| (ip, p)));
        }
    }
    probes
}

#[test]
fn patched_rebuild_equals_full_build_under_random_churn() {
    let mut state = 0x5eed_u64;
    let mut next_name = 0u64;
    let mut specs: Vec<ServiceSpec> = (0..40)
        .map(|_| {
            next_name += 1;
            fresh(&mut state, next_name)
        })
        .collect();
    let (mut previous, _) = ServiceTable::build_lenient(specs.clone(), &NODES, DEFAULT_MAGLEV_M);
    let (mut patched, mut fell_back) = (0, 0);
    for step in 0..600 {
        let mut dirty: BTreeSet<Arc<str>> = BTreeSet::new();
        for _ in 0..=pick(&mut state, 3) {
            let at = pick(&mut state, specs.len() as u64) as usize;
            match pick(&mut state, 30) {
                0 => {
                    dirty.insert(specs.remove(at).name);
                }
                1 => {
                    next_name += 1;
                    let added = fresh(&mut state, next_name);
                    dirty.insert(added.name.clone());
                    specs.insert(at, added);
                }
                _ => {
                    let changed = &mut specs[at];
                    mutate(&mut state, changed);
                    dirty.insert(changed.name.clone());
                }
            }
        }
        // Repair a refused spec now and then, so error-free stretches (where the patch
        // applies) alternate with refusals.
        let (_, errors) = ServiceTable::build_lenient(specs.clone(), &NODES, DEFAULT_MAGLEV_M);
        if let Some(refused) = errors.first().filter(|_| pick(&mut state, 2) == 0) {
            let name = match refused {
                BuildError::DuplicateFrontend { service, .. }
                | BuildError::ZeroPort { service } => service.clone(),
                other => panic!("step {step}: unexpected {other:?}"),
            };
            if let Some(at) = specs.iter().position(|s| s.name == name) {
                let clean = spec(
                    &name,
                    Ipv4Addr::new(10, 97, (at / 250) as u8, (at % 250) as u8),
                );
                specs[at] = clean;
                dirty.insert(name);
            }
        }
        let unchanged = |name: &str| !dirty.contains(name);
        let reuse = Reuse {
            previous: &previous,
            unchanged: &unchanged,
        };
        let refs: Vec<&ServiceSpec> = specs.iter().collect();
        let (full, errors) = ServiceTable::build_lenient(specs.clone(), &NODES, DEFAULT_MAGLEV_M);
        let names_kept = previous.len() == specs.len()
            && previous
                .iter()
                .zip(&specs)
                .all(|((_, old), new)| *old.name() == new.name);
        match patch(&refs, reuse, &NODES, DEFAULT_MAGLEV_M) {
            Some(table) => {
                patched += 1;
                assert!(errors.is_empty(), "step {step}: patched over {errors:?}");
                assert_eq!(table, full, "step {step}: patched table differs");
            }
            None => {
                fell_back += 1;
                assert!(
                    !(names_kept && errors.is_empty()),
                    "step {step}: the patch was refused although every spec is accepted"
                );
            }
        }
        let (rebuilt, rebuilt_errors) =
            ServiceTable::rebuild_lenient(refs.into_iter(), Some(reuse), &NODES, DEFAULT_MAGLEV_M);
        assert_eq!(rebuilt, full, "step {step}");
        assert_eq!(rebuilt_errors, errors, "step {step}");
        for (ip, port) in probes(&specs) {
            let lookup = |t: &ServiceTable| -> Frontend { t.lookup(ip, port, L4Proto::Tcp) };
            assert_eq!(lookup(&rebuilt), lookup(&full), "step {step}: {ip}:{port}");
        }
        previous = rebuilt;
    }
    assert!(
        patched > 100 && fell_back > 10,
        "both paths must be exercised: {patched} patched, {fell_back} full"
    );
}
