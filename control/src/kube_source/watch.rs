//! The watcher side of the Kubernetes source: client configuration, one reflector store per
//! watched kind, and the tasks that keep the stores current, all driven by one tokio
//! current-thread runtime on the source's own thread.
//!
//! Invariants: every store is written only by its watch task, and the change queue is fed by
//! it, both before [`Progress`] records the event, so a reader never sees a generation whose
//! event is not in the store and the queue yet. `managedFields` are cleared before an object is stored (nothing here reads
//! them, and they are often the largest part of an object). Watch failures are retried with
//! kube's default backoff forever; they are recorded, never fatal.

use std::fmt::Debug;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{Lookup, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::model::{Kind, Object, StoredKind};
use crate::state::ClusterState;

use super::changes::{ChangeQueue, WatchChange};
use super::progress::Progress;
use super::{KubeSourceConfig, KubeSourceError};

/// A k8s-openapi type the source watches.
pub(super) trait WatchedKind:
    Resource<DynamicType = ()> + StoredKind + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> WatchedKind for K where
    K: Resource<DynamicType = ()>
        + StoredKind
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// The read side of every reflector store.
pub(super) struct Stores {
    namespaces: Store<Namespace>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    network_policies: Store<NetworkPolicy>,
}

/// The write side of every reflector store, handed to the watcher thread.
pub(super) struct Writers {
    namespaces: Writer<Namespace>,
    nodes: Writer<Node>,
    pods: Writer<Pod>,
    services: Writer<Service>,
    endpoint_slices: Writer<EndpointSlice>,
    network_policies: Writer<NetworkPolicy>,
}

/// Empty stores and their writers.
pub(super) fn stores() -> (Stores, Writers) {
    let writers = Writers {
        namespaces: Writer::default(),
        nodes: Writer::default(),
        pods: Writer::default(),
        services: Writer::default(),
        endpoint_slices: Writer::default(),
        network_policies: Writer::default(),
    };
    let stores = Stores {
        namespaces: writers.namespaces.as_reader(),
        nodes: writers.nodes.as_reader(),
        pods: writers.pods.as_reader(),
        services: writers.services.as_reader(),
        endpoint_slices: writers.endpoint_slices.as_reader(),
        network_policies: writers.network_policies.as_reader(),
    };
    (stores, writers)
}

impl Stores {
    /// Copies every stored object into `state`.
    pub(super) fn copy_into(&self, state: &mut ClusterState) {
        copy_store(&self.namespaces, state);
        copy_store(&self.nodes, state);
        copy_store(&self.pods, state);
        copy_store(&self.services, state);
        copy_store(&self.endpoint_slices, state);
        copy_store(&self.network_policies, state);
    }
}

fn copy_store<K>(store: &Store<K>, state: &mut ClusterState)
where
    K: StoredKind + Lookup<DynamicType = ()> + Clone + 'static,
{
    for object in store.state() {
        state.insert(Arc::unwrap_or_clone(object).into_object());
    }
}

/// Loads the client configuration: the given kubeconfig file, or the default kubeconfig when
/// only a context is given, or else kube's inference (`KUBECONFIG` or `~/.kube/config`, then the
/// in-cluster service account when running in a pod).
pub(super) async fn load_config(config: &KubeSourceConfig) -> Result<Config, KubeSourceError> {
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(KubeSourceError::Kubeconfig)?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(KubeSourceError::Kubeconfig)
        }
        None if config.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(KubeSourceError::Kubeconfig),
        None => Config::infer().await.map_err(KubeSourceError::Infer),
    }
}

/// Creates the client; must run inside the runtime that will drive it.
pub(super) fn client(config: Config) -> Result<Client, KubeSourceError> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Fails only if another thread installed one in between, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Client::try_from(config).map_err(KubeSourceError::Client)
}

/// Watches every kind until the returned future is dropped, into the stores (`writers`), the
/// change queue (`queue`), or both.
pub(super) fn watch_all(
    client: &Client,
    writers: Option<Writers>,
    queue: Option<&Arc<ChangeQueue>>,
    progress: &Arc<Progress>,
) -> impl Future<Output = ()> + use<> {
    let (namespaces, nodes, pods, services, endpoint_slices, network_policies) = match writers {
        Some(w) => (
            Some(w.namespaces),
            Some(w.nodes),
            Some(w.pods),
            Some(w.services),
            Some(w.endpoint_slices),
            Some(w.network_policies),
        ),
        None => (None, None, None, None, None, None),
    };
    let watchers: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = vec![
        Box::pin(follow(client, namespaces, queue, progress)),
        Box::pin(follow(client, nodes, queue, progress)),
        Box::pin(follow(client, pods, queue, progress)),
        Box::pin(follow(client, services, queue, progress)),
        Box::pin(follow(client, endpoint_slices, queue, progress)),
        Box::pin(follow(client, network_policies, queue, progress)),
    ];
    async move {
        futures_util::future::join_all(watchers).await;
    }
}

/// Queues what one event did; a re-list is gathered in `relist` until `InitDone`. A changed
/// object is moved into the queue (its only reader); a listed one is copied, which sizes its
/// lists exactly (decoding leaves them with growth slack), keeping the cold state compact.
fn queue_event<K: WatchedKind>(queue: &ChangeQueue, relist: &mut Vec<Object>, event: Event<K>) {
    match event {
        Event::Apply(object) => queue.push(WatchChange::Applied(object.into_object())),
        Event::Delete(object) => {
            queue.push(WatchChange::Deleted(object.into_object().object_ref()));
        }
        Event::Init => relist.clear(),
        Event::InitApply(object) => relist.push(object.clone().into_object()),
        Event::InitDone => queue.push(WatchChange::Relisted(K::KIND, std::mem::take(relist))),
    }
}

/// Lists and watches one kind cluster-wide into its store and queue, recording every event.
fn follow<K: WatchedKind>(
    client: &Client,
    mut writer: Option<Writer<K>>,
    queue: Option<&Arc<ChangeQueue>>,
    progress: &Arc<Progress>,
) -> impl Future<Output = ()> + Send + use<K> {
    let api: Api<K> = Api::all(client.clone());
    let progress = Arc::clone(progress);
    let queue = queue.cloned();
    let kind: Kind = K::KIND;
    async move {
        let events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|object: &mut K| object.managed_fields_mut().clear());
        let mut events = pin!(events);
        let mut relist = Vec::new();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    progress.record_error(kind, &error);
                    continue;
                }
            };
            if let Some(writer) = writer.as_mut() {
                writer.apply_watcher_event(&event);
            }
            let changed = matches!(event, Event::Apply(_) | Event::Delete(_));
            // A (re-)list in progress (`Init`, `InitApply`) is buffered until `InitDone`.
            let listed = matches!(event, Event::InitDone);
            if let Some(queue) = &queue {
                queue_event(queue, &mut relist, event);
            }
            if changed {
                progress.record_change();
            } else if listed {
                progress.record_listed(kind);
            }
        }
    }
}
