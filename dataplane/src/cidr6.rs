//! IPv6 CIDR blocks: pod and cluster ranges, Service ranges, NetworkPolicy `ipBlock` in IPv6.
//!
//! Invariants (as for the IPv4 [`crate::cidr::Cidr`]):
//! - A `Cidr6` is canonical: prefix at most 128, host bits of the network zero (masked off).
//! - Text form `addr/n` with the standard IPv6 text of `std::net::Ipv6Addr`; errors name the
//!   text they were given.
//! - `contains` is a mask and a compare on a `u128`.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// An IPv6 network: a network address and a prefix length (0..=128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr6 {
    network: u128,
    prefix: u8,
}

/// Why a text is not an IPv6 CIDR; carries the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr6Error {
    pub text: String,
    pub reason: &'static str,
}

impl fmt::Display for Cidr6Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid IPv6 CIDR {:?}: {}", self.text, self.reason)
    }
}

impl std::error::Error for Cidr6Error {}

impl Cidr6 {
    /// Builds `addr/prefix`, masking off host bits; fails only when `prefix` exceeds 128.
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Result<Self, Cidr6Error> {
        if prefix > 128 {
            return Err(Cidr6Error {
                text: format!("{addr}/{prefix}"),
                reason: "prefix longer than 128",
            });
        }
        Ok(Self {
            network: u128::from(addr) & mask(prefix),
            prefix,
        })
    }

    #[inline]
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask(self.prefix) == self.network
    }

    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.network)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// The netmask of a prefix length at most 128.
#[inline]
pub fn mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr6 {
    type Err = Cidr6Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| Cidr6Error {
            text: text.to_string(),
            reason,
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(|| err("no '/'"))?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| err("not an IPv6 address"))?;
        if prefix.is_empty()
            || !prefix.bytes().all(|b| b.is_ascii_digit())
            || (prefix.len() > 1 && prefix.starts_with('0'))
        {
            return Err(err("prefix is not a number"));
        }
        let prefix: u8 = prefix.parse().map_err(|_| err("prefix longer than 128"))?;
        Self::new(addr, prefix).map_err(|e| err(e.reason))
    }
}

impl fmt::Display for Cidr6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_masks_and_contains() {
        let c: Cidr6 = "fd00:10:244:1::5/64".parse().unwrap();
        assert_eq!(c.to_string(), "fd00:10:244:1::/64");
        assert!(c.contains("fd00:10:244:1::9".parse().unwrap()));
        assert!(!c.contains("fd00:10:244:2::9".parse().unwrap()));
        let all: Cidr6 = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        let host: Cidr6 = "2001:db8::1/128".parse().unwrap();
        assert!(host.contains("2001:db8::1".parse().unwrap()));
        assert!(!host.contains("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn refuses_bad_text_and_names_it() {
        for bad in [
            "fd00::/129",
            "fd00::",
            "10.0.0.0/8",
            "fd00::/01",
            "fd00::/+1",
            "fd00::/",
        ] {
            let e = bad.parse::<Cidr6>().unwrap_err();
            assert_eq!(e.text, bad);
        }
    }
}
