//! The node process, `ferroplane run`: the dataplane of one Kubernetes node.
//!
//! - [`config`]: `node.yaml` and the command-line overrides.
//! - `daemon`: start, run, stop, reload.
//! - `source`: snapshots from the state directory ([`crate::sync::Syncer`]) or a Kubernetes API
//!   server ([`crate::kube_source::KubeSource`]).
//! - `ports`, `devices`, `netns`: which pod sits on which port; TAP, AF_PACKET and AF_XDP
//!   devices, one per worker per port.
//! - `worker`, `scheduling`, `watchdog`: the worker threads, the scheduling class they take,
//!   and the control thread's check that they keep completing rounds without spinning idle.
//! - `server`, `serving`, `tls`: the HTTP servers (hyper, one tokio thread for probes, one for
//!   the admin API and metrics), their limits, TLS.
//! - `health`, `liveness`, `admin`, `conntrack_list`, `render`, `observe`, `monitor`:
//!   kube-proxy's health endpoints and their semantics; the admin API (metrics, stats,
//!   conntrack, monitor, capture).
//!
//! Invariants of the whole: workers never lock, allocate or log per packet (observation is
//! opt-in per listener); the control thread alone publishes snapshots and changes ports; the
//! flow table lives in a shared file the next process adopts, so a restart, clean or after a
//! crash, keeps connections.

mod admin;
pub mod admin_socket;
pub mod attachments;
mod cni_endpoint;
pub mod config;
mod conntrack_list;
mod daemon;
#[cfg(test)]
mod dashboard_tests;
mod devices;
mod flow_state;
mod health;
mod host_ports;
pub(crate) mod liveness;
pub(crate) mod log;
mod monitor;
mod naming;
pub(crate) mod netns;
mod observe;
mod pcap;
mod pod_cidr_file;
mod ports;
mod reload;
mod render;
mod render_sched;
mod scheduling;
pub(crate) mod server;
mod serving;
pub mod source;
pub(crate) mod tls;
mod watchdog;
mod worker;

pub use daemon::{Reload, run};
pub use naming::pod_interface_name;
