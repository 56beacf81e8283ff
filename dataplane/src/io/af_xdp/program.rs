//! The XDP program that steers a device's frames into AF_XDP sockets, built without a BPF
//! toolchain: six hand-encoded instructions for
//! `return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);`, an XSKMAP created
//! with BPF_MAP_CREATE, loaded with BPF_PROG_LOAD and attached with BPF_LINK_CREATE.
//!
//! Invariants:
//! - The program is attached through a BPF link owned by `XdpRedirect`: closing the link's
//!   descriptor (dropping the value, or the process dying) detaches it, so a device is never
//!   left steering frames to a socket that is gone. A device that already has an XDP program
//!   refuses the link (EBUSY) instead of having it replaced.
//! - Frames of a queue with no socket in the map are passed to the kernel stack (the
//!   `XDP_PASS` fallback of `bpf_redirect_map`), so attaching before the socket is bound
//!   loses nothing that the kernel would have delivered.
//! - `bpf(2)` is given a zero-padded prefix of `union bpf_attr` holding only the fields used;
//!   the kernel treats the missing tail as zero.

use std::ffi::{c_int, c_long};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::XdpMode;
use crate::io::sys::context;

const BPF_MAP_CREATE: c_int = 0;
const BPF_MAP_UPDATE_ELEM: c_int = 2;
const BPF_PROG_LOAD: c_int = 5;
const BPF_LINK_CREATE: c_int = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// Attach type of a program on a device's XDP hook.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// One eBPF instruction (`struct bpf_insn`): opcode, destination register in the low nibble
/// and source register in the high nibble of `regs`, offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

/// Opcodes used: class | size or operation | mode or source, per the eBPF ISA.
pub(crate) mod op {
    /// BPF_LDX (0x01) | BPF_MEM (0x60) | BPF_W (0x00): `dst = *(u32 *)(src + off)`.
    pub(crate) const LOAD_U32: u8 = 0x61;
    /// BPF_LD (0x00) | BPF_IMM (0x00) | BPF_DW (0x18): a 64-bit immediate over two slots.
    pub(crate) const LOAD_IMM64: u8 = 0x18;
    /// BPF_ALU64 (0x07) | BPF_MOV (0xb0) | BPF_K (0x00): `dst = imm`.
    pub(crate) const MOV64_IMM: u8 = 0xb7;
    /// BPF_JMP (0x05) | BPF_CALL (0x80): call helper `imm`.
    pub(crate) const CALL: u8 = 0x85;
    /// BPF_JMP (0x05) | BPF_EXIT (0x90): return r0.
    pub(crate) const EXIT: u8 = 0x95;
}

/// `src` of a 64-bit immediate load whose immediate is a map descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
/// Helper number of `bpf_redirect_map`.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// XDP verdict that hands the frame to the kernel stack.
const XDP_PASS: i32 = 2;

pub(crate) const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | src << 4,
        off,
        imm,
    }
}

/// The redirect program for the XSKMAP `map_fd`: r1 holds the `xdp_md` context on entry.
pub(super) fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    [
        // r2 = ctx->rx_queue_index
        insn(op::LOAD_U32, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = &xsks_map (the loader swaps the descriptor for the map)
        insn(op::LOAD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS (what to return when the queue has no socket)
        insn(op::MOV64_IMM, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        insn(op::CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(op::EXIT, 0, 0, 0, 0),
    ]
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

// The layouts of `union bpf_attr` in include/uapi/linux/bpf.h.
const _: () = {
    assert!(std::mem::offset_of!(MapCreateAttr, map_name) == 28);
    assert!(std::mem::offset_of!(MapUpdateAttr, key) == 8);
    assert!(std::mem::offset_of!(MapUpdateAttr, flags) == 24);
    assert!(std::mem::offset_of!(ProgLoadAttr, log_buf) == 32);
    assert!(std::mem::offset_of!(ProgLoadAttr, prog_name) == 48);
    assert!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type) == 68);
    assert!(size_of::<LinkCreateAttr>() == 16);
};

/// `name` as a NUL-padded BPF object name (at most 15 bytes are kept).
fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (dst, &src) in out.iter_mut().take(15).zip(name.as_bytes()) {
        *dst = src;
    }
    out
}

/// Runs the bpf(2) command `cmd` on `attr`.
///
/// # Safety
/// `T` must be a `repr(C)` prefix of the `union bpf_attr` member of `cmd`, and every pointer
/// stored in `attr` must be valid for what that command does with it (read or written) for the
/// duration of the call.
unsafe fn bpf<T>(cmd: c_int, attr: &mut T) -> io::Result<c_long> {
    let size = u32::try_from(size_of::<T>()).map_err(|_| io::Error::other("bpf_attr too large"))?;
    // SAFETY: `attr` is a live, exclusive `size`-byte value for the whole call; the kernel
    // copies at most `size` bytes of it and follows only the pointers the caller vouched for.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of the descriptor a bpf(2) command returned.
fn owned_fd(ret: c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::other("bpf returned a bad descriptor"))?;
    // SAFETY: the command succeeded and returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_field(fd: BorrowedFd<'_>) -> io::Result<u32> {
    u32::try_from(fd.as_raw_fd()).map_err(|_| io::Error::other("negative descriptor"))
}

/// An XSKMAP with room for queues `0 ..= max_queue`.
fn create_xsk_map(max_queue: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: max_queue.saturating_add(1),
        map_name: object_name("fp_xsks"),
        ..MapCreateAttr::default()
    };
    // SAFETY: `MapCreateAttr` is the BPF_MAP_CREATE prefix and holds no pointers.
    let ret = unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map_err(|e| {
        context(
            e,
            "BPF_MAP_CREATE (XSKMAP; needs CAP_BPF and CAP_NET_ADMIN)",
        )
    })?;
    owned_fd(ret)
}

/// Size of the verifier log kept for an error message.
const LOG_SIZE: usize = 16 * 1024;

/// Loads the redirect program over `map`; a rejection carries the verifier's log.
fn load_program(map: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let insns = redirect_program(map.as_raw_fd());
    load(
        BPF_PROG_TYPE_XDP,
        BPF_XDP,
        &insns,
        "fp_xsk_redirect",
        "the XDP redirect program",
    )
}

/// Loads `insns` as a program of `prog_type` named `name`; a rejection carries the
/// verifier's log and says `what` was refused.
pub(crate) fn load(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[Insn],
    name: &str,
    what: &str,
) -> io::Result<OwnedFd> {
    // The programs call no GPL-only helper, so they can carry the project's own licence.
    let license = c"Apache-2.0";
    let mut log = vec![0u8; LOG_SIZE];
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(io::Error::other)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: LOG_SIZE as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: object_name(name),
        expected_attach_type,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `ProgLoadAttr` is the BPF_PROG_LOAD prefix; `insns` (read, `insn_cnt` entries),
    // `license` (read, NUL-terminated) and `log` (written, `log_size` bytes) outlive the call.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(ret) => owned_fd(ret),
        Err(err) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(context(
                err,
                format_args!("BPF_PROG_LOAD of {what} (verifier log: {text:?})"),
            ))
        }
    }
}

fn mode_flags(mode: XdpMode) -> u32 {
    match mode {
        XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        XdpMode::Native => XDP_FLAGS_DRV_MODE,
        XdpMode::Auto => 0,
    }
}

fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Generic => "generic",
        XdpMode::Native => "native",
        XdpMode::Auto => "auto",
    }
}

/// Attaches `program` to `ifindex` in `mode` (Generic or Native) through a new BPF link.
fn create_link(program: BorrowedFd<'_>, ifindex: u32, mode: XdpMode) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: fd_field(program)?,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: mode_flags(mode),
    };
    // SAFETY: `LinkCreateAttr` is the BPF_LINK_CREATE prefix and holds no pointers.
    let ret = unsafe { bpf(BPF_LINK_CREATE, &mut attr) }?;
    owned_fd(ret)
}

/// The redirect program attached to one device, and the map it steers by.
pub(super) struct XdpRedirect {
    /// Declared first so it is dropped first: the device stops redirecting before the map and
    /// the sockets in it go away.
    #[expect(
        dead_code,
        reason = "held for its drop: closing the link detaches the program"
    )]
    link: OwnedFd,
    map: OwnedFd,
    mode: XdpMode,
}

impl XdpRedirect {
    /// Loads the program with room for queues up to `max_queue` and attaches it to the device
    /// `ifname`/`ifindex`. `Auto` tries native mode first and falls back to generic.
    pub(super) fn attach(
        ifname: &str,
        ifindex: u32,
        max_queue: u32,
        mode: XdpMode,
    ) -> io::Result<Self> {
        let map = create_xsk_map(max_queue)?;
        let program = load_program(map.as_fd())?;
        let attempt = |mode: XdpMode| {
            create_link(program.as_fd(), ifindex, mode).map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EBUSY) {
                    " (the device already has an XDP program)"
                } else {
                    ""
                };
                context(
                    e,
                    format_args!(
                        "attaching XDP in {} mode to {ifname}{hint}",
                        mode_name(mode)
                    ),
                )
            })
        };
        let (link, mode) = match mode {
            XdpMode::Auto => match attempt(XdpMode::Native) {
                Ok(link) => (link, XdpMode::Native),
                Err(native) => match attempt(XdpMode::Generic) {
                    Ok(link) => (link, XdpMode::Generic),
                    Err(generic) => return Err(context(generic, native)),
                },
            },
            chosen => (attempt(chosen)?, chosen),
        };
        Ok(Self { link, map, mode })
    }

    /// The mode the program runs in: `Native` or `Generic`, never `Auto`.
    pub(super) fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Steers frames of `queue` to the bound AF_XDP socket `socket`.
    pub(super) fn steer(&self, queue: u32, socket: BorrowedFd<'_>) -> io::Result<()> {
        let value = fd_field(socket)?;
        let mut attr = MapUpdateAttr {
            map_fd: fd_field(self.map.as_fd())?,
            key: std::ptr::from_ref(&queue) as u64,
            value: std::ptr::from_ref(&value) as u64,
            flags: 0,
        };
        // SAFETY: `MapUpdateAttr` is the BPF_MAP_UPDATE_ELEM prefix; `key` and `value` point
        // to live 4-byte locals (the map's key and value sizes) that the kernel only reads.
        unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }
            .map_err(|e| {
                context(
                    e,
                    format_args!("adding the socket of queue {queue} to the XSKMAP"),
                )
            })
            .map(drop)
    }
}
