//! The endpoints controllers: the seed's Endpoints slide, and Endpoints/EndpointSlices following
//! pods and Services as they change.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::harness::{Cluster, parse_yaml_stream, pod, seed, str_of};

fn ips(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x["ip"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn ready_ips(endpoints: &Value) -> BTreeSet<String> {
    endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| ips(s.get("addresses")))
        .collect()
}

fn not_ready_ips(endpoints: &Value) -> BTreeSet<String> {
    endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| ips(s.get("notReadyAddresses")))
        .collect()
}

fn slice_endpoints(cluster: &Cluster, service: &str) -> Vec<Value> {
    cluster
        .list("endpointslice")
        .into_iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == service)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn check_seed_endpoints(cluster: &Cluster) {
    let expected = &parse_yaml_stream(&seed("endpoints-store-be.yaml"))[0];
    let got = cluster.get("ep", "default", "store-be").unwrap();
    assert_eq!(got["kind"], expected["kind"]);
    assert_eq!(got["metadata"]["name"], expected["metadata"]["name"]);
    assert_eq!(
        got["metadata"]["namespace"],
        expected["metadata"]["namespace"]
    );
    let subsets = got["subsets"].as_array().unwrap();
    let want = expected["subsets"].as_array().unwrap();
    assert_eq!(subsets.len(), want.len(), "{got}");
    // Same addresses (the controller sorts them by IP, the slide lists them as drawn) and
    // exactly the slide's ports.
    let mut got_ips = ips(subsets[0].get("addresses"));
    let mut want_ips = ips(want[0].get("addresses"));
    assert_eq!(got_ips.len(), 3, "{got}");
    got_ips.sort();
    want_ips.sort();
    assert_eq!(got_ips, want_ips);
    assert_eq!(subsets[0]["ports"], want[0]["ports"]);
    assert!(subsets[0].get("notReadyAddresses").is_none());
}

#[test]
fn seed_pods_produce_exactly_the_seed_endpoints() {
    let cluster = Cluster::new();
    cluster.apply(&seed("service-store-be.yaml"));
    cluster.apply(&seed("pods-store.yaml"));
    check_seed_endpoints(&cluster);
    let slices = slice_endpoints(&cluster, "store-be");
    let addresses: BTreeSet<&str> = slices
        .iter()
        .map(|e| e["addresses"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        BTreeSet::from(["10.11.0.9", "10.11.5.3", "10.11.8.67"])
    );
    assert!(
        slices
            .iter()
            .all(|e| e["conditions"]
                == json!({"ready": true, "serving": true, "terminating": false}))
    );
}

#[test]
fn controller_wakes_up_whichever_comes_first() {
    let cluster = Cluster::new();
    cluster.apply(&seed("pods-store.yaml"));
    assert!(cluster.get("ep", "default", "store-be").is_none());
    cluster.apply(&seed("service-store-be.yaml"));
    check_seed_endpoints(&cluster);
}

#[test]
fn endpoints_follow_relabel_unready_terminating_and_delete() {
    let cluster = Cluster::new();
    cluster.apply(&seed("service-store-be.yaml"));
    cluster.apply(&seed("pods-store.yaml"));

    // Relabel: store-be-1 becomes a front end.
    cluster.apply(&pod(
        "store-be-1",
        "app=store,role=fe",
        None,
        Some("10.11.8.67"),
        &[],
    ));
    let ep = cluster.get("ep", "default", "store-be").unwrap();
    assert_eq!(
        ready_ips(&ep),
        BTreeSet::from(["10.11.0.9".into(), "10.11.5.3".into()])
    );

    // Unready: store-be-2 reports Ready=False.
    let unready = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: store-be-2\n  labels:\n    app: store\n    role: be\nspec:\n  containers:\n  - name: app\nstatus:\n  podIP: 10.11.5.3\n  phase: Running\n  conditions:\n  - type: Ready\n    status: \"False\"\n";
    cluster.apply(unready);
    let ep = cluster.get("ep", "default", "store-be").unwrap();
    assert_eq!(ready_ips(&ep), BTreeSet::from(["10.11.0.9".into()]));
    assert_eq!(not_ready_ips(&ep), BTreeSet::from(["10.11.5.3".into()]));
    let slice = slice_endpoints(&cluster, "store-be");
    let of =
        |ip: &str| slice.iter().find(|e| e["addresses"][0] == ip).unwrap()["conditions"].clone();
    assert_eq!(
        of("10.11.5.3"),
        json!({"ready": false, "serving": false, "terminating": false})
    );

    // Terminating: store-be-3 has a deletionTimestamp; it leaves Endpoints but stays in the
    // slice as serving + terminating.
    let terminating = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: store-be-3\n  deletionTimestamp: \"2026-01-01T00:00:00Z\"\n  labels:\n    app: store\n    role: be\nspec:\n  containers:\n  - name: app\n";
    cluster.apply(terminating);
    let ep = cluster.get("ep", "default", "store-be").unwrap();
    assert!(ready_ips(&ep).is_empty(), "{ep}");
    let slice = slice_endpoints(&cluster, "store-be");
    let of =
        |ip: &str| slice.iter().find(|e| e["addresses"][0] == ip).unwrap()["conditions"].clone();
    assert_eq!(
        of("10.11.0.9"),
        json!({"ready": false, "serving": true, "terminating": true})
    );

    // Delete: gone from both.
    assert!(
        cluster
            .run(&["delete", "pod", "store-be-3", "store-be-2"])
            .success
    );
    let ep = cluster.get("ep", "default", "store-be").unwrap();
    assert!(ep.get("subsets").is_none(), "{ep}");
    assert!(slice_endpoints(&cluster, "store-be").is_empty());

    // Service delete takes its Endpoints and slices with it.
    assert!(cluster.run(&["delete", "svc", "store-be"]).success);
    assert!(cluster.get("ep", "default", "store-be").is_none());
    assert!(cluster.list("endpointslice").is_empty());
}

#[test]
fn publish_not_ready_addresses_includes_unready_pods() {
    let cluster = Cluster::new();
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: peers\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector:\n    app: db\n  ports:\n  - port: 5432\n";
    cluster.apply(svc);
    let unready = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db-0\n  labels:\n    app: db\nspec:\n  containers:\n  - name: db\nstatus:\n  podIP: 10.244.0.9\n  phase: Running\n  conditions:\n  - type: Ready\n    status: \"False\"\n";
    cluster.apply(unready);
    let ep = cluster.get("ep", "default", "peers").unwrap();
    assert_eq!(ready_ips(&ep), BTreeSet::from(["10.244.0.9".into()]));
    assert_eq!(
        ep["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    let slice = slice_endpoints(&cluster, "peers");
    assert_eq!(
        slice[0]["conditions"],
        json!({"ready": true, "serving": false, "terminating": false})
    );
}

#[test]
fn named_target_port_is_resolved_per_pod() {
    let cluster = Cluster::new();
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: web\n  - name: metrics\n    port: 9100\n";
    cluster.apply(svc);
    let pods = [
        pod("old", "app=web", None, Some("10.244.1.2"), &[("web", 8080)]),
        pod("new", "app=web", None, Some("10.244.1.3"), &[("web", 9090)]),
        pod("bare", "app=web", None, Some("10.244.1.4"), &[]),
    ]
    .concat();
    cluster.apply(&pods);
    let ep = cluster.get("ep", "default", "web").unwrap();
    let mut by_ports: Vec<(String, Vec<String>)> = ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ports: Vec<String> = s["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| format!("{}={}", p["name"].as_str().unwrap(), p["port"]))
                .collect();
            (ports.join(","), ips(s.get("addresses")))
        })
        .collect();
    by_ports.sort();
    assert_eq!(
        by_ports,
        vec![
            (
                "http=8080,metrics=9100".to_owned(),
                vec!["10.244.1.2".to_owned()]
            ),
            (
                "http=9090,metrics=9100".to_owned(),
                vec!["10.244.1.3".to_owned()]
            ),
            ("metrics=9100".to_owned(), vec!["10.244.1.4".to_owned()]),
        ]
    );
    let slices: Vec<Value> = cluster.list("endpointslice");
    assert_eq!(slices.len(), 3);
    for slice in &slices {
        let address = str_of(slice, "/endpoints/0/addresses/0");
        let http = slice["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "http")
            .map(|p| p["port"].clone());
        match address {
            "10.244.1.2" => assert_eq!(http, Some(json!(8080))),
            "10.244.1.3" => assert_eq!(http, Some(json!(9090))),
            "10.244.1.4" => assert_eq!(http, None),
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn user_endpoints_only_for_services_without_selector() {
    let cluster = Cluster::new();
    cluster.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: external-db\nspec:\n  ports:\n  - port: 5432\n");
    let endpoints = "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: external-db\nsubsets:\n- addresses:\n  - ip: 192.0.2.10\n  ports:\n  - port: 5432\n    protocol: tcp\n";
    let stored = &cluster.apply(endpoints)[0];
    assert_eq!(stored["subsets"][0]["ports"][0]["protocol"], "TCP");
    cluster.apply(&seed("service-store-be.yaml"));
    let managed = endpoints.replace("external-db", "store-be");
    let run = cluster.apply_failing(&managed);
    assert!(
        run.stderr.contains("Endpoints default/store-be")
            && run.stderr.contains("managed by the endpoints controller"),
        "{}",
        run.stderr
    );
}
