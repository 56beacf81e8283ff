//! Unit tests of the record index and the protocol core, over cluster states built in memory
//! from manifests (EndpointSlices written out, so each readiness case is explicit).

mod index;
mod respond;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use super::{RecordIndex, ZoneConfig};
use crate::manifest;
use crate::settings::ClusterSettings;
use crate::state::ClusterState;

/// A state holding the objects of `yaml` as written (no defaulting, no controllers).
fn state(yaml: &str) -> ClusterState {
    let mut state = ClusterState::new(ClusterSettings::default());
    for entry in manifest::parse("test.yaml", yaml) {
        state.insert(entry.result.unwrap());
    }
    state
}

/// The index of `yaml` with the default settings (zone cluster.local, service range
/// 10.96.0.0/12, pod range 10.244.0.0/16, DNS at 10.96.0.10).
fn index(yaml: &str) -> RecordIndex {
    let config = ZoneConfig::from_settings(&ClusterSettings::default(), None).unwrap();
    RecordIndex::build(&state(yaml), &config)
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

/// A lookup as (code, answers, authorities, additionals), records in presentation form.
type Rendered = (ResponseCode, Vec<String>, Vec<String>, Vec<String>);

fn lookup(index: &RecordIndex, qname: &str, qtype: RecordType) -> Option<Rendered> {
    let answer = index.lookup(&name(qname), qtype)?;
    let render = |records: &[hickory_proto::rr::Record]| -> Vec<String> {
        records.iter().map(ToString::to_string).collect()
    };
    Some((
        answer.code,
        render(&answer.answers),
        render(&answer.authorities),
        render(&answer.additionals),
    ))
}

/// Sorted answers of a lookup expected to succeed.
fn answers(index: &RecordIndex, qname: &str, qtype: RecordType) -> Vec<String> {
    let (code, mut answers, _, _) = lookup(index, qname, qtype).unwrap();
    assert_eq!(code, ResponseCode::NoError, "{qname} {qtype}");
    answers.sort();
    answers
}

const SOA: &str =
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5";

/// A Service: `ports` as `name:port/PROTO` (name may be empty).
fn service(namespace: &str, name: &str, cluster_ip: &str, ports: &[&str]) -> String {
    let ports: String = ports
        .iter()
        .map(|p| {
            let (port_name, rest) = p.split_once(':').unwrap();
            let (number, protocol) = rest.split_once('/').unwrap();
            let name_line = if port_name.is_empty() {
                String::new()
            } else {
                format!("    name: {port_name}\n")
            };
            format!("  - port: {number}\n    protocol: {protocol}\n{name_line}")
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  clusterIP: {cluster_ip}\n  ports:\n{ports}---\n"
    )
}

/// An EndpointSlice of `service` with endpoints `ip[:hostname][!]` (`!` = not ready).
fn slice(namespace: &str, service: &str, endpoints: &[&str]) -> String {
    let endpoints: String = endpoints
        .iter()
        .map(|e| {
            let (e, ready) = match e.strip_suffix('!') {
                Some(e) => (e, false),
                None => (*e, true),
            };
            let (ip, hostname) = match e.split_once(':') {
                Some((ip, host)) => (ip, format!("    hostname: {host}\n")),
                None => (e, String::new()),
            };
            format!("  - addresses: [\"{ip}\"]\n{hostname}    conditions:\n      ready: {ready}\n")
        })
        .collect();
    let endpoints = if endpoints.is_empty() {
        " []\n".to_owned()
    } else {
        format!("\n{endpoints}")
    };
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: {namespace}\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:{endpoints}---\n"
    )
}
