//! Cluster-wide settings shared by every command and every node: address ranges the
//! allocators draw from, the cluster DNS address and the VXLAN parameters.
//!
//! A cluster is IPv4 single-stack (today's files), IPv6 single-stack (`clusterCIDR` and
//! `serviceCIDR` IPv6) or dual-stack (`secondaryClusterCIDR` and `secondaryServiceCIDR` of the
//! other family); the primary family is that of `clusterCIDR` and `serviceCIDR`, as the first
//! entry of upstream's `--cluster-cidr` and `--service-cluster-ip-range`. Per-family rules live
//! in [`dual_stack`].
//!
//! Invariants (checked by [`ClusterSettings::validate`], which every load runs): primary and
//! secondary ranges are of different families, the pod and Service families agree; each node
//! prefix is at least as long as its cluster CIDR's and leaves room for pods; the cluster DNS
//! IP lies inside the primary service CIDR; the VNI fits in 24 bits; at most one
//! LoadBalancer pool per family. A file without the dual-stack fields loads exactly as before
//! and is written back byte for byte the same.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::net::{Cidr, PortRange};

pub mod dual_stack;

/// The settings file, `cluster.json` in the state directory. Absent fields take the defaults
/// of [`ClusterSettings::default`] (the ecosystem's: flannel, kubeadm, kube-proxy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Pod addresses of the whole cluster, primary family; each Node gets one sub-prefix of it.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Cidr,
    /// Pod addresses of the other family in a dual-stack cluster (upstream's second
    /// `--cluster-cidr` entry); each Node gets one sub-prefix of it too.
    #[serde(
        rename = "secondaryClusterCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub secondary_cluster_cidr: Option<Cidr>,
    /// Prefix length of each Node's IPv4 podCIDR (upstream `--node-cidr-mask-size-ipv4`).
    #[serde(rename = "nodeCIDRMaskSize")]
    pub node_cidr_mask_size: u8,
    /// Prefix length of each Node's IPv6 podCIDR (upstream `--node-cidr-mask-size-ipv6`);
    /// absent means 64.
    #[serde(
        rename = "nodeCIDRMaskSizeIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_cidr_mask_size_ipv6: Option<u8>,
    /// ClusterIPs of the primary family are allocated from here.
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Cidr,
    /// ClusterIPs of the other family in a dual-stack cluster (upstream's second
    /// `--service-cluster-ip-range` entry).
    #[serde(
        rename = "secondaryServiceCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub secondary_service_cidr: Option<Cidr>,
    /// NodePorts and health-check node ports are allocated from here.
    #[serde(rename = "nodePortRange")]
    pub node_port_range: PortRange,
    /// `status.loadBalancer.ingress` addresses of LoadBalancer Services come from here.
    #[serde(rename = "loadBalancerPool")]
    pub load_balancer_pool: Cidr,
    /// LoadBalancer ingress addresses of the other family (dual-stack LoadBalancer Services
    /// get one address from each pool of their `ipFamilies`).
    #[serde(
        rename = "secondaryLoadBalancerPool",
        skip_serializing_if = "Option::is_none"
    )]
    pub secondary_load_balancer_pool: Option<Cidr>,
    /// The ClusterIP the cluster DNS Service asks for; dynamic allocation never hands it out.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns_ip: IpAddr,
    /// DNS suffix of Service names.
    #[serde(rename = "clusterDomain")]
    pub cluster_domain: String,
    /// VXLAN network identifier published in each Node's flannel backend data.
    #[serde(rename = "vxlanVNI")]
    pub vxlan_vni: u32,
    /// UDP port of the VXLAN overlay (flannel's default 8472; 4789 is the IANA port).
    #[serde(rename = "vxlanPort")]
    pub vxlan_port: u16,
    /// Ranges a Service's `spec.externalIPs` may be taken from. Empty (the default): externalIPs
    /// are refused at admission, as upstream's DenyServiceExternalIPs advises (CVE-2020-8554:
    /// any user who can create a Service could otherwise take over any address's port).
    #[serde(rename = "externalIPCIDRs")]
    pub external_ip_cidrs: Vec<Cidr>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        let cidr = |text: &str| Cidr::parse_canonical(text).unwrap_or_else(|_| unreachable!());
        ClusterSettings {
            cluster_cidr: cidr("10.244.0.0/16"),
            secondary_cluster_cidr: None,
            node_cidr_mask_size: 24,
            node_cidr_mask_size_ipv6: None,
            service_cidr: cidr("10.96.0.0/12"),
            secondary_service_cidr: None,
            node_port_range: PortRange::new(30000, 32767).unwrap_or_else(|_| unreachable!()),
            load_balancer_pool: cidr("198.51.100.0/24"),
            secondary_load_balancer_pool: None,
            cluster_dns_ip: IpAddr::from([10, 96, 0, 10]),
            cluster_domain: "cluster.local".to_owned(),
            vxlan_vni: 1,
            vxlan_port: 8472,
            external_ip_cidrs: Vec::new(),
        }
    }
}

impl ClusterSettings {
    /// Checks the invariants in the module doc; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_families()?;
        if !self.service_cidr.contains(self.cluster_dns_ip) {
            return Err(format!(
                "clusterDNS: {} is outside the service CIDR {}",
                self.cluster_dns_ip, self.service_cidr
            ));
        }
        if self.vxlan_vni == 0 || self.vxlan_vni >= 1 << 24 {
            return Err(format!(
                "vxlanVNI: {} must be between 1 and 16777215",
                self.vxlan_vni
            ));
        }
        if self.vxlan_port == 0 {
            return Err("vxlanPort: must not be 0".to_owned());
        }
        Ok(())
    }

    /// Parses and validates a settings file's contents.
    pub fn from_json(bytes: &[u8]) -> Result<ClusterSettings, String> {
        let settings: ClusterSettings = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let settings = ClusterSettings::default();
        assert_eq!(settings.validate(), Ok(()));
        let json: serde_json::Value = serde_json::from_slice(&settings.to_json()).unwrap();
        assert_eq!(json["clusterCIDR"], "10.244.0.0/16");
        assert_eq!(json["serviceCIDR"], "10.96.0.0/12");
        assert_eq!(json["nodePortRange"], "30000-32767");
        assert_eq!(json["loadBalancerPool"], "198.51.100.0/24");
        assert_eq!(json["clusterDNS"], "10.96.0.10");
    }

    #[test]
    fn partial_file_takes_defaults_for_the_rest() {
        let settings =
            ClusterSettings::from_json(br#"{"loadBalancerPool":"203.0.113.0/28"}"#).unwrap();
        assert_eq!(settings.load_balancer_pool.to_string(), "203.0.113.0/28");
        assert_eq!(
            settings.service_cidr,
            ClusterSettings::default().service_cidr
        );
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let err = ClusterSettings::from_json(br#"{"clusterDNS":"10.0.0.10"}"#).unwrap_err();
        assert!(
            err.contains("clusterDNS") && err.contains("outside"),
            "{err}"
        );
        let err = ClusterSettings::from_json(br#"{"serviceCIDR":"10.244.0.0/12"}"#).unwrap_err();
        assert!(err.contains("host bits"), "{err}");
        let err = ClusterSettings::from_json(br#"{"nodeCIDRMaskSize":8}"#).unwrap_err();
        assert!(err.contains("nodeCIDRMaskSize"), "{err}");
        let err = ClusterSettings::from_json(br#"{"serviceCidr":"10.0.0.0/16"}"#).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}
