//! Label selector matching, as the endpoints controller and the policy compiler use it.
//!
//! Semantics follow Kubernetes: an equality selector (Service) matches when every pair is
//! present; an empty or absent equality selector selects nothing (a Service without a selector
//! has no managed endpoints). A `LabelSelector` (NetworkPolicy) ANDs `matchLabels` and every
//! `matchExpressions` entry; the empty `LabelSelector` matches everything.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object; `None` and empty behave alike.
pub type Labels = BTreeMap<String, String>;

/// Whether an equality selector (a Service's `spec.selector`) selects `labels`.
/// An empty selector selects nothing.
pub fn equality_selector_matches(selector: &Labels, labels: Option<&Labels>) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
}

/// Whether a `LabelSelector` selects `labels`. Unknown operators match nothing; admission
/// rejects them before they are stored.
pub fn label_selector_matches(selector: &LabelSelector, labels: Option<&Labels>) -> bool {
    let value_of = |key: &str| labels.and_then(|l| l.get(key));
    let pairs_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| value_of(key) == Some(value));
    pairs_match
        && selector.match_expressions.iter().flatten().all(|expr| {
            let values = expr.values.as_deref().unwrap_or_default();
            let current = value_of(&expr.key);
            match expr.operator.as_str() {
                "In" => current.is_some_and(|v| values.contains(v)),
                "NotIn" => current.is_none_or(|v| !values.contains(v)),
                "Exists" => current.is_some(),
                "DoesNotExist" => current.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equality_selector_needs_every_pair() {
        let selector = labels(&[("app", "store"), ("role", "be")]);
        assert!(equality_selector_matches(
            &selector,
            Some(&labels(&[("app", "store"), ("role", "be"), ("x", "y")]))
        ));
        assert!(!equality_selector_matches(
            &selector,
            Some(&labels(&[("app", "store"), ("role", "fe")]))
        ));
        assert!(!equality_selector_matches(
            &selector,
            Some(&labels(&[("app", "store")]))
        ));
        assert!(!equality_selector_matches(&selector, None));
        assert!(!equality_selector_matches(
            &Labels::new(),
            Some(&labels(&[("app", "store")]))
        ));
    }

    #[test]
    fn label_selector_expressions() {
        let expr = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.to_owned(),
            operator: op.to_owned(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        };
        let pod = labels(&[("role", "db"), ("tier", "3")]);
        let everything = LabelSelector::default();
        assert!(label_selector_matches(&everything, None));
        let selector = LabelSelector {
            match_labels: Some(labels(&[("role", "db")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["2", "3"]),
                expr("env", "NotIn", &["prod"]),
                expr("role", "Exists", &[]),
                expr("canary", "DoesNotExist", &[]),
            ]),
        };
        assert!(label_selector_matches(&selector, Some(&pod)));
        let mut other = pod.clone();
        other.insert("env".into(), "prod".into());
        assert!(!label_selector_matches(&selector, Some(&other)));
        let bogus = LabelSelector {
            match_expressions: Some(vec![expr("role", "Near", &["db"])]),
            ..LabelSelector::default()
        };
        assert!(!label_selector_matches(&bogus, Some(&pod)));
    }
}
