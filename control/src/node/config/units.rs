//! Value types of `node.yaml` that YAML has no native form for: durations (`30s`, `24h`,
//! `500ms`, `50us` or a number of seconds), MAC addresses and `primary`-or-address lists.
//!
//! Invariant: every parser rejects what it does not fully understand, with a message that
//! quotes the text; none of them silently truncates or rounds a value to zero.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::net::MacAddr;

/// A duration written as `<number><unit>` (`us`, `ms`, `s`, `m`, `h`, `d`) or as plain seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// Parses `30s`, `24h`, `1h30m` is not accepted: one number, one unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration (use e.g. 500ms, 30s, 5m, 24h, 7d)");
    let value: u64 = number.parse().map_err(|_| bad())?;
    let micros_per_unit: u64 = match unit {
        "us" => 1,
        "ms" => 1_000,
        "" | "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(bad()),
    };
    value
        .checked_mul(micros_per_unit)
        .map(Duration::from_micros)
        .ok_or_else(bad)
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30s, 24h or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigDuration, E> {
                Ok(ConfigDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigDuration, E> {
                u64::try_from(v)
                    .map(|s| ConfigDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigDuration, E> {
                parse_duration(v).map(ConfigDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl ConfigDuration {
    /// Whole seconds, for flow-table timeouts (at least 1: a zero timeout would expire a flow
    /// before its second packet).
    pub fn whole_seconds(self, field: &str) -> Result<u32, String> {
        let secs = self.0.as_secs();
        if secs == 0 {
            return Err(format!("{field}: must be at least 1s"));
        }
        u32::try_from(secs).map_err(|_| format!("{field}: {secs}s is too long"))
    }
}

/// A MAC address in `node.yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigMac(pub MacAddr);

impl<'de> Deserialize<'de> for ConfigMac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mac: MacAddr = text.parse().map_err(de::Error::custom)?;
        if !mac.is_unicast() {
            return Err(de::Error::custom(format!("{text} is a multicast address")));
        }
        Ok(ConfigMac(mac))
    }
}

/// One entry of `nodePortAddresses`: the node's primary IP, an explicit address, or a CIDR
/// (every InternalIP / ExternalIP of the Node inside it, as kube-proxy's flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePortAddress {
    Primary,
    Address(Ipv4Addr),
    Cidr(crate::net::Cidr),
}

impl<'de> Deserialize<'de> for NodePortAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "primary" {
            return Ok(NodePortAddress::Primary);
        }
        if text.contains('/') {
            let cidr = crate::net::Cidr::parse_lenient(&text)
                .map_err(|e| de::Error::custom(format!("{text:?} is no CIDR: {e}")))?;
            if !cidr.network().is_ipv4() {
                return Err(de::Error::custom(format!(
                    "{text:?} is an IPv6 CIDR; this node is IPv4 only"
                )));
            }
            return Ok(NodePortAddress::Cidr(cidr));
        }
        text.parse().map(NodePortAddress::Address).map_err(|_| {
            de::Error::custom(format!(
                "{text:?} is neither `primary`, an IPv4 address nor an IPv4 CIDR"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_number_and_one_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("50us"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        for bad in ["", "s", "1h30m", "-5s", "3 weeks", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn timeouts_must_be_whole_nonzero_seconds() {
        let zero = ConfigDuration(Duration::from_millis(500));
        assert!(
            zero.whole_seconds("udpTimeout")
                .is_err_and(|e| e.contains("udpTimeout"))
        );
        assert_eq!(
            ConfigDuration(Duration::from_secs(90)).whole_seconds("x"),
            Ok(90)
        );
    }
}
