//! Compiled NetworkPolicy rules: peers, port ranges, and how one rule matches one flow.
//!
//! The control plane has already resolved selectors to pod IPs and named ports to numbers for
//! the destination pod, so everything here is plain addresses and numbers.
//!
//! Invariants:
//! - A rule matches iff (its peers are empty or any peer matches) and (its ports are empty or
//!   any port range matches). Empty means "any", never "none".
//! - A port range never matches ICMP, whatever its `proto`: ICMP has no ports, so a rule that
//!   lists ports cannot allow ICMP, and a rule without ports allows it.
//! - `except` narrows its own block only ("allow X but not Y"); it denies nothing that another
//!   peer or rule allows.
//! - Matching allocates nothing and takes no locks; a [`PodSet`] lookup is one hash probe.
//! - Families never mix: an IPv4 block matches only IPv4 addresses and an IPv6 block
//!   (`Block6`) only IPv6 ones, as upstream's ipBlock does; a pod-set peer holds both families'
//!   addresses of the selected pods; `Any` matches both.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::cidr::Cidr;
use crate::cidr6::Cidr6;
use crate::flow::L4Proto;

/// Index into a policy table's policy names (see [`super::PolicyTable::policy_name`]).
pub type PolicyId = u32;

/// One `from` / `to` entry of a rule.
#[derive(Clone, Debug)]
pub enum Peer {
    /// Any address (a selector that selects everything, or `{}` in both selectors' places).
    Any,
    /// The pods a selector resolved to, by IP. Shared between the rules that use the selector.
    Pods(Arc<PodSet>),
    /// An `ipBlock`: addresses in `cidr` and in none of `except`.
    Block { cidr: Cidr, except: Vec<Cidr> },
    /// An IPv6 `ipBlock` (boxed: `Peer` keeps the size IPv4 rules had).
    Block6(Box<Block6>),
}

/// An IPv6 `ipBlock`: IPv6 addresses in `cidr` and in none of `except`.
#[derive(Clone, Debug)]
pub struct Block6 {
    pub cidr: Cidr6,
    pub except: Vec<Cidr6>,
}

impl Block6 {
    /// The peer for this block.
    pub fn peer(cidr: Cidr6, except: Vec<Cidr6>) -> Peer {
        Peer::Block6(Box::new(Self { cidr, except }))
    }
}

impl Peer {
    /// Whether the remote address `ip` is this peer.
    #[inline]
    pub fn matches(&self, ip: Ipv4Addr) -> bool {
        match self {
            Self::Any => true,
            Self::Pods(pods) => pods.contains(ip),
            Self::Block { cidr, except } => {
                cidr.contains(ip) && !except.iter().any(|hole| hole.contains(ip))
            }
            Self::Block6(_) => false,
        }
    }

    /// Whether the remote IPv6 address `ip` is this peer.
    #[inline]
    pub fn matches6(&self, ip: Ipv6Addr) -> bool {
        match self {
            Self::Any => true,
            Self::Pods(pods) => pods.contains6(ip),
            Self::Block { .. } => false,
            Self::Block6(block) => {
                block.cidr.contains(ip) && !block.except.iter().any(|hole| hole.contains(ip))
            }
        }
    }
}

/// A set of pod IPs, built once and then only read. Membership is one hash probe (foldhash with
/// a per-process seed, since the probed address comes from a packet).
#[derive(Clone, Default)]
pub struct PodSet {
    ips: foldhash::HashSet<u32>,
    /// The same pods' IPv6 addresses (dual-stack pods).
    ips6: foldhash::HashSet<u128>,
}

impl PodSet {
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.ips.contains(&u32::from(ip))
    }

    #[inline]
    pub fn contains6(&self, ip: Ipv6Addr) -> bool {
        self.ips6.contains(&u128::from(ip))
    }

    /// The same set with these IPv6 addresses added (the selected pods' IPv6 sides).
    pub fn with_ipv6(mut self, ips: impl IntoIterator<Item = Ipv6Addr>) -> Self {
        self.ips6.extend(ips.into_iter().map(u128::from));
        self
    }

    /// Number of distinct pod IPs (IPv4).
    pub fn len(&self) -> usize {
        self.ips.len()
    }

    /// Number of distinct pod IPv6 addresses.
    pub fn len6(&self) -> usize {
        self.ips6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.ips6.is_empty()
    }
}

impl FromIterator<Ipv4Addr> for PodSet {
    fn from_iter<I: IntoIterator<Item = Ipv4Addr>>(iter: I) -> Self {
        Self {
            ips: iter.into_iter().map(u32::from).collect(),
            ips6: foldhash::HashSet::default(),
        }
    }
}

/// Prints the size only: a selector may resolve to many thousands of pods.
impl fmt::Debug for PodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodSet").field("len", &self.len()).finish()
    }
}

/// A `ports` entry: a protocol and an inclusive port range.
///
/// `start..=end` is inclusive; a range with `start > end` matches nothing. `0..=65535` is every
/// port of the protocol. `proto: None` matches TCP, UDP and SCTP alike (the Kubernetes default of TCP
/// is applied by the control plane, not here); `Some(L4Proto::Icmp)` matches nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub proto: Option<L4Proto>,
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// One port of one protocol.
    pub fn single(proto: L4Proto, port: u16) -> Self {
        Self {
            proto: Some(proto),
            start: port,
            end: port,
        }
    }

    /// Whether a packet of `proto` to `port` falls in this range.
    #[inline]
    pub fn matches(&self, proto: L4Proto, port: u16) -> bool {
        proto != L4Proto::Icmp
            && self.proto.is_none_or(|own| own == proto)
            && (self.start..=self.end).contains(&port)
    }
}

/// One `ingress` / `egress` entry of a policy, as allowed for one pod.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Empty: any peer.
    pub peers: Vec<Peer>,
    /// Empty: any protocol and port, ICMP included.
    pub ports: Vec<PortRange>,
    /// The policy the rule comes from, reported when it allows a flow.
    pub policy: PolicyId,
}

impl Rule {
    /// Whether the rule allows a flow with remote address `peer`, protocol `proto` and the
    /// destination port `port` (ignored for ICMP).
    #[inline]
    pub fn matches(&self, peer: Ipv4Addr, proto: L4Proto, port: u16) -> bool {
        // Ports first: a few integer compares, before any set probe.
        (self.ports.is_empty() || self.ports.iter().any(|range| range.matches(proto, port)))
            && (self.peers.is_empty() || self.peers.iter().any(|p| p.matches(peer)))
    }

    /// [`Self::matches`] for an IPv6 remote address.
    #[inline]
    pub fn matches6(&self, peer: Ipv6Addr, proto: L4Proto, port: u16) -> bool {
        (self.ports.is_empty() || self.ports.iter().any(|range| range.matches(proto, port)))
            && (self.peers.is_empty() || self.peers.iter().any(|p| p.matches6(peer)))
    }
}

/// Everything the policies say about one pod.
///
/// `ingress` / `egress` decide isolation: `None` means no policy selecting the pod lists that
/// direction, so the pod is not isolated for it; `Some(rules)` (possibly empty: default deny)
/// means only flows some rule matches are allowed. The `*_isolated_by` lists name the policies
/// that isolate the pod, for messages only; they do not change any verdict.
#[derive(Clone, Debug, Default)]
pub struct PodRules {
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    pub ingress_isolated_by: Vec<PolicyId>,
    pub egress_isolated_by: Vec<PolicyId>,
}
