//! What one client, and all of them together, may hold of the DNS server: TCP connections
//! and forwarded queries in flight, and how long a TCP connection may stay silent or leave
//! its answers unread.
//!
//! Invariants: a [`ClientSlot`] counts against its client until dropped, so a count never
//! outlives the connection or forward that took it; a client never holds more than its
//! share, so one client (a flood of slow names, hundreds of silent or non-reading
//! connections) cannot take what the others need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server's limits (`ferroplane dns --tcp-...`, `--forwards-...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TCP connections served at once; at the cap the connection idle longest is closed for a
    /// new one, and when none is idle the new one is refused.
    pub tcp_connections: usize,
    /// TCP connections one client address may hold; beyond that new ones are refused.
    pub tcp_connections_per_client: usize,
    /// How long a TCP connection may wait for its next query (RFC 7766 idle timeout).
    pub tcp_idle_timeout: Duration,
    /// How long writing one answer may take: a client that does not read is closed after it.
    pub tcp_write_timeout: Duration,
    /// Forwarded queries in flight at once; beyond that they get SERVFAIL at once.
    pub forwards: usize,
    /// Forwarded queries one client address may have in flight (SERVFAIL beyond), so slow
    /// upstream names asked by one client leave the other clients' forwards alone.
    pub forwards_per_client: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            tcp_connections: 512,
            tcp_connections_per_client: 64,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_write_timeout: Duration::from_secs(5),
            forwards: 256,
            forwards_per_client: 32,
        }
    }
}

/// Counts per client address, each at most `cap`.
#[derive(Debug)]
pub struct PerClient {
    cap: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One unit of a client's share, given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    owner: Arc<PerClient>,
    client: IpAddr,
}

impl PerClient {
    pub fn new(cap: usize) -> Arc<PerClient> {
        Arc::new(PerClient {
            cap,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `client`, or `None` when it holds its whole share.
    pub fn take(self: &Arc<PerClient>, client: IpAddr) -> Option<ClientSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(client).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: Arc::clone(self),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}
