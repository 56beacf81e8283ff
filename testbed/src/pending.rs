//! New pods start not ready, as a kubelet reports them until their containers run: before the
//! testbed applies manifests it marks every Pod that is new to the cluster and declares no
//! Ready condition with `Ready=False`, and sets it `True` once the pod is wired and its server
//! answers. So a Service never sends traffic to a pod whose interface is not there yet.
//!
//! Invariants: only new Pods without a Ready condition of their own are touched; every other
//! object is applied as written; a manifest set with any undecodable document is handed to
//! `ferroplane apply` unchanged, which reports the error with its file and line.

use std::path::PathBuf;

use control::k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use control::manifest;
use control::model::Object;

use crate::error::{Error, Result};

/// Manifests ready for `ferroplane apply -f -`, and the pods (namespace, name) they mark
/// pending.
pub struct Prepared {
    pub json: String,
    pub pending: Vec<(String, String)>,
}

/// Reads `files`; `None` when some document does not decode (apply them as they are).
pub fn prepare(files: &[PathBuf], is_new: impl Fn(&str, &str) -> bool) -> Result<Option<Prepared>> {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let entries = manifest::load(&names).map_err(Error)?;
    let mut json = String::new();
    let mut pending = Vec::new();
    for entry in entries {
        let Ok(mut object) = entry.result else {
            return Ok(None);
        };
        if let Object::Pod(pod) = &mut object {
            let namespace = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned());
            let name = pod.metadata.name.clone().unwrap_or_default();
            let declares_ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
            if is_new(&namespace, &name) && !declares_ready {
                let status = pod.status.get_or_insert_with(PodStatus::default);
                let conditions = status.conditions.get_or_insert_with(Vec::new);
                conditions.push(PodCondition {
                    type_: "Ready".to_owned(),
                    status: "False".to_owned(),
                    reason: Some("ContainersNotReady".to_owned()),
                    ..PodCondition::default()
                });
                pending.push((namespace, name));
            }
        }
        json.push_str(&object.to_json_value().to_string());
        json.push('\n');
    }
    Ok(Some(Prepared { json, pending }))
}
