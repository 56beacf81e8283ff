//! The admin endpoint: HTTP on a Unix socket (and, when configured, on TCP with a bearer
//! token) serving `/metrics`, `/stats`, `/conntrack`, `/healthz`, the live event stream
//! `/monitor?type=drop|policy-verdict` and packet capture `/capture?port=NAME` (pcap).
//!
//! Invariants: every answer is built from published copies (see `render`); a streaming
//! client holds one subscription that ends when it disconnects; a TCP request without the
//! token gets 401 and nothing else.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use dataplane::io::thread::monotonic_secs;
use dataplane::snapshot::SnapshotCell;
use dataplane::tables::conntrack::Conntrack;
use dataplane::worker::WorkerReport;

use super::health::NodeHealth;
use super::http::{self, Conn, Handler, Request};
use super::observe::Observers;
use super::pcap;
use super::ports::PortNames;
use super::render::{self, MetricsInput};
use crate::sync::metrics::SyncMetrics;

/// Frames or events a slow streaming client may lag behind before it loses some.
const STREAM_DEPTH: usize = 8192;

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
    pub health: Arc<NodeHealth>,
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

    fn handle(&self, request: &Request, conn: &mut dyn Conn) -> io::Result<()> {
        if request.method != "GET" {
            return http::respond(conn, 405, "text/plain", b"only GET\n");
        }
        match request.path.as_str() {
            "/metrics" => {
                let text = self.with_input(render::metrics);
                http::respond(conn, 200, "text/plain; version=0.0.4", text.as_bytes())
            }
            "/stats" => {
                let json = self.with_input(|input| render::stats(input, &self.node));
                let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
                http::respond(conn, 200, "application/json", text.as_bytes())
            }
            "/conntrack" => {
                let mut text = String::new();
                self.conntrack.for_each(monotonic_secs(), |flow| {
                    text.push_str(&render::conntrack_line(flow));
                    text.push('\n');
                });
                http::respond(conn, 200, "text/plain", text.as_bytes())
            }
            "/healthz" => {
                let (status, body) = self.health.healthz();
                http::respond(conn, status, "application/json", body.as_bytes())
            }
            "/monitor" => self.monitor(request, conn),
            "/capture" => self.capture(request, conn),
            _ => http::respond(conn, 404, "text/plain", b"not found\n"),
        }
    }

    /// The event stream: `type=drop` (the default) every drop, `type=policy-verdict` every
    /// NetworkPolicy verdict on a new flow of an isolated pod, allowed or denied.
    fn monitor(&self, request: &Request, conn: &mut dyn Conn) -> io::Result<()> {
        let drops = match request.param("type").as_deref() {
            None | Some("drop") => true,
            Some("policy-verdict" | "policy") => false,
            Some(other) => {
                let message = format!("unknown monitor type {other:?} (drop, policy-verdict)\n");
                return http::respond(conn, 400, "text/plain", message.as_bytes());
            }
        };
        let events = self.observers.events.subscribe(None, STREAM_DEPTH);
        http::start_stream(&mut *conn, "text/plain")?;
        loop {
            match events.recv_timeout(Duration::from_millis(500)) {
                Ok(event) => {
                    if event.is_drop() != drops {
                        continue;
                    }
                    let line = event.line(&self.names.load()) + "\n";
                    conn.write_all(line.as_bytes())?;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if conn.peer_closed() {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn capture(&self, request: &Request, conn: &mut dyn Conn) -> io::Result<()> {
        let Some(query) = request.param("port") else {
            return http::respond(conn, 400, "text/plain", b"capture needs ?port=NAME\n");
        };
        let names = self.names.load();
        let Some(port) = names.find(&query) else {
            let known: Vec<String> = names
                .0
                .values()
                .map(|l| format!("{} ({})", l.name, l.interface))
                .collect();
            let message = format!("no port {query:?}; ports: {}\n", known.join(", "));
            return http::respond(conn, 404, "text/plain", message.as_bytes());
        };
        let limit: Option<u64> = request.param("count").and_then(|c| c.parse().ok());
        let frames = self.observers.capture.subscribe(Some(port), STREAM_DEPTH);
        http::start_stream(&mut *conn, "application/vnd.tcpdump.pcap")?;
        conn.write_all(&pcap::pcap_header())?;
        conn.flush()?;
        let mut written = 0u64;
        let mut buffer = Vec::new();
        loop {
            match frames.recv_timeout(Duration::from_millis(500)) {
                Ok(frame) => {
                    buffer.clear();
                    for frame in std::iter::once(frame).chain(frames.try_iter()) {
                        pcap::pcap_record(&frame, &mut buffer);
                        written += 1;
                        if limit.is_some_and(|l| written >= l) {
                            break;
                        }
                    }
                    conn.write_all(&buffer)?;
                    conn.flush()?;
                    if limit.is_some_and(|l| written >= l) {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if conn.peer_closed() {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }
}

/// Serves the admin API on the Unix socket `path`, mode 0600 (0660 with `group`); a stale
/// socket is replaced, a live one or another file is an error (see [`super::admin_socket`]).
pub fn serve_unix(path: &Path, group: Option<u32>, state: Arc<AdminState>) -> io::Result<()> {
    let listener = super::admin_socket::bind(path, group)?;
    let handler: Handler = Arc::new(move |request, conn| state.handle(&request, conn));
    http::serve_unix(listener, handler)
}

/// Serves the admin API on TCP; every request must carry `Authorization: Bearer <token>`.
pub fn serve_tcp(addr: SocketAddr, token: String, state: Arc<AdminState>) -> io::Result<()> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("admin.listen {addr}: {e}")))?;
    let handler: Handler = Arc::new(move |request, conn| {
        if !bearer_matches(request.header("authorization"), &token) {
            return http::respond_unauthorized(conn, b"missing or wrong bearer token\n");
        }
        state.handle(&request, conn)
    });
    http::serve_tcp(listener, Arc::new(AtomicBool::new(false)), handler, false)
}

/// Whether an `Authorization` header carries `token` with the Bearer scheme (whose name is
/// case-insensitive, RFC 6750). The token is compared in time independent of where it
/// differs, so the answer's timing does not reveal a prefix.
fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some((scheme, given)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    let (given, token) = (given.trim_start().as_bytes(), token.as_bytes());
    let differs = given
        .iter()
        .zip(token)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    scheme.eq_ignore_ascii_case("bearer") && given.len() == token.len() && differs == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_matches;

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
