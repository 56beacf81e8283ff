//! One comparison: for each dataplane in turn, build the topology, start the servers, check
//! that a ping and a TCP connection through the ClusterIP work, run every workload `runs`
//! times (the latency workloads once per background load: idle, busy loops at nice 0 and at
//! nice 19 on the hog CPUs), then the connect-time sweep over Service counts, and tear
//! everything down. With `testbed` set only the latency and bulk workloads run.
//!
//! Invariants: a dataplane that fails (build, smoke check or a workload) is reported with its
//! error and the others still run; the servers are stopped before their namespaces go; the
//! hogs of a latency run are gone before the next run starts (and on error and panic); an
//! interrupt stops the current workload at its next bound and skips the rest.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testbed::error::Error;
use testbed::netns::exec;

use super::ferroplane::{self, FerroplaneBuild, Workers};
use super::hogs::{Hogs, Load};
use super::kernel::{self, KernelBuild};
use super::latency::{Latency, connect_time, request_response, wait_serving};
use super::machine::load_average_1;
use super::metrics::{LatencyKind, latency_key, load_average_key, metric_keys, samples_key};
use super::netdevs::{steer_node_rx, tune_client};
use super::ovs::{self, OvsBuild};
use super::plan::Cluster;
use super::report::{Comparison, DataplaneResult};
use super::servers::Servers;
use super::services::{BENCH_VIP, DECOY_PORT, TCP_PORT, catalog, decoy_ip};
use super::testbed_demo::{self, TestbedBuild};
use super::udp_rate::{SearchPlan, search};
use super::{Dataplane, Result, bulk, crr};
use crate::compare::distribution::QUANTILES;

/// How one comparison runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub runs: usize,
    pub quick: bool,
    pub dataplanes: Vec<Dataplane>,
    pub ferroplane: PathBuf,
    pub load_cpu: usize,
    pub dataplane_cpu: usize,
    /// The CPUs the latency runs' hogs are pinned to.
    pub hog_cpus: Vec<usize>,
    /// The executable that serves `hog` (this one).
    pub hog_program: PathBuf,
    /// `--testbed`: the latency workloads alone (the demo cluster beside the kernel path).
    pub testbed: bool,
    /// `--latency-only`: the latency workloads alone (no rate search, connection rate, bulk
    /// or Service-count sweep).
    pub latency_only: bool,
}

/// The lengths and counts of every workload.
#[derive(Clone, Debug)]
pub struct Workloads {
    pub search: SearchPlan,
    pub round_trips: usize,
    /// TCP connects per latency run (connection setup under each load).
    pub setups: usize,
    pub crr_for: Duration,
    pub bulk_seconds: u64,
    pub connects: usize,
    pub scales: Vec<usize>,
}

impl Workloads {
    pub fn new(quick: bool) -> Workloads {
        if quick {
            Workloads {
                search: SearchPlan {
                    trial: Duration::from_millis(400),
                    steps: 4,
                },
                round_trips: 1_000,
                setups: 200,
                crr_for: Duration::from_secs(1),
                bulk_seconds: 2,
                connects: 100,
                scales: vec![100, 1_000, 10_000],
            }
        } else {
            Workloads {
                search: SearchPlan {
                    trial: Duration::from_secs(1),
                    steps: 7,
                },
                round_trips: 10_000,
                setups: 1_000,
                crr_for: Duration::from_secs(3),
                bulk_seconds: 5,
                connects: 300,
                scales: vec![100, 1_000, 10_000],
            }
        }
    }
}

/// The Services every workload but the scale sweep runs with.
const BASE_SERVICES: usize = 2;
const SERVING_WITHIN: Duration = Duration::from_secs(120);
/// How long hogs spin before a latency run starts measuring.
const HOGS_SETTLE: Duration = Duration::from_millis(300);

/// A built topology of any kind.
enum Build {
    Ferroplane(FerroplaneBuild),
    Kernel(KernelBuild),
    Ovs(OvsBuild),
    Testbed(TestbedBuild),
}

impl Build {
    fn new(dataplane: Dataplane, options: &Options) -> Result<Build> {
        let base = catalog(BASE_SERVICES);
        let mut build = match dataplane {
            Dataplane::Ferroplane { io, sched, idle } => Build::Ferroplane(ferroplane::build(
                &options.ferroplane,
                io,
                &base,
                options.dataplane_cpu,
                Workers { sched, idle },
            )?),
            Dataplane::Kernel { mode, .. } => Build::Kernel(kernel::build(mode)?),
            Dataplane::Ovs => Build::Ovs(ovs::build(options.dataplane_cpu)?),
            Dataplane::Testbed(io, idle, at) => {
                Build::Testbed(testbed_demo::build(&options.ferroplane, io, idle, at)?)
            }
        };
        if !dataplane.is_ferroplane() {
            build.program(BASE_SERVICES)?;
        }
        Ok(build)
    }

    fn cluster(&self) -> &Cluster {
        match self {
            Build::Ferroplane(b) => b.cluster(),
            Build::Kernel(b) => b.cluster(),
            Build::Ovs(b) => b.cluster(),
            Build::Testbed(b) => b.cluster(),
        }
    }

    /// Programs a catalog of `total` Services.
    fn program(&mut self, total: usize) -> Result<()> {
        let services = catalog(total);
        match self {
            Build::Ferroplane(b) => b.program(&services),
            Build::Kernel(b) => b.program(&services),
            Build::Ovs(b) => b.program(&services),
            Build::Testbed(_) => Err(Error(
                "the testbed's demo cluster keeps its own Services".to_owned(),
            )),
        }
    }
}

/// Runs the whole comparison.
pub fn run(options: &Options, stop: &AtomicBool) -> Result<Comparison> {
    super::require_root()?;
    let workloads = Workloads::new(options.quick);
    let mut comparison = Comparison::new(options, &workloads);
    for &dataplane in &options.dataplanes {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!("compare: {} ...", dataplane.label());
        let started = Instant::now();
        let mut result = DataplaneResult::new(dataplane);
        result.note(format!(
            "load average of the machine when it started: {}",
            super::machine::load_average()
        ));
        if let Err(e) = measure(dataplane, options, &workloads, stop, &mut result) {
            eprintln!("compare: {}: {e}", dataplane.label());
            result.error = Some(e.0);
        }
        eprintln!(
            "compare: {} done in {:.0} s",
            dataplane.label(),
            started.elapsed().as_secs_f64()
        );
        comparison.results.push(result);
    }
    if stop.load(Ordering::Relaxed) {
        return Err(Error("interrupted".to_owned()));
    }
    Ok(comparison)
}

fn measure(
    dataplane: Dataplane,
    options: &Options,
    workloads: &Workloads,
    stop: &AtomicBool,
    result: &mut DataplaneResult,
) -> Result<()> {
    let mut build = Build::new(dataplane, options)?;
    let cluster = build.cluster().clone();
    if dataplane.steers_rx() {
        for node in &cluster.nodes {
            steer_node_rx(node, options.dataplane_cpu)?;
        }
    }
    tune_client(&cluster.client.ns)?;
    let servers = Servers::start(&cluster, options.load_cpu)?;
    smoke(&cluster)?;
    let keys = metric_keys(&workloads.scales);
    let cpu = options.load_cpu;
    for run in 0..options.runs {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if options.testbed || options.latency_only {
            latency_runs(&cluster, options, workloads, stop, result)?;
            if !options.latency_only {
                bulk_runs(&cluster, workloads, cpu, stop, result)?;
            }
            continue;
        }
        let found = search(&cluster, &servers, workloads.search, cpu, stop)?;
        match &found.best {
            Some(best) => {
                result.push(&keys.udp_rate, best.delivered_rate());
                result.push(&keys.cpu_per_million, best.cpu_per_million());
                let load = best.cpu.on(options.load_cpu);
                let dataplane = best.cpu.on(options.dataplane_cpu);
                result.push(&keys.cpu_load_cpu, best.per_million(load));
                result.push(&keys.cpu_dataplane_cpu, best.per_million(dataplane));
                if best.offered.is_none() {
                    result.note(format!(
                        "run {}: the unpaced generator passed ({:.0} pps offered): generator-bound",
                        run + 1,
                        best.sent_rate()
                    ));
                }
            }
            None => result.note(format!(
                "run {}: no rate passed in {} trials (unpaced: {:.0} pps offered, {:.0} delivered)",
                run + 1,
                found.trials,
                found.unpaced.sent_rate(),
                found.unpaced.delivered_rate()
            )),
        }
        result.unpaced.push(found.unpaced.clone());
        latency_runs(&cluster, options, workloads, stop, result)?;
        let connections = crr::run(&cluster, workloads.crr_for, cpu, stop)?;
        result.push(&keys.crr, connections.per_second());
        if connections.failed > 0 {
            result.note(format!(
                "run {}: {} of {} new connections failed",
                run + 1,
                connections.failed,
                connections.failed + connections.completed
            ));
        }
        bulk_runs(&cluster, workloads, cpu, stop, result)?;
    }
    for (scale, (p50_key, p99_key)) in workloads.scales.iter().zip(&keys.connect) {
        if stop.load(Ordering::Relaxed) || options.testbed || options.latency_only {
            return Ok(());
        }
        let started = Instant::now();
        build.program(*scale)?;
        let last_decoy = decoy_ip(scale.saturating_sub(BASE_SERVICES + 1));
        wait_serving(&cluster, last_decoy, DECOY_PORT, SERVING_WITHIN)?;
        wait_serving(&cluster, BENCH_VIP, TCP_PORT, SERVING_WITHIN)?;
        result.note(format!(
            "{scale} Services programmed and answering in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        for _ in 0..options.runs {
            let connects =
                connect_time(&cluster, BENCH_VIP, TCP_PORT, workloads.connects, cpu, stop)?;
            result.push(p50_key, connects.p50_us);
            result.push(p99_key, connects.p99_us);
        }
    }
    drop(servers);
    drop(build);
    Ok(())
}

/// One run of each latency workload under each background load: the hogs started, given
/// [`HOGS_SETTLE`] to take their share, the round trips and the connects timed, the load
/// average read, the hogs stopped.
fn latency_runs(
    cluster: &Cluster,
    options: &Options,
    workloads: &Workloads,
    stop: &AtomicBool,
    result: &mut DataplaneResult,
) -> Result<()> {
    let cpu = options.load_cpu;
    for load in Load::ALL {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let hogs = Hogs::start(&options.hog_program, load, &options.hog_cpus)?;
        if load != Load::Idle {
            std::thread::sleep(HOGS_SETTLE);
        }
        let rr = request_response(cluster, workloads.round_trips, cpu, stop)?;
        let setup = connect_time(cluster, BENCH_VIP, TCP_PORT, workloads.setups, cpu, stop)?;
        let load_average = load_average_1();
        drop(hogs);
        record(
            result,
            LatencyKind::RoundTrip,
            load,
            rr,
            workloads.round_trips,
        );
        record(result, LatencyKind::Setup, load, setup, workloads.setups);
        if let Some(value) = load_average {
            result.push(&load_average_key(load), value);
        }
    }
    Ok(())
}

/// One iperf3 run of each bulk case (one and eight streams, both directions), iperf3 on
/// `cpu`: the receiver's rate and every CPU's busy time per GB; then the load average.
fn bulk_runs(
    cluster: &Cluster,
    workloads: &Workloads,
    cpu: usize,
    stop: &AtomicBool,
    result: &mut DataplaneResult,
) -> Result<()> {
    let keys = metric_keys(&workloads.scales);
    for case in &keys.bulk {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let run = bulk::run(cluster, workloads.bulk_seconds, cpu, case.case)?;
        result.push(&case.gbps, run.gbps);
        if let Some(per_gb) = run.cpu_per_gb() {
            result.push(&case.cpu_per_gb, per_gb);
        }
    }
    if let Some(value) = load_average_1() {
        result.push(&keys.bulk_load, value);
    }
    Ok(())
}

/// A latency run's quantiles and samples, and a note when answers were lost or the run hit
/// its time bound.
fn record(
    result: &mut DataplaneResult,
    kind: LatencyKind,
    load: Load,
    latency: Latency,
    planned: usize,
) {
    if let Some(values) = latency.distribution.quantiles() {
        for (quantile, value) in QUANTILES.iter().zip(values) {
            result.push(&latency_key(kind, load, quantile.key), value);
        }
    }
    if latency.lost > 0 || latency.samples + latency.lost < planned {
        result.note(format!(
            "{}, {}: {} of {planned} answered, {} lost",
            kind.label(),
            load.label(),
            latency.samples,
            latency.lost
        ));
    }
    result.extend_samples(&samples_key(kind, load), latency.distribution.samples());
}

/// A ping from the client to the first backend, and a TCP connection through the ClusterIP.
fn smoke(cluster: &Cluster) -> Result<()> {
    let backend = cluster
        .backends
        .first()
        .ok_or_else(|| Error("no backend".to_owned()))?
        .ip
        .to_string();
    let started = Instant::now();
    while let Err(e) = exec(
        &cluster.client.ns,
        &["ping", "-c", "1", "-W", "1", "-q", &backend],
    ) {
        if started.elapsed() > Duration::from_secs(10) {
            return Err(Error(format!("smoke check: ping {backend}: {e}")));
        }
    }
    wait_serving(cluster, BENCH_VIP, TCP_PORT, Duration::from_secs(10))
        .map_err(|e| Error(format!("smoke check: {e}")))
}
