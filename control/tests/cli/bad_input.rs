//! Bad input: every error names file, document, object and field; nothing of a rejected object
//! is stored; the exit status is non-zero; good objects of the same apply are stored.

use std::fs;

use crate::harness::Cluster;

fn svc(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn assert_mentions(stderr: &str, parts: &[&str]) {
    for part in parts {
        assert!(stderr.contains(part), "{part:?} not in:\n{stderr}");
    }
}

#[test]
fn invalid_yaml_names_file_document_and_line_and_spares_the_rest() {
    let cluster = Cluster::new();
    let file = cluster.path().join("input.yaml");
    let text = format!(
        "{}---\n{}---\n{}",
        svc("good-1", "  ports:\n  - port: 80\n"),
        svc("broken", " selector:\n    app: x\n  ports:\n  - port: 80\n"),
        svc("good-2", "  ports:\n  - port: 81\n")
    );
    fs::write(&file, text).unwrap();
    let run = cluster.run(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!run.success);
    assert_mentions(
        &run.stderr,
        &[
            "input.yaml: document 2 (line 9)",
            "invalid YAML",
            "input.yaml:16",
        ],
    );
    assert!(cluster.get("svc", "default", "good-1").is_some());
    assert!(cluster.get("svc", "default", "good-2").is_some());
    assert!(cluster.get("svc", "default", "broken").is_none());
}

#[test]
fn unknown_kind_and_unknown_field() {
    let cluster = Cluster::new();
    let run =
        cluster.apply_failing("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n");
    assert_mentions(
        &run.stderr,
        &[
            "-: document 1 (line 1)",
            "Deployment web",
            "unknown kind \"Deployment\"",
        ],
    );
    let run = cluster.apply_failing(&svc(
        "typo",
        "  selectr:\n    app: x\n  ports:\n  - port: 80\n",
    ));
    assert_mentions(
        &run.stderr,
        &["Service typo", "spec.selectr", "unknown field \"selectr\""],
    );
    assert!(cluster.get("svc", "default", "typo").is_none());
}

#[test]
fn port_out_of_range_and_wrong_type() {
    let cluster = Cluster::new();
    let run = cluster.apply_failing(&svc("big", "  ports:\n  - port: 70000\n"));
    assert_mentions(
        &run.stderr,
        &[
            "Service default/big",
            "spec.ports[0].port",
            "70000",
            "between 1 and 65535",
        ],
    );
    let run = cluster.apply_failing(&svc("word", "  ports:\n  - port: http\n"));
    assert_mentions(
        &run.stderr,
        &["Service word", "spec.ports[0].port", "invalid type"],
    );
    let run = cluster.apply_failing(&svc(
        "target",
        "  ports:\n  - port: 80\n    targetPort: Web_Port\n",
    ));
    assert_mentions(&run.stderr, &["spec.ports[0].targetPort", "port name"]);
    let run = cluster.apply_failing(&svc(
        "proto",
        "  ports:\n  - port: 80\n    protocol: ICMP\n",
    ));
    assert_mentions(&run.stderr, &["spec.ports[0].protocol", "\"ICMP\""]);
    assert!(cluster.list("svc").is_empty());
}

#[test]
fn bad_cidrs() {
    let cluster = Cluster::new();
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/33\n";
    let run = cluster.apply_failing(policy);
    assert_mentions(
        &run.stderr,
        &[
            "NetworkPolicy default/p",
            "spec.ingress[0].from[0].ipBlock.cidr",
            "10.0.0.0/33",
        ],
    );
    let except = policy.replace(
        "cidr: 10.0.0.0/33",
        "cidr: 10.0.0.0/16\n        except:\n        - 10.1.0.0/24",
    );
    let run = cluster.apply_failing(&except);
    assert_mentions(&run.stderr, &["ipBlock.except[0]", "strict subset"]);
    let run = cluster.apply_failing(&svc(
        "lb",
        "  type: LoadBalancer\n  loadBalancerSourceRanges:\n  - nonsense\n  ports:\n  - port: 80\n",
    ));
    assert_mentions(
        &run.stderr,
        &["spec.loadBalancerSourceRanges[0]", "not a CIDR"],
    );
    let run = cluster.run(&["init", "--service-cidr", "10.96.0.1/12"]);
    assert!(!run.success);
    assert_mentions(
        &run.stderr,
        &["--service-cidr", "host bits", "10.96.0.0/12"],
    );
    let run = cluster.run(&["init", "--service-cidr", "10.244.0.0/16"]);
    assert!(!run.success);
    assert_mentions(&run.stderr, &["serviceCIDR", "overlaps the cluster CIDR"]);
}

#[test]
fn bad_selectors() {
    let cluster = Cluster::new();
    let run = cluster.apply_failing(&svc(
        "sel",
        "  selector:\n    app: bad value!\n  ports:\n  - port: 80\n",
    ));
    assert_mentions(
        &run.stderr,
        &["Service default/sel", "spec.selector[app]", "bad value!"],
    );
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  podSelector:\n    matchExpressions:\n    - key: role\n      operator: Equals\n      values: [db]\n";
    let run = cluster.apply_failing(policy);
    assert_mentions(
        &run.stderr,
        &[
            "NetworkPolicy default/p",
            "spec.podSelector.matchExpressions[0].operator",
            "Equals",
        ],
    );
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  podSelector:\n    matchLabels:\n      -role: db\n";
    let run = cluster.apply_failing(policy);
    assert_mentions(&run.stderr, &["spec.podSelector.matchLabels", "-role"]);
}

#[test]
fn bad_names_and_namespaces() {
    let cluster = Cluster::new();
    let run = cluster.apply_failing(&svc("Store_BE", "  ports:\n  - port: 80\n"));
    assert_mentions(&run.stderr, &["metadata.name", "DNS-1035"]);
    let run = cluster.run_with_stdin(&["apply", "-n", "other", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: mine\nspec:\n  ports:\n  - port: 80\n");
    assert!(!run.success);
    assert_mentions(
        &run.stderr,
        &["metadata.namespace", "\"mine\"", "\"other\""],
    );
}

#[test]
fn a_multi_document_apply_is_per_object() {
    let cluster = Cluster::new();
    let text = [
        svc("one", "  ports:\n  - port: 80\n"),
        svc("two", "  ports:\n  - port: 0\n"),
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: team-a\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: three\n  spec:\n    clusterIP: 1.2.3.4\n    ports:\n    - port: 80\n".to_owned(),
    ]
    .join("---\n");
    let run = cluster.apply_failing(&text);
    assert_mentions(
        &run.stderr,
        &[
            "document 2",
            "Service default/two",
            "spec.ports[0].port",
            "document 3",
            "items[1]",
            "Service default/three",
            "spec.clusterIP",
        ],
    );
    assert!(run.stderr.contains("service/one created"), "{}", run.stderr);
    assert!(cluster.get("svc", "default", "one").is_some());
    assert!(cluster.get("ns", "", "team-a").is_some());
    assert!(cluster.get("svc", "default", "two").is_none());
    assert!(cluster.get("svc", "default", "three").is_none());
    // The good objects are printed back, the bad ones not.
    let printed = crate::harness::parse_yaml_stream(&run.stdout);
    assert_eq!(printed.len(), 2);
}

#[test]
fn missing_file_and_unknown_get_kind() {
    let cluster = Cluster::new();
    let run = cluster.run(&["apply", "-f", "/nonexistent/x.yaml"]);
    assert!(!run.success);
    assert_mentions(&run.stderr, &["/nonexistent/x.yaml"]);
    let run = cluster.run(&["get", "deployments"]);
    assert!(!run.success);
    assert_mentions(
        &run.stderr,
        &["doesn't have a resource type \"deployments\""],
    );
    let run = cluster.run(&["delete", "svc", "ghost"]);
    assert!(!run.success);
    assert_mentions(&run.stderr, &["Service default/ghost", "not found"]);
}
