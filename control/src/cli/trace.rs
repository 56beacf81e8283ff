//! `ferroplane trace`: where would this packet go, and why (see [`crate::trace`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::ValueEnum;
use dataplane::flow::L4Proto;

use super::output::outln;
use crate::state::ClusterState;
use crate::store::StateDir;
use crate::trace::{Source, TraceRequest, node_locals, trace_with};

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
    /// Source address, IP or IP:PORT (a pod's, a node's, or an external client's).
    #[arg(long)]
    pub src: Option<String>,
    /// Source pod, NAMESPACE/NAME.
    #[arg(long)]
    pub from: Option<String>,
    /// Destination, IP:PORT (IP alone for ICMP).
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

/// `IP` or `IP:PORT`.
fn address(flag: &str, text: &str) -> Result<(Ipv4Addr, Option<u16>), String> {
    let bad = || format!("--{flag} {text:?}: expected an IPv4 address, optionally with :PORT");
    match text.split_once(':') {
        None => Ok((text.parse().map_err(|_| bad())?, None)),
        Some((ip, port)) => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            Ok((ip.parse().map_err(|_| bad())?, Some(port)))
        }
    }
}

fn request(args: &TraceArgs) -> Result<TraceRequest, String> {
    let source = match (&args.src, &args.from) {
        (Some(src), _) => {
            let (ip, port) = address("src", src)?;
            Source::Address { ip, port }
        }
        (None, Some(from)) => {
            let (namespace, name) = from
                .split_once('/')
                .ok_or_else(|| format!("--from {from:?}: expected NAMESPACE/NAME"))?;
            Source::Pod {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }
        }
        (None, None) => return Err("give --src or --from".to_owned()),
    };
    let proto = match args.protocol {
        Protocol::Tcp => L4Proto::Tcp,
        Protocol::Udp => L4Proto::Udp,
        Protocol::Icmp => L4Proto::Icmp,
        Protocol::Sctp => L4Proto::Sctp,
    };
    let (dst, dport) = address("dst", &args.dst)?;
    let dport = match (dport, proto) {
        (Some(port), _) => port,
        (None, L4Proto::Icmp) => 0,
        (None, _) => return Err(format!("--dst {:?}: a port is required", args.dst)),
    };
    Ok(TraceRequest {
        source,
        dst,
        dport,
        proto,
        node: args.node.clone(),
    })
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
    let report = trace_with(&state, &request, &locals, &host_ports)?;
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
