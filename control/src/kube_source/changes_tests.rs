use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::model::StoredKind;
use crate::settings::ClusterSettings;
use crate::sync::metrics::TRIGGER_TIME_ANNOTATION;

fn service(name: &str, version: &str) -> Object {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            resource_version: Some(version.to_owned()),
            ..ObjectMeta::default()
        },
        ..Service::default()
    }
    .into_object()
}

fn slice(name: &str, trigger: &str) -> Object {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            annotations: Some(BTreeMap::from([(
                TRIGGER_TIME_ANNOTATION.to_owned(),
                trigger.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_owned(),
        ..EndpointSlice::default()
    }
    .into_object()
}

#[test]
fn events_apply_in_order_and_name_each_changed_object_once() {
    let mut state = ClusterState::new(ClusterSettings::default());
    let mut health = InputHealth::default();
    let mut triggers = TriggerTimes::default();
    let queue = ChangeQueue::default();
    queue.push(WatchChange::Relisted(
        Kind::Service,
        vec![service("a", "1"), service("b", "2")],
    ));
    queue.push(WatchChange::Applied(service("a", "3")));
    queue.push(WatchChange::Deleted(ObjectRef::new(
        Kind::Service,
        "default",
        "b",
    )));
    let changed = apply_changes(&mut state, queue.take(), &mut health, &mut triggers);
    assert!(queue.take().is_empty());
    assert_eq!(
        changed,
        vec![
            ObjectRef::new(Kind::Service, "default", "a"),
            ObjectRef::new(Kind::Service, "default", "b")
        ]
    );
    let a = state.service("default", "a").unwrap();
    assert_eq!(a.metadata.resource_version.as_deref(), Some("3"));
    assert!(state.service("default", "b").is_none());
    // A re-list that drops `a` and brings `c` replaces the kind's objects.
    let changed = apply_changes(
        &mut state,
        vec![WatchChange::Relisted(
            Kind::Service,
            vec![service("c", "4")],
        )],
        &mut health,
        &mut triggers,
    );
    assert_eq!(changed.len(), 2);
    assert_eq!(state.services().count(), 1);
    assert_eq!(health.total(), 0);
}

#[test]
fn an_older_version_after_a_newer_one_is_ignored_and_reported() {
    let mut state = ClusterState::new(ClusterSettings::default());
    let mut health = InputHealth::default();
    let mut triggers = TriggerTimes::default();
    let changes = vec![
        WatchChange::Applied(service("a", "7")),
        WatchChange::Applied(service("a", "5")),
    ];
    apply_changes(&mut state, changes, &mut health, &mut triggers);
    let a = state.service("default", "a").unwrap();
    assert_eq!(a.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(health.errors.get(input_health::OUT_OF_ORDER), Some(&1));
    assert!(health.degraded);
    let message = health.last_error.unwrap();
    assert!(
        message.contains("services/default/a") || message.contains("default/a"),
        "{message}"
    );
    assert!(message.contains("resourceVersion 5 after 7"), "{message}");
}

#[test]
fn slice_trigger_times_become_programming_latencies() {
    let mut state = ClusterState::new(ClusterSettings::default());
    let mut health = InputHealth::default();
    let mut triggers = TriggerTimes::default();
    let changes = vec![
        WatchChange::Applied(slice("web-1", "2026-01-01T00:00:00Z")),
        WatchChange::Applied(slice("web-2", "not a time")),
    ];
    apply_changes(&mut state, changes, &mut health, &mut triggers);
    assert!(triggers.has_pending());
    let at: jiff::Timestamp = "2026-01-01T00:00:01.5Z".parse().unwrap();
    let mut histogram = crate::sync::metrics::Histogram::new(&[1.0, 2.0]);
    triggers.published(std::time::SystemTime::from(at), &mut histogram);
    assert_eq!(
        triggers.last_batch(),
        [std::time::Duration::from_millis(1500)]
    );
    assert_eq!(histogram.count(), 1);
    assert!(!triggers.has_pending());
}
