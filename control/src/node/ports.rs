//! The port manager: which local pod sits on which [`PortId`], and the devices behind it.
//!
//! At every sync the Syncer asks for the port assignments of the state it is about to compile
//! ([`PortManager::assignments`]); the manager opens the device of each new local pod (one per
//! worker), sends [`WorkerCommand::Attach`] to every worker, and only then lists the pod, so a
//! published snapshot references only ports whose devices exist. A pod that left the node is
//! left out of the assignments at once and detached only after the snapshot without it was
//! published ([`PortManager::after_publish`]).
//!
//! Invariants:
//! - A pod keeps its PortId for as long as it is local; an id is never handed out while a pod
//!   holds it or its detach is still pending.
//! - A pod whose interface cannot be opened yet (the CNI has not created it) is left out and
//!   retried ([`PortManager::has_pending`]); it never blocks the other pods.
//! - A pod the CNI plugin attached (the node's [`Registry`]) is local whether or not the state
//!   lists it, at the recorded IP until the state says otherwise; its device is where the
//!   record says; its hostPorts go into the assignments. Why its port cannot be opened is
//!   noted in the registry for the plugin's answer.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use arc_swap::ArcSwap;
use dataplane::io::af_packet::AfPacketConfig;
use dataplane::packet::PortId;
use dataplane::worker::WorkerCommand;

use super::attachments::Registry;
use super::config::{PodBackend, XdpModeKind};
use super::devices::{self, Device, NodePort};
use super::health::HealthService;
use super::log;
use super::naming::pod_interface_name;
use super::netns::{self, Wanted};
use super::observe::Observers;
use super::pod_cidr_file::PodCidrFile;
use crate::cni::attach::{DeviceKind, PodAttachment};
use crate::compile::host_ports::PodHostPort;
use crate::compile::node::pod_mac;
use crate::compile::ports::{FIRST_POD_PORT, local_pods};
use crate::compile::{HOST_PORT, PortAssignments, UPLINK_PORT};
use crate::state::ClusterState;

/// What a port is called in metrics, `/stats` and `capture --port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortLabel {
    /// `uplink`, `host`, or the pod's `namespace/name`.
    pub name: String,
    pub interface: String,
}

/// Labels of the ports that have devices, by port number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortNames(pub BTreeMap<u16, PortLabel>);

impl PortNames {
    pub fn label(&self, port: PortId) -> Option<&PortLabel> {
        self.0.get(&port.0)
    }

    /// The port whose name or interface is `query`.
    pub fn find(&self, query: &str) -> Option<PortId> {
        self.0
            .iter()
            .find(|(_, l)| l.name == query || l.interface == query)
            .map(|(p, _)| PortId(*p))
    }
}

struct AttachedPod {
    port: PortId,
    /// The interface as found or created (the CNI may rename it later).
    interface: String,
    mac: [u8; 6],
    /// The namespace the TAP was found in, when not the node's.
    netns: Option<PathBuf>,
}

pub struct PortManager {
    node: String,
    backend: PodBackend,
    netns_dir: PathBuf,
    workers: Vec<Sender<WorkerCommand<NodePort>>>,
    observers: Arc<Observers>,
    pod_mtu: u16,
    attached: BTreeMap<String, AttachedPod>,
    /// Pods whose interface could not be opened, with the error.
    pending: BTreeMap<String, String>,
    detaching: Vec<AttachedPod>,
    names: Arc<ArcSwap<PortNames>>,
    base_names: PortNames,
    health: Arc<ArcSwap<Vec<HealthService>>>,
    /// The [`ClusterState::services_version`] `health` was computed from.
    health_of: Option<u64>,
    pod_cidr_file: Option<PodCidrFile>,
    records: Option<Arc<Registry>>,
}

/// What the port manager needs to know about the node.
pub struct PodPorts<'a> {
    pub node: &'a str,
    pub backend: PodBackend,
    /// Searched for pod TAPs that live in a pod namespace.
    pub netns_dir: &'a std::path::Path,
    /// MTU of TAPs the manager creates.
    pub pod_mtu: u16,
    pub uplink_interface: &'a str,
    pub host_interface: Option<&'a str>,
    /// Where the node's podCIDR is published for the CNI plugin.
    pub pod_cidr_file: Option<PathBuf>,
}

impl PortManager {
    pub fn new(
        node: &PodPorts<'_>,
        workers: Vec<Sender<WorkerCommand<NodePort>>>,
        observers: Arc<Observers>,
    ) -> PortManager {
        let PodPorts {
            node: name,
            backend,
            netns_dir,
            pod_mtu,
            uplink_interface,
            host_interface,
            ref pod_cidr_file,
        } = *node;
        let mut base = BTreeMap::new();
        base.insert(
            UPLINK_PORT.0,
            PortLabel {
                name: "uplink".to_owned(),
                interface: uplink_interface.to_owned(),
            },
        );
        if let Some(host) = host_interface {
            base.insert(
                HOST_PORT.0,
                PortLabel {
                    name: "host".to_owned(),
                    interface: host.to_owned(),
                },
            );
        }
        let base_names = PortNames(base);
        PortManager {
            node: name.to_owned(),
            backend,
            netns_dir: netns_dir.to_path_buf(),
            workers,
            observers,
            pod_mtu,
            attached: BTreeMap::new(),
            pending: BTreeMap::new(),
            detaching: Vec::new(),
            names: Arc::new(ArcSwap::from_pointee(base_names.clone())),
            base_names,
            health: Arc::new(ArcSwap::from_pointee(Vec::new())),
            health_of: None,
            pod_cidr_file: pod_cidr_file.clone().map(PodCidrFile::new),
            records: None,
        }
    }

    /// Treats the pods of `records` (attached by the CNI plugin) as local.
    pub fn with_records(mut self, records: Arc<Registry>) -> PortManager {
        self.records = Some(records);
        self
    }

    /// The port labels, kept current for the admin endpoint.
    pub fn names(&self) -> Arc<ArcSwap<PortNames>> {
        Arc::clone(&self.names)
    }

    /// The health-checked Services of the last state seen.
    pub fn health_services(&self) -> Arc<ArcSwap<Vec<HealthService>>> {
        Arc::clone(&self.health)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The assignments for `state`: opens and attaches new local pods first.
    pub fn assignments(&mut self, state: &ClusterState) -> PortAssignments {
        // Walks every Service: only when one changed.
        let version = state.services_version();
        if self.health_of != Some(version) {
            self.health
                .store(Arc::new(super::health::services_of(state)));
            self.health_of = Some(version);
        }
        if let Some(file) = &mut self.pod_cidr_file {
            file.update(state, &self.node);
        }
        let mut local: BTreeMap<String, Ipv4Addr> = local_pods(state, &self.node)
            .map(|(key, _, ip)| (key, ip))
            .collect();
        if let Some(records) = &self.records {
            for pod in records.prune_gone() {
                log::info(format_args!(
                    "pod {pod}: its network namespace is gone; attachment record dropped"
                ));
            }
        }
        let recorded: BTreeMap<String, PodAttachment> = self
            .records
            .as_ref()
            .map(|r| r.pods())
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.pod_key(), r))
            .collect();
        let mut attached_ips = BTreeMap::new();
        for (key, record) in &recorded {
            if !local.contains_key(key) {
                local.insert(key.clone(), record.ip);
                attached_ips.insert(key.clone(), record.ip);
            }
        }
        let gone: Vec<String> = self
            .attached
            .keys()
            .filter(|k| !local.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(pod) = self.attached.remove(&key) {
                log::info(format_args!(
                    "pod {key} left the node; port {} detaches after the next publication",
                    pod.port.0
                ));
                self.detaching.push(pod);
            }
        }
        self.pending.retain(|key, _| local.contains_key(key));
        let new: Vec<(String, Ipv4Addr)> = local
            .iter()
            .filter(|(k, _)| !self.attached.contains_key(*k))
            .map(|(k, ip)| (k.clone(), *ip))
            .collect();
        self.attach_new(&new, &recorded);
        let mut assignments = PortAssignments::new();
        for (key, ip) in attached_ips {
            assignments.attached_ip(&key, ip);
        }
        for (key, record) in &recorded {
            if !self.attached.contains_key(key) {
                continue;
            }
            let ip = local.get(key).copied().unwrap_or(record.ip);
            for mapping in &record.host_ports {
                assignments.host_port(PodHostPort {
                    pod: key.clone(),
                    ip,
                    mapping: *mapping,
                });
            }
        }
        let mut names = self.base_names.clone();
        for (key, pod) in &self.attached {
            assignments.assign(key, pod.port);
            names.0.insert(
                pod.port.0,
                PortLabel {
                    name: key.clone(),
                    interface: pod.interface.clone(),
                },
            );
        }
        self.names.store(Arc::new(names));
        assignments
    }

    fn attach_new(
        &mut self,
        pods: &[(String, Ipv4Addr)],
        recorded: &BTreeMap<String, PodAttachment>,
    ) {
        if pods.is_empty() {
            return;
        }
        let wanted: Vec<Wanted> = pods
            .iter()
            .map(|(key, ip)| {
                let (ns, name) = key.split_once('/').unwrap_or(("", key));
                Wanted {
                    name: pod_interface_name(ns, name),
                    mac: pod_mac(*ip).0,
                }
            })
            .collect();
        // TAPs the CNI moved into pod namespaces (and maybe renamed): a restart finds them
        // there, by name or by the pod's MAC.
        let mut elsewhere: BTreeMap<usize, (PathBuf, String)> = BTreeMap::new();
        if self.backend == PodBackend::Tap {
            let mut missing: Vec<usize> = (0..wanted.len())
                .filter(|i| dataplane::io::netdev::ifindex(&wanted[*i].name).is_err())
                .collect();
            // A recorded TAP is where the plugin said: the pod's namespace, as `ifname`.
            missing.retain(|&index| {
                match recorded
                    .get(&pods[index].0)
                    .filter(|r| r.device == DeviceKind::Tap)
                {
                    Some(record) => {
                        elsewhere
                            .insert(index, (PathBuf::from(&record.netns), record.ifname.clone()));
                        false
                    }
                    None => true,
                }
            });
            if !missing.is_empty() {
                for (index, netns, name) in netns::locate(&self.netns_dir, &wanted) {
                    if missing.contains(&index) {
                        elsewhere.insert(index, (netns, name));
                    }
                }
            }
        }
        for (index, (key, _)) in pods.iter().enumerate() {
            let key = key.clone();
            let Some(port) = self.free_port() else {
                self.pending.insert(key, "no free port number".to_owned());
                continue;
            };
            let (netns, interface) = match elsewhere.remove(&index) {
                Some((netns, name)) => (Some(netns), name),
                None => (None, wanted[index].name.clone()),
            };
            match self.open(&interface, netns.as_deref(), port) {
                Ok(devices) => {
                    for (sender, device) in self.workers.iter().zip(devices) {
                        // A worker that is gone is being stopped; nothing to attach to.
                        let _ = sender.send(WorkerCommand::Attach(port, device));
                    }
                    self.pending.remove(&key);
                    if let Some(records) = self.records.as_ref().filter(|r| r.holds(&key)) {
                        records.set_failure(&key, None);
                    }
                    log::info(format_args!(
                        "pod {key} on port {} ({interface}{})",
                        port.0,
                        netns
                            .as_ref()
                            .map(|n| format!(" in {}", n.display()))
                            .unwrap_or_default()
                    ));
                    self.attached.insert(
                        key,
                        AttachedPod {
                            port,
                            interface,
                            mac: wanted[index].mac,
                            netns,
                        },
                    );
                }
                Err(error) => {
                    let message = error.to_string();
                    if self.pending.get(&key) != Some(&message) {
                        log::warn(format_args!(
                            "pod {key}: cannot open {interface} yet ({message}); retrying"
                        ));
                    }
                    if let Some(records) = self.records.as_ref().filter(|r| r.holds(&key)) {
                        records.set_failure(&key, Some(format!("opening {interface}: {message}")));
                    }
                    self.pending.insert(key, message);
                }
            }
        }
    }

    fn open(
        &self,
        interface: &str,
        netns: Option<&std::path::Path>,
        port: PortId,
    ) -> io::Result<Vec<NodePort>> {
        let count = self.workers.len();
        let devices: Vec<Device> = match self.backend {
            PodBackend::Tap => {
                let (devices, created) = devices::open_tap(interface, count, netns)?;
                if created {
                    dataplane::io::netdev::set_mtu(interface, u32::from(self.pod_mtu))?;
                }
                devices
            }
            PodBackend::AfPacket => devices::open_af_packet(
                interface,
                count,
                devices::fanout_group(port),
                AfPacketConfig::default().rx_frames,
                true,
            )?,
            // Generic XDP: a veth has no zero-copy to gain from native mode, and native XDP
            // on a veth also needs as many receive queues as its peer has transmit queues.
            PodBackend::AfXdp => devices::open_af_xdp(interface, count, XdpModeKind::Generic)?,
        };
        Ok(devices
            .into_iter()
            .map(|d| NodePort::new(d, port, Arc::clone(&self.observers)))
            .collect())
    }

    /// The lowest pod port no pod holds and no pending detach still uses.
    fn free_port(&self) -> Option<PortId> {
        let used: BTreeSet<u16> = self
            .attached
            .values()
            .chain(&self.detaching)
            .map(|p| p.port.0)
            .collect();
        (FIRST_POD_PORT..=u16::MAX)
            .find(|p| !used.contains(p))
            .map(PortId)
    }

    /// Detaches the pods the published snapshot no longer has, and deletes their TAPs.
    pub fn after_publish(&mut self) {
        for pod in std::mem::take(&mut self.detaching) {
            for sender in &self.workers {
                let _ = sender.send(WorkerCommand::Detach(pod.port));
            }
            if self.backend == PodBackend::Tap {
                self.release_tap(&pod);
            }
        }
    }

    /// Deletes a removed pod's persistent TAP, wherever the CNI moved it since.
    fn release_tap(&self, pod: &AttachedPod) {
        let here = pod.netns.is_some() || dataplane::io::netdev::ifindex(&pod.interface).is_ok();
        let place = if here {
            Some((pod.netns.clone(), pod.interface.clone()))
        } else {
            let wanted = [Wanted {
                name: pod.interface.clone(),
                mac: pod.mac,
            }];
            netns::locate(&self.netns_dir, &wanted)
                .into_iter()
                .next()
                .map(|(_, netns, name)| (Some(netns), name))
        };
        if let Some((netns, name)) = place
            && let Err(error) = devices::release_tap(&name, netns.as_deref())
        {
            log::warn(format_args!(
                "deleting TAP {name} of a removed pod: {error}"
            ));
        }
    }
}
