//! Turning the pipeline's VXLAN frames into UDP messages for the tunnel socket: the outer
//! Ethernet/IPv4/UDP headers are dropped (the kernel writes its own), the rest (VXLAN header
//! and inner frame) is the datagram. A VXLAN-encapsulated TCP super-packet becomes N
//! datagrams of equal size (the last may be shorter) laid end to end in the arena and sent as
//! one message with `UDP_SEGMENT` = that size (two or more messages when N datagrams exceed a
//! UDP payload or the kernel's segment limit).
//!
//! Invariants:
//! - Every datagram of a super-packet is a complete inner frame: inner IPv4 total length,
//!   ident (+i) and checksum, TCP sequence (+i * gso_size), flags (FIN/PSH on the last only,
//!   CWR on the first only) and a complete TCP checksum (`offload::segment`'s code).
//! - Only frames from the node IP to the VXLAN port with a plain 20-byte outer IPv4 header
//!   go this way; everything else is left to the raw uplink.
//! - The arena and message list are allocated once; a frame that does not fit waits for the
//!   next flush (`NoRoom`), nothing is reallocated.

use std::net::Ipv4Addr;

use crate::offload::segment::{self, Layout, count, fix_segment, segment_flags};
use crate::packet::Packet;
use crate::wire::checksum::sum;
use crate::wire::{Ipv4Packet, TcpPacket, ethernet, ipv4, udp, vxlan};

/// Outer Ethernet + IPv4 (no options) + UDP: what the kernel writes for us.
pub const OUTER: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;
/// The most UDP payload one message may carry (IPv4 total length 65535).
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_535 - ipv4::HEADER_LEN - udp::HEADER_LEN;
/// Segments per `UDP_SEGMENT` message (the kernel's UDP_MAX_SEGMENTS is at least 64).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Bytes of datagrams one flush can carry.
pub(crate) const ARENA_BYTES: usize = 1 << 20;
/// Messages one flush can carry.
pub(crate) const MAX_MESSAGES: usize = 128;
/// Send sockets per worker: the outer UDP source port the pipeline chose from the inner
/// flow hash picks one (`lane`), so one flow always leaves from one source port and flows
/// spread over this many (ECMP and receive-side hashing on a real underlay).
pub(crate) const SEND_LANES: usize = 8;

/// One message: `len` bytes at `off` in the arena to `dst`, cut by the kernel into datagrams
/// of `gso` bytes (0: one datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxMsg {
    pub dst: Ipv4Addr,
    pub off: usize,
    pub len: usize,
    pub gso: u16,
    /// The last message of its packet: the packet counts as sent once this one is.
    pub ends_packet: bool,
    /// The send socket (`SEND_LANES`) it leaves by.
    pub lane: u8,
}

/// The send lane of a tunnel frame: its outer UDP source port (the pipeline's inner flow
/// hash) modulo `SEND_LANES`.
pub(crate) fn lane(frame: &[u8]) -> u8 {
    let at = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let sport = frame
        .get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    (usize::from(sport) % SEND_LANES) as u8
}

/// What became of a frame offered to the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// Not for the tunnel: the raw uplink sends it.
    NotTunnel,
    Queued,
    /// The arena or message list is full: flush, then offer it again.
    NoRoom,
    /// A super-packet that cannot be cut (malformed, or a segment larger than a datagram).
    Invalid,
}

/// The destination VTEP of `frame` if it is VXLAN this node sends through the tunnel socket.
pub(crate) fn tunnel_destination(frame: &[u8], node_ip: Ipv4Addr, port: u16) -> Option<Ipv4Addr> {
    let eth = ethernet::HEADER_LEN;
    let be16 = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = frame.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    let plain = be16(eth - 2)? == ethernet::ETHERTYPE_IPV4
        && *frame.get(eth)? == 0x45
        && *frame.get(eth + 9)? == ipv4::PROTO_UDP
        && be16(eth + 6)? & 0x3fff == 0
        && be16(eth + ipv4::HEADER_LEN + 2)? == port
        && addr(eth + 12)? == node_ip
        && frame.len() >= OUTER + vxlan::HEADER_LEN;
    plain.then(|| addr(eth + 16)).flatten()
}

/// The datagrams of one flush: an arena written front to back and the messages over it.
pub(crate) struct TxBatch {
    arena: Box<[u8]>,
    used: usize,
    msgs: Vec<TxMsg>,
}

impl Default for TxBatch {
    fn default() -> Self {
        Self {
            arena: vec![0u8; ARENA_BYTES].into_boxed_slice(),
            used: 0,
            msgs: Vec::with_capacity(MAX_MESSAGES),
        }
    }
}

impl TxBatch {
    pub(crate) fn messages(&self) -> &[TxMsg] {
        &self.msgs
    }

    pub(crate) fn arena(&self) -> &[u8] {
        &self.arena
    }

    pub(crate) fn clear(&mut self) {
        self.used = 0;
        self.msgs.clear();
    }

    /// Queues `pkt` if it is tunnel VXLAN from `node_ip` to `port`.
    pub(crate) fn add(&mut self, pkt: &Packet, node_ip: Ipv4Addr, port: u16) -> Added {
        let frame = pkt.data();
        let Some(dst) = tunnel_destination(frame, node_ip, port) else {
            return Added::NotTunnel;
        };
        let o = pkt.meta.offload;
        let lane = lane(frame);
        if o.is_gso() {
            return self.add_super(
                frame,
                (dst, lane),
                usize::from(o.encap_len),
                usize::from(o.gso_size),
            );
        }
        let datagram = &frame[OUTER..];
        if self.msgs.len() == MAX_MESSAGES || self.used + datagram.len() > self.arena.len() {
            return Added::NoRoom;
        }
        self.arena[self.used..self.used + datagram.len()].copy_from_slice(datagram);
        self.msgs.push(TxMsg {
            dst,
            off: self.used,
            len: datagram.len(),
            gso: 0,
            ends_packet: true,
            lane,
        });
        self.used += datagram.len();
        Added::Queued
    }

    fn add_super(
        &mut self,
        frame: &[u8],
        (dst, lane): (Ipv4Addr, u8),
        encap_len: usize,
        mss: usize,
    ) -> Added {
        if encap_len != OUTER + vxlan::HEADER_LEN || mss == 0 {
            return Added::Invalid;
        }
        let Ok(at) = segment::parse(frame, encap_len) else {
            return Added::Invalid;
        };
        let headers = &frame[OUTER..at.payload];
        let payload = &frame[at.payload..];
        if payload.is_empty() {
            return Added::Invalid;
        }
        let n = count(payload.len(), mss);
        let full = headers.len() + mss.min(payload.len());
        if full > MAX_UDP_PAYLOAD || full > usize::from(u16::MAX) {
            return Added::Invalid;
        }
        let per_msg = (MAX_UDP_PAYLOAD / full).clamp(1, MAX_SEGMENTS);
        let messages = n.div_ceil(per_msg);
        let bytes = n * headers.len() + payload.len();
        if self.msgs.len() + messages > MAX_MESSAGES || self.used + bytes > self.arena.len() {
            return Added::NoRoom;
        }
        let (ident, seq, flags) = {
            let ip = Ipv4Packet::new_unchecked(&frame[at.l3..]);
            let tcp = TcpPacket::new_unchecked(&frame[at.l4..]);
            (ip.ident(), tcp.seq_number(), tcp.flags().0)
        };
        let shifted = Layout {
            outer_l3: None,
            l3: at.l3 - OUTER,
            l4: at.l4 - OUTER,
            payload: at.payload - OUTER,
        };
        let mut msg_start = self.used;
        let mut in_msg = 0;
        for (i, chunk) in payload.chunks(mss).enumerate() {
            let len = headers.len() + chunk.len();
            let seg = &mut self.arena[self.used..self.used + len];
            seg[..headers.len()].copy_from_slice(headers);
            seg[headers.len()..].copy_from_slice(chunk);
            fix_segment(
                seg,
                &shifted,
                (
                    ident.wrapping_add(i as u16),
                    seq.wrapping_add((i * mss) as u32),
                ),
                segment_flags(flags, i, n),
                sum(chunk),
            );
            self.used += len;
            in_msg += 1;
            if in_msg == per_msg || i + 1 == n {
                self.msgs.push(TxMsg {
                    dst,
                    off: msg_start,
                    len: self.used - msg_start,
                    gso: if in_msg > 1 { full as u16 } else { 0 },
                    ends_packet: i + 1 == n,
                    lane,
                });
                msg_start = self.used;
                in_msg = 0;
            }
        }
        Added::Queued
    }
}
