//! The node process's HTTP servers (`/healthz`, `/livez`, health-check node ports, the metrics
//! listener, the admin API on its Unix socket and on TCP, with or without TLS), on hyper's
//! HTTP/1.1 and a tokio runtime of their own ([`HttpRuntime`]: one thread, whatever the number
//! of clients).
//!
//! Invariants:
//! - Every connection is its own task: a slow client never delays another one.
//! - A listener holds at most [`Limits::connections`] connections. One more takes the place of
//!   the oldest that has not delivered its request head yet (that one is closed), so idle or
//!   trickling connections can never lock out a client that asks at once; when every
//!   connection is past its head, the new one is closed at once.
//! - A connection that has not delivered its request head (TLS handshake included) within
//!   [`Limits::head`] is closed; a whole answer must be written within [`Limits::request`] of
//!   the accept; a streamed answer (`/monitor`, `/capture`, `/conntrack`) whose writes make no
//!   progress for [`Limits::stall`] is ended.
//! - With a token, a request's `Authorization` is checked as soon as its head is parsed, before
//!   anything else is read or done; a request that declares a body over [`MAX_BODY`] gets 413.
//!   No body is ever read. One request per connection (`Connection: close`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{Either, select};
use futures_util::stream::{BoxStream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep, sleep, timeout_at};
use tokio_rustls::TlsAcceptor;

/// Bytes of a request body a request may declare; none is read.
pub const MAX_BODY: u64 = 4096;
/// Bytes of request line and headers accepted (hyper's smallest read buffer).
const MAX_HEAD: usize = 8192;

/// What one listener allows each client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// From the accept to a whole request head (TLS handshake included).
    pub head: Duration,
    /// From the accept to a whole answer written.
    pub request: Duration,
    /// A streamed answer whose writes make no progress this long is ended.
    pub stall: Duration,
}

impl Limits {
    /// Probes (`/healthz`, health-check node ports, `/metrics`): answers are small and quick.
    pub const PROBE: Limits = Limits {
        connections: 512,
        head: Duration::from_secs(5),
        request: Duration::from_secs(10),
        stall: Duration::from_secs(10),
    };
    /// The admin API: fewer clients, long streams.
    pub const ADMIN: Limits = Limits {
        connections: 128,
        head: Duration::from_secs(5),
        request: Duration::from_secs(30),
        stall: Duration::from_secs(10),
    };
}

/// A request's head, all a handler sees.
#[derive(Clone, Debug, Default)]
pub struct Head {
    pub method: String,
    pub path: String,
    /// The query string after `?`, without it.
    pub query: String,
}

impl Head {
    /// The value of query parameter `name`, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params(name).next()
    }

    /// Every value of query parameter `name`, percent-decoded, in order.
    pub fn params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A handler's answer.
pub enum Reply {
    /// A whole answer with its length.
    Whole {
        status: u16,
        content_type: &'static str,
        body: Bytes,
    },
    /// A chunked answer whose body runs until the stream ends or the client leaves.
    Stream {
        content_type: &'static str,
        body: BoxStream<'static, Bytes>,
    },
}

impl Reply {
    pub fn whole(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply::Whole {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::whole(status, "text/plain; charset=utf-8", body)
    }

    pub fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::whole(status, "application/json", body)
    }

    pub fn stream(content_type: &'static str, body: BoxStream<'static, Bytes>) -> Reply {
        Reply::Stream { content_type, body }
    }
}

/// Answers one request head.
pub type Handler = Arc<dyn Fn(&Head) -> Reply + Send + Sync>;

/// Who may ask: anyone who can connect, or only with `Authorization: Bearer <token>`.
#[derive(Clone, Debug)]
pub enum Access {
    Open,
    Bearer(Arc<str>),
}

type Body = UnsyncBoxBody<Bytes, io::Error>;

fn whole_response(status: u16, content_type: &str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|e| match e {}).boxed_unsync());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The answer to `request`, checked for access and body before the handler sees it.
fn answer(
    request: &Request<Incoming>,
    access: &Access,
    handler: &Handler,
) -> (Response<Body>, bool) {
    if let Access::Bearer(token) = access {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !bearer_matches(given, token) {
            let mut response = whole_response(
                401,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"missing or wrong bearer token\n"),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ferroplane\""),
            );
            return (response, false);
        }
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if declared > MAX_BODY || request.headers().contains_key(header::TRANSFER_ENCODING) {
        let message = format!("request bodies over {MAX_BODY} bytes are refused\n");
        return (
            whole_response(413, "text/plain; charset=utf-8", Bytes::from(message)),
            false,
        );
    }
    let head = Head {
        method: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or("").to_owned(),
    };
    match handler(&head) {
        Reply::Whole {
            status,
            content_type,
            body,
        } => (whole_response(status, content_type, body), false),
        Reply::Stream { content_type, body } => {
            let frames = body.map(|chunk| Ok::<_, io::Error>(Frame::data(chunk)));
            let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
            if let Ok(value) = HeaderValue::from_str(content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            (response, true)
        }
    }
}

/// Whether an `Authorization` header carries `token` with the Bearer scheme (whose name is
/// case-insensitive, RFC 6750). The token is compared in time independent of where it
/// differs, so the answer's timing does not reveal a prefix.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
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

/// What a connection's task knows of its request.
#[derive(Default)]
struct Progress {
    head: Notify,
    streaming: AtomicBool,
}

/// The connections of one listener: how many are open, and those still before their request
/// head, oldest first (the ones a new connection may replace).
#[derive(Default)]
struct Slots {
    open: usize,
    next_id: u64,
    waiting: VecDeque<(u64, AbortHandle)>,
}

type SharedSlots = Arc<Mutex<Slots>>;

fn lock(slots: &SharedSlots) -> MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection's place; dropping it (the task ended or was aborted) frees it.
struct Slot {
    id: u64,
    slots: SharedSlots,
}

impl Slot {
    /// Makes room for a new connection: `None` when the listener is full of connections past
    /// their head.
    fn take(slots: &SharedSlots, cap: usize) -> Option<Slot> {
        let mut guard = lock(slots);
        if guard.open >= cap {
            let (_, oldest) = guard.waiting.pop_front()?;
            oldest.abort();
        }
        guard.open += 1;
        guard.next_id += 1;
        Some(Slot {
            id: guard.next_id,
            slots: Arc::clone(slots),
        })
    }

    fn head_arrived(&self) {
        lock(&self.slots).waiting.retain(|(id, _)| *id != self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = lock(&self.slots);
        guard.open = guard.open.saturating_sub(1);
        guard.waiting.retain(|(id, _)| *id != self.id);
    }
}

/// Serves one connection under `limits` (the accept happened at `accepted`).
async fn serve_connection<I>(
    io: I,
    accepted: Instant,
    slot: &Slot,
    limits: Limits,
    access: Access,
    handler: Handler,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let progress = Arc::new(Progress::default());
    let seen = Arc::clone(&progress);
    let service = service_fn(move |request: Request<Incoming>| {
        let (response, streaming) = answer(&request, &access, &handler);
        seen.streaming.store(streaming, Ordering::Relaxed);
        seen.head.notify_one();
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(false)
        .half_close(false)
        .max_buf_size(MAX_HEAD)
        .max_headers(64)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = pin!(connection);
    let head_deadline = accepted + limits.head;
    let head = pin!(progress.head.notified());
    match timeout_at(head_deadline, select(connection.as_mut(), head)).await {
        Err(_) | Ok(Either::Left(_)) => return,
        Ok(Either::Right(_)) => slot.head_arrived(),
    }
    if progress.streaming.load(Ordering::Relaxed) {
        // Bounded by the stall guard on every write.
        let _ = connection.await;
    } else {
        let _ = timeout_at(accepted + limits.request, connection).await;
    }
}

/// A stream whose writes fail once they made no progress for `stall`: a client that stops
/// reading cannot hold a connection (and what feeds it) forever.
pub struct StallGuard<T> {
    inner: T,
    stall: Duration,
    blocked: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, stall: Duration) -> Self {
        StallGuard {
            inner,
            stall,
            blocked: None,
        }
    }

    fn on_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.blocked = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let stall = self.stall;
                let timer = self.blocked.get_or_insert_with(|| Box::pin(sleep(stall)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.on_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A listening socket of any kind the node serves.
pub enum Bound {
    Tcp(std::net::TcpListener),
    Unix(StdUnixListener),
    Tls(std::net::TcpListener, TlsAcceptor),
}

impl Bound {
    /// Binds `addr`; the error names `what` (the config field) and the address.
    pub fn tcp(what: &str, addr: SocketAddr) -> io::Result<Bound> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("{what} {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        Ok(Bound::Tcp(listener))
    }

    /// The address a TCP listener got (port 0 picks one).
    #[cfg(test)]
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Bound::Tcp(listener) | Bound::Tls(listener, _) => listener.local_addr(),
            Bound::Unix(_) => Err(io::Error::other("a Unix listener has no TCP address")),
        }
    }
}

/// A tokio runtime on one thread of its own, for the servers (accept loops and connections).
#[derive(Clone)]
pub struct HttpRuntime {
    handle: Handle,
}

impl HttpRuntime {
    /// Starts the runtime's thread, named `name`; it lives as long as the process.
    pub fn start(name: &str) -> io::Result<HttpRuntime> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(std::future::pending::<()>());
            })?;
        let handle = rx
            .recv()
            .map_err(|_| io::Error::other("the HTTP runtime's thread stopped"))??;
        Ok(HttpRuntime { handle })
    }

    /// Serves `bound` until the returned [`Serving`] is dropped (connections already accepted
    /// finish within their limits).
    pub fn serve(
        &self,
        bound: Bound,
        limits: Limits,
        access: Access,
        handler: Handler,
    ) -> io::Result<Serving> {
        let _entered = self.handle.enter();
        let task = match bound {
            Bound::Tcp(listener) => {
                let listener = TcpListener::from_std(listener)?;
                self.handle
                    .spawn(accept_tcp(listener, None, limits, access, handler))
            }
            Bound::Tls(listener, acceptor) => {
                let listener = TcpListener::from_std(listener)?;
                self.handle.spawn(accept_tcp(
                    listener,
                    Some(acceptor),
                    limits,
                    access,
                    handler,
                ))
            }
            Bound::Unix(listener) => {
                listener.set_nonblocking(true)?;
                let listener = UnixListener::from_std(listener)?;
                self.handle
                    .spawn(accept_unix(listener, limits, access, handler))
            }
        };
        Ok(Serving(task.abort_handle()))
    }
}

/// A listener being served; dropping it closes the listener.
pub struct Serving(tokio::task::AbortHandle);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// After a failed accept (out of descriptors), before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

async fn accept_tcp(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    access: Access,
    handler: Handler,
) {
    let slots = SharedSlots::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Full of answered connections: closed at once (the backlog does not fill).
        let Some(slot) = Slot::take(&slots, limits.connections) else {
            continue;
        };
        let (accepted, id) = (Instant::now(), slot.id);
        let _ = stream.set_nodelay(true);
        let (access, handler, tls) = (access.clone(), Arc::clone(&handler), tls.clone());
        let task = tokio::spawn(async move {
            let slot = slot;
            let io = StallGuard::new(stream, limits.stall);
            match tls {
                None => serve_connection(io, accepted, &slot, limits, access, handler).await,
                Some(acceptor) => {
                    let deadline = accepted + limits.head;
                    if let Ok(Ok(io)) = timeout_at(deadline, acceptor.accept(io)).await {
                        serve_connection(io, accepted, &slot, limits, access, handler).await;
                    }
                }
            }
        });
        waiting(&slots, id, task.abort_handle());
    }
}

/// Registers connection `id`'s task, just spawned, as waiting for its head: until the head
/// arrives a newer connection may replace it. (The task cannot have run yet: the runtime has
/// one thread and the accept loop has not yielded since the spawn.)
fn waiting(slots: &SharedSlots, id: u64, task: AbortHandle) {
    lock(slots).waiting.push_back((id, task));
}

async fn accept_unix(listener: UnixListener, limits: Limits, access: Access, handler: Handler) {
    let slots = SharedSlots::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&slots, limits.connections) else {
            continue;
        };
        let (accepted, id) = (Instant::now(), slot.id);
        let (access, handler) = (access.clone(), Arc::clone(&handler));
        let task = tokio::spawn(async move {
            let slot = slot;
            let io = StallGuard::new(stream, limits.stall);
            serve_connection(io, accepted, &slot, limits, access, handler).await;
        });
        waiting(&slots, id, task.abort_handle());
    }
}

/// A stream of chunks that polls `next` until it returns `None`: `Some(Some(bytes))` is sent,
/// `Some(None)` means nothing yet (it waits `idle`, then asks again).
pub fn polled_stream<S: Send + 'static>(
    state: S,
    idle: Duration,
    mut next: impl FnMut(&mut S) -> Option<Option<Bytes>> + Send + 'static,
) -> BoxStream<'static, Bytes> {
    futures_util::stream::unfold(state, move |mut state| {
        let item = next(&mut state);
        async move {
            match item {
                None => None,
                Some(Some(bytes)) => Some((bytes, state)),
                Some(None) => {
                    sleep(idle).await;
                    Some((Bytes::new(), state))
                }
            }
        }
    })
    .filter(|chunk| std::future::ready(!chunk.is_empty()))
    .boxed()
}

#[cfg(test)]
mod tests;
