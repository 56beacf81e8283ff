//! The dataplane's tables: keys and values only, never packet bytes.
//!
//! - Snapshot tables (immutable per generation, built by the control thread): `node`,
//!   `ports`, `routes`, `services`, `policy`, and the IPv6 side `v6`.
//! - Flow tables (shared by all workers, outlive generations): `conntrack`, `affinity`,
//!   both on the lock-free-read `flowmap`.
//! - Per-worker: `fragments` (what a fragmented datagram's first fragment got) and
//!   `conntrack6` (IPv6 flows, owned by one worker, no locks).

pub mod affinity;
pub mod conntrack;
pub mod conntrack6;
pub mod flowmap;
pub mod fragments;
pub mod node;
pub mod policy;
pub mod ports;
pub mod routes;
pub mod services;
pub mod v6;
