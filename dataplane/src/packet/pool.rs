//! A per-worker pool of preallocated packet buffers.
//!
//! Invariant: buffers are allocated only in `with_capacity`; `get` hands out a reset
//! buffer or nothing, `put` takes one back. A worker that runs dry stops receiving
//! (back-pressure) instead of allocating.

use super::buffer::Packet;

pub struct PacketPool {
    free: Vec<Packet>,
}

impl PacketPool {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            free: (0..n).map(|_| Packet::new()).collect(),
        }
    }

    #[inline]
    pub fn get(&mut self) -> Option<Packet> {
        let mut p = self.free.pop()?;
        p.reset();
        Some(p)
    }

    #[inline]
    pub fn put(&mut self, p: Packet) {
        self.free.push(p);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }
}
