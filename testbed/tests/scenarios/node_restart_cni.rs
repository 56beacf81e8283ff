//! Scenario node restart (issue 13): pods wired through `ferroplane-cni`; node-1's ferroplane
//! is killed (SIGKILL) while pods are being added. An ADD during the downtime fails with a CNI
//! error naming the cause and leaves no address and no device; the restarted process
//! re-attaches every live pod from its attachment record, every pod reaches the others
//! again, and a pod added afterwards is wired normally.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::cluster::{Cluster, MANIFESTS};
use crate::cni_plugin::{leases, links, node_log, node_netns, node_pid, plugin};

fn all_reach_each_other(cluster: &Cluster, pods: &[&str]) {
    for from in pods {
        for to in pods.iter().filter(|p| *p != from) {
            let target = format!("{}:80", cluster.pod_ip(to));
            let report = cluster.probe(from, &target, "tcp", 1);
            assert_eq!(report["result"], "connected", "{from} -> {to}: {report}");
            assert_eq!(report["answered_by"], *to, "{from} -> {to}: {report}");
        }
    }
}

#[test]
fn a_restarted_node_reattaches_its_pods_and_adds_during_the_downtime_fail_cleanly() {
    let manifest = format!("{MANIFESTS}/restart-pods.yaml");
    let cluster = Cluster::up_with_plugin("nr", &["-f", &manifest]);
    all_reach_each_other(&cluster, &["rs-a", "rs-b", "rs-c"]);

    let pid = node_pid(&cluster, "node-1").to_string();
    let killed = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(200));

    // An ADD while node-1 has no ferroplane: a CNI error naming the cause, nothing left.
    let ns = format!("{}-pod-default-rs-down", cluster.prefix);
    let made = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap();
    assert!(made.success());
    let before = leases(&cluster, "node-1");
    let a: Ipv4Addr = cluster.pod_ip("rs-a").parse().unwrap();
    let ip = Ipv4Addr::from(u32::from(a) & !0xff | 200);
    let error = plugin(&cluster, "node-1", "ADD", "rs-down", &ns, ip).unwrap_err();
    eprintln!("ADD during the downtime: {error}");
    assert!(
        error.contains("\"code\":11") && error.contains("does not answer on its admin socket"),
        "{error}"
    );
    assert_eq!(
        leases(&cluster, "node-1"),
        before,
        "the failed ADD kept an address"
    );
    assert_eq!(
        links(&ns),
        ["lo"],
        "the failed ADD left a device in the pod"
    );
    let host_name = control::node::pod_interface_name("default", "rs-down");
    assert!(
        !links(&node_netns(&cluster, "node-1")).contains(&host_name),
        "the failed ADD left {host_name} on the node"
    );
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();

    // Restart: every pod re-attached from the record.
    cluster.ok(&["restart-node", "node-1", "--crash"]);
    let log = node_log(&cluster, "node-1");
    assert!(
        log.contains("re-attaching 2 pods from the attachment record"),
        "node-1's log does not show the re-attach:\n{log}"
    );
    all_reach_each_other(&cluster, &["rs-a", "rs-b", "rs-c"]);

    // A pod added after the restart is wired through the plugin as before.
    cluster.ok(&["apply", "-f", &format!("{MANIFESTS}/restart-late.yaml")]);
    all_reach_each_other(&cluster, &["rs-a", "rs-late", "rs-c"]);
}
