//! `Packet`: one frame in a fixed buffer with headroom in front and tailroom behind.
//!
//! Two sizes of buffer exist: small ones (`MAX_FRAME`, one MTU-sized frame) for nearly every
//! packet, and large ones (`MAX_SUPER_FRAME`) for GSO super-packets of up to 64 KB that a pod's
//! kernel hands over with TSO on. Both are the same type; a buffer's size is fixed when it is
//! allocated and decides which free list of the pool it returns to.
//!
//! Invariant: `start + len <= buf.len()` at all times; every method that moves the window
//! checks it and reports failure instead of panicking.

use super::meta::Meta;

/// Bytes reserved in front of a received frame (VXLAN needs 50, a vnet header 12).
pub const HEADROOM: usize = 128;
/// Largest frame a buffer holds (a 1500-byte MTU frame plus VLAN tag, with room to spare).
pub const MAX_FRAME: usize = 2048;
/// Total buffer size.
pub const BUF_SIZE: usize = HEADROOM + MAX_FRAME;
/// Largest frame a large buffer holds: an Ethernet header and a 64 KB IPv4 packet (a GSO
/// super-packet), with room for a VLAN tag.
pub const MAX_SUPER_FRAME: usize = 65_536 + 32;
/// Total size of a large buffer.
pub const LARGE_BUF_SIZE: usize = HEADROOM + MAX_SUPER_FRAME;

pub struct Packet {
    buf: Box<[u8]>,
    start: usize,
    len: usize,
    pub meta: Meta,
}

impl Default for Packet {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Packet {
    /// Allocates a buffer. Only the pool and tests call this.
    pub fn new() -> Self {
        Self::with_buffer(BUF_SIZE)
    }

    /// Allocates a large buffer (GSO super-packets). Only the pool and tests call this.
    pub fn new_large() -> Self {
        Self::with_buffer(LARGE_BUF_SIZE)
    }

    fn with_buffer(size: usize) -> Self {
        Self {
            buf: vec![0u8; size].into_boxed_slice(),
            start: HEADROOM,
            len: 0,
            meta: Meta::default(),
        }
    }

    /// A packet holding a copy of `frame` (tests, the in-memory backend, the trace tool).
    pub fn from_frame(frame: &[u8]) -> Option<Self> {
        let mut p = if frame.len() > MAX_FRAME {
            Self::new_large()
        } else {
            Self::new()
        };
        p.fill(frame).then_some(p)
    }

    /// The largest frame this buffer holds (`MAX_FRAME` or `MAX_SUPER_FRAME`).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len() - HEADROOM
    }

    /// Whether this is a large (super-packet) buffer.
    #[inline]
    pub fn is_large(&self) -> bool {
        self.buf.len() > BUF_SIZE
    }

    /// Resets the window to an empty frame after the headroom and clears the metadata.
    pub fn reset(&mut self) {
        self.start = HEADROOM;
        self.len = 0;
        self.meta = Meta::default();
    }

    /// Copies `frame` in after the headroom; false (packet unchanged) if it does not fit.
    pub fn fill(&mut self, frame: &[u8]) -> bool {
        if frame.len() > self.capacity() {
            return false;
        }
        self.reset();
        self.buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
        self.len = frame.len();
        true
    }

    /// The receive area for a backend that writes straight into the buffer:
    /// call `set_received(n)` afterwards.
    pub fn receive_area(&mut self) -> &mut [u8] {
        self.reset();
        &mut self.buf[HEADROOM..]
    }

    /// The receive area from byte `offset` of the frame on (a frame scattered over a small
    /// buffer's receive area and this one's tail); empty if `offset` is past the capacity.
    pub fn receive_area_from(&mut self, offset: usize) -> &mut [u8] {
        self.reset();
        let from = (HEADROOM + offset).min(self.buf.len());
        &mut self.buf[from..]
    }

    /// Marks `n` bytes written into `receive_area()` as the frame.
    pub fn set_received(&mut self, n: usize) -> bool {
        if n > self.capacity() {
            return false;
        }
        self.start = HEADROOM;
        self.len = n;
        true
    }

    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn headroom(&self) -> usize {
        self.start
    }

    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.start - self.len
    }

    /// Grows the frame at the front by `n` bytes (for encapsulation); false if no headroom.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        self.len += n;
        true
    }

    /// Removes `n` bytes from the front (for decapsulation); false if the frame is shorter.
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.start += n;
        self.len -= n;
        true
    }

    /// Sets the frame length, growing into the tailroom or shrinking; false if it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.buf.len() {
            return false;
        }
        self.len = len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pull_move_the_window_within_bounds() {
        let mut p = Packet::from_frame(&[1, 2, 3, 4]).expect("fits");
        assert!(p.push_front(50));
        assert_eq!(p.len(), 54);
        assert_eq!(&p.data()[50..], &[1, 2, 3, 4]);
        assert!(p.pull_front(50));
        assert_eq!(p.data(), &[1, 2, 3, 4]);
        assert!(!p.pull_front(5));
        assert!(!p.push_front(HEADROOM + 1));
        assert!(p.set_len(2));
        assert_eq!(p.data(), &[1, 2]);
        assert!(!p.set_len(MAX_FRAME + 1));
    }

    #[test]
    fn oversized_frames_are_refused() {
        assert!(!Packet::new().fill(&[0u8; MAX_FRAME + 1]));
        assert!(Packet::from_frame(&vec![0u8; MAX_SUPER_FRAME + 1]).is_none());
    }

    #[test]
    fn large_buffers_hold_super_frames() {
        let frame: Vec<u8> = (0..60_000u32).map(|i| i as u8).collect();
        let mut p = Packet::from_frame(&frame).expect("fits a large buffer");
        assert!(p.is_large());
        assert_eq!(p.data(), &frame[..]);
        assert!(p.push_front(50));
        assert!(p.set_len(MAX_SUPER_FRAME + HEADROOM - p.headroom()));
        assert!(!p.set_len(MAX_SUPER_FRAME + HEADROOM - p.headroom() + 1));
        let small = Packet::new();
        assert!(!small.is_large());
        assert_eq!(small.capacity(), MAX_FRAME);
    }
}
