//! The sync loop against a real (temporary) state directory written through transactions.

use std::net::Ipv4Addr;
use std::time::Duration;

use dataplane::flow::{FlowKey, L4Proto};
use dataplane::tables::conntrack::{ConntrackConfig, NewFlow, flags};

use super::*;
use crate::compile::tests::{NODE_A, NODE_B, node, pod};
use crate::manifest;
use crate::model::{Kind, ObjectRef};
use crate::transaction::Transaction;

const WEB: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: dns
    port: 53
    protocol: UDP
";

fn apply(dir: &StateDir, yaml: &str) {
    let mut transaction = Transaction::begin(dir).unwrap();
    for entry in manifest::parse("test.yaml", yaml) {
        transaction
            .server()
            .apply(entry.result.unwrap(), None)
            .unwrap();
    }
    transaction.commit().unwrap();
}

fn delete(dir: &StateDir, key: &ObjectRef) {
    let mut transaction = Transaction::begin(dir).unwrap();
    transaction.server().delete(key).unwrap();
    transaction.commit().unwrap();
}

struct Fixture {
    _temp: tempfile::TempDir,
    dir: StateDir,
    ct: Arc<Conntrack>,
}

impl Fixture {
    /// Two nodes, the `web` Service and one endpoint pod on node-a.
    fn new() -> Fixture {
        let temp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(temp.path());
        apply(
            &dir,
            &[node(NODE_A, "192.168.50.11"), node(NODE_B, "192.168.50.12")].concat(),
        );
        apply(&dir, WEB);
        apply(&dir, &pod("default", "w1", "app=web", NODE_A, &[]));
        let ct = Arc::new(Conntrack::new(ConntrackConfig {
            capacity: 1024,
            ..ConntrackConfig::default()
        }));
        Fixture {
            _temp: temp,
            dir,
            ct,
        }
    }

    /// The clocks now (flow-table time 100).
    fn clock(&self) -> SyncClock {
        SyncClock::now(100)
    }

    fn start(&self) -> Syncer {
        let ports: PortSource = Box::new(|state| PortAssignments::sequential(state, NODE_A));
        Syncer::start(
            self.dir.clone(),
            NODE_A,
            NodeLocal::default(),
            ports,
            vec![self.ct.clone()],
            self.clock(),
        )
        .unwrap()
    }

    fn ip(&self, name: &str) -> Ipv4Addr {
        let state = ClusterState::load(self.dir.root()).unwrap();
        let ip = crate::model::pod::pod_ip(state.pod("default", name).unwrap()).unwrap();
        ip.to_string().parse().unwrap()
    }

    /// Bumps the generation file without a transaction, as a writer that broke a file would.
    fn bump_generation(&self) {
        let next = self.dir.read_generation().unwrap() + 1;
        std::fs::write(self.dir.generation_path(), format!("{next}\n")).unwrap();
    }
}

/// The backends of the `web` DNS port in the published snapshot.
fn web_backends(syncer: &Syncer) -> Vec<Ipv4Addr> {
    let snapshot = syncer.cell().load();
    let service = snapshot
        .services
        .iter()
        .map(|(_, s)| s)
        .find(|s| &**s.name() == "default/web:dns")
        .map(|s| s.backends().iter().map(|b| b.ip).collect());
    service.unwrap_or_default()
}

#[test]
fn a_committed_change_is_published_by_the_next_poll() {
    let f = Fixture::new();
    let mut syncer = f.start();
    let w1 = f.ip("w1");
    assert_eq!(web_backends(&syncer), [w1]);
    assert_eq!(syncer.cell().load().generation, 1);
    assert_eq!(syncer.poll(f.clock()), PollOutcome::Idle);

    apply(&f.dir, &pod("default", "w2", "app=web", NODE_B, &[]));
    let outcome = syncer.poll(f.clock());
    let PollOutcome::Published {
        generation,
        changed,
        full,
        ..
    } = outcome
    else {
        panic!("expected a publication, got {outcome:?}");
    };
    assert_eq!(generation, 2);
    assert!(!full);
    assert!(changed >= 2, "the pod and web's slice changed: {changed}");
    let mut want = vec![w1, f.ip("w2")];
    want.sort();
    assert_eq!(web_backends(&syncer), want);
    assert_eq!(syncer.poll(f.clock()), PollOutcome::Idle);

    let m = syncer.metrics();
    assert_eq!(m.syncs, 2);
    assert_eq!(m.sync_failures, 0);
    assert_eq!(
        m.programming_latency.count(),
        1,
        "one change was programmed"
    );
    assert_eq!(m.objects.service_ports, 1);
    assert_eq!(m.objects.endpoints, 2);
    assert_eq!(m.objects.local_pods, 1);
    assert_eq!(m.objects.remote_nodes, 1);
    // The counts kept up per sync are those of the published snapshot counted afresh.
    assert_eq!(
        m.objects,
        super::metrics::ObjectCounts::of(&syncer.cell().load(), syncer.problems().len())
    );
}

#[test]
fn a_corrupt_state_never_replaces_the_good_snapshot() {
    let f = Fixture::new();
    let mut syncer = f.start();
    let w1 = f.ip("w1");
    let settings = std::fs::read(f.dir.settings_path()).ok();
    std::fs::write(f.dir.settings_path(), b"{ not json").unwrap();
    f.bump_generation();
    for _ in 0..2 {
        assert!(matches!(syncer.poll(f.clock()), PollOutcome::Failed(_)));
    }
    assert_eq!(syncer.cell().load().generation, 1, "nothing was published");
    assert_eq!(web_backends(&syncer), [w1]);
    assert_eq!(syncer.metrics().sync_failures, 2);
    assert_eq!(syncer.metrics().pending_changes, 1);

    match settings {
        Some(bytes) => std::fs::write(f.dir.settings_path(), bytes).unwrap(),
        None => std::fs::remove_file(f.dir.settings_path()).unwrap(),
    }
    assert!(matches!(
        syncer.poll(f.clock()),
        PollOutcome::Published { .. }
    ));
    assert_eq!(syncer.metrics().pending_changes, 0);
    assert_eq!(web_backends(&syncer), [w1]);
}

#[test]
fn an_unreadable_object_at_the_first_load_is_an_error_not_skipped() {
    let f = Fixture::new();
    apply(&f.dir, &pod("default", "db", "app=db", NODE_A, &[]));
    let policy = f.dir.object_path(&ObjectRef::new(
        Kind::NetworkPolicy,
        "default",
        "isolate-db",
    ));
    std::fs::create_dir_all(policy.parent().unwrap()).unwrap();
    std::fs::write(&policy, b"{ not a policy").unwrap();
    let ports: PortSource = Box::new(|state| PortAssignments::sequential(state, NODE_A));
    let started = Syncer::start(
        f.dir.clone(),
        NODE_A,
        NodeLocal::default(),
        ports,
        vec![f.ct.clone()],
        f.clock(),
    );
    let Err(error) = started else {
        panic!("started with a corrupt NetworkPolicy file")
    };
    let error = error.to_string();
    assert!(error.contains(&policy.display().to_string()), "{error}");
    assert!(error.contains("not starting without it"), "{error}");
}

#[test]
fn an_unreadable_object_keeps_its_last_good_version() {
    let f = Fixture::new();
    let mut syncer = f.start();
    let w1 = f.ip("w1");
    let service = f
        .dir
        .object_path(&ObjectRef::new(Kind::Service, "default", "web"));
    std::fs::write(&service, b"garbage").unwrap();
    f.bump_generation();
    assert!(matches!(
        syncer.poll(f.clock()),
        PollOutcome::Published { .. }
    ));
    assert_eq!(web_backends(&syncer), [w1], "web is still programmed");
    let problem = syncer
        .problems()
        .iter()
        .find(|p| p.object == "Service default/web")
        .unwrap_or_else(|| panic!("{:?}", syncer.problems()));
    assert!(problem.message.contains("last good"), "{problem}");
}

#[test]
fn resyncs_run_periodically_and_on_request() {
    let f = Fixture::new();
    let mut syncer = f.start().with_resync_interval(Duration::from_secs(30));
    let now = f.clock();
    let later = SyncClock {
        mono: now.mono + Duration::from_secs(31),
        ..now
    };
    assert_eq!(syncer.poll(now), PollOutcome::Idle);
    assert!(matches!(
        syncer.poll(later),
        PollOutcome::Published { full: true, .. }
    ));
    assert_eq!(syncer.poll(later), PollOutcome::Idle);
    syncer.request_sync();
    assert!(matches!(
        syncer.poll(later),
        PollOutcome::Published {
            full: false,
            changed: 0,
            ..
        }
    ));
}

#[test]
fn udp_flows_to_a_removed_backend_are_flushed_on_publication() {
    let f = Fixture::new();
    let mut syncer = f.start();
    let w1 = f.ip("w1");
    let client = Ipv4Addr::new(10, 244, 1, 50);
    let flow = NewFlow {
        original: FlowKey::new(
            L4Proto::Udp,
            client,
            40000,
            Ipv4Addr::new(10, 96, 0, 99),
            53,
        ),
        reply: FlowKey::new(L4Proto::Udp, w1, 53, client, 40000),
        service: 1,
        backend: 0,
        flags: flags::DNAT,
        tcp_flags: 0,
    };
    f.ct.insert(&flow, f.clock().conntrack).unwrap();
    assert_eq!(f.ct.len(), 1);
    delete(&f.dir, &ObjectRef::new(Kind::Pod, "default", "w1"));
    assert!(matches!(
        syncer.poll(f.clock()),
        PollOutcome::Published { .. }
    ));
    assert!(web_backends(&syncer).is_empty());
    assert_eq!(f.ct.len(), 0, "the flow to the removed UDP backend is gone");
}

#[test]
fn metrics_render_in_the_prometheus_format() {
    let f = Fixture::new();
    let mut syncer = f.start();
    apply(&f.dir, &pod("default", "w2", "app=web", NODE_B, &[]));
    syncer.poll(f.clock());
    let mut out = String::new();
    syncer.metrics().render_prometheus(&mut out);
    for line in [
        "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
        "kubeproxy_sync_proxy_rules_duration_seconds_count 2",
        "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
        "ferroplane_sync_proxy_rules_sync_failures_total 0",
        "ferroplane_sync_proxy_rules_pending_changes 0",
        "kubeproxy_network_programming_duration_seconds_count 1",
        "ferroplane_sync_proxy_rules_objects{kind=\"endpoints\"} 2",
        "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"internal\"} 0",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn a_sync_reads_only_the_objects_the_change_log_names() {
    let f = Fixture::new();
    let mut syncer = f.start();
    apply(&f.dir, &pod("default", "w2", "app=web", NODE_B, &[]));
    // Damage a file the commit did not touch: an incremental sync never reads it (a full
    // load would report it).
    let node_b = f.dir.object_path(&ObjectRef::new(Kind::Node, "", NODE_B));
    std::fs::write(&node_b, b"garbage").unwrap();
    let outcome = syncer.poll(f.clock());
    assert!(
        matches!(outcome, PollOutcome::Published { full: false, .. }),
        "{outcome:?}"
    );
    assert_eq!(web_backends(&syncer).len(), 2);
    assert!(
        syncer.problems().is_empty(),
        "node-b was read: {:?}",
        syncer.problems()
    );
    assert_eq!(syncer.metrics().input.total(), 0);
}

#[test]
fn a_truncated_change_log_falls_back_to_a_full_load_and_is_reported() {
    let f = Fixture::new();
    let mut syncer = f.start();
    let log = f.dir.change_log();
    let before = std::fs::read(log.path()).unwrap();
    apply(&f.dir, &pod("default", "w2", "app=web", NODE_B, &[]));
    // Cut the log back to before the commit: it no longer reaches the state's generation.
    std::fs::write(log.path(), &before).unwrap();
    let outcome = syncer.poll(f.clock());
    assert!(
        matches!(outcome, PollOutcome::Published { .. }),
        "{outcome:?}"
    );
    assert_eq!(web_backends(&syncer).len(), 2, "the full load saw w2");
    let input = &syncer.metrics().input;
    assert_eq!(input.errors.get(input_health::CHANGE_LOG), Some(&1));
    assert!(input.degraded);
    let message = input.last_error.clone().unwrap();
    assert!(message.contains("truncated"), "{message}");
    let mut out = String::new();
    syncer.metrics().render_prometheus(&mut out);
    assert!(out.contains("ferroplane_sync_input_errors_total{reason=\"change_log\"} 1\n"));
    // The next commit starts the log afresh; syncs are incremental and clean again.
    apply(&f.dir, &pod("default", "w3", "app=web", NODE_B, &[]));
    assert!(matches!(
        syncer.poll(f.clock()),
        PollOutcome::Published { full: false, .. }
    ));
    assert_eq!(web_backends(&syncer).len(), 3);
    assert!(!syncer.metrics().input.degraded);
}
