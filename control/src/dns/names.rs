//! Domain names of the cluster zone: building them from Kubernetes names, and reading the
//! structured names the server answers without storing them (pod names, reverse names).
//!
//! Invariants: every name built here is fully qualified and lowercase; a label that is not a
//! valid DNS label (1–63 of `a-z`, `0-9`, `-`, `_`; Kubernetes names are stricter) makes the
//! whole name `None` rather than an escaped or truncated name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::{Label, Name};

/// The reverse-mapping domain of IPv4 addresses.
const IN_ADDR_ARPA: [&str; 2] = ["in-addr", "arpa"];
/// The reverse-mapping domain of IPv6 addresses (RFC 3596).
const IP6_ARPA: [&str; 2] = ["ip6", "arpa"];

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

/// The label for an address in pod names and for endpoints without a hostname: `10-244-1-5`,
/// and for IPv6 the compressed text form with `-` for `:` (`fd00-10-244--5`), as CoreDNS
/// names them.
pub(super) fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{a}-{b}-{c}-{d}")
        }
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The address a dashed label stands for: exactly four decimal octets without leading zeros,
/// or an IPv6 address in canonical (RFC 5952) form with `-` for `:`.
pub(super) fn parse_dashed(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    if let Some(v4) = parse_dashed_v4(text) {
        return Some(IpAddr::V4(v4));
    }
    let v6: Ipv6Addr = text.replace('-', ":").parse().ok()?;
    let canonical = dashed(IpAddr::V6(v6)).eq_ignore_ascii_case(text);
    canonical.then_some(IpAddr::V6(v6))
}

fn parse_dashed_v4(text: &str) -> Option<Ipv4Addr> {
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

/// `d.c.b.a.in-addr.arpa.` for `a.b.c.d`; for IPv6 the 32 nibbles in reverse under
/// `ip6.arpa.`.
pub(super) fn reverse_name(ip: IpAddr) -> Name {
    match ip {
        IpAddr::V4(v4) => reverse_prefix(&v4.octets()),
        IpAddr::V6(v6) => {
            let nibbles: Vec<String> = v6
                .octets()
                .iter()
                .rev()
                .flat_map(|b| [b & 0x0f, b >> 4])
                .map(|n| format!("{n:x}"))
                .collect();
            let mut labels: Vec<&str> = nibbles.iter().map(String::as_str).collect();
            labels.extend(IP6_ARPA);
            // Hex digits and the two fixed labels are always valid labels.
            child(&labels, &Name::root()).unwrap_or_else(Name::root)
        }
    }
}

/// `ip6.arpa.`, the owner of the SOA of negative IPv6 reverse answers.
pub(super) fn ip6_arpa() -> Name {
    child(&IP6_ARPA, &Name::root()).unwrap_or_else(Name::root)
}

/// The reverse name of the leading `octets` of an address (`[10, 96]` → `96.10.in-addr.arpa.`).
pub(super) fn reverse_prefix(octets: &[u8]) -> Name {
    let texts: Vec<String> = octets.iter().rev().map(u8::to_string).collect();
    let mut labels: Vec<&str> = texts.iter().map(String::as_str).collect();
    labels.extend(IN_ADDR_ARPA);
    // Decimal octets and the two fixed labels are always valid labels.
    child(&labels, &Name::root()).unwrap_or_else(Name::root)
}

/// The address a full reverse name stands for (`5.1.244.10.in-addr.arpa.` → 10.244.1.5, 32
/// nibbles under `ip6.arpa.` → an IPv6 address); `None` for any other name, including
/// shorter reverse names.
pub(super) fn parse_reverse(name: &Name) -> Option<IpAddr> {
    parse_reverse_v4(name)
        .map(IpAddr::V4)
        .or_else(|| parse_reverse_v6(name).map(IpAddr::V6))
}

fn parse_reverse_v6(name: &Name) -> Option<Ipv6Addr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let (nibbles, suffix) = labels.split_at_checked(32)?;
    let [ip6, arpa] = suffix else {
        return None;
    };
    if !ip6.eq_ignore_ascii_case(b"ip6") || !arpa.eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let mut value: u128 = 0;
    for label in nibbles.iter().rev() {
        let [digit] = label else {
            return None;
        };
        let nibble = char::from(*digit).to_digit(16)?;
        value = (value << 4) | u128::from(nibble);
    }
    Some(Ipv6Addr::from(value))
}

fn parse_reverse_v4(name: &Name) -> Option<Ipv4Addr> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_reverse_names_round_trip_and_reject_other_shapes() {
        let ip: IpAddr = "fd00:10:96::a".parse().unwrap();
        let name = reverse_name(ip);
        assert_eq!(
            name.to_string(),
            "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa."
        );
        assert_eq!(parse_reverse(&name), Some(ip));
        let upper = Name::from_ascii(name.to_string().to_ascii_uppercase()).unwrap();
        assert_eq!(parse_reverse(&upper), Some(ip));
        for bad in [
            "0.d.f.ip6.arpa.",
            "ab.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.",
            "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.",
        ] {
            assert_eq!(
                parse_reverse(&Name::from_ascii(bad).unwrap()),
                None,
                "{bad}"
            );
        }
        let v4: IpAddr = "10.244.1.5".parse().unwrap();
        assert_eq!(parse_reverse(&reverse_name(v4)), Some(v4));
    }

    #[test]
    fn dashed_names_cover_both_families_in_canonical_form_only() {
        let ip: IpAddr = "fd00:10:244::5".parse().unwrap();
        assert_eq!(dashed(ip), "fd00-10-244--5");
        assert_eq!(parse_dashed(b"fd00-10-244--5"), Some(ip));
        assert_eq!(parse_dashed(b"FD00-10-244--5"), Some(ip));
        assert_eq!(parse_dashed(b"fd00-0010-244--5"), None, "not canonical");
        assert_eq!(
            parse_dashed(b"fd00-10-244-0-0-0-0-5"),
            None,
            "not canonical"
        );
        assert_eq!(
            parse_dashed(b"10-244-1-5"),
            Some("10.244.1.5".parse().unwrap())
        );
    }
}
