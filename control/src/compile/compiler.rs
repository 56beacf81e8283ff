//! [`Compiler`]: one node's snapshots, compiled again and again, redoing only what changed.
//!
//! A full [`Compiler::compile`] builds every cache from the state. [`Compiler::update`] takes
//! the keys of the objects that changed since the previous call (what an API server session
//! touched, what a watch delivered, or a diff of two loaded states) and recompiles:
//! - a Service's specs when the Service, its Endpoints or one of its EndpointSlices changed
//!   (slices are tracked by owner, so a slice that moves or disappears dirties both owners);
//! - the policy when a NetworkPolicy or Namespace changed, or a Pod changed in a way policy
//!   reads ([`policy::pod_digest`]: not readiness, so endpoint churn never recompiles it);
//! - the node config and routes when a Node changed;
//!
//! and then assembles a new snapshot from the cached parts.
//!
//! Invariants: after every successful call the caches equal what a full compile of that state
//! would build, provided `update` was given every key that changed (a missed key is healed by
//! the next full compile, which the sync loop runs periodically); a failed call (the node
//! cannot be described) drops the caches, so the next call compiles in full; a change of the
//! cluster settings always compiles in full.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::snapshot::Snapshot;
use dataplane::tables::node::NodeConfig;
use dataplane::tables::policy::PolicyTable;
use dataplane::tables::routes::RouteTable;
use dataplane::tables::services::{Reuse, ServiceSpec, ServiceTable};
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::local::NodeLocal;
use super::policy::{self, PolicyOutput, pod_digest};
use super::ports::{self, PortAssignments, local_ip};
use super::services::{self, ServiceOutput};
use super::topology::Place;
use super::{CompileError, Compiled, Problem, build_problem, node, routes};
use crate::model::{Kind, ObjectRef};
use crate::settings::ClusterSettings;
use crate::state::{ClusterState, SERVICE_NAME_LABEL};

/// `(namespace, name)`, ordered as the state orders objects.
type Key = (String, String);

/// Compiles one node's snapshots, reusing what did not change.
pub struct Compiler {
    node: String,
    local: NodeLocal,
    cache: Option<Cache>,
}

/// Everything compiled for the last state, by the objects it came from.
struct Cache {
    settings: ClusterSettings,
    node: NodeConfig,
    routes: Arc<RouteTable>,
    /// Problems of the node config and routes.
    node_problems: Vec<Problem>,
    /// Local pods, `namespace/name` -> IP.
    local_pods: BTreeMap<String, Ipv4Addr>,
    services: BTreeMap<Key, ServiceOutput>,
    /// Service -> names of its EndpointSlices.
    slices_of: HashMap<Key, BTreeSet<String>>,
    /// EndpointSlice -> its Service.
    slice_owner: HashMap<Key, Key>,
    /// Pod -> [`pod_digest`].
    pod_digests: HashMap<Key, u64>,
    policy: PolicyOutput,
    /// The last Service table, and the spec names recompiled since it was built.
    service_table: Option<Arc<ServiceTable>>,
    /// Kept as the addresses of their names: the specs being assembled hold these very
    /// `Arc`s, so the lookup per spec at every assemble compares words and reads no name
    /// (an address freed and reused by a new spec's name only marks a spec changed that is).
    dirty_specs: Vec<usize>,
    /// The last policy table; `None` after the policy was recompiled.
    policy_table: Option<Arc<PolicyTable>>,
    /// The node's `topology.kubernetes.io/zone` (topology hints are read against it).
    zone: Option<String>,
}

/// Where a spec's name lives: the identity `assemble` tells changed specs by.
fn name_address(name: &Arc<str>) -> usize {
    name.as_ptr() as usize
}

/// The zone label of Node `name`.
fn node_zone(state: &ClusterState, name: &str) -> Option<String> {
    let labels = state.node(name)?.metadata.labels.as_ref()?;
    labels.get(crate::controllers::ZONE_LABEL).cloned()
}

impl Compiler {
    pub fn new(node: &str, local: NodeLocal) -> Compiler {
        Compiler {
            node: node.to_owned(),
            local,
            cache: None,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Compiles the node's snapshot from scratch, replacing every cache.
    pub fn compile(
        &mut self,
        state: &ClusterState,
        ports: &PortAssignments,
    ) -> Result<Compiled, CompileError> {
        self.cache = None;
        let cache = Cache::build(state, &self.node, &self.local)?;
        let mut cache = cache;
        let compiled = cache.assemble(state, ports, &self.local);
        self.cache = Some(cache);
        Ok(compiled)
    }

    /// Recompiles what the objects `changed` affect. `state` must be the state after exactly
    /// these changes to the one the previous call saw; without a previous successful call, or
    /// when the cluster settings changed, this is a full [`Compiler::compile`].
    pub fn update<'k>(
        &mut self,
        state: &ClusterState,
        changed: impl IntoIterator<Item = &'k ObjectRef>,
        ports: &PortAssignments,
    ) -> Result<Compiled, CompileError> {
        let reusable = self
            .cache
            .as_ref()
            .is_some_and(|c| c.settings == *state.settings());
        let cache = match self.cache.as_mut() {
            Some(cache) if reusable => cache,
            _ => return self.compile(state, ports),
        };
        if let Err(error) = cache.apply(state, changed, &self.node, &self.local) {
            self.cache = None;
            return Err(error);
        }
        Ok(cache.assemble(state, ports, &self.local))
    }
}

fn key(namespace: Option<&String>, name: Option<&String>) -> Key {
    (
        namespace.cloned().unwrap_or_default(),
        name.cloned().unwrap_or_default(),
    )
}

/// The Service an EndpointSlice belongs to.
fn slice_owner(slice: &EndpointSlice) -> Option<Key> {
    let labels = slice.metadata.labels.as_ref()?;
    let service = labels.get(SERVICE_NAME_LABEL)?;
    Some(key(slice.metadata.namespace.as_ref(), Some(service)))
}

/// The local pods as the policy compiler takes them.
fn local_pod_refs<'a>(
    state: &'a ClusterState,
    local: &BTreeMap<String, Ipv4Addr>,
) -> Vec<(&'a Pod, Ipv4Addr)> {
    local
        .iter()
        .filter_map(|(key, ip)| {
            let (namespace, name) = key.split_once('/')?;
            Some((state.pod(namespace, name)?, *ip))
        })
        .collect()
}

impl Cache {
    fn build(state: &ClusterState, name: &str, local: &NodeLocal) -> Result<Cache, CompileError> {
        let mut node_problems = Vec::new();
        let node = node::node_config(state, name, local, &mut node_problems)?;
        let routes = routes::route_table(state, name, local, &mut node_problems);
        let local_pods = ports::local_pods(state, name)
            .map(|(key, _, ip)| (key, ip))
            .collect();
        let mut cache = Cache {
            settings: state.settings().clone(),
            node,
            routes: Arc::new(routes),
            node_problems,
            local_pods,
            services: BTreeMap::new(),
            slices_of: HashMap::new(),
            slice_owner: HashMap::new(),
            pod_digests: HashMap::new(),
            policy: PolicyOutput::default(),
            service_table: None,
            dirty_specs: Vec::new(),
            policy_table: None,
            zone: node_zone(state, name),
        };
        for slice in state.endpoint_slices() {
            cache.track_slice(slice);
        }
        for service in state.services() {
            let key = key(
                service.metadata.namespace.as_ref(),
                service.metadata.name.as_ref(),
            );
            if let Some(output) = cache.compile_service(state, &key, name, local) {
                cache.services.insert(key, output);
            }
        }
        for pod in state.pods() {
            let key = key(pod.metadata.namespace.as_ref(), pod.metadata.name.as_ref());
            cache.pod_digests.insert(key, pod_digest(pod));
        }
        cache.policy = policy::compile_policies(state, &local_pod_refs(state, &cache.local_pods));
        Ok(cache)
    }

    fn track_slice(&mut self, slice: &EndpointSlice) -> Option<Key> {
        let owner = slice_owner(slice)?;
        let name = slice.metadata.name.clone().unwrap_or_default();
        let slice_key = (owner.0.clone(), name.clone());
        self.slices_of
            .entry(owner.clone())
            .or_default()
            .insert(name);
        self.slice_owner.insert(slice_key, owner.clone());
        Some(owner)
    }

    fn untrack_slice(&mut self, slice_key: &Key) -> Option<Key> {
        let owner = self.slice_owner.remove(slice_key)?;
        if let Some(names) = self.slices_of.get_mut(&owner) {
            names.remove(&slice_key.1);
            if names.is_empty() {
                self.slices_of.remove(&owner);
            }
        }
        Some(owner)
    }

    /// The Service's output, `None` when the Service does not exist.
    fn compile_service(
        &self,
        state: &ClusterState,
        key: &Key,
        node: &str,
        local: &NodeLocal,
    ) -> Option<ServiceOutput> {
        let (namespace, name) = key;
        let service = state.service(namespace, name)?;
        let slices: Vec<&EndpointSlice> = self
            .slices_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|slice| state.get(namespace, slice))
            .collect();
        let endpoints = slices
            .is_empty()
            .then(|| state.get::<Endpoints>(namespace, name))
            .flatten();
        let place = Place {
            node,
            zone: self.zone.as_deref(),
        };
        Some(services::compile_service(
            service, &slices, endpoints, place, local,
        ))
    }

    /// Brings the caches up to date with the changed objects.
    fn apply<'k>(
        &mut self,
        state: &ClusterState,
        changed: impl IntoIterator<Item = &'k ObjectRef>,
        name: &str,
        local: &NodeLocal,
    ) -> Result<(), CompileError> {
        let mut node_dirty = false;
        let mut policy_dirty = false;
        let mut dirty_services: BTreeSet<Key> = BTreeSet::new();
        for changed in changed {
            let object_key = (changed.namespace.clone(), changed.name.clone());
            match changed.kind {
                Kind::Node | Kind::ServiceCIDR => node_dirty = true,
                Kind::Namespace | Kind::NetworkPolicy => policy_dirty = true,
                Kind::Service | Kind::Endpoints => {
                    dirty_services.insert(object_key);
                }
                Kind::EndpointSlice => {
                    dirty_services.extend(self.untrack_slice(&object_key));
                    let slice = state.get::<EndpointSlice>(&changed.namespace, &changed.name);
                    dirty_services.extend(slice.and_then(|s| self.track_slice(s)));
                }
                Kind::Pod => {
                    let pod = state.pod(&changed.namespace, &changed.name);
                    let digest = pod.map(pod_digest);
                    let old = match digest {
                        Some(digest) => self.pod_digests.insert(object_key, digest),
                        None => self.pod_digests.remove(&object_key),
                    };
                    policy_dirty |= old != digest;
                    let pod_key = format!("{}/{}", changed.namespace, changed.name);
                    match pod.and_then(|p| local_ip(p, name)) {
                        Some(ip) => self.local_pods.insert(pod_key, ip),
                        None => self.local_pods.remove(&pod_key),
                    };
                }
            }
        }
        if node_dirty {
            let mut problems = Vec::new();
            self.node = node::node_config(state, name, local, &mut problems)?;
            self.routes = Arc::new(routes::route_table(state, name, local, &mut problems));
            self.node_problems = problems;
            let zone = node_zone(state, name);
            if zone != self.zone {
                self.zone = zone;
                dirty_services.extend(self.services.keys().cloned());
            }
        }
        for key in dirty_services {
            let output = self.compile_service(state, &key, name, local);
            let new_names = output
                .iter()
                .flat_map(|o| o.specs.iter().map(|s| name_address(&s.name)));
            self.dirty_specs.extend(new_names.collect::<Vec<_>>());
            let old = match output {
                Some(output) => self.services.insert(key, output),
                None => self.services.remove(&key),
            };
            self.dirty_specs.extend(
                old.iter()
                    .flat_map(|o| o.specs.iter().map(|s| name_address(&s.name))),
            );
        }
        if policy_dirty {
            self.policy = policy::compile_policies(state, &local_pod_refs(state, &self.local_pods));
            self.policy_table = None;
        }
        Ok(())
    }

    /// A snapshot from the cached parts.
    fn assemble(
        &mut self,
        state: &ClusterState,
        ports: &PortAssignments,
        local: &NodeLocal,
    ) -> Compiled {
        let mut problems = self.node_problems.clone();
        let port_table = if ports.attached_ips().is_empty() {
            ports::port_table(&self.local_pods, ports, &mut problems)
        } else {
            // Pods the CNI plugin attached before the state lists their address.
            let mut local = self.local_pods.clone();
            for (pod, ip) in ports.attached_ips() {
                local.entry(pod.clone()).or_insert(*ip);
            }
            ports::port_table(&local, ports, &mut problems)
        };
        let host_specs: Vec<ServiceSpec> = ports.host_ports().iter().map(|h| h.spec()).collect();
        let specs: Vec<&ServiceSpec> = self
            .services
            .values()
            .flat_map(|output| {
                problems.extend(output.problems.iter().cloned());
                output.specs.iter()
            })
            .chain(&host_specs)
            .collect();
        let mut dirty = std::mem::take(&mut self.dirty_specs);
        // Host ports' specs are built afresh for every snapshot.
        dirty.extend(host_specs.iter().map(|s| name_address(&s.name)));
        dirty.sort_unstable();
        dirty.dedup();
        let unchanged = |name: &str| dirty.binary_search(&(name.as_ptr() as usize)).is_err();
        let previous = self.service_table.take();
        let (services, errors) = ServiceTable::rebuild_lenient(
            specs.into_iter(),
            previous.as_deref().map(|previous| Reuse {
                previous,
                unchanged: &unchanged,
            }),
            &self.node.node_port_addresses,
            local.maglev_table_size,
        );
        let services = Arc::new(services);
        self.service_table = Some(Arc::clone(&services));
        problems.extend(errors.iter().map(build_problem));
        problems.extend(self.policy.problems.iter().cloned());
        let policy = Arc::clone(
            self.policy_table
                .get_or_insert_with(|| Arc::new(policy::build_table(&self.policy))),
        );
        let v6 = super::v6::tables(
            state,
            (&self.node, local),
            &port_table,
            &self.routes,
            &mut problems,
        );
        Compiled {
            snapshot: Snapshot {
                generation: state.generation(),
                node: self.node.clone(),
                ports: port_table,
                routes: Arc::clone(&self.routes),
                services,
                policy,
                v6: Arc::new(v6),
            },
            problems,
        }
    }
}
