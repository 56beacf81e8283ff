//! Structure-aware fuzzing of the whole pipeline: each input is a short conversation of
//! well-formed-enough frames (IPv4 and L4 checksums right unless the input asks otherwise, so
//! packets get past classify into conntrack, NAT, policy and routing), with IP options, TCP
//! flags, TTLs, fragment bits, `csum_partial`, VXLAN from peers, replies to what the pipeline
//! sent (reverse NAT) and ICMP errors quoting it (related translation) with random inner
//! headers. One flow table per input, so a crash replays from its input alone.
//!
//! Oracles: every packet ends with a verdict; a transmitted frame whose input had correct
//! checksums leaves with a correct IPv4 header checksum and a correct L4 checksum (outer and,
//! for VXLAN, inner), checked with the RFC 1071 sum below, which shares no code with the
//! dataplane.
#![no_main]

mod checksums;

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use bench::fixture::{self, Scale};
use checksums::{VXLAN_PORT, fix_l4, pseudo, sum};
use dataplane::packet::{Packet, PortId, Verdict};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const LOCAL_PODS: u32 = 4;
const SERVICES: u32 = 8;
const ENDPOINTS: u32 = 3;
const MAX_PACKETS: usize = 24;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        fixture::snapshot(Scale {
            services: SERVICES,
            endpoints_per_service: ENDPOINTS,
            policies: 6,
            local_pods: LOCAL_PODS,
        })
    })
}

/// A 5-tuple as seen on the wire.
#[derive(Clone, Copy, Debug)]
struct Tuple {
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
}

/// A frame the pipeline sent, for replies and ICMP errors about it.
#[derive(Clone, Copy, Debug)]
struct Sent {
    tuple: Tuple,
    port: PortId,
    /// The VXLAN peer it was encapsulated to.
    peer: Option<Ipv4Addr>,
}

fn addr(u: &mut Unstructured) -> Result<Ipv4Addr> {
    let snap = snapshot();
    Ok(match u.int_in_range(0..=9u8)? {
        0 => fixture::local_pod_ip(u.int_in_range(0..=LOCAL_PODS)?),
        1 => fixture::service_vip(u.int_in_range(0..=SERVICES)?),
        2 => fixture::endpoint_ip(
            u.int_in_range(0..=SERVICES)?,
            u.int_in_range(0..=ENDPOINTS)?,
        ),
        3 => fixture::NODE_IP,
        4 => fixture::remote_node_ip(u.int_in_range(0..=3)?),
        5 => Ipv4Addr::new(203, 0, 113, u.arbitrary()?),
        6 => snap.node.gateway_ip,
        7 => Ipv4Addr::new(10, 244, u.arbitrary()?, u.arbitrary()?),
        _ => Ipv4Addr::from(u.arbitrary::<u32>()?),
    })
}

fn l4_port(u: &mut Unstructured) -> Result<u16> {
    Ok(match u.int_in_range(0..=6u8)? {
        0 => 80,
        1 => fixture::TARGET_PORT,
        2 => 53,
        3 => 9000 + u.int_in_range(0..=10)?,
        4 => u.int_in_range(30000..=32767)?,
        5 => VXLAN_PORT,
        _ => u.arbitrary()?,
    })
}

fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let snap = snapshot();
    snap.ports
        .pod(ip)
        .map_or([0x02, 0xab, 0, 0, 0, 1], |p| p.mac.0)
}

/// The L4 bytes of `t` (TCP, UDP or ICMP echo), checksum left 0.
fn l4(u: &mut Unstructured, t: &Tuple) -> Result<Vec<u8>> {
    let payload_len = u.int_in_range(0..=24usize)?;
    let payload = u.bytes(payload_len.min(u.len()))?.to_vec();
    let mut b = match t.proto {
        6 => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&t.sport.to_be_bytes());
            h[2..4].copy_from_slice(&t.dport.to_be_bytes());
            h[4..8].copy_from_slice(&u.arbitrary::<u32>()?.to_be_bytes());
            h[8..12].copy_from_slice(&u.arbitrary::<u32>()?.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = match u.int_in_range(0..=5u8)? {
                0 => 0x02,
                1 => 0x12,
                2 => 0x10,
                3 => 0x04,
                4 => 0x11,
                _ => u.arbitrary()?,
            };
            h[14..16].copy_from_slice(&[0xff, 0xff]);
            h
        }
        17 => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&t.sport.to_be_bytes());
            h[2..4].copy_from_slice(&t.dport.to_be_bytes());
            h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            h
        }
        _ => {
            let mut h = vec![0u8; 8];
            h[0] = if u.arbitrary()? { 8 } else { 0 };
            h[4..6].copy_from_slice(&t.sport.to_be_bytes());
            h[6..8].copy_from_slice(&u.arbitrary::<u16>()?.to_be_bytes());
            h
        }
    };
    b.extend_from_slice(&payload);
    Ok(b)
}

/// An IPv4 header with `options` (padded to 4 bytes, at most 40) and a correct checksum.
fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    frag: u16,
    options: &[u8],
    payload_len: usize,
) -> Vec<u8> {
    let opt_len = options.len().min(40).div_ceil(4) * 4;
    let mut h = vec![0u8; 20 + opt_len];
    h[0] = 0x40 | ((20 + opt_len) / 4) as u8;
    let total = (h.len() + payload_len) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h[20..20 + options.len().min(40)].copy_from_slice(&options[..options.len().min(40)]);
    let c = sum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

fn options(u: &mut Unstructured) -> Result<Vec<u8>> {
    if u.ratio(3u8, 4u8)? {
        return Ok(Vec::new());
    }
    let n = u.int_in_range(1..=40usize)?;
    Ok(u.bytes(n.min(u.len()))?.to_vec())
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// One packet to send: the frame, its port, whether all its checksums are right.
struct Input {
    frame: Vec<u8>,
    port: PortId,
    partial: bool,
    valid: bool,
}

/// An IPv4 packet for `t`, L4 checksum right unless `corrupt`.
fn ip_packet(u: &mut Unstructured, t: &Tuple, corrupt: bool) -> Result<Vec<u8>> {
    let mut body = l4(u, t)?;
    fix_l4(&mut body, t.src, t.dst, t.proto);
    if corrupt && !body.is_empty() {
        let i = u.choose_index(body.len())?;
        body[i] ^= 1 << u.int_in_range(0..=7u8)?;
    }
    let ttl = if u.ratio(1u8, 8u8)? {
        u.int_in_range(0..=2)?
    } else {
        64
    };
    let frag = match u.int_in_range(0..=9u8)? {
        0 => u.arbitrary()?,
        1 => 0,
        _ => 0x4000,
    };
    let opts = options(u)?;
    let mut p = ipv4_header(t.src, t.dst, t.proto, ttl, frag, &opts, body.len());
    p.extend_from_slice(&body);
    Ok(p)
}

/// An ICMP error from `from` to `to` quoting `quoted` (random type/code, inner options).
fn icmp_error(
    u: &mut Unstructured,
    from: Ipv4Addr,
    to: Ipv4Addr,
    quoted: &Tuple,
) -> Result<Vec<u8>> {
    let (ty, code) = match u.int_in_range(0..=4u8)? {
        0 => (3, 4),
        1 => (3, u.int_in_range(0..=15)?),
        2 => (11, 0),
        3 => (12, 0),
        _ => (u.arbitrary()?, u.arbitrary()?),
    };
    let mut inner_l4 = l4(u, quoted)?;
    fix_l4(&mut inner_l4, quoted.src, quoted.dst, quoted.proto);
    inner_l4.truncate(
        u.int_in_range(0..=inner_l4.len())?
            .max(8)
            .min(inner_l4.len()),
    );
    let opts = options(u)?;
    let mut inner = ipv4_header(
        quoted.src,
        quoted.dst,
        quoted.proto,
        64,
        0x4000,
        &opts,
        inner_l4.len(),
    );
    if u.ratio(1u8, 8u8)? {
        // A quoted header whose total length disagrees with what is quoted.
        let len: u16 = u.arbitrary()?;
        inner[2..4].copy_from_slice(&len.to_be_bytes());
    }
    inner.extend_from_slice(&inner_l4);
    let mut icmp = vec![ty, code, 0, 0];
    icmp.extend_from_slice(&u.arbitrary::<[u8; 4]>()?);
    icmp.extend_from_slice(&inner);
    fix_l4(&mut icmp, from, to, 1);
    let opts = options(u)?;
    let mut p = ipv4_header(from, to, 1, 64, 0, &opts, icmp.len());
    p.extend_from_slice(&icmp);
    Ok(p)
}

fn vxlan(from: Ipv4Addr, inner_frame: &[u8]) -> Vec<u8> {
    let snap = snapshot();
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&49999u16.to_be_bytes());
    udp[2..4].copy_from_slice(&snap.node.vxlan_port.to_be_bytes());
    udp[4..6].copy_from_slice(&((16 + inner_frame.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0x08, 0, 0, 0]);
    udp.extend_from_slice(&(snap.node.vni << 8).to_be_bytes());
    udp.extend_from_slice(inner_frame);
    let mut p = ipv4_header(from, snap.node.node_ip, 17, 64, 0x4000, &[], udp.len());
    p.extend_from_slice(&udp);
    ethernet(snap.node.uplink_mac.0, [0x02, 0xfe, 0, 0, 0, 9], &p)
}

fn pod_port(ip: Ipv4Addr) -> Option<PortId> {
    snapshot().ports.pod(ip).map(|p| p.port)
}

fn next_input(u: &mut Unstructured, sent: &[Sent]) -> Result<Input> {
    let snap = snapshot();
    let corrupt = u.ratio(1u8, 16u8)?;
    let partial = u.ratio(1u8, 6u8)?;
    let proto = match u.int_in_range(0..=7u8)? {
        0..=2 => 6,
        3..=5 => 17,
        _ => 1,
    };
    let kind = if sent.is_empty() {
        0
    } else {
        u.int_in_range(0..=5u8)?
    };
    let (tuple, port, peer, error_about) = match kind {
        // A reply to something the pipeline sent, from where it went.
        1 | 2 | 3 => {
            let s = sent[u.choose_index(sent.len())?];
            let t = s.tuple;
            let reply = Tuple {
                proto: t.proto,
                src: t.dst,
                dst: t.src,
                sport: t.dport,
                dport: t.sport,
            };
            if kind == 3 {
                (reply, s.port, s.peer, Some(t))
            } else {
                (reply, s.port, s.peer, None)
            }
        }
        // A fresh flow.
        _ => {
            let src = addr(u)?;
            let t = Tuple {
                proto,
                src,
                dst: addr(u)?,
                sport: l4_port(u)?,
                dport: l4_port(u)?,
            };
            let port = match u.int_in_range(0..=3u8)? {
                0 => pod_port(src).unwrap_or(fixture::UPLINK),
                1 => fixture::HOST,
                2 => fixture::UPLINK,
                _ => PortId(u.int_in_range(0..=(fixture::FIRST_POD + LOCAL_PODS as u16))?),
            };
            let peer = if port == fixture::UPLINK && u.ratio(1u8, 2u8)? {
                Some(fixture::remote_node_ip(u.int_in_range(0..=3)?))
            } else {
                None
            };
            (t, port, peer, None)
        }
    };
    let ip = match error_about {
        // An ICMP error about a sent packet, from its destination (or a router on the way).
        Some(quoted) => {
            let from = if u.arbitrary()? { quoted.dst } else { addr(u)? };
            icmp_error(u, from, quoted.src, &quoted)?
        }
        None if proto == 1 && u.ratio(1u8, 3u8)? => {
            let quoted = Tuple {
                proto: 17,
                src: tuple.dst,
                dst: addr(u)?,
                sport: l4_port(u)?,
                dport: l4_port(u)?,
            };
            icmp_error(u, tuple.src, tuple.dst, &quoted)?
        }
        None => ip_packet(u, &tuple, corrupt)?,
    };
    let src_mac = match port {
        p if p == fixture::HOST => snap.node.host_mac.0,
        p if p == fixture::UPLINK => [0x02, 0xfe, 0, 0, 0, 7],
        _ => mac_of(tuple.src),
    };
    let dst_mac = match u.int_in_range(0..=7u8)? {
        0 => [0xff; 6],
        1 => u.arbitrary()?,
        _ if port == fixture::UPLINK => snap.node.uplink_mac.0,
        _ => snap.node.gateway_mac.0,
    };
    let frame = match peer {
        Some(from) if port == fixture::UPLINK => vxlan(
            from,
            &ethernet(snap.node.gateway_mac.0, [0x02, 0xfc, 0, 0, 0, 1], &ip),
        ),
        _ => ethernet(dst_mac, src_mac, &ip),
    };
    Ok(Input {
        frame,
        port,
        partial,
        valid: !corrupt,
    })
}

/// IPv4 header and L4 checksum of the IPv4 packet at `ip`; returns the packet's tuple.
fn check_ipv4(ip: &[u8]) -> Option<Tuple> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let hdr = ip.get(..ihl)?;
    assert_eq!(
        sum(&[hdr]),
        0,
        "IPv4 header checksum of a transmitted frame"
    );
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let proto = ip[9];
    let body = ip.get(ihl..total)?;
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if fragment {
        return None;
    }
    match proto {
        6 | 17 if body.len() >= 8 => {
            let skip = proto == 17 && body[6..8] == [0, 0];
            if !skip {
                assert_eq!(
                    sum(&[&pseudo(src, dst, proto, body.len()), body]),
                    0,
                    "L4 checksum"
                );
            }
            let sport = u16::from_be_bytes([body[0], body[1]]);
            let dport = u16::from_be_bytes([body[2], body[3]]);
            Some(Tuple {
                proto,
                src,
                dst,
                sport,
                dport,
            })
        }
        1 if body.len() >= 8 => {
            assert_eq!(sum(&[body]), 0, "ICMP checksum");
            let id = u16::from_be_bytes([body[4], body[5]]);
            Some(Tuple {
                proto,
                src,
                dst,
                sport: id,
                dport: id,
            })
        }
        _ => None,
    }
}

/// Checks a transmitted frame; returns what it carried (inner tuple for VXLAN) and the peer.
fn check_out(frame: &[u8]) -> Option<(Tuple, Option<Ipv4Addr>)> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let outer = check_ipv4(frame.get(14..)?)?;
    if outer.proto == 17 && outer.dport == snapshot().node.vxlan_port {
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let inner = frame.get(14 + ihl + 16..)?;
        if inner.get(12..14)? != [0x08, 0x00] {
            return None;
        }
        return check_ipv4(inner.get(14..)?).map(|t| (t, Some(outer.dst)));
    }
    Some((outer, None))
}

/// Overwrites the TCP/UDP checksum of a plain (not VXLAN) frame, as CHECKSUM_PARTIAL leaves it.
fn garble_l4_checksum(frame: &mut [u8], value: u16) {
    let Some(&vihl) = frame.get(14) else { return };
    let l4 = 14 + usize::from(vihl & 0x0f) * 4;
    let at = match frame.get(14 + 9) {
        Some(6) => l4 + 16,
        Some(17) if frame.get(l4 + 2..l4 + 4) != Some(&VXLAN_PORT.to_be_bytes()[..]) => l4 + 6,
        _ => return,
    };
    if let Some(field) = frame.get_mut(at..at + 2) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let ct = Arc::new(Conntrack::new(ConntrackConfig {
        capacity: 256,
        ..ConntrackConfig::default()
    }));
    let mut pipe = Pipeline::new(ct, Arc::new(AffinityTable::new(64)), 1);
    let mut now = 100;
    let mut sent: Vec<Sent> = Vec::new();
    for _ in 0..MAX_PACKETS {
        if u.is_empty() {
            break;
        }
        let Ok(input) = next_input(&mut u, &sent) else {
            break;
        };
        if u.ratio(1u8, 8u8).unwrap_or(false) {
            now += u.int_in_range(1..=200u32).unwrap_or(1);
        }
        pipe.begin_batch(now);
        let Some(mut pkt) = Packet::from_frame(&input.frame) else {
            continue;
        };
        pkt.meta.in_port = input.port;
        pkt.meta.csum_partial = input.partial;
        if input.partial {
            // The device leaves the L4 checksum unfinished: whatever is there must not matter.
            let garbage: u16 = u.arbitrary().unwrap_or(0);
            garble_l4_checksum(pkt.data_mut(), garbage);
        }
        let v = pipe.process(snapshot(), &mut pkt);
        assert!(v != Verdict::Pending);
        if let Verdict::Tx(port) = v
            && input.valid
            && let Some((tuple, peer)) = check_out(pkt.data())
            && sent.len() < 64
        {
            sent.push(Sent { tuple, port, peer });
        }
    }
});
