//! Turning the pipeline's VXLAN frames into UDP messages for the tunnel socket: the outer
//! Ethernet/IPv4/UDP headers are dropped (the kernel writes its own), the rest (VXLAN header
//! and inner frame) is the datagram. A VXLAN-encapsulated TCP super-packet becomes N
//! datagrams of equal size (the last may be shorter) sent as one message with `UDP_SEGMENT` =
//! that size (two or more messages when N datagrams exceed a UDP payload or the kernel's
//! segment limit). A message is a gather list (`Piece`s): each datagram's headers, written
//! in the arena, then its payload where it lies in the packet, which the batch holds until
//! the flush; the payload is read once (its checksum) and copied only by the kernel.
//!
//! Invariants:
//! - Every datagram of a super-packet is a complete inner frame: inner IPv4 total length,
//!   ident (+i) and checksum, TCP sequence (+i * gso_size), flags (FIN/PSH on the last only,
//!   CWR on the first only) and a complete TCP checksum (`offload::segment`'s code).
//! - Only frames from the node IP to the VXLAN port with a plain 20-byte outer IPv4 header
//!   go this way; everything else is left to the raw uplink.
//! - The arena, piece and message lists and the held packets are allocated once; a frame that
//!   does not fit waits for the next flush (`NoRoom`), nothing is reallocated.
//! - A queued packet is owned by the batch until `clear`, so every piece it names stays valid
//!   (and unchanged) until the flush has sent it.

use std::net::Ipv4Addr;

use crate::offload::segment::{self, Layout, count, fix_headers, segment_flags};
use crate::packet::{Packet, PacketPool};
use crate::wire::checksum::sum;
use crate::wire::{Ipv4Packet, TcpPacket, ethernet, ipv4, udp, vxlan};

/// Outer Ethernet + IPv4 (no options) + UDP: what the kernel writes for us.
pub const OUTER: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;
/// The most UDP payload one message may carry (IPv4 total length 65535).
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_535 - ipv4::HEADER_LEN - udp::HEADER_LEN;
/// Segments per `UDP_SEGMENT` message (the kernel's UDP_MAX_SEGMENTS is at least 64).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Bytes of datagram headers one flush can carry (`MAX_PIECES / 2` datagrams of the longest
/// headers fit).
pub(crate) const ARENA_BYTES: usize = 1 << 18;
/// Messages one flush can carry.
pub(crate) const MAX_MESSAGES: usize = 128;
/// Gather pieces one flush can carry (a datagram of a super-packet takes two).
pub(crate) const MAX_PIECES: usize = 2048;
/// Send sockets per worker: the outer UDP source port the pipeline chose from the inner
/// flow hash picks one (`lane`), so one flow always leaves from one source port and flows
/// spread over this many (ECMP and receive-side hashing on a real underlay).
pub(crate) const SEND_LANES: usize = 8;

/// A run of bytes of a message: in the arena, or in a held packet's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Arena { off: usize, len: usize },
    Held { pkt: usize, off: usize, len: usize },
}

/// One message: `len` bytes, the pieces `pieces` of the batch, to `dst`, cut by the kernel
/// into datagrams of `gso` bytes (0: one datagram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TxMsg {
    pub dst: Ipv4Addr,
    pub pieces: std::ops::Range<usize>,
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

/// Why a frame offered to the batch was not queued (it is handed back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// Not for the tunnel: the raw uplink sends it.
    NotTunnel,
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

/// The datagrams of one flush: an arena of headers written front to back, the packets the
/// payloads lie in, and the messages over both.
pub(crate) struct TxBatch {
    arena: Box<[u8]>,
    used: usize,
    pieces: Vec<Piece>,
    held: Vec<Packet>,
    msgs: Vec<TxMsg>,
}

impl Default for TxBatch {
    fn default() -> Self {
        Self {
            arena: vec![0u8; ARENA_BYTES].into_boxed_slice(),
            used: 0,
            pieces: Vec::with_capacity(MAX_PIECES),
            held: Vec::with_capacity(MAX_MESSAGES),
            msgs: Vec::with_capacity(MAX_MESSAGES),
        }
    }
}

impl TxBatch {
    pub(crate) fn messages(&self) -> &[TxMsg] {
        &self.msgs
    }

    /// The bytes of each piece of `m`, in order.
    pub(crate) fn pieces(&self, m: &TxMsg) -> impl Iterator<Item = &[u8]> {
        self.pieces[m.pieces.clone()].iter().map(|p| match *p {
            Piece::Arena { off, len } => &self.arena[off..off + len],
            Piece::Held { pkt, off, len } => &self.held[pkt].data()[off..off + len],
        })
    }

    /// Forgets the messages and gives the held packets back to `pool`.
    pub(crate) fn clear(&mut self, pool: &mut PacketPool) {
        self.used = 0;
        self.pieces.clear();
        self.msgs.clear();
        for pkt in self.held.drain(..) {
            pool.put(pkt);
        }
    }

    /// Queues `pkt` if it is tunnel VXLAN from `node_ip` to `port` (the batch keeps it until
    /// `clear`); otherwise hands it back with the reason.
    pub(crate) fn add(
        &mut self,
        pkt: Packet,
        node_ip: Ipv4Addr,
        port: u16,
    ) -> Result<(), (Added, Packet)> {
        let frame = pkt.data();
        let Some(dst) = tunnel_destination(frame, node_ip, port) else {
            return Err((Added::NotTunnel, pkt));
        };
        if self.held.len() == self.held.capacity() || self.msgs.len() == MAX_MESSAGES {
            return Err((Added::NoRoom, pkt));
        }
        let o = pkt.meta.offload;
        let lane = lane(frame);
        let held = self.held.len();
        let added = if o.is_gso() {
            self.add_super(
                frame,
                (held, dst, lane),
                usize::from(o.encap_len),
                usize::from(o.gso_size),
            )
        } else if self.pieces.len() == MAX_PIECES {
            Err(Added::NoRoom)
        } else {
            let len = frame.len() - OUTER;
            let start = self.pieces.len();
            self.pieces.push(Piece::Held {
                pkt: held,
                off: OUTER,
                len,
            });
            self.msgs.push(TxMsg {
                dst,
                pieces: start..start + 1,
                len,
                gso: 0,
                ends_packet: true,
                lane,
            });
            Ok(())
        };
        match added {
            Ok(()) => {
                self.held.push(pkt);
                Ok(())
            }
            Err(why) => Err((why, pkt)),
        }
    }

    fn add_super(
        &mut self,
        frame: &[u8],
        (held, dst, lane): (usize, Ipv4Addr, u8),
        encap_len: usize,
        mss: usize,
    ) -> Result<(), Added> {
        if encap_len != OUTER + vxlan::HEADER_LEN || mss == 0 {
            return Err(Added::Invalid);
        }
        let Ok(at) = segment::parse(frame, encap_len) else {
            return Err(Added::Invalid);
        };
        let headers = &frame[OUTER..at.payload];
        let payload = &frame[at.payload..];
        if payload.is_empty() {
            return Err(Added::Invalid);
        }
        let n = count(payload.len(), mss);
        let full = headers.len() + mss.min(payload.len());
        if full > MAX_UDP_PAYLOAD || full > usize::from(u16::MAX) {
            return Err(Added::Invalid);
        }
        let per_msg = (MAX_UDP_PAYLOAD / full).clamp(1, MAX_SEGMENTS);
        let messages = n.div_ceil(per_msg);
        if self.msgs.len() + messages > MAX_MESSAGES
            || self.pieces.len() + 2 * n > MAX_PIECES
            || self.used + n * headers.len() > self.arena.len()
        {
            return Err(Added::NoRoom);
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
        let mut msg_start = self.pieces.len();
        let mut msg_len = 0;
        let mut in_msg = 0;
        for (i, chunk) in payload.chunks(mss).enumerate() {
            let hdr = &mut self.arena[self.used..self.used + headers.len()];
            hdr.copy_from_slice(headers);
            fix_headers(
                hdr,
                headers.len() + chunk.len(),
                &shifted,
                (
                    ident.wrapping_add(i as u16),
                    seq.wrapping_add((i * mss) as u32),
                ),
                segment_flags(flags, i, n),
                sum(chunk),
            );
            self.pieces.push(Piece::Arena {
                off: self.used,
                len: headers.len(),
            });
            self.pieces.push(Piece::Held {
                pkt: held,
                off: at.payload + i * mss,
                len: chunk.len(),
            });
            self.used += headers.len();
            msg_len += headers.len() + chunk.len();
            in_msg += 1;
            if in_msg == per_msg || i + 1 == n {
                self.msgs.push(TxMsg {
                    dst,
                    pieces: msg_start..self.pieces.len(),
                    len: msg_len,
                    gso: if in_msg > 1 { full as u16 } else { 0 },
                    ends_packet: i + 1 == n,
                    lane,
                });
                msg_start = self.pieces.len();
                msg_len = 0;
                in_msg = 0;
            }
        }
        Ok(())
    }
}
