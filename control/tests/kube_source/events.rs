//! Watch events after the initial lists: ADDED, MODIFIED and DELETED change the snapshot and
//! bump the generation; a broken stream reconnects from the last bookmark; `410 Gone` re-lists.

use std::time::Duration;

use control::model::Kind;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::server::{ENDPOINT_SLICES, PODS, SERVICES};
use super::{Fixture, recorded, recorded_names, state_names, wait_until};

#[test]
fn modified_and_added_services_show_in_the_next_snapshot() {
    let fixture = Fixture::start();
    fixture.api.wait_for_watches(SERVICES, 1);
    let before = fixture.source.generation();
    assert_eq!(fixture.source.snapshot().generation(), before);

    fixture
        .api
        .push_event(SERVICES, &recorded("watch/service-store-be-modified.json"));
    let after = fixture
        .source
        .wait_for_change(before, Duration::from_secs(20));
    assert!(after > before);
    let state = fixture.source.snapshot();
    assert!(state.generation() >= after);
    let ports = state
        .service("default", "store-be")
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .ports
        .clone();
    let ports: Vec<(Option<String>, i32)> = ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.port))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("http".to_owned()), 80),
            (Some("metrics".to_owned()), 9090)
        ]
    );

    fixture
        .api
        .push_event(SERVICES, &recorded("watch/service-store-fe-added.json"));
    wait_until("store-fe", || {
        fixture
            .source
            .snapshot()
            .service("default", "store-fe")
            .is_some()
    });
    let state = fixture.source.snapshot();
    let store_fe = state.service("default", "store-fe").unwrap();
    assert_eq!(
        store_fe.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].target_port,
        Some(IntOrString::String("http".to_owned()))
    );
    assert!(state.generation() > after);
}

#[test]
fn deleted_events_remove_objects() {
    let fixture = Fixture::start();
    fixture.api.wait_for_watches(PODS, 1);
    fixture.api.wait_for_watches(ENDPOINT_SLICES, 1);
    let before = fixture.source.generation();

    fixture
        .api
        .push_event(PODS, &recorded("watch/pod-store-be-3-deleted.json"));
    fixture.api.push_event(
        ENDPOINT_SLICES,
        &recorded("watch/endpointslice-store-be-modified.json"),
    );
    wait_until("store-be-3 gone", || {
        fixture
            .source
            .snapshot()
            .pod("default", "store-be-3")
            .is_none()
    });
    wait_until("the slice update", || {
        let state = fixture.source.snapshot();
        let slices: Vec<_> = state.endpoint_slices_of("default", "store-be").collect();
        slices.len() == 1 && slices[0].endpoints.len() == 2
    });

    let state = fixture.source.snapshot();
    let mut expected = recorded_names("pods.json");
    assert!(expected.remove(&("default".to_owned(), "store-be-3".to_owned())));
    assert_eq!(state_names(&state, Kind::Pod), expected);
    assert!(state.generation() >= before + 2);
}

#[test]
fn a_broken_watch_reconnects_from_the_last_bookmark() {
    let fixture = Fixture::start();
    let first = fixture.api.wait_for_watches(SERVICES, 1);
    // The first watch starts at the list's resourceVersion.
    assert_eq!(
        first[0].param("resourceVersion"),
        recorded("services.json")["metadata"]["resourceVersion"].as_str()
    );

    fixture
        .api
        .push_event(SERVICES, &recorded("watch/services-bookmark.json"));
    fixture.api.break_watch(SERVICES);
    let watches = fixture.api.wait_for_watches(SERVICES, 2);
    assert_eq!(watches.len(), 2, "no second watch after the break");
    let bookmark = recorded("watch/services-bookmark.json");
    assert_eq!(
        watches[1].param("resourceVersion"),
        bookmark["object"]["metadata"]["resourceVersion"].as_str()
    );
    // kube reads a stream cut mid-chunk as the end of the watch (API servers end watches that
    // way on timeout): no error, an immediate re-watch, and no re-list.
    assert!(fixture.source.is_ready());
    let service_lists = fixture
        .api
        .requests()
        .into_iter()
        .filter(|r| r.path == SERVICES && !r.is_watch())
        .count();
    assert_eq!(service_lists, 1);

    fixture
        .api
        .push_event(SERVICES, &recorded("watch/service-store-fe-added.json"));
    wait_until("store-fe over the new watch", || {
        fixture
            .source
            .snapshot()
            .service("default", "store-fe")
            .is_some()
    });
}

#[test]
fn failing_watch_requests_are_retried_with_backoff() {
    let fixture = Fixture::start();
    fixture.api.wait_for_watches(SERVICES, 1);
    let error = std::fs::read(super::recorded_dir().join("status-internal-error.json")).unwrap();
    fixture.api.fail_watches(SERVICES, 2, 500, &error);
    fixture
        .api
        .push_event(SERVICES, &recorded("watch/services-bookmark.json"));
    fixture.api.break_watch(SERVICES);

    // The original watch, two refused ones, then one that holds.
    let watches = fixture.api.wait_for_watches(SERVICES, 4);
    assert_eq!(watches.len(), 4);
    let bookmark = recorded("watch/services-bookmark.json");
    for watch in &watches[1..] {
        assert_eq!(
            watch.param("resourceVersion"),
            bookmark["object"]["metadata"]["resourceVersion"].as_str()
        );
    }
    let status = fixture.source.status();
    assert!(status.watch_errors >= 2, "{status:?}");
    let last_error = status.last_error.unwrap();
    assert!(
        last_error.starts_with("services: ") && last_error.contains("leader changed"),
        "{last_error}"
    );
    assert!(fixture.source.is_ready());

    fixture
        .api
        .push_event(SERVICES, &recorded("watch/service-store-fe-added.json"));
    wait_until("store-fe after the retries", || {
        fixture
            .source
            .snapshot()
            .service("default", "store-fe")
            .is_some()
    });
}

#[test]
fn an_expired_watch_relists_and_replaces_the_store() {
    let fixture = Fixture::start();
    fixture.api.wait_for_watches(PODS, 1);
    let relist = std::fs::read(super::recorded_dir().join("pods-relist.json")).unwrap();
    fixture.api.replace_list(PODS, relist);

    fixture
        .api
        .push_event(PODS, &recorded("watch/pods-gone.json"));
    let expected = recorded_names("pods-relist.json");
    wait_until("the re-listed pods", || {
        state_names(&fixture.source.snapshot(), Kind::Pod) == expected
    });
    assert!(fixture.source.is_ready());
    assert!(fixture.source.status().watch_errors >= 1);
    // The watch after the re-list starts at the new list's resourceVersion.
    let watches = fixture.api.wait_for_watches(PODS, 2);
    assert_eq!(
        watches[1].param("resourceVersion"),
        recorded("pods-relist.json")["metadata"]["resourceVersion"].as_str()
    );
}
