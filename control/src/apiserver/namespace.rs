//! Namespace admission: the name is an RFC 1123 label, the `kubernetes.io/metadata.name` label
//! is set (so `namespaceSelector`s can pick a namespace by name), the phase is Active, and the
//! seed's `net.beta.kubernetes.io/network-policy` annotation must be well-formed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus};

use crate::model::namespace::{NETWORK_POLICY_ANNOTATION, parse_isolation};
use crate::validate::{FieldError, Validation};

/// Label the API server puts on every Namespace.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Namespaces that exist in every cluster and may not be deleted.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub fn admit(namespace: &mut Namespace) -> Validation {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    if let Some(value) = namespace
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NETWORK_POLICY_ANNOTATION))
    {
        parse_isolation(value).map_err(|m| {
            FieldError::new(
                format!("metadata.annotations[{NETWORK_POLICY_ANNOTATION}]"),
                m,
            )
        })?;
    }
    namespace
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(NAME_LABEL.to_owned(), name);
    namespace.status = Some(NamespaceStatus {
        phase: Some("Active".to_owned()),
        ..NamespaceStatus::default()
    });
    Ok(())
}
