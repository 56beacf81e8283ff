//! The policy epoch of a flow: which NetworkPolicy table (`PolicyTable::epoch`) last allowed it.
//! The pipeline compares it with the snapshot's on every conntrack hit (one compare) and
//! re-checks the flow when they differ (`stages::policy_recheck`).
//!
//! Invariant: only a live original record's head is stamped, by single-word CAS that keeps
//! every other bit; a stale reference (the flow ended, its slot reused) stamps nothing.

use std::sync::atomic::Ordering;

use super::record::HEAD_IN_RECORD;
use super::{Conntrack, Head, Hit};

impl Conntrack {
    /// Records that the flow of `hit` is allowed under policy `epoch` (1..=127).
    pub fn stamp_policy(&self, hit: &Hit, epoch: u8) {
        let Some(slot) = self.map.slot(hit.entry.slot) else {
            return;
        };
        let word = &self.map.record(slot)[HEAD_IN_RECORD];
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let head = Head(current);
            if head.generation() != hit.entry.generation || !head.is_live_original() {
                return;
            }
            let stamped = head.with_policy_epoch(epoch);
            if stamped == head {
                return;
            }
            // Relaxed: like `on_packet`, the head publishes nothing else.
            match word.compare_exchange_weak(
                current,
                stamped.0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::flow::{FlowKey, L4Proto};
    use crate::tables::conntrack::{Conntrack, ConntrackConfig, NewFlow, Track};

    #[test]
    fn a_stamp_survives_packets_and_a_stale_reference_stamps_nothing() {
        let ct = Conntrack::new(ConntrackConfig {
            capacity: 64,
            ..ConntrackConfig::default()
        });
        let original = FlowKey::new(
            L4Proto::Udp,
            [10, 0, 0, 1].into(),
            1000,
            [10, 0, 0, 2].into(),
            53,
        );
        let flow = NewFlow {
            original,
            reply: original.reversed(),
            service: 0,
            backend: 0,
            flags: 0,
            tcp_flags: 0,
        };
        let hit = *ct.insert(&flow, 10).expect("insert").hit();
        assert_eq!(ct.lookup(&original, 10).map(|h| h.policy_epoch), Some(0));
        ct.stamp_policy(&hit, 127);
        assert_eq!(ct.on_packet(&hit, 0, 20), Track::Ok);
        let reply = ct.lookup(&original.reversed(), 20).expect("reply hit");
        assert_eq!(reply.policy_epoch, 127, "read through the reply record too");
        assert_eq!(ct.lookup(&original, 20).map(|h| h.policy_epoch), Some(127));
        assert!(ct.remove(&hit));
        ct.stamp_policy(&hit, 5);
        assert!(ct.lookup(&original, 20).is_none());
    }
}
