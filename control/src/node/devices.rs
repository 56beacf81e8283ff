//! The devices behind the node's ports, one per worker per port: TAP queues, AF_PACKET sockets
//! (one fanout group per port), AF_XDP sockets (one device queue per worker) or, for a VXLAN
//! uplink with `ports.uplink.vxlan: udp-socket`, an AF_PACKET socket beside a UDP tunnel
//! socket (`dataplane::io::udp_tunnel`), behind one
//! [`NodePort`] type that the workers run and that feeds packet capture.
//!
//! Invariants:
//! - Every worker holds its own device for every port it serves, so each worker can transmit
//!   on every port; receive is spread over them by the kernel (TAP queue selection, AF_PACKET
//!   fanout by flow hash, NIC RSS for AF_XDP), or with `workers.perCpu` steered to the worker
//!   on the sending CPU (`set_cpu_steering`; AF_XDP keeps RSS). Devices are opened in worker
//!   order, so worker `i` holds the `i`-th queue or socket the steering programs name.
//! - Capture costs one relaxed load per burst while nobody captures; frames are copied only
//!   for a port someone captures (see `observe`).

use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dataplane::io::af_packet::{AfPacketConfig, AfPacketPort};
use dataplane::io::af_xdp::{AfXdpConfig, AfXdpPort, XdpMode};
use dataplane::io::cpu_steering::{self, TapSteering};
use dataplane::io::tap::TapQueue;
use dataplane::io::udp_tunnel::{TunnelUplink, UdpTunnelConfig};
use dataplane::io::{PacketIo, netdev};
use dataplane::packet::{Packet, PacketPool, PortId};

use super::config::{NodeSettings, SourceSettings, UplinkBackend, UplinkVxlan, XdpModeKind};
use super::netns;
use super::observe::{Frame, Observers, wall_now};
use crate::net::MacAddr;

/// One worker's device on one port.
pub enum Device {
    Tap(TapQueue),
    AfPacket(AfPacketPort),
    /// Boxed: an XDP socket with its rings is several times larger than the others.
    AfXdp(Box<AfXdpPort>),
    /// The uplink's raw socket and its VXLAN tunnel socket (boxed: the send arena's handle
    /// and buffers).
    Tunnel(Box<TunnelUplink>),
}

/// A device as a worker runs it: the device, the port it serves, the capture hook, and what
/// the device refused of its last transmit burst (for the monitor's `tx_ring_full` events).
pub struct NodePort {
    device: Device,
    port: PortId,
    observers: Arc<Observers>,
    refused: usize,
}

impl NodePort {
    pub fn new(device: Device, port: PortId, observers: Arc<Observers>) -> NodePort {
        NodePort {
            device,
            port,
            observers,
            refused: 0,
        }
    }

    /// How many frames of the last transmit burst the device refused, as the worker counts
    /// them (all of them when the burst failed); reset to 0.
    pub fn take_refused(&mut self) -> usize {
        std::mem::take(&mut self.refused)
    }

    fn capture(&self, pkts: &[Packet]) {
        let hub = &self.observers.capture;
        if !hub.wants(self.port) {
            return;
        }
        let at = wall_now();
        let frames: Vec<Frame> = pkts
            .iter()
            .map(|p| Frame {
                at,
                data: p.data().to_vec(),
            })
            .collect();
        hub.publish(self.port, &frames);
    }
}

impl PacketIo for NodePort {
    fn rx_burst(
        &mut self,
        port: PortId,
        pool: &mut PacketPool,
        batch: &mut Vec<Packet>,
        max: usize,
    ) -> io::Result<usize> {
        let before = batch.len();
        let received = match &mut self.device {
            Device::Tap(d) => d.rx_burst(port, pool, batch, max),
            Device::AfPacket(d) => d.rx_burst(port, pool, batch, max),
            Device::AfXdp(d) => d.rx_burst(port, pool, batch, max),
            Device::Tunnel(d) => d.rx_burst(port, pool, batch, max),
        }?;
        if received > 0 && self.observers.capture.is_active() {
            self.capture(&batch[before..]);
        }
        Ok(received)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<Packet>, pool: &mut PacketPool) -> io::Result<usize> {
        if !pkts.is_empty() && self.observers.capture.is_active() {
            self.capture(pkts);
        }
        let offered = pkts.len();
        let sent = match &mut self.device {
            Device::Tap(d) => d.tx_burst(pkts, pool),
            Device::AfPacket(d) => d.tx_burst(pkts, pool),
            Device::AfXdp(d) => d.tx_burst(pkts, pool),
            Device::Tunnel(d) => d.tx_burst(pkts, pool),
        };
        self.refused = offered - sent.as_ref().map_or(0, |&n| n.min(offered));
        sent
    }

    fn poll_fd(&self) -> Option<RawFd> {
        match &self.device {
            Device::Tap(d) => d.poll_fd(),
            Device::AfPacket(d) => d.poll_fd(),
            Device::AfXdp(d) => d.poll_fd(),
            Device::Tunnel(d) => d.poll_fd(),
        }
    }

    fn accepts_gso(&self) -> bool {
        match &self.device {
            Device::Tap(d) => d.accepts_gso(),
            Device::AfPacket(d) => d.accepts_gso(),
            Device::AfXdp(d) => d.accepts_gso(),
            Device::Tunnel(d) => d.accepts_gso(),
        }
    }

    fn accepts_encapsulated_gso(&self) -> bool {
        match &self.device {
            Device::Tunnel(d) => d.accepts_encapsulated_gso(),
            _ => false,
        }
    }

    fn rx_dropped(&mut self) -> u64 {
        match &mut self.device {
            Device::Tap(d) => d.rx_dropped(),
            Device::AfPacket(d) => d.rx_dropped(),
            Device::AfXdp(d) => d.rx_dropped(),
            Device::Tunnel(d) => d.rx_dropped(),
        }
    }
}

/// One queue per worker of the multi-queue TAP `name`, created (persistent) if it does not
/// exist; inside the namespace bound at `netns` when given. Returns whether it was created.
pub fn open_tap(
    name: &str,
    workers: usize,
    netns: Option<&Path>,
) -> io::Result<(Vec<Device>, bool)> {
    let open = || {
        let existed = netdev::ifindex(name).is_ok();
        let queues = (0..workers)
            .map(|_| TapQueue::open(name))
            .collect::<io::Result<Vec<_>>>()?;
        if let Some(first) = queues.first() {
            first.set_persistent(true)?;
            steer_tap(first)?;
        }
        Ok((queues.into_iter().map(Device::Tap).collect(), !existed))
    };
    match netns {
        None => open(),
        Some(ns) => netns::run_in(ns, open),
    }
}

/// What `workers.perCpu` steers by: the workers' CPUs and the loaded TAP program; `None`
/// while the workers are not per CPU. Set once at start, before any device opens.
struct CpuSteering {
    cores: Vec<usize>,
    tap: TapSteering,
}

static CPU_STEERING: Mutex<Option<Arc<CpuSteering>>> = Mutex::new(None);

fn cpu_steering() -> Option<Arc<CpuSteering>> {
    CPU_STEERING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Makes every device opened from now on steer frames to the worker on the sending CPU
/// (worker `i` on `cores[i]`), or, with `None`, by the kernel's flow hash.
pub fn set_cpu_steering(cores: Option<&[usize]>) -> Result<(), String> {
    let steering = match cores {
        Some(cores) => Some(Arc::new(CpuSteering {
            cores: cores.to_vec(),
            tap: TapSteering::load(cores)
                .map_err(|e| format!("workers.perCpu: loading the TAP steering program: {e}"))?,
        })),
        None => None,
    };
    *CPU_STEERING.lock().unwrap_or_else(PoisonError::into_inner) = steering;
    Ok(())
}

/// Gives the TAP of `queue` the CPU steering program, or clears one a previous process left
/// on the persistent device (a kernel without TAP steering has none to clear).
fn steer_tap(queue: &TapQueue) -> io::Result<()> {
    use std::os::fd::AsFd;
    match cpu_steering() {
        Some(steering) => steering.tap.apply(queue.as_fd()),
        None => {
            let _ = cpu_steering::clear_tap(queue.as_fd());
            Ok(())
        }
    }
}

/// The fanout steering of AF_PACKET sockets opened now (`AfPacketConfig::fanout_by_cpu`).
fn fanout_by_cpu() -> Option<Vec<usize>> {
    cpu_steering().map(|s| s.cores.clone())
}

/// Deletes the persistent TAP `name` (in the namespace bound at `netns` when given) once
/// its last queue closes.
pub fn release_tap(name: &str, netns: Option<&Path>) -> io::Result<()> {
    let release = || {
        if netdev::ifindex(name).is_err() {
            return Ok(());
        }
        TapQueue::open(name)?.set_persistent(false)
    };
    match netns {
        None => release(),
        Some(ns) => netns::run_in(ns, release),
    }
}

/// RX ring frames of an uplink AF_PACKET socket: the uplink carries every pod's traffic, and
/// a TCP sender's burst from the underlay must fit while the worker is busy or descheduled
/// (512 frames overflowed under one iperf3 stream on the testbed; ~9 MiB per socket).
pub const UPLINK_RX_FRAMES: usize = 4096;

/// One AF_PACKET socket per worker on `name`, all in fanout group `group`, each with an RX
/// ring of `rx_frames` (rounded up to whole blocks); `vnet_hdr` for a pod's veth (TCP
/// super-packets in and out, `PACKET_VNET_HDR`).
pub fn open_af_packet(
    name: &str,
    workers: usize,
    group: u16,
    rx_frames: usize,
    vnet_hdr: bool,
) -> io::Result<Vec<Device>> {
    let config = AfPacketConfig {
        fanout_group: Some(group),
        rx_frames,
        vnet_hdr,
        fanout_by_cpu: fanout_by_cpu(),
        ..AfPacketConfig::default()
    };
    (0..workers)
        .map(|_| AfPacketPort::open(name, &config).map(Device::AfPacket))
        .collect()
}

/// Whether AF_XDP sockets opened from now on busy-poll (`workers.idle: busy-poll`); set once
/// at start, before any device opens.
static AF_XDP_BUSY_POLL: AtomicBool = AtomicBool::new(false);

/// Makes every AF_XDP socket opened from now on busy-poll its device (or not).
pub fn set_af_xdp_busy_poll(on: bool) {
    AF_XDP_BUSY_POLL.store(on, Ordering::Relaxed);
}

/// One AF_XDP socket per worker on `name`, worker `i` on device queue `i`.
pub fn open_af_xdp(name: &str, workers: usize, mode: XdpModeKind) -> io::Result<Vec<Device>> {
    let mode = match mode {
        XdpModeKind::Auto => XdpMode::Auto,
        XdpModeKind::Generic => XdpMode::Generic,
        XdpModeKind::Native => XdpMode::Native,
    };
    (0..workers)
        .map(|queue| {
            let config = AfXdpConfig {
                queue: u32::try_from(queue).map_err(io::Error::other)?,
                mode,
                busy_poll: AF_XDP_BUSY_POLL.load(Ordering::Relaxed),
                ..AfXdpConfig::default()
            };
            AfXdpPort::open(name, &config)
                .map(|port| Device::AfXdp(Box::new(port)))
                .map_err(|e| io::Error::new(e.kind(), format!("queue {queue}: {e}")))
        })
        .collect()
}

/// The fanout group of a port: distinct per port, and per process so that a previous
/// process's sockets still closing never join it.
pub fn fanout_group(port: PortId) -> u16 {
    (std::process::id() as u16)
        .wrapping_mul(64)
        .wrapping_add(port.0)
}

pub fn open_uplink(settings: &NodeSettings) -> Result<Vec<Device>, String> {
    let uplink = &settings.uplink;
    let n = settings.workers;
    let opened = match uplink.backend {
        UplinkBackend::AfPacket if uplink.vxlan == UplinkVxlan::UdpSocket => {
            return open_tunnel_uplink(settings);
        }
        UplinkBackend::AfPacket => open_af_packet(
            &uplink.interface,
            n,
            fanout_group(PortId(0)),
            UPLINK_RX_FRAMES,
            false,
        ),
        UplinkBackend::Tap => open_tap(&uplink.interface, n, None).map(|(d, _)| d),
        UplinkBackend::AfXdp => open_af_xdp(&uplink.interface, n, uplink.xdp_mode),
    };
    opened.map_err(|e| format!("ports.uplink.interface {}: {e}", uplink.interface))
}

/// The cluster's VXLAN port as the source will hand it to the dataplane: the kubernetes
/// source's cluster settings, or `cluster.json` of the state directory (its defaults when
/// absent).
fn vxlan_port(settings: &NodeSettings) -> Result<u16, String> {
    match &settings.source {
        SourceSettings::Kubernetes { cluster, .. } => Ok(cluster.vxlan_port),
        SourceSettings::State(dir) => crate::store::StateDir::new(dir)
            .read_settings()
            .map(|s| s.vxlan_port)
            .map_err(|e| format!("ports.uplink.vxlan udp-socket: the VXLAN port: {e}")),
    }
}

/// The VXLAN uplink through a UDP tunnel socket (`ports.uplink.vxlan: udp-socket`): per
/// worker, the raw socket (VXLAN filtered out) and a tunnel socket on nodeIP:vxlanPort. The
/// uplink's own MAC must be the dataplane's uplink MAC: the peers send VXLAN there and the
/// kernel must take it.
fn open_tunnel_uplink(settings: &NodeSettings) -> Result<Vec<Device>, String> {
    let uplink = &settings.uplink;
    let fail = |e: io::Error| format!("ports.uplink.interface {}: {e}", uplink.interface);
    let node_ip = settings
        .node_ip
        .ok_or("ports.uplink.vxlan udp-socket: nodeIP is required")?;
    let mac = settings.local.uplink_mac.map_or_else(
        || crate::compile::node::derived_mac(&settings.node_name, "uplink").0,
        |m| m.0,
    );
    let actual = netdev::mac_address(&uplink.interface).map_err(fail)?;
    if actual != mac {
        return Err(format!(
            "ports.uplink.vxlan udp-socket: {} has MAC {}, the dataplane's uplink MAC is {}: \
             the kernel receives VXLAN only at its own MAC (set one to the other)",
            uplink.interface,
            MacAddr(actual),
            MacAddr(mac)
        ));
    }
    let config = UdpTunnelConfig {
        node_ip,
        port: vxlan_port(settings)?,
        uplink_mac: mac,
    };
    let raw = AfPacketConfig {
        fanout_group: Some(fanout_group(PortId(0))),
        rx_frames: UPLINK_RX_FRAMES,
        fanout_by_cpu: fanout_by_cpu(),
        ..AfPacketConfig::default()
    };
    (0..settings.workers)
        .map(|_| {
            TunnelUplink::open(&uplink.interface, &raw, &config)
                .map(|d| Device::Tunnel(Box::new(d)))
                .map_err(fail)
        })
        .collect()
}

/// Opens the host TAP, sets its MAC if one is configured and brings it up; returns its MAC.
pub fn open_host(
    interface: &str,
    mac: Option<MacAddr>,
    workers: usize,
) -> Result<(Vec<Device>, MacAddr), String> {
    let fail = |e: io::Error| format!("ports.host.interface {interface}: {e}");
    let (devices, _) = open_tap(interface, workers, None).map_err(fail)?;
    if let Some(mac) = mac {
        crate::cni::link::set_mac(interface, mac.0)
            .map_err(|e| format!("ports.host.mac {mac}: {e}"))?;
    }
    netdev::set_up(interface).map_err(fail)?;
    let actual = MacAddr(netdev::mac_address(interface).map_err(fail)?);
    Ok((devices, actual))
}
