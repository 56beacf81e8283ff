//! The flow table across process generations: adopt what the previous process handed off
//! (if it fits this table's layout and capacity), and hand it to the next one on a clean stop.
//!
//! Invariants: a hand-off file is adopted at most once (taking it removes it); a file that does
//! not fit is reported and ignored, never half-adopted; the table is written only when the
//! workers have stopped (the caller's duty), so the file holds a quiescent table.

use std::sync::Arc;

use dataplane::io::handoff;
use dataplane::tables::conntrack::Conntrack;

use super::config::NodeSettings;
use super::log;

/// The kind name of the conntrack hand-off file.
const HANDOFF_KIND: &str = "conntrack";

/// The flow table: the one the previous process handed off, if it fits, else a new one.
pub fn conntrack_table(settings: &NodeSettings) -> (Arc<Conntrack>, u64) {
    let path = &settings.handoff;
    match handoff::take(path, HANDOFF_KIND) {
        Ok(Some(words)) => match Conntrack::adopt(words, settings.conntrack) {
            Ok(table) => {
                let flows = table.len() as u64;
                log::info(format_args!(
                    "adopted {flows} flows from {}",
                    path.display()
                ));
                return (Arc::new(table), flows);
            }
            Err(error) => log::warn(format_args!(
                "hand-off file {} does not fit this table ({error:?}); starting empty",
                path.display()
            )),
        },
        Ok(None) => {}
        Err(error) => log::warn(format_args!("hand-off file: {error}; starting empty")),
    }
    (Arc::new(Conntrack::new(settings.conntrack)), 0)
}

pub fn save_handoff(settings: &NodeSettings, conntrack: &Conntrack) {
    let path = &settings.handoff;
    if let Some(dir) = path.parent()
        && let Err(error) = std::fs::create_dir_all(dir)
    {
        log::error(format_args!(
            "hand-off directory {}: {error}",
            dir.display()
        ));
        return;
    }
    match handoff::save(path, HANDOFF_KIND, conntrack.words()) {
        Ok(()) => log::info(format_args!(
            "handed off {} flows to {}",
            conntrack.len(),
            path.display()
        )),
        Err(error) => log::error(format_args!(
            "writing the hand-off file {}: {error}",
            path.display()
        )),
    }
}
