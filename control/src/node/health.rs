//! Health endpoints as kube-proxy serves them:
//! - `/healthz` and `/livez` on `health.bindAddress` (10256), served once the first snapshot
//!   is published, with the semantics of `liveness` (syncs, workers, draining);
//! - for each LoadBalancer Service with `externalTrafficPolicy: Local` and a
//!   `healthCheckNodePort`, HTTP on the node IP at that port, any path: 200 with
//!   `{"service":{"namespace":..,"name":..},"localEndpoints":N}` when N > 0 local serving,
//!   non-terminating endpoints, else 503 with the same body (user-needs D2).
//!
//! Invariants: every listener is served concurrently under `server::Limits::PROBE` (a slow
//! client never delays a probe); the health-check listeners follow the Services at every sync (opened for new
//! ones, closed for removed ones, a port that fails to bind is retried at the next sync); the
//! count is read from the current snapshot at request time, so it is never staler than what
//! the workers run.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dataplane::snapshot::{Snapshot, SnapshotCell};

use super::liveness::ProxyHealth;
use super::log;
use super::server::{Access, Bound, Handler, Head, HttpRuntime, Limits, Reply, Serving};
use crate::state::ClusterState;

/// A Service whose health-check node port this node serves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HealthService {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

/// The health-checked Services of `state`.
pub fn services_of(state: &ClusterState) -> Vec<HealthService> {
    state
        .services()
        .filter_map(|service| {
            let spec = service.spec.as_ref()?;
            let wanted = spec.type_.as_deref() == Some("LoadBalancer")
                && spec.external_traffic_policy.as_deref() == Some("Local");
            let port = u16::try_from(spec.health_check_node_port?).ok()?;
            (wanted && port > 0).then(|| HealthService {
                namespace: service.metadata.namespace.clone().unwrap_or_default(),
                name: service.metadata.name.clone().unwrap_or_default(),
                port,
            })
        })
        .collect()
}

/// Local serving, non-terminating endpoints of the Service `namespace/name` (the most of any
/// of its ports).
pub fn local_endpoints(snapshot: &Snapshot, namespace: &str, name: &str) -> usize {
    let prefix = format!("{namespace}/{name}:");
    snapshot
        .services
        .iter()
        .filter(|(_, s)| s.name().starts_with(&prefix))
        .map(|(_, s)| s.local_ready_endpoints())
        .max()
        .unwrap_or(0)
}

/// The body of a health-check answer.
pub fn health_body(namespace: &str, name: &str, local: usize) -> String {
    serde_json::json!({
        "service": {"namespace": namespace, "name": name},
        "localEndpoints": local,
    })
    .to_string()
}

/// Starts the `/healthz` and `/livez` listener.
pub fn serve_healthz(
    runtime: &HttpRuntime,
    bind: SocketAddr,
    health: Arc<ProxyHealth>,
) -> io::Result<Serving> {
    let bound = Bound::tcp("health.bindAddress", bind)?;
    let handler: Handler = Arc::new(move |request: &Head| {
        let (status, body) = match request.path.as_str() {
            "/healthz" => health.healthz(),
            "/livez" => health.livez(),
            _ => return Reply::text(404, "not found\n"),
        };
        Reply::json(status, body)
    });
    runtime.serve(bound, Limits::PROBE, Access::Open, handler)
}

struct Listener {
    addr: SocketAddr,
    _serving: Serving,
}

/// The health-check node port listeners, following the Services.
pub struct HealthChecks {
    runtime: HttpRuntime,
    cells: Arc<ArcSwap<SnapshotCell>>,
    listeners: BTreeMap<HealthService, Listener>,
    failed: BTreeMap<HealthService, String>,
}

impl HealthChecks {
    pub fn new(runtime: HttpRuntime, cells: Arc<ArcSwap<SnapshotCell>>) -> HealthChecks {
        HealthChecks {
            runtime,
            cells,
            listeners: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    /// Opens listeners for `wanted` on `node_ip` and closes the others.
    pub fn update(&mut self, node_ip: Ipv4Addr, wanted: &[HealthService]) {
        let keep: Vec<HealthService> = self
            .listeners
            .keys()
            .filter(|s| !wanted.contains(s) || self.listeners[*s].addr.ip() != IpAddr::V4(node_ip))
            .cloned()
            .collect();
        for service in keep {
            if let Some(listener) = self.listeners.remove(&service) {
                log::info(format_args!(
                    "health check of {}/{} on {} closed",
                    service.namespace, service.name, listener.addr
                ));
            }
        }
        self.failed.retain(|s, _| wanted.contains(s));
        for service in wanted {
            if self.listeners.contains_key(service) {
                continue;
            }
            let addr = SocketAddr::from((node_ip, service.port));
            match self.open(service, addr) {
                Ok(listener) => {
                    log::info(format_args!(
                        "health check of {}/{} on {addr}",
                        service.namespace, service.name
                    ));
                    self.failed.remove(service);
                    self.listeners.insert(service.clone(), listener);
                }
                Err(error) => {
                    let message = error.to_string();
                    if self.failed.get(service) != Some(&message) {
                        log::warn(format_args!(
                            "health check of {}/{} on {addr}: {message}",
                            service.namespace, service.name
                        ));
                    }
                    self.failed.insert(service.clone(), message);
                }
            }
        }
    }

    /// Services whose listener could not be opened (retried at every update).
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty()
    }

    fn open(&self, service: &HealthService, addr: SocketAddr) -> io::Result<Listener> {
        let bound = Bound::tcp("healthCheckNodePort", addr)?;
        let cells = Arc::clone(&self.cells);
        let (namespace, name) = (service.namespace.clone(), service.name.clone());
        let handler: Handler = Arc::new(move |_request: &Head| {
            let snapshot = cells.load().load();
            let local = local_endpoints(&snapshot, &namespace, &name);
            let status = if local > 0 { 200 } else { 503 };
            Reply::json(status, health_body(&namespace, &name, local))
        });
        let serving = self
            .runtime
            .serve(bound, Limits::PROBE, Access::Open, handler)?;
        Ok(Listener {
            addr,
            _serving: serving,
        })
    }
}
