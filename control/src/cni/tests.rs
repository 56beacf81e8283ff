//! Bad input and the commands that need no network namespace (those that do are in
//! `control/tests/cni.rs`, as root).

use std::collections::BTreeMap;

use super::spec::code;
use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn conf(dir: &Path, version: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"fp","type":"ferroplane-cni","podCIDR":"10.244.1.0/24","dataDir":"{}"}}"#,
        dir.display()
    )
}

fn add_env(netns: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"),
    ]
}

fn leases(dir: &Path) -> usize {
    Store::open(dir, "fp").unwrap().leases().unwrap().len()
}

#[test]
fn version_answers_the_supported_versions_in_the_version_asked() {
    let out = run(&env(&[("CNI_COMMAND", "VERSION")]), b"")
        .unwrap()
        .unwrap();
    assert_eq!(out["cniVersion"], "1.1.0");
    assert_eq!(
        out["supportedVersions"],
        serde_json::json!(["0.4.0", "1.0.0", "1.1.0"])
    );
    let old = run(
        &env(&[("CNI_COMMAND", "VERSION")]),
        br#"{"cniVersion":"0.4.0"}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(old["cniVersion"], "0.4.0");
}

/// Variables, stdin, the expected code and a word the message must hold.
type Case<'a> = (Vec<(&'a str, &'a str)>, String, u32, &'a str);

#[test]
fn bad_input_gets_the_spec_codes_and_leaves_no_address() {
    let dir = tempfile::tempdir().unwrap();
    let good = conf(dir.path(), "1.1.0");
    let cases: Vec<Case> = vec![
        (
            add_env("/proc/self/ns/net"),
            String::new(),
            code::DECODE_FAILURE,
            "no network configuration",
        ),
        (
            add_env("/proc/self/ns/net"),
            "{not json".to_owned(),
            code::DECODE_FAILURE,
            "not JSON",
        ),
        (
            add_env("/proc/self/ns/net"),
            conf(dir.path(), "0.3.1"),
            code::INCOMPATIBLE_VERSION,
            "0.3.1",
        ),
        (
            add_env("/proc/self/ns/net"),
            r#"{"cniVersion":"1.1.0","type":"ferroplane-cni"}"#.to_owned(),
            code::INVALID_CONFIG,
            "name",
        ),
        (
            add_env("/proc/self/ns/net")
                .into_iter()
                .filter(|(k, _)| *k != "CNI_CONTAINERID")
                .collect(),
            good.clone(),
            code::INVALID_ENV,
            "CNI_CONTAINERID",
        ),
        (
            add_env("/proc/self/ns/net")
                .into_iter()
                .filter(|(k, _)| *k != "CNI_NETNS")
                .collect(),
            good.clone(),
            code::INVALID_ENV,
            "CNI_NETNS",
        ),
        (
            add_env("/run/netns/fp-cni-test-does-not-exist"),
            good.clone(),
            code::CONTAINER_UNKNOWN,
            "does not exist",
        ),
        (
            add_env("/proc/self/ns/net")
                .into_iter()
                .map(|(k, v)| {
                    if k == "CNI_ARGS" {
                        (k, "garbage")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            good.clone(),
            code::INVALID_ENV,
            "CNI_ARGS",
        ),
        (
            add_env("/proc/self/ns/net")
                .into_iter()
                .map(|(k, v)| {
                    if k == "CNI_ARGS" {
                        (k, "IP=10.9.9.9")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            good.clone(),
            code::INVALID_CONFIG,
            "10.9.9.9",
        ),
        (
            add_env("/proc/self/ns/net"),
            good.replace("10.244.1.0/24", "10.244.1.0/33"),
            code::INVALID_CONFIG,
            "prefix length",
        ),
        (
            add_env("/proc/self/ns/net"),
            good.replace(r#""podCIDR":"10.244.1.0/24","#, ""),
            code::INVALID_CONFIG,
            "podCIDR",
        ),
        (
            add_env("/proc/self/ns/net"),
            good.replace(
                r#""podCIDR":"10.244.1.0/24""#,
                r#""podCIDR":"10.244.1.0/24","adminSocket":"/nonexistent/fp-admin.sock""#,
            ),
            code::TRY_AGAIN_LATER,
            "does not answer on its admin socket",
        ),
    ];
    for (vars, stdin, expected, needle) in cases {
        let e = run(&env(&vars), stdin.as_bytes()).unwrap_err();
        assert_eq!(e.code, expected, "{e} for {stdin:?} {vars:?}");
        assert!(
            e.msg.contains(needle) || e.details.contains(needle),
            "{e} should name {needle}"
        );
    }
    assert_eq!(leases(dir.path()), 0, "a failed ADD leaves no address");
}

#[test]
fn del_is_idempotent_and_gc_frees_unlisted_attachments() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), "1.0.0");
    let store = Store::open(dir.path(), "fp").unwrap();
    let range = PodRange::parse("10.244.1.0/24").unwrap();
    for id in ["a", "b", "c"] {
        store.allocate(range, id, "eth0", None).unwrap();
    }
    drop(store);
    let del = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "a"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_NETNS", "/run/netns/fp-cni-test-gone"),
    ];
    for _ in 0..2 {
        assert_eq!(run(&env(&del), c.as_bytes()).unwrap(), None);
    }
    assert_eq!(leases(dir.path()), 2);
    let gc_conf = c.replace(
        r#""podCIDR""#,
        r#""cni.dev/valid-attachments":[{"containerID":"b","ifname":"eth0"}],"podCIDR""#,
    );
    let gc = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")];
    assert_eq!(run(&env(&gc), gc_conf.as_bytes()).unwrap(), None);
    let left = Store::open(dir.path(), "fp").unwrap().leases().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].container_id, "b");
}

#[test]
fn status_reports_an_absent_node_process_as_code_50() {
    let dir = tempfile::tempdir().unwrap();
    let status = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")];
    let c = conf(dir.path(), "1.1.0");
    assert_eq!(run(&env(&status), c.as_bytes()).unwrap(), None);
    let down = c.replace(
        r#""podCIDR""#,
        r#""adminSocket":"/nonexistent/fp-admin.sock","podCIDR""#,
    );
    let e = run(&env(&status), down.as_bytes()).unwrap_err();
    assert_eq!(e.code, code::PLUGIN_NOT_AVAILABLE, "{e}");
    assert_eq!(e.cni_version, "1.1.0");
}

#[test]
fn results_follow_the_asked_version() {
    let attached = spec::Attached {
        host_interface: Some(("fp0123456789".to_owned(), [2, 0, 0, 0, 0, 1])),
        pod_interface: "eth0".to_owned(),
        pod_mac: [0x0a, 0x58, 10, 244, 1, 2],
        mtu: 1450,
        netns: "/run/netns/x".to_owned(),
        addresses: vec![
            spec::PodAddress {
                address: IpAddr::from([10, 244, 1, 2]),
                prefix_len: 24,
                gateway: IpAddr::from([10, 244, 1, 1]),
            },
            spec::PodAddress {
                address: "fd00:10:244:1::2".parse().unwrap(),
                prefix_len: 64,
                gateway: "fe80::1".parse().unwrap(),
            },
        ],
    };
    let new =
        serde_json::to_value(CniResult::new("1.1.0", &attached, spec::Dns::default())).unwrap();
    assert_eq!(new["ips"][0]["address"], "10.244.1.2/24");
    assert_eq!(new["ips"][0]["interface"], 1);
    assert!(new["ips"][0].get("version").is_none());
    assert_eq!(new["interfaces"][1]["sandbox"], "/run/netns/x");
    assert_eq!(new["interfaces"][1]["mac"], "0a:58:0a:f4:01:02");
    assert_eq!(new["routes"][0]["gw"], "10.244.1.1");
    assert_eq!(new["ips"][1]["address"], "fd00:10:244:1::2/64");
    assert_eq!(new["ips"][1]["gateway"], "fe80::1");
    assert_eq!(new["routes"][1]["dst"], "::/0");
    assert_eq!(new["routes"][1]["gw"], "fe80::1");
    let old =
        serde_json::to_value(CniResult::new("0.4.0", &attached, spec::Dns::default())).unwrap();
    assert_eq!(old["ips"][0]["version"], "4");
    assert_eq!(old["ips"][1]["version"], "6");
    let back: CniResult = serde_json::from_value(new).unwrap();
    assert_eq!(
        back.pod_addresses("eth0"),
        vec![
            (
                IpAddr::from([10, 244, 1, 2]),
                24,
                Some(IpAddr::from([10, 244, 1, 1]))
            ),
            (
                "fd00:10:244:1::2".parse().unwrap(),
                64,
                Some("fe80::1".parse().unwrap())
            ),
        ]
    );
}

#[test]
fn install_copies_the_binary_and_a_valid_conflist_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let conflist = dir.path().join("10-ferroplane.conflist");
    let repo_list = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/10-ferroplane.conflist");
    std::fs::copy(&repo_list, &conflist).unwrap();
    let (bin, conf) = (dir.path().join("bin"), dir.path().join("net.d"));
    install(&bin, &conf, &conflist).unwrap();
    assert!(bin.join(PLUGIN_NAME).metadata().unwrap().len() > 0);
    assert_eq!(
        std::fs::read(conf.join("10-ferroplane.conflist")).unwrap(),
        std::fs::read(&repo_list).unwrap()
    );
    std::fs::write(
        &conflist,
        r#"{"cniVersion":"9.9.9","name":"x","plugins":[{"type":"ferroplane-cni"}]}"#,
    )
    .unwrap();
    let e = install(&bin, &dir.path().join("other"), &conflist).unwrap_err();
    assert!(e.contains("9.9.9"), "{e}");
    assert!(!dir.path().join("other").exists());
}
