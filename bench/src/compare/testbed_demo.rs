//! `compare --testbed`: the testbed's demo cluster as `testbed up` brings it up (the demo
//! manifests, ferroplane per node with the testbed's own node configuration: one worker,
//! default affinity), plus two Services that select the demo's `store-db` pod on node 2:
//! `bench-rr` at the `bench` ClusterIP and ports, `bench-bulk` at `bulk`'s (iperf3); the
//! client is the demo's `store-fe` on node 1. The harness's servers and iperf3 answer in
//! `store-db` beside the pod's own server (other ports).
//!
//! Invariants: nothing of the testbed's node processes is changed (no pinning, no receive
//! steering; a restart only with `--worker-idle` or `--testbed-workers per-cpu`, which change
//! nothing but the workers' idle mode and placement): the figure is the testbed's as it runs; everything is made under
//! the comparison's prefix, so one teardown removes it, on error and on panic alike.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use testbed::error::{Error, context};
use testbed::lifecycle::{DEMO_APPLIED, DEMO_DIR, UpOptions, up};
use testbed::nodes::wait_attached;
use testbed::run_state::{Io, Mode, RunState};

use super::ferroplane::{self, Restarted};
use super::plan::{Cluster, PodAddr, layout};
use super::services::{ServiceSpec, bench_service, bulk_service};
use super::worker_idle::{WorkerIdle, with_worker_idle};
use super::worker_placement::{Placement, with_placement};
use super::{Result, Teardown};

/// The demo pod the requests come from (node 1).
pub const CLIENT_POD: &str = "store-fe";
/// The demo pod that answers them (node 2), selected by `bench-rr`.
pub const BACKEND_POD: &str = "store-db";
const BACKEND_SELECTOR: &str = "{app: store, role: db}";

/// The demo cluster, up.
pub struct TestbedBuild {
    cluster: Cluster,
    _nodes: Restarted,
    _state: RunState,
    _teardown: Teardown,
}

/// A Service `name` with `service`'s ClusterIP and ports, selecting [`BACKEND_POD`].
pub fn service_manifest(name: &str, service: &ServiceSpec) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  clusterIP: {}\n  selector: {BACKEND_SELECTOR}\n  ports:\n",
        service.cluster_ip
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
    out
}

/// `bench-rr` (`bench`'s address and ports) and `bench-bulk` (`bulk`'s), one manifest.
pub fn services_manifest() -> String {
    format!(
        "{}---\n{}",
        service_manifest("bench-rr", &bench_service()),
        service_manifest("bench-bulk", &bulk_service())
    )
}

/// The demo manifests `testbed up` applies, then the Services in `staging`.
pub fn manifests(staging: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = DEMO_APPLIED
        .iter()
        .map(|f| PathBuf::from(DEMO_DIR).join(f))
        .collect();
    files.push(staging.to_owned());
    files
}

/// Brings the demo cluster up with its pods on `io`; with `idle` or a placement other than
/// the default, each node's process is then restarted with that `workers.idle` /
/// `workers.spin` and its workers placed as `placement` says.
pub fn build(
    ferroplane: &Path,
    io: Io,
    idle: Option<WorkerIdle>,
    placement: Placement,
) -> Result<TestbedBuild> {
    let teardown = Teardown::begin()?;
    let layout = layout()?;
    let staging = std::env::temp_dir().join(format!("fpcmp-rr-{}.yaml", std::process::id()));
    std::fs::write(&staging, services_manifest()).map_err(context(staging.display()))?;
    let options = UpOptions {
        nodes: super::plan::NODES,
        io,
        mode: Mode::Vxlan,
        manifests: manifests(&staging),
        ferroplane: ferroplane.to_owned(),
        tuning: testbed::nodes::NodeTuning::default(),
        ip_family: Default::default(),
    };
    let state = up(&layout, &options);
    let _ = std::fs::remove_file(&staging);
    let state = state?;
    let mut nodes = Vec::new();
    if idle.is_some() || placement != Placement::Default {
        let rewrite = |config: &str| {
            let config = with_placement(config, placement)?;
            match idle {
                Some(idle) => with_worker_idle(&config, idle),
                None => Ok(config),
            }
        };
        for node in &state.nodes {
            nodes.push(ferroplane::restart(ferroplane, node, None, &rewrite)?);
        }
        for pod in &state.pods {
            let node = state
                .node(&pod.node)
                .ok_or_else(|| Error(format!("pod {} on unknown node {}", pod.name, pod.node)))?;
            wait_attached(node, &pod.namespace, &pod.name)?;
        }
    }
    let addr = |name: &str| -> Result<PodAddr> {
        let pod = state
            .pod(name)
            .ok_or_else(|| Error(format!("the demo cluster has no pod {name}")))?;
        Ok(PodAddr {
            name: pod.name.clone(),
            ns: pod.netns.clone(),
            ip: pod.ip,
        })
    };
    let cluster = Cluster {
        client: addr(CLIENT_POD)?,
        backends: vec![addr(BACKEND_POD)?],
        nodes: state.nodes.iter().map(|n| n.netns.clone()).collect(),
    };
    Ok(TestbedBuild {
        cluster,
        _nodes: Restarted(nodes),
        _state: state,
        _teardown: teardown,
    })
}

impl TestbedBuild {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_selects_the_demo_db_at_the_bench_address() {
        let text = services_manifest();
        assert!(text.contains(
            "name: bench-rr\nspec:\n  clusterIP: 10.96.100.10\n  selector: {app: store, role: db}\n"
        ));
        assert!(text.contains("  - name: echo\n    protocol: UDP\n    port: 9001\n"));
        assert!(text.contains(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: bench-bulk\nspec:\n  clusterIP: 10.96.100.11\n"
        ));
        assert!(text.contains("    protocol: TCP\n    port: 5201\n    targetPort: 5201\n"));
        let files = manifests(Path::new("/tmp/x.yaml"));
        assert_eq!(files.len(), DEMO_APPLIED.len() + 1);
        assert!(files[2].ends_with("10-store-app.yaml"), "{files:?}");
        assert!(
            files
                .iter()
                .all(|f| f.is_file() || f == Path::new("/tmp/x.yaml"))
        );
    }

    #[test]
    fn the_demo_places_the_client_and_the_backend_on_different_nodes() {
        let app =
            std::fs::read_to_string(PathBuf::from(DEMO_DIR).join("10-store-app.yaml")).unwrap();
        let node_of = |pod: &str| {
            let rest = &app[app.find(&format!("name: {pod}\n")).unwrap()..];
            rest.lines()
                .find_map(|l| l.trim().strip_prefix("nodeName: "))
                .unwrap()
                .to_owned()
        };
        assert_eq!(node_of(CLIENT_POD), "node-1");
        assert_eq!(node_of(BACKEND_POD), "node-2");
        assert!(app.contains("labels: {app: store, role: db}"));
    }
}
