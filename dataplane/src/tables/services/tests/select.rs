//! Endpoint selection: the serving / terminating / local truth table under every policy,
//! kind and source; Random spread; source ranges; affinity re-validation; de-duplication.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{backend, spec, splitmix};
use crate::tables::services::{
    Backend, BuildError, DEFAULT_MAGLEV_M, FrontendKind, Scheduler, SelectCtx, Selection, Service,
    ServiceSpec, ServiceTable,
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 40);
const KINDS: [FrontendKind; 4] = [
    FrontendKind::ClusterIp,
    FrontendKind::ExternalIp,
    FrontendKind::LoadBalancer,
    FrontendKind::NodePort,
];

fn one_service(spec: ServiceSpec) -> ServiceTable {
    ServiceTable::build(vec![spec], &[], DEFAULT_MAGLEV_M).unwrap()
}

fn ctx(kind: FrontendKind, from_cluster: bool, value: u64) -> SelectCtx {
    SelectCtx {
        kind,
        from_cluster,
        flow_hash: value,
        random: value,
    }
}

/// What `select` can answer for a context: the set of backend hosts it picks, or a verdict.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Picks(BTreeSet<u8>),
    Reject,
    Drop,
}

/// Runs `select` over enough values to reach every candidate and collects the outcomes.
fn outcome(service: &Service, kind: FrontendKind, from_cluster: bool) -> Outcome {
    let mut picks = BTreeSet::new();
    let mut verdicts = BTreeSet::new();
    for value in 0..1024 {
        match service.select(&ctx(kind, from_cluster, value)) {
            Selection::Backend(i) => {
                let b = &service.backends()[i as usize];
                assert!(b.serving, "picked a non-serving endpoint {b:?}");
                picks.insert(b.ip.octets()[3]);
            }
            other => {
                verdicts.insert(format!("{other:?}"));
            }
        }
    }
    match (picks.is_empty(), verdicts.len()) {
        (false, 0) => Outcome::Picks(picks),
        (true, 1) if verdicts.contains("Reject") => Outcome::Reject,
        (true, 1) if verdicts.contains("Drop") => Outcome::Drop,
        _ => panic!("mixed outcome: {picks:?} {verdicts:?}"),
    }
}

/// Backend `host` with condition letters: R ready, T serving+terminating, N not serving,
/// X not serving+terminating; a trailing `l` marks it node-local.
fn endpoint(host: u8, code: &str) -> Backend {
    let mut b = backend(host, 8080);
    b.node_local = code.ends_with('l');
    (b.serving, b.terminating) = match &code[..1] {
        "R" => (true, false),
        "T" => (true, true),
        "N" => (false, false),
        "X" => (false, true),
        _ => panic!("bad code {code}"),
    };
    b
}

fn picks(hosts: &[u8]) -> Outcome {
    Outcome::Picks(hosts.iter().copied().collect())
}

/// (endpoints, internal_local, external_local, kind, from_cluster, expected outcome).
type Row = (
    &'static [&'static str],
    bool,
    bool,
    FrontendKind,
    bool,
    Outcome,
);

#[test]
fn truth_table_of_usable_endpoints() {
    use FrontendKind::{ClusterIp, ExternalIp, LoadBalancer, NodePort};
    let rows: &[Row] = &[
        (&["R", "Rl"], false, false, ClusterIp, true, picks(&[1, 2])),
        (&["R", "Rl"], true, false, ClusterIp, true, picks(&[2])),
        (&["R", "Tl"], true, false, ClusterIp, true, picks(&[2])),
        (&["R", "Nl"], true, false, ClusterIp, true, Outcome::Drop),
        (&["R"], true, false, ClusterIp, false, Outcome::Drop),
        (&["R"], false, true, ClusterIp, false, picks(&[1])),
        (&["R", "T", "N"], false, false, ClusterIp, true, picks(&[1])),
        (
            &["T", "N", "Tl"],
            false,
            false,
            LoadBalancer,
            false,
            picks(&[1, 3]),
        ),
        (
            &["N", "Xl", "Nl"],
            true,
            true,
            ClusterIp,
            true,
            Outcome::Reject,
        ),
        (
            &["N", "Xl", "Nl"],
            true,
            true,
            NodePort,
            false,
            Outcome::Reject,
        ),
        (&[], false, false, ExternalIp, false, Outcome::Reject),
        (&["R"], false, true, NodePort, false, Outcome::Drop),
        (&["R"], false, true, NodePort, true, picks(&[1])),
        (&["R"], false, true, LoadBalancer, true, picks(&[1])),
        (&["R", "Rl"], false, true, ExternalIp, false, picks(&[2])),
        (&["R", "Rl"], true, false, NodePort, false, picks(&[1, 2])),
        (
            &["R", "Tl", "Nl"],
            false,
            true,
            LoadBalancer,
            false,
            picks(&[2]),
        ),
        (
            &["R", "Rl", "Tl"],
            false,
            true,
            LoadBalancer,
            false,
            picks(&[2]),
        ),
    ];
    for (i, (codes, internal_local, external_local, kind, from_cluster, expected)) in
        rows.iter().enumerate()
    {
        for scheduler in [Scheduler::Random, Scheduler::Maglev] {
            let mut s = spec("default/t:http", VIP);
            s.backends = (1..)
                .zip(codes.iter())
                .map(|(h, c)| endpoint(h, c))
                .collect();
            s.internal_local = *internal_local;
            s.external_local = *external_local;
            s.scheduler = scheduler;
            let t = one_service(s);
            let got = outcome(t.service(1).unwrap(), *kind, *from_cluster);
            assert_eq!(&got, expected, "row {i} ({scheduler:?})");
        }
    }
}

/// The rule restated per endpoint, as the user-needs checklist words it (B3, B4, D1, D3, D4).
fn oracle(
    codes: &[&str],
    internal_local: bool,
    external_local: bool,
    kind: FrontendKind,
    from_cluster: bool,
) -> Outcome {
    let hosts = |pred: &dyn Fn(&str) -> bool| -> BTreeSet<u8> {
        (1..)
            .zip(codes)
            .filter(|(_, c)| pred(c))
            .map(|(h, _)| h)
            .collect()
    };
    let usable = |local_only: bool| {
        let ready = hosts(&|c: &str| c.starts_with('R') && (!local_only || c.ends_with('l')));
        if !ready.is_empty() {
            return ready;
        }
        hosts(&|c: &str| c.starts_with('T') && (!local_only || c.ends_with('l')))
    };
    if usable(false).is_empty() {
        return Outcome::Reject;
    }
    let local = match kind {
        FrontendKind::ClusterIp => internal_local,
        _ => external_local && !from_cluster,
    };
    let pool = usable(local);
    if pool.is_empty() {
        Outcome::Drop
    } else {
        Outcome::Picks(pool)
    }
}

#[test]
fn every_combination_of_three_endpoints_matches_the_rule() {
    let codes = ["R", "T", "N", "X", "Rl", "Tl", "Nl", "Xl"];
    for a in codes {
        for b in codes {
            for c in codes {
                let set = [a, b, c];
                for (internal_local, external_local) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let mut s = spec("default/t:http", VIP);
                    s.backends = (1..).zip(set).map(|(h, c)| endpoint(h, c)).collect();
                    s.internal_local = internal_local;
                    s.external_local = external_local;
                    let t = one_service(s);
                    let service = t.service(1).unwrap();
                    for kind in KINDS {
                        for from_cluster in [false, true] {
                            let expected =
                                oracle(&set, internal_local, external_local, kind, from_cluster);
                            assert_eq!(
                                outcome(service, kind, from_cluster),
                                expected,
                                "{set:?} iTP-local={internal_local} eTP-local={external_local} {kind:?} from_cluster={from_cluster}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn random_spreads_evenly_over_all_usable_backends() {
    let mut s = spec("default/t:http", VIP);
    s.backends = (1..=10).map(|h| backend(h, 8080)).collect();
    s.backends.push(endpoint(11, "N"));
    s.backends.push(endpoint(12, "T"));
    let t = one_service(s);
    let service = t.service(1).unwrap();
    let mut counts: BTreeMap<u8, u32> = BTreeMap::new();
    let mut state = 7;
    let draws = 200_000;
    for _ in 0..draws {
        let c = SelectCtx {
            kind: FrontendKind::ClusterIp,
            from_cluster: true,
            flow_hash: 0,
            random: splitmix(&mut state),
        };
        let Selection::Backend(i) = service.select(&c) else {
            panic!("no backend")
        };
        *counts
            .entry(service.backends()[i as usize].ip.octets()[3])
            .or_default() += 1;
    }
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    for (host, count) in counts {
        let share = f64::from(count) / f64::from(draws);
        assert!((share - 0.1).abs() < 0.005, "backend {host} got {share}");
    }
}

#[test]
fn source_ranges_filter_only_external_lb_traffic() {
    let mut s = spec("default/t:http", VIP);
    s.lb_source_ranges = vec![
        (Ipv4Addr::new(203, 0, 113, 5), 24),
        (Ipv4Addr::new(198, 51, 100, 7), 32),
    ];
    let t = one_service(s);
    let service = t.service(1).unwrap();
    let cases = [
        (Ipv4Addr::new(203, 0, 113, 0), true),
        (Ipv4Addr::new(203, 0, 113, 255), true),
        (Ipv4Addr::new(203, 0, 114, 1), false),
        (Ipv4Addr::new(198, 51, 100, 7), true),
        (Ipv4Addr::new(198, 51, 100, 8), false),
    ];
    for (src, allowed) in cases {
        assert_eq!(
            service.source_allowed(FrontendKind::LoadBalancer, src),
            allowed,
            "{src}"
        );
        assert_eq!(
            service.source_allowed(FrontendKind::ExternalIp, src),
            allowed,
            "{src}"
        );
        assert!(service.source_allowed(FrontendKind::ClusterIp, src));
        assert!(service.source_allowed(FrontendKind::NodePort, src));
    }

    let open = one_service(spec("default/open:http", VIP));
    assert!(
        open.service(1)
            .unwrap()
            .source_allowed(FrontendKind::LoadBalancer, Ipv4Addr::new(1, 2, 3, 4))
    );
    let mut everyone = spec("default/all:http", VIP);
    everyone.lb_source_ranges = vec![(Ipv4Addr::new(10, 0, 0, 0), 0)];
    let everyone = one_service(everyone);
    assert!(
        everyone
            .service(1)
            .unwrap()
            .source_allowed(FrontendKind::LoadBalancer, Ipv4Addr::new(1, 2, 3, 4))
    );

    let mut bad = spec("default/bad:http", VIP);
    bad.lb_source_ranges = vec![(Ipv4Addr::new(10, 0, 0, 0), 33)];
    let err = ServiceTable::build(vec![bad], &[], DEFAULT_MAGLEV_M).unwrap_err();
    assert!(
        matches!(err, BuildError::InvalidSourceRange { prefix: 33, .. }),
        "{err:?}"
    );
}

#[test]
fn affinity_reuses_a_backend_only_while_select_could_pick_it() {
    let mut s = spec("default/t:http", VIP);
    s.backends = vec![
        endpoint(1, "R"),
        endpoint(2, "Rl"),
        endpoint(3, "T"),
        endpoint(4, "N"),
    ];
    s.external_local = true;
    let t = one_service(s);
    let service = t.service(1).unwrap();
    let ip = |h| Ipv4Addr::new(10, 244, 1, h);
    let cluster = ctx(FrontendKind::ClusterIp, true, 0);
    let outside = ctx(FrontendKind::NodePort, false, 0);
    assert_eq!(service.selectable(&cluster, ip(1), 8080), Some(0));
    assert_eq!(service.selectable(&cluster, ip(2), 8080), Some(1));
    assert_eq!(
        service.selectable(&cluster, ip(3), 8080),
        None,
        "terminating while others are ready"
    );
    assert_eq!(
        service.selectable(&cluster, ip(4), 8080),
        None,
        "not serving"
    );
    assert_eq!(service.selectable(&cluster, ip(5), 8080), None, "deleted");
    assert_eq!(
        service.selectable(&cluster, ip(1), 8081),
        None,
        "other port"
    );
    assert_eq!(
        service.selectable(&outside, ip(1), 8080),
        None,
        "remote under eTP Local"
    );
    assert_eq!(service.selectable(&outside, ip(2), 8080), Some(1));
}

#[test]
fn local_ready_endpoints_count_only_ready_local_ones() {
    let count = |codes: &[&str]| {
        let mut s = spec("default/t:http", VIP);
        s.backends = (1..).zip(codes).map(|(h, c)| endpoint(h, c)).collect();
        one_service(s).service(1).unwrap().local_ready_endpoints()
    };
    assert_eq!(count(&["Rl", "Rl", "R", "Tl"]), 2);
    assert_eq!(count(&["R", "Tl", "Nl"]), 0);
    assert_eq!(count(&[]), 0);
}

#[test]
fn duplicate_endpoints_keep_the_best_copy_and_order_is_canonical() {
    let ghost = endpoint(3, "T");
    let fresh = endpoint(3, "R");
    let mut s = spec("default/t:http", VIP);
    s.backends = vec![
        ghost.clone(),
        backend(9, 8080),
        fresh.clone(),
        backend(1, 8080),
        ghost,
    ];
    let t = one_service(s);
    let hosts: Vec<(u8, bool)> = t
        .service(1)
        .unwrap()
        .backends()
        .iter()
        .map(|b| (b.ip.octets()[3], b.terminating))
        .collect();
    assert_eq!(hosts, [(1, false), (3, false), (9, false)]);
}
