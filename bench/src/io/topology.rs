//! The links one backend is measured over: two paths, A (frames in) and B (frames out of the
//! pipeline), each with a generator end and a dataplane end.
//!
//! - veth (AF_PACKET, AF_XDP): a generator namespace holding `gen-a`/`gen-b` and a dataplane
//!   namespace holding their veth peers `dp-a`/`dp-b`.
//! - TAP: one namespace holding the persistent TAPs `tap-a`/`tap-b`. The dataplane owns a
//!   queue of each; the generator is the kernel behind them, driven by a packet socket bound
//!   to the TAP's interface. A TAP queue can only be attached from the namespace holding the
//!   device, so the dataplane thread opens its queues there (where it runs does not matter
//!   to a TAP descriptor).
//!
//! By default the kernel delivers a frame sent into a veth on the sender's CPU, so the
//! generator's core also pays for the delivery into the dataplane's port; `steer_to` (RPS on
//! the dataplane's ends) moves that work onto the dataplane's core instead. It does not move
//! native XDP, which runs in the veth's NAPI on the sender's CPU.
//!
//! Invariant: every link lives in a namespace owned here; dropping the topology deletes the
//! namespaces and with them every link (persistent TAPs included).

use std::io;

use dataplane::io::netdev;
use dataplane::io::tap::TapQueue;

use super::netns::Netns;

/// One path through the dataplane: the interface the generator uses and the one the
/// dataplane opens its port on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    pub generator: &'static str,
    pub dataplane: &'static str,
}

pub struct Topology {
    /// Holds the generator's interfaces; declared first, so dropped before `dataplane`.
    generator: Netns,
    /// `None` when the dataplane opens its ports in the generator's namespace (TAP).
    dataplane: Option<Netns>,
    pub a: Path,
    pub b: Path,
}

impl Topology {
    /// Two veth pairs between a generator and a dataplane namespace, all ends up. With
    /// `steer_to`, RPS moves the kernel's receive work for the dataplane's ends onto that CPU.
    pub fn veth(steer_to: Option<usize>) -> io::Result<Self> {
        let generator = Netns::create()?;
        let dataplane = Netns::create()?;
        let a = Path {
            generator: "gen-a",
            dataplane: "dp-a",
        };
        let b = Path {
            generator: "gen-b",
            dataplane: "dp-b",
        };
        for path in [a, b] {
            generator.ip(&[
                "link",
                "add",
                path.generator,
                "type",
                "veth",
                "peer",
                "name",
                path.dataplane,
                "netns",
                dataplane.name(),
            ])?;
            generator.ip(&["link", "set", path.generator, "up"])?;
            dataplane.ip(&["link", "set", path.dataplane, "up"])?;
            if let Some(cpu) = steer_to {
                let knob = format!("/sys/class/net/{}/queues/rx-0/rps_cpus", path.dataplane);
                dataplane.write_sysfs(&knob, &cpu_mask(cpu))?;
            }
        }
        Ok(Self {
            generator,
            dataplane: Some(dataplane),
            a,
            b,
        })
    }

    /// Two persistent multi-queue TAPs (vnet header, as the dataplane opens them), up.
    pub fn tap() -> io::Result<Self> {
        let generator = Netns::create()?;
        let a = Path {
            generator: "tap-a",
            dataplane: "tap-a",
        };
        let b = Path {
            generator: "tap-b",
            dataplane: "tap-b",
        };
        generator.run(|| {
            for path in [a, b] {
                let queue = TapQueue::open(path.dataplane)?;
                queue.set_persistent(true)?;
                netdev::set_up(path.dataplane)?;
            }
            Ok(())
        })?;
        Ok(Self {
            generator,
            dataplane: None,
            a,
            b,
        })
    }

    pub fn generator_ns(&self) -> &Netns {
        &self.generator
    }

    /// Where the dataplane thread opens its ports.
    pub fn dataplane_ns(&self) -> &Netns {
        self.dataplane.as_ref().unwrap_or(&self.generator)
    }
}

/// The `rps_cpus` mask selecting `cpu` alone: hex words of 32 CPUs, most significant first,
/// separated by commas (`1` -> `2`, `33` -> `2,00000000`).
pub fn cpu_mask(cpu: usize) -> String {
    let word = cpu / 32;
    let mut mask = format!("{:x}", 1u32 << (cpu % 32));
    for _ in 0..word {
        mask.push_str(",00000000");
    }
    mask
}
