//! Object metadata as the API server handles it on every write: the namespace is resolved (the
//! manifest's, else the command line's, else `default`), the name is checked against the
//! kind's naming rule, labels and annotation keys are validated, and the fields the server owns
//! (uid, resourceVersion, creationTimestamp, selfLink, managedFields) are cleared so a manifest
//! can never set them; [`set_identity`] fills them in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::model::{Kind, Object, ObjectRef};
use crate::validate::{self, FieldError};

/// Resolves namespace and name and validates them; returns the object's key, or the error
/// together with the best key known so far (for the message).
pub fn prepare(
    object: &mut Object,
    default_namespace: Option<&str>,
) -> Result<ObjectRef, (ObjectRef, FieldError)> {
    let kind = object.kind();
    let meta = object.metadata_mut();
    let name = meta.name.clone().unwrap_or_default();
    let namespace = if kind.is_namespaced() {
        let given = meta.namespace.clone().filter(|ns| !ns.is_empty());
        match (given, default_namespace) {
            (Some(own), Some(flag)) if own != flag => {
                let key = ObjectRef::new(kind, &own, &name);
                return Err((
                    key,
                    FieldError::new(
                        "metadata.namespace",
                        format!(
                            "the namespace from the provided object {own:?} does not match the namespace {flag:?} given on the command line"
                        ),
                    ),
                ));
            }
            (Some(own), _) => own,
            (None, Some(flag)) => flag.to_owned(),
            (None, None) => "default".to_owned(),
        }
    } else {
        String::new()
    };
    meta.namespace = kind.is_namespaced().then(|| namespace.clone());
    let key = ObjectRef::new(kind, &namespace, &name);
    check(kind, meta, &namespace, &name).map_err(|error| (key.clone(), error))?;
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.self_link = None;
    meta.managed_fields = None;
    if kind != Kind::Pod {
        meta.deletion_timestamp = None;
    }
    Ok(key)
}

fn check(kind: Kind, meta: &ObjectMeta, namespace: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        let hint = if meta.generate_name.is_some() {
            " (generateName is not supported)"
        } else {
            ""
        };
        return Err(FieldError::new("metadata.name", format!("required{hint}")));
    }
    let name_rule = match kind {
        Kind::Namespace => validate::dns1123_label,
        Kind::Service => validate::dns1035_label,
        _ => validate::dns1123_subdomain,
    };
    name_rule(name).map_err(|m| FieldError::new("metadata.name", m))?;
    if kind.is_namespaced() {
        validate::dns1123_label(namespace).map_err(|m| FieldError::new("metadata.namespace", m))?;
    }
    validate::labels("metadata.labels", meta.labels.as_ref())?;
    for key in meta.annotations.iter().flatten().map(|(k, _)| k) {
        validate::qualified_name(key).map_err(|m| FieldError::new("metadata.annotations", m))?;
    }
    Ok(())
}

/// Fills in the server-owned identity: kept from the stored object on update, fresh on create.
pub fn set_identity(meta: &mut ObjectMeta, existing: Option<&ObjectMeta>, now: &Time) {
    match existing {
        Some(old) => {
            meta.uid = old.uid.clone();
            meta.creation_timestamp = old.creation_timestamp.clone();
            meta.resource_version = old.resource_version.clone();
        }
        None => {
            meta.uid = Some(uuid::Uuid::new_v4().to_string());
            meta.creation_timestamp = Some(now.clone());
        }
    }
}
