//! The VXLAN uplink through a kernel UDP socket: one worker's uplink port made of the raw
//! AF_PACKET socket (everything that is not VXLAN: ARP, the internet, LoadBalancer IPs,
//! NodePorts, routed mode) and a UDP socket bound to the node's VXLAN address on the same
//! device, which carries VXLAN with the kernel's UDP segmentation and GRO:
//!
//! - Out: a VXLAN-encapsulated TCP super-packet from the pipeline becomes N datagrams written
//!   end to end and one `sendmsg` with `UDP_SEGMENT` (`tx`); the batch of a burst is one
//!   `sendmmsg` per send socket it uses. The worker has `tx::SEND_LANES` send sockets, each
//!   bound to the node IP and its own ephemeral port; the outer source port the pipeline
//!   chose from the inner flow hash picks the socket, so flows keep the source-port entropy
//!   the kernel's VXLAN device gives them (in `SEND_LANES` values) and one flow's
//!   super-packets still leave as one message each, in order. Through a veth the kernel carries the GSO datagram whole; on a NIC it is
//!   segmented by the NIC (UDP segmentation offload) or by the kernel just before it.
//! - In: one `recvmmsg` returns several `UDP_GRO` messages, each up to ~64 KB of datagrams
//!   from one peer with their `gso_size`; they are split and one flow's TCP segments merged
//!   into one super-packet before the pipeline (`rx`).
//! - The raw socket carries a BPF filter (`filter`) that drops UDP to the VXLAN port, so each
//!   VXLAN datagram reaches the dataplane once, through the UDP socket.
//!
//! What the node's kernel must be given (the testbed does it; on a real host, the same): the
//! uplink's own MAC is the dataplane's uplink MAC (the peers' ARP for the node IP is answered
//! by the dataplane with it, and the kernel must accept what is sent there), and the kernel's
//! routing keeps everything but UDP to the VXLAN port that arrives on the uplink from its own
//! stack (policy rules: `iif <uplink> ipproto udp dport <port> lookup local`, then
//! `iif <uplink> blackhole`, ahead of the `local` table), so nothing else is delivered twice.
//!
//! Invariants:
//! - A frame is sent through the socket only if it is VXLAN from the node IP to the VXLAN
//!   port (`tx::tunnel_destination`); everything else goes out the raw socket as before, a
//!   super-packet that would not go to the socket segmented first (`offload::segment`).
//! - `unsafe` is confined to `socket` and `filter`; per burst nothing allocates (the arena,
//!   message arrays and buffers are sized at open or live on the stack).

mod filter;
mod rx;
mod socket;
mod tx;

pub use self::tx::OUTER;

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod tests;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;

use super::PacketIo;
use super::af_packet::{AfPacketConfig, AfPacketPort};
use crate::offload::segment;
use crate::packet::{Packet, PacketPool, PortId};

pub(crate) use self::filter::attach as attach_filter;
pub use self::filter::exclude_udp_port;
pub use self::rx::{RxContext, RxCounts, split_message};
use self::socket::{CONTROL_LEN, from_sockaddr, gro_size, put_segment_size, sockaddr};
use self::tx::{Added, MAX_MESSAGES, MAX_PIECES, SEND_LANES, TxBatch};

/// Messages one receive call asks for (each up to ~64 KB in a large buffer).
const RX_MESSAGES: usize = 8;
/// Large buffers the receive side leaves in the pool for the other ports (TAP pods).
const RX_RESERVE_LARGE: usize = 16;

/// What the tunnel socket is bound to and how received datagrams are framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpTunnelConfig {
    /// The node's underlay address: the socket's and every outer source.
    pub node_ip: Ipv4Addr,
    /// The VXLAN UDP port (the cluster's `vxlanPort`).
    pub port: u16,
    /// The dataplane's uplink MAC (received frames are framed as sent to it).
    pub uplink_mac: [u8; 6],
}

/// Transmit counters since the port was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxCounts {
    /// `sendmmsg` calls.
    pub calls: u64,
    /// Messages the kernel took (one per datagram run).
    pub messages: u64,
    /// Messages refused (socket buffer full, no route): their packets count as not sent.
    pub refused: u64,
    /// Super-packets that could not be cut into datagrams.
    pub invalid: u64,
}

/// One worker's uplink: the raw AF_PACKET socket and the VXLAN tunnel socket.
pub struct TunnelUplink {
    raw: AfPacketPort,
    socket: OwnedFd,
    /// One send socket per lane (`tx::SEND_LANES`), each its own outer source port.
    senders: Vec<OwnedFd>,
    epoll: OwnedFd,
    config: UdpTunnelConfig,
    tx: TxBatch,
    raw_queue: Vec<Packet>,
    rx_bufs: Vec<Packet>,
    rx_counts: RxCounts,
    tx_counts: TxCounts,
}

impl TunnelUplink {
    /// Opens the raw socket on `device` (with the VXLAN filter) from `raw_config` and the
    /// tunnel socket, in the calling thread's network namespace.
    pub fn open(
        device: &str,
        raw_config: &AfPacketConfig,
        config: &UdpTunnelConfig,
    ) -> io::Result<Self> {
        let raw_config = AfPacketConfig {
            exclude_udp_port: Some(config.port),
            ..raw_config.clone()
        };
        let raw = AfPacketPort::open(device, &raw_config)?;
        let socket = socket::open(config.node_ip, config.port, device)?;
        // Per-CPU workers: the tunnel sockets' reuseport group steers by CPU like the raw
        // sockets' fanout group (`cpu_steering`).
        if let Some(cores) = &raw_config.fanout_by_cpu {
            super::cpu_steering::steer_reuseport(&socket, cores)?;
        }
        let senders = (0..SEND_LANES)
            .map(|_| socket::open_sender(config.node_ip, device))
            .collect::<io::Result<Vec<_>>>()?;
        let epoll = socket::epoll_over(&[raw.raw_fd(), socket.as_raw_fd()])?;
        Ok(Self {
            raw,
            socket,
            senders,
            epoll,
            config: config.clone(),
            tx: TxBatch::default(),
            raw_queue: Vec::with_capacity(MAX_MESSAGES),
            rx_bufs: Vec::with_capacity(RX_MESSAGES),
            rx_counts: RxCounts::default(),
            tx_counts: TxCounts::default(),
        })
    }

    /// The raw socket (AF_PACKET statistics, link errors).
    pub fn raw(&mut self) -> &mut AfPacketPort {
        &mut self.raw
    }

    pub fn rx_counts(&self) -> RxCounts {
        self.rx_counts
    }

    pub fn tx_counts(&self) -> TxCounts {
        self.tx_counts
    }

    /// Sends the queued messages, one `sendmmsg` per lane that has any (a lane keeps its
    /// messages' order); returns how many packets went out whole.
    fn flush(&mut self, pool: &mut PacketPool) -> usize {
        let msgs = self.tx.messages();
        let k = msgs.len().min(MAX_MESSAGES);
        if k == 0 {
            return 0;
        }
        // Message indices grouped by lane (a counting sort, stable within a lane).
        let mut lane_end = [0usize; SEND_LANES];
        for m in &msgs[..k] {
            lane_end[usize::from(m.lane) % SEND_LANES] += 1;
        }
        let mut next = [0usize; SEND_LANES];
        let mut total = 0;
        for (end, start) in lane_end.iter_mut().zip(next.iter_mut()) {
            *start = total;
            total += *end;
            *end = total;
        }
        let mut order = [0usize; MAX_MESSAGES];
        for (j, m) in msgs[..k].iter().enumerate() {
            let lane = usize::from(m.lane) % SEND_LANES;
            order[next[lane]] = j;
            next[lane] += 1;
        }
        let mut names = [sockaddr(Ipv4Addr::UNSPECIFIED, 0); MAX_MESSAGES];
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; MAX_PIECES];
        let mut iov_count = [0usize; MAX_MESSAGES];
        let mut control = [[0u8; CONTROL_LEN]; MAX_MESSAGES];
        let mut control_len = [0usize; MAX_MESSAGES];
        let mut at = 0;
        for (p, &j) in order[..k].iter().enumerate() {
            let m = &msgs[j];
            names[p] = sockaddr(m.dst, self.config.port);
            for bytes in self.tx.pieces(m) {
                iov[at] = libc::iovec {
                    iov_base: bytes.as_ptr().cast_mut().cast(),
                    iov_len: bytes.len(),
                };
                at += 1;
                iov_count[p] += 1;
            }
            if m.gso > 0 {
                control_len[p] = put_segment_size(&mut control[p], m.gso);
            }
        }
        let mut hdrs = [socket::empty_mmsghdr(); MAX_MESSAGES];
        let mut rest = &mut iov[..at];
        for p in 0..k {
            let (this, after) = rest.split_at_mut(iov_count[p]);
            rest = after;
            let control = &mut control[p][..control_len[p]];
            socket::point_header(&mut hdrs[p].msg_hdr, &mut names[p], this, control);
        }
        let mut packets = 0;
        let mut start = 0;
        for (lane, &end) in lane_end.iter().enumerate() {
            let mut done = start;
            while done < end {
                self.tx_counts.calls += 1;
                let went = match socket::send_batch(&self.senders[lane], &mut hdrs[done..end]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    // The first message failed (no neighbour, unreachable): skip it.
                    Err(_) => {
                        self.tx_counts.refused += 1;
                        done += 1;
                        continue;
                    }
                };
                packets += order[done..done + went]
                    .iter()
                    .filter(|&&j| msgs[j].ends_packet)
                    .count();
                self.tx_counts.messages += went as u64;
                done += went;
            }
            self.tx_counts.refused += (end - done) as u64;
            start = end;
        }
        self.tx.clear(pool);
        packets
    }

    fn receive(
        &mut self,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        port: PortId,
        max: usize,
    ) -> io::Result<usize> {
        let want = max
            .min(RX_MESSAGES)
            .min(pool.available_large().saturating_sub(RX_RESERVE_LARGE));
        for _ in 0..want {
            match pool.get_large() {
                Some(p) => self.rx_bufs.push(p),
                None => break,
            }
        }
        let k = self.rx_bufs.len();
        if k == 0 {
            return Ok(0);
        }
        let mut names = [sockaddr(Ipv4Addr::UNSPECIFIED, 0); RX_MESSAGES];
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; RX_MESSAGES];
        let mut control = [[0u8; CONTROL_LEN]; RX_MESSAGES];
        for (j, buf) in self.rx_bufs.iter_mut().enumerate() {
            let area = buf.receive_area();
            let room = area.len().saturating_sub(tx::OUTER);
            iov[j] = libc::iovec {
                iov_base: area[tx::OUTER..].as_mut_ptr().cast(),
                iov_len: room,
            };
        }
        let mut hdrs = [socket::empty_mmsghdr(); RX_MESSAGES];
        for j in 0..k {
            socket::point_header(
                &mut hdrs[j].msg_hdr,
                &mut names[j],
                std::slice::from_mut(&mut iov[j]),
                &mut control[j],
            );
        }
        let got = socket::receive_batch(&self.socket, &mut hdrs[..k]);
        let got = match got {
            Ok(n) => n,
            Err(e) => {
                for buf in self.rx_bufs.drain(..) {
                    pool.put(buf);
                }
                return Err(e);
            }
        };
        let ctx = RxContext {
            node_ip: self.config.node_ip,
            port: self.config.port,
            uplink_mac: self.config.uplink_mac,
            in_port: port,
        };
        let before = batch.len();
        for (j, buf) in self.rx_bufs.drain(..).enumerate() {
            if j >= got {
                pool.put(buf);
                continue;
            }
            let h = &hdrs[j];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.rx_counts.truncated += 1;
                pool.put(buf);
                continue;
            }
            let len = h.msg_len as usize;
            let gso = gro_size(&h.msg_hdr);
            let from = from_sockaddr(&names[j]);
            split_message(
                buf,
                (len, gso),
                from,
                &ctx,
                pool,
                batch,
                &mut self.rx_counts,
            );
        }
        Ok(batch.len() - before)
    }
}

impl PacketIo for TunnelUplink {
    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let raw = self.raw.rx_burst(port, pool, batch, max)?;
        let tunnel = self.receive(pool, batch, port, max.saturating_sub(raw))?;
        Ok(raw + tunnel)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        let (node_ip, port) = (self.config.node_ip, self.config.port);
        let offered = pkts.len();
        let mut sent = 0;
        for pkt in pkts.drain(..) {
            let mut added = self.tx.add(pkt, node_ip, port);
            if let Err((Added::NoRoom, pkt)) = added {
                sent += self.flush(pool);
                added = self.tx.add(pkt, node_ip, port);
            }
            match added {
                Ok(()) => {}
                Err((Added::NotTunnel, pkt)) if pkt.meta.offload.is_gso() => {
                    // Not for a peer VTEP: cut it for the raw socket as the worker would.
                    let o = pkt.meta.offload;
                    let _ = segment::segment(
                        pkt.data(),
                        usize::from(o.encap_len),
                        usize::from(o.gso_size),
                        &pkt.meta,
                        pool,
                        &mut self.raw_queue,
                    );
                    pool.put(pkt);
                }
                Err((Added::NotTunnel, pkt)) => self.raw_queue.push(pkt),
                Err((why @ (Added::NoRoom | Added::Invalid), pkt)) => {
                    self.tx_counts.invalid += u64::from(why == Added::Invalid);
                    pool.put(pkt);
                }
            }
        }
        sent += self.flush(pool);
        if !self.raw_queue.is_empty() {
            sent += self.raw.tx_burst(&mut self.raw_queue, pool)?;
        }
        // Segments cut here for the raw socket count as their packet.
        Ok(sent.min(offered))
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn rx_dropped(&mut self) -> u64 {
        self.raw.rx_dropped() + self.rx_counts.truncated + self.rx_counts.no_buffer
    }

    fn accepts_encapsulated_gso(&self) -> bool {
        true
    }
}
