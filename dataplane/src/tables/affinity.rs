//! Session affinity (Service `sessionAffinity: ClientIP`): which backend a client was last sent
//! to, per service, shared by all workers on the flowmap.
//!
//! Semantics (user-needs E1-E3):
//! - The key is (service id, client IP). Affinity is per service id: pass one id per Service port
//!   for kube-proxy's iptables behaviour, one per Service for IPVS's.
//! - The timeout is idle-based, counted from the last new connection that used the entry
//!   (`get` hit) or set it, like iptables `recent --rcheck --seconds`; it is passed to `get`, so a
//!   Service's `timeoutSeconds` takes effect at once.
//! - `flush_backend` drops every entry pinned to a backend as soon as that endpoint stops being
//!   usable (unready, terminating, deleted).
//!
//! Invariants: one record per key; value word 0 is the last-used time (raised outside locks with
//! `fetch_max`), word 1 the backend (IPv4 << 16 | port). A raise that races with the slot's reuse
//! can refresh the newer entry: harmless, it only lives a little longer. The table holds at least
//! `capacity` entries; past that, `set` replaces the least recently used entry of the key's two
//! buckets (counted in `evictions`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::tables::conntrack::Now;
use crate::tables::flowmap::{FlowMap, KEY_WORDS, Key, SweepCursor, Upsert};

const LAST_USED: usize = 0;
const BACKEND: usize = 1;

/// Client-to-backend pins with an idle timeout.
pub struct AffinityTable {
    map: FlowMap<2>,
    capacity: usize,
    len: AtomicUsize,
    evictions: AtomicU64,
}

impl AffinityTable {
    /// A table for `capacity` clients (with 25 % spare slots so buckets rarely fill).
    pub fn new(capacity: usize) -> Self {
        Self {
            map: FlowMap::with_capacity(capacity.saturating_mul(5) / 4),
            capacity,
            len: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The backend `client` is pinned to for `service`, unless idle for more than `timeout`
    /// seconds at `now`. A hit counts as a use.
    pub fn get(
        &self,
        service: u32,
        client: Ipv4Addr,
        timeout: u32,
        now: Now,
    ) -> Option<(Ipv4Addr, u16)> {
        let (slot, value) = self.map.get(&key(service, client))?;
        if idle_too_long(&value, timeout, now) {
            return None;
        }
        self.map.record(slot)[KEY_WORDS + LAST_USED].fetch_max(u64::from(now), Ordering::Relaxed);
        Some(backend(&value))
    }

    /// Pins `client` to a backend for `service` (replacing any earlier pin).
    pub fn set(&self, service: u32, client: Ipv4Addr, ip: Ipv4Addr, port: u16, now: Now) {
        let value = [
            u64::from(now),
            u64::from(u32::from(ip)) << 16 | u64::from(port),
        ];
        let last_used = |value: &[u64; 2]| value[LAST_USED] as u32;
        match self
            .map
            .upsert_evicting(key(service, client), value, last_used)
        {
            Upsert::Inserted => {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
            Upsert::Replaced => {}
            Upsert::Evicted(_) => {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops every pin to `ip:port`. A full scan, for the control thread. Returns how many.
    pub fn flush_backend(&self, ip: Ipv4Addr, port: u16) -> usize {
        let target = u64::from(u32::from(ip)) << 16 | u64::from(port);
        let mut removed = 0;
        for bucket in 0..self.map.buckets() {
            removed += self.remove_in(bucket, |value| value[BACKEND] == target);
        }
        removed
    }

    /// Visits up to `budget` buckets from `cursor`, dropping entries idle for more than
    /// `max_idle` seconds (the largest timeout any Service uses). Returns how many.
    pub fn sweep(&self, cursor: &mut SweepCursor, budget: usize, now: Now, max_idle: u32) -> usize {
        let mut removed = 0;
        for _ in 0..budget.min(self.map.buckets()) {
            let bucket = cursor.advance(self.map.buckets());
            removed += self.remove_in(bucket, |value| idle_too_long(value, max_idle, now));
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Pins dropped by `set` because both buckets of a new key were full.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn remove_in(&self, bucket: usize, doomed: impl Fn(&[u64; 2]) -> bool) -> usize {
        let mut removed = 0;
        for (slot, key, value) in self.map.read_bucket(bucket).iter() {
            if doomed(&value)
                && self
                    .map
                    .remove_if(&key, |found, now_there| found == slot && doomed(now_there))
                    .is_some()
            {
                self.len.fetch_sub(1, Ordering::Relaxed);
                removed += 1;
            }
        }
        removed
    }
}

fn key(service: u32, client: Ipv4Addr) -> Key {
    [u64::from(service), u64::from(u32::from(client))]
}

fn idle_too_long(value: &[u64; 2], timeout: u32, now: Now) -> bool {
    value[LAST_USED] + u64::from(timeout) < u64::from(now)
}

fn backend(value: &[u64; 2]) -> (Ipv4Addr, u16) {
    let word = value[BACKEND];
    (Ipv4Addr::from((word >> 16) as u32), word as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: u32 = 7;
    const HOUR3: u32 = 10_800;

    fn client(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, 1, n)
    }

    fn pod(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, 2, n)
    }

    #[test]
    fn set_then_get_until_idle_timeout() {
        let table = AffinityTable::new(64);
        table.set(SVC, client(1), pod(9), 8080, 100);
        assert_eq!(
            table.get(SVC, client(1), HOUR3, 100 + HOUR3),
            Some((pod(9), 8080))
        );
        // That get was a use: the idle time restarts from there.
        assert_eq!(
            table.get(SVC, client(1), HOUR3, 100 + 2 * HOUR3),
            Some((pod(9), 8080))
        );
        assert_eq!(table.get(SVC, client(1), HOUR3, 101 + 3 * HOUR3), None);
        // The timeout is the caller's: a shorter one takes effect immediately.
        table.set(SVC, client(2), pod(3), 80, 1000);
        assert_eq!(table.get(SVC, client(2), 10, 1011), None);
    }

    #[test]
    fn keys_are_per_service_and_client_and_set_overwrites() {
        let table = AffinityTable::new(64);
        table.set(SVC, client(1), pod(1), 80, 5);
        table.set(SVC + 1, client(1), pod(2), 80, 5);
        table.set(SVC, client(1), pod(3), 81, 6);
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(SVC, client(1), HOUR3, 6), Some((pod(3), 81)));
        assert_eq!(table.get(SVC + 1, client(1), HOUR3, 6), Some((pod(2), 80)));
        assert_eq!(table.get(SVC, client(2), HOUR3, 6), None);
    }

    #[test]
    fn flush_backend_drops_only_its_pins() {
        let table = AffinityTable::new(64);
        for n in 1..=10 {
            let port = if n % 2 == 0 { 8080 } else { 9090 };
            table.set(SVC, client(n), pod(1), port, 5);
        }
        assert_eq!(table.flush_backend(pod(1), 8080), 5);
        assert_eq!(table.len(), 5);
        for n in 1..=10 {
            let expected = (n % 2 == 1).then_some((pod(1), 9090));
            assert_eq!(table.get(SVC, client(n), HOUR3, 5), expected);
        }
    }

    #[test]
    fn sweep_drops_idle_entries_within_budget() {
        let table = AffinityTable::new(200);
        for n in 0..100 {
            table.set(SVC, client(n), pod(1), 80, if n < 40 { 10 } else { 500 });
        }
        let mut cursor = SweepCursor::default();
        let buckets = table.map.buckets();
        assert_eq!(table.sweep(&mut cursor, buckets, 600, 100), 40);
        assert_eq!(table.len(), 60);
        assert_eq!(table.sweep(&mut cursor, buckets, 600, 100), 0);
    }

    #[test]
    fn full_buckets_evict_the_least_recently_used() {
        // One bucket of 16 slots: the 17th client replaces the one used longest ago.
        let table = AffinityTable::new(4);
        for n in 0..16 {
            table.set(SVC, client(n), pod(n), 80, 100 + u32::from(n));
        }
        table.set(SVC, client(99), pod(99), 80, 200);
        assert_eq!(table.evictions(), 1);
        assert_eq!(table.get(SVC, client(0), HOUR3, 200), None);
        assert_eq!(table.get(SVC, client(1), HOUR3, 200), Some((pod(1), 80)));
        assert_eq!(table.get(SVC, client(99), HOUR3, 200), Some((pod(99), 80)));
    }
}
