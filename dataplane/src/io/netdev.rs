//! Interface settings the backends and the node process need without netlink: index,
//! administrative state, MTU and MAC address, through SIOC* ioctls.
//!
//! Invariants:
//! - Every call acts on the network namespace of the calling thread (the throw-away control
//!   socket is created in it), so a worker that entered a pod's namespace configures that
//!   namespace's links.
//! - Nothing here is called per packet: each function costs a socket and one or two ioctls.
//!
//! Moving a link to another namespace needs netlink (`IFLA_NET_NS_FD`); the testbed does it
//! with `ip link set ... netns`, so it is not offered here.

use std::ffi::{c_int, c_short};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::sys::{self, IfName};

fn control_socket() -> io::Result<OwnedFd> {
    sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
}

/// Runs one SIOC* request for `name`, starting from `value`, and returns the filled request.
fn request(
    name: &str,
    code: libc::Ioctl,
    value: libc::__c_anonymous_ifr_ifru,
    what: &str,
) -> io::Result<libc::ifreq> {
    let socket = control_socket()?;
    let mut req = IfName::new(name)?.request(value);
    sys::ioctl_with(
        socket.as_fd(),
        code,
        &mut req,
        format_args!("{what} {name}"),
    )?;
    Ok(req)
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let req = request(
        name,
        libc::SIOCGIFINDEX as libc::Ioctl,
        libc::__c_anonymous_ifr_ifru { ifru_ifindex: 0 },
        "SIOCGIFINDEX",
    )?;
    // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member; every bit pattern is a valid int.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    u32::try_from(index).map_err(|_| io::Error::other(format!("{name}: negative ifindex")))
}

fn flags(name: &str) -> io::Result<c_short> {
    let req = request(
        name,
        libc::SIOCGIFFLAGS as libc::Ioctl,
        libc::__c_anonymous_ifr_ifru { ifru_flags: 0 },
        "SIOCGIFFLAGS",
    )?;
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member; every bit pattern is a valid short.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// Whether `name` is administratively up.
pub fn is_up(name: &str) -> io::Result<bool> {
    Ok(c_int::from(flags(name)?) & libc::IFF_UP != 0)
}

/// Sets `name` administratively up (a TAP the dataplane creates starts down).
pub fn set_up(name: &str) -> io::Result<()> {
    let up = flags(name)? | libc::IFF_UP as c_short;
    request(
        name,
        libc::SIOCSIFFLAGS as libc::Ioctl,
        libc::__c_anonymous_ifr_ifru { ifru_flags: up },
        "SIOCSIFFLAGS",
    )
    .map(drop)
}

/// The MTU of `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let req = request(
        name,
        libc::SIOCGIFMTU as libc::Ioctl,
        libc::__c_anonymous_ifr_ifru { ifru_mtu: 0 },
        "SIOCGIFMTU",
    )?;
    // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member; every bit pattern is a valid int.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::other(format!("{name}: negative MTU")))
}

/// Sets the MTU of `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mtu = c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"))?;
    request(
        name,
        libc::SIOCSIFMTU as libc::Ioctl,
        libc::__c_anonymous_ifr_ifru { ifru_mtu: mtu },
        "SIOCSIFMTU",
    )
    .map(drop)
}

/// The Ethernet address of `name`.
pub fn mac_address(name: &str) -> io::Result<[u8; 6]> {
    let empty = libc::sockaddr {
        sa_family: 0,
        sa_data: [0; 14],
    };
    let req = request(
        name,
        libc::SIOCGIFHWADDR as libc::Ioctl,
        libc::__c_anonymous_ifr_ifru { ifru_hwaddr: empty },
        "SIOCGIFHWADDR",
    )?;
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member, a plain sockaddr of integers.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(&hw.sa_data) {
        *dst = src as u8;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests;
