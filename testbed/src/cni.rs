//! Wiring a pod through `ferroplane-cni` exactly as a container runtime does: the plugin
//! exec'd in the node's namespace with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_PATH` and `CNI_ARGS` (the pod's namespace and name, and its address as
//! `IP=`, the way host-local takes requested addresses: in a dual-stack cluster both of its
//! `status.podIPs`, comma-separated), the network configuration on stdin.
//!
//! The default for every pod. `FERROPLANE_TESTBED_CNI=builtin` makes the testbed play CNI
//! itself with `ip` commands instead (`pods.rs`), to tell a plugin fault from a dataplane one.
//!
//! Like kubelet, the pod's `hostPort`s (its containers' `ports[].hostPort`, read from the
//! state directory) go to the plugin as `runtimeConfig.portMappings`, the configuration
//! declaring the `portMappings` capability.
//!
//! Invariants: the plugin binary is the node's own `ferroplane`, linked as `ferroplane-cni`
//! in the run directory's `cni-bin/`; each node's address files live in `cni/<node>/`.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::error::{Error, Result, context};
use crate::layout::{Layout, POD_IF};
use crate::run_state::{Io, Mode, NodeRecord, PodRecord, RunState};

/// Whether pods are wired through the plugin: unless `FERROPLANE_TESTBED_CNI=builtin`.
pub fn enabled() -> bool {
    std::env::var("FERROPLANE_TESTBED_CNI").map_or(true, |v| v != "builtin")
}

/// The directory holding `ferroplane-cni` (the CNI_PATH), linked to `ferroplane`'s absolute
/// path on first use.
fn plugin_dir(layout: &Layout, ferroplane: &Path) -> Result<PathBuf> {
    let dir = layout.run_dir().join("cni-bin");
    std::fs::create_dir_all(&dir).map_err(context(dir.display()))?;
    let link = dir.join("ferroplane-cni");
    // A relative path would resolve against `cni-bin/`, not where it was given.
    let ferroplane = std::fs::canonicalize(ferroplane).map_err(context(ferroplane.display()))?;
    if std::fs::read_link(&link).ok() != Some(ferroplane.clone()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&ferroplane, &link).map_err(context(link.display()))?;
    }
    Ok(dir)
}

/// The pod's attachment as the runtime names it.
pub struct Attachment<'a> {
    pub pod_namespace: &'a str,
    pub pod_name: &'a str,
    /// The pod's network namespace (under /run/netns), also its container ID.
    pub netns: &'a str,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address from `status.podIPs` (dual-stack): `IP=` then lists both.
    pub ip6: Option<Ipv6Addr>,
}

/// The pod's hostPorts as the runtime passes them (`portMappings` capability), from its
/// Pod object in the state directory.
fn port_mappings(layout: &Layout, pod: &Attachment<'_>) -> Result<Vec<serde_json::Value>> {
    use control::model::{Kind, Object, ObjectRef};
    let state = control::StateDir::new(layout.run_dir().join("state"));
    let key = ObjectRef::new(Kind::Pod, pod.pod_namespace, pod.pod_name);
    let object = state
        .read_object_by_key(&key)
        .map_err(|e| Error(format!("reading {key}: {e}")))?;
    let Some(Object::Pod(object)) = object else {
        return Ok(Vec::new());
    };
    let containers = object.spec.iter().flat_map(|s| s.containers.iter());
    Ok(containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port?;
            Some(json!({
                "hostPort": host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                "hostIP": p.host_ip.clone().unwrap_or_default(),
            }))
        })
        .collect())
}

/// Runs `command` (ADD or DEL) of the plugin for `pod` on `node`.
pub fn call(
    layout: &Layout,
    ferroplane: &Path,
    (io, mode): (Io, Mode),
    node: &NodeRecord,
    command: &str,
    pod: &Attachment<'_>,
) -> Result<String> {
    let dir = plugin_dir(layout, ferroplane)?;
    let data_dir = layout.run_dir().join("cni").join(&node.name);
    let mtu = match mode {
        Mode::Vxlan => 1450,
        Mode::Routed => 1500,
    };
    let mut conf = json!({
        "cniVersion": "1.1.0",
        "name": "ferroplane",
        "type": "ferroplane-cni",
        // Written by the node process from its Node's spec.podCIDR (next to its admin socket).
        "podCIDRFile": node.admin_socket.with_extension("pod-cidr"),
        "dataDir": data_dir,
        "interface": if io == Io::Tap { "tap" } else { "veth" },
        "mtu": mtu,
        "adminSocket": node.admin_socket,
    });
    if io == Io::AfXdp {
        // AF_XDP sockets cannot take GSO super-frames (AF_PACKET ones take them with a
        // virtio-net header).
        conf["gsoMaxSegs"] = json!(1);
    }
    conf["capabilities"] = json!({"portMappings": true});
    let mappings = port_mappings(layout, pod)?;
    if !mappings.is_empty() {
        conf["runtimeConfig"] = json!({ "portMappings": mappings });
    }
    let ips = match pod.ip6 {
        Some(ip6) => format!("{},{ip6}", pod.ip),
        None => pod.ip.to_string(),
    };
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};IP={ips}",
        pod.pod_namespace, pod.pod_name
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .arg(dir.join("ferroplane-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", pod.netns)
        .env("CNI_NETNS", Path::new("/run/netns").join(pod.netns))
        .env("CNI_IFNAME", POD_IF)
        .env("CNI_PATH", &dir)
        .env("CNI_ARGS", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(context("running ferroplane-cni"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(Error(format!(
            "ferroplane-cni {command} for pod {}/{}: {}{}",
            pod.pod_namespace,
            pod.pod_name,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(stdout)
}

/// The plugin's DEL for a pod it wired, as the runtime calls it when the sandbox goes: the
/// pod's address is released and its interface removed, while its namespace still exists.
pub fn release(layout: &Layout, state: &RunState, pod: &PodRecord) -> Result<()> {
    let node = state
        .node(&pod.node)
        .ok_or_else(|| Error(format!("pod {}: no testbed node {}", pod.name, pod.node)))?;
    let attachment = Attachment {
        pod_namespace: &pod.namespace,
        pod_name: &pod.name,
        netns: &pod.netns,
        ip: pod.ip,
        ip6: pod.ip6,
    };
    call(
        layout,
        &state.ferroplane,
        (state.io, state.mode),
        node,
        "DEL",
        &attachment,
    )
    .map(|_| ())
}
