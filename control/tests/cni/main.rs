//! The CNI plugin as a runtime runs it: `ferroplane-cni` exec'd with the CNI variables in a
//! throw-away node namespace, pods in namespaces of their own; the reference plugins of
//! Debian's `containernetworking-plugins` chained after it, and timed beside it. Root only.

#![allow(clippy::unwrap_used)] // test code

mod chain;
mod harness;

use std::collections::BTreeSet;

use harness::{Netns, exec_plugin, leases, our_conf, ours, vars};
use serde_json::Value;

/// The result's pod address, e.g. `10.244.7.2`.
fn address_of(result: &Value) -> String {
    let cidr = result["ips"][0]["address"].as_str().unwrap();
    cidr.split('/').next().unwrap().to_owned()
}

#[test]
fn veth_add_check_del_as_a_runtime_calls_them() {
    let node = Netns::new();
    let pod = Netns::new();
    let data = tempfile::tempdir().unwrap();
    let conf = our_conf("1.1.0", data.path(), r#","gsoMaxSegs":1"#);
    let add = exec_plugin(
        &node,
        &ours(),
        &vars("ADD", "c1", Some(&pod), "web", ""),
        &conf,
    );
    assert!(add.ok, "ADD: {} {}", add.json, add.stderr);
    println!(
        "ADD result: {}",
        serde_json::to_string_pretty(&add.json).unwrap()
    );
    let result = add.json;
    assert_eq!(result["cniVersion"], "1.1.0");
    let ip = address_of(&result);
    assert_eq!(result["ips"][0]["gateway"], "10.244.7.1");
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
    let host = control::node::pod_interface_name("default", "web");
    assert_eq!(result["interfaces"][0]["name"], host.as_str());
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert!(
        node.has_link(&host),
        "node end {host} in the node namespace"
    );
    let shown = pod.ip(&["-d", "addr", "show", "eth0"]);
    assert!(shown.contains(&format!("inet {ip}/24")), "{shown}");
    assert!(shown.contains("noprefixroute"), "{shown}");
    assert!(shown.contains("mtu 1450"), "{shown}");
    assert!(shown.contains("gso_max_segs 1 "), "{shown}");
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    let mac = format!(
        "0a:58:{:02x}:{:02x}:{:02x}:{:02x}",
        octets[0], octets[1], octets[2], octets[3]
    );
    assert!(shown.contains(&mac), "{shown}");
    let routes = pod.ip(&["route", "show"]);
    assert!(
        routes.contains("default via 10.244.7.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("10.244.7.1 dev eth0") && l.contains("scope link")),
        "{routes}"
    );
    assert!(
        !routes.contains("10.244.7.0/24"),
        "no connected route: {routes}"
    );
    assert_eq!(leases(data.path()), vec![ip.clone()]);

    let with_prev = |conf: &str, prev: &Value| {
        let mut v: Value = serde_json::from_str(conf).unwrap();
        v["prevResult"] = prev.clone();
        v.to_string()
    };
    let check = exec_plugin(
        &node,
        &ours(),
        &vars("CHECK", "c1", Some(&pod), "web", ""),
        &with_prev(&conf, &result),
    );
    assert!(check.ok, "CHECK: {}", check.json);
    pod.ip(&["route", "del", "default"]);
    let broken = exec_plugin(
        &node,
        &ours(),
        &vars("CHECK", "c1", Some(&pod), "web", ""),
        &with_prev(&conf, &result),
    );
    assert!(!broken.ok, "CHECK must see the missing default route");
    assert_eq!(broken.json["code"], 100, "{}", broken.json);

    for round in 0..2 {
        let del = exec_plugin(
            &node,
            &ours(),
            &vars("DEL", "c1", Some(&pod), "web", ""),
            &with_prev(&conf, &result),
        );
        assert!(del.ok, "DEL #{round}: {}", del.json);
    }
    assert!(!pod.has_link("eth0"));
    assert!(!node.has_link(&host));
    assert!(leases(data.path()).is_empty());
    let gone = exec_plugin(&node, &ours(), &vars("DEL", "c1", None, "web", ""), &conf);
    assert!(gone.ok, "DEL without a netns: {}", gone.json);
}

#[test]
fn dual_stack_pods_get_an_address_and_a_default_route_per_family() {
    let node = Netns::new();
    let pod = Netns::new();
    let data = tempfile::tempdir().unwrap();
    let conf = our_conf("1.1.0", data.path(), "").replace(
        r#""podCIDR":"10.244.7.0/24""#,
        r#""podCIDR":"10.244.7.0/24,fd00:10:244:7::/64""#,
    );
    let args = "IP=10.244.7.9,fd00:10:244:7::9";
    let add = exec_plugin(
        &node,
        &ours(),
        &vars("ADD", "d1", Some(&pod), "dual", args),
        &conf,
    );
    assert!(add.ok, "ADD: {} {}", add.json, add.stderr);
    let result = add.json;
    assert_eq!(result["ips"][0]["address"], "10.244.7.9/24");
    assert_eq!(result["ips"][1]["address"], "fd00:10:244:7::9/64");
    assert_eq!(result["ips"][1]["gateway"], "fe80::1");
    assert_eq!(result["ips"][1]["interface"], 1);
    assert_eq!(result["routes"][1]["dst"], "::/0");
    let shown = pod.ip(&["-6", "addr", "show", "eth0"]);
    assert!(shown.contains("inet6 fd00:10:244:7::9/64"), "{shown}");
    assert!(shown.contains("noprefixroute"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.contains("inet6 fd00:10:244:7::9/64") && !l.contains("tentative")),
        "no DAD wait: {shown}"
    );
    let routes6 = pod.ip(&["-6", "route", "show"]);
    assert!(
        routes6.contains("default via fe80::1 dev eth0"),
        "{routes6}"
    );
    assert!(
        !routes6.contains("fd00:10:244:7::/64"),
        "no connected route: {routes6}"
    );
    assert!(
        pod.ip(&["route", "show"])
            .contains("default via 10.244.7.1 dev eth0")
    );
    let mut held = leases(data.path());
    held.sort();
    assert_eq!(held, vec!["10.244.7.9", "fd00:10:244:7::9"]);

    let with_prev = |prev: &Value| {
        let mut v: Value = serde_json::from_str(&conf).unwrap();
        v["prevResult"] = prev.clone();
        v.to_string()
    };
    let check = exec_plugin(
        &node,
        &ours(),
        &vars("CHECK", "d1", Some(&pod), "dual", args),
        &with_prev(&result),
    );
    assert!(check.ok, "CHECK: {}", check.json);
    pod.ip(&["-6", "route", "del", "default"]);
    let broken = exec_plugin(
        &node,
        &ours(),
        &vars("CHECK", "d1", Some(&pod), "dual", args),
        &with_prev(&result),
    );
    assert!(!broken.ok, "CHECK must see the missing IPv6 default route");
    assert_eq!(broken.json["code"], 100, "{}", broken.json);
    assert!(
        broken.json["msg"].as_str().unwrap().contains("IPv6"),
        "{}",
        broken.json
    );
    let del = exec_plugin(
        &node,
        &ours(),
        &vars("DEL", "d1", Some(&pod), "dual", args),
        &with_prev(&result),
    );
    assert!(del.ok, "DEL: {}", del.json);
    assert!(leases(data.path()).is_empty(), "DEL frees both families");

    let v6_only = conf.replace("10.244.7.0/24,", "");
    let refused = exec_plugin(
        &node,
        &ours(),
        &vars("ADD", "d2", Some(&pod), "dual", ""),
        &v6_only,
    );
    assert!(!refused.ok);
    assert_eq!(refused.json["code"], 7, "{}", refused.json);
    assert!(
        refused.json["msg"].as_str().unwrap().contains("IPv6-only"),
        "{}",
        refused.json
    );
}

#[test]
fn tap_pods_get_a_tap_in_their_namespace_and_old_runtimes_a_0_4_0_result() {
    let node = Netns::new();
    let pod = Netns::new();
    let data = tempfile::tempdir().unwrap();
    let conf = our_conf("0.4.0", data.path(), r#","interface":"tap""#);
    let add = exec_plugin(
        &node,
        &ours(),
        &vars("ADD", "t1", Some(&pod), "tapper", "IP=10.244.7.42"),
        &conf,
    );
    assert!(add.ok, "ADD: {} {}", add.json, add.stderr);
    assert_eq!(add.json["cniVersion"], "0.4.0");
    assert_eq!(add.json["ips"][0]["version"], "4");
    assert_eq!(add.json["ips"][0]["address"], "10.244.7.42/24");
    let shown = pod.ip(&["-d", "link", "show", "eth0"]);
    assert!(shown.contains("tun type tap"), "{shown}");
    assert!(shown.contains("0a:58:0a:f4:07:2a"), "{shown}");
    assert!(
        node.links().is_empty(),
        "nothing on the node side: {:?}",
        node.links()
    );
    let del = exec_plugin(
        &node,
        &ours(),
        &vars("DEL", "t1", Some(&pod), "tapper", ""),
        &conf,
    );
    assert!(del.ok, "{}", del.json);
    assert!(!pod.has_link("eth0"));
    assert!(leases(data.path()).is_empty());
}

#[test]
fn a_failing_add_leaves_no_address_and_no_link() {
    let node = Netns::new();
    let pod = Netns::new();
    let data = tempfile::tempdir().unwrap();
    // The pod already has an eth0 of someone else's: the rename fails.
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let conf = our_conf("1.0.0", data.path(), "");
    let add = exec_plugin(
        &node,
        &ours(),
        &vars("ADD", "f1", Some(&pod), "fail", ""),
        &conf,
    );
    assert!(!add.ok, "ADD must fail: {}", add.json);
    assert_eq!(add.json["code"], 5, "{}", add.json);
    assert!(
        add.json["msg"].as_str().unwrap().contains("eth0"),
        "{}",
        add.json
    );
    assert!(leases(data.path()).is_empty(), "address freed");
    assert!(
        node.links().is_empty(),
        "node end deleted: {:?}",
        node.links()
    );
    let mut left = pod.links();
    left.sort();
    assert_eq!(
        left,
        vec!["eth0", "other0"],
        "only the pod's own pair is left"
    );
    assert!(!pod.ip(&["addr", "show", "eth0"]).contains("10.244.7."));

    let exhausted = our_conf("1.0.0", data.path(), "").replace("10.244.7.0/24", "10.244.8.0/30");
    let first = Netns::new();
    let ok = exec_plugin(
        &node,
        &ours(),
        &vars("ADD", "x1", Some(&first), "x1", ""),
        &exhausted,
    );
    assert!(ok.ok, "{}", ok.json);
    let second = Netns::new();
    let full = exec_plugin(
        &node,
        &ours(),
        &vars("ADD", "x2", Some(&second), "x2", ""),
        &exhausted,
    );
    assert_eq!(full.json["code"], 11, "{}", full.json);
    assert!(second.links().is_empty());
    let moved = our_conf("1.0.0", data.path(), "").replace("10.244.7.0/24", "10.244.9.0/24");
    let changed = exec_plugin(
        &node,
        &ours(),
        &vars("ADD", "x3", Some(&second), "x3", ""),
        &moved,
    );
    assert_eq!(changed.json["code"], 7, "{}", changed.json);
    assert!(
        changed.json["msg"]
            .as_str()
            .unwrap()
            .contains("podCIDR changed"),
        "{}",
        changed.json
    );
    assert!(second.links().is_empty());
    assert_eq!(leases(data.path()).len(), 1);
}

#[test]
fn fifty_concurrent_adds_and_dels_hand_out_no_address_twice_and_leak_none() {
    const PODS: usize = 50;
    let node = Netns::new();
    let pods: Vec<Netns> = (0..PODS).map(|_| Netns::new()).collect();
    let data = tempfile::tempdir().unwrap();
    let conf = our_conf("1.1.0", data.path(), "");
    let run_all = |command: &'static str| -> Vec<harness::Answer> {
        std::thread::scope(|s| {
            let handles: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    let (node, conf) = (&node, &conf);
                    s.spawn(move || {
                        let name = format!("p{i}");
                        exec_plugin(
                            node,
                            &ours(),
                            &vars(command, &name, Some(pod), &name, ""),
                            conf,
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let added = run_all("ADD");
    let mut seen = BTreeSet::new();
    for (i, answer) in added.iter().enumerate() {
        assert!(answer.ok, "ADD p{i}: {} {}", answer.json, answer.stderr);
        let ip = address_of(&answer.json);
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
        assert!(
            pods[i]
                .ip(&["addr", "show", "eth0"])
                .contains(&format!("inet {ip}/"))
        );
    }
    let on_disk: BTreeSet<String> = leases(data.path()).into_iter().collect();
    assert_eq!(on_disk, seen, "one address file per pod");
    assert_eq!(node.links().len(), PODS);
    for (i, answer) in run_all("DEL").iter().enumerate() {
        assert!(answer.ok, "DEL p{i}: {}", answer.json);
    }
    assert!(
        leases(data.path()).is_empty(),
        "leaked: {:?}",
        leases(data.path())
    );
    assert!(node.links().is_empty(), "leaked links: {:?}", node.links());
    assert!(pods.iter().all(|p| p.links().is_empty()));
}
