//! The node's record of the pods the CNI plugin attached (`/cni/attach`), one JSON file per
//! attachment in a directory next to the admin socket (`<socket without extension>.attachments/`),
//! so a restarted node process re-attaches every live pod from it, whether or not its source
//! lists the Pod yet.
//!
//! The port manager treats every recorded pod as local (with the recorded IP when the state
//! has none), opens its device where the record says (the node end of a veth, or the TAP in
//! the pod's namespace) and programs its hostPorts; the admin server answers the plugin once
//! the port is attached, or with the reason it could not be ([`Registry::failure`]).
//!
//! Invariants:
//! - A record is on disk (written under a temporary name, renamed, synced) before the attach
//!   is acknowledged, and gone from disk before a detach is.
//! - No two pods hold overlapping hostPorts: a conflicting attach is refused naming both pods;
//!   a new attachment of the same pod replaces the older one.
//! - At start, a record whose device is gone (its namespace deleted, its veth removed) is
//!   dropped, file included, and logged; an unreadable record too. While running, a record
//!   whose namespace is gone is dropped at the next sync ([`Registry::prune_gone`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::log;
use crate::cni::attach::{DeviceKind, PodAttachment};
use crate::compile::host_ports::PodHostPort;
use crate::net::fnv1a_64;
use crate::store::durable;

/// Where the records of the node serving `admin_socket` live.
pub fn dir_for(admin_socket: &Path) -> PathBuf {
    admin_socket.with_extension("attachments")
}

/// The recorded attachments, shared by the admin server and the port manager.
pub struct Registry {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Set when the records changed, until the control thread asks for a sync.
    wake: AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// By record file name (a hash of container ID and interface).
    records: BTreeMap<String, PodAttachment>,
    /// Why the port of a recorded pod could not be opened, by `namespace/name`.
    failures: BTreeMap<String, String>,
}

fn file_name(container_id: &str, ifname: &str) -> String {
    let hash = fnv1a_64(format!("{container_id}\0{ifname}").as_bytes());
    format!("{hash:016x}.json")
}

impl Registry {
    /// Loads the records in `dir` (created if missing), keeping those whose device `alive`
    /// still finds.
    pub fn open(dir: &Path, alive: impl Fn(&PodAttachment) -> bool) -> Result<Registry, String> {
        durable::create_dir_durable(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut records = BTreeMap::new();
        let mut dropped = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let record = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<PodAttachment>(&bytes).map_err(|e| e.to_string())
                });
            match record {
                Ok(record) if alive(&record) => {
                    records.insert(name, record);
                }
                Ok(record) => {
                    log::info(format_args!(
                        "attachment record of pod {} (container {}): its device is gone; dropped",
                        record.pod_key(),
                        record.container_id
                    ));
                    dropped.push(path);
                }
                Err(error) => {
                    log::warn(format_args!(
                        "attachment record {}: {error}; dropped",
                        path.display()
                    ));
                    dropped.push(path);
                }
            }
        }
        if !dropped.is_empty() {
            durable::remove_all_durable(&dropped).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if !records.is_empty() {
            log::info(format_args!(
                "re-attaching {} pods from the attachment record in {}",
                records.len(),
                dir.display()
            ));
        }
        Ok(Registry {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                records,
                failures: BTreeMap::new(),
            }),
            wake: AtomicBool::new(true),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `attachment`; refused when another pod holds one of its hostPorts.
    pub fn attach(&self, attachment: PodAttachment) -> Result<(), String> {
        let key = attachment.pod_key();
        let name = file_name(&attachment.container_id, &attachment.ifname);
        let mut inner = self.lock();
        for (other_name, other) in &inner.records {
            if *other_name == name || other.pod_key() == key {
                continue;
            }
            for mine in &attachment.host_ports {
                if let Some(theirs) = other.host_ports.iter().find(|p| p.overlaps(mine)) {
                    return Err(format!(
                        "{} of pod {key} conflicts with {} of pod {} (container {})",
                        mine.describe(),
                        theirs.describe(),
                        other.pod_key(),
                        other.container_id
                    ));
                }
            }
        }
        let replaced: Vec<String> = inner
            .records
            .iter()
            .filter(|(n, r)| **n != name && r.pod_key() == key)
            .map(|(n, _)| n.clone())
            .collect();
        let bytes = serde_json::to_vec_pretty(&attachment).map_err(|e| e.to_string())?;
        let path = self.dir.join(&name);
        durable::write_atomic(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let old: Vec<PathBuf> = replaced.iter().map(|n| self.dir.join(n)).collect();
        if !old.is_empty() {
            durable::remove_all_durable(&old)
                .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        }
        for n in &replaced {
            inner.records.remove(n);
        }
        inner.failures.remove(&key);
        inner.records.insert(name, attachment);
        self.wake.store(true, Ordering::Release);
        Ok(())
    }

    /// Forgets the attachment of `container_id` on `ifname`; whether there was one.
    pub fn detach(&self, container_id: &str, ifname: &str) -> Result<bool, String> {
        let name = file_name(container_id, ifname);
        let mut inner = self.lock();
        let Some(record) = inner.records.get(&name) else {
            return Ok(false);
        };
        let key = record.pod_key();
        let path = self.dir.join(&name);
        durable::remove_all_durable(std::slice::from_ref(&path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        inner.records.remove(&name);
        inner.failures.remove(&key);
        self.wake.store(true, Ordering::Release);
        Ok(true)
    }

    /// Forgets the attachments whose network namespace is gone (a sandbox removed without a
    /// DEL): their devices went with it. Returns the pods forgotten.
    pub fn prune_gone(&self) -> Vec<String> {
        let gone: Vec<(String, String)> = self
            .lock()
            .records
            .values()
            .filter(|r| !Path::new(&r.netns).exists())
            .map(|r| (r.container_id.clone(), r.ifname.clone()))
            .collect();
        let mut pods = Vec::new();
        for (container, ifname) in gone {
            let key = self
                .lock()
                .records
                .get(&file_name(&container, &ifname))
                .map(PodAttachment::pod_key);
            match self.detach(&container, &ifname) {
                Ok(true) => pods.extend(key),
                Ok(false) => {}
                Err(error) => log::warn(format_args!(
                    "dropping the attachment record of container {container}: {error}"
                )),
            }
        }
        pods
    }

    /// Every recorded attachment.
    pub fn pods(&self) -> Vec<PodAttachment> {
        self.lock().records.values().cloned().collect()
    }

    /// Whether `key` (`namespace/name`) is recorded.
    pub fn holds(&self, key: &str) -> bool {
        self.lock().records.values().any(|r| r.pod_key() == key)
    }

    /// Notes why the port of recorded pod `key` cannot be opened (`None`: it is open).
    pub fn set_failure(&self, key: &str, failure: Option<String>) {
        let mut inner = self.lock();
        match failure {
            Some(why) => inner.failures.insert(key.to_owned(), why),
            None => inner.failures.remove(key),
        };
    }

    pub fn failure(&self, key: &str) -> Option<String> {
        self.lock().failures.get(key).cloned()
    }

    /// Whether the records changed since the last call.
    pub fn take_wake(&self) -> bool {
        self.wake.swap(false, Ordering::AcqRel)
    }
}

/// The hostPorts node `node` of state directory `state` recorded (for `trace`): none when the
/// node published no admin socket or its record cannot be read.
pub fn recorded_host_ports(state: &Path, node: &str) -> Vec<PodHostPort> {
    let published = super::admin_socket::published_path(state, node);
    let Ok(socket) = std::fs::read_to_string(published) else {
        return Vec::new();
    };
    let dir = dir_for(Path::new(socket.trim()));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let record = std::fs::read(entry.path())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<PodAttachment>(&bytes).ok());
        for record in record.into_iter() {
            out.extend(record.host_ports.iter().map(|mapping| PodHostPort {
                pod: record.pod_key(),
                ip: record.ip,
                mapping: *mapping,
            }));
        }
    }
    out
}

/// Whether the device of `record` still exists: the node end of its veth in the node's
/// namespace, or its TAP (on the node under `host_name`, or in the pod's namespace).
pub fn device_alive(record: &PodAttachment, host_name: &str) -> bool {
    let on_node = dataplane::io::netdev::ifindex(host_name).is_ok();
    match record.device {
        DeviceKind::Veth => on_node,
        DeviceKind::Tap => {
            on_node || {
                let netns = Path::new(&record.netns);
                let ifname = record.ifname.clone();
                netns.exists()
                    && super::netns::run_in(netns, move || {
                        Ok(dataplane::io::netdev::ifindex(&ifname).is_ok())
                    })
                    .unwrap_or(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::attach::{HostPort, Protocol};
    use std::net::Ipv4Addr;

    fn pod(container: &str, name: &str, host_port: Option<u16>) -> PodAttachment {
        PodAttachment {
            container_id: container.to_owned(),
            namespace: "default".to_owned(),
            name: name.to_owned(),
            netns: format!("/run/netns/{container}"),
            ifname: "eth0".to_owned(),
            device: DeviceKind::Veth,
            ip: Ipv4Addr::new(10, 244, 1, 9),
            host_ports: host_port
                .map(|p| HostPort {
                    protocol: Protocol::Tcp,
                    host_port: p,
                    container_port: 80,
                    host_ip: None,
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn records_survive_a_reopen_and_dead_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("admin.attachments");
        let registry = Registry::open(&at, |_| true).unwrap();
        registry.attach(pod("c1", "a", Some(8080))).unwrap();
        registry.attach(pod("c2", "b", None)).unwrap();
        assert!(registry.take_wake());
        assert!(!registry.take_wake());
        drop(registry);
        let registry = Registry::open(&at, |r| r.name != "b").unwrap();
        let pods = registry.pods();
        assert_eq!(pods.len(), 1, "{pods:?}");
        assert_eq!(pods[0].host_ports[0].host_port, 8080);
        assert_eq!(
            std::fs::read_dir(&at).unwrap().count(),
            1,
            "b's file is gone"
        );
        assert!(registry.detach("c1", "eth0").unwrap());
        assert!(!registry.detach("c1", "eth0").unwrap(), "idempotent");
        assert_eq!(std::fs::read_dir(&at).unwrap().count(), 0);
    }

    #[test]
    fn a_taken_host_port_is_refused_naming_both_pods() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), |_| true).unwrap();
        registry.attach(pod("c1", "a", Some(8080))).unwrap();
        let error = registry.attach(pod("c2", "b", Some(8080))).unwrap_err();
        assert!(error.contains("pod default/b"), "{error}");
        assert!(error.contains("pod default/a (container c1)"), "{error}");
        assert_eq!(registry.pods().len(), 1, "the refused pod is not recorded");
        // The same pod again (a new sandbox) replaces its older attachment.
        registry.attach(pod("c3", "a", Some(8080))).unwrap();
        let pods = registry.pods();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].container_id, "c3");
        let garbage = dir.path().join("0000000000000000.json");
        std::fs::write(&garbage, b"{").unwrap();
        drop(registry);
        let registry = Registry::open(dir.path(), |_| true).unwrap();
        assert_eq!(registry.pods().len(), 1);
        assert!(!garbage.exists(), "an unreadable record is dropped");
    }
}
