//! What a worker thread needs from the OS: pinning to a core, its scheduling class, the
//! monotonic clock, and sleeping on its ports' descriptors while idle.
//!
//! Invariants: each call is one syscall (two for `set_scheduling`: read, then write) with its
//! error named; nothing here allocates except `allowed_cpus` and error messages (startup
//! only). A scheduling change keeps the thread's nice value.

use std::io;
use std::os::fd::RawFd;

use super::sys::{check, context};

/// The CPUs this process may run on (respects taskset and cgroup cpusets).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed; the kernel writes into it only.
    check(
        unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) },
        "sched_getaffinity",
    )?;
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the bound CPU_ISSET requires.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} is beyond CPU_SETSIZE"),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked against CPU_SETSIZE above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed; the kernel only reads it.
    check(
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) },
        format!("sched_setaffinity to cpu {cpu}"),
    )?;
    Ok(())
}

/// The CPU the calling thread runs on now (getcpu through the vDSO: no kernel entry on x86).
pub fn current_cpu() -> io::Result<usize> {
    // SAFETY: sched_getcpu takes no arguments and only returns a value.
    let cpu = unsafe { libc::sched_getcpu() };
    check(cpu, "sched_getcpu")?;
    Ok(cpu as usize)
}

/// Seconds of CLOCK_MONOTONIC: the time base of flow tables. Shared by every process on the
/// host, so a restarted process reads the same clock its predecessor wrote entries with.
pub fn monotonic_secs() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec the kernel writes; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u32
}

/// Nanoseconds of CLOCK_MONOTONIC (the clock of `monotonic_secs`): a worker reads it once
/// per round and derives the seconds from it.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec the kernel writes; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// A thread's scheduling policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedPolicy {
    /// SCHED_OTHER (EEVDF): shares the core by virtual runtime.
    #[default]
    Other,
    /// SCHED_FIFO: preempts every SCHED_OTHER task when it wakes; runs until it sleeps.
    Fifo,
    /// SCHED_RR: SCHED_FIFO with a time slice among equal priorities.
    Rr,
    /// Any other policy the thread was given from outside (SCHED_BATCH, SCHED_IDLE, ...).
    Foreign(u32),
}

impl SchedPolicy {
    pub fn name(self) -> &'static str {
        match self {
            SchedPolicy::Other => "other",
            SchedPolicy::Fifo => "fifo",
            SchedPolicy::Rr => "rr",
            SchedPolicy::Foreign(libc_policy) => match libc_policy as libc::c_int {
                libc::SCHED_BATCH => "batch",
                libc::SCHED_IDLE => "idle",
                6 => "deadline",
                _ => "unknown",
            },
        }
    }

    /// Whether the policy is a real-time one (priorities 1..=99).
    pub fn is_realtime(self) -> bool {
        matches!(self, SchedPolicy::Fifo | SchedPolicy::Rr)
    }

    fn raw(self) -> u32 {
        match self {
            SchedPolicy::Other => libc::SCHED_OTHER as u32,
            SchedPolicy::Fifo => libc::SCHED_FIFO as u32,
            SchedPolicy::Rr => libc::SCHED_RR as u32,
            SchedPolicy::Foreign(raw) => raw,
        }
    }

    fn from_raw(raw: u32) -> Self {
        match raw as libc::c_int {
            libc::SCHED_OTHER => SchedPolicy::Other,
            libc::SCHED_FIFO => SchedPolicy::Fifo,
            libc::SCHED_RR => SchedPolicy::Rr,
            _ => SchedPolicy::Foreign(raw),
        }
    }
}

/// A thread's scheduling class as set or as read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadScheduling {
    pub policy: SchedPolicy,
    /// Real-time priority, 1..=99 for fifo and rr; 0 otherwise.
    pub priority: u32,
    /// SCHED_OTHER only: the EEVDF slice hint (`sched_attr.sched_runtime`, 100 us to 100 ms);
    /// `None` for the kernel's base slice. A shorter slice lets a woken thread preempt sooner.
    pub slice_ns: Option<u64>,
}

fn sched_getattr() -> io::Result<libc::sched_attr> {
    // SAFETY: an all-zero sched_attr is a valid value of this plain C struct.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    let size = size_of::<libc::sched_attr>() as libc::c_uint;
    // SAFETY: `attr` is a live, exclusively borrowed sched_attr of `size` bytes; the kernel
    // writes at most `size` bytes into it. pid 0 is the calling thread.
    let ret = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) };
    check(ret as libc::c_int, "sched_getattr")?;
    Ok(attr)
}

/// The calling thread's scheduling class.
pub fn current_scheduling() -> io::Result<ThreadScheduling> {
    let attr = sched_getattr()?;
    let policy = SchedPolicy::from_raw(attr.sched_policy);
    Ok(ThreadScheduling {
        policy,
        priority: attr.sched_priority,
        slice_ns: (policy == SchedPolicy::Other && attr.sched_runtime != 0)
            .then_some(attr.sched_runtime),
    })
}

/// Puts the calling thread in `class`, keeping its nice value. EPERM (no CAP_SYS_NICE and
/// RLIMIT_RTPRIO too low) and EINVAL (a priority outside the policy's range, a slice outside
/// 100 us..100 ms) come back with the policy and priority named, kind kept.
pub fn set_scheduling(class: &ThreadScheduling) -> io::Result<()> {
    let mut attr = sched_getattr()?;
    attr.size = size_of::<libc::sched_attr>() as u32;
    attr.sched_policy = class.policy.raw();
    attr.sched_flags = 0;
    attr.sched_priority = class.priority;
    attr.sched_runtime = match class.policy {
        SchedPolicy::Other => class.slice_ns.unwrap_or(0),
        _ => 0,
    };
    attr.sched_deadline = 0;
    attr.sched_period = 0;
    // SAFETY: `attr` is a live sched_attr whose `size` field is its own size; the kernel only
    // reads it. pid 0 is the calling thread, so no other thread is touched.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    if ret >= 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let hint = match err.raw_os_error() {
        Some(libc::EPERM) => format!(
            " (needs CAP_SYS_NICE, or RLIMIT_RTPRIO of at least {})",
            class.priority
        ),
        Some(libc::EINVAL) => {
            " (priority 1..=99 for fifo and rr, 0 for other; slice 100us..100ms)".to_owned()
        }
        _ => String::new(),
    };
    let slice = class
        .slice_ns
        .map(|ns| format!(" slice {}us", ns / 1000))
        .unwrap_or_default();
    Err(io::Error::new(
        err.kind(),
        format!(
            "sched_setattr policy {} priority {}{slice}: {err}{hint}",
            class.policy.name(),
            class.priority
        ),
    ))
}

/// Sleeps until one of `fds` is readable or `timeout_ms` passes. Returns how many are
/// readable (0 on timeout). Interrupted sleeps return 0.
pub fn wait_readable(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    for p in fds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    // SAFETY: `fds` is a live, exclusively borrowed array of `fds.len()` pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(context(err, "poll"));
    }
    Ok(n as usize)
}

/// A pollfd for `fd`, ready for `wait_readable`.
pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_to_an_allowed_cpu_works_and_the_clock_moves_forward() {
        let cpus = allowed_cpus().expect("affinity");
        assert!(!cpus.is_empty());
        let cpu = cpus[cpus.len() - 1];
        std::thread::spawn(move || {
            pin_current_thread(cpu).expect("pin");
            assert_eq!(allowed_cpus().expect("affinity"), vec![cpu]);
        })
        .join()
        .expect("thread");
        assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
        let a = monotonic_secs();
        assert!(monotonic_secs() >= a);
    }

    /// Runs `f` on a new thread and returns what it returned (the class set there dies with it).
    fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("thread")
    }

    #[test]
    fn a_thread_takes_fifo_and_a_slice_hint_and_reads_them_back() {
        let fifo = ThreadScheduling {
            policy: SchedPolicy::Fifo,
            priority: 3,
            slice_ns: None,
        };
        let read = on_thread(move || {
            set_scheduling(&fifo).expect("SCHED_FIFO 3 (the test needs CAP_SYS_NICE: run as root)");
            current_scheduling().expect("read back")
        });
        assert_eq!(read, fifo);
        let short = ThreadScheduling {
            policy: SchedPolicy::Other,
            priority: 0,
            slice_ns: Some(100_000),
        };
        let read = on_thread(move || {
            set_scheduling(&short).expect("slice hint");
            current_scheduling().expect("read back")
        });
        assert_eq!(read, short);
        assert_eq!(
            current_scheduling().expect("read").policy,
            SchedPolicy::Other,
            "the test thread itself is untouched"
        );
    }

    #[test]
    fn a_refused_class_names_policy_priority_and_why() {
        let bad = ThreadScheduling {
            policy: SchedPolicy::Fifo,
            priority: 100,
            slice_ns: None,
        };
        let err = on_thread(move || set_scheduling(&bad)).expect_err("priority 100 accepted");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("policy fifo priority 100") && text.contains("1..=99"),
            "{text}"
        );

        // A thread that gave up root (and so every capability, CAP_SYS_NICE included) as
        // setresuid(2) does for the calling thread only.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a live rlimit the kernel writes.
        check(
            unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut limit) },
            "getrlimit",
        )
        .expect("RLIMIT_RTPRIO");
        assert!(
            limit.rlim_cur < 50,
            "RLIMIT_RTPRIO is {}: this test needs it below 50 to see EPERM",
            limit.rlim_cur
        );
        let fifo50 = ThreadScheduling {
            policy: SchedPolicy::Fifo,
            priority: 50,
            slice_ns: None,
        };
        let err = on_thread(move || {
            // SAFETY: setresuid takes no pointers; the raw syscall (unlike the libc wrapper)
            // changes the credentials of this thread only, which exits right after.
            let ret = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            check(ret as libc::c_int, "setresuid").expect("dropping root (run the test as root)");
            set_scheduling(&fifo50)
        })
        .expect_err("an unprivileged thread got SCHED_FIFO");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("CAP_SYS_NICE"), "{err}");
    }

    #[test]
    fn the_nanosecond_clock_agrees_with_the_seconds() {
        let ns = monotonic_ns();
        let secs = monotonic_secs();
        assert!(u64::from(secs) >= ns / 1_000_000_000);
        assert!(u64::from(secs) <= ns / 1_000_000_000 + 1);
        assert!(monotonic_ns() >= ns);
    }

    #[test]
    fn waiting_on_nothing_readable_times_out() {
        let (r, _w) = std::os::unix::net::UnixStream::pair().expect("pair");
        let mut fds = [pollfd(std::os::fd::AsRawFd::as_raw_fd(&r))];
        assert_eq!(wait_readable(&mut fds, 10).expect("poll"), 0);
    }
}
