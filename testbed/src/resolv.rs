//! Each pod's `/etc/resolv.conf`, as kubelet writes it for `dnsPolicy: ClusterFirst`: the
//! cluster DNS Service IP, `search <ns>.svc.<domain> svc.<domain> <domain>`, `options ndots:5`.
//! It lives in `/etc/netns/<pod netns>/resolv.conf`, which `ip netns exec` (and so
//! `testbed exec`) bind-mounts over `/etc/resolv.conf` for every command run in the pod.
//!
//! Invariants: only directories named after this testbed's own namespaces are written or
//! removed; `remove_all` works from the directory names alone (after a killed run too).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::{Result, context};
use crate::layout::Layout;

const NETNS_ETC: &str = "/etc/netns";

fn dir_of(netns: &str) -> PathBuf {
    Path::new(NETNS_ETC).join(netns)
}

/// The file's text for a pod in `namespace`.
pub fn text(namespace: &str, nameserver: IpAddr, domain: &str) -> String {
    format!(
        "nameserver {nameserver}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\n\
         options ndots:5\n"
    )
}

/// Writes the resolv.conf of the pod whose network namespace is `netns`.
pub fn write(netns: &str, namespace: &str, nameserver: IpAddr, domain: &str) -> Result<()> {
    let dir = dir_of(netns);
    std::fs::create_dir_all(&dir).map_err(context(dir.display()))?;
    let path = dir.join("resolv.conf");
    std::fs::write(&path, text(namespace, nameserver, domain)).map_err(context(path.display()))
}

/// Removes the `/etc/netns` entries of this testbed's namespaces.
pub fn remove_all(layout: &Layout) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(NETNS_ETC) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| layout.owns(n)) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(context(path.display()))?;
        }
    }
    Ok(())
}

/// Removes one pod's entry (when the pod goes).
pub fn remove(netns: &str) {
    // Absent already is fine: the pod may have had none.
    let _ = std::fs::remove_dir_all(dir_of(netns));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_path_and_ndots_are_kubelets() {
        let text = text("shop", IpAddr::from([10, 96, 0, 10]), "cluster.local");
        assert_eq!(
            text,
            "nameserver 10.96.0.10\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local\n\
             options ndots:5\n"
        );
    }
}
