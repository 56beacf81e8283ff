//! Field validation shared by every kind: object names, labels, selectors, ports and protocols,
//! with the rules (and much of the wording) of the Kubernetes API server.
//!
//! Every check returns a [`FieldError`] that names the field by its path in the manifest
//! (`spec.ports[0].port`), so the user can find it.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A rejected field: its path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Result of a validation step.
pub type Validation = Result<(), FieldError>;

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn check_label_shape(value: &str, first_ok: fn(u8) -> bool) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            first_ok(first)
                && is_lower_alnum(last)
                && bytes.iter().all(|&b| is_lower_alnum(b) || b == b'-')
        }
        _ => false,
    }
}

/// RFC 1123 label: at most 63 characters of `[a-z0-9-]`, alphanumeric at both ends.
pub fn dns1123_label(value: &str) -> Result<(), String> {
    if value.len() <= 63 && check_label_shape(value, is_lower_alnum) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid name: a lowercase RFC 1123 label must consist of at most 63 lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        ))
    }
}

/// RFC 1035 label (Service names): like an RFC 1123 label but must start with a letter.
pub fn dns1035_label(value: &str) -> Result<(), String> {
    if value.len() <= 63 && check_label_shape(value, |b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid name: a DNS-1035 label must consist of at most 63 lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
        ))
    }
}

/// RFC 1123 subdomain: dot-separated RFC 1123 labels, at most 253 characters in all.
pub fn dns1123_subdomain(value: &str) -> Result<(), String> {
    let labels_ok = value
        .split('.')
        .all(|label| check_label_shape(label, is_lower_alnum));
    if value.len() <= 253 && labels_ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn label_name_ok(value: &str) -> bool {
    let bytes = value.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(f), Some(l)) if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric())
        && bytes.len() <= 63
        && bytes.iter().all(|&b| is_label_char(b))
}

/// A label or annotation key: `[prefix/]name`, prefix an RFC 1123 subdomain, name at most 63
/// characters of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns1123_subdomain(prefix).map_err(|_| {
            format!("key {key:?}: the prefix before '/' must be a DNS subdomain (e.g. example.com)")
        })?;
    }
    if !label_name_ok(name) {
        return Err(format!(
            "key {key:?}: name part must consist of at most 63 alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || label_name_ok(value) {
        Ok(())
    } else {
        Err(format!(
            "value {value:?}: a label value must be empty or consist of at most 63 alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

/// Every key and value of a label map (`metadata.labels`, a Service's `spec.selector`).
pub fn labels(field: &str, map: Option<&BTreeMap<String, String>>) -> Validation {
    for (key, value) in map.into_iter().flatten() {
        qualified_name(key).map_err(|m| FieldError::new(field, m))?;
        label_value(value).map_err(|m| FieldError::new(format!("{field}[{key}]"), m))?;
    }
    Ok(())
}

/// A `LabelSelector`: valid `matchLabels` and `matchExpressions` with known operators and the
/// value lists each operator requires.
pub fn label_selector(field: &str, selector: &LabelSelector) -> Validation {
    labels(
        &format!("{field}.matchLabels"),
        selector.match_labels.as_ref(),
    )?;
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        qualified_name(&expr.key).map_err(|m| FieldError::new(format!("{at}.key"), m))?;
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(FieldError::new(
                    format!("{at}.values"),
                    format!("must be specified when `operator` is '{}'", expr.operator),
                ));
            }
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(FieldError::new(
                    format!("{at}.values"),
                    format!(
                        "may not be specified when `operator` is '{}'",
                        expr.operator
                    ),
                ));
            }
            "Exists" | "DoesNotExist" => {}
            other => {
                return Err(FieldError::new(
                    format!("{at}.operator"),
                    format!(
                        "unsupported value {other:?}: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""
                    ),
                ));
            }
        }
        for (j, value) in values.iter().enumerate() {
            label_value(value).map_err(|m| FieldError::new(format!("{at}.values[{j}]"), m))?;
        }
    }
    Ok(())
}

/// IANA service name (a named port): at most 15 characters of `[a-z0-9-]`, at least one
/// letter, no leading, trailing or doubled '-'.
pub fn port_name(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 15
        && bytes.iter().all(|&b| is_lower_alnum(b) || b == b'-')
        && bytes.iter().any(u8::is_ascii_lowercase)
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
        && !value.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid port name: it must be at most 15 lower case alphanumeric characters or '-', contain at least one letter, and not start, end or repeat '-'"
        ))
    }
}

/// A port number: 1-65535.
pub fn port_number(field: &str, port: i32) -> Validation {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{port} is out of range: must be between 1 and 65535, inclusive"),
        ))
    }
}

/// A port given by number or by name (`targetPort`, policy `port`).
pub fn number_or_name(field: &str, port: &IntOrString) -> Validation {
    match port {
        IntOrString::Int(number) => port_number(field, *number),
        IntOrString::String(name) => port_name(name).map_err(|m| FieldError::new(field, m)),
    }
}

/// Defaults an absent protocol to TCP and accepts any letter case (the seed writes `tcp`),
/// leaving the canonical upper-case name.
pub fn normalize_protocol(field: &str, protocol: &mut Option<String>) -> Validation {
    let canonical = match protocol.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("TCP") => "TCP",
        Some("UDP") => "UDP",
        Some("SCTP") => "SCTP",
        Some(_) => {
            return Err(FieldError::new(
                field,
                format!(
                    "unsupported value {:?}: supported values: \"TCP\", \"UDP\", \"SCTP\"",
                    protocol.as_deref().unwrap_or_default()
                ),
            ));
        }
    };
    *protocol = Some(canonical.to_owned());
    Ok(())
}

/// One of the listed values, or a field error that lists them.
pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> Validation {
    if allowed.contains(&value) {
        Ok(())
    } else {
        let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        Err(FieldError::new(
            field,
            format!(
                "unsupported value {value:?}: supported values: {}",
                list.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
