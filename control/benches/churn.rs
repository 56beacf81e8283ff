//! The churn benchmark (issue #18): a node's programming latency, CPU and memory at cluster
//! scale under sustained endpoint and Service churn, for both sources.
//!
//! ```text
//! cargo bench -p control --bench churn -- [--nodes 5000] [--services 10000]
//!     [--endpoints 100000] [--policies 1000] [--rates 100,1000,10000] [--seconds 10]
//!     [--sources state,kubernetes] [--kinds endpoints,services] [--out DIR] [--no-memory]
//! ```
//!
//! Per source: a cold start (the state directory written, or the recorded API server's lists
//! served, then the real source of `ferroplane run` started: `node::source::Starter`), then
//! for each kind and rate a run of `--seconds` in which a writer thread produces changes at
//! that rate: for the state directory, commits through `StateDir::write_commit` (the
//! transaction's own write path: fsynced files, change log, generation) every 10 ms holding
//! the changes due; for Kubernetes, watch events pushed to the recorded API server
//! (`tests/kube_source/server.rs`) as they fall due. The node side waits as the daemon does
//! (`Source::wait_for_change`: the Kubernetes source wakes on a watch event and gathers a burst
//! for `BATCH_WINDOW`; the state directory is polled every 10 ms). Each change carries its due time as the trigger-time annotation, so the
//! latency is event to live table, queueing in the writer included. CPU per change counts the
//! node's threads only (the polling thread and, for Kubernetes, the watcher thread). RSS is
//! sampled every second. Results: `DIR/churn.json`, `DIR/churn.md`, `DIR/churn.svg`.

#[path = "churn/cluster.rs"]
mod cluster;
#[path = "churn/measure.rs"]
mod measure;
#[path = "churn/report.rs"]
mod report;
#[path = "../tests/kube_source/server.rs"]
#[allow(dead_code, clippy::unwrap_used)]
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use control::compile::{NodeLocal, PortAssignments};
use control::kube_source::KubeSourceConfig;
use control::model::{Kind, Object, ObjectRef};
use control::node::config::SourceSettings;
use control::node::source::{Source, SourceInputs, Starter};
use control::store::StateDir;
use control::sync::{DEFAULT_RESYNC_INTERVAL, PollOutcome, PortSource, SyncClock};
use serde_json::Value;

use cluster::Scale;
use report::{ColdStart, Run};

#[global_allocator]
static ALLOC: measure::Counting = measure::Counting;

const NODE: &str = "n0000";
const POLL_INTERVAL: Duration = Duration::from_millis(10);
const COMMIT_INTERVAL: Duration = Duration::from_millis(10);

struct Args {
    scale: Scale,
    rates: Vec<u32>,
    seconds: u64,
    sources: Vec<String>,
    kinds: Vec<String>,
    out: PathBuf,
    memory: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        scale: Scale {
            nodes: 5000,
            services: 10_000,
            endpoints: 100_000,
            policies: 1000,
        },
        rates: vec![100, 1000, 10_000],
        seconds: 10,
        sources: vec!["state".to_owned(), "kubernetes".to_owned()],
        kinds: vec!["endpoints".to_owned(), "services".to_owned()],
        out: PathBuf::from("target/churn"),
        memory: true,
    };
    let mut it = std::env::args().skip(1);
    let list = |v: Option<String>| -> Vec<String> {
        v.unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    let number = |v: Option<String>, what: &str| -> usize {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what} needs a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--nodes" => args.scale.nodes = number(it.next(), "--nodes"),
            "--services" => args.scale.services = number(it.next(), "--services"),
            "--endpoints" => args.scale.endpoints = number(it.next(), "--endpoints"),
            "--policies" => args.scale.policies = number(it.next(), "--policies"),
            "--seconds" => args.seconds = number(it.next(), "--seconds") as u64,
            "--rates" => {
                args.rates = list(it.next())
                    .iter()
                    .map(|r| r.parse().unwrap_or_else(|_| panic!("bad rate {r}")))
                    .collect();
            }
            "--sources" => args.sources = list(it.next()),
            "--kinds" => args.kinds = list(it.next()),
            "--out" => args.out = PathBuf::from(it.next().unwrap_or_default()),
            "--no-memory" => args.memory = false,
            // `cargo bench` passes `--bench`; criterion-style filters are not used here.
            _ => {}
        }
    }
    args
}

/// Where changes go: the state directory or the recorded API server.
enum Feed {
    State(StateDir),
    Kube(Arc<server::RecordedApi>),
}

/// Produces the changes of one run.
struct Churn {
    scale: Scale,
    kind: &'static str,
    next: u64,
    /// Per Service: flipped state of its slice / its affinity.
    flipped: Vec<bool>,
    version: Arc<AtomicU64>,
}

impl Churn {
    /// The next change as `(collection, JSON)`, stamped `trigger`.
    fn next(&mut self, trigger: &str) -> (&'static str, Value) {
        let s = ((self.next * 7919) % self.scale.services as u64) as usize;
        self.next += 1;
        let flip = !self.flipped[s];
        self.flipped[s] = flip;
        let version = self.version.fetch_add(1, Ordering::Relaxed);
        if self.kind == "services" {
            (
                "services",
                cluster::service(s, version, flip, Some(trigger)),
            )
        } else {
            let not_ready = flip.then_some(0);
            (
                "endpointslices",
                cluster::slice(&self.scale, s, version, not_ready, Some(trigger)),
            )
        }
    }
}

fn kind_of(collection: &str) -> Kind {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == collection)
        .unwrap_or_else(|| panic!("unknown collection {collection}"))
}

fn stored_bytes(collection: &str, value: &Value) -> (ObjectRef, Vec<u8>) {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let object = Object::from_json_slice(kind_of(collection), &bytes)
        .unwrap_or_else(|e| panic!("bench object {collection}: {e}"));
    (object.object_ref(), object.to_json_bytes())
}

fn rfc3339(at: SystemTime) -> String {
    jiff::Timestamp::try_from(at)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The writer thread of one run: changes at `rate` for `seconds`; returns how many it sent.
/// State directory commits done: `(generation, when, objects)`.
type Commits = Arc<std::sync::Mutex<Vec<(u64, Instant, usize)>>>;

fn write_changes(feed: &Feed, mut churn: Churn, rate: u32, seconds: u64, commits: &Commits) -> u64 {
    let start = Instant::now();
    let wall = SystemTime::now();
    let total = u64::from(rate) * seconds;
    let mut sent = 0;
    let mut generation = match feed {
        Feed::State(dir) => dir.read_generation().unwrap_or(0),
        Feed::Kube(_) => 0,
    };
    while sent < total {
        let due_at = |i: u64| Duration::from_secs_f64(i as f64 / f64::from(rate));
        let elapsed = start.elapsed();
        let due = ((elapsed.as_secs_f64() * f64::from(rate)) as u64 + 1).min(total);
        match feed {
            Feed::State(dir) => {
                if due > sent {
                    // One commit holds each object once (a transaction touches a key once).
                    let mut objects = std::collections::BTreeMap::new();
                    for i in sent..due {
                        let (collection, value) = churn.next(&rfc3339(wall + due_at(i)));
                        let (key, bytes) = stored_bytes(collection, &value);
                        objects.insert(key, Some(bytes));
                    }
                    let objects: Vec<_> = objects.into_iter().collect();
                    let lock = dir.lock_exclusive().unwrap_or_else(|e| panic!("{e}"));
                    generation += 1;
                    dir.write_commit(generation, &objects)
                        .unwrap_or_else(|e| panic!("{e}"));
                    drop(lock);
                    commits
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((generation, Instant::now(), objects.len()));
                    sent = due;
                }
                thread::sleep(COMMIT_INTERVAL.saturating_sub(start.elapsed() - elapsed));
            }
            Feed::Kube(api) => {
                for i in sent..due {
                    let (collection, value) = churn.next(&rfc3339(wall + due_at(i)));
                    let path = format!("/{}", api_path(collection));
                    api.push_event(
                        &path,
                        &serde_json::json!({"type": "MODIFIED", "object": value}),
                    );
                }
                sent = due;
                let next = start + due_at(sent);
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }
    }
    sent
}

fn api_path(collection: &str) -> &'static str {
    match collection {
        "namespaces" => "api/v1/namespaces",
        "nodes" => "api/v1/nodes",
        "pods" => "api/v1/pods",
        "services" => "api/v1/services",
        "endpointslices" => "apis/discovery.k8s.io/v1/endpointslices",
        _ => "apis/networking.k8s.io/v1/networkpolicies",
    }
}

fn list_kind(collection: &str) -> (&'static str, &'static str) {
    match collection {
        "namespaces" => ("NamespaceList", "v1"),
        "nodes" => ("NodeList", "v1"),
        "pods" => ("PodList", "v1"),
        "services" => ("ServiceList", "v1"),
        "endpointslices" => ("EndpointSliceList", "discovery.k8s.io/v1"),
        _ => ("NetworkPolicyList", "networking.k8s.io/v1"),
    }
}

/// Writes the cluster into a fresh state directory (plain writes: setup, not measured).
fn write_state_dir(root: &Path, scale: &Scale) -> StateDir {
    let dir = StateDir::new(root);
    dir.ensure_exists().unwrap_or_else(|e| panic!("{e}"));
    dir.write_settings(&cluster::settings())
        .unwrap_or_else(|e| panic!("{e}"));
    cluster::for_each_object(scale, |collection, value| {
        let (key, bytes) = stored_bytes(collection, &value);
        let path = dir.object_path(&key);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    });
    dir.write_commit(1, &[]).unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// Writes the recorded lists and starts the API server on them.
fn start_api(root: &Path, scale: &Scale) -> Arc<server::RecordedApi> {
    use std::io::Write;
    let files = [
        ("namespaces", "namespaces.json"),
        ("nodes", "nodes.json"),
        ("pods", "pods.json"),
        ("services", "services.json"),
        ("endpointslices", "endpointslices.json"),
        ("networkpolicies", "networkpolicies.json"),
    ];
    let mut writers: Vec<(String, std::io::BufWriter<std::fs::File>, bool)> = files
        .iter()
        .map(|(collection, file)| {
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(root.join(file)).unwrap_or_else(|e| panic!("{e}")),
            );
            let (kind, api_version) = list_kind(collection);
            let _ = write!(
                w,
                "{{\"kind\":\"{kind}\",\"apiVersion\":\"{api_version}\",\"metadata\":{{\"resourceVersion\":\"1000\"}},\"items\":["
            );
            ((*collection).to_owned(), w, true)
        })
        .collect();
    cluster::for_each_object(scale, |collection, value| {
        if let Some((_, w, first)) = writers.iter_mut().find(|(c, _, _)| c == collection) {
            if !*first {
                let _ = w.write_all(b",");
            }
            *first = false;
            let _ = serde_json::to_writer(&mut *w, &value);
        }
    });
    for (_, mut w, _) in writers {
        let _ = w.write_all(b"]}");
        let _ = w.flush();
    }
    Arc::new(server::RecordedApi::start(root))
}

fn kubeconfig(root: &Path, url: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: {url}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: nobody\ncurrent-context: bench\n"
    );
    let path = root.join("kubeconfig");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn ports() -> PortSource {
    Box::new(|state| PortAssignments::sequential(state, NODE))
}

fn inputs() -> SourceInputs<'static> {
    SourceInputs {
        node: NODE,
        local: NodeLocal::default(),
        conntracks: Vec::new(),
        resync: DEFAULT_RESYNC_INTERVAL,
    }
}

/// Starts the source as `ferroplane run` does, retrying while it is not ready.
fn start_source(settings: SourceSettings) -> Source {
    let mut starter = Starter::new(settings);
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut last_report = Instant::now();
    loop {
        match starter.try_start(inputs(), ports(), SyncClock::now(0)) {
            Ok(source) => return source,
            Err(error) if Instant::now() < deadline => {
                if last_report.elapsed() >= Duration::from_secs(5) {
                    eprintln!("churn: the source is not up yet: {error:?}");
                    last_report = Instant::now();
                }
                thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("the source did not start: {error:?}"),
        }
    }
}

/// The node's threads, for CPU accounting.
const NODE_THREADS: [&str; 1] = ["kube-source"];

/// What every run shares.
struct Shared<'a> {
    args: &'a Args,
    /// The next resourceVersion (increasing across runs, as the API server's).
    version: &'a Arc<AtomicU64>,
    /// When the benchmark began (the RSS series' time axis).
    origin: Instant,
}

fn run_once(
    source: &mut Source,
    feed: &Arc<Feed>,
    name: &str,
    kind: &'static str,
    rate: u32,
    shared: &Shared<'_>,
) -> Run {
    let (args, version, clock_origin) = (shared.args, shared.version, shared.origin);
    let churn = Churn {
        scale: args.scale,
        kind,
        next: u64::from(rate) * 7, // a different walk per run
        flipped: vec![false; args.scale.services],
        version: Arc::clone(version),
    };
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let commits: Commits = Arc::default();
    let writer = {
        let feed = Arc::clone(feed);
        let done = Arc::clone(&done);
        let sent = Arc::clone(&sent);
        let commits = Arc::clone(&commits);
        let seconds = args.seconds;
        thread::spawn(move || {
            let n = write_changes(&feed, churn, rate, seconds, &commits);
            sent.store(n, Ordering::Relaxed);
            done.store(true, Ordering::Relaxed);
        })
    };
    let cpu_before = measure::threads_cpu(&NODE_THREADS);
    let mut samples: Vec<Duration> = Vec::new();
    let mut from_commit: Vec<Duration> = Vec::new();
    let mut rss = Vec::new();
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let mut syncs = 0u64;
    let mut full_syncs = 0u64;
    let mut drain_until: Option<Instant> = None;
    loop {
        if let PollOutcome::Published {
            full,
            state_generation,
            ..
        } = source.poll(SyncClock::now(0))
        {
            syncs += 1;
            full_syncs += u64::from(full);
            samples.extend_from_slice(source.last_programming_latencies());
            let now = Instant::now();
            let mut done_commits = commits
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            done_commits.retain(|(generation, at, count)| {
                let live = *generation <= state_generation;
                if live {
                    from_commit.extend(std::iter::repeat_n(now - *at, *count));
                }
                !live
            });
        }
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            rss.push((
                clock_origin.elapsed().as_secs_f64(),
                measure::rss(),
                measure::live_heap(),
            ));
        }
        assert!(
            !writer.is_finished() || done.load(Ordering::Relaxed),
            "the writer thread died (see its panic above)"
        );
        if done.load(Ordering::Relaxed) {
            let total = sent.load(Ordering::Relaxed);
            let until = *drain_until.get_or_insert_with(|| Instant::now() + Duration::from_secs(5));
            if samples.len() as u64 >= total || Instant::now() > until {
                break;
            }
        }
        // As the daemon's loop: woken by a watch event (a bounded batching window), or polling
        // the state directory every interval.
        source.wait_for_change(POLL_INTERVAL);
    }
    let cpu = measure::threads_cpu(&NODE_THREADS) - cpu_before;
    let _ = writer.join();
    let sent = sent.load(Ordering::Relaxed);
    samples.sort();
    from_commit.sort();
    let run = Run {
        commit_p50_ms: measure::quantile_ms(&from_commit, 0.50),
        commit_p99_ms: measure::quantile_ms(&from_commit, 0.99),
        source: name.to_owned(),
        kind: kind.to_owned(),
        rate,
        sent,
        programmed: samples.len() as u64,
        syncs,
        full_syncs,
        p50_ms: measure::quantile_ms(&samples, 0.50),
        p99_ms: measure::quantile_ms(&samples, 0.99),
        max_ms: samples
            .last()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        cpu_us_per_change: cpu.as_secs_f64() * 1e6 / (samples.len().max(1) as f64),
        rss,
    };
    eprintln!("{}", run.line());
    run
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.out).unwrap_or_else(|e| panic!("{e}"));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "churn: {:?}, rates {:?}, {} s each; load average {}",
        args.scale,
        args.rates,
        args.seconds,
        load.trim()
    );
    let mut memory = None;
    if args.memory {
        memory = Some(report::memory_per_object(&args.scale));
    }
    let origin = Instant::now();
    let version = Arc::new(AtomicU64::new(2000));
    let mut colds = Vec::new();
    let mut runs = Vec::new();
    for name in &args.sources {
        let temp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let setup = Instant::now();
        let (feed, settings) = if name == "state" {
            let dir = write_state_dir(&temp.path().join("state"), &args.scale);
            (
                Feed::State(dir),
                SourceSettings::State(temp.path().join("state")),
            )
        } else {
            let api = start_api(temp.path(), &args.scale);
            let path = kubeconfig(temp.path(), &api.url());
            (
                Feed::Kube(api),
                SourceSettings::Kubernetes {
                    client: KubeSourceConfig {
                        kubeconfig: Some(path),
                        context: None,
                    },
                    cluster: cluster::settings(),
                },
            )
        };
        let setup = setup.elapsed();
        let heap_before = measure::live_heap();
        let rss_before = measure::rss();
        let cpu_before = measure::threads_cpu(&NODE_THREADS);
        let started = Instant::now();
        let mut source = start_source(settings);
        let cold = ColdStart {
            source: name.clone(),
            setup_s: setup.as_secs_f64(),
            start_s: started.elapsed().as_secs_f64(),
            cpu_s: (measure::threads_cpu(&NODE_THREADS) - cpu_before).as_secs_f64(),
            heap_bytes: measure::live_heap() - heap_before,
            rss_bytes: measure::rss() as i64 - rss_before as i64,
            rss_total: measure::rss(),
            problems: source.problems().len(),
        };
        eprintln!("{}", cold.line());
        colds.push(cold);
        let feed = Arc::new(feed);
        for kind in &args.kinds {
            let kind: &'static str = if kind == "services" {
                "services"
            } else {
                "endpoints"
            };
            for &rate in &args.rates {
                let shared = Shared {
                    args: &args,
                    version: &version,
                    origin,
                };
                runs.push(run_once(&mut source, &feed, name, kind, rate, &shared));
            }
        }
        drop(source);
    }
    report::write(
        &args.out,
        &args.scale,
        &load,
        memory.as_ref(),
        &colds,
        &runs,
    );
    eprintln!("churn: results in {}", args.out.display());
}
