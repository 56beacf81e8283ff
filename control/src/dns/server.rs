//! The network side: one UDP socket and one TCP listener on the same address, served by a
//! tokio current-thread runtime, answering from the [`RecordIndex`] currently published.
//!
//! - UDP: one receive loop answers each datagram before reading the next (no task per
//!   query), so names of the zone never wait on the upstream; only forwarded queries get a
//!   task, within the limits of [`super::forward::Forwarder`] (a global cap and a share per
//!   client address; beyond them SERVFAIL at once).
//! - TCP: see [`super::tcp`] (connection caps, idle and write timeouts).
//! - Forwarding: see [`super::forward`]. A CNAME chain leaving the zone is completed the same
//!   way, with a query for its target (the chain alone when the upstream does not answer).
//!
//! Invariants: no received bytes can stop a loop (every parse failure is a reply or a
//! silent drop, see [`super::respond`]); each query reads the index once, so it is answered
//! from a single generation.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, UdpSocket};

use super::forward::{Forwarder, Upstream};
use super::index::RecordIndex;
use super::limits::Limits;
use super::respond::{Reply, Transport, respond};
/// Binding port 0: how many free UDP ports to try before giving up on finding one whose TCP
/// twin is free too.
const FREE_PORT_TRIES: usize = 16;
/// Consecutive receive errors after which the UDP socket is taken as broken.
const MAX_RECEIVE_ERRORS: usize = 1000;
/// Send buffer of each TCP connection (inherited from the listener): a client that does not
/// read stalls the server's writes after this much, instead of after the kernel's default
/// of up to 4 MiB of answers built for nobody (the kernel doubles it).
const TCP_SEND_BUFFER: usize = 16 * 1024;
/// Connections the kernel completes before the server accepts them.
const TCP_BACKLOG: i32 = 1024;

/// Where to listen and where names outside the zone go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// UDP and TCP address; port 0 picks one free for both.
    pub listen: SocketAddr,
    /// The resolver that answers names outside the zone; without one they are REFUSED.
    pub upstream: Option<SocketAddr>,
    /// Caps and timeouts against clients that take more than their share.
    pub limits: Limits,
}

/// Bound sockets, ready to serve.
#[derive(Debug)]
pub struct DnsServer {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    records: Arc<ArcSwap<RecordIndex>>,
    upstream: Option<SocketAddr>,
    limits: Limits,
}

/// What every task of the server shares.
pub(super) struct Shared {
    pub(super) records: Arc<ArcSwap<RecordIndex>>,
    pub(super) forwarder: Forwarder,
    pub(super) limits: Limits,
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
            limits: config.limits,
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
                forwarder: Forwarder::new(self.upstream, &self.limits),
                limits: self.limits,
            });
            tokio::spawn(super::tcp::serve(tcp, Arc::clone(&shared)));
            serve_udp(udp, shared).await
        })
    }
}

/// A UDP socket and a TCP listener on the same address and port.
fn bind_pair(listen: SocketAddr) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    if listen.port() != 0 {
        let udp = std::net::UdpSocket::bind(listen)?;
        return Ok((udp, tuned(std::net::TcpListener::bind(listen)?)?));
    }
    let mut last_error = None;
    for _ in 0..FREE_PORT_TRIES {
        let udp = std::net::UdpSocket::bind(listen)?;
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tuned(tcp)?)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// The listener with [`TCP_SEND_BUFFER`] (which accepted connections inherit) and
/// [`TCP_BACKLOG`].
fn tuned(tcp: std::net::TcpListener) -> io::Result<std::net::TcpListener> {
    let socket = socket2::SockRef::from(&tcp);
    socket.set_send_buffer_size(TCP_SEND_BUFFER)?;
    socket.listen(TCP_BACKLOG)?;
    Ok(tcp)
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
            shared.forwarder.enabled(),
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

/// Asks the upstream in a task of its own, or gives up at once when the client or the server
/// has too many forwards in flight.
fn spawn_upstream(socket: &Arc<UdpSocket>, shared: &Arc<Shared>, work: Upstream, peer: SocketAddr) {
    let Some(permit) = shared.forwarder.admit(peer.ip()) else {
        if let Some(reply) = work.give_up() {
            socket.try_send_to(&reply, peer).ok();
        }
        return;
    };
    let socket = Arc::clone(socket);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let reply = shared.forwarder.resolve(work, Transport::Udp).await;
        drop(permit);
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, peer).await;
        }
    });
}
