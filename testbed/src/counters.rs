//! A node's dataplane counters as its admin socket's `/stats` reports them (what
//! `ferroplane stats` prints), summed over workers: packets, forwarded, drops by reason name,
//! and the flow table's own counters.
//!
//! Invariant: a worker's numbers come from one published report, so for each worker
//! `packets == forwarded + sum(drops)` holds exactly unless a packet left the pipeline
//! without a named reason; [`NodeCounters::unnamed`] is that difference.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::nodes::admin_get;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    pub packets: u64,
    pub forwarded: u64,
    /// Drops by reason name, over all workers (only the reasons that occurred).
    pub drops: BTreeMap<String, u64>,
    /// Packets that neither were forwarded nor counted under a reason, over all workers.
    pub unnamed: i64,
    /// Frames lost before the pipeline saw them (kernel rings, oversize), over all ports.
    pub rx_dropped: u64,
    /// `conntrack` of `/stats`: entries, capacity, inserts, evictions, expired, insert_failed.
    pub conntrack: BTreeMap<String, u64>,
}

impl NodeCounters {
    /// Reads `/stats` from the node's admin socket.
    pub fn read(admin_socket: &Path) -> Result<NodeCounters> {
        let (status, body) = admin_get(admin_socket, "/stats")
            .ok_or_else(|| Error(format!("no answer from {}", admin_socket.display())))?;
        if status != 200 {
            return Err(Error(format!("/stats answered {status}: {body}")));
        }
        Ok(Self::parse(&serde_json::from_str(&body)?))
    }

    /// The counters of a `/stats` document.
    pub fn parse(stats: &Value) -> NodeCounters {
        let number = |v: &Value| v.as_u64().unwrap_or_default();
        let mut counters = NodeCounters::default();
        for worker in stats["workers"].as_array().into_iter().flatten() {
            let packets = number(&worker["packets"]);
            let forwarded = number(&worker["forwarded"]);
            let mut dropped = 0;
            for (reason, n) in worker["drops"].as_object().into_iter().flatten() {
                *counters.drops.entry(reason.clone()).or_default() += number(n);
                dropped += number(n);
            }
            counters.packets += packets;
            counters.forwarded += forwarded;
            counters.unnamed += i128::from(packets)
                .saturating_sub(i128::from(forwarded) + i128::from(dropped))
                .clamp(i128::from(i64::MIN), i128::from(i64::MAX))
                as i64;
            counters.rx_dropped += worker["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| number(&p["rx_dropped"]))
                .sum::<u64>();
        }
        for (name, n) in stats["conntrack"].as_object().into_iter().flatten() {
            counters.conntrack.insert(name.clone(), number(n));
        }
        counters
    }

    /// Drops of `reason` (0 when it never occurred).
    pub fn dropped(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or_default()
    }

    /// What rose from `before` to `self`: packets, forwarded and each drop reason.
    pub fn since(&self, before: &NodeCounters) -> NodeCounters {
        let drops = self
            .drops
            .iter()
            .map(|(reason, n)| (reason.clone(), n.saturating_sub(before.dropped(reason))))
            .filter(|(_, n)| *n > 0)
            .collect();
        NodeCounters {
            packets: self.packets.saturating_sub(before.packets),
            forwarded: self.forwarded.saturating_sub(before.forwarded),
            drops,
            unnamed: self.unnamed - before.unnamed,
            rx_dropped: self.rx_dropped.saturating_sub(before.rx_dropped),
            conntrack: self.conntrack.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn workers_are_summed_and_unnamed_drops_show() {
        let stats = json!({
            "workers": [
                {"packets": 10, "forwarded": 7, "drops": {"malformed": 2, "ct_invalid": 1},
                 "ports": [{"rx_dropped": 3}]},
                {"packets": 5, "forwarded": 3, "drops": {"malformed": 1},
                 "ports": [{"rx_dropped": 0}, {"rx_dropped": 1}]},
            ],
            "conntrack": {"entries": 4, "capacity": 4096},
        });
        let counters = NodeCounters::parse(&stats);
        assert_eq!((counters.packets, counters.forwarded), (15, 10));
        assert_eq!(counters.dropped("malformed"), 3);
        assert_eq!(counters.dropped("spoofed_source"), 0);
        assert_eq!(
            counters.unnamed, 1,
            "worker 2 lost one packet without a reason"
        );
        assert_eq!(counters.rx_dropped, 4);
        assert_eq!(counters.conntrack["capacity"], 4096);
        let later = NodeCounters {
            packets: 20,
            ..counters.clone()
        };
        let rise = later.since(&counters);
        assert_eq!(rise.packets, 5);
        assert!(rise.drops.is_empty());
    }
}
