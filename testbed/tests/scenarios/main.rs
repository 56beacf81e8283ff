//! End-to-end scenarios: a whole testbed per test (real `ferroplane run` on every node), probed
//! from pods. They need root (network namespaces).

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md); the helpers here are test code too

mod bulk;
mod capture;
mod change;
mod cluster;
mod cni_plugin;
mod conformance;
mod demo_hints;
mod dns;
mod dual_stack;
mod host_port;
mod hostile;
mod internet;
mod load_balancer;
mod node_restart_cni;
mod pod_to_pod;
mod policy;
mod service;
mod soak;
