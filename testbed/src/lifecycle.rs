//! `testbed up` and `testbed apply`: the state directory, the fabric and the cloud load
//! balancer, one ferroplane per node, and every Pod of the control plane brought up as a
//! namespace on its node.
//!
//! Invariants: `up` starts from a clean slate (leftovers of the same prefix are removed
//! first) and removes everything it made when any step fails; a Pod is wired only once the
//! control plane gave it an IP and placed it on a testbed node; `state.json` is saved after
//! every node and pod, so `down` and `status` see everything started so far; `apply` returns
//! only once every new pod's node has attached its port, and new pods turn ready only then
//! (see `pending`).

use std::path::PathBuf;

use crate::cloud_lb;
use crate::cluster::{Ferroplane, NodeInfo};
use crate::error::{Error, Result, context};
use crate::fabric;
use crate::layout::{Layout, MAX_NODES, node_ip, node_ip6, node_name};
use crate::nodes::{self, NodeTuning};
use crate::operations;
use crate::pending;
use crate::pods::{self, PodSpec};
use crate::resolv;
use crate::run_state::{Io, IpFamily, Mode, RunState};
use crate::teardown;

/// The demo manifests applied by `up` without `-f`, in order.
pub const DEMO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/demo");
pub const DEMO_APPLIED: [&str; 4] = [
    "00-nodes.yaml",
    "05-kube-dns.yaml",
    "10-store-app.yaml",
    "20-store-be-service.yaml",
];
/// The demo's NetworkPolicies, ready for `testbed apply -f`.
pub const DEMO_POLICY: &str = "30-store-policy.yaml";
pub const DEMO_NODES: &str = "00-nodes.yaml";

/// The internet host's server: how it answers, and on which ports (TCP and UDP).
pub const INTERNET_SERVER_NAME: &str = "internet";
pub const INTERNET_SERVER_PORTS: [u16; 2] = [80, 8080];

pub struct UpOptions {
    pub nodes: usize,
    pub io: Io,
    pub mode: Mode,
    pub manifests: Vec<PathBuf>,
    pub ferroplane: PathBuf,
    pub tuning: NodeTuning,
    /// IPv4 (the default), or dual-stack: nodes, pods, Services and the internet host in
    /// both families.
    pub ip_family: IpFamily,
}

/// Builds the whole testbed; on failure removes what was built and returns the error.
pub fn up(layout: &Layout, options: &UpOptions) -> Result<RunState> {
    if !(1..=MAX_NODES).contains(&options.nodes) {
        return Err(Error(format!("--nodes: 1 to {MAX_NODES}")));
    }
    if options.tuning.workers == 0 || options.tuning.conntrack_max == 0 {
        return Err(Error(
            "--workers and --conntrack-max: at least 1".to_owned(),
        ));
    }
    if options.ip_family == IpFamily::Ipv6 {
        return Err(Error(
            "--ip-family ipv6: IPv6-only pods are not programmed by the dataplane yet (pod \
             ports and MACs are keyed by the pod's IPv4 address); use --ip-family dual"
                .to_owned(),
        ));
    }
    teardown::down(layout)?;
    build(layout, options).inspect_err(|_| {
        // The error being returned says what failed; cleaning up is best effort.
        let _ = teardown::down(layout);
    })
}

fn build(layout: &Layout, options: &UpOptions) -> Result<RunState> {
    let run_dir = layout.run_dir();
    let state_dir = run_dir.join("state");
    std::fs::create_dir_all(&run_dir).map_err(context(run_dir.display()))?;
    let ferroplane = Ferroplane {
        bin: options.ferroplane.clone(),
        state_dir: state_dir.clone(),
    };
    ferroplane.init(options.ip_family)?;
    ferroplane.apply_text(&nodes_manifest(options.nodes, options.ip_family)?)?;
    let nodes: Vec<NodeInfo> = ferroplane.nodes()?;
    let mut state = RunState {
        prefix: layout.prefix.clone(),
        state_dir,
        ferroplane: options.ferroplane.clone(),
        io: options.io,
        mode: options.mode,
        ip_family: options.ip_family,
        nodes: Vec::new(),
        pods: Vec::new(),
    };
    state.save(layout)?;
    fabric::build(layout, options.mode, options.ip_family, &nodes)?;
    cloud_lb::build(layout, options.ip_family)?;
    pods::start_server(
        layout,
        &layout.internet_ns(),
        INTERNET_SERVER_NAME,
        &INTERNET_SERVER_PORTS,
    )?;
    for (index, node) in nodes.iter().enumerate() {
        let netns = fabric::attach_node(layout, index, node)?;
        let record = nodes::start(
            layout,
            &options.ferroplane,
            &state.state_dir,
            (options.io, options.mode, options.tuning),
            node,
            &nodes,
            &netns,
        )?;
        state.nodes.push(record);
        state.save(layout)?;
    }
    let node_ips: Vec<_> = nodes.iter().map(|n| n.ip).collect();
    let node_ips6: Vec<_> = nodes.iter().filter_map(|n| n.ip6).collect();
    cloud_lb::launch(layout, &state.state_dir, &node_ips, &node_ips6)?;
    let manifests = if options.manifests.is_empty() {
        DEMO_APPLIED
            .iter()
            // The testbed made the Nodes already (with both addresses in dual-stack); the
            // demo's own Node manifest names only their IPv4 ones.
            .filter(|f| options.ip_family == IpFamily::Ipv4 || **f != DEMO_NODES)
            .map(|f| PathBuf::from(DEMO_DIR).join(f))
            .collect()
    } else {
        options.manifests.clone()
    };
    apply(layout, &mut state, &manifests)?;
    Ok(state)
}

/// The testbed's Node objects: `node-1` .. `node-N` at 192.168.50.2 ..
fn nodes_manifest(count: usize, family: IpFamily) -> Result<String> {
    (0..count)
        .map(|index| {
            let ip = node_ip(index).ok_or_else(|| Error(format!("no address for node {index}")))?;
            let ip6 = match family {
                IpFamily::Ipv4 => String::new(),
                _ => {
                    let ip6 = node_ip6(index)
                        .ok_or_else(|| Error(format!("no IPv6 address for node {index}")))?;
                    format!("  - type: InternalIP\n    address: {ip6}\n")
                }
            };
            Ok(format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: {ip}\n{ip6}---\n",
                node_name(index)
            ))
        })
        .collect()
}

/// `ferroplane apply` of `files`, then every Pod not yet up is brought up on its node.
/// Returns what ferroplane printed.
pub fn apply(layout: &Layout, state: &mut RunState, files: &[PathBuf]) -> Result<String> {
    let ferroplane = Ferroplane {
        bin: state.ferroplane.clone(),
        state_dir: state.state_dir.clone(),
    };
    let prepared = pending::prepare(files, |namespace, name| {
        state.pod(&format!("{namespace}/{name}")).is_none()
    })?;
    let (printed, pending) = match prepared {
        Some(prepared) => (ferroplane.apply_text(&prepared.json)?, prepared.pending),
        None => (ferroplane.apply_files(files)?, Vec::new()),
    };
    let testbed_nodes: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    if let Some(stray) = ferroplane
        .nodes()?
        .into_iter()
        .find(|n| !testbed_nodes.contains(&n.name.as_str()))
    {
        return Err(Error(format!(
            "Node {} is not one of this testbed's nodes ({}); use --nodes",
            stray.name,
            testbed_nodes.join(", ")
        )));
    }
    let settings = control::StateDir::new(&state.state_dir)
        .read_settings()
        .map_err(context(state.state_dir.display()))?;
    let mut started = Vec::new();
    for pod in ferroplane.pods()? {
        if state
            .pod(&format!("{}/{}", pod.namespace, pod.name))
            .is_some()
        {
            continue;
        }
        let node_name = pod
            .node
            .as_deref()
            .ok_or_else(|| Error(format!("Pod {} names no spec.nodeName", pod.name)))?;
        let node = state
            .node(node_name)
            .ok_or_else(|| Error(format!("Pod {}: no testbed node {node_name}", pod.name)))?
            .clone();
        let ip = pod
            .ip
            .ok_or_else(|| Error(format!("Pod {} was given no IP", pod.name)))?;
        if state.ip_family.has_ipv6() && pod.ip6.is_none() {
            return Err(Error(format!(
                "Pod {} was given no IPv6 address in a dual-stack cluster",
                pod.name
            )));
        }
        let spec = PodSpec {
            namespace: &pod.namespace,
            name: &pod.name,
            ip,
            ip6: pod.ip6,
            ports: &pod.ports,
            dns: pod.dns.then_some(&ferroplane),
            cni: crate::cni::enabled().then_some(ferroplane.bin.as_path()),
        };
        let record = pods::start(layout, (state.io, state.mode), &node, &spec)?;
        resolv::write(
            &record.netns,
            &record.namespace,
            settings.cluster_dns_ip,
            &settings.cluster_domain,
        )?;
        state.pods.push(record);
        state.save(layout)?;
        started.push((node, pod.namespace, pod.name));
    }
    for (node, namespace, name) in &started {
        nodes::wait_attached(node, namespace, name)?;
    }
    for (namespace, name) in &pending {
        operations::set_ready(state, &format!("{namespace}/{name}"), true)?;
    }
    Ok(printed)
}

/// What `up` prints about the demo's dual-stack Service (a dual-stack testbed running the
/// demo): store-be's two ClusterIPs and a probe of each. None otherwise.
pub fn dual_stack_hint(state: &RunState) -> Result<Option<String>> {
    if !state.ip_family.has_ipv6() || state.pod("store-fe").is_none() {
        return Ok(None);
    }
    let ferroplane = Ferroplane {
        bin: state.ferroplane.clone(),
        state_dir: state.state_dir.clone(),
    };
    let Ok(service) = ferroplane.get("svc", "default", "store-be") else {
        return Ok(None);
    };
    let ips: Vec<&str> = service["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    let [v4, v6] = ips.as_slice() else {
        return Ok(None);
    };
    Ok(Some(format!(
        "Dual-stack Service store-be, one Service on two ClusterIPs, both answering:\n  \
         testbed probe store-fe {v4}:80\n  testbed probe store-fe '[{v6}]:80'"
    )))
}
