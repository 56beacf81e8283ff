//! `node.yaml`, the node process's configuration: its schema ([`FileConfig`], as written),
//! loading with errors that name the field, and resolution with the command-line overrides
//! into the settings the process runs with ([`resolve`], [`NodeSettings`]).
//!
//! Invariants: unknown keys are errors (a typo never silently falls back to a default); every
//! error message starts with the path of the offending field (`ports.uplink.backend: ...`);
//! every key is documented in [`CONFIG_HELP`] and in `control/examples/node.yaml` (a test
//! checks both against each other).

mod diff;
pub mod kube_proxy;
mod placement;
mod resolve;
mod servers;
pub mod underlay6;
pub mod units;
mod uplink_vxlan;
mod workers;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::net::{Cidr, PortRange};
use crate::settings::ClusterSettings;
use units::{ConfigDuration, ConfigMac, NodePortAddress};

pub use resolve::{
    AdminSettings, HostSettings, NodeSettings, Overrides, PodSettings, SourceSettings,
    UplinkSettings, resolve,
};
use servers::{AdminTlsFile, HealthFile, MetricsFile};
pub use servers::{HealthSettings, TlsFiles};
pub use uplink_vxlan::UplinkVxlan;
pub use workers::{
    DEFAULT_CLASS, FALLBACK_CLASS, IdleKind, PolicyKind, SchedulingFile, WorkerSchedule,
};

/// `node.yaml` as written. Every field is optional unless noted; see [`CONFIG_HELP`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    pub node_name: Option<String>,
    #[serde(rename = "nodeIP")]
    pub node_ip: Option<Ipv4Addr>,
    #[serde(rename = "nodeIP6")]
    pub node_ip6: Option<std::net::Ipv6Addr>,
    pub source: Option<SourceKind>,
    pub state_dir: Option<PathBuf>,
    pub kubeconfig: Option<PathBuf>,
    pub kube_context: Option<String>,
    pub cluster: Option<ClusterSettings>,
    #[serde(default)]
    pub ports: PortsFile,
    #[serde(default)]
    pub workers: WorkersFile,
    pub overlay: Option<OverlayKind>,
    pub mtu: Option<u16>,
    #[serde(default)]
    pub conntrack: ConntrackFile,
    pub node_port_addresses: Option<Vec<NodePortAddress>>,
    #[serde(default)]
    pub masquerade_exempt: Vec<Cidr>,
    pub snat_ports: Option<PortRange>,
    pub maglev_table_size: Option<usize>,
    #[serde(rename = "externalIPs")]
    pub external_ips: Option<bool>,
    #[serde(default)]
    pub admin: AdminFile,
    #[serde(default)]
    pub health: HealthFile,
    #[serde(default)]
    pub metrics: MetricsFile,
    pub flow_state: Option<PathBuf>,
    pub resync_interval: Option<ConfigDuration>,
}

/// Where the cluster is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The state directory of the embedded API server.
    State,
    /// A Kubernetes API server (list and watch).
    Kubernetes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayKind {
    Vxlan,
    Routed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortsFile {
    /// Required.
    pub uplink: Option<UplinkFile>,
    pub host: Option<HostFile>,
    #[serde(default)]
    pub pods: PodsFile,
}

/// I/O backend of the uplink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum UplinkBackend {
    #[default]
    #[serde(rename = "af-packet", alias = "af_packet")]
    AfPacket,
    #[serde(rename = "tap")]
    Tap,
    #[serde(rename = "af-xdp", alias = "af_xdp")]
    AfXdp,
}

/// I/O backend of pod ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum PodBackend {
    #[default]
    #[serde(rename = "tap")]
    Tap,
    #[serde(rename = "af-packet", alias = "af_packet")]
    AfPacket,
    #[serde(rename = "af-xdp", alias = "af_xdp")]
    AfXdp,
}

/// Where the AF_XDP program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeKind {
    #[default]
    Auto,
    Generic,
    Native,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UplinkFile {
    pub interface: String,
    #[serde(default)]
    pub backend: UplinkBackend,
    pub mac: Option<ConfigMac>,
    #[serde(rename = "nextHopMAC")]
    pub next_hop_mac: Option<ConfigMac>,
    #[serde(rename = "peerMACs", default)]
    pub peer_macs: BTreeMap<String, ConfigMac>,
    #[serde(default)]
    pub xdp_mode: XdpModeKind,
    #[serde(default)]
    pub vxlan: UplinkVxlan,
}

/// The host port is always a TAP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum HostBackend {
    #[default]
    #[serde(rename = "tap")]
    Tap,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostFile {
    pub interface: Option<String>,
    #[serde(default)]
    pub backend: HostBackend,
    pub mac: Option<ConfigMac>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodsFile {
    #[serde(default)]
    pub backend: PodBackend,
    pub netns_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkersFile {
    pub count: Option<usize>,
    #[serde(default)]
    pub cores: Vec<usize>,
    /// One worker pinned on each CPU, frames steered to the sending CPU's worker.
    #[serde(default)]
    pub per_cpu: bool,
    pub scheduling: Option<SchedulingFile>,
    pub idle: Option<IdleKind>,
    pub spin: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConntrackFile {
    pub max_entries: Option<usize>,
    pub max_unreplied_per_source: Option<u32>,
    pub max_unreplied_per_destination: Option<u32>,
    pub tcp_syn_sent_timeout: Option<ConfigDuration>,
    pub tcp_syn_recv_timeout: Option<ConfigDuration>,
    pub tcp_established_timeout: Option<ConfigDuration>,
    pub tcp_fin_wait_timeout: Option<ConfigDuration>,
    pub tcp_close_wait_timeout: Option<ConfigDuration>,
    pub tcp_last_ack_timeout: Option<ConfigDuration>,
    pub tcp_time_wait_timeout: Option<ConfigDuration>,
    pub tcp_close_timeout: Option<ConfigDuration>,
    pub udp_timeout: Option<ConfigDuration>,
    pub udp_stream_timeout: Option<ConfigDuration>,
    pub icmp_timeout: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminFile {
    pub socket: Option<PathBuf>,
    pub socket_group: Option<String>,
    pub listen: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
    pub tls: Option<AdminTlsFile>,
}

/// A configuration that cannot be used; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Parses `node.yaml` text. An empty document is an empty configuration.
pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    // YAML 1.2 booleans only: a node named `n` or `no` stays a string.
    let options = serde_saphyr::options! { strict_booleans: true };
    let value: Option<serde_json::Value> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ConfigError(format!("not valid YAML: {e}")))?;
    match value {
        None | Some(serde_json::Value::Null) => Ok(FileConfig::default()),
        Some(value) => serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ConfigError(inner.to_string())
            } else {
                ConfigError(format!("{path}: {inner}"))
            }
        }),
    }
}

/// Reads and parses a `node.yaml` file; errors name the file.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
}

/// Every `node.yaml` key, for `ferroplane run --help`.
pub const CONFIG_HELP: &str = "\
node.yaml keys (all optional unless marked; command-line flags override them):
  nodeName                 this node's name (Node object); also --node-name / FERROPLANE_NODE_NAME [required]
  nodeIP                   this node's underlay IPv4 address; default: the Node's InternalIP.
  nodeIP6                  this node's underlay IPv6 address (VXLAN over IPv6 to peers that
                           publish flannel.alpha.coreos.com/public-ipv6; each pod family rides
                           its own underlay family where both ends have it, else the other;
                           pods get mtu - 70); without nodeIP and an IPv4 InternalIP the
                           underlay is IPv6 only. Default: none (IPv4 underlay)
                           Health-check node ports listen on it
  source                   state | kubernetes: where the cluster is read from (default state)
  stateDir                 state directory for source state (default: --state, /var/lib/ferroplane)
  kubeconfig               kubeconfig file for source kubernetes (default: KUBECONFIG, in-cluster)
  kubeContext              kubeconfig context to use instead of the current one
  cluster                  cluster settings for source kubernetes (clusterCIDR, nodeCIDRMaskSize,
                           serviceCIDR, nodePortRange, loadBalancerPool, clusterDNS, clusterDomain,
                           vxlanVNI, vxlanPort); with source state cluster.json holds them
  ports.uplink.interface   the underlay NIC [required]
  ports.uplink.backend     af-packet (default) | tap | af-xdp
  ports.uplink.mac         MAC the dataplane uses on the underlay; default: derived from the node
                           name, so the kernel ignores the dataplane's frames on that NIC
  ports.uplink.nextHopMAC  MAC of the underlay router for traffic that leaves the node
  ports.uplink.peerMACs    map node name -> uplink MAC of peers on the same L2 segment; with
                           nextHopMAC, the only MACs a peer's own address (and, routed, its
                           pods' addresses) is accepted from on the uplink (spoofed_source)
  ports.uplink.xdpMode     auto (default) | generic | native, for backend af-xdp
  ports.uplink.vxlan       raw (default) | udp-socket, for backend af-packet and overlay vxlan:
                           udp-socket sends and receives VXLAN through a kernel UDP socket on
                           nodeIP:vxlanPort with UDP_SEGMENT/UDP_GRO (needs nodeIP, the uplink's
                           MAC = ports.uplink.mac, and policy rules; see dataplane/README.md)
  ports.host.interface     the host TAP ferroplane creates (persistent) into the node's own
                           stack (default fp-host); omit ports.host for no host port
  ports.host.backend       tap (the only host backend)
  ports.host.mac           MAC set on the host TAP (default: the TAP's own)
  ports.pods.backend       tap (default): ferroplane creates a persistent multi-queue TAP per pod
                           and the CNI moves it into the pod; af-packet: the CNI creates a veth
                           whose node end ferroplane opens; af-xdp: the same veth, opened with
                           one AF_XDP socket per worker (generic XDP; the veth needs a queue per
                           worker, and its pod end TX checksum offload off). The interface name
                           is fp + 10 hex digits of FNV-1a(namespace/name) (pod_interface_name)
  ports.pods.netnsDir      where pod network namespaces are bound, searched for a pod's TAP
                           after a restart (default /run/netns)
  workers.count            worker threads (default: number of cores, else 1); also --workers
  workers.cores            CPUs to pin workers to, one per worker (default: not pinned)
  workers.perCpu           true: one worker pinned on each CPU the process may use (no count or
                           cores beside it), and every TAP, AF_PACKET and UDP tunnel port hands
                           a frame to the worker on the CPU that sent it (no cross-CPU wakeup)
  workers.scheduling.policy    fifo (default) | rr | other: the workers' scheduling class; also
                           --worker-policy. fifo wins the core as soon as a packet wakes a worker;
                           a default the machine refuses (no CAP_SYS_NICE) falls back to other
                           with a 100us slice and a warning, a configured one stops the start
  workers.scheduling.priority  1..=99 for fifo and rr (default 1); also --worker-priority
  workers.scheduling.slice     policy other only: EEVDF slice hint, 100us..=100ms (default: the
                           kernel's base slice)
  workers.idle             adaptive (default; keep-warm with workers.perCpu): poll for
                           workers.spin after the last packet, then
                           sleep until a port is readable; keep-warm: sleep after every
                           empty round while a SCHED_IDLE companion thread keeps the worker's
                           CPU out of halt for workers.spin (any other task preempts it);
                           busy-poll: never sleep (a core dedicated to each worker; AF_XDP
                           sockets busy-poll their NAPI)
  workers.spin             adaptive and keep-warm: how long to keep polling (or the CPU warm)
                           after work, at most 10ms (default 50us)
  overlay                  vxlan (default) | routed
  mtu                      underlay MTU (default 1500); pods get mtu - 50 with vxlan (- 70 with nodeIP6)
  conntrack.maxEntries     flow table capacity (default max(32768 x workers, 131072))
  conntrack.tcpSynSentTimeout, tcpSynRecvTimeout, tcpEstablishedTimeout (24h),
  conntrack.tcpFinWaitTimeout, tcpCloseWaitTimeout (1h), tcpLastAckTimeout, tcpTimeWaitTimeout,
  conntrack.tcpCloseTimeout, udpTimeout (30s), udpStreamTimeout (120s), icmpTimeout (30s)
                           durations: 50us, 500ms, 30s, 5m, 24h, 7d or a number of seconds
  conntrack.maxUnrepliedPerSource       unreplied (SYN_SENT, UDP unreplied) flows one source
                           address may hold (default maxEntries/16, at least 256; 0 = no limit)
  conntrack.maxUnrepliedPerDestination  the same per destination after DNAT, e.g. a pod
                           (default maxEntries/4, at least 1024; 0 = no limit)
  nodePortAddresses        list of `primary`, IPv4 addresses and CIDRs NodePorts answer on (default primary)
  masqueradeExempt         CIDRs pods reach without SNAT besides the cluster CIDR
  snatPorts                port range masquerade draws from at random (default 61000-65535:
                           above Linux's ephemeral range 32768-60999, because the host's own
                           connections are not tracked and must never share a port with a
                           masqueraded flow); an overlap with the node netns's
                           net.ipv4.ip_local_port_range is an error at start and on reload
  maglevTableSize          largest Maglev table, a prime (default 16381)
  externalIPs              program Services' spec.externalIPs (default true)
  admin.socket             admin Unix socket (default /run/ferroplane/<node>.sock), mode 0600;
                           its path is published in <stateDir>/sockets/<node> for the CLI
  admin.socketGroup        group name or gid given access to the admin socket (mode 0660)
  admin.listen             also serve the admin API on this TCP address (needs admin.tokenFile)
  admin.tokenFile          file holding the bearer token TCP clients must send
  admin.tls.certFile, admin.tls.keyFile   serve the TCP listener over TLS with this certificate
                           chain and key (PEM); clients trust its CA (ferroplane stats --ca-file)
  health.bindAddress       /healthz and /livez listener (default 0.0.0.0:10256)
  health.syncTimeout       /healthz and /livez fail once a change waited this long to be
                           programmed (kube-proxy: 2 x its sync period; default 60s)
  metrics.bindAddress      /metrics listener, no token (default 127.0.0.1:10249; off: none)
  flowState                file the flow table lives in, mapped shared (put it on tmpfs), so the
                           next process adopts the flows after a stop or a crash; locked while
                           in use (default /run/ferroplane/<node>/conntrack.shm)
  resyncInterval           full recompile period (default 30s)
Signals: SIGTERM/SIGINT stop (the flow table stays in flowState for the next process), SIGHUP
reloads node.yaml (fields that only shape the snapshot apply at once; the others at the next
start).";

#[cfg(test)]
mod tests;
