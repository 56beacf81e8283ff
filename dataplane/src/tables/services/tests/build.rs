//! Building: lenient builds skip exactly the bad specs and keep no trace of them; the strict
//! build names the first bad one; a printed (not asserted) build-time check at 10k services.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::{backend, spec};
use crate::flow::L4Proto;
use crate::tables::services::maglev::{identity, populate};
use crate::tables::services::{
    BuildError, DEFAULT_MAGLEV_M, Frontend, FrontendKind, Scheduler, ServiceSpec, ServiceTable,
};

fn specs() -> Vec<ServiceSpec> {
    let good_a = spec("default/a:http", Ipv4Addr::new(10, 96, 0, 1));
    let mut clash = spec("default/b:http", Ipv4Addr::new(10, 96, 0, 2));
    clash.external_ips = vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(10, 96, 0, 1)];
    let mut icmp = spec("default/c:ping", Ipv4Addr::new(10, 96, 0, 3));
    icmp.proto = L4Proto::Icmp;
    let mut good_d = spec("default/d:http", Ipv4Addr::new(10, 96, 0, 4));
    good_d.backends = vec![backend(4, 8080)];
    let mut zero = spec("default/e:http", Ipv4Addr::new(10, 96, 0, 5));
    zero.node_port = Some(0);
    vec![good_a, clash, icmp, good_d, zero]
}

#[test]
fn lenient_build_skips_only_the_bad_specs() {
    let (table, errors) = ServiceTable::build_lenient(specs(), &[], DEFAULT_MAGLEV_M);
    let names: Vec<&str> = table.iter().map(|(_, s)| s.name().as_ref()).collect();
    assert_eq!(names, ["default/a:http", "default/d:http"]);
    assert_eq!(errors.len(), 3);
    assert_eq!(
        errors[0],
        BuildError::DuplicateFrontend {
            service: "default/b:http".into(),
            holder: "default/a:http".into(),
            ip: Ipv4Addr::new(10, 96, 0, 1),
            port: 80,
            proto: L4Proto::Tcp,
        }
    );
    assert_eq!(
        errors[1],
        BuildError::UnsupportedProto {
            service: "default/c:ping".into(),
            proto: L4Proto::Icmp
        }
    );
    assert_eq!(
        errors[2],
        BuildError::ZeroPort {
            service: "default/e:http".into()
        }
    );
    assert!(errors[0].to_string().contains("default/b:http"));

    let a = Frontend::Service {
        id: 1,
        kind: FrontendKind::ClusterIp,
    };
    let d = Frontend::Service {
        id: 2,
        kind: FrontendKind::ClusterIp,
    };
    assert_eq!(
        table.lookup(Ipv4Addr::new(10, 96, 0, 1), 80, L4Proto::Tcp),
        a
    );
    assert_eq!(
        table.lookup(Ipv4Addr::new(10, 96, 0, 4), 80, L4Proto::Tcp),
        d
    );
    for skipped in [
        Ipv4Addr::new(10, 96, 0, 2),
        Ipv4Addr::new(192, 0, 2, 2),
        Ipv4Addr::new(10, 96, 0, 3),
    ] {
        assert_eq!(
            table.lookup(skipped, 80, L4Proto::Tcp),
            Frontend::NotService,
            "{skipped}"
        );
        assert!(!table.is_vip(skipped));
    }
}

#[test]
fn strict_build_fails_on_the_first_bad_spec() {
    let err = ServiceTable::build(specs(), &[], DEFAULT_MAGLEV_M).unwrap_err();
    assert!(
        matches!(&err, BuildError::DuplicateFrontend { service, .. } if service.as_ref() == "default/b:http")
    );
}

/// 10k Maglev services x 10 endpoints at M = 16381. Printed, not asserted; run with
/// `cargo test --release -- --ignored --nocapture build_time`.
#[test]
#[ignore = "timing check, run in release by hand"]
fn build_time_10k_maglev_services() {
    let services = 10_000u32;
    let specs: Vec<ServiceSpec> = (0..services)
        .map(|i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            let mut s = spec(&format!("ns/svc-{i}:http"), Ipv4Addr::new(10, 96, hi, lo));
            s.scheduler = Scheduler::Maglev;
            s.backends = (1..=10)
                .map(|h| {
                    let mut b = backend(h, 8080);
                    b.ip = Ipv4Addr::new(10, 128 + hi, lo, h);
                    b.node_local = h <= 2;
                    b
                })
                .collect();
            s
        })
        .collect();
    let start = Instant::now();
    let table = ServiceTable::build(specs, &[], DEFAULT_MAGLEV_M).unwrap();
    let elapsed = start.elapsed();
    println!(
        "built {} Maglev services x 10 endpoints in {elapsed:?}",
        table.len()
    );

    let full: Vec<(u32, u64)> = (1..=10)
        .map(|h| (h, identity(Ipv4Addr::new(10, 244, 1, h as u8), 8080)))
        .collect();
    let start = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        std::hint::black_box(populate(std::hint::black_box(&full), DEFAULT_MAGLEV_M));
    }
    let per_table = start.elapsed() / rounds;
    println!(
        "one full M={DEFAULT_MAGLEV_M} table for 10 backends: {per_table:?}; x2 sets x {services} services \
         would take {:?} and {} MiB",
        per_table * 2 * services,
        (2 * u64::from(services) * DEFAULT_MAGLEV_M as u64 * 4) >> 20
    );
}

/// A rebuild shares every unchanged service whose spec is still there, whether the specs
/// keep the previous order or one was added or removed in between (the positional fast path
/// and its fallback by name), and compiles the changed and new ones afresh.
#[test]
fn rebuild_shares_unchanged_services_across_insertions_and_removals() {
    use crate::tables::services::Reuse;
    let names = [
        "default/a:http",
        "default/b:http",
        "default/c:http",
        "default/d:http",
    ];
    let specs: Vec<ServiceSpec> = names
        .iter()
        .zip(1u8..)
        .map(|(name, i)| spec(name, Ipv4Addr::new(10, 96, 0, i)))
        .collect();
    let (first, errors) = ServiceTable::build_lenient(specs.clone(), &[], DEFAULT_MAGLEV_M);
    assert!(errors.is_empty());
    let address_of = |table: &ServiceTable, name: &str| {
        table
            .iter()
            .find(|(_, s)| AsRef::<str>::as_ref(s.name()) == name)
            .map(|(_, s)| std::ptr::from_ref(s) as usize)
    };
    // "a" removed, "new" inserted before "c", "d" changed.
    let mut next = vec![specs[1].clone()];
    next.push(spec("default/bb:http", Ipv4Addr::new(10, 96, 0, 9)));
    next.extend([specs[2].clone(), specs[3].clone()]);
    let unchanged = |name: &str| name != "default/d:http";
    let (second, errors) = ServiceTable::rebuild_lenient(
        next.iter(),
        Some(Reuse {
            previous: &first,
            unchanged: &unchanged,
        }),
        &[],
        DEFAULT_MAGLEV_M,
    );
    assert!(errors.is_empty());
    for shared in ["default/b:http", "default/c:http"] {
        assert_eq!(
            address_of(&second, shared),
            address_of(&first, shared),
            "{shared} was compiled again"
        );
    }
    assert_ne!(
        address_of(&second, "default/d:http"),
        address_of(&first, "default/d:http"),
        "a changed spec was reused"
    );
    assert!(address_of(&second, "default/bb:http").is_some());
    assert!(address_of(&second, "default/a:http").is_none());
}
