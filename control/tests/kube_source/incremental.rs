//! The incremental source (`connect_incremental`, what `ferroplane run --source kubernetes`
//! uses): watch events arrive as a queue of changes applied to one state, never as a copy of
//! every object; malformed and out-of-order events are reported and skipped.

use std::time::Duration;

use control::ClusterState;
use control::kube_source::{WatchChange, apply_changes};
use control::model::Kind;
use control::sync::input_health::{InputHealth, OUT_OF_ORDER};
use control::sync::trigger::TriggerTimes;
use serde_json::json;

use super::server::{ENDPOINT_SLICES, SERVICES};
use super::{Fixture, recorded, recorded_names, settings, state_names, wait_until};

/// Applies everything queued so far; returns the changed keys' names.
fn drain(fixture: &Fixture, state: &mut ClusterState, health: &mut InputHealth) -> Vec<String> {
    let mut triggers = TriggerTimes::default();
    apply_changes(state, fixture.source.take_changes(), health, &mut triggers)
        .into_iter()
        .map(|key| key.to_string())
        .collect()
}

#[test]
fn the_queue_carries_the_lists_then_each_event() {
    let fixture = Fixture::start_incremental();
    let mut state = ClusterState::new(settings());
    let mut health = InputHealth::default();
    let queued = fixture.source.take_changes();
    let relisted: Vec<Kind> = queued
        .iter()
        .filter_map(|change| match change {
            WatchChange::Relisted(kind, _) => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(relisted.len(), 6, "one list per watched kind: {relisted:?}");
    let mut triggers = TriggerTimes::default();
    apply_changes(&mut state, queued, &mut health, &mut triggers);
    assert_eq!(
        state_names(&state, Kind::Service),
        recorded_names("services.json")
    );
    assert_eq!(state_names(&state, Kind::Pod), recorded_names("pods.json"));
    // The stores stay empty: every object is held once, by the caller.
    assert_eq!(fixture.source.snapshot().services().count(), 0);

    fixture.api.wait_for_watches(ENDPOINT_SLICES, 1);
    let before = fixture.source.generation();
    fixture.api.push_event(
        ENDPOINT_SLICES,
        &recorded("watch/endpointslice-store-be-modified.json"),
    );
    fixture
        .source
        .wait_for_change(before, Duration::from_secs(20));
    let changed = drain(&fixture, &mut state, &mut health);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].contains("store-be-7xk2p"), "{changed:?}");
    let slices: Vec<_> = state.endpoint_slices_of("default", "store-be").collect();
    assert_eq!(slices[0].endpoints.len(), 2);
    assert_eq!(health.total(), 0);
}

#[test]
fn malformed_and_out_of_order_events_are_reported_and_skipped() {
    let fixture = Fixture::start_incremental();
    let mut state = ClusterState::new(settings());
    let mut health = InputHealth::default();
    drain(&fixture, &mut state, &mut health);
    fixture.api.wait_for_watches(SERVICES, 1);

    // A MODIFIED event whose object is not a Service.
    let errors = fixture.source.status().watch_errors;
    fixture.api.push_event(
        SERVICES,
        &json!({"type": "MODIFIED", "object": {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": 5}, "spec": "not a spec"}}),
    );
    wait_until("the malformed event is counted", || {
        fixture.source.status().watch_errors > errors
    });
    let status = fixture.source.status();
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("services: "),
        "{status:?}"
    );
    assert!(
        fixture.source.is_ready(),
        "a bad event never un-lists a kind"
    );

    // store-be at resourceVersion 1201 is newer than the recorded list's version of it: then
    // an event carrying an older version.
    let mut newer = recorded("watch/service-store-be-modified.json");
    newer["object"]["metadata"]["resourceVersion"] = json!("5000");
    let mut older = newer.clone();
    older["object"]["metadata"]["resourceVersion"] = json!("4000");
    older["object"]["spec"]["ports"][0]["port"] = json!(81);
    fixture.api.push_event(SERVICES, &newer);
    fixture.api.push_event(SERVICES, &older);
    let mut applied = Vec::new();
    wait_until("both events", || {
        applied.extend(drain(&fixture, &mut state, &mut health));
        health.errors.contains_key(OUT_OF_ORDER)
    });
    assert!(
        applied.iter().any(|k| k.contains("store-be")),
        "{applied:?}"
    );
    let store_be = state.service("default", "store-be").unwrap();
    assert_eq!(
        store_be.metadata.resource_version.as_deref(),
        Some("5000"),
        "the newer version stays"
    );
    assert_eq!(
        store_be.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        80
    );
    assert!(health.degraded);
}
