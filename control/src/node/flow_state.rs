//! The flow table across process generations: the table lives in a file mapped shared
//! (`flowState`, on tmpfs), so its memory outlives the process, a crash included; the next
//! process maps the same file and adopts the table in place, repairing what a killed writer
//! left half-done. A clean stop has nothing to write: the file already holds the table.
//!
//! Invariants: one process at a time maps the file (an flock, held as long as the table
//! lives), and a second process for the node fails to start, naming the file; a file that does
//! not fit this table's layout and capacity is reported and replaced by a fresh table, never
//! half-adopted; ferroplane never deletes the file (deleting it while no process runs is how
//! to start with an empty table).

use std::sync::Arc;

use dataplane::io::shm::{Origin, SharedFile};
use dataplane::tables::conntrack::Conntrack;

use super::config::NodeSettings;
use super::log;

/// The kind name in the flow-state file's header.
const KIND: &str = "conntrack";

/// The flow table in `settings.flow_state`: the previous process's if it fits, else a fresh
/// one; with the number of flows adopted. `Err` when the file cannot be used (e.g. another
/// process holds it).
pub fn conntrack_table(settings: &NodeSettings) -> Result<(Arc<Conntrack>, u64), String> {
    let path = &settings.flow_state;
    let failed = |e: &dyn std::fmt::Display| format!("flowState {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
    }
    let cfg = settings.conntrack;
    let (words, origin) = SharedFile::lock(path)
        .and_then(|file| {
            file.map(KIND, Conntrack::storage_words(&cfg), |words| {
                Conntrack::check_adoptable(words, &cfg)
            })
        })
        .map_err(|e| failed(&e))?;
    let table = match origin {
        Origin::Adopted => Conntrack::adopt(words, cfg),
        Origin::Created | Origin::Replaced(_) => Conntrack::new_in(words, cfg),
    }
    .map_err(|e| failed(&e))?;
    let adopted = table.len() as u64;
    match origin {
        Origin::Adopted => log::info(format_args!(
            "adopted {adopted} flows from {} ({} buckets left locked by a killed writer repaired)",
            path.display(),
            table.repaired_buckets()
        )),
        Origin::Created => log::info(format_args!("new flow table in {}", path.display())),
        Origin::Replaced(why) => log::warn(format_args!(
            "flowState {} not adopted ({why}): starting with an empty flow table",
            path.display()
        )),
    }
    let pages = table.pages();
    let hint = if pages.is_huge() {
        ""
    } else {
        "; a tmpfs mounted with huge=within_size gives it huge pages"
    };
    log::info(format_args!("flow table memory: {pages}{hint}"));
    Ok((Arc::new(table), adopted))
}
