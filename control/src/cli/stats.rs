//! `ferroplane stats` and `ferroplane conntrack list`: a running node's counters and flow table,
//! read over its admin socket.

use std::fmt::Write as _;

use serde_json::Value;

use super::admin_client::{self, SocketArgs};
use super::output::{self, out};
use crate::store::StateDir;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print the raw JSON instead of tables.
    #[arg(short, long, value_parser = ["json", "text"], default_value = "text")]
    pub output: String,
}

#[derive(Debug, clap::Args)]
pub struct ConntrackArgs {
    #[command(subcommand)]
    pub command: ConntrackCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConntrackCommand {
    /// List tracked flows like `conntrack -L`: original tuple, reply tuple after NAT, flags.
    List(ConntrackListArgs),
}

/// `conntrack list` and its filters (all must hold).
#[derive(Debug, clap::Args)]
pub struct ConntrackListArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Only flows to or from this pod (NAMESPACE/NAME) of the node.
    #[arg(long)]
    pub pod: Option<String>,
    /// Only flows of this Service (NAMESPACE/NAME), any port.
    #[arg(long)]
    pub service: Option<String>,
    /// Only flows with this IPv4 address on either side, before or after NAT.
    #[arg(long)]
    pub address: Option<String>,
    /// Only flows in this state (ESTABLISHED, SYN_SENT, ..., UNREPLIED, ASSURED, ICMP).
    /// (`--state` is the state directory.)
    #[arg(long = "ct-state")]
    pub ct_state: Option<String>,
}

impl ConntrackListArgs {
    /// `/conntrack` with the filters as its query.
    pub fn target(&self) -> String {
        let filters: Vec<String> = [
            ("pod", &self.pod),
            ("service", &self.service),
            ("address", &self.address),
            ("state", &self.ct_state),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            Some(format!("{key}={}", super::observe::encode(value.as_ref()?)))
        })
        .collect();
        if filters.is_empty() {
            "/conntrack".to_owned()
        } else {
            format!("/conntrack?{}", filters.join("&"))
        }
    }
}

pub fn stats(dir: &StateDir, args: &StatsArgs) -> Result<bool, String> {
    let body = admin_client::get_text(&args.socket.endpoint(dir)?, "/stats")?;
    if args.output == "json" {
        out!("{body}");
        return Ok(true);
    }
    let stats: Value =
        serde_json::from_str(&body).map_err(|e| format!("/stats is not JSON: {e}"))?;
    out!("{}", stats_table(&stats));
    Ok(true)
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// `/stats` as tables: traffic per worker and port, drops per worker and reason, the
/// workers' scheduling class and time, the flow table.
pub fn stats_table(stats: &Value) -> String {
    let mut out = String::new();
    let ct = &stats["conntrack"];
    let _ = writeln!(
        out,
        "node {}  generation {}  flows {}/{}  evictions {}  adopted {}",
        stats["node"].as_str().unwrap_or("?"),
        num(&stats["generation"]),
        num(&ct["entries"]),
        num(&ct["capacity"]),
        num(&ct["evictions"]),
        num(&ct["adopted"]),
    );
    let evicted: Vec<String> = ct["evicted_by_state"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {}", num(v))).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "conntrack  table full {}  evicted by state: {}  source limit {}  destination limit {}  retracted {}",
        num(&ct["insert_failed"]),
        if evicted.is_empty() {
            "none".to_string()
        } else {
            evicted.join(", ")
        },
        num(&ct["limited_source"]),
        num(&ct["limited_destination"]),
        num(&ct["retracted"]),
    );
    let _ = writeln!(
        out,
        "\n{:<7}{:<28}{:<16}{:>10}{:>12}{:>11}{:>10}{:>12}{:>10}",
        "WORKER",
        "PORT",
        "INTERFACE",
        "RX_PKTS",
        "RX_BYTES",
        "RX_DROPPED",
        "TX_PKTS",
        "TX_BYTES",
        "RING_FULL"
    );
    let workers = stats["workers"].as_array().cloned().unwrap_or_default();
    for w in &workers {
        for p in w["ports"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "{:<7}{:<28}{:<16}{:>10}{:>12}{:>11}{:>10}{:>12}{:>10}",
                num(&w["worker"]),
                p["name"].as_str().unwrap_or("?"),
                p["interface"].as_str().unwrap_or("?"),
                num(&p["rx_packets"]),
                num(&p["rx_bytes"]),
                num(&p["rx_dropped"]),
                num(&p["tx_packets"]),
                num(&p["tx_bytes"]),
                num(&p["tx_ring_full"]),
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<7}{:<10}{:>5}{:>12}{:>10}{:>10}{:>10}{:>10}{:>7}",
        "WORKER", "POLICY", "PRIO", "ROUNDS", "SLEEPS", "WAKEUPS", "BUSY_S", "IDLE_S", "BUSY%"
    );
    for w in &workers {
        let s = &w["scheduling"];
        let (busy, idle) = (num(&s["busy_ns"]) as f64, num(&s["idle_ns"]) as f64);
        let share = if busy + idle > 0.0 {
            100.0 * busy / (busy + idle)
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "{:<7}{:<10}{:>5}{:>12}{:>10}{:>10}{:>10.3}{:>10.3}{:>7.1}",
            num(&w["worker"]),
            s["policy"].as_str().unwrap_or("?"),
            num(&s["priority"]),
            num(&s["rounds"]),
            num(&s["sleeps"]),
            num(&s["wakeups"]),
            busy / 1e9,
            idle / 1e9,
            share,
        );
    }
    let _ = writeln!(
        out,
        "\n{:<7}{:<28}{:>10}",
        "WORKER", "DROP REASON", "PACKETS"
    );
    for w in &workers {
        for (reason, count) in w["drops"].as_object().into_iter().flatten() {
            let _ = writeln!(
                out,
                "{:<7}{:<28}{:>10}",
                num(&w["worker"]),
                reason,
                num(count)
            );
        }
    }
    out
}

pub fn conntrack(dir: &StateDir, args: &ConntrackArgs) -> Result<bool, String> {
    match &args.command {
        ConntrackCommand::List(list) => {
            use std::io::{BufRead, Write};
            let target = list.target();
            let body = admin_client::get(&list.socket.endpoint(dir)?, &target)?;
            let mut out = std::io::stdout().lock();
            let mut count = 0usize;
            for line in std::io::BufReader::new(body).lines() {
                let line = line.map_err(|e| format!("{target}: {e}"))?;
                output::write_or_exit(writeln!(out, "{line}"));
                count += 1;
            }
            output::write_or_exit(out.flush());
            eprintln!("ferroplane: {count} flow entries have been shown.");
            Ok(true)
        }
    }
}
