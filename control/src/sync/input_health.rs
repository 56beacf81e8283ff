//! Bad input seen by a sync loop, for `/metrics` and `/healthz`: a damaged change log, a
//! malformed or out-of-order watch event, an unreadable object file. Each is counted under a
//! named reason; `degraded` stays set until a sync reads its input cleanly again.
//!
//! Invariant: recording a problem never changes what is published: the loop that records it
//! keeps (or falls back to a full load that rebuilds) the last good tables.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Reason names (the `reason` label).
pub const CHANGE_LOG: &str = "change_log";
pub const OBJECT_FILE: &str = "object_file";
pub const WATCH_ERROR: &str = "watch_error";
pub const OUT_OF_ORDER: &str = "out_of_order_event";

/// Counts and the latest message of the input problems of one sync loop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputHealth {
    /// Problems seen, per reason.
    pub errors: BTreeMap<&'static str, u64>,
    /// The latest problem, naming what and where.
    pub last_error: Option<String>,
    /// The latest input read had a problem (cleared by a clean read).
    pub degraded: bool,
}

impl InputHealth {
    pub fn record(&mut self, reason: &'static str, message: String) {
        *self.errors.entry(reason).or_default() += 1;
        self.last_error = Some(message);
        self.degraded = true;
    }

    /// Adds `count` problems under `reason` counted elsewhere (the watchers' error counter).
    pub fn record_count(&mut self, reason: &'static str, count: u64, message: Option<String>) {
        if count == 0 {
            return;
        }
        *self.errors.entry(reason).or_default() += count;
        if let Some(message) = message {
            self.last_error = Some(message);
        }
        self.degraded = true;
    }

    pub fn clean_read(&mut self) {
        self.degraded = false;
    }

    pub fn total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// `ferroplane_sync_input_errors_total{reason}` and `ferroplane_sync_input_degraded`.
    pub fn render_prometheus(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ferroplane_sync_input_errors_total Bad input the sync loop skipped or recovered from, by reason; the last good tables stayed published."
        );
        let _ = writeln!(out, "# TYPE ferroplane_sync_input_errors_total counter");
        for reason in [CHANGE_LOG, OBJECT_FILE, WATCH_ERROR, OUT_OF_ORDER] {
            let count = self.errors.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "ferroplane_sync_input_errors_total{{reason=\"{reason}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ferroplane_sync_input_degraded 1 while the latest input read had a problem."
        );
        let _ = writeln!(out, "# TYPE ferroplane_sync_input_degraded gauge");
        let _ = writeln!(
            out,
            "ferroplane_sync_input_degraded {}",
            u8::from(self.degraded)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_counted_by_reason_until_a_clean_read() {
        let mut health = InputHealth::default();
        health.record(CHANGE_LOG, "change log x: torn line".to_owned());
        health.record_count(WATCH_ERROR, 2, None);
        let mut out = String::new();
        health.render_prometheus(&mut out);
        assert!(out.contains("ferroplane_sync_input_errors_total{reason=\"change_log\"} 1\n"));
        assert!(out.contains("ferroplane_sync_input_errors_total{reason=\"watch_error\"} 2\n"));
        assert!(out.contains("ferroplane_sync_input_degraded 1\n"));
        assert_eq!(
            health.last_error.as_deref(),
            Some("change log x: torn line")
        );
        health.clean_read();
        let mut out = String::new();
        health.render_prometheus(&mut out);
        assert!(out.contains("ferroplane_sync_input_degraded 0\n"));
        assert_eq!(health.total(), 3);
    }
}
