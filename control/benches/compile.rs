//! Control-plane compile benchmarks at 10k Services / 100k endpoints / 1k NetworkPolicies
//! (group `compile`):
//! - `cold`: a fresh [`Compiler`] compiles one node's snapshot;
//! - `service_change` / `endpoint_change`: a warm compiler updates after one Service spec or
//!   one endpoint (pod readiness) changed ([`Compiler::update`] with the keys the API server
//!   session touched), the snapshot is published and stale flows flushed: everything between
//!   "state changed" and "workers see it".
//!
//! After criterion, a fixed loop prints p50 / p99 of the change-to-publish time.

mod scale;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::ClusterState;
use control::compile::{Compiler, NodeLocal, PortAssignments};
use control::model::ObjectRef;
use criterion::Criterion;
use dataplane::reconcile::flush_stale;
use dataplane::snapshot::SnapshotCell;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig};

/// A changed state and the keys of the objects that differ from the base state.
type Change = (ClusterState, BTreeSet<ObjectRef>);

struct Fixture {
    base: ClusterState,
    service_changed: Change,
    endpoint_changed: Change,
    node: String,
    ports: PortAssignments,
}

fn fixture() -> Fixture {
    let started = Instant::now();
    let base = scale::cluster();
    let service_changed = scale::with_service_change(&base);
    let endpoint_changed = scale::with_endpoint_change(&base);
    let node = scale::node_name(0);
    let ports = PortAssignments::sequential(&base, &node);
    eprintln!(
        "fixture: {} services, {} pods, {} policies, {} slices, {} local pods on {node}; built in {:.1?}",
        base.services().count(),
        base.pods().count(),
        base.network_policies().count(),
        base.endpoint_slices().count(),
        ports.iter().count(),
        started.elapsed()
    );
    Fixture {
        base,
        service_changed,
        endpoint_changed,
        node,
        ports,
    }
}

/// A warm compiler, the cell it publishes to, and an (empty) flow table to flush.
struct Publisher {
    compiler: Compiler,
    cell: SnapshotCell,
    ct: Arc<Conntrack>,
}

impl Publisher {
    fn new(f: &Fixture) -> Publisher {
        let mut compiler = Compiler::new(&f.node, NodeLocal::default());
        let first = compiler
            .compile(&f.base, &f.ports)
            .unwrap_or_else(|e| panic!("{e}"));
        Publisher {
            compiler,
            cell: SnapshotCell::new(first.snapshot),
            ct: Arc::new(Conntrack::new(ConntrackConfig::default())),
        }
    }

    /// Update, publish, flush: one change made visible to the workers.
    fn republish(
        &mut self,
        state: &ClusterState,
        changed: &BTreeSet<ObjectRef>,
        ports: &PortAssignments,
    ) -> (Duration, Duration) {
        let started = Instant::now();
        let compiled = self
            .compiler
            .update(state, changed, ports)
            .unwrap_or_else(|e| panic!("{e}"));
        let compiled_at = started.elapsed();
        let old = self.cell.publish(compiled.snapshot);
        let new = self.cell.load();
        black_box(flush_stale(&self.ct, &old, &new, 1));
        drop(old);
        (compiled_at, started.elapsed() - compiled_at)
    }
}

fn bench_compile(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("cold", |b| {
        b.iter(|| {
            let mut compiler = Compiler::new(&f.node, NodeLocal::default());
            black_box(
                compiler
                    .compile(&f.base, &f.ports)
                    .map(|c| c.problems.len()),
            )
        });
    });
    for (name, changed) in [
        ("service_change", &f.service_changed),
        ("endpoint_change", &f.endpoint_changed),
    ] {
        let mut publisher = Publisher::new(f);
        let mut flip = false;
        group.bench_function(name, |b| {
            b.iter(|| {
                flip = !flip;
                let state = if flip { &changed.0 } else { &f.base };
                publisher.republish(state, &changed.1, &f.ports);
            });
        });
    }
    group.finish();
}

/// p50 and p99 of some durations.
fn p50_p99(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Prints p50 / p99 of `runs` alternations between the base state and `changed`: the whole
/// change-to-publish time and its two parts.
fn report_percentiles(f: &Fixture, name: &str, changed: &Change, runs: usize) {
    let mut publisher = Publisher::new(f);
    let (mut compile, mut publish, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let state = if i % 2 == 0 { &changed.0 } else { &f.base };
        let (c, p) = publisher.republish(state, &changed.1, &f.ports);
        compile.push(c);
        publish.push(p);
        total.push(c + p);
    }
    let [total, compile, publish] = [total, compile, publish].map(p50_p99);
    println!(
        "compile/{name}: change -> published p50 {:.2?} p99 {:.2?} (update p50 {:.2?} p99 {:.2?}; publish + flush p50 {:.2?} p99 {:.2?}; {runs} runs)",
        total.0, total.1, compile.0, compile.1, publish.0, publish.1
    );
}

fn main() {
    let f = fixture();
    let mut criterion = Criterion::default().configure_from_args();
    bench_compile(&mut criterion, &f);
    for (name, changed) in [
        ("service_change", &f.service_changed),
        ("endpoint_change", &f.endpoint_changed),
    ] {
        report_percentiles(&f, name, changed, 100);
    }
    criterion.final_summary();
}
