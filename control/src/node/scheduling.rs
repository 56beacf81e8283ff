//! The workers' scheduling class at start: a probe thread asks the kernel for the resolved
//! class before any worker starts, so a refusal is known (and named) at once; a refused
//! default falls back, a refused configured class stops the start. Also warns where a
//! real-time worker could starve the node: RT throttling off, or busy-poll.
//!
//! Invariants: the control thread's own class is never changed (the probe is a thread of its
//! own); every message names the setting (`workers.scheduling`, `workers.idle`).

use std::io;

use dataplane::io::thread::{ThreadScheduling, set_scheduling};
use dataplane::worker::IdleMode;

use super::config::{FALLBACK_CLASS, WorkerSchedule};

/// What the workers take (`None`: the class they inherit), and warnings to log.
#[derive(Debug, PartialEq, Eq)]
pub struct Choice {
    pub class: Option<ThreadScheduling>,
    pub warnings: Vec<String>,
}

pub fn describe(class: &ThreadScheduling) -> String {
    match class.slice_ns {
        Some(ns) => format!("{} with a {}us slice", class.policy.name(), ns / 1000),
        None if class.policy.is_realtime() => {
            format!("{} priority {}", class.policy.name(), class.priority)
        }
        None => class.policy.name().to_owned(),
    }
}

/// Tries `class` on a thread of its own.
pub fn probe(class: &ThreadScheduling) -> io::Result<()> {
    let class = *class;
    std::thread::Builder::new()
        .name("fp-sched-probe".to_owned())
        .spawn(move || set_scheduling(&class))?
        .join()
        .map_err(|_| io::Error::other("the scheduling probe panicked"))?
}

/// Decides the workers' class with `probe` and the RT throttling setting read from
/// `rt_runtime_us` (the text of /proc/sys/kernel/sched_rt_runtime_us, if readable).
pub fn choose(
    schedule: &WorkerSchedule,
    probe: impl Fn(&ThreadScheduling) -> io::Result<()>,
    rt_runtime_us: Option<&str>,
) -> Result<Choice, String> {
    let mut warnings = Vec::new();
    let class = match probe(&schedule.class) {
        Ok(()) => Some(schedule.class),
        Err(e) if schedule.explicit => {
            return Err(format!(
                "workers.scheduling: the machine refuses {}: {e}",
                describe(&schedule.class)
            ));
        }
        Err(e) => match probe(&FALLBACK_CLASS) {
            Ok(()) => {
                warnings.push(format!(
                    "workers.scheduling: the default {} was refused ({e}); workers run as {} \
                     (set workers.scheduling to choose)",
                    describe(&schedule.class),
                    describe(&FALLBACK_CLASS)
                ));
                Some(FALLBACK_CLASS)
            }
            Err(e2) => {
                warnings.push(format!(
                    "workers.scheduling: neither the default {} ({e}) nor {} ({e2}) was \
                     granted; workers keep the process's class",
                    describe(&schedule.class),
                    describe(&FALLBACK_CLASS)
                ));
                None
            }
        },
    };
    if class.is_some_and(|c| c.policy.is_realtime()) {
        if rt_runtime_us.map(str::trim) == Some("-1") {
            warnings.push(
                "workers.scheduling: real-time throttling is off (kernel.sched_rt_runtime_us \
                 = -1): a real-time worker that never sleeps could starve the node; set it \
                 back to 950000"
                    .to_owned(),
            );
        }
        if schedule.idle == IdleMode::BusyPoll {
            warnings.push(
                "workers.idle: busy-poll with a real-time class holds each worker's core; \
                 other tasks there get only what RT throttling leaves (5%)"
                    .to_owned(),
            );
        }
    }
    Ok(Choice { class, warnings })
}

#[cfg(test)]
mod tests {
    use dataplane::io::thread::SchedPolicy;

    use super::*;
    use crate::node::config::DEFAULT_CLASS;

    fn schedule(explicit: bool, idle: IdleMode) -> WorkerSchedule {
        WorkerSchedule {
            class: DEFAULT_CLASS,
            explicit,
            idle,
        }
    }

    fn refuse_realtime(class: &ThreadScheduling) -> io::Result<()> {
        if class.policy.is_realtime() {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        } else {
            Ok(())
        }
    }

    #[test]
    fn a_granted_class_is_taken() {
        let c = choose(
            &schedule(true, IdleMode::default()),
            |_| Ok(()),
            Some("950000"),
        )
        .unwrap();
        assert_eq!(c.class, Some(DEFAULT_CLASS));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_refused_configured_class_stops_the_start_naming_the_setting() {
        let e = choose(&schedule(true, IdleMode::default()), refuse_realtime, None).unwrap_err();
        assert!(e.starts_with("workers.scheduling:"), "{e}");
        assert!(e.contains("fifo priority 1"), "{e}");
    }

    #[test]
    fn a_refused_default_falls_back_with_a_warning() {
        let c = choose(&schedule(false, IdleMode::default()), refuse_realtime, None).unwrap();
        assert_eq!(c.class, Some(FALLBACK_CLASS));
        assert_eq!(c.class.map(|c| c.policy), Some(SchedPolicy::Other));
        assert!(c.warnings[0].contains("refused"), "{:?}", c.warnings);
        let none = choose(
            &schedule(false, IdleMode::default()),
            |_| Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            None,
        )
        .unwrap();
        assert_eq!(none.class, None);
    }

    #[test]
    fn realtime_without_throttling_or_with_busy_poll_is_warned_about() {
        let c = choose(
            &schedule(true, IdleMode::BusyPoll),
            |_| Ok(()),
            Some("-1\n"),
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("sched_rt_runtime_us"));
        assert!(c.warnings[1].starts_with("workers.idle:"));
    }

    #[test]
    fn the_probe_asks_the_kernel_on_its_own_thread() {
        let bad = ThreadScheduling {
            policy: SchedPolicy::Fifo,
            priority: 100,
            slice_ns: None,
        };
        let e = probe(&bad).unwrap_err();
        assert!(e.to_string().contains("priority 100"), "{e}");
        let before = dataplane::io::thread::current_scheduling().unwrap();
        probe(&FALLBACK_CLASS).unwrap();
        assert_eq!(dataplane::io::thread::current_scheduling().unwrap(), before);
    }
}
