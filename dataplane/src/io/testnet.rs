//! Test harness for the device backends: a throw-away network namespace per test, entered by
//! dedicated threads so the host's namespace is never touched, plus independent raw sockets
//! that inject and capture frames.
//!
//! Invariants:
//! - Every namespace is named `fpio-<pid>-<n>` and deleted when its `Netns` is dropped, on
//!   success and on panic alike; namespaces left by a killed run (their pid is gone) are
//!   deleted before the first new one is created.
//! - Only threads started by `Netns::run` enter a namespace; the thread that owns the `Netns`
//!   stays where it is, and so does every other thread of the test binary.
//! - The tests need root: `require_root` fails loudly instead of skipping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed setup step must stop the test with its message"
)]

use std::ffi::{c_int, c_void};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{netdev, sys};

/// Panics unless the tests run as root: they create namespaces, links and raw sockets.
pub(crate) fn require_root() {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the device I/O tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces): run \
         `cargo test` as root"
    );
}

/// Runs `ip` with `args`, panicking with its stderr if it fails.
pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running `ip` (iproute2) failed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running `ip`");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PREFIX: &str = "fpio-";

/// Deletes `fpio-<pid>-*` namespaces whose process no longer exists.
fn delete_stale_namespaces() {
    for line in ip_output(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            ip(&["netns", "del", name]);
        }
    }
}

/// A network namespace that exists while this value lives.
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn create() -> Self {
        require_root();
        static CLEANUP: Once = Once::new();
        CLEANUP.call_once(delete_stale_namespaces);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        // No IPv6: no router solicitations, DAD or MLD frames on the test links.
        ns.run(|| {
            for knob in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6"), "1")
                    .unwrap();
            }
        });
        ns
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> args`.
    pub(crate) fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// The output of `ip -n <ns> args`.
    pub(crate) fn ip_output(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip_output(&all)
    }

    /// Runs `body` on a new thread that has entered this namespace; a panic in `body` is
    /// re-raised here (so the namespace is still deleted by `Drop`).
    pub(crate) fn run<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter_current_thread();
                    body()
                })
                .join()
        })
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn enter_current_thread(&self) {
        let file = File::open(format!("/run/netns/{}", self.name)).unwrap();
        // SAFETY: `file` is an open namespace file for the whole call; setns(2) only changes
        // the calling thread's network namespace.
        let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        sys::check(ret, "setns").unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !matches!(out, Ok(ref o) if o.status.success()) {
            eprintln!("warning: could not delete namespace {}: {out:?}", self.name);
        }
    }
}

/// Creates a veth pair `a`/`b` in `ns`, both up.
pub(crate) fn veth_pair(ns: &Netns, a: &str, b: &str) {
    ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    ns.ip(&["link", "set", a, "up"]);
    ns.ip(&["link", "set", b, "up"]);
}

/// Waits until `fd` is readable or `timeout` passes; true if readable.
pub(crate) fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `pfd` is one live, exclusive pollfd for the duration of the call.
    let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
    ret > 0
}

/// A plain (ring-less) raw socket: an oracle independent of the backends under test.
pub(crate) struct RawSocket {
    fd: OwnedFd,
}

impl RawSocket {
    /// An AF_PACKET socket bound to `ifname`, seeing every frame in and out of it.
    pub(crate) fn packet(ifname: &str) -> Self {
        let all = (libc::ETH_P_ALL as u16).to_be();
        let fd = sys::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            c_int::from(all),
        )
        .unwrap();
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: all,
            sll_ifindex: c_int::try_from(netdev::ifindex(ifname).unwrap()).unwrap(),
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `addr` is a live sockaddr_ll and the length passed is its size.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        sys::check(ret, "bind raw packet socket").unwrap();
        Self { fd }
    }

    /// An IPv4 raw ICMP socket (a `ping` without the binary).
    pub(crate) fn icmp() -> Self {
        let fd = sys::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            libc::IPPROTO_ICMP,
        )
        .unwrap();
        Self { fd }
    }

    /// Sends one frame (AF_PACKET) on the bound interface.
    pub(crate) fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is a live slice of `frame.len()` readable bytes.
        let ret = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<c_void>(),
                frame.len(),
                0,
            )
        };
        assert_eq!(
            usize::try_from(ret).ok(),
            Some(frame.len()),
            "raw send failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Sends an ICMP message (header included) to `dst` (raw ICMP socket).
    pub(crate) fn send_to(&self, message: &[u8], dst: Ipv4Addr) {
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `message` and `addr` are live for the call; the lengths passed are theirs.
        let ret = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                message.as_ptr().cast::<c_void>(),
                message.len(),
                0,
                std::ptr::from_ref(&addr).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert!(ret >= 0, "sendto: {}", std::io::Error::last_os_error());
    }

    /// The next message for which `wanted` holds, waiting at most `timeout` in all.
    pub(crate) fn recv_matching(
        &self,
        timeout: Duration,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(self.fd.as_raw_fd(), left) {
                return None;
            }
            // SAFETY: `buf` is a live, exclusive buffer of `buf.len()` writable bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if let Ok(n) = usize::try_from(n)
                && wanted(&buf[..n])
            {
                return Some(buf[..n].to_vec());
            }
        }
    }
}
