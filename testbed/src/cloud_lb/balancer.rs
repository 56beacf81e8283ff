//! The balancer loop: reads the LoadBalancer Services from the cluster state, checks every
//! node's health for each of them, and keeps one route per ingress IP whose next hops are
//! exactly the healthy nodes (ECMP), or `unreachable` when none is.
//!
//! Health, as cloud LBs use kube-proxy's ports: a Service with externalTrafficPolicy Local is
//! checked on its `healthCheckNodePort` (200 only where a local endpoint serves); any other on
//! the node's `/healthz` (10256), which fails while the node is down or draining.
//!
//! Invariants: the routes are changed only when the healthy set changes (established flows
//! keep their hash while nothing changes); a route whose Service is gone is removed; a state
//! that cannot be read keeps the last good frontends; each round is bounded by the checks'
//! timeouts. IPv6 ingress IPs (a dual-stack testbed) are routed like IPv4 ones, over the same
//! health checks (on the nodes' IPv4 addresses), to the healthy nodes' IPv6 addresses (kernels
//! here refuse IPv6 routes through IPv4 next hops).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use control::{ClusterState, StateDir};

use super::health::answers_200;
use crate::error::Result;
use crate::netns::run;

const ROUND: Duration = Duration::from_millis(250);
const CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// kube-proxy's node health port.
const NODE_HEALTH_PORT: u16 = 10256;

/// Where one ingress IP's health is checked on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Check {
    /// `GET /` on the Service's healthCheckNodePort.
    ServicePort(u16),
    /// `GET /healthz` on the node health port.
    NodeHealth,
}

impl Check {
    fn target(self, node: Ipv4Addr) -> (SocketAddr, &'static str) {
        match self {
            Check::ServicePort(port) => (SocketAddr::from((node, port)), "/"),
            Check::NodeHealth => (SocketAddr::from((node, NODE_HEALTH_PORT)), "/healthz"),
        }
    }
}

/// The ingress IPs of the LoadBalancer Services in `state`, each with its health check.
fn frontends(state: &ClusterState) -> BTreeMap<IpAddr, Check> {
    let mut found = BTreeMap::new();
    for service in state.services() {
        let Some(spec) = &service.spec else { continue };
        if spec.type_.as_deref() != Some("LoadBalancer") {
            continue;
        }
        let check = match (
            spec.external_traffic_policy.as_deref(),
            spec.health_check_node_port,
        ) {
            (Some("Local"), Some(port)) => match u16::try_from(port) {
                Ok(port) => Check::ServicePort(port),
                Err(_) => continue,
            },
            _ => Check::NodeHealth,
        };
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for ip in ingress
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref())
        {
            if let Ok(ip) = ip.parse() {
                found.insert(ip, check);
            }
        }
    }
    found
}

/// Runs forever: one round of checks and route updates every [`ROUND`].
pub fn serve(state_dir: &Path, nodes: &[Ipv4Addr], nodes6: &[Ipv6Addr]) -> Result<()> {
    let store = StateDir::new(state_dir);
    let mut generation = None;
    let mut wanted = BTreeMap::new();
    let mut installed: BTreeMap<IpAddr, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    let mut announced = false;
    loop {
        let now = store.read_generation().ok();
        if now != generation {
            match ClusterState::load(state_dir) {
                Ok(state) => {
                    wanted = frontends(&state);
                    generation = now;
                }
                Err(e) => eprintln!(
                    "reading {}: {e}; keeping the last frontends",
                    state_dir.display()
                ),
            }
        }
        let mut health: BTreeMap<(Check, Ipv4Addr), bool> = BTreeMap::new();
        for (&ip, &check) in &wanted {
            let healthy: BTreeSet<Ipv4Addr> = nodes
                .iter()
                .copied()
                .filter(|&node| {
                    *health.entry((check, node)).or_insert_with(|| {
                        let (target, path) = check.target(node);
                        answers_200(target, path, CHECK_TIMEOUT)
                    })
                })
                .collect();
            if installed.get(&ip) != Some(&healthy) {
                program(ip, &next_hops(ip, &healthy, nodes, nodes6))?;
                installed.insert(ip, healthy);
            }
        }
        let gone: Vec<IpAddr> = installed
            .keys()
            .copied()
            .filter(|ip| !wanted.contains_key(ip))
            .collect();
        for ip in gone {
            run("ip", &["route", "del", &host_route(ip)])?;
            installed.remove(&ip);
            println!("{ip}: removed");
        }
        if !announced {
            println!("ready");
            announced = true;
        }
        std::thread::sleep(ROUND);
    }
}

/// The next hops of ingress IP `ip` for the `healthy` nodes: their IPv4 addresses, or for an
/// IPv6 ingress IP their IPv6 ones (`nodes6[i]` is `nodes[i]`'s).
fn next_hops(
    ip: IpAddr,
    healthy: &BTreeSet<Ipv4Addr>,
    nodes: &[Ipv4Addr],
    nodes6: &[Ipv6Addr],
) -> BTreeSet<IpAddr> {
    if ip.is_ipv4() {
        return healthy.iter().map(|n| IpAddr::V4(*n)).collect();
    }
    nodes
        .iter()
        .zip(nodes6)
        .filter(|(v4, _)| healthy.contains(v4))
        .map(|(_, v6)| IpAddr::V6(*v6))
        .collect()
}

/// Points `ip` at `nodes` (ECMP), or makes it unreachable when there is none.
fn program(ip: IpAddr, nodes: &BTreeSet<IpAddr>) -> Result<()> {
    let dst = host_route(ip);
    let mut args = vec!["route".to_owned(), "replace".to_owned()];
    match nodes.len() {
        0 => args.extend(["unreachable".to_owned(), dst]),
        1 => args.extend([dst, "via".to_owned(), first(nodes)]),
        _ => {
            args.push(dst);
            for node in nodes {
                args.extend(["nexthop".to_owned(), "via".to_owned(), node.to_string()]);
            }
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("ip", &args)?;
    let list: Vec<String> = nodes.iter().map(IpAddr::to_string).collect();
    println!("{ip}: to [{}]", list.join(", "));
    Ok(())
}

/// `ip`'s host route: `/32` or `/128`.
fn host_route(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

fn first(nodes: &BTreeSet<IpAddr>) -> String {
    nodes
        .iter()
        .next()
        .map(IpAddr::to_string)
        .unwrap_or_default()
}
