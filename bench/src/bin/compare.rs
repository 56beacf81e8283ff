//! `compare`: ferroplane beside the kernel path (flannel-style VXLAN + kube-proxy in iptables
//! and nftables mode, with and without receive steering) and Open vSwitch's userspace
//! datapath, on the same two-node topology in network namespaces and the same CPUs; writes
//! `bench/results/compare.md`, `compare.svg` and `compare-latency.svg`. With `--testbed`, the
//! testbed's demo cluster beside the kernel path, latency and bulk TCP (`compare-testbed.md`,
//! `compare-testbed-latency.svg`). Needs root.
//!
//! SIGINT/SIGTERM stop the run at the next bound and remove every namespace (nothing is
//! written). The testbed library starts its helpers (the internet host's server, the cloud
//! load balancer) by running the current executable as `testbed` would be run
//! (`compare netexec ...`, `compare cloud-lb ...`); those are served here, and so are the
//! latency runs' background hogs (`compare hog ...`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bench::compare::cpu::{PodsCpu, set_pods_cpu};
use bench::compare::hogs::spin;
use bench::compare::worker_idle::WorkerIdle;
use bench::compare::worker_placement::Placement;
use bench::compare::worker_sched::WorkerSched;
use bench::compare::{
    Dataplane, Family, KernelRx, Options, Variants, chart, dataplanes, require_root, run,
    testbed_dataplanes,
};
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use testbed::run_state::Io;

/// ferroplane vs kernel (kube-proxy iptables / nftables) vs OVS userspace, side by side
/// (needs root).
///
/// Builds the same topology for each dataplane in turn (client pod on node 1, a Service with
/// two backends on node 2, VXLAN between the nodes), runs the workloads from the client pod
/// with the load tools on one CPU and the dataplane on the other, and writes a markdown table
/// (median, min, max over the runs; ferroplane's ratios to the others) and an SVG chart.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Runs per figure (default 5, or 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// A short smoke run: shorter trials and fewer samples.
    #[arg(long)]
    quick: bool,
    /// Dataplanes, comma separated: ferroplane, iptables, nftables, ovs.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ferroplane,iptables,nftables,ovs"
    )]
    only: Vec<Family>,
    /// ferroplane's pod I/O backends to measure, comma separated: af-packet, tap, af-xdp
    /// (default all three; tap with --testbed).
    #[arg(long, value_enum, value_delimiter = ',')]
    io: Option<Vec<Io>>,
    /// ferroplane's workers' scheduling policy, written into the node configuration as
    /// `workers.scheduling`: other, fifo:PRIORITY or rr:PRIORITY; repeat (or separate by
    /// commas) for a ferroplane row per policy. None: the node's default, nothing written.
    #[arg(long, value_delimiter = ',')]
    worker_sched: Vec<WorkerSched>,
    /// ferroplane's workers' idle mode, written into the node configuration as
    /// `workers.idle` (and `workers.spin`): busy-poll, spin:MICROSECONDS (adaptive) or
    /// keep-warm:MICROSECONDS (sleep at once, a SCHED_IDLE companion keeps the CPU warm); repeat
    /// (or separate by commas) for a ferroplane row per mode and policy. None: the node's
    /// default, nothing written.
    #[arg(long, value_delimiter = ',')]
    worker_idle: Vec<WorkerIdle>,
    /// With --testbed, where the nodes' workers run, comma separated: default (the testbed's
    /// one worker, not pinned), per-cpu (`workers.perCpu: true`: a worker pinned on each CPU,
    /// frames steered to the sending CPU's worker); a row per placement and idle mode.
    #[arg(long, value_delimiter = ',')]
    testbed_workers: Vec<Placement>,
    /// Where the client and the servers in the pods run: pinned (on the load CPU, the
    /// default) or any (the process's affinity, as an unpinned pod).
    #[arg(long, default_value = "pinned")]
    pods_cpu: PodsCpu,
    /// The latency workloads alone (request/response and connection setup under each
    /// background load): no rate search, connection rate, bulk or Service-count sweep.
    #[arg(long)]
    latency_only: bool,
    /// The kernel path's receive placements, comma separated: rps (steered onto the
    /// dataplane CPU), default (no RPS, as users run it).
    #[arg(long, value_delimiter = ',', default_value = "rps,default")]
    kernel_rx: Vec<KernelRx>,
    /// The testbed's demo cluster (pods on --io, default tap) beside the kernel path with
    /// iptables: request/response and connection-setup latency, and bulk TCP.
    #[arg(long)]
    testbed: bool,
    /// The ferroplane binary (default: built by `cargo build --release -p control` when run
    /// through cargo, else the one beside this executable, else PATH's).
    #[arg(long, env = "FERROPLANE_BIN")]
    ferroplane: Option<PathBuf>,
    /// Where compare.md and compare.svg go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out_dir: PathBuf,
}

/// The helpers the testbed library starts by running the current executable, with the
/// arguments the `testbed` binary takes for them.
#[derive(Parser, Debug)]
enum TestbedHelper {
    Netexec {
        #[arg(long)]
        name: String,
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
    },
    CloudLb {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<std::net::Ipv4Addr>,
    },
    Hog {
        #[arg(long)]
        cpu: usize,
        #[arg(long)]
        nice: i32,
        #[arg(long)]
        seconds: u64,
        #[arg(long)]
        parent: u32,
    },
}

fn main() -> ExitCode {
    if matches!(
        std::env::args().nth(1).as_deref(),
        Some("netexec" | "cloud-lb" | "hog")
    ) {
        let served = match TestbedHelper::parse_from(std::env::args()) {
            TestbedHelper::Netexec { name, ports } => testbed::netexec::serve(&name, &ports),
            TestbedHelper::CloudLb { state_dir, nodes } => {
                testbed::cloud_lb::balancer::serve(&state_dir, &nodes, &[])
            }
            TestbedHelper::Hog {
                cpu,
                nice,
                seconds,
                parent,
            } => spin(cpu, nice, std::time::Duration::from_secs(seconds), parent),
        };
        return match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.0),
        };
    }
    let args = Args::parse();
    if let Err(e) = require_root() {
        return fail(&e.0);
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&interrupted)) {
            return fail(&format!("cannot watch signal {signal}: {e}"));
        }
    }
    let variants = Variants {
        ios: args.io.clone().unwrap_or_else(|| {
            if args.testbed {
                vec![Io::Tap]
            } else {
                vec![Io::AfPacket, Io::Tap, Io::AfXdp]
            }
        }),
        scheds: args.worker_sched.clone(),
        idles: args.worker_idle.clone(),
        placements: args.testbed_workers.clone(),
        kernel_rx: args.kernel_rx.clone(),
    };
    let chosen = if args.testbed {
        testbed_dataplanes(&variants)
    } else {
        dataplanes(&args.only, &variants)
    };
    let hog_program = match std::env::current_exe() {
        Ok(path) => path,
        Err(e) => return fail(&format!("finding this executable (for the hogs): {e}")),
    };
    let ferroplane = if chosen.iter().any(|d| d.is_ferroplane()) {
        match ferroplane_binary(args.ferroplane.as_deref()) {
            Ok(path) => path,
            Err(e) => return fail(&e),
        }
    } else {
        PathBuf::new()
    };
    set_pods_cpu(args.pods_cpu);
    let cpus = match dataplane::io::thread::allowed_cpus() {
        Ok(cpus) if cpus.len() >= 2 => cpus,
        Ok(cpus) => return fail(&format!("needs two CPUs, this process may use {cpus:?}")),
        Err(e) => return fail(&format!("reading the allowed CPUs: {e}")),
    };
    let options = Options {
        runs: args
            .runs
            .unwrap_or(if args.quick { 1 } else { 5 })
            .clamp(1, 50),
        quick: args.quick,
        dataplanes: chosen,
        ferroplane,
        load_cpu: cpus[0],
        dataplane_cpu: cpus[1],
        // The demo cluster's nodes run on every CPU (default affinity): hogs on all of them.
        hog_cpus: if args.testbed {
            cpus.clone()
        } else {
            vec![cpus[1]]
        },
        hog_program,
        testbed: args.testbed,
        latency_only: args.latency_only,
    };
    let comparison = match run(&options, &interrupted) {
        Ok(c) => c,
        Err(e) => return fail(&e.0),
    };
    let markdown = comparison.to_markdown();
    print!("{markdown}");
    let stem = if args.testbed {
        "compare-testbed"
    } else {
        "compare"
    };
    let mut files = vec![(format!("{stem}.md"), markdown)];
    match chart::latency_svg(&comparison) {
        Ok(svg) => files.push((format!("{stem}-latency.svg"), svg)),
        Err(e) => return fail(&e.0),
    }
    if !args.testbed {
        match chart::svg(&comparison) {
            Ok(svg) => files.push((format!("{stem}.svg"), svg)),
            Err(e) => return fail(&e.0),
        }
    }
    if let Err(e) = std::fs::create_dir_all(&args.out_dir) {
        return fail(&format!("creating {}: {e}", args.out_dir.display()));
    }
    for (name, text) in &files {
        if let Err(e) = std::fs::write(args.out_dir.join(name), text) {
            return fail(&format!("writing {name}: {e}"));
        }
    }
    let failed: Vec<Dataplane> = comparison
        .results
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.dataplane)
        .collect();
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    eprintln!(
        "compare: wrote {} in {}",
        names.join(", "),
        args.out_dir.display()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        fail(&format!("{} dataplane(s) failed: {failed:?}", failed.len()))
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("compare: {message}");
    ExitCode::FAILURE
}

/// The ferroplane binary: `explicit`, else built by the cargo running us (same profile and
/// target directory's `release/`), else the testbed's search.
fn ferroplane_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Ok(cargo) = std::env::var("CARGO") {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        eprintln!("compare: building ferroplane (cargo build --release -p control)");
        let mut build = Command::new(cargo);
        build
            .args(["build", "--release", "-p", "control", "--bin", "ferroplane"])
            .args(["--manifest-path", manifest]);
        // `cargo run` describes this package in the environment; build scripts that watch
        // those variables would see a change and rebuild everything: leave them out.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || matches!(
                    key.as_ref(),
                    "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
                )
            {
                build.env_remove(key.as_ref());
            }
        }
        let status = build.status().map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building ferroplane failed ({status})"));
        }
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("release").join("ferroplane")))
        .filter(|path| path.is_file());
    Ok(beside.unwrap_or_else(|| testbed::cluster::locate_ferroplane(None)))
}
