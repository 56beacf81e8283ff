//! The latency runs' background hogs are real processes of the `compare` binary, pinned to the
//! CPU and at the nice value asked for, and gone once their `Hogs` is dropped. Needs no root
//! (nice 19 only raises the nice value).
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;

use bench::compare::hogs::{Hogs, Load, PER_CPU};

/// (nice value, allowed CPU list) of a running process.
fn nice_and_cpus(pid: u32) -> (i32, String) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's closing parenthesis: state is field 3, nice field 19.
    let (_, rest) = stat.rsplit_once(')').unwrap();
    let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cpus = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned();
    (nice, cpus)
}

#[test]
fn hogs_run_pinned_at_their_nice_value_and_stop_when_dropped() {
    let program = Path::new(env!("CARGO_BIN_EXE_compare"));
    let cpu = *dataplane::io::thread::allowed_cpus()
        .unwrap()
        .last()
        .unwrap();
    let hogs = Hogs::start(program, Load::Hogs { nice: 19 }, &[cpu]).unwrap();
    let pids = hogs.pids();
    assert_eq!(pids.len(), PER_CPU);
    for &pid in &pids {
        assert_eq!(nice_and_cpus(pid), (19, cpu.to_string()));
    }
    drop(hogs);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "hog {pid} still there"
        );
    }
    assert!(
        Hogs::start(program, Load::Idle, &[cpu])
            .unwrap()
            .pids()
            .is_empty()
    );
}

#[test]
fn a_hog_that_cannot_pin_itself_is_an_error() {
    let program = Path::new(env!("CARGO_BIN_EXE_compare"));
    let error = Hogs::start(program, Load::Hogs { nice: 19 }, &[100_000])
        .err()
        .unwrap();
    assert!(error.0.contains("exited at start"), "{}", error.0);
}
