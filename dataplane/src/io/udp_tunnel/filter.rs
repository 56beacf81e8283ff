//! The classic BPF filter that keeps VXLAN off the raw uplink socket when the tunnel socket
//! takes it: an AF_PACKET socket sees every frame of the device, so without it each VXLAN
//! datagram would reach the dataplane twice (the raw port and the UDP socket).
//!
//! The program drops an untagged IPv4, unfragmented UDP frame to the VXLAN port and accepts
//! everything else whole (ARP, TCP, other UDP, fragments, IPv6): the raw port keeps the
//! internet, LoadBalancer IPs, NodePorts and routed-mode traffic.

use std::ffi::c_int;
use std::io;
use std::os::fd::AsFd;

use crate::io::sys;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LDH_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const LDB_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const LDXB_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: X = 4 * (pkt[k] & 0xf)
const LDH_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JSET: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET: u16 = 0x06; // BPF_RET | BPF_K

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program: drop IPv4/UDP to `port` (not a fragment), accept the rest.
pub fn exclude_udp_port(port: u16) -> [libc::sock_filter; 11] {
    [
        op(LDH_ABS, 0, 0, 12),          // 0: ethertype
        op(JEQ, 0, 8, 0x0800),          // 1: IPv4? else accept (10)
        op(LDB_ABS, 0, 0, 23),          // 2: IP protocol
        op(JEQ, 0, 6, 17),              // 3: UDP? else accept
        op(LDH_ABS, 0, 0, 20),          // 4: flags and fragment offset
        op(JSET, 4, 0, 0x1fff),         // 5: a later fragment: accept
        op(LDXB_MSH, 0, 0, 14),         // 6: X = IP header length
        op(LDH_IND, 0, 0, 14 + 2),      // 7: UDP destination port
        op(JEQ, 0, 1, u32::from(port)), // 8: the VXLAN port: drop (9), else accept (10)
        op(RET, 0, 0, 0),               // 9: drop
        op(RET, 0, 0, u32::MAX),        // 10: accept whole
    ]
}

/// Attaches `program` to the socket `fd` (`SO_ATTACH_FILTER`).
pub(crate) fn attach(fd: impl AsFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    sys::set_option(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER as c_int,
        &prog,
        "SO_ATTACH_FILTER",
    )
}
