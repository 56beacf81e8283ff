//! The remaining seed manifests apply as written, and the library read API sees the result.

use control::ClusterState;

use crate::harness::{Cluster, seed, seed_path, str_of};

#[test]
fn seed_network_policy_and_default_deny_namespace_apply_as_written() {
    let cluster = Cluster::new();
    for file in [
        "namespace-store-defaultdeny.yaml",
        "networkpolicy-store.yaml",
    ] {
        let run = cluster.run(&["apply", "-f", &seed_path(file)]);
        assert!(run.success, "{file}: {}", run.stderr);
    }
    let policy = cluster
        .get("netpol", "default", "store-net-policy")
        .unwrap();
    assert_eq!(str_of(&policy, "/apiVersion"), "networking.k8s.io/v1");
    assert_eq!(
        str_of(&policy, "/spec/ingress/0/ports/0/protocol"),
        "TCP",
        "the seed's lower-case tcp"
    );
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 6379);
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["role"],
        "be"
    );

    let namespace = cluster.get("ns", "", "store-namespace").unwrap();
    assert_eq!(
        str_of(&namespace, "/metadata/labels/kubernetes.io~1metadata.name"),
        "store-namespace"
    );
    let table = cluster.run(&["get", "ns", "-o", "wide"]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("store-namespace") && l.trim_end().ends_with("ingress")),
        "{}",
        table.stdout
    );

    let bad = seed("namespace-store-defaultdeny.yaml")
        .replace("DefaultDeny", "DenyAll")
        .replace("store-namespace", "other");
    let run = cluster.apply_failing(&bad);
    assert!(
        run.stderr
            .contains("metadata.annotations[net.beta.kubernetes.io/network-policy]")
            && run.stderr.contains("DenyAll"),
        "{}",
        run.stderr
    );
}

#[test]
fn cluster_state_load_reads_everything_the_binary_wrote() {
    let cluster = Cluster::new();
    assert!(
        cluster
            .run(&["init", "--lb-pool", "203.0.113.0/24"])
            .success
    );
    for file in [
        "namespace-store-defaultdeny.yaml",
        "service-store-be.yaml",
        "pods-store.yaml",
        "networkpolicy-store.yaml",
    ] {
        assert!(
            cluster.run(&["apply", "-f", &seed_path(file)]).success,
            "{file}"
        );
    }
    let state = ClusterState::load(cluster.path()).unwrap();
    assert_eq!(state.generation(), cluster.generation());
    assert_eq!(
        state.settings().load_balancer_pool.to_string(),
        "203.0.113.0/24"
    );
    assert!(state.problems().is_empty(), "{:?}", state.problems());
    assert_eq!(
        state.namespaces().count(),
        4,
        "default, kube-system, kube-public, store-namespace"
    );
    assert!(state.default_deny_ingress("store-namespace"));
    assert!(!state.default_deny_ingress("default"));
    assert_eq!(state.pods().count(), 6);
    let service = state.service("default", "store-be").unwrap();
    assert_eq!(
        service.spec.as_ref().unwrap().session_affinity.as_deref(),
        Some("None")
    );
    assert_eq!(state.endpoint_slices_of("default", "store-be").count(), 1);
    assert_eq!(state.network_policies().count(), 1);
    assert_eq!(
        control::StateDir::new(cluster.path())
            .read_generation()
            .unwrap(),
        state.generation()
    );
    // An empty directory is an empty cluster with default settings.
    let empty = tempfile::tempdir().unwrap();
    let state = ClusterState::load(empty.path().join("missing")).unwrap();
    assert_eq!(state.generation(), 0);
    assert_eq!(state.services().count(), 0);
}

#[test]
fn a_commit_interrupted_by_a_crash_is_repaired_by_the_next_transaction() {
    let cluster = Cluster::new();
    for file in ["service-store-be.yaml", "pods-store.yaml"] {
        assert!(cluster.run(&["apply", "-f", &seed_path(file)]).success);
    }
    // Simulate a writer that died after writing the pods but before the derived objects.
    std::fs::remove_file(
        cluster
            .path()
            .join("objects/endpoints/default/store-be.json"),
    )
    .unwrap();
    std::fs::write(cluster.path().join("transaction-in-progress"), "").unwrap();
    // A corrupt object file is skipped and reported, not fatal.
    std::fs::write(
        cluster.path().join("objects/pods/default/garbage.json"),
        "{not json",
    )
    .unwrap();
    let listing = cluster.run(&["get", "pods"]);
    assert!(listing.success);
    assert!(
        listing.stderr.contains("garbage.json"),
        "{}",
        listing.stderr
    );

    // Any later transaction, even an unrelated one, reconciles everything first.
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: unrelated\n");
    assert!(!cluster.path().join("transaction-in-progress").exists());
    let endpoints = cluster
        .get("ep", "default", "store-be")
        .expect("endpoints restored");
    assert_eq!(
        endpoints["subsets"][0]["addresses"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
