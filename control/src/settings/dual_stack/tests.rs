use super::*;
use crate::settings::ClusterSettings;

/// Today's file, as `init` wrote it before dual-stack existed.
const IPV4_FILE: &str = r#"{
  "clusterCIDR": "10.244.0.0/16",
  "nodeCIDRMaskSize": 24,
  "serviceCIDR": "10.96.0.0/12",
  "nodePortRange": "30000-32767",
  "loadBalancerPool": "198.51.100.0/24",
  "clusterDNS": "10.96.0.10",
  "clusterDomain": "cluster.local",
  "vxlanVNI": 1,
  "vxlanPort": 8472,
  "externalIPCIDRs": []
}
"#;

const DUAL: &str = r#"{"secondaryClusterCIDR":"fd00:10:244::/56","secondaryServiceCIDR":"fd00:10:96::/108","secondaryLoadBalancerPool":"2001:db8:51::/120"}"#;

const IPV6_ONLY: &str = r#"{"clusterCIDR":"fd00:10:244::/56","serviceCIDR":"fd00:10:96::/108","clusterDNS":"fd00:10:96::a","loadBalancerPool":"2001:db8:51::/120"}"#;

#[test]
fn an_ipv4_file_of_today_loads_unchanged_and_is_written_back_byte_for_byte() {
    let settings = ClusterSettings::from_json(IPV4_FILE.as_bytes()).unwrap();
    assert_eq!(settings, ClusterSettings::default());
    assert_eq!(String::from_utf8(settings.to_json()).unwrap(), IPV4_FILE);
    assert_eq!(settings.families(), vec![IpFamily::IPv4]);
    assert!(!settings.is_dual_stack());
}

#[test]
fn dual_stack_lists_both_families_primary_first() {
    let settings = ClusterSettings::from_json(DUAL.as_bytes()).unwrap();
    assert_eq!(settings.families(), vec![IpFamily::IPv4, IpFamily::IPv6]);
    assert!(settings.is_dual_stack());
    assert_eq!(
        settings
            .service_cidr_of(IpFamily::IPv6)
            .unwrap()
            .to_string(),
        "fd00:10:96::/108"
    );
    assert_eq!(settings.node_cidr_mask_size_of(IpFamily::IPv6), 64);
    assert_eq!(
        settings
            .load_balancer_pool_of(IpFamily::IPv6)
            .unwrap()
            .to_string(),
        "2001:db8:51::/120"
    );
    let again = ClusterSettings::from_json(&settings.to_json()).unwrap();
    assert_eq!(again, settings);
}

#[test]
fn ipv6_primary_dual_stack_and_ipv6_only_are_valid() {
    let ipv6_primary = r#"{"clusterCIDR":"fd00:10:244::/56","secondaryClusterCIDR":"10.244.0.0/16","serviceCIDR":"fd00:10:96::/108","secondaryServiceCIDR":"10.96.0.0/12","clusterDNS":"fd00:10:96::a","loadBalancerPool":"2001:db8:51::/120","secondaryLoadBalancerPool":"198.51.100.0/24","nodeCIDRMaskSizeIPv6":64}"#;
    let settings = ClusterSettings::from_json(ipv6_primary.as_bytes()).unwrap();
    assert_eq!(settings.families(), vec![IpFamily::IPv6, IpFamily::IPv4]);
    assert_eq!(settings.primary_family(), IpFamily::IPv6);
    let settings = ClusterSettings::from_json(IPV6_ONLY.as_bytes()).unwrap();
    assert_eq!(settings.families(), vec![IpFamily::IPv6]);
    assert_eq!(settings.cluster_cidr_of(IpFamily::IPv4), None);
}

#[test]
fn bad_per_family_settings_name_the_setting() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"secondaryClusterCIDR":"10.0.0.0/16","secondaryServiceCIDR":"fd00::/108"}"#,
            "secondaryClusterCIDR: 10.0.0.0/16 is IPv4, the same family as clusterCIDR",
        ),
        (
            r#"{"secondaryServiceCIDR":"fd00:10:96::/108"}"#,
            "the Service ranges (10.96.0.0/12,fd00:10:96::/108) are IPv4,IPv6 but the cluster (pod) ranges (10.244.0.0/16) are IPv4",
        ),
        (
            r#"{"secondaryClusterCIDR":"fd00:10:244::/56","secondaryServiceCIDR":"fd00:10:96::/64"}"#,
            "secondaryServiceCIDR: fd00:10:96::/64 is too large; for 128-bit addresses, the mask must be >= 108",
        ),
        (
            r#"{"secondaryClusterCIDR":"fd00:10:244::/56","secondaryServiceCIDR":"fd00:10:244::/108"}"#,
            "secondaryServiceCIDR: fd00:10:244::/108 overlaps the cluster CIDR fd00:10:244::/56",
        ),
        (
            r#"{"secondaryClusterCIDR":"fd00:10:244::/56","secondaryServiceCIDR":"fd00:10:96::/108","nodeCIDRMaskSizeIPv6":80}"#,
            "nodeCIDRMaskSizeIPv6: 80 is more than 16 bits longer",
        ),
        (
            r#"{"secondaryClusterCIDR":"fd00:10:244::/56","secondaryServiceCIDR":"fd00:10:96::/108","nodeCIDRMaskSizeIPv6":48}"#,
            "nodeCIDRMaskSizeIPv6: 48 must be between the IPv6 cluster CIDR's prefix length 56 and 126",
        ),
        (
            r#"{"nodeCIDRMaskSizeIPv6":64}"#,
            "nodeCIDRMaskSizeIPv6: 64 is set but this cluster has no IPv6 pod range",
        ),
        (
            r#"{"clusterCIDR":"fd00:10:244::/56","serviceCIDR":"fd00:10:96::/108","clusterDNS":"fd00:10:96::a"}"#,
            "loadBalancerPool: 198.51.100.0/24 is IPv4 but this cluster has no IPv4 ranges (it is IPv6)",
        ),
        (
            r#"{"clusterCIDR":"fd00:10:244::/56","serviceCIDR":"fd00:10:96::/108","clusterDNS":"fd00:10:96::a","loadBalancerPool":"2001:db8::/120","nodeCIDRMaskSize":16}"#,
            "nodeCIDRMaskSize: 16 applies to the IPv4 pod range and this cluster has none",
        ),
        (
            r#"{"clusterCIDR":"fd00:10:244::/56","serviceCIDR":"fd00:10:96::/108","loadBalancerPool":"2001:db8::/120"}"#,
            "clusterDNS: 10.96.0.10 is outside the service CIDR fd00:10:96::/108",
        ),
        (
            r#"{"externalIPCIDRs":["2001:db8::/64"]}"#,
            "externalIPCIDRs: 2001:db8::/64 is IPv6 but this cluster has no IPv6 ranges (it is IPv4)",
        ),
        (
            r#"{"secondaryLoadBalancerPool":"2001:db8::/120"}"#,
            "secondaryLoadBalancerPool: 2001:db8::/120 is IPv6 but this cluster has no IPv6 ranges",
        ),
    ];
    for (json, expected) in cases {
        let err = ClusterSettings::from_json(json.as_bytes()).unwrap_err();
        assert!(
            err.contains(expected),
            "{json}: got {err:?}, want {expected:?}"
        );
    }
}
