//! The node's podCIDR for the CNI plugin: written next to the admin socket
//! (`<socket without extension>.pod-cidr`, e.g. `/run/ferroplane/admin.pod-cidr`), which the
//! plugin's `podCIDRFile` names, whenever the Node's `spec.podCIDRs` are known or change: one
//! range, or in a dual-stack cluster both, comma-separated, primary family first.
//!
//! Invariants: the file appears whole (written under a temporary name, then renamed); it is
//! rewritten only when the podCIDR changes; a failure to write is logged once per change and
//! never stops the node.

use std::path::{Path, PathBuf};

use super::log;
use crate::model::node as node_model;
use crate::state::ClusterState;

/// Where the podCIDR of the node serving `admin_socket` is published.
pub fn path_for(admin_socket: &Path) -> PathBuf {
    admin_socket.with_extension("pod-cidr")
}

/// Keeps the file at `path` holding the podCIDR of node `node`.
pub struct PodCidrFile {
    path: PathBuf,
    written: Option<String>,
}

impl PodCidrFile {
    pub fn new(path: PathBuf) -> PodCidrFile {
        PodCidrFile {
            path,
            written: None,
        }
    }

    /// Writes the podCIDR of `node` in `state` if it changed since the last write.
    pub fn update(&mut self, state: &ClusterState, node: &str) {
        let cidrs = state
            .node(node)
            .map(node_model::pod_cidrs)
            .unwrap_or_default();
        if cidrs.is_empty() {
            return;
        }
        let cidr = cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        if self.written.as_deref() == Some(cidr.as_str()) {
            return;
        }
        match write(&self.path, &cidr) {
            Ok(()) => log::info(format_args!(
                "podCIDR {cidr} published for the CNI plugin in {}",
                self.path.display()
            )),
            Err(e) => log::warn(format_args!(
                "writing the podCIDR to {}: {e}",
                self.path.display()
            )),
        }
        self.written = Some(cidr);
    }
}

fn write(path: &Path, cidr: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension("pod-cidr.tmp");
    std::fs::write(&temp, format!("{cidr}\n"))?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sits_next_to_the_admin_socket() {
        assert_eq!(
            path_for(Path::new("/run/ferroplane/admin.sock")),
            Path::new("/run/ferroplane/admin.pod-cidr")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.pod-cidr");
        write(&path, "10.244.1.0/24").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "10.244.1.0/24\n");
        let parsed = crate::cni::ipam::PodRange::parse(&std::fs::read_to_string(&path).unwrap());
        assert!(parsed.is_ok(), "the plugin reads what the node writes");
        write(&path, "10.244.1.0/24,fd00:10:244:1::/64").unwrap();
        let both = crate::cni::ipam::PodRange::parse_list(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(both.map(|r| r.len()), Ok(2), "both families");
    }
}
