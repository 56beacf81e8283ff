//! The mmap'd TPACKET_V2 rings of one AF_PACKET socket: RX at the start of the mapping, TX
//! right after it, walked frame by frame through each frame's `tp_status` word.
//!
//! Invariants:
//! - Geometry is fixed: `FRAME_SIZE`-byte frames packed `FRAMES_PER_BLOCK` to a `BLOCK_SIZE`
//!   block (the kernel never lets a frame cross a block); frame `i` of a ring starts at
//!   `(i / FRAMES_PER_BLOCK) * BLOCK_SIZE + (i % FRAMES_PER_BLOCK) * FRAME_SIZE`.
//! - Ownership of a frame moves by its status word only: the kernel owns an RX frame while it
//!   reads `TP_STATUS_KERNEL` and a TX frame while it is not `TP_STATUS_AVAILABLE`. We read it
//!   with an acquire load before touching the frame, and hand it back with a release store
//!   after the last access, so the frame bytes are never accessed by both sides at once.
//! - Both cursors advance strictly in ring order, as the kernel's own do, so they stay in
//!   step with it.
//! - Offsets read from a frame header (`tp_mac`, `tp_snaplen`) are checked against the frame
//!   before use: a bad header yields an empty frame, never an out-of-bounds read.
//! - With a virtio-net header (`PACKET_VNET_HDR`, `vnet_len` bytes) every RX frame has one
//!   right before its Ethernet header and every TX slot gets one (all zero: checksums
//!   complete, no GSO) right before the frame; `tp_len` counts it on TX.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::vnet::VNET_LEN;
use crate::io::sys::Mapping;
use crate::packet::MAX_FRAME;

/// Bytes per ring frame: 2048 of Ethernet frame plus the V2 header, the `sockaddr_ll` and
/// alignment padding in front (the kernel puts an Ethernet frame at offset 66 on RX, 32 on TX).
pub(super) const FRAME_SIZE: usize = 2176;
/// Bytes per ring block (a power of two, so the kernel allocates exactly what it uses).
pub(super) const BLOCK_SIZE: usize = 1 << 16;
/// Frames per block: 30, leaving 256 bytes of each block unused.
pub(super) const FRAMES_PER_BLOCK: usize = BLOCK_SIZE / FRAME_SIZE;
/// Where the frame starts in a TX slot without PACKET_TX_HAS_OFF: the V2 header length less
/// the `sockaddr_ll` the kernel expects after it.
const TX_DATA_OFFSET: usize = libc::TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>();
/// Where the kernel puts a received Ethernet frame (no PACKET_RESERVE): the network header
/// at TPACKET_ALIGN(TPACKET2_HDRLEN + 16), the 14-byte Ethernet header just before it.
const RX_ETHERNET_OFFSET: usize = (libc::TPACKET2_HDRLEN + 16).next_multiple_of(16) - 14;

// A full packet buffer fits a ring frame both ways, with a virtio-net header in front.
const _: () = assert!(FRAME_SIZE - RX_ETHERNET_OFFSET - VNET_LEN >= MAX_FRAME);
const _: () = assert!(FRAME_SIZE - TX_DATA_OFFSET - VNET_LEN >= MAX_FRAME);

/// Blocks needed for at least `frames` frames (at least one).
pub(super) fn blocks_for(frames: usize) -> usize {
    frames.div_ceil(FRAMES_PER_BLOCK).max(1)
}

fn frame_offset(index: usize) -> usize {
    (index / FRAMES_PER_BLOCK) * BLOCK_SIZE + (index % FRAMES_PER_BLOCK) * FRAME_SIZE
}

/// One ring's position inside the shared mapping.
struct Cursor {
    /// Byte offset of the ring's first block in the mapping.
    start: usize,
    frames: usize,
    head: usize,
}

impl Cursor {
    fn advance(&mut self) {
        self.head = if self.head + 1 == self.frames {
            0
        } else {
            self.head + 1
        };
    }
}

/// A received frame still owned by us in the RX ring.
pub(super) struct RxFrame<'a> {
    pub(super) status: u32,
    /// Length on the wire; longer than `data` when the frame did not fit the ring frame.
    pub(super) wire_len: usize,
    pub(super) data: &'a [u8],
    pub(super) vlan_tci: u16,
    pub(super) vlan_tpid: u16,
    /// The virtio-net header in front of the frame (all zero without `PACKET_VNET_HDR`).
    pub(super) vnet: [u8; VNET_LEN],
}

/// The RX and TX rings of one socket, over one mapping.
pub(super) struct Rings {
    mapping: Mapping,
    rx: Cursor,
    tx: Cursor,
    /// Bytes of virtio-net header in front of every frame: 0 or `VNET_LEN`.
    vnet_len: usize,
}

impl Rings {
    /// Maps the rings the socket was configured with: `rx_blocks` then `tx_blocks` blocks;
    /// `vnet` when the socket has `PACKET_VNET_HDR`.
    pub(super) fn map(
        fd: BorrowedFd<'_>,
        rx_blocks: usize,
        tx_blocks: usize,
        vnet: bool,
    ) -> io::Result<Self> {
        let mapping = Mapping::shared(fd, (rx_blocks + tx_blocks) * BLOCK_SIZE, "packet rings")?;
        Ok(Self {
            mapping,
            rx: Cursor {
                start: 0,
                frames: rx_blocks * FRAMES_PER_BLOCK,
                head: 0,
            },
            tx: Cursor {
                start: rx_blocks * BLOCK_SIZE,
                frames: tx_blocks * FRAMES_PER_BLOCK,
                head: 0,
            },
            vnet_len: if vnet { VNET_LEN } else { 0 },
        })
    }

    pub(super) fn rx_frames(&self) -> usize {
        self.rx.frames
    }

    pub(super) fn tx_frames(&self) -> usize {
        self.tx.frames
    }

    /// Pointer to the first byte of frame `index` of the ring at `cursor`.
    fn frame_ptr(&self, cursor: &Cursor, index: usize) -> *mut u8 {
        let offset = cursor.start + frame_offset(index);
        debug_assert!(offset + FRAME_SIZE <= self.mapping.len());
        // SAFETY: `index < cursor.frames` and the ring lies inside the mapping (see `map`), so
        // the offset stays within the same allocation.
        unsafe { self.mapping.base().as_ptr().add(offset) }
    }

    fn status_word(&self, cursor: &Cursor, index: usize) -> &AtomicU32 {
        // SAFETY: every frame starts with a 4-byte-aligned `tp_status` (frames are 16-byte
        // aligned in page-aligned blocks) that lives as long as the mapping borrowed here; the
        // kernel accesses it atomically too, so concurrent access through `AtomicU32` is sound.
        unsafe { AtomicU32::from_ptr(self.frame_ptr(cursor, index).cast::<u32>()) }
    }

    /// The frame at the RX head, if the kernel has handed it to us.
    pub(super) fn rx_peek(&self) -> Option<RxFrame<'_>> {
        let status = self
            .status_word(&self.rx, self.rx.head)
            .load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let frame = self.frame_ptr(&self.rx, self.rx.head);
        // SAFETY: the acquire load above saw TP_STATUS_USER, so the kernel finished writing
        // this frame and will not touch it until `rx_release`; the header is at its start and
        // `read_unaligned` needs no alignment.
        let header = unsafe { frame.cast::<libc::tpacket2_hdr>().read_unaligned() };
        let start = usize::from(header.tp_mac);
        let captured = usize::try_from(header.tp_snaplen).unwrap_or(usize::MAX);
        let wire_len = usize::try_from(header.tp_len).unwrap_or(usize::MAX);
        let in_bounds = start >= size_of::<libc::tpacket2_hdr>() + self.vnet_len
            && captured <= FRAME_SIZE.saturating_sub(start);
        let mut vnet = [0u8; VNET_LEN];
        let data: &[u8] = if in_bounds {
            // SAFETY: `start..start + captured` lies inside this frame (checked above), after
            // the header, and stays ours and unchanged while the returned borrow of `self`
            // lives: `rx_release` needs `&mut self`.
            let data = unsafe { std::slice::from_raw_parts(frame.add(start), captured) };
            // SAFETY: the header's `vnet_len` bytes lie right before the frame data, after
            // the V2 header (checked above), in the same frame we own until `rx_release`.
            let header = unsafe {
                std::slice::from_raw_parts(frame.add(start - self.vnet_len), self.vnet_len)
            };
            vnet[..self.vnet_len].copy_from_slice(header);
            data
        } else {
            &[]
        };
        Some(RxFrame {
            status,
            wire_len,
            data,
            vlan_tci: header.tp_vlan_tci,
            vlan_tpid: header.tp_vlan_tpid,
            vnet,
        })
    }

    /// Hands the frame at the RX head back to the kernel and moves to the next one.
    pub(super) fn rx_release(&mut self) {
        self.status_word(&self.rx, self.rx.head)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.rx.advance();
    }

    /// Copies `frame` into the TX head slot and marks it for sending; false when the slot is
    /// still the kernel's (ring full) or the frame does not fit a slot.
    pub(super) fn tx_push(&mut self, frame: &[u8]) -> bool {
        let prefix = self.vnet_len;
        if frame.len() > FRAME_SIZE - TX_DATA_OFFSET - prefix {
            return false;
        }
        let status = self
            .status_word(&self.tx, self.tx.head)
            .load(Ordering::Acquire);
        if status != libc::TP_STATUS_AVAILABLE {
            return false;
        }
        let slot = self.frame_ptr(&self.tx, self.tx.head);
        let Ok(len) = u32::try_from(prefix + frame.len()) else {
            return false;
        };
        // SAFETY: the slot is AVAILABLE, so the kernel does not read it until the release store
        // below. The header and frame fit after TX_DATA_OFFSET (checked above) and cannot
        // overlap `frame`, which is caller memory outside the mapping. `tp_len` is a u32 at
        // offset 4 of the 16-byte-aligned slot.
        unsafe {
            std::ptr::write_bytes(slot.add(TX_DATA_OFFSET), 0, prefix);
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                slot.add(TX_DATA_OFFSET + prefix),
                frame.len(),
            );
            slot.add(std::mem::offset_of!(libc::tpacket2_hdr, tp_len))
                .cast::<u32>()
                .write(len);
        }
        self.status_word(&self.tx, self.tx.head)
            .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.tx.advance();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_never_cross_a_block_and_fit_a_full_packet() {
        assert_eq!(FRAMES_PER_BLOCK, 30);
        for index in 0..3 * FRAMES_PER_BLOCK {
            let start = frame_offset(index);
            assert_eq!(start / BLOCK_SIZE, (start + FRAME_SIZE - 1) / BLOCK_SIZE);
            assert_eq!(start % 16, 0, "TPACKET_ALIGNMENT");
        }
        assert_eq!(RX_ETHERNET_OFFSET, 66);
        assert_eq!(TX_DATA_OFFSET, 32);
    }

    #[test]
    fn block_count_rounds_up() {
        assert_eq!(blocks_for(0), 1);
        assert_eq!(blocks_for(30), 1);
        assert_eq!(blocks_for(31), 2);
        assert_eq!(blocks_for(256), 9);
    }
}
