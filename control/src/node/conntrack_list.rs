//! `/conntrack`: the flow table like `conntrack -L`, streamed (chunked) a slice of buckets at a
//! time, filtered by pod, Service, address and state.
//!
//! Query: `pod=NS/NAME` (flows to or from the pod's address), `service=NS/NAME` (flows DNATed
//! for any port of the Service), `address=IPV4` (flows with that address on either side,
//! before or after NAT), `state=NAME` (`ESTABLISHED`, `SYN_SENT`, ..., `UNREPLIED`, `ASSURED`,
//! `ICMP`; any case). Several filters must all hold.
//!
//! Invariants: memory is one slice's lines, whatever the table's size (the client's reading
//! paces the scan); a filter naming nothing that exists is an error (404 or 400) before any
//! line is sent; the scan yields to the runtime between slices.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use dataplane::io::thread::monotonic_secs;
use dataplane::snapshot::Snapshot;
use dataplane::tables::conntrack::{Conntrack, FlowState, FlowView};
use futures_util::stream::{BoxStream, StreamExt};

use super::render::conntrack_line;
use super::server::Head;

/// Buckets scanned per chunk.
const SLICE: usize = 2048;

/// Which flows to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Each address must appear on a side of the flow.
    involving: Vec<Ipv4Addr>,
    /// The flow's Service must be one of these (when set).
    services: Option<Vec<u32>>,
    state: Option<FlowState>,
}

impl FlowFilter {
    /// The filter of a request's query, with names resolved in `snapshot`; `Err` is the status
    /// and the message for the client.
    pub fn parse(head: &Head, snapshot: &Snapshot) -> Result<FlowFilter, (u16, String)> {
        let mut filter = FlowFilter::default();
        if let Some(pod) = head.param("pod") {
            let found = snapshot.ports.pods().find(|p| *p.name == *pod);
            let Some(found) = found else {
                return Err((404, format!("no pod {pod:?} on this node\n")));
            };
            filter.involving.push(found.ip);
        }
        if let Some(address) = head.param("address") {
            let ip: Ipv4Addr = address
                .parse()
                .map_err(|_| (400, format!("address={address:?}: not an IPv4 address\n")))?;
            filter.involving.push(ip);
        }
        if let Some(service) = head.param("service") {
            let prefix = format!("{service}:");
            let ids: Vec<u32> = snapshot
                .services
                .iter()
                .filter(|(_, s)| s.name().starts_with(&prefix))
                .map(|(id, _)| id)
                .collect();
            if ids.is_empty() {
                return Err((404, format!("no Service {service:?} programmed\n")));
            }
            filter.services = Some(ids);
        }
        if let Some(state) = head.param("state") {
            let found = FlowState::ALL
                .into_iter()
                .find(|s| s.name().eq_ignore_ascii_case(&state));
            let Some(found) = found else {
                let names: Vec<&str> = FlowState::ALL.iter().map(|s| s.name()).collect();
                return Err((
                    400,
                    format!("state={state:?}: not one of {}\n", names.join(", ")),
                ));
            };
            filter.state = Some(found);
        }
        Ok(filter)
    }

    pub fn matches(&self, flow: &FlowView) -> bool {
        let sides = [
            flow.original.src,
            flow.original.dst,
            flow.reply.src,
            flow.reply.dst,
        ];
        self.involving.iter().all(|ip| sides.contains(ip))
            && self
                .services
                .as_ref()
                .is_none_or(|ids| ids.contains(&flow.service))
            && self.state.is_none_or(|s| s == flow.state)
    }
}

/// The lines of the flows in `buckets` that `filter` selects.
fn slice_lines(conntrack: &Conntrack, buckets: Range<usize>, filter: &FlowFilter) -> String {
    let mut text = String::new();
    conntrack.for_each_in(buckets, monotonic_secs(), |flow| {
        if filter.matches(flow) {
            text.push_str(&conntrack_line(flow));
            text.push('\n');
        }
    });
    text
}

/// The listing as a stream of chunks, one slice of buckets each (empty slices send nothing).
pub fn stream(conntrack: Arc<Conntrack>, filter: FlowFilter) -> BoxStream<'static, Bytes> {
    let total = conntrack.scan_buckets();
    futures_util::stream::unfold(0usize, move |next| {
        let conntrack = Arc::clone(&conntrack);
        let filter = filter.clone();
        async move {
            let mut next = next;
            while next < total {
                let end = (next + SLICE).min(total);
                let text = slice_lines(&conntrack, next..end, &filter);
                next = end;
                if !text.is_empty() {
                    return Some((Bytes::from(text), next));
                }
                tokio::task::yield_now().await;
            }
            None
        }
    })
    .boxed()
}
