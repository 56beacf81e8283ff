//! AF_XDP backend: one XDP socket per (device, queue), with its own UMEM, fill, completion,
//! RX and TX rings (through `xdpilone`), fed by a hand-encoded redirect program that this
//! module loads and attaches itself (no clang, no libbpf).
//!
//! Invariants:
//! - Setup order: program attached (frames still pass to the kernel: the map is empty), UMEM
//!   registered, RX frames lent to the fill ring, socket bound, then the socket put in the
//!   map. Dropping the port detaches the program first and unmaps the UMEM last.
//! - RX copies each frame once, UMEM -> pool buffer, and in the same burst puts the frame back
//!   on the fill ring: fill slots are reserved before RX descriptors are read, so every frame
//!   read has a slot and none is ever lost. A frame longer than a packet buffer is dropped and
//!   counted (`rx_truncated`).
//! - TX copies each frame once, buffer -> a free TX frame, posts its descriptor, and kicks
//!   the kernel with `sendto(MSG_DONTWAIT)`. In copy mode the kernel sends only from that
//!   call, at most 32 frames each time, so the kick repeats while it makes progress; what a
//!   busy or down device leaves in the ring goes out with the next `tx_burst` (even an empty
//!   one). A frame with no free TX frame or ring slot is refused (`tx_ring_full`).
//! - TX frames come back only through the completion ring, which `tx_burst` reaps first; a
//!   free frame is owned by us alone, so writing it never races the kernel.
//! - AF_XDP carries no checksum status. A frame that a veth peer sent with checksum offload
//!   (CHECKSUM_PARTIAL) arrives with only the pseudo-header sum in its L4 checksum and
//!   `csum_partial` false, and a TSO super-frame is too long for a UMEM frame: the peer of an
//!   AF_XDP port must have TX checksum offload off (`ethtool -K PEER tx off`, which turns TSO
//!   off with it). A test pins the checksum behaviour and the remedy.
//! - Nothing on the burst path allocates: the free-frame stack is sized for every TX frame.
//!   The only syscalls are the TX kick and, in zero-copy mode, a fill-ring wakeup the
//!   driver asks for.

mod datapath;
pub(crate) mod program;
mod umem;

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use self::program::XdpRedirect;
use self::umem::{Layout, UmemArea};
use super::PacketIo;
use super::sys::{self, context};
use crate::packet::{Packet, PacketPool, PortId};

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native if the driver has it, generic otherwise.
    #[default]
    Auto,
    /// In the core network stack on socket buffers (`XDP_FLAGS_SKB_MODE`): any device, the
    /// socket always in copy mode.
    Generic,
    /// In the driver (`XDP_FLAGS_DRV_MODE`); zero-copy where the driver supports it.
    Native,
}

/// How to open an AF_XDP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// Device queue the socket serves.
    pub queue: u32,
    /// UMEM frames: half (rounded down) for receiving, the rest for transmitting; 2 to 2^20.
    pub frames: usize,
    /// Bytes per UMEM frame: 2048 or 4096. The kernel keeps 256 of them as headroom, so a
    /// 2048-byte frame receives Ethernet frames of up to 1792 bytes (a 1500 MTU fits).
    pub frame_size: usize,
    pub mode: XdpMode,
    /// Preferred busy polling (for a worker that never sleeps): SO_PREFER_BUSY_POLL,
    /// SO_BUSY_POLL (`BUSY_POLL_USECS`) and SO_BUSY_POLL_BUDGET (`BUSY_POLL_BUDGET`), and an
    /// empty receive drives the device's NAPI with a non-blocking recvfrom.
    pub busy_poll: bool,
}

/// Microseconds a busy-polling socket's receive call polls the device (SO_BUSY_POLL).
pub const BUSY_POLL_USECS: i32 = 20;
/// Frames one busy poll may take (SO_BUSY_POLL_BUDGET): a worker's burst.
pub const BUSY_POLL_BUDGET: i32 = crate::worker::BURST as i32;

// asm-generic/socket.h (libc lacks the last two).
const SO_BUSY_POLL: i32 = 46;
const SO_PREFER_BUSY_POLL: i32 = 69;
const SO_BUSY_POLL_BUDGET: i32 = 70;

/// Turns preferred busy polling on for the bound socket `fd`.
fn set_busy_poll(fd: BorrowedFd<'_>) -> io::Result<()> {
    let on: i32 = 1;
    sys::set_option(
        fd,
        libc::SOL_SOCKET,
        SO_PREFER_BUSY_POLL,
        &on,
        "SO_PREFER_BUSY_POLL",
    )?;
    sys::set_option(
        fd,
        libc::SOL_SOCKET,
        SO_BUSY_POLL,
        &BUSY_POLL_USECS,
        "SO_BUSY_POLL",
    )?;
    sys::set_option(
        fd,
        libc::SOL_SOCKET,
        SO_BUSY_POLL_BUDGET,
        &BUSY_POLL_BUDGET,
        "SO_BUSY_POLL_BUDGET",
    )
}

/// The busy-poll settings of `fd`: (prefer, usecs). The kernel takes SO_BUSY_POLL_BUDGET
/// but does not give it back (getsockopt answers ENOPROTOOPT).
fn busy_poll_settings(fd: BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    let (mut prefer, mut usecs) = (0i32, 0i32);
    sys::get_option(
        fd,
        libc::SOL_SOCKET,
        SO_PREFER_BUSY_POLL,
        &mut prefer,
        "SO_PREFER_BUSY_POLL",
    )?;
    sys::get_option(
        fd,
        libc::SOL_SOCKET,
        SO_BUSY_POLL,
        &mut usecs,
        "SO_BUSY_POLL",
    )?;
    Ok((prefer, usecs))
}

impl Default for AfXdpConfig {
    fn default() -> Self {
        Self {
            queue: 0,
            frames: 4096,
            frame_size: 2048,
            mode: XdpMode::Auto,
            busy_poll: false,
        }
    }
}

/// Counters of one port since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    /// Frames the kernel dropped on the way to the RX ring: no fill frame, RX ring full, or
    /// longer than a UMEM frame (XDP_STATISTICS `rx_dropped`).
    pub kernel_rx_dropped: u64,
    /// Times the kernel found the RX ring full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub fill_ring_empty: u64,
    /// RX and TX descriptors the kernel rejected as invalid.
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Frames dropped on receive because they were longer than a packet buffer.
    pub rx_truncated: u64,
    /// Frames `tx_burst` refused for want of a free TX frame or TX ring slot.
    pub tx_ring_full: u64,
    /// Frames `tx_burst` refused because they were longer than a UMEM frame.
    pub tx_oversized: u64,
}

/// One XDP socket on one queue of a device.
pub struct AfXdpPort {
    // Field order is drop order: the program is detached first, then the rings are unmapped
    // and the socket closed (the last ring holds it), and the UMEM they point into goes last.
    redirect: XdpRedirect,
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    area: UmemArea,
    layout: Layout,
    /// TX frames owned by us: not in the TX ring and not awaiting a completion.
    tx_free: Vec<u64>,
    zero_copy: bool,
    /// Descriptors are in the TX ring that the last kick did not get sent.
    unsent: bool,
    /// An empty receive drives the device's NAPI (preferred busy polling is on).
    busy_poll: bool,
    stats: AfXdpStats,
}

fn xdp_error(err: xdpilone::Errno, what: impl std::fmt::Display) -> io::Error {
    context(io::Error::from_raw_os_error(err.get_raw().abs()), what)
}

/// How often, and how far apart, `bind` retries a queue the kernel reports busy.
const BIND_TRIES: u32 = 100;
const BIND_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Binds the socket of `user` to its device queue. The kernel releases a queue from a work
/// queue after its last socket closed, so a queue just given up by another port reads busy
/// for a moment: EBUSY is retried for up to a second before it is reported.
fn bind(umem: &Umem, user: &User) -> Result<(), xdpilone::Errno> {
    let mut tries = 1;
    loop {
        match umem.bind(user) {
            Err(e) if e.get_raw().abs() == libc::EBUSY && tries < BIND_TRIES => {
                tries += 1;
                std::thread::sleep(BIND_RETRY_PAUSE);
            }
            done => return done,
        }
    }
}

/// Whether the bound socket `fd` runs in zero-copy mode (XDP_OPTIONS).
fn bound_zero_copy(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut options = libc::xdp_options { flags: 0 };
    sys::get_option(
        fd,
        libc::SOL_XDP,
        libc::XDP_OPTIONS,
        &mut options,
        "XDP_OPTIONS",
    )?;
    Ok(options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

impl AfXdpPort {
    /// Opens a port on queue `config.queue` of the device `ifname` in the calling thread's
    /// network namespace. Needs CAP_NET_ADMIN and CAP_BPF (or root).
    pub fn open(ifname: &str, config: &AfXdpConfig) -> io::Result<Self> {
        let layout = Layout::new(config)?;
        let ifindex = super::netdev::ifindex(ifname)?;
        let redirect = XdpRedirect::attach(ifname, ifindex, config.queue, config.mode)?;
        let area = UmemArea::map(&layout)?;
        let umem_config = UmemConfig {
            fill_size: layout.rx_ring,
            complete_size: layout.tx_ring,
            frame_size: layout.frame_size as u32,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page-aligned (it came from mmap) and exactly `frames` frames
        // long; it is owned by the port and dropped after the socket and every ring (field
        // order), so it outlives the kernel's use of it. The `Umem` value itself is dropped at
        // the end of this function and never touches the area.
        let umem = unsafe { Umem::new(umem_config, area.as_raw()) }
            .map_err(|e| xdp_error(e, "registering the AF_XDP UMEM"))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(|e| xdp_error(e, format_args!("interface {ifname}")))?;
        info.set_queue(config.queue);
        let socket =
            Socket::with_shared(&info, &umem).map_err(|e| xdp_error(e, "AF_XDP socket"))?;
        let mut device = umem
            .fq_cq(&socket)
            .map_err(|e| xdp_error(e, "AF_XDP fill and completion rings"))?;
        let copy = if redirect.mode() == XdpMode::Generic {
            SocketConfig::XDP_BIND_COPY
        } else {
            0
        };
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: std::num::NonZeroU32::new(layout.rx_ring),
                    tx_size: std::num::NonZeroU32::new(layout.tx_ring),
                    bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP | copy,
                },
            )
            .map_err(|e| xdp_error(e, "AF_XDP RX and TX rings"))?;
        let rx = user
            .map_rx()
            .map_err(|e| xdp_error(e, "mmap of the RX ring"))?;
        let tx = user
            .map_tx()
            .map_err(|e| xdp_error(e, "mmap of the TX ring"))?;
        let mut fill = device.fill(layout.rx_frames);
        let lent = fill.insert(layout.rx_addresses());
        fill.commit();
        drop(fill);
        if lent != layout.rx_frames {
            return Err(io::Error::other(format!(
                "fill ring took {lent} of {} frames",
                layout.rx_frames
            )));
        }
        bind(&umem, &user).map_err(|e| {
            xdp_error(
                e,
                format_args!(
                    "binding the AF_XDP socket to {ifname} queue {}",
                    config.queue
                ),
            )
        })?;
        // SAFETY: the socket descriptor is open while `rx` (which holds it) lives, which is
        // for the rest of this function.
        let fd = unsafe { BorrowedFd::borrow_raw(rx.as_raw_fd()) };
        let zero_copy = bound_zero_copy(fd)?;
        if config.busy_poll {
            set_busy_poll(fd)?;
        }
        redirect.steer(config.queue, fd)?;
        let mut tx_free = Vec::with_capacity(layout.tx_frames as usize);
        tx_free.extend(layout.tx_addresses());
        Ok(Self {
            redirect,
            rx,
            tx,
            device,
            area,
            layout,
            tx_free,
            zero_copy,
            unsent: false,
            busy_poll: config.busy_poll,
            stats: AfXdpStats::default(),
        })
    }

    /// The socket, for poll(2)/epoll when the worker is idle: readable when the RX ring has a
    /// frame.
    pub fn raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Where the program runs: `Native` or `Generic` (what `Auto` settled on).
    pub fn mode(&self) -> XdpMode {
        self.redirect.mode()
    }

    /// The socket's busy-poll settings as the kernel holds them: (prefer, usecs).
    pub fn busy_poll_settings(&self) -> io::Result<(i32, i32)> {
        // SAFETY: the descriptor is open while `self.rx` (which holds it) lives.
        busy_poll_settings(unsafe { BorrowedFd::borrow_raw(self.raw_fd()) })
    }

    /// Whether the socket runs zero-copy (never on veth or in generic mode).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Frames lent to the kernel for receiving.
    pub fn rx_frames(&self) -> usize {
        self.layout.rx_frames as usize
    }

    /// Frames for transmitting: at most this many can be queued or in flight at once.
    pub fn tx_frames(&self) -> usize {
        self.layout.tx_frames as usize
    }

    /// Counters since the port was opened; reads the kernel's XDP_STATISTICS (cumulative).
    /// Not per packet: one getsockopt.
    pub fn stats(&self) -> io::Result<AfXdpStats> {
        let kernel = self
            .device
            .statistics_v2()
            .map_err(|e| xdp_error(e, "XDP_STATISTICS"))?;
        Ok(AfXdpStats {
            kernel_rx_dropped: kernel.rx_dropped,
            rx_ring_full: kernel.rx_ring_full,
            fill_ring_empty: kernel.rx_fill_ring_empty_descs,
            rx_invalid_descs: kernel.rx_invalid_descs,
            tx_invalid_descs: kernel.tx_invalid_descs,
            ..self.stats
        })
    }
}

impl PacketIo for AfXdpPort {
    fn rx_dropped(&mut self) -> u64 {
        // A failed getsockopt leaves the kernel's share out until the next ask.
        let stats = self.stats().unwrap_or(self.stats);
        stats.kernel_rx_dropped + stats.rx_truncated
    }

    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let mut received = 0;
        // The rings serve a reservation from their cached view of the kernel's position and
        // refresh it only once that is used up, so a second pass sees what the first missed.
        for _ in 0..2 {
            let want = (max - received).min(pool.available());
            if want == 0 {
                break;
            }
            let got = self.receive_pass(port, pool, batch, want);
            if got == 0 {
                break;
            }
            received += got;
        }
        if self.zero_copy && self.device.needs_wakeup() {
            self.device.wake();
        }
        if received == 0 && self.busy_poll {
            self.busy_poll_kick();
        }
        Ok(received)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        self.reap_completions();
        let mut frames = pkts.drain(..);
        let mut queued = 0;
        // Two passes for the same reason as in `rx_burst`.
        for _ in 0..2 {
            if frames.len() == 0 {
                break;
            }
            let posted = self.transmit_pass(&mut frames, pool);
            if posted == 0 {
                break;
            }
            queued += posted;
        }
        for pkt in frames {
            self.stats.tx_ring_full += 1;
            pool.put(pkt);
        }
        if queued > 0 || self.unsent {
            self.kick()?;
        }
        Ok(queued as usize)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.raw_fd())
    }
}

#[cfg(test)]
mod tests;
