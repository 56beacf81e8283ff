//! Super-packets on an AF_PACKET port (`AfPacketConfig::vnet_hdr`, pod veths): the socket
//! carries a virtio-net header (`PACKET_VNET_HDR`, `struct virtio_net_hdr`, 10 bytes) in both
//! directions, so a pod's kernel with TSO on hands over TCP super-packets of up to 64 KB with
//! their GSO fields and partial checksum, and takes them back whole.
//!
//! Layout (measured against 64 KB ring frames: those cost ~64 KB of kernel memory per slot,
//! so a ring of 512 would pin 32 MiB per socket and direction): the rings keep their 2 KB
//! frames, which every ordinary frame fits; only what is larger takes another road.
//! - RX: `PACKET_COPY_THRESH` makes the kernel queue a frame too long for a ring frame on the
//!   socket's receive queue as well, marking its (truncated) ring frame `TP_STATUS_COPY`; the
//!   port reads it whole with one `readv` (header, large buffer, one spare byte) when that
//!   ring frame comes up, so ring order is kept. The receive queue's budget (`RCVBUF`) holds
//!   as many super-packets as a worker has large buffers; past it the kernel queues nothing
//!   and the truncated frame is dropped and counted (`rx_truncated`).
//! - TX: a super-packet (passed through, or segments merged by `offload::coalesce`) goes out
//!   through a second packet socket on the same device without rings (protocol 0, so it
//!   receives nothing), one `writev` of header, head and payloads. The TX ring is kicked
//!   first, so frames leave in the order of the burst.
//!
//! Invariants:
//! - The header's claims are not trusted here: they go into `meta.offload` and the pipeline
//!   checks them (`offload::vnet::check_frame`, `check_l4`) with the named drop reasons.
//! - A `TP_STATUS_COPY` frame is matched by exactly one read from the receive queue (or by
//!   none when the worker has no large buffer free: then the ring frame is left in place and
//!   the burst ends, back-pressure as on a TAP).
//! - A frame read from the receive queue has no stripped VLAN tag put back (the ring's
//!   `tp_vlan_tci` is not available there); pod veths carry no VLANs.

use std::ffi::c_int;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use super::{AfPacketPort, bind, packet_option};
use crate::io::sys::{self, context};
use crate::offload::coalesce;
use crate::offload::vnet::{HDR_LEN, VnetHeader};
use crate::packet::{MAX_FRAME, Meta, Packet, PacketPool, PortId};

/// Bytes of `struct virtio_net_hdr` (the v1 header less `num_buffers`), what
/// `PACKET_VNET_HDR` puts in front of every frame.
pub(crate) const VNET_LEN: usize = 10;

/// Receive-queue budget for super-packets read whole (~64 of 64 KB plus skb overhead).
const RCVBUF: c_int = 16 << 20;
/// Send budget of the super-packet socket: a 64 KB skb stays charged to it until the pod's
/// kernel consumes it.
const SNDBUF: c_int = 8 << 20;

/// The 10-byte wire form of `header`.
pub(crate) fn to_wire(header: VnetHeader) -> [u8; VNET_LEN] {
    let mut out = [0u8; VNET_LEN];
    out.copy_from_slice(&header.to_bytes()[..VNET_LEN]);
    out
}

/// Parses a 10-byte header.
pub(crate) fn from_wire(bytes: &[u8; VNET_LEN]) -> VnetHeader {
    let mut full = [0u8; HDR_LEN];
    full[..VNET_LEN].copy_from_slice(bytes);
    VnetHeader::parse(&full)
}

/// Writes a received frame's header into its metadata; `vlan_inserted` when the port put a
/// stripped 4-byte tag back in the frame, which moves the offsets the kernel gave.
pub(crate) fn apply(bytes: &[u8; VNET_LEN], vlan_inserted: bool, meta: &mut Meta) {
    let mut header = from_wire(bytes);
    if vlan_inserted {
        let shift = |v: u16| if v == 0 { 0 } else { v.saturating_add(4) };
        header.hdr_len = shift(header.hdr_len);
        header.csum_start = shift(header.csum_start);
    }
    header.apply(meta);
}

/// Socket options of a ring socket that carries virtio-net headers; before its rings exist
/// (the kernel refuses `PACKET_VNET_HDR` after).
pub(super) fn enable_on_ring_socket(fd: &OwnedFd) -> io::Result<()> {
    let on: c_int = 1;
    packet_option(fd, libc::PACKET_VNET_HDR, &on, "PACKET_VNET_HDR")?;
    packet_option(fd, libc::PACKET_COPY_THRESH, &on, "PACKET_COPY_THRESH")?;
    set_buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, RCVBUF)
}

/// A socket buffer size: the forced option (CAP_NET_ADMIN, past `rmem_max`/`wmem_max`), else
/// the plain one (capped by the sysctl).
fn set_buffer(fd: &OwnedFd, forced: c_int, plain: c_int, bytes: c_int) -> io::Result<()> {
    sys::set_option(fd.as_fd(), libc::SOL_SOCKET, forced, &bytes, "SO_*BUFFORCE").or_else(|_| {
        sys::set_option(
            fd.as_fd(),
            libc::SOL_SOCKET,
            plain,
            &bytes,
            "SO_RCVBUF/SNDBUF",
        )
    })
}

/// The super-packet side of a port: the ring socket's receive queue, and the ringless send
/// socket.
pub(super) struct Large {
    /// The ring socket (a second descriptor of it), read for `TP_STATUS_COPY` frames.
    queue: File,
    /// Ringless packet socket on the same device, for super-packets out.
    send: File,
}

/// What reading a `TP_STATUS_COPY` frame gave.
pub(super) enum Copied {
    Frame(Packet),
    /// No large buffer free: leave the ring frame for a later burst.
    NoBuffer,
    /// Nothing queued, or longer than a large buffer: the frame is lost.
    Lost,
}

impl Large {
    /// Opens the send socket on `ifindex` and keeps a descriptor of the ring socket `ring`.
    pub(super) fn open(ring: &OwnedFd, ifindex: c_int) -> io::Result<Self> {
        let queue = File::from(
            ring.try_clone()
                .map_err(|e| context(e, "dup ring socket"))?,
        );
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)
            .map_err(|e| context(e, "AF_PACKET send socket"))?;
        let on: c_int = 1;
        packet_option(&fd, libc::PACKET_VNET_HDR, &on, "PACKET_VNET_HDR")?;
        packet_option(&fd, libc::PACKET_QDISC_BYPASS, &on, "PACKET_QDISC_BYPASS")?;
        set_buffer(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SNDBUF)?;
        bind(&fd, ifindex, 0).map_err(|e| context(e, "bind send socket"))?;
        Ok(Self {
            queue,
            send: File::from(fd),
        })
    }

    /// Reads the frame a `TP_STATUS_COPY` ring frame stands for, whole, into a large buffer.
    pub(super) fn receive(&mut self, port: PortId, pool: &mut PacketPool) -> Copied {
        let Some(mut pkt) = pool.get_large() else {
            return Copied::NoBuffer;
        };
        let mut header = [0u8; VNET_LEN];
        let mut overflow = [0u8; 1];
        let read = self.queue.read_vectored(&mut [
            IoSliceMut::new(&mut header),
            IoSliceMut::new(pkt.receive_area()),
            IoSliceMut::new(&mut overflow),
        ]);
        let frame_len = read.map_or(0, |n| n.saturating_sub(VNET_LEN));
        if frame_len == 0 || !pkt.set_received(frame_len) {
            pool.put(pkt);
            return Copied::Lost;
        }
        apply(&header, false, &mut pkt.meta);
        pkt.meta.in_port = port;
        Copied::Frame(pkt)
    }

    /// Sends one frame whole with the header it needs (TCPv4 GSO for a super-packet).
    fn send_one(&mut self, pkt: &Packet) -> io::Result<usize> {
        let header = to_wire(VnetHeader::for_transmit(pkt));
        self.send
            .write_vectored(&[IoSlice::new(&header), IoSlice::new(pkt.data())])
    }

    /// Sends a run of segments (`coalesce::run`) as one super-packet: the head's headers,
    /// rewritten for the merged length, and every segment's payload, in one writev.
    fn send_merged(&mut self, run: &mut [Packet]) -> io::Result<usize> {
        let Some(header) = coalesce::merge_run(run) else {
            return Ok(0);
        };
        let header = to_wire(header);
        let mut slices = [IoSlice::new(&[]); coalesce::MAX_RUN + 1];
        let used = coalesce::gather(&header, run, &mut slices);
        self.send.write_vectored(&slices[..used])
    }
}

/// Send errors that concern one frame (it is refused, the port goes on).
fn is_frame_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::EAGAIN
                | libc::EINVAL
                | libc::ENOBUFS
                | libc::EMSGSIZE
                | libc::ENETDOWN
                | libc::ENXIO
        )
    )
}

impl AfPacketPort {
    /// `tx_burst` of a port with virtio-net headers: plain frames through the TX ring (with
    /// an all-zero header), super-packets and merged runs through the send socket.
    pub(super) fn tx_burst_vnet(
        &mut self,
        pkts: &mut Vec<Packet>,
        pool: &mut PacketPool,
    ) -> io::Result<usize> {
        let mut sent = 0;
        let mut since_kick = 0;
        let mut failure = None;
        let mut i = 0;
        while i < pkts.len() && failure.is_none() {
            let n = coalesce::run(&pkts[i..]);
            let pkt = &pkts[i];
            if n == 1 && !pkt.meta.offload.is_gso() {
                let mut pushed = self.rings.tx_push(pkt.data());
                if !pushed && since_kick > 0 && self.kick().is_ok() {
                    since_kick = 0;
                    pushed = self.rings.tx_push(pkt.data());
                }
                if pushed {
                    sent += 1;
                    since_kick += 1;
                    i += 1;
                    continue;
                }
                if pkt.len() <= MAX_FRAME {
                    // Ring full even after a kick: refused, as on a port without headers.
                    i += 1;
                    continue;
                }
            }
            if since_kick > 0 {
                // What the ring holds leaves first, keeping the burst's order.
                since_kick = 0;
                if let Err(err) = self.kick() {
                    failure = Some(err);
                    break;
                }
            }
            let Some(large) = self.large.as_mut() else {
                i += n;
                continue;
            };
            let result = if n > 1 {
                large.send_merged(&mut pkts[i..i + n])
            } else {
                large.send_one(&pkts[i])
            };
            match result {
                Ok(_) => {
                    sent += n;
                    self.stats.tx_gso += 1;
                    if n > 1 {
                        self.stats.tx_coalesced += n as u64;
                    }
                }
                Err(err) if is_frame_error(&err) => {}
                Err(err) => failure = Some(context(err, "AF_PACKET super-packet send")),
            }
            i += n;
        }
        for pkt in pkts.drain(..) {
            pool.put(pkt);
        }
        if since_kick > 0 || self.unsent {
            self.kick()?;
        }
        failure.map_or(Ok(sent), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::vnet::{F_NEEDS_CSUM, GSO_TCPV4};

    #[test]
    fn the_ten_byte_header_round_trips_and_drops_num_buffers() {
        let header = VnetHeader::tcpv4(34, 32, 1398);
        let wire = to_wire(header);
        assert_eq!(wire[0], F_NEEDS_CSUM);
        assert_eq!(wire[1], GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([wire[2], wire[3]]), 66, "hdr_len");
        assert_eq!(u16::from_le_bytes([wire[4], wire[5]]), 1398, "gso_size");
        assert_eq!(from_wire(&wire), header);
    }

    #[test]
    fn a_reinserted_vlan_tag_moves_the_offsets_the_kernel_gave() {
        let mut meta = Meta::default();
        apply(&to_wire(VnetHeader::tcpv4(34, 20, 1460)), true, &mut meta);
        assert!(meta.csum_partial);
        assert_eq!(meta.offload.csum_start, 38);
        assert_eq!(meta.offload.hdr_len, 58);
        assert_eq!(meta.offload.gso_size, 1460);
        let mut plain = Meta::default();
        apply(&[0; VNET_LEN], true, &mut plain);
        assert!(!plain.csum_partial);
        assert!(!plain.offload.is_gso());
        assert_eq!(plain.offload.csum_start, 0, "an absent offset stays absent");
    }
}

#[cfg(test)]
mod kernel_tests;
