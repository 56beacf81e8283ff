//! ferroplane on the same topology, built by the testbed library (`testbed up` with our own
//! manifest: the client pod on node 1, the backends on node 2, the Services), then each
//! node's `ferroplane run` restarted pinned to the dataplane CPU with a flow table as large as
//! the kernel's conntrack table (and, with `--worker-sched` / `--worker-idle`, the workers'
//! scheduling policy and idle mode).
//!
//! Invariants: pods declare no container ports, so the testbed starts no server in them (the
//! comparison's own servers answer); the restarted process starts with an empty flow table
//! (its flow-state file is removed while no process holds it) and is reported up only once healthy and attached to every
//! pod; Services are only ever added (decoys for the scale test), through `ferroplane apply`.

use std::fmt::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};
use testbed::error::{Error, context};
use testbed::lifecycle::{UpOptions, apply, up};
use testbed::nodes::{NodeTuning, admin_get, wait_attached};
use testbed::run_state::{Io, Mode, NodeRecord, RunState};

use testbed::layout::node_name;

use super::plan::{Cluster, PODS, PodAddr, layout};
use super::services::{Selects, ServiceSpec};
use super::worker_idle::{WorkerIdle, with_worker_idle};
use super::worker_sched::{WorkerSched, with_worker_scheduling};
use super::{Result, Teardown};

/// The flow table of each node: the kernel's default `nf_conntrack_max` on this machine.
pub const FLOW_TABLE: usize = 262_144;
const EXIT_WITHIN: Duration = Duration::from_secs(10);
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

/// The workers' settings the harness writes (none: the node's default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Workers {
    pub sched: Option<WorkerSched>,
    pub idle: Option<WorkerIdle>,
}

/// A built ferroplane cluster.
pub struct FerroplaneBuild {
    state: RunState,
    cluster: Cluster,
    manifest: PathBuf,
    _nodes: Restarted,
    _teardown: Teardown,
}

/// The pods and `services` as Kubernetes manifests.
pub fn manifest(services: &[ServiceSpec]) -> String {
    let mut out = String::new();
    for (index, pod) in PODS.iter().enumerate() {
        let labels = match index {
            0 => "app: bench-client".to_owned(),
            1 => "app: bench-backend\n    bulk: \"yes\"".to_owned(),
            _ => "app: bench-backend".to_owned(),
        };
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  labels:\n    {labels}\nspec:\n  nodeName: {}\n  containers:\n  - name: app\n    image: bench\n---\n",
            pod.name,
            node_name(pod.node)
        );
    }
    for service in services {
        let selector = match service.selects {
            Selects::AllBackends => "app: bench-backend",
            Selects::FirstBackend => "bulk: \"yes\"",
        };
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {}\nspec:\n  clusterIP: {}\n  selector:\n    {selector}\n  ports:\n",
            service.name, service.cluster_ip
        );
        for port in &service.ports {
            let _ = write!(
                out,
                "  - name: {}\n    protocol: {}\n    port: {}\n    targetPort: {}\n",
                port.name,
                port.protocol.upper(),
                port.port,
                port.target
            );
        }
        out.push_str("---\n");
    }
    out
}

/// Brings the cluster up with `services`, each node's dataplane using `io` for its pods and
/// pinned, with every thread, to `cpu`; `workers`' settings, where given, written into the
/// node configuration.
pub fn build(
    ferroplane: &Path,
    io: Io,
    services: &[ServiceSpec],
    cpu: usize,
    workers: Workers,
) -> Result<FerroplaneBuild> {
    let teardown = Teardown::begin()?;
    let layout = layout()?;
    let staging = std::env::temp_dir().join(format!("fpcmp-{}.yaml", std::process::id()));
    std::fs::write(&staging, manifest(services)).map_err(context(staging.display()))?;
    let options = UpOptions {
        nodes: super::plan::NODES,
        io,
        mode: Mode::Vxlan,
        manifests: vec![staging.clone()],
        ferroplane: ferroplane.to_owned(),
        tuning: NodeTuning::default(),
        ip_family: Default::default(),
    };
    let state = up(&layout, &options);
    let _ = std::fs::remove_file(&staging);
    let state = state?;
    let manifest = layout.run_dir().join("bench.yaml");
    let cluster = cluster_of(&state)?;
    let mut nodes = Vec::new();
    for node in &state.nodes {
        let rewrite = |config: &str| -> Result<String> {
            let mut fresh = with_flow_table(config, FLOW_TABLE)?;
            if let Some(sched) = workers.sched {
                fresh = with_worker_scheduling(&fresh, sched)?;
            }
            if let Some(idle) = workers.idle {
                fresh = with_worker_idle(&fresh, idle)?;
            }
            Ok(fresh)
        };
        nodes.push(restart(ferroplane, node, Some(cpu), &rewrite)?);
    }
    for pod in &state.pods {
        let node = state
            .node(&pod.node)
            .ok_or_else(|| Error(format!("pod {} on unknown node {}", pod.name, pod.node)))?;
        wait_attached(node, &pod.namespace, &pod.name)?;
    }
    Ok(FerroplaneBuild {
        state,
        cluster,
        manifest,
        _nodes: Restarted(nodes),
        _teardown: teardown,
    })
}

fn cluster_of(state: &RunState) -> Result<Cluster> {
    let addr = |name: &str| -> Result<PodAddr> {
        let pod = state
            .pod(name)
            .ok_or_else(|| Error(format!("the testbed did not start pod {name}")))?;
        Ok(PodAddr {
            name: pod.name.clone(),
            ns: pod.netns.clone(),
            ip: pod.ip,
        })
    };
    Ok(Cluster {
        client: addr(PODS[0].name)?,
        backends: PODS[1..]
            .iter()
            .map(|p| addr(p.name))
            .collect::<Result<_>>()?,
        nodes: state.nodes.iter().map(|n| n.netns.clone()).collect(),
    })
}

/// Stops the testbed's `ferroplane run` of `node` and starts it again with its configuration
/// passed through `rewrite` (and an empty flow table), all its threads on `cpu` if given
/// (else default affinity); returns once it is healthy.
pub fn restart(
    ferroplane: &Path,
    node: &NodeRecord,
    cpu: Option<usize>,
    rewrite: &dyn Fn(&str) -> Result<String>,
) -> Result<Child> {
    let config = std::fs::read_to_string(&node.config).map_err(context(node.config.display()))?;
    let fresh = rewrite(&config)?;
    std::fs::write(&node.config, fresh).map_err(context(node.config.display()))?;
    let pid = i32::try_from(node.pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Error(format!("node {}: bad pid {}", node.name, node.pid)))?;
    kill_process(pid, Signal::TERM).map_err(context(format!("stopping {}", node.name)))?;
    let started = Instant::now();
    while running(node.pid) {
        if started.elapsed() > EXIT_WITHIN {
            return Err(Error(format!("ferroplane on {} did not stop", node.name)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The testbed started it from this process and let go of it: reap it (an error only
    // means it was not our child).
    let _ = waitpid(Some(pid), WaitOptions::NOHANG);
    if let Some(file) = flow_state_file(&config) {
        // No process holds it now: removing it starts the new size with an empty table.
        let _ = std::fs::remove_file(file);
    }
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&node.log)
        .map_err(context(node.log.display()))?;
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &node.netns]);
    if let Some(cpu) = cpu {
        command.args(["taskset", "-c", &cpu.to_string()]);
    }
    let mut child = command
        .arg(ferroplane)
        .arg("run")
        .arg("--config")
        .arg(&node.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(context(format!("restarting ferroplane on {}", node.name)))?;
    let started = Instant::now();
    while started.elapsed() < HEALTHY_WITHIN {
        if let Some(status) = child.try_wait()? {
            return Err(Error(format!(
                "ferroplane on {} exited ({status}); log: {}",
                node.name,
                node.log.display()
            )));
        }
        if admin_get(&node.admin_socket, "/healthz").is_some_and(|(status, _)| status == 200) {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error(format!(
        "restarted ferroplane on {} not healthy; log: {}",
        node.name,
        node.log.display()
    )))
}

/// Whether `pid` runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The file the node keeps its flow table in across restarts (`flowState`, or `handoff` in
/// older configurations), if the configuration names one.
fn flow_state_file(config: &str) -> Option<PathBuf> {
    config.lines().find_map(|line| {
        let value = line
            .strip_prefix("flowState:")
            .or_else(|| line.strip_prefix("handoff:"))?;
        Some(PathBuf::from(value.trim()))
    })
}

/// `config` (a testbed `node.yaml`) with `conntrack.maxEntries` set to `entries`.
fn with_flow_table(config: &str, entries: usize) -> Result<String> {
    let mut found = false;
    let lines: Vec<String> = config
        .lines()
        .map(|line| match line.split_once("maxEntries:") {
            Some((indent, _)) => {
                found = true;
                format!("{indent}maxEntries: {entries}")
            }
            None => line.to_owned(),
        })
        .collect();
    if !found {
        return Err(Error("node.yaml has no conntrack.maxEntries".to_owned()));
    }
    Ok(lines.join("\n") + "\n")
}

impl FerroplaneBuild {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Applies `services` (a superset of what is there: Services are only added).
    pub fn program(&mut self, services: &[ServiceSpec]) -> Result<()> {
        std::fs::write(&self.manifest, manifest(services))
            .map_err(context(self.manifest.display()))?;
        apply(
            &layout()?,
            &mut self.state,
            std::slice::from_ref(&self.manifest),
        )
        .map(|_| ())
    }
}

/// Node processes the harness restarted: stopped and reaped when dropped.
pub struct Restarted(pub Vec<Child>);

impl Drop for Restarted {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // The namespace teardown signals it; reap it so no zombie stays behind.
            if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::TERM);
            }
            let deadline = Instant::now() + EXIT_WITHIN;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::services::{bench_service, bulk_service};

    #[test]
    fn the_flow_table_line_is_rewritten_in_place() {
        let config =
            "workers:\n  count: 1\nconntrack:\n  maxEntries: 16384\nadmin:\n  socket: /x\n";
        let fresh = with_flow_table(config, 262_144).unwrap();
        assert_eq!(
            fresh,
            "workers:\n  count: 1\nconntrack:\n  maxEntries: 262144\nadmin:\n  socket: /x\n"
        );
        assert!(with_flow_table("workers:\n  count: 1\n", 1).is_err());
    }

    #[test]
    fn the_flow_state_file_is_read_from_the_config() {
        let config = "admin:\n  socket: /x\nflowState: /run/t/node-1/conntrack.shm\n";
        assert_eq!(
            flow_state_file(config),
            Some(PathBuf::from("/run/t/node-1/conntrack.shm"))
        );
        assert_eq!(
            flow_state_file("handoff: /dev/shm/a\n"),
            Some(PathBuf::from("/dev/shm/a"))
        );
        assert_eq!(flow_state_file("admin:\n  socket: /x\n"), None);
    }

    #[test]
    fn the_manifest_places_pods_and_selects_backends() {
        let text = manifest(&[bench_service(), bulk_service()]);
        assert_eq!(text.matches("kind: Pod").count(), 3);
        assert!(
            text.contains(
                "name: client\n  labels:\n    app: bench-client\nspec:\n  nodeName: node-1"
            )
        );
        assert!(text.contains(
            "name: backend-2\n  labels:\n    app: bench-backend\nspec:\n  nodeName: node-2"
        ));
        assert!(text.contains(
            "name: bulk\nspec:\n  clusterIP: 10.96.100.11\n  selector:\n    bulk: \"yes\""
        ));
        assert!(
            text.contains(
                "  - name: sink\n    protocol: UDP\n    port: 9000\n    targetPort: 9000\n"
            )
        );
        assert!(!text.contains("containerPort"));
    }
}
