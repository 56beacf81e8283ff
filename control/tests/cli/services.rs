//! Service defaulting and assignment: the seed's "what you submit" comes back as "what you get
//! back"; requested and allocated ClusterIPs; node ports; LoadBalancer ingress; releases.

use serde_json::Value;

use crate::harness::{Cluster, in_cidr, int_of, parse_yaml_stream, seed, seed_path, str_of};

#[test]
fn seed_service_comes_back_with_every_defaulted_and_assigned_field() {
    let cluster = Cluster::new();
    let run = cluster.run(&["apply", "-f", &seed_path("service-store-be.yaml")]);
    assert!(run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains("service/store-be created"),
        "{}",
        run.stderr
    );
    let printed = parse_yaml_stream(&run.stdout);
    assert_eq!(printed.len(), 1);
    let svc = &printed[0];

    // The seed's own "what you get back", minus the values a cluster assigns, is the oracle.
    let returned = &parse_yaml_stream(&seed("service-store-be-returned.yaml"))[0];
    for pointer in [
        "/kind",
        "/apiVersion",
        "/metadata/name",
        "/metadata/namespace",
        "/spec/type",
        "/spec/selector",
        "/spec/ports",
        "/spec/sessionAffinity",
    ] {
        assert_eq!(svc.pointer(pointer), returned.pointer(pointer), "{pointer}");
    }

    let cluster_ip = str_of(svc, "/spec/clusterIP");
    assert!(in_cidr(cluster_ip, "10.96.0.0", 12), "{cluster_ip}");
    assert_eq!(svc["spec"]["clusterIPs"], serde_json::json!([cluster_ip]));
    let uid = str_of(svc, "/metadata/uid");
    let dashes: Vec<usize> = uid.match_indices('-').map(|(i, _)| i).collect();
    assert_eq!((uid.len(), dashes), (36, vec![8, 13, 18, 23]), "{uid}");
    let rv: u64 = str_of(svc, "/metadata/resourceVersion").parse().unwrap();
    assert_eq!(rv, cluster.generation());
    let created = str_of(svc, "/metadata/creationTimestamp");
    let created: jiff::Timestamp = created.parse().unwrap();
    let skew = jiff::Timestamp::now().as_second() - created.as_second();
    assert!(
        (0..120).contains(&skew),
        "creationTimestamp {created} is {skew}s away"
    );

    // What was printed is what is stored.
    assert_eq!(
        cluster.get("svc", "default", "store-be").as_ref(),
        Some(svc)
    );
}

#[test]
fn requested_cluster_dns_ip_is_honoured_and_cannot_be_taken_twice() {
    let cluster = Cluster::new();
    let dns = seed("service-kube-dns.yaml").replace("10.0.0.10", "10.96.0.10");
    let svc = &cluster.apply(&dns)[0];
    assert_eq!(str_of(svc, "/spec/clusterIP"), "10.96.0.10");
    let protocols: Vec<&str> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(protocols, ["UDP", "TCP"]);

    let second = "apiVersion: v1\nkind: Service\nmetadata:\n  name: other-dns\nspec:\n  clusterIP: 10.96.0.10\n  ports:\n  - port: 53\n";
    let generation = cluster.generation();
    let run = cluster.apply_failing(second);
    for expected in [
        "Service default/other-dns",
        "spec.clusterIP",
        "10.96.0.10",
        "already allocated",
        "kube-system/kube-dns",
        "-: document 1",
    ] {
        assert!(
            run.stderr.contains(expected),
            "{expected:?} not in {}",
            run.stderr
        );
    }
    assert!(cluster.get("svc", "default", "other-dns").is_none());
    assert_eq!(
        cluster.generation(),
        generation,
        "a rejected apply commits nothing"
    );
}

#[test]
fn seed_kube_dns_applies_as_written_in_a_seed_era_service_range() {
    let cluster = Cluster::new();
    assert!(
        cluster
            .run(&["init", "--service-cidr", "10.0.0.0/16"])
            .success
    );
    let run = cluster.run(&["apply", "-f", &seed_path("service-kube-dns.yaml")]);
    assert!(run.success, "{}", run.stderr);
    let svc = cluster.get("svc", "kube-system", "kube-dns").unwrap();
    assert_eq!(str_of(&svc, "/spec/clusterIP"), "10.0.0.10");
}

#[test]
fn cluster_ips_outside_the_range_or_malformed_are_rejected() {
    let cluster = Cluster::new();
    let manifest = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  clusterIP: \"{ip}\"\n  ports:\n  - port: 80\n"
        )
    };
    for (ip, expected) in [
        ("10.0.0.10", "not in the valid range"),
        ("10.96.0.0", "not in the valid range"),
        ("10.96.0.300", "must be a valid IP"),
    ] {
        let run = cluster.apply_failing(&manifest(ip));
        assert!(
            run.stderr.contains("spec.clusterIP") && run.stderr.contains(expected),
            "{ip}: {}",
            run.stderr
        );
    }
}

fn node_port_range_check(port: i64) {
    assert!((30000..=32767).contains(&port), "{port}");
}

#[test]
fn seed_onlylocal_load_balancer_gets_node_port_health_check_port_and_pool_ip() {
    let cluster = Cluster::new();
    let svc = &cluster.apply(&seed("service-store-be-onlylocal.yaml"))[0];
    assert_eq!(str_of(svc, "/spec/type"), "LoadBalancer");
    assert_eq!(str_of(svc, "/spec/externalTrafficPolicy"), "Local");
    let node_port = int_of(svc, "/spec/ports/0/nodePort");
    let health = int_of(svc, "/spec/healthCheckNodePort");
    node_port_range_check(node_port);
    node_port_range_check(health);
    assert_ne!(node_port, health);
    assert_eq!(int_of(svc, "/spec/ports/0/targetPort"), 443);
    let ingress = str_of(svc, "/status/loadBalancer/ingress/0/ip");
    assert!(
        in_cidr(ingress, "198.51.100.0", 24)
            && ingress != "198.51.100.0"
            && ingress != "198.51.100.255",
        "{ingress}"
    );
    // The annotation stays as the user wrote it.
    assert_eq!(
        str_of(
            svc,
            "/metadata/annotations/service.beta.kubernetes.io~1external-traffic"
        ),
        "OnlyLocal"
    );
}

#[test]
fn plain_load_balancer_is_cluster_policy_without_health_check_port() {
    let cluster = Cluster::new();
    let svc = &cluster.apply(&seed("service-store-be-lb.yaml"))[0];
    assert_eq!(str_of(svc, "/spec/externalTrafficPolicy"), "Cluster");
    assert!(svc["spec"].get("healthCheckNodePort").is_none());
    node_port_range_check(int_of(svc, "/spec/ports/0/nodePort"));
    assert_eq!(svc["spec"]["allocateLoadBalancerNodePorts"], true);
}

fn lb(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n"
    )
}

fn assigned(svc: &Value) -> (String, i64, String) {
    (
        str_of(svc, "/spec/clusterIP").to_owned(),
        int_of(svc, "/spec/ports/0/nodePort"),
        str_of(svc, "/status/loadBalancer/ingress/0/ip").to_owned(),
    )
}

#[test]
fn assignments_are_unique_kept_on_reapply_and_released_on_delete() {
    let cluster = Cluster::new();
    let a = assigned(&cluster.apply(&lb("a"))[0]);
    let b = assigned(&cluster.apply(&lb("b"))[0]);
    assert_ne!(a.0, b.0);
    assert_ne!(a.1, b.1);
    assert_ne!(a.2, b.2);

    let before = cluster.get("svc", "default", "a").unwrap();
    let run = cluster.run_with_stdin(&["apply", "-f", "-"], &lb("a"));
    assert!(run.stderr.contains("service/a unchanged"), "{}", run.stderr);
    assert_eq!(
        cluster.get("svc", "default", "a").unwrap(),
        before,
        "re-apply changes nothing"
    );

    let run = cluster.run(&["delete", "svc", "a"]);
    assert!(
        run.success && run.stdout.contains("service \"a\" deleted"),
        "{run:?}"
    );
    let c = assigned(&cluster.apply(&lb("c"))[0]);
    assert_eq!(c, a, "the lowest free values are the ones `a` released");
}

#[test]
fn load_balancer_pool_comes_from_init() {
    let cluster = Cluster::new();
    assert!(
        cluster
            .run(&["init", "--lb-pool", "203.0.113.0/30"])
            .success
    );
    let first = cluster.apply(&lb("a"));
    assert_eq!(
        str_of(&first[0], "/status/loadBalancer/ingress/0/ip"),
        "203.0.113.1"
    );
    cluster.apply(&lb("b"));
    // Pool exhausted: the Service is stored, its ingress stays pending.
    let pending = &cluster.apply(&lb("c"))[0];
    assert!(
        pending.pointer("/status/loadBalancer/ingress").is_none(),
        "{pending}"
    );
    let table = cluster.run(&["get", "svc", "c"]);
    assert!(table.stdout.contains("<pending>"), "{}", table.stdout);
}

#[test]
fn requested_node_ports_are_checked() {
    let cluster = Cluster::new();
    let manifest = |name: &str, port: i32| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {port}\n"
        )
    };
    let svc = &cluster.apply(&manifest("a", 30080))[0];
    assert_eq!(int_of(svc, "/spec/ports/0/nodePort"), 30080);
    let run = cluster.apply_failing(&manifest("b", 30080));
    assert!(
        run.stderr.contains("spec.ports[0].nodePort") && run.stderr.contains("already allocated"),
        "{}",
        run.stderr
    );
    let run = cluster.apply_failing(&manifest("c", 80));
    assert!(
        run.stderr
            .contains("not in the valid node port range 30000-32767"),
        "{}",
        run.stderr
    );
}

#[test]
fn client_ip_affinity_defaults_its_timeout() {
    let cluster = Cluster::new();
    let svc = &cluster.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  sessionAffinity: ClientIP\n  ports:\n  - port: 80\n    targetPort: 8080\n")[0];
    assert_eq!(
        int_of(svc, "/spec/sessionAffinityConfig/clientIP/timeoutSeconds"),
        10800
    );
    assert_eq!(int_of(svc, "/spec/ports/0/targetPort"), 8080);
    assert_eq!(str_of(svc, "/spec/internalTrafficPolicy"), "Cluster");
}

#[test]
fn settings_are_fixed_once_objects_exist_and_the_env_var_names_the_directory() {
    let cluster = Cluster::new();
    assert!(
        cluster
            .run(&["init", "--lb-pool", "203.0.113.0/24"])
            .success
    );
    assert!(
        cluster
            .run(&["init", "--lb-pool", "203.0.113.0/24"])
            .success,
        "same values again are fine"
    );
    cluster.apply(&lb("a"));
    let run = cluster.run(&["init", "--lb-pool", "192.0.2.0/24"]);
    assert!(
        !run.success && run.stderr.contains("cannot change"),
        "{}",
        run.stderr
    );

    let via_env = std::process::Command::new(crate::harness::BIN)
        .args(["get", "svc", "a", "-o", "json"])
        .env("FERROPLANE_STATE", cluster.path())
        .output()
        .unwrap();
    assert!(
        via_env.status.success(),
        "{}",
        String::from_utf8_lossy(&via_env.stderr)
    );
    let svc: Value = serde_json::from_slice(&via_env.stdout).unwrap();
    assert!(in_cidr(
        str_of(&svc, "/status/loadBalancer/ingress/0/ip"),
        "203.0.113.0",
        24
    ));
}

#[test]
fn get_reports_services_the_dataplane_will_not_program() {
    let cluster = Cluster::new();
    let run = cluster.run_with_stdin(
        &["apply", "-f", "-"],
        &crate::harness::node("node-1", "192.168.50.2"),
    );
    assert!(run.success, "{}", run.stderr);
    // SCTP is programmed (conntrack, DNAT, policy): no warning.
    let sctp = "apiVersion: v1\nkind: Service\nmetadata: {name: sig}\nspec:\n  selector: {app: sig}\n  ports:\n  - {name: diameter, port: 3868, protocol: SCTP}\n";
    let run = cluster.run_with_stdin(&["apply", "-f", "-"], sctp);
    assert!(run.success, "the API accepts SCTP: {}", run.stderr);
    // An unknown scheduler is reported (and falls back to random).
    let odd = "apiVersion: v1\nkind: Service\nmetadata:\n  name: odd\n  annotations: {ferroplane.io/lb-scheduler: fastest}\nspec:\n  selector: {app: odd}\n  ports:\n  - {name: http, port: 80}\n";
    let run = cluster.run_with_stdin(&["apply", "-f", "-"], odd);
    assert!(run.success, "{}", run.stderr);
    let get = cluster.run(&["get", "svc"]);
    assert!(get.success, "{}", get.stderr);
    assert!(get.stdout.contains("sig"), "{}", get.stdout);
    assert!(
        !get.stderr.contains("Service default/sig"),
        "SCTP is no problem: {}",
        get.stderr
    );
    assert!(
        get.stderr.contains("Service default/odd") && get.stderr.contains("fastest"),
        "{}",
        get.stderr
    );
}
