//! Real CNI consumers: Debian's reference plugins (`containernetworking-plugins`, in
//! `/usr/lib/cni`) chained after ours the way libcni runs a conflist, and the time a pod's
//! network setup takes, ours beside the reference `bridge` + `host-local`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Answer, Netns, exec_plugin, leases, ours, vars};

const REFERENCE: &str = "/usr/lib/cni";

fn reference(plugin: &str) -> std::path::PathBuf {
    let path = Path::new(REFERENCE).join(plugin);
    assert!(
        path.exists(),
        "{} is missing: install Debian's containernetworking-plugins (scripts/install-deps.sh)",
        path.display()
    );
    path
}

/// Runs a conflist's plugins as libcni does: ADD in order, each with the previous result as
/// `prevResult`; DEL (and CHECK) in reverse with the final result. Returns each answer.
fn run_list(
    node: &Netns,
    list: &Value,
    command: &str,
    env: &[(&'static str, String)],
    prev: Option<&Value>,
) -> Vec<(String, Answer)> {
    let mut plugins: Vec<Value> = list["plugins"].as_array().unwrap().clone();
    if command != "ADD" {
        plugins.reverse();
    }
    let mut answers = Vec::new();
    let mut result = prev.cloned();
    for mut plugin in plugins {
        plugin["name"] = list["name"].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        if let Some(r) = &result {
            plugin["prevResult"] = r.clone();
        }
        let kind = plugin["type"].as_str().unwrap().to_owned();
        let path = if kind == "ferroplane-cni" {
            ours()
        } else {
            reference(&kind)
        };
        let mut env = env.to_vec();
        env.retain(|(k, _)| *k != "CNI_COMMAND");
        env.push(("CNI_COMMAND", command.to_owned()));
        let answer = exec_plugin(node, &path, &env, &plugin.to_string());
        assert!(
            answer.ok,
            "{command} {kind}: {} {}",
            answer.json, answer.stderr
        );
        if command == "ADD" {
            result = Some(answer.json.clone());
        }
        answers.push((kind, answer));
    }
    answers
}

#[test]
fn reference_plugins_chained_after_ours_accept_our_result() {
    let node = Netns::new();
    let pod = Netns::new();
    let data = tempfile::tempdir().unwrap();
    // Debian's plugins (1.1.x) speak CNI up to 1.0.0.
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "fptest",
        "plugins": [
            {"type": "ferroplane-cni", "podCIDR": "10.244.7.0/24",
             "dataDir": data.path().display().to_string(), "mtu": 1450},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.accept_local": "1"}},
            {"type": "bandwidth", "ingressRate": 100_000_000, "ingressBurst": 1_000_000,
             "egressRate": 100_000_000, "egressBurst": 1_000_000}
        ]
    });
    let env = vars("ADD", "chain1", Some(&pod), "chained", "");
    let added = run_list(&node, &list, "ADD", &env, None);
    let ours_result = &added[0].1.json;
    for (kind, answer) in &added[1..] {
        println!("{kind} answered: {}", answer.json);
        assert_eq!(
            answer.json["ips"], ours_result["ips"],
            "{kind} passes our addresses on"
        );
        // bandwidth appends the ifb device it shapes egress on; ours stay first, unchanged.
        let theirs = answer.json["interfaces"].as_array().unwrap();
        let mine = ours_result["interfaces"].as_array().unwrap();
        assert_eq!(
            &theirs[..mine.len()],
            mine.as_slice(),
            "{kind} keeps our interfaces"
        );
    }
    let sysctl = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &pod.name,
            "cat",
            "/proc/sys/net/ipv4/conf/eth0/accept_local",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sysctl.stdout).trim(),
        "1",
        "tuning set it"
    );
    let host = ours_result["interfaces"][0]["name"].as_str().unwrap();
    let qdisc = node.ip(&["link", "show", host]);
    assert!(
        qdisc.contains("qdisc tbf"),
        "bandwidth shaped {host}: {qdisc}"
    );
    let last = added.last().unwrap().1.json.clone();
    run_list(&node, &list, "CHECK", &env, Some(&last));
    run_list(&node, &list, "DEL", &env, Some(&last));
    assert!(pod.links().is_empty(), "{:?}", pod.links());
    assert!(
        node.links().iter().all(|l| !l.starts_with("fp")),
        "{:?}",
        node.links()
    );
    assert!(leases(data.path()).is_empty());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
        percentile(times, 0.5).as_secs_f64() * 1e3,
        percentile(times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3
    )
}

/// Times ADD and DEL of `pods` pods, one after the other, with conflist `list`.
fn time_setup(list: &Value, pods: usize) -> (Vec<Duration>, Vec<Duration>) {
    let node = Netns::new();
    let namespaces: Vec<Netns> = (0..pods).map(|_| Netns::new()).collect();
    let mut adds = Vec::new();
    let mut results = Vec::new();
    for (i, pod) in namespaces.iter().enumerate() {
        let env = vars("ADD", &format!("b{i}"), Some(pod), &format!("b{i}"), "");
        let start = Instant::now();
        let answers = run_list(&node, list, "ADD", &env, None);
        adds.push(start.elapsed());
        results.push((env, answers.last().unwrap().1.json.clone()));
    }
    let mut dels = Vec::new();
    for (env, result) in &results {
        let start = Instant::now();
        run_list(&node, list, "DEL", env, Some(result));
        dels.push(start.elapsed());
    }
    (adds, dels)
}

#[test]
fn pod_setup_time_beside_the_reference_bridge_and_host_local() {
    const PODS: usize = 30;
    let data = tempfile::tempdir().unwrap();
    let ours_list = json!({
        "cniVersion": "1.0.0", "name": "fptest",
        "plugins": [{"type": "ferroplane-cni", "podCIDR": "10.244.7.0/24",
                     "dataDir": data.path().display().to_string(), "mtu": 1450}]
    });
    let bridge_list = json!({
        "cniVersion": "1.0.0", "name": "fptest",
        "plugins": [{"type": "bridge", "bridge": "fpcbr0", "isGateway": true,
                     "ipam": {"type": "host-local", "subnet": "10.244.8.0/24",
                              "dataDir": data.path().join("host-local").display().to_string()}}]
    });
    reference("bridge");
    reference("host-local");
    let (mut our_add, mut our_del) = time_setup(&ours_list, PODS);
    let (mut ref_add, mut ref_del) = time_setup(&bridge_list, PODS);
    println!("pod network setup, {PODS} pods one after the other (exec included), debug build:");
    println!("  ferroplane-cni          ADD {}", summary(&mut our_add));
    println!("  bridge + host-local     ADD {}", summary(&mut ref_add));
    println!("  ferroplane-cni          DEL {}", summary(&mut our_del));
    println!("  bridge + host-local     DEL {}", summary(&mut ref_del));
    assert!(leases(data.path()).is_empty());
}
