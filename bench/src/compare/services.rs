//! The Services every build programs: `bench` (UDP sink, UDP echo and TCP ports over both
//! backends), `bulk` (iperf3, first backend only: its control and data connections must meet
//! the same server) and any number of decoys, plus the names kube-proxy would give their
//! chains.
//!
//! Invariants: ClusterIPs are unique and inside 10.96.0.0/12 (away from 10.96.0.10, the
//! conventional cluster DNS address); a catalog of `total` Services
//! holds exactly `total`, with `bench` and `bulk` in the middle of the order (neither first
//! nor last in a linear rule list); decoys target the backends' TCP server, so a connection
//! to any decoy is answered.

use std::net::Ipv4Addr;

use super::plan::{Cluster, offset};

/// `bench`'s ClusterIP.
pub const BENCH_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 100, 10);
/// `bulk`'s ClusterIP.
pub const BULK_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 100, 11);
/// Where decoy ClusterIPs start (decoy `i` is this plus `i`).
pub const DECOY_BASE: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 0);
/// The Service CIDR every ClusterIP is in.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// UDP port whose packets the backends count.
pub const SINK_PORT: u16 = 9000;
/// UDP port the backends echo on.
pub const ECHO_PORT: u16 = 9001;
/// TCP port the backends answer one byte on (request/response, new connections).
pub const TCP_PORT: u16 = 9002;
/// iperf3's port (the `bulk` Service and the server on the first backend).
pub const IPERF_PORT: u16 = 5201;
/// The port decoys listen on at their ClusterIP.
pub const DECOY_PORT: u16 = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// As iptables, nft and OpenFlow spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// As a Kubernetes manifest spells it.
    pub fn upper(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub name: &'static str,
    pub protocol: Protocol,
    pub port: u16,
    pub target: u16,
}

/// Which backends a Service selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selects {
    AllBackends,
    FirstBackend,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub ports: Vec<PortSpec>,
    pub selects: Selects,
}

impl ServiceSpec {
    /// The backends' addresses, in the order of the cluster's backends.
    pub fn endpoints(&self, cluster: &Cluster) -> Vec<Ipv4Addr> {
        let count = match self.selects {
            Selects::AllBackends => cluster.backends.len(),
            Selects::FirstBackend => 1,
        };
        cluster.backends.iter().take(count).map(|b| b.ip).collect()
    }

    /// kube-proxy's name for one port of the Service: `default/NAME:PORT`.
    pub fn port_id(&self, port: &PortSpec) -> String {
        format!("default/{}:{}", self.name, port.name)
    }
}

pub fn bench_service() -> ServiceSpec {
    let port = |name, protocol, port| PortSpec {
        name,
        protocol,
        port,
        target: port,
    };
    ServiceSpec {
        name: "bench".to_owned(),
        cluster_ip: BENCH_VIP,
        ports: vec![
            port("sink", Protocol::Udp, SINK_PORT),
            port("echo", Protocol::Udp, ECHO_PORT),
            port("tcp", Protocol::Tcp, TCP_PORT),
        ],
        selects: Selects::AllBackends,
    }
}

pub fn bulk_service() -> ServiceSpec {
    ServiceSpec {
        name: "bulk".to_owned(),
        cluster_ip: BULK_VIP,
        ports: vec![PortSpec {
            name: "iperf",
            protocol: Protocol::Tcp,
            port: IPERF_PORT,
            target: IPERF_PORT,
        }],
        selects: Selects::FirstBackend,
    }
}

/// Decoy `index` (0-based): port 80 at its own ClusterIP, answered by the TCP server.
pub fn decoy(index: usize) -> ServiceSpec {
    ServiceSpec {
        name: format!("decoy-{index:05}"),
        cluster_ip: decoy_ip(index),
        ports: vec![PortSpec {
            name: "http",
            protocol: Protocol::Tcp,
            port: DECOY_PORT,
            target: TCP_PORT,
        }],
        selects: Selects::AllBackends,
    }
}

pub fn decoy_ip(index: usize) -> Ipv4Addr {
    offset(DECOY_BASE, u32::try_from(index).unwrap_or(u32::MAX))
}

/// `total` Services (at least `bench` and `bulk`): the decoys split around the two.
pub fn catalog(total: usize) -> Vec<ServiceSpec> {
    let decoys = total.saturating_sub(2);
    let half = decoys / 2;
    let mut all: Vec<ServiceSpec> = (0..half).map(decoy).collect();
    all.push(bench_service());
    all.push(bulk_service());
    all.extend((half..decoys).map(decoy));
    all
}

/// A stable 16-character upper-case tag for `text`, like kube-proxy's chain-name hashes
/// (FNV-1a 64, base32 alphabet).
pub fn chain_tag(text: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut tag = String::with_capacity(16);
    for _ in 0..16 {
        let index = usize::try_from(hash % 32).unwrap_or(0);
        tag.push(char::from(ALPHABET[index]));
        hash = hash.rotate_right(5) ^ 0x9e37_79b9_7f4a_7c15;
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::plan::planned_cluster;
    use std::collections::HashSet;

    #[test]
    fn a_catalog_has_the_requested_size_unique_ips_and_bench_in_the_middle() {
        for total in [2, 100, 1001, 10_000] {
            let all = catalog(total);
            assert_eq!(all.len(), total);
            let ips: HashSet<Ipv4Addr> = all.iter().map(|s| s.cluster_ip).collect();
            assert_eq!(ips.len(), total);
            let bench = all.iter().position(|s| s.name == "bench").unwrap();
            assert_eq!(bench, (total - 2) / 2);
        }
        let last = decoy_ip(9_999);
        assert_eq!(last, Ipv4Addr::new(10, 100, 39, 15));
        // 10.96.0.0/12 ends at 10.111.255.255.
        assert!(last.octets()[1] <= 111);
    }

    #[test]
    fn bulk_selects_only_the_first_backend() {
        let cluster = planned_cluster().unwrap();
        assert_eq!(
            bulk_service().endpoints(&cluster),
            [Ipv4Addr::new(10, 244, 1, 2)]
        );
        assert_eq!(bench_service().endpoints(&cluster).len(), 2);
    }

    #[test]
    fn chain_tags_are_stable_distinct_and_sixteen_characters() {
        let a = chain_tag("default/bench:tcp");
        assert_eq!(a, chain_tag("default/bench:tcp"));
        assert_ne!(a, chain_tag("default/bench:sink"));
        assert_eq!(a.len(), 16);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
    }
}
