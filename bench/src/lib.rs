//! Shared pieces of the benchmarks: a cluster of any size as one node's snapshot, and
//! frame builders for the traffic each benchmark replays, the I/O benchmark and the
//! side-by-side comparison with the kernel path and OVS.

pub mod compare;
pub mod fixture;
pub mod fixture_v6;
pub mod io;
pub mod traffic;
