//! End-to-end tests of `ferroplane run`: the real binary in network namespaces, with real
//! TAP, veth and AF_PACKET devices. They need root.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md); the helpers here are test code too

mod abuse;
mod admin;
mod harness;
mod lifecycle;
mod liveness;
mod local_files;
mod monitor;
mod netns;
mod pods;
mod restart;
mod sched;
mod scripts;
mod uplink;
