//! What happens to a running cluster: a pod crashes (`kill-pod`), a pod's readiness flips
//! (`set-ready`), a pod is relabelled (`label`), a node's ferroplane restarts (`restart-node`). The testbed plays kubelet:
//! every change of a Pod goes through the control plane, which updates Endpoints and the nodes.
//!
//! Invariants: `kill-pod` ends the pod's processes with SIGKILL (no goodbye, like a crash), then
//! calls the CNI plugin's DEL for a pod it wired (as the runtime does when the sandbox goes),
//! removes its namespace and deletes the Pod, so its endpoint disappears; `set-ready` changes
//! only the Ready condition and `label` only the labels named; `restart-node` returns once the new process is healthy and has
//! attached every pod of the node again; every wait is bounded.

use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};

use crate::cluster::Ferroplane;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::netns;
use crate::nodes;
use crate::resolv;
use crate::run_state::{RunState, split_pod_name};

const EXIT_WITHIN: Duration = Duration::from_secs(10);

fn control(state: &RunState) -> Ferroplane {
    Ferroplane {
        bin: state.ferroplane.clone(),
        state_dir: state.state_dir.clone(),
    }
}

/// Crashes pod `name`: SIGKILL to everything in its namespace, the namespace removed, the Pod
/// deleted.
pub fn kill_pod(layout: &Layout, state: &mut RunState, name: &str) -> Result<()> {
    let pod = state
        .pod(name)
        .ok_or_else(|| Error(format!("no pod {name}")))?
        .clone();
    for pid in netns::pids(&pod.netns)? {
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
    if pod.cni {
        crate::cni::release(layout, state, &pod)?;
    }
    let bound = nodes::netns_dir(layout, &pod.node).join(&pod.netns);
    let _ = std::fs::remove_file(bound);
    netns::delete(&pod.netns)?;
    resolv::remove(&pod.netns);
    control(state).delete("pod", &pod.namespace, &pod.name)?;
    state
        .pods
        .retain(|p| !(p.namespace == pod.namespace && p.name == pod.name));
    state.save(layout)
}

/// Sets pod `name`'s Ready condition, as the kubelet does when its readiness probe flips.
pub fn set_ready(state: &RunState, name: &str, ready: bool) -> Result<()> {
    let (namespace, pod_name) = split_pod_name(name);
    if state.pod(name).is_none() {
        return Err(Error(format!("no pod {name}")));
    }
    let control = control(state);
    let mut pod = control.get("pod", namespace, pod_name)?;
    set_ready_condition(&mut pod, ready)?;
    control
        .apply_text(&serde_json::to_string(&pod)?)
        .map(|_| ())
}

/// Changes pod `name`'s labels: `KEY=VALUE` sets, `KEY-` removes (as `kubectl label`).
pub fn label(state: &RunState, name: &str, changes: &[String]) -> Result<()> {
    let (namespace, pod_name) = split_pod_name(name);
    if state.pod(name).is_none() {
        return Err(Error(format!("no pod {name}")));
    }
    let control = control(state);
    let mut pod = control.get("pod", namespace, pod_name)?;
    apply_label_changes(&mut pod, changes)?;
    control
        .apply_text(&serde_json::to_string(&pod)?)
        .map(|_| ())
}

fn apply_label_changes(pod: &mut Value, changes: &[String]) -> Result<()> {
    let metadata = pod
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error("the Pod has no metadata".to_owned()))?;
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| Error("metadata.labels is not a map".to_owned()))?;
    for change in changes {
        if let Some((key, value)) = change.split_once('=') {
            labels.insert(key.to_owned(), Value::String(value.to_owned()));
        } else if let Some(key) = change.strip_suffix('-') {
            labels.remove(key);
        } else {
            return Err(Error(format!("label {change:?}: use KEY=VALUE or KEY-")));
        }
    }
    Ok(())
}

/// Replaces (or adds) the Ready condition of a Pod object.
fn set_ready_condition(pod: &mut Value, ready: bool) -> Result<()> {
    let status = pod
        .get_mut("status")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error("the Pod has no status".to_owned()))?;
    let conditions = status
        .entry("conditions")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| Error("status.conditions is not a list".to_owned()))?;
    conditions.retain(|c| c["type"] != "Ready");
    conditions.push(json!({
        "type": "Ready",
        "status": if ready { "True" } else { "False" },
    }));
    Ok(())
}

/// Stops node `name`'s ferroplane (SIGTERM, or SIGKILL with `crash`), starts it again with the
/// same configuration and waits until it serves every pod of the node.
pub fn restart_node(layout: &Layout, state: &mut RunState, name: &str, crash: bool) -> Result<()> {
    let node = state
        .node(name)
        .ok_or_else(|| Error(format!("no node {name}")))?
        .clone();
    let pid = i32::try_from(node.pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Error(format!("node {name} has no process")))?;
    let signal = if crash { Signal::KILL } else { Signal::TERM };
    // Already gone is fine: the new process is started either way.
    let _ = kill_process(pid, signal);
    let deadline = Instant::now() + EXIT_WITHIN;
    while netns::pids(&node.netns)?.contains(&pid.as_raw_nonzero().get()) {
        if Instant::now() > deadline {
            return Err(Error(format!(
                "ferroplane on {name} (pid {pid:?}) did not exit within {EXIT_WITHIN:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = nodes::launch(&state.ferroplane, &node)?;
    nodes::configure_host_port(&node)?;
    if let Some(record) = state.nodes.iter_mut().find(|n| n.name == name) {
        record.pid = pid;
    }
    state.save(layout)?;
    for pod in state.pods.iter().filter(|p| p.node == name) {
        nodes::wait_attached(&node, &pod.namespace, &pod.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_condition_is_replaced_and_others_kept() {
        let mut pod = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "PodScheduled", "status": "True"},
        ]}});
        set_ready_condition(&mut pod, false).unwrap();
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert!(conditions.contains(&json!({"type": "Ready", "status": "False"})));
        assert!(conditions.contains(&json!({"type": "PodScheduled", "status": "True"})));
        let mut bare = json!({"status": {}});
        set_ready_condition(&mut bare, true).unwrap();
        assert_eq!(bare["status"]["conditions"][0]["status"], "True");
        assert!(set_ready_condition(&mut json!({}), true).is_err());
    }

    #[test]
    fn labels_are_set_and_removed_like_kubectl_label() {
        let mut pod = json!({"metadata": {"name": "p", "labels": {"role": "fe", "app": "store"}}});
        let changes = ["role=be".to_owned(), "app-".to_owned(), "tier=1".to_owned()];
        apply_label_changes(&mut pod, &changes).unwrap();
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"role": "be", "tier": "1"})
        );
        assert!(apply_label_changes(&mut pod, &["role".to_owned()]).is_err());
    }
}
