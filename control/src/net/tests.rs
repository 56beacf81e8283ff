//! Tests for CIDR, port-range and MAC parsing and arithmetic, checked against hand-computed values.

use super::*;

#[test]
fn canonical_cidr_rejects_host_bits_and_names_the_network() {
    let err = Cidr::parse_canonical("10.96.0.1/12").unwrap_err();
    assert!(err.contains("host bits"), "{err}");
    assert!(err.contains("10.96.0.0/12"), "{err}");
    assert_eq!(
        Cidr::parse_lenient("10.96.0.1/12").unwrap().to_string(),
        "10.96.0.0/12"
    );
}

#[test]
fn malformed_cidrs_are_rejected() {
    for bad in [
        "10.0.0.0",
        "10.0.0.0/33",
        "10.0.0/8",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "x/8",
        "::/129",
    ] {
        assert!(Cidr::parse_lenient(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn cidr_arithmetic_matches_hand_computed_addresses() {
    let service = Cidr::parse_canonical("10.96.0.0/12").unwrap();
    assert_eq!(service.size(), 1 << 20);
    assert_eq!(service.nth(10), Some("10.96.0.10".parse().unwrap()));
    assert_eq!(
        service.nth((1 << 20) - 1),
        Some("10.111.255.255".parse().unwrap())
    );
    assert_eq!(service.nth(1 << 20), None);
    assert!(service.contains("10.111.1.1".parse().unwrap()));
    assert!(!service.contains("10.112.0.0".parse().unwrap()));
    assert!(!service.contains("::1".parse().unwrap()));
    assert_eq!(service.offset_of("10.96.1.2".parse().unwrap()), Some(258));

    let cluster = Cidr::parse_canonical("10.244.0.0/16").unwrap();
    assert_eq!(cluster.subnet_count(24), 256);
    assert_eq!(cluster.subnet(24, 3).unwrap().to_string(), "10.244.3.0/24");
    assert_eq!(cluster.subnet(24, 256), None);
    assert_eq!(cluster.subnet(8, 0), None);
}

#[test]
fn containment_and_overlap() {
    let a = Cidr::parse_canonical("10.0.0.0/8").unwrap();
    let b = Cidr::parse_canonical("10.1.0.0/16").unwrap();
    let c = Cidr::parse_canonical("11.0.0.0/8").unwrap();
    assert!(a.strictly_contains(&b));
    assert!(!a.strictly_contains(&a));
    assert!(a.overlaps(&b) && b.overlaps(&a));
    assert!(!a.overlaps(&c));
    let v6 = Cidr::parse_canonical("fd00::/64").unwrap();
    assert!(v6.contains("fd00::5".parse().unwrap()));
    assert!(!v6.overlaps(&a));
}

#[test]
fn port_range_parsing() {
    let range: PortRange = "30000-32767".parse().unwrap();
    assert_eq!(range.port_count(), 2768);
    assert!(range.contains(30000) && range.contains(32767));
    assert!(!range.contains(29999) && !range.contains(32768));
    assert!("5-1".parse::<PortRange>().is_err());
    assert!("0-10".parse::<PortRange>().is_err());
    assert!("30000".parse::<PortRange>().is_err());
}

#[test]
fn fnv1a_matches_reference_vectors() {
    // Published FNV-1a 64 test vectors.
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn derived_mac_is_stable_local_and_unicast() {
    let mac = MacAddr::derived_from_name("node-a");
    assert_eq!(mac, MacAddr::derived_from_name("node-a"));
    assert_ne!(mac, MacAddr::derived_from_name("node-b"));
    assert_eq!(mac.0[0] & 0x03, 0x02, "locally administered, unicast");
    let hash = fnv1a_64(b"node-a").to_be_bytes();
    assert_eq!(mac.0[1..], hash[1..6]);
}

#[test]
fn mac_text_round_trip() {
    let mac: MacAddr = "0a:58:0A:f4:00:01".parse().unwrap();
    assert_eq!(mac.0, [0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x01]);
    assert_eq!(mac.to_string(), "0a:58:0a:f4:00:01");
    for bad in [
        "0a:58:0a:f4:00",
        "0a:58:0a:f4:00:01:02",
        "0a-58-0a-f4-00-01",
        "zz:58:0a:f4:00:01",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad} accepted");
    }
}
