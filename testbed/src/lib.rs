//! The netns cluster-in-a-box: an underlay, N nodes each running the real `ferroplane run`, pods
//! as network namespaces wired to their node the way a CNI would, a router and an "internet"
//! host, all on one machine.
//!
//! Invariants: everything the testbed creates lives in network namespaces named
//! `<prefix>-...` (nothing is created in the host's own namespace), and everything it started
//! or created is found again from the namespaces and the run directory alone, so `down` works
//! after a killed run.

pub mod attack;
pub mod cloud_lb;
pub mod cluster;
pub mod cni;
pub mod counters;
pub mod error;
pub mod fabric;
pub mod fabric6;
pub mod layout;
pub mod lifecycle;
pub mod load;
pub mod netexec;
pub mod netns;
pub mod nodes;
pub mod operations;
pub mod pending;
pub mod pods;
pub mod probe;
pub mod resolv;
pub mod run_state;
pub mod sctp;
pub mod soak;
pub mod teardown;
pub mod tunnel;
