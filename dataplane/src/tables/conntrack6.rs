//! IPv6 connection tracking: a table of its own, apart from the IPv4 flow table (whose record
//! layout and 124 B/flow stay as they are). One table per worker, owned (`&mut self`): no locks,
//! no atomics. TCP, UDP and ICMPv6 echo (the identifier as both ports, as `pipeline::v6` keys it).
//!
//! A flow is stored once (`flows`, a slab) and indexed twice: by its original tuple and by its
//! reply tuple as the reply arrives after NAT66. A lookup tells the direction and the tuple the
//! packet is rewritten to: the inverse of the other direction's tuple (identity when untranslated).
//!
//! Invariants:
//! - A tuple is indexed at most once, as an original or as a reply; an insert whose reply tuple
//!   is taken fails (`Insert6Error::ReplyTaken`) and changes nothing.
//! - `len() <= capacity()`; every allocation happens in `new`: the slab, its free list and the
//!   index are sized for `capacity` flows, so inserts and removals never allocate.
//! - Time is the caller's `now` (seconds); nothing here reads a clock. An expired flow is a miss
//!   for lookups and is removed by the lookup that finds it or by `sweep`.
//! - Memory per flow: see [`Conntrack6::bytes_per_flow`] (slab slot + the index's buckets, sized
//!   so that tombstones never make it grow: 2 entries per flow at most half its capacity).

use std::net::Ipv6Addr;

/// The ICMPv6 protocol number.
const PROTO_ICMPV6: u8 = 58;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Seconds a flow without a reply lives.
pub const UNREPLIED_TIMEOUT: u32 = 30;
/// Seconds a replied TCP flow lives without traffic.
pub const TCP_REPLIED_TIMEOUT: u32 = 86_400;
/// Seconds a replied UDP flow lives without traffic.
pub const UDP_REPLIED_TIMEOUT: u32 = 120;
/// Seconds a TCP flow lives after a FIN or RST was seen (no sequence check: a forged RST only
/// shortens the flow's life to this).
pub const TCP_CLOSING_TIMEOUT: u32 = 10;
/// Seconds a replied ICMPv6 echo flow lives without traffic.
pub const ICMP_REPLIED_TIMEOUT: u32 = 30;

/// Flows a worker's IPv6 table holds (`Pipeline` makes one per worker).
pub const WORKER_CAPACITY: u32 = 8192;

/// An IPv6 5-tuple as a packet carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Tuple6 {
    /// The tuple of a packet going the other way.
    #[inline]
    pub fn inverse(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// Which way a packet goes relative to the flow's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir6 {
    Original,
    Reply,
}

/// A hit: the flow, the packet's direction and the tuple to rewrite the packet to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit6 {
    pub flow: u32,
    pub dir: Dir6,
    pub rewrite_to: Tuple6,
    /// The policy epoch the flow was last allowed under (`stamp_policy`; 0: never checked).
    pub policy_epoch: u8,
}

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert6Error {
    /// The table holds `capacity()` live flows.
    Full,
    /// The original tuple is tracked already (as either direction).
    Exists,
    /// Another flow's tuple equals this flow's reply tuple.
    ReplyTaken,
    /// Not TCP, UDP or ICMPv6.
    Untracked,
}

#[derive(Clone, Copy, Debug)]
struct Flow6 {
    original: Tuple6,
    reply: Tuple6,
    last_seen: u32,
    replied: bool,
    closing: bool,
    policy_epoch: u8,
}

impl Flow6 {
    fn timeout(&self) -> u32 {
        if self.closing {
            return TCP_CLOSING_TIMEOUT;
        }
        if !self.replied {
            return UNREPLIED_TIMEOUT;
        }
        match self.original.proto {
            PROTO_TCP => TCP_REPLIED_TIMEOUT,
            PROTO_UDP => UDP_REPLIED_TIMEOUT,
            _ => ICMP_REPLIED_TIMEOUT,
        }
    }

    fn expired(&self, now: u32) -> bool {
        now.saturating_sub(self.last_seen) > self.timeout()
    }
}

/// The IPv6 conntrack table of one worker.
#[derive(Debug)]
pub struct Conntrack6 {
    flows: Vec<Option<Flow6>>,
    free: Vec<u32>,
    index: foldhash::HashMap<Tuple6, (u32, Dir6)>,
    live: usize,
    /// Next slab slot `sweep` looks at.
    cursor: usize,
    /// The index's capacity as allocated (hashbrown's `capacity()` shrinks with tombstones).
    index_capacity: usize,
}

impl Conntrack6 {
    /// A table for at most `capacity` flows (all memory allocated here).
    pub fn new(capacity: u32) -> Self {
        let cap = capacity as usize;
        let mut index = foldhash::HashMap::default();
        // Twice the most live entries: hashbrown then always rehashes its tombstones in place
        // instead of growing (it grows when live entries exceed half its capacity).
        index.reserve(4 * cap);
        Self {
            index_capacity: index.capacity(),
            flows: vec![None; cap],
            free: (0..capacity).rev().collect(),
            index,
            live: 0,
            cursor: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.flows.len()
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes this table costs per flow of its capacity: a slab slot (plus free-list entry) and
    /// the index's buckets (an entry and a control byte each; buckets = capacity * 8 / 7).
    pub fn bytes_per_flow(&self) -> usize {
        let slot = std::mem::size_of::<Option<Flow6>>() + std::mem::size_of::<u32>();
        let entry = std::mem::size_of::<(Tuple6, (u32, Dir6))>() + 1;
        let buckets = (self.index_capacity * 8).div_ceil(7);
        slot + (buckets * entry).div_ceil(self.capacity().max(1))
    }

    /// Tracks a new flow: `original` as the first packet carries it, `reply` as its replies will
    /// arrive (after NAT66: from the backend, or to the masquerade address).
    pub fn insert(
        &mut self,
        original: Tuple6,
        reply: Tuple6,
        now: u32,
    ) -> Result<u32, Insert6Error> {
        if !matches!(original.proto, PROTO_TCP | PROTO_UDP | PROTO_ICMPV6) {
            return Err(Insert6Error::Untracked);
        }
        self.drop_if_expired(&original, now);
        self.drop_if_expired(&reply, now);
        if self.index.contains_key(&original) {
            return Err(Insert6Error::Exists);
        }
        if self.index.contains_key(&reply) || reply == original {
            return Err(Insert6Error::ReplyTaken);
        }
        let Some(flow) = self.free.pop() else {
            return Err(Insert6Error::Full);
        };
        self.flows[flow as usize] = Some(Flow6 {
            original,
            reply,
            last_seen: now,
            replied: false,
            closing: false,
            policy_epoch: 0,
        });
        self.index.insert(original, (flow, Dir6::Original));
        self.index.insert(reply, (flow, Dir6::Reply));
        self.live += 1;
        Ok(flow)
    }

    /// Finds the flow of a packet carrying `tuple`, refreshes it (a reply marks it replied) and
    /// says how to rewrite the packet. `None` for untracked or expired tuples.
    pub fn lookup(&mut self, tuple: &Tuple6, now: u32) -> Option<Hit6> {
        let &(flow, dir) = self.index.get(tuple)?;
        let f = self.flows[flow as usize].as_mut()?;
        if f.expired(now) {
            self.remove(flow);
            return None;
        }
        f.last_seen = now;
        let rewrite_to = match dir {
            Dir6::Original => f.reply.inverse(),
            Dir6::Reply => {
                f.replied = true;
                f.original.inverse()
            }
        };
        Some(Hit6 {
            flow,
            dir,
            rewrite_to,
            policy_epoch: f.policy_epoch,
        })
    }

    /// Finds the flow of `tuple` like [`Self::lookup`] but changes nothing (an ICMPv6 error
    /// about a flow neither refreshes it nor marks it replied).
    pub fn peek(&self, tuple: &Tuple6, now: u32) -> Option<Hit6> {
        let &(flow, dir) = self.index.get(tuple)?;
        let f = self.flows[flow as usize].as_ref()?;
        if f.expired(now) {
            return None;
        }
        let rewrite_to = match dir {
            Dir6::Original => f.reply.inverse(),
            Dir6::Reply => f.original.inverse(),
        };
        Some(Hit6 {
            flow,
            dir,
            rewrite_to,
            policy_epoch: f.policy_epoch,
        })
    }

    /// Records the policy epoch a flow was (re)allowed under.
    pub fn stamp_policy(&mut self, flow: u32, epoch: u8) {
        if let Some(Some(f)) = self.flows.get_mut(flow as usize) {
            f.policy_epoch = epoch;
        }
    }

    /// A live flow's (original, reply) tuples.
    pub fn tuples(&self, flow: u32) -> Option<(Tuple6, Tuple6)> {
        self.flows
            .get(flow as usize)
            .copied()
            .flatten()
            .map(|f| (f.original, f.reply))
    }

    /// Marks a flow as closing (a TCP FIN or RST): it expires `TCP_CLOSING_TIMEOUT` after its
    /// last packet.
    pub fn close(&mut self, flow: u32) {
        if let Some(Some(f)) = self.flows.get_mut(flow as usize) {
            f.closing = true;
        }
    }

    /// Ends a flow (TCP RST/FIN handling, policy changes); false if it was not live.
    pub fn remove(&mut self, flow: u32) -> bool {
        let Some(f) = self.flows.get_mut(flow as usize).and_then(Option::take) else {
            return false;
        };
        self.index.remove(&f.original);
        self.index.remove(&f.reply);
        self.free.push(flow);
        self.live -= 1;
        true
    }

    /// Looks at up to `budget` slab slots from where the last sweep stopped and removes the
    /// expired flows among them; returns how many it removed.
    pub fn sweep(&mut self, now: u32, budget: usize) -> usize {
        let cap = self.flows.len();
        let mut removed = 0;
        for _ in 0..budget.min(cap) {
            let slot = self.cursor;
            self.cursor = (self.cursor + 1) % cap;
            if self.flows[slot].is_some_and(|f| f.expired(now)) {
                self.remove(slot as u32);
                removed += 1;
            }
        }
        removed
    }

    fn drop_if_expired(&mut self, tuple: &Tuple6, now: u32) {
        if let Some(&(flow, _)) = self.index.get(tuple)
            && self.flows[flow as usize].is_some_and(|f| f.expired(now))
        {
            self.remove(flow);
        }
    }
}

#[cfg(test)]
#[path = "conntrack6_tests.rs"]
mod tests;
