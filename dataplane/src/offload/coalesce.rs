//! User-space GRO: consecutive TCPv4 segments of one flow, bound for a device that accepts
//! super-packets (a TAP pod), are written as one super-packet, so the pod's kernel takes one
//! 64 KB packet instead of ~45 segments and the node makes one write instead of ~45.
//!
//! Segments `run` merges into the first of a run ("head") must, like the kernel's
//! `tcp_gro_receive` and wireguard-go's `tcpPacketsCanCoalesce`: be plain (complete checksums,
//! not GSO), carry no IP options, have the same Ethernet header, IPv4 addresses, TOS, TTL and
//! DF bit, the same ports, ACK number and TCP options, follow each other in sequence, carry
//! flags ACK only (the last may add PSH, which ends the run), and carry as many payload bytes
//! as the head (only the last may carry fewer, which also ends the run). Each segment's
//! checksum is verified before it is merged, since the pod will not verify a partial one.
//!
//! Invariants:
//! - A run never exceeds 65535 bytes of IPv4 total length nor `MAX_RUN` segments.
//! - `merge_head` rewrites only the head's IPv4 total length and checksum, TCP flags and
//!   checksum field (the pseudo-header seed for the merged length); the payload of the other
//!   segments is written after the head's bytes without being copied in userspace.

use std::io::IoSlice;

use crate::packet::Packet;
use crate::wire::checksum::{fold, pseudo_header_v4};
use crate::wire::{EthernetFrame, Ipv4Packet, TcpFlags, TcpPacket, ethernet, ipv4};

use super::vnet::VnetHeader;

/// Most segments merged into one write.
pub const MAX_RUN: usize = 64;

/// A candidate segment: its bytes, where its payload starts, its sequence number and flags.
#[derive(Clone, Copy)]
struct Seg<'a> {
    frame: &'a [u8],
    payload: usize,
    seq: u32,
    flags: u8,
}

const ETH: usize = ethernet::HEADER_LEN;
const L4: usize = ETH + ipv4::HEADER_LEN;

/// The segment view of `pkt` if it could be part of a run: plain TCPv4 without IP options,
/// not a fragment, flags ACK or ACK|PSH and a non-empty payload. Its checksum is checked
/// only once it would be merged (`checksum_ok`): a segment that merges with nothing costs no
/// pass over its payload, and none is verified twice.
fn candidate(pkt: &Packet) -> Option<Seg<'_>> {
    if pkt.meta.csum_partial || pkt.meta.offload.is_gso() {
        return None;
    }
    let frame = pkt.data();
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethernet::ETHERTYPE_IPV4 || eth.vlan_id().is_some() {
        return None;
    }
    let ip = Ipv4Packet::new_checked(frame.get(ETH..)?).ok()?;
    if ip.header_len() != ipv4::HEADER_LEN
        || ip.protocol() != ipv4::PROTO_TCP
        || ip.is_fragment()
        || ETH + usize::from(ip.total_len()) != frame.len()
    {
        return None;
    }
    let tcp = TcpPacket::new_checked(frame.get(L4..)?).ok()?;
    let flags = tcp.flags().0;
    if flags != TcpFlags::ACK.0 && flags != TcpFlags::ACK.0 | TcpFlags::PSH.0 {
        return None;
    }
    let payload = L4 + tcp.header_len();
    if payload >= frame.len() {
        return None;
    }
    Some(Seg {
        frame,
        payload,
        seq: tcp.seq_number(),
        flags,
    })
}

/// Whether the segment's TCP checksum is correct (the pod will not verify a merged one).
fn checksum_ok(seg: &Seg) -> bool {
    let ip = Ipv4Packet::new_unchecked(&seg.frame[ETH..]);
    TcpPacket::new_unchecked(&seg.frame[L4..]).verify_checksum(ip.src_addr(), ip.dst_addr())
}

/// Whether `next` continues `prev` (same flow, headers, in sequence) in a run led by `head`.
fn continues(head: &Seg, prev: &Seg, next: &Seg) -> bool {
    let same = |from: usize, to: usize| head.frame.get(from..to) == next.frame.get(from..to);
    // Ethernet header; IPv4 version..TOS; TTL, protocol; addresses; TCP ports; ACK number;
    // data offset (header length); TCP options.
    next.payload == head.payload
        && same(0, ETH + 2)
        && same(ETH + 6, ETH + 7)
        && same(ETH + 8, ETH + 10)
        && same(ETH + 12, L4 + 4)
        && same(L4 + 8, L4 + 13)
        && same(L4 + 20, head.payload)
        && next.seq
            == prev
                .seq
                .wrapping_add((prev.frame.len() - prev.payload) as u32)
}

/// How many packets from `pkts[0]` on form one run (1 when `pkts[0]` merges with nothing).
pub fn run(pkts: &[Packet]) -> usize {
    let Some(head) = pkts.first().and_then(candidate) else {
        return 1;
    };
    if head.flags != TcpFlags::ACK.0 {
        return 1;
    }
    let mss = head.frame.len() - head.payload;
    let mut total = head.frame.len() - ETH;
    let mut prev = head;
    let mut n = 1;
    while n < MAX_RUN {
        let Some(next) = pkts.get(n).and_then(candidate) else {
            break;
        };
        let len = next.frame.len() - next.payload;
        if !continues(&head, &prev, &next) || len > mss || total + len > 65_535 {
            break;
        }
        if n == 1 && !checksum_ok(&head) {
            return 1;
        }
        if !checksum_ok(&next) {
            break;
        }
        total += len;
        n += 1;
        if len < mss || next.flags != TcpFlags::ACK.0 {
            break;
        }
        prev = next;
    }
    n
}

/// Turns a run of segments (`run`) into one super-packet's header: the head rewritten for the
/// merged length (`merge_head`), the virtio-net header returned; `None` for an empty run.
pub fn merge_run(run: &mut [Packet]) -> Option<VnetHeader> {
    let (head, rest) = run.split_first_mut()?;
    let payload_total =
        payload_of(head).len() + rest.iter().map(|p| payload_of(p).len()).sum::<usize>();
    let last_psh = rest.last().is_some_and(has_psh);
    Some(merge_head(head, payload_total, last_psh))
}

/// Fills `slices` with the writev of a merged run: `header`, the head's bytes, then every
/// other segment's payload; returns how many slices are used (`run.len() + 1`).
pub fn gather<'a>(
    header: &'a [u8],
    run: &'a [Packet],
    slices: &mut [IoSlice<'a>; MAX_RUN + 1],
) -> usize {
    slices[0] = IoSlice::new(header);
    for (i, (slot, seg)) in slices[1..].iter_mut().zip(run).enumerate() {
        *slot = IoSlice::new(if i == 0 { seg.data() } else { payload_of(seg) });
    }
    run.len().min(MAX_RUN) + 1
}

/// Turns the head of a run of `n >= 2` segments carrying `payload_total` payload bytes in all
/// into the header of the merged super-packet (PSH if `last_psh`), returning the virtio-net
/// header to write in front of it. The caller writes the head's bytes, then every other
/// segment's payload (`payload_of`).
pub fn merge_head(head: &mut Packet, payload_total: usize, last_psh: bool) -> VnetHeader {
    let frame = head.data_mut();
    let tcp_header = TcpPacket::new_unchecked(&frame[L4..]).header_len();
    let mss = frame.len() - L4 - tcp_header;
    let tcp_len = tcp_header + payload_total;
    let (src, dst) = {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH..]);
        ip.set_total_len((ipv4::HEADER_LEN + tcp_len) as u16);
        ip.fill_checksum();
        (ip.src_addr(), ip.dst_addr())
    };
    let mut tcp = TcpPacket::new_unchecked(&mut frame[L4..]);
    if last_psh {
        tcp.set_flags(TcpFlags(tcp.flags().0 | TcpFlags::PSH.0));
    }
    let seed = fold(pseudo_header_v4(src, dst, ipv4::PROTO_TCP, tcp_len as u16));
    tcp.set_checksum(seed);
    VnetHeader::tcpv4(L4 as u16, tcp_header as u16, mss as u16)
}

/// The payload of a segment that `run` accepted (empty for anything else).
pub fn payload_of(pkt: &Packet) -> &[u8] {
    let frame = pkt.data();
    frame
        .get(L4..)
        .and_then(|t| TcpPacket::new_checked(t).ok())
        .map(|t| L4 + t.header_len())
        .and_then(|at| frame.get(at..))
        .unwrap_or(&[])
}

/// Whether a segment `run` accepted carries PSH.
pub fn has_psh(pkt: &Packet) -> bool {
    pkt.data()
        .get(L4 + 13)
        .is_some_and(|f| f & TcpFlags::PSH.0 != 0)
}

#[cfg(test)]
mod tests;
