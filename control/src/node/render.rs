//! What the admin endpoint answers, as text: Prometheus metrics from the workers' reports,
//! the flow table and the sync loop; `/stats` as JSON; the flow table like `conntrack -L`; drop
//! events like `cilium monitor`; frames as a pcap stream.
//!
//! Invariants: rendering reads published copies only (worker reports, table counters, a
//! consistent scan of the flow table); nothing here touches a worker's live state. Every
//! metric name carries the `ferroplane_` prefix and every counter ends in `_total`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use dataplane::drop::DropReason;
use dataplane::flow::L4Proto;
use dataplane::packet::PortId;
use dataplane::tables::conntrack::{CtStats, FlowState, FlowView, flags};
use dataplane::worker::WorkerReport;
use serde_json::{Value, json};

use super::ports::PortNames;
use crate::sync::metrics::SyncMetrics;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn port_labels(names: &PortNames, port: usize) -> String {
    let port_id = u16::try_from(port).map(PortId).ok();
    match port_id.and_then(|p| names.label(p)) {
        Some(l) => format!("port=\"{}\",interface=\"{}\"", l.name, l.interface),
        None => format!("port=\"{port}\",interface=\"\""),
    }
}

/// Everything `/metrics` shows, besides what the caller appends.
pub struct MetricsInput<'a> {
    pub reports: &'a [WorkerReport],
    pub names: &'a PortNames,
    pub conntrack: CtStats,
    pub conntrack_capacity: usize,
    pub adopted_flows: u64,
    pub generation: u64,
    pub sync: &'a SyncMetrics,
    pub monitor_lost: u64,
    pub capture_lost: u64,
}

/// The Prometheus text exposition.
pub fn metrics(input: &MetricsInput<'_>) -> String {
    let mut out = String::new();
    type PortField = fn(&dataplane::worker::PortCounters) -> u64;
    let port_metrics: [(&str, &str, PortField); 6] = [
        (
            "ferroplane_port_rx_packets_total",
            "Frames received on a port.",
            |c| c.rx_packets,
        ),
        (
            "ferroplane_port_rx_bytes_total",
            "Bytes received on a port.",
            |c| c.rx_bytes,
        ),
        (
            "ferroplane_port_tx_packets_total",
            "Frames a port's device accepted.",
            |c| c.tx_packets,
        ),
        (
            "ferroplane_port_tx_bytes_total",
            "Bytes handed to a port's device.",
            |c| c.tx_bytes,
        ),
        (
            "ferroplane_port_tx_ring_full_total",
            "Frames a port's device refused (ring full).",
            |c| c.tx_refused,
        ),
        (
            "ferroplane_port_rx_dropped_total",
            "Frames lost on a port's receive side before the pipeline (kernel ring full, no buffer, oversized).",
            |c| c.rx_dropped,
        ),
    ];
    for (name, help, field) in port_metrics {
        header(&mut out, name, "counter", help);
        for r in input.reports {
            for (port, counters) in r.ports.iter().enumerate() {
                if input.names.label(PortId(port as u16)).is_none() && field(counters) == 0 {
                    continue;
                }
                let labels = port_labels(input.names, port);
                let _ = writeln!(
                    out,
                    "{name}{{worker=\"{}\",{labels}}} {}",
                    r.worker,
                    field(counters)
                );
            }
        }
    }
    header(
        &mut out,
        "ferroplane_drops_total",
        "counter",
        "Packets dropped, by reason.",
    );
    for r in input.reports {
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "ferroplane_drops_total{{worker=\"{}\",reason=\"{}\"}} {}",
                r.worker,
                reason.name(),
                r.drops.get(reason)
            );
        }
    }
    type StatField = fn(&WorkerReport) -> u64;
    let worker_metrics: [(&str, &str, StatField); 12] = [
        (
            "ferroplane_pipeline_packets_total",
            "Packets run through the pipeline.",
            |r| r.stats.packets,
        ),
        (
            "ferroplane_pipeline_forwarded_total",
            "Packets forwarded.",
            |r| r.stats.forwarded,
        ),
        (
            "ferroplane_pipeline_new_flows_total",
            "Flows created by this worker.",
            |r| r.stats.new_flows,
        ),
        (
            "ferroplane_pipeline_insert_races_lost_total",
            "First packets that adopted another worker's flow.",
            |r| r.stats.races_lost,
        ),
        (
            "ferroplane_pipeline_rejects_total",
            "Connections rejected (no endpoints).",
            |r| r.stats.rejects,
        ),
        (
            "ferroplane_pipeline_icmp_generated_total",
            "ICMP errors generated.",
            |r| r.stats.icmp_generated,
        ),
        (
            "ferroplane_worker_rx_errors_total",
            "Receive calls that failed.",
            |r| r.rx_errors,
        ),
        (
            "ferroplane_worker_idle_rounds_total",
            "Rounds that found no packet.",
            |r| r.rounds.idle_rounds,
        ),
        (
            "ferroplane_worker_sleeps_total",
            "Times a worker slept on its ports.",
            |r| r.rounds.sleeps,
        ),
        (
            "ferroplane_worker_rounds_total",
            "Rounds a worker completed (poll, pipeline, housekeeping).",
            |r| r.rounds.rounds,
        ),
        (
            "ferroplane_worker_wakeups_total",
            "Sleeps that ended because a port turned readable.",
            |r| r.rounds.wakeups,
        ),
        (
            "ferroplane_worker_empty_wakeups_total",
            "Wakeups whose round found no packet.",
            |r| r.rounds.empty_wakeups,
        ),
    ];
    for (name, help, field) in worker_metrics {
        header(&mut out, name, "counter", help);
        for r in input.reports {
            let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", r.worker, field(r));
        }
    }
    super::render_sched::worker_time_metrics(&mut out, input.reports);
    let ct = &input.conntrack;
    for (name, kind, help, value) in [
        (
            "ferroplane_conntrack_entries",
            "gauge",
            "Live flows.",
            ct.entries,
        ),
        (
            "ferroplane_conntrack_capacity",
            "gauge",
            "Flows the table holds before it evicts.",
            input.conntrack_capacity as u64,
        ),
        (
            "ferroplane_conntrack_inserts_total",
            "counter",
            "Flows created.",
            ct.inserts,
        ),
        (
            "ferroplane_conntrack_evictions_total",
            "counter",
            "Live flows evicted to make room.",
            ct.evictions,
        ),
        (
            "ferroplane_conntrack_insert_failed_total",
            "counter",
            "Flows not created: table full.",
            ct.insert_failed,
        ),
        (
            "ferroplane_conntrack_expired_total",
            "counter",
            "Flows timed out.",
            ct.expired,
        ),
        (
            "ferroplane_conntrack_invalid_total",
            "counter",
            "Packets that did not fit their flow's state.",
            ct.invalid,
        ),
        (
            "ferroplane_conntrack_limited_source_total",
            "counter",
            "New flows refused: their source had too many unreplied flows (ct_source_limit).",
            ct.limited_source,
        ),
        (
            "ferroplane_conntrack_limited_destination_total",
            "counter",
            "New flows refused: their destination had too many unreplied flows.",
            ct.limited_destination,
        ),
        (
            "ferroplane_conntrack_retracted_total",
            "counter",
            "Flows taken out again because routing dropped their first packet.",
            ct.retracted,
        ),
        (
            "ferroplane_conntrack_insert_races_lost_total",
            "counter",
            "Inserts that found the flow already created by another worker.",
            ct.insert_races_lost,
        ),
        (
            "ferroplane_conntrack_adopted_flows",
            "gauge",
            "Flows adopted from the previous process at start.",
            input.adopted_flows,
        ),
        (
            "ferroplane_snapshot_generation",
            "gauge",
            "Generation of the snapshot the workers run.",
            input.generation,
        ),
        (
            "ferroplane_monitor_lost_total",
            "counter",
            "Monitor events a slow monitor client missed.",
            input.monitor_lost,
        ),
        (
            "ferroplane_capture_lost_total",
            "counter",
            "Frames a slow capture client missed.",
            input.capture_lost,
        ),
    ] {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    let name = "ferroplane_conntrack_evicted_total";
    header(
        &mut out,
        name,
        "counter",
        "Live flows evicted to make room, by the state they were in (assured ones never).",
    );
    for state in FlowState::ALL {
        let n = ct.evictions_by_state[state.index()];
        let _ = writeln!(out, "{name}{{state=\"{}\"}} {n}", state.name());
    }
    input.sync.render_prometheus(&mut out);
    out
}

/// `/stats`: the same numbers as JSON, ports by name, drops by reason (non-zero only).
pub fn stats(input: &MetricsInput<'_>, node: &str) -> Value {
    let workers: Vec<Value> = input
        .reports
        .iter()
        .map(|r| {
            let ports: Vec<Value> = r
                .ports
                .iter()
                .enumerate()
                .filter_map(|(port, c)| {
                    let label = input.names.label(PortId(port as u16))?;
                    Some(json!({
                        "port": port, "name": label.name, "interface": label.interface,
                        "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes,
                        "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes,
                        "tx_ring_full": c.tx_refused, "rx_dropped": c.rx_dropped,
                    }))
                })
                .collect();
            let drops: serde_json::Map<String, Value> = r
                .drops
                .iter()
                .map(|(reason, n)| (reason.name().to_owned(), json!(n)))
                .collect();
            json!({
                "worker": r.worker,
                "packets": r.stats.packets,
                "forwarded": r.stats.forwarded,
                "new_flows": r.stats.new_flows,
                "drops": drops,
                "rx_errors": r.rx_errors,
                "ports": ports,
                "scheduling": super::render_sched::scheduling_json(r),
            })
        })
        .collect();
    let ct = &input.conntrack;
    json!({
        "node": node,
        "generation": input.generation,
        "workers": workers,
        "conntrack": {
            "entries": ct.entries, "capacity": input.conntrack_capacity,
            "inserts": ct.inserts, "evictions": ct.evictions, "expired": ct.expired,
            "insert_failed": ct.insert_failed, "adopted": input.adopted_flows,
            "evicted_by_state": FlowState::ALL
                .iter()
                .filter(|s| ct.evictions_by_state[s.index()] > 0)
                .map(|s| (s.name().to_string(), json!(ct.evictions_by_state[s.index()])))
                .collect::<serde_json::Map<String, Value>>(),
            "limited_source": ct.limited_source,
            "limited_destination": ct.limited_destination,
            "retracted": ct.retracted,
        },
        "sync": {
            "syncs": input.sync.syncs,
            "failures": input.sync.sync_failures,
            "last_sync_timestamp": input.sync.last_sync_timestamp,
            "pending_changes": input.sync.pending_changes,
        },
    })
}

fn flag_names(bits: u8) -> String {
    let names: Vec<&str> = [
        (flags::DNAT, "DNAT"),
        (flags::SNAT, "SNAT"),
        (flags::HAIRPIN, "HAIRPIN"),
        (flags::FROM_HOST, "FROM_HOST"),
        (flags::EXTERNAL, "EXTERNAL"),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| name)
    .collect();
    names.join(",")
}

fn tuple(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, proto: L4Proto) -> String {
    match proto {
        L4Proto::Icmp => format!("src={src} dst={dst} type=8 code=0 id={sport}"),
        _ => format!("src={src} dst={dst} sport={sport} dport={dport}"),
    }
}

/// One flow as `conntrack -L` prints it: protocol, number, seconds left, TCP state, original
/// tuple, reply tuple (as it arrives after NAT), status flags in brackets.
pub fn conntrack_line(f: &FlowView) -> String {
    let o = &f.original;
    let r = &f.reply;
    let state = match f.state {
        FlowState::UdpUnreplied | FlowState::UdpAssured | FlowState::Icmp => String::new(),
        tcp => format!("{} ", tcp.name()),
    };
    let mut status = Vec::new();
    match f.state {
        FlowState::UdpUnreplied => status.push("[UNREPLIED]".to_owned()),
        FlowState::UdpAssured | FlowState::Established => status.push("[ASSURED]".to_owned()),
        _ => {}
    }
    if f.flags != 0 {
        status.push(format!("[{}]", flag_names(f.flags)));
    }
    format!(
        "{:<8}{:<3}{} {}{} {} {}",
        o.proto.name(),
        o.proto as u8,
        f.expires_in,
        state,
        tuple(o.src, o.dst, o.sport, o.dport, o.proto),
        tuple(r.src, r.dst, r.sport, r.dport, r.proto),
        status.join(" ")
    )
    .trim_end()
    .to_owned()
}

#[cfg(test)]
mod tests;
