//! One manifest document (already parsed to JSON values) to a typed [`Object`]: kind and
//! apiVersion dispatch, conversion of older API versions (extensions/v1beta1 NetworkPolicy),
//! decoding with the path of a bad field, and strict field validation (an unknown field such as
//! a misspelt `selectr` is an error, as with `kubectl apply --validate=strict`).

use serde_json::Value;

use crate::model::{Kind, Object};

/// Why a document is not a valid object; `field` is a path like `spec.ports[0].port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub field: Option<String>,
    pub message: String,
}

impl DecodeError {
    fn new(field: Option<String>, message: impl Into<String>) -> DecodeError {
        DecodeError {
            field,
            message: message.into(),
        }
    }
}

/// `Kind namespace/name` as far as the raw document says, for error messages.
pub fn describe(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    Some(
        match meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
        {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        },
    )
}

fn string_field<'a>(value: &'a Value, field: &str) -> Result<&'a str, DecodeError> {
    match value.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None => Err(DecodeError::new(Some(field.to_owned()), "required")),
        Some(other) => Err(DecodeError::new(
            Some(field.to_owned()),
            format!("must be a string, not {other}"),
        )),
    }
}

/// The `kind` of a document when it is a list (`List`, `ServiceList`, ...).
pub fn list_kind(value: &Value) -> Option<&str> {
    let kind = value.get("kind")?.as_str()?;
    let is_list = kind == "List"
        || kind
            .strip_suffix("List")
            .is_some_and(|k| Kind::from_manifest_name(k).is_some());
    is_list.then_some(kind)
}

/// Decodes one object document.
pub fn decode(mut value: Value) -> Result<Object, DecodeError> {
    if !value.is_object() {
        return Err(DecodeError::new(
            None,
            "a document must be a mapping with apiVersion, kind and metadata",
        ));
    }
    let kind_name = string_field(&value, "kind")?;
    let api_version = string_field(&value, "apiVersion")?;
    let Some(kind) = Kind::from_manifest_name(kind_name) else {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        return Err(DecodeError::new(
            Some("kind".to_owned()),
            format!(
                "unknown kind {kind_name:?} (apiVersion {api_version:?}); ferroplane stores {}",
                known.join(", ")
            ),
        ));
    };
    if !kind.accepted_api_versions().contains(&api_version) {
        return Err(DecodeError::new(
            Some("apiVersion".to_owned()),
            format!(
                "{api_version:?} is not supported for {kind} (supported: {})",
                kind.accepted_api_versions().join(", ")
            ),
        ));
    }
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "apiVersion".to_owned(),
            Value::String(kind.api_version().to_owned()),
        );
    }
    let object = Object::from_json_value(kind, &value).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        DecodeError::new(field, e.into_inner().to_string())
    })?;
    if let Some(path) = unknown_field(&value, &object.to_json_value(), "") {
        return Err(DecodeError::new(
            Some(path.clone()),
            format!("unknown field {:?}", last_segment(&path)),
        ));
    }
    Ok(object)
}

fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// The first field present (and not null) in `input` that did not survive decoding into the
/// typed object and back, i.e. a field the schema does not have.
fn unknown_field(input: &Value, decoded: &Value, path: &str) -> Option<String> {
    match (input, decoded) {
        (Value::Object(given), Value::Object(kept)) => given
            .iter()
            .filter(|(_, v)| !v.is_null())
            .find_map(|(key, v)| {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    None => Some(here),
                    Some(k) => unknown_field(v, k, &here),
                }
            }),
        (Value::Array(given), Value::Array(kept)) => given
            .iter()
            .zip(kept)
            .enumerate()
            .find_map(|(i, (v, k))| unknown_field(v, k, &format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let doc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
            "spec": {"selectr": {"app": "x"}, "ports": [{"port": 80}]}});
        let err = decode(doc).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("spec.selectr"));
        let doc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
            "spec": {"ports": [{"port": 80, "targetprt": 8080}]}});
        assert_eq!(
            decode(doc).unwrap_err().field.as_deref(),
            Some("spec.ports[0].targetprt")
        );
        let doc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "creationTimestamp": null}, "Spec": {}});
        assert_eq!(decode(doc).unwrap_err().field.as_deref(), Some("Spec"));
    }

    #[test]
    fn type_errors_name_the_field() {
        let doc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
            "spec": {"ports": [{"port": "eighty"}]}});
        let err = decode(doc).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("spec.ports[0].port"));
        assert!(err.message.contains("eighty"), "{}", err.message);
    }

    #[test]
    fn kinds_and_versions() {
        let err = decode(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}}),
        )
        .unwrap_err();
        assert!(
            err.message.contains("unknown kind \"Deployment\""),
            "{}",
            err.message
        );
        let err = decode(json!({"apiVersion": "v2", "kind": "Service", "metadata": {"name": "a"}}))
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("apiVersion"));
        let err = decode(json!({"kind": "Service", "metadata": {"name": "a"}})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("apiVersion"));
        let old = json!({"apiVersion": "extensions/v1beta1", "kind": "NetworkPolicy", "metadata": {"name": "p"}, "spec": {}});
        let object = decode(old).unwrap();
        assert_eq!(object.to_json_value()["apiVersion"], "networking.k8s.io/v1");
    }

    #[test]
    fn list_kinds() {
        assert_eq!(list_kind(&json!({"kind": "List"})), Some("List"));
        assert_eq!(
            list_kind(&json!({"kind": "ServiceList"})),
            Some("ServiceList")
        );
        assert_eq!(list_kind(&json!({"kind": "FooList"})), None);
        assert_eq!(list_kind(&json!({"kind": "Service"})), None);
    }
}
