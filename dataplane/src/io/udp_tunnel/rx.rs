//! What one `recvmmsg` message of the tunnel socket becomes: the kernel's `UDP_GRO` hands
//! over up to ~64 KB of datagrams from one peer, each `gso_size` bytes (the last may be
//! shorter). They are split, and consecutive TCP segments of one inner flow are merged into
//! one VXLAN-framed super-packet before the pipeline (the merge rules of `offload::coalesce`
//! and the kernel's `tcp_gro_receive`); everything else becomes one frame per datagram.
//!
//! Every frame handed on gets outer Ethernet/IPv4/UDP headers written in front, as the raw
//! uplink would have received it: destination the uplink MAC and the node IP at the VXLAN
//! port, source the peer's address and port, outer UDP checksum 0 (the kernel verified it).
//! The pipeline then decapsulates it as before, so a datagram that is not VXLAN, has the
//! wrong VNI, is too short or comes from an unknown peer is dropped there with its named
//! reason (`vxlan_bad_header`, `malformed`, `vxlan_unknown_peer`), counted once.
//!
//! Invariants:
//! - The first run is built in place in the buffer the kernel filled: a follower's payload
//!   moves down over the headers before it (the write position never passes the read
//!   position); later runs are copied into buffers of their own. Frames keep datagram order.
//! - A segment joins a run only if its TCP checksum is right (the merged checksum is partial,
//!   nobody verifies the payload after this); merged runs never exceed a 65535-byte IPv4
//!   packet, outer or inner.
//! - A merged frame is marked as `offload::gro` on the raw uplink did it: `csum_partial`, a
//!   TCPv4 GSO `offload` with `gso_size` = the head's payload, `csum_start` and `hdr_len`
//!   relative to the inner frame, `encap_len` 0.
//! - A `gso_size` of 0 or not less than the message is one datagram (the kernel's meaning);
//!   a shorter last datagram is normal. Nothing here allocates.

use std::net::Ipv4Addr;

use crate::offload::vnet::{GSO_TCPV4, TCP_CSUM_OFFSET};
use crate::packet::{MAX_FRAME, Meta, Offload, Packet, PacketPool, PortId};
use crate::wire::TcpFlags;
use crate::wire::checksum::{combine, fold, pseudo_header_v4, sum};
use crate::wire::{ethernet, ipv4, vxlan};

use super::tx::OUTER;

/// Outer headers and VXLAN header in front of the inner frame.
const ENCAP: usize = OUTER + vxlan::HEADER_LEN;
/// Offsets inside a datagram (VXLAN header first).
const D_L3: usize = vxlan::HEADER_LEN + ethernet::HEADER_LEN;
const D_L4: usize = D_L3 + ipv4::HEADER_LEN;
/// Largest merged frame: an Ethernet header and a 65535-byte IPv4 packet.
const MAX_MERGED: usize = ethernet::HEADER_LEN + 65_535;

/// What the receive side needs to know to frame datagrams as the raw uplink would see them.
#[derive(Clone, Copy, Debug)]
pub struct RxContext {
    pub node_ip: Ipv4Addr,
    pub port: u16,
    pub uplink_mac: [u8; 6],
    pub in_port: PortId,
}

/// Receive counters since the port was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxCounts {
    /// Messages read (`recvmmsg` entries).
    pub messages: u64,
    /// Datagrams in them.
    pub datagrams: u64,
    /// Frames handed to the pipeline (merged runs count once).
    pub frames: u64,
    /// Datagrams merged into a run's head.
    pub merged: u64,
    /// Messages longer than the receive buffer (`MSG_TRUNC`), dropped whole.
    pub truncated: u64,
    /// Datagrams dropped because no packet buffer was free.
    pub no_buffer: u64,
}

/// A TCP segment that may join or lead a run: payload offset in the datagram, sequence
/// number and flags.
#[derive(Clone, Copy)]
struct Seg {
    payload: usize,
    seq: u32,
    flags: u8,
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn addr(d: &[u8], at: usize) -> Ipv4Addr {
    let mut a = [0u8; 4];
    a.copy_from_slice(&d[at..at + 4]);
    Ipv4Addr::from(a)
}

/// The segment view of datagram `d`, if it is a VXLAN-framed plain TCPv4 segment with data
/// and flags ACK or ACK|PSH.
fn candidate(d: &[u8]) -> Option<Seg> {
    let plain = *d.first()? & 0x08 != 0
        && be16(d, D_L3 - 2)? == ethernet::ETHERTYPE_IPV4
        && *d.get(D_L3)? == 0x45
        && *d.get(D_L3 + 9)? == ipv4::PROTO_TCP
        && be16(d, D_L3 + 6)? & 0x3fff == 0
        && D_L3 + usize::from(be16(d, D_L3 + 2)?) == d.len();
    if !plain {
        return None;
    }
    let data_offset = usize::from(*d.get(D_L4 + 12)? >> 4) * 4;
    let flags = *d.get(D_L4 + 13)?;
    let payload = D_L4 + data_offset;
    let ack = TcpFlags::ACK.0;
    if data_offset < 20 || payload >= d.len() || (flags != ack && flags != ack | TcpFlags::PSH.0) {
        return None;
    }
    let seq = u32::from_be_bytes(d.get(D_L4 + 4..D_L4 + 8)?.try_into().ok()?);
    Some(Seg {
        payload,
        seq,
        flags,
    })
}

/// Whether the segment `next` continues the run whose head datagram's headers are `head`:
/// same VXLAN and inner headers but for the per-segment fields, sequence `expected`.
fn continues(head: &[u8], h: &Seg, next: &[u8], n: &Seg, expected: u32) -> bool {
    let same = |from: usize, to: usize| head.get(from..to) == next.get(from..to);
    n.payload == h.payload
        && n.seq == expected
        // VXLAN and inner Ethernet; version..TOS; flags/fragment, TTL, protocol; addresses;
        // ports; ACK number and data offset; options.
        && same(0, D_L3 + 2)
        && same(D_L3 + 6, D_L3 + 10)
        && same(D_L3 + 12, D_L4 + 4)
        && same(D_L4 + 8, D_L4 + 13)
        && same(D_L4 + 20, h.payload)
}

/// Whether the TCP checksum of datagram `d` is right.
fn tcp_ok(d: &[u8]) -> bool {
    let pseudo = pseudo_header_v4(
        addr(d, D_L3 + 12),
        addr(d, D_L3 + 16),
        ipv4::PROTO_TCP,
        (d.len() - D_L4) as u16,
    );
    fold(combine(pseudo, sum(&d[D_L4..]))) == 0xffff
}

fn set16(frame: &mut [u8], at: usize, v: u16) {
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn ip_checksum(frame: &mut [u8], l3: usize) {
    set16(frame, l3 + 10, 0);
    let c = !fold(sum(&frame[l3..l3 + ipv4::HEADER_LEN]));
    set16(frame, l3 + 10, c);
}

/// Writes the outer headers of a frame of `len` bytes (outer headers included) in front of
/// a datagram from `from`.
fn write_outer(frame: &mut [u8], len: usize, from: (Ipv4Addr, u16), ctx: &RxContext) {
    let eth = ethernet::HEADER_LEN;
    frame[..6].copy_from_slice(&ctx.uplink_mac);
    frame[6..12].copy_from_slice(&ctx.uplink_mac);
    set16(frame, 12, ethernet::ETHERTYPE_IPV4);
    let ip = &mut frame[eth..eth + ipv4::HEADER_LEN];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
    ip[8] = 64;
    ip[9] = ipv4::PROTO_UDP;
    ip[12..16].copy_from_slice(&from.0.octets());
    ip[16..20].copy_from_slice(&ctx.node_ip.octets());
    let l4 = eth + ipv4::HEADER_LEN;
    set16(frame, l4, from.1);
    set16(frame, l4 + 2, ctx.port);
    set16(frame, l4 + 6, 0);
    set_outer_lengths(frame, len);
}

fn set_outer_lengths(frame: &mut [u8], len: usize) {
    let eth = ethernet::HEADER_LEN;
    set16(frame, eth + 2, (len - eth) as u16);
    ip_checksum(frame, eth);
    set16(
        frame,
        eth + ipv4::HEADER_LEN + 4,
        (len - eth - ipv4::HEADER_LEN) as u16,
    );
}

/// A run being built: its frame length so far, its head segment if it can take followers.
struct Run {
    end: usize,
    head: Option<Seg>,
    mss: usize,
    expected: u32,
    segments: usize,
    last_psh: bool,
    open: bool,
}

impl Run {
    /// A run led by datagram `d`, which sits at `OUTER` in its frame.
    fn start(d: &[u8]) -> Run {
        let head = candidate(d).filter(|s| s.flags == TcpFlags::ACK.0 && tcp_ok(d));
        let mss = head.map_or(0, |s| d.len() - s.payload);
        Run {
            end: OUTER + d.len(),
            head,
            mss,
            expected: head.map_or(0, |s| s.seq.wrapping_add(mss as u32)),
            segments: 1,
            last_psh: false,
            open: head.is_some(),
        }
    }

    /// Whether datagram `d` joins this run (its frame's headers start at `OUTER` of
    /// `frame`); if so, how many payload bytes to append from where in `d`.
    fn accepts(&self, frame: &[u8], d: &[u8], capacity: usize) -> Option<(Seg, usize)> {
        let head = self.head.filter(|_| self.open)?;
        let seg = candidate(d)?;
        let plen = d.len() - seg.payload;
        let ok = plen <= self.mss
            && self.end + plen <= MAX_MERGED.min(capacity)
            && continues(&frame[OUTER..], &head, d, &seg, self.expected)
            && tcp_ok(d);
        ok.then_some((seg, plen))
    }

    fn appended(&mut self, seg: Seg, plen: usize) {
        self.end += plen;
        self.segments += 1;
        self.expected = self.expected.wrapping_add(plen as u32);
        if plen < self.mss || seg.flags != TcpFlags::ACK.0 {
            self.last_psh = seg.flags & TcpFlags::PSH.0 != 0;
            self.open = false;
        }
    }

    /// Sets the frame's lengths and checksums and `pkt`'s metadata; `frame` is the whole
    /// receive area of `pkt`'s buffer.
    fn finish(&self, frame: &mut [u8], ctx: &RxContext) -> Meta {
        let mut meta = Meta {
            in_port: ctx.in_port,
            ..Meta::default()
        };
        let len = self.end;
        set_outer_lengths(frame, len);
        let Some(head) = self.head.filter(|_| self.segments > 1) else {
            return meta;
        };
        let (l3, l4) = (OUTER + D_L3, OUTER + D_L4);
        set16(frame, l3 + 2, (len - l3) as u16);
        ip_checksum(frame, l3);
        if self.last_psh {
            frame[l4 + 13] |= TcpFlags::PSH.0;
        }
        let seed = fold(pseudo_header_v4(
            addr(frame, l3 + 12),
            addr(frame, l3 + 16),
            ipv4::PROTO_TCP,
            (len - l4) as u16,
        ));
        set16(frame, l4 + 16, seed);
        meta.csum_partial = true;
        meta.offload = Offload {
            gso_type: GSO_TCPV4,
            gso_size: self.mss as u16,
            hdr_len: (OUTER + head.payload - ENCAP) as u16,
            csum_start: (l4 - ENCAP) as u16,
            csum_offset: TCP_CSUM_OFFSET,
            encap_len: 0,
        };
        meta
    }
}

/// A run in a buffer of its own (after the first run of a message).
struct OwnRun {
    pkt: Packet,
    run: Run,
}

impl OwnRun {
    fn close(mut self, ctx: &RxContext, batch: &mut Vec<Packet>) {
        let meta = self.run.finish(self.pkt.receive_area(), ctx);
        if self.pkt.set_received(self.run.end) {
            self.pkt.meta = meta;
            batch.push(self.pkt);
        }
    }
}

/// Splits the message the kernel wrote at `OUTER` of `buf`'s receive area (`len` bytes of
/// datagrams cut every `gso` bytes, from `from`) into frames appended to `batch`, merging
/// runs of one TCP flow; `buf` becomes the first frame.
pub fn split_message(
    mut buf: Packet,
    (len, gso): (usize, Option<usize>),
    from: (Ipv4Addr, u16),
    ctx: &RxContext,
    pool: &mut PacketPool,
    batch: &mut Vec<Packet>,
    counts: &mut RxCounts,
) {
    counts.messages += 1;
    let g = match gso {
        Some(g) if g > 0 && g < len => g,
        _ => len.max(1),
    };
    let n = len.div_ceil(g).max(1);
    counts.datagrams += n as u64;
    let datagram = |i: usize| (OUTER + i * g, (len - i * g).min(g));
    let slot = batch.len();
    let before = batch.len();
    let mut first = {
        let area = buf.receive_area();
        let (at, dlen) = datagram(0);
        write_outer(area, OUTER + dlen, from, ctx);
        Run::start(&area[at..at + dlen])
    };
    let mut own: Option<OwnRun> = None;
    for i in 1..n {
        let (at, dlen) = datagram(i);
        let src = buf.receive_area();
        match own.as_mut() {
            None => {
                let capacity = src.len();
                if let Some((seg, plen)) =
                    first.accepts(&src[..first.end], &src[at..at + dlen], capacity)
                {
                    src.copy_within(at + seg.payload..at + dlen, first.end);
                    first.appended(seg, plen);
                    counts.merged += 1;
                    continue;
                }
                first.open = false;
            }
            Some(o) => {
                let dst = o.pkt.receive_area();
                let capacity = dst.len();
                if let Some((seg, plen)) =
                    o.run
                        .accepts(&dst[..o.run.end], &src[at..at + dlen], capacity)
                {
                    dst[o.run.end..o.run.end + plen]
                        .copy_from_slice(&src[at + seg.payload..at + dlen]);
                    o.run.appended(seg, plen);
                    counts.merged += 1;
                    continue;
                }
            }
        }
        if let Some(done) = own.take() {
            done.close(ctx, batch);
        }
        let fits_small = OUTER + dlen <= MAX_FRAME;
        let fresh = if i + 1 < n || !fits_small {
            pool.get_large()
                .or_else(|| fits_small.then(|| pool.get()).flatten())
        } else {
            pool.get()
        };
        let Some(mut pkt) = fresh else {
            counts.no_buffer += 1;
            continue;
        };
        let dst = pkt.receive_area();
        if dst.len() < OUTER + dlen {
            counts.no_buffer += 1;
            pool.put(pkt);
            continue;
        }
        dst[OUTER..OUTER + dlen].copy_from_slice(&src[at..at + dlen]);
        write_outer(dst, OUTER + dlen, from, ctx);
        let run = Run::start(&dst[OUTER..OUTER + dlen]);
        own = Some(OwnRun { pkt, run });
    }
    if let Some(done) = own.take() {
        done.close(ctx, batch);
    }
    let meta = first.finish(buf.receive_area(), ctx);
    if buf.set_received(first.end) {
        buf.meta = meta;
        batch.insert(slot, buf);
    } else {
        pool.put(buf);
    }
    counts.frames += (batch.len() - before) as u64;
}
