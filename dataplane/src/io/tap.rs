//! TAP backend: one queue (one descriptor) of a multi-queue TAP per worker, with a
//! virtio-net header in front of every frame so the kernel can hand over frames whose L4
//! checksum is still partial and TCP super-packets of up to 64 KB (TSO), and take them back.
//!
//! Invariants:
//! - Every queue of a device is attached with the same flags (IFF_TAP | IFF_NO_PI |
//!   IFF_MULTI_QUEUE | IFF_VNET_HDR), a 12-byte header (`virtio_net_hdr_v1`) and offloads
//!   TUN_F_CSUM | TUN_F_TSO4: the kernel hands over TCP/IPv4 super-packets with the header's
//!   GSO fields set, and segments in software what we do not accept (UDP GSO, TCP/IPv6: the
//!   IPv6 path, `pipeline::v6`, takes no super-packets).
//! - RX is one readv per frame: the header into a stack scratch, the frame scattered over a
//!   small buffer's receive area and the tail of a large buffer's; a frame that fits the small
//!   buffer stays there (no copy), a super-packet is completed in the large buffer by copying
//!   its first `MAX_FRAME` bytes over. One spare byte after both reveals a frame the kernel had
//!   to truncate (dropped, `rx_oversized`). While every large buffer of the pool is in flight
//!   the burst stops (back-pressure); only a pool made without large buffers (tests, tools)
//!   reads into the small buffer alone, and then a super-packet is dropped as oversized. The header's claims are checked by the pipeline (`offload::vnet`).
//! - TX is one writev per frame or per run of segments of one TCP flow that `offload::coalesce`
//!   merges (user-space GRO): the virtio-net header (all zero for a plain frame; TCPv4 GSO for
//!   a super-packet passed through or merged), then the frame (and the other segments'
//!   payloads) in place.
//! - The descriptor is non-blocking: `rx_burst` stops when the queue is empty.
//! - The kernel, not the caller, picks which queue a frame leaves the kernel on (by flow
//!   hash); a queue has no index the caller could choose.

use std::ffi::{c_int, c_short, c_ulong};
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::PacketIo;
use super::sys::{self, IfName, context};
use crate::packet::{Packet, PacketPool, PortId};

use crate::offload::coalesce;
use crate::offload::vnet::{HDR_LEN as VNET_HDR_LEN, VnetHeader};
use crate::packet::MAX_FRAME;

/// Offloads the queue accepts from the kernel: partial checksums and TCP super-packets.
const OFFLOADS: u32 = libc::TUN_F_CSUM | libc::TUN_F_TSO4;

/// Counters of one queue since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames dropped on receive because they did not fit a packet buffer.
    pub rx_oversized: u64,
    /// Super-packets received (TSO from the kernel).
    pub rx_gso: u64,
    /// Super-packets written (passed through, or merged from segments).
    pub tx_gso: u64,
    /// Segments merged into the super-packets written (`offload::coalesce`).
    pub tx_coalesced: u64,
}

/// One queue of a multi-queue TAP device.
pub struct TapQueue {
    file: File,
    name: String,
    stats: TapStats,
}

impl TapQueue {
    /// Attaches a new queue to the TAP `name` in the calling thread's network namespace,
    /// creating the device if it does not exist. A device created here disappears with its
    /// last queue unless it was made persistent; an existing device must have been created
    /// multi-queue (e.g. `ip tuntap add NAME mode tap multi_queue`).
    pub fn open(name: &str) -> io::Result<Self> {
        let ifname = IfName::new(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| context(e, "open /dev/net/tun"))?;
        let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR;
        let mut request = ifname.request(libc::__c_anonymous_ifr_ifru {
            ifru_flags: flags as c_short,
        });
        sys::ioctl_with(
            file.as_fd(),
            libc::TUNSETIFF,
            &mut request,
            format_args!("TUNSETIFF {name} (an existing device must be a multi-queue TAP)"),
        )?;
        let mut header_len = VNET_HDR_LEN as c_int;
        sys::ioctl_with(
            file.as_fd(),
            libc::TUNSETVNETHDRSZ,
            &mut header_len,
            "TUNSETVNETHDRSZ",
        )?;
        sys::ioctl_value(
            file.as_fd(),
            libc::TUNSETOFFLOAD,
            c_ulong::from(OFFLOADS),
            "TUNSETOFFLOAD",
        )?;
        Ok(Self {
            file,
            name: name.to_owned(),
            stats: TapStats::default(),
        })
    }

    /// Makes the device outlive its queues (or not): a persistent TAP survives a dataplane
    /// restart, and the next process attaches to it with `open`.
    pub fn set_persistent(&self, persistent: bool) -> io::Result<()> {
        sys::ioctl_value(
            self.file.as_fd(),
            libc::TUNSETPERSIST,
            c_ulong::from(persistent),
            format_args!("TUNSETPERSIST {}", self.name),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's descriptor, for poll(2)/epoll when the worker is idle: readable when the
    /// kernel has queued a frame on this queue.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn stats(&self) -> TapStats {
        self.stats
    }
}

/// The queue's descriptor, for the device-wide ioctls (`cpu_steering`).
impl AsFd for TapQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Write errors that concern one frame (the frame is refused, the queue goes on), as opposed
/// to the queue itself failing (e.g. EBADFD once the device was deleted).
fn is_frame_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::EAGAIN | libc::EINVAL | libc::EIO | libc::ENOMEM | libc::ENOBUFS | libc::EMSGSIZE
        )
    )
}

impl PacketIo for TapQueue {
    fn rx_dropped(&mut self) -> u64 {
        self.stats.rx_oversized
    }

    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let mut received = 0;
        while received < max {
            let Some(mut pkt) = pool.get() else { break };
            let mut large = pool.get_large();
            if large.is_none() && pool.has_large() {
                // Every large buffer is in flight: wait for the next round rather than
                // truncate a super-packet.
                pool.put(pkt);
                break;
            }
            let mut header = [0u8; VNET_HDR_LEN];
            let mut overflow = [0u8; 1];
            let mut tail: &mut [u8] = &mut [];
            if let Some(large) = large.as_mut() {
                tail = large.receive_area_from(MAX_FRAME);
            }
            let read = self.file.read_vectored(&mut [
                IoSliceMut::new(&mut header),
                IoSliceMut::new(pkt.receive_area()),
                IoSliceMut::new(tail),
                IoSliceMut::new(&mut overflow),
            ]);
            let total = match read {
                Ok(total) => total,
                Err(err) => {
                    pool.put(pkt);
                    if let Some(large) = large {
                        pool.put(large);
                    }
                    let idle = matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    );
                    // An error after some frames is reported by the next call.
                    if idle || received > 0 {
                        break;
                    }
                    return Err(context(err, format_args!("read from TAP {}", self.name)));
                }
            };
            // The kernel truncates a frame to the buffers given: a byte in `overflow` means
            // the frame was longer than the receive area, and `set_received` refuses it.
            let frame_len = total.saturating_sub(VNET_HDR_LEN);
            if let Some(mut large) = large {
                if frame_len > MAX_FRAME {
                    // A super-packet: its first MAX_FRAME bytes went to the small buffer.
                    pkt.set_received(MAX_FRAME);
                    large.receive_area()[..MAX_FRAME].copy_from_slice(pkt.data());
                    std::mem::swap(&mut pkt, &mut large);
                }
                pool.put(large);
            }
            if total < VNET_HDR_LEN || !pkt.set_received(frame_len) {
                self.stats.rx_oversized += 1;
                pool.put(pkt);
                continue;
            }
            VnetHeader::parse(&header).apply(&mut pkt.meta);
            pkt.meta.in_port = port;
            if pkt.meta.offload.is_gso() {
                self.stats.rx_gso += 1;
            }
            batch.push(pkt);
            received += 1;
        }
        Ok(received)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let mut sent = 0;
        let mut failure = None;
        let mut i = 0;
        while i < pkts.len() && failure.is_none() {
            let n = coalesce::run(&pkts[i..]);
            let result = if n > 1 {
                self.write_merged(&mut pkts[i..i + n])
            } else {
                let header = tx_header(&pkts[i]);
                let slices = [IoSlice::new(&header), IoSlice::new(pkts[i].data())];
                if pkts[i].meta.offload.is_gso() {
                    self.stats.tx_gso += 1;
                }
                self.file.write_vectored(&slices)
            };
            match result {
                Ok(_) => sent += n,
                Err(err) if is_frame_error(&err) => {}
                Err(err) => failure = Some(err),
            }
            i += n;
        }
        for pkt in pkts.drain(..) {
            pool.put(pkt);
        }
        match failure {
            Some(err) => Err(context(err, format_args!("write to TAP {}", self.name))),
            None => Ok(sent),
        }
    }

    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.raw_fd())
    }

    fn accepts_gso(&self) -> bool {
        true
    }
}

impl TapQueue {
    /// Writes a run of segments (`coalesce::run`) as one super-packet: the head's headers,
    /// rewritten for the merged length, and every segment's payload, in one writev.
    fn write_merged(&mut self, run: &mut [Packet]) -> io::Result<usize> {
        let Some(header) = coalesce::merge_run(run) else {
            return Ok(0);
        };
        let header = header.to_bytes();
        let mut slices = [IoSlice::new(&[]); coalesce::MAX_RUN + 1];
        let used = coalesce::gather(&header, run, &mut slices);
        self.stats.tx_gso += 1;
        self.stats.tx_coalesced += (used - 1) as u64;
        self.file.write_vectored(&slices[..used])
    }
}

/// The virtio-net header for one frame (`VnetHeader::for_transmit`).
fn tx_header(pkt: &Packet) -> [u8; VNET_HDR_LEN] {
    VnetHeader::for_transmit(pkt).to_bytes()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tso_tests;
