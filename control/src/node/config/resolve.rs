//! From `node.yaml` plus command-line overrides to [`NodeSettings`]: defaults filled in,
//! every value checked, the node-local compile inputs ([`NodeLocal`]) assembled.
//!
//! Invariants: a `NodeSettings` always has a node name, an uplink, at least one worker, one
//! core per worker when cores are given, a conntrack capacity of at least 1 and non-zero
//! timeouts; precedence is flag > file > default for every field a flag exists for.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use dataplane::tables::conntrack::{ConntrackConfig, FlowLimits, Timeouts};
use dataplane::tables::node::OverlayMode;
use dataplane::tables::services::DEFAULT_MAGLEV_M;

use super::servers::{HealthSettings, TlsFiles, resolve_health, resolve_tls};
use super::units::{ConfigDuration, NodePortAddress};
use super::uplink_vxlan::UplinkVxlan;
use super::workers::{PolicyKind, WorkerSchedule, resolve_schedule};
use super::{
    ConfigError, ConntrackFile, FileConfig, OverlayKind, PodBackend, SourceKind, UplinkBackend,
    XdpModeKind,
};
use crate::compile::NodeLocal;
use crate::kube_source::KubeSourceConfig;
use crate::net::MacAddr;
use crate::settings::ClusterSettings;
use crate::store::DEFAULT_STATE_DIR;

/// Command-line values that take precedence over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub node_name: Option<String>,
    pub node_ip: Option<Ipv4Addr>,
    pub source: Option<SourceKind>,
    pub workers: Option<usize>,
    /// `--worker-policy`, `--worker-priority`.
    pub worker_policy: Option<PolicyKind>,
    pub worker_priority: Option<u32>,
    /// `--state` when given explicitly (not its default).
    pub state_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // built once per start; the settings are not copied around
pub enum SourceSettings {
    State(PathBuf),
    Kubernetes {
        client: KubeSourceConfig,
        cluster: ClusterSettings,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkSettings {
    pub interface: String,
    pub backend: UplinkBackend,
    pub xdp_mode: XdpModeKind,
    pub vxlan: UplinkVxlan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSettings {
    pub interface: String,
    pub mac: Option<MacAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSettings {
    pub backend: PodBackend,
    pub netns_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSettings {
    pub socket: PathBuf,
    /// The group given access to the socket (mode 0660 instead of 0600).
    pub socket_group: Option<u32>,
    /// TCP listener, always with a token.
    pub listen: Option<(SocketAddr, String)>,
    /// TLS on the TCP listener.
    pub tls: Option<TlsFiles>,
}

/// Everything the node process runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSettings {
    pub node_name: String,
    pub node_ip: Option<Ipv4Addr>,
    pub source: SourceSettings,
    pub uplink: UplinkSettings,
    pub host: Option<HostSettings>,
    pub pods: PodSettings,
    pub workers: usize,
    /// One per worker, or empty (not pinned).
    pub cores: Vec<usize>,
    /// `workers.perCpu`: ports steer frames to the worker on the sending CPU (`cores`).
    pub per_cpu: bool,
    /// The workers' scheduling class and idle mode.
    pub schedule: WorkerSchedule,
    /// The compile inputs only this node knows.
    pub local: NodeLocal,
    pub conntrack: ConntrackConfig,
    pub admin: AdminSettings,
    pub health: HealthSettings,
    /// The file the flow table lives in (see `flow_state`).
    pub flow_state: PathBuf,
    pub resync_interval: Duration,
}

fn err(field: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{field}: {message}"))
}

/// Fills in defaults and checks every value.
pub fn resolve(file: FileConfig, flags: &Overrides) -> Result<NodeSettings, ConfigError> {
    let node_name = flags
        .node_name
        .clone()
        .or(file.node_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            err(
                "nodeName",
                "required (in node.yaml, --node-name or FERROPLANE_NODE_NAME)",
            )
        })?;
    let node_ip = flags.node_ip.or(file.node_ip);
    let source = resolve_source(
        flags.source.or(file.source).unwrap_or(SourceKind::State),
        flags.state_dir.clone().or(file.state_dir),
        file.kubeconfig,
        file.kube_context,
        file.cluster,
    )?;
    let uplink_file = file
        .ports
        .uplink
        .ok_or_else(|| err("ports.uplink", "required (the underlay NIC)"))?;
    if uplink_file.interface.is_empty() {
        return Err(err("ports.uplink.interface", "must not be empty"));
    }
    let uplink = UplinkSettings {
        interface: uplink_file.interface,
        backend: uplink_file.backend,
        xdp_mode: uplink_file.xdp_mode,
        vxlan: uplink_file.vxlan,
    };
    let host = file.ports.host.map(|h| HostSettings {
        interface: h.interface.unwrap_or_else(|| "fp-host".to_owned()),
        mac: h.mac.map(|m| m.0),
    });
    if let Some(host) = &host
        && (host.interface.is_empty() || host.interface.len() > 15)
    {
        return Err(err("ports.host.interface", "must be 1 to 15 characters"));
    }
    let pods = PodSettings {
        backend: file.ports.pods.backend,
        netns_dir: file
            .ports
            .pods
            .netns_dir
            .unwrap_or_else(|| PathBuf::from("/run/netns")),
    };
    let idle_named = file.workers.idle.is_some();
    let mut schedule = resolve_schedule(
        file.workers.scheduling,
        file.workers.idle,
        file.workers.spin,
        flags,
    )?;
    let placement = super::placement::resolve(
        file.workers.count,
        file.workers.cores,
        file.workers.per_cpu,
        flags.workers,
    )?;
    let (workers, cores, per_cpu) = (placement.workers, placement.cores, placement.per_cpu);
    if !idle_named {
        schedule.idle = super::placement::default_idle(per_cpu, schedule.idle);
    }
    let local = NodeLocal {
        uplink_mac: uplink_file.mac.map(|m| m.0),
        uplink_next_hop_mac: uplink_file
            .next_hop_mac
            .map_or(NodeLocal::default().uplink_next_hop_mac, |m| m.0),
        peer_underlay_macs: uplink_file
            .peer_macs
            .into_iter()
            .map(|(node, mac)| (node, mac.0))
            .collect::<BTreeMap<_, _>>(),
        host_mac: host.as_ref().and_then(|h| h.mac),
        gateway_mac: None,
        overlay: match file.overlay {
            None | Some(OverlayKind::Vxlan) => OverlayMode::Vxlan,
            Some(OverlayKind::Routed) => OverlayMode::Routed,
        },
        node_ip6: super::underlay6::check(file.node_ip6).map_err(|e| err("nodeIP6", e))?,
        underlay_mtu: resolve_mtu(file.mtu)?,
        masquerade_exempt: file.masquerade_exempt,
        node_port_cidrs: node_port_cidrs(file.node_port_addresses.as_deref()),
        node_port_addresses: resolve_node_port_addresses(file.node_port_addresses, node_ip)?,
        snat_ports: file
            .snat_ports
            .map_or(NodeLocal::default().snat_ports, |r| (r.first(), r.last())),
        maglev_table_size: file.maglev_table_size.unwrap_or(DEFAULT_MAGLEV_M),
        external_ips: file.external_ips.unwrap_or(true),
    };
    super::uplink_vxlan::check(uplink.vxlan, uplink.backend, node_ip, local.overlay)
        .map_err(|e| err("ports.uplink.vxlan", e))?;
    if local.snat_ports.0 < 1024 {
        return Err(err("snatPorts", "must not start below 1024"));
    }
    let conntrack = resolve_conntrack(&file.conntrack, workers)?;
    let tls = resolve_tls(file.admin.tls.as_ref(), file.admin.listen.is_some())?;
    let admin = AdminSettings {
        tls,
        socket: file
            .admin
            .socket
            .unwrap_or_else(|| PathBuf::from(format!("/run/ferroplane/{node_name}.sock"))),
        socket_group: file
            .admin
            .socket_group
            .as_deref()
            .map(resolve_group)
            .transpose()?,
        listen: match (file.admin.listen, file.admin.token_file) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(err(
                    "admin.listen",
                    "a TCP admin listener needs admin.tokenFile",
                ));
            }
            (Some(addr), Some(path)) => Some((addr, read_token(&path)?)),
        },
    };
    Ok(NodeSettings {
        flow_state: file
            .flow_state
            .unwrap_or_else(|| PathBuf::from(format!("/run/ferroplane/{node_name}/conntrack.shm"))),
        node_name,
        node_ip,
        source,
        uplink,
        host,
        pods,
        workers,
        cores,
        per_cpu,
        schedule,
        local,
        conntrack,
        admin,
        health: resolve_health(&file.health, &file.metrics)?,
        resync_interval: file
            .resync_interval
            .map_or(crate::sync::DEFAULT_RESYNC_INTERVAL, |d| d.0),
    })
}

fn resolve_source(
    kind: SourceKind,
    state_dir: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    cluster: Option<ClusterSettings>,
) -> Result<SourceSettings, ConfigError> {
    match kind {
        SourceKind::State => {
            if cluster.is_some() {
                return Err(err(
                    "cluster",
                    "only used with source kubernetes (with source state, cluster.json in the \
                     state directory holds the cluster settings)",
                ));
            }
            Ok(SourceSettings::State(
                state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            ))
        }
        SourceKind::Kubernetes => {
            let cluster = cluster.unwrap_or_default();
            cluster.validate().map_err(|e| err("cluster", e))?;
            Ok(SourceSettings::Kubernetes {
                client: KubeSourceConfig {
                    kubeconfig,
                    context,
                },
                cluster,
            })
        }
    }
}

fn resolve_mtu(mtu: Option<u16>) -> Result<u16, ConfigError> {
    let mtu = mtu.unwrap_or(1500);
    // A packet buffer holds MTU + 18 bytes of Ethernet; the TAP backend needs MTU <= 2030.
    if !(576..=2030).contains(&mtu) {
        return Err(err("mtu", format!("{mtu} is outside 576..=2030")));
    }
    Ok(mtu)
}

/// The CIDR entries of `nodePortAddresses`.
fn node_port_cidrs(listed: Option<&[NodePortAddress]>) -> Vec<crate::net::Cidr> {
    listed
        .unwrap_or_default()
        .iter()
        .filter_map(|a| match a {
            NodePortAddress::Cidr(cidr) => Some(*cidr),
            _ => None,
        })
        .collect()
}

fn resolve_node_port_addresses(
    listed: Option<Vec<NodePortAddress>>,
    node_ip: Option<Ipv4Addr>,
) -> Result<Vec<Ipv4Addr>, ConfigError> {
    let listed = listed.unwrap_or_default();
    let explicit: Vec<Ipv4Addr> = listed
        .iter()
        .filter_map(|a| match a {
            NodePortAddress::Address(ip) => Some(*ip),
            NodePortAddress::Primary | NodePortAddress::Cidr(_) => None,
        })
        .collect();
    let primary = listed.contains(&NodePortAddress::Primary);
    let cidrs = listed.iter().any(|a| matches!(a, NodePortAddress::Cidr(_)));
    // Only `primary` (or nothing) is the compile's default: the Node's address.
    if explicit.is_empty() && !(cidrs && primary) {
        return Ok(Vec::new());
    }
    let mut addresses = explicit;
    if primary {
        let ip = node_ip.ok_or_else(|| {
            err(
                "nodePortAddresses",
                "`primary` next to explicit addresses needs nodeIP (or --node-ip)",
            )
        })?;
        addresses.insert(0, ip);
    }
    addresses.dedup();
    Ok(addresses)
}

fn resolve_conntrack(file: &ConntrackFile, workers: usize) -> Result<ConntrackConfig, ConfigError> {
    let capacity = file
        .max_entries
        .unwrap_or_else(|| workers.saturating_mul(32_768).max(131_072));
    if capacity == 0 {
        return Err(err("conntrack.maxEntries", "must be at least 1"));
    }
    let d = Timeouts::default();
    let pick = |value: Option<ConfigDuration>, name: &str, default: u32| {
        value.map_or(Ok(default), |v| {
            v.whole_seconds(&format!("conntrack.{name}"))
                .map_err(ConfigError)
        })
    };
    let timeouts = Timeouts {
        tcp_syn_sent: pick(
            file.tcp_syn_sent_timeout,
            "tcpSynSentTimeout",
            d.tcp_syn_sent,
        )?,
        tcp_syn_recv: pick(
            file.tcp_syn_recv_timeout,
            "tcpSynRecvTimeout",
            d.tcp_syn_recv,
        )?,
        tcp_established: pick(
            file.tcp_established_timeout,
            "tcpEstablishedTimeout",
            d.tcp_established,
        )?,
        tcp_fin_wait: pick(
            file.tcp_fin_wait_timeout,
            "tcpFinWaitTimeout",
            d.tcp_fin_wait,
        )?,
        tcp_close_wait: pick(
            file.tcp_close_wait_timeout,
            "tcpCloseWaitTimeout",
            d.tcp_close_wait,
        )?,
        tcp_last_ack: pick(
            file.tcp_last_ack_timeout,
            "tcpLastAckTimeout",
            d.tcp_last_ack,
        )?,
        tcp_time_wait: pick(
            file.tcp_time_wait_timeout,
            "tcpTimeWaitTimeout",
            d.tcp_time_wait,
        )?,
        tcp_close: pick(file.tcp_close_timeout, "tcpCloseTimeout", d.tcp_close)?,
        udp: pick(file.udp_timeout, "udpTimeout", d.udp)?,
        udp_stream: pick(file.udp_stream_timeout, "udpStreamTimeout", d.udp_stream)?,
        icmp: pick(file.icmp_timeout, "icmpTimeout", d.icmp)?,
        // SCTP keeps the kernel's defaults (not settable, as kube-proxy has no flag for them).
        ..d
    };
    // Defaults scale with the table: one source may hold 1/16 of it in unreplied flows, one
    // destination 1/4 (0 = no limit).
    let share = |divisor: usize, floor: u32| {
        u32::try_from(capacity / divisor)
            .unwrap_or(u32::MAX)
            .max(floor)
    };
    let limits = FlowLimits {
        unreplied_per_source: file
            .max_unreplied_per_source
            .unwrap_or_else(|| share(16, 256)),
        unreplied_per_destination: file
            .max_unreplied_per_destination
            .unwrap_or_else(|| share(4, 1024)),
    };
    Ok(ConntrackConfig {
        capacity,
        timeouts,
        limits,
    })
}

/// A group name (looked up in /etc/group) or a numeric gid.
fn resolve_group(group: &str) -> Result<u32, ConfigError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|e| err("admin.socketGroup", format!("/etc/group: {e}")))?;
    groups
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == group).then(|| fields.nth(1)?.parse().ok())?
        })
        .ok_or_else(|| {
            err(
                "admin.socketGroup",
                format!("no group {group:?} in /etc/group"),
            )
        })
}

fn read_token(path: &std::path::Path) -> Result<String, ConfigError> {
    let token = std::fs::read_to_string(path)
        .map_err(|e| err("admin.tokenFile", format!("{}: {e}", path.display())))?;
    let token = token.trim().to_owned();
    if token.len() < 16 {
        return Err(err(
            "admin.tokenFile",
            "the token must be at least 16 characters",
        ));
    }
    Ok(token)
}
