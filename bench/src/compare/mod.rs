//! The side-by-side comparison of issue 7: the same two-node topology (client pod on node 1,
//! a Service with two backends on node 2, VXLAN between the nodes) built three ways —
//! ferroplane (per pod I/O backend), the kernel path (flannel-style VXLAN + kube-proxy in
//! iptables or nftables mode) and Open vSwitch's userspace datapath — and the same workloads
//! run through each from the client pod, with the load tools on one CPU and the dataplane on
//! the other.
//!
//! Layout: `plan` (names, addresses), `services` (the Service catalog), one module per build
//! (`ferroplane`, `kernel` with `kube_iptables` / `kube_nftables`, `ovs` with `ovs_flows`,
//! shared pieces in `netdevs`), the backends' `servers`, one module per workload
//! (`udp_rate`, `latency`, `crr`, `bulk`), `cpu` accounting, `session` (one dataplane from
//! build to teardown), `stats`, `metrics` (the figures), `report` (markdown, with `machine`
//! and `method`) and `chart` (SVG).
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
pub mod ferroplane;
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
pub mod udp_rate;

use std::str::FromStr;

use testbed::error::Error;
use testbed::run_state::Io;

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

/// One dataplane of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataplane {
    Ferroplane(Io),
    Iptables,
    Nftables,
    Ovs,
}

impl Dataplane {
    /// Short name, as in `--only` and the table's column keys.
    pub fn key(self) -> &'static str {
        match self {
            Dataplane::Ferroplane(Io::AfPacket) => "ferroplane-af-packet",
            Dataplane::Ferroplane(Io::Tap) => "ferroplane-tap",
            Dataplane::Ferroplane(Io::AfXdp) => "ferroplane-af-xdp",
            Dataplane::Iptables => "iptables",
            Dataplane::Nftables => "nftables",
            Dataplane::Ovs => "ovs",
        }
    }

    /// The column heading.
    pub fn label(self) -> &'static str {
        match self {
            Dataplane::Ferroplane(Io::AfPacket) => "ferroplane (AF_PACKET pods)",
            Dataplane::Ferroplane(Io::Tap) => "ferroplane (TAP pods)",
            Dataplane::Ferroplane(Io::AfXdp) => "ferroplane (AF_XDP pods)",
            Dataplane::Iptables => "kernel + kube-proxy iptables",
            Dataplane::Nftables => "kernel + kube-proxy nftables",
            Dataplane::Ovs => "OVS userspace (netdev)",
        }
    }

    pub fn is_ferroplane(self) -> bool {
        matches!(self, Dataplane::Ferroplane(_))
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

/// The dataplanes to measure, in order: ferroplane first (one per I/O backend), then the
/// others in `Family::ALL` order, each at most once.
pub fn dataplanes(families: &[Family], ios: &[Io]) -> Vec<Dataplane> {
    let mut out = Vec::new();
    for family in Family::ALL {
        if !families.contains(&family) {
            continue;
        }
        match family {
            Family::Ferroplane => {
                for &io in ios {
                    if !out.contains(&Dataplane::Ferroplane(io)) {
                        out.push(Dataplane::Ferroplane(io));
                    }
                }
            }
            Family::Iptables => out.push(Dataplane::Iptables),
            Family::Nftables => out.push(Dataplane::Nftables),
            Family::Ovs => out.push(Dataplane::Ovs),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataplanes_come_in_a_fixed_order_once_each() {
        let all = dataplanes(
            &[Family::Ovs, Family::Ferroplane, Family::Iptables],
            &[Io::Tap, Io::AfPacket, Io::Tap],
        );
        assert_eq!(
            all,
            [
                Dataplane::Ferroplane(Io::Tap),
                Dataplane::Ferroplane(Io::AfPacket),
                Dataplane::Iptables,
                Dataplane::Ovs
            ]
        );
        assert_eq!("nftables".parse::<Family>(), Ok(Family::Nftables));
        assert!("kube-proxy".parse::<Family>().is_err());
    }
}
