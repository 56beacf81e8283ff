//! The side-by-side comparison of issue 7: the same two-node topology (client pod on node 1,
//! a Service with two backends on node 2, VXLAN between the nodes) built three ways —
//! ferroplane (per pod I/O backend), the kernel path (flannel-style VXLAN + kube-proxy in
//! iptables or nftables mode) and Open vSwitch's userspace datapath — and the same workloads
//! run through each from the client pod, with the load tools on one CPU and the dataplane on
//! the other.
//!
//! Layout: `plan` (names, addresses), `services` (the Service catalog), one module per build
//! (`ferroplane` with `worker_sched`, `kernel` with `kube_iptables` / `kube_nftables`, `ovs`
//! with `ovs_flows`, `testbed_demo` for `--testbed`, shared pieces in `netdevs`), the
//! backends' `servers`, one module per workload (`udp_rate`, `latency`, `crr`, `bulk`), the
//! latency runs' background load (`hogs`), `cpu` accounting, `session` (one dataplane from
//! build to teardown), `stats` and `distribution`, `metrics` (the figures), `report`
//! (markdown, with `machine` and `method`) and `chart` (SVG).
//!
//! The kernel path runs in two configurations ([`KernelRx`]): its receive work steered onto
//! the dataplane CPU with RPS, and as users run it (no RPS, default affinity).
//!
//! Invariants:
//! - Root is checked first. Everything is created in namespaces named `fpcmp-...`; one
//!   topology exists at a time, and it is removed when its dataplane is done, on error and
//!   on panic alike ([`Teardown`]), and before each build (leftovers of a killed run).
//! - Every load loop is bounded in time and in count, and stops early when interrupted.

pub mod bulk;
pub mod chart;
pub mod cpu;
pub mod crr;
pub mod distribution;
pub mod ferroplane;
pub mod hogs;
pub mod kernel;
pub mod kube_iptables;
pub mod kube_nftables;
pub mod latency;
pub mod machine;
pub mod method;
pub mod metrics;
pub mod netdevs;
pub mod ovs;
pub mod ovs_flows;
pub mod plan;
pub mod report;
pub mod servers;
pub mod services;
pub mod session;
pub mod stats;
pub mod testbed_demo;
pub mod udp_rate;
pub mod worker_idle;
pub mod worker_placement;
pub mod worker_sched;

use std::str::FromStr;

use testbed::error::Error;
use testbed::run_state::Io;

use self::kernel::ProxyMode;
use self::worker_idle::WorkerIdle;
use self::worker_placement::Placement;
use self::worker_sched::WorkerSched;

pub use self::session::{Options, run};

pub type Result<T> = testbed::error::Result<T>;

/// Fails unless the process runs as root.
pub fn require_root() -> Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    Err(Error(
        "compare needs root (network namespaces, veths, iptables/nft, OVS, packet sockets): \
         run it with sudo"
            .to_owned(),
    ))
}

/// Removes every namespace, process and file of the comparison when made and when dropped.
pub struct Teardown(());

impl Teardown {
    /// Removes leftovers of an earlier (possibly killed) run first.
    pub fn begin() -> Result<Teardown> {
        testbed::teardown::down(&plan::layout()?)?;
        Ok(Teardown(()))
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Ok(layout) = plan::layout() {
            // Best effort: the run is ending either way, and `begin` of the next build
            // retries what is left.
            let _ = testbed::teardown::down(&layout);
        }
    }
}

/// Where the kernel path's receive work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelRx {
    /// RPS on every device of the node namespaces selects the dataplane CPU (an IPI per
    /// packet; the kernel's work on the same core as the other dataplanes').
    Steered,
    /// No RPS, default affinity: as users run it (the work runs where the packet is sent,
    /// in the sender's softirq).
    Default,
}

impl FromStr for KernelRx {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<KernelRx, String> {
        match text {
            "rps" => Ok(KernelRx::Steered),
            "default" => Ok(KernelRx::Default),
            other => Err(format!("{other:?}: expected rps or default")),
        }
    }
}

/// One dataplane of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataplane {
    /// ferroplane with its pods on `io`; `sched` is `--worker-sched`, `idle` `--worker-idle`
    /// (none: the node's default, nothing written).
    Ferroplane {
        io: Io,
        sched: Option<WorkerSched>,
        idle: Option<WorkerIdle>,
    },
    Kernel {
        mode: ProxyMode,
        rx: KernelRx,
    },
    Ovs,
    /// The testbed's demo cluster as `testbed up` runs it (`--testbed`), with `--worker-idle`'s
    /// idle mode if given and the workers placed as `--testbed-workers` says.
    Testbed(Io, Option<WorkerIdle>, Placement),
}

fn io_key(io: Io) -> &'static str {
    match io {
        Io::AfPacket => "af-packet",
        Io::Tap => "tap",
        Io::AfXdp => "af-xdp",
    }
}

fn io_label(io: Io) -> &'static str {
    match io {
        Io::AfPacket => "AF_PACKET",
        Io::Tap => "TAP",
        Io::AfXdp => "AF_XDP",
    }
}

fn mode_key(mode: ProxyMode) -> &'static str {
    match mode {
        ProxyMode::Iptables => "iptables",
        ProxyMode::Nftables => "nftables",
    }
}

impl Dataplane {
    /// Short name, as in the table's column keys.
    pub fn key(self) -> String {
        match self {
            Dataplane::Ferroplane { io, sched, idle } => {
                let mut key = format!("ferroplane-{}", io_key(io));
                if let Some(s) = sched {
                    key = format!("{key}-{}", s.to_string().replace(':', ""));
                }
                if let Some(i) = idle {
                    key = format!("{key}-{}", i.key());
                }
                key
            }
            Dataplane::Kernel {
                mode,
                rx: KernelRx::Steered,
            } => format!("{}-rps", mode_key(mode)),
            Dataplane::Kernel {
                mode,
                rx: KernelRx::Default,
            } => mode_key(mode).to_owned(),
            Dataplane::Ovs => "ovs".to_owned(),
            Dataplane::Testbed(io, None, at) => {
                format!("testbed-{}{}", io_key(io), at.key_suffix())
            }
            Dataplane::Testbed(io, Some(idle), at) => {
                format!("testbed-{}-{}{}", io_key(io), idle.key(), at.key_suffix())
            }
        }
    }

    /// The column heading.
    pub fn label(self) -> String {
        match self {
            Dataplane::Ferroplane { io, sched, idle } => match workers(sched, idle) {
                None => format!("ferroplane ({} pods)", io_label(io)),
                Some(w) => format!("ferroplane ({} pods, workers {w})", io_label(io)),
            },
            Dataplane::Kernel { mode, rx } => format!(
                "kernel + kube-proxy {} ({})",
                mode_key(mode),
                match rx {
                    KernelRx::Steered => "RPS to the dataplane CPU",
                    KernelRx::Default => "no RPS, as users run it",
                }
            ),
            Dataplane::Ovs => "OVS userspace (netdev)".to_owned(),
            Dataplane::Testbed(io, None, Placement::Default) => {
                format!("testbed demo cluster, ferroplane ({} pods)", io_label(io))
            }
            Dataplane::Testbed(io, None, at) => format!(
                "testbed demo cluster, ferroplane ({} pods, {at})",
                io_label(io)
            ),
            Dataplane::Testbed(io, Some(idle), Placement::Default) => format!(
                "testbed demo cluster, ferroplane ({} pods, workers {idle})",
                io_label(io)
            ),
            Dataplane::Testbed(io, Some(idle), at) => format!(
                "testbed demo cluster, ferroplane ({} pods, {at}, {idle})",
                io_label(io)
            ),
        }
    }

    /// The short name used in ratio headings and on the charts.
    pub fn short(self) -> String {
        match self {
            Dataplane::Ferroplane { io, sched, idle } => match workers(sched, idle) {
                None => format!("fp {}", io_label(io)),
                Some(w) => format!("fp {} {w}", io_label(io)),
            },
            Dataplane::Kernel {
                mode,
                rx: KernelRx::Steered,
            } => format!("{} RPS", mode_key(mode)),
            Dataplane::Kernel {
                mode,
                rx: KernelRx::Default,
            } => mode_key(mode).to_owned(),
            Dataplane::Ovs => "OVS".to_owned(),
            Dataplane::Testbed(io, idle, at) => {
                let mut short = format!("testbed {}", io_label(io));
                if at == Placement::PerCpu {
                    short.push_str(" per-CPU");
                }
                if let Some(idle) = idle {
                    short.push_str(&format!(" {idle}"));
                }
                short
            }
        }
    }

    /// ferroplane, built by the harness or as the testbed runs it.
    pub fn is_ferroplane(self) -> bool {
        matches!(self, Dataplane::Ferroplane { .. } | Dataplane::Testbed(..))
    }

    pub fn is_kernel(self) -> bool {
        matches!(self, Dataplane::Kernel { .. })
    }

    /// Whether the harness steers the nodes' receive work onto the dataplane CPU (RPS).
    pub fn steers_rx(self) -> bool {
        match self {
            Dataplane::Ferroplane { .. } | Dataplane::Ovs => true,
            Dataplane::Kernel { rx, .. } => rx == KernelRx::Steered,
            Dataplane::Testbed(..) => false,
        }
    }
}

/// The workers' settings as the labels name them: `fifo:1`, `busy-poll`, `fifo:1 spin 200us`.
fn workers(sched: Option<WorkerSched>, idle: Option<WorkerIdle>) -> Option<String> {
    match (sched, idle) {
        (None, None) => None,
        (Some(s), None) => Some(s.to_string()),
        (None, Some(i)) => Some(i.to_string()),
        (Some(s), Some(i)) => Some(format!("{s} {i}")),
    }
}

/// What `--only` names: `ferroplane` (every chosen I/O backend), `iptables`, `nftables`,
/// `ovs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ferroplane,
    Iptables,
    Nftables,
    Ovs,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Ferroplane,
        Family::Iptables,
        Family::Nftables,
        Family::Ovs,
    ];
}

impl FromStr for Family {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Family, String> {
        match text {
            "ferroplane" => Ok(Family::Ferroplane),
            "iptables" => Ok(Family::Iptables),
            "nftables" => Ok(Family::Nftables),
            "ovs" => Ok(Family::Ovs),
            other => Err(format!(
                "{other:?}: expected ferroplane, iptables, nftables or ovs"
            )),
        }
    }
}

/// What to measure besides the families: ferroplane's I/O backends and worker policies, the
/// kernel path's receive placements.
#[derive(Clone, Debug, PartialEq)]
pub struct Variants {
    pub ios: Vec<Io>,
    /// Empty: one ferroplane row per backend with the node's default policy.
    pub scheds: Vec<WorkerSched>,
    /// Empty: the node's default idle mode; else a row per policy and idle mode.
    pub idles: Vec<WorkerIdle>,
    /// `--testbed-workers`; empty: the testbed's own placement.
    pub placements: Vec<Placement>,
    pub kernel_rx: Vec<KernelRx>,
}

/// The dataplanes to measure, in order: ferroplane first (per I/O backend, per worker
/// policy, then per idle mode), then the others in `Family::ALL` order (the kernel per receive placement), each
/// at most once.
pub fn dataplanes(families: &[Family], variants: &Variants) -> Vec<Dataplane> {
    let mut out = Vec::new();
    let mut add = |d: Dataplane| {
        if !out.contains(&d) {
            out.push(d);
        }
    };
    let scheds: Vec<Option<WorkerSched>> = if variants.scheds.is_empty() {
        vec![None]
    } else {
        variants.scheds.iter().copied().map(Some).collect()
    };
    let idles: Vec<Option<WorkerIdle>> = if variants.idles.is_empty() {
        vec![None]
    } else {
        variants.idles.iter().copied().map(Some).collect()
    };
    for family in Family::ALL {
        if !families.contains(&family) {
            continue;
        }
        let kernel = |mode| {
            variants
                .kernel_rx
                .iter()
                .map(move |&rx| Dataplane::Kernel { mode, rx })
        };
        match family {
            Family::Ferroplane => {
                for &io in &variants.ios {
                    for &sched in &scheds {
                        for &idle in &idles {
                            add(Dataplane::Ferroplane { io, sched, idle });
                        }
                    }
                }
            }
            Family::Iptables => kernel(ProxyMode::Iptables).for_each(&mut add),
            Family::Nftables => kernel(ProxyMode::Nftables).for_each(&mut add),
            Family::Ovs => add(Dataplane::Ovs),
        }
    }
    out
}

/// `--testbed`: the demo cluster per I/O backend (and idle mode), then the kernel path with
/// iptables per receive placement.
pub fn testbed_dataplanes(variants: &Variants) -> Vec<Dataplane> {
    let mut out: Vec<Dataplane> = Vec::new();
    let idles: Vec<Option<WorkerIdle>> = if variants.idles.is_empty() {
        vec![None]
    } else {
        variants.idles.iter().copied().map(Some).collect()
    };
    let placements = if variants.placements.is_empty() {
        vec![Placement::Default]
    } else {
        variants.placements.clone()
    };
    for &io in &variants.ios {
        for &at in &placements {
            for &idle in &idles {
                if !out.contains(&Dataplane::Testbed(io, idle, at)) {
                    out.push(Dataplane::Testbed(io, idle, at));
                }
            }
        }
    }
    for &rx in &variants.kernel_rx {
        let kernel = Dataplane::Kernel {
            mode: ProxyMode::Iptables,
            rx,
        };
        if !out.contains(&kernel) {
            out.push(kernel);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataplanes_come_in_a_fixed_order_once_each() {
        let variants = Variants {
            ios: vec![Io::Tap, Io::AfPacket, Io::Tap],
            scheds: Vec::new(),
            idles: Vec::new(),
            placements: Vec::new(),
            kernel_rx: vec![KernelRx::Steered, KernelRx::Default],
        };
        let all = dataplanes(
            &[Family::Ovs, Family::Ferroplane, Family::Iptables],
            &variants,
        );
        let keys: Vec<String> = all.iter().map(|d| d.key()).collect();
        assert_eq!(
            keys,
            [
                "ferroplane-tap",
                "ferroplane-af-packet",
                "iptables-rps",
                "iptables",
                "ovs"
            ]
        );
        assert_eq!("nftables".parse::<Family>(), Ok(Family::Nftables));
        assert!("kube-proxy".parse::<Family>().is_err());
        assert_eq!("default".parse::<KernelRx>(), Ok(KernelRx::Default));
        assert!(all[2].steers_rx() && !all[3].steers_rx() && all[0].steers_rx());
    }

    #[test]
    fn every_worker_policy_is_a_ferroplane_row_of_its_own() {
        let variants = Variants {
            ios: vec![Io::Tap],
            scheds: vec![WorkerSched::Other, WorkerSched::Fifo(10)],
            idles: Vec::new(),
            placements: Vec::new(),
            kernel_rx: vec![KernelRx::Default],
        };
        let all = dataplanes(&[Family::Ferroplane, Family::Nftables], &variants);
        let labels: Vec<String> = all.iter().map(|d| d.label()).collect();
        assert_eq!(
            labels,
            [
                "ferroplane (TAP pods, workers other)",
                "ferroplane (TAP pods, workers fifo:10)",
                "kernel + kube-proxy nftables (no RPS, as users run it)"
            ]
        );
        assert_eq!(all[1].key(), "ferroplane-tap-fifo10");
        let testbed = testbed_dataplanes(&variants);
        assert_eq!(
            testbed.iter().map(|d| d.short()).collect::<Vec<_>>(),
            ["testbed TAP", "iptables"]
        );
        assert!(testbed[0].is_ferroplane() && !testbed[0].steers_rx());
    }

    #[test]
    fn every_idle_mode_is_a_row_per_policy() {
        let variants = Variants {
            ios: vec![Io::Tap],
            scheds: vec![WorkerSched::Fifo(1)],
            idles: vec![WorkerIdle::BusyPoll, WorkerIdle::Spin(200)],
            placements: Vec::new(),
            kernel_rx: vec![KernelRx::Default],
        };
        let all = dataplanes(&[Family::Ferroplane], &variants);
        let keys: Vec<String> = all.iter().map(|d| d.key()).collect();
        assert_eq!(
            keys,
            [
                "ferroplane-tap-fifo1-busypoll",
                "ferroplane-tap-fifo1-spin200us"
            ]
        );
        assert_eq!(all[1].short(), "fp TAP fifo:1 spin 200us");
        let testbed = testbed_dataplanes(&variants);
        assert_eq!(
            testbed.iter().map(|d| d.key()).collect::<Vec<_>>(),
            ["testbed-tap-busypoll", "testbed-tap-spin200us", "iptables"]
        );
    }
}
