//! Building a [`RecordIndex`] from a [`ClusterState`]: the records of the kubernetes/dns
//! specification (version [`DNS_SCHEMA_VERSION`]) for every Service, plus the zone's own SOA,
//! NS and `dns-version` TXT.
//!
//! Per Service `<svc>` in `<ns>`, with `<name>` = `<svc>.<ns>.svc.<zone>`:
//! - ClusterIP (any type with ClusterIPs): per ClusterIP (`spec.clusterIPs`, both families of
//!   a dual-stack Service) `A` or `AAAA <name>` and its `PTR` (`in-addr.arpa` or `ip6.arpa`)
//!   to `<name>`, and for each named port `SRV _<port>._<proto>.<name>` to `<name>` (the
//!   target resolves to both families).
//! - Headless (`clusterIP: None`): per published endpoint (see [`super::endpoints`]) `A` or
//!   `AAAA` at `<name>` and `<hostname>.<name>`, and `PTR` of its address to
//!   `<hostname>.<name>`; for each named port and each hostname `SRV _<port>._<proto>.<name>`
//!   to `<hostname>.<name>`.
//!   With no published endpoint the name does not exist (NXDOMAIN).
//! - ExternalName: `CNAME <name>` to the external name.
//!
//! Invariants: objects whose names cannot form valid DNS names are skipped, never published
//! escaped; records are added in the state's order (namespace, then name) and endpoints in
//! address order, so one state always yields the same index; every ancestor of a stored name
//! inside the zone is stored too (as an empty non-terminal when it has no records).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};
use k8s_openapi::api::core::v1::Service;

use super::index::RecordIndex;
use super::names::{child, external_name, ip6_arpa, reverse_name, reverse_prefix};
use super::{DNS_SCHEMA_VERSION, RECORD_TTL, endpoints};
use crate::net::Cidr;
use crate::settings::ClusterSettings;
use crate::state::ClusterState;

/// SOA timers (refresh, retry, expire), the common defaults for a zone nobody transfers.
const SOA_TIMERS: (i32, i32, i32) = (7200, 1800, 86400);

/// What the index needs besides the objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster zone, `cluster.local.`.
    pub zone: Name,
    /// The cluster DNS Service address, published as `ns.dns.<zone>` (the zone's NS target).
    pub server_ip: Option<IpAddr>,
    /// Address ranges (service and pod CIDRs) whose reverse names are answered here, with
    /// NXDOMAIN when no PTR exists; other reverse names are answered only when published.
    pub reverse_ranges: Vec<Cidr>,
}

impl ZoneConfig {
    /// The configuration of a state directory's cluster: its domain (unless `zone` overrides
    /// it), DNS address, service and pod ranges.
    pub fn from_settings(
        settings: &ClusterSettings,
        zone: Option<&Name>,
    ) -> Result<ZoneConfig, String> {
        let zone = match zone {
            Some(zone) => zone.clone(),
            None => super::names::zone_name(&settings.cluster_domain)?,
        };
        let mut reverse_ranges = settings.service_cidrs();
        reverse_ranges.extend(settings.cluster_cidrs());
        Ok(ZoneConfig {
            zone,
            server_ip: Some(settings.cluster_dns_ip),
            reverse_ranges,
        })
    }
}

impl RecordIndex {
    /// The index of `state`'s records under `config`.
    pub fn build(state: &ClusterState, config: &ZoneConfig) -> RecordIndex {
        let zone = &config.zone.to_lowercase();
        let mut builder = Builder::new(zone);
        let server = child(&["ns", "dns"], zone);
        if let Some(server) = &server {
            builder.add(zone, RData::NS(NS(server.clone())));
            if let Some(ip) = config.server_ip {
                builder.add(server, address(ip));
            }
        }
        if let Some(version) = child(&["dns-version"], zone) {
            let text = TXT::new(vec![DNS_SCHEMA_VERSION.to_owned()]);
            builder.add(&version, RData::TXT(text));
        }
        for service in state.services() {
            builder.add_service(state, service);
        }
        let soa = soa_record(zone.clone(), zone, state.generation());
        builder.add(zone, soa.data.clone());
        RecordIndex {
            zone: zone.clone(),
            reverse_soa: soa_record(reverse_prefix(&[]), zone, state.generation()),
            reverse6_soa: soa_record(ip6_arpa(), zone, state.generation()),
            soa,
            reverse_ranges: config.reverse_ranges.clone(),
            names: builder.finish(),
            generation: state.generation(),
        }
    }
}

/// The SOA at `owner` of a zone this server is the primary of; its serial is the state
/// generation (wrapping), its minimum the negative-caching TTL.
fn soa_record(owner: Name, zone: &Name, generation: u64) -> Record {
    let primary = child(&["ns", "dns"], zone).unwrap_or_else(|| zone.clone());
    let mailbox = child(&["hostmaster"], zone).unwrap_or_else(|| zone.clone());
    let (refresh, retry, expire) = SOA_TIMERS;
    let serial = (generation & u64::from(u32::MAX)) as u32;
    let soa = SOA::new(primary, mailbox, serial, refresh, retry, expire, RECORD_TTL);
    Record::from_rdata(owner, RECORD_TTL, RData::SOA(soa))
}

/// The A or AAAA record data of an address.
fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// The lowercase label of a port protocol (`_tcp`, `_udp`, `_sctp`).
fn protocol_label(protocol: Option<&str>) -> String {
    format!("_{}", protocol.unwrap_or("TCP").to_ascii_lowercase())
}

struct Builder<'z> {
    zone: &'z Name,
    names: HashMap<Name, Vec<Record>>,
}

impl<'z> Builder<'z> {
    fn new(zone: &'z Name) -> Builder<'z> {
        Builder {
            zone,
            names: HashMap::new(),
        }
    }

    fn add(&mut self, owner: &Name, data: RData) {
        let record = Record::from_rdata(owner.clone(), RECORD_TTL, data);
        self.names.entry(owner.clone()).or_default().push(record);
    }

    fn add_service(&mut self, state: &ClusterState, service: &Service) {
        let (Some(namespace), Some(name), Some(spec)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
            service.spec.as_ref(),
        ) else {
            return;
        };
        let Some(service_name) = child(&[name, namespace, "svc"], self.zone) else {
            return;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().and_then(external_name) {
                self.add(&service_name, RData::CNAME(CNAME(target)));
            }
            return;
        }
        let named_ports: Vec<(&str, String, u16)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                let name = p.name.as_deref().filter(|n| !n.is_empty())?;
                Some((name, protocol_label(p.protocol.as_deref()), port))
            })
            .collect();
        match spec.cluster_ip.as_deref() {
            Some("None") => {
                let endpoints = endpoints::published(state, service);
                let mut hostnames = BTreeSet::new();
                for endpoint in &endpoints {
                    let Some(host) = child(&[&endpoint.hostname], &service_name) else {
                        continue;
                    };
                    self.add(&service_name, address(endpoint.ip));
                    self.add(&host, address(endpoint.ip));
                    self.add(&reverse_name(endpoint.ip), RData::PTR(PTR(host.clone())));
                    hostnames.insert(host);
                }
                for (port_name, protocol, port) in &named_ports {
                    for host in &hostnames {
                        self.add_srv(&service_name, port_name, protocol, *port, host);
                    }
                }
            }
            Some(cluster_ip) => {
                let listed = spec
                    .cluster_ips
                    .iter()
                    .flatten()
                    .filter(|ip| !ip.is_empty());
                let texts: Vec<&str> = match listed.map(String::as_str).collect::<Vec<_>>() {
                    ips if ips.is_empty() => vec![cluster_ip],
                    ips => ips,
                };
                let ips: Vec<IpAddr> = texts.iter().filter_map(|t| t.parse().ok()).collect();
                if ips.is_empty() {
                    return;
                }
                for ip in ips {
                    self.add(&service_name, address(ip));
                    self.add(&reverse_name(ip), RData::PTR(PTR(service_name.clone())));
                }
                for (port_name, protocol, port) in &named_ports {
                    self.add_srv(&service_name, port_name, protocol, *port, &service_name);
                }
            }
            None => {}
        }
    }

    fn add_srv(&mut self, service: &Name, port: &str, protocol: &str, number: u16, target: &Name) {
        let port_label = format!("_{port}");
        if let Some(owner) = child(&[&port_label, protocol], service) {
            self.add(&owner, RData::SRV(SRV::new(0, 100, number, target.clone())));
        }
    }

    /// The names with every ancestor inside the zone added as an empty non-terminal.
    fn finish(mut self) -> HashMap<Name, Vec<Record>> {
        let zone_depth = self.zone.iter().len();
        let in_zone: Vec<Name> = self
            .names
            .keys()
            .filter(|n| self.zone.zone_of(n))
            .cloned()
            .collect();
        for name in in_zone {
            let mut ancestor = name.base_name();
            while ancestor.iter().len() > zone_depth {
                let next = ancestor.base_name();
                self.names.entry(ancestor).or_default();
                ancestor = next;
            }
        }
        self.names
    }
}
