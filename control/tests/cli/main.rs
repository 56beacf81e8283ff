//! Integration tests that run the real `ferroplane` binary against temporary state directories.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md); the helpers here are test code too

mod bad_input;
mod broken_pipe;
mod concurrency;
mod dual_stack;
mod endpoints;
mod harness;
mod local_files;
mod nodes_pods;
mod seed;
mod services;
mod trace;
