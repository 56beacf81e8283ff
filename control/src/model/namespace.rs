//! The legacy per-namespace isolation switch of the seed (Kubernetes 1.3-1.6):
//! `net.beta.kubernetes.io/network-policy: {"ingress": {"isolation": "DefaultDeny"}}`.
//!
//! With it, pods in the namespace accept only ingress that some NetworkPolicy allows, as if a
//! policy selected every pod for ingress. Any other isolation value is rejected at admission.

use k8s_openapi::api::core::v1::Namespace;

/// The annotation key.
pub const NETWORK_POLICY_ANNOTATION: &str = "net.beta.kubernetes.io/network-policy";

/// Parses the annotation value: `Ok(true)` for DefaultDeny ingress, `Ok(false)` when it sets no
/// ingress isolation, an error message for anything else.
pub fn parse_isolation(value: &str) -> Result<bool, String> {
    let json: serde_json::Value =
        serde_json::from_str(value).map_err(|e| format!("must be JSON: {e}"))?;
    let root = json
        .as_object()
        .ok_or("must be a JSON object like {\"ingress\":{\"isolation\":\"DefaultDeny\"}}")?;
    if let Some(key) = root.keys().find(|k| k.as_str() != "ingress") {
        return Err(format!("unknown key {key:?} (only \"ingress\" is defined)"));
    }
    let Some(ingress) = root.get("ingress") else {
        return Ok(false);
    };
    let ingress = ingress.as_object().ok_or("\"ingress\" must be an object")?;
    if let Some(key) = ingress.keys().find(|k| k.as_str() != "isolation") {
        return Err(format!(
            "unknown key \"ingress.{key}\" (only \"isolation\" is defined)"
        ));
    }
    match ingress.get("isolation") {
        None => Ok(false),
        Some(serde_json::Value::String(s)) if s == "DefaultDeny" => Ok(true),
        Some(other) => Err(format!(
            "unsupported ingress isolation {other}: the supported value is \"DefaultDeny\""
        )),
    }
}

/// Whether the namespace isolates all its pods for ingress by default.
pub fn default_deny_ingress(namespace: &Namespace) -> bool {
    namespace
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NETWORK_POLICY_ANNOTATION))
        .is_some_and(|value| parse_isolation(value) == Ok(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_annotation_is_default_deny() {
        let seed = "{\n  \"ingress\": {\n    \"isolation\": \"DefaultDeny\"\n  }\n}\n";
        assert_eq!(parse_isolation(seed), Ok(true));
        assert_eq!(parse_isolation("{}"), Ok(false));
        assert_eq!(parse_isolation("{\"ingress\":{}}"), Ok(false));
    }

    #[test]
    fn other_values_are_errors() {
        assert!(parse_isolation("DefaultDeny").unwrap_err().contains("JSON"));
        assert!(
            parse_isolation("{\"ingress\":{\"isolation\":\"Deny\"}}")
                .unwrap_err()
                .contains("DefaultDeny")
        );
        assert!(
            parse_isolation("{\"egress\":{}}")
                .unwrap_err()
                .contains("egress")
        );
    }
}
