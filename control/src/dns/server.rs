//! The network side: one UDP socket and one TCP listener on the same address, served by a
//! tokio current-thread runtime, answering from the [`RecordIndex`] currently published.
//!
//! - UDP: one receive loop answers each datagram before reading the next (no task per
//!   query); only forwarded queries get a task, at most [`MAX_FORWARDS`] at once (beyond that
//!   they get SERVFAIL at once).
//! - TCP: a task per connection, at most [`MAX_TCP_CONNECTIONS`] (beyond that new ones are
//!   closed), answering length-prefixed queries in order; a connection idle for
//!   [`TCP_IDLE_TIMEOUT`] is closed (RFC 7766).
//! - Forwarding: the query as received goes to the upstream over UDP from a fresh socket;
//!   the first reply with the same id within [`FORWARD_TIMEOUT`] is relayed, otherwise the
//!   client gets SERVFAIL. A CNAME chain leaving the zone is completed the same way, with a
//!   query for its target (the chain alone when the upstream does not answer).
//!
//! Invariants: no received bytes can stop a loop (every parse failure is a reply or a
//! silent drop, see [`super::respond`]); each query reads the index once, so it is answered
//! from a single generation.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::index::RecordIndex;
use super::respond::{Chase, Reply, Transport, respond, server_failure};

/// Forwarded queries in flight at once.
pub const MAX_FORWARDS: usize = 256;
/// TCP connections served at once.
pub const MAX_TCP_CONNECTIONS: usize = 512;
/// How long a TCP connection may stay silent.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the upstream has to answer a forwarded query.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Binding port 0: how many free UDP ports to try before giving up on finding one whose TCP
/// twin is free too.
const FREE_PORT_TRIES: usize = 16;
/// Consecutive receive errors after which the UDP socket is taken as broken.
const MAX_RECEIVE_ERRORS: usize = 1000;

/// Where to listen and where names outside the zone go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// UDP and TCP address; port 0 picks one free for both.
    pub listen: SocketAddr,
    /// The resolver that answers names outside the zone; without one they are REFUSED.
    pub upstream: Option<SocketAddr>,
}

/// Bound sockets, ready to serve.
#[derive(Debug)]
pub struct DnsServer {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    records: Arc<ArcSwap<RecordIndex>>,
    upstream: Option<SocketAddr>,
}

/// What every task of the server shares.
struct Shared {
    records: Arc<ArcSwap<RecordIndex>>,
    upstream: Option<SocketAddr>,
    forwards: Arc<Semaphore>,
}

impl DnsServer {
    /// Binds the UDP socket and TCP listener; `records` is read for every query.
    pub fn bind(
        config: &ServerConfig,
        records: Arc<ArcSwap<RecordIndex>>,
    ) -> io::Result<DnsServer> {
        let (udp, tcp) = bind_pair(config.listen)?;
        Ok(DnsServer {
            udp,
            tcp,
            records,
            upstream: config.upstream,
        })
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Serves until the UDP socket fails for good (the process normally ends by signal).
    pub fn run(self) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        runtime.block_on(async move {
            self.udp.set_nonblocking(true)?;
            self.tcp.set_nonblocking(true)?;
            let udp = Arc::new(UdpSocket::from_std(self.udp)?);
            let tcp = TcpListener::from_std(self.tcp)?;
            let shared = Arc::new(Shared {
                records: self.records,
                upstream: self.upstream,
                forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
            });
            tokio::spawn(serve_tcp(tcp, Arc::clone(&shared)));
            serve_udp(udp, shared).await
        })
    }
}

/// A UDP socket and a TCP listener on the same address and port.
fn bind_pair(listen: SocketAddr) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    if listen.port() != 0 {
        return Ok((
            std::net::UdpSocket::bind(listen)?,
            std::net::TcpListener::bind(listen)?,
        ));
    }
    let mut last_error = None;
    for _ in 0..FREE_PORT_TRIES {
        let udp = std::net::UdpSocket::bind(listen)?;
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) -> io::Result<()> {
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    let mut errors = 0;
    loop {
        let (length, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => {
                errors = 0;
                received
            }
            Err(error) => {
                errors += 1;
                if errors >= MAX_RECEIVE_ERRORS {
                    return Err(error);
                }
                continue;
            }
        };
        let query = &buffer[..length];
        let reply = respond(
            &shared.records.load(),
            query,
            Transport::Udp,
            shared.upstream.is_some(),
        );
        match reply {
            Reply::Send(bytes) => {
                // A client that cannot be reached retries or gives up; nothing to do here.
                let _ = socket.send_to(&bytes, peer).await;
            }
            Reply::Forward => {
                spawn_upstream(&socket, &shared, Upstream::Forward(query.to_vec()), peer)
            }
            Reply::Chase(chase) => spawn_upstream(&socket, &shared, Upstream::Chase(chase), peer),
            Reply::Drop => {}
        }
    }
}

/// A reply that needs the upstream.
enum Upstream {
    /// A query for a name outside the zone, as received.
    Forward(Vec<u8>),
    /// An answer ending in a CNAME to an outside name.
    Chase(Box<Chase>),
}

impl Upstream {
    /// The reply once the upstream answered (or not: `None` means no upstream reply).
    async fn resolve(self, upstream: Option<SocketAddr>) -> Option<Vec<u8>> {
        match self {
            Upstream::Forward(query) => ask(upstream, &query)
                .await
                .or_else(|| server_failure(&query)),
            Upstream::Chase(chase) => {
                let reply = match chase.upstream_query() {
                    Some(query) => ask(upstream, &query).await,
                    None => None,
                };
                chase.complete(reply.as_deref())
            }
        }
    }

    /// The reply without asking: SERVFAIL for a forward, the CNAME chain for a chase.
    fn give_up(self) -> Option<Vec<u8>> {
        match self {
            Upstream::Forward(query) => server_failure(&query),
            Upstream::Chase(chase) => chase.complete(None),
        }
    }
}

/// Asks the upstream in a task of its own, or gives up at once when too many are in flight.
fn spawn_upstream(socket: &Arc<UdpSocket>, shared: &Shared, work: Upstream, peer: SocketAddr) {
    let socket = Arc::clone(socket);
    let upstream = shared.upstream;
    match Arc::clone(&shared.forwards).try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                let reply = work.resolve(upstream).await;
                drop(permit);
                if let Some(reply) = reply {
                    let _ = socket.send_to(&reply, peer).await;
                }
            });
        }
        Err(_) => {
            if let Some(reply) = work.give_up() {
                socket.try_send_to(&reply, peer).ok();
            }
        }
    }
}

/// Sends `query` to `upstream` and waits for the reply with the same id.
async fn ask(upstream: Option<SocketAddr>, query: &[u8]) -> Option<Vec<u8>> {
    let upstream = upstream?;
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let id = query.get(..2)?;
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    let wait = async {
        loop {
            let length = socket.recv(&mut buffer).await.ok()?;
            let reply = &buffer[..length];
            if reply.get(..2) == Some(id) {
                return Some(reply.to_vec());
            }
        }
    };
    timeout(FORWARD_TIMEOUT, wait).await.ok().flatten()
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or a connection reset before accept: wait, go on.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            serve_connection(stream, &shared).await;
            drop(permit);
        });
    }
}

/// Answers the length-prefixed queries of one connection until it closes, idles or fails.
async fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let mut query = Vec::new();
    loop {
        let mut prefix = [0u8; 2];
        if !matches!(
            timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut prefix)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        query.resize(usize::from(u16::from_be_bytes(prefix)), 0);
        if !matches!(
            timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let forwarding = shared.upstream.is_some();
        let decision = respond(&shared.records.load(), &query, Transport::Tcp, forwarding);
        let reply = match decision {
            Reply::Send(bytes) => Some(bytes),
            Reply::Forward => {
                Upstream::Forward(query.clone())
                    .resolve(shared.upstream)
                    .await
            }
            Reply::Chase(chase) => Upstream::Chase(chase).resolve(shared.upstream).await,
            Reply::Drop => None,
        };
        let Some(reply) = reply else {
            continue;
        };
        let Ok(length) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
