//! Segmentation and checksum offloads: GSO super-packets of up to 64 KB from pods, carried
//! through the pipeline whole (one run per super-packet) and turned back into wire-sized
//! segments only where a device cannot take them.
//!
//! - `vnet`: the virtio-net header (TAP) and what it may claim about a frame.
//! - `partial`: NAT on a partial checksum (the pseudo-header seed) and the path-MTU fit of a
//!   super-packet (its segment size is lowered, it is never dropped for size).
//! - `segment`: software TCP segmentation of a super-packet, plain or VXLAN-encapsulated,
//!   with complete checksums in every segment.
//! - `coalesce`: user-space GRO, merging consecutive segments of one TCP flow into one
//!   super-packet for a device that accepts GSO (a TAP pod).
//!
//! Invariants:
//! - A packet with `meta.offload.is_gso()` is IPv4/TCP with its L4 checksum partial at
//!   `csum_start` (checked by `vnet::check_l4` before any stage relies on it).
//! - Every segment leaving `segment` and every packet `coalesce` merges has correct IPv4 and
//!   TCP checksums (or, merged, a correct pseudo-header seed for the receiver to finish).
//! - Nothing here allocates: segments come from the caller's pool.

pub mod coalesce;
pub mod partial;
pub mod segment;
pub mod vnet;

#[cfg(test)]
pub(crate) mod testing;
