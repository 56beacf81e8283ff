//! Pod admission, with the testbed playing kubelet: a Pod bound to a Node (`spec.nodeName`)
//! without `status.podIP` gets the next free IP of that node's podCIDR; a given `status.podIP`
//! is honoured as is (the seed's pods have fixed IPs outside any node's range).
//!
//! Status defaults of the simulated kubelet: a pod with an IP and no phase is `Running` (a
//! Pending pod that gets its address starts running); a
//! running pod that reports no conditions is `Ready`. Explicit phase and conditions win, so the
//! testbed can make a pod unready or finished. Re-applying a manifest without `status` keeps the
//! stored status (as `kubectl apply` never touches status).

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{HostIP, Pod, PodCondition, PodIP, PodStatus};

use super::alloc;
use super::holdings::Holdings;
use crate::model::{ObjectRef, node, pod};
use crate::state::ClusterState;
use crate::validate::{self, FieldError, Validation};

/// Validates and defaults a Pod, carries status over from the stored one and assigns its IP.
pub fn admit(
    pod: &mut Pod,
    existing: Option<&Pod>,
    state: &ClusterState,
    holdings: &Holdings,
    key: &ObjectRef,
) -> Validation {
    validate_spec(pod)?;
    let new_node = pod::node_name(pod).map(str::to_owned);
    if let Some(old) = existing {
        let old_node = pod::node_name(old);
        if old_node.is_some() && old_node != new_node.as_deref() {
            return Err(FieldError::new(
                "spec.nodeName",
                format!(
                    "field is immutable: the pod is bound to {:?}",
                    old_node.unwrap_or_default()
                ),
            ));
        }
        if pod.status.is_none() {
            pod.status = old.status.clone();
        } else if pod::pod_ip(pod).is_none() && old_node.is_some() {
            carry_address(pod, old);
        }
        if pod.metadata.deletion_timestamp.is_none() {
            pod.metadata.deletion_timestamp = old.metadata.deletion_timestamp.clone();
        }
    }
    validate_status(pod)?;
    if let Err(message) = assign_ip(pod, state, holdings, key) {
        return Err(FieldError::new("status.podIP", message));
    }
    default_status(pod);
    Ok(())
}

fn carry_address(pod: &mut Pod, old: &Pod) {
    let (Some(status), Some(old_status)) = (pod.status.as_mut(), old.status.as_ref()) else {
        return;
    };
    status.pod_ip = old_status.pod_ip.clone();
    status.pod_ips = old_status.pod_ips.clone();
    status.host_ip = old_status.host_ip.clone();
    status.host_ips = old_status.host_ips.clone();
}

fn validate_spec(pod: &mut Pod) -> Validation {
    let spec = pod
        .spec
        .as_mut()
        .ok_or_else(|| FieldError::new("spec", "required"))?;
    if spec.containers.is_empty() {
        return Err(FieldError::new(
            "spec.containers",
            "required: a Pod needs at least one container",
        ));
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        validate::dns1123_subdomain(node).map_err(|m| FieldError::new("spec.nodeName", m))?;
    }
    let mut container_names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for (i, container) in spec.containers.iter_mut().enumerate() {
        let at = format!("spec.containers[{i}]");
        validate::dns1123_label(&container.name)
            .map_err(|m| FieldError::new(format!("{at}.name"), m))?;
        if !container_names.insert(container.name.clone()) {
            return Err(FieldError::new(
                format!("{at}.name"),
                format!("duplicate container name {:?}", container.name),
            ));
        }
        for (j, port) in container.ports.iter_mut().flatten().enumerate() {
            let at = format!("{at}.ports[{j}]");
            validate::port_number(&format!("{at}.containerPort"), port.container_port)?;
            if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
                validate::port_number(&format!("{at}.hostPort"), host_port)?;
            }
            validate::normalize_protocol(&format!("{at}.protocol"), &mut port.protocol)?;
            if let Some(name) = port.name.as_deref() {
                validate::port_name(name).map_err(|m| FieldError::new(format!("{at}.name"), m))?;
                if !port_names.insert(name.to_owned()) {
                    return Err(FieldError::new(
                        format!("{at}.name"),
                        format!("duplicate port name {name:?} in this pod"),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn validate_status(pod: &mut Pod) -> Validation {
    let Some(status) = pod.status.as_mut() else {
        return Ok(());
    };
    if let Some(phase) = &status.phase {
        validate::one_of(
            "status.phase",
            phase,
            &["Pending", "Running", "Succeeded", "Failed", "Unknown"],
        )?;
    }
    for (field, ip) in [
        ("status.podIP", &status.pod_ip),
        ("status.hostIP", &status.host_ip),
    ] {
        if let Some(text) = ip {
            text.parse::<IpAddr>().map_err(|_| {
                FieldError::new(field, format!("{text:?} must be a valid IP address"))
            })?;
        }
    }
    for (i, entry) in status.pod_ips.iter().flatten().enumerate() {
        entry.ip.parse::<IpAddr>().map_err(|_| {
            FieldError::new(
                format!("status.podIPs[{i}].ip"),
                format!("{:?} must be a valid IP address", entry.ip),
            )
        })?;
    }
    let listed: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    let mixed = matches!(listed.as_slice(), [a, b] if a.is_ipv4() != b.is_ipv4());
    if listed.len() > 1 && !mixed {
        return Err(FieldError::new(
            "status.podIPs",
            "may specify no more than one IP for each IP family",
        ));
    }
    let first = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|p| p.ip.clone());
    match (&status.pod_ip, first) {
        (Some(ip), Some(first)) if *ip != first => {
            return Err(FieldError::new(
                "status.podIPs",
                format!("must start with status.podIP {ip:?}"),
            ));
        }
        (Some(ip), None) => status.pod_ips = Some(vec![PodIP { ip: ip.clone() }]),
        (None, Some(first)) => status.pod_ip = Some(first),
        _ => {}
    }
    for (i, condition) in status.conditions.iter().flatten().enumerate() {
        validate::one_of(
            &format!("status.conditions[{i}].status"),
            &condition.status,
            &["True", "False", "Unknown"],
        )?;
    }
    Ok(())
}

/// Gives a bound, unfinished pod without an IP the next free address of each of its node's
/// podCIDRs (one per family, primary first, as kubelet reports `status.podIPs`).
/// `Ok(false)` when nothing was done (already addressed, finished, unbound, or the node is not
/// there yet: the pod stays Pending until its node appears).
pub fn assign_ip(
    pod: &mut Pod,
    state: &ClusterState,
    holdings: &Holdings,
    key: &ObjectRef,
) -> Result<bool, String> {
    if pod::pod_ip(pod).is_some() || pod::is_terminal(pod) {
        return Ok(false);
    }
    let Some(node_object) = pod::node_name(pod).and_then(|name| state.node(name)) else {
        return Ok(false);
    };
    let pod_cidrs = node::pod_cidrs(node_object);
    if pod_cidrs.is_empty() {
        return Ok(false);
    }
    let mut ips = Vec::new();
    for pod_cidr in &pod_cidrs {
        let ip =
            alloc::pick_pod_ip(pod_cidr, |ip| holdings.pod_ip_held(ip, key)).ok_or_else(|| {
                format!(
                    "no free IP left in podCIDR {pod_cidr} of node {}",
                    node_object.metadata.name.as_deref().unwrap_or_default()
                )
            })?;
        ips.push(ip.to_string());
    }
    let status = pod.status.get_or_insert_with(PodStatus::default);
    status.pod_ip = ips.first().cloned();
    status.pod_ips = Some(ips.into_iter().map(|ip| PodIP { ip }).collect());
    if let Some(host) = node::internal_ip(node_object) {
        status.host_ip = Some(host.to_string());
        status.host_ips = Some(vec![HostIP {
            ip: host.to_string(),
        }]);
    }
    // The sandbox is up: a pod waiting for its address starts running.
    if status
        .phase
        .as_deref()
        .is_none_or(|phase| phase == "Pending")
    {
        status.phase = Some("Running".to_owned());
    }
    default_status(pod);
    Ok(true)
}

/// Phase and Ready condition of the simulated kubelet (see the module doc).
fn default_status(pod: &mut Pod) {
    let has_ip = pod::pod_ip(pod).is_some();
    let status = pod.status.get_or_insert_with(PodStatus::default);
    let phase = status
        .phase
        .get_or_insert_with(|| if has_ip { "Running" } else { "Pending" }.to_owned());
    if phase == "Running" && status.conditions.is_none() {
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".to_owned(),
            status: "True".to_owned(),
            ..PodCondition::default()
        }]);
    }
}
