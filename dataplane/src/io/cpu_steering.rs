//! Receive steering by CPU: a frame is handed to the worker pinned to the CPU that sent it
//! (the CPU running the kernel's transmit or softirq path: a pod's sendmsg, the peer node's
//! send through the uplink), so the hand-off from the sender to the worker is a wakeup on
//! the sender's own CPU, never an inter-processor interrupt. Worker `i` runs on `cores[i]`
//! and holds the `i`-th queue or socket of each port (devices are opened in worker order).
//!
//! Three programs map the current CPU to that index, all built here without a toolchain:
//! - a multi-queue TAP: an eBPF socket-filter program given with `TUNSETSTEERINGEBPF`
//!   (`tun_ebpf_select_queue` takes its result modulo the queue count);
//! - an AF_PACKET fanout group: the classic BPF program of `PACKET_FANOUT_CBPF`, given with
//!   `PACKET_FANOUT_DATA` (result modulo the group's sockets);
//! - a `SO_REUSEPORT` UDP group: the same classic program, `SO_ATTACH_REUSEPORT_CBPF` (a
//!   result past the group's sockets falls back to the kernel's hash).
//!
//! Invariants:
//! - A CPU in `cores` maps to its position; any other CPU maps to its own number (the
//!   kernel's modulo or hash then picks a worker: never a drop).
//! - Queue and socket order is the kernel's attach order: a TAP's queues, a fanout group's
//!   and a reuseport group's sockets are opened in worker order and closed together.
//! - A TAP keeps its program (it holds a reference) until it is replaced or cleared; a
//!   persistent TAP opened without steering has it cleared, so a process started without
//!   per-CPU workers never inherits another's steering.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::af_xdp::program::{Insn, insn, load, op};
use super::sys;

/// BPF_PROG_TYPE_SOCKET_FILTER: the type `TUNSETSTEERINGEBPF` takes.
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// Helper number of `bpf_get_smp_processor_id`.
const BPF_FUNC_GET_SMP_PROCESSOR_ID: i32 = 8;
/// BPF_JMP (0x05) | BPF_JNE (0x50) | BPF_K (0x00): `if dst != imm goto +off`.
const JNE_IMM: u8 = 0x55;

/// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const BPF_RET_A: u16 = 0x16;

/// The eBPF program: `r0 = cpu; if r0 == cores[i] return i; ...; return r0`.
pub(crate) fn tap_program(cores: &[usize]) -> io::Result<Vec<Insn>> {
    let mut insns = vec![insn(op::CALL, 0, 0, 0, BPF_FUNC_GET_SMP_PROCESSOR_ID)];
    for (i, &cpu) in cores.iter().enumerate() {
        let (cpu, i) = (imm(cpu)?, imm(i)?);
        insns.push(insn(JNE_IMM, 0, 0, 2, cpu));
        insns.push(insn(op::MOV64_IMM, 0, 0, 0, i));
        insns.push(insn(op::EXIT, 0, 0, 0, 0));
    }
    insns.push(insn(op::EXIT, 0, 0, 0, 0));
    Ok(insns)
}

/// The classic BPF program: `A = cpu; if A == cores[i] return i; ...; return A`.
pub(crate) fn socket_program(cores: &[usize]) -> io::Result<Vec<libc::sock_filter>> {
    let stmt = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let mut prog = vec![stmt(
        BPF_LD_W_ABS,
        (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
    )];
    for (i, &cpu) in cores.iter().enumerate() {
        prog.push(libc::sock_filter {
            code: BPF_JMP_JEQ_K,
            jt: 0,
            jf: 1,
            k: imm(cpu)? as u32,
        });
        prog.push(stmt(BPF_RET_K, imm(i)? as u32));
    }
    prog.push(stmt(BPF_RET_A, 0));
    if prog.len() > usize::from(u16::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many cores for a steering program",
        ));
    }
    Ok(prog)
}

fn imm(n: usize) -> io::Result<i32> {
    i32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "CPU out of range"))
}

/// The loaded TAP program for one `cores` table (shared by every TAP of the process).
#[derive(Debug)]
pub struct TapSteering {
    prog: OwnedFd,
}

impl TapSteering {
    /// Loads the program (needs CAP_BPF, or CAP_SYS_ADMIN, or unprivileged BPF).
    pub fn load(cores: &[usize]) -> io::Result<TapSteering> {
        let insns = tap_program(cores)?;
        let prog = load(
            BPF_PROG_TYPE_SOCKET_FILTER,
            0,
            &insns,
            "fp_tap_by_cpu",
            "the TAP steering program",
        )?;
        Ok(TapSteering { prog })
    }

    /// Makes the TAP behind `queue` (any of its queues) pick its queue by CPU.
    pub fn apply(&self, queue: BorrowedFd<'_>) -> io::Result<()> {
        set_tap_program(queue, self.prog.as_raw_fd())
    }
}

/// Takes any steering program off the TAP behind `queue` (the kernel's flow hash again).
pub fn clear_tap(queue: BorrowedFd<'_>) -> io::Result<()> {
    set_tap_program(queue, -1)
}

fn set_tap_program(queue: BorrowedFd<'_>, mut prog: c_int) -> io::Result<()> {
    sys::ioctl_with(
        queue,
        libc::TUNSETSTEERINGEBPF,
        &mut prog,
        "TUNSETSTEERINGEBPF",
    )
}

fn fprog(program: &[libc::sock_filter]) -> libc::sock_fprog {
    libc::sock_fprog {
        // `socket_program` keeps its programs within u16.
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    }
}

/// Makes the reuseport group of the bound UDP socket `fd` pick its socket by CPU.
pub fn steer_reuseport(fd: impl AsFd, cores: &[usize]) -> io::Result<()> {
    let program = socket_program(cores)?;
    sys::set_option(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_ATTACH_REUSEPORT_CBPF,
        &fprog(&program),
        "SO_ATTACH_REUSEPORT_CBPF",
    )
}

/// Gives the CBPF fanout group that `fd` joined its CPU program.
pub fn steer_fanout(fd: impl AsFd, cores: &[usize]) -> io::Result<()> {
    let program = socket_program(cores)?;
    sys::set_option(
        fd.as_fd(),
        libc::SOL_PACKET,
        libc::PACKET_FANOUT_DATA,
        &fprog(&program),
        "PACKET_FANOUT_DATA",
    )
}

#[cfg(test)]
mod tests;
