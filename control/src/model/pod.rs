//! Typed questions about a Pod that controllers and the dataplane compiler ask: its IP, whether
//! it is ready, terminating or finished, and which number a named container port has.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// The pod's primary IP (`status.podIP`), if assigned and well-formed.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Every IP of the pod, primary first: `status.podIPs`, else `status.podIP` (each well-formed
/// one, once). A dual-stack pod has one per family.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    for text in status.pod_ip.as_deref().into_iter().chain(listed) {
        if let Ok(ip) = text.parse()
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    ips
}

/// `Succeeded` or `Failed`: the pod's containers will not run again and its IP is released.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Deletion has started (`metadata.deletionTimestamp` is set).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The node the pod is bound to, if any.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// The number of the container port called `name` with `protocol`, searching every container
/// in order (what Kubernetes does to resolve a named `targetPort`).
pub fn named_container_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}
