//! Scenario 7: cluster DNS. Two `ferroplane dns` pods behind kube-dns (10.96.0.10) answer
//! pods through the dataplane: A for the seed's store-be (also by short name through the
//! kubelet search path), SRV, PTR, NXDOMAIN, TCP; a new Service resolves within a second;
//! 1000 rounds of glibc's parallel A + AAAA through the Service VIP all answered without the
//! 5-second stall; DNS keeps working under default-deny egress once 53 to kube-dns is allowed.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, MANIFESTS};

const DNS_IP: &str = "10.96.0.10";
const GLIBC_PATTERN: &str = include_str!("glibc_pattern.py");

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `dig +short ARGS` from pod `from`.
fn dig(cluster: &Cluster, from: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", from, "--", "dig", "+short", "+time=2", "+tries=1"];
    all.extend_from_slice(args);
    text(&cluster.testbed(&all))
}

#[test]
fn pods_resolve_services_through_the_cluster_dns() {
    let cluster = Cluster::up("dn", &[]);
    let vip = cluster.cluster_ip("store-be");
    let fqdn = "store-be.default.svc.cluster.local";

    assert_eq!(dig(&cluster, "store-fe", &[fqdn]), vip, "A over UDP");
    assert_eq!(
        dig(&cluster, "store-fe", &["+tcp", fqdn]),
        vip,
        "A over TCP"
    );
    // glibc with the pod's resolv.conf: search path and ndots:5 turn the short name into
    // the FQDN.
    let getent = text(&cluster.testbed(&["exec", "store-fe", "--", "getent", "hosts", "store-be"]));
    assert!(
        getent.starts_with(&format!("{vip} ")),
        "getent hosts store-be: {getent}"
    );
    assert_eq!(
        dig(
            &cluster,
            "store-fe",
            &["SRV", &format!("_http._tcp.{fqdn}")]
        ),
        format!("0 100 80 {fqdn}.")
    );
    assert_eq!(dig(&cluster, "store-fe", &["-x", &vip]), format!("{fqdn}."));
    let nx = text(&cluster.testbed(&[
        "exec",
        "store-fe",
        "--",
        "dig",
        "+time=2",
        "+tries=1",
        "nope.default.svc.cluster.local",
    ]));
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(
        nx.contains("IN\tSOA"),
        "NXDOMAIN carries the zone's SOA: {nx}"
    );
    // Each server pod answers on its own address too.
    for pod in ["kube-system/kube-dns-1", "kube-system/kube-dns-2"] {
        let ip = cluster.pod_ip(pod.split('/').nth(1).unwrap());
        assert_eq!(
            dig(&cluster, "store-be-1", &[&format!("@{ip}"), fqdn]),
            vip,
            "{pod}"
        );
    }

    // A new Service is in DNS within a second.
    let name = "store-cache.default.svc.cluster.local";
    cluster.ok(&[
        "apply",
        "-f",
        &format!("{MANIFESTS}/store-cache-service.yaml"),
    ]);
    let applied = Instant::now();
    let cache_ip = cluster.cluster_ip("store-cache");
    while dig(&cluster, "store-fe", &[name]) != cache_ip {
        assert!(
            applied.elapsed() < Duration::from_secs(5),
            "{name} never resolved"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = applied.elapsed();
    eprintln!("store-cache resolvable {took:?} after apply (dig round trips included)");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // glibc's parallel A + AAAA from one socket, through the VIP's DNAT: no lost answers.
    let out = cluster.testbed(&[
        "exec",
        "store-fe",
        "--",
        "python3",
        "-c",
        GLIBC_PATTERN,
        DNS_IP,
        fqdn,
        "1000",
    ]);
    let report = text(&out);
    eprintln!("glibc pattern, 1000 rounds: {report}");
    let fields: Vec<&str> = report.split_whitespace().collect();
    assert_eq!(
        fields.first(),
        Some(&"answered"),
        "{report}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fields[1], "1000", "every round answered: {report}");
    let slowest: f64 = fields[2].parse().unwrap();
    assert!(slowest < 1000.0, "a round took {slowest} ms");

    // Default-deny egress with DNS allowed: names still resolve, everything else is cut.
    cluster.ok(&[
        "apply",
        "-f",
        &format!("{MANIFESTS}/dns-egress-policy.yaml"),
    ]);
    let probe = |to: &str| cluster.probe("store-fe", to, "tcp", 1)["result"].clone();
    let started = Instant::now();
    while probe(&format!("{vip}:80")) == "connected" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "egress never denied"
        );
    }
    assert_eq!(dig(&cluster, "store-fe", &[fqdn]), vip, "UDP 53 allowed");
    assert_eq!(
        dig(&cluster, "store-fe", &["+tcp", fqdn]),
        vip,
        "TCP 53 allowed"
    );
}
