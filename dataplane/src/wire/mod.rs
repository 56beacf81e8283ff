//! Zero-copy views over packet headers: Ethernet (with one 802.1Q tag), ARP, IPv4, IPv6 (and its
//! extension-header chain), ICMPv4, ICMPv6 (with neighbour discovery), UDP, TCP, SCTP and VXLAN,
//! plus the Internet checksum and the NAT66 rewrite (`nat66`).
//!
//! Every header has the same shape:
//! - `XPacket<T: AsRef<[u8]>>` wraps a buffer without copying it. Getters need `T: AsRef<[u8]>`,
//!   setters need `T: AsRef<[u8]> + AsMut<[u8]>`, so a view over `&[u8]` cannot be written to.
//! - Byte ranges live in a private `mod field` next to the view; offsets are never literals in code.
//! - `new_checked(buf)` validates lengths (and the few fixed values the view relies on) and is the
//!   entry point for untrusted input. **Contract: once `new_checked` returned `Ok`, no getter or
//!   setter of that view panics**, whatever the bytes are. `new_unchecked` skips the checks and
//!   is for buffers the caller has sized itself (emitting); on a short buffer its accessors may panic.
//! - `XRepr` (where one exists) is a small owned summary: `parse(&view)` reads it from a checked
//!   view, `emit(&self, buf)` writes the header into the front of `buf` and fails with
//!   [`WireError::Truncated`] rather than panicking when `buf` is too short.
//!
//! Nothing here allocates, locks, logs or reads a clock: all of it may run per packet.
//! Values are host order in the API and big-endian on the wire.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6_ext;
pub mod nat66;
pub mod sctp;
pub mod tcp;
pub mod udp;
pub mod vxlan;

#[cfg(test)]
mod tests;

pub use arp::{ArpPacket, ArpRepr};
pub use ethernet::{EthernetFrame, EthernetRepr, MacAddr};
pub use icmp::Icmpv4Packet;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use sctp::SctpPacket;
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::{UdpPacket, UdpRepr};
pub use vxlan::{VxlanPacket, VxlanRepr};

use core::fmt;
use core::ops::Range;

/// Why a buffer could not be viewed as a header. `layer` names the header ("ipv4", "udp", ...)
/// so that callers can count drops by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer ends before the header (or the length it announces) does.
    Truncated { layer: &'static str },
    /// A field holds a value this view does not accept; `what` names the field.
    Malformed {
        layer: &'static str,
        what: &'static str,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { layer } => write!(f, "truncated {layer} packet"),
            WireError::Malformed { layer, what } => write!(f, "malformed {layer} packet: {what}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Result of every fallible operation of the wire module.
pub type Result<T> = core::result::Result<T, WireError>;

/// A named byte range of a header.
type Field = Range<usize>;

/// Reads the big-endian `u16` at the start of `field`.
fn read_u16(data: &[u8], field: Field) -> u16 {
    u16::from_be_bytes([data[field.start], data[field.start + 1]])
}

/// Writes `value` big-endian at the start of `field`.
fn write_u16(data: &mut [u8], field: Field, value: u16) {
    data[field.start..field.start + 2].copy_from_slice(&value.to_be_bytes());
}

/// Reads the big-endian `u32` at the start of `field`.
fn read_u32(data: &[u8], field: Field) -> u32 {
    let s = field.start;
    u32::from_be_bytes([data[s], data[s + 1], data[s + 2], data[s + 3]])
}

/// Writes `value` big-endian at the start of `field`.
fn write_u32(data: &mut [u8], field: Field, value: u32) {
    data[field.start..field.start + 4].copy_from_slice(&value.to_be_bytes());
}
