//! The OpenFlow program of one node's integration bridge in the OVS build, as text for
//! `ovs-ofctl add-flows` and `add-groups`: an ARP responder for the pods' gateway, every IP
//! packet through conntrack with NAT (which un-NATs replies), new connections to a Service
//! port sent to a select group whose buckets commit `ct(nat(dst=BACKEND))`, other new
//! connections committed as they are, then routing: local pods by address, remote pod
//! networks into the VXLAN port towards their node.
//!
//! Invariants: one conntrack zone for everything; a group per Service port with endpoints,
//! numbered from 1 in catalog order; nothing is flooded (the bridge is fail-mode secure and
//! every output names a port).

use std::fmt::Write;
use std::net::Ipv4Addr;

use super::plan::{Cluster, mac_of};
use super::services::ServiceSpec;

/// The conntrack zone of the integration bridge.
pub const ZONE: u16 = 1;

/// A pod attached to this node's bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPod {
    pub ip: Ipv4Addr,
    pub ofport: u16,
}

/// Another node's pod network and the tunnel port towards it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteNet {
    pub network: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub tunnel_ofport: u16,
}

/// What one node's program is made from.
pub struct NodeFlows<'a> {
    pub gateway: Ipv4Addr,
    pub local: &'a [LocalPod],
    pub remote: &'a [RemoteNet],
    pub services: &'a [ServiceSpec],
    pub cluster: &'a Cluster,
}

impl NodeFlows<'_> {
    /// The `add-flows` input.
    pub fn flows(&self) -> String {
        let gw = self.gateway;
        let gw_mac = mac_of(gw);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "table=0,priority=200,arp,arp_op=1,arp_tpa={gw},actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:{gw_mac},load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{gw_mac}->arp_sha,set_field:{gw}->arp_spa,IN_PORT\n\
             table=0,priority=100,ip,actions=ct(table=1,zone={ZONE},nat)\n\
             table=0,priority=0,actions=drop"
        );
        for (group, service, port) in self.groups_iter() {
            let _ = writeln!(
                out,
                "table=1,priority=100,ct_state=+new+trk,{},nw_dst={},tp_dst={},actions=group:{group}",
                port.protocol.lower(),
                service.cluster_ip,
                port.port
            );
        }
        let _ = writeln!(
            out,
            "table=1,priority=50,ct_state=+new+trk,ip,actions=ct(commit,zone={ZONE}),resubmit(,2)\n\
             table=1,priority=40,ct_state=+inv+trk,actions=drop\n\
             table=1,priority=10,actions=resubmit(,2)"
        );
        for pod in self.local {
            let _ = writeln!(
                out,
                "table=2,priority=100,ip,nw_dst={},actions=dec_ttl,mod_dl_src:{gw_mac},mod_dl_dst:{},output:{}",
                pod.ip,
                mac_of(pod.ip),
                pod.ofport
            );
        }
        for net in self.remote {
            let _ = writeln!(
                out,
                "table=2,priority=50,ip,nw_dst={}/24,actions=dec_ttl,mod_dl_src:{gw_mac},mod_dl_dst:{},output:{}",
                net.network,
                mac_of(net.gateway),
                net.tunnel_ofport
            );
        }
        out
    }

    /// The `add-groups` input (OpenFlow 1.5).
    pub fn groups(&self) -> String {
        let mut out = String::new();
        for (group, service, port) in self.groups_iter() {
            let buckets: Vec<String> = service
                .endpoints(self.cluster)
                .iter()
                .map(|endpoint| {
                    format!(
                        "bucket=weight:100,actions=ct(commit,zone={ZONE},nat(dst={endpoint}:{}),table=2)",
                        port.target
                    )
                })
                .collect();
            let _ = writeln!(out, "group_id={group},type=select,{}", buckets.join(","));
        }
        out
    }

    /// Service ports with endpoints, each with its group number.
    fn groups_iter(
        &self,
    ) -> impl Iterator<Item = (usize, &ServiceSpec, &super::services::PortSpec)> {
        self.services
            .iter()
            .filter(|s| !s.endpoints(self.cluster).is_empty())
            .flat_map(|s| s.ports.iter().map(move |p| (s, p)))
            .enumerate()
            .map(|(index, (s, p))| (index + 1, s, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::plan::planned_cluster;
    use crate::compare::services::{bench_service, bulk_service};

    #[test]
    fn service_ports_go_to_groups_whose_buckets_nat_to_each_backend() {
        let cluster = planned_cluster().unwrap();
        let services = [bench_service(), bulk_service()];
        let local = [LocalPod {
            ip: Ipv4Addr::new(10, 244, 0, 2),
            ofport: 11,
        }];
        let remote = [RemoteNet {
            network: Ipv4Addr::new(10, 244, 1, 0),
            gateway: Ipv4Addr::new(10, 244, 1, 1),
            tunnel_ofport: 101,
        }];
        let node = NodeFlows {
            gateway: Ipv4Addr::new(10, 244, 0, 1),
            local: &local,
            remote: &remote,
            services: &services,
            cluster: &cluster,
        };
        let flows = node.flows();
        assert!(flows.contains("tcp,nw_dst=10.96.100.10,tp_dst=9002,actions=group:3"));
        assert!(flows.contains("tcp,nw_dst=10.96.100.11,tp_dst=5201,actions=group:4"));
        assert!(flows.contains("nw_dst=10.244.1.0/24,actions=dec_ttl,mod_dl_src:0a:58:0a:f4:00:01,mod_dl_dst:0a:58:0a:f4:01:01,output:101"));
        assert!(flows.contains("nw_dst=10.244.0.2,actions=dec_ttl,mod_dl_src:0a:58:0a:f4:00:01,mod_dl_dst:0a:58:0a:f4:00:02,output:11"));
        let groups = node.groups();
        assert_eq!(groups.lines().count(), 4);
        let tcp = groups.lines().nth(2).unwrap();
        assert!(tcp.starts_with("group_id=3,type=select,"));
        assert!(
            tcp.contains("nat(dst=10.244.1.2:9002)") && tcp.contains("nat(dst=10.244.1.3:9002)")
        );
        assert_eq!(groups.lines().nth(3).unwrap().matches("bucket=").count(), 1);
    }
}
