//! What a worker thread needs from the OS: pinning to a core, the monotonic clock, and
//! sleeping on its ports' descriptors while idle.
//!
//! Invariants: each call is one syscall with its error named; nothing here allocates except
//! `allowed_cpus` (startup only).

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

    #[test]
    fn waiting_on_nothing_readable_times_out() {
        let (r, _w) = std::os::unix::net::UnixStream::pair().expect("pair");
        let mut fds = [pollfd(std::os::fd::AsRawFd::as_raw_fd(&r))];
        assert_eq!(wait_readable(&mut fds, 10).expect("poll"), 0);
    }
}
