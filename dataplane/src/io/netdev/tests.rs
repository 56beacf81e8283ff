//! Interface settings checked against what `ip` reports, in a throw-away namespace.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use super::*;
use crate::io::testnet::Netns;

#[test]
fn index_mtu_and_mac_match_what_ip_reports() {
    let ns = Netns::create();
    ns.ip(&[
        "link", "add", "fpd0", "type", "veth", "peer", "name", "fpd0p",
    ]);
    ns.ip(&[
        "link",
        "set",
        "fpd0",
        "address",
        "02:aa:bb:cc:dd:ee",
        "mtu",
        "1400",
    ]);
    let listed = ns.ip_output(&["-o", "link", "show", "fpd0"]);
    let listed_index: u32 = listed.split(':').next().unwrap().trim().parse().unwrap();
    ns.run(|| {
        assert_eq!(ifindex("fpd0").unwrap(), listed_index);
        assert_eq!(mtu("fpd0").unwrap(), 1400);
        assert_eq!(
            mac_address("fpd0").unwrap(),
            [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]
        );
        set_mtu("fpd0", 1280).unwrap();
    });
    assert!(
        ns.ip_output(&["link", "show", "fpd0"])
            .contains("mtu 1280 ")
    );
}

#[test]
fn set_up_brings_a_link_up() {
    let ns = Netns::create();
    ns.ip(&[
        "link", "add", "fpd1", "type", "veth", "peer", "name", "fpd1p",
    ]);
    ns.run(|| {
        assert!(!is_up("fpd1").unwrap());
        set_up("fpd1").unwrap();
        assert!(is_up("fpd1").unwrap());
    });
    let flags = ns.ip_output(&["-o", "link", "show", "fpd1"]);
    assert!(flags.contains(",UP") || flags.contains("<UP"), "{flags}");
}

#[test]
fn errors_name_the_interface_and_reject_bad_names() {
    let ns = Netns::create();
    ns.run(|| {
        let missing = ifindex("fpd-missing").unwrap_err();
        assert!(missing.to_string().contains("fpd-missing"), "{missing}");
        let too_long = mtu("a-name-longer-than-15").unwrap_err();
        assert_eq!(too_long.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(ifindex("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            ifindex("nul\0byte").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    });
}
