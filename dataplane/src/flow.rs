//! Flow identity: the IPv4 5-tuple that conntrack, NAT and load-balancing key on.
//!
//! Invariants:
//! - A `FlowKey` always names one direction of a flow. `reversed()` gives the tuple the
//!   other direction carries *before* any NAT; conntrack stores the reply tuple *after* NAT
//!   explicitly, so direction is a type (`Dir`), never a comment about port order.
//! - ICMP echo flows use the echo identifier as both ports, so `reversed()` of an echo
//!   request key is the key of its echo reply.

use std::net::Ipv4Addr;

/// The L4 protocols the dataplane tracks. Anything else is not tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum L4Proto {
    Icmp = 1,
    Tcp = 6,
    Udp = 17,
    Sctp = 132,
}

impl L4Proto {
    /// Maps an IPv4 protocol number to a tracked protocol.
    pub fn from_ip_proto(proto: u8) -> Option<Self> {
        match proto {
            1 => Some(Self::Icmp),
            6 => Some(Self::Tcp),
            17 => Some(Self::Udp),
            132 => Some(Self::Sctp),
            _ => None,
        }
    }

    /// Lower-case name as `conntrack -L` and Kubernetes manifests spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Icmp => "icmp",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// One direction of a flow, as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: L4Proto,
}

impl FlowKey {
    pub fn new(proto: L4Proto, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }

    /// The same flow seen from the other side, with no translation applied.
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }

    /// Packs the key into two words (for hashing and for lock-free tables).
    /// Word 0: src << 32 | dst. Word 1: sport << 32 | dport << 16 | proto.
    pub fn to_words(&self) -> [u64; 2] {
        [
            (u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst)),
            (u64::from(self.sport) << 32) | (u64::from(self.dport) << 16) | self.proto as u64,
        ]
    }

    /// Inverse of [`FlowKey::to_words`]; `None` if the protocol byte is not a tracked one.
    pub fn from_words(w: [u64; 2]) -> Option<Self> {
        let proto = L4Proto::from_ip_proto((w[1] & 0xff) as u8)?;
        Some(Self {
            src: Ipv4Addr::from((w[0] >> 32) as u32),
            dst: Ipv4Addr::from(w[0] as u32),
            sport: (w[1] >> 32) as u16,
            dport: (w[1] >> 16) as u16,
            proto,
        })
    }

    /// A fast, well-mixed hash of the key (not keyed: use only where the table is
    /// bounded and probing is bounded, or mix in a per-process seed via `hash_seeded`).
    pub fn hash_seeded(&self, seed: u64) -> u64 {
        let [a, b] = self.to_words();
        mix64(a ^ seed, b.wrapping_add(seed.rotate_left(29)))
    }

    /// Direction-independent hash: both directions of an un-NATed flow hash alike.
    /// Used for the outer VXLAN source port and for worker steering.
    pub fn symmetric_hash(&self) -> u64 {
        let (lo, hi) = if (self.src, self.sport) <= (self.dst, self.dport) {
            ((self.src, self.sport), (self.dst, self.dport))
        } else {
            ((self.dst, self.dport), (self.src, self.sport))
        };
        let a = (u64::from(u32::from(lo.0)) << 32) | u64::from(u32::from(hi.0));
        let b = (u64::from(lo.1) << 32) | (u64::from(hi.1) << 16) | self.proto as u64;
        mix64(a, b)
    }
}

/// Which direction of a tracked flow a packet travels in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// The direction of the packet that created the entry.
    Original,
    /// The answering direction.
    Reply,
}

/// A 128-to-64-bit mixer (folded multiply, as in wyhash/foldhash).
#[inline]
pub fn mix64(a: u64, b: u64) -> u64 {
    let full =
        u128::from(a ^ 0x243f_6a88_85a3_08d3).wrapping_mul(u128::from(b ^ 0x1319_8a2e_0370_7344));
    let folded = (full as u64) ^ ((full >> 64) as u64);
    folded ^ (folded >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FlowKey {
        FlowKey::new(
            L4Proto::Udp,
            Ipv4Addr::new(10, 244, 0, 5),
            40000,
            Ipv4Addr::new(10, 96, 0, 10),
            53,
        )
    }

    #[test]
    fn words_round_trip() {
        let k = key();
        assert_eq!(FlowKey::from_words(k.to_words()), Some(k));
    }

    #[test]
    fn reversed_twice_is_identity() {
        assert_eq!(key().reversed().reversed(), key());
    }

    #[test]
    fn symmetric_hash_ignores_direction() {
        let k = key();
        assert_eq!(k.symmetric_hash(), k.reversed().symmetric_hash());
        assert_ne!(k.hash_seeded(1), k.reversed().hash_seeded(1));
    }
}
