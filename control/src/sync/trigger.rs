//! Network programming latency as kube-proxy measures it: from the time the change was
//! triggered, which the EndpointSlice controller writes into the slice's
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation, to the publication of the
//! snapshot that carries it.
//!
//! Both sources call [`TriggerTimes::note`] for every object a sync applies and
//! [`TriggerTimes::published`] after the publication; the latencies observed go into the
//! `network_programming_duration_seconds` histogram, and the last batch's raw values stay
//! readable ([`TriggerTimes::last_batch`]) for the churn benchmark. The annotation is read from
//! whatever object carries it (Kubernetes sets it on EndpointSlices and Endpoints).
//!
//! Invariant: each trigger time is observed once, at the first publication after it was
//! noted; an annotation that does not parse is ignored (it is informational upstream too).

use std::time::{Duration, SystemTime};

use crate::model::Object;

use super::metrics::{self, Histogram};

/// The object's trigger time, if it carries a parseable one.
pub fn trigger_time(object: &Object) -> Option<SystemTime> {
    metrics::trigger_time(object.metadata().annotations.as_ref())
}

/// Trigger times applied but not yet published, and the latencies of the last publication.
#[derive(Clone, Debug, Default)]
pub struct TriggerTimes {
    pending: Vec<SystemTime>,
    last_batch: Vec<Duration>,
}

impl TriggerTimes {
    pub fn note(&mut self, object: &Object) {
        if let Some(at) = trigger_time(object) {
            self.pending.push(at);
        }
    }

    /// Whether anything noted awaits publication.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Observes every pending trigger time as published at `at`.
    pub fn published(&mut self, at: SystemTime, histogram: &mut Histogram) {
        self.last_batch.clear();
        for trigger in self.pending.drain(..) {
            // A trigger stamped after `at` (clock skew) counts as instant.
            let latency = at.duration_since(trigger).unwrap_or(Duration::ZERO);
            histogram.observe(latency.as_secs_f64());
            self.last_batch.push(latency);
        }
    }

    /// The latencies observed at the last publication.
    pub fn last_batch(&self) -> &[Duration] {
        &self.last_batch
    }
}
