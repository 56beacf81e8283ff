//! The admin endpoint: HTTP on a Unix socket (and, when configured, on TCP with a bearer
//! token, over TLS when a certificate is configured) serving `/metrics`, `/stats`,
//! `/conntrack` (streamed, filtered, see `conntrack_list`), `/healthz`, `/livez`, the live
//! event stream `/monitor?type=drop|policy-verdict` and packet capture `/capture?port=NAME`
//! (pcap); and the metrics listener (kube-proxy's `metricsBindAddress`, `/metrics` only).
//!
//! Invariants: every answer is built from published copies (see `render`); a streaming
//! client holds one subscription that ends when it disconnects or stops reading (see
//! `server`); a TCP request without the token gets 401 and nothing else; at most
//! [`MAX_STREAMS`] streams run at once per process.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use dataplane::snapshot::SnapshotCell;
use dataplane::tables::conntrack::Conntrack;
use dataplane::worker::WorkerReport;
use futures_util::stream::BoxStream;
use tokio_rustls::TlsAcceptor;

use super::cni_endpoint::CniEndpoint;
use super::conntrack_list::{self, FlowFilter};
use super::liveness::ProxyHealth;
use super::observe::Observers;
use super::pcap;
use super::ports::PortNames;
use super::render::{self, MetricsInput};
use super::server::{
    Access, Bound, Handler, Head, HttpRuntime, Limits, Reply, Serving, polled_stream,
};
use crate::sync::metrics::SyncMetrics;

/// Frames or events a slow streaming client may lag behind before it loses some.
const STREAM_DEPTH: usize = 8192;
/// Streams (`/monitor`, `/capture`, `/conntrack`) running at once, over every listener.
pub const MAX_STREAMS: usize = 16;
/// How often a stream with nothing to send looks again.
const STREAM_IDLE: Duration = Duration::from_millis(20);

/// What the admin endpoint reads.
pub struct AdminState {
    pub node: String,
    pub reports: Vec<Arc<ArcSwap<WorkerReport>>>,
    pub conntrack: Arc<Conntrack>,
    pub adopted_flows: u64,
    pub names: Arc<ArcSwap<PortNames>>,
    pub sync: Mutex<SyncMetrics>,
    pub cells: Arc<ArcSwap<SnapshotCell>>,
    pub observers: Arc<Observers>,
    pub health: Arc<ProxyHealth>,
    /// Streams running now.
    pub streams: Arc<AtomicUsize>,
}

/// One running stream's place among [`MAX_STREAMS`]; freed when the stream ends.
struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    fn take(streams: &Arc<AtomicUsize>) -> Option<StreamSlot> {
        streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(Arc::clone(streams)))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn too_many_streams() -> Reply {
    Reply::text(
        503,
        format!("{MAX_STREAMS} streams already run; try again later\n"),
    )
}

impl AdminState {
    fn with_input<T>(&self, f: impl FnOnce(&MetricsInput<'_>) -> T) -> T {
        let reports: Vec<WorkerReport> = self
            .reports
            .iter()
            .map(|r| WorkerReport::clone(&r.load()))
            .collect();
        let names = self.names.load();
        let sync = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
        f(&MetricsInput {
            reports: &reports,
            names: &names,
            conntrack: self.conntrack.stats(),
            conntrack_capacity: self.conntrack.capacity(),
            adopted_flows: self.adopted_flows,
            generation: self.cells.load().load().generation,
            sync: &sync,
            monitor_lost: self.observers.events.lost(),
            capture_lost: self.observers.capture.lost(),
        })
    }

    /// The Prometheus exposition: the dataplane's, the sync loop's and the health's.
    pub fn metrics_text(&self) -> String {
        let mut text = self.with_input(render::metrics);
        self.health.render_prometheus(&mut text);
        text
    }

    fn handle(&self, request: &Head) -> Reply {
        if request.method != "GET" {
            return Reply::text(405, "only GET\n");
        }
        match request.path.as_str() {
            "/metrics" => Reply::whole(200, "text/plain; version=0.0.4", self.metrics_text()),
            "/stats" => {
                let json = self.with_input(|input| render::stats(input, &self.node));
                let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
                Reply::json(200, text)
            }
            "/conntrack" => self.conntrack(request),
            "/healthz" => {
                let (status, body) = self.health.healthz();
                Reply::json(status, body)
            }
            "/livez" => {
                let (status, body) = self.health.livez();
                Reply::json(status, body)
            }
            "/monitor" => self.monitor(request),
            "/capture" => self.capture(request),
            _ => Reply::text(404, "not found\n"),
        }
    }

    fn conntrack(&self, request: &Head) -> Reply {
        let filter = match FlowFilter::parse(request, &self.cells.load().load()) {
            Ok(filter) => filter,
            Err((status, message)) => return Reply::text(status, message),
        };
        let Some(slot) = StreamSlot::take(&self.streams) else {
            return too_many_streams();
        };
        let lines = conntrack_list::stream(Arc::clone(&self.conntrack), filter);
        Reply::stream("text/plain; charset=utf-8", holding(slot, lines))
    }

    /// The event stream: `type=drop` (the default) every drop, `type=policy-verdict` every
    /// NetworkPolicy verdict on a new flow of an isolated pod, allowed or denied.
    fn monitor(&self, request: &Head) -> Reply {
        let drops = match request.param("type").as_deref() {
            None | Some("drop") => true,
            Some("policy-verdict" | "policy") => false,
            Some(other) => {
                let message = format!("unknown monitor type {other:?} (drop, policy-verdict)\n");
                return Reply::text(400, message);
            }
        };
        let Some(slot) = StreamSlot::take(&self.streams) else {
            return too_many_streams();
        };
        let events = self.observers.events.subscribe(None, STREAM_DEPTH);
        let names = Arc::clone(&self.names);
        let body = polled_stream((events, slot), STREAM_IDLE, move |(events, _)| {
            let mut text = String::new();
            loop {
                match events.try_recv() {
                    Ok(event) if event.is_drop() == drops => {
                        text.push_str(&event.line(&names.load()));
                        text.push('\n');
                    }
                    Ok(_) => {}
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return None,
                }
            }
            Some((!text.is_empty()).then(|| Bytes::from(text)))
        });
        Reply::stream("text/plain; charset=utf-8", body)
    }

    fn capture(&self, request: &Head) -> Reply {
        let Some(query) = request.param("port") else {
            return Reply::text(400, "capture needs ?port=NAME\n");
        };
        let names = self.names.load();
        let Some(port) = names.find(&query) else {
            let known: Vec<String> = names
                .0
                .values()
                .map(|l| format!("{} ({})", l.name, l.interface))
                .collect();
            let message = format!("no port {query:?}; ports: {}\n", known.join(", "));
            return Reply::text(404, message);
        };
        let limit: Option<u64> = request.param("count").and_then(|c| c.parse().ok());
        let Some(slot) = StreamSlot::take(&self.streams) else {
            return too_many_streams();
        };
        let frames = self.observers.capture.subscribe(Some(port), STREAM_DEPTH);
        let state = Capture {
            frames,
            header: true,
            written: 0,
            _slot: slot,
        };
        let body = polled_stream(state, STREAM_IDLE, move |state| state.next(limit));
        Reply::stream("application/vnd.tcpdump.pcap", body)
    }
}

/// Where a capture stream stands.
struct Capture {
    frames: Receiver<super::observe::Frame>,
    header: bool,
    written: u64,
    _slot: StreamSlot,
}

impl Capture {
    fn next(&mut self, limit: Option<u64>) -> Option<Option<Bytes>> {
        if limit.is_some_and(|l| self.written >= l) {
            return None;
        }
        let mut buffer = Vec::new();
        if std::mem::take(&mut self.header) {
            buffer.extend_from_slice(&pcap::pcap_header());
        }
        loop {
            if limit.is_some_and(|l| self.written >= l) {
                break;
            }
            match self.frames.try_recv() {
                Ok(frame) => {
                    pcap::pcap_record(&frame, &mut buffer);
                    self.written += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if buffer.is_empty() => return None,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        Some((!buffer.is_empty()).then(|| Bytes::from(buffer)))
    }
}

/// `stream`, holding `slot` until it ends (or is dropped with its connection).
fn holding(slot: StreamSlot, stream: BoxStream<'static, Bytes>) -> BoxStream<'static, Bytes> {
    use futures_util::StreamExt;
    stream
        .map(move |chunk| {
            let _held = &slot;
            chunk
        })
        .boxed()
}

fn handler(state: Arc<AdminState>) -> Handler {
    Arc::new(move |request: &Head| state.handle(request))
}

/// The Unix socket's handler: the admin API plus, with `cni`, the CNI plugin's requests.
fn unix_handler(state: Arc<AdminState>, cni: Option<Arc<CniEndpoint>>) -> Handler {
    Arc::new(move |request: &Head| {
        cni.as_ref()
            .and_then(|cni| cni.handle(request))
            .unwrap_or_else(|| state.handle(request))
    })
}

/// Serves the admin API on the Unix socket `path`, mode 0600 (0660 with `group`); a stale
/// socket is replaced, a live one or another file is an error (see [`super::admin_socket`]).
/// With `cni`, it also answers the CNI plugin's `/cni/attach` and `/cni/detach`.
pub fn serve_unix(
    runtime: &HttpRuntime,
    path: &Path,
    group: Option<u32>,
    state: Arc<AdminState>,
    cni: Option<Arc<CniEndpoint>>,
) -> io::Result<Serving> {
    let listener = super::admin_socket::bind(path, group)?;
    runtime.serve(
        Bound::Unix(listener),
        Limits::ADMIN,
        Access::Open,
        unix_handler(state, cni),
    )
}

/// Serves the admin API on TCP (over TLS with `tls`); every request must carry
/// `Authorization: Bearer <token>`.
pub fn serve_tcp(
    runtime: &HttpRuntime,
    addr: SocketAddr,
    token: &str,
    tls: Option<TlsAcceptor>,
    state: Arc<AdminState>,
) -> io::Result<Serving> {
    let bound = match (Bound::tcp("admin.listen", addr)?, tls) {
        (Bound::Tcp(listener), Some(acceptor)) => Bound::Tls(listener, acceptor),
        (bound, _) => bound,
    };
    runtime.serve(
        bound,
        Limits::ADMIN,
        Access::Bearer(token.into()),
        handler(state),
    )
}

/// Serves `/metrics` alone on `addr` (kube-proxy's metrics port), without a token.
pub fn serve_metrics(
    runtime: &HttpRuntime,
    addr: SocketAddr,
    state: Arc<AdminState>,
) -> io::Result<Serving> {
    let bound = Bound::tcp("metrics.bindAddress", addr)?;
    let handler: Handler =
        Arc::new(
            move |request: &Head| match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/metrics") => {
                    Reply::whole(200, "text/plain; version=0.0.4", state.metrics_text())
                }
                ("GET", _) => Reply::text(404, "not found (only /metrics here)\n"),
                _ => Reply::text(405, "only GET\n"),
            },
        );
    runtime.serve(bound, Limits::PROBE, Access::Open, handler)
}

#[cfg(test)]
mod tests {
    use super::super::server::bearer_matches;

    #[test]
    fn only_the_bearer_token_itself_is_accepted() {
        let token = "s3cret-token-0123456789";
        for (header, accepted) in [
            (Some("Bearer s3cret-token-0123456789"), true),
            (Some("bearer  s3cret-token-0123456789 "), true),
            (None, false),
            (Some(""), false),
            (Some("Bearer"), false),
            (Some("Bearer s3cret-token-012345678"), false),
            (Some("Bearer s3cret-token-01234567890"), false),
            (Some("Bearer S3cret-token-0123456789"), false),
            (Some("Basic s3cret-token-0123456789"), false),
            (Some("s3cret-token-0123456789"), false),
        ] {
            assert_eq!(bearer_matches(header, token), accepted, "{header:?}");
        }
    }
}
