#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;

use dataplane::tables::node::OverlayMode;

use super::*;

const EXAMPLE: &str = include_str!("../../../examples/node.yaml");

fn minimal(extra: &str) -> String {
    format!("nodeName: n1\nports:\n  uplink:\n    interface: eth0\n{extra}")
}

fn resolved(text: &str) -> Result<NodeSettings, ConfigError> {
    resolve(parse(text)?, &Overrides::default())
}

#[test]
fn the_example_file_resolves_to_what_it_says() {
    let s = resolved(EXAMPLE).unwrap();
    assert_eq!(s.node_name, "node-a");
    assert_eq!(s.node_ip, Some(Ipv4Addr::new(192, 168, 100, 10)));
    assert_eq!(
        s.source,
        SourceSettings::State(PathBuf::from("/var/lib/ferroplane"))
    );
    assert_eq!(s.uplink.interface, "eth0");
    assert_eq!(s.uplink.backend, UplinkBackend::AfPacket);
    assert_eq!(s.host.as_ref().unwrap().interface, "fp-host");
    assert_eq!(s.workers, 2);
    assert_eq!(s.cores, vec![2, 3]);
    assert_eq!(s.conntrack.capacity, 262_144);
    assert_eq!(s.conntrack.timeouts.tcp_established, 86_400);
    assert_eq!(s.conntrack.timeouts.tcp_syn_sent, 120);
    assert_eq!(s.conntrack.timeouts.tcp_close_wait, 3_600);
    assert_eq!(s.conntrack.limits.unreplied_per_source, 16_384);
    assert_eq!(s.conntrack.limits.unreplied_per_destination, 65_536);
    assert_eq!(s.local.underlay_mtu, 1500);
    assert_eq!(s.local.overlay, OverlayMode::Vxlan);
    assert_eq!(s.local.snat_ports, (61000, 65535));
    assert_eq!(s.local.uplink_next_hop_mac.to_string(), "02:fd:00:00:00:01");
    assert_eq!(s.local.peer_underlay_macs.len(), 1);
    assert!(
        s.local.node_port_addresses.is_empty(),
        "primary alone is the default"
    );
    assert_eq!(s.health.bind.port(), 10256);
    assert_eq!(
        s.health.metrics_bind.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:10249")
    );
    assert_eq!(
        s.flow_state,
        PathBuf::from("/run/ferroplane/node-a/conntrack.shm")
    );
}

/// Every key path of a YAML value, dotted.
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let serde_json::Value::Object(map) = value {
        for (key, inner) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            key_paths(inner, &path, out);
            out.push(path);
        }
    }
}

#[test]
fn every_key_of_the_example_is_in_the_help() {
    let value: serde_json::Value = serde_saphyr::from_str(EXAMPLE).unwrap();
    let mut paths = Vec::new();
    key_paths(&value, "", &mut paths);
    assert!(paths.len() > 40, "{paths:?}");
    // Keys the example shows commented out.
    for commented in [
        "kubeconfig",
        "kubeContext",
        "cluster",
        "listen",
        "tokenFile",
        "slice",
    ] {
        assert!(EXAMPLE.contains(&format!("# {commented}:")), "{commented}");
        paths.push(commented.to_owned());
    }
    for path in paths {
        // Map keys of peerMACs are node names, not config keys.
        if path.starts_with("ports.uplink.peerMACs.") {
            continue;
        }
        let leaf = path.rsplit('.').next().unwrap();
        assert!(
            CONFIG_HELP.contains(&path) || CONFIG_HELP.contains(leaf),
            "{path} is not documented in CONFIG_HELP"
        );
    }
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (minimal("colour: blue\n"), "colour"),
        (
            "nodeName: n\nports:\n  uplink:\n    interface: e\n    backend: dpdk\n".to_owned(),
            "ports.uplink.backend",
        ),
        ("nodeName: n\n".to_owned(), "ports.uplink"),
        (
            "ports:\n  uplink:\n    interface: eth0\n".to_owned(),
            "nodeName",
        ),
        (
            minimal("conntrack:\n  udpTimeout: soon\n"),
            "conntrack.udpTimeout",
        ),
        (
            minimal("conntrack:\n  udpTimeout: 0s\n"),
            "conntrack.udpTimeout",
        ),
        (
            minimal("workers:\n  count: 3\n  cores: [1]\n"),
            "workers.cores",
        ),
        (minimal("workers:\n  count: 0\n"), "workers.count"),
        (minimal("mtu: 9000\n"), "mtu"),
        (minimal("cluster:\n  vxlanVNI: 1\n"), "cluster"),
        (
            minimal("source: kubernetes\ncluster:\n  vxlanVNI: 0\n"),
            "cluster",
        ),
        (
            minimal("nodePortAddresses: [everywhere]\n"),
            "nodePortAddresses",
        ),
        (
            minimal("nodePortAddresses: [primary, 10.0.0.1]\n"),
            "nodePortAddresses",
        ),
        (
            minimal("nodePortAddresses: [10.0.0.0/33]\n"),
            "nodePortAddresses",
        ),
        (
            minimal("nodePortAddresses: [\"2001:db8::/64\"]\n"),
            "nodePortAddresses",
        ),
        (
            minimal("admin:\n  listen: 127.0.0.1:9099\n"),
            "admin.listen",
        ),
        (minimal("ports:\n  pods:\n    backend: af-xdp\n"), "ports"),
        (minimal("snatPorts: 10-20\n"), "snatPorts"),
        (
            "nodeName: n\nports:\n  uplink:\n    interface: e\n    mac: ff:ff:ff:ff:ff:ff\n"
                .to_owned(),
            "ports.uplink.mac",
        ),
    ];
    for (text, field) in cases {
        let error = resolved(&text).expect_err(&text);
        assert!(
            error.0.starts_with(field) || error.0.contains(&format!("{field}:")),
            "{text:?}: {error} does not name {field}"
        );
    }
}

#[test]
fn flags_override_the_file_and_defaults_fill_the_rest() {
    let file = parse(&minimal(
        "workers:\n  count: 4\nsource: state\nstateDir: /a\n",
    ))
    .unwrap();
    let flags = Overrides {
        node_name: Some("flagged".to_owned()),
        node_ip: Some(Ipv4Addr::new(10, 0, 0, 9)),
        source: None,
        workers: Some(2),
        state_dir: Some(PathBuf::from("/b")),
        ..Overrides::default()
    };
    let s = resolve(file, &flags).unwrap();
    assert_eq!(s.node_name, "flagged");
    assert_eq!(s.node_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
    assert_eq!(s.workers, 2);
    assert_eq!(s.source, SourceSettings::State(PathBuf::from("/b")));
    assert_eq!(s.conntrack.capacity, 131_072, "the floor for two workers");
    assert_eq!(
        (
            s.conntrack.limits.unreplied_per_source,
            s.conntrack.limits.unreplied_per_destination
        ),
        (131_072 / 16, 131_072 / 4),
        "limits scale with the table by default"
    );
    assert_eq!(
        s.admin.socket,
        PathBuf::from("/run/ferroplane/flagged.sock")
    );
    assert_eq!(s.pods.backend, PodBackend::Tap);
    assert!(s.host.is_none());
    let eight = resolve(
        parse(&minimal("workers:\n  count: 8\n")).unwrap(),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(eight.conntrack.capacity, 8 * 32_768);
}

#[test]
fn explicit_node_port_addresses_keep_primary_first() {
    let s = resolved(&minimal(
        "nodeIP: 192.168.1.5\nnodePortAddresses: [10.0.0.1, primary]\n",
    ))
    .unwrap();
    assert_eq!(
        s.local.node_port_addresses,
        vec![Ipv4Addr::new(192, 168, 1, 5), Ipv4Addr::new(10, 0, 0, 1)]
    );
}

#[test]
fn node_port_address_cidrs_are_kept_apart_and_primary_stays_with_them() {
    let s = resolved(&minimal(
        "nodeIP: 192.168.1.5\nnodePortAddresses: [primary, 10.0.0.0/8]\n",
    ))
    .unwrap();
    assert_eq!(s.local.node_port_addresses, [Ipv4Addr::new(192, 168, 1, 5)]);
    assert_eq!(
        s.local.node_port_cidrs,
        ["10.0.0.0/8".parse::<crate::net::Cidr>().unwrap()]
    );
    let only = resolved(&minimal("nodePortAddresses: [10.0.0.0/8]\n")).unwrap();
    assert!(only.local.node_port_addresses.is_empty());
    assert_eq!(only.local.node_port_cidrs.len(), 1);
}

#[test]
fn underscore_backend_names_of_the_deploy_example_are_accepted() {
    let s = resolved(
        "nodeName: n\nports:\n  uplink:\n    interface: e\n    backend: af_packet\n  pods:\n    backend: af_packet\n",
    )
    .unwrap();
    assert_eq!(s.uplink.backend, UplinkBackend::AfPacket);
    assert_eq!(s.pods.backend, PodBackend::AfPacket);
}

#[test]
fn reload_diff_separates_live_fields_from_restart_fields() {
    let a = resolved(&minimal("mtu: 1500\nworkers:\n  count: 1\n")).unwrap();
    let b = resolved(&minimal("mtu: 1450\nworkers:\n  count: 2\n")).unwrap();
    let (live, restart) = b.changes_from(&a);
    assert_eq!(live, vec!["mtu"]);
    assert_eq!(restart, vec!["workers"]);
    assert_eq!(a.changes_from(&a), (Vec::new(), Vec::new()));
}

#[test]
fn yaml_1_1_boolean_words_stay_strings() {
    let s = resolved("nodeName: no\nports:\n  uplink:\n    interface: n\n").unwrap();
    assert_eq!(s.node_name, "no");
    assert_eq!(s.uplink.interface, "n");
}

#[test]
fn an_empty_file_is_an_empty_configuration() {
    assert!(parse("").unwrap().node_name.is_none());
    assert!(parse("nodeName: [").is_err());
}

#[test]
fn the_deploy_config_map_is_a_valid_node_yaml_for_the_kubernetes_source() {
    let text = include_str!("../../../../deploy/10-configmap.yaml");
    let map: k8s_openapi::api::core::v1::ConfigMap = serde_saphyr::from_str(text).unwrap();
    let node_yaml = map.data.unwrap().remove("node.yaml").unwrap();
    let flags = Overrides {
        node_name: Some("worker-1".to_owned()),
        source: Some(SourceKind::Kubernetes),
        ..Overrides::default()
    };
    let s = resolve(parse(&node_yaml).unwrap(), &flags).unwrap();
    assert!(matches!(s.source, SourceSettings::Kubernetes { .. }));
    assert_eq!(s.workers, 2);
    assert_eq!(s.uplink.backend, UplinkBackend::AfPacket);
    assert_eq!(s.flow_state, PathBuf::from("/run/ferroplane/conntrack.shm"));
}

#[test]
fn the_udp_socket_uplink_needs_af_packet_vxlan_and_a_node_ip() {
    let vxlan = "    vxlan: udp-socket\n";
    let s = resolved(&format!("nodeIP: 192.168.50.2\n{}", minimal(vxlan))).unwrap();
    assert_eq!(s.uplink.vxlan, UplinkVxlan::UdpSocket);
    assert_eq!(
        resolved(&minimal("")).unwrap().uplink.vxlan,
        UplinkVxlan::Raw
    );
    for (text, needs) in [
        (minimal(vxlan), "nodeIP"),
        (
            format!("nodeIP: 192.168.50.2\noverlay: routed\n{}", minimal(vxlan)),
            "overlay vxlan",
        ),
        (
            format!(
                "nodeIP: 192.168.50.2\n{}",
                minimal(&format!("    backend: tap\n{vxlan}"))
            ),
            "af-packet",
        ),
    ] {
        let error = resolved(&text).expect_err(&text).0;
        assert!(
            error.starts_with("ports.uplink.vxlan: ") && error.contains(needs),
            "{error}"
        );
    }
}

#[test]
fn per_cpu_workers_take_every_allowed_cpu_and_keep_warm_by_default() {
    let allowed = dataplane::io::thread::allowed_cpus().unwrap();
    let s = resolved(&minimal("workers:\n  perCpu: true\n")).unwrap();
    assert!(s.per_cpu);
    assert_eq!((s.workers, s.cores.clone()), (allowed.len(), allowed));
    assert!(
        matches!(
            s.schedule.idle,
            dataplane::worker::IdleMode::KeepWarm { .. }
        ),
        "{:?}",
        s.schedule.idle
    );
    let named = resolved(&minimal("workers:\n  perCpu: true\n  idle: adaptive\n")).unwrap();
    assert!(matches!(
        named.schedule.idle,
        dataplane::worker::IdleMode::Adaptive { .. }
    ));
    let e = resolved(&minimal("workers:\n  perCpu: true\n  count: 2\n")).unwrap_err();
    assert!(e.0.starts_with("workers.perCpu:"), "{}", e.0);
    let unpinned = resolved(&minimal("")).unwrap();
    assert!(!unpinned.per_cpu);
    assert!(matches!(
        unpinned.schedule.idle,
        dataplane::worker::IdleMode::Adaptive { .. }
    ));
}
