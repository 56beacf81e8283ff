//! `ferroplane run --kube-proxy-config FILE`: a `KubeProxyConfiguration`
//! (`kubeproxy.config.k8s.io/v1alpha1`, kube-proxy's `--config`) mapped onto the node
//! configuration, so a cluster replacing kube-proxy keeps its ConfigMap.
//!
//! Every upstream field is known by its upstream name; an unknown field, a wrong
//! `apiVersion`/`kind` or a value that does not parse is a [`ConfigError`] naming the field.
//! Fields that apply fill what `node.yaml` leaves unset (`node.yaml` wins):
//!
//! | KubeProxyConfiguration | node.yaml |
//! |---|---|
//! | `hostnameOverride` | `nodeName` |
//! | `bindAddress` (IPv4, not `0.0.0.0`) | `nodeIP` |
//! | `clientConnection.kubeconfig` | `kubeconfig`, `source: kubernetes` |
//! | `clusterCIDR` (its IPv4 entry) | `cluster.clusterCIDR` |
//! | `nodePortAddresses` (`primary`, IPv4 /32 CIDRs and addresses) | `nodePortAddresses` |
//! | `healthzBindAddress` | `health.bindAddress` |
//! | `metricsBindAddress` | `metrics.bindAddress` (the metrics listener; also [`KubeProxyMapping::metrics_bind_address`]) |
//! | `conntrack.maxPerCore` x cores, at least `conntrack.min` | `conntrack.maxEntries` |
//! | `conntrack.tcpEstablishedTimeout`, `tcpCloseWaitTimeout`, `udpTimeout`, `udpStreamTimeout` | the same keys under `conntrack` |
//! | `<mode>.syncPeriod` (`iptables`, `nftables` or `ipvs`, per `mode`) | `resyncInterval` |
//!
//! Everything else that is set is listed in [`KubeProxyMapping::ignored`] with the reason.
//! Invariant: a file that fails changes nothing; one that parses changes only unset fields.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::units::{ConfigDuration, NodePortAddress};
use super::{ConfigError, FileConfig, SourceKind};
use crate::net::Cidr;
use crate::settings::ClusterSettings;

const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
const KIND: &str = "KubeProxyConfiguration";

/// A Go `metav1.Duration` as kube-proxy writes it: `30s`, `1h0m0s`, `250ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GoDuration(Duration);

/// Parses Go's `time.ParseDuration` syntax (no sign): one or more `<decimal><unit>`.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (e.g. 30s, 1h0m0s, 250ms)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_go_duration(&text)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClientConnection {
    kubeconfig: Option<String>,
    accept_content_types: Option<String>,
    content_type: Option<String>,
    qps: Option<f64>,
    burst: Option<i64>,
}

/// The `iptables`, `nftables` and `ipvs` sections (their union; upstream's differ slightly,
/// checked in [`check_mode_section`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ModeSection {
    masquerade_bit: Option<i32>,
    masquerade_all: Option<bool>,
    localhost_node_ports: Option<bool>,
    #[serde(rename = "snatNodeInternalIP")]
    snat_node_internal_ip: Option<bool>,
    sync_period: Option<GoDuration>,
    min_sync_period: Option<GoDuration>,
    scheduler: Option<String>,
    #[serde(rename = "excludeCIDRs")]
    exclude_cidrs: Option<Vec<String>>,
    #[serde(rename = "strictARP")]
    strict_arp: Option<bool>,
    tcp_timeout: Option<GoDuration>,
    tcp_fin_timeout: Option<GoDuration>,
    udp_timeout: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Conntrack {
    max_per_core: Option<i32>,
    min: Option<i32>,
    tcp_established_timeout: Option<GoDuration>,
    tcp_close_wait_timeout: Option<GoDuration>,
    tcp_be_liberal: Option<bool>,
    udp_timeout: Option<GoDuration>,
    udp_stream_timeout: Option<GoDuration>,
}

/// Parsed only so that unknown fields inside are errors; ignored as a whole.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Winkernel {
    network_name: Option<String>,
    source_vip: Option<String>,
    #[serde(rename = "enableDSR")]
    enable_dsr: Option<bool>,
    root_hns_endpoint_name: Option<String>,
    forward_health_check_vip: Option<bool>,
}

/// Parsed only so that unknown fields inside are errors; ignored as a whole.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct DetectLocal {
    bridge_interface: Option<String>,
    interface_name_prefix: Option<String>,
}

/// kube-proxy's `KubeProxyConfiguration`, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KubeProxyConfiguration {
    api_version: Option<String>,
    kind: Option<String>,
    feature_gates: Option<BTreeMap<String, bool>>,
    client_connection: Option<ClientConnection>,
    /// component-base's LoggingConfiguration: taken whole, ignored.
    logging: Option<serde_json::Value>,
    hostname_override: Option<String>,
    bind_address: Option<String>,
    healthz_bind_address: Option<String>,
    metrics_bind_address: Option<String>,
    bind_address_hard_fail: Option<bool>,
    enable_profiling: Option<bool>,
    show_hidden_metrics_for_version: Option<String>,
    mode: Option<String>,
    iptables: Option<ModeSection>,
    ipvs: Option<ModeSection>,
    nftables: Option<ModeSection>,
    winkernel: Option<Winkernel>,
    detect_local_mode: Option<String>,
    detect_local: Option<DetectLocal>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    node_port_addresses: Option<Vec<String>>,
    oom_score_adj: Option<i32>,
    conntrack: Option<Conntrack>,
    config_sync_period: Option<GoDuration>,
    port_range: Option<String>,
    windows_run_as_service: Option<bool>,
}

/// What a KubeProxyConfiguration did to the node configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeProxyMapping {
    /// `metricsBindAddress`, for the metrics listener (127.0.0.1:10249 upstream by default).
    pub metrics_bind_address: Option<SocketAddr>,
    /// `field: why` for every field that is set and has no effect here.
    pub ignored: Vec<String>,
}

fn err(field: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{field}: {message}"))
}

/// `host:port` as kube-proxy takes it (an IP and a port; `0.0.0.0:10256`).
fn bind_address(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| err(field, format!("{text:?} is not an IP:port")))
}

/// The IPv4 CIDR of a `clusterCIDR` value (possibly a dual-stack `v4,v6` pair).
fn ipv4_cidr(text: &str, ignored: &mut Vec<String>) -> Result<Cidr, ConfigError> {
    let mut found = None;
    for part in text.split(',').map(str::trim) {
        if part.contains(':') {
            ignored.push(format!(
                "clusterCIDR: IPv6 range {part} (ferroplane is IPv4 single-stack)"
            ));
            continue;
        }
        let cidr = Cidr::parse_canonical(part)
            .map_err(|e| err("clusterCIDR", format!("{part:?}: {e}")))?;
        found.get_or_insert(cidr);
    }
    found.ok_or_else(|| err("clusterCIDR", format!("{text:?} has no IPv4 range")))
}

/// One `nodePortAddresses` entry: `primary`, or an IPv4 address / `/32`.
fn node_port_address(
    text: &str,
    ignored: &mut Vec<String>,
) -> Result<Option<NodePortAddress>, ConfigError> {
    let field = "nodePortAddresses";
    match text {
        "primary" => return Ok(Some(NodePortAddress::Primary)),
        "localhost" => {
            ignored.push(format!(
                "{field}: localhost (NodePorts on loopback are not served)"
            ));
            return Ok(None);
        }
        "all" => {
            return Err(err(
                field,
                "\"all\" is not supported: list the node addresses (or `primary`)",
            ));
        }
        _ => {}
    }
    if text.contains(':') {
        ignored.push(format!("{field}: IPv6 entry {text}"));
        return Ok(None);
    }
    let (address, prefix) = text.split_once('/').unwrap_or((text, "32"));
    let ip: Ipv4Addr = address.parse().map_err(|_| {
        err(
            field,
            format!("{text:?} is not a CIDR, `primary` or `localhost`"),
        )
    })?;
    if prefix != "32" {
        return Err(err(
            field,
            format!("{text:?}: only single addresses (/32) are supported; list them"),
        ));
    }
    Ok(Some(NodePortAddress::Address(ip)))
}

/// Notes each set field of `fields` as ignored with `why`.
fn ignore(ignored: &mut Vec<String>, fields: &[(&str, bool)], why: &str) {
    for (field, set) in fields {
        if *set {
            ignored.push(format!("{field}: {why}"));
        }
    }
}

/// Fields a mode section may not carry (upstream's sections differ).
fn check_mode_section(name: &str, section: &ModeSection) -> Result<(), ConfigError> {
    let ipvs_only = [
        ("scheduler", section.scheduler.is_some()),
        ("excludeCIDRs", section.exclude_cidrs.is_some()),
        ("strictARP", section.strict_arp.is_some()),
        ("tcpTimeout", section.tcp_timeout.is_some()),
        ("tcpFinTimeout", section.tcp_fin_timeout.is_some()),
        ("udpTimeout", section.udp_timeout.is_some()),
    ];
    let iptables_only = [
        ("localhostNodePorts", section.localhost_node_ports.is_some()),
        (
            "snatNodeInternalIP",
            section.snat_node_internal_ip.is_some(),
        ),
    ];
    let masquerade = [
        ("masqueradeBit", section.masquerade_bit.is_some()),
        ("masqueradeAll", section.masquerade_all.is_some()),
    ];
    let not_here: Vec<&str> = match name {
        "iptables" => ipvs_only.iter().filter(|f| f.1).map(|f| f.0).collect(),
        "nftables" => ipvs_only
            .iter()
            .chain(&iptables_only)
            .filter(|f| f.1)
            .map(|f| f.0)
            .collect(),
        _ => iptables_only
            .iter()
            .chain(&masquerade)
            .filter(|f| f.1)
            .map(|f| f.0)
            .collect(),
    };
    match not_here.first() {
        Some(field) => Err(err(&format!("{name}.{field}"), "unknown field")),
        None => Ok(()),
    }
}

fn parse(text: &str) -> Result<KubeProxyConfiguration, ConfigError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let value: Option<serde_json::Value> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ConfigError(format!("not valid YAML: {e}")))?;
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Err(ConfigError("empty KubeProxyConfiguration".to_owned()));
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ConfigError(format!("{path}: {}", e.into_inner()))
    })
}

/// Maps the KubeProxyConfiguration in `text` onto `file`, for a node with `cores` CPUs.
pub fn apply(
    text: &str,
    file: &mut FileConfig,
    cores: usize,
) -> Result<KubeProxyMapping, ConfigError> {
    let config = parse(text)?;
    match config.api_version.as_deref() {
        Some(API_VERSION) => {}
        other => {
            return Err(err(
                "apiVersion",
                format!("{other:?}: expected {API_VERSION:?}"),
            ));
        }
    }
    if config.kind.as_deref() != Some(KIND) {
        return Err(err("kind", format!("{:?}: expected {KIND:?}", config.kind)));
    }
    let mut ignored = Vec::new();
    let mut next = FileConfig::default();

    if let Some(name) = config.hostname_override.filter(|n| !n.is_empty()) {
        next.node_name = Some(name);
    }
    if let Some(text) = config.bind_address.filter(|a| !a.is_empty()) {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| err("bindAddress", format!("{text:?} is not an IP address")))?;
        match ip {
            IpAddr::V4(ip) if !ip.is_unspecified() => next.node_ip = Some(ip),
            IpAddr::V4(_) => {}
            IpAddr::V6(_) => ignored.push(format!("bindAddress: IPv6 {ip}")),
        }
    }
    if let Some(client) = &config.client_connection {
        if let Some(path) = client.kubeconfig.as_ref().filter(|p| !p.is_empty()) {
            next.kubeconfig = Some(path.into());
            next.source = Some(SourceKind::Kubernetes);
        }
        ignore(
            &mut ignored,
            &[
                (
                    "clientConnection.acceptContentTypes",
                    client.accept_content_types.is_some(),
                ),
                (
                    "clientConnection.contentType",
                    client.content_type.is_some(),
                ),
                ("clientConnection.qps", client.qps.is_some()),
                ("clientConnection.burst", client.burst.is_some()),
            ],
            "the watch client uses kube-rs defaults",
        );
    }
    if let Some(text) = config.cluster_cidr.as_deref().filter(|c| !c.is_empty()) {
        let cidr = ipv4_cidr(text, &mut ignored)?;
        if file.cluster.is_none() {
            let cluster = ClusterSettings {
                cluster_cidr: cidr,
                ..ClusterSettings::default()
            };
            cluster.validate().map_err(|e| err("clusterCIDR", e))?;
            next.cluster = Some(cluster);
        } else {
            ignored.push("clusterCIDR: node.yaml's cluster settings are used".to_owned());
        }
    }
    if let Some(entries) = config.node_port_addresses {
        let mut addresses = Vec::new();
        for entry in &entries {
            addresses.extend(node_port_address(entry, &mut ignored)?);
        }
        if !addresses.is_empty() {
            next.node_port_addresses = Some(addresses);
        }
    }
    if let Some(text) = config.healthz_bind_address.filter(|a| !a.is_empty()) {
        next.health.bind_address = Some(bind_address("healthzBindAddress", &text)?);
    }
    let metrics_bind_address = match config.metrics_bind_address.filter(|a| !a.is_empty()) {
        Some(text) => Some(bind_address("metricsBindAddress", &text)?),
        None => None,
    };
    next.metrics.bind_address = metrics_bind_address.map(|addr| addr.to_string());
    if let Some(ct) = &config.conntrack {
        let per_core = ct.max_per_core.unwrap_or(0);
        let min = ct.min.unwrap_or(0);
        if per_core < 0 || min < 0 {
            return Err(err("conntrack", "maxPerCore and min must not be negative"));
        }
        if per_core > 0 {
            let cores = cores.max(1);
            let entries = (per_core as usize).saturating_mul(cores).max(min as usize);
            next.conntrack.max_entries = Some(entries);
        }
        let timeout =
            |d: &Option<GoDuration>| d.filter(|d| !d.0.is_zero()).map(|d| ConfigDuration(d.0));
        next.conntrack.tcp_established_timeout = timeout(&ct.tcp_established_timeout);
        next.conntrack.tcp_close_wait_timeout = timeout(&ct.tcp_close_wait_timeout);
        next.conntrack.udp_timeout = timeout(&ct.udp_timeout);
        next.conntrack.udp_stream_timeout = timeout(&ct.udp_stream_timeout);
        ignore(
            &mut ignored,
            &[("conntrack.tcpBeLiberal", ct.tcp_be_liberal == Some(true))],
            "the flow table tracks TCP windows loosely already",
        );
    }
    let mode = config.mode.as_deref().unwrap_or("");
    let sections = [
        ("iptables", &config.iptables),
        ("nftables", &config.nftables),
        ("ipvs", &config.ipvs),
    ];
    let chosen = match mode {
        "" | "iptables" => "iptables",
        "nftables" => "nftables",
        "ipvs" => "ipvs",
        "kernelspace" => {
            return Err(err("mode", "\"kernelspace\" is Windows-only"));
        }
        other => {
            return Err(err(
                "mode",
                format!("{other:?}: expected iptables, ipvs or nftables"),
            ));
        }
    };
    if !mode.is_empty() {
        ignored.push(format!(
            "mode: {mode} (ferroplane programs its own dataplane; the {mode} section's syncPeriod applies)"
        ));
    }
    for (name, section) in sections {
        let Some(section) = section else { continue };
        check_mode_section(name, section)?;
        if name == chosen {
            if let Some(period) = section.sync_period {
                if period.0.is_zero() {
                    return Err(err(&format!("{name}.syncPeriod"), "must be greater than 0"));
                }
                next.resync_interval = Some(ConfigDuration(period.0));
            }
            ignore(
                &mut ignored,
                &[
                    (
                        &format!("{name}.minSyncPeriod"),
                        section.min_sync_period.is_some(),
                    ),
                    (
                        &format!("{name}.masqueradeBit"),
                        section.masquerade_bit.is_some(),
                    ),
                    (
                        &format!("{name}.masqueradeAll"),
                        section.masquerade_all.is_some(),
                    ),
                    (
                        &format!("{name}.localhostNodePorts"),
                        section.localhost_node_ports.is_some(),
                    ),
                    (
                        &format!("{name}.snatNodeInternalIP"),
                        section.snat_node_internal_ip.is_some(),
                    ),
                    (&format!("{name}.scheduler"), section.scheduler.is_some()),
                    (
                        &format!("{name}.excludeCIDRs"),
                        section.exclude_cidrs.is_some(),
                    ),
                    (&format!("{name}.strictARP"), section.strict_arp.is_some()),
                    (&format!("{name}.tcpTimeout"), section.tcp_timeout.is_some()),
                    (
                        &format!("{name}.tcpFinTimeout"),
                        section.tcp_fin_timeout.is_some(),
                    ),
                    (&format!("{name}.udpTimeout"), section.udp_timeout.is_some()),
                ],
                "no kernel proxy rules to tune (changes are batched per 10 ms poll; SNAT follows the cluster CIDR)",
            );
        } else {
            ignored.push(format!(
                "{name}: the section of another mode ({chosen} is in use)"
            ));
        }
    }
    ignore(
        &mut ignored,
        &[
            (
                "featureGates",
                config.feature_gates.is_some_and(|g| !g.is_empty()),
            ),
            ("logging", config.logging.is_some()),
            (
                "bindAddressHardFail",
                config.bind_address_hard_fail == Some(true),
            ),
            ("enableProfiling", config.enable_profiling == Some(true)),
            (
                "showHiddenMetricsForVersion",
                config
                    .show_hidden_metrics_for_version
                    .is_some_and(|v| !v.is_empty()),
            ),
            ("winkernel", config.winkernel.is_some()),
            (
                "windowsRunAsService",
                config.windows_run_as_service == Some(true),
            ),
            (
                "detectLocalMode",
                config.detect_local_mode.is_some_and(|m| !m.is_empty()),
            ),
            ("detectLocal", config.detect_local.is_some()),
            ("oomScoreAdj", config.oom_score_adj.is_some()),
            ("configSyncPeriod", config.config_sync_period.is_some()),
            (
                "portRange",
                config.port_range.is_some_and(|r| !r.is_empty()),
            ),
        ],
        "no equivalent in ferroplane",
    );
    merge(file, next);
    Ok(KubeProxyMapping {
        metrics_bind_address,
        ignored,
    })
}

/// Fills every field `file` leaves unset from `next`.
fn merge(file: &mut FileConfig, next: FileConfig) {
    fn fill<T>(slot: &mut Option<T>, value: Option<T>) {
        if slot.is_none() {
            *slot = value;
        }
    }
    fill(&mut file.node_name, next.node_name);
    fill(&mut file.node_ip, next.node_ip);
    fill(&mut file.kubeconfig, next.kubeconfig);
    fill(&mut file.source, next.source);
    fill(&mut file.cluster, next.cluster);
    fill(&mut file.node_port_addresses, next.node_port_addresses);
    fill(&mut file.health.bind_address, next.health.bind_address);
    fill(&mut file.metrics.bind_address, next.metrics.bind_address);
    fill(&mut file.resync_interval, next.resync_interval);
    let (ct, from) = (&mut file.conntrack, next.conntrack);
    fill(&mut ct.max_entries, from.max_entries);
    fill(
        &mut ct.tcp_established_timeout,
        from.tcp_established_timeout,
    );
    fill(&mut ct.tcp_close_wait_timeout, from.tcp_close_wait_timeout);
    fill(&mut ct.udp_timeout, from.udp_timeout);
    fill(&mut ct.udp_stream_timeout, from.udp_stream_timeout);
}

/// Reads `path` and applies it; errors name the file.
pub fn load(path: &Path, file: &mut FileConfig) -> Result<KubeProxyMapping, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    apply(&text, file, cores).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
}

#[cfg(test)]
#[path = "kube_proxy_tests.rs"]
mod tests;
