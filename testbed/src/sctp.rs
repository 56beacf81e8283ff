//! SCTP over raw IP sockets, for the testbed's kernel has no SCTP module: the prober sends an
//! INIT and waits for the INIT-ACK; the pods' responder (beside netexec) answers each INIT to a
//! declared port with an INIT-ACK whose state cookie carries the netexec answer
//! (`<pod> <client ip:port>`), so an SCTP probe reports who answered and the client address
//! it saw, like the TCP and UDP probes.
//!
//! Invariants: both sides check the CRC32c of what they receive (the raw socket does not), so
//! an answer proves the dataplane's port rewrite left a valid checksum both ways; every wait is
//! bounded by the probe's timeout.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use dataplane::wire::sctp::{HEADER_LEN, SctpPacket, chunk};
use rustix::net::{
    AddressFamily, Protocol, RecvFlags, SendFlags, SocketType, recvfrom, sendto, socket,
    sockopt::{Timeout, set_socket_timeout},
};

use crate::netexec::answer;

const IPPROTO_SCTP: u32 = 132;
/// INIT / INIT-ACK fixed part: type, flags, length, initiate tag, a_rwnd, streams, TSN.
const INIT_LEN: usize = 20;
/// The State Cookie parameter of an INIT-ACK (RFC 9260 §3.3.3).
const STATE_COOKIE: u16 = 7;

fn raw_socket() -> std::io::Result<OwnedFd> {
    let proto = std::num::NonZeroU32::new(IPPROTO_SCTP).map(Protocol::from_raw);
    Ok(socket(AddressFamily::INET, SocketType::RAW, proto)?)
}

/// An SCTP packet with one INIT or INIT-ACK chunk (and the cookie parameter, if any).
fn handshake(kind: u8, sport: u16, dport: u16, vtag: u32, tag: u32, cookie: &[u8]) -> Vec<u8> {
    let param = if cookie.is_empty() {
        0
    } else {
        4 + cookie.len()
    };
    let mut p = vec![0u8; HEADER_LEN + INIT_LEN];
    p[0..2].copy_from_slice(&sport.to_be_bytes());
    p[2..4].copy_from_slice(&dport.to_be_bytes());
    p[4..8].copy_from_slice(&vtag.to_be_bytes());
    let c = &mut p[HEADER_LEN..];
    c[0] = kind;
    c[2..4].copy_from_slice(&((INIT_LEN + param) as u16).to_be_bytes());
    c[4..8].copy_from_slice(&tag.to_be_bytes());
    c[8..12].copy_from_slice(&65_536u32.to_be_bytes());
    c[12..14].copy_from_slice(&1u16.to_be_bytes());
    c[14..16].copy_from_slice(&1u16.to_be_bytes());
    c[16..20].copy_from_slice(&tag.to_be_bytes());
    if param != 0 {
        p.extend_from_slice(&STATE_COOKIE.to_be_bytes());
        p.extend_from_slice(&(param as u16).to_be_bytes());
        p.extend_from_slice(cookie);
        p.resize(p.len().next_multiple_of(4), 0);
    }
    SctpPacket::new_unchecked(&mut p[..]).fill_checksum();
    p
}

/// One received SCTP packet: its source, ports, verification tag, first chunk and the rest.
struct Received<'a> {
    src: Ipv4Addr,
    sport: u16,
    dport: u16,
    vtag: u32,
    chunk: u8,
    body: &'a [u8],
}

/// Parses what a raw IPv4 socket delivers (the IP header included); `None` unless it is an
/// SCTP packet with a valid CRC32c.
fn parse(datagram: &[u8]) -> Option<Received<'_>> {
    let ihl = usize::from(*datagram.first()? & 0x0f) * 4;
    let src = Ipv4Addr::new(
        *datagram.get(12)?,
        *datagram.get(13)?,
        *datagram.get(14)?,
        *datagram.get(15)?,
    );
    let seg = datagram.get(ihl..)?;
    let s = SctpPacket::new_checked(seg).ok()?;
    if !s.verify_checksum() {
        return None;
    }
    Some(Received {
        src,
        sport: s.src_port(),
        dport: s.dst_port(),
        vtag: s.verification_tag(),
        chunk: s.first_chunk_type(),
        body: seg.get(HEADER_LEN..)?,
    })
}

/// Sends an INIT to `target` and waits for its INIT-ACK; `Ok(Some(text))` is the responder's
/// answer, `Ok(None)` a timeout.
pub fn probe(target: SocketAddrV4, timeout: Duration) -> std::io::Result<Option<String>> {
    let fd = raw_socket()?;
    set_socket_timeout(&fd, Timeout::Recv, Some(Duration::from_millis(200)))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let sport = 32_768 + (nanos % 28_000) as u16;
    let tag = nanos | 1;
    let init = handshake(chunk::INIT, sport, target.port(), 0, tag, &[]);
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        sendto(
            &fd,
            &init,
            SendFlags::empty(),
            &SocketAddrV4::new(*target.ip(), 0),
        )?;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until.min(deadline) {
            let Ok((_, n, _)) = recvfrom(&fd, &mut buf[..], RecvFlags::empty()) else {
                continue;
            };
            let Some(r) = parse(&buf[..n]) else { continue };
            let ours = r.src == *target.ip()
                && (r.sport, r.dport) == (target.port(), sport)
                && r.vtag == tag
                && r.chunk == chunk::INIT_ACK;
            if ours {
                return Ok(Some(cookie(r.body).unwrap_or_default()));
            }
        }
    }
    Ok(None)
}

/// The State Cookie text of an INIT-ACK chunk.
fn cookie(chunk_bytes: &[u8]) -> Option<String> {
    let param = chunk_bytes.get(INIT_LEN..)?;
    let kind = u16::from_be_bytes([*param.first()?, *param.get(1)?]);
    let len = usize::from(u16::from_be_bytes([*param.get(2)?, *param.get(3)?]));
    if kind != STATE_COOKIE {
        return None;
    }
    Some(String::from_utf8_lossy(param.get(4..len)?).into_owned())
}

/// Answers every valid INIT to one of `ports` with an INIT-ACK carrying `answer(pod, client)`;
/// runs until the process ends. Returns at once if no raw socket can be had.
pub fn respond(pod: &str, ports: &[u16]) {
    let Ok(fd) = raw_socket() else {
        eprintln!("sctp responder: no raw socket (CAP_NET_RAW?); SCTP probes will time out");
        return;
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((_, n, _)) = recvfrom(&fd, &mut buf[..], RecvFlags::empty()) else {
            continue;
        };
        let Some(r) = parse(&buf[..n]) else { continue };
        if r.chunk != chunk::INIT || !ports.contains(&r.dport) || r.body.len() < INIT_LEN {
            continue;
        }
        let their_tag = u32::from_be_bytes([r.body[4], r.body[5], r.body[6], r.body[7]]);
        let client = SocketAddr::from((r.src, r.sport));
        let text = answer(pod, client);
        let ack = handshake(
            chunk::INIT_ACK,
            r.dport,
            r.sport,
            their_tag,
            their_tag ^ 0x5a5a_5a5a,
            text.as_bytes(),
        );
        // A lost answer is the prober's to retry.
        let _ = sendto(&fd, &ack, SendFlags::empty(), &SocketAddrV4::new(r.src, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_init_ack_carries_the_answer_in_its_cookie_with_a_valid_crc() {
        let ack = handshake(
            chunk::INIT_ACK,
            80,
            40000,
            7,
            9,
            b"store-be-1 10.244.0.2:40000",
        );
        let mut ip = vec![0x45u8; 1];
        ip.resize(20, 0);
        ip[12..16].copy_from_slice(&[10, 244, 1, 5]);
        ip.extend_from_slice(&ack);
        let r = parse(&ip).expect("valid");
        assert_eq!(
            (r.sport, r.dport, r.vtag, r.chunk),
            (80, 40000, 7, chunk::INIT_ACK)
        );
        assert_eq!(
            cookie(r.body).as_deref(),
            Some("store-be-1 10.244.0.2:40000")
        );
        let last = ip.len() - 1;
        ip[last] ^= 1;
        assert!(parse(&ip).is_none(), "a bad CRC is not an answer");
    }
}
