//! Node publication for `--source kubernetes`: the node process writes its own VXLAN tunnel
//! endpoint on its Node object in flannel's annotation format (`backend-type: vxlan`,
//! `backend-data: {"VNI":N,"VtepMAC":".."}`, `public-ip`, `kube-subnet-manager: "true"`), so
//! its peers, and flannel-aware tools, find it the way they find a flannel node. The peers are
//! read back from the same annotations by the compiler ([`crate::model::node::published_vtep`]).
//!
//! Invariants:
//! - Only the node's own Node is written, and only `metadata.annotations`, with a JSON merge
//!   patch naming exactly the four annotations (the RBAC needs `patch` on nodes, nothing else).
//! - [`NodePublisher`] asks for a PATCH only when the Node as watched lacks an annotation or
//!   shows another value, and asks again for one Node version at most, so a PATCH whose
//!   result is not watched yet is not repeated; someone else changing the annotations later is
//!   a new version and is corrected.
//! - The public IP is the Node's first InternalIP; the VTEP MAC is the one already published
//!   if it is a unicast MAC (stable across restarts), else one derived from the node's name;
//!   the VNI is the cluster's.
//! - A failed PATCH is retried with backoff (1 s doubling to 30 s) by the watcher thread until
//!   it succeeds or a newer publication replaces it; failures are counted, never fatal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::model::node as node_model;
use crate::net::MacAddr;
use crate::node::log;
use crate::state::ClusterState;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// One node's annotations to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePublication {
    pub node: String,
    pub annotations: BTreeMap<String, String>,
}

impl NodePublication {
    /// The JSON merge patch (`application/merge-patch+json`) that writes the annotations.
    pub fn patch_body(&self) -> Value {
        json!({"metadata": {"annotations": self.annotations}})
    }
}

/// What the publisher has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicationStatus {
    /// PATCH requests that succeeded.
    pub published: u64,
    /// PATCH requests that failed (each is retried).
    pub failures: u64,
    /// The latest failure, naming the node.
    pub last_error: Option<String>,
}

/// The status shared between the watcher thread (which records) and readers.
#[derive(Debug, Default)]
pub(super) struct SharedStatus(Mutex<PublicationStatus>);

impl SharedStatus {
    pub(super) fn get(&self) -> PublicationStatus {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut PublicationStatus)) {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// The flannel annotations `node` should carry for cluster VNI `vni`, or why none can be
/// computed (no InternalIP yet).
pub fn wanted_annotations(node: &Node, vni: u32) -> Result<BTreeMap<String, String>, String> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let public_ip = node_model::internal_ip(node)
        .ok_or_else(|| format!("Node {name} has no InternalIP in status.addresses"))?;
    let mac = node_model::backend_data(node)
        .and_then(|data| data.vtep_mac.parse::<MacAddr>().ok())
        .filter(MacAddr::is_unicast)
        .unwrap_or_else(|| MacAddr::derived_from_name(name));
    Ok(node_model::flannel_annotations(public_ip, mac, vni))
}

/// Whether `node` already carries every one of `wanted`.
pub fn carries(node: &Node, wanted: &BTreeMap<String, String>) -> bool {
    let have = node.metadata.annotations.as_ref();
    wanted
        .iter()
        .all(|(key, value)| have.and_then(|a| a.get(key)) == Some(value))
}

/// Decides, from the watched cluster, when this node's annotations need writing.
#[derive(Debug)]
pub struct NodePublisher {
    node: String,
    /// The last publication asked for and the Node version it corrected.
    asked: Option<(NodePublication, Option<String>)>,
    /// The last reason none could be computed, logged once.
    blocked: Option<String>,
    /// This node's IPv6 underlay address (`nodeIP6`), published as `public-ipv6`.
    underlay6: Option<std::net::Ipv6Addr>,
}

impl NodePublisher {
    pub fn new(node: &str) -> NodePublisher {
        NodePublisher {
            node: node.to_owned(),
            asked: None,
            blocked: None,
            underlay6: None,
        }
    }

    /// Also publishes this node's IPv6 underlay address (`nodeIP6`) as flannel's
    /// `public-ipv6`, so that peers send it VXLAN over IPv6.
    pub fn with_underlay6(mut self, node_ip6: Option<std::net::Ipv6Addr>) -> NodePublisher {
        self.underlay6 = node_ip6;
        self
    }

    /// The publication to send now, if the Node as `state` shows it needs one.
    pub fn due(&mut self, state: &ClusterState) -> Option<NodePublication> {
        let node = state.node(&self.node)?;
        let wanted = match wanted_annotations(node, state.settings().vxlan_vni) {
            Ok(mut wanted) => {
                if let Some(ip6) = self.underlay6 {
                    wanted.insert(node_model::PUBLIC_IPV6.to_owned(), ip6.to_string());
                }
                wanted
            }
            Err(why) => {
                if self.blocked.as_ref() != Some(&why) {
                    log::warn(format_args!("not publishing the VTEP yet: {why}"));
                    self.blocked = Some(why);
                }
                return None;
            }
        };
        self.blocked = None;
        if carries(node, &wanted) {
            return None;
        }
        let publication = NodePublication {
            node: self.node.clone(),
            annotations: wanted,
        };
        let version = node.metadata.resource_version.clone();
        let asked = Some((publication.clone(), version));
        if self.asked == asked {
            return None;
        }
        self.asked = asked;
        Some(publication)
    }
}

/// Sends each publication received as a PATCH of its Node until `requests` closes; a failed
/// one is retried with backoff unless a newer one arrives first.
pub(super) async fn serve(
    client: Client,
    mut requests: mpsc::UnboundedReceiver<NodePublication>,
    status: Arc<SharedStatus>,
) {
    let api: Api<Node> = Api::all(client);
    let mut pending = None;
    let mut backoff = FIRST_RETRY;
    loop {
        let publication = match pending.take() {
            Some(publication) => publication,
            None => match requests.recv().await {
                Some(publication) => publication,
                None => return,
            },
        };
        let body = publication.patch_body();
        match api
            .patch(
                &publication.node,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => {
                backoff = FIRST_RETRY;
                status.update(|s| s.published += 1);
                log::info(format_args!(
                    "published the VTEP on Node {}: {body}",
                    publication.node
                ));
            }
            Err(error) => {
                let message = format!("patching Node {}: {error}", publication.node);
                log::warn(format_args!("{message} (retrying in {backoff:?})"));
                status.update(|s| {
                    s.failures += 1;
                    s.last_error = Some(message);
                });
                pending = match tokio::time::timeout(backoff, requests.recv()).await {
                    Ok(Some(newer)) => Some(newer),
                    Ok(None) => return,
                    Err(_) => Some(publication),
                };
                backoff = (backoff * 2).min(LAST_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Object;
    use crate::settings::ClusterSettings;

    fn node(annotations: Value, version: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "resourceVersion": version, "annotations": annotations},
            "spec": {"podCIDRs": ["fd00:1::/64", "10.244.3.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.50.2"}]},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn state_with(node: Node) -> ClusterState {
        let mut state = ClusterState::new(ClusterSettings::default());
        state.insert(Object::Node(Box::new(node)));
        state
    }

    #[test]
    fn the_pod_cidr_is_the_ipv4_one_of_pod_cidrs() {
        let n = node(json!({}), "1");
        assert_eq!(
            node_model::pod_cidr(&n).map(|c| c.to_string()).as_deref(),
            Some("10.244.3.0/24")
        );
    }

    #[test]
    fn a_publication_is_asked_once_per_node_version_and_not_when_carried() {
        let mut publisher = NodePublisher::new("n1");
        let first = publisher.due(&state_with(node(json!({}), "1")));
        let Some(first) = first else {
            panic!("an unpublished node is published")
        };
        let mac = MacAddr::derived_from_name("n1");
        assert_eq!(
            first.patch_body(),
            json!({"metadata": {"annotations": {
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/backend-data": format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}"),
                "flannel.alpha.coreos.com/public-ip": "192.168.50.2",
                "flannel.alpha.coreos.com/kube-subnet-manager": "true",
            }}})
        );
        // The PATCH is not watched yet: the same version asks nothing again.
        assert_eq!(publisher.due(&state_with(node(json!({}), "1"))), None);
        // Now it is: nothing to do.
        let carried = serde_json::to_value(&first.annotations).unwrap_or_default();
        assert_eq!(publisher.due(&state_with(node(carried, "2"))), None);
        // Someone strips one annotation (a new version): it is written again.
        let mut stripped = first.annotations.clone();
        stripped.remove(node_model::PUBLIC_IP);
        let stripped = serde_json::to_value(&stripped).unwrap_or_default();
        assert_eq!(
            publisher.due(&state_with(node(stripped, "3"))),
            Some(first.clone())
        );
    }

    #[test]
    fn a_published_unicast_mac_is_kept_and_a_multicast_one_replaced() {
        let kept = node(
            json!({(node_model::BACKEND_DATA): "{\"VNI\":7,\"VtepMAC\":\"6a:1f:0e:8b:2c:01\"}"}),
            "1",
        );
        let wanted = wanted_annotations(&kept, 1).unwrap_or_default();
        assert_eq!(
            wanted[node_model::BACKEND_DATA],
            "{\"VNI\":1,\"VtepMAC\":\"6a:1f:0e:8b:2c:01\"}"
        );
        let multicast = node(
            json!({(node_model::BACKEND_DATA): "{\"VNI\":1,\"VtepMAC\":\"01:00:5e:00:00:01\"}"}),
            "1",
        );
        let wanted = wanted_annotations(&multicast, 1).unwrap_or_default();
        assert!(!wanted[node_model::BACKEND_DATA].contains("01:00:5e"));
    }

    #[test]
    fn the_ipv6_underlay_address_is_published_with_the_vtep() {
        let bare = node(json!({}), "1");
        let ip6: std::net::Ipv6Addr = "2001:db8:50::2".parse().unwrap();
        let mut publisher = NodePublisher::new("n1").with_underlay6(Some(ip6));
        let publication = publisher.due(&state_with(bare)).unwrap();
        assert_eq!(
            publication.annotations.get(node_model::PUBLIC_IPV6),
            Some(&"2001:db8:50::2".to_owned())
        );
        assert!(publication.annotations.contains_key(node_model::PUBLIC_IP));
    }

    #[test]
    fn a_node_without_an_internal_ip_publishes_nothing_and_says_why() {
        let mut bare = node(json!({}), "1");
        bare.status = None;
        let why = wanted_annotations(&bare, 1).unwrap_err();
        assert!(why.contains("n1") && why.contains("InternalIP"), "{why}");
        assert_eq!(NodePublisher::new("n1").due(&state_with(bare)), None);
    }
}
