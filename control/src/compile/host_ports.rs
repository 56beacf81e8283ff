//! Pods' hostPorts (the CNI `portMappings` capability) as Service specs: a hostPort without a
//! hostIP is a NodePort of its own (every address NodePorts answer on), one with a hostIP an
//! external IP on that address alone; the one backend is the pod's containerPort, local, with
//! `externalTrafficPolicy: Local` semantics, so the client's address reaches the pod as the
//! reference `portmap` plugin keeps it. So hostPorts take the Service DNAT path and show in
//! `trace`, `conntrack list` and `monitor` like any Service, under the name
//! `namespace/pod:hostPort-PORT-PROTO`.
//!
//! Invariant: the spec's name changes with nothing but the pod and the host port, and its
//! specs are rebuilt at every compile (the node's record, not the state, says what they are).

use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::flow::L4Proto;
use dataplane::tables::services::{Backend, Scheduler, ServiceSpec};

use crate::cni::attach::{HostPort, Protocol};

/// One hostPort of a local pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodHostPort {
    /// `namespace/name`.
    pub pod: String,
    pub ip: Ipv4Addr,
    pub mapping: HostPort,
}

impl PodHostPort {
    /// The spec name: `namespace/pod:hostPort-8080-tcp`.
    pub fn spec_name(&self) -> String {
        format!(
            "{}:hostPort-{}-{}",
            self.pod,
            self.mapping.host_port,
            self.mapping.protocol.as_str()
        )
    }

    /// The Service spec that DNATs this hostPort to the pod.
    pub fn spec(&self) -> ServiceSpec {
        let m = &self.mapping;
        ServiceSpec {
            name: Arc::from(self.spec_name()),
            proto: match m.protocol {
                Protocol::Tcp => L4Proto::Tcp,
                Protocol::Udp => L4Proto::Udp,
            },
            port: m.host_port,
            cluster_ips: Vec::new(),
            external_ips: m.host_ip.into_iter().collect(),
            lb_ips: Vec::new(),
            node_port: m.host_ip.is_none().then_some(m.host_port),
            backends: vec![Backend {
                ip: self.ip,
                port: m.container_port,
                node_local: true,
                serving: true,
                terminating: false,
                pod: Some(Arc::from(self.pod.as_str())),
            }],
            scheduler: Scheduler::Random,
            affinity_timeout: None,
            internal_local: false,
            external_local: true,
            lb_source_ranges: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::tables::services::{Frontend, ServiceTable};

    #[test]
    fn a_host_port_answers_on_the_node_address_or_its_host_ip_only() {
        let node = Ipv4Addr::new(172, 18, 0, 2);
        let other = Ipv4Addr::new(172, 18, 0, 3);
        let any = PodHostPort {
            pod: "default/web".to_owned(),
            ip: Ipv4Addr::new(10, 244, 1, 5),
            mapping: HostPort {
                protocol: Protocol::Tcp,
                host_port: 8080,
                container_port: 80,
                host_ip: None,
            },
        };
        let pinned = PodHostPort {
            pod: "default/dns".to_owned(),
            ip: Ipv4Addr::new(10, 244, 1, 6),
            mapping: HostPort {
                protocol: Protocol::Udp,
                host_port: 5353,
                container_port: 53,
                host_ip: Some(other),
            },
        };
        let specs = [any.spec(), pinned.spec()];
        let (table, errors) = ServiceTable::build_lenient(specs.to_vec(), &[node], 65537);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(matches!(
            table.lookup(node, 8080, L4Proto::Tcp),
            Frontend::Service { .. }
        ));
        assert!(matches!(
            table.lookup(node, 8080, L4Proto::Udp),
            Frontend::NotService
        ));
        assert!(matches!(
            table.lookup(other, 5353, L4Proto::Udp),
            Frontend::Service { .. }
        ));
        assert!(matches!(
            table.lookup(node, 5353, L4Proto::Udp),
            Frontend::NotService
        ));
        assert_eq!(any.spec_name(), "default/web:hostPort-8080-tcp");
    }
}
