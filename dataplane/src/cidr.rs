//! IPv4 CIDR blocks: node and cluster ranges, masquerade exemptions, NetworkPolicy `ipBlock`.
//!
//! Invariants:
//! - A `Cidr` is always canonical: its prefix is at most 32 and the host bits of its network
//!   address are zero. Host bits given by the caller are masked off (`10.1.2.3/8` becomes
//!   `10.0.0.0/8`), as Kubernetes' `ipBlock` validation accepts them; so two `Cidr`s that cover
//!   the same addresses compare equal.
//! - Text form is strict: `a.b.c.d/n`, no spaces, no leading zeros in octets or prefix, no sign.
//!   Every error carries the text it was given, so the control plane can name the bad field.
//! - `contains` is a mask and a compare: no allocation, no branches on the address.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 network: a network address and a prefix length (0..=32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

impl Cidr {
    /// Builds the block `addr/prefix`, masking off any host bits of `addr`.
    /// Fails only when `prefix` is greater than 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError {
                text: format!("{addr}/{prefix}"),
                reason: CidrErrorReason::PrefixTooLong,
            });
        }
        Ok(Self {
            network: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    /// Whether `ip` lies inside the block.
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length, 0..=32.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// The netmask of a prefix length at most 32: its `prefix` high bits set.
#[inline]
fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| CidrError {
            text: text.to_owned(),
            reason,
        };
        let Some((addr_text, prefix_text)) = text.split_once('/') else {
            return Err(fail(CidrErrorReason::MissingPrefix));
        };
        let addr = match addr_text.parse::<Ipv4Addr>() {
            Ok(addr) => addr,
            Err(_) if addr_text.parse::<Ipv6Addr>().is_ok() => {
                return Err(fail(CidrErrorReason::Ipv6));
            }
            Err(_) => return Err(fail(CidrErrorReason::InvalidAddress)),
        };
        let well_formed = !prefix_text.is_empty()
            && prefix_text.bytes().all(|b| b.is_ascii_digit())
            && (prefix_text == "0" || !prefix_text.starts_with('0'));
        if !well_formed {
            return Err(fail(CidrErrorReason::InvalidPrefix));
        }
        // Only digits remain, so the parse fails only on overflow: too long either way.
        match prefix_text.parse::<u8>() {
            Ok(prefix) if prefix <= 32 => Self::new(addr, prefix).map_err(|e| fail(e.reason)),
            _ => Err(fail(CidrErrorReason::PrefixTooLong)),
        }
    }
}

/// Why a CIDR was rejected, with the text that was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError {
    text: String,
    reason: CidrErrorReason,
}

impl CidrError {
    /// The rejected text, exactly as given (or `addr/prefix` for [`Cidr::new`]).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn reason(&self) -> CidrErrorReason {
        self.reason
    }
}

/// The ways a CIDR can be malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CidrErrorReason {
    /// No `/prefix` part: a bare address is not a CIDR.
    MissingPrefix,
    /// The address part is not a dotted-quad IPv4 address.
    InvalidAddress,
    /// The address part is IPv6; this table holds IPv4 only, so the caller may skip the block.
    Ipv6,
    /// The prefix is empty, has a sign, a leading zero or a non-digit.
    InvalidPrefix,
    /// The prefix is greater than 32.
    PrefixTooLong,
}

impl fmt::Display for CidrErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingPrefix => "missing /prefix",
            Self::InvalidAddress => "not an IPv4 address",
            Self::Ipv6 => "IPv6 blocks are not supported by the IPv4 policy table",
            Self::InvalidPrefix => "prefix length must be decimal digits without leading zeros",
            Self::PrefixTooLong => "prefix length must be at most 32",
        })
    }
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid IPv4 CIDR {:?}: {}", self.text, self.reason)
    }
}

impl std::error::Error for CidrError {}
