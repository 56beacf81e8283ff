//! ferroplane's dataplane: the per-node packet engine.
//!
//! Layering (dependencies point down only):
//! - `wire`: zero-copy header views, checksums. Knows bytes, nothing else.
//! - `flow`, `cidr`, `cidr6`, `tables`: keys and values (conntrack, services, policy, routes). Never
//!   see bytes.
//! - `packet`: buffers with headroom, per-packet metadata, pools.
//! - `stages`, `pipeline`: per-packet decisions over batches against a `Snapshot` (IPv6 on a
//!   path of its own, `pipeline::v6`).
//! - `offload`: GSO super-packets (virtio-net header checks, NAT on partial checksums,
//!   software segmentation, user-space GRO), used by the stages, the worker and `io`.
//! - `io`: the batch I/O trait and its backends; the only place for `unsafe` and syscalls.
//!   One exception to "down only": the flow tables keep their words in `io::words::Words`
//!   (heap, or a shared file mapping from `io::shm` that outlives the process), so the
//!   mapping's `unsafe` stays in `io` while the tables stay safe code.
//! - `snat`: the SNAT port generator, keyed once per pipeline from the OS CSPRNG (the one
//!   syscall outside `io`, through the `rand` crate, never per packet).

pub mod cidr;
pub mod cidr6;
pub mod drop;
pub mod flow;
pub mod io;
pub mod offload;
pub mod packet;
pub mod pipeline;
pub mod quiesce;
pub mod reconcile;
pub mod snapshot;
pub mod snat;
pub mod stages;
pub mod tables;
pub mod wire;
pub mod worker;
