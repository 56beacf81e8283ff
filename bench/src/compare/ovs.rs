//! Open vSwitch's userspace datapath on the same topology: in each node namespace a private
//! `ovsdb-server` and `ovs-vswitchd` (database, sockets, pid and log files in the run
//! directory), a `netdev` bridge holding the uplink whose internal port carries the node IP
//! (userspace VXLAN tunnelling), and a `netdev` integration bridge with the pods' veths and a
//! VXLAN port per peer, programmed by [`super::ovs_flows`].
//!
//! Invariants: every OVS command runs inside the node's namespace with `OVS_RUNDIR` and
//! friends pointing at the node's own directory, so nothing lands in the host's namespace or
//! in /run/openvswitch; the daemons are found and stopped with the namespace (no `--monitor`
//! restarts them); PMD threads and every other vswitchd thread run on the dataplane CPU.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use testbed::error::context;
use testbed::netns::{exec, ip};

use super::netdevs::{UPLINK, pod_with_veth, underlay_and_nodes};
use super::ovs_flows::{LocalPod, NodeFlows, RemoteNet};
use super::plan::{
    Cluster, NODES, PODS, gateway, layout, node_addr, node_ns, planned_cluster, pod_ip, pod_network,
};
use super::services::ServiceSpec;
use super::{Result, Teardown};

/// The bridge that owns the uplink and the node IP.
pub const PHYS_BRIDGE: &str = "fpcmp-phy";
/// The integration bridge with the pods and tunnels.
pub const INT_BRIDGE: &str = "fpcmp-int";
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// One node's OVS: its namespace and private directory.
struct NodeOvs {
    ns: String,
    dir: PathBuf,
}

impl NodeOvs {
    fn env(&self) -> Vec<String> {
        let dir = self.dir.display().to_string();
        ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"]
            .iter()
            .map(|key| format!("{key}={dir}"))
            .collect()
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// Runs `program args` in the node namespace with the private environment.
    fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let env = self.env();
        let mut all: Vec<&str> = vec!["env"];
        all.extend(env.iter().map(String::as_str));
        all.push(program);
        all.extend_from_slice(args);
        exec(&self.ns, &all)
    }

    fn vsctl(&self, args: &[&str]) -> Result<String> {
        let db = format!("--db=unix:{}", self.path("db.sock"));
        let mut all = vec![db.as_str(), "--timeout=20"];
        all.extend_from_slice(args);
        self.run("ovs-vsctl", &all)
    }

    fn appctl(&self, args: &[&str]) -> Result<String> {
        let target = self.path("ovs-vswitchd.ctl");
        let mut all = vec!["-t", target.as_str()];
        all.extend_from_slice(args);
        self.run("ovs-appctl", &all)
    }

    fn ofctl(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-O", "OpenFlow15"];
        all.extend_from_slice(args);
        self.run("ovs-ofctl", &all)
    }

    fn start(&self, cpu: usize) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(context(self.dir.display()))?;
        let db = self.path("conf.db");
        self.run("ovsdb-tool", &["create", &db, SCHEMA])?;
        let mask = format!("0x{}", super::plan::cpu_mask(cpu));
        let cpu = cpu.to_string();
        self.run(
            "taskset",
            &[
                "-c",
                &cpu,
                "ovsdb-server",
                &db,
                &format!("--remote=punix:{}", self.path("db.sock")),
                &format!("--pidfile={}", self.path("ovsdb-server.pid")),
                &format!("--unixctl={}", self.path("ovsdb-server.ctl")),
                &format!("--log-file={}", self.path("ovsdb-server.log")),
                "-vconsole:off",
                "--detach",
                "--no-chdir",
            ],
        )?;
        self.vsctl(&["--no-wait", "init"])?;
        self.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("other_config:pmd-cpu-mask={mask}"),
        ])?;
        self.run(
            "taskset",
            &[
                "-c",
                &cpu,
                "ovs-vswitchd",
                &format!("unix:{}", self.path("db.sock")),
                &format!("--pidfile={}", self.path("ovs-vswitchd.pid")),
                &format!("--unixctl={}", self.path("ovs-vswitchd.ctl")),
                &format!("--log-file={}", self.path("ovs-vswitchd.log")),
                "-vconsole:off",
                "--detach",
                "--no-chdir",
            ],
        )
        .map(|_| ())
    }
}

/// A built OVS cluster.
pub struct OvsBuild {
    nodes: Vec<NodeOvs>,
    cluster: Cluster,
    _teardown: Teardown,
}

fn uplink_mac(index: usize) -> Result<String> {
    Ok(testbed::layout::uplink_mac(node_addr(index)?))
}

fn tunnel_ofport(peer: usize) -> u16 {
    100 + u16::try_from(peer).unwrap_or(0)
}

fn pod_ofport(slot: u8) -> u16 {
    10 + u16::from(slot)
}

/// Builds the topology with OVS on both nodes, daemons pinned to `cpu`; no Service yet.
pub fn build(cpu: usize) -> Result<OvsBuild> {
    let teardown = Teardown::begin()?;
    let run_dir = layout()?.run_dir();
    underlay_and_nodes()?;
    let mut nodes = Vec::new();
    for index in 0..NODES {
        let node = NodeOvs {
            ns: node_ns(index)?,
            dir: run_dir.join(format!("ovs-node-{}", index + 1)),
        };
        node.start(cpu)?;
        bridges(&node, index)?;
        nodes.push(node);
    }
    for pod in &PODS {
        let port = pod_with_veth(pod)?;
        let node = &nodes[pod.node];
        node.vsctl(&[
            "add-port",
            INT_BRIDGE,
            &port,
            "--",
            "set",
            "interface",
            &port,
            &format!("ofport_request={}", pod_ofport(pod.slot)),
        ])?;
        // The userspace datapath reads the veth with a packet socket: frames must carry
        // complete checksums (no offload to a NIC that is not there).
        exec(
            &super::plan::pod_ns(pod)?,
            &["ethtool", "-K", "eth0", "tx", "off"],
        )?;
    }
    Ok(OvsBuild {
        nodes,
        cluster: planned_cluster()?,
        _teardown: teardown,
    })
}

fn bridges(node: &NodeOvs, index: usize) -> Result<()> {
    let own = node_addr(index)?;
    node.vsctl(&[
        "add-br",
        PHYS_BRIDGE,
        "--",
        "set",
        "bridge",
        PHYS_BRIDGE,
        "datapath_type=netdev",
        &format!("other_config:hwaddr={}", uplink_mac(index)?),
    ])?;
    node.vsctl(&["add-port", PHYS_BRIDGE, UPLINK])?;
    ip(&node.ns, &["link", "set", PHYS_BRIDGE, "up"])?;
    ip(
        &node.ns,
        &["addr", "add", &format!("{own}/24"), "dev", PHYS_BRIDGE],
    )?;
    node.vsctl(&[
        "add-br",
        INT_BRIDGE,
        "--",
        "set",
        "bridge",
        INT_BRIDGE,
        "datapath_type=netdev",
        "fail-mode=secure",
    ])?;
    let underlay = format!("{}/24", offset_network(own));
    node.appctl(&["ovs/route/add", &underlay, PHYS_BRIDGE])?;
    for peer in (0..NODES).filter(|&p| p != index) {
        let port = format!("fpcmp-vx{}", peer + 1);
        let peer_ip = node_addr(peer)?.to_string();
        node.vsctl(&[
            "add-port",
            INT_BRIDGE,
            &port,
            "--",
            "set",
            "interface",
            &port,
            "type=vxlan",
            &format!("ofport_request={}", tunnel_ofport(peer)),
            &format!("options:remote_ip={peer_ip}"),
            &format!("options:local_ip={own}"),
            "options:key=1",
            "options:dst_port=8472",
        ])?;
        node.appctl(&["tnl/neigh/set", PHYS_BRIDGE, &peer_ip, &uplink_mac(peer)?])?;
    }
    Ok(())
}

/// The /24 network of an underlay address.
fn offset_network(addr: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & 0xffff_ff00)
}

impl OvsBuild {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Replaces every node's flows and groups with the program for `services` and flushes
    /// the datapath's conntrack.
    pub fn program(&self, services: &[ServiceSpec]) -> Result<()> {
        let run_dir = layout()?.run_dir();
        for (index, node) in self.nodes.iter().enumerate() {
            let local: Vec<LocalPod> = PODS
                .iter()
                .filter(|p| p.node == index)
                .map(|p| {
                    Ok(LocalPod {
                        ip: pod_ip(p)?,
                        ofport: pod_ofport(p.slot),
                    })
                })
                .collect::<Result<_>>()?;
            let remote: Vec<RemoteNet> = (0..NODES)
                .filter(|&p| p != index)
                .map(|p| {
                    Ok(RemoteNet {
                        network: pod_network(p)?,
                        gateway: gateway(p)?,
                        tunnel_ofport: tunnel_ofport(p),
                    })
                })
                .collect::<Result<_>>()?;
            let program = NodeFlows {
                gateway: gateway(index)?,
                local: &local,
                remote: &remote,
                services,
                cluster: &self.cluster,
            };
            let flows = run_dir.join(format!("ovs-node-{}.flows", index + 1));
            let groups = run_dir.join(format!("ovs-node-{}.groups", index + 1));
            std::fs::write(&flows, program.flows()).map_err(context(flows.display()))?;
            std::fs::write(&groups, program.groups()).map_err(context(groups.display()))?;
            node.ofctl(&["del-flows", INT_BRIDGE])?;
            node.ofctl(&["del-groups", INT_BRIDGE])?;
            node.ofctl(&["add-groups", INT_BRIDGE, &groups.display().to_string()])?;
            node.ofctl(&["add-flows", INT_BRIDGE, &flows.display().to_string()])?;
            node.appctl(&["dpctl/flush-conntrack"])?;
        }
        Ok(())
    }
}
