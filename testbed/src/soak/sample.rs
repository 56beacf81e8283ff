//! What each node's ferroplane process costs over time: RSS (and its anonymous part, where a
//! leak would show; the shared flow-table mapping is in the rest), open file descriptors and
//! threads from `/proc/<pid>`, and the flow table from the node's `/stats` (what
//! `ferroplane stats -o json` prints).
//!
//! Invariant: a sample never fails: what could not be read (a node between a kill and its
//! restart) is left empty.

use std::path::Path;

use serde::Serialize;

use crate::nodes::admin_get;
use crate::run_state::NodeRecord;

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub at_ms: u64,
    pub node: String,
    pub pid: u32,
    pub rss_kib: Option<u64>,
    pub rss_anon_kib: Option<u64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
    pub flows: Option<u64>,
    pub flow_capacity: Option<u64>,
    /// New flows refused because the table was full (cumulative for the table).
    pub flow_insert_failed: Option<u64>,
}

/// Samples `node`'s process now.
pub fn sample(at_ms: u64, node: &NodeRecord) -> Sample {
    let proc_dir = Path::new("/proc").join(node.pid.to_string());
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    let fds = std::fs::read_dir(proc_dir.join("fd"))
        .ok()
        .map(|dir| u64::try_from(dir.count()).unwrap_or(u64::MAX));
    let stats: Option<serde_json::Value> = admin_get(&node.admin_socket, "/stats")
        .filter(|(status, _)| *status == 200)
        .and_then(|(_, body)| serde_json::from_str(&body).ok());
    let conntrack = |key: &str| stats.as_ref().and_then(|s| s["conntrack"][key].as_u64());
    Sample {
        at_ms,
        node: node.name.clone(),
        pid: node.pid,
        rss_kib: field("VmRSS:"),
        rss_anon_kib: field("RssAnon:"),
        fds,
        threads: field("Threads:"),
        flows: conntrack("entries"),
        flow_capacity: conntrack("capacity"),
        flow_insert_failed: conntrack("insert_failed"),
    }
}
