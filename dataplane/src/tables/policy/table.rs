//! The per-node policy table: pod IP -> compiled ingress and egress rules, plus policy names.
//!
//! Invariants:
//! - Immutable once built; a new policy state is a new table (published by the snapshot swap).
//! - The verdict is a function of the *set* of rules and names: within each direction the
//!   rules are sorted by their policy's name at build time, so the first match (the check
//!   stops there) is the matching policy with the smallest name, whatever order rules and
//!   policies were added in. `Denied` likewise names the isolating policy with the smallest name.
//! - A pod's `Option` of rules alone decides isolation; the `*_isolated_by` lists only feed
//!   `Denied`'s message.
//! - `check_*` allocates nothing: one hash probe for the pod, then a scan of its rules.
//! - Pods are keyed by their IPv4 address in both families: a dual-stack pod's IPv6 traffic
//!   is checked (`check_*6`) against the same entry, so a policy isolates a pod in both
//!   families at once, and only the peers tell the families apart.

use std::cmp::Ordering;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::rules::{PodRules, PolicyId, Rule};
use crate::flow::L4Proto;

/// What policy says about the first packet of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyVerdict {
    /// No policy isolates the pod in this direction: everything is allowed.
    NotIsolated,
    /// The pod is isolated and a rule of this policy allows the flow.
    Allowed(PolicyId),
    /// The pod is isolated and no rule allows the flow; one of the isolating policies, if the
    /// control plane named any (the legacy `DefaultDeny` namespace annotation names none).
    Denied(Option<PolicyId>),
}

/// Compiled NetworkPolicy for the pods of a node. See the module docs of `policy` for the
/// semantics.
#[derive(Debug)]
pub struct PolicyTable {
    names: Box<[Box<str>]>,
    pods: foldhash::HashMap<u32, PodEntry>,
    /// Which build this is, as flows remember it (see [`PolicyTable::epoch`]).
    epoch: u8,
}

#[derive(Debug)]
struct PodEntry {
    ingress: Option<Direction>,
    egress: Option<Direction>,
}

/// The rules of one isolated direction, sorted by policy name.
#[derive(Debug)]
struct Direction {
    rules: Box<[Rule]>,
    /// The isolating policy with the smallest name, reported on deny.
    reported_isolator: Option<PolicyId>,
}

impl Direction {
    #[inline]
    fn verdict(&self, peer: Ipv4Addr, proto: L4Proto, port: u16) -> PolicyVerdict {
        match self
            .rules
            .iter()
            .find(|rule| rule.matches(peer, proto, port))
        {
            Some(rule) => PolicyVerdict::Allowed(rule.policy),
            None => PolicyVerdict::Denied(self.reported_isolator),
        }
    }

    #[inline]
    fn verdict6(&self, peer: Ipv6Addr, proto: L4Proto, port: u16) -> PolicyVerdict {
        match self
            .rules
            .iter()
            .find(|rule| rule.matches6(peer, proto, port))
        {
            Some(rule) => PolicyVerdict::Allowed(rule.policy),
            None => PolicyVerdict::Denied(self.reported_isolator),
        }
    }
}

impl PolicyTable {
    pub fn builder() -> PolicyTableBuilder {
        PolicyTableBuilder::default()
    }

    /// This build's epoch, 1..=127: every `build` takes the next one (wrapping), starting at
    /// a point drawn from the clock, so a table adopted from a previous process rarely
    /// matches. Flows remember the epoch they were last allowed under and are re-checked on
    /// their next packet when the snapshot's differs (security review M5). A flow silent for
    /// exactly a multiple of 127 policy builds skips that re-check until the next build.
    #[inline]
    pub fn epoch(&self) -> u8 {
        self.epoch
    }

    /// Policy for a flow arriving at the local pod `dst_pod` (post-DNAT address, so a Service
    /// port has already become the target port in `dport`) from `src` (pre-SNAT address).
    /// `dport` is ignored for ICMP.
    pub fn check_ingress(
        &self,
        dst_pod: Ipv4Addr,
        src: Ipv4Addr,
        proto: L4Proto,
        dport: u16,
    ) -> PolicyVerdict {
        match self.pod(dst_pod).and_then(|entry| entry.ingress.as_ref()) {
            Some(direction) => direction.verdict(src, proto, dport),
            None => PolicyVerdict::NotIsolated,
        }
    }

    /// Policy for a flow leaving the local pod `src_pod` towards `dst` (post-DNAT: a backend
    /// pod and its target port, never a Service VIP). `dport` is ignored for ICMP.
    pub fn check_egress(
        &self,
        src_pod: Ipv4Addr,
        dst: Ipv4Addr,
        proto: L4Proto,
        dport: u16,
    ) -> PolicyVerdict {
        match self.pod(src_pod).and_then(|entry| entry.egress.as_ref()) {
            Some(direction) => direction.verdict(dst, proto, dport),
            None => PolicyVerdict::NotIsolated,
        }
    }

    /// [`Self::check_ingress`] for an IPv6 flow to the dual-stack pod whose IPv4 address (its
    /// policy key) is `dst_pod`, from the IPv6 address `src`.
    pub fn check_ingress6(
        &self,
        dst_pod: Ipv4Addr,
        src: Ipv6Addr,
        proto: L4Proto,
        dport: u16,
    ) -> PolicyVerdict {
        match self.pod(dst_pod).and_then(|entry| entry.ingress.as_ref()) {
            Some(direction) => direction.verdict6(src, proto, dport),
            None => PolicyVerdict::NotIsolated,
        }
    }

    /// [`Self::check_egress`] for an IPv6 flow from the dual-stack pod keyed `src_pod` (its
    /// IPv4 address) to the IPv6 address `dst`.
    pub fn check_egress6(
        &self,
        src_pod: Ipv4Addr,
        dst: Ipv6Addr,
        proto: L4Proto,
        dport: u16,
    ) -> PolicyVerdict {
        match self.pod(src_pod).and_then(|entry| entry.egress.as_ref()) {
            Some(direction) => direction.verdict6(dst, proto, dport),
            None => PolicyVerdict::NotIsolated,
        }
    }

    /// The name the control plane gave the policy (`namespace/name` by convention).
    pub fn policy_name(&self, id: PolicyId) -> Option<&str> {
        self.names
            .get(usize::try_from(id).ok()?)
            .map(|name| &**name)
    }

    /// Whether the pod is isolated for (ingress, egress): a policy is in force on it (K14).
    pub fn is_isolated(&self, pod: Ipv4Addr) -> (bool, bool) {
        self.pod(pod).map_or((false, false), |entry| {
            (entry.ingress.is_some(), entry.egress.is_some())
        })
    }

    /// Number of pods with an entry.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    #[inline]
    fn pod(&self, ip: Ipv4Addr) -> Option<&PodEntry> {
        self.pods.get(&u32::from(ip))
    }
}

/// Collects policy names and per-pod rules, then freezes them into a [`PolicyTable`].
#[derive(Debug, Default)]
pub struct PolicyTableBuilder {
    names: Vec<Box<str>>,
    ids: foldhash::HashMap<Box<str>, PolicyId>,
    pods: foldhash::HashMap<u32, PodRules>,
}

impl PolicyTableBuilder {
    /// Registers a policy name and returns its id; the same name always gets the same id.
    /// Ids are dense from 0 in first-registration order and stay valid in the built table.
    ///
    /// # Panics
    /// If more than `u32::MAX` distinct names are added (their storage alone would exceed 64 GiB).
    pub fn add_policy(&mut self, name: &str) -> PolicyId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let Ok(id) = PolicyId::try_from(self.names.len()) else {
            panic!("more than {} NetworkPolicy names", PolicyId::MAX);
        };
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    /// Sets the rules of the pod with address `pod`, replacing any set before.
    pub fn set_pod(&mut self, pod: Ipv4Addr, rules: PodRules) {
        self.pods.insert(u32::from(pod), rules);
    }

    /// Freezes the table. Rule ids that were not returned by [`Self::add_policy`] are kept
    /// (they still allow) but have no name and sort after all named policies.
    pub fn build(self) -> PolicyTable {
        let names = self.names.into_boxed_slice();
        let pods = self
            .pods
            .into_iter()
            .map(|(ip, rules)| {
                let entry = PodEntry {
                    ingress: compile(&names, rules.ingress, &rules.ingress_isolated_by),
                    egress: compile(&names, rules.egress, &rules.egress_isolated_by),
                };
                (ip, entry)
            })
            .collect();
        PolicyTable {
            names,
            pods,
            epoch: next_epoch(),
        }
    }
}

fn compile(
    names: &[Box<str>],
    rules: Option<Vec<Rule>>,
    isolated_by: &[PolicyId],
) -> Option<Direction> {
    let mut rules = rules?;
    rules.sort_by(|a, b| by_name(names, a.policy, b.policy));
    let reported_isolator = isolated_by
        .iter()
        .copied()
        .min_by(|&a, &b| by_name(names, a, b));
    Some(Direction {
        rules: rules.into_boxed_slice(),
        reported_isolator,
    })
}

/// Orders policy ids by name, unnamed ids last and among themselves by id. Names are unique,
/// so this is a total order on ids that does not depend on registration order.
fn by_name(names: &[Box<str>], a: PolicyId, b: PolicyId) -> Ordering {
    let name = |id: PolicyId| usize::try_from(id).ok().and_then(|i| names.get(i));
    match (name(a), name(b)) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(&b),
    }
}

/// The next policy epoch in 1..=127 (see [`PolicyTable::epoch`]). Off the packet path.
fn next_epoch() -> u8 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(start);
    (n % 127) as u8 + 1
}
