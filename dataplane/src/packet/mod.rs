//! Packet buffers with headroom, per-packet metadata, and the free-buffer pool.
//!
//! Invariants:
//! - A `Packet` owns one fixed-size buffer allocated once (by the pool) and reused forever:
//!   nothing on the per-packet path allocates.
//! - The frame occupies `buf[start .. start + len]`; there are always `HEADROOM` bytes in
//!   front of a freshly received frame, so VXLAN encapsulation prepends in place.
//! - `meta` is reset on every receive; stages write their decisions into it.

mod buffer;
mod meta;
mod pool;

pub use buffer::{BUF_SIZE, HEADROOM, LARGE_BUF_SIZE, MAX_FRAME, MAX_SUPER_FRAME, Packet};
pub use meta::{Meta, Offload, PortId, Verdict};
pub use pool::{DEFAULT_LARGE, PacketPool};
