//! `ferroplane trace`: where would this packet go, and why (see [`crate::trace`]).

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use clap::ValueEnum;
use dataplane::flow::L4Proto;

use super::output::outln;
use crate::state::ClusterState;
use crate::store::StateDir;
use crate::trace::{
    Source, Source6, TraceRequest, TraceRequest6, node_locals, trace_ipv6, trace_with,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Sctp,
}

/// Output formats of `trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceOutput {
    Json,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["src", "from"])))]
pub struct TraceArgs {
    /// Source address, IP or IP:PORT, [IPV6]:PORT for IPv6 (a pod's, a node's, or an external
    /// client's).
    #[arg(long)]
    pub src: Option<String>,
    /// Source pod, NAMESPACE/NAME.
    #[arg(long)]
    pub from: Option<String>,
    /// Destination, IP:PORT or [IPV6]:PORT (IP alone for ICMP). An IPv6 packet is run through
    /// the pipeline of the node it enters only (see `trace`'s IPv6 note).
    #[arg(long)]
    pub dst: String,
    #[arg(long, value_enum, default_value = "tcp")]
    pub protocol: Protocol,
    /// The node where a packet from outside the cluster enters (on its uplink).
    #[arg(long)]
    pub node: Option<String>,
    /// A node's configuration file (its node.yaml, as given to `run --config`); repeatable,
    /// one per node. The node it names is traced with its own settings (nodePortAddresses,
    /// masqueradeExempt, externalIPs, snatPorts, MACs, ...); other nodes get the defaults.
    #[arg(long)]
    pub node_config: Vec<PathBuf>,
    /// A kube-proxy `KubeProxyConfiguration` file applied to every --node-config, as
    /// `run --kube-proxy-config` applies it.
    #[arg(long, requires = "node_config")]
    pub kube_proxy_config: Option<PathBuf>,
    /// Print the report as JSON instead of one line per stage decision.
    #[arg(short, long, value_enum)]
    pub output: Option<TraceOutput>,
}

/// `IPV4`, `IPV4:PORT`, `IPV6` or `[IPV6]:PORT`.
fn address(flag: &str, text: &str) -> Result<(IpAddr, Option<u16>), String> {
    let bad = || {
        format!(
            "--{flag} {text:?}: expected an IPv4 address, optionally with :PORT, or an IPv6 address, with a port as [ADDRESS]:PORT"
        )
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or_else(bad)?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok((IpAddr::V6(ip), Some(port)));
    }
    if let Ok(v6) = text.parse::<Ipv6Addr>() {
        return Ok((IpAddr::V6(v6), None));
    }
    match text.split_once(':') {
        None => Ok((IpAddr::V4(text.parse().map_err(|_| bad())?), None)),
        Some((ip, port)) => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            Ok((IpAddr::V4(ip.parse().map_err(|_| bad())?), Some(port)))
        }
    }
}

/// A request of either family: IPv6 when the destination (or the given source) is IPv6.
enum Request {
    V4(TraceRequest),
    V6(TraceRequest6),
}

fn request(args: &TraceArgs) -> Result<Request, String> {
    let (dst, dport) = address("dst", &args.dst)?;
    let src = args.src.as_deref().map(|s| address("src", s)).transpose()?;
    if let Some((ip, _)) = src
        && ip.is_ipv4() != dst.is_ipv4()
    {
        return Err(format!(
            "--src {ip} and --dst {dst} are of different IP families"
        ));
    }
    let proto = match args.protocol {
        Protocol::Tcp => L4Proto::Tcp,
        Protocol::Udp => L4Proto::Udp,
        Protocol::Icmp => L4Proto::Icmp,
        Protocol::Sctp => L4Proto::Sctp,
    };
    let dport = match (dport, proto) {
        (Some(port), _) => port,
        (None, L4Proto::Icmp) => 0,
        (None, _) => return Err(format!("--dst {:?}: a port is required", args.dst)),
    };
    let dst = match dst {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            let source = match (src, &args.from) {
                (Some((IpAddr::V6(ip), port)), _) => Source6::Address { ip, port },
                (_, Some(from)) => {
                    let (namespace, name) = pod_name(from)?;
                    Source6::Pod { namespace, name }
                }
                _ => return Err("give --src or --from".to_owned()),
            };
            return Ok(Request::V6(TraceRequest6 {
                source,
                dst: v6,
                dport,
                proto,
                node: args.node.clone(),
            }));
        }
    };
    let source = match (src, &args.from) {
        (Some((IpAddr::V4(ip), port)), _) => Source::Address { ip, port },
        (Some((IpAddr::V6(ip), _)), _) => {
            return Err(format!("--src {ip} is IPv6 but --dst {dst} is IPv4"));
        }
        (None, Some(from)) => {
            let (namespace, name) = pod_name(from)?;
            Source::Pod { namespace, name }
        }
        (None, None) => return Err("give --src or --from".to_owned()),
    };
    Ok(Request::V4(TraceRequest {
        source,
        dst,
        dport,
        proto,
        node: args.node.clone(),
    }))
}

fn pod_name(from: &str) -> Result<(String, String), String> {
    let (namespace, name) = from
        .split_once('/')
        .ok_or_else(|| format!("--from {from:?}: expected NAMESPACE/NAME"))?;
    Ok((namespace.to_owned(), name.to_owned()))
}

pub fn run(dir: &StateDir, args: &TraceArgs) -> Result<bool, String> {
    let request = request(args)?;
    let locals = node_locals(&args.node_config, args.kube_proxy_config.as_ref())?;
    let state = ClusterState::load(dir.root()).map_err(|e| e.to_string())?;
    for name in locals.keys() {
        if state.node(name).is_none() {
            return Err(format!(
                "--node-config: no Node named {name} in the cluster"
            ));
        }
    }
    // The hostPorts each node recorded from the CNI plugin (not in the state).
    let host_ports = state
        .nodes()
        .filter_map(|n| n.metadata.name.clone())
        .map(|node| {
            let ports = crate::node::attachments::recorded_host_ports(dir.root(), &node);
            (node, ports)
        })
        .collect();
    let report = match &request {
        Request::V4(request) => trace_with(&state, request, &locals, &host_ports)?,
        Request::V6(request) => trace_ipv6(&state, request, &locals, &host_ports)?,
    };
    match args.output {
        Some(TraceOutput::Json) => {
            let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
            outln!("{json}");
        }
        None => {
            for line in report.to_lines() {
                outln!("{line}");
            }
        }
    }
    Ok(true)
}
