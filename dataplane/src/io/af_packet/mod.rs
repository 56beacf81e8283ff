//! AF_PACKET backend: one socket per worker on a device, with mmap'd TPACKET_V2 RX and TX
//! rings, fanout across the workers of a device, qdisc bypass and no echo of its own sends.
//!
//! Invariants:
//! - The socket is non-blocking and receives nothing before its rings exist: it is created
//!   with protocol 0 and bound to (ETH_P_ALL, ifindex) only after the rings are mapped.
//! - RX copies each frame once, ring -> pool buffer, then returns the ring frame at once; a
//!   frame that did not fit a ring frame or a buffer is dropped and counted (`rx_truncated`).
//!   A VLAN tag the device stripped (TP_STATUS_VLAN_VALID) is put back in the frame, so the
//!   pipeline sees the bytes that were on the wire.
//! - TX copies each frame once, buffer -> ring slot, then kicks the kernel with one
//!   `sendto(NULL, 0, MSG_DONTWAIT)` per burst, and once more each time the ring fills up
//!   mid-burst (then retries that frame). A frame with still no free slot is refused (the
//!   returned count is lower). Frames queued while the link is down or the device queue is
//!   busy stay queued and go out with the next kick (the next `tx_burst`, even an empty one).
//! - PACKET_LOSS is set: a frame the kernel finds malformed (e.g. over the MTU) is discarded
//!   by the kernel instead of stalling the TX ring.
//! - Fanout uses PACKET_FANOUT_HASH without DEFRAG: all fragments of a datagram hash alike
//!   (addresses only), and nothing reassembled beyond a ring frame is ever delivered.
//! - With `vnet_hdr` (pod ports) every frame carries a virtio-net header both ways and
//!   super-packets of up to 64 KB come and go whole (`vnet`: receive queue and a ringless
//!   send socket beside the 2 KB-frame rings); `accepts_gso()` is true.

mod ring;
mod vnet;

use std::ffi::{c_int, c_uint};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use self::ring::{BLOCK_SIZE, FRAME_SIZE, FRAMES_PER_BLOCK, Rings, blocks_for};
use super::PacketIo;
use super::sys::{self, context};
use crate::packet::{Packet, PacketPool, PortId};

/// How to open an AF_PACKET port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// RX ring frames; rounded up to whole blocks of 30.
    pub rx_frames: usize,
    /// TX ring frames; rounded up to whole blocks of 30.
    pub tx_frames: usize,
    /// Fanout group shared by every worker socket of this device; `None` for one socket.
    pub fanout_group: Option<u16>,
    /// Put the device in promiscuous mode while the socket is open (the port then sees frames
    /// for every MAC the dataplane answers for, not only the device's own).
    pub promiscuous: bool,
    /// Carry a virtio-net header (`PACKET_VNET_HDR`): TCP super-packets and partial checksums
    /// in and out (pod veths with TSO on). Off for the uplink.
    pub vnet_hdr: bool,
    /// Drop UDP to this port in the kernel before the ring (`udp_tunnel`: VXLAN goes to the
    /// tunnel socket, not here).
    pub exclude_udp_port: Option<u16>,
    /// Hand each frame to the group's socket of the worker on the receiving CPU (worker `i`
    /// on `cores[i]`, sockets opened in worker order: `cpu_steering`) instead of by flow
    /// hash; only with a fanout group.
    pub fanout_by_cpu: Option<Vec<usize>>,
}

impl Default for AfPacketConfig {
    fn default() -> Self {
        Self {
            rx_frames: 512,
            tx_frames: 512,
            fanout_group: None,
            promiscuous: true,
            vnet_hdr: false,
            exclude_udp_port: None,
            fanout_by_cpu: None,
        }
    }
}

/// Counters of one port since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames the kernel offered to this socket, including `kernel_dropped`.
    pub kernel_seen: u64,
    /// Frames the kernel dropped because the RX ring was full.
    pub kernel_dropped: u64,
    /// Frames dropped because they were longer than a ring frame or a packet buffer.
    pub rx_truncated: u64,
    /// Super-packets received (`vnet_hdr`: GSO from the pod's kernel).
    pub rx_gso: u64,
    /// Frames sent through the super-packet socket (`vnet_hdr`: passed through or merged).
    pub tx_gso: u64,
    /// Segments merged into those (`offload::coalesce`).
    pub tx_coalesced: u64,
}

/// One worker's socket on one device.
pub struct AfPacketPort {
    rings: Rings,
    fd: OwnedFd,
    /// Frames are queued in the TX ring that the last kick did not send.
    unsent: bool,
    /// The super-packet side, with `vnet_hdr`.
    large: Option<vnet::Large>,
    stats: AfPacketStats,
}

fn packet_option<T>(fd: &OwnedFd, name: c_int, value: &T, what: &str) -> io::Result<()> {
    sys::set_option(fd.as_fd(), libc::SOL_PACKET, name, value, what)
}

fn ring_request(blocks: usize) -> io::Result<libc::tpacket_req> {
    let field = |n: usize| {
        c_uint::try_from(n)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ring too large"))
    };
    Ok(libc::tpacket_req {
        tp_block_size: field(BLOCK_SIZE)?,
        tp_block_nr: field(blocks)?,
        tp_frame_size: field(FRAME_SIZE)?,
        tp_frame_nr: field(blocks * FRAMES_PER_BLOCK)?,
    })
}

impl AfPacketPort {
    /// Opens a port on the device `ifname` of the calling thread's network namespace.
    pub fn open(ifname: &str, config: &AfPacketConfig) -> io::Result<Self> {
        let ifindex = super::netdev::ifindex(ifname)?;
        let ifindex =
            c_int::try_from(ifindex).map_err(|_| io::Error::other("ifindex too large"))?;
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)
            .map_err(|e| context(e, "AF_PACKET socket"))?;
        let on: c_int = 1;
        let version = libc::tpacket_versions::TPACKET_V2 as c_int;
        packet_option(&fd, libc::PACKET_VERSION, &version, "PACKET_VERSION")?;
        packet_option(&fd, libc::PACKET_LOSS, &on, "PACKET_LOSS")?;
        packet_option(&fd, libc::PACKET_QDISC_BYPASS, &on, "PACKET_QDISC_BYPASS")?;
        packet_option(
            &fd,
            libc::PACKET_IGNORE_OUTGOING,
            &on,
            "PACKET_IGNORE_OUTGOING",
        )?;
        if config.vnet_hdr {
            vnet::enable_on_ring_socket(&fd)?;
        }
        let (rx_blocks, tx_blocks) = (blocks_for(config.rx_frames), blocks_for(config.tx_frames));
        packet_option(
            &fd,
            libc::PACKET_RX_RING,
            &ring_request(rx_blocks)?,
            "PACKET_RX_RING",
        )?;
        packet_option(
            &fd,
            libc::PACKET_TX_RING,
            &ring_request(tx_blocks)?,
            "PACKET_TX_RING",
        )?;
        let rings = Rings::map(fd.as_fd(), rx_blocks, tx_blocks, config.vnet_hdr)?;
        let large = match config.vnet_hdr {
            true => Some(vnet::Large::open(&fd, ifindex)?),
            false => None,
        };
        if let Some(port) = config.exclude_udp_port {
            super::udp_tunnel::attach_filter(&fd, &super::udp_tunnel::exclude_udp_port(port))?;
        }
        bind(&fd, ifindex, libc::ETH_P_ALL as u16)
            .map_err(|e| context(e, format_args!("bind to {ifname}")))?;
        if config.promiscuous {
            let request = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            packet_option(
                &fd,
                libc::PACKET_ADD_MEMBERSHIP,
                &request,
                "PACKET_MR_PROMISC",
            )?;
        }
        if let Some(group) = config.fanout_group {
            let kind = match config.fanout_by_cpu {
                Some(_) => libc::PACKET_FANOUT_CBPF,
                None => libc::PACKET_FANOUT_HASH,
            };
            let mode = c_int::from(group) | (kind as c_int) << 16;
            packet_option(&fd, libc::PACKET_FANOUT, &mode, "PACKET_FANOUT")?;
            if let Some(cores) = &config.fanout_by_cpu {
                super::cpu_steering::steer_fanout(&fd, cores)?;
            }
        }
        Ok(Self {
            rings,
            fd,
            unsent: false,
            large,
            stats: AfPacketStats::default(),
        })
    }

    /// The socket, for poll(2)/epoll when the worker is idle: readable when the RX ring has a
    /// frame. POLLERR after a link flap is cleared with `take_error`.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Frames in the RX ring (the configured count rounded up to whole blocks).
    pub fn rx_ring_frames(&self) -> usize {
        self.rings.rx_frames()
    }

    /// Frames in the TX ring: at most this many can be queued at once.
    pub fn tx_ring_frames(&self) -> usize {
        self.rings.tx_frames()
    }

    /// Takes the socket's pending error (set to ENETDOWN when the link goes down), so poll(2)
    /// stops reporting POLLERR. Not per packet: one getsockopt.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut code: c_int = 0;
        sys::get_option(
            self.fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut code,
            "SO_ERROR",
        )?;
        Ok((code != 0).then(|| io::Error::from_raw_os_error(code)))
    }

    /// Counters since the port was opened; reads (and so resets) the kernel's
    /// PACKET_STATISTICS. Not per packet: one getsockopt.
    pub fn stats(&mut self) -> io::Result<AfPacketStats> {
        let mut kernel = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        sys::get_option(
            self.fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut kernel,
            "PACKET_STATISTICS",
        )?;
        self.stats.kernel_seen += u64::from(kernel.tp_packets);
        self.stats.kernel_dropped += u64::from(kernel.tp_drops);
        Ok(self.stats)
    }

    /// Asks the kernel to send every queued TX frame without waiting for completion.
    fn kick(&mut self) -> io::Result<()> {
        // SAFETY: a null buffer of length 0 and no address: the kernel reads no user memory
        // here, it walks the TX ring mapped by this socket.
        let ret = unsafe {
            libc::sendto(
                self.raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if ret >= 0 {
            self.unsent = false;
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // Queue busy, no buffers, or link down: the frames stay queued for the next kick.
            Some(libc::EAGAIN | libc::ENOBUFS | libc::ENETDOWN | libc::EINTR) => {
                self.unsent = true;
                Ok(())
            }
            _ => Err(context(err, "AF_PACKET TX kick")),
        }
    }
}

/// Binds to the device; protocol 0 receives nothing.
fn bind(fd: &OwnedFd, ifindex: c_int, protocol: u16) -> io::Result<()> {
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `addr` is a live sockaddr_ll and the length passed is exactly its size.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    sys::check(ret, "bind").map(drop)
}

/// Bytes of an 802.1Q tag.
const VLAN_TAG_LEN: usize = 4;
/// Offset of the EtherType (or of an inserted tag) in an Ethernet frame.
const ETH_ADDRS_LEN: usize = 12;

/// Copies `data` into `pkt`, re-inserting the VLAN tag the kernel reports as stripped;
/// false when the result does not fit.
fn copy_frame(pkt: &mut Packet, data: &[u8], vlan: Option<(u16, u16)>) -> bool {
    let area = pkt.receive_area();
    match vlan {
        None if data.len() <= area.len() => {
            area[..data.len()].copy_from_slice(data);
            pkt.set_received(data.len())
        }
        Some((tpid, tci))
            if data.len() >= ETH_ADDRS_LEN && data.len() + VLAN_TAG_LEN <= area.len() =>
        {
            let (addrs, rest) = data.split_at(ETH_ADDRS_LEN);
            area[..ETH_ADDRS_LEN].copy_from_slice(addrs);
            area[ETH_ADDRS_LEN..ETH_ADDRS_LEN + 2].copy_from_slice(&tpid.to_be_bytes());
            area[ETH_ADDRS_LEN + 2..ETH_ADDRS_LEN + 4].copy_from_slice(&tci.to_be_bytes());
            area[ETH_ADDRS_LEN + VLAN_TAG_LEN..data.len() + VLAN_TAG_LEN].copy_from_slice(rest);
            pkt.set_received(data.len() + VLAN_TAG_LEN)
        }
        _ => false,
    }
}

impl PacketIo for AfPacketPort {
    fn rx_dropped(&mut self) -> u64 {
        // A failed getsockopt leaves the counters as they were.
        let stats = self.stats().unwrap_or(self.stats);
        stats.kernel_dropped + stats.rx_truncated
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
            let Some(frame) = self.rings.rx_peek() else {
                break;
            };
            if frame.status & libc::TP_STATUS_COPY != 0
                && let Some(large) = self.large.as_mut()
            {
                // Longer than a ring frame: read it whole from the receive queue.
                match large.receive(port, pool) {
                    vnet::Copied::NoBuffer => break,
                    vnet::Copied::Frame(pkt) => {
                        self.stats.rx_gso += u64::from(pkt.meta.offload.is_gso());
                        batch.push(pkt);
                        received += 1;
                    }
                    vnet::Copied::Lost => self.stats.rx_truncated += 1,
                }
                self.rings.rx_release();
                continue;
            }
            let Some(mut pkt) = pool.get() else { break };
            let vlan = (frame.status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
                let tpid = if frame.status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    frame.vlan_tpid
                } else {
                    libc::ETH_P_8021Q as u16
                };
                (tpid, frame.vlan_tci)
            });
            let complete =
                frame.data.len() == frame.wire_len && copy_frame(&mut pkt, frame.data, vlan);
            let partial = frame.status & libc::TP_STATUS_CSUMNOTREADY != 0;
            let header = frame.vnet;
            self.rings.rx_release();
            if complete {
                pkt.meta.in_port = port;
                pkt.meta.csum_partial = partial;
                if self.large.is_some() {
                    vnet::apply(&header, vlan.is_some(), &mut pkt.meta);
                }
                batch.push(pkt);
                received += 1;
            } else {
                self.stats.rx_truncated += 1;
                pool.put(pkt);
            }
        }
        Ok(received)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        if self.large.is_some() {
            return self.tx_burst_vnet(pkts, pool);
        }
        let mut queued = 0;
        let mut since_kick = 0;
        for pkt in pkts.drain(..) {
            let mut pushed = self.rings.tx_push(pkt.data());
            // A full ring with frames of this burst in it: send those, then retry once (a
            // super-packet's segments alone can outnumber the ring's slots). A failed kick
            // leaves the frames queued; the next kick reports a lasting error.
            if !pushed && since_kick > 0 && self.kick().is_ok() {
                since_kick = 0;
                pushed = self.rings.tx_push(pkt.data());
            }
            if pushed {
                queued += 1;
                since_kick += 1;
            }
            pool.put(pkt);
        }
        if queued > 0 || self.unsent {
            self.kick()?;
        }
        Ok(queued)
    }

    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.raw_fd())
    }

    fn accepts_gso(&self) -> bool {
        self.large.is_some()
    }
}

#[cfg(test)]
mod tests;
