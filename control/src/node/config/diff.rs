//! What a reload changed: the fields of two [`NodeSettings`] that differ, split into those a
//! running process applies at once (they only shape the compiled snapshot) and those that need
//! a restart (devices, workers, listeners, the flow table).
//!
//! Invariant: every field of `NodeSettings` is compared in exactly one of the two lists.

use super::NodeSettings;

impl NodeSettings {
    /// Names of the fields that differ from `other`, split into those a running process
    /// applies (they only shape the snapshot) and those that need a restart.
    pub fn changes_from(&self, other: &NodeSettings) -> (Vec<&'static str>, Vec<&'static str>) {
        let mut live = Vec::new();
        let mut restart = Vec::new();
        let local = (&self.local, &other.local);
        for (name, changed) in [
            ("ports.uplink.mac", local.0.uplink_mac != local.1.uplink_mac),
            (
                "ports.uplink.nextHopMAC",
                local.0.uplink_next_hop_mac != local.1.uplink_next_hop_mac,
            ),
            (
                "ports.uplink.peerMACs",
                local.0.peer_underlay_macs != local.1.peer_underlay_macs,
            ),
            ("overlay", local.0.overlay != local.1.overlay),
            ("mtu", local.0.underlay_mtu != local.1.underlay_mtu),
            (
                "masqueradeExempt",
                local.0.masquerade_exempt != local.1.masquerade_exempt,
            ),
            (
                "nodePortAddresses",
                local.0.node_port_addresses != local.1.node_port_addresses
                    || local.0.node_port_cidrs != local.1.node_port_cidrs,
            ),
            ("snatPorts", local.0.snat_ports != local.1.snat_ports),
            (
                "maglevTableSize",
                local.0.maglev_table_size != local.1.maglev_table_size,
            ),
            ("externalIPs", local.0.external_ips != local.1.external_ips),
            (
                "resyncInterval",
                self.resync_interval != other.resync_interval,
            ),
        ] {
            if changed {
                live.push(name);
            }
        }
        for (name, changed) in [
            ("nodeName", self.node_name != other.node_name),
            ("nodeIP", self.node_ip != other.node_ip),
            ("source", self.source != other.source),
            ("ports.uplink", self.uplink != other.uplink),
            ("ports.host", self.host != other.host),
            ("ports.pods", self.pods != other.pods),
            (
                "workers",
                self.workers != other.workers
                    || self.cores != other.cores
                    || self.per_cpu != other.per_cpu
                    || self.schedule != other.schedule,
            ),
            ("conntrack", self.conntrack != other.conntrack),
            ("admin", self.admin != other.admin),
            ("health", self.health != other.health),
            ("flowState", self.flow_state != other.flow_state),
        ] {
            if changed {
                restart.push(name);
            }
        }
        (live, restart)
    }
}
