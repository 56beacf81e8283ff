//! IP address families as the Kubernetes API names them (`IPv4`, `IPv6`): the values of a
//! Service's `spec.ipFamilies` and an EndpointSlice's `addressType`.
//!
//! Invariant: [`IpFamily::as_str`] and [`IpFamily::parse`] are inverse and case-sensitive, as
//! the API server is (`ipv6` is not a family).

use std::fmt;
use std::net::IpAddr;

use super::Cidr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

impl IpFamily {
    pub const ALL: [IpFamily; 2] = [IpFamily::IPv4, IpFamily::IPv6];

    pub fn of(ip: IpAddr) -> IpFamily {
        if ip.is_ipv4() {
            IpFamily::IPv4
        } else {
            IpFamily::IPv6
        }
    }

    pub fn of_cidr(cidr: &Cidr) -> IpFamily {
        IpFamily::of(cidr.network())
    }

    /// The API's spelling, `IPv4` or `IPv6`.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::IPv4 => "IPv4",
            IpFamily::IPv6 => "IPv6",
        }
    }

    /// `IPv4` or `IPv6`, exactly.
    pub fn parse(text: &str) -> Option<IpFamily> {
        IpFamily::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// The family that is not this one.
    pub fn other(self) -> IpFamily {
        match self {
            IpFamily::IPv4 => IpFamily::IPv6,
            IpFamily::IPv6 => IpFamily::IPv4,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for family in IpFamily::ALL {
            assert_eq!(IpFamily::parse(family.as_str()), Some(family));
            assert_eq!(family.other().other(), family);
        }
        assert_eq!(IpFamily::parse("ipv6"), None);
        assert_eq!(IpFamily::of("fd00::1".parse().unwrap()), IpFamily::IPv6);
        assert_eq!(IpFamily::of("10.0.0.1".parse().unwrap()), IpFamily::IPv4);
    }
}
