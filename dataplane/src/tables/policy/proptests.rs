//! Property tests: verdicts do not depend on rule, policy or pod insertion order (K2), they
//! agree with a model that evaluates the union of rules over plain host numbers, CIDR
//! containment agrees with a bit-string prefix comparison, and IPv6 verdicts mirror IPv4's: a
//! table whose every peer also has its IPv6 image gives an IPv6 flow the verdict the IPv4 flow
//! gets, while IPv4 blocks never match IPv6 peers.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::flow::L4Proto;

const NAMES: [&str; 5] = ["a/web", "a/db", "b/dns", "b/all", "c/ops"];
const PODS: u8 = 3;
const HOSTS: u8 = 16;
const PORTS: u16 = 10;
const PROTOS: [L4Proto; 3] = [L4Proto::Tcp, L4Proto::Udp, L4Proto::Icmp];

/// Every address in these tests is 10.0.0.<host>; pods are the first `PODS` hosts.
fn addr(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, host)
}

#[derive(Clone, Debug)]
enum PeerSpec {
    Any,
    Pods(Vec<u8>),
    Block {
        host: u8,
        prefix: u8,
        except: Vec<(u8, u8)>,
    },
}

#[derive(Clone, Debug)]
struct RuleSpec {
    peers: Vec<PeerSpec>,
    ports: Vec<PortRange>,
    policy: usize,
}

#[derive(Clone, Debug)]
struct DirectionSpec {
    rules: Vec<RuleSpec>,
    isolated_by: Vec<usize>,
}

#[derive(Clone, Debug)]
struct PodSpec {
    ingress: Option<DirectionSpec>,
    egress: Option<DirectionSpec>,
}

fn peer_spec() -> impl Strategy<Value = PeerSpec> {
    let block_prefix = 27u8..=32;
    prop_oneof![
        Just(PeerSpec::Any),
        prop::collection::vec(0..HOSTS, 0..5).prop_map(PeerSpec::Pods),
        (
            0..HOSTS,
            block_prefix,
            prop::collection::vec((0..HOSTS, 29u8..=32), 0..3)
        )
            .prop_map(|(host, prefix, except)| PeerSpec::Block {
                host,
                prefix,
                except
            }),
    ]
}

fn port_range() -> impl Strategy<Value = PortRange> {
    let proto = prop::sample::select(vec![None, Some(L4Proto::Tcp), Some(L4Proto::Udp)]);
    (proto, 0..PORTS, 0..PORTS).prop_map(|(proto, start, end)| PortRange { proto, start, end })
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let peers = prop::collection::vec(peer_spec(), 0..3);
    let ports = prop::collection::vec(port_range(), 0..3);
    (peers, ports, 0..NAMES.len()).prop_map(|(peers, ports, policy)| RuleSpec {
        peers,
        ports,
        policy,
    })
}

fn direction_spec() -> impl Strategy<Value = Option<DirectionSpec>> {
    let isolated_by = prop::collection::vec(0..NAMES.len(), 0..3);
    prop::option::of(
        (prop::collection::vec(rule_spec(), 0..5), isolated_by)
            .prop_map(|(rules, isolated_by)| DirectionSpec { rules, isolated_by }),
    )
}

fn pod_specs() -> impl Strategy<Value = Vec<PodSpec>> {
    let pod = (direction_spec(), direction_spec())
        .prop_map(|(ingress, egress)| PodSpec { ingress, egress });
    prop::collection::vec(pod, usize::from(PODS))
}

/// A small deterministic shuffler (splitmix64) so one `u64` from proptest drives every
/// permutation of a case.
struct Shuffler(u64);

impl Shuffler {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % bound as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.next(i + 1));
        }
    }
}

/// The IPv6 image of `addr(host)`: its bits as the low 32 of 2001:db8::/96, so prefix
/// containment is preserved at `prefix + 96`.
fn addr6(host: u8) -> Ipv6Addr {
    Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(u32::from(addr(host))))
}

fn cidr6(host: u8, prefix: u8) -> crate::cidr6::Cidr6 {
    crate::cidr6::Cidr6::new(addr6(host), prefix + 96).unwrap()
}

/// The peer, and with `mirrored` its IPv6 image (a pod set holds both families' addresses).
fn build_peers(spec: &PeerSpec, mirrored: bool) -> Vec<Peer> {
    match spec {
        PeerSpec::Pods(hosts) if mirrored => {
            let set: PodSet = hosts.iter().map(|&h| addr(h)).collect();
            vec![Peer::Pods(Arc::new(
                set.with_ipv6(hosts.iter().map(|&h| addr6(h))),
            ))]
        }
        PeerSpec::Block {
            host,
            prefix,
            except,
        } if mirrored => vec![
            build_peer(spec),
            Block6::peer(
                cidr6(*host, *prefix),
                except.iter().map(|&(h, p)| cidr6(h, p)).collect(),
            ),
        ],
        _ => vec![build_peer(spec)],
    }
}

fn build_peer(spec: &PeerSpec) -> Peer {
    match spec {
        PeerSpec::Any => Peer::Any,
        PeerSpec::Pods(hosts) => Peer::Pods(Arc::new(hosts.iter().map(|&h| addr(h)).collect())),
        PeerSpec::Block {
            host,
            prefix,
            except,
        } => Peer::Block {
            cidr: Cidr::new(addr(*host), *prefix).unwrap(),
            except: except
                .iter()
                .map(|&(h, p)| Cidr::new(addr(h), p).unwrap())
                .collect(),
        },
    }
}

/// Builds the table; with a shuffler, registers policies, adds pods and lists rules and
/// isolating policies in a shuffled order.
fn build(pods: &[PodSpec], shuffler: Option<Shuffler>) -> PolicyTable {
    build_with(pods, shuffler, false)
}

/// [`build`], with every peer's IPv6 image too when `mirrored`.
fn build_with(pods: &[PodSpec], mut shuffler: Option<Shuffler>, mirrored: bool) -> PolicyTable {
    let mut builder = PolicyTable::builder();
    let mut registration: Vec<usize> = (0..NAMES.len()).collect();
    let mut pod_order: Vec<usize> = (0..pods.len()).collect();
    if let Some(shuffler) = shuffler.as_mut() {
        shuffler.shuffle(&mut registration);
        shuffler.shuffle(&mut pod_order);
    }
    let mut ids = [0; NAMES.len()];
    for index in registration {
        ids[index] = builder.add_policy(NAMES[index]);
    }
    let mut direction = |spec: &Option<DirectionSpec>| {
        let spec = spec.as_ref()?;
        let mut rules: Vec<Rule> = (spec.rules.iter())
            .map(|rule| Rule {
                peers: rule
                    .peers
                    .iter()
                    .flat_map(|p| build_peers(p, mirrored))
                    .collect(),
                ports: rule.ports.clone(),
                policy: ids[rule.policy],
            })
            .collect();
        let mut isolated_by: Vec<PolicyId> = spec.isolated_by.iter().map(|&i| ids[i]).collect();
        if let Some(shuffler) = shuffler.as_mut() {
            shuffler.shuffle(&mut rules);
            shuffler.shuffle(&mut isolated_by);
        }
        Some((rules, isolated_by))
    };
    for pod in pod_order {
        let (ingress, ingress_isolated_by) = direction(&pods[pod].ingress).unzip();
        let (egress, egress_isolated_by) = direction(&pods[pod].egress).unzip();
        let rules = PodRules {
            ingress,
            egress,
            ingress_isolated_by: ingress_isolated_by.unwrap_or_default(),
            egress_isolated_by: egress_isolated_by.unwrap_or_default(),
        };
        builder.set_pod(addr(pod as u8), rules);
    }
    builder.build()
}

/// A verdict with names for ids, comparable across tables built in different orders.
fn named(table: &PolicyTable, verdict: PolicyVerdict) -> (u8, Option<&str>) {
    match verdict {
        PolicyVerdict::NotIsolated => (0, None),
        PolicyVerdict::Allowed(id) => (1, Some(table.policy_name(id).unwrap())),
        PolicyVerdict::Denied(id) => (2, id.map(|id| table.policy_name(id).unwrap())),
    }
}

/// Every probe: (pod host, peer host, protocol, port, ingress?).
fn probes() -> impl Iterator<Item = (u8, u8, L4Proto, u16, bool)> {
    (0..PODS).flat_map(|pod| {
        (0..HOSTS).flat_map(move |peer| {
            PROTOS.into_iter().flat_map(move |proto| {
                (0..PORTS)
                    .flat_map(move |port| [true, false].map(|ing| (pod, peer, proto, port, ing)))
            })
        })
    })
}

fn check(
    table: &PolicyTable,
    (pod, peer, proto, port, ingress): (u8, u8, L4Proto, u16, bool),
) -> PolicyVerdict {
    if ingress {
        table.check_ingress(addr(pod), addr(peer), proto, port)
    } else {
        table.check_egress(addr(pod), addr(peer), proto, port)
    }
}

/// `net/prefix` contains `ip` iff their first `prefix` bits, written out, are equal.
fn bits_contain(net: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    let (net, ip) = (
        format!("{:032b}", u32::from(net)),
        format!("{:032b}", u32::from(ip)),
    );
    net[..usize::from(prefix)] == ip[..usize::from(prefix)]
}

/// The model: host numbers, bit strings and integer ranges, no table.
fn model_allows(spec: &DirectionSpec, peer: u8, proto: L4Proto, port: u16) -> bool {
    let peer_ok = |p: &PeerSpec| match p {
        PeerSpec::Any => true,
        PeerSpec::Pods(hosts) => hosts.contains(&peer),
        PeerSpec::Block {
            host,
            prefix,
            except,
        } => {
            bits_contain(addr(*host), *prefix, addr(peer))
                && except
                    .iter()
                    .all(|&(h, p)| !bits_contain(addr(h), p, addr(peer)))
        }
    };
    let port_ok = |r: &PortRange| {
        proto != L4Proto::Icmp
            && r.proto.is_none_or(|p| p == proto)
            && u32::from(r.start) <= u32::from(port)
            && u32::from(port) <= u32::from(r.end)
    };
    spec.rules.iter().any(|rule| {
        (rule.peers.is_empty() || rule.peers.iter().any(peer_ok))
            && (rule.ports.is_empty() || rule.ports.iter().any(port_ok))
    })
}

proptest! {
    #[test]
    fn verdict_is_independent_of_insertion_order(pods in pod_specs(), seed in any::<u64>()) {
        let natural = build(&pods, None);
        let shuffled = build(&pods, Some(Shuffler(seed)));
        for probe in probes() {
            let a = named(&natural, check(&natural, probe));
            let b = named(&shuffled, check(&shuffled, probe));
            prop_assert_eq!(a, b, "probe {:?}", probe);
        }
    }

    #[test]
    fn verdict_kind_agrees_with_the_union_model(pods in pod_specs()) {
        let table = build(&pods, None);
        for probe @ (pod, peer, proto, port, ingress) in probes() {
            let spec = &pods[usize::from(pod)];
            let direction = if ingress { &spec.ingress } else { &spec.egress };
            let verdict = check(&table, probe);
            match direction {
                None => prop_assert_eq!(verdict, PolicyVerdict::NotIsolated),
                Some(spec) => {
                    let allowed = matches!(verdict, PolicyVerdict::Allowed(_));
                    prop_assert_eq!(allowed, model_allows(spec, peer, proto, port), "probe {:?}", probe);
                }
            }
        }
    }

    #[test]
    fn ipv6_verdicts_mirror_ipv4_verdicts(pods in pod_specs()) {
        let table = build_with(&pods, None, true);
        let plain = build(&pods, None);
        for probe @ (pod, peer, proto, port, ingress) in probes() {
            let six = if ingress {
                table.check_ingress6(addr(pod), addr6(peer), proto, port)
            } else {
                table.check_egress6(addr(pod), addr6(peer), proto, port)
            };
            let four = check(&table, probe);
            prop_assert_eq!(named(&table, six), named(&table, four), "probe {:?}", probe);
            // The IPv6 images change nothing for IPv4.
            prop_assert_eq!(named(&table, four), named(&plain, check(&plain, probe)));
            // Without them, an IPv6 peer matches only `Any` peers and rules without peers.
            let spec = &pods[usize::from(pod)];
            let direction = if ingress { &spec.ingress } else { &spec.egress };
            let unmirrored = if ingress {
                plain.check_ingress6(addr(pod), addr6(peer), proto, port)
            } else {
                plain.check_egress6(addr(pod), addr6(peer), proto, port)
            };
            if let Some(spec) = direction {
                let only_any = DirectionSpec {
                    rules: spec
                        .rules
                        .iter()
                        .map(|r| RuleSpec {
                            peers: r
                                .peers
                                .iter()
                                .map(|p| match p {
                                    PeerSpec::Any => PeerSpec::Any,
                                    _ => PeerSpec::Pods(Vec::new()),
                                })
                                .collect(),
                            ..r.clone()
                        })
                        .collect(),
                    isolated_by: spec.isolated_by.clone(),
                };
                let allowed = matches!(unmirrored, PolicyVerdict::Allowed(_));
                prop_assert_eq!(allowed, model_allows(&only_any, peer, proto, port), "probe {:?}", probe);
            } else {
                prop_assert_eq!(unmirrored, PolicyVerdict::NotIsolated);
            }
        }
    }

    #[test]
    fn cidr_contains_agrees_with_bit_prefix(addr in any::<u32>(), prefix in 0u8..=32, ip in any::<u32>(), flip in 0u32..32) {
        let (addr, ip) = (Ipv4Addr::from(addr), Ipv4Addr::from(ip));
        let block = Cidr::new(addr, prefix).unwrap();
        prop_assert_eq!(block.contains(ip), bits_contain(addr, prefix, ip));
        // An address one bit away from the network: inside iff the bit is a host bit.
        let near = Ipv4Addr::from(u32::from(addr) ^ (1 << flip));
        prop_assert_eq!(block.contains(near), 31 - flip >= u32::from(prefix));
        prop_assert_eq!(block.to_string().parse::<Cidr>(), Ok(block));
    }
}
