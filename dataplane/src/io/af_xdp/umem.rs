//! The UMEM of one AF_XDP socket: an anonymous, page-aligned mapping cut into equal frames,
//! and its split between receiving and transmitting.
//!
//! Invariants:
//! - The area is `frames * frame_size` bytes; frame `i` starts at byte offset
//!   `i * frame_size`, and a UMEM address (what the rings carry) is a byte offset into the
//!   area. `frame_size` is a power of two, so the frame holding an address is found by masking.
//! - Frames `0 .. rx_frames` belong to receiving: each is at any moment in the fill ring, in
//!   the RX ring, or being copied out by `rx_burst`, which puts it straight back on the fill
//!   ring. Frames `rx_frames .. frames` belong to transmitting: each is free, in the TX ring,
//!   or waiting on the completion ring.
//! - Bytes are read or written only through `bytes`/`write`, which check that the range lies
//!   in one frame of the area; whether the kernel is done with that frame is the caller's
//!   promise (both are `unsafe`).
//! - The mapping is unmapped exactly once, when `UmemArea` is dropped; the port drops it after
//!   the socket and rings that point into it.

use std::ffi::c_void;
use std::io;
use std::ptr::{self, NonNull};

use super::AfXdpConfig;
use crate::io::sys::context;

/// Frame sizes the kernel accepts for an aligned UMEM that are at least a packet buffer's
/// worth (with the 256 bytes of XDP headroom taken off).
const FRAME_SIZES: [usize; 2] = [2048, 4096];

/// Frame counts and ring sizes derived from an `AfXdpConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) frame_size: usize,
    pub(super) rx_frames: u32,
    pub(super) tx_frames: u32,
    /// Entries of the fill and RX rings: a power of two that holds every RX frame.
    pub(super) rx_ring: u32,
    /// Entries of the TX and completion rings: a power of two that holds every TX frame.
    pub(super) tx_ring: u32,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl Layout {
    /// Half the frames (rounded down) for receiving, the rest for transmitting.
    pub(super) fn new(config: &AfXdpConfig) -> io::Result<Self> {
        if !FRAME_SIZES.contains(&config.frame_size) {
            return Err(invalid(format!(
                "AF_XDP frame size {} must be one of {FRAME_SIZES:?}",
                config.frame_size
            )));
        }
        let frames = u32::try_from(config.frames)
            .ok()
            .filter(|n| (2..=1 << 20).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "AF_XDP frame count {} must be 2 to 2^20",
                    config.frames
                ))
            })?;
        let rx_frames = frames / 2;
        let tx_frames = frames - rx_frames;
        Ok(Self {
            frame_size: config.frame_size,
            rx_frames,
            tx_frames,
            rx_ring: rx_frames.next_power_of_two(),
            tx_ring: tx_frames.next_power_of_two(),
        })
    }

    pub(super) fn frames(&self) -> u32 {
        self.rx_frames + self.tx_frames
    }

    /// UMEM addresses of the receive frames.
    pub(super) fn rx_addresses(&self) -> impl Iterator<Item = u64> {
        let size = self.frame_size as u64;
        (0..u64::from(self.rx_frames)).map(move |i| i * size)
    }

    /// UMEM addresses of the transmit frames.
    pub(super) fn tx_addresses(&self) -> impl Iterator<Item = u64> {
        let size = self.frame_size as u64;
        (u64::from(self.rx_frames)..u64::from(self.frames())).map(move |i| i * size)
    }

    /// The address of the frame that holds `addr`.
    pub(super) fn frame_start(&self, addr: u64) -> u64 {
        addr & !(self.frame_size as u64 - 1)
    }
}

/// The memory shared with the kernel.
pub(super) struct UmemArea {
    base: NonNull<u8>,
    len: usize,
    frame_size: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; moving the owner to another
// thread moves the only handle to it. It is not `Sync`: frames are accessed through `&self`
// only while the port (which owns this) is borrowed, and the port is not shared.
unsafe impl Send for UmemArea {}

impl UmemArea {
    /// Maps zeroed, pre-faulted memory for every frame of `layout`.
    pub(super) fn map(layout: &Layout) -> io::Result<Self> {
        let len = layout.frame_size * layout.frames() as usize;
        // SAFETY: an anonymous private mapping at an address the kernel chooses cannot overlap
        // any existing Rust object; the other arguments are plain values.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(context(
                io::Error::last_os_error(),
                "mmap of the AF_XDP UMEM",
            ));
        }
        let base = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self {
            base,
            len,
            frame_size: layout.frame_size,
        })
    }

    /// The whole area, for registering it with the kernel (page-aligned: it came from mmap).
    pub(super) fn as_raw(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.base, self.len)
    }

    /// Start offset of `addr .. addr + len` if it lies inside one frame of the area.
    fn range(&self, addr: u64, len: usize) -> Option<usize> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len)?;
        let frame_end = (start & !(self.frame_size - 1)).checked_add(self.frame_size)?;
        (end <= frame_end && frame_end <= self.len).then_some(start)
    }

    /// The `len` bytes at UMEM address `addr`; `None` if they are not inside one frame.
    ///
    /// # Safety
    /// The frame holding `addr` must be the caller's: handed over by the kernel (read from the
    /// RX ring) and not yet given back, so nothing writes it while the slice lives.
    pub(super) unsafe fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = self.range(addr, len)?;
        // SAFETY: `start .. start + len` lies inside the mapping (checked by `range`), which
        // lives as long as `self`; the caller guarantees no one writes it meanwhile.
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), len) })
    }

    /// Copies `data` to UMEM address `addr`; false (nothing written) if it would not lie
    /// inside one frame.
    ///
    /// # Safety
    /// The frame holding `addr` must be the caller's: not in any ring and not awaiting a
    /// completion, so the kernel neither reads nor writes it during the copy.
    pub(super) unsafe fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        let Some(start) = self.range(addr, data.len()) else {
            return false;
        };
        // SAFETY: the destination lies inside the mapping (checked by `range`) and belongs to
        // the caller alone; `data` is caller memory outside the mapping (the area is never
        // handed out as `&mut`), so the two cannot overlap.
        unsafe {
            ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(start), data.len());
        }
        true
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly what mmap returned and this is the only place
        // that unmaps them; the socket and rings that use the area were dropped before it (see
        // the field order of `AfXdpPort`). A failure leaves only a leak, so it is ignored.
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}
