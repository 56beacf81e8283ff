//! Domain names of the cluster zone: building them from Kubernetes names, and reading the
//! structured names the server answers without storing them (pod names, reverse names).
//!
//! Invariants: every name built here is fully qualified and lowercase; a label that is not a
//! valid DNS label (1–63 of `a-z`, `0-9`, `-`, `_`; Kubernetes names are stricter) makes the
//! whole name `None` rather than an escaped or truncated name.

use std::net::Ipv4Addr;

use hickory_proto::rr::{Label, Name};

/// The reverse-mapping domain of IPv4 addresses.
const IN_ADDR_ARPA: [&str; 2] = ["in-addr", "arpa"];

/// Whether `label` can stand as one label of a name we publish.
pub(super) fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `labels` (leftmost first) prepended to `parent`, lowercased; `None` when a label is
/// invalid or the name grows past 255 bytes.
pub(super) fn child(labels: &[&str], parent: &Name) -> Option<Name> {
    let mut name = Name::root();
    for label in labels {
        if !is_label(label) {
            return None;
        }
        let label = Label::from_raw_bytes(label.to_ascii_lowercase().as_bytes()).ok()?;
        name = name.append_label(label).ok()?;
    }
    name.append_name(parent).ok().map(|n| n.to_lowercase())
}

/// The cluster zone from its textual form (`cluster.local`, with or without the final dot).
pub fn zone_name(domain: &str) -> Result<Name, String> {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = trimmed.split('.').collect();
    if trimmed.is_empty() {
        return Err("the cluster zone must not be the root".to_owned());
    }
    child(&labels, &Name::root()).ok_or_else(|| format!("{domain:?} is not a valid DNS zone"))
}

/// An ExternalName target as a fully qualified name (Kubernetes stores it without the dot).
pub(super) fn external_name(text: &str) -> Option<Name> {
    zone_name(text).ok()
}

/// The label for an address in pod names and for endpoints without a hostname: `10-244-1-5`.
pub(super) fn dashed(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{a}-{b}-{c}-{d}")
}

/// The address a dashed label stands for: exactly four decimal octets without leading zeros.
pub(super) fn parse_dashed(label: &[u8]) -> Option<Ipv4Addr> {
    let text = std::str::from_utf8(label).ok()?;
    let mut octets = [0u8; 4];
    let mut parts = text.split('-');
    for octet in &mut octets {
        *octet = parse_octet(parts.next()?)?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// A decimal octet as written in addresses: 0–255, no sign, no leading zero.
fn parse_octet(text: &str) -> Option<u8> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// `d.c.b.a.in-addr.arpa.` for `a.b.c.d`.
pub(super) fn reverse_name(ip: Ipv4Addr) -> Name {
    reverse_prefix(&ip.octets())
}

/// The reverse name of the leading `octets` of an address (`[10, 96]` → `96.10.in-addr.arpa.`).
pub(super) fn reverse_prefix(octets: &[u8]) -> Name {
    let texts: Vec<String> = octets.iter().rev().map(u8::to_string).collect();
    let mut labels: Vec<&str> = texts.iter().map(String::as_str).collect();
    labels.extend(IN_ADDR_ARPA);
    // Decimal octets and the two fixed labels are always valid labels.
    child(&labels, &Name::root()).unwrap_or_else(Name::root)
}

/// The address a full reverse name stands for (`5.1.244.10.in-addr.arpa.` → 10.244.1.5);
/// `None` for any other name, including shorter reverse names.
pub(super) fn parse_reverse(name: &Name) -> Option<Ipv4Addr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let [d, c, b, a, in_addr, arpa] = labels.as_slice() else {
        return None;
    };
    if !in_addr.eq_ignore_ascii_case(b"in-addr") || !arpa.eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let octet = |label: &[u8]| parse_octet(std::str::from_utf8(label).ok()?);
    Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?))
}

/// The labels of `name` left of `zone`, leftmost first; `None` when `name` is not in `zone`.
pub(super) fn relative_labels<'n>(name: &'n Name, zone: &Name) -> Option<Vec<&'n [u8]>> {
    if !zone.zone_of(name) {
        return None;
    }
    let depth = name.iter().len() - zone.iter().len();
    Some(name.iter().take(depth).collect())
}
