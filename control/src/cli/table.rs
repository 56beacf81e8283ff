//! kubectl-like tables for `get`: the same columns kubectl prints for each kind (plus, in
//! `-o wide`, the columns a dataplane operator needs: selectors, pod IPs and nodes, node VTEPs).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::{Kind, Object, node, pod, service::load_balancer_ips};
use crate::state::ClusterState;

const NONE: &str = "<none>";

/// Renders the objects of one kind as an aligned table.
pub fn render(
    kind: Kind,
    objects: &[&Object],
    state: &ClusterState,
    wide: bool,
    show_namespace: bool,
    now: jiff::Timestamp,
) -> String {
    let (mut headers, extra): (Vec<&str>, Vec<&str>) = match kind {
        Kind::Service => (
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            vec!["SELECTOR"],
        ),
        Kind::Endpoints => (vec!["NAME", "ENDPOINTS", "AGE"], vec![]),
        Kind::EndpointSlice => (
            vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            vec![],
        ),
        Kind::Pod => (
            vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            vec!["IP", "NODE"],
        ),
        Kind::Node => (
            vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            vec!["INTERNAL-IP", "POD-CIDR", "VTEP-MAC"],
        ),
        Kind::Namespace => (vec!["NAME", "STATUS", "AGE"], vec!["DEFAULT-DENY"]),
        Kind::NetworkPolicy => (vec!["NAME", "POD-SELECTOR", "AGE"], vec!["POLICY-TYPES"]),
        Kind::ServiceCIDR => (vec!["NAME", "CIDRS", "AGE"], vec![]),
    };
    if wide {
        headers.extend(extra);
    }
    if show_namespace {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|object| {
            let meta = object.metadata();
            let age = age(meta, now);
            let (mut row, extra) = match object {
                Object::Service(s) => service_row(s, age),
                Object::Endpoints(e) => (vec![name(meta), endpoints_column(e), age], vec![]),
                Object::EndpointSlice(s) => slice_row(s, age),
                Object::Pod(p) => pod_row(p, age),
                Object::Node(n) => node_row(n, age),
                Object::Namespace(n) => namespace_row(n, state, age),
                Object::NetworkPolicy(p) => policy_row(p, age),
                Object::ServiceCIDR(c) => {
                    let cidrs = c.spec.as_ref().and_then(|s| s.cidrs.clone());
                    (
                        vec![name(meta), cidrs.unwrap_or_default().join(","), age],
                        vec![],
                    )
                }
            };
            if wide {
                row.extend(extra);
            }
            if show_namespace {
                row.insert(0, meta.namespace.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    align(&headers, &rows)
}

fn align(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header_row).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn name(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// kubectl-style age: `45s`, `12m`, `5h`, `3d`.
pub fn age(meta: &ObjectMeta, now: jiff::Timestamp) -> String {
    let Some(created) = &meta.creation_timestamp else {
        return "<unknown>".to_owned();
    };
    let seconds = (now.as_second() - created.0.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn join_labels(labels: Option<&BTreeMap<String, String>>) -> String {
    let pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if pairs.is_empty() {
        NONE.to_owned()
    } else {
        pairs.join(",")
    }
}

/// At most three entries, then `+ N more...` as kubectl abbreviates.
fn abbreviate(items: &[String]) -> String {
    match items.len() {
        0 => NONE.to_owned(),
        n if n <= 3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}

type Row = (Vec<String>, Vec<String>);

fn service_row(service: &Service, age: String) -> Row {
    let spec = service.spec.clone().unwrap_or_default();
    let type_ = spec.type_.clone().unwrap_or_default();
    let mut external: Vec<String> = load_balancer_ips(service)
        .map(|ip| ip.to_string())
        .collect();
    external.extend(spec.external_ips.iter().flatten().cloned());
    let external = match type_.as_str() {
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        "LoadBalancer" if external.is_empty() => "<pending>".to_owned(),
        _ if external.is_empty() => NONE.to_owned(),
        _ => external.join(","),
    };
    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(node_port) => format!("{}:{node_port}/{protocol}", p.port),
                None => format!("{}/{protocol}", p.port),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        NONE.to_owned()
    } else {
        ports.join(",")
    };
    let cluster_ip = spec.cluster_ip.clone().unwrap_or_else(|| NONE.to_owned());
    (
        vec![
            name(&service.metadata),
            type_,
            cluster_ip,
            external,
            ports,
            age,
        ],
        vec![join_labels(spec.selector.as_ref())],
    )
}

fn endpoints_column(endpoints: &Endpoints) -> String {
    let mut items = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        for address in subset.addresses.iter().flatten() {
            match subset.ports.as_deref() {
                Some(ports) if !ports.is_empty() => {
                    items.extend(ports.iter().map(|p| format!("{}:{}", address.ip, p.port)))
                }
                _ => items.push(address.ip.clone()),
            }
        }
    }
    abbreviate(&items)
}

fn slice_row(slice: &EndpointSlice, age: String) -> Row {
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.map(|n| n.to_string()))
        .collect();
    let ports = if ports.is_empty() {
        "<unset>".to_owned()
    } else {
        ports.join(",")
    };
    let addresses: Vec<String> = slice
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    (
        vec![
            name(&slice.metadata),
            slice.address_type.clone(),
            ports,
            abbreviate(&addresses),
            age,
        ],
        vec![],
    )
}

fn pod_row(p: &Pod, age: String) -> Row {
    let containers = p.spec.as_ref().map_or(0, |s| s.containers.len());
    let ready = if pod::is_ready(p) { containers } else { 0 };
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_owned());
    let status = if pod::is_terminating(p) {
        "Terminating".to_owned()
    } else {
        phase
    };
    let ip = pod::pod_ip(p).map_or_else(|| NONE.to_owned(), |ip| ip.to_string());
    let node = pod::node_name(p).unwrap_or(NONE).to_owned();
    (
        vec![
            name(&p.metadata),
            format!("{ready}/{containers}"),
            status,
            "0".to_owned(),
            age,
        ],
        vec![ip, node],
    )
}

fn node_row(n: &Node, age: String) -> Row {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let status = match ready.map(|c| c.status.as_str()) {
        Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    };
    let roles: Vec<&str> = n
        .metadata
        .labels
        .iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    let roles = if roles.is_empty() {
        NONE.to_owned()
    } else {
        roles.join(",")
    };
    let version = n
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
        .unwrap_or_default();
    let internal_ip = node::internal_ip(n).map_or_else(|| NONE.to_owned(), |ip| ip.to_string());
    let pod_cidr = node::pod_cidr(n).map_or_else(|| NONE.to_owned(), |c| c.to_string());
    let mac = node::backend_data(n).map_or_else(|| NONE.to_owned(), |d| d.vtep_mac);
    (
        vec![name(&n.metadata), status.to_owned(), roles, age, version],
        vec![internal_ip, pod_cidr, mac],
    )
}

fn namespace_row(namespace: &Namespace, state: &ClusterState, age: String) -> Row {
    let phase = namespace
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Active".to_owned());
    let deny = state.default_deny_ingress(namespace.metadata.name.as_deref().unwrap_or_default());
    (
        vec![name(&namespace.metadata), phase, age],
        vec![if deny { "ingress" } else { NONE }.to_owned()],
    )
}

fn policy_row(policy: &NetworkPolicy, age: String) -> Row {
    let spec = policy.spec.clone().unwrap_or_default();
    let selector = spec.pod_selector.unwrap_or_default();
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.extend(selector.match_expressions.iter().flatten().map(|e| {
        format!(
            "{} {} ({})",
            e.key,
            e.operator,
            e.values.clone().unwrap_or_default().join(",")
        )
    }));
    let selector = if parts.is_empty() {
        NONE.to_owned()
    } else {
        parts.join(",")
    };
    let types = spec.policy_types.unwrap_or_default().join(",");
    (vec![name(&policy.metadata), selector, age], vec![types])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_trailing_space_is_trimmed() {
        let rows = vec![
            vec!["a".to_owned(), "long-value".to_owned()],
            vec!["bbbb".to_owned(), "x".to_owned()],
        ];
        assert_eq!(
            align(&["NAME", "V"], &rows),
            "NAME   V\na      long-value\nbbbb   x\n"
        );
    }

    #[test]
    fn abbreviation_after_three() {
        let items: Vec<String> = (1..=5).map(|i| format!("10.0.0.{i}:80")).collect();
        assert_eq!(abbreviate(&items[..2]), "10.0.0.1:80,10.0.0.2:80");
        assert_eq!(
            abbreviate(&items),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
        );
        assert_eq!(abbreviate(&[]), "<none>");
    }

    #[test]
    fn ages() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| ObjectMeta {
            creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(1_000_000 - s).unwrap(),
            )),
            ..ObjectMeta::default()
        };
        assert_eq!(age(&at(45), now), "45s");
        assert_eq!(age(&at(600), now), "10m");
        assert_eq!(age(&at(5 * 3600), now), "5h");
        assert_eq!(age(&at(3 * 86400), now), "3d");
    }
}
