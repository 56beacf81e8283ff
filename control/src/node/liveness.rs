//! Whether the node process works, as kube-proxy's `/healthz` and `/livez` say it, plus what a
//! userspace dataplane can lose that kube-proxy cannot: its worker threads.
//!
//! Unhealthy (503, each reason in `problems`) when:
//! - a change was queued (seen by the control thread, or a sync failed) and not programmed for
//!   longer than the window (`health.syncTimeout`; kube-proxy's rule, which uses 2 x its sync
//!   period);
//! - the control thread has not come round for longer than the window (a sync stuck);
//! - a worker thread exited, or completed no round for the watchdog's stall time.
//!
//! `/healthz` is also 503 while the node is not eligible (draining after SIGTERM), `/livez`
//! not. The bodies have kube-proxy's fields (`lastUpdated`, `currentTime`, `nodeEligible` for
//! `/healthz`); `lastUpdated` is `currentTime` while healthy, as kube-proxy reports it.
//!
//! Invariants: the control thread writes, the servers read (one short lock, never per
//! packet); every 200 and 503 answered is counted (`kubeproxy_proxy_{healthz,livez}_total`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// kube-proxy's default: twice its 30 s sync period.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Inner {
    /// The last successful sync.
    last_updated: Option<SystemTime>,
    /// The oldest change queued and not yet programmed.
    oldest_pending: Option<(SystemTime, Instant)>,
    /// The last change queued.
    last_queued: Option<SystemTime>,
    /// Why the last sync failed, until one succeeds.
    last_error: Option<String>,
    /// When the control thread last came round.
    heartbeat: Instant,
    /// Workers that exited or stopped completing rounds.
    workers: Vec<String>,
    /// The sync's latest input problem while its input is degraded.
    input_problem: Option<String>,
}

/// The node's health, shared by the control thread and the health servers.
#[derive(Debug)]
pub struct ProxyHealth {
    window: Duration,
    draining: AtomicBool,
    inner: Mutex<Inner>,
    /// Answers by code: [200, 503].
    healthz: [AtomicU64; 2],
    livez: [AtomicU64; 2],
}

/// One look at the node's health.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub healthy: bool,
    pub node_eligible: bool,
    pub problems: Vec<String>,
    pub last_updated: Option<SystemTime>,
    pub now: SystemTime,
}

fn rfc3339(at: Option<SystemTime>) -> String {
    at.and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map_or_else(String::new, |t| t.to_string())
}

fn unix_secs(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl ProxyHealth {
    pub fn new(window: Duration) -> ProxyHealth {
        ProxyHealth {
            window,
            draining: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                last_updated: None,
                oldest_pending: None,
                last_queued: None,
                last_error: None,
                heartbeat: Instant::now(),
                workers: Vec::new(),
                input_problem: None,
            }),
            healthz: Default::default(),
            livez: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A change was seen that is not programmed yet.
    pub fn queued(&self, at: SystemTime, mono: Instant) {
        let mut inner = self.lock();
        inner.last_queued = Some(at);
        inner.oldest_pending.get_or_insert((at, mono));
    }

    /// A sync failed: what it was to program stays queued.
    pub fn failed(&self, at: SystemTime, mono: Instant, error: &str) {
        self.queued(at, mono);
        self.lock().last_error = Some(error.to_owned());
    }

    /// Everything queued is programmed.
    pub fn updated(&self, at: SystemTime) {
        let mut inner = self.lock();
        inner.last_updated = Some(at);
        inner.oldest_pending = None;
        inner.last_error = None;
    }

    /// The control thread came round.
    pub fn heartbeat(&self, mono: Instant) {
        self.lock().heartbeat = mono;
    }

    /// The sync's latest input problem (a damaged change log, a malformed watch event), while
    /// its input is degraded: shown in the bodies as `inputProblem`, without failing the
    /// check (the last good tables stay programmed, as kube-proxy keeps its last rules).
    pub fn set_input_problem(&self, problem: Option<String>) {
        self.lock().input_problem = problem;
    }

    /// What is wrong with the workers now (empty when nothing).
    pub fn set_worker_problems(&self, problems: Vec<String>) {
        self.lock().workers = problems;
    }

    /// The node stops being eligible (SIGTERM): `/healthz` turns 503, `/livez` stays.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The health at `now` (`mono` the same moment on the monotonic clock).
    pub fn verdict(&self, now: SystemTime, mono: Instant) -> Verdict {
        let inner = self.lock();
        let mut problems = inner.workers.clone();
        if let Some((_, since)) = inner.oldest_pending {
            let late = mono.saturating_duration_since(since);
            if late >= self.window {
                let why = inner
                    .last_error
                    .as_deref()
                    .map_or_else(String::new, |e| format!(": {e}"));
                problems.push(format!(
                    "a change has waited {:.1}s to be programmed (limit {:.0}s){why}",
                    late.as_secs_f64(),
                    self.window.as_secs_f64()
                ));
            }
        }
        let quiet = mono.saturating_duration_since(inner.heartbeat);
        if quiet >= self.window {
            problems.push(format!(
                "the control thread made no progress for {:.1}s",
                quiet.as_secs_f64()
            ));
        }
        Verdict {
            healthy: problems.is_empty(),
            node_eligible: !self.draining.load(Ordering::Relaxed),
            problems,
            last_updated: inner.last_updated,
            now,
        }
    }

    fn count(counters: &[AtomicU64; 2], ok: bool) {
        counters[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// `/healthz`: status and JSON body.
    pub fn healthz(&self) -> (u16, String) {
        let v = self.verdict(SystemTime::now(), Instant::now());
        let ok = v.healthy && v.node_eligible;
        Self::count(&self.healthz, ok);
        let last = if ok { Some(v.now) } else { v.last_updated };
        let body = serde_json::json!({
            "lastUpdated": rfc3339(last),
            "currentTime": rfc3339(Some(v.now)),
            "nodeEligible": v.node_eligible,
            "problems": v.problems,
            "inputProblem": self.lock().input_problem,
        });
        (if ok { 200 } else { 503 }, body.to_string())
    }

    /// `/livez`: as `/healthz` without the node's eligibility.
    pub fn livez(&self) -> (u16, String) {
        let v = self.verdict(SystemTime::now(), Instant::now());
        Self::count(&self.livez, v.healthy);
        let last = if v.healthy {
            Some(v.now)
        } else {
            v.last_updated
        };
        let body = serde_json::json!({
            "lastUpdated": rfc3339(last),
            "currentTime": rfc3339(Some(v.now)),
            "problems": v.problems,
            "inputProblem": self.lock().input_problem,
        });
        (if v.healthy { 200 } else { 503 }, body.to_string())
    }

    /// kube-proxy's health metrics and the last queued sync, in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        for (name, help, counters) in [
            (
                "kubeproxy_proxy_healthz_total",
                "Cumulative proxy healthz HTTP status",
                &self.healthz,
            ),
            (
                "kubeproxy_proxy_livez_total",
                "Cumulative proxy livez HTTP status",
                &self.livez,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (code, counter) in [(200, &counters[0]), (503, &counters[1])] {
                let _ = writeln!(
                    out,
                    "{name}{{code=\"{code}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
        }
        if let Some(at) = self.lock().last_queued {
            let name = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} The last time a sync of proxy rules was queued"
            );
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", unix_secs(at));
        }
        let name = "ferroplane_healthy";
        let _ = writeln!(
            out,
            "# HELP {name} 1 while /livez answers 200 (syncs current, every worker running)."
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        let v = self.verdict(SystemTime::now(), Instant::now());
        let _ = writeln!(out, "{name} {}", u8::from(v.healthy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_unprogrammed_past_the_window_fails_with_the_error() {
        let health = ProxyHealth::new(Duration::from_secs(60));
        let (t0, m0) = (SystemTime::now(), Instant::now());
        health.heartbeat(m0);
        health.updated(t0);
        assert!(health.verdict(t0, m0).healthy);
        health.failed(t0, m0, "bad object");
        let at = |s: u64| m0 + Duration::from_secs(s);
        health.heartbeat(at(59));
        assert!(health.verdict(t0, at(59)).healthy, "not late yet");
        health.failed(t0, at(59), "bad object");
        health.heartbeat(at(61));
        let v = health.verdict(t0, at(61));
        assert!(!v.healthy);
        assert_eq!(v.problems.len(), 1, "{v:?}");
        assert!(
            v.problems[0].contains("waited 61.0s") && v.problems[0].contains("bad object"),
            "the oldest queued change counts: {v:?}"
        );
        health.updated(t0);
        assert!(health.verdict(t0, at(61)).healthy);
    }

    #[test]
    fn workers_a_stuck_control_thread_and_draining_each_count() {
        let health = ProxyHealth::new(Duration::from_secs(60));
        let m0 = Instant::now();
        health.heartbeat(m0);
        health.set_worker_problems(vec!["worker 1 exited: panicked".to_owned()]);
        let v = health.verdict(SystemTime::now(), m0);
        assert_eq!(v.problems, vec!["worker 1 exited: panicked".to_owned()]);
        health.set_worker_problems(Vec::new());
        health.set_input_problem(Some("changes: torn line 3".to_owned()));
        let (_, body) = health.healthz();
        assert!(
            body.contains("\"inputProblem\":\"changes: torn line 3\""),
            "{body}"
        );
        health.set_input_problem(None);
        let v = health.verdict(SystemTime::now(), m0 + Duration::from_secs(61));
        assert!(v.problems[0].contains("control thread made no progress for 61.0s"));
        health.heartbeat(m0 + Duration::from_secs(61));
        health.drain();
        let v = health.verdict(SystemTime::now(), m0 + Duration::from_secs(61));
        assert!(v.healthy && !v.node_eligible);
    }

    #[test]
    fn the_bodies_have_kube_proxy_fields_and_answers_are_counted() {
        let health = ProxyHealth::new(Duration::from_secs(60));
        health.updated(SystemTime::now());
        let (status, body) = health.healthz();
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(body["nodeEligible"], true);
        assert_eq!(body["lastUpdated"], body["currentTime"]);
        assert!(
            body["currentTime"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        health.drain();
        assert_eq!(health.healthz().0, 503);
        assert_eq!(health.livez().0, 200, "livez ignores eligibility");
        let mut out = String::new();
        health.render_prometheus(&mut out);
        assert!(
            out.contains("kubeproxy_proxy_healthz_total{code=\"200\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("kubeproxy_proxy_healthz_total{code=\"503\"} 1\n"));
        assert!(out.contains("kubeproxy_proxy_livez_total{code=\"200\"} 1\n"));
        assert!(out.contains("ferroplane_healthy 1\n"));
    }
}
