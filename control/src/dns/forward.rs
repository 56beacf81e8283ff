//! Asking the upstream resolver: admission (a global cap and a per-client share of forwards
//! in flight), the exchange itself over UDP (and over TCP for a TCP client whose answer came
//! back truncated), and fitting the upstream's answer to what the client takes.
//!
//! Invariants: every forward holds a [`ForwardPermit`] until its answer is sent or given up,
//! and waits at most [`FORWARD_TIMEOUT`] for the upstream; a client over its share, or a
//! server at its cap, gets SERVFAIL at once (never waits for a permit); an answer relayed to
//! a UDP client is never larger than that client's limit (truncated with TC set instead,
//! as local answers are).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};

use super::limits::{ClientSlot, Limits, PerClient};
use super::respond::{Chase, Transport, fit_forwarded, is_truncated, server_failure};

/// How long the upstream has to answer a forwarded query.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Who may ask the upstream, and where it is.
#[derive(Debug)]
pub struct Forwarder {
    upstream: Option<SocketAddr>,
    in_flight: Arc<Semaphore>,
    per_client: Arc<PerClient>,
}

/// The right to one forward in flight: one of the server's and one of the client's.
#[derive(Debug)]
pub struct ForwardPermit {
    _global: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// A reply that needs the upstream.
pub enum Upstream {
    /// A query for a name outside the zone, as received.
    Forward(Vec<u8>),
    /// An answer ending in a CNAME to an outside name.
    Chase(Box<Chase>),
}

impl Forwarder {
    pub fn new(upstream: Option<SocketAddr>, limits: &Limits) -> Forwarder {
        Forwarder {
            upstream,
            in_flight: Arc::new(Semaphore::new(limits.forwards)),
            per_client: PerClient::new(limits.forwards_per_client),
        }
    }

    pub fn enabled(&self) -> bool {
        self.upstream.is_some()
    }

    /// A permit for one more forward of `client`, or `None` (answer with [`Upstream::give_up`]).
    pub fn admit(&self, client: IpAddr) -> Option<ForwardPermit> {
        let client = self.per_client.take(client)?;
        let global = Arc::clone(&self.in_flight).try_acquire_owned().ok()?;
        Some(ForwardPermit {
            _global: global,
            _client: client,
        })
    }

    /// The reply once the upstream answered (or not), fitted to `transport`.
    pub async fn resolve(&self, work: Upstream, transport: Transport) -> Option<Vec<u8>> {
        match work {
            Upstream::Forward(query) => match self.ask(&query, transport).await {
                Some(reply) => fit_forwarded(&query, reply, transport),
                None => server_failure(&query),
            },
            Upstream::Chase(chase) => {
                let reply = match chase.upstream_query() {
                    Some(query) => self.ask(&query, transport).await,
                    None => None,
                };
                chase.complete(reply.as_deref())
            }
        }
    }

    /// The upstream's reply to `query`: over UDP, then over TCP when a TCP client's answer
    /// came back truncated. All within [`FORWARD_TIMEOUT`].
    async fn ask(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let upstream = self.upstream?;
        let deadline = Instant::now() + FORWARD_TIMEOUT;
        let reply = timeout_at(deadline, ask_udp(upstream, query))
            .await
            .ok()
            .flatten()?;
        if transport == Transport::Tcp
            && is_truncated(&reply)
            && let Ok(Some(whole)) = timeout_at(deadline, ask_tcp(upstream, query)).await
        {
            return Some(whole);
        }
        Some(reply)
    }
}

impl Upstream {
    /// The reply without asking: SERVFAIL for a forward, the CNAME chain for a chase.
    pub fn give_up(self) -> Option<Vec<u8>> {
        match self {
            Upstream::Forward(query) => server_failure(&query),
            Upstream::Chase(chase) => chase.complete(None),
        }
    }
}

/// Sends `query` from a fresh UDP socket and waits for the reply with the same id.
async fn ask_udp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let id = query.get(..2)?;
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    loop {
        let length = socket.recv(&mut buffer).await.ok()?;
        let reply = &buffer[..length];
        if reply.get(..2) == Some(id) {
            return Some(reply.to_vec());
        }
    }
}

/// Sends `query` over a fresh TCP connection and reads the reply with the same id.
async fn ask_tcp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    let mut stream = TcpStream::connect(upstream).await.ok()?;
    let length = u16::try_from(query.len()).ok()?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.ok()?;
    loop {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.ok()?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut reply).await.ok()?;
        if reply.get(..2) == Some(id) {
            return Some(reply);
        }
    }
}
