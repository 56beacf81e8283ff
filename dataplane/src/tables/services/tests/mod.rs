//! Tests of the Service tables: front-end lookup, endpoint selection, Maglev, building.
//! Shared helpers build specs and backends from short literals.
#![allow(
    clippy::unwrap_used,
    reason = "tests unwrap what they built from literals"
)]

mod build;
mod frontend;
mod maglev;
mod patch;
mod properties;
mod select;

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{Backend, Scheduler, ServiceSpec};
use crate::flow::L4Proto;

/// A ready, remote backend 10.244.1.`host`:`port`.
fn backend(host: u8, port: u16) -> Backend {
    Backend {
        ip: Ipv4Addr::new(10, 244, 1, host),
        port,
        node_local: false,
        serving: true,
        terminating: false,
        pod: Some(format!("default/pod-{host}").into()),
    }
}

/// A TCP service `name` on `cluster_ip`:80 with no backends, Random, Cluster policies.
fn spec(name: &str, cluster_ip: Ipv4Addr) -> ServiceSpec {
    ServiceSpec {
        name: Arc::from(name),
        proto: L4Proto::Tcp,
        port: 80,
        cluster_ips: vec![cluster_ip],
        external_ips: Vec::new(),
        lb_ips: Vec::new(),
        node_port: None,
        backends: Vec::new(),
        scheduler: Scheduler::Random,
        affinity_timeout: None,
        internal_local: false,
        external_local: false,
        lb_source_ranges: Vec::new(),
    }
}

/// SplitMix64: an independent stream of well-spread test values.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
