//! `ferroplane run`: the node process's life.
//!
//! Start: map the flow-state file and adopt the previous process's table (if any), open the
//! uplink and host devices (one per worker), start the snapshot source (retrying until the
//! node can be compiled; the port manager opens pod devices as the source asks), start the
//! workers, the admin endpoint and the health endpoints. Run: the control thread polls the source, detaches
//! pods after the snapshot without them is published, follows health-check Services, answers
//! signals. Stop (SIGTERM/SIGINT): `/healthz` turns 503, the workers stop, the devices close,
//! the process exits 0; the flow table stays in its file. SIGHUP reloads `node.yaml`.
//!
//! Invariants: the control thread is the only one that publishes snapshots and changes the
//! port assignments; a snapshot is published only after the devices it references were handed
//! to every worker (see `ports`); the flow table is mapped before any device opens and
//! unmapped only after every worker stopped.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use dataplane::io::thread::{allowed_cpus, monotonic_secs};
use dataplane::pipeline::Pipeline;
use dataplane::tables::affinity::AffinityTable;
use dataplane::worker::{IdleMode, RunConfig, Worker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::admin::AdminState;
use super::config::{NodeSettings, Overrides};
use super::devices::{self, NodePort};
use super::flow_state;

use super::health::{self, HealthChecks};
use super::host_ports;
use super::liveness::ProxyHealth;
use super::log;
use super::observe::Observers;
use super::ports::{PodPorts, PortManager};
use super::source::{SourceInputs, StartError, Starter};
use super::watchdog::{self, Watchdog};
use super::worker::{WorkerContext, WorkerThread, seed};
use crate::compile::{HOST_PORT, UPLINK_PORT};
use crate::sync::{PollOutcome, PortSource, SyncClock};

/// Packet buffers per worker.
const POOL_SIZE: usize = 4096;
/// How often the control thread polls the source.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How often pods whose interface is missing, and health checks that failed to bind, are
/// retried, and a source that could not start is tried again.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// Where `run` re-reads its configuration on SIGHUP.
pub struct Reload {
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Runs the node process until SIGTERM or SIGINT; `Err` explains a failed start.
pub fn run(settings: NodeSettings, reload: Reload) -> Result<(), String> {
    let mut settings = settings;
    check_cores(&settings)?;
    host_ports::check_snat_ports(settings.local.snat_ports)?;
    let sched = super::scheduling::choose(
        &settings.schedule,
        super::scheduling::probe,
        std::fs::read_to_string("/proc/sys/kernel/sched_rt_runtime_us")
            .ok()
            .as_deref(),
    )?;
    for warning in &sched.warnings {
        log::warn(format_args!("{warning}"));
    }
    log::info(format_args!(
        "workers run as {}, idle {:?}",
        sched.class.map_or_else(
            || "the process's class".to_owned(),
            |c| super::scheduling::describe(&c)
        ),
        settings.schedule.idle
    ));
    let signals = watch_signals()?;
    log::info(format_args!(
        "ferroplane {} starting for node {} ({} workers, uplink {} via {:?}, pods via {:?})",
        env!("CARGO_PKG_VERSION"),
        settings.node_name,
        settings.workers,
        settings.uplink.interface,
        settings.uplink.backend,
        settings.pods.backend
    ));
    devices::set_af_xdp_busy_poll(settings.schedule.idle == IdleMode::BusyPoll);
    devices::set_cpu_steering(settings.per_cpu.then_some(settings.cores.as_slice()))?;
    if settings.per_cpu {
        log::info(format_args!(
            "workers.perCpu: a worker on each of CPUs {:?}; ports steer frames to the sending \
             CPU's worker",
            settings.cores
        ));
    }
    let (conntrack, adopted) = flow_state::conntrack_table(&settings)?;
    let affinity = Arc::new(AffinityTable::new(65_536));
    let observers = Arc::new(Observers::default());
    let uplink = devices::open_uplink(&settings)?;
    let host = match &settings.host {
        Some(host) => {
            let (devices, mac) = devices::open_host(&host.interface, host.mac, settings.workers)?;
            settings.local.host_mac = Some(mac);
            Some(devices)
        }
        None => None,
    };
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..settings.workers).map(|_| mpsc::channel()).unzip();
    let records = Arc::new(super::attachments::Registry::open(
        &super::attachments::dir_for(&settings.admin.socket),
        |record| {
            super::attachments::device_alive(
                record,
                &crate::node::pod_interface_name(&record.namespace, &record.name),
            )
        },
    )?);
    let manager = Arc::new(Mutex::new(
        PortManager::new(
            &PodPorts {
                node: &settings.node_name,
                backend: settings.pods.backend,
                netns_dir: &settings.pods.netns_dir,
                pod_mtu: pod_mtu(&settings),
                uplink_interface: &settings.uplink.interface,
                host_interface: settings.host.as_ref().map(|h| h.interface.as_str()),
                pod_cidr_file: Some(super::pod_cidr_file::path_for(&settings.admin.socket)),
            },
            senders,
            Arc::clone(&observers),
        )
        .with_records(Arc::clone(&records)),
    ));
    let port_source = || -> PortSource {
        let manager = Arc::clone(&manager);
        Box::new(move |state| {
            manager
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .assignments(state)
        })
    };
    let mut starter = Starter::new(settings.source.clone());
    let mut source = loop {
        let inputs = SourceInputs {
            node: &settings.node_name,
            local: settings.local.clone(),
            conntracks: vec![Arc::clone(&conntrack)],
            resync: settings.resync_interval,
        };
        match starter.try_start(inputs, port_source(), clock()) {
            Ok(source) => break source,
            Err(StartError::Fatal(why)) => return Err(why),
            Err(StartError::NotYet(why)) => {
                log::warn(format_args!("no snapshot yet: {why}"));
                if let Some(signal) = wait_signal(&signals, Duration::from_secs(1))
                    && signal != SIGHUP
                {
                    return Ok(());
                }
            }
        }
    };
    log::info(format_args!(
        "first snapshot published ({} problems)",
        source.problems().len()
    ));
    for problem in source.problems() {
        log::warn(format_args!("{problem}"));
    }
    let cells = Arc::new(ArcSwap::new(source.cell()));
    let context = Arc::new(WorkerContext {
        cells: Arc::clone(&cells),
        observers: Arc::clone(&observers),
        stop: Arc::new(AtomicBool::new(false)),
        run: RunConfig {
            scheduling: sched.class,
            idle: settings.schedule.idle,
            ..RunConfig::default()
        },
    });
    let mut host = host.map(Vec::into_iter);
    let mut workers = Vec::new();
    for (id, (uplink, commands)) in uplink.into_iter().zip(receivers).enumerate() {
        let mut ports = vec![NodePort::new(uplink, UPLINK_PORT, Arc::clone(&observers))];
        if let Some(device) = host.as_mut().and_then(Iterator::next) {
            ports.push(NodePort::new(device, HOST_PORT, Arc::clone(&observers)));
        }
        let pipeline = Pipeline::new(Arc::clone(&conntrack), Arc::clone(&affinity), seed(id));
        let worker = Worker::new(pipeline, ports, POOL_SIZE);
        let cpu = settings.cores.get(id).copied();
        workers.push(
            WorkerThread::spawn(id, worker, commands, Arc::clone(&context), cpu)
                .map_err(|e| format!("starting worker {id}: {e}"))?,
        );
    }
    let health = Arc::new(ProxyHealth::new(settings.health.sync_timeout));
    health.updated(SystemTime::now());
    let servers = super::serving::Runtimes::start()?;
    let mut serving = vec![
        health::serve_healthz(&servers.probes, settings.health.bind, Arc::clone(&health))
            .map_err(|e| e.to_string())?,
    ];
    let names = manager
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .names();
    let health_services = manager
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .health_services();
    let admin_state = Arc::new(AdminState {
        node: settings.node_name.clone(),
        reports: workers.iter().map(|w| Arc::clone(&w.report)).collect(),
        conntrack: Arc::clone(&conntrack),
        adopted_flows: adopted,
        names,
        sync: Mutex::new(source.metrics().clone()),
        cells: Arc::clone(&cells),
        observers,
        health: Arc::clone(&health),
        streams: Arc::default(),
    });
    let cni = Arc::new(super::cni_endpoint::CniEndpoint {
        registry: Arc::clone(&records),
        names: Arc::clone(&admin_state.names),
    });
    serving.extend(super::serving::serve_admin(
        &servers,
        &settings,
        &admin_state,
        Some(cni),
    )?);
    super::admin_socket::publish(&settings);
    let mut checks = HealthChecks::new(servers.probes.clone(), Arc::clone(&cells));
    let node_ip = |settings: &NodeSettings| -> Ipv4Addr {
        settings
            .node_ip
            .unwrap_or_else(|| cells.load().load().node.node_ip)
    };
    checks.update(node_ip(&settings), &health_services.load());
    log::info(format_args!(
        "running: admin socket {}, /healthz on {}{}",
        settings.admin.socket.display(),
        settings.health.bind,
        settings
            .health
            .metrics_bind
            .map_or_else(String::new, |addr| format!(", /metrics on {addr}"))
    ));

    let mut last_retry = Instant::now();
    let mut last_failure = String::new();
    let mut watchdog = Watchdog::new(settings.schedule.idle == IdleMode::BusyPoll);
    let mut last_watch = Instant::now();
    loop {
        health.heartbeat(Instant::now());
        // The Kubernetes source wakes the loop on a watch event (its wait is the poll
        // interval at most); the state directory is polled every interval.
        let wakes = source.wakes_on_change();
        match wait_signal(&signals, if wakes { Duration::ZERO } else { POLL_INTERVAL }) {
            Some(SIGHUP) => {
                super::reload::reload_config(
                    &reload,
                    &mut settings,
                    &mut source,
                    &cells,
                    &conntrack,
                    &port_source,
                );
            }
            Some(_) => break,
            None => {}
        }
        if wakes {
            source.wait_for_change(POLL_INTERVAL);
        }
        if records.take_wake() {
            source.request_sync();
        }
        match source.poll(clock()) {
            PollOutcome::Idle => {}
            PollOutcome::Published {
                generation,
                changed,
                ..
            } => {
                if changed > 0 {
                    health.queued(SystemTime::now(), Instant::now());
                }
                health.updated(SystemTime::now());
                manager
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .after_publish();
                checks.update(node_ip(&settings), &health_services.load());
                *admin_state
                    .sync
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = source.metrics().clone();
                health.set_input_problem(input_problem(source.metrics()));
                last_failure.clear();
                log::info(format_args!(
                    "published generation {generation} ({} problems)",
                    source.problems().len()
                ));
            }
            PollOutcome::Failed(error) => {
                health.failed(SystemTime::now(), Instant::now(), &error.0);
                health.set_input_problem(input_problem(source.metrics()));
                *admin_state
                    .sync
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = source.metrics().clone();
                if error.0 != last_failure {
                    log::warn(format_args!(
                        "sync failed, keeping the last snapshot: {error}"
                    ));
                    last_failure = error.0;
                }
            }
        }
        if last_watch.elapsed() >= watchdog::CHECK_EVERY {
            last_watch = Instant::now();
            let reports: Vec<_> = workers
                .iter()
                .map(|w| (**w.report.load()).clone())
                .collect();
            for (warn, line) in watchdog.check(last_watch, &reports) {
                if warn {
                    log::warn(format_args!("{line}"));
                } else {
                    log::info(format_args!("{line}"));
                }
            }
            let exited = workers.iter().enumerate().filter(|(_, w)| w.is_finished());
            let problems = exited
                .map(|(id, _)| format!("worker {id} exited"))
                .chain(watchdog.stalled(last_watch))
                .collect();
            health.set_worker_problems(problems);
        }
        if last_retry.elapsed() >= RETRY_INTERVAL {
            last_retry = Instant::now();
            let pending = manager
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .has_pending();
            if pending {
                source.request_sync();
            }
            if checks.has_failures() {
                checks.update(node_ip(&settings), &health_services.load());
            }
        }
    }
    log::info(format_args!("stopping: draining"));
    health.drain();
    context.stop.store(true, Ordering::Relaxed);
    let mut stopped = Vec::new();
    for (id, worker) in workers.into_iter().enumerate() {
        match worker.join() {
            Ok(worker) => stopped.push(worker),
            Err(error) => log::error(format_args!("worker {id}: {error}")),
        }
    }
    // Close the devices first (a TAP queue left open would still be chosen for frames), all
    // at once: closing an AF_PACKET socket waits for an RCU grace period.
    close_devices(stopped);
    drop(checks);
    drop(serving);
    let _ = std::fs::remove_file(&settings.admin.socket);
    log::info(format_args!("stopped"));
    Ok(())
}

pub(super) fn clock() -> SyncClock {
    SyncClock::now(monotonic_secs())
}

fn pod_mtu(settings: &NodeSettings) -> u16 {
    let local = &settings.local;
    super::config::underlay6::pod_mtu(local.underlay_mtu, local.overlay, local.node_ip6)
}

fn check_cores(settings: &NodeSettings) -> Result<(), String> {
    if settings.cores.is_empty() {
        return Ok(());
    }
    let allowed = allowed_cpus().map_err(|e| format!("reading the CPU affinity: {e}"))?;
    match settings.cores.iter().find(|c| !allowed.contains(c)) {
        Some(core) => Err(format!(
            "workers.cores: CPU {core} is not available to this process (allowed: {allowed:?})"
        )),
        None => Ok(()),
    }
}

fn watch_signals() -> Result<Receiver<i32>, String> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fp-signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(signal).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    Ok(rx)
}

fn wait_signal(signals: &Receiver<i32>, timeout: Duration) -> Option<i32> {
    signals.recv_timeout(timeout).ok()
}

/// Closes every device of the stopped workers, in parallel.
fn close_devices(workers: Vec<Worker<NodePort>>) {
    std::thread::scope(|scope| {
        for mut worker in workers {
            for port in worker.ports.drain(..).flatten() {
                scope.spawn(move || drop(port));
            }
        }
    });
}

/// The sync's latest input problem while its input is degraded (for `/healthz`).
fn input_problem(metrics: &crate::sync::metrics::SyncMetrics) -> Option<String> {
    let input = &metrics.input;
    input.degraded.then(|| {
        input
            .last_error
            .clone()
            .unwrap_or_else(|| "input degraded".to_owned())
    })
}
