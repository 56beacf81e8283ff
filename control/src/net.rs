//! Address arithmetic the control plane needs: CIDR prefixes (IPv4 and IPv6), port ranges and
//! MAC addresses, parsed from and printed to the text forms Kubernetes uses.
//!
//! Invariants: a [`Cidr`] always holds its network address (host bits cleared) and a prefix
//! length valid for its family; a [`PortRange`] has `first <= last`, both non-zero.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod family;
pub use family::IpFamily;

/// An IP prefix such as `10.244.0.0/16`, stored as its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Width in bits of an address of the same family as `ip`.
fn family_bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// The address as an integer of its own family (IPv4 in the low 32 bits).
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn u128_to_ip(value: u128, v4: bool) -> Option<IpAddr> {
    if v4 {
        u32::try_from(value)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
    } else {
        Some(IpAddr::V6(Ipv6Addr::from(value)))
    }
}

fn host_mask(bits: u8, prefix_len: u8) -> u128 {
    let host_bits = u32::from(bits - prefix_len);
    if host_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - host_bits)
    }
}

impl Cidr {
    /// Parses `ADDR/LEN`, clearing any host bits (what Kubernetes accepts in policy `ipBlock`
    /// and `loadBalancerSourceRanges`).
    pub fn parse_lenient(text: &str) -> Result<Cidr, String> {
        let (addr, len) = split_cidr(text)?;
        Ok(Cidr::masked(addr, len))
    }

    /// Parses `ADDR/LEN` and rejects host bits, so `10.96.0.1/12` is an error that names the
    /// network the user probably meant.
    pub fn parse_canonical(text: &str) -> Result<Cidr, String> {
        let (addr, len) = split_cidr(text)?;
        let cidr = Cidr::masked(addr, len);
        if cidr.network != addr {
            return Err(format!(
                "{text:?} has host bits set (the network is {cidr})"
            ));
        }
        Ok(cidr)
    }

    fn masked(addr: IpAddr, prefix_len: u8) -> Cidr {
        let bits = family_bits(addr);
        let value = ip_to_u128(addr) & !host_mask(bits, prefix_len);
        let network = u128_to_ip(value, addr.is_ipv4()).unwrap_or(addr);
        Cidr {
            network,
            prefix_len,
        }
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    fn bits(&self) -> u8 {
        family_bits(self.network)
    }

    /// Number of addresses in the prefix (saturating at `u128::MAX` for `::/0`).
    pub fn size(&self) -> u128 {
        let host_bits = u32::from(self.bits() - self.prefix_len);
        1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4()
            && ip_to_u128(ip) & !host_mask(self.bits(), self.prefix_len) == ip_to_u128(self.network)
    }

    /// Whether `other` lies inside `self` and is strictly smaller.
    pub fn strictly_contains(&self, other: &Cidr) -> bool {
        self.contains(other.network) && other.prefix_len > self.prefix_len
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The address at `offset` from the network address, if inside the prefix.
    pub fn nth(&self, offset: u128) -> Option<IpAddr> {
        if offset >= self.size() {
            return None;
        }
        u128_to_ip(ip_to_u128(self.network) + offset, self.is_ipv4())
    }

    /// Offset of `ip` from the network address, if inside the prefix.
    pub fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        self.contains(ip)
            .then(|| ip_to_u128(ip) - ip_to_u128(self.network))
    }

    /// The `index`-th sub-prefix of length `prefix_len`, if it exists.
    pub fn subnet(&self, prefix_len: u8, index: u128) -> Option<Cidr> {
        if prefix_len < self.prefix_len || prefix_len > self.bits() {
            return None;
        }
        let count = 1u128.checked_shl(u32::from(prefix_len - self.prefix_len))?;
        if index >= count {
            return None;
        }
        let step = 1u128.checked_shl(u32::from(self.bits() - prefix_len))?;
        let network = u128_to_ip(ip_to_u128(self.network) + index * step, self.is_ipv4())?;
        Some(Cidr {
            network,
            prefix_len,
        })
    }

    /// How many sub-prefixes of length `prefix_len` fit (0 when longer than the family).
    pub fn subnet_count(&self, prefix_len: u8) -> u128 {
        if prefix_len < self.prefix_len || prefix_len > self.bits() {
            return 0;
        }
        1u128
            .checked_shl(u32::from(prefix_len - self.prefix_len))
            .unwrap_or(u128::MAX)
    }
}

fn split_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let shape = || format!("{text:?} is not a CIDR (expected ADDRESS/PREFIX, e.g. 10.96.0.0/12)");
    let (addr, len) = text.split_once('/').ok_or_else(shape)?;
    let addr: IpAddr = addr.parse().map_err(|_| shape())?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(shape());
    }
    let len: u8 = len.parse().map_err(|_| shape())?;
    if len > family_bits(addr) {
        return Err(format!(
            "{text:?}: prefix length {len} is longer than {} bits",
            family_bits(addr)
        ));
    }
    Ok((addr, len))
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        Cidr::parse_canonical(text)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(deserializer)?;
        Cidr::parse_canonical(&text).map_err(serde::de::Error::custom)
    }
}

/// An inclusive range of ports such as the NodePort range `30000-32767`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    pub fn new(first: u16, last: u16) -> Result<PortRange, String> {
        if first == 0 || first > last {
            return Err(format!(
                "port range {first}-{last} must be non-empty and start above 0"
            ));
        }
        Ok(PortRange { first, last })
    }

    pub fn first(&self) -> u16 {
        self.first
    }

    pub fn last(&self) -> u16 {
        self.last
    }

    pub fn contains(&self, port: i32) -> bool {
        i32::from(self.first) <= port && port <= i32::from(self.last)
    }

    /// How many ports the range holds.
    pub fn port_count(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(text: &str) -> Result<PortRange, String> {
        let shape =
            || format!("{text:?} is not a port range (expected FIRST-LAST, e.g. 30000-32767)");
        let (first, last) = text.split_once('-').ok_or_else(shape)?;
        let first: u16 = first.trim().parse().map_err(|_| shape())?;
        let last: u16 = last.trim().parse().map_err(|_| shape())?;
        PortRange::new(first, last)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PortRange, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ethernet address, printed lower-case with colons as flannel writes `VtepMAC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A stable, locally administered unicast address derived from `name` (FNV-1a 64 of the
    /// name; the first octet has bit 1 set and bit 0 cleared).
    pub fn derived_from_name(name: &str) -> MacAddr {
        let hash = fnv1a_64(name.as_bytes()).to_be_bytes();
        let mut octets = [0u8; 6];
        octets.copy_from_slice(&hash[..6]);
        octets[0] = (octets[0] & 0xfc) | 0x02;
        MacAddr(octets)
    }

    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }
}

/// FNV-1a, 64 bit: a hash that never changes between releases (unlike std's `DefaultHasher`),
/// so anything derived from it is stable across upgrades.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(text: &str) -> Result<MacAddr, String> {
        let shape = || {
            format!(
                "{text:?} is not a MAC address (expected six hex octets like 0a:58:0a:f4:00:01)"
            )
        };
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(shape)?;
            if part.len() != 2 {
                return Err(shape());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| shape())?;
        }
        if parts.next().is_some() {
            return Err(shape());
        }
        Ok(MacAddr(octets))
    }
}

#[cfg(test)]
mod tests;
