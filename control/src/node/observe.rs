//! Opt-in observation of the data path: the live event stream (`/monitor`, see `monitor`) and
//! packet capture (`/capture`). Each is a [`Hub`] that listeners subscribe to with a bounded
//! channel.
//!
//! Invariants:
//! - With no listener, the data path pays one relaxed atomic load per burst (capture) or per
//!   round (monitor) and nothing else: no lock, no allocation, no clock read.
//! - A worker never blocks on a listener: a full channel loses the item (counted in
//!   [`Hub::lost`]); a listener that went away is dropped at the next publication.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dataplane::packet::PortId;

use super::monitor::MonitorEvent;

/// A frame seen on a port.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Since the Unix epoch.
    pub at: Duration,
    pub data: Vec<u8>,
}

struct Sink<T> {
    /// Only items of this port; `None` for all.
    port: Option<PortId>,
    tx: SyncSender<T>,
}

/// Listeners of one kind of item.
pub struct Hub<T> {
    listeners: AtomicUsize,
    lost: AtomicU64,
    sinks: Mutex<Vec<Sink<T>>>,
}

impl<T> Default for Hub<T> {
    fn default() -> Self {
        Hub {
            listeners: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
            sinks: Mutex::new(Vec::new()),
        }
    }
}

/// Wall-clock time since the Unix epoch, read once per published burst.
pub fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl<T: Clone> Hub<T> {
    /// Whether anyone listens (one relaxed load).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) != 0
    }

    /// Items lost because a listener's channel was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// A new listener for the items of `port` (all ports for `None`), buffering `depth`.
    pub fn subscribe(&self, port: Option<PortId>, depth: usize) -> Receiver<T> {
        let (tx, rx) = sync_channel(depth);
        let mut sinks = self.sinks.lock().unwrap_or_else(PoisonError::into_inner);
        sinks.push(Sink { port, tx });
        self.listeners.store(sinks.len(), Ordering::Relaxed);
        rx
    }

    /// Whether a listener wants items of `port`.
    pub fn wants(&self, port: PortId) -> bool {
        self.is_active()
            && self
                .sinks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|s| s.port.is_none_or(|p| p == port))
    }

    /// Hands `items` of `port` to every listener that wants them, without blocking.
    pub fn publish(&self, port: PortId, items: &[T]) {
        if items.is_empty() {
            return;
        }
        let mut sinks = self.sinks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lost = 0;
        sinks.retain(|sink| {
            if sink.port.is_some_and(|p| p != port) {
                return true;
            }
            for item in items {
                match sink.tx.try_send(item.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => lost += 1,
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            true
        });
        self.listeners.store(sinks.len(), Ordering::Relaxed);
        if lost > 0 {
            self.lost.fetch_add(lost, Ordering::Relaxed);
        }
    }
}

/// The hubs of one node process.
#[derive(Default)]
pub struct Observers {
    pub capture: Hub<Frame>,
    pub events: Hub<MonitorEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_their_ports_items_and_slow_or_gone_ones_never_block() {
        let hub: Hub<u32> = Hub::default();
        assert!(!hub.is_active());
        let all = hub.subscribe(None, 2);
        let only_3 = hub.subscribe(Some(PortId(3)), 8);
        assert!(hub.wants(PortId(3)) && hub.wants(PortId(7)));
        hub.publish(PortId(3), &[1, 2, 3]);
        hub.publish(PortId(7), &[9]);
        assert_eq!(all.try_iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(hub.lost(), 2, "the third item and port 7's did not fit");
        assert_eq!(only_3.try_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        drop(all);
        hub.publish(PortId(7), &[10]);
        assert!(hub.is_active());
        assert!(!hub.wants(PortId(7)));
        drop(only_3);
        hub.publish(PortId(3), &[4]);
        assert!(!hub.is_active());
    }
}
