//! The node-local settings `trace` runs a node with: its own `node.yaml` (and kube-proxy
//! configuration file), resolved by the same code as `ferroplane run` ([`config::resolve`]),
//! so that what trace says is what the node does.
//!
//! Invariant: one set of settings per node name; a file that does not resolve is an error
//! naming the file and the field, never silently replaced by defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::compile::NodeLocal;
use crate::node::config::{self, Overrides};

/// Each node configuration file resolved as `ferroplane run --config FILE
/// [--kube-proxy-config KP]` resolves it (no other flags), by the node name it gives.
pub fn node_locals(
    configs: &[PathBuf],
    kube_proxy: Option<&PathBuf>,
) -> Result<BTreeMap<String, NodeLocal>, String> {
    let mut locals = BTreeMap::new();
    for path in configs {
        let shown = path.display();
        let mut file = config::load(path).map_err(|e| e.to_string())?;
        if let Some(kp) = kube_proxy {
            config::kube_proxy::load(kp, &mut file).map_err(|e| e.to_string())?;
        }
        let settings =
            config::resolve(file, &Overrides::default()).map_err(|e| format!("{shown}: {e}"))?;
        if locals
            .insert(settings.node_name.clone(), settings.local)
            .is_some()
        {
            return Err(format!(
                "{shown}: node {} already has a --node-config",
                settings.node_name
            ));
        }
    }
    Ok(locals)
}
