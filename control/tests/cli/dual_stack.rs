//! Dual-stack and IPv6 clusters end to end through the binary: `init` flags, `apply` of
//! dual-stack manifests (Services, Nodes, Pods, EndpointSlices per family), the upstream's
//! error text for an IPv6 Service in an IPv4 cluster, and today's IPv4 state directories
//! loading unchanged.

use serde_json::Value;

use crate::harness::{Cluster, node, pod, str_of};

const DUAL_INIT: &[&str] = &[
    "init",
    "--cluster-cidr",
    "10.244.0.0/16,fd00:10:244::/56",
    "--service-cidr",
    "10.96.0.0/12,fd00:10:96::/108",
    "--lb-pool",
    "198.51.100.0/24,2001:db8:51::/120",
];

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

const DUAL_SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ipFamilyPolicy: PreferDualStack
  type: LoadBalancer
  selector:
    app: web
  ports:
  - port: 80
---
";

#[test]
fn a_dual_stack_cluster_serves_a_dual_stack_service_on_both_families() {
    let cluster = Cluster::new();
    let run = cluster.run(DUAL_INIT);
    assert!(run.success, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("\"secondaryServiceCIDR\": \"fd00:10:96::/108\""),
        "{}",
        run.stdout
    );

    cluster.apply(&node("a", "192.168.50.11"));
    let node = cluster.get("node", "", "a").unwrap();
    assert_eq!(
        strings(&node["spec"]["podCIDRs"]),
        ["10.244.0.0/24", "fd00:10:244::/64"]
    );

    let manifest = format!(
        "{}{}{DUAL_SERVICE}",
        pod("p1", "app=web", Some("a"), None, &[]),
        pod("p2", "app=web", Some("a"), None, &[])
    );
    cluster.apply(&manifest);
    let p1 = cluster.get("pod", "default", "p1").unwrap();
    let ips: Vec<&str> = p1["status"]["podIPs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.244.0.2", "fd00:10:244::2"]);

    let svc = cluster.get("svc", "default", "web").unwrap();
    assert_eq!(strings(&svc["spec"]["ipFamilies"]), ["IPv4", "IPv6"]);
    let cluster_ips = strings(&svc["spec"]["clusterIPs"]);
    assert_eq!(cluster_ips.len(), 2, "{svc}");
    assert!(cluster_ips[0].starts_with("10.9"), "{cluster_ips:?}");
    assert!(
        cluster_ips[1].starts_with("fd00:10:96::"),
        "{cluster_ips:?}"
    );
    assert_eq!(str_of(&svc, "/spec/clusterIP"), cluster_ips[0]);
    let ingress: Vec<&str> = svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ingress, ["198.51.100.1", "2001:db8:51::1"]);

    let mut slices: Vec<(String, Vec<String>)> = cluster
        .list("endpointslices")
        .iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
        .map(|s| {
            let addresses = s["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|e| strings(&e["addresses"]))
                .collect();
            (str_of(s, "/addressType").to_owned(), addresses)
        })
        .collect();
    slices.sort();
    assert_eq!(
        slices,
        [
            (
                "IPv4".to_owned(),
                vec!["10.244.0.2".to_owned(), "10.244.0.3".to_owned()]
            ),
            (
                "IPv6".to_owned(),
                vec!["fd00:10:244::2".to_owned(), "fd00:10:244::3".to_owned()]
            ),
        ]
    );

    // Re-applying the same manifest changes nothing.
    let run = cluster.run_with_stdin(&["apply", "-f", "-"], DUAL_SERVICE);
    assert!(
        run.success && run.stderr.contains("service/web unchanged"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_ipv6_service_in_an_ipv4_cluster_gets_the_upstream_error() {
    let cluster = Cluster::new();
    let manifest = "apiVersion: v1\nkind: Service\nmetadata:\n  name: six\nspec:\n  ipFamilies: [IPv6]\n  selector:\n    app: web\n  ports:\n  - port: 80\n";
    let run = cluster.apply_failing(manifest);
    assert!(
        run.stderr.contains(
            r#"spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster"#
        ),
        "{}",
        run.stderr
    );
    let require = manifest.replace("ipFamilies: [IPv6]", "ipFamilyPolicy: RequireDualStack");
    let run = cluster.apply_failing(&require);
    assert!(
        run.stderr.contains(r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#),
        "{}",
        run.stderr
    );
    assert!(cluster.get("svc", "default", "six").is_none());
}

#[test]
fn bad_dual_stack_init_flags_name_the_setting_and_write_nothing() {
    let cluster = Cluster::new();
    for (args, expected) in [
        (
            vec!["init", "--cluster-cidr", "10.244.0.0/16,fd00:10:244::/56"],
            "the Service ranges (10.96.0.0/12) are IPv4 but the cluster (pod) ranges (10.244.0.0/16,fd00:10:244::/56) are IPv4,IPv6",
        ),
        (
            vec!["init", "--cluster-cidr", "10.244.0.0/16,10.245.0.0/16"],
            "secondaryClusterCIDR: 10.245.0.0/16 is IPv4, the same family as clusterCIDR",
        ),
        (
            vec![
                "init",
                "--cluster-cidr",
                "fd00:10:244::/56",
                "--service-cidr",
                "fd00:10:96::/108",
            ],
            "loadBalancerPool: 198.51.100.0/24 is IPv4 but this cluster has no IPv4 ranges",
        ),
        (
            vec![
                "init",
                "--service-cidr",
                "10.96.0.0/12,fd00::/108,fd01::/108",
            ],
            "at most two CIDRs, comma-separated, one per IP family",
        ),
    ] {
        let run = cluster.run(&args);
        assert!(!run.success, "{args:?} succeeded");
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(
            !cluster.path().join("cluster.json").exists(),
            "{args:?} wrote settings"
        );
    }
    let run = cluster.run(&[
        "init",
        "--cluster-cidr",
        "fd00:10:244::/56",
        "--service-cidr",
        "fd00:10:96::/108",
        "--lb-pool",
        "2001:db8:51::/120",
        "--node-cidr-mask-size-ipv6",
        "72",
    ]);
    assert!(run.success, "IPv6-only init: {}", run.stderr);
    assert!(
        run.stdout.contains("\"clusterDNS\": \"fd00:10:96::a\""),
        "{}",
        run.stdout
    );
    cluster.apply(&node("a", "192.168.50.11"));
    let node = cluster.get("node", "", "a").unwrap();
    assert_eq!(strings(&node["spec"]["podCIDRs"]), ["fd00:10:244::/72"]);
}

/// A state directory of today (IPv4 settings file without the dual-stack fields) loads and
/// keeps working, and its settings file is left byte for byte as it was.
#[test]
fn an_ipv4_state_directory_of_today_loads_unchanged() {
    let cluster = Cluster::new();
    let today = "{\n  \"clusterCIDR\": \"10.244.0.0/16\",\n  \"nodeCIDRMaskSize\": 24,\n  \"serviceCIDR\": \"10.96.0.0/12\",\n  \"nodePortRange\": \"30000-32767\",\n  \"loadBalancerPool\": \"198.51.100.0/24\",\n  \"clusterDNS\": \"10.96.0.10\",\n  \"clusterDomain\": \"cluster.local\",\n  \"vxlanVNI\": 1,\n  \"vxlanPort\": 8472,\n  \"externalIPCIDRs\": []\n}\n";
    std::fs::write(cluster.path().join("cluster.json"), today).unwrap();
    cluster.apply(&format!(
        "{}{}",
        node("a", "192.168.50.11"),
        pod("p1", "app=web", Some("a"), None, &[])
    ));
    cluster.apply(&DUAL_SERVICE.replace(
        "ipFamilyPolicy: PreferDualStack",
        "ipFamilyPolicy: PreferDualStack\n  clusterIP: 10.96.5.5",
    ));
    let svc = cluster.get("svc", "default", "web").unwrap();
    assert_eq!(strings(&svc["spec"]["clusterIPs"]), ["10.96.5.5"]);
    assert_eq!(strings(&svc["spec"]["ipFamilies"]), ["IPv4"]);
    let node = cluster.get("node", "", "a").unwrap();
    assert_eq!(strings(&node["spec"]["podCIDRs"]), ["10.244.0.0/24"]);
    let run = cluster.run(&["init"]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(cluster.path().join("cluster.json")).unwrap(),
        today
    );
}

/// `trace` parses IPv6 sources and destinations and runs the probe through the node's real
/// pipeline: in a build whose dataplane has no IPv6 path that is a named drop, said plainly.
#[test]
fn trace_of_an_ipv6_packet_reports_what_the_pipeline_does_with_it() {
    let cluster = Cluster::new();
    assert!(cluster.run(DUAL_INIT).success);
    let manifest = format!(
        "{}{}{DUAL_SERVICE}",
        node("a", "192.168.50.11"),
        pod("p1", "app=web", Some("a"), None, &[])
    );
    cluster.apply(&manifest);
    let svc = cluster.get("svc", "default", "web").unwrap();
    let v6 = strings(&svc["spec"]["clusterIPs"])[1].clone();

    let dst = format!("[{v6}]:80");
    let run = cluster.run(&["trace", "--from", "default/p1", "--dst", &dst, "-o", "json"]);
    assert!(run.success, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["nodes"], serde_json::json!(["a"]));
    let note = str_of(&report, "/note");
    assert!(note.starts_with("IPv6"), "{note}");
    if report["reason"] == "unsupported_protocol" {
        assert_eq!(report["verdict"], "drop");
        assert!(note.contains("has no IPv6 path"), "{note}");
    }

    let run = cluster.run(&["trace", "--src", "fd00:10:244::2", "--dst", &dst]);
    assert!(run.success, "{}", run.stderr);
    assert!(run.stdout.contains("note: IPv6"), "{}", run.stdout);

    for (src, dst, expected) in [
        ("10.244.0.2", dst.as_str(), "are of different IP families"),
        (
            "[fd00:10:244::2]:x",
            dst.as_str(),
            "expected an IPv4 address",
        ),
        (
            "fd00:10:244::2",
            "[fd00:10:96::1]",
            "expected an IPv4 address",
        ),
        ("fd00:10:244::2", "fd00:10:96::1", "a port is required"),
    ] {
        let run = cluster.run(&["trace", "--src", src, "--dst", dst]);
        assert!(!run.success, "{src} -> {dst}");
        assert!(
            run.stderr.contains(expected),
            "{src} -> {dst}: {}",
            run.stderr
        );
    }
}
