//! Name, label, selector, port and protocol rules, each checked on accepted and rejected
//! examples taken from the Kubernetes validation rules.

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

#[test]
fn names() {
    assert!(dns1123_label("store-be").is_ok());
    assert!(dns1123_label("1abc").is_ok());
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
        assert!(dns1123_label(bad).is_err(), "{bad:?}");
    }
    assert!(dns1035_label("kube-dns").is_ok());
    assert!(dns1035_label("1abc").is_err());
    assert!(dns1123_subdomain("node-1.example.com").is_ok());
    for bad in ["", "a..b", ".a", "a.", "A.b", &"a".repeat(254)] {
        assert!(dns1123_subdomain(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn label_keys_and_values() {
    for good in ["app", "k8s-app", "app.kubernetes.io/name", "A_b.c"] {
        assert!(qualified_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "/app",
        "Example.com/app",
        "app/",
        "a b",
        "-app",
        &"a".repeat(64),
    ] {
        assert!(qualified_name(bad).is_err(), "{bad:?}");
    }
    assert!(label_value("").is_ok());
    assert!(label_value("Be_1.x").is_ok());
    for bad in ["a b", "-a", "a-", "a/b", &"a".repeat(64)] {
        assert!(label_value(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn label_map_error_names_the_key() {
    let map: BTreeMap<String, String> = [("app".to_owned(), "bad value".to_owned())].into();
    let err = labels("spec.selector", Some(&map)).unwrap_err();
    assert_eq!(err.field, "spec.selector[app]");
    assert!(err.message.contains("bad value"));
}

#[test]
fn selector_operators_and_values() {
    let expr = |op: &str, values: Option<Vec<&str>>| LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "role".into(),
            operator: op.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        }]),
        ..LabelSelector::default()
    };
    assert!(label_selector("s", &expr("In", Some(vec!["db"]))).is_ok());
    assert!(label_selector("s", &expr("Exists", None)).is_ok());
    let err = label_selector("s", &expr("In", None)).unwrap_err();
    assert_eq!(err.field, "s.matchExpressions[0].values");
    let err = label_selector("s", &expr("Exists", Some(vec!["x"]))).unwrap_err();
    assert_eq!(err.field, "s.matchExpressions[0].values");
    let err = label_selector("s", &expr("Equals", Some(vec!["x"]))).unwrap_err();
    assert_eq!(err.field, "s.matchExpressions[0].operator");
    assert!(err.message.contains("Equals"));
}

#[test]
fn port_names_follow_iana_rules() {
    for good in ["http", "dns-tcp", "h2c", "a1"] {
        assert!(port_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "80",
        "HTTP",
        "-http",
        "http-",
        "ht--tp",
        "sixteen-letters1",
    ] {
        assert!(port_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn port_numbers() {
    assert!(port_number("p", 1).is_ok() && port_number("p", 65535).is_ok());
    let err = port_number("spec.ports[0].port", 70000).unwrap_err();
    assert_eq!(err.field, "spec.ports[0].port");
    assert!(err.message.contains("70000"));
    assert!(port_number("p", 0).is_err());
    assert!(number_or_name("p", &IntOrString::String("80".into())).is_err());
    assert!(number_or_name("p", &IntOrString::String("http".into())).is_ok());
}

#[test]
fn protocols_default_and_normalise() {
    let mut protocol = None;
    normalize_protocol("p", &mut protocol).unwrap();
    assert_eq!(protocol.as_deref(), Some("TCP"));
    let mut protocol = Some("tcp".to_owned());
    normalize_protocol("p", &mut protocol).unwrap();
    assert_eq!(protocol.as_deref(), Some("TCP"));
    let mut protocol = Some("Udp".to_owned());
    normalize_protocol("p", &mut protocol).unwrap();
    assert_eq!(protocol.as_deref(), Some("UDP"));
    let mut protocol = Some("ICMP".to_owned());
    let err = normalize_protocol("spec.ports[0].protocol", &mut protocol).unwrap_err();
    assert!(err.message.contains("ICMP") && err.message.contains("SCTP"));
}
