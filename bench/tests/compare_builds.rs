//! The comparison's kernel and OVS builds carry traffic through the ClusterIP: for each, the
//! topology is built, the base Services programmed and the servers started; then a TCP
//! connection, UDP round trips and a short paced UDP trial go through the Service, and
//! nothing of the comparison is left behind afterwards.
//!
//! Needs root and the tools the builds drive (iproute2, iptables, nft, conntrack, Open
//! vSwitch, ethtool, iperf3), so it is ignored by default: `cargo test -p bench --test
//! compare_builds -- --ignored`. It uses the comparison's `fpcmp` namespaces: do not run it
//! beside `compare`.
#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md); the helpers here are test code too

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bench::compare::kernel::{self, ProxyMode};
use bench::compare::latency::{request_response, wait_serving};
use bench::compare::ovs;
use bench::compare::plan::{Cluster, PREFIX};
use bench::compare::servers::Servers;
use bench::compare::services::{BENCH_VIP, TCP_PORT, catalog};
use bench::compare::udp_rate::Generator;
use bench::compare::{Teardown, require_root};

fn leftovers() -> Vec<String> {
    testbed::netns::list()
        .unwrap()
        .into_iter()
        .filter(|ns| ns.starts_with(&format!("{PREFIX}-")))
        .collect()
}

fn carries_traffic(cluster: &Cluster) {
    let stop = AtomicBool::new(false);
    let cpu = dataplane::io::thread::allowed_cpus().unwrap()[0];
    let servers = Servers::start(cluster, cpu).unwrap();
    wait_serving(cluster, BENCH_VIP, TCP_PORT, Duration::from_secs(10)).unwrap();
    let rr = request_response(cluster, 20, cpu, &stop).unwrap();
    assert_eq!(rr.samples, 20, "every round trip answered");
    assert!(rr.p50_us > 0.0 && rr.p50_us <= rr.p99_us);
    let generator = Generator::open(cluster).unwrap();
    let trial = generator
        .trial(&servers, Some(5_000.0), Duration::from_millis(200), &stop)
        .unwrap();
    assert!(trial.sent >= 900, "sent {}", trial.sent);
    assert!(
        trial.received * 100 >= trial.sent * 99,
        "{} of {} datagrams reached the sinks",
        trial.received,
        trial.sent
    );
}

#[test]
#[ignore = "needs root, iptables, nft, conntrack, Open vSwitch, ethtool and iperf3"]
fn kernel_and_ovs_builds_carry_traffic_through_the_cluster_ip() {
    require_root().unwrap();
    let base = catalog(2);
    for mode in [ProxyMode::Iptables, ProxyMode::Nftables] {
        let build = kernel::build(mode).unwrap();
        build.program(&base).unwrap();
        carries_traffic(build.cluster());
    }
    assert!(leftovers().is_empty(), "left behind: {:?}", leftovers());
    {
        let dataplane_cpu = *dataplane::io::thread::allowed_cpus()
            .unwrap()
            .last()
            .unwrap();
        let build = ovs::build(dataplane_cpu).unwrap();
        build.program(&base).unwrap();
        carries_traffic(build.cluster());
    }
    assert!(leftovers().is_empty(), "left behind: {:?}", leftovers());
    drop(Teardown::begin().unwrap());
}
