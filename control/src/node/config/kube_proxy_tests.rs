use super::*;

const FULL: &str = "\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  acceptContentTypes: \"\"
  burst: 10
  contentType: application/vnd.kubernetes.protobuf
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 5
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
configSyncPeriod: 15m0s
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpCloseWaitTimeout: 1h0m0s
  tcpEstablishedTimeout: 24h0m0s
  udpTimeout: 30s
  udpStreamTimeout: 2m0s
enableProfiling: false
healthzBindAddress: 0.0.0.0:10256
hostnameOverride: node-a
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 1s
  syncPeriod: 30s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: \"\"
  strictARP: false
  syncPeriod: 30s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
mode: iptables
nodePortAddresses:
- primary
- 192.168.1.10/32
oomScoreAdj: -999
";

#[test]
fn a_kubeadm_style_configuration_maps_onto_the_node_config() {
    let mut file = FileConfig::default();
    let mapping = apply(FULL, &mut file, 4).unwrap();
    assert_eq!(file.node_name.as_deref(), Some("node-a"));
    assert_eq!(file.node_ip, None, "0.0.0.0 names no node IP");
    assert_eq!(file.source, Some(SourceKind::Kubernetes));
    assert_eq!(
        file.kubeconfig.as_deref(),
        Some(Path::new("/var/lib/kube-proxy/kubeconfig.conf"))
    );
    let cluster = file.cluster.as_ref().unwrap();
    assert_eq!(cluster.cluster_cidr.to_string(), "10.244.0.0/16");
    assert_eq!(
        file.node_port_addresses,
        Some(vec![
            NodePortAddress::Primary,
            NodePortAddress::Address(Ipv4Addr::new(192, 168, 1, 10))
        ])
    );
    assert_eq!(
        file.health.bind_address,
        Some("0.0.0.0:10256".parse().unwrap())
    );
    assert_eq!(
        mapping.metrics_bind_address,
        Some("127.0.0.1:10249".parse().unwrap())
    );
    assert_eq!(
        file.metrics.bind_address.as_deref(),
        Some("127.0.0.1:10249")
    );
    // max(32768 x 4 cores, 131072)
    assert_eq!(file.conntrack.max_entries, Some(131_072));
    let secs = |d: Option<ConfigDuration>| d.map(|d| d.0.as_secs());
    assert_eq!(secs(file.conntrack.tcp_established_timeout), Some(86_400));
    assert_eq!(secs(file.conntrack.tcp_close_wait_timeout), Some(3600));
    assert_eq!(secs(file.conntrack.udp_timeout), Some(30));
    assert_eq!(secs(file.conntrack.udp_stream_timeout), Some(120));
    assert_eq!(secs(file.resync_interval), Some(30));
    let ignored = mapping.ignored.join("\n");
    for field in [
        "clusterCIDR: IPv6 range fd00:10:244::/56",
        "clientConnection.qps",
        "configSyncPeriod",
        "iptables.minSyncPeriod",
        "iptables.masqueradeBit",
        "ipvs: the section of another mode",
        "oomScoreAdj",
        "mode: iptables",
    ] {
        assert!(ignored.contains(field), "{field} not named in:\n{ignored}");
    }
    assert!(!ignored.contains("enableProfiling"), "false is the default");
}

#[test]
fn node_yaml_values_win_over_the_kube_proxy_configuration() {
    let mut file = super::super::parse("nodeName: mine\nresyncInterval: 10s\n").unwrap();
    apply(FULL, &mut file, 1).unwrap();
    assert_eq!(file.node_name.as_deref(), Some("mine"));
    assert_eq!(file.resync_interval.map(|d| d.0.as_secs()), Some(10));
    assert_eq!(
        file.conntrack.max_entries,
        Some(131_072),
        "min wins on 1 core"
    );
}

#[test]
fn unknown_and_invalid_fields_are_named_errors_and_change_nothing() {
    let header = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";
    for (body, expected) in [
        ("clusterCidr: 10.0.0.0/8\n", "clusterCidr"),
        ("conntrack:\n  maxPerCPU: 5\n", "conntrack"),
        ("clusterCIDR: 10.0.0.0/33\n", "clusterCIDR"),
        ("healthzBindAddress: 0.0.0.0\n", "healthzBindAddress"),
        (
            "metricsBindAddress: localhost:10249\n",
            "metricsBindAddress",
        ),
        (
            "iptables:\n  syncPeriod: 30 seconds\n",
            "iptables.syncPeriod",
        ),
        ("iptables:\n  syncPeriod: 0s\n", "iptables.syncPeriod"),
        ("iptables:\n  strictARP: true\n", "iptables.strictARP"),
        ("mode: userspace\n", "mode"),
        ("nodePortAddresses: [10.0.0.0/8]\n", "nodePortAddresses"),
        ("bindAddress: nowhere\n", "bindAddress"),
    ] {
        let mut file = FileConfig::default();
        let error = apply(&format!("{header}{body}"), &mut file, 2).unwrap_err();
        assert!(error.0.contains(expected), "{body:?}: {error}");
        assert!(file.node_name.is_none() && file.cluster.is_none());
    }
    let mut file = FileConfig::default();
    let error = apply("apiVersion: v1\nkind: ConfigMap\n", &mut file, 1).unwrap_err();
    assert!(error.0.starts_with("apiVersion"), "{error}");
    let error = apply(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: Other\n",
        &mut file,
        1,
    )
    .unwrap_err();
    assert!(error.0.starts_with("kind"), "{error}");
}

#[test]
fn go_durations_parse_as_kube_proxy_writes_them() {
    assert_eq!(parse_go_duration("1h0m0s"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
    assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    for bad in ["", "s", "5", "-5s", "3 weeks", "1d"] {
        assert!(parse_go_duration(bad).is_err(), "{bad:?}");
    }
}
