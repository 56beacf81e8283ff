//! Service IP families, policies and ClusterIPs in IPv4, IPv6 and dual-stack clusters: the
//! upstream API server's defaulting, its error texts and allocation per family.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::model::StoredKind;
use crate::settings::ClusterSettings;

fn settings(json: &str) -> ClusterSettings {
    ClusterSettings::from_json(json.as_bytes()).unwrap()
}

fn ipv4() -> ClusterSettings {
    ClusterSettings::default()
}

fn dual() -> ClusterSettings {
    settings(
        r#"{"secondaryClusterCIDR":"fd00:10:244::/56","secondaryServiceCIDR":"fd00:10:96::/108","secondaryLoadBalancerPool":"2001:db8:51::/120"}"#,
    )
}

fn dual_ipv6_primary() -> ClusterSettings {
    settings(
        r#"{"clusterCIDR":"fd00:10:244::/56","secondaryClusterCIDR":"10.244.0.0/16","serviceCIDR":"fd00:10:96::/108","secondaryServiceCIDR":"10.96.0.0/12","clusterDNS":"fd00:10:96::a","loadBalancerPool":"2001:db8:51::/120","secondaryLoadBalancerPool":"198.51.100.0/24"}"#,
    )
}

fn ipv6() -> ClusterSettings {
    settings(
        r#"{"clusterCIDR":"fd00:10:244::/56","serviceCIDR":"fd00:10:96::/108","clusterDNS":"fd00:10:96::a","loadBalancerPool":"2001:db8:51::/120"}"#,
    )
}

/// A cluster's settings, by the function that makes them.
type Cluster = fn() -> ClusterSettings;

fn server(settings: ClusterSettings) -> ApiServer {
    ApiServer::new(
        ClusterState::new(settings),
        Timestamp::from_second(1_700_000_000).unwrap(),
    )
}

/// A Service `name` with selector app=web, port 80 and `spec` merged in.
fn service(name: &str, spec: Value) -> Object {
    let mut base = json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    });
    if let (Some(base_spec), Some(extra)) = (base["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base_spec.insert(k.clone(), v.clone());
        }
    }
    let service: Service = serde_json::from_value(base).unwrap();
    service.into_object()
}

fn apply(api: &mut ApiServer, name: &str, spec: Value) -> Result<Value, String> {
    api.apply(service(name, spec), None)
        .map(|applied| match applied.object {
            Object::Service(s) => serde_json::to_value(s.as_ref()).unwrap(),
            other => panic!("not a Service: {other:?}"),
        })
        .map_err(|r| r.to_string())
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn family_of(ip: &str) -> &'static str {
    if ip.parse::<std::net::IpAddr>().unwrap().is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// What a created Service ends up with: policy, families and the family of each ClusterIP.
#[test]
fn creation_defaults_families_and_allocates_one_ip_per_family() {
    struct Case {
        cluster: fn() -> ClusterSettings,
        spec: Value,
        policy: &'static str,
        families: &'static [&'static str],
    }
    let cases = [
        Case {
            cluster: ipv4,
            spec: json!({}),
            policy: "SingleStack",
            families: &["IPv4"],
        },
        Case {
            cluster: ipv4,
            spec: json!({"ipFamilyPolicy": "PreferDualStack"}),
            policy: "PreferDualStack",
            families: &["IPv4"],
        },
        Case {
            cluster: dual,
            spec: json!({}),
            policy: "SingleStack",
            families: &["IPv4"],
        },
        Case {
            cluster: dual,
            spec: json!({"ipFamilyPolicy": "PreferDualStack"}),
            policy: "PreferDualStack",
            families: &["IPv4", "IPv6"],
        },
        Case {
            cluster: dual,
            spec: json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"]}),
            policy: "RequireDualStack",
            families: &["IPv6", "IPv4"],
        },
        Case {
            cluster: dual,
            spec: json!({"ipFamilies": ["IPv6"]}),
            policy: "SingleStack",
            families: &["IPv6"],
        },
        Case {
            cluster: dual,
            spec: json!({"clusterIP": "fd00:10:96::100"}),
            policy: "SingleStack",
            families: &["IPv6"],
        },
        Case {
            cluster: dual,
            spec: json!({"ipFamilyPolicy": "PreferDualStack", "clusterIPs": ["fd00:10:96::100"]}),
            policy: "PreferDualStack",
            families: &["IPv6", "IPv4"],
        },
        Case {
            cluster: dual_ipv6_primary,
            spec: json!({}),
            policy: "SingleStack",
            families: &["IPv6"],
        },
        Case {
            cluster: dual_ipv6_primary,
            spec: json!({"ipFamilyPolicy": "PreferDualStack"}),
            policy: "PreferDualStack",
            families: &["IPv6", "IPv4"],
        },
        Case {
            cluster: ipv6,
            spec: json!({}),
            policy: "SingleStack",
            families: &["IPv6"],
        },
        Case {
            cluster: ipv6,
            spec: json!({"ipFamilyPolicy": "PreferDualStack"}),
            policy: "PreferDualStack",
            families: &["IPv6"],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut api = server((case.cluster)());
        let svc =
            apply(&mut api, "web", case.spec.clone()).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let spec = &svc["spec"];
        assert_eq!(spec["ipFamilyPolicy"], case.policy, "case {i}: {spec}");
        assert_eq!(
            strings(&spec["ipFamilies"]),
            case.families,
            "case {i}: {spec}"
        );
        let ips = strings(&spec["clusterIPs"]);
        let ip_families: Vec<&str> = ips.iter().map(|ip| family_of(ip)).collect();
        assert_eq!(ip_families, case.families, "case {i}: {spec}");
        assert_eq!(
            spec["clusterIP"],
            ips[0].as_str(),
            "case {i}: clusterIP is clusterIPs[0]"
        );
        let settings = (case.cluster)();
        for ip in &ips {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert!(
                settings.service_cidrs().iter().any(|c| c.contains(ip)),
                "case {i}: {ip} outside the service CIDRs"
            );
        }
    }
}

/// Rejections, with the upstream API server's field and text.
#[test]
fn invalid_family_fields_are_refused_with_upstreams_text() {
    let cases: &[(Cluster, Value, &str)] = &[
        (
            ipv4,
            json!({"ipFamilies": ["IPv6"]}),
            r#"spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster"#,
        ),
        (
            ipv4,
            json!({"ipFamilyPolicy": "RequireDualStack"}),
            r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#,
        ),
        (
            ipv4,
            json!({"clusterIP": "fd00:10:96::5"}),
            r#"spec.clusterIPs[0]: Invalid value: ["fd00:10:96::5"]: IPv6 is not configured on this cluster"#,
        ),
        (
            ipv6,
            json!({"ipFamilies": ["IPv4"]}),
            r#"spec.ipFamilies[0]: Invalid value: "IPv4": not configured on this cluster"#,
        ),
        (
            dual,
            json!({"ipFamilies": ["IPv4", "IPv6"]}),
            r#"spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"#,
        ),
        (
            dual,
            json!({"clusterIPs": ["10.96.100.1", "fd00:10:96::100"]}),
            r#"spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"#,
        ),
        (
            dual,
            json!({"ipFamilyPolicy": "PreferDualStack", "clusterIPs": ["10.96.100.1", "10.96.100.2"]}),
            r#"spec.clusterIPs: Invalid value: ["10.96.100.1", "10.96.100.2"]: may specify no more than one IP for each IP family"#,
        ),
        (
            dual,
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"], "clusterIPs": ["10.96.100.1", "fd00:10:96::100"]}),
            r#"spec.clusterIPs[0]: Invalid value: "10.96.100.1": expected an IPv6 value as indicated by `ipFamilies[0]`"#,
        ),
        (
            dual,
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv4"]}),
            r#"spec.ipFamilies[1]: Duplicate value: "IPv4""#,
        ),
        (
            dual,
            json!({"ipFamilies": ["ipv6"]}),
            r#"spec.ipFamilies[0]: unsupported value "ipv6": supported values: "IPv4", "IPv6""#,
        ),
        (
            dual,
            json!({"ipFamilyPolicy": "DualStack"}),
            r#"spec.ipFamilyPolicy: unsupported value "DualStack": supported values: "PreferDualStack", "RequireDualStack", "SingleStack""#,
        ),
        (
            dual,
            json!({"clusterIP": "10.96.100.1", "clusterIPs": ["10.96.100.2"]}),
            r#"spec.clusterIPs: Invalid value: ["10.96.100.2"]: first value must match `clusterIP`"#,
        ),
        (
            dual,
            json!({"ipFamilyPolicy": "PreferDualStack", "clusterIPs": ["None", "fd00:10:96::100"]}),
            r#"spec.clusterIPs: Invalid value: ["None", "fd00:10:96::100"]: 'None' must be the first and only value"#,
        ),
        (
            dual,
            json!({"ipFamilyPolicy": "PreferDualStack", "clusterIPs": ["10.96.100.1", "fd00:10:96::100", "10.96.100.2"]}),
            r#"spec.clusterIPs: Invalid value: ["10.96.100.1", "fd00:10:96::100", "10.96.100.2"]: may only hold up to 2 values"#,
        ),
        (
            dual,
            json!({"ipFamilyPolicy": "PreferDualStack", "clusterIPs": ["10.96.100.1", "fd00:99::1"]}),
            "spec.clusterIPs[1]: fd00:99::1 is not in the valid range: the IPv6 service CIDRs are fd00:10:96::/108",
        ),
        (
            dual,
            json!({"type": "ExternalName", "externalName": "example.com", "ports": [], "ipFamilies": ["IPv4"]}),
            "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
        ),
        (
            dual,
            json!({"type": "ExternalName", "externalName": "example.com", "ports": [], "ipFamilyPolicy": "SingleStack"}),
            "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services",
        ),
    ];
    for (cluster, spec, expected) in cases {
        let mut api = server(cluster());
        let err = apply(&mut api, "web", spec.clone()).unwrap_err();
        assert!(
            err.contains(expected),
            "{spec}:\n got  {err}\n want {expected}"
        );
        assert!(
            api.state().services().next().is_none(),
            "{spec}: stored nothing"
        );
    }
}

#[test]
fn headless_services_get_families_but_no_cluster_ips() {
    // Selectorless headless: RequireDualStack and both families, even in a single-stack
    // cluster (upstream's one exception).
    for cluster in [ipv4, dual] {
        let mut api = server(cluster());
        let svc = apply(&mut api, "h", json!({"clusterIP": "None", "selector": {}})).unwrap();
        assert_eq!(svc["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(strings(&svc["spec"]["ipFamilies"]), ["IPv4", "IPv6"]);
        assert_eq!(strings(&svc["spec"]["clusterIPs"]), ["None"]);
    }
    let mut api = server(dual());
    let svc = apply(
        &mut api,
        "h",
        json!({"clusterIP": "None", "ipFamilyPolicy": "PreferDualStack"}),
    )
    .unwrap();
    assert_eq!(strings(&svc["spec"]["ipFamilies"]), ["IPv4", "IPv6"]);
    assert_eq!(svc["spec"]["clusterIP"], "None");
    let mut api = server(ipv4());
    let err = apply(
        &mut api,
        "h",
        json!({"clusterIP": "None", "ipFamilyPolicy": "RequireDualStack"}),
    )
    .unwrap_err();
    assert!(
        err.contains("this cluster is not configured for dual-stack services"),
        "{err}"
    );
}

#[test]
fn external_name_services_get_no_families() {
    let mut api = server(dual());
    let svc = apply(
        &mut api,
        "ext",
        json!({"type": "ExternalName", "externalName": "example.com", "ports": []}),
    )
    .unwrap();
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert!(svc["spec"][field].is_null(), "{field}: {svc}");
    }
}

#[test]
fn dual_stack_load_balancer_gets_an_ingress_ip_of_each_family() {
    let mut api = server(dual());
    let svc = apply(
        &mut api,
        "lb",
        json!({"type": "LoadBalancer", "ipFamilyPolicy": "RequireDualStack"}),
    )
    .unwrap();
    let ingress: Vec<&str> = svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ingress, ["198.51.100.1", "2001:db8:51::1"]);
    let ports = &svc["spec"]["ports"][0];
    assert!(
        ports["nodePort"].as_i64().is_some(),
        "node port for both families: {svc}"
    );

    let svc = apply(
        &mut api,
        "lb6",
        json!({"type": "LoadBalancer", "ipFamilies": ["IPv6"], "loadBalancerIP": "2001:db8:51::9"}),
    )
    .unwrap();
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"][0]["ip"],
        "2001:db8:51::9"
    );
    let err = apply(
        &mut api,
        "lb4",
        json!({"type": "LoadBalancer", "loadBalancerIP": "2001:db8:51::10"}),
    )
    .unwrap_err();
    assert!(err.contains(r#"spec.loadBalancerIP: 2001:db8:51::10 is IPv6 but the Service's ipFamilies are ["IPv4"]"#), "{err}");
}

#[test]
fn upgrade_downgrade_and_release_follow_the_upstream_rules() {
    let mut api = server(dual());
    let single = apply(&mut api, "web", json!({})).unwrap();
    let v4 = single["spec"]["clusterIP"].as_str().unwrap().to_owned();

    // Upgrade: the same manifest asking for PreferDualStack keeps the IPv4 address, adds IPv6.
    let upgraded = apply(
        &mut api,
        "web",
        json!({"ipFamilyPolicy": "PreferDualStack"}),
    )
    .unwrap();
    let ips = strings(&upgraded["spec"]["clusterIPs"]);
    assert_eq!(ips[0], v4);
    assert_eq!(family_of(&ips[1]), "IPv6");
    assert_eq!(strings(&upgraded["spec"]["ipFamilies"]), ["IPv4", "IPv6"]);

    // Re-applying the manifest changes nothing.
    let again = api
        .apply(
            service("web", json!({"ipFamilyPolicy": "PreferDualStack"})),
            None,
        )
        .unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);

    // Dropping the secondary needs SingleStack.
    let err = apply(
        &mut api,
        "web",
        json!({"ipFamilyPolicy": "PreferDualStack", "clusterIPs": [v4.clone()]}),
    )
    .unwrap_err();
    assert!(err.contains(r#"spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be 'SingleStack' to release the secondary cluster IP"#), "{err}");

    // The primary family may not change.
    let err = apply(
        &mut api,
        "web",
        json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
    )
    .unwrap_err();
    assert!(
        err.contains("expected an IPv6 value as indicated by `ipFamilies[0]`"),
        "{err}"
    );
    let err = apply(
        &mut api,
        "web",
        json!({"clusterIP": "10.96.200.1", "ipFamilyPolicy": "PreferDualStack"}),
    )
    .unwrap_err();
    assert!(err.contains("spec.clusterIP: field is immutable"), "{err}");

    // Downgrade: SingleStack drops the secondary, and the address is free again.
    let downgraded = apply(&mut api, "web", json!({"ipFamilyPolicy": "SingleStack"})).unwrap();
    assert_eq!(strings(&downgraded["spec"]["clusterIPs"]), [v4]);
    assert_eq!(strings(&downgraded["spec"]["ipFamilies"]), ["IPv4"]);
    let taker = apply(
        &mut api,
        "other",
        json!({"ipFamilies": ["IPv6"], "clusterIP": ips[1].clone()}),
    )
    .unwrap();
    assert_eq!(taker["spec"]["clusterIP"], ips[1].as_str());

    // A held address is refused; deleting its holder releases it.
    let err = apply(&mut api, "third", json!({"clusterIP": ips[1].clone()})).unwrap_err();
    assert!(
        err.contains("is already allocated to Service default/other"),
        "{err}"
    );
    api.delete(&ObjectRef::new(Kind::Service, "default", "other"))
        .unwrap();
    apply(&mut api, "third", json!({"clusterIP": ips[1].clone()})).unwrap();
}

fn service_cidr(name: &str, cidrs: &[&str]) -> Object {
    let object: k8s_openapi::api::networking::v1::ServiceCIDR = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"cidrs": cidrs}
    }))
    .unwrap();
    object.into_object()
}

#[test]
fn service_cidr_objects_hold_one_range_per_cluster_family() {
    let mut api = server(dual());
    api.apply(
        service_cidr("extra", &["10.200.0.0/24", "fd00:10:97::/112"]),
        None,
    )
    .unwrap();
    let svc = apply(
        &mut api,
        "six",
        json!({"ipFamilies": ["IPv6"], "clusterIP": "fd00:10:97::5"}),
    )
    .unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "fd00:10:97::5");
    let err = api
        .delete(&ObjectRef::new(Kind::ServiceCIDR, "", "extra"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("still holds ClusterIP fd00:10:97::5"), "{err}");

    for (cluster, cidrs, expected) in [
        (
            dual as Cluster,
            vec!["10.201.0.0/24", "10.202.0.0/24"],
            "spec.cidrs: IPv4 twice: a ServiceCIDR holds exactly one CIDR per IP family",
        ),
        (
            ipv4,
            vec!["fd00:10:98::/112"],
            "spec.cidrs[0]: fd00:10:98::/112 is IPv6; this cluster has no IPv6 Service range (it is IPv4)",
        ),
        (
            dual,
            vec!["fd00:10:96::/112"],
            "spec.cidrs[0]: fd00:10:96::/112 overlaps the default service CIDR fd00:10:96::/108",
        ),
    ] {
        let mut api = server(cluster());
        let err = api
            .apply(service_cidr("bad", &cidrs), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{cidrs:?}: {err}");
    }
}
