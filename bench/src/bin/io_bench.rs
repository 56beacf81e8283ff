//! `io_bench`: the raw I/O ceilings (reflector, plain forwarder) beside the full pipeline,
//! per backend, in packets per second of 64-byte UDP over links in namespaces it makes and
//! removes itself.
//! Needs root. Prints the markdown table and writes it to `--out`.
//!
//! SIGINT/SIGTERM end the run early and cleanly (namespaces deleted, nothing written).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bench::io::{Backend, Options, run};
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Raw I/O ceiling vs full pipeline, per I/O backend (needs root).
///
/// For each backend: a generator in its own network namespace blasts 64-byte UDP frames
/// (1024 flows) over veth pairs (TAPs for the TAP backend) into a dataplane thread that
/// reflects them on one link, forwards them unchanged to a second link (the raw ceiling of the
/// pipeline's path), or runs the full pipeline (pod -> ClusterIP -> local pod: conntrack, DNAT,
/// policy, routing, out of the second link); the generator counts what comes back. Generator and dataplane are pinned to the first two allowed CPUs.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Length of each measured interval, in seconds (at most 60).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Backends to measure, comma separated: af-packet, tap, af-xdp.
    #[arg(long, value_delimiter = ',', default_value = "af-packet,tap,af-xdp")]
    backends: Vec<Backend>,
    /// Trials per backend and mode (the table shows median, min and max).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Steer the kernel's receive work for the dataplane's veth ends onto the dataplane's CPU
    /// (RPS), so the generator's core only sends: on a 2-CPU machine this makes the dataplane,
    /// not the generator, the bottleneck. No effect on TAP or on native XDP.
    #[arg(long)]
    steer_rx: bool,
    /// Where to write the markdown table (parent directories are created).
    #[arg(long, default_value = "bench/results/io.md")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        if let Err(err) = signal_hook::flag::register(signal, Arc::clone(&interrupted)) {
            eprintln!("io_bench: cannot watch signal {signal}: {err}");
            return ExitCode::FAILURE;
        }
    }
    let options = Options {
        seconds: args.seconds,
        backends: args.backends,
        repeats: args.repeats,
        steer_rx: args.steer_rx,
    };
    let report = match run(&options, &interrupted) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("io_bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    let markdown = report.to_markdown();
    print!("{markdown}");
    let written = args
        .out
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&args.out, &markdown));
    if let Err(err) = written {
        eprintln!("io_bench: writing {}: {err}", args.out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("io_bench: table written to {}", args.out.display());
    ExitCode::SUCCESS
}
