//! Small-packet UDP through the ClusterIP: a `sendmmsg` generator in the client pod (18-byte
//! payloads, 64-byte frames on the wire, [`FLOWS`] source ports) paced to an offered rate,
//! the backends' sinks counting, and a bounded search for the highest rate delivered with
//! less than [`LOSS_LIMIT`] loss; the busy time of every CPU is sampled over each trial.
//!
//! Invariants: a trial sends for at most its duration and at most `rate x duration` (plus one
//! batch) datagrams, and waits a fixed drain time before counting; the search runs at most
//! `1 + steps` trials; the reported rate is one that passed (or the best delivered rate,
//! flagged, when none did).

use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, sendmmsg};
use testbed::error::{Error, context};
use testbed::netns::within;

use super::Result;
use super::cpu::{self, CpuUse, pin};
use super::plan::Cluster;
use super::servers::Servers;
use super::services::{BENCH_VIP, SINK_PORT};

/// Source ports (flows) the generator spreads over.
pub const FLOWS: usize = 16;
/// The most loss a passing trial may have.
pub const LOSS_LIMIT: f64 = 0.001;
const PAYLOAD: [u8; 18] = *b"ferroplane-compare";
const BATCH: usize = 64;
const DRAIN: Duration = Duration::from_millis(200);
/// Never offer more than this (bounds a trial's count).
const MAX_RATE: f64 = 20e6;

/// How the search runs.
#[derive(Clone, Copy, Debug)]
pub struct SearchPlan {
    pub trial: Duration,
    /// Bisection steps after the first, unpaced trial.
    pub steps: usize,
}

/// One trial.
#[derive(Clone, Debug, Default)]
pub struct Trial {
    /// Offered rate (None: as fast as the generator goes).
    pub offered: Option<f64>,
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
    pub cpu: CpuUse,
}

impl Trial {
    pub fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.seconds.max(1e-9)
    }

    pub fn delivered_rate(&self) -> f64 {
        self.received as f64 / self.seconds.max(1e-9)
    }

    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - (self.received.min(self.sent) as f64 / self.sent as f64)
    }

    pub fn passed(&self) -> bool {
        self.sent > 0 && self.loss() < LOSS_LIMIT
    }

    /// CPU seconds (every CPU) per million delivered packets.
    pub fn cpu_per_million(&self) -> f64 {
        self.per_million(self.cpu.total())
    }

    /// `seconds` of CPU per million delivered packets.
    pub fn per_million(&self, seconds: f64) -> f64 {
        seconds / (self.received.max(1) as f64 / 1e6)
    }
}

/// What a search found.
#[derive(Clone, Debug)]
pub struct SearchResult {
    /// The highest passing trial, if any passed.
    pub best: Option<Trial>,
    /// The unpaced trial: what the generator could offer and what got through then.
    pub unpaced: Trial,
    pub trials: usize,
}

/// The generator's sockets, one per flow, opened in the client pod and connected to the
/// Service's sink port.
pub struct Generator {
    sockets: Vec<UdpSocket>,
}

impl Generator {
    pub fn open(cluster: &Cluster) -> Result<Generator> {
        let target = SocketAddr::from((BENCH_VIP, SINK_PORT));
        let sockets = within(&cluster.client.ns, || {
            (0..FLOWS)
                .map(|_| {
                    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                        .and_then(|s| s.connect(target).map(|()| s))
                        .map_err(context("generator socket"))?;
                    Ok(socket)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(Generator { sockets })
    }

    /// Sends at `rate` (None: unpaced) for `duration`; returns datagrams accepted by the
    /// kernel. Must run on the pinned load thread.
    fn send(&self, rate: Option<f64>, duration: Duration, stop: &AtomicBool) -> u64 {
        let iov = [IoSlice::new(&PAYLOAD)];
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
            (0..BATCH).map(|_| SendAncillaryBuffer::default()).collect();
        let mut messages: Vec<MMsgHdr<'_>> =
            controls.iter_mut().map(|c| MMsgHdr::new(&iov, c)).collect();
        let limit =
            (rate.unwrap_or(MAX_RATE).min(MAX_RATE) * duration.as_secs_f64()) as u64 + BATCH as u64;
        let started = Instant::now();
        let mut sent = 0u64;
        let mut flow = 0usize;
        while sent < limit && !stop.load(Ordering::Relaxed) {
            let elapsed = started.elapsed();
            if elapsed >= duration {
                break;
            }
            let due = match rate {
                Some(rate) => (rate * elapsed.as_secs_f64()) as u64,
                None => sent + BATCH as u64,
            };
            if due <= sent {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            let count = usize::try_from(due - sent).unwrap_or(BATCH).min(BATCH);
            if let Ok(n) = sendmmsg(
                &self.sockets[flow],
                &mut messages[..count],
                SendFlags::empty(),
            ) {
                sent += n as u64;
            }
            flow = (flow + 1) % self.sockets.len();
        }
        sent
    }

    /// One trial at `rate`.
    pub fn trial(
        &self,
        servers: &Servers,
        rate: Option<f64>,
        duration: Duration,
        stop: &AtomicBool,
    ) -> Result<Trial> {
        let before = servers.received();
        let cpu_before = cpu::sample()?;
        let started = Instant::now();
        let sent = self.send(rate, duration, stop);
        let seconds = started.elapsed().as_secs_f64();
        let cpu_after = cpu::sample()?;
        std::thread::sleep(DRAIN);
        Ok(Trial {
            offered: rate,
            sent,
            received: servers.received().saturating_sub(before),
            seconds,
            cpu: cpu::between(&cpu_before, &cpu_after),
        })
    }
}

/// Warms every flow up (conntrack entries, neighbour entries), then searches for the highest
/// passing rate. Runs on a thread pinned to `cpu`.
pub fn search(
    cluster: &Cluster,
    servers: &Servers,
    plan: SearchPlan,
    cpu: usize,
    stop: &AtomicBool,
) -> Result<SearchResult> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                pin(cpu)?;
                let generator = Generator::open(cluster)?;
                generator.trial(servers, Some(2_000.0), Duration::from_millis(100), stop)?;
                run_search(&generator, servers, plan, stop)
            })
            .join()
            .map_err(|_| Error("the UDP generator thread panicked".to_owned()))?
    })
}

fn run_search(
    generator: &Generator,
    servers: &Servers,
    plan: SearchPlan,
    stop: &AtomicBool,
) -> Result<SearchResult> {
    let unpaced = generator.trial(servers, None, plan.trial, stop)?;
    let mut best: Option<Trial> = None;
    let mut trials = 1;
    // The rate that got through unpaced is the first guess; bisect between a rate known
    // to pass (lo) and one known to fail (hi).
    let mut lo = 0.0;
    let mut hi = unpaced.sent_rate().max(1.0);
    if unpaced.passed() {
        best = Some(unpaced.clone());
        lo = hi;
    }
    let mut rate = unpaced.delivered_rate().clamp(1.0, hi);
    for _ in 0..plan.steps {
        if stop.load(Ordering::Relaxed) || lo >= hi {
            break;
        }
        let trial = generator.trial(servers, Some(rate), plan.trial, stop)?;
        trials += 1;
        if trial.passed() {
            lo = rate;
            if best
                .as_ref()
                .is_none_or(|b| trial.delivered_rate() > b.delivered_rate())
            {
                best = Some(trial);
            }
        } else {
            hi = rate;
        }
        rate = (lo + hi) / 2.0;
    }
    Ok(SearchResult {
        best,
        unpaced,
        trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_passes_below_one_in_a_thousand_lost() {
        let trial = |sent, received| Trial {
            sent,
            received,
            seconds: 1.0,
            ..Trial::default()
        };
        assert!(trial(100_000, 99_901).passed());
        assert!(!trial(100_000, 99_900).passed());
        assert!(!trial(0, 0).passed());
        // Duplicates never make loss negative.
        assert_eq!(trial(10, 12).loss(), 0.0);
        assert_eq!(trial(1000, 500).delivered_rate(), 500.0);
    }

    #[test]
    fn cpu_per_million_packets_divides_every_share_by_delivered() {
        let trial = Trial {
            received: 2_000_000,
            cpu: CpuUse(vec![0.5, 1.5]),
            ..Trial::default()
        };
        assert_eq!(trial.cpu_per_million(), 1.0);
        assert_eq!(trial.per_million(trial.cpu.on(1)), 0.75);
    }
}
