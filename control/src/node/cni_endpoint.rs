//! The CNI plugin's requests on the admin Unix socket (never on TCP): `POST /cni/attach?...`
//! records the attachment ([`Registry`]) and answers once the port manager has the pod's port
//! on every worker, or with why it could not; `POST /cni/detach?container=ID&ifname=IF`
//! forgets it (the port is detached after the next publication, as for a deleted Pod).
//!
//! Invariants: an attach that is refused (bad request, a hostPort another pod holds) or that
//! fails (the device cannot be opened within [`ATTACH_WAIT`]) leaves no record behind;
//! detach is idempotent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::json;

use super::attachments::Registry;
use super::log;
use super::ports::PortNames;
use super::server::{Head, Reply, polled_stream};
use crate::cni::attach::{ATTACH_WAIT, PodAttachment};

/// How often a waiting attach looks at the port names.
const POLL: Duration = Duration::from_millis(10);

pub struct CniEndpoint {
    pub registry: Arc<Registry>,
    pub names: Arc<ArcSwap<PortNames>>,
}

/// Where a waiting attach stands.
struct Waiting {
    registry: Arc<Registry>,
    names: Arc<ArcSwap<PortNames>>,
    attachment: PodAttachment,
    deadline: Instant,
    answered: bool,
}

impl Waiting {
    fn next(&mut self) -> Option<Option<Bytes>> {
        if self.answered {
            return None;
        }
        let key = self.attachment.pod_key();
        let names = self.names.load();
        let answer = if let Some(port) = names.find(&key) {
            let interface = names
                .label(port)
                .map(|l| l.interface.clone())
                .unwrap_or_default();
            json!({"port": port.0, "interface": interface})
        } else {
            let failure = self.registry.failure(&key).or_else(|| {
                (Instant::now() >= self.deadline).then(|| {
                    format!(
                        "the port of pod {key} was not attached within {}s",
                        ATTACH_WAIT.as_secs()
                    )
                })
            });
            let Some(failure) = failure else {
                return Some(None);
            };
            log::warn(format_args!("CNI attach of pod {key} failed: {failure}"));
            let _ = self
                .registry
                .detach(&self.attachment.container_id, &self.attachment.ifname);
            json!({"error": failure})
        };
        self.answered = true;
        Some(Some(Bytes::from(answer.to_string() + "\n")))
    }
}

impl CniEndpoint {
    /// The answer to a `/cni/...` request; `None` for any other path.
    pub fn handle(&self, request: &Head) -> Option<Reply> {
        let attach = match request.path.as_str() {
            "/cni/attach" => true,
            "/cni/detach" => false,
            _ => return None,
        };
        if request.method != "POST" {
            return Some(Reply::text(405, "only POST\n"));
        }
        Some(if attach {
            self.attach(request)
        } else {
            self.detach(request)
        })
    }

    fn attach(&self, request: &Head) -> Reply {
        let attachment = match PodAttachment::from_query(
            |name| request.param(name),
            |name| request.params(name).collect(),
        ) {
            Ok(attachment) => attachment,
            Err(error) => return Reply::text(400, format!("{error}\n")),
        };
        if let Err(error) = self.registry.attach(attachment.clone()) {
            let status = if error.contains("conflicts") {
                409
            } else {
                500
            };
            return Reply::text(status, format!("{error}\n"));
        }
        log::info(format_args!(
            "CNI attach: pod {} (container {}, {} in {}, {}, {} hostPorts)",
            attachment.pod_key(),
            attachment.container_id,
            attachment.ifname,
            attachment.netns,
            attachment.ip,
            attachment.host_ports.len()
        ));
        let waiting = Waiting {
            registry: Arc::clone(&self.registry),
            names: Arc::clone(&self.names),
            attachment,
            deadline: Instant::now() + ATTACH_WAIT,
            answered: false,
        };
        Reply::stream(
            "application/json",
            polled_stream(waiting, POLL, Waiting::next),
        )
    }

    fn detach(&self, request: &Head) -> Reply {
        let (Some(container), Some(ifname)) = (request.param("container"), request.param("ifname"))
        else {
            return Reply::text(400, "detach needs ?container=ID&ifname=IF\n");
        };
        match self.registry.detach(&container, &ifname) {
            Ok(was) => {
                if was {
                    log::info(format_args!("CNI detach: container {container} {ifname}"));
                }
                Reply::json(200, json!({"detached": was}).to_string() + "\n")
            }
            Err(error) => Reply::text(500, format!("{error}\n")),
        }
    }
}
