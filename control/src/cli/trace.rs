//! `ferroplane trace`: where would this packet go, and why (see [`crate::trace`]).

use std::net::Ipv4Addr;

use clap::ValueEnum;
use dataplane::flow::L4Proto;

use super::output::outln;
use crate::state::ClusterState;
use crate::store::StateDir;
use crate::trace::{Source, TraceRequest};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
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
    let state = ClusterState::load(dir.root()).map_err(|e| e.to_string())?;
    // The hostPorts each node recorded from the CNI plugin (not in the state).
    let host_ports = state
        .nodes()
        .filter_map(|n| n.metadata.name.clone())
        .map(|node| {
            let ports = crate::node::attachments::recorded_host_ports(dir.root(), &node);
            (node, ports)
        })
        .collect();
    let report = crate::trace::trace_with_host_ports(&state, &request, &host_ports)?;
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
