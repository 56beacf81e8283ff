//! Rejecting a new connection in place: TCP RST for TCP, ICMP port unreachable otherwise
//! (user-needs B3). The answer goes back out the port the packet came in on.
//!
//! Invariant: the answer is built from the packet as received (before any translation), so
//! it carries exactly the addresses and ports the client used and passes the client's own
//! connection tracking.

use crate::drop::DropReason;
use crate::flow::L4Proto;
use crate::packet::{Packet, Verdict};
use crate::wire::{Ipv4Repr, TcpFlags, TcpPacket, icmp, ipv4, tcp};

use super::Ctx;
use super::icmp::{make_error, swap_macs};

pub fn reject(pkt: &mut Packet, ctx: &Ctx) -> Verdict {
    let result = match ctx.key.proto {
        L4Proto::Tcp => tcp_reset(pkt, ctx),
        L4Proto::Udp | L4Proto::Icmp | L4Proto::Sctp => make_error(
            pkt,
            ctx.l3,
            icmp::DEST_UNREACHABLE,
            icmp::CODE_PORT_UNREACHABLE,
            0,
            ctx.key.dst,
        ),
    };
    match result {
        Ok(()) => Verdict::Tx(pkt.meta.in_port),
        Err(reason) => Verdict::Drop(reason),
    }
}

/// Rewrites a TCP segment into the RST that answers it (RFC 9293 §3.10.7.1).
fn tcp_reset(pkt: &mut Packet, ctx: &Ctx) -> Result<(), DropReason> {
    let (seq, ack, flags, seg_len) = {
        let ip_total =
            usize::from(crate::wire::Ipv4Packet::new_unchecked(&pkt.data()[ctx.l3..]).total_len());
        let t = TcpPacket::new_checked(&pkt.data()[ctx.l4..]).map_err(|_| DropReason::Malformed)?;
        let payload = ip_total.saturating_sub(ctx.l4 - ctx.l3 + t.header_len());
        (t.seq_number(), t.ack_number(), t.flags(), payload as u32)
    };
    let (rst_seq, rst_ack, rst_flags) = if flags.contains(TcpFlags::ACK) {
        (ack, 0, TcpFlags::RST)
    } else {
        let mut len = seg_len;
        if flags.contains(TcpFlags::SYN) {
            len += 1;
        }
        if flags.contains(TcpFlags::FIN) {
            len += 1;
        }
        (
            0,
            seq.wrapping_add(len),
            TcpFlags(TcpFlags::RST.0 | TcpFlags::ACK.0),
        )
    };
    let l4 = ctx.l3 + ipv4::HEADER_LEN;
    if !pkt.set_len(l4 + tcp::HEADER_LEN) {
        return Err(DropReason::Malformed);
    }
    let buf = pkt.data_mut();
    swap_macs(buf);
    let ip = Ipv4Repr {
        src: ctx.key.dst,
        dst: ctx.key.src,
        protocol: ipv4::PROTO_TCP,
        ttl: 64,
        payload_len: tcp::HEADER_LEN as u16,
        dont_frag: true,
        ident: 0,
    };
    ip.emit(&mut buf[ctx.l3..])
        .map_err(|_| DropReason::Malformed)?;
    buf[l4..l4 + tcp::HEADER_LEN].fill(0);
    let mut t = TcpPacket::new_unchecked(&mut buf[l4..l4 + tcp::HEADER_LEN]);
    t.set_src_port(ctx.key.dport);
    t.set_dst_port(ctx.key.sport);
    t.set_seq_number(rst_seq);
    t.set_ack_number(rst_ack);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(rst_flags);
    t.set_window(0);
    t.fill_checksum(ctx.key.dst, ctx.key.src);
    Ok(())
}
