//! Truth tables for the policy semantics (K1-K9) and for CIDR parsing. Expected verdicts are
//! written from the Kubernetes semantics, by hand, row by row.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::*;
use crate::flow::L4Proto::{self, Icmp, Tcp, Udp};

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn pods(ips: &[&str]) -> Peer {
    Peer::Pods(Arc::new(ips.iter().map(|text| ip(text)).collect()))
}

fn block(range: &str, except: &[&str]) -> Peer {
    Peer::Block {
        cidr: cidr(range),
        except: except.iter().map(|text| cidr(text)).collect(),
    }
}

fn ports(proto: Option<L4Proto>, start: u16, end: u16) -> PortRange {
    PortRange { proto, start, end }
}

fn rule(policy: PolicyId, peers: Vec<Peer>, ports: Vec<PortRange>) -> Rule {
    Rule {
        peers,
        ports,
        policy,
    }
}

fn ingress_only(rules: Vec<Rule>, isolated_by: Vec<PolicyId>) -> PodRules {
    PodRules {
        ingress: Some(rules),
        ingress_isolated_by: isolated_by,
        ..PodRules::default()
    }
}

/// A verdict with policy names instead of ids, as a user would read it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Open,
    Allow(String),
    Deny(Option<String>),
}

fn seen(table: &PolicyTable, verdict: PolicyVerdict) -> Seen {
    let name = |id| table.policy_name(id).unwrap().to_owned();
    match verdict {
        PolicyVerdict::NotIsolated => Seen::Open,
        PolicyVerdict::Allowed(id) => Seen::Allow(name(id)),
        PolicyVerdict::Denied(id) => Seen::Deny(id.map(name)),
    }
}

fn allow(name: &str) -> Seen {
    Seen::Allow(name.to_owned())
}

fn deny(name: &str) -> Seen {
    Seen::Deny(Some(name.to_owned()))
}

/// Checks ingress rows `(dst pod, src, proto, port, expected)`.
fn assert_ingress(table: &PolicyTable, rows: &[(&str, &str, L4Proto, u16, Seen)]) {
    for (dst, src, proto, port, want) in rows {
        let got = seen(table, table.check_ingress(ip(dst), ip(src), *proto, *port));
        assert_eq!(&got, want, "ingress to {dst} from {src} {proto:?}/{port}");
    }
}

/// One pod, 10.244.0.2, isolated for ingress by the given rules; returns the table.
fn single_pod(names: &[&str], rules: impl FnOnce(&[PolicyId]) -> Vec<Rule>) -> PolicyTable {
    let mut builder = PolicyTable::builder();
    let ids: Vec<PolicyId> = names.iter().map(|name| builder.add_policy(name)).collect();
    builder.set_pod(ip("10.244.0.2"), ingress_only(rules(&ids), ids.clone()));
    builder.build()
}

const POD: &str = "10.244.0.2";

#[test]
fn cidr_contains_truth_table() {
    let rows = [
        ("0.0.0.0/0", "255.255.255.255", true),
        ("0.0.0.0/0", "0.0.0.0", true),
        ("10.0.0.0/8", "10.255.255.255", true),
        ("10.0.0.0/8", "11.0.0.0", false),
        ("10.0.0.0/8", "9.255.255.255", false),
        ("10.244.1.0/24", "10.244.1.77", true),
        ("10.244.1.0/24", "10.244.2.77", false),
        ("192.168.0.4/31", "192.168.0.5", true),
        ("192.168.0.4/31", "192.168.0.6", false),
        ("203.0.113.9/32", "203.0.113.9", true),
        ("203.0.113.9/32", "203.0.113.8", false),
    ];
    for (range, addr, want) in rows {
        assert_eq!(cidr(range).contains(ip(addr)), want, "{addr} in {range}");
    }
}

#[test]
fn cidr_new_masks_host_bits_and_rejects_prefix_over_32() {
    let masked = Cidr::new(ip("10.1.2.3"), 8).unwrap();
    assert_eq!(masked.network(), ip("10.0.0.0"));
    assert_eq!(masked.prefix(), 8);
    assert_eq!(masked, cidr("10.0.0.0/8"));
    assert_eq!(cidr("172.16.5.4/12").to_string(), "172.16.0.0/12");
    assert_eq!(
        Cidr::new(ip("1.2.3.4"), 32).unwrap().network(),
        ip("1.2.3.4")
    );
    assert_eq!(
        Cidr::new(ip("1.2.3.4"), 0).unwrap().network(),
        ip("0.0.0.0")
    );
    let err = Cidr::new(ip("10.0.0.0"), 33).unwrap_err();
    assert_eq!(err.reason(), CidrErrorReason::PrefixTooLong);
    assert_eq!(err.text(), "10.0.0.0/33");
}

#[test]
fn cidr_display_round_trips() {
    for text in ["0.0.0.0/0", "10.0.0.0/8", "10.244.3.0/24", "1.2.3.4/32"] {
        assert_eq!(cidr(text).to_string(), text);
    }
}

#[test]
fn cidr_parse_errors_name_the_text() {
    use CidrErrorReason::*;
    let rows = [
        ("10.0.0.1", MissingPrefix),
        ("", MissingPrefix),
        ("10.0.0/8", InvalidAddress),
        ("010.0.0.0/8", InvalidAddress),
        (" 10.0.0.0/8", InvalidAddress),
        ("10.0.0.256/8", InvalidAddress),
        ("fd00::/64", Ipv6),
        ("10.0.0.0/", InvalidPrefix),
        ("10.0.0.0/+8", InvalidPrefix),
        ("10.0.0.0/08", InvalidPrefix),
        ("10.0.0.0/8 ", InvalidPrefix),
        ("10.0.0.0/-1", InvalidPrefix),
        ("10.0.0.0/8/8", InvalidPrefix),
        ("10.0.0.0/33", PrefixTooLong),
        ("10.0.0.0/256", PrefixTooLong),
        ("10.0.0.0/99999999999", PrefixTooLong),
    ];
    for (text, reason) in rows {
        let err = text.parse::<Cidr>().unwrap_err();
        assert_eq!(err.reason(), reason, "{text:?}");
        assert_eq!(err.text(), text);
        assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
    }
    assert_eq!(cidr("10.0.0.0/0"), cidr("0.0.0.0/0"));
}

#[test]
fn isolation_follows_the_option_per_direction() {
    let mut builder = PolicyTable::builder();
    let deny_in = builder.add_policy("ns/deny-ingress");
    let deny_out = builder.add_policy("ns/deny-egress");
    builder.set_pod(ip("10.244.0.2"), ingress_only(vec![], vec![deny_in]));
    builder.set_pod(
        ip("10.244.0.3"),
        PodRules {
            egress: Some(vec![]),
            egress_isolated_by: vec![deny_out],
            ..PodRules::default()
        },
    );
    builder.set_pod(ip("10.244.0.4"), PodRules::default());
    let table = builder.build();
    let peer = ip("10.244.9.9");

    // (pod, ingress isolated, egress isolated)
    let rows = [
        ("10.244.0.2", true, false),
        ("10.244.0.3", false, true),
        ("10.244.0.4", false, false),
        ("10.244.0.5", false, false), // no entry at all
    ];
    for (pod, want_in, want_out) in rows {
        let pod = ip(pod);
        assert_eq!(table.is_isolated(pod), (want_in, want_out), "{pod}");
        let expect = |isolated, name| {
            if isolated { deny(name) } else { Seen::Open }
        };
        let ingress = table.check_ingress(pod, peer, Tcp, 80);
        assert_eq!(
            seen(&table, ingress),
            expect(want_in, "ns/deny-ingress"),
            "{pod}"
        );
        let egress = table.check_egress(pod, peer, Tcp, 80);
        assert_eq!(
            seen(&table, egress),
            expect(want_out, "ns/deny-egress"),
            "{pod}"
        );
    }
    assert_eq!(table.len(), 3);
    assert!(!table.is_empty());
}

#[test]
fn three_tier_store_from_the_seed() {
    let (fe1, fe2, be, db) = ("10.244.1.10", "10.244.2.11", "10.244.1.20", "10.244.2.30");
    let mut builder = PolicyTable::builder();
    let db_policy = builder.add_policy("store/db-allow-be");
    let be_policy = builder.add_policy("store/be-allow-fe");
    // The namespace is DefaultDeny (legacy annotation): every pod isolated for ingress, and
    // only fe has no policy of its own to name.
    builder.set_pod(ip(fe1), ingress_only(vec![], vec![]));
    builder.set_pod(ip(fe2), ingress_only(vec![], vec![]));
    let from_fe = rule(be_policy, vec![pods(&[fe1, fe2])], vec![]);
    builder.set_pod(ip(be), ingress_only(vec![from_fe], vec![be_policy]));
    let from_be = rule(
        db_policy,
        vec![pods(&[be])],
        vec![PortRange::single(Tcp, 6379)],
    );
    builder.set_pod(ip(db), ingress_only(vec![from_be], vec![db_policy]));
    let table = builder.build();

    assert_ingress(
        &table,
        &[
            (db, be, Tcp, 6379, allow("store/db-allow-be")),
            (db, be, Tcp, 6380, deny("store/db-allow-be")),
            (db, be, Udp, 6379, deny("store/db-allow-be")),
            (db, be, Icmp, 0, deny("store/db-allow-be")),
            (db, fe1, Tcp, 6379, deny("store/db-allow-be")), // FE never reaches around to DB
            (db, "203.0.113.5", Tcp, 6379, deny("store/db-allow-be")),
            (be, fe1, Tcp, 8080, allow("store/be-allow-fe")),
            (be, fe2, Udp, 53, allow("store/be-allow-fe")),
            (be, fe2, Icmp, 0, allow("store/be-allow-fe")),
            (be, db, Tcp, 8080, deny("store/be-allow-fe")),
            (fe1, fe2, Tcp, 80, Seen::Deny(None)), // FE never talks to another FE
            (fe2, be, Tcp, 80, Seen::Deny(None)),
        ],
    );
    for pod in [fe1, be, db] {
        assert_eq!(
            table.check_egress(ip(pod), ip(db), Tcp, 6379),
            PolicyVerdict::NotIsolated
        );
    }
}

#[test]
fn rules_of_two_policies_are_a_union() {
    let (x, y) = ("10.244.5.1", "10.244.5.2");
    let table = single_pod(&["ns/web", "ns/tls"], |ids| {
        vec![
            rule(ids[0], vec![pods(&[x])], vec![PortRange::single(Tcp, 80)]),
            rule(ids[1], vec![pods(&[y])], vec![PortRange::single(Tcp, 443)]),
        ]
    });
    assert_ingress(
        &table,
        &[
            (POD, x, Tcp, 80, allow("ns/web")),
            (POD, x, Tcp, 443, deny("ns/tls")), // smallest isolating name
            (POD, y, Tcp, 443, allow("ns/tls")),
            (POD, y, Tcp, 80, deny("ns/tls")),
            (POD, "10.244.5.3", Tcp, 80, deny("ns/tls")),
        ],
    );
}

#[test]
fn overlapping_policies_report_the_smallest_name() {
    let table = single_pod(&["ns/zz-open", "ns/aa-open"], |ids| {
        vec![rule(ids[0], vec![], vec![]), rule(ids[1], vec![], vec![])]
    });
    assert_ingress(&table, &[(POD, "1.1.1.1", Udp, 9, allow("ns/aa-open"))]);
}

#[test]
fn except_never_denies_what_another_rule_allows() {
    let table = single_pod(&["ns/wide", "ns/narrow"], |ids| {
        vec![
            rule(ids[0], vec![block("10.0.0.0/8", &["10.1.0.0/16"])], vec![]),
            rule(ids[1], vec![block("10.1.2.0/24", &[])], vec![]),
        ]
    });
    assert_ingress(
        &table,
        &[
            (POD, "10.2.0.1", Tcp, 80, allow("ns/wide")),
            (POD, "10.1.3.1", Tcp, 80, deny("ns/narrow")),
            (POD, "10.1.2.7", Tcp, 80, allow("ns/narrow")),
            (POD, "11.0.0.1", Tcp, 80, deny("ns/narrow")),
        ],
    );
    // The same within one rule: a second peer allows an excepted pod.
    let table = single_pod(&["ns/one"], |ids| {
        let peers = vec![block("10.0.0.0/8", &["10.1.0.0/16"]), pods(&["10.1.0.9"])];
        vec![rule(ids[0], peers, vec![])]
    });
    assert_ingress(
        &table,
        &[
            (POD, "10.1.0.9", Tcp, 80, allow("ns/one")),
            (POD, "10.1.0.8", Tcp, 80, deny("ns/one")),
        ],
    );
}

#[test]
fn ip_blocks_match_pod_and_node_addresses_too() {
    let table = single_pod(&["ns/private"], |ids| {
        vec![rule(ids[0], vec![block("10.0.0.0/8", &[])], vec![])]
    });
    assert_ingress(
        &table,
        &[
            (POD, "10.244.3.4", Tcp, 80, allow("ns/private")), // a pod
            (POD, "10.0.0.11", Tcp, 80, allow("ns/private")),  // a node
        ],
    );
}

#[test]
fn peer_kinds_and_empty_lists() {
    let table = single_pod(&["ns/any", "ns/nobody", "ns/star"], |ids| {
        vec![
            rule(ids[0], vec![], vec![PortRange::single(Tcp, 1)]),
            rule(ids[1], vec![pods(&[])], vec![]),
            rule(ids[2], vec![Peer::Any], vec![PortRange::single(Tcp, 2)]),
        ]
    });
    assert_ingress(
        &table,
        &[
            (POD, "198.51.100.1", Tcp, 1, allow("ns/any")),
            (POD, "198.51.100.1", Tcp, 2, allow("ns/star")),
            (POD, "198.51.100.1", Tcp, 3, deny("ns/any")), // empty pod set admits nobody
        ],
    );
}

#[test]
fn port_ranges_and_protocols() {
    let table = single_pod(&["ns/ports"], |ids| {
        let ranges = vec![
            ports(None, 8000, 8080),
            ports(Some(Udp), 53, 53),
            ports(Some(Tcp), 9000, 8999), // inverted: matches nothing
        ];
        vec![rule(ids[0], vec![], ranges)]
    });
    let d = || deny("ns/ports");
    let a = || allow("ns/ports");
    let src = "10.244.7.7";
    assert_ingress(
        &table,
        &[
            (POD, src, Tcp, 7999, d()),
            (POD, src, Tcp, 8000, a()),
            (POD, src, Udp, 8040, a()),
            (POD, src, Tcp, 8080, a()),
            (POD, src, Udp, 8081, d()),
            (POD, src, Udp, 53, a()),
            (POD, src, Tcp, 53, d()),
            (POD, src, Tcp, 9000, d()),
            (POD, src, Tcp, 8999, d()),
        ],
    );
    let table = single_pod(&["ns/all-tcp"], |ids| {
        vec![rule(ids[0], vec![], vec![ports(Some(Tcp), 0, 65535)])]
    });
    assert_ingress(
        &table,
        &[
            (POD, src, Tcp, 0, allow("ns/all-tcp")),
            (POD, src, Tcp, 65535, allow("ns/all-tcp")),
            (POD, src, Udp, 53, deny("ns/all-tcp")),
        ],
    );
}

#[test]
fn icmp_matches_only_rules_without_ports() {
    let src = "10.244.8.8";
    let with_ports = single_pod(&["ns/p"], |ids| {
        vec![rule(
            ids[0],
            vec![],
            vec![ports(None, 0, 65535), ports(Some(Icmp), 0, 65535)],
        )]
    });
    assert_ingress(
        &with_ports,
        &[
            (POD, src, Icmp, 0, deny("ns/p")),
            (POD, src, Icmp, 8, deny("ns/p")),
            (POD, src, Tcp, 8, allow("ns/p")),
        ],
    );
    let without_ports = single_pod(&["ns/q"], |ids| {
        vec![rule(ids[0], vec![pods(&[src])], vec![])]
    });
    assert_ingress(
        &without_ports,
        &[
            (POD, src, Icmp, 0, allow("ns/q")),
            (POD, "10.244.8.9", Icmp, 0, deny("ns/q")),
        ],
    );
}

#[test]
fn egress_matches_the_destination() {
    let mut builder = PolicyTable::builder();
    let dns = builder.add_policy("ns/allow-dns");
    let coredns = "10.244.0.53";
    let to_dns = rule(
        dns,
        vec![pods(&[coredns])],
        vec![PortRange::single(Udp, 53), PortRange::single(Tcp, 53)],
    );
    let rules = PodRules {
        egress: Some(vec![to_dns]),
        egress_isolated_by: vec![dns],
        ..PodRules::default()
    };
    builder.set_pod(ip(POD), rules);
    let table = builder.build();
    let check = |dst, proto, port| seen(&table, table.check_egress(ip(POD), ip(dst), proto, port));
    assert_eq!(check(coredns, Udp, 53), allow("ns/allow-dns"));
    assert_eq!(check(coredns, Tcp, 53), allow("ns/allow-dns"));
    assert_eq!(check("8.8.8.8", Udp, 53), deny("ns/allow-dns"));
    assert_eq!(check(coredns, Udp, 5353), deny("ns/allow-dns"));
    assert_eq!(
        seen(&table, table.check_ingress(ip(POD), ip("8.8.8.8"), Udp, 53)),
        Seen::Open
    );
}

#[test]
fn names_ids_and_replacement() {
    let mut builder = PolicyTable::builder();
    let first = builder.add_policy("ns/a");
    let second = builder.add_policy("ns/b");
    assert_ne!(first, second);
    assert_eq!(builder.add_policy("ns/a"), first);
    builder.set_pod(ip(POD), ingress_only(vec![], vec![first]));
    builder.set_pod(ip(POD), PodRules::default()); // replaces: no longer isolated
    let table = builder.build();
    assert_eq!(table.policy_name(first), Some("ns/a"));
    assert_eq!(table.policy_name(second), Some("ns/b"));
    assert_eq!(table.policy_name(2), None);
    assert_eq!(table.policy_name(PolicyId::MAX), None);
    assert_eq!(table.is_isolated(ip(POD)), (false, false));
    assert_eq!(table.len(), 1);
    assert!(PolicyTable::builder().build().is_empty());
}

#[test]
fn pod_set_counts_distinct_addresses() {
    let set: PodSet = [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.1")]
        .into_iter()
        .collect();
    assert_eq!(set.len(), 2);
    assert!(set.contains(ip("10.0.0.2")));
    assert!(!set.contains(ip("10.0.0.3")));
    assert!(PodSet::default().is_empty());
    assert_eq!(format!("{set:?}"), "PodSet { len: 2 }");
}
