//! The `testbed` command: bring a ferroplane cluster up in network namespaces, look at it,
//! probe it, and take it down. `testbed --help` lists the verbs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use testbed::cluster::{Ferroplane, locate_ferroplane};
use testbed::error::{Error, Result};
use testbed::layout::{DEFAULT_PREFIX, Layout};
use testbed::lifecycle::{self, DEMO_DIR, DEMO_POLICY, UpOptions};
use testbed::nodes::NodeTuning;
use testbed::probe::{Protocol, probe_sized};
use testbed::run_state::{Io, IpFamily, Mode, RunState};
use testbed::{cloud_lb, load, netexec, netns, operations, teardown};

#[derive(Parser)]
#[command(about = "A Kubernetes cluster in network namespaces, with ferroplane on every node")]
struct Cli {
    /// Prefix of every namespace and of the run directory (/run/ferroplane-testbed/PREFIX).
    #[arg(long, global = true, env = "TESTBED_PREFIX", default_value = DEFAULT_PREFIX)]
    prefix: String,
    #[command(subcommand)]
    command: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Build the cluster: underlay, router, internet host, nodes running ferroplane, pods.
    Up {
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        #[arg(long, value_enum, default_value_t = Io::Tap)]
        io: Io,
        #[arg(long, value_enum, default_value_t = Mode::Vxlan)]
        mode: Mode,
        /// Worker threads of every node's ferroplane (workers.count).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Flow table capacity of every node (conntrack.maxEntries).
        #[arg(long, default_value_t = 16384)]
        conntrack_max: usize,
        /// The cluster's IP families: ipv4, or dual (IPv4 primary and IPv6: nodes, pods,
        /// Services and the internet host get addresses of both); ipv6 (IPv6-only) is
        /// refused until the dataplane programs pods without an IPv4 address.
        #[arg(long, value_enum, default_value_t = IpFamily::Ipv4)]
        ip_family: IpFamily,
        /// Manifests to apply (default: the demo store app and its Service).
        #[arg(short = 'f', long = "filename")]
        manifests: Vec<PathBuf>,
        /// The ferroplane binary (default: beside this one, else on PATH).
        #[arg(long, env = "FERROPLANE_BIN")]
        ferroplane: Option<PathBuf>,
    },
    /// Remove every namespace, process and file of this testbed (also after a killed run).
    Down,
    /// The state directory, the nodes and the pods.
    Status {
        #[arg(short = 'o', long = "output")]
        output: Option<OutputFormat>,
    },
    /// Connect from a pod (or from the internet host: `internet`, or a node's own stack:
    /// `node:NAME`) to TARGET:PORT and report
    /// who answered.
    Probe {
        from: String,
        target: SocketAddr,
        #[arg(long, value_enum, default_value_t = Protocol::Tcp)]
        protocol: Protocol,
        /// 500ms, 1s, 2 (seconds).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        timeout: Duration,
        /// Requests over the one connection (TCP) or socket (UDP).
        #[arg(long, default_value_t = 1)]
        requests: usize,
        /// UDP: send datagrams of this many bytes (larger than the MTU: fragmented); the
        /// server answers only a datagram that arrived whole.
        #[arg(long, default_value_t = 0)]
        datagram_size: usize,
        #[arg(short = 'o', long = "output")]
        output: Option<OutputFormat>,
    },
    /// Steady load from a pod: a new TCP connection per request every --interval, plus --hold
    /// long-lived connections; prints what failed, when, and which backends answered.
    Load {
        from: String,
        target: SocketAddr,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value = "20ms", value_parser = parse_duration)]
        interval: Duration,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        timeout: Duration,
        #[arg(long, default_value_t = 0)]
        hold: usize,
    },
    /// Run a command inside a pod's network namespace.
    Exec {
        pod: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Apply manifests through ferroplane and bring up any new pods.
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        manifests: Vec<PathBuf>,
    },
    /// Crash a pod: kill its processes, remove its namespace, delete the Pod.
    KillPod { pod: String },
    /// Set a pod's Ready condition (its endpoint becomes ready or not ready).
    SetReady {
        pod: String,
        #[arg(action = clap::ArgAction::Set)]
        ready: bool,
    },
    /// Change a pod's labels: KEY=VALUE sets, KEY- removes.
    Label {
        pod: String,
        #[arg(required = true)]
        changes: Vec<String>,
    },
    /// Restart a node's ferroplane (SIGTERM, or SIGKILL with --crash) and wait until it serves.
    RestartNode {
        node: String,
        #[arg(long)]
        crash: bool,
    },
    /// Bring a testbed up, run mixed load through it for --duration while it changes
    /// (endpoint churn, crashed pods, a policy flipping, every node's ferroplane restarted
    /// and SIGKILLed), print a table per minute and a verdict, take it down. Exits 1 on FAIL.
    Soak {
        /// 60s to 24h.
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        duration: Duration,
        /// Time between changes (default: one cycle of 12 changes over the run, 8s to 30s).
        #[arg(long, value_parser = parse_duration)]
        step: Option<Duration>,
        #[arg(long, value_enum, default_value_t = Io::Tap)]
        io: Io,
        /// The JSON report; the per-node samples go beside it as CSV.
        #[arg(long, default_value = "soak-report.json")]
        report: PathBuf,
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        sample_every: Duration,
        /// Leave the testbed up at the end.
        #[arg(long)]
        keep: bool,
        #[arg(long, env = "FERROPLANE_BIN")]
        ferroplane: Option<PathBuf>,
    },
    /// The cloud load balancer's health checker (run inside its namespace by `up`).
    #[command(hide = true)]
    CloudLb {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<std::net::Ipv4Addr>,
        /// The nodes' IPv6 addresses, in the order of `--nodes` (dual-stack testbeds).
        #[arg(long, value_delimiter = ',')]
        nodes6: Vec<std::net::Ipv6Addr>,
    },
    /// The pods' server (run inside a pod by `up`).
    #[command(hide = true)]
    Netexec {
        #[arg(long)]
        name: String,
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Json,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let parsed = if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().map(Duration::from_millis)
    } else if let Some(minutes) = text.strip_suffix('m') {
        minutes
            .parse()
            .map(|m: u64| Duration::from_secs(m.saturating_mul(60)))
    } else if let Some(hours) = text.strip_suffix('h') {
        hours
            .parse()
            .map(|h: u64| Duration::from_secs(h.saturating_mul(3600)))
    } else {
        text.strip_suffix('s')
            .unwrap_or(text)
            .parse()
            .map(Duration::from_secs)
    };
    parsed.map_err(|_| format!("{text:?}: use e.g. 500ms, 1s, 2, 30m or 1h"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("testbed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let layout = Layout::new(&cli.prefix)?;
    match cli.command {
        Verb::Up {
            nodes,
            io,
            mode,
            workers,
            conntrack_max,
            ip_family,
            manifests,
            ferroplane,
        } => {
            let options = UpOptions {
                nodes,
                io,
                mode,
                manifests,
                ferroplane: locate_ferroplane(ferroplane.as_deref()),
                tuning: NodeTuning {
                    workers,
                    conntrack_max,
                },
                ip_family,
            };
            let state = lifecycle::up(&layout, &options)?;
            print_status(&state, None)?;
            if let Some(hint) = lifecycle::dual_stack_hint(&state)? {
                println!("\n{hint}");
            }
            println!("\nNetworkPolicies ready to apply: testbed apply -f {DEMO_DIR}/{DEMO_POLICY}");
        }
        Verb::Down => {
            let removed = teardown::down(&layout)?;
            println!(
                "removed {} namespaces, stopped {} processes",
                removed.namespaces.len(),
                removed.processes
            );
        }
        Verb::Status { output } => print_status(&RunState::load(&layout)?, output)?,
        Verb::Probe {
            from,
            target,
            protocol,
            timeout,
            requests,
            datagram_size,
            output,
        } => {
            let state = RunState::load(&layout)?;
            let client_ns = match state.pod(&from) {
                Some(pod) => pod.netns.clone(),
                None if from == "internet" => layout.internet_ns(),
                // A node's own stack (host-network client): `node:node-1`.
                None => match from
                    .strip_prefix("node:")
                    .and_then(|node| state.nodes.iter().find(|n| n.name == node))
                {
                    Some(node) => node.netns.clone(),
                    None => return Err(Error(format!("no pod or node:NAME {from}"))),
                },
            };
            let report = netns::within(&client_ns, || {
                Ok(probe_sized(
                    target,
                    protocol,
                    timeout,
                    requests.max(1),
                    datagram_size,
                ))
            })?;
            if output.is_some() {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} {} {}",
                    serde_json::to_value(report.result)?
                        .as_str()
                        .unwrap_or_default(),
                    report.answered_by.as_deref().unwrap_or("-"),
                    report.client_addr.as_deref().unwrap_or("-")
                );
            }
        }
        Verb::Load {
            from,
            target,
            duration,
            interval,
            timeout,
            hold,
        } => {
            let state = RunState::load(&layout)?;
            let pod = state
                .pod(&from)
                .ok_or_else(|| Error(format!("no pod {from}")))?;
            if duration > Duration::from_secs(600) {
                return Err(Error("--duration: at most 600s".to_owned()));
            }
            let options = load::LoadOptions {
                target,
                duration,
                interval: interval.max(Duration::from_millis(1)),
                timeout,
                hold: hold.min(64),
            };
            let report = netns::within(&pod.netns, || Ok(load::run(&options)))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Verb::Exec { pod, command } => {
            let state = RunState::load(&layout)?;
            let record = state
                .pod(&pod)
                .ok_or_else(|| Error(format!("no pod {pod}")))?;
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &record.netns])
                .args(&command)
                .status()?;
            return Ok(ExitCode::from(
                u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
            ));
        }
        Verb::Apply { manifests } => {
            let mut state = RunState::load(&layout)?;
            print!("{}", lifecycle::apply(&layout, &mut state, &manifests)?);
        }
        Verb::KillPod { pod } => {
            let mut state = RunState::load(&layout)?;
            operations::kill_pod(&layout, &mut state, &pod)?;
            println!("pod {pod} killed");
        }
        Verb::SetReady { pod, ready } => {
            operations::set_ready(&RunState::load(&layout)?, &pod, ready)?;
            println!("pod {pod} ready={ready}");
        }
        Verb::Label { pod, changes } => {
            operations::label(&RunState::load(&layout)?, &pod, &changes)?;
            println!("pod {pod} labelled");
        }
        Verb::RestartNode { node, crash } => {
            let mut state = RunState::load(&layout)?;
            let started = std::time::Instant::now();
            operations::restart_node(&layout, &mut state, &node, crash)?;
            println!("node {node} restarted in {:?}", started.elapsed());
        }
        Verb::Soak {
            duration,
            step,
            io,
            report,
            sample_every,
            keep,
            ferroplane,
        } => {
            let options = testbed::soak::SoakOptions {
                duration,
                step,
                io,
                ferroplane: locate_ferroplane(ferroplane.as_deref()),
                report,
                sample_every: sample_every.max(Duration::from_secs(1)),
                keep,
            };
            let (verdict, table) = testbed::soak::run(&layout, &options)?;
            print!("{table}");
            if !verdict.pass {
                return Ok(ExitCode::FAILURE);
            }
        }
        Verb::CloudLb {
            state_dir,
            nodes,
            nodes6,
        } => cloud_lb::balancer::serve(&state_dir, &nodes, &nodes6)?,
        Verb::Netexec { name, ports } => netexec::serve(&name, &ports)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(state: &RunState, output: Option<OutputFormat>) -> Result<()> {
    let ferroplane = Ferroplane {
        bin: state.ferroplane.clone(),
        state_dir: state.state_dir.clone(),
    };
    let ready: Vec<(String, String, bool)> = ferroplane
        .pods()?
        .into_iter()
        .map(|p| (p.namespace, p.name, p.ready))
        .collect();
    let is_ready = |namespace: &str, name: &str| {
        ready
            .iter()
            .any(|(ns, n, r)| ns == namespace && n == name && *r)
    };
    if output.is_some() {
        let status = json!({
            "state_dir": state.state_dir,
            "io": state.io,
            "mode": state.mode,
            "nodes": state.nodes.iter().map(|n| json!({
                "name": n.name, "ip": n.ip, "pod_cidr": n.pod_cidr, "netns": n.netns,
                "ip6": n.ip6, "pod_cidr6": n.pod_cidr6,
                "pid": n.pid, "admin_socket": n.admin_socket, "log": n.log,
            })).collect::<Vec<_>>(),
            "pods": state.pods.iter().map(|p| json!({
                "name": p.name, "namespace": p.namespace, "node": p.node, "ip": p.ip,
                "ip6": p.ip6,
                "ready": is_ready(&p.namespace, &p.name), "netns": p.netns, "ports": p.ports,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!("state_dir: {}", state.state_dir.display());
    println!("{:<12} {:<15} {:<16} NETNS", "NODE", "IP", "POD CIDR");
    for n in &state.nodes {
        println!("{:<12} {:<15} {:<16} {}", n.name, n.ip, n.pod_cidr, n.netns);
        if let (Some(ip6), Some(cidr6)) = (n.ip6, &n.pod_cidr6) {
            println!("{:<12} {ip6} {cidr6}", "");
        }
    }
    println!("{:<24} {:<12} {:<15} READY", "POD", "NODE", "IP");
    for p in &state.pods {
        let name = if p.namespace == "default" {
            p.name.clone()
        } else {
            format!("{}/{}", p.namespace, p.name)
        };
        println!(
            "{:<24} {:<12} {:<15} {}",
            name,
            p.node,
            p.ip,
            is_ready(&p.namespace, &p.name)
        );
        if let Some(ip6) = p.ip6 {
            println!("{:<24} {:<12} {ip6}", "", "");
        }
    }
    Ok(())
}
