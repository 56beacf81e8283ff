//! `testbed soak`: a whole cluster under steady mixed load for a bounded time while it
//! changes, with a verdict at the end. It brings its own testbed up (the demo plus
//! [`plan::OBJECTS`]), runs the load from two client pods (new TCP connections and UDP
//! requests to the churned store-be Service, DNS lookups through kube-dns, long-lived TCP
//! connections to `soak-held`) and the intruder, makes [`plan::CYCLE`]'s changes one every
//! step (endpoint churn, a crashed and re-created backend, a policy on and off, each node's
//! ferroplane restarted and SIGKILLed), samples every node process, and reports per minute.
//!
//! Invariants: the soak ends by itself after its duration (or at once on SIGINT/SIGTERM, a
//! second one exits); the testbed is taken down at the end whatever happened (unless `keep`);
//! the report is written even when the verdict fails.

pub mod changes;
pub mod plan;
pub mod record;
pub mod report;
pub mod sample;
pub mod traffic;
pub mod verdict;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use hickory_proto::rr::Name;

use crate::cluster::Ferroplane;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::lifecycle::{self, DEMO_APPLIED, DEMO_DIR, UpOptions};
use crate::netns;
use crate::nodes::NodeTuning;
use crate::run_state::{Io, Mode, RunState};
use crate::teardown;
use changes::Changer;
use record::{Recorder, Traffic};
use verdict::{Bounds, Judged, Verdict};

/// The shortest and longest soak.
pub const MIN_DURATION: Duration = Duration::from_secs(60);
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Load only, before the first change.
const WARM_UP: Duration = Duration::from_secs(10);
/// No new change this close to the end (only what undoes one still in effect).
const QUIET: Duration = Duration::from_secs(15);
const NEW_TCP_INTERVAL: Duration = Duration::from_millis(50);
const UDP_INTERVAL: Duration = Duration::from_millis(250);
const DNS_INTERVAL: Duration = Duration::from_millis(250);
/// Long-lived connections per client pod.
const HELD_PER_CLIENT: usize = 3;

pub struct SoakOptions {
    pub duration: Duration,
    /// Time between changes (default: the cycle fits about every 1/N of the run, 8 to 30 s).
    pub step: Option<Duration>,
    pub io: Io,
    pub ferroplane: PathBuf,
    /// The JSON report (the CSV of samples goes beside it).
    pub report: PathBuf,
    pub sample_every: Duration,
    /// Leave the testbed up at the end.
    pub keep: bool,
}

/// The step between changes: one cycle in the time between warm-up and the quiet tail,
/// between 8 and 30 seconds.
pub fn default_step(duration: Duration) -> Duration {
    let cycle = u32::try_from(plan::CYCLE.len()).unwrap_or(1);
    (duration.saturating_sub(WARM_UP + QUIET) / cycle)
        .clamp(Duration::from_secs(8), Duration::from_secs(30))
}

/// Brings the testbed up, soaks it, takes it down; returns the verdict and the table.
pub fn run(layout: &Layout, options: &SoakOptions) -> Result<(Verdict, String)> {
    if !(MIN_DURATION..=MAX_DURATION).contains(&options.duration) {
        return Err(Error(format!(
            "--duration: {}s to {}s",
            MIN_DURATION.as_secs(),
            MAX_DURATION.as_secs()
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal exits at once (`testbed down` then cleans up).
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let up = UpOptions {
        nodes: 2,
        io: options.io,
        mode: Mode::Vxlan,
        manifests: DEMO_APPLIED
            .iter()
            .map(|f| PathBuf::from(DEMO_DIR).join(f))
            .collect(),
        ferroplane: options.ferroplane.clone(),
        tuning: NodeTuning::default(),
        ip_family: Default::default(),
    };
    eprintln!("soak: bringing testbed {} up", layout.prefix);
    let result = lifecycle::up(layout, &up).and_then(|state| soak(layout, state, options, stop));
    if !options.keep
        && let Err(e) = teardown::down(layout)
    {
        eprintln!("soak: testbed down: {e}");
    }
    result
}

struct Targets {
    tcp: SocketAddr,
    udp: SocketAddr,
    held: SocketAddr,
    dns: SocketAddr,
    dns_answer: Ipv4Addr,
}

fn cluster_ip(control: &Ferroplane, service: &str) -> Result<Ipv4Addr> {
    let svc = control.get("service", "default", service)?;
    svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| Error(format!("Service {service} has no clusterIP")))
}

fn netns_of(state: &RunState, pod: &str) -> Result<String> {
    Ok(state
        .pod(pod)
        .ok_or_else(|| Error(format!("no pod {pod}")))?
        .netns
        .clone())
}

fn soak(
    layout: &Layout,
    mut state: RunState,
    options: &SoakOptions,
    stop: Arc<AtomicBool>,
) -> Result<(Verdict, String)> {
    let dir = layout.run_dir().join("soak");
    let objects = changes::write_manifest(&dir, "soak", plan::OBJECTS)?;
    lifecycle::apply(layout, &mut state, &[objects])?;
    let control = Ferroplane {
        bin: state.ferroplane.clone(),
        state_dir: state.state_dir.clone(),
    };
    let tcp_ip = cluster_ip(&control, plan::TCP_SERVICE)?;
    let targets = Targets {
        tcp: SocketAddr::from((tcp_ip, 80)),
        udp: SocketAddr::from((cluster_ip(&control, plan::UDP_SERVICE)?, 80)),
        held: SocketAddr::from((cluster_ip(&control, plan::HELD_SERVICE)?, 80)),
        dns: SocketAddr::from((plan::DNS_IP, 53)),
        dns_answer: tcp_ip,
    };
    let clients: Vec<(String, String)> = plan::CLIENTS
        .iter()
        .map(|c| Ok(((*c).to_owned(), netns_of(&state, c)?)))
        .collect::<Result<_>>()?;
    let intruder_ns = netns_of(&state, plan::INTRUDER)?;
    let dns_name =
        Name::from_ascii(plan::DNS_NAME).map_err(|e| Error(format!("{}: {e}", plan::DNS_NAME)))?;
    let step = options
        .step
        .unwrap_or_else(|| default_step(options.duration));
    let started_unix_ms = crate::load::unix_ms();
    eprintln!(
        "soak: {} s of load, a change every {} s; report {}",
        options.duration.as_secs(),
        step.as_secs(),
        options.report.display()
    );

    let recorder = Recorder::new(options.duration, stop);
    let mut changer = Changer {
        layout,
        state,
        dir,
        added: Vec::new(),
        scale_ups: 0,
        policy_on: false,
        churned_unready: false,
    };
    let dns_id = AtomicU16::new(1);
    let samples = std::thread::scope(|scope| {
        let recorder = &recorder;
        let targets = &targets;
        let dns_name = &dns_name;
        let dns_id = &dns_id;
        let mut load = Vec::new();
        for (client, ns) in &clients {
            load.push(scope.spawn(move || {
                netns::within(ns, || {
                    client_load(recorder, client, targets, dns_name, dns_id);
                    Ok(())
                })
            }));
        }
        let intruder_ns = &intruder_ns;
        load.push(scope.spawn(move || {
            netns::within(intruder_ns, || {
                traffic::intruder(recorder, plan::INTRUDER, targets.tcp);
                Ok(())
            })
        }));
        let sampler =
            scope.spawn(move || sample_until_over(layout, recorder, options.sample_every));
        changer.run(recorder, WARM_UP, step, options.duration, QUIET);
        for thread in load {
            if let Ok(Err(e)) = thread.join() {
                eprintln!("soak: load: {e}");
                recorder.stop();
            }
        }
        sampler.join().unwrap_or_default()
    });
    let stopped_early = recorder.stopped_early();
    let mut recorded = recorder.into_recorded();
    let bounds = Bounds::default();
    let (leaks, denied) = verdict::judge_intruder(&mut recorded, &bounds);
    verdict::place_failures(&mut recorded, &bounds);
    recorded.failures.sort_by_key(|f| f.at_ms);
    let growth = verdict::growth(&samples, &bounds);
    let verdict = verdict::verdict(
        &Judged {
            recorded: &recorded,
            samples: &samples,
            growth: &growth,
            leaks: &leaks,
            denied,
            stopped_early,
        },
        &bounds,
    );
    let minutes = report::minutes(&recorded, &samples, options.duration.as_secs().div_ceil(60));
    let table = report::table(&minutes, &verdict);
    report::write(
        &options.report,
        &report::Document {
            prefix: &layout.prefix,
            duration_s: options.duration.as_secs(),
            step_s: step.as_secs(),
            started_unix_ms,
            bounds,
            verdict: &verdict,
            minutes: &minutes,
            growth: &growth,
            changes: &recorded.windows,
            failures: &recorded.failures,
            held: &recorded.held,
            samples: &samples,
        },
    )?;
    Ok((verdict, table))
}

/// One client pod's load; runs inside its namespace until the soak is over.
fn client_load(
    recorder: &Recorder,
    client: &str,
    targets: &Targets,
    dns_name: &Name,
    dns_id: &AtomicU16,
) {
    std::thread::scope(|scope| {
        for _ in 0..HELD_PER_CLIENT {
            scope.spawn(|| recorder.held(traffic::held(recorder, client, targets.held)));
        }
        scope.spawn(|| {
            traffic::paced(recorder, NEW_TCP_INTERVAL, || {
                let at = recorder.now_ms();
                let failed = traffic::new_tcp(targets.tcp);
                recorder.request(Traffic::NewTcp, client, at, failed);
            });
        });
        scope.spawn(|| {
            traffic::paced(recorder, UDP_INTERVAL, || {
                let at = recorder.now_ms();
                let failed = traffic::udp(targets.udp);
                recorder.request(Traffic::Udp, client, at, failed);
            });
        });
        traffic::paced(recorder, DNS_INTERVAL, || {
            let at = recorder.now_ms();
            let id = dns_id.fetch_add(1, Ordering::Relaxed);
            let failed = traffic::lookup(targets.dns, dns_name, targets.dns_answer, id);
            recorder.request(Traffic::Dns, client, at, failed);
        });
    });
}

/// Samples every node process every `every` until the soak is over.
fn sample_until_over(layout: &Layout, recorder: &Recorder, every: Duration) -> Vec<sample::Sample> {
    let mut samples = Vec::new();
    let mut next = Duration::ZERO;
    loop {
        recorder.sleep_until(next);
        if recorder.over() {
            return samples;
        }
        // restart-node rewrites state.json with the new pid; read it each time.
        if let Ok(state) = RunState::load(layout) {
            for node in &state.nodes {
                samples.push(sample::sample(recorder.now_ms(), node));
            }
        }
        next += every;
    }
}
