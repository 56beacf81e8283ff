//! Cluster-wide settings shared by every command and every node: address ranges the
//! allocators draw from, the cluster DNS address and the VXLAN parameters.
//!
//! Invariants (checked by [`ClusterSettings::validate`], which every load runs): all ranges are
//! IPv4; the node prefix is at least as long as the cluster CIDR's and leaves room for pods; the
//! cluster DNS IP lies inside the service CIDR; the VNI fits in 24 bits; the externalIP
//! allow-list (`externalIPCIDRs`, empty = externalIPs disabled) is IPv4.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::net::{Cidr, PortRange};

/// The settings file, `cluster.json` in the state directory. Absent fields take the defaults
/// of [`ClusterSettings::default`] (the ecosystem's: flannel, kubeadm, kube-proxy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Pod addresses of the whole cluster; each Node gets one sub-prefix of it.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Cidr,
    /// Prefix length of each Node's podCIDR.
    #[serde(rename = "nodeCIDRMaskSize")]
    pub node_cidr_mask_size: u8,
    /// ClusterIPs are allocated from here.
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Cidr,
    /// NodePorts and health-check node ports are allocated from here.
    #[serde(rename = "nodePortRange")]
    pub node_port_range: PortRange,
    /// `status.loadBalancer.ingress` addresses of LoadBalancer Services come from here.
    #[serde(rename = "loadBalancerPool")]
    pub load_balancer_pool: Cidr,
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
            node_cidr_mask_size: 24,
            service_cidr: cidr("10.96.0.0/12"),
            node_port_range: PortRange::new(30000, 32767).unwrap_or_else(|_| unreachable!()),
            load_balancer_pool: cidr("198.51.100.0/24"),
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
        for (name, cidr) in [
            ("clusterCIDR", self.cluster_cidr),
            ("serviceCIDR", self.service_cidr),
            ("loadBalancerPool", self.load_balancer_pool),
        ] {
            if !cidr.is_ipv4() {
                return Err(format!(
                    "{name}: {cidr} is IPv6; only IPv4 clusters are supported"
                ));
            }
        }
        let cluster_len = self.cluster_cidr.prefix_len();
        if self.node_cidr_mask_size < cluster_len || self.node_cidr_mask_size > 30 {
            return Err(format!(
                "nodeCIDRMaskSize: {} must be between the cluster CIDR's prefix length {cluster_len} and 30",
                self.node_cidr_mask_size
            ));
        }
        if self.service_cidr.prefix_len() > 28 {
            return Err(format!(
                "serviceCIDR: {} is too small (at most /28)",
                self.service_cidr
            ));
        }
        if self.cluster_cidr.overlaps(&self.service_cidr) {
            return Err(format!(
                "serviceCIDR: {} overlaps the cluster CIDR {}",
                self.service_cidr, self.cluster_cidr
            ));
        }
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
        if let Some(v6) = self.external_ip_cidrs.iter().find(|c| !c.is_ipv4()) {
            return Err(format!(
                "externalIPCIDRs: {v6} is IPv6; only IPv4 clusters are supported"
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
