//! The `ferroplane` command line: kubectl-like verbs over the state directory
//! (`init`, `apply`, `get`, `delete`) and `trace`. Parsing lives here; each verb is its own module.
//! `run` starts the node process; `stats`, `conntrack`, `monitor` and `capture` talk to a running
//! one over its admin socket.
//!
//! Conventions: results go to standard output, diagnostics (per-object errors, `created` /
//! `configured` lines next to YAML output, warnings) to standard error; the exit status is 0
//! only when every object was accepted.

mod admin_client;
mod admin_remote;
mod apply;
mod delete;
mod dns;
mod get;
mod init;
mod observe;
mod output;
mod run;
mod stats;
mod table;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::store::{DEFAULT_STATE_DIR, StateDir};

/// Command-line interface of the `ferroplane` binary.
#[derive(Debug, Parser)]
#[command(
    name = "ferroplane",
    version,
    about = "Userspace Kubernetes node dataplane: control plane commands"
)]
pub struct Cli {
    /// State directory of the embedded API server.
    #[arg(long, global = true, env = "FERROPLANE_STATE", default_value = DEFAULT_STATE_DIR)]
    pub state: PathBuf,
    /// How long to wait for another process's lock on the state directory (e.g. 10s, 500ms)
    /// before failing with the holder's pid and user.
    #[arg(
        long,
        global = true,
        env = "FERROPLANE_LOCK_TIMEOUT",
        default_value = "10s",
        value_parser = crate::node::config::units::parse_duration
    )]
    pub lock_timeout: std::time::Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the cluster-wide settings (address ranges, DNS IP, VXLAN) and the system namespaces.
    Init(init::InitArgs),
    /// Validate, default and store objects from files, directories or standard input.
    Apply(ApplyArgs),
    /// List or show stored objects.
    Get(GetArgs),
    /// Delete stored objects by kind and name.
    Delete(DeleteArgs),
    /// Follow a synthetic first packet through every node's pipeline and print each decision.
    Trace(trace::TraceArgs),
    /// Run the node dataplane process (node.yaml keys are listed in `run --help`).
    Run(run::RunArgs),
    /// Show a running node's traffic, drop and flow-table counters (over its admin socket).
    Stats(stats::StatsArgs),
    /// Inspect a running node's flow table.
    Conntrack(stats::ConntrackArgs),
    /// Stream a running node's packet drops with 5-tuple, port and reason.
    Monitor(observe::MonitorArgs),
    /// Write the frames of one port of a running node to a pcap file.
    Capture(observe::CaptureArgs),
    /// Serve the cluster DNS zone (kubernetes/dns specification) over UDP and TCP.
    Dns(dns::DnsArgs),
}

/// Output formats of `apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ApplyOutput {
    Yaml,
    Json,
    Name,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// File, directory (its .yaml/.yml/.json files) or `-` for standard input; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Namespace for objects that name none.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// How to print the stored objects.
    #[arg(short, long, value_enum, default_value = "yaml")]
    pub output: ApplyOutput,
}

/// Output formats of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetOutput {
    Yaml,
    Json,
    Wide,
    Name,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Kind: service (svc), endpoints (ep), endpointslice, pod (po), node (no), namespace (ns),
    /// networkpolicy (netpol).
    pub kind: String,
    /// One object's name; all objects when omitted.
    pub name: Option<String>,
    /// Namespace (default `default`).
    #[arg(short, long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Table (default), wide table, yaml, json or name.
    #[arg(short, long, value_enum)]
    pub output: Option<GetOutput>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Kind, as for `get`.
    pub kind: String,
    /// Names of the objects to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Namespace (default `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let dir = StateDir::new(cli.state).with_lock_timeout(cli.lock_timeout);
    let result = match cli.command {
        Command::Init(args) => init::run(&dir, &args),
        Command::Apply(args) => apply::run(&dir, &args),
        Command::Get(args) => get::run(&dir, &args),
        Command::Delete(args) => delete::run(&dir, &args),
        Command::Trace(args) => trace::run(&dir, &args),
        Command::Run(args) => run::run(dir.root(), &args),
        Command::Stats(args) => stats::stats(&dir, &args),
        Command::Conntrack(args) => stats::conntrack(&dir, &args),
        Command::Monitor(args) => observe::monitor(&dir, &args),
        Command::Capture(args) => observe::capture(&dir, &args),
        Command::Dns(args) => dns::run(&dir, &args),
    };
    output::flush();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `kind/name` as kubectl prints it (`service/store-be`).
fn short_name(key: &crate::model::ObjectRef) -> String {
    format!("{}/{}", key.kind.name().to_ascii_lowercase(), key.name)
}
