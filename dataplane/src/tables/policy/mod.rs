//! Compiled NetworkPolicy: the per-pod allow rules the policy stage checks on the first packet
//! of each flow. Pure data: no packet bytes, no Kubernetes objects.
//!
//! The control plane resolves `podSelector` / `namespaceSelector` peers to pod IPs (never
//! hostNetwork pods), named ports to numbers for each destination pod, applies the `policyTypes`
//! defaults and the legacy `DefaultDeny` annotation, and hands over one [`PodRules`] per pod.
//!
//! # Semantics
//! - **Isolation (K1).** A pod with no entry, or whose `ingress` (`egress`) is `None`, is not
//!   isolated in that direction: [`PolicyVerdict::NotIsolated`]. `Some(rules)` isolates it, even
//!   when `rules` is empty (default deny).
//! - **Union (K2).** An isolated pod allows a flow iff *any* rule of *any* selecting policy
//!   matches. There is no deny rule, so neither rule nor policy order matters; the verdict
//!   (including which policy it names) is the same for any insertion order.
//! - **Rules (K3, K4).** A rule matches iff (its peers are empty or any peer matches) and (its
//!   ports are empty or any [`PortRange`] matches protocol and port). A range with `proto: None`
//!   matches TCP and UDP; the Kubernetes default of TCP is the control plane's to fill in.
//! - **ipBlock (K2, K9).** [`Peer::Block`] matches an address inside `cidr` and inside none of
//!   `except`. `except` only narrows its own block: another peer or rule may still allow the
//!   excepted addresses.
//! - **IPv6 (dual-stack pods).** A pod's entry is keyed by its IPv4 address and serves both
//!   families: `check_*6` judge IPv6 flows with the same rules, where [`Peer::Block6`] matches
//!   IPv6 addresses only, [`Peer::Block`] IPv4 only, and a [`PodSet`] holds the selected pods'
//!   addresses of both families.
//! - **ipBlock and pod IPs (K9, implementation-defined upstream).** Blocks match by address
//!   alone, so *pod IPs are matched by ipBlock* like any other address, as are node IPs: a
//!   block `10.0.0.0/8` admits the pods in `10.244.0.0/16` too. A policy that means "outside
//!   the cluster only" lists the cluster CIDR in `except`.
//! - **ICMP (K13).** ICMP has no ports: a rule with ports never matches ICMP, a rule without
//!   ports does. Other IP protocols never reach this table (the dataplane tracks TCP, UDP and
//!   ICMP only); what an isolated pod does with them is the policy stage's decision.
//! - **Addresses (K6).** Checks use the post-DNAT destination (backend pod, target port) and the
//!   pre-SNAT source, so Service traffic is judged exactly like direct pod traffic.
//! - **Statefulness (K5).** Only the first packet of a flow is checked; conntrack passes replies
//!   and related ICMP. Node-local traffic (K7) is recognised by the stage, not here.
//!
//! # Cost
//! A check is one hash probe for the pod, then a scan of that pod's rules (ports before peers),
//! stopping at the first match; a pod-set peer is one hash probe, a block one mask per CIDR.
//! Nothing allocates. Building sorts each pod's rules by policy name.

mod rules;
mod table;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use crate::cidr::{Cidr, CidrError, CidrErrorReason};
pub use rules::{Block6, Peer, PodRules, PodSet, PolicyId, PortRange, Rule};
pub use table::{PolicyTable, PolicyTableBuilder, PolicyVerdict};
