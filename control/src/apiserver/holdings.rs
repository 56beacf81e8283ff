//! Who holds which allocated value: ClusterIPs, node ports, LoadBalancer IPs and pod IPs, each
//! mapped to its holder. Built once per session from the state and kept in step with every
//! object the session stores or removes, so an allocation costs a lookup, not a scan of every
//! Service or Pod.
//!
//! Invariant: after `add`/`remove` of every stored and removed object, the maps describe
//! exactly the objects in the session's state (pod IPs count only pods that are not finished;
//! several pods may hold one IP, as the seed's decoy pod does).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::model::{Object, ObjectRef, pod, service::load_balancer_ips};
use crate::state::ClusterState;

#[derive(Default)]
pub struct Holdings {
    cluster_ips: HashMap<IpAddr, ObjectRef>,
    node_ports: HashMap<i32, ObjectRef>,
    load_balancer_ips: HashMap<IpAddr, ObjectRef>,
    pod_ips: HashMap<IpAddr, BTreeSet<ObjectRef>>,
}

impl Holdings {
    pub fn build(state: &ClusterState) -> Holdings {
        let mut holdings = Holdings::default();
        for kind in [crate::model::Kind::Service, crate::model::Kind::Pod] {
            for object in state.objects_of(kind) {
                holdings.add(object);
            }
        }
        holdings
    }

    /// Records what a stored object holds.
    pub fn add(&mut self, object: &Object) {
        self.update(object, true);
    }

    /// Forgets what a removed (or replaced) object held.
    pub fn remove(&mut self, object: &Object) {
        self.update(object, false);
    }

    fn update(&mut self, object: &Object, holds: bool) {
        let key = object.object_ref();
        fn set<K: std::hash::Hash + Eq>(
            map: &mut HashMap<K, ObjectRef>,
            value: K,
            key: &ObjectRef,
            holds: bool,
        ) {
            if holds {
                map.insert(value, key.clone());
            } else if map.get(&value) == Some(key) {
                map.remove(&value);
            }
        }
        match object {
            Object::Service(service) => {
                if let Some(spec) = &service.spec {
                    let ips = spec
                        .cluster_ips
                        .iter()
                        .flatten()
                        .chain(spec.cluster_ip.iter());
                    for ip in ips.filter_map(|ip| ip.parse().ok()) {
                        set(&mut self.cluster_ips, ip, &key, holds);
                    }
                    let ports = spec.ports.iter().flatten().filter_map(|p| p.node_port);
                    for port in ports.chain(spec.health_check_node_port) {
                        set(&mut self.node_ports, port, &key, holds);
                    }
                }
                for ip in load_balancer_ips(service) {
                    set(&mut self.load_balancer_ips, ip, &key, holds);
                }
            }
            Object::Pod(p) => {
                for ip in pod::pod_ips(p) {
                    if holds && !pod::is_terminal(p) {
                        self.pod_ips.entry(ip).or_default().insert(key.clone());
                    } else if !holds && let Some(holders) = self.pod_ips.get_mut(&ip) {
                        holders.remove(&key);
                        if holders.is_empty() {
                            self.pod_ips.remove(&ip);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The Service other than `except` holding `ip` as a ClusterIP.
    pub fn cluster_ip_holder(&self, ip: IpAddr, except: &ObjectRef) -> Option<&ObjectRef> {
        self.cluster_ips.get(&ip).filter(|holder| *holder != except)
    }

    /// Whether a Service other than `except` holds the node port.
    pub fn node_port_held(&self, port: i32, except: &ObjectRef) -> bool {
        self.node_ports
            .get(&port)
            .is_some_and(|holder| holder != except)
    }

    /// Whether a Service other than `except` holds the LoadBalancer IP.
    pub fn load_balancer_ip_held(&self, ip: IpAddr, except: &ObjectRef) -> bool {
        self.load_balancer_ips
            .get(&ip)
            .is_some_and(|holder| holder != except)
    }

    /// Whether a pod other than `except` that is not finished holds the IP.
    pub fn pod_ip_held(&self, ip: IpAddr, except: &ObjectRef) -> bool {
        self.pod_ips
            .get(&ip)
            .is_some_and(|holders| holders.iter().any(|h| h != except))
    }
}
