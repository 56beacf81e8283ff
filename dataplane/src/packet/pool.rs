//! A per-worker pool of preallocated packet buffers: small ones for ordinary frames and a
//! second, smaller set of large ones for GSO super-packets (see `buffer`).
//!
//! Invariant: buffers are allocated only in `with_capacity`/`with_large`; `get` and
//! `get_large` hand out a reset buffer or nothing, `put` takes one back onto the free list of
//! its size. A worker that runs dry stops receiving (back-pressure) instead of allocating.

use super::buffer::Packet;

pub struct PacketPool {
    free: Vec<Packet>,
    large: Vec<Packet>,
    /// Large buffers this pool was made with (free or not).
    large_total: usize,
}

/// Large buffers a worker's pool holds by default: a receive burst of super-packets from one
/// port plus what the transmit queues hold (~4 MiB per worker).
pub const DEFAULT_LARGE: usize = 64;

impl PacketPool {
    /// `n` small buffers and no large one (a port then never receives super-packets).
    pub fn with_capacity(n: usize) -> Self {
        Self::with_large(n, 0)
    }

    /// `n` small buffers and `large` large ones.
    pub fn with_large(n: usize, large: usize) -> Self {
        Self {
            free: (0..n).map(|_| Packet::new()).collect(),
            large: (0..large).map(|_| Packet::new_large()).collect(),
            large_total: large,
        }
    }

    #[inline]
    pub fn get(&mut self) -> Option<Packet> {
        let mut p = self.free.pop()?;
        p.reset();
        Some(p)
    }

    /// A large buffer, for a frame that may be a super-packet.
    #[inline]
    pub fn get_large(&mut self) -> Option<Packet> {
        let mut p = self.large.pop()?;
        p.reset();
        Some(p)
    }

    #[inline]
    pub fn put(&mut self, p: Packet) {
        if p.is_large() {
            self.large.push(p);
        } else {
            self.free.push(p);
        }
    }

    /// Free small buffers.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Whether this pool was made with large buffers at all (a device that may receive
    /// super-packets waits for a free one rather than receiving without).
    pub fn has_large(&self) -> bool {
        self.large_total > 0
    }

    /// Free large buffers.
    pub fn available_large(&self) -> usize {
        self.large.len()
    }
}
