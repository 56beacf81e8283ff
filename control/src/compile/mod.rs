//! The dataplane compiler: one node's [`Snapshot`] from the cluster state.
//!
//! [`compile`] turns a [`ClusterState`] into the snapshot of one node: its [`NodeConfig`]
//! ([`node`]), ports ([`ports`]), routes to the other nodes ([`routes`]), Service table
//! ([`services`], [`backends`]), policy table ([`policy`]) and IPv6 side ([`v6`]). What the cluster state cannot say
//! comes from [`NodeLocal`]; which pod is behind which port from [`PortAssignments`].
//!
//! [`Compiler`] does the same incrementally: told which objects changed, it recompiles only
//! the Services, policy and node parts those objects feed (see [`compiler`]).
//!
//! Invariants: one bad object never stops the others from being compiled (user-needs B8): it is
//! skipped, or only its bad part is, and reported as a [`Problem`]; only a node that cannot be
//! described at all (no Node object, no IPv4 InternalIP or podCIDR) fails the compile. The
//! result depends only on the inputs, never on what the cache held.
//!
//! [`NodeConfig`]: dataplane::tables::node::NodeConfig

mod backends;
pub mod compiler;
pub mod host_ports;
mod local;
pub mod node;
mod policy;
pub mod ports;
mod routes;
pub mod services;
#[cfg(test)]
pub(crate) mod tests;
mod topology;
mod underlay6;
mod v6;
mod v6_services;

use std::fmt;

use dataplane::snapshot::Snapshot;
use dataplane::tables::services::BuildError;

use crate::state::ClusterState;

pub use compiler::Compiler;
pub use local::NodeLocal;
pub use ports::{HOST_PORT, PortAssignments, UPLINK_PORT};

/// Something that was left out of the snapshot, or programmed only in part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `Kind namespace/name` (or `Kind name` for cluster-scoped kinds).
    pub object: String,
    pub message: String,
}

impl Problem {
    pub fn new(object: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            object: object.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

/// The node itself cannot be described, so there is no snapshot to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub node: String,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: {}", self.node, self.message)
    }
}

impl std::error::Error for CompileError {}

/// A node's snapshot and what was skipped to build it.
pub struct Compiled {
    /// Its `generation` is the state's; a publisher may renumber it.
    pub snapshot: Snapshot,
    pub problems: Vec<Problem>,
}

/// Compiles the snapshot of `node` from scratch.
pub fn compile(
    state: &ClusterState,
    node: &str,
    local: &NodeLocal,
    ports: &PortAssignments,
) -> Result<Compiled, CompileError> {
    Compiler::new(node, local.clone()).compile(state, ports)
}

/// A refused spec as a problem of its Service (spec names are `namespace/name:port`).
pub(super) fn build_problem(error: &BuildError) -> Problem {
    let spec = match error {
        BuildError::DuplicateFrontend { service, .. }
        | BuildError::UnsupportedProto { service, .. }
        | BuildError::ZeroPort { service }
        | BuildError::InvalidSourceRange { service, .. }
        | BuildError::MaglevSizeNotPrime { service, .. }
        | BuildError::MaglevSizeTooSmall { service, .. }
        | BuildError::TooManyBackends { service, .. }
        | BuildError::TooManyServices { service } => service,
    };
    let (service, port) = spec.split_once(':').unwrap_or((spec, ""));
    if port.starts_with("hostPort-") {
        return Problem::new(format!("Pod {service}"), error.to_string());
    }
    Problem::new(format!("Service {service}"), error.to_string())
}
