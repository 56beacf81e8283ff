//! Checked wrappers over the libc calls the device backends share: sockets, socket options,
//! ioctls on interface requests, and an owned memory mapping (shared, or anonymous).
//!
//! Invariants:
//! - Every wrapper turns a failed call into the thread's `errno` as an `io::Error` whose
//!   message names the step (`what`), so a failed device setup says which call broke; the
//!   error kind is kept.
//! - `IfName` always holds a NUL-terminated name of 1 to `IFNAMSIZ - 1` bytes.
//! - `Mapping` owns its pages: they are unmapped exactly once, when it is dropped.

use std::ffi::{c_char, c_int, c_ulong, c_void};
use std::fmt::Display;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};

/// `err` with `what` in front of its message, keeping its kind.
pub(crate) fn context(err: io::Error, what: impl Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Maps a libc return value to `Ok` or the current `errno`, named by `what`.
pub(crate) fn check(ret: c_int, what: impl Display) -> io::Result<c_int> {
    if ret < 0 {
        Err(context(io::Error::last_os_error(), what))
    } else {
        Ok(ret)
    }
}

/// A new close-on-exec socket.
pub(crate) fn socket(domain: c_int, kind: c_int, protocol: c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; it only returns a descriptor or -1.
    let fd = check(
        unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) },
        "socket",
    )?;
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// getsockopt(2) into `value`, for options whose kernel type is exactly `T`.
pub(crate) fn get_option<T>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &mut T,
    what: &str,
) -> io::Result<()> {
    let mut len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "socket option too large"))?;
    // SAFETY: `value` is a live, exclusive reference to `len` bytes and `len` a live local;
    // the kernel writes at most `len` bytes into `value`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_mut(value).cast::<c_void>(),
            &mut len,
        )
    };
    check(ret, what).map(drop)
}

/// setsockopt(2) with `value` passed by reference, as the kernel expects for every option
/// used here.
pub(crate) fn set_option<T>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &T,
    what: &str,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "socket option too large"))?;
    // SAFETY: `value` is a live reference to `len` bytes that stay borrowed for the call;
    // the kernel only reads them.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_ref(value).cast::<c_void>(),
            len,
        )
    };
    check(ret, what).map(drop)
}

/// ioctl(2) whose argument is a pointer to `arg`, which the kernel may read and write.
pub(crate) fn ioctl_with<T>(
    fd: BorrowedFd<'_>,
    request: libc::Ioctl,
    arg: &mut T,
    what: impl Display,
) -> io::Result<()> {
    // SAFETY: `arg` is an exclusive live reference for the whole call, so the kernel may
    // read and write its bytes; every request passed here takes exactly a `T`.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, ptr::from_mut(arg)) };
    check(ret, what).map(drop)
}

/// ioctl(2) whose argument is a plain integer, not a pointer (TUNSETPERSIST, TUNSETOFFLOAD).
pub(crate) fn ioctl_value(
    fd: BorrowedFd<'_>,
    request: libc::Ioctl,
    value: c_ulong,
    what: impl Display,
) -> io::Result<()> {
    // SAFETY: the requests passed here read their argument as an integer; no memory is
    // touched through it.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, value) };
    check(ret, what).map(drop)
}

/// An interface name as the kernel's `struct ifreq` wants it.
#[derive(Clone, Copy)]
pub(crate) struct IfName([c_char; libc::IFNAMSIZ]);

impl IfName {
    pub(crate) fn new(name: &str) -> io::Result<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "interface name {name:?} must be 1 to {} bytes without NUL",
                    libc::IFNAMSIZ - 1
                ),
            ));
        }
        let mut raw = [0; libc::IFNAMSIZ];
        for (dst, &src) in raw.iter_mut().zip(bytes) {
            *dst = src as c_char;
        }
        Ok(Self(raw))
    }

    /// An interface request for this name carrying `value`.
    pub(crate) fn request(&self, value: libc::__c_anonymous_ifr_ifru) -> libc::ifreq {
        libc::ifreq {
            ifr_name: self.0,
            ifr_ifru: value,
        }
    }
}

/// A shared, read-write mapping of a descriptor (the AF_PACKET rings, shared table files).
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; moving the owner to another
// thread moves the only handle to it. It is not `Sync`: all access goes through `&mut` of
// the owning ring or reads ordered by its status words.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, pre-faulted; `what` names it in errors.
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize, what: &str) -> io::Result<Self> {
        // SAFETY: a null hint lets the kernel choose fresh addresses, so the mapping cannot
        // overlap any existing Rust object; the other arguments are plain values.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(context(
                io::Error::last_os_error(),
                format!("mmap of {what}"),
            ));
        }
        let base = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { base, len })
    }

    /// Maps `len` bytes of private, zeroed anonymous memory, not faulted in yet; with
    /// `hugetlb`, of reserved 2 MiB huge pages (`len` a multiple of 2 MiB), which fails when
    /// the pool has too few free.
    pub(crate) fn anonymous(len: usize, hugetlb: bool) -> io::Result<Self> {
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if hugetlb {
            flags |= libc::MAP_HUGETLB | libc::MAP_HUGE_2MB;
        }
        // SAFETY: as in `shared`: a null hint and no descriptor, so the kernel picks fresh
        // addresses that overlap no existing object.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            let what = if hugetlb {
                "mmap of huge pages"
            } else {
                "mmap"
            };
            return Err(context(io::Error::last_os_error(), what));
        }
        let base = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { base, len })
    }

    /// Asks for transparent huge pages on `len` bytes from `offset` (madvise MADV_HUGEPAGE);
    /// `offset` must be a multiple of the page size.
    pub(crate) fn advise_huge_pages(&self, offset: usize, len: usize) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "madvise range outside the mapping",
            ));
        }
        // SAFETY: the range lies inside this mapping (checked above); MADV_HUGEPAGE changes
        // how the kernel backs the pages, never their contents.
        let ret = unsafe {
            libc::madvise(
                self.base.as_ptr().add(offset).cast::<c_void>(),
                len,
                libc::MADV_HUGEPAGE,
            )
        };
        check(ret, "madvise(MADV_HUGEPAGE)").map(drop)
    }

    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly what mmap returned and this is the only place
        // that unmaps them; whatever points into the mapping (ring cursors, the word slices of
        // a shared table) lives in the same owner and is gone once it is dropped. A failure
        // leaves only a leak, so it is ignored.
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}
