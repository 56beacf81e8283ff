//! The attacker: a namespace on the underlay (`<prefix>-attacker`, a veth into the nodes'
//! bridge, address [`ATTACKER_IP`]) from which the hostile-traffic scenarios send crafted
//! frames, and a bounded raw-frame sender (an AF_PACKET TX ring, the dataplane's own
//! backend) that also works inside a pod, plus a raw IPv4 sender for pods.
//!
//! Invariants: the attacker lives in a namespace of the testbed, so `down` removes it with
//! the rest (also after a killed run), and attaching it again is a no-op; every send is
//! bounded by a frame count and a deadline and paced to a rate; frames leave only through a
//! device of a testbed namespace.

pub mod frames;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use dataplane::io::PacketIo;
use dataplane::io::af_packet::{AfPacketConfig, AfPacketPort};
use dataplane::packet::PacketPool;
use rustix::net::{AddressFamily, SendFlags, SocketType, ipproto, sendto, socket};

use crate::error::{Error, Result, context};
use crate::layout::{BRIDGE, Layout};
use crate::netns::{self, ip};

/// The attacker's address on the node subnet (below the cloud LB's .254).
pub const ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 250);
/// The attacker's MAC.
pub const ATTACKER_MAC: [u8; 6] = [0x02, 0xfd, 0x00, 0x00, 0x00, 0xfa];
/// The attacker's device, inside its namespace.
pub const ATTACKER_IF: &str = "tb-atk0";
/// The attacker's port on the underlay bridge.
const ATTACKER_PORT: &str = "tb-attack";
/// Frames per TX kick.
const BURST: usize = 64;

/// Creates the attacker's namespace and its veth into the underlay bridge (once); returns
/// the namespace.
pub fn attach(layout: &Layout) -> Result<String> {
    let ns = layout.attacker_ns();
    if netns::list()?.contains(&ns) {
        return Ok(ns);
    }
    netns::add(&ns)?;
    let underlay = layout.underlay_ns();
    ip(
        &ns,
        &[
            "link",
            "add",
            ATTACKER_IF,
            "type",
            "veth",
            "peer",
            "name",
            ATTACKER_PORT,
            "netns",
            &underlay,
        ],
    )?;
    let mac = ATTACKER_MAC.map(|b| format!("{b:02x}")).join(":");
    ip(&ns, &["link", "set", ATTACKER_IF, "address", &mac, "up"])?;
    ip(
        &underlay,
        &["link", "set", ATTACKER_PORT, "master", BRIDGE, "up"],
    )?;
    ip(
        &ns,
        &[
            "addr",
            "add",
            &format!("{ATTACKER_IP}/24"),
            "dev",
            ATTACKER_IF,
        ],
    )?;
    Ok(ns)
}

/// How much a send may do: it stops at whichever bound comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub max_frames: u64,
    /// Frames per second, paced in bursts of [`BURST`].
    pub rate_pps: u64,
    pub within: Duration,
}

/// What a send did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Frames the device accepted.
    pub frames: u64,
    /// Frames the TX ring refused (ring full).
    pub refused: u64,
    pub elapsed: Duration,
}

/// Sends the frames of `frames` out of `device` in namespace `ns`, within `bounds`.
pub fn send(
    ns: &str,
    device: &str,
    frames: &mut (dyn Iterator<Item = Vec<u8>> + Send),
    bounds: Bounds,
) -> Result<Sent> {
    if bounds.rate_pps == 0 || bounds.within > Duration::from_secs(60) {
        return Err(Error(
            "a send needs a rate and ends within 60 s (floods are bounded)".to_owned(),
        ));
    }
    netns::within(ns, || {
        let config = AfPacketConfig {
            rx_frames: 30,
            tx_frames: 1024,
            fanout_group: None,
            promiscuous: false,
            vnet_hdr: false,
            exclude_udp_port: None,
            fanout_by_cpu: None,
        };
        let mut port = AfPacketPort::open(device, &config)
            .map_err(context(format!("AF_PACKET on {device} in {ns}")))?;
        let mut pool = PacketPool::with_capacity(BURST);
        let mut batch = Vec::with_capacity(BURST);
        let started = Instant::now();
        let mut sent = Sent::default();
        let mut exhausted = false;
        while !exhausted
            && sent.frames + sent.refused < bounds.max_frames
            && started.elapsed() < bounds.within
        {
            let due = u64::try_from(started.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .saturating_mul(bounds.rate_pps)
                / 1_000_000;
            let done = sent.frames + sent.refused;
            let burst = due
                .saturating_sub(done)
                .min(bounds.max_frames - done)
                .min(BURST as u64);
            if burst == 0 {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            for _ in 0..burst {
                let Some(frame) = frames.next() else {
                    exhausted = true;
                    break;
                };
                let Some(mut pkt) = pool.get() else { break };
                if pkt.fill(&frame) {
                    batch.push(pkt);
                } else {
                    pool.put(pkt);
                }
            }
            let queued = batch.len() as u64;
            let accepted = port
                .tx_burst(&mut batch, &mut pool)
                .map_err(context(format!("sending on {device} in {ns}")))?
                as u64;
            sent.frames += accepted;
            sent.refused += queued - accepted;
        }
        sent.elapsed = started.elapsed();
        Ok(sent)
    })
}

/// Sends each whole IPv4 packet of `packets` (header included, e.g. with a forged source or
/// an ICMP error) through the kernel of namespace `ns` (a pod: its routes and ARP pick the
/// way), one raw-socket send each, at most `max` of them.
pub fn send_ip(ns: &str, packets: &[Vec<u8>], max: usize) -> Result<usize> {
    netns::within(ns, || {
        let fd = socket(AddressFamily::INET, SocketType::RAW, Some(ipproto::RAW))
            .map_err(context(format!("raw IPv4 socket in {ns}")))?;
        let mut sent = 0;
        for packet in packets.iter().take(max) {
            let dst = packet
                .get(16..20)
                .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                .ok_or_else(|| Error("an IPv4 packet shorter than its header".to_owned()))?;
            sendto(
                fd.as_fd(),
                packet,
                SendFlags::empty(),
                &SocketAddrV4::new(dst, 0),
            )
            .map_err(context(format!("sending to {dst} in {ns}")))?;
            sent += 1;
        }
        Ok(sent)
    })
}
