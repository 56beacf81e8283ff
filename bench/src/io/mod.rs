//! The I/O benchmark of issue 4: for each backend, the raw I/O ceilings (a one-link reflector,
//! and a plain forwarder over the two links the pipeline uses) beside the full pipeline end to
//! end, in packets per second of 64-byte UDP, in one run, with the pipeline/forward ratio
//! against the 90 % target.
//!
//! One trial: a topology of links in namespaces made here (`topology`, `netns`), a dataplane
//! thread pinned to the second allowed CPU (`forwarder`), then a generator thread pinned to
//! the first (`generator`) that sends for the interval and counts what comes back; the
//! frames and tables are in `scenario`, the table in `report`. Per backend the modes are
//! interleaved, `repeats` times each.
//!
//! Invariants:
//! - Root is checked first; nothing is created in the caller's network namespace, and every
//!   namespace made is deleted when its backend is done (error and panic included).
//! - A trial is bounded: setup waits at most `READY_TIMEOUT`, the generator stops after its
//!   interval (or `max_frames`, or `interrupted`), and the dataplane thread stops when the
//!   generator thread ends, however it ends.
//! - A backend whose setup or trial fails is reported with its reason instead of a number,
//!   and the other backends still run.

mod forwarder;
mod generator;
mod netns;
mod report;
mod scenario;
mod topology;

use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use dataplane::io::af_packet::AfPacketPort;
use dataplane::io::af_xdp::AfXdpPort;
use dataplane::io::tap::TapQueue;
use dataplane::io::thread::allowed_cpus;

pub use self::forwarder::ForwarderCounts;
pub use self::generator::GeneratorCounts;
pub use self::netns::{PREFIX, require_root};
pub use self::report::{BackendResult, Report, Spread, TARGET_RATIO, Trial, spread};
pub use self::scenario::FLOWS;

use self::forwarder::{BenchPort, forward_side, pipeline_side, reflect_side};
use self::generator::{Load, generate};
use self::scenario::Expect;
use self::topology::Topology;

/// How long the dataplane side may take to open its ports.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// A ceiling on the generator's send rate, to bound each interval by count as well as time.
const MAX_RATE_PPS: f64 = 100e6;
/// The longest interval accepted.
pub const MAX_SECONDS: f64 = 60.0;

/// An I/O backend of the dataplane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    AfPacket,
    Tap,
    AfXdp,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::AfPacket, Backend::Tap, Backend::AfXdp];

    pub fn name(self) -> &'static str {
        match self {
            Backend::AfPacket => "af-packet",
            Backend::Tap => "tap",
            Backend::AfXdp => "af-xdp",
        }
    }

    /// The links it is measured over, in words.
    pub fn setup(self) -> &'static str {
        match self {
            Backend::AfPacket => "Two veth pairs; the dataplane opens AF_PACKET ports on its ends.",
            Backend::AfXdp => {
                "Two veth pairs; the dataplane opens AF_XDP ports (default settings) on its \
                 ends, the generator stays on AF_PACKET."
            }
            Backend::Tap => {
                "Two TAPs (not veth: a TAP has no peer link); the dataplane owns one queue of \
                 each, the generator is the kernel side of the TAP, driven by AF_PACKET \
                 sockets bound to the TAP interfaces."
            }
        }
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backend {s:?}: expected af-packet, tap or af-xdp"))
    }
}

/// What runs on the dataplane side of a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `dataplane::io::reflect` on one port: the I/O ceiling of one link.
    Reflect,
    /// In on one port, out on another, MACs swapped, no pipeline: the raw I/O ceiling of the
    /// path the pipeline takes, the reference for the 90 % target.
    Forward,
    /// A worker with the full pipeline, in on one port, out on another.
    Pipeline,
}

impl Mode {
    /// In the order a round of trials runs them.
    pub const ALL: [Mode; 3] = [Mode::Reflect, Mode::Forward, Mode::Pipeline];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Reflect => "reflect",
            Mode::Forward => "forward",
            Mode::Pipeline => "pipeline",
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Length of each measured interval, in seconds (0 < seconds <= `MAX_SECONDS`).
    pub seconds: f64,
    pub backends: Vec<Backend>,
    /// Trials per backend and mode.
    pub repeats: usize,
    /// Steer the kernel's receive work for the dataplane's veth ends onto the dataplane's CPU
    /// (RPS), so the generator's core only sends (see `topology`).
    pub steer_rx: bool,
}

/// The CPUs for the generator and the dataplane: the first two allowed, if there are two.
fn placement() -> io::Result<Option<(usize, usize)>> {
    let cpus = allowed_cpus()?;
    Ok(match cpus.as_slice() {
        [generator, dataplane, ..] => Some((*generator, *dataplane)),
        _ => None,
    })
}

fn environment() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let online = allowed_cpus().map(|c| c.len()).unwrap_or(0);
    format!(
        "Linux {}, {model}, {online} CPU(s) allowed to this process.",
        kernel.trim()
    )
}

/// Measures every backend of `options`; `interrupted` (e.g. set by SIGINT) cuts the run
/// short, cleanly, with an error.
pub fn run(options: &Options, interrupted: &AtomicBool) -> io::Result<Report> {
    require_root()?;
    if !(options.seconds > 0.0 && options.seconds <= MAX_SECONDS) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--seconds must be in (0, {MAX_SECONDS}]"),
        ));
    }
    if options.repeats == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--repeats must be at least 1",
        ));
    }
    let cpus = placement()?;
    let snapshot = scenario::snapshot();
    let frames = scenario::frames(&snapshot);
    drop(snapshot);
    let mut backends = Vec::new();
    for &backend in &options.backends {
        let outcome = measure(backend, options, cpus, &frames, interrupted);
        if interrupted.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        backends.push(BackendResult {
            backend,
            outcome: outcome.map_err(|e| e.to_string()),
        });
    }
    Ok(Report {
        seconds: options.seconds,
        repeats: options.repeats,
        cpus,
        steered: options.steer_rx && cpus.is_some(),
        environment: environment(),
        backends,
    })
}

/// All trials of one backend on one topology, modes interleaved.
fn measure(
    backend: Backend,
    options: &Options,
    cpus: Option<(usize, usize)>,
    frames: &[Vec<u8>],
    interrupted: &AtomicBool,
) -> io::Result<Vec<Trial>> {
    let topology = match backend {
        Backend::Tap => Topology::tap()?,
        Backend::AfPacket | Backend::AfXdp => {
            Topology::veth(cpus.filter(|_| options.steer_rx).map(|c| c.1))?
        }
    };
    let mut trials = Vec::new();
    for _ in 0..options.repeats {
        for mode in Mode::ALL {
            let load = Load {
                frames,
                expect: match mode {
                    Mode::Reflect | Mode::Forward => Expect::reflected(),
                    Mode::Pipeline => Expect::forwarded(),
                },
                duration: Duration::from_secs_f64(options.seconds),
                max_frames: (options.seconds * MAX_RATE_PPS) as u64,
            };
            let trial = match backend {
                Backend::AfPacket => {
                    trial::<AfPacketPort>(&topology, mode, &load, cpus, interrupted)
                }
                Backend::Tap => trial::<TapQueue>(&topology, mode, &load, cpus, interrupted),
                Backend::AfXdp => trial::<AfXdpPort>(&topology, mode, &load, cpus, interrupted),
            }?;
            trials.push(trial);
            if interrupted.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
        }
    }
    Ok(trials)
}

/// Sets `stop` when dropped: the dataplane side ends with the generator, even on a panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One measured interval of `mode` with backend `P`.
fn trial<P: BenchPort>(
    topology: &Topology,
    mode: Mode,
    load: &Load<'_>,
    cpus: Option<(usize, usize)>,
    interrupted: &AtomicBool,
) -> io::Result<Trial> {
    let stop = AtomicBool::new(false);
    let (ready_tx, ready) = mpsc::sync_channel(1);
    let (gen_cpu, dp_cpu) = (cpus.map(|c| c.0), cpus.map(|c| c.1));
    let (a, b) = (topology.a, topology.b);
    std::thread::scope(|scope| {
        let dataplane = scope.spawn(|| {
            topology.dataplane_ns().enter_current_thread()?;
            match mode {
                Mode::Reflect => reflect_side::<P>(a.dataplane, dp_cpu, &stop, ready_tx),
                Mode::Forward => {
                    forward_side::<P>(a.dataplane, b.dataplane, dp_cpu, &stop, ready_tx)
                }
                Mode::Pipeline => {
                    pipeline_side::<P>(a.dataplane, b.dataplane, dp_cpu, &stop, ready_tx)
                }
            }
        });
        let generator = ready.recv_timeout(READY_TIMEOUT).ok().map(|()| {
            scope.spawn(|| {
                let _stop = StopOnDrop(&stop);
                topology.generator_ns().enter_current_thread()?;
                if let Some(cpu) = gen_cpu {
                    dataplane::io::thread::pin_current_thread(cpu)?;
                }
                let counter = match mode {
                    Mode::Reflect => None,
                    Mode::Forward | Mode::Pipeline => Some(b.generator),
                };
                generate(a.generator, counter, load, interrupted)
            })
        });
        // Without a generator (the dataplane side failed or hung in setup) nothing else
        // would ever stop the dataplane side.
        if generator.is_none() {
            stop.store(true, Ordering::Relaxed);
        }
        let generated =
            generator.map(|g| g.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        stop.store(true, Ordering::Relaxed);
        let forwarded = dataplane
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        let generated = generated.unwrap_or_else(|| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the {} dataplane side did not get ready", mode.name()),
            ))
        })?;
        Ok(Trial {
            mode,
            generator: generated,
            forwarder: forwarded,
        })
    })
}

#[cfg(test)]
mod tests;
