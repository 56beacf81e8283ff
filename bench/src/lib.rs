//! Shared pieces of the benchmarks: a cluster of any size as one node's snapshot, and
//! frame builders for the traffic each benchmark replays.

pub mod fixture;
pub mod io;
pub mod traffic;
