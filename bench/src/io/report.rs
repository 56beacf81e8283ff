//! Trials to numbers: per backend and mode the median, min and max of the delivered packet
//! rate, the pipeline/forward ratio, and the markdown table `io_bench` prints and writes.
//!
//! Invariant: a backend that could not be measured shows its reason, never a number.

use std::fmt::Write as _;
use std::time::Duration;

use super::forwarder::ForwarderCounts;
use super::generator::GeneratorCounts;
use super::{Backend, Mode};

/// The target: the full pipeline reaches at least this share of the raw ceiling.
pub const TARGET_RATIO: f64 = 0.9;
/// A mode whose dataplane read at least this share of the offered frames was limited by the
/// generator, not by the dataplane: its rate is a lower bound of what the dataplane can do.
pub const GENERATOR_BOUND: f64 = 0.99;

/// One measured interval of one mode.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    pub mode: Mode,
    pub generator: GeneratorCounts,
    pub forwarder: ForwarderCounts,
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

impl Trial {
    /// Expected frames counted back at the far end per second of the interval.
    pub fn delivered_pps(&self) -> f64 {
        per_second(self.generator.delivered, self.generator.elapsed)
    }

    /// Frames the generator put on the wire per second of the interval.
    pub fn offered_pps(&self) -> f64 {
        per_second(self.generator.sent, self.generator.elapsed)
    }

    /// Share of every frame the generator sent (warm-up included) that the dataplane read.
    pub fn taken_in(&self) -> f64 {
        let sent = self.generator.sent + self.generator.warmup_sent;
        if sent == 0 {
            return 0.0;
        }
        self.forwarder.received as f64 / sent as f64
    }
}

/// The median, smallest and largest of a set of values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// `None` for no values; the median of an even count is the mean of the middle two.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    Some(Spread { median, min, max })
}

/// One backend's trials, or why it was not measured.
#[derive(Clone, Debug)]
pub struct BackendResult {
    pub backend: Backend,
    pub outcome: Result<Vec<Trial>, String>,
}

impl BackendResult {
    fn trials(&self, mode: Mode) -> impl Iterator<Item = &Trial> {
        self.outcome
            .as_ref()
            .map(|t| t.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(move |t| t.mode == mode)
    }

    /// The delivered-rate spread of `mode`; `None` when not measured.
    pub fn delivered(&self, mode: Mode) -> Option<Spread> {
        spread(
            &self
                .trials(mode)
                .map(Trial::delivered_pps)
                .collect::<Vec<_>>(),
        )
    }

    fn median_of(&self, mode: Mode, f: fn(&Trial) -> f64) -> Option<f64> {
        spread(&self.trials(mode).map(f).collect::<Vec<_>>()).map(|s| s.median)
    }

    /// Median pipeline rate over the median raw forwarding rate of the same path.
    pub fn ratio(&self) -> Option<f64> {
        let forward = self.delivered(Mode::Forward)?.median;
        let pipeline = self.delivered(Mode::Pipeline)?.median;
        (forward > 0.0).then(|| pipeline / forward)
    }

    /// Whether the dataplane read (nearly) every frame offered in `mode` (median trial): then
    /// the generator set the rate, and the dataplane could do at least that.
    pub fn generator_bound(&self, mode: Mode) -> bool {
        self.median_of(mode, Trial::taken_in)
            .is_some_and(|taken| taken >= GENERATOR_BOUND)
    }

    /// The ratio against the target, or why the run cannot decide it.
    pub fn verdict(&self) -> Option<String> {
        let ratio = self.ratio()?;
        let why = match (
            self.generator_bound(Mode::Forward),
            self.generator_bound(Mode::Pipeline),
        ) {
            (false, _) if ratio >= TARGET_RATIO => "meets ≥ 90 %",
            (false, _) => "misses ≥ 90 %",
            (true, false) => "upper bound: forward was generator-bound",
            (true, true) => "inconclusive: both modes generator-bound",
        };
        Some(format!("{} ({why})", percent(ratio)))
    }
}

/// Everything one run measured, with the conditions it ran under.
#[derive(Clone, Debug)]
pub struct Report {
    pub seconds: f64,
    pub repeats: usize,
    /// (generator, dataplane) CPUs; `None` when fewer than two were allowed.
    pub cpus: Option<(usize, usize)>,
    /// Whether RPS moved the receive work of the dataplane's veth ends onto its CPU.
    pub steered: bool,
    pub environment: String,
    pub backends: Vec<BackendResult>,
}

/// `1234567.8` as `1,234,568`.
pub fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let placement = match self.cpus {
            Some((g, d)) if self.steered => format!(
                "generator pinned to cpu {g}, dataplane to cpu {d}, the kernel's receive work \
                 for the dataplane's veth ends steered to cpu {d} (RPS)"
            ),
            Some((g, d)) => format!(
                "generator pinned to cpu {g}, dataplane to cpu {d}, kernel receive work where \
                 the kernel puts it (no RPS)"
            ),
            None => "fewer than 2 CPUs allowed: generator and dataplane unpinned".to_owned(),
        };
        let _ = writeln!(md, "## I/O backends: raw ceiling vs full pipeline\n");
        let _ = writeln!(
            md,
            "Packets per second of 64-byte UDP frames (60 bytes + the FCS that veth/TAP do not \
             carry) counted back at the generator, {} s per trial, {} trial(s) per row; {}. {}\n",
            self.seconds, self.repeats, placement, self.environment
        );
        let _ = writeln!(
            md,
            "| backend | mode | delivered pps (median) | min | max | offered pps | \
             taken in by dataplane | pipeline / forward |"
        );
        let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|");
        for result in &self.backends {
            if let Err(why) = &result.outcome {
                let _ = writeln!(
                    md,
                    "| {} | — | not measured: {} | | | | | |",
                    result.backend.name(),
                    why.replace('|', "/")
                );
                continue;
            }
            for mode in Mode::ALL {
                let Some(delivered) = result.delivered(mode) else {
                    continue;
                };
                let offered = result.median_of(mode, Trial::offered_pps).unwrap_or(0.0);
                let taken = result.median_of(mode, Trial::taken_in).unwrap_or(0.0);
                let ratio = match mode {
                    Mode::Pipeline => result.verdict().unwrap_or_default(),
                    Mode::Reflect | Mode::Forward => String::new(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    result.backend.name(),
                    mode.name(),
                    grouped(delivered.median),
                    grouped(delivered.min),
                    grouped(delivered.max),
                    grouped(offered),
                    percent(taken),
                    ratio
                );
            }
        }
        md.push('\n');
        for result in &self.backends {
            let _ = writeln!(md, "- **{}**: {}", result.backend.name(), details(result));
        }
        md.push('\n');
        md.push_str(METHOD);
        md
    }
}

/// Port settings, pipeline bookkeeping and drops of one backend, from its last trials.
fn details(result: &BackendResult) -> String {
    let trials = match &result.outcome {
        Err(why) => return format!("not measured: {why}"),
        Ok(trials) => trials,
    };
    let mut text = result.backend.setup().to_owned();
    let last = |mode| trials.iter().rev().find(|t| t.mode == mode);
    if let Some(port) = last(Mode::Reflect).and_then(|t| t.forwarder.port.as_deref()) {
        let _ = write!(text, " Dataplane port: {port}.");
    }
    for mode in Mode::ALL {
        let Some(t) = last(mode) else { continue };
        let drops = if t.forwarder.drops.is_empty() {
            "none".to_owned()
        } else {
            let list: Vec<String> = t
                .forwarder
                .drops
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            list.join(", ")
        };
        let _ = write!(
            text,
            " Last {} trial: dataplane read {} and sent {} frames, drops: {drops}",
            mode.name(),
            t.forwarder.received,
            t.forwarder.transmitted
        );
        if mode == Mode::Pipeline {
            let _ = write!(text, "; {} new flows", t.forwarder.new_flows);
        }
        if t.generator.stray > 0 {
            let _ = write!(text, "; {} unexpected frames came back", t.generator.stray);
        }
        text.push('.');
    }
    text
}

const METHOD: &str = "\
How it is measured (`cargo run --release -p bench --bin io_bench`): the generator is one \
AF_PACKET socket (mmap TX ring, qdisc bypass) in its own namespace blasting pre-built frames, \
1024 UDP flows from pod 0 to a ClusterIP, as fast as its core allows; the rate is what a second \
AF_PACKET socket counts back at the far end during the interval, after a warm-up that sends \
each flow once. *reflect* runs `dataplane::io::reflect` on the port (MACs swapped, sent back \
out of the same port): the I/O ceiling of one link. *forward* reads pod 0's port and writes \
pod 1's, MACs swapped, with nothing in between: the raw I/O ceiling of the path the pipeline \
takes, and the reference of the pipeline / forward ratio (sending on a second veth costs the \
sending core the peer's receive work, so a one-link reflector overstates that ceiling). \
*pipeline* runs `dataplane::worker::run` with the \
full pipeline: frames enter on pod 0's port, hit conntrack (each flow was inserted by its \
first packet in the warm-up), are DNATed to the Service's only endpoint, local pod 1, pass \
pod 0's egress policies on the post-DNAT destination and are routed out of pod 1's port, a \
second link; 1,000 other Services and 100 policies are loaded. *offered* is the generator's \
send rate; *taken in* is the share of all frames sent that the dataplane read (the rest the \
kernel dropped before it, ring or queue full). A mode whose dataplane took in at least 99 % \
was *generator-bound*: the generator, not the dataplane, set its rate, so the dataplane can do \
at least that much, and a ratio against a generator-bound forward is only an upper bound. On \
two CPUs the generator (one core, which on veth by default also carries the kernel's delivery \
into the dataplane's port) is about as fast as the reflector; `--steer-rx` moves that delivery \
onto the dataplane's core with RPS (not native XDP, which runs on the sender's core), which \
makes the dataplane the bottleneck at the price of inter-processor interrupts. \
Each row's trials are interleaved with the other modes', so drift from other load on the \
machine hits both alike; the spread between min and max shows how much there was.\n";
