//! The node's policy table: for each local pod, the rules of every NetworkPolicy that selects
//! it, plus the seed's legacy `DefaultDeny` namespace isolation.
//!
//! Only this node's pods get entries: ingress to them and egress from them are enforced here,
//! the other side of each flow is enforced on its own node. Policies that select no local pod
//! are not compiled at all, and a peer selector shared by many rules is resolved once.
//!
//! Invariants: a pod is isolated in a direction iff a selecting policy lists that direction
//! (K1) or, for ingress, its namespace carries `DefaultDeny`; policy names are
//! `namespace/name`; ids index [`PolicyOutput::names`] in registration order, which is the
//! order [`build_table`] registers them in, so ids in rules stay valid.

mod peers;
mod rules;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::Ipv4Addr;

use dataplane::tables::policy::{PodRules, PolicyId, PolicyTable};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use k8s_openapi::api::core::v1::Pod;

use super::Problem;
use super::ports::pod_network_ip;
use crate::model::labels::label_selector_matches;
use crate::model::pod::node_name;
use crate::state::ClusterState;
use peers::Resolver;
use rules::{PolicyRules, compile_policy, ingress_rules_for};

/// The compiled policy of one node, before it is frozen into a table.
#[derive(Clone, Debug, Default)]
pub(super) struct PolicyOutput {
    pub names: Vec<String>,
    pub pods: Vec<(Ipv4Addr, PodRules)>,
    pub problems: Vec<Problem>,
}

/// Compiles the policy of the local pods `local` (each with its IP).
pub(super) fn compile_policies(state: &ClusterState, local: &[(&Pod, Ipv4Addr)]) -> PolicyOutput {
    let mut out = PolicyOutput::default();
    let mut by_namespace: BTreeMap<&str, Vec<(usize, &NetworkPolicy)>> = BTreeMap::new();
    for (index, policy) in state.network_policies().enumerate() {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
        by_namespace
            .entry(namespace)
            .or_default()
            .push((index, policy));
    }
    let mut resolver: Option<Resolver<'_>> = None;
    let mut compiled: HashMap<usize, PolicyRules> = HashMap::new();
    for &(pod, ip) in local {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut rules = PodRules::default();
        if state.default_deny_ingress(namespace) {
            rules.ingress = Some(Vec::new());
        }
        for (index, policy) in by_namespace.get(namespace).into_iter().flatten() {
            let selector = policy.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
            let selects =
                selector.is_none_or(|s| label_selector_matches(s, pod.metadata.labels.as_ref()));
            if !selects {
                continue;
            }
            let policy_rules = compiled.entry(*index).or_insert_with(|| {
                let id = register(&mut out.names, policy);
                let resolver = resolver.get_or_insert_with(|| Resolver::new(state));
                compile_policy(policy, id, resolver, &mut out.problems)
            });
            if let Some(shapes) = &policy_rules.ingress {
                let ingress = rules.ingress.get_or_insert_with(Vec::new);
                ingress.extend(ingress_rules_for(shapes, pod, policy_rules.id));
                rules.ingress_isolated_by.push(policy_rules.id);
            }
            if let Some(egress) = &policy_rules.egress {
                let out_rules = rules.egress.get_or_insert_with(Vec::new);
                out_rules.extend(egress.iter().cloned());
                rules.egress_isolated_by.push(policy_rules.id);
            }
        }
        if rules.ingress.is_some() || rules.egress.is_some() {
            out.pods.push((ip, rules));
        }
    }
    out
}

fn register(names: &mut Vec<String>, policy: &NetworkPolicy) -> PolicyId {
    let id = PolicyId::try_from(names.len()).unwrap_or(PolicyId::MAX);
    names.push(format!(
        "{}/{}",
        policy.metadata.namespace.as_deref().unwrap_or_default(),
        policy.metadata.name.as_deref().unwrap_or_default()
    ));
    id
}

/// Freezes a compiled policy into the dataplane's table.
pub(super) fn build_table(output: &PolicyOutput) -> PolicyTable {
    let mut builder = PolicyTable::builder();
    for name in &output.names {
        builder.add_policy(name);
    }
    for (ip, rules) in &output.pods {
        builder.set_pod(*ip, rules.clone());
    }
    builder.build()
}

/// A hash of everything about a pod that policy compilation reads (namespace, labels, IP as
/// selectors see it, node, container ports): two versions of a pod with the same digest give
/// the same policy, so readiness changes never recompile it.
pub(super) fn pod_digest(pod: &Pod) -> u64 {
    let mut hasher = DefaultHasher::new();
    pod.metadata.namespace.hash(&mut hasher);
    pod.metadata.labels.hash(&mut hasher);
    pod_network_ip(pod).hash(&mut hasher);
    node_name(pod).hash(&mut hasher);
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    for port in containers.flat_map(|c| c.ports.iter().flatten()) {
        (&port.name, port.container_port, &port.protocol).hash(&mut hasher);
    }
    hasher.finish()
}
