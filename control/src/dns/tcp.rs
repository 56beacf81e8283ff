//! DNS over TCP (RFC 7766): a task per connection, reading length-prefixed queries and
//! writing each answer as soon as it is ready, so an answer from the zone never waits behind
//! a forward asked earlier on the same connection (answers may leave out of order, matched by
//! id).
//!
//! Limits ([`super::Limits`]): at most `tcp_connections` at once and `tcp_connections_per_client`
//! per client address. A client over its share is refused (the connection is closed at
//! once); at the global cap the connection that has waited longest for a query is closed to
//! make room, else the one whose answer has waited longest (more than [`STALLED_AFTER`]) for
//! the client to read it, and the new one is refused only when there is neither. A
//! connection is closed
//! when it stays without a query for `tcp_idle_timeout`, and, abortively (RST, so its
//! buffers are freed at once), when writing one answer takes longer than
//! `tcp_write_timeout` (a client that does not read).
//!
//! Invariants: every open connection is in the [`Registry`] and holds one slot of its
//! client's share, both given back when its task ends; a connection's answers are written by
//! one writer, in the order they became ready; no peer can hold the server's task, only its
//! own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{Either, select};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

use super::forward::Upstream;
use super::limits::PerClient;
use super::respond::{Reply, Transport, respond};
use super::server::Shared;

/// Answers of one connection waiting for its writer; a full queue stops the reading.
const ANSWER_QUEUE: usize = 4;

/// A write pending this long means a client that does not read: at the cap, such a
/// connection makes room for a new one.
pub const STALLED_AFTER: Duration = Duration::from_secs(1);

/// The open connections, to find the one waiting longest for a query.
#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// Since when it waits for a query; `None` while a query is being read or answered.
    waiting_since: Option<Instant>,
    /// Since when its current answer is being written; `None` when no write is pending.
    writing_since: Option<Instant>,
    /// Set to `true` to close the connection for a newer one.
    close: watch::Sender<bool>,
}

/// One connection's place in the registry, removed when dropped.
struct Admission {
    id: u64,
    registry: Arc<Mutex<Registry>>,
    closed: watch::Receiver<bool>,
}

impl Registry {
    /// Room for one more connection: at the cap, the one waiting longest for a query (else
    /// the one stalled longest on a write) is told to close.
    fn admit(registry: &Arc<Mutex<Registry>>, cap: usize) -> Option<Admission> {
        let mut this = registry.lock().unwrap_or_else(|e| e.into_inner());
        if this.open.len() >= cap {
            let now = Instant::now();
            let oldest = |since: fn(&Entry) -> Option<Instant>| {
                this.open
                    .iter()
                    .filter_map(|(id, entry)| since(entry).map(|since| (since, *id)))
                    .min()
            };
            let waiting = oldest(|e| e.waiting_since);
            let stalled = oldest(|e| e.writing_since)
                .filter(|(since, _)| now.saturating_duration_since(*since) >= STALLED_AFTER);
            let (_, id) = waiting.or(stalled)?;
            if let Some(evicted) = this.open.remove(&id) {
                evicted.close.send_replace(true);
            }
        }
        let id = this.next_id;
        this.next_id += 1;
        let (close, closed) = watch::channel(false);
        this.open.insert(
            id,
            Entry {
                waiting_since: Some(Instant::now()),
                writing_since: None,
                close,
            },
        );
        Some(Admission {
            id,
            registry: Arc::clone(registry),
            closed,
        })
    }
}

impl Admission {
    fn update(&self, change: impl FnOnce(&mut Entry)) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = registry.open.get_mut(&self.id) {
            change(entry);
        }
    }

    fn set_waiting(&self, waiting: bool) {
        self.update(|entry| entry.waiting_since = waiting.then(Instant::now));
    }

    fn set_writing(&self, writing: bool) {
        self.update(|entry| entry.writing_since = writing.then(Instant::now));
    }

    /// Resolves once the connection was closed for a newer one.
    async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|closed| *closed).await;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.open.remove(&self.id);
    }
}

/// Accepts connections until the listener fails for good.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let limits = shared.limits;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let per_client = PerClient::new(limits.tcp_connections_per_client);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors or a connection reset before accept: wait, go on.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Refused: dropping the stream closes it.
        let Some(slot) = per_client.take(peer.ip()) else {
            continue;
        };
        let Some(admission) = Registry::admit(&registry, limits.tcp_connections) else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            serve_connection(stream, peer, &shared, Arc::new(admission)).await;
            drop(slot);
        });
    }
}

/// Serves one connection until it closes, idles, stalls or is closed for a newer one.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    admission: Arc<Admission>,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (answers, queue) = mpsc::channel(ANSWER_QUEUE);
    let mut writing = tokio::spawn(write_answers(
        writer,
        queue,
        shared.limits.tcp_write_timeout,
        Arc::clone(&admission),
    ));
    let reading = pin!(read_queries(reader, peer, shared, &admission, answers));
    if let Either::Left(((), _)) = select(reading, &mut writing).await {
        // The client is done (or idle, or evicted): the answers still due go out first.
        let _ = writing.await;
    }
}

/// Reads queries and answers them (forwards in tasks of their own) until the client closes,
/// stays silent for the idle timeout or the connection is closed for a newer one.
async fn read_queries(
    mut reader: OwnedReadHalf,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    admission: &Admission,
    answers: mpsc::Sender<Vec<u8>>,
) {
    let idle = shared.limits.tcp_idle_timeout;
    loop {
        admission.set_waiting(true);
        let mut prefix = [0u8; 2];
        {
            let read = pin!(timeout(idle, reader.read_exact(&mut prefix)));
            let closed = pin!(admission.closed());
            match select(read, closed).await {
                Either::Left((Ok(Ok(_)), _)) => {}
                Either::Left(_) | Either::Right(_) => return,
            }
        }
        admission.set_waiting(false);
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        if !matches!(
            timeout(idle, reader.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let forwarding = shared.forwarder.enabled();
        let work = match respond(&shared.records.load(), &query, Transport::Tcp, forwarding) {
            Reply::Send(bytes) => {
                if answers.send(bytes).await.is_err() {
                    return;
                }
                continue;
            }
            Reply::Drop => continue,
            Reply::Forward => Upstream::Forward(query),
            Reply::Chase(chase) => Upstream::Chase(chase),
        };
        let Some(permit) = shared.forwarder.admit(peer.ip()) else {
            if let Some(reply) = work.give_up()
                && answers.send(reply).await.is_err()
            {
                return;
            }
            continue;
        };
        let shared = Arc::clone(shared);
        let answers = answers.clone();
        tokio::spawn(async move {
            let reply = shared.forwarder.resolve(work, Transport::Tcp).await;
            drop(permit);
            if let Some(reply) = reply {
                let _ = answers.send(reply).await;
            }
        });
    }
}

/// Writes each answer with its length prefix until every sender is gone; a write that takes
/// longer than `write_timeout`, or is pending when the connection is closed for a newer one,
/// resets the connection.
async fn write_answers(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    write_timeout: Duration,
    admission: Arc<Admission>,
) {
    while let Some(reply) = queue.recv().await {
        let Ok(length) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&reply);
        admission.set_writing(true);
        let written = {
            let write = pin!(timeout(write_timeout, writer.write_all(&framed)));
            let closed = pin!(admission.closed());
            match select(write, closed).await {
                Either::Left((Ok(written), _)) => Some(written),
                Either::Left((Err(_), _)) | Either::Right(_) => None,
            }
        };
        admission.set_writing(false);
        match written {
            Some(Ok(())) => {}
            Some(Err(_)) => return,
            None => {
                // The client does not read: drop what it left unread instead of keeping
                // the kernel's buffers busy until it does.
                let _ = writer.as_ref().set_zero_linger();
                return;
            }
        }
    }
}
