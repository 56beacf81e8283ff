//! SIGHUP: re-read `node.yaml`, log what changed, apply at once what only shapes the snapshot
//! (node-local compile inputs, the resync period) and leave the rest for the next start.
//!
//! Invariants: a configuration that does not load or resolve changes nothing; a recompile
//! that fails keeps the running source and settings; a new snapshot cell is handed to the
//! workers only after the flows it makes stale were flushed.

use std::sync::Arc;

use arc_swap::ArcSwap;
use dataplane::io::thread::monotonic_secs;
use dataplane::reconcile::flush_stale;
use dataplane::snapshot::SnapshotCell;
use dataplane::tables::conntrack::Conntrack;

use super::config::{self, NodeSettings};
use super::daemon::{Reload, clock};
use super::host_ports;
use super::log;
use super::source::{Source, SourceInputs};
use crate::sync::PortSource;

pub fn reload_config(
    reload: &Reload,
    settings: &mut NodeSettings,
    source: &mut Source,
    cells: &ArcSwap<SnapshotCell>,
    conntrack: &Arc<Conntrack>,
    port_source: &dyn Fn() -> PortSource,
) {
    let Some(path) = &reload.config else {
        log::info(format_args!("SIGHUP: no --config to reload"));
        return;
    };
    let mut fresh = match config::load(path).and_then(|f| config::resolve(f, &reload.overrides)) {
        Ok(fresh) => fresh,
        Err(error) => {
            log::error(format_args!(
                "SIGHUP: keeping the running configuration: {error}"
            ));
            return;
        }
    };
    if let Err(error) = host_ports::check_snat_ports(fresh.local.snat_ports) {
        log::error(format_args!(
            "SIGHUP: keeping the running configuration: {error}"
        ));
        return;
    }
    // The host TAP keeps the MAC it was started with: changing it needs a restart.
    fresh.local.host_mac = settings.local.host_mac;
    let (live, restart) = fresh.changes_from(settings);
    if live.is_empty() && restart.is_empty() {
        log::info(format_args!("SIGHUP: {} unchanged", path.display()));
        return;
    }
    if !restart.is_empty() {
        log::warn(format_args!(
            "SIGHUP: changed, effective at the next start: {}",
            restart.join(", ")
        ));
    }
    if live.is_empty() {
        return;
    }
    let old = cells.load().load();
    let inputs = SourceInputs {
        node: &settings.node_name,
        local: fresh.local.clone(),
        conntracks: vec![Arc::clone(conntrack)],
        resync: fresh.resync_interval,
    };
    match source.with_local(inputs, port_source(), clock()) {
        Ok(()) => {
            let cell = source.cell();
            if !Arc::ptr_eq(&cell, &cells.load()) {
                // Workers switch cells first; the flush then waits until none is still in a
                // round on the old one (`quiesce`), so nothing stale is re-created behind it.
                let new = cell.load();
                cells.store(cell);
                crate::sync::warn_if_not_quiet(&flush_stale(
                    conntrack,
                    &old,
                    &new,
                    monotonic_secs(),
                ));
            }
            settings.local = fresh.local;
            settings.resync_interval = fresh.resync_interval;
            log::info(format_args!("SIGHUP: applied {}", live.join(", ")));
        }
        Err(error) => log::error(format_args!(
            "SIGHUP: could not recompile with the new settings, keeping the old: {error}"
        )),
    }
}
