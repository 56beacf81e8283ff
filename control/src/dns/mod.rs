//! Cluster DNS (issue #6, user-needs L): an authoritative server for the cluster zone that
//! publishes the records of the kubernetes/dns specification from the same cluster state the
//! dataplane is compiled from, over UDP and TCP (`ferroplane dns`).
//!
//! The pieces, each in its own file:
//! - [`names`]: building and reading domain names (pod names, reverse names).
//! - [`endpoints`]: which endpoints of a headless Service are published, under which hostname.
//! - [`build`]: [`RecordIndex::build`], every record of one [`crate::ClusterState`].
//! - [`index`]: the immutable [`RecordIndex`] and its authoritative lookup.
//! - [`respond`]: the protocol core, query bytes in, reply bytes out (no I/O).
//! - [`server`]: the UDP socket and the TCP listener, bound on one address.
//! - [`tcp`]: DNS over TCP, with connection caps and idle and write timeouts.
//! - [`forward`]: asking the upstream for outside names, with a share per client.
//! - [`limits`]: the caps and timeouts, and the per-client counting.
//! - [`source`]: following the state directory (or a Kubernetes API server) and swapping in
//!   a new index on change.
//!
//! Invariants: queries are answered from one index generation each; a change becomes visible
//! within a poll interval plus the build; no input bytes stop the server.

mod build;
mod endpoints;
mod forward;
mod index;
mod limits;
mod names;
mod respond;
mod server;
mod source;
mod tcp;
#[cfg(test)]
mod tests;

pub use build::ZoneConfig;
pub use endpoints::TOLERATE_UNREADY_ANNOTATION;
pub use forward::FORWARD_TIMEOUT;
pub use index::{Answer, RecordIndex};
pub use limits::Limits;
pub use names::zone_name;
pub use respond::{
    Chase, Reply, Transport, UDP_PAYLOAD_LIMIT, fit_forwarded, respond, server_failure,
};
pub use server::{DnsServer, ServerConfig};
pub use source::{ClusterSource, POLL_INTERVAL, Reloader};

/// The schema version published in `dns-version.<zone>` TXT (the kubernetes/dns
/// specification version that CoreDNS reports).
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";

/// TTL of every record, and the negative-caching time (SOA minimum): CoreDNS's default, so a
/// change is not cached by clients for long.
pub const RECORD_TTL: u32 = 5;
