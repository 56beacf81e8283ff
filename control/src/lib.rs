//! ferroplane's control plane: the Kubernetes objects a node dataplane needs, an embedded API
//! server over a state directory (validation, defaulting, allocation, crash-safe storage shared
//! by several processes), and the controllers that derive Endpoints, EndpointSlices, node
//! podCIDRs, VTEPs and pod IPs.
//!
//! The dataplane compiler reads a [`ClusterState`] ([`ClusterState::load`]) and polls
//! [`store::StateDir::read_generation`] to notice changes.

pub mod apiserver;
pub mod cli;
pub mod cni;
pub mod compile;
pub mod controllers;
pub mod dns;
pub mod kube_source;
pub mod manifest;
pub mod model;
pub mod net;
pub mod node;
pub mod settings;
pub mod state;
pub mod store;
pub mod sync;
pub mod trace;
pub mod transaction;
pub mod validate;

pub use k8s_openapi;
pub use settings::ClusterSettings;
pub use state::ClusterState;
pub use store::StateDir;
