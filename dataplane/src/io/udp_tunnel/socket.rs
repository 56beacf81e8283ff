//! The kernel side of the tunnel: one UDP socket per worker bound to the node's VXLAN
//! address on the uplink device (and send sockets bound to the node IP and ephemeral ports,
//! one per outer source port bucket), batch send with `UDP_SEGMENT` and batch receive with
//! `UDP_GRO` (`sendmmsg`/`recvmmsg`), and the epoll set a worker sleeps on.
//!
//! Invariants:
//! - The socket is bound to `node_ip:port` (`IP_FREEBIND`: the node IP may appear on the host
//!   port only after the dataplane starts) and to the uplink device (`SO_BINDTODEVICE`): it
//!   receives only what arrives on the uplink, and what it sends leaves by the uplink, the
//!   peer taken as on-link (the VXLAN peers share the uplink's L2 segment, as `peerMACs`
//!   already requires), never through the host port and the dataplane again.
//! - Every descriptor and buffer address handed to the kernel points into memory the caller
//!   keeps borrowed for the whole call; nothing here allocates per call.

use std::ffi::c_int;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use crate::io::sys::{self, IfName, check, context};

/// `SOL_UDP` options (linux/udp.h).
const SOL_UDP: c_int = 17;
pub(crate) const UDP_SEGMENT: c_int = 103;
pub(crate) const UDP_GRO: c_int = 104;
/// Socket buffers asked for each way: room for a few dozen 64 KB super-packets while the
/// worker or the peer is busy.
const BUFFER_BYTES: c_int = 16 << 20;

/// Points one message header at its peer address, its buffers (gathered in order) and its
/// control space (none when `control` is empty), for `sendmmsg` and `recvmmsg` alike.
pub(crate) fn point_header(
    h: &mut libc::msghdr,
    name: &mut libc::sockaddr_in,
    iov: &mut [libc::iovec],
    control: &mut [u8],
) {
    h.msg_name = std::ptr::addr_of_mut!(*name).cast();
    h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    h.msg_iov = iov.as_mut_ptr();
    h.msg_iovlen = iov.len() as _;
    if !control.is_empty() {
        h.msg_control = control.as_mut_ptr().cast();
        h.msg_controllen = control.len() as _;
    }
}

/// `sockaddr_in` of `ip:port`.
pub(crate) fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Address and port of a `sockaddr_in` the kernel filled.
pub(crate) fn from_sockaddr(addr: &libc::sockaddr_in) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )
}

fn set_int(fd: &OwnedFd, level: c_int, name: c_int, value: c_int, what: &str) -> io::Result<()> {
    sys::set_option(fd.as_fd(), level, name, &value, what)
}

/// A buffer size: the forced variant (root) when allowed, else the capped one.
fn set_buffer(fd: &OwnedFd, forced: c_int, capped: c_int, what: &str) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, forced, BUFFER_BYTES, what)
        .or_else(|_| set_int(fd, libc::SOL_SOCKET, capped, BUFFER_BYTES, what))
}

/// Opens the tunnel socket of one worker (see the module invariants): it receives every
/// VXLAN datagram for the node (`UDP_GRO`).
pub(crate) fn open(node_ip: Ipv4Addr, port: u16, device: &str) -> io::Result<OwnedFd> {
    let fd = configured(device)?;
    set_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1, "SO_REUSEPORT")?;
    set_int(&fd, SOL_UDP, UDP_GRO, 1, "UDP_GRO")?;
    set_buffer(&fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "SO_RCVBUF")?;
    bind(&fd, node_ip, port)?;
    Ok(fd)
}

/// Opens one of a worker's send sockets: bound to `node_ip` and a port the kernel picks
/// (ephemeral), so what it sends carries that outer source port. It receives nothing: the
/// node's kernel delivers only UDP to the VXLAN port from the uplink (module doc of
/// `udp_tunnel`).
pub(crate) fn open_sender(node_ip: Ipv4Addr, device: &str) -> io::Result<OwnedFd> {
    let fd = configured(device)?;
    bind(&fd, node_ip, 0)?;
    Ok(fd)
}

/// A non-blocking UDP socket with the options both kinds share: free bind, DF without
/// path-MTU state, the uplink device, a large send buffer.
fn configured(device: &str) -> io::Result<OwnedFd> {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, 0)
        .map_err(|e| context(e, "UDP tunnel socket"))?;
    set_int(&fd, libc::SOL_IP, libc::IP_FREEBIND, 1, "IP_FREEBIND")?;
    // DF on every datagram, and no path-MTU state: a VTEP never fragments, and the segment
    // size is fitted to the uplink MTU by the pipeline.
    set_int(
        &fd,
        libc::SOL_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_PROBE,
        "IP_MTU_DISCOVER",
    )?;
    IfName::new(device)?;
    let mut name = [0u8; libc::IFNAMSIZ];
    name[..device.len()].copy_from_slice(device.as_bytes());
    sys::set_option(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        &name,
        "SO_BINDTODEVICE",
    )?;
    set_buffer(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "SO_SNDBUF")?;
    Ok(fd)
}

fn bind(fd: &OwnedFd, node_ip: Ipv4Addr, port: u16) -> io::Result<()> {
    let addr = sockaddr(node_ip, port);
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` is a live sockaddr_in of `len` bytes, only read by the kernel.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    check(
        ret,
        format_args!("bind UDP tunnel socket to {node_ip}:{port}"),
    )?;
    Ok(())
}

/// Sends `msgs` with one `sendmmsg` (non-blocking); returns how many went out (0 when the
/// socket buffer is full).
pub(crate) fn send_batch(fd: &OwnedFd, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    if msgs.is_empty() {
        return Ok(0);
    }
    let n = libc::c_uint::try_from(msgs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: `msgs` is an exclusive live slice of `n` headers; the caller built every
    // header's name, iovec array, iovec bases and control buffer to point into memory it
    // keeps borrowed (unchanged) across this call; the kernel reads those and writes only
    // each header's `msg_len`.
    let ret = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n, libc::MSG_DONTWAIT) };
    batch_result(ret, "sendmmsg on the UDP tunnel")
}

/// Receives into `msgs` with one `recvmmsg` (non-blocking); returns how many were filled.
pub(crate) fn receive_batch(fd: &OwnedFd, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    if msgs.is_empty() {
        return Ok(0);
    }
    let n = libc::c_uint::try_from(msgs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: `msgs` is an exclusive live slice of `n` headers whose names, iovecs (and the
    // buffers they point to) and control buffers the caller keeps exclusively borrowed for
    // the call; the kernel writes at most each iovec's and control buffer's stated length.
    let ret = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
        )
    };
    batch_result(ret, "recvmmsg on the UDP tunnel")
}

/// The count a batch call returned, 0 when it would block; an error named by `what`
/// otherwise. The would-block case (every empty poll of the socket) is told from the bare
/// `errno`, before any message is formatted: nothing is allocated per poll.
fn batch_result(ret: c_int, what: &str) -> io::Result<usize> {
    if let Ok(n) = usize::try_from(ret) {
        return Ok(n);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(0)
    } else {
        Err(context(err, what))
    }
}

/// The `gso_size` of a received message (its `UDP_GRO` control message), if the kernel
/// merged datagrams into it.
pub(crate) fn gro_size(msg: &libc::msghdr) -> Option<usize> {
    // SAFETY: `msg` is a header recvmmsg just filled: its control buffer and `msg_controllen`
    // are valid, and CMSG_FIRSTHDR/CMSG_NXTHDR stay within them.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and lies within the control buffer (CMSG_FIRSTHDR /
        // CMSG_NXTHDR checked it); a UDP_GRO message carries an int.
        let size = unsafe {
            let c = &*cmsg;
            (c.cmsg_level == SOL_UDP && c.cmsg_type == UDP_GRO)
                .then(|| ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>()))
        };
        if let Some(size) = size {
            return usize::try_from(size).ok();
        }
        // SAFETY: as above, on the same header and buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

/// Control-buffer bytes for one `UDP_SEGMENT` or `UDP_GRO` message (a u16 or an int).
pub(crate) const CONTROL_LEN: usize = 32;

/// Writes a `UDP_SEGMENT` control message of `size` into `buf`; returns its length.
pub(crate) fn put_segment_size(buf: &mut [u8; CONTROL_LEN], size: u16) -> usize {
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(size_of::<u16>() as u32) as usize,
            libc::CMSG_LEN(size_of::<u16>() as u32) as usize,
        )
    };
    let header = libc::cmsghdr {
        cmsg_len: len as _,
        cmsg_level: SOL_UDP,
        cmsg_type: UDP_SEGMENT,
    };
    let header_len = size_of::<libc::cmsghdr>();
    // SAFETY: `buf` holds CONTROL_LEN >= header_len + 2 bytes; the write is unaligned-safe.
    unsafe { ptr::write_unaligned(buf.as_mut_ptr().cast::<libc::cmsghdr>(), header) };
    buf[header_len..header_len + 2].copy_from_slice(&size.to_ne_bytes());
    space
}

/// An epoll set over the raw uplink socket and the tunnel socket: readable when either is,
/// so a sleeping worker waits on one descriptor per port.
pub(crate) fn epoll_over(fds: &[RawFd]) -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointers.
    let epfd = check(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    // SAFETY: `epfd` was just returned by epoll_create1, is open and owned by nobody else.
    let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
    for &fd in fds {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: `event` is a live epoll_event the kernel only reads; both descriptors are
        // open for the call.
        let ret =
            unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        check(ret, "epoll_ctl")?;
    }
    Ok(epoll)
}

/// An `mmsghdr` with no name, iovec or control buffer (filled in by the caller).
pub(crate) fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data (pointers and integers); all zero is a valid value: null
    // pointers with zero lengths.
    unsafe { std::mem::zeroed() }
}
