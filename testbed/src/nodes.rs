//! One node: its `node.yaml`, its `ferroplane run` started in the node namespace, and the
//! node's own kernel stack on the host TAP.
//!
//! Invariants: a node is reported started only once its `/healthz` answers 200 (bounded wait);
//! its logs, admin socket, shared flow-table file and pod netns directory all live in the
//! run directory; the uplink gets the dataplane's MAC `02:fe:<node ip>` and, in VXLAN mode, the
//! uplink MACs of every peer (one L2 segment), so node-to-node traffic never needs the router.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::NodeInfo;
use crate::error::{Error, Result, context};
use crate::layout::{
    CLUSTER_CIDR, CLUSTER_CIDR6, HOST_TAP, Layout, ROUTER_MAC, SERVICE_CIDR, SERVICE_CIDR6, UPLINK,
    uplink_mac,
};
use crate::netns::{ip, wait_for_link};
use crate::run_state::{Io, Mode, NodeRecord};

const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

/// What `testbed up` may change in every node's `node.yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeTuning {
    /// `workers.count`.
    pub workers: usize,
    /// `conntrack.maxEntries` (small for the hostile-traffic scenarios).
    pub conntrack_max: usize,
}

impl Default for NodeTuning {
    fn default() -> Self {
        Self {
            workers: 1,
            conntrack_max: 16384,
        }
    }
}
const ATTACHED_WITHIN: Duration = Duration::from_secs(15);

/// Writes `node`'s configuration and starts its `ferroplane run` in `netns`; returns when the
/// node is healthy and its host port configured.
pub fn start(
    layout: &Layout,
    ferroplane: &Path,
    state_dir: &Path,
    (io, mode, tuning): (Io, Mode, NodeTuning),
    node: &NodeInfo,
    peers: &[NodeInfo],
    netns: &str,
) -> Result<NodeRecord> {
    let dir = layout.run_dir().join("nodes").join(&node.name);
    let netns_dir = dir.join("netns");
    std::fs::create_dir_all(&netns_dir).map_err(context(netns_dir.display()))?;
    let record = NodeRecord {
        name: node.name.clone(),
        ip: node.ip,
        pod_cidr: node.pod_cidr.clone(),
        ip6: node.ip6,
        pod_cidr6: node.pod_cidr6.clone(),
        netns: netns.to_owned(),
        pid: 0,
        config: dir.join("node.yaml"),
        log: dir.join("ferroplane.log"),
        admin_socket: dir.join("admin.sock"),
    };
    let peer_macs: String = match mode {
        Mode::Vxlan => peers
            .iter()
            .filter(|p| p.name != node.name)
            .map(|p| format!("      {}: {}\n", p.name, uplink_mac(p.ip)))
            .collect(),
        Mode::Routed => String::new(),
    };
    let vxlan = match mode {
        Mode::Vxlan => crate::tunnel::uplink_vxlan()?,
        Mode::Routed => "raw",
    };
    if vxlan == "udp-socket" {
        crate::tunnel::prepare_kernel(netns, node.ip)?;
    }
    let config = format!(
        "nodeName: {name}\nnodeIP: {ip}\nsource: state\nstateDir: {state}\n\
         ports:\n  uplink:\n    interface: {UPLINK}\n    backend: af-packet\n    mac: {mac}\n    \
         vxlan: {vxlan}\n    nextHopMAC: {ROUTER_MAC}\n{peers}  host:\n    interface: {HOST_TAP}\n    backend: tap\n  \
         pods:\n    backend: {backend}\n    netnsDir: {netns_dir}\n\
         workers:\n  count: {workers}\noverlay: {overlay}\nconntrack:\n  maxEntries: {conntrack_max}\n\
         admin:\n  socket: {socket}\nhealth:\n  bindAddress: 0.0.0.0:10256\nflowState: {flow_state}\n",
        name = node.name,
        ip = crate::layout::underlay_address(node.ip, node.ip6),
        state = state_dir.display(),
        mac = uplink_mac(node.ip),
        peers = if peer_macs.is_empty() {
            String::new()
        } else {
            format!("    peerMACs:\n{peer_macs}")
        },
        backend = match io {
            Io::Tap => "tap",
            Io::AfPacket => "af-packet",
            Io::AfXdp => "af-xdp",
        },
        netns_dir = netns_dir.display(),
        workers = tuning.workers,
        conntrack_max = tuning.conntrack_max,
        overlay = match mode {
            Mode::Vxlan => "vxlan",
            Mode::Routed => "routed",
        },
        socket = record.admin_socket.display(),
        flow_state = dir.join("conntrack.shm").display(),
    );
    std::fs::write(&record.config, config).map_err(context(record.config.display()))?;
    let pid = launch(ferroplane, &record)?;
    let record = NodeRecord { pid, ..record };
    configure_host_port(&record)?;
    Ok(record)
}

/// Starts `ferroplane run` in the node namespace (its own process group, so it outlives the
/// testbed command) and waits until it is healthy.
pub fn launch(ferroplane: &Path, node: &NodeRecord) -> Result<u32> {
    let log = std::fs::File::create(&node.log).map_err(context(node.log.display()))?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .arg(ferroplane)
        .arg("run")
        .arg("--config")
        .arg(&node.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(context(format!("starting ferroplane for {}", node.name)))?;
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
            return Ok(child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error(format!(
        "ferroplane on {} was not healthy within {HEALTHY_WITHIN:?}; log: {}",
        node.name,
        node.log.display()
    )))
}

/// The node's kernel stack: the node IP on the host TAP, and every route through it (node ->
/// pod, node -> Service and the node's own underlay traffic all go through the dataplane).
/// Idempotent: a restarted ferroplane finds its persistent TAP configured already.
pub fn configure_host_port(node: &NodeRecord) -> Result<()> {
    let ns = &node.netns;
    wait_for_link(ns, HOST_TAP, Duration::from_secs(5))?;
    ip(ns, &["link", "set", HOST_TAP, "up"])?;
    ip(
        ns,
        &[
            "addr",
            "replace",
            &format!("{}/32", node.ip),
            "dev",
            HOST_TAP,
        ],
    )?;
    for cidr in [CLUSTER_CIDR, SERVICE_CIDR, "default"] {
        ip(ns, &["route", "replace", cidr, "dev", HOST_TAP])?;
    }
    if let Some(ip6) = node.ip6 {
        // As in IPv4: the node's IPv6 address on the host TAP, and everything through it (the
        // dataplane answers neighbour solicitations on the host port for every other address).
        // The uplink stays without IPv6: the node kernel has nothing to say on it.
        crate::fabric6::enable_ipv6(ns)?;
        crate::netns::sysctl(ns, &format!("net/ipv6/conf/{UPLINK}/disable_ipv6"), "1")?;
        ip(
            ns,
            &[
                "-6",
                "addr",
                "replace",
                &format!("{ip6}/128"),
                "dev",
                HOST_TAP,
                "nodad",
            ],
        )?;
        for cidr in [CLUSTER_CIDR6, SERVICE_CIDR6, "default"] {
            ip(ns, &["-6", "route", "replace", cidr, "dev", HOST_TAP])?;
        }
    }
    Ok(())
}

/// `GET target` on a node's admin socket: status code and body.
pub fn admin_get(socket: &Path, target: &str) -> Option<(u16, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: testbed\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The directory where `node`'s pod namespaces are bound for ferroplane to search.
pub fn netns_dir(layout: &Layout, node: &str) -> PathBuf {
    layout.run_dir().join("nodes").join(node).join("netns")
}

/// Waits (bounded) until every worker of the node's ferroplane has a port for pod
/// `namespace/name` (with AF_PACKET, ferroplane opens a pod's veth on a retry after the CNI
/// created it).
pub fn wait_attached(node: &NodeRecord, namespace: &str, name: &str) -> Result<()> {
    let wanted = format!("{namespace}/{name}");
    let started = Instant::now();
    while started.elapsed() < ATTACHED_WITHIN {
        let stats: Option<serde_json::Value> = admin_get(&node.admin_socket, "/stats")
            .and_then(|(_, body)| serde_json::from_str(&body).ok());
        let attached = stats
            .as_ref()
            .and_then(|s| s["workers"].as_array())
            .is_some_and(|workers| {
                !workers.is_empty()
                    && workers.iter().all(|w| {
                        w["ports"]
                            .as_array()
                            .is_some_and(|ports| ports.iter().any(|p| p["name"] == wanted.as_str()))
                    })
            });
        if attached {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error(format!(
        "ferroplane on {} did not attach pod {wanted} within {ATTACHED_WITHIN:?}; log: {}",
        node.name,
        node.log.display()
    )))
}
